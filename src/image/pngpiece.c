/* SPDX-License-Identifier: MIT */
/* image/pngpiece.c: incremental PNG (notes/encode-limits.md §3, "pieces v2").
 * The filtered image stream (one filter byte, then RGB bytes, per row; fixed
 * "up" filter) is cut at the changed rect's columns in every changed row,
 * giving alternating pieces: cached ones (the right part of row y, the next
 * filter byte and the left part of row y+1; plus everything before the first
 * and after the last changed row) and changed ones (the rect's bytes of one
 * row). Every piece is its own raw-deflate stream ended with a sync flush, so
 * it ends byte-aligned with BFINAL = 0 and needs nothing before it; every piece
 * has its own IDAT chunk, so the cached chunks keep their CRCs. The zlib stream
 * ends with an empty final fixed block (03 00) and the Adler-32 of all raw
 * bytes, combined from the pieces' checksums with adler32_combine.
 *
 * Per frame only the changed pieces are filtered and written, by default as
 * stored blocks (the crop is ~4% of a 720p frame: +2% bytes against ~15 us of
 * zlib set-up per compressed piece), optionally deflated at a zlib level. The
 * "up" filter makes row y2 (below the rect) depend on the rect too, so the
 * changed rows are [y1, y2] (clamped to the frame). PNG stays a slow and large
 * format (1.4 MB per 720p frame): this is for the APIs that ask for PNG, not
 * for 25 fps streams. */
#include "image/image.h"

#include <string.h>
#include <zlib.h>

#define FILTER_UP 2
#define STORED_MAX 65535 /* bytes in one stored block */

struct lip_png_bg {
  int w, h, rect[4], level, crop_level;
  int ya, yb;    /* changed rows [ya, yb) */
  size_t rowb;   /* bytes per filtered row: 1 + 3w */
  uint8_t *head; /* signature, IHDR, first IDAT (zlib header + piece 0) */
  size_t head_len;
  uint32_t adler0; /* Adler-32 of piece 0's raw bytes (from 1) */
  uint8_t
      *tail; /* the cached IDAT chunks after each changed row, back to back */
  size_t tail_len;
  uint32_t *q_off;   /* [rows + 1]: chunk of the piece after changed row ya+j is
                        tail[q_off[j], q_off[j+1]) (empty for an empty piece) */
  uint32_t *q_adler; /* [rows]: Adler-32 of that piece's raw bytes */
  uint32_t *q_len;   /* [rows]: its raw length */
};

struct lip_png_enc {
  z_stream z;
  int z_level; /* level z was initialised with; -1 = not initialised */
  lip_buf row; /* one changed row, filtered */
};

static void put32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 24);
  p[1] = (uint8_t)(v >> 16);
  p[2] = (uint8_t)(v >> 8);
  p[3] = (uint8_t)v;
}

static int zinit(z_stream *z, int level) {
  memset(z, 0, sizeof *z);
  /* Raw deflate (no zlib wrapper per piece); Z_RLE at the fast levels as in
   * png.c. */
  return deflateInit2(z, level, Z_DEFLATED, -15, 8,
                      level >= 1 && level <= 3 ? Z_RLE : Z_DEFAULT_STRATEGY);
}

/* Appends n bytes of src to b as one fresh raw-deflate stream ended by a sync
 * flush. */
static int deflate_piece(z_stream *z, const uint8_t *src, size_t n, lip_buf *b,
                         lip_err *err) {
  if (deflateReset(z) != Z_OK)
    return lip_err_set(err, LIP_EINTERNAL, "PNG pieces: deflateReset failed");
  z->next_in = (Bytef *)src;
  z->avail_in = (uInt)n;
  for (;;) {
    size_t room = n / 8 + 4096;
    if (lip_buf_reserve(b, b->len + room, err))
      return LIP_ENOMEM;
    z->next_out = b->data + b->len;
    z->avail_out = (uInt)(b->cap - b->len);
    size_t before = z->avail_out;
    int zr = deflate(z, Z_SYNC_FLUSH);
    if (zr != Z_OK && zr != Z_BUF_ERROR)
      return lip_err_set(err, LIP_EINTERNAL, "PNG pieces: deflate failed (%d)",
                         zr);
    b->len += before - z->avail_out;
    if (z->avail_in == 0 && z->avail_out > 0)
      return 0; /* flush complete */
  }
}

/* Appends a stored (uncompressed, non-final) block: byte-aligned start, so the
 * header is one zero byte, then LEN and NLEN little-endian. */
static uint8_t *put_stored(uint8_t *o, const uint8_t *src, size_t n) {
  while (n > 0) {
    size_t k = LIP_MIN(n, (size_t)STORED_MAX);
    o[0] = 0;
    o[1] = (uint8_t)k;
    o[2] = (uint8_t)(k >> 8);
    o[3] = (uint8_t)~k;
    o[4] = (uint8_t)(~k >> 8);
    if (src)
      memcpy(o + 5, src, k);
    o += 5 + k;
    if (src)
      src += k;
    n -= k;
  }
  return o;
}

/* Closes the chunk whose 8-byte header starts at b->data[start]: length and
 * CRC. */
static int close_chunk(lip_buf *b, size_t start, lip_err *err) {
  size_t n = b->len - start - 8;
  if (lip_buf_reserve(b, b->len + 4, err))
    return LIP_ENOMEM;
  put32(b->data + start, (uint32_t)n);
  memcpy(b->data + start + 4, "IDAT", 4);
  put32(b->data + b->len,
        (uint32_t)crc32(0, b->data + start + 4, (uInt)(n + 4)));
  b->len += 4;
  return 0;
}

static int open_chunk(lip_buf *b, size_t *start, lip_err *err) {
  if (lip_buf_reserve(b, b->len + 8, err))
    return LIP_ENOMEM;
  *start = b->len;
  b->len += 8;
  return 0;
}

/* The "up"-filtered bytes of row y, columns' bytes [c0, c1) of the RGB row (BGR
 * swizzled). */
static void filter_up(const lip_image *img, int y, size_t c0, size_t c1,
                      uint8_t *dst) {
  const uint8_t *p = img->data + (size_t)y * img->stride;
  const uint8_t *q = y > 0 ? p - img->stride : NULL;
  for (size_t i = c0; i < c1; i++) {
    size_t px = i / 3,
           c = 2 - i % 3; /* RGB byte i comes from BGR channel 2 - i%3 */
    uint8_t v = p[3 * px + c];
    dst[i - c0] = q ? (uint8_t)(v - q[3 * px + c]) : v;
  }
}

static int check_args(const char *who, const lip_image *img, const int rect[4],
                      lip_err *err) {
  if (!img || !img->data || !rect)
    return lip_err_set(err, LIP_EINVAL, "%s: image or rect is NULL", who);
  if (img->w < 1 || img->h < 1 || img->w > LIP_IMAGE_MAX_DIM ||
      img->h > LIP_IMAGE_MAX_DIM || img->stride < 3 * img->w)
    return lip_err_set(err, LIP_EINVAL, "%s: image %dx%d stride %d invalid",
                       who, img->w, img->h, img->stride);
  if (rect[0] < 0 || rect[1] < 0 || rect[2] > img->w || rect[3] > img->h ||
      rect[0] >= rect[2] || rect[1] >= rect[3])
    return lip_err_set(
        err, LIP_EINVAL,
        "%s: changed rect [%d,%d,%d,%d] is empty or outside the %dx%d frame",
        who, rect[0], rect[1], rect[2], rect[3], img->w, img->h);
  return 0;
}

void lip_png_bg_free(lip_png_bg *bg) {
  if (!bg)
    return;
  lip_free(bg->head);
  lip_free(bg->tail);
  lip_free(bg->q_off);
  lip_free(bg->q_adler);
  lip_free(bg->q_len);
  lip_free(bg);
}

size_t lip_png_bg_bytes(const lip_png_bg *bg) {
  if (!bg)
    return 0;
  size_t rows = (size_t)(bg->yb - bg->ya);
  return sizeof *bg + bg->head_len + bg->tail_len +
         (3 * rows + 1) * sizeof(uint32_t);
}

static uint8_t *dup_exact(const lip_buf *b) {
  uint8_t *p = lip_malloc(LIP_MAX(b->len, (size_t)1));
  if (p)
    memcpy(p, b->data, b->len);
  return p;
}

lip_png_bg *lip_png_bg_new(const lip_image *img, const int rect[4], int level,
                           int crop_level, lip_err *err) {
  if (check_args("PNG background", img, rect, err))
    return NULL;
  if (level < 0 || level > 9 || crop_level < 0 || crop_level > 9) {
    lip_err_set(err, LIP_EINVAL, "PNG background: levels %d / %d outside 0..9",
                level, crop_level);
    return NULL;
  }
  lip_png_bg *bg = lip_calloc(1, sizeof *bg);
  uint8_t *f = NULL;
  lip_buf b = {0};
  z_stream z;
  bool zok = false;
  if (!bg)
    goto oom;
  bg->w = img->w;
  bg->h = img->h;
  memcpy(bg->rect, rect, sizeof bg->rect);
  bg->level = level;
  bg->crop_level = crop_level;
  bg->ya = rect[1];
  bg->yb = LIP_MIN(rect[3] + 1,
                   img->h); /* "up": the row below the rect changes too */
  bg->rowb = 1 + 3 * (size_t)img->w;
  size_t rows = (size_t)(bg->yb - bg->ya);
  size_t c0 = 1 + 3 * (size_t)rect[0],
         c1 = 1 + 3 * (size_t)rect[2]; /* within a row */
  /* The whole filtered stream once (not a hot path: one build per background).
   */
  f = lip_malloc(bg->rowb * (size_t)img->h);
  bg->q_off = lip_calloc(rows + 1, sizeof *bg->q_off);
  bg->q_adler = lip_calloc(rows, sizeof *bg->q_adler);
  bg->q_len = lip_calloc(rows, sizeof *bg->q_len);
  if (!f || !bg->q_off || !bg->q_adler || !bg->q_len)
    goto oom;
  for (int y = 0; y < img->h; y++) {
    f[(size_t)y * bg->rowb] = FILTER_UP;
    filter_up(img, y, 0, 3 * (size_t)img->w, f + (size_t)y * bg->rowb + 1);
  }
  if (zinit(&z, level) != Z_OK)
    goto oom;
  zok = true;
  /* Head: signature, IHDR, first IDAT = zlib header + piece 0. */
  static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  if (lip_buf_reserve(&b, 8 + 25, err))
    goto fail;
  memcpy(b.data, sig, 8);
  uint8_t *ih = b.data + 8;
  put32(ih, 13);
  memcpy(ih + 4, "IHDR", 4);
  put32(ih + 8, (uint32_t)img->w);
  put32(ih + 12, (uint32_t)img->h);
  ih[16] = 8; /* bit depth */
  ih[17] = 2; /* colour type: RGB */
  ih[18] = ih[19] = ih[20] = 0;
  put32(ih + 21, (uint32_t)crc32(0, ih + 4, 17));
  b.len = 33;
  size_t cs;
  size_t p0 = (size_t)bg->ya * bg->rowb + c0; /* piece 0 = f[0, p0) */
  if (open_chunk(&b, &cs, err) || lip_buf_reserve(&b, b.len + 2, err))
    goto fail;
  b.data[b.len++] =
      0x78; /* zlib header: deflate, 32K window; 0x7801 % 31 == 0 */
  b.data[b.len++] = 0x01;
  if (deflate_piece(&z, f, p0, &b, err) || close_chunk(&b, cs, err))
    goto fail;
  bg->adler0 = (uint32_t)adler32(adler32(0, NULL, 0), f, (uInt)p0);
  bg->head = dup_exact(&b);
  if (!bg->head)
    goto oom;
  bg->head_len = b.len;
  /* The cached piece after each changed row. */
  b.len = 0;
  size_t total = bg->rowb * (size_t)img->h;
  for (size_t j = 0; j < rows; j++) {
    size_t y = (size_t)bg->ya + j;
    size_t s = y * bg->rowb + c1;
    size_t e = j + 1 < rows ? (y + 1) * bg->rowb + c0 : total;
    bg->q_off[j] = (uint32_t)b.len;
    bg->q_len[j] = (uint32_t)(e - s);
    bg->q_adler[j] =
        (uint32_t)adler32(adler32(0, NULL, 0), f + s, (uInt)(e - s));
    if (e > s &&
        (open_chunk(&b, &cs, err) || deflate_piece(&z, f + s, e - s, &b, err) ||
         close_chunk(&b, cs, err)))
      goto fail;
    if (b.len > UINT32_MAX) {
      lip_err_set(err, LIP_ERANGE, "PNG background: cached pieces past 4 GiB");
      goto fail;
    }
  }
  bg->q_off[rows] = (uint32_t)b.len;
  bg->tail = dup_exact(&b);
  if (!bg->tail)
    goto oom;
  bg->tail_len = b.len;
  deflateEnd(&z);
  lip_buf_free(&b);
  lip_free(f);
  return bg;
oom:
  lip_err_set(err, LIP_ENOMEM, "PNG background: out of memory (%dx%d)",
              img ? img->w : 0, img ? img->h : 0);
fail:
  if (zok)
    deflateEnd(&z);
  lip_buf_free(&b);
  lip_free(f);
  lip_png_bg_free(bg);
  return NULL;
}

const int *lip_png_bg_rect(const lip_png_bg *bg) { return bg->rect; }

lip_png_enc *lip_png_enc_new(void) {
  lip_png_enc *e = lip_calloc(1, sizeof *e);
  if (e)
    e->z_level = -1;
  return e;
}

void lip_png_enc_free(lip_png_enc *e) {
  if (!e)
    return;
  if (e->z_level >= 0)
    deflateEnd(&e->z);
  lip_buf_free(&e->row);
  lip_free(e);
}

int lip_png_piece_encode(lip_png_enc *e, const lip_png_bg *bg,
                         const lip_image *frame, const int rect[4], int level,
                         lip_buf *out, bool *incremental, lip_err *err) {
  if (incremental)
    *incremental = false;
  if (!e || !bg || !out)
    return lip_err_set(err, LIP_EINVAL,
                       "PNG pieces: encoder, background or output is NULL");
  int rc = check_args("PNG pieces", frame, rect, err);
  if (rc)
    return rc;
  out->len = 0;
  const int *br = bg->rect;
  if (frame->w != bg->w || frame->h != bg->h || level != bg->level ||
      rect[0] < br[0] || rect[1] < br[1] || rect[2] > br[2] || rect[3] > br[3])
    return lip_png_encode(frame, level, out, err);
  size_t rows = (size_t)(bg->yb - bg->ya);
  size_t cb = 3 * (size_t)(br[2] - br[0]); /* changed bytes per row */
  size_t c0 = 3 * (size_t)br[0];
  /* Worst case per changed row: chunk header and CRC, stored blocks, or a
   * deflate bound. */
  size_t per_row = 12 + cb + 5 * (cb / STORED_MAX + 1) + cb / 8 + 64;
  size_t need = bg->head_len + bg->tail_len + rows * per_row + 12 + 6 + 12;
  if ((rc = lip_buf_reserve(out, need, err)))
    return rc;
  if (bg->crop_level > 0) {
    if (e->z_level != bg->crop_level) {
      if (e->z_level >= 0)
        deflateEnd(&e->z);
      e->z_level = -1;
      if (zinit(&e->z, bg->crop_level) != Z_OK)
        return lip_err_set(err, LIP_ENOMEM,
                           "PNG pieces: out of memory for zlib");
      e->z_level = bg->crop_level;
    }
    if ((rc = lip_buf_reserve(&e->row, cb, err)))
      return rc;
  }
  memcpy(out->data, bg->head, bg->head_len);
  out->len = bg->head_len;
  uint32_t adler = bg->adler0;
  size_t total = bg->rowb * (size_t)bg->h;
  size_t done =
      (size_t)bg->ya * bg->rowb + 1 + c0; /* raw bytes so far (for sanity) */
  for (size_t j = 0; j < rows; j++) {
    int y = bg->ya + (int)j;
    size_t cs = out->len;
    out->len += 8;
    uint32_t a;
    if (bg->crop_level == 0) {
      uint8_t *d = out->data + out->len;
      /* Filter straight into the stored block's payload. */
      uint8_t *end = put_stored(d, NULL, cb);
      size_t nblk = cb / STORED_MAX + (cb % STORED_MAX != 0);
      uint8_t *q = d + 5;
      for (size_t k = 0, left = cb, off = c0; k < nblk; k++) {
        size_t m = LIP_MIN(left, (size_t)STORED_MAX);
        filter_up(frame, y, off, off + m, q);
        off += m;
        left -= m;
        q += m + 5;
      }
      a = 1;
      q = d + 5;
      for (size_t k = 0, left = cb; k < nblk; k++) {
        size_t m = LIP_MIN(left, (size_t)STORED_MAX);
        a = (uint32_t)adler32_combine(a, adler32(1, q, (uInt)m), (z_off_t)m);
        left -= m;
        q += m + 5;
      }
      out->len = (size_t)(end - out->data);
    } else {
      filter_up(frame, y, c0, c0 + cb, e->row.data);
      a = (uint32_t)adler32(1, e->row.data, (uInt)cb);
      if ((rc = deflate_piece(&e->z, e->row.data, cb, out, err)))
        return rc;
    }
    if ((rc = close_chunk(out, cs, err)))
      return rc;
    adler = (uint32_t)adler32_combine(adler, a, (z_off_t)cb);
    adler =
        (uint32_t)adler32_combine(adler, bg->q_adler[j], (z_off_t)bg->q_len[j]);
    done += cb + bg->q_len[j];
    size_t qn = bg->q_off[j + 1] - bg->q_off[j];
    if ((rc = lip_buf_reserve(out, out->len + qn, err)))
      return rc;
    memcpy(out->data + out->len, bg->tail + bg->q_off[j], qn);
    out->len += qn;
  }
  LIP_ASSERT(done == total);
  /* Final IDAT: an empty final fixed-Huffman block (03 00) and the Adler-32;
   * then IEND. */
  if ((rc = lip_buf_reserve(out, out->len + 18 + 12, err)))
    return rc;
  size_t cs = out->len;
  out->len += 8;
  uint8_t *p = out->data + out->len;
  p[0] = 0x03;
  p[1] = 0x00;
  put32(p + 2, adler);
  out->len += 6;
  if ((rc = close_chunk(out, cs, err)))
    return rc;
  p = out->data + out->len;
  put32(p, 0);
  memcpy(p + 4, "IEND", 4);
  put32(p + 8, (uint32_t)crc32(0, p + 4, 4));
  out->len += 12;
  if (incremental)
    *incremental = true;
  return 0;
}
