/* SPDX-License-Identifier: MIT */
/* media: the FFmpeg glue for video in and out. A video writer (BGR24 or JPEG frames plus 16 kHz
 * PCM in, H.264 + AAC MP4 out, written under a temporary name and renamed only when complete),
 * a video reader (any container FFmpeg opens, frames out as BGR24), an exact probe (frame count
 * by packet count, audio streams), a general audio loader (first audio stream of any container
 * to 16 kHz mono float), small JPEG helpers on libjpeg-turbo's jpeglib API, and the avatar
 * importer behind `lipsync avatar import|info` (video + crop rects or landmarks -> the canonical
 * layout of DATA.md). docs/MEDIA.md records the choices made where the spec is silent. */
#ifndef LIP_MEDIA_H
#define LIP_MEDIA_H

#include "core/core.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- video writer ---------------------------------------------------------------------------- */
typedef struct lip_video_opts {
    const char *codec;  /* video encoder name; NULL/"" = libx264, falling back (docs/MEDIA.md) */
    const char *preset; /* x264 preset, default "veryfast" (ignored by other encoders) */
    int crf;            /* x264 constant rate factor 0..51, default 20 */
    int threads;        /* encoder threads, 0 = FFmpeg decides */
    int audio_rate;     /* AAC sample rate, default 16000 (the PCM's own rate: no resampling) */
    int audio_bitrate;  /* AAC bits per second, default 64000 */
    bool faststart;     /* move the MP4 index to the front (for progressive download), default
                              true; costs one extra pass over the file at close */
} lip_video_opts;

/* The defaults above. */
lip_video_opts lip_video_opts_default(void);

typedef struct lip_video_writer lip_video_writer;

/* Starts an MP4 (or whatever container the extension of path names) of width x height at fps
 * frames per second. pcm16k (n_samples of 16 kHz mono float in [-1, 1]; may be NULL when
 * n_samples is 0) is copied and muxed as AAC starting at t = 0; frame i is shown at i/fps s.
 * width and height must be even (yuv420p). opts may be NULL for the defaults. Output goes to a
 * temporary file in the same directory; only lip_video_writer_close renames it to path.
 * Returns a writer owned by the caller (finish it with _close or _abort), or NULL with err set.
 * Thread-safety: a writer is used by one thread at a time; different writers are independent. */
lip_video_writer *lip_video_writer_open(const char *path, int width, int height, int fps,
                                        const float *pcm16k, size_t n_samples,
                                        const lip_video_opts *opts, lip_err *err);
/* Appends one BGR24 frame of the writer's size; stride is bytes per row (>= width*3). The
 * pixels are converted into a buffer the writer reuses: no allocation per frame. Returns 0, or
 * a negative code with err set; after a failure the writer only accepts _close/_abort. */
int lip_video_writer_add_bgr(lip_video_writer *w, const uint8_t *bgr, int stride, lip_err *err);
/* Decodes a JPEG (libjpeg-turbo, into a reused buffer) and appends it as _add_bgr does. The
 * JPEG must have the writer's size (LIP_EINVAL otherwise, naming both sizes). */
int lip_video_writer_add_jpeg(lip_video_writer *w, const uint8_t *jpeg, size_t len, lip_err *err);
/* Frames appended so far. */
int64_t lip_video_writer_frames(const lip_video_writer *w);
/* Flushes the encoders, writes the rest of the audio and the trailer, and renames the file to
 * its final path. Always frees w (NULL is a no-op returning 0). On any failure the temporary file
 * is removed, nothing is left at path, and a negative code is returned with err set. */
int lip_video_writer_close(lip_video_writer *w, lip_err *err);
/* Drops everything: removes the temporary file and frees w. NULL is a no-op. */
void lip_video_writer_abort(lip_video_writer *w);

/* ---- probing and reading --------------------------------------------------------------------- */
typedef struct lip_media_info {
    char container[32]; /* demuxer name, e.g. "mov,mp4,m4a,3gp,3g2,mj2" cut to fit */
    double duration_s;  /* container duration, 0 if unknown */
    bool has_video;
    int width, height;   /* first video stream */
    double fps;          /* average frame rate, 0 if unknown */
    int64_t frame_count; /* reader: from the container header, -1 if unknown;
                               probe: exact count of video packets (one frame each) */
    char video_codec[32];
    int audio_streams; /* number of audio streams */
    bool has_audio;    /* audio_streams > 0 */
    int audio_rate;    /* first audio stream's sample rate (Hz), 0 if none */
    int audio_channels;
    double audio_duration_s; /* first audio stream: sum of packet durations (probe) or header */
    char audio_codec[32];
} lip_media_info;

/* Opens path and fills out exactly: reads every packet (no decoding) to count the video frames
 * of the first video stream and to add up the first audio stream's duration. Cost: one pass
 * over the file's bytes. Thread-safe. Returns 0, or LIP_ENOTFOUND (missing file) / LIP_EFORMAT
 * (not a media file, truncated) / LIP_EIO with err naming the file and FFmpeg's reason. */
int lip_media_probe(const char *path, lip_media_info *out, lip_err *err);

typedef struct lip_video_reader lip_video_reader;

/* Opens the first video stream of path for decoding. Returns a reader owned by the caller (free
 * with lip_video_reader_free) or NULL with err set (missing file, no video stream, no decoder).
 * One thread at a time per reader. */
lip_video_reader *lip_video_reader_open(const char *path, lip_err *err);
/* Decodes the next frame as packed BGR24 (stride = width*3). *bgr points into a buffer the reader
 * owns and reuses: valid until the next call or _free. Returns 1 with a frame, 0 at the end of
 * the stream, or a negative code with err set (corrupt data that the decoder cannot skip). */
int lip_video_reader_next_bgr(lip_video_reader *r, uint8_t **bgr, int *width, int *height,
                              lip_err *err);
/* What the header says (frame_count may be -1). Owned by the reader. */
const lip_media_info *lip_video_reader_info(const lip_video_reader *r);
void lip_video_reader_free(lip_video_reader *r);

/* Longest audio lip_media_load_audio accepts, in seconds (hostile files cannot ask for more). */
#define LIP_MEDIA_MAX_AUDIO_S 3600

/* Decodes the first audio stream of any container FFmpeg opens (WAV, MP3, MP4, ...) and resamples
 * it (libswresample, channels averaged) to 16 kHz mono float. *pcm16k is new memory the caller
 * frees with lip_free; *n is its length. Thread-safe. On failure *pcm16k is NULL and *n 0. */
int lip_media_load_audio(const char *path, float **pcm16k, size_t *n, lip_err *err);

/* JPEG encoding and decoding are the image module's (src/image/image.h). */

/* ---- crop rects and the avatar importer ------------------------------------------------------ */
typedef struct lip_media_rect {
    int x1, y1, x2, y2; /* exclusive ends: the region is img[y1:y2, x1:x2] */
} lip_media_rect;

/* Parses crop_rects.json in either form of DATA.md (array of [x1,y1,x2,y2], or an object keyed
 * "0".."N-1" with a "rect" member). *rects is new memory (lip_free). Every entry is checked
 * (four integers, keys contiguous from 0); errors name the entry. */
int lip_media_rects_load_json(const char *path, lip_media_rect **rects, size_t *n, lip_err *err);
/* Parses one landmarks file (110 lines of integer "x y") into the DATA.md crop rect
 * [lms[1].x, lms[52].y, lms[31].x, lms[52].y + (lms[31].x - lms[1].x)]. */
int lip_media_rect_from_landmarks(const char *path, lip_media_rect *out, lip_err *err);
/* Reads dir/0.lms, dir/1.lms, ... up to the first missing index. *rects is new memory. */
int lip_media_rects_from_landmarks_dir(const char *dir, lip_media_rect **rects, size_t *n,
                                       lip_err *err);
/* Writes rects as a JSON array (one rect per line), atomically. */
int lip_media_rects_save_json(const char *path, const lip_media_rect *rects, size_t n,
                              lip_err *err);
/* Checks that rect i is non-empty and inside a width x height frame; err names i and values. */
int lip_media_rect_check(const lip_media_rect *r, size_t i, int width, int height, lip_err *err);

typedef struct lip_media_import_opts {
    const char *video;     /* source video (required) */
    const char *rects;     /* crop_rects.json (this or landmarks) */
    const char *landmarks; /* directory of <i>.lms */
    const char *unet;      /* UNet ONNX file, copied as unet.onnx (required) */
    const char *out;       /* avatar directory to create; must not exist or be empty */
    const char *id;        /* NULL: the last component of out */
    int quality;           /* JPEG quality 1..100, default 90 */
    /* Called after each frame (may be NULL); total is -1 while the count is unknown. */
    void (*progress)(void *ctx, int64_t done, int64_t total);
    void *progress_ctx;
} lip_media_import_opts;

lip_media_import_opts lip_media_import_opts_default(void);

/* Imports a video plus crop rects (or landmarks) into opts->out in the canonical layout of
 * DATA.md: avatar.yaml, unet.onnx, frames/%06d.jpg, crop_rects.json. Everything is written in a
 * temporary sibling directory that is renamed to out only when complete; on failure it is
 * removed. The video must be 25 fps; fewer rects than frames, a rect outside the frame or an
 * empty rect is an error naming the numbers; extra rects beyond the frame count are dropped with
 * a warning. *frames_out (may be NULL) receives the frame count. Not thread-safe with respect to
 * the same out path. */
int lip_media_import_avatar(const lip_media_import_opts *opts, int64_t *frames_out, lip_err *err);

#endif
