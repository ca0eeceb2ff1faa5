/* SPDX-License-Identifier: MIT */
/* media/avatar_import.c: crop rects (JSON in both DATA.md forms, and from landmark files) and the
 * importer that turns a plain video plus rects into the canonical avatar layout of DATA.md:
 * avatar.yaml, unet.onnx, frames/%06d.jpg and crop_rects.json. The avatar is built in a hidden
 * sibling directory and renamed into place only when every file is written, so a failed or
 * interrupted import never leaves something at the destination that looks like an avatar. */
#include "media/media_int.h"
#include "image/image.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cJSON.h>

#define RECTS_MAX_BYTES (64u << 20) /* 64 MiB of JSON is ~2 M rects: far more than any avatar */
#define RECTS_MAX 1000000           /* frames/%06d.jpg names at most a million frames */
#define LMS_LINES 110
#define AVATAR_FPS 25

/* ---- rects ----------------------------------------------------------------------------------- */
int lip_media_rect_check(const lip_media_rect *r, size_t i, int width, int height, lip_err *err)
{
    if (r->x2 <= r->x1 || r->y2 <= r->y1)
        return lip_err_set(err, LIP_EINVAL,
                           "crop rect %zu [%d, %d, %d, %d] is empty (x2 > x1 and "
                           "y2 > y1 expected)",
                           i, r->x1, r->y1, r->x2, r->y2);
    if (r->x1 < 0 || r->y1 < 0 || r->x2 > width || r->y2 > height)
        return lip_err_set(err, LIP_ERANGE,
                           "crop rect %zu [%d, %d, %d, %d] is outside the %dx%d frame (expected "
                           "0 <= x1 < x2 <= %d, 0 <= y1 < y2 <= %d)",
                           i, r->x1, r->y1, r->x2, r->y2, width, height, width, height);
    return 0;
}

static int json_rect(const cJSON *a, const char *path, size_t i, lip_media_rect *out, lip_err *err)
{
    if (!cJSON_IsArray(a) || cJSON_GetArraySize(a) != 4)
        return lip_err_set(err, LIP_EFORMAT, "%s: rect %zu is not an array of 4 numbers", path, i);
    int v[4];
    for (int k = 0; k < 4; k++) {
        const cJSON *e = cJSON_GetArrayItem(a, k);
        double d = cJSON_IsNumber(e) ? e->valuedouble : NAN;
        if (!isfinite(d) || d != floor(d) || d < -1e6 || d > 1e6)
            return lip_err_set(err, LIP_EFORMAT, "%s: rect %zu value %d is not an integer", path, i,
                               k);
        v[k] = (int)d;
    }
    *out = (lip_media_rect){v[0], v[1], v[2], v[3]};
    return 0;
}

int lip_media_rects_load_json(const char *path, lip_media_rect **rects, size_t *n, lip_err *err)
{
    *rects = NULL;
    *n = 0;
    uint8_t *data;
    size_t len;
    int rc = lip_file_read(path, RECTS_MAX_BYTES, &data, &len, err);
    if (rc) return rc;
    cJSON *root = cJSON_ParseWithLength((const char *)data, len);
    lip_free(data);
    if (!root) return lip_err_set(err, LIP_EFORMAT, "%s is not valid JSON", path);
    size_t cnt = (size_t)cJSON_GetArraySize(root);
    lip_media_rect *out = NULL;
    if (!cJSON_IsArray(root) && !cJSON_IsObject(root)) {
        rc = lip_err_set(err, LIP_EFORMAT, "%s: expected a JSON array or object of rects", path);
        goto done;
    }
    if (cnt == 0 || cnt > RECTS_MAX) {
        rc = lip_err_set(err, LIP_EFORMAT, "%s holds %zu rects, expected 1..%d", path, cnt,
                         RECTS_MAX);
        goto done;
    }
    out = lip_calloc(cnt, sizeof *out);
    bool *seen = cJSON_IsObject(root) ? lip_calloc(cnt, 1) : NULL;
    if (!out || (cJSON_IsObject(root) && !seen)) {
        lip_free(seen);
        rc = lip_err_set(err, LIP_ENOMEM, "out of memory for %zu rects", cnt);
        goto done;
    }
    size_t i = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, root)
    {
        size_t idx = i;
        const cJSON *a = it;
        if (seen) {
            /* Keyed form: "0".."N-1", each {"rect": [...]} (or the array itself). */
            long k;
            if (!it->string || lip_parse_long(it->string, 0, (long)cnt - 1, &k) != 0) {
                rc = lip_err_set(err, LIP_EFORMAT, "%s: key '%s' is not a frame index 0..%zu", path,
                                 it->string ? it->string : "", cnt - 1);
                break;
            }
            idx = (size_t)k;
            if (seen[idx]) {
                rc = lip_err_set(err, LIP_EFORMAT, "%s: frame %zu appears twice", path, idx);
                break;
            }
            seen[idx] = true;
            if (cJSON_IsObject(it)) a = cJSON_GetObjectItemCaseSensitive(it, "rect");
        }
        if ((rc = json_rect(a, path, idx, &out[idx], err))) break;
        i++;
    }
    lip_free(seen);
done:
    cJSON_Delete(root);
    if (rc) {
        lip_free(out);
        return rc;
    }
    *rects = out;
    *n = cnt;
    return 0;
}

int lip_media_rect_from_landmarks(const char *path, lip_media_rect *out, lip_err *err)
{
    uint8_t *data;
    size_t len;
    int rc = lip_file_read(path, 1u << 20, &data, &len, err);
    if (rc) return rc;
    int xs[LMS_LINES], ys[LMS_LINES], lines = 0;
    const char *p = (const char *)data;
    rc = 0;
    while (*p && !rc) {
        while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n') p++;
        if (!*p) break;
        if (lines == LMS_LINES) {
            rc = lip_err_set(err, LIP_EFORMAT, "%s: more than %d landmark lines", path, LMS_LINES);
            break;
        }
        long v[2];
        for (int k = 0; k < 2 && !rc; k++) {
            while (*p == ' ' || *p == '\t') p++;
            char *end;
            errno = 0;
            v[k] = strtol(p, &end, 10);
            /* Landmarks are integers per DATA.md; "12.0"-style values are accepted only when
             * integral so a float file is not silently truncated. */
            if (end != p && *end == '.') {
                double d = strtod(p, &end);
                if (d != floor(d)) end = (char *)p;
                v[k] = (long)d;
            }
            if (end == p || errno || v[k] < -100000 || v[k] > 100000)
                rc = lip_err_set(err, LIP_EFORMAT, "%s: line %d: expected two integers 'x y'", path,
                                 lines + 1);
            p = end;
        }
        while (!rc && (*p == ' ' || *p == '\t' || *p == '\r')) p++;
        if (!rc && *p && *p != '\n')
            rc = lip_err_set(err, LIP_EFORMAT, "%s: line %d: expected two integers 'x y'", path,
                             lines + 1);
        if (!rc) {
            xs[lines] = (int)v[0];
            ys[lines] = (int)v[1];
            lines++;
        }
    }
    lip_free(data);
    if (rc) return rc;
    if (lines != LMS_LINES)
        return lip_err_set(err, LIP_EFORMAT, "%s: %d landmark lines, expected %d", path, lines,
                           LMS_LINES);
    out->x1 = xs[1];
    out->y1 = ys[52];
    out->x2 = xs[31];
    out->y2 = ys[52] + (xs[31] - xs[1]);
    return 0;
}

int lip_media_rects_from_landmarks_dir(const char *dir, lip_media_rect **rects, size_t *n,
                                       lip_err *err)
{
    *rects = NULL;
    *n = 0;
    if (!lip_dir_exists(dir))
        return lip_err_set(err, LIP_ENOTFOUND, "landmarks directory %s does not exist", dir);
    size_t cap = 0, cnt = 0;
    lip_media_rect *out = NULL;
    char path[4096];
    for (;; cnt++) {
        if (cnt >= RECTS_MAX) break;
        if ((size_t)snprintf(path, sizeof path, "%s/%zu.lms", dir, cnt) >= sizeof path) {
            lip_free(out);
            return lip_err_set(err, LIP_EINVAL, "landmarks path too long: %s", dir);
        }
        if (!lip_file_exists(path)) break;
        if (cnt == cap) {
            cap = cap ? cap * 2 : 512;
            lip_media_rect *nb = lip_realloc(out, cap * sizeof *out);
            if (!nb) {
                lip_free(out);
                return lip_err_set(err, LIP_ENOMEM, "out of memory for %zu rects", cap);
            }
            out = nb;
        }
        int rc = lip_media_rect_from_landmarks(path, &out[cnt], err);
        if (rc) {
            lip_free(out);
            return rc;
        }
    }
    if (cnt == 0) {
        lip_free(out);
        return lip_err_set(err, LIP_ENOTFOUND,
                           "%s has no landmark files (expected 0.lms, 1.lms, "
                           "...)",
                           dir);
    }
    *rects = out;
    *n = cnt;
    return 0;
}

int lip_media_rects_save_json(const char *path, const lip_media_rect *rects, size_t n, lip_err *err)
{
    size_t cap = n * 64 + 16, len = 0;
    char *buf = lip_malloc(cap);
    if (!buf) return lip_err_set(err, LIP_ENOMEM, "out of memory writing %zu rects", n);
    len += (size_t)snprintf(buf + len, cap - len, "[\n");
    for (size_t i = 0; i < n; i++)
        len += (size_t)snprintf(buf + len, cap - len, "  [%d, %d, %d, %d]%s\n", rects[i].x1,
                                rects[i].y1, rects[i].x2, rects[i].y2, i + 1 < n ? "," : "");
    len += (size_t)snprintf(buf + len, cap - len, "]\n");
    int rc = lip_file_write_atomic(path, buf, len, err);
    lip_free(buf);
    return rc;
}

/* ---- importer -------------------------------------------------------------------------------- */
lip_media_import_opts lip_media_import_opts_default(void)
{
    lip_media_import_opts o = {0};
    o.quality = 90;
    return o;
}

static int rm_entry(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(p);
    return 0;
}

/* rm -rf of the importer's own temporary directory (never follows links). */
static void remove_tree(const char *dir)
{
    if (dir && *dir) nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static int write_file(const char *path, const void *data, size_t len, lip_err *err)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return lip_err_set(err, LIP_EIO, "cannot create %s: %s", path, strerror(errno));
    const uint8_t *p = data;
    size_t left = len;
    while (left) {
        ssize_t w = write(fd, p, left);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            int e = errno;
            close(fd);
            return lip_err_set(err, LIP_EIO, "writing %s: %s", path, strerror(e));
        }
        p += w;
        left -= (size_t)w;
    }
    if (close(fd) != 0) return lip_err_set(err, LIP_EIO, "closing %s: %s", path, strerror(errno));
    return 0;
}

/* Copies the UNet after a cheap sanity check: an ONNX ModelProto starts with field 1
 * (ir_version, varint), i.e. the byte 0x08. Loading it is left to the server, which checks the
 * inputs and outputs against MODEL.md. */
static int copy_unet(const char *src, const char *dst, lip_err *err)
{
    int in = open(src, O_RDONLY | O_CLOEXEC);
    if (in < 0)
        return lip_err_set(err, errno == ENOENT ? LIP_ENOTFOUND : LIP_EIO,
                           "cannot open UNet %s: %s", src, strerror(errno));
    int out = -1, rc = 0;
    size_t total = 0;
    uint8_t *buf = lip_malloc(1u << 20);
    if (!buf) {
        rc = lip_err_set(err, LIP_ENOMEM, "out of memory copying %s", src);
        goto done;
    }
    out = open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (out < 0) {
        rc = lip_err_set(err, LIP_EIO, "cannot create %s: %s", dst, strerror(errno));
        goto done;
    }
    for (;;) {
        ssize_t r = read(in, buf, 1u << 20);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            rc = lip_err_set(err, LIP_EIO, "reading %s: %s", src, strerror(errno));
            goto done;
        }
        if (r == 0) break;
        if (total == 0 && buf[0] != 0x08) {
            rc = lip_err_set(err, LIP_EMODEL,
                             "%s does not look like an ONNX model (first byte "
                             "0x%02x, expected 0x08)",
                             src, buf[0]);
            goto done;
        }
        total += (size_t)r;
        for (ssize_t off = 0; off < r;) {
            ssize_t w = write(out, buf + off, (size_t)(r - off));
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) {
                rc = lip_err_set(err, LIP_EIO, "writing %s: %s", dst, strerror(errno));
                goto done;
            }
            off += w;
        }
    }
    if (total == 0) rc = lip_err_set(err, LIP_EMODEL, "UNet %s is empty", src);
done:
    lip_free(buf);
    close(in);
    if (out >= 0 && close(out) != 0 && !rc)
        rc = lip_err_set(err, LIP_EIO, "closing %s: %s", dst, strerror(errno));
    return rc;
}

/* YAML double-quoted scalar: quotes, backslashes and control bytes escaped. */
static void yaml_quote(char *out, size_t n, const char *s)
{
    size_t o = 0;
    if (n < 3) return;
    out[o++] = '"';
    for (; *s && o + 7 < n; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            out[o++] = '\\';
            out[o++] = (char)c;
        } else if (c < 0x20 || c == 0x7f) {
            o += (size_t)snprintf(out + o, n - o, "\\x%02x", c);
        } else {
            out[o++] = (char)c;
        }
    }
    out[o++] = '"';
    out[o] = 0;
}

static int write_yaml(const char *path, const char *id, int w, int h, int64_t frames,
                      const char *source, lip_err *err)
{
    char src_q[8300], buf[9000];
    yaml_quote(src_q, sizeof src_q, source);
    int len = snprintf(buf, sizeof buf,
                       "# lipsync avatar (DATA.md canonical layout), written by lipsync avatar "
                       "import\n"
                       "format_version: 1\n"
                       "id: %s\n"
                       "fps: %d\n"
                       "width: %d\n"
                       "height: %d\n"
                       "frame_count: %lld\n"
                       "unet: unet.onnx\n"
                       "blend: feather\n"
                       "source: %s\n",
                       id, AVATAR_FPS, w, h, (long long)frames, src_q);
    if (len < 0 || (size_t)len >= sizeof buf)
        return lip_err_set(err, LIP_EINVAL, "avatar.yaml too long (source path?)");
    return lip_file_write_atomic(path, buf, (size_t)len, err);
}

/* The destination may not exist yet, or be an empty directory (rename(2) replaces an empty
 * directory); anything else is refused rather than overwritten. */
static int check_dest(const char *out, lip_err *err)
{
    struct stat st;
    if (lstat(out, &st) != 0) return 0;
    if (!S_ISDIR(st.st_mode))
        return lip_err_set(err, LIP_EINVAL, "%s exists and is not a directory", out);
    DIR *d = opendir(out);
    if (!d) return lip_err_set(err, LIP_EIO, "cannot read %s: %s", out, strerror(errno));
    int entries = 0;
    for (struct dirent *e; (e = readdir(d));)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) entries++;
    closedir(d);
    if (entries)
        return lip_err_set(err, LIP_EPRECOND,
                           "%s already exists and is not empty (remove it or "
                           "choose another --out)",
                           out);
    return 0;
}

int lip_media_import_avatar(const lip_media_import_opts *o, int64_t *frames_out, lip_err *err)
{
    if (frames_out) *frames_out = 0;
    if (!o || !o->video || !o->unet || !o->out || !*o->out)
        return lip_err_set(err, LIP_EINVAL, "avatar import needs a video, a UNet and --out");
    if (!o->rects == !o->landmarks)
        return lip_err_set(err, LIP_EINVAL,
                           "avatar import needs exactly one of crop rects or "
                           "landmarks");
    if (o->quality < 1 || o->quality > 100)
        return lip_err_set(err, LIP_EINVAL, "JPEG quality must be 1..100, got %d", o->quality);

    /* out without trailing slashes; parent and last component. */
    char out[PATH_MAX], parent[PATH_MAX], tmp[PATH_MAX + 64];
    if (lip_strlcpy(out, o->out, sizeof out) >= sizeof out)
        return lip_err_set(err, LIP_EINVAL, "--out path too long");
    size_t ol = strlen(out);
    while (ol > 1 && out[ol - 1] == '/') out[--ol] = 0;
    const char *slash = strrchr(out, '/');
    const char *base = slash ? slash + 1 : out;
    if (slash == out)
        lip_strlcpy(parent, "/", sizeof parent);
    else if (slash)
        snprintf(parent, sizeof parent, "%.*s", (int)(slash - out), out);
    else
        lip_strlcpy(parent, ".", sizeof parent);
    const char *id = o->id ? o->id : base;
    if (!lip_valid_id(id, strlen(id)))
        return lip_err_set(err, LIP_EINVAL,
                           "avatar id '%s' is not 1-64 characters of "
                           "[A-Za-z0-9_.-] (set --id)",
                           id);
    int rc;
    lip_media_rect *rects = NULL;
    size_t n_rects = 0;
    lip_video_reader *rd = NULL;
    lip_buf jpg = {0};        /* encoded frame, reused */
    lip_jpeg_enc *jenc = NULL; /* one encoder for the whole import */
    tmp[0] = 0;
    if ((rc = lip_dir_make(parent, err))) return rc;
    if ((rc = check_dest(out, err))) return rc;
    rc = o->rects ? lip_media_rects_load_json(o->rects, &rects, &n_rects, err)
                  : lip_media_rects_from_landmarks_dir(o->landmarks, &rects, &n_rects, err);
    if (rc) return rc;

    rd = lip_video_reader_open(o->video, err);
    if (!rd) {
        rc = err ? err->code : LIP_EIO;
        goto fail;
    }
    const lip_media_info *info = lip_video_reader_info(rd);
    if (fabs(info->fps - AVATAR_FPS) > 0.01) {
        rc = lip_err_set(err, LIP_EUNSUPPORTED,
                         "%s is %.3f fps; avatars are %d fps (convert the "
                         "video and its rects first)",
                         o->video, info->fps, AVATAR_FPS);
        goto fail;
    }
    int W = info->width, H = info->height;
    /* Rects are checked before any decoding so a bad rects file fails in milliseconds. */
    for (size_t i = 0; i < n_rects; i++)
        if ((rc = lip_media_rect_check(&rects[i], i, W, H, err))) goto fail;
    if (info->frame_count > 0 && (size_t)info->frame_count > n_rects) {
        rc = lip_err_set(err, LIP_EINVAL,
                         "%s has %lld frames (container header) but only %zu "
                         "crop rects",
                         o->video, (long long)info->frame_count, n_rects);
        goto fail;
    }

    if ((size_t)snprintf(tmp, sizeof tmp, "%s/.%s.import-XXXXXX", parent, base) >= sizeof tmp) {
        tmp[0] = 0;
        rc = lip_err_set(err, LIP_EINVAL, "--out path too long");
        goto fail;
    }
    if (!mkdtemp(tmp)) {
        int e = errno;
        tmp[0] = 0;
        rc = lip_err_set(err, e == EACCES || e == EROFS ? LIP_EPERM : LIP_EIO,
                         "cannot create a directory in %s: %s", parent, strerror(e));
        goto fail;
    }
    /* mkdtemp makes the directory 0700; the avatar is read by the server, maybe as another
     * user, so it gets the usual 0755. */
    if (chmod(tmp, 0755) != 0) lip_log_debug("avatar import: chmod %s: %s", tmp, strerror(errno));
    char path[PATH_MAX + 128];
    snprintf(path, sizeof path, "%s/frames", tmp);
    if (mkdir(path, 0755) != 0) {
        rc = lip_err_set(err, LIP_EIO, "cannot create %s: %s", path, strerror(errno));
        goto fail;
    }
    int64_t nf = 0;
    for (;;) {
        uint8_t *bgr;
        int fw, fh;
        rc = lip_video_reader_next_bgr(rd, &bgr, &fw, &fh, err);
        if (rc < 0) goto fail;
        if (rc == 0) break;
        if (fw != W || fh != H) {
            rc = lip_err_set(err, LIP_EFORMAT,
                             "%s: frame %lld is %dx%d, expected %dx%d like the "
                             "stream header",
                             o->video, (long long)nf, fw, fh, W, H);
            goto fail;
        }
        /* Past the last rect the frames are only counted, to report both numbers. */
        if ((size_t)nf < n_rects) {
            lip_image frame = {.data = bgr, .w = fw, .h = fh, .stride = fw * 3};
            lip_jpeg_opts jo = lip_jpeg_opts_default();
            jo.quality = o->quality;
            if (!jenc && !(jenc = lip_jpeg_enc_new())) {
                rc = lip_err_set(err, LIP_ENOMEM, "out of memory (JPEG encoder)");
                goto fail;
            }
            if ((rc = lip_jpeg_enc_encode(jenc, &frame, &jo, &jpg, err))) goto fail;
            snprintf(path, sizeof path, "%s/frames/%06lld.jpg", tmp, (long long)nf);
            if ((rc = write_file(path, jpg.data, jpg.len, err))) goto fail;
        }
        nf++;
        if (o->progress) o->progress(o->progress_ctx, nf, info->frame_count);
    }
    if (nf == 0) {
        rc = lip_err_set(err, LIP_EFORMAT, "%s decodes to no video frames", o->video);
        goto fail;
    }
    if ((size_t)nf > n_rects) {
        rc = lip_err_set(err, LIP_EINVAL, "%s has %lld frames but only %zu crop rects", o->video,
                         (long long)nf, n_rects);
        goto fail;
    }
    if ((size_t)nf < n_rects)
        lip_log_warn("avatar import: %zu crop rects for %lld frames; the last %zu are dropped",
                     n_rects, (long long)nf, n_rects - (size_t)nf);
    snprintf(path, sizeof path, "%s/crop_rects.json", tmp);
    if ((rc = lip_media_rects_save_json(path, rects, (size_t)nf, err))) goto fail;
    snprintf(path, sizeof path, "%s/unet.onnx", tmp);
    if ((rc = copy_unet(o->unet, path, err))) goto fail;
    char src_abs[PATH_MAX];
    const char *source = realpath(o->video, src_abs) ? src_abs : o->video;
    snprintf(path, sizeof path, "%s/avatar.yaml", tmp);
    if ((rc = write_yaml(path, id, W, H, nf, source, err))) goto fail;
    if (rename(tmp, out) != 0) {
        rc = lip_err_set(err, LIP_EIO, "cannot rename %s to %s: %s", tmp, out, strerror(errno));
        goto fail;
    }
    lip_buf_free(&jpg);
    lip_jpeg_enc_free(jenc);
    lip_video_reader_free(rd);
    lip_free(rects);
    if (frames_out) *frames_out = nf;
    return 0;
fail:
    if (!rc) rc = LIP_EINTERNAL;
    lip_buf_free(&jpg);
    lip_jpeg_enc_free(jenc);
    lip_video_reader_free(rd);
    lip_free(rects);
    remove_tree(tmp);
    return rc;
}
