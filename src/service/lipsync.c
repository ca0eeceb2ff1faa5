/* SPDX-License-Identifier: MIT */
/* service/lipsync.c: lipsync.LipSyncComposite (API.md §2: float tensors in, PNG frames out) and
 * lipsync.LipSync (§3: float tensors in, the UNet's raw BGR planes out). Both have no model
 * field and always use the default model; both accept client visual tensors or, with
 * visual_frames empty, build the inputs from the default avatar's frames (§1.4). Validation
 * order as §1.6: batch size, field sizes, model lookup, frame index, values. */
#include "service/svc_int.h"

#include "lipsync.pb-c.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define COMPOSITE_NAME "lipsync.LipSyncComposite"
#define RAW_NAME "lipsync.LipSync"
#define LS_MAX_BATCH 25

typedef struct batch_in {
    int batch, start;
    const float *visual;
    size_t n_visual;
    const float *audio;
    size_t n_audio;
} batch_in;

static int nonfinite(const char *field, const float *v, size_t n, lip_err *err)
{
    if (!v || lip_all_finite(v, n)) return 0;
    size_t i = 0;
    while (i < n && isfinite(v[i])) i++;
    return lip_err_set(err, LIP_EINVAL, "%s: expected finite values, got %s at index %zu", field,
                       isnan(v[i]) ? "NaN" : "Inf", i);
}

/* Validates and runs one batch on the default model; fills res. */
static int run_batch(lip_service *sv, lip_rpc_call *call, const batch_in *in, int format,
                     lip_result *res, lip_avatar **a, char *id, lip_err *err)
{
    int B = in->batch;
    if (B < 1 || B > LS_MAX_BATCH)
        return lip_err_set(err, LIP_EINVAL, "batch_size: expected 1-%d, got %d", LS_MAX_BATCH, B);
    if (in->n_visual && in->n_visual != (size_t)B * LIP_UNET_VISUAL_FLOATS)
        return lip_err_set(err, LIP_EINVAL, "visual_frames: expected 0 or %zu values (batch_size "
                           "%d x 614,400), got %zu", (size_t)B * LIP_UNET_VISUAL_FLOATS, B,
                           in->n_visual);
    if (in->n_audio != LIP_UNET_AUDIO_FLOATS && in->n_audio != (size_t)B * LIP_UNET_AUDIO_FLOATS)
        return lip_err_set(err, LIP_EINVAL, "audio_features: expected 8,192 or %zu values "
                           "(batch_size %d x 8,192), got %zu", (size_t)B * LIP_UNET_AUDIO_FLOATS,
                           B, in->n_audio);
    if (!sv->default_model[0])
        return lip_err_set(err, LIP_EPRECOND, "this service uses the default model and none is "
                           "configured (set default_model)");
    bool loaded_now;
    double load_ms;
    int rc = svc_acquire(sv, "", a, &loaded_now, &load_ms, id, err);
    if (rc) return rc;
    if (in->start < 0)
        return lip_err_set(err, LIP_EINVAL, "start_frame_idx: expected >= 0, got %d", in->start);
    if ((rc = nonfinite("visual_frames", in->visual, in->n_visual, err)) ||
        (rc = nonfinite("audio_features", in->audio, in->n_audio, err)))
        return rc;
    lip_request r = {0};
    r.batch = B;
    r.start_frame = in->start;
    r.order = LIP_ORDER_LOOP;
    r.audio = in->audio;
    r.n_audio = in->n_audio == LIP_UNET_AUDIO_FLOATS ? 1 : B;
    r.visual = in->n_visual ? in->visual : NULL;
    r.format = format;
    r.cancel = lip_rpc_call_cancel_flag(call);
    r.deadline_ms = lip_rpc_call_deadline_ms(call);
    rc = lip_pipeline_run(sv->pipe, *a, &r, res, err);
    if (rc) {
        if (rc == LIP_ECANCELLED && lip_rpc_call_deadline_passed(call)) err->code = LIP_ETIMEOUT;
        return err->code;
    }
    if (res->count != B)
        return lip_err_set(err, LIP_EINTERNAL, "pipeline returned %d frames for batch %d",
                           res->count, B);
    svc_record(sv, id, res->t.inference_ms, B);
    svc_observe(&res->t, B);
    return 0;
}

static int composite(void *ud, lip_rpc_call *call, const uint8_t *req, size_t len,
                     lip_rpc_buf *resp, lip_err *err)
{
    lip_service *sv = ud;
    const ProtobufCMessageDescriptor *rd = &lipsync__composite_batch_response__descriptor;
    Lipsync__CompositeBatchRequest *q = (Lipsync__CompositeBatchRequest *)svc_unpack(
        &lipsync__composite_batch_request__descriptor, req, len, err);
    if (!q) return svc_fail(rd, err, resp);
    batch_in in = {q->batch_size, q->start_frame_idx, q->visual_frames, q->n_visual_frames,
                   q->audio_features, q->n_audio_features};
    lip_result res = {0};
    lip_avatar *a = NULL;
    char id[72] = "";
    int rc = run_batch(sv, call, &in, LIP_OUT_PNG, &res, &a, id, err);
    if (!rc) {
        ProtobufCBinaryData frames[LS_MAX_BATCH];
        for (int i = 0; i < res.count; i++)
            frames[i] = (ProtobufCBinaryData){res.frames[i].len, res.frames[i].data};
        Lipsync__CompositeBatchResponse o = LIPSYNC__COMPOSITE_BATCH_RESPONSE__INIT;
        o.n_composited_frames = (size_t)res.count;
        o.composited_frames = frames;
        o.inference_time_ms = res.t.inference_ms;
        o.composite_time_ms = res.t.composite_ms + res.t.encode_ms;
        o.success = true;
        o.total_time_ms = lip_time_ms() - lip_rpc_call_start_ms(call);
        rc = lip_rpc_pack(&o.base, resp, err);
    }
    lip_result_free(&res);
    svc_release(sv, a);
    protobuf_c_message_free_unpacked(&q->base, NULL);
    return rc ? svc_fail(rd, err, resp) : 0;
}

static int raw(void *ud, lip_rpc_call *call, const uint8_t *req, size_t len, lip_rpc_buf *resp,
               lip_err *err)
{
    lip_service *sv = ud;
    const ProtobufCMessageDescriptor *rd = &lipsync__batch_response__descriptor;
    Lipsync__BatchRequest *q =
        (Lipsync__BatchRequest *)svc_unpack(&lipsync__batch_request__descriptor, req, len, err);
    if (!q) return svc_fail(rd, err, resp);
    batch_in in = {q->batch_size, q->start_frame_idx, q->visual_frames, q->n_visual_frames,
                   q->audio_features, q->n_audio_features};
    lip_result res = {0};
    lip_avatar *a = NULL;
    char id[72] = "";
    float *out = NULL;
    int rc = run_batch(sv, call, &in, LIP_OUT_RAW, &res, &a, id, err);
    if (!rc) {
        /* One contiguous [B][3][320][320] array for the packed repeated field. */
        size_t per = (size_t)LIP_UNET_OUT_FLOATS;
        out = lip_malloc((size_t)res.count * per * sizeof(float));
        if (!out) rc = lip_err_set(err, LIP_ENOMEM, "out of memory for the output tensor");
        for (int i = 0; !rc && i < res.count; i++) {
            if (res.frames[i].len != per * sizeof(float)) {
                rc = lip_err_set(err, LIP_EINTERNAL, "raw output %d has %zu bytes, expected %zu",
                                 i, res.frames[i].len, per * sizeof(float));
                break;
            }
            memcpy(out + (size_t)i * per, res.frames[i].data, per * sizeof(float));
        }
    }
    if (!rc) {
        Lipsync__BatchResponse o = LIPSYNC__BATCH_RESPONSE__INIT;
        o.n_output_frames = (size_t)res.count * LIP_UNET_OUT_FLOATS;
        o.output_frames = out;
        o.inference_time_ms = res.t.inference_ms;
        o.success = true;
        rc = lip_rpc_pack(&o.base, resp, err);
    }
    lip_free(out);
    lip_result_free(&res);
    svc_release(sv, a);
    protobuf_c_message_free_unpacked(&q->base, NULL);
    return rc ? svc_fail(rd, err, resp) : 0;
}

static int composite_health(void *ud, lip_rpc_call *call, const uint8_t *req, size_t len,
                            lip_rpc_buf *resp, lip_err *err)
{
    lip_service *sv = ud;
    const ProtobufCMessageDescriptor *rd = &lipsync__composite_health_response__descriptor;
    ProtobufCMessage *q = svc_unpack(&lipsync__composite_health_request__descriptor, req, len, err);
    if (!q) return svc_fail(rd, err, resp);
    protobuf_c_message_free_unpacked(q, NULL);
    Lipsync__CompositeHealthResponse o = LIPSYNC__COMPOSITE_HEALTH_RESPONSE__INIT;
    o.healthy = svc_healthy(sv, COMPOSITE_NAME);
    char msg[160];
    if (!sv->default_model[0]) snprintf(msg, sizeof msg, "no default model configured");
    else snprintf(msg, sizeof msg, "%s, default model '%s'", o.healthy ? "SERVING" : "NOT_SERVING",
                  sv->default_model);
    o.message = msg;
    int rc = lip_rpc_pack(&o.base, resp, err);
    return rc ? svc_fail(rd, err, resp) : 0;
}

static int raw_health(void *ud, lip_rpc_call *call, const uint8_t *req, size_t len,
                      lip_rpc_buf *resp, lip_err *err)
{
    lip_service *sv = ud;
    const ProtobufCMessageDescriptor *rd = &lipsync__health_response__descriptor;
    ProtobufCMessage *q = svc_unpack(&lipsync__health_request__descriptor, req, len, err);
    if (!q) return svc_fail(rd, err, resp);
    protobuf_c_message_free_unpacked(q, NULL);
    Lipsync__HealthResponse o = LIPSYNC__HEALTH_RESPONSE__INIT;
    o.healthy = svc_healthy(sv, RAW_NAME);
    o.cuda_available = lip_engine_has_provider("cuda");
    char path[512] = "";
    lip_model_stats m;
    if (sv->default_model[0] && !svc_stats(sv, sv->default_model, &m) && m.loaded) {
        /* Reduced to the file name: the server's directory layout is not the client's business. */
        const char *slash = strrchr(m.unet_path, '/');
        lip_strlcpy(path, slash ? slash + 1 : m.unet_path, sizeof path);
    }
    o.model_path = path;
    int rc = lip_rpc_pack(&o.base, resp, err);
    return rc ? svc_fail(rd, err, resp) : 0;
}

static const lip_rpc_method composite_methods[] = {
    {"InferBatchComposite", LIP_RPC_UNARY, true, composite},
    {"Health", LIP_RPC_UNARY, false, composite_health},
};

static const lip_rpc_method raw_methods[] = {
    {"InferBatch", LIP_RPC_UNARY, true, raw},
    {"Health", LIP_RPC_UNARY, false, raw_health},
};

int svc_register_lipsync_composite(lip_service *sv, lip_rpc_server *srv, lip_err *err)
{
    return lip_rpc_server_add_service(srv, COMPOSITE_NAME, composite_methods,
                                      (int)LIP_ARRAY_LEN(composite_methods), sv, err);
}

int svc_register_lipsync(lip_service *sv, lip_rpc_server *srv, lip_err *err)
{
    return lip_rpc_server_add_service(srv, RAW_NAME, raw_methods, (int)LIP_ARRAY_LEN(raw_methods),
                                      sv, err);
}
