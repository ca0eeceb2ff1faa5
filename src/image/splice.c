/* SPDX-License-Identifier: MIT */
/* image/splice.c: incremental JPEG by restart-segment splicing
 * (notes/encode-limits.md §2). A background frame is encoded once with a
 * restart marker every R MCUs, R dividing the MCUs per row, so each restart
 * segment covers R MCUs of one MCU row and is self-contained: the DC predictors
 * reset at every marker, libjpeg pads each segment to a whole byte, and
 * baseline Huffman coding with the standard tables has no state that crosses a
 * marker. For a composited frame that differs from its background only inside a
 * rect, the segments whose MCUs meet the rect are re-encoded as one sub-image
 * (a window into the frame, starting on a segment boundary, with the same
 * settings and the same R) and put in place of the cached ones, the RST markers
 * numbered by global segment index. Same bytes as a full encode of the frame,
 * for about a tenth of the time.
 *
 * Conditions that make the segments equal (each one is enforced here): the same
 * quality tables, DCT method and R; sub-image origins on 16-px MCU boundaries
 * (4:2:0 MCUs; it also keeps the parity of libjpeg-turbo's alternating
 * downsampling bias); a sub-image that touches the right or bottom edge of a
 * frame whose size is not a multiple of 16 extends to that edge, so libjpeg
 * pads it by the same replication; no smoothing, no optimized tables, baseline
 * only (jpeg.c guarantees all three for every encode). */
#include "image/image.h"
#include "image/image_int.h"

#include <string.h>

#define MCU 16 /* 4:2:0: the luma MCU is 16x16 pixels */

struct lip_jpeg_bg {
  int w, h;
  lip_jpeg_opts o; /* restart_interval filled in */
  int mcus_x, mcus_y, segs_x, nseg;
  uint8_t *data; /* the whole stream, SOI to EOI */
  size_t len;
  /* seg[k] = offset of segment k's first entropy-coded byte; seg[nseg] = offset
   * of EOI. The bytes [seg[a], seg[b]) are segments a..b-1 with the markers
   * between them (and the marker after b-1 when b < nseg), so a run of
   * unchanged segments is one memcpy. */
  uint32_t *seg;
};

int lip_jpeg_splice_restart(int w) {
  int mx = (LIP_MAX(w, 1) + MCU - 1) / MCU;
  for (int r = LIP_JPEG_SPLICE_RESTART; r > 1; r--)
    if (mx % r == 0)
      return r;
  return 1;
}

void lip_jpeg_splice_scratch_free_(lip_jpeg_splice_scratch *s) {
  if (!s)
    return;
  lip_buf_free(&s->sub);
  lip_free(s->start);
  lip_free(s->end);
  memset(s, 0, sizeof *s);
}

/* Finds the first entropy-coded byte: walks the marker segments after SOI up to
 * SOS. The streams parsed here come from our own encoder, but every length is
 * bounds-checked anyway. */
static int find_scan(const uint8_t *d, size_t len, size_t *pos, lip_err *err) {
  if (len < 4 || d[0] != 0xFF || d[1] != 0xD8)
    return lip_err_set(err, LIP_EINTERNAL,
                       "JPEG splice: stream does not start with SOI");
  size_t p = 2;
  while (p + 4 <= len) {
    if (d[p] != 0xFF)
      return lip_err_set(
          err, LIP_EINTERNAL,
          "JPEG splice: expected a marker at byte %zu, found 0x%02X", p, d[p]);
    if (d[p + 1] == 0xFF) { /* fill byte before a marker */
      p++;
      continue;
    }
    unsigned m = d[p + 1];
    size_t seglen = ((size_t)d[p + 2] << 8) | d[p + 3];
    if (seglen < 2 || p + 2 + seglen > len)
      return lip_err_set(
          err, LIP_EINTERNAL,
          "JPEG splice: marker 0x%02X at byte %zu has length %zu past the "
          "end (%zu bytes)",
          m, p, seglen, len);
    if (m == 0xDA) {
      *pos = p + 2 + seglen;
      return 0;
    }
    if (m == 0xD9 || (m >= 0xD0 && m <= 0xD7))
      return lip_err_set(err, LIP_EINTERNAL,
                         "JPEG splice: marker 0x%02X before SOS", m);
    p += 2 + seglen;
  }
  return lip_err_set(err, LIP_EINTERNAL,
                     "JPEG splice: no SOS marker in %zu bytes", len);
}

/* Splits the scan starting at pos into exactly nseg restart segments:
 * start[k]/end[k] bound segment k's data (end[] may be NULL), *eoi is the
 * offset of the EOI marker. FF 00 is stuffing, FF FF is fill (never data: a
 * data FF is always followed by 00), RSTn must be numbered k mod 8 for the
 * marker after segment k. Anything else is an error naming what was found. */
static int split_scan(const uint8_t *d, size_t len, size_t pos, int nseg,
                      uint32_t *start, uint32_t *end, size_t *eoi,
                      lip_err *err) {
  int k = 0;
  size_t p = pos;
  start[0] = (uint32_t)pos;
  for (;;) {
    const uint8_t *q = p < len ? memchr(d + p, 0xFF, len - p) : NULL;
    if (!q || (size_t)(q - d) + 1 >= len)
      return lip_err_set(
          err, LIP_EINTERNAL,
          "JPEG splice: scan ends without EOI after segment %d of %d", k, nseg);
    p = (size_t)(q - d);
    unsigned b = d[p + 1];
    if (b == 0x00) {
      p += 2;
      continue;
    }
    if (b == 0xFF) {
      p++;
      continue;
    }
    size_t e = p;
    while (e > start[k] && d[e - 1] == 0xFF)
      e--; /* fill bytes belong to no segment */
    if (b >= 0xD0 && b <= 0xD7) {
      if (k + 1 >= nseg)
        return lip_err_set(
            err, LIP_EINTERNAL,
            "JPEG splice: more than the expected %d restart segments", nseg);
      if ((int)(b - 0xD0) != (k & 7))
        return lip_err_set(
            err, LIP_EINTERNAL,
            "JPEG splice: marker after segment %d is RST%u, expected RST%d", k,
            b - 0xD0, k & 7);
      if (end)
        end[k] = (uint32_t)e;
      k++;
      p += 2;
      start[k] = (uint32_t)p;
      continue;
    }
    if (b == 0xD9) {
      if (k + 1 != nseg)
        return lip_err_set(
            err, LIP_EINTERNAL,
            "JPEG splice: scan has %d restart segments, expected %d", k + 1,
            nseg);
      if (end)
        end[k] = (uint32_t)e;
      *eoi = p;
      return 0;
    }
    return lip_err_set(
        err, LIP_EINTERNAL,
        "JPEG splice: unexpected marker FF %02X inside the scan at byte %zu", b,
        p);
  }
}

static int check_frame(const char *who, const lip_image *img, lip_err *err) {
  if (!img || !img->data)
    return lip_err_set(err, LIP_EINVAL, "%s: image is NULL or empty", who);
  if (img->w < 1 || img->h < 1 || img->w > LIP_IMAGE_MAX_DIM ||
      img->h > LIP_IMAGE_MAX_DIM || img->stride < 3 * img->w)
    return lip_err_set(
        err, LIP_EINVAL,
        "%s: image %dx%d stride %d invalid (sides 1..%d, stride >= 3*width)",
        who, img->w, img->h, img->stride, LIP_IMAGE_MAX_DIM);
  return 0;
}

lip_jpeg_bg *lip_jpeg_bg_new(lip_jpeg_enc *e, const lip_image *bgimg,
                             const lip_jpeg_opts *opts, lip_err *err) {
  if (!e) {
    lip_err_set(err, LIP_EINVAL, "JPEG background: encoder is NULL");
    return NULL;
  }
  if (check_frame("JPEG background", bgimg, err))
    return NULL;
  lip_jpeg_opts o = opts ? *opts : lip_jpeg_opts_default();
  int mx = (bgimg->w + MCU - 1) / MCU, my = (bgimg->h + MCU - 1) / MCU;
  if (o.restart_interval == 0)
    o.restart_interval = lip_jpeg_splice_restart(bgimg->w);
  if (o.restart_interval < 0 || mx % o.restart_interval != 0) {
    lip_err_set(err, LIP_EINVAL,
                "JPEG background: restart interval %d must divide the %d MCUs "
                "per row of a "
                "%d px wide frame",
                o.restart_interval, mx, bgimg->w);
    return NULL;
  }
  lip_jpeg_bg *bg = lip_calloc(1, sizeof *bg);
  lip_buf b = {0};
  if (!bg)
    goto oom;
  bg->w = bgimg->w;
  bg->h = bgimg->h;
  bg->o = o;
  bg->mcus_x = mx;
  bg->mcus_y = my;
  bg->segs_x = mx / o.restart_interval;
  bg->nseg = bg->segs_x * my;
  if (lip_jpeg_enc_encode(e, bgimg, &o, &b, err))
    goto fail;
  if (b.len > UINT32_MAX) {
    lip_err_set(err, LIP_ERANGE,
                "JPEG background: %zu bytes exceed the 4 GiB index", b.len);
    goto fail;
  }
  /* Keep an exact-size copy: the encoder's buffer is over-allocated for growth.
   */
  bg->data = lip_malloc(b.len);
  bg->seg = lip_malloc(((size_t)bg->nseg + 1) * sizeof *bg->seg);
  if (!bg->data || !bg->seg)
    goto oom;
  memcpy(bg->data, b.data, b.len);
  bg->len = b.len;
  lip_buf_free(&b);
  size_t pos, eoi;
  if (find_scan(bg->data, bg->len, &pos, err) ||
      split_scan(bg->data, bg->len, pos, bg->nseg, bg->seg, NULL, &eoi, err)) {
    lip_err_prefix(err, "JPEG background %dx%d", bg->w, bg->h);
    goto fail;
  }
  bg->seg[bg->nseg] = (uint32_t)eoi;
  return bg;
oom:
  lip_err_set(err, LIP_ENOMEM, "JPEG background: out of memory");
fail:
  lip_buf_free(&b);
  lip_jpeg_bg_free(bg);
  return NULL;
}

void lip_jpeg_bg_free(lip_jpeg_bg *bg) {
  if (!bg)
    return;
  lip_free(bg->data);
  lip_free(bg->seg);
  lip_free(bg);
}

size_t lip_jpeg_bg_bytes(const lip_jpeg_bg *bg) {
  return bg ? sizeof *bg + bg->len + ((size_t)bg->nseg + 1) * sizeof *bg->seg
            : 0;
}

lip_jpeg_opts lip_jpeg_bg_opts(const lip_jpeg_bg *bg) { return bg->o; }

const uint8_t *lip_jpeg_bg_stream(const lip_jpeg_bg *bg, size_t *len) {
  *len = bg->len;
  return bg->data;
}

static int scratch_reserve(lip_jpeg_splice_scratch *s, int n, lip_err *err) {
  if (s->cap >= n)
    return 0;
  uint32_t *a = lip_realloc(s->start, (size_t)n * sizeof *a);
  if (!a)
    return lip_err_set(err, LIP_ENOMEM,
                       "JPEG splice: out of memory for %d segments", n);
  s->start = a;
  uint32_t *b = lip_realloc(s->end, (size_t)n * sizeof *b);
  if (!b)
    return lip_err_set(err, LIP_ENOMEM,
                       "JPEG splice: out of memory for %d segments", n);
  s->end = b;
  s->cap = n;
  return 0;
}

static inline uint8_t *put(uint8_t *o, const uint8_t *src, size_t n) {
  memcpy(o, src, n);
  return o + n;
}

bool lip_jpeg_splice_band(const lip_jpeg_bg *bg, const int rect[4], int *y0, int *y1) {
  if (!bg || !rect)
    return false;
  int x1 = rect[0], ry1 = rect[1], x2 = rect[2], ry2 = rect[3];
  if (x1 < 0 || ry1 < 0 || x2 > bg->w || ry2 > bg->h || x1 >= x2 || ry1 >= ry2)
    return false;
  /* The same segment arithmetic as lip_jpeg_splice_encode. */
  int r = bg->o.restart_interval;
  int sx0 = (x1 / MCU) / r, sx1 = ((x2 + MCU - 1) / MCU + r - 1) / r;
  int my0 = ry1 / MCU, my1 = (ry2 + MCU - 1) / MCU;
  if (2 * (sx1 - sx0) * (my1 - my0) > bg->nseg)
    return false;
  *y0 = my0 * MCU;
  *y1 = LIP_MIN(my1 * MCU, bg->h);
  return true;
}

int lip_jpeg_splice_encode(lip_jpeg_enc *e, const lip_jpeg_bg *bg,
                           const lip_image *frame, const int rect[4],
                           const lip_jpeg_opts *opts, lip_buf *out,
                           lip_jpeg_splice_info *info, lip_err *err) {
  lip_jpeg_splice_info dummy;
  if (!info)
    info = &dummy;
  memset(info, 0, sizeof *info);
  if (!e || !bg || !rect || !out)
    return lip_err_set(err, LIP_EINVAL,
                       "JPEG splice: encoder, background, rect or output "
                       "is NULL");
  int rc = check_frame("JPEG splice", frame, err);
  if (rc)
    return rc;
  out->len = 0;
  info->total = bg->nseg;
  const lip_jpeg_opts *bo = &bg->o;
  bool same = !opts ||
              (opts->quality == bo->quality && opts->fast_dct == bo->fast_dct &&
               opts->restart_interval == bo->restart_interval);
  if (!same || frame->w != bg->w || frame->h != bg->h)
    return lip_jpeg_enc_encode(e, frame, opts ? opts : bo, out, err);
  int x1 = rect[0], y1 = rect[1], x2 = rect[2], y2 = rect[3];
  if (x1 < 0 || y1 < 0 || x2 > frame->w || y2 > frame->h || x1 >= x2 ||
      y1 >= y2)
    return lip_err_set(
        err, LIP_EINVAL,
        "JPEG splice: changed rect [%d,%d,%d,%d] is empty or outside the "
        "%dx%d frame",
        x1, y1, x2, y2, frame->w, frame->h);
  /* Segments whose MCUs meet the rect: MCU columns [x1/16, ceil(x2/16)) widened
   * to whole segments, MCU rows [y1/16, ceil(y2/16)). */
  int r = bo->restart_interval;
  int sx0 = (x1 / MCU) / r, sx1 = ((x2 + MCU - 1) / MCU + r - 1) / r;
  int my0 = y1 / MCU, my1 = (y2 + MCU - 1) / MCU;
  int nx = sx1 - sx0, ny = my1 - my0, nsub = nx * ny;
  if (2 * nsub > bg->nseg)
    return lip_jpeg_enc_encode(e, frame, bo, out, err);

  lip_jpeg_splice_scratch *s = lip_jpeg_enc_splice_scratch_(e);
  if ((rc = scratch_reserve(s, nsub, err)))
    return rc;
  /* The sub-image: a window into the frame, reaching the frame's edge where the
   * segments do, so a frame size that is not a multiple of 16 gets the same
   * edge padding. */
  int px0 = sx0 * r * MCU, py0 = my0 * MCU;
  int px1 = LIP_MIN(sx1 * r * MCU, frame->w),
      py1 = LIP_MIN(my1 * MCU, frame->h);
  lip_image win = {.data = frame->data + (size_t)py0 * frame->stride +
                           (size_t)px0 * 3,
                   .w = px1 - px0,
                   .h = py1 - py0,
                   .stride = frame->stride};
  info->sub_w = win.w;
  info->sub_h = win.h;
  if ((rc = lip_jpeg_enc_encode(e, &win, bo, &s->sub, err)))
    return rc;
  size_t pos, eoi;
  if (find_scan(s->sub.data, s->sub.len, &pos, err) ||
      split_scan(s->sub.data, s->sub.len, pos, nsub, s->start, s->end, &eoi,
                 err))
    return lip_err_prefix(err, "JPEG splice: sub-image %dx%d at (%d,%d)", win.w,
                          win.h, px0, py0);

  /* Output = cached runs + new segments + renumbered markers: never longer than
   * the cached stream plus the new segments plus one marker each. */
  size_t need = bg->len + s->sub.len + 2 * (size_t)nsub;
  if ((rc = lip_buf_reserve(out, need, err)))
    return rc;
  uint8_t *o = out->data;
  const uint8_t *bd = bg->data;
  size_t c = 0; /* next cached byte not yet copied */
  for (int my = my0, j = 0; my < my1; my++)
    for (int sx = sx0; sx < sx1; sx++, j++) {
      int k = my * bg->segs_x + sx;
      o = put(o, bd + c, bg->seg[k] - c);
      o = put(o, s->sub.data + s->start[j], s->end[j] - s->start[j]);
      if (k < bg->nseg - 1) {
        *o++ = 0xFF;
        *o++ = (uint8_t)(0xD0 + (k & 7));
      }
      c = bg->seg[k + 1];
    }
  o = put(o, bd + c, bg->len - c);
  out->len = (size_t)(o - out->data);
  LIP_ASSERT(out->len <= need);
  info->spliced = true;
  info->segments = nsub;
  return 0;
}
