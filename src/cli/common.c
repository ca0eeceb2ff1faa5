/* SPDX-License-Identifier: MIT */
/* cli/common.c: helpers that more than one command or benchmark file needs: the input audio by
 * file type, an avatar with its pipeline, and the parts of the gRPC benchmarks (number and
 * client-list flags, servers on loopback, the request they send, timed concurrent cases). */
#include "audio/audio.h"
#include "avatar/avatar.h"
#include "cli/cli.h"
#include "core/core.h"
#include "media/media.h"
#include "pipeline/pipeline.h"
#include "rpc/rpc.h"
#include "service/service.h"

#include "monolithic.pb-c.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

bool lip_cli_ends_with(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && strcasecmp(s + a - b, suf) == 0;
}

/* A .npy of float PCM (16 kHz assumed). */
static int load_npy(const char *path, float **pcm, size_t *n, lip_err *err)
{
    lip_npy a;
    int rc = lip_npy_load(path, &a, err);
    if (rc) return lip_err_prefix(err, "%s", path);
    if (a.ndim != 1 || (a.dtype != LIP_DT_F32 && a.dtype != LIP_DT_F64)) {
        lip_npy_free(&a);
        return lip_err_set(err, LIP_EFORMAT, "%s: a PCM .npy must be a 1-D float32/float64 array "
                           "of 16 kHz samples, got %d-D", path, a.ndim);
    }
    rc = lip_npy_to_f32(&a, err);
    if (rc) {
        lip_npy_free(&a);
        return rc;
    }
    *pcm = a.data;
    *n = a.count;
    return 0;
}

int lip_cli_load_audio(const char *path, int kinds, float **pcm, size_t *n, lip_err *err)
{
    if ((kinds & LIP_CLI_AUDIO_NPY) && lip_cli_ends_with(path, ".npy")) return load_npy(path, pcm, n, err);
    if (!(kinds & LIP_CLI_AUDIO_FFMPEG) || lip_cli_ends_with(path, ".wav"))
        return lip_audio_wav_load(path, pcm, n, err);
    return lip_media_load_audio(path, pcm, n, err);
}

int lip_cli_avatar_pipeline(const char *dir, const char *id, const lip_avatar_paths *ap,
                            const char *provider, const lip_pipeline_opts *po, lip_avatar **av,
                            lip_pipeline **pl, lip_err *err)
{
    lip_avatar_opts ao = lip_avatar_opts_default();
    ao.engine.provider = provider;
    lip_pipeline_opts o = *po;
    o.encoder_engine.provider = provider;
    o.slots = 1;
    *pl = NULL;
    if (!(*av = lip_avatar_load(dir, id, ap, &ao, err)) || !(*pl = lip_pipeline_new(&o, err))) {
        lip_avatar_unref(*av);
        *av = NULL;
        return err->code ? err->code : LIP_EINTERNAL;
    }
    return 0;
}

int lip_cli_api_key(const char *cmd, const char *file, char *buf, size_t n)
{
    buf[0] = 0;
    if (!file) {
        const char *e = getenv("LIPSYNC_API_KEY");
        if (e && *e) lip_strlcpy(buf, e, n);
        return 0;
    }
    uint8_t *d = NULL;
    size_t len = 0;
    lip_err err = {0};
    if (lip_file_read(file, 4096, &d, &len, &err)) {
        lip_cli_fail(cmd, "API key: %s", err.msg);
        return 2;
    }
    size_t k = strcspn((const char *)d, "\r\n");
    int rc = 0;
    if (k == 0 || k >= n) {
        lip_cli_fail(cmd, "API key file '%s': first line must hold 1-%zu characters", file, n - 1);
        rc = 2;
    } else {
        memcpy(buf, d, k);
        buf[k] = 0;
    }
    memset(d, 0, len);
    lip_free(d);
    return rc;
}

int lip_cli_choice(const char *cmd, const char *flag, const char *arg, const char *a,
                   const char *b)
{
    if (strcmp(arg, a) == 0) return 0;
    if (strcmp(arg, b) == 0) return 1;
    lip_cli_fail(cmd, "--%s takes %s or %s, not '%s'", flag, a, b, arg);
    return -1;
}

int lip_cli_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

double lip_cli_percentile(const double *sorted, int n, double p)
{
    int i = (int)ceil(p / 100.0 * n) - 1;
    return sorted[LIP_MAX(0, LIP_MIN(n - 1, i))];
}

int lip_cli_bench_long(const char *arg, long lo, long hi, long *v)
{
    if (!lip_parse_long(arg, lo, hi, v)) return 0;
    lip_cli_fail("bench", "bad number '%s'", arg);
    return 2;
}

int lip_cli_bench_clients(const char *arg, long max, int *levels, int cap, int *nlev, int *maxc)
{
    char list[128];
    long v;
    *nlev = 0;
    *maxc = 1;
    lip_strlcpy(list, arg, sizeof list);
    for (char *save = NULL, *t = strtok_r(list, ",", &save); t && *nlev < cap;
         t = strtok_r(NULL, ",", &save)) {
        if (lip_parse_long(t, 1, max, &v)) {
            lip_cli_fail("bench", "bad client count '%s' (1-%ld)", t, max);
            return 2;
        }
        levels[(*nlev)++] = (int)v;
        *maxc = LIP_MAX(*maxc, (int)v);
    }
    return 0;
}

int lip_cli_bench_server(const lip_service_opts *so, const char *service, int threads, int queued,
                         lip_service **sv, lip_rpc_server **srv, lip_err *err)
{
    lip_rpc_opts ro = lip_rpc_opts_default();
    ro.host = "127.0.0.1";
    ro.port = 0;
    ro.compute_threads = threads;
    ro.max_queued = queued;
    lip_service_opts o = *so;
    o.pipeline_slots = threads;
    if (!(*sv = lip_service_new(&o, err)) || !(*srv = lip_rpc_server_new(&ro, err)) ||
        lip_service_register(*sv, *srv, service, err) || lip_rpc_server_start(*srv, err))
        return err->code ? err->code : LIP_EINTERNAL;
    lip_service_update_health(*sv, *srv);
    return 0;
}

float *lip_cli_bench_speech(int batch, size_t *n)
{
    *n = (size_t)(batch + 15) * 640;
    float *pcm = lip_malloc(*n * sizeof(float));
    for (size_t i = 0; pcm && i < *n; i++)
        pcm[i] = 0.3f * (float)sin(2 * M_PI * 220.0 * (double)i / 16000.0) *
                 (0.5f + 0.5f * (float)sin(2 * M_PI * 3.0 * (double)i / 16000.0));
    return pcm;
}

int lip_cli_bench_request(const char *model, int batch, const float *pcm, size_t n_pcm,
                          const uint8_t *vis, size_t vis_len, lip_rpc_buf *out, lip_err *err)
{
    Monolithic__CompositeBatchRequest q = MONOLITHIC__COMPOSITE_BATCH_REQUEST__INIT;
    q.model_id = (char *)model;
    q.raw_audio = (ProtobufCBinaryData){n_pcm * sizeof(float), (uint8_t *)pcm};
    q.batch_size = batch;
    q.start_frame_idx = 8;
    q.sample_rate = 16000;
    if (vis) q.visual_frames = (ProtobufCBinaryData){vis_len, (uint8_t *)vis};
    return lip_rpc_pack(&q.base, out, err);
}

int lip_cli_bench_unary(lip_rpc_client *cl, const char *path, const uint8_t *req, size_t len,
                        char *why, size_t why_len)
{
    lip_rpc_buf r = {0};
    lip_rpc_status st = {0};
    lip_err err = {0};
    int rc = lip_rpc_client_unary(cl, path, req, len, 120000, &r, &st, &err);
    lip_free(r.data);
    if (!rc && st.code == GRPC_STATUS_OK) return 0;
    snprintf(why, why_len, "%s", rc ? err.msg : st.details);
    return 1;
}

typedef struct bench_thread {
    lip_cli_bench_call call;
    void *arg;
    int index, requests;
    double *lat; /* [requests] */
    int failures;
    char why[LIP_ERRMSG_MAX];
} bench_thread;

static void *bench_thread_main(void *p)
{
    bench_thread *t = p;
    for (int i = 0; i < t->requests; i++) {
        double t0 = lip_time_ms();
        if (t->call(t->arg, t->index, t->why, sizeof t->why)) t->failures++;
        t->lat[i] = lip_time_ms() - t0;
    }
    return NULL;
}

void lip_cli_bench_case_header(int width)
{
    printf("%-*s %-8s %-6s %10s %10s %10s %8s\n", width, "case", "clients", "batch", "frames/s",
           "p50_ms", "p99_ms", "failed");
}

int lip_cli_bench_case(const char *name, int width, int conc, int requests, int batch,
                       lip_cli_bench_call call, void *arg)
{
    bench_thread *w = lip_calloc((size_t)conc, sizeof *w);
    pthread_t *th = lip_calloc((size_t)conc, sizeof *th);
    double *all = lip_calloc((size_t)conc * (size_t)requests, sizeof *all);
    int rc = 1;
    if (!w || !th || !all) goto out;
    double t0 = lip_time_ms();
    int started = 0;
    for (int i = 0; i < conc; i++) {
        w[i] = (bench_thread){.call = call, .arg = arg, .index = i, .requests = requests,
                              .lat = all + (size_t)i * requests};
        if (pthread_create(&th[i], NULL, bench_thread_main, &w[i]) != 0) break;
        started++;
    }
    int fails = 0;
    const char *msg = "";
    for (int i = 0; i < started; i++) {
        pthread_join(th[i], NULL);
        fails += w[i].failures;
        if (w[i].failures) msg = w[i].why;
    }
    double wall = lip_time_ms() - t0;
    int n = started * requests;
    if (n == 0) goto out;
    qsort(all, (size_t)n, sizeof *all, lip_cli_cmp_double);
    printf("%-*s %-8d %-6d %10.2f %10.1f %10.1f %8d%s%s\n", width, name, conc, batch,
           1000.0 * (n - fails) * batch / wall, lip_cli_percentile(all, n, 50),
           lip_cli_percentile(all, n, 99), fails, fails ? "  # " : "", msg);
    fflush(stdout);
    rc = 0;
out:
    lip_free(w);
    lip_free(th);
    lip_free(all);
    return rc;
}
