/* SPDX-License-Identifier: MIT */
/* service/optimized.c: optimized_lipsyncsrv.OptimizedLipSyncService (API.md §7). Requests name
 * avatar frames directly (no wrapping: frame_id >= frame_count is OUT_OF_RANGE); the audio of
 * frame k is rows k-8..k+7 of the avatar's precomputed track (aud_ave.npy), zero outside it, or
 * the PCM chunks of GenerateBatchWithAudio. Outputs are full composited JPEG frames. The window
 * tensors for arbitrary id lists are built here, so ids may repeat and come in any order.
 * StreamInference answers each request in order and reports per-message failures inside the
 * response ("<STATUS>: text") without ending the stream (§1.6). */
#include "image/image.h"
#include "service/svc_int.h"

#include "optimized_lipsyncsrv.pb-c.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define OPT_NAME "optimized_lipsyncsrv.OptimizedLipSyncService"
#define OPT_HARD_MAX 64
#define CHUNK_BYTES 2560u

typedef OptimizedLipsyncsrv__OptimizedInferenceResponse frame_resp;

static int max_batch(const lip_service *sv)
{
    int m = sv->o.optimized_max_batch;
    return m > 0 && m <= OPT_HARD_MAX ? m : OPT_HARD_MAX;
}

static int check_frame_id(int id, int n, const char *field, lip_err *err)
{
    if (id < 0) return lip_err_set(err, LIP_EINVAL, "%s: expected >= 0, got %d", field, id);
    if (id >= n)
        return lip_err_set(err, LIP_ERANGE, "%s: expected 0..%d (the avatar has %d frames), got "
                           "%d", field, n - 1, n, id);
    return 0;
}

/* UNet audio windows for frames ids[] from a [rows][512] track: rows k-8..k+7, zero outside. */
static void windows_from_track(const float *feats, int rows, const int *ids, int n, float *out)
{
    for (int i = 0; i < n; i++) {
        float *w = out + (size_t)i * LIP_UNET_AUDIO_FLOATS;
        for (int j = 0; j < 16; j++) {
            int r = ids[i] - 8 + j;
            if (r >= 0 && r < rows) memcpy(w + j * 512, feats + (size_t)r * 512, 512 * sizeof(float));
            else memset(w + j * 512, 0, 512 * sizeof(float));
        }
    }
}

/* Result of one batch: the pipeline's frames plus per-frame response messages. */
typedef struct batch_out {
    lip_result res;
    frame_resp *fr;
    frame_resp **ptrs;
    int32_t *bounds;
    char (*shape)[32];
    int n;
} batch_out;

static void batch_out_free(batch_out *b)
{
    lip_result_free(&b->res);
    lip_free(b->fr);
    lip_free(b->ptrs);
    lip_free(b->bounds);
    lip_free(b->shape);
    memset(b, 0, sizeof *b);
}

/* Runs frames ids[0..n) of avatar a, with audio either from the track (pcm NULL) or from PCM
 * aligned to stream frame ids[0] (GenerateBatchWithAudio, consecutive ids). */
static int run_frames(lip_service *sv, lip_rpc_call *call, lip_avatar *a, const char *id,
                      const int *ids, int n, const float *pcm, size_t n_pcm, batch_out *b,
                      lip_err *err)
{
    memset(b, 0, sizeof *b);
    float *audio = NULL;
    lip_request r = {0};
    r.batch = n;
    r.frame_ids = ids;
    r.start_frame = ids[0];
    r.format = LIP_OUT_JPEG;
    r.cancel = call ? lip_rpc_call_cancel_flag(call) : NULL;
    r.deadline_ms = call ? lip_rpc_call_deadline_ms(call) : 0;
    if (pcm) {
        r.pcm = pcm;
        r.n_pcm = n_pcm;
        r.pcm_mode = LIP_PCM_REQUEST;
    } else {
        int rows = 0;
        const float *feats = lip_avatar_audio_features(a, &rows);
        if (!feats)
            return lip_err_set(err, LIP_EPRECOND, "model '%s' has no audio track (aud_ave.npy), "
                               "which frame-id requests need", id);
        audio = lip_aligned_alloc((size_t)n * LIP_UNET_AUDIO_FLOATS * sizeof(float));
        if (!audio) return lip_err_set(err, LIP_ENOMEM, "out of memory for audio windows");
        windows_from_track(feats, rows, ids, n, audio);
        r.audio = audio;
        r.n_audio = n;
    }
    int rc = lip_pipeline_run(sv->pipe, a, &r, &b->res, err);
    lip_free_aligned(audio);
    if (rc) {
        if (rc == LIP_ECANCELLED && call && lip_rpc_call_deadline_passed(call))
            err->code = LIP_ETIMEOUT;
        return err->code ? err->code : rc;
    }
    if (b->res.count != n)
        return lip_err_set(err, LIP_EINTERNAL, "pipeline returned %d frames for %d", b->res.count, n);
    svc_record(sv, id, b->res.t.inference_ms, n);
    svc_observe(&b->res.t, n);
    b->n = n;
    b->fr = lip_calloc((size_t)n, sizeof *b->fr);
    b->ptrs = lip_calloc((size_t)n, sizeof *b->ptrs);
    b->bounds = lip_calloc((size_t)n * 4, sizeof *b->bounds);
    b->shape = lip_calloc((size_t)n, sizeof *b->shape);
    if (!b->fr || !b->ptrs || !b->bounds || !b->shape)
        return lip_err_set(err, LIP_ENOMEM, "out of memory for %d responses", n);
    const lip_timings *t = &b->res.t;
    for (int i = 0; i < n; i++) {
        frame_resp fr = OPTIMIZED_LIPSYNCSRV__OPTIMIZED_INFERENCE_RESPONSE__INIT;
        const lip_frame *f = &b->res.frames[i];
        fr.success = true;
        fr.frame_id = ids[i];
        fr.prediction_data = (ProtobufCBinaryData){f->len, f->data};
        snprintf(b->shape[i], sizeof b->shape[i], "(%d, %d, 3)", b->res.height, b->res.width);
        fr.prediction_shape = b->shape[i];
        int32_t *bd = b->bounds + 4 * i;
        bd[0] = f->rect[0];
        bd[1] = f->rect[1];
        bd[2] = f->rect[2] - f->rect[0];
        bd[3] = f->rect[3] - f->rect[1];
        fr.n_bounds = 4;
        fr.bounds = bd;
        /* Per-item stage times are the batch stage times divided by the frame count (§7.3). */
        fr.processing_time_ms = (float)(t->total_ms / n);
        fr.prepare_time_ms = (float)((t->prepare_ms + t->audio_ms) / n);
        fr.inference_time_ms = (float)(t->inference_ms / n);
        fr.composite_time_ms = (float)((t->composite_ms + t->encode_ms) / n);
        b->fr[i] = fr;
        b->ptrs[i] = &b->fr[i];
    }
    return 0;
}

static int acquire(lip_service *sv, const char *name, lip_avatar **a, char *id, lip_err *err)
{
    bool loaded_now;
    double ms;
    return svc_acquire(sv, name, a, &loaded_now, &ms, id, err);
}

/* One frame id, for GenerateInference and StreamInference. */
static int one_frame(lip_service *sv, lip_rpc_call *call, const uint8_t *req, size_t len,
                     lip_rpc_buf *resp, int *frame_id, lip_err *err)
{
    OptimizedLipsyncsrv__OptimizedInferenceRequest *q =
        (OptimizedLipsyncsrv__OptimizedInferenceRequest *)svc_unpack(
            &optimized_lipsyncsrv__optimized_inference_request__descriptor, req, len, err);
    if (!q) return err->code;
    *frame_id = q->frame_id;
    lip_avatar *a = NULL;
    char id[72];
    batch_out b = {0};
    int rc = acquire(sv, q->model_name, &a, id, err);
    if (!rc) rc = check_frame_id(q->frame_id, lip_avatar_frame_count(a), "frame_id", err);
    int fid = q->frame_id;
    if (!rc) rc = run_frames(sv, call, a, id, &fid, 1, NULL, 0, &b, err);
    if (!rc) rc = lip_rpc_pack(&b.fr[0].base, resp, err);
    batch_out_free(&b);
    svc_release(sv, a);
    protobuf_c_message_free_unpacked(&q->base, NULL);
    return rc;
}

static int generate(void *ud, lip_rpc_call *call, const uint8_t *req, size_t len,
                    lip_rpc_buf *resp, lip_err *err)
{
    int fid = 0;
    int rc = one_frame(ud, call, req, len, resp, &fid, err);
    return rc ? svc_fail(&optimized_lipsyncsrv__optimized_inference_response__descriptor, err,
                         resp)
              : 0;
}

/* StreamInference: failures caused by the message are answered in the response and the stream
 * goes on; anything else (out of memory, engine failure, cancel, deadline) ends it. */
static int stream(void *ud, lip_rpc_call *call, const uint8_t *req, size_t len, lip_rpc_buf *resp,
                  lip_err *err)
{
    int fid = 0;
    int rc = one_frame(ud, call, req, len, resp, &fid, err);
    if (!rc) return 0;
    grpc_status_code st = lip_rpc_status_of(rc);
    if (st != GRPC_STATUS_INVALID_ARGUMENT && st != GRPC_STATUS_OUT_OF_RANGE &&
        st != GRPC_STATUS_NOT_FOUND && st != GRPC_STATUS_FAILED_PRECONDITION)
        return rc;
    char msg[LIP_ERRMSG_MAX + 32];
    snprintf(msg, sizeof msg, "%s: %s", lip_rpc_status_name(st), err->msg);
    frame_resp fr = OPTIMIZED_LIPSYNCSRV__OPTIMIZED_INFERENCE_RESPONSE__INIT;
    fr.success = false;
    fr.frame_id = fid;
    fr.error = msg;
    lip_err_clear(err);
    return lip_rpc_pack(&fr.base, resp, err);
}

static int pack_batch(lip_rpc_call *call, batch_out *b, lip_rpc_buf *resp, lip_err *err)
{
    OptimizedLipsyncsrv__BatchInferenceResponse o =
        OPTIMIZED_LIPSYNCSRV__BATCH_INFERENCE_RESPONSE__INIT;
    o.n_responses = (size_t)b->n;
    o.responses = b->ptrs;
    double total = lip_time_ms() - lip_rpc_call_start_ms(call);
    o.total_processing_time_ms = (int32_t)total;
    o.avg_frame_time_ms = total / b->n;
    return lip_rpc_pack(&o.base, resp, err);
}

static int batch(void *ud, lip_rpc_call *call, const uint8_t *req, size_t len, lip_rpc_buf *resp,
                 lip_err *err)
{
    lip_service *sv = ud;
    const ProtobufCMessageDescriptor *rd = &optimized_lipsyncsrv__batch_inference_response__descriptor;
    OptimizedLipsyncsrv__BatchInferenceRequest *q =
        (OptimizedLipsyncsrv__BatchInferenceRequest *)svc_unpack(
            &optimized_lipsyncsrv__batch_inference_request__descriptor, req, len, err);
    if (!q) return svc_fail(rd, err, resp);
    lip_avatar *a = NULL;
    char id[72];
    batch_out b = {0};
    int rc = 0, n = (int)q->n_frame_ids, mx = max_batch(sv);
    if (q->n_frame_ids < 1 || q->n_frame_ids > (size_t)mx)
        rc = lip_err_set(err, LIP_EINVAL, "frame_ids: expected 1-%d entries, got %zu", mx,
                         q->n_frame_ids);
    if (!rc) rc = acquire(sv, q->model_name, &a, id, err);
    for (int i = 0; !rc && i < n; i++) {
        char field[32];
        snprintf(field, sizeof field, "frame_ids[%d]", i);
        rc = check_frame_id(q->frame_ids[i], lip_avatar_frame_count(a), field, err);
    }
    if (!rc) rc = run_frames(sv, call, a, id, q->frame_ids, n, NULL, 0, &b, err);
    if (!rc) rc = pack_batch(call, &b, resp, err);
    batch_out_free(&b);
    svc_release(sv, a);
    protobuf_c_message_free_unpacked(&q->base, NULL);
    return rc ? svc_fail(rd, err, resp) : 0;
}

static int batch_audio(void *ud, lip_rpc_call *call, const uint8_t *req, size_t len,
                       lip_rpc_buf *resp, lip_err *err)
{
    lip_service *sv = ud;
    const ProtobufCMessageDescriptor *rd = &optimized_lipsyncsrv__batch_inference_response__descriptor;
    OptimizedLipsyncsrv__BatchInferenceWithAudioRequest *q =
        (OptimizedLipsyncsrv__BatchInferenceWithAudioRequest *)svc_unpack(
            &optimized_lipsyncsrv__batch_inference_with_audio_request__descriptor, req, len, err);
    if (!q) return svc_fail(rd, err, resp);
    lip_avatar *a = NULL;
    char id[72];
    batch_out b = {0};
    float *pcm = NULL;
    int *ids = NULL;
    int rc = 0, mx = max_batch(sv), s = q->start_frame_id, n = q->frame_count;
    size_t need = (size_t)(n > 0 ? n : 0) + 15, used = 0, first = 0;
    /* 1. count */
    if (n < 1 || n > mx)
        rc = lip_err_set(err, LIP_EINVAL, "frame_count: expected 1-%d, got %d", mx, n);
    else if (s < 0)
        rc = lip_err_set(err, LIP_EINVAL, "start_frame_id: expected >= 0, got %d", s);
    /* 2. chunk sizes: chunk j is stream frame s-8+j; frames < 0 are ignored, a trailing run may
     * be empty, chunks past frame_count+15 are ignored. */
    else if (q->n_audio_chunks < need)
        rc = lip_err_set(err, LIP_EINVAL, "audio_chunks: expected at least %zu entries "
                         "(frame_count %d + 15), got %zu", need, n, q->n_audio_chunks);
    if (!rc) {
        first = s < 8 ? (size_t)(8 - s) : 0;
        bool ended = false;
        for (size_t j = first; j < need && !rc; j++) {
            size_t cl = q->audio_chunks[j].len;
            if (cl == 0) {
                ended = true;
                continue;
            }
            if (ended || cl != CHUNK_BYTES)
                rc = lip_err_set(err, LIP_EINVAL, "audio_chunks[%zu]: expected %u bytes (640 "
                                 "float32 samples)%s, got %zu", j, CHUNK_BYTES,
                                 ended ? " after an empty chunk: only a trailing run may be empty"
                                       : "", cl);
            else
                used = j + 1;
        }
    }
    /* 3. model, 4. frame range */
    if (!rc) rc = acquire(sv, q->model_name, &a, id, err);
    if (!rc && (long)s + n > lip_avatar_frame_count(a))
        rc = lip_err_set(err, LIP_ERANGE, "start_frame_id %d + frame_count %d: expected at most "
                         "%d (the avatar's frame count)", s, n, lip_avatar_frame_count(a));
    /* 5. values, while concatenating the chunks of frames >= 0 */
    size_t nsamp = used > first ? (used - first) * 640 : 0;
    if (!rc && nsamp) {
        pcm = lip_malloc(nsamp * sizeof(float));
        if (!pcm) rc = lip_err_set(err, LIP_ENOMEM, "out of memory for %zu samples", nsamp);
        for (size_t j = first; !rc && j < used; j++)
            memcpy(pcm + (j - first) * 640, q->audio_chunks[j].data, CHUNK_BYTES);
        if (!rc && !lip_all_finite(pcm, nsamp)) {
            size_t i = 0;
            while (isfinite(pcm[i])) i++;
            rc = lip_err_set(err, LIP_EINVAL, "audio_chunks[%zu]: expected finite samples, got "
                             "%s at sample %zu", first + i / 640, isnan(pcm[i]) ? "NaN" : "Inf",
                             i % 640);
        }
    }
    if (!rc && !nsamp)
        rc = lip_err_set(err, LIP_EINVAL, "audio_chunks: every chunk for frames >= 0 is empty");
    if (!rc && !lip_pipeline_encoder(sv->pipe))
        rc = lip_err_set(err, LIP_EPRECOND, "audio chunks sent but this server has no audio "
                         "encoder");
    if (!rc) {
        ids = lip_malloc((size_t)n * sizeof *ids);
        if (!ids) rc = lip_err_set(err, LIP_ENOMEM, "out of memory");
        for (int i = 0; !rc && i < n; i++) ids[i] = s + i;
    }
    if (!rc) rc = run_frames(sv, call, a, id, ids, n, pcm, nsamp, &b, err);
    if (!rc) rc = pack_batch(call, &b, resp, err);
    batch_out_free(&b);
    lip_free(ids);
    lip_free(pcm);
    svc_release(sv, a);
    protobuf_c_message_free_unpacked(&q->base, NULL);
    return rc ? svc_fail(rd, err, resp) : 0;
}

/* ---- packages and metadata ------------------------------------------------------------------ */

static const char *const videos[] = {"full_body", "face_regions", "masked_regions"};

static const char *device_of(lip_avatar *a)
{
    lip_engine *e = a ? lip_avatar_unet(a) : NULL;
    const char *p = e ? lip_engine_provider(e) : "cpu";
    return strcmp(p, "cpu") == 0 ? "cpu" : "cuda";
}

static int load_package(void *ud, lip_rpc_call *call, const uint8_t *req, size_t len,
                        lip_rpc_buf *resp, lip_err *err)
{
    lip_service *sv = ud;
    const ProtobufCMessageDescriptor *rd = &optimized_lipsyncsrv__load_package_response__descriptor;
    OptimizedLipsyncsrv__LoadPackageRequest *q =
        (OptimizedLipsyncsrv__LoadPackageRequest *)svc_unpack(
            &optimized_lipsyncsrv__load_package_request__descriptor, req, len, err);
    if (!q) return svc_fail(rd, err, resp);
    char name[72] = "", want[1024], real_root[PATH_MAX], real_dir[PATH_MAX];
    int rc = 0;
    size_t nl = strlen(q->package_name);
    if (!lip_valid_id(q->package_name, nl))
        rc = lip_err_set(err, LIP_EINVAL, "package_name: expected 1-64 characters "
                         "[A-Za-z0-9_.-] (not . or ..), got '%.80s'", q->package_name);
    else
        lip_strlcpy(name, q->package_name, sizeof name);
    if (!rc) {
        if (!*q->package_dir) rc = lip_path_join(want, sizeof want, sv->models_root, name, err);
        else if (q->package_dir[0] == '/') rc = lip_strlcpy(want, q->package_dir, sizeof want) >=
                                                        sizeof want
                                                    ? lip_err_set(err, LIP_EINVAL, "package_dir too long")
                                                    : 0;
        else rc = lip_path_join(want, sizeof want, sv->models_root, q->package_dir, err);
    }
    /* Inside the models root, after resolving links and "..": anything else is refused. */
    if (!rc && !realpath(sv->models_root, real_root))
        rc = lip_err_set(err, LIP_EPRECOND, "models root %s is not accessible", sv->models_root);
    if (!rc && !realpath(want, real_dir)) {
        /* Refuse paths outside the root even when they do not exist (no probing). */
        bool outside = strstr(q->package_dir, "..") != NULL || q->package_dir[0] == '/';
        rc = outside ? lip_err_set(err, LIP_EPERM, "package_dir '%s' is outside the models root",
                                   q->package_dir)
                     : lip_err_set(err, LIP_ENOTFOUND, "package directory '%s' does not exist",
                                   *q->package_dir ? q->package_dir : want);
    }
    if (!rc) {
        size_t rl = strlen(real_root);
        if (strncmp(real_dir, real_root, rl) != 0 || (real_dir[rl] != '/' && real_dir[rl] != 0) ||
            real_dir[rl] == 0)
            rc = lip_err_set(err, LIP_EPERM, "package_dir '%s' is outside the models root %s",
                             q->package_dir, sv->models_root);
        else if (!lip_dir_exists(real_dir))
            rc = lip_err_set(err, LIP_ENOTFOUND, "package_dir '%s' is not a directory",
                             q->package_dir);
    }
    protobuf_c_message_free_unpacked(&q->base, NULL);
    /* A name already loaded succeeds and keeps the loaded package. */
    double ms = 0;
    bool was = false;
    if (!rc) {
        lip_model_stats m;
        was = !svc_stats(sv, name, &m) && m.loaded;
        if (!was) rc = svc_add_model_dir(sv, name, real_dir, err);
        if (!rc && !was) rc = svc_load(sv, name, false, &ms, &was, err);
    }
    lip_avatar *a = NULL;
    char id[72];
    if (!rc) rc = acquire(sv, name, &a, id, err);
    if (rc) return svc_fail(rd, err, resp);
    OptimizedLipsyncsrv__LoadPackageResponse o = OPTIMIZED_LIPSYNCSRV__LOAD_PACKAGE_RESPONSE__INIT;
    char msg[160];
    snprintf(msg, sizeof msg, was ? "package '%s' already loaded" : "package '%s' loaded", name);
    o.success = true;
    o.package_name = name;
    o.message = msg;
    o.initialization_time_ms = (int32_t)ms;
    o.frame_count = lip_avatar_frame_count(a);
    o.device = (char *)device_of(a);
    o.n_videos_loaded = LIP_ARRAY_LEN(videos);
    o.videos_loaded = (char **)videos;
    int rows = 0;
    int32_t shape[2];
    if (lip_avatar_audio_features(a, &rows)) {
        shape[0] = rows;
        shape[1] = 512;
        o.n_audio_features_shape = 2;
        o.audio_features_shape = shape;
    }
    o.memory_mapped_audio = false;
    rc = lip_rpc_pack(&o.base, resp, err);
    svc_release(sv, a);
    return rc ? svc_fail(rd, err, resp) : 0;
}

static int get_stats(void *ud, lip_rpc_call *call, const uint8_t *req, size_t len,
                     lip_rpc_buf *resp, lip_err *err)
{
    lip_service *sv = ud;
    const ProtobufCMessageDescriptor *rd = &optimized_lipsyncsrv__stats_response__descriptor;
    OptimizedLipsyncsrv__StatsRequest *q = (OptimizedLipsyncsrv__StatsRequest *)svc_unpack(
        &optimized_lipsyncsrv__stats_request__descriptor, req, len, err);
    if (!q) return svc_fail(rd, err, resp);
    char id[72];
    int rc = svc_resolve(sv, q->model_name, id, err);
    protobuf_c_message_free_unpacked(&q->base, NULL);
    if (rc) return svc_fail(rd, err, resp);
    static const char *const tags[] = {"chunked_pipeline", "compressed_backgrounds",
                                       "precomputed_audio"};
    OptimizedLipsyncsrv__StatsResponse o = OPTIMIZED_LIPSYNCSRV__STATS_RESPONSE__INIT;
    lip_model_stats m;
    bool known = !svc_stats(sv, id, &m);
    o.model_name = id;
    o.total_requests = known ? (int32_t)LIP_MIN(m.frames_since_load, INT32_MAX) : 0;
    o.avg_inference_time_ms = known && m.frames ? m.total_inference_ms / (double)m.frames : 0;
    o.min_inference_time_ms = known ? m.min_frame_ms : 0;
    o.max_inference_time_ms = known ? m.max_frame_ms : 0;
    o.frame_count = known ? m.frame_count : 0;
    o.device = (char *)(known && m.device >= 0 ? "cuda" : "cpu");
    o.n_optimizations_active = LIP_ARRAY_LEN(tags);
    o.optimizations_active = (char **)tags;
    rc = lip_rpc_pack(&o.base, resp, err);
    return rc ? svc_fail(rd, err, resp) : 0;
}

static int list_models(void *ud, lip_rpc_call *call, const uint8_t *req, size_t len,
                       lip_rpc_buf *resp, lip_err *err)
{
    lip_service *sv = ud;
    const ProtobufCMessageDescriptor *rd = &optimized_lipsyncsrv__list_models_response__descriptor;
    ProtobufCMessage *q = svc_unpack(&optimized_lipsyncsrv__list_models_request__descriptor, req,
                                     len, err);
    if (!q) return svc_fail(rd, err, resp);
    protobuf_c_message_free_unpacked(q, NULL);
    lip_model_stats *ms = NULL;
    int nm = 0;
    int rc = svc_list(sv, &ms, &nm);
    char **names = rc ? NULL : lip_calloc((size_t)nm + 1, sizeof *names);
    int n = 0;
    for (int i = 0; names && i < nm; i++)
        if (ms[i].loaded) names[n++] = ms[i].id; /* svc_list is sorted by id */
    if (names) {
        OptimizedLipsyncsrv__ListModelsResponse o =
            OPTIMIZED_LIPSYNCSRV__LIST_MODELS_RESPONSE__INIT;
        o.n_loaded_models = (size_t)n;
        o.loaded_models = names;
        o.count = n;
        rc = lip_rpc_pack(&o.base, resp, err);
    } else {
        rc = lip_err_set(err, LIP_ENOMEM, "out of memory listing models");
    }
    lip_free(names);
    lip_free(ms);
    return rc ? svc_fail(rd, err, resp) : 0;
}

static int health(void *ud, lip_rpc_call *call, const uint8_t *req, size_t len, lip_rpc_buf *resp,
                  lip_err *err)
{
    lip_service *sv = ud;
    const ProtobufCMessageDescriptor *rd = &optimized_lipsyncsrv__health_response__descriptor;
    ProtobufCMessage *q = svc_unpack(&optimized_lipsyncsrv__health_request__descriptor, req, len,
                                     err);
    if (!q) return svc_fail(rd, err, resp);
    protobuf_c_message_free_unpacked(q, NULL);
    OptimizedLipsyncsrv__HealthResponse o = OPTIMIZED_LIPSYNCSRV__HEALTH_RESPONSE__INIT;
    o.healthy = svc_healthy(sv, OPT_NAME);
    o.status = o.healthy ? "SERVING" : "NOT_SERVING";
    o.loaded_models = lip_service_loaded_count(sv);
    o.uptime_seconds = (lip_time_unix_ms() - sv->start_unix_ms) / 1000;
    int rc = lip_rpc_pack(&o.base, resp, err);
    return rc ? svc_fail(rd, err, resp) : 0;
}

/* The face crop or its masked version as fed to the model (320x320), as JPEG. */
static int region_jpeg(lip_service *sv, lip_avatar *a, int fid, bool masked, lip_buf *out,
                       lip_err *err)
{
    int w = lip_avatar_width(a), h = lip_avatar_height(a), rc;
    lip_image frame = {0}, crop = {0};
    float *six = lip_aligned_alloc((size_t)LIP_UNET_VISUAL_FLOATS * sizeof(float));
    uint8_t *c328 = lip_malloc(LIP_CROP_BYTES);
    lip_resizer *rz = lip_resizer_new();
    if (!six || !c328 || !rz) {
        rc = lip_err_set(err, LIP_ENOMEM, "out of memory building a region image");
        goto out;
    }
    if ((rc = lip_image_alloc(&frame, w, h, err)) ||
        (rc = lip_avatar_frame_bgr(a, fid, frame.data, frame.stride, err)) ||
        (rc = lip_image_preprocess(rz, &frame, lip_avatar_rect(a, fid), six, c328, err)) ||
        (rc = lip_image_alloc(&crop, 320, 320, err)))
        goto out;
    const float *base = six + (masked ? 3 : 0) * 320 * 320;
    for (int y = 0; y < 320; y++)
        for (int x = 0; x < 320; x++)
            for (int c = 0; c < 3; c++) {
                float v = base[(size_t)c * 320 * 320 + (size_t)y * 320 + x] * 255.0f + 0.5f;
                crop.data[(size_t)y * crop.stride + 3 * x + c] =
                    (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
            }
    rc = lip_jpeg_encode(&crop, sv->o.jpeg_quality > 0 ? sv->o.jpeg_quality : 75, out, err);
out:
    lip_image_free(&frame);
    lip_image_free(&crop);
    lip_free_aligned(six);
    lip_free(c328);
    lip_resizer_free(rz);
    return rc;
}

static int video_frame(void *ud, lip_rpc_call *call, const uint8_t *req, size_t len,
                       lip_rpc_buf *resp, lip_err *err)
{
    lip_service *sv = ud;
    const ProtobufCMessageDescriptor *rd = &optimized_lipsyncsrv__get_video_frame_response__descriptor;
    OptimizedLipsyncsrv__GetVideoFrameRequest *q =
        (OptimizedLipsyncsrv__GetVideoFrameRequest *)svc_unpack(
            &optimized_lipsyncsrv__get_video_frame_request__descriptor, req, len, err);
    if (!q) return svc_fail(rd, err, resp);
    const char *vt = *q->video_type ? q->video_type : "full_body";
    int kind = -1;
    for (int i = 0; i < (int)LIP_ARRAY_LEN(videos); i++)
        if (strcmp(vt, videos[i]) == 0) kind = i;
    lip_avatar *a = NULL;
    char id[72];
    lip_buf jb = {0};
    lip_image img = {0};
    int rc = acquire(sv, q->model_name, &a, id, err);
    int fid = q->frame_id;
    if (!rc) rc = check_frame_id(fid, lip_avatar_frame_count(a), "frame_id", err);
    if (!rc && kind < 0)
        rc = lip_err_set(err, LIP_EINVAL, "video_type: expected one of full_body, face_regions, "
                         "masked_regions (or empty), got '%.64s'", q->video_type);
    OptimizedLipsyncsrv__GetVideoFrameResponse o =
        OPTIMIZED_LIPSYNCSRV__GET_VIDEO_FRAME_RESPONSE__INIT;
    if (!rc && kind == 0) {
        size_t n = 0;
        const uint8_t *d = lip_avatar_frame_data(a, fid, &n);
        if (n >= 2 && d[0] == 0xFF && d[1] == 0xD8) {
            o.frame_data = (ProtobufCBinaryData){n, (uint8_t *)d}; /* stored as JPEG already */
        } else { /* PNG frames are re-encoded */
            rc = lip_image_alloc(&img, lip_avatar_width(a), lip_avatar_height(a), err);
            if (!rc) rc = lip_avatar_frame_bgr(a, fid, img.data, img.stride, err);
            if (!rc) rc = lip_jpeg_encode(&img, sv->o.jpeg_quality > 0 ? sv->o.jpeg_quality : 75,
                                          &jb, err);
            o.frame_data = (ProtobufCBinaryData){jb.len, jb.data};
        }
    } else if (!rc) {
        rc = region_jpeg(sv, a, fid, kind == 2, &jb, err);
        o.frame_data = (ProtobufCBinaryData){jb.len, jb.data};
    }
    if (!rc) {
        o.success = true;
        o.frame_id = fid;
        o.video_type = (char *)videos[kind];
        rc = lip_rpc_pack(&o.base, resp, err);
    }
    lip_buf_free(&jb);
    lip_image_free(&img);
    svc_release(sv, a);
    protobuf_c_message_free_unpacked(&q->base, NULL);
    return rc ? svc_fail(rd, err, resp) : 0;
}

static int metadata(void *ud, lip_rpc_call *call, const uint8_t *req, size_t len,
                    lip_rpc_buf *resp, lip_err *err)
{
    lip_service *sv = ud;
    const ProtobufCMessageDescriptor *rd =
        &optimized_lipsyncsrv__get_model_metadata_response__descriptor;
    OptimizedLipsyncsrv__GetModelMetadataRequest *q =
        (OptimizedLipsyncsrv__GetModelMetadataRequest *)svc_unpack(
            &optimized_lipsyncsrv__get_model_metadata_request__descriptor, req, len, err);
    if (!q) return svc_fail(rd, err, resp);
    lip_avatar *a = NULL;
    char id[72];
    int rc = acquire(sv, q->model_name, &a, id, err);
    protobuf_c_message_free_unpacked(&q->base, NULL);
    if (rc) return svc_fail(rd, err, resp);
    OptimizedLipsyncsrv__GetModelMetadataResponse o =
        OPTIMIZED_LIPSYNCSRV__GET_MODEL_METADATA_RESPONSE__INIT;
    o.success = true;
    o.model_name = id;
    o.frame_count = lip_avatar_frame_count(a);
    o.n_available_videos = LIP_ARRAY_LEN(videos);
    o.available_videos = (char **)videos;
    int rows;
    o.audio_path = lip_avatar_audio_features(a, &rows) ? "aud_ave.npy" : "";
    float bounds[4];
    const int *r = lip_avatar_rect(a, 0);
    for (int i = 0; i < 4; i++) bounds[i] = (float)r[i];
    o.n_bounds = 4;
    o.bounds = bounds;
    rc = lip_rpc_pack(&o.base, resp, err);
    svc_release(sv, a);
    return rc ? svc_fail(rd, err, resp) : 0;
}

static const lip_rpc_method methods[] = {
    {"GenerateInference", LIP_RPC_UNARY, true, generate},
    {"GenerateBatchInference", LIP_RPC_UNARY, true, batch},
    {"GenerateBatchWithAudio", LIP_RPC_UNARY, true, batch_audio},
    {"StreamInference", LIP_RPC_BIDI, true, stream},
    {"LoadPackage", LIP_RPC_UNARY, true, load_package},
    {"GetStats", LIP_RPC_UNARY, false, get_stats},
    {"ListModels", LIP_RPC_UNARY, false, list_models},
    {"HealthCheck", LIP_RPC_UNARY, false, health},
    {"GetVideoFrame", LIP_RPC_UNARY, true, video_frame},
    {"GetModelMetadata", LIP_RPC_UNARY, true, metadata}, /* may auto-load the model */
};

int svc_register_optimized(lip_service *sv, lip_rpc_server *srv, lip_err *err)
{
    return lip_rpc_server_add_service(srv, OPT_NAME, methods, (int)LIP_ARRAY_LEN(methods), sv, err);
}
