/* SPDX-License-Identifier: MIT */
/* tests/test_gateway.c: the gateway's C surface without a lipsync server: the RFC 6455 accept
 * value, option checks, binding (a free port, a taken port), static files over a real socket
 * (served, refused outside the web root), the handshake refusals, and the default web root
 * lookup. The WebSocket bridge itself is tested against a real server in
 * tests/py/test_gateway.py and in a browser in tests/py/test_browser.py. */
#include "test.h"

#include "gateway/gateway.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

/* One HTTP request on a fresh connection; the reply (up to n-1 bytes) into buf. */
static void http(int port, const char *req, char *buf, size_t n)
{
    buf[0] = 0;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct timeval tv = {.tv_sec = 5};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        write(fd, req, strlen(req)) == (ssize_t)strlen(req)) {
        size_t got = 0;
        ssize_t r;
        while (got + 1 < n && (r = read(fd, buf + got, n - 1 - got)) > 0) got += (size_t)r;
        buf[got] = 0;
    }
    close(fd);
}

static void t_accept(void)
{
    char out[29];
    lip_gateway_ws_accept("dGhlIHNhbXBsZSBub25jZQ==", out); /* RFC 6455 section 1.3 */
    CHECK(strcmp(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=") == 0);
}

static void t_bad_options(void)
{
    lip_err err = {0};
    lip_gateway_opts o = lip_gateway_opts_default();
    o.grpc_port = 0;
    CHECK(lip_gateway_start(&o, &err) == NULL && err.code == LIP_EINVAL);
    CHECK(strstr(err.msg, "grpc port 0") != NULL);
    o.grpc_port = 50053;
    o.port = 70000;
    CHECK(lip_gateway_start(&o, &err) == NULL && err.code == LIP_EINVAL);
    o.port = 0;
    o.host = "localhost"; /* names are refused: the address must be numeric */
    CHECK(lip_gateway_start(&o, &err) == NULL && strstr(err.msg, "numeric") != NULL);
    lip_gateway_stop(NULL);
    CHECK(lip_gateway_port(NULL) == 0 && !lip_gateway_tts_available(NULL));
}

static void t_static_and_handshake(void)
{
    char dir[] = "/tmp/lipsync-gwtest-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char p[256], buf[4096];
    snprintf(p, sizeof p, "%s/index.html", dir);
    FILE *f = fopen(p, "w");
    fputs("<!doctype html>hello", f);
    fclose(f);
    snprintf(p, sizeof p, "%s/.hidden", dir);
    f = fopen(p, "w");
    fputs("secret", f);
    fclose(f);

    lip_err err = {0};
    lip_gateway_opts o = lip_gateway_opts_default();
    o.host = "127.0.0.1";
    o.grpc_port = 1; /* never called here */
    o.web_root = dir;
    o.tts_path = ""; /* TTS off */
    lip_gateway *g = lip_gateway_start(&o, &err);
    CHECK_MSG(g != NULL, "%s", err.msg);
    if (!g) return;
    int port = lip_gateway_port(g);
    CHECK(port > 0 && !lip_gateway_tts_available(g));

    http(port, "GET / HTTP/1.0\r\n\r\n", buf, sizeof buf);
    CHECK(strncmp(buf, "HTTP/1.1 200", 12) == 0 && strstr(buf, "text/html") &&
          strstr(buf, "<!doctype html>hello"));
    http(port, "GET /.hidden HTTP/1.0\r\n\r\n", buf, sizeof buf);
    CHECK(strncmp(buf, "HTTP/1.1 404", 12) == 0 && !strstr(buf, "secret"));
    http(port, "GET /../etc/passwd HTTP/1.0\r\n\r\n", buf, sizeof buf);
    CHECK(strncmp(buf, "HTTP/1.1 404", 12) == 0);
    http(port, "DELETE / HTTP/1.0\r\n\r\n", buf, sizeof buf);
    CHECK(strncmp(buf, "HTTP/1.1 405", 12) == 0);
    http(port, "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Version: 7\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
               "Connection: close\r\n\r\n", buf, sizeof buf);
    CHECK(strncmp(buf, "HTTP/1.1 426", 12) == 0);

    /* The same port again: taken. */
    o.port = port;
    lip_gateway *g2 = lip_gateway_start(&o, &err);
    CHECK(g2 == NULL && err.code == LIP_EBUSY);
    lip_gateway_stop(g2);
    lip_gateway_stop(g);
    snprintf(p, sizeof p, "%s/index.html", dir);
    unlink(p);
    snprintf(p, sizeof p, "%s/.hidden", dir);
    unlink(p);
    rmdir(dir);
}

static void t_find_web_root(void)
{
    /* build/tests/test_gateway -> ../../web is the source tree's page. */
    char root[1024];
    lip_err err = {0};
    int rc = lip_gateway_find_web_root(root, sizeof root, &err);
    if (rc) SKIP("no web/ next to this binary (installed elsewhere)");
    char idx[1100];
    snprintf(idx, sizeof idx, "%s/index.html", root);
    CHECK(access(idx, R_OK) == 0);
    char tiny[4];
    CHECK(lip_gateway_find_web_root(tiny, sizeof tiny, &err) == LIP_ENOTFOUND && tiny[0] == 0);
}

int main(void)
{
    RUN(t_accept);
    RUN(t_bad_options);
    RUN(t_static_and_handshake);
    RUN(t_find_web_root);
    return test_summary();
}
