/* SPDX-License-Identifier: MIT */
/* tests/test_pipeline.c: avatar loading and the frame pipeline on real components: a small
 * avatar written to a temp directory (synthetic frames encoded with our JPEG encoder, crop rects,
 * the tiny UNet), real ONNX Runtime runs, and checks of geometry (what changes and what must
 * not), equivalence of the server-side and client-tensor paths, chunking, concurrency, and the
 * error paths of avatar loading. */
#include "audio/audio.h"
#include "avatar/avatar.h"
#include "core/core.h"
#include "image/image.h"
#include "pipeline/pipeline.h"
#include "test.h"

#include <pthread.h>
#include <unistd.h>

#define W 320
#define H 240
#define NF 6

static char tmproot[256];

static void write_frame(const char *dir, int i, int w, int h)
{
    lip_image img = {0};
    lip_err err = {0};
    CHECK_RC(lip_image_alloc(&img, w, h, &err));
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            uint8_t *p = img.data + (size_t)y * (size_t)img.stride + 3 * (size_t)x;
            p[0] = (uint8_t)(x + 3 * i);
            p[1] = (uint8_t)(y * 2);
            p[2] = (uint8_t)((x ^ y) + 20 * i);
        }
    lip_buf b = {0};
    CHECK_RC(lip_jpeg_encode(&img, 95, &b, &err));
    char path[512];
    snprintf(path, sizeof path, "%s/frames/%06d.jpg", dir, i);
    CHECK_RC(lip_file_write_atomic(path, b.data, b.len, &err));
    lip_buf_free(&b);
    lip_image_free(&img);
}

static void copy_file(const char *from, const char *to)
{
    uint8_t *d;
    size_t n;
    lip_err err = {0};
    CHECK_RC(lip_file_read(from, 0, &d, &n, &err));
    CHECK_RC(lip_file_write_atomic(to, d, n, &err));
    lip_free(d);
}

/* Writes an avatar: NF frames of W x H, rects, unet (tiny), optional overrides. */
static void make_avatar(const char *dir, const char *rects_json, const char *unet)
{
    char p[512];
    lip_err err = {0};
    snprintf(p, sizeof p, "%s/frames", dir);
    CHECK_RC(lip_dir_make(p, &err));
    for (int i = 0; i < NF; i++) write_frame(dir, i, W, H);
    snprintf(p, sizeof p, "%s/crop_rects.json", dir);
    CHECK_RC(lip_file_write_atomic(p, rects_json, strlen(rects_json), &err));
    snprintf(p, sizeof p, "%s/unet.onnx", dir);
    copy_file(unet, p);
}

static const char *good_rects =
    "[[100,60,190,150],[101,61,191,151],[102,62,192,152],[100,60,190,150],[98,58,188,148],[99,59,189,149]]";

static lip_avatar *load_good(lip_err *err)
{
    char dir[512];
    snprintf(dir, sizeof dir, "%s/good", tmproot);
    lip_avatar_opts o = lip_avatar_opts_default();
    o.engine.intra_threads = 1;
    return lip_avatar_load(dir, "good", NULL, &o, err);
}

static void t_avatar_load(void)
{
    lip_err err = {0};
    lip_avatar *a = load_good(&err);
    CHECK_MSG(a != NULL, "%s", err.msg);
    if (!a) return;
    CHECK(lip_avatar_frame_count(a) == NF);
    CHECK(lip_avatar_width(a) == W && lip_avatar_height(a) == H);
    const int *r = lip_avatar_rect(a, 2);
    CHECK(r[0] == 102 && r[1] == 62 && r[2] == 192 && r[3] == 152);
    CHECK(lip_avatar_unet(a) != NULL);
    CHECK(lip_avatar_memory_bytes(a) > 0);
    /* Decoding through the cache twice gives identical pixels. */
    uint8_t *b1 = lip_malloc(W * H * 3), *b2 = lip_malloc(W * H * 3);
    CHECK_RC(lip_avatar_frame_bgr(a, 3, b1, W * 3, &err));
    CHECK_RC(lip_avatar_frame_bgr(a, 3, b2, W * 3, &err));
    CHECK(memcmp(b1, b2, W * H * 3) == 0);
    CHECK(lip_avatar_frame_bgr(a, NF, b1, W * 3, &err) == LIP_ERANGE);
    lip_free(b1);
    lip_free(b2);
    /* Frame order: loop and ping-pong (0..5, 4..1, 0..). */
    CHECK(lip_avatar_frame_index(a, 7, LIP_ORDER_LOOP) == 1);
    CHECK(lip_avatar_frame_index(a, 5, LIP_ORDER_PINGPONG) == 5);
    CHECK(lip_avatar_frame_index(a, 6, LIP_ORDER_PINGPONG) == 4);
    CHECK(lip_avatar_frame_index(a, 9, LIP_ORDER_PINGPONG) == 1);
    CHECK(lip_avatar_frame_index(a, 10, LIP_ORDER_PINGPONG) == 0);
    CHECK(lip_avatar_frame_index(a, 11, LIP_ORDER_PINGPONG) == 1);
    /* References: the avatar stays valid while any holder has one. */
    lip_avatar *b = lip_avatar_ref(a);
    lip_avatar_unref(a);
    CHECK(lip_avatar_frame_count(b) == NF);
    lip_avatar_unref(b);
}

static void expect_load_error(const char *name, int code, const char *needle)
{
    char dir[512];
    snprintf(dir, sizeof dir, "%s/%s", tmproot, name);
    lip_err err = {0};
    lip_avatar_opts o = lip_avatar_opts_default();
    lip_avatar *a = lip_avatar_load(dir, name, NULL, &o, &err);
    CHECK_MSG(a == NULL, "%s loaded but should not", name);
    lip_avatar_unref(a);
    CHECK_MSG(err.code == code, "%s: code %d (%s), want %d", name, err.code, err.msg, code);
    CHECK_MSG(strstr(err.msg, needle) != NULL, "%s: message '%s' lacks '%s'", name, err.msg, needle);
}

static void t_avatar_errors(void)
{
    char dir[512], p[600];
    lip_err err = {0};
    expect_load_error("missing", LIP_ENOTFOUND, "not found");
    /* Rect outside the frame. */
    snprintf(dir, sizeof dir, "%s/outside", tmproot);
    make_avatar(dir, "[[100,60,190,150],[101,61,191,151],[102,62,192,152],[100,60,190,150],[98,58,188,148],[250,200,340,290]]",
                test_model("unet_tiny.onnx"));
    expect_load_error("outside", LIP_EINVAL, "frame 5");
    /* Fewer rects than frames. */
    snprintf(dir, sizeof dir, "%s/fewrects", tmproot);
    make_avatar(dir, "[[100,60,190,150],[101,61,191,151]]", test_model("unet_tiny.onnx"));
    expect_load_error("fewrects", LIP_EFORMAT, "2 crop rects for 6 frames");
    /* Malformed rects JSON. */
    snprintf(dir, sizeof dir, "%s/badjson", tmproot);
    make_avatar(dir, "[[100,60,190", test_model("unet_tiny.onnx"));
    expect_load_error("badjson", LIP_EFORMAT, "not valid JSON");
    /* A corrupt frame. */
    snprintf(dir, sizeof dir, "%s/corrupt", tmproot);
    make_avatar(dir, good_rects, test_model("unet_tiny.onnx"));
    snprintf(p, sizeof p, "%s/frames/000003.jpg", dir);
    CHECK_RC(lip_file_write_atomic(p, "\xff\xd8\xff\xe0garbage", 12, &err));
    expect_load_error("corrupt", LIP_EFORMAT, "000003.jpg");
    /* The audio encoder is not a UNet: wrong model I/O. */
    snprintf(dir, sizeof dir, "%s/wrongmodel", tmproot);
    make_avatar(dir, good_rects, test_model("audio_encoder_tiny.onnx"));
    expect_load_error("wrongmodel", LIP_EMODEL, "UNet");
    /* Keyed rects form is accepted. */
    snprintf(dir, sizeof dir, "%s/keyed", tmproot);
    make_avatar(dir,
                "{\"0\":{\"rect\":[100,60,190,150]},\"1\":{\"rect\":[100,60,190,150]},\"2\":{\"rect\":[100,60,190,150]},"
                "\"3\":{\"rect\":[100,60,190,150]},\"4\":{\"rect\":[100,60,190,150]},\"5\":{\"rect\":[100,60,190,150]}}",
                test_model("unet_tiny.onnx"));
    lip_avatar *a = lip_avatar_load(dir, "keyed", NULL, NULL, &err);
    CHECK_MSG(a != NULL, "%s", err.msg);
    if (a) CHECK(lip_avatar_rect(a, 5)[2] == 190);
    lip_avatar_unref(a);
}

static lip_pipeline *new_pipeline(int chunk, int paste, lip_err *err)
{
    lip_pipeline_opts o = lip_pipeline_opts_default();
    o.encoder_path = test_model("audio_encoder_tiny.onnx");
    o.encoder_engine.intra_threads = 1;
    o.chunk_frames = chunk;
    o.paste_mode = paste;
    o.slots = 4;
    return lip_pipeline_new(&o, err);
}

static float *make_audio(int n, unsigned seed)
{
    float *a = lip_malloc((size_t)n * LIP_UNET_AUDIO_FLOATS * sizeof(float));
    for (size_t i = 0; i < (size_t)n * LIP_UNET_AUDIO_FLOATS; i++) {
        seed = seed * 1664525u + 1013904223u;
        a[i] = (float)(seed >> 8) / (float)(1u << 24) * 2.0f;
    }
    return a;
}

/* Exact paste, BGR out: pixels outside the rect equal the decoded background bit for bit;
 * the rect itself changes. */
static void t_geometry(void)
{
    lip_err err = {0};
    lip_avatar *a = load_good(&err);
    lip_pipeline *p = new_pipeline(4, LIP_PIPE_PASTE_EXACT, &err);
    CHECK_MSG(a && p, "%s", err.msg);
    if (!a || !p) goto out;
    float *aud = make_audio(1, 7);
    lip_request r = {.batch = 5, .start_frame = 3, .audio = aud, .n_audio = 1, .format = LIP_OUT_BGR};
    lip_result res;
    int rc = lip_pipeline_run(p, a, &r, &res, &err);
    CHECK_MSG(rc == 0, "%s", err.msg);
    uint8_t *bg = lip_malloc(W * H * 3);
    for (int i = 0; !rc && i < res.count; i++) {
        int af = res.frames[i].avatar_frame;
        CHECK(af == (3 + i) % NF);
        CHECK(res.frames[i].len == W * H * 3);
        CHECK_RC(lip_avatar_frame_bgr(a, af, bg, W * 3, &err));
        const int *rc4 = lip_avatar_rect(a, af);
        long outside_diff = 0, inside_diff = 0;
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++) {
                bool in = x >= rc4[0] && x < rc4[2] && y >= rc4[1] && y < rc4[3];
                size_t o = ((size_t)y * W + (size_t)x) * 3;
                int d = abs(res.frames[i].data[o] - bg[o]) + abs(res.frames[i].data[o + 1] - bg[o + 1]) +
                        abs(res.frames[i].data[o + 2] - bg[o + 2]);
                if (in) inside_diff += d > 6;
                else outside_diff += d != 0;
            }
        CHECK_MSG(outside_diff == 0, "frame %d: %ld pixels outside the rect changed", i, outside_diff);
        CHECK_MSG(inside_diff > (rc4[2] - rc4[0]) * (rc4[3] - rc4[1]) / 4,
                  "frame %d: only %ld pixels inside the rect changed", i, inside_diff);
    }
    CHECK(res.t.inference_ms > 0 && res.t.total_ms >= res.t.inference_ms);
    lip_result_free(&res);
    lip_free(bg);
    lip_free(aud);
out:
    lip_pipeline_free(p);
    lip_avatar_unref(a);
}

/* The client-tensor path with the tensors the server would build gives the same UNet output
 * as the server-side path (RAW format returns the model output itself). */
static void t_client_visual_equals_server_side(void)
{
    lip_err err = {0};
    lip_avatar *a = load_good(&err);
    lip_pipeline *p = new_pipeline(8, LIP_PIPE_PASTE_FEATHER, &err);
    if (!a || !p) {
        CHECK_MSG(0, "%s", err.msg);
        goto out;
    }
    int B = 3;
    float *aud = make_audio(B, 11);
    float *vis = lip_aligned_alloc((size_t)B * LIP_UNET_VISUAL_FLOATS * sizeof(float));
    uint8_t *bg = lip_malloc(W * H * 3), *crop = lip_malloc(LIP_CROP_BYTES);
    lip_resizer *rz = lip_resizer_new();
    for (int i = 0; i < B; i++) {
        CHECK_RC(lip_avatar_frame_bgr(a, 1 + i, bg, W * 3, &err));
        lip_image img = {.data = bg, .w = W, .h = H, .stride = W * 3};
        CHECK_RC(lip_image_preprocess(rz, &img, lip_avatar_rect(a, 1 + i),
                                      vis + (size_t)i * LIP_UNET_VISUAL_FLOATS, crop, &err));
    }
    lip_request r1 = {.batch = B, .start_frame = 1, .audio = aud, .n_audio = B, .format = LIP_OUT_RAW};
    lip_request r2 = r1;
    r2.visual = vis;
    lip_result o1, o2;
    CHECK_RC(lip_pipeline_run(p, a, &r1, &o1, &err));
    CHECK_RC(lip_pipeline_run(p, a, &r2, &o2, &err));
    for (int i = 0; i < B && o1.count == B && o2.count == B; i++) {
        CHECK(o1.frames[i].len == LIP_UNET_OUT_FLOATS * sizeof(float));
        CHECK(memcmp(o1.frames[i].data, o2.frames[i].data, o1.frames[i].len) == 0);
    }
    lip_result_free(&o1);
    lip_result_free(&o2);
    lip_resizer_free(rz);
    lip_free(bg);
    lip_free(crop);
    lip_free_aligned(vis);
    lip_free(aud);
out:
    lip_pipeline_free(p);
    lip_avatar_unref(a);
}

/* Chunk size does not change results: one chunk of 10 vs chunks of 3 (overlapped stages). */
static void t_chunking(void)
{
    lip_err err = {0};
    lip_avatar *a = load_good(&err);
    lip_pipeline *p1 = new_pipeline(16, LIP_PIPE_PASTE_FEATHER, &err);
    lip_pipeline *p3 = new_pipeline(3, LIP_PIPE_PASTE_FEATHER, &err);
    if (!a || !p1 || !p3) {
        CHECK_MSG(0, "%s", err.msg);
        goto out;
    }
    int B = 10;
    float *aud = make_audio(B, 5);
    lip_request r = {.batch = B, .start_frame = 2, .audio = aud, .n_audio = B, .format = LIP_OUT_JPEG,
                     .order = LIP_ORDER_PINGPONG};
    lip_result x, y;
    CHECK_RC(lip_pipeline_run(p1, a, &r, &x, &err));
    CHECK_RC(lip_pipeline_run(p3, a, &r, &y, &err));
    for (int i = 0; i < B && x.count == B && y.count == B; i++) {
        CHECK(x.frames[i].avatar_frame == y.frames[i].avatar_frame);
        CHECK(x.frames[i].len == y.frames[i].len && memcmp(x.frames[i].data, y.frames[i].data, x.frames[i].len) == 0);
        /* JPEG that decodes to the avatar's size. */
        lip_image img = {0};
        CHECK_RC(lip_jpeg_decode(x.frames[i].data, x.frames[i].len, &img, &err));
        CHECK(img.w == W && img.h == H);
        lip_image_free(&img);
    }
    lip_result_free(&x);
    lip_result_free(&y);
    lip_free(aud);
out:
    lip_pipeline_free(p1);
    lip_pipeline_free(p3);
    lip_avatar_unref(a);
}

/* PCM in (API.md 1.5 mapping through the real tiny encoder), precomputed feature rows in, and
 * the validation of request shapes. */
static void t_audio_paths_and_errors(void)
{
    lip_err err = {0};
    lip_avatar *a = load_good(&err);
    lip_pipeline *p = new_pipeline(8, LIP_PIPE_PASTE_FEATHER, &err);
    if (!a || !p) {
        CHECK_MSG(0, "%s", err.msg);
        goto out;
    }
    size_t n = 16000;
    float *pcm = lip_malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) pcm[i] = 0.3f * sinf((float)i * 0.07f) * sinf((float)i * 0.001f);
    lip_request r = {.batch = 4, .start_frame = 0, .pcm = pcm, .n_pcm = n, .format = LIP_OUT_RAW};
    lip_result x, y;
    CHECK_RC(lip_pipeline_run(p, a, &r, &x, &err));
    CHECK_RC(lip_pipeline_run(p, a, &r, &y, &err));
    for (int i = 0; i < 4 && x.count == 4 && y.count == 4; i++)
        CHECK(memcmp(x.frames[i].data, y.frames[i].data, x.frames[i].len) == 0); /* deterministic */
    CHECK(x.t.audio_ms > 0);
    lip_result_free(&x);
    lip_result_free(&y);

    /* Feature rows: the tensor of frame k comes from rows k-8..k+7; same as explicit tensors. */
    float *rows = NULL;
    int nrows = 0;
    CHECK_RC(lip_audio_features(lip_pipeline_encoder(p), pcm, n, &rows, &nrows, &err));
    float *ten = lip_malloc(2 * LIP_UNET_AUDIO_FLOATS * sizeof(float));
    lip_audio_frame_tensor(rows, nrows, 0, 3, ten);
    lip_audio_frame_tensor(rows, nrows, 0, 4, ten + LIP_UNET_AUDIO_FLOATS);
    lip_request rf = {.batch = 2, .start_frame = 3, .features = rows, .n_features = nrows, .format = LIP_OUT_RAW};
    lip_request rt = {.batch = 2, .start_frame = 3, .audio = ten, .n_audio = 2, .format = LIP_OUT_RAW};
    CHECK_RC(lip_pipeline_run(p, a, &rf, &x, &err));
    CHECK_RC(lip_pipeline_run(p, a, &rt, &y, &err));
    for (int i = 0; i < 2 && x.count == 2 && y.count == 2; i++)
        CHECK(memcmp(x.frames[i].data, y.frames[i].data, x.frames[i].len) == 0);
    lip_result_free(&x);
    lip_result_free(&y);

    /* Errors. */
    lip_request bad = r;
    bad.batch = 0;
    CHECK(lip_pipeline_run(p, a, &bad, &x, &err) == LIP_EINVAL);
    bad = r;
    bad.start_frame = -1;
    CHECK(lip_pipeline_run(p, a, &bad, &x, &err) == LIP_EINVAL);
    int ids[2] = {0, NF};
    bad = rt;
    bad.frame_ids = ids;
    CHECK(lip_pipeline_run(p, a, &bad, &x, &err) == LIP_ERANGE);
    bad = rt;
    bad.n_audio = 3;
    CHECK(lip_pipeline_run(p, a, &bad, &x, &err) == LIP_EINVAL);
    lip_request none = {.batch = 1, .format = LIP_OUT_RAW};
    CHECK(lip_pipeline_run(p, a, &none, &x, &err) == LIP_EPRECOND); /* no audio at all */
    volatile int cancel = 1;
    lip_request rc_ = rt;
    rc_.cancel = &cancel;
    CHECK(lip_pipeline_run(p, a, &rc_, &x, &err) == LIP_ECANCELLED);
    lip_result_free(&x);
    lip_free(ten);
    lip_free(rows);
    lip_free(pcm);
out:
    lip_pipeline_free(p);
    lip_avatar_unref(a);
}

/* Incremental JPEG: the first pass over a frame decodes it whole and caches its encoded
 * background; later passes decode only the MCU rows the splice re-encodes. Both passes must
 * give the same bytes, and the same pixels as the plain (full decode, full encode) path. */
static void t_band_decode_identical(void)
{
    lip_err err = {0};
    lip_avatar *a = load_good(&err);
    lip_pipeline_opts o = lip_pipeline_opts_default();
    o.slots = 1;
    lip_pipeline *inc = lip_pipeline_new(&o, &err);
    o.incremental_jpeg = false;
    lip_pipeline *full = lip_pipeline_new(&o, &err);
    if (!a || !inc || !full) {
        CHECK_MSG(0, "%s", err.msg);
        goto out;
    }
    float *aud = make_audio(1, 21);
    lip_request r = {.batch = NF, .audio = aud, .n_audio = 1, .format = LIP_OUT_JPEG};
    lip_result first, second, plain;
    CHECK_RC(lip_pipeline_run(inc, a, &r, &first, &err));
    CHECK_RC(lip_pipeline_run(inc, a, &r, &second, &err));
    CHECK_RC(lip_pipeline_run(full, a, &r, &plain, &err));
    for (int i = 0; i < NF && first.count == NF && second.count == NF && plain.count == NF; i++) {
        CHECK_MSG(first.frames[i].len == second.frames[i].len &&
                      memcmp(first.frames[i].data, second.frames[i].data, first.frames[i].len) == 0,
                  "frame %d: band-decoded pass differs from the first pass", i);
        lip_image x = {0}, y = {0};
        CHECK_RC(lip_jpeg_decode(second.frames[i].data, second.frames[i].len, &x, &err));
        CHECK_RC(lip_jpeg_decode(plain.frames[i].data, plain.frames[i].len, &y, &err));
        CHECK_MSG(x.data && y.data && memcmp(x.data, y.data, (size_t)W * H * 3) == 0,
                  "frame %d: spliced pixels differ from the plain path", i);
        lip_image_free(&x);
        lip_image_free(&y);
    }
    lip_result_free(&first);
    lip_result_free(&second);
    lip_result_free(&plain);
    lip_free(aud);
out:
    lip_pipeline_free(inc);
    lip_pipeline_free(full);
    lip_avatar_unref(a);
}

typedef struct thr_arg {
    lip_pipeline *p;
    lip_avatar *a;
    const float *aud;
    lip_result ref;
    int bad;
} thr_arg;

static void *thr_run(void *arg)
{
    thr_arg *t = arg;
    for (int it = 0; it < 3; it++) {
        lip_err err = {0};
        lip_request r = {.batch = 5, .start_frame = 1, .audio = t->aud, .n_audio = 1, .format = LIP_OUT_JPEG};
        lip_result res;
        if (lip_pipeline_run(t->p, t->a, &r, &res, &err)) t->bad++;
        else
            for (int i = 0; i < 5; i++)
                if (res.frames[i].len != t->ref.frames[i].len ||
                    memcmp(res.frames[i].data, t->ref.frames[i].data, res.frames[i].len))
                    t->bad++;
        lip_result_free(&res);
    }
    return NULL;
}

/* Six threads share one pipeline (4 slots) and one avatar: every result equals the
 * single-threaded one. */
static void t_concurrency(void)
{
    lip_err err = {0};
    lip_avatar *a = load_good(&err);
    lip_pipeline *p = new_pipeline(2, LIP_PIPE_PASTE_FEATHER, &err);
    if (!a || !p) {
        CHECK_MSG(0, "%s", err.msg);
        goto out;
    }
    float *aud = make_audio(1, 3);
    thr_arg t[6];
    lip_request r = {.batch = 5, .start_frame = 1, .audio = aud, .n_audio = 1, .format = LIP_OUT_JPEG};
    lip_result ref;
    CHECK_RC(lip_pipeline_run(p, a, &r, &ref, &err));
    pthread_t th[6];
    for (int i = 0; i < 6; i++) {
        t[i] = (thr_arg){.p = p, .a = a, .aud = aud, .ref = ref};
        pthread_create(&th[i], NULL, thr_run, &t[i]);
    }
    int bad = 0;
    for (int i = 0; i < 6; i++) {
        pthread_join(th[i], NULL);
        bad += t[i].bad;
    }
    CHECK_MSG(bad == 0, "%d mismatching or failed results", bad);
    lip_result_free(&ref);
    lip_free(aud);
out:
    lip_pipeline_free(p);
    lip_avatar_unref(a);
}

int main(void)
{
    if (!lip_file_exists(test_model("unet_tiny.onnx")) || !lip_file_exists(test_model("audio_encoder_tiny.onnx"))) {
        printf("# models missing: run `make models`\n");
        printf("0 passed, 1 failed\n");
        return 1;
    }
    snprintf(tmproot, sizeof tmproot, "/tmp/lipsync-test-pipeline-%ld", (long)getpid());
    char dir[512];
    snprintf(dir, sizeof dir, "%s/good", tmproot);
    make_avatar(dir, good_rects, test_model("unet_tiny.onnx"));
    RUN(t_avatar_load);
    RUN(t_avatar_errors);
    RUN(t_geometry);
    RUN(t_client_visual_equals_server_side);
    RUN(t_chunking);
    RUN(t_audio_paths_and_errors);
    RUN(t_concurrency);
    RUN(t_band_decode_identical);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmproot);
    if (system(cmd) != 0) printf("# could not remove %s\n", tmproot);
    return test_summary();
}
