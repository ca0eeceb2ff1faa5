/* SPDX-License-Identifier: MIT */
/* core/log.c: leveled logging to stderr, plain text or JSON lines, with time and role.
 * One write() per line so lines from threads never interleave. */
#include "core/core.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int lip_log_level_ = LIP_LOG_INFO;
static char log_role[64] = "lipsync";
static bool log_json;
static const char *level_names[] = {"error", "warn", "info", "debug"};

void lip_log_set_level(int level)
{
    lip_log_level_ = level < LIP_LOG_ERROR ? LIP_LOG_ERROR : level > LIP_LOG_DEBUG ? LIP_LOG_DEBUG : level;
}

int lip_log_parse_level(const char *s)
{
    for (int i = 0; i < 4; i++)
        if (s && strcmp(s, level_names[i]) == 0) return i;
    if (s && strcmp(s, "warning") == 0) return LIP_LOG_WARN;
    return -1;
}

void lip_log_set_role(const char *role) { lip_strlcpy(log_role, role, sizeof log_role); }
void lip_log_set_json(bool json) { log_json = json; }

static size_t json_escape(char *out, size_t n, const char *s)
{
    size_t o = 0;
    for (; *s && o + 7 < n; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            out[o++] = '\\';
            out[o++] = (char)c;
        } else if (c < 0x20) {
            o += (size_t)snprintf(out + o, n - o, "\\u%04x", c);
        } else {
            out[o++] = (char)c;
        }
    }
    out[o] = 0;
    return o;
}

void lip_log_write(int level, const char *file, int line, const char *fmt, ...)
{
    char msg[2048], line_buf[4608], ts[40];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);

    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    struct tm tm;
    gmtime_r(&now.tv_sec, &tm);
    size_t tl = strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(ts + tl, sizeof ts - tl, ".%03ldZ", now.tv_nsec / 1000000);

    const char *lv = level_names[level < 0 ? 0 : level > 3 ? 3 : level];
    int n;
    if (log_json) {
        char esc[4096];
        json_escape(esc, sizeof esc, msg);
        n = snprintf(line_buf, sizeof line_buf,
                     "{\"time\":\"%s\",\"level\":\"%s\",\"role\":\"%s\",\"msg\":\"%s\"}\n", ts, lv,
                     log_role, esc);
    } else if (level == LIP_LOG_DEBUG) {
        const char *base = strrchr(file, '/');
        n = snprintf(line_buf, sizeof line_buf, "%s %-5s %s %s (%s:%d)\n", ts, lv, log_role, msg,
                     base ? base + 1 : file, line);
    } else {
        n = snprintf(line_buf, sizeof line_buf, "%s %-5s %s %s\n", ts, lv, log_role, msg);
    }
    if (n > (int)sizeof line_buf - 1) n = (int)sizeof line_buf - 1;
    ssize_t w = write(STDERR_FILENO, line_buf, (size_t)n);
    (void)w;
}
