/* SPDX-License-Identifier: MIT */
/* rpc/client.c: a small blocking gRPC client on the C core: one channel with the message-size
 * limits, unary calls with a deadline, and bidi streams driven one operation at a time. Each
 * call has its own pluck queue, so one client can be shared by many threads. Used by
 * `lipsync client`, `lipsync bench serve`, the tests and the compositing role's remote inference
 * (lip_rpc_client_new_opts: round_robin over a list or DNS name, retries of UNAVAILABLE). */
#include "rpc/rpc.h"

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/time.h>
#include <stdio.h>
#include <string.h>

struct lip_rpc_client {
    grpc_channel *ch;
    grpc_metadata auth;      /* authorization: Bearer <key>, sent with every call */
    size_t nauth;            /* 0 or 1 */
};

struct lip_rpc_stream {
    grpc_completion_queue *cq;
    grpc_call *call;
    bool md_received, closed_send, broken;
    grpc_metadata_array md_init;
};

static gpr_timespec deadline_of(double timeout_ms)
{
    if (timeout_ms <= 0) return gpr_inf_future(GPR_CLOCK_MONOTONIC);
    return gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                        gpr_time_from_micros((int64_t)(timeout_ms * 1000.0), GPR_TIMESPAN));
}

static void noop_destroy(void *p) { (void)p; }

/* Copies a received message out of the core's buffer into a lip_malloc buffer. */
static int take_bb(grpc_byte_buffer *bb, lip_rpc_buf *out, lip_err *err)
{
    grpc_byte_buffer_reader r;
    if (!grpc_byte_buffer_reader_init(&r, bb))
        return lip_err_set(err, LIP_EFORMAT, "cannot decompress the response message");
    grpc_slice sl = grpc_byte_buffer_reader_readall(&r);
    grpc_byte_buffer_reader_destroy(&r);
    size_t n = GRPC_SLICE_LENGTH(sl);
    out->data = lip_malloc(n ? n : 1);
    if (!out->data) {
        grpc_slice_unref(sl);
        return lip_err_set(err, LIP_ENOMEM, "out of memory for a %zu-byte response", n);
    }
    memcpy(out->data, GRPC_SLICE_START_PTR(sl), n);
    out->len = n;
    grpc_slice_unref(sl);
    return 0;
}

static void set_status(lip_rpc_status *st, grpc_status_code code, grpc_slice details)
{
    if (!st) return;
    st->code = code;
    size_t n = LIP_MIN(GRPC_SLICE_LENGTH(details), sizeof st->details - 1);
    memcpy(st->details, GRPC_SLICE_START_PTR(details), n);
    st->details[n] = 0;
}

lip_rpc_client_opts lip_rpc_client_opts_default(void)
{
    lip_rpc_client_opts o = {0};
    return o;
}

/* The service config JSON of o: the load-balancing policy and a retry policy for UNAVAILABLE
 * (gRPC caps maxAttempts at 5). Empty when o asks for neither. */
static int service_config(const lip_rpc_client_opts *o, char *buf, size_t n, lip_err *err)
{
    buf[0] = 0;
    bool lb = o->lb_policy && *o->lb_policy;
    bool retry = o->max_attempts > 1;
    if (!lb && !retry) return 0;
    for (const char *p = lb ? o->lb_policy : ""; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || *p == '_'))
            return lip_err_set(err, LIP_EINVAL, "load-balancing policy '%s': expected a name "
                               "such as round_robin or pick_first", o->lb_policy);
    int backoff = o->retry_backoff_ms > 0 ? o->retry_backoff_ms : 50;
    int w = snprintf(buf, n, "{");
    if (lb && w > 0 && (size_t)w < n)
        w += snprintf(buf + w, n - (size_t)w, "\"loadBalancingConfig\":[{\"%s\":{}}]%s",
                      o->lb_policy, retry ? "," : "");
    if (retry && w > 0 && (size_t)w < n)
        /* name [{}] is the default method config: every method of the channel. */
        w += snprintf(buf + w, n - (size_t)w,
                      "\"methodConfig\":[{\"name\":[{}],\"retryPolicy\":{\"maxAttempts\":%d,"
                      "\"initialBackoff\":\"%d.%03ds\",\"maxBackoff\":\"%d.%03ds\","
                      "\"backoffMultiplier\":2,\"retryableStatusCodes\":[\"UNAVAILABLE\"]}}]",
                      LIP_MIN(o->max_attempts, 5), backoff / 1000, backoff % 1000,
                      (backoff * 8) / 1000, (backoff * 8) % 1000);
    if (w > 0 && (size_t)w < n) w += snprintf(buf + w, n - (size_t)w, "}");
    if (w <= 0 || (size_t)w >= n)
        return lip_err_set(err, LIP_EINVAL, "service config longer than %zu bytes", n - 1);
    return 0;
}

/* Reads a PEM file for the client's TLS (NUL-terminated, lip_free). */
static int client_pem(const char *what, const char *path, char **out, lip_err *err)
{
    uint8_t *d = NULL;
    size_t n = 0;
    lip_err fe = {0};
    int rc = lip_file_read(path, 1 << 20, &d, &n, &fe);
    if (rc) return lip_err_set(err, rc, "%s: %s", what, fe.msg);
    if (n == 0 || memchr(d, 0, n) || !strstr((const char *)d, "-----BEGIN ")) {
        lip_free(d);
        return lip_err_set(err, LIP_EFORMAT, "%s '%s': expected a PEM file (\"-----BEGIN ...\")",
                           what, path);
    }
    *out = (char *)d;
    return 0;
}

/* Insecure credentials, or TLS trusting o->tls_ca with an optional client certificate. */
static int client_credentials(const lip_rpc_client_opts *o, grpc_channel_credentials **cr,
                              lip_err *err)
{
    bool tls = o->tls_ca && *o->tls_ca, has_cert = o->tls_cert && *o->tls_cert,
         has_key = o->tls_key && *o->tls_key;
    if (!tls && !has_cert && !has_key) {
        *cr = grpc_insecure_credentials_create();
        return 0;
    }
    if (!tls)
        return lip_err_set(err, LIP_EINVAL, "a client certificate needs TLS: give the CA file "
                           "that signed the server's certificate too");
    if (has_cert != has_key)
        return lip_err_set(err, LIP_EINVAL, "client certificate and key go together (got %s)",
                           has_cert ? "a certificate without a key" : "a key without a "
                           "certificate");
    char *pca = NULL, *pc = NULL, *pk = NULL;
    int rc = client_pem("TLS CA", o->tls_ca, &pca, err);
    if (!rc && has_cert) rc = client_pem("TLS client certificate", o->tls_cert, &pc, err);
    if (!rc && has_cert) rc = client_pem("TLS client key", o->tls_key, &pk, err);
    if (!rc) {
        grpc_ssl_pem_key_cert_pair pair = {.private_key = pk, .cert_chain = pc};
        *cr = grpc_ssl_credentials_create(pca, has_cert ? &pair : NULL, NULL, NULL);
        if (!*cr) rc = lip_err_set(err, LIP_EFORMAT, "TLS: gRPC refused CA '%s'", o->tls_ca);
    }
    if (pk) memset(pk, 0, strlen(pk));
    lip_free(pca);
    lip_free(pc);
    lip_free(pk);
    return rc;
}

lip_rpc_client *lip_rpc_client_new_opts(const char *target, const lip_rpc_client_opts *opts,
                                        lip_err *err)
{
    lip_rpc_client_opts o = opts ? *opts : lip_rpc_client_opts_default();
    if (!target || !*target) {
        lip_err_set(err, LIP_EINVAL, "empty server address (expected host:port)");
        return NULL;
    }
    char sc[512];
    if (service_config(&o, sc, sizeof sc, err)) return NULL;
    lip_rpc_client *c = lip_calloc(1, sizeof *c);
    if (!c) {
        lip_err_set(err, LIP_ENOMEM, "out of memory creating a client");
        return NULL;
    }
    grpc_init();
    int lim = o.max_msg_bytes > 0 ? o.max_msg_bytes : 100 << 20;
    grpc_arg args[8] = {
        {.type = GRPC_ARG_INTEGER, .key = GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, .value.integer = lim},
        {.type = GRPC_ARG_INTEGER, .key = GRPC_ARG_MAX_SEND_MESSAGE_LENGTH, .value.integer = lim},
        /* Each client object gets its own connection, so parallel bulk transfers from several
         * clients do not share one HTTP/2 connection (notes/grpc-c-core §6). */
        {.type = GRPC_ARG_INTEGER, .key = GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, .value.integer = 1},
    };
    size_t na = 3;
    if (sc[0]) {
        args[na++] = (grpc_arg){.type = GRPC_ARG_STRING, .key = GRPC_ARG_SERVICE_CONFIG,
                                .value.string = sc};
        /* A retried request must still be buffered when the first attempt fails: the core
         * commits (stops retrying) a call whose request outgrew this buffer (256 KiB default),
         * and inference requests are megabytes. The buffer holds references, not copies. */
        if (o.max_attempts > 1)
            args[na++] = (grpc_arg){.type = GRPC_ARG_INTEGER,
                                    .key = GRPC_ARG_PER_RPC_RETRY_BUFFER_SIZE,
                                    .value.integer = lim};
    }
    if (o.reconnect_max_backoff_ms > 0) {
        /* A restarted backend is used again within this time instead of gRPC's 120 s. */
        args[na++] = (grpc_arg){.type = GRPC_ARG_INTEGER, .key = GRPC_ARG_MAX_RECONNECT_BACKOFF_MS,
                                .value.integer = o.reconnect_max_backoff_ms};
        args[na++] = (grpc_arg){.type = GRPC_ARG_INTEGER,
                                .key = GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS,
                                .value.integer = LIP_MIN(o.reconnect_max_backoff_ms, 1000)};
        args[na++] = (grpc_arg){.type = GRPC_ARG_INTEGER, .key = GRPC_ARG_MIN_RECONNECT_BACKOFF_MS,
                                .value.integer = LIP_MIN(o.reconnect_max_backoff_ms, 1000)};
    }
    if (o.tls_target_name && *o.tls_target_name)
        args[na++] = (grpc_arg){.type = GRPC_ARG_STRING,
                                .key = GRPC_SSL_TARGET_NAME_OVERRIDE_ARG,
                                .value.string = (char *)o.tls_target_name};
    grpc_channel_args ca = {.num_args = na, .args = args};
    grpc_channel_credentials *cr = NULL;
    if (client_credentials(&o, &cr, err)) {
        lip_free(c);
        grpc_shutdown();
        return NULL;
    }
    if (o.api_key && *o.api_key) {
        /* The key is copied into the client's own slice: the caller's string may go away. */
        size_t kl = strlen(o.api_key);
        char *v = lip_malloc(kl + 8);
        if (!v) {
            grpc_channel_credentials_release(cr);
            lip_free(c);
            grpc_shutdown();
            lip_err_set(err, LIP_ENOMEM, "out of memory for the API key");
            return NULL;
        }
        memcpy(v, "Bearer ", 7);
        memcpy(v + 7, o.api_key, kl + 1);
        c->auth.key = grpc_slice_from_static_string("authorization");
        c->auth.value = grpc_slice_from_copied_string(v);
        memset(v, 0, kl + 7);
        lip_free(v);
        c->nauth = 1;
    }
    c->ch = grpc_channel_create(target, cr, &ca);
    grpc_channel_credentials_release(cr);
    if (!c->ch) {
        lip_err_set(err, LIP_EINVAL, "cannot create a channel to '%s'", target);
        if (c->nauth) grpc_slice_unref(c->auth.value);
        lip_free(c);
        grpc_shutdown();
        return NULL;
    }
    return c;
}

lip_rpc_client *lip_rpc_client_new(const char *target, int max_msg_bytes, lip_err *err)
{
    lip_rpc_client_opts o = lip_rpc_client_opts_default();
    o.max_msg_bytes = max_msg_bytes;
    return lip_rpc_client_new_opts(target, &o, err);
}

int lip_rpc_client_state(lip_rpc_client *c, bool try_to_connect)
{
    return (int)grpc_channel_check_connectivity_state(c->ch, try_to_connect ? 1 : 0);
}

void lip_rpc_client_free(lip_rpc_client *c)
{
    if (!c) return;
    grpc_channel_destroy(c->ch);
    if (c->nauth) grpc_slice_unref(c->auth.value);
    lip_free(c);
    grpc_shutdown();
}

static void cq_destroy(grpc_completion_queue *cq)
{
    grpc_completion_queue_shutdown(cq);
    while (grpc_completion_queue_pluck(cq, NULL, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL).type !=
           GRPC_QUEUE_SHUTDOWN) {
    }
    grpc_completion_queue_destroy(cq);
}

int lip_rpc_client_unary(lip_rpc_client *c, const char *path, const uint8_t *req, size_t len,
                         double timeout_ms, lip_rpc_buf *resp, lip_rpc_status *st, lip_err *err)
{
    return lip_rpc_client_unary_cancel(c, path, req, len, timeout_ms, NULL, resp, st, err);
}

int lip_rpc_client_unary_cancel(lip_rpc_client *c, const char *path, const uint8_t *req,
                                size_t len, double timeout_ms, const volatile int *cancel,
                                lip_rpc_buf *resp, lip_rpc_status *st, lip_err *err)
{
    resp->data = NULL;
    resp->len = 0;
    grpc_completion_queue *cq = grpc_completion_queue_create_for_pluck(NULL);
    grpc_slice method = grpc_slice_from_copied_string(path);
    grpc_call *call = grpc_channel_create_call(c->ch, NULL, GRPC_PROPAGATE_DEFAULTS, cq, method,
                                               NULL, deadline_of(timeout_ms), NULL);
    grpc_slice_unref(method);
    if (!call) {
        cq_destroy(cq);
        return lip_err_set(err, LIP_EINTERNAL, "cannot create a call to %s", path);
    }
    /* The request is sent straight from the caller's memory (valid until we return). */
    grpc_slice sl = len ? grpc_slice_new_with_user_data((void *)req, len, noop_destroy, NULL)
                        : grpc_empty_slice();
    grpc_byte_buffer *send = grpc_raw_byte_buffer_create(&sl, 1);
    grpc_slice_unref(sl);
    grpc_byte_buffer *recv = NULL;
    grpc_metadata_array md_init, md_trail;
    grpc_metadata_array_init(&md_init);
    grpc_metadata_array_init(&md_trail);
    grpc_status_code code = GRPC_STATUS_UNKNOWN;
    grpc_slice details = grpc_empty_slice();
    grpc_op ops[6];
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[0].data.send_initial_metadata.count = c->nauth;
    ops[0].data.send_initial_metadata.metadata = c->nauth ? &c->auth : NULL;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = send;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &md_init;
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = &recv;
    ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[5].data.recv_status_on_client.trailing_metadata = &md_trail;
    ops[5].data.recv_status_on_client.status = &code;
    ops[5].data.recv_status_on_client.status_details = &details;
    int tagv = 0;
    int rc = 0;
    if (grpc_call_start_batch(call, ops, 6, &tagv, NULL) != GRPC_CALL_OK) {
        rc = lip_err_set(err, LIP_EINTERNAL, "cannot start the call to %s", path);
    } else {
        if (!cancel) {
            grpc_completion_queue_pluck(cq, &tagv, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
        } else {
            /* Wake every 20 ms to look at the flag; a cancelled call still completes its batch
             * (status CANCELLED), so keep plucking until it does. */
            bool cancelled = false;
            for (;;) {
                grpc_event ev = grpc_completion_queue_pluck(cq, &tagv, deadline_of(20.0), NULL);
                if (ev.type == GRPC_OP_COMPLETE) break;
                if (!cancelled && *cancel) {
                    grpc_call_cancel(call, NULL);
                    cancelled = true;
                }
            }
        }
        set_status(st, code, details);
        if (code == GRPC_STATUS_OK && recv) rc = take_bb(recv, resp, err);
    }
    if (recv) grpc_byte_buffer_destroy(recv);
    grpc_byte_buffer_destroy(send);
    grpc_slice_unref(details);
    grpc_metadata_array_destroy(&md_init);
    grpc_metadata_array_destroy(&md_trail);
    grpc_call_unref(call);
    cq_destroy(cq);
    return rc;
}

/* Runs one batch on the stream and waits for it; false if the batch failed. */
static bool stream_batch(lip_rpc_stream *s, grpc_op *ops, size_t n)
{
    int tagv = 0;
    if (grpc_call_start_batch(s->call, ops, n, &tagv, NULL) != GRPC_CALL_OK) return false;
    grpc_event ev = grpc_completion_queue_pluck(s->cq, &tagv, gpr_inf_future(GPR_CLOCK_MONOTONIC),
                                                NULL);
    return ev.success != 0;
}

lip_rpc_stream *lip_rpc_stream_open(lip_rpc_client *c, const char *path, double timeout_ms,
                                    lip_err *err)
{
    lip_rpc_stream *s = lip_calloc(1, sizeof *s);
    if (!s) {
        lip_err_set(err, LIP_ENOMEM, "out of memory opening a stream");
        return NULL;
    }
    grpc_metadata_array_init(&s->md_init);
    s->cq = grpc_completion_queue_create_for_pluck(NULL);
    grpc_slice method = grpc_slice_from_copied_string(path);
    s->call = grpc_channel_create_call(c->ch, NULL, GRPC_PROPAGATE_DEFAULTS, s->cq, method, NULL,
                                       deadline_of(timeout_ms), NULL);
    grpc_slice_unref(method);
    grpc_op op;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_SEND_INITIAL_METADATA;
    op.data.send_initial_metadata.count = c->nauth;
    op.data.send_initial_metadata.metadata = c->nauth ? &c->auth : NULL;
    if (!s->call || !stream_batch(s, &op, 1)) {
        lip_err_set(err, LIP_EUNAVAIL, "cannot open a stream to %s", path);
        lip_rpc_stream_finish(s, true, NULL);
        return NULL;
    }
    return s;
}

int lip_rpc_stream_write(lip_rpc_stream *s, const uint8_t *msg, size_t len, lip_err *err)
{
    grpc_slice sl = len ? grpc_slice_new_with_user_data((void *)msg, len, noop_destroy, NULL)
                        : grpc_empty_slice();
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&sl, 1);
    grpc_slice_unref(sl);
    grpc_op op;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_SEND_MESSAGE;
    op.data.send_message.send_message = bb;
    bool ok = stream_batch(s, &op, 1);
    grpc_byte_buffer_destroy(bb);
    if (!ok) {
        s->broken = true;
        return lip_err_set(err, LIP_EIO, "stream closed while sending (read the status)");
    }
    return 0;
}

int lip_rpc_stream_close_send(lip_rpc_stream *s, lip_err *err)
{
    if (s->closed_send) return 0;
    grpc_op op;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    s->closed_send = true;
    if (!stream_batch(s, &op, 1)) return lip_err_set(err, LIP_EIO, "stream closed");
    return 0;
}

int lip_rpc_stream_read(lip_rpc_stream *s, lip_rpc_buf *msg, lip_err *err)
{
    msg->data = NULL;
    msg->len = 0;
    grpc_byte_buffer *bb = NULL;
    grpc_op ops[2];
    memset(ops, 0, sizeof ops);
    size_t n = 0;
    if (!s->md_received) {
        ops[n].op = GRPC_OP_RECV_INITIAL_METADATA;
        ops[n].data.recv_initial_metadata.recv_initial_metadata = &s->md_init;
        n++;
        s->md_received = true;
    }
    ops[n].op = GRPC_OP_RECV_MESSAGE;
    ops[n].data.recv_message.recv_message = &bb;
    n++;
    bool ok = stream_batch(s, ops, n);
    if (!ok || !bb) {
        if (bb) grpc_byte_buffer_destroy(bb);
        return 0; /* end of stream; the status tells why */
    }
    int rc = take_bb(bb, msg, err);
    grpc_byte_buffer_destroy(bb);
    return rc ? rc : 1;
}

int lip_rpc_stream_finish(lip_rpc_stream *s, bool cancel, lip_rpc_status *st)
{
    if (!s) return 0;
    if (s->call) {
        if (cancel) grpc_call_cancel(s->call, NULL);
        grpc_metadata_array md_trail;
        grpc_metadata_array_init(&md_trail);
        grpc_status_code code = GRPC_STATUS_UNKNOWN;
        grpc_slice details = grpc_empty_slice();
        grpc_op ops[2];
        memset(ops, 0, sizeof ops);
        size_t n = 0;
        if (!s->md_received) {
            /* The status of a call that ended before any message is only delivered together
             * with the (trailers-only) initial metadata. */
            ops[n].op = GRPC_OP_RECV_INITIAL_METADATA;
            ops[n].data.recv_initial_metadata.recv_initial_metadata = &s->md_init;
            n++;
            s->md_received = true;
        }
        ops[n].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
        ops[n].data.recv_status_on_client.trailing_metadata = &md_trail;
        ops[n].data.recv_status_on_client.status = &code;
        ops[n].data.recv_status_on_client.status_details = &details;
        n++;
        if (stream_batch(s, ops, n)) set_status(st, code, details);
        else if (st) set_status(st, GRPC_STATUS_UNKNOWN, grpc_empty_slice());
        grpc_slice_unref(details);
        grpc_metadata_array_destroy(&md_trail);
        grpc_call_unref(s->call);
    }
    grpc_metadata_array_destroy(&s->md_init);
    cq_destroy(s->cq);
    lip_free(s);
    return 0;
}
