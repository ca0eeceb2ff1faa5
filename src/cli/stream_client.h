/* SPDX-License-Identifier: MIT */
/* cli/stream_client.h: one lipsync.v1 Stream from the client side (a writer thread sends audio,
 * the caller's thread reads frames), shared by `lipsync client stream` and `lipsync bench
 * stream`. */
#ifndef LIP_CLI_STREAM_CLIENT_H
#define LIP_CLI_STREAM_CLIENT_H

#include "core/core.h"
#include "rpc/rpc.h"

#include <stdbool.h>
#include <stdint.h>

/* Called for every frame, in order, on the reading thread; data is valid only during the call.
 * A non-zero return cancels the stream and becomes lip_stream_run's result. */
typedef int (*lip_stream_frame_fn)(void *ud, int64_t index, bool speech, const uint8_t *data,
                                   size_t len, int width, int height, lip_err *err);

typedef struct lip_stream_job {
    const char *avatar;      /* "" / NULL: the server's default */
    const float *pcm;        /* 16 kHz mono, borrowed for the run */
    size_t n;
    int chunk_ms;            /* audio per message; default 40 */
    bool realtime;           /* send at the pace of speech (default) or as fast as possible */
    bool low_latency;        /* LATENCY_MODE_LOW */
    int lookahead;           /* LOW mode look-ahead frames (0 = server default) */
    bool idle, paced;
    int max_lag_frames;      /* 0 = server default, < 0 never drop */
    int format, quality, start_frame;
    double tail_ms;          /* wait this long after end-of-utterance before half-closing */
    double timeout_ms;       /* deadline of the call; 0 = none */
    lip_stream_frame_fn on_frame;
    void *ud;
} lip_stream_job;

lip_stream_job lip_stream_job_default(void);

typedef struct lip_stream_result {
    int status;              /* grpc_status_code */
    char details[256];
    int width, height;
    int64_t speech_frames, idle_frames, dropped, behind_events, utterance_frames, gaps;
    int64_t next_index;
    double first_speech_ms;  /* stream open -> first speech frame received */
    double wall_ms;
    /* caller-provided: server-side latency (total_ms) of each speech frame received */
    float *lat_ms;
    int n_lat;
    int lat_cap;
} lip_stream_result;

/* Runs one stream to its end on client c (thread-safe: one call per thread). res->lat_ms /
 * res->lat_cap are the caller's (may be NULL / 0); everything else is filled. 0 when the stream
 * ended OK; otherwise a LIP_E* code with err naming the gRPC status or the local failure. */
int lip_stream_run(lip_rpc_client *c, const lip_stream_job *j, lip_stream_result *res,
                   lip_err *err);

#endif
