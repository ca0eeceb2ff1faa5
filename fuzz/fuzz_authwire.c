/* SPDX-License-Identifier: MIT */
/* fuzz_authwire: the schema-free protobuf scanner of the auth guard, which reads every request
 * before any service does (the avatar field, frame counts) and rewrites listing responses
 * (lip_auth_pb_filter). Hostile bytes must never read out of bounds, and the filter must keep
 * its contract: on success the result is no longer than the input, is well-formed protobuf,
 * holds no element the predicate refuses, and filtering it again changes nothing. The first
 * input byte picks the field numbers (1-4) the calls look at. */
#include "fuzz.h"

#include "auth/auth.h"

#include <string.h>

FUZZ_QUIET_INIT

/* Keeps ids whose first byte is even (and the empty id). */
static bool keep_even(void *ud, const uint8_t *id, size_t len)
{
    (void)ud;
    return len == 0 || (id[0] & 1) == 0;
}

static bool refuse_all(void *ud, const uint8_t *id, size_t len)
{
    (void)ud;
    (void)id;
    (void)len;
    return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    uint32_t field = 1u + (data[0] & 3), sub = (data[0] >> 2) & 3, cnt = (data[0] >> 4) & 3;
    const uint8_t *msg = data + 1;
    size_t len = size - 1;

    const uint32_t path[3] = {field, sub ? sub : 1, 1};
    const uint8_t *v = NULL;
    size_t vl = 0;
    for (int depth = 1; depth <= 3; depth++) {
        int r = lip_auth_pb_string(msg, len, path, depth, &v, &vl);
        if (r == 1 && vl && (v < msg || v + vl > msg + len)) abort(); /* points outside */
        if (r < 0 && r != LIP_EFORMAT) abort();                       /* undocumented code */
    }
    (void)lip_auth_pb_count(msg, len, field);
    uint64_t iv;
    (void)lip_auth_pb_varint(msg, len, field, &iv);

    uint8_t *buf = malloc(len ? len : 1);
    if (!buf) abort();
    memcpy(buf, msg, len);
    long n = lip_auth_pb_filter(buf, len, field, sub, cnt, keep_even, NULL);
    if (n == LIP_EFORMAT) {
        if (memcmp(buf, msg, len) != 0) abort(); /* refused: untouched */
    } else {
        if (n < 0 || (size_t)n > len) abort();
        if (lip_auth_pb_count(buf, (size_t)n, field) < 0) abort(); /* still well-formed */
        long n2 = lip_auth_pb_filter(buf, (size_t)n, field, sub, cnt, keep_even, NULL);
        if (n2 != n) abort(); /* idempotent */
        /* Refusing everything leaves no length-delimited occurrence of the field. */
        long n3 = lip_auth_pb_filter(buf, (size_t)n, field, sub, 0, refuse_all, NULL);
        if (n3 < 0) abort();
        const uint8_t *p3 = NULL;
        size_t l3 = 0;
        if (lip_auth_pb_string(buf, (size_t)n3, &field, 1, &p3, &l3) == 1) abort();
    }
    free(buf);
    return 0;
}
