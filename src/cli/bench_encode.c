/* SPDX-License-Identifier: MIT */
/* cli/bench_encode.c: `lipsync bench encode`: full-frame versus incremental
 * encoding of a composited 1280x720 frame on one core, JPEG and PNG, in the
 * same run. The incremental encoders (docs/IMAGE.md "Incremental encoding")
 * keep the background encoded once and re-encode only what the mouth rect
 * touches; this measures what that saves per frame, and what it costs in bytes.
 * Cases run round-robin, one frame of each per loop, so machine noise hits them
 * alike; each prints one parseable line: median, p99 and min ms over the timed
 * frames, and the bytes of the last frame. The model output pasted changes
 * every frame; the rect is fixed per case: one aligned with the MCU rows
 * ("aligned"), one that straddles restart segments ("straddle"). The background
 * is synthetic (gradients, texture, edges, noise) unless --background names a
 * JPEG or PNG photo (scaled to 1280x720). */
#include "cli/cli.h"
#include "core/core.h"
#include "engine/engine.h"
#include "image/image.h"

#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
  C_JFULL,     /* full JPEG, no restart markers (the non-incremental path) */
  C_JFULL_R,   /* full JPEG with the splice restart interval (same bytes as the
                  splice) */
  C_JSPLICE_A, /* splice, aligned rect */
  C_JSPLICE_S, /* splice, straddling rect */
  C_COMP_FULL, /* restore + feathered paste + full JPEG */
  C_COMP_SPLICE, /* restore + feathered paste + splice */
  C_PFULL,       /* full PNG (libspng, level 1) */
  C_PPIECE,      /* incremental PNG, crop stored */
  C_PPIECE_Z,    /* incremental PNG, crop deflated at level 1 */
  N_CASES
};
static const char *const case_names[N_CASES] = {
    "jpeg_full",           "jpeg_full_restart",
    "jpeg_splice_aligned", "jpeg_splice_straddle",
    "composite_jpeg_full", "composite_splice",
    "png_full_l1",         "png_pieces_stored",
    "png_pieces_l1"};

static const int RECT_A[4] = {532, 210, 714, 392}; /* 208..400: 12 MCU rows */
static const int RECT_S[4] = {500, 207, 682,
                              389}; /* 13 MCU rows, 3 segments wide at R = 8 */

static void usage(FILE *f) {
  fprintf(
      f, "usage: lipsync bench encode [--frames 300] [--png-frames 40] "
         "[--warmup 20]\n"
         "                            [--quality 75] [--background "
         "FILE.jpg|png]\n\n"
         "Per 1280x720 frame on one core (round-robin; median / p99 / min ms; "
         "kb):\n"
         "  jpeg_full              full JPEG, no restart markers "
         "(non-incremental path)\n"
         "  jpeg_full_restart      full JPEG with restart markers every R MCUs "
         "(= splice "
         "bytes)\n"
         "  jpeg_splice_aligned    spliced JPEG, rect [532,210,714,392] "
         "(target <= 0.3 ms)\n"
         "  jpeg_splice_straddle   spliced JPEG, rect [500,207,682,389] "
         "(target <= 0.4 ms)\n"
         "  composite_jpeg_full    restore rect + feathered paste + full JPEG\n"
         "  composite_splice       restore rect + feathered paste + splice "
         "(target <= 0.6 "
         "ms)\n"
         "  png_full_l1            full PNG, libspng, zlib level 1\n"
         "  png_pieces_stored      incremental PNG, crop rows stored (target "
         "<= 6 ms)\n"
         "  png_pieces_l1          incremental PNG, crop rows deflated at "
         "level 1\n");
}

/* The same synthetic "video frame" as `bench image`: smooth shading,
 * mid-frequency texture, hard edges and a little sensor noise. */
static void synthetic(lip_image *im) {
  uint32_t s = 2024;
  for (int y = 0; y < im->h; y++)
    for (int x = 0; x < im->w; x++)
      for (int c = 0; c < 3; c++) {
        double v = 90 + 80.0 * x / im->w + 50.0 * y / im->h + 10 * c;
        v += 25 * sin(x * 0.031 + c) * cos(y * 0.027) +
             8 * sin((x - 2 * y) * 0.21);
        if ((x / 97 + y / 61) % 4 == 0)
          v -= 40;
        s = s * 1103515245u + 12345u;
        v += (int)(s >> 16 & 7) - 3;
        im->data[(size_t)y * im->stride + 3 * x + c] = (uint8_t)(v < 0     ? 0
                                                                 : v > 255 ? 255
                                                                           : v);
      }
}

/* Loads a photo and scales it to the frame (aspect not kept: only the content
 * statistics matter here). */
static int load_background(const char *path, lip_image *bg, lip_err *err) {
  uint8_t *d;
  size_t n;
  int rc = lip_file_read(path, 64u << 20, &d, &n, err);
  if (rc)
    return rc;
  lip_image src = {0};
  rc = n > 4 && d[0] == 0x89 ? lip_png_decode(d, n, &src, err)
                             : lip_jpeg_decode(d, n, &src, err);
  lip_free(d);
  if (rc)
    return rc;
  lip_resizer *rz = lip_resizer_new();
  rc = rz ? lip_resize_bgr(rz, src.data, src.w, src.h, src.stride, bg->data,
                           bg->w, bg->h, bg->stride, err)
          : lip_err_set(err, LIP_ENOMEM, "out of memory");
  lip_resizer_free(rz);
  lip_image_free(&src);
  return rc;
}

/* A UNet-like output that changes every frame. */
static void model_output(float *o, int frame) {
  for (int c = 0; c < 3; c++)
    for (int y = 0; y < 320; y++)
      for (int x = 0; x < 320; x++)
        o[(c * 320 + y) * 320 + x] = 0.45f +
                                     0.3f * sinf(x * 0.07f + c + frame * 0.3f) *
                                         cosf(y * 0.05f - frame * 0.2f) +
                                     0.05f * sinf((x + y) * 0.9f + frame);
}

static void restore(lip_image *fr, const lip_image *bg, const int r[4]) {
  for (int y = r[1]; y < r[3]; y++)
    memcpy(fr->data + (size_t)y * fr->stride + 3 * (size_t)r[0],
           bg->data + (size_t)y * bg->stride + 3 * (size_t)r[0],
           3 * (size_t)(r[2] - r[0]));
}

static void report(int k, double *t, int n, size_t bytes) {
  if (n <= 0)
    return;
  qsort(t, (size_t)n, sizeof *t, lip_cli_cmp_double);
  int p99 = (int)ceil(0.99 * n) - 1;
  printf("case=%s frames=%d median_ms=%.3f p99_ms=%.3f min_ms=%.3f kb=%.1f\n",
         case_names[k], n, n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]),
         t[LIP_MAX(p99, 0)], t[0], bytes / 1024.0);
}

int lip_bench_encode(int argc, char **argv) {
  if (lip_cli_wants_help(argc, argv)) {
    usage(stdout);
    return 0;
  }
  int frames = 300, png_frames = 40, warmup = 20, quality = 75;
  const char *bgpath = NULL;
  static const struct option lo[] = {{"frames", required_argument, 0, 'f'},
                                     {"png-frames", required_argument, 0, 'p'},
                                     {"warmup", required_argument, 0, 'w'},
                                     {"quality", required_argument, 0, 'q'},
                                     {"background", required_argument, 0, 'b'},
                                     {0, 0, 0, 0}};
  int c;
  long v;
  optind = 1;
  while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
    if (c == 'b') {
      bgpath = optarg;
      continue;
    }
    if (c != 'f' && c != 'p' && c != 'w' && c != 'q') {
      usage(stderr);
      return 2;
    }
    long lo_v = c == 'f' || c == 'q' ? 1 : 0, hi_v = c == 'q' ? 100 : 100000;
    if (lip_parse_long(optarg, lo_v, hi_v, &v)) {
      lip_cli_fail("bench", "--%s needs a number in %ld..%ld, got '%s'",
                   c == 'f'   ? "frames"
                   : c == 'p' ? "png-frames"
                   : c == 'w' ? "warmup"
                              : "quality",
                   lo_v, hi_v, optarg);
      return 2;
    }
    if (c == 'f')
      frames = (int)v;
    else if (c == 'p')
      png_frames = (int)v;
    else if (c == 'w')
      warmup = (int)v;
    else
      quality = (int)v;
  }
  png_frames = LIP_MIN(png_frames, frames);

  lip_err err = {0};
  lip_image bg = {0}, fa = {0}, fs = {0};
  lip_resizer *rz = lip_resizer_new();
  lip_jpeg_enc *je = lip_jpeg_enc_new();
  lip_png_enc *pe = lip_png_enc_new();
  lip_jpeg_bg *jbg = NULL;
  lip_png_bg *pbg = NULL, *pbg_z = NULL;
  lip_buf out[N_CASES] = {{0}};
  float *out3 = lip_aligned_alloc(LIP_UNET_OUT_FLOATS * sizeof(float));
  uint8_t *crop = lip_malloc(LIP_CROP_BYTES);
  double *t[N_CASES] = {0};
  int n[N_CASES] = {0}, rc = 1;
  bool ok = rz && je && pe && out3 && crop;
  for (int k = 0; k < N_CASES; k++)
    ok = ok && (t[k] = lip_calloc((size_t)frames, sizeof(double)));
  if (!ok || lip_image_alloc(&bg, 1280, 720, &err) ||
      lip_image_alloc(&fa, 1280, 720, &err) ||
      lip_image_alloc(&fs, 1280, 720, &err)) {
    lip_cli_fail("bench", "out of memory%s%s", err.msg[0] ? ": " : "", err.msg);
    goto done;
  }
  if (bgpath) {
    if (load_background(bgpath, &bg, &err))
      goto fail;
  } else {
    synthetic(&bg);
  }
  size_t fbytes = (size_t)bg.stride * bg.h;
  memcpy(fa.data, bg.data, fbytes);
  memcpy(fs.data, bg.data, fbytes);
  lip_jpeg_opts jo = lip_jpeg_opts_default(),
                jo_plain = lip_jpeg_opts_default();
  jo.quality = jo_plain.quality = quality;
  double tb0 = lip_time_ms();
  jbg = lip_jpeg_bg_new(je, &bg, &jo, &err);
  double tb1 = lip_time_ms();
  if (!jbg)
    goto fail;
  pbg = lip_png_bg_new(&bg, RECT_S, 1, 0, &err);
  double tb2 = lip_time_ms();
  if (!pbg || !(pbg_z = lip_png_bg_new(&bg, RECT_S, 1, 1, &err)))
    goto fail;
  jo = lip_jpeg_bg_opts(jbg);
  char machine[256];
  lip_cli_machine(machine, sizeof machine);
  printf("# bench encode: 1280x720 BGR, %s background, JPEG q%d 4:2:0 islow "
         "(restart %d MCUs "
         "for the splice), PNG 8-bit RGB; one thread, %d frames (%d for PNG), "
         "%d warm-up\n"
         "# machine %s\n# commit %s\n"
         "# background build (once per avatar frame): JPEG %.2f ms, %.1f kb "
         "held; PNG pieces "
         "%.2f ms, %.1f kb held\n",
         bgpath ? bgpath : "synthetic", quality, jo.restart_interval, frames,
         png_frames, warmup, machine, LIP_GIT_REV, tb1 - tb0,
         lip_jpeg_bg_bytes(jbg) / 1024.0, tb2 - tb1,
         lip_png_bg_bytes(pbg) / 1024.0);
  lip_jpeg_splice_info ia, is;
  for (int i = -warmup; i < frames; i++) {
    int f = i < 0 ? i + warmup : i;
    model_output(out3, f);
    /* Frame A (aligned rect) and frame S (straddling rect), composited outside
     * the timing. */
    restore(&fa, &bg, RECT_A);
    if (lip_image_paste(rz, &fa, RECT_A, out3, crop, LIP_PASTE_FEATHER,
                        LIP_FEATHER_DEFAULT, &err))
      goto fail;
    double t0 = lip_time_ms();
    if (lip_jpeg_enc_encode(je, &fs, &jo_plain, &out[C_JFULL], &err))
      goto fail;
    double t1 = lip_time_ms();
    if (lip_jpeg_enc_encode(je, &fs, &jo, &out[C_JFULL_R], &err))
      goto fail;
    double t2 = lip_time_ms();
    if (lip_jpeg_splice_encode(je, jbg, &fa, RECT_A, NULL, &out[C_JSPLICE_A],
                               &ia, &err))
      goto fail;
    double t3 = lip_time_ms();
    /* Composite + splice on frame S: restore the rect, paste, splice. */
    restore(&fs, &bg, RECT_S);
    if (lip_image_paste(rz, &fs, RECT_S, out3, crop, LIP_PASTE_FEATHER,
                        LIP_FEATHER_DEFAULT, &err))
      goto fail;
    double t4 = lip_time_ms();
    if (lip_jpeg_splice_encode(je, jbg, &fs, RECT_S, NULL, &out[C_JSPLICE_S],
                               &is, &err))
      goto fail;
    double t5 = lip_time_ms();
    restore(&fs, &bg, RECT_S);
    if (lip_image_paste(rz, &fs, RECT_S, out3, crop, LIP_PASTE_FEATHER,
                        LIP_FEATHER_DEFAULT, &err) ||
        lip_jpeg_enc_encode(je, &fs, &jo_plain, &out[C_COMP_FULL], &err))
      goto fail;
    double t6 = lip_time_ms();
    if (!ia.spliced || !is.spliced) {
      lip_cli_fail("bench", "a splice fell back to a full encode");
      goto done;
    }
    bool do_png = i >= 0 ? i < png_frames : i >= -2;
    double tp[3] = {0};
    if (do_png) {
      double a = lip_time_ms();
      if (lip_png_encode(&fs, 1, &out[C_PFULL], &err))
        goto fail;
      double b = lip_time_ms();
      bool inc1 = false, inc2 = false;
      if (lip_png_piece_encode(pe, pbg, &fs, RECT_S, 1, &out[C_PPIECE], &inc1,
                               &err))
        goto fail;
      double cc = lip_time_ms();
      if (lip_png_piece_encode(pe, pbg_z, &fs, RECT_S, 1, &out[C_PPIECE_Z],
                               &inc2, &err))
        goto fail;
      double d = lip_time_ms();
      if (!inc1 || !inc2) {
        lip_cli_fail("bench", "an incremental PNG fell back to a full encode");
        goto done;
      }
      tp[0] = b - a;
      tp[1] = cc - b;
      tp[2] = d - cc;
    }
    if (i < 0)
      continue;
    t[C_JFULL][n[C_JFULL]++] = t1 - t0;
    t[C_JFULL_R][n[C_JFULL_R]++] = t2 - t1;
    t[C_JSPLICE_A][n[C_JSPLICE_A]++] = t3 - t2;
    t[C_JSPLICE_S][n[C_JSPLICE_S]++] = t5 - t4;
    t[C_COMP_FULL][n[C_COMP_FULL]++] = t6 - t5;
    t[C_COMP_SPLICE][n[C_COMP_SPLICE]++] =
        t5 - t3; /* restore + paste + splice */
    if (do_png) {
      t[C_PFULL][n[C_PFULL]++] = tp[0];
      t[C_PPIECE][n[C_PPIECE]++] = tp[1];
      t[C_PPIECE_Z][n[C_PPIECE_Z]++] = tp[2];
    }
  }
  for (int k = 0; k < N_CASES; k++)
    report(k, t[k], n[k], out[k == C_COMP_SPLICE ? C_JSPLICE_S : k].len);
  printf("# splice: aligned %d of %d segments (%dx%d sub-image), straddle %d "
         "(%dx%d)\n",
         ia.segments, ia.total, ia.sub_w, ia.sub_h, is.segments, is.sub_w,
         is.sub_h);
  rc = 0;
  goto done;
fail:
  lip_cli_fail("bench", "%s", err.msg);
done:
  for (int k = 0; k < N_CASES; k++) {
    lip_free(t[k]);
    lip_buf_free(&out[k]);
  }
  lip_jpeg_bg_free(jbg);
  lip_png_bg_free(pbg);
  lip_png_bg_free(pbg_z);
  lip_image_free(&bg);
  lip_image_free(&fa);
  lip_image_free(&fs);
  lip_resizer_free(rz);
  lip_jpeg_enc_free(je);
  lip_png_enc_free(pe);
  lip_free_aligned(out3);
  lip_free(crop);
  return rc;
}
