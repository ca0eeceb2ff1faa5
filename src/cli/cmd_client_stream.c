/* SPDX-License-Identifier: MIT */
/* cli/cmd_client_stream.c: `lipsync client stream`: streams a WAV file to lipsync.v1.LipSync
 * Stream (in chunks at the pace of speech, or as fast as possible with --fast) and writes the
 * returned frames to an MP4 with the audio muxed in. Frame i of the file is stream frame i; a
 * frame the server dropped to keep real time (a gap in the indices) repeats the previous one, so
 * picture and sound stay in sync. Idle frames are off by default so that the file starts with
 * the speech; with --idle the audio is delayed by the idle frames before the first speech frame. */
#include "audio/audio.h"
#include "cli/cli.h"
#include "cli/stream_client.h"
#include "core/core.h"
#include "media/media.h"
#include "rpc/rpc.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(f,
            "usage: lipsync client stream --audio speech.wav --out out.mp4 [options]\n\n"
            "Streams the audio to lipsync.v1.LipSync/Stream and writes the frames (MP4, audio\n"
            "muxed in). Prints frame counts and the server-side latency per frame (arrival of\n"
            "the audio that completed it -> departure).\n\n"
            "  --target HOST:PORT   server address (default 127.0.0.1:50053)\n"
            "  --port N             shorthand for --target 127.0.0.1:N\n"
            "  --avatar ID          avatar (default: the server's default)\n"
            "  --chunk-ms N         audio per message, 1-2000 (default 40)\n"
            "  --fast               send as fast as the server reads (default: real time)\n"
            "  --low-latency        LATENCY_MODE_LOW (look-ahead --lookahead, default 2)\n"
            "  --lookahead N        1-6\n"
            "  --paced              the server releases frames on the 25 fps clock\n"
            "  --idle               keep idle frames (the audio then starts at the first\n"
            "                       speech frame)\n"
            "  --max-lag N          frames a speech frame may be late before it is dropped\n"
            "                       (default: server's 25; -1 never)\n"
            "  --start N            avatar frame shown first\n"
            "  --quality N          JPEG quality 1-100\n"
            "  --timeout MS         deadline of the whole stream (default none)\n"
            "  --tls-ca FILE        use TLS, trusting the CAs in this PEM file\n"
            "  --tls-cert FILE --tls-key FILE   client certificate (mTLS)\n"
            "  --tls-name NAME      name expected in the server certificate\n"
            "  --api-key-file FILE  API key (first line) sent as 'authorization: Bearer';\n"
            "                       or set LIPSYNC_API_KEY\n");
}

typedef struct out_ctx {
    const char *path;
    const float *pcm;
    size_t n;
    bool idle;
    lip_video_writer *w;
    uint8_t *last;
    size_t last_len, last_cap;
    int64_t next;          /* next frame index the file expects */
    int64_t first_speech;  /* -1 until seen */
    int64_t repeated;
    /* with --idle the file starts at frame 0 but the audio at the first speech frame: frames
     * before it are buffered until that index is known */
    uint8_t **pend;
    size_t *pend_len;
    int n_pend, cap_pend;
} out_ctx;

static int keep_last(out_ctx *o, const uint8_t *d, size_t len, lip_err *err)
{
    if (len > o->last_cap) {
        uint8_t *p = lip_realloc(o->last, len);
        if (!p) return lip_err_set(err, LIP_ENOMEM, "out of memory for a %zu-byte frame", len);
        o->last = p;
        o->last_cap = len;
    }
    memcpy(o->last, d, len);
    o->last_len = len;
    return 0;
}

static int open_writer(out_ctx *o, int w, int h, lip_err *err)
{
    /* Audio offset: silence for the idle frames before the first speech frame. */
    size_t lead = o->first_speech > 0 ? (size_t)o->first_speech * 640 : 0;
    float *pcm = lip_calloc(lead + o->n + 1, sizeof *pcm);
    if (!pcm) return lip_err_set(err, LIP_ENOMEM, "out of memory for the audio track");
    memcpy(pcm + lead, o->pcm, o->n * sizeof *pcm);
    o->w = lip_video_writer_open(o->path, w, h, 25, pcm, lead + o->n, NULL, err);
    lip_free(pcm);
    return o->w ? 0 : (err->code ? err->code : LIP_EIO);
}

static int add(out_ctx *o, const uint8_t *d, size_t len, lip_err *err)
{
    int rc = lip_video_writer_add_jpeg(o->w, d, len, err);
    if (!rc) o->next++;
    return rc;
}

static int on_frame(void *ud, int64_t index, bool speech, const uint8_t *data, size_t len,
                    int width, int height, lip_err *err)
{
    out_ctx *o = ud;
    if (speech && o->first_speech < 0) o->first_speech = index;
    if (!o->w && (!o->idle || o->first_speech >= 0)) {
        int rc = open_writer(o, width, height, err);
        if (rc) return rc;
        if (!o->idle) o->next = index; /* the file starts at the first frame received */
        for (int i = 0; i < o->n_pend && !rc; i++) rc = add(o, o->pend[i], o->pend_len[i], err);
        if (rc) return rc;
    }
    if (!o->w) {
        /* Idle frames before any speech: kept until the audio offset is known. */
        if (o->n_pend == o->cap_pend) {
            int cap = o->cap_pend ? o->cap_pend * 2 : 64;
            uint8_t **p = lip_realloc(o->pend, (size_t)cap * sizeof *p);
            size_t *l = p ? lip_realloc(o->pend_len, (size_t)cap * sizeof *l) : NULL;
            if (p) o->pend = p;
            if (!p || !l) return lip_err_set(err, LIP_ENOMEM, "out of memory buffering frames");
            o->pend_len = l;
            o->cap_pend = cap;
        }
        uint8_t *c = lip_malloc(len);
        if (!c) return lip_err_set(err, LIP_ENOMEM, "out of memory buffering a frame");
        memcpy(c, data, len);
        o->pend[o->n_pend] = c;
        o->pend_len[o->n_pend++] = len;
        return keep_last(o, data, len, err);
    }
    /* Frames the server dropped: repeat the last one so later frames keep their time. */
    while (o->next < index && o->last_len) {
        int rc = add(o, o->last, o->last_len, err);
        if (rc) return rc;
        o->repeated++;
    }
    int rc = add(o, data, len, err);
    return rc ? rc : keep_last(o, data, len, err);
}

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

int lip_cli_client_stream(int argc, char **argv)
{
    if (lip_cli_wants_help(argc, argv)) {
        usage(stdout);
        return 0;
    }
    lip_stream_job j = lip_stream_job_default();
    char target[256];
    lip_strlcpy(target, "127.0.0.1:50053", sizeof target);
    const char *audio = NULL, *out = NULL, *key_file = NULL;
    lip_rpc_client_opts co = lip_rpc_client_opts_default();
    static const struct option lo[] = {
        {"target", required_argument, 0, 'T'},  {"port", required_argument, 0, 'P'},
        {"avatar", required_argument, 0, 'a'},  {"audio", required_argument, 0, 'w'},
        {"out", required_argument, 0, 'o'},     {"chunk-ms", required_argument, 0, 'c'},
        {"fast", no_argument, 0, 'f'},          {"low-latency", no_argument, 0, 'l'},
        {"lookahead", required_argument, 0, 'k'}, {"paced", no_argument, 0, 'p'},
        {"idle", no_argument, 0, 'i'},          {"max-lag", required_argument, 0, 'm'},
        {"start", required_argument, 0, 's'},   {"quality", required_argument, 0, 'q'},
        {"timeout", required_argument, 0, 't'}, {"tls-ca", required_argument, 0, 'C'},
        {"tls-cert", required_argument, 0, 'E'}, {"tls-key", required_argument, 0, 'K'},
        {"tls-name", required_argument, 0, 'N'}, {"api-key-file", required_argument, 0, 'A'},
        {0, 0, 0, 0}};
    optind = 1;
    int c;
    long v;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        long lo_ = 0, hi = 0;
        switch (c) {
        case 'T': lip_strlcpy(target, optarg, sizeof target); continue;
        case 'a': j.avatar = optarg; continue;
        case 'w': audio = optarg; continue;
        case 'o': out = optarg; continue;
        case 'f': j.realtime = false; continue;
        case 'l': j.low_latency = true; continue;
        case 'p': j.paced = true; continue;
        case 'i': j.idle = true; continue;
        case 'C': co.tls_ca = optarg; continue;
        case 'E': co.tls_cert = optarg; continue;
        case 'K': co.tls_key = optarg; continue;
        case 'N': co.tls_target_name = optarg; continue;
        case 'A': key_file = optarg; continue;
        case 'P': lo_ = 1, hi = 65535; break;
        case 'c': lo_ = 1, hi = 2000; break;
        case 'k': lo_ = 1, hi = 6; break;
        case 'm': lo_ = -1, hi = 1500; break;
        case 's': lo_ = 0, hi = 1000000; break;
        case 'q': lo_ = 1, hi = 100; break;
        case 't': lo_ = 1, hi = 100000000; break;
        default: usage(stderr); return 2;
        }
        if (lip_parse_long(optarg, lo_, hi, &v)) {
            const char *name = "?";
            for (const struct option *x = lo; x->name; x++)
                if (x->val == c) name = x->name;
            lip_cli_fail("client stream", "bad number '%s' for --%s (expected %ld-%ld)", optarg,
                         name, lo_, hi);
            return 2;
        }
        if (c == 'P') snprintf(target, sizeof target, "127.0.0.1:%ld", v);
        else if (c == 'c') j.chunk_ms = (int)v;
        else if (c == 'k') j.lookahead = (int)v;
        else if (c == 'm') j.max_lag_frames = (int)v;
        else if (c == 's') j.start_frame = (int)v;
        else if (c == 'q') j.quality = (int)v;
        else j.timeout_ms = (double)v;
    }
    if (!audio || !out) {
        lip_cli_fail("client stream", "needs --audio FILE.wav and --out FILE.mp4");
        return 2;
    }
    lip_err err = {0};
    float *pcm = NULL;
    size_t n = 0;
    if (lip_audio_wav_load(audio, &pcm, &n, &err)) {
        lip_cli_fail("client stream", "%s", err.msg);
        return 1;
    }
    char key[1024];
    if (lip_cli_api_key("client stream", key_file, key, sizeof key)) {
        lip_free(pcm);
        return 2;
    }
    co.api_key = key[0] ? key : NULL;
    lip_rpc_client *cl = lip_rpc_client_new_opts(target, &co, &err);
    memset(key, 0, sizeof key);
    if (!cl) {
        lip_free(pcm);
        lip_cli_fail("client stream", "%s", err.msg);
        return 1;
    }
    out_ctx o = {.path = out, .pcm = pcm, .n = n, .idle = j.idle, .first_speech = -1};
    j.pcm = pcm;
    j.n = n;
    j.on_frame = on_frame;
    j.ud = &o;
    lip_stream_result res = {0};
    int cap = (int)(n / 640) + 64;
    res.lat_ms = lip_calloc((size_t)cap, sizeof(float));
    res.lat_cap = res.lat_ms ? cap : 0;
    int rc = lip_stream_run(cl, &j, &res, &err);
    if (!rc && !o.w) rc = lip_err_set(&err, LIP_EINVAL, "the server sent no speech frame");
    if (!rc) rc = lip_video_writer_close(o.w, &err);
    else lip_video_writer_abort(o.w);
    if (rc) {
        lip_cli_fail("client stream", "%s", err.msg);
    } else {
        qsort(res.lat_ms, (size_t)res.n_lat, sizeof(float), cmp_float);
        float p50 = res.n_lat ? res.lat_ms[res.n_lat / 2] : 0;
        float p99 = res.n_lat ? res.lat_ms[(int)(res.n_lat * 0.99)] : 0;
        printf("%s: %lld speech + %lld idle frames (%lld dropped by the server, %lld repeated "
               "in the file), %.1f s of audio in %.1f s; first speech frame after %.0f ms; "
               "server latency p50 %.1f ms p99 %.1f ms\n", out, (long long)res.speech_frames,
               (long long)res.idle_frames, (long long)res.dropped, (long long)o.repeated,
               (double)n / 16000.0, res.wall_ms / 1000.0, res.first_speech_ms, p50, p99);
    }
    for (int i = 0; i < o.n_pend; i++) lip_free(o.pend[i]);
    lip_free(o.pend);
    lip_free(o.pend_len);
    lip_free(o.last);
    lip_free(res.lat_ms);
    lip_free(pcm);
    lip_rpc_client_free(cl);
    return rc ? 1 : 0;
}
