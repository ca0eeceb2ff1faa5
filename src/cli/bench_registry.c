/* SPDX-License-Identifier: MIT */
/* cli/bench_registry.c: `lipsync bench registry`: the avatar cache on its own. Writes N small
 * avatars (tiny UNet) to a temporary models root and measures, in the same run: the cold load
 * of a real avatar (given with --avatar), the hit-path cost of acquire + release, the resident
 * memory each loaded avatar adds (RSS delta), and the hit rate of LFU versus LRU on the same
 * Zipf-distributed request sequence. */
#include "cli/cli.h"
#include "core/core.h"
#include "image/image.h"
#include "registry/registry.h"

#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void usage(FILE *f)
{
    fprintf(f, "usage: lipsync bench registry [--avatars 300] [--max-models 20] [--requests 3000]\n"
               "                              [--zipf 1.1] [--unet models/unet_tiny.onnx]\n"
               "                              [--avatar avatars/demo]\n");
}

static long rss_kb(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = 0, res = 0;
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &res) != 2) res = 0;
        fclose(f);
    }
    return res * (sysconf(_SC_PAGESIZE) / 1024);
}

static int write_avatars(const char *root, int n, const char *unet_abs, lip_err *err)
{
    lip_image img = {0};
    lip_buf png = {0};
    int rc = lip_image_alloc(&img, 64, 64, err);
    for (int k = 0; !rc && k < n; k++) {
        char dir[512], p[600];
        snprintf(dir, sizeof dir, "%s/av%05d/frames", root, k);
        if ((rc = lip_dir_make(dir, err))) break;
        memset(img.data, k & 0xff, (size_t)img.stride * 64);
        if ((rc = lip_png_encode(&img, 1, &png, err))) break;
        snprintf(p, sizeof p, "%s/000000.png", dir);
        if ((rc = lip_file_write_atomic(p, png.data, png.len, err))) break;
        snprintf(p, sizeof p, "%s/av%05d/crop_rects.json", root, k);
        if ((rc = lip_file_write_atomic(p, "[[16,16,48,48]]", 15, err))) break;
        snprintf(p, sizeof p, "%s/av%05d/unet.onnx", root, k);
        if (symlink(unet_abs, p) != 0) rc = lip_err_set(err, LIP_EIO, "cannot link %s", p);
    }
    lip_buf_free(&png);
    lip_image_free(&img);
    return rc;
}

/* Hit rate of one policy on a fixed Zipf sequence. */
static int run_policy(const char *root, int policy, int max_models, const int *seq, int nreq,
                      double *hit_rate, double *ms_total, lip_err *err)
{
    lip_registry_opts o = lip_registry_opts_default();
    o.models_root = root;
    o.max_models = max_models;
    o.policy = policy;
    o.avatar.engine.intra_threads = 1;
    o.avatar.decode_cache_frames = 0;
    lip_registry *r = lip_registry_new(&o, err);
    if (!r) return err->code;
    double t0 = lip_time_ms();
    int rc = 0;
    for (int i = 0; i < nreq && !rc; i++) {
        char id[32];
        snprintf(id, sizeof id, "av%05d", seq[i]);
        lip_avatar *a;
        if (!(rc = lip_registry_acquire(r, id, false, &a, NULL, err))) lip_registry_release(r, a, 1, 0);
    }
    *ms_total = lip_time_ms() - t0;
    lip_registry_totals t;
    lip_registry_totals_get(r, &t);
    *hit_rate = (double)t.hits / (double)(t.hits + t.misses);
    lip_registry_free(r);
    return rc;
}

int lip_bench_registry(int argc, char **argv)
{
    if (lip_cli_wants_help(argc, argv)) {
        usage(stdout);
        return 0;
    }
    int navatars = 300, max_models = 20, nreq = 3000;
    double s_zipf = 1.1;
    const char *unet = "models/unet_tiny.onnx", *real = "avatars/demo";
    static const struct option lo[] = {{"avatars", required_argument, 0, 'n'},
                                       {"max-models", required_argument, 0, 'm'},
                                       {"requests", required_argument, 0, 'r'},
                                       {"zipf", required_argument, 0, 'z'},
                                       {"unet", required_argument, 0, 'u'},
                                       {"avatar", required_argument, 0, 'a'},
                                       {0, 0, 0, 0}};
    int c;
    long v;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case 'n':
        case 'm':
        case 'r':
            if (lip_cli_bench_long(optarg, 1, 1000000, &v)) return 2;
            if (c == 'n') navatars = (int)v;
            else if (c == 'm') max_models = (int)v;
            else nreq = (int)v;
            break;
        case 'z':
            if (lip_parse_double(optarg, &s_zipf) || s_zipf <= 0) {
                lip_cli_fail("bench", "bad --zipf '%s'", optarg);
                return 2;
            }
            break;
        case 'u': unet = optarg; break;
        case 'a': real = optarg; break;
        default: usage(stderr); return 2;
        }
    }
    char unet_abs[4096], root[256];
    if (!realpath(unet, unet_abs)) {
        lip_cli_fail("bench", "model %s not found", unet);
        return 1;
    }
    snprintf(root, sizeof root, "/tmp/lipsync-bench-registry-%ld", (long)getpid());
    lip_err err = {0};
    lip_log_set_level(LIP_LOG_ERROR);
    char mach[256];
    lip_cli_machine(mach, sizeof mach);
    printf("# bench registry: %d avatars (%s), max_models %d, %d requests, zipf s=%.2f\n# machine: %s\n",
           navatars, unet, max_models, nreq, s_zipf, mach);
    int rc = write_avatars(root, navatars, unet_abs, &err);
    int *seq = lip_malloc((size_t)nreq * sizeof(int));
    double *cdf = lip_malloc((size_t)navatars * sizeof(double));
    if (!rc && (!seq || !cdf)) rc = lip_err_set(&err, LIP_ENOMEM, "out of memory");
    if (!rc) {
        double sum = 0, acc = 0;
        for (int i = 0; i < navatars; i++) sum += 1.0 / pow(i + 1, s_zipf);
        for (int i = 0; i < navatars; i++) cdf[i] = (acc += 1.0 / pow(i + 1, s_zipf) / sum);
        unsigned st = 12345;
        for (int i = 0; i < nreq; i++) {
            st = st * 1103515245u + 12345u;
            double u = (double)((st >> 8) & 0xffffff) / (double)0x1000000;
            int lo_ = 0, hi = navatars - 1;
            while (lo_ < hi) {
                int mid = (lo_ + hi) / 2;
                if (cdf[mid] < u) lo_ = mid + 1;
                else hi = mid;
            }
            seq[i] = lo_;
        }
    }
    /* Cold load and RSS of a real avatar (first, before other phases' freed memory can mask the
     * RSS growth). */
    if (!rc && lip_dir_exists(real)) {
        lip_registry_opts o = lip_registry_opts_default();
        char parent[4096], name[256];
        lip_strlcpy(parent, real, sizeof parent);
        char *slash = strrchr(parent, '/');
        if (slash) {
            lip_strlcpy(name, slash + 1, sizeof name);
            *slash = 0;
        } else {
            lip_strlcpy(name, parent, sizeof name);
            lip_strlcpy(parent, ".", sizeof parent);
        }
        o.models_root = parent;
        lip_registry *r = lip_registry_new(&o, &err);
        long before = rss_kb();
        double ms = 0;
        if (r && !lip_registry_load(r, name, false, -1, &ms, NULL, &err)) {
            lip_model_stats st;
            lip_registry_stats(r, name, &st, NULL);
            printf("case=cold_load avatar=%s frames=%d load_ms=%.1f rss_delta_mb=%.1f accounted_mb=%.1f\n",
                   real, st.frame_count, ms, (double)(rss_kb() - before) / 1024.0,
                   (double)st.memory_bytes / (1024.0 * 1024.0));
        } else {
            lip_cli_fail("bench", "cold load: %s", err.msg);
        }
        lip_registry_free(r);
    }
    /* Hit rate, LFU vs LRU, same sequence. */
    for (int pol = 0; !rc && pol < 2; pol++) {
        double hr = 0, ms = 0;
        rc = run_policy(root, pol == 0 ? LIP_EVICT_LFU : LIP_EVICT_LRU, max_models, seq, nreq, &hr, &ms, &err);
        if (!rc)
            printf("case=policy policy=%s hit_rate=%.4f requests=%d ms=%.1f\n", pol == 0 ? "lfu" : "lru",
                   hr, nreq, ms);
    }
    /* Hit path: acquire + release of a loaded avatar. */
    if (!rc) {
        lip_registry_opts o = lip_registry_opts_default();
        o.models_root = root;
        lip_registry *r = lip_registry_new(&o, &err);
        lip_avatar *a;
        if (!r || lip_registry_acquire(r, "av00000", false, &a, NULL, &err)) rc = err.code ? err.code : 1;
        else {
            lip_registry_release(r, a, 0, 0);
            int n = 200000;
            double t0 = lip_time_ms();
            for (int i = 0; i < n; i++) {
                lip_registry_acquire(r, "av00000", false, &a, NULL, NULL);
                lip_registry_release(r, a, 1, 0);
            }
            printf("case=hit_path ns_per_acquire_release=%.0f\n", (lip_time_ms() - t0) * 1e6 / n);
            /* RSS per loaded tiny avatar. */
            long before = rss_kb();
            int k = LIP_MIN(50, navatars);
            for (int i = 1; i <= k; i++) {
                char id[32];
                snprintf(id, sizeof id, "av%05d", i % navatars);
                if (!lip_registry_acquire(r, id, false, &a, NULL, NULL)) lip_registry_release(r, a, 0, 0);
            }
            printf("case=rss_tiny avatars=%d rss_delta_kb_per_avatar=%.0f\n", k,
                   (double)(rss_kb() - before) / k);
        }
        lip_registry_free(r);
    }
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    if (system(cmd) != 0) lip_log_warn("could not remove %s", root);
    lip_free(seq);
    lip_free(cdf);
    if (rc) lip_cli_fail("bench", "%s", err.msg);
    return rc ? 1 : 0;
}
