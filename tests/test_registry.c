/* SPDX-License-Identifier: MIT */
/* tests/test_registry.c: the avatar cache under load. 1,000 tiny avatars are written to a temp
 * models root (each frame carries a mark that encodes its avatar number), the registry is
 * bounded to 20 loaded avatars, and 8 threads make Zipf-distributed requests through the real
 * pipeline: every answer must carry its own avatar's mark, the loaded count never exceeds the
 * bound, and the counters add up. Also: unload during in-flight requests, a corrupt avatar
 * that fails alone, LRU vs LFU, memory budget, idle unload, discovery and id checks. */
#include "avatar/avatar.h"
#include "core/core.h"
#include "image/image.h"
#include "pipeline/pipeline.h"
#include "registry/registry.h"
#include "test.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

#define NAV 1000
#define FW 64
#define FH 64
#define NF 2

static char root[256];
static char unet_abs[4096];

static void mark_of(int k, uint8_t px[3])
{
    px[0] = (uint8_t)(k & 0xff);
    px[1] = (uint8_t)((k >> 8) & 0xff);
    px[2] = 77;
}

static void write_avatar(int k, bool corrupt)
{
    char dir[512], p[640];
    lip_err err = {0};
    snprintf(dir, sizeof dir, "%s/av%04d/frames", root, k);
    lip_dir_make(dir, &err);
    lip_image img = {0};
    lip_image_alloc(&img, FW, FH, &err);
    uint8_t m[3];
    mark_of(k, m);
    for (int i = 0; i < FW * FH; i++) memcpy(img.data + 3 * i, m, 3);
    lip_buf b = {0};
    lip_png_encode(&img, 1, &b, &err);
    for (int f = 0; f < NF; f++) {
        snprintf(p, sizeof p, "%s/%06d.png", dir, f);
        lip_file_write_atomic(p, corrupt ? (const void *)"\x89PNG\r\n\x1a\nxx" : b.data, corrupt ? 10 : b.len, &err);
    }
    lip_buf_free(&b);
    lip_image_free(&img);
    snprintf(p, sizeof p, "%s/av%04d/crop_rects.json", root, k);
    const char *rects = "[[16,16,48,48],[16,16,48,48]]";
    lip_file_write_atomic(p, rects, strlen(rects), &err);
    snprintf(p, sizeof p, "%s/av%04d/unet.onnx", root, k);
    if (symlink(unet_abs, p) != 0) CHECK(0);
}

static lip_registry *new_registry(int max_models, int policy)
{
    lip_registry_opts o = lip_registry_opts_default();
    o.models_root = root;
    o.max_models = max_models;
    o.policy = policy;
    o.avatar.engine.intra_threads = 1;
    o.avatar.decode_cache_frames = 0;
    lip_err err = {0};
    lip_registry *r = lip_registry_new(&o, &err);
    CHECK_MSG(r != NULL, "%s", err.msg);
    return r;
}

typedef struct client {
    lip_registry *r;
    lip_pipeline *p;
    unsigned seed;
    int requests, wrong, failed;
    atomic_int *max_loaded;
    const double *cdf;
} client;

static int zipf_pick(const double *cdf, unsigned *seed)
{
    *seed = *seed * 1103515245u + 12345u;
    double u = (double)((*seed >> 8) & 0xffffff) / (double)0x1000000;
    int lo = 0, hi = NAV - 1;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (cdf[mid] < u) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

static void *client_run(void *arg)
{
    client *c = arg;
    float aud[LIP_UNET_AUDIO_FLOATS] = {0};
    for (int i = 0; i < c->requests; i++) {
        int k = zipf_pick(c->cdf, &c->seed);
        char id[32];
        snprintf(id, sizeof id, "av%04d", k);
        lip_avatar *a = NULL;
        lip_err err = {0};
        if (lip_registry_acquire(c->r, id, false, &a, NULL, &err)) {
            c->failed++;
            continue;
        }
        lip_registry_totals t;
        lip_registry_totals_get(c->r, &t);
        int cur = atomic_load(c->max_loaded);
        while (t.loaded > cur && !atomic_compare_exchange_weak(c->max_loaded, &cur, t.loaded)) {
        }
        lip_request rq = {.batch = 1, .start_frame = i, .audio = aud, .n_audio = 1, .format = LIP_OUT_BGR};
        lip_result res;
        if (lip_pipeline_run(c->p, a, &rq, &res, &err)) c->failed++;
        else {
            uint8_t m[3];
            mark_of(k, m);
            /* Pixel (2,2) lies outside the crop rect: it must be this avatar's mark. */
            if (memcmp(res.frames[0].data + (2 * FW + 2) * 3, m, 3) != 0) c->wrong++;
        }
        lip_registry_release(c->r, a, 1, res.t.inference_ms);
        lip_result_free(&res);
    }
    return NULL;
}

static void t_thousand_avatars_zipf(void)
{
    lip_registry *r = new_registry(20, LIP_EVICT_LFU);
    lip_err err = {0};
    int known = lip_registry_scan(r, &err);
    CHECK_MSG(known == NAV + 1, "scan found %d avatars, want %d", known, NAV + 1);
    lip_pipeline_opts po = lip_pipeline_opts_default();
    po.slots = 8;
    po.threads = 2;
    lip_pipeline *p = lip_pipeline_new(&po, &err);
    double *cdf = lip_malloc(NAV * sizeof(double)), s = 0;
    for (int i = 0; i < NAV; i++) s += 1.0 / pow(i + 1, 1.1);
    double acc = 0;
    for (int i = 0; i < NAV; i++) cdf[i] = (acc += 1.0 / pow(i + 1, 1.1) / s);
    atomic_int max_loaded = 0;
    client cl[8];
    pthread_t th[8];
    for (int i = 0; i < 8; i++) {
        cl[i] = (client){.r = r, .p = p, .seed = 1234u + (unsigned)i * 77u, .requests = 60,
                         .max_loaded = &max_loaded, .cdf = cdf};
        pthread_create(&th[i], NULL, client_run, &cl[i]);
    }
    int wrong = 0, failed = 0, total = 0;
    for (int i = 0; i < 8; i++) {
        pthread_join(th[i], NULL);
        wrong += cl[i].wrong;
        failed += cl[i].failed;
        total += cl[i].requests;
    }
    lip_registry_totals t;
    lip_registry_totals_get(r, &t);
    printf("# %d requests: hits %lld misses %lld loads %lld evictions %lld, max loaded %d\n", total,
           (long long)t.hits, (long long)t.misses, (long long)t.loads, (long long)t.evictions,
           atomic_load(&max_loaded));
    CHECK_MSG(wrong == 0, "%d answers carried another avatar's mark", wrong);
    CHECK_MSG(failed == 0, "%d requests failed", failed);
    CHECK(atomic_load(&max_loaded) <= 20);
    CHECK(t.loaded <= 20);
    CHECK(t.hits + t.misses == total);
    CHECK(t.loads - t.evictions == t.loaded);
    CHECK(t.evictions > 0);
    /* Per-model stats add up to the totals. */
    lip_model_stats *ms;
    int n;
    CHECK_RC(lip_registry_list(r, &ms, &n));
    int64_t req = 0, frames = 0;
    for (int i = 0; i < n; i++) {
        req += ms[i].requests;
        frames += ms[i].frames;
        if (i) CHECK(strcmp(ms[i - 1].id, ms[i].id) < 0);
    }
    CHECK(req == total && frames == total);
    lip_free(ms);
    lip_free(cdf);
    lip_pipeline_free(p);
    lip_registry_free(r);
}

/* An avatar unloaded while a request holds it stays valid for that request. */
static void t_unload_in_flight(void)
{
    lip_registry *r = new_registry(0, LIP_EVICT_LRU);
    lip_err err = {0};
    lip_avatar *a = NULL;
    CHECK_RC(lip_registry_acquire(r, "av0003", false, &a, NULL, &err));
    CHECK_RC(lip_registry_unload(r, "av0003", &err));
    lip_model_stats st;
    CHECK_RC(lip_registry_stats(r, "av0003", &st, &err));
    CHECK(!st.loaded);
    lip_pipeline *p = lip_pipeline_new(NULL, &err);
    float aud[LIP_UNET_AUDIO_FLOATS] = {0};
    lip_request rq = {.batch = 2, .audio = aud, .n_audio = 1, .format = LIP_OUT_BGR};
    lip_result res;
    CHECK_RC(lip_pipeline_run(p, a, &rq, &res, &err));
    uint8_t m[3];
    mark_of(3, m);
    CHECK(res.count == 2 && memcmp(res.frames[1].data, m, 3) == 0);
    lip_result_free(&res);
    lip_registry_release(r, a, 2, 0);
    /* Loads again on the next use. */
    lip_acquire_info info;
    CHECK_RC(lip_registry_acquire(r, "av0003", false, &a, &info, &err));
    CHECK(info.loaded_now);
    lip_registry_release(r, a, 0, 0);
    lip_pipeline_free(p);
    lip_registry_free(r);
}

static void t_corrupt_and_errors(void)
{
    lip_registry *r = new_registry(0, LIP_EVICT_LFU);
    lip_err err = {0};
    lip_avatar *a = NULL;
    int rc = lip_registry_acquire(r, "broken", false, &a, NULL, &err);
    CHECK_MSG(rc == LIP_EFORMAT && strstr(err.msg, "broken"), "rc %d: %s", rc, err.msg);
    lip_model_stats st;
    CHECK_RC(lip_registry_stats(r, "broken", &st, &err));
    CHECK(!st.loaded && st.last_error[0]);
    CHECK_RC(lip_registry_acquire(r, "av0001", false, &a, NULL, &err)); /* others keep serving */
    lip_registry_release(r, a, 0, 0);
    CHECK(lip_registry_acquire(r, "nope", false, &a, NULL, &err) == LIP_ENOTFOUND);
    CHECK(lip_registry_acquire(r, "../etc", false, &a, NULL, &err) == LIP_EINVAL);
    CHECK(lip_registry_acquire(r, "..", false, &a, NULL, &err) == LIP_EINVAL);
    CHECK(lip_registry_unload(r, "nope", &err) == LIP_ENOTFOUND);
    CHECK(lip_registry_add(r, "bad/id", "x", NULL, false, -1, &err) == LIP_EINVAL);
    lip_registry_free(r);
    /* Auto-load off: a known but unloaded avatar is a precondition failure until loaded. */
    lip_registry_opts o = lip_registry_opts_default();
    o.models_root = root;
    o.auto_load = false;
    r = lip_registry_new(&o, &err);
    CHECK(lip_registry_acquire(r, "av0002", false, &a, NULL, &err) == LIP_EPRECOND);
    bool already = true;
    CHECK_RC(lip_registry_load(r, "av0002", false, -1, NULL, &already, &err));
    CHECK(!already);
    CHECK_RC(lip_registry_load(r, "av0002", false, -1, NULL, &already, &err));
    CHECK(already);
    CHECK_RC(lip_registry_acquire(r, "av0002", false, &a, NULL, &err));
    lip_registry_release(r, a, 0, 0);
    lip_registry_free(r);
}

/* Capacity 2 with both loaded avatars held: a third is refused, not over-committed. Pinned
 * avatars are never evicted. */
static void t_capacity_and_pinning(void)
{
    lip_registry *r = new_registry(2, LIP_EVICT_LRU);
    lip_err err = {0};
    CHECK_RC(lip_registry_add(r, "pinned", "av0010", NULL, true, -1, &err));
    lip_avatar *a = NULL, *b = NULL;
    CHECK_RC(lip_registry_acquire(r, "av0011", false, &a, NULL, &err));
    CHECK(lip_registry_acquire(r, "av0012", false, &b, NULL, &err) == LIP_EBUSY);
    lip_registry_release(r, a, 0, 0);
    CHECK_RC(lip_registry_acquire(r, "av0012", false, &b, NULL, &err)); /* evicts av0011 */
    lip_registry_release(r, b, 0, 0);
    lip_model_stats s;
    lip_registry_stats(r, "pinned", &s, &err);
    CHECK(s.loaded && s.pinned);
    lip_registry_stats(r, "av0011", &s, &err);
    CHECK(!s.loaded && s.evictions == 1);
    lip_registry_free(r);
}

/* LRU evicts the least recently used; LFU keeps the frequently used one. */
static void t_lru_vs_lfu(void)
{
    for (int pol = 0; pol < 2; pol++) {
        lip_registry *r = new_registry(2, pol == 0 ? LIP_EVICT_LFU : LIP_EVICT_LRU);
        lip_err err = {0};
        lip_avatar *a;
        for (int i = 0; i < 30; i++) { /* av0020 used often */
            CHECK_RC(lip_registry_acquire(r, "av0020", false, &a, NULL, &err));
            lip_registry_release(r, a, 0, 0);
        }
        lip_time_sleep_ms(5);
        CHECK_RC(lip_registry_acquire(r, "av0021", false, &a, NULL, &err));
        lip_registry_release(r, a, 0, 0);
        lip_time_sleep_ms(5);
        CHECK_RC(lip_registry_acquire(r, "av0022", false, &a, NULL, &err)); /* must evict one */
        lip_registry_release(r, a, 0, 0);
        lip_model_stats s20, s21;
        lip_registry_stats(r, "av0020", &s20, &err);
        lip_registry_stats(r, "av0021", &s21, &err);
        if (pol == 0) CHECK_MSG(s20.loaded && !s21.loaded, "LFU should keep the frequent avatar");
        else CHECK_MSG(!s20.loaded && s21.loaded, "LRU should evict the least recent avatar");
        lip_registry_free(r);
    }
}

/* A memory budget of about two avatars keeps at most that much loaded. */
static void t_memory_budget(void)
{
    lip_registry *r = new_registry(0, LIP_EVICT_LRU);
    lip_err err = {0};
    lip_avatar *a;
    CHECK_RC(lip_registry_acquire(r, "av0030", false, &a, NULL, &err));
    size_t one = lip_avatar_memory_bytes(a);
    lip_registry_release(r, a, 0, 0);
    lip_registry_free(r);
    lip_registry_opts o = lip_registry_opts_default();
    o.models_root = root;
    o.max_memory_gb = (double)(one * 2 + one / 2) / (1024.0 * 1024.0 * 1024.0);
    o.avatar.decode_cache_frames = 0;
    r = lip_registry_new(&o, &err);
    for (int i = 0; i < 6; i++) {
        char id[16];
        snprintf(id, sizeof id, "av%04d", 30 + i);
        CHECK_RC(lip_registry_acquire(r, id, false, &a, NULL, &err));
        lip_registry_release(r, a, 0, 0);
        lip_registry_totals t;
        lip_registry_totals_get(r, &t);
        CHECK_MSG(t.memory_bytes <= t.max_memory_bytes, "%zu > %zu", t.memory_bytes, t.max_memory_bytes);
        CHECK(t.loaded <= 2);
    }
    lip_registry_free(r);
}

static void t_idle_unload(void)
{
    lip_registry_opts o = lip_registry_opts_default();
    o.models_root = root;
    o.idle_timeout_min = 0.0005; /* 30 ms */
    lip_err err = {0};
    lip_registry *r = lip_registry_new(&o, &err);
    lip_avatar *a;
    CHECK_RC(lip_registry_acquire(r, "av0040", false, &a, NULL, &err));
    CHECK(lip_registry_tick(r) == 0); /* held: never unloaded */
    lip_registry_release(r, a, 0, 0);
    lip_time_sleep_ms(80);
    CHECK(lip_registry_tick(r) == 1);
    lip_model_stats s;
    lip_registry_stats(r, "av0040", &s, &err);
    CHECK(!s.loaded);
    lip_registry_free(r);
}

int main(void)
{
    if (!realpath(test_model("unet_tiny.onnx"), unet_abs)) {
        printf("# models missing: run `make models`\n0 passed, 1 failed\n");
        return 1;
    }
    snprintf(root, sizeof root, "/tmp/lipsync-test-registry-%ld", (long)getpid());
    double t0 = lip_time_ms();
    for (int k = 0; k < NAV; k++) write_avatar(k, false);
    char p[512];
    snprintf(p, sizeof p, "%s/av%04d", root, NAV);
    char b[512];
    snprintf(b, sizeof b, "%s/broken", root);
    write_avatar(NAV, true);
    if (rename(p, b) != 0) printf("# rename failed\n");
    printf("# wrote %d avatars in %.0f ms\n", NAV + 1, lip_time_ms() - t0);
    lip_log_set_level(LIP_LOG_ERROR);
    RUN(t_thousand_avatars_zipf);
    RUN(t_unload_in_flight);
    RUN(t_corrupt_and_errors);
    RUN(t_capacity_and_pinning);
    RUN(t_lru_vs_lfu);
    RUN(t_memory_budget);
    RUN(t_idle_unload);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    if (system(cmd) != 0) printf("# could not remove %s\n", root);
    return test_summary();
}
