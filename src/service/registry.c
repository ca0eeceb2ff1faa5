/* SPDX-License-Identifier: MIT */
/* service/registry.c: the shared state of the services: options, the pipeline, and the bridge
 * to the avatar cache (src/registry): model-name resolution with the default model, acquire and
 * release around every request, load/unload/list/stats for the management RPCs, and the
 * mapping of load failures to API.md statuses. Also the request helpers shared by every API
 * file and the registration of the APIs on an rpc server. */
#include "service/svc_int.h"
#include "metrics/metrics.h"

#include <dirent.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

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
    po.incremental_jpeg = po.incremental_png = !sv->o.full_encode;
    if (sv->remote) {
        po.infer = svc_remote_infer;
        po.infer_ud = sv->remote;
    }
    return po;
}

static char *dup_or_null(const char *s) { return s && *s ? lip_strdup(s) : NULL; }

void svc_rescan(lip_service *sv) { lip_registry_scan(sv->reg, NULL); }

/* Joins a configured path with models_root unless absolute; NULL for an unset ("") path, so
 * the avatar's canonical layout applies (<models_root>/<id>/frames/ ...). */
static const char *resolve_path(const lip_service *sv, const char *p, char *buf, size_t n)
{
    if (!p || !*p) return NULL;
    if (p[0] == '/') return p;
    return lip_path_join(buf, n, sv->models_root, p, NULL) ? NULL : buf;
}

/* Registers a configured model (models.<id>) under its configured paths; with preload it is
 * also loaded now and pinned (lip_registry_add). */
static int add_configured(lip_service *sv, const lip_service_model *cm, bool preload,
                          lip_err *err)
{
    char b1[4096], b2[4096], b3[4096];
    lip_avatar_paths ps = {.unet = resolve_path(sv, cm->model_path, b1, sizeof b1),
                           .frames_dir = resolve_path(sv, cm->background_dir, b2, sizeof b2),
                           .crop_rects = resolve_path(sv, cm->crop_rects_path, b3, sizeof b3)};
    return lip_registry_add(sv->reg, cm->id, cm->id, &ps, preload, -1, err);
}

/* Unloads idle avatars every few seconds (a tenth of the idle timeout, 1-30 s). */
static void *ticker_main(void *arg)
{
    lip_service *sv = arg;
    double period_ms = LIP_MAX(1000.0, LIP_MIN(30000.0, sv->o.idle_timeout_min * 6000.0));
    pthread_mutex_lock(&sv->tmu);
    while (!sv->ticker_stop) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        long long ns = (long long)ts.tv_nsec + (long long)(period_ms * 1e6);
        ts.tv_sec += (time_t)(ns / 1000000000LL);
        ts.tv_nsec = (long)(ns % 1000000000LL);
        pthread_cond_timedwait(&sv->tcv, &sv->tmu, &ts);
        if (sv->ticker_stop) break;
        pthread_mutex_unlock(&sv->tmu);
        if (lip_registry_tick(sv->reg) > 0 && sv->srv) lip_service_update_health(sv, sv->srv);
        pthread_mutex_lock(&sv->tmu);
    }
    pthread_mutex_unlock(&sv->tmu);
    return NULL;
}

/* The remote backends' health changed (probe thread): the services follow it. */
static void remote_health_changed(void *ud, bool healthy)
{
    lip_service *sv = ud;
    (void)healthy;
    if (sv->srv) lip_service_update_health(sv, sv->srv);
}

lip_service *lip_service_new(const lip_service_opts *opts, lip_err *err)
{
    lip_service *sv = lip_calloc(1, sizeof *sv);
    if (!sv) {
        lip_err_set(err, LIP_ENOMEM, "out of memory creating the service");
        return NULL;
    }
    sv->o = opts ? *opts : lip_service_opts_default();
    sv->start_unix_ms = lip_time_unix_ms();
    pthread_mutex_init(&sv->tmu, NULL);
    pthread_cond_init(&sv->tcv, NULL);
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
    lip_registry_opts ro = lip_registry_opts_default();
    ro.models_root = sv->models_root;
    ro.max_models = sv->o.max_models;
    ro.max_memory_gb = sv->o.max_memory_gb;
    ro.policy = sv->o.evict_lru ? LIP_EVICT_LRU : LIP_EVICT_LFU;
    ro.idle_timeout_min = sv->o.idle_timeout_min;
    ro.auto_load = sv->o.auto_load;
    ro.avatar.engine = sv->o.engine;
    if (sv->o.inference_url && *sv->o.inference_url) {
        /* Remote inference: no UNet here; the decode cache is the background LRU. */
        ro.avatar.load_unet = false;
        ro.avatar.decode_cache_frames = LIP_MAX(sv->o.background_cache_frames, 0);
        svc_remote_opts rmo = {.url = sv->o.inference_url,
                               .timeout_ms = sv->o.inference_timeout_ms,
                               .max_retries = sv->o.inference_max_retries,
                               .max_msg_bytes = sv->o.inference_max_msg_bytes,
                               .tls_ca = sv->o.inference_tls_ca,
                               .tls_cert = sv->o.inference_tls_cert,
                               .tls_key = sv->o.inference_tls_key,
                               .api_key = sv->o.inference_api_key,
                               .on_health_change = remote_health_changed,
                               .ud = sv};
        if (!(sv->remote = svc_remote_new(&rmo, err))) goto fail;
    }
    ro.gpu_count = sv->o.gpu_count;
    ro.assignment = sv->o.gpu_least_loaded ? LIP_ASSIGN_LEAST_LOADED : LIP_ASSIGN_ROUND_ROBIN;
    if (!(sv->reg = lip_registry_new(&ro, err))) goto fail;
    /* Configured models first (their paths win over a same-named directory), then discovery. */
    for (int i = 0; opts && i < opts->n_models; i++) {
        const lip_service_model *cm = &opts->models[i];
        if (!cm->id || !lip_valid_id(cm->id, strlen(cm->id))) {
            lip_err_set(err, LIP_EINVAL, "configured model %d: id '%s' is not a valid id", i,
                        cm->id ? cm->id : "");
            goto fail;
        }
        if (add_configured(sv, cm, false, err)) goto fail;
    }
    svc_rescan(sv);
    lip_pipeline_opts po = svc_pipeline_opts(sv);
    sv->pipe = lip_pipeline_new(&po, err);
    if (!sv->pipe) {
        lip_err_prefix(err, "pipeline");
        goto fail;
    }
    /* Preloads: the models marked preload (loaded and pinned), then the default model (already
     * loaded when it is one of them: re-registering a loaded model would be refused). */
    for (int i = 0; opts && i < opts->n_models; i++) {
        const lip_service_model *cm = &opts->models[i];
        if (!cm->preload) continue;
        if (add_configured(sv, cm, true, err)) {
            err->code = svc_load_code(err->code);
            lip_err_prefix(err, "preloading model '%s'", cm->id);
            goto fail;
        }
    }
    if (sv->default_model[0]) {
        double ms;
        bool was;
        if (svc_load(sv, sv->default_model, false, &ms, &was, err)) {
            lip_err_prefix(err, "default model '%s'", sv->default_model);
            goto fail;
        }
        if (was) lip_log_info("service: default model '%s' (preloaded)", sv->default_model);
        else lip_log_info("service: loaded default model '%s' in %.0f ms", sv->default_model, ms);
    }
    if (sv->o.idle_timeout_min > 0) {
        if (pthread_create(&sv->ticker, NULL, ticker_main, sv) != 0) {
            lip_err_set(err, LIP_ENOMEM, "cannot start the idle-unload thread");
            goto fail;
        }
        sv->ticker_on = true;
    }
    return sv;
fail:
    lip_service_free(sv);
    return NULL;
}

void lip_service_free(lip_service *sv)
{
    if (!sv) return;
    if (sv->ticker_on) {
        pthread_mutex_lock(&sv->tmu);
        sv->ticker_stop = true;
        pthread_cond_broadcast(&sv->tcv);
        pthread_mutex_unlock(&sv->tmu);
        pthread_join(sv->ticker, NULL);
    }
    pthread_mutex_destroy(&sv->tmu);
    pthread_cond_destroy(&sv->tcv);
    lip_registry_free(sv->reg);
    lip_pipeline_free(sv->pipe);
    svc_remote_free(sv->remote); /* after the pipeline: its threads call it */
    lip_free(sv->models_root);
    lip_free(sv->default_model);
    lip_free(sv->encoder_path);
    lip_free(sv->version);
    lip_free(sv);
}

int svc_loaded_count(lip_service *sv)
{
    lip_registry_totals t;
    lip_registry_totals_get(sv->reg, &t);
    return t.loaded;
}

int lip_service_loaded_count(lip_service *sv) { return svc_loaded_count(sv); }

void svc_totals(lip_service *sv, lip_registry_totals *t) { lip_registry_totals_get(sv->reg, t); }
void lip_service_registry_totals(lip_service *sv, struct lip_registry_totals *t)
{
    lip_registry_totals_get(sv->reg, t);
}

int svc_list(lip_service *sv, lip_model_stats **out, int *n)
{
    svc_rescan(sv);
    return lip_registry_list(sv->reg, out, n);
}

int svc_stats(lip_service *sv, const char *id, lip_model_stats *out)
{
    return lip_registry_stats(sv->reg, id, out, NULL);
}

/* ---- model lookup and loading -------------------------------------------------------------- */

int svc_load_code(int code)
{
    switch (code) {
    case LIP_ENOTFOUND:
    case LIP_ENOMEM:
    case LIP_EBUSY:
    case LIP_EINVAL:
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
    lip_model_stats st;
    if (svc_stats(sv, name, &st)) {
        svc_rescan(sv);
        if (svc_stats(sv, name, &st))
            return lip_err_set(err, LIP_ENOTFOUND, "model '%s' not found (no such configured "
                               "model or directory under %s)", name, sv->models_root);
    }
    lip_strlcpy(id_out, name, 72);
    return 0;
}

int svc_load(lip_service *sv, const char *id, bool force, double *load_ms, bool *was_loaded,
             lip_err *err)
{
    *load_ms = 0;
    *was_loaded = false;
    int rc = lip_registry_load(sv->reg, id, force, -1, load_ms, was_loaded, err);
    if (rc) {
        err->code = svc_load_code(err->code);
        return err->code;
    }
    if (sv->srv) lip_service_update_health(sv, sv->srv);
    return 0;
}

int svc_unload(lip_service *sv, const char *id, lip_err *err)
{
    int rc = lip_registry_unload(sv->reg, id, err);
    if (rc) return rc;
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
    lip_acquire_info info;
    rc = lip_registry_acquire(sv->reg, id_out, false, a, &info, err);
    if (rc) {
        if (rc == LIP_EPRECOND)
            return lip_err_set(err, LIP_EPRECOND, "model '%s' is configured but not loaded and "
                               "auto-load is off (call LoadModel first)", id_out);
        err->code = svc_load_code(rc);
        return err->code;
    }
    *loaded_now = info.loaded_now;
    *load_ms = info.load_ms;
    if (info.loaded_now && sv->srv) lip_service_update_health(sv, sv->srv);
    return 0;
}

void svc_release(lip_service *sv, lip_avatar *a)
{
    if (a) lip_registry_release(sv->reg, a, 0, 0);
}

void svc_record(lip_service *sv, const char *id, double inference_ms, int frames)
{
    lip_registry_record(sv->reg, id, frames, inference_ms);
}

/* Series looked up once (the lookup takes the metrics lock; observing does not). */
static struct {
    pthread_once_t once;
    lip_counter *frames;
    lip_histogram *stage[6];
} obs = {.once = PTHREAD_ONCE_INIT};

static void obs_init(void)
{
    lip_metrics *m = lip_metrics_global();
    if (!m || lip_metrics_register_std(m, NULL)) return;
    static const char *const names[6] = {"queue", "audio", "prepare", "inference", "composite", "encode"};
    obs.frames = lip_metrics_counter(m, LIP_METRIC_FRAMES, NULL, NULL);
    for (int i = 0; i < 6; i++) {
        const char *v[1] = {names[i]};
        obs.stage[i] = lip_metrics_histogram(m, LIP_METRIC_STAGE_SECONDS, v, NULL);
    }
}

void svc_observe(const lip_timings *t, int frames)
{
    pthread_once(&obs.once, obs_init);
    lip_counter_add(obs.frames, (uint64_t)(frames > 0 ? frames : 0));
    if (!t) return;
    const double v[6] = {t->queue_ms, t->audio_ms, t->prepare_ms, t->inference_ms, t->composite_ms,
                         t->encode_ms};
    for (int i = 0; i < 6; i++) lip_histogram_observe(obs.stage[i], v[i] / 1000.0);
}

int svc_add_model_dir(lip_service *sv, const char *id, const char *dir, lip_err *err)
{
    return lip_registry_add(sv->reg, id, dir, NULL, false, -1, err);
}

bool svc_serving(lip_service *sv)
{
    if (!sv->pipe) return false;
    if (!sv->default_model[0]) return true;
    lip_model_stats st;
    if (svc_stats(sv, sv->default_model, &st)) return false;
    return st.loaded || st.loading || sv->o.auto_load;
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

int svc_unload_rpc(lip_service *sv, const ProtobufCMessageDescriptor *qd,
                   const ProtobufCMessageDescriptor *rd, const uint8_t *req, size_t len,
                   lip_rpc_buf *resp, lip_err *err)
{
    ProtobufCMessage *q = svc_unpack(qd, req, len, err);
    if (!q) return svc_fail(rd, err, resp);
    const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field_by_name(qd, "model_id");
    const char *name = f ? *(char *const *)(const void *)((const char *)q + f->offset) : "";
    char id[72];
    int rc = svc_resolve(sv, name, id, err);
    protobuf_c_message_free_unpacked(q, NULL);
    if (!rc) rc = svc_unload(sv, id, err);
    if (rc) return svc_fail(rd, err, resp);
    /* success = true, everything else default. */
    void *o = lip_calloc(1, rd->sizeof_message);
    if (!o) return lip_err_set(err, LIP_ENOMEM, "out of memory");
    rd->message_init(o);
    const ProtobufCFieldDescriptor *fs = protobuf_c_message_descriptor_get_field_by_name(rd, "success");
    if (fs) *(protobuf_c_boolean *)(void *)((char *)o + fs->offset) = 1;
    rc = lip_rpc_pack(o, resp, err);
    lip_free(o);
    return rc ? svc_fail(rd, err, resp) : 0;
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
    /* With remote inference the services can take work only while a backend can (API.md §8);
     * "" stays the process's own state, for liveness probes. */
    int svc_st = sv->remote && !svc_remote_healthy(sv->remote) ? LIP_HEALTH_NOT_SERVING : st;
    for (int i = 0; i < sv->nregistered; i++)
        lip_rpc_server_set_health(srv, sv->registered[i], svc_st);
    lip_rpc_server_set_health(srv, "", st);
}

bool svc_healthy(lip_service *sv, const char *name)
{
    return sv->srv && lip_rpc_server_health(sv->srv, name) == LIP_HEALTH_SERVING;
}
