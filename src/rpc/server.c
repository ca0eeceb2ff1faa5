/* SPDX-License-Identifier: MIT */
/* rpc/server.c: the gRPC server core. Completion-queue worker threads run each call's state
 * machine; a compute pool runs heavy handlers; grpc.health.v1 Check/Watch are built in.
 *
 * A call context (lip_rpc_call) is reference-counted: every started batch and every queued
 * compute job holds one reference, and the context is freed when the last completes. Each call
 * starts RECV_CLOSE_ON_SERVER in its own batch right away, so a client cancel is seen while a
 * handler still runs. Batches on one call are started under the call's mutex, because a compute
 * thread starts the final batch while the queue thread may start another (notes/grpc-c-core §5).
 *
 * Heavy calls are admitted before their message is read: heavy_active counts admitted calls
 * (queued + running) and never exceeds compute_threads + max_queued, so at most that many large
 * requests are in memory at once. */
#include "rpc/rpc.h"

#include "health.pb-c.h"

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define ARMED_PER_CQ 8
#define PATH_MAX_LEN 160
#define HEALTH_CHECK_PATH "/grpc.health.v1.Health/Check"
#define HEALTH_WATCH_PATH "/grpc.health.v1.Health/Watch"
#define STREAM_RQ_MAX 8  /* received messages a stream session has not read yet */
#define STREAM_SQ_MAX 8  /* messages a stream session queued behind the one being sent */
#define STREAM_POLL_MS 100.0 /* longest sleep of a session waiting, so cancel-all is seen */

enum { TAG_NEW = 0, TAG_RECV, TAG_SEND, TAG_STATUS, TAG_CLOSE, TAG_COUNT };
enum { BUILTIN_NONE = 0, BUILTIN_CHECK, BUILTIN_WATCH };

typedef struct tag {
    lip_rpc_call *c;
    int kind;
} tag;

typedef struct method_ent {
    char path[PATH_MAX_LEN];
    lip_rpc_method m;
    void *ud;
} method_ent;

typedef struct health_ent {
    char name[PATH_MAX_LEN];
    int status;
} health_ent;

typedef struct worker {
    lip_rpc_server *s;
    grpc_completion_queue *cq;
    pthread_t th;
    bool running;
} worker;

struct lip_rpc_call {
    lip_rpc_server *s;
    worker *w;
    grpc_call *call;
    grpc_call_details details;
    grpc_metadata_array md;
    tag tags[TAG_COUNT];
    atomic_int refs;
    pthread_mutex_t mu;        /* serialises grpc_call_start_batch and the fields below */
    const method_ent *me;      /* NULL for built-ins and unknown paths */
    int builtin;
    volatile int cancel_flag;  /* client cancel, connection loss or cancel-all */
    int close_cancelled;       /* written by RECV_CLOSE_ON_SERVER */
    grpc_byte_buffer *recv_bb;
    grpc_byte_buffer *send_bb;
    grpc_slice status_details;
    bool has_details, md_sent, finished, admitted;
    double t_start, deadline_ms;
    char path[PATH_MAX_LEN];
    /* Watch streams */
    char watch_name[PATH_MAX_LEN];
    int watch_sent, watch_pending;
    bool watch_inflight, watch_finishing, watch_listed;
    lip_rpc_call *watch_next;
    /* admitted heavy calls still waiting for their request message (reaper list) */
    lip_rpc_call *wait_prev, *wait_next;
    bool waiting;
    double wait_since;
    /* LIP_RPC_STREAM sessions (all under mu): received messages not yet read by the session,
     * messages queued behind the one in flight, and the state of both directions. */
    pthread_cond_t scv;        /* signalled on every change below */
    bool is_stream, stream_started, recv_inflight, recv_eof, broken, send_inflight, counted;
    lip_rpc_buf rq[STREAM_RQ_MAX];
    double rq_t[STREAM_RQ_MAX];
    int rq_head, rq_n;
    grpc_byte_buffer *sq[STREAM_SQ_MAX];
    int sq_head, sq_n;
    long n_sent;
    /* guard (lip_rpc_server_set_guard): its per-call state, whether begin accepted the call and
     * end has run (under mu), and the retry hint sent as trailing metadata */
    void *guard_state;
    bool guarded, guard_ended;
    double retry_after_ms;
    grpc_metadata trailer;
    char trailer_val[32];
};

struct lip_rpc_server {
    lip_rpc_opts o;
    char host[256];
    grpc_server *srv;
    grpc_completion_queue *shutdown_cq;
    worker *workers;
    int nworkers;
    pthread_t *compute;
    int ncompute;
    lip_queue *jobs;
    method_ent *methods;
    int nmethods;
    pthread_mutex_t hmu; /* health table and watcher list; taken before any call's mu */
    health_ent *health;
    int nhealth;
    lip_rpc_call *watchers;
    atomic_int heavy_active;
    int heavy_limit;
    atomic_long n_calls, n_unimpl, n_busy, n_failed;
    atomic_int draining, cancel_all;
    bool started, stopped;
    int port;
    pthread_mutex_t wmu; /* the waiting list */
    lip_rpc_call *waiting;
    pthread_t reaper;
    bool reaper_running;
    pthread_mutex_t rmu;
    pthread_cond_t rcv;
    bool reaper_stop;
    pthread_mutex_t smu; /* stream session count */
    pthread_cond_t scv;
    int streams;
    atomic_long n_stream_busy;
    lip_rpc_guard guard;
    bool has_guard;
};

/* ---- call lifetime ------------------------------------------------------------------------ */

static void stream_uncount(lip_rpc_call *c);

static void call_unref(lip_rpc_call *c)
{
    if (atomic_fetch_sub(&c->refs, 1) != 1) return;
    if (c->guarded && !c->guard_ended && c->s->guard.end) /* ended without a status of ours */
        c->s->guard.end(c->s->guard.ud, c, c->guard_state, GRPC_STATUS_CANCELLED, "call ended");
    if (c->counted) stream_uncount(c); /* a stream call that ended before its session began */
    if (c->admitted) atomic_fetch_sub(&c->s->heavy_active, 1);
    if (c->call) grpc_call_unref(c->call);
    if (c->recv_bb) grpc_byte_buffer_destroy(c->recv_bb);
    if (c->send_bb) grpc_byte_buffer_destroy(c->send_bb);
    if (c->has_details) grpc_slice_unref(c->status_details);
    for (int i = 0; i < c->rq_n; i++) lip_free(c->rq[(c->rq_head + i) % STREAM_RQ_MAX].data);
    for (int i = 0; i < c->sq_n; i++)
        grpc_byte_buffer_destroy(c->sq[(c->sq_head + i) % STREAM_SQ_MAX]);
    pthread_cond_destroy(&c->scv);
    grpc_call_details_destroy(&c->details);
    grpc_metadata_array_destroy(&c->md);
    pthread_mutex_destroy(&c->mu);
    lip_free(c);
}

/* Starts a batch with one more reference; the caller holds c->mu. */
static int start_batch_locked(lip_rpc_call *c, const grpc_op *ops, size_t n, int kind)
{
    atomic_fetch_add(&c->refs, 1);
    grpc_call_error e = grpc_call_start_batch(c->call, ops, n, &c->tags[kind], NULL);
    if (e != GRPC_CALL_OK) {
        atomic_fetch_sub(&c->refs, 1); /* no completion will come; never the last reference */
        lip_log_error("rpc: %s: grpc_call_start_batch (tag %d) failed: %d", c->path, kind, (int)e);
        return -1;
    }
    return 0;
}

static grpc_byte_buffer *bb_from_buf(lip_rpc_buf *b)
{
    grpc_slice sl = b->data && b->len ? grpc_slice_new(b->data, b->len, lip_free)
                                      : grpc_empty_slice();
    if (b->data && !b->len) lip_free(b->data);
    b->data = NULL;
    b->len = 0;
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&sl, 1);
    grpc_slice_unref(sl);
    return bb;
}

/* Ends the call: initial metadata if not yet sent, the optional response, then the status.
 * Takes ownership of resp (may be NULL). Safe to call twice: the second call only frees resp. */
static void finish_call(lip_rpc_call *c, grpc_status_code code, const char *msg, lip_rpc_buf *resp)
{
    pthread_mutex_lock(&c->mu);
    if (c->finished) {
        pthread_mutex_unlock(&c->mu);
        if (resp) lip_free(resp->data);
        return;
    }
    c->finished = true;
    grpc_op ops[3];
    memset(ops, 0, sizeof ops);
    size_t n = 0;
    if (!c->md_sent) {
        ops[n].op = GRPC_OP_SEND_INITIAL_METADATA;
        n++;
        c->md_sent = true;
    }
    if (resp && code != GRPC_STATUS_OK && !resp->data) resp = NULL;
    if (resp && code == GRPC_STATUS_OK && c->guarded && c->s->guard.output)
        resp->len = c->s->guard.output(c->s->guard.ud, c, c->guard_state, resp->data, resp->len);
    if (resp) {
        if (c->send_bb) grpc_byte_buffer_destroy(c->send_bb);
        c->send_bb = bb_from_buf(resp);
        ops[n].op = GRPC_OP_SEND_MESSAGE;
        ops[n].data.send_message.send_message = c->send_bb;
        n++;
    }
    c->status_details = grpc_slice_from_copied_string(msg ? msg : "");
    c->has_details = true;
    ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    ops[n].data.send_status_from_server.status = code;
    ops[n].data.send_status_from_server.status_details = &c->status_details;
    if (c->retry_after_ms > 0) {
        snprintf(c->trailer_val, sizeof c->trailer_val, "%.0f", c->retry_after_ms);
        c->trailer.key = grpc_slice_from_static_string("retry-after-ms");
        c->trailer.value = grpc_slice_from_static_string(c->trailer_val);
        ops[n].data.send_status_from_server.trailing_metadata_count = 1;
        ops[n].data.send_status_from_server.trailing_metadata = &c->trailer;
    }
    n++;
    if (code != GRPC_STATUS_OK) {
        atomic_fetch_add(&c->s->n_failed, 1);
        lip_log_debug("rpc: %s -> %s: %s", c->path, lip_rpc_status_name(code), msg ? msg : "");
    }
    start_batch_locked(c, ops, n, TAG_STATUS);
    bool end = c->guarded && !c->guard_ended;
    c->guard_ended = true;
    pthread_mutex_unlock(&c->mu);
    if (end && c->s->guard.end) c->s->guard.end(c->s->guard.ud, c, c->guard_state, code, msg);
}

/* The guard's verdict on one request message; false when it ended the call. */
static bool guard_message(lip_rpc_call *c, const uint8_t *msg, size_t len)
{
    if (!c->guarded || !c->s->guard.message) return true;
    lip_err err = {0};
    grpc_status_code st = c->s->guard.message(c->s->guard.ud, c, c->guard_state, msg, len, &err);
    if (st == GRPC_STATUS_OK) return true;
    finish_call(c, st, err.msg, NULL);
    return false;
}

static void finish_err(lip_rpc_call *c, int lip_code, const char *msg, lip_rpc_buf *resp)
{
    finish_call(c, lip_rpc_status_of(lip_code), msg, resp);
}

static void wait_remove(lip_rpc_call *c);

static void start_recv(lip_rpc_call *c)
{
    pthread_mutex_lock(&c->mu);
    grpc_op ops[2];
    memset(ops, 0, sizeof ops);
    size_t n = 0;
    if (!c->md_sent && c->builtin != BUILTIN_CHECK && (!c->me || c->me->m.kind != LIP_RPC_UNARY)) {
        /* Streams send headers at once so clients see the stream open. */
        ops[n].op = GRPC_OP_SEND_INITIAL_METADATA;
        n++;
        c->md_sent = true;
    }
    ops[n].op = GRPC_OP_RECV_MESSAGE;
    ops[n].data.recv_message.recv_message = &c->recv_bb;
    n++;
    int rc = start_batch_locked(c, ops, n, TAG_RECV);
    pthread_mutex_unlock(&c->mu);
    if (rc) {
        wait_remove(c);
        finish_call(c, GRPC_STATUS_INTERNAL, "cannot read the request", NULL);
    }
}

/* Reads a received byte buffer (decompressing gzip/deflate) into one contiguous slice. */
static bool read_bb(grpc_byte_buffer *bb, grpc_slice *out)
{
    grpc_byte_buffer_reader r;
    if (!grpc_byte_buffer_reader_init(&r, bb)) return false;
    *out = grpc_byte_buffer_reader_readall(&r);
    grpc_byte_buffer_reader_destroy(&r);
    return true;
}

static bool deadline_passed(const lip_rpc_call *c)
{
    return c->deadline_ms > 0 && lip_time_ms() > c->deadline_ms;
}

/* ---- slow senders ------------------------------------------------------------------------- */

static void wait_add(lip_rpc_call *c)
{
    lip_rpc_server *s = c->s;
    pthread_mutex_lock(&s->wmu);
    c->waiting = true;
    c->wait_since = lip_time_ms();
    c->wait_prev = NULL;
    c->wait_next = s->waiting;
    if (s->waiting) s->waiting->wait_prev = c;
    s->waiting = c;
    pthread_mutex_unlock(&s->wmu);
}

static void wait_remove(lip_rpc_call *c)
{
    lip_rpc_server *s = c->s;
    pthread_mutex_lock(&s->wmu);
    if (c->waiting) {
        if (c->wait_prev) c->wait_prev->wait_next = c->wait_next;
        else s->waiting = c->wait_next;
        if (c->wait_next) c->wait_next->wait_prev = c->wait_prev;
        c->waiting = false;
    }
    pthread_mutex_unlock(&s->wmu);
}

/* Cancels admitted calls whose request message has not arrived in time. A call stays in the
 * list only while its RECV batch is pending (that batch's reference keeps it alive), and it is
 * removed under wmu before that reference is dropped, so cancelling under wmu is safe. */
static void *reaper_main(void *arg)
{
    lip_rpc_server *s = arg;
    pthread_mutex_lock(&s->rmu);
    while (!s->reaper_stop) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 250 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&s->rcv, &s->rmu, &ts);
        if (s->reaper_stop) break;
        double now = lip_time_ms();
        pthread_mutex_lock(&s->wmu);
        for (lip_rpc_call *c = s->waiting; c; c = c->wait_next)
            if (now - c->wait_since > s->o.recv_timeout_ms) {
                lip_log_warn("rpc: %s: request message not received after %.0f ms; cancelling",
                             c->path, now - c->wait_since);
                /* Ending the call with a status (rather than a bare cancel) tells the client
                 * at once; the pending read then completes with no message. */
                finish_call(c, GRPC_STATUS_DEADLINE_EXCEEDED,
                            "request message not received in time", NULL);
                c->wait_since = now + 1e12; /* once */
            }
        pthread_mutex_unlock(&s->wmu);
    }
    pthread_mutex_unlock(&s->rmu);
    return NULL;
}

/* ---- handlers ----------------------------------------------------------------------------- */

static void release_admission(lip_rpc_call *c)
{
    if (c->admitted) {
        c->admitted = false;
        atomic_fetch_sub(&c->s->heavy_active, 1);
    }
}

/* Runs a handler on a received message and sends its outcome. For bidi a success sends the
 * response and the next read starts when that send completes. The admission slot is released
 * before anything is sent, because for a stream the next message may be admitted as soon as the
 * send completes. */
static void run_handler(lip_rpc_call *c)
{
    grpc_byte_buffer *bb = c->recv_bb;
    c->recv_bb = NULL;
    grpc_slice sl;
    bool ok = read_bb(bb, &sl);
    grpc_byte_buffer_destroy(bb);
    lip_rpc_buf resp = {0};
    lip_err err = {0};
    grpc_status_code code = GRPC_STATUS_OK;
    const char *msg = NULL;
    if (!ok) {
        code = GRPC_STATUS_INVALID_ARGUMENT;
        msg = "cannot decompress the request message (unsupported or corrupt encoding)";
    } else if (c->guarded && c->s->guard.message &&
               (code = c->s->guard.message(c->s->guard.ud, c, c->guard_state,
                                           GRPC_SLICE_START_PTR(sl), GRPC_SLICE_LENGTH(sl),
                                           &err)) != GRPC_STATUS_OK) {
        msg = err.msg; /* the guard refused this message: the handler never sees it */
    } else if (c->cancel_flag || atomic_load(&c->s->cancel_all)) {
        code = GRPC_STATUS_CANCELLED;
        msg = "call cancelled before it ran";
    } else if (deadline_passed(c)) {
        code = GRPC_STATUS_DEADLINE_EXCEEDED;
        msg = "deadline passed while the call was queued";
    } else {
        int rc = c->me->m.fn(c->me->ud, c, GRPC_SLICE_START_PTR(sl), GRPC_SLICE_LENGTH(sl),
                             &resp, &err);
        if (rc == 0 && deadline_passed(c)) {
            lip_free(resp.data);
            resp.data = NULL;
            code = GRPC_STATUS_DEADLINE_EXCEEDED;
            msg = "deadline passed while the call ran";
        } else if (rc) {
            if (!err.msg[0]) lip_err_set(&err, rc, "%s", lip_err_text(rc));
            code = lip_rpc_status_of(rc);
            msg = err.msg;
        }
    }
    if (ok) grpc_slice_unref(sl);
    release_admission(c);
    if (code != GRPC_STATUS_OK || c->me->m.kind == LIP_RPC_UNARY) {
        finish_call(c, code, msg ? msg : "", &resp);
        return;
    }
    if (c->guarded && c->s->guard.output)
        resp.len = c->s->guard.output(c->s->guard.ud, c, c->guard_state, resp.data, resp.len);
    pthread_mutex_lock(&c->mu);
    if (c->send_bb) grpc_byte_buffer_destroy(c->send_bb);
    c->send_bb = bb_from_buf(&resp);
    grpc_op op;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_SEND_MESSAGE;
    op.data.send_message.send_message = c->send_bb;
    int src = start_batch_locked(c, &op, 1, TAG_SEND);
    pthread_mutex_unlock(&c->mu);
    if (src) finish_call(c, GRPC_STATUS_INTERNAL, "cannot send a stream response", NULL);
}

static void *compute_main(void *arg)
{
    lip_rpc_server *s = arg;
    for (;;) {
        void *item = NULL;
        if (lip_queue_pop(s->jobs, &item, -1) != 0) break;
        lip_rpc_call *c = item;
        run_handler(c);
        call_unref(c); /* the job's reference */
    }
    return NULL;
}

/* Admission: one more heavy call, or false when the limit is reached. */
static bool admit(lip_rpc_call *c)
{
    lip_rpc_server *s = c->s;
    if (atomic_fetch_add(&s->heavy_active, 1) >= s->heavy_limit) {
        atomic_fetch_sub(&s->heavy_active, 1);
        atomic_fetch_add(&s->n_busy, 1);
        return false;
    }
    c->admitted = true;
    return true;
}

static void busy(lip_rpc_call *c)
{
    char msg[160];
    snprintf(msg, sizeof msg, "server busy: %d heavy calls running or queued, limit %d; retry later",
             atomic_load(&c->s->heavy_active), c->s->heavy_limit);
    finish_call(c, GRPC_STATUS_RESOURCE_EXHAUSTED, msg, NULL);
}

static void dispatch_message(lip_rpc_call *c)
{
    if (!c->me->m.heavy) {
        run_handler(c);
        return;
    }
    if (c->me->m.kind == LIP_RPC_BIDI && !admit(c)) {
        grpc_byte_buffer_destroy(c->recv_bb);
        c->recv_bb = NULL;
        busy(c);
        return;
    }
    atomic_fetch_add(&c->refs, 1);
    if (lip_queue_push(c->s->jobs, c, 0) != 0) {
        atomic_fetch_sub(&c->refs, 1);
        release_admission(c);
        finish_call(c, GRPC_STATUS_UNAVAILABLE, "server is shutting down", NULL);
    }
}

/* ---- health ------------------------------------------------------------------------------- */

static health_ent *health_find(lip_rpc_server *s, const char *name)
{
    for (int i = 0; i < s->nhealth; i++)
        if (strcmp(s->health[i].name, name) == 0) return &s->health[i];
    return NULL;
}

static int health_add(lip_rpc_server *s, const char *name, int status)
{
    if (health_find(s, name)) return 0;
    health_ent *h = lip_realloc(s->health, (size_t)(s->nhealth + 1) * sizeof *h);
    if (!h) return LIP_ENOMEM;
    s->health = h;
    lip_strlcpy(h[s->nhealth].name, name, sizeof h[0].name);
    h[s->nhealth].status = status;
    s->nhealth++;
    return 0;
}

/* Sends the watcher's pending status, or ends the stream when finishing; c->mu held. */
static void watch_kick_locked(lip_rpc_call *c)
{
    if (c->watch_inflight || c->finished) return;
    if (c->watch_pending != c->watch_sent) {
        Grpc__Health__V1__HealthCheckResponse r = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
        r.status = (Grpc__Health__V1__HealthCheckResponse__ServingStatus)c->watch_pending;
        lip_rpc_buf b = {0};
        if (lip_rpc_pack(&r.base, &b, NULL)) return;
        if (c->send_bb) grpc_byte_buffer_destroy(c->send_bb);
        c->send_bb = bb_from_buf(&b);
        grpc_op op;
        memset(&op, 0, sizeof op);
        op.op = GRPC_OP_SEND_MESSAGE;
        op.data.send_message.send_message = c->send_bb;
        if (start_batch_locked(c, &op, 1, TAG_SEND) == 0) {
            c->watch_inflight = true;
            c->watch_sent = c->watch_pending;
        }
        return;
    }
    if (c->watch_finishing) {
        pthread_mutex_unlock(&c->mu);
        finish_call(c, GRPC_STATUS_OK, "", NULL);
        pthread_mutex_lock(&c->mu);
    }
}

static void watch_remove(lip_rpc_call *c)
{
    lip_rpc_server *s = c->s;
    bool drop = false;
    pthread_mutex_lock(&s->hmu);
    if (c->watch_listed) {
        for (lip_rpc_call **pp = &s->watchers; *pp; pp = &(*pp)->watch_next)
            if (*pp == c) {
                *pp = c->watch_next;
                break;
            }
        c->watch_listed = false;
        drop = true;
    }
    pthread_mutex_unlock(&s->hmu);
    if (drop) call_unref(c);
}

static void health_request(lip_rpc_call *c)
{
    lip_rpc_server *s = c->s;
    grpc_byte_buffer *bb = c->recv_bb;
    c->recv_bb = NULL;
    grpc_slice sl;
    bool ok = read_bb(bb, &sl);
    grpc_byte_buffer_destroy(bb);
    if (!ok) {
        finish_call(c, GRPC_STATUS_INVALID_ARGUMENT, "cannot decompress the request", NULL);
        return;
    }
    Grpc__Health__V1__HealthCheckRequest *req = grpc__health__v1__health_check_request__unpack(
        NULL, GRPC_SLICE_LENGTH(sl), GRPC_SLICE_START_PTR(sl));
    grpc_slice_unref(sl);
    if (!req) {
        finish_call(c, GRPC_STATUS_INVALID_ARGUMENT,
                    "cannot parse grpc.health.v1.HealthCheckRequest", NULL);
        return;
    }
    char name[PATH_MAX_LEN];
    size_t nl = lip_strlcpy(name, req->service ? req->service : "", sizeof name);
    grpc__health__v1__health_check_request__free_unpacked(req, NULL);

    pthread_mutex_lock(&s->hmu);
    health_ent *h = nl < sizeof name ? health_find(s, name) : NULL;
    int status = h ? h->status : LIP_HEALTH_SERVICE_UNKNOWN;
    if (c->builtin == BUILTIN_WATCH) {
        if (atomic_load(&s->draining)) status = LIP_HEALTH_NOT_SERVING;
        lip_strlcpy(c->watch_name, name, sizeof c->watch_name);
        atomic_fetch_add(&c->refs, 1); /* the watcher list's reference */
        c->watch_listed = true;
        c->watch_next = s->watchers;
        s->watchers = c;
        pthread_mutex_lock(&c->mu);
        c->watch_sent = -1;
        c->watch_pending = status;
        c->watch_finishing = atomic_load(&s->draining) != 0;
        watch_kick_locked(c);
        pthread_mutex_unlock(&c->mu);
        pthread_mutex_unlock(&s->hmu);
        return;
    }
    pthread_mutex_unlock(&s->hmu);
    if (!h) {
        char msg[PATH_MAX_LEN + 64];
        snprintf(msg, sizeof msg, "unknown service '%.*s' (health names are \"\" and the enabled "
                 "services)", 100, name);
        finish_call(c, GRPC_STATUS_NOT_FOUND, msg, NULL);
        return;
    }
    Grpc__Health__V1__HealthCheckResponse r = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
    r.status = (Grpc__Health__V1__HealthCheckResponse__ServingStatus)status;
    lip_rpc_buf b = {0};
    lip_err err = {0};
    if (lip_rpc_pack(&r.base, &b, &err)) {
        finish_err(c, err.code, err.msg, NULL);
        return;
    }
    finish_call(c, GRPC_STATUS_OK, "", &b);
}

int lip_rpc_server_set_health(lip_rpc_server *s, const char *service, int status)
{
    pthread_mutex_lock(&s->hmu);
    health_ent *h = health_find(s, service ? service : "");
    if (!h) {
        pthread_mutex_unlock(&s->hmu);
        return LIP_ENOTFOUND;
    }
    if (atomic_load(&s->draining)) status = LIP_HEALTH_NOT_SERVING;
    h->status = status;
    for (lip_rpc_call *w = s->watchers; w; w = w->watch_next) {
        if (strcmp(w->watch_name, h->name) != 0) continue;
        pthread_mutex_lock(&w->mu);
        w->watch_pending = status;
        watch_kick_locked(w);
        pthread_mutex_unlock(&w->mu);
    }
    pthread_mutex_unlock(&s->hmu);
    return 0;
}

int lip_rpc_server_health(lip_rpc_server *s, const char *service)
{
    pthread_mutex_lock(&s->hmu);
    health_ent *h = health_find(s, service ? service : "");
    int st = h ? h->status : LIP_HEALTH_SERVICE_UNKNOWN;
    pthread_mutex_unlock(&s->hmu);
    return st;
}

/* ---- stream sessions (LIP_RPC_STREAM) ------------------------------------------------------ */
/* A stream call gets its own session thread, which runs the handler once with the first message
 * and then reads and sends at will (lip_rpc_call_recv / lip_rpc_call_send). The queue thread only
 * moves messages: a received one goes into rq and the next RECV_MESSAGE starts while rq has room
 * (so a slow session pushes back on the client through HTTP/2 flow control instead of growing a
 * queue); a send completion starts the next queued message. One RECV_MESSAGE and one
 * SEND_MESSAGE are outstanding at most, and they may overlap (notes/grpc-c-core §5). */

static void abs_time(struct timespec *ts, double ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    long ns = ts->tv_nsec + (long)(ms * 1e6);
    ts->tv_sec += ns / 1000000000L;
    ts->tv_nsec = ns % 1000000000L;
}

static bool stream_over_locked(const lip_rpc_call *c)
{
    return c->broken || c->finished || c->cancel_flag || atomic_load(&c->s->cancel_all) ||
           deadline_passed(c);
}

/* Starts the next RECV_MESSAGE when there is room and the stream is still open; c->mu held. */
static void stream_recv_locked(lip_rpc_call *c)
{
    if (c->recv_inflight || c->recv_eof || c->broken || c->finished || c->rq_n >= STREAM_RQ_MAX)
        return;
    grpc_op op;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_RECV_MESSAGE;
    op.data.recv_message.recv_message = &c->recv_bb;
    if (start_batch_locked(c, &op, 1, TAG_RECV) == 0) c->recv_inflight = true;
    else c->broken = true;
}

/* Copies a received byte buffer into a lip_malloc buffer (1 byte for an empty message). */
static int take_msg(grpc_byte_buffer *bb, lip_rpc_buf *out)
{
    grpc_slice sl;
    if (!read_bb(bb, &sl)) return LIP_EFORMAT;
    size_t n = GRPC_SLICE_LENGTH(sl);
    out->data = lip_malloc(n ? n : 1);
    if (!out->data) {
        grpc_slice_unref(sl);
        return LIP_ENOMEM;
    }
    memcpy(out->data, GRPC_SLICE_START_PTR(sl), n);
    out->len = n;
    grpc_slice_unref(sl);
    return 0;
}

static bool stream_admit(lip_rpc_call *c)
{
    lip_rpc_server *s = c->s;
    pthread_mutex_lock(&s->smu);
    bool ok = s->streams < s->o.max_streams;
    if (ok) s->streams++;
    int n = s->streams;
    pthread_mutex_unlock(&s->smu);
    if (!ok) {
        atomic_fetch_add(&s->n_stream_busy, 1);
        char msg[160];
        snprintf(msg, sizeof msg, "server busy: %d streams open, limit %d; retry later", n,
                 s->o.max_streams);
        finish_call(c, GRPC_STATUS_RESOURCE_EXHAUSTED, msg, NULL);
        return false;
    }
    c->is_stream = true;
    c->counted = true;
    return true;
}

static void stream_uncount(lip_rpc_call *c)
{
    if (!c->counted) return;
    c->counted = false;
    lip_rpc_server *s = c->s;
    pthread_mutex_lock(&s->smu);
    s->streams--;
    pthread_cond_broadcast(&s->scv);
    pthread_mutex_unlock(&s->smu);
}

static void stream_on_recv(lip_rpc_call *c, bool ok)
{
    pthread_mutex_lock(&c->mu);
    c->recv_inflight = false;
    if (!ok) {
        c->broken = true;
    } else if (!c->recv_bb) {
        c->recv_eof = true;
    } else {
        lip_rpc_buf b = {0};
        int rc = take_msg(c->recv_bb, &b);
        if (rc) {
            c->broken = true; /* undecodable transport data: the session ends with an error */
        } else {
            int at = (c->rq_head + c->rq_n) % STREAM_RQ_MAX;
            c->rq[at] = b;
            c->rq_t[at] = lip_time_ms();
            c->rq_n++;
        }
    }
    if (c->recv_bb) grpc_byte_buffer_destroy(c->recv_bb);
    c->recv_bb = NULL;
    stream_recv_locked(c);
    pthread_cond_broadcast(&c->scv);
    pthread_mutex_unlock(&c->mu);
}

static void stream_on_send(lip_rpc_call *c, bool ok)
{
    pthread_mutex_lock(&c->mu);
    if (c->send_bb) grpc_byte_buffer_destroy(c->send_bb);
    c->send_bb = NULL;
    c->send_inflight = false;
    if (!ok) c->broken = true;
    if (ok && c->sq_n > 0 && !c->finished) {
        grpc_byte_buffer *bb = c->sq[c->sq_head];
        c->sq_head = (c->sq_head + 1) % STREAM_SQ_MAX;
        c->sq_n--;
        c->send_bb = bb;
        grpc_op op;
        memset(&op, 0, sizeof op);
        op.op = GRPC_OP_SEND_MESSAGE;
        op.data.send_message.send_message = bb;
        if (start_batch_locked(c, &op, 1, TAG_SEND) == 0) c->send_inflight = true;
        else c->broken = true;
    }
    pthread_cond_broadcast(&c->scv);
    pthread_mutex_unlock(&c->mu);
}

typedef struct stream_job {
    lip_rpc_call *c;
    lip_rpc_buf first;
} stream_job;

static void *stream_main(void *arg)
{
    stream_job *j = arg;
    lip_rpc_call *c = j->c;
    lip_rpc_buf resp = {0};
    lip_err err = {0};
    int rc = c->me->m.fn(c->me->ud, c, j->first.data, j->first.len, &resp, &err);
    lip_free(j->first.data);
    lip_free(j);
    if (resp.data && lip_rpc_call_send(c, &resp, NULL) != 0) rc = rc ? rc : LIP_ECANCELLED;
    /* Everything queued leaves before the status (or the stream broke). */
    pthread_mutex_lock(&c->mu);
    while ((c->send_inflight || c->sq_n > 0) && !stream_over_locked(c)) {
        struct timespec ts;
        abs_time(&ts, STREAM_POLL_MS);
        pthread_cond_timedwait(&c->scv, &c->mu, &ts);
    }
    bool cancelled = c->cancel_flag || c->broken;
    pthread_mutex_unlock(&c->mu);
    if (rc) {
        if (!err.msg[0]) lip_err_set(&err, rc, "%s", lip_err_text(rc));
        finish_call(c, lip_rpc_status_of(rc), err.msg, NULL);
    } else if (deadline_passed(c)) {
        finish_call(c, GRPC_STATUS_DEADLINE_EXCEEDED, "deadline passed during the stream", NULL);
    } else if (cancelled || atomic_load(&c->s->cancel_all)) {
        finish_call(c, GRPC_STATUS_CANCELLED, "stream cancelled", NULL);
    } else {
        finish_call(c, GRPC_STATUS_OK, "", NULL);
    }
    stream_uncount(c);
    call_unref(c); /* the session's reference */
    return NULL;
}

/* The first message arrived: start the session thread (it owns one reference). */
static void stream_start(lip_rpc_call *c)
{
    stream_job *j = lip_calloc(1, sizeof *j);
    int rc = j ? take_msg(c->recv_bb, &j->first) : LIP_ENOMEM;
    grpc_byte_buffer_destroy(c->recv_bb);
    c->recv_bb = NULL;
    if (rc) {
        lip_free(j);
        stream_uncount(c);
        finish_call(c, rc == LIP_EFORMAT ? GRPC_STATUS_INVALID_ARGUMENT : GRPC_STATUS_RESOURCE_EXHAUSTED,
                    rc == LIP_EFORMAT ? "cannot decompress the first stream message"
                                      : "out of memory for the first stream message", NULL);
        return;
    }
    if (!guard_message(c, j->first.data, j->first.len)) {
        lip_free(j->first.data);
        lip_free(j);
        stream_uncount(c);
        return;
    }
    j->c = c;
    atomic_fetch_add(&c->refs, 1);
    pthread_mutex_lock(&c->mu);
    c->stream_started = true;
    stream_recv_locked(c);
    pthread_mutex_unlock(&c->mu);
    pthread_attr_t at;
    pthread_attr_init(&at);
    pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
    pthread_t th;
    int e = pthread_create(&th, &at, stream_main, j);
    pthread_attr_destroy(&at);
    if (e != 0) {
        lip_free(j->first.data);
        lip_free(j);
        finish_call(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "cannot start a stream session thread",
                    NULL);
        stream_uncount(c);
        call_unref(c);
    }
}

int lip_rpc_call_recv(lip_rpc_call *c, lip_rpc_buf *msg, double *arrival_ms, double timeout_ms)
{
    msg->data = NULL;
    msg->len = 0;
    double until = timeout_ms > 0 ? lip_time_ms() + timeout_ms : 0;
    pthread_mutex_lock(&c->mu);
    int rc;
    for (;;) {
        if (c->rq_n > 0) {
            *msg = c->rq[c->rq_head];
            if (arrival_ms) *arrival_ms = c->rq_t[c->rq_head];
            c->rq[c->rq_head] = (lip_rpc_buf){0};
            c->rq_head = (c->rq_head + 1) % STREAM_RQ_MAX;
            c->rq_n--;
            stream_recv_locked(c);
            rc = 1;
            break;
        }
        if (c->recv_eof && !c->broken) {
            rc = 0;
            break;
        }
        if (stream_over_locked(c)) {
            rc = LIP_ECANCELLED;
            break;
        }
        double now = lip_time_ms();
        if (timeout_ms == 0 || (timeout_ms > 0 && now >= until)) {
            rc = LIP_ETIMEOUT;
            break;
        }
        double wait = timeout_ms > 0 ? LIP_MIN(until - now, STREAM_POLL_MS) : STREAM_POLL_MS;
        struct timespec ts;
        abs_time(&ts, wait);
        pthread_cond_timedwait(&c->scv, &c->mu, &ts);
    }
    pthread_mutex_unlock(&c->mu);
    if (rc == 1 && !guard_message(c, msg->data, msg->len)) {
        lip_free(msg->data);
        msg->data = NULL;
        msg->len = 0;
        return LIP_ECANCELLED; /* the call already ended with the guard's status */
    }
    return rc;
}

int lip_rpc_call_send(lip_rpc_call *c, lip_rpc_buf *msg, lip_err *err)
{
    pthread_mutex_lock(&c->mu);
    while (c->sq_n >= STREAM_SQ_MAX && !stream_over_locked(c)) {
        struct timespec ts;
        abs_time(&ts, STREAM_POLL_MS);
        pthread_cond_timedwait(&c->scv, &c->mu, &ts);
    }
    if (stream_over_locked(c)) {
        pthread_mutex_unlock(&c->mu);
        lip_free(msg->data);
        msg->data = NULL;
        msg->len = 0;
        return lip_err_set(err, LIP_ECANCELLED, "stream ended (client cancelled, disconnected, "
                           "deadline passed or server shutting down)");
    }
    if (c->guarded && c->s->guard.output)
        msg->len = c->s->guard.output(c->s->guard.ud, c, c->guard_state, msg->data, msg->len);
    grpc_byte_buffer *bb = bb_from_buf(msg);
    if (c->send_inflight) {
        c->sq[(c->sq_head + c->sq_n) % STREAM_SQ_MAX] = bb;
        c->sq_n++;
    } else {
        c->send_bb = bb;
        grpc_op op;
        memset(&op, 0, sizeof op);
        op.op = GRPC_OP_SEND_MESSAGE;
        op.data.send_message.send_message = bb;
        if (start_batch_locked(c, &op, 1, TAG_SEND) == 0) {
            c->send_inflight = true;
        } else {
            c->broken = true;
            pthread_mutex_unlock(&c->mu);
            return lip_err_set(err, LIP_EIO, "cannot start a send on the stream");
        }
    }
    c->n_sent++;
    pthread_mutex_unlock(&c->mu);
    return 0;
}

int lip_rpc_call_send_queued(lip_rpc_call *c)
{
    pthread_mutex_lock(&c->mu);
    int n = c->sq_n + (c->send_inflight ? 1 : 0);
    pthread_mutex_unlock(&c->mu);
    return n;
}

/* ---- completion-queue side ---------------------------------------------------------------- */

static void arm(worker *w);

static void on_new(lip_rpc_call *c, bool ok)
{
    lip_rpc_server *s = c->s;
    if (!ok) return; /* server shutting down: the request slot is released by our caller */
    if (!atomic_load(&s->draining)) arm(c->w);
    atomic_fetch_add(&s->n_calls, 1);
    c->t_start = lip_time_ms();
    size_t plen = GRPC_SLICE_LENGTH(c->details.method);
    bool path_ok = plen < sizeof c->path;
    if (path_ok) memcpy(c->path, GRPC_SLICE_START_PTR(c->details.method), plen);
    c->path[path_ok ? plen : 0] = 0;

    gpr_timespec dl = c->details.deadline;
    if (gpr_time_cmp(dl, gpr_inf_future(dl.clock_type)) != 0) {
        gpr_timespec left = gpr_time_sub(dl, gpr_now(dl.clock_type));
        c->deadline_ms = c->t_start + (double)gpr_time_to_millis(left);
        if (c->deadline_ms <= 0) c->deadline_ms = 1e-3; /* already passed; 0 means none */
    }

    /* Notice cancels early: RECV_CLOSE_ON_SERVER completes when the client goes away. */
    pthread_mutex_lock(&c->mu);
    grpc_op cl;
    memset(&cl, 0, sizeof cl);
    cl.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    cl.data.recv_close_on_server.cancelled = &c->close_cancelled;
    start_batch_locked(c, &cl, 1, TAG_CLOSE);
    pthread_mutex_unlock(&c->mu);

    if (path_ok && strcmp(c->path, HEALTH_CHECK_PATH) == 0) c->builtin = BUILTIN_CHECK;
    else if (path_ok && strcmp(c->path, HEALTH_WATCH_PATH) == 0) c->builtin = BUILTIN_WATCH;
    else if (path_ok)
        for (int i = 0; i < s->nmethods; i++)
            if (strcmp(s->methods[i].path, c->path) == 0) c->me = &s->methods[i];
    if (!c->builtin && !c->me) {
        atomic_fetch_add(&s->n_unimpl, 1);
        char msg[PATH_MAX_LEN + 64];
        snprintf(msg, sizeof msg, "method '%.*s' is not implemented on this server",
                 (int)LIP_MIN(plen, 120), (const char *)GRPC_SLICE_START_PTR(c->details.method));
        finish_call(c, GRPC_STATUS_UNIMPLEMENTED, msg, NULL);
        return;
    }
    if (c->me && s->has_guard && s->guard.begin) {
        /* Before admission and before the request is read: a refused caller costs neither a
         * slot nor the bytes of its message. */
        lip_err gerr = {0};
        grpc_status_code st = s->guard.begin(s->guard.ud, c, &c->guard_state, &gerr);
        if (st != GRPC_STATUS_OK) {
            finish_call(c, st, gerr.msg, NULL);
            return;
        }
        c->guarded = true;
    }
    if (c->me && c->me->m.heavy && c->me->m.kind == LIP_RPC_UNARY) {
        if (s->o.request_timeout_ms > 0) {
            double t = c->t_start + s->o.request_timeout_ms;
            if (c->deadline_ms <= 0 || t < c->deadline_ms) c->deadline_ms = t;
        }
        if (!admit(c)) {
            busy(c);
            return;
        }
        if (s->o.recv_timeout_ms > 0) wait_add(c);
    }
    if (c->me && c->me->m.kind == LIP_RPC_STREAM && !stream_admit(c)) return;
    start_recv(c);
}

static void on_recv(lip_rpc_call *c, bool ok)
{
    wait_remove(c);
    if (c->is_stream && c->stream_started) {
        stream_on_recv(c, ok);
        return;
    }
    if (!ok || !c->recv_bb) {
        if (c->recv_bb) grpc_byte_buffer_destroy(c->recv_bb);
        c->recv_bb = NULL;
        if (!ok)
            finish_call(c, GRPC_STATUS_CANCELLED, "call ended while reading the request", NULL);
        else if (c->me && c->me->m.kind == LIP_RPC_BIDI)
            finish_call(c, GRPC_STATUS_OK, "", NULL); /* client half-closed: done */
        else
            finish_call(c, GRPC_STATUS_INVALID_ARGUMENT,
                        "the client closed the call without sending a request message", NULL);
        return;
    }
    if (c->builtin) {
        health_request(c);
        return;
    }
    if (c->me->m.kind == LIP_RPC_STREAM) {
        stream_start(c);
        return;
    }
    dispatch_message(c);
}

static void on_send(lip_rpc_call *c, bool ok)
{
    if (c->is_stream) {
        stream_on_send(c, ok);
        return;
    }
    pthread_mutex_lock(&c->mu);
    if (c->send_bb) grpc_byte_buffer_destroy(c->send_bb);
    c->send_bb = NULL;
    if (c->builtin == BUILTIN_WATCH) {
        c->watch_inflight = false;
        if (ok) watch_kick_locked(c);
        pthread_mutex_unlock(&c->mu);
        if (!ok) {
            finish_call(c, GRPC_STATUS_CANCELLED, "watch stream broken", NULL);
            watch_remove(c);
        }
        return;
    }
    pthread_mutex_unlock(&c->mu);
    if (!ok) {
        finish_call(c, GRPC_STATUS_CANCELLED, "stream broken while sending", NULL);
        return;
    }
    start_recv(c);
}

static void on_close(lip_rpc_call *c)
{
    if (c->close_cancelled) c->cancel_flag = 1;
    if (c->is_stream) {
        pthread_mutex_lock(&c->mu);
        if (c->close_cancelled) c->broken = true;
        pthread_cond_broadcast(&c->scv);
        pthread_mutex_unlock(&c->mu);
    }
    if (c->builtin == BUILTIN_WATCH) {
        /* The client went away or the stream ended: stop notifying it. */
        if (c->close_cancelled) finish_call(c, GRPC_STATUS_CANCELLED, "cancelled", NULL);
        watch_remove(c);
    }
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    for (;;) {
        grpc_event ev = grpc_completion_queue_next(w->cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN) break;
        if (ev.type != GRPC_OP_COMPLETE) continue;
        tag *t = ev.tag;
        lip_rpc_call *c = t->c;
        switch (t->kind) {
        case TAG_NEW: on_new(c, ev.success); break;
        case TAG_RECV: on_recv(c, ev.success); break;
        case TAG_SEND: on_send(c, ev.success); break;
        case TAG_STATUS: break;
        case TAG_CLOSE: on_close(c); break;
        default: LIP_ASSERT(!"unknown completion tag");
        }
        call_unref(c); /* the completed batch's reference */
    }
    return NULL;
}

static void arm(worker *w)
{
    lip_rpc_server *s = w->s;
    lip_rpc_call *c = lip_calloc(1, sizeof *c);
    if (!c) {
        lip_log_error("rpc: out of memory arming a call slot");
        return;
    }
    c->s = s;
    c->w = w;
    atomic_init(&c->refs, 1);
    pthread_mutex_init(&c->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&c->scv, &ca);
    pthread_condattr_destroy(&ca);
    grpc_call_details_init(&c->details);
    grpc_metadata_array_init(&c->md);
    for (int i = 0; i < TAG_COUNT; i++) c->tags[i] = (tag){c, i};
    grpc_call_error e = grpc_server_request_call(s->srv, &c->call, &c->details, &c->md, w->cq,
                                                 w->cq, &c->tags[TAG_NEW]);
    if (e != GRPC_CALL_OK) {
        c->refs = 1;
        call_unref(c);
    }
}

/* ---- public ------------------------------------------------------------------------------- */

lip_rpc_opts lip_rpc_opts_default(void)
{
    return (lip_rpc_opts){
        .host = "0.0.0.0",
        .port = 0,
        .cq_threads = 2,
        .compute_threads = 2,
        .max_queued = 8,
        .max_recv_bytes = 100 << 20,
        .max_send_bytes = 100 << 20,
        .keepalive_time_ms = 10000,
        .keepalive_timeout_ms = 3000,
        .min_client_ping_ms = 5000,
        .request_timeout_ms = 0,
        .recv_timeout_ms = 30000,
        .max_streams = 64,
    };
}

lip_rpc_server *lip_rpc_server_new(const lip_rpc_opts *opts, lip_err *err)
{
    lip_rpc_server *s = lip_calloc(1, sizeof *s);
    if (!s) {
        lip_err_set(err, LIP_ENOMEM, "out of memory creating the server");
        return NULL;
    }
    s->o = opts ? *opts : lip_rpc_opts_default();
    lip_strlcpy(s->host, s->o.host && *s->o.host ? s->o.host : "0.0.0.0", sizeof s->host);
    s->o.host = s->host;
    if (s->o.cq_threads < 1 || s->o.cq_threads > 64 || s->o.compute_threads < 1 ||
        s->o.compute_threads > 256 || s->o.max_queued < 0 || s->o.max_queued > 100000 ||
        s->o.port < 0 || s->o.port > 65535 || s->o.max_recv_bytes < 1024 ||
        s->o.max_send_bytes < 1024 || s->o.max_streams < 0 || s->o.max_streams > 100000) {
        lip_err_set(err, LIP_EINVAL,
                    "bad server options: cq_threads %d (1-64), compute_threads %d (1-256), "
                    "max_queued %d (0-100000), port %d (0-65535), max message %d/%d (>= 1024), "
                    "max_streams %d (0-100000)",
                    s->o.cq_threads, s->o.compute_threads, s->o.max_queued, s->o.port,
                    s->o.max_recv_bytes, s->o.max_send_bytes, s->o.max_streams);
        lip_free(s);
        return NULL;
    }
    pthread_mutex_init(&s->hmu, NULL);
    pthread_mutex_init(&s->wmu, NULL);
    pthread_mutex_init(&s->rmu, NULL);
    pthread_cond_init(&s->rcv, NULL);
    pthread_mutex_init(&s->smu, NULL);
    pthread_cond_init(&s->scv, NULL);
    s->heavy_limit = s->o.compute_threads + s->o.max_queued;
    grpc_init();
    if (health_add(s, "", LIP_HEALTH_NOT_SERVING)) {
        lip_err_set(err, LIP_ENOMEM, "out of memory creating the server");
        lip_rpc_server_free(s);
        return NULL;
    }
    return s;
}

int lip_rpc_server_add_service(lip_rpc_server *s, const char *service, const lip_rpc_method *m,
                               int n, void *ud, lip_err *err)
{
    if (s->started)
        return lip_err_set(err, LIP_EINVAL, "service %s added after the server started", service);
    method_ent *me = lip_realloc(s->methods, (size_t)(s->nmethods + n) * sizeof *me);
    if (!me) return lip_err_set(err, LIP_ENOMEM, "out of memory adding service %s", service);
    s->methods = me;
    for (int i = 0; i < n; i++) {
        method_ent *e = &s->methods[s->nmethods];
        int len = snprintf(e->path, sizeof e->path, "/%s/%s", service, m[i].name);
        if (len < 0 || (size_t)len >= sizeof e->path)
            return lip_err_set(err, LIP_EINVAL, "method path /%s/%s longer than %zu bytes",
                               service, m[i].name, sizeof e->path - 1);
        for (int j = 0; j < s->nmethods; j++)
            if (strcmp(s->methods[j].path, e->path) == 0)
                return lip_err_set(err, LIP_EINVAL, "method %s registered twice", e->path);
        e->m = m[i];
        e->ud = ud;
        s->nmethods++;
    }
    pthread_mutex_lock(&s->hmu);
    int rc = health_add(s, service, LIP_HEALTH_NOT_SERVING);
    pthread_mutex_unlock(&s->hmu);
    if (rc) return lip_err_set(err, rc, "out of memory adding service %s", service);
    return 0;
}

/* Reads a PEM file into a NUL-terminated string (lip_free). 1 MiB is far more than any chain. */
static int read_pem(const char *what, const char *path, char **out, lip_err *err)
{
    uint8_t *d = NULL;
    size_t n = 0;
    lip_err fe = {0};
    int rc = lip_file_read(path, 1 << 20, &d, &n, &fe);
    if (rc) return lip_err_set(err, rc, "%s: %s", what, fe.msg);
    if (n == 0 || memchr(d, 0, n) || !strstr((const char *)d, "-----BEGIN ")) {
        lip_free(d);
        return lip_err_set(err, LIP_EFORMAT, "%s '%s': expected a PEM file (\"-----BEGIN ...\"), "
                           "got %zu bytes without one", what, path, n);
    }
    *out = (char *)d; /* lip_file_read appends a NUL */
    return 0;
}

/* Plaintext, or TLS from the PEM files of the options (mTLS with tls_client_ca). The PEM
 * strings are only needed while the credentials are created (gRPC copies them). */
static int server_credentials(lip_rpc_server *s, grpc_server_credentials **cr, lip_err *err)
{
    const char *cert = s->o.tls_cert, *key = s->o.tls_key, *ca = s->o.tls_client_ca;
    bool tls = cert && *cert, has_key = key && *key, has_ca = ca && *ca;
    if (!tls && !has_key && !has_ca) {
        *cr = grpc_insecure_server_credentials_create();
        return 0;
    }
    if (!tls || !has_key)
        return lip_err_set(err, LIP_EINVAL, "TLS needs both a certificate and a key (got %s, "
                           "%s)%s", tls ? "a certificate" : "no certificate",
                           has_key ? "a key" : "no key", has_ca ? "; a client CA alone is "
                           "not enough" : "");
    char *pc = NULL, *pk = NULL, *pca = NULL;
    int rc = read_pem("TLS certificate", cert, &pc, err);
    if (!rc) rc = read_pem("TLS key", key, &pk, err);
    if (!rc && has_ca) rc = read_pem("TLS client CA", ca, &pca, err);
    if (!rc) {
        grpc_ssl_pem_key_cert_pair pair = {.private_key = pk, .cert_chain = pc};
        *cr = grpc_ssl_server_credentials_create_ex(
            pca, &pair, 1,
            has_ca ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
                   : GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE,
            NULL);
        if (!*cr)
            rc = lip_err_set(err, LIP_EFORMAT, "TLS: gRPC refused certificate '%s' / key '%s'",
                             cert, key);
    }
    if (pk) memset(pk, 0, strlen(pk)); /* do not leave the private key in freed memory */
    lip_free(pc);
    lip_free(pk);
    lip_free(pca);
    return rc;
}

int lip_rpc_server_set_guard(lip_rpc_server *s, const lip_rpc_guard *g, lip_err *err)
{
    if (s->started) return lip_err_set(err, LIP_EINVAL, "guard set after the server started");
    s->has_guard = g != NULL;
    if (g) s->guard = *g;
    else memset(&s->guard, 0, sizeof s->guard);
    return 0;
}

int lip_rpc_server_start(lip_rpc_server *s, lip_err *err)
{
    if (s->started) return lip_err_set(err, LIP_EINVAL, "server already started");
    grpc_arg args[] = {
        {.type = GRPC_ARG_INTEGER, .key = GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH,
         .value.integer = s->o.max_recv_bytes},
        {.type = GRPC_ARG_INTEGER, .key = GRPC_ARG_MAX_SEND_MESSAGE_LENGTH,
         .value.integer = s->o.max_send_bytes},
        {.type = GRPC_ARG_INTEGER, .key = GRPC_ARG_KEEPALIVE_TIME_MS,
         .value.integer = s->o.keepalive_time_ms},
        {.type = GRPC_ARG_INTEGER, .key = GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
         .value.integer = s->o.keepalive_timeout_ms},
        {.type = GRPC_ARG_INTEGER, .key = GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, .value.integer = 1},
        {.type = GRPC_ARG_INTEGER, .key = GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
         .value.integer = s->o.min_client_ping_ms},
        {.type = GRPC_ARG_INTEGER, .key = GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, .value.integer = 0},
    };
    grpc_channel_args ca = {.num_args = LIP_ARRAY_LEN(args), .args = args};
    s->srv = grpc_server_create(&ca, NULL);
    if (!s->srv) return lip_err_set(err, LIP_EINTERNAL, "grpc_server_create failed");
    s->workers = lip_calloc((size_t)s->o.cq_threads, sizeof *s->workers);
    s->ncompute = s->o.compute_threads;
    s->compute = lip_calloc((size_t)s->ncompute, sizeof *s->compute);
    s->jobs = lip_queue_new((size_t)s->heavy_limit + 1);
    if (!s->workers || !s->compute || !s->jobs)
        return lip_err_set(err, LIP_ENOMEM, "out of memory starting the server");
    for (int i = 0; i < s->o.cq_threads; i++) {
        s->workers[i].s = s;
        s->workers[i].cq = grpc_completion_queue_create_for_next(NULL);
        grpc_server_register_completion_queue(s->srv, s->workers[i].cq, NULL);
        s->nworkers++;
    }
    s->shutdown_cq = grpc_completion_queue_create_for_next(NULL);
    grpc_server_register_completion_queue(s->srv, s->shutdown_cq, NULL);

    char addr[300];
    if (strchr(s->host, ':') && s->host[0] != '[')
        snprintf(addr, sizeof addr, "[%s]:%d", s->host, s->o.port);
    else
        snprintf(addr, sizeof addr, "%s:%d", s->host, s->o.port);
    grpc_server_credentials *cr = NULL;
    int trc = server_credentials(s, &cr, err);
    if (trc) return trc;
    s->port = grpc_server_add_http2_port(s->srv, addr, cr);
    grpc_server_credentials_release(cr);
    if (s->port <= 0)
        return lip_err_set(err, LIP_EIO, "cannot listen on %s (address in use or not available)",
                           addr);
    grpc_server_start(s->srv);
    s->started = true;
    for (int i = 0; i < s->ncompute; i++)
        if (pthread_create(&s->compute[i], NULL, compute_main, s) != 0) {
            s->ncompute = i;
            return lip_err_set(err, LIP_ENOMEM, "cannot start compute thread %d", i);
        }
    if (s->o.recv_timeout_ms > 0) {
        if (pthread_create(&s->reaper, NULL, reaper_main, s) != 0)
            return lip_err_set(err, LIP_ENOMEM, "cannot start the reaper thread");
        s->reaper_running = true;
    }
    for (int i = 0; i < s->nworkers; i++) {
        for (int k = 0; k < ARMED_PER_CQ; k++) arm(&s->workers[i]);
        if (pthread_create(&s->workers[i].th, NULL, worker_main, &s->workers[i]) != 0)
            return lip_err_set(err, LIP_ENOMEM, "cannot start queue thread %d", i);
        s->workers[i].running = true;
    }
    return 0;
}

int lip_rpc_server_port(const lip_rpc_server *s) { return s->port; }

void lip_rpc_server_stats(lip_rpc_server *s, lip_rpc_stats *out)
{
    out->calls = atomic_load(&s->n_calls);
    out->unimplemented = atomic_load(&s->n_unimpl);
    out->rejected_busy = atomic_load(&s->n_busy);
    out->failed = atomic_load(&s->n_failed);
    out->heavy_active = atomic_load(&s->heavy_active);
    pthread_mutex_lock(&s->smu);
    out->streams = s->streams;
    pthread_mutex_unlock(&s->smu);
    out->rejected_streams = atomic_load(&s->n_stream_busy);
}

void lip_rpc_server_shutdown(lip_rpc_server *s, double grace_ms)
{
    if (!s || s->stopped) return;
    s->stopped = true;
    atomic_store(&s->draining, 1);
    if (!s->srv) return;
    if (s->started) {
        /* Every status goes NOT_SERVING, watchers get it and their streams end. */
        pthread_mutex_lock(&s->hmu);
        for (int i = 0; i < s->nhealth; i++) s->health[i].status = LIP_HEALTH_NOT_SERVING;
        for (lip_rpc_call *w = s->watchers; w; w = w->watch_next) {
            pthread_mutex_lock(&w->mu);
            w->watch_pending = LIP_HEALTH_NOT_SERVING;
            w->watch_finishing = true;
            watch_kick_locked(w);
            pthread_mutex_unlock(&w->mu);
        }
        pthread_mutex_unlock(&s->hmu);

        int shutdown_tag = 0;
        grpc_server_shutdown_and_notify(s->srv, s->shutdown_cq, &shutdown_tag);
        gpr_timespec dl = gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                                       gpr_time_from_millis((int64_t)grace_ms, GPR_TIMESPAN));
        grpc_event ev = grpc_completion_queue_next(s->shutdown_cq, dl, NULL);
        if (ev.type != GRPC_OP_COMPLETE) {
            lip_log_warn("rpc: calls still running after the %.0f ms grace period; cancelling",
                         grace_ms);
            atomic_store(&s->cancel_all, 1);
            grpc_server_cancel_all_calls(s->srv);
            grpc_completion_queue_next(s->shutdown_cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
        }
        /* Stream sessions see cancel-all (or their call's end) within STREAM_POLL_MS; their
         * last batches still need the queue threads, which run until below. */
        atomic_store(&s->cancel_all, 1);
        pthread_mutex_lock(&s->smu);
        while (s->streams > 0) pthread_cond_wait(&s->scv, &s->smu);
        pthread_mutex_unlock(&s->smu);
    }
    if (s->reaper_running) {
        pthread_mutex_lock(&s->rmu);
        s->reaper_stop = true;
        pthread_cond_signal(&s->rcv);
        pthread_mutex_unlock(&s->rmu);
        pthread_join(s->reaper, NULL);
        s->reaper_running = false;
    }
    /* Compute jobs still queued see cancel_all or cancelled calls and end fast. */
    if (s->jobs) lip_queue_close(s->jobs);
    for (int i = 0; i < s->ncompute; i++) pthread_join(s->compute[i], NULL);
    s->ncompute = 0;
    for (int i = 0; i < s->nworkers; i++) {
        grpc_completion_queue_shutdown(s->workers[i].cq);
        if (s->workers[i].running) {
            pthread_join(s->workers[i].th, NULL);
            s->workers[i].running = false;
            continue;
        }
        /* A queue whose thread never ran: release the request slots armed on it. */
        for (;;) {
            grpc_event ev = grpc_completion_queue_next(s->workers[i].cq,
                                                       gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
            if (ev.type == GRPC_QUEUE_SHUTDOWN) break;
            if (ev.type == GRPC_OP_COMPLETE) call_unref(((tag *)ev.tag)->c);
        }
    }
    grpc_server_destroy(s->srv);
    s->srv = NULL;
    if (s->shutdown_cq) {
        grpc_completion_queue_shutdown(s->shutdown_cq);
        while (grpc_completion_queue_next(s->shutdown_cq, gpr_inf_future(GPR_CLOCK_MONOTONIC),
                                          NULL).type != GRPC_QUEUE_SHUTDOWN) {
        }
        grpc_completion_queue_destroy(s->shutdown_cq);
        s->shutdown_cq = NULL;
    }
    for (int i = 0; i < s->nworkers; i++) grpc_completion_queue_destroy(s->workers[i].cq);
    s->nworkers = 0;
}

void lip_rpc_server_free(lip_rpc_server *s)
{
    if (!s) return;
    lip_rpc_server_shutdown(s, 0);
    lip_queue_free(s->jobs);
    lip_free(s->workers);
    lip_free(s->compute);
    lip_free(s->methods);
    lip_free(s->health);
    pthread_mutex_destroy(&s->hmu);
    pthread_mutex_destroy(&s->wmu);
    pthread_mutex_destroy(&s->rmu);
    pthread_cond_destroy(&s->rcv);
    pthread_mutex_destroy(&s->smu);
    pthread_cond_destroy(&s->scv);
    lip_free(s);
    grpc_shutdown();
}

/* ---- call accessors ----------------------------------------------------------------------- */

bool lip_rpc_call_deadline_passed(const lip_rpc_call *c) { return deadline_passed(c); }

bool lip_rpc_call_cancelled(const lip_rpc_call *c)
{
    return c->cancel_flag || atomic_load(&c->s->cancel_all) || deadline_passed(c);
}

double lip_rpc_call_start_ms(const lip_rpc_call *c) { return c->t_start; }
double lip_rpc_call_deadline_ms(const lip_rpc_call *c) { return c->deadline_ms; }
const volatile int *lip_rpc_call_cancel_flag(const lip_rpc_call *c) { return &c->cancel_flag; }
const char *lip_rpc_call_path(const lip_rpc_call *c) { return c->path; }

int lip_rpc_call_metadata(const lip_rpc_call *c, const char *key, char *buf, size_t n)
{
    if (n) buf[0] = 0;
    size_t kl = strlen(key);
    int found = -1;
    for (size_t i = 0; i < c->md.count; i++) {
        const grpc_metadata *m = &c->md.metadata[i];
        if (GRPC_SLICE_LENGTH(m->key) != kl || memcmp(GRPC_SLICE_START_PTR(m->key), key, kl))
            continue;
        size_t vl = GRPC_SLICE_LENGTH(m->value);
        const uint8_t *v = GRPC_SLICE_START_PTR(m->value);
        if (vl >= n || memchr(v, 0, vl)) {
            found = -1; /* a later value that does not fit must not leave an earlier one */
            if (n) buf[0] = 0;
            continue;
        }
        memcpy(buf, v, vl);
        buf[vl] = 0;
        found = (int)vl;
    }
    return found;
}

void lip_rpc_call_peer(const lip_rpc_call *c, char *buf, size_t n)
{
    if (!n) return;
    buf[0] = 0;
    char *p = c->call ? grpc_call_get_peer(c->call) : NULL;
    if (p) {
        lip_strlcpy(buf, p, n);
        gpr_free(p);
    }
}

void lip_rpc_call_set_retry_after(lip_rpc_call *c, double ms)
{
    pthread_mutex_lock(&((lip_rpc_call *)c)->mu);
    c->retry_after_ms = ms;
    pthread_mutex_unlock(&((lip_rpc_call *)c)->mu);
}
