/* SPDX-License-Identifier: MIT */
/* pipeline/pipeline.c: one request = audio tensors -> chunks of (decode + pre-process on the
 * pool) -> UNet -> (paste + encode on the pool). Each scratch slot owns two sets of chunk
 * buffers and an inference thread, so while the UNet runs chunk k on that thread, the pool
 * pre-processes chunk k+1 and composites/encodes chunk k-1 (double buffering). Buffers are
 * sized once (frame buffers grow to the largest avatar seen) and reused: steady state allocates
 * only the encoded output bytes handed to the caller. */
#include "pipeline/pipeline.h"
#include "audio/audio.h"
#include "image/image.h"

#include <pthread.h>
#include <string.h>

#define MAX_BATCH 64
#define CROP_BYTES LIP_CROP_BYTES

/* One set of buffers for one chunk. */
typedef struct chunk_buf {
    float *visual;    /* [chunk][6][320][320] */
    float *out;       /* [chunk][3][320][320] */
    uint8_t *crops;   /* [chunk][328*328*3] */
    uint8_t *frames;  /* [chunk][w*h*3] */
    size_t frame_cap; /* bytes per frame allocated */
    lip_buf *enc;     /* [chunk] encoder outputs */
} chunk_buf;

typedef struct slot {
    struct lip_pipeline *p;
    chunk_buf cb[2];
    float *audio; /* [MAX_BATCH][8192] */
    /* inference thread hand-off */
    pthread_t thr;
    bool thr_started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int state; /* 0 idle, 1 job posted, 2 done, 3 quit */
    lip_engine *job_engine;
    lip_avatar *job_avatar;     /* for opts.infer */
    const lip_request *job_req;
    int job_first;
    const float *job_vis, *job_aud;
    float *job_out;
    int job_n, job_rc;
    double job_ms;
    lip_err job_err;
    bool busy;
} slot;

struct lip_pipeline {
    lip_pipeline_opts o;
    lip_engine *enc;
    lip_pool *pool;
    slot *slots;
    int nslots;
    pthread_mutex_t mu;
    pthread_cond_t cv;
};

/* Per-thread image workers (pool workers and callers): a resizer and a JPEG encoder each,
 * created on first use and freed when the thread exits. */
typedef struct tls_work {
    lip_resizer *rz;
    lip_jpeg_enc *jpeg;
    lip_png_enc *png;
} tls_work;

static pthread_key_t tls_key;
static pthread_once_t tls_once = PTHREAD_ONCE_INIT;

static void tls_destroy(void *p)
{
    tls_work *w = p;
    lip_resizer_free(w->rz);
    lip_jpeg_enc_free(w->jpeg);
    lip_png_enc_free(w->png);
    lip_free(w);
}
static void tls_key_init(void) { pthread_key_create(&tls_key, tls_destroy); }

static tls_work *thread_work(void)
{
    pthread_once(&tls_once, tls_key_init);
    tls_work *w = pthread_getspecific(tls_key);
    if (!w) {
        w = lip_calloc(1, sizeof *w);
        if (!w) return NULL;
        w->rz = lip_resizer_new();
        w->jpeg = lip_jpeg_enc_new();
        w->png = lip_png_enc_new();
        if (!w->rz || !w->jpeg || !w->png) {
            tls_destroy(w);
            return NULL;
        }
        pthread_setspecific(tls_key, w);
    }
    return w;
}

lip_pipeline_opts lip_pipeline_opts_default(void)
{
    lip_pipeline_opts o = {0};
    o.encoder_engine = lip_engine_opts_default();
    o.slots = 2;
    o.chunk_frames = 8;
    o.paste_mode = LIP_PIPE_PASTE_FEATHER;
    o.feather_px = 10;
    o.jpeg_quality = 75;
    o.png_level = 1;
    o.incremental_jpeg = true;
    o.incremental_png = true;
    o.bg_cache_mb = 256;
    return o;
}

static void *infer_thread(void *arg)
{
    slot *s = arg;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (s->state != 1 && s->state != 3) pthread_cond_wait(&s->cv, &s->mu);
        if (s->state == 3) break;
        pthread_mutex_unlock(&s->mu);
        double t0 = lip_time_ms();
        lip_err_clear(&s->job_err);
        const lip_pipeline_opts *o = &s->p->o;
        int rc = o->infer ? o->infer(o->infer_ud, s->job_avatar, s->job_req, s->job_first,
                                     s->job_n, s->job_vis, s->job_aud, s->job_out, &s->job_err)
                          : lip_engine_run_unet(s->job_engine, s->job_vis, s->job_aud, s->job_n,
                                                s->job_out, &s->job_err);
        double ms = lip_time_ms() - t0;
        pthread_mutex_lock(&s->mu);
        s->job_rc = rc;
        s->job_ms = ms;
        s->state = 2;
        pthread_cond_broadcast(&s->cv);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

static void chunk_buf_free(chunk_buf *c, int chunk)
{
    lip_free_aligned(c->visual);
    lip_free_aligned(c->out);
    lip_free_aligned(c->crops);
    lip_free_aligned(c->frames);
    for (int i = 0; c->enc && i < chunk; i++) lip_buf_free(&c->enc[i]);
    lip_free(c->enc);
    memset(c, 0, sizeof *c);
}

/* A slot's buffer, written once when it is made: the slots are the pipeline's preallocated
 * worst case, so their pages are faulted in now rather than whenever a rare long request first
 * reaches the second chunk buffer, which would show as a late step in the resident size. */
static void *slot_alloc(size_t n)
{
    void *p = lip_aligned_alloc(n);
    if (p) memset(p, 0, n);
    return p;
}

static int chunk_buf_init(chunk_buf *c, int chunk)
{
    c->visual = slot_alloc((size_t)chunk * LIP_UNET_VISUAL_FLOATS * sizeof(float));
    c->out = slot_alloc((size_t)chunk * LIP_UNET_OUT_FLOATS * sizeof(float));
    c->crops = slot_alloc((size_t)chunk * CROP_BYTES);
    c->enc = lip_calloc((size_t)chunk, sizeof(lip_buf));
    return c->visual && c->out && c->crops && c->enc ? 0 : LIP_ENOMEM;
}

void lip_pipeline_free(lip_pipeline *p)
{
    if (!p) return;
    for (int i = 0; p->slots && i < p->nslots; i++) {
        slot *s = &p->slots[i];
        if (s->thr_started) {
            pthread_mutex_lock(&s->mu);
            s->state = 3;
            pthread_cond_broadcast(&s->cv);
            pthread_mutex_unlock(&s->mu);
            pthread_join(s->thr, NULL);
        }
        pthread_mutex_destroy(&s->mu);
        pthread_cond_destroy(&s->cv);
        chunk_buf_free(&s->cb[0], p->o.chunk_frames);
        chunk_buf_free(&s->cb[1], p->o.chunk_frames);
        lip_free_aligned(s->audio);
    }
    lip_free(p->slots);
    lip_pool_free(p->pool);
    lip_engine_free(p->enc);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    lip_free(p);
}

lip_pipeline *lip_pipeline_new(const lip_pipeline_opts *opts, lip_err *err)
{
    lip_pipeline *p = lip_calloc(1, sizeof *p);
    if (!p) {
        lip_err_set(err, LIP_ENOMEM, "out of memory");
        return NULL;
    }
    p->o = opts ? *opts : lip_pipeline_opts_default();
    if (p->o.slots <= 0) p->o.slots = 2;
    if (p->o.chunk_frames <= 0) p->o.chunk_frames = 8;
    if (p->o.chunk_frames > MAX_BATCH) p->o.chunk_frames = MAX_BATCH;
    if (p->o.jpeg_quality <= 0 || p->o.jpeg_quality > 100) p->o.jpeg_quality = 75;
    if (p->o.feather_px < 0) p->o.feather_px = 0;
    if (p->o.bg_cache_mb <= 0) p->o.bg_cache_mb = 256;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    if (p->o.encoder_path && p->o.encoder_path[0]) {
        p->enc = lip_engine_new(p->o.encoder_path, LIP_MODEL_AUDIO_ENCODER, &p->o.encoder_engine, err);
        if (!p->enc) {
            lip_err_prefix(err, "audio encoder");
            goto fail;
        }
    }
    p->o.encoder_path = NULL; /* not kept: the caller's string */
    p->pool = lip_pool_new(p->o.threads);
    p->nslots = p->o.slots;
    p->slots = lip_calloc((size_t)p->nslots, sizeof *p->slots);
    if (!p->pool || !p->slots) {
        lip_err_set(err, LIP_ENOMEM, "out of memory creating the pipeline");
        goto fail;
    }
    for (int i = 0; i < p->nslots; i++) {
        slot *s = &p->slots[i];
        s->p = p;
        pthread_mutex_init(&s->mu, NULL);
        pthread_cond_init(&s->cv, NULL);
        s->audio = slot_alloc((size_t)MAX_BATCH * LIP_UNET_AUDIO_FLOATS * sizeof(float));
        if (!s->audio || chunk_buf_init(&s->cb[0], p->o.chunk_frames) ||
            chunk_buf_init(&s->cb[1], p->o.chunk_frames)) {
            lip_err_set(err, LIP_ENOMEM, "out of memory for pipeline buffers");
            goto fail;
        }
        if (pthread_create(&s->thr, NULL, infer_thread, s) != 0) {
            lip_err_set(err, LIP_ENOMEM, "cannot start an inference thread");
            goto fail;
        }
        s->thr_started = true;
    }
    return p;
fail:
    lip_pipeline_free(p);
    return NULL;
}

lip_engine *lip_pipeline_encoder(lip_pipeline *p) { return p->enc; }
const lip_pipeline_opts *lip_pipeline_options(const lip_pipeline *p) { return &p->o; }

void lip_result_free(lip_result *res)
{
    if (!res) return;
    for (int i = 0; res->frames && i < res->count; i++) lip_free(res->frames[i].data);
    lip_free(res->frames);
    memset(res, 0, sizeof *res);
}

/* ---- slots ----------------------------------------------------------------------------------- */
static slot *slot_take(lip_pipeline *p, const lip_request *req, lip_err *err)
{
    pthread_mutex_lock(&p->mu);
    for (;;) {
        for (int i = 0; i < p->nslots; i++)
            if (!p->slots[i].busy) {
                p->slots[i].busy = true;
                pthread_mutex_unlock(&p->mu);
                return &p->slots[i];
            }
        if (req->try_only) {
            pthread_mutex_unlock(&p->mu);
            lip_err_set(err, LIP_EBUSY, "all %d pipeline slots are busy", p->nslots);
            return NULL;
        }
        pthread_cond_wait(&p->cv, &p->mu);
    }
}

static void slot_give(lip_pipeline *p, slot *s)
{
    pthread_mutex_lock(&p->mu);
    s->busy = false;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

static void infer_post(slot *s, lip_engine *e, lip_avatar *a, const lip_request *r, int first,
                       const float *vis, const float *aud, float *out, int n)
{
    pthread_mutex_lock(&s->mu);
    s->job_engine = e;
    s->job_avatar = a;
    s->job_req = r;
    s->job_first = first;
    s->job_vis = vis;
    s->job_aud = aud;
    s->job_out = out;
    s->job_n = n;
    s->state = 1;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

static int infer_wait(slot *s, double *ms, lip_err *err)
{
    pthread_mutex_lock(&s->mu);
    while (s->state != 2) pthread_cond_wait(&s->cv, &s->mu);
    s->state = 0;
    int rc = s->job_rc;
    *ms += s->job_ms;
    if (rc && err) *err = s->job_err;
    pthread_mutex_unlock(&s->mu);
    return rc;
}

/* ---- audio ----------------------------------------------------------------------------------- */
static int audio_tensors(lip_pipeline *p, lip_avatar *a, const lip_request *r, float *out,
                         double *ms, lip_err *err)
{
    double t0 = lip_time_ms();
    int B = r->batch;
    int rc = 0;
    if (r->pcm && r->n_pcm) {
        if (!p->enc)
            return lip_err_set(err, LIP_EPRECOND, "raw audio was sent but no audio encoder is configured");
        rc = lip_audio_request_tensors(p->enc, r->pcm, r->n_pcm, r->start_frame, B,
                                       r->pcm_mode == LIP_PCM_INFERENCE, out, NULL, err);
    } else if (r->audio && r->n_audio) {
        if (r->n_audio != 1 && r->n_audio != B)
            return lip_err_set(err, LIP_EINVAL, "audio tensors: %d given, expected 1 or %d", r->n_audio, B);
        for (int i = 0; i < B; i++)
            memcpy(out + (size_t)i * LIP_UNET_AUDIO_FLOATS,
                   r->audio + (r->n_audio == 1 ? 0 : (size_t)i * LIP_UNET_AUDIO_FLOATS),
                   LIP_UNET_AUDIO_FLOATS * sizeof(float));
    } else {
        const float *rows = r->features;
        int nrows = r->n_features;
        if (!rows) rows = a ? lip_avatar_audio_features(a, &nrows) : NULL;
        if (!rows || nrows <= 0)
            return lip_err_set(err, LIP_EPRECOND, "no audio: the request has none and the avatar has no audio features");
        for (int i = 0; i < B; i++) {
            int f = r->frame_ids ? r->frame_ids[i] : r->start_frame + i;
            lip_audio_frame_tensor(rows, nrows, 0, f, out + (size_t)i * LIP_UNET_AUDIO_FLOATS);
        }
    }
    *ms += lip_time_ms() - t0;
    return rc;
}

int lip_pipeline_audio_tensors(lip_pipeline *p, const lip_request *req, float *out, double *ms,
                               lip_err *err)
{
    double t = 0;
    int rc = audio_tensors(p, NULL, req, out, &t, err);
    if (ms) *ms = t;
    return rc;
}

/* ---- per-frame stages -------------------------------------------------------------------------- */
typedef struct stage_ctx {
    lip_pipeline *p;
    lip_avatar *a;
    const lip_request *r;
    slot *s;
    int first;      /* index in the request of the chunk's first frame */
    int n;          /* frames in the chunk */
    chunk_buf *cb;
    lip_frame *outf; /* result frames */
    int stride;
    /* results per frame */
    int rc[MAX_BATCH];
    lip_err err[MAX_BATCH];
    double ms_a[MAX_BATCH], ms_b[MAX_BATCH]; /* prep: decode+prep; post: composite, encode */
    double ms_c[MAX_BATCH];
    bool band[MAX_BATCH];    /* only the rows the splice reads were decoded */
    bool post; /* which stage this context runs */
} stage_ctx;

static bool wants_frame(const lip_request *r) { return r->format != LIP_OUT_RAW; }

static void prep_one(void *arg, int i)
{
    stage_ctx *c = arg;
    const lip_request *r = c->r;
    int k = c->first + i;
    int af = c->outf[k].avatar_frame;
    c->rc[i] = 0;
    double t0 = lip_time_ms();
    bool need_frame = wants_frame(r);
    bool need_prep = need_frame || !r->visual;
    if (!need_prep) return;
    tls_work *tw = thread_work();
    if (!tw) {
        c->rc[i] = lip_err_set(&c->err[i], LIP_ENOMEM, "out of memory (image worker)");
        return;
    }
    lip_resizer *rz = tw->rz;
    uint8_t *fb = c->cb->frames + (size_t)i * c->cb->frame_cap;
    /* When this frame's encoded background is cached and the splice will re-encode only the
     * MCU rows around the rect, only those rows need decoding (they also hold the rect, which is
     * all that pre-processing and paste read). Otherwise the whole frame. */
    int by0 = 0, by1 = 0;
    c->band[i] = false;
    if (r->format == LIP_OUT_JPEG && c->p->o.incremental_jpeg) {
        lip_bg_cache *bc = lip_avatar_ext(c->a, NULL, NULL);
        int q = r->quality > 0 ? r->quality : c->p->o.jpeg_quality;
        const lip_jpeg_bg *jb = bc && lip_bg_cache_jpeg_opts(bc).quality == q
                                    ? lip_bg_cache_jpeg_peek(bc, af)
                                    : NULL;
        c->band[i] = jb && lip_jpeg_splice_band(jb, lip_avatar_rect(c->a, af), &by0, &by1);
    }
    int rc = c->band[i] ? lip_avatar_frame_bgr_rows(c->a, af, by0, by1, fb, c->stride, &c->err[i])
                        : lip_avatar_frame_bgr(c->a, af, fb, c->stride, &c->err[i]);
    if (!rc) {
        lip_image img = {.data = fb, .w = lip_avatar_width(c->a), .h = lip_avatar_height(c->a), .stride = c->stride};
        rc = lip_image_preprocess(rz, &img, lip_avatar_rect(c->a, af),
                                  c->cb->visual + (size_t)i * LIP_UNET_VISUAL_FLOATS,
                                  c->cb->crops + (size_t)i * CROP_BYTES, &c->err[i]);
    }
    c->rc[i] = rc;
    c->ms_a[i] = lip_time_ms() - t0;
}

/* ---- incremental JPEG: the avatar's cache of encoded backgrounds ----------------------------- */
static void bg_cache_free_ext(void *x) { lip_bg_cache_free(x); }
static size_t bg_cache_bytes_ext(const void *x) { return lip_bg_cache_bytes(x); }
static const lip_avatar_ext_ops bg_cache_ops = {bg_cache_free_ext, bg_cache_bytes_ext};

/* The avatar's cache of encoded backgrounds, attached by the first pipeline that needs it (with
 * that pipeline's JPEG quality, PNG level and budget). NULL only when out of memory. */
static lip_bg_cache *avatar_bg_cache(stage_ctx *c)
{
    lip_bg_cache *bc = lip_avatar_ext(c->a, NULL, NULL);
    if (bc) return bc;
    lip_jpeg_opts jo = lip_jpeg_opts_default();
    jo.quality = c->p->o.jpeg_quality;
    size_t budget = (size_t)LIP_MAX(c->p->o.bg_cache_mb, 0) << 20;
    int level = c->p->o.png_level >= 0 && c->p->o.png_level <= 9 ? c->p->o.png_level : 1;
    lip_bg_cache *mine = lip_bg_cache_new(lip_avatar_frame_count(c->a), &jo, level, budget);
    if (!mine) return NULL;
    bc = lip_avatar_ext(c->a, mine, &bg_cache_ops);
    if (bc != mine) lip_bg_cache_free(mine); /* another thread attached one first */
    return bc;
}

/* The cached background stream of avatar frame af at quality q, built now from bg (the frame's
 * untouched background) on first use. NULL means "encode in full": the avatar's cache holds
 * another quality (it keeps the quality of the pipeline that created it), its budget is spent,
 * or building failed (logged at debug level; the frame itself does not fail). */
static const lip_jpeg_bg *jpeg_background(stage_ctx *c, lip_jpeg_enc *e, int af,
                                          const lip_image *bg, int q)
{
    lip_bg_cache *bc = avatar_bg_cache(c);
    if (!bc || lip_bg_cache_jpeg_opts(bc).quality != q) return NULL;
    lip_err lerr = {0};
    const lip_jpeg_bg *jb = lip_bg_cache_jpeg(bc, af, e, bg, &lerr);
    if (!jb) lip_log_debug("frame %d encoded in full: %s", af, lerr.msg);
    return jb;
}

/* The same for PNG: the cached pieces of frame af around its crop rect, at the cache's level. */
static const lip_png_bg *png_background(stage_ctx *c, int af, const lip_image *bg,
                                        const int rect[4])
{
    lip_bg_cache *bc = avatar_bg_cache(c);
    if (!bc || lip_bg_cache_png_level(bc) != c->p->o.png_level) return NULL;
    lip_err lerr = {0};
    const lip_png_bg *pb = lip_bg_cache_png(bc, af, bg, rect, &lerr);
    if (!pb) lip_log_debug("frame %d encoded in full (PNG): %s", af, lerr.msg);
    return pb;
}

static void post_one(void *arg, int i)
{
    stage_ctx *c = arg;
    const lip_request *r = c->r;
    int k = c->first + i;
    lip_frame *f = &c->outf[k];
    const float *mo = c->cb->out + (size_t)i * LIP_UNET_OUT_FLOATS;
    c->rc[i] = 0;
    c->ms_b[i] = c->ms_c[i] = 0;
    if (r->format == LIP_OUT_RAW) {
        size_t bytes = LIP_UNET_OUT_FLOATS * sizeof(float);
        f->data = lip_malloc(bytes);
        if (!f->data) {
            c->rc[i] = lip_err_set(&c->err[i], LIP_ENOMEM, "out of memory");
            return;
        }
        memcpy(f->data, mo, bytes);
        f->len = bytes;
        return;
    }
    tls_work *tw = thread_work();
    if (!tw) {
        c->rc[i] = lip_err_set(&c->err[i], LIP_ENOMEM, "out of memory (image worker)");
        return;
    }
    lip_resizer *rz = tw->rz;
    double t0 = lip_time_ms();
    uint8_t *fb = c->cb->frames + (size_t)i * c->cb->frame_cap;
    lip_image img = {.data = fb, .w = lip_avatar_width(c->a), .h = lip_avatar_height(c->a), .stride = c->stride};
    int q = r->quality > 0 ? r->quality : c->p->o.jpeg_quality;
    /* Built before the paste, while the frame buffer still holds the plain background. */
    const lip_jpeg_bg *jbg = r->format == LIP_OUT_JPEG && c->p->o.incremental_jpeg
                                 ? jpeg_background(c, tw->jpeg, f->avatar_frame, &img, q)
                                 : NULL;
    const lip_png_bg *pbg = r->format == LIP_OUT_PNG && c->p->o.incremental_png
                                ? png_background(c, f->avatar_frame, &img, f->rect)
                                : NULL;
    double tb = lip_time_ms() - t0; /* background build: counted as encode time */
    t0 += tb;
    int mode = c->p->o.paste_mode == LIP_PIPE_PASTE_EXACT ? LIP_PASTE_EXACT : LIP_PASTE_FEATHER;
    int rc = lip_image_paste(rz, &img, f->rect, mo, c->cb->crops + (size_t)i * CROP_BYTES, mode,
                             c->p->o.feather_px, &c->err[i]);
    double t1 = lip_time_ms();
    c->ms_b[i] = t1 - t0;
    if (rc) {
        c->rc[i] = rc;
        return;
    }
    lip_buf *eb = &c->cb->enc[i];
    eb->len = 0;
    if (r->format == LIP_OUT_JPEG) {
        lip_jpeg_opts jo = lip_jpeg_opts_default();
        jo.quality = q;
        /* The paste wrote only inside f->rect, so the rest of the frame is the background. */
        rc = jbg ? lip_jpeg_splice_encode(tw->jpeg, jbg, &img, f->rect, NULL, eb, NULL, &c->err[i])
                 : lip_jpeg_enc_encode(tw->jpeg, &img, &jo, eb, &c->err[i]);
    } else if (r->format == LIP_OUT_PNG) {
        rc = pbg ? lip_png_piece_encode(tw->png, pbg, &img, f->rect, c->p->o.png_level, eb, NULL,
                                        &c->err[i])
                 : lip_png_encode(&img, c->p->o.png_level, eb, &c->err[i]);
    } else {
        size_t row = (size_t)img.w * 3;
        f->data = lip_malloc(row * (size_t)img.h);
        if (!f->data) rc = lip_err_set(&c->err[i], LIP_ENOMEM, "out of memory");
        for (int y = 0; !rc && y < img.h; y++) memcpy(f->data + row * (size_t)y, fb + (size_t)c->stride * (size_t)y, row);
        f->len = row * (size_t)img.h;
    }
    if (!rc && r->format != LIP_OUT_BGR) {
        f->data = lip_malloc(eb->len);
        if (!f->data) rc = lip_err_set(&c->err[i], LIP_ENOMEM, "out of memory");
        else {
            memcpy(f->data, eb->data, eb->len);
            f->len = eb->len;
        }
    }
    c->rc[i] = rc;
    c->ms_c[i] = lip_time_ms() - t1 + tb;
}

/* The pool runs prep of one chunk and post of another in a single parallel-for. */
typedef struct dual_ctx {
    stage_ctx *prep, *post;
} dual_ctx;

static void dual_one(void *arg, int i)
{
    dual_ctx *d = arg;
    int np = d->prep ? d->prep->n : 0;
    if (i < np) prep_one(d->prep, i);
    else post_one(d->post, i - np);
}

static int check_stage(stage_ctx *c, lip_err *err)
{
    for (int i = 0; i < c->n; i++)
        if (c->rc[i]) {
            if (err) *err = c->err[i];
            return c->rc[i];
        }
    return 0;
}

static void add_times(stage_ctx *c, lip_timings *t, bool post)
{
    for (int i = 0; i < c->n; i++) {
        if (post) {
            t->composite_ms += c->ms_b[i];
            t->encode_ms += c->ms_c[i];
        } else {
            t->prepare_ms += c->ms_a[i];
        }
    }
}

int lip_pipeline_run(lip_pipeline *p, lip_avatar *a, const lip_request *r, lip_result *res,
                     lip_err *err)
{
    double t_start = lip_time_ms();
    memset(res, 0, sizeof *res);
    if (!a) return lip_err_set(err, LIP_EINVAL, "no avatar");
    lip_engine *unet = lip_avatar_unet(a);
    if (!unet && !p->o.infer)
        return lip_err_set(err, LIP_EPRECOND, "avatar '%s' has no UNet loaded", lip_avatar_id(a));
    /* With remote inference and no local encoder, PCM is forwarded instead of tensors. */
    bool aud_local = !(p->o.infer && !p->enc && r->pcm && r->n_pcm);
    int B = r->batch;
    if (B < 1 || B > MAX_BATCH)
        return lip_err_set(err, LIP_EINVAL, "batch size %d outside 1..%d", B, MAX_BATCH);
    if (r->start_frame < 0) return lip_err_set(err, LIP_EINVAL, "start frame %d is negative", r->start_frame);
    int N = lip_avatar_frame_count(a);
    if (r->frame_ids)
        for (int i = 0; i < B; i++)
            if (r->frame_ids[i] < 0 || r->frame_ids[i] >= N)
                return lip_err_set(err, r->frame_ids[i] < 0 ? LIP_EINVAL : LIP_ERANGE,
                                   "frame id %d outside 0..%d", r->frame_ids[i], N - 1);
    if (r->format < LIP_OUT_JPEG || r->format > LIP_OUT_RAW)
        return lip_err_set(err, LIP_EINVAL, "unknown output format %d", r->format);

    res->frames = lip_calloc((size_t)B, sizeof *res->frames);
    if (!res->frames) return lip_err_set(err, LIP_ENOMEM, "out of memory");
    res->count = B;
    res->width = lip_avatar_width(a);
    res->height = lip_avatar_height(a);
    for (int i = 0; i < B; i++) {
        int af = r->frame_ids ? r->frame_ids[i]
                              : lip_avatar_frame_index(a, (long)r->start_frame + i, r->order);
        res->frames[i].avatar_frame = af;
        memcpy(res->frames[i].rect, lip_avatar_rect(a, af), sizeof res->frames[i].rect);
    }

    double tq = lip_time_ms();
    slot *s = slot_take(p, r, err);
    if (!s) return LIP_EBUSY;
    res->t.queue_ms = lip_time_ms() - tq;
    int rc = 0;
    int chunk = p->o.chunk_frames;
    int stride = lip_avatar_width(a) * 3;
    size_t fbytes = (size_t)stride * (size_t)lip_avatar_height(a);
    if (wants_frame(r) || !r->visual)
        for (int k = 0; k < 2 && !rc; k++)
            if (s->cb[k].frame_cap < fbytes) {
                lip_free_aligned(s->cb[k].frames);
                s->cb[k].frames = slot_alloc(fbytes * (size_t)chunk);
                s->cb[k].frame_cap = s->cb[k].frames ? fbytes : 0;
                if (!s->cb[k].frames) rc = lip_err_set(err, LIP_ENOMEM, "out of memory for frame buffers");
            }

    if (!rc && aud_local) rc = audio_tensors(p, a, r, s->audio, &res->t.audio_ms, err);

    int nchunks = (B + chunk - 1) / chunk;
    stage_ctx *ctx = lip_calloc(2, sizeof(stage_ctx)); /* [k % 2] */
    if (!ctx && !rc) rc = lip_err_set(err, LIP_ENOMEM, "out of memory");
    /* Pipeline: prep(0); then for k: post infer(k) ; pool: prep(k+1) + post(k-1) ; wait infer(k).
     * Finally post(last). */
    stage_ctx *prev_post = NULL;
    for (int k = 0; !rc && k <= nchunks; k++) {
        stage_ctx *cur = k < nchunks ? &ctx[k % 2] : NULL;
        if (cur && k == 0) {
            *cur = (stage_ctx){.p = p, .a = a, .r = r, .s = s, .first = 0, .n = LIP_MIN(chunk, B),
                               .cb = &s->cb[0], .outf = res->frames, .stride = stride};
            lip_pool_run(p->pool, cur->n, prep_one, cur);
            add_times(cur, &res->t, false);
            if ((rc = check_stage(cur, err))) break;
        }
        if (r->cancel && *r->cancel) {
            rc = lip_err_set(err, LIP_ECANCELLED, "request cancelled");
            break;
        }
        if (r->deadline_ms > 0 && lip_time_ms() > r->deadline_ms) {
            rc = lip_err_set(err, LIP_ETIMEOUT, "deadline exceeded after %d of %d frames", k * chunk, B);
            break;
        }
        /* Start the UNet on chunk k. */
        if (cur) {
            const float *vis = r->visual ? r->visual + (size_t)cur->first * LIP_UNET_VISUAL_FLOATS : cur->cb->visual;
            const float *aud = aud_local ? s->audio + (size_t)cur->first * LIP_UNET_AUDIO_FLOATS
                                         : NULL;
            infer_post(s, unet, a, r, cur->first, vis, aud, cur->cb->out, cur->n);
        }
        /* Meanwhile: prep chunk k+1 (into the other buffer set) and post chunk k-1. */
        stage_ctx *next = NULL;
        if (k + 1 < nchunks) {
            next = &ctx[(k + 1) % 2];
            /* ctx[(k+1)%2] is prev_post's context: finish prev_post first if it shares it. */
        }
        if (prev_post && next && prev_post == next) {
            lip_pool_run(p->pool, prev_post->n, post_one, prev_post);
            add_times(prev_post, &res->t, true);
            if ((rc = check_stage(prev_post, err))) {
                if (cur) infer_wait(s, &res->t.inference_ms, NULL);
                break;
            }
            prev_post = NULL;
        }
        if (next) {
            int first = (k + 1) * chunk;
            *next = (stage_ctx){.p = p, .a = a, .r = r, .s = s, .first = first, .n = LIP_MIN(chunk, B - first),
                                .cb = &s->cb[(k + 1) % 2], .outf = res->frames, .stride = stride};
        }
        dual_ctx d = {.prep = next, .post = prev_post};
        int nwork = (next ? next->n : 0) + (prev_post ? prev_post->n : 0);
        if (nwork) lip_pool_run(p->pool, nwork, dual_one, &d);
        if (next) add_times(next, &res->t, false);
        if (prev_post) add_times(prev_post, &res->t, true);
        int rc_pool = (next ? check_stage(next, err) : 0);
        if (!rc_pool && prev_post) rc_pool = check_stage(prev_post, err);
        if (cur) {
            lip_err ierr = {0};
            int rci = infer_wait(s, &res->t.inference_ms, &ierr);
            if (rci && !rc_pool) {
                rc_pool = rci;
                if (err) *err = ierr;
            }
        }
        rc = rc_pool;
        prev_post = cur;
    }
    lip_free(ctx);
    slot_give(p, s);
    if (rc) {
        lip_result_free(res);
        return rc;
    }
    res->t.total_ms = lip_time_ms() - t_start;
    return 0;
}
