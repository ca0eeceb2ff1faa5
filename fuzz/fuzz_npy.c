/* SPDX-License-Identifier: MIT */
/* fuzz_npy: lip_npy_parse (core) on arbitrary bytes, then the float32 conversion of whatever
 * parsed. .npy files arrive inside avatar packages (aud_ave.npy, DATA.md) and are hostile. */
#include "fuzz.h"

FUZZ_QUIET_INIT

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    lip_npy a;
    lip_err e = {0};
    int rc = lip_npy_parse(data, size, &a, &e);
    fuzz_check_err(rc, &e, "lip_npy_parse");
    if (rc == 0) {
        size_t count = 1;
        for (int i = 0; i < a.ndim; i++) count *= a.shape[i];
        if (count != a.count) abort(); /* count must be the product of the shape */
        lip_err_clear(&e);
        rc = lip_npy_to_f32(&a, &e);
        fuzz_check_err(rc, &e, "lip_npy_to_f32");
        lip_npy_free(&a);
    }
    return 0;
}
