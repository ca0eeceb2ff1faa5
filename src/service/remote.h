/* SPDX-License-Identifier: MIT */
/* service/remote.h: remote inference for the compositing role (internal to src/service/). One
 * gRPC channel to the inference servers named by inference_server.url (a host:port, a
 * "dns:///name:port" whose addresses are all used, or an "ipv4:a:p,b:q" list) with gRPC's
 * round_robin policy and a retry policy for UNAVAILABLE, so a call that meets a dead backend is
 * retried on another one. The pipeline calls svc_remote_infer for each chunk instead of a local
 * UNet (lip_pipeline_opts.infer): the chunk's pre-processed visual tensors and its audio (feature
 * windows, or the request's PCM when this server has no audio encoder) go out as one
 * inference.InferenceService/InferBatch call; the raw mouth regions come back and are pasted
 * and encoded here. A probe thread checks the backends' grpc.health.v1 status every second. */
#ifndef LIP_SVC_REMOTE_H
#define LIP_SVC_REMOTE_H

#include "avatar/avatar.h"
#include "core/core.h"

#include <stdbool.h>
#include <stdint.h>

struct lip_request;

typedef struct svc_remote svc_remote;

typedef struct svc_remote_opts {
    const char *url;         /* target as above; required */
    int timeout_ms;          /* deadline of one call, all its attempts included; 0 = 10 s */
    int max_retries;         /* attempts after the first on UNAVAILABLE (gRPC allows 4; more are
                                done as further rounds of calls here); default 3 */
    int max_msg_bytes;       /* both directions; 0 = 100 MiB */
    int probe_interval_ms;   /* health probe period; 0 = 1000 */
    /* TLS to the inference servers and the API key sent with every call (lip_rpc_client_opts;
     * NULL or "" = plaintext / none). */
    const char *tls_ca, *tls_cert, *tls_key, *api_key;
    /* Called from the probe thread when the backends' health changes (may be NULL). */
    void (*on_health_change)(void *ud, bool healthy);
    void *ud;
} svc_remote_opts;

/* Counters since start; bytes are protobuf message bytes (the HTTP/2 framing adds ~0.01%). */
typedef struct svc_remote_stats {
    int64_t calls;          /* InferBatch calls that completed OK */
    int64_t failures;       /* calls that failed after every retry */
    int64_t frames;         /* frames inferred remotely */
    int64_t bytes_sent;     /* request messages */
    int64_t bytes_received; /* response messages */
} svc_remote_stats;

/* Opens the channel (lazily connected) and starts the probe thread. NULL + err (LIP_EINVAL for
 * an empty or malformed url, LIP_ENOMEM). The caller owns the object; not thread-safe itself. */
svc_remote *svc_remote_new(const svc_remote_opts *o, lip_err *err);
/* Stops the probe thread and closes the channel; calls must have finished. NULL is a no-op. */
void svc_remote_free(svc_remote *r);

/* lip_pipeline_infer_fn (ud = the svc_remote): one InferBatch call for frames first..first+n-1
 * of req with model id = lip_avatar_id(a). Errors: the backend's status mapped back to a LIP_E*
 * code (UNAVAILABLE -> LIP_EUNAVAIL once no backend answers, DEADLINE_EXCEEDED -> LIP_ETIMEOUT,
 * NOT_FOUND when the inference servers do not know the model, ...), the message naming the
 * backend url. Thread-safe; the packed request and forwarded PCM live in reused per-thread
 * scratch, so steady state allocates per call only the received message and its unpacked
 * form (one chunk, not per frame). */
int svc_remote_infer(void *ud, lip_avatar *a, const struct lip_request *req, int first, int n,
                     const float *visual, const float *audio, float *out, lip_err *err);

/* Result of the last probe: at least one backend answered SERVING. Thread-safe. */
bool svc_remote_healthy(const svc_remote *r);
/* The gpu_id the backends reported in the latest successful call (-1 before any, or CPU). With
 * several backends it is the device of whichever answered last, not per request. Thread-safe. */
int svc_remote_gpu_id(const svc_remote *r);
/* The configured url (owned by r). */
const char *svc_remote_url(const svc_remote *r);
/* Copies the counters. Thread-safe. */
void svc_remote_get_stats(const svc_remote *r, svc_remote_stats *st);

#endif
