/* SPDX-License-Identifier: MIT */
/* registry: the multi-tenant avatar cache. It knows every avatar (found under models_root or
 * configured explicitly) without loading it, loads one on first use (concurrent first requests
 * wait for a single load), and keeps the number of loaded avatars and their memory under the
 * configured bounds by evicting the least valuable idle one: LFU with decay (Redis-style 8-bit
 * logarithmic counters halved per decay period) or LRU. Avatars idle longer than the idle
 * timeout are unloaded by lip_registry_tick(); pinned (preloaded) avatars never leave.
 *
 * Requests hold avatars through acquire/release: a held avatar is never evicted, and one that
 * is unloaded while held stays valid (reference counted) until its last holder releases it.
 * A request never sees a half-loaded avatar.
 *
 * All functions are thread-safe. */
#ifndef LIP_REGISTRY_H
#define LIP_REGISTRY_H

#include "avatar/avatar.h"
#include "core/core.h"

typedef struct lip_registry lip_registry;

enum lip_evict_policy { LIP_EVICT_LFU = 0, LIP_EVICT_LRU = 1 };
enum lip_assign { LIP_ASSIGN_ROUND_ROBIN = 0, LIP_ASSIGN_LEAST_LOADED = 1 };

typedef struct lip_registry_opts {
    const char *models_root;   /* avatars are <models_root>/<id>/ (copied) */
    int max_models;            /* loaded at once; 0 = unlimited */
    double max_memory_gb;      /* resident bytes of loaded avatars; 0 = unlimited */
    int policy;                /* enum lip_evict_policy */
    double idle_timeout_min;   /* unload after this long unused; 0 = never */
    double lfu_decay_min;      /* LFU counter decay period in minutes (default 1) */
    bool auto_load;            /* load a known avatar on first use (default true) */
    lip_avatar_opts avatar;    /* how avatars load (engine options: provider etc.) */
    int gpu_count;             /* devices for UNets; 0 = CPU */
    int assignment;            /* enum lip_assign */
} lip_registry_opts;

lip_registry_opts lip_registry_opts_default(void);

/* NULL + err on failure. The models root need not exist (then only explicit avatars exist). */
lip_registry *lip_registry_new(const lip_registry_opts *opts, lip_err *err);
/* Frees the registry and drops its references (held avatars stay valid for their holders). */
void lip_registry_free(lip_registry *r);

/* Registers an avatar explicitly (config models.<id>): dir may be relative to models_root;
 * paths (may be NULL) name non-canonical parts; preload loads it now and pins it; preferred_gpu
 * -1 lets the registry choose. LIP_EINVAL for a bad id; a second registration of an id
 * replaces the not-yet-loaded entry. */
int lip_registry_add(lip_registry *r, const char *id, const char *dir,
                     const lip_avatar_paths *paths, bool preload, int preferred_gpu,
                     lip_err *err);
/* Finds avatars under models_root (each subdirectory whose name is a valid id and that has
 * avatar.yaml, frames/ or a background directory). Nothing is loaded. Returns the number of
 * avatars known afterwards, or a negative code. */
int lip_registry_scan(lip_registry *r, lip_err *err);

typedef struct lip_acquire_info {
    bool loaded_now;  /* this call loaded the avatar */
    double load_ms;   /* time spent loading (or waiting for another caller's load) */
    int device;       /* -1 CPU, else GPU ordinal */
} lip_acquire_info;

/* Gets a referenced, fully loaded avatar for a request. Unknown id: LIP_ENOTFOUND (a valid id
 * that names a directory under models_root is discovered on the fly). Known but not loaded
 * with auto_load off and allow_load false: LIP_EPRECOND. Load failures: the avatar's error
 * (LIP_EFORMAT, LIP_EMODEL, ...), prefixed with the id; other avatars are unaffected. Capacity
 * full with nothing evictable: LIP_EBUSY. Release with lip_registry_release. info may be NULL. */
int lip_registry_acquire(lip_registry *r, const char *id, bool allow_load, lip_avatar **out,
                         lip_acquire_info *info, lip_err *err);
/* Ends a request: records frames and model time in the avatar's stats and drops the reference. */
void lip_registry_release(lip_registry *r, lip_avatar *a, int frames, double inference_ms);
/* Records one served batch of `frames` frames that took inference_ms of model time (for callers
 * that record before they release; then release with frames 0). Unknown ids are ignored. */
void lip_registry_record(lip_registry *r, const char *id, int frames, double inference_ms);

/* Loads (or with force, reloads) an avatar and keeps it loaded (not pinned). load_ms may be
 * NULL; *already (may be NULL) says it was loaded before. preferred_gpu -1 = choose. */
int lip_registry_load(lip_registry *r, const char *id, bool force, int preferred_gpu,
                      double *load_ms, bool *already, lip_err *err);
/* Unloads an avatar (also a pinned one). Unknown id: LIP_ENOTFOUND; not loaded: 0. */
int lip_registry_unload(lip_registry *r, const char *id, lip_err *err);
/* Unloads avatars idle for longer than the idle timeout; returns how many. */
int lip_registry_tick(lip_registry *r);

typedef struct lip_model_stats {
    char id[72];
    char dir[512];
    char unet_path[512];
    bool loaded, pinned, loading;
    int device;                /* -1 CPU or not loaded */
    int frame_count;           /* 0 if not loaded */
    size_t memory_bytes;       /* 0 if not loaded */
    int64_t requests, frames;  /* since the registry started */
    int64_t frames_since_load; /* frames generated since the current load */
    double min_frame_ms, max_frame_ms; /* model time per frame, best and worst batch; 0 = none */
    double total_inference_ms;
    double load_ms;            /* last load */
    int64_t last_used_unix_ms; /* 0 never */
    int64_t loaded_unix_ms;    /* 0 not loaded */
    int64_t loads, evictions;
    char last_error[256];      /* last load failure, "" if none */
    int64_t bg_cache_hits, bg_cache_misses; /* the loaded avatar's decode cache (background
                                               frames), since its load; 0 if not loaded */
    int bg_cache_frames;       /* its capacity in frames */
} lip_model_stats;

/* Every known avatar, sorted by id: *out is a new array (lip_free), *n its length. */
int lip_registry_list(lip_registry *r, lip_model_stats **out, int *n);
/* One avatar; LIP_ENOTFOUND if unknown. */
int lip_registry_stats(lip_registry *r, const char *id, lip_model_stats *out, lip_err *err);

typedef struct lip_registry_totals {
    int known, loaded, max_models;
    size_t memory_bytes, max_memory_bytes;
    int64_t hits, misses, loads, evictions, idle_unloads, load_failures;
} lip_registry_totals;
void lip_registry_totals_get(lip_registry *r, lip_registry_totals *t);

#endif
