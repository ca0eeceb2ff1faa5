/* SPDX-License-Identifier: MIT */
/* cli/bench_audio.c: `lipsync bench audio`: cost of the audio front end per second of audio.
 * Cases: the normalized mel (C), the same mel computed by NumPy on the same samples in a child
 * /usr/bin/python3 (timed inside Python, so interpreter start-up is excluded; it also reports
 * its largest difference from our mel), the encoder at batch 1 and at batch 25 (CPU), and the
 * streaming front end fed 40 ms chunks. Each case warms up once, then reports the best of
 * --reps runs as one parseable line: key=value pairs. */
#include "audio/audio.h"
#include "cli/cli.h"
#include "core/core.h"
#include "engine/engine.h"

#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef LIP_GIT_REV
#define LIP_GIT_REV "unknown"
#endif

static void usage(FILE *f)
{
    fprintf(f, "usage: lipsync bench audio [--seconds 20] [--reps 3] [--in speech.wav]\n"
               "                           [--encoder models/audio_encoder.onnx] [--threads N]\n"
               "Prints one line per case (mel, numpy_mel, encoder_b1, encoder_b25, stream):\n"
               "ms per second of audio and the real-time factor.\n");
}

/* Deterministic speech-like test signal: a gliding harmonic voice with syllable-rate amplitude
 * modulation, plus a little noise (an LCG), so every band of the mel sees energy. */
static void synth(float *x, size_t n)
{
    uint32_t s = 1;
    double ph = 0;
    for (size_t i = 0; i < n; i++) {
        double t = (double)i / LIP_AUDIO_RATE;
        double f0 = 140 + 40 * sin(2 * M_PI * 0.7 * t);
        ph += 2 * M_PI * f0 / LIP_AUDIO_RATE;
        double v = 0;
        for (int h = 1; h <= 12; h++) v += sin(h * ph) / h;
        double env = 0.5 + 0.5 * sin(2 * M_PI * 4.0 * t);
        s = s * 1664525u + 1013904223u;
        x[i] = (float)(0.1 * env * v + 0.003 * ((double)(s >> 8) / 16777216.0 - 0.5));
    }
}

static const char *NUMPY_MEL =
    "import sys, time, numpy as np\n"
    "x = np.load(sys.argv[1]).astype(np.float64); mine = np.load(sys.argv[2]); reps = int(sys.argv[3])\n"
    "ls = np.log(6.4) / 27\n"
    "def hz2mel(f): return np.where(f >= 1000, 15 + np.log(np.maximum(f, 1e-9) / 1000) / ls, f / (200 / 3))\n"
    "def mel2hz(m): return np.where(m >= 15, 1000 * np.exp(ls * (m - 15)), m * 200 / 3)\n"
    "mf = mel2hz(np.linspace(hz2mel(np.float64(55)), hz2mel(np.float64(7600)), 82))\n"
    "ramps = mf[:, None] - (np.arange(401) * 20.0)[None, :]; fd = np.diff(mf)\n"
    "F = np.maximum(0, np.minimum(-ramps[:-2] / fd[:-1, None], ramps[2:] / fd[1:, None]))\n"
    "F = (F.astype(np.float32) * (2 / (mf[2:] - mf[:-2]))[:, None]).astype(np.float32)\n"
    "w = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(800) / 800)\n"
    "def mel(x):\n"
    "    y = np.append(x[0], x[1:] - 0.97 * x[:-1]); yp = np.pad(y, 400); M = 1 + len(x) // 200\n"
    "    fr = np.lib.stride_tricks.as_strided(yp, (M, 800), (yp.strides[0] * 200, yp.strides[0]))\n"
    "    X = np.abs(np.fft.rfft(fr * w, axis=1)); m = X @ F.T.astype(np.float64)\n"
    "    d = 20 * np.log10(np.maximum(1e-5, m)) - 20\n"
    "    return np.clip(8 * (d + 100) / 100 - 4, -4, 4)\n"
    "best = 1e9\n"
    "for r in range(reps + 1):\n"
    "    t0 = time.perf_counter(); v = mel(x); dt = (time.perf_counter() - t0) * 1000\n"
    "    if r: best = min(best, dt)\n"
    "print('numpy_ms=%.3f max_diff=%.3g' % (best, float(np.abs(v - mine).max())))\n";

/* Runs the NumPy mel in a child Python; returns its best time (ms) and max |diff|, or -1. */
static double numpy_mel(const float *x, size_t n, const float *mel, int M, int reps, double *diff)
{
    char dir[] = "/tmp/lipsync-bench-audio-XXXXXX", px[300], pm[300], ps[300], cmd[1200];
    if (!mkdtemp(dir)) return -1;
    snprintf(px, sizeof px, "%s/x.npy", dir);
    snprintf(pm, sizeof pm, "%s/mel.npy", dir);
    snprintf(ps, sizeof ps, "%s/mel.py", dir);
    lip_err err = {0};
    size_t sx[1] = {n}, sm[2] = {(size_t)M, LIP_AUDIO_NMELS};
    double ms = -1;
    FILE *f = NULL;
    if (lip_npy_save_f32(px, x, 1, sx, &err) || lip_npy_save_f32(pm, mel, 2, sm, &err) ||
        lip_file_write_atomic(ps, NUMPY_MEL, strlen(NUMPY_MEL), &err)) {
        fprintf(stderr, "bench audio: %s\n", err.msg);
        goto out;
    }
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s %s %s %d", ps, px, pm, reps);
    f = popen(cmd, "r");
    if (!f) goto out;
    char line[256];
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "numpy_ms=%lf max_diff=%lf", &ms, diff) == 2) break;
    if (pclose(f) != 0) ms = -1;
out:
    unlink(px);
    unlink(pm);
    unlink(ps);
    rmdir(dir);
    return ms;
}

static void line(const char *machine, const char *name, double secs, double ms, const char *extra)
{
    printf("bench=audio case=%s audio_s=%.2f ms=%.3f ms_per_audio_s=%.4f rtf=%.6f%s%s "
           "commit=%s machine=\"%s\"\n", name, secs, ms, ms / secs, ms / secs / 1000.0,
           extra[0] ? " " : "", extra, LIP_GIT_REV, machine);
}

int lip_bench_audio(int argc, char **argv)
{
    double seconds = 20;
    long reps = 3, threads = 1;
    const char *in = NULL, *enc_path = "models/audio_encoder.onnx";
    static const struct option lo[] = {{"seconds", required_argument, 0, 's'},
                                       {"reps", required_argument, 0, 'r'},
                                       {"in", required_argument, 0, 'i'},
                                       {"encoder", required_argument, 0, 'e'},
                                       {"threads", required_argument, 0, 't'},
                                       {"help", no_argument, 0, 'h'},
                                       {0, 0, 0, 0}};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        switch (c) {
        case 's':
            if (lip_parse_double(optarg, &seconds) || !(seconds >= 0.2 && seconds <= 3600)) {
                lip_cli_fail("bench", "--seconds needs a number 0.2-3600, got '%s'", optarg);
                return 2;
            }
            break;
        case 'r':
        case 't':
            if (lip_parse_long(optarg, c == 'r' ? 1 : 0, 1000, c == 'r' ? &reps : &threads)) {
                lip_cli_fail("bench", "--%s needs a number, got '%s'", c == 'r' ? "reps" : "threads", optarg);
                return 2;
            }
            break;
        case 'i': in = optarg; break;
        case 'e': enc_path = optarg; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    lip_err err = {0};
    float *x = NULL, *mel = NULL, *rows = NULL, *win = NULL, *feat = NULL, *tens = NULL;
    size_t n;
    int M = 0, rc = 1;
    lip_engine *enc = NULL;
    lip_audio_stream *st = NULL;
    if (in) {
        if (lip_audio_wav_load(in, &x, &n, &err)) goto fail;
    } else {
        n = (size_t)(seconds * LIP_AUDIO_RATE);
        x = lip_malloc(n * sizeof *x);
        if (!x) goto fail;
        synth(x, n);
    }
    double secs = (double)n / LIP_AUDIO_RATE;
    char machine[200], cpu[128] = "cpu";
    lip_cli_cpu_model(cpu, sizeof cpu);
    cpu[strcspn(cpu, "\"")] = 0; /* machine="..." below */
    snprintf(machine, sizeof machine, "%s, %d cpus", cpu, lip_cpu_count());
    printf("# bench audio: %.2f s of %s, best of %ld, encoder threads %ld\n", secs,
           in ? in : "synthetic speech-like audio", reps, threads);

    /* mel */
    double best = 1e30;
    for (long r = 0; r <= reps; r++) {
        lip_free(mel);
        double t0 = lip_time_ms();
        if (lip_audio_mel(x, n, &mel, &M, &err)) goto fail;
        double dt = lip_time_ms() - t0;
        if (r) best = fmin(best, dt);
    }
    double mel_ms = best;
    line(machine, "mel", secs, mel_ms, "");

    double diff = -1;
    double np_ms = numpy_mel(x, n, mel, M, (int)reps, &diff);
    if (np_ms > 0) {
        char extra[128];
        snprintf(extra, sizeof extra, "c_over_numpy=%.3f max_diff_vs_c=%.3g", mel_ms / np_ms, diff);
        line(machine, "numpy_mel", secs, np_ms, extra);
    } else {
        printf("bench=audio case=numpy_mel skipped=\"/usr/bin/python3 with numpy did not run\"\n");
    }

    /* encoder */
    if (access(enc_path, R_OK) != 0) {
        printf("bench=audio case=encoder skipped=\"%s not found (make models)\"\n", enc_path);
        rc = 0;
        goto fail;
    }
    lip_engine_opts eo = lip_engine_opts_default();
    eo.intra_threads = (int)threads;
    enc = lip_engine_new(enc_path, LIP_MODEL_AUDIO_ENCODER, &eo, &err);
    if (!enc) goto fail;
    int L = lip_audio_window_count(M);
    if (L < 1) {
        lip_err_set(&err, LIP_EINVAL, "audio too short for one encoder window");
        goto fail;
    }
    win = lip_aligned_alloc((size_t)L * LIP_ENC_IN_FLOATS * sizeof(float));
    feat = lip_aligned_alloc((size_t)L * LIP_AUDIO_FEAT * sizeof(float));
    if (!win || !feat) goto fail;
    lip_audio_windows(mel, M, 0, L, win);
    static const int batches[2] = {1, 25};
    for (int bi = 0; bi < 2; bi++) {
        int B = batches[bi];
        best = 1e30;
        for (long r = 0; r <= reps; r++) {
            double t0 = lip_time_ms();
            for (int w = 0; w < L; w += B) {
                int b = LIP_MIN(B, L - w);
                if (lip_engine_run_encoder(enc, win + (size_t)w * LIP_ENC_IN_FLOATS, b,
                                           feat + (size_t)w * LIP_AUDIO_FEAT, &err))
                    goto fail;
            }
            double dt = lip_time_ms() - t0;
            if (r) best = fmin(best, dt);
        }
        char name[32], extra[96];
        snprintf(name, sizeof name, "encoder_b%d", B);
        snprintf(extra, sizeof extra, "windows=%d ms_per_window=%.3f", L, best / L);
        line(machine, name, secs, best, extra);
    }

    /* streaming: 40 ms chunks, pop after each, as a real-time server would */
    tens = lip_malloc(LIP_AUDIO_TENSOR * sizeof(float));
    if (!tens) goto fail;
    best = 1e30;
    int frames = 0;
    for (long r = 0; r <= reps; r++) {
        st = lip_audio_stream_new(enc, NULL, &err);
        if (!st) goto fail;
        double t0 = lip_time_ms();
        int f;
        frames = 0;
        for (size_t pos = 0; pos < n; pos += LIP_AUDIO_FRAME_SAMPLES) {
            size_t k = LIP_MIN((size_t)LIP_AUDIO_FRAME_SAMPLES, n - pos);
            if (lip_audio_stream_push(st, x + pos, k, &err)) goto fail;
            while (lip_audio_stream_pop(st, tens, &f) == 1) frames++;
        }
        if (lip_audio_stream_finish(st, &err)) goto fail;
        while (lip_audio_stream_pop(st, tens, &f) == 1) frames++;
        double dt = lip_time_ms() - t0;
        if (r) best = fmin(best, dt);
        lip_audio_stream_free(st);
        st = NULL;
    }
    char extra[64];
    snprintf(extra, sizeof extra, "frames=%d chunk_samples=640", frames);
    line(machine, "stream", secs, best, extra);
    rc = 0;
fail:
    if (rc) lip_cli_fail("bench", "audio: %s", err.msg[0] ? err.msg : "out of memory");
    lip_audio_stream_free(st);
    lip_free(x);
    lip_free(mel);
    lip_free(rows);
    lip_free_aligned(win);
    lip_free_aligned(feat);
    lip_free(tens);
    lip_engine_free(enc);
    return rc;
}
