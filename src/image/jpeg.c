/* SPDX-License-Identifier: MIT */
/* image/jpeg.c: JPEG through libjpeg-turbo's jpeglib API. The encoder is baseline, 4:2:0, standard
 * (Annex K) Huffman tables, JCS_EXT_BGR input, writing through a destination manager into a
 * growable lip_buf; its jpeg_compress_struct lives in a lip_jpeg_enc and is reused, so steady
 * state costs no allocation of ours. jpeglib rather than TurboJPEG because only jpeglib can set a
 * restart interval (libjpeg-turbo 2.1), which restart-segment splicing needs later
 * (notes/encode-limits.md); for the same reason optimize_coding is never set on an encoder (an
 * object that once used optimized tables keeps them).
 *
 * libjpeg reports errors by calling error_exit, which must not return: it longjmps back to the
 * call with the formatted message. This file is the one place where libjpeg errors become
 * lip_err codes. The decoder treats libjpeg's corrupt-data warnings as errors, so a truncated or
 * damaged file is an error rather than a grey-padded image, and it limits image size and the
 * number of progressive scans against decompression bombs. */
#include "image/image.h"
#include "image/image_int.h"

#include <setjmp.h>
#include <stdio.h> /* jpeglib.h needs FILE */
#include <string.h>

#include <jpeglib.h>

#define MAX_SCANS 1000 /* progressive files with more scans are refused (CPU bomb) */

typedef struct jerr_ctx {
    struct jpeg_error_mgr pub;
    jmp_buf jb;
    int code; /* lip code chosen by whoever raised the error; 0 = libjpeg's own error */
    char msg[JMSG_LENGTH_MAX + 64];
} jerr_ctx;

static void on_error_exit(j_common_ptr c)
{
    jerr_ctx *e = (jerr_ctx *)c->err;
    if (!e->code) {
        (*c->err->format_message)(c, e->msg);
        e->code = LIP_EFORMAT;
    }
    longjmp(e->jb, 1);
}

/* Warnings (level -1) are corrupt-data reports on decode: fatal. Trace messages are dropped. */
static void on_emit_message(j_common_ptr c, int level)
{
    if (level >= 0) return;
    jerr_ctx *e = (jerr_ctx *)c->err;
    (*c->err->format_message)(c, e->msg);
    e->code = LIP_EFORMAT;
    longjmp(e->jb, 1);
}

static void on_output_message(j_common_ptr c)
{
    (void)c; /* never print to stderr from a library */
}

static void jerr_init(jerr_ctx *e)
{
    jpeg_std_error(&e->pub);
    e->pub.error_exit = on_error_exit;
    e->pub.emit_message = on_emit_message;
    e->pub.output_message = on_output_message;
    e->code = 0;
    e->msg[0] = 0;
}

static void raise_error(j_common_ptr c, int code, const char *msg)
{
    jerr_ctx *e = (jerr_ctx *)c->err;
    e->code = code;
    lip_strlcpy(e->msg, msg, sizeof e->msg);
    longjmp(e->jb, 1);
}

/* ---- encoder ------------------------------------------------------------------------------ */

struct lip_jpeg_enc {
    struct jpeg_compress_struct cinfo;
    jerr_ctx jerr;
    struct jpeg_destination_mgr dest;
    lip_buf *out; /* the buffer of the encode in progress */
    lip_jpeg_splice_scratch splice; /* splice.c's per-encoder scratch */
};

lip_jpeg_splice_scratch *lip_jpeg_enc_splice_scratch_(lip_jpeg_enc *e) { return &e->splice; }

lip_jpeg_opts lip_jpeg_opts_default(void)
{
    return (lip_jpeg_opts){.quality = 75, .restart_interval = 0, .fast_dct = false};
}

static void dest_init(j_compress_ptr c)
{
    lip_jpeg_enc *e = (lip_jpeg_enc *)c->client_data;
    /* First guess: a third of a byte per pixel covers q75 photos; the buffer keeps its size. */
    size_t want = LIP_MAX((size_t)c->image_width * c->image_height / 3, (size_t)16384);
    if (e->out->cap < want && lip_buf_reserve(e->out, want, NULL))
        raise_error((j_common_ptr)c, LIP_ENOMEM, "out of memory for the JPEG output buffer");
    e->dest.next_output_byte = e->out->data;
    e->dest.free_in_buffer = e->out->cap;
}

/* Called when the buffer is full (all of it is output): double it and go on. */
static boolean dest_empty(j_compress_ptr c)
{
    lip_jpeg_enc *e = (lip_jpeg_enc *)c->client_data;
    size_t used = e->out->cap;
    if (lip_buf_reserve(e->out, used * 2, NULL))
        raise_error((j_common_ptr)c, LIP_ENOMEM, "out of memory growing the JPEG output buffer");
    e->dest.next_output_byte = e->out->data + used;
    e->dest.free_in_buffer = e->out->cap - used;
    return TRUE;
}

static void dest_term(j_compress_ptr c)
{
    lip_jpeg_enc *e = (lip_jpeg_enc *)c->client_data;
    e->out->len = e->out->cap - e->dest.free_in_buffer;
}

lip_jpeg_enc *lip_jpeg_enc_new(void)
{
    lip_jpeg_enc *e = lip_calloc(1, sizeof *e);
    if (!e) return NULL;
    jerr_init(&e->jerr);
    e->cinfo.err = &e->jerr.pub;
    if (setjmp(e->jerr.jb)) { /* jpeg_create_compress fails only when out of memory */
        jpeg_destroy_compress(&e->cinfo);
        lip_free(e);
        return NULL;
    }
    jpeg_create_compress(&e->cinfo);
    e->cinfo.client_data = e;
    e->dest.init_destination = dest_init;
    e->dest.empty_output_buffer = dest_empty;
    e->dest.term_destination = dest_term;
    e->cinfo.dest = &e->dest;
    return e;
}

void lip_jpeg_enc_free(lip_jpeg_enc *e)
{
    if (!e) return;
    lip_jpeg_splice_scratch_free_(&e->splice);
    jpeg_destroy_compress(&e->cinfo);
    lip_free(e);
}

static int check_image(const char *who, const lip_image *img, lip_err *err)
{
    if (!img || !img->data) return lip_err_set(err, LIP_EINVAL, "%s: image is NULL or empty", who);
    if (img->w < 1 || img->h < 1 || img->w > LIP_IMAGE_MAX_DIM || img->h > LIP_IMAGE_MAX_DIM ||
        img->stride < 3 * img->w)
        return lip_err_set(err, LIP_EINVAL,
                           "%s: image %dx%d stride %d invalid (sides 1..%d, stride >= 3*width)",
                           who, img->w, img->h, img->stride, LIP_IMAGE_MAX_DIM);
    return 0;
}

int lip_jpeg_enc_encode(lip_jpeg_enc *e, const lip_image *img, const lip_jpeg_opts *opts,
                        lip_buf *out, lip_err *err)
{
    lip_jpeg_opts o = opts ? *opts : lip_jpeg_opts_default();
    if (!e || !out) return lip_err_set(err, LIP_EINVAL, "JPEG encode: encoder or output is NULL");
    int rc = check_image("JPEG encode", img, err);
    if (rc) return rc;
    if (o.quality < 1 || o.quality > 100)
        return lip_err_set(err, LIP_EINVAL, "JPEG quality %d outside 1..100", o.quality);
    if (o.restart_interval < 0 || o.restart_interval > 65535)
        return lip_err_set(err, LIP_EINVAL, "JPEG restart interval %d outside 0..65535 MCUs",
                           o.restart_interval);
    struct jpeg_compress_struct *c = &e->cinfo;
    e->out = out;
    out->len = 0;
    jerr_init(&e->jerr);
    if (setjmp(e->jerr.jb)) {
        jpeg_abort_compress(c);
        out->len = 0;
        return lip_err_set(err, e->jerr.code == LIP_EFORMAT ? LIP_EINTERNAL : e->jerr.code,
                           "JPEG encode of %dx%d: %s", img->w, img->h, e->jerr.msg);
    }
    c->image_width = (JDIMENSION)img->w;
    c->image_height = (JDIMENSION)img->h;
    c->input_components = 3;
    c->in_color_space = JCS_EXT_BGR;
    jpeg_set_defaults(c);
    jpeg_set_colorspace(c, JCS_YCbCr);
    jpeg_set_quality(c, o.quality, TRUE);
    c->comp_info[0].h_samp_factor = 2; /* 4:2:0 */
    c->comp_info[0].v_samp_factor = 2;
    for (int i = 1; i < 3; i++) c->comp_info[i].h_samp_factor = c->comp_info[i].v_samp_factor = 1;
    c->optimize_coding = FALSE;
    c->smoothing_factor = 0;
    c->dct_method = o.fast_dct ? JDCT_IFAST : JDCT_ISLOW;
    c->restart_in_rows = 0;
    c->restart_interval = (unsigned int)o.restart_interval;
    c->write_JFIF_header = TRUE;
    jpeg_start_compress(c, TRUE);
    JSAMPROW rows[16];
    while (c->next_scanline < c->image_height) {
        JDIMENSION n = LIP_MIN(c->image_height - c->next_scanline, (JDIMENSION)16);
        for (JDIMENSION i = 0; i < n; i++)
            rows[i] = (JSAMPROW)(img->data + (size_t)(c->next_scanline + i) * img->stride);
        jpeg_write_scanlines(c, rows, n);
    }
    jpeg_finish_compress(c);
    return 0;
}

int lip_jpeg_encode(const lip_image *img, int quality, lip_buf *out, lip_err *err)
{
    lip_jpeg_enc *e = lip_jpeg_enc_new();
    if (!e) return lip_err_set(err, LIP_ENOMEM, "out of memory for a JPEG encoder");
    lip_jpeg_opts o = lip_jpeg_opts_default();
    o.quality = quality;
    int rc = lip_jpeg_enc_encode(e, img, &o, out, err);
    lip_jpeg_enc_free(e);
    return rc;
}

/* ---- decoder ------------------------------------------------------------------------------ */

static void progress(j_common_ptr c)
{
    j_decompress_ptr d = (j_decompress_ptr)c;
    if (d->is_decompressor && d->input_scan_number > MAX_SCANS) {
        char m[96];
        snprintf(m, sizeof m, "more than %d progressive scans (refused as a decompression bomb)",
                 MAX_SCANS);
        jerr_ctx *e = (jerr_ctx *)c->err;
        e->code = LIP_ERANGE;
        lip_strlcpy(e->msg, m, sizeof e->msg);
        longjmp(e->jb, 1);
    }
}

static int decode_rows(const uint8_t *data, size_t len, lip_image *out, int y0, int y1,
                       lip_err *err);

int lip_jpeg_decode(const uint8_t *data, size_t len, lip_image *out, lip_err *err)
{
    return decode_rows(data, len, out, 0, -1, err);
}

int lip_jpeg_decode_rows(const uint8_t *data, size_t len, lip_image *out, int y0, int y1,
                         lip_err *err)
{
    if (!out || !out->data)
        return lip_err_set(err, LIP_EINVAL, "JPEG row decode: the output image must be allocated");
    if (y0 < 0 || y1 <= y0 || y1 > out->h)
        return lip_err_set(err, LIP_EINVAL, "JPEG row decode: rows [%d,%d) outside 0..%d", y0, y1,
                           out->h);
    return decode_rows(data, len, out, y0, y1, err);
}

/* Decodes rows [y0, y1) (y1 < 0: all) into out at their own positions. Rows above y0 are
 * skipped with jpeg_skip_scanlines (entropy-decoded, not transformed) and decoding stops after
 * y1 (jpeg_abort), so a band costs a fraction of the whole frame. */
static int decode_rows(const uint8_t *data, size_t len, lip_image *out, int y0, int y1,
                       lip_err *err)
{
    if (!data || !out) return lip_err_set(err, LIP_EINVAL, "JPEG decode: data or output is NULL");
    if (len < 4 || data[0] != 0xFF || data[1] != 0xD8)
        return lip_err_set(err, LIP_EFORMAT,
                           "JPEG decode: %zu bytes do not start with an SOI marker "
                           "(expected FF D8)",
                           len);
    if (out->data && (out->w < 1 || out->h < 1 || out->w > LIP_IMAGE_MAX_DIM ||
                      out->h > LIP_IMAGE_MAX_DIM || out->stride < 3 * out->w))
        return lip_err_set(err, LIP_EINVAL, "JPEG decode: output image %dx%d stride %d is invalid",
                           out->w, out->h, out->stride);
    struct jpeg_decompress_struct d;
    struct jpeg_progress_mgr pm = {.progress_monitor = progress};
    jerr_ctx jerr;
    volatile int allocated = 0;
    jerr_init(&jerr);
    d.err = &jerr.pub;
    if (setjmp(jerr.jb)) {
        jpeg_destroy_decompress(&d);
        if (allocated) lip_image_free(out);
        return lip_err_set(err, jerr.code ? jerr.code : LIP_EFORMAT, "JPEG decode: %s", jerr.msg);
    }
    jpeg_create_decompress(&d);
    d.progress = &pm;
    jpeg_mem_src(&d, data, (unsigned long)len);
    if (jpeg_read_header(&d, TRUE) != JPEG_HEADER_OK)
        raise_error((j_common_ptr)&d, LIP_EFORMAT, "the stream holds tables but no image");
    JDIMENSION w = d.image_width, h = d.image_height;
    if (w > LIP_IMAGE_MAX_DIM || h > LIP_IMAGE_MAX_DIM || (uint64_t)w * h > LIP_IMAGE_MAX_PIXELS) {
        char m[160];
        snprintf(m, sizeof m, "image is %ux%u, past the limit of %d per side and %d pixels",
                 (unsigned)w, (unsigned)h, LIP_IMAGE_MAX_DIM, LIP_IMAGE_MAX_PIXELS);
        raise_error((j_common_ptr)&d, LIP_ERANGE, m);
    }
    if (out->data && (out->w != (int)w || out->h != (int)h)) {
        char m[160];
        snprintf(m, sizeof m, "output image is %dx%d but the JPEG is %ux%u", out->w, out->h,
                 (unsigned)w, (unsigned)h);
        raise_error((j_common_ptr)&d, LIP_EINVAL, m);
    }
    d.out_color_space = JCS_EXT_BGR;
    jpeg_start_decompress(&d);
    if (d.output_width != w || d.output_height != h || d.output_components != 3)
        raise_error((j_common_ptr)&d, LIP_EINTERNAL,
                    "decoder output geometry differs from the header");
    if (!out->data) {
        lip_err aerr = {0};
        if (lip_image_alloc(out, (int)w, (int)h, &aerr))
            raise_error((j_common_ptr)&d, aerr.code, aerr.msg);
        allocated = 1;
    }
    JDIMENSION stop = y1 < 0 ? d.output_height : (JDIMENSION)y1;
    if (y0 > 0 && jpeg_skip_scanlines(&d, (JDIMENSION)y0) != (JDIMENSION)y0)
        raise_error((j_common_ptr)&d, LIP_EFORMAT, "the data ended before the first wanted row");
    while (d.output_scanline < stop) {
        JSAMPROW row = out->data + (size_t)d.output_scanline * out->stride;
        if (jpeg_read_scanlines(&d, &row, 1) != 1)
            raise_error((j_common_ptr)&d, LIP_EFORMAT, "the data ended before the last row");
    }
    if (stop == d.output_height) jpeg_finish_decompress(&d);
    else jpeg_abort_decompress(&d);
    jpeg_destroy_decompress(&d);
    return 0;
}
