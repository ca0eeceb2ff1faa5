/* SPDX-License-Identifier: MIT */
/* gateway: the browser's way in. A libmicrohttpd daemon serves the static files of the web page
 * (web/) and, on /ws, upgrades to a WebSocket (RFC 6455, framed here) that is a thin bridge onto
 * lipsync.v1: each WebSocket connection opens its own lipsync.v1.LipSync/Stream to the server's
 * gRPC port and forwards messages both ways (JSON control messages and binary float32 audio up;
 * binary JPEG frames with a 40-byte header and JSON events down; docs/API.md "WebSocket
 * gateway"). ListAvatars is answered the same way (a unary call), and {"type":"say"} runs
 * espeak-ng (when installed; argv exec, never a shell) and streams its speech into the session
 * like uploaded audio. Nothing is rendered here: every frame comes from the same Stream session
 * a gRPC client would get. Sizes are bounded (message length, connections, text length, TTS
 * time), so a hostile client gets an error message or a closed socket, never a crash. */
#ifndef LIP_GATEWAY_H
#define LIP_GATEWAY_H

#include "core/core.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Binary frame message (server -> browser), little-endian:
 *   0  "LSF1"   magic
 *   4  u32      stream frame index
 *   8  f64      pts_ms (index x 40)
 *   16 u32      flags: bit 0 = speech
 *   20 i32      utterance (1-based; 0 for idle)
 *   24 i32      utterance_frame
 *   28 f32      server latency total_ms (audio complete -> frame sent; 0 for idle)
 *   32 i32      avatar_frame (the background frame used)
 *   36 u32      reserved (0)
 *   40 ...      the JPEG
 * TTS audio (server -> browser): "LSA1", u32 utterance hint (0), then float32 16 kHz samples. */
#define LIP_GATEWAY_FRAME_HDR 40
#define LIP_GATEWAY_MAX_MESSAGE (1 << 20)  /* largest client message (audio chunk), bytes */
#define LIP_GATEWAY_MAX_TEXT 1000          /* longest "say" text, bytes */

typedef struct lip_gateway_opts {
    const char *host;        /* listen address (numeric); default "0.0.0.0" */
    int port;                /* 0 picks a free port (lip_gateway_port) */
    int grpc_port;           /* the lipsync.v1 server's port, called on 127.0.0.1 */
    const char *web_root;    /* directory of index.html/app.js; NULL/"" = no static files */
    const char *tts_path;    /* espeak-ng executable; NULL = look it up on PATH; "" = no TTS */
    int max_connections;     /* WebSocket + HTTP connections at once; default 32 */
    /* TLS to the gRPC port (lip_rpc_client_opts): with tls_ca the gateway's calls use TLS and
     * check the server's certificate (for tls_target_name, default the dialled 127.0.0.1);
     * tls_cert/tls_key present a client certificate (mTLS). Paths are read at start. */
    const char *tls_ca, *tls_cert, *tls_key, *tls_target_name;
} lip_gateway_opts;

lip_gateway_opts lip_gateway_opts_default(void);

typedef struct lip_gateway lip_gateway;

/* Starts listening (one libmicrohttpd thread; two threads per WebSocket session). Returns the
 * gateway (owned by the caller, free with lip_gateway_stop) or NULL with err: LIP_EINVAL for a
 * bad option, LIP_EBUSY when the port is taken, LIP_EIO otherwise. Thread-safe. */
lip_gateway *lip_gateway_start(const lip_gateway_opts *opts, lip_err *err);
/* The bound port. Thread-safe. 0 for NULL. */
int lip_gateway_port(const lip_gateway *g);
/* Whether "say" works (espeak-ng was found). Thread-safe. */
bool lip_gateway_tts_available(const lip_gateway *g);
/* Closes every session (their gRPC streams are cancelled), waits for their threads, stops the
 * daemon and frees g. NULL is a no-op. Not thread-safe against other calls on g. */
void lip_gateway_stop(lip_gateway *g);

/* The default web root when gateway.web_root is "": the first of <exe>/../web,
 * <exe>/../../web, <exe>/../../../web (the source tree of build/lipsync, build/tests/x or
 * build/asan/tests/x),
 * <exe>/../share/lipsync/web, /usr/local/share/lipsync/web and /usr/share/lipsync/web that
 * holds an index.html, into out. LIP_ENOTFOUND (out = "") when none does. Thread-safe. */
int lip_gateway_find_web_root(char *out, size_t n, lip_err *err);

/* The Sec-WebSocket-Accept value for a Sec-WebSocket-Key (base64(SHA-1(key + GUID)), 28
 * characters + NUL into out[29]). Exposed for tests. Pure, thread-safe. */
void lip_gateway_ws_accept(const char *key, char out[29]);

#endif
