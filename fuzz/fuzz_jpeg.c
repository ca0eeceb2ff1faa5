/* SPDX-License-Identifier: MIT */
/* fuzz_jpeg: lip_jpeg_decode (libjpeg-turbo behind our error handling and size limits) on
 * arbitrary bytes; JPEG frames arrive in avatar packages and in client requests. */
#include "fuzz.h"
#include "image/image.h"

FUZZ_QUIET_INIT

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    lip_image img = {0};
    lip_err e = {0};
    int rc = lip_jpeg_decode(data, size, &img, &e);
    fuzz_check_err(rc, &e, "lip_jpeg_decode");
    if (rc == 0) {
        if (img.w <= 0 || img.h <= 0 || img.stride < img.w * 3 || !img.data) abort();
        /* Read the last byte of the last row: a short allocation shows up under ASan. */
        volatile uint8_t last = img.data[(size_t)(img.h - 1) * img.stride + img.w * 3 - 1];
        (void)last;
    } else if (img.data) {
        abort(); /* a failed decode frees what it allocated */
    }
    lip_image_free(&img);
    return 0;
}
