/* SPDX-License-Identifier: MIT */
/* media/reader.c: the reading side of the FFmpeg glue. A video reader that decodes the first
 * video stream of any container to packed BGR24 (colour matrix and range taken from the stream),
 * an exact probe that counts video packets, and a general audio loader that decodes the first
 * audio stream to 16 kHz mono float. Inputs are untrusted: only the "file" protocol is allowed,
 * sizes are bounded, and every failure names the file and FFmpeg's reason. */
#include "media/media_int.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/channel_layout.h>
#include <libavutil/pixdesc.h>
#include <libswresample/swresample.h>
#include <libswscale/swscale.h>

#define MAX_SIDE 16384

struct lip_video_reader {
    AVFormatContext *fmt;
    AVCodecContext *dec;
    int vidx;
    AVPacket *pkt;
    AVFrame *frame;
    struct SwsContext *sws;
    int sws_w, sws_h, sws_fmt, sws_cs, sws_range; /* what sws was built for */
    uint8_t *bgr;
    size_t cap;
    bool flushing; /* the decoder was sent its end-of-stream */
    int64_t decoded;
    lip_media_info info;
    char path[1024];
};

/* Opens path for demuxing: local files only (a crafted playlist cannot reach the network), and
 * a missing file is reported as such rather than as FFmpeg's generic failure. */
static int open_input(const char *path, AVFormatContext **out, lip_err *err)
{
    *out = NULL;
    if (!path || !*path) return lip_err_set(err, LIP_EINVAL, "no media path given");
    struct stat st;
    if (stat(path, &st) != 0)
        return lip_err_set(err, errno == ENOENT ? LIP_ENOTFOUND : LIP_EIO, "cannot open %s: %s",
                           path, strerror(errno));
    if (!S_ISREG(st.st_mode)) return lip_err_set(err, LIP_EINVAL, "%s is not a regular file", path);
    AVDictionary *o = NULL;
    av_dict_set(&o, "protocol_whitelist", "file", 0);
    int r = avformat_open_input(out, path, NULL, &o);
    av_dict_free(&o);
    if (r < 0) {
        *out = NULL;
        return lip_media_averr(err, r, "%s is not a readable media file", path);
    }
    r = avformat_find_stream_info(*out, NULL);
    if (r < 0) {
        avformat_close_input(out);
        return lip_media_averr(err, r, "cannot read the streams of %s", path);
    }
    return 0;
}

static void name_copy(char *dst, size_t n, const char *src)
{
    lip_strlcpy(dst, src ? src : "", n);
}

/* Header facts: the first video stream and the first audio stream. */
static void fill_info(AVFormatContext *fmt, lip_media_info *in)
{
    memset(in, 0, sizeof *in);
    in->frame_count = -1;
    name_copy(in->container, sizeof in->container, fmt->iformat ? fmt->iformat->name : "");
    if (fmt->duration > 0) in->duration_s = (double)fmt->duration / AV_TIME_BASE;
    for (unsigned i = 0; i < fmt->nb_streams; i++) {
        AVStream *st = fmt->streams[i];
        AVCodecParameters *cp = st->codecpar;
        if (cp->codec_type == AVMEDIA_TYPE_VIDEO && !in->has_video &&
            !(st->disposition & AV_DISPOSITION_ATTACHED_PIC)) {
            in->has_video = true;
            in->width = cp->width;
            in->height = cp->height;
            AVRational fr = st->avg_frame_rate.num > 0 ? st->avg_frame_rate : st->r_frame_rate;
            if (fr.num > 0 && fr.den > 0) in->fps = av_q2d(fr);
            if (st->nb_frames > 0) in->frame_count = st->nb_frames;
            name_copy(in->video_codec, sizeof in->video_codec, avcodec_get_name(cp->codec_id));
        } else if (cp->codec_type == AVMEDIA_TYPE_AUDIO) {
            if (in->audio_streams++ == 0) {
                in->has_audio = true;
                in->audio_rate = cp->sample_rate;
                in->audio_channels = cp->ch_layout.nb_channels;
                if (st->duration > 0 && st->time_base.den > 0)
                    in->audio_duration_s = (double)st->duration * av_q2d(st->time_base);
                name_copy(in->audio_codec, sizeof in->audio_codec, avcodec_get_name(cp->codec_id));
            }
        }
    }
}

int lip_media_probe(const char *path, lip_media_info *out, lip_err *err)
{
    lip_media_init();
    memset(out, 0, sizeof *out);
    AVFormatContext *fmt;
    int r = open_input(path, &fmt, err);
    if (r) return r;
    fill_info(fmt, out);
    int vidx = -1, aidx = -1;
    for (unsigned i = 0; i < fmt->nb_streams; i++) {
        AVStream *st = fmt->streams[i];
        if (st->codecpar->codec_type == AVMEDIA_TYPE_VIDEO && vidx < 0 &&
            !(st->disposition & AV_DISPOSITION_ATTACHED_PIC))
            vidx = (int)i;
        if (st->codecpar->codec_type == AVMEDIA_TYPE_AUDIO && aidx < 0) aidx = (int)i;
    }
    AVPacket *pkt = av_packet_alloc();
    if (!pkt) {
        avformat_close_input(&fmt);
        return lip_err_set(err, LIP_ENOMEM, "out of memory (packet)");
    }
    int64_t frames = 0, adur = 0;
    int fail = 0;
    for (;;) {
        r = av_read_frame(fmt, pkt);
        if (r == AVERROR_EOF) break;
        if (r < 0) {
            fail = lip_media_averr(err, r, "reading %s after %lld video packets", path,
                                   (long long)frames);
            break;
        }
        /* Packets an edit list hides (encoder priming) are not presented: not counted. */
        if (!(pkt->flags & AV_PKT_FLAG_DISCARD)) {
            if (pkt->stream_index == vidx) frames++;
            if (pkt->stream_index == aidx && pkt->duration > 0) adur += pkt->duration;
        }
        av_packet_unref(pkt);
    }
    av_packet_free(&pkt);
    if (r == AVERROR_EOF) {
        r = 0;
        if (vidx >= 0) out->frame_count = frames;
        if (aidx >= 0 && adur > 0)
            out->audio_duration_s = (double)adur * av_q2d(fmt->streams[aidx]->time_base);
    } else {
        r = fail;
    }
    avformat_close_input(&fmt);
    return r;
}

/* ---- video reader ---------------------------------------------------------------------------- */
void lip_video_reader_free(lip_video_reader *r)
{
    if (!r) return;
    avcodec_free_context(&r->dec);
    avformat_close_input(&r->fmt);
    av_packet_free(&r->pkt);
    av_frame_free(&r->frame);
    sws_freeContext(r->sws);
    lip_free(r->bgr);
    lip_free(r);
}

static int open_decoder(AVFormatContext *fmt, int idx, AVCodecContext **out, const char *path,
                        lip_err *err)
{
    AVCodecParameters *cp = fmt->streams[idx]->codecpar;
    const AVCodec *codec = avcodec_find_decoder(cp->codec_id);
    if (!codec)
        return lip_err_set(err, LIP_EUNSUPPORTED, "%s: no decoder for %s", path,
                           avcodec_get_name(cp->codec_id));
    AVCodecContext *c = avcodec_alloc_context3(codec);
    if (!c) return lip_err_set(err, LIP_ENOMEM, "out of memory (decoder)");
    int r = avcodec_parameters_to_context(c, cp);
    if (r >= 0) {
        c->thread_count = 0; /* FFmpeg picks; frame threads only add latency to a batch import */
        r = avcodec_open2(c, codec, NULL);
    }
    if (r < 0) {
        avcodec_free_context(&c);
        return lip_media_averr(err, r, "%s: cannot open the %s decoder", path, codec->name);
    }
    *out = c;
    return 0;
}

lip_video_reader *lip_video_reader_open(const char *path, lip_err *err)
{
    lip_media_init();
    lip_video_reader *r = lip_calloc(1, sizeof *r);
    if (!r) {
        lip_err_set(err, LIP_ENOMEM, "out of memory (video reader)");
        return NULL;
    }
    r->sws_fmt = -1;
    if (open_input(path, &r->fmt, err)) goto fail;
    lip_strlcpy(r->path, path, sizeof r->path);
    fill_info(r->fmt, &r->info);
    r->vidx = av_find_best_stream(r->fmt, AVMEDIA_TYPE_VIDEO, -1, -1, NULL, 0);
    if (r->vidx < 0 || !r->info.has_video) {
        lip_err_set(err, LIP_EFORMAT, "%s has no video stream", path);
        goto fail;
    }
    if (open_decoder(r->fmt, r->vidx, &r->dec, path, err)) goto fail;
    r->pkt = av_packet_alloc();
    r->frame = av_frame_alloc();
    if (!r->pkt || !r->frame) {
        lip_err_set(err, LIP_ENOMEM, "out of memory (video reader)");
        goto fail;
    }
    return r;
fail:
    lip_video_reader_free(r);
    return NULL;
}

const lip_media_info *lip_video_reader_info(const lip_video_reader *r)
{
    return &r->info;
}

static bool full_range(const AVFrame *f)
{
    return f->color_range == AVCOL_RANGE_JPEG || f->format == AV_PIX_FMT_YUVJ420P ||
           f->format == AV_PIX_FMT_YUVJ422P || f->format == AV_PIX_FMT_YUVJ444P;
}

/* Converts the decoded frame into r->bgr; sws and the buffer are rebuilt only when the frame's
 * size, format or colour description changes (normally never after the first frame). */
static int to_bgr(lip_video_reader *r, lip_err *err)
{
    AVFrame *f = r->frame;
    if (f->width <= 0 || f->height <= 0 || f->width > MAX_SIDE || f->height > MAX_SIDE)
        return lip_err_set(err, LIP_EFORMAT, "%s: frame size %dx%d outside 1..%d", r->path,
                           f->width, f->height, MAX_SIDE);
    int cs = f->colorspace, range = full_range(f);
    if (!r->sws || r->sws_w != f->width || r->sws_h != f->height || r->sws_fmt != f->format ||
        r->sws_cs != cs || r->sws_range != range) {
        sws_freeContext(r->sws);
        /* Accurate rounding and full chroma interpolation: the import writes these pixels to
         * JPEG once, so quality matters more than the fraction of a millisecond. */
        r->sws =
            sws_getContext(f->width, f->height, f->format, f->width, f->height, AV_PIX_FMT_BGR24,
                           SWS_BICUBIC | SWS_ACCURATE_RND | SWS_FULL_CHR_H_INT, NULL, NULL, NULL);
        if (!r->sws)
            return lip_err_set(err, LIP_EUNSUPPORTED, "%s: no %s -> BGR24 conversion", r->path,
                               av_get_pix_fmt_name(f->format));
        /* SWS_CS_* share AVColorSpace's numbering; unknown values give BT.601. */
        const int *coef = sws_getCoefficients(cs == AVCOL_SPC_UNSPECIFIED ? SWS_CS_DEFAULT : cs);
        sws_setColorspaceDetails(r->sws, coef, range, sws_getCoefficients(SWS_CS_DEFAULT), 1, 0,
                                 1 << 16, 1 << 16);
        size_t need = (size_t)f->width * f->height * 3;
        if (r->cap < need) {
            uint8_t *nb = lip_realloc(r->bgr, need);
            if (!nb) return lip_err_set(err, LIP_ENOMEM, "out of memory (%zu-byte frame)", need);
            r->bgr = nb;
            r->cap = need;
        }
        r->sws_w = f->width;
        r->sws_h = f->height;
        r->sws_fmt = f->format;
        r->sws_cs = cs;
        r->sws_range = range;
    }
    uint8_t *dst[1] = {r->bgr};
    int dst_stride[1] = {f->width * 3};
    sws_scale(r->sws, (const uint8_t *const *)f->data, f->linesize, 0, f->height, dst, dst_stride);
    return 0;
}

int lip_video_reader_next_bgr(lip_video_reader *r, uint8_t **bgr, int *width, int *height,
                              lip_err *err)
{
    if (!r) return lip_err_set(err, LIP_EINVAL, "video reader: NULL");
    for (;;) {
        int rc = avcodec_receive_frame(r->dec, r->frame);
        if (rc == 0) {
            rc = to_bgr(r, err);
            int fw = r->frame->width, fh = r->frame->height;
            av_frame_unref(r->frame);
            if (rc) return rc;
            r->decoded++;
            *bgr = r->bgr;
            *width = fw;
            *height = fh;
            return 1;
        }
        if (rc == AVERROR_EOF) return 0;
        if (rc != AVERROR(EAGAIN))
            return lip_media_averr(err, rc, "%s: decoding frame %lld", r->path,
                                   (long long)r->decoded);
        if (r->flushing) return 0;
        rc = av_read_frame(r->fmt, r->pkt);
        if (rc == AVERROR_EOF) {
            r->flushing = true;
            rc = avcodec_send_packet(r->dec, NULL);
            if (rc < 0 && rc != AVERROR_EOF)
                return lip_media_averr(err, rc, "%s: flushing the decoder", r->path);
            continue;
        }
        if (rc < 0)
            return lip_media_averr(err, rc, "%s: reading after frame %lld", r->path,
                                   (long long)r->decoded);
        if (r->pkt->stream_index != r->vidx) {
            av_packet_unref(r->pkt);
            continue;
        }
        rc = avcodec_send_packet(r->dec, r->pkt);
        av_packet_unref(r->pkt);
        /* A corrupt packet is an error, not a skipped frame: frame i must stay frame i for the
         * crop rects that go with it. */
        if (rc < 0 && rc != AVERROR(EAGAIN))
            return lip_media_averr(err, rc, "%s: corrupt video data after frame %lld", r->path,
                                   (long long)r->decoded);
    }
}

/* ---- audio loader ---------------------------------------------------------------------------- */
struct pcm_acc {
    float *buf;
    size_t n, cap;
};

static int acc_reserve(struct pcm_acc *a, size_t more, const char *path, lip_err *err)
{
    size_t max = (size_t)16000 * LIP_MEDIA_MAX_AUDIO_S;
    if (a->n + more > max)
        return lip_err_set(err, LIP_ERANGE, "%s: audio longer than the limit of %d s", path,
                           LIP_MEDIA_MAX_AUDIO_S);
    if (a->n + more <= a->cap) return 0;
    size_t cap = a->cap ? a->cap : 16000;
    while (cap < a->n + more) cap *= 2;
    float *nb = lip_realloc(a->buf, cap * sizeof(float));
    if (!nb) return lip_err_set(err, LIP_ENOMEM, "out of memory for %zu audio samples", cap);
    a->buf = nb;
    a->cap = cap;
    return 0;
}

/* Resamples one decoded frame (or, with f NULL, what swr still holds) onto the accumulator. */
static int acc_convert(SwrContext *swr, const AVFrame *f, struct pcm_acc *a, const char *path,
                       lip_err *err)
{
    int in_n = f ? f->nb_samples : 0;
    int out_max = swr_get_out_samples(swr, in_n);
    if (out_max < 0) return lip_media_averr(err, out_max, "%s: resampler", path);
    int rc = acc_reserve(a, (size_t)out_max + 1, path, err);
    if (rc) return rc;
    uint8_t *out = (uint8_t *)(a->buf + a->n);
    int got =
        swr_convert(swr, &out, out_max + 1, f ? (const uint8_t **)f->extended_data : NULL, in_n);
    if (got < 0) return lip_media_averr(err, got, "%s: resampling", path);
    a->n += (size_t)got;
    return 0;
}

int lip_media_load_audio(const char *path, float **pcm16k, size_t *n, lip_err *err)
{
    lip_media_init();
    *pcm16k = NULL;
    *n = 0;
    AVFormatContext *fmt = NULL;
    AVCodecContext *dec = NULL;
    AVPacket *pkt = NULL;
    AVFrame *frame = NULL;
    SwrContext *swr = NULL;
    struct pcm_acc acc = {0};
    int sw_fmt = -1, sw_rate = 0, sw_ch = 0;
    int rc = open_input(path, &fmt, err);
    if (rc) return rc;
    int aidx = av_find_best_stream(fmt, AVMEDIA_TYPE_AUDIO, -1, -1, NULL, 0);
    if (aidx < 0) {
        rc = lip_err_set(err, LIP_EFORMAT, "%s has no audio stream", path);
        goto out;
    }
    if ((rc = open_decoder(fmt, aidx, &dec, path, err))) goto out;
    pkt = av_packet_alloc();
    frame = av_frame_alloc();
    if (!pkt || !frame) {
        rc = lip_err_set(err, LIP_ENOMEM, "out of memory (audio loader)");
        goto out;
    }
    bool flushing = false;
    for (;;) {
        int r = avcodec_receive_frame(dec, frame);
        if (r == 0) {
            int ch = frame->ch_layout.nb_channels;
            if (ch <= 0 || frame->sample_rate <= 0) {
                rc = lip_err_set(err, LIP_EFORMAT, "%s: audio frame with %d channels at %d Hz",
                                 path, ch, frame->sample_rate);
                goto out;
            }
            if (!swr || sw_fmt != frame->format || sw_rate != frame->sample_rate || sw_ch != ch) {
                if (swr && (rc = acc_convert(swr, NULL, &acc, path, err))) goto out;
                swr_free(&swr);
                /* Files without a channel mask get the default layout for their count, so swr
                 * can build its downmix matrix. */
                AVChannelLayout in_l, mono = AV_CHANNEL_LAYOUT_MONO;
                if (frame->ch_layout.order == AV_CHANNEL_ORDER_UNSPEC)
                    av_channel_layout_default(&in_l, ch);
                else if (av_channel_layout_copy(&in_l, &frame->ch_layout) < 0)
                    av_channel_layout_default(&in_l, ch);
                r = swr_alloc_set_opts2(&swr, &mono, AV_SAMPLE_FMT_FLT, 16000, &in_l, frame->format,
                                        frame->sample_rate, 0, NULL);
                av_channel_layout_uninit(&in_l);
                /* Mono is the plain mean of the channels (what librosa.load does), not swr's
                 * default downmix, which weights stereo by 1/sqrt(2) and so changes the level. */
                double mix[64];
                if (r >= 0 && ch <= 64) {
                    for (int k = 0; k < ch; k++) mix[k] = 1.0 / ch;
                    r = swr_set_matrix(swr, mix, ch);
                }
                if (r >= 0) r = swr_init(swr);
                if (r < 0) {
                    rc = lip_media_averr(err, r, "%s: resampler from %d Hz, %d channels, %s", path,
                                         frame->sample_rate, ch,
                                         av_get_sample_fmt_name(frame->format));
                    goto out;
                }
                sw_fmt = frame->format;
                sw_rate = frame->sample_rate;
                sw_ch = ch;
            }
            rc = acc_convert(swr, frame, &acc, path, err);
            av_frame_unref(frame);
            if (rc) goto out;
            continue;
        }
        if (r == AVERROR_EOF || (r == AVERROR(EAGAIN) && flushing)) break;
        if (r != AVERROR(EAGAIN)) {
            rc = lip_media_averr(err, r, "%s: decoding audio", path);
            goto out;
        }
        r = av_read_frame(fmt, pkt);
        if (r == AVERROR_EOF) {
            flushing = true;
            avcodec_send_packet(dec, NULL);
            continue;
        }
        if (r < 0) {
            rc = lip_media_averr(err, r, "%s: reading audio after %zu samples", path, acc.n);
            goto out;
        }
        if (pkt->stream_index == aidx) {
            r = avcodec_send_packet(dec, pkt);
            if (r < 0 && r != AVERROR(EAGAIN) && r != AVERROR_INVALIDDATA) {
                av_packet_unref(pkt);
                rc = lip_media_averr(err, r, "%s: decoding audio after %zu samples", path, acc.n);
                goto out;
            }
            /* A damaged audio packet is skipped (decoders conceal it), as players do. */
        }
        av_packet_unref(pkt);
    }
    if (swr && (rc = acc_convert(swr, NULL, &acc, path, err))) goto out;
    if (acc.n == 0) {
        rc = lip_err_set(err, LIP_EFORMAT, "%s: the audio stream decodes to no samples", path);
        goto out;
    }
    *pcm16k = acc.buf;
    *n = acc.n;
    acc.buf = NULL;
    rc = 0;
out:
    lip_free(acc.buf);
    swr_free(&swr);
    av_frame_free(&frame);
    av_packet_free(&pkt);
    avcodec_free_context(&dec);
    avformat_close_input(&fmt);
    return rc;
}
