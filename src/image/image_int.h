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

#endif
