/* SPDX-License-Identifier: MIT */
/* image/bgcache.c: the per-avatar cache of encoded backgrounds that the
 * incremental encoders splice into. One atomic pointer per avatar frame and
 * format, filled on first use by whichever thread encodes that frame first (a
 * compare-and-swap decides between racing builders), never evicted, bounded by
 * a byte budget: an entry, once published, lives as long as the cache, so
 * readers need no reference counts or locks on the per-frame path. */
#include "image/image.h"

#include <stdatomic.h>
#include <string.h>

struct lip_bg_cache {
  int n;
  lip_jpeg_opts jo;
  int png_level;
  size_t max_bytes;
  atomic_size_t bytes;
  _Atomic(lip_jpeg_bg *) *jpeg; /* [n] */
  _Atomic(lip_png_bg *) *png;   /* [n] */
};

lip_bg_cache *lip_bg_cache_new(int frames, const lip_jpeg_opts *jpeg,
                               int png_level, size_t max_bytes) {
  if (frames < 1 || png_level < 0 || png_level > 9)
    return NULL;
  lip_bg_cache *c = lip_calloc(1, sizeof *c);
  if (!c)
    return NULL;
  c->n = frames;
  c->jo = jpeg ? *jpeg : lip_jpeg_opts_default();
  c->png_level = png_level;
  c->max_bytes = max_bytes;
  c->jpeg = lip_calloc((size_t)frames, sizeof *c->jpeg);
  c->png = lip_calloc((size_t)frames, sizeof *c->png);
  if (!c->jpeg || !c->png) {
    lip_free(c->jpeg);
    lip_free(c->png);
    lip_free(c);
    return NULL;
  }
  for (int i = 0; i < frames; i++) {
    atomic_init(&c->jpeg[i], NULL);
    atomic_init(&c->png[i], NULL);
  }
  atomic_init(&c->bytes,
              (size_t)frames * (sizeof *c->jpeg + sizeof *c->png) + sizeof *c);
  return c;
}

void lip_bg_cache_free(lip_bg_cache *c) {
  if (!c)
    return;
  for (int i = 0; i < c->n; i++) {
    lip_jpeg_bg_free(atomic_load(&c->jpeg[i]));
    lip_png_bg_free(atomic_load(&c->png[i]));
  }
  lip_free(c->jpeg);
  lip_free(c->png);
  lip_free(c);
}

size_t lip_bg_cache_bytes(const lip_bg_cache *c) {
  return c ? atomic_load(&((lip_bg_cache *)c)->bytes) : 0;
}

lip_jpeg_opts lip_bg_cache_jpeg_opts(const lip_bg_cache *c) { return c->jo; }
int lip_bg_cache_png_level(const lip_bg_cache *c) { return c->png_level; }

/* Common checks before a build: index, and room left. The budget is checked
 * before the build, so it can be overshot by one background per concurrent
 * builder: a bound, not an exact limit. */
static int may_build(lip_bg_cache *c, int i, lip_err *err) {
  if (!c || i < 0 || i >= c->n)
    return lip_err_set(err, LIP_EINVAL,
                       "background cache: frame %d outside 0..%d", i,
                       c ? c->n - 1 : -1);
  if (c->max_bytes && atomic_load(&c->bytes) >= c->max_bytes)
    return lip_err_set(err, LIP_EBUSY,
                       "background cache: budget of %zu bytes spent",
                       c->max_bytes);
  return 0;
}

const lip_jpeg_bg *lip_bg_cache_jpeg(lip_bg_cache *c, int i, lip_jpeg_enc *e,
                                     const lip_image *bgimg, lip_err *err) {
  lip_jpeg_bg *bg = c && i >= 0 && i < c->n ? atomic_load(&c->jpeg[i]) : NULL;
  if (bg)
    return bg;
  if (may_build(c, i, err))
    return NULL;
  bg = lip_jpeg_bg_new(e, bgimg, &c->jo, err);
  if (!bg)
    return NULL;
  lip_jpeg_bg *expected = NULL;
  if (!atomic_compare_exchange_strong(&c->jpeg[i], &expected, bg)) {
    lip_jpeg_bg_free(bg); /* another thread published frame i first */
    return expected;
  }
  atomic_fetch_add(&c->bytes, lip_jpeg_bg_bytes(bg));
  return bg;
}

const lip_jpeg_bg *lip_bg_cache_jpeg_peek(lip_bg_cache *c, int i) {
  return c && i >= 0 && i < c->n ? atomic_load(&c->jpeg[i]) : NULL;
}

const lip_png_bg *lip_bg_cache_png(lip_bg_cache *c, int i,
                                   const lip_image *bgimg, const int rect[4],
                                   lip_err *err) {
  lip_png_bg *bg = c && i >= 0 && i < c->n ? atomic_load(&c->png[i]) : NULL;
  if (bg)
    return bg;
  if (may_build(c, i, err))
    return NULL;
  bg = lip_png_bg_new(bgimg, rect, c->png_level, 0, err);
  if (!bg)
    return NULL;
  lip_png_bg *expected = NULL;
  if (!atomic_compare_exchange_strong(&c->png[i], &expected, bg)) {
    lip_png_bg_free(bg);
    return expected;
  }
  atomic_fetch_add(&c->bytes, lip_png_bg_bytes(bg));
  return bg;
}
