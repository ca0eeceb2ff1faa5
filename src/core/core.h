/* SPDX-License-Identifier: MIT */
/* core: what every other module stands on. Error codes and messages (one table), logging,
 * monotonic time, whole-file I/O with atomic writes, NumPy .npy files, a fixed thread pool with
 * a parallel-for, a bounded blocking queue, and always-on invariant checks.
 *
 * Conventions (docs/ARCHITECTURE.md): functions return 0 or a negative LIP_E* code and fill a
 * caller-provided lip_err (which may be NULL); objects are opaque with _new/_free; _free(NULL)
 * is a no-op. Core's sub-areas keep their own short prefixes (lip_err_, lip_log_, lip_time_,
 * lip_file_, lip_npy_, lip_pool_, lip_queue_). */
#ifndef LIP_CORE_H
#define LIP_CORE_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- errors ------------------------------------------------------------------------------- */
/* X(name, value, gRPC status name, text). The gRPC mapping lives in rpc/, keyed on these. */
#define LIP_ERRORS(X)                                                                   \
    X(LIP_OK, 0, "OK", "success")                                                       \
    X(LIP_EINVAL, -1, "INVALID_ARGUMENT", "invalid argument")                           \
    X(LIP_ENOMEM, -2, "RESOURCE_EXHAUSTED", "out of memory")                            \
    X(LIP_EIO, -3, "INTERNAL", "input/output error")                                    \
    X(LIP_ENOTFOUND, -4, "NOT_FOUND", "not found")                                      \
    X(LIP_EFORMAT, -5, "INVALID_ARGUMENT", "malformed data")                            \
    X(LIP_EUNSUPPORTED, -6, "INVALID_ARGUMENT", "unsupported format")                   \
    X(LIP_ERANGE, -7, "OUT_OF_RANGE", "out of range")                                   \
    X(LIP_EPRECOND, -8, "FAILED_PRECONDITION", "failed precondition")                   \
    X(LIP_EBUSY, -9, "RESOURCE_EXHAUSTED", "resource exhausted")                        \
    X(LIP_ETIMEOUT, -10, "DEADLINE_EXCEEDED", "deadline exceeded")                      \
    X(LIP_ECANCELLED, -11, "CANCELLED", "cancelled")                                    \
    X(LIP_EENGINE, -12, "INTERNAL", "inference engine failure")                         \
    X(LIP_EPERM, -13, "PERMISSION_DENIED", "permission denied")                         \
    X(LIP_EUNAVAIL, -14, "UNAVAILABLE", "unavailable")                                  \
    X(LIP_EMODEL, -15, "FAILED_PRECONDITION", "model file unusable")                    \
    X(LIP_EINTERNAL, -16, "INTERNAL", "internal error")

enum lip_errcode {
#define LIP_X_ENUM(name, val, grpc, text) name = val,
    LIP_ERRORS(LIP_X_ENUM)
#undef LIP_X_ENUM
};

#define LIP_ERRMSG_MAX 512

/* An error: code + human text naming what was wrong. Zero-initialise (lip_err e = {0}). */
typedef struct lip_err {
    int code;
    char msg[LIP_ERRMSG_MAX];
} lip_err;

/* Sets err (if not NULL) to code and a printf-formatted message; returns code. */
int lip_err_set(lip_err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Prefixes the message already in err with "prefix: " (keeps the code); returns err->code. */
int lip_err_prefix(lip_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void lip_err_clear(lip_err *err);
/* Static strings: the enum name ("LIP_EINVAL"), a short text, and the gRPC status name. */
const char *lip_err_name(int code);
const char *lip_err_text(int code);
const char *lip_err_grpc_name(int code);

/* ---- invariants ----------------------------------------------------------------------------- */
/* For broken invariants only (never input, config or model files): always compiled in. */
#define LIP_ASSERT(cond)                                                                \
    do {                                                                                \
        if (!(cond)) lip_assert_fail(#cond, __FILE__, __LINE__);                        \
    } while (0)
_Noreturn void lip_assert_fail(const char *expr, const char *file, int line);

#define LIP_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define LIP_MIN(a, b) ((a) < (b) ? (a) : (b))
#define LIP_MAX(a, b) ((a) > (b) ? (a) : (b))

/* ---- allocation ----------------------------------------------------------------------------- */
/* Aborting allocators are not used: these return NULL on failure like malloc, but count
 * allocations so tests can make the Nth one fail (lip_alloc_fail_at). */
void *lip_malloc(size_t n);
void *lip_calloc(size_t count, size_t size);
void *lip_realloc(void *p, size_t n);
char *lip_strdup(const char *s);
void lip_free(void *p);
/* Test hook: the nth allocation from now (1-based) fails; 0 disables. Not thread-safe. */
void lip_alloc_fail_at(long nth);
/* 64-byte aligned allocation for tensors; free with lip_free_aligned. */
void *lip_aligned_alloc(size_t n);
void lip_free_aligned(void *p);

/* ---- logging -------------------------------------------------------------------------------- */
enum lip_log_level { LIP_LOG_ERROR = 0, LIP_LOG_WARN, LIP_LOG_INFO, LIP_LOG_DEBUG };
extern int lip_log_level_;
void lip_log_set_level(int level);
int lip_log_parse_level(const char *s); /* "error".."debug" -> level, or -1 */
void lip_log_set_role(const char *role); /* e.g. "serve/monolithic"; copied */
void lip_log_set_json(bool json);
void lip_log_write(int level, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Arguments are evaluated only when the level is enabled. */
#define LIP_LOG(level, ...)                                                             \
    do {                                                                                \
        if ((level) <= lip_log_level_) lip_log_write((level), __FILE__, __LINE__, __VA_ARGS__); \
    } while (0)
#define lip_log_error(...) LIP_LOG(LIP_LOG_ERROR, __VA_ARGS__)
#define lip_log_warn(...) LIP_LOG(LIP_LOG_WARN, __VA_ARGS__)
#define lip_log_info(...) LIP_LOG(LIP_LOG_INFO, __VA_ARGS__)
#define lip_log_debug(...) LIP_LOG(LIP_LOG_DEBUG, __VA_ARGS__)

/* ---- time ----------------------------------------------------------------------------------- */
double lip_time_ms(void);       /* monotonic milliseconds, arbitrary origin */
int64_t lip_time_unix_ms(void); /* wall clock, ms since the Unix epoch */
void lip_time_sleep_ms(double ms);

/* ---- files ---------------------------------------------------------------------------------- */
/* Reads a whole file into a new buffer (caller frees with lip_free). A NUL is appended after the
 * data (not counted in *len) so text can be parsed in place. max_len 0 means no limit. */
int lip_file_read(const char *path, size_t max_len, uint8_t **data, size_t *len, lip_err *err);
/* Writes path atomically: a temporary file in the same directory, fsync, rename. On failure
 * nothing is left at path that looks complete. */
int lip_file_write_atomic(const char *path, const void *data, size_t len, lip_err *err);
bool lip_file_exists(const char *path);
bool lip_dir_exists(const char *path);
/* mkdir -p. */
int lip_dir_make(const char *path, lip_err *err);
/* Joins a and b with one '/', into out (size n); LIP_EINVAL if it does not fit. */
int lip_path_join(char *out, size_t n, const char *a, const char *b, lip_err *err);

/* ---- NumPy .npy ----------------------------------------------------------------------------- */
enum lip_dtype { LIP_DT_F32 = 1, LIP_DT_F64, LIP_DT_U8, LIP_DT_I16, LIP_DT_I32, LIP_DT_I64 };
#define LIP_NPY_MAXDIM 8
typedef struct lip_npy {
    int dtype;                    /* enum lip_dtype */
    int ndim;
    size_t shape[LIP_NPY_MAXDIM];
    size_t count;                 /* product of shape */
    void *data;                   /* C order always (Fortran-order files are transposed on load) */
} lip_npy;
/* Parses an in-memory .npy (version 1.0, 2.0 or 3.0; little-endian numeric dtypes above).
 * Every header field is checked; the data is copied. Free with lip_npy_free. */
int lip_npy_parse(const uint8_t *buf, size_t len, lip_npy *out, lip_err *err);
int lip_npy_load(const char *path, lip_npy *out, lip_err *err);
/* Converts in place to float32 (from f64/u8/i16/i32/i64). */
int lip_npy_to_f32(lip_npy *a, lip_err *err);
void lip_npy_free(lip_npy *a);
/* Writes a float32 C-order array (atomically). */
int lip_npy_save_f32(const char *path, const float *data, int ndim, const size_t *shape,
                     lip_err *err);

/* ---- thread pool (parallel-for) ------------------------------------------------------------- */
typedef struct lip_pool lip_pool;
typedef void (*lip_task_fn)(void *arg, int index);
/* nthreads <= 0: one per online CPU. Returns NULL on failure. */
lip_pool *lip_pool_new(int nthreads);
void lip_pool_free(lip_pool *p);
int lip_pool_size(const lip_pool *p);
/* Runs fn(arg, i) for i in [0, n) on the pool (the caller's thread helps) and returns when all
 * are done. Thread-safe: concurrent callers share the workers. */
void lip_pool_run(lip_pool *p, int n, lip_task_fn fn, void *arg);
int lip_cpu_count(void);

/* ---- bounded blocking queue (MPMC) ---------------------------------------------------------- */
typedef struct lip_queue lip_queue;
lip_queue *lip_queue_new(size_t capacity);
void lip_queue_free(lip_queue *q);
/* 0 on success; LIP_EBUSY if full and timeout_ms elapsed (0 = don't wait, <0 = forever);
 * LIP_ECANCELLED if the queue was closed. */
int lip_queue_push(lip_queue *q, void *item, int timeout_ms);
/* Blocks until an item arrives (returns 0) or the queue is closed and empty (LIP_ECANCELLED)
 * or timeout_ms elapses (LIP_ETIMEOUT; <0 = forever). */
int lip_queue_pop(lip_queue *q, void **item, int timeout_ms);
void lip_queue_close(lip_queue *q);
size_t lip_queue_len(lip_queue *q);

/* ---- misc ----------------------------------------------------------------------------------- */
/* Checked strtol/strtod: the whole string must parse and fit. */
int lip_parse_long(const char *s, long min, long max, long *out);
int lip_parse_double(const char *s, double *out);
/* Copies at most n-1 bytes and NUL-terminates; returns strlen(src) (truncated if >= n). */
size_t lip_strlcpy(char *dst, const char *src, size_t n);
/* True if every float is finite. */
bool lip_all_finite(const float *v, size_t n);
/* DATA.md avatar id rule: 1-64 chars [A-Za-z0-9_.-], not "." or "..". */
bool lip_valid_id(const char *id, size_t len);

#endif
