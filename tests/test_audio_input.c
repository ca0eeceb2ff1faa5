/* SPDX-License-Identifier: MIT */
/* tests/test_audio_input.c: the audio input formats and their failure modes: WAV sample formats
 * and channel layouts, resampling (a synthetic sine and a real espeak-ng recording at 22.05
 * kHz), float32 wire bytes, aud_ave.npy features, bad PCM (empty, short, NaN/Inf), and a
 * fuzz loop feeding random and mutated bytes to the WAV parser and the .npy parser. */
#include "audio/audio.h"
#include "test.h"

#include <stdint.h>
#include <unistd.h>

/* ---- WAV builder ---------------------------------------------------------------------------- */
typedef struct buf {
    uint8_t *p;
    size_t n, cap;
} buf;

static void put(buf *b, const void *d, size_t n)
{
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, d, n);
    b->n += n;
}
static void put16(buf *b, unsigned v) { uint8_t x[2] = {v & 255, (v >> 8) & 255}; put(b, x, 2); }
static void put32(buf *b, uint32_t v)
{
    uint8_t x[4] = {v & 255, (v >> 8) & 255, (v >> 16) & 255, v >> 24};
    put(b, x, 4);
}

/* A WAV with `frames` frames of `ch` channels; sample value v(i, c) in [-1, 1) encoded in the
 * given format (tag 1 PCM or 3 float; ext wraps it in WAVE_FORMAT_EXTENSIBLE). */
static buf make_wav(int tag, int ch, int rate, int bits, size_t frames, bool ext,
                    double (*v)(size_t, int))
{
    buf b = {0};
    size_t data = frames * (size_t)ch * (size_t)bits / 8;
    put(&b, "RIFF", 4);
    put32(&b, (uint32_t)(4 + 8 + (ext ? 40 : 16) + 8 + data));
    put(&b, "WAVE", 4);
    put(&b, "LIST", 4); /* an unrelated chunk first, odd-sized, to exercise padding */
    put32(&b, 3);
    put(&b, "abc\0", 4);
    put(&b, "fmt ", 4);
    put32(&b, ext ? 40 : 16);
    put16(&b, ext ? 0xFFFE : (unsigned)tag);
    put16(&b, (unsigned)ch);
    put32(&b, (uint32_t)rate);
    put32(&b, (uint32_t)(rate * ch * bits / 8));
    put16(&b, (unsigned)(ch * bits / 8));
    put16(&b, (unsigned)bits);
    if (ext) {
        static const uint8_t tail[14] = {0, 0, 0, 0, 0x10, 0, 0x80, 0, 0, 0xAA, 0, 0x38, 0x9B, 0x71};
        put16(&b, 22);
        put16(&b, (unsigned)bits);
        put32(&b, ch == 1 ? 4 : 3);
        put16(&b, (unsigned)tag);
        put(&b, tail, 14);
    }
    put(&b, "data", 4);
    put32(&b, (uint32_t)data);
    for (size_t i = 0; i < frames; i++)
        for (int c = 0; c < ch; c++) {
            double x = v(i, c);
            if (tag == 3 && bits == 32) {
                float f = (float)x;
                uint32_t u;
                memcpy(&u, &f, 4);
                put32(&b, u);
            } else if (tag == 3) {
                uint64_t u;
                memcpy(&u, &x, 8);
                put32(&b, (uint32_t)u);
                put32(&b, (uint32_t)(u >> 32));
            } else if (bits == 8) {
                uint8_t u = (uint8_t)(int)lrint(x * 128 + 128);
                put(&b, &u, 1);
            } else if (bits == 16) {
                put16(&b, (unsigned)(uint16_t)(int16_t)lrint(x * 32768));
            } else if (bits == 24) {
                int32_t s = (int32_t)lrint(x * 8388608);
                uint8_t t[3] = {s & 255, (s >> 8) & 255, (s >> 16) & 255};
                put(&b, t, 3);
            } else {
                put32(&b, (uint32_t)(int32_t)lrint(x * 2147483647.0));
            }
        }
    return b;
}

static double ramp(size_t i, int c) { return ((double)(i % 200) / 100.0 - 1.0) * (c ? -0.5 : 0.5); }
static double sine22k(size_t i, int c) { (void)c; return 0.5 * sin(2 * M_PI * 440.0 * i / 22050.0); }

static void t_wav_formats(void)
{
    static const struct { int tag, bits; bool ext; double tol; } f[] = {
        /* tolerance: half a quantization step of the format (the ramp is off the integer grid)
         * plus 6e-8 for rounding the result to float32 */
        {1, 8, false, 1.0 / 256 + 6e-8},  {1, 16, false, 1.0 / 65536 + 6e-8},
        {1, 24, false, 1.0 / 16777216 + 6e-8}, {1, 32, false, 6e-8},
        {3, 32, false, 6e-8},   {3, 64, false, 6e-8},
        {1, 16, true, 1.0 / 65536 + 6e-8}, {3, 32, true, 6e-8},
    };
    for (size_t k = 0; k < LIP_ARRAY_LEN(f); k++)
        for (int ch = 1; ch <= 2; ch++) {
            buf b = make_wav(f[k].tag, ch, 16000, f[k].bits, 1000, f[k].ext, ramp);
            float *pcm = NULL;
            size_t n = 0;
            lip_err err = {0};
            int rc = lip_audio_wav_parse(b.p, b.n, &pcm, &n, &err);
            CHECK_MSG(rc == 0, "tag %d bits %d ch %d: %s", f[k].tag, f[k].bits, ch, err.msg);
            CHECK(n == 1000);
            double worst = 0;
            for (size_t i = 0; pcm && i < n; i++) {
                /* stereo is the mean of the channels: 0.5 r - 0.25 r = 0.25 r */
                double want = ch == 1 ? ramp(i, 0) : (ramp(i, 0) + ramp(i, 1)) / 2;
                worst = fmax(worst, fabs(pcm[i] - want));
            }
            CHECK_MSG(worst <= f[k].tol, "tag %d bits %d ch %d: %.3g", f[k].tag, f[k].bits, ch, worst);
            lip_free(pcm);
            free(b.p);
        }
}

static void t_wav_resample_sine(void)
{
    size_t frames = 22050; /* 1 s */
    buf b = make_wav(1, 1, 22050, 16, frames, false, sine22k);
    float *pcm = NULL;
    size_t n = 0;
    lip_err err = {0};
    CHECK_RC(lip_audio_wav_parse(b.p, b.n, &pcm, &n, &err));
    CHECK(n == 16000); /* ceil(22050 x 16000 / 22050) */
    double worst = 0;
    /* Away from the edges (the filter's 64 taps see zeros there), a 440 Hz tone is deep in the
     * passband: the resampled signal must be the same sine at 16 kHz, in phase (no delay).
     * Measured 1.9e-5; the 1e-4 budget covers 16-bit quantization (1.5e-5) and the filter's
     * passband ripple. A delay of one output sample would give 0.086. */
    for (size_t i = 200; pcm && i < n - 200; i++)
        worst = fmax(worst, fabs(pcm[i] - 0.5 * sin(2 * M_PI * 440.0 * i / 16000.0)));
    printf("# 22050 -> 16000 sine: max error %.3g\n", worst);
    CHECK(worst < 1e-4);
    lip_free(pcm);
    free(b.p);
}

static void t_wav_espeak(void)
{
    char dir[] = "/tmp/lipsync-audio-XXXXXX";
    if (!mkdtemp(dir)) SKIP("no temp dir");
    char wav[256], cmd[512];
    snprintf(wav, sizeof wav, "%s/hello.wav", dir);
    snprintf(cmd, sizeof cmd, "espeak-ng -w %s 'hello, this is a test of lip sync' 2>/dev/null", wav);
    if (system(cmd) != 0) {
        rmdir(dir);
        SKIP("espeak-ng not available");
    }
    float *pcm = NULL;
    size_t n = 0;
    lip_err err = {0};
    CHECK_RC(lip_audio_wav_load(wav, &pcm, &n, &err));
    /* espeak-ng writes 22,050 Hz 16-bit mono: the length must follow the rate ratio. */
    uint8_t *raw = NULL;
    size_t rl = 0;
    CHECK_RC(lip_file_read(wav, 0, &raw, &rl, &err));
    if (raw && rl > 44) {
        uint32_t rate = raw[24] | raw[25] << 8 | raw[26] << 16 | (uint32_t)raw[27] << 24;
        CHECK(rate == 22050);
    }
    double energy = 0;
    for (size_t i = 0; i < n; i++) energy += pcm[i] * pcm[i];
    printf("# espeak-ng: %zu samples at 16 kHz, rms %.3g\n", n, sqrt(energy / (double)n));
    CHECK(n > 16000 && energy / (double)n > 1e-4); /* over a second of audible speech */
    float *mel = NULL;
    int M = 0;
    CHECK_RC(lip_audio_mel(pcm, n, &mel, &M, &err));
    CHECK(M == lip_audio_mel_count(n));
    lip_free(mel);
    lip_free(raw);
    lip_free(pcm);
    unlink(wav);
    rmdir(dir);
}

/* Expects parse failure with code and a message containing `what`. */
static void bad_wav(const uint8_t *p, size_t n, int code, const char *what)
{
    float *pcm = (float *)1;
    size_t np = 7;
    lip_err err = {0};
    int rc = lip_audio_wav_parse(p, n, &pcm, &np, &err);
    CHECK_MSG(rc == code && strstr(err.msg, what) && pcm == NULL && np == 0,
              "want %d '%s', got %d '%s'", code, what, rc, err.msg);
}

static void t_wav_errors(void)
{
    buf g = make_wav(1, 1, 16000, 16, 100, false, ramp);
    size_t fmt = 12 + 12; /* after RIFF header and the LIST chunk */
    uint8_t *c = malloc(g.n + 16);
    bad_wav(g.p, 0, LIP_EFORMAT, "12");
    bad_wav(g.p, 11, LIP_EFORMAT, "12");
    memcpy(c, g.p, g.n);
    memcpy(c, "RIFX", 4);
    bad_wav(c, g.n, LIP_EUNSUPPORTED, "RIFX");
    memcpy(c, "JUNK", 4);
    bad_wav(c, g.n, LIP_EFORMAT, "not a WAV");
    /* truncated data: the data chunk declares 200 bytes */
    bad_wav(g.p, g.n - 10, LIP_EFORMAT, "truncated");
    /* odd byte count inside the data: declared 199 bytes of 16-bit samples */
    memcpy(c, g.p, g.n);
    c[g.n - 200 - 4] = 199;
    bad_wav(c, g.n - 1, LIP_EFORMAT, "whole number");
    /* format tag 2 (ADPCM) */
    memcpy(c, g.p, g.n);
    c[fmt + 8] = 2;
    bad_wav(c, g.n, LIP_EUNSUPPORTED, "0x0002");
    /* 12-bit PCM */
    memcpy(c, g.p, g.n);
    c[fmt + 8 + 14] = 12;
    bad_wav(c, g.n, LIP_EUNSUPPORTED, "12 bits");
    /* 0 channels, 9 channels */
    memcpy(c, g.p, g.n);
    c[fmt + 8 + 2] = 0;
    bad_wav(c, g.n, LIP_EUNSUPPORTED, "0 channels");
    c[fmt + 8 + 2] = 9;
    bad_wav(c, g.n, LIP_EUNSUPPORTED, "9 channels");
    /* rate 0 */
    memcpy(c, g.p, g.n);
    memset(c + fmt + 8 + 4, 0, 4);
    bad_wav(c, g.n, LIP_EUNSUPPORTED, "sample rate 0");
    /* block align wrong */
    memcpy(c, g.p, g.n);
    c[fmt + 8 + 12] = 4;
    bad_wav(c, g.n, LIP_EFORMAT, "block align");
    /* no data chunk */
    bad_wav(g.p, fmt + 8 + 16, LIP_EFORMAT, "no 'data'");
    /* empty data */
    buf e = make_wav(1, 1, 16000, 16, 0, false, ramp);
    bad_wav(e.p, e.n, LIP_EINVAL, "no samples");
    /* NaN in a float WAV */
    buf fl = make_wav(3, 1, 16000, 32, 10, false, ramp);
    uint32_t nan = 0x7fc00000;
    memcpy(fl.p + fl.n - 4 * 3, &nan, 4);
    bad_wav(fl.p, fl.n, LIP_EINVAL, "sample 7 is NaN");
    lip_err err = {0};
    float *pcm;
    size_t n;
    CHECK(lip_audio_wav_load("/nonexistent/x.wav", &pcm, &n, &err) != 0);
    CHECK(strstr(err.msg, "/nonexistent/x.wav") != NULL);
    free(c);
    free(g.p);
    free(e.p);
    free(fl.p);
}

static void t_wire_bytes(void)
{
    float v[5] = {0.1f, -0.2f, 0.3f, 0.0f, 1.0f};
    float *pcm = NULL;
    size_t n = 0;
    lip_err err = {0};
    CHECK_RC(lip_audio_pcm_from_bytes(v, 20, &pcm, &n, &err));
    CHECK(n == 5 && pcm && memcmp(pcm, v, 20) == 0);
    lip_free(pcm);
    CHECK(lip_audio_pcm_from_bytes(v, 19, &pcm, &n, &err) == LIP_EINVAL);
    CHECK(strstr(err.msg, "multiple of 4") != NULL);
    CHECK(lip_audio_pcm_from_bytes(v, 0, &pcm, &n, &err) == LIP_EINVAL);
    CHECK(strstr(err.msg, "empty") != NULL);
    v[3] = INFINITY;
    CHECK(lip_audio_pcm_from_bytes(v, 20, &pcm, &n, &err) == LIP_EINVAL);
    CHECK(strstr(err.msg, "sample 3") && strstr(err.msg, "infinite"));
    CHECK(pcm == NULL && n == 0);
}

static void t_bad_pcm(void)
{
    float *mel = NULL, *rows = NULL;
    int M = 0, nr = 0;
    lip_err err = {0};
    float x[4000];
    for (int i = 0; i < 4000; i++) x[i] = 0.1f * sinf(i * 0.05f);
    CHECK(lip_audio_mel(x, 0, &mel, &M, &err) == LIP_EINVAL && strstr(err.msg, "empty"));
    x[17] = NAN;
    CHECK(lip_audio_mel(x, 4000, &mel, &M, &err) == LIP_EINVAL && strstr(err.msg, "sample 17"));
    x[17] = -INFINITY;
    CHECK(lip_audio_mel(x, 4000, &mel, &M, &err) == LIP_EINVAL && strstr(err.msg, "infinite"));
    CHECK(mel == NULL);
    x[17] = 0;
    /* shorter than one window: the mel exists (M = 15) but no encoder window fits */
    CHECK_RC(lip_audio_mel(x, 2999, &mel, &M, &err));
    CHECK(M == 15);
    lip_free(mel);
    lip_engine *fake = (lip_engine *)x; /* never run: the length check comes first */
    CHECK(lip_audio_features(fake, x, 2999, &rows, &nr, &err) == LIP_EINVAL);
    CHECK(strstr(err.msg, "2999") && strstr(err.msg, "3000"));
    CHECK(lip_audio_features(NULL, x, 4000, &rows, &nr, &err) == LIP_EPRECOND);
}

/* A valid .npy of `rows` x `cols` float32 (or float64) values. */
static buf make_npy(const char *descr, size_t rows, size_t cols, size_t esize)
{
    buf b = {0};
    char h[128];
    int hl = snprintf(h, sizeof h, "{'descr': '%s', 'fortran_order': False, 'shape': (%zu, %zu), }",
                      descr, rows, cols);
    int pad = 64 - (10 + hl + 1) % 64;
    put(&b, "\x93NUMPY\x01\x00", 8);
    put16(&b, (unsigned)(hl + pad + 1));
    put(&b, h, (size_t)hl);
    for (int i = 0; i < pad; i++) put(&b, " ", 1);
    put(&b, "\n", 1);
    for (size_t i = 0; i < rows * cols; i++) {
        double v = (double)(i % 512) / 512.0;
        float f = (float)v;
        put(&b, esize == 4 ? (void *)&f : (void *)&v, esize);
    }
    return b;
}

static void t_features_npy(void)
{
    float *rows = NULL;
    int nr = 0;
    lip_err err = {0};
    buf ok = make_npy("<f4", 5, 512, 4);
    CHECK_RC(lip_audio_features_parse(ok.p, ok.n, &rows, &nr, &err));
    CHECK(nr == 5 && rows && rows[513] == 1.0f / 512);
    lip_free(rows);
    buf f8 = make_npy("<f8", 5, 512, 8);
    CHECK(lip_audio_features_parse(f8.p, f8.n, &rows, &nr, &err) == LIP_EFORMAT);
    CHECK(strstr(err.msg, "float64") != NULL);
    buf narrow = make_npy("<f4", 5, 511, 4);
    CHECK(lip_audio_features_parse(narrow.p, narrow.n, &rows, &nr, &err) == LIP_EFORMAT);
    CHECK(strstr(err.msg, "511") != NULL);
    buf two = make_npy("<f4", 2, 512, 4);
    CHECK(lip_audio_features_parse(two.p, two.n, &rows, &nr, &err) == LIP_EFORMAT);
    CHECK(lip_audio_features_parse(ok.p, ok.n - 1, &rows, &nr, &err) != 0); /* truncated */
    float nan = NAN;
    memcpy(ok.p + ok.n - 4 * 700, &nan, 4);
    CHECK(lip_audio_features_parse(ok.p, ok.n, &rows, &nr, &err) == LIP_EFORMAT);
    CHECK(strstr(err.msg, "row 3") != NULL);
    CHECK(rows == NULL && nr == 0);
    free(ok.p);
    free(f8.p);
    free(narrow.p);
    free(two.p);
}

/* Makes the nth allocation fail for n = 1, 2 ...: every function must either succeed or return
 * LIP_ENOMEM with a message, and leak nothing (ASan/LSan builds check the leaks). */
static void t_alloc_failures(void)
{
    buf b = make_wav(1, 2, 22050, 16, 4000, false, ramp);
    static float x[6000];
    for (int i = 0; i < 6000; i++) x[i] = 0.2f * sinf(0.03f * (float)i);
    int failures = 0;
    for (long nth = 1; nth <= 12; nth++) {
        lip_err err = {0};
        float *p = NULL;
        size_t n = 0;
        int M = 0;
        lip_alloc_fail_at(nth);
        int rc = lip_audio_wav_parse(b.p, b.n, &p, &n, &err);
        CHECK(rc == 0 || (rc == LIP_ENOMEM && err.msg[0]));
        failures += rc != 0;
        lip_free(p);
        lip_alloc_fail_at(nth);
        rc = lip_audio_mel(x, 6000, &p, &M, &err);
        CHECK(rc == 0 || (rc == LIP_ENOMEM && err.msg[0] && p == NULL));
        failures += rc != 0;
        lip_free(p);
        lip_audio_stages st;
        lip_alloc_fail_at(nth);
        rc = lip_audio_mel_stages(x, 6000, &st, &err);
        CHECK(rc == 0 || (rc == LIP_ENOMEM && st.mel_norm == NULL));
        failures += rc != 0;
        lip_audio_stages_free(&st);
        lip_alloc_fail_at(nth);
        rc = lip_audio_pcm_from_bytes(x, sizeof x, &p, &n, &err);
        CHECK(rc == 0 || rc == LIP_ENOMEM);
        failures += rc != 0;
        lip_free(p);
    }
    lip_alloc_fail_at(0);
    printf("# %d injected allocation failures reported as LIP_ENOMEM\n", failures);
    CHECK(failures >= 12); /* the hook did reach these functions */
    free(b.p);
}

/* ---- fuzz ----------------------------------------------------------------------------------- */
static uint32_t rng = 12345;
static uint32_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 17;
    rng ^= rng << 5;
    return rng;
}

static void mutate(uint8_t *p, size_t n)
{
    int k = 1 + (int)(rnd() % 8);
    for (int i = 0; i < k && n; i++) {
        size_t at = rnd() % n;
        switch (rnd() % 4) {
        case 0: p[at] = (uint8_t)rnd(); break;
        case 1: p[at] ^= (uint8_t)(1u << (rnd() % 8)); break;
        case 2: p[at] = (uint8_t[]){0, 0xff, 0x7f, 0x80}[rnd() % 4]; break;
        default: /* a size-like field: 4 random bytes */
            for (size_t j = at; j < n && j < at + 4; j++) p[j] = (uint8_t)rnd();
        }
    }
}

static void t_fuzz(void)
{
    /* Seeds: small valid files of several kinds (the resampling path included). */
    buf seeds[5] = {make_wav(1, 1, 22050, 16, 300, false, ramp), make_wav(3, 2, 16000, 32, 200, true, ramp),
                    make_wav(1, 2, 8000, 24, 150, false, ramp), make_wav(1, 1, 16000, 8, 100, false, ramp),
                    make_npy("<f4", 3, 512, 4)};
    uint8_t *w = malloc(16384);
    int accepted = 0, rejected = 0, iters = 6000;
    for (int it = 0; it < iters; it++) {
        const buf *s = &seeds[it % 5];
        size_t n;
        if (it % 7 == 0) { /* pure random bytes, sometimes with a RIFF/NUMPY prefix */
            n = rnd() % 512;
            for (size_t i = 0; i < n; i++) w[i] = (uint8_t)rnd();
            if (n >= 12 && rnd() % 2) memcpy(w, s->p, 12);
        } else {
            n = s->n;
            memcpy(w, s->p, n);
            mutate(w, n);
            if (rnd() % 4 == 0) n = rnd() % (n + 1); /* truncate */
        }
        lip_err err = {0};
        int rc;
        if (it % 5 == 4) {
            float *rows = NULL;
            int nr = 0;
            rc = lip_audio_features_parse(w, n, &rows, &nr, &err);
            lip_npy a;
            int rc2 = lip_npy_parse(w, n, &a, &err);
            if (!rc2) lip_npy_free(&a);
            lip_free(rows);
        } else {
            float *pcm = NULL;
            size_t np = 0;
            rc = lip_audio_wav_parse(w, n, &pcm, &np, &err);
            if (!rc) CHECK(pcm != NULL && np > 0 && lip_audio_find_nonfinite(pcm, np) < 0);
            lip_free(pcm);
        }
        if (rc) {
            rejected++;
            CHECK_MSG(err.msg[0] != 0, "iteration %d: error %d without a message", it, rc);
        } else {
            accepted++;
        }
    }
    printf("# fuzz: %d inputs, %d accepted, %d rejected with a message\n", iters, accepted, rejected);
    CHECK(accepted > 0 && rejected > 0); /* both paths were exercised */
    free(w);
    for (int i = 0; i < 5; i++) free(seeds[i].p);
}

int main(void)
{
    RUN(t_wav_formats);
    RUN(t_wav_resample_sine);
    RUN(t_wav_espeak);
    RUN(t_wav_errors);
    RUN(t_wire_bytes);
    RUN(t_bad_pcm);
    RUN(t_features_npy);
    RUN(t_alloc_failures);
    RUN(t_fuzz);
    return test_summary();
}
