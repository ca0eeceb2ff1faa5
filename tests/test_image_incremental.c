/* SPDX-License-Identifier: MIT */
/* tests/test_image_incremental.c: the incremental encoders against full encodes
 * of the same composited frame. JPEG splicing must give the same bytes as
 * lip_jpeg_enc_encode with the background's settings (memcmp) and decode
 * without a libjpeg warning; checked across crop positions at every frame edge
 * and corner, odd and tiny rects, frame sizes that are not multiples of 16,
 * every quality 1..100, both DCT methods, and the fallbacks. Incremental PNG
 * must give the same bytes as its own piecewise encoder over the whole
 * composited frame and decode to exactly the composited pixels. Also: hostile
 * arguments, and no allocation once warm. */
#include "test.h"

#include "avatar/avatar.h"
#include "image/image.h"
#include "pipeline/pipeline.h"

#include <pthread.h>
#include <stdint.h>
#include <unistd.h>
#include <zlib.h>

static uint32_t rng_state = 2463534242u;
static uint32_t rnd(void) {
  uint32_t x = rng_state;
  x ^= x << 13;
  x ^= x >> 17;
  x ^= x << 5;
  return rng_state = x;
}

/* A background with what photos have: gradients, fine periodic texture, hard
 * edges and sensor noise, so every segment carries real AC data (a flat image
 * would make most segments equal and hide a misplaced one). */
static void synth_bg(lip_image *img, uint32_t seed) {
  rng_state = seed;
  for (int y = 0; y < img->h; y++)
    for (int x = 0; x < img->w; x++)
      for (int c = 0; c < 3; c++) {
        double v = 90 + 70.0 * x / img->w + 50.0 * y / img->h +
                   25 * sin(0.21 * x + 0.7 * c) * cos(0.13 * y) +
                   (((x / 37) + (y / 23)) % 3 == 0 ? 30 : 0) +
                   (int)(rnd() % 17) - 8;
        img->data[(size_t)y * img->stride + 3 * x + c] =
            (uint8_t)(v < 0     ? 0
                      : v > 255 ? 255
                                : v);
      }
}

/* Composites "a new mouth" into rect: different texture and colour than the
 * background, so every touched MCU changes. */
static void paint_rect(lip_image *img, const int r[4], uint32_t seed) {
  rng_state = seed;
  for (int y = r[1]; y < r[3]; y++)
    for (int x = r[0]; x < r[2]; x++)
      for (int c = 0; c < 3; c++)
        img->data[(size_t)y * img->stride + 3 * x + c] =
            (uint8_t)(128 + 100 * sin(0.5 * x * (c + 1) + 0.3 * y) +
                      (int)(rnd() % 40) - 20);
}

static void copy_image(lip_image *dst, const lip_image *src) {
  for (int y = 0; y < src->h; y++)
    memcpy(dst->data + (size_t)y * dst->stride,
           src->data + (size_t)y * src->stride, (size_t)src->w * 3);
}

/* Splices frame against bg and compares with a full encode of the frame with
 * bg's settings. Returns 1 if byte-identical, decodable and spliced as
 * expected. */
static int splice_matches(lip_jpeg_enc *e, const lip_jpeg_bg *bg,
                          const lip_image *frame, const int rect[4],
                          bool expect_spliced) {
  lip_buf sp = {0}, full = {0};
  lip_err err = {0};
  lip_jpeg_splice_info info;
  lip_jpeg_opts o = lip_jpeg_bg_opts(bg);
  int ok = 1;
  int rc = lip_jpeg_splice_encode(e, bg, frame, rect, NULL, &sp, &info, &err);
  if (rc) {
    printf("# splice [%d,%d,%d,%d] of %dx%d q%d: %s\n", rect[0], rect[1],
           rect[2], rect[3], frame->w, frame->h, o.quality, err.msg);
    ok = 0;
  }
  if (ok && lip_jpeg_enc_encode(e, frame, &o, &full, &err))
    ok = 0;
  if (ok && (sp.len != full.len || memcmp(sp.data, full.data, sp.len) != 0)) {
    printf("# splice [%d,%d,%d,%d] of %dx%d q%d R%d dct%d: %zu bytes vs full "
           "%zu, differ\n",
           rect[0], rect[1], rect[2], rect[3], frame->w, frame->h, o.quality,
           o.restart_interval, o.fast_dct, sp.len, full.len);
    ok = 0;
  }
  if (ok && info.spliced != expect_spliced) {
    printf("# splice [%d,%d,%d,%d]: spliced=%d, expected %d\n", rect[0],
           rect[1], rect[2], rect[3], info.spliced, expect_spliced);
    ok = 0;
  }
  /* The decoder treats every libjpeg warning (bad RST numbering, short segment)
   * as an error. */
  lip_image dec = {0};
  if (ok && lip_jpeg_decode(sp.data, sp.len, &dec, &err)) {
    printf("# spliced stream does not decode: %s\n", err.msg);
    ok = 0;
  }
  lip_image_free(&dec);
  lip_buf_free(&sp);
  lip_buf_free(&full);
  return ok;
}

static lip_image new_image(int w, int h) {
  lip_image img = {0};
  lip_err err = {0};
  if (lip_image_alloc(&img, w, h, &err))
    printf("# alloc %dx%d: %s\n", w, h, err.msg);
  return img;
}

static void t_restart_choice(void) {
  CHECK(lip_jpeg_splice_restart(1280) == 8);    /* 80 MCUs */
  CHECK(lip_jpeg_splice_restart(1920) == 8);    /* 120 */
  CHECK(lip_jpeg_splice_restart(1000) == 7);    /* 63 = 7*9 */
  CHECK(lip_jpeg_splice_restart(320) == 5);     /* 20 */
  CHECK(lip_jpeg_splice_restart(13 * 16) == 1); /* 13 is prime */
  CHECK(lip_jpeg_splice_restart(17) == 2);      /* 2 MCUs, the second partial */
}

/* The cached stream is exactly a full encode of the background with markers,
 * and is indexed. */
static void t_background(void) {
  lip_image bgi = new_image(1280, 720);
  synth_bg(&bgi, 7);
  lip_jpeg_enc *e = lip_jpeg_enc_new();
  lip_err err = {0};
  lip_jpeg_bg *bg = lip_jpeg_bg_new(e, &bgi, NULL, &err);
  CHECK_MSG(bg, "%s", err.msg);
  if (bg) {
    lip_jpeg_opts o = lip_jpeg_bg_opts(bg);
    CHECK(o.quality == 75 && o.restart_interval == 8 && !o.fast_dct);
    lip_buf full = {0};
    CHECK_RC(lip_jpeg_enc_encode(e, &bgi, &o, &full, &err));
    size_t len;
    const uint8_t *s = lip_jpeg_bg_stream(bg, &len);
    CHECK(len == full.len && memcmp(s, full.data, len) == 0);
    /* Index: 10 segments x 45 MCU rows; memory counts stream and index. */
    CHECK(lip_jpeg_bg_bytes(bg) >= len + 451 * 4);
    CHECK(lip_jpeg_bg_bytes(bg) < len + 451 * 4 + 1024);
    /* 449 markers in the stream, numbered in order (the splitter would have
     * refused otherwise; counted here independently). */
    int markers = 0, in_order = 1;
    for (size_t i = 0; i + 1 < len; i++)
      if (s[i] == 0xFF && s[i + 1] >= 0xD0 && s[i + 1] <= 0xD7) {
        if (s[i + 1] - 0xD0 != (markers & 7))
          in_order = 0;
        markers++;
      }
    CHECK_MSG(markers == 449, "%d markers", markers);
    CHECK(in_order);
    lip_buf_free(&full);
  }
  lip_jpeg_bg_free(bg);
  lip_jpeg_enc_free(e);
  lip_image_free(&bgi);
}

/* Crops everywhere on a 720p frame: aligned, straddling segments, at every edge
 * and corner, odd sizes down to one pixel; both DCT methods, the preferred R
 * and two others. */
static void t_splice_positions_720p(void) {
  static const int rects[][4] = {
      {532, 210, 714,
       392}, /* the measured case: aligned to the MCU grid vertically */
      {500, 207, 682, 389},   /* straddles segment edges */
      {0, 0, 182, 182},       /* top-left corner */
      {1098, 0, 1280, 182},   /* top-right */
      {0, 538, 182, 720},     /* bottom-left */
      {1098, 538, 1280, 720}, /* bottom-right: the last segment, before EOI */
      {3, 5, 190, 176},       /* odd, non-square */
      {1279, 719, 1280, 720}, /* one pixel, the very last */
      {0, 0, 1, 1},           /* one pixel, the very first */
      {127, 15, 129, 17},     /* 2x2 across an MCU and segment corner */
      {640, 300, 817, 481},   /* 177 px, odd */
      {0, 300, 1280,
       330}, /* a full-width band (30 segment rows of 10: still spliced) */
  };
  lip_image bgi = new_image(1280, 720), fr = new_image(1280, 720);
  synth_bg(&bgi, 11);
  lip_jpeg_enc *e = lip_jpeg_enc_new();
  lip_err err = {0};
  static const int restarts[] = {8, 4, 16};
  int cases = 0, good = 0;
  for (int fast = 0; fast < 2; fast++)
    for (size_t ri = 0; ri < LIP_ARRAY_LEN(restarts); ri++) {
      lip_jpeg_opts o = lip_jpeg_opts_default();
      o.fast_dct = fast;
      o.restart_interval = restarts[ri];
      lip_jpeg_bg *bg = lip_jpeg_bg_new(e, &bgi, &o, &err);
      CHECK_MSG(bg, "%s", err.msg);
      if (!bg)
        continue;
      for (size_t i = 0; i < LIP_ARRAY_LEN(rects); i++) {
        copy_image(&fr, &bgi);
        paint_rect(&fr, rects[i], (uint32_t)(100 + i));
        cases++;
        good += splice_matches(e, bg, &fr, rects[i], true);
      }
      lip_jpeg_bg_free(bg);
    }
  CHECK_MSG(good == cases, "%d of %d cases byte-identical", good, cases);
  lip_jpeg_enc_free(e);
  lip_image_free(&bgi);
  lip_image_free(&fr);
}

/* Frame sizes that are not multiples of 16 (edge MCUs padded by replication),
 * and small frames where R = 1 or the whole row is one segment. Rects hug the
 * right and bottom edges. */
static void t_splice_odd_frames(void) {
  static const int sizes[][2] = {
      {1000, 563}, {321, 241}, {208, 100}, {17, 17}, {1920, 1080}};
  lip_jpeg_enc *e = lip_jpeg_enc_new();
  lip_err err = {0};
  int cases = 0, good = 0;
  for (size_t si = 0; si < LIP_ARRAY_LEN(sizes); si++) {
    int w = sizes[si][0], h = sizes[si][1];
    lip_image bgi = new_image(w, h), fr = new_image(w, h);
    synth_bg(&bgi, (uint32_t)(31 + si));
    lip_jpeg_bg *bg = lip_jpeg_bg_new(e, &bgi, NULL, &err);
    CHECK_MSG(bg, "%dx%d: %s", w, h, err.msg);
    int rw = LIP_MIN(w / 3, 183), rh = LIP_MIN(h / 3, 181);
    int rects[][4] = {
        {w - rw, h - rh, w, h},
        {w - rw, 0, w, rh},
        {0, h - rh, rw, h},
        {w / 2 - rw / 2, h / 2 - rh / 2, w / 2 + rw / 2 + 1, h / 2 + rh / 2},
        {w - 1, h - 1, w, h}};
    for (size_t i = 0; bg && i < LIP_ARRAY_LEN(rects); i++) {
      copy_image(&fr, &bgi);
      paint_rect(&fr, rects[i], (uint32_t)(7 + i));
      /* On tiny frames a rect can cover more than half the segments: a full
       * encode then, and still the same bytes. */
      lip_jpeg_splice_info info;
      lip_buf tmp = {0};
      CHECK_RC(lip_jpeg_splice_encode(e, bg, &fr, rects[i], NULL, &tmp, &info,
                                      &err));
      lip_buf_free(&tmp);
      bool expect = 2 * info.segments <= info.total && info.spliced;
      cases++;
      good += splice_matches(e, bg, &fr, rects[i], expect);
      if (w >= 321)
        CHECK_MSG(info.spliced, "%dx%d rect %zu not spliced", w, h, i);
    }
    lip_jpeg_bg_free(bg);
    lip_image_free(&bgi);
    lip_image_free(&fr);
  }
  CHECK_MSG(good == cases, "%d of %d cases byte-identical", good, cases);
  lip_jpeg_enc_free(e);
}

/* Every quality the API accepts (1..100), islow at two positions, ifast at one;
 * on a 320x240 frame (20 MCUs per row, R = 5) to keep the 300 full encodes
 * quick. */
static void t_splice_every_quality(void) {
  lip_image bgi = new_image(320, 240), fr = new_image(320, 240);
  synth_bg(&bgi, 5);
  lip_jpeg_enc *e = lip_jpeg_enc_new();
  lip_err err = {0};
  const int ra[4] = {101, 67, 190, 170}, rb[4] = {250, 170, 320, 240};
  int cases = 0, good = 0;
  for (int q = 1; q <= 100; q++)
    for (int fast = 0; fast < 2; fast++) {
      lip_jpeg_opts o = lip_jpeg_opts_default();
      o.quality = q;
      o.fast_dct = fast;
      lip_jpeg_bg *bg = lip_jpeg_bg_new(e, &bgi, &o, &err);
      CHECK_MSG(bg, "q%d: %s", q, err.msg);
      if (!bg)
        continue;
      copy_image(&fr, &bgi);
      paint_rect(&fr, ra, (uint32_t)q);
      cases++;
      good += splice_matches(e, bg, &fr, ra, true);
      if (!fast) {
        copy_image(&fr, &bgi);
        paint_rect(&fr, rb, (uint32_t)q + 1000);
        cases++;
        good += splice_matches(e, bg, &fr, rb, true);
      }
      lip_jpeg_bg_free(bg);
    }
  CHECK_MSG(good == cases, "%d of %d quality cases byte-identical", good,
            cases);
  lip_jpeg_enc_free(e);
  lip_image_free(&bgi);
  lip_image_free(&fr);
}

/* The comparison can fail: a frame that differs outside the rect gives
 * different bytes (the splice trusts the caller), and the spliced frame decodes
 * to the same pixels as a full encode without restart markers (restart markers
 * change the entropy coding, not the coefficients). */
static void t_splice_negative_and_pixels(void) {
  lip_image bgi = new_image(1280, 720), fr = new_image(1280, 720);
  synth_bg(&bgi, 3);
  lip_jpeg_enc *e = lip_jpeg_enc_new();
  lip_err err = {0};
  lip_jpeg_bg *bg = lip_jpeg_bg_new(e, &bgi, NULL, &err);
  CHECK_MSG(bg, "%s", err.msg);
  const int r[4] = {500, 207, 682, 389};
  copy_image(&fr, &bgi);
  paint_rect(&fr, r, 9);
  fr.data[(size_t)100 * fr.stride + 3 * 100] ^= 0x80; /* outside the rect */
  lip_buf sp = {0}, full = {0};
  lip_jpeg_opts o = lip_jpeg_bg_opts(bg);
  CHECK_RC(lip_jpeg_splice_encode(e, bg, &fr, r, NULL, &sp, NULL, &err));
  CHECK_RC(lip_jpeg_enc_encode(e, &fr, &o, &full, &err));
  CHECK(sp.len != full.len || memcmp(sp.data, full.data, sp.len) != 0);
  /* Now a proper frame: pixels equal to those of a marker-free full encode. */
  copy_image(&fr, &bgi);
  paint_rect(&fr, r, 9);
  CHECK_RC(lip_jpeg_splice_encode(e, bg, &fr, r, NULL, &sp, NULL, &err));
  o.restart_interval = 0;
  CHECK_RC(lip_jpeg_enc_encode(e, &fr, &o, &full, &err));
  CHECK(full.len < sp.len); /* the markers cost bytes... */
  CHECK(sp.len <
        full.len +
            full.len / 25); /* ...under 4% at R = 8 (measured ~1.5-2.5%) */
  lip_image a = {0}, b = {0};
  CHECK_RC(lip_jpeg_decode(sp.data, sp.len, &a, &err));
  CHECK_RC(lip_jpeg_decode(full.data, full.len, &b, &err));
  CHECK(a.data && b.data &&
        memcmp(a.data, b.data, (size_t)1280 * 720 * 3) == 0);
  lip_image_free(&a);
  lip_image_free(&b);
  lip_buf_free(&sp);
  lip_buf_free(&full);
  lip_jpeg_bg_free(bg);
  lip_jpeg_enc_free(e);
  lip_image_free(&bgi);
  lip_image_free(&fr);
}

/* Fallbacks give a full encode with the requested settings. */
static void t_splice_fallbacks(void) {
  lip_image bgi = new_image(640, 368), fr = new_image(640, 368);
  synth_bg(&bgi, 13);
  lip_jpeg_enc *e = lip_jpeg_enc_new();
  lip_err err = {0};
  lip_jpeg_bg *bg = lip_jpeg_bg_new(e, &bgi, NULL, &err);
  CHECK_MSG(bg, "%s", err.msg);
  lip_buf sp = {0}, full = {0};
  lip_jpeg_splice_info info;
  const int r[4] = {200, 100, 380, 280};
  copy_image(&fr, &bgi);
  paint_rect(&fr, r, 1);
  /* Different quality: full encode at that quality. */
  lip_jpeg_opts o = lip_jpeg_bg_opts(bg);
  o.quality = 90;
  CHECK_RC(lip_jpeg_splice_encode(e, bg, &fr, r, &o, &sp, &info, &err));
  CHECK_RC(lip_jpeg_enc_encode(e, &fr, &o, &full, &err));
  CHECK(!info.spliced && sp.len == full.len &&
        memcmp(sp.data, full.data, sp.len) == 0);
  /* Same settings passed explicitly: spliced. */
  o.quality = 75;
  CHECK_RC(lip_jpeg_splice_encode(e, bg, &fr, r, &o, &sp, &info, &err));
  CHECK(info.spliced && info.segments > 0 && info.segments < info.total);
  CHECK(info.sub_w % 16 == 0 && info.sub_h % 16 == 0 && info.sub_w >= 180);
  /* A rect over most of the frame: full encode, same bytes. */
  const int big[4] = {0, 0, 640, 300};
  copy_image(&fr, &bgi);
  paint_rect(&fr, big, 2);
  CHECK(splice_matches(e, bg, &fr, big, false));
  /* A frame of another size: full encode of that frame. */
  lip_image small = {.data = fr.data, .w = 320, .h = 200, .stride = fr.stride};
  CHECK_RC(lip_jpeg_splice_encode(e, bg, &small, r, NULL, &sp, &info, &err));
  lip_image dec = {0};
  CHECK(!info.spliced);
  CHECK_RC(lip_jpeg_decode(sp.data, sp.len, &dec, &err));
  CHECK(dec.w == 320 && dec.h == 200);
  lip_image_free(&dec);
  lip_buf_free(&sp);
  lip_buf_free(&full);
  lip_jpeg_bg_free(bg);
  lip_jpeg_enc_free(e);
  lip_image_free(&bgi);
  lip_image_free(&fr);
}

static void t_splice_bad_args(void) {
  lip_image bgi = new_image(320, 240);
  synth_bg(&bgi, 1);
  lip_jpeg_enc *e = lip_jpeg_enc_new();
  lip_err err = {0};
  lip_jpeg_opts o = lip_jpeg_opts_default();
  o.restart_interval = 3; /* 20 MCUs per row: 3 does not divide */
  CHECK(lip_jpeg_bg_new(e, &bgi, &o, &err) == NULL);
  CHECK(err.code == LIP_EINVAL && strstr(err.msg, "divide") &&
        strstr(err.msg, "20 MCUs"));
  o.restart_interval = 0;
  o.quality = 101;
  CHECK(lip_jpeg_bg_new(e, &bgi, &o, &err) == NULL && err.code == LIP_EINVAL);
  CHECK(lip_jpeg_bg_new(NULL, &bgi, NULL, &err) == NULL &&
        err.code == LIP_EINVAL);
  CHECK(lip_jpeg_bg_new(e, NULL, NULL, &err) == NULL && err.code == LIP_EINVAL);
  lip_jpeg_bg *bg = lip_jpeg_bg_new(e, &bgi, NULL, &err);
  CHECK(bg);
  lip_buf out = {0};
  static const int bad[][4] = {
      {-1, 0, 10, 10}, {0, 0, 321, 10}, {5, 5, 5, 9}, {0, 10, 10, 2}};
  for (size_t i = 0; i < LIP_ARRAY_LEN(bad); i++) {
    int rc =
        lip_jpeg_splice_encode(e, bg, &bgi, bad[i], NULL, &out, NULL, &err);
    CHECK(rc == LIP_EINVAL && strstr(err.msg, "rect") && out.len == 0);
  }
  CHECK(lip_jpeg_splice_encode(e, NULL, &bgi, bad[0], NULL, &out, NULL, &err) ==
        LIP_EINVAL);
  CHECK(lip_jpeg_splice_encode(e, bg, NULL, bad[0], NULL, &out, NULL, &err) ==
        LIP_EINVAL);
  lip_image zero = {0};
  const int r[4] = {10, 10, 20, 20};
  CHECK(lip_jpeg_splice_encode(e, bg, &zero, r, NULL, &out, NULL, &err) ==
        LIP_EINVAL);
  lip_jpeg_bg_free(NULL);
  CHECK(lip_jpeg_bg_bytes(NULL) == 0);
  lip_buf_free(&out);
  lip_jpeg_bg_free(bg);
  lip_jpeg_enc_free(e);
  lip_image_free(&bgi);
}

/* Once the encoder scratch and the output buffer are warm, a splice allocates
 * nothing of ours. */
static void t_splice_no_alloc_warm(void) {
  lip_image bgi = new_image(1280, 720), fr = new_image(1280, 720);
  synth_bg(&bgi, 21);
  lip_jpeg_enc *e = lip_jpeg_enc_new();
  lip_err err = {0};
  lip_jpeg_bg *bg = lip_jpeg_bg_new(e, &bgi, NULL, &err);
  const int r[4] = {500, 207, 682, 389};
  copy_image(&fr, &bgi);
  paint_rect(&fr, r, 4);
  lip_buf out = {0};
  CHECK_RC(lip_jpeg_splice_encode(e, bg, &fr, r, NULL, &out, NULL, &err));
  lip_alloc_fail_at(1);
  int rc = lip_jpeg_splice_encode(e, bg, &fr, r, NULL, &out, NULL, &err);
  lip_alloc_fail_at(0);
  CHECK_MSG(rc == 0, "%s", err.msg);
  lip_buf_free(&out);
  lip_jpeg_bg_free(bg);
  lip_jpeg_enc_free(e);
  lip_image_free(&bgi);
  lip_image_free(&fr);
}

/* ---- the pipeline uses the splice (avatar on disk, tiny UNet)
 * ------------------------------ */

/* Writes a 4-frame 640x360 avatar (textured frames, rects at odd positions, one
 * at the bottom right corner) into dir. */
static int write_avatar(const char *dir) {
  char p[600];
  lip_err err = {0};
  snprintf(p, sizeof p, "%s/frames", dir);
  if (lip_dir_make(p, &err))
    return -1;
  lip_image img = new_image(640, 360);
  lip_buf b = {0};
  for (int i = 0; i < 4; i++) {
    synth_bg(&img, (uint32_t)(50 + i));
    if (lip_jpeg_encode(&img, 92, &b, &err))
      return -1;
    snprintf(p, sizeof p, "%s/frames/%06d.jpg", dir, i);
    if (lip_file_write_atomic(p, b.data, b.len, &err))
      return -1;
  }
  lip_buf_free(&b);
  lip_image_free(&img);
  const char *rects =
      "[[250,120,431,301],[3,7,180,190],[459,179,640,360],[300,100,489,289]]";
  snprintf(p, sizeof p, "%s/crop_rects.json", dir);
  if (lip_file_write_atomic(p, rects, strlen(rects), &err))
    return -1;
  uint8_t *m;
  size_t n;
  if (lip_file_read(test_model("unet_tiny.onnx"), 0, &m, &n, &err))
    return -1;
  snprintf(p, sizeof p, "%s/unet.onnx", dir);
  int rc = lip_file_write_atomic(p, m, n, &err);
  lip_free(m);
  return rc;
}

static int run_format(lip_pipeline *p, lip_avatar *a, int format, int quality,
                      lip_result *res) {
  static float aud[LIP_UNET_AUDIO_FLOATS];
  for (size_t i = 0; i < LIP_ARRAY_LEN(aud); i++)
    aud[i] = (float)((i * 7919) % 200) / 100.0f;
  lip_request r = {.batch = 8,
                   .start_frame = 0,
                   .audio = aud,
                   .n_audio = 1,
                   .format = format,
                   .quality = quality,
                   .order = LIP_ORDER_PINGPONG};
  lip_err err = {0};
  int rc = lip_pipeline_run(p, a, &r, res, &err);
  if (rc)
    printf("# pipeline run: %s\n", err.msg);
  return rc;
}

/* Incremental pipeline JPEG = full encode (same R) of the pipeline's own
 * composited frame (BGR output of the same request), byte for byte; the
 * non-incremental pipeline decodes to the same pixels; a request at another
 * quality is a plain full encode; the avatar's memory figure grows by the
 * cached streams. */
static void t_pipeline_uses_splice(void) {
  if (!lip_file_exists(test_model("unet_tiny.onnx")))
    SKIP("models/unet_tiny.onnx missing");
  char dir[256];
  snprintf(dir, sizeof dir, "/tmp/lipsync-test-incr-%ld", (long)getpid());
  CHECK_RC(write_avatar(dir));
  lip_err err = {0};
  lip_avatar_opts ao = lip_avatar_opts_default();
  ao.engine.intra_threads = 1;
  lip_avatar *a = lip_avatar_load(dir, "incr", NULL, &ao, &err);
  CHECK_MSG(a, "%s", err.msg);
  lip_pipeline_opts po = lip_pipeline_opts_default();
  po.threads = 2;
  lip_pipeline *pin = lip_pipeline_new(&po, &err);
  po.incremental_jpeg = false;
  po.incremental_png = false;
  lip_pipeline *pfull = lip_pipeline_new(&po, &err);
  lip_jpeg_enc *e = lip_jpeg_enc_new();
  lip_result bgr = {0}, inc = {0}, full = {0}, q90 = {0};
  if (!a || !pin || !pfull)
    goto out;
  size_t mem0 = lip_avatar_memory_bytes(a);
  CHECK_RC(run_format(pin, a, LIP_OUT_BGR, 0, &bgr));
  CHECK(lip_avatar_memory_bytes(a) ==
        mem0); /* BGR output builds no JPEG backgrounds */
  CHECK_RC(run_format(pin, a, LIP_OUT_JPEG, 0, &inc));
  size_t mem1 = lip_avatar_memory_bytes(a);
  CHECK_MSG(mem1 > mem0 + 4 * 10000, "memory %zu -> %zu", mem0, mem1);
  CHECK_RC(run_format(pfull, a, LIP_OUT_JPEG, 0, &full));
  CHECK_RC(run_format(pin, a, LIP_OUT_JPEG, 90, &q90));
  int identical = 0, same_pixels = 0, differ_from_plain = 0;
  for (int i = 0; i < 8 && bgr.count == 8 && inc.count == 8 && full.count == 8;
       i++) {
    lip_image fr = {
        .data = bgr.frames[i].data, .w = 640, .h = 360, .stride = 640 * 3};
    lip_jpeg_opts o = lip_jpeg_opts_default();
    o.restart_interval = lip_jpeg_splice_restart(640);
    lip_buf ref = {0};
    CHECK_RC(lip_jpeg_enc_encode(e, &fr, &o, &ref, &err));
    identical += ref.len == inc.frames[i].len &&
                 memcmp(ref.data, inc.frames[i].data, ref.len) == 0;
    differ_from_plain += full.frames[i].len != inc.frames[i].len;
    lip_image da = {0}, db = {0};
    CHECK_RC(lip_jpeg_decode(inc.frames[i].data, inc.frames[i].len, &da, &err));
    CHECK_RC(
        lip_jpeg_decode(full.frames[i].data, full.frames[i].len, &db, &err));
    same_pixels +=
        da.data && db.data && memcmp(da.data, db.data, 640 * 360 * 3) == 0;
    lip_image_free(&da);
    lip_image_free(&db);
    /* Quality 90 is not the cache's quality: a plain full encode without
     * markers. */
    o.quality = 90;
    o.restart_interval = 0;
    CHECK_RC(lip_jpeg_enc_encode(e, &fr, &o, &ref, &err));
    CHECK(q90.count == 8 && ref.len == q90.frames[i].len &&
          memcmp(ref.data, q90.frames[i].data, ref.len) == 0);
    lip_buf_free(&ref);
  }
  CHECK_MSG(identical == 8, "%d of 8 pipeline frames equal to a full encode",
            identical);
  CHECK_MSG(same_pixels == 8,
            "%d of 8 frames decode like the non-incremental ones", same_pixels);
  CHECK(differ_from_plain == 8);
  /* PNG: the incremental pipeline's frames decode exactly to the composited
   * frame and are not libspng's bytes (the pieces path ran); the plain
   * pipeline's are libspng's. */
  lip_result pi = {0}, pf = {0};
  CHECK_RC(run_format(pin, a, LIP_OUT_PNG, 0, &pi));
  CHECK_RC(run_format(pfull, a, LIP_OUT_PNG, 0, &pf));
  int png_exact = 0, png_pieces = 0, png_plain = 0;
  for (int i = 0; i < 8 && pi.count == 8 && pf.count == 8 && bgr.count == 8;
       i++) {
    lip_image fr = {
        .data = bgr.frames[i].data, .w = 640, .h = 360, .stride = 640 * 3};
    lip_image d = {0};
    CHECK_RC(lip_png_decode(pi.frames[i].data, pi.frames[i].len, &d, &err));
    png_exact += d.data && memcmp(d.data, fr.data, 640 * 360 * 3) == 0;
    lip_image_free(&d);
    lip_buf ref = {0};
    CHECK_RC(lip_png_encode(&fr, 1, &ref, &err));
    png_pieces += ref.len != pi.frames[i].len ||
                  memcmp(ref.data, pi.frames[i].data, ref.len);
    png_plain += ref.len == pf.frames[i].len &&
                 !memcmp(ref.data, pf.frames[i].data, ref.len);
    lip_buf_free(&ref);
  }
  CHECK_MSG(png_exact == 8 && png_pieces == 8 && png_plain == 8,
            "PNG %d exact, %d pieces, %d plain", png_exact, png_pieces,
            png_plain);
  lip_result_free(&pi);
  lip_result_free(&pf);
out:
  lip_result_free(&bgr);
  lip_result_free(&inc);
  lip_result_free(&full);
  lip_result_free(&q90);
  lip_jpeg_enc_free(e);
  lip_pipeline_free(pin);
  lip_pipeline_free(pfull);
  lip_avatar_unref(a);
  char cmd[400];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (system(cmd) != 0)
    printf("# could not remove %s\n", dir);
}

/* ---- incremental PNG
 * --------------------------------------------------------------------- */

/* Independent structural check of a PNG: chunk CRCs, IDATs concatenated and
 * inflated by zlib (which verifies the Adler-32), inflated size = h * (1 + 3w).
 * Returns 1 when all hold. */
static int png_structure_ok(const uint8_t *d, size_t len, int w, int h) {
  if (len < 8 + 25 + 12 || memcmp(d + 1, "PNG", 3) != 0)
    return 0;
  size_t p = 8, zn = 0;
  uint8_t *z = malloc(len);
  int iend = 0;
  while (z && p + 12 <= len && !iend) {
    uint32_t n = (uint32_t)d[p] << 24 | (uint32_t)d[p + 1] << 16 |
                 (uint32_t)d[p + 2] << 8 | d[p + 3];
    if (p + 12 + n > len)
      break;
    uint32_t crc = (uint32_t)d[p + 8 + n] << 24 | (uint32_t)d[p + 9 + n] << 16 |
                   (uint32_t)d[p + 10 + n] << 8 | d[p + 11 + n];
    if (crc32(0, d + p + 4, n + 4) != crc) {
      printf("# chunk at %zu: CRC mismatch\n", p);
      free(z);
      return 0;
    }
    if (!memcmp(d + p + 4, "IDAT", 4)) {
      memcpy(z + zn, d + p + 8, n);
      zn += n;
    }
    iend = !memcmp(d + p + 4, "IEND", 4);
    p += 12 + n;
  }
  uLongf rawn = (uLongf)h * (1 + 3 * (uLongf)w);
  uint8_t *raw = malloc(rawn + 1);
  uLongf got = rawn + 1;
  int zr = z && raw ? uncompress(raw, &got, z, zn) : Z_MEM_ERROR;
  free(z);
  free(raw);
  if (zr != Z_OK || got != rawn || !iend || p != len) {
    printf("# inflate %d, %lu of %lu bytes, IEND %d, %zu of %zu bytes parsed\n",
           zr, (unsigned long)got, (unsigned long)rawn, iend, p, len);
    return 0;
  }
  return 1;
}

/* Incremental PNG of frame against bg_img, compared with the piecewise encode
 * of the whole frame and decoded back to exactly the frame's pixels. */
static int png_case(lip_png_enc *e, const lip_image *bgi, const lip_image *fr,
                    const int rect[4], int level, int crop_level) {
  lip_err err = {0};
  int ok = 1;
  lip_png_bg *bg = lip_png_bg_new(bgi, rect, level, crop_level, &err);
  lip_png_bg *ref = lip_png_bg_new(fr, rect, level, crop_level, &err);
  lip_buf a = {0}, b = {0};
  bool inc = false, inc2 = false;
  if (!bg || !ref) {
    printf("# png bg: %s\n", err.msg);
    ok = 0;
  }
  if (ok && (lip_png_piece_encode(e, bg, fr, rect, level, &a, &inc, &err) ||
             lip_png_piece_encode(e, ref, fr, rect, level, &b, &inc2, &err))) {
    printf("# png pieces: %s\n", err.msg);
    ok = 0;
  }
  if (ok &&
      (!inc || !inc2 || a.len != b.len || memcmp(a.data, b.data, a.len) != 0)) {
    printf("# png [%d,%d,%d,%d] %dx%d L%d/%d: %zu vs %zu bytes, differ\n",
           rect[0], rect[1], rect[2], rect[3], fr->w, fr->h, level, crop_level,
           a.len, b.len);
    ok = 0;
  }
  if (ok && !png_structure_ok(a.data, a.len, fr->w, fr->h))
    ok = 0;
  lip_image dec = {0};
  if (ok && lip_png_decode(a.data, a.len, &dec, &err)) {
    printf("# png decode: %s\n", err.msg);
    ok = 0;
  }
  for (int y = 0; ok && y < fr->h; y++)
    if (memcmp(dec.data + (size_t)y * dec.stride,
               fr->data + (size_t)y * fr->stride, (size_t)fr->w * 3) != 0) {
      printf("# png decode differs in row %d\n", y);
      ok = 0;
    }
  lip_image_free(&dec);
  lip_buf_free(&a);
  lip_buf_free(&b);
  lip_png_bg_free(bg);
  lip_png_bg_free(ref);
  return ok;
}

/* Rects at every edge and corner (the row below the rect missing at the bottom
 * edge, the last cached piece empty at the bottom-right), odd sizes, one pixel;
 * cached levels 0, 1 (Z_RLE), 6; crop stored and deflated. */
static void t_png_positions(void) {
  lip_png_enc *e = lip_png_enc_new();
  static const int sizes[][2] = {{640, 360}, {101, 67}};
  int cases = 0, good = 0;
  for (size_t si = 0; si < LIP_ARRAY_LEN(sizes); si++) {
    int w = sizes[si][0], h = sizes[si][1];
    lip_image bgi = new_image(w, h), fr = new_image(w, h);
    synth_bg(&bgi, (uint32_t)(77 + si));
    int rw = LIP_MIN(183, w / 3), rh = LIP_MIN(181, h / 3);
    int rects[][4] = {{w / 3, h / 3, w / 3 + rw, h / 3 + rh},
                      {0, 0, rw, rh},
                      {w - rw, 0, w, rh},
                      {0, h - rh, rw, h},
                      {w - rw, h - rh, w, h},
                      {w - 1, h - 1, w, h},
                      {0, 0, 1, 1},
                      {0, h / 2, w, h / 2 + 3}};
    static const int levels[][2] = {{1, 0}, {6, 0}, {0, 0}, {1, 1}, {1, 6}};
    for (size_t i = 0; i < LIP_ARRAY_LEN(rects); i++)
      for (size_t l = 0; l < LIP_ARRAY_LEN(levels); l++) {
        if (si == 0 && l > 1 && i > 1)
          continue; /* the level matrix on two rects */
        copy_image(&fr, &bgi);
        paint_rect(&fr, rects[i], (uint32_t)(i * 10 + l));
        cases++;
        good += png_case(e, &bgi, &fr, rects[i], levels[l][0], levels[l][1]);
      }
    lip_image_free(&bgi);
    lip_image_free(&fr);
  }
  CHECK_MSG(good == cases, "%d of %d PNG cases", good, cases);
  lip_png_enc_free(e);
}

/* The comparison can fail (a change outside the rect), a changed rect smaller
 * than the cached one is fine, and the fallbacks give a lip_png_encode PNG. */
static void t_png_negative_and_fallbacks(void) {
  lip_png_enc *e = lip_png_enc_new();
  lip_image bgi = new_image(320, 200), fr = new_image(320, 200);
  synth_bg(&bgi, 99);
  lip_err err = {0};
  const int r[4] = {100, 50, 283, 181}, inner[4] = {120, 60, 200, 150};
  lip_png_bg *bg = lip_png_bg_new(&bgi, r, 1, 0, &err);
  CHECK_MSG(bg, "%s", err.msg);
  copy_image(&fr, &bgi);
  paint_rect(&fr, inner, 5);
  lip_buf a = {0};
  bool inc = false;
  CHECK_RC(lip_png_piece_encode(e, bg, &fr, inner, 1, &a, &inc, &err));
  CHECK(inc);
  lip_image dec = {0};
  CHECK_RC(lip_png_decode(a.data, a.len, &dec, &err));
  CHECK(dec.data && memcmp(dec.data, fr.data, (size_t)320 * 200 * 3) == 0);
  lip_image_free(&dec);
  /* A pixel changed outside the rect is not seen (the caller's guarantee):
   * decode differs. */
  fr.data[3 * 5] ^= 0x40;
  CHECK_RC(lip_png_piece_encode(e, bg, &fr, inner, 1, &a, &inc, &err));
  CHECK_RC(lip_png_decode(a.data, a.len, &dec, &err));
  CHECK(dec.data && memcmp(dec.data, fr.data, (size_t)320 * 200 * 3) != 0);
  lip_image_free(&dec);
  /* Fallbacks: rect outside the cached one, other level. */
  const int outside[4] = {90, 50, 200, 150};
  CHECK_RC(lip_png_piece_encode(e, bg, &fr, outside, 1, &a, &inc, &err));
  CHECK(!inc);
  CHECK_RC(lip_png_decode(a.data, a.len, &dec, &err));
  CHECK(dec.data && memcmp(dec.data, fr.data, (size_t)320 * 200 * 3) == 0);
  lip_image_free(&dec);
  CHECK_RC(lip_png_piece_encode(e, bg, &fr, inner, 3, &a, &inc, &err));
  CHECK(!inc);
  /* Bad arguments. */
  const int bad[4] = {10, 10, 400, 20};
  CHECK(lip_png_piece_encode(e, bg, &fr, bad, 1, &a, &inc, &err) ==
            LIP_EINVAL &&
        strstr(err.msg, "rect"));
  CHECK(lip_png_bg_new(&bgi, bad, 1, 0, &err) == NULL &&
        err.code == LIP_EINVAL);
  CHECK(lip_png_bg_new(&bgi, r, 10, 0, &err) == NULL && err.code == LIP_EINVAL);
  CHECK(lip_png_piece_encode(NULL, bg, &fr, r, 1, &a, &inc, &err) ==
        LIP_EINVAL);
  lip_png_bg_free(NULL);
  lip_png_enc_free(NULL);
  /* Warm: no allocation of ours. */
  CHECK_RC(lip_png_piece_encode(e, bg, &fr, r, 1, &a, &inc, &err));
  lip_alloc_fail_at(1);
  int rc = lip_png_piece_encode(e, bg, &fr, r, 1, &a, &inc, &err);
  lip_alloc_fail_at(0);
  CHECK_MSG(rc == 0, "%s", err.msg);
  lip_buf_free(&a);
  lip_png_bg_free(bg);
  lip_png_enc_free(e);
  lip_image_free(&bgi);
  lip_image_free(&fr);
}

/* ---- the background cache
 * --------------------------------------------------------------- */

typedef struct race_arg {
  lip_bg_cache *c;
  const lip_image *bg;
  const lip_jpeg_bg *got[6];
  const lip_png_bg *pgot[6];
} race_arg;

static void *race_thread(void *p) {
  race_arg *r = p;
  lip_jpeg_enc *e = lip_jpeg_enc_new();
  lip_err err = {0};
  const int rect[4] = {100, 60, 190, 150};
  for (int i = 0; i < 6; i++) {
    r->got[i] = lip_bg_cache_jpeg(r->c, i, e, r->bg, &err);
    r->pgot[i] = lip_bg_cache_png(r->c, i, r->bg, rect, &err);
  }
  lip_jpeg_enc_free(e);
  return NULL;
}

/* Four threads build the same six frames at once: every thread gets the one
 * published object per frame, and the byte count holds each once. Then the
 * budget: a cache with room for nothing builds nothing and says why. */
static void t_bg_cache(void) {
  lip_image bgi = new_image(320, 240);
  synth_bg(&bgi, 8);
  lip_bg_cache *c = lip_bg_cache_new(6, NULL, 1, 0);
  CHECK(c);
  race_arg ra[4];
  pthread_t th[4];
  for (int t = 0; t < 4; t++) {
    ra[t] = (race_arg){.c = c, .bg = &bgi};
    CHECK(pthread_create(&th[t], NULL, race_thread, &ra[t]) == 0);
  }
  for (int t = 0; t < 4; t++)
    pthread_join(th[t], NULL);
  size_t sum = 0;
  int same = 0;
  for (int i = 0; i < 6; i++) {
    CHECK(ra[0].got[i] && ra[0].pgot[i]);
    same += ra[0].got[i] == ra[1].got[i] && ra[0].got[i] == ra[2].got[i] &&
            ra[0].got[i] == ra[3].got[i] && ra[0].pgot[i] == ra[3].pgot[i] &&
            ra[0].pgot[i] == ra[1].pgot[i] && ra[0].pgot[i] == ra[2].pgot[i];
    sum += lip_jpeg_bg_bytes(ra[0].got[i]) + lip_png_bg_bytes(ra[0].pgot[i]);
  }
  CHECK(same == 6);
  size_t held = lip_bg_cache_bytes(c);
  CHECK_MSG(held > sum && held < sum + 1024, "held %zu, entries %zu", held,
            sum);
  lip_bg_cache_free(c);
  /* Budget smaller than the empty table: nothing is built. */
  c = lip_bg_cache_new(6, NULL, 1, 16);
  lip_jpeg_enc *e = lip_jpeg_enc_new();
  lip_err err = {0};
  CHECK(lip_bg_cache_jpeg(c, 0, e, &bgi, &err) == NULL &&
        err.code == LIP_EBUSY && strstr(err.msg, "budget"));
  CHECK(lip_bg_cache_jpeg(c, 6, e, &bgi, &err) == NULL &&
        err.code == LIP_EINVAL);
  lip_bg_cache_free(c);
  CHECK(lip_bg_cache_new(0, NULL, 1, 0) == NULL &&
        lip_bg_cache_new(3, NULL, 10, 0) == NULL);
  lip_bg_cache_free(NULL);
  lip_jpeg_enc_free(e);
  lip_image_free(&bgi);
}

int main(void) {
  RUN(t_restart_choice);
  RUN(t_background);
  RUN(t_splice_positions_720p);
  RUN(t_splice_odd_frames);
  RUN(t_splice_every_quality);
  RUN(t_splice_negative_and_pixels);
  RUN(t_splice_fallbacks);
  RUN(t_splice_bad_args);
  RUN(t_splice_no_alloc_warm);
  RUN(t_png_positions);
  RUN(t_png_negative_and_fallbacks);
  RUN(t_bg_cache);
  RUN(t_pipeline_uses_splice);
  return test_summary();
}
