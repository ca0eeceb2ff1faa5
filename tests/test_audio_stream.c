/* SPDX-License-Identifier: MIT */
/* tests/test_audio_stream.c: the encoder path with models/audio_encoder_tiny.onnx (skipped when
 * the generated models are absent): batch consistency, the padded feature list, the frame
 * tensor layout, the API.md 1.5 request alignment, and the streaming front end (random
 * chunkings against the whole-utterance result, the low-latency mode and its latency). The
 * speech reference PCM is the input throughout. */
#include "audio/audio.h"
#include "test.h"

static lip_engine *g_enc;
static float *g_pcm;
static size_t g_n;
static float *g_rows; /* whole-utterance padded features */
static int g_nrows;

/* ORT may pick different GEMM blockings for different batch sizes, so the same window can give
 * features that differ in the last bits: float32 sums of 1,280 products, ~1e-6 relative. The
 * tolerance is 1e-5 of the largest feature; a misplaced row differs by the order of the
 * features themselves. */
static double g_tol;

static bool setup(void)
{
    if (g_enc) return true;
    static bool tried;
    if (tried) return false;
    tried = true;
    const char *path = test_model("audio_encoder_tiny.onnx");
    FILE *f = fopen(path, "rb");
    if (!f) return false;
    fclose(f);
    lip_err err = {0};
    lip_engine_opts eo = lip_engine_opts_default();
    eo.intra_threads = 1;
    g_enc = lip_engine_new(path, LIP_MODEL_AUDIO_ENCODER, &eo, &err);
    if (!g_enc) {
        printf("# %s\n", err.msg);
        return false;
    }
    lip_npy a;
    if (lip_npy_load(test_shared("reference/audio/sanders_s0_pcm_f32.npy"), &a, &err)) {
        printf("# %s\n", err.msg);
        return false;
    }
    g_pcm = a.data;
    g_n = a.count;
    if (lip_audio_features(g_enc, g_pcm, g_n, &g_rows, &g_nrows, &err)) {
        printf("# features: %s\n", err.msg);
        return false;
    }
    double peak = 0;
    for (size_t i = 0; i < (size_t)g_nrows * 512; i++) peak = fmax(peak, fabs(g_rows[i]));
    g_tol = 1e-5 * fmax(peak, 1.0);
    printf("# %d feature rows, peak %.3g, tolerance %.3g\n", g_nrows, peak, g_tol);
    return true;
}

static double maxdiff(const float *a, const float *b, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs((double)a[i] - b[i]));
    return m;
}

static bool row_is_zero(const float *r)
{
    for (int i = 0; i < 512; i++)
        if (r[i] != 0.0f) return false;
    return true;
}

static void t_encoder_batch_consistency(void)
{
    if (!setup()) SKIP("models/audio_encoder_tiny.onnx not available");
    float *mel = NULL;
    int M = 0;
    lip_err err = {0};
    CHECK_RC(lip_audio_mel(g_pcm, 3 * 16000, &mel, &M, &err));
    enum { B = 25 };
    static float win[B * 1280], f25[B * 512], f1[512];
    lip_audio_windows(mel, M, 10, B, win);
    CHECK_RC(lip_engine_run_encoder(g_enc, win, B, f25, &err));
    double worst = 0;
    for (int b = 0; b < B; b++) {
        CHECK_RC(lip_engine_run_encoder(g_enc, win + b * 1280, 1, f1, &err));
        worst = fmax(worst, maxdiff(f1, f25 + b * 512, 512));
    }
    printf("# batch 1 vs 25: max diff %.3g\n", worst);
    CHECK(worst <= g_tol);
    /* The windows are distinct, so their features are: guards against a model that ignores
     * its input (which would make every comparison here vacuous). */
    CHECK(maxdiff(f25, f25 + 512, 512) > 100 * g_tol);
    lip_free(mel);
}

static void t_padded_list_layout(void)
{
    if (!setup()) SKIP("models/audio_encoder_tiny.onnx not available");
    lip_err err = {0};
    CHECK(g_nrows == 522);
    CHECK_RC(lip_audio_features_check_layout(g_rows, g_nrows, 1674, &err));
    float *mel = NULL;
    int M = 0;
    CHECK_RC(lip_audio_mel(g_pcm, g_n, &mel, &M, &err));
    /* Row r (1 <= r <= L) is window r-1, including the clamped last window (519 -> 1658). */
    static const int rs[] = {1, 2, 3, 100, 519, 520};
    float win[1280], f[512];
    for (size_t i = 0; i < LIP_ARRAY_LEN(rs); i++) {
        lip_audio_windows(mel, M, rs[i] - 1, 1, win);
        CHECK_RC(lip_engine_run_encoder(g_enc, win, 1, f, &err));
        CHECK_MSG(maxdiff(f, g_rows + rs[i] * 512, 512) <= g_tol, "row %d", rs[i]);
        /* and not the neighbouring window */
        CHECK(maxdiff(f, g_rows + (rs[i] == 1 ? 3 : rs[i] - 1) * 512, 512) > 100 * g_tol);
    }
    lip_free(mel);
}

static void t_frame_tensor_layout(void)
{
    if (!setup()) SKIP("models/audio_encoder_tiny.onnx not available");
    static float t[8192];
    /* Frame 0: rows of frames -8..-1 are zero, then rows 0..7. */
    lip_audio_frame_tensor(g_rows, g_nrows, 0, 0, t);
    for (int j = 0; j < 8; j++) CHECK(row_is_zero(t + j * 512));
    for (int j = 8; j < 16; j++) CHECK(memcmp(t + j * 512, g_rows + (j - 8) * 512, 2048) == 0);
    /* Frame 300: rows 292..307 in order. Element [c][h][w] of [32][16][16] is flat c*256+h*16+w,
     * so channel pair (2j, 2j+1) holds row j. */
    lip_audio_frame_tensor(g_rows, g_nrows, 0, 300, t);
    for (int j = 0; j < 16; j++) CHECK(memcmp(t + j * 512, g_rows + (292 + j) * 512, 2048) == 0);
    /* Last frame (521): rows 513..521, then 7 zero rows past the end. */
    lip_audio_frame_tensor(g_rows, g_nrows, 0, 521, t);
    for (int j = 0; j < 9; j++) CHECK(memcmp(t + j * 512, g_rows + (513 + j) * 512, 2048) == 0);
    for (int j = 9; j < 16; j++) CHECK(row_is_zero(t + j * 512));
    /* An offset list: padded row j is frame 50 + j. Frame 52 reads frames 44..59: rows of frames
     * < 50 zero (before the list), then rows 0..9. */
    lip_audio_frame_tensor(g_rows, g_nrows, 50, 52, t);
    for (int j = 0; j < 6; j++) CHECK(row_is_zero(t + j * 512));
    for (int j = 6; j < 16; j++) CHECK(memcmp(t + j * 512, g_rows + (j - 6) * 512, 2048) == 0);
}

static void t_request_alignment(void)
{
    if (!setup()) SKIP("models/audio_encoder_tiny.onnx not available");
    lip_err err = {0};
    enum { B = 8 };
    static float out[B * 8192], out2[B * 8192], t[8192];
    /* s = 103: a = 95, and 640 x 95 samples is exactly 304 mel hops, so the clip's interior
     * windows are the whole utterance's windows 95 frames later. The full context is samples
     * [640 x 95, 640 x 118) = 14,720 samples. */
    int s = 103, a = 95;
    const float *clip = g_pcm + 640 * a;
    size_t n = 640 * (B + 15);
    double ms = -1;
    CHECK_RC(lip_audio_request_tensors(g_enc, clip, n, s, B, false, out, &ms, &err));
    CHECK(ms >= 0);
    /* Interior rows: frame k reads frame k-8+j; compare rows whose windows do not touch the
     * clip's edges with the whole utterance. The clip has M = 74, L = 20: window 0 reaches the
     * start padding, windows 18 and 19 the end padding (19 is also clamped), so clip rows
     * 2 .. 18 (frames a+2 .. a+18) must match. */
    double worst = 0;
    for (int b = 0; b < B; b++)
        for (int j = 0; j < 16; j++) {
            int f = s + b - 8 + j;
            if (f - a < 2 || f - a > 18) continue;
            worst = fmax(worst, maxdiff(out + b * 8192 + j * 512, g_rows + f * 512, 512));
        }
    printf("# request interior rows vs whole clip: %.3g\n", worst);
    CHECK(worst <= g_tol);
    /* Item 4: with exactly the full context, the last context row of the last frame is zero
     * and the one before it is not. */
    CHECK(row_is_zero(out + (B - 1) * 8192 + 15 * 512));
    CHECK(!row_is_zero(out + (B - 1) * 8192 + 14 * 512));
    /* Samples at or after 640 (s+B+7) are ignored. */
    CHECK_RC(lip_audio_request_tensors(g_enc, clip, n + 5000, s, B, false, out2, NULL, &err));
    CHECK(memcmp(out, out2, sizeof out) == 0);
    /* Section 6 variant: the same clip as if s >= 8, whatever start is passed. */
    CHECK_RC(lip_audio_request_tensors(g_enc, clip, n, 0, B, true, out2, NULL, &err));
    CHECK(memcmp(out, out2, sizeof out) == 0);
    /* Shorter audio: missing context becomes zero rows. 12,000 samples = M 61, L 16, 18 rows
     * = frames 95..112; frame 110 (b = 7) reads frames 102..117: rows of 113..117 are zero. */
    CHECK_RC(lip_audio_request_tensors(g_enc, clip, 12000, s, B, false, out2, NULL, &err));
    for (int j = 11; j < 16; j++) CHECK(row_is_zero(out2 + 7 * 8192 + j * 512));
    CHECK(!row_is_zero(out2 + 7 * 8192 + 10 * 512));
    /* s < 8 clamps: s = 3, B = 4, the context starts at stream sample 0 and is (3+4+7) x 640
     * samples; padded row j is frame j, so frame 3 reads frames -5..10: five zero rows, then
     * rows 0..10 of the clip's own features. */
    float *rows = NULL;
    int nrows = 0;
    CHECK_RC(lip_audio_features(g_enc, g_pcm, 14 * 640, &rows, &nrows, &err));
    CHECK_RC(lip_audio_request_tensors(g_enc, g_pcm, 14 * 640, 3, 4, false, out2, NULL, &err));
    for (int b = 0; b < 4; b++) {
        lip_audio_frame_tensor(rows, nrows, 0, 3 + b, t);
        CHECK(maxdiff(t, out2 + b * 8192, 8192) <= g_tol);
    }
    for (int j = 0; j < 5; j++) CHECK(row_is_zero(out2 + j * 512));
    /* The start of the stream equals the whole utterance's first rows (same samples, same
     * framing) except rows whose windows reach the clip's end. */
    CHECK(maxdiff(out2 + 5 * 512, g_rows, 512 * 6) <= g_tol);
    lip_free(rows);
}

static void t_chunks(void)
{
    if (!setup()) SKIP("models/audio_encoder_tiny.onnx not available");
    lip_err err = {0};
    enum { B = 6, N = B + 15 };
    static float raw[B * 8192], got[B * 8192];
    static float nanchunk[640];
    for (int i = 0; i < 640; i++) nanchunk[i] = NAN;
    const uint8_t *ch[N + 2];
    size_t len[N + 2];
    /* s = 103: chunk j is stream frame 95 + j; equals raw_audio of the same samples. */
    for (int j = 0; j < N + 2; j++) {
        ch[j] = (const uint8_t *)(g_pcm + 640 * (95 + j));
        len[j] = 2560;
    }
    CHECK_RC(lip_audio_request_tensors(g_enc, g_pcm + 640 * 95, 640 * N, 103, B, false, raw, NULL, &err));
    CHECK_RC(lip_audio_chunks_tensors(g_enc, ch, len, N + 2, 103, B, got, NULL, &err));
    CHECK(memcmp(raw, got, sizeof raw) == 0);
    /* s = 3: chunks 0..4 are frames -5..-1, ignored whatever they hold (NaN here). */
    for (int j = 0; j < 5; j++) ch[j] = (const uint8_t *)nanchunk;
    for (int j = 5; j < N; j++) ch[j] = (const uint8_t *)(g_pcm + 640 * (j - 5));
    CHECK_RC(lip_audio_request_tensors(g_enc, g_pcm, 640 * (N - 5), 3, B, false, raw, NULL, &err));
    CHECK_RC(lip_audio_chunks_tensors(g_enc, ch, len, N, 3, B, got, NULL, &err));
    CHECK(memcmp(raw, got, sizeof raw) == 0);
    /* A trailing run of empty chunks is shorter audio. */
    len[N - 1] = len[N - 2] = 0;
    CHECK_RC(lip_audio_request_tensors(g_enc, g_pcm, 640 * (N - 7), 3, B, false, raw, NULL, &err));
    CHECK_RC(lip_audio_chunks_tensors(g_enc, ch, len, N, 3, B, got, NULL, &err));
    CHECK(memcmp(raw, got, sizeof raw) == 0);
    /* Errors: an empty chunk before a full one, a wrong size, too few chunks, NaN in a used one. */
    len[N - 1] = 2560;
    CHECK(lip_audio_chunks_tensors(g_enc, ch, len, N, 3, B, got, NULL, &err) == LIP_EINVAL);
    CHECK(strstr(err.msg, "trailing") != NULL);
    len[N - 2] = 2560;
    len[7] = 2556;
    CHECK(lip_audio_chunks_tensors(g_enc, ch, len, N, 3, B, got, NULL, &err) == LIP_EINVAL);
    CHECK(strstr(err.msg, "audio_chunks[7] is 2556 bytes") != NULL);
    len[7] = 2560;
    CHECK(lip_audio_chunks_tensors(g_enc, ch, len, N - 1, 3, B, got, NULL, &err) == LIP_EINVAL);
    CHECK(strstr(err.msg, "21 needed") != NULL);
    ch[9] = (const uint8_t *)nanchunk;
    CHECK(lip_audio_chunks_tensors(g_enc, ch, len, N, 3, B, got, NULL, &err) == LIP_EINVAL);
    CHECK(strstr(err.msg, "audio_chunks[9] sample 0 is NaN") != NULL);
}

static void t_workspace(void)
{
    if (!setup()) SKIP("models/audio_encoder_tiny.onnx not available");
    lip_err err = {0};
    lip_audio_ws *ws = lip_audio_ws_new(&err);
    CHECK(ws != NULL);
    static float a[8 * 8192], b[8 * 8192];
    /* Different sizes through one workspace: each equals the workspace-free call. */
    static const int cfg[][2] = {{103, 8}, {0, 1}, {40, 8}, {7, 3}, {200, 8}};
    for (size_t i = 0; i < LIP_ARRAY_LEN(cfg); i++) {
        int s = cfg[i][0], B = cfg[i][1], first = s > 8 ? s - 8 : 0;
        size_t n = (size_t)(s + B + 7 - first) * 640;
        CHECK_RC(lip_audio_request_tensors(g_enc, g_pcm + 640 * first, n, s, B, false, a, NULL, &err));
        CHECK_RC(lip_audio_request_tensors_ws(ws, g_enc, g_pcm + 640 * first, n, s, B, false, b, NULL, &err));
        CHECK(memcmp(a, b, (size_t)B * 8192 * sizeof(float)) == 0);
    }
    /* Once warm, a request no larger than before allocates nothing of ours: it succeeds even
     * when the next allocation would fail. */
    lip_alloc_fail_at(1);
    CHECK_RC(lip_audio_request_tensors_ws(ws, g_enc, g_pcm + 640 * 92, 640 * 23, 100, 8, false, b, NULL, &err));
    lip_alloc_fail_at(1);
    CHECK(lip_audio_request_tensors(g_enc, g_pcm + 640 * 92, 640 * 23, 100, 8, false, b, NULL, &err) == LIP_ENOMEM);
    lip_alloc_fail_at(0);
    lip_audio_ws_free(ws);
    lip_audio_ws_free(NULL);
}

static void t_request_errors(void)
{
    if (!setup()) SKIP("models/audio_encoder_tiny.onnx not available");
    lip_err err = {0};
    static float out[8192];
    CHECK(lip_audio_request_tensors(g_enc, g_pcm, 10000, 0, 0, false, out, NULL, &err) == LIP_EINVAL);
    CHECK(strstr(err.msg, "batch_size") != NULL);
    CHECK(lip_audio_request_tensors(g_enc, g_pcm, 10000, -1, 1, false, out, NULL, &err) == LIP_EINVAL);
    CHECK(strstr(err.msg, "start_frame_idx") != NULL);
    CHECK(lip_audio_request_tensors(g_enc, g_pcm, 0, 0, 1, false, out, NULL, &err) == LIP_EINVAL);
    CHECK(strstr(err.msg, "empty") != NULL);
    /* API.md 1.5 item 3: audio too short for one mel window is allowed: every feature row is
     * missing, so the tensors are all zero (not an error). */
    for (size_t i = 0; i < LIP_AUDIO_TENSOR; i++) out[i] = 1.0f;
    CHECK(lip_audio_request_tensors(g_enc, g_pcm, 2000, 0, 1, false, out, NULL, &err) == 0);
    bool zero = true;
    for (size_t i = 0; i < LIP_AUDIO_TENSOR; i++) zero = zero && out[i] == 0.0f;
    CHECK(zero);
    CHECK(lip_audio_request_tensors(NULL, g_pcm, 9000, 0, 1, false, out, NULL, &err) == LIP_EPRECOND);
    float bad[4000];
    memcpy(bad, g_pcm, sizeof bad);
    bad[1234] = NAN;
    CHECK(lip_audio_request_tensors(g_enc, bad, 4000, 0, 1, false, out, NULL, &err) == LIP_EINVAL);
    CHECK(strstr(err.msg, "1234") && strstr(err.msg, "NaN"));
}

/* Streams the first n samples in chunks from next_chunk() and checks every frame against the
 * whole-utterance tensors of the same samples. */
typedef size_t (*chunk_fn)(unsigned *state);
static size_t chunk_one(unsigned *st) { (void)st; return 1; }
static size_t chunk_all(unsigned *st) { (void)st; return (size_t)1 << 30; }
static size_t chunk_rand(unsigned *st)
{
    *st = *st * 1103515245u + 12345u;
    unsigned r = (*st >> 8) % 100;
    /* mostly small and medium chunks, sometimes several frames' worth */
    return r < 30 ? 1 + r : r < 90 ? 100 + (*st >> 4) % 1500 : 4000 + (*st >> 3) % 20000;
}

static void stream_check(size_t n, chunk_fn next, unsigned seed, int lookahead, const char *name)
{
    lip_err err = {0};
    float *rows = NULL;
    int nrows = 0;
    CHECK_RC(lip_audio_features(g_enc, g_pcm, n, &rows, &nrows, &err));
    lip_audio_stream_opts o = lip_audio_stream_opts_default();
    o.lookahead = lookahead;
    lip_audio_stream *s = lip_audio_stream_new(g_enc, &o, &err);
    CHECK(s != NULL);
    if (!s || !rows) return;
    static float got[8192], want[8192];
    int frames = 0, fi = -1;
    double worst = 0;
    bool order_ok = true, ok = true;
    size_t pos = 0;
    unsigned st = seed;
    while (pos < n || pos == n) {
        if (pos == n) {
            CHECK_RC(lip_audio_stream_finish(s, &err));
            pos++;
        } else {
            size_t c = next(&st); /* not inside LIP_MIN: it evaluates its arguments twice */
            if (c > n - pos) c = n - pos;
            if (lip_audio_stream_push(s, g_pcm + pos, c, &err)) {
                printf("# push: %s\n", err.msg);
                ok = false;
                break;
            }
            pos += c;
        }
        while (lip_audio_stream_pop(s, got, &fi) == 1) {
            if (fi != frames) order_ok = false;
            lip_audio_frame_tensor(rows, nrows, 0, fi, want);
            for (int j = fi + lookahead + 1 - (fi - 8); j < 16; j++) /* rows past i+k: zero */
                if (j >= 0) memset(want + j * 512, 0, 2048);
            double d = maxdiff(got, want, 8192);
            if (d > g_tol && d > worst)
                for (int j = 0; j < 16; j++)
                    if (maxdiff(got + j * 512, want + j * 512, 512) > g_tol)
                        printf("#   frame %d row %d (frame %d) differs by %.3g\n", fi, j, fi - 8 + j,
                               maxdiff(got + j * 512, want + j * 512, 512));
            worst = fmax(worst, d);
            frames++;
        }
    }
    printf("# stream %s (lookahead %d): %d frames (whole: %d rows, %zu samples), max diff %.3g\n", name, lookahead, frames, nrows, n, worst);
    CHECK(ok && order_ok);
    CHECK(frames == nrows);
    CHECK(worst <= g_tol);
    lip_audio_stream_free(s);
    lip_free(rows);
}

static void t_stream_equals_whole(void)
{
    if (!setup()) SKIP("models/audio_encoder_tiny.onnx not available");
    stream_check(g_n, chunk_all, 0, 7, "one chunk");
    stream_check(g_n, chunk_rand, 1, 7, "random chunks");
    stream_check(g_n, chunk_rand, 99, 7, "random chunks 2");
    stream_check(5 * 16000 + 137, chunk_one, 0, 7, "1-sample chunks");
    stream_check(3000, chunk_rand, 7, 7, "shortest clip");
    stream_check(3000 + 640 * 3 + 77, chunk_one, 0, 7, "short clip");
}

static void t_stream_low_latency(void)
{
    if (!setup()) SKIP("models/audio_encoder_tiny.onnx not available");
    stream_check(g_n, chunk_rand, 5, 0, "random chunks");
    stream_check(4 * 16000 + 55, chunk_one, 0, 3, "1-sample chunks");
}

/* Samples needed before frame i can be emitted with lookahead k: row i+k is window i+k-1
 * (row 0 is window 0), which needs mel rows up to floor(16 w / 5) + 15, and mel row t needs
 * samples up to 200 t + 400. */
static size_t need_samples(int i, int k)
{
    int w = i + k - 1 < 0 ? 0 : i + k - 1;
    int last_mel = (16 * w) / 5 + 15;
    return (size_t)last_mel * 200 + 400;
}

static void t_stream_latency(void)
{
    if (!setup()) SKIP("models/audio_encoder_tiny.onnx not available");
    lip_err err = {0};
    static float out[8192];
    for (int k = 0; k <= 7; k += 7) {
        lip_audio_stream_opts o = lip_audio_stream_opts_default();
        o.lookahead = k;
        lip_audio_stream *s = lip_audio_stream_new(g_enc, &o, &err);
        CHECK(s != NULL);
        if (!s) return;
        size_t n = 3 * 16000;
        bool exact = true;
        double lag_ms = 0;
        int frames = 0, f;
        for (size_t i = 0; i < n; i++) {
            CHECK_RC(lip_audio_stream_push(s, g_pcm + i, 1, &err));
            while (lip_audio_stream_pop(s, out, &f) == 1) {
                if (i + 1 != need_samples(f, k)) exact = false;
                lag_ms += ((double)(i + 1) - 640.0 * (f + 1)) / 16.0;
                frames++;
            }
        }
        printf("# lookahead %d: %d frames out during 3 s, mean wait after the frame's own audio "
               "%.1f ms\n", k, frames, lag_ms / frames);
        CHECK(exact);
        /* 3 s of audio is 75 frames; 7 - k rows of look-ahead cost 40 ms each. */
        CHECK(frames == 75 - (k == 7 ? 11 : 4));
        lip_audio_stream_free(s);
    }
}

static void t_stream_errors(void)
{
    if (!setup()) SKIP("models/audio_encoder_tiny.onnx not available");
    lip_err err = {0};
    lip_audio_stream_opts o = lip_audio_stream_opts_default();
    o.lookahead = 8;
    CHECK(lip_audio_stream_new(g_enc, &o, &err) == NULL && err.code == LIP_EINVAL);
    CHECK(lip_audio_stream_new(NULL, NULL, &err) == NULL && err.code == LIP_EPRECOND);
    lip_audio_stream *s = lip_audio_stream_new(g_enc, NULL, &err);
    float x[100];
    memcpy(x, g_pcm + 5000, sizeof x);
    x[50] = INFINITY;
    CHECK(lip_audio_stream_push(s, x, 100, &err) == LIP_EINVAL);
    CHECK(strstr(err.msg, "infinite") != NULL);
    CHECK(lip_audio_stream_samples(s) == 0); /* nothing of the bad chunk was used */
    CHECK_RC(lip_audio_stream_push(s, g_pcm, 2999, &err));
    CHECK(lip_audio_stream_finish(s, &err) == LIP_EINVAL);
    CHECK(strstr(err.msg, "2999") != NULL);
    int f;
    static float out[8192];
    CHECK(lip_audio_stream_pop(s, out, &f) == 0);
    CHECK(lip_audio_stream_push(s, g_pcm, 10, &err) == LIP_EINVAL);
    lip_audio_stream_free(s);
    lip_audio_stream_free(NULL);
}

int main(void)
{
    RUN(t_encoder_batch_consistency);
    RUN(t_padded_list_layout);
    RUN(t_frame_tensor_layout);
    RUN(t_request_alignment);
    RUN(t_chunks);
    RUN(t_workspace);
    RUN(t_request_errors);
    RUN(t_stream_equals_whole);
    RUN(t_stream_low_latency);
    RUN(t_stream_latency);
    RUN(t_stream_errors);
    lip_free(g_rows);
    lip_free(g_pcm);
    lip_engine_free(g_enc);
    return test_summary();
}
