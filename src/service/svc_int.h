/* SPDX-License-Identifier: MIT */
/* service/svc_int.h: what the per-API files of the service module share: the lip_service
 * struct, the model registry (configured models, loaded avatars, per-model stats), request
 * helpers (unpacking, float views of bytes fields, the §1.6 error response) and the registration
 * functions of each API. Internal to src/service/. */
#ifndef LIP_SVC_INT_H
#define LIP_SVC_INT_H

#include "avatar/avatar.h"
#include "pipeline/pipeline.h"
#include "registry/registry.h"
#include "service/remote.h"
#include "service/service.h"

#include <pthread.h>

#define SVC_MAX_REGISTERED 16



struct lip_service {
    lip_service_opts o;
    char *models_root, *default_model, *encoder_path, *version;
    lip_pipeline *pipe;
    lip_registry *reg;       /* the avatars: discovery, loading, eviction, stats */
    svc_remote *remote;      /* remote inference backends; NULL = in-process */
    pthread_t ticker;        /* idle unloads (only with an idle timeout) */
    bool ticker_on, ticker_stop;
    pthread_mutex_t tmu;
    pthread_cond_t tcv;
    int64_t start_unix_ms;
    lip_rpc_server *srv;     /* the server the services were registered on (health lookups) */
    char registered[SVC_MAX_REGISTERED][64];
    int nregistered;
};

/* ---- registry ------------------------------------------------------------------------------ */
/* Looks up the model a request names (empty = default model) and returns a reference to its
 * avatar in *a, loading it when auto-load allows. *loaded_now / *load_ms tell whether this call
 * loaded it. The id actually used goes to id_out (72 bytes). Errors per API.md §1.6:
 * INVALID_ARGUMENT (empty with no default, malformed id), NOT_FOUND (unknown), FAILED_PRECONDITION
 * (not loaded with auto-load off; unusable files). Thread-safe. */
int svc_acquire(lip_service *sv, const char *name, lip_avatar **a, bool *loaded_now,
                double *load_ms, char *id_out, lip_err *err);
/* Resolves a request's model name to a configured id without loading (same errors, minus the
 * load ones). */
int svc_resolve(lip_service *sv, const char *name, char *id_out, lip_err *err);
/* Loads id (force: reload even if loaded). *was_loaded says it was already loaded (and kept). */
int svc_load(lip_service *sv, const char *id, bool force, double *load_ms, bool *was_loaded,
             lip_err *err);
/* Drops the registry's reference (in-flight requests keep theirs). */
int svc_unload(lip_service *sv, const char *id, lip_err *err);
/* Ends a request that svc_acquire started (drops the reference; the avatar becomes evictable
 * again when no request holds it). NULL is a no-op. */
void svc_release(lip_service *sv, lip_avatar *a);
/* Records one served batch in the model's stats, and its frames and per-stage times in the
 * process metrics (lipsync_frames_total, lipsync_stage_seconds{stage}). t may be NULL. */
void svc_record(lip_service *sv, const char *id, double inference_ms, int frames);
void svc_observe(const lip_timings *t, int frames);
/* Rescans models_root for new avatar directories (cheap; called by listings). */
void svc_rescan(lip_service *sv);
/* Registers a model directory by id and dir (LoadPackage); dir must exist. */
int svc_add_model_dir(lip_service *sv, const char *id, const char *dir, lip_err *err);
/* Every configured model's state and stats, sorted by id (after a rescan): *out is a new array
 * (lip_free), *n its length. LIP_ENOMEM. */
int svc_list(lip_service *sv, lip_model_stats **out, int *n);
/* One model's state; LIP_ENOTFOUND if it is not configured. */
int svc_stats(lip_service *sv, const char *id, lip_model_stats *out);
/* Loaded models now, and the registry's totals. */
int svc_loaded_count(lip_service *sv);
void svc_totals(lip_service *sv, lip_registry_totals *t);

/* ---- request helpers ----------------------------------------------------------------------- */
/* Unpacks a request; INVALID_ARGUMENT naming the message type when it does not parse (malformed
 * bytes or a field with the wrong wire type). Free with protobuf_c_message_free_unpacked. */
ProtobufCMessage *svc_unpack(const ProtobufCMessageDescriptor *d, const uint8_t *req, size_t len,
                             lip_err *err);
/* Packs the API.md §1.6 failure message for response type d (success=false, error=err->msg,
 * everything else default; types without success and error fields get no message) and returns
 * err->code, so handlers can `return svc_fail(...)`. */
int svc_fail(const ProtobufCMessageDescriptor *d, lip_err *err, lip_rpc_buf *resp);
/* UnloadModel of the monolithic, compositing and inference services (their request and response
 * messages are the same on the wire: model_id = 1; success = 1, error = 2): resolves, unloads and
 * answers through the given descriptors, so errors name the service's own message types. */
int svc_unload_rpc(lip_service *sv, const ProtobufCMessageDescriptor *qd,
                   const ProtobufCMessageDescriptor *rd, const uint8_t *req, size_t len,
                   lip_rpc_buf *resp, lip_err *err);
/* Fills the message of one listed model in slot (slot_size zeroed bytes, see svc_list_rpc) from
 * the registry's view m (strings may point into m, which outlives the packing) and returns it:
 * an element of the response's repeated `models` field. */
typedef ProtobufCMessage *(*svc_model_fill_fn)(const lip_model_stats *m, void *slot);
/* ListModels and GetModelStats of the monolithic, compositing and inference services, through
 * their request and response descriptors qd and rd: a string `model_id` in the request, where it
 * has one and it is not empty, limits the listing to that model (resolved as svc_resolve does;
 * 72 characters or more is INVALID_ARGUMENT), else every configured model is listed, sorted by
 * id, one slot of slot_size bytes each filled by fill into rd's repeated `models`. Where rd has
 * them, the registry totals go to max_models, loaded_models, total_memory_bytes (of every
 * configured model, listed or not) and max_memory_bytes. Errors answer through svc_fail(rd). */
int svc_list_rpc(lip_service *sv, const ProtobufCMessageDescriptor *qd,
                 const ProtobufCMessageDescriptor *rd, svc_model_fill_fn fill, size_t slot_size,
                 const uint8_t *req, size_t len, lip_rpc_buf *resp, lip_err *err);
/* LoadModel of the compositing and inference services (request model_id and force_reload;
 * response success, load_time_ms (0 when it was already loaded) and stats): resolves and loads
 * the model, then answers with the stats message of its listing entry as fill builds it (the
 * `stats` field of the returned ModelInfo). Errors answer through svc_fail(rd). */
int svc_load_rpc(lip_service *sv, const ProtobufCMessageDescriptor *qd,
                 const ProtobufCMessageDescriptor *rd, svc_model_fill_fn fill, size_t slot_size,
                 const uint8_t *req, size_t len, lip_rpc_buf *resp, lip_err *err);
/* A float view of a bytes field: the data itself when 4-byte aligned, else a copy in *tmp
 * (caller frees with lip_free). NULL when empty or out of memory (*oom set). */
const float *svc_floats(const ProtobufCBinaryData *b, float **tmp, bool *oom);
/* Maps avatar/engine load failures to the API.md statuses (unusable files are
 * FAILED_PRECONDITION; a missing directory stays NOT_FOUND). */
int svc_load_code(int code);
/* Pipeline options from the service options. */
lip_pipeline_opts svc_pipeline_opts(const lip_service *sv);

/* InferBatchComposite of the monolithic and compositing services (identical wire messages),
 * batch limit max_batch (<= 32). Handler contract of lip_rpc_handler_fn. */
int svc_infer_composite(lip_service *sv, lip_rpc_call *call, const uint8_t *req, size_t len,
                        int max_batch, lip_rpc_buf *resp, lip_err *err);

/* ---- per-API registration ------------------------------------------------------------------ */
int svc_register_monolithic(lip_service *sv, lip_rpc_server *srv, lip_err *err);
int svc_register_lipsync_composite(lip_service *sv, lip_rpc_server *srv, lip_err *err);
int svc_register_lipsync(lip_service *sv, lip_rpc_server *srv, lip_err *err);
int svc_register_optimized(lip_service *sv, lip_rpc_server *srv, lip_err *err);
int svc_register_compositing(lip_service *sv, lip_rpc_server *srv, lip_err *err);
int svc_register_inference(lip_service *sv, lip_rpc_server *srv, lip_err *err);

/* True when the health status of service name is SERVING on the server it was registered on. */
bool svc_healthy(lip_service *sv, const char *name);
/* SERVING when the default model (if any) is loaded or loadable, and the pipeline exists. */
bool svc_serving(lip_service *sv);

#endif
