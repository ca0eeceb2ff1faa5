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

/* Writes v as a varint at out; returns its length (1-10). */
static size_t put_varint(uint8_t *out, uint64_t v)
{
    size_t n = 0;
    do {
        uint8_t b = (uint8_t)(v & 0x7f);
        v >>= 7;
        out[n++] = (uint8_t)(b | (v ? 0x80 : 0));
    } while (v);
    return n;
}

/* Whether one element of the filtered list stays: its id is the element itself (sub 0) or the
 * last string field sub inside it. A malformed element does not stay. */
static bool elem_keeps(const uint8_t *v, size_t vl, uint32_t sub, lip_auth_keep_fn keep, void *ud)
{
    if (!sub) return keep(ud, v, vl);
    const uint8_t *id = NULL;
    size_t il = 0;
    int r = lip_auth_pb_string(v, vl, &sub, 1, &id, &il);
    if (r < 0) return false;
    return keep(ud, r ? id : v, r ? il : 0);
}

long lip_auth_pb_filter(uint8_t *msg, size_t len, uint32_t field, uint32_t sub,
                        uint32_t count_field, lip_auth_keep_fn keep, void *ud)
{
    /* Pass 1: check the whole message and count what stays, so a count field is right wherever
     * it stands. */
    const uint8_t *p = msg, *end = msg + len;
    uint64_t kept = 0;
    while (p < end) {
        uint32_t num;
        int wt;
        const uint8_t *v;
        size_t vl;
        uint64_t iv;
        if (!next_field(&p, end, &num, &wt, &v, &vl, &iv)) return LIP_EFORMAT;
        if (num == field && (wt != 2 || elem_keeps(v, vl, sub, keep, ud))) kept++;
        if (num == count_field && wt != 0) return LIP_EFORMAT;
    }
    /* Pass 2: copy what stays, in place (the write position never passes the read position: a
     * smaller count never needs a longer varint). */
    p = msg;
    uint8_t *w = msg;
    while (p < end) {
        const uint8_t *start = p;
        uint32_t num;
        int wt;
        const uint8_t *v;
        size_t vl;
        uint64_t iv;
        next_field(&p, end, &num, &wt, &v, &vl, &iv);
        if (num == field && wt == 2 && !elem_keeps(v, vl, sub, keep, ud)) continue;
        if (num == count_field && iv > kept) {
            uint8_t tmp[24];
            size_t n = put_varint(tmp, (uint64_t)count_field << 3);
            n += put_varint(tmp + n, kept);
            memcpy(w, tmp, n);
            w += n;
            continue;
        }
        memmove(w, start, (size_t)(p - start));
        w += p - start;
    }
    return (long)(w - msg);
}
