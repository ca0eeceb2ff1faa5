/* SPDX-License-Identifier: MIT */
/* avatar/avatar.c: loading avatars from disk (canonical and compatible layouts), reference
 * counting, frame-order mapping and the shared decode cache. Frames stay compressed in memory;
 * decoding goes through the image module. */
#include "avatar/avatar.h"
#include "image/image.h"
#include "media/media.h"

#include <ctype.h>
#include <dirent.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <yaml.h>

typedef struct cache_slot {
    int frame; /* -1 = empty */
    uint64_t stamp;
    uint8_t *bgr;
} cache_slot;

struct lip_avatar {
    atomic_int refs;
    char *id, *dir, *unet_path;
    int n, w, h;
    uint8_t **fdata;
    size_t *flen;
    int *rects; /* [n][4] */
    lip_engine *unet;
    float *feats;
    int feat_rows;
    size_t mem;
    double load_ms;
    /* decode cache */
    pthread_mutex_t cmu;
    cache_slot *cache;
    int ncache;
    uint64_t clock;
    int64_t chits, cmisses; /* lookups served from the cache / decoded (under cmu) */
    /* lip_avatar_ext: derived data attached by another module (set once) */
    _Atomic(void *) ext;
    const lip_avatar_ext_ops *ext_ops;
};

lip_avatar_opts lip_avatar_opts_default(void)
{
    lip_avatar_opts o = {0};
    o.engine = lip_engine_opts_default();
    o.load_unet = true;
    o.decode_cache_frames = 8;
    o.max_frames = 100000;
    return o;
}

/* ---- avatar.yaml (flat top-level scalars) -------------------------------------------------- */
typedef struct meta {
    char unet[512], frames[512], rects[512], feats[512];
    long frame_count, width, height;
} meta;

static int read_meta(const char *path, meta *m, lip_err *err)
{
    uint8_t *buf;
    size_t len;
    int rc = lip_file_read(path, 1 << 20, &buf, &len, err);
    if (rc) return rc;
    yaml_parser_t p;
    yaml_event_t ev;
    yaml_parser_initialize(&p);
    yaml_parser_set_input_string(&p, buf, len);
    int depth = 0;
    char key[128] = "";
    bool want_key = true;
    rc = 0;
    for (;;) {
        if (!yaml_parser_parse(&p, &ev)) {
            rc = lip_err_set(err, LIP_EFORMAT, "%s: YAML error at line %zu: %s", path,
                             p.problem_mark.line + 1, p.problem ? p.problem : "?");
            break;
        }
        yaml_event_type_t t = ev.type;
        if (t == YAML_MAPPING_START_EVENT || t == YAML_SEQUENCE_START_EVENT) {
            depth++;
            if (depth > 1 && !want_key) want_key = true; /* nested value: skip it */
        } else if (t == YAML_MAPPING_END_EVENT || t == YAML_SEQUENCE_END_EVENT) {
            depth--;
        } else if (t == YAML_SCALAR_EVENT && depth == 1) {
            const char *v = (const char *)ev.data.scalar.value;
            if (want_key) {
                lip_strlcpy(key, v, sizeof key);
                want_key = false;
            } else {
                long num;
                if (strcmp(key, "unet") == 0) lip_strlcpy(m->unet, v, sizeof m->unet);
                else if (strcmp(key, "frames_dir") == 0) lip_strlcpy(m->frames, v, sizeof m->frames);
                else if (strcmp(key, "crop_rects") == 0) lip_strlcpy(m->rects, v, sizeof m->rects);
                else if (strcmp(key, "audio_features") == 0) lip_strlcpy(m->feats, v, sizeof m->feats);
                else if (strcmp(key, "frame_count") == 0 && !lip_parse_long(v, 1, 10000000, &num)) m->frame_count = num;
                else if (strcmp(key, "width") == 0 && !lip_parse_long(v, 1, 16384, &num)) m->width = num;
                else if (strcmp(key, "height") == 0 && !lip_parse_long(v, 1, 16384, &num)) m->height = num;
                want_key = true;
            }
        }
        bool end = t == YAML_STREAM_END_EVENT;
        yaml_event_delete(&ev);
        if (end) break;
    }
    yaml_parser_delete(&p);
    lip_free(buf);
    return rc;
}

/* Relative paths in avatar.yaml must stay inside the avatar directory. */
static bool safe_relative(const char *p)
{
    if (!*p || p[0] == '/') return false;
    for (const char *s = p; *s; s++)
        if (s[0] == '.' && s[1] == '.' && (s == p || s[-1] == '/') && (s[2] == '/' || s[2] == 0))
            return false;
    return true;
}

/* ---- rects ----------------------------------------------------------------------------------- */
/* The DATA.md rect formats (JSON array, keyed JSON, landmarks) are parsed in one place, the media
 * module's readers; here they become the avatar's flat [n][4] int arrays. */
static int flatten_rects(lip_media_rect *mr, size_t n, int **rects, lip_err *err)
{
    int *r = lip_calloc(n ? n * 4 : 4, sizeof(int));
    if (!r) {
        lip_free(mr);
        return lip_err_set(err, LIP_ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        r[4 * i] = mr[i].x1;
        r[4 * i + 1] = mr[i].y1;
        r[4 * i + 2] = mr[i].x2;
        r[4 * i + 3] = mr[i].y2;
    }
    lip_free(mr);
    *rects = r;
    return 0;
}

int lip_avatar_read_rects(const char *path, int **rects, int *count, lip_err *err)
{
    *rects = NULL;
    *count = 0;
    lip_media_rect *mr = NULL;
    size_t n = 0;
    int rc = lip_media_rects_load_json(path, &mr, &n, err);
    if (rc) return rc;
    if (n == 0 || n > 10000000) {
        lip_free(mr);
        return lip_err_set(err, LIP_EFORMAT, "%s: %zu rects (need 1 to 10,000,000)", path, n);
    }
    rc = flatten_rects(mr, n, rects, err);
    if (!rc) *count = (int)n;
    return rc;
}

int lip_avatar_rects_from_landmarks(const char *dir, int count, int **rects, lip_err *err)
{
    *rects = NULL;
    lip_media_rect *mr = NULL;
    size_t n = 0;
    int rc = lip_media_rects_from_landmarks_dir(dir, &mr, &n, err);
    if (rc) return rc;
    if (n < (size_t)count) {
        lip_free(mr);
        return lip_err_set(err, LIP_EFORMAT, "%s: landmarks for %zu frames, need %d", dir, n, count);
    }
    return flatten_rects(mr, n, rects, err);
}

/* ---- frames ---------------------------------------------------------------------------------- */
/* Frame files sort by the number in their name (frame_0001.png, 12.jpg, 000012.jpg). */
typedef struct fname {
    long num;
    char name[256];
} fname;

static int fname_cmp(const void *a, const void *b)
{
    const fname *x = a, *y = b;
    return x->num < y->num ? -1 : x->num > y->num;
}

static bool frame_file(const char *n, long *num)
{
    size_t l = strlen(n);
    if (l < 5) return false;
    const char *ext = strrchr(n, '.');
    if (!ext || (strcasecmp(ext, ".jpg") && strcasecmp(ext, ".jpeg") && strcasecmp(ext, ".png")))
        return false;
    const char *d = n;
    while (d < ext && !isdigit((unsigned char)*d)) d++;
    if (d == ext) return false;
    char *end;
    long v = strtol(d, &end, 10);
    if (end != ext) return false;
    *num = v;
    return true;
}

static int list_frames(const char *dir, fname **out, int *count, int max, lip_err *err)
{
    DIR *d = opendir(dir);
    if (!d) return lip_err_set(err, LIP_ENOTFOUND, "frames directory %s not found", dir);
    int cap = 256, n = 0;
    fname *v = lip_malloc((size_t)cap * sizeof *v);
    struct dirent *e;
    while (v && (e = readdir(d))) {
        long num;
        if (!frame_file(e->d_name, &num) || strlen(e->d_name) >= sizeof v->name) continue;
        if (n == max) {
            closedir(d);
            lip_free(v);
            return lip_err_set(err, LIP_EFORMAT, "%s has more than %d frames", dir, max);
        }
        if (n == cap) {
            fname *nv = lip_realloc(v, (size_t)(cap *= 2) * sizeof *v);
            if (!nv) {
                lip_free(v);
                v = NULL;
                break;
            }
            v = nv;
        }
        v[n].num = num;
        lip_strlcpy(v[n].name, e->d_name, sizeof v[n].name);
        n++;
    }
    closedir(d);
    if (!v) return lip_err_set(err, LIP_ENOMEM, "out of memory listing %s", dir);
    if (n == 0) {
        lip_free(v);
        return lip_err_set(err, LIP_ENOTFOUND, "no frame images (.jpg/.png) in %s", dir);
    }
    qsort(v, (size_t)n, sizeof *v, fname_cmp);
    for (int i = 1; i < n; i++)
        if (v[i].num == v[i - 1].num) {
            int rc = lip_err_set(err, LIP_EFORMAT, "%s: frames %s and %s have the same number", dir,
                                 v[i - 1].name, v[i].name);
            lip_free(v);
            return rc;
        }
    *out = v;
    *count = n;
    return 0;
}

/* ---- decoding ---------------------------------------------------------------------------------- */
static bool is_png(const uint8_t *d, size_t len)
{
    return len >= 8 && memcmp(d, "\x89PNG\r\n\x1a\n", 8) == 0;
}

/* Decodes a JPEG or PNG frame into img: allocated when img->data is NULL, else overwritten in
 * place (it must then have exactly the decoded size). */
static int decode_frame(const uint8_t *d, size_t len, lip_image *img, lip_err *err)
{
    return is_png(d, len) ? lip_png_decode(d, len, img, err) : lip_jpeg_decode(d, len, img, err);
}

/* ---- load ------------------------------------------------------------------------------------ */
static void avatar_destroy(lip_avatar *a)
{
    if (!a) return;
    void *ext = atomic_load(&a->ext);
    if (ext && a->ext_ops && a->ext_ops->free_fn) a->ext_ops->free_fn(ext);
    for (int i = 0; a->fdata && i < a->n; i++) lip_free(a->fdata[i]);
    lip_free(a->fdata);
    lip_free(a->flen);
    lip_free(a->rects);
    lip_engine_free(a->unet);
    lip_free_aligned(a->feats);
    for (int i = 0; a->cache && i < a->ncache; i++) lip_free(a->cache[i].bgr);
    lip_free(a->cache);
    pthread_mutex_destroy(&a->cmu);
    lip_free(a->id);
    lip_free(a->dir);
    lip_free(a->unet_path);
    lip_free(a);
}

static const char *first_existing(char *out, size_t n, const char *dir, const char *const *cands,
                                  bool want_dir)
{
    for (int i = 0; cands[i]; i++) {
        if (lip_path_join(out, n, dir, cands[i], NULL)) continue;
        if (want_dir ? lip_dir_exists(out) : lip_file_exists(out)) return out;
    }
    return NULL;
}

/* Resolves p (absolute, or relative to dir) into out. */
static int resolve(char *out, size_t n, const char *dir, const char *p, lip_err *err)
{
    if (p[0] == '/') {
        if (lip_strlcpy(out, p, n) >= n) return lip_err_set(err, LIP_EINVAL, "path too long: %s", p);
        return 0;
    }
    return lip_path_join(out, n, dir, p, err);
}

lip_avatar *lip_avatar_load(const char *dir, const char *id, const lip_avatar_paths *paths,
                            const lip_avatar_opts *opts, lip_err *err)
{
    double t0 = lip_time_ms();
    lip_avatar_opts o = opts ? *opts : lip_avatar_opts_default();
    lip_avatar_paths ps = paths ? *paths : (lip_avatar_paths){0};
    if (o.max_frames <= 0) o.max_frames = 100000;
    if (!lip_dir_exists(dir)) {
        lip_err_set(err, LIP_ENOTFOUND, "avatar directory %s not found", dir);
        return NULL;
    }
    lip_avatar *a = lip_calloc(1, sizeof *a);
    if (!a) {
        lip_err_set(err, LIP_ENOMEM, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&a->cmu, NULL);
    atomic_init(&a->refs, 1);
    a->id = lip_strdup(id ? id : "");
    a->dir = lip_strdup(dir);
    char path[4096], tmp[4096];
    meta m = {0};
    fname *files = NULL;
    int nfiles = 0, nrects = 0;
    int rc = 0;
    if (!a->id || !a->dir) {
        rc = lip_err_set(err, LIP_ENOMEM, "out of memory");
        goto fail;
    }

    if (!lip_path_join(path, sizeof path, dir, "avatar.yaml", NULL) && lip_file_exists(path)) {
        if ((rc = read_meta(path, &m, err))) goto fail;
        const char *rel[] = {m.unet, m.frames, m.rects, m.feats};
        for (int i = 0; i < 4; i++)
            if (rel[i][0] && !safe_relative(rel[i])) {
                rc = lip_err_set(err, LIP_EFORMAT, "%s: path '%s' leaves the avatar directory", path, rel[i]);
                goto fail;
            }
    }
    if (!ps.frames_dir && m.frames[0]) ps.frames_dir = m.frames;
    if (!ps.unet && m.unet[0]) ps.unet = m.unet;
    if (!ps.crop_rects && m.rects[0]) ps.crop_rects = m.rects;
    if (!ps.aud_feats && m.feats[0]) ps.aud_feats = m.feats;

    /* Frames. */
    static const char *const frame_dirs[] = {"frames", "backgrounds", "background", "full_body_img", NULL};
    if (ps.frames_dir) {
        if ((rc = resolve(path, sizeof path, dir, ps.frames_dir, err))) goto fail;
    } else if (!first_existing(path, sizeof path, dir, frame_dirs, true)) {
        rc = lip_err_set(err, LIP_ENOTFOUND, "%s: no frames/ directory", dir);
        goto fail;
    }
    if ((rc = list_frames(path, &files, &nfiles, o.max_frames, err))) goto fail;
    a->n = nfiles;
    a->fdata = lip_calloc((size_t)nfiles, sizeof *a->fdata);
    a->flen = lip_calloc((size_t)nfiles, sizeof *a->flen);
    if (!a->fdata || !a->flen) {
        rc = lip_err_set(err, LIP_ENOMEM, "out of memory");
        goto fail;
    }
    /* Every frame is decoded once here, so a corrupt or odd-sized frame is a load error and
     * never a request-time failure. One scratch image is reused for all frames. */
    lip_image probe = {0};
    for (int i = 0; i < nfiles; i++) {
        if ((rc = lip_path_join(tmp, sizeof tmp, path, files[i].name, err))) break;
        if ((rc = lip_file_read(tmp, 64 << 20, &a->fdata[i], &a->flen[i], err))) break;
        if ((rc = decode_frame(a->fdata[i], a->flen[i], &probe, err))) {
            if (i > 0 && rc == LIP_EINVAL)
                rc = lip_err_set(err, LIP_EFORMAT, "frame size differs from frame 0 (%dx%d)", a->w, a->h);
            lip_err_prefix(err, "%s", tmp);
            break;
        }
        a->w = probe.w;
        a->h = probe.h;
        a->mem += a->flen[i];
    }
    lip_image_free(&probe);
    if (rc) goto fail;
    if (m.frame_count && m.frame_count != a->n) {
        rc = lip_err_set(err, LIP_EFORMAT, "%s: avatar.yaml says frame_count %ld but %s has %d frames",
                         dir, m.frame_count, path, a->n);
        goto fail;
    }

    /* Rects. */
    static const char *const rect_files[] = {"crop_rects.json", "cache/crop_rectangles.json", NULL};
    if (ps.crop_rects) {
        if ((rc = resolve(path, sizeof path, dir, ps.crop_rects, err))) goto fail;
        rc = lip_avatar_read_rects(path, &a->rects, &nrects, err);
    } else if (first_existing(path, sizeof path, dir, rect_files, false)) {
        rc = lip_avatar_read_rects(path, &a->rects, &nrects, err);
    } else if (!lip_path_join(path, sizeof path, dir, "landmarks", NULL) && lip_dir_exists(path)) {
        rc = lip_avatar_rects_from_landmarks(path, a->n, &a->rects, err);
        nrects = a->n;
    } else {
        rc = lip_err_set(err, LIP_ENOTFOUND, "%s: no crop_rects.json, cache/crop_rectangles.json or landmarks/", dir);
    }
    if (rc) goto fail;
    if (nrects < a->n) {
        rc = lip_err_set(err, LIP_EFORMAT, "%s: %d crop rects for %d frames", path, nrects, a->n);
        goto fail;
    }
    for (int i = 0; i < a->n; i++) {
        const int *r = a->rects + 4 * i;
        if (lip_image_check_rect(a->w, a->h, r, err)) {
            rc = lip_err_prefix(err, "%s: frame %d", path, i);
            goto fail;
        }
    }
    a->mem += (size_t)a->n * 4 * sizeof(int);

    /* Precomputed audio features (optional). */
    if (ps.aud_feats) rc = resolve(path, sizeof path, dir, ps.aud_feats, err);
    else rc = lip_path_join(path, sizeof path, dir, "aud_ave.npy", err);
    if (rc) goto fail;
    if (lip_file_exists(path)) {
        lip_npy arr;
        if ((rc = lip_npy_load(path, &arr, err))) goto fail;
        if (arr.ndim != 2 || arr.shape[1] != 512 || arr.shape[0] < 1 || arr.shape[0] > 10000000) {
            rc = lip_err_set(err, LIP_EFORMAT, "%s: shape must be [rows, 512]", path);
            lip_npy_free(&arr);
            goto fail;
        }
        if ((rc = lip_npy_to_f32(&arr, err))) {
            lip_npy_free(&arr);
            goto fail;
        }
        if (!lip_all_finite(arr.data, arr.count)) {
            rc = lip_err_set(err, LIP_EFORMAT, "%s: contains NaN or Inf", path);
            lip_npy_free(&arr);
            goto fail;
        }
        a->feats = arr.data;
        a->feat_rows = (int)arr.shape[0];
        a->mem += arr.count * sizeof(float);
    }

    /* UNet. */
    if (o.load_unet) {
        static const char *const unets[] = {"unet.onnx", "checkpoint/model_best.onnx", "model.onnx", NULL};
        if (ps.unet) rc = resolve(path, sizeof path, dir, ps.unet, err);
        else if (!first_existing(path, sizeof path, dir, unets, false))
            rc = lip_err_set(err, LIP_ENOTFOUND, "%s: no unet.onnx (or checkpoint/model_best.onnx)", dir);
        if (rc) goto fail;
        a->unet_path = lip_strdup(path);
        a->unet = lip_engine_new(path, LIP_MODEL_UNET, &o.engine, err);
        if (!a->unet) {
            rc = err ? err->code : LIP_EMODEL;
            goto fail;
        }
        a->mem += lip_engine_model_bytes(a->unet);
    }

    if (o.decode_cache_frames > 0) {
        a->ncache = LIP_MIN(o.decode_cache_frames, a->n);
        a->cache = lip_calloc((size_t)a->ncache, sizeof *a->cache);
        if (!a->cache) {
            rc = lip_err_set(err, LIP_ENOMEM, "out of memory");
            goto fail;
        }
        for (int i = 0; i < a->ncache; i++) a->cache[i].frame = -1;
    }
    lip_free(files);
    a->load_ms = lip_time_ms() - t0;
    return a;
fail:
    (void)rc;
    lip_free(files);
    avatar_destroy(a);
    return NULL;
}

lip_avatar *lip_avatar_ref(lip_avatar *a)
{
    if (a) atomic_fetch_add(&a->refs, 1);
    return a;
}

void lip_avatar_unref(lip_avatar *a)
{
    if (a && atomic_fetch_sub(&a->refs, 1) == 1) avatar_destroy(a);
}

const char *lip_avatar_id(const lip_avatar *a) { return a->id; }
const char *lip_avatar_dir(const lip_avatar *a) { return a->dir; }
int lip_avatar_frame_count(const lip_avatar *a) { return a->n; }
int lip_avatar_width(const lip_avatar *a) { return a->w; }
int lip_avatar_height(const lip_avatar *a) { return a->h; }
const int *lip_avatar_rect(const lip_avatar *a, int i)
{
    LIP_ASSERT(i >= 0 && i < a->n);
    return a->rects + 4 * i;
}
const uint8_t *lip_avatar_frame_data(const lip_avatar *a, int i, size_t *len)
{
    LIP_ASSERT(i >= 0 && i < a->n);
    *len = a->flen[i];
    return a->fdata[i];
}
lip_engine *lip_avatar_unet(lip_avatar *a) { return a->unet; }
const char *lip_avatar_unet_path(const lip_avatar *a) { return a->unet_path ? a->unet_path : ""; }
const float *lip_avatar_audio_features(const lip_avatar *a, int *rows)
{
    *rows = a->feat_rows;
    return a->feats;
}
size_t lip_avatar_memory_bytes(const lip_avatar *a)
{
    size_t ext_bytes = 0;
    void *ext = atomic_load(&((lip_avatar *)a)->ext);
    if (ext && a->ext_ops && a->ext_ops->bytes_fn) ext_bytes = a->ext_ops->bytes_fn(ext);
    return a->mem + (size_t)a->ncache * (size_t)a->w * (size_t)a->h * 3 + ext_bytes;
}

void *lip_avatar_ext(lip_avatar *a, void *ext, const lip_avatar_ext_ops *ops)
{
    if (!a) return NULL;
    if (!ext) return atomic_load(&a->ext);
    /* Set once under the decode-cache mutex; ext_ops is written before the pointer is published
     * (seq_cst store), so whoever sees the pointer sees the ops. */
    pthread_mutex_lock(&a->cmu);
    void *cur = atomic_load(&a->ext);
    if (!cur) {
        a->ext_ops = ops;
        atomic_store(&a->ext, ext);
        cur = ext;
    }
    pthread_mutex_unlock(&a->cmu);
    return cur;
}
double lip_avatar_load_ms(const lip_avatar *a) { return a->load_ms; }

void lip_avatar_cache_stats(lip_avatar *a, int64_t *hits, int64_t *misses, int *capacity)
{
    pthread_mutex_lock(&a->cmu);
    if (hits) *hits = a->chits;
    if (misses) *misses = a->cmisses;
    if (capacity) *capacity = a->ncache;
    pthread_mutex_unlock(&a->cmu);
}

int lip_avatar_frame_index(const lip_avatar *a, long i, int order)
{
    long n = a->n;
    if (i < 0) i = 0;
    if (order == LIP_ORDER_PINGPONG && n > 1) {
        long period = 2 * (n - 1);
        long k = i % period;
        return (int)(k < n ? k : period - k);
    }
    return (int)(i % n);
}

int lip_avatar_frame_bgr(lip_avatar *a, int i, uint8_t *bgr, int stride, lip_err *err)
{
    if (i < 0 || i >= a->n) return lip_err_set(err, LIP_ERANGE, "frame %d outside 0..%d", i, a->n - 1);
    size_t row = (size_t)a->w * 3;
    if (a->ncache) {
        pthread_mutex_lock(&a->cmu);
        for (int k = 0; k < a->ncache; k++) {
            cache_slot *s = &a->cache[k];
            if (s->frame == i && s->bgr) {
                s->stamp = ++a->clock;
                a->chits++;
                for (int y = 0; y < a->h; y++) memcpy(bgr + (size_t)y * (size_t)stride, s->bgr + (size_t)y * row, row);
                pthread_mutex_unlock(&a->cmu);
                return 0;
            }
        }
        pthread_mutex_unlock(&a->cmu);
    }
    lip_image img = {.data = bgr, .w = a->w, .h = a->h, .stride = stride};
    int rc = decode_frame(a->fdata[i], a->flen[i], &img, err);
    if (rc || !a->ncache) return rc;
    /* Insert into the least recently used slot. */
    pthread_mutex_lock(&a->cmu);
    a->cmisses++;
    cache_slot *victim = &a->cache[0];
    for (int k = 0; k < a->ncache; k++) {
        if (a->cache[k].frame == i) {
            victim = NULL;
            break;
        }
        if (a->cache[k].stamp < victim->stamp) victim = &a->cache[k];
    }
    if (victim) {
        if (!victim->bgr) victim->bgr = lip_malloc(row * (size_t)a->h);
        if (victim->bgr) {
            for (int y = 0; y < a->h; y++) memcpy(victim->bgr + (size_t)y * row, bgr + (size_t)y * (size_t)stride, row);
            victim->frame = i;
            victim->stamp = ++a->clock;
        }
    }
    pthread_mutex_unlock(&a->cmu);
    return 0;
}

int lip_avatar_frame_bgr_rows(lip_avatar *a, int i, int y0, int y1, uint8_t *bgr, int stride,
                              lip_err *err)
{
    if (i < 0 || i >= a->n) return lip_err_set(err, LIP_ERANGE, "frame %d outside 0..%d", i, a->n - 1);
    if (y0 < 0 || y1 > a->h || y0 >= y1)
        return lip_err_set(err, LIP_EINVAL, "rows [%d,%d) outside 0..%d", y0, y1, a->h);
    size_t row = (size_t)a->w * 3;
    if (a->ncache) {
        pthread_mutex_lock(&a->cmu);
        for (int k = 0; k < a->ncache; k++) {
            cache_slot *s = &a->cache[k];
            if (s->frame == i && s->bgr) {
                s->stamp = ++a->clock;
                a->chits++;
                for (int y = y0; y < y1; y++)
                    memcpy(bgr + (size_t)y * (size_t)stride, s->bgr + (size_t)y * row, row);
                pthread_mutex_unlock(&a->cmu);
                return 0;
            }
        }
        pthread_mutex_unlock(&a->cmu);
    }
    if (is_png(a->fdata[i], a->flen[i])) return lip_avatar_frame_bgr(a, i, bgr, stride, err);
    if (a->ncache) { /* a miss: only the rows are decoded, the cache is not filled */
        pthread_mutex_lock(&a->cmu);
        a->cmisses++;
        pthread_mutex_unlock(&a->cmu);
    }
    lip_image img = {.data = bgr, .w = a->w, .h = a->h, .stride = stride};
    return lip_jpeg_decode_rows(a->fdata[i], a->flen[i], &img, y0, y1, err);
}
