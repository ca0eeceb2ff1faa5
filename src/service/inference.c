/* SPDX-License-Identifier: MIT */
/* service/inference.c: inference.InferenceService (API.md §6): client visual tensors (required)
 * plus raw PCM or feature windows in, the UNet's raw mouth regions out (float32 [3][320][320],
 * planes B, G, R), and the §5-style management RPCs with this service's ModelInfo and Health.
 * Raw PCM follows §6: sample 0 is 5,120 samples before output 0, never clamped. */
#include "service/svc_int.h"

#include "inference.pb-c.h"

#include <math.h>

#define INF_NAME "inference.InferenceService"
#define INF_MAX_BATCH 50
#define VIS_BYTES ((size_t)LIP_UNET_VISUAL_FLOATS * 4u)
#define AUD_BYTES ((size_t)LIP_UNET_AUDIO_FLOATS * 4u)
#define OUT_BYTES ((size_t)LIP_UNET_OUT_FLOATS * 4u)

static int finite_or(const char *field, const float *v, size_t n, lip_err *err)
{
    if (!v || lip_all_finite(v, n)) return 0;
    size_t i = 0;
    while (i < n && isfinite(v[i])) i++;
    return lip_err_set(err, LIP_EINVAL, "%s: expected finite float32 values, got %s at index %zu",
                       field, isnan(v[i]) ? "NaN" : "Inf", i);
}

static int infer(void *ud, lip_rpc_call *call, const uint8_t *req, size_t len, lip_rpc_buf *resp,
                 lip_err *err)
{
    lip_service *sv = ud;
    const ProtobufCMessageDescriptor *rd = &inference__infer_batch_response__descriptor;
    Inference__InferBatchRequest *q = (Inference__InferBatchRequest *)svc_unpack(
        &inference__infer_batch_request__descriptor, req, len, err);
    if (!q) return svc_fail(rd, err, resp);
    lip_avatar *a = NULL;
    float *tv = NULL, *tp = NULL, *ta = NULL;
    lip_result res = {0};
    Inference__RawMouthRegion *regs = NULL;
    Inference__RawMouthRegion **ptrs = NULL;
    char id[72] = "";
    int rc = 0, B = q->batch_size;
    size_t vlen = q->visual_frames.len, plen = q->raw_audio.len, alen = q->audio_features.len;
    if (B < 1 || B > INF_MAX_BATCH)
        rc = lip_err_set(err, LIP_EINVAL, "batch_size: expected 1-%d, got %d", INF_MAX_BATCH, B);
    else if (vlen != (size_t)B * VIS_BYTES)
        rc = lip_err_set(err, LIP_EINVAL, "visual_frames: expected exactly %zu bytes (batch_size "
                         "%d x 2,457,600; required), got %zu", (size_t)B * VIS_BYTES, B, vlen);
    else if (plen % 4)
        rc = lip_err_set(err, LIP_EINVAL, "raw_audio: expected a multiple of 4 bytes, got %zu", plen);
    else if (!plen && alen && alen != AUD_BYTES && alen != (size_t)B * AUD_BYTES)
        rc = lip_err_set(err, LIP_EINVAL, "audio_features: expected 32,768 or %zu bytes, got %zu",
                         (size_t)B * AUD_BYTES, alen);
    else if (!plen && !alen)
        rc = lip_err_set(err, LIP_EINVAL, "no audio: raw_audio and audio_features are both empty");
    else if (q->sample_rate != 0 && q->sample_rate != 16000)
        rc = lip_err_set(err, LIP_EINVAL, "sample_rate: expected 0 or 16000, got %d",
                         q->sample_rate);
    bool loaded_now;
    double load_ms;
    if (!rc) rc = svc_acquire(sv, q->model_id, &a, &loaded_now, &load_ms, id, err);
    if (!rc && plen && !lip_pipeline_encoder(sv->pipe))
        rc = lip_err_set(err, LIP_EPRECOND, "raw_audio sent but this server has no audio encoder");
    bool o1 = false, o2 = false, o3 = false;
    const float *vis = rc ? NULL : svc_floats(&q->visual_frames, &tv, &o1);
    const float *pcm = rc ? NULL : svc_floats(&q->raw_audio, &tp, &o2);
    const float *aud = rc || plen ? NULL : svc_floats(&q->audio_features, &ta, &o3);
    if (!rc && (o1 || o2 || o3)) rc = lip_err_set(err, LIP_ENOMEM, "out of memory");
    if (!rc) rc = finite_or("visual_frames", vis, vlen / 4, err);
    if (!rc) rc = finite_or("raw_audio", pcm, plen / 4, err);
    if (!rc) rc = finite_or("audio_features", aud, alen / 4, err);
    if (!rc) {
        lip_request r = {0};
        r.batch = B;
        r.start_frame = 8; /* §6: as if s >= 8, so the PCM is never clamped */
        r.order = LIP_ORDER_LOOP;
        if (pcm) {
            r.pcm = pcm;
            r.n_pcm = plen / 4;
            r.pcm_mode = LIP_PCM_INFERENCE;
        } else {
            r.audio = aud;
            r.n_audio = alen == AUD_BYTES ? 1 : B;
        }
        r.visual = vis;
        r.format = LIP_OUT_RAW;
        r.cancel = lip_rpc_call_cancel_flag(call);
        r.deadline_ms = lip_rpc_call_deadline_ms(call);
        rc = lip_pipeline_run(sv->pipe, a, &r, &res, err);
        if (rc && rc == LIP_ECANCELLED && lip_rpc_call_deadline_passed(call))
            rc = err->code = LIP_ETIMEOUT;
        if (rc) rc = err->code;
    }
    if (!rc && res.count != B)
        rc = lip_err_set(err, LIP_EINTERNAL, "pipeline returned %d outputs for %d", res.count, B);
    if (!rc) {
        svc_record(sv, id, res.t.inference_ms, B);
        svc_observe(&res.t, B);
        regs = lip_calloc((size_t)B, sizeof *regs);
        ptrs = lip_calloc((size_t)B, sizeof *ptrs);
        if (!regs || !ptrs) rc = lip_err_set(err, LIP_ENOMEM, "out of memory");
        for (int i = 0; !rc && i < B; i++) {
            if (res.frames[i].len != OUT_BYTES) {
                rc = lip_err_set(err, LIP_EINTERNAL, "output %d has %zu bytes, expected %zu", i,
                                 res.frames[i].len, OUT_BYTES);
                break;
            }
            Inference__RawMouthRegion r0 = INFERENCE__RAW_MOUTH_REGION__INIT;
            r0.data = (ProtobufCBinaryData){res.frames[i].len, res.frames[i].data};
            regs[i] = r0;
            ptrs[i] = &regs[i];
        }
    }
    if (!rc) {
        Inference__InferBatchResponse o = INFERENCE__INFER_BATCH_RESPONSE__INIT;
        o.n_outputs = (size_t)B;
        o.outputs = ptrs;
        o.inference_time_ms = (float)res.t.inference_ms;
        o.audio_processing_ms = pcm ? (float)res.t.audio_ms : 0.0f;
        o.success = true;
        o.worker_id = 0; /* one in-process execution slot pool; slots are not told apart */
        lip_engine *e = lip_avatar_unet(a);
        o.gpu_id = e ? lip_engine_device(e) : -1;
        rc = lip_rpc_pack(&o.base, resp, err);
    }
    lip_free(regs);
    lip_free(ptrs);
    lip_result_free(&res);
    svc_release(sv, a);
    lip_free(tv);
    lip_free(tp);
    lip_free(ta);
    protobuf_c_message_free_unpacked(&q->base, NULL);
    return rc ? svc_fail(rd, err, resp) : 0;
}

/* A listed model: its ModelInfo and the ModelStats that points to. */
typedef struct {
    Inference__ModelInfo mi;
    Inference__ModelStats st;
} inf_model;

/* Fills one ModelInfo from the registry's view of a model (strings point into m).
 * svc_model_fill_fn, slot an inf_model. */
static ProtobufCMessage *fill_info(const lip_model_stats *m, void *slot)
{
    inf_model *c = slot;
    Inference__ModelInfo *mi = &c->mi;
    Inference__ModelStats *st = &c->st;
    Inference__ModelInfo i0 = INFERENCE__MODEL_INFO__INIT;
    Inference__ModelStats s0 = INFERENCE__MODEL_STATS__INIT;
    *mi = i0;
    *st = s0;
    mi->model_id = (char *)m->id;
    mi->loaded = m->loaded;
    mi->model_path = (char *)m->unet_path;
    mi->gpu_id = m->device;
    st->usage_count = m->requests;
    st->last_used_unix_ms = m->last_used_unix_ms;
    st->total_inference_time_ms = m->total_inference_ms;
    st->memory_bytes = (int64_t)m->memory_bytes;
    st->loaded_unix_ms = m->loaded_unix_ms;
    mi->stats = st;
    return &mi->base;
}

static int list_models(void *ud, lip_rpc_call *call, const uint8_t *req, size_t len,
                       lip_rpc_buf *resp, lip_err *err)
{
    return svc_list_rpc(ud, &inference__list_models_request__descriptor,
                        &inference__list_models_response__descriptor, fill_info,
                        sizeof(inf_model), req, len, resp, err);
}

/* GetModelStats: model_id (empty: all models), with the registry's totals. */
static int model_stats(void *ud, lip_rpc_call *call, const uint8_t *req, size_t len,
                       lip_rpc_buf *resp, lip_err *err)
{
    return svc_list_rpc(ud, &inference__get_model_stats_request__descriptor,
                        &inference__get_model_stats_response__descriptor, fill_info,
                        sizeof(inf_model), req, len, resp, err);
}

static int load_model(void *ud, lip_rpc_call *call, const uint8_t *req, size_t len,
                      lip_rpc_buf *resp, lip_err *err)
{
    return svc_load_rpc(ud, &inference__load_model_request__descriptor,
                        &inference__load_model_response__descriptor, fill_info, sizeof(inf_model), req,
                        len, resp, err);
}

static int unload_model(void *ud, lip_rpc_call *call, const uint8_t *req, size_t len,
                        lip_rpc_buf *resp, lip_err *err)
{
    return svc_unload_rpc(ud, &inference__unload_model_request__descriptor,
                          &inference__unload_model_response__descriptor, req, len, resp, err);
}

static int health(void *ud, lip_rpc_call *call, const uint8_t *req, size_t len, lip_rpc_buf *resp,
                  lip_err *err)
{
    lip_service *sv = ud;
    const ProtobufCMessageDescriptor *rd = &inference__health_response__descriptor;
    ProtobufCMessage *q = svc_unpack(&inference__health_request__descriptor, req, len, err);
    if (!q) return svc_fail(rd, err, resp);
    protobuf_c_message_free_unpacked(q, NULL);
    Inference__HealthResponse o = INFERENCE__HEALTH_RESPONSE__INIT;
    o.healthy = svc_healthy(sv, INF_NAME);
    o.cuda_available = lip_engine_has_provider("cuda");
    o.loaded_models = lip_service_loaded_count(sv);
    o.max_models = sv->o.max_models;
    o.gpu_count = 0; /* devices are not enumerated in this build: gpus stays empty */
    o.version = sv->version;
    int rc = lip_rpc_pack(&o.base, resp, err);
    return rc ? svc_fail(rd, err, resp) : 0;
}

static const lip_rpc_method methods[] = {
    {"InferBatch", LIP_RPC_UNARY, true, infer},
    {"ListModels", LIP_RPC_UNARY, false, list_models},
    {"LoadModel", LIP_RPC_UNARY, true, load_model},
    {"UnloadModel", LIP_RPC_UNARY, true, unload_model},
    {"GetModelStats", LIP_RPC_UNARY, false, model_stats},
    {"Health", LIP_RPC_UNARY, false, health},
};

int svc_register_inference(lip_service *sv, lip_rpc_server *srv, lip_err *err)
{
    return lip_rpc_server_add_service(srv, INF_NAME, methods, (int)LIP_ARRAY_LEN(methods), sv, err);
}
