/* SPDX-License-Identifier: MIT */
/* image/image_int.h: internals shared between the image module's files (not a public API). */
#ifndef LIP_IMAGE_INT_H
#define LIP_IMAGE_INT_H

#include "image/image.h"

/* Scales a BGR24 source into the resizer's destination planes and returns them in planes[]
 * (G, B, R; each dw*dh, stride dw), valid until the next call on r. The paste path merges or
 * blends from them straight into the frame, saving a pass over a packed copy. */
int lip_resize_to_planes_(lip_resizer *r, const uint8_t *src, int sw, int sh, int sstride, int dw,
                          int dh, uint8_t **planes, lip_err *err);

/* The resizer's planar scratch for an sw x sh -> dw x dh scale, grown as needed: src[] and dst[]
 * receive the G, B, R planes (stride = width). Lets a caller fill the source planes itself. */
int lip_resizer_planes_(lip_resizer *r, int sw, int sh, int dw, int dh, uint8_t **src,
                        uint8_t **dst, lip_err *err);
/* Scales the source scratch planes into the destination scratch planes (cached context). */
int lip_resizer_scale_(lip_resizer *r, int sw, int sh, int dw, int dh, lip_err *err);

/* Per-encoder scratch of the JPEG splice path (splice.c): the sub-image's stream and its segment
 * offsets. Lives in the lip_jpeg_enc (one per thread), so splicing allocates nothing once warm. */
typedef struct lip_jpeg_splice_scratch {
    lip_buf sub;
    uint32_t *start, *end; /* [cap] segment data ranges of the sub-image */
    int cap;
} lip_jpeg_splice_scratch;
lip_jpeg_splice_scratch *lip_jpeg_enc_splice_scratch_(lip_jpeg_enc *e);
/* Frees the scratch's storage (called by lip_jpeg_enc_free). */
void lip_jpeg_splice_scratch_free_(lip_jpeg_splice_scratch *s);

#endif
