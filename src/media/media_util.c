/* SPDX-License-Identifier: MIT */
/* media/media_util.c: the media module's conversion of FFmpeg errors (AVERROR) into lip_err and
 * the routing of FFmpeg's log into ours. JPEG frames are encoded and decoded by the image
 * module. */
#include "media/media_int.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libavutil/error.h>
#include <libavutil/log.h>

/* ---- FFmpeg errors and log ------------------------------------------------------------------ */
int lip_media_averr(lip_err *err, int averr, const char *fmt, ...)
{
    int code;
    if (averr == AVERROR(ENOENT))
        code = LIP_ENOTFOUND;
    else if (averr == AVERROR(ENOMEM))
        code = LIP_ENOMEM;
    else if (averr == AVERROR(EACCES) || averr == AVERROR(EPERM) || averr == AVERROR(EROFS))
        code = LIP_EPERM;
    else if (averr == AVERROR_INVALIDDATA || averr == AVERROR_EOF ||
             averr == AVERROR_STREAM_NOT_FOUND || averr == AVERROR_DECODER_NOT_FOUND ||
             averr == AVERROR_DEMUXER_NOT_FOUND)
        code = LIP_EFORMAT;
    else if (averr == AVERROR_ENCODER_NOT_FOUND || averr == AVERROR_MUXER_NOT_FOUND ||
             averr == AVERROR_PATCHWELCOME)
        code = LIP_EUNSUPPORTED;
    else
        code = LIP_EIO;
    if (!err) return code;
    char what[LIP_ERRMSG_MAX / 2], why[AV_ERROR_MAX_STRING_SIZE + 1];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    if (av_strerror(averr, why, sizeof why) < 0)
        snprintf(why, sizeof why, "FFmpeg error %d", averr);
    return lip_err_set(err, code, "%s: %s", what, why);
}

static void av_log_to_lip(void *avcl, int level, const char *fmt, va_list vl)
{
    if (level > AV_LOG_VERBOSE || lip_log_level_ < LIP_LOG_DEBUG) return;
    char line[1024];
    int prefix = 1;
    av_log_format_line2(avcl, level, fmt, vl, line, sizeof line, &prefix);
    size_t n = strlen(line);
    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = 0;
    if (n) lip_log_debug("ffmpeg: %s", line);
}

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static void init_fn(void)
{
    av_log_set_callback(av_log_to_lip);
}
void lip_media_init(void)
{
    pthread_once(&init_once, init_fn);
}
