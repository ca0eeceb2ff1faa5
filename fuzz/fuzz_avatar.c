/* SPDX-License-Identifier: MIT */
/* fuzz_avatar: a whole avatar package through lip_avatar_load (without the UNet, which is
 * trusted; docs/SECURITY.md): avatar.yaml, crop_rects.json, aud_ave.npy and up to 8 frames,
 * then a decode of every frame and a read of every rect of what loaded. The input is split on
 * the 4-byte marker "\xffSEP" (fuzz/avatar.dict teaches it to the fuzzer) into
 *   [0] avatar.yaml  [1] crop_rects.json  [2] aud_ave.npy (absent when empty)  [3..] frames
 * and written to a fresh directory under /dev/shm (or TMPDIR), removed after each run. A frame
 * is frames/frame_%04d.png when it starts with the PNG signature, else .jpg. */
#include "avatar/avatar.h"
#include "fuzz.h"

#include <dirent.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_PARTS 11 /* yaml, rects, npy, 8 frames */

static char root_[256];
static bool verbose_;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    lip_log_set_level(LIP_LOG_ERROR);
    verbose_ = getenv("FUZZ_VERBOSE") != NULL;
    const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : getenv("TMPDIR");
    snprintf(root_, sizeof root_, "%s/lipsync-fuzz-avatar-%d", base ? base : "/tmp", getpid());
    return 0;
}

static void put(const char *dir, const char *name, const uint8_t *d, size_t n)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) abort();
    while (n) {
        ssize_t w = write(fd, d, n);
        if (w <= 0) abort();
        d += w;
        n -= (size_t)w;
    }
    close(fd);
}

static void rmtree(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char path[512];
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (e->d_type == DT_DIR) rmtree(path);
        else unlink(path);
    }
    closedir(d);
    rmdir(dir);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *part[MAX_PARTS];
    size_t plen[MAX_PARTS];
    int np = 0;
    const uint8_t *p = data, *end = data + size;
    while (np < MAX_PARTS) {
        const uint8_t *sep = memmem(p, (size_t)(end - p), "\xffSEP", 4);
        part[np] = p;
        plen[np] = sep ? (size_t)(sep - p) : (size_t)(end - p);
        np++;
        if (!sep) break;
        p = sep + 4;
    }
    rmtree(root_);
    char frames[300];
    snprintf(frames, sizeof frames, "%s/frames", root_);
    if (mkdir(root_, 0700) || mkdir(frames, 0700)) abort();
    put(root_, "avatar.yaml", part[0], plen[0]);
    if (np > 1) put(root_, "crop_rects.json", part[1], plen[1]);
    if (np > 2 && plen[2]) put(root_, "aud_ave.npy", part[2], plen[2]);
    for (int i = 3; i < np; i++) {
        char name[32];
        bool png = plen[i] >= 8 && memcmp(part[i], "\x89PNG\r\n\x1a\n", 8) == 0;
        snprintf(name, sizeof name, "frame_%04d.%s", i - 3, png ? "png" : "jpg");
        put(frames, name, part[i], plen[i]);
    }

    lip_avatar_opts o = lip_avatar_opts_default();
    o.load_unet = false;
    o.decode_cache_frames = 2;
    lip_err e = {0};
    lip_avatar *a = lip_avatar_load(root_, "fuzz", NULL, &o, &e);
    /* FUZZ_VERBOSE=1 says what happened to each input (for checking the seeds). */
    if (verbose_) fprintf(stderr, "fuzz_avatar: %s\n", a ? "loaded" : e.msg);
    if (!a) {
        if (e.code >= 0 || !e.msg[0]) {
            fprintf(stderr, "lip_avatar_load: NULL but lip_err has code %d and message '%s'\n",
                    e.code, e.msg);
            abort();
        }
    } else {
        int n = lip_avatar_frame_count(a), w = lip_avatar_width(a), h = lip_avatar_height(a);
        if (n < 1 || w < 1 || h < 1 || (size_t)w * h > 40u * 1000 * 1000) abort();
        uint8_t *bgr = lip_malloc((size_t)w * h * 3);
        if (!bgr) abort();
        for (int i = 0; i < n; i++) {
            const int *r = lip_avatar_rect(a, i);
            /* Rects are validated at load: inside the frame, end-exclusive. */
            if (r[0] < 0 || r[1] < 0 || r[2] > w || r[3] > h || r[0] >= r[2] || r[1] >= r[3])
                abort();
            lip_err_clear(&e);
            int rc = lip_avatar_frame_bgr(a, i, bgr, w * 3, &e);
            fuzz_check_err(rc, &e, "lip_avatar_frame_bgr");
        }
        int rows = 0;
        const float *feat = lip_avatar_audio_features(a, &rows);
        if (feat && rows > 0) {
            volatile float acc = feat[(size_t)rows * 512 - 1];
            (void)acc;
        }
        lip_free(bgr);
        lip_avatar_unref(a);
    }
    rmtree(root_);
    return 0;
}
