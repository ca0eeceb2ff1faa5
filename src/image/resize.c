/* SPDX-License-Identifier: MIT */
/* image/resize.c: the bicubic resizer and the image/buffer helpers. Resizing goes through
 * libswscale on planar GBRP in and out: the same pixel format on both sides means no colour
 * conversion, each plane is filtered on its own, and swscale's planar path is 1.6-1.8x faster
 * than its packed BGR24 one for identical output (notes/encode-limits.md). SWS_BICUBIC with
 * param {0, 0.75} is the Mitchell-Netravali family with B = 0, C = 0.75, which is Keys' cubic with
 * a = -0.75 (OpenCV's INTER_CUBIC), and swscale places samples at half-pixel centres like OpenCV.
 * SWS_ACCURATE_RND | SWS_BITEXACT keep rounding exact and the output the same on every CPU.
 *
 * A resizer caches one SwsContext per (source size, destination size) pair, least recently used
 * out first, because crop rects change size from frame to frame (173-189 px on the reference
 * avatar: 17 sizes, each needing one context per direction) and creating a context costs far more
 * than a scale. Its planar scratch only grows, so a warmed-up resizer allocates nothing. */
#include "image/image_int.h"

#include <libavutil/pixfmt.h>
#include <libswscale/swscale.h>
#include <string.h>

#define CACHE_SLOTS 48
#define SWS_FLAGS (SWS_BICUBIC | SWS_ACCURATE_RND | SWS_BITEXACT)

typedef struct slot {
    struct SwsContext *ctx;
    int sw, sh, dw, dh;
    uint64_t used; /* LRU clock value of the last use; 0 = empty */
} slot;

struct lip_resizer {
    slot cache[CACHE_SLOTS];
    uint64_t clock;
    uint8_t *src_planes; /* 3 planes of sw*sh (G, B, R: swscale's GBRP order) */
    size_t src_cap;
    uint8_t *dst_planes;
    size_t dst_cap;
};

/* ---- lip_image / lip_buf ------------------------------------------------------------------ */

int lip_image_alloc(lip_image *img, int w, int h, lip_err *err)
{
    if (!img) return lip_err_set(err, LIP_EINVAL, "lip_image_alloc: image pointer is NULL");
    memset(img, 0, sizeof *img);
    if (w < 1 || h < 1 || w > LIP_IMAGE_MAX_DIM || h > LIP_IMAGE_MAX_DIM ||
        (int64_t)w * h > LIP_IMAGE_MAX_PIXELS)
        return lip_err_set(err, LIP_EINVAL,
                           "image size %dx%d outside the limits (1..%d per side, %d pixels)", w, h,
                           LIP_IMAGE_MAX_DIM, LIP_IMAGE_MAX_PIXELS);
    img->data = lip_calloc((size_t)w * h, 3);
    if (!img->data)
        return lip_err_set(err, LIP_ENOMEM, "out of memory for a %dx%d image (%zu bytes)", w, h,
                           (size_t)w * h * 3);
    img->w = w;
    img->h = h;
    img->stride = w * 3;
    return 0;
}

void lip_image_free(lip_image *img)
{
    if (!img) return;
    lip_free(img->data);
    memset(img, 0, sizeof *img);
}

int lip_buf_reserve(lip_buf *b, size_t n, lip_err *err)
{
    if (!b) return lip_err_set(err, LIP_EINVAL, "lip_buf_reserve: buffer pointer is NULL");
    if (n <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < n) cap = cap > SIZE_MAX / 2 ? n : cap * 2;
    uint8_t *p = lip_realloc(b->data, cap);
    if (!p) return lip_err_set(err, LIP_ENOMEM, "out of memory growing a buffer to %zu bytes", cap);
    b->data = p;
    b->cap = cap;
    return 0;
}

void lip_buf_free(lip_buf *b)
{
    if (!b) return;
    lip_free(b->data);
    memset(b, 0, sizeof *b);
}

/* ---- resizer ------------------------------------------------------------------------------ */

lip_resizer *lip_resizer_new(void)
{
    return lip_calloc(1, sizeof(lip_resizer));
}

void lip_resizer_free(lip_resizer *r)
{
    if (!r) return;
    for (int i = 0; i < CACHE_SLOTS; i++) sws_freeContext(r->cache[i].ctx);
    lip_free(r->src_planes);
    lip_free(r->dst_planes);
    lip_free(r);
}

int lip_resizer_cached(const lip_resizer *r)
{
    int n = 0;
    for (int i = 0; r && i < CACHE_SLOTS; i++) n += r->cache[i].ctx != NULL;
    return n;
}

/* The context for sw x sh -> dw x dh: a cache hit, or a new one in the empty or least recently
 * used slot. */
static struct SwsContext *get_ctx(lip_resizer *r, int sw, int sh, int dw, int dh, lip_err *err)
{
    slot *victim = &r->cache[0];
    for (int i = 0; i < CACHE_SLOTS; i++) {
        slot *s = &r->cache[i];
        if (s->ctx && s->sw == sw && s->sh == sh && s->dw == dw && s->dh == dh) {
            s->used = ++r->clock;
            return s->ctx;
        }
        if (s->used < victim->used) victim = s;
    }
    const double param[2] = {0.0, 0.75};
    struct SwsContext *ctx = sws_getContext(sw, sh, AV_PIX_FMT_GBRP, dw, dh, AV_PIX_FMT_GBRP,
                                            SWS_FLAGS, NULL, NULL, param);
    if (!ctx) {
        lip_err_set(err, LIP_EINTERNAL, "swscale could not create a %dx%d -> %dx%d GBRP context",
                    sw, sh, dw, dh);
        return NULL;
    }
    sws_freeContext(victim->ctx);
    *victim = (slot){ctx, sw, sh, dw, dh, ++r->clock};
    return ctx;
}

static int grow(uint8_t **p, size_t *cap, size_t n, lip_err *err)
{
    if (n <= *cap) return 0;
    uint8_t *q = lip_realloc(*p, n);
    if (!q) return lip_err_set(err, LIP_ENOMEM, "out of memory for %zu bytes of resize scratch", n);
    *p = q;
    *cap = n;
    return 0;
}

/* Packed BGR24 rows -> three planes in GBRP order (data[0] G, [1] B, [2] R). */
static void split_bgr(const uint8_t *src, int w, int h, int stride, uint8_t *g, uint8_t *b,
                      uint8_t *rr)
{
    for (int y = 0; y < h; y++) {
        const uint8_t *s = src + (size_t)y * stride;
        size_t o = (size_t)y * w;
        for (int x = 0; x < w; x++) {
            b[o + x] = s[3 * x];
            g[o + x] = s[3 * x + 1];
            rr[o + x] = s[3 * x + 2];
        }
    }
}

static void merge_bgr(const uint8_t *g, const uint8_t *b, const uint8_t *rr, int w, int h,
                      uint8_t *dst, int stride)
{
    for (int y = 0; y < h; y++) {
        uint8_t *d = dst + (size_t)y * stride;
        size_t o = (size_t)y * w;
        for (int x = 0; x < w; x++) {
            d[3 * x] = b[o + x];
            d[3 * x + 1] = g[o + x];
            d[3 * x + 2] = rr[o + x];
        }
    }
}

static int check_dims(const char *what, int w, int h, int stride, lip_err *err)
{
    if (w < 1 || h < 1 || w > LIP_IMAGE_MAX_DIM || h > LIP_IMAGE_MAX_DIM)
        return lip_err_set(err, LIP_EINVAL, "resize: %s size %dx%d outside 1..%d", what, w, h,
                           LIP_IMAGE_MAX_DIM);
    if (stride < 3 * w)
        return lip_err_set(err, LIP_EINVAL, "resize: %s stride %d is less than 3*width = %d", what,
                           stride, 3 * w);
    return 0;
}

int lip_resizer_planes_(lip_resizer *r, int sw, int sh, int dw, int dh, uint8_t **src,
                        uint8_t **dst, lip_err *err)
{
    int rc = check_dims("source", sw, sh, 3 * sw, err);
    if (!rc) rc = check_dims("destination", dw, dh, 3 * dw, err);
    if (rc) return rc;
    size_t sn = (size_t)sw * sh, dn = (size_t)dw * dh;
    if ((rc = grow(&r->src_planes, &r->src_cap, 3 * sn, err))) return rc;
    if ((rc = grow(&r->dst_planes, &r->dst_cap, 3 * dn, err))) return rc;
    for (int k = 0; k < 3; k++) {
        src[k] = r->src_planes + k * sn;
        dst[k] = r->dst_planes + k * dn;
    }
    return 0;
}

int lip_resizer_scale_(lip_resizer *r, int sw, int sh, int dw, int dh, lip_err *err)
{
    uint8_t *sp[3], *dp[3];
    int rc = lip_resizer_planes_(r, sw, sh, dw, dh, sp, dp, err);
    if (rc) return rc;
    struct SwsContext *ctx = get_ctx(r, sw, sh, dw, dh, err);
    if (!ctx) return LIP_EINTERNAL;
    const uint8_t *const in[4] = {sp[0], sp[1], sp[2], NULL};
    uint8_t *const out[4] = {dp[0], dp[1], dp[2], NULL};
    const int sst[4] = {sw, sw, sw, 0}, dst[4] = {dw, dw, dw, 0};
    int got = sws_scale(ctx, in, sst, 0, sh, out, dst);
    if (got != dh)
        return lip_err_set(err, LIP_EINTERNAL,
                           "swscale returned %d rows for %dx%d -> %dx%d, expected %d", got, sw, sh,
                           dw, dh, dh);
    return 0;
}

int lip_resize_to_planes_(lip_resizer *r, const uint8_t *src, int sw, int sh, int sstride, int dw,
                          int dh, uint8_t **planes, lip_err *err)
{
    if (!r || !src || !planes) return lip_err_set(err, LIP_EINVAL, "resize: NULL argument");
    int rc = check_dims("source", sw, sh, sstride, err);
    if (rc) return rc;
    uint8_t *sp[3];
    if ((rc = lip_resizer_planes_(r, sw, sh, dw, dh, sp, planes, err))) return rc;
    split_bgr(src, sw, sh, sstride, sp[0], sp[1], sp[2]);
    return lip_resizer_scale_(r, sw, sh, dw, dh, err);
}

int lip_resize_bgr(lip_resizer *r, const uint8_t *src, int sw, int sh, int sstride, uint8_t *dst,
                   int dw, int dh, int dstride, lip_err *err)
{
    if (!dst) return lip_err_set(err, LIP_EINVAL, "resize: destination is NULL");
    int rc = check_dims("destination", dw, dh, dstride, err);
    if (rc) return rc;
    uint8_t *p[3];
    if ((rc = lip_resize_to_planes_(r, src, sw, sh, sstride, dw, dh, p, err))) return rc;
    merge_bgr(p[0], p[1], p[2], dw, dh, dst, dstride);
    return 0;
}
