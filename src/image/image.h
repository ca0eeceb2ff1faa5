/* SPDX-License-Identifier: MIT */
/* image: the pixel work around the UNet (MODEL.md "Visual pre- and post-processing"). Bicubic
 * resize with OpenCV INTER_CUBIC semantics (libswscale, planar, cached contexts), the 328/320
 * crop pre-processing into the model's float tensor, paste-back of the model output into a
 * background frame (hard or feathered edge), and the frame codecs: JPEG (libjpeg-turbo's jpeglib
 * API), PNG (libspng) and raw float32. Images are BGR24 throughout, as the server holds them.
 *
 * Threading: a lip_resizer and a lip_jpeg_enc belong to one thread at a time (the pipeline keeps
 * one per worker); every other function is reentrant. Hot-path functions (preprocess, paste,
 * encode into a lip_buf) allocate nothing in steady state: scratch lives in the per-thread
 * objects and grows only when a larger size is first seen. Decoders are not hot-path and
 * allocate the output image. docs/IMAGE.md records the measured accuracy and speed. */
#ifndef LIP_IMAGE_H
#define LIP_IMAGE_H

#include "core/core.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- geometry (MODEL.md) ------------------------------------------------------------------ */
#define LIP_CROP_SIZE 328                                  /* crop resized to 328x328 */
#define LIP_ROI_SIZE 320                                   /* model input/output side */
#define LIP_ROI_OFFSET 4                                   /* real = crop[4:324, 4:324] */
#define LIP_CROP_BYTES (LIP_CROP_SIZE * LIP_CROP_SIZE * 3) /* one BGR24 crop, stride 328*3 */
/* Mask of the second half of the input: rows 5..309 and columns 5..314 inclusive are zero. */
#define LIP_MASK_Y0 5
#define LIP_MASK_Y1 310 /* exclusive */
#define LIP_MASK_X0 5
#define LIP_MASK_X1 315 /* exclusive */

/* Limits: a crop rect side must lie in [LIP_RECT_MIN, LIP_RECT_MAX]; decoded images may not exceed
 * LIP_IMAGE_MAX_DIM per side nor LIP_IMAGE_MAX_PIXELS in all (decompression bombs). */
#define LIP_RECT_MIN 8
#define LIP_RECT_MAX 4096
#define LIP_IMAGE_MAX_DIM 16384
#define LIP_IMAGE_MAX_PIXELS (40 * 1000 * 1000)

/* ---- images and buffers ------------------------------------------------------------------- */
/* A BGR24 image: pixel (x, y) channel c is data[y*stride + 3*x + c], c = 0 B, 1 G, 2 R. A
 * lip_image may also describe a window into a larger image (data points inside, stride of the
 * parent): nothing here assumes it owns data unless it came from lip_image_alloc. */
typedef struct lip_image {
    uint8_t *data;
    int w, h, stride;
} lip_image;

/* Allocates a w x h image (stride w*3, zeroed) into *img. 0, or LIP_EINVAL (size outside
 * 1..LIP_IMAGE_MAX_DIM / LIP_IMAGE_MAX_PIXELS) or LIP_ENOMEM; on failure *img is zeroed. The caller
 * owns img->data and frees it with lip_image_free. Reentrant. */
int lip_image_alloc(lip_image *img, int w, int h, lip_err *err);
/* Frees what lip_image_alloc (or a decoder) allocated and zeroes *img; NULL or empty is a no-op. */
void lip_image_free(lip_image *img);

/* A growable byte buffer the encoders write into: len bytes of data are valid, cap allocated.
 * Zero-initialise ({0}); reuse it across frames so steady state allocates nothing. */
typedef struct lip_buf {
    uint8_t *data;
    size_t len, cap;
} lip_buf;
/* Makes cap >= n (keeps the contents). 0 or LIP_ENOMEM (buffer unchanged). Reentrant. */
int lip_buf_reserve(lip_buf *b, size_t n, lip_err *err);
/* Frees the storage and zeroes *b; NULL is a no-op. */
void lip_buf_free(lip_buf *b);

/* ---- resize ------------------------------------------------------------------------------- */
/* A resizer: libswscale bicubic (B = 0, C = 0.75, i.e. Keys a = -0.75, half-pixel centres) on
 * planar GBRP, with its contexts cached by (source size, destination size) and its planar scratch
 * kept between calls. One per thread; not thread-safe. Returns NULL on allocation failure. */
typedef struct lip_resizer lip_resizer;
lip_resizer *lip_resizer_new(void);
void lip_resizer_free(lip_resizer *r);
/* Number of cached scaling contexts (for tests and stats). */
int lip_resizer_cached(const lip_resizer *r);

/* Resizes a BGR24 image (sw x sh, stride sstride) into dst (dw x dh, stride dstride). Sizes
 * 1..LIP_IMAGE_MAX_DIM. Upscaling matches OpenCV INTER_CUBIC to within 1 level; downscaling
 * is swscale's widened (antialiased) bicubic (docs/IMAGE.md has the numbers). src and dst must
 * not overlap. 0, LIP_EINVAL (bad size or pointer), LIP_ENOMEM or LIP_EINTERNAL (swscale). */
int lip_resize_bgr(lip_resizer *r, const uint8_t *src, int sw, int sh, int sstride, uint8_t *dst,
                   int dw, int dh, int dstride, lip_err *err);

/* ---- pre-processing and paste-back -------------------------------------------------------- */
/* Checks a crop rect [x1,y1,x2,y2] (end-exclusive) against a w x h frame: 0 <= x1 < x2 <= w,
 * 0 <= y1 < y2 <= h, each side in [LIP_RECT_MIN, LIP_RECT_MAX]. 0 or LIP_EINVAL naming the
 * offending value. Reentrant. */
int lip_image_check_rect(int w, int h, const int rect[4], lip_err *err);

/* MODEL.md steps 1-4: crop rect out of frame, bicubic to 328x328 into crop328 (BGR24, stride
 * 328*3, LIP_CROP_BYTES, caller-owned; kept by the caller for paste-back), then out6 (caller-owned
 * float[6][320][320]) = [real, masked] CHW /255. 0 or LIP_EINVAL (rect/pointers) / LIP_ENOMEM /
 * LIP_EINTERNAL; on failure out6 and crop328 are unspecified. Uses r's scratch: one thread per
 * r. */
int lip_image_preprocess(lip_resizer *r, const lip_image *frame, const int rect[4], float *out6,
                         uint8_t *crop328, lip_err *err);
/* Steps 2-4 only, from an existing 328x328 BGR24 crop (stride 328*3): bit-exact with NumPy's
 * float32(v)/255. Reentrant; cannot fail for valid pointers (LIP_EINVAL for NULL). */
int lip_image_preprocess_crop(const uint8_t *crop328, float *out6);

/* Step 5a: crop328[4:324, 4:324] = uint8(out3 * 255) by truncation, clamped to [0, 255] (NaN -> 0);
 * out3 is float[3][320][320] planar B, G, R. Reentrant. */
void lip_image_output_to_crop(const float *out3, uint8_t *crop328);

enum lip_paste_mode {
    LIP_PASTE_EXACT = 0,  /* hard overwrite of the rect: the reference */
    LIP_PASTE_FEATHER = 1 /* alpha ramp over feather_px at the rect border, inner area as EXACT */
};
#define LIP_FEATHER_DEFAULT 10

/* Step 5: writes out3 into crop328 (step 5a; crop328 is modified), resizes the crop to the rect
 * and writes it into frame (modified in place). LIP_PASTE_FEATHER blends pixels at distance
 * d < feather_px from the rect edge with weight (2d+1)/(2*feather_px) (rounded to 1/256) and
 * leaves pixels farther in equal to LIP_PASTE_EXACT; feather_px must be 0..LIP_RECT_MAX and is
 * clamped to min(w,h)/2 (0 acts as exact). Nothing outside the rect is touched. 0 or LIP_EINVAL / LIP_ENOMEM / LIP_EINTERNAL; on
 * failure the frame may be partly written. One thread per r. */
int lip_image_paste(lip_resizer *r, lip_image *frame, const int rect[4], const float *out3,
                    uint8_t *crop328, int mode, int feather_px, lip_err *err);

/* ---- JPEG (libjpeg-turbo, jpeglib API) ---------------------------------------------------- */
typedef struct lip_jpeg_opts {
    int quality;          /* 1..100, default 75 */
    int restart_interval; /* MCUs between restart markers, 0 = none (splicing needs one) */
    bool fast_dct;        /* JDCT_IFAST instead of JDCT_ISLOW (default false) */
} lip_jpeg_opts;
lip_jpeg_opts lip_jpeg_opts_default(void);

/* An encoder: one jpeg_compress_struct kept for reuse (always standard Huffman tables, baseline,
 * 4:2:0, JCS_EXT_BGR input). One thread at a time. NULL on allocation failure. */
typedef struct lip_jpeg_enc lip_jpeg_enc;
lip_jpeg_enc *lip_jpeg_enc_new(void);
void lip_jpeg_enc_free(lip_jpeg_enc *e);
/* Encodes img into out (out->len = JPEG size; out grows when needed, its old contents are
 * replaced). 0, LIP_EINVAL (image/options), LIP_ENOMEM, or LIP_EINTERNAL with libjpeg's message.
 * opts NULL = defaults. */
int lip_jpeg_enc_encode(lip_jpeg_enc *e, const lip_image *img, const lip_jpeg_opts *opts,
                        lip_buf *out, lip_err *err);
/* One-shot form with a temporary encoder (quality 1..100, other options default). Reentrant. */
int lip_jpeg_encode(const lip_image *img, int quality, lip_buf *out, lip_err *err);
/* Decodes a JPEG into BGR24. If out->data is NULL a new image is allocated (caller frees with
 * lip_image_free); if out already holds an image of exactly the decoded size it is overwritten in
 * place; any other out is LIP_EINVAL. Corrupt or truncated data (libjpeg errors and warnings) is
 * LIP_EFORMAT with libjpeg's message; sizes past the limits above are LIP_ERANGE. On failure a
 * newly allocated image is freed again. Reentrant. */
int lip_jpeg_decode(const uint8_t *data, size_t len, lip_image *out, lip_err *err);
/* Decodes only rows [y0, y1) of a JPEG into out (already allocated at exactly the JPEG's size);
 * other rows of out are left as they are. Much cheaper than a full decode for a band: rows
 * above are skipped without the inverse DCT and decoding stops after y1. Errors as
 * lip_jpeg_decode; LIP_EINVAL for an unallocated out or rows outside it. Reentrant. */
int lip_jpeg_decode_rows(const uint8_t *data, size_t len, lip_image *out, int y0, int y1,
                         lip_err *err);

/* ---- PNG (libspng) ------------------------------------------------------------------------ */
/* Encodes img as 8-bit RGB PNG into out (replacing its contents). level: zlib level 0..9 (1 is
 * the fast setting); the row filter is "up" and levels 1..3 use zlib's Z_RLE strategy, the
 * cheapest combination measured. 0, LIP_EINVAL, LIP_ENOMEM or LIP_EINTERNAL (spng's message).
 * Reentrant (libspng allocates its own context per call). */
int lip_png_encode(const lip_image *img, int level, lip_buf *out, lip_err *err);
/* Decodes any PNG (any colour type and depth; alpha is dropped, 16-bit is reduced to 8) into
 * BGR24; out as for lip_jpeg_decode. Corrupt data is LIP_EFORMAT with spng's message; sizes past
 * the limits are LIP_ERANGE. Reentrant. */
int lip_png_decode(const uint8_t *data, size_t len, lip_image *out, lip_err *err);

/* ---- raw float32 (API.md: little-endian, row-major, no header) ---------------------------- */
/* Writes n floats as little-endian bytes into out (replacing its contents). 0 or LIP_ENOMEM.
 * Reentrant. */
int lip_raw_f32_encode(const float *v, size_t n, lip_buf *out, lip_err *err);
/* Reads exactly n floats from len bytes into out (caller-owned); len != 4n is LIP_EINVAL with
 * both sizes. Values are not checked (lip_all_finite does that where a caller needs it).
 * Reentrant. */
int lip_raw_f32_decode(const uint8_t *data, size_t len, float *out, size_t n, lip_err *err);

/* ==== incremental encoders (src/image/splice.c, src/image/pngpiece.c) ========================
 * Only the crop rect changes between an avatar's background frame and the composited frame, so
 * the encoders keep the background encoded once and per frame re-encode only what the rect
 * touches (docs/IMAGE.md "Incremental encoding", notes/encode-limits.md). */

/* ---- incremental JPEG: restart-segment splicing ------------------------------------------- */
/* A background frame encoded once with restart markers every R MCUs (R divides the MCUs per row,
 * so every segment lies inside one MCU row), kept compressed with the offset of every restart
 * segment. Immutable after lip_jpeg_bg_new: any number of threads may splice against it. */
typedef struct lip_jpeg_bg lip_jpeg_bg;

#define LIP_JPEG_SPLICE_RESTART 8 /* preferred R: +1.5% bytes, robust to unaligned crops */

/* The restart interval used for a frame width: LIP_JPEG_SPLICE_RESTART if it divides the MCUs per
 * row (ceil(w/16)), otherwise the largest divisor of that count below it (1 always works). */
int lip_jpeg_splice_restart(int w);

/* Encodes background bg with opts (NULL = defaults; restart_interval 0 = chosen by
 * lip_jpeg_splice_restart; a nonzero one must divide the MCUs per row) using encoder e, and
 * indexes its segments. Returns a new object (free with lip_jpeg_bg_free; it owns its copy of
 * the stream) or NULL with err: LIP_EINVAL (image, options), LIP_ENOMEM, LIP_EINTERNAL. Uses e:
 * one thread per e; the result is immutable and shareable. */
lip_jpeg_bg *lip_jpeg_bg_new(lip_jpeg_enc *e, const lip_image *bg, const lip_jpeg_opts *opts,
                             lip_err *err);
void lip_jpeg_bg_free(lip_jpeg_bg *bg);
/* Bytes held (stream + index), for memory accounting. Thread-safe. */
size_t lip_jpeg_bg_bytes(const lip_jpeg_bg *bg);
/* The settings the background was encoded with (restart_interval filled in). Thread-safe. */
lip_jpeg_opts lip_jpeg_bg_opts(const lip_jpeg_bg *bg);
/* The cached stream itself: a complete JPEG of the background (owned by bg). Thread-safe. */
const uint8_t *lip_jpeg_bg_stream(const lip_jpeg_bg *bg, size_t *len);

/* What a splice did (for tests, stats and the bench). */
typedef struct lip_jpeg_splice_info {
    bool spliced;     /* false: a full encode ran (fallback) */
    int segments;     /* segments re-encoded (spliced) */
    int total;        /* segments in the frame */
    int sub_w, sub_h; /* the re-encoded sub-image */
} lip_jpeg_splice_info;

/* Encodes frame, which equals bg's background everywhere outside rect [x1,y1,x2,y2]
 * (end-exclusive), into out. Re-encodes only the MCU-aligned sub-image covering the restart
 * segments that rect touches and splices them into bg's stream, renumbering RST markers: the
 * result is byte-identical to lip_jpeg_enc_encode(frame, lip_jpeg_bg_opts(bg)). Falls back to a
 * full encode with opts when opts (NULL = bg's settings) differ from bg's, when the frame size
 * differs, or when rect covers more than half of the segments. The caller guarantees that
 * pixels outside rect equal the background (not checked: that would cost a full compare).
 * 0, or LIP_EINVAL (NULL, bad rect), LIP_ENOMEM, LIP_EINTERNAL (libjpeg, or a sub-image whose
 * segments do not line up: never expected); on failure out->len is 0. info may be NULL. Uses e's
 * scratch: one thread per e; bg is only read. Allocates nothing once e and out are warm. */
int lip_jpeg_splice_encode(lip_jpeg_enc *e, const lip_jpeg_bg *bg, const lip_image *frame,
                           const int rect[4], const lip_jpeg_opts *opts, lip_buf *out,
                           lip_jpeg_splice_info *info, lip_err *err);
/* Whether lip_jpeg_splice_encode with bg's own settings would splice for rect (rather than fall
 * back to a full encode), and if so the rows [*y0, *y1) of the frame it reads: a caller that
 * changes only rect may then hold just those rows of the frame valid. Thread-safe. */
bool lip_jpeg_splice_band(const lip_jpeg_bg *bg, const int rect[4], int *y0, int *y1);

/* ---- incremental PNG: deflate pieces (src/image/pngpiece.c) ------------------------------- */
/* A background frame as the pieces of a PNG (8-bit RGB, fixed "up" filter) cut around a fixed
 * changed rect: everything but the rect's bytes in rows [y1, y2] is deflated once, each piece a
 * self-contained sync-flushed deflate stream in its own IDAT chunk. Immutable once built:
 * shareable by threads. The output is a valid PNG but not the bytes lip_png_encode writes (that
 * one uses libspng and one deflate stream). */
typedef struct lip_png_bg lip_png_bg;
/* Builds it from bg (the frame's background) for changes inside rect [x1,y1,x2,y2]
 * (end-exclusive). level: zlib level 0..9 of the cached pieces (Z_RLE at 1..3, as
 * lip_png_encode); crop_level: 0 = the changed pieces are written as stored blocks (the fast
 * path: ~1 ms per 720p frame, +2% bytes), 1..9 = deflated per frame at that level (~15 us of zlib
 * set-up per row). NULL + err on failure (LIP_EINVAL, LIP_ENOMEM, LIP_ERANGE). The caller owns the
 * result (lip_png_bg_free). Reentrant. */
lip_png_bg *lip_png_bg_new(const lip_image *bg, const int rect[4], int level, int crop_level,
                           lip_err *err);
void lip_png_bg_free(lip_png_bg *bg);
/* Bytes held, for memory accounting; the rect it was built for (owned by bg). Thread-safe. */
size_t lip_png_bg_bytes(const lip_png_bg *bg);
const int *lip_png_bg_rect(const lip_png_bg *bg);

/* Per-thread state of the per-frame encode (a zlib stream for crop_level > 0, a row buffer).
 * One thread at a time. NULL on allocation failure. */
typedef struct lip_png_enc lip_png_enc;
lip_png_enc *lip_png_enc_new(void);
void lip_png_enc_free(lip_png_enc *e);
/* Encodes frame (equal to bg's background outside rect) as a PNG into out: filters and writes the
 * changed pieces of rows [y1, y2] and copies the cached ones; checksums are combined
 * (adler32_combine, one CRC per new chunk). Byte-identical to the same piecewise encoding of the
 * whole frame (lip_png_bg_new(frame, bg's rect, ...) then this call). Falls back to
 * lip_png_encode(frame, level) when rect is not inside bg's rect, the size or the level differs
 * (*incremental false then; incremental may be NULL). 0, LIP_EINVAL, LIP_ENOMEM, LIP_EINTERNAL
 * (zlib); on failure out->len is unspecified. One thread per e; bg is only read. */
int lip_png_piece_encode(lip_png_enc *e, const lip_png_bg *bg, const lip_image *frame,
                         const int rect[4], int level, lip_buf *out, bool *incremental,
                         lip_err *err);

/* ---- per-avatar cache of encoded backgrounds (src/image/bgcache.c) ------------------------ */
/* Per avatar frame, its lip_jpeg_bg and its lip_png_bg, each built lazily from the decoded
 * background the first time the frame is encoded in that format, and kept until the cache is
 * freed (no eviction, so a pointer handed out stays valid as long as the cache). Bounded: once
 * max_bytes are held, backgrounds not yet cached are not built (NULL: the caller does a full
 * encode). Fully thread-safe: concurrent builders of one entry race through a compare-and-swap
 * and the loser's copy is freed. */
typedef struct lip_bg_cache lip_bg_cache;
/* frames >= 1; jpeg: the settings every JPEG background is encoded with (NULL = defaults;
 * restart_interval 0 = lip_jpeg_splice_restart); png_level: zlib level of PNG backgrounds
 * (their changed pieces are stored); max_bytes 0 = unlimited. NULL on allocation failure or bad
 * arguments. The caller owns the cache (lip_bg_cache_free). */
lip_bg_cache *lip_bg_cache_new(int frames, const lip_jpeg_opts *jpeg, int png_level,
                               size_t max_bytes);
void lip_bg_cache_free(lip_bg_cache *c);
/* Bytes held by cached backgrounds plus the slot table. Thread-safe. */
size_t lip_bg_cache_bytes(const lip_bg_cache *c);
/* The settings of the cache (restart_interval as given, 0 = per frame width). */
lip_jpeg_opts lip_bg_cache_jpeg_opts(const lip_bg_cache *c);
int lip_bg_cache_png_level(const lip_bg_cache *c);
/* Frame i's JPEG background: the cached one, or built now from bgimg (the frame's background,
 * untouched) with encoder e when there is room. NULL when i is out of range, the budget is spent
 * or the build failed (err says why; the caller falls back to a full encode). The result is
 * owned by the cache. Thread-safe; e belongs to the calling thread. */
const lip_jpeg_bg *lip_bg_cache_jpeg(lip_bg_cache *c, int i, lip_jpeg_enc *e,
                                     const lip_image *bgimg, lip_err *err);
/* Frame i's JPEG background if it is already built, else NULL (never builds). Thread-safe. */
const lip_jpeg_bg *lip_bg_cache_jpeg_peek(lip_bg_cache *c, int i);
/* Frame i's PNG background for changes inside rect (the frame's crop rect), as above. */
const lip_png_bg *lip_bg_cache_png(lip_bg_cache *c, int i, const lip_image *bgimg,
                                   const int rect[4], lip_err *err);

#endif
