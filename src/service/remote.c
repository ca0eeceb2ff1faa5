/* SPDX-License-Identifier: MIT */
/* service/remote.c: the compositing role's calls to inference servers (remote.h). Load
 * balancing, reconnection and retries are gRPC's own (round_robin policy, retryPolicy in the
 * service config); this file builds the InferBatch request of a chunk from per-thread reusable
 * buffers, maps the outcome back to a LIP_E* code, counts calls and bytes, and probes the
 * backends' grpc.health.v1 status so Health and the health service can report them. */
#include "service/remote.h"
#include "service/svc_int.h"

#include "health.pb-c.h"
#include "inference.pb-c.h"
#include "pipeline/pipeline.h"
#include "rpc/rpc.h"

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#define VIS_BYTES ((size_t)LIP_UNET_VISUAL_FLOATS * sizeof(float))
#define AUD_BYTES ((size_t)LIP_UNET_AUDIO_FLOATS * sizeof(float))
#define OUT_BYTES ((size_t)LIP_UNET_OUT_FLOATS * sizeof(float))
#define SAMPLES_PER_FRAME 640
#define INFER_PATH "/inference.InferenceService/InferBatch"
#define HEALTH_PATH "/grpc.health.v1.Health/Check"
#define GRPC_MAX_ATTEMPTS 5 /* gRPC's cap on retryPolicy.maxAttempts */

struct svc_remote {
    svc_remote_opts o;
    char *url;
    lip_rpc_client *cl;
    atomic_bool healthy;
    atomic_int gpu_id;
    atomic_llong calls, failures, frames, bytes_sent, bytes_received;
    pthread_t probe;
    bool probe_started, quit;
    pthread_mutex_t mu;
    pthread_cond_t cv;
};

/* ---- per-thread scratch: the packed request and the forwarded PCM -------------------------- */
typedef struct scratch {
    uint8_t *req;
    size_t req_cap;
    float *pcm;
    size_t pcm_cap;
} scratch;

static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;

static void scratch_destroy(void *p)
{
    scratch *s = p;
    lip_free(s->req);
    lip_free(s->pcm);
    lip_free(s);
}
static void scratch_key_init(void) { pthread_key_create(&scratch_key, scratch_destroy); }

static scratch *thread_scratch(void)
{
    pthread_once(&scratch_once, scratch_key_init);
    scratch *s = pthread_getspecific(scratch_key);
    if (!s) {
        s = lip_calloc(1, sizeof *s);
        if (s) pthread_setspecific(scratch_key, s);
    }
    return s;
}

/* Grows *buf to at least need bytes (contents not kept). */
static bool grow(void **buf, size_t *cap, size_t need)
{
    if (*cap >= need) return true;
    void *nb = lip_malloc(need);
    if (!nb) return false;
    lip_free(*buf);
    *buf = nb;
    *cap = need;
    return true;
}

/* ---- status mapping -------------------------------------------------------------------------- */
/* The LIP_E* code of a backend's status: the inverse of lip_rpc_status_of over the codes a
 * handler would have used. UNIMPLEMENTED (the target is not an inference server) and UNKNOWN
 * count as an unusable backend. */
static int code_of_status(grpc_status_code st)
{
    static const int prefer[] = {LIP_EINVAL,     LIP_ENOTFOUND, LIP_ERANGE, LIP_EPRECOND,
                                 LIP_EBUSY,      LIP_ETIMEOUT,  LIP_ECANCELLED, LIP_EPERM,
                                 LIP_EUNAVAIL,   LIP_EINTERNAL};
    if (st == GRPC_STATUS_UNIMPLEMENTED || st == GRPC_STATUS_UNKNOWN) return LIP_EUNAVAIL;
    for (size_t i = 0; i < LIP_ARRAY_LEN(prefer); i++)
        if (lip_rpc_status_of(prefer[i]) == st) return prefer[i];
    return LIP_EINTERNAL;
}

/* ---- health probe ---------------------------------------------------------------------------- */
/* One grpc.health.v1 Check of the inference service through the balanced channel: with
 * round_robin it reaches a connected backend, so SERVING means at least one can take work. */
static bool probe_once(svc_remote *r)
{
    Grpc__Health__V1__HealthCheckRequest q = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    q.service = "inference.InferenceService";
    uint8_t buf[64];
    size_t len = protobuf_c_message_pack(&q.base, buf);
    lip_rpc_buf resp = {0};
    lip_rpc_status st = {0};
    lip_err err = {0};
    bool ok = false;
    if (lip_rpc_client_unary(r->cl, HEALTH_PATH, buf, len, 1000.0, &resp, &st, &err) == 0 &&
        st.code == GRPC_STATUS_OK) {
        Grpc__Health__V1__HealthCheckResponse *h =
            (Grpc__Health__V1__HealthCheckResponse *)protobuf_c_message_unpack(
                &grpc__health__v1__health_check_response__descriptor, NULL, resp.len, resp.data);
        ok = h && h->status == GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING;
        if (h) protobuf_c_message_free_unpacked(&h->base, NULL);
    }
    lip_free(resp.data);
    return ok;
}

static void *probe_thread(void *arg)
{
    svc_remote *r = arg;
    int period = r->o.probe_interval_ms > 0 ? r->o.probe_interval_ms : 1000;
    pthread_mutex_lock(&r->mu);
    while (!r->quit) {
        pthread_mutex_unlock(&r->mu);
        bool now = probe_once(r);
        bool before = atomic_exchange(&r->healthy, now);
        if (now != before) {
            lip_log_info("remote inference %s: %s", r->url,
                         now ? "a backend is SERVING" : "no backend is SERVING");
            if (r->o.on_health_change) r->o.on_health_change(r->o.ud, now);
        }
        pthread_mutex_lock(&r->mu);
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        long ns = ts.tv_nsec + (long)(period % 1000) * 1000000L;
        ts.tv_sec += period / 1000 + ns / 1000000000L;
        ts.tv_nsec = ns % 1000000000L;
        if (!r->quit) pthread_cond_timedwait(&r->cv, &r->mu, &ts);
    }
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

/* ---- lifetime -------------------------------------------------------------------------------- */
svc_remote *svc_remote_new(const svc_remote_opts *o, lip_err *err)
{
    if (!o || !o->url || !*o->url) {
        lip_err_set(err, LIP_EINVAL, "inference_server.url is empty (expected host:port, "
                    "dns:///host:port or ipv4:a:p,b:q)");
        return NULL;
    }
    svc_remote *r = lip_calloc(1, sizeof *r);
    if (!r) {
        lip_err_set(err, LIP_ENOMEM, "out of memory creating the remote inference client");
        return NULL;
    }
    r->o = *o;
    atomic_store(&r->gpu_id, -1);
    if (r->o.timeout_ms <= 0) r->o.timeout_ms = 10000;
    if (r->o.max_retries < 0) r->o.max_retries = 0;
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    r->url = lip_strdup(o->url);
    r->o.url = r->url;
    if (!r->url) {
        lip_err_set(err, LIP_ENOMEM, "out of memory creating the remote inference client");
        goto fail;
    }
    lip_rpc_client_opts co = lip_rpc_client_opts_default();
    co.max_msg_bytes = o->max_msg_bytes;
    co.lb_policy = "round_robin";
    co.max_attempts = LIP_MIN(r->o.max_retries + 1, GRPC_MAX_ATTEMPTS);
    /* A restarted inference server takes load again within ~2 s. */
    co.reconnect_max_backoff_ms = 2000;
    co.tls_ca = o->tls_ca;
    co.tls_cert = o->tls_cert;
    co.tls_key = o->tls_key;
    co.api_key = o->api_key;
    r->cl = lip_rpc_client_new_opts(r->url, &co, err);
    if (!r->cl) {
        lip_err_prefix(err, "inference_server.url '%s'", r->url);
        goto fail;
    }
    lip_rpc_client_state(r->cl, true); /* start connecting now, not on the first request */
    if (pthread_create(&r->probe, NULL, probe_thread, r) != 0) {
        lip_err_set(err, LIP_ENOMEM, "cannot start the inference health probe thread");
        goto fail;
    }
    r->probe_started = true;
    return r;
fail:
    svc_remote_free(r);
    return NULL;
}

void svc_remote_free(svc_remote *r)
{
    if (!r) return;
    if (r->probe_started) {
        pthread_mutex_lock(&r->mu);
        r->quit = true;
        pthread_cond_broadcast(&r->cv);
        pthread_mutex_unlock(&r->mu);
        pthread_join(r->probe, NULL);
    }
    lip_rpc_client_free(r->cl);
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cv);
    lip_free(r->url);
    lip_free(r);
}

bool svc_remote_healthy(const svc_remote *r) { return atomic_load(&r->healthy); }
int svc_remote_gpu_id(const svc_remote *r) { return atomic_load(&r->gpu_id); }
const char *svc_remote_url(const svc_remote *r) { return r->url; }

void svc_remote_get_stats(const svc_remote *r, svc_remote_stats *st)
{
    st->calls = atomic_load(&r->calls);
    st->failures = atomic_load(&r->failures);
    st->frames = atomic_load(&r->frames);
    st->bytes_sent = atomic_load(&r->bytes_sent);
    st->bytes_received = atomic_load(&r->bytes_received);
}

/* ---- the call -------------------------------------------------------------------------------- */
/* The chunk's PCM in §6 alignment: sample 0 is 8 frames before the chunk's first output, never
 * clamped. The request's PCM follows §1.5 (sample 0 = stream frame max(0, s-8)), so a chunk near
 * the stream start gets silence prepended, and a chunk past the end of the supplied samples gets
 * only what exists (the inference server pads missing context with zero feature rows). */
static float *chunk_pcm(scratch *sc, const lip_request *req, int first, int n, size_t *count)
{
    long f0 = (long)req->start_frame + first; /* stream frame of the chunk's output 0 */
    long want0 = (f0 - 8) * SAMPLES_PER_FRAME; /* stream sample of forwarded sample 0 */
    long have0 = (long)LIP_MAX(0, req->start_frame - 8) * SAMPLES_PER_FRAME;
    size_t need = (size_t)(n + 15) * SAMPLES_PER_FRAME;
    if (!grow((void **)&sc->pcm, &sc->pcm_cap, need * sizeof(float))) return NULL;
    size_t k = 0;
    for (; k < need; k++) {
        long src = want0 + (long)k - have0;
        if (src >= (long)req->n_pcm) break;
        sc->pcm[k] = src < 0 ? 0.0f : req->pcm[src];
    }
    *count = k;
    return sc->pcm;
}

int svc_remote_infer(void *ud, lip_avatar *a, const struct lip_request *req, int first, int n,
                     const float *visual, const float *audio, float *out, lip_err *err)
{
    svc_remote *r = ud;
    scratch *sc = thread_scratch();
    if (!sc) return lip_err_set(err, LIP_ENOMEM, "out of memory (remote inference scratch)");
    Inference__InferBatchRequest q = INFERENCE__INFER_BATCH_REQUEST__INIT;
    q.model_id = (char *)lip_avatar_id(a);
    q.visual_frames = (ProtobufCBinaryData){(size_t)n * VIS_BYTES, (uint8_t *)visual};
    q.batch_size = n;
    q.sample_rate = 16000;
    if (audio) {
        q.audio_features = (ProtobufCBinaryData){(size_t)n * AUD_BYTES, (uint8_t *)audio};
    } else {
        size_t ns = 0;
        float *pcm = chunk_pcm(sc, req, first, n, &ns);
        if (!pcm) return lip_err_set(err, LIP_ENOMEM, "out of memory forwarding raw audio");
        if (!ns) /* the request's samples end before this chunk's context: silence */
            pcm[ns++] = 0.0f;
        q.raw_audio = (ProtobufCBinaryData){ns * sizeof(float), (uint8_t *)pcm};
    }
    size_t len = protobuf_c_message_get_packed_size(&q.base);
    if (!grow((void **)&sc->req, &sc->req_cap, len))
        return lip_err_set(err, LIP_ENOMEM, "out of memory packing a %zu-byte inference request",
                           len);
    protobuf_c_message_pack(&q.base, sc->req);

    /* gRPC retries UNAVAILABLE up to 5 attempts per call; larger max_retries run further calls
     * here, all under the one deadline. */
    double deadline = lip_time_ms() + r->o.timeout_ms;
    if (req->deadline_ms > 0 && req->deadline_ms < deadline) deadline = req->deadline_ms;
    int rounds = (r->o.max_retries + 1 + GRPC_MAX_ATTEMPTS - 1) / GRPC_MAX_ATTEMPTS;
    lip_rpc_buf resp = {0};
    lip_rpc_status st = {0};
    int rc = 0;
    for (int k = 0; k < rounds; k++) {
        double left = deadline - lip_time_ms();
        if (req->cancel && *req->cancel) {
            st.code = GRPC_STATUS_CANCELLED;
            lip_strlcpy(st.details, "the request was cancelled", sizeof st.details);
            break;
        }
        if (left <= 0) {
            st.code = GRPC_STATUS_DEADLINE_EXCEEDED;
            lip_strlcpy(st.details, "no time left for another attempt", sizeof st.details);
            break;
        }
        rc = lip_rpc_client_unary_cancel(r->cl, INFER_PATH, sc->req, len, left, req->cancel,
                                         &resp, &st, err);
        atomic_fetch_add(&r->bytes_sent, (long long)len);
        if (rc || st.code != GRPC_STATUS_UNAVAILABLE) break;
    }
    if (!rc && st.code != GRPC_STATUS_OK) {
        int code = code_of_status(st.code);
        rc = lip_err_set(err, code, "inference server (%s): %s: %s", r->url,
                         lip_rpc_status_name(st.code),
                         st.details[0] ? st.details : "no message");
    }
    Inference__InferBatchResponse *o = NULL;
    if (!rc) {
        atomic_fetch_add(&r->bytes_received, (long long)resp.len);
        o = (Inference__InferBatchResponse *)protobuf_c_message_unpack(
            &inference__infer_batch_response__descriptor, NULL, resp.len, resp.data);
        if (!o)
            rc = lip_err_set(err, LIP_EINTERNAL, "inference server (%s): cannot parse the "
                             "InferBatchResponse (%zu bytes)", r->url, resp.len);
        else if (o->n_outputs != (size_t)n)
            rc = lip_err_set(err, LIP_EINTERNAL, "inference server (%s): %zu outputs for a "
                             "batch of %d", r->url, o->n_outputs, n);
        for (int i = 0; !rc && i < n; i++) {
            if (!o->outputs[i] || o->outputs[i]->data.len != OUT_BYTES) {
                rc = lip_err_set(err, LIP_EINTERNAL, "inference server (%s): output %d has %zu "
                                 "bytes, expected %zu", r->url, i,
                                 o->outputs[i] ? o->outputs[i]->data.len : 0, OUT_BYTES);
                break;
            }
            memcpy(out + (size_t)i * LIP_UNET_OUT_FLOATS, o->outputs[i]->data.data, OUT_BYTES);
        }
    }
    if (!rc) atomic_store(&r->gpu_id, o->gpu_id);
    if (o) protobuf_c_message_free_unpacked(&o->base, NULL);
    lip_free(resp.data);
    if (rc) {
        atomic_fetch_add(&r->failures, 1);
        return rc;
    }
    atomic_fetch_add(&r->calls, 1);
    atomic_fetch_add(&r->frames, n);
    return 0;
}

int lip_service_remote_stats_get(lip_service *sv, lip_service_remote_stats *out)
{
    memset(out, 0, sizeof *out);
    if (!sv->remote) return LIP_ENOTFOUND;
    svc_remote_stats st;
    svc_remote_get_stats(sv->remote, &st);
    *out = (lip_service_remote_stats){st.calls, st.failures, st.frames, st.bytes_sent,
                                      st.bytes_received};
    return 0;
}
