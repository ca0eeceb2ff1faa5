/* SPDX-License-Identifier: MIT */
/* core/npy.c: NumPy .npy reader and float32 writer. The reader treats the file as hostile:
 * magic, version, header length, every dict key, dtype, shape overflow and data size are
 * checked, and Fortran-order arrays are transposed to C order. */
#include "core/core.h"

#include <stdio.h>
#include <string.h>

static const char *skip_ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) p++;
    return p;
}

/* Finds 'key' (quoted with ' or ") in the header dict and returns a pointer after its colon. */
static const char *find_key(const char *h, const char *end, const char *key)
{
    size_t kl = strlen(key);
    for (const char *p = h; p + kl + 2 < end; p++) {
        if ((*p == '\'' || *p == '"') && p[kl + 1] == *p && memcmp(p + 1, key, kl) == 0) {
            const char *q = skip_ws(p + kl + 2, end);
            if (q < end && *q == ':') return skip_ws(q + 1, end);
            return NULL;
        }
    }
    return NULL;
}

static size_t dtype_size(int dt)
{
    switch (dt) {
    case LIP_DT_F32: case LIP_DT_I32: return 4;
    case LIP_DT_F64: case LIP_DT_I64: return 8;
    case LIP_DT_U8: return 1;
    case LIP_DT_I16: return 2;
    default: return 0;
    }
}

static int parse_descr(const char *p, const char *end, int *dt, lip_err *err)
{
    static const struct { const char *s; int dt; } tab[] = {
        {"<f4", LIP_DT_F32}, {"<f8", LIP_DT_F64}, {"|u1", LIP_DT_U8}, {"<u1", LIP_DT_U8},
        {"|i1", 0},          {"<i2", LIP_DT_I16}, {"<i4", LIP_DT_I32}, {"<i8", LIP_DT_I64},
    };
    if (!p || p >= end || (*p != '\'' && *p != '"'))
        return lip_err_set(err, LIP_EFORMAT, ".npy header: 'descr' missing or not a string");
    char q = *p++;
    const char *e = memchr(p, q, (size_t)(end - p));
    if (!e || e - p > 8) return lip_err_set(err, LIP_EFORMAT, ".npy header: bad 'descr'");
    for (size_t i = 0; i < LIP_ARRAY_LEN(tab); i++) {
        if ((size_t)(e - p) == strlen(tab[i].s) && memcmp(p, tab[i].s, (size_t)(e - p)) == 0 && tab[i].dt) {
            *dt = tab[i].dt;
            return 0;
        }
    }
    return lip_err_set(err, LIP_EUNSUPPORTED,
                       ".npy dtype '%.*s' is not supported (need <f4, <f8, |u1, <i2, <i4 or <i8)",
                       (int)(e - p), p);
}

int lip_npy_parse(const uint8_t *buf, size_t len, lip_npy *out, lip_err *err)
{
    memset(out, 0, sizeof *out);
    if (len < 10 || memcmp(buf, "\x93NUMPY", 6) != 0)
        return lip_err_set(err, LIP_EFORMAT, "not a .npy file (bad magic)");
    int major = buf[6];
    size_t hlen, hoff;
    if (major == 1) {
        hlen = (size_t)buf[8] | ((size_t)buf[9] << 8);
        hoff = 10;
    } else if (major == 2 || major == 3) {
        if (len < 12) return lip_err_set(err, LIP_EFORMAT, ".npy file truncated in its header");
        hlen = (size_t)buf[8] | ((size_t)buf[9] << 8) | ((size_t)buf[10] << 16) | ((size_t)buf[11] << 24);
        hoff = 12;
    } else {
        return lip_err_set(err, LIP_EUNSUPPORTED, ".npy version %d is not supported", major);
    }
    if (hlen > len - hoff) return lip_err_set(err, LIP_EFORMAT, ".npy header runs past the end of the file");
    const char *h = (const char *)buf + hoff, *hend = h + hlen;

    int dt = 0;
    int rc = parse_descr(find_key(h, hend, "descr"), hend, &dt, err);
    if (rc) return rc;

    const char *fo = find_key(h, hend, "fortran_order");
    bool fortran;
    if (fo && hend - fo >= 4 && memcmp(fo, "True", 4) == 0) fortran = true;
    else if (fo && hend - fo >= 5 && memcmp(fo, "False", 5) == 0) fortran = false;
    else return lip_err_set(err, LIP_EFORMAT, ".npy header: 'fortran_order' missing or not True/False");

    const char *sh = find_key(h, hend, "shape");
    if (!sh || sh >= hend || *sh != '(') return lip_err_set(err, LIP_EFORMAT, ".npy header: 'shape' missing or not a tuple");
    sh++;
    int ndim = 0;
    size_t count = 1;
    for (;;) {
        sh = skip_ws(sh, hend);
        if (sh >= hend) return lip_err_set(err, LIP_EFORMAT, ".npy header: unterminated shape");
        if (*sh == ')') break;
        if (*sh < '0' || *sh > '9') return lip_err_set(err, LIP_EFORMAT, ".npy header: bad shape");
        unsigned long long v = 0;
        while (sh < hend && *sh >= '0' && *sh <= '9') {
            v = v * 10 + (unsigned long long)(*sh++ - '0');
            if (v > (1ull << 40)) return lip_err_set(err, LIP_EFORMAT, ".npy header: shape too large");
        }
        if (ndim >= LIP_NPY_MAXDIM) return lip_err_set(err, LIP_EUNSUPPORTED, ".npy: more than %d dimensions", LIP_NPY_MAXDIM);
        out->shape[ndim++] = (size_t)v;
        if (v && count > (SIZE_MAX / 16) / v) return lip_err_set(err, LIP_EFORMAT, ".npy header: shape too large");
        count *= (size_t)v;
        sh = skip_ws(sh, hend);
        if (sh < hend && *sh == ',') sh++;
    }
    size_t esz = dtype_size(dt);
    size_t need = count * esz;
    size_t doff = hoff + hlen;
    if (len - doff < need)
        return lip_err_set(err, LIP_EFORMAT, ".npy data truncated: %zu bytes for %zu values of %zu bytes",
                           len - doff, count, esz);
    void *data = lip_aligned_alloc(need ? need : 1);
    if (!data) return lip_err_set(err, LIP_ENOMEM, "out of memory for .npy data (%zu bytes)", need);
    if (fortran && ndim > 1) {
        /* Column-major to row-major: iterate C-order destination index, compute source index. */
        size_t idx[LIP_NPY_MAXDIM] = {0};
        const uint8_t *src = buf + doff;
        for (size_t i = 0; i < count; i++) {
            size_t s = 0, stride = 1;
            for (int d = 0; d < ndim; d++) {
                s += idx[d] * stride;
                stride *= out->shape[d];
            }
            memcpy((uint8_t *)data + i * esz, src + s * esz, esz);
            for (int d = ndim - 1; d >= 0; d--) {
                if (++idx[d] < out->shape[d]) break;
                idx[d] = 0;
            }
        }
    } else if (need) {
        memcpy(data, buf + doff, need);
    }
    out->dtype = dt;
    out->ndim = ndim;
    out->count = count;
    out->data = data;
    return 0;
}

int lip_npy_load(const char *path, lip_npy *out, lip_err *err)
{
    uint8_t *buf;
    size_t len;
    memset(out, 0, sizeof *out);
    int rc = lip_file_read(path, 0, &buf, &len, err);
    if (rc) return rc;
    rc = lip_npy_parse(buf, len, out, err);
    lip_free(buf);
    if (rc) lip_err_prefix(err, "%s", path);
    return rc;
}

int lip_npy_to_f32(lip_npy *a, lip_err *err)
{
    if (a->dtype == LIP_DT_F32) return 0;
    float *f = lip_aligned_alloc(a->count * sizeof(float) + 1);
    if (!f) return lip_err_set(err, LIP_ENOMEM, "out of memory converting .npy to float32");
    for (size_t i = 0; i < a->count; i++) {
        switch (a->dtype) {
        case LIP_DT_F64: f[i] = (float)((const double *)a->data)[i]; break;
        case LIP_DT_U8: f[i] = ((const uint8_t *)a->data)[i]; break;
        case LIP_DT_I16: f[i] = ((const int16_t *)a->data)[i]; break;
        case LIP_DT_I32: f[i] = (float)((const int32_t *)a->data)[i]; break;
        case LIP_DT_I64: f[i] = (float)((const int64_t *)a->data)[i]; break;
        default: lip_free_aligned(f); return lip_err_set(err, LIP_EINTERNAL, "bad dtype");
        }
    }
    lip_free_aligned(a->data);
    a->data = f;
    a->dtype = LIP_DT_F32;
    return 0;
}

void lip_npy_free(lip_npy *a)
{
    if (!a) return;
    lip_free_aligned(a->data);
    memset(a, 0, sizeof *a);
}

int lip_npy_save_f32(const char *path, const float *data, int ndim, const size_t *shape, lip_err *err)
{
    char dict[256], shp[160] = "";
    size_t count = 1, o = 0;
    if (ndim < 1 || ndim > LIP_NPY_MAXDIM) return lip_err_set(err, LIP_EINVAL, "bad ndim %d", ndim);
    for (int d = 0; d < ndim; d++) {
        o += (size_t)snprintf(shp + o, sizeof shp - o, "%zu,%s", shape[d], (d + 1 < ndim) ? " " : "");
        count *= shape[d];
    }
    if (ndim > 1) shp[o - 1] = 0; /* "(a, b)" not "(a, b,)" */
    int dl = snprintf(dict, sizeof dict, "{'descr': '<f4', 'fortran_order': False, 'shape': (%s), }", shp);
    size_t total = 10 + (size_t)dl + 1;
    size_t pad = (64 - total % 64) % 64;
    size_t hlen = (size_t)dl + pad + 1;
    size_t bytes = 10 + hlen + count * sizeof(float);
    uint8_t *buf = lip_malloc(bytes);
    if (!buf) return lip_err_set(err, LIP_ENOMEM, "out of memory writing %s", path);
    memcpy(buf, "\x93NUMPY\x01\x00", 8);
    buf[8] = (uint8_t)(hlen & 0xff);
    buf[9] = (uint8_t)(hlen >> 8);
    memcpy(buf + 10, dict, (size_t)dl);
    memset(buf + 10 + dl, ' ', pad);
    buf[10 + hlen - 1] = '\n';
    memcpy(buf + 10 + hlen, data, count * sizeof(float));
    int rc = lip_file_write_atomic(path, buf, bytes, err);
    lip_free(buf);
    return rc;
}
