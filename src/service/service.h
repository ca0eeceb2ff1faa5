/* SPDX-License-Identifier: MIT */
/* service: the API.md gRPC services on top of the rpc core, the frame pipeline and a registry of
 * avatars ("models" on the wire). One lip_service holds what every service shares: the
 * configured models and their loaded avatars with per-model stats, the pipeline (audio encoder,
 * scratch slots) and the options. Each API lives in its own file (monolithic.c, lipsync.c, ...)
 * and is attached to an rpc server with lip_service_register; one server may carry several.
 *
 * This header deliberately does not include config/ or pipeline/: the server command translates
 * its configuration into lip_service_opts. */
#ifndef LIP_SERVICE_H
#define LIP_SERVICE_H

#include "core/core.h"
#include "engine/engine.h"
#include "rpc/rpc.h"

typedef struct lip_service lip_service;

/* A model listed in the configuration (paths relative to models_root unless absolute; NULL or
 * "" take the avatar's canonical layout under <models_root>/<id>). */
typedef struct lip_service_model {
    const char *id;
    const char *model_path;
    const char *background_dir;
    const char *crop_rects_path;
    bool preload;
} lip_service_model;

typedef struct lip_service_opts {
    const char *models_root;     /* avatars live in <models_root>/<id>; default "avatars" */
    const char *default_model;   /* "" or NULL = none */
    bool auto_load;              /* load configured models on first use (default true) */
    int max_models;              /* loaded at once; 0 = unlimited (eviction otherwise) */
    double max_memory_gb;        /* resident bytes of loaded avatars; 0 = unlimited */
    bool evict_lru;              /* LRU instead of LFU with decay (the default) */
    double idle_timeout_min;     /* unload avatars idle this long; 0 = never */
    int gpu_count;               /* GPUs for UNets (0 = CPU) */
    bool gpu_least_loaded;       /* assignment: least loaded instead of round robin */
    const lip_service_model *models; /* configured models beyond the directories found */
    int n_models;
    const char *encoder_path;    /* audio encoder ONNX; NULL = none (raw audio is refused) */
    lip_engine_opts engine;      /* how UNets (and the encoder) run */
    int jpeg_quality;            /* default 75 */
    int png_level;               /* default 1 */
    bool paste_exact;            /* exact paste instead of the feathered one */
    int feather_px;              /* default 10 */
    bool full_encode;            /* disable incremental (spliced) JPEG/PNG encoding */
    int pipeline_threads;        /* 0 = one per CPU */
    int pipeline_slots;          /* concurrent requests in the pipeline; default 2 */
    int chunk_frames;            /* frames per UNet run; default 8 */
    int optimized_max_batch;     /* optimized service batch limit; default 64 */
    const char *version;         /* reported by health RPCs; default LIP_VERSION */
    /* Remote inference (the compositing role, docs/SERVING.md "Separated deployment"): when
     * inference_url is set, every UNet run goes to the inference servers it names, avatars load
     * without their UNet, and their decode cache holds background_cache_frames frames. */
    const char *inference_url;   /* "" or NULL = in-process inference */
    int inference_timeout_ms;    /* per call, retries included; 0 = 10 s */
    int inference_max_retries;   /* on UNAVAILABLE; default 3 */
    int inference_max_msg_bytes; /* 0 = 100 MiB */
    /* TLS to the inference servers (PEM paths; tls_ca turns TLS on, cert+key = mTLS) and the
     * API key sent as `authorization: Bearer` (the secret itself). NULL or "" = none. Only
     * read while lip_service_new runs. */
    const char *inference_tls_ca, *inference_tls_cert, *inference_tls_key, *inference_api_key;
    int background_cache_frames; /* decoded frames kept per avatar with remote inference */
} lip_service_opts;

lip_service_opts lip_service_opts_default(void);

/* Creates the shared state: scans models_root for avatar directories, builds the pipeline
 * (loads the audio encoder), and loads the default model and models marked preload. NULL + err
 * on failure (a default model that cannot be loaded is a failure). Not thread-safe. */
lip_service *lip_service_new(const lip_service_opts *opts, lip_err *err);
/* Frees everything; avatars still referenced by running calls stay alive until they finish
 * (so free only after the rpc server has shut down). NULL is a no-op. */
void lip_service_free(lip_service *sv);

/* Attaches one API.md service by its full name ("monolithic.MonolithicService",
 * "lipsync.LipSyncComposite", "lipsync.LipSync", "optimized_lipsyncsrv.OptimizedLipSyncService")
 * to srv, before lip_rpc_server_start. LIP_ENOTFOUND for a name this build does not serve. */
int lip_service_register(lip_service *sv, lip_rpc_server *srv, const char *name, lip_err *err);
/* Whether a service name can be registered. */
bool lip_service_known(const char *name);
/* The names lip_service_register accepts, NULL-terminated (static). */
const char *const *lip_service_names(void);

/* Sets the health of every registered service and of "" from the current state (SERVING when
 * the default model, if any, is loaded or loadable). Call after start. Thread-safe. */
void lip_service_update_health(lip_service *sv, lip_rpc_server *srv);

/* Counters of remote inference (inference_url set): InferBatch calls that succeeded and that
 * failed after every retry, frames inferred remotely, and protobuf message bytes sent to and
 * received from the inference servers. Returns LIP_ENOTFOUND (and zeros) when inference runs
 * in-process. Thread-safe. */
typedef struct lip_service_remote_stats {
    int64_t calls, failures, frames, bytes_sent, bytes_received;
} lip_service_remote_stats;
int lip_service_remote_stats_get(lip_service *sv, lip_service_remote_stats *out);

/* Number of models loaded now. Thread-safe. */
int lip_service_loaded_count(lip_service *sv);
/* The avatar registry's totals (hits, misses, loads, evictions, memory). Thread-safe. */
struct lip_registry_totals;
void lip_service_registry_totals(lip_service *sv, struct lip_registry_totals *t);

#endif
