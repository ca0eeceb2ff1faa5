/* SPDX-License-Identifier: MIT */
/* core/err.c: the error table, error messages, allocation wrappers, invariant failures,
 * checked number parsing and small string helpers. */
#include "core/core.h"

#include <errno.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct errinfo {
    int code;
    const char *name, *grpc, *text;
};
static const struct errinfo errtab[] = {
#define LIP_X_TAB(name, val, grpc, text) {val, #name, grpc, text},
    LIP_ERRORS(LIP_X_TAB)
#undef LIP_X_TAB
};

static const struct errinfo *errinfo_of(int code)
{
    for (size_t i = 0; i < LIP_ARRAY_LEN(errtab); i++)
        if (errtab[i].code == code) return &errtab[i];
    return NULL;
}

const char *lip_err_name(int code)
{
    const struct errinfo *e = errinfo_of(code);
    return e ? e->name : "LIP_E?";
}
const char *lip_err_text(int code)
{
    const struct errinfo *e = errinfo_of(code);
    return e ? e->text : "unknown error";
}
const char *lip_err_grpc_name(int code)
{
    const struct errinfo *e = errinfo_of(code);
    return e ? e->grpc : "INTERNAL";
}

int lip_err_set(lip_err *err, int code, const char *fmt, ...)
{
    if (err) {
        err->code = code;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return code;
}

int lip_err_prefix(lip_err *err, const char *fmt, ...)
{
    if (!err) return LIP_EINTERNAL;
    char pre[LIP_ERRMSG_MAX], old[LIP_ERRMSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(pre, sizeof pre, fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof old);
    size_t pl = strlen(pre);
    if (pl > sizeof err->msg - 3) pl = sizeof err->msg - 3;
    memcpy(err->msg, pre, pl);
    memcpy(err->msg + pl, ": ", 2);
    lip_strlcpy(err->msg + pl + 2, old, sizeof err->msg - pl - 2);
    return err->code;
}

void lip_err_clear(lip_err *err)
{
    if (err) {
        err->code = 0;
        err->msg[0] = 0;
    }
}

_Noreturn void lip_assert_fail(const char *expr, const char *file, int line)
{
    fprintf(stderr, "lipsync: invariant broken: %s (%s:%d)\n", expr, file, line);
    fflush(stderr);
    abort();
}

/* ---- allocation with a fail-the-Nth hook (curl's torture tests) ---------------------------- */
static atomic_long alloc_countdown;

static bool alloc_should_fail(void)
{
    long v = atomic_load_explicit(&alloc_countdown, memory_order_relaxed);
    if (v <= 0) return false;
    return atomic_fetch_sub(&alloc_countdown, 1) == 1;
}

void lip_alloc_fail_at(long nth) { atomic_store(&alloc_countdown, nth); }

void *lip_malloc(size_t n) { return alloc_should_fail() ? NULL : malloc(n ? n : 1); }
void *lip_calloc(size_t c, size_t s) { return alloc_should_fail() ? NULL : calloc(c ? c : 1, s ? s : 1); }
void *lip_realloc(void *p, size_t n) { return alloc_should_fail() ? NULL : realloc(p, n ? n : 1); }
void lip_free(void *p) { free(p); }
char *lip_strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = lip_malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}
void *lip_aligned_alloc(size_t n)
{
    if (alloc_should_fail()) return NULL;
    void *p = NULL;
    if (posix_memalign(&p, 64, n ? n : 64) != 0) return NULL;
    return p;
}
void lip_free_aligned(void *p) { free(p); }

/* ---- parsing and strings --------------------------------------------------------------------- */
int lip_parse_long(const char *s, long min, long max, long *out)
{
    if (!s || !*s) return LIP_EINVAL;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < min || v > max) return LIP_EINVAL;
    *out = v;
    return 0;
}

int lip_parse_double(const char *s, double *out)
{
    if (!s || !*s) return LIP_EINVAL;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *end || !isfinite(v)) return LIP_EINVAL;
    *out = v;
    return 0;
}

size_t lip_strlcpy(char *dst, const char *src, size_t n)
{
    size_t len = strlen(src);
    if (n) {
        size_t c = len < n - 1 ? len : n - 1;
        memcpy(dst, src, c);
        dst[c] = 0;
    }
    return len;
}

bool lip_all_finite(const float *v, size_t n)
{
    /* Branch-free accumulation: any NaN/Inf makes x*0 NaN. */
    float acc = 0.0f;
    for (size_t i = 0; i < n; i++) acc += v[i] * 0.0f;
    return acc == 0.0f;
}

bool lip_valid_id(const char *id, size_t len)
{
    if (!id || len < 1 || len > 64) return false;
    if ((len == 1 && id[0] == '.') || (len == 2 && id[0] == '.' && id[1] == '.')) return false;
    for (size_t i = 0; i < len; i++) {
        char c = id[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == '-'))
            return false;
    }
    return true;
}
