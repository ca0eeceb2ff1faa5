/* SPDX-License-Identifier: MIT */
/* audio/features.c: from the normalized mel to the UNet's audio input (AUDIO.md steps 8-10):
 * one 80x16 window per video frame, the encoder run in batches, the padded feature list
 * [f0, f0, f1 .. f(L-1), f(L-1)], the per-frame [32,16,16] tensor with zero rows outside the
 * list, the per-request alignment of API.md section 1.5, float32 wire bytes, and loading of
 * precomputed aud_ave.npy features. */
#include "audio/audio_int.h"

#include <math.h>
#include <string.h>

void lip_audio_windows(const float *mel, int M, int first, int count, float *out)
{
    int L = lip_audio_window_count(M);
    LIP_ASSERT(M >= LIP_AUDIO_WIN && first >= 0 && count >= 0 && first + count <= L);
    for (int w = 0; w < count; w++) {
        int s = lip_audio_window_start(first + w, M);
        float *o = out + (size_t)w * LIP_ENC_IN_FLOATS;
        for (int t = 0; t < LIP_AUDIO_WIN; t++) {
            const float *row = mel + (size_t)(s + t) * LIP_AUDIO_NMELS;
            for (int b = 0; b < LIP_AUDIO_NMELS; b++) o[b * LIP_AUDIO_WIN + t] = row[b];
        }
    }
}

int lip_audio_ws_features(lip_audio_ws *ws, lip_engine *enc, const float *mel, int M, int *nrows,
                          lip_err *err)
{
    *nrows = 0;
    if (!enc) return lip_err_set(err, LIP_EPRECOND, "no audio encoder model was given");
    int L = lip_audio_window_count(M);
    if (L < 1)
        return lip_err_set(err, LIP_EINVAL,
                           "audio gives %d mel frames; at least %d (one encoder window, %d "
                           "samples) are needed", M, LIP_AUDIO_WIN, LIP_AUDIO_MIN_SAMPLES);
    int rc = lip_audio_ws_grow((void **)&ws->rows, &ws->rows_cap,
                               (size_t)(L + 2) * LIP_AUDIO_FEAT, sizeof(float), err);
    if (rc) return rc;
    float *out = ws->rows;
    /* Window w's features go to padded row w + 1; rows 0 and L + 1 are copies. */
    for (int w = 0; w < L && !rc; w += LIP_AUDIO_ENC_BATCH) {
        int b = LIP_MIN(LIP_AUDIO_ENC_BATCH, L - w);
        lip_audio_windows(mel, M, w, b, ws->win);
        rc = lip_engine_run_encoder(enc, ws->win, b, out + (size_t)(w + 1) * LIP_AUDIO_FEAT, err);
    }
    if (rc) return lip_err_prefix(err, "audio encoder");
    memcpy(out, out + LIP_AUDIO_FEAT, LIP_AUDIO_FEAT * sizeof *out);
    memcpy(out + (size_t)(L + 1) * LIP_AUDIO_FEAT, out + (size_t)L * LIP_AUDIO_FEAT,
           LIP_AUDIO_FEAT * sizeof *out);
    *nrows = L + 2;
    return 0;
}

int lip_audio_features_from_mel(lip_engine *enc, const float *mel, int M, float **rows,
                                int *nrows, lip_err *err)
{
    *rows = NULL;
    *nrows = 0;
    lip_audio_ws *ws = lip_audio_ws_new(err);
    if (!ws) return LIP_ENOMEM;
    int rc = lip_audio_ws_features(ws, enc, mel, M, nrows, err);
    if (!rc) {
        *rows = ws->rows; /* the caller takes the buffer */
        ws->rows = NULL;
    }
    lip_audio_ws_free(ws);
    return rc;
}

static int short_clip(size_t n, lip_err *err)
{
    return lip_err_set(err, LIP_EINVAL,
                       "audio has %zu samples; at least %d (one 16-frame mel window) are needed",
                       n, LIP_AUDIO_MIN_SAMPLES);
}

int lip_audio_features(lip_engine *enc, const float *pcm, size_t n, float **rows, int *nrows,
                       lip_err *err)
{
    *rows = NULL;
    *nrows = 0;
    if (!enc) return lip_err_set(err, LIP_EPRECOND, "no audio encoder model was given");
    int rc = lip_audio_check_pcm(pcm, n, err);
    if (rc) return rc;
    if (n < LIP_AUDIO_MIN_SAMPLES) return short_clip(n, err);
    lip_audio_ws *ws = lip_audio_ws_new(err);
    if (!ws) return LIP_ENOMEM;
    int M = 0;
    rc = lip_audio_ws_mel(ws, pcm, n, NULL, &M, err);
    if (!rc) rc = lip_audio_ws_features(ws, enc, ws->mel, M, nrows, err);
    if (!rc) {
        *rows = ws->rows;
        ws->rows = NULL;
    }
    lip_audio_ws_free(ws);
    return rc;
}

void lip_audio_frame_tensor(const float *rows, int nrows, int first_row_frame, int frame,
                            float *out)
{
    for (int j = 0; j < LIP_AUDIO_CTX; j++) {
        int64_t f = (int64_t)frame - 8 + j, r = f - first_row_frame;
        float *o = out + (size_t)j * LIP_AUDIO_FEAT;
        if (f < 0 || r < 0 || r >= nrows || !rows)
            memset(o, 0, LIP_AUDIO_FEAT * sizeof *o);
        else
            memcpy(o, rows + (size_t)r * LIP_AUDIO_FEAT, LIP_AUDIO_FEAT * sizeof *o);
    }
}

int lip_audio_request_tensors_ws(lip_audio_ws *ws, lip_engine *enc, const float *pcm, size_t n,
                                 int start_frame, int batch, bool inference_variant, float *out,
                                 double *ms, lip_err *err)
{
    double t0 = lip_time_ms();
    if (ms) *ms = 0;
    if (batch < 1) return lip_err_set(err, LIP_EINVAL, "batch_size must be >= 1, got %d", batch);
    if (start_frame < 0)
        return lip_err_set(err, LIP_EINVAL, "start_frame_idx must be >= 0, got %d", start_frame);
    if (start_frame > INT32_MAX - batch - 16)
        return lip_err_set(err, LIP_EINVAL, "start_frame_idx %d is too large (batch %d)",
                           start_frame, batch);
    if (!enc) return lip_err_set(err, LIP_EPRECOND, "raw audio sent but no audio encoder available");
    if (n == 0 || !pcm) return lip_err_set(err, LIP_EINVAL, "raw_audio is empty (0 samples)");
    /* Section 6: as if s >= 8 (sample 0 is 8 frames before output 0). Use s = 8 so that
     * a = 0 and every index below stays non-negative. */
    int64_t s = inference_variant ? 8 : start_frame;
    int64_t a = s - 8 > 0 ? s - 8 : 0;
    int64_t end_frame = s + batch + 7; /* samples at or after 640 (s+B+7) are ignored */
    size_t limit = (size_t)((end_frame - a) * LIP_AUDIO_FRAME_SAMPLES);
    size_t used = n < limit ? n : limit;
    long bad = lip_audio_find_nonfinite(pcm, n);
    if (bad >= 0)
        return lip_err_set(err, LIP_EINVAL, "raw_audio sample %ld is %s; samples must be finite",
                           bad, isnan(pcm[bad]) ? "NaN" : "infinite");
    if (used < LIP_AUDIO_MIN_SAMPLES) {
        /* API.md 1.5 item 3: shorter audio is allowed and missing context becomes zero
         * features. Too short for one 16-frame mel window means no feature row exists at all,
         * so every row of every frame is missing: all-zero tensors. */
        memset(out, 0, (size_t)batch * LIP_AUDIO_TENSOR * sizeof(float));
        if (ms) *ms = lip_time_ms() - t0;
        return 0;
    }
    lip_audio_ws *tmp = NULL;
    if (!ws && !(ws = tmp = lip_audio_ws_new(err))) return LIP_ENOMEM;
    int M = 0, nrows = 0;
    int rc = lip_audio_ws_mel(ws, pcm, used, NULL, &M, err);
    if (!rc) rc = lip_audio_ws_features(ws, enc, ws->mel, M, &nrows, err);
    if (!rc)
        for (int b = 0; b < batch; b++)
            lip_audio_frame_tensor(ws->rows, nrows, (int)a, (int)(s + b),
                                   out + (size_t)b * LIP_AUDIO_TENSOR);
    lip_audio_ws_free(tmp);
    if (!rc && ms) *ms = lip_time_ms() - t0;
    return rc;
}

int lip_audio_request_tensors(lip_engine *enc, const float *pcm, size_t n, int start_frame,
                              int batch, bool inference_variant, float *out, double *ms,
                              lip_err *err)
{
    return lip_audio_request_tensors_ws(NULL, enc, pcm, n, start_frame, batch, inference_variant,
                                        out, ms, err);
}

int lip_audio_chunks_tensors_ws(lip_audio_ws *ws, lip_engine *enc, const uint8_t *const *chunks,
                                const size_t *lens, int nchunks, int start_frame,
                                int frame_count, float *out, double *ms, lip_err *err)
{
    if (ms) *ms = 0;
    if (frame_count < 1) return lip_err_set(err, LIP_EINVAL, "frame_count must be >= 1, got %d", frame_count);
    if (start_frame < 0 || start_frame > INT32_MAX - frame_count - 16)
        return lip_err_set(err, LIP_EINVAL, "start_frame_id %d is out of range", start_frame);
    int need = frame_count + 15;
    if (nchunks < need)
        return lip_err_set(err, LIP_EINVAL, "audio_chunks has %d entries; frame_count + 15 = %d "
                           "needed", nchunks, need);
    int first = start_frame >= 8 ? 0 : 8 - start_frame; /* chunks of frames < 0 */
    int used = first;
    for (int j = first; j < need; j++) {
        if (lens[j] == 0) continue;
        if (lens[j] != 4 * LIP_AUDIO_FRAME_SAMPLES)
            return lip_err_set(err, LIP_EINVAL, "audio_chunks[%d] is %zu bytes; %d expected (640 "
                               "float32 samples)", j, lens[j], 4 * LIP_AUDIO_FRAME_SAMPLES);
        if (j != used)
            return lip_err_set(err, LIP_EINVAL, "audio_chunks[%d] is empty but audio_chunks[%d] "
                               "is not; only a trailing run may be empty", used, j);
        used = j + 1;
    }
    size_t n = (size_t)(used - first) * LIP_AUDIO_FRAME_SAMPLES;
    if (n == 0) return lip_err_set(err, LIP_EINVAL, "audio_chunks hold no audio for frames >= 0");
    lip_audio_ws *tmp = NULL;
    if (!ws && !(ws = tmp = lip_audio_ws_new(err))) return LIP_ENOMEM;
    int rc = lip_audio_ws_grow((void **)&ws->pcm, &ws->pcm_cap, n, sizeof(float), err);
    if (!rc) {
        float *pcm = ws->pcm;
        for (int j = first; j < used; j++)
            memcpy(pcm + (size_t)(j - first) * LIP_AUDIO_FRAME_SAMPLES, chunks[j], lens[j]);
        long bad = lip_audio_find_nonfinite(pcm, n);
        if (bad >= 0)
            rc = lip_err_set(err, LIP_EINVAL, "audio_chunks[%ld] sample %ld is %s; samples must "
                             "be finite", first + bad / LIP_AUDIO_FRAME_SAMPLES,
                             bad % LIP_AUDIO_FRAME_SAMPLES, isnan(pcm[bad]) ? "NaN" : "infinite");
        else
            rc = lip_audio_request_tensors_ws(ws, enc, pcm, n, start_frame, frame_count, false,
                                              out, ms, err);
    }
    lip_audio_ws_free(tmp);
    return rc;
}

int lip_audio_chunks_tensors(lip_engine *enc, const uint8_t *const *chunks, const size_t *lens,
                             int nchunks, int start_frame, int frame_count, float *out,
                             double *ms, lip_err *err)
{
    return lip_audio_chunks_tensors_ws(NULL, enc, chunks, lens, nchunks, start_frame,
                                       frame_count, out, ms, err);
}

int lip_audio_pcm_from_bytes(const void *bytes, size_t len, float **pcm, size_t *n, lip_err *err)
{
    *pcm = NULL;
    *n = 0;
    if (len == 0) return lip_err_set(err, LIP_EINVAL, "audio is empty (0 bytes)");
    if (len % 4)
        return lip_err_set(err, LIP_EINVAL,
                           "audio is %zu bytes, not a multiple of 4 (float32 samples); %zu "
                           "trailing bytes", len, len % 4);
    if (len / 4 > LIP_AUDIO_MAX_SAMPLES)
        return lip_err_set(err, LIP_EINVAL, "audio has %zu samples, more than the limit of %zu",
                           len / 4, LIP_AUDIO_MAX_SAMPLES);
    float *p = lip_malloc(len);
    if (!p) return lip_err_set(err, LIP_ENOMEM, "out of memory for %zu bytes of audio", len);
    memcpy(p, bytes, len); /* the wire is little-endian, as is every supported host */
    long bad = lip_audio_find_nonfinite(p, len / 4);
    if (bad >= 0) {
        int code = lip_err_set(err, LIP_EINVAL, "audio sample %ld is %s; samples must be finite",
                               bad, isnan(p[bad]) ? "NaN" : "infinite");
        lip_free(p);
        return code;
    }
    *pcm = p;
    *n = len / 4;
    return 0;
}

/* ---- precomputed features ----------------------------------------------------------------- */
static int features_take(lip_npy *a, float **rows, int *nrows, lip_err *err)
{
    const char *dt = a->dtype == LIP_DT_F64 ? "float64" : a->dtype == LIP_DT_U8 ? "uint8"
                   : a->dtype == LIP_DT_I16 ? "int16" : a->dtype == LIP_DT_I32 ? "int32"
                   : a->dtype == LIP_DT_I64 ? "int64" : "float32";
    int rc = 0;
    if (a->dtype != LIP_DT_F32)
        rc = lip_err_set(err, LIP_EFORMAT, "audio features must be float32 (<f4), got %s", dt);
    else if (a->ndim != 2)
        rc = lip_err_set(err, LIP_EFORMAT, "audio features must be 2-D [L+2, 512], got %d-D",
                         a->ndim);
    else if (a->shape[1] != LIP_AUDIO_FEAT)
        rc = lip_err_set(err, LIP_EFORMAT, "audio features must have 512 columns, got %zu",
                         a->shape[1]);
    else if (a->shape[0] < 3 || a->shape[0] > (size_t)1 << 24)
        rc = lip_err_set(err, LIP_EFORMAT,
                         "audio features need 3 to 16777216 rows (L+2 with L >= 1), got %zu",
                         a->shape[0]);
    if (!rc) {
        const float *v = a->data;
        for (size_t i = 0; i < a->count; i++)
            if (!isfinite(v[i])) {
                rc = lip_err_set(err, LIP_EFORMAT,
                                 "audio features row %zu column %zu is not finite",
                                 i / LIP_AUDIO_FEAT, i % LIP_AUDIO_FEAT);
                break;
            }
    }
    if (rc) {
        lip_npy_free(a);
        return rc;
    }
    *rows = a->data;
    *nrows = (int)a->shape[0];
    a->data = NULL; /* ownership passes to the caller */
    lip_npy_free(a);
    return 0;
}

int lip_audio_features_parse(const uint8_t *buf, size_t len, float **rows, int *nrows, lip_err *err)
{
    *rows = NULL;
    *nrows = 0;
    lip_npy a;
    int rc = lip_npy_parse(buf, len, &a, err);
    if (rc) return rc;
    return features_take(&a, rows, nrows, err);
}

int lip_audio_features_load(const char *path, float **rows, int *nrows, lip_err *err)
{
    *rows = NULL;
    *nrows = 0;
    lip_npy a;
    int rc = lip_npy_load(path, &a, err);
    if (!rc) rc = features_take(&a, rows, nrows, err);
    if (rc) lip_err_prefix(err, "%s", path);
    return rc;
}

int lip_audio_features_check_layout(const float *rows, int nrows, int M, lip_err *err)
{
    if (nrows < 3) return lip_err_set(err, LIP_EFORMAT, "feature list has %d rows; at least 3", nrows);
    if (M > 0 && nrows != lip_audio_window_count(M) + 2)
        return lip_err_set(err, LIP_EFORMAT,
                           "feature list has %d rows; %d mel frames give L+2 = %d", nrows, M,
                           lip_audio_window_count(M) + 2);
    size_t rb = LIP_AUDIO_FEAT * sizeof(float);
    if (memcmp(rows, rows + LIP_AUDIO_FEAT, rb) != 0)
        return lip_err_set(err, LIP_EFORMAT, "feature rows 0 and 1 differ; the first row must be "
                                             "duplicated");
    if (memcmp(rows + (size_t)(nrows - 2) * LIP_AUDIO_FEAT, rows + (size_t)(nrows - 1) * LIP_AUDIO_FEAT, rb) != 0)
        return lip_err_set(err, LIP_EFORMAT, "feature rows %d and %d differ; the last row must be "
                                             "duplicated", nrows - 2, nrows - 1);
    return 0;
}
