/* SPDX-License-Identifier: MIT */
/* cli/cmd_bench.c: `lipsync bench <what>`: dispatches to the benchmarks in the library
 * (bench model lives here; the others register below as they land). */
#include "cli/cli.h"
#include "core/core.h"
#include "engine/engine.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>

static void usage(FILE *f)
{
    fprintf(f,
            "usage: lipsync bench model [--model models/unet328.onnx] [--batches 1,8,24]\n"
            "                           [--iters N] [--provider cpu|cuda|tensorrt|auto] [--threads N]\n\n"
            "model   runs a UNet-328 through ONNX Runtime at each batch size (random inputs,\n"
            "        warm-up first) and prints ms per batch and frames/s, one line per case.\n"
            "audio, pipeline, serve, encode, image, registry, separated, stream: see `lipsync bench <name> --help`.\n");
}

void lip_cli_cpu_model(char *buf, size_t n)
{
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    char line[256];
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "model name", 10) == 0 && strchr(line, ':')) {
            lip_strlcpy(buf, strchr(line, ':') + 2, n);
            buf[strcspn(buf, "\n")] = 0;
            break;
        }
    fclose(f);
}

void lip_cli_machine(char *b, size_t n)
{
    struct utsname u;
    uname(&u);
    char cpu[128] = "?";
    lip_cli_cpu_model(cpu, sizeof cpu);
    snprintf(b, n, "%s, %d cpus, %s %s", cpu, lip_cpu_count(), u.sysname, u.release);
}

static int bench_model(int argc, char **argv)
{
    const char *model = "models/unet328.onnx", *batches = "1,8,24";
    int iters = 0, threads = 0;
    lip_engine_opts eo = lip_engine_opts_default();
    static const struct option lo[] = {{"model", required_argument, 0, 'm'},
                                       {"batches", required_argument, 0, 'b'},
                                       {"iters", required_argument, 0, 'n'},
                                       {"provider", required_argument, 0, 'p'},
                                       {"threads", required_argument, 0, 't'},
                                       {0, 0, 0, 0}};
    int c;
    long v;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case 'm': model = optarg; break;
        case 'b': batches = optarg; break;
        case 'p': eo.provider = optarg; break;
        case 'n':
        case 't':
            if (lip_parse_long(optarg, 0, 100000, &v)) {
                lip_cli_fail("bench", "--%s needs a number, got '%s'", c == 'n' ? "iters" : "threads", optarg);
                return 2;
            }
            if (c == 'n') iters = (int)v;
            else threads = (int)v;
            break;
        default: usage(stderr); return 2;
        }
    }
    eo.intra_threads = threads;
    lip_err err = {0};
    lip_engine *e = lip_engine_new(model, LIP_MODEL_UNET, &eo, &err);
    if (!e) {
        lip_cli_fail("bench", "%s", err.msg);
        return 1;
    }
    char mach[256];
    lip_cli_machine(mach, sizeof mach);
    printf("# bench model: %s, provider %s, onnxruntime %s\n# machine: %s\n", model,
           lip_engine_provider(e), lip_engine_ort_version(), mach);
    printf("%-8s %-6s %12s %12s %10s\n", "case", "batch", "ms/batch", "ms/frame", "frames/s");
    int rc = 0;
    char list[128];
    lip_strlcpy(list, batches, sizeof list);
    for (char *save = NULL, *tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (lip_parse_long(tok, 1, 256, &v)) {
            lip_cli_fail("bench", "bad batch size '%s' (1-256)", tok);
            rc = 2;
            break;
        }
        int b = (int)v;
        float *vis = lip_aligned_alloc((size_t)b * LIP_UNET_VISUAL_FLOATS * sizeof(float));
        float *aud = lip_aligned_alloc((size_t)b * LIP_UNET_AUDIO_FLOATS * sizeof(float));
        float *out = lip_aligned_alloc((size_t)b * LIP_UNET_OUT_FLOATS * sizeof(float));
        if (!vis || !aud || !out) {
            lip_cli_fail("bench", "out of memory at batch %d", b);
            rc = 1;
        }
        unsigned seed = 12345;
        for (size_t i = 0; !rc && i < (size_t)b * LIP_UNET_VISUAL_FLOATS; i++)
            vis[i] = (float)((seed = seed * 1103515245u + 12345u) >> 16 & 0xff) / 255.0f;
        for (size_t i = 0; !rc && i < (size_t)b * LIP_UNET_AUDIO_FLOATS; i++)
            aud[i] = (float)((seed = seed * 1103515245u + 12345u) >> 16 & 0xff) / 64.0f;
        if (!rc && lip_engine_run_unet(e, vis, aud, b, out, &err)) { /* warm-up */
            lip_cli_fail("bench", "%s", err.msg);
            rc = 1;
        }
        int n = iters ? iters : LIP_MAX(2, 48 / b);
        double t0 = lip_time_ms();
        for (int i = 0; i < n && !rc; i++)
            if (lip_engine_run_unet(e, vis, aud, b, out, &err)) {
                lip_cli_fail("bench", "%s", err.msg);
                rc = 1;
            }
        double ms = (lip_time_ms() - t0) / n;
        if (!rc) printf("%-8s %-6d %12.2f %12.2f %10.2f\n", "unet", b, ms, ms / b, 1000.0 * b / ms);
        fflush(stdout);
        lip_free_aligned(vis);
        lip_free_aligned(aud);
        lip_free_aligned(out);
        if (rc) break;
    }
    lip_engine_free(e);
    return rc;
}

int lip_cli_bench(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "model") == 0) {
        if (lip_cli_wants_help(argc - 1, argv + 1)) {
            usage(stdout);
            return 0;
        }
        return bench_model(argc - 1, argv + 1);
    }
    static const struct {
        const char *name;
        int (*fn)(int, char **);
    } more[] = {{"audio", lip_bench_audio},       {"pipeline", lip_bench_pipeline},
                {"serve", lip_bench_serve},       {"encode", lip_bench_encode},
                {"image", lip_bench_image},
                {"registry", lip_bench_registry},       {"separated", lip_bench_separated},
                {"stream", lip_bench_stream}};
    for (size_t i = 0; i < LIP_ARRAY_LEN(more); i++)
        if (strcmp(argv[1], more[i].name) == 0) return more[i].fn(argc - 1, argv + 1);
    lip_cli_fail("bench", "unknown benchmark '%s'", argv[1]);
    return 2;
}
