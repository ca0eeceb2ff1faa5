/* SPDX-License-Identifier: MIT */
/* media/media_util.c: the media module's conversions from third-party errors (FFmpeg AVERROR,
 * libjpeg's error manager) into lip_err, FFmpeg log routing, and the JPEG helpers built on
 * libjpeg-turbo's jpeglib API (the avatar importer writes frames with them and the video writer
 * reads JPEG frames with them). */
#include "media/media_int.h"

#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <libavutil/error.h>
#include <libavutil/log.h>

/* ---- FFmpeg errors and log ------------------------------------------------------------------ */
int lip_media_averr(lip_err *err, int averr, const char *fmt, ...)
{
    int code;
    if (averr == AVERROR(ENOENT))
        code = LIP_ENOTFOUND;
    else if (averr == AVERROR(ENOMEM))
        code = LIP_ENOMEM;
    else if (averr == AVERROR(EACCES) || averr == AVERROR(EPERM) || averr == AVERROR(EROFS))
        code = LIP_EPERM;
    else if (averr == AVERROR_INVALIDDATA || averr == AVERROR_EOF ||
             averr == AVERROR_STREAM_NOT_FOUND || averr == AVERROR_DECODER_NOT_FOUND ||
             averr == AVERROR_DEMUXER_NOT_FOUND)
        code = LIP_EFORMAT;
    else if (averr == AVERROR_ENCODER_NOT_FOUND || averr == AVERROR_MUXER_NOT_FOUND ||
             averr == AVERROR_PATCHWELCOME)
        code = LIP_EUNSUPPORTED;
    else
        code = LIP_EIO;
    if (!err) return code;
    char what[LIP_ERRMSG_MAX / 2], why[AV_ERROR_MAX_STRING_SIZE + 1];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    if (av_strerror(averr, why, sizeof why) < 0)
        snprintf(why, sizeof why, "FFmpeg error %d", averr);
    return lip_err_set(err, code, "%s: %s", what, why);
}

static void av_log_to_lip(void *avcl, int level, const char *fmt, va_list vl)
{
    if (level > AV_LOG_VERBOSE || lip_log_level_ < LIP_LOG_DEBUG) return;
    char line[1024];
    int prefix = 1;
    av_log_format_line2(avcl, level, fmt, vl, line, sizeof line, &prefix);
    size_t n = strlen(line);
    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = 0;
    if (n) lip_log_debug("ffmpeg: %s", line);
}

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static void init_fn(void)
{
    av_log_set_callback(av_log_to_lip);
}
void lip_media_init(void)
{
    pthread_once(&init_once, init_fn);
}

/* ---- JPEG ----------------------------------------------------------------------------------- */
/* libjpeg reports errors by calling error_exit, which must not return: jump back to the caller
 * with the library's message kept for lip_err. */
struct jerr {
    struct jpeg_error_mgr pub;
    jmp_buf jb;
    char msg[JMSG_LENGTH_MAX];
};

static void jerr_exit(j_common_ptr c)
{
    struct jerr *e = (struct jerr *)c->err;
    (*c->err->format_message)(c, e->msg);
    longjmp(e->jb, 1);
}

/* Corrupt-data warnings would otherwise go to stderr; a truncated JPEG still decodes (grey rest),
 * which matches what other decoders do, so warnings are kept quiet. */
static void jerr_silent(j_common_ptr c, int lvl)
{
    (void)c;
    (void)lvl;
}

static void jerr_init(struct jerr *e, j_common_ptr c)
{
    c->err = jpeg_std_error(&e->pub);
    e->pub.error_exit = jerr_exit;
    e->pub.emit_message = jerr_silent;
    e->msg[0] = 0;
}

#define JPEG_MAX_SIDE 16384 /* refuse absurd headers before allocating for them */

int lip_media_jpeg_size(const uint8_t *jpeg, size_t len, int *width, int *height, lip_err *err)
{
    if (!jpeg || len < 4 || len > (size_t)0x7fffffff)
        return lip_err_set(err, LIP_EFORMAT, "not a JPEG: %zu bytes", jpeg ? len : 0);
    struct jpeg_decompress_struct d;
    struct jerr e;
    jerr_init(&e, (j_common_ptr)&d);
    if (setjmp(e.jb)) {
        jpeg_destroy_decompress(&d);
        return lip_err_set(err, LIP_EFORMAT, "bad JPEG header: %s", e.msg);
    }
    jpeg_create_decompress(&d);
    jpeg_mem_src(&d, jpeg, (unsigned long)len);
    jpeg_read_header(&d, TRUE);
    *width = (int)d.image_width;
    *height = (int)d.image_height;
    jpeg_destroy_decompress(&d);
    return 0;
}

int lip_media_jpeg_decode_bgr(const uint8_t *jpeg, size_t len, uint8_t **buf, size_t *cap,
                              int *width, int *height, lip_err *err)
{
    if (!jpeg || len < 4 || len > (size_t)0x7fffffff)
        return lip_err_set(err, LIP_EFORMAT, "not a JPEG: %zu bytes", jpeg ? len : 0);
    struct jpeg_decompress_struct d;
    struct jerr e;
    jerr_init(&e, (j_common_ptr)&d);
    if (setjmp(e.jb)) {
        jpeg_destroy_decompress(&d);
        return lip_err_set(err, LIP_EFORMAT, "JPEG decode failed: %s", e.msg);
    }
    jpeg_create_decompress(&d);
    jpeg_mem_src(&d, jpeg, (unsigned long)len);
    jpeg_read_header(&d, TRUE);
    if (d.image_width == 0 || d.image_height == 0 || d.image_width > JPEG_MAX_SIDE ||
        d.image_height > JPEG_MAX_SIDE) {
        int rc = lip_err_set(err, LIP_EFORMAT, "JPEG size %ux%u outside 1..%d", d.image_width,
                             d.image_height, JPEG_MAX_SIDE);
        jpeg_destroy_decompress(&d);
        return rc;
    }
    d.out_color_space = JCS_EXT_BGR;
    jpeg_start_decompress(&d);
    size_t stride = (size_t)d.output_width * 3, need = stride * d.output_height;
    if (*cap < need) {
        uint8_t *nb = lip_realloc(*buf, need);
        if (!nb) {
            jpeg_destroy_decompress(&d);
            return lip_err_set(err, LIP_ENOMEM, "out of memory for a %ux%u JPEG", d.output_width,
                               d.output_height);
        }
        *buf = nb;
        *cap = need;
    }
    while (d.output_scanline < d.output_height) {
        JSAMPROW row = *buf + (size_t)d.output_scanline * stride;
        jpeg_read_scanlines(&d, &row, 1);
    }
    *width = (int)d.output_width;
    *height = (int)d.output_height;
    jpeg_finish_decompress(&d);
    jpeg_destroy_decompress(&d);
    return 0;
}

int lip_media_jpeg_encode_bgr(const uint8_t *bgr, int width, int height, int stride, int quality,
                              uint8_t **out, size_t *out_len, lip_err *err)
{
    *out = NULL;
    *out_len = 0;
    if (!bgr || width <= 0 || height <= 0 || width > JPEG_MAX_SIDE || height > JPEG_MAX_SIDE ||
        stride < width * 3)
        return lip_err_set(err, LIP_EINVAL, "JPEG encode: bad image %dx%d stride %d", width, height,
                           stride);
    if (quality < 1 || quality > 100)
        return lip_err_set(err, LIP_EINVAL, "JPEG quality must be 1..100, got %d", quality);
    struct jpeg_compress_struct c;
    struct jerr e;
    /* jpeg_mem_dest mallocs and grows the output behind this pointer; it lives on the heap so
     * its value is well defined after a longjmp from inside the encoder. */
    struct memdst {
        unsigned char *buf;
        unsigned long len;
    } *dst = lip_calloc(1, sizeof *dst);
    if (!dst) return lip_err_set(err, LIP_ENOMEM, "out of memory for a JPEG encoder");
    jerr_init(&e, (j_common_ptr)&c);
    if (setjmp(e.jb)) {
        jpeg_destroy_compress(&c);
        free(dst->buf);
        lip_free(dst);
        return lip_err_set(err, LIP_EIO, "JPEG encode failed: %s", e.msg);
    }
    jpeg_create_compress(&c);
    jpeg_mem_dest(&c, &dst->buf, &dst->len);
    c.image_width = (JDIMENSION)width;
    c.image_height = (JDIMENSION)height;
    c.input_components = 3;
    c.in_color_space = JCS_EXT_BGR;
    jpeg_set_defaults(&c);
    jpeg_set_quality(&c, quality, TRUE);
    jpeg_start_compress(&c, TRUE);
    while (c.next_scanline < c.image_height) {
        JSAMPROW row = (JSAMPROW)(bgr + (size_t)c.next_scanline * (size_t)stride);
        jpeg_write_scanlines(&c, &row, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    size_t n = dst->len;
    uint8_t *copy = lip_malloc(n ? n : 1);
    if (!copy) {
        free(dst->buf);
        lip_free(dst);
        return lip_err_set(err, LIP_ENOMEM, "out of memory for a %zu-byte JPEG", n);
    }
    memcpy(copy, dst->buf, n);
    free(dst->buf);
    lip_free(dst);
    *out = copy;
    *out_len = n;
    return 0;
}
