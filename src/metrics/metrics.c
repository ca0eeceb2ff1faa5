/* SPDX-License-Identifier: MIT */
/* metrics registry: families and series, the lock-free update functions, snapshots and
 * quantiles, and the Prometheus text renderer. The registry lock (a mutex) guards the family
 * list and each family's series array; values are C11 atomics updated with relaxed ordering,
 * since a scrape only needs each number to be one that was true at some instant, not a
 * consistent cut across series. Doubles (gauges, histogram sums) are stored as their bit
 * patterns in 64-bit atomics and updated with a compare-and-swap loop. */
#include "metrics/metrics.h"

#include <inttypes.h>
#include <malloc.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define MAX_HOOKS 16
#define DEFAULT_HIST_LO 1e-5
#define DEFAULT_HIST_N 48

struct series_hdr {
    char *values[LIP_METRICS_MAX_LABELS];
};

struct lip_counter {
    struct series_hdr h;
    _Atomic uint64_t v;
};

struct lip_gauge {
    struct series_hdr h;
    _Atomic uint64_t bits; /* a double's bit pattern */
};

struct lip_histogram {
    struct series_hdr h;
    const double *upper;   /* the family's bounds, nbuckets of them */
    int nbuckets;
    _Atomic uint64_t sum_bits;
    _Atomic uint64_t counts[]; /* nbuckets + 1 (+Inf last) */
};

struct family {
    char *name, *help;
    int type;
    int nlabels;
    char *labels[LIP_METRICS_MAX_LABELS];
    double upper[LIP_METRICS_MAX_BUCKETS];
    int nbuckets;
    void **series; /* lip_counter* / lip_gauge* / lip_histogram*, creation order */
    int nseries, capseries;
};

struct lip_metrics {
    pthread_mutex_t mu;
    struct family **fams;
    int nfams, capfams;
    struct {
        lip_metrics_hook fn;
        void *arg;
    } hooks[MAX_HOOKS];
    int nhooks;
    atomic_bool ready;
};

/* ---- doubles in atomics --------------------------------------------------------------------- */
static uint64_t d2u(double d)
{
    uint64_t u;
    memcpy(&u, &d, sizeof u);
    return u;
}
static double u2d(uint64_t u)
{
    double d;
    memcpy(&d, &u, sizeof d);
    return d;
}
static void atomic_add_double(_Atomic uint64_t *a, double delta)
{
    uint64_t old = atomic_load_explicit(a, memory_order_relaxed);
    while (!atomic_compare_exchange_weak_explicit(a, &old, d2u(u2d(old) + delta),
                                                  memory_order_relaxed, memory_order_relaxed)) {
    }
}

/* ---- names ---------------------------------------------------------------------------------- */
static bool valid_metric_name(const char *s)
{
    if (!s || !*s) return false;
    for (const char *p = s; *p; p++) {
        char c = *p;
        bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
        if (!alpha && !(p != s && c >= '0' && c <= '9')) return false;
    }
    return strlen(s) <= 200;
}

static bool valid_label_name(const char *s, size_t n)
{
    if (n == 0 || n > 100) return false;
    if (n >= 2 && s[0] == '_' && s[1] == '_') return false; /* reserved by Prometheus */
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
        if (!alpha && !(i > 0 && c >= '0' && c <= '9')) return false;
    }
    return true;
}

static void family_free(struct family *f)
{
    if (!f) return;
    for (int i = 0; i < f->nseries; i++) {
        struct series_hdr *h = f->series[i];
        for (int k = 0; k < f->nlabels; k++) lip_free(h->values[k]);
        lip_free(h);
    }
    for (int k = 0; k < f->nlabels; k++) lip_free(f->labels[k]);
    lip_free(f->series);
    lip_free(f->name);
    lip_free(f->help);
    lip_free(f);
}

static struct family *find_family(lip_metrics *m, const char *name)
{
    for (int i = 0; i < m->nfams; i++)
        if (strcmp(m->fams[i]->name, name) == 0) return m->fams[i];
    return NULL;
}

/* Splits "a,b" into f->labels; checks each name. */
static int parse_labels(struct family *f, const char *labels, lip_err *err)
{
    if (!labels || !*labels) return 0;
    const char *p = labels;
    for (;;) {
        const char *e = strchr(p, ',');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (!valid_label_name(p, n))
            return lip_err_set(err, LIP_EINVAL,
                               "metric %s: label name '%.*s' in \"%s\" is not "
                               "[a-zA-Z_][a-zA-Z0-9_]* (or starts with __)",
                               f->name, (int)LIP_MIN(n, 100), p, labels);
        if (f->nlabels == LIP_METRICS_MAX_LABELS)
            return lip_err_set(err, LIP_EINVAL, "metric %s: more than %d labels in \"%s\"",
                               f->name, LIP_METRICS_MAX_LABELS, labels);
        if (f->type == LIP_METRIC_HISTOGRAM && n == 2 && memcmp(p, "le", 2) == 0)
            return lip_err_set(err, LIP_EINVAL,
                               "metric %s: histograms cannot have a label named 'le'", f->name);
        char *s = lip_malloc(n + 1);
        if (!s) return lip_err_set(err, LIP_ENOMEM, "metric %s: no memory for labels", f->name);
        memcpy(s, p, n);
        s[n] = 0;
        for (int k = 0; k < f->nlabels; k++)
            if (strcmp(f->labels[k], s) == 0) {
                lip_free(s);
                return lip_err_set(err, LIP_EINVAL, "metric %s: label '%.*s' given twice",
                                   f->name, (int)n, p);
            }
        f->labels[f->nlabels++] = s;
        if (!e) return 0;
        p = e + 1;
    }
}

/* Same labels, in the same order, as the comma list? */
static bool same_labels(const struct family *f, const char *labels)
{
    char buf[LIP_METRICS_MAX_LABELS * 104] = "";
    size_t off = 0;
    for (int k = 0; k < f->nlabels; k++) {
        int w = snprintf(buf + off, sizeof buf - off, "%s%s", k ? "," : "", f->labels[k]);
        if (w < 0 || (size_t)w >= sizeof buf - off) return false;
        off += (size_t)w;
    }
    return strcmp(buf, labels ? labels : "") == 0;
}

/* ---- registry ------------------------------------------------------------------------------- */
lip_metrics *lip_metrics_new(void)
{
    lip_metrics *m = lip_calloc(1, sizeof *m);
    if (!m) return NULL;
    if (pthread_mutex_init(&m->mu, NULL) != 0) {
        lip_free(m);
        return NULL;
    }
    atomic_init(&m->ready, false);
    return m;
}

void lip_metrics_free(lip_metrics *m)
{
    if (!m) return;
    for (int i = 0; i < m->nfams; i++) family_free(m->fams[i]);
    lip_free(m->fams);
    pthread_mutex_destroy(&m->mu);
    lip_free(m);
}

static int register_family(lip_metrics *m, const char *name, int type, const char *help,
                           const char *labels, double lo, int nbuckets, lip_err *err)
{
    if (!m) return lip_err_set(err, LIP_EINVAL, "metrics: registry is NULL");
    if (!valid_metric_name(name))
        return lip_err_set(err, LIP_EINVAL,
                           "metric name '%s' is not [a-zA-Z_:][a-zA-Z0-9_:]* of at most 200 "
                           "characters", name ? name : "(null)");
    if (type != LIP_METRIC_COUNTER && type != LIP_METRIC_GAUGE && type != LIP_METRIC_HISTOGRAM)
        return lip_err_set(err, LIP_EINVAL, "metric %s: type %d is not counter (1), gauge (2) "
                           "or histogram (3)", name, type);
    if (help && (strchr(help, '\n') || strlen(help) > 1000))
        return lip_err_set(err, LIP_EINVAL, "metric %s: help must be one line of at most 1000 "
                           "characters", name);
    if (type == LIP_METRIC_HISTOGRAM) {
        if (nbuckets == 0) nbuckets = DEFAULT_HIST_N;
        if (lo == 0) lo = DEFAULT_HIST_LO;
        if (nbuckets < 1 || nbuckets > LIP_METRICS_MAX_BUCKETS)
            return lip_err_set(err, LIP_EINVAL, "metric %s: %d buckets, expected 1..%d", name,
                               nbuckets, LIP_METRICS_MAX_BUCKETS);
        if (!(lo > 0) || !isfinite(lo) || !isfinite(lo * pow(2.0, nbuckets / 2.0)))
            return lip_err_set(err, LIP_EINVAL,
                               "metric %s: lowest bucket bound %g must be positive and finite "
                               "across %d buckets", name, lo, nbuckets);
    }

    struct family *f = lip_calloc(1, sizeof *f);
    if (!f) return lip_err_set(err, LIP_ENOMEM, "metric %s: no memory", name);
    f->type = type;
    f->name = lip_strdup(name);
    f->help = lip_strdup(help ? help : "");
    if (!f->name || !f->help) {
        family_free(f);
        return lip_err_set(err, LIP_ENOMEM, "metric %s: no memory", name);
    }
    int rc = parse_labels(f, labels, err);
    if (rc) {
        family_free(f);
        return rc;
    }
    if (type == LIP_METRIC_HISTOGRAM) {
        f->nbuckets = nbuckets;
        for (int i = 0; i < nbuckets; i++) f->upper[i] = lo * pow(2.0, i / 2.0);
    }

    pthread_mutex_lock(&m->mu);
    struct family *old = find_family(m, name);
    if (old) {
        bool same = old->type == type && same_labels(old, labels) &&
                    (type != LIP_METRIC_HISTOGRAM ||
                     (old->nbuckets == nbuckets && old->upper[0] == f->upper[0]));
        pthread_mutex_unlock(&m->mu);
        family_free(f);
        if (same) return 0;
        return lip_err_set(err, LIP_EINVAL,
                           "metric %s is already registered with another type, labels or "
                           "buckets (labels now \"%s\")", name, labels ? labels : "");
    }
    if (m->nfams == m->capfams) {
        int cap = m->capfams ? m->capfams * 2 : 16;
        void *p = lip_realloc(m->fams, (size_t)cap * sizeof *m->fams);
        if (!p) {
            pthread_mutex_unlock(&m->mu);
            family_free(f);
            return lip_err_set(err, LIP_ENOMEM, "metric %s: no memory", name);
        }
        m->fams = p;
        m->capfams = cap;
    }
    m->fams[m->nfams++] = f;
    pthread_mutex_unlock(&m->mu);
    return 0;
}

int lip_metrics_register(lip_metrics *m, const char *name, int type, const char *help,
                         const char *labels, lip_err *err)
{
    return register_family(m, name, type, help, labels, 0, 0, err);
}

int lip_metrics_register_histogram(lip_metrics *m, const char *name, const char *help,
                                   const char *labels, double lo, int nbuckets, lip_err *err)
{
    return register_family(m, name, LIP_METRIC_HISTOGRAM, help, labels, lo, nbuckets, err);
}

/* Finds or creates a series; called with no lock held. */
static void *get_series(lip_metrics *m, const char *name, int type, const char *const *values,
                        lip_err *err)
{
    static const char *const tname[] = {"", "counter", "gauge", "histogram"};
    if (!m || !name) {
        lip_err_set(err, LIP_EINVAL, "metrics: registry or name is NULL");
        return NULL;
    }
    pthread_mutex_lock(&m->mu);
    void *out = NULL;
    struct family *f = find_family(m, name);
    if (!f) {
        lip_err_set(err, LIP_ENOTFOUND, "metric %s is not registered", name);
        goto done;
    }
    if (f->type != type) {
        lip_err_set(err, LIP_EINVAL, "metric %s is a %s, not a %s", name, tname[f->type],
                    tname[type]);
        goto done;
    }
    /* Exactly nlabels values are read (no terminator needed); a NULL among them is an error. */
    int nv = 0;
    while (values && nv < f->nlabels && values[nv]) nv++;
    if (nv < f->nlabels) {
        lip_err_set(err, LIP_EINVAL, "metric %s: expected %d label values, got %d", name,
                    f->nlabels, nv);
        goto done;
    }
    for (int k = 0; k < f->nlabels; k++)
        if (strlen(values[k]) > LIP_METRICS_MAX_LABEL_VALUE) {
            lip_err_set(err, LIP_EINVAL, "metric %s: value of label %s is %zu bytes, at most %d",
                        name, f->labels[k], strlen(values[k]), LIP_METRICS_MAX_LABEL_VALUE);
            goto done;
        }
    for (int i = 0; i < f->nseries; i++) {
        struct series_hdr *h = f->series[i];
        int k = 0;
        while (k < f->nlabels && strcmp(h->values[k], values[k]) == 0) k++;
        if (k == f->nlabels) {
            out = h;
            goto done;
        }
    }
    if (f->nseries >= LIP_METRICS_MAX_SERIES) {
        lip_err_set(err, LIP_EBUSY, "metric %s already has %d series (the limit)", name,
                    LIP_METRICS_MAX_SERIES);
        goto done;
    }
    if (f->nseries == f->capseries) {
        int cap = f->capseries ? f->capseries * 2 : 8;
        void *p = lip_realloc(f->series, (size_t)cap * sizeof *f->series);
        if (!p) {
            lip_err_set(err, LIP_ENOMEM, "metric %s: no memory for a new series", name);
            goto done;
        }
        f->series = p;
        f->capseries = cap;
    }
    size_t sz = type == LIP_METRIC_COUNTER ? sizeof(lip_counter)
                : type == LIP_METRIC_GAUGE ? sizeof(lip_gauge)
                                           : sizeof(lip_histogram) +
                                                 (size_t)(f->nbuckets + 1) * sizeof(uint64_t);
    struct series_hdr *h = lip_calloc(1, sz);
    if (!h) {
        lip_err_set(err, LIP_ENOMEM, "metric %s: no memory for a new series", name);
        goto done;
    }
    for (int k = 0; k < f->nlabels; k++) {
        h->values[k] = lip_strdup(values[k]);
        if (!h->values[k]) {
            for (int j = 0; j < k; j++) lip_free(h->values[j]);
            lip_free(h);
            lip_err_set(err, LIP_ENOMEM, "metric %s: no memory for a new series", name);
            goto done;
        }
    }
    if (type == LIP_METRIC_HISTOGRAM) {
        lip_histogram *hist = (lip_histogram *)h;
        hist->upper = f->upper;
        hist->nbuckets = f->nbuckets;
    }
    /* calloc's zero bytes are 0 and 0.0 for the atomics on every platform we build for. */
    f->series[f->nseries++] = h;
    out = h;
done:
    pthread_mutex_unlock(&m->mu);
    return out;
}

lip_counter *lip_metrics_counter(lip_metrics *m, const char *name, const char *const *values,
                                 lip_err *err)
{
    return get_series(m, name, LIP_METRIC_COUNTER, values, err);
}
lip_gauge *lip_metrics_gauge(lip_metrics *m, const char *name, const char *const *values,
                             lip_err *err)
{
    return get_series(m, name, LIP_METRIC_GAUGE, values, err);
}
lip_histogram *lip_metrics_histogram(lip_metrics *m, const char *name, const char *const *values,
                                     lip_err *err)
{
    return get_series(m, name, LIP_METRIC_HISTOGRAM, values, err);
}

/* ---- hot path ------------------------------------------------------------------------------- */
void lip_counter_add(lip_counter *c, uint64_t n)
{
    if (c) atomic_fetch_add_explicit(&c->v, n, memory_order_relaxed);
}

void lip_gauge_set(lip_gauge *g, double v)
{
    if (g) atomic_store_explicit(&g->bits, d2u(v), memory_order_relaxed);
}

void lip_gauge_add(lip_gauge *g, double delta)
{
    if (g) atomic_add_double(&g->bits, delta);
}

void lip_histogram_observe(lip_histogram *h, double v)
{
    if (!h || isnan(v)) return;
    int n = h->nbuckets, i;
    if (!(v > h->upper[0])) {
        i = 0;
    } else if (v > h->upper[n - 1]) {
        i = n;
    } else {
        /* Bucket i holds (upper[i-1], upper[i]] with upper[i] = lo * 2^(i/2): estimate from the
         * logarithm, then step to correct rounding at the edges (at most one step each way). */
        i = (int)ceil(2.0 * log2(v / h->upper[0]));
        if (i < 0) i = 0;
        if (i > n - 1) i = n - 1;
        while (i > 0 && v <= h->upper[i - 1]) i--;
        while (i < n - 1 && v > h->upper[i]) i++;
    }
    atomic_fetch_add_explicit(&h->counts[i], 1, memory_order_relaxed);
    atomic_add_double(&h->sum_bits, v);
}

uint64_t lip_counter_value(const lip_counter *c)
{
    return c ? atomic_load_explicit(&((lip_counter *)c)->v, memory_order_relaxed) : 0;
}

double lip_gauge_value(const lip_gauge *g)
{
    return g ? u2d(atomic_load_explicit(&((lip_gauge *)g)->bits, memory_order_relaxed)) : 0.0;
}

void lip_histogram_snapshot(const lip_histogram *h, lip_hist_snapshot *out)
{
    memset(out, 0, sizeof *out);
    if (!h) return;
    lip_histogram *hh = (lip_histogram *)h;
    out->nbuckets = h->nbuckets;
    for (int i = 0; i < h->nbuckets; i++) out->upper[i] = h->upper[i];
    for (int i = 0; i <= h->nbuckets; i++) {
        out->counts[i] = atomic_load_explicit(&hh->counts[i], memory_order_relaxed);
        out->count += out->counts[i];
    }
    out->sum = u2d(atomic_load_explicit(&hh->sum_bits, memory_order_relaxed));
}

double lip_hist_quantile(const lip_hist_snapshot *s, double q)
{
    if (!s || s->count == 0 || s->nbuckets < 1) return 0.0;
    if (q < 0) q = 0;
    if (q > 1) q = 1;
    double rank = q * (double)s->count;
    uint64_t cum = 0;
    for (int i = 0; i <= s->nbuckets; i++) {
        uint64_t c = s->counts[i];
        if (c && (double)(cum + c) >= rank) {
            if (i == s->nbuckets) return s->upper[s->nbuckets - 1];
            double lo = i == 0 ? 0.0 : s->upper[i - 1], hi = s->upper[i];
            return lo + (hi - lo) * ((rank - (double)cum) / (double)c);
        }
        cum += c;
    }
    return s->upper[s->nbuckets - 1];
}

/* ---- hooks and readiness -------------------------------------------------------------------- */
int lip_metrics_on_scrape(lip_metrics *m, lip_metrics_hook fn, void *arg, lip_err *err)
{
    if (!m || !fn) return lip_err_set(err, LIP_EINVAL, "metrics: registry or hook is NULL");
    pthread_mutex_lock(&m->mu);
    if (m->nhooks == MAX_HOOKS) {
        pthread_mutex_unlock(&m->mu);
        return lip_err_set(err, LIP_EBUSY, "metrics: already %d scrape hooks (the limit)",
                           MAX_HOOKS);
    }
    m->hooks[m->nhooks].fn = fn;
    m->hooks[m->nhooks].arg = arg;
    m->nhooks++;
    pthread_mutex_unlock(&m->mu);
    return 0;
}

void lip_metrics_set_ready(lip_metrics *m, bool ready)
{
    if (!m) return;
    atomic_store(&m->ready, ready);
    pthread_mutex_lock(&m->mu);
    bool have = find_family(m, LIP_METRIC_READY) != NULL;
    pthread_mutex_unlock(&m->mu);
    if (have) lip_gauge_set(lip_metrics_gauge(m, LIP_METRIC_READY, NULL, NULL), ready ? 1 : 0);
}

bool lip_metrics_is_ready(const lip_metrics *m)
{
    return m && atomic_load(&((lip_metrics *)m)->ready);
}

int64_t lip_metrics_rss_bytes(void)
{
    char buf[128];
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f) return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    /* statm: size resident shared text lib data dt, in pages. */
    unsigned long long size, resident;
    if (sscanf(buf, "%llu %llu", &size, &resident) != 2) return -1;
    long page = sysconf(_SC_PAGESIZE);
    return page > 0 ? (int64_t)(resident * (unsigned long long)page) : -1;
}

/* ---- rendering ------------------------------------------------------------------------------ */
typedef struct sbuf {
    char *p;
    size_t len, cap;
    bool oom;
} sbuf;

__attribute__((format(printf, 2, 3))) static void sb_printf(sbuf *b, const char *fmt, ...)
{
    if (b->oom) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int w = vsnprintf(b->p ? b->p + b->len : NULL, b->p ? b->cap - b->len : 0, fmt, ap);
        va_end(ap);
        if (w < 0) {
            b->oom = true;
            return;
        }
        if (b->p && (size_t)w < b->cap - b->len) {
            b->len += (size_t)w;
            return;
        }
        size_t cap = b->cap ? b->cap : 4096;
        while (cap - b->len <= (size_t)w) cap *= 2;
        char *np = lip_realloc(b->p, cap);
        if (!np) {
            b->oom = true;
            return;
        }
        b->p = np;
        b->cap = cap;
    }
}

/* Label values: backslash, double quote and newline are escaped (exposition format 0.0.4). */
static void sb_escaped(sbuf *b, const char *s, bool quote_too)
{
    for (const char *p = s; *p; p++) {
        if (*p == '\\') sb_printf(b, "\\\\");
        else if (*p == '\n') sb_printf(b, "\\n");
        else if (quote_too && *p == '"') sb_printf(b, "\\\"");
        else sb_printf(b, "%c", *p);
    }
}

static void sb_double(sbuf *b, double v)
{
    if (isnan(v)) sb_printf(b, "NaN");
    else if (isinf(v)) sb_printf(b, v > 0 ? "+Inf" : "-Inf");
    else sb_printf(b, "%.17g", v);
}

/* {a="x",b="y"[,le="..."]} or nothing when there are no labels at all. */
static void sb_labels(sbuf *b, const struct family *f, const struct series_hdr *h, const char *le)
{
    if (f->nlabels == 0 && !le) return;
    sb_printf(b, "{");
    for (int k = 0; k < f->nlabels; k++) {
        sb_printf(b, "%s%s=\"", k ? "," : "", f->labels[k]);
        sb_escaped(b, h->values[k], true);
        sb_printf(b, "\"");
    }
    if (le) sb_printf(b, "%sle=\"%s\"", f->nlabels ? "," : "", le);
    sb_printf(b, "}");
}

static void render_family(sbuf *b, const struct family *f)
{
    static const char *const tname[] = {"", "counter", "gauge", "histogram"};
    sb_printf(b, "# HELP %s ", f->name);
    sb_escaped(b, f->help, false);
    sb_printf(b, "\n# TYPE %s %s\n", f->name, tname[f->type]);
    for (int i = 0; i < f->nseries; i++) {
        const struct series_hdr *h = f->series[i];
        if (f->type == LIP_METRIC_COUNTER) {
            sb_printf(b, "%s", f->name);
            sb_labels(b, f, h, NULL);
            sb_printf(b, " %" PRIu64 "\n", lip_counter_value((const lip_counter *)h));
        } else if (f->type == LIP_METRIC_GAUGE) {
            sb_printf(b, "%s", f->name);
            sb_labels(b, f, h, NULL);
            sb_printf(b, " ");
            sb_double(b, lip_gauge_value((const lip_gauge *)h));
            sb_printf(b, "\n");
        } else {
            lip_hist_snapshot s;
            lip_histogram_snapshot((const lip_histogram *)h, &s);
            uint64_t cum = 0;
            char le[40];
            for (int k = 0; k <= s.nbuckets; k++) {
                cum += s.counts[k];
                if (k < s.nbuckets) snprintf(le, sizeof le, "%.9g", s.upper[k]);
                else lip_strlcpy(le, "+Inf", sizeof le);
                sb_printf(b, "%s_bucket", f->name);
                sb_labels(b, f, h, le);
                sb_printf(b, " %" PRIu64 "\n", cum);
            }
            sb_printf(b, "%s_sum", f->name);
            sb_labels(b, f, h, NULL);
            sb_printf(b, " ");
            sb_double(b, s.sum);
            sb_printf(b, "\n%s_count", f->name);
            sb_labels(b, f, h, NULL);
            sb_printf(b, " %" PRIu64 "\n", cum);
        }
    }
}

int lip_metrics_render(lip_metrics *m, char **out, size_t *len, lip_err *err)
{
    *out = NULL;
    *len = 0;
    if (!m) return lip_err_set(err, LIP_EINVAL, "metrics: registry is NULL");
    /* Hooks run outside the lock: they look series up and set gauges, which take it. */
    struct {
        lip_metrics_hook fn;
        void *arg;
    } hooks[MAX_HOOKS];
    pthread_mutex_lock(&m->mu);
    int nh = m->nhooks;
    memcpy(hooks, m->hooks, sizeof hooks);
    pthread_mutex_unlock(&m->mu);
    for (int i = 0; i < nh; i++) hooks[i].fn(m, hooks[i].arg);

    sbuf b = {0};
    sb_printf(&b, "%s", ""); /* an empty registry still renders as "" rather than NULL */
    pthread_mutex_lock(&m->mu);
    for (int i = 0; i < m->nfams && !b.oom; i++) render_family(&b, m->fams[i]);
    pthread_mutex_unlock(&m->mu);
    if (b.oom) {
        lip_free(b.p);
        return lip_err_set(err, LIP_ENOMEM, "metrics: no memory to render the registry");
    }
    *out = b.p;
    *len = b.len;
    return 0;
}

/* ---- predefined families -------------------------------------------------------------------- */
static void std_hook(lip_metrics *m, void *arg)
{
    (void)arg;
    int64_t rss = lip_metrics_rss_bytes();
    if (rss >= 0) lip_gauge_set(lip_metrics_gauge(m, LIP_METRIC_RSS, NULL, NULL), (double)rss);
    /* What of the resident memory is live allocations and what the allocator keeps for reuse
     * (the server tunes malloc to keep freed pages, lip_rpc_tune_malloc). */
    struct mallinfo2 mi = mallinfo2();
    if (mi.uordblks + mi.hblkhd == 0) return; /* an allocator that does not report (ASan) */
    lip_gauge_set(lip_metrics_gauge(m, LIP_METRIC_HEAP_USED, NULL, NULL),
                  (double)(mi.uordblks + mi.hblkhd));
    lip_gauge_set(lip_metrics_gauge(m, LIP_METRIC_HEAP_FREE, NULL, NULL), (double)mi.fordblks);
}

int lip_metrics_register_std(lip_metrics *m, lip_err *err)
{
    static const struct {
        const char *name;
        int type;
        const char *labels, *help;
    } fams[] = {
        {LIP_METRIC_REQUESTS, LIP_METRIC_COUNTER, "rpc,code",
         "RPCs finished, by method and gRPC status code name"},
        {LIP_METRIC_REQUEST_SECONDS, LIP_METRIC_HISTOGRAM, "rpc",
         "RPC latency from arrival to the last byte sent, seconds"},
        {LIP_METRIC_FRAMES, LIP_METRIC_COUNTER, NULL, "Video frames generated and sent"},
        {LIP_METRIC_STAGE_SECONDS, LIP_METRIC_HISTOGRAM, "stage",
         "Time per pipeline stage per batch (audio, unet, paste, encode...), seconds"},
        {LIP_METRIC_QUEUE_DEPTH, LIP_METRIC_GAUGE, NULL, "Requests waiting for an inference slot"},
        {LIP_METRIC_INFLIGHT, LIP_METRIC_GAUGE, NULL, "Requests being served now"},
        {LIP_METRIC_AVATARS_LOADED, LIP_METRIC_GAUGE, NULL, "Avatars resident in the cache"},
        {LIP_METRIC_EVICTIONS, LIP_METRIC_COUNTER, NULL, "Avatars evicted from the cache"},
        {LIP_METRIC_READY, LIP_METRIC_GAUGE, NULL, "1 when the server accepts traffic (/readyz)"},
        {LIP_METRIC_BUILD_INFO, LIP_METRIC_GAUGE, "version,revision",
         "Always 1; the labels name the build"},
        {LIP_METRIC_RSS, LIP_METRIC_GAUGE, NULL, "Resident memory size in bytes"},
        {LIP_METRIC_HEAP_USED, LIP_METRIC_GAUGE, NULL,
         "Bytes allocated with malloc and not freed (live data, ONNX Runtime's arena included)"},
        {LIP_METRIC_HEAP_FREE, LIP_METRIC_GAUGE, NULL,
         "Bytes freed but kept by malloc for reuse (counted in the resident size when touched)"},
        {LIP_METRIC_START_TIME, LIP_METRIC_GAUGE, NULL,
         "Time the metrics registry was set up (process start), seconds since the Unix epoch"},
    };
    for (size_t i = 0; i < LIP_ARRAY_LEN(fams); i++) {
        int rc = lip_metrics_register(m, fams[i].name, fams[i].type, fams[i].help, fams[i].labels,
                                      err);
        if (rc) return rc;
    }
#ifndef LIP_VERSION
#define LIP_VERSION "unknown"
#endif
#ifndef LIP_GIT_REV
#define LIP_GIT_REV "unknown"
#endif
    const char *build[] = {LIP_VERSION, LIP_GIT_REV, NULL};
    lip_gauge *g = lip_metrics_gauge(m, LIP_METRIC_BUILD_INFO, build, err);
    if (!g) return err ? err->code : LIP_ENOMEM;
    lip_gauge_set(g, 1);
    lip_gauge *st = lip_metrics_gauge(m, LIP_METRIC_START_TIME, NULL, err);
    if (!st) return err ? err->code : LIP_ENOMEM;
    if (lip_gauge_value(st) == 0) lip_gauge_set(st, (double)lip_time_unix_ms() / 1000.0);
    /* Create the unlabelled series now so a scrape shows them at 0 before first use. */
    const char *plain[] = {LIP_METRIC_FRAMES, LIP_METRIC_EVICTIONS};
    for (size_t i = 0; i < LIP_ARRAY_LEN(plain); i++)
        if (!lip_metrics_counter(m, plain[i], NULL, err)) return err ? err->code : LIP_ENOMEM;
    const char *gauges[] = {LIP_METRIC_QUEUE_DEPTH, LIP_METRIC_INFLIGHT,
                            LIP_METRIC_AVATARS_LOADED, LIP_METRIC_READY, LIP_METRIC_RSS};
    for (size_t i = 0; i < LIP_ARRAY_LEN(gauges); i++)
        if (!lip_metrics_gauge(m, gauges[i], NULL, err)) return err ? err->code : LIP_ENOMEM;
    lip_gauge_set(lip_metrics_gauge(m, LIP_METRIC_READY, NULL, NULL),
                  lip_metrics_is_ready(m) ? 1 : 0);
    /* The hook is added once: a second registration of the std set finds it present. */
    pthread_mutex_lock(&m->mu);
    bool have = false;
    for (int i = 0; i < m->nhooks; i++) have |= m->hooks[i].fn == std_hook;
    pthread_mutex_unlock(&m->mu);
    return have ? 0 : lip_metrics_on_scrape(m, std_hook, NULL, err);
}

static lip_metrics *global_;
static pthread_once_t global_once_ = PTHREAD_ONCE_INIT;

static void global_init(void)
{
    lip_metrics *m = lip_metrics_new();
    lip_err e = {0};
    if (m && lip_metrics_register_std(m, &e) != 0) {
        lip_log_error("metrics: %s", e.msg);
        lip_metrics_free(m);
        m = NULL;
    }
    global_ = m;
}

lip_metrics *lip_metrics_global(void)
{
    pthread_once(&global_once_, global_init);
    return global_;
}
