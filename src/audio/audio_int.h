/* SPDX-License-Identifier: MIT */
/* audio_int.h: internals shared by the audio module's files: the per-thread STFT plan and the
 * one per-frame routine (pre-emphasized 800-sample segment -> 80 normalized mel values) that
 * the whole-clip and the streaming paths both call, so that they agree bit for bit. */
#ifndef LIP_AUDIO_INT_H
#define LIP_AUDIO_INT_H

#include "audio/audio.h"

#include <complex.h>
#include <kiss_fftr.h>

/* FFT state and scratch for one thread (kiss_fftr writes into its cfg while it runs, so a
 * plan is never shared between threads). */
typedef struct lip_audio_plan {
    kiss_fftr_cfg cfg;
    float in[LIP_AUDIO_NFFT];
    kiss_fft_cpx out[LIP_AUDIO_NBINS];
    double xw[LIP_AUDIO_NFFT];              /* windowed frame in double */
    double complex cin[LIP_AUDIO_NFFT / 2], cout[LIP_AUDIO_NFFT / 2]; /* double FFT */
    uint64_t refined;          /* frames recomputed in double so far (statistics) */
} lip_audio_plan;

/* Optional per-frame outputs of every stage (any pointer may be NULL). */
typedef struct lip_audio_frame_dbg {
    float *re, *im, *mag;        /* [401] */
    double *lin, *db, *db_ref;   /* [80] */
} lip_audio_frame_dbg;

int lip_audio_plan_init(lip_audio_plan *p, lip_err *err);
void lip_audio_plan_fini(lip_audio_plan *p);
/* seg: the frame's 800 pre-emphasized samples (zeros where the frame overhangs the clip). */
void lip_audio_mel_frame(lip_audio_plan *p, const double *seg, float *norm80,
                         const lip_audio_frame_dbg *dbg);

/* Reusable per-thread scratch for whole clips and requests (see lip_audio_ws_new). Buffers
 * grow to the largest clip seen and are kept. */
struct lip_audio_ws {
    lip_audio_plan plan;
    double *pad;   /* zero-padded pre-emphasized clip */
    size_t pad_cap;
    float *mel;    /* [M][80] */
    size_t mel_cap;
    float *rows;   /* [(L+2)][512] */
    size_t rows_cap;
    float *pcm;    /* concatenated audio_chunks */
    size_t pcm_cap;
    float *win;    /* [LIP_AUDIO_ENC_BATCH][80*16], aligned */
};
/* Grows *buf (elements of size `size`) to at least `need` elements. */
int lip_audio_ws_grow(void **buf, size_t *cap, size_t need, size_t size, lip_err *err);
/* Normalized mel of pcm into ws->mel (st may be NULL); *M its rows. Input already checked. */
int lip_audio_ws_mel(lip_audio_ws *ws, const float *pcm, size_t n, lip_audio_stages *st, int *M,
                     lip_err *err);
/* Padded features of ws->mel (M rows) into ws->rows; *nrows = L + 2. */
int lip_audio_ws_features(lip_audio_ws *ws, lip_engine *enc, const float *mel, int M, int *nrows,
                          lip_err *err);
/* Checks pcm: non-empty, within LIP_AUDIO_MAX_SAMPLES, finite. */
int lip_audio_check_pcm(const float *pcm, size_t n, lip_err *err);

/* Pre-emphasis of one sample given the previous input sample (0 before the first), kept in
 * double (float32 rounding here alone would cost ~1e-5 in quiet bands of loud frames). */
static inline double lip_audio_preemph1(float x, float prev)
{
    return (double)x - 0.97 * (double)prev;
}

#endif
