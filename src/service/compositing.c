/* SPDX-License-Identifier: MIT */
/* service/compositing.c: compositing.CompositingService (API.md §5) with in-process inference:
 * InferBatchComposite is the monolithic handler with batch 1-25 (identical wire messages), and
 * the management RPCs use the upstream compositing messages (paths, stats in ms and bytes). */
#include "service/svc_int.h"

#include "compositing.pb-c.h"

#include <string.h>

#define COMP_NAME "compositing.CompositingService"
#define COMP_MAX_BATCH 25

static int infer(void *ud, lip_rpc_call *call, const uint8_t *req, size_t len, lip_rpc_buf *resp,
                 lip_err *err)
{
    return svc_infer_composite(ud, call, req, len, COMP_MAX_BATCH, resp, err);
}

/* Fills one ModelInfo (and its stats) from the registry's view of a model (strings point into
 * m, which must outlive the packing). */
static void fill_info(const lip_model_stats *m, Compositing__ModelInfo *mi,
                      Compositing__ModelStats *st)
{
    Compositing__ModelInfo i0 = COMPOSITING__MODEL_INFO__INIT;
    Compositing__ModelStats s0 = COMPOSITING__MODEL_STATS__INIT;
    *mi = i0;
    *st = s0;
    mi->model_id = (char *)m->id;
    mi->loaded = m->loaded;
    mi->model_path = (char *)m->unet_path;
    mi->background_dir = ""; /* API.md: MAY be empty */
    mi->crop_rects_path = "";
    st->usage_count = m->requests;
    st->last_used_unix_ms = m->last_used_unix_ms;
    st->total_inference_time_ms = m->total_inference_ms;
    st->memory_bytes = (int64_t)m->memory_bytes;
    st->loaded_unix_ms = m->loaded_unix_ms;
    st->background_cache_hits = m->bg_cache_hits;
    st->background_cache_misses = m->bg_cache_misses;
    st->background_cache_frames = m->bg_cache_frames;
    mi->stats = st;
}

/* ListModels and GetModelStats: every configured model, or only `only` when non-empty. */
static int list(lip_service *sv, const char *only, bool stats_resp, lip_rpc_buf *resp,
                lip_err *err)
{
    char id[72] = "";
    if (only && *only) {
        int rc = svc_resolve(sv, only, id, err);
        if (rc) return rc;
    }
    lip_model_stats *ms = NULL;
    int n = 0, k = 0;
    int rc = svc_list(sv, &ms, &n);
    Compositing__ModelInfo *mi = lip_calloc((size_t)n + 1, sizeof *mi);
    Compositing__ModelStats *st = lip_calloc((size_t)n + 1, sizeof *st);
    Compositing__ModelInfo **ptrs = lip_calloc((size_t)n + 1, sizeof *ptrs);
    int64_t total = 0;
    if (rc || !mi || !st || !ptrs) {
        rc = lip_err_set(err, LIP_ENOMEM, "out of memory listing models");
        goto out;
    }
    for (int i = 0; i < n; i++) { /* sorted by id */
        const lip_model_stats *m = &ms[i];
        total += (int64_t)m->memory_bytes;
        if (id[0] && strcmp(m->id, id) != 0) continue;
        fill_info(m, &mi[k], &st[k]);
        ptrs[k] = &mi[k];
        k++;
    }
    if (stats_resp) {
        lip_registry_totals tot;
        svc_totals(sv, &tot);
        Compositing__GetModelStatsResponse o = COMPOSITING__GET_MODEL_STATS_RESPONSE__INIT;
        o.n_models = (size_t)k;
        o.models = ptrs;
        o.max_models = sv->o.max_models;
        o.loaded_models = tot.loaded;
        o.total_memory_bytes = total;
        o.max_memory_bytes = (int64_t)tot.max_memory_bytes;
        rc = lip_rpc_pack(&o.base, resp, err);
    } else {
        Compositing__ListModelsResponse o = COMPOSITING__LIST_MODELS_RESPONSE__INIT;
        o.n_models = (size_t)k;
        o.models = ptrs;
        rc = lip_rpc_pack(&o.base, resp, err);
    }
out:
    lip_free(ms);
    lip_free(mi);
    lip_free(st);
    lip_free(ptrs);
    return rc;
}

static int list_models(void *ud, lip_rpc_call *call, const uint8_t *req, size_t len,
                       lip_rpc_buf *resp, lip_err *err)
{
    const ProtobufCMessageDescriptor *rd = &compositing__list_models_response__descriptor;
    ProtobufCMessage *q = svc_unpack(&compositing__list_models_request__descriptor, req, len, err);
    if (!q) return svc_fail(rd, err, resp);
    protobuf_c_message_free_unpacked(q, NULL);
    int rc = list(ud, "", false, resp, err);
    return rc ? svc_fail(rd, err, resp) : 0;
}

static int model_stats(void *ud, lip_rpc_call *call, const uint8_t *req, size_t len,
                       lip_rpc_buf *resp, lip_err *err)
{
    const ProtobufCMessageDescriptor *rd = &compositing__get_model_stats_response__descriptor;
    Compositing__GetModelStatsRequest *q = (Compositing__GetModelStatsRequest *)svc_unpack(
        &compositing__get_model_stats_request__descriptor, req, len, err);
    if (!q) return svc_fail(rd, err, resp);
    char only[72];
    /* Longer than any id: it cannot be configured, so svc_resolve reports it as malformed. */
    lip_strlcpy(only, q->model_id, sizeof only);
    bool too_long = strlen(q->model_id) >= sizeof only;
    protobuf_c_message_free_unpacked(&q->base, NULL);
    int rc = too_long ? lip_err_set(err, LIP_EINVAL, "model_id longer than 64 characters")
                      : list(ud, only, true, resp, err);
    return rc ? svc_fail(rd, err, resp) : 0;
}

static int load_model(void *ud, lip_rpc_call *call, const uint8_t *req, size_t len,
                      lip_rpc_buf *resp, lip_err *err)
{
    lip_service *sv = ud;
    const ProtobufCMessageDescriptor *rd = &compositing__load_model_response__descriptor;
    Compositing__LoadModelRequest *q = (Compositing__LoadModelRequest *)svc_unpack(
        &compositing__load_model_request__descriptor, req, len, err);
    if (!q) return svc_fail(rd, err, resp);
    char id[72];
    bool force = q->force_reload;
    int rc = svc_resolve(sv, q->model_id, id, err);
    protobuf_c_message_free_unpacked(&q->base, NULL);
    double ms = 0;
    bool was = false;
    if (!rc) rc = svc_load(sv, id, force, &ms, &was, err);
    if (rc) return svc_fail(rd, err, resp);
    Compositing__LoadModelResponse o = COMPOSITING__LOAD_MODEL_RESPONSE__INIT;
    Compositing__ModelInfo mi;
    Compositing__ModelStats st;
    lip_model_stats m;
    if (!svc_stats(sv, id, &m)) {
        fill_info(&m, &mi, &st);
        o.stats = &st;
    }
    o.success = true;
    o.load_time_ms = was ? 0.0f : (float)ms;
    rc = lip_rpc_pack(&o.base, resp, err);
    return rc ? svc_fail(rd, err, resp) : 0;
}

static int unload_model(void *ud, lip_rpc_call *call, const uint8_t *req, size_t len,
                        lip_rpc_buf *resp, lip_err *err)
{
    return svc_unload_rpc(ud, &compositing__unload_model_request__descriptor,
                          &compositing__unload_model_response__descriptor, req, len, resp, err);
}

static int health(void *ud, lip_rpc_call *call, const uint8_t *req, size_t len, lip_rpc_buf *resp,
                  lip_err *err)
{
    lip_service *sv = ud;
    const ProtobufCMessageDescriptor *rd = &compositing__health_response__descriptor;
    ProtobufCMessage *q = svc_unpack(&compositing__health_request__descriptor, req, len, err);
    if (!q) return svc_fail(rd, err, resp);
    protobuf_c_message_free_unpacked(q, NULL);
    Compositing__HealthResponse o = COMPOSITING__HEALTH_RESPONSE__INIT;
    o.healthy = svc_healthy(sv, COMP_NAME);
    /* In-process inference is as healthy as this server; remote: the last probe. */
    o.inference_server_healthy = sv->remote ? svc_remote_healthy(sv->remote) : true;
    o.loaded_models = lip_service_loaded_count(sv);
    o.max_models = sv->o.max_models;
    o.version = sv->version;
    o.inference_server_url = sv->remote ? (char *)svc_remote_url(sv->remote) : "";
    int rc = lip_rpc_pack(&o.base, resp, err);
    return rc ? svc_fail(rd, err, resp) : 0;
}

static const lip_rpc_method methods[] = {
    {"InferBatchComposite", LIP_RPC_UNARY, true, infer},
    {"ListModels", LIP_RPC_UNARY, false, list_models},
    {"LoadModel", LIP_RPC_UNARY, true, load_model},
    {"UnloadModel", LIP_RPC_UNARY, true, unload_model},
    {"GetModelStats", LIP_RPC_UNARY, false, model_stats},
    {"Health", LIP_RPC_UNARY, false, health},
};

int svc_register_compositing(lip_service *sv, lip_rpc_server *srv, lip_err *err)
{
    return lip_rpc_server_add_service(srv, COMP_NAME, methods, (int)LIP_ARRAY_LEN(methods), sv,
                                      err);
}
