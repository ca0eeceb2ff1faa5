/* SPDX-License-Identifier: MIT */
/* media_int.h: helpers shared by the media module's files and nobody else: the one place where
 * FFmpeg error numbers become lip_err codes and messages, and the one-time routing of FFmpeg's
 * own log lines into lipsync's log. */
#ifndef LIP_MEDIA_INT_H
#define LIP_MEDIA_INT_H

#include "media/media.h"

/* Sets err from an FFmpeg AVERROR: the code is mapped (ENOENT -> LIP_ENOTFOUND, ENOMEM ->
 * LIP_ENOMEM, EACCES/EPERM -> LIP_EPERM, invalid data / EOF -> LIP_EFORMAT, otherwise LIP_EIO),
 * the message is "<what>: <FFmpeg's text>". Returns the lip code. */
int lip_media_averr(lip_err *err, int averr, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Routes FFmpeg's log to lipsync's at debug level (every failure already reaches the caller as a
 * lip_err, so FFmpeg's chatter, x264's banner included, stays out of normal output). Idempotent
 * and thread-safe. */
void lip_media_init(void);

#endif
