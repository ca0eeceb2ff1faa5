/* SPDX-License-Identifier: MIT */
/* service/v1.c: lipsync.v1.LipSync, the native API (docs/API.md "lipsync.v1"). Stream is a
 * session on its own thread (rpc LIP_RPC_STREAM): it owns a lip_audio_stream per utterance,
 * collects the frame tensors that become ready as audio arrives into a bounded ring, runs them
 * through lip_pipeline_run in small batches with explicit audio tensors and avatar frame ids
 * (ping-pong order continuing from where idle left off, so speech and idle join without a jump),
 * and sends each frame with index i and pts i x 40 ms. While no speech is being emitted, idle
 * frames (the avatar's original frames, encoded once per avatar and cached, no UNet) leave on the
 * 25 fps clock slot(i) = t0 + 40 i. Backlog is bounded everywhere: the rpc layer reads at most 8
 * messages ahead, the ring holds RING_CAP tensors (more ready frames wait in the audio stream as
 * 2 KiB feature rows), reading stops while the client is 30 s of audio ahead, and a speech frame
 * due more than max_lag ago is dropped (its index skipped) with a KIND_BEHIND event, so a slow
 * server never drifts. Paced sessions hold audio that comes faster than real time (TTS) and play
 * it out on the clock. Render runs the whole-utterance
 * computation (lip_audio_features + lip_audio_frame_tensor) through the same batch code, so a
 * Stream in exact mode with idle off gives the same frames. */
#include "service/v1.h"

#include "audio/audio.h"
#include "image/image.h"
#include "lipsync_v1.pb-c.h"
#include "metrics/metrics.h"
#include "service/svc_int.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FRAME_MS 40.0
#define TENSOR 8192                        /* floats of one frame's UNet audio tensor */
#define RING_CAP 128                       /* ready frame tensors per session (4 MiB) */
#define MAX_AHEAD_FRAMES 750               /* received audio not yet sent: at most 30 s */
#define MAX_CHUNK_SAMPLES (2 * LIP_AUDIO_RATE) /* one audio message: at most 2 s (50 frames) */
#define MAX_RENDER_SAMPLES ((size_t)600 * LIP_AUDIO_RATE) /* Render: 10 minutes */
#define BATCH_UNPACED 8
#define BATCH_PACED 4                      /* paced sessions sleep per frame: keep batches short */
#define DEFAULT_LAG_FRAMES 25
#define DEFAULT_LOOKAHEAD_LOW 2
#define IDLE_CACHE_BUDGET ((size_t)192 << 20) /* encoded idle frames per (avatar, format) */
#define MAX_ATTACH 4

typedef struct v1_ctx {
    lip_service *sv;
    atomic_int active;
    atomic_long streams_total, speech_frames, idle_frames, dropped, behind, interrupts, utterances;
} v1_ctx;

static v1_ctx ctxs[MAX_ATTACH];
static int nctx;

/* Prometheus series (metrics/), looked up once; updating them never locks or allocates. */
static struct {
    pthread_once_t once;
    lip_gauge *active;
    lip_counter *speech, *idle, *dropped;
    lip_histogram *latency;
} obs = {.once = PTHREAD_ONCE_INIT};

static void obs_init(void)
{
    lip_metrics *m = lip_metrics_global();
    if (!m) return;
    if (lip_metrics_register(m, "lipsync_v1_streams_active", LIP_METRIC_GAUGE,
                             "lipsync.v1 Stream sessions open now", NULL, NULL) ||
        lip_metrics_register(m, "lipsync_v1_frames_total", LIP_METRIC_COUNTER,
                             "lipsync.v1 Stream frames by kind (speech, idle, dropped as late)",
                             "kind", NULL) ||
        lip_metrics_register_histogram(m, "lipsync_v1_frame_latency_seconds",
                                       "lipsync.v1 speech frame latency: arrival of the audio "
                                       "chunk that completed it to its departure", NULL, 0, 0,
                                       NULL))
        return;
    obs.active = lip_metrics_gauge(m, "lipsync_v1_streams_active", NULL, NULL);
    const char *k[3][1] = {{"speech"}, {"idle"}, {"dropped"}};
    obs.speech = lip_metrics_counter(m, "lipsync_v1_frames_total", k[0], NULL);
    obs.idle = lip_metrics_counter(m, "lipsync_v1_frames_total", k[1], NULL);
    obs.dropped = lip_metrics_counter(m, "lipsync_v1_frames_total", k[2], NULL);
    obs.latency = lip_metrics_histogram(m, "lipsync_v1_frame_latency_seconds", NULL, NULL);
}

/* ---- idle frame cache ---------------------------------------------------------------------- */
/* Encoded original frames shared by every session on one (avatar, format, quality): an idle
 * stream at 25 fps would otherwise JPEG-encode a 720p frame every 40 ms. Entries live while a
 * session uses them (refs); each frame is encoded once and never changes afterwards, so a
 * pointer handed out stays valid until the session drops its reference. */
typedef struct idle_cache {
    lip_avatar *a;
    int format, quality, refs, n;
    uint8_t **data;
    size_t *len;
    size_t bytes;
    pthread_mutex_t mu;
    struct idle_cache *next;
} idle_cache;

static pthread_mutex_t idle_mu = PTHREAD_MUTEX_INITIALIZER;
static idle_cache *idle_list;

static idle_cache *idle_get(lip_avatar *a, int format, int quality)
{
    pthread_mutex_lock(&idle_mu);
    idle_cache *c = idle_list;
    while (c && !(c->a == a && c->format == format && c->quality == quality)) c = c->next;
    if (c) {
        c->refs++;
    } else if ((c = lip_calloc(1, sizeof *c))) {
        c->n = lip_avatar_frame_count(a);
        c->data = lip_calloc((size_t)c->n, sizeof *c->data);
        c->len = lip_calloc((size_t)c->n, sizeof *c->len);
        if (!c->data || !c->len) {
            lip_free(c->data);
            lip_free(c->len);
            lip_free(c);
            c = NULL;
        } else {
            c->a = a;
            c->format = format;
            c->quality = quality;
            c->refs = 1;
            pthread_mutex_init(&c->mu, NULL);
            c->next = idle_list;
            idle_list = c;
        }
    }
    pthread_mutex_unlock(&idle_mu);
    return c;
}

static void idle_put(idle_cache *c)
{
    if (!c) return;
    pthread_mutex_lock(&idle_mu);
    if (--c->refs == 0) {
        for (idle_cache **pp = &idle_list; *pp; pp = &(*pp)->next)
            if (*pp == c) {
                *pp = c->next;
                break;
            }
        for (int i = 0; i < c->n; i++) lip_free(c->data[i]);
        lip_free(c->data);
        lip_free(c->len);
        pthread_mutex_destroy(&c->mu);
        lip_free(c);
    }
    pthread_mutex_unlock(&idle_mu);
}

/* ---- helpers ------------------------------------------------------------------------------- */

static int pipe_format(int f)
{
    return f == LIPSYNC__V1__IMAGE_FORMAT__IMAGE_FORMAT_PNG       ? LIP_OUT_PNG
           : f == LIPSYNC__V1__IMAGE_FORMAT__IMAGE_FORMAT_RAW_BGR ? LIP_OUT_BGR
                                                                  : LIP_OUT_JPEG;
}

/* PCM bytes in the declared encoding -> float samples in out (room for max). */
static int pcm_decode(const ProtobufCBinaryData *b, int encoding, float *out, size_t max,
                      size_t *n, lip_err *err)
{
    size_t w = encoding == LIPSYNC__V1__AUDIO_ENCODING__AUDIO_ENCODING_S16LE ? 2 : 4;
    if (b->len % w)
        return lip_err_set(err, LIP_EINVAL, "audio: %zu bytes is not a whole number of %s "
                           "samples (%zu bytes each)", b->len, w == 2 ? "int16" : "float32", w);
    size_t k = b->len / w;
    if (k > max)
        return lip_err_set(err, LIP_EINVAL, "audio: %zu samples in one message, at most %zu "
                           "(%.0f s at 16 kHz); send longer audio as several chunks", k, max,
                           (double)max / LIP_AUDIO_RATE);
    for (size_t i = 0; i < k; i++) {
        const uint8_t *p = b->data + i * w;
        if (w == 2) {
            int16_t v = (int16_t)(uint16_t)(p[0] | (p[1] << 8));
            out[i] = (float)v / 32768.0f;
        } else {
            uint32_t u = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                         (uint32_t)p[3] << 24;
            memcpy(&out[i], &u, 4);
        }
    }
    if (!lip_all_finite(out, k))
        return lip_err_set(err, LIP_EINVAL, "audio: NaN or Inf sample (float32 PCM must be "
                           "finite, nominally in [-1, 1])");
    *n = k;
    return 0;
}

static bool tts_available(void)
{
    const char *path = getenv("PATH");
    if (!path) return false;
    char dir[1024];
    while (*path) {
        size_t k = strcspn(path, ":");
        if (k > 0 && k < sizeof dir - 16) {
            memcpy(dir, path, k);
            snprintf(dir + k, sizeof dir - k, "/espeak-ng");
            if (access(dir, X_OK) == 0) return true;
        }
        path += k;
        if (*path == ':') path++;
    }
    return false;
}

/* ---- stream session ------------------------------------------------------------------------ */

typedef struct session {
    v1_ctx *v;
    lip_service *sv;
    lip_rpc_call *call;
    lip_avatar *a;
    char id[72];
    int nframes, w, h;
    /* options */
    int format, quality, encoding, lookahead, batch_max;
    bool idle, paced;
    double max_lag_ms; /* < 0: never drop */
    /* timeline */
    int64_t index;     /* next frame index */
    long av_pos;       /* next position in the avatar's ping-pong walk */
    double t0;         /* slot(i) = t0 + 40 i */
    bool eof;
    /* utterance */
    lip_audio_stream *as;
    bool utt_active, utt_finishing, utt_started;
    int utt;
    int64_t utt_next;  /* next utterance frame number (sent or dropped) */
    int64_t utt_samples;
    double utt_t0;      /* arrival of the utterance's first chunk */
    double need_ms;     /* audio a frame needs beyond its start: look-ahead x 40 + 172 ms */
    double last_arrival;
    double run_ms;      /* recent time of one batch, slot wait included (moving average) */
    /* the computed batch whose frames are not all sent yet (paced: waiting for their slots) */
    lip_result pend;
    bool has_pend;
    int pend_k;
    double pend_arr[BATCH_UNPACED], pend_audio[BATCH_UNPACED], pend_trun;
    int64_t late, late_at;
    /* ready frame tensors */
    float *ring;
    double ring_t[RING_CAP], ring_audio[RING_CAP];
    int ring_head, ring_n;
    /* scratch, sized once */
    float *batch, *pcm, *tensor;
    int ids[BATCH_UNPACED];
    uint8_t *bgr;
    lip_jpeg_enc *je;
    lip_buf enc;
    idle_cache *ic;
} session;

static double slot_ms(const session *s, int64_t i) { return s->t0 + FRAME_MS * (double)i; }

static int send_msg(session *s, Lipsync__V1__StreamResponse *r, lip_err *err)
{
    lip_rpc_buf b = {0};
    int rc = lip_rpc_pack(&r->base, &b, err);
    if (rc) return rc;
    return lip_rpc_call_send(s->call, &b, err);
}

static int send_event(session *s, int kind, const char *msg, int64_t frame, int64_t dropped,
                      int64_t frames, lip_err *err)
{
    Lipsync__V1__StreamEvent ev = LIPSYNC__V1__STREAM_EVENT__INIT;
    ev.kind = (Lipsync__V1__StreamEvent__Kind)kind;
    ev.message = (char *)(msg ? msg : "");
    ev.frame = frame;
    ev.dropped_frames = dropped;
    ev.utterance = s->utt_active || kind == LIPSYNC__V1__STREAM_EVENT__KIND__KIND_UTTERANCE_END
                       ? s->utt
                       : 0;
    ev.frames = frames;
    if (kind == LIPSYNC__V1__STREAM_EVENT__KIND__KIND_OPENED) {
        ev.avatar_id = s->id;
        ev.width = s->w;
        ev.height = s->h;
        ev.frame_count = s->nframes;
    }
    Lipsync__V1__StreamResponse r = LIPSYNC__V1__STREAM_RESPONSE__INIT;
    r.msg_case = LIPSYNC__V1__STREAM_RESPONSE__MSG_EVENT;
    r.event = &ev;
    return send_msg(s, &r, err);
}

/* Moves every ready tensor of the audio stream into the ring (while there is room); the frames
 * were completed by the chunk that arrived at `arrival`, and share audio_ms of work. */
static void pop_ready(session *s, double arrival, double audio_ms)
{
    if (!s->as) return;
    int first = s->ring_n, got = 0;
    while (s->ring_n < RING_CAP) {
        int at = (s->ring_head + s->ring_n) % RING_CAP, f = 0;
        if (lip_audio_stream_pop(s->as, s->ring + (size_t)at * TENSOR, &f) != 1) break;
        s->ring_t[at] = arrival;
        s->ring_n++;
        got++;
    }
    for (int k = 0; k < got; k++)
        s->ring_audio[(s->ring_head + first + k) % RING_CAP] = audio_ms / got;
}

static void utt_reset(session *s)
{
    if (s->has_pend) lip_result_free(&s->pend);
    s->has_pend = false;
    lip_audio_stream_free(s->as);
    s->as = NULL;
    s->utt_active = s->utt_finishing = s->utt_started = false;
    s->ring_n = 0;
    s->ring_head = 0;
}

static int end_utterance(session *s, const char *msg, lip_err *err)
{
    atomic_fetch_add(&s->v->utterances, 1);
    int rc = send_event(s, LIPSYNC__V1__STREAM_EVENT__KIND__KIND_UTTERANCE_END, msg,
                        s->index - 1, 0, s->utt_next, err);
    utt_reset(s);
    return rc;
}

static int behind(session *s, int64_t frame, int64_t dropped, const char *what, lip_err *err)
{
    atomic_fetch_add(&s->v->behind, 1);
    atomic_fetch_add(&s->v->dropped, dropped);
    lip_counter_add(obs.dropped, (uint64_t)dropped);
    char m[160];
    snprintf(m, sizeof m, "%s: %lld frames dropped to keep real time (max lag %.0f ms)", what,
             (long long)dropped, s->max_lag_ms);
    return send_event(s, LIPSYNC__V1__STREAM_EVENT__KIND__KIND_BEHIND, m, frame, dropped, 0, err);
}

/* When a speech frame is due: when its audio arrived, or when a real-time client would have
 * sent it (utterance start + its position + look-ahead) if that is earlier, so audio held up in
 * transport buffers counts as late too. A paced frame is never due before its slot: audio that
 * comes faster than real time (TTS) is held and played out, not dropped. */
static double due_ms(const session *s, double arrival, int64_t utt_frame, int64_t index)
{
    double due = LIP_MIN(arrival, s->utt_t0 + FRAME_MS * (double)utt_frame + s->need_ms);
    return s->paced ? LIP_MAX(due, slot_ms(s, index)) : due;
}

/* Waits for frame index i's slot (paced sessions). */
static void wait_slot(session *s, int64_t i)
{
    for (;;) {
        double left = slot_ms(s, i) - lip_time_ms();
        if (left <= 0 || lip_rpc_call_cancelled(s->call)) return;
        lip_time_sleep_ms(LIP_MIN(left, 20.0));
    }
}

/* Sends the computed frames that are due (all of them unless paced: a paced frame waits for its
 * slot, and the session reads messages meanwhile). Frees the batch when it is done. */
static int send_due(session *s, lip_err *err)
{
    int rc = 0;
    lip_result *res = &s->pend;
    int n = res->count;
    while (s->has_pend && s->pend_k < n && rc == 0) {
        int k = s->pend_k;
        if (s->paced && lip_time_ms() < slot_ms(s, s->index)) return 0;
        s->pend_k++;
        /* Waiting for a pipeline slot can make a frame late after all: drop it rather than
         * send it more than max_lag after it was due. */
        if (s->max_lag_ms >= 0 &&
            lip_time_ms() - due_ms(s, s->pend_arr[k], s->utt_next, s->index) > s->max_lag_ms) {
            if (s->late_at < 0) s->late_at = s->index;
            s->late++;
            s->index++;
            s->av_pos++;
            s->utt_next++;
            continue;
        }
        Lipsync__V1__StageTimings t = LIPSYNC__V1__STAGE_TIMINGS__INIT;
        t.queue_ms = (float)(s->pend_trun - s->pend_arr[k] + res->t.queue_ms);
        t.audio_ms = (float)s->pend_audio[k];
        t.model_ms = (float)(res->t.inference_ms / n);
        t.composite_ms = (float)((res->t.composite_ms + res->t.prepare_ms) / n);
        t.encode_ms = (float)(res->t.encode_ms / n);
        Lipsync__V1__Frame f = LIPSYNC__V1__FRAME__INIT;
        f.index = s->index;
        f.pts_ms = (int64_t)(FRAME_MS * (double)s->index);
        f.image.data = res->frames[k].data;
        f.image.len = res->frames[k].len;
        f.speech = 1;
        f.avatar_frame = res->frames[k].avatar_frame;
        f.width = res->width;
        f.height = res->height;
        f.timings = &t;
        f.utterance = s->utt;
        f.utterance_frame = (int32_t)s->utt_next;
        f.audio_received_ms = s->utt_samples * 1000 / LIP_AUDIO_RATE;
        t.total_ms = (float)(lip_time_ms() - s->pend_arr[k]);
        lip_histogram_observe(obs.latency, t.total_ms / 1000.0);
        lip_counter_inc(obs.speech);
        Lipsync__V1__StreamResponse r = LIPSYNC__V1__STREAM_RESPONSE__INIT;
        r.msg_case = LIPSYNC__V1__STREAM_RESPONSE__MSG_FRAME;
        r.frame = &f;
        rc = send_msg(s, &r, err);
        s->index++;
        s->av_pos++;
        s->utt_next++;
        atomic_fetch_add(&s->v->speech_frames, 1);
    }
    if (s->has_pend && s->pend_k >= n) {
        lip_result_free(&s->pend);
        s->has_pend = false;
    }
    if (!rc && s->late && !s->has_pend) {
        rc = behind(s, s->late_at, s->late, "speech frames late after the model", err);
        s->late = 0;
        s->late_at = -1;
    }
    return rc;
}

/* Runs up to batch_max ready frames through the pipeline (when no computed batch is waiting)
 * and sends the ones that are due. */
static int run_speech(session *s, lip_err *err)
{
    if (s->has_pend) return send_due(s, err);
    pop_ready(s, s->last_arrival, 0);
    double now = lip_time_ms();
    int64_t dropped = 0, drop_at = s->index;
    /* Without idle frames the paced clock restarts with each utterance's first frame (a silent
     * gap must not turn into a burst, nor make the first frames look late). */
    if (!s->utt_started && s->ring_n > 0 && !s->idle && s->paced)
        s->t0 = now - FRAME_MS * (double)s->index;
    /* The batch about to run takes about run_ms: frames that would be late by then are dropped
     * now, so an overloaded server spends no work on frames it would drop anyway. Once behind,
     * it catches up to half the allowed lag (with twice the batch time as margin), so that the
     * frames it does compute are not late again by the time they are done. */
    double limit = s->max_lag_ms, margin = s->run_ms;
    if (s->ring_n > 0 && s->max_lag_ms >= 0 &&
        now + margin - due_ms(s, s->ring_t[s->ring_head], s->utt_next, s->index) > limit) {
        limit = s->max_lag_ms / 2;
        margin = 2 * s->run_ms;
    }
    while (s->ring_n > 0 && s->max_lag_ms >= 0 &&
           now + margin - due_ms(s, s->ring_t[s->ring_head], s->utt_next, s->index) > limit) {
        s->ring_head = (s->ring_head + 1) % RING_CAP;
        s->ring_n--;
        s->utt_started = true;
        s->index++;
        s->av_pos++;
        s->utt_next++;
        dropped++;
    }
    if (dropped) {
        int rc = behind(s, drop_at, dropped, "speech frames late", err);
        if (rc) return rc;
    }
    int n = LIP_MIN(s->ring_n, s->batch_max);
    if (n == 0) return 0;
    s->utt_started = true;
    for (int k = 0; k < n; k++) {
        int at = (s->ring_head + k) % RING_CAP;
        memcpy(s->batch + (size_t)k * TENSOR, s->ring + (size_t)at * TENSOR,
               TENSOR * sizeof(float));
        s->pend_arr[k] = s->ring_t[at];
        s->pend_audio[k] = s->ring_audio[at];
        s->ids[k] = lip_avatar_frame_index(s->a, s->av_pos + k, LIP_ORDER_PINGPONG);
    }
    s->ring_head = (s->ring_head + n) % RING_CAP;
    s->ring_n -= n;
    lip_request rq = {0};
    rq.batch = n;
    rq.order = LIP_ORDER_PINGPONG;
    rq.frame_ids = s->ids;
    rq.audio = s->batch;
    rq.n_audio = n;
    rq.format = pipe_format(s->format);
    rq.quality = s->quality;
    rq.cancel = lip_rpc_call_cancel_flag(s->call);
    s->pend_trun = lip_time_ms();
    int rc = lip_pipeline_run(s->sv->pipe, s->a, &rq, &s->pend, err);
    if (rc) {
        lip_result_free(&s->pend);
        return rc;
    }
    s->has_pend = true;
    s->pend_k = 0;
    svc_record(s->sv, s->id, s->pend.t.inference_ms, n);
    s->run_ms = 0.7 * s->run_ms + 0.3 * (lip_time_ms() - s->pend_trun);
    return send_due(s, err);
}

/* The encoded original frame af (cached per avatar and format; raw BGR is decoded each time). */
static int idle_image(session *s, int af, const uint8_t **data, size_t *len, double *enc_ms,
                      lip_err *err)
{
    *enc_ms = 0;
    idle_cache *c = s->ic;
    if (c) {
        pthread_mutex_lock(&c->mu);
        *data = c->data[af];
        *len = c->len[af];
        pthread_mutex_unlock(&c->mu);
        if (*data) return 0;
    }
    double t = lip_time_ms();
    int rc = lip_avatar_frame_bgr(s->a, af, s->bgr, s->w * 3, err);
    if (rc) return rc;
    lip_image img = {s->bgr, s->w, s->h, s->w * 3};
    if (s->format == LIPSYNC__V1__IMAGE_FORMAT__IMAGE_FORMAT_RAW_BGR) {
        *data = s->bgr;
        *len = (size_t)s->w * s->h * 3;
        return 0;
    }
    if (s->format == LIPSYNC__V1__IMAGE_FORMAT__IMAGE_FORMAT_PNG) {
        rc = lip_png_encode(&img, lip_pipeline_options(s->sv->pipe)->png_level, &s->enc, err);
    } else {
        lip_jpeg_opts jo = lip_jpeg_opts_default();
        jo.quality = s->quality;
        rc = lip_jpeg_enc_encode(s->je, &img, &jo, &s->enc, err);
    }
    if (rc) return rc;
    *enc_ms = lip_time_ms() - t;
    *data = s->enc.data;
    *len = s->enc.len;
    if (c) {
        pthread_mutex_lock(&c->mu);
        if (!c->data[af] && c->bytes + s->enc.len <= IDLE_CACHE_BUDGET) {
            uint8_t *copy = lip_malloc(s->enc.len);
            if (copy) {
                memcpy(copy, s->enc.data, s->enc.len);
                c->data[af] = copy;
                c->len[af] = s->enc.len;
                c->bytes += s->enc.len;
            }
        }
        pthread_mutex_unlock(&c->mu);
    }
    return 0;
}

static int send_idle(session *s, lip_err *err)
{
    double now = lip_time_ms();
    double late = now - slot_ms(s, s->index);
    if (s->max_lag_ms >= 0 && late > s->max_lag_ms) {
        /* Far behind the clock (a stall): skip to the current slot instead of bursting. */
        int64_t skip = (int64_t)(late / FRAME_MS);
        int64_t at = s->index;
        s->index += skip;
        s->av_pos += skip;
        int rc = behind(s, at, skip, "idle frames late", err);
        if (rc) return rc;
    }
    int af = lip_avatar_frame_index(s->a, s->av_pos, LIP_ORDER_PINGPONG);
    const uint8_t *data = NULL;
    size_t len = 0;
    double enc_ms = 0;
    int rc = idle_image(s, af, &data, &len, &enc_ms, err);
    if (rc) return rc;
    Lipsync__V1__StageTimings t = LIPSYNC__V1__STAGE_TIMINGS__INIT;
    t.encode_ms = (float)enc_ms;
    Lipsync__V1__Frame f = LIPSYNC__V1__FRAME__INIT;
    f.index = s->index;
    f.pts_ms = (int64_t)(FRAME_MS * (double)s->index);
    f.image.data = (uint8_t *)data;
    f.image.len = len;
    f.avatar_frame = af;
    f.width = s->w;
    f.height = s->h;
    f.timings = &t;
    t.total_ms = (float)(lip_time_ms() - slot_ms(s, s->index));
    Lipsync__V1__StreamResponse r = LIPSYNC__V1__STREAM_RESPONSE__INIT;
    r.msg_case = LIPSYNC__V1__STREAM_RESPONSE__MSG_FRAME;
    r.frame = &f;
    rc = send_msg(s, &r, err);
    s->index++;
    s->av_pos++;
    atomic_fetch_add(&s->v->idle_frames, 1);
    lip_counter_inc(obs.idle);
    return rc;
}

/* Sends everything an utterance still has, then ends it (a new utterance starts after it). */
static int drain_utterance(session *s, lip_err *err)
{
    while (s->utt_active) {
        pop_ready(s, s->last_arrival, 0);
        if (s->ring_n == 0 && !s->has_pend) return end_utterance(s, "", err);
        if (s->has_pend && s->paced) wait_slot(s, s->index);
        int rc = run_speech(s, err);
        if (rc) return rc;
        if (lip_rpc_call_cancelled(s->call))
            return lip_err_set(err, LIP_ECANCELLED, "stream cancelled by the client");
    }
    return 0;
}

static int on_audio(session *s, const ProtobufCBinaryData *b, double arrival, lip_err *err)
{
    size_t n = 0;
    int rc = pcm_decode(b, s->encoding, s->pcm, MAX_CHUNK_SAMPLES, &n, err);
    if (rc || n == 0) return rc;
    if (s->utt_active && s->utt_finishing && (rc = drain_utterance(s, err))) return rc;
    if (!s->utt_active) {
        lip_audio_stream_opts ao = lip_audio_stream_opts_default();
        ao.lookahead = s->lookahead;
        s->as = lip_audio_stream_new(lip_pipeline_encoder(s->sv->pipe), &ao, err);
        if (!s->as) return err && err->code ? err->code : LIP_ENOMEM;
        s->utt_active = true;
        s->utt++;
        s->utt_next = 0;
        s->utt_samples = 0;
        s->utt_t0 = arrival;
    }
    double t = lip_time_ms();
    rc = lip_audio_stream_push(s->as, s->pcm, n, err);
    if (rc) return rc;
    s->utt_samples += (int64_t)n;
    s->last_arrival = arrival;
    pop_ready(s, arrival, lip_time_ms() - t);
    return 0;
}

static int on_end(session *s, double arrival, lip_err *err)
{
    if (!s->utt_active || s->utt_finishing) return 0; /* nothing to flush */
    lip_err ferr = {0};
    int rc = lip_audio_stream_finish(s->as, &ferr);
    if (rc == LIP_EINVAL) {
        /* Shorter than one mel window: no frame can be made. Say so and go back to idle. */
        char m[LIP_ERRMSG_MAX + 32];
        snprintf(m, sizeof m, "no frames: %s", ferr.msg);
        return end_utterance(s, m, err);
    }
    if (rc) return lip_err_set(err, rc, "%s", ferr.msg);
    s->utt_finishing = true;
    s->last_arrival = arrival;
    pop_ready(s, arrival, 0);
    return 0;
}

static int on_interrupt(session *s, lip_err *err)
{
    /* Dropped: every frame whose audio was received but that was not sent (ready ones in the
     * ring and those still waiting for look-ahead audio). */
    int64_t dropped = 0;
    if (s->utt_active) {
        int64_t covered = (s->utt_samples + 639) / 640;
        dropped = LIP_MAX(covered - s->utt_next, (int64_t)s->ring_n);
    }
    atomic_fetch_add(&s->v->interrupts, 1);
    int rc = send_event(s, LIPSYNC__V1__STREAM_EVENT__KIND__KIND_INTERRUPTED, "", s->index,
                        dropped, s->utt_active ? s->utt_next : 0, err);
    utt_reset(s);
    return rc;
}

static int on_message(session *s, const lip_rpc_buf *m, double arrival, lip_err *err)
{
    Lipsync__V1__StreamRequest *q = lipsync__v1__stream_request__unpack(NULL, m->len, m->data);
    if (!q)
        return lip_err_set(err, LIP_EINVAL, "cannot parse lipsync.v1.StreamRequest (%zu bytes)",
                           m->len);
    int rc = 0;
    switch (q->msg_case) {
    case LIPSYNC__V1__STREAM_REQUEST__MSG_AUDIO: rc = on_audio(s, &q->audio, arrival, err); break;
    case LIPSYNC__V1__STREAM_REQUEST__MSG_END: rc = on_end(s, arrival, err); break;
    case LIPSYNC__V1__STREAM_REQUEST__MSG_INTERRUPT: rc = on_interrupt(s, err); break;
    case LIPSYNC__V1__STREAM_REQUEST__MSG_OPEN:
        rc = lip_err_set(err, LIP_EINVAL, "StreamRequest.open sent twice: only the first "
                         "message opens the session");
        break;
    default:
        rc = lip_err_set(err, LIP_EINVAL, "StreamRequest with no message set (expected audio, "
                         "end or interrupt)");
    }
    lipsync__v1__stream_request__free_unpacked(q, NULL);
    return rc;
}

static int check_open(const Lipsync__V1__StreamOpen *o, lip_err *err)
{
    if ((unsigned)o->format > 2)
        return lip_err_set(err, LIP_EINVAL, "open.format: expected 0-2 (JPEG, PNG, RAW_BGR), "
                           "got %d", (int)o->format);
    if (o->quality < 0 || o->quality > 100)
        return lip_err_set(err, LIP_EINVAL, "open.quality: expected 0 (default) or 1-100, got "
                           "%d", o->quality);
    if (o->start_frame < 0)
        return lip_err_set(err, LIP_EINVAL, "open.start_frame: expected >= 0, got %d",
                           o->start_frame);
    if ((unsigned)o->latency > 1)
        return lip_err_set(err, LIP_EINVAL, "open.latency: expected 0 (EXACT) or 1 (LOW), got "
                           "%d", (int)o->latency);
    if (o->lookahead_frames < 0 || o->lookahead_frames > 6)
        return lip_err_set(err, LIP_EINVAL, "open.lookahead_frames: expected 0 (default %d) or "
                           "1-6, got %d", DEFAULT_LOOKAHEAD_LOW, o->lookahead_frames);
    if ((unsigned)o->encoding > 1)
        return lip_err_set(err, LIP_EINVAL, "open.encoding: expected 0 (F32LE) or 1 (S16LE), "
                           "got %d", (int)o->encoding);
    if (o->sample_rate != 0 && o->sample_rate != LIP_AUDIO_RATE)
        return lip_err_set(err, LIP_EINVAL, "open.sample_rate: expected 0 or 16000, got %d",
                           o->sample_rate);
    if (o->max_lag_frames > 25 * 60)
        return lip_err_set(err, LIP_EINVAL, "open.max_lag_frames: expected <= 1500 (60 s), got "
                           "%d", o->max_lag_frames);
    return 0;
}

static void session_free(session *s)
{
    utt_reset(s);
    lip_free_aligned(s->ring);
    lip_free_aligned(s->batch);
    lip_free(s->pcm);
    lip_free(s->bgr);
    lip_jpeg_enc_free(s->je);
    lip_free(s->enc.data);
    idle_put(s->ic);
    if (s->a) svc_release(s->sv, s->a);
}

static int session_loop(session *s, lip_err *err)
{
    for (;;) {
        if (lip_rpc_call_cancelled(s->call))
            return lip_err_set(err, LIP_ECANCELLED, "stream cancelled by the client");
        bool idle_ok = s->idle && !(s->utt_active && s->utt_started);
        /* Messages are read even while frames wait (an interrupt must not queue behind them);
         * ready tensors beyond the ring stay in the audio stream (2 KiB of features each), and
         * reading stops only when the client is 30 s of audio ahead. */
        int64_t ahead = s->utt_active ? s->utt_samples / 640 - s->utt_next : 0;
        bool can_read = !s->eof && ahead < MAX_AHEAD_FRAMES;
        if (can_read) {
            double timeout = 1000;
            if (s->has_pend && s->paced)
                timeout = LIP_MAX(0.0, slot_ms(s, s->index) - lip_time_ms());
            else if (s->ring_n > 0 || s->has_pend || (s->utt_active && s->utt_finishing))
                timeout = 0;
            else if (idle_ok) timeout = LIP_MAX(0.0, slot_ms(s, s->index) - lip_time_ms());
            lip_rpc_buf m = {0};
            double at = 0;
            int r = lip_rpc_call_recv(s->call, &m, &at, timeout);
            if (r == 1) {
                int rc = on_message(s, &m, at, err);
                lip_free(m.data);
                if (rc) return rc;
                /* More messages waiting: read them first so frames run in fuller batches. */
                if (s->ring_n < s->batch_max) continue;
            } else if (r == 0) {
                s->eof = true;
                int rc = on_end(s, lip_time_ms(), err);
                if (rc) return rc;
            } else if (r == LIP_ECANCELLED) {
                return lip_err_set(err, LIP_ECANCELLED, "stream cancelled by the client");
            } else if (r != LIP_ETIMEOUT) {
                return lip_err_set(err, r, "reading the stream failed");
            }
        }
        if (s->utt_active) pop_ready(s, s->last_arrival, 0);
        if (s->has_pend || s->ring_n > 0) {
            int rc = run_speech(s, err);
            if (rc) return rc;
            /* Not reading (half-closed or far ahead): sleep until the next frame is due. */
            if (s->has_pend && s->paced && !can_read) wait_slot(s, s->index);
            continue;
        }
        if (s->utt_active && s->utt_finishing) {
            int rc = end_utterance(s, "", err);
            if (rc) return rc;
            continue;
        }
        if (s->eof && !s->utt_active) return 0;
        idle_ok = s->idle && !(s->utt_active && s->utt_started);
        if (idle_ok && lip_time_ms() >= slot_ms(s, s->index)) {
            int rc = send_idle(s, err);
            if (rc) return rc;
        } else if (!can_read) {
            lip_time_sleep_ms(1); /* cannot happen with an empty ring; guards a busy loop */
        }
    }
}

static int h_stream(void *ud, lip_rpc_call *call, const uint8_t *req, size_t len,
                    lip_rpc_buf *resp, lip_err *err)
{
    (void)resp;
    v1_ctx *v = ud;
    Lipsync__V1__StreamRequest *q = lipsync__v1__stream_request__unpack(NULL, len, req);
    if (!q)
        return lip_err_set(err, LIP_EINVAL, "cannot parse lipsync.v1.StreamRequest (%zu bytes)",
                           len);
    if (q->msg_case != LIPSYNC__V1__STREAM_REQUEST__MSG_OPEN || !q->open) {
        int got = (int)q->msg_case;
        lipsync__v1__stream_request__free_unpacked(q, NULL);
        return lip_err_set(err, LIP_EINVAL, "the first StreamRequest must be open (field 1); got "
                           "message case %d", got);
    }
    const Lipsync__V1__StreamOpen *o = q->open;
    session s = {0};
    s.late_at = -1;
    s.v = v;
    s.sv = v->sv;
    s.call = call;
    int rc = check_open(o, err);
    if (!rc && !lip_pipeline_encoder(s.sv->pipe))
        rc = lip_err_set(err, LIP_EPRECOND, "this server has no audio encoder "
                         "(audio.encoder_path): streams cannot turn audio into frames");
    if (!rc) {
        bool loaded_now = false;
        double load_ms = 0;
        rc = svc_acquire(s.sv, o->avatar_id, &s.a, &loaded_now, &load_ms, s.id, err);
    }
    if (!rc) {
        s.format = (int)o->format;
        s.quality = o->quality ? o->quality : lip_pipeline_options(s.sv->pipe)->jpeg_quality;
        s.encoding = (int)o->encoding;
        s.lookahead = o->latency == LIPSYNC__V1__LATENCY_MODE__LATENCY_MODE_LOW
                          ? (o->lookahead_frames ? o->lookahead_frames : DEFAULT_LOOKAHEAD_LOW)
                          : 7;
        s.need_ms = FRAME_MS * s.lookahead + 172.0;
        s.idle = !o->disable_idle;
        s.paced = o->paced;
        s.batch_max = s.paced ? BATCH_PACED : BATCH_UNPACED;
        s.max_lag_ms = o->max_lag_frames < 0 ? -1
                       : FRAME_MS * (o->max_lag_frames ? o->max_lag_frames : DEFAULT_LAG_FRAMES);
        s.nframes = lip_avatar_frame_count(s.a);
        s.w = lip_avatar_width(s.a);
        s.h = lip_avatar_height(s.a);
        s.av_pos = o->start_frame;
        s.ring = lip_aligned_alloc((size_t)RING_CAP * TENSOR * sizeof(float));
        s.batch = lip_aligned_alloc((size_t)BATCH_UNPACED * TENSOR * sizeof(float));
        s.pcm = lip_malloc(MAX_CHUNK_SAMPLES * sizeof(float));
        s.bgr = lip_malloc((size_t)s.w * s.h * 3);
        s.je = lip_jpeg_enc_new();
        if (s.format != LIPSYNC__V1__IMAGE_FORMAT__IMAGE_FORMAT_RAW_BGR)
            s.ic = idle_get(s.a, s.format, s.quality);
        if (!s.ring || !s.batch || !s.pcm || !s.bgr || !s.je)
            rc = lip_err_set(err, LIP_ENOMEM, "out of memory opening a stream session");
    }
    lipsync__v1__stream_request__free_unpacked(q, NULL);
    if (!rc) {
        atomic_fetch_add(&v->active, 1);
        atomic_fetch_add(&v->streams_total, 1);
        lip_gauge_add(obs.active, 1);
        s.t0 = lip_time_ms();
        rc = send_event(&s, LIPSYNC__V1__STREAM_EVENT__KIND__KIND_OPENED, "", 0, 0, 0, err);
        if (!rc) rc = session_loop(&s, err);
        atomic_fetch_sub(&v->active, 1);
        lip_gauge_add(obs.active, -1);
    }
    session_free(&s);
    return rc;
}

/* ---- Render -------------------------------------------------------------------------------- */

static int h_render(void *ud, lip_rpc_call *call, const uint8_t *req, size_t len,
                    lip_rpc_buf *resp, lip_err *err)
{
    v1_ctx *v = ud;
    lip_service *sv = v->sv;
    Lipsync__V1__RenderRequest *q = (Lipsync__V1__RenderRequest *)svc_unpack(
        &lipsync__v1__render_request__descriptor, req, len, err);
    if (!q) return err->code;
    float *pcm = NULL, *rows = NULL, *tensors = NULL;
    lip_avatar *a = NULL;
    lip_result *results = NULL;
    Lipsync__V1__Frame *frames = NULL, **fptr = NULL;
    Lipsync__V1__StageTimings *ft = NULL;
    int nrows = 0, nchunks = 0, rc = 0;
    char id[72] = "";
    size_t n = 0;
    Lipsync__V1__StreamOpen chk = LIPSYNC__V1__STREAM_OPEN__INIT;
    chk.format = q->format;
    chk.quality = q->quality;
    chk.start_frame = q->start_frame;
    chk.encoding = q->encoding;
    chk.sample_rate = q->sample_rate;
    rc = check_open(&chk, err);
    if (!rc && !lip_pipeline_encoder(sv->pipe))
        rc = lip_err_set(err, LIP_EPRECOND, "this server has no audio encoder "
                         "(audio.encoder_path)");
    if (!rc) {
        size_t w = q->encoding == LIPSYNC__V1__AUDIO_ENCODING__AUDIO_ENCODING_S16LE ? 2 : 4;
        size_t max = LIP_MIN(q->audio.len / w + 1, MAX_RENDER_SAMPLES);
        pcm = lip_malloc(max * sizeof(float));
        rc = pcm ? pcm_decode(&q->audio, (int)q->encoding, pcm, MAX_RENDER_SAMPLES, &n, err)
                 : lip_err_set(err, LIP_ENOMEM, "out of memory for %zu samples", max);
        if (!rc && n < LIP_AUDIO_MIN_SAMPLES)
            rc = lip_err_set(err, LIP_EINVAL, "audio: %zu samples, at least %d needed (one mel "
                             "window, ~0.19 s)", n, LIP_AUDIO_MIN_SAMPLES);
    }
    if (!rc) {
        bool loaded_now = false;
        double load_ms = 0;
        rc = svc_acquire(sv, q->avatar_id, &a, &loaded_now, &load_ms, id, err);
    }
    Lipsync__V1__StageTimings tot = LIPSYNC__V1__STAGE_TIMINGS__INIT;
    double t0 = lip_time_ms();
    if (!rc) rc = lip_audio_features(lip_pipeline_encoder(sv->pipe), pcm, n, &rows, &nrows, err);
    tot.audio_ms = (float)(lip_time_ms() - t0);
    if (!rc) {
        nchunks = (nrows + BATCH_UNPACED - 1) / BATCH_UNPACED;
        results = lip_calloc((size_t)nchunks, sizeof *results);
        tensors = lip_aligned_alloc((size_t)BATCH_UNPACED * TENSOR * sizeof(float));
        frames = lip_calloc((size_t)nrows, sizeof *frames);
        fptr = lip_calloc((size_t)nrows, sizeof *fptr);
        ft = lip_calloc((size_t)nrows, sizeof *ft);
        if (!results || !tensors || !frames || !fptr || !ft)
            rc = lip_err_set(err, LIP_ENOMEM, "out of memory for %d frames", nrows);
    }
    for (int c = 0; !rc && c < nchunks; c++) {
        int first = c * BATCH_UNPACED, b = LIP_MIN(BATCH_UNPACED, nrows - first);
        int ids[BATCH_UNPACED];
        for (int k = 0; k < b; k++) {
            lip_audio_frame_tensor(rows, nrows, 0, first + k, tensors + (size_t)k * TENSOR);
            ids[k] = lip_avatar_frame_index(a, (long)q->start_frame + first + k,
                                            LIP_ORDER_PINGPONG);
        }
        lip_request rq = {0};
        rq.batch = b;
        rq.order = LIP_ORDER_PINGPONG;
        rq.frame_ids = ids;
        rq.audio = tensors;
        rq.n_audio = b;
        rq.format = pipe_format((int)q->format);
        rq.quality = q->quality ? q->quality : lip_pipeline_options(sv->pipe)->jpeg_quality;
        rq.cancel = lip_rpc_call_cancel_flag(call);
        rq.deadline_ms = lip_rpc_call_deadline_ms(call);
        rc = lip_pipeline_run(sv->pipe, a, &rq, &results[c], err);
        if (rc) break;
        lip_timings *t = &results[c].t;
        svc_record(sv, id, t->inference_ms, b);
        tot.queue_ms += (float)t->queue_ms;
        tot.model_ms += (float)t->inference_ms;
        tot.composite_ms += (float)(t->composite_ms + t->prepare_ms);
        tot.encode_ms += (float)t->encode_ms;
        for (int k = 0; k < b; k++) {
            int i = first + k;
            lipsync__v1__stage_timings__init(&ft[i]);
            ft[i].model_ms = (float)(t->inference_ms / b);
            ft[i].composite_ms = (float)((t->composite_ms + t->prepare_ms) / b);
            ft[i].encode_ms = (float)(t->encode_ms / b);
            ft[i].total_ms = (float)(t->total_ms / b);
            lipsync__v1__frame__init(&frames[i]);
            frames[i].index = i;
            frames[i].pts_ms = (int64_t)(FRAME_MS * i);
            frames[i].image.data = results[c].frames[k].data;
            frames[i].image.len = results[c].frames[k].len;
            frames[i].speech = 1;
            frames[i].avatar_frame = results[c].frames[k].avatar_frame;
            frames[i].width = results[c].width;
            frames[i].height = results[c].height;
            frames[i].timings = &ft[i];
            frames[i].utterance = 1;
            frames[i].utterance_frame = i;
            frames[i].audio_received_ms = (int64_t)(n * 1000 / LIP_AUDIO_RATE);
            fptr[i] = &frames[i];
        }
    }
    if (!rc) {
        tot.total_ms = (float)(lip_time_ms() - t0);
        Lipsync__V1__RenderResponse r = LIPSYNC__V1__RENDER_RESPONSE__INIT;
        r.n_frames = (size_t)nrows;
        r.frames = fptr;
        r.timings = &tot;
        rc = lip_rpc_pack(&r.base, resp, err);
    }
    for (int c = 0; results && c < nchunks; c++) lip_result_free(&results[c]);
    lip_free(results);
    lip_free(frames);
    lip_free(fptr);
    lip_free(ft);
    lip_free_aligned(tensors);
    lip_free(rows);
    lip_free(pcm);
    if (a) svc_release(sv, a);
    protobuf_c_message_free_unpacked(&q->base, NULL);
    return rc;
}

/* ---- ListAvatars, GetStats ----------------------------------------------------------------- */

static int h_list(void *ud, lip_rpc_call *call, const uint8_t *req, size_t len, lip_rpc_buf *resp,
                  lip_err *err)
{
    (void)call;
    v1_ctx *v = ud;
    ProtobufCMessage *q = svc_unpack(&lipsync__v1__list_avatars_request__descriptor, req, len,
                                     err);
    if (!q) return err->code;
    protobuf_c_message_free_unpacked(q, NULL);
    lip_model_stats *ms = NULL;
    int n = 0;
    if (svc_list(v->sv, &ms, &n)) return lip_err_set(err, LIP_ENOMEM, "out of memory listing");
    Lipsync__V1__AvatarInfo *info = lip_calloc((size_t)n + 1, sizeof *info);
    Lipsync__V1__AvatarInfo **ptr = lip_calloc((size_t)n + 1, sizeof *ptr);
    int rc = 0;
    if (!info || !ptr) {
        rc = lip_err_set(err, LIP_ENOMEM, "out of memory listing %d avatars", n);
    } else {
        for (int i = 0; i < n; i++) {
            lipsync__v1__avatar_info__init(&info[i]);
            info[i].id = ms[i].id;
            info[i].loaded = ms[i].loaded;
            info[i].frame_count = ms[i].frame_count;
            ptr[i] = &info[i];
        }
        Lipsync__V1__ListAvatarsResponse r = LIPSYNC__V1__LIST_AVATARS_RESPONSE__INIT;
        r.n_avatars = (size_t)n;
        r.avatars = ptr;
        r.default_avatar = v->sv->default_model ? v->sv->default_model : (char *)"";
        r.tts_available = tts_available();
        rc = lip_rpc_pack(&r.base, resp, err);
    }
    lip_free(info);
    lip_free(ptr);
    lip_free(ms);
    return rc;
}

static int h_stats(void *ud, lip_rpc_call *call, const uint8_t *req, size_t len,
                   lip_rpc_buf *resp, lip_err *err)
{
    (void)call;
    v1_ctx *v = ud;
    ProtobufCMessage *q = svc_unpack(&lipsync__v1__get_stats_request__descriptor, req, len, err);
    if (!q) return err->code;
    protobuf_c_message_free_unpacked(q, NULL);
    Lipsync__V1__GetStatsResponse r = LIPSYNC__V1__GET_STATS_RESPONSE__INIT;
    r.active_streams = atomic_load(&v->active);
    r.streams_total = atomic_load(&v->streams_total);
    r.speech_frames = atomic_load(&v->speech_frames);
    r.idle_frames = atomic_load(&v->idle_frames);
    r.dropped_frames = atomic_load(&v->dropped);
    r.behind_events = atomic_load(&v->behind);
    r.interrupts = atomic_load(&v->interrupts);
    r.utterances = atomic_load(&v->utterances);
    return lip_rpc_pack(&r.base, resp, err);
}

/* ---- registration -------------------------------------------------------------------------- */

static const lip_rpc_method methods[] = {
    {"Stream", LIP_RPC_STREAM, false, h_stream},
    {"Render", LIP_RPC_UNARY, true, h_render},
    {"ListAvatars", LIP_RPC_UNARY, false, h_list},
    {"GetStats", LIP_RPC_UNARY, false, h_stats},
};

int lip_service_register_v1(lip_service *sv, lip_rpc_server *srv, lip_err *err)
{
    if (nctx >= MAX_ATTACH)
        return lip_err_set(err, LIP_EINVAL, "%s attached %d times already (at most %d per "
                           "process)", LIP_V1_SERVICE, nctx, MAX_ATTACH);
    if (sv->nregistered >= SVC_MAX_REGISTERED)
        return lip_err_set(err, LIP_EINVAL, "too many services (max %d)", SVC_MAX_REGISTERED);
    pthread_once(&obs.once, obs_init);
    v1_ctx *v = &ctxs[nctx];
    memset(v, 0, sizeof *v);
    v->sv = sv;
    int rc = lip_rpc_server_add_service(srv, LIP_V1_SERVICE, methods,
                                        (int)LIP_ARRAY_LEN(methods), v, err);
    if (rc) return rc;
    nctx++;
    /* Health follows lip_service_update_health like the API.md services. */
    sv->srv = srv;
    lip_strlcpy(sv->registered[sv->nregistered++], LIP_V1_SERVICE, sizeof sv->registered[0]);
    return 0;
}

int lip_service_v1_sessions(void)
{
    int n = 0;
    for (int i = 0; i < nctx; i++) n += atomic_load(&ctxs[i].active);
    return n;
}
