/* SPDX-License-Identifier: MIT */
/* tests/test_metrics.c: the metrics registry (exact counts under concurrent updates, histogram
 * quantiles against known data, the Prometheus text format parsed strictly, error paths,
 * allocation failure while rendering) and the HTTP endpoint's start-up errors.
 *
 * `test_metrics --serve PORT SECONDS [READY_FILE]` is a helper mode for
 * tests/py/test_metrics_http.py: it serves a registry with sample data on 127.0.0.1:PORT (0 =
 * any free port; prints "port N"), flips /readyz to 200 once READY_FILE exists, and exits 0 after
 * SECONDS or on SIGTERM/SIGINT, stopping the server cleanly. */
#include "metrics/metrics.h"
#include "test.h"

#include <ctype.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <unistd.h>

/* ---- a strict parser for the exposition format ---------------------------------------------- */
/* Checks one sample line: name, optional {k="v",...} with escapes \\ \" \n only, one space,
 * a value (float, +Inf, -Inf or NaN), end of line. Returns the name length or -1. */
static int parse_sample(const char *line, char *name, size_t nname, double *value)
{
    const char *p = line;
    size_t n = 0;
    if (!(isalpha((unsigned char)*p) || *p == '_' || *p == ':')) return -1;
    while (isalnum((unsigned char)*p) || *p == '_' || *p == ':') {
        if (n + 1 < nname) name[n++] = *p;
        p++;
    }
    name[n] = 0;
    if (*p == '{') {
        p++;
        for (;;) {
            if (!(isalpha((unsigned char)*p) || *p == '_')) return -1;
            while (isalnum((unsigned char)*p) || *p == '_') p++;
            if (*p++ != '=') return -1;
            if (*p++ != '"') return -1;
            while (*p && *p != '"') {
                if (*p == '\n') return -1;
                if (*p == '\\') {
                    p++;
                    if (*p != '\\' && *p != '"' && *p != 'n') return -1;
                }
                p++;
            }
            if (*p++ != '"') return -1;
            if (*p == ',') {
                p++;
                continue;
            }
            if (*p++ != '}') return -1;
            break;
        }
    }
    if (*p++ != ' ' || *p == ' ' || *p == 0) return -1;
    if (strcmp(p, "+Inf") == 0) *value = INFINITY;
    else if (strcmp(p, "-Inf") == 0) *value = -INFINITY;
    else if (strcmp(p, "NaN") == 0) *value = NAN;
    else if (lip_parse_double(p, value) != 0) return -1;
    return (int)n;
}

/* Parses a whole exposition: every line is # HELP, # TYPE or a sample of the family last typed;
 * returns the number of samples or -1 (and prints the bad line). */
static int parse_exposition(const char *text)
{
    char family[256] = "", type[32] = "";
    int samples = 0;
    const char *p = text;
    char line[2048];
    while (*p) {
        const char *e = strchr(p, '\n');
        if (!e) {
            printf("#   last line has no newline\n");
            return -1;
        }
        size_t n = (size_t)(e - p);
        if (n >= sizeof line) return -1;
        memcpy(line, p, n);
        line[n] = 0;
        p = e + 1;
        if (strncmp(line, "# HELP ", 7) == 0) continue;
        if (strncmp(line, "# TYPE ", 7) == 0) {
            if (sscanf(line + 7, "%255s %31s", family, type) != 2) return -1;
            if (strcmp(type, "counter") && strcmp(type, "gauge") && strcmp(type, "histogram"))
                return -1;
            continue;
        }
        char name[256];
        double v;
        if (parse_sample(line, name, sizeof name, &v) < 0) {
            printf("#   bad sample line: '%s'\n", line);
            return -1;
        }
        /* A sample belongs to the family announced by the last # TYPE. */
        size_t fl = strlen(family);
        bool ok = strncmp(name, family, fl) == 0 &&
                  (name[fl] == 0 || (strcmp(type, "histogram") == 0 &&
                                     (!strcmp(name + fl, "_bucket") ||
                                      !strcmp(name + fl, "_sum") || !strcmp(name + fl, "_count"))));
        if (!ok) {
            printf("#   sample '%s' outside its family '%s'\n", name, family);
            return -1;
        }
        samples++;
    }
    return samples;
}

/* ---- concurrency ---------------------------------------------------------------------------- */
#define THREADS 8
#define PER_THREAD 100000

struct hammer {
    lip_counter *c;
    lip_gauge *g;
    lip_histogram *h;
};

static void *hammer_fn(void *arg)
{
    struct hammer *hm = arg;
    for (int i = 0; i < PER_THREAD; i++) {
        lip_counter_inc(hm->c);
        lip_gauge_add(hm->g, 1.0);
        lip_histogram_observe(hm->h, 0.001);
    }
    return NULL;
}

static void t_concurrent_exact(void)
{
    lip_metrics *m = lip_metrics_new();
    lip_err e = {0};
    CHECK_RC(lip_metrics_register_std(m, &e));
    const char *lv[] = {"Infer", "OK"};
    const char *st[] = {"unet"};
    struct hammer hm = {
        .c = lip_metrics_counter(m, LIP_METRIC_REQUESTS, lv, &e),
        .g = lip_metrics_gauge(m, LIP_METRIC_QUEUE_DEPTH, NULL, &e),
        .h = lip_metrics_histogram(m, LIP_METRIC_STAGE_SECONDS, st, &e),
    };
    CHECK(hm.c && hm.g && hm.h);
    pthread_t th[THREADS];
    for (int i = 0; i < THREADS; i++) pthread_create(&th[i], NULL, hammer_fn, &hm);
    for (int i = 0; i < THREADS; i++) pthread_join(th[i], NULL);
    CHECK(lip_counter_value(hm.c) == (uint64_t)THREADS * PER_THREAD);
    /* Integers up to 2^53 are exact in a double, so the CAS-loop gauge must be exact too. */
    CHECK(lip_gauge_value(hm.g) == (double)THREADS * PER_THREAD);
    lip_hist_snapshot s;
    lip_histogram_snapshot(hm.h, &s);
    CHECK(s.count == (uint64_t)THREADS * PER_THREAD);
    /* The sum adds 800,000 copies of 0.001: float rounding accumulates at most ~n * eps * sum
     * = 8e5 * 1.1e-16 * 800 ~ 7e-8 relative to 800; 1e-6 absolute is a safe bound. */
    CHECK_NEAR(s.sum, THREADS * PER_THREAD * 0.001, 1e-6);
    /* Looking the same series up again returns the same object. */
    CHECK(lip_metrics_counter(m, LIP_METRIC_REQUESTS, lv, &e) == hm.c);
    lip_metrics_free(m);
}

/* ---- histogram ------------------------------------------------------------------------------ */
static int bucket_of(const lip_hist_snapshot *s, double v)
{
    for (int i = 0; i < s->nbuckets; i++)
        if (v <= s->upper[i]) return i;
    return s->nbuckets;
}

static void t_histogram_quantiles(void)
{
    lip_metrics *m = lip_metrics_new();
    lip_err e = {0};
    CHECK_RC(lip_metrics_register_histogram(m, "t_seconds", "test", NULL, 0, 0, &e));
    lip_histogram *h = lip_metrics_histogram(m, "t_seconds", NULL, &e);
    CHECK(h != NULL);
    /* Known data: 1 ms .. 1000 ms in 1 ms steps, so the exact q-quantile is about q seconds. */
    for (int i = 1; i <= 1000; i++) lip_histogram_observe(h, i * 1e-3);
    lip_hist_snapshot s;
    lip_histogram_snapshot(h, &s);
    CHECK(s.count == 1000);
    CHECK(s.nbuckets == 48);
    CHECK_NEAR(s.upper[0], 1e-5, 1e-18);
    /* Bounds grow by sqrt(2) per bucket. */
    for (int i = 1; i < s.nbuckets; i++) CHECK_NEAR(s.upper[i] / s.upper[i - 1], M_SQRT2, 1e-12);
    CHECK_NEAR(s.sum, 500.5, 1e-9); /* 1000 adds of values <= 1: error ~1e-13 */
    const double qs[] = {0.5, 0.9, 0.99, 0.999};
    for (size_t k = 0; k < LIP_ARRAY_LEN(qs); k++) {
        double exact = ceil(qs[k] * 1000) * 1e-3; /* the ceil(q*n)-th smallest value */
        double est = lip_hist_quantile(&s, qs[k]);
        /* The contract: the estimate lies in the same bucket as the true value. */
        CHECK_MSG(bucket_of(&s, est) == bucket_of(&s, exact), "q=%g est=%g exact=%g", qs[k], est,
                  exact);
    }
    /* Bucket placement at exact bounds: a value equal to a bound is in that bucket (le). */
    lip_metrics_register_histogram(m, "edge_seconds", "test", NULL, 0, 0, &e);
    lip_histogram *h2 = lip_metrics_histogram(m, "edge_seconds", NULL, &e);
    for (int i = 0; i < s.nbuckets; i++) lip_histogram_observe(h2, s.upper[i]);
    lip_histogram_observe(h2, 1e9);  /* +Inf */
    lip_histogram_observe(h2, -1);   /* first bucket */
    lip_histogram_observe(h2, NAN);  /* ignored */
    lip_hist_snapshot s2;
    lip_histogram_snapshot(h2, &s2);
    CHECK(s2.counts[0] == 2);
    for (int i = 1; i < s2.nbuckets; i++) CHECK_MSG(s2.counts[i] == 1, "bucket %d", i);
    CHECK(s2.counts[s2.nbuckets] == 1);
    CHECK(s2.count == (uint64_t)s2.nbuckets + 2);
    CHECK(lip_hist_quantile(&s2, 1.0) == s2.upper[s2.nbuckets - 1]);
    lip_hist_snapshot empty;
    lip_histogram_snapshot(NULL, &empty);
    CHECK(lip_hist_quantile(&empty, 0.5) == 0.0);
    lip_metrics_free(m);
}

/* ---- text format ---------------------------------------------------------------------------- */
static void t_text_format(void)
{
    lip_metrics *m = lip_metrics_new();
    lip_err e = {0};
    CHECK_RC(lip_metrics_register_std(m, &e));
    CHECK_RC(lip_metrics_register_std(m, &e)); /* idempotent */
    const char *odd[] = {"we\"ird\\rpc\nname", "OK"};
    lip_counter_add(lip_metrics_counter(m, LIP_METRIC_REQUESTS, odd, &e), 3);
    const char *st[] = {"encode"};
    lip_histogram *h = lip_metrics_histogram(m, LIP_METRIC_STAGE_SECONDS, st, &e);
    lip_histogram_observe(h, 0.004);
    lip_histogram_observe(h, 0.02);
    lip_gauge_set(lip_metrics_gauge(m, LIP_METRIC_QUEUE_DEPTH, NULL, &e), 5);
    lip_metrics_set_ready(m, true);

    char *txt;
    size_t len;
    CHECK_RC(lip_metrics_render(m, &txt, &len, &e));
    CHECK(txt && strlen(txt) == len);
    int n = parse_exposition(txt);
    /* 8 plain gauges/counters + the two heap gauges (absent when malloc is not glibc's, as
     * under ASan) + build info + 1 request counter + 49 buckets + _sum + _count */
    struct mallinfo2 mi = mallinfo2();
    int want = 61 + (mi.uordblks + mi.hblkhd ? 2 : 0);
    CHECK_MSG(n == want, "%d samples, expected %d", n, want);
    CHECK(strstr(txt, "lipsync_requests_total{rpc=\"we\\\"ird\\\\rpc\\nname\",code=\"OK\"} 3\n"));
    CHECK(strstr(txt, "# TYPE lipsync_stage_seconds histogram\n"));
    CHECK(strstr(txt, "lipsync_stage_seconds_bucket{stage=\"encode\",le=\"+Inf\"} 2\n"));
    CHECK(strstr(txt, "lipsync_stage_seconds_count{stage=\"encode\"} 2\n"));
    CHECK(strstr(txt, "lipsync_stage_seconds_sum{stage=\"encode\"} 0.024"));
    CHECK(strstr(txt, "lipsync_queue_depth 5\n"));
    CHECK(strstr(txt, "lipsync_ready 1\n"));
    CHECK(strstr(txt, "lipsync_build_info{version=\"" LIP_VERSION "\""));
    /* Buckets are cumulative and never decrease. */
    const char *p = txt;
    double prev = 0;
    int nb = 0;
    while ((p = strstr(p, "lipsync_stage_seconds_bucket{"))) {
        const char *sp = strchr(p, ' ');
        double v = strtod(sp + 1, NULL);
        CHECK(v >= prev);
        prev = v;
        nb++;
        p = sp;
    }
    CHECK(nb == 49);
    /* RSS comes from /proc/self/statm at scrape time; this process uses at least 1 MiB. */
    lip_gauge *rss = lip_metrics_gauge(m, LIP_METRIC_RSS, NULL, &e);
    CHECK(lip_gauge_value(rss) > 1 << 20);
    CHECK(lip_metrics_rss_bytes() > 1 << 20);
    lip_free(txt);

    /* An empty registry renders as an empty string. */
    lip_metrics *m2 = lip_metrics_new();
    CHECK_RC(lip_metrics_render(m2, &txt, &len, &e));
    CHECK(txt && len == 0 && txt[0] == 0);
    lip_free(txt);
    lip_metrics_free(m2);
    lip_metrics_free(m);
}

/* The parser itself must reject what is not the format, or the test above proves nothing. */
static void t_parser_rejects(void)
{
    CHECK(parse_exposition("a 1\n") == -1); /* every sample follows its # TYPE */
    CHECK(parse_exposition("# TYPE a counter\na 1\n") == 1);
    CHECK(parse_exposition("# TYPE a counter\na{x=\"1\"} 1\n") == 1);
    CHECK(parse_exposition("# TYPE a counter\na{x=1} 1\n") == -1);
    CHECK(parse_exposition("# TYPE a counter\na{x=\"1\"}  1\n") == -1);
    CHECK(parse_exposition("# TYPE a counter\na 1") == -1);
    CHECK(parse_exposition("# TYPE a counter\nb 1\n") == -1);
    CHECK(parse_exposition("# TYPE a counter\na{x=\"\\q\"} 1\n") == -1);
    CHECK(parse_exposition("# TYPE a counter\na 1x\n") == -1);
    CHECK(parse_exposition("# TYPE a gauge\na_sum 1\n") == -1);
}

/* ---- errors --------------------------------------------------------------------------------- */
static void t_errors(void)
{
    lip_metrics *m = lip_metrics_new();
    lip_err e = {0};
    CHECK(lip_metrics_register(m, "9bad", LIP_METRIC_COUNTER, "h", NULL, &e) == LIP_EINVAL);
    CHECK(strstr(e.msg, "9bad"));
    CHECK(lip_metrics_register(m, "a-b", LIP_METRIC_COUNTER, "h", NULL, &e) == LIP_EINVAL);
    CHECK(lip_metrics_register(m, "ok", 7, "h", NULL, &e) == LIP_EINVAL);
    CHECK(lip_metrics_register(m, "ok", LIP_METRIC_COUNTER, "two\nlines", NULL, &e) ==
          LIP_EINVAL);
    CHECK(lip_metrics_register(m, "ok", LIP_METRIC_COUNTER, "h", "a,,b", &e) == LIP_EINVAL);
    CHECK(lip_metrics_register(m, "ok", LIP_METRIC_COUNTER, "h", "__x", &e) == LIP_EINVAL);
    CHECK(lip_metrics_register(m, "ok", LIP_METRIC_COUNTER, "h", "a,a", &e) == LIP_EINVAL);
    CHECK(strstr(e.msg, "twice"));
    CHECK(lip_metrics_register(m, "ok", LIP_METRIC_HISTOGRAM, "h", "le", &e) == LIP_EINVAL);
    CHECK(lip_metrics_register_histogram(m, "hh", "h", NULL, -1, 10, &e) == LIP_EINVAL);
    CHECK(lip_metrics_register_histogram(m, "hh", "h", NULL, 1, 65, &e) == LIP_EINVAL);
    CHECK(strstr(e.msg, "65"));
    CHECK_RC(lip_metrics_register(m, "ok", LIP_METRIC_COUNTER, "h", "a,b", &e));
    CHECK_RC(lip_metrics_register(m, "ok", LIP_METRIC_COUNTER, "h", "a,b", &e));
    CHECK(lip_metrics_register(m, "ok", LIP_METRIC_GAUGE, "h", "a,b", &e) == LIP_EINVAL);
    CHECK(lip_metrics_register(m, "ok", LIP_METRIC_COUNTER, "h", "b,a", &e) == LIP_EINVAL);

    CHECK(lip_metrics_counter(m, "nope", NULL, &e) == NULL && e.code == LIP_ENOTFOUND);
    CHECK(lip_metrics_gauge(m, "ok", (const char *[]){"1", "2"}, &e) == NULL);
    CHECK(strstr(e.msg, "not a gauge"));
    CHECK(lip_metrics_counter(m, "ok", (const char *[]){"1", NULL}, &e) == NULL);
    CHECK(strstr(e.msg, "expected 2 label values, got 1"));
    CHECK(lip_metrics_counter(m, "ok", NULL, &e) == NULL);
    char big[LIP_METRICS_MAX_LABEL_VALUE + 2];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = 0;
    CHECK(lip_metrics_counter(m, "ok", (const char *[]){big, "2"}, &e) == NULL);
    /* Cardinality is bounded: series past the limit are refused, not allocated. */
    char v[32];
    int made = 0;
    for (int i = 0; i < LIP_METRICS_MAX_SERIES + 5; i++) {
        snprintf(v, sizeof v, "%d", i);
        if (lip_metrics_counter(m, "ok", (const char *[]){v, "x"}, &e)) made++;
    }
    CHECK(made == LIP_METRICS_MAX_SERIES);
    CHECK(e.code == LIP_EBUSY && strstr(e.msg, "limit"));
    /* NULL series are no-ops on the hot path and read as zero. */
    lip_counter_inc(NULL);
    lip_gauge_set(NULL, 1);
    lip_gauge_add(NULL, 1);
    lip_histogram_observe(NULL, 1);
    CHECK(lip_counter_value(NULL) == 0 && lip_gauge_value(NULL) == 0);
    lip_metrics_free(m);
    lip_metrics_free(NULL);
}

/* Every allocation in register/lookup/render may fail: each failure is an error, not a crash or
 * a leak (ASan/LSan builds check the latter). */
static void t_alloc_failure(void)
{
    int failures = 0;
    for (long nth = 1; nth < 200; nth++) {
        lip_metrics *m = lip_metrics_new();
        if (!m) continue;
        lip_err e = {0};
        lip_alloc_fail_at(nth);
        int rc = lip_metrics_register_std(m, &e);
        char *txt = NULL;
        size_t len = 0;
        if (rc == 0) rc = lip_metrics_render(m, &txt, &len, &e);
        lip_alloc_fail_at(0);
        if (rc) {
            failures++;
            CHECK_MSG(e.code == rc && e.msg[0], "nth=%ld rc=%d", nth, rc);
            CHECK(txt == NULL);
        } else {
            CHECK(parse_exposition(txt) > 0);
        }
        lip_free(txt);
        lip_metrics_free(m);
    }
    CHECK(failures > 10); /* the sweep did reach the allocations */
}

/* GPU memory: families exist exactly when NVML found devices; each device has both gauges with
 * used <= total at a scrape. On a machine without the NVIDIA driver nothing is registered. */
static void t_gpu(void)
{
    lip_err e = {0};
    lip_metrics *m = lip_metrics_new();
    CHECK(m != NULL);
    if (!m) return;
    int n = lip_metrics_register_gpu(m, &e);
    CHECK_MSG(n >= 0, "%s", e.msg);
    char *txt = NULL;
    size_t len = 0;
    CHECK_RC(lip_metrics_render(m, &txt, &len, &e));
    bool has = txt && strstr(txt, "lipsync_gpu_memory_used_bytes") != NULL;
    CHECK_MSG(has == (n > 0), "%d GPUs but families %s", n, has ? "present" : "absent");
    if (n > 0 && txt) {
        CHECK(strstr(txt, "lipsync_gpu_memory_used_bytes{gpu=\"0\"}") != NULL);
        CHECK(strstr(txt, "lipsync_gpu_memory_total_bytes{gpu=\"0\"}") != NULL);
    }
    printf("# %d GPU(s) seen through NVML\n", n);
    lip_free(txt);
    lip_metrics_free(m);
}

static void t_global(void)
{
    lip_metrics *g = lip_metrics_global();
    CHECK(g != NULL);
    CHECK(lip_metrics_global() == g);
    lip_err e = {0};
    CHECK(lip_metrics_counter(g, LIP_METRIC_FRAMES, NULL, &e) != NULL);
}

static void t_http_errors(void)
{
    lip_metrics *m = lip_metrics_new();
    lip_err e = {0};
    CHECK(lip_metrics_http_start(0, "localhost", m, &e) == NULL);
    CHECK(strstr(e.msg, "numeric"));
    CHECK(lip_metrics_http_start(70000, NULL, m, &e) == NULL);
    CHECK(lip_metrics_http_start(0, "127.0.0.1", NULL, &e) == NULL);
    lip_metrics_http *a = lip_metrics_http_start(0, "127.0.0.1", m, &e);
    CHECK(a != NULL);
    if (a) {
        int port = lip_metrics_http_port(a);
        CHECK(port > 0);
        /* The same port twice: the second start fails with the address in the message. */
        lip_metrics_http *b = lip_metrics_http_start(port, "127.0.0.1", m, &e);
        CHECK(b == NULL);
        CHECK(strstr(e.msg, "127.0.0.1"));
        lip_metrics_http_stop(b);
    }
    lip_metrics_http_stop(a);
    lip_metrics_http *v6 = lip_metrics_http_start(0, "::1", m, &e);
    /* IPv6 loopback may be disabled in a container; when present it must work. */
    if (v6) CHECK(lip_metrics_http_port(v6) > 0);
    lip_metrics_http_stop(v6);
    lip_metrics_http_stop(NULL);
    lip_metrics_free(m);
}

/* ---- --serve mode --------------------------------------------------------------------------- */
static volatile sig_atomic_t stop_;
static void on_signal(int sig)
{
    (void)sig;
    stop_ = 1;
}

static int serve(int argc, char **argv)
{
    long port, secs;
    if (argc < 4 || lip_parse_long(argv[2], 0, 65535, &port) ||
        lip_parse_long(argv[3], 1, 3600, &secs)) {
        fprintf(stderr, "usage: %s --serve PORT SECONDS [READY_FILE]\n", argv[0]);
        return 2;
    }
    const char *ready_file = argc > 4 ? argv[4] : NULL;
    lip_metrics *m = lip_metrics_new();
    lip_err e = {0};
    if (!m || lip_metrics_register_std(m, &e)) {
        fprintf(stderr, "metrics: %s\n", e.msg);
        return 1;
    }
    /* Sample data the Python test checks for by value. */
    lip_counter_add(lip_metrics_counter(m, LIP_METRIC_REQUESTS, (const char *[]){"Infer", "OK"},
                                        &e), 7);
    lip_counter_add(lip_metrics_counter(m, LIP_METRIC_REQUESTS,
                                        (const char *[]){"Infer", "INVALID_ARGUMENT"}, &e), 2);
    lip_counter_add(lip_metrics_counter(m, LIP_METRIC_FRAMES, NULL, &e), 250);
    lip_histogram *h = lip_metrics_histogram(m, LIP_METRIC_STAGE_SECONDS,
                                             (const char *[]){"unet"}, &e);
    for (int i = 1; i <= 100; i++) lip_histogram_observe(h, i * 1e-3);
    lip_gauge_set(lip_metrics_gauge(m, LIP_METRIC_AVATARS_LOADED, NULL, &e), 3);

    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    lip_metrics_http *srv = lip_metrics_http_start((int)port, "127.0.0.1", m, &e);
    if (!srv) {
        fprintf(stderr, "%s\n", e.msg);
        lip_metrics_free(m);
        return 1;
    }
    printf("port %d\n", lip_metrics_http_port(srv));
    fflush(stdout);
    double end = lip_time_ms() + (double)secs * 1000.0;
    while (!stop_ && lip_time_ms() < end) {
        if (ready_file && !lip_metrics_is_ready(m) && access(ready_file, F_OK) == 0)
            lip_metrics_set_ready(m, true);
        lip_time_sleep_ms(20);
    }
    lip_metrics_http_stop(srv);
    lip_metrics_free(m);
    printf("stopped\n");
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--serve") == 0) return serve(argc, argv);
    lip_log_set_level(LIP_LOG_WARN);
    RUN(t_concurrent_exact);
    RUN(t_histogram_quantiles);
    RUN(t_text_format);
    RUN(t_parser_rejects);
    RUN(t_errors);
    RUN(t_alloc_failure);
    RUN(t_gpu);
    RUN(t_global);
    RUN(t_http_errors);
    return test_summary();
}
