/* SPDX-License-Identifier: MIT */
/* tests/test_rpc_stream.c: the rpc module's LIP_RPC_STREAM sessions end to end on loopback: a
 * server whose session sends messages on its own clock with no input (server-initiated writes),
 * answers what arrives while it keeps sending, ends with the handler's status after everything
 * queued has left, frees the session when the client cancels or disconnects (session count back
 * to 0), refuses streams past max_streams, and lets a shutdown end a live session. */
#include "rpc/rpc.h"
#include "test.h"

#include <pthread.h>
#include <stdatomic.h>

static atomic_int sessions_ended;

static int send_str(lip_rpc_call *call, const char *s, lip_err *err)
{
    size_t n = strlen(s);
    lip_rpc_buf b = {lip_malloc(n), n};
    if (!b.data) return lip_err_set(err, LIP_ENOMEM, "oom");
    memcpy(b.data, s, n);
    return lip_rpc_call_send(call, &b, err);
}

/* First message "T<n>": send n ticks 10 ms apart whatever arrives, interleaving "echo:<msg>" for
 * each message received; at half-close send "bye" and end OK. A message "fail" ends the stream
 * with NOT_FOUND. Ticks continue until n, then the session waits for the client. */
static int h_session(void *ud, lip_rpc_call *call, const uint8_t *req, size_t len,
                     lip_rpc_buf *resp, lip_err *err)
{
    (void)ud;
    int ticks = 0, nticks = len > 1 && req[0] == 'T' ? req[1] - '0' : 0;
    double next = lip_time_ms();
    int rc = 0;
    for (;;) {
        if (ticks < nticks && lip_time_ms() >= next) {
            char t[32];
            snprintf(t, sizeof t, "tick%d", ticks++);
            if ((rc = send_str(call, t, err))) break;
            next += 10;
        }
        double wait = ticks < nticks ? LIP_MAX(0.0, next - lip_time_ms()) : -1;
        lip_rpc_buf m = {0};
        double at = 0;
        int r = lip_rpc_call_recv(call, &m, &at, wait);
        if (r == LIP_ETIMEOUT) continue;
        if (r < 0) {
            rc = lip_err_set(err, r, "session ended by the client");
            break;
        }
        if (r == 0) {
            resp->data = lip_malloc(3);
            memcpy(resp->data, "bye", 3);
            resp->len = 3;
            break;
        }
        if (at <= 0 || at > lip_time_ms()) rc = lip_err_set(err, LIP_EINTERNAL, "bad arrival");
        if (m.len == 4 && memcmp(m.data, "fail", 4) == 0) {
            lip_free(m.data);
            rc = lip_err_set(err, LIP_ENOTFOUND, "asked to fail");
            break;
        }
        char e[64];
        snprintf(e, sizeof e, "echo:%.*s", (int)LIP_MIN(m.len, 40), (const char *)m.data);
        lip_free(m.data);
        if (rc || (rc = send_str(call, e, err))) break;
    }
    atomic_fetch_add(&sessions_ended, 1);
    return rc;
}

static const lip_rpc_method methods[] = {
    {"Session", LIP_RPC_STREAM, false, h_session},
};

static lip_rpc_server *srv;
static lip_rpc_client *cli;

static void start(int max_streams)
{
    lip_rpc_opts o = lip_rpc_opts_default();
    o.host = "127.0.0.1";
    o.max_streams = max_streams;
    lip_err err = {0};
    srv = lip_rpc_server_new(&o, &err);
    CHECK(srv != NULL);
    CHECK_RC(lip_rpc_server_add_service(srv, "test.S", methods, 1, NULL, &err));
    CHECK_RC(lip_rpc_server_start(srv, &err));
    char target[64];
    snprintf(target, sizeof target, "127.0.0.1:%d", lip_rpc_server_port(srv));
    cli = lip_rpc_client_new(target, 0, &err);
    CHECK(cli != NULL);
}

static void stop(void)
{
    lip_rpc_client_free(cli);
    lip_rpc_server_free(srv);
    cli = NULL;
    srv = NULL;
}

static int open_streams(void)
{
    lip_rpc_stats st;
    lip_rpc_server_stats(srv, &st);
    return st.streams;
}

/* Waits up to 3 s for the session count to reach n (sessions end asynchronously). */
static bool wait_streams(int n)
{
    for (int i = 0; i < 300 && open_streams() != n; i++) lip_time_sleep_ms(10);
    return open_streams() == n;
}

static int read_str(lip_rpc_stream *s, char *out, size_t n)
{
    lip_rpc_buf m = {0};
    lip_err err = {0};
    int r = lip_rpc_stream_read(s, &m, &err);
    if (r == 1) snprintf(out, n, "%.*s", (int)m.len, (const char *)m.data);
    lip_free(m.data);
    return r;
}

/* Ticks come with no input at all; a message sent meanwhile is answered between ticks; after the
 * half-close the handler's last response arrives, then OK. */
static void t_server_initiated(void)
{
    start(4);
    lip_err err = {0};
    lip_rpc_stream *s = lip_rpc_stream_open(cli, "/test.S/Session", 5000, &err);
    CHECK(s != NULL);
    if (!s) return stop();
    CHECK_RC(lip_rpc_stream_write(s, (const uint8_t *)"T5", 2, &err));
    char got[64];
    int ticks = 0, echoes = 0;
    /* The first three messages are ticks: nothing else was sent yet. */
    for (int i = 0; i < 3; i++) {
        CHECK(read_str(s, got, sizeof got) == 1);
        char want[16];
        snprintf(want, sizeof want, "tick%d", ticks);
        CHECK_MSG(strcmp(got, want) == 0, "got %s want %s", got, want);
        ticks++;
    }
    CHECK_RC(lip_rpc_stream_write(s, (const uint8_t *)"hello", 5, &err));
    while (ticks < 5 || echoes < 1) {
        if (read_str(s, got, sizeof got) != 1) break;
        if (strncmp(got, "tick", 4) == 0) ticks++;
        else if (strcmp(got, "echo:hello") == 0) echoes++;
        else CHECK_MSG(0, "unexpected %s", got);
    }
    CHECK(ticks == 5);
    CHECK(echoes == 1);
    CHECK(open_streams() == 1);
    CHECK_RC(lip_rpc_stream_close_send(s, &err));
    CHECK(read_str(s, got, sizeof got) == 1);
    CHECK(strcmp(got, "bye") == 0);
    CHECK(read_str(s, got, sizeof got) == 0);
    lip_rpc_status st;
    lip_rpc_stream_finish(s, false, &st);
    CHECK(st.code == GRPC_STATUS_OK);
    CHECK(wait_streams(0));
    stop();
}

/* A handler failure becomes the status, with its message. */
static void t_handler_status(void)
{
    start(4);
    lip_err err = {0};
    lip_rpc_stream *s = lip_rpc_stream_open(cli, "/test.S/Session", 5000, &err);
    CHECK(s != NULL);
    if (!s) return stop();
    CHECK_RC(lip_rpc_stream_write(s, (const uint8_t *)"T0", 2, &err));
    CHECK_RC(lip_rpc_stream_write(s, (const uint8_t *)"fail", 4, &err));
    char got[64];
    CHECK(read_str(s, got, sizeof got) == 0);
    lip_rpc_status st;
    lip_rpc_stream_finish(s, false, &st);
    CHECK(st.code == GRPC_STATUS_NOT_FOUND);
    CHECK(strstr(st.details, "asked to fail") != NULL);
    CHECK(wait_streams(0));
    stop();
}

/* A client that cancels mid-stream, and one whose channel closes, free their sessions; a stream
 * past max_streams is refused with RESOURCE_EXHAUSTED. */
static void t_cancel_and_limit(void)
{
    start(2);
    atomic_store(&sessions_ended, 0);
    lip_err err = {0};
    lip_rpc_stream *a = lip_rpc_stream_open(cli, "/test.S/Session", 5000, &err);
    lip_rpc_stream *b = lip_rpc_stream_open(cli, "/test.S/Session", 5000, &err);
    CHECK(a && b);
    if (!a || !b) return stop();
    CHECK_RC(lip_rpc_stream_write(a, (const uint8_t *)"T9", 2, &err));
    CHECK_RC(lip_rpc_stream_write(b, (const uint8_t *)"T9", 2, &err));
    char got[64];
    CHECK(read_str(a, got, sizeof got) == 1);
    CHECK(read_str(b, got, sizeof got) == 1);
    CHECK(wait_streams(2));
    lip_rpc_stream *c = lip_rpc_stream_open(cli, "/test.S/Session", 5000, &err);
    CHECK(c != NULL);
    if (c) {
        lip_rpc_stream_write(c, (const uint8_t *)"T1", 2, &err);
        CHECK(read_str(c, got, sizeof got) <= 0);
        lip_rpc_status st;
        lip_rpc_stream_finish(c, false, &st);
        CHECK_MSG(st.code == GRPC_STATUS_RESOURCE_EXHAUSTED, "code %d", (int)st.code);
        CHECK(strstr(st.details, "limit 2") != NULL);
    }
    lip_rpc_stats rs;
    lip_rpc_server_stats(srv, &rs);
    CHECK(rs.rejected_streams == 1);
    /* Cancel a mid-stream: its session ends although its handler never gets a half-close. */
    lip_rpc_status st;
    lip_rpc_stream_finish(a, true, &st);
    CHECK(st.code == GRPC_STATUS_CANCELLED);
    CHECK(wait_streams(1));
    /* Disconnect: the channel goes away under b (finish after the channel is gone). */
    lip_rpc_client_free(cli);
    cli = NULL;
    lip_rpc_stream_finish(b, false, &st);
    CHECK(wait_streams(0));
    CHECK(atomic_load(&sessions_ended) == 2);
    stop();
}

/* A shutdown with a live session: the session sees the end and the server frees cleanly. */
static void t_shutdown_live(void)
{
    start(4);
    lip_err err = {0};
    lip_rpc_stream *s = lip_rpc_stream_open(cli, "/test.S/Session", 5000, &err);
    CHECK(s != NULL);
    if (!s) return stop();
    CHECK_RC(lip_rpc_stream_write(s, (const uint8_t *)"T0", 2, &err));
    CHECK_RC(lip_rpc_stream_write(s, (const uint8_t *)"x", 1, &err));
    char got[64];
    CHECK(read_str(s, got, sizeof got) == 1);
    double t0 = lip_time_ms();
    lip_rpc_server_shutdown(srv, 50);
    /* Grace 50 ms, then cancel-all; the session polls every 100 ms at most. */
    CHECK(lip_time_ms() - t0 < 2000);
    CHECK(open_streams() == 0);
    lip_rpc_status st;
    lip_rpc_stream_finish(s, false, &st);
    CHECK(st.code != GRPC_STATUS_OK);
    stop();
}

int main(void)
{
    lip_log_set_level(LIP_LOG_ERROR);
    RUN(t_server_initiated);
    RUN(t_handler_status);
    RUN(t_cancel_and_limit);
    RUN(t_shutdown_live);
    return test_summary();
}
