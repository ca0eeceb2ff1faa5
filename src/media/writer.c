/* SPDX-License-Identifier: MIT */
/* media/writer.c: the video writer. BGR24 (or JPEG) frames and one utterance of 16 kHz PCM go in;
 * an H.264 (libx264, yuv420p, BT.709 limited range, tagged) + AAC (FFmpeg's native encoder) MP4
 * comes out. Audio is fed to the encoder as video advances (after frame i, audio up to
 * (i+1)/fps s), so the muxer interleaves without buffering the whole track and frame i and audio
 * sample i*16000/fps share a timestamp. The file is written under a temporary name in the same
 * directory and renamed at close, so a crash or a failed close never leaves a file at the final
 * path that looks complete. */
#include "media/media_int.h"
#include "image/image.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/channel_layout.h>
#include <libavutil/opt.h>
#include <libavutil/pixdesc.h>
#include <libswresample/swresample.h>
#include <libswscale/swscale.h>

#define PCM_RATE 16000
#define MAX_SIDE 8192
#define MAX_FPS 240

struct lip_video_writer {
    char path[4096], tmp[4096];
    lip_video_opts opts;
    int width, height, fps;
    AVFormatContext *fmt;
    AVCodecContext *venc, *aenc;
    AVStream *vst, *ast;
    struct SwsContext *sws;
    AVFrame *vframe, *aframe;
    AVPacket *pkt;
    SwrContext *swr;
    float *pcm; /* copy of the caller's PCM */
    size_t n_pcm;
    size_t pcm_pos; /* input samples already given to swr */
    float *abuf;    /* resampled samples waiting for a full encoder frame */
    int abuf_len, abuf_cap;
    int chunk_in; /* input samples per swr call (one video frame's worth, rounded up) */
    int64_t apts; /* audio samples sent to the encoder */
    int64_t nframes;
    lip_image jimg; /* JPEG decode buffer (image module), reused */
    bool failed; /* a write failed: only close/abort are accepted */
};

lip_video_opts lip_video_opts_default(void)
{
    lip_video_opts o = {0};
    o.codec = NULL;
    o.preset = "veryfast";
    o.crf = 20;
    o.threads = 0;
    o.audio_rate = PCM_RATE;
    o.audio_bitrate = 64000;
    o.faststart = true;
    return o;
}

static void writer_release(lip_video_writer *w)
{
    if (w->fmt) {
        if (w->fmt->pb) avio_closep(&w->fmt->pb);
        avformat_free_context(w->fmt);
    }
    avcodec_free_context(&w->venc);
    avcodec_free_context(&w->aenc);
    sws_freeContext(w->sws);
    av_frame_free(&w->vframe);
    av_frame_free(&w->aframe);
    av_packet_free(&w->pkt);
    swr_free(&w->swr);
    lip_free(w->pcm);
    lip_free(w->abuf);
    lip_image_free(&w->jimg);
    lip_free(w);
}

void lip_video_writer_abort(lip_video_writer *w)
{
    if (!w) return;
    if (w->tmp[0]) unlink(w->tmp);
    writer_release(w);
}

/* Picks the video encoder: the one named in opts, else libx264, else another H.264 encoder that
 * does not need hardware, else MPEG-4 part 2 (docs/MEDIA.md). */
static const AVCodec *pick_video_codec(const char *name, lip_err *err)
{
    if (name && *name) {
        const AVCodec *c = avcodec_find_encoder_by_name(name);
        if (!c || c->type != AVMEDIA_TYPE_VIDEO)
            lip_err_set(err, LIP_EUNSUPPORTED, "video encoder '%s' is not in this FFmpeg build",
                        name);
        return c && c->type == AVMEDIA_TYPE_VIDEO ? c : NULL;
    }
    static const char *const chain[] = {"libx264", "libopenh264", "mpeg4"};
    for (size_t i = 0; i < LIP_ARRAY_LEN(chain); i++) {
        const AVCodec *c = avcodec_find_encoder_by_name(chain[i]);
        if (c) {
            if (i) lip_log_warn("media: libx264 is missing; encoding video with %s", chain[i]);
            return c;
        }
    }
    lip_err_set(err, LIP_EUNSUPPORTED, "no video encoder (libx264, libopenh264, mpeg4) in FFmpeg");
    return NULL;
}

static int open_video(lip_video_writer *w, lip_err *err)
{
    const AVCodec *codec = pick_video_codec(w->opts.codec, err);
    if (!codec) return err ? err->code : LIP_EUNSUPPORTED;
    w->vst = avformat_new_stream(w->fmt, NULL);
    w->venc = avcodec_alloc_context3(codec);
    if (!w->vst || !w->venc) return lip_err_set(err, LIP_ENOMEM, "out of memory (video encoder)");
    AVCodecContext *c = w->venc;
    c->width = w->width;
    c->height = w->height;
    c->time_base = (AVRational){1, w->fps};
    c->framerate = (AVRational){w->fps, 1};
    c->sample_aspect_ratio = (AVRational){1, 1};
    c->gop_size = 2 * w->fps; /* a keyframe every 2 s keeps seeking in players cheap */
    c->pix_fmt = AV_PIX_FMT_YUV420P;
    if (codec->pix_fmts) {
        bool ok = false;
        for (const enum AVPixelFormat *p = codec->pix_fmts; *p != AV_PIX_FMT_NONE; p++)
            ok |= *p == AV_PIX_FMT_YUV420P;
        if (!ok) c->pix_fmt = codec->pix_fmts[0];
    }
    /* BT.709 limited range, and say so in the stream: untagged HD is read as 709 by most
     * players, and the reader converts back with whatever the stream says. */
    c->color_range = AVCOL_RANGE_MPEG;
    c->colorspace = AVCOL_SPC_BT709;
    c->color_primaries = AVCOL_PRI_BT709;
    c->color_trc = AVCOL_TRC_BT709;
    c->thread_count = w->opts.threads;
    if (w->fmt->oformat->flags & AVFMT_GLOBALHEADER) c->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;
    if (strcmp(codec->name, "libx264") == 0) {
        av_opt_set(c->priv_data, "preset", w->opts.preset ? w->opts.preset : "veryfast", 0);
        av_opt_set_double(c->priv_data, "crf", w->opts.crf, 0);
    } else if (strcmp(codec->name, "mpeg4") == 0) {
        c->flags |= AV_CODEC_FLAG_QSCALE;
        c->global_quality = FF_QP2LAMBDA * 3;
    } else {
        c->bit_rate = (int64_t)w->width * w->height * w->fps / 8; /* ~0.125 bit per pixel */
    }
    int r = avcodec_open2(c, codec, NULL);
    if (r < 0) return lip_media_averr(err, r, "cannot open video encoder %s", codec->name);
    r = avcodec_parameters_from_context(w->vst->codecpar, c);
    if (r < 0) return lip_media_averr(err, r, "video stream parameters");
    w->vst->time_base = c->time_base;
    w->vst->avg_frame_rate = c->framerate;

    w->vframe = av_frame_alloc();
    if (!w->vframe) return lip_err_set(err, LIP_ENOMEM, "out of memory (video frame)");
    w->vframe->format = c->pix_fmt;
    w->vframe->width = w->width;
    w->vframe->height = w->height;
    w->vframe->color_range = c->color_range;
    w->vframe->colorspace = c->colorspace;
    r = av_frame_get_buffer(w->vframe, 0);
    if (r < 0) return lip_media_averr(err, r, "video frame buffer");
    w->sws = sws_getContext(w->width, w->height, AV_PIX_FMT_BGR24, w->width, w->height, c->pix_fmt,
                            SWS_BILINEAR, NULL, NULL, NULL);
    if (!w->sws)
        return lip_err_set(err, LIP_EUNSUPPORTED, "no BGR24 -> %s conversion",
                           av_get_pix_fmt_name(c->pix_fmt));
    /* src: full-range RGB; dst: limited-range BT.709 YUV. */
    const int *coef = sws_getCoefficients(SWS_CS_ITU709);
    sws_setColorspaceDetails(w->sws, coef, 1, coef, 0, 0, 1 << 16, 1 << 16);
    return 0;
}

static int open_audio(lip_video_writer *w, lip_err *err)
{
    const AVCodec *codec = avcodec_find_encoder_by_name("aac");
    if (!codec) return lip_err_set(err, LIP_EUNSUPPORTED, "FFmpeg has no native aac encoder");
    bool rate_ok = !codec->supported_samplerates;
    for (const int *p = codec->supported_samplerates; p && *p; p++)
        rate_ok |= *p == w->opts.audio_rate;
    if (!rate_ok)
        return lip_err_set(err, LIP_EINVAL,
                           "AAC sample rate %d Hz is not supported (use 16000, 22050, 24000, "
                           "32000, 44100 or 48000)",
                           w->opts.audio_rate);
    w->ast = avformat_new_stream(w->fmt, NULL);
    w->aenc = avcodec_alloc_context3(codec);
    if (!w->ast || !w->aenc) return lip_err_set(err, LIP_ENOMEM, "out of memory (audio encoder)");
    AVCodecContext *c = w->aenc;
    c->sample_fmt = codec->sample_fmts ? codec->sample_fmts[0] : AV_SAMPLE_FMT_FLTP;
    /* Mono float is laid out the same planar or packed; anything else would need a plane copy. */
    if (c->sample_fmt != AV_SAMPLE_FMT_FLTP && c->sample_fmt != AV_SAMPLE_FMT_FLT)
        return lip_err_set(err, LIP_EUNSUPPORTED, "aac encoder wants %s, expected float",
                           av_get_sample_fmt_name(c->sample_fmt));
    c->sample_rate = w->opts.audio_rate;
    av_channel_layout_default(&c->ch_layout, 1);
    c->bit_rate = w->opts.audio_bitrate;
    c->time_base = (AVRational){1, c->sample_rate};
    if (w->fmt->oformat->flags & AVFMT_GLOBALHEADER) c->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;
    int r = avcodec_open2(c, codec, NULL);
    if (r < 0) return lip_media_averr(err, r, "cannot open the aac encoder");
    r = avcodec_parameters_from_context(w->ast->codecpar, c);
    if (r < 0) return lip_media_averr(err, r, "audio stream parameters");
    w->ast->time_base = c->time_base;

    int fs = c->frame_size > 0 ? c->frame_size : 1024;
    w->aframe = av_frame_alloc();
    if (!w->aframe) return lip_err_set(err, LIP_ENOMEM, "out of memory (audio frame)");
    w->aframe->format = c->sample_fmt;
    w->aframe->sample_rate = c->sample_rate;
    w->aframe->nb_samples = fs;
    r = av_channel_layout_copy(&w->aframe->ch_layout, &c->ch_layout);
    if (r >= 0) r = av_frame_get_buffer(w->aframe, 0);
    if (r < 0) return lip_media_averr(err, r, "audio frame buffer");

    AVChannelLayout mono = AV_CHANNEL_LAYOUT_MONO;
    r = swr_alloc_set_opts2(&w->swr, &mono, AV_SAMPLE_FMT_FLT, c->sample_rate, &mono,
                            AV_SAMPLE_FMT_FLT, PCM_RATE, 0, NULL);
    if (r >= 0) r = swr_init(w->swr);
    if (r < 0) return lip_media_averr(err, r, "audio resampler 16000 -> %d Hz", c->sample_rate);
    w->chunk_in = (PCM_RATE + w->fps - 1) / w->fps;
    /* One chunk resampled, plus a partial encoder frame, plus the resampler's delay. */
    w->abuf_cap = fs + (int)((int64_t)w->chunk_in * c->sample_rate / PCM_RATE) + 1024;
    w->abuf = lip_malloc((size_t)w->abuf_cap * sizeof(float));
    if (!w->abuf) return lip_err_set(err, LIP_ENOMEM, "out of memory (audio buffer)");
    return 0;
}

/* Moves every packet the encoder has ready into the muxer. */
static int drain(lip_video_writer *w, AVCodecContext *c, AVStream *st, lip_err *err)
{
    for (;;) {
        int r = avcodec_receive_packet(c, w->pkt);
        if (r == AVERROR(EAGAIN) || r == AVERROR_EOF) return 0;
        if (r < 0) return lip_media_averr(err, r, "%s encoder", c->codec->name);
        av_packet_rescale_ts(w->pkt, c->time_base, st->time_base);
        w->pkt->stream_index = st->index;
        r = av_interleaved_write_frame(w->fmt, w->pkt);
        if (r < 0) return lip_media_averr(err, r, "writing %s", w->tmp);
    }
}

/* Sends n samples from abuf to the AAC encoder (n <= frame size). */
static int send_audio_frame(lip_video_writer *w, int n, lip_err *err)
{
    int r = av_frame_make_writable(w->aframe);
    if (r < 0) return lip_media_averr(err, r, "audio frame");
    w->aframe->nb_samples = n;
    memcpy(w->aframe->data[0], w->abuf, (size_t)n * sizeof(float));
    w->aframe->pts = w->apts;
    w->apts += n;
    r = avcodec_send_frame(w->aenc, w->aframe);
    if (r < 0) return lip_media_averr(err, r, "aac encoder");
    memmove(w->abuf, w->abuf + n, (size_t)(w->abuf_len - n) * sizeof(float));
    w->abuf_len -= n;
    return drain(w, w->aenc, w->ast, err);
}

/* Resamples input up to sample in_end (or flushes the resampler when flush) and encodes every
 * full AAC frame that results. */
static int feed_audio(lip_video_writer *w, size_t in_end, bool flush, lip_err *err)
{
    int fs = w->aenc->frame_size > 0 ? w->aenc->frame_size : 1024;
    for (;;) {
        int n_in = w->pcm_pos < in_end ? (int)LIP_MIN((size_t)w->chunk_in, in_end - w->pcm_pos) : 0;
        if (n_in == 0 && !flush) return 0;
        const uint8_t *in = n_in ? (const uint8_t *)(w->pcm + w->pcm_pos) : NULL;
        uint8_t *out = (uint8_t *)(w->abuf + w->abuf_len);
        /* A NULL input asks swr for the samples it still holds (its filter delay). */
        int got = swr_convert(w->swr, &out, w->abuf_cap - w->abuf_len, n_in ? &in : NULL, n_in);
        if (got < 0) return lip_media_averr(err, got, "audio resampling");
        w->pcm_pos += (size_t)n_in;
        w->abuf_len += got;
        while (w->abuf_len >= fs) {
            int r = send_audio_frame(w, fs, err);
            if (r) return r;
        }
        if (n_in == 0 && got == 0) return 0; /* flushed */
    }
}

lip_video_writer *lip_video_writer_open(const char *path, int width, int height, int fps,
                                        const float *pcm16k, size_t n_samples,
                                        const lip_video_opts *opts, lip_err *err)
{
    lip_media_init();
    if (!path || !*path) {
        lip_err_set(err, LIP_EINVAL, "video writer: no output path");
        return NULL;
    }
    if (width <= 0 || height <= 0 || width > MAX_SIDE || height > MAX_SIDE || (width & 1) ||
        (height & 1)) {
        lip_err_set(err, LIP_EINVAL,
                    "video writer: size %dx%d must be even and within 2..%d (yuv420p)", width,
                    height, MAX_SIDE);
        return NULL;
    }
    if (fps <= 0 || fps > MAX_FPS) {
        lip_err_set(err, LIP_EINVAL, "video writer: fps %d outside 1..%d", fps, MAX_FPS);
        return NULL;
    }
    if (n_samples && !pcm16k) {
        lip_err_set(err, LIP_EINVAL, "video writer: %zu samples but no PCM", n_samples);
        return NULL;
    }
    if (n_samples > (size_t)PCM_RATE * LIP_MEDIA_MAX_AUDIO_S) {
        lip_err_set(err, LIP_EINVAL, "video writer: %zu samples is more than %d s of audio",
                    n_samples, LIP_MEDIA_MAX_AUDIO_S);
        return NULL;
    }
    lip_video_writer *w = lip_calloc(1, sizeof *w);
    if (!w) {
        lip_err_set(err, LIP_ENOMEM, "out of memory (video writer)");
        return NULL;
    }
    w->opts = opts ? *opts : lip_video_opts_default();
    w->width = width;
    w->height = height;
    w->fps = fps;
    int r = 0;
    if (w->opts.crf < 0 || w->opts.crf > 51) {
        lip_err_set(err, LIP_EINVAL, "video writer: crf %d outside 0..51", w->opts.crf);
        goto fail;
    }
    if (lip_strlcpy(w->path, path, sizeof w->path) >= sizeof w->path) {
        lip_err_set(err, LIP_EINVAL, "video writer: path longer than %zu bytes", sizeof w->path);
        goto fail;
    }
    /* Temporary name in the same directory (rename is atomic only within one file system);
     * hidden, and with the final extension after it so tools recognise it if it survives. */
    const char *slash = strrchr(path, '/');
    int dlen = slash ? (int)(slash - path) + 1 : 0;
    const char *base = slash ? slash + 1 : path;
    struct stat st;
    if (!*base || (stat(path, &st) == 0 && S_ISDIR(st.st_mode))) {
        lip_err_set(err, LIP_EINVAL, "video writer: '%s' names a directory, not a file", path);
        goto fail;
    }
    if ((size_t)snprintf(w->tmp, sizeof w->tmp, "%.*s.%s.part-XXXXXX", dlen, path, base) >=
        sizeof w->tmp) {
        lip_err_set(err, LIP_EINVAL, "video writer: path too long: %s", path);
        goto fail;
    }
    int fd = mkstemp(w->tmp);
    if (fd < 0) {
        int e = errno;
        w->tmp[0] = 0;
        lip_err_set(err,
                    e == ENOENT                 ? LIP_ENOTFOUND
                    : e == EACCES || e == EROFS ? LIP_EPERM
                                                : LIP_EIO,
                    "cannot create a file next to %s: %s", path, strerror(e));
        goto fail;
    }
    /* mkstemp makes the file 0600; the finished video is an ordinary readable file. */
    if (fchmod(fd, 0644) != 0) lip_log_debug("media: chmod %s: %s", w->tmp, strerror(errno));
    close(fd);

    const AVOutputFormat *of = av_guess_format(NULL, path, NULL);
    if (!of) of = av_guess_format("mp4", NULL, NULL); /* no or unknown extension: MP4 */
    r = avformat_alloc_output_context2(&w->fmt, of, NULL, w->tmp);
    if (r < 0 || !w->fmt) {
        lip_media_averr(err, r < 0 ? r : AVERROR(ENOMEM), "output context for %s", path);
        goto fail;
    }
    w->pkt = av_packet_alloc();
    if (!w->pkt) {
        lip_err_set(err, LIP_ENOMEM, "out of memory (packet)");
        goto fail;
    }
    if (open_video(w, err)) goto fail;
    if (n_samples) {
        w->pcm = lip_malloc(n_samples * sizeof(float));
        if (!w->pcm) {
            lip_err_set(err, LIP_ENOMEM, "out of memory copying %zu PCM samples", n_samples);
            goto fail;
        }
        memcpy(w->pcm, pcm16k, n_samples * sizeof(float));
        w->n_pcm = n_samples;
        if (open_audio(w, err)) goto fail;
    }
    r = avio_open(&w->fmt->pb, w->tmp, AVIO_FLAG_WRITE);
    if (r < 0) {
        lip_media_averr(err, r, "cannot write %s", w->tmp);
        goto fail;
    }
    AVDictionary *mux = NULL;
    if (w->opts.faststart) av_dict_set(&mux, "movflags", "+faststart", 0);
    r = avformat_write_header(w->fmt, &mux);
    av_dict_free(&mux);
    if (r < 0) {
        lip_media_averr(err, r, "writing the header of %s", path);
        goto fail;
    }
    return w;
fail:
    lip_video_writer_abort(w);
    return NULL;
}

static int add_frame(lip_video_writer *w, const uint8_t *bgr, int stride, lip_err *err)
{
    int r = av_frame_make_writable(w->vframe);
    if (r < 0) return lip_media_averr(err, r, "video frame");
    const uint8_t *src[1] = {bgr};
    int src_stride[1] = {stride};
    sws_scale(w->sws, src, src_stride, 0, w->height, w->vframe->data, w->vframe->linesize);
    w->vframe->pts = w->nframes;
    r = avcodec_send_frame(w->venc, w->vframe);
    if (r < 0) return lip_media_averr(err, r, "%s encoder", w->venc->codec->name);
    w->nframes++;
    r = drain(w, w->venc, w->vst, err);
    if (r) return r;
    if (w->n_pcm) {
        /* Audio up to the end of this frame: sample (i+1) * 16000 / fps. */
        size_t end = (size_t)LIP_MIN((int64_t)w->n_pcm, w->nframes * PCM_RATE / w->fps);
        r = feed_audio(w, end, false, err);
    }
    return r;
}

int lip_video_writer_add_bgr(lip_video_writer *w, const uint8_t *bgr, int stride, lip_err *err)
{
    if (!w || !bgr) return lip_err_set(err, LIP_EINVAL, "video writer: NULL argument");
    if (w->failed) return lip_err_set(err, LIP_EPRECOND, "video writer: an earlier write failed");
    if (stride < w->width * 3)
        return lip_err_set(err, LIP_EINVAL, "video writer: stride %d < width %d x 3", stride,
                           w->width);
    int r = add_frame(w, bgr, stride, err);
    if (r) w->failed = true;
    return r;
}

int lip_video_writer_add_jpeg(lip_video_writer *w, const uint8_t *jpeg, size_t len, lip_err *err)
{
    if (!w || !jpeg) return lip_err_set(err, LIP_EINVAL, "video writer: NULL argument");
    if (w->failed) return lip_err_set(err, LIP_EPRECOND, "video writer: an earlier write failed");
    /* Decoded in place into the reused image when the size matches; a JPEG of another size
     * decodes into a fresh image and is refused by size (a bad JPEG leaves the writer usable). */
    lip_image *img = &w->jimg;
    int r = lip_jpeg_decode(jpeg, len, img, err);
    if (r == LIP_EINVAL && img->data) { /* size differs from the reused buffer */
        lip_image other = {0};
        r = lip_jpeg_decode(jpeg, len, &other, err);
        if (!r)
            r = lip_err_set(err, LIP_EINVAL, "video writer: JPEG frame is %dx%d, expected %dx%d",
                            other.w, other.h, w->width, w->height);
        lip_image_free(&other);
        return r;
    }
    if (r) return r;
    if (img->w != w->width || img->h != w->height) {
        r = lip_err_set(err, LIP_EINVAL, "video writer: JPEG frame is %dx%d, expected %dx%d",
                        img->w, img->h, w->width, w->height);
        lip_image_free(img);
        return r;
    }
    r = add_frame(w, img->data, img->stride, err);
    if (r) w->failed = true;
    return r;
}

int64_t lip_video_writer_frames(const lip_video_writer *w)
{
    return w ? w->nframes : 0;
}

static int finish(lip_video_writer *w, lip_err *err)
{
    if (w->failed) return lip_err_set(err, LIP_EPRECOND, "video writer: an earlier write failed");
    if (w->nframes == 0)
        return lip_err_set(err, LIP_EPRECOND, "video writer: no frames were added to %s", w->path);
    int r = avcodec_send_frame(w->venc, NULL);
    if (r < 0) return lip_media_averr(err, r, "flushing the video encoder");
    if ((r = drain(w, w->venc, w->vst, err))) return r;
    if (w->n_pcm) {
        if ((r = feed_audio(w, w->n_pcm, false, err))) return r;
        if ((r = feed_audio(w, w->n_pcm, true, err))) return r;
        /* The last partial frame: short if the encoder allows it, else padded with silence. */
        if (w->abuf_len > 0) {
            int n = w->abuf_len;
            if (!(w->aenc->codec->capabilities & AV_CODEC_CAP_SMALL_LAST_FRAME)) {
                memset(w->abuf + n, 0, (size_t)(w->aenc->frame_size - n) * sizeof(float));
                n = w->abuf_len = w->aenc->frame_size;
            }
            if ((r = send_audio_frame(w, n, err))) return r;
        }
        r = avcodec_send_frame(w->aenc, NULL);
        if (r < 0) return lip_media_averr(err, r, "flushing the audio encoder");
        if ((r = drain(w, w->aenc, w->ast, err))) return r;
    }
    r = av_write_trailer(w->fmt);
    if (r < 0) return lip_media_averr(err, r, "writing the trailer of %s", w->tmp);
    if (w->fmt->pb->error < 0) return lip_media_averr(err, w->fmt->pb->error, "writing %s", w->tmp);
    r = avio_closep(&w->fmt->pb);
    if (r < 0) return lip_media_averr(err, r, "closing %s", w->tmp);
    /* Data on disk before the name: after a crash the final path holds a whole file or none. */
    int fd = open(w->tmp, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    if (rename(w->tmp, w->path) != 0)
        return lip_err_set(err, LIP_EIO, "cannot rename %s to %s: %s", w->tmp, w->path,
                           strerror(errno));
    w->tmp[0] = 0;
    return 0;
}

int lip_video_writer_close(lip_video_writer *w, lip_err *err)
{
    if (!w) return 0;
    int r = finish(w, err);
    if (r) {
        lip_video_writer_abort(w);
        return r;
    }
    writer_release(w);
    return 0;
}
