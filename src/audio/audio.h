/* SPDX-License-Identifier: MIT */
/* audio: the audio front end (spec/AUDIO.md). 16 kHz mono float PCM becomes a normalized
 * 80-bin log-mel spectrogram (pre-emphasis, centred STFT with kissfft, Slaney mel, dB,
 * normalization), the mel is cut into one 80x16 window per video frame, the audio encoder turns
 * each window into 512 features, and the padded feature list [f0, f0, f1 .. f(L-1), f(L-1)]
 * gives every video frame its [32,16,16] UNet audio tensor. Around that: WAV loading with
 * resampling, float32 wire bytes, precomputed aud_ave.npy features, the per-request alignment
 * of API.md section 1.5, and an incremental (streaming) front end whose output equals the
 * whole-utterance computation.
 *
 * Threading: every function here is thread-safe unless its comment says otherwise (they share
 * only immutable tables built once). A lip_audio_stream and a lip_audio_ws are not: one thread
 * at a time for each. The encoder engine may be shared by many threads (ORT sessions are).
 * Errors: functions return 0 or a negative LIP_E* code and fill err (which may be NULL). */
#ifndef LIP_AUDIO_H
#define LIP_AUDIO_H

#include "core/core.h"
#include "engine/engine.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LIP_AUDIO_RATE 16000        /* samples per second */
#define LIP_AUDIO_NFFT 800          /* STFT size and window length */
#define LIP_AUDIO_HOP 200           /* samples between mel frames (80 mel frames/s) */
#define LIP_AUDIO_NBINS 401         /* 1 + NFFT/2 */
#define LIP_AUDIO_NMELS 80          /* mel bins */
#define LIP_AUDIO_WIN 16            /* mel frames per encoder window */
#define LIP_AUDIO_FEAT 512          /* encoder features per window */
#define LIP_AUDIO_FRAME_SAMPLES 640 /* samples per video frame at 25 fps */
#define LIP_AUDIO_CTX 16            /* feature rows per frame tensor (frames k-8 .. k+7) */
#define LIP_AUDIO_TENSOR (LIP_AUDIO_CTX * LIP_AUDIO_FEAT) /* 8192 floats = [32][16][16] */
#define LIP_AUDIO_MIN_SAMPLES 3000  /* fewest samples that give M >= 16 (one window) */
#define LIP_AUDIO_ENC_BATCH 25      /* encoder batch used by the whole-clip functions */
#define LIP_AUDIO_MAX_SAMPLES ((size_t)1 << 31) /* ~37 h; bounds every size computation */

/* ---- sizes and index rules (pure, thread-safe) ------------------------------------------- */
/* M = 1 + floor(n / 200) mel frames for n samples (centred framing). */
int lip_audio_mel_count(size_t n);
/* L = int((M - 16) / 80 * 25) + 2 encoder windows for M mel frames, computed in double exactly
 * as the reference does; 0 when M < 16 (no window fits). */
int lip_audio_window_count(int M);
/* First mel row of window i: floor(16 i / 5), clamped to M - 16 at the end. */
int lip_audio_window_start(int i, int M);

/* ---- mel spectrogram ---------------------------------------------------------------------- */
/* The Slaney mel filterbank [80][401] (sr 16000, n_fft 800, fmin 55, fmax 7600, area
 * normalization), computed once from the formula in float32 exactly as librosa does. The
 * table is static and immutable: do not free. Thread-safe. */
const float *lip_audio_filterbank(void);

/* Normalized log-mel of n samples of 16 kHz PCM: *mel gets a new [M][80] array (row = mel
 * frame; caller frees with lip_free), *M its row count. Fails with LIP_EINVAL on n == 0, on
 * more than LIP_AUDIO_MAX_SAMPLES samples or on a NaN/Inf sample (the message gives its
 * index); LIP_ENOMEM. On failure *mel is NULL. Thread-safe. */
int lip_audio_mel(const float *pcm, size_t n, float **mel, int *M, lip_err *err);

/* Every intermediate stage of lip_audio_mel, for validation against the reference vectors.
 * All arrays are allocated by lip_audio_mel_stages and released by lip_audio_stages_free. The
 * numbers are produced by the same per-frame code as lip_audio_mel, so mel_norm equals its
 * output bit for bit. */
typedef struct lip_audio_stages {
    size_t n;
    int M;
    float *preemph;                       /* [n] */
    float *stft_re, *stft_im, *stft_mag;  /* [M][401] */
    double *mel_linear, *mel_db, *mel_db_ref; /* [M][80]: sum F|X|, 20 log10, minus 20 */
    float *mel_norm;                      /* [M][80] */
    int refined;                          /* frames recomputed with the double FFT */
} lip_audio_stages;
int lip_audio_mel_stages(const float *pcm, size_t n, lip_audio_stages *st, lip_err *err);
void lip_audio_stages_free(lip_audio_stages *st);

/* ---- encoder windows and features --------------------------------------------------------- */
/* Writes encoder windows first .. first+count-1 of a [M][80] mel as [count][1][80][16] (the
 * window transposed: out[b][t] = mel[s+t][b]). Requires M >= 16 and 0 <= first, first+count <=
 * L (asserted: callers derive these from the mel). */
void lip_audio_windows(const float *mel, int M, int first, int count, float *out);

/* Padded encoder features of a whole clip: *rows gets a new [(L+2)][512] array
 * [f0, f0, f1 .. f(L-1), f(L-1)] (caller frees with lip_free), *nrows = L + 2. The encoder is
 * run in batches of LIP_AUDIO_ENC_BATCH. enc must be an engine created with kind
 * LIP_MODEL_AUDIO_ENCODER. Fails with LIP_EINVAL for n < LIP_AUDIO_MIN_SAMPLES (shorter than
 * one window) or non-finite samples, LIP_EENGINE from the model. Thread-safe. */
int lip_audio_features(lip_engine *enc, const float *pcm, size_t n, float **rows, int *nrows,
                       lip_err *err);
/* The same from a normalized mel [M][80] (M >= 16). */
int lip_audio_features_from_mel(lip_engine *enc, const float *mel, int M, float **rows,
                                int *nrows, lip_err *err);

/* The [32][16][16] UNet audio tensor of stream frame `frame`: padded rows of frames frame-8 ..
 * frame+7 in order, where padded row j belongs to stream frame first_row_frame + j. Rows of
 * frames < 0 or outside [0, nrows) are zero. Writes exactly 8192 floats. Never fails. */
void lip_audio_frame_tensor(const float *rows, int nrows, int first_row_frame, int frame,
                            float *out);

/* API.md section 1.5: the tensors of output frames s .. s+B-1 of a request whose raw_audio is
 * pcm[0..n). Sample 0 is stream frame a = max(0, s-8); samples at or after stream frame s+B+7
 * are ignored; features are computed from the remaining samples as one clip and padded row j
 * is stream frame a+j; missing rows are zero. With inference_variant (API.md section 6) the
 * clip is placed as if s >= 8 (sample 0 is 8 frames before output 0, no clamping) and
 * start_frame is ignored. out receives batch x 8192 floats (caller-owned). *ms (may be NULL)
 * gets the wall time spent. Fails with LIP_EINVAL on batch < 1, start_frame < 0, empty or
 * non-finite audio; LIP_EENGINE. Fewer than LIP_AUDIO_MIN_SAMPLES usable samples (no mel
 * window fits) is allowed and gives all-zero tensors (section 1.5 item 3). Allocates
 * its scratch once per call (never per frame; lip_audio_request_tensors_ws reuses a workspace
 * instead). Thread-safe. */
int lip_audio_request_tensors(lip_engine *enc, const float *pcm, size_t n, int start_frame,
                              int batch, bool inference_variant, float *out, double *ms,
                              lip_err *err);

/* API.md section 7.3 (GenerateBatchWithAudio): chunk j (chunks[j], lens[j] bytes of float32)
 * is the audio of stream frame start_frame-8+j. Chunks of frames < 0 are ignored whatever they
 * hold, and so are chunks past frame_count+15; the others must be exactly 2,560 bytes (640
 * samples) except for a trailing run of empty ones, and finite. The used chunks, concatenated,
 * then go through lip_audio_request_tensors with s = start_frame, B = frame_count. LIP_EINVAL
 * names the offending chunk. Thread-safe. */
int lip_audio_chunks_tensors(lip_engine *enc, const uint8_t *const *chunks, const size_t *lens,
                             int nchunks, int start_frame, int frame_count, float *out,
                             double *ms, lip_err *err);

/* Reusable scratch for the request functions: FFT plan and buffers that grow to the largest
 * request seen and are then reused, so a serving thread that keeps one workspace allocates
 * nothing per request once warm. Not thread-safe: one per thread. NULL on LIP_ENOMEM. */
typedef struct lip_audio_ws lip_audio_ws;
lip_audio_ws *lip_audio_ws_new(lip_err *err);
void lip_audio_ws_free(lip_audio_ws *ws);
/* lip_audio_request_tensors / lip_audio_chunks_tensors on a workspace (ws NULL: a temporary
 * one, as the functions above do). Same results bit for bit. */
int lip_audio_request_tensors_ws(lip_audio_ws *ws, lip_engine *enc, const float *pcm, size_t n,
                                 int start_frame, int batch, bool inference_variant, float *out,
                                 double *ms, lip_err *err);
int lip_audio_chunks_tensors_ws(lip_audio_ws *ws, lip_engine *enc, const uint8_t *const *chunks,
                                const size_t *lens, int nchunks, int start_frame,
                                int frame_count, float *out, double *ms, lip_err *err);

/* ---- input formats ------------------------------------------------------------------------ */
/* float32 little-endian wire bytes (raw_audio) to samples. The length must be a non-zero
 * multiple of 4 and every value finite; *pcm is a new array (lip_free). Thread-safe. */
int lip_audio_pcm_from_bytes(const void *bytes, size_t len, float **pcm, size_t *n,
                             lip_err *err);
/* First non-finite sample index, or -1 if all are finite. */
long lip_audio_find_nonfinite(const float *pcm, size_t n);

/* Parses a WAV file held in memory: RIFF/WAVE with PCM 8/16/24/32-bit, IEEE float 32/64-bit
 * or WAVE_FORMAT_EXTENSIBLE carrying either, 1-8 channels (averaged to mono), any rate from
 * 1000 to 384000 Hz (resampled to 16 kHz with libswresample). *pcm16k is a new array
 * (lip_free), *n its length. Every header field is checked: a corrupt, truncated or
 * unsupported file is LIP_EFORMAT or LIP_EUNSUPPORTED with a message naming the field and the
 * expected and actual values. Thread-safe. */
int lip_audio_wav_parse(const uint8_t *data, size_t len, float **pcm16k, size_t *n,
                        lip_err *err);
/* Reads path (at most 2 GiB) and parses it as above. */
int lip_audio_wav_load(const char *path, float **pcm16k, size_t *n, lip_err *err);

/* Loads precomputed features (aud_ave.npy, DATA.md): float32, 2-D, 512 columns, at least 3
 * rows, all finite. *rows is a new [nrows][512] array (lip_free). Thread-safe. */
int lip_audio_features_load(const char *path, float **rows, int *nrows, lip_err *err);
/* The same from .npy bytes in memory. */
int lip_audio_features_parse(const uint8_t *buf, size_t len, float **rows, int *nrows,
                             lip_err *err);
/* Checks the padded layout: rows 0 and 1 identical, rows nrows-2 and nrows-1 identical, and
 * when M > 0 that nrows == L(M) + 2. LIP_EFORMAT naming the rule that failed. */
int lip_audio_features_check_layout(const float *rows, int nrows, int M, lip_err *err);

/* ---- streaming ---------------------------------------------------------------------------- */
/* An incremental front end for a live utterance: push PCM in chunks of any size; each video
 * frame's audio tensor is ready as soon as the audio it depends on has arrived. Work per push
 * is proportional to the chunk (mel frames and encoder windows are computed once, as soon as
 * their samples are complete). With lookahead 7 (default) the output equals the whole-
 * utterance computation (lip_audio_features + lip_audio_frame_tensor) for frames 0 .. L+1;
 * frame i then needs about 40 i + 452 ms of audio. A lower lookahead k (0..6) is the low-
 * latency mode: frame i is emitted once padded rows up to i+k exist and rows i+k+1 .. i+7 are
 * zero (as at the end of a sequence), which saves (7-k) x 40 ms (k = 0: 280 ms; frame i then
 * needs about 40 i + 172 ms). */
typedef struct lip_audio_stream lip_audio_stream;
typedef struct lip_audio_stream_opts {
    int lookahead;  /* future feature rows to wait for, 0..7 (7 = exact, default) */
    int max_batch;  /* most windows per encoder call, 1..256 (default 25) */
} lip_audio_stream_opts;
lip_audio_stream_opts lip_audio_stream_opts_default(void);

/* enc is borrowed (must outlive the stream). opts may be NULL (defaults). Returns NULL on
 * failure (LIP_EINVAL for bad options, LIP_ENOMEM). */
lip_audio_stream *lip_audio_stream_new(lip_engine *enc, const lip_audio_stream_opts *opts,
                                       lip_err *err);
void lip_audio_stream_free(lip_audio_stream *s);
/* Appends n samples (n may be 0). LIP_EINVAL on a non-finite sample (nothing of the chunk is
 * used), after finish, or past LIP_AUDIO_MAX_SAMPLES; LIP_EENGINE from the encoder (the
 * stream is then unusable). */
int lip_audio_stream_push(lip_audio_stream *s, const float *pcm, size_t n, lip_err *err);
/* End of utterance: computes the remaining frames with the end-of-sequence rules. LIP_EINVAL
 * if the utterance is shorter than one window (LIP_AUDIO_MIN_SAMPLES); no frame is emitted
 * then. Calling it twice is a no-op. */
int lip_audio_stream_finish(lip_audio_stream *s, lip_err *err);
/* Copies the next ready frame tensor (8192 floats) to out and its frame index to *frame;
 * returns 1, or 0 if none is ready yet. Frames come in order 0, 1, 2 ... */
int lip_audio_stream_pop(lip_audio_stream *s, float *out, int *frame);
/* Samples pushed so far, and frames popped so far. */
size_t lip_audio_stream_samples(const lip_audio_stream *s);
int lip_audio_stream_frames(const lip_audio_stream *s);

#endif
