/* SPDX-License-Identifier: MIT */
/* service/registry.c: the shared state of the services: options, the pipeline, and the model
 * registry. THIN ADAPTER: the model registry part (lookup, load, LRU eviction by count, stats)
 * is a minimal stand-in written before src/registry/ (the multi-tenant avatar cache with
 * LFU/LRU, memory bounds and idle unloading) existed; the svc_* functions of svc_int.h are the
 * seam where it is to be replaced by lip_registry_*. A configured model is an entry of the configuration or a directory under
 * models_root that holds an avatar (avatar.yaml, unet.onnx or frames/); directories are
 * rescanned cheaply when models are listed or looked up, so an avatar copied in while serving is
 * found. Loaded avatars are refcounted: unloading or evicting drops the registry's reference and
 * requests that hold one finish normally. Also the request helpers shared by every API file. */
#include "service/svc_int.h"

#include <dirent.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

/* ---- options and lifetime ------------------------------------------------------------------ */

lip_service_opts lip_service_opts_default(void)
{
    lip_service_opts o = {0};
    o.models_root = "avatars";
    o.default_model = "";
    o.auto_load = true;
    o.engine = lip_engine_opts_default();
    o.jpeg_quality = 75;
    o.png_level = 1;
    o.feather_px = 10;
    o.pipeline_slots = 2;
    o.chunk_frames = 8;
    o.optimized_max_batch = 64;
    o.version = LIP_VERSION;
    return o;
}

lip_pipeline_opts svc_pipeline_opts(const lip_service *sv)
{
    lip_pipeline_opts po = lip_pipeline_opts_default();
    po.encoder_path = sv->encoder_path;
    po.encoder_engine = sv->o.engine;
    po.threads = sv->o.pipeline_threads;
    if (sv->o.pipeline_slots > 0) po.slots = sv->o.pipeline_slots;
    if (sv->o.chunk_frames > 0) po.chunk_frames = sv->o.chunk_frames;
    po.paste_mode = sv->o.paste_exact ? LIP_PIPE_PASTE_EXACT : LIP_PIPE_PASTE_FEATHER;
    if (sv->o.feather_px > 0) po.feather_px = sv->o.feather_px;
    if (sv->o.jpeg_quality > 0) po.jpeg_quality = sv->o.jpeg_quality;
    if (sv->o.png_level >= 0) po.png_level = sv->o.png_level;
    return po;
}

static char *dup_or_null(const char *s) { return s && *s ? lip_strdup(s) : NULL; }

static svc_model *add_model_locked(lip_service *sv, const char *id)
{
    svc_model *m = svc_find_locked(sv, id);
    if (m) return m;
    svc_model *nm = lip_realloc(sv->models, (size_t)(sv->nmodels + 1) * sizeof *nm);
    if (!nm) return NULL;
    sv->models = nm;
    m = &sv->models[sv->nmodels++];
    memset(m, 0, sizeof *m);
    lip_strlcpy(m->id, id, sizeof m->id);
    return m;
}

svc_model *svc_find_locked(lip_service *sv, const char *id)
{
    for (int i = 0; i < sv->nmodels; i++)
        if (strcmp(sv->models[i].id, id) == 0) return &sv->models[i];
    return NULL;
}

int svc_loaded_count_locked(lip_service *sv)
{
    int n = 0;
    for (int i = 0; i < sv->nmodels; i++) n += sv->models[i].a != NULL;
    return n;
}

/* An avatar directory: has any of the files an avatar needs to be recognised. */
static bool looks_like_avatar(const char *dir)
{
    static const char *const marks[] = {"avatar.yaml", "unet.onnx", "frames", "crop_rects.json",
                                        "checkpoint"};
    char p[1024];
    for (size_t i = 0; i < LIP_ARRAY_LEN(marks); i++) {
        if (lip_path_join(p, sizeof p, dir, marks[i], NULL)) continue;
        struct stat st;
        if (stat(p, &st) == 0) return true;
    }
    return false;
}

void svc_rescan(lip_service *sv)
{
    DIR *d = opendir(sv->models_root);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t n = strlen(e->d_name);
        if (!lip_valid_id(e->d_name, n)) continue;
        char p[1024];
        if (lip_path_join(p, sizeof p, sv->models_root, e->d_name, NULL)) continue;
        if (!lip_dir_exists(p) || !looks_like_avatar(p)) continue;
        pthread_mutex_lock(&sv->mu);
        add_model_locked(sv, e->d_name);
        pthread_mutex_unlock(&sv->mu);
    }
    closedir(d);
}

lip_service *lip_service_new(const lip_service_opts *opts, lip_err *err)
{
    lip_service *sv = lip_calloc(1, sizeof *sv);
    if (!sv) {
        lip_err_set(err, LIP_ENOMEM, "out of memory creating the service");
        return NULL;
    }
    sv->o = opts ? *opts : lip_service_opts_default();
    pthread_mutex_init(&sv->mu, NULL);
    pthread_mutex_init(&sv->load_mu, NULL);
    sv->start_unix_ms = lip_time_unix_ms();
    sv->models_root = lip_strdup(sv->o.models_root && *sv->o.models_root ? sv->o.models_root
                                                                           : "avatars");
    sv->default_model = lip_strdup(sv->o.default_model ? sv->o.default_model : "");
    sv->encoder_path = dup_or_null(sv->o.encoder_path);
    sv->version = lip_strdup(sv->o.version && *sv->o.version ? sv->o.version : LIP_VERSION);
    if (!sv->models_root || !sv->default_model || !sv->version) {
        lip_err_set(err, LIP_ENOMEM, "out of memory creating the service");
        goto fail;
    }
    sv->o.models_root = sv->models_root;
    sv->o.default_model = sv->default_model;
    sv->o.encoder_path = sv->encoder_path;
    sv->o.version = sv->version;
    sv->o.models = NULL;
    sv->o.n_models = 0;
    if (sv->default_model[0] && !lip_valid_id(sv->default_model, strlen(sv->default_model))) {
        lip_err_set(err, LIP_EINVAL, "default model '%s' is not a valid id (1-64 characters "
                    "[A-Za-z0-9_.-], not . or ..)", sv->default_model);
        goto fail;
    }
    if (!lip_dir_exists(sv->models_root)) {
        lip_err_set(err, LIP_ENOTFOUND, "models root '%s' is not a directory", sv->models_root);
        goto fail;
    }
    for (int i = 0; opts && i < opts->n_models; i++) {
        const lip_service_model *cm = &opts->models[i];
        if (!cm->id || !lip_valid_id(cm->id, strlen(cm->id))) {
            lip_err_set(err, LIP_EINVAL, "configured model %d: id '%s' is not a valid id", i,
                        cm->id ? cm->id : "");
            goto fail;
        }
        svc_model *m = add_model_locked(sv, cm->id);
        if (!m) {
            lip_err_set(err, LIP_ENOMEM, "out of memory adding model %s", cm->id);
            goto fail;
        }
        m->model_path = dup_or_null(cm->model_path);
        m->background_dir = dup_or_null(cm->background_dir);
        m->crop_rects_path = dup_or_null(cm->crop_rects_path);
        m->preload = cm->preload;
    }
    svc_rescan(sv);
    lip_pipeline_opts po = svc_pipeline_opts(sv);
    sv->pipe = lip_pipeline_new(&po, err);
    if (!sv->pipe) {
        lip_err_prefix(err, "pipeline");
        goto fail;
    }
    /* Preloads: the default model, then the models marked preload. */
    if (sv->default_model[0]) {
        double ms;
        bool was;
        if (svc_load(sv, sv->default_model, false, &ms, &was, err)) {
            lip_err_prefix(err, "default model '%s'", sv->default_model);
            goto fail;
        }
        lip_log_info("service: loaded default model '%s' in %.0f ms", sv->default_model, ms);
    }
    for (int i = 0; i < sv->nmodels; i++) {
        if (!sv->models[i].preload) continue;
        char id[72];
        lip_strlcpy(id, sv->models[i].id, sizeof id);
        double ms;
        bool was;
        if (svc_load(sv, id, false, &ms, &was, err)) {
            lip_err_prefix(err, "preloading model '%s'", id);
            goto fail;
        }
    }
    return sv;
fail:
    lip_service_free(sv);
    return NULL;
}

void lip_service_free(lip_service *sv)
{
    if (!sv) return;
    for (int i = 0; i < sv->nmodels; i++) {
        lip_avatar_unref(sv->models[i].a);
        lip_free(sv->models[i].model_path);
        lip_free(sv->models[i].background_dir);
        lip_free(sv->models[i].crop_rects_path);
        lip_free(sv->models[i].dir);
    }
    lip_free(sv->models);
    lip_pipeline_free(sv->pipe);
    lip_free(sv->models_root);
    lip_free(sv->default_model);
    lip_free(sv->encoder_path);
    lip_free(sv->version);
    pthread_mutex_destroy(&sv->mu);
    pthread_mutex_destroy(&sv->load_mu);
    lip_free(sv);
}

int lip_service_loaded_count(lip_service *sv)
{
    pthread_mutex_lock(&sv->mu);
    int n = svc_loaded_count_locked(sv);
    pthread_mutex_unlock(&sv->mu);
    return n;
}

/* ---- model lookup and loading -------------------------------------------------------------- */

int svc_load_code(int code)
{
    switch (code) {
    case LIP_ENOTFOUND:
    case LIP_ENOMEM:
    case LIP_EBUSY:
    case LIP_EPERM: return code;
    default: return LIP_EPRECOND; /* unusable model files (format, model, I/O) */
    }
}

int svc_resolve(lip_service *sv, const char *name, char *id_out, lip_err *err)
{
    if (!name || !*name) {
        if (!sv->default_model[0])
            return lip_err_set(err, LIP_EINVAL, "model name is empty and no default model is "
                               "configured");
        name = sv->default_model;
    }
    size_t n = strlen(name);
    if (!lip_valid_id(name, n))
        return lip_err_set(err, LIP_EINVAL, "model name '%.80s%s' is malformed: expected 1-64 "
                           "characters [A-Za-z0-9_.-], not . or .. (got %zu characters)", name,
                           n > 80 ? "..." : "", n);
    pthread_mutex_lock(&sv->mu);
    bool known = svc_find_locked(sv, name) != NULL;
    pthread_mutex_unlock(&sv->mu);
    if (!known) {
        svc_rescan(sv);
        pthread_mutex_lock(&sv->mu);
        known = svc_find_locked(sv, name) != NULL;
        pthread_mutex_unlock(&sv->mu);
    }
    if (!known)
        return lip_err_set(err, LIP_ENOTFOUND, "model '%s' not found (no such configured model "
                           "or directory under %s)", name, sv->models_root);
    lip_strlcpy(id_out, name, 72);
    return 0;
}

/* Joins a configured path with models_root unless absolute. */
static const char *resolve_path(const lip_service *sv, const char *p, char *buf, size_t n)
{
    if (!p) return NULL;
    if (p[0] == '/') return p;
    return lip_path_join(buf, n, sv->models_root, p, NULL) ? NULL : buf;
}

/* Evicts least-recently-used models until the loaded count fits max_models, keeping keep. */
static void evict_locked(lip_service *sv, const char *keep)
{
    if (sv->o.max_models <= 0) return;
    while (svc_loaded_count_locked(sv) > sv->o.max_models) {
        svc_model *lru = NULL;
        for (int i = 0; i < sv->nmodels; i++) {
            svc_model *m = &sv->models[i];
            if (!m->a || strcmp(m->id, keep) == 0) continue;
            if (!lru || m->touch < lru->touch) lru = m;
        }
        if (!lru) return;
        lip_log_info("service: evicting model '%s' (max_models %d)", lru->id, sv->o.max_models);
        lip_avatar_unref(lru->a);
        lru->a = NULL;
        lru->loaded_unix_ms = 0;
        lru->frames = 0;
    }
}

int svc_load(lip_service *sv, const char *id, bool force, double *load_ms, bool *was_loaded,
             lip_err *err)
{
    *load_ms = 0;
    *was_loaded = false;
    pthread_mutex_lock(&sv->load_mu);
    pthread_mutex_lock(&sv->mu);
    svc_model *m = svc_find_locked(sv, id);
    if (!m) {
        pthread_mutex_unlock(&sv->mu);
        pthread_mutex_unlock(&sv->load_mu);
        return lip_err_set(err, LIP_ENOTFOUND, "model '%s' not found", id);
    }
    if (m->a && !force) {
        *was_loaded = true;
        pthread_mutex_unlock(&sv->mu);
        pthread_mutex_unlock(&sv->load_mu);
        return 0;
    }
    char dir[1024], b1[1024], b2[1024], b3[1024];
    int rc = m->dir ? (lip_strlcpy(dir, m->dir, sizeof dir) < sizeof dir
                           ? 0
                           : lip_err_set(err, LIP_EINVAL, "package path too long"))
                    : lip_path_join(dir, sizeof dir, sv->models_root, id, err);
    lip_avatar_paths paths = {0};
    paths.unet = resolve_path(sv, m->model_path, b1, sizeof b1);
    paths.frames_dir = resolve_path(sv, m->background_dir, b2, sizeof b2);
    paths.crop_rects = resolve_path(sv, m->crop_rects_path, b3, sizeof b3);
    pthread_mutex_unlock(&sv->mu);
    if (rc) {
        pthread_mutex_unlock(&sv->load_mu);
        return rc;
    }
    if (!lip_dir_exists(dir) && !paths.frames_dir) {
        pthread_mutex_unlock(&sv->load_mu);
        return lip_err_set(err, LIP_ENOTFOUND, "model '%s': package directory %s does not exist",
                           id, dir);
    }
    lip_avatar_opts ao = lip_avatar_opts_default();
    ao.engine = sv->o.engine;
    double t0 = lip_time_ms();
    lip_avatar *a = lip_avatar_load(dir, id, &paths, &ao, err);
    double ms = lip_time_ms() - t0;
    if (!a) {
        pthread_mutex_unlock(&sv->load_mu);
        err->code = svc_load_code(err->code);
        return lip_err_prefix(err, "loading model '%s'", id);
    }
    pthread_mutex_lock(&sv->mu);
    m = svc_find_locked(sv, id); /* the array may have moved while loading */
    lip_avatar *old = m->a;
    m->a = a;
    m->load_ms = ms;
    m->loaded_unix_ms = lip_time_unix_ms();
    m->touch = lip_time_ms();
    m->frames = 0;
    m->min_frame_ms = m->max_frame_ms = 0;
    evict_locked(sv, id);
    pthread_mutex_unlock(&sv->mu);
    pthread_mutex_unlock(&sv->load_mu);
    lip_avatar_unref(old);
    *load_ms = ms;
    if (sv->srv) lip_service_update_health(sv, sv->srv);
    lip_log_info("service: model '%s' loaded in %.0f ms (%d frames)", id, ms,
                 lip_avatar_frame_count(a));
    return 0;
}

int svc_unload(lip_service *sv, const char *id, lip_err *err)
{
    pthread_mutex_lock(&sv->load_mu);
    pthread_mutex_lock(&sv->mu);
    svc_model *m = svc_find_locked(sv, id);
    lip_avatar *a = m ? m->a : NULL;
    if (m) {
        m->a = NULL;
        m->loaded_unix_ms = 0;
        m->frames = 0;
    }
    pthread_mutex_unlock(&sv->mu);
    pthread_mutex_unlock(&sv->load_mu);
    if (!m) return lip_err_set(err, LIP_ENOTFOUND, "model '%s' not found", id);
    lip_avatar_unref(a);
    /* Unloading the default model with auto-load off makes the services NOT_SERVING. */
    if (sv->srv) lip_service_update_health(sv, sv->srv);
    return 0;
}

int svc_acquire(lip_service *sv, const char *name, lip_avatar **a, bool *loaded_now,
                double *load_ms, char *id_out, lip_err *err)
{
    *a = NULL;
    *loaded_now = false;
    *load_ms = 0;
    int rc = svc_resolve(sv, name, id_out, err);
    if (rc) return rc;
    for (int attempt = 0; attempt < 2; attempt++) {
        pthread_mutex_lock(&sv->mu);
        svc_model *m = svc_find_locked(sv, id_out);
        if (m && m->a) {
            *a = lip_avatar_ref(m->a);
            m->touch = lip_time_ms();
        }
        pthread_mutex_unlock(&sv->mu);
        if (*a) return 0;
        if (attempt) break;
        if (!sv->o.auto_load)
            return lip_err_set(err, LIP_EPRECOND, "model '%s' is configured but not loaded and "
                               "auto-load is off (call LoadModel first)", id_out);
        bool was;
        rc = svc_load(sv, id_out, false, load_ms, &was, err);
        if (rc) return rc;
        *loaded_now = !was;
    }
    return lip_err_set(err, LIP_EUNAVAIL, "model '%s' was unloaded while the request started; "
                       "retry", id_out);
}

void svc_record(lip_service *sv, const char *id, double inference_ms, int frames)
{
    pthread_mutex_lock(&sv->mu);
    svc_model *m = svc_find_locked(sv, id);
    if (m) {
        m->request_count++;
        m->total_inference_ms += inference_ms;
        m->last_used_unix_ms = lip_time_unix_ms();
        m->touch = lip_time_ms();
        if (frames > 0) {
            double per = inference_ms / frames;
            if (!m->frames || per < m->min_frame_ms) m->min_frame_ms = per;
            if (!m->frames || per > m->max_frame_ms) m->max_frame_ms = per;
            m->frames += frames;
        }
    }
    pthread_mutex_unlock(&sv->mu);
}

int svc_add_model_dir(lip_service *sv, const char *id, const char *dir, lip_err *err)
{
    pthread_mutex_lock(&sv->mu);
    svc_model *m = add_model_locked(sv, id);
    char *d = m && dir ? lip_strdup(dir) : NULL;
    if (m && d) {
        lip_free(m->dir);
        m->dir = d;
    }
    pthread_mutex_unlock(&sv->mu);
    if (!m || (dir && !d))
        return lip_err_set(err, LIP_ENOMEM, "out of memory registering model %s", id);
    return 0;
}

bool svc_serving(lip_service *sv)
{
    if (!sv->pipe) return false;
    if (!sv->default_model[0]) return true;
    pthread_mutex_lock(&sv->mu);
    svc_model *m = svc_find_locked(sv, sv->default_model);
    bool ok = m && (m->a || sv->o.auto_load);
    pthread_mutex_unlock(&sv->mu);
    return ok;
}

/* ---- request helpers ----------------------------------------------------------------------- */

ProtobufCMessage *svc_unpack(const ProtobufCMessageDescriptor *d, const uint8_t *req, size_t len,
                             lip_err *err)
{
    ProtobufCMessage *m = protobuf_c_message_unpack(d, NULL, len, req);
    if (!m)
        lip_err_set(err, LIP_EINVAL, "cannot parse the request as %s (%zu bytes): malformed "
                    "protobuf or a field with the wrong wire type", d->name, len);
    return m;
}

int svc_fail(const ProtobufCMessageDescriptor *d, lip_err *err, lip_rpc_buf *resp)
{
    int code = err->code ? err->code : LIP_EINTERNAL;
    /* §1.6: only responses with success/error fields carry the failure message. */
    const ProtobufCFieldDescriptor *fs = protobuf_c_message_descriptor_get_field_by_name(d, "success");
    if (!fs || !protobuf_c_message_descriptor_get_field_by_name(d, "error")) return code;
    void *m = lip_calloc(1, d->sizeof_message);
    if (!m) return code;
    d->message_init(m);
    const ProtobufCFieldDescriptor *fe = protobuf_c_message_descriptor_get_field_by_name(d, "error");
    if (fe && fe->type == PROTOBUF_C_TYPE_STRING && fe->label != PROTOBUF_C_LABEL_REPEATED)
        *(char **)((char *)m + fe->offset) = err->msg;
    /* Only default values and err->msg (not owned) are in the message: free the struct only. */
    lip_rpc_pack(m, resp, NULL);
    lip_free(m);
    return code;
}

const float *svc_floats(const ProtobufCBinaryData *b, float **tmp, bool *oom)
{
    *tmp = NULL;
    if (oom) *oom = false;
    if (!b->len || !b->data) return NULL;
    if (((uintptr_t)b->data & 3u) == 0) return (const float *)(const void *)b->data;
    *tmp = lip_malloc(b->len);
    if (!*tmp) {
        if (oom) *oom = true;
        return NULL;
    }
    memcpy(*tmp, b->data, b->len);
    return *tmp;
}

/* ---- registration and health --------------------------------------------------------------- */

static const struct {
    const char *name;
    int (*reg)(lip_service *, lip_rpc_server *, lip_err *);
} apis[] = {
    {"monolithic.MonolithicService", svc_register_monolithic},
    {"lipsync.LipSyncComposite", svc_register_lipsync_composite},
    {"lipsync.LipSync", svc_register_lipsync},
    {"optimized_lipsyncsrv.OptimizedLipSyncService", svc_register_optimized},
    {"compositing.CompositingService", svc_register_compositing},
    {"inference.InferenceService", svc_register_inference},
};

const char *const *lip_service_names(void)
{
    static const char *names[LIP_ARRAY_LEN(apis) + 1];
    for (size_t i = 0; i < LIP_ARRAY_LEN(apis); i++) names[i] = apis[i].name;
    return names;
}

bool lip_service_known(const char *name)
{
    for (size_t i = 0; i < LIP_ARRAY_LEN(apis); i++)
        if (strcmp(apis[i].name, name) == 0) return true;
    return false;
}

int lip_service_register(lip_service *sv, lip_rpc_server *srv, const char *name, lip_err *err)
{
    for (size_t i = 0; i < LIP_ARRAY_LEN(apis); i++) {
        if (strcmp(apis[i].name, name) != 0) continue;
        if (sv->nregistered >= SVC_MAX_REGISTERED)
            return lip_err_set(err, LIP_EINVAL, "too many services (max %d)", SVC_MAX_REGISTERED);
        sv->srv = srv;
        int rc = apis[i].reg(sv, srv, err);
        if (rc) return rc;
        lip_strlcpy(sv->registered[sv->nregistered++], name, sizeof sv->registered[0]);
        return 0;
    }
    return lip_err_set(err, LIP_ENOTFOUND, "service '%s' is not served by this build", name);
}

void lip_service_update_health(lip_service *sv, lip_rpc_server *srv)
{
    int st = svc_serving(sv) ? LIP_HEALTH_SERVING : LIP_HEALTH_NOT_SERVING;
    for (int i = 0; i < sv->nregistered; i++) lip_rpc_server_set_health(srv, sv->registered[i], st);
    lip_rpc_server_set_health(srv, "", st);
}

bool svc_healthy(lip_service *sv, const char *name)
{
    return sv->srv && lip_rpc_server_health(sv->srv, name) == LIP_HEALTH_SERVING;
}
