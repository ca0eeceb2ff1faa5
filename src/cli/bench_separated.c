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

#include "monolithic.pb-c.h"

#include <getopt.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_INFERENCE 8

typedef struct sep_bench {
    int batch, requests;
    lip_rpc_client **clients; /* one per client thread and target */
    const char *path;
    const uint8_t *req;
    size_t req_len;
} sep_bench;

typedef struct sep_worker {
    sep_bench *b;
    lip_rpc_client *cl;
    double *lat;
    int failures;
    char errmsg[LIP_ERRMSG_MAX];
} sep_worker;

static void *sep_worker_main(void *p)
{
    sep_worker *w = p;
    for (int i = 0; i < w->b->requests; i++) {
        double t0 = lip_time_ms();
        lip_rpc_buf r = {0};
        lip_rpc_status st = {0};
        lip_err err = {0};
        int rc = lip_rpc_client_unary(w->cl, w->b->path, w->b->req, w->b->req_len, 120000, &r,
                                      &st, &err);
        lip_free(r.data);
        if (rc || st.code != GRPC_STATUS_OK) {
            w->failures++;
            snprintf(w->errmsg, sizeof w->errmsg, "%s", rc ? err.msg : st.details);
        }
        w->lat[i] = lip_time_ms() - t0;
    }
    return NULL;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double percentile(const double *v, int n, double p)
{
    int i = (int)ceil(p / 100.0 * n) - 1;
    return v[LIP_MAX(0, LIP_MIN(n - 1, i))];
}

/* conc threads, each on its own connection (clients[0..conc-1]), requests calls each. */
static int run_case(sep_bench *b, const char *name, lip_rpc_client **clients, int conc)
{
    sep_worker *w = lip_calloc((size_t)conc, sizeof *w);
    pthread_t *th = lip_calloc((size_t)conc, sizeof *th);
    double *all = lip_calloc((size_t)conc * (size_t)b->requests, sizeof *all);
    int rc = 1;
    if (!w || !th || !all) goto out;
    double t0 = lip_time_ms();
    int started = 0;
    for (int i = 0; i < conc; i++) {
        w[i] = (sep_worker){.b = b, .cl = clients[i], .lat = all + (size_t)i * b->requests};
        if (pthread_create(&th[i], NULL, sep_worker_main, &w[i]) != 0) break;
        started++;
    }
    int fails = 0;
    const char *msg = "";
    for (int i = 0; i < started; i++) {
        pthread_join(th[i], NULL);
        fails += w[i].failures;
        if (w[i].failures) msg = w[i].errmsg;
    }
    double wall = lip_time_ms() - t0;
    int n = started * b->requests;
    if (n == 0) goto out;
    qsort(all, (size_t)n, sizeof *all, cmp_double);
    printf("%-11s %-8d %-6d %10.2f %10.1f %10.1f %8d%s%s\n", name, conc, b->batch,
           1000.0 * (n - fails) * b->batch / wall, percentile(all, n, 50),
           percentile(all, n, 99), fails, fails ? "  # " : "", msg);
    fflush(stdout);
    rc = 0;
out:
    lip_free(w);
    lip_free(th);
    lip_free(all);
    return rc;
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

/* One server: a service with opts so, the named service registered, started on a free
 * loopback port. */
static int start_server(const lip_service_opts *so, const char *service, int threads, int queued,
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
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
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
    int levels[16], nlev = 0, maxc = 1;
    char list[128];
    lip_strlcpy(list, clients_arg, sizeof list);
    for (char *save = NULL, *t = strtok_r(list, ",", &save); t && nlev < 16;
         t = strtok_r(NULL, ",", &save)) {
        if (lip_parse_long(t, 1, 64, &v)) {
            lip_cli_fail("bench", "bad client count '%s' (1-64)", t);
            return 2;
        }
        levels[nlev++] = (int)v;
        maxc = LIP_MAX(maxc, (int)v);
    }
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
        if (start_server(&so, "inference.InferenceService", threads, maxc, &inf_sv[i],
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
    if (start_server(&co, "compositing.CompositingService", threads, maxc, &comp_sv, &comp_srv,
                     &err)) {
        lip_cli_fail("bench", "compositing server: %s", err.msg);
        goto out;
    }
    if (start_server(&so, "monolithic.MonolithicService", threads, maxc, &mono_sv, &mono_srv,
                     &err)) {
        lip_cli_fail("bench", "monolithic server: %s", err.msg);
        goto out;
    }

    /* The request: stream frame 8 onwards, full §1.5 context of speech-like PCM. */
    size_t n_pcm = (size_t)(batch + 15) * 640;
    pcm = lip_malloc(n_pcm * sizeof(float));
    if (!pcm) goto out;
    for (size_t i = 0; i < n_pcm; i++)
        pcm[i] = 0.3f * (float)sin(2 * M_PI * 220.0 * (double)i / 16000.0) *
                 (0.5f + 0.5f * (float)sin(2 * M_PI * 3.0 * (double)i / 16000.0));
    Monolithic__CompositeBatchRequest q = MONOLITHIC__COMPOSITE_BATCH_REQUEST__INIT;
    q.model_id = (char *)model;
    q.raw_audio = (ProtobufCBinaryData){n_pcm * sizeof(float), (uint8_t *)pcm};
    q.batch_size = batch;
    q.start_frame_idx = 8;
    q.sample_rate = 16000;
    if (lip_rpc_pack(&q.base, &packed, &err)) goto out;
    char ct[64], mt[64];
    snprintf(ct, sizeof ct, "127.0.0.1:%d", lip_rpc_server_port(comp_srv));
    snprintf(mt, sizeof mt, "127.0.0.1:%d", lip_rpc_server_port(mono_srv));
    for (int i = 0; i < maxc; i++)
        if (!(comp_cl[i] = lip_rpc_client_new(ct, 0, &err)) ||
            !(mono_cl[i] = lip_rpc_client_new(mt, 0, &err))) {
            lip_cli_fail("bench", "%s", err.msg);
            goto out;
        }
    sep_bench b = {.batch = batch, .requests = requests, .req = packed.data,
                   .req_len = packed.len};

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
    printf("%-11s %-8s %-6s %10s %10s %10s %8s\n", "case", "clients", "batch", "frames/s",
           "p50_ms", "p99_ms", "failed");
    for (int i = 0; i < nlev; i++) {
        b.path = comp_path;
        run_case(&b, "separated", comp_cl, levels[i]);
        b.path = mono_path;
        run_case(&b, "monolithic", mono_cl, levels[i]);
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
