/* SPDX-License-Identifier: MIT */
/* tests/test_media.c: the media module on real FFmpeg, libx264 and libjpeg-turbo. Writes a short
 * H.264 + AAC MP4 and checks it by probing, decoding the frames back (PSNR against what was
 * written, frame order) and decoding the audio back (sample-aligned SNR against the sine, which
 * fails if the audio is shifted); reproduces the reference crop rects from the reference
 * landmarks; imports a generated video as an avatar and checks the layout; and feeds the error
 * paths hostile input (missing, corrupt and truncated files, bad rects, unwritable outputs). */
#include "image/image.h"
#include "media/media.h"
#include "test.h"

#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmpdir[256];

/* A path in the test's temporary directory. The result lives in one of 8 rotating buffers:
 * copy it (tcopy) when it must outlive later calls. */
static const char *tpath(const char *name)
{
    static char buf[8][512];
    static int k;
    char *b = buf[k++ & 7];
    snprintf(b, sizeof buf[0], "%s/%s", tmpdir, name);
    return b;
}

static const char *tcopy(char *dst, const char *name)
{
    snprintf(dst, 512, "%s", tpath(name));
    return dst;
}

/* A smooth moving pattern (gradients plus a drifting soft blob): frame i differs from i+1
 * enough that the frame-order check can tell them apart, and smooth enough that 4:2:0 H.264 at
 * CRF 20 keeps it near 40 dB. */
static void pattern(uint8_t *bgr, int w, int h, int i)
{
    double cx = w * (0.2 + 0.6 * ((i % 10) / 10.0)), cy = h * 0.5;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            double d2 = ((x - cx) * (x - cx) + (y - cy) * (y - cy)) / (0.04 * w * w);
            double blob = 120.0 * exp(-d2);
            uint8_t *p = bgr + ((size_t)y * w + x) * 3;
            p[0] = (uint8_t)LIP_MIN(255.0, 40 + 150.0 * x / w + blob * 0.5);
            p[1] = (uint8_t)LIP_MIN(255.0, 30 + 120.0 * y / h + blob);
            p[2] = (uint8_t)LIP_MIN(255.0, 60 + 100.0 * (x + y) / (w + h) + blob * 0.3);
        }
}

static double psnr(const uint8_t *a, const uint8_t *b, size_t n)
{
    double se = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - b[i];
        se += d * d;
    }
    if (se == 0) return 99.0;
    return 10.0 * log10(255.0 * 255.0 / (se / (double)n));
}

static float *sine(size_t n, double hz, double amp)
{
    float *s = malloc(n * sizeof *s);
    for (size_t i = 0; i < n; i++) s[i] = (float)(amp * sin(2 * M_PI * hz * (double)i / 16000.0));
    return s;
}

/* Writes n frames of w x h at fps with n_audio samples of a 440 Hz sine; 0 on success. */
static int write_clip(const char *path, int w, int h, int fps, int n, size_t n_audio)
{
    lip_err err = {0};
    float *pcm = n_audio ? sine(n_audio, 440, 0.5) : NULL;
    lip_video_writer *vw = lip_video_writer_open(path, w, h, fps, pcm, n_audio, NULL, &err);
    free(pcm);
    if (!vw) {
        printf("# open: %s\n", err.msg);
        return -1;
    }
    uint8_t *img = malloc((size_t)w * h * 3);
    for (int i = 0; i < n; i++) {
        pattern(img, w, h, i);
        if (lip_video_writer_add_bgr(vw, img, w * 3, &err)) {
            printf("# add: %s\n", err.msg);
            free(img);
            lip_video_writer_abort(vw);
            return -1;
        }
    }
    free(img);
    int rc = lip_video_writer_close(vw, &err);
    if (rc) printf("# close: %s\n", err.msg);
    return rc;
}

/* True if dir holds an entry whose name contains needle (temporary files left behind). */
static bool dir_has(const char *dir, const char *needle)
{
    DIR *d = opendir(dir);
    if (!d) return false;
    bool found = false;
    for (struct dirent *e; (e = readdir(d));)
        if (strstr(e->d_name, needle)) found = true;
    closedir(d);
    return found;
}

static void t_write_probe_read(void)
{
    const char *mp4 = tpath("clip.mp4");
    /* 50 frames at 25 fps = 2.0 s, and exactly 2.0 s of audio. */
    CHECK_RC(write_clip(mp4, 320, 240, 25, 50, 32000));
    CHECK(!dir_has(tmpdir, ".part-"));
    struct stat st;
    CHECK(stat(mp4, &st) == 0 && (st.st_mode & 0777) == 0644); /* not mkstemp's 0600 */

    lip_media_info mi;
    lip_err err = {0};
    CHECK_RC(lip_media_probe(mp4, &mi, &err));
    CHECK(mi.has_video && mi.width == 320 && mi.height == 240);
    CHECK(mi.frame_count == 50);
    CHECK_NEAR(mi.fps, 25.0, 1e-6);
    CHECK(strcmp(mi.video_codec, "h264") == 0);
    CHECK(mi.has_audio && mi.audio_streams == 1 && mi.audio_rate == 16000);
    CHECK(strcmp(mi.audio_codec, "aac") == 0);
    /* The render contract: frames = audio seconds x 25, +-1. AAC packets are 1024 samples
     * (64 ms), so the audio duration may exceed the PCM by up to one packet. */
    CHECK(fabs(mi.audio_duration_s * 25 - (double)mi.frame_count) <= 1.0 + 1e-9 ||
          (printf("# audio %.4f s\n", mi.audio_duration_s), 0));
    CHECK_NEAR(mi.duration_s, 2.0, 0.07); /* container duration: within one AAC packet */

    lip_video_reader *r = lip_video_reader_open(mp4, &err);
    CHECK(r != NULL);
    if (!r) return;
    const lip_media_info *ri = lip_video_reader_info(r);
    CHECK(ri->frame_count == 50 && ri->has_audio && ri->audio_rate == 16000);
    uint8_t *want = malloc(320 * 240 * 3), *next = malloc(320 * 240 * 3);
    int n = 0, w, h, rc;
    double min_psnr = 99, worst_order_margin = 99;
    uint8_t *got;
    while ((rc = lip_video_reader_next_bgr(r, &got, &w, &h, &err)) == 1) {
        CHECK(w == 320 && h == 240);
        pattern(want, 320, 240, n);
        pattern(next, 320, 240, n + 1);
        double p = psnr(got, want, 320 * 240 * 3);
        double p_next = psnr(got, next, 320 * 240 * 3);
        min_psnr = LIP_MIN(min_psnr, p);
        worst_order_margin = LIP_MIN(worst_order_margin, p - p_next);
        n++;
    }
    CHECK(rc == 0);
    CHECK(n == 50);
    /* CRF 20 on this smooth pattern measures ~44 dB; a wrong colour matrix or range in either
     * direction costs ~10 dB, so 36 dB catches that while leaving codec noise room. */
    CHECK_MSG(min_psnr >= 36.0, "min PSNR %.2f dB", min_psnr);
    /* Frame i must match frame i better than frame i+1 (no dropped or duplicated frames). */
    CHECK_MSG(worst_order_margin >= 6.0, "order margin %.2f dB", worst_order_margin);
    printf("# read back: %d frames, min PSNR %.2f dB, order margin %.2f dB, audio %.4f s\n", n,
           min_psnr, worst_order_margin, mi.audio_duration_s);
    free(want);
    free(next);
    lip_video_reader_free(r);

    /* Audio back through the general loader: same length, same phase. */
    float *pcm = NULL;
    size_t np = 0;
    CHECK_RC(lip_media_load_audio(mp4, &pcm, &np, &err));
    /* The edit list trims the encoder priming; the tail may be padded to the packet end. */
    CHECK_MSG(np >= 32000 - 16 && np <= 32000 + 1024, "decoded %zu samples", np);
    if (pcm && np >= 32000 - 16) {
        float *ref = sine(np, 440, 0.5);
        double sig = 0, noise = 0;
        /* Skip the first and last 1024 samples, where AAC's transient smearing lives. */
        for (size_t i = 1024; i + 1024 < LIP_MIN(np, (size_t)32000); i++) {
            sig += (double)ref[i] * ref[i];
            noise += ((double)pcm[i] - ref[i]) * ((double)pcm[i] - ref[i]);
        }
        double snr = 10 * log10(sig / (noise + 1e-20));
        /* 64 kbit/s AAC on a pure tone measures >30 dB when aligned; one sample of offset at
         * 440 Hz already limits the SNR to ~15 dB, a 1024-sample priming offset to < 3 dB. */
        CHECK_MSG(snr >= 20.0, "audio SNR %.2f dB", snr);
        printf("# audio back: %zu samples, SNR %.2f dB\n", np, snr);
        free(ref);
    }
    lip_free(pcm);
}

static void t_writer_jpeg_and_opts(void)
{
    lip_err err = {0};
    lip_video_opts o = lip_video_opts_default();
    o.audio_rate = 48000; /* exercise real resampling: 16 kHz -> 48 kHz */
    o.faststart = false;
    float *pcm = sine(16000, 440, 0.5);
    lip_video_writer *vw =
        lip_video_writer_open(tpath("jpeg.mp4"), 160, 120, 25, pcm, 16000, &o, &err);
    free(pcm);
    CHECK(vw != NULL);
    if (!vw) return;
    uint8_t *img = malloc(160 * 120 * 3);
    lip_buf jpg = {0};
    for (int i = 0; i < 25; i++) {
        pattern(img, 160, 120, i);
        lip_image im = {.data = img, .w = 160, .h = 120, .stride = 160 * 3};
        CHECK_RC(lip_jpeg_encode(&im, 95, &jpg, &err));
        CHECK_RC(lip_video_writer_add_jpeg(vw, jpg.data, jpg.len, &err));
    }
    /* A JPEG of the wrong size is refused by name and leaves the writer usable. */
    lip_image small = {.data = img, .w = 80, .h = 60, .stride = 160 * 3};
    CHECK_RC(lip_jpeg_encode(&small, 90, &jpg, &err));
    CHECK(lip_video_writer_add_jpeg(vw, jpg.data, jpg.len, &err) == LIP_EINVAL);
    CHECK(strstr(err.msg, "80x60") && strstr(err.msg, "160x120"));
    lip_buf_free(&jpg);
    static const uint8_t junk[64] = {0xff, 0xd8, 0xff, 0xe0, 1, 2, 3};
    CHECK(lip_video_writer_add_jpeg(vw, junk, sizeof junk, &err) == LIP_EFORMAT);
    CHECK(lip_video_writer_frames(vw) == 25);
    CHECK_RC(lip_video_writer_close(vw, &err));
    free(img);
    lip_media_info mi;
    CHECK_RC(lip_media_probe(tpath("jpeg.mp4"), &mi, &err));
    CHECK(mi.frame_count == 25 && mi.audio_rate == 48000);
    CHECK(fabs(mi.audio_duration_s * 25 - 25) <= 1.0);
    float *back = NULL;
    size_t nb = 0;
    CHECK_RC(lip_media_load_audio(tpath("jpeg.mp4"), &back, &nb, &err));
    /* 48 kHz back to 16 kHz: one second again, within one AAC packet (1024/3 input samples). */
    CHECK_MSG(nb >= 16000 - 16 && nb <= 16000 + 400, "decoded %zu samples", nb);
    lip_free(back);
}

static void t_writer_errors(void)
{
    lip_err err = {0};
    uint8_t img[64 * 48 * 3] = {0};
    /* Missing directory: nothing is created. */
    CHECK(lip_video_writer_open("/nonexistent-dir-lipsync/x.mp4", 64, 48, 25, NULL, 0, NULL,
                                &err) == NULL);
    CHECK(err.code == LIP_ENOTFOUND && strstr(err.msg, "/nonexistent-dir-lipsync/x.mp4"));
    /* A directory nobody can create files in (root included): /proc. */
    CHECK(lip_video_writer_open("/proc/lipsync-test.mp4", 64, 48, 25, NULL, 0, NULL, &err) ==
          NULL);
    CHECK(err.code < 0 && access("/proc/lipsync-test.mp4", F_OK) != 0);
    /* A regular file used as a directory. */
    FILE *f = fopen(tpath("plainfile"), "w");
    fclose(f);
    CHECK(lip_video_writer_open(tpath("plainfile/x.mp4"), 64, 48, 25, NULL, 0, NULL, &err) == NULL);
    CHECK(err.code < 0);
    CHECK(!lip_video_writer_open(tmpdir, 64, 48, 25, NULL, 0, NULL, &err) &&
          err.code == LIP_EINVAL && strstr(err.msg, "directory"));
    /* Odd size, bad fps, PCM count without PCM, unknown codec. */
    CHECK(!lip_video_writer_open(tpath("odd.mp4"), 63, 48, 25, NULL, 0, NULL, &err) &&
          err.code == LIP_EINVAL && strstr(err.msg, "63x48"));
    CHECK(!lip_video_writer_open(tpath("fps.mp4"), 64, 48, 0, NULL, 0, NULL, &err) &&
          err.code == LIP_EINVAL);
    CHECK(!lip_video_writer_open(tpath("pcm.mp4"), 64, 48, 25, NULL, 10, NULL, &err) &&
          err.code == LIP_EINVAL);
    lip_video_opts o = lip_video_opts_default();
    o.codec = "no-such-encoder";
    CHECK(!lip_video_writer_open(tpath("codec.mp4"), 64, 48, 25, NULL, 0, &o, &err) &&
          err.code == LIP_EUNSUPPORTED && strstr(err.msg, "no-such-encoder"));
    o = lip_video_opts_default();
    o.audio_rate = 12345;
    float pcm[100] = {0};
    CHECK(!lip_video_writer_open(tpath("rate.mp4"), 64, 48, 25, pcm, 100, &o, &err) &&
          err.code == LIP_EINVAL && strstr(err.msg, "12345"));
    CHECK(!dir_has(tmpdir, ".part-"));

    /* Closing with no frames fails and leaves nothing; abort leaves nothing. */
    lip_video_writer *vw =
        lip_video_writer_open(tpath("empty.mp4"), 64, 48, 25, NULL, 0, NULL, &err);
    CHECK(vw != NULL);
    CHECK(dir_has(tmpdir, "empty.mp4.part-")); /* written under a temporary name meanwhile */
    CHECK(lip_video_writer_close(vw, &err) == LIP_EPRECOND);
    CHECK(access(tpath("empty.mp4"), F_OK) != 0);
    vw = lip_video_writer_open(tpath("aborted.mp4"), 64, 48, 25, NULL, 0, NULL, &err);
    CHECK(vw && lip_video_writer_add_bgr(vw, img, 64 * 3, &err) == 0);
    CHECK(vw && lip_video_writer_add_bgr(vw, img, 10, &err) == LIP_EINVAL); /* short stride */
    lip_video_writer_abort(vw);
    CHECK(access(tpath("aborted.mp4"), F_OK) != 0);
    CHECK(!dir_has(tmpdir, ".part-"));
    lip_video_writer_abort(NULL);
    CHECK(lip_video_writer_close(NULL, &err) == 0);
}

static void t_probe_errors(void)
{
    lip_err err = {0};
    lip_media_info mi;
    CHECK(lip_media_probe(tpath("missing.mp4"), &mi, &err) == LIP_ENOTFOUND);
    CHECK(strstr(err.msg, "missing.mp4") != NULL);
    CHECK(lip_video_reader_open(tpath("missing.mp4"), &err) == NULL && err.code == LIP_ENOTFOUND);
    float *pcm;
    size_t n;
    CHECK(lip_media_load_audio(tpath("missing.mp4"), &pcm, &n, &err) == LIP_ENOTFOUND);
    CHECK(pcm == NULL && n == 0);

    /* Random bytes named .mp4. */
    uint8_t junk[4096];
    uint32_t s = 12345;
    for (size_t i = 0; i < sizeof junk; i++)
        junk[i] = (uint8_t)((s = s * 1103515245 + 12345) >> 16);
    CHECK_RC(lip_file_write_atomic(tpath("junk.mp4"), junk, sizeof junk, &err));
    CHECK(lip_media_probe(tpath("junk.mp4"), &mi, &err) == LIP_EFORMAT);
    CHECK(strstr(err.msg, "junk.mp4") != NULL);
    CHECK(lip_video_reader_open(tpath("junk.mp4"), &err) == NULL && err.code == LIP_EFORMAT);
    CHECK(lip_media_load_audio(tpath("junk.mp4"), &pcm, &n, &err) == LIP_EFORMAT);

    /* A valid MP4 cut in half, and one with its middle overwritten: the reader either reports an
     * error or ends early, never crashes, and never invents frames. */
    uint8_t *data;
    size_t len;
    CHECK_RC(write_clip(tpath("whole.mp4"), 128, 96, 25, 25, 16000));
    CHECK_RC(lip_file_read(tpath("whole.mp4"), 0, &data, &len, &err));
    if (!data) return;
    CHECK_RC(lip_file_write_atomic(tpath("half.mp4"), data, len / 2, &err));
    for (size_t i = len / 3; i < len / 3 + 2000 && i < len; i++) data[i] ^= 0x5a;
    CHECK_RC(lip_file_write_atomic(tpath("mangled.mp4"), data, len, &err));
    lip_free(data);
    const char *bad[] = {"half.mp4", "mangled.mp4"};
    for (int k = 0; k < 2; k++) {
        lip_video_reader *r = lip_video_reader_open(tpath(bad[k]), &err);
        int frames = 0, rc = 0, w, h;
        uint8_t *bgr;
        while (r && (rc = lip_video_reader_next_bgr(r, &bgr, &w, &h, &err)) == 1) frames++;
        CHECK(frames <= 25);
        CHECK(rc <= 0);
        if (rc < 0) CHECK(strlen(err.msg) > 0);
        lip_video_reader_free(r);
        rc = lip_media_probe(tpath(bad[k]), &mi, &err);
        CHECK(rc < 0 || mi.frame_count <= 25);
        pcm = NULL;
        if (lip_media_load_audio(tpath(bad[k]), &pcm, &n, &err) == 0) CHECK(n <= 16000 + 1024);
        lip_free(pcm);
    }
    /* A file with a video stream but no audio. */
    CHECK_RC(write_clip(tpath("silent.mp4"), 64, 48, 25, 5, 0));
    CHECK_RC(lip_media_probe(tpath("silent.mp4"), &mi, &err));
    CHECK(mi.frame_count == 5 && !mi.has_audio && mi.audio_streams == 0);
    CHECK(lip_media_load_audio(tpath("silent.mp4"), &pcm, &n, &err) == LIP_EFORMAT);
    CHECK(strstr(err.msg, "no audio") != NULL);
}

/* 16-bit stereo WAV at 44.1 kHz: left a 1 kHz sine, right the same; mono downmix keeps it. */
static void t_load_audio_wav(void)
{
    const int rate = 44100, frames = 44100; /* 1 s */
    size_t data_len = (size_t)frames * 4;
    uint8_t *wav = calloc(1, 44 + data_len);
    memcpy(wav, "RIFF", 4);
    uint32_t v = (uint32_t)(36 + data_len);
    memcpy(wav + 4, &v, 4);
    memcpy(wav + 8, "WAVEfmt ", 8);
    v = 16;
    memcpy(wav + 16, &v, 4);
    uint16_t fmt = 1, ch = 2, ba = 4, bits = 16;
    memcpy(wav + 20, &fmt, 2);
    memcpy(wav + 22, &ch, 2);
    v = (uint32_t)rate;
    memcpy(wav + 24, &v, 4);
    v = (uint32_t)rate * 4;
    memcpy(wav + 28, &v, 4);
    memcpy(wav + 32, &ba, 2);
    memcpy(wav + 34, &bits, 2);
    memcpy(wav + 36, "data", 4);
    v = (uint32_t)data_len;
    memcpy(wav + 40, &v, 4);
    for (int i = 0; i < frames; i++) {
        int16_t s = (int16_t)lrint(16384 * sin(2 * M_PI * 1000.0 * i / rate));
        memcpy(wav + 44 + (size_t)i * 4, &s, 2);
        memcpy(wav + 44 + (size_t)i * 4 + 2, &s, 2);
    }
    lip_err err = {0};
    CHECK_RC(lip_file_write_atomic(tpath("tone.wav"), wav, 44 + data_len, &err));
    free(wav);
    float *pcm = NULL;
    size_t n = 0;
    CHECK_RC(lip_media_load_audio(tpath("tone.wav"), &pcm, &n, &err));
    /* swr's output count for 1 s is 16000 +- its filter rounding (a couple of samples). */
    CHECK_MSG(n >= 15995 && n <= 16005, "got %zu samples", n);
    if (!pcm) return;
    double ss = 0, err_ss = 0;
    for (size_t i = 200; i + 200 < n; i++) {
        double ref = 0.5 * sin(2 * M_PI * 1000.0 * (double)i / 16000.0);
        ss += (double)pcm[i] * pcm[i];
        err_ss += ((double)pcm[i] - ref) * ((double)pcm[i] - ref);
    }
    double rms = sqrt(ss / (double)(n - 400));
    /* 0.5 amplitude -> RMS 0.3536; a stereo sum without the downmix scaling would be ~0.707. */
    CHECK_NEAR(rms, 0.35355, 0.01);
    /* Same phase as the source (resampler delay compensated): SNR well above 30 dB. */
    CHECK_MSG(10 * log10(ss / (err_ss + 1e-20)) >= 30.0, "SNR %.2f dB",
              10 * log10(ss / (err_ss + 1e-20)));
    lip_free(pcm);
}

static void t_landmarks_reference(void)
{
    const char *lms = test_shared("reference/visual/sanders_landmarks");
    const char *json = test_shared("reference/visual/sanders_crop_rects.json");
    const char *keyed = test_shared("reference/visual/sanders_crop_rectangles_cache.json");
    if (access(json, R_OK) != 0) SKIP("reference data not found (SHARED_DIR)");
    lip_err err = {0};
    lip_media_rect *a = NULL, *b = NULL, *c = NULL;
    size_t na = 0, nb = 0, nc = 0;
    CHECK_RC(lip_media_rects_from_landmarks_dir(lms, &a, &na, &err));
    CHECK_RC(lip_media_rects_load_json(json, &b, &nb, &err));
    CHECK_RC(lip_media_rects_load_json(keyed, &c, &nc, &err));
    CHECK(na == 523 && nb == 523 && nc == 523);
    /* Exact: the rects are integer arithmetic on integer landmarks. */
    if (na == nb && nb == nc && a && b && c) {
        CHECK(memcmp(a, b, na * sizeof *a) == 0);
        CHECK(memcmp(b, c, nb * sizeof *b) == 0);
        CHECK(a[0].x1 == 532 && a[0].y1 == 210 && a[0].x2 == 714 && a[0].y2 == 392);
    }
    /* Round trip through our own writer. */
    CHECK_RC(lip_media_rects_save_json(tpath("rects.json"), a, na, &err));
    lip_media_rect *d = NULL;
    size_t nd = 0;
    CHECK_RC(lip_media_rects_load_json(tpath("rects.json"), &d, &nd, &err));
    CHECK(nd == na && d && memcmp(a, d, na * sizeof *a) == 0);
    lip_free(a);
    lip_free(b);
    lip_free(c);
    lip_free(d);

    /* Bad landmark and rect files name what is wrong. */
    lip_media_rect r;
    CHECK_RC(lip_file_write_atomic(tpath("short.lms"), "1 2\n3 4\n", 8, &err));
    CHECK(lip_media_rect_from_landmarks(tpath("short.lms"), &r, &err) == LIP_EFORMAT);
    CHECK(strstr(err.msg, "2 landmark lines, expected 110") != NULL);
    CHECK_RC(lip_file_write_atomic(tpath("word.lms"), "1 x\n", 4, &err));
    CHECK(lip_media_rect_from_landmarks(tpath("word.lms"), &r, &err) == LIP_EFORMAT);
    CHECK(strstr(err.msg, "line 1") != NULL);
    const char *bad[] = {"[[1,2,3]]",
                         "[[1,2,3,4.5]]",
                         "{\"0\":{\"rect\":[1,2,3,4]},\"2\":[1,2,3,4]}",
                         "[",
                         "[]",
                         "{\"0\":[1,2,3,4],\"0\":[1,2,3,4]}",
                         "\"text\""};
    for (size_t i = 0; i < LIP_ARRAY_LEN(bad); i++) {
        CHECK_RC(lip_file_write_atomic(tpath("bad.json"), bad[i], strlen(bad[i]), &err));
        lip_media_rect *x = NULL;
        size_t nx = 7;
        int rc = lip_media_rects_load_json(tpath("bad.json"), &x, &nx, &err);
        CHECK_MSG(rc == LIP_EFORMAT && x == NULL && nx == 0, "input %s: rc %d", bad[i], rc);
    }
    lip_media_rect e = {10, 10, 10, 20};
    CHECK(lip_media_rect_check(&e, 3, 100, 100, &err) == LIP_EINVAL && strstr(err.msg, "rect 3"));
    lip_media_rect o = {90, 10, 101, 20};
    CHECK(lip_media_rect_check(&o, 4, 100, 100, &err) == LIP_ERANGE && strstr(err.msg, "100x100"));
}

static int write_rects(const char *path, int n, lip_media_rect r)
{
    lip_media_rect *v = calloc((size_t)n, sizeof *v);
    for (int i = 0; i < n; i++) v[i] = r;
    int rc = lip_media_rects_save_json(path, v, (size_t)n, NULL);
    free(v);
    return rc;
}

static void t_import(void)
{
    lip_err err = {0};
    /* 20 frames of 128x96 at 25 fps, no audio (an avatar's audio is not used). */
    CHECK_RC(write_clip(tpath("src.mp4"), 128, 96, 25, 20, 0));
    CHECK_RC(write_rects(tpath("r20.json"), 20, (lip_media_rect){30, 20, 94, 84}));
    /* A stand-in UNet: import copies it and checks only the ONNX leading byte. */
    static const uint8_t onnx[] = {0x08, 0x08, 0x12, 0x04, 't', 'e', 's', 't'};
    CHECK_RC(lip_file_write_atomic(tpath("unet.onnx"), onnx, sizeof onnx, &err));

    char video[512], rects[512], unet[512], out[512];
    lip_media_import_opts o = lip_media_import_opts_default();
    o.video = tcopy(video, "src.mp4");
    o.rects = tcopy(rects, "r20.json");
    o.unet = tcopy(unet, "unet.onnx");
    o.out = tcopy(out, "avatars/av1");
    int64_t nf = 0;
    CHECK_RC(lip_media_import_avatar(&o, &nf, &err));
    if (err.code) printf("# %s\n", err.msg);
    CHECK(nf == 20);
    /* Layout. */
    uint8_t *y = NULL;
    size_t yl = 0;
    CHECK_RC(lip_file_read(tpath("avatars/av1/avatar.yaml"), 0, &y, &yl, &err));
    if (y) {
        const char *keys[] = {"format_version: 1\n", "id: av1\n",        "fps: 25\n",
                              "width: 128\n",        "height: 96\n",     "frame_count: 20\n",
                              "unet: unet.onnx\n",   "blend: feather\n", "source: \"/"};
        for (size_t i = 0; i < LIP_ARRAY_LEN(keys); i++)
            CHECK_MSG(strstr((char *)y, keys[i]) != NULL, "avatar.yaml lacks %s", keys[i]);
        lip_free(y);
    }
    char p[600];
    for (int i = 0; i < 20; i++) {
        snprintf(p, sizeof p, "%s/frames/%06d.jpg", tpath("avatars/av1"), i);
        CHECK_MSG(access(p, R_OK) == 0, "missing %s", p);
    }
    snprintf(p, sizeof p, "%s/frames/%06d.jpg", tpath("avatars/av1"), 20);
    CHECK(access(p, F_OK) != 0);
    uint8_t *u = NULL;
    size_t ul = 0;
    CHECK_RC(lip_file_read(tpath("avatars/av1/unet.onnx"), 0, &u, &ul, &err));
    CHECK(ul == sizeof onnx && u && memcmp(u, onnx, ul) == 0);
    lip_free(u);
    lip_media_rect *rr = NULL;
    size_t nr = 0;
    CHECK_RC(lip_media_rects_load_json(tpath("avatars/av1/crop_rects.json"), &rr, &nr, &err));
    CHECK(nr == 20 && rr && rr[19].x1 == 30 && rr[19].y2 == 84);
    lip_free(rr);
    /* Frame 7 as JPEG vs the pattern that was encoded: H.264 then JPEG q90, two lossy steps on a
     * smooth image: measured ~38 dB; 32 dB would still catch a channel swap or a frame shift. */
    uint8_t *jpg = NULL, *dec = NULL;
    size_t jl = 0;
    int w = 0, h = 0;
    lip_image decoded = {0};
    snprintf(p, sizeof p, "%s/frames/000007.jpg", tpath("avatars/av1"));
    CHECK_RC(lip_file_read(p, 0, &jpg, &jl, &err));
    if (jpg) {
        CHECK_RC(lip_jpeg_decode(jpg, jl, &decoded, &err));
        dec = decoded.data;
        w = decoded.w;
        h = decoded.h;
        CHECK(w == 128 && h == 96);
        uint8_t *want = malloc(128 * 96 * 3);
        pattern(want, 128, 96, 7);
        double ps = dec ? psnr(dec, want, 128 * 96 * 3) : 0;
        CHECK_MSG(ps >= 32.0, "frame 7 PSNR %.2f dB", ps);
        pattern(want, 128, 96, 8);
        CHECK(dec && psnr(dec, want, 128 * 96 * 3) < ps);
        free(want);
    }
    lip_free(jpg);
    lip_image_free(&decoded);
    CHECK(!dir_has(tpath("avatars"), ".import-"));
    struct stat st;
    CHECK(stat(tpath("avatars/av1"), &st) == 0 && (st.st_mode & 0777) == 0755); /* not 0700 */

    /* The destination exists and is not empty. */
    CHECK(lip_media_import_avatar(&o, NULL, &err) == LIP_EPRECOND && strstr(err.msg, "not empty"));

    /* Fewer rects than frames: both numbers in the message, nothing created. */
    CHECK_RC(write_rects(tpath("r15.json"), 15, (lip_media_rect){30, 20, 94, 84}));
    o.rects = tcopy(rects, "r15.json");
    o.out = tcopy(out, "avatars/av2");
    CHECK(lip_media_import_avatar(&o, NULL, &err) == LIP_EINVAL);
    CHECK_MSG(strstr(err.msg, "20 frames") && strstr(err.msg, "15 crop rects"), "%s", err.msg);
    CHECK(access(tpath("avatars/av2"), F_OK) != 0);

    /* A rect outside the 128x96 frame. */
    CHECK_RC(write_rects(tpath("rout.json"), 20, (lip_media_rect){100, 20, 140, 60}));
    o.rects = tcopy(rects, "rout.json");
    CHECK(lip_media_import_avatar(&o, NULL, &err) == LIP_ERANGE);
    CHECK(strstr(err.msg, "rect 0") && strstr(err.msg, "128x96"));
    CHECK(access(tpath("avatars/av2"), F_OK) != 0);

    /* Extra rects are dropped; a bad id is refused; missing and corrupt videos. */
    CHECK_RC(write_rects(tpath("r30.json"), 30, (lip_media_rect){30, 20, 94, 84}));
    o.rects = tcopy(rects, "r30.json");
    o.id = "bad/id";
    CHECK(lip_media_import_avatar(&o, NULL, &err) == LIP_EINVAL && strstr(err.msg, "bad/id"));
    o.id = NULL;
    CHECK_RC(lip_media_import_avatar(&o, &nf, &err));
    CHECK(nf == 20);
    CHECK_RC(lip_media_rects_load_json(tpath("avatars/av2/crop_rects.json"), &rr, &nr, &err));
    CHECK(nr == 20);
    lip_free(rr);
    o.out = tcopy(out, "avatars/av3");
    o.video = tcopy(video, "missing.mp4");
    CHECK(lip_media_import_avatar(&o, NULL, &err) == LIP_ENOTFOUND);
    o.video = tcopy(video, "junk.mp4");
    CHECK(lip_media_import_avatar(&o, NULL, &err) == LIP_EFORMAT);
    /* Not 25 fps. */
    CHECK_RC(write_clip(tpath("fps30.mp4"), 128, 96, 30, 6, 0));
    o.video = tcopy(video, "fps30.mp4");
    CHECK(lip_media_import_avatar(&o, NULL, &err) == LIP_EUNSUPPORTED &&
          strstr(err.msg, "30.000 fps"));
    /* Not an ONNX file. */
    o.video = tcopy(video, "src.mp4");
    o.unet = tcopy(unet, "r20.json");
    CHECK(lip_media_import_avatar(&o, NULL, &err) == LIP_EMODEL);
    CHECK(access(tpath("avatars/av3"), F_OK) != 0);
    CHECK(!dir_has(tpath("avatars"), ".import-"));
}

static void cleanup(const char *dir)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) printf("# could not remove %s\n", dir);
}

/* Fail each of our own allocations in turn (lip_alloc_fail_at; FFmpeg's own allocations are not
 * ours to fail): every call must then succeed or return a clean error with a message, and leak
 * nothing (checked when this runs under ASan). Runs after t_import, reusing its files. */
static void t_alloc_failures(void)
{
    lip_err err = {0};
    float pcm[4000];
    for (int i = 0; i < 4000; i++) pcm[i] = (float)sin(i * 0.1) * 0.3f;
    uint8_t img[64 * 48 * 3];
    pattern(img, 64, 48, 0);
    int failures_seen = 0;
    for (long nth = 1; nth <= 12; nth++) {
        lip_alloc_fail_at(nth);
        err = (lip_err){0};
        int rc = 0;
        lip_video_writer *w =
            lip_video_writer_open(tpath("af.mp4"), 64, 48, 25, pcm, 4000, NULL, &err);
        if (!w) {
            rc = err.code;
        } else {
            for (int i = 0; i < 3 && !rc; i++) rc = lip_video_writer_add_bgr(w, img, 64 * 3, &err);
            if (rc)
                lip_video_writer_abort(w);
            else
                rc = lip_video_writer_close(w, &err);
        }
        lip_alloc_fail_at(0);
        CHECK(rc <= 0);
        if (rc) {
            failures_seen++;
            CHECK_MSG(strlen(err.msg) > 0, "nth %ld: error %d without a message", nth, rc);
            CHECK(access(tpath("af.mp4"), F_OK) != 0);
        }
        unlink(tpath("af.mp4"));
    }
    CHECK(failures_seen > 0); /* the hook reached the writer at least once */
    CHECK(!dir_has(tmpdir, ".part-"));

    char video[512], rects[512], unet[512], out[512];
    lip_media_import_opts o = lip_media_import_opts_default();
    o.video = tcopy(video, "src.mp4");
    o.rects = tcopy(rects, "r20.json");
    o.unet = tcopy(unet, "unet.onnx");
    o.out = tcopy(out, "avatars/af");
    failures_seen = 0;
    for (long nth = 1; nth <= 40; nth++) {
        lip_alloc_fail_at(nth);
        err = (lip_err){0};
        int rc = lip_media_import_avatar(&o, NULL, &err);
        lip_alloc_fail_at(0);
        CHECK(rc <= 0);
        if (rc) {
            failures_seen++;
            CHECK_MSG(strlen(err.msg) > 0, "nth %ld: error %d without a message", nth, rc);
            CHECK(access(out, F_OK) != 0);
        } else {
            cleanup(out);
        }
    }
    CHECK(failures_seen > 0);
    CHECK(!dir_has(tpath("avatars"), ".import-"));
}

int main(void)
{
    lip_log_set_level(LIP_LOG_ERROR);
    snprintf(tmpdir, sizeof tmpdir, "%s/lipsync-media-XXXXXX", test_env("TMPDIR", "/tmp"));
    if (!mkdtemp(tmpdir)) {
        printf("# mkdtemp: %s\n", strerror(errno));
        return 1;
    }
    RUN(t_write_probe_read);
    RUN(t_writer_jpeg_and_opts);
    RUN(t_writer_errors);
    RUN(t_probe_errors);
    RUN(t_load_audio_wav);
    RUN(t_landmarks_reference);
    RUN(t_import);
    RUN(t_alloc_failures);
    cleanup(tmpdir);
    return test_summary();
}
