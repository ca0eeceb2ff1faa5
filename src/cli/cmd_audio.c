/* SPDX-License-Identifier: MIT */
/* cli/cmd_audio.c: `lipsync audio features`: runs the audio front end on a WAV file (any common
 * rate and sample format; resampled to 16 kHz) or a float32 16 kHz PCM .npy, and writes the
 * padded encoder features [L+2, 512] (the aud_ave.npy layout of avatar packages) and/or the
 * normalized mel [M, 80]. */
#include "audio/audio.h"
#include "cli/cli.h"
#include "core/core.h"
#include "engine/engine.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(f,
            "usage: lipsync audio features --in speech.wav [--out feats.npy] [--mel mel.npy]\n"
            "                              [--encoder models/audio_encoder.onnx]\n"
            "                              [--provider cpu|cuda|tensorrt|auto] [--threads N]\n\n"
            "features  computes the audio front end of spec/AUDIO.md for one utterance.\n"
            "  --in       WAV (PCM 8/16/24/32-bit or float, 1-8 channels, any rate 1-384 kHz;\n"
            "             averaged to mono and resampled to 16 kHz) or a 1-D float32 .npy of\n"
            "             16 kHz PCM\n"
            "  --out      padded encoder features, float32 [L+2, 512] (needs the encoder)\n"
            "  --mel      normalized log-mel, float32 [M, 80] (no encoder needed)\n"
            "  --encoder  audio encoder ONNX model (default models/audio_encoder.onnx)\n"
            "At least one of --out and --mel is required. M = 1 + samples/200,\n"
            "L = int((M-16)/80*25) + 2; at least 3000 samples (0.19 s) are needed for --out.\n");
}

static int features(int argc, char **argv)
{
    const char *in = NULL, *out = NULL, *mel_out = NULL, *enc_path = "models/audio_encoder.onnx";
    lip_engine_opts eo = lip_engine_opts_default();
    static const struct option lo[] = {{"in", required_argument, 0, 'i'},
                                       {"out", required_argument, 0, 'o'},
                                       {"mel", required_argument, 0, 'm'},
                                       {"encoder", required_argument, 0, 'e'},
                                       {"provider", required_argument, 0, 'p'},
                                       {"threads", required_argument, 0, 't'},
                                       {0, 0, 0, 0}};
    int c;
    long v;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case 'i': in = optarg; break;
        case 'o': out = optarg; break;
        case 'm': mel_out = optarg; break;
        case 'e': enc_path = optarg; break;
        case 'p': eo.provider = optarg; break;
        case 't':
            if (lip_parse_long(optarg, 0, 1024, &v)) {
                lip_cli_fail("audio", "--threads needs a number 0-1024, got '%s'", optarg);
                return 2;
            }
            eo.intra_threads = (int)v;
            break;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        lip_cli_fail("audio", "unexpected argument '%s'", argv[optind]);
        return 2;
    }
    if (!in || (!out && !mel_out)) {
        lip_cli_fail("audio", "features needs --in and at least one of --out, --mel");
        usage(stderr);
        return 2;
    }
    lip_err err = {0};
    float *pcm = NULL, *mel = NULL, *rows = NULL;
    size_t n = 0;
    int M = 0, nrows = 0, rc = 1;
    lip_engine *enc = NULL;
    double t0 = lip_time_ms();
    /* --in: a .npy of float PCM (16 kHz assumed) or a WAV. */
    if (lip_cli_load_audio(in, LIP_CLI_AUDIO_NPY, &pcm, &n, &err)) goto fail;
    if (lip_audio_mel(pcm, n, &mel, &M, &err)) goto fail;
    double t_mel = lip_time_ms();
    if (mel_out) {
        size_t shape[2] = {(size_t)M, LIP_AUDIO_NMELS};
        if (lip_npy_save_f32(mel_out, mel, 2, shape, &err)) goto fail;
    }
    if (out) {
        enc = lip_engine_new(enc_path, LIP_MODEL_AUDIO_ENCODER, &eo, &err);
        if (!enc) goto fail;
        if (lip_audio_features_from_mel(enc, mel, M, &rows, &nrows, &err)) goto fail;
        size_t shape[2] = {(size_t)nrows, LIP_AUDIO_FEAT};
        if (lip_npy_save_f32(out, rows, 2, shape, &err)) goto fail;
    }
    printf("audio: %s: %zu samples (%.2f s at 16 kHz), mel %d x 80 (%.1f ms)", in, n,
           (double)n / LIP_AUDIO_RATE, M, t_mel - t0);
    if (out) printf(", features %d x 512 (L = %d, %.1f ms total)", nrows, nrows - 2, lip_time_ms() - t0);
    printf("\n");
    rc = 0;
fail:
    if (rc) lip_cli_fail("audio", "%s", err.msg);
    lip_free(pcm);
    lip_free(mel);
    lip_free(rows);
    lip_engine_free(enc);
    return rc;
}

int lip_cli_audio(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "features") != 0) {
        lip_cli_fail("audio", "unknown subcommand '%s' (features)", argv[1]);
        return 2;
    }
    if (lip_cli_wants_help(argc, argv)) {
        usage(stdout);
        return 0;
    }
    return features(argc - 1, argv + 1);
}
