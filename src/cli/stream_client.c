/* SPDX-License-Identifier: MIT */
/* cli/stream_client.c: a lipsync.v1 Stream client shared by `lipsync client stream` and
 * `lipsync bench stream`. A writer thread sends the open message, the audio in chunks (at the
 * pace of speech, or as fast as the server reads), end-of-utterance and the half-close, while
 * the calling thread reads frames and events; per frame it records the server-side latency
 * (StageTimings.total_ms: arrival of the chunk that completed the frame -> departure) and hands
 * the frame to an optional callback. */
#include "cli/stream_client.h"

#include "lipsync_v1.pb-c.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#define V1_STREAM_PATH "/lipsync.v1.LipSync/Stream"

lip_stream_job lip_stream_job_default(void)
{
    return (lip_stream_job){.chunk_ms = 40, .realtime = true, .timeout_ms = 0};
}

typedef struct writer {
    lip_rpc_stream *st;
    const lip_stream_job *j;
    int rc;
    lip_err err;
} writer;

static int send_req(lip_rpc_stream *st, Lipsync__V1__StreamRequest *q, lip_err *err)
{
    lip_rpc_buf b = {0};
    int rc = lip_rpc_pack(&q->base, &b, err);
    if (rc) return rc;
    rc = lip_rpc_stream_write(st, b.data, b.len, err);
    lip_free(b.data);
    return rc;
}

static void *writer_main(void *arg)
{
    writer *w = arg;
    const lip_stream_job *j = w->j;
    Lipsync__V1__StreamOpen o = LIPSYNC__V1__STREAM_OPEN__INIT;
    o.avatar_id = (char *)(j->avatar ? j->avatar : "");
    o.format = (Lipsync__V1__ImageFormat)j->format;
    o.quality = j->quality;
    o.start_frame = j->start_frame;
    o.latency = j->low_latency ? LIPSYNC__V1__LATENCY_MODE__LATENCY_MODE_LOW
                               : LIPSYNC__V1__LATENCY_MODE__LATENCY_MODE_EXACT;
    o.lookahead_frames = j->lookahead;
    o.disable_idle = !j->idle;
    o.paced = j->paced;
    o.max_lag_frames = j->max_lag_frames;
    Lipsync__V1__StreamRequest q = LIPSYNC__V1__STREAM_REQUEST__INIT;
    q.msg_case = LIPSYNC__V1__STREAM_REQUEST__MSG_OPEN;
    q.open = &o;
    int rc = send_req(w->st, &q, &w->err);
    size_t step = (size_t)LIP_MAX(1, j->chunk_ms) * 16; /* 16 samples per ms */
    double t0 = lip_time_ms();
    for (size_t i = 0, k = 0; !rc && i < j->n; i += step, k++) {
        if (j->realtime) {
            double due = t0 + (double)(k * step) / 16.0;
            double left = due - lip_time_ms();
            if (left > 0) lip_time_sleep_ms(left);
        }
        Lipsync__V1__StreamRequest a = LIPSYNC__V1__STREAM_REQUEST__INIT;
        a.msg_case = LIPSYNC__V1__STREAM_REQUEST__MSG_AUDIO;
        a.audio.data = (uint8_t *)(j->pcm + i);
        a.audio.len = LIP_MIN(step, j->n - i) * sizeof(float);
        rc = send_req(w->st, &a, &w->err);
    }
    if (!rc) {
        Lipsync__V1__EndOfUtterance e = LIPSYNC__V1__END_OF_UTTERANCE__INIT;
        Lipsync__V1__StreamRequest r = LIPSYNC__V1__STREAM_REQUEST__INIT;
        r.msg_case = LIPSYNC__V1__STREAM_REQUEST__MSG_END;
        r.end = &e;
        rc = send_req(w->st, &r, &w->err);
    }
    if (!rc && j->tail_ms > 0) lip_time_sleep_ms(j->tail_ms);
    if (!rc) rc = lip_rpc_stream_close_send(w->st, &w->err);
    w->rc = rc;
    return NULL;
}

int lip_stream_run(lip_rpc_client *c, const lip_stream_job *j, lip_stream_result *res,
                   lip_err *err)
{
    float *lat = res->lat_ms;
    int cap = res->lat_cap;
    memset(res, 0, sizeof *res);
    res->lat_ms = lat;
    res->lat_cap = cap;
    lip_rpc_stream *st = lip_rpc_stream_open(c, V1_STREAM_PATH, j->timeout_ms, err);
    if (!st) return err->code ? err->code : LIP_EUNAVAIL;
    writer w = {.st = st, .j = j};
    pthread_t th;
    if (pthread_create(&th, NULL, writer_main, &w) != 0) {
        lip_rpc_stream_finish(st, true, NULL);
        return lip_err_set(err, LIP_ENOMEM, "cannot start the writer thread");
    }
    double t0 = lip_time_ms();
    int rc = 0;
    for (;;) {
        lip_rpc_buf m = {0};
        int r = lip_rpc_stream_read(st, &m, err);
        if (r <= 0) break;
        Lipsync__V1__StreamResponse *p = lipsync__v1__stream_response__unpack(NULL, m.len, m.data);
        lip_free(m.data);
        if (!p) {
            rc = lip_err_set(err, LIP_EFORMAT, "cannot parse a StreamResponse");
            break;
        }
        if (p->msg_case == LIPSYNC__V1__STREAM_RESPONSE__MSG_FRAME) {
            const Lipsync__V1__Frame *f = p->frame;
            if (f->speech) {
                res->speech_frames++;
                if (res->first_speech_ms <= 0) res->first_speech_ms = lip_time_ms() - t0;
                if (f->timings && res->lat_ms && res->n_lat < res->lat_cap)
                    res->lat_ms[res->n_lat++] = f->timings->total_ms;
            } else {
                res->idle_frames++;
            }
            if (f->index != res->next_index) res->gaps++;
            res->next_index = f->index + 1;
            if (j->on_frame)
                rc = j->on_frame(j->ud, f->index, f->speech, f->image.data, f->image.len,
                                 f->width, f->height, err);
        } else if (p->msg_case == LIPSYNC__V1__STREAM_RESPONSE__MSG_EVENT) {
            const Lipsync__V1__StreamEvent *e = p->event;
            if (e->kind == LIPSYNC__V1__STREAM_EVENT__KIND__KIND_OPENED) {
                res->width = e->width;
                res->height = e->height;
            } else if (e->kind == LIPSYNC__V1__STREAM_EVENT__KIND__KIND_BEHIND) {
                res->behind_events++;
                res->dropped += e->dropped_frames;
            } else if (e->kind == LIPSYNC__V1__STREAM_EVENT__KIND__KIND_UTTERANCE_END) {
                res->utterance_frames += e->frames;
            }
        }
        lipsync__v1__stream_response__free_unpacked(p, NULL);
        if (rc) break;
    }
    res->wall_ms = lip_time_ms() - t0;
    lip_rpc_status s = {0};
    lip_rpc_stream_finish(st, rc != 0, &s);
    pthread_join(th, NULL);
    res->status = s.code;
    lip_strlcpy(res->details, s.details, sizeof res->details);
    if (!rc && s.code != GRPC_STATUS_OK)
        rc = lip_err_set(err, LIP_EIO, "stream ended with %s: %s", lip_rpc_status_name(s.code),
                         s.details);
    if (!rc && w.rc) rc = lip_err_set(err, w.rc, "sending: %s", w.err.msg);
    return rc;
}
