/* SPDX-License-Identifier: MIT */
/* tests/test_config.c: the config module against its contract (docs/CONFIG.md): role defaults,
 * YAML files in the lipsync and the seed Go layouts, flags, precedence in every order, each kind
 * of error with its file/line/key/reason, the models map, dump -> load round trips, and hostile
 * input (mutated YAML and failing allocations) that must be refused without crashing. */
#include "config/config.h"
#include "test.h"

#include <stdint.h>
#include <unistd.h>

/* ---- helpers -------------------------------------------------------------------------------- */
/* Writes text to a fresh temporary file; returns its path (static buffer, 8 in rotation). */
static const char *tmp_yaml(const char *text)
{
    static char paths[8][64];
    static int k;
    char *p = paths[k++ & 7];
    snprintf(p, sizeof paths[0], "/tmp/lipsync_cfg_XXXXXX");
    int fd = mkstemp(p);
    if (fd < 0) return "/nonexistent";
    size_t len = strlen(text);
    if (write(fd, text, len) != (ssize_t)len) p[0] = 0;
    close(fd);
    return p;
}

static int load_text(lip_config *cfg, const char *text, lip_err *err)
{
    const char *path = tmp_yaml(text);
    int rc = lip_config_load_file(cfg, path, err);
    unlink(path);
    return rc;
}

static char *dump_str(const lip_config *cfg)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) return NULL;
    lip_config_dump(cfg, f);
    fclose(f);
    return buf;
}

static bool contains(const char *hay, const char *needle) { return strstr(hay, needle) != NULL; }

/* ---- defaults ------------------------------------------------------------------------------- */
static void t_defaults_per_role(void)
{
    lip_config *m = lip_config_new(NULL), *i = lip_config_new("inference"),
               *c = lip_config_new("compositing");
    CHECK(m && i && c);
    if (!m || !i || !c) goto out;
    CHECK(m->server.role == LIP_ROLE_MONOLITHIC && m->server.port == 50053);
    CHECK(i->server.role == LIP_ROLE_INFERENCE && i->server.port == 50051);
    CHECK(c->server.role == LIP_ROLE_COMPOSITING && c->server.port == 50052);
    /* Services follow API.md 1.2's default ports: 6 in one process, 3 on 50051, 2 on 50052. */
    CHECK(m->server.services.count == 6);
    CHECK(i->server.services.count == 3 && !strcmp(i->server.services.items[0],
                                                   "inference.InferenceService"));
    CHECK(c->server.services.count == 2 && !strcmp(c->server.services.items[1],
                                                   "lipsync.LipSyncComposite"));
    CHECK(!strcmp(m->inference_server.url, "") && !strcmp(c->inference_server.url,
                                                          "localhost:50051"));
    /* API.md 1.7 limits and keepalive, MODEL/notes output defaults. */
    CHECK(m->server.max_message_size_mb == 100);
    CHECK(m->server.keepalive_time_s == 10 && m->server.keepalive_timeout_s == 3 &&
          m->server.min_ping_interval_s == 5);
    CHECK(m->output.jpeg_quality == 75 && m->output.format == LIP_CFG_OUT_JPEG);
    CHECK(m->output.paste_mode == LIP_CFG_PASTE_EXACT);
    CHECK(!strcmp(m->server.host, "0.0.0.0"));
    CHECK(!strcmp(m->audio.encoder_path, "models/audio_encoder.onnx"));
    CHECK(m->onnx.provider == LIP_PROVIDER_AUTO && m->log.level == LIP_LOG_INFO);
    CHECK(m->auto_load && m->metrics.port == 0 && m->model_count == 0);
    CHECK(!strcmp(m->server.tls_cert, "") && m->server.compression == LIP_COMPRESS_NONE);
    CHECK(!strcmp(lip_config_source(m, "server.port"), "role"));
    CHECK(!strcmp(lip_config_source(m, "output.jpeg_quality"), "default"));
    CHECK(lip_config_new("gpu") == NULL);
    lip_err err = {0};
    CHECK_RC(lip_config_validate(m, &err));
out:
    lip_config_free(m);
    lip_config_free(i);
    lip_config_free(c);
    lip_config_free(NULL); /* no-op */
}

/* The table's own consistency: the dump groups sections, so they must be contiguous; every key
 * has help; names are unique and findable. */
static void t_table(void)
{
    size_t n;
    const lip_config_key *k = lip_config_keys(&n);
    CHECK(n >= 50);
    for (size_t a = 0; a < n; a++) {
        CHECK_MSG(k[a].help && strlen(k[a].help) > 10, "%s has no help", k[a].name);
        for (size_t b = a + 1; b < n; b++)
            CHECK_MSG(strcmp(k[a].name, k[b].name), "%s twice", k[a].name);
        if (!(k[a].flags & LIP_CFG_F_MODEL)) CHECK(lip_config_find_key(k[a].name) == &k[a]);
        const char *dot = strchr(k[a].name, '.');
        if (!dot || a == 0) continue;
        size_t sl = (size_t)(dot - k[a].name);
        /* If the previous key is in another section, no earlier key may be in this one. */
        if (strncmp(k[a - 1].name, k[a].name, sl + 1) != 0)
            for (size_t b = 0; b + 1 < a; b++)
                CHECK_MSG(strncmp(k[b].name, k[a].name, sl + 1) != 0, "section of %s split",
                          k[a].name);
    }
    CHECK(lip_config_find_key("models.sanders.model_path") != NULL);
    CHECK(lip_config_find_key("logging.level") == lip_config_find_key("log.level"));
    CHECK(lip_config_find_key("server.nope") == NULL);
    CHECK(!strcmp(lip_config_enum_name("onnx.provider", LIP_PROVIDER_TENSORRT), "tensorrt"));
    CHECK(lip_config_enum_name("onnx.provider", 9) == NULL);
    CHECK(lip_config_enum_name("server.port", 0) == NULL);
}

/* ---- files ---------------------------------------------------------------------------------- */
static void t_file_parsing(void)
{
    lip_config *cfg = lip_config_new(NULL);
    lip_err err = {0};
    int rc = load_text(cfg,
                       "# comment\n"
                       "server:\n"
                       "  host: 127.0.0.1\n"
                       "  port: 6000\n"
                       "  services: [lipsync.LipSync, \"inference.InferenceService\"]\n"
                       "capacity:\n"
                       "  max_memory_gb: 12.5\n"
                       "  eviction_policy: LRU\n"
                       "onnx: {provider: cuda, trt_fp16: yes}\n"
                       "output.jpeg_quality: 90\n" /* dotted form at the top level */
                       "log:\n"
                       "  level: debug\n"
                       "  json: on\n"
                       "default_model: sanders\n"
                       "auto_load: false\n"
                       "models_root: '/srv/avatars'\n"
                       "onnx.trt_cache_dir:\n", /* YAML null -> empty string */
                       &err);
    CHECK_MSG(rc == 0, "%s", err.msg);
    CHECK(!strcmp(cfg->server.host, "127.0.0.1") && cfg->server.port == 6000);
    CHECK(cfg->server.services.count == 2 &&
          !strcmp(cfg->server.services.items[1], "inference.InferenceService"));
    CHECK_NEAR(cfg->capacity.max_memory_gb, 12.5, 0); /* 12.5 is exact in binary */
    CHECK(cfg->capacity.eviction_policy == LIP_CFG_EVICT_LRU);
    CHECK(cfg->onnx.provider == LIP_PROVIDER_CUDA && cfg->onnx.trt_fp16);
    CHECK(cfg->output.jpeg_quality == 90);
    CHECK(cfg->log.level == LIP_LOG_DEBUG && cfg->log.json);
    CHECK(!strcmp(cfg->default_model, "sanders") && !cfg->auto_load);
    CHECK(!strcmp(cfg->models_root, "/srv/avatars") && !strcmp(cfg->onnx.trt_cache_dir, ""));
    CHECK(!strcmp(lip_config_source(cfg, "server.port"), "file"));
    CHECK(lip_config_warning_count(cfg) == 0);
    /* An empty file and a comment-only file are valid and change nothing. */
    CHECK_RC(load_text(cfg, "", &err));
    CHECK_RC(load_text(cfg, "# nothing\n", &err));
    CHECK(cfg->server.port == 6000);
    lip_config_free(cfg);
}

static void t_precedence(void)
{
    lip_err err = {0};
    const char *file = "server:\n  role: inference\n  port: 7000\n  host: 10.0.0.1\n";
    /* Flags first, then the file: the flag still wins. */
    lip_config *a = lip_config_new(NULL);
    CHECK_RC(lip_config_set(a, "server.port", "7100", &err));
    CHECK_RC(load_text(a, file, &err));
    CHECK(a->server.port == 7100 && !strcmp(a->server.host, "10.0.0.1"));
    CHECK(a->server.role == LIP_ROLE_INFERENCE);
    /* The file's role changes the role defaults of keys nobody set. */
    CHECK(a->server.services.count == 3);
    lip_config_free(a);

    /* File first, then flags. */
    lip_config *b = lip_config_new("compositing");
    CHECK_RC(load_text(b, file, &err));
    CHECK(b->server.port == 7000);
    CHECK_RC(lip_config_set(b, "server.port", "7200", &err));
    CHECK(b->server.port == 7200 && !strcmp(lip_config_source(b, "server.port"), "flag"));
    /* inference_server.url was the compositing role default; the file's role resets it. */
    CHECK(!strcmp(b->inference_server.url, ""));
    lip_config_free(b);

    /* A role flag beats the file's role; the port follows the flag's role, not the file's. */
    lip_config *c = lip_config_new(NULL);
    CHECK_RC(lip_config_set(c, "server.role", "compositing", &err));
    CHECK_RC(load_text(c, "server:\n  role: inference\n", &err));
    CHECK(c->server.role == LIP_ROLE_COMPOSITING && c->server.port == 50052);
    CHECK(!strcmp(c->inference_server.url, "localhost:50051"));
    /* A second file overrides the first. */
    CHECK_RC(load_text(c, "output:\n  jpeg_quality: 50\n", &err));
    CHECK_RC(load_text(c, "output:\n  jpeg_quality: 60\n", &err));
    CHECK(c->output.jpeg_quality == 60);
    /* A value the flag overrides is still checked: a bad file is reported. */
    CHECK(lip_config_set(c, "output.png_level", "3", &err) == 0);
    CHECK(load_text(c, "output:\n  png_level: 42\n", &err) == LIP_EINVAL);
    CHECK(c->output.png_level == 3);
    lip_config_free(c);
}

/* Each error: return code, and a message naming the file, line, key and reason. */
static void expect_error(const char *yaml, int code, const char *line_col, const char *key,
                         const char *reason)
{
    lip_config *cfg = lip_config_new(NULL);
    lip_err err = {0};
    const char *path = tmp_yaml(yaml);
    int rc = lip_config_load_file(cfg, path, &err);
    CHECK_MSG(rc == code, "rc %d, expected %d for %s (%s)", rc, code, key, err.msg);
    CHECK_MSG(contains(err.msg, path), "no file name in '%s'", err.msg);
    char where[128];
    snprintf(where, sizeof where, "%s:%s", path, line_col);
    CHECK_MSG(contains(err.msg, where), "no '%s' in '%s'", where, err.msg);
    if (key) CHECK_MSG(contains(err.msg, key), "no key '%s' in '%s'", key, err.msg);
    CHECK_MSG(contains(err.msg, reason), "no '%s' in '%s'", reason, err.msg);
    unlink(path);
    lip_config_free(cfg);
}

static void t_errors(void)
{
    expect_error("server:\n  host: x\n  prot: 50053\n", LIP_EINVAL, "3:3:", "server.prot",
                 "unknown key (did you mean 'server.port'?)");
    expect_error("bogus_section:\n  a: 1\n", LIP_EINVAL, "1:1:", "bogus_section", "unknown key");
    expect_error("output:\n  jpeg_quality: 101\n", LIP_EINVAL, "2:17:", "output.jpeg_quality",
                 "101 is out of range (expected an integer in [1, 100])");
    expect_error("server:\n  port: abc\n", LIP_EINVAL, "2:9:", "server.port",
                 "expected an integer in [0, 65535], got 'abc'");
    expect_error("server:\n  port: 12.5\n", LIP_EINVAL, "2:9:", "server.port", "got '12.5'");
    expect_error("server:\n  port: [1, 2]\n", LIP_EINVAL, "2:9:", "server.port", "got a list");
    expect_error("server:\n  port: {a: 1}\n", LIP_EINVAL, "2:9:", "server.port",
                 "expected a value, got a mapping");
    expect_error("server: 5\n", LIP_EINVAL, "1:9:", "server", "is a section");
    expect_error("auto_load: maybe\n", LIP_EINVAL, "1:12:", "auto_load",
                 "expected true or false, got 'maybe'");
    expect_error("capacity:\n  eviction_policy: fifo\n", LIP_EINVAL, "2:20:",
                 "capacity.eviction_policy", "expected one of lfu|lru, got 'fifo'");
    expect_error("capacity:\n  max_memory_gb: -1\n", LIP_EINVAL, "2:18:", "capacity.max_memory_gb",
                 "out of range");
    expect_error("capacity:\n  max_memory_gb: nan\n", LIP_EINVAL, "2:18:", "capacity.max_memory_gb",
                 "expected a number");
    expect_error("server:\n  port:\n", LIP_EINVAL, "2:8:", "server.port", "missing value");
    expect_error("server:\n  port: 1\n  port: 2\n", LIP_EINVAL, "3:9:", "server.port",
                 "duplicate key (first set at line 2)");
    expect_error("server:\n  port: 1\nlog: {}\nserver:\n  host: x\n", LIP_EINVAL, "4:1:", "server",
                 "duplicate key (first at line 1)");
    expect_error("models: {a: {}}\nmodels: {b: {}}\n", LIP_EINVAL, "2:1:", "models",
                 "duplicate key (first at line 1)");
    expect_error("log:\n  level: info\nlogging:\n  level: debug\n", LIP_EINVAL, "4:10:",
                 "logging.level", "duplicate key (first set at line 2)");
    expect_error("logging:\n  level: loud\n", LIP_EINVAL, "2:10:", "key 'logging.level'",
                 "expected one of error|warn|info|debug, got 'loud'");
    expect_error("server.services: [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["
                 "]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]\n",
                 LIP_EINVAL, "1:", NULL, "nested more than 32 levels deep");
    expect_error("server.port: 1\nserver:\n  port: 2\n", LIP_EINVAL, "3:9:", "server.port",
                 "duplicate key (first set at line 1)");
    expect_error("server:\n  port: 1\n host: x\n", LIP_EFORMAT, "3:", NULL, "malformed YAML");
    expect_error("server: {port: 1\n", LIP_EFORMAT, "2:", NULL, "malformed YAML");
    expect_error("a: 1\n---\nb: 2\n", LIP_EFORMAT, "3:1:", NULL, "more than one YAML document");
    expect_error("- 1\n- 2\n", LIP_EINVAL, "1:1:", "(top level)", "expected a mapping of keys");
    expect_error("server:\n  host: \"a\\0b\"\n", LIP_EINVAL, "2:9:", "server.host", "NUL byte");
    expect_error("server:\n  host: \"a\\tb\"\n", LIP_EINVAL, "2:9:", "server.host",
                 "control character");
    expect_error("server:\n  services: [lipsync.Nope]\n", LIP_EINVAL, "2:13:", "server.services",
                 "unknown service 'lipsync.Nope'");
    expect_error("default_model: ../etc\n", LIP_EINVAL, "1:16:", "default_model",
                 "not a valid model id");
    expect_error("models:\n  ../x:\n    num_frames: 3\n", LIP_EINVAL, "2:3:", "models",
                 "not valid");
    expect_error("models:\n  a:\n    modle_path: x\n", LIP_EINVAL, "3:5:", "models.a.modle_path",
                 "unknown model setting (did you mean 'model_path'?)");
    expect_error("models:\n  a: {}\n  a: {}\n", LIP_EINVAL, "3:3:", "models.a",
                 "duplicate model id (first defined at line 2)");
    expect_error("models: [a, b]\n", LIP_EINVAL, "1:9:", "models", "expected a mapping");
    expect_error("? [a, b]\n: 1\n", LIP_EINVAL, "1:3:", "(top level)", "keys must be strings");
    expect_error("a: &x {b: *x}\n", LIP_EINVAL, "1:", "a", "unknown key");
    expect_error("server: &s {log: *s}\n", LIP_EINVAL, "1:", "server.log", "unknown key");

    /* A missing file: its own code, and the path in the message. */
    lip_config *cfg = lip_config_new(NULL);
    lip_err err = {0};
    CHECK(lip_config_load_file(cfg, "/nonexistent/lipsync.yaml", &err) == LIP_ENOTFOUND);
    CHECK(contains(err.msg, "/nonexistent/lipsync.yaml") && contains(err.msg, "config file"));
    CHECK(lip_config_load_file(cfg, "/tmp", &err) < 0); /* a directory */
    /* Set API errors. */
    CHECK(lip_config_set(cfg, "server.prot", "1", &err) == LIP_EINVAL);
    CHECK(contains(err.msg, "key 'server.prot': unknown key (did you mean 'server.port'?)"));
    CHECK(lip_config_set(cfg, "output.jpeg_quality", "0", &err) == LIP_EINVAL);
    CHECK(contains(err.msg, "0 is out of range"));
    CHECK(cfg->output.jpeg_quality == 75); /* unchanged on error */
    CHECK(lip_config_set(cfg, "models.a/b.num_frames", "1", &err) == LIP_EINVAL);
    CHECK(contains(err.msg, "not a valid model id"));
    CHECK(lip_config_set(cfg, "server.services", "lipsync.LipSync,,x", &err) == LIP_EINVAL);
    CHECK(contains(err.msg, "empty item"));
    lip_config_free(cfg);
}

/* ---- models --------------------------------------------------------------------------------- */
static void t_models_map(void)
{
    lip_config *cfg = lip_config_new(NULL);
    lip_err err = {0};
    int rc = load_text(cfg,
                       "models_root: /data/models\n"
                       "models:\n"
                       "  sanders:\n"
                       "    model_path: sanders/checkpoint/model_best.onnx\n"
                       "    background_dir: sanders/frames\n"
                       "    crop_rects_path: sanders/crop_rects.json\n"
                       "    num_frames: 523\n"
                       "    preload_backgrounds: true\n"
                       "    preload: true\n" /* Go inference layout's name for preload_model */
                       "    preferred_gpu: 1\n"
                       "    source_video: sanders/full_body_video.mp4\n"
                       "  v1.2-bob:\n"    /* ids may contain dots */
                       "  empty: {}\n",
                       &err);
    CHECK_MSG(rc == 0, "%s", err.msg);
    CHECK(lip_config_model_count(cfg) == 3);
    const lip_config_model *s = lip_config_model_find(cfg, "sanders");
    CHECK(s && s == lip_config_model_at(cfg, 0));
    if (s) {
        CHECK(!strcmp(s->model_path, "sanders/checkpoint/model_best.onnx"));
        CHECK(!strcmp(s->background_dir, "sanders/frames"));
        CHECK(!strcmp(s->crop_rects_path, "sanders/crop_rects.json"));
        CHECK(!strcmp(s->source_video, "sanders/full_body_video.mp4"));
        CHECK(s->num_frames == 523 && s->preload_backgrounds && s->preload_model);
        CHECK(s->preferred_gpu == 1);
        char path[256];
        CHECK_RC(lip_config_resolve_path(cfg, s->model_path, path, sizeof path, &err));
        CHECK(!strcmp(path, "/data/models/sanders/checkpoint/model_best.onnx"));
        CHECK_RC(lip_config_resolve_path(cfg, "/abs/x.onnx", path, sizeof path, &err));
        CHECK(!strcmp(path, "/abs/x.onnx"));
        CHECK(lip_config_resolve_path(cfg, s->model_path, path, 8, &err) == LIP_EINVAL);
    }
    const lip_config_model *b = lip_config_model_find(cfg, "v1.2-bob");
    CHECK(b && b->preferred_gpu == -1 && !b->preload_model && !strcmp(b->model_path, ""));
    CHECK(lip_config_model_at(cfg, 3) == NULL && lip_config_model_find(cfg, "nobody") == NULL);
    /* Model keys from flags / set: create or update, at flag precedence. */
    CHECK_RC(lip_config_set(cfg, "models.v1.2-bob.num_frames", "10", &err));
    CHECK_RC(lip_config_set(cfg, "models.carol.model_path", "c/unet.onnx", &err));
    CHECK(lip_config_model_count(cfg) == 4);
    b = lip_config_model_find(cfg, "v1.2-bob");
    CHECK(b && b->num_frames == 10);
    CHECK(!strcmp(lip_config_source(cfg, "models.v1.2-bob.num_frames"), "flag"));
    /* A later file does not override the flag, but does set other fields. */
    CHECK_RC(load_text(cfg, "models:\n  v1.2-bob:\n    num_frames: 99\n    preload_model: yes\n",
                       &err));
    b = lip_config_model_find(cfg, "v1.2-bob");
    CHECK(b && b->num_frames == 10 && b->preload_model);
    CHECK(lip_config_set(cfg, "models.carol.preferred_gpu", "64", &err) == LIP_EINVAL);
    CHECK_RC(lip_config_model_add(cfg, "dave", &err));
    CHECK(lip_config_model_add(cfg, "..", &err) == LIP_EINVAL);
    CHECK(lip_config_model_count(cfg) == 5);
    /* preferred_gpu must name a configured device once gpus.count is known. */
    CHECK_RC(lip_config_set(cfg, "gpus.count", "1", &err));
    CHECK(lip_config_validate(cfg, &err) == LIP_EINVAL);
    CHECK(contains(err.msg, "models.sanders.preferred_gpu") && contains(err.msg, "gpus.count 1"));
    CHECK_RC(lip_config_set(cfg, "gpus.count", "2", &err));
    CHECK_RC(lip_config_validate(cfg, &err));
    lip_config_free(cfg);
}

/* The seed Go servers' config.yaml files (monolithic, inference, compositing), as published
 * with them: they must load unchanged, unused keys as warnings. */
static void t_go_seed_layout(void)
{
    static const char *mono =
        "server:\n  port: \":50053\"\n  max_message_size_mb: 100\n  worker_count_per_gpu: 8\n"
        "  queue_size: 50\n"
        "gpus:\n  enabled: true\n  count: 1\n  memory_gb_per_gpu: 24\n"
        "  assignment_strategy: \"round-robin\"\n  allow_multi_gpu_models: false\n"
        "capacity:\n  max_models: 40\n  max_memory_gb: 20\n  background_cache_frames: 600\n"
        "  eviction_policy: \"lfu\"\n  idle_timeout_minutes: 60\n"
        "onnx:\n  library_path: \"C:/onnxruntime-1.22.0/lib/onnxruntime.dll\"\n"
        "  cuda_streams_per_worker: 2\n  intra_op_threads: 4\n  inter_op_threads: 2\n"
        "output:\n  format: \"jpeg\"\n  jpeg_quality: 75\n"
        "logging:\n  level: \"info\"\n  log_inference_times: true\n  buffered_logging: true\n"
        "  sample_rate: 0\n  save_debug_files: false\n"
        "models_root: \"d:/Projects/webcodecstest/minimal_server/models\"\n"
        "models:\n  sanders:\n    model_path: \"sanders/checkpoint/model_best.onnx\"\n"
        "    background_dir: \"sanders/frames\"\n"
        "    source_video: \"sanders/full_body_video.mp4\"  # auto-extract\n"
        "    crop_rects_path: \"sanders/crop_rects.json\"\n    num_frames: 523\n"
        "    preload_backgrounds: true\n    preload_model: false\n    preferred_gpu: -1\n"
        "    crops_video_path: \"sanders/crops_328_video.mp4\"\n";
    static const char *inference =
        "server:\n  port: \":50051\"\n  max_message_size_mb: 100\n  worker_count_per_gpu: 8\n"
        "  queue_size: 50\n"
        "gpus:\n  enabled: true\n  count: 1\n  memory_gb_per_gpu: 24\n"
        "  assignment_strategy: \"least-loaded\"\n"
        "onnx:\n  library_path: \"/usr/local/lib/libonnxruntime.so\"\n  use_cuda: true\n"
        "  cuda_device_id: 0\n"
        "capacity:\n  max_models_per_gpu: 1000\n  eviction_policy: \"lfu\"\n"
        "  idle_timeout_minutes: 60\n"
        "models:\n  sanders:\n    model_path: \"d:/x/sanders/checkpoint/model_best.onnx\"\n"
        "    preload: false\n    memory_estimate_mb: 500\n";
    static const char *compositing =
        "server:\n  port: \":50052\"\n  max_message_size_mb: 100\n"
        "inference_server:\n  url: \"localhost:50051\"\n  timeout_seconds: 10\n  max_retries: 3\n"
        "capacity:\n  max_models: 11000\n  background_cache_frames: 600\n"
        "  eviction_policy: \"lfu\"\n  idle_timeout_minutes: 60\n"
        "output:\n  format: \"jpeg\"\n  jpeg_quality: 75\n"
        "models:\n  sanders:\n    background_dir: \"d:/x/sanders/frames\"\n"
        "    crop_rects_path: \"d:/x/sanders/crop_rects.json\"\n    num_frames: 523\n"
        "    preload_backgrounds: true\n"
        "logging:\n  level: \"debug\"\n  log_compositing_times: true\n  log_cache_stats: false\n";
    lip_err err = {0};
    lip_log_set_level(LIP_LOG_ERROR); /* the warnings are checked below, not printed */

    lip_config *m = lip_config_new("monolithic");
    int rc = load_text(m, mono, &err);
    CHECK_MSG(rc == 0, "%s", err.msg);
    CHECK(m->server.port == 50053 && m->server.worker_count_per_gpu == 8);
    CHECK(m->gpus.count == 1 && m->gpus.assignment_strategy == LIP_GPU_ROUND_ROBIN);
    CHECK(m->capacity.max_models == 40 && m->capacity.idle_timeout_minutes == 60);
    CHECK(m->onnx.intra_op_threads == 4 && m->log.level == LIP_LOG_INFO);
    CHECK(lip_config_model_count(m) == 1);
    const lip_config_model *s = lip_config_model_find(m, "sanders");
    CHECK(s && s->num_frames == 523 && s->preload_backgrounds && s->preferred_gpu == -1);
    /* gpus.enabled, memory_gb_per_gpu, allow_multi_gpu_models, onnx.library_path,
     * cuda_streams_per_worker, logging.{log_inference_times,buffered_logging,sample_rate,
     * save_debug_files}, models.sanders.crops_video_path */
    CHECK_MSG(lip_config_warning_count(m) == 10, "%d warnings", lip_config_warning_count(m));
    bool found = false;
    for (int i = 0; i < lip_config_warning_count(m); i++)
        found |= contains(lip_config_warning(m, i), "onnx.library_path") &&
                 contains(lip_config_warning(m, i), ":19:");
    CHECK(found);
    CHECK(lip_config_warning(m, 99) == NULL);
    lip_config_free(m);

    lip_config *i = lip_config_new("inference");
    rc = load_text(i, inference, &err);
    CHECK_MSG(rc == 0, "%s", err.msg);
    CHECK(i->server.port == 50051 && i->gpus.assignment_strategy == LIP_GPU_LEAST_LOADED);
    s = lip_config_model_find(i, "sanders");
    CHECK(s && !s->preload_model &&
          !strcmp(s->model_path, "d:/x/sanders/checkpoint/model_best.onnx"));
    CHECK(lip_config_warning_count(i) == 6);
    lip_config_free(i);

    lip_config *c = lip_config_new("compositing");
    rc = load_text(c, compositing, &err);
    CHECK_MSG(rc == 0, "%s", err.msg);
    CHECK(c->server.port == 50052 && c->capacity.max_models == 11000);
    CHECK(!strcmp(c->inference_server.url, "localhost:50051") && c->log.level == LIP_LOG_DEBUG);
    CHECK(lip_config_warning_count(c) == 2);
    lip_config_free(c);
    lip_log_set_level(LIP_LOG_INFO);
}

/* ---- dump ----------------------------------------------------------------------------------- */
static void t_dump_roundtrip(void)
{
    lip_config *a = lip_config_new("compositing");
    lip_err err = {0};
    static const char *const sets[][2] = {
        {"server.host", "::1"},
        {"server.services", "compositing.CompositingService, lipsync.v1.Stream"},
        {"capacity.max_memory_gb", "0.1"},
        {"capacity.eviction_policy", "lru"},
        {"onnx.provider", "tensorrt"},
        {"onnx.trt_cache_dir", "/var/cache/trt \"quoted\" \\ back # not a comment: x"},
        {"output.paste_mode", "feather"},
        {"models_root", "/srv/ävätars"},
        {"default_model", "sanders"},
        {"auto_load", "false"},
        {"log.level", "warn"},
        {"metrics.port", "9100"},
        {"models.sanders.model_path", "sanders/unet.onnx"},
        {"models.sanders.preferred_gpu", "0"},
        {"models.1.5: odd.num_frames", NULL}, /* invalid id: expected to fail below */
        {"models.v2.0.preload_model", "true"},
    };
    for (size_t i = 0; i < LIP_ARRAY_LEN(sets); i++) {
        if (!sets[i][1]) {
            CHECK(lip_config_set(a, sets[i][0], "1", &err) == LIP_EINVAL);
            continue;
        }
        int rc = lip_config_set(a, sets[i][0], sets[i][1], &err);
        CHECK_MSG(rc == 0, "%s", err.msg);
    }
    char *d1 = dump_str(a);
    CHECK(d1 && contains(d1, "  port: 50052\n") && contains(d1, "  \"v2.0\":\n"));
    CHECK(d1 && contains(d1, "max_memory_gb: 0.1\n")); /* shortest form that reads back */
    lip_config *b = lip_config_new(NULL);
    int rc = lip_config_load_string(b, d1 ? d1 : "", d1 ? strlen(d1) : 0, "dump", &err);
    CHECK_MSG(rc == 0, "%s", err.msg);
    char *d2 = dump_str(b);
    CHECK(d1 && d2 && !strcmp(d1, d2));
    CHECK(b->server.role == LIP_ROLE_COMPOSITING && b->capacity.max_memory_gb == 0.1);
    CHECK(!strcmp(b->onnx.trt_cache_dir, a->onnx.trt_cache_dir));
    CHECK(lip_config_model_count(b) == 2);
    char buf[128];
    CHECK_RC(lip_config_format(b, "server.services", buf, sizeof buf, &err));
    CHECK(!strcmp(buf, "compositing.CompositingService,lipsync.v1.Stream"));
    CHECK_RC(lip_config_format(b, "models.v2.0.preload_model", buf, sizeof buf, &err));
    CHECK(!strcmp(buf, "true"));
    CHECK(lip_config_format(b, "server.services", buf, 8, &err) == LIP_EINVAL);
    CHECK(lip_config_format(b, "nope", buf, sizeof buf, &err) == LIP_ENOTFOUND);
    free(d1);
    free(d2);
    lip_config_free(a);
    lip_config_free(b);

    /* The defaults of every role round-trip too (empty strings, empty models map). */
    for (int r = 0; r < 3; r++) {
        const char *role = r == 0 ? "monolithic" : r == 1 ? "inference" : "compositing";
        lip_config *x = lip_config_new(role), *y = lip_config_new(NULL);
        char *e1 = dump_str(x);
        CHECK_RC(lip_config_load_string(y, e1, strlen(e1), role, &err));
        char *e2 = dump_str(y);
        CHECK(!strcmp(e1, e2));
        free(e1);
        free(e2);
        lip_config_free(x);
        lip_config_free(y);
    }
}

static void t_help(void)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    lip_config_help(f);
    fclose(f);
    size_t n;
    const lip_config_key *k = lip_config_keys(&n);
    for (size_t i = 0; i < n; i++) {
        char flag[160];
        snprintf(flag, sizeof flag, "--%s  (", k[i].name);
        CHECK_MSG(contains(buf, flag), "help lacks %s", flag);
    }
    CHECK(contains(buf, "default by role: monolithic \"50053\", inference \"50051\""));
    CHECK(contains(buf, "(one of jpeg|png|raw; default \"jpeg\")"));
    CHECK(contains(buf, "(an integer in [1, 100]; default \"75\"; runtime)"));
    free(buf);
}

/* ---- flags ---------------------------------------------------------------------------------- */
static void t_args(void)
{
    lip_err err = {0};
    const char *file =
        tmp_yaml("server:\n  port: 7000\n  host: 10.1.1.1\noutput:\n  jpeg_quality: 20\n");
    char cfgflag[96];
    snprintf(cfgflag, sizeof cfgflag, "--config=%s", file);
    char *argv[] = {"serve", "--server.port", "7001", "-v", "--log.json", "--output.format=png",
                    cfgflag, "--keep", "x", "--auto_load", "false", "--role", "inference",
                    "--onnx.trt_fp16", "--", "--server.port", "9", NULL};
    int argc = (int)LIP_ARRAY_LEN(argv) - 1;
    lip_config *cfg = lip_config_new(NULL);
    int rc = lip_config_apply_args(cfg, &argc, argv, &err);
    CHECK_MSG(rc == 0, "%s", err.msg);
    CHECK(argc == 7);
    if (argc == 7) {
        const char *want[] = {"serve", "-v", "--keep", "x", "--", "--server.port", "9"};
        for (int i = 0; i < 7; i++) CHECK_MSG(!strcmp(argv[i], want[i]), "argv[%d]=%s", i, argv[i]);
        CHECK(argv[7] == NULL);
    }
    CHECK(cfg->server.port == 7001 && !strcmp(cfg->server.host, "10.1.1.1"));
    CHECK(cfg->output.jpeg_quality == 20 && cfg->output.format == LIP_CFG_OUT_PNG);
    CHECK(cfg->log.json && !cfg->auto_load && cfg->onnx.trt_fp16);
    CHECK(cfg->server.role == LIP_ROLE_INFERENCE);
    lip_config_free(cfg);
    unlink(file);

    /* Errors name the flag. */
    struct {
        char *args[4];
        const char *msg;
    } bad[] = {
        {{"x", "--server.prot", "1", NULL},
         "--server.prot: unknown key (did you mean 'server.port'?)"},
        {{"x", "--server.port", NULL}, "--server.port: missing value"},
        {{"x", "--server.port=70000", NULL}, "--server.port: 70000 is out of range"},
        {{"x", "--models.a.nope=1", NULL}, "--models.a.nope: unknown key"},
        {{"x", "--config", "/nonexistent.yaml", NULL},
         "config file: cannot open /nonexistent.yaml"},
        {{"x", "--role=gpu", NULL},
         "--server.role: expected one of monolithic|inference|compositing"},
    };
    for (size_t i = 0; i < LIP_ARRAY_LEN(bad); i++) {
        int n = 0;
        while (bad[i].args[n]) n++;
        lip_config *c = lip_config_new(NULL);
        CHECK(lip_config_apply_args(c, &n, bad[i].args, &err) < 0);
        CHECK_MSG(contains(err.msg, bad[i].msg), "'%s' lacks '%s'", err.msg, bad[i].msg);
        lip_config_free(c);
    }
}

static void t_validate(void)
{
    lip_config *cfg = lip_config_new(NULL);
    lip_err err = {0};
    CHECK_RC(lip_config_set(cfg, "metrics.port", "50053", &err));
    CHECK(lip_config_validate(cfg, &err) == LIP_EINVAL && contains(err.msg, "metrics.port"));
    CHECK_RC(lip_config_set(cfg, "metrics.port", "9100", &err));
    CHECK_RC(lip_config_set(cfg, "gpus.count", "2", &err));
    CHECK_RC(lip_config_set(cfg, "onnx.device_id", "2", &err));
    CHECK(lip_config_validate(cfg, &err) == LIP_EINVAL && contains(err.msg, "onnx.device_id"));
    CHECK_RC(lip_config_set(cfg, "onnx.device_id", "1", &err));
    CHECK_RC(lip_config_validate(cfg, &err));
    /* TLS needs the certificate and the key. */
    CHECK_RC(lip_config_set(cfg, "server.tls_cert", "/etc/lipsync/cert.pem", &err));
    CHECK(lip_config_validate(cfg, &err) == LIP_EINVAL);
    CHECK(contains(err.msg, "key 'server.tls_key': must be set together with server.tls_cert"));
    CHECK_RC(lip_config_set(cfg, "server.tls_key", "/etc/lipsync/key.pem", &err));
    CHECK_RC(lip_config_validate(cfg, &err));
    CHECK_RC(lip_config_set(cfg, "server.compression", "gzip", &err));
    CHECK(cfg->server.compression == LIP_COMPRESS_GZIP);
    lip_config_free(cfg);
}

/* The shipped example (deploy/lipsync.yaml) loads without errors or warnings and validates; it
 * matches the built-in defaults except where it says otherwise. */
static void t_deploy_example(void)
{
    lip_config *cfg = lip_config_new(NULL);
    lip_err err = {0};
    int rc = lip_config_load_file(cfg, "deploy/lipsync.yaml", &err);
    if (rc == LIP_ENOTFOUND) {
        lip_config_free(cfg);
        SKIP("deploy/lipsync.yaml not found (run from the repository root)");
    }
    CHECK_MSG(rc == 0, "%s", err.msg);
    CHECK(lip_config_warning_count(cfg) == 0);
    CHECK_RC(lip_config_validate(cfg, &err));
    CHECK(cfg->server.port == 50053 && !strcmp(cfg->default_model, "demo"));
    const lip_config_model *d = lip_config_model_find(cfg, "demo");
    CHECK(d && d->preload_model && !strcmp(d->model_path, ""));
    lip_config_free(cfg);
}

/* docs/CONFIG.md documents every key of the table (the reference table is generated from it). */
static void t_docs_cover_keys(void)
{
    uint8_t *doc;
    size_t len;
    lip_err err = {0};
    if (lip_file_read("docs/CONFIG.md", 0, &doc, &len, &err) != 0)
        SKIP("docs/CONFIG.md not found (run from the repository root)");
    size_t n;
    const lip_config_key *k = lip_config_keys(&n);
    for (size_t i = 0; i < n; i++) {
        char cell[160];
        snprintf(cell, sizeof cell, "| `%s` |", k[i].name);
        CHECK_MSG(contains((const char *)doc, cell), "docs/CONFIG.md lacks %s", k[i].name);
    }
    lip_free(doc);
}

/* A copy is deep: same dump, same sources, and changing it leaves the original alone. */
static void t_dup(void)
{
    lip_err err = {0};
    lip_config *a = lip_config_new("inference");
    lip_log_set_level(LIP_LOG_ERROR);
    CHECK_RC(load_text(a, "server.services: [lipsync.LipSync]\nlogging.x: 1\n"
                          "models: {a: {model_path: p}, b.c: {num_frames: 3}}\n", &err));
    lip_log_set_level(LIP_LOG_INFO);
    CHECK_RC(lip_config_set(a, "server.host", "h1", &err));
    lip_config *b = lip_config_dup(a);
    CHECK(b != NULL);
    if (!b) goto out;
    char *da = dump_str(a), *db = dump_str(b);
    CHECK(da && db && !strcmp(da, db));
    free(da);
    free(db);
    CHECK(!strcmp(lip_config_source(b, "server.host"), "flag"));
    CHECK(!strcmp(lip_config_source(b, "server.services"), "file"));
    CHECK(!strcmp(lip_config_source(b, "server.port"), "role"));
    CHECK(lip_config_warning_count(b) == 1);
    CHECK(b->server.host != a->server.host && b->models != a->models);
    CHECK_RC(lip_config_set(b, "server.host", "h2", &err));
    CHECK_RC(lip_config_set(b, "models.b.c.num_frames", "4", &err));
    CHECK_RC(lip_config_set(b, "models.new.num_frames", "5", &err));
    CHECK(!strcmp(a->server.host, "h1") && lip_config_model_find(a, "b.c")->num_frames == 3);
    CHECK(lip_config_model_count(a) == 2 && lip_config_model_count(b) == 3);
    CHECK(lip_config_model_find(b, "new") && lip_config_model_find(b, "b.c")->num_frames == 4);
    CHECK(lip_config_dup(NULL) == NULL);
    /* Every allocation of the copy may fail: NULL, never a crash or a leak (ASan). */
    int nulls = 0;
    for (long nth = 1; nth <= 80; nth++) {
        lip_alloc_fail_at(nth);
        lip_config *c = lip_config_dup(a);
        lip_alloc_fail_at(0);
        nulls += c == NULL;
        lip_config_free(c);
    }
    CHECK(nulls > 10);
out:
    lip_config_free(a);
    lip_config_free(b);
}

/* ---- hostile input -------------------------------------------------------------------------- */
static uint32_t rng_state = 12345;
static uint32_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 17;
    rng_state ^= rng_state << 5;
    return rng_state;
}

/* Mutated YAML: byte flips, YAML punctuation, deletions, duplicated spans and truncation of
 * valid files. Every load must end in 0 or an error with a message; ASan/UBSan builds
 * (make SANITIZE=1) check memory on the same loop. */
static void t_fuzz(void)
{
    static const char *seeds[] = {
        "server:\n  port: \":50053\"\n  services: [lipsync.LipSync]\ngpus: {count: 1}\n"
        "models:\n  sanders:\n    model_path: a/b.onnx\n    num_frames: 523\n  v1.2: ~\n"
        "logging:\n  level: info\n  x: &a [1, 2]\n  y: *a\n",
        "capacity: {max_memory_gb: 1.5, eviction_policy: lru}\noutput.jpeg_quality: 80\n"
        "models_root: \"s\\u00e4\"\ndefault_model: a\nmodels: {a: {preload: yes}, b: {}}\n",
    };
    static const char punct[] = ":-[]{},&*!|>'\"%@`#?\n \t\\\x80\xff";
    char buf[1024];
    int ok = 0, failed = 0, bad_msg = 0;
    lip_log_set_level(LIP_LOG_ERROR);
    for (int iter = 0; iter < 10000; iter++) {
        const char *seed = seeds[iter % 2];
        size_t len = strlen(seed);
        memcpy(buf, seed, len);
        int muts = 1 + (int)(rng() % 4);
        for (int m = 0; m < muts && len > 0; m++) {
            size_t at = rng() % len;
            switch (rng() % 6) {
            case 0: buf[at] = (char)(rng() & 0xff); break;
            case 1: buf[at] = punct[rng() % (sizeof punct - 1)]; break;
            case 2: memmove(buf + at, buf + at + 1, len - at - 1), len--; break;
            case 3: { /* duplicate a span */
                size_t sl = LIP_MIN(rng() % 24, len - at);
                if (len + sl < sizeof buf) {
                    memmove(buf + at + sl, buf + at, len - at);
                    len += sl;
                }
                break;
            }
            case 4: len = at; break;
            case 5: { /* splice in a token that is valid YAML but an odd value */
                static const char *const toks[] = {
                    "-1", "99999999999999999999", "1e308", "~", "[a, b]", "{}", "*a", "&b x",
                    "!!int 5", "\"\\x00\"", "'q''q'", "0x10", " # c", "\n- ", ": ", "true",
                    "models.x.num_frames", "server.port", "logging.z", ".nan", "<<: *a"};
                const char *t = toks[rng() % LIP_ARRAY_LEN(toks)];
                size_t tl = strlen(t);
                if (len + tl < sizeof buf) {
                    memmove(buf + at + tl, buf + at, len - at);
                    memcpy(buf + at, t, tl);
                    len += tl;
                }
                break;
            }
            }
        }
        lip_config *cfg = lip_config_new(NULL);
        lip_err err = {0};
        int rc = lip_config_load_string(cfg, buf, len, "fuzz", &err);
        if (rc == 0) {
            ok++;
            /* Whatever loaded must dump to YAML that loads again. */
            char *d = dump_str(cfg);
            lip_config *c2 = lip_config_new(NULL);
            int rc2 = lip_config_load_string(c2, d, strlen(d), "redump", &err);
            CHECK_MSG(rc2 == 0, "re-load of a dump failed: %s", err.msg);
            free(d);
            lip_config_free(c2);
        } else {
            failed++;
            if (rc > 0 || err.code != rc || strlen(err.msg) < 10 || !contains(err.msg, "fuzz"))
                bad_msg++;
        }
        lip_config_free(cfg);
    }
    lip_log_set_level(LIP_LOG_INFO);
    printf("# fuzz: %d loaded, %d refused\n", ok, failed);
    CHECK(bad_msg == 0);
    CHECK(ok > 100 && failed > 100); /* the mutations reach both outcomes */
}

/* Shapes meant to exhaust a parser: deep nesting, exponential aliases, oversized keys, strings
 * and lists. Each is refused quickly with a message naming the problem. */
static void t_hostile_shapes(void)
{
    size_t big = 300000;
    char *buf = malloc(2 * big + 64);
    lip_config *cfg = lip_config_new(NULL);
    lip_err err = {0};
    CHECK(buf && cfg);
    if (!buf || !cfg) goto out;
    lip_log_set_level(LIP_LOG_ERROR);
    /* 100k nested lists: libyaml alone would take ~25 s on this (quadratic scanner). */
    size_t o = (size_t)snprintf(buf, 64, "server.services: ");
    for (size_t i = 0; i < 100000; i++) buf[o++] = '[';
    for (size_t i = 0; i < 100000; i++) buf[o++] = ']';
    double t0 = lip_time_ms();
    CHECK(lip_config_load_string(cfg, buf, o, "deep", &err) == LIP_EINVAL);
    CHECK(contains(err.msg, "deep:1:") && contains(err.msg, "nested more than 32 levels"));
    printf("# 100k nested lists refused in %.2f ms\n", lip_time_ms() - t0);
    o = (size_t)snprintf(buf, 64, "server.services: [[a]]");
    CHECK(lip_config_load_string(cfg, buf, o, "deep", &err) == LIP_EINVAL);
    CHECK(contains(err.msg, "list items must be non-empty strings, got a list"));
    /* Sections nested past the limit (dotted names keep them "known" as long as possible). */
    o = (size_t)snprintf(buf, 64, "logging:");
    for (int i = 0; i < 12; i++) o += (size_t)snprintf(buf + o, 64, " {a%d:", i);
    o += (size_t)snprintf(buf + o, 64, " 1");
    for (int i = 0; i < 12; i++) buf[o++] = '}';
    CHECK(lip_config_load_string(cfg, buf, o, "nest", &err) == 0); /* logging.* is ignored */
    /* Billion laughs: 2^40 references if expanded; the value is rejected on sight. */
    o = (size_t)snprintf(buf, 64, "x: &a0 [s, s]\n");
    for (int i = 1; i < 40; i++)
        o += (size_t)snprintf(buf + o, 64, "l%d: &a%d [*a%d, *a%d]\n", i, i, i - 1, i - 1);
    CHECK(lip_config_load_string(cfg, buf, o, "laughs", &err) == LIP_EINVAL);
    o = (size_t)snprintf(buf, 64, "server.services: &a0 [s, s]\n");
    CHECK(lip_config_load_string(cfg, buf, o, "laughs", &err) == LIP_EINVAL);
    CHECK(contains(err.msg, "unknown service 's'"));
    /* A 1000-byte key (libyaml's own limit for a plain key is 1024), a 5000-byte string, a
     * 65-item list. */
    memset(buf, 'k', 1000);
    memcpy(buf + 1000, ": 1\n", 4);
    CHECK(lip_config_load_string(cfg, buf, 1004, "longkey", &err) == LIP_EINVAL);
    CHECK(contains(err.msg, "key name longer than 255 bytes"));
    o = (size_t)snprintf(buf, 64, "server.host: ");
    memset(buf + o, 'h', 5000);
    o += 5000;
    CHECK(lip_config_load_string(cfg, buf, o, "longstr", &err) == LIP_EINVAL);
    CHECK(contains(err.msg, "longer than 4096 bytes"));
    o = (size_t)snprintf(buf, 64, "server.services: [");
    for (int i = 0; i < 65; i++)
        o += (size_t)snprintf(buf + o, 64, "%slipsync.LipSync", i ? "," : "");
    buf[o++] = ']';
    CHECK(lip_config_load_string(cfg, buf, o, "longlist", &err) == LIP_EINVAL);
    CHECK(contains(err.msg, "more than 64 items"));
    /* Invalid UTF-8 is refused by libyaml itself; 0xC3 0x28 is a broken two-byte sequence. */
    CHECK(lip_config_load_string(cfg, "server.host: \xc3\x28\n", 16, "utf8", &err) ==
          LIP_EFORMAT);
    CHECK(contains(err.msg, "utf8:"));
    /* Flags bypass libyaml, so the config checks UTF-8 itself. */
    CHECK(lip_config_set(cfg, "server.host", "\xc3\x28", &err) == LIP_EINVAL);
    CHECK(contains(err.msg, "not valid UTF-8"));
    CHECK(lip_config_set(cfg, "server.host", "h\xc3\xa4", &err) == 0);
    /* More than the file size limit. */
    CHECK(lip_config_load_string(cfg, "", (16u << 20) + 1, "huge", &err) == LIP_EINVAL);
    /* 20,000 models, each with a key we do not use: loads in linear time, and the warnings
     * are capped (20 listed + 1 summary) instead of 20,000 log lines. */
    lip_config_free(cfg);
    cfg = lip_config_new(NULL);
    size_t cap = 20000 * 64 + 64;
    char *many = malloc(cap);
    CHECK(cfg && many);
    if (!cfg || !many) {
        free(many);
        goto out;
    }
    o = (size_t)snprintf(many, cap, "models:\n");
    for (int i = 0; i < 20000; i++)
        o += (size_t)snprintf(many + o, cap - o, "  m%d: {num_frames: %d, memory_estimate_mb: 1}\n",
                              i, i + 1);
    t0 = lip_time_ms();
    int rc = lip_config_load_string(cfg, many, o, "many", &err);
    CHECK_MSG(rc == 0, "%s", err.msg);
    printf("# 20000 models loaded in %.1f ms\n", lip_time_ms() - t0);
    CHECK(lip_config_model_count(cfg) == 20000);
    const lip_config_model *m = lip_config_model_find(cfg, "m19999");
    CHECK(m && m->num_frames == 20000 && m == lip_config_model_at(cfg, 19999));
    CHECK(lip_config_warning_count(cfg) == 21);
    CHECK(contains(lip_config_warning(cfg, 20), "19980 more keys that are not used"));
    free(many);
out:
    lip_log_set_level(LIP_LOG_INFO);
    free(buf);
    lip_config_free(cfg);
}

/* Random argument vectors: apply_args never crashes, and on success leaves exactly the
 * arguments it did not consume, in order, NULL-terminated. */
static void t_fuzz_args(void)
{
    static char *pool[] = {"--server.port", "7000", "--server.port=1", "--port", "--role",
                           "inference", "--auto_load", "false", "--log.json", "--", "-v",
                           "--keep", "--models.a.num_frames", "3", "--models..x", "--server.",
                           "--=", "--", "x", "--config", "/nonexistent.yaml", "--onnx.provider",
                           "cuda", "--server.services", "lipsync.LipSync,", "--logging.x", "1",
                           "--output.jpeg_quality=101", "", "-", "--gpus.count"};
    int ok = 0, refused = 0;
    lip_log_set_level(LIP_LOG_ERROR);
    for (int iter = 0; iter < 3000; iter++) {
        char *argv[12], *orig[12];
        int argc = 1 + (int)(rng() % 10);
        argv[0] = "prog";
        for (int i = 1; i < argc; i++) argv[i] = pool[rng() % LIP_ARRAY_LEN(pool)];
        argv[argc] = NULL;
        memcpy(orig, argv, sizeof argv);
        int n0 = argc;
        lip_config *cfg = lip_config_new(NULL);
        lip_err err = {0};
        int rc = lip_config_apply_args(cfg, &argc, argv, &err);
        if (rc == 0) {
            ok++;
            CHECK(argc >= 1 && argc <= n0 && argv[argc] == NULL && argv[0] == orig[0]);
            /* What is left is a subsequence of the original. */
            int j = 1;
            for (int i = 1; i < argc; i++) {
                while (j < n0 && orig[j] != argv[i]) j++;
                CHECK(j < n0);
                j++;
            }
        } else {
            refused++;
            CHECK(strlen(err.msg) > 5);
        }
        lip_config_free(cfg);
    }
    lip_log_set_level(LIP_LOG_INFO);
    printf("# args fuzz: %d accepted, %d refused\n", ok, refused);
    CHECK(ok > 100 && refused > 100);
}

/* Every allocation in new + load can fail; each failure must be a clean error (no crash, and
 * no leak under ASan). */
static void t_alloc_failures(void)
{
    const char *yaml = "server:\n  role: compositing\n  host: h\n  services: [lipsync.LipSync]\n"
                       "logging:\n  x: 1\n"
                       "models:\n  a: {model_path: p}\n  b: {num_frames: 2}\n";
    lip_log_set_level(LIP_LOG_ERROR);
    int nomem = 0, clean = 0;
    for (long nth = 1; nth <= 300; nth++) {
        lip_alloc_fail_at(nth);
        lip_config *cfg = lip_config_new(NULL);
        lip_err err = {0};
        int rc = cfg ? lip_config_load_string(cfg, yaml, strlen(yaml), "alloc", &err) : LIP_ENOMEM;
        lip_alloc_fail_at(0);
        CHECK_MSG(rc == 0 || rc == LIP_ENOMEM, "nth %ld: rc %d (%s)", nth, rc, err.msg);
        CHECK_MSG(rc == 0 || !cfg || (err.code == rc && err.msg[0]), "nth %ld: err %d '%s'", nth,
                  err.code, err.msg);
        if (rc == LIP_ENOMEM) nomem++;
        if (rc == 0 && lip_config_model_count(cfg) == 2 && lip_config_warning_count(cfg) == 1 &&
            !strcmp(cfg->server.host, "h"))
            clean++;
        lip_config_free(cfg);
    }
    lip_log_set_level(LIP_LOG_INFO);
    printf("# alloc failures: %d runs refused with LIP_ENOMEM, %d complete\n", nomem, clean);
    /* The first ~100 allocations are new + load; past them every run completes. */
    CHECK(nomem > 20 && clean > 100);
}

int main(void)
{
    RUN(t_defaults_per_role);
    RUN(t_table);
    RUN(t_file_parsing);
    RUN(t_precedence);
    RUN(t_errors);
    RUN(t_models_map);
    RUN(t_go_seed_layout);
    RUN(t_dump_roundtrip);
    RUN(t_help);
    RUN(t_args);
    RUN(t_validate);
    RUN(t_dup);
    RUN(t_deploy_example);
    RUN(t_docs_cover_keys);
    RUN(t_fuzz);
    RUN(t_hostile_shapes);
    RUN(t_fuzz_args);
    RUN(t_alloc_failures);
    return test_summary();
}
