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

#include <getopt.h>
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

static int call_grpc(void *arg, int thread, char *why, size_t why_len)
{
    bench *b = arg;
    return lip_cli_bench_unary(b->clients[thread], b->path, b->req, b->req_len, why, why_len);
}

static int call_inprocess(void *arg, int thread, char *why, size_t why_len)
{
    (void)thread;
    bench *b = arg;
    lip_err err = {0};
    lip_request q = {0};
    q.batch = b->batch;
    q.start_frame = 8;
    q.pcm = b->pcm;
    q.n_pcm = b->n_pcm;
    q.pcm_mode = LIP_PCM_REQUEST;
    q.format = LIP_OUT_JPEG;
    lip_result res = {0};
    int rc = lip_pipeline_run(b->pipe, b->avatar, &q, &res, &err);
    if (rc) snprintf(why, why_len, "%s", err.msg);
    lip_result_free(&res);
    return rc;
}

static void run_case(bench *b, int conc, bool grpc)
{
    lip_cli_bench_case(grpc ? "grpc" : "inprocess", 10, conc, b->requests, b->batch,
                       grpc ? call_grpc : call_inprocess, b);
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
                                       {"help", no_argument, 0, 'h'},
                                       {0, 0, 0, 0}};
    int c;
    long v;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        switch (c) {
        case 'h': usage(stdout); return 0;
        case 'r': b.models_root = optarg; break;
        case 'm': b.model = optarg; break;
        case 'e': b.encoder = optarg; break;
        case 'c': clients = optarg; break;
        case 'b':
        case 'n':
            if (lip_cli_bench_long(optarg, 1, c == 'b' ? 32 : 1000, &v)) return 2;
            if (c == 'b') b.batch = (int)v;
            else b.requests = (int)v;
            break;
        default: usage(stderr); return 2;
        }
    }
    int levels[16], nlev, maxc;
    if (lip_cli_bench_clients(clients, 256, levels, 16, &nlev, &maxc)) return 2;
    lip_rpc_tune_malloc();
    lip_err err = {0};
    int rc = 1;
    lip_service *sv = NULL;
    lip_rpc_server *srv = NULL;
    float *pcm = NULL;
    lip_rpc_buf packed = {0}, packed_vis = {0};
    uint8_t *vis = NULL;

    /* The server: monolithic service, every client admitted (queue >= clients). */
    lip_service_opts so = lip_service_opts_default();
    so.models_root = b.models_root;
    so.default_model = b.model;
    so.encoder_path = b.encoder;
    int threads = LIP_MAX(2, lip_cpu_count());
    if (lip_cli_bench_server(&so, "monolithic.MonolithicService", threads, maxc, &sv, &srv, &err)) {
        lip_cli_fail("bench", "%s", err.msg);
        goto out;
    }
    /* The in-process side: its own pipeline and avatar, same options. */
    lip_pipeline_opts po = lip_pipeline_opts_default();
    po.encoder_path = b.encoder;
    po.slots = threads;
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
    pcm = lip_cli_bench_speech(b.batch, &b.n_pcm);
    vis = lip_calloc((size_t)b.batch, (size_t)LIP_UNET_VISUAL_FLOATS * 4);
    if (!pcm || !vis) goto out;
    b.pcm = pcm;
    if (lip_cli_bench_request(b.model, b.batch, pcm, b.n_pcm, NULL, 0, &packed, &err) ||
        lip_cli_bench_request(b.model, b.batch, pcm, b.n_pcm, vis,
                              (size_t)b.batch * LIP_UNET_VISUAL_FLOATS * 4, &packed_vis, &err))
        goto out;
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
           "commit %s\n", b.model, b.batch, b.requests, threads, LIP_GIT_REV);
    printf("# wire bytes per frame: request audio-only %.0f, request with client tensors %.0f, "
           "response (JPEG) %.0f\n", (double)packed.len / b.batch,
           (double)packed_vis.len / b.batch, (double)resp_len / b.batch);
    lip_cli_bench_case_header(10);
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
