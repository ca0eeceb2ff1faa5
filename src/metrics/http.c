/* SPDX-License-Identifier: MIT */
/* metrics HTTP endpoint: a libmicrohttpd daemon with one internal polling thread that serves
 * /metrics (Prometheus text), /healthz and /readyz for orchestrators and scrapers. It is
 * read-only and takes no request bodies, so the only hostile-client concerns are connection
 * counts and slow clients: both are bounded by daemon options below. */
#include "metrics/metrics.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

#define HTTP_MAX_CONNECTIONS 64
#define HTTP_IDLE_TIMEOUT_S 10
#define HTTP_CONN_MEMORY (32 * 1024) /* request headers only: nothing larger is accepted */

struct lip_metrics_http {
    struct MHD_Daemon *d;
    lip_metrics *m;
    int port;
};

static enum MHD_Result reply(struct MHD_Connection *c, unsigned status, const char *ctype,
                             char *body, size_t len, bool owned)
{
    struct MHD_Response *r =
        owned ? MHD_create_response_from_buffer_with_free_callback(len, body, lip_free)
              : MHD_create_response_from_buffer(len, body, MHD_RESPMEM_PERSISTENT);
    if (!r) {
        if (owned) lip_free(body);
        return MHD_NO; /* libmicrohttpd closes the connection */
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url,
                              const char *method, const char *version, const char *upload,
                              size_t *upload_size, void **con_cls)
{
    static char ok[] = "ok\n", ready[] = "ready\n", notready[] = "not ready\n",
                notfound[] = "not found\n", badmethod[] = "method not allowed\n",
                oom[] = "out of memory\n";
    static const char *text = "text/plain; charset=utf-8";
    lip_metrics_http *h = cls;
    bool get = strcmp(method, MHD_HTTP_METHOD_GET) == 0;
    bool head = strcmp(method, MHD_HTTP_METHOD_HEAD) == 0;

    /* Any body is refused: the first call for a request with upload data is answered 405
     * before the data is read (GET and HEAD have none). */
    if (!get && !head)
        return reply(c, MHD_HTTP_METHOD_NOT_ALLOWED, text, badmethod, sizeof badmethod - 1,
                     false);
    if (strcmp(url, "/metrics") == 0) {
        char *body;
        size_t len;
        lip_err e = {0};
        if (lip_metrics_render(h->m, &body, &len, &e) != 0)
            return reply(c, MHD_HTTP_INTERNAL_SERVER_ERROR, text, oom, sizeof oom - 1, false);
        return reply(c, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", body, len,
                     true);
    }
    if (strcmp(url, "/healthz") == 0)
        return reply(c, MHD_HTTP_OK, text, ok, sizeof ok - 1, false);
    if (strcmp(url, "/readyz") == 0) {
        if (lip_metrics_is_ready(h->m))
            return reply(c, MHD_HTTP_OK, text, ready, sizeof ready - 1, false);
        return reply(c, MHD_HTTP_SERVICE_UNAVAILABLE, text, notready, sizeof notready - 1,
                     false);
    }
    return reply(c, MHD_HTTP_NOT_FOUND, text, notfound, sizeof notfound - 1, false);
}

lip_metrics_http *lip_metrics_http_start(int port, const char *bind_addr, lip_metrics *m,
                                         lip_err *err)
{
    if (!m) {
        lip_err_set(err, LIP_EINVAL, "metrics http: registry is NULL");
        return NULL;
    }
    if (port < 0 || port > 65535) {
        lip_err_set(err, LIP_EINVAL, "metrics http: port %d, expected 0..65535", port);
        return NULL;
    }
    if (!bind_addr || !*bind_addr) bind_addr = "0.0.0.0";

    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO;
    struct sockaddr_in *in4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, bind_addr, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons((uint16_t)port);
    } else if (inet_pton(AF_INET6, bind_addr, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)port);
        flags |= MHD_USE_IPv6;
    } else {
        lip_err_set(err, LIP_EINVAL,
                    "metrics http: bind address '%s' is not a numeric IPv4 or IPv6 address",
                    bind_addr);
        return NULL;
    }

    lip_metrics_http *h = lip_calloc(1, sizeof *h);
    if (!h) {
        lip_err_set(err, LIP_ENOMEM, "metrics http: no memory");
        return NULL;
    }
    h->m = m;
    errno = 0;
    h->d = MHD_start_daemon(flags, (uint16_t)port, NULL, NULL, handle, h,
                            MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
                            MHD_OPTION_CONNECTION_LIMIT, (unsigned)HTTP_MAX_CONNECTIONS,
                            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)HTTP_IDLE_TIMEOUT_S,
                            MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)HTTP_CONN_MEMORY,
                            MHD_OPTION_END);
    if (!h->d) {
        int e = errno;
        lip_err_set(err, e == EADDRINUSE ? LIP_EBUSY : LIP_EIO,
                    "metrics http: cannot listen on %s port %d: %s", bind_addr, port,
                    e ? strerror(e) : "libmicrohttpd refused to start");
        lip_free(h);
        return NULL;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_BIND_PORT);
    h->port = info && info->port ? info->port : port;
    lip_log_info("metrics: serving /metrics, /healthz, /readyz on %s port %d", bind_addr,
                 h->port);
    return h;
}

int lip_metrics_http_port(const lip_metrics_http *h) { return h ? h->port : 0; }

void lip_metrics_http_stop(lip_metrics_http *h)
{
    if (!h) return;
    MHD_stop_daemon(h->d);
    lip_free(h);
}
