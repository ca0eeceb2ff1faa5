/* SPDX-License-Identifier: MIT */
/* image/process.c: MODEL.md's visual pre- and post-processing around the UNet. Pre-processing
 * crops the mouth rect out of a background frame, resizes it to 328x328 (kept by the caller for
 * paste-back), and lays out [real, masked] as CHW float32 /255. Paste-back writes the model output
 * into the 328 crop, resizes it to the rect and overwrites (or, feathered, blends into) the frame.
 * The float conversions are written to be bit-identical to NumPy float32 arithmetic, which is how
 * the tests check them. */
#include "image/image_int.h"

#include <string.h>

#define CROP_STRIDE (LIP_CROP_SIZE * 3)
#define ROI_PLANE (LIP_ROI_SIZE * LIP_ROI_SIZE)

int lip_image_check_rect(int w, int h, const int rect[4], lip_err *err)
{
    if (!rect) return lip_err_set(err, LIP_EINVAL, "crop rect is NULL");
    int x1 = rect[0], y1 = rect[1], x2 = rect[2], y2 = rect[3];
    if (x1 < 0 || y1 < 0 || x2 > w || y2 > h || x1 >= x2 || y1 >= y2)
        return lip_err_set(err, LIP_EINVAL,
                           "crop rect [%d,%d,%d,%d] is not inside the %dx%d frame "
                           "(expected 0 <= x1 < x2 <= %d and 0 <= y1 < y2 <= %d)",
                           x1, y1, x2, y2, w, h, w, h);
    int rw = x2 - x1, rh = y2 - y1;
    if (rw < LIP_RECT_MIN || rh < LIP_RECT_MIN || rw > LIP_RECT_MAX || rh > LIP_RECT_MAX)
        return lip_err_set(err, LIP_EINVAL,
                           "crop rect [%d,%d,%d,%d] is %dx%d; sides must be %d..%d", x1, y1, x2, y2,
                           rw, rh, LIP_RECT_MIN, LIP_RECT_MAX);
    return 0;
}

static int check_frame(const lip_image *f, lip_err *err)
{
    if (!f || !f->data) return lip_err_set(err, LIP_EINVAL, "frame is NULL or has no pixels");
    if (f->w < 1 || f->h < 1 || f->w > LIP_IMAGE_MAX_DIM || f->h > LIP_IMAGE_MAX_DIM ||
        f->stride < 3 * f->w)
        return lip_err_set(err, LIP_EINVAL,
                           "frame %dx%d with stride %d is invalid (sides 1..%d, stride >= %lld)",
                           f->w, f->h, f->stride, LIP_IMAGE_MAX_DIM, 3LL * f->w);
    return 0;
}

int lip_image_preprocess_crop(const uint8_t *crop328, float *out6)
{
    if (!crop328 || !out6) return LIP_EINVAL;
    /* float32(v) / 255 exactly as NumPy computes it: a division, not a multiply by 1/255. */
    float lut[256];
    for (int i = 0; i < 256; i++) lut[i] = (float)i / 255.0f;
    for (int c = 0; c < 3; c++) {
        float *real = out6 + (size_t)c * ROI_PLANE;
        float *masked = out6 + (size_t)(c + 3) * ROI_PLANE;
        for (int y = 0; y < LIP_ROI_SIZE; y++) {
            const uint8_t *s =
                crop328 + (size_t)(y + LIP_ROI_OFFSET) * CROP_STRIDE + LIP_ROI_OFFSET * 3 + c;
            float *rr = real + (size_t)y * LIP_ROI_SIZE, *mm = masked + (size_t)y * LIP_ROI_SIZE;
            for (int x = 0; x < LIP_ROI_SIZE; x++) rr[x] = lut[s[3 * x]];
            memcpy(mm, rr, LIP_ROI_SIZE * sizeof(float));
            if (y >= LIP_MASK_Y0 && y < LIP_MASK_Y1)
                memset(mm + LIP_MASK_X0, 0, (LIP_MASK_X1 - LIP_MASK_X0) * sizeof(float));
        }
    }
    return 0;
}

int lip_image_preprocess(lip_resizer *r, const lip_image *frame, const int rect[4], float *out6,
                         uint8_t *crop328, lip_err *err)
{
    int rc = check_frame(frame, err);
    if (rc) return rc;
    if (!r || !out6 || !crop328)
        return lip_err_set(err, LIP_EINVAL, "preprocess: resizer, output or crop buffer is NULL");
    if ((rc = lip_image_check_rect(frame->w, frame->h, rect, err))) return rc;
    const uint8_t *src = frame->data + (size_t)rect[1] * frame->stride + (size_t)rect[0] * 3;
    uint8_t *p[3]; /* G, B, R planes of the 328x328 crop */
    rc = lip_resize_to_planes_(r, src, rect[2] - rect[0], rect[3] - rect[1], frame->stride,
                               LIP_CROP_SIZE, LIP_CROP_SIZE, p, err);
    if (rc) return lip_err_prefix(err, "preprocess");
    for (int y = 0; y < LIP_CROP_SIZE; y++) {
        uint8_t *d = crop328 + (size_t)y * CROP_STRIDE;
        size_t o = (size_t)y * LIP_CROP_SIZE;
        for (int x = 0; x < LIP_CROP_SIZE; x++) {
            d[3 * x] = p[1][o + x];
            d[3 * x + 1] = p[0][o + x];
            d[3 * x + 2] = p[2][o + x];
        }
    }
    /* The same table as lip_image_preprocess_crop (identical bits, tested), read from the
     * contiguous planes rather than the packed crop. */
    float lut[256];
    for (int i = 0; i < 256; i++) lut[i] = (float)i / 255.0f;
    static const int plane_of_channel[3] = {1, 0, 2};
    for (int c = 0; c < 3; c++) {
        const uint8_t *pl = p[plane_of_channel[c]];
        float *real = out6 + (size_t)c * ROI_PLANE;
        float *masked = out6 + (size_t)(c + 3) * ROI_PLANE;
        for (int y = 0; y < LIP_ROI_SIZE; y++) {
            const uint8_t *s = pl + (size_t)(y + LIP_ROI_OFFSET) * LIP_CROP_SIZE + LIP_ROI_OFFSET;
            float *rr = real + (size_t)y * LIP_ROI_SIZE, *mm = masked + (size_t)y * LIP_ROI_SIZE;
            for (int x = 0; x < LIP_ROI_SIZE; x++) rr[x] = lut[s[x]];
            memcpy(mm, rr, LIP_ROI_SIZE * sizeof(float));
            if (y >= LIP_MASK_Y0 && y < LIP_MASK_Y1)
                memset(mm + LIP_MASK_X0, 0, (LIP_MASK_X1 - LIP_MASK_X0) * sizeof(float));
        }
    }
    return 0;
}

/* uint8(v * 255): float32 multiply, truncation, clamp; "v > 0" is false for NaN, which maps to
 * 0. */
static inline uint8_t to_u8(float f)
{
    float v = f * 255.0f;
    return v > 0.0f ? (v >= 255.0f ? 255 : (uint8_t)v) : 0;
}

void lip_image_output_to_crop(const float *out3, uint8_t *crop328)
{
    for (int c = 0; c < 3; c++) {
        const float *p = out3 + (size_t)c * ROI_PLANE;
        for (int y = 0; y < LIP_ROI_SIZE; y++) {
            uint8_t *d =
                crop328 + (size_t)(y + LIP_ROI_OFFSET) * CROP_STRIDE + LIP_ROI_OFFSET * 3 + c;
            const float *s = p + (size_t)y * LIP_ROI_SIZE;
            for (int x = 0; x < LIP_ROI_SIZE; x++) d[3 * x] = to_u8(s[x]);
        }
    }
}

/* Step 5a fused with the planar split for the resize: the model output is already planar, so the
 * source planes are written from it directly (and crop328 updated alongside), saving a strided
 * pass over the crop. */
static void output_to_planes(const float *out3, uint8_t *crop328, uint8_t *const sp[3])
{
    static const int plane_of_channel[3] = {1, 0, 2};
    for (int y = 0; y < LIP_CROP_SIZE; y++) {
        uint8_t *d = crop328 + (size_t)y * CROP_STRIDE;
        size_t o = (size_t)y * LIP_CROP_SIZE;
        bool inner_row = y >= LIP_ROI_OFFSET && y < LIP_ROI_OFFSET + LIP_ROI_SIZE;
        for (int c = 0; c < 3; c++) {
            uint8_t *pl = sp[plane_of_channel[c]] + o;
            if (!inner_row) {
                for (int x = 0; x < LIP_CROP_SIZE; x++) pl[x] = d[3 * x + c];
                continue;
            }
            const float *s =
                out3 + (size_t)c * ROI_PLANE + (size_t)(y - LIP_ROI_OFFSET) * LIP_ROI_SIZE;
            for (int x = 0; x < LIP_ROI_OFFSET; x++) pl[x] = d[3 * x + c];
            for (int x = 0; x < LIP_ROI_SIZE; x++) pl[LIP_ROI_OFFSET + x] = to_u8(s[x]);
            for (int x = LIP_ROI_OFFSET + LIP_ROI_SIZE; x < LIP_CROP_SIZE; x++)
                pl[x] = d[3 * x + c];
            uint8_t *dc = d + LIP_ROI_OFFSET * 3 + c;
            const uint8_t *q = pl + LIP_ROI_OFFSET;
            for (int x = 0; x < LIP_ROI_SIZE; x++) dc[3 * x] = q[x];
        }
    }
}

/* Feathered write of one plane set into the frame region: weight a/256 for the new pixel, where
 * a = ramp[d] for d = distance to the nearest rect edge below n, else 256 (a plain copy). */
static void blend_region(uint8_t *const p[3], int w, int h, uint8_t *dst, int stride, int n)
{
    int ramp[LIP_RECT_MAX / 2 + 1];
    for (int d = 0; d < n; d++) ramp[d] = ((2 * d + 1) * 256 + n) / (2 * n);
    for (int y = 0; y < h; y++) {
        uint8_t *o = dst + (size_t)y * stride;
        size_t row = (size_t)y * w;
        int dy = LIP_MIN(y, h - 1 - y);
        for (int x = 0; x < w; x++) {
            int d = LIP_MIN(dy, LIP_MIN(x, w - 1 - x));
            uint8_t nb = p[1][row + x], ng = p[0][row + x], nr = p[2][row + x];
            if (d >= n) {
                o[3 * x] = nb;
                o[3 * x + 1] = ng;
                o[3 * x + 2] = nr;
                continue;
            }
            int a = ramp[d], b = 256 - a;
            o[3 * x] = (uint8_t)((nb * a + o[3 * x] * b + 128) >> 8);
            o[3 * x + 1] = (uint8_t)((ng * a + o[3 * x + 1] * b + 128) >> 8);
            o[3 * x + 2] = (uint8_t)((nr * a + o[3 * x + 2] * b + 128) >> 8);
        }
    }
}

int lip_image_paste(lip_resizer *r, lip_image *frame, const int rect[4], const float *out3,
                    uint8_t *crop328, int mode, int feather_px, lip_err *err)
{
    int rc = check_frame(frame, err);
    if (rc) return rc;
    if (!r || !out3 || !crop328)
        return lip_err_set(err, LIP_EINVAL, "paste: resizer, model output or crop buffer is NULL");
    if ((rc = lip_image_check_rect(frame->w, frame->h, rect, err))) return rc;
    int w = rect[2] - rect[0], h = rect[3] - rect[1];
    if (mode != LIP_PASTE_EXACT && mode != LIP_PASTE_FEATHER)
        return lip_err_set(err, LIP_EINVAL,
                           "paste mode %d is unknown (expected %d exact or %d feather)", mode,
                           LIP_PASTE_EXACT, LIP_PASTE_FEATHER);
    if (mode == LIP_PASTE_FEATHER && (feather_px < 0 || feather_px > LIP_RECT_MAX))
        return lip_err_set(err, LIP_EINVAL, "feather width %d px outside 0..%d", feather_px,
                           LIP_RECT_MAX);
    /* A configured width wider than half a small rect is clamped rather than failing the frame:
     * the ramp then spans the whole rect. */
    feather_px = LIP_MIN(feather_px, LIP_MIN(w, h) / 2);
    uint8_t *sp[3], *p[3];
    rc = lip_resizer_planes_(r, LIP_CROP_SIZE, LIP_CROP_SIZE, w, h, sp, p, err);
    if (rc) return lip_err_prefix(err, "paste");
    output_to_planes(out3, crop328, sp);
    if ((rc = lip_resizer_scale_(r, LIP_CROP_SIZE, LIP_CROP_SIZE, w, h, err)))
        return lip_err_prefix(err, "paste");
    uint8_t *dst = frame->data + (size_t)rect[1] * frame->stride + (size_t)rect[0] * 3;
    if (mode == LIP_PASTE_FEATHER && feather_px > 0) {
        blend_region(p, w, h, dst, frame->stride, feather_px);
        return 0;
    }
    for (int y = 0; y < h; y++) {
        uint8_t *o = dst + (size_t)y * frame->stride;
        size_t row = (size_t)y * w;
        for (int x = 0; x < w; x++) {
            o[3 * x] = p[1][row + x];
            o[3 * x + 1] = p[0][row + x];
            o[3 * x + 2] = p[2][row + x];
        }
    }
    return 0;
}
