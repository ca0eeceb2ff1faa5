/* SPDX-License-Identifier: MIT */
/* service/monolithic.c: monolithic.MonolithicService (API.md §4): InferBatchComposite (raw PCM
 * or deprecated feature windows, client visual tensors or the server-side avatar, JPEG frames
 * out) and the model management RPCs. Validation runs in the order §1.6 prescribes: batch size,
 * field sizes, model lookup, frame index range, then NaN/Inf values; every failure is a non-OK
 * status preceded by the success=false response message. */
#include "service/svc_int.h"

#include "monolithic.pb-c.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define MONO_NAME "monolithic.MonolithicService"
#define MONO_MAX_BATCH 32
#define VIS_BYTES ((size_t)LIP_UNET_VISUAL_FLOATS * 4u)
#define AUD_BYTES ((size_t)LIP_UNET_AUDIO_FLOATS * 4u)

/* The first non-finite value of a float array, as "index i is nan". */
static int check_finite(const char *field, const float *v, size_t n, lip_err *err)
{
    if (!v || lip_all_finite(v, n)) return 0;
    size_t i = 0;
    while (i < n && isfinite(v[i])) i++;
    return lip_err_set(err, LIP_EINVAL, "%s: expected finite float32 values, got %s at index %zu",
                       field, isnan(v[i]) ? "NaN" : "Inf", i);
}

/* InferBatchComposite of monolithic (B <= 32) and compositing (B <= 25): their request and
 * response messages are identical on the wire, so both are handled with the monolithic types. */
int svc_infer_composite(lip_service *sv, lip_rpc_call *call, const uint8_t *req, size_t len,
                        int max_batch, lip_rpc_buf *resp, lip_err *err)
{
    const ProtobufCMessageDescriptor *rd = &monolithic__composite_batch_response__descriptor;
    Monolithic__CompositeBatchRequest *q = (Monolithic__CompositeBatchRequest *)svc_unpack(
        &monolithic__composite_batch_request__descriptor, req, len, err);
    if (!q) return svc_fail(rd, err, resp);
    lip_avatar *a = NULL;
    float *tmp_vis = NULL, *tmp_pcm = NULL, *tmp_aud = NULL;
    lip_result res = {0};
    int rc = 0;
    int B = q->batch_size;
    char id[72] = "";

    /* 1. batch size */
    if (B < 1 || B > max_batch || B > MONO_MAX_BATCH) {
        rc = lip_err_set(err, LIP_EINVAL, "batch_size: expected 1-%d, got %d", max_batch, B);
        goto out;
    }
    /* 2. field sizes (and the other per-field rules that need no model) */
    size_t vlen = q->visual_frames.len, plen = q->raw_audio.len, alen = q->audio_features.len;
    if (vlen && vlen != (size_t)B * VIS_BYTES) {
        rc = lip_err_set(err, LIP_EINVAL, "visual_frames: expected 0 or %zu bytes (batch_size %d "
                         "x 2,457,600), got %zu", (size_t)B * VIS_BYTES, B, vlen);
        goto out;
    }
    if (plen % 4) {
        rc = lip_err_set(err, LIP_EINVAL, "raw_audio: expected a multiple of 4 bytes (float32 "
                         "samples), got %zu", plen);
        goto out;
    }
    if (!plen && alen && alen != AUD_BYTES && alen != (size_t)B * AUD_BYTES) {
        rc = lip_err_set(err, LIP_EINVAL, "audio_features: expected 32,768 or %zu bytes (batch_size "
                         "%d x 32,768), got %zu", (size_t)B * AUD_BYTES, B, alen);
        goto out;
    }
    if (!plen && !alen) {
        rc = lip_err_set(err, LIP_EINVAL, "no audio: raw_audio and audio_features are both empty");
        goto out;
    }
    if (q->sample_rate != 0 && q->sample_rate != 16000) {
        rc = lip_err_set(err, LIP_EINVAL, "sample_rate: expected 0 or 16000 (audio is never "
                         "resampled), got %d", q->sample_rate);
        goto out;
    }
    /* 3. model lookup (may load it) */
    bool loaded_now = false;
    double load_ms = 0;
    rc = svc_acquire(sv, q->model_id, &a, &loaded_now, &load_ms, id, err);
    if (rc) goto out;
    /* With remote inference and no encoder here, the PCM is forwarded to the backends. */
    if (plen && !lip_pipeline_encoder(sv->pipe) && !sv->remote) {
        rc = lip_err_set(err, LIP_EPRECOND, "raw_audio sent but this server has no audio "
                         "encoder (configure audio.encoder_path, or send audio_features)");
        goto out;
    }
    /* 4. frame index range */
    if (q->start_frame_idx < 0) {
        rc = lip_err_set(err, LIP_EINVAL, "start_frame_idx: expected >= 0, got %d",
                         q->start_frame_idx);
        goto out;
    }
    /* 5. values */
    bool oom = false, oom2 = false, oom3 = false;
    const float *vis = svc_floats(&q->visual_frames, &tmp_vis, &oom);
    const float *pcm = svc_floats(&q->raw_audio, &tmp_pcm, &oom2);
    const float *aud = plen ? NULL : svc_floats(&q->audio_features, &tmp_aud, &oom3);
    if (oom || oom2 || oom3) {
        rc = lip_err_set(err, LIP_ENOMEM, "out of memory copying request tensors");
        goto out;
    }
    if ((rc = check_finite("visual_frames", vis, vlen / 4, err)) ||
        (rc = check_finite("raw_audio", pcm, plen / 4, err)) ||
        (rc = check_finite("audio_features", aud, alen / 4, err)))
        goto out;

    lip_request r = {0};
    r.batch = B;
    r.start_frame = q->start_frame_idx;
    r.order = LIP_ORDER_LOOP;
    if (pcm) {
        r.pcm = pcm;
        r.n_pcm = plen / 4;
        r.pcm_mode = LIP_PCM_REQUEST;
    } else {
        r.audio = aud;
        r.n_audio = alen == AUD_BYTES ? 1 : B;
    }
    r.visual = vis;
    r.format = LIP_OUT_JPEG;
    r.cancel = lip_rpc_call_cancel_flag(call);
    r.deadline_ms = lip_rpc_call_deadline_ms(call);
    rc = lip_pipeline_run(sv->pipe, a, &r, &res, err);
    if (rc) goto out;
    if (res.count != B) {
        rc = lip_err_set(err, LIP_EINTERNAL, "pipeline returned %d frames for batch %d", res.count, B);
        goto out;
    }
    svc_record(sv, id, res.t.inference_ms, B);
    svc_observe(&res.t, B);

    ProtobufCBinaryData frames[MONO_MAX_BATCH];
    for (int i = 0; i < B; i++) frames[i] = (ProtobufCBinaryData){res.frames[i].len,
                                                                   res.frames[i].data};
    Monolithic__CompositeBatchResponse o = MONOLITHIC__COMPOSITE_BATCH_RESPONSE__INIT;
    o.n_composited_frames = (size_t)B;
    o.composited_frames = frames;
    o.inference_time_ms = (float)res.t.inference_ms;
    o.composite_time_ms = (float)(res.t.composite_ms + res.t.encode_ms);
    o.audio_processing_ms = pcm ? (float)res.t.audio_ms : 0.0f;
    o.model_loaded = loaded_now;
    o.model_load_time_ms = (float)load_ms;
    o.success = true;
    lip_engine *unet = lip_avatar_unet(a);
    o.gpu_id = sv->remote ? svc_remote_gpu_id(sv->remote) : unet ? lip_engine_device(unet) : -1;
    o.total_time_ms = (float)(lip_time_ms() - lip_rpc_call_start_ms(call));
    rc = lip_rpc_pack(&o.base, resp, err);
out:
    lip_result_free(&res);
    svc_release(sv, a);
    lip_free(tmp_vis);
    lip_free(tmp_pcm);
    lip_free(tmp_aud);
    protobuf_c_message_free_unpacked(&q->base, NULL);
    if (rc) {
        /* A pipeline stopped by our cancel flag after the deadline is a deadline failure. */
        if (rc == LIP_ECANCELLED && lip_rpc_call_deadline_passed(call)) err->code = LIP_ETIMEOUT;
        return svc_fail(rd, err, resp);
    }
    return 0;
}

static int infer(void *ud, lip_rpc_call *call, const uint8_t *req, size_t len, lip_rpc_buf *resp,
                 lip_err *err)
{
    return svc_infer_composite(ud, call, req, len, MONO_MAX_BATCH, resp, err);
}

/* ---- model management ---------------------------------------------------------------------- */

/* A model's average model time per request, ms (0 before its first). */
static float avg_ms(const lip_model_stats *m)
{
    return m->requests ? (float)(m->total_inference_ms / (double)m->requests) : 0.0f;
}

/* svc_model_fill_fn of ListModels: slot a Monolithic__ModelInfo. */
static ProtobufCMessage *fill_info(const lip_model_stats *m, void *slot)
{
    Monolithic__ModelInfo *mi = slot, i0 = MONOLITHIC__MODEL_INFO__INIT;
    *mi = i0;
    mi->model_id = (char *)m->id;
    mi->loaded = m->loaded;
    mi->gpu_id = m->device;
    mi->memory_mb = (int64_t)(m->memory_bytes >> 20);
    mi->request_count = (int32_t)m->requests;
    mi->avg_inference_ms = avg_ms(m);
    return &mi->base;
}

/* svc_model_fill_fn of GetModelStats: slot a Monolithic__ModelStats. */
static ProtobufCMessage *fill_stats(const lip_model_stats *m, void *slot)
{
    Monolithic__ModelStats *s = slot, s0 = MONOLITHIC__MODEL_STATS__INIT;
    *s = s0;
    s->model_id = (char *)m->id;
    s->loaded = m->loaded;
    s->gpu_id = m->device;
    s->memory_mb = (int64_t)(m->memory_bytes >> 20);
    s->request_count = (int32_t)m->requests;
    s->total_inference_ms = (int64_t)m->total_inference_ms;
    s->avg_inference_ms = avg_ms(m);
    s->last_used_timestamp = m->last_used_unix_ms / 1000;
    return &s->base;
}

/* Every configured model, sorted by id (stable listings). */
static int list_models(void *ud, lip_rpc_call *call, const uint8_t *req, size_t len,
                       lip_rpc_buf *resp, lip_err *err)
{
    return svc_list_rpc(ud, &monolithic__list_models_request__descriptor,
                        &monolithic__list_models_response__descriptor, fill_info,
                        sizeof(Monolithic__ModelInfo), req, len, resp, err);
}

static int load_model(void *ud, lip_rpc_call *call, const uint8_t *req, size_t len,
                      lip_rpc_buf *resp, lip_err *err)
{
    lip_service *sv = ud;
    const ProtobufCMessageDescriptor *rd = &monolithic__load_model_response__descriptor;
    Monolithic__LoadModelRequest *q = (Monolithic__LoadModelRequest *)svc_unpack(
        &monolithic__load_model_request__descriptor, req, len, err);
    if (!q) return svc_fail(rd, err, resp);
    char id[72];
    int rc = 0;
    /* No GPU in a CPU build: -1 (server's choice) and 0 (the default device, also what an absent
     * field reads as) are accepted. */
    int ngpu = lip_engine_has_provider("cuda") ? 1 : 0;
    if (q->preferred_gpu < -1 || q->preferred_gpu > LIP_MAX(0, ngpu - 1))
        rc = lip_err_set(err, LIP_EINVAL, "preferred_gpu: expected -1 or 0..%d, got %d",
                         LIP_MAX(0, ngpu - 1), q->preferred_gpu);
    if (!rc) rc = svc_resolve(sv, q->model_id, id, err);
    protobuf_c_message_free_unpacked(&q->base, NULL);
    double ms = 0;
    bool was = false;
    if (!rc) rc = svc_load(sv, id, false, &ms, &was, err);
    if (rc) return svc_fail(rd, err, resp);
    Monolithic__LoadModelResponse o = MONOLITHIC__LOAD_MODEL_RESPONSE__INIT;
    o.success = true;
    lip_model_stats st;
    o.gpu_id = svc_stats(sv, id, &st) ? -1 : st.device;
    o.load_time_ms = was ? 0.0f : (float)ms;
    rc = lip_rpc_pack(&o.base, resp, err);
    return rc ? svc_fail(rd, err, resp) : 0;
}

static int unload_model(void *ud, lip_rpc_call *call, const uint8_t *req, size_t len,
                        lip_rpc_buf *resp, lip_err *err)
{
    return svc_unload_rpc(ud, &monolithic__unload_model_request__descriptor,
                          &monolithic__unload_model_response__descriptor, req, len, resp, err);
}

/* Every configured model's stats (the request names no model). */
static int model_stats(void *ud, lip_rpc_call *call, const uint8_t *req, size_t len,
                       lip_rpc_buf *resp, lip_err *err)
{
    return svc_list_rpc(ud, &monolithic__get_model_stats_request__descriptor,
                        &monolithic__get_model_stats_response__descriptor, fill_stats,
                        sizeof(Monolithic__ModelStats), req, len, resp, err);
}

static int health(void *ud, lip_rpc_call *call, const uint8_t *req, size_t len, lip_rpc_buf *resp,
                  lip_err *err)
{
    lip_service *sv = ud;
    const ProtobufCMessageDescriptor *rd = &monolithic__health_response__descriptor;
    ProtobufCMessage *q = svc_unpack(&monolithic__health_request__descriptor, req, len, err);
    if (!q) return svc_fail(rd, err, resp);
    protobuf_c_message_free_unpacked(q, NULL);
    Monolithic__HealthResponse o = MONOLITHIC__HEALTH_RESPONSE__INIT;
    o.healthy = svc_healthy(sv, MONO_NAME);
    o.loaded_models = lip_service_loaded_count(sv);
    o.max_models = sv->o.max_models;
    /* CPU build: no devices in use, so the parallel GPU lists stay empty. */
    int rc = lip_rpc_pack(&o.base, resp, err);
    return rc ? svc_fail(rd, err, resp) : 0;
}

static const lip_rpc_method methods[] = {
    {"InferBatchComposite", LIP_RPC_UNARY, true, infer},
    {"ListModels", LIP_RPC_UNARY, false, list_models},
    {"LoadModel", LIP_RPC_UNARY, true, load_model},
    {"UnloadModel", LIP_RPC_UNARY, true, unload_model}, /* waits for a running load */
    {"GetModelStats", LIP_RPC_UNARY, false, model_stats},
    {"Health", LIP_RPC_UNARY, false, health},
};

int svc_register_monolithic(lip_service *sv, lip_rpc_server *srv, lip_err *err)
{
    return lip_rpc_server_add_service(srv, MONO_NAME, methods, (int)LIP_ARRAY_LEN(methods), sv,
                                      err);
}
