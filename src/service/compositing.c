/* SPDX-License-Identifier: MIT */
/* service/compositing.c: compositing.CompositingService (API.md §5) with in-process inference:
 * InferBatchComposite is the monolithic handler with batch 1-25 (identical wire messages), and
 * the management RPCs use the upstream compositing messages (paths, stats in ms and bytes). */
#include "service/svc_int.h"

#include "compositing.pb-c.h"


#define COMP_NAME "compositing.CompositingService"
#define COMP_MAX_BATCH 25

static int infer(void *ud, lip_rpc_call *call, const uint8_t *req, size_t len, lip_rpc_buf *resp,
                 lip_err *err)
{
    return svc_infer_composite(ud, call, req, len, COMP_MAX_BATCH, resp, err);
}

/* A listed model: its ModelInfo and the ModelStats that points to. */
typedef struct {
    Compositing__ModelInfo mi;
    Compositing__ModelStats st;
} comp_model;

/* Fills one ModelInfo (and its stats) from the registry's view of a model (strings point into
 * m, which must outlive the packing). svc_model_fill_fn, slot a comp_model. */
static ProtobufCMessage *fill_info(const lip_model_stats *m, void *slot)
{
    comp_model *c = slot;
    Compositing__ModelInfo *mi = &c->mi;
    Compositing__ModelStats *st = &c->st;
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
    return &mi->base;
}

static int list_models(void *ud, lip_rpc_call *call, const uint8_t *req, size_t len,
                       lip_rpc_buf *resp, lip_err *err)
{
    return svc_list_rpc(ud, &compositing__list_models_request__descriptor,
                        &compositing__list_models_response__descriptor, fill_info,
                        sizeof(comp_model), req, len, resp, err);
}

/* GetModelStats: model_id (empty: all models), with the registry's totals. */
static int model_stats(void *ud, lip_rpc_call *call, const uint8_t *req, size_t len,
                       lip_rpc_buf *resp, lip_err *err)
{
    return svc_list_rpc(ud, &compositing__get_model_stats_request__descriptor,
                        &compositing__get_model_stats_response__descriptor, fill_info,
                        sizeof(comp_model), req, len, resp, err);
}

static int load_model(void *ud, lip_rpc_call *call, const uint8_t *req, size_t len,
                      lip_rpc_buf *resp, lip_err *err)
{
    return svc_load_rpc(ud, &compositing__load_model_request__descriptor,
                        &compositing__load_model_response__descriptor, fill_info, sizeof(comp_model), req,
                        len, resp, err);
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
