/* SPDX-License-Identifier: MIT */
/* config: the server's settings as one typed struct (lip_config) and one table (lip_config_keys)
 * that gives each key its name, type, default, range, whether it may change at runtime and its
 * help text. The same table drives the YAML file (libyaml), `--key value` / `--key=value`
 * flags, the generated help, range checks and the YAML dump (`--print-config`). The seed Go
 * servers' config.yaml is read as it is: its `models.<id>` map fills lip_config.models, renamed
 * keys are taken under their new names, and keys we do not use become warnings.
 *
 * Precedence: flags (and lip_config_set) > file > role defaults > built-in defaults, whatever
 * the order of the calls: every key remembers where its value came from, and a lower source
 * never overwrites a higher one (it is still checked, so a bad file is reported even when a
 * flag overrides the key). Changing server.role re-applies the role defaults (port, services,
 * inference_server.url) to keys that no file or flag has set. docs/CONFIG.md lists every key.
 *
 * Thread-safety: a lip_config is not locked. Build it on one thread at start-up (new, load,
 * apply_args, validate); afterwards any number of threads may read it as long as nobody writes.
 * A server that changes runtime keys (lip_config_key.runtime) while serving must serialise those
 * writes against its readers itself. */
#ifndef LIP_CONFIG_H
#define LIP_CONFIG_H

#include "core/core.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

/* ---- enumerated values (stored as int; the value is the index of the name in the table) --- */
enum lip_role { LIP_ROLE_MONOLITHIC = 0, LIP_ROLE_INFERENCE, LIP_ROLE_COMPOSITING };
enum lip_cfg_eviction { LIP_CFG_EVICT_LFU = 0, LIP_CFG_EVICT_LRU };
enum lip_provider { LIP_PROVIDER_CPU = 0, LIP_PROVIDER_CUDA, LIP_PROVIDER_TENSORRT,
                    LIP_PROVIDER_AUTO };
enum lip_gpu_strategy { LIP_GPU_ROUND_ROBIN = 0, LIP_GPU_LEAST_LOADED };
enum lip_cfg_out_format { LIP_CFG_OUT_JPEG = 0, LIP_CFG_OUT_PNG, LIP_CFG_OUT_RAW };
enum lip_cfg_paste_mode { LIP_CFG_PASTE_EXACT = 0, LIP_CFG_PASTE_FEATHER };
enum lip_compression { LIP_COMPRESS_NONE = 0, LIP_COMPRESS_GZIP, LIP_COMPRESS_DEFLATE };
/* log.level uses core's enum lip_log_level (error=0 .. debug=3). */

/* A list of strings (server.services). Owned by the config. */
typedef struct lip_config_strlist {
    char **items;
    int count;
} lip_config_strlist;

#define LIP_CONFIG_MODEL_FIELDS 8

/* One entry of the models.<id> map (DATA.md's Go layout). Paths are as configured: relative
 * paths are relative to models_root (lip_config_resolve_path joins them). Strings are never
 * NULL ("" when unset) and are owned by the config. */
typedef struct lip_config_model {
    char *id;                 /* DATA.md id rule */
    char *model_path;         /* UNet .onnx; "" = <id>/unet.onnx (canonical layout) */
    char *background_dir;     /* frames; "" = <id>/frames */
    char *crop_rects_path;    /* "" = <id>/crop_rects.json */
    char *source_video;       /* video to extract frames from when background_dir is empty */
    int num_frames;           /* 0 = as many as the data has */
    bool preload_backgrounds; /* decode/cache backgrounds at start-up */
    bool preload_model;       /* load the UNet at start-up */
    int preferred_gpu;        /* -1 = let the server choose */
    /* Internal bookkeeping (where each field came from); not for callers. */
    unsigned char src_[LIP_CONFIG_MODEL_FIELDS];
    unsigned gen_[LIP_CONFIG_MODEL_FIELDS];
    int line_[LIP_CONFIG_MODEL_FIELDS];
    unsigned id_gen_;
    int id_line_;
} lip_config_model;

struct lip_config_priv;

/* The effective configuration. Read fields directly (cfg->server.port); write them only through
 * lip_config_set / load_file / apply_args so ranges and precedence hold. */
typedef struct lip_config {
    struct {
        int role;                 /* enum lip_role */
        char *host;
        int port;
        int max_message_size_mb;
        int workers;              /* 0 = auto */
        int worker_count_per_gpu;
        int queue_size;
        int request_timeout_ms;   /* 0 = no server-side limit */
        int grace_period_s;
        int keepalive_time_s;
        int keepalive_timeout_s;
        int min_ping_interval_s;
        lip_config_strlist services;
        char *tls_cert;           /* "" = plaintext */
        char *tls_key;
        char *tls_client_ca;      /* "" = no client certificates; else mTLS against this CA */
        int compression;          /* enum lip_compression */
    } server;
    struct {
        int max_models;           /* 0 = unlimited */
        double max_memory_gb;     /* 0 = unlimited */
        int eviction_policy;      /* enum lip_cfg_eviction */
        int idle_timeout_minutes; /* 0 = never unload for idleness */
        int background_cache_frames;
    } capacity;
    struct {
        int provider;             /* enum lip_provider */
        int intra_op_threads;     /* 0 = ONNX Runtime's default */
        bool cpu_arena;           /* ORT's CPU arena (else malloc per tensor) */
        int inter_op_threads;
        int device_id;
        int gpu_mem_limit_mb;     /* 0 = unlimited */
        bool trt_fp16;
        char *trt_cache_dir;      /* "" = no engine cache */
    } onnx;
    struct {
        int count;                /* 0 = detect */
        int assignment_strategy;  /* enum lip_gpu_strategy */
    } gpus;
    struct {
        int format;               /* enum lip_cfg_out_format */
        int jpeg_quality;
        int png_level;
        int paste_mode;           /* enum lip_cfg_paste_mode */
        int feather_px;
        bool incremental;         /* spliced JPEG / pieced PNG (default true) */
    } output;
    struct {
        char *encoder_path;
    } audio;
    char *models_root;
    char *default_model;          /* "" = none */
    bool auto_load;
    struct {
        int max_frames;
    } batch;
    struct {
        char *url;                /* "" = inference runs in-process */
        int timeout_seconds;
        int max_retries;
        char *tls_ca;             /* "" = plaintext to the inference servers */
        char *tls_cert;           /* client certificate for mTLS; "" = none */
        char *tls_key;
        char *api_key_file;       /* first line = the API key sent to them; "" = none */
    } inference_server;
    struct {
        int level;                /* enum lip_log_level */
        bool json;
    } log;
    struct {
        int port;                 /* 0 = off */
    } metrics;
    struct {
        int port;                 /* 0 = off */
        char *web_root;           /* "" = found next to the binary or in /usr/share */
        char *tls_ca;             /* "" = plaintext to the gRPC port */
        char *tls_cert;           /* client certificate (mTLS); "" = none */
        char *tls_key;
        char *tls_target_name;    /* "" = the dialled address */
    } gateway;
    struct {
        char *keys_file;          /* "" = no authentication */
        double frames_per_second; /* per key, for keys without their own; 0 = unlimited */
        int burst_frames;         /* bucket size; 0 = 2 s of frames_per_second */
        int max_concurrent;       /* calls and streams at once per key; 0 = unlimited */
    } auth;
    struct {
        bool enabled;             /* one line per request (admin actions are always logged) */
        char *file;               /* "" = stderr */
    } audit;

    lip_config_model *models;     /* models.<id> entries, in the order first seen */
    int model_count;

    struct lip_config_priv *priv_; /* sources, warnings; internal */
} lip_config;

/* ---- the table ------------------------------------------------------------------------------ */
typedef enum lip_config_type {
    LIP_CFG_INT = 0,
    LIP_CFG_DOUBLE,
    LIP_CFG_BOOL,
    LIP_CFG_STRING,
    LIP_CFG_ENUM,
    LIP_CFG_STRLIST,
} lip_config_type;

#define LIP_CFG_F_MODEL 0x1u    /* a models.<id>.<field> key; offset is into lip_config_model */
#define LIP_CFG_F_PORT 0x2u     /* int that also accepts the Go form ":50053" */
#define LIP_CFG_F_ID 0x4u       /* string that must be "" or a DATA.md id */
#define LIP_CFG_F_SERVICES 0x8u /* string list of gRPC service names (API.md §1.2) */
#define LIP_CFG_F_ROLE 0x10u    /* has a per-role default (see docs/CONFIG.md) */

/* One key. Ranges are inclusive. The default is text, parsed by the same code as user input,
 * so a default can never escape its own range. */
typedef struct lip_config_key {
    const char *name;            /* "server.port"; model keys are "models.<id>.model_path" */
    lip_config_type type;
    size_t offset;               /* into lip_config, or lip_config_model with LIP_CFG_F_MODEL */
    long imin, imax;             /* LIP_CFG_INT */
    double dmin, dmax;           /* LIP_CFG_DOUBLE */
    const char *const *choices;  /* LIP_CFG_ENUM: NULL-terminated; the value is the index */
    const char *dflt;            /* built-in default as text */
    bool runtime;                /* may be changed while serving */
    unsigned flags;              /* LIP_CFG_F_* */
    const char *help;
} lip_config_key;

/* The table, in dump order (keys of one section are contiguous). Static; thread-safe. */
const lip_config_key *lip_config_keys(size_t *count);
/* Looks a key up by its name (also "models.<id>.<field>" and the accepted Go-layout aliases).
 * Returns the table entry or NULL. Static data; thread-safe. */
const lip_config_key *lip_config_find_key(const char *name);

/* ---- lifecycle ------------------------------------------------------------------------------ */
/* A config holding the defaults of role ("monolithic", "inference", "compositing"; NULL means
 * monolithic). Returns NULL if role is not one of those or memory runs out. Free with
 * lip_config_free. */
lip_config *lip_config_new(const char *role);
/* A deep copy of cfg (values, models, sources, warnings), for a server that applies runtime
 * changes to a copy and then publishes it. Returns NULL if src is NULL or memory runs out;
 * free with lip_config_free. Reads src only: safe while other threads read src too. */
lip_config *lip_config_dup(const lip_config *src);
/* Frees cfg and every string it owns; NULL is a no-op. */
void lip_config_free(lip_config *cfg);

/* ---- sources -------------------------------------------------------------------------------- */
/* Reads a YAML file (the lipsync layout or the Go servers' config.yaml) and applies every key at
 * file precedence. On failure returns LIP_ENOTFOUND (no file), LIP_EFORMAT (malformed YAML) or
 * LIP_EINVAL (unknown key, wrong type, out of range, duplicate key), with a message
 * "<path>:<line>:<col>: key '<key>': <reason>"; keys applied before the error stay applied,
 * so callers treat any failure as fatal. Go-layout keys we do not use are warnings
 * (lip_config_warning). May be called for several files: later files override earlier ones. */
int lip_config_load_file(lip_config *cfg, const char *path, lip_err *err);
/* The same from a YAML text held in memory; name is used in messages (e.g. "<stdin>"). */
int lip_config_load_string(lip_config *cfg, const char *yaml, size_t len, const char *name,
                           lip_err *err);

/* Consumes every recognised `--key value`, `--key=value` (and bare `--bool-key`) from
 * argv[1..*argc-1], plus `--config FILE` (loads FILE at file precedence) and the shorthands
 * `--role` and `--port`. Other arguments stay in argv, in order, for the command's own parser;
 * *argc is updated and argv[*argc] set to NULL. Parsing stops at "--" (kept). A `--a.b` flag
 * whose section is a config section but whose key is unknown is an error (with a suggestion),
 * not passed through. Returns 0 or LIP_EINVAL / the load_file error, message "--<key>: ...". */
int lip_config_apply_args(lip_config *cfg, int *argc, char **argv, lip_err *err);

/* Sets one key from text at flag precedence (lists: comma-separated). Model keys
 * "models.<id>.<field>" create the model if needed. Returns 0, or LIP_EINVAL with
 * "key '<key>': <reason>" (cfg unchanged). */
int lip_config_set(lip_config *cfg, const char *key, const char *value, lip_err *err);

/* Cross-key checks to run once all sources are applied: metrics port versus server port, TLS
 * certificate and key together, preferred GPUs and device id versus gpus.count. Returns 0 or
 * LIP_EINVAL with "key '<key>': <reason>". Reads only; thread-safe against other readers. */
int lip_config_validate(const lip_config *cfg, lip_err *err);

/* ---- output --------------------------------------------------------------------------------- */
/* Writes the effective configuration as YAML that lip_config_load_file reads back to the same
 * values (every key, then the models map). Not thread-safe against writers. */
void lip_config_dump(const lip_config *cfg, FILE *f);
/* Writes the help for every key (flag form, type, range, default, runtime, text). */
void lip_config_help(FILE *f);
/* Formats one key's current value as text (as a flag would take it) into out[n].
 * 0, or LIP_ENOTFOUND for an unknown key, LIP_EINVAL if it does not fit. */
int lip_config_format(const lip_config *cfg, const char *key, char *out, size_t n, lip_err *err);
/* The name of an enum value of key (e.g. ("onnx.provider", LIP_PROVIDER_CUDA) -> "cuda"), or
 * NULL. Static string; thread-safe. */
const char *lip_config_enum_name(const char *key, int value);

/* Where the value of key came from: "default", "role", "file", "flag", or NULL if unknown. */
const char *lip_config_source(const lip_config *cfg, const char *key);

/* Warnings collected while loading (Go-layout keys that are read but not used). The strings
 * are owned by cfg and live until it is freed. */
int lip_config_warning_count(const lip_config *cfg);
const char *lip_config_warning(const lip_config *cfg, int i);

/* ---- models --------------------------------------------------------------------------------- */
/* Number of models.<id> entries (0 for NULL). Thread-safe against other readers. */
int lip_config_model_count(const lip_config *cfg);
/* The i-th model (0 <= i < count) or NULL; pointer owned by cfg, valid until the next call
 * that adds a model or lip_config_free. */
const lip_config_model *lip_config_model_at(const lip_config *cfg, int i);
/* The model with this id, or NULL. Same lifetime as lip_config_model_at. */
const lip_config_model *lip_config_model_find(const lip_config *cfg, const char *id);
/* Adds a model with default fields (or finds the existing one). 0, or LIP_EINVAL for a bad id
 * or LIP_ENOMEM. */
int lip_config_model_add(lip_config *cfg, const char *id, lip_err *err);

/* Joins a configured path with models_root unless it is absolute: into out[n]. LIP_EINVAL if
 * path is empty or the result does not fit. */
int lip_config_resolve_path(const lip_config *cfg, const char *path, char *out, size_t n,
                            lip_err *err);

#endif
