/* SPDX-License-Identifier: MIT */
/* avatar: one person's frames, crop rectangles and UNet, loaded from disk (DATA.md).
 *
 * An avatar is immutable once loaded and reference-counted: the registry, requests and
 * streams each hold a reference, and memory is released when the last one is dropped, so an
 * avatar unloaded while requests run stays valid for them. Background frames stay compressed
 * in memory (JPEG/PNG bytes as on disk) and are decoded per use, with a small shared cache of
 * decoded frames. Crop rectangles are validated against the frame size at load time, so a bad
 * rectangle is a load error, never a crash at request time.
 *
 * Layouts read (DATA.md): the canonical layout (avatar.yaml, unet.onnx, frames/, crop_rects.json,
 * optional aud_ave.npy and landmarks/), and the compatible directory layouts: a frames or
 * background directory (frame_%04d / frame_%d / frame_%06d / plain numbers, .jpg or .png) plus
 * crop_rects.json (array or keyed form) or landmarks/ and a model file at any configured path. */
#ifndef LIP_AVATAR_H
#define LIP_AVATAR_H

#include "core/core.h"
#include "engine/engine.h"

typedef struct lip_avatar lip_avatar;

/* Where the parts of an avatar are. NULL fields take the canonical defaults relative to dir. */
typedef struct lip_avatar_paths {
    const char *unet;        /* default: avatar.yaml's `unet`, else unet.onnx, else checkpoint/model_best.onnx */
    const char *frames_dir;  /* default: frames/ (or background_dir) */
    const char *crop_rects;  /* default: crop_rects.json, else cache/crop_rectangles.json, else landmarks/ */
    const char *aud_feats;   /* default: aud_ave.npy if present */
} lip_avatar_paths;

typedef struct lip_avatar_opts {
    lip_engine_opts engine;  /* how to run the UNet */
    bool load_unet;          /* false: frames and rects only (compositing without a local model) */
    int decode_cache_frames; /* decoded frames kept (shared by all users); 0 = none. Default 8 */
    int max_frames;          /* refuse avatars with more frames (0 = 100000) */
} lip_avatar_opts;

lip_avatar_opts lip_avatar_opts_default(void);

/* Loads the avatar in directory dir under the name id (a DATA.md id). Reads every frame file
 * into memory (compressed), checks that each decodes to the same size (header check), loads the
 * rects and the UNet. Returns a new avatar with one reference, or NULL with err set
 * (LIP_ENOTFOUND: missing directory or files; LIP_EFORMAT/LIP_EMODEL: unusable files).
 * Thread-safe (each call loads a separate avatar). */
lip_avatar *lip_avatar_load(const char *dir, const char *id, const lip_avatar_paths *paths,
                            const lip_avatar_opts *opts, lip_err *err);

/* Reference counting; both thread-safe. unref(NULL) is a no-op. */
lip_avatar *lip_avatar_ref(lip_avatar *a);
void lip_avatar_unref(lip_avatar *a);

/* Read-only accessors (thread-safe; pointers live as long as the caller's reference). */
const char *lip_avatar_id(const lip_avatar *a);
const char *lip_avatar_dir(const lip_avatar *a);
int lip_avatar_frame_count(const lip_avatar *a);
int lip_avatar_width(const lip_avatar *a);
int lip_avatar_height(const lip_avatar *a);
/* Crop rect [x1,y1,x2,y2] (end-exclusive) of frame i, 0 <= i < frame_count. */
const int *lip_avatar_rect(const lip_avatar *a, int i);
/* The compressed bytes of background frame i as stored (JPEG or PNG). */
const uint8_t *lip_avatar_frame_data(const lip_avatar *a, int i, size_t *len);
/* Decodes background frame i into bgr (caller buffer of height*stride bytes, BGR24, stride >=
 * 3*width). Served from the decode cache when present. Thread-safe. */
int lip_avatar_frame_bgr(lip_avatar *a, int i, uint8_t *bgr, int stride, lip_err *err);
/* Decodes only rows [y0, y1) of background frame i into their place in bgr (same layout as
 * lip_avatar_frame_bgr; other rows are left as they are): a JPEG frame decodes just that band
 * (about y1-y0 / height of the cost), a cached or PNG frame is copied or decoded whole.
 * Thread-safe. */
int lip_avatar_frame_bgr_rows(lip_avatar *a, int i, int y0, int y1, uint8_t *bgr, int stride,
                              lip_err *err);
/* The UNet engine (NULL when loaded without one). Owned by the avatar. */
lip_engine *lip_avatar_unet(lip_avatar *a);
const char *lip_avatar_unet_path(const lip_avatar *a);
/* Precomputed audio features (aud_ave.npy, [rows][512]) or NULL when absent. */
const float *lip_avatar_audio_features(const lip_avatar *a, int *rows);
/* Resident bytes: compressed frames + rects + features + model file size + decode cache. */
size_t lip_avatar_memory_bytes(const lip_avatar *a);
/* Milliseconds the load took. */
double lip_avatar_load_ms(const lip_avatar *a);
/* Decode-cache counters since load: lookups (lip_avatar_frame_bgr and _rows) served from the
 * cache (hits), lookups that decoded while the cache is on (misses; a rows decode does not fill
 * the cache), and its capacity in frames (opts.decode_cache_frames, at most the frame count).
 * NULL outputs are skipped. Thread-safe. */
void lip_avatar_cache_stats(lip_avatar *a, int64_t *hits, int64_t *misses, int *capacity);

/* Maps a stream frame index to an avatar frame: LIP_ORDER_LOOP gives i mod N (the seed APIs);
 * LIP_ORDER_PINGPONG walks 0..N-1, N-2..1, 0.. (render and the native API: no jump at the end). */
enum { LIP_ORDER_LOOP = 0, LIP_ORDER_PINGPONG = 1 };
int lip_avatar_frame_index(const lip_avatar *a, long stream_frame, int order);

/* Reads crop rects from a JSON file (array of [x1,y1,x2,y2], or the keyed form
 * {"0": {"rect": [...]}, ...}). *rects is [count][4], caller frees with lip_free. */
int lip_avatar_read_rects(const char *path, int **rects, int *count, lip_err *err);
/* Reads rects from landmarks/<i>.lms files (DATA.md formula) for i in [0, count). */
int lip_avatar_rects_from_landmarks(const char *dir, int count, int **rects, lip_err *err);

/* Derived per-avatar data built lazily by another module and freed with the avatar: the
 * pipeline attaches its encoded-background cache here (docs/IMAGE.md "Incremental encoding").
 * lip_avatar_ext(a, NULL, NULL, NULL) returns what is attached (or NULL). With ext != NULL it
 * attaches ext unless something is attached already, and returns the attached object: ext itself
 * (the avatar now owns it and calls free_fn(ext) when the last reference goes), or the earlier
 * one (the caller still owns ext and frees it). bytes_fn (may be NULL) reports ext's memory in
 * lip_avatar_memory_bytes. Thread-safe (compare-and-swap); the attached object itself must be
 * thread-safe. */
typedef struct lip_avatar_ext_ops {
    void (*free_fn)(void *ext);
    size_t (*bytes_fn)(const void *ext);
} lip_avatar_ext_ops;
void *lip_avatar_ext(lip_avatar *a, void *ext, const lip_avatar_ext_ops *ops);

#endif
