/* SPDX-License-Identifier: MIT */
/* tests/test.h: the tiny shared test harness. Each tests/test_<module>.c is its own program
 * that prints TAP ("ok N - name" / "not ok N - name") and ends with "N passed, N failed".
 *
 *   static void t_something(void) { CHECK(x == 1); CHECK_NEAR(a, b, 1e-5); }
 *   int main(void) { RUN(t_something); return test_summary(); }
 *
 * Paths: test_path("shared/reference/...") resolves the repo's sibling shared/ folder;
 * test_env("MODELS", "models") reads the directories the runner passes in. */
#ifndef LIP_TEST_H
#define LIP_TEST_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int test_failed_checks_;
static int test_passed_, test_failed_, test_skipped_, test_num_;
static const char *test_skip_reason_;

#define CHECK(cond)                                                                     \
    do {                                                                                \
        if (!(cond)) {                                                                  \
            printf("#   CHECK failed: %s (%s:%d)\n", #cond, __FILE__, __LINE__);        \
            test_failed_checks_++;                                                      \
        }                                                                               \
    } while (0)

#define CHECK_MSG(cond, ...)                                                            \
    do {                                                                                \
        if (!(cond)) {                                                                  \
            printf("#   CHECK failed: %s (%s:%d): ", #cond, __FILE__, __LINE__);        \
            printf(__VA_ARGS__);                                                        \
            printf("\n");                                                               \
            test_failed_checks_++;                                                      \
        }                                                                               \
    } while (0)

#define CHECK_NEAR(a, b, tol)                                                           \
    do {                                                                                \
        double a_ = (double)(a), b_ = (double)(b);                                      \
        if (!(fabs(a_ - b_) <= (tol))) {                                                \
            printf("#   CHECK_NEAR failed: %s=%.9g %s=%.9g tol=%g (%s:%d)\n", #a, a_, #b, b_, \
                   (double)(tol), __FILE__, __LINE__);                                  \
            test_failed_checks_++;                                                      \
        }                                                                               \
    } while (0)

#define CHECK_RC(expr)                                                                  \
    do {                                                                                \
        int rc_ = (expr);                                                               \
        if (rc_ != 0) {                                                                 \
            printf("#   CHECK_RC failed: %s returned %d (%s:%d)\n", #expr, rc_, __FILE__, __LINE__); \
            test_failed_checks_++;                                                      \
        }                                                                               \
    } while (0)

/* Marks the running test as skipped (e.g. a model file the runner did not provide). */
#define SKIP(reason)                                                                    \
    do {                                                                                \
        test_skip_reason_ = (reason);                                                   \
        return;                                                                         \
    } while (0)

#define RUN(fn) test_run_(#fn, fn)

static inline void test_run_(const char *name, void (*fn)(void))
{
    test_failed_checks_ = 0;
    test_skip_reason_ = NULL;
    fflush(stdout);
    fn();
    test_num_++;
    if (test_skip_reason_) {
        printf("ok %d - %s # SKIP %s\n", test_num_, name, test_skip_reason_);
        test_skipped_++;
    } else if (test_failed_checks_) {
        printf("not ok %d - %s\n", test_num_, name);
        test_failed_++;
    } else {
        printf("ok %d - %s\n", test_num_, name);
        test_passed_++;
    }
    fflush(stdout);
}

static inline int test_summary(void)
{
    printf("1..%d\n", test_num_);
    printf("%d passed, %d failed, %d skipped\n", test_passed_, test_failed_, test_skipped_);
    return test_failed_ ? 1 : 0;
}

static inline const char *test_env(const char *name, const char *dflt)
{
    const char *v = getenv(name);
    return v && *v ? v : dflt;
}

/* Resolves a path under the shared/ folder (SHARED_DIR, default ../shared from the repo). */
static inline const char *test_shared(const char *rel)
{
    static char buf[8][1024];
    static int k;
    char *b = buf[k++ & 7];
    snprintf(b, sizeof buf[0], "%s/%s", test_env("SHARED_DIR", "../shared"), rel);
    return b;
}

/* Resolves a path under MODELS (default "models"). */
static inline const char *test_model(const char *file)
{
    static char buf[8][1024];
    static int k;
    char *b = buf[k++ & 7];
    snprintf(b, sizeof buf[0], "%s/%s", test_env("MODELS", "models"), file);
    return b;
}

#endif
