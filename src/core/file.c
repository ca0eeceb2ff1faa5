/* SPDX-License-Identifier: MIT */
/* core/file.c: monotonic time, whole-file reads, atomic writes (temp + fsync + rename), and
 * directory helpers. */
#include "core/core.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

double lip_time_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec * 1e-6;
}

int64_t lip_time_unix_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

void lip_time_sleep_ms(double ms)
{
    if (ms <= 0) return;
    struct timespec t = {(time_t)(ms / 1e3), (long)((ms - (double)(time_t)(ms / 1e3) * 1e3) * 1e6)};
    while (nanosleep(&t, &t) != 0 && errno == EINTR) {
    }
}

int lip_file_read(const char *path, size_t max_len, uint8_t **data, size_t *len, lip_err *err)
{
    *data = NULL;
    *len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return lip_err_set(err, errno == ENOENT ? LIP_ENOTFOUND : LIP_EIO, "cannot open %s: %s",
                           path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return lip_err_set(err, LIP_EIO, "%s is not a regular file", path);
    }
    size_t size = (size_t)st.st_size;
    if (max_len && size > max_len) {
        close(fd);
        return lip_err_set(err, LIP_EINVAL, "%s is %zu bytes, more than the limit of %zu", path,
                           size, max_len);
    }
    uint8_t *buf = lip_malloc(size + 1);
    if (!buf) {
        close(fd);
        return lip_err_set(err, LIP_ENOMEM, "out of memory reading %s (%zu bytes)", path, size);
    }
    size_t got = 0;
    while (got < size) {
        ssize_t r = read(fd, buf + got, size - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        got += (size_t)r;
    }
    close(fd);
    if (got != size) {
        lip_free(buf);
        return lip_err_set(err, LIP_EIO, "short read on %s (%zu of %zu bytes)", path, got, size);
    }
    buf[size] = 0;
    *data = buf;
    *len = size;
    return 0;
}

int lip_file_write_atomic(const char *path, const void *data, size_t len, lip_err *err)
{
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof tmp)
        return lip_err_set(err, LIP_EINVAL, "path too long: %s", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return lip_err_set(err, LIP_EIO, "cannot create %s: %s", tmp, strerror(errno));
    const uint8_t *p = data;
    size_t left = len;
    while (left) {
        ssize_t w = write(fd, p, left);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            int e = errno;
            close(fd);
            unlink(tmp);
            return lip_err_set(err, LIP_EIO, "cannot write %s: %s", path, strerror(e));
        }
        p += w;
        left -= (size_t)w;
    }
    if (close(fd) != 0 || rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return lip_err_set(err, LIP_EIO, "cannot write %s: %s", path, strerror(e));
    }
    return 0;
}

bool lip_file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

bool lip_dir_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int lip_dir_make(const char *path, lip_err *err)
{
    char buf[4096];
    if (lip_strlcpy(buf, path, sizeof buf) >= sizeof buf)
        return lip_err_set(err, LIP_EINVAL, "path too long: %s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(buf, 0755) != 0 && errno != EEXIST)
            return lip_err_set(err, LIP_EIO, "cannot create directory %s: %s", buf, strerror(errno));
        *p = '/';
    }
    if (mkdir(buf, 0755) != 0 && errno != EEXIST)
        return lip_err_set(err, LIP_EIO, "cannot create directory %s: %s", buf, strerror(errno));
    if (!lip_dir_exists(buf)) return lip_err_set(err, LIP_EIO, "%s exists and is not a directory", buf);
    return 0;
}

int lip_path_join(char *out, size_t n, const char *a, const char *b, lip_err *err)
{
    size_t la = strlen(a);
    bool slash = la > 0 && a[la - 1] != '/';
    int w = snprintf(out, n, "%s%s%s", a, slash ? "/" : "", b);
    if (w < 0 || (size_t)w >= n) return lip_err_set(err, LIP_EINVAL, "path too long: %s/%s", a, b);
    return 0;
}
