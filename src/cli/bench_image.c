/* SPDX-License-Identifier: MIT */
/* cli/bench_image.c: `lipsync bench image`: the per-frame cost of the image module on one core,
 * for a 1280x720 frame and a ~180 px mouth rect: pre-processing (crop + bicubic 328 + float
 * tensor), paste-back (exact, feathered), JPEG q75 and PNG level 1 encodes of the whole frame, and
 * composite + JPEG together (the per-frame serving cost, target <= 3 ms). The background is a
 * synthetic "photo" (gradients, texture, edges, mild noise) and the rect moves and changes size
 * every frame like the reference avatar's (173-189 px). Cases run round-robin, one frame of each
 * per loop, so machine noise hits them alike; each prints one parseable line with the median,
 * p99 and min over the timed frames. */
#include "cli/cli.h"
#include "core/core.h"
#include "engine/engine.h"
#include "image/image.h"

#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { C_PRE, C_EXACT, C_FEATHER, C_JPEG, C_PNG, C_COMPOSITE, N_CASES };
static const char *const case_names[N_CASES] = {"preprocess", "paste_exact", "paste_feather",
                                                "jpeg_q75",   "png_l1",      "composite_jpeg"};

static void usage(FILE *f)
{
    fprintf(f, "usage: lipsync bench image [--frames 200] [--png-frames 40] [--warmup 10]\n\n"
               "Per 1280x720 frame on one core (round-robin, median / p99 / min ms):\n"
               "  preprocess      crop + bicubic to 328x328 + [real, masked] float tensor\n"
               "  paste_exact     model output -> crop -> bicubic to the rect -> overwrite\n"
               "  paste_feather   the same with a 10 px feathered edge\n"
               "  jpeg_q75        full-frame JPEG, quality 75, 4:2:0 (jpeglib, islow)\n"
               "  png_l1          full-frame PNG, zlib level 1 (fewer frames: it is ~20x slower)\n"
               "  composite_jpeg  paste_feather + jpeg_q75 (target <= 3 ms)\n");
}

/* Background with the statistics of a video frame: smooth shading, mid-frequency texture, hard
 * edges and a little sensor noise (JPEG size and speed depend on the content). */
static void background(lip_image *im)
{
    uint32_t s = 2024;
    for (int y = 0; y < im->h; y++)
        for (int x = 0; x < im->w; x++)
            for (int c = 0; c < 3; c++) {
                double v = 90 + 80.0 * x / im->w + 50.0 * y / im->h + 10 * c;
                v += 25 * sin(x * 0.031 + c) * cos(y * 0.027) + 8 * sin((x - 2 * y) * 0.21);
                if ((x / 97 + y / 61) % 4 == 0) v -= 40;
                s = s * 1103515245u + 12345u;
                v += (int)(s >> 16 & 7) - 3;
                im->data[(size_t)y * im->stride + 3 * x + c] = (uint8_t)(v < 0     ? 0
                                                                         : v > 255 ? 255
                                                                                   : v);
            }
}

static void model_output(float *o, int frame)
{
    for (int c = 0; c < 3; c++)
        for (int y = 0; y < 320; y++)
            for (int x = 0; x < 320; x++)
                o[(c * 320 + y) * 320 + x] = 0.45f + 0.3f * sinf(x * 0.04f + c + frame * 0.3f) *
                                                         cosf(y * 0.05f - frame * 0.2f);
}

static void report(int k, double *t, int n, double extra, const char *extra_name)
{
    if (n <= 0) return;
    qsort(t, (size_t)n, sizeof *t, lip_cli_cmp_double);
    int p99 = (int)ceil(0.99 * n) - 1;
    printf("case=%s frames=%d median_ms=%.3f p99_ms=%.3f min_ms=%.3f", case_names[k], n,
           n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]), t[LIP_MAX(p99, 0)], t[0]);
    if (extra_name) printf(" %s=%.1f", extra_name, extra);
    printf("\n");
}

int lip_bench_image(int argc, char **argv)
{
    if (lip_cli_wants_help(argc, argv)) {
        usage(stdout);
        return 0;
    }
    int frames = 200, png_frames = 40, warmup = 10;
    static const struct option lo[] = {{"frames", required_argument, 0, 'f'},
                                       {"png-frames", required_argument, 0, 'p'},
                                       {"warmup", required_argument, 0, 'w'},
                                       {0, 0, 0, 0}};
    int c;
    long v;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        if (c != 'f' && c != 'p' && c != 'w') {
            usage(stderr);
            return 2;
        }
        if (lip_parse_long(optarg, c == 'f' ? 1 : 0, 100000, &v)) {
            lip_cli_fail("bench", "--%s needs a number (%s), got '%s'",
                         c == 'f'   ? "frames"
                         : c == 'p' ? "png-frames"
                                    : "warmup",
                         c == 'f' ? "1-100000" : "0-100000", optarg);
            return 2;
        }
        if (c == 'f')
            frames = (int)v;
        else if (c == 'p')
            png_frames = (int)v;
        else
            warmup = (int)v;
    }
    png_frames = LIP_MIN(png_frames, frames);

    lip_err err = {0};
    lip_image bg = {0}, fr = {0};
    lip_resizer *rz = lip_resizer_new();
    lip_jpeg_enc *je = lip_jpeg_enc_new();
    lip_buf jb = {0}, pb = {0};
    float *in6 = lip_aligned_alloc(LIP_UNET_VISUAL_FLOATS * sizeof(float));
    float *out3 = lip_aligned_alloc(LIP_UNET_OUT_FLOATS * sizeof(float));
    uint8_t *crop = lip_malloc(LIP_CROP_BYTES);
    double *t[N_CASES] = {0};
    int n[N_CASES] = {0}, rc = 1;
    for (int k = 0; k < N_CASES; k++) t[k] = lip_calloc((size_t)frames, sizeof(double));
    if (!rz || !je || !in6 || !out3 || !crop || !t[N_CASES - 1] || !t[0] ||
        lip_image_alloc(&bg, 1280, 720, &err) || lip_image_alloc(&fr, 1280, 720, &err)) {
        lip_cli_fail("bench", "out of memory%s%s", err.msg[0] ? ": " : "", err.msg);
        goto done;
    }
    for (int k = 0; k < N_CASES; k++)
        if (!t[k]) {
            lip_cli_fail("bench", "out of memory");
            goto done;
        }
    background(&bg);
    printf(
        "# bench image: 1280x720 BGR frame, rect 173-189 px, one thread, %d frames (%d for PNG), "
        "%d warm-up\n# commit %s\n",
        frames, png_frames, warmup, LIP_GIT_REV);
    size_t fbytes = (size_t)bg.stride * bg.h;
    for (int i = -warmup; i < frames; i++) {
        int f = i < 0 ? i + warmup : i;
        int side = 173 + f % 17, x1 = 520 + f % 23, y1 = 200 + f % 19;
        int rect[4] = {x1, y1, x1 + side, y1 + side};
        model_output(out3, f);
        memcpy(fr.data, bg.data, fbytes);
        double t0 = lip_time_ms();
        if (lip_image_preprocess(rz, &fr, rect, in6, crop, &err)) goto fail;
        double t1 = lip_time_ms();
        if (lip_image_paste(rz, &fr, rect, out3, crop, LIP_PASTE_EXACT, 0, &err)) goto fail;
        double t2 = lip_time_ms();
        memcpy(fr.data, bg.data, fbytes);
        double t3 = lip_time_ms();
        if (lip_image_paste(rz, &fr, rect, out3, crop, LIP_PASTE_FEATHER, LIP_FEATHER_DEFAULT,
                            &err))
            goto fail;
        double t4 = lip_time_ms();
        if (lip_jpeg_enc_encode(je, &fr, NULL, &jb, &err)) goto fail;
        double t5 = lip_time_ms();
        double tp = 0;
        bool do_png = i >= 0 ? i < png_frames : i >= -2;
        if (do_png) {
            double a = lip_time_ms();
            if (lip_png_encode(&fr, 1, &pb, &err)) goto fail;
            tp = lip_time_ms() - a;
        }
        if (i < 0) continue;
        t[C_PRE][n[C_PRE]++] = t1 - t0;
        t[C_EXACT][n[C_EXACT]++] = t2 - t1;
        t[C_FEATHER][n[C_FEATHER]++] = t4 - t3;
        t[C_JPEG][n[C_JPEG]++] = t5 - t4;
        t[C_COMPOSITE][n[C_COMPOSITE]++] = t5 - t3;
        if (do_png) t[C_PNG][n[C_PNG]++] = tp;
    }
    for (int k = 0; k < N_CASES; k++)
        report(k, t[k], n[k],
               k == C_JPEG  ? jb.len / 1024.0
               : k == C_PNG ? pb.len / 1024.0
                            : 0,
               k == C_JPEG || k == C_PNG ? "kb" : NULL);
    rc = 0;
    goto done;
fail:
    lip_cli_fail("bench", "%s", err.msg);
done:
    for (int k = 0; k < N_CASES; k++) lip_free(t[k]);
    lip_image_free(&bg);
    lip_image_free(&fr);
    lip_resizer_free(rz);
    lip_jpeg_enc_free(je);
    lip_buf_free(&jb);
    lip_buf_free(&pb);
    lip_free_aligned(in6);
    lip_free_aligned(out3);
    lip_free(crop);
    return rc;
}
