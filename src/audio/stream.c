/* SPDX-License-Identifier: MIT */
/* audio/stream.c: the incremental front end. Samples are pre-emphasized into a small ring as
 * they arrive; a mel frame is computed as soon as its 800 samples are all present (its value
 * can no longer change), an encoder window as soon as its 16 mel rows are, and windows are
 * encoded in batches at the end of each push. The end-of-utterance rules (zero padding after
 * the last sample, the last window clamped to M - 16, the duplicated last row) are applied by
 * finish. All per-sample and per-frame work reuses buffers allocated in _new; only the store of
 * feature rows not yet consumed grows (by doubling) when the caller does not pop. */
#include "audio/audio_int.h"

#include <math.h>
#include <string.h>

#define RING 1024       /* pre-emphasized samples kept; a frame reaches 800 back */
#define MEL_RING 64     /* mel rows kept; a window reaches ~20 rows back */

struct lip_audio_stream {
    lip_engine *enc;
    lip_audio_stream_opts o;
    lip_audio_plan plan;
    double ring[RING];
    double seg[LIP_AUDIO_NFFT];
    size_t n_in;     /* samples pushed */
    float prev;      /* last input sample (pre-emphasis state) */
    int t_mel;       /* mel rows computed */
    float mel[MEL_RING][LIP_AUDIO_NMELS];
    int w_next;      /* next window to cut */
    int w_first;     /* index of the first window in winbuf */
    int pending;     /* windows in winbuf */
    float *winbuf;   /* [max_batch][80*16] */
    float *featbuf;  /* [max_batch][512] */
    float *rows;     /* padded rows [row_base, row_hi) */
    int row_base, row_hi, row_cap;
    int next_frame;
    int total_frames; /* L + 2 once finished, else -1 */
    bool finished, failed;
};

lip_audio_stream_opts lip_audio_stream_opts_default(void)
{
    return (lip_audio_stream_opts){.lookahead = 7, .max_batch = LIP_AUDIO_ENC_BATCH};
}

lip_audio_stream *lip_audio_stream_new(lip_engine *enc, const lip_audio_stream_opts *opts,
                                       lip_err *err)
{
    lip_audio_stream_opts o = opts ? *opts : lip_audio_stream_opts_default();
    if (!enc) {
        lip_err_set(err, LIP_EPRECOND, "audio stream needs an audio encoder model");
        return NULL;
    }
    if (o.lookahead < 0 || o.lookahead > 7) {
        lip_err_set(err, LIP_EINVAL, "audio stream lookahead must be 0..7 rows, got %d", o.lookahead);
        return NULL;
    }
    if (o.max_batch < 1 || o.max_batch > 256) {
        lip_err_set(err, LIP_EINVAL, "audio stream max_batch must be 1..256, got %d", o.max_batch);
        return NULL;
    }
    lip_audio_stream *s = lip_calloc(1, sizeof *s);
    if (!s) goto fail;
    s->enc = enc;
    s->o = o;
    s->total_frames = -1;
    s->row_cap = 64;
    s->winbuf = lip_aligned_alloc((size_t)o.max_batch * LIP_ENC_IN_FLOATS * sizeof(float));
    s->featbuf = lip_aligned_alloc((size_t)o.max_batch * LIP_AUDIO_FEAT * sizeof(float));
    s->rows = lip_malloc((size_t)s->row_cap * LIP_AUDIO_FEAT * sizeof(float));
    if (!s->winbuf || !s->featbuf || !s->rows) goto fail;
    if (lip_audio_plan_init(&s->plan, err)) {
        lip_audio_stream_free(s);
        return NULL;
    }
    return s;
fail:
    lip_audio_stream_free(s);
    lip_err_set(err, LIP_ENOMEM, "out of memory for an audio stream");
    return NULL;
}

void lip_audio_stream_free(lip_audio_stream *s)
{
    if (!s) return;
    lip_audio_plan_fini(&s->plan);
    lip_free_aligned(s->winbuf);
    lip_free_aligned(s->featbuf);
    lip_free(s->rows);
    lip_free(s);
}

size_t lip_audio_stream_samples(const lip_audio_stream *s) { return s->n_in; }
int lip_audio_stream_frames(const lip_audio_stream *s) { return s->next_frame; }

/* Appends one padded row, first dropping rows no frame can use any more (frames before
 * next_frame are out; frame f reads rows from f - 8), then growing if still full. */
static int append_row(lip_audio_stream *s, const float *row, lip_err *err)
{
    if (s->row_hi - s->row_base == s->row_cap) {
        int keep_from = LIP_MAX(s->row_base, s->next_frame - 8);
        int drop = keep_from - s->row_base;
        if (drop > 0) {
            memmove(s->rows, s->rows + (size_t)drop * LIP_AUDIO_FEAT,
                    (size_t)(s->row_hi - keep_from) * LIP_AUDIO_FEAT * sizeof(float));
            s->row_base = keep_from;
        }
        if (s->row_hi - s->row_base == s->row_cap) {
            float *r = lip_realloc(s->rows, (size_t)s->row_cap * 2 * LIP_AUDIO_FEAT * sizeof(float));
            if (!r) return lip_err_set(err, LIP_ENOMEM, "out of memory for %d feature rows", s->row_cap * 2);
            s->rows = r;
            s->row_cap *= 2;
        }
    }
    memcpy(s->rows + (size_t)(s->row_hi - s->row_base) * LIP_AUDIO_FEAT, row,
           LIP_AUDIO_FEAT * sizeof(float));
    s->row_hi++;
    return 0;
}

/* Encodes the windows cut so far; window w becomes padded row w + 1 (window 0 also row 0). */
static int flush(lip_audio_stream *s, lip_err *err)
{
    if (!s->pending) return 0;
    int rc = lip_engine_run_encoder(s->enc, s->winbuf, s->pending, s->featbuf, err);
    if (rc) {
        s->failed = true;
        return lip_err_prefix(err, "audio encoder");
    }
    for (int i = 0; i < s->pending && !rc; i++) {
        const float *f = s->featbuf + (size_t)i * LIP_AUDIO_FEAT;
        if (s->w_first + i == 0) rc = append_row(s, f, err);
        if (!rc) rc = append_row(s, f, err);
    }
    s->w_first += s->pending;
    s->pending = 0;
    if (rc) s->failed = true;
    return rc;
}

/* Cuts window w (start row s0) from the mel ring into the batch; encodes a full batch. */
static int cut_window(lip_audio_stream *s, int s0, lip_err *err)
{
    LIP_ASSERT(s0 >= 0 && s0 >= s->t_mel - MEL_RING && s0 + LIP_AUDIO_WIN <= s->t_mel);
    float *o = s->winbuf + (size_t)s->pending * LIP_ENC_IN_FLOATS;
    for (int t = 0; t < LIP_AUDIO_WIN; t++) {
        const float *row = s->mel[(s0 + t) % MEL_RING];
        for (int b = 0; b < LIP_AUDIO_NMELS; b++) o[b * LIP_AUDIO_WIN + t] = row[b];
    }
    s->w_next++;
    if (++s->pending == s->o.max_batch) return flush(s, err);
    return 0;
}

/* Mel row t from the ring; samples at or after n_in are the end-of-clip zero padding (only
 * reached from finish), samples before 0 the start padding. */
static void mel_row(lip_audio_stream *s, int t)
{
    int64_t first = (int64_t)t * LIP_AUDIO_HOP - LIP_AUDIO_NFFT / 2;
    for (int j = 0; j < LIP_AUDIO_NFFT; j++) {
        int64_t i = first + j;
        s->seg[j] = (i < 0 || i >= (int64_t)s->n_in) ? 0.0 : s->ring[i & (RING - 1)];
    }
    lip_audio_mel_frame(&s->plan, s->seg, s->mel[t % MEL_RING], NULL);
}

int lip_audio_stream_push(lip_audio_stream *s, const float *pcm, size_t n, lip_err *err)
{
    if (s->failed) return lip_err_set(err, LIP_EINVAL, "audio stream failed earlier; start a new one");
    if (s->finished) return lip_err_set(err, LIP_EINVAL, "audio stream already finished");
    if (n == 0) return 0;
    if (!pcm) return lip_err_set(err, LIP_EINVAL, "audio chunk of %zu samples has no data", n);
    if (n > LIP_AUDIO_MAX_SAMPLES - s->n_in)
        return lip_err_set(err, LIP_EINVAL, "audio stream exceeds %zu samples", LIP_AUDIO_MAX_SAMPLES);
    long bad = lip_audio_find_nonfinite(pcm, n);
    if (bad >= 0)
        return lip_err_set(err, LIP_EINVAL,
                           "audio chunk sample %ld (stream sample %zu) is %s; samples must be "
                           "finite", bad, s->n_in + (size_t)bad, isnan(pcm[bad]) ? "NaN" : "infinite");
    for (size_t k = 0; k < n; k++) {
        s->ring[s->n_in & (RING - 1)] = lip_audio_preemph1(pcm[k], s->prev);
        s->prev = pcm[k];
        s->n_in++;
        /* Mel row t is final once samples up to 200 t + 400 (exclusive) are in. */
        if (s->n_in == (size_t)s->t_mel * LIP_AUDIO_HOP + LIP_AUDIO_NFFT / 2) {
            mel_row(s, s->t_mel);
            s->t_mel++;
            /* Window w is final once its unclamped rows exist: then it cannot be clamped
             * later (M only grows), and it is below L of any longer utterance. */
            int s0 = lip_audio_window_start(s->w_next, INT32_MAX);
            if (s0 + LIP_AUDIO_WIN <= s->t_mel) {
                int rc = cut_window(s, s0, err);
                if (rc) return rc;
            }
        }
    }
    return flush(s, err);
}

int lip_audio_stream_finish(lip_audio_stream *s, lip_err *err)
{
    if (s->finished) return 0;
    if (s->failed) return lip_err_set(err, LIP_EINVAL, "audio stream failed earlier; start a new one");
    s->finished = true;
    s->total_frames = 0;
    int M = lip_audio_mel_count(s->n_in), L = lip_audio_window_count(M);
    if (L < 1)
        return lip_err_set(err, LIP_EINVAL,
                           "utterance has %zu samples; at least %d (one 16-frame mel window) are "
                           "needed", s->n_in, LIP_AUDIO_MIN_SAMPLES);
    while (s->t_mel < M) mel_row(s, s->t_mel++);
    while (s->w_next < L) {
        int rc = cut_window(s, lip_audio_window_start(s->w_next, M), err);
        if (rc) return rc;
    }
    int rc = flush(s, err);
    if (rc) return rc;
    LIP_ASSERT(s->row_hi == L + 1 && s->row_hi - 1 >= s->row_base);
    rc = append_row(s, s->rows + (size_t)(s->row_hi - 1 - s->row_base) * LIP_AUDIO_FEAT, err);
    if (rc) return rc;
    s->total_frames = L + 2;
    return 0;
}

int lip_audio_stream_pop(lip_audio_stream *s, float *out, int *frame)
{
    int i = s->next_frame, k = s->o.lookahead;
    if (s->failed) return 0;
    if (s->finished ? i >= s->total_frames : s->row_hi <= i + k) return 0;
    for (int j = 0; j < LIP_AUDIO_CTX; j++) {
        int r = i - 8 + j;
        float *o = out + (size_t)j * LIP_AUDIO_FEAT;
        if (r < 0 || r > i + k || r >= s->row_hi) {
            memset(o, 0, LIP_AUDIO_FEAT * sizeof *o);
        } else {
            LIP_ASSERT(r >= s->row_base);
            memcpy(o, s->rows + (size_t)(r - s->row_base) * LIP_AUDIO_FEAT, LIP_AUDIO_FEAT * sizeof *o);
        }
    }
    *frame = i;
    s->next_frame++;
    return 1;
}
