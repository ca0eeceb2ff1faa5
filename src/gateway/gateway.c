/* SPDX-License-Identifier: MIT */
/* gateway/gateway.c: HTTP static files and a WebSocket bridge onto lipsync.v1 (gateway.h).
 * libmicrohttpd answers HTTP on one internal polling thread; a request for /ws with a valid
 * RFC 6455 handshake is upgraded (MHD_create_response_for_upgrade) and its socket handed to a
 * session thread that reads WebSocket frames and a pump thread that reads the session's gRPC
 * Stream and writes frames to the socket. The gRPC calls go to the server's own port on
 * loopback, so the browser gets exactly the frames, events, limits and authentication of a
 * native client. Only the session thread writes to the gRPC stream; the pump thread reads it and
 * finishes it; a mutex keeps a write and the finish apart. Socket writes of both threads are
 * serialised by another mutex. */
#include "gateway/gateway.h"

#include "rpc/rpc.h"
#include "audio/audio.h"
#include "lipsync_v1.pb-c.h"

#include <arpa/inet.h>
#include <cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#define STREAM_PATH "/lipsync.v1.LipSync/Stream"
#define LIST_PATH "/lipsync.v1.LipSync/ListAvatars"
#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define HTTP_IDLE_TIMEOUT_S 30
#define HTTP_CONN_MEMORY (64 * 1024)     /* request headers only: bodies are refused */
#define STATIC_MAX_BYTES (8 << 20)       /* largest static file served */
#define POLL_MS 200                      /* how often a waiting session checks for shutdown */
#define SEND_TIMEOUT_S 5                 /* a browser that reads nothing for this long is gone */
#define MSG_RATE 200.0                   /* client messages per second (40 ms audio = 25/s) */
#define MSG_BURST 400.0
#define TTS_TIMEOUT_MS 15000.0           /* espeak-ng is killed after this long */
#define TTS_MAX_WAV (16 << 20)
#define AUDIO_CHUNK 1600                 /* TTS samples per Stream message (100 ms) */
#define MAX_AUDIO_MSG 32000              /* samples per Stream message the server accepts (2 s) */

struct lip_gateway {
    struct MHD_Daemon *d;
    int port, grpc_port, max_conn;
    char host[64];
    char web_root[1024];
    char tts[1024];                      /* "" = no TTS */
    char tls_ca[1024], tls_cert[1024], tls_key[1024], tls_name[256]; /* "" = none */
    atomic_int stopping;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int sessions;                        /* session threads alive */
};

typedef struct sess {
    lip_gateway *g;
    int fd;
    struct MHD_UpgradeResponseHandle *urh;
    pthread_mutex_t send_mu;             /* socket writes (session and pump threads) */
    atomic_int dead;                     /* the socket failed or a close was sent */
    uint8_t rbuf[16384];
    size_t rpos, rlen;
    uint8_t *msg;                        /* reassembled message, up to LIP_GATEWAY_MAX_MESSAGE */
    size_t msg_cap;
    double tokens, tok_t;                /* message rate bucket */
    char api_key[256];
    lip_rpc_client *cli;
    /* the Stream: written by the session thread, read and finished by the pump thread */
    pthread_mutex_t st_mu;
    lip_rpc_stream *st;
    pthread_t pump;
    bool pump_started;
    atomic_int want_cancel, pump_done;
} sess;

/* ---- small helpers -------------------------------------------------------------------------- */
void lip_gateway_ws_accept(const char *key, char out[29])
{
    char buf[128];
    int n = snprintf(buf, sizeof buf, "%s%s", key ? key : "", WS_GUID);
    if (n < 0 || (size_t)n >= sizeof buf) n = (int)strlen(buf);
    unsigned char md[SHA_DIGEST_LENGTH];
    SHA1((const unsigned char *)buf, (size_t)n, md);
    EVP_EncodeBlock((unsigned char *)out, md, SHA_DIGEST_LENGTH); /* 28 chars + NUL */
}

static bool find_exe(const char *name, char *out, size_t n)
{
    const char *path = getenv("PATH");
    if (!path || !*path) path = "/usr/local/bin:/usr/bin:/bin";
    while (*path) {
        size_t k = strcspn(path, ":");
        if (k > 0 && k + strlen(name) + 2 < n) {
            snprintf(out, n, "%.*s/%s", (int)k, path, name);
            if (access(out, X_OK) == 0) return true;
        }
        path += k;
        if (*path == ':') path++;
    }
    out[0] = 0;
    return false;
}

static void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

/* ---- WebSocket output ------------------------------------------------------------------------ */
/* One unfragmented frame of opcode with the concatenation of up to two payload parts.
 * Serialised; 0 or -1 when the socket is gone (the session then ends). */
static int ws_send2(sess *s, int opcode, const void *a, size_t alen, const void *b, size_t blen)
{
    if (atomic_load(&s->dead)) return -1;
    size_t len = alen + blen;
    uint8_t h[10];
    size_t hl;
    h[0] = (uint8_t)(0x80 | opcode);
    if (len < 126) {
        h[1] = (uint8_t)len;
        hl = 2;
    } else if (len < 65536) {
        h[1] = 126;
        h[2] = (uint8_t)(len >> 8);
        h[3] = (uint8_t)len;
        hl = 4;
    } else {
        h[1] = 127;
        for (int i = 0; i < 8; i++) h[2 + i] = (uint8_t)((uint64_t)len >> (56 - 8 * i));
        hl = 10;
    }
    struct iovec iov[3] = {{h, hl}, {(void *)a, alen}, {(void *)b, blen}};
    int niov = 3, first = 0;
    int rc = 0;
    pthread_mutex_lock(&s->send_mu);
    while (first < niov) {
        struct msghdr mh = {.msg_iov = iov + first, .msg_iovlen = (size_t)(niov - first)};
        ssize_t w = sendmsg(s->fd, &mh, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            rc = -1;
            atomic_store(&s->dead, 1);
            break;
        }
        size_t left = (size_t)w;
        while (first < niov && left >= iov[first].iov_len) left -= iov[first++].iov_len;
        if (first < niov) {
            iov[first].iov_base = (uint8_t *)iov[first].iov_base + left;
            iov[first].iov_len -= left;
        }
    }
    pthread_mutex_unlock(&s->send_mu);
    return rc;
}

static int ws_send_json(sess *s, cJSON *j)
{
    char *t = j ? cJSON_PrintUnformatted(j) : NULL;
    int rc = t ? ws_send2(s, 1, t, strlen(t), NULL, 0) : -1;
    free(t);
    cJSON_Delete(j);
    return rc;
}

static void send_error(sess *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void send_error(sess *s, const char *fmt, ...)
{
    char m[LIP_ERRMSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m, sizeof m, fmt, ap);
    va_end(ap);
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "type", "error");
    cJSON_AddStringToObject(j, "message", m);
    ws_send_json(s, j);
}

/* A close frame with a status code and reason; the session ends after it. */
static void ws_close(sess *s, int code, const char *why)
{
    uint8_t p[125];
    size_t n = strlen(why);
    if (n > sizeof p - 2) n = sizeof p - 2;
    p[0] = (uint8_t)(code >> 8);
    p[1] = (uint8_t)code;
    memcpy(p + 2, why, n);
    ws_send2(s, 8, p, n + 2, NULL, 0);
    atomic_store(&s->dead, 1);
}

/* ---- the pump: gRPC Stream -> WebSocket ------------------------------------------------------ */
static const char *event_kind(int k)
{
    switch (k) {
    case LIPSYNC__V1__STREAM_EVENT__KIND__KIND_OPENED: return "opened";
    case LIPSYNC__V1__STREAM_EVENT__KIND__KIND_UTTERANCE_END: return "utterance_end";
    case LIPSYNC__V1__STREAM_EVENT__KIND__KIND_INTERRUPTED: return "interrupted";
    case LIPSYNC__V1__STREAM_EVENT__KIND__KIND_BEHIND: return "behind";
    default: return "unknown";
    }
}

static void send_event(sess *s, const Lipsync__V1__StreamEvent *e)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "type", "event");
    cJSON_AddStringToObject(j, "kind", event_kind(e->kind));
    cJSON_AddStringToObject(j, "message", e->message ? e->message : "");
    cJSON_AddNumberToObject(j, "frame", (double)e->frame);
    cJSON_AddNumberToObject(j, "dropped", (double)e->dropped_frames);
    cJSON_AddNumberToObject(j, "utterance", e->utterance);
    if (e->kind == LIPSYNC__V1__STREAM_EVENT__KIND__KIND_OPENED) {
        cJSON_AddStringToObject(j, "avatar", e->avatar_id ? e->avatar_id : "");
        cJSON_AddNumberToObject(j, "width", e->width);
        cJSON_AddNumberToObject(j, "height", e->height);
        cJSON_AddNumberToObject(j, "frame_count", e->frame_count);
    }
    cJSON_AddNumberToObject(j, "frames", (double)e->frames);
    ws_send_json(s, j);
}

static void *pump_main(void *arg)
{
    sess *s = arg;
    lip_err err = {0};
    uint8_t hdr[LIP_GATEWAY_FRAME_HDR];
    memcpy(hdr, "LSF1", 4);
    bool failed = false;
    while (!atomic_load(&s->want_cancel)) {
        lip_rpc_buf m = {0};
        if (lip_rpc_stream_read(s->st, &m, &err) <= 0) break;
        Lipsync__V1__StreamResponse *p = lipsync__v1__stream_response__unpack(NULL, m.len, m.data);
        lip_free(m.data);
        if (!p) {
            failed = true;
            break;
        }
        int rc = 0;
        if (p->msg_case == LIPSYNC__V1__STREAM_RESPONSE__MSG_FRAME) {
            const Lipsync__V1__Frame *f = p->frame;
            double pts = (double)f->pts_ms;
            float lat = f->timings ? f->timings->total_ms : 0.0f;
            put_u32(hdr + 4, (uint32_t)f->index);
            memcpy(hdr + 8, &pts, 8);       /* x86-64 and aarch64: little-endian already */
            put_u32(hdr + 16, f->speech ? 1u : 0u);
            put_u32(hdr + 20, (uint32_t)f->utterance);
            put_u32(hdr + 24, (uint32_t)f->utterance_frame);
            memcpy(hdr + 28, &lat, 4);
            put_u32(hdr + 32, (uint32_t)f->avatar_frame);
            put_u32(hdr + 36, 0);
            rc = ws_send2(s, 2, hdr, sizeof hdr, f->image.data, f->image.len);
        } else if (p->msg_case == LIPSYNC__V1__STREAM_RESPONSE__MSG_EVENT) {
            send_event(s, p->event);
        }
        lipsync__v1__stream_response__free_unpacked(p, NULL);
        /* A failed send (the browser is gone) does not stop the reading: the session thread
         * may be blocked writing audio the server will only read as it plays frames out, and
         * it cancels the stream (want_cancel) once its write returns. Stopping here would let
         * the server's send queue fill, and both sides would wait for ever. */
        (void)rc;
    }
    lip_rpc_status st = {0};
    pthread_mutex_lock(&s->st_mu);
    lip_rpc_stream_finish(s->st, failed || atomic_load(&s->want_cancel) ||
                                     atomic_load(&s->dead), &st);
    s->st = NULL;
    pthread_mutex_unlock(&s->st_mu);
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "type", "closed");
    cJSON_AddStringToObject(j, "status", failed ? "INTERNAL" : lip_rpc_status_name(st.code));
    cJSON_AddStringToObject(j, "details", failed ? "cannot parse a StreamResponse" : st.details);
    ws_send_json(s, j);
    atomic_store(&s->pump_done, 1);
    return NULL;
}

/* Joins a finished (or, with cancel, any) pump so that a new stream can be opened. */
static void reap_stream(sess *s, bool cancel)
{
    if (!s->pump_started) return;
    if (!cancel && !atomic_load(&s->pump_done)) return;
    if (cancel) {
        /* The pump sees the flag at its next message (idle frames come every 40 ms); the
         * half-close makes the server end a session that sends nothing. */
        atomic_store(&s->want_cancel, 1);
        pthread_mutex_lock(&s->st_mu);
        if (s->st) lip_rpc_stream_close_send(s->st, NULL);
        pthread_mutex_unlock(&s->st_mu);
    }
    pthread_join(s->pump, NULL);
    s->pump_started = false;
    atomic_store(&s->want_cancel, 0);
    atomic_store(&s->pump_done, 0);
}

/* ---- WebSocket -> gRPC ---------------------------------------------------------------------- */
/* A channel to this server's gRPC port on loopback, with the gateway's TLS settings and the
 * session's API key (NULL = none). */
static lip_rpc_client *dial(const lip_gateway *g, const char *api_key, lip_err *err)
{
    char target[64];
    snprintf(target, sizeof target, "127.0.0.1:%d", g->grpc_port);
    lip_rpc_client_opts o = lip_rpc_client_opts_default();
    o.max_msg_bytes = 64 << 20;
    o.api_key = api_key;
    o.tls_ca = g->tls_ca[0] ? g->tls_ca : NULL;
    o.tls_cert = g->tls_cert[0] ? g->tls_cert : NULL;
    o.tls_key = g->tls_key[0] ? g->tls_key : NULL;
    o.tls_target_name = g->tls_name[0] ? g->tls_name : NULL;
    return lip_rpc_client_new_opts(target, &o, err);
}

static int ensure_client(sess *s, lip_err *err)
{
    if (s->cli) return 0;
    s->cli = dial(s->g, s->api_key[0] ? s->api_key : NULL, err);
    return s->cli ? 0 : err->code;
}

/* Writes one StreamRequest while holding st_mu (the pump may be finishing the stream). */
static int stream_write(sess *s, Lipsync__V1__StreamRequest *q, lip_err *err)
{
    lip_rpc_buf b = {0};
    int rc = lip_rpc_pack(&q->base, &b, err);
    if (rc) return rc;
    pthread_mutex_lock(&s->st_mu);
    if (!s->st) rc = lip_err_set(err, LIP_EINVAL, "no stream is open (send {\"type\":\"open\"})");
    else rc = lip_rpc_stream_write(s->st, b.data, b.len, err);
    pthread_mutex_unlock(&s->st_mu);
    lip_free(b.data);
    return rc;
}

static int send_audio(sess *s, const float *pcm, size_t n, lip_err *err)
{
    Lipsync__V1__StreamRequest a = LIPSYNC__V1__STREAM_REQUEST__INIT;
    a.msg_case = LIPSYNC__V1__STREAM_REQUEST__MSG_AUDIO;
    a.audio.data = (uint8_t *)pcm;
    a.audio.len = n * sizeof(float);
    return stream_write(s, &a, err);
}

static int send_end(sess *s, lip_err *err)
{
    Lipsync__V1__EndOfUtterance e = LIPSYNC__V1__END_OF_UTTERANCE__INIT;
    Lipsync__V1__StreamRequest r = LIPSYNC__V1__STREAM_REQUEST__INIT;
    r.msg_case = LIPSYNC__V1__STREAM_REQUEST__MSG_END;
    r.end = &e;
    return stream_write(s, &r, err);
}

static const char *jstr(const cJSON *o, const char *k, const char *def)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) && v->valuestring ? v->valuestring : def;
}

static double jnum(const cJSON *o, const char *k, double def)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : def;
}

static bool jbool(const cJSON *o, const char *k, bool def)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsBool(v) ? cJSON_IsTrue(v) : def;
}

static void take_api_key(sess *s, const cJSON *j)
{
    const char *k = jstr(j, "api_key", NULL);
    if (!k || strlen(k) >= sizeof s->api_key || strcmp(k, s->api_key) == 0) return;
    lip_strlcpy(s->api_key, k, sizeof s->api_key);
    if (!s->pump_started) {      /* a new key needs a new channel; never under a live stream */
        lip_rpc_client_free(s->cli);
        s->cli = NULL;
    }
}

static void do_list(sess *s)
{
    lip_err err = {0};
    if (ensure_client(s, &err)) {
        send_error(s, "list: %s", err.msg);
        return;
    }
    Lipsync__V1__ListAvatarsRequest q = LIPSYNC__V1__LIST_AVATARS_REQUEST__INIT;
    lip_rpc_buf b = {0}, r = {0};
    lip_rpc_status st = {0};
    if (lip_rpc_pack(&q.base, &b, &err) ||
        lip_rpc_client_unary(s->cli, LIST_PATH, b.data, b.len, 10000, &r, &st, &err)) {
        lip_free(b.data);
        send_error(s, "list: %s", err.msg);
        return;
    }
    lip_free(b.data);
    if (st.code != GRPC_STATUS_OK) {
        lip_free(r.data);
        send_error(s, "list: %s: %s", lip_rpc_status_name(st.code), st.details);
        return;
    }
    Lipsync__V1__ListAvatarsResponse *p = lipsync__v1__list_avatars_response__unpack(NULL, r.len,
                                                                                     r.data);
    lip_free(r.data);
    if (!p) {
        send_error(s, "list: cannot parse the ListAvatarsResponse");
        return;
    }
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "type", "avatars");
    cJSON *arr = cJSON_AddArrayToObject(j, "avatars");
    for (size_t i = 0; i < p->n_avatars; i++) {
        const Lipsync__V1__AvatarInfo *a = p->avatars[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "id", a->id ? a->id : "");
        cJSON_AddBoolToObject(o, "loaded", a->loaded);
        cJSON_AddNumberToObject(o, "frame_count", a->frame_count);
        cJSON_AddNumberToObject(o, "width", a->width);
        cJSON_AddNumberToObject(o, "height", a->height);
        cJSON_AddItemToArray(arr, o);
    }
    cJSON_AddStringToObject(j, "default", p->default_avatar ? p->default_avatar : "");
    /* "say" runs here, in the gateway: what counts is whether the gateway found espeak-ng. */
    cJSON_AddBoolToObject(j, "tts", s->g->tts[0] != 0);
    lipsync__v1__list_avatars_response__free_unpacked(p, NULL);
    ws_send_json(s, j);
}

static void do_open(sess *s, const cJSON *j)
{
    lip_err err = {0};
    reap_stream(s, false);
    if (s->pump_started) {
        send_error(s, "open: a stream is already open on this connection");
        return;
    }
    if (ensure_client(s, &err)) {
        send_error(s, "open: %s", err.msg);
        return;
    }
    const char *avatar = jstr(j, "avatar", "");
    const char *lat = jstr(j, "latency", "exact");
    if (strlen(avatar) > 256) {
        send_error(s, "open: avatar id of %zu bytes, expected at most 256", strlen(avatar));
        return;
    }
    if (strcmp(lat, "exact") != 0 && strcmp(lat, "low") != 0) {
        send_error(s, "open: latency '%.32s', expected \"exact\" or \"low\"", lat);
        return;
    }
    /* Range checks stay with the server (it answers INVALID_ARGUMENT); only the C conversion
     * is guarded here. */
    double q = jnum(j, "quality", 0), la = jnum(j, "lookahead", 0), sf = jnum(j, "start_frame", 0);
    double ml = jnum(j, "max_lag_frames", 0);
    if (!(q >= -1e6 && q <= 1e6) || !(la >= -1e6 && la <= 1e6) || !(sf >= -1e9 && sf <= 1e9) ||
        !(ml >= -1e9 && ml <= 1e9)) {
        send_error(s, "open: quality, lookahead, start_frame or max_lag_frames out of range");
        return;
    }
    s->st = lip_rpc_stream_open(s->cli, STREAM_PATH, 0, &err);
    if (!s->st) {
        send_error(s, "open: %s", err.msg);
        return;
    }
    Lipsync__V1__StreamOpen o = LIPSYNC__V1__STREAM_OPEN__INIT;
    o.avatar_id = (char *)avatar;
    o.format = LIPSYNC__V1__IMAGE_FORMAT__IMAGE_FORMAT_JPEG;
    o.quality = (int32_t)q;
    o.start_frame = (int32_t)sf;
    o.latency = strcmp(lat, "low") == 0 ? LIPSYNC__V1__LATENCY_MODE__LATENCY_MODE_LOW
                                        : LIPSYNC__V1__LATENCY_MODE__LATENCY_MODE_EXACT;
    o.lookahead_frames = (int32_t)la;
    o.encoding = LIPSYNC__V1__AUDIO_ENCODING__AUDIO_ENCODING_F32LE;
    o.sample_rate = 16000;
    o.disable_idle = !jbool(j, "idle", true);
    o.paced = jbool(j, "paced", true);
    o.max_lag_frames = (int32_t)ml;
    Lipsync__V1__StreamRequest r = LIPSYNC__V1__STREAM_REQUEST__INIT;
    r.msg_case = LIPSYNC__V1__STREAM_REQUEST__MSG_OPEN;
    r.open = &o;
    if (stream_write(s, &r, &err)) {
        lip_rpc_stream_finish(s->st, true, NULL);
        s->st = NULL;
        send_error(s, "open: %s", err.msg);
        return;
    }
    if (pthread_create(&s->pump, NULL, pump_main, s) != 0) {
        lip_rpc_stream_finish(s->st, true, NULL);
        s->st = NULL;
        send_error(s, "open: cannot start a thread");
        return;
    }
    s->pump_started = true;
}

/* Runs espeak-ng on text (argv, never a shell) into a WAV in a private temporary directory and
 * returns it as 16 kHz samples (lip_free). The text goes through a file, so nothing in it can
 * be read as an option. */
static int tts_run(lip_gateway *g, const char *text, float **pcm, size_t *n, lip_err *err)
{
    char dir[] = "/tmp/lipsync-tts-XXXXXX", txt[64], wav[64];
    if (!mkdtemp(dir)) return lip_err_set(err, LIP_EIO, "tts: mkdtemp: %s", strerror(errno));
    snprintf(txt, sizeof txt, "%s/in.txt", dir);
    snprintf(wav, sizeof wav, "%s/out.wav", dir);
    int rc = 0;
    FILE *f = fopen(txt, "w");
    if (!f || fputs(text, f) < 0) rc = lip_err_set(err, LIP_EIO, "tts: cannot write %s", txt);
    if (f && fclose(f) != 0 && !rc) rc = lip_err_set(err, LIP_EIO, "tts: cannot write %s", txt);
    pid_t pid = 0;
    if (!rc) {
        char *argv[] = {g->tts, "-w", wav, "-f", txt, NULL};
        posix_spawn_file_actions_t fa;
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
        posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
        posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
        int e = posix_spawn(&pid, g->tts, &fa, NULL, argv, environ);
        posix_spawn_file_actions_destroy(&fa);
        if (e) rc = lip_err_set(err, LIP_EIO, "tts: cannot run %s: %s", g->tts, strerror(e));
    }
    if (!rc) {
        double t0 = lip_time_ms();
        int status = 0;
        for (;;) {
            pid_t w = waitpid(pid, &status, WNOHANG);
            if (w == pid) break;
            if (w < 0 && errno != EINTR) {
                rc = lip_err_set(err, LIP_EIO, "tts: waitpid: %s", strerror(errno));
                break;
            }
            if (lip_time_ms() - t0 > TTS_TIMEOUT_MS) {
                kill(pid, SIGKILL);
                waitpid(pid, &status, 0);
                rc = lip_err_set(err, LIP_ETIMEOUT, "tts: espeak-ng took more than %.0f s",
                                 TTS_TIMEOUT_MS / 1000);
                break;
            }
            lip_time_sleep_ms(10);
        }
        if (!rc && (!WIFEXITED(status) || WEXITSTATUS(status) != 0))
            rc = lip_err_set(err, LIP_EIO, "tts: espeak-ng failed (status %d)", status);
    }
    if (!rc) {
        uint8_t *d = NULL;
        size_t len = 0;
        rc = lip_file_read(wav, TTS_MAX_WAV, &d, &len, err);
        if (!rc) rc = lip_audio_wav_parse(d, len, pcm, n, err);
        lip_free(d);
    }
    unlink(txt);
    unlink(wav);
    rmdir(dir);
    return rc;
}

static void do_say(sess *s, const cJSON *j)
{
    lip_err err = {0};
    const char *text = jstr(j, "text", NULL);
    if (!s->g->tts[0]) {
        send_error(s, "say: text-to-speech is not available (espeak-ng not installed)");
        return;
    }
    if (!text || !*text) {
        send_error(s, "say: \"text\" must be a non-empty string");
        return;
    }
    size_t tl = strlen(text);
    if (tl > LIP_GATEWAY_MAX_TEXT) {
        send_error(s, "say: text of %zu bytes, expected at most %d", tl, LIP_GATEWAY_MAX_TEXT);
        return;
    }
    reap_stream(s, false);
    if (!s->pump_started) {
        send_error(s, "say: no stream is open (send {\"type\":\"open\"} first)");
        return;
    }
    float *pcm = NULL;
    size_t n = 0;
    if (tts_run(s->g, text, &pcm, &n, &err)) {
        send_error(s, "%s", err.msg);
        return;
    }
    /* The browser plays this audio in sync with the frames of the utterance it makes. */
    uint8_t hdr[8];
    memcpy(hdr, "LSA1", 4);
    put_u32(hdr + 4, 0);
    ws_send2(s, 2, hdr, sizeof hdr, pcm, n * sizeof(float));
    int rc = 0;
    for (size_t i = 0; !rc && i < n; i += AUDIO_CHUNK)
        rc = send_audio(s, pcm + i, LIP_MIN((size_t)AUDIO_CHUNK, n - i), &err);
    if (!rc) rc = send_end(s, &err);
    lip_free(pcm);
    if (rc) send_error(s, "say: %s", err.msg);
}

static void on_text(sess *s, const uint8_t *d, size_t n)
{
    cJSON *j = cJSON_ParseWithLength((const char *)d, n);
    const char *type = j ? jstr(j, "type", NULL) : NULL;
    lip_err err = {0};
    if (!j || !cJSON_IsObject(j) || !type) {
        send_error(s, "expected a JSON object with a \"type\" (list, open, end, interrupt, say, "
                      "ping), got %zu bytes that are not one", n);
    } else if (strcmp(type, "ping") == 0) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "type", "pong");
        cJSON_AddNumberToObject(o, "t", jnum(j, "t", 0));
        ws_send_json(s, o);
    } else if (strcmp(type, "list") == 0) {
        take_api_key(s, j);
        do_list(s);
    } else if (strcmp(type, "open") == 0) {
        take_api_key(s, j);
        do_open(s, j);
    } else if (strcmp(type, "end") == 0) {
        if (send_end(s, &err)) send_error(s, "end: %s", err.msg);
    } else if (strcmp(type, "interrupt") == 0) {
        Lipsync__V1__Interrupt i = LIPSYNC__V1__INTERRUPT__INIT;
        Lipsync__V1__StreamRequest r = LIPSYNC__V1__STREAM_REQUEST__INIT;
        r.msg_case = LIPSYNC__V1__STREAM_REQUEST__MSG_INTERRUPT;
        r.interrupt = &i;
        if (stream_write(s, &r, &err)) send_error(s, "interrupt: %s", err.msg);
    } else if (strcmp(type, "say") == 0) {
        do_say(s, j);
    } else if (strcmp(type, "close") == 0) {
        reap_stream(s, true);
    } else {
        send_error(s, "unknown message type '%.32s' (expected list, open, end, interrupt, say, "
                      "close, ping)", type);
    }
    cJSON_Delete(j);
}

static void on_binary(sess *s, const uint8_t *d, size_t n)
{
    lip_err err = {0};
    if (n == 0 || n % 4) {
        send_error(s, "audio: %zu bytes, expected a non-zero multiple of 4 (float32 16 kHz)", n);
        return;
    }
    /* The samples go on as they are (the server checks that every one is finite), in pieces
     * of at most the 2 s the server takes per message, so a browser may send up to 1 MiB. */
    const float *pcm = (const float *)(const void *)d;
    size_t ns = n / 4;
    for (size_t i = 0; i < ns; i += MAX_AUDIO_MSG) {
        if (send_audio(s, pcm + i, LIP_MIN((size_t)MAX_AUDIO_MSG, ns - i), &err)) {
            send_error(s, "audio: %s", err.msg);
            return;
        }
    }
}

/* ---- WebSocket input ------------------------------------------------------------------------- */
/* Exactly n bytes from the socket (buffered). -1 when the peer closed, the socket failed or the
 * gateway is stopping. While waiting, a finished pump is reaped. */
static int read_exact(sess *s, uint8_t *dst, size_t n)
{
    while (n > 0) {
        if (s->rpos < s->rlen) {
            size_t k = LIP_MIN(n, s->rlen - s->rpos);
            memcpy(dst, s->rbuf + s->rpos, k);
            s->rpos += k;
            dst += k;
            n -= k;
            continue;
        }
        if (atomic_load(&s->g->stopping) || atomic_load(&s->dead)) return -1;
        struct pollfd p = {.fd = s->fd, .events = POLLIN};
        int r = poll(&p, 1, POLL_MS);
        if (r < 0 && errno != EINTR) return -1;
        if (r <= 0) {
            reap_stream(s, false);
            continue;
        }
        ssize_t got = recv(s->fd, s->rbuf, sizeof s->rbuf, 0);
        if (got < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (got <= 0) return -1;
        s->rpos = 0;
        s->rlen = (size_t)got;
    }
    return 0;
}

/* Token bucket over client messages: false (and a close) when a client floods. */
static bool rate_ok(sess *s)
{
    double now = lip_time_ms();
    s->tokens = LIP_MIN(MSG_BURST, s->tokens + (now - s->tok_t) * MSG_RATE / 1000.0);
    s->tok_t = now;
    if (s->tokens < 1) return false;
    s->tokens -= 1;
    return true;
}

static void session_loop(sess *s)
{
    size_t mlen = 0;
    int mop = -1; /* opcode of the message being reassembled; -1 none */
    for (;;) {
        uint8_t h[14];
        if (read_exact(s, h, 2)) return;
        bool fin = h[0] & 0x80;
        int op = h[0] & 0x0f;
        bool masked = h[1] & 0x80;
        uint64_t len = h[1] & 0x7f;
        if (h[0] & 0x70) return ws_close(s, 1002, "reserved bits set (no extension agreed)");
        if (!masked) return ws_close(s, 1002, "client frames must be masked (RFC 6455 5.1)");
        if (len == 126) {
            if (read_exact(s, h, 2)) return;
            len = (uint64_t)h[0] << 8 | h[1];
        } else if (len == 127) {
            if (read_exact(s, h, 8)) return;
            len = 0;
            for (int i = 0; i < 8; i++) len = len << 8 | h[i];
        }
        uint8_t mask[4];
        if (read_exact(s, mask, 4)) return;
        bool control = op & 0x8;
        if (control && (len > 125 || !fin))
            return ws_close(s, 1002, "control frame longer than 125 bytes or fragmented");
        if (!control && (uint64_t)mlen + len > LIP_GATEWAY_MAX_MESSAGE)
            return ws_close(s, 1009, "message larger than 1 MiB");
        if (!rate_ok(s)) return ws_close(s, 1008, "more than 200 messages per second");
        if (control) {
            uint8_t p[125];
            if (read_exact(s, p, (size_t)len)) return;
            for (size_t i = 0; i < len; i++) p[i] ^= mask[i & 3];
            if (op == 8) { /* close: echo the code, then end */
                ws_send2(s, 8, p, len >= 2 ? 2 : 0, NULL, 0);
                atomic_store(&s->dead, 1);
                return;
            }
            if (op == 9) ws_send2(s, 10, p, (size_t)len, NULL, 0);
            else if (op != 10) return ws_close(s, 1002, "unknown control opcode");
            continue;
        }
        if (op == 0 && mop < 0) return ws_close(s, 1002, "continuation without a message");
        if (op != 0 && mop >= 0) return ws_close(s, 1002, "new message inside a fragmented one");
        if (op != 0 && op != 1 && op != 2) return ws_close(s, 1002, "unknown data opcode");
        if (op != 0) mop = op;
        if (mlen + len > s->msg_cap) {
            size_t cap = LIP_MAX((size_t)(mlen + len), s->msg_cap * 2);
            cap = LIP_MIN(cap, (size_t)LIP_GATEWAY_MAX_MESSAGE);
            uint8_t *nb = lip_realloc(s->msg, cap);
            if (!nb) return ws_close(s, 1011, "out of memory");
            s->msg = nb;
            s->msg_cap = cap;
        }
        if (read_exact(s, s->msg + mlen, (size_t)len)) return;
        for (size_t i = 0; i < len; i++) s->msg[mlen + i] ^= mask[i & 3];
        mlen += (size_t)len;
        if (!fin) continue;
        if (mop == 1) on_text(s, s->msg, mlen);
        else on_binary(s, s->msg, mlen);
        mlen = 0;
        mop = -1;
    }
}

static void *session_main(void *arg)
{
    sess *s = arg;
    session_loop(s);
    reap_stream(s, true);
    lip_rpc_client_free(s->cli);
    MHD_upgrade_action(s->urh, MHD_UPGRADE_ACTION_CLOSE); /* closes the socket */
    lip_gateway *g = s->g;
    pthread_mutex_destroy(&s->send_mu);
    pthread_mutex_destroy(&s->st_mu);
    lip_free(s->msg);
    lip_free(s);
    pthread_mutex_lock(&g->mu);
    g->sessions--;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
    return NULL;
}

static void on_upgrade(void *cls, struct MHD_Connection *c, void *con_cls, const char *extra,
                       size_t extra_len, MHD_socket sock, struct MHD_UpgradeResponseHandle *urh)
{
    (void)c;
    (void)con_cls;
    lip_gateway *g = cls;
    sess *s = lip_calloc(1, sizeof *s);
    /* Counted under the lock that lip_gateway_stop sets `stopping` under, so no session
     * starts after stop has begun waiting for the count to reach zero. */
    pthread_mutex_lock(&g->mu);
    bool stopping = atomic_load(&g->stopping);
    if (s && !stopping && extra_len <= sizeof s->rbuf) g->sessions++;
    pthread_mutex_unlock(&g->mu);
    if (!s || stopping || extra_len > sizeof s->rbuf) {
        lip_free(s);
        MHD_upgrade_action(urh, MHD_UPGRADE_ACTION_CLOSE);
        return;
    }
    s->g = g;
    s->fd = sock;
    s->urh = urh;
    s->tokens = MSG_BURST;
    s->tok_t = lip_time_ms();
    memcpy(s->rbuf, extra, extra_len); /* bytes the client sent right after the handshake */
    s->rlen = extra_len;
    pthread_mutex_init(&s->send_mu, NULL);
    pthread_mutex_init(&s->st_mu, NULL);
    int fl = fcntl(sock, F_GETFL);
    if (fl >= 0) fcntl(sock, F_SETFL, fl & ~O_NONBLOCK);
    struct timeval tv = {.tv_sec = SEND_TIMEOUT_S};
    setsockopt(sock, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    pthread_t th;
    pthread_attr_t at;
    pthread_attr_init(&at);
    pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&th, &at, session_main, s) != 0) {
        pthread_mutex_lock(&g->mu);
        g->sessions--;
        pthread_mutex_unlock(&g->mu);
        pthread_mutex_destroy(&s->send_mu);
        pthread_mutex_destroy(&s->st_mu);
        lip_free(s);
        MHD_upgrade_action(urh, MHD_UPGRADE_ACTION_CLOSE);
    }
    pthread_attr_destroy(&at);
}

/* ---- HTTP ------------------------------------------------------------------------------------ */
static enum MHD_Result reply(struct MHD_Connection *c, unsigned status, const char *ctype,
                             void *body, size_t len, bool owned)
{
    struct MHD_Response *r =
        owned ? MHD_create_response_from_buffer_with_free_callback(len, body, lip_free)
              : MHD_create_response_from_buffer(len, body, MHD_RESPMEM_PERSISTENT);
    if (!r) {
        if (owned) lip_free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(r, "Content-Security-Policy",
                            "default-src 'self'; img-src 'self' blob: data:; "
                            "connect-src 'self' ws: wss:; media-src 'self' blob:");
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result text_reply(struct MHD_Connection *c, unsigned status, const char *msg)
{
    return reply(c, status, "text/plain; charset=utf-8", (void *)msg, strlen(msg), false);
}

static bool header_has(struct MHD_Connection *c, const char *name, const char *token)
{
    const char *v = MHD_lookup_connection_value(c, MHD_HEADER_KIND, name);
    return v && strcasestr(v, token) != NULL;
}

static enum MHD_Result handle_ws(lip_gateway *g, struct MHD_Connection *c)
{
    const char *key = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Sec-WebSocket-Key");
    const char *ver = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Sec-WebSocket-Version");
    if (!header_has(c, "Upgrade", "websocket") || !header_has(c, "Connection", "upgrade"))
        return text_reply(c, MHD_HTTP_BAD_REQUEST, "/ws expects a WebSocket upgrade\n");
    if (!ver || strcmp(ver, "13") != 0)
        return text_reply(c, 426, "WebSocket version 13 is the only one supported\n");
    if (!key || strlen(key) != 24)
        return text_reply(c, MHD_HTTP_BAD_REQUEST,
                          "Sec-WebSocket-Key must be 24 base64 characters\n");
    pthread_mutex_lock(&g->mu);
    int n = g->sessions;
    pthread_mutex_unlock(&g->mu);
    if (n >= g->max_conn)
        return text_reply(c, MHD_HTTP_SERVICE_UNAVAILABLE, "too many WebSocket sessions\n");
    char acc[29];
    lip_gateway_ws_accept(key, acc);
    struct MHD_Response *r = MHD_create_response_for_upgrade(on_upgrade, g);
    if (!r) return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_UPGRADE, "websocket");
    MHD_add_response_header(r, "Sec-WebSocket-Accept", acc);
    enum MHD_Result ret = MHD_queue_response(c, MHD_HTTP_SWITCHING_PROTOCOLS, r);
    MHD_destroy_response(r);
    return ret;
}

static const char *content_type(const char *path)
{
    static const struct {
        const char *ext, *type;
    } t[] = {{".html", "text/html; charset=utf-8"}, {".js", "text/javascript; charset=utf-8"},
             {".css", "text/css; charset=utf-8"},   {".png", "image/png"},
             {".jpg", "image/jpeg"},                {".svg", "image/svg+xml"},
             {".json", "application/json"},         {".wav", "audio/wav"},
             {".ico", "image/x-icon"}};
    const char *dot = strrchr(path, '.');
    for (size_t i = 0; dot && i < LIP_ARRAY_LEN(t); i++)
        if (strcmp(dot, t[i].ext) == 0) return t[i].type;
    return "application/octet-stream";
}

/* Static files: only names of [A-Za-z0-9._-] segments, none starting with '.', so nothing
 * outside web_root (and no hidden file) can be named. */
static enum MHD_Result handle_static(lip_gateway *g, struct MHD_Connection *c, const char *url)
{
    if (!g->web_root[0]) return text_reply(c, MHD_HTTP_NOT_FOUND, "no web root configured\n");
    if (strcmp(url, "/") == 0) url = "/index.html";
    size_t n = strlen(url);
    bool ok = n >= 2 && n < 256 && url[0] == '/';
    for (size_t i = 0; ok && i < n; i++) {
        char ch = url[i];
        bool seg_start = url[i - (i > 0)] == '/' && i > 0;
        ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
             ch == '-' || ch == '_' || (ch == '.' && !seg_start) || (ch == '/' && i + 1 < n &&
                                                                    url[i + 1] != '/');
    }
    if (!ok) return text_reply(c, MHD_HTTP_NOT_FOUND, "not found\n");
    char path[1400];
    snprintf(path, sizeof path, "%s%s", g->web_root, url);
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
        return text_reply(c, MHD_HTTP_NOT_FOUND, "not found\n");
    uint8_t *d = NULL;
    size_t len = 0;
    lip_err err = {0};
    if (lip_file_read(path, STATIC_MAX_BYTES, &d, &len, &err))
        return text_reply(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "cannot read the file\n");
    return reply(c, MHD_HTTP_OK, content_type(path), d, len, true);
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url,
                              const char *method, const char *version, const char *upload,
                              size_t *upload_size, void **con_cls)
{
    (void)version;
    (void)upload;
    (void)upload_size;
    (void)con_cls;
    lip_gateway *g = cls;
    if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
        return text_reply(c, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed\n");
    if (strcmp(url, "/ws") == 0) return handle_ws(g, c);
    if (strcmp(url, "/healthz") == 0) return text_reply(c, MHD_HTTP_OK, "ok\n");
    return handle_static(g, c, url);
}

/* ---- lifecycle -------------------------------------------------------------------------------- */
lip_gateway_opts lip_gateway_opts_default(void)
{
    return (lip_gateway_opts){.host = "0.0.0.0", .max_connections = 32};
}

lip_gateway *lip_gateway_start(const lip_gateway_opts *o, lip_err *err)
{
    if (!o || o->port < 0 || o->port > 65535 || o->grpc_port <= 0 || o->grpc_port > 65535) {
        lip_err_set(err, LIP_EINVAL, "gateway: port %d and grpc port %d, expected 0..65535 and "
                    "1..65535", o ? o->port : -1, o ? o->grpc_port : -1);
        return NULL;
    }
    const char *host = o->host && *o->host ? o->host : "0.0.0.0";
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO | MHD_ALLOW_UPGRADE;
    struct sockaddr_in *in4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons((uint16_t)o->port);
    } else if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)o->port);
        flags |= MHD_USE_IPv6;
    } else {
        lip_err_set(err, LIP_EINVAL, "gateway: host '%s' is not a numeric IPv4 or IPv6 address",
                    host);
        return NULL;
    }
    lip_gateway *g = lip_calloc(1, sizeof *g);
    if (!g) {
        lip_err_set(err, LIP_ENOMEM, "gateway: no memory");
        return NULL;
    }
    g->grpc_port = o->grpc_port;
    g->max_conn = o->max_connections > 0 ? o->max_connections : 32;
    lip_strlcpy(g->host, host, sizeof g->host);
    struct { char *dst; size_t n; const char *src, *what; } tls[] = {
        {g->tls_ca, sizeof g->tls_ca, o->tls_ca, "TLS CA path"},
        {g->tls_cert, sizeof g->tls_cert, o->tls_cert, "TLS certificate path"},
        {g->tls_key, sizeof g->tls_key, o->tls_key, "TLS key path"},
        {g->tls_name, sizeof g->tls_name, o->tls_target_name, "TLS target name"}};
    for (size_t i = 0; i < LIP_ARRAY_LEN(tls); i++) {
        if (tls[i].src && strlen(tls[i].src) >= tls[i].n) {
            lip_free(g);
            lip_err_set(err, LIP_EINVAL, "gateway: %s longer than %zu bytes", tls[i].what,
                        tls[i].n - 1);
            return NULL;
        }
        if (tls[i].src) lip_strlcpy(tls[i].dst, tls[i].src, tls[i].n);
    }
    if (g->tls_ca[0] || g->tls_cert[0]) { /* read the PEM files now: a bad one fails start-up */
        lip_rpc_client *probe = dial(g, NULL, err);
        if (!probe) {
            lip_err_prefix(err, "gateway: ");
            lip_free(g);
            return NULL;
        }
        lip_rpc_client_free(probe);
    }
    if (o->web_root && *o->web_root) {
        if (strlen(o->web_root) >= sizeof g->web_root) {
            lip_free(g);
            lip_err_set(err, LIP_EINVAL, "gateway: web root path longer than %zu bytes",
                        sizeof g->web_root - 1);
            return NULL;
        }
        lip_strlcpy(g->web_root, o->web_root, sizeof g->web_root);
    }
    if (!o->tts_path) find_exe("espeak-ng", g->tts, sizeof g->tts);
    else if (*o->tts_path && access(o->tts_path, X_OK) == 0)
        lip_strlcpy(g->tts, o->tts_path, sizeof g->tts);
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->cv, NULL);
    errno = 0;
    g->d = MHD_start_daemon(flags, (uint16_t)o->port, NULL, NULL, handle, g,
                            MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
                            MHD_OPTION_CONNECTION_LIMIT, (unsigned)(g->max_conn + 16),
                            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)HTTP_IDLE_TIMEOUT_S,
                            MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)HTTP_CONN_MEMORY,
                            MHD_OPTION_END);
    if (!g->d) {
        int e = errno;
        lip_err_set(err, e == EADDRINUSE ? LIP_EBUSY : LIP_EIO,
                    "gateway: cannot listen on %s port %d: %s", host, o->port,
                    e ? strerror(e) : "libmicrohttpd refused to start");
        pthread_mutex_destroy(&g->mu);
        pthread_cond_destroy(&g->cv);
        lip_free(g);
        return NULL;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(g->d, MHD_DAEMON_INFO_BIND_PORT);
    g->port = info && info->port ? info->port : o->port;
    return g;
}

int lip_gateway_find_web_root(char *out, size_t n, lip_err *err)
{
    char exe[1024];
    ssize_t k = readlink("/proc/self/exe", exe, sizeof exe - 1);
    exe[k > 0 ? k : 0] = 0;
    char *slash = strrchr(exe, '/');
    if (slash) *slash = 0;
    const char *rel[] = {"/../web", "/../../web", "/../../../web", "/../share/lipsync/web"};
    const char *abs[] = {"/usr/local/share/lipsync/web", "/usr/share/lipsync/web"};
    char cand[1200], idx[1300];
    for (size_t i = 0; i < LIP_ARRAY_LEN(rel) + LIP_ARRAY_LEN(abs); i++) {
        if (i < LIP_ARRAY_LEN(rel)) {
            if (!exe[0]) continue;
            snprintf(cand, sizeof cand, "%s%s", exe, rel[i]);
        } else {
            snprintf(cand, sizeof cand, "%s", abs[i - LIP_ARRAY_LEN(rel)]);
        }
        snprintf(idx, sizeof idx, "%s/index.html", cand);
        char real[PATH_MAX];
        if (access(idx, R_OK) == 0 && realpath(cand, real) && strlen(real) < n) {
            lip_strlcpy(out, real, n);
            return 0;
        }
    }
    if (n) out[0] = 0;
    return lip_err_set(err, LIP_ENOTFOUND, "gateway: no web root with an index.html next to "
                       "the binary (%s/../web) or in /usr/share/lipsync/web; set "
                       "gateway.web_root", exe);
}

int lip_gateway_port(const lip_gateway *g) { return g ? g->port : 0; }

bool lip_gateway_tts_available(const lip_gateway *g) { return g && g->tts[0]; }

void lip_gateway_stop(lip_gateway *g)
{
    if (!g) return;
    /* No new session starts once the flag is set (on_upgrade checks it under mu); running
     * ones see it within POLL_MS and close their sockets while the daemon still exists
     * (MHD_upgrade_action needs it). */
    pthread_mutex_lock(&g->mu);
    atomic_store(&g->stopping, 1);
    while (g->sessions > 0) pthread_cond_wait(&g->cv, &g->mu);
    pthread_mutex_unlock(&g->mu);
    MHD_stop_daemon(g->d);
    pthread_mutex_destroy(&g->mu);
    pthread_cond_destroy(&g->cv);
    lip_free(g);
}
