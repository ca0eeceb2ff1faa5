/* SPDX-License-Identifier: MIT */
/* tests/test_core.c: core on its own: the error table, .npy reading (C and Fortran order, every
 * header field hostile), the float32 writer round trip, atomic writes, the thread pool under
 * concurrent callers, the bounded queue, checked parsing, the id rule, and the
 * allocation-failure hook. */
#include "core/core.h"
#include "test.h"

#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

static void t_errors(void)
{
    lip_err e = {0};
    CHECK(lip_err_set(&e, LIP_EINVAL, "batch %d", 0) == LIP_EINVAL);
    CHECK(strcmp(e.msg, "batch 0") == 0);
    lip_err_prefix(&e, "request");
    CHECK(strcmp(e.msg, "request: batch 0") == 0 && e.code == LIP_EINVAL);
    CHECK(strcmp(lip_err_grpc_name(LIP_ERANGE), "OUT_OF_RANGE") == 0);
    CHECK(strcmp(lip_err_grpc_name(LIP_EPERM), "PERMISSION_DENIED") == 0);
    CHECK(strcmp(lip_err_name(LIP_EMODEL), "LIP_EMODEL") == 0);
    CHECK(strcmp(lip_err_grpc_name(12345), "INTERNAL") == 0);
    CHECK(lip_err_set(NULL, LIP_EIO, "no target") == LIP_EIO);
}

static uint8_t *npy_bytes(const char *dict, const void *data, size_t n, size_t *len)
{
    size_t dl = strlen(dict), hl = dl + 1;
    *len = 10 + hl + n;
    uint8_t *b = malloc(*len);
    memcpy(b, "\x93NUMPY\x01\x00", 8);
    b[8] = (uint8_t)(hl & 0xff);
    b[9] = (uint8_t)(hl >> 8);
    memcpy(b + 10, dict, dl);
    b[10 + dl] = '\n';
    memcpy(b + 10 + hl, data, n);
    return b;
}

static void t_npy(void)
{
    lip_err err = {0};
    lip_npy a;
    /* Fortran order [2][3] stored column-major: logical A[r][c] = 10r + c. */
    double f[6] = {0, 10, 1, 11, 2, 12};
    size_t len;
    uint8_t *b = npy_bytes("{'descr': '<f8', 'fortran_order': True, 'shape': (2, 3), }", f, sizeof f, &len);
    CHECK_RC(lip_npy_parse(b, len, &a, &err));
    CHECK(a.ndim == 2 && a.shape[0] == 2 && a.shape[1] == 3 && a.dtype == LIP_DT_F64);
    for (int r = 0; r < 2; r++)
        for (int c = 0; c < 3; c++) CHECK(((double *)a.data)[r * 3 + c] == 10 * r + c);
    CHECK_RC(lip_npy_to_f32(&a, &err));
    CHECK(a.dtype == LIP_DT_F32 && ((float *)a.data)[4] == 11.0f);
    lip_npy_free(&a);
    free(b);
    /* Hostile headers. */
    const char *bad[] = {"{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }",
                         "{'descr': '<f4', 'shape': (2,), }",
                         "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999,), }",
                         "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }", /* data too short */
                         "{'descr': '<c8', 'fortran_order': False, 'shape': (1,), }",
                         "{'descr': '<f4', 'fortran_order': False, 'shape': (1,1,1,1,1,1,1,1,1), }",
                         "{'descr': '<f4', 'fortran_order': False, 'shape': 5, }"};
    float two[2] = {1, 2};
    for (size_t i = 0; i < LIP_ARRAY_LEN(bad); i++) {
        b = npy_bytes(bad[i], two, sizeof two, &len);
        int rc = lip_npy_parse(b, len, &a, &err);
        CHECK_MSG(rc != 0 && err.msg[0], "header %zu accepted", i);
        free(b);
    }
    CHECK(lip_npy_parse((const uint8_t *)"\x93NUMPY", 6, &a, &err) == LIP_EFORMAT);
    /* Header ending right after 'shape': (found by fuzzing: read one byte past an exact-size
     * buffer). The buffer is heap-allocated to its exact size so ASan sees any over-read. */
    {
        const char *h = "{'descr': '<f4', 'fortran_order': False, 'shape':";
        size_t hl = strlen(h), bl = 10 + hl;
        uint8_t *ex = malloc(bl);
        memcpy(ex, "\x93NUMPY\x01\x00", 8);
        ex[8] = (uint8_t)hl;
        ex[9] = 0;
        memcpy(ex + 10, h, hl);
        CHECK(lip_npy_parse(ex, bl, &a, &err) == LIP_EFORMAT);
        free(ex);
    }
    CHECK(lip_npy_parse((const uint8_t *)"garbage...", 10, &a, &err) == LIP_EFORMAT);
    /* Random bytes after a valid magic never crash. */
    unsigned s = 99;
    for (int it = 0; it < 3000; it++) {
        uint8_t buf[96];
        memcpy(buf, "\x93NUMPY\x01\x00", 8);
        for (size_t k = 8; k < sizeof buf; k++) buf[k] = (uint8_t)((s = s * 1103515245u + 12345u) >> 16);
        buf[8] = (uint8_t)(buf[8] % 90);
        buf[9] = 0;
        if (lip_npy_parse(buf, sizeof buf, &a, &err) == 0) lip_npy_free(&a);
    }
    /* Writer round trip. */
    char path[128];
    snprintf(path, sizeof path, "/tmp/lipsync-test-core-%ld.npy", (long)getpid());
    float v[6] = {1.5f, -2, 3, 4, 5, 6.25f};
    size_t shp[2] = {3, 2};
    CHECK_RC(lip_npy_save_f32(path, v, 2, shp, &err));
    CHECK_RC(lip_npy_load(path, &a, &err));
    CHECK(a.ndim == 2 && a.shape[0] == 3 && a.shape[1] == 2 && memcmp(a.data, v, sizeof v) == 0);
    lip_npy_free(&a);
    unlink(path);
    CHECK(lip_npy_load("/nonexistent/x.npy", &a, &err) == LIP_ENOTFOUND);
}

static void t_files(void)
{
    lip_err err = {0};
    char path[128];
    snprintf(path, sizeof path, "/tmp/lipsync-test-core-%ld.bin", (long)getpid());
    CHECK_RC(lip_file_write_atomic(path, "hello", 5, &err));
    uint8_t *d;
    size_t n;
    CHECK_RC(lip_file_read(path, 0, &d, &n, &err));
    CHECK(n == 5 && memcmp(d, "hello", 5) == 0 && d[5] == 0);
    lip_free(d);
    CHECK(lip_file_read(path, 3, &d, &n, &err) == LIP_EINVAL); /* over the limit */
    unlink(path);
    CHECK(lip_file_write_atomic("/proc/nonexistent/x", "a", 1, &err) == LIP_EIO);
    CHECK(lip_file_read("/tmp", 0, &d, &n, &err) == LIP_EIO); /* a directory */
    char buf[16];
    CHECK(lip_path_join(buf, sizeof buf, "abcdefgh", "ijklmnopq", &err) == LIP_EINVAL);
    CHECK_RC(lip_path_join(buf, sizeof buf, "a/", "b", &err));
    CHECK(strcmp(buf, "a/b") == 0);
}

static void square(void *arg, int i) { ((atomic_long *)arg)[i] = (long)i * i; }

typedef struct { lip_pool *p; int bad; } pool_user;

static void *pool_caller(void *arg)
{
    pool_user *u = arg;
    for (int it = 0; it < 50; it++) {
        atomic_long out[97];
        for (int i = 0; i < 97; i++) atomic_init(&out[i], -1);
        lip_pool_run(u->p, 97, square, out);
        for (int i = 0; i < 97; i++)
            if (atomic_load(&out[i]) != (long)i * i) u->bad++;
    }
    return NULL;
}

static void t_pool(void)
{
    lip_pool *p = lip_pool_new(3);
    CHECK(p && lip_pool_size(p) == 3);
    pool_user u[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        u[i] = (pool_user){.p = p};
        pthread_create(&th[i], NULL, pool_caller, &u[i]);
    }
    int bad = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        bad += u[i].bad;
    }
    CHECK_MSG(bad == 0, "%d wrong results from concurrent parallel-fors", bad);
    lip_pool_free(p);
    lip_pool_free(NULL);
}

static void t_queue(void)
{
    lip_queue *q = lip_queue_new(2);
    int a = 1, b = 2, c = 3;
    void *x;
    CHECK_RC(lip_queue_push(q, &a, 0));
    CHECK_RC(lip_queue_push(q, &b, 0));
    CHECK(lip_queue_push(q, &c, 0) == LIP_EBUSY);
    CHECK(lip_queue_push(q, &c, 20) == LIP_EBUSY);
    CHECK(lip_queue_len(q) == 2);
    CHECK(lip_queue_pop(q, &x, 0) == 0 && x == &a);
    CHECK(lip_queue_pop(q, &x, 0) == 0 && x == &b);
    CHECK(lip_queue_pop(q, &x, 10) == LIP_ETIMEOUT);
    lip_queue_push(q, &c, 0);
    lip_queue_close(q);
    CHECK(lip_queue_push(q, &a, 0) == LIP_ECANCELLED);
    CHECK(lip_queue_pop(q, &x, -1) == 0 && x == &c); /* drains before reporting closed */
    CHECK(lip_queue_pop(q, &x, -1) == LIP_ECANCELLED);
    lip_queue_free(q);
}

static void t_parsing_and_ids(void)
{
    long v;
    double d;
    CHECK(lip_parse_long("42", 0, 100, &v) == 0 && v == 42);
    CHECK(lip_parse_long("42x", 0, 100, &v) != 0);
    CHECK(lip_parse_long("101", 0, 100, &v) != 0);
    CHECK(lip_parse_long("", 0, 100, &v) != 0);
    CHECK(lip_parse_long("99999999999999999999999", 0, 100, &v) != 0);
    CHECK(lip_parse_double("1.5", &d) == 0 && d == 1.5);
    CHECK(lip_parse_double("nan", &d) != 0);
    CHECK(lip_valid_id("demo", 4) && lip_valid_id("a.b-c_9", 7));
    CHECK(!lip_valid_id(".", 1) && !lip_valid_id("..", 2) && !lip_valid_id("a/b", 3));
    CHECK(!lip_valid_id("", 0) && !lip_valid_id("x", 65));
    char s[4];
    CHECK(lip_strlcpy(s, "abcdef", sizeof s) == 6 && strcmp(s, "abc") == 0);
    float f[3] = {1, 2, 3};
    CHECK(lip_all_finite(f, 3));
    f[1] = NAN;
    CHECK(!lip_all_finite(f, 3));
    f[1] = INFINITY;
    CHECK(!lip_all_finite(f, 3));
}

static void t_alloc_failure(void)
{
    lip_alloc_fail_at(2);
    void *a = lip_malloc(8), *b = lip_malloc(8), *c = lip_malloc(8);
    CHECK(a && !b && c);
    lip_free(a);
    lip_free(c);
    /* The npy reader reports allocation failure instead of crashing. */
    float two[2] = {1, 2};
    size_t len;
    uint8_t *buf = npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", two, sizeof two, &len);
    lip_npy arr;
    lip_err err = {0};
    lip_alloc_fail_at(1);
    CHECK(lip_npy_parse(buf, len, &arr, &err) == LIP_ENOMEM);
    lip_alloc_fail_at(0);
    free(buf);
}

int main(void)
{
    RUN(t_errors);
    RUN(t_npy);
    RUN(t_files);
    RUN(t_pool);
    RUN(t_queue);
    RUN(t_parsing_and_ids);
    RUN(t_alloc_failure);
    return test_summary();
}
