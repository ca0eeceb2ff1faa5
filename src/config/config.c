/* SPDX-License-Identifier: MIT */
/* config/config.c: the key table and everything that works from it: defaults and role defaults,
 * parsing and range-checking a value, precedence between sources, the models map, the YAML
 * dump, the help text and cross-key validation. Reading YAML files and argv lives in
 * config_load.c; both go through cfg_apply here, so a key behaves the same from every source. */
#include "config/config_int.h"

#include <ctype.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- the table ------------------------------------------------------------------------------ */
static const char *const roles[] = {"monolithic", "inference", "compositing", NULL};
static const char *const evictions[] = {"lfu", "lru", NULL};
static const char *const providers[] = {"cpu", "cuda", "tensorrt", "auto", NULL};
static const char *const strategies[] = {"round_robin", "least_loaded", NULL};
static const char *const formats[] = {"jpeg", "png", "raw", NULL};
static const char *const pastes[] = {"exact", "feather", NULL};
static const char *const levels[] = {"error", "warn", "info", "debug", NULL};
static const char *const compressions[] = {"none", "gzip", "deflate", NULL};

#define OFF(f) offsetof(lip_config, f)
#define MOFF(f) offsetof(lip_config_model, f)
#define K_INT(n, f, lo, hi, d, rt, fl, h) {n, LIP_CFG_INT, OFF(f), lo, hi, 0, 0, NULL, d, rt, fl, h}
#define K_DBL(n, f, lo, hi, d, rt, h) {n, LIP_CFG_DOUBLE, OFF(f), 0, 0, lo, hi, NULL, d, rt, 0, h}
#define K_BOOL(n, f, d, rt, h) {n, LIP_CFG_BOOL, OFF(f), 0, 0, 0, 0, NULL, d, rt, 0, h}
#define K_STR(n, f, d, rt, fl, h) {n, LIP_CFG_STRING, OFF(f), 0, 0, 0, 0, NULL, d, rt, fl, h}
#define K_ENUM(n, f, c, d, rt, h) {n, LIP_CFG_ENUM, OFF(f), 0, 0, 0, 0, c, d, rt, 0, h}
#define K_LIST(n, f, d, rt, fl, h) {n, LIP_CFG_STRLIST, OFF(f), 0, 0, 0, 0, NULL, d, rt, fl, h}
#define M_INT(n, f, lo, hi, d, h)                                                        \
    {"models.<id>." n, LIP_CFG_INT, MOFF(f), lo, hi, 0, 0, NULL, d, false, LIP_CFG_F_MODEL, h}
#define M_BOOL(n, f, d, h)                                                               \
    {"models.<id>." n, LIP_CFG_BOOL, MOFF(f), 0, 0, 0, 0, NULL, d, false, LIP_CFG_F_MODEL, h}
#define M_STR(n, f, h)                                                                   \
    {"models.<id>." n, LIP_CFG_STRING, MOFF(f), 0, 0, 0, 0, NULL, "", false, LIP_CFG_F_MODEL, h}

/* Dump order: keys of one section stay together; the models map comes last. */
static const lip_config_key keys[] = {
    K_ENUM("server.role", server.role, roles, "monolithic", false,
           "what this process serves: everything in one process (monolithic), the model only "
           "(inference), or compositing that calls a remote inference server"),
    K_STR("server.host", server.host, "0.0.0.0", false, 0,
          "address the gRPC listener binds (0.0.0.0 = all IPv4 interfaces)"),
    K_INT("server.port", server.port, 0, 65535, "50053", false, LIP_CFG_F_PORT | LIP_CFG_F_ROLE,
          "TCP port of the gRPC listener; 0 lets the system pick one. The Go form \":50053\" is "
          "accepted"),
    K_INT("server.max_message_size_mb", server.max_message_size_mb, 1, 2047, "100", false, 0,
          "largest gRPC message received or sent, MiB (API.md 1.7); inference batches of 43-50 "
          "frames need 119"),
    K_INT("server.workers", server.workers, 0, 1024, "0", false, 0,
          "model executors in total; 0 = gpus x worker_count_per_gpu on GPUs, one on CPU"),
    K_INT("server.worker_count_per_gpu", server.worker_count_per_gpu, 1, 64, "4", false, 0,
          "concurrent model executors per GPU when server.workers is 0"),
    K_INT("server.queue_size", server.queue_size, 1, 100000, "200", false, 0,
          "requests waiting for an executor before new ones get RESOURCE_EXHAUSTED"),
    K_INT("server.request_timeout_ms", server.request_timeout_ms, 0, 3600000, "30000", true, 0,
          "server-side time limit per request, ms (DEADLINE_EXCEEDED); 0 = none"),
    K_INT("server.grace_period_s", server.grace_period_s, 0, 3600, "10", false, 0,
          "on shutdown, seconds in-flight requests get to finish before they are cancelled"),
    K_INT("server.keepalive_time_s", server.keepalive_time_s, 1, 86400, "10", false, 0,
          "the server pings a client after this many idle seconds"),
    K_INT("server.keepalive_timeout_s", server.keepalive_timeout_s, 1, 3600, "3", false, 0,
          "seconds to wait for a ping reply before closing the connection"),
    K_INT("server.min_ping_interval_s", server.min_ping_interval_s, 0, 3600, "5", false, 0,
          "shortest interval between client pings that is accepted, also with no call active"),
    K_LIST("server.services", server.services,
           "monolithic.MonolithicService,compositing.CompositingService,"
           "inference.InferenceService,lipsync.LipSyncComposite,lipsync.LipSync,"
           "optimized_lipsyncsrv.OptimizedLipSyncService",
           false, LIP_CFG_F_SERVICES | LIP_CFG_F_ROLE,
           "gRPC services enabled on the listener (API.md 1.2); grpc.health.v1.Health is always "
           "on"),

    K_STR("server.tls_cert", server.tls_cert, "", false, 0,
          "PEM certificate chain for TLS on the listener; \"\" = plaintext h2c (API.md 1.1)"),
    K_STR("server.tls_key", server.tls_key, "", false, 0,
          "PEM private key matching server.tls_cert"),
    K_STR("server.tls_client_ca", server.tls_client_ca, "", false, 0,
          "PEM CA file: clients must present a certificate it signed (mTLS); \"\" = client "
          "certificates are not requested"),
    K_ENUM("server.compression", server.compression, compressions, "none", false,
           "compression of responses (requests are accepted compressed either way)"),

    K_INT("capacity.max_models", capacity.max_models, 0, 10000000, "100", true, 0,
          "models loaded at once before the eviction policy unloads one; 0 = unlimited"),
    K_DBL("capacity.max_memory_gb", capacity.max_memory_gb, 0, 1048576, "0", true,
          "memory for loaded models and their avatar assets, GiB; 0 = unlimited"),
    K_ENUM("capacity.eviction_policy", capacity.eviction_policy, evictions, "lfu", true,
           "which loaded model is unloaded when capacity is full: least frequently or least "
           "recently used"),
    K_INT("capacity.idle_timeout_minutes", capacity.idle_timeout_minutes, 0, 525600, "0", true,
          0, "unload a model unused for this many minutes; 0 = never"),
    K_INT("capacity.background_cache_frames", capacity.background_cache_frames, 0, 1000000,
          "600", false, 0, "background frames per model kept ready for compositing; 0 = none"),

    K_ENUM("onnx.provider", onnx.provider, providers, "auto", false,
           "ONNX Runtime execution provider; auto = the best this build and machine offer"),
    K_INT("onnx.intra_op_threads", onnx.intra_op_threads, 0, 1024, "0", false, 0,
          "threads inside one operator; 0 = ONNX Runtime's default"),
    K_INT("onnx.inter_op_threads", onnx.inter_op_threads, 0, 1024, "0", false, 0,
          "threads across operators; 0 = ONNX Runtime's default"),
    K_INT("onnx.device_id", onnx.device_id, 0, 63, "0", false, 0,
          "GPU used when a model has no preferred_gpu and gpus.count is 1"),
    K_BOOL("onnx.cpu_arena", onnx.cpu_arena, "true", false,
           "ONNX Runtime's CPU memory arena; false = tensors come from malloc (see docs/SERVING.md, "
           "memory)"),
    K_INT("onnx.gpu_mem_limit_mb", onnx.gpu_mem_limit_mb, 0, 16777216, "0", false, 0,
          "device memory arena limit per session, MiB; 0 = unlimited"),
    K_BOOL("onnx.trt_fp16", onnx.trt_fp16, "false", false,
           "let TensorRT run in FP16 (faster; output differs slightly from FP32)"),
    K_STR("onnx.trt_cache_dir", onnx.trt_cache_dir, "", false, 0,
          "directory for built TensorRT engines, so a restart skips the build; \"\" = no cache"),

    K_INT("gpus.count", gpus.count, 0, 64, "0", false, 0,
          "GPUs to use (devices 0..count-1); 0 = every device found"),
    K_ENUM("gpus.assignment_strategy", gpus.assignment_strategy, strategies, "round_robin",
           false, "device for a model with preferred_gpu -1 (the Go form round-robin is "
                  "accepted)"),

    K_ENUM("output.format", output.format, formats, "jpeg", false,
           "frame encoding where the API leaves it open (the seed APIs fix their own)"),
    K_INT("output.jpeg_quality", output.jpeg_quality, 1, 100, "75", true, 0,
          "JPEG quality of composited frames"),
    K_INT("output.png_level", output.png_level, 0, 9, "1", true, 0,
          "PNG deflate level (0 = stored, 9 = smallest); 1 is the fastest that compresses"),
    K_ENUM("output.paste_mode", output.paste_mode, pastes, "exact", true,
           "paste-back of the generated mouth: exact rectangle (the reference) or feathered "
           "border"),
    K_INT("output.feather_px", output.feather_px, 0, 64, "8", true, 0,
          "width of the feathered border, px of the output frame (paste_mode feather)"),
    K_BOOL("output.incremental", output.incremental, "true", false,
           "encode only what changed: splice the re-encoded mouth region into each frame's cached "
           "JPEG background (byte-identical to a full encode with restart markers) and deflate "
           "only the changed PNG pieces"),

    K_STR("audio.encoder_path", audio.encoder_path, "models/audio_encoder.onnx", false, 0,
          "audio encoder ONNX used to turn PCM into features (AUDIO.md)"),

    K_STR("models_root", models_root, "avatars", false, 0,
          "directory holding the avatars (DATA.md); relative model paths start here and "
          "requests cannot reach outside it"),
    K_STR("default_model", default_model, "", true, LIP_CFG_F_ID,
          "model used when a request names none (and by lipsync.*); \"\" = none"),
    K_BOOL("auto_load", auto_load, "true", true,
           "load a configured model that is not loaded on the first request that needs it"),

    K_INT("batch.max_frames", batch.max_frames, 1, 1024, "64", false, 0,
          "largest batch of the optimized service (API.md 1.7)"),

    K_STR("inference_server.url", inference_server.url, "", false, LIP_CFG_F_ROLE,
          "inference servers the compositing role calls, as a gRPC target: host:port, "
          "ipv4:a:p,b:p (round robin over the list) or dns:///name:port (every address of the "
          "name); \"\" = in-process"),
    K_INT("inference_server.timeout_seconds", inference_server.timeout_seconds, 1, 3600, "10",
          false, 0, "deadline of one call to the inference server, s"),
    K_INT("inference_server.max_retries", inference_server.max_retries, 0, 100, "3", false, 0,
          "retries of a failed call to the inference server (UNAVAILABLE only)"),
    K_STR("inference_server.tls_ca", inference_server.tls_ca, "", false, 0,
          "PEM CA file: call the inference servers over TLS, trusting these CAs; \"\" = "
          "plaintext"),
    K_STR("inference_server.tls_cert", inference_server.tls_cert, "", false, 0,
          "PEM client certificate presented to the inference servers (mTLS); \"\" = none"),
    K_STR("inference_server.tls_key", inference_server.tls_key, "", false, 0,
          "PEM key of inference_server.tls_cert"),
    K_STR("inference_server.api_key_file", inference_server.api_key_file, "", false, 0,
          "file whose first line is the API key sent to the inference servers; \"\" = none"),

    K_ENUM("log.level", log.level, levels, "info", true, "least severe level that is logged"),
    K_BOOL("log.json", log.json, "false", true, "log JSON lines instead of text"),

    K_INT("metrics.port", metrics.port, 0, 65535, "0", false, LIP_CFG_F_PORT,
          "HTTP port for Prometheus metrics; 0 = off"),

    K_INT("gateway.port", gateway.port, 0, 65535, "0", false, LIP_CFG_F_PORT,
          "HTTP + WebSocket port of the browser gateway (web page, lipsync.v1 over WebSocket); "
          "0 = off"),
    K_STR("gateway.web_root", gateway.web_root, "", false, 0,
          "directory of the web page's files; \"\" = web/ of the source tree, else "
          "/usr/share/lipsync/web"),
    K_STR("gateway.tls_ca", gateway.tls_ca, "", false, 0,
          "PEM CA file the gateway trusts for this server's certificate when it calls the gRPC "
          "port over TLS (needed with server.tls_cert)"),
    K_STR("gateway.tls_cert", gateway.tls_cert, "", false, 0,
          "PEM client certificate the gateway presents (needed with server.tls_client_ca)"),
    K_STR("gateway.tls_key", gateway.tls_key, "", false, 0, "PEM key of gateway.tls_cert"),
    K_STR("gateway.tls_target_name", gateway.tls_target_name, "", false, 0,
          "name checked in the server's certificate; \"\" = 127.0.0.1 (the address dialled)"),

    K_STR("auth.keys_file", auth.keys_file, "", false, 0,
          "JSON file of API keys (SHA-256 hashes, roles, avatars; docs/SECURITY.md), reloaded "
          "on SIGHUP; \"\" = no authentication"),
    K_DBL("auth.frames_per_second", auth.frames_per_second, 0, 1000000, "0", false,
          "frames per second per API key, for keys without their own limit; 0 = unlimited"),
    K_INT("auth.burst_frames", auth.burst_frames, 0, 100000000, "0", false, 0,
          "frames a key may use at once above its rate; 0 = 2 s worth of its rate"),
    K_INT("auth.max_concurrent", auth.max_concurrent, 0, 1000000, "0", false, 0,
          "calls and streams in progress per API key, for keys without their own limit; "
          "0 = unlimited"),

    K_BOOL("audit.enabled", audit.enabled, "false", false,
           "write one JSON line per request (key id, avatar, RPC, frames, status, latency); "
           "admin actions are logged even when false"),
    K_STR("audit.file", audit.file, "", false, 0,
          "file the audit lines are appended to; \"\" = stderr"),

    M_STR("model_path", model_path, "UNet .onnx; \"\" = <id>/unet.onnx"),
    M_STR("background_dir", background_dir, "background frames; \"\" = <id>/frames"),
    M_STR("crop_rects_path", crop_rects_path, "crop rectangles; \"\" = <id>/crop_rects.json"),
    M_INT("num_frames", num_frames, 0, 10000000, "0",
          "frames to use; 0 = as many as the data has"),
    M_BOOL("preload_backgrounds", preload_backgrounds, "false",
           "prepare the background frames at start-up instead of on first use"),
    M_BOOL("preload_model", preload_model, "false", "load the model at start-up"),
    M_INT("preferred_gpu", preferred_gpu, -1, 63, "-1", "device for this model; -1 = any"),
    M_STR("source_video", source_video,
          "video to extract the background frames from when background_dir is empty"),
};
#define NKEYS LIP_ARRAY_LEN(keys)

/* Role defaults: applied to keys that still hold a default when the role is set. */
static const struct {
    const char *key;
    const char *value[3]; /* monolithic, inference, compositing */
} role_defaults[] = {
    {"server.port", {"50053", "50051", "50052"}},
    {"server.services",
     {"monolithic.MonolithicService,compositing.CompositingService,inference.InferenceService,"
      "lipsync.LipSyncComposite,lipsync.LipSync,optimized_lipsyncsrv.OptimizedLipSyncService",
      "inference.InferenceService,lipsync.LipSync,optimized_lipsyncsrv.OptimizedLipSyncService",
      "compositing.CompositingService,lipsync.LipSyncComposite"}},
    {"inference_server.url", {"", "", "localhost:50051"}},
};

/* Renamed keys of the Go layouts, read under their new names. */
static const struct {
    const char *from, *to;
} aliases[] = {
    {"logging.level", "log.level"},
    {"capacity.idle_unload_minutes", "capacity.idle_timeout_minutes"},
    {"onnx.cuda_device_id", "onnx.device_id"},
};
static const struct {
    const char *from, *to;
} model_aliases[] = {
    {"preload", "preload_model"},
};

/* Keys of the Go layouts that we read but do not use: a warning each, never an error, so an
 * existing config.yaml loads unchanged. A name ending in ".*" covers a whole section. */
static const struct {
    const char *name, *why;
} legacy[] = {
    {"gpus.enabled", "GPU use follows onnx.provider"},
    {"gpus.memory_gb_per_gpu", "device memory is read from the device"},
    {"gpus.allow_multi_gpu_models", "a model runs on one device"},
    {"onnx.library_path", "ONNX Runtime is linked into the binary"},
    {"onnx.use_cuda", "use onnx.provider"},
    {"onnx.cuda_streams_per_worker", "one stream per executor"},
    {"capacity.max_models_per_gpu", "use capacity.max_models"},
    {"logging.*", "only logging.level is read, as log.level"},
};
static const struct {
    const char *name, *why;
} model_legacy[] = {
    {"memory_estimate_mb", "memory is measured when the model loads"},
    {"crops_video_path", "test inputs are not part of the model"},
    {"rois_video_path", "test inputs are not part of the model"},
    {"crops_frames_dir", "test inputs are not part of the model"},
    {"rois_frames_dir", "test inputs are not part of the model"},
};

static const char *const known_services[] = {
    "lipsync.LipSyncComposite",     "lipsync.LipSync",
    "monolithic.MonolithicService", "compositing.CompositingService",
    "inference.InferenceService",   "optimized_lipsyncsrv.OptimizedLipSyncService",
    "grpc.health.v1.Health",
};

static const char *const source_names[] = {"default", "role", "file", "flag"};

const lip_config_key *lip_config_keys(size_t *count)
{
    if (count) *count = NKEYS;
    return keys;
}

static size_t key_index(const lip_config_key *k) { return (size_t)(k - keys); }

/* Index of k among the model keys (their bookkeeping slot in lip_config_model). */
static int model_slot(const lip_config_key *k)
{
    int slot = 0;
    for (size_t i = 0; i < NKEYS; i++) {
        if (&keys[i] == k) return slot;
        if (keys[i].flags & LIP_CFG_F_MODEL) slot++;
    }
    LIP_ASSERT(0);
}

static const char *model_field(const lip_config_key *k) { return k->name + strlen("models.<id>."); }

static const lip_config_key *find_exact(const char *name)
{
    for (size_t i = 0; i < NKEYS; i++)
        if (!(keys[i].flags & LIP_CFG_F_MODEL) && strcmp(keys[i].name, name) == 0) return &keys[i];
    return NULL;
}

static const lip_config_key *find_model_field(const char *field)
{
    for (size_t i = 0; i < LIP_ARRAY_LEN(model_aliases); i++)
        if (strcmp(field, model_aliases[i].from) == 0) field = model_aliases[i].to;
    for (size_t i = 0; i < NKEYS; i++)
        if ((keys[i].flags & LIP_CFG_F_MODEL) && strcmp(model_field(&keys[i]), field) == 0)
            return &keys[i];
    return NULL;
}

int cfg_resolve(const char *name, cfg_ref *ref)
{
    memset(ref, 0, sizeof *ref);
    if (strlen(name) >= sizeof ref->canon) return 0;
    if (strncmp(name, "models.", 7) == 0) {
        /* models.<id>.<field>: ids may contain dots, fields never do, so split at the last. */
        const char *rest = name + 7, *dot = strrchr(rest, '.');
        if (!dot || dot == rest) return 0;
        size_t idlen = (size_t)(dot - rest);
        const char *field = dot + 1;
        const lip_config_key *k = find_model_field(field);
        const char *why = NULL;
        for (size_t i = 0; !k && i < LIP_ARRAY_LEN(model_legacy); i++)
            if (strcmp(field, model_legacy[i].name) == 0) why = model_legacy[i].why;
        if (!k && !why) return 0;
        if (idlen >= sizeof ref->id || !lip_valid_id(rest, idlen)) {
            snprintf(ref->id, sizeof ref->id, "%.*s", (int)LIP_MIN(idlen, 64), rest);
            return -1;
        }
        memcpy(ref->id, rest, idlen);
        ref->id[idlen] = 0;
        if (why) {
            ref->legacy_why = why;
            lip_strlcpy(ref->canon, name, sizeof ref->canon);
            return 2;
        }
        ref->k = k;
        snprintf(ref->canon, sizeof ref->canon, "models.%s.%s", ref->id, model_field(k));
        return 1;
    }
    const char *as_written = name; /* messages name the key the way the user wrote it */
    for (size_t i = 0; i < LIP_ARRAY_LEN(aliases); i++)
        if (strcmp(name, aliases[i].from) == 0) name = aliases[i].to;
    const lip_config_key *k = find_exact(name);
    if (k) {
        ref->k = k;
        lip_strlcpy(ref->canon, as_written, sizeof ref->canon);
        return 1;
    }
    for (size_t i = 0; i < LIP_ARRAY_LEN(legacy); i++) {
        const char *l = legacy[i].name;
        size_t ll = strlen(l);
        bool match = (ll > 2 && strcmp(l + ll - 2, ".*") == 0)
                         ? strncmp(name, l, ll - 1) == 0 && name[ll - 1]
                         : strcmp(name, l) == 0;
        if (match) {
            ref->legacy_why = legacy[i].why;
            lip_strlcpy(ref->canon, name, sizeof ref->canon);
            return 2;
        }
    }
    return 0;
}

const lip_config_key *lip_config_find_key(const char *name)
{
    cfg_ref ref;
    return name && cfg_resolve(name, &ref) == 1 ? ref.k : NULL;
}

static bool has_prefix_dot(const char *s, const char *prefix, size_t pl)
{
    return strncmp(s, prefix, pl) == 0 && s[pl] == '.';
}

bool cfg_is_section(const char *name)
{
    size_t nl = strlen(name);
    if (nl == 0) return false;
    for (size_t i = 0; i < NKEYS; i++)
        if (!(keys[i].flags & LIP_CFG_F_MODEL) && has_prefix_dot(keys[i].name, name, nl))
            return true;
    for (size_t i = 0; i < LIP_ARRAY_LEN(aliases); i++)
        if (has_prefix_dot(aliases[i].from, name, nl)) return true;
    for (size_t i = 0; i < LIP_ARRAY_LEN(legacy); i++)
        if (has_prefix_dot(legacy[i].name, name, nl)) return true;
    return false;
}

/* Edit distance, for "did you mean". Names are short (< 64), so a two-row table is enough. */
static int edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 63 || lb > 63) return 99;
    int prev[64], cur[64];
    for (size_t j = 0; j <= lb; j++) prev[j] = (int)j;
    for (size_t i = 1; i <= la; i++) {
        cur[0] = (int)i;
        for (size_t j = 1; j <= lb; j++) {
            int c = prev[j - 1] + (a[i - 1] != b[j - 1]);
            c = LIP_MIN(c, prev[j] + 1);
            cur[j] = LIP_MIN(c, cur[j - 1] + 1);
        }
        memcpy(prev, cur, sizeof(int) * (lb + 1));
    }
    return prev[lb];
}

void cfg_suggest(const char *name, bool model_field_only, char *out, size_t n)
{
    const char *best = NULL;
    int bestd = 4; /* more than 3 edits away is not a typo */
    for (size_t i = 0; i < NKEYS; i++) {
        bool mk = keys[i].flags & LIP_CFG_F_MODEL;
        if (mk != model_field_only) continue;
        const char *cand = mk ? model_field(&keys[i]) : keys[i].name;
        int d = edit_distance(name, cand);
        if (d < bestd) bestd = d, best = cand;
    }
    if (best)
        snprintf(out, n, " (did you mean '%s'?)", best);
    else if (n)
        out[0] = 0;
}

/* ---- errors and warnings -------------------------------------------------------------------- */
int cfg_fail(lip_err *err, int code, const cfg_ctx *ctx, const char *key, const char *fmt, ...)
{
    char why[LIP_ERRMSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    if (ctx && ctx->flag)
        return lip_err_set(err, code, "--%s: %s", key, why);
    if (ctx && ctx->file)
        return lip_err_set(err, code, "%s:%d:%d: key '%s': %s", ctx->file, ctx->line, ctx->col,
                           key, why);
    return lip_err_set(err, code, "key '%s': %s", key, why);
}

void cfg_warn(lip_config *cfg, const char *fmt, ...)
{
    char msg[LIP_ERRMSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    lip_log_warn("config: %s", msg);
    struct lip_config_priv *p = cfg->priv_;
    if (p->nwarn >= 1000) return; /* flags and files together cannot grow this unbounded */
    char **w = lip_realloc(p->warnings, sizeof(char *) * (size_t)(p->nwarn + 1));
    if (!w) return;
    p->warnings = w;
    char *s = lip_strdup(msg);
    if (s) p->warnings[p->nwarn++] = s;
}

/* ---- values --------------------------------------------------------------------------------- */
typedef struct cfg_val {
    long i;
    double d;
    bool b;
    char *s;
    lip_config_strlist l;
} cfg_val;

static void strlist_clear(lip_config_strlist *l)
{
    for (int i = 0; i < l->count; i++) lip_free(l->items[i]);
    lip_free(l->items);
    l->items = NULL;
    l->count = 0;
}

static void val_clear(cfg_val *v)
{
    lip_free(v->s);
    v->s = NULL;
    strlist_clear(&v->l);
}

/* Names compare case-insensitively with '-' equal to '_' (the Go layout writes round-robin). */
static bool enum_eq(const char *a, const char *b)
{
    for (;; a++, b++) {
        char ca = (char)tolower((unsigned char)*a), cb = (char)tolower((unsigned char)*b);
        if (ca == '-') ca = '_';
        if (cb == '-') cb = '_';
        if (ca != cb) return false;
        if (!ca) return true;
    }
}

int cfg_parse_bool(const char *s, bool *out)
{
    static const char *const t[] = {"true", "yes", "on", "1"};
    static const char *const f[] = {"false", "no", "off", "0"};
    for (size_t i = 0; i < LIP_ARRAY_LEN(t); i++) {
        if (strcasecmp(s, t[i]) == 0) return *out = true, 0;
        if (strcasecmp(s, f[i]) == 0) return *out = false, 0;
    }
    return LIP_EINVAL;
}

/* Strings must be valid UTF-8 without control characters, so every value can be dumped as a
 * YAML double-quoted scalar and read back, and printed in logs without surprises. */
static const char *check_text(const char *s, size_t len)
{
    if (len > CFG_STR_MAX) return "is longer than 4096 bytes";
    for (size_t i = 0; i < len;) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f) return "contains a control character";
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t n = c >= 0xf0 && c <= 0xf4 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 && c < 0xe0 ? 2 : 0;
        if (n == 0 || i + n > len) return "is not valid UTF-8";
        for (size_t j = 1; j < n; j++)
            if (((unsigned char)s[i + j] & 0xc0) != 0x80) return "is not valid UTF-8";
        i += n;
    }
    return NULL;
}

static bool service_ok(const char *s)
{
    for (size_t i = 0; i < LIP_ARRAY_LEN(known_services); i++)
        if (strcmp(s, known_services[i]) == 0) return true;
    /* The native API's names are not fixed yet (API.md 9): any lipsync.v1.<Service>. */
    if (strncmp(s, "lipsync.v1.", 11) != 0 || !s[11]) return false;
    for (const char *p = s + 11; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '_') return false;
    return true;
}

static void describe_expected(const lip_config_key *k, char *out, size_t n)
{
    switch (k->type) {
    case LIP_CFG_INT: snprintf(out, n, "an integer in [%ld, %ld]", k->imin, k->imax); break;
    case LIP_CFG_DOUBLE: snprintf(out, n, "a number in [%g, %g]", k->dmin, k->dmax); break;
    case LIP_CFG_BOOL: snprintf(out, n, "true or false"); break;
    case LIP_CFG_STRING: snprintf(out, n, "a string"); break;
    case LIP_CFG_STRLIST: snprintf(out, n, "a list of strings"); break;
    case LIP_CFG_ENUM: {
        size_t o = 0;
        out[0] = 0;
        for (int i = 0; k->choices[i] && o < n; i++)
            o += (size_t)snprintf(out + o, n - o, "%s%s", i ? "|" : "one of ", k->choices[i]);
        break;
    }
    }
}

static int add_item(lip_config_strlist *l, const char *s, size_t len, char *why, size_t whyn)
{
    if (l->count >= CFG_LIST_MAX)
        return snprintf(why, whyn, "more than %d items", CFG_LIST_MAX), LIP_EINVAL;
    const char *bad = check_text(s, len);
    if (bad)
        return snprintf(why, whyn, "item '%.*s' %s", (int)LIP_MIN(len, 64), s, bad), LIP_EINVAL;
    char **items = lip_realloc(l->items, sizeof(char *) * (size_t)(l->count + 1));
    if (!items) return snprintf(why, whyn, "out of memory"), LIP_ENOMEM;
    l->items = items;
    char *c = lip_malloc(len + 1);
    if (!c) return snprintf(why, whyn, "out of memory"), LIP_ENOMEM;
    memcpy(c, s, len);
    c[len] = 0;
    l->items[l->count++] = c;
    return 0;
}

/* Parses one value for k into v (v owns any string it gets). why gets the reason on failure. */
static int parse_value(const lip_config_key *k, const char *scalar, bool is_null,
                       const char *const *items, int nitems, bool is_list, cfg_val *v, char *why,
                       size_t whyn)
{
    char exp[160];
    describe_expected(k, exp, sizeof exp);
    memset(v, 0, sizeof *v);
    if (is_list && k->type != LIP_CFG_STRLIST)
        return snprintf(why, whyn, "expected %s, got a list", exp), LIP_EINVAL;
    if (is_null && k->type != LIP_CFG_STRING && k->type != LIP_CFG_STRLIST)
        return snprintf(why, whyn, "missing value (expected %s)", exp), LIP_EINVAL;
    const char *s = is_null ? "" : scalar;
    switch (k->type) {
    case LIP_CFG_INT: {
        if ((k->flags & LIP_CFG_F_PORT) && s[0] == ':') s++;
        if (lip_parse_long(s, LONG_MIN, LONG_MAX, &v->i) != 0 || isspace((unsigned char)s[0]))
            return snprintf(why, whyn, "expected %s, got '%.64s'", exp, scalar), LIP_EINVAL;
        if (v->i < k->imin || v->i > k->imax)
            return snprintf(why, whyn, "%ld is out of range (expected %s)", v->i, exp),
                   LIP_EINVAL;
        return 0;
    }
    case LIP_CFG_DOUBLE:
        if (lip_parse_double(s, &v->d) != 0 || isspace((unsigned char)s[0]))
            return snprintf(why, whyn, "expected %s, got '%.64s'", exp, scalar), LIP_EINVAL;
        if (v->d < k->dmin || v->d > k->dmax)
            return snprintf(why, whyn, "%g is out of range (expected %s)", v->d, exp), LIP_EINVAL;
        return 0;
    case LIP_CFG_BOOL:
        if (cfg_parse_bool(s, &v->b) != 0)
            return snprintf(why, whyn, "expected %s, got '%.64s'", exp, scalar), LIP_EINVAL;
        return 0;
    case LIP_CFG_ENUM:
        for (int i = 0; k->choices[i]; i++)
            if (enum_eq(s, k->choices[i])) return v->i = i, 0;
        return snprintf(why, whyn, "expected %s, got '%.64s'", exp, scalar), LIP_EINVAL;
    case LIP_CFG_STRING: {
        size_t len = strlen(s);
        const char *bad = check_text(s, len);
        if (bad) return snprintf(why, whyn, "value %s", bad), LIP_EINVAL;
        if ((k->flags & LIP_CFG_F_ID) && len && !lip_valid_id(s, len))
            return snprintf(why, whyn,
                            "'%.64s' is not a valid model id (1-64 characters from "
                            "[A-Za-z0-9_.-], not '.' or '..')",
                            s),
                   LIP_EINVAL;
        v->s = lip_strdup(s);
        if (!v->s) return snprintf(why, whyn, "out of memory"), LIP_ENOMEM;
        return 0;
    }
    case LIP_CFG_STRLIST: {
        int rc = 0;
        if (is_list) {
            for (int i = 0; i < nitems && !rc; i++)
                rc = add_item(&v->l, items[i], strlen(items[i]), why, whyn);
        } else {
            /* Text form (flags, or a YAML scalar): comma-separated, spaces around items
             * ignored, empty text = empty list. */
            const char *p = s;
            while (*p && !rc) {
                const char *e = strchr(p, ',');
                size_t len = e ? (size_t)(e - p) : strlen(p);
                const char *a = p, *b = p + len;
                while (a < b && *a == ' ') a++;
                while (b > a && b[-1] == ' ') b--;
                if (a == b)
                    rc = (snprintf(why, whyn, "empty item in '%.64s'", s), LIP_EINVAL);
                else
                    rc = add_item(&v->l, a, (size_t)(b - a), why, whyn);
                if (!e) break;
                p = e + 1;
                if (!*p && !rc) rc = (snprintf(why, whyn, "empty item in '%.64s'", s), LIP_EINVAL);
            }
        }
        for (int i = 0; i < v->l.count && !rc && (k->flags & LIP_CFG_F_SERVICES); i++)
            if (!service_ok(v->l.items[i]))
                rc = (snprintf(why, whyn,
                               "unknown service '%.80s' (expected names from API.md 1.2, e.g. "
                               "monolithic.MonolithicService)",
                               v->l.items[i]),
                      LIP_EINVAL);
        if (rc) val_clear(v);
        return rc;
    }
    }
    return LIP_EINTERNAL;
}

/* Moves v into the field (the field takes ownership of strings). */
static void store(const lip_config_key *k, void *base, cfg_val *v)
{
    char *field = (char *)base + k->offset;
    switch (k->type) {
    case LIP_CFG_INT:
    case LIP_CFG_ENUM: *(int *)field = (int)v->i; break;
    case LIP_CFG_DOUBLE: *(double *)field = v->d; break;
    case LIP_CFG_BOOL: *(bool *)field = v->b; break;
    case LIP_CFG_STRING:
        lip_free(*(char **)field);
        *(char **)field = v->s;
        v->s = NULL;
        break;
    case LIP_CFG_STRLIST:
        strlist_clear((lip_config_strlist *)field);
        *(lip_config_strlist *)field = v->l;
        memset(&v->l, 0, sizeof v->l);
        break;
    }
}

/* ---- models --------------------------------------------------------------------------------- */
/* Models are found through a hash index (FNV-1a, linear probing) so that loading a map of
 * 100,000 ids stays linear; the array keeps the configured order. */
static size_t id_hash(const char *id)
{
    uint32_t h = 2166136261u;
    for (; *id; id++) h = (h ^ (unsigned char)*id) * 16777619u;
    return h;
}

static lip_config_model *model_find(const lip_config *cfg, const char *id)
{
    const struct lip_config_priv *p = cfg->priv_;
    if (!p->mhash) return NULL;
    for (size_t i = id_hash(id) & (p->mhash_cap - 1);; i = (i + 1) & (p->mhash_cap - 1)) {
        int m = p->mhash[i];
        if (m < 0) return NULL;
        if (strcmp(cfg->models[m].id, id) == 0) return &cfg->models[m];
    }
}

/* Rebuilds the index for cap slots (models_cap grew). The table is at most half full. */
static int mhash_rebuild(lip_config *cfg, size_t cap)
{
    struct lip_config_priv *p = cfg->priv_;
    int *h = lip_malloc(sizeof(int) * cap);
    if (!h) return LIP_ENOMEM;
    for (size_t i = 0; i < cap; i++) h[i] = -1;
    for (int m = 0; m < cfg->model_count; m++) {
        size_t i = id_hash(cfg->models[m].id) & (cap - 1);
        while (h[i] >= 0) i = (i + 1) & (cap - 1);
        h[i] = m;
    }
    lip_free(p->mhash);
    p->mhash = h;
    p->mhash_cap = cap;
    return 0;
}

static void model_clear(lip_config_model *m)
{
    lip_free(m->id);
    for (size_t i = 0; i < NKEYS; i++)
        if ((keys[i].flags & LIP_CFG_F_MODEL) && keys[i].type == LIP_CFG_STRING)
            lip_free(*(char **)((char *)m + keys[i].offset));
}

/* Finds or appends the model; NULL with err set on failure. */
static lip_config_model *model_get(lip_config *cfg, const char *id, lip_err *err)
{
    lip_config_model *m = model_find(cfg, id);
    if (m) return m;
    if (!lip_valid_id(id, strlen(id))) {
        lip_err_set(err, LIP_EINVAL,
                    "model id '%.64s' is not valid (1-64 characters from [A-Za-z0-9_.-], not "
                    "'.' or '..')",
                    id);
        return NULL;
    }
    struct lip_config_priv *p = cfg->priv_;
    if (cfg->model_count >= CFG_MODELS_MAX) {
        lip_err_set(err, LIP_EINVAL, "more than %d models configured", CFG_MODELS_MAX);
        return NULL;
    }
    if (cfg->model_count == p->models_cap) {
        int cap = p->models_cap ? p->models_cap * 2 : 8;
        lip_config_model *nm = lip_realloc(cfg->models, sizeof *nm * (size_t)cap);
        if (nm) cfg->models = nm; /* before the rebuild, which reads the ids through it */
        if (!nm || mhash_rebuild(cfg, (size_t)cap * 4) != 0) {
            lip_err_set(err, LIP_ENOMEM, "out of memory adding model '%s'", id);
            return NULL;
        }
        p->models_cap = cap;
    }
    m = &cfg->models[cfg->model_count];
    memset(m, 0, sizeof *m);
    bool ok = (m->id = lip_strdup(id)) != NULL;
    for (size_t i = 0; i < NKEYS && ok; i++) {
        const lip_config_key *k = &keys[i];
        if (!(k->flags & LIP_CFG_F_MODEL)) continue;
        cfg_val v;
        char why[128];
        ok = parse_value(k, k->dflt, false, NULL, 0, false, &v, why, sizeof why) == 0;
        if (ok) store(k, m, &v);
    }
    if (!ok) {
        model_clear(m);
        lip_err_set(err, LIP_ENOMEM, "out of memory adding model '%s'", id);
        return NULL;
    }
    size_t h = id_hash(id) & (p->mhash_cap - 1);
    while (p->mhash[h] >= 0) h = (h + 1) & (p->mhash_cap - 1);
    p->mhash[h] = cfg->model_count++;
    return m;
}

int cfg_define_model(lip_config *cfg, const char *id, const cfg_ctx *ctx, lip_err *err)
{
    lip_config_model *m = model_get(cfg, id, err);
    if (!m) {
        if (ctx && ctx->file)
            return lip_err_prefix(err, "%s:%d:%d: key 'models'", ctx->file, ctx->line, ctx->col);
        return err ? err->code : LIP_EINVAL;
    }
    struct lip_config_priv *p = cfg->priv_;
    if (ctx && ctx->source == CFG_SRC_FILE && p->cur_gen) {
        if (m->id_gen_ == p->cur_gen) {
            char key[CFG_KEY_MAX];
            snprintf(key, sizeof key, "models.%s", id);
            return cfg_fail(err, LIP_EINVAL, ctx, key,
                            "duplicate model id (first defined at line %d)", m->id_line_);
        }
        m->id_gen_ = p->cur_gen;
        m->id_line_ = ctx->line;
    }
    return 0;
}

int lip_config_model_count(const lip_config *cfg) { return cfg ? cfg->model_count : 0; }

const lip_config_model *lip_config_model_at(const lip_config *cfg, int i)
{
    return cfg && i >= 0 && i < cfg->model_count ? &cfg->models[i] : NULL;
}

const lip_config_model *lip_config_model_find(const lip_config *cfg, const char *id)
{
    return cfg && id ? model_find(cfg, id) : NULL;
}

int lip_config_model_add(lip_config *cfg, const char *id, lip_err *err)
{
    if (!cfg || !id) return lip_err_set(err, LIP_EINVAL, "lip_config_model_add: NULL argument");
    return model_get(cfg, id, err) ? 0 : (err ? err->code : LIP_EINVAL);
}

int lip_config_resolve_path(const lip_config *cfg, const char *path, char *out, size_t n,
                            lip_err *err)
{
    if (!path || !*path) return lip_err_set(err, LIP_EINVAL, "empty path");
    if (path[0] == '/' || !cfg->models_root[0]) {
        if (lip_strlcpy(out, path, n) >= n)
            return lip_err_set(err, LIP_EINVAL, "path '%.64s...' is longer than %zu bytes", path,
                               n - 1);
        return 0;
    }
    return lip_path_join(out, n, cfg->models_root, path, err);
}

/* ---- applying values with precedence -------------------------------------------------------- */
static int set_role_defaults(lip_config *cfg, lip_err *err);

int cfg_apply(lip_config *cfg, const cfg_ref *ref, const char *scalar, bool is_null,
              const char *const *items, int nitems, bool is_list, const cfg_ctx *ctx,
              lip_err *err)
{
    const lip_config_key *k = ref->k;
    struct lip_config_priv *p = cfg->priv_;
    cfg_val v;
    char why[LIP_ERRMSG_MAX];
    int rc = parse_value(k, scalar, is_null, items, nitems, is_list, &v, why, sizeof why);
    if (rc) return cfg_fail(err, rc, ctx, ref->canon, "%s", why);

    void *base = cfg;
    unsigned char *src;
    unsigned *gen;
    int *line;
    if (k->flags & LIP_CFG_F_MODEL) {
        lip_config_model *m = model_get(cfg, ref->id, err);
        if (!m) {
            val_clear(&v);
            return cfg_fail(err, err ? err->code : LIP_ENOMEM, ctx, ref->canon, "%s",
                            err ? err->msg : "cannot add model");
        }
        int slot = model_slot(k);
        base = m, src = &m->src_[slot], gen = &m->gen_[slot], line = &m->line_[slot];
    } else {
        size_t i = key_index(k);
        src = &p->src[i], gen = &p->gen[i], line = &p->line[i];
    }
    if (ctx->source == CFG_SRC_FILE && p->cur_gen && *gen == p->cur_gen) {
        val_clear(&v);
        return cfg_fail(err, LIP_EINVAL, ctx, ref->canon, "duplicate key (first set at line %d)",
                        *line);
    }
    if (ctx->source == CFG_SRC_FILE && p->cur_gen) *gen = p->cur_gen, *line = ctx->line;
    if (ctx->source < *src) { /* a higher source already set it: checked, not applied */
        val_clear(&v);
        return 0;
    }
    store(k, base, &v);
    *src = (unsigned char)ctx->source;
    if (strcmp(k->name, "server.role") == 0) return set_role_defaults(cfg, err);
    return 0;
}

static int set_role_defaults(lip_config *cfg, lip_err *err)
{
    cfg_ctx ctx = {.source = CFG_SRC_ROLE};
    for (size_t i = 0; i < LIP_ARRAY_LEN(role_defaults); i++) {
        cfg_ref ref;
        LIP_ASSERT(cfg_resolve(role_defaults[i].key, &ref) == 1);
        if (cfg->priv_->src[key_index(ref.k)] > CFG_SRC_ROLE) continue;
        int rc = cfg_apply(cfg, &ref, role_defaults[i].value[cfg->server.role], false, NULL, 0,
                           false, &ctx, err);
        if (rc) return rc; /* only out of memory: the table's own values are checked by tests */
    }
    return 0;
}

int lip_config_set(lip_config *cfg, const char *key, const char *value, lip_err *err)
{
    if (!cfg || !key || !value)
        return lip_err_set(err, LIP_EINVAL, "lip_config_set: NULL argument");
    cfg_ref ref;
    cfg_ctx ctx = {.source = CFG_SRC_FLAG};
    char sug[96];
    switch (cfg_resolve(key, &ref)) {
    case 1: return cfg_apply(cfg, &ref, value, false, NULL, 0, false, &ctx, err);
    case 2:
        cfg_warn(cfg, "key '%s' is not used (%s); ignored", key, ref.legacy_why);
        return 0;
    case -1:
        return cfg_fail(err, LIP_EINVAL, &ctx, key,
                        "'%s' is not a valid model id (1-64 characters from [A-Za-z0-9_.-], not "
                        "'.' or '..')",
                        ref.id);
    default:
        cfg_suggest(key, false, sug, sizeof sug);
        return cfg_fail(err, LIP_EINVAL, &ctx, key, "unknown key%s", sug);
    }
}

/* ---- lifecycle ------------------------------------------------------------------------------ */
lip_config *lip_config_new(const char *role)
{
    int r = LIP_ROLE_MONOLITHIC;
    if (role) {
        for (r = 0; roles[r] && strcmp(roles[r], role) != 0; r++) {}
        if (!roles[r]) return NULL;
    }
    lip_config *cfg = lip_calloc(1, sizeof *cfg);
    if (!cfg) return NULL;
    struct lip_config_priv *p = lip_calloc(1, sizeof *p);
    cfg->priv_ = p;
    if (!p) goto fail;
    p->src = lip_calloc(NKEYS, sizeof *p->src);
    p->gen = lip_calloc(NKEYS, sizeof *p->gen);
    p->line = lip_calloc(NKEYS, sizeof *p->line);
    if (!p->src || !p->gen || !p->line) goto fail;
    cfg_ctx ctx = {.source = CFG_SRC_DEFAULT};
    for (size_t i = 0; i < NKEYS; i++) {
        if (keys[i].flags & LIP_CFG_F_MODEL) continue;
        cfg_ref ref = {.k = &keys[i]};
        lip_strlcpy(ref.canon, keys[i].name, sizeof ref.canon);
        const char *d = strcmp(keys[i].name, "server.role") == 0 ? roles[r] : keys[i].dflt;
        if (cfg_apply(cfg, &ref, d, false, NULL, 0, false, &ctx, NULL) != 0) goto fail;
    }
    return cfg;
fail:
    lip_config_free(cfg);
    return NULL;
}

void lip_config_free(lip_config *cfg)
{
    if (!cfg) return;
    for (size_t i = 0; i < NKEYS; i++) {
        const lip_config_key *k = &keys[i];
        if (k->flags & LIP_CFG_F_MODEL) continue;
        if (k->type == LIP_CFG_STRING) lip_free(*(char **)((char *)cfg + k->offset));
        if (k->type == LIP_CFG_STRLIST)
            strlist_clear((lip_config_strlist *)((char *)cfg + k->offset));
    }
    for (int i = 0; i < cfg->model_count; i++) model_clear(&cfg->models[i]);
    lip_free(cfg->models);
    struct lip_config_priv *p = cfg->priv_;
    if (p) {
        lip_free(p->src);
        lip_free(p->gen);
        lip_free(p->line);
        for (int i = 0; i < p->nwarn; i++) lip_free(p->warnings[i]);
        lip_free(p->warnings);
        lip_free(p->mhash);
        lip_free(p);
    }
    lip_free(cfg);
}

/* Copies one field of k from src to dst (both lip_config, or both lip_config_model). dst's
 * strings are NULL or owned, and are replaced. */
static int copy_field(const lip_config_key *k, void *dst, const void *src)
{
    char *d = (char *)dst + k->offset;
    const char *s = (const char *)src + k->offset;
    switch (k->type) {
    case LIP_CFG_INT:
    case LIP_CFG_ENUM: *(int *)d = *(const int *)s; return 0;
    case LIP_CFG_DOUBLE: *(double *)d = *(const double *)s; return 0;
    case LIP_CFG_BOOL: *(bool *)d = *(const bool *)s; return 0;
    case LIP_CFG_STRING:
        lip_free(*(char **)d);
        *(char **)d = lip_strdup(*(char *const *)s);
        return *(char **)d ? 0 : LIP_ENOMEM;
    case LIP_CFG_STRLIST: {
        lip_config_strlist *dl = (lip_config_strlist *)d;
        const lip_config_strlist *sl = (const lip_config_strlist *)s;
        char why[64];
        strlist_clear(dl);
        for (int i = 0; i < sl->count; i++)
            if (add_item(dl, sl->items[i], strlen(sl->items[i]), why, sizeof why) != 0)
                return LIP_ENOMEM;
        return 0;
    }
    }
    return LIP_EINTERNAL;
}

lip_config *lip_config_dup(const lip_config *src)
{
    if (!src) return NULL;
    lip_config *cfg = lip_calloc(1, sizeof *cfg);
    if (!cfg) return NULL;
    struct lip_config_priv *p = lip_calloc(1, sizeof *p);
    const struct lip_config_priv *sp = src->priv_;
    cfg->priv_ = p;
    if (!p) goto fail;
    p->src = lip_calloc(NKEYS, sizeof *p->src);
    p->gen = lip_calloc(NKEYS, sizeof *p->gen);
    p->line = lip_calloc(NKEYS, sizeof *p->line);
    if (!p->src || !p->gen || !p->line) goto fail;
    memcpy(p->src, sp->src, NKEYS * sizeof *p->src);
    memcpy(p->gen, sp->gen, NKEYS * sizeof *p->gen);
    memcpy(p->line, sp->line, NKEYS * sizeof *p->line);
    p->last_gen = sp->last_gen;
    for (size_t i = 0; i < NKEYS; i++)
        if (!(keys[i].flags & LIP_CFG_F_MODEL) && copy_field(&keys[i], cfg, src) != 0) goto fail;
    for (int m = 0; m < src->model_count; m++) {
        const lip_config_model *sm = &src->models[m];
        lip_config_model *dm = model_get(cfg, sm->id, NULL);
        if (!dm) goto fail;
        for (size_t i = 0; i < NKEYS; i++)
            if ((keys[i].flags & LIP_CFG_F_MODEL) && copy_field(&keys[i], dm, sm) != 0) goto fail;
        memcpy(dm->src_, sm->src_, sizeof dm->src_);
        memcpy(dm->gen_, sm->gen_, sizeof dm->gen_);
        memcpy(dm->line_, sm->line_, sizeof dm->line_);
        dm->id_gen_ = sm->id_gen_;
        dm->id_line_ = sm->id_line_;
    }
    if (sp->nwarn) {
        p->warnings = lip_calloc((size_t)sp->nwarn, sizeof(char *));
        if (!p->warnings) goto fail;
        for (; p->nwarn < sp->nwarn; p->nwarn++)
            if (!(p->warnings[p->nwarn] = lip_strdup(sp->warnings[p->nwarn]))) goto fail;
    }
    return cfg;
fail:
    lip_config_free(cfg);
    return NULL;
}

int lip_config_warning_count(const lip_config *cfg) { return cfg ? cfg->priv_->nwarn : 0; }

const char *lip_config_warning(const lip_config *cfg, int i)
{
    return cfg && i >= 0 && i < cfg->priv_->nwarn ? cfg->priv_->warnings[i] : NULL;
}

const char *lip_config_source(const lip_config *cfg, const char *key)
{
    cfg_ref ref;
    if (!cfg || !key || cfg_resolve(key, &ref) != 1) return NULL;
    if (ref.k->flags & LIP_CFG_F_MODEL) {
        const lip_config_model *m = model_find(cfg, ref.id);
        return m ? source_names[m->src_[model_slot(ref.k)]] : NULL;
    }
    return source_names[cfg->priv_->src[key_index(ref.k)]];
}

const char *lip_config_enum_name(const char *key, int value)
{
    const lip_config_key *k = lip_config_find_key(key ? key : "");
    if (!k || k->type != LIP_CFG_ENUM || value < 0) return NULL;
    for (int i = 0; k->choices[i]; i++)
        if (i == value) return k->choices[i];
    return NULL;
}

/* ---- validation ----------------------------------------------------------------------------- */
int lip_config_validate(const lip_config *cfg, lip_err *err)
{
    if (cfg->metrics.port && cfg->metrics.port == cfg->server.port)
        return cfg_fail(err, LIP_EINVAL, NULL, "metrics.port",
                        "%d is also server.port (expected another port, or 0 for off)",
                        cfg->metrics.port);
    if (cfg->gateway.port &&
        (cfg->gateway.port == cfg->server.port || cfg->gateway.port == cfg->metrics.port))
        return cfg_fail(err, LIP_EINVAL, NULL, "gateway.port",
                        "%d is also server.port or metrics.port (expected another port, or 0 "
                        "for off)", cfg->gateway.port);
    if (!cfg->server.tls_cert[0] != !cfg->server.tls_key[0])
        return cfg_fail(err, LIP_EINVAL, NULL, cfg->server.tls_cert[0] ? "server.tls_key" :
                                                                        "server.tls_cert",
                        "must be set together with %s (TLS needs both, plaintext neither)",
                        cfg->server.tls_cert[0] ? "server.tls_cert" : "server.tls_key");
    if (cfg->server.tls_client_ca[0] && !cfg->server.tls_cert[0])
        return cfg_fail(err, LIP_EINVAL, NULL, "server.tls_client_ca",
                        "needs server.tls_cert and server.tls_key (client certificates are "
                        "checked only over TLS)");
    if (!cfg->gateway.tls_cert[0] != !cfg->gateway.tls_key[0])
        return cfg_fail(err, LIP_EINVAL, NULL, cfg->gateway.tls_cert[0] ? "gateway.tls_key" :
                                                                         "gateway.tls_cert",
                        "gateway.tls_cert and gateway.tls_key go together");
    if (cfg->gateway.port && cfg->server.tls_cert[0] && !cfg->gateway.tls_ca[0])
        return cfg_fail(err, LIP_EINVAL, NULL, "gateway.tls_ca",
                        "needed with server.tls_cert and gateway.port: the gateway calls this "
                        "server's gRPC port over TLS and must trust its certificate");
    if (cfg->gateway.port && cfg->server.tls_client_ca[0] && !cfg->gateway.tls_cert[0])
        return cfg_fail(err, LIP_EINVAL, NULL, "gateway.tls_cert",
                        "needed with server.tls_client_ca and gateway.port: the gateway must "
                        "present a client certificate of that CA");
    int n = cfg->gpus.count;
    if (n > 0 && cfg->onnx.device_id >= n)
        return cfg_fail(err, LIP_EINVAL, NULL, "onnx.device_id",
                        "%d is not below gpus.count %d", cfg->onnx.device_id, n);
    for (int i = 0; i < cfg->model_count; i++) {
        const lip_config_model *m = &cfg->models[i];
        if (n > 0 && m->preferred_gpu >= n) {
            char key[CFG_KEY_MAX];
            snprintf(key, sizeof key, "models.%s.preferred_gpu", m->id);
            return cfg_fail(err, LIP_EINVAL, NULL, key,
                            "%d is out of range (expected -1 or 0..%d for gpus.count %d)",
                            m->preferred_gpu, n - 1, n);
        }
    }
    return 0;
}

/* ---- dump, format, help --------------------------------------------------------------------- */
/* Shortest %g form that reads back to the same double. */
static void fmt_double(double d, char *out, size_t n)
{
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(out, n, "%.*g", prec, d);
        if (strtod(out, NULL) == d) return;
    }
}

/* YAML double-quoted scalar; strings hold no control characters (check_text), so only the
 * quote and the backslash need escaping. */
static void put_quoted(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') fputc('\\', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

static void put_value(FILE *f, const lip_config_key *k, const void *base)
{
    const char *field = (const char *)base + k->offset;
    char buf[64];
    switch (k->type) {
    case LIP_CFG_INT: fprintf(f, "%d", *(const int *)field); break;
    case LIP_CFG_ENUM: fputs(k->choices[*(const int *)field], f); break;
    case LIP_CFG_DOUBLE:
        fmt_double(*(const double *)field, buf, sizeof buf);
        fputs(buf, f);
        break;
    case LIP_CFG_BOOL: fputs(*(const bool *)field ? "true" : "false", f); break;
    case LIP_CFG_STRING: put_quoted(f, *(char *const *)field); break;
    case LIP_CFG_STRLIST: {
        const lip_config_strlist *l = (const lip_config_strlist *)field;
        fputc('[', f);
        for (int i = 0; i < l->count; i++) {
            if (i) fputs(", ", f);
            put_quoted(f, l->items[i]);
        }
        fputc(']', f);
        break;
    }
    }
}

void lip_config_dump(const lip_config *cfg, FILE *f)
{
    fprintf(f, "# lipsync effective configuration (role %s)\n", roles[cfg->server.role]);
    char section[64] = "";
    for (size_t i = 0; i < NKEYS; i++) {
        const lip_config_key *k = &keys[i];
        if (k->flags & LIP_CFG_F_MODEL) continue;
        const char *dot = strchr(k->name, '.');
        size_t sl = dot ? (size_t)(dot - k->name) : 0;
        if (sl != strlen(section) || strncmp(section, k->name, sl) != 0) {
            snprintf(section, sizeof section, "%.*s", (int)sl, k->name);
            if (sl) fprintf(f, "%s:\n", section);
        }
        fprintf(f, "%s%s: ", sl ? "  " : "", dot ? dot + 1 : k->name);
        put_value(f, k, cfg);
        fputc('\n', f);
    }
    if (cfg->model_count == 0) {
        fputs("models: {}\n", f);
        return;
    }
    fputs("models:\n", f);
    for (int m = 0; m < cfg->model_count; m++) {
        fputs("  ", f);
        put_quoted(f, cfg->models[m].id);
        fputs(":\n", f);
        for (size_t i = 0; i < NKEYS; i++) {
            if (!(keys[i].flags & LIP_CFG_F_MODEL)) continue;
            fprintf(f, "    %s: ", model_field(&keys[i]));
            put_value(f, &keys[i], &cfg->models[m]);
            fputc('\n', f);
        }
    }
}

int lip_config_format(const lip_config *cfg, const char *key, char *out, size_t n, lip_err *err)
{
    cfg_ref ref;
    if (!cfg || !key || cfg_resolve(key, &ref) != 1)
        return lip_err_set(err, LIP_ENOTFOUND, "unknown key '%s'", key ? key : "(null)");
    const void *base = cfg;
    if (ref.k->flags & LIP_CFG_F_MODEL) {
        base = model_find(cfg, ref.id);
        if (!base) return lip_err_set(err, LIP_ENOTFOUND, "no model '%s' configured", ref.id);
    }
    const char *field = (const char *)base + ref.k->offset;
    int w = 0;
    switch (ref.k->type) {
    case LIP_CFG_INT: w = snprintf(out, n, "%d", *(const int *)field); break;
    case LIP_CFG_ENUM: w = snprintf(out, n, "%s", ref.k->choices[*(const int *)field]); break;
    case LIP_CFG_DOUBLE: {
        char b[64];
        fmt_double(*(const double *)field, b, sizeof b);
        w = snprintf(out, n, "%s", b);
        break;
    }
    case LIP_CFG_BOOL: w = snprintf(out, n, "%s", *(const bool *)field ? "true" : "false"); break;
    case LIP_CFG_STRING: w = snprintf(out, n, "%s", *(char *const *)field); break;
    case LIP_CFG_STRLIST: {
        const lip_config_strlist *l = (const lip_config_strlist *)field;
        size_t o = 0;
        if (n) out[0] = 0;
        for (int i = 0; i < l->count; i++) {
            w = snprintf(out + LIP_MIN(o, n), o < n ? n - o : 0, "%s%s", i ? "," : "",
                         l->items[i]);
            o += (size_t)w;
        }
        w = (int)o;
        break;
    }
    }
    if (w < 0 || (size_t)w >= n)
        return lip_err_set(err, LIP_EINVAL, "value of '%s' needs %d bytes, buffer has %zu", key,
                           w + 1, n);
    return 0;
}

/* Prints text word-wrapped to width columns, each line indented by indent spaces. */
static void put_wrapped(FILE *f, const char *text, int indent, int width)
{
    int col = 0;
    for (const char *p = text; *p;) {
        while (*p == ' ') p++;
        size_t wl = strcspn(p, " ");
        if (!wl) break;
        if (col > indent && col + 1 + (int)wl > width) {
            fputc('\n', f);
            col = 0;
        }
        if (col == 0)
            col = fprintf(f, "%*s", indent, "");
        else
            col += fprintf(f, " ");
        col += fprintf(f, "%.*s", (int)wl, p);
        p += wl;
    }
    fputc('\n', f);
}

void lip_config_help(FILE *f)
{
    fputs("Configuration keys (YAML file via --config FILE, or flags --key value / "
          "--key=value;\nflags override the file, which overrides the role defaults):\n",
          f);
    for (size_t i = 0; i < NKEYS; i++) {
        const lip_config_key *k = &keys[i];
        char exp[160];
        describe_expected(k, exp, sizeof exp);
        fprintf(f, "\n  --%s  (%s", k->name, exp);
        if (k->type == LIP_CFG_STRLIST) fputs(", comma-separated", f);
        int rd = -1;
        for (size_t r = 0; r < LIP_ARRAY_LEN(role_defaults); r++)
            if (strcmp(role_defaults[r].key, k->name) == 0) rd = (int)r;
        if (rd < 0) fprintf(f, "; default \"%s\"", k->dflt);
        fprintf(f, "%s)\n", k->runtime ? "; runtime" : "");
        if (rd >= 0 && k->type != LIP_CFG_STRLIST) {
            fputs("      default by role:", f);
            for (int j = 0; j < 3; j++)
                fprintf(f, " %s \"%s\"%s", roles[j], role_defaults[rd].value[j], j < 2 ? "," : "");
            fputc('\n', f);
        } else if (rd >= 0) { /* lists of services are long: one wrapped paragraph per role */
            fputs("      default by role:\n", f);
            for (int j = 0; j < 3; j++) {
                char line[1024];
                size_t o = (size_t)snprintf(line, sizeof line, "%s: ", roles[j]);
                for (const char *p = role_defaults[rd].value[j]; *p && o + 2 < sizeof line; p++)
                    o += (size_t)snprintf(line + o, sizeof line - o, *p == ',' ? ", " : "%c", *p);
                if (o == strlen(roles[j]) + 2) lip_strlcpy(line + o, "(none)", sizeof line - o);
                put_wrapped(f, line, 8, 96);
            }
        }
        put_wrapped(f, k->help, 6, 96);
    }
}
