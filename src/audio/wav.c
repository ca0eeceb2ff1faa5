/* SPDX-License-Identifier: MIT */
/* audio/wav.c: WAV files to 16 kHz mono float PCM. The RIFF structure is parsed here, treating
 * the file as hostile: every chunk size is checked against the bytes present, the format chunk
 * against the sample formats we convert (PCM 8/16/24/32-bit, IEEE float 32/64-bit, also inside
 * WAVE_FORMAT_EXTENSIBLE), and each failure names the field with its expected and actual
 * values. Channels are averaged to mono (as librosa does) and other rates are resampled with
 * libswresample; the output length is ceil(frames x 16000 / rate). */
#include "audio/audio_int.h"

#include <libavutil/channel_layout.h>
#include <libavutil/mathematics.h>
#include <libavutil/opt.h>
#include <libavutil/samplefmt.h>
#include <libswresample/swresample.h>
#include <math.h>
#include <string.h>

enum { FMT_PCM = 1, FMT_FLOAT = 3, FMT_EXTENSIBLE = 0xFFFE };

static uint32_t rd16(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8; }
static uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

typedef struct wav_fmt {
    uint32_t tag, channels, rate, block_align, bits;
} wav_fmt;

/* The KSDATAFORMAT_SUBTYPE GUID after its leading 16-bit format tag. */
static const uint8_t GUID_TAIL[14] = {0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80,
                                      0x00, 0x00, 0xAA, 0x00, 0x38, 0x9B, 0x71};

static int parse_fmt(const uint8_t *p, uint32_t size, wav_fmt *f, lip_err *err)
{
    if (size < 16)
        return lip_err_set(err, LIP_EFORMAT, "WAV 'fmt ' chunk is %u bytes; at least 16 expected",
                           size);
    f->tag = rd16(p);
    f->channels = rd16(p + 2);
    f->rate = rd32(p + 4);
    f->block_align = rd16(p + 12);
    f->bits = rd16(p + 14);
    if (f->tag == FMT_EXTENSIBLE) {
        if (size < 40)
            return lip_err_set(err, LIP_EFORMAT,
                               "WAV extensible 'fmt ' chunk is %u bytes; 40 expected", size);
        if (memcmp(p + 26, GUID_TAIL, sizeof GUID_TAIL) != 0)
            return lip_err_set(err, LIP_EUNSUPPORTED,
                               "WAV extensible sub-format GUID is not a standard PCM/float one");
        f->tag = rd16(p + 24);
    }
    if (f->tag != FMT_PCM && f->tag != FMT_FLOAT)
        return lip_err_set(err, LIP_EUNSUPPORTED,
                           "WAV format tag 0x%04x is not supported (need 1 = PCM or 3 = IEEE "
                           "float; compressed WAV such as ADPCM or mu-law is not decoded)", f->tag);
    if (f->tag == FMT_PCM && f->bits != 8 && f->bits != 16 && f->bits != 24 && f->bits != 32)
        return lip_err_set(err, LIP_EUNSUPPORTED,
                           "WAV PCM with %u bits per sample is not supported (need 8, 16, 24 or "
                           "32)", f->bits);
    if (f->tag == FMT_FLOAT && f->bits != 32 && f->bits != 64)
        return lip_err_set(err, LIP_EUNSUPPORTED,
                           "WAV float with %u bits per sample is not supported (need 32 or 64)",
                           f->bits);
    if (f->channels < 1 || f->channels > 8)
        return lip_err_set(err, LIP_EUNSUPPORTED, "WAV has %u channels; 1 to 8 are supported",
                           f->channels);
    if (f->rate < 1000 || f->rate > 384000)
        return lip_err_set(err, LIP_EUNSUPPORTED,
                           "WAV sample rate %u Hz is out of range (1000 to 384000)", f->rate);
    if (f->block_align != f->channels * f->bits / 8)
        return lip_err_set(err, LIP_EFORMAT,
                           "WAV block align is %u; %u channels x %u bits need %u", f->block_align,
                           f->channels, f->bits, f->channels * f->bits / 8);
    return 0;
}

static double sample_at(const uint8_t *p, const wav_fmt *f)
{
    if (f->tag == FMT_FLOAT) {
        if (f->bits == 32) {
            uint32_t u = rd32(p);
            float v;
            memcpy(&v, &u, 4);
            return v;
        }
        uint64_t u = (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32;
        double v;
        memcpy(&v, &u, 8);
        return v;
    }
    switch (f->bits) {
    case 8: return ((int)p[0] - 128) / 128.0;
    case 16: return (int16_t)rd16(p) / 32768.0;
    case 24: {
        int32_t v = (int32_t)((uint32_t)p[0] << 8 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 24);
        return (v >> 8) / 8388608.0;
    }
    default: return (int32_t)rd32(p) / 2147483648.0;
    }
}

/* Mono float at 16 kHz from mono float at `rate` (libswresample, 64-tap filter). */
static int resample(const float *in, size_t n, int rate, float **out, size_t *nout, lip_err *err)
{
    size_t want = (size_t)av_rescale_rnd((int64_t)n, LIP_AUDIO_RATE, rate, AV_ROUND_UP);
    if (want > LIP_AUDIO_MAX_SAMPLES || n > INT32_MAX)
        return lip_err_set(err, LIP_EINVAL, "WAV is too long: %zu samples at 16 kHz (limit %zu)",
                           want, LIP_AUDIO_MAX_SAMPLES);
    SwrContext *swr = NULL;
    AVChannelLayout mono = AV_CHANNEL_LAYOUT_MONO;
    int r = swr_alloc_set_opts2(&swr, &mono, AV_SAMPLE_FMT_FLT, LIP_AUDIO_RATE, &mono,
                                AV_SAMPLE_FMT_FLT, rate, 0, NULL);
    if (r >= 0) r = av_opt_set_int(swr, "filter_size", 64, 0);
    if (r >= 0) r = swr_init(swr);
    if (r < 0) {
        swr_free(&swr);
        char msg[128];
        av_strerror(r, msg, sizeof msg);
        return lip_err_set(err, LIP_EINTERNAL, "cannot set up resampling %d -> 16000 Hz: %s",
                           rate, msg);
    }
    size_t cap = want + 256;
    float *o = lip_calloc(cap, sizeof *o);
    if (!o) {
        swr_free(&swr);
        return lip_err_set(err, LIP_ENOMEM, "out of memory for %zu resampled samples", cap);
    }
    const uint8_t *ip[1] = {(const uint8_t *)in};
    uint8_t *op[1] = {(uint8_t *)o};
    int got = swr_convert(swr, op, (int)cap, ip, (int)n);
    size_t total = got > 0 ? (size_t)got : 0;
    while (got >= 0 && total < cap) { /* drain the filter's tail */
        op[0] = (uint8_t *)(o + total);
        got = swr_convert(swr, op, (int)(cap - total), NULL, 0);
        if (got <= 0) break;
        total += (size_t)got;
    }
    swr_free(&swr);
    if (got < 0) {
        lip_free(o);
        return lip_err_set(err, LIP_EINTERNAL, "resampling %d -> 16000 Hz failed", rate);
    }
    /* Fixed length whatever the filter delivers; missing tail samples stay zero (calloc). */
    *out = o;
    *nout = want;
    return 0;
}

int lip_audio_wav_parse(const uint8_t *data, size_t len, float **pcm16k, size_t *n, lip_err *err)
{
    *pcm16k = NULL;
    *n = 0;
    if (!data || len < 12)
        return lip_err_set(err, LIP_EFORMAT, "WAV file is %zu bytes; a RIFF header needs 12", len);
    if (memcmp(data, "RIFX", 4) == 0 || memcmp(data, "RF64", 4) == 0)
        return lip_err_set(err, LIP_EUNSUPPORTED, "WAV container '%.4s' is not supported (need "
                           "little-endian RIFF)", (const char *)data);
    if (memcmp(data, "RIFF", 4) != 0 || memcmp(data + 8, "WAVE", 4) != 0)
        return lip_err_set(err, LIP_EFORMAT, "not a WAV file: expected 'RIFF....WAVE' at the start");
    wav_fmt f = {0};
    bool have_fmt = false, have_data = false;
    size_t data_off = 0, data_len = 0, pos = 12;
    while (pos + 8 <= len && !have_data) {
        const uint8_t *c = data + pos;
        uint32_t size = rd32(c + 4);
        size_t avail = len - pos - 8;
        if (memcmp(c, "fmt ", 4) == 0) {
            if (have_fmt) return lip_err_set(err, LIP_EFORMAT, "WAV has two 'fmt ' chunks");
            if (size > avail)
                return lip_err_set(err, LIP_EFORMAT, "WAV is truncated: 'fmt ' chunk declares %u "
                                   "bytes, %zu present", size, avail);
            int rc = parse_fmt(c + 8, size, &f, err);
            if (rc) return rc;
            have_fmt = true;
        } else if (memcmp(c, "data", 4) == 0) {
            if (!have_fmt)
                return lip_err_set(err, LIP_EFORMAT, "WAV 'data' chunk comes before 'fmt '");
            data_off = pos + 8;
            if (size <= avail) {
                data_len = size;
            } else if (size == 0xFFFFFFFFu) {
                data_len = avail; /* written by a streaming encoder that never knew the size */
            } else {
                return lip_err_set(err, LIP_EFORMAT, "WAV is truncated: 'data' chunk declares %u "
                                   "bytes, %zu present", size, avail);
            }
            have_data = true;
        }
        if (!have_data) {
            size_t skip = (size_t)size + (size & 1); /* chunks are padded to even sizes */
            if (skip > avail) break;
            pos += 8 + skip;
        }
    }
    /* Ran out of bytes inside a chunk header or body before finding both chunks. */
    bool cut = !have_data && pos < len;
    if (!have_fmt || !have_data)
        return lip_err_set(err, LIP_EFORMAT, "WAV has no '%s' chunk%s", !have_fmt ? "fmt " : "data",
                           cut ? " (the file is truncated inside a chunk)" : "");
    if (data_len % f.block_align)
        return lip_err_set(err, LIP_EFORMAT, "WAV 'data' is %zu bytes, not a whole number of "
                           "%u-byte sample frames (truncated?)", data_len, f.block_align);
    size_t frames = data_len / f.block_align;
    if (frames == 0) return lip_err_set(err, LIP_EINVAL, "WAV has no samples (empty 'data' chunk)");
    if (frames > LIP_AUDIO_MAX_SAMPLES)
        return lip_err_set(err, LIP_EINVAL, "WAV has %zu samples, more than the limit of %zu",
                           frames, LIP_AUDIO_MAX_SAMPLES);
    float *mono = lip_malloc(frames * sizeof *mono);
    if (!mono) return lip_err_set(err, LIP_ENOMEM, "out of memory for %zu samples", frames);
    size_t bps = f.bits / 8;
    for (size_t i = 0; i < frames; i++) {
        const uint8_t *p = data + data_off + i * f.block_align;
        double sum = 0.0;
        for (uint32_t ch = 0; ch < f.channels; ch++) sum += sample_at(p + ch * bps, &f);
        double v = sum / f.channels;
        if (!isfinite(v) || fabs(v) > 3.0e38) {
            lip_free(mono);
            return lip_err_set(err, LIP_EINVAL, "WAV sample %zu is %s; samples must be finite", i,
                               isnan(v) ? "NaN" : "infinite or out of float range");
        }
        mono[i] = (float)v;
    }
    if (f.rate == LIP_AUDIO_RATE) {
        *pcm16k = mono;
        *n = frames;
        return 0;
    }
    int rc = resample(mono, frames, (int)f.rate, pcm16k, n, err);
    lip_free(mono);
    return rc;
}

int lip_audio_wav_load(const char *path, float **pcm16k, size_t *n, lip_err *err)
{
    *pcm16k = NULL;
    *n = 0;
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc = lip_file_read(path, (size_t)1 << 31, &buf, &len, err);
    if (!rc) rc = lip_audio_wav_parse(buf, len, pcm16k, n, err);
    lip_free(buf);
    if (rc) lip_err_prefix(err, "%s", path);
    return rc;
}
