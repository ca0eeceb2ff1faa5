/* SPDX-License-Identifier: MIT */
/* cli/bench_serve.c: `lipsync bench serve`: what serving over gRPC costs compared with calling
 * the pipeline in-process, in the same run on the same avatar. For each concurrency level C,
 * C threads send monolithic InferBatchComposite requests (raw audio, server-side avatar) to a
 * server started in this process on loopback, each thread with its own connection; then C
 * threads run the same requests on an in-process pipeline. Prints frames/s and p50/p99 latency
 * per case (one parseable line each), and the bytes on the wire per frame for an audio-only
 * request versus one carrying client visual tensors. */
#include "avatar/avatar.h"
#include "cli/cli.h"
#include "core/core.h"
#include "pipeline/pipeline.h"
#include "rpc/rpc.h"
#include "service/service.h"

#include "monolithic.pb-c.h"

#include <getopt.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct bench {
    const char *models_root, *model, *encoder;
    int batch, requests;
    lip_rpc_client **clients; /* one per thread: separate connections */
    lip_pipeline *pipe;
    lip_avatar *avatar;
    uint8_t *req;
    size_t req_len;
    const float *pcm;
    size_t n_pcm;
    char path[128];
} bench;

typedef struct worker_arg {
    bench *b;
    int idx;
    bool grpc;
    double *lat; /* [requests] */
    int failures;
    char errmsg[LIP_ERRMSG_MAX];
} worker_arg;

static void *worker(void *p)
{
    worker_arg *w = p;
    bench *b = w->b;
    for (int i = 0; i < b->requests; i++) {
        double t0 = lip_time_ms();
        lip_err err = {0};
        if (w->grpc) {
            lip_rpc_buf r = {0};
            lip_rpc_status st = {0};
            int rc = lip_rpc_client_unary(b->clients[w->idx], b->path, b->req, b->req_len, 120000,
                                          &r, &st, &err);
            lip_free(r.data);
            if (rc || st.code != GRPC_STATUS_OK) {
                w->failures++;
                snprintf(w->errmsg, sizeof w->errmsg, "%s", rc ? err.msg : st.details);
            }
        } else {
            lip_request q = {0};
            q.batch = b->batch;
            q.start_frame = 8;
            q.pcm = b->pcm;
            q.n_pcm = b->n_pcm;
            q.pcm_mode = LIP_PCM_REQUEST;
            q.format = LIP_OUT_JPEG;
            lip_result res = {0};
            if (lip_pipeline_run(b->pipe, b->avatar, &q, &res, &err)) {
                w->failures++;
                snprintf(w->errmsg, sizeof w->errmsg, "%s", err.msg);
            }
            lip_result_free(&res);
        }
        w->lat[i] = lip_time_ms() - t0;
    }
    return NULL;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(const double *v, int n, double p)
{
    int i = (int)ceil(p / 100.0 * n) - 1;
    return v[LIP_MAX(0, LIP_MIN(n - 1, i))];
}

static int run_case(bench *b, int conc, bool grpc)
{
    worker_arg *w = lip_calloc((size_t)conc, sizeof *w);
    pthread_t *th = lip_calloc((size_t)conc, sizeof *th);
    double *all = lip_calloc((size_t)conc * (size_t)b->requests, sizeof *all);
    if (!w || !th || !all) {
        lip_free(w);
        lip_free(th);
        lip_free(all);
        return 1;
    }
    double t0 = lip_time_ms();
    for (int i = 0; i < conc; i++) {
        w[i] = (worker_arg){.b = b, .idx = i, .grpc = grpc, .lat = all + (size_t)i * b->requests};
        pthread_create(&th[i], NULL, worker, &w[i]);
    }
    int fails = 0;
    const char *msg = "";
    for (int i = 0; i < conc; i++) {
        pthread_join(th[i], NULL);
        fails += w[i].failures;
        if (w[i].failures) msg = w[i].errmsg;
    }
    double wall = lip_time_ms() - t0;
    int n = conc * b->requests;
    qsort(all, (size_t)n, sizeof *all, cmp_d);
    printf("%-10s %-8d %-6d %10.2f %10.1f %10.1f %8d%s%s\n", grpc ? "grpc" : "inprocess", conc,
           b->batch, 1000.0 * (n - fails) * b->batch / wall, pct(all, n, 50), pct(all, n, 99),
           fails, fails ? "  # " : "", msg);
    fflush(stdout);
    lip_free(w);
    lip_free(th);
    lip_free(all);
    return 0;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: lipsync bench serve [--models-root avatars] [--model demo] [--batch 8]\n"
               "                           [--clients 1,4,16] [--requests 3]\n"
               "                           [--encoder models/audio_encoder.onnx]\n");
}

int lip_bench_serve(int argc, char **argv)
{
    bench b = {.models_root = "avatars", .model = "demo", .encoder = "models/audio_encoder.onnx",
               .batch = 8, .requests = 3};
    const char *clients = "1,4,16";
    static const struct option lo[] = {{"models-root", required_argument, 0, 'r'},
                                       {"model", required_argument, 0, 'm'},
                                       {"batch", required_argument, 0, 'b'},
                                       {"clients", required_argument, 0, 'c'},
                                       {"requests", required_argument, 0, 'n'},
                                       {"encoder", required_argument, 0, 'e'},
                                       {0, 0, 0, 0}};
    int c;
    long v;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case 'r': b.models_root = optarg; break;
        case 'm': b.model = optarg; break;
        case 'e': b.encoder = optarg; break;
        case 'c': clients = optarg; break;
        case 'b':
        case 'n':
            if (lip_parse_long(optarg, 1, c == 'b' ? 32 : 1000, &v)) {
                lip_cli_fail("bench", "bad number '%s'", optarg);
                return 2;
            }
            if (c == 'b') b.batch = (int)v;
            else b.requests = (int)v;
            break;
        default: usage(stderr); return 2;
        }
    }
    int levels[16], nlev = 0, maxc = 1;
    char list[128];
    lip_strlcpy(list, clients, sizeof list);
    for (char *save = NULL, *t = strtok_r(list, ",", &save); t && nlev < 16;
         t = strtok_r(NULL, ",", &save)) {
        if (lip_parse_long(t, 1, 256, &v)) {
            lip_cli_fail("bench", "bad client count '%s' (1-256)", t);
            return 2;
        }
        levels[nlev++] = (int)v;
        maxc = LIP_MAX(maxc, (int)v);
    }
    lip_rpc_tune_malloc();
    lip_err err = {0};
    int rc = 1;
    lip_service *sv = NULL;
    lip_rpc_server *srv = NULL;
    float *pcm = NULL;
    Monolithic__CompositeBatchRequest q = MONOLITHIC__COMPOSITE_BATCH_REQUEST__INIT;
    lip_rpc_buf packed = {0}, packed_vis = {0};
    uint8_t *vis = NULL;

    /* The server: monolithic service, every client admitted (queue >= clients). */
    lip_service_opts so = lip_service_opts_default();
    so.models_root = b.models_root;
    so.default_model = b.model;
    so.encoder_path = b.encoder;
    lip_rpc_opts ro = lip_rpc_opts_default();
    ro.host = "127.0.0.1";
    ro.compute_threads = LIP_MAX(2, lip_cpu_count());
    ro.max_queued = maxc;
    so.pipeline_slots = ro.compute_threads;
    if (!(sv = lip_service_new(&so, &err)) || !(srv = lip_rpc_server_new(&ro, &err)) ||
        lip_service_register(sv, srv, "monolithic.MonolithicService", &err) ||
        lip_rpc_server_start(srv, &err)) {
        lip_cli_fail("bench", "%s", err.msg);
        goto out;
    }
    lip_service_update_health(sv, srv);
    /* The in-process side: its own pipeline and avatar, same options. */
    lip_pipeline_opts po = lip_pipeline_opts_default();
    po.encoder_path = b.encoder;
    po.slots = ro.compute_threads;
    char dir[1024];
    if (lip_path_join(dir, sizeof dir, b.models_root, b.model, &err) ||
        !(b.pipe = lip_pipeline_new(&po, &err))) {
        lip_cli_fail("bench", "%s", err.msg);
        goto out;
    }
    lip_avatar_opts ao = lip_avatar_opts_default();
    if (!(b.avatar = lip_avatar_load(dir, b.model, NULL, &ao, &err))) {
        lip_cli_fail("bench", "%s", err.msg);
        goto out;
    }
    /* Requests: stream frame 8 onwards, full §1.5 context of speech-like PCM. */
    b.n_pcm = (size_t)(b.batch + 15) * 640;
    pcm = lip_malloc(b.n_pcm * sizeof(float));
    vis = lip_calloc((size_t)b.batch, (size_t)LIP_UNET_VISUAL_FLOATS * 4);
    if (!pcm || !vis) goto out;
    for (size_t i = 0; i < b.n_pcm; i++)
        pcm[i] = 0.3f * (float)sin(2 * M_PI * 220.0 * (double)i / 16000.0) *
                 (0.5f + 0.5f * (float)sin(2 * M_PI * 3.0 * (double)i / 16000.0));
    b.pcm = pcm;
    q.model_id = (char *)b.model;
    q.raw_audio = (ProtobufCBinaryData){b.n_pcm * sizeof(float), (uint8_t *)pcm};
    q.batch_size = b.batch;
    q.start_frame_idx = 8;
    q.sample_rate = 16000;
    if (lip_rpc_pack(&q.base, &packed, &err)) goto out;
    q.visual_frames = (ProtobufCBinaryData){(size_t)b.batch * LIP_UNET_VISUAL_FLOATS * 4, vis};
    if (lip_rpc_pack(&q.base, &packed_vis, &err)) goto out;
    b.req = packed.data;
    b.req_len = packed.len;
    snprintf(b.path, sizeof b.path, "/monolithic.MonolithicService/InferBatchComposite");
    b.clients = lip_calloc((size_t)maxc, sizeof *b.clients);
    char target[64];
    snprintf(target, sizeof target, "127.0.0.1:%d", lip_rpc_server_port(srv));
    for (int i = 0; b.clients && i < maxc; i++)
        if (!(b.clients[i] = lip_rpc_client_new(target, 0, &err))) goto out;

    /* Warm-up: both paths once. */
    lip_rpc_buf r = {0};
    lip_rpc_status st = {0};
    if (lip_rpc_client_unary(b.clients[0], b.path, b.req, b.req_len, 120000, &r, &st, &err) ||
        st.code != GRPC_STATUS_OK) {
        lip_cli_fail("bench", "warm-up call failed: %s", st.details);
        goto out;
    }
    size_t resp_len = r.len;
    lip_free(r.data);
    printf("# bench serve: model %s, batch %d, %d requests per client, %d compute threads, "
           "commit %s\n", b.model, b.batch, b.requests, ro.compute_threads, LIP_GIT_REV);
    printf("# wire bytes per frame: request audio-only %.0f, request with client tensors %.0f, "
           "response (JPEG) %.0f\n", (double)packed.len / b.batch,
           (double)packed_vis.len / b.batch, (double)resp_len / b.batch);
    printf("%-10s %-8s %-6s %10s %10s %10s %8s\n", "case", "clients", "batch", "frames/s",
           "p50_ms", "p99_ms", "failed");
    for (int i = 0; i < nlev; i++) {
        run_case(&b, levels[i], true);
        run_case(&b, levels[i], false);
    }
    rc = 0;
out:
    for (int i = 0; b.clients && i < maxc; i++) lip_rpc_client_free(b.clients[i]);
    lip_free(b.clients);
    if (srv) lip_rpc_server_shutdown(srv, 1000);
    lip_rpc_server_free(srv);
    lip_service_free(sv);
    lip_avatar_unref(b.avatar);
    lip_pipeline_free(b.pipe);
    lip_free(packed.data);
    lip_free(packed_vis.data);
    lip_free(pcm);
    lip_free(vis);
    return rc;
}
