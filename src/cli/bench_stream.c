/* SPDX-License-Identifier: MIT */
/* cli/bench_stream.c: `lipsync bench stream`: latency of lipsync.v1 Stream against a running
 * server. For each case (concurrent streams x latency mode) every stream sends the same speech
 * at the pace of speech (40 ms chunks) with idle frames off, and the server-side latency of each
 * speech frame (StageTimings.total_ms: arrival of the chunk that completed frame i -> departure
 * of frame i) is collected over all streams. One parseable line per case: frames sent, frames
 * dropped to keep real time, p50/p99 latency, time to the first speech frame. */
#include "audio/audio.h"
#include "cli/cli.h"
#include "cli/stream_client.h"
#include "core/core.h"
#include "rpc/rpc.h"

#include <getopt.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_STREAMS 64

static void usage(FILE *f)
{
    fprintf(f,
            "usage: lipsync bench stream --target HOST:PORT [--avatar ID] [--streams 1,4,16]\n"
            "                            [--modes exact,low] [--seconds 4] [--audio FILE.wav]\n\n"
            "Streams speech at real-time pace to lipsync.v1.LipSync/Stream (N at once) and\n"
            "prints, per case, p50/p99 of the server-side latency (arrival of the audio chunk\n"
            "that completes frame i -> departure of frame i), frames sent and dropped.\n"
            "Without --audio a synthetic voiced signal is used.\n");
}

typedef struct one {
    lip_rpc_client *c;
    lip_stream_job j;
    lip_stream_result r;
    int rc;
} one;

static void *run_one(void *arg)
{
    one *o = arg;
    lip_err err = {0};
    o->rc = lip_stream_run(o->c, &o->j, &o->r, &err);
    if (o->rc) fprintf(stderr, "# stream failed: %s\n", err.msg);
    return NULL;
}

/* Copies the next comma-separated item of *p into buf (bounded) and advances *p; false at the
 * end. */
static bool next_item(const char **p, char *buf, size_t n)
{
    if (!**p) return false;
    size_t k = strcspn(*p, ",");
    snprintf(buf, n, "%.*s", (int)LIP_MIN(k, n - 1), *p);
    *p += k;
    if (**p == ',') (*p)++;
    return true;
}

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

static float *synth(double seconds, size_t *n)
{
    *n = (size_t)(seconds * 16000);
    float *x = lip_malloc(*n * sizeof *x);
    if (!x) return NULL;
    double ph = 0;
    uint32_t r = 12345;
    for (size_t i = 0; i < *n; i++) {
        double t = (double)i / 16000.0;
        ph += 2 * 3.141592653589793 * (120 + 30 * sin(2 * 3.14159 * 0.7 * t)) / 16000;
        double v = 0;
        for (int k = 1; k <= 5; k++) v += sin(k * ph) / k;
        double e = sin(2 * 3.14159 * 4 * t), env = 0.5 + 0.5 * e * e;
        r = r * 1664525u + 1013904223u;
        x[i] = (float)(0.3 * v * env + 0.01 * ((double)(r >> 8) / 16777216.0 - 0.5));
    }
    return x;
}

int lip_bench_stream(int argc, char **argv)
{
    if (lip_cli_wants_help(argc, argv)) {
        usage(stdout);
        return 0;
    }
    const char *target = NULL, *avatar = "", *audio = NULL;
    char streams_s[128] = "1,4,16", modes_s[64] = "exact,low";
    long seconds = 4;
    static const struct option lo[] = {
        {"target", required_argument, 0, 'T'}, {"avatar", required_argument, 0, 'a'},
        {"streams", required_argument, 0, 'n'}, {"modes", required_argument, 0, 'm'},
        {"seconds", required_argument, 0, 's'}, {"audio", required_argument, 0, 'w'},
        {0, 0, 0, 0}};
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case 'T': target = optarg; break;
        case 'a': avatar = optarg; break;
        case 'w': audio = optarg; break;
        case 'n': lip_strlcpy(streams_s, optarg, sizeof streams_s); break;
        case 'm': lip_strlcpy(modes_s, optarg, sizeof modes_s); break;
        case 's':
            if (lip_parse_long(optarg, 1, 600, &seconds)) {
                lip_cli_fail("bench stream", "--seconds: expected 1-600, got '%s'", optarg);
                return 2;
            }
            break;
        default: usage(stderr); return 2;
        }
    }
    if (!target) {
        lip_cli_fail("bench stream", "needs --target HOST:PORT of a running `lipsync serve`");
        return 2;
    }
    lip_err err = {0};
    float *pcm = NULL;
    size_t n = 0;
    if (audio ? lip_audio_wav_load(audio, &pcm, &n, &err) != 0 : !(pcm = synth((double)seconds, &n))) {
        lip_cli_fail("bench stream", "%s", audio ? err.msg : "out of memory");
        return 1;
    }
    lip_rpc_client *cl = lip_rpc_client_new(target, 0, &err);
    if (!cl) {
        lip_free(pcm);
        lip_cli_fail("bench stream", "%s", err.msg);
        return 1;
    }
    char mach[256];
    lip_cli_machine(mach, sizeof mach);
    printf("# machine: %s\n# %s, avatar '%s', %.1f s of audio per stream, 40 ms chunks at "
           "real-time pace, idle off, unpaced\n", mach, target, avatar, (double)n / 16000.0);
    printf("%-6s %-7s %8s %8s %8s %9s %9s %10s\n", "case", "streams", "mode", "sent", "dropped",
           "p50_ms", "p99_ms", "first_ms");
    int status = 0;
    const char *sp = streams_s;
    char ns[32];
    while (next_item(&sp, ns, sizeof ns)) {
        long k;
        if (lip_parse_long(ns, 1, MAX_STREAMS, &k)) {
            lip_cli_fail("bench stream", "--streams: '%s' is not 1-%d", ns, MAX_STREAMS);
            status = 2;
            break;
        }
        const char *mp = modes_s;
        char md[32];
        while (next_item(&mp, md, sizeof md)) {
            bool low = strcmp(md, "low") == 0;
            if (!low && strcmp(md, "exact") != 0) {
                lip_cli_fail("bench stream", "--modes: '%s' is not exact or low", md);
                status = 2;
                break;
            }
            one *os = lip_calloc((size_t)k, sizeof *os);
            pthread_t th[MAX_STREAMS];
            int cap = (int)(n / 640) + 64;
            float *all = lip_calloc((size_t)k * (size_t)cap, sizeof(float));
            if (!os || !all) {
                lip_free(os);
                lip_free(all);
                status = 1;
                break;
            }
            for (long i = 0; i < k; i++) {
                os[i].c = cl;
                os[i].j = lip_stream_job_default();
                os[i].j.avatar = avatar;
                os[i].j.pcm = pcm;
                os[i].j.n = n;
                os[i].j.low_latency = low;
                os[i].j.timeout_ms = 600000;
                os[i].r.lat_ms = all + (size_t)i * (size_t)cap;
                os[i].r.lat_cap = cap;
            }
            int started = 0;
            for (long i = 0; i < k; i++)
                if (pthread_create(&th[i], NULL, run_one, &os[i]) == 0) started++;
                else break;
            for (int i = 0; i < started; i++) pthread_join(th[i], NULL);
            /* Gather the latencies of every stream into one sorted list. */
            int m = 0;
            int64_t sent = 0, dropped = 0;
            double first = 0;
            for (long i = 0; i < k; i++) {
                memmove(all + m, os[i].r.lat_ms, (size_t)os[i].r.n_lat * sizeof(float));
                m += os[i].r.n_lat;
                sent += os[i].r.speech_frames;
                dropped += os[i].r.dropped;
                first += os[i].r.first_speech_ms / (double)k;
                if (os[i].rc) status = 1;
            }
            qsort(all, (size_t)m, sizeof(float), cmp_float);
            printf("%-6s %-7ld %8s %8lld %8lld %9.1f %9.1f %10.0f\n", "stream", k, md,
                   (long long)sent, (long long)dropped, m ? all[m / 2] : 0.0,
                   m ? all[(int)(m * 0.99)] : 0.0, first);
            fflush(stdout);
            lip_free(all);
            lip_free(os);
        }
        if (status == 2) break;
    }
    lip_rpc_client_free(cl);
    lip_free(pcm);
    return status;
}
