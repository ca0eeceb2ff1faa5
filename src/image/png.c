/* SPDX-License-Identifier: MIT */
/* image/png.c: PNG through libspng, and the raw float32 wire format. The encoder writes 8-bit RGB
 * (API.md's composited frames) row by row through spng's progressive interface, swizzling BGR to
 * RGB one row at a time, and streams the file into a growable lip_buf. Speed settings come from
 * notes/encode-limits.md: zlib level 1 with the Z_RLE strategy and the fixed "up" filter was the
 * fastest libspng combination (and smaller than the default strategy); adaptive filtering doubles
 * the time. PNG remains far slower than JPEG (tens of ms per 1280x720 frame), so it is for the
 * APIs that ask for it, not for 25 fps streams. The decoder accepts every PNG colour type and
 * depth, enforces size and chunk limits before allocating, and reports spng's error text. */
#include "image/image.h"

#include <spng.h>
#include <string.h>
#include <zlib.h>

#define CHUNK_LIMIT (16u << 20) /* bytes per chunk and for all cached ancillary chunks */

static int png_write(spng_ctx *ctx, void *user, void *src, size_t n)
{
    (void)ctx;
    lip_buf *b = user;
    if (n > SIZE_MAX - b->len || lip_buf_reserve(b, b->len + n, NULL)) return SPNG_IO_ERROR;
    memcpy(b->data + b->len, src, n);
    b->len += n;
    return 0;
}

int lip_png_encode(const lip_image *img, int level, lip_buf *out, lip_err *err)
{
    if (!img || !img->data || !out)
        return lip_err_set(err, LIP_EINVAL, "PNG encode: image or output is NULL");
    if (img->w < 1 || img->h < 1 || img->w > LIP_IMAGE_MAX_DIM || img->h > LIP_IMAGE_MAX_DIM ||
        img->stride < 3 * img->w)
        return lip_err_set(err, LIP_EINVAL, "PNG encode: image %dx%d stride %d invalid", img->w,
                           img->h, img->stride);
    if (level < 0 || level > 9)
        return lip_err_set(err, LIP_EINVAL, "PNG compression level %d outside 0..9", level);
    out->len = 0;
    /* Rough final size for a photo at level 1 (~1.5 bytes/pixel): one reservation in steady
     * state. */
    size_t guess = (size_t)img->w * img->h * 2 + 1024;
    int rc = lip_buf_reserve(out, guess, err);
    if (rc) return rc;
    uint8_t *row = lip_malloc((size_t)img->w * 3);
    spng_ctx *ctx = spng_ctx_new(SPNG_CTX_ENCODER);
    int s = 0;
    const char *step = "allocation";
    if (!row || !ctx) {
        rc =
            lip_err_set(err, LIP_ENOMEM, "out of memory for a PNG encoder (%dx%d)", img->w, img->h);
        goto done;
    }
    struct spng_ihdr ihdr = {.width = (uint32_t)img->w,
                             .height = (uint32_t)img->h,
                             .bit_depth = 8,
                             .color_type = SPNG_COLOR_TYPE_TRUECOLOR};
    step = "setup";
    if ((s = spng_set_png_stream(ctx, png_write, out)) || (s = spng_set_ihdr(ctx, &ihdr)) ||
        (s = spng_set_option(ctx, SPNG_IMG_COMPRESSION_LEVEL, level)) ||
        (s = spng_set_option(ctx, SPNG_IMG_COMPRESSION_STRATEGY,
                             level >= 1 && level <= 3 ? Z_RLE : Z_DEFAULT_STRATEGY)) ||
        (s = spng_set_option(ctx, SPNG_FILTER_CHOICE, SPNG_FILTER_CHOICE_UP)))
        goto spng_fail;
    step = "encode";
    if ((s = spng_encode_image(ctx, NULL, 0, SPNG_FMT_PNG,
                               SPNG_ENCODE_PROGRESSIVE | SPNG_ENCODE_FINALIZE)))
        goto spng_fail;
    for (int y = 0; y < img->h; y++) {
        const uint8_t *p = img->data + (size_t)y * img->stride;
        for (int x = 0; x < img->w; x++) {
            row[3 * x] = p[3 * x + 2];
            row[3 * x + 1] = p[3 * x + 1];
            row[3 * x + 2] = p[3 * x];
        }
        s = spng_encode_row(ctx, row, (size_t)img->w * 3);
        if (s == SPNG_EOI && y == img->h - 1) s = 0;
        if (s) goto spng_fail;
    }
    rc = 0;
    goto done;
spng_fail:
    out->len = 0;
    rc =
        lip_err_set(err, s == SPNG_IO_ERROR ? LIP_ENOMEM : LIP_EINTERNAL,
                    "PNG encode of %dx%d failed at %s: %s", img->w, img->h, step, spng_strerror(s));
done:
    spng_ctx_free(ctx);
    lip_free(row);
    return rc;
}

int lip_png_decode(const uint8_t *data, size_t len, lip_image *out, lip_err *err)
{
    if (!data || !out) return lip_err_set(err, LIP_EINVAL, "PNG decode: data or output is NULL");
    static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    if (len < 8 || memcmp(data, sig, 8) != 0)
        return lip_err_set(err, LIP_EFORMAT,
                           "PNG decode: %zu bytes do not start with the PNG "
                           "signature",
                           len);
    if (out->data && (out->w < 1 || out->h < 1 || out->w > LIP_IMAGE_MAX_DIM ||
                      out->h > LIP_IMAGE_MAX_DIM || out->stride < 3 * out->w))
        return lip_err_set(err, LIP_EINVAL, "PNG decode: output image %dx%d stride %d is invalid",
                           out->w, out->h, out->stride);
    spng_ctx *ctx = spng_ctx_new(0);
    uint8_t *rgb = NULL;
    int allocated = 0, rc = 0, s = 0;
    if (!ctx) return lip_err_set(err, LIP_ENOMEM, "out of memory for a PNG decoder");
    struct spng_ihdr ihdr;
    if ((s = spng_set_image_limits(ctx, LIP_IMAGE_MAX_DIM, LIP_IMAGE_MAX_DIM)) ||
        (s = spng_set_chunk_limits(ctx, CHUNK_LIMIT, CHUNK_LIMIT)) ||
        (s = spng_set_png_buffer(ctx, data, len)) || (s = spng_get_ihdr(ctx, &ihdr))) {
        rc = lip_err_set(err,
                         s == SPNG_EWIDTH || s == SPNG_EHEIGHT || s == SPNG_EUSER_WIDTH ||
                                 s == SPNG_EUSER_HEIGHT
                             ? LIP_ERANGE
                             : LIP_EFORMAT,
                         "PNG decode: header: %s", spng_strerror(s));
        goto done;
    }
    if ((uint64_t)ihdr.width * ihdr.height > LIP_IMAGE_MAX_PIXELS) {
        rc = lip_err_set(err, LIP_ERANGE, "PNG decode: image is %ux%u, past the limit of %d pixels",
                         ihdr.width, ihdr.height, LIP_IMAGE_MAX_PIXELS);
        goto done;
    }
    int w = (int)ihdr.width, h = (int)ihdr.height;
    if (out->data && (out->w != w || out->h != h)) {
        rc = lip_err_set(err, LIP_EINVAL, "PNG decode: output image is %dx%d but the PNG is %dx%d",
                         out->w, out->h, w, h);
        goto done;
    }
    /* RGBA8 is the one output format spng converts every colour type and depth into. */
    size_t n = 0;
    if ((s = spng_decoded_image_size(ctx, SPNG_FMT_RGBA8, &n))) {
        rc = lip_err_set(err, LIP_EFORMAT, "PNG decode: %s", spng_strerror(s));
        goto done;
    }
    rgb = lip_malloc(n);
    if (!rgb) {
        rc =
            lip_err_set(err, LIP_ENOMEM, "out of memory decoding a %dx%d PNG (%zu bytes)", w, h, n);
        goto done;
    }
    /* spng_decode_chunks reads on to IEND, so a file cut short after its image data is an
     * error here as it is for JPEG (a missing EOI). */
    if ((s = spng_decode_image(ctx, rgb, n, SPNG_FMT_RGBA8, SPNG_DECODE_TRNS)) ||
        (s = spng_decode_chunks(ctx))) {
        rc = lip_err_set(err, LIP_EFORMAT, "PNG decode: %s", spng_strerror(s));
        goto done;
    }
    if (!out->data) {
        if ((rc = lip_image_alloc(out, w, h, err))) goto done;
        allocated = 1;
    }
    for (int y = 0; y < h; y++) {
        const uint8_t *p = rgb + (size_t)y * w * 4;
        uint8_t *d = out->data + (size_t)y * out->stride;
        for (int x = 0; x < w; x++) {
            d[3 * x] = p[4 * x + 2];
            d[3 * x + 1] = p[4 * x + 1];
            d[3 * x + 2] = p[4 * x];
        }
    }
done:
    if (rc && allocated) lip_image_free(out);
    lip_free(rgb);
    spng_ctx_free(ctx);
    return rc;
}

/* ---- raw float32 -------------------------------------------------------------------------- */

static int host_is_le(void)
{
    const uint16_t one = 1;
    return *(const uint8_t *)&one == 1;
}

int lip_raw_f32_encode(const float *v, size_t n, lip_buf *out, lip_err *err)
{
    if ((!v && n) || !out) return lip_err_set(err, LIP_EINVAL, "raw encode: NULL argument");
    if (n > SIZE_MAX / 4)
        return lip_err_set(err, LIP_EINVAL, "raw encode: %zu floats is too many", n);
    int rc = lip_buf_reserve(out, n * 4, err);
    if (rc) return rc;
    if (n) memcpy(out->data, v, n * 4);
    if (!host_is_le())
        for (size_t i = 0; i < n * 4; i += 4) {
            uint8_t t = out->data[i];
            out->data[i] = out->data[i + 3];
            out->data[i + 3] = t;
            t = out->data[i + 1];
            out->data[i + 1] = out->data[i + 2];
            out->data[i + 2] = t;
        }
    out->len = n * 4;
    return 0;
}

int lip_raw_f32_decode(const uint8_t *data, size_t len, float *out, size_t n, lip_err *err)
{
    if ((!data && len) || (!out && n))
        return lip_err_set(err, LIP_EINVAL, "raw decode: NULL argument");
    if (n > SIZE_MAX / 4 || len != n * 4)
        return lip_err_set(err, LIP_EINVAL,
                           "raw float32 data is %zu bytes, expected %zu (%zu floats)", len, n * 4,
                           n);
    for (size_t i = 0; i < n; i++) {
        const uint8_t *p = data + 4 * i;
        uint32_t u =
            (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
        memcpy(&out[i], &u, 4);
    }
    return 0;
}
