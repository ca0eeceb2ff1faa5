/* SPDX-License-Identifier: MIT */
/* pipeline: audio + avatar frames -> UNet -> paste-back -> encoded frames. Used by every server
 * role and by `lipsync render`.
 *
 * A lip_pipeline holds what requests share: the audio encoder, a thread pool for the per-frame
 * stages, and a fixed set of scratch slots (tensor and frame buffers sized once for the chunk
 * size). lip_pipeline_run() is thread-safe: concurrent calls each take a scratch slot (waiting
 * for one, or failing with LIP_EBUSY when try_only is set), so memory is bounded by the number of
 * slots and nothing is allocated per frame in steady state except the encoded output bytes.
 *
 * A request of B frames runs in chunks of at most opts.chunk_frames: decode + pre-process of
 * chunk k+1 on the pool overlaps the UNet run of chunk k, and paste + encode of chunk k overlaps
 * the UNet run of chunk k+1. Per-stage wall times come back with every result. */
#ifndef LIP_PIPELINE_H
#define LIP_PIPELINE_H

#include "avatar/avatar.h"
#include "core/core.h"
#include "engine/engine.h"

typedef struct lip_pipeline lip_pipeline;

enum lip_out_format {
    LIP_OUT_JPEG = 0, /* full composited frame, JPEG */
    LIP_OUT_PNG,      /* full composited frame, PNG (8-bit RGB) */
    LIP_OUT_BGR,      /* full composited frame, raw BGR24 (width*height*3 bytes) */
    LIP_OUT_RAW       /* no compositing: the UNet output, float32 [3][320][320] BGR */
};

enum lip_paste_mode_ { LIP_PIPE_PASTE_EXACT = 0, LIP_PIPE_PASTE_FEATHER = 1 };

/* How raw PCM in a request maps onto stream frames (API.md §1.5 and §6). */
enum lip_pcm_mode {
    LIP_PCM_REQUEST = 0,  /* §1.5: sample 0 is stream frame max(0, s-8); clamped at the start */
    LIP_PCM_INFERENCE = 1 /* §6: sample 0 is 8 frames before output 0, never clamped */
};

struct lip_request;

/* Runs the UNet of one chunk somewhere else (the compositing role's remote inference): frames
 * first..first+n-1 of req, visual [n][6][320][320] (built from a's frames, or the request's),
 * audio [n][32][16][16] (NULL when the pipeline has no audio encoder and req carries PCM: the
 * callee forwards req's PCM instead), out [n][3][320][320]. Called on a slot's inference
 * thread, concurrently for different slots. 0 or a LIP_E* code with err set. */
typedef int (*lip_pipeline_infer_fn)(void *ud, lip_avatar *a, const struct lip_request *req,
                                     int first, int n, const float *visual, const float *audio,
                                     float *out, lip_err *err);

typedef struct lip_pipeline_opts {
    const char *encoder_path; /* audio encoder ONNX (needed for PCM input); NULL = none */
    lip_engine_opts encoder_engine;
    int threads;              /* pool threads for per-frame stages; 0 = one per CPU */
    int slots;                /* concurrent requests with scratch; 0 = 2 */
    int chunk_frames;         /* frames per UNet call; 0 = 8 */
    int paste_mode;           /* LIP_PIPE_PASTE_EXACT or LIP_PIPE_PASTE_FEATHER (default) */
    int feather_px;           /* feather border, px of the output rect; default 10 */
    int jpeg_quality;         /* default 75 */
    int png_level;            /* zlib level for PNG; default 1 */
    bool incremental_jpeg;    /* JPEG frames spliced into cached background streams with restart
                                 markers (docs/IMAGE.md "Incremental encoding"); default true.
                                 Same pixels as a full encode; bytes as a full encode with those
                                 markers. Requests at another quality than jpeg_quality, and
                                 frames past the cache budget, are encoded in full. */
    bool incremental_png;     /* PNG frames from cached deflate pieces of the background, the
                                 crop rows written stored (~1 ms instead of ~30 ms per 720p frame,
                                 +2-4% bytes); default true. Same pixels as a full encode. */
    int bg_cache_mb;          /* per-avatar budget of cached encoded backgrounds (JPEG and PNG
                                 together), MiB; 0 = 256 (the default); set by the first
                                 pipeline that encodes the avatar */
    lip_pipeline_infer_fn infer; /* optional: replaces the avatar's UNet for every chunk (avatars
                                    then need no UNet loaded); NULL = run it locally */
    void *infer_ud;
} lip_pipeline_opts;

lip_pipeline_opts lip_pipeline_opts_default(void);

/* Creates a pipeline (loads the audio encoder if a path is given). NULL + err on failure. */
lip_pipeline *lip_pipeline_new(const lip_pipeline_opts *opts, lip_err *err);
void lip_pipeline_free(lip_pipeline *p);
/* The audio encoder engine, or NULL when the pipeline has none. */
lip_engine *lip_pipeline_encoder(lip_pipeline *p);
const lip_pipeline_opts *lip_pipeline_options(const lip_pipeline *p);

typedef struct lip_request {
    int batch;             /* B >= 1 */
    int start_frame;       /* stream frame of output 0 (s >= 0) */
    int order;             /* LIP_ORDER_LOOP (seed APIs) or LIP_ORDER_PINGPONG */
    const int *frame_ids;  /* optional [B]: explicit avatar frames (frame-id API); overrides
                              start_frame/order for frame selection */

    /* Audio, one of (checked in this order): */
    const float *pcm;      /* float32 16 kHz mono PCM, n_pcm samples, mapped per pcm_mode */
    size_t n_pcm;
    int pcm_mode;          /* enum lip_pcm_mode */
    const float *audio;    /* UNet audio tensors [n_audio][32][16][16]; n_audio is 1
                              (replicated to every frame) or B */
    int n_audio;
    const float *features; /* encoder feature rows [n_features][512] of a whole track (aud_ave
                              layout: row k belongs to stream frame k); frame k uses rows k-8..k+7 */
    int n_features;

    const float *visual;   /* optional client tensors [B][6][320][320]; NULL = built from the
                              avatar's frames and rects */
    int format;            /* enum lip_out_format */
    int quality;           /* JPEG quality 1-100; 0 = pipeline default */
    bool try_only;         /* fail with LIP_EBUSY instead of waiting for a scratch slot */
    const volatile int *cancel; /* optional: when it becomes nonzero the run stops with
                                   LIP_ECANCELLED at the next chunk boundary */
    double deadline_ms;    /* optional lip_time_ms() deadline; 0 = none (LIP_ETIMEOUT) */
} lip_request;

typedef struct lip_timings {
    double queue_ms;     /* waiting for a scratch slot */
    double audio_ms;     /* PCM -> mel -> encoder -> tensors */
    double prepare_ms;   /* decode backgrounds, crop, resize, mask */
    double inference_ms; /* UNet */
    double composite_ms; /* paste-back into the frame */
    double encode_ms;    /* JPEG/PNG encoding */
    double total_ms;
} lip_timings;

typedef struct lip_frame {
    uint8_t *data;     /* encoded frame (or raw floats/BGR bytes); owned by the result */
    size_t len;
    int avatar_frame;  /* the avatar frame used */
    int rect[4];       /* its crop rect [x1,y1,x2,y2] */
} lip_frame;

typedef struct lip_result {
    int count;
    lip_frame *frames; /* [count] */
    int width, height; /* of composited frames */
    lip_timings t;
} lip_result;

/* Runs one request against avatar a (the caller holds a reference). Validates shapes and
 * indices (not NaN/Inf: the services check values in the order API.md prescribes). Fills *res
 * (free with lip_result_free, also after a failure). Thread-safe. */
int lip_pipeline_run(lip_pipeline *p, lip_avatar *a, const lip_request *req, lip_result *res,
                     lip_err *err);
void lip_result_free(lip_result *res);

/* Builds the UNet audio tensors [batch][8192] for a request's audio (pcm, audio or features as
 * above) without running the UNet; used by callers that only need features. */
int lip_pipeline_audio_tensors(lip_pipeline *p, const lip_request *req, float *out, double *ms,
                               lip_err *err);

#endif
