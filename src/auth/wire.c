/* SPDX-License-Identifier: MIT */
/* auth/wire.c: the small pure pieces of the auth module: SHA-256 of a secret (OpenSSL's
 * libcrypto, linked through grpc), the frame token bucket, and a schema-free protobuf wire
 * scanner that finds the avatar field and frame counts in requests and responses of any
 * service without unpacking them (an InferBatch request is tens of MB; the scanner skips
 * length-delimited fields without touching their bytes). */
#include "auth/auth.h"

#include <openssl/sha.h>
#include <string.h>

void lip_auth_hash_hex(const char *key, size_t len, char out[65])
{
    unsigned char md[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)key, len, md);
    static const char hx[] = "0123456789abcdef";
    for (int i = 0; i < SHA256_DIGEST_LENGTH; i++) {
        out[2 * i] = hx[md[i] >> 4];
        out[2 * i + 1] = hx[md[i] & 15];
    }
    out[64] = 0;
}

/* ---- token bucket ------------------------------------------------------------------------ */

void lip_auth_bucket_init(lip_auth_bucket *b, double burst, double now_ms)
{
    b->tokens = burst;
    b->last_ms = now_ms;
}

bool lip_auth_bucket_admit(lip_auth_bucket *b, double rate, double burst, double now_ms,
                           double *retry_ms)
{
    if (retry_ms) *retry_ms = 0;
    if (rate <= 0) return true;
    double dt = now_ms - b->last_ms;
    if (dt > 0) {
        b->tokens += rate * dt / 1000.0;
        if (b->tokens > burst) b->tokens = burst;
        b->last_ms = now_ms;
    }
    if (b->tokens > 0) return true;
    /* Time until the balance is positive again; at least 1 ms so a client never spins. */
    double ms = (-b->tokens) * 1000.0 / rate + 1.0;
    if (retry_ms) *retry_ms = ms;
    return false;
}

void lip_auth_bucket_charge(lip_auth_bucket *b, double n) { b->tokens -= n; }

/* ---- protobuf wire scanning -------------------------------------------------------------- */

/* One varint at *p (advanced); false when truncated or longer than 10 bytes. */
static bool varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
    uint64_t r = 0;
    for (int i = 0; i < 10; i++) {
        if (*p >= end) return false;
        uint8_t b = *(*p)++;
        r |= (uint64_t)(b & 0x7f) << (7 * i);
        if (!(b & 0x80)) {
            *v = r;
            return true;
        }
    }
    return false;
}

/* Walks one field: its number and wire type, and for wire type 2 the value's bounds (else
 * *val is NULL). Advances *p past the field; false when malformed (groups are refused, like
 * proto3). */
static bool next_field(const uint8_t **p, const uint8_t *end, uint32_t *num, int *wt,
                       const uint8_t **val, size_t *vlen, uint64_t *ival)
{
    uint64_t key;
    if (!varint(p, end, &key)) return false;
    *num = (uint32_t)(key >> 3);
    *wt = (int)(key & 7);
    *val = NULL;
    *vlen = 0;
    if (key >> 3 == 0 || key >> 3 > 0x1fffffff) return false;
    switch (*wt) {
    case 0: return varint(p, end, ival);
    case 1:
        if (end - *p < 8) return false;
        *p += 8;
        return true;
    case 5:
        if (end - *p < 4) return false;
        *p += 4;
        return true;
    case 2: {
        uint64_t n;
        if (!varint(p, end, &n) || n > (uint64_t)(end - *p)) return false;
        *val = *p;
        *vlen = (size_t)n;
        *p += n;
        return true;
    }
    default: return false;
    }
}

int lip_auth_pb_string(const uint8_t *msg, size_t len, const uint32_t *path, int depth,
                       const uint8_t **val, size_t *vlen)
{
    if (depth < 1 || depth > 3) return LIP_EINVAL;
    const uint8_t *p = msg, *end = msg + len;
    int found = 0;
    while (p < end) {
        uint32_t num;
        int wt;
        const uint8_t *v;
        size_t vl;
        uint64_t iv;
        if (!next_field(&p, end, &num, &wt, &v, &vl, &iv)) return LIP_EFORMAT;
        if (num != path[0]) continue;
        if (wt != 2) return LIP_EFORMAT; /* protobuf-c refuses the message too */
        if (depth == 1) {
            *val = v;
            *vlen = vl;
            found = 1;
            continue;
        }
        /* A nested message: occurrences merge, so a leaf in a later one overrides. */
        const uint8_t *iv2 = NULL;
        size_t il = 0;
        int r = lip_auth_pb_string(v, vl, path + 1, depth - 1, &iv2, &il);
        if (r < 0) return r;
        if (!found) {
            *val = v; /* present, leaf empty so far */
            *vlen = 0;
        }
        if (r == 1) {
            *val = iv2;
            *vlen = il;
        }
        found = 1;
    }
    return found;
}

int lip_auth_pb_count(const uint8_t *msg, size_t len, uint32_t f)
{
    const uint8_t *p = msg, *end = msg + len;
    int n = 0;
    while (p < end) {
        uint32_t num;
        int wt;
        const uint8_t *v;
        size_t vl;
        uint64_t iv;
        if (!next_field(&p, end, &num, &wt, &v, &vl, &iv)) return LIP_EFORMAT;
        if (num == f && n < 0x7fffffff) n++;
    }
    return n;
}

int lip_auth_pb_varint(const uint8_t *msg, size_t len, uint32_t f, uint64_t *out)
{
    const uint8_t *p = msg, *end = msg + len;
    int found = 0;
    while (p < end) {
        uint32_t num;
        int wt;
        const uint8_t *v;
        size_t vl;
        uint64_t iv = 0;
        if (!next_field(&p, end, &num, &wt, &v, &vl, &iv)) return LIP_EFORMAT;
        if (num != f) continue;
        if (wt != 0) return LIP_EFORMAT;
        *out = iv;
        found = 1;
    }
    return found;
}
