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

/* One top-level field as the scanner sees it: number, wire type, the bytes it spans (key
 * included), and its value: bounds for wire type 2 (val NULL otherwise), the number for 0. */
typedef struct pb_field {
    uint32_t num;
    int wt;
    const uint8_t *start, *end;
    const uint8_t *val;
    size_t vlen;
    uint64_t ival;
} pb_field;

/* Reads the field at *p into f and advances *p past it: 1 read, 0 at the end, -1 malformed
 * (groups are refused, like proto3). */
static int pb_next(const uint8_t **p, const uint8_t *end, pb_field *f)
{
    if (*p >= end) return 0;
    memset(f, 0, sizeof *f);
    f->start = *p;
    uint64_t key;
    if (!varint(p, end, &key) || key >> 3 == 0 || key >> 3 > 0x1fffffff) return -1;
    f->num = (uint32_t)(key >> 3);
    f->wt = (int)(key & 7);
    switch (f->wt) {
    case 0:
        if (!varint(p, end, &f->ival)) return -1;
        break;
    case 1:
        if (end - *p < 8) return -1;
        *p += 8;
        break;
    case 5:
        if (end - *p < 4) return -1;
        *p += 4;
        break;
    case 2: {
        uint64_t n;
        if (!varint(p, end, &n) || n > (uint64_t)(end - *p)) return -1;
        f->val = *p;
        f->vlen = (size_t)n;
        *p += n;
        break;
    }
    default: return -1;
    }
    f->end = *p;
    return 1;
}

int lip_auth_pb_string(const uint8_t *msg, size_t len, const uint32_t *path, int depth,
                       const uint8_t **val, size_t *vlen)
{
    if (depth < 1 || depth > 3) return LIP_EINVAL;
    const uint8_t *p = msg, *end = msg + len;
    int found = 0, r;
    pb_field f;
    while ((r = pb_next(&p, end, &f)) > 0) {
        if (f.num != path[0]) continue;
        if (f.wt != 2) return LIP_EFORMAT; /* protobuf-c refuses the message too */
        if (depth == 1) {
            *val = f.val;
            *vlen = f.vlen;
            found = 1;
            continue;
        }
        /* A nested message: occurrences merge, so a leaf in a later one overrides. */
        const uint8_t *iv2 = NULL;
        size_t il = 0;
        int rr = lip_auth_pb_string(f.val, f.vlen, path + 1, depth - 1, &iv2, &il);
        if (rr < 0) return rr;
        if (!found) {
            *val = f.val; /* present, leaf empty so far */
            *vlen = 0;
        }
        if (rr == 1) {
            *val = iv2;
            *vlen = il;
        }
        found = 1;
    }
    return r < 0 ? LIP_EFORMAT : found;
}

int lip_auth_pb_count(const uint8_t *msg, size_t len, uint32_t fnum)
{
    const uint8_t *p = msg, *end = msg + len;
    int n = 0, r;
    pb_field f;
    while ((r = pb_next(&p, end, &f)) > 0)
        if (f.num == fnum && n < 0x7fffffff) n++;
    return r < 0 ? LIP_EFORMAT : n;
}

int lip_auth_pb_varint(const uint8_t *msg, size_t len, uint32_t fnum, uint64_t *out)
{
    const uint8_t *p = msg, *end = msg + len;
    int found = 0, r;
    pb_field f;
    while ((r = pb_next(&p, end, &f)) > 0) {
        if (f.num != fnum) continue;
        if (f.wt != 0) return LIP_EFORMAT;
        *out = f.ival;
        found = 1;
    }
    return r < 0 ? LIP_EFORMAT : found;
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
    int r;
    pb_field f;
    while ((r = pb_next(&p, end, &f)) > 0) {
        if (f.num == field && (f.wt != 2 || elem_keeps(f.val, f.vlen, sub, keep, ud))) kept++;
        if (f.num == count_field && f.wt != 0) return LIP_EFORMAT;
    }
    if (r < 0) return LIP_EFORMAT;
    /* Pass 2: copy what stays, in place (the write position never passes the read position: a
     * smaller count never needs a longer varint). */
    p = msg;
    uint8_t *w = msg;
    while (pb_next(&p, end, &f) > 0) {
        if (f.num == field && f.wt == 2 && !elem_keeps(f.val, f.vlen, sub, keep, ud)) continue;
        if (f.num == count_field && f.ival > kept) {
            uint8_t tmp[24];
            size_t n = put_varint(tmp, (uint64_t)count_field << 3);
            n += put_varint(tmp + n, kept);
            memcpy(w, tmp, n);
            w += n;
            continue;
        }
        memmove(w, f.start, (size_t)(f.end - f.start));
        w += f.end - f.start;
    }
    return (long)(w - msg);
}
