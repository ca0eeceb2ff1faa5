/* SPDX-License-Identifier: MIT */
/* metrics: counters, gauges and latency histograms for the server (STYLE.md rule 9), rendered as
 * Prometheus text exposition format on an HTTP port (libmicrohttpd) and readable from C, so the
 * stats RPCs and /metrics report the same numbers from the same structs. A registry holds
 * families (name, help, type, label names); a family holds series, one per label-value tuple.
 * Looking a series up takes the registry lock and may allocate, so callers look series up once
 * (at start-up or per avatar) and keep the pointer; updating a series is one relaxed atomic
 * operation and never allocates or locks. Series live until the registry is freed.
 *
 * Histograms use one fixed log-spaced bucket layout: upper bounds lo * 2^(i/2) for
 * i in [0, nbuckets), plus +Inf, so any quantile is known to within one bucket (a factor of
 * sqrt(2)). The default layout (lo = 10 us, 48 buckets) spans 10 us .. 119 s. */
#ifndef LIP_METRICS_H
#define LIP_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/core.h"

/* ---- predefined families (lip_metrics_register_std) ---------------------------------------- */
#define LIP_METRIC_REQUESTS "lipsync_requests_total"         /* counter {rpc,code} */
#define LIP_METRIC_REQUEST_SECONDS "lipsync_request_seconds" /* histogram {rpc} */
#define LIP_METRIC_FRAMES "lipsync_frames_total"             /* counter */
#define LIP_METRIC_STAGE_SECONDS "lipsync_stage_seconds"     /* histogram {stage} */
#define LIP_METRIC_QUEUE_DEPTH "lipsync_queue_depth"         /* gauge */
#define LIP_METRIC_INFLIGHT "lipsync_inflight_requests"      /* gauge */
#define LIP_METRIC_AVATARS_LOADED "lipsync_avatars_loaded"   /* gauge */
#define LIP_METRIC_EVICTIONS "lipsync_evictions_total"       /* counter */
#define LIP_METRIC_READY "lipsync_ready"                     /* gauge, 1 when /readyz is 200 */
#define LIP_METRIC_BUILD_INFO "lipsync_build_info"           /* gauge {version,revision} = 1 */
#define LIP_METRIC_RSS "process_resident_memory_bytes"       /* gauge, /proc/self/statm */
#define LIP_METRIC_START_TIME "process_start_time_seconds"   /* gauge, Unix time */
#define LIP_METRIC_HEAP_USED "lipsync_heap_in_use_bytes"     /* gauge, malloc: allocated */
#define LIP_METRIC_HEAP_FREE "lipsync_heap_free_bytes"       /* gauge, malloc: freed, kept */
#define LIP_METRIC_GPU_USED "lipsync_gpu_memory_used_bytes"  /* gauge {gpu}, NVML */
#define LIP_METRIC_GPU_TOTAL "lipsync_gpu_memory_total_bytes" /* gauge {gpu}, NVML */

/* Bounds that keep a hostile or buggy caller from growing the registry without limit. */
#define LIP_METRICS_MAX_LABELS 8
#define LIP_METRICS_MAX_SERIES 4096   /* per family */
#define LIP_METRICS_MAX_BUCKETS 64    /* finite buckets per histogram */
#define LIP_METRICS_MAX_LABEL_VALUE 128

enum lip_metric_type { LIP_METRIC_COUNTER = 1, LIP_METRIC_GAUGE, LIP_METRIC_HISTOGRAM };

typedef struct lip_metrics lip_metrics;
typedef struct lip_counter lip_counter;
typedef struct lip_gauge lip_gauge;
typedef struct lip_histogram lip_histogram;

/* ---- registry ------------------------------------------------------------------------------- */
/* A new empty registry, or NULL on allocation failure. Free with lip_metrics_free (NULL is a
 * no-op), after every user of its series and any HTTP server on it has stopped. */
lip_metrics *lip_metrics_new(void);
void lip_metrics_free(lip_metrics *m);

/* The process-wide registry, with the predefined families registered; created on first use and
 * never freed (modules update it without plumbing). NULL only if the first creation failed for
 * lack of memory. Thread-safe. */
lip_metrics *lip_metrics_global(void);

/* Registers a family. name: [a-zA-Z_:][a-zA-Z0-9_:]*; labels: comma-separated label names
 * ("rpc,code"; NULL or "" for none; each [a-zA-Z_][a-zA-Z0-9_]*, not starting "__", "le" not
 * allowed on histograms); help: one line of text (copied). Histograms use lip_metrics_hist_lo
 * and nbuckets (0 = defaults: 1e-5 and 48). Registering the same name again with the same type
 * and labels is a no-op returning 0; a different type or labels is LIP_EINVAL. Thread-safe. */
int lip_metrics_register(lip_metrics *m, const char *name, int type, const char *help,
                         const char *labels, lip_err *err);
int lip_metrics_register_histogram(lip_metrics *m, const char *name, const char *help,
                                   const char *labels, double lo, int nbuckets, lip_err *err);
/* Registers every LIP_METRIC_* family above and sets build info and start time. Thread-safe. */
int lip_metrics_register_std(lip_metrics *m, lip_err *err);
/* GPU memory per device (LIP_METRIC_GPU_*, read at each scrape) when the NVIDIA driver's NVML
 * library can be loaded: returns the number of GPUs found (0 = none or no driver: nothing is
 * registered, not an error), or an error code. Thread-safe; call once per registry. */
int lip_metrics_register_gpu(lip_metrics *m, lip_err *err);

/* Looks up (creating on first use) the series of family name with the given label values
 * (exactly as many as the family has labels; NULL when it has none). Values are copied; each at
 * most LIP_METRICS_MAX_LABEL_VALUE bytes of any text (escaped when rendered). The pointer is
 * owned by the registry and valid until lip_metrics_free. Returns NULL and fills err for an
 * unknown family, a type mismatch, a wrong value count, a family already at
 * LIP_METRICS_MAX_SERIES or no memory. Thread-safe (takes the registry lock: not for hot paths).
 */
lip_counter *lip_metrics_counter(lip_metrics *m, const char *name, const char *const *values,
                                 lip_err *err);
lip_gauge *lip_metrics_gauge(lip_metrics *m, const char *name, const char *const *values,
                             lip_err *err);
lip_histogram *lip_metrics_histogram(lip_metrics *m, const char *name, const char *const *values,
                                     lip_err *err);

/* ---- hot path: lock-free, allocation-free; every function accepts NULL as a no-op ----------- */
void lip_counter_add(lip_counter *c, uint64_t n);
static inline void lip_counter_inc(lip_counter *c) { lip_counter_add(c, 1); }
void lip_gauge_set(lip_gauge *g, double v);
void lip_gauge_add(lip_gauge *g, double delta); /* CAS loop; delta may be negative */
/* Records one observation (seconds for *_seconds families). NaN is ignored; negative values go
 * to the first bucket. */
void lip_histogram_observe(lip_histogram *h, double v);

/* ---- reading from C (stats RPCs) ------------------------------------------------------------ */
uint64_t lip_counter_value(const lip_counter *c); /* 0 for NULL */
double lip_gauge_value(const lip_gauge *g);       /* 0 for NULL */

/* A copy of a histogram's state. count is the sum of the bucket counts in this copy (so it
 * equals the +Inf bucket even while other threads observe); sum may lag by in-flight updates. */
typedef struct lip_hist_snapshot {
    int nbuckets;                            /* finite buckets; counts[nbuckets] is +Inf */
    double upper[LIP_METRICS_MAX_BUCKETS];   /* upper bound of each finite bucket */
    uint64_t counts[LIP_METRICS_MAX_BUCKETS + 1]; /* per bucket, not cumulative */
    uint64_t count;
    double sum;
} lip_hist_snapshot;
/* Fills *out (zeroed for NULL h). Thread-safe with concurrent observers. */
void lip_histogram_snapshot(const lip_histogram *h, lip_hist_snapshot *out);
/* The q-quantile (0 <= q <= 1) by linear interpolation inside the bucket that holds it, as
 * Prometheus' histogram_quantile does; the true value lies in the same bucket. 0 for an empty
 * histogram; a quantile in +Inf returns the largest finite bound. */
double lip_hist_quantile(const lip_hist_snapshot *s, double q);

/* ---- rendering ------------------------------------------------------------------------------ */
/* Called (in registration order) at the start of every render, under no lock, to refresh
 * gauges that are sampled rather than pushed (queue depth, memory). At most 16 hooks.
 * Thread-safe to register; the hook itself must be thread-safe. */
typedef void (*lip_metrics_hook)(lip_metrics *m, void *arg);
int lip_metrics_on_scrape(lip_metrics *m, lip_metrics_hook fn, void *arg, lip_err *err);

/* Renders every family as Prometheus text format 0.0.4 (# HELP, # TYPE, samples; histograms as
 * _bucket{le=...} cumulative, _sum, _count). *out is a new NUL-terminated buffer of *len bytes
 * (caller frees with lip_free). LIP_ENOMEM on allocation failure (nothing returned).
 * Thread-safe. */
int lip_metrics_render(lip_metrics *m, char **out, size_t *len, lip_err *err);

/* Readiness as served on /readyz and as the lipsync_ready gauge (when registered). Starts false.
 * Thread-safe. */
void lip_metrics_set_ready(lip_metrics *m, bool ready);
bool lip_metrics_is_ready(const lip_metrics *m);

/* Process resident set size in bytes from /proc/self/statm, or -1 if it cannot be read. */
int64_t lip_metrics_rss_bytes(void);

/* ---- HTTP endpoint (libmicrohttpd) ---------------------------------------------------------- */
/* GET (or HEAD) /metrics: the rendered registry; /healthz: 200 "ok" while the process serves;
 * /readyz: 200 "ready" when lip_metrics_is_ready, else 503 "not ready"; any other path 404;
 * any other method 405. Served from one internal thread with at most 64 connections and a 10 s
 * idle timeout, so slow or many clients cannot pin the process. */
typedef struct lip_metrics_http lip_metrics_http;
/* Starts serving m on bind_addr:port. bind_addr: a numeric IPv4 or IPv6 address ("127.0.0.1",
 * "0.0.0.0", "::"); NULL means "0.0.0.0". port 0 picks a free port (see lip_metrics_http_port).
 * Returns NULL and fills err (bad address, port in use) on failure. m must outlive the server.
 * The returned object is owned by the caller: stop it with lip_metrics_http_stop. */
lip_metrics_http *lip_metrics_http_start(int port, const char *bind_addr, lip_metrics *m,
                                         lip_err *err);
/* The port actually bound. */
int lip_metrics_http_port(const lip_metrics_http *h);
/* Stops accepting, waits for in-flight responses, frees h. NULL is a no-op. Not to be called
 * concurrently with itself on the same h. */
void lip_metrics_http_stop(lip_metrics_http *h);

#endif
