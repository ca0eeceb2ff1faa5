/* SPDX-License-Identifier: MIT */
/* image/bgcache.c: the per-avatar cache of encoded backgrounds that the incremental encoders
 * splice into. One atomic pointer per avatar frame, filled on first use by whichever thread
 * encodes that frame first (a compare-and-swap decides between racing builders), never evicted,
 * bounded by a byte budget: an entry, once published, lives as long as the cache, so readers need
 * no reference counts or locks on the per-frame path. */
#include "image/image.h"

#include <stdatomic.h>
#include <string.h>

struct lip_bg_cache {
    int n;
    lip_jpeg_opts jo;
    size_t max_bytes;
    atomic_size_t bytes;
    _Atomic(lip_jpeg_bg *) *jpeg; /* [n] */
};

lip_bg_cache *lip_bg_cache_new(int frames, const lip_jpeg_opts *jpeg, size_t max_bytes)
{
    if (frames < 1) return NULL;
    lip_bg_cache *c = lip_calloc(1, sizeof *c);
    if (!c) return NULL;
    c->n = frames;
    c->jo = jpeg ? *jpeg : lip_jpeg_opts_default();
    c->max_bytes = max_bytes;
    c->jpeg = lip_calloc((size_t)frames, sizeof *c->jpeg);
    if (!c->jpeg) {
        lip_free(c);
        return NULL;
    }
    for (int i = 0; i < frames; i++) atomic_init(&c->jpeg[i], NULL);
    atomic_init(&c->bytes, (size_t)frames * sizeof *c->jpeg + sizeof *c);
    return c;
}

void lip_bg_cache_free(lip_bg_cache *c)
{
    if (!c) return;
    for (int i = 0; i < c->n; i++) lip_jpeg_bg_free(atomic_load(&c->jpeg[i]));
    lip_free(c->jpeg);
    lip_free(c);
}

size_t lip_bg_cache_bytes(const lip_bg_cache *c)
{
    return c ? atomic_load(&((lip_bg_cache *)c)->bytes) : 0;
}

lip_jpeg_opts lip_bg_cache_jpeg_opts(const lip_bg_cache *c) { return c->jo; }

const lip_jpeg_bg *lip_bg_cache_jpeg_peek(const lip_bg_cache *c, int i)
{
    if (!c || i < 0 || i >= c->n) return NULL;
    return atomic_load(&((lip_bg_cache *)c)->jpeg[i]);
}

const lip_jpeg_bg *lip_bg_cache_jpeg(lip_bg_cache *c, int i, lip_jpeg_enc *e,
                                     const lip_image *bgimg, lip_err *err)
{
    if (!c || i < 0 || i >= c->n) {
        lip_err_set(err, LIP_EINVAL, "background cache: frame %d outside 0..%d", i,
                    c ? c->n - 1 : -1);
        return NULL;
    }
    lip_jpeg_bg *bg = atomic_load(&c->jpeg[i]);
    if (bg) return bg;
    if (c->max_bytes && atomic_load(&c->bytes) >= c->max_bytes) {
        lip_err_set(err, LIP_EBUSY, "background cache: budget of %zu bytes spent", c->max_bytes);
        return NULL;
    }
    bg = lip_jpeg_bg_new(e, bgimg, &c->jo, err);
    if (!bg) return NULL;
    lip_jpeg_bg *expected = NULL;
    if (!atomic_compare_exchange_strong(&c->jpeg[i], &expected, bg)) {
        lip_jpeg_bg_free(bg); /* another thread published frame i first */
        return expected;
    }
    /* The budget is checked before the build, so it can be overshot by one background per
     * concurrent builder: a bound, not an exact limit. */
    atomic_fetch_add(&c->bytes, lip_jpeg_bg_bytes(bg));
    return bg;
}
