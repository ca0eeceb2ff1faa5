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

#endif
