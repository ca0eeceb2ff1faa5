/* SPDX-License-Identifier: MIT */
/* cli/cmd_serve.c: `lipsync serve`: builds the configuration (defaults of the role, --config
 * FILE, --key value flags), creates the shared service state (models, pipeline), attaches the
 * enabled API services to one gRPC listener, reports SERVING, and waits for SIGINT/SIGTERM to
 * drain and exit 0. */
#include "auth/auth.h"
#include "cli/cli.h"
#include "metrics/metrics.h"
#include "registry/registry.h"
#include "config/config.h"
#include "core/core.h"
#include "gateway/gateway.h"
#include "rpc/rpc.h"
#include "service/service.h"
#include "service/v1.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(f,
            "usage: lipsync serve [--role monolithic|inference|compositing] [--port N] [--host ADDR]\n"
            "                     [--models-root DIR] [--default-model ID] [--config FILE]\n"
            "                     [--<key> VALUE ...] [--print-config] [--help]\n\n"
            "Runs the gRPC server of a role (default monolithic, port 50053). Every configuration\n"
            "key can be given as --<key> VALUE (docs/CONFIG.md); flags override the file.\n"
            "SIGINT/SIGTERM drain the server: health goes NOT_SERVING, running calls get\n"
            "server.grace_period_s to finish, then the process exits 0.\n\n"
            "Configuration keys:\n");
    lip_config_help(f);
}

/* The first line of a key file (an API key; never taken from a flag, which other users could
 * read in the process list). */
static int read_key_line(const char *path, char *buf, size_t n, lip_err *err)
{
    uint8_t *d = NULL;
    size_t len = 0;
    lip_err fe = {0};
    if (lip_file_read(path, 4096, &d, &len, &fe)) return lip_err_set(err, fe.code, "%s", fe.msg);
    size_t k = strcspn((const char *)d, "\r\n");
    int rc = 0;
    if (k == 0 || k >= n)
        rc = lip_err_set(err, LIP_EINVAL, "'%s': the first line must hold the key (1-%zu "
                         "characters), got %zu", path, n - 1, k);
    else {
        memcpy(buf, d, k);
        buf[k] = 0;
    }
    memset(d, 0, len);
    lip_free(d);
    return rc;
}

/* The requested services: with a role, the list of server.services; the ones this build does
 * not serve are reported and skipped (their paths answer UNIMPLEMENTED). */
static int attach_services(const lip_config *cfg, lip_service *sv, lip_rpc_server *srv,
                           char *names, size_t n)
{
    names[0] = 0;
    int attached = 0;
    for (int i = 0; i < cfg->server.services.count; i++) {
        const char *name = cfg->server.services.items[i];
        if (!lip_service_known(name)) {
            lip_log_warn("serve: service %s is not available in this build; its paths answer "
                         "UNIMPLEMENTED", name);
            continue;
        }
        lip_err err = {0};
        if (lip_service_register(sv, srv, name, &err)) {
            lip_log_warn("serve: %s not enabled: %s", name, err.msg);
            continue;
        }
        size_t used = strlen(names);
        snprintf(names + used, n - used, "%s%s", attached ? ", " : "", name);
        attached++;
    }
    return attached;
}

/* Gauges and counters read at scrape time from the server's and the registry's own stats. */
static struct {
    lip_service *sv;
    lip_rpc_server *srv;
} scrape_ctx;

static void on_scrape(lip_metrics *m, void *arg)
{
    (void)arg;
    lip_rpc_stats rs;
    lip_rpc_server_stats(scrape_ctx.srv, &rs);
    lip_gauge_set(lip_metrics_gauge(m, LIP_METRIC_INFLIGHT, NULL, NULL), rs.heavy_active);
    lip_gauge_set(lip_metrics_gauge(m, LIP_METRIC_AVATARS_LOADED, NULL, NULL),
                  lip_service_loaded_count(scrape_ctx.sv));
    lip_registry_totals t;
    lip_service_registry_totals(scrape_ctx.sv, &t);
    lip_counter *ev = lip_metrics_counter(m, LIP_METRIC_EVICTIONS, NULL, NULL);
    uint64_t have = lip_counter_value(ev), want = (uint64_t)(t.evictions + t.idle_unloads);
    if (want > have) lip_counter_add(ev, want - have);
}

int lip_cli_serve(int argc, char **argv)
{
    /* Before any thread exists, so gRPC's and the pool's threads inherit the mask. */
    lip_rpc_block_signals();
    if (lip_cli_wants_help(argc, argv)) {
        usage(stdout);
        return 0;
    }
    lip_config *cfg = lip_config_new(NULL);
    if (!cfg) {
        lip_cli_fail("serve", "out of memory");
        return 1;
    }
    /* The command's own spellings of some keys (as `make run` uses them). */
    static const struct {
        const char *flag, *key;
    } shorthands[] = {{"--models-root", "models_root"},
                      {"--default-model", "default_model"},
                      {"--host", "server.host"}};
    bool print_config = false;
    lip_err err = {0};
    int rc = 0, n = 0;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--print-config") == 0) {
            print_config = true;
            continue;
        }
        bool used = false;
        for (size_t k = 0; k < LIP_ARRAY_LEN(shorthands) && !rc && i > 0; k++) {
            size_t fl = strlen(shorthands[k].flag);
            if (strncmp(argv[i], shorthands[k].flag, fl) != 0) continue;
            const char *val = NULL;
            if (argv[i][fl] == '=') val = argv[i] + fl + 1;
            else if (argv[i][fl] == 0 && i + 1 < argc) val = argv[++i];
            else if (argv[i][fl] == 0) rc = lip_err_set(&err, LIP_EINVAL, "%s needs a value",
                                                       shorthands[k].flag);
            else continue;
            if (val) rc = lip_config_set(cfg, shorthands[k].key, val, &err);
            used = true;
        }
        if (!used) argv[n++] = argv[i];
    }
    argc = n;
    argv[argc] = NULL;
    if (!rc) rc = lip_config_apply_args(cfg, &argc, argv, &err);
    if (!rc && argc > 1)
        rc = lip_err_set(&err, LIP_EINVAL, "unexpected argument '%s' (see --help)", argv[1]);
    if (!rc) rc = lip_config_validate(cfg, &err);
    if (rc) {
        lip_cli_fail("serve", "%s", err.msg);
        lip_config_free(cfg);
        return 2;
    }
    for (int i = 0; i < lip_config_warning_count(cfg); i++)
        lip_log_warn("config: %s", lip_config_warning(cfg, i));
    if (print_config) {
        lip_config_dump(cfg, stdout);
        lip_config_free(cfg);
        return 0;
    }
    lip_log_set_level(cfg->log.level);
    lip_log_set_json(cfg->log.json);
    const char *role = lip_config_enum_name("server.role", cfg->server.role);
    char rolebuf[64];
    snprintf(rolebuf, sizeof rolebuf, "serve/%s", role ? role : "?");
    lip_log_set_role(rolebuf);
    lip_rpc_tune_malloc();

    /* Service state: models, pipeline, outputs. */
    lip_service_opts so = lip_service_opts_default();
    so.models_root = cfg->models_root;
    so.default_model = cfg->default_model;
    so.auto_load = cfg->auto_load;
    so.max_models = cfg->capacity.max_models;
    so.max_memory_gb = cfg->capacity.max_memory_gb;
    so.evict_lru = cfg->capacity.eviction_policy == LIP_CFG_EVICT_LRU;
    so.idle_timeout_min = cfg->capacity.idle_timeout_minutes;
    /* gpus.count 0 = detect: one device when CUDA is there and the provider is not the CPU. */
    so.gpu_count = cfg->onnx.provider == LIP_PROVIDER_CPU ? 0
                   : cfg->gpus.count                   ? cfg->gpus.count
                   : lip_engine_has_provider("cuda")   ? 1
                                                       : 0;
    so.gpu_least_loaded = cfg->gpus.assignment_strategy == LIP_GPU_LEAST_LOADED;
    so.encoder_path = cfg->audio.encoder_path && *cfg->audio.encoder_path &&
                              lip_file_exists(cfg->audio.encoder_path)
                          ? cfg->audio.encoder_path
                          : NULL;
    if (!so.encoder_path && *cfg->inference_server.url)
        lip_log_info("serve: audio encoder '%s' not found: raw audio is forwarded to the "
                     "inference servers", cfg->audio.encoder_path);
    else if (!so.encoder_path)
        lip_log_warn("serve: audio encoder '%s' not found: requests with raw audio will be "
                     "refused (FAILED_PRECONDITION)", cfg->audio.encoder_path);
    so.engine.provider = lip_config_enum_name("onnx.provider", cfg->onnx.provider);
    so.engine.device_id = cfg->onnx.device_id;
    so.engine.intra_threads = cfg->onnx.intra_op_threads;
    so.engine.cpu_arena = cfg->onnx.cpu_arena;
    so.engine.inter_threads = cfg->onnx.inter_op_threads;
    so.engine.gpu_mem_limit = (size_t)cfg->onnx.gpu_mem_limit_mb << 20;
    so.engine.trt_fp16 = cfg->onnx.trt_fp16;
    so.engine.trt_cache_dir = *cfg->onnx.trt_cache_dir ? cfg->onnx.trt_cache_dir : NULL;
    so.jpeg_quality = cfg->output.jpeg_quality;
    so.png_level = cfg->output.png_level;
    so.paste_exact = cfg->output.paste_mode == LIP_CFG_PASTE_EXACT;
    so.feather_px = cfg->output.feather_px;
    so.full_encode = !cfg->output.incremental;
    so.optimized_max_batch = cfg->batch.max_frames;
    /* Remote inference (compositing role): calls to the inference servers of the url. */
    so.inference_url = cfg->inference_server.url;
    so.inference_timeout_ms = cfg->inference_server.timeout_seconds * 1000;
    so.inference_max_retries = cfg->inference_server.max_retries;
    so.inference_max_msg_bytes =
        (int)LIP_MIN((long)cfg->server.max_message_size_mb << 20, 0x7fffffffL);
    so.background_cache_frames = cfg->capacity.background_cache_frames;
    /* TLS and the API key for the calls to the inference servers (compositing role). */
    so.inference_tls_ca = cfg->inference_server.tls_ca;
    so.inference_tls_cert = cfg->inference_server.tls_cert;
    so.inference_tls_key = cfg->inference_server.tls_key;
    char inf_key[LIP_AUTH_KEY_MAX + 1] = "";
    if (cfg->inference_server.api_key_file[0]) {
        if (read_key_line(cfg->inference_server.api_key_file, inf_key, sizeof inf_key, &err)) {
            lip_cli_fail("serve", "inference_server.api_key_file: %s", err.msg);
            lip_config_free(cfg);
            return 2;
        }
        so.inference_api_key = inf_key;
    }
    int nm = lip_config_model_count(cfg);
    lip_service_model *models = lip_calloc((size_t)nm + 1, sizeof *models);
    for (int i = 0; models && i < nm; i++) {
        const lip_config_model *m = lip_config_model_at(cfg, i);
        models[i] = (lip_service_model){m->id, m->model_path, m->background_dir,
                                        m->crop_rects_path, m->preload_model};
    }
    so.models = models;
    so.n_models = models ? nm : 0;

    /* Threads: the 2-core default runs 2 heavy calls at once; admitted-but-waiting calls are
     * bounded by server.queue_size and by a 2 GiB budget of request bytes, so a burst of
     * 100 MB requests cannot exhaust memory. */
    lip_rpc_opts ro = lip_rpc_opts_default();
    ro.host = cfg->server.host;
    ro.port = cfg->server.port;
    int cpus = lip_cpu_count();
    ro.compute_threads = cfg->server.workers > 0 ? cfg->server.workers : LIP_MAX(2, cpus);
    int budget = LIP_MAX(1, 2048 / LIP_MAX(1, cfg->server.max_message_size_mb));
    ro.max_queued = LIP_MIN(cfg->server.queue_size, budget);
    ro.cq_threads = 2;
    long maxmsg = (long)cfg->server.max_message_size_mb << 20;
    ro.max_recv_bytes = ro.max_send_bytes = (int)LIP_MIN(maxmsg, 0x7fffffffL);
    ro.keepalive_time_ms = cfg->server.keepalive_time_s * 1000;
    ro.keepalive_timeout_ms = cfg->server.keepalive_timeout_s * 1000;
    ro.min_client_ping_ms = cfg->server.min_ping_interval_s * 1000;
    ro.request_timeout_ms = cfg->server.request_timeout_ms;
    ro.tls_cert = cfg->server.tls_cert;
    ro.tls_key = cfg->server.tls_key;
    ro.tls_client_ca = cfg->server.tls_client_ca;
    /* A request message must arrive within the request time limit (30 s when unlimited). */
    ro.recv_timeout_ms = cfg->server.request_timeout_ms > 0 ? cfg->server.request_timeout_ms
                                                             : 30000;
    so.pipeline_slots = ro.compute_threads;

    lip_service *sv = NULL;
    lip_rpc_server *srv = NULL;
    lip_auth *auth = NULL;
    lip_metrics_http *mhttp = NULL;
    lip_gateway *gw = NULL;
    int status = 1;
    double t0 = lip_time_ms();
    sv = lip_service_new(&so, &err);
    memset(inf_key, 0, sizeof inf_key); /* the client keeps its own copy */
    if (!sv) {
        lip_cli_fail("serve", "%s", err.msg);
        goto out;
    }
    srv = lip_rpc_server_new(&ro, &err);
    if (!srv) {
        lip_cli_fail("serve", "%s", err.msg);
        goto out;
    }
    char names[1024];
    if (attach_services(cfg, sv, srv, names, sizeof names) == 0) {
        lip_cli_fail("serve", "no service of server.services is available in this build");
        goto out;
    }
    /* The native API (docs/API.md lipsync.v1) rides on every listener beside the role's. */
    if (lip_service_register_v1(sv, srv, &err) == 0)
        snprintf(names + strlen(names), sizeof names - strlen(names), ", %s", LIP_V1_SERVICE);
    else
        lip_log_warn("serve: %s not enabled: %s", LIP_V1_SERVICE, err.msg);
    /* API keys, tenant scopes, limits and audit: one guard at the rpc dispatch. */
    if (cfg->auth.keys_file[0]) {
        lip_auth_opts ao = lip_auth_opts_default();
        ao.keys_file = cfg->auth.keys_file;
        ao.default_avatar = cfg->default_model;
        ao.frames_per_second = cfg->auth.frames_per_second;
        ao.burst_frames = cfg->auth.burst_frames;
        ao.max_concurrent = cfg->auth.max_concurrent;
        ao.audit_all = cfg->audit.enabled;
        ao.audit_file = cfg->audit.file;
        auth = lip_auth_new(&ao, &err);
        if (!auth || lip_auth_attach(auth, srv, &err)) {
            lip_cli_fail("serve", "%s", err.msg);
            goto out;
        }
        lip_log_info("auth: %d API keys from %s; audit %s to %s", lip_auth_key_count(auth),
                     cfg->auth.keys_file, cfg->audit.enabled ? "of every request" :
                     "of admin actions and refusals", cfg->audit.file[0] ? cfg->audit.file :
                     "stderr");
    } else if (cfg->audit.enabled) {
        lip_log_warn("serve: audit.enabled needs auth.keys_file (the audit names the key of "
                     "each request); no audit log is written");
    }
    if (lip_rpc_server_start(srv, &err)) {
        lip_cli_fail("serve", "%s", err.msg);
        goto out;
    }
    lip_service_update_health(sv, srv);
    if (cfg->metrics.port) {
        lip_metrics *m = lip_metrics_global();
        scrape_ctx.sv = sv;
        scrape_ctx.srv = srv;
        if (!m || lip_metrics_register_std(m, &err) || lip_metrics_register_gpu(m, &err) < 0 ||
            lip_metrics_on_scrape(m, on_scrape, &scrape_ctx, &err) ||
            !(mhttp = lip_metrics_http_start(cfg->metrics.port, cfg->server.host, m, &err))) {
            lip_cli_fail("serve", "metrics: %s", err.msg);
            goto out;
        }
        lip_metrics_set_ready(m, true);
        lip_log_info("metrics on http://%s:%d/metrics (/healthz, /readyz)", cfg->server.host,
                     lip_metrics_http_port(mhttp));
    }
    /* Browser gateway: a thin WebSocket bridge onto this server's own lipsync.v1 port. */
    if (cfg->gateway.port) {
        char web[1024] = "";
        lip_gateway_opts go = lip_gateway_opts_default();
        go.host = cfg->server.host;
        go.port = cfg->gateway.port;
        go.grpc_port = lip_rpc_server_port(srv);
        if (cfg->gateway.web_root[0]) go.web_root = cfg->gateway.web_root;
        else if (lip_gateway_find_web_root(web, sizeof web, &err) == 0) go.web_root = web;
        else lip_log_warn("serve: %s (the page is not served; /ws still is)", err.msg);
        go.tls_ca = cfg->gateway.tls_ca; /* config validation: set when server.tls_cert is */
        go.tls_cert = cfg->gateway.tls_cert;
        go.tls_key = cfg->gateway.tls_key;
        go.tls_target_name = cfg->gateway.tls_target_name;
        if (!(gw = lip_gateway_start(&go, &err))) {
            lip_cli_fail("serve", "%s", err.msg);
            goto out;
        }
        lip_log_info("gateway: web page on http://%s:%d/ (WebSocket /ws, files %s, TTS %s)",
                     cfg->server.host, lip_gateway_port(gw), go.web_root ? go.web_root : "none",
                     lip_gateway_tts_available(gw) ? "espeak-ng" : "not installed");
    }
    int port = lip_rpc_server_port(srv);
    lip_log_info("serving on %s:%d (started in %.0f ms): %s, grpc.health.v1.Health", ro.host, port,
                 lip_time_ms() - t0, names);
    fprintf(stderr,
            "lipsync serve: ready on port %d. Try:\n"
            "  build/lipsync client health --port %d\n"
            "  build/lipsync client list --port %d\n"
            "  build/lipsync client infer --port %d --audio speech.wav --model %s --batch 8 "
            "--out /tmp/frames\n"
            "Stop with Ctrl-C (or SIGTERM).\n",
            port, port, port, port, *cfg->default_model ? cfg->default_model : "<model>");
    int sig;
    while ((sig = lip_rpc_wait_signal()) == SIGHUP) {
        /* Reload: new keys take effect for new calls; a bad file keeps the old keys. */
        lip_err rerr = {0};
        if (!auth) lip_log_info("SIGHUP: nothing to reload (no auth.keys_file)");
        else if (lip_auth_reload(auth, &rerr))
            lip_log_error("SIGHUP: keys not reloaded, the previous ones stay in force: %s",
                          rerr.msg);
        else lip_log_info("SIGHUP: %d API keys reloaded from %s", lip_auth_key_count(auth),
                          cfg->auth.keys_file);
    }
    lip_log_info("received signal %d: draining (grace %d s)", sig, cfg->server.grace_period_s);
    if (mhttp) lip_metrics_set_ready(lip_metrics_global(), false);
    lip_gateway_stop(gw); /* its sessions are clients of srv: closed before the drain */
    gw = NULL;
    lip_rpc_server_shutdown(srv, cfg->server.grace_period_s * 1000.0);
    lip_log_info("stopped cleanly");
    status = 0;
out:
    lip_gateway_stop(gw);
    lip_metrics_http_stop(mhttp);
    /* The service first: its remote-inference probe thread may still set health on srv. The
     * server is shut down (or never started) here, so no handler is running. */
    lip_service_free(sv);
    lip_rpc_server_free(srv);
    lip_auth_free(auth); /* after the server: its guard runs until the last call ends */
    lip_free(models);
    lip_config_free(cfg);
    return status;
}
