/* SPDX-License-Identifier: MIT */
/* cli/bench_pipeline.c: `lipsync bench pipeline`: end-to-end frames/s (PCM audio in, 720p JPEG
 * out) against the raw UNet frames/s on the same model, batch and machine, in the same run, so
 * the pipeline's overhead is a ratio and not a guess; per-stage ms per frame; and composite +
 * JPEG encode per frame on one core. One parseable line per case. */
#include "audio/audio.h"
#include "avatar/avatar.h"
#include "cli/cli.h"
#include "core/core.h"
#include "image/image.h"
#include "pipeline/pipeline.h"

#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(f,
            "usage: lipsync bench pipeline [--model models/unet328.onnx] [--avatar avatars/demo]\n"
            "                              [--encoder models/audio_encoder.onnx] [--batch 8]\n"
            "                              [--frames 48] [--threads N] [--provider cpu]\n\n"
            "Cases (same run, same model and batch):\n"
            "  raw       the UNet alone through ONNX Runtime (baseline)\n"
            "  pipeline  PCM -> features -> pre-process -> UNet -> paste -> JPEG q75, per-stage ms\n"
            "  overhead  pipeline time per frame / raw time per frame - 1\n"
            "  composite paste (feather) + JPEG encode of one 1280x720 frame on one core\n");
}

int lip_bench_pipeline(int argc, char **argv)
{
    if (lip_cli_wants_help(argc, argv)) {
        usage(stdout);
        return 0;
    }
    const char *model = "models/unet328.onnx", *avdir = "avatars/demo";
    const char *encp = "models/audio_encoder.onnx", *provider = "cpu";
    int batch = 8, frames = 48, threads = 0;
    static const struct option lo[] = {{"model", required_argument, 0, 'm'},
                                       {"avatar", required_argument, 0, 'a'},
                                       {"encoder", required_argument, 0, 'e'},
                                       {"batch", required_argument, 0, 'b'},
                                       {"frames", required_argument, 0, 'f'},
                                       {"threads", required_argument, 0, 't'},
                                       {"provider", required_argument, 0, 'p'},
                                       {0, 0, 0, 0}};
    int c;
    long v;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case 'm': model = optarg; break;
        case 'a': avdir = optarg; break;
        case 'e': encp = optarg; break;
        case 'p': provider = optarg; break;
        case 'b':
        case 'f':
        case 't':
            if (lip_cli_bench_long(optarg, c == 't' ? 0 : 1, c == 'b' ? 64 : 100000, &v)) return 2;
            if (c == 'b') batch = (int)v;
            else if (c == 'f') frames = (int)v;
            else threads = (int)v;
            break;
        default: usage(stderr); return 2;
        }
    }
    if (frames < batch) frames = batch;
    frames = frames / batch * batch;
    lip_err err = {0};
    /* Paths in lip_avatar_paths are relative to the avatar directory: make ours absolute. */
    char model_abs[4096];
    if (!realpath(model, model_abs)) {
        lip_cli_fail("bench", "model %s not found", model);
        return 1;
    }
    lip_avatar_paths ap = {.unet = model_abs};
    lip_pipeline_opts po = lip_pipeline_opts_default();
    po.encoder_path = encp;
    po.threads = threads;
    po.chunk_frames = batch;
    lip_avatar *av;
    lip_pipeline *pl;
    if (lip_cli_avatar_pipeline(avdir, "bench", &ap, provider, &po, &av, &pl, &err)) {
        lip_cli_fail("bench", "%s", err.msg);
        return 1;
    }
    char mach[256];
    lip_cli_machine(mach, sizeof mach);
    printf("# bench pipeline: model %s, avatar %s (%dx%d), batch %d, %d frames, provider %s\n# machine: %s\n",
           model, avdir, lip_avatar_width(av), lip_avatar_height(av), batch, frames, provider, mach);
    int rc = 0;

    /* Speech-like PCM covering every request (start frames 8.. so §1.5 context is full). */
    size_t npcm = (size_t)(frames + 40) * 640;
    float *pcm = lip_malloc(npcm * sizeof(float));
    float *vis = lip_aligned_alloc((size_t)batch * LIP_UNET_VISUAL_FLOATS * sizeof(float));
    float *aud = lip_aligned_alloc((size_t)batch * LIP_UNET_AUDIO_FLOATS * sizeof(float));
    float *out = lip_aligned_alloc((size_t)batch * LIP_UNET_OUT_FLOATS * sizeof(float));
    if (!pcm || !vis || !aud || !out) {
        lip_cli_fail("bench", "out of memory");
        rc = 1;
        goto done;
    }
    for (size_t i = 0; i < npcm; i++)
        pcm[i] = 0.3f * sinf((float)i * 0.05f) * (0.5f + 0.5f * sinf((float)i * 0.0007f));

    /* Raw UNet baseline on the same inputs the pipeline feeds it: the first request's
     * pre-processed frames and audio tensors (inputs matter: denormal-heavy activations run at
     * a different speed, so synthetic inputs would not be a fair baseline). */
    lip_engine *unet = lip_avatar_unet(av);
    {
        int W = lip_avatar_width(av), H = lip_avatar_height(av);
        uint8_t *fb = lip_malloc((size_t)W * H * 3), *crop = lip_malloc(LIP_CROP_BYTES);
        lip_resizer *rz = lip_resizer_new();
        if (!fb || !crop || !rz) rc = lip_err_set(&err, LIP_ENOMEM, "out of memory");
        for (int i = 0; i < batch && !rc; i++) {
            int af = lip_avatar_frame_index(av, 8 + i, LIP_ORDER_LOOP);
            lip_image img = {.data = fb, .w = W, .h = H, .stride = W * 3};
            rc = lip_avatar_frame_bgr(av, af, fb, W * 3, &err);
            if (!rc) rc = lip_image_preprocess(rz, &img, lip_avatar_rect(av, af),
                                               vis + (size_t)i * LIP_UNET_VISUAL_FLOATS, crop, &err);
        }
        lip_request ar = {.batch = batch, .start_frame = 8, .pcm = pcm, .n_pcm = (size_t)(batch + 15) * 640};
        if (!rc) rc = lip_pipeline_audio_tensors(pl, &ar, aud, NULL, &err);
        lip_free(fb);
        lip_free(crop);
        lip_resizer_free(rz);
    }
    if (rc || lip_engine_run_unet(unet, vis, aud, batch, out, &err)) {
        lip_cli_fail("bench", "%s", err.msg);
        rc = 1;
        goto done;
    }
    double raw_total = 0;

    /* Pipeline end to end (warm-up request first). */
    lip_request rq = {.batch = batch, .start_frame = 8, .pcm = pcm, .n_pcm = (size_t)(batch + 15) * 640,
                      .format = LIP_OUT_JPEG, .quality = 75};
    lip_result res;
    /* Warm-up: one untimed pass over the same frames, so the timed pass measures the steady
     * state of a server whose avatar frames loop (encoded backgrounds cached, band decodes). */
    for (int f = 0; f < frames; f += batch) {
        rq.start_frame = 8 + f;
        rq.pcm = pcm + (size_t)f * 640;
        if (lip_pipeline_run(pl, av, &rq, &res, &err)) {
            lip_cli_fail("bench", "%s", err.msg);
            rc = 1;
            goto done;
        }
        lip_result_free(&res);
    }
    lip_timings sum = {0};
    size_t bytes = 0;
    double pipe_total = 0;
    /* Raw and pipeline batches alternate, so load changes on the machine hit both alike. */
    for (int f = 0; f < frames; f += batch) {
        double tr = lip_time_ms();
        lip_engine_run_unet(unet, vis, aud, batch, out, NULL);
        raw_total += lip_time_ms() - tr;
        double tp0 = lip_time_ms();
        rq.start_frame = 8 + f;
        rq.pcm = pcm + (size_t)f * 640; /* sample 0 = stream frame s-8 */
        if (lip_pipeline_run(pl, av, &rq, &res, &err)) {
            lip_cli_fail("bench", "%s", err.msg);
            rc = 1;
            goto done;
        }
        sum.audio_ms += res.t.audio_ms;
        sum.prepare_ms += res.t.prepare_ms;
        sum.inference_ms += res.t.inference_ms;
        sum.composite_ms += res.t.composite_ms;
        sum.encode_ms += res.t.encode_ms;
        for (int i = 0; i < res.count; i++) bytes += res.frames[i].len;
        lip_result_free(&res);
        pipe_total += lip_time_ms() - tp0;
    }
    double raw_ms = raw_total / frames, pipe_ms = pipe_total / frames;
    printf("%-10s batch=%d frames=%d ms_per_frame=%.3f fps=%.2f\n", "raw", batch, frames, raw_ms, 1000.0 / raw_ms);
    printf("%-10s batch=%d frames=%d ms_per_frame=%.3f fps=%.2f jpeg_kb=%.1f\n", "pipeline", batch, frames,
           pipe_ms, 1000.0 / pipe_ms, bytes / 1024.0 / frames);
    printf("%-10s audio=%.3f prepare=%.3f unet=%.3f composite=%.3f encode=%.3f (ms per frame, summed over threads)\n",
           "stages", sum.audio_ms / frames, sum.prepare_ms / frames, sum.inference_ms / frames,
           sum.composite_ms / frames, sum.encode_ms / frames);
    printf("%-10s ratio=%.4f overhead_pct=%.2f\n", "overhead", pipe_ms / raw_ms, 100.0 * (pipe_ms / raw_ms - 1.0));
    printf("%-10s cold_load_ms=%.1f frames=%d resident_mb=%.1f (frames, rects, model file, caches)\n",
           "avatar", lip_avatar_load_ms(av), lip_avatar_frame_count(av),
           (double)lip_avatar_memory_bytes(av) / (1024.0 * 1024.0));

    /* Composite + JPEG on one core, 1280x720 (or the avatar's size). */
    {
        int W = lip_avatar_width(av), H = lip_avatar_height(av);
        uint8_t *bg = lip_malloc((size_t)W * H * 3), *fr = lip_malloc((size_t)W * H * 3);
        uint8_t *crop = lip_malloc(LIP_CROP_BYTES);
        lip_resizer *rz = lip_resizer_new();
        lip_jpeg_enc *je = lip_jpeg_enc_new();
        lip_buf jb = {0};
        enum { N = 100 };
        double ts[N], tp[N], tsp[N];
        lip_jpeg_bg *jbg = NULL;
        lip_buf sb = {0};
        if (!bg || !fr || !crop || !rz || !je || lip_avatar_frame_bgr(av, 0, bg, W * 3, &err)) {
            lip_cli_fail("bench", "composite case: %s", err.msg[0] ? err.msg : "out of memory");
            rc = 1;
        }
        lip_image img = {.data = fr, .w = W, .h = H, .stride = W * 3};
        const int *rect = lip_avatar_rect(av, 0);
        lip_jpeg_opts jo = lip_jpeg_opts_default();
        lip_image bgimg = {.data = bg, .w = W, .h = H, .stride = W * 3};
        if (!rc && !(jbg = lip_jpeg_bg_new(je, &bgimg, NULL, &err))) {
            lip_cli_fail("bench", "composite case: %s", err.msg);
            rc = 1;
        }
        lip_jpeg_opts so = jbg ? lip_jpeg_bg_opts(jbg) : jo;
        for (int i = 0; !rc && i < N + 10; i++) {
            memcpy(fr, bg, (size_t)W * H * 3);
            double a = lip_time_ms();
            lip_image_preprocess(rz, &img, rect, vis, crop, NULL);
            double b = lip_time_ms();
            lip_image_paste(rz, &img, rect, out, crop, LIP_PASTE_FEATHER, LIP_FEATHER_DEFAULT, NULL);
            double c = lip_time_ms();
            lip_jpeg_enc_encode(je, &img, &jo, &jb, NULL);
            double e = lip_time_ms();
            lip_jpeg_splice_encode(je, jbg, &img, rect, &so, &sb, NULL, NULL);
            double f = lip_time_ms();
            if (i >= 10) {
                tp[i - 10] = b - a;
                ts[i - 10] = e - b;
                tsp[i - 10] = (c - b) + (f - e);
            }
        }
        if (!rc) {
            qsort(ts, N, sizeof(double), lip_cli_cmp_double);
            qsort(tp, N, sizeof(double), lip_cli_cmp_double);
            qsort(tsp, N, sizeof(double), lip_cli_cmp_double);
            printf("%-10s frame=%dx%d preprocess_ms_p50=%.3f paste_jpeg_ms_p50=%.3f p99=%.3f "
                   "paste_splice_ms_p50=%.3f p99=%.3f jpeg_kb=%.1f spliced_kb=%.1f (one core)\n",
                   "composite", W, H, tp[N / 2], ts[N / 2], ts[N * 99 / 100], tsp[N / 2],
                   tsp[N * 99 / 100], jb.len / 1024.0, sb.len / 1024.0);
        }
        lip_buf_free(&jb);
        lip_buf_free(&sb);
        lip_jpeg_bg_free(jbg);
        lip_jpeg_enc_free(je);
        lip_resizer_free(rz);
        lip_free(bg);
        lip_free(fr);
        lip_free(crop);
    }
done:
    lip_free(pcm);
    lip_free_aligned(vis);
    lip_free_aligned(aud);
    lip_free_aligned(out);
    lip_pipeline_free(pl);
    lip_avatar_unref(av);
    return rc;
}
