/* SPDX-License-Identifier: MIT */
/* audio/mel.c: PCM to normalized log-mel (AUDIO.md steps 1-7): pre-emphasis 0.97, centred STFT
 * (n_fft 800, hop 200, periodic Hann, 400 zeros each side) with kissfft, magnitude, the Slaney
 * mel filterbank computed from its formula, dB with a -100 dB floor, minus 20 dB, and the
 * [-4, 4] normalization. The FFT runs in float32 (kissfft's float build); everything around it
 * (pre-emphasis, window, magnitude, mel sums, logarithms) runs in double, and the few mel bands
 * where the float32 FFT's error would matter are recomputed with a double FFT (see FFT_ERR),
 * which keeps normalized values within ~1e-5 (measured 1.5e-6) of a float64 reference. */
#include "audio/audio_int.h"

#include <complex.h>
#include <math.h>
#include <pthread.h>
#include <string.h>

/* ---- static tables ------------------------------------------------------------------------ */
static float g_window[LIP_AUDIO_NFFT];
static double g_window_d[LIP_AUDIO_NFFT];
static double complex g_tw[LIP_AUDIO_NFFT]; /* e^{-2 pi i j / 800}, for the double FFT */
static double g_fb_sum[LIP_AUDIO_NMELS]; /* sum of each filter's weights (error bounds) */
static float g_fb[LIP_AUDIO_NMELS][LIP_AUDIO_NBINS];
/* Nonzero range [lo, hi) of each filter, so the mel sum skips the zeros (most of the row). */
static int g_fb_lo[LIP_AUDIO_NMELS], g_fb_hi[LIP_AUDIO_NMELS];
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

/* Slaney mel scale as librosa implements it (htk=False): linear below 1 kHz, log above. */
static const double F_SP = 200.0 / 3.0, MIN_LOG_HZ = 1000.0, MIN_LOG_MEL = 15.0;

static double hz_to_mel(double f)
{
    double logstep = log(6.4) / 27.0;
    if (f >= MIN_LOG_HZ) return MIN_LOG_MEL + log(f / MIN_LOG_HZ) / logstep;
    return f / F_SP;
}

static double mel_to_hz(double m)
{
    double logstep = log(6.4) / 27.0;
    if (m >= MIN_LOG_MEL) return MIN_LOG_HZ * exp(logstep * (m - MIN_LOG_MEL));
    return F_SP * m;
}

/* librosa.filters.mel(sr=16000, n_fft=800, n_mels=80, fmin=55, fmax=7600, norm='slaney') with
 * its float32 output: each triangle weight is computed in double and stored as float32, then
 * multiplied (in double) by the area normalization 2 / (f[i+2] - f[i]) and stored again. The
 * order of these roundings is what makes the table equal the reference bit for bit. */
static void build_tables(void)
{
    for (int n = 0; n < LIP_AUDIO_NFFT; n++) { /* periodic Hann: denominator N, not N-1 */
        g_window_d[n] = 0.5 - 0.5 * cos(2.0 * M_PI * n / LIP_AUDIO_NFFT);
        g_window[n] = (float)g_window_d[n];
        g_tw[n] = cos(2.0 * M_PI * n / LIP_AUDIO_NFFT) - I * sin(2.0 * M_PI * n / LIP_AUDIO_NFFT);
    }

    enum { NPTS = LIP_AUDIO_NMELS + 2 };
    double mel_f[NPTS];
    double mmin = hz_to_mel(55.0), mmax = hz_to_mel(7600.0);
    double step = (mmax - mmin) / (NPTS - 1); /* numpy.linspace: i*step + start, exact end */
    for (int i = 0; i < NPTS; i++) mel_f[i] = mel_to_hz(i == NPTS - 1 ? mmax : i * step + mmin);

    for (int b = 0; b < LIP_AUDIO_NMELS; b++) {
        double fd0 = mel_f[b + 1] - mel_f[b], fd1 = mel_f[b + 2] - mel_f[b + 1];
        double enorm = 2.0 / (mel_f[b + 2] - mel_f[b]);
        g_fb_lo[b] = LIP_AUDIO_NBINS;
        g_fb_hi[b] = 0;
        for (int k = 0; k < LIP_AUDIO_NBINS; k++) {
            double fk = (double)k * LIP_AUDIO_RATE / LIP_AUDIO_NFFT;
            double lower = -(mel_f[b] - fk) / fd0, upper = (mel_f[b + 2] - fk) / fd1;
            double w = fmax(0.0, fmin(lower, upper));
            float wf = (float)w;
            g_fb[b][k] = (float)((double)wf * enorm);
            g_fb_sum[b] += g_fb[b][k];
            if (g_fb[b][k] != 0.0f) {
                if (k < g_fb_lo[b]) g_fb_lo[b] = k;
                g_fb_hi[b] = k + 1;
            }
        }
        if (g_fb_hi[b] == 0) g_fb_lo[b] = 0; /* empty filter (never for these parameters) */
    }
}

static void tables_once(void) { pthread_once(&g_once, build_tables); }

const float *lip_audio_filterbank(void)
{
    tables_once();
    return &g_fb[0][0];
}

/* ---- sizes -------------------------------------------------------------------------------- */
int lip_audio_mel_count(size_t n)
{
    if (n > LIP_AUDIO_MAX_SAMPLES) return -1;
    return (int)(1 + n / LIP_AUDIO_HOP);
}

int lip_audio_window_count(int M)
{
    if (M < LIP_AUDIO_WIN) return 0;
    /* Python's int((M - 16) / 80 * 25) + 2, in the same double arithmetic, so a value that
     * lands a hair under an integer truncates the same way the reference did. */
    return (int)((double)(M - LIP_AUDIO_WIN) / 80.0 * 25.0) + 2;
}

int lip_audio_window_start(int i, int M)
{
    int s = (int)((int64_t)16 * i / 5);
    if (s + LIP_AUDIO_WIN > M) s = M - LIP_AUDIO_WIN;
    return s;
}

/* ---- per-frame computation ---------------------------------------------------------------- */
int lip_audio_plan_init(lip_audio_plan *p, lip_err *err)
{
    tables_once();
    memset(p, 0, sizeof *p);
    p->cfg = kiss_fftr_alloc(LIP_AUDIO_NFFT, 0, NULL, NULL);
    if (!p->cfg) return lip_err_set(err, LIP_ENOMEM, "out of memory for the %d-point FFT", LIP_AUDIO_NFFT);
    return 0;
}

void lip_audio_plan_fini(lip_audio_plan *p)
{
    if (!p) return;
    if (p->cfg) kiss_fftr_free(p->cfg);
    p->cfg = NULL;
}

/* When the float32 FFT is not enough. Its rounding error on a bin scales with the windowed
 * frame's L2 norm, not with the bin (measured against a double DFT over the whole speech
 * reference: up to 1.8e-6 x norm on single bins). A loud frame can therefore swamp a quiet
 * band: float32 alone gives normalized values up to 4e-5 off (58 of 133,920 above 1e-5). The
 * band's error is estimated as FFT_ERR x norm x (sum of the band's weights); if that exceeds
 * BAND_REL of any band's value, the whole frame is recomputed with the double FFT below.
 * FFT_ERR is an error scale calibrated on the speech reference, not a worst-case bound (errors
 * of a band's bins partly cancel): 1e-7 refines 4 % of frames and misses one value (1.01e-5),
 * 3e-7 refines 18 % (max 4.1e-6), 5e-7 refines 48 % (max 1.5e-6, the choice: a 6x margin),
 * 4e-6 (the single-bin worst case) refines every frame (max 1.2e-7). Silence and steady tones
 * stay on the float32 path. The decision depends only on the frame's samples, so whole-clip
 * and streaming results are bit-identical. Both constants may be overridden at compile time. */
#ifndef FFT_ERR
#define FFT_ERR 5e-7
#endif
#ifndef BAND_REL
#define BAND_REL 1e-5
#endif

/* Complex product written out: the C99 operator calls __muldc3 (Annex G NaN/Inf recovery),
 * which is several times slower and not needed for finite samples. */
static inline double complex cmul(double complex a, double complex b)
{
    double ar = creal(a), ai = cimag(a), br = creal(b), bi = cimag(b);
    return CMPLX(ar * br - ai * bi, ar * bi + ai * br);
}

/* Mixed-radix (4, 2, 5) decimation-in-time DFT of n points (n divides 800), out of place:
 * out[k] = sum_j in[j * stride] e^{-2 pi i j k / n}, with twstep = 800 / n. Recursion depth is
 * 4 for n = 400. */
static void fft_d(const double complex *in, size_t stride, int n, double complex *out, int twstep)
{
    if (n == 1) {
        out[0] = in[0];
        return;
    }
    int p = n % 4 == 0 ? 4 : n % 2 == 0 ? 2 : 5;
    int m = n / p;
    for (int q = 0; q < p; q++) fft_d(in + q * stride, stride * p, m, out + q * m, twstep * p);
    /* X[k + r m] = sum_q W_p^{q r} (W_n^{q k} Y_q[k]): twiddle, then a p-point DFT. */
    int wp = LIP_AUDIO_NFFT / p;
    for (int k = 0; k < m; k++) {
        double complex z[5];
        z[0] = out[k];
        for (int q = 1; q < p; q++)
            z[q] = cmul(g_tw[q * k * twstep], out[q * m + k]); /* q k twstep < p (n/p)(800/n) = 800 */
        for (int r = 0; r < p; r++) {
            double complex acc = z[0];
            for (int q = 1; q < p; q++) acc += cmul(g_tw[((q * r) % p) * wp], z[q]);
            out[r * m + k] = acc;
        }
    }
}

/* Mel sums of all bands from mag; returns true if some band's float32 error bound is too big
 * (only asked for when mag came from the float32 FFT). */
static bool mel_sums(const double *mag, double bin_err, double *m)
{
    bool refine = false;
    for (int b = 0; b < LIP_AUDIO_NMELS; b++) {
        double v = 0.0;
        for (int k = g_fb_lo[b]; k < g_fb_hi[b]; k++) v += (double)g_fb[b][k] * mag[k];
        m[b] = v;
        double bound = bin_err * g_fb_sum[b];
        /* Bands so far under the -100 dB floor that the floor is the answer are exempt. */
        if (bound > BAND_REL * v && v + bound >= 1e-5) refine = true;
    }
    return refine;
}

void lip_audio_mel_frame(lip_audio_plan *p, const double *seg, float *norm80,
                         const lip_audio_frame_dbg *dbg)
{
    double norm2 = 0.0;
    for (int n = 0; n < LIP_AUDIO_NFFT; n++) {
        p->xw[n] = seg[n] * g_window_d[n];
        p->in[n] = (float)p->xw[n];
        norm2 += p->xw[n] * p->xw[n];
    }
    kiss_fftr(p->cfg, p->in, p->out);
    double mag[LIP_AUDIO_NBINS], m[LIP_AUDIO_NMELS];
    for (int k = 0; k < LIP_AUDIO_NBINS; k++) {
        double re = p->out[k].r, im = p->out[k].i;
        mag[k] = sqrt(re * re + im * im);
    }
    if (mel_sums(mag, FFT_ERR * sqrt(norm2), m)) {
        /* Real input of 800 as a complex FFT of 400: z[n] = x[2n] + i x[2n+1], then
         * X[k] = E[k] + W^k O[k] with E, O the spectra of the even and odd samples. */
        enum { H = LIP_AUDIO_NFFT / 2 };
        for (int n = 0; n < H; n++) p->cin[n] = CMPLX(p->xw[2 * n], p->xw[2 * n + 1]);
        fft_d(p->cin, 1, H, p->cout, 2);
        for (int k = 0; k < LIP_AUDIO_NBINS; k++) {
            double complex zk = p->cout[k % H], zc = conj(p->cout[(H - k) % H]);
            double complex e = 0.5 * (zk + zc), o = -0.5 * I * (zk - zc);
            double complex xk = e + cmul(g_tw[k], o);
            double re = creal(xk), im = cimag(xk);
            p->out[k].r = (float)re;
            p->out[k].i = (float)im;
            mag[k] = sqrt(re * re + im * im);
        }
        mel_sums(mag, 0.0, m);
        p->refined++;
    }
    for (int b = 0; b < LIP_AUDIO_NMELS; b++) {
        double d = 20.0 * log10(m[b] > 1e-5 ? m[b] : 1e-5);
        double dr = d - 20.0;
        double v = 8.0 * (dr + 100.0) / 100.0 - 4.0;
        norm80[b] = (float)(v < -4.0 ? -4.0 : v > 4.0 ? 4.0 : v);
        if (dbg && dbg->lin) dbg->lin[b] = m[b];
        if (dbg && dbg->db) dbg->db[b] = d;
        if (dbg && dbg->db_ref) dbg->db_ref[b] = dr;
    }
    if (dbg)
        for (int k = 0; k < LIP_AUDIO_NBINS; k++) {
            if (dbg->re) dbg->re[k] = p->out[k].r;
            if (dbg->im) dbg->im[k] = p->out[k].i;
            if (dbg->mag) dbg->mag[k] = (float)mag[k];
        }
}

/* ---- whole clip --------------------------------------------------------------------------- */
long lip_audio_find_nonfinite(const float *pcm, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(pcm[i])) return (long)i;
    return -1;
}

int lip_audio_check_pcm(const float *pcm, size_t n, lip_err *err)
{
    if (n == 0 || !pcm) return lip_err_set(err, LIP_EINVAL, "audio is empty (0 samples)");
    if (n > LIP_AUDIO_MAX_SAMPLES)
        return lip_err_set(err, LIP_EINVAL, "audio has %zu samples, more than the limit of %zu",
                           n, LIP_AUDIO_MAX_SAMPLES);
    long bad = lip_audio_find_nonfinite(pcm, n);
    if (bad >= 0)
        return lip_err_set(err, LIP_EINVAL, "audio sample %ld is %s; samples must be finite", bad,
                           isnan(pcm[bad]) ? "NaN" : "infinite");
    return 0;
}

int lip_audio_ws_grow(void **buf, size_t *cap, size_t need, size_t size, lip_err *err)
{
    if (need <= *cap) return 0;
    size_t want = need + need / 4; /* headroom so slightly longer requests do not regrow */
    void *p = lip_realloc(*buf, want * size);
    if (!p) return lip_err_set(err, LIP_ENOMEM, "out of memory for %zu audio values", want);
    *buf = p;
    *cap = want;
    return 0;
}

lip_audio_ws *lip_audio_ws_new(lip_err *err)
{
    lip_audio_ws *ws = lip_calloc(1, sizeof *ws);
    if (!ws) {
        lip_err_set(err, LIP_ENOMEM, "out of memory for an audio workspace");
        return NULL;
    }
    ws->win = lip_aligned_alloc((size_t)LIP_AUDIO_ENC_BATCH * LIP_ENC_IN_FLOATS * sizeof(float));
    if (!ws->win) {
        lip_free(ws);
        lip_err_set(err, LIP_ENOMEM, "out of memory for an audio workspace");
        return NULL;
    }
    if (lip_audio_plan_init(&ws->plan, err)) {
        lip_audio_ws_free(ws);
        return NULL;
    }
    return ws;
}

void lip_audio_ws_free(lip_audio_ws *ws)
{
    if (!ws) return;
    lip_audio_plan_fini(&ws->plan);
    lip_free(ws->pad);
    lip_free(ws->mel);
    lip_free(ws->rows);
    lip_free(ws->pcm);
    lip_free_aligned(ws->win);
    lip_free(ws);
}

/* Runs every frame of a clip: builds the zero-padded pre-emphasized signal once, then hands
 * each 800-sample segment to lip_audio_mel_frame. st may be NULL (mel only). */
int lip_audio_ws_mel(lip_audio_ws *ws, const float *pcm, size_t n, lip_audio_stages *st, int *M,
                     lip_err *err)
{
    int m = lip_audio_mel_count(n);
    size_t padn = n + LIP_AUDIO_NFFT;
    int rc = lip_audio_ws_grow((void **)&ws->pad, &ws->pad_cap, padn, sizeof(double), err);
    if (!rc)
        rc = lip_audio_ws_grow((void **)&ws->mel, &ws->mel_cap, (size_t)m * LIP_AUDIO_NMELS,
                               sizeof(float), err);
    if (rc) return rc;
    double *pad = ws->pad;
    memset(pad, 0, LIP_AUDIO_NFFT / 2 * sizeof *pad);
    memset(pad + LIP_AUDIO_NFFT / 2 + n, 0, LIP_AUDIO_NFFT / 2 * sizeof *pad);
    float prev = 0.0f;
    for (size_t i = 0; i < n; i++) {
        pad[LIP_AUDIO_NFFT / 2 + i] = lip_audio_preemph1(pcm[i], prev);
        prev = pcm[i];
        if (st) st->preemph[i] = (float)pad[LIP_AUDIO_NFFT / 2 + i];
    }
    uint64_t refined0 = ws->plan.refined;
    float *mel = st ? st->mel_norm : ws->mel;
    for (int t = 0; t < m; t++) {
        lip_audio_frame_dbg dbg, *dp = NULL;
        if (st) {
            size_t kb = (size_t)t * LIP_AUDIO_NBINS, mb = (size_t)t * LIP_AUDIO_NMELS;
            dbg = (lip_audio_frame_dbg){st->stft_re + kb, st->stft_im + kb, st->stft_mag + kb,
                                        st->mel_linear + mb, st->mel_db + mb, st->mel_db_ref + mb};
            dp = &dbg;
        }
        lip_audio_mel_frame(&ws->plan, pad + (size_t)t * LIP_AUDIO_HOP, mel + (size_t)t * LIP_AUDIO_NMELS, dp);
    }
    if (st) st->refined = (int)(ws->plan.refined - refined0);
    *M = m;
    return 0;
}

int lip_audio_mel(const float *pcm, size_t n, float **mel, int *M, lip_err *err)
{
    *mel = NULL;
    *M = 0;
    int rc = lip_audio_check_pcm(pcm, n, err);
    if (rc) return rc;
    lip_audio_ws *ws = lip_audio_ws_new(err);
    if (!ws) return LIP_ENOMEM; /* its only failure */
    rc = lip_audio_ws_mel(ws, pcm, n, NULL, M, err);
    if (!rc) {
        *mel = ws->mel; /* the caller takes the buffer */
        ws->mel = NULL;
    }
    lip_audio_ws_free(ws);
    return rc;
}

void lip_audio_stages_free(lip_audio_stages *st)
{
    if (!st) return;
    lip_free(st->preemph);
    lip_free(st->stft_re);
    lip_free(st->stft_im);
    lip_free(st->stft_mag);
    lip_free(st->mel_linear);
    lip_free(st->mel_db);
    lip_free(st->mel_db_ref);
    lip_free(st->mel_norm);
    memset(st, 0, sizeof *st);
}

int lip_audio_mel_stages(const float *pcm, size_t n, lip_audio_stages *st, lip_err *err)
{
    memset(st, 0, sizeof *st);
    int rc = lip_audio_check_pcm(pcm, n, err);
    if (rc) return rc;
    int M = lip_audio_mel_count(n);
    size_t nb = (size_t)M * LIP_AUDIO_NBINS, nm = (size_t)M * LIP_AUDIO_NMELS;
    st->n = n;
    st->M = M;
    st->preemph = lip_malloc(n * sizeof(float));
    st->stft_re = lip_malloc(nb * sizeof(float));
    st->stft_im = lip_malloc(nb * sizeof(float));
    st->stft_mag = lip_malloc(nb * sizeof(float));
    st->mel_linear = lip_malloc(nm * sizeof(double));
    st->mel_db = lip_malloc(nm * sizeof(double));
    st->mel_db_ref = lip_malloc(nm * sizeof(double));
    st->mel_norm = lip_malloc(nm * sizeof(float));
    if (!st->preemph || !st->stft_re || !st->stft_im || !st->stft_mag || !st->mel_linear ||
        !st->mel_db || !st->mel_db_ref || !st->mel_norm) {
        lip_audio_stages_free(st);
        return lip_err_set(err, LIP_ENOMEM, "out of memory for the stages of %d mel frames", M);
    }
    lip_audio_ws *ws = lip_audio_ws_new(err);
    rc = ws ? lip_audio_ws_mel(ws, pcm, n, st, &M, err) : LIP_ENOMEM;
    lip_audio_ws_free(ws);
    if (rc) lip_audio_stages_free(st);
    return rc;
}
