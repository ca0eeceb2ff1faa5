/* SPDX-License-Identifier: MIT */
/* registry/registry.c: the avatar cache. One mutex guards the table (a hash of entries by id);
 * avatar loads run outside it, with a LOADING state and a condition variable so concurrent
 * first requests wait for one load. Eviction is approximate LFU as Redis does it (8-bit
 * logarithmic counter, probabilistic increment, decay per period) or exact LRU, always among
 * loaded, unpinned avatars that no request holds. */
#include "registry/registry.h"

#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LFU_INIT 5
#define LFU_LOG_FACTOR 10
#define HASH_SIZE 4096

enum { ST_UNLOADED = 0, ST_LOADING, ST_LOADED };

typedef struct entry {
    char id[72];
    char *dir;
    char *p_unet, *p_frames, *p_rects, *p_feats;
    int preferred_gpu;
    bool pinned, preload;
    int state;
    lip_avatar *av;
    int device;
    int inflight;
    uint8_t lfu;
    int64_t lfu_min; /* minute of the last decay */
    /* stats */
    int64_t requests, frames, frames_load, loads, evictions;
    double min_frame_ms, max_frame_ms;
    double total_inference_ms, load_ms;
    int64_t last_used_ms, loaded_ms;
    size_t mem;
    char last_error[256];
    struct entry *hnext;
} entry;

struct lip_registry {
    lip_registry_opts o;
    char *root;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    entry *table[HASH_SIZE];
    entry **all;
    int n, cap;
    int loaded;
    size_t mem;
    unsigned rr;
    unsigned rng;
    int64_t hits, misses, loads, evictions, idle_unloads, load_failures;
};

lip_registry_opts lip_registry_opts_default(void)
{
    lip_registry_opts o = {0};
    o.models_root = "models";
    o.policy = LIP_EVICT_LFU;
    o.lfu_decay_min = 1.0;
    o.auto_load = true;
    o.avatar = lip_avatar_opts_default();
    return o;
}

static unsigned hash_id(const char *s)
{
    unsigned h = 2166136261u;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 16777619u;
    return h % HASH_SIZE;
}

static entry *find(lip_registry *r, const char *id)
{
    for (entry *e = r->table[hash_id(id)]; e; e = e->hnext)
        if (strcmp(e->id, id) == 0) return e;
    return NULL;
}

static void entry_free(entry *e)
{
    if (!e) return;
    lip_avatar_unref(e->av);
    lip_free(e->dir);
    lip_free(e->p_unet);
    lip_free(e->p_frames);
    lip_free(e->p_rects);
    lip_free(e->p_feats);
    lip_free(e);
}

static char *dup_or_null(const char *s) { return s ? lip_strdup(s) : NULL; }

/* Adds a new entry (lock held). */
static entry *insert(lip_registry *r, const char *id, const char *dir, lip_err *err)
{
    if (r->n == r->cap) {
        int nc = r->cap ? r->cap * 2 : 64;
        entry **na = lip_realloc(r->all, (size_t)nc * sizeof *na);
        if (!na) {
            lip_err_set(err, LIP_ENOMEM, "out of memory");
            return NULL;
        }
        r->all = na;
        r->cap = nc;
    }
    entry *e = lip_calloc(1, sizeof *e);
    if (!e || !(e->dir = lip_strdup(dir))) {
        lip_free(e);
        lip_err_set(err, LIP_ENOMEM, "out of memory");
        return NULL;
    }
    lip_strlcpy(e->id, id, sizeof e->id);
    e->device = -1;
    e->preferred_gpu = -1;
    e->lfu = LFU_INIT;
    unsigned h = hash_id(id);
    e->hnext = r->table[h];
    r->table[h] = e;
    r->all[r->n++] = e;
    return e;
}

lip_registry *lip_registry_new(const lip_registry_opts *opts, lip_err *err)
{
    lip_registry *r = lip_calloc(1, sizeof *r);
    if (!r) {
        lip_err_set(err, LIP_ENOMEM, "out of memory");
        return NULL;
    }
    r->o = opts ? *opts : lip_registry_opts_default();
    if (r->o.lfu_decay_min <= 0) r->o.lfu_decay_min = 1.0;
    r->root = lip_strdup(r->o.models_root ? r->o.models_root : ".");
    r->o.models_root = r->root;
    r->rng = 0x9e3779b9u;
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    if (!r->root) {
        lip_registry_free(r);
        lip_err_set(err, LIP_ENOMEM, "out of memory");
        return NULL;
    }
    return r;
}

void lip_registry_free(lip_registry *r)
{
    if (!r) return;
    for (int i = 0; i < r->n; i++) entry_free(r->all[i]);
    lip_free(r->all);
    lip_free(r->root);
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cv);
    lip_free(r);
}

static int resolve_dir(lip_registry *r, const char *dir, char *out, size_t n, lip_err *err)
{
    if (dir[0] == '/') return lip_strlcpy(out, dir, n) < n ? 0 : lip_err_set(err, LIP_EINVAL, "path too long");
    return lip_path_join(out, n, r->root, dir, err);
}

int lip_registry_add(lip_registry *r, const char *id, const char *dir,
                     const lip_avatar_paths *paths, bool preload, int preferred_gpu, lip_err *err)
{
    if (!id || !lip_valid_id(id, strlen(id)))
        return lip_err_set(err, LIP_EINVAL, "model id '%s' is not 1-64 characters of [A-Za-z0-9_.-]",
                           id ? id : "");
    char full[4096];
    int rc = resolve_dir(r, dir && *dir ? dir : id, full, sizeof full, err);
    if (rc) return rc;
    pthread_mutex_lock(&r->mu);
    entry *e = find(r, id);
    if (e && e->state != ST_UNLOADED) {
        pthread_mutex_unlock(&r->mu);
        return lip_err_set(err, LIP_EBUSY, "model '%s' is loaded; unload it before redefining it", id);
    }
    if (!e) e = insert(r, id, full, err);
    else {
        char *d = lip_strdup(full);
        if (d) {
            lip_free(e->dir);
            e->dir = d;
        }
    }
    if (!e) {
        pthread_mutex_unlock(&r->mu);
        return err ? err->code : LIP_ENOMEM;
    }
    lip_free(e->p_unet);
    lip_free(e->p_frames);
    lip_free(e->p_rects);
    lip_free(e->p_feats);
    e->p_unet = paths ? dup_or_null(paths->unet) : NULL;
    e->p_frames = paths ? dup_or_null(paths->frames_dir) : NULL;
    e->p_rects = paths ? dup_or_null(paths->crop_rects) : NULL;
    e->p_feats = paths ? dup_or_null(paths->aud_feats) : NULL;
    e->preferred_gpu = preferred_gpu;
    e->preload = preload;
    pthread_mutex_unlock(&r->mu);
    if (preload) {
        rc = lip_registry_load(r, id, false, preferred_gpu, NULL, NULL, err);
        if (rc) return rc;
        pthread_mutex_lock(&r->mu);
        e->pinned = true;
        pthread_mutex_unlock(&r->mu);
    }
    return 0;
}

static bool looks_like_avatar(const char *dir)
{
    static const char *const marks[] = {"avatar.yaml", "frames", "backgrounds", "crop_rects.json", NULL};
    char p[4096];
    for (int i = 0; marks[i]; i++)
        if (!lip_path_join(p, sizeof p, dir, marks[i], NULL) && (lip_file_exists(p) || lip_dir_exists(p)))
            return true;
    return false;
}

int lip_registry_scan(lip_registry *r, lip_err *err)
{
    DIR *d = opendir(r->root);
    if (!d) {
        pthread_mutex_lock(&r->mu);
        int n = r->n;
        pthread_mutex_unlock(&r->mu);
        return n;
    }
    struct dirent *de;
    int rc = 0;
    while ((de = readdir(d))) {
        if (!lip_valid_id(de->d_name, strlen(de->d_name))) continue;
        char full[4096];
        if (lip_path_join(full, sizeof full, r->root, de->d_name, NULL) || !lip_dir_exists(full) ||
            !looks_like_avatar(full))
            continue;
        pthread_mutex_lock(&r->mu);
        if (!find(r, de->d_name) && !insert(r, de->d_name, full, err)) rc = LIP_ENOMEM;
        pthread_mutex_unlock(&r->mu);
        if (rc) break;
    }
    closedir(d);
    if (rc) return rc;
    pthread_mutex_lock(&r->mu);
    int n = r->n;
    pthread_mutex_unlock(&r->mu);
    return n;
}

/* ---- LFU ----------------------------------------------------------------------------------- */
static unsigned rnd(lip_registry *r)
{
    r->rng ^= r->rng << 13;
    r->rng ^= r->rng >> 17;
    r->rng ^= r->rng << 5;
    return r->rng;
}

static void lfu_decay(lip_registry *r, entry *e, int64_t now_ms)
{
    int64_t now_min = (int64_t)((double)now_ms / 60000.0 / r->o.lfu_decay_min);
    if (e->lfu_min == 0) e->lfu_min = now_min;
    int64_t periods = now_min - e->lfu_min;
    if (periods > 0) {
        e->lfu = periods >= e->lfu ? 0 : (uint8_t)(e->lfu - periods);
        e->lfu_min = now_min;
    }
}

static void touch(lip_registry *r, entry *e, int64_t now_ms)
{
    lfu_decay(r, e, now_ms);
    if (e->lfu < 255) {
        double base = e->lfu > LFU_INIT ? e->lfu - LFU_INIT : 0;
        double p = 1.0 / (base * LFU_LOG_FACTOR + 1);
        if ((double)(rnd(r) % 1000000) / 1e6 < p) e->lfu++;
    }
    e->last_used_ms = now_ms;
}

/* Unloads e (lock held): the registry drops its reference; holders keep theirs. */
static void unload_locked(lip_registry *r, entry *e)
{
    if (e->state != ST_LOADED) return;
    lip_avatar_unref(e->av);
    e->av = NULL;
    e->state = ST_UNLOADED;
    e->pinned = false;
    r->loaded--;
    r->mem -= e->mem;
    e->mem = 0;
    e->loaded_ms = 0;
    e->device = -1;
}

/* The least valuable loaded, unpinned, idle entry other than keep; NULL if none. */
static entry *victim(lip_registry *r, const entry *keep, int64_t now_ms)
{
    entry *best = NULL;
    for (int i = 0; i < r->n; i++) {
        entry *e = r->all[i];
        if (e == keep || e->state != ST_LOADED || e->pinned || e->inflight > 0) continue;
        if (r->o.policy == LIP_EVICT_LFU) {
            lfu_decay(r, e, now_ms);
            if (!best || e->lfu < best->lfu || (e->lfu == best->lfu && e->last_used_ms < best->last_used_ms))
                best = e;
        } else if (!best || e->last_used_ms < best->last_used_ms) {
            best = e;
        }
    }
    return best;
}

static size_t mem_budget(const lip_registry *r)
{
    return r->o.max_memory_gb > 0 ? (size_t)(r->o.max_memory_gb * 1024.0 * 1024.0 * 1024.0) : 0;
}

/* Makes room for one more avatar of about `need` bytes (lock held). */
static int make_room(lip_registry *r, const entry *keep, size_t need, lip_err *err)
{
    int64_t now = lip_time_unix_ms();
    int loading = 0;
    for (int i = 0; i < r->n; i++) loading += r->all[i]->state == ST_LOADING;
    while ((r->o.max_models > 0 && r->loaded + loading >= r->o.max_models) ||
           (mem_budget(r) && r->loaded > 0 && r->mem + need > mem_budget(r))) {
        entry *v = victim(r, keep, now);
        if (!v)
            return lip_err_set(err, LIP_EBUSY,
                               "model capacity full (%d loaded of max %d, %zu MiB of %zu MiB) and every "
                               "loaded model is in use or pinned",
                               r->loaded, r->o.max_models, r->mem >> 20, mem_budget(r) >> 20);
        lip_log_info("registry: evicting '%s' (%s %u)", v->id,
                     r->o.policy == LIP_EVICT_LFU ? "lfu" : "lru", (unsigned)v->lfu);
        unload_locked(r, v);
        v->evictions++;
        r->evictions++;
    }
    return 0;
}

static int choose_device(lip_registry *r, int preferred)
{
    if (r->o.gpu_count <= 0) return -1;
    if (preferred >= 0 && preferred < r->o.gpu_count) return preferred;
    if (r->o.assignment == LIP_ASSIGN_LEAST_LOADED) {
        int best = 0, bestn = 1 << 30;
        for (int g = 0; g < r->o.gpu_count; g++) {
            int n = 0;
            for (int i = 0; i < r->n; i++)
                n += r->all[i]->state != ST_UNLOADED && r->all[i]->device == g;
            if (n < bestn) {
                bestn = n;
                best = g;
            }
        }
        return best;
    }
    return (int)(r->rr++ % (unsigned)r->o.gpu_count);
}

/* Loads e (lock held on entry and on return; released during the load). */
static int load_locked(lip_registry *r, entry *e, int preferred_gpu, lip_err *err)
{
    int rc = make_room(r, e, e->mem ? e->mem : 0, err);
    if (rc) return rc;
    e->state = ST_LOADING;
    e->device = choose_device(r, preferred_gpu >= 0 ? preferred_gpu : e->preferred_gpu);
    lip_avatar_opts ao = r->o.avatar;
    if (e->device >= 0) ao.engine.device_id = e->device;
    else ao.engine.provider = "cpu";
    lip_avatar_paths ps = {.unet = e->p_unet, .frames_dir = e->p_frames, .crop_rects = e->p_rects,
                           .aud_feats = e->p_feats};
    char dir[4096], id[72];
    lip_strlcpy(dir, e->dir, sizeof dir);
    lip_strlcpy(id, e->id, sizeof id);
    pthread_mutex_unlock(&r->mu);
    double t0 = lip_time_ms();
    lip_err lerr = {0};
    lip_avatar *av = lip_avatar_load(dir, id, &ps, &ao, &lerr);
    double ms = lip_time_ms() - t0;
    pthread_mutex_lock(&r->mu);
    if (!av) {
        e->state = ST_UNLOADED;
        e->device = -1;
        lip_strlcpy(e->last_error, lerr.msg, sizeof e->last_error);
        r->load_failures++;
        pthread_cond_broadcast(&r->cv);
        lip_log_warn("registry: cannot load '%s': %s", id, lerr.msg);
        rc = lip_err_set(err, lerr.code ? lerr.code : LIP_EIO, "model '%s': %s", id, lerr.msg);
        return rc;
    }
    e->av = av;
    e->state = ST_LOADED;
    e->mem = lip_avatar_memory_bytes(av);
    e->load_ms = ms;
    e->loaded_ms = lip_time_unix_ms();
    e->loads++;
    e->last_error[0] = 0;
    e->lfu = LFU_INIT;
    e->lfu_min = 0;
    e->frames_load = 0;
    e->min_frame_ms = e->max_frame_ms = 0;
    r->loaded++;
    r->mem += e->mem;
    r->loads++;
    lip_log_info("registry: loaded '%s' (%d frames, %zu MiB, %.0f ms, %s)", id,
                 lip_avatar_frame_count(av), e->mem >> 20, ms, e->device >= 0 ? "gpu" : "cpu");
    /* Now that the real size is known, get back under the memory budget. */
    if (mem_budget(r) && r->mem > mem_budget(r)) {
        lip_err merr = {0};
        if (make_room(r, e, 0, &merr) || r->mem > mem_budget(r)) {
            unload_locked(r, e);
            pthread_cond_broadcast(&r->cv);
            return lip_err_set(err, LIP_EBUSY, "model '%s' (%zu MiB) does not fit the memory budget of %zu MiB",
                               id, lip_avatar_memory_bytes(av) >> 20, mem_budget(r) >> 20);
        }
    }
    pthread_cond_broadcast(&r->cv);
    return 0;
}

/* Finds or discovers an entry (lock held). */
static entry *lookup(lip_registry *r, const char *id, lip_err *err)
{
    if (!id || !lip_valid_id(id, strlen(id))) {
        lip_err_set(err, LIP_EINVAL, "model name '%s' is not 1-64 characters of [A-Za-z0-9_.-]", id ? id : "");
        return NULL;
    }
    entry *e = find(r, id);
    if (e) return e;
    char full[4096];
    if (!lip_path_join(full, sizeof full, r->root, id, NULL) && lip_dir_exists(full) && looks_like_avatar(full))
        return insert(r, id, full, err);
    lip_err_set(err, LIP_ENOTFOUND, "model '%s' not found", id);
    return NULL;
}

int lip_registry_acquire(lip_registry *r, const char *id, bool allow_load, lip_avatar **out,
                         lip_acquire_info *info, lip_err *err)
{
    *out = NULL;
    if (info) *info = (lip_acquire_info){.device = -1};
    double t0 = lip_time_ms();
    pthread_mutex_lock(&r->mu);
    entry *e = lookup(r, id, err);
    if (!e) {
        pthread_mutex_unlock(&r->mu);
        return err ? err->code : LIP_ENOTFOUND;
    }
    bool missed = false;
    for (;;) {
        if (e->state == ST_LOADED) break;
        if (e->state == ST_LOADING) {
            if (!missed) r->misses++;
            missed = true;
            pthread_cond_wait(&r->cv, &r->mu);
            continue;
        }
        if (!allow_load && !r->o.auto_load) {
            pthread_mutex_unlock(&r->mu);
            return lip_err_set(err, LIP_EPRECOND, "model '%s' is not loaded and auto-load is off", id);
        }
        if (!missed) r->misses++;
        missed = true;
        int rc = load_locked(r, e, -1, err);
        if (rc) {
            pthread_mutex_unlock(&r->mu);
            return rc;
        }
        if (info) info->loaded_now = true;
    }
    if (!missed) r->hits++;
    e->inflight++;
    e->requests++;
    touch(r, e, lip_time_unix_ms());
    *out = lip_avatar_ref(e->av);
    if (info) {
        info->device = e->device;
        info->load_ms = missed ? lip_time_ms() - t0 : 0;
    }
    pthread_mutex_unlock(&r->mu);
    return 0;
}

static void record_locked(entry *e, int frames, double inference_ms)
{
    e->frames += frames;
    e->frames_load += frames;
    e->total_inference_ms += inference_ms;
    e->last_used_ms = lip_time_unix_ms();
    if (frames > 0) {
        double per = inference_ms / frames;
        if (e->min_frame_ms == 0 || per < e->min_frame_ms) e->min_frame_ms = per;
        if (per > e->max_frame_ms) e->max_frame_ms = per;
    }
}

void lip_registry_release(lip_registry *r, lip_avatar *a, int frames, double inference_ms)
{
    if (!a) return;
    pthread_mutex_lock(&r->mu);
    entry *e = find(r, lip_avatar_id(a));
    if (e) {
        if (e->inflight > 0) e->inflight--;
        record_locked(e, frames, inference_ms);
    }
    pthread_mutex_unlock(&r->mu);
    lip_avatar_unref(a);
}

void lip_registry_record(lip_registry *r, const char *id, int frames, double inference_ms)
{
    pthread_mutex_lock(&r->mu);
    entry *e = id ? find(r, id) : NULL;
    if (e) record_locked(e, frames, inference_ms);
    pthread_mutex_unlock(&r->mu);
}

int lip_registry_load(lip_registry *r, const char *id, bool force, int preferred_gpu,
                      double *load_ms, bool *already, lip_err *err)
{
    if (already) *already = false;
    if (load_ms) *load_ms = 0;
    if (preferred_gpu >= 0 && r->o.gpu_count > 0 && preferred_gpu >= r->o.gpu_count)
        return lip_err_set(err, LIP_EINVAL, "preferred_gpu %d outside -1..%d", preferred_gpu, r->o.gpu_count - 1);
    pthread_mutex_lock(&r->mu);
    entry *e = lookup(r, id, err);
    if (!e) {
        pthread_mutex_unlock(&r->mu);
        return err ? err->code : LIP_ENOTFOUND;
    }
    while (e->state == ST_LOADING) pthread_cond_wait(&r->cv, &r->mu);
    if (e->state == ST_LOADED && !force) {
        if (already) *already = true;
        pthread_mutex_unlock(&r->mu);
        return 0;
    }
    bool pinned = e->pinned;
    if (e->state == ST_LOADED) unload_locked(r, e);
    double t0 = lip_time_ms();
    int rc = load_locked(r, e, preferred_gpu, err);
    if (!rc) e->pinned = pinned;
    if (load_ms) *load_ms = lip_time_ms() - t0;
    pthread_mutex_unlock(&r->mu);
    return rc;
}

int lip_registry_unload(lip_registry *r, const char *id, lip_err *err)
{
    pthread_mutex_lock(&r->mu);
    entry *e = id && lip_valid_id(id, strlen(id)) ? find(r, id) : NULL;
    if (!e) {
        pthread_mutex_unlock(&r->mu);
        return lip_err_set(err, id && lip_valid_id(id, strlen(id)) ? LIP_ENOTFOUND : LIP_EINVAL,
                           "model '%s' not found", id ? id : "");
    }
    while (e->state == ST_LOADING) pthread_cond_wait(&r->cv, &r->mu);
    unload_locked(r, e);
    pthread_mutex_unlock(&r->mu);
    return 0;
}

int lip_registry_tick(lip_registry *r)
{
    if (r->o.idle_timeout_min <= 0) return 0;
    int64_t now = lip_time_unix_ms(), limit = (int64_t)(r->o.idle_timeout_min * 60000.0);
    int n = 0;
    pthread_mutex_lock(&r->mu);
    for (int i = 0; i < r->n; i++) {
        entry *e = r->all[i];
        if (e->state == ST_LOADED && !e->pinned && e->inflight == 0 &&
            now - (e->last_used_ms ? e->last_used_ms : e->loaded_ms) > limit) {
            lip_log_info("registry: unloading '%s' (idle)", e->id);
            unload_locked(r, e);
            r->idle_unloads++;
            n++;
        }
    }
    pthread_mutex_unlock(&r->mu);
    return n;
}

static void fill_stats(const entry *e, lip_model_stats *s)
{
    memset(s, 0, sizeof *s);
    lip_strlcpy(s->id, e->id, sizeof s->id);
    lip_strlcpy(s->dir, e->dir, sizeof s->dir);
    if (e->av) lip_strlcpy(s->unet_path, lip_avatar_unet_path(e->av), sizeof s->unet_path);
    else if (e->p_unet) lip_strlcpy(s->unet_path, e->p_unet, sizeof s->unet_path);
    s->loaded = e->state == ST_LOADED;
    s->loading = e->state == ST_LOADING;
    s->pinned = e->pinned;
    s->device = s->loaded ? e->device : -1;
    s->frame_count = e->av ? lip_avatar_frame_count(e->av) : 0;
    s->memory_bytes = s->loaded ? e->mem : 0;
    s->requests = e->requests;
    s->frames = e->frames;
    s->frames_since_load = s->loaded ? e->frames_load : 0;
    s->min_frame_ms = e->min_frame_ms;
    s->max_frame_ms = e->max_frame_ms;
    s->total_inference_ms = e->total_inference_ms;
    s->load_ms = e->load_ms;
    s->last_used_unix_ms = e->last_used_ms;
    s->loaded_unix_ms = s->loaded ? e->loaded_ms : 0;
    s->loads = e->loads;
    s->evictions = e->evictions;
    lip_strlcpy(s->last_error, e->last_error, sizeof s->last_error);
    if (e->av && s->loaded)
        lip_avatar_cache_stats(e->av, &s->bg_cache_hits, &s->bg_cache_misses, &s->bg_cache_frames);
}

static int stats_cmp(const void *a, const void *b)
{
    return strcmp(((const lip_model_stats *)a)->id, ((const lip_model_stats *)b)->id);
}

int lip_registry_list(lip_registry *r, lip_model_stats **out, int *n)
{
    pthread_mutex_lock(&r->mu);
    lip_model_stats *v = lip_calloc((size_t)(r->n ? r->n : 1), sizeof *v);
    if (!v) {
        pthread_mutex_unlock(&r->mu);
        *out = NULL;
        *n = 0;
        return LIP_ENOMEM;
    }
    for (int i = 0; i < r->n; i++) fill_stats(r->all[i], &v[i]);
    *n = r->n;
    pthread_mutex_unlock(&r->mu);
    qsort(v, (size_t)*n, sizeof *v, stats_cmp);
    *out = v;
    return 0;
}

int lip_registry_stats(lip_registry *r, const char *id, lip_model_stats *out, lip_err *err)
{
    pthread_mutex_lock(&r->mu);
    entry *e = id && lip_valid_id(id, strlen(id)) ? find(r, id) : NULL;
    if (e) fill_stats(e, out);
    pthread_mutex_unlock(&r->mu);
    return e ? 0 : lip_err_set(err, LIP_ENOTFOUND, "model '%s' not found", id ? id : "");
}

void lip_registry_totals_get(lip_registry *r, lip_registry_totals *t)
{
    pthread_mutex_lock(&r->mu);
    t->known = r->n;
    t->loaded = r->loaded;
    t->max_models = r->o.max_models;
    t->memory_bytes = r->mem;
    t->max_memory_bytes = mem_budget(r);
    t->hits = r->hits;
    t->misses = r->misses;
    t->loads = r->loads;
    t->evictions = r->evictions;
    t->idle_unloads = r->idle_unloads;
    t->load_failures = r->load_failures;
    pthread_mutex_unlock(&r->mu);
}
