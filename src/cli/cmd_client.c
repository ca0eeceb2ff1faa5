/* SPDX-License-Identifier: MIT */
/* cli/cmd_client.c: `lipsync client`: a command-line client for a running server.
 *   health  grpc.health.v1 Check (and the monolithic Health RPC)
 *   list    monolithic ListModels
 *   infer   monolithic InferBatchComposite with raw_audio cut from a WAV file per API.md §1.5;
 *           writes the returned JPEGs and prints the server's timings.
 * Exit status: 0 OK, 1 the call failed (the gRPC status is printed), 2 usage error. */
#include "audio/audio.h"
#include "cli/cli.h"
#include "core/core.h"
#include "rpc/rpc.h"

#include "health.pb-c.h"
#include "monolithic.pb-c.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(f,
            "usage: lipsync client <health|list|infer> [options]\n\n"
            "  --target HOST:PORT   server address (default 127.0.0.1:50053)\n"
            "  --port N             shorthand for --target 127.0.0.1:N\n"
            "  --timeout MS         deadline per call (default 60000)\n"
            "  --tls-ca FILE        use TLS, trusting the CAs in this PEM file\n"
            "  --tls-cert FILE --tls-key FILE   client certificate (mTLS)\n"
            "  --tls-name NAME      name expected in the server certificate (default: host)\n"
            "  --api-key-file FILE  send the API key in FILE (first line) as\n"
            "                       'authorization: Bearer'; or set LIPSYNC_API_KEY\n"
            "health [--service NAME]   grpc.health.v1 Check (\"\" = whole server)\n"
            "list                      ListModels\n"
            "infer --audio speech.wav [--model ID] [--start 0] [--batch 8] [--batches 1]\n"
            "      [--out DIR]         InferBatchComposite with raw audio; writes\n"
            "                          DIR/frame_<stream frame>.jpg and prints timings\n"
            "stream --audio speech.wav --out out.mp4 [--avatar ID] ...   lipsync.v1 Stream\n"
            "                          (see `lipsync client stream --help`)\n");
}

typedef struct opts {
    char target[256];
    double timeout_ms;
    const char *service, *audio, *model, *out;
    int start, batch, batches;
    const char *tls_ca, *tls_cert, *tls_key, *tls_name, *key_file;
} opts;

static int call(lip_rpc_client *c, const opts *o, const char *path, const ProtobufCMessage *req,
                lip_rpc_buf *resp)
{
    lip_rpc_buf q = {0};
    lip_err err = {0};
    if (lip_rpc_pack(req, &q, &err)) {
        lip_cli_fail("client", "%s", err.msg);
        return 1;
    }
    lip_rpc_status st = {0};
    int rc = lip_rpc_client_unary(c, path, q.data, q.len, o->timeout_ms, resp, &st, &err);
    lip_free(q.data);
    if (rc) {
        lip_cli_fail("client", "%s", err.msg);
        return 1;
    }
    if (st.code != GRPC_STATUS_OK) {
        lip_cli_fail("client", "%s failed: %s: %s", path, lip_rpc_status_name(st.code),
                     st.details);
        return 1;
    }
    return 0;
}

static const char *health_name(int s)
{
    static const char *const n[] = {"UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN"};
    return s >= 0 && s < 4 ? n[s] : "?";
}

static int do_health(lip_rpc_client *c, const opts *o)
{
    Grpc__Health__V1__HealthCheckRequest q = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    q.service = (char *)(o->service ? o->service : "");
    lip_rpc_buf r = {0};
    if (call(c, o, "/grpc.health.v1.Health/Check", &q.base, &r)) return 1;
    Grpc__Health__V1__HealthCheckResponse *h =
        grpc__health__v1__health_check_response__unpack(NULL, r.len, r.data);
    lip_free(r.data);
    if (!h) {
        lip_cli_fail("client", "cannot parse the health response");
        return 1;
    }
    printf("%s: %s\n", *q.service ? q.service : "(server)", health_name(h->status));
    int rc = h->status == 1 ? 0 : 1;
    grpc__health__v1__health_check_response__free_unpacked(h, NULL);
    return rc;
}

static int do_list(lip_rpc_client *c, const opts *o)
{
    Monolithic__ListModelsRequest q = MONOLITHIC__LIST_MODELS_REQUEST__INIT;
    lip_rpc_buf r = {0};
    if (call(c, o, "/monolithic.MonolithicService/ListModels", &q.base, &r)) return 1;
    Monolithic__ListModelsResponse *l = monolithic__list_models_response__unpack(NULL, r.len, r.data);
    lip_free(r.data);
    if (!l) {
        lip_cli_fail("client", "cannot parse the ListModels response");
        return 1;
    }
    printf("%-24s %-7s %6s %10s %9s %12s\n", "model", "loaded", "gpu", "memory_mb", "requests",
           "avg_ms");
    for (size_t i = 0; i < l->n_models; i++) {
        const Monolithic__ModelInfo *m = l->models[i];
        printf("%-24s %-7s %6d %10lld %9d %12.2f\n", m->model_id, m->loaded ? "yes" : "no",
               m->gpu_id, (long long)m->memory_mb, m->request_count, m->avg_inference_ms);
    }
    monolithic__list_models_response__free_unpacked(l, NULL);
    return 0;
}

static int do_infer(lip_rpc_client *c, const opts *o)
{
    if (!o->audio) {
        lip_cli_fail("client", "infer needs --audio FILE.wav");
        return 2;
    }
    float *pcm = NULL;
    size_t n = 0;
    lip_err err = {0};
    if (lip_audio_wav_load(o->audio, &pcm, &n, &err)) {
        lip_cli_fail("client", "%s", err.msg);
        return 1;
    }
    if (o->out && lip_dir_make(o->out, &err)) {
        lip_cli_fail("client", "%s", err.msg);
        lip_free(pcm);
        return 1;
    }
    int rc = 0;
    for (int k = 0; k < o->batches && !rc; k++) {
        int s = o->start + k * o->batch, B = o->batch;
        /* API.md §1.5: the context starts 8 frames before s (clamped at 0) and ends 7 frames
         * after the last frame; what the file lacks is simply not sent. */
        size_t a = (size_t)LIP_MAX(0, s - 8) * 640, e = (size_t)(s + B + 7) * 640;
        if (a > n) a = n;
        if (e > n) e = n;
        Monolithic__CompositeBatchRequest q = MONOLITHIC__COMPOSITE_BATCH_REQUEST__INIT;
        q.model_id = (char *)(o->model ? o->model : "");
        q.raw_audio.data = (uint8_t *)(pcm + a);
        q.raw_audio.len = (e - a) * sizeof(float);
        q.batch_size = B;
        q.start_frame_idx = s;
        q.sample_rate = 16000;
        lip_rpc_buf r = {0};
        double t0 = lip_time_ms();
        if (call(c, o, "/monolithic.MonolithicService/InferBatchComposite", &q.base, &r)) {
            rc = 1;
            break;
        }
        double rtt = lip_time_ms() - t0;
        Monolithic__CompositeBatchResponse *p =
            monolithic__composite_batch_response__unpack(NULL, r.len, r.data);
        lip_free(r.data);
        if (!p) {
            lip_cli_fail("client", "cannot parse the InferBatchComposite response");
            rc = 1;
            break;
        }
        size_t bytes = 0;
        for (size_t i = 0; i < p->n_composited_frames && !rc; i++) {
            bytes += p->composited_frames[i].len;
            if (!o->out) continue;
            char path[1024];
            snprintf(path, sizeof path, "%s/frame_%06d.jpg", o->out, s + (int)i);
            rc = lip_file_write_atomic(path, p->composited_frames[i].data,
                                       p->composited_frames[i].len, &err) ? 1 : 0;
            if (rc) lip_cli_fail("client", "%s", err.msg);
        }
        printf("frames %d-%d: %zu JPEGs, %zu bytes; server ms: total %.1f inference %.1f "
               "composite %.1f audio %.1f%s; round trip %.1f ms\n", s, s + B - 1,
               p->n_composited_frames, bytes, p->total_time_ms, p->inference_time_ms,
               p->composite_time_ms, p->audio_processing_ms,
               p->model_loaded ? " (model loaded by this call)" : "", rtt);
        monolithic__composite_batch_response__free_unpacked(p, NULL);
    }
    lip_free(pcm);
    return rc;
}

int lip_cli_client(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "stream") == 0) /* its own options and --help */
        return lip_cli_client_stream(argc - 1, argv + 1);
    if (argc < 2 || lip_cli_wants_help(argc, argv)) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *cmd = argv[1];
    opts o = {.timeout_ms = 60000, .start = 0, .batch = 8, .batches = 1};
    lip_strlcpy(o.target, "127.0.0.1:50053", sizeof o.target);
    static const struct option lo[] = {
        {"target", required_argument, 0, 'T'}, {"port", required_argument, 0, 'P'},
        {"timeout", required_argument, 0, 't'}, {"service", required_argument, 0, 's'},
        {"audio", required_argument, 0, 'a'},  {"model", required_argument, 0, 'm'},
        {"start", required_argument, 0, 'S'},  {"batch", required_argument, 0, 'b'},
        {"batches", required_argument, 0, 'n'}, {"out", required_argument, 0, 'o'},
        {"tls-ca", required_argument, 0, 'C'}, {"tls-cert", required_argument, 0, 'E'},
        {"tls-key", required_argument, 0, 'K'}, {"tls-name", required_argument, 0, 'N'},
        {"api-key-file", required_argument, 0, 'A'},
        {0, 0, 0, 0}};
    optind = 1;
    int c;
    long v;
    while ((c = getopt_long(argc - 1, argv + 1, "", lo, NULL)) != -1) {
        switch (c) {
        case 'T': lip_strlcpy(o.target, optarg, sizeof o.target); break;
        case 's': o.service = optarg; break;
        case 'a': o.audio = optarg; break;
        case 'm': o.model = optarg; break;
        case 'o': o.out = optarg; break;
        case 'C': o.tls_ca = optarg; break;
        case 'E': o.tls_cert = optarg; break;
        case 'K': o.tls_key = optarg; break;
        case 'N': o.tls_name = optarg; break;
        case 'A': o.key_file = optarg; break;
        case 'P':
        case 't':
        case 'S':
        case 'b':
        case 'n': {
            long lo_ = c == 'b' || c == 'n' ? 1 : 0, hi = c == 'P' ? 65535 : 100000000;
            if (c == 'b') hi = 64;
            if (lip_parse_long(optarg, lo_, hi, &v)) {
                lip_cli_fail("client", "bad number '%s' (expected %ld-%ld)", optarg, lo_, hi);
                return 2;
            }
            if (c == 'P') snprintf(o.target, sizeof o.target, "127.0.0.1:%ld", v);
            else if (c == 't') o.timeout_ms = (double)v;
            else if (c == 'S') o.start = (int)v;
            else if (c == 'b') o.batch = (int)v;
            else o.batches = (int)v;
            break;
        }
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc - 1) {
        lip_cli_fail("client", "unexpected argument '%s'", argv[optind + 1]);
        return 2;
    }
    int (*fn)(lip_rpc_client *, const opts *) = NULL;
    if (strcmp(cmd, "health") == 0) fn = do_health;
    else if (strcmp(cmd, "list") == 0) fn = do_list;
    else if (strcmp(cmd, "infer") == 0) fn = do_infer;
    if (!fn) {
        lip_cli_fail("client", "unknown subcommand '%s' (health, list, infer)", cmd);
        return 2;
    }
    lip_err err = {0};
    char key[1024];
    if (lip_cli_api_key("client", o.key_file, key, sizeof key)) return 2;
    lip_rpc_client_opts co = lip_rpc_client_opts_default();
    co.tls_ca = o.tls_ca;
    co.tls_cert = o.tls_cert;
    co.tls_key = o.tls_key;
    co.tls_target_name = o.tls_name;
    co.api_key = key[0] ? key : NULL;
    lip_rpc_client *cl = lip_rpc_client_new_opts(o.target, &co, &err);
    memset(key, 0, sizeof key);
    if (!cl) {
        lip_cli_fail("client", "%s", err.msg);
        return 1;
    }
    int rc = fn(cl, &o);
    lip_rpc_client_free(cl);
    return rc;
}
