/* SPDX-License-Identifier: MIT */
/* cli/bench_separated.c: `lipsync bench separated`: the separated deployment (compositing
 * server -> gRPC round_robin -> K inference servers) against the monolithic server, in the same
 * run, on the same machine and avatar. All servers run in this process on loopback, each with
 * its own listener, service state and pipeline, exactly as `lipsync serve` builds them; clients
 * send InferBatchComposite (raw audio, server-side avatar) to the compositing server and to the
 * monolithic server in turn. Prints frames/s and p50/p99 latency per case (one parseable line
 * each) and the bytes on the wire per frame between compositing and inference, measured by the
 * compositing server's remote-inference counters. */
#include "cli/cli.h"
#include "core/core.h"
#include "rpc/rpc.h"
#include "service/service.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_INFERENCE 8

typedef struct sep_bench {
    lip_rpc_client **clients; /* the case's target: one connection per client thread */
    const char *path;
    const uint8_t *req;
    size_t req_len;
} sep_bench;

static int sep_call(void *arg, int thread, char *why, size_t why_len)
{
    sep_bench *b = arg;
    return lip_cli_bench_unary(b->clients[thread], b->path, b->req, b->req_len, why, why_len);
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: lipsync bench separated [--models-root avatars] [--model demo] [--batch 8]\n"
            "                               [--clients 1,4] [--requests 3] [--inference 2]\n"
            "                               [--encoder models/audio_encoder.onnx]\n"
            "Separated (compositing -> round_robin -> N inference servers) versus monolithic,\n"
            "all on loopback in this process; batch 1-25 (the compositing limit).\n");
}

int lip_bench_separated(int argc, char **argv)
{
    const char *models_root = "avatars", *model = "demo", *encoder = "models/audio_encoder.onnx";
    const char *clients_arg = "1,4";
    int batch = 8, requests = 3, ninf = 2;
    static const struct option lo[] = {{"models-root", required_argument, 0, 'r'},
                                       {"model", required_argument, 0, 'm'},
                                       {"batch", required_argument, 0, 'b'},
                                       {"clients", required_argument, 0, 'c'},
                                       {"requests", required_argument, 0, 'n'},
                                       {"inference", required_argument, 0, 'i'},
                                       {"encoder", required_argument, 0, 'e'},
                                       {"help", no_argument, 0, 'h'},
                                       {0, 0, 0, 0}};
    int c;
    long v;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        switch (c) {
        case 'r': models_root = optarg; break;
        case 'm': model = optarg; break;
        case 'e': encoder = optarg; break;
        case 'c': clients_arg = optarg; break;
        case 'h': usage(stdout); return 0;
        case 'b':
        case 'n':
        case 'i': {
            long hi = c == 'b' ? 25 : c == 'n' ? 1000 : MAX_INFERENCE;
            if (lip_parse_long(optarg, 1, hi, &v)) {
                lip_cli_fail("bench", "bad number '%s' for --%s (1-%ld)", optarg,
                             c == 'b' ? "batch" : c == 'n' ? "requests" : "inference", hi);
                return 2;
            }
            if (c == 'b') batch = (int)v;
            else if (c == 'n') requests = (int)v;
            else ninf = (int)v;
            break;
        }
        default: usage(stderr); return 2;
        }
    }
    int levels[16], nlev, maxc;
    if (lip_cli_bench_clients(clients_arg, 64, levels, 16, &nlev, &maxc)) return 2;
    lip_rpc_tune_malloc();
    lip_err err = {0};
    int rc = 1;
    lip_service *inf_sv[MAX_INFERENCE] = {0}, *comp_sv = NULL, *mono_sv = NULL;
    lip_rpc_server *inf_srv[MAX_INFERENCE] = {0}, *comp_srv = NULL, *mono_srv = NULL;
    lip_rpc_client **comp_cl = lip_calloc((size_t)maxc, sizeof *comp_cl);
    lip_rpc_client **mono_cl = lip_calloc((size_t)maxc, sizeof *mono_cl);
    float *pcm = NULL;
    lip_rpc_buf packed = {0};
    int threads = LIP_MAX(2, lip_cpu_count());
    if (!comp_cl || !mono_cl) goto out;

    /* Inference servers: the default model preloaded, in-process UNet, raw regions out. */
    lip_service_opts so = lip_service_opts_default();
    so.models_root = models_root;
    so.default_model = model;
    so.encoder_path = encoder;
    char url[512] = "ipv4:";
    for (int i = 0; i < ninf; i++) {
        if (lip_cli_bench_server(&so, "inference.InferenceService", threads, maxc, &inf_sv[i],
                                 &inf_srv[i], &err)) {
            lip_cli_fail("bench", "inference server %d: %s", i, err.msg);
            goto out;
        }
        size_t used = strlen(url);
        snprintf(url + used, sizeof url - used, "%s127.0.0.1:%d", i ? "," : "",
                 lip_rpc_server_port(inf_srv[i]));
    }
    /* Compositing: same avatar without its UNet, remote inference over the list. */
    lip_service_opts co = so;
    co.inference_url = url;
    co.inference_timeout_ms = 120000;
    co.inference_max_retries = 3;
    co.background_cache_frames = 600;
    if (lip_cli_bench_server(&co, "compositing.CompositingService", threads, maxc, &comp_sv,
                             &comp_srv, &err)) {
        lip_cli_fail("bench", "compositing server: %s", err.msg);
        goto out;
    }
    if (lip_cli_bench_server(&so, "monolithic.MonolithicService", threads, maxc, &mono_sv,
                             &mono_srv, &err)) {
        lip_cli_fail("bench", "monolithic server: %s", err.msg);
        goto out;
    }

    /* The request: stream frame 8 onwards, full §1.5 context of speech-like PCM. */
    size_t n_pcm;
    if (!(pcm = lip_cli_bench_speech(batch, &n_pcm))) goto out;
    if (lip_cli_bench_request(model, batch, pcm, n_pcm, NULL, 0, &packed, &err)) goto out;
    char ct[64], mt[64];
    snprintf(ct, sizeof ct, "127.0.0.1:%d", lip_rpc_server_port(comp_srv));
    snprintf(mt, sizeof mt, "127.0.0.1:%d", lip_rpc_server_port(mono_srv));
    for (int i = 0; i < maxc; i++)
        if (!(comp_cl[i] = lip_rpc_client_new(ct, 0, &err)) ||
            !(mono_cl[i] = lip_rpc_client_new(mt, 0, &err))) {
            lip_cli_fail("bench", "%s", err.msg);
            goto out;
        }
    sep_bench b = {.req = packed.data, .req_len = packed.len};

    /* Warm-up: each path once per connection (and every backend through round_robin). */
    static const char comp_path[] = "/compositing.CompositingService/InferBatchComposite";
    static const char mono_path[] = "/monolithic.MonolithicService/InferBatchComposite";
    for (int i = 0; i < LIP_MAX(maxc, ninf); i++) {
        for (int k = 0; k < 2; k++) {
            lip_rpc_buf r = {0};
            lip_rpc_status st = {0};
            if (lip_rpc_client_unary(k ? mono_cl[i % maxc] : comp_cl[i % maxc],
                                     k ? mono_path : comp_path, packed.data, packed.len, 120000,
                                     &r, &st, &err) ||
                st.code != GRPC_STATUS_OK) {
                lip_cli_fail("bench", "warm-up call failed: %s",
                             st.details[0] ? st.details : err.msg);
                lip_free(r.data);
                goto out;
            }
            lip_free(r.data);
        }
    }
    lip_service_remote_stats rs0, rs1;
    lip_service_remote_stats_get(comp_sv, &rs0);
    char machine[256];
    lip_cli_machine(machine, sizeof machine);
    printf("# bench separated: model %s, batch %d, %d requests per client, %d inference "
           "servers, %d compute threads per server, commit %s\n# machine: %s\n",
           model, batch, requests, ninf, threads, LIP_GIT_REV, machine);
    lip_cli_bench_case_header(11);
    for (int i = 0; i < nlev; i++) {
        b.path = comp_path;
        b.clients = comp_cl;
        lip_cli_bench_case("separated", 11, levels[i], requests, batch, sep_call, &b);
        b.path = mono_path;
        b.clients = mono_cl;
        lip_cli_bench_case("monolithic", 11, levels[i], requests, batch, sep_call, &b);
    }
    lip_service_remote_stats_get(comp_sv, &rs1);
    double frames = (double)(rs1.frames - rs0.frames);
    if (frames > 0)
        printf("# wire compositing<->inference per frame: sent %.0f bytes, received %.0f bytes "
               "(%lld calls, %lld failed); client request %.0f bytes per frame\n",
               (double)(rs1.bytes_sent - rs0.bytes_sent) / frames,
               (double)(rs1.bytes_received - rs0.bytes_received) / frames,
               (long long)(rs1.calls - rs0.calls), (long long)(rs1.failures - rs0.failures),
               (double)packed.len / batch);
    rc = 0;
out:
    for (int i = 0; i < maxc; i++) {
        if (comp_cl) lip_rpc_client_free(comp_cl[i]);
        if (mono_cl) lip_rpc_client_free(mono_cl[i]);
    }
    lip_free(comp_cl);
    lip_free(mono_cl);
    lip_rpc_server *srvs[] = {comp_srv, mono_srv};
    lip_service *svs[] = {comp_sv, mono_sv};
    /* Compositing before the inference servers it calls; each service before its server
     * (the remote-inference probe may set health on it). */
    for (int i = 0; i < 2; i++) {
        if (srvs[i]) lip_rpc_server_shutdown(srvs[i], 1000);
        lip_service_free(svs[i]);
        lip_rpc_server_free(srvs[i]);
    }
    for (int i = 0; i < ninf; i++) {
        if (inf_srv[i]) lip_rpc_server_shutdown(inf_srv[i], 1000);
        lip_service_free(inf_sv[i]);
        lip_rpc_server_free(inf_srv[i]);
    }
    lip_free(packed.data);
    lip_free(pcm);
    return rc;
}
