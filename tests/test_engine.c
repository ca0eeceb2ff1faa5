/* SPDX-License-Identifier: MIT */
/* tests/test_engine.c: the ONNX Runtime wrapper on the real tiny models: I/O contract checks
 * (and their messages), batched runs that equal per-frame runs, zero-copy runs from several
 * threads on one session, the generic run, and bad model files and options. */
#include "core/core.h"
#include "engine/engine.h"
#include "test.h"

#include <pthread.h>
#include <unistd.h>

static lip_engine *open_tiny(int kind, const char *file)
{
    lip_engine_opts o = lip_engine_opts_default();
    o.intra_threads = 1;
    lip_err err = {0};
    lip_engine *e = lip_engine_new(test_model(file), kind, &o, &err);
    CHECK_MSG(e != NULL, "%s", err.msg);
    return e;
}

static void fill(float *v, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        v[i] = (float)(seed >> 8) / (float)(1u << 24);
    }
}

static void t_contract(void)
{
    lip_engine *u = open_tiny(LIP_MODEL_UNET, "unet_tiny.onnx");
    lip_engine *a = open_tiny(LIP_MODEL_AUDIO_ENCODER, "audio_encoder_tiny.onnx");
    if (u) {
        CHECK(lip_engine_input_count(u) == 2 && lip_engine_output_count(u) == 1);
        int rank;
        int64_t d[8];
        const char *name = lip_engine_io(u, true, 0, &rank, d);
        CHECK(name && strcmp(name, "output") == 0 && rank == 4 && d[1] == 3 && d[2] == 320);
        CHECK(strcmp(lip_engine_provider(u), "cpu") == 0 && lip_engine_device(u) == -1);
        CHECK(lip_engine_model_bytes(u) > 0);
    }
    lip_engine_free(u);
    lip_engine_free(a);
    /* The encoder is not a UNet and vice versa: LIP_EMODEL naming the mismatch. */
    lip_err err = {0};
    lip_engine *x = lip_engine_new(test_model("audio_encoder_tiny.onnx"), LIP_MODEL_UNET, NULL, &err);
    CHECK(!x && err.code == LIP_EMODEL && strstr(err.msg, "'input' and 'audio'"));
    x = lip_engine_new(test_model("unet_tiny.onnx"), LIP_MODEL_AUDIO_ENCODER, NULL, &err);
    CHECK(!x && err.code == LIP_EMODEL && strstr(err.msg, "one input"));
    x = lip_engine_new("/nonexistent.onnx", LIP_MODEL_UNET, NULL, &err);
    CHECK(!x && err.code == LIP_ENOTFOUND);
    char path[128];
    snprintf(path, sizeof path, "/tmp/lipsync-test-engine-%ld.onnx", (long)getpid());
    CHECK_RC(lip_file_write_atomic(path, "this is not a model", 19, &err));
    x = lip_engine_new(path, LIP_MODEL_UNET, NULL, &err);
    CHECK_MSG(!x && err.code != 0 && strstr(err.msg, path), "%d %s", err.code, err.msg);
    unlink(path);
    lip_engine_opts o = lip_engine_opts_default();
    o.provider = "quantum";
    x = lip_engine_new(test_model("unet_tiny.onnx"), LIP_MODEL_UNET, &o, &err);
    CHECK(!x && err.code == LIP_EINVAL && strstr(err.msg, "quantum"));
    /* CUDA on a machine without it: a clear error, not a crash (skipped where CUDA exists). */
    if (!lip_engine_has_provider("cuda")) {
        o.provider = "cuda";
        x = lip_engine_new(test_model("unet_tiny.onnx"), LIP_MODEL_UNET, &o, &err);
        CHECK_MSG(!x && err.msg[0], "cuda provider without CUDA accepted");
        lip_engine_free(x);
    }
    CHECK(strncmp(lip_engine_ort_version(), "1.29", 4) == 0);
}

/* A batch of 4 equals four batch-1 runs (within float reassociation: 1e-5 absolute on outputs
 * in [0,1]; kernels may block differently by batch). */
static void t_batch_equals_single(void)
{
    lip_engine *u = open_tiny(LIP_MODEL_UNET, "unet_tiny.onnx");
    if (!u) return;
    int B = 4;
    float *vis = lip_aligned_alloc((size_t)B * LIP_UNET_VISUAL_FLOATS * 4);
    float *aud = lip_aligned_alloc((size_t)B * LIP_UNET_AUDIO_FLOATS * 4);
    float *out = lip_aligned_alloc((size_t)B * LIP_UNET_OUT_FLOATS * 4);
    float *one = lip_aligned_alloc(LIP_UNET_OUT_FLOATS * 4);
    fill(vis, (size_t)B * LIP_UNET_VISUAL_FLOATS, 1);
    fill(aud, (size_t)B * LIP_UNET_AUDIO_FLOATS, 2);
    lip_err err = {0};
    CHECK_RC(lip_engine_run_unet(u, vis, aud, B, out, &err));
    double maxd = 0;
    for (int i = 0; i < B; i++) {
        CHECK_RC(lip_engine_run_unet(u, vis + (size_t)i * LIP_UNET_VISUAL_FLOATS,
                                     aud + (size_t)i * LIP_UNET_AUDIO_FLOATS, 1, one, &err));
        for (size_t k = 0; k < LIP_UNET_OUT_FLOATS; k++) {
            double d = fabs(one[k] - out[(size_t)i * LIP_UNET_OUT_FLOATS + k]);
            if (d > maxd) maxd = d;
        }
    }
    CHECK_MSG(maxd <= 1e-5, "max diff %g", maxd);
    /* Outputs are a sigmoid: inside [0,1] and not constant. */
    float lo = 1, hi = 0;
    for (size_t k = 0; k < LIP_UNET_OUT_FLOATS; k++) {
        lo = out[k] < lo ? out[k] : lo;
        hi = out[k] > hi ? out[k] : hi;
    }
    CHECK(lo >= 0 && hi <= 1 && hi > lo);
    CHECK(lip_engine_run_unet(u, vis, aud, 0, out, &err) == LIP_EINVAL);
    lip_free_aligned(vis);
    lip_free_aligned(aud);
    lip_free_aligned(out);
    lip_free_aligned(one);
    lip_engine_free(u);
}

typedef struct { lip_engine *e; const float *mel; const float *ref; int bad; } thr;

static void *enc_thread(void *arg)
{
    thr *t = arg;
    float out[3 * LIP_ENC_OUT_FLOATS];
    for (int i = 0; i < 40; i++) {
        if (lip_engine_run_encoder(t->e, t->mel, 3, out, NULL) ||
            memcmp(out, t->ref, sizeof out) != 0)
            t->bad++;
    }
    return NULL;
}

/* One session, four threads: every result equals the single-threaded one, bit for bit. */
static void t_threads_share_session(void)
{
    lip_engine *a = open_tiny(LIP_MODEL_AUDIO_ENCODER, "audio_encoder_tiny.onnx");
    if (!a) return;
    float mel[3 * LIP_ENC_IN_FLOATS], ref[3 * LIP_ENC_OUT_FLOATS];
    fill(mel, LIP_ARRAY_LEN(mel), 5);
    for (size_t i = 0; i < LIP_ARRAY_LEN(mel); i++) mel[i] = mel[i] * 8 - 4; /* normalized mel range */
    lip_err err = {0};
    CHECK_RC(lip_engine_run_encoder(a, mel, 3, ref, &err));
    for (size_t i = 0; i < LIP_ARRAY_LEN(ref); i++) CHECK(ref[i] >= 0); /* ReLU output */
    thr t[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        t[i] = (thr){.e = a, .mel = mel, .ref = ref};
        pthread_create(&th[i], NULL, enc_thread, &t[i]);
    }
    int bad = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        bad += t[i].bad;
    }
    CHECK_MSG(bad == 0, "%d runs differed or failed", bad);
    /* Generic run gives the same numbers and the output shape. */
    lip_tensor in = {.data = mel, .rank = 4, .shape = {3, 1, 80, 16}}, out;
    CHECK_RC(lip_engine_run_f32(a, 1, &in, &out, &err));
    CHECK(out.rank == 2 && out.shape[0] == 3 && out.shape[1] == 512);
    CHECK(out.data && memcmp(out.data, ref, sizeof ref) == 0);
    lip_free_aligned(out.data);
    /* Wrong input count and shape are errors from the runtime, not crashes. */
    CHECK(lip_engine_run_f32(a, 2, &in, &out, &err) == LIP_EINVAL);
    lip_tensor wrong = {.data = mel, .rank = 4, .shape = {1, 1, 16, 80}};
    CHECK(lip_engine_run_f32(a, 1, &wrong, &out, &err) != 0 && err.msg[0]);
    lip_engine_free(a);
}

int main(void)
{
    if (!lip_file_exists(test_model("unet_tiny.onnx"))) {
        printf("# models missing: run `make models`\n0 passed, 1 failed\n");
        return 1;
    }
    RUN(t_contract);
    RUN(t_batch_equals_single);
    RUN(t_threads_share_session);
    return test_summary();
}
