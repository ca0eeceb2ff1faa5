/* SPDX-License-Identifier: MIT */
/* cli/cmd_render.c: `lipsync render`: an avatar speaking a WAV (or any audio file FFmpeg
 * reads), rendered to an H.264 MP4 with the audio muxed in, or to a JPEG/PNG sequence. The whole
 * utterance's features are computed once (AUDIO.md), then frames go through the pipeline in
 * batches, in ping-pong frame order. Output is written under a temporary name and renamed when
 * complete, so a failed render never leaves something that looks finished. */
#include "audio/audio.h"
#include "avatar/avatar.h"
#include "cli/cli.h"
#include "core/core.h"
#include "media/media.h"
#include "pipeline/pipeline.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static void usage(FILE *f)
{
    fprintf(f,
            "usage: lipsync render --avatar DIR --audio SPEECH.wav --out OUT.mp4|OUTDIR/ [options]\n\n"
            "Renders the avatar in DIR speaking the audio. OUT ending in '/' (or an existing\n"
            "directory) gets a numbered image sequence; anything else gets an H.264 MP4 with\n"
            "the audio muxed in (AAC).\n\n"
            "options:\n"
            "  --encoder PATH     audio encoder ONNX (default models/audio_encoder.onnx)\n"
            "  --format jpeg|png  image format for a sequence (default jpeg)\n"
            "  --quality N        JPEG quality 1-100 (default 75)\n"
            "  --paste exact|feather   paste-back mode (default feather)\n"
            "  --order pingpong|loop   frame order when the audio outlasts the video (default pingpong)\n"
            "  --batch N          frames per pipeline call (default 25, max 64)\n"
            "  --threads N        per-frame worker threads (default: one per CPU)\n"
            "  --provider NAME    ONNX Runtime execution provider: cpu, cuda, tensorrt, auto\n"
            "  --crf N            H.264 quality (default 20)\n"
            "  --full-encode      encode every image whole (no spliced JPEG / pieced PNG)\n"
            "  --quiet            no progress bar\n");
}

static void progress(int done, int total, double t0)
{
    double el = (lip_time_ms() - t0) / 1000.0;
    double fps = el > 0 ? done / el : 0;
    int w = 30, fill = total ? done * w / total : w;
    char bar[64];
    for (int i = 0; i < w; i++) bar[i] = i < fill ? '#' : '.';
    bar[w] = 0;
    fprintf(stderr, "\r  [%s] %d/%d frames  %.1f fps  %.1fs", bar, done, total, fps, el);
    fflush(stderr);
}

int lip_cli_render(int argc, char **argv)
{
    if (lip_cli_wants_help(argc, argv)) {
        usage(stdout);
        return 0;
    }
    const char *avatar_dir = NULL, *audio_path = NULL, *out = NULL;
    const char *enc_path = "models/audio_encoder.onnx", *fmt = "jpeg", *provider = "cpu";
    int quality = 75, batch = 25, threads = 0, crf = 20, order = LIP_ORDER_PINGPONG;
    int paste = LIP_PIPE_PASTE_FEATHER;
    bool quiet = false, full_encode = false;
    static const struct option lo[] = {
        {"avatar", required_argument, 0, 'a'}, {"audio", required_argument, 0, 'i'},
        {"out", required_argument, 0, 'o'},    {"encoder", required_argument, 0, 'e'},
        {"format", required_argument, 0, 'f'}, {"quality", required_argument, 0, 'q'},
        {"paste", required_argument, 0, 'P'},  {"order", required_argument, 0, 'O'},
        {"batch", required_argument, 0, 'b'},  {"threads", required_argument, 0, 't'},
        {"provider", required_argument, 0, 'p'}, {"crf", required_argument, 0, 'c'},
        {"quiet", no_argument, 0, 'Q'},        {"full-encode", no_argument, 0, 'F'},
        {0, 0, 0, 0}};
    int c, k;
    long v;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case 'a': avatar_dir = optarg; break;
        case 'i': audio_path = optarg; break;
        case 'o': out = optarg; break;
        case 'e': enc_path = optarg; break;
        case 'f':
            if (lip_cli_choice("render", "format", optarg, "jpeg", "png") < 0) return 2;
            fmt = optarg;
            break;
        case 'P':
            if ((k = lip_cli_choice("render", "paste", optarg, "exact", "feather")) < 0) return 2;
            paste = k == 0 ? LIP_PIPE_PASTE_EXACT : LIP_PIPE_PASTE_FEATHER;
            break;
        case 'O':
            if ((k = lip_cli_choice("render", "order", optarg, "pingpong", "loop")) < 0) return 2;
            order = k == 1 ? LIP_ORDER_LOOP : LIP_ORDER_PINGPONG;
            break;
        case 'p': provider = optarg; break;
        case 'Q': quiet = true; break;
        case 'F': full_encode = true; break;
        case 'q':
        case 'b':
        case 't':
        case 'c': {
            long lo_ = c == 'q' ? 1 : c == 'b' ? 1 : 0, hi = c == 'q' ? 100 : c == 'b' ? 64 : c == 'c' ? 51 : 256;
            if (lip_parse_long(optarg, lo_, hi, &v)) {
                lip_cli_fail("render", "--%s takes a number in %ld..%ld, not '%s'",
                             c == 'q' ? "quality" : c == 'b' ? "batch" : c == 't' ? "threads" : "crf",
                             lo_, hi, optarg);
                return 2;
            }
            if (c == 'q') quality = (int)v;
            else if (c == 'b') batch = (int)v;
            else if (c == 't') threads = (int)v;
            else crf = (int)v;
            break;
        }
        default: usage(stderr); return 2;
        }
    }
    if (!avatar_dir || !audio_path || !out) {
        lip_cli_fail("render", "--avatar, --audio and --out are required (see --help)");
        return 2;
    }
    bool to_dir = lip_cli_ends_with(out, "/") || lip_dir_exists(out);
    if (!to_dir && !lip_cli_ends_with(out, ".mp4") && !lip_cli_ends_with(out, ".mkv") &&
        !lip_cli_ends_with(out, ".mov")) {
        lip_cli_fail("render", "--out must end in .mp4/.mkv/.mov or '/' for an image sequence: %s", out);
        return 2;
    }

    lip_err err = {0};
    int rc = 1;
    float *pcm = NULL, *rows = NULL;
    size_t n = 0;
    int nrows = 0;
    lip_avatar *av = NULL;
    lip_pipeline *pl = NULL;
    lip_video_writer *vw = NULL;
    char tmpdir[4200] = "", outdir[4000] = "";
    double t0 = lip_time_ms();

    /* Audio: our WAV parser first; other containers through FFmpeg. */
    if (lip_cli_load_audio(audio_path, LIP_CLI_AUDIO_FFMPEG, &pcm, &n, &err)) {
        lip_cli_fail("render", "%s", err.msg);
        return 1;
    }
    lip_pipeline_opts po = lip_pipeline_opts_default();
    po.encoder_path = enc_path;
    po.threads = threads;
    po.paste_mode = paste;
    po.jpeg_quality = quality;
    po.chunk_frames = LIP_MIN(batch, 8);
    po.incremental_jpeg = po.incremental_png = !full_encode;
    const char *base = strrchr(avatar_dir, '/');
    char id[80];
    lip_strlcpy(id, base && base[1] ? base + 1 : avatar_dir, sizeof id);
    if (lip_cli_avatar_pipeline(avatar_dir, id, NULL, provider, &po, &av, &pl, &err)) {
        lip_cli_fail("render", "%s", err.msg);
        goto done;
    }
    if (lip_audio_features(lip_pipeline_encoder(pl), pcm, n, &rows, &nrows, &err)) {
        lip_cli_fail("render", "%s: %s", audio_path, err.msg);
        goto done;
    }
    double t_audio = lip_time_ms() - t0;
    int total = nrows; /* one frame per padded feature row, as the reference inference */
    int W = lip_avatar_width(av), H = lip_avatar_height(av);

    if (to_dir) {
        lip_strlcpy(outdir, out, sizeof outdir);
        size_t l = strlen(outdir);
        while (l > 1 && outdir[l - 1] == '/') outdir[--l] = 0;
        if (snprintf(tmpdir, sizeof tmpdir, "%s.partial-%ld", outdir, (long)getpid()) >= (int)sizeof tmpdir) {
            lip_cli_fail("render", "output path too long: %s", out);
            goto done;
        }
        if (lip_dir_make(tmpdir, &err)) {
            lip_cli_fail("render", "%s", err.msg);
            goto done;
        }
    } else {
        lip_video_opts vo = lip_video_opts_default();
        vo.crf = crf;
        if (!(vw = lip_video_writer_open(out, W, H, 25, pcm, n, &vo, &err))) {
            lip_cli_fail("render", "%s", err.msg);
            goto done;
        }
    }

    lip_timings sum = {0};
    bool bar = !quiet && lip_cli_tty();
    int done_frames = 0;
    for (int start = 0; start < total; start += batch) {
        lip_request rq = {0};
        rq.batch = LIP_MIN(batch, total - start);
        rq.start_frame = start;
        rq.order = order;
        rq.features = rows;
        rq.n_features = nrows;
        rq.format = to_dir ? (strcmp(fmt, "png") == 0 ? LIP_OUT_PNG : LIP_OUT_JPEG) : LIP_OUT_BGR;
        lip_result res;
        if (lip_pipeline_run(pl, av, &rq, &res, &err)) {
            if (bar) fputc('\n', stderr);
            lip_cli_fail("render", "frames %d..%d: %s", start, start + rq.batch - 1, err.msg);
            lip_result_free(&res);
            goto done;
        }
        sum.prepare_ms += res.t.prepare_ms;
        sum.inference_ms += res.t.inference_ms;
        sum.composite_ms += res.t.composite_ms;
        sum.encode_ms += res.t.encode_ms;
        for (int i = 0; i < res.count; i++) {
            int e = 0;
            if (vw) {
                double te = lip_time_ms();
                e = lip_video_writer_add_bgr(vw, res.frames[i].data, W * 3, &err);
                sum.encode_ms += lip_time_ms() - te;
            } else {
                char name[64], path[4300];
                snprintf(name, sizeof name, "%06d.%s", start + i, strcmp(fmt, "png") == 0 ? "png" : "jpg");
                e = lip_path_join(path, sizeof path, tmpdir, name, &err);
                if (!e) e = lip_file_write_atomic(path, res.frames[i].data, res.frames[i].len, &err);
            }
            if (e) {
                if (bar) fputc('\n', stderr);
                lip_cli_fail("render", "frame %d: %s", start + i, err.msg);
                lip_result_free(&res);
                goto done;
            }
        }
        done_frames += res.count;
        lip_result_free(&res);
        if (bar) progress(done_frames, total, t0);
    }
    if (bar) fputc('\n', stderr);
    if (vw) {
        int e = lip_video_writer_close(vw, &err);
        vw = NULL;
        if (e) {
            lip_cli_fail("render", "%s", err.msg);
            goto done;
        }
    } else {
        /* Replace an empty or absent OUTDIR with the finished sequence. */
        if (lip_dir_exists(outdir) && rmdir(outdir) != 0) {
            lip_cli_fail("render", "%s exists and is not empty; the frames are in %s", outdir, tmpdir);
            tmpdir[0] = 0;
            goto done;
        }
        if (rename(tmpdir, outdir) != 0) {
            lip_cli_fail("render", "cannot rename %s to %s: %s", tmpdir, outdir, strerror(errno));
            goto done;
        }
        tmpdir[0] = 0;
    }
    double el = lip_time_ms() - t0;
    fprintf(stderr,
            "rendered %d frames (%.2f s of audio) to %s in %.2f s: %.1f frames/s\n"
            "  per frame: audio %.2f ms, prepare %.2f ms, unet %.2f ms, composite %.2f ms, encode %.2f ms\n",
            total, (double)n / 16000.0, out, el / 1000.0, total * 1000.0 / el, t_audio / total,
            sum.prepare_ms / total, sum.inference_ms / total, sum.composite_ms / total,
            sum.encode_ms / total);
    rc = 0;
done:
    if (vw) lip_video_writer_abort(vw);
    if (tmpdir[0]) {
        /* Remove the partial sequence. */
        char cmdpath[4300];
        for (int i = 0; i < 1000000; i++) {
            char name[64];
            snprintf(name, sizeof name, "%06d.%s", i, strcmp(fmt, "png") == 0 ? "png" : "jpg");
            if (lip_path_join(cmdpath, sizeof cmdpath, tmpdir, name, NULL) || unlink(cmdpath) != 0) break;
        }
        rmdir(tmpdir);
    }
    lip_free(rows);
    lip_free(pcm);
    lip_pipeline_free(pl);
    lip_avatar_unref(av);
    return rc;
}
