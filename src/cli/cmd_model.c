/* SPDX-License-Identifier: MIT */
/* cli/cmd_model.c: `lipsync model info|run`: inspect a model's inputs and outputs, or run it on
 * .npy inputs and write the output as .npy (used by tools/check_models.py to compare ONNX
 * Runtime against an independent NumPy implementation). */
#include "cli/cli.h"
#include "core/core.h"
#include "engine/engine.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(f,
            "usage: lipsync model info MODEL.onnx\n"
            "       lipsync model run MODEL.onnx --in a.npy [--in b.npy ...] --out out.npy\n"
            "                         [--provider cpu|cuda|tensorrt|auto] [--check unet|encoder]\n\n"
            "info  prints the inputs and outputs (name, shape; -1 = dynamic) and the provider.\n"
            "run   feeds .npy arrays (converted to float32, in the model's input order) and\n"
            "      writes the first output as float32 .npy.\n");
}

static void print_io(const lip_engine *e, bool output)
{
    int n = output ? lip_engine_output_count(e) : lip_engine_input_count(e);
    for (int i = 0; i < n; i++) {
        int rank;
        int64_t d[8];
        const char *name = lip_engine_io(e, output, i, &rank, d);
        printf("  %-6s %-20s [", output ? "output" : "input", name);
        for (int k = 0; k < rank; k++) printf("%s%lld", k ? "," : "", (long long)d[k]);
        printf("]\n");
    }
}

int lip_cli_model(int argc, char **argv)
{
    if (argc < 2 || lip_cli_wants_help(argc, argv)) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *sub = argv[1];
    if (strcmp(sub, "info") && strcmp(sub, "run")) {
        lip_cli_fail("model", "unknown subcommand '%s' (info, run)", sub);
        return 2;
    }
    if (argc < 3) {
        usage(stderr);
        return 2;
    }
    const char *path = argv[2];
    const char *ins[4];
    int n_in = 0;
    const char *out = NULL;
    lip_engine_opts eo = lip_engine_opts_default();
    int kind = LIP_MODEL_ANY;
    static const struct option lo[] = {{"in", required_argument, 0, 'i'},
                                       {"out", required_argument, 0, 'o'},
                                       {"provider", required_argument, 0, 'p'},
                                       {"check", required_argument, 0, 'c'},
                                       {0, 0, 0, 0}};
    optind = 3;
    int c;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case 'i':
            if (n_in == 4) {
                lip_cli_fail("model", "at most 4 --in arrays");
                return 2;
            }
            ins[n_in++] = optarg;
            break;
        case 'o': out = optarg; break;
        case 'p': eo.provider = optarg; break;
        case 'c': {
            int k = lip_cli_choice("model", "check", optarg, "unet", "encoder");
            if (k < 0) return 2;
            kind = k == 0 ? LIP_MODEL_UNET : LIP_MODEL_AUDIO_ENCODER;
            break;
        }
        default: usage(stderr); return 2;
        }
    }
    lip_err err = {0};
    lip_engine *e = lip_engine_new(path, kind, &eo, &err);
    if (!e) {
        lip_cli_fail("model", "%s", err.msg);
        return 1;
    }
    int rc = 0;
    if (strcmp(sub, "info") == 0) {
        printf("%s (%zu bytes, provider %s, onnxruntime %s)\n", path, lip_engine_model_bytes(e),
               lip_engine_provider(e), lip_engine_ort_version());
        print_io(e, false);
        print_io(e, true);
    } else {
        lip_npy arr[4] = {0};
        lip_tensor t[4] = {0};
        lip_tensor o = {0};
        if (!out || n_in == 0) {
            lip_cli_fail("model", "run needs --in and --out");
            rc = 2;
        }
        for (int i = 0; i < n_in && !rc; i++) {
            if (lip_npy_load(ins[i], &arr[i], &err) || lip_npy_to_f32(&arr[i], &err)) {
                lip_cli_fail("model", "%s", err.msg);
                rc = 1;
                break;
            }
            t[i].data = arr[i].data;
            t[i].rank = arr[i].ndim;
            for (int d = 0; d < arr[i].ndim; d++) t[i].shape[d] = (int64_t)arr[i].shape[d];
        }
        if (!rc && lip_engine_run_f32(e, n_in, t, &o, &err)) {
            lip_cli_fail("model", "%s", err.msg);
            rc = 1;
        }
        if (!rc) {
            size_t shp[8];
            for (int d = 0; d < o.rank; d++) shp[d] = (size_t)o.shape[d];
            if (lip_npy_save_f32(out, o.data, o.rank, shp, &err)) {
                lip_cli_fail("model", "%s", err.msg);
                rc = 1;
            }
        }
        lip_free_aligned(o.data);
        for (int i = 0; i < n_in; i++) lip_npy_free(&arr[i]);
    }
    lip_engine_free(e);
    return rc;
}
