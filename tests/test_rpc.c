/* SPDX-License-Identifier: MIT */
/* tests/test_rpc.c: the rpc module end to end on loopback: a real server with a small test
 * service (echo, failing, slow and bidi handlers) and the blocking client. Checks statuses and
 * messages, UNIMPLEMENTED, health Check/Watch, admission control, deadlines, cancel and a
 * graceful shutdown with a call in flight. */
#include "rpc/rpc.h"
#include "test.h"

#include "health.pb-c.h"

#include <pthread.h>
#include <stdatomic.h>

static atomic_int slow_saw_cancel;

static int h_echo(void *ud, lip_rpc_call *call, const uint8_t *req, size_t len, lip_rpc_buf *resp,
                  lip_err *err)
{
    resp->data = lip_malloc(len ? len : 1);
    if (!resp->data) return lip_err_set(err, LIP_ENOMEM, "oom");
    if (len) memcpy(resp->data, req, len);
    resp->len = len;
    return 0;
}

/* Fails with the code named by the first request byte and packs an error "response". */
static int h_fail(void *ud, lip_rpc_call *call, const uint8_t *req, size_t len, lip_rpc_buf *resp,
                  lip_err *err)
{
    int code = len ? -(int)req[0] : LIP_EINVAL;
    resp->data = lip_malloc(3);
    memcpy(resp->data, "bad", 3);
    resp->len = 3;
    return lip_err_set(err, code, "field x: expected 1, got %zu", len);
}

/* Sleeps up to 2 s in 10 ms steps, stopping early when the call is cancelled. */
static int h_slow(void *ud, lip_rpc_call *call, const uint8_t *req, size_t len, lip_rpc_buf *resp,
                  lip_err *err)
{
    for (int i = 0; i < 200; i++) {
        if (lip_rpc_call_cancelled(call)) {
            atomic_store(&slow_saw_cancel, 1);
            return lip_err_set(err, LIP_ECANCELLED, "stopped");
        }
        lip_time_sleep_ms(10);
    }
    return h_echo(ud, call, req, len, resp, err);
}

static const lip_rpc_method methods[] = {
    {"Echo", LIP_RPC_UNARY, false, h_echo},
    {"HeavyEcho", LIP_RPC_UNARY, true, h_echo},
    {"Fail", LIP_RPC_UNARY, true, h_fail},
    {"Slow", LIP_RPC_UNARY, true, h_slow},
    {"Stream", LIP_RPC_BIDI, true, h_echo},
};

static lip_rpc_server *srv;
static lip_rpc_client *cli;

static void start(int compute, int queued)
{
    lip_rpc_opts o = lip_rpc_opts_default();
    o.host = "127.0.0.1";
    o.compute_threads = compute;
    o.max_queued = queued;
    o.max_recv_bytes = 8 << 20;
    o.recv_timeout_ms = 400;
    lip_err err = {0};
    srv = lip_rpc_server_new(&o, &err);
    CHECK(srv != NULL);
    CHECK_RC(lip_rpc_server_add_service(srv, "test.T", methods, (int)LIP_ARRAY_LEN(methods), NULL,
                                        &err));
    CHECK_RC(lip_rpc_server_start(srv, &err));
    char target[64];
    snprintf(target, sizeof target, "127.0.0.1:%d", lip_rpc_server_port(srv));
    cli = lip_rpc_client_new(target, 0, &err);
    CHECK(cli != NULL);
}

static void stop(void)
{
    lip_rpc_client_free(cli);
    lip_rpc_server_shutdown(srv, 1000);
    lip_rpc_server_free(srv);
    cli = NULL;
    srv = NULL;
}

static int call(const char *path, const void *req, size_t len, double timeout, lip_rpc_buf *resp,
                lip_rpc_status *st)
{
    lip_err err = {0};
    return lip_rpc_client_unary(cli, path, req, len, timeout, resp, st, &err);
}

static void t_status_table(void)
{
    CHECK(lip_rpc_status_of(LIP_OK) == GRPC_STATUS_OK);
    CHECK(lip_rpc_status_of(LIP_EINVAL) == GRPC_STATUS_INVALID_ARGUMENT);
    CHECK(lip_rpc_status_of(LIP_ENOTFOUND) == GRPC_STATUS_NOT_FOUND);
    CHECK(lip_rpc_status_of(LIP_ERANGE) == GRPC_STATUS_OUT_OF_RANGE);
    CHECK(lip_rpc_status_of(LIP_EPRECOND) == GRPC_STATUS_FAILED_PRECONDITION);
    CHECK(lip_rpc_status_of(LIP_EBUSY) == GRPC_STATUS_RESOURCE_EXHAUSTED);
    CHECK(lip_rpc_status_of(LIP_ETIMEOUT) == GRPC_STATUS_DEADLINE_EXCEEDED);
    CHECK(lip_rpc_status_of(LIP_EPERM) == GRPC_STATUS_PERMISSION_DENIED);
    CHECK(lip_rpc_status_of(LIP_EUNAVAIL) == GRPC_STATUS_UNAVAILABLE);
    CHECK(lip_rpc_status_of(LIP_EMODEL) == GRPC_STATUS_FAILED_PRECONDITION);
    CHECK(lip_rpc_status_of(LIP_EENGINE) == GRPC_STATUS_INTERNAL);
    CHECK(lip_rpc_status_of(-9999) == GRPC_STATUS_INTERNAL);
    CHECK(strcmp(lip_rpc_status_name(GRPC_STATUS_UNIMPLEMENTED), "UNIMPLEMENTED") == 0);
}

static void t_unary(void)
{
    start(2, 4);
    lip_rpc_buf r = {0};
    lip_rpc_status st = {0};
    CHECK_RC(call("/test.T/Echo", "hello", 5, 5000, &r, &st));
    CHECK(st.code == GRPC_STATUS_OK && r.len == 5 && memcmp(r.data, "hello", 5) == 0);
    lip_free(r.data);
    CHECK_RC(call("/test.T/HeavyEcho", "", 0, 5000, &r, &st));
    CHECK(st.code == GRPC_STATUS_OK && r.len == 0);
    lip_free(r.data);
    /* A 6 MB message round trip (under the 8 MiB limit). */
    size_t n = 6u << 20;
    uint8_t *big = malloc(n);
    for (size_t i = 0; i < n; i++) big[i] = (uint8_t)(i * 7);
    CHECK_RC(call("/test.T/HeavyEcho", big, n, 10000, &r, &st));
    CHECK(st.code == GRPC_STATUS_OK && r.len == n && r.data && memcmp(r.data, big, n) == 0);
    lip_free(r.data);
    free(big);
    stop();
}

static void t_errors(void)
{
    start(2, 4);
    lip_rpc_buf r = {0};
    lip_rpc_status st = {0};
    uint8_t code = (uint8_t)-LIP_ENOTFOUND;
    CHECK_RC(call("/test.T/Fail", &code, 1, 5000, &r, &st));
    CHECK(st.code == GRPC_STATUS_NOT_FOUND);
    CHECK(strstr(st.details, "field x: expected 1") != NULL);
    CHECK(r.data == NULL); /* the error message is dropped by the client on a non-OK status */
    code = (uint8_t)-LIP_ERANGE;
    CHECK_RC(call("/test.T/Fail", &code, 1, 5000, &r, &st));
    CHECK(st.code == GRPC_STATUS_OUT_OF_RANGE);
    CHECK_RC(call("/test.T/Nope", "x", 1, 5000, &r, &st));
    CHECK(st.code == GRPC_STATUS_UNIMPLEMENTED && strstr(st.details, "/test.T/Nope"));
    CHECK_RC(call("/other.Svc/Echo", "x", 1, 5000, &r, &st));
    CHECK(st.code == GRPC_STATUS_UNIMPLEMENTED);
    /* A message over the 8 MiB receive limit is refused by the core. */
    size_t n = 9u << 20;
    uint8_t *big = calloc(1, n);
    CHECK_RC(call("/test.T/HeavyEcho", big, n, 10000, &r, &st));
    CHECK_MSG(st.code == GRPC_STATUS_RESOURCE_EXHAUSTED, "code %d %s", st.code, st.details);
    free(big);
    lip_rpc_stats s;
    lip_rpc_server_stats(srv, &s);
    CHECK(s.unimplemented == 2);
    CHECK(s.heavy_active == 0);
    stop();
}

static void t_health(void)
{
    start(1, 1);
    Grpc__Health__V1__HealthCheckRequest q = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    uint8_t buf[256];
    lip_rpc_buf r = {0};
    lip_rpc_status st = {0};
    /* "" starts NOT_SERVING until the owner says otherwise. */
    q.service = "";
    size_t n = grpc__health__v1__health_check_request__pack(&q, buf);
    CHECK_RC(call("/grpc.health.v1.Health/Check", buf, n, 5000, &r, &st));
    CHECK(st.code == GRPC_STATUS_OK);
    Grpc__Health__V1__HealthCheckResponse *h =
        grpc__health__v1__health_check_response__unpack(NULL, r.len, r.data);
    CHECK(h && h->status == GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING);
    grpc__health__v1__health_check_response__free_unpacked(h, NULL);
    lip_free(r.data);
    CHECK_RC(lip_rpc_server_set_health(srv, "", LIP_HEALTH_SERVING));
    CHECK_RC(lip_rpc_server_set_health(srv, "test.T", LIP_HEALTH_SERVING));
    CHECK(lip_rpc_server_set_health(srv, "nope", LIP_HEALTH_SERVING) == LIP_ENOTFOUND);
    q.service = "test.T";
    n = grpc__health__v1__health_check_request__pack(&q, buf);
    CHECK_RC(call("/grpc.health.v1.Health/Check", buf, n, 5000, &r, &st));
    h = grpc__health__v1__health_check_response__unpack(NULL, r.len, r.data);
    CHECK(h && h->status == GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING);
    grpc__health__v1__health_check_response__free_unpacked(h, NULL);
    lip_free(r.data);
    q.service = "unknown.Svc";
    n = grpc__health__v1__health_check_request__pack(&q, buf);
    CHECK_RC(call("/grpc.health.v1.Health/Check", buf, n, 5000, &r, &st));
    CHECK(st.code == GRPC_STATUS_NOT_FOUND);
    /* Garbage request bytes: a parse error, not a crash. */
    CHECK_RC(call("/grpc.health.v1.Health/Check", "\xff\xff\xff", 3, 5000, &r, &st));
    CHECK(st.code == GRPC_STATUS_INVALID_ARGUMENT);

    /* Watch: current status now, the change next, NOT_SERVING and OK at shutdown. */
    lip_err err = {0};
    lip_rpc_stream *w = lip_rpc_stream_open(cli, "/grpc.health.v1.Health/Watch", 10000, &err);
    CHECK(w != NULL);
    q.service = "test.T";
    n = grpc__health__v1__health_check_request__pack(&q, buf);
    CHECK_RC(lip_rpc_stream_write(w, buf, n, &err));
    CHECK_RC(lip_rpc_stream_close_send(w, &err));
    int expect[] = {1, 2, 2};
    for (int i = 0; i < 3; i++) {
        if (i == 1) lip_rpc_server_set_health(srv, "test.T", LIP_HEALTH_NOT_SERVING);
        if (i == 2) lip_rpc_server_set_health(srv, "test.T", LIP_HEALTH_SERVING);
        if (i == 2) break;
        CHECK(lip_rpc_stream_read(w, &r, &err) == 1);
        h = grpc__health__v1__health_check_response__unpack(NULL, r.len, r.data);
        CHECK_MSG(h && (int)h->status == expect[i], "watch message %d", i);
        if (h) grpc__health__v1__health_check_response__free_unpacked(h, NULL);
        lip_free(r.data);
    }
    CHECK(lip_rpc_stream_read(w, &r, &err) == 1); /* back to SERVING */
    h = grpc__health__v1__health_check_response__unpack(NULL, r.len, r.data);
    CHECK(h && h->status == 1);
    if (h) grpc__health__v1__health_check_response__free_unpacked(h, NULL);
    lip_free(r.data);
    double t0 = lip_time_ms();
    lip_rpc_server_shutdown(srv, 3000);
    CHECK(lip_time_ms() - t0 < 2000); /* the watch stream ends by itself, no grace wait */
    CHECK(lip_rpc_stream_read(w, &r, &err) == 1);
    h = grpc__health__v1__health_check_response__unpack(NULL, r.len, r.data);
    CHECK(h && h->status == 2);
    if (h) grpc__health__v1__health_check_response__free_unpacked(h, NULL);
    lip_free(r.data);
    CHECK(lip_rpc_stream_read(w, &r, &err) == 0);
    lip_rpc_status fs = {0};
    lip_rpc_stream_finish(w, false, &fs);
    CHECK(fs.code == GRPC_STATUS_OK);
    stop();
}

static void t_bidi(void)
{
    start(2, 2);
    lip_err err = {0};
    lip_rpc_stream *s = lip_rpc_stream_open(cli, "/test.T/Stream", 10000, &err);
    CHECK(s != NULL);
    for (int i = 0; i < 5; i++) {
        char m[16];
        int n = snprintf(m, sizeof m, "msg%d", i);
        CHECK_RC(lip_rpc_stream_write(s, (uint8_t *)m, (size_t)n, &err));
        lip_rpc_buf r = {0};
        CHECK(lip_rpc_stream_read(s, &r, &err) == 1);
        CHECK(r.len == (size_t)n && memcmp(r.data, m, (size_t)n) == 0);
        lip_free(r.data);
    }
    CHECK_RC(lip_rpc_stream_close_send(s, &err));
    lip_rpc_buf r = {0};
    CHECK(lip_rpc_stream_read(s, &r, &err) == 0);
    lip_rpc_status st = {0};
    lip_rpc_stream_finish(s, false, &st);
    CHECK(st.code == GRPC_STATUS_OK);
    stop();
}

static void *slow_thread(void *arg)
{
    lip_rpc_status *st = arg;
    lip_rpc_buf r = {0};
    call("/test.T/Slow", "s", 1, 10000, &r, st);
    lip_free(r.data);
    return NULL;
}

static void t_admission_deadline_cancel(void)
{
    start(1, 0); /* one heavy call at a time, none queued */
    lip_rpc_status st1 = {0};
    pthread_t th;
    pthread_create(&th, NULL, slow_thread, &st1);
    lip_time_sleep_ms(300); /* let the slow call be admitted */
    lip_rpc_buf r = {0};
    lip_rpc_status st = {0};
    CHECK_RC(call("/test.T/HeavyEcho", "x", 1, 5000, &r, &st));
    CHECK_MSG(st.code == GRPC_STATUS_RESOURCE_EXHAUSTED, "code %d: %s", st.code, st.details);
    /* Light calls still run while the heavy slot is taken. */
    CHECK_RC(call("/test.T/Echo", "x", 1, 5000, &r, &st));
    CHECK(st.code == GRPC_STATUS_OK);
    lip_free(r.data);
    pthread_join(th, NULL);
    CHECK(st1.code == GRPC_STATUS_OK);

    /* Deadline: the client gives 150 ms to a 2 s handler; the handler sees it and stops. */
    atomic_store(&slow_saw_cancel, 0);
    double t0 = lip_time_ms();
    CHECK_RC(call("/test.T/Slow", "s", 1, 150, &r, &st));
    CHECK(st.code == GRPC_STATUS_DEADLINE_EXCEEDED);
    CHECK(lip_time_ms() - t0 < 1500);
    lip_time_sleep_ms(200);
    CHECK(atomic_load(&slow_saw_cancel) == 1);
    lip_rpc_stats s;
    lip_rpc_server_stats(srv, &s);
    CHECK(s.heavy_active == 0);
    CHECK(s.rejected_busy == 1);

    /* A client that opens a heavy call and never sends its message loses the slot. */
    lip_err err = {0};
    lip_rpc_stream *idle = lip_rpc_stream_open(cli, "/test.T/HeavyEcho", 10000, &err);
    CHECK(idle != NULL);
    lip_time_sleep_ms(100);
    lip_rpc_server_stats(srv, &s);
    CHECK(s.heavy_active == 1);
    t0 = lip_time_ms();
    lip_rpc_status ist = {0};
    lip_rpc_stream_finish(idle, false, &ist);
    CHECK_MSG(ist.code == GRPC_STATUS_DEADLINE_EXCEEDED, "code %d %s", ist.code, ist.details);
    CHECK_MSG(lip_time_ms() - t0 < 2000, "took %.0f ms: %s", lip_time_ms() - t0, ist.details); /* 400 ms limit + 250 ms reaper period */
    lip_time_sleep_ms(50);
    lip_rpc_server_stats(srv, &s);
    CHECK(s.heavy_active == 0);

    /* Shutdown with a call in flight: a 200 ms grace, then the call is cancelled. */
    atomic_store(&slow_saw_cancel, 0);
    pthread_create(&th, NULL, slow_thread, &st1);
    lip_time_sleep_ms(200);
    t0 = lip_time_ms();
    lip_rpc_server_shutdown(srv, 200);
    double took = lip_time_ms() - t0;
    CHECK_MSG(took < 1500, "shutdown took %.0f ms", took); /* grace 200 ms + a 10 ms step */
    pthread_join(th, NULL);
    CHECK(st1.code != GRPC_STATUS_OK);
    CHECK(atomic_load(&slow_saw_cancel) == 1);
    stop();
}

int main(void)
{
    lip_log_set_level(LIP_LOG_WARN);
    RUN(t_status_table);
    RUN(t_unary);
    RUN(t_errors);
    RUN(t_health);
    RUN(t_bidi);
    RUN(t_admission_deadline_cancel);
    return test_summary();
}
