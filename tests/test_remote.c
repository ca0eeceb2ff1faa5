/* SPDX-License-Identifier: MIT */
/* tests/test_remote.c: the pieces of remote inference below the server level (the end-to-end
 * failover test is tests/py/test_separated.py): the pipeline's infer hook (chunks handed out in
 * order with the right offsets, output identical to the local UNet, PCM passed through when
 * there is no encoder, errors propagated), the balanced client's options (policy name checked,
 * a list target with no server fails UNAVAILABLE), and svc_remote with no backend (UNAVAILABLE
 * naming the target, unhealthy). Uses a small avatar written to a temp directory and the tiny
 * UNet. */
#include "avatar/avatar.h"
#include "core/core.h"
#include "engine/engine.h"
#include "image/image.h"
#include "pipeline/pipeline.h"
#include "rpc/rpc.h"
#include "service/remote.h"
#include "test.h"

#include <pthread.h>
#include <unistd.h>

#define W 320
#define H 240
#define NF 6

static char tmproot[256];
static char avdir[512];

static void write_frame(int i)
{
    lip_image img = {0};
    lip_err err = {0};
    CHECK_RC(lip_image_alloc(&img, W, H, &err));
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            uint8_t *p = img.data + (size_t)y * (size_t)img.stride + 3 * (size_t)x;
            p[0] = (uint8_t)(x + 5 * i);
            p[1] = (uint8_t)(y * 3);
            p[2] = (uint8_t)((x ^ y) + 17 * i);
        }
    lip_buf b = {0};
    CHECK_RC(lip_jpeg_encode(&img, 95, &b, &err));
    char path[600];
    snprintf(path, sizeof path, "%s/frames/%06d.jpg", avdir, i);
    CHECK_RC(lip_file_write_atomic(path, b.data, b.len, &err));
    lip_buf_free(&b);
    lip_image_free(&img);
}

static void make_avatar(void)
{
    char p[600];
    lip_err err = {0};
    snprintf(p, sizeof p, "%s/frames", avdir);
    CHECK_RC(lip_dir_make(p, &err));
    for (int i = 0; i < NF; i++) write_frame(i);
    static const char rects[] = "[[100,60,190,150],[101,61,191,151],[102,62,192,152],"
                                "[100,60,190,150],[98,58,188,148],[99,59,189,149]]";
    snprintf(p, sizeof p, "%s/crop_rects.json", avdir);
    CHECK_RC(lip_file_write_atomic(p, rects, strlen(rects), &err));
    uint8_t *d = NULL;
    size_t n = 0;
    CHECK_RC(lip_file_read(test_model("unet_tiny.onnx"), 0, &d, &n, &err));
    snprintf(p, sizeof p, "%s/unet.onnx", avdir);
    CHECK_RC(lip_file_write_atomic(p, d, n, &err));
    lip_free(d);
}

static lip_avatar *load(bool unet, lip_err *err)
{
    lip_avatar_opts o = lip_avatar_opts_default();
    o.engine.intra_threads = 1;
    o.load_unet = unet;
    return lip_avatar_load(avdir, "r1", NULL, &o, err);
}

/* ---- a stand-in for the remote side: the tiny UNet run here, calls recorded --------------- */
typedef struct fake {
    lip_engine *unet;
    pthread_mutex_t mu;
    int ncalls;
    int first[16], n[16];
    bool audio_null[16];
    const void *req[16];
    int fail_code; /* nonzero: every call fails with it */
} fake;

static int fake_infer(void *ud, lip_avatar *a, const struct lip_request *req, int first, int n,
                      const float *visual, const float *audio, float *out, lip_err *err)
{
    fake *f = ud;
    (void)a;
    pthread_mutex_lock(&f->mu);
    if (f->ncalls < 16) {
        f->first[f->ncalls] = first;
        f->n[f->ncalls] = n;
        f->audio_null[f->ncalls] = audio == NULL;
        f->req[f->ncalls] = req;
    }
    f->ncalls++;
    pthread_mutex_unlock(&f->mu);
    if (f->fail_code) return lip_err_set(err, f->fail_code, "backend down (test)");
    if (!audio) {
        memset(out, 0, (size_t)n * LIP_UNET_OUT_FLOATS * sizeof(float));
        return 0;
    }
    return lip_engine_run_unet(f->unet, visual, audio, n, out, err);
}

static lip_pipeline *pipeline(bool encoder, fake *f, lip_err *err)
{
    lip_pipeline_opts o = lip_pipeline_opts_default();
    if (encoder) o.encoder_path = test_model("audio_encoder_tiny.onnx");
    o.encoder_engine.intra_threads = 1;
    o.chunk_frames = 4;
    o.slots = 2;
    o.paste_mode = LIP_PIPE_PASTE_EXACT;
    if (f) {
        o.infer = fake_infer;
        o.infer_ud = f;
    }
    return lip_pipeline_new(&o, err);
}

static float *speech(size_t n)
{
    float *p = lip_malloc(n * sizeof(float));
    for (size_t i = 0; p && i < n; i++)
        p[i] = 0.3f * sinf(2.0f * 3.14159265f * 220.0f * (float)i / 16000.0f);
    return p;
}

/* The hook replaces the UNet chunk by chunk: 11 frames in chunks of 4 are calls (0,4), (4,4),
 * (8,3), and the composited frames are byte-identical to the local UNet's (same tensors, same
 * model, same paste). The avatar behind the hook has no UNet at all. */
static void t_hook_equals_local(void)
{
    lip_err err = {0};
    fake f = {.mu = PTHREAD_MUTEX_INITIALIZER};
    lip_engine_opts eo = lip_engine_opts_default();
    eo.intra_threads = 1;
    f.unet = lip_engine_new(test_model("unet_tiny.onnx"), LIP_MODEL_UNET, &eo, &err);
    lip_avatar *with = load(true, &err), *without = load(false, &err);
    lip_pipeline *local = pipeline(true, NULL, &err), *remote = pipeline(true, &f, &err);
    float *pcm = speech(640 * 30);
    CHECK_MSG(f.unet && with && without && local && remote && pcm, "%s", err.msg);
    if (!f.unet || !with || !without || !local || !remote || !pcm) goto out;
    CHECK(lip_avatar_unet(without) == NULL);
    lip_request r = {.batch = 11, .start_frame = 2, .pcm = pcm, .n_pcm = 640 * 26,
                     .pcm_mode = LIP_PCM_REQUEST, .format = LIP_OUT_BGR};
    lip_result a = {0}, b = {0};
    CHECK_RC(lip_pipeline_run(local, with, &r, &a, &err));
    int rc = lip_pipeline_run(remote, without, &r, &b, &err);
    CHECK_MSG(rc == 0, "%s", err.msg);
    CHECK(f.ncalls == 3);
    static const int want_first[3] = {0, 4, 8}, want_n[3] = {4, 4, 3};
    for (int i = 0; i < 3 && i < f.ncalls; i++) {
        CHECK_MSG(f.first[i] == want_first[i] && f.n[i] == want_n[i], "call %d: (%d,%d)", i,
                  f.first[i], f.n[i]);
        CHECK(!f.audio_null[i]);    /* the encoder is here: feature windows go out */
        CHECK(f.req[i] == (const void *)&r);
    }
    CHECK(!rc && a.count == 11 && b.count == 11);
    for (int i = 0; !rc && i < 11; i++)
        CHECK_MSG(a.frames[i].len == b.frames[i].len &&
                      memcmp(a.frames[i].data, b.frames[i].data, a.frames[i].len) == 0,
                  "frame %d differs between the local UNet and the hook", i);
    CHECK(b.t.inference_ms > 0);
    lip_result_free(&a);
    lip_result_free(&b);
    /* Without the hook, an avatar without a UNet is refused. */
    rc = lip_pipeline_run(local, without, &r, &a, &err);
    CHECK(rc == LIP_EPRECOND && strstr(err.msg, "no UNet"));
    lip_result_free(&a);
out:
    lip_free(pcm);
    lip_pipeline_free(local);
    lip_pipeline_free(remote);
    lip_avatar_unref(with);
    lip_avatar_unref(without);
    lip_engine_free(f.unet);
}

/* No local encoder: with the hook, PCM requests pass (audio NULL: the callee forwards the PCM);
 * without it they are refused as before. A failing hook fails the run with its code. */
static void t_hook_pcm_and_errors(void)
{
    lip_err err = {0};
    fake f = {.mu = PTHREAD_MUTEX_INITIALIZER};
    lip_avatar *av = load(false, &err);
    lip_pipeline *p = pipeline(false, &f, &err), *plain = pipeline(false, NULL, &err);
    float *pcm = speech(640 * 20);
    CHECK_MSG(av && p && plain && pcm, "%s", err.msg);
    if (!av || !p || !plain || !pcm) goto out;
    lip_request r = {.batch = 5, .start_frame = 0, .pcm = pcm, .n_pcm = 640 * 20,
                     .pcm_mode = LIP_PCM_REQUEST, .format = LIP_OUT_JPEG};
    lip_result res = {0};
    int rc = lip_pipeline_run(p, av, &r, &res, &err);
    CHECK_MSG(rc == 0, "%s", err.msg);
    CHECK(f.ncalls == 2 && f.audio_null[0] && f.audio_null[1]);
    CHECK(res.count == 5 && res.t.audio_ms == 0);
    lip_result_free(&res);
    lip_avatar *withu = load(true, &err);
    rc = lip_pipeline_run(plain, withu, &r, &res, &err);
    CHECK(rc == LIP_EPRECOND && strstr(err.msg, "encoder"));
    lip_result_free(&res);
    lip_avatar_unref(withu);
    f.fail_code = LIP_EUNAVAIL;
    rc = lip_pipeline_run(p, av, &r, &res, &err);
    CHECK(rc == LIP_EUNAVAIL && strstr(err.msg, "backend down"));
    CHECK(res.count == 0 && res.frames == NULL);
    lip_result_free(&res);
out:
    lip_free(pcm);
    lip_pipeline_free(p);
    lip_pipeline_free(plain);
    lip_avatar_unref(av);
}

/* A port that nothing listens on (bound, then closed). */
static int dead_port(void)
{
    lip_rpc_opts o = lip_rpc_opts_default();
    o.host = "127.0.0.1";
    o.port = 0;
    lip_err err = {0};
    lip_rpc_server *s = lip_rpc_server_new(&o, &err);
    int port = 0;
    if (s && lip_rpc_server_start(s, &err) == 0) {
        port = lip_rpc_server_port(s);
        lip_rpc_server_shutdown(s, 100);
    }
    lip_rpc_server_free(s);
    return port;
}

static void t_client_opts(void)
{
    lip_err err = {0};
    lip_rpc_client_opts o = lip_rpc_client_opts_default();
    o.lb_policy = "round robin\"}";
    CHECK(lip_rpc_client_new_opts("127.0.0.1:1", &o, &err) == NULL && err.code == LIP_EINVAL &&
          strstr(err.msg, "round robin"));
    CHECK(lip_rpc_client_new_opts("", NULL, &err) == NULL && err.code == LIP_EINVAL);
    int p1 = dead_port(), p2 = dead_port();
    CHECK(p1 > 0 && p2 > 0);
    char target[128];
    snprintf(target, sizeof target, "ipv4:127.0.0.1:%d,127.0.0.1:%d", p1, p2);
    o.lb_policy = "round_robin";
    o.max_attempts = 4;
    o.reconnect_max_backoff_ms = 500;
    lip_rpc_client *c = lip_rpc_client_new_opts(target, &o, &err);
    CHECK_MSG(c != NULL, "%s", err.msg);
    if (!c) return;
    CHECK(lip_rpc_client_state(c, true) != 2); /* not READY: nothing listens */
    double t0 = lip_time_ms();
    lip_rpc_buf r = {0};
    lip_rpc_status st = {0};
    static const uint8_t req[4] = {0};
    CHECK_RC(lip_rpc_client_unary(c, "/x.Y/Z", req, sizeof req, 5000, &r, &st, &err));
    double ms = lip_time_ms() - t0;
    /* Refused connections fail the call at once (no wait_for_ready); 3 s is slack for a loaded
     * machine, far below the 5 s deadline that would mean a hang. */
    CHECK_MSG(st.code == GRPC_STATUS_UNAVAILABLE && ms < 3000, "status %d after %.0f ms",
              (int)st.code, ms);
    lip_free(r.data);
    lip_rpc_client_free(c);
}

/* A handler that waits until its call is cancelled (or 5 s pass). */
static int slow_handler(void *ud, lip_rpc_call *call, const uint8_t *req, size_t len,
                        lip_rpc_buf *resp, lip_err *err)
{
    (void)ud, (void)req, (void)len, (void)resp;
    for (int i = 0; i < 500 && !lip_rpc_call_cancelled(call); i++) usleep(10 * 1000);
    return lip_err_set(err, LIP_ETIMEOUT, "slow handler ran out");
}

typedef struct flag_arg {
    volatile int flag;
    int delay_ms;
} flag_arg;

static void *raise_flag(void *p)
{
    flag_arg *f = p;
    usleep((useconds_t)f->delay_ms * 1000);
    f->flag = 1;
    return NULL;
}

/* lip_rpc_client_unary_cancel ends a running call soon after the flag is raised, and the server
 * sees the cancel (its handler returns instead of running 5 s). */
static void t_unary_cancel(void)
{
    lip_err err = {0};
    lip_rpc_opts o = lip_rpc_opts_default();
    o.host = "127.0.0.1";
    o.port = 0;
    static const lip_rpc_method m[] = {{"Slow", LIP_RPC_UNARY, true, slow_handler}};
    lip_rpc_server *s = lip_rpc_server_new(&o, &err);
    CHECK_MSG(s && lip_rpc_server_add_service(s, "t.Slow", m, 1, NULL, &err) == 0 &&
                  lip_rpc_server_start(s, &err) == 0,
              "%s", err.msg);
    char target[64];
    snprintf(target, sizeof target, "127.0.0.1:%d", s ? lip_rpc_server_port(s) : 0);
    lip_rpc_client *c = lip_rpc_client_new(target, 0, &err);
    CHECK(c != NULL);
    if (s && c) {
        flag_arg f = {.flag = 0, .delay_ms = 200};
        pthread_t th;
        pthread_create(&th, NULL, raise_flag, &f);
        lip_rpc_buf r = {0};
        lip_rpc_status st = {0};
        static const uint8_t req[1] = {0};
        double t0 = lip_time_ms();
        CHECK_RC(lip_rpc_client_unary_cancel(c, "/t.Slow/Slow", req, 0, 10000, &f.flag, &r, &st,
                                             &err));
        double ms = lip_time_ms() - t0;
        pthread_join(th, NULL);
        /* 200 ms until the flag, 20 ms polling; 1.5 s is slack for a loaded machine and far
         * below the handler's 5 s. */
        CHECK_MSG(st.code == GRPC_STATUS_CANCELLED && ms >= 190 && ms < 1500,
                  "status %d after %.0f ms", (int)st.code, ms);
        lip_free(r.data);
        /* A flag that is never raised changes nothing: the call ends with the server's status. */
        f.flag = 0;
        CHECK_RC(lip_rpc_client_unary_cancel(c, "/t.Nope/X", req, 0, 5000, &f.flag, &r, &st,
                                             &err));
        CHECK(st.code == GRPC_STATUS_UNIMPLEMENTED);
        lip_free(r.data);
    }
    lip_rpc_client_free(c);
    if (s) lip_rpc_server_shutdown(s, 1000);
    lip_rpc_server_free(s);
}

static void t_remote_no_backend(void)
{
    lip_err err = {0};
    CHECK(svc_remote_new(&(svc_remote_opts){.url = ""}, &err) == NULL && err.code == LIP_EINVAL);
    char url[64];
    snprintf(url, sizeof url, "127.0.0.1:%d", dead_port());
    svc_remote *r = svc_remote_new(&(svc_remote_opts){.url = url, .timeout_ms = 5000,
                                                      .max_retries = 3, .probe_interval_ms = 100},
                                   &err);
    lip_avatar *av = load(false, &err);
    float *vis = lip_calloc(2, (size_t)LIP_UNET_VISUAL_FLOATS * sizeof(float));
    float *aud = lip_calloc(2, (size_t)LIP_UNET_AUDIO_FLOATS * sizeof(float));
    float *out = lip_calloc(2, (size_t)LIP_UNET_OUT_FLOATS * sizeof(float));
    CHECK_MSG(r && av && vis && aud && out, "%s", err.msg);
    if (r && av && vis && aud && out) {
        CHECK(strcmp(svc_remote_url(r), url) == 0);
        lip_request q = {.batch = 2};
        double t0 = lip_time_ms();
        int rc = svc_remote_infer(r, av, &q, 0, 2, vis, aud, out, &err);
        CHECK_MSG(rc == LIP_EUNAVAIL && strstr(err.msg, url) && strstr(err.msg, "UNAVAILABLE"),
                  "rc %d: %s", rc, err.msg);
        CHECK(lip_time_ms() - t0 < 3000); /* as in t_client_opts */
        usleep(300 * 1000);               /* a few probe periods */
        CHECK(!svc_remote_healthy(r));
        svc_remote_stats st;
        svc_remote_get_stats(r, &st);
        CHECK(st.calls == 0 && st.failures == 1 && st.frames == 0);
        /* The request went out once per round (retries inside gRPC are not counted twice). */
        CHECK(st.bytes_sent > 2 * (int64_t)LIP_UNET_VISUAL_FLOATS * 4 &&
              st.bytes_sent < 3 * (int64_t)LIP_UNET_VISUAL_FLOATS * 4);
    }
    lip_free(vis);
    lip_free(aud);
    lip_free(out);
    lip_avatar_unref(av);
    svc_remote_free(r);
}

int main(void)
{
    if (!lip_file_exists(test_model("unet_tiny.onnx")) ||
        !lip_file_exists(test_model("audio_encoder_tiny.onnx"))) {
        printf("# models missing: run `make models`\n");
        printf("0 passed, 1 failed\n");
        return 1;
    }
    snprintf(tmproot, sizeof tmproot, "/tmp/lipsync-test-remote-%ld", (long)getpid());
    snprintf(avdir, sizeof avdir, "%s/r1", tmproot);
    make_avatar();
    RUN(t_hook_equals_local);
    RUN(t_hook_pcm_and_errors);
    RUN(t_client_opts);
    RUN(t_unary_cancel);
    RUN(t_remote_no_backend);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmproot);
    if (system(cmd) != 0) printf("# could not remove %s\n", tmproot);
    return test_summary();
}
