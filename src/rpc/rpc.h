/* SPDX-License-Identifier: MIT */
/* rpc: gRPC serving and calling on the gRPC C core (1.51) with protobuf-c messages.
 *
 * Server: worker threads each own a completion queue; generic grpc_server_request_call
 * dispatch looks the method path up in a table of handlers added per service. A call is a small
 * state machine (new -> read -> handle -> finish). Heavy handlers run on a compute pool, never on
 * a completion-queue thread, under admission control: at most compute_threads + max_queued heavy
 * calls are admitted, and a call beyond that gets RESOURCE_EXHAUSTED before its message is even
 * read, so memory stays bounded. Each call starts RECV_CLOSE_ON_SERVER at once, so a handler can
 * see a client cancel (lip_rpc_call_cancelled) and stop early. grpc.health.v1 Check and Watch are
 * built in and follow the statuses set with lip_rpc_server_set_health. Unknown paths get
 * UNIMPLEMENTED. Shutdown: health goes NOT_SERVING, the server stops accepting calls, in-flight
 * calls get a grace period, then everything left is cancelled.
 *
 * Client: a channel with the message-size limits, a blocking unary call with a deadline, and a
 * blocking bidi-stream helper, for `lipsync client`, benchmarks, tests and the compositing role.
 *
 * Errors: our LIP_E* codes map to gRPC status codes in one table (lip_rpc_status_of). */
#ifndef LIP_RPC_H
#define LIP_RPC_H

#include "core/core.h"

#include <grpc/status.h>
#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- status codes ------------------------------------------------------------------------- */
/* The gRPC status for a LIP_E* code (LIP_OK -> GRPC_STATUS_OK; unknown -> INTERNAL). Pure
 * function of static tables: thread-safe, cannot fail. */
grpc_status_code lip_rpc_status_of(int lip_code);
/* "INVALID_ARGUMENT" etc. (static string; "UNKNOWN" for out-of-range values). Thread-safe. */
const char *lip_rpc_status_name(grpc_status_code code);

/* A message buffer. data comes from lip_malloc; whoever holds the buffer frees it with lip_free
 * (the server takes ownership of a handler's response). */
typedef struct lip_rpc_buf {
    uint8_t *data;
    size_t len;
} lip_rpc_buf;

/* Serializes a protobuf-c message into a new buffer (out->data owned by the caller).
 * LIP_ENOMEM on allocation failure. Thread-safe. */
int lip_rpc_pack(const ProtobufCMessage *msg, lip_rpc_buf *out, lip_err *err);

/* ---- server ------------------------------------------------------------------------------- */
typedef struct lip_rpc_server lip_rpc_server;
typedef struct lip_rpc_call lip_rpc_call;

enum lip_rpc_kind {
    LIP_RPC_UNARY = 0, /* one request, one response */
    LIP_RPC_BIDI,      /* requests in, one response per request, in order */
    LIP_RPC_STREAM     /* a session: the handler runs once, on its own thread, for the whole
                          bidi call, reading and sending when it likes (see below) */
};

/* A handler. req/len is one request message (valid only during the call; len may be 0 for an
 * all-default message). On success it returns 0 and sets *resp (ownership passes to the server).
 * On failure it returns a negative LIP_E* code with err set; the call ends with
 * lip_rpc_status_of(code) and err->msg, and if *resp is set it is sent first (the API.md §1.6
 * success=false message). For LIP_RPC_BIDI the handler runs once per request message; a failure
 * ends the stream (per-message errors are answered as a normal response by the handler).
 * Heavy handlers run on the compute pool, light ones on a completion-queue thread (they must not
 * block). Handlers of different calls run concurrently: they must be thread-safe.
 * For LIP_RPC_STREAM the handler runs once, on a session thread of its own (heavy is ignored),
 * with the stream's first message in req/len; it then reads further messages with
 * lip_rpc_call_recv and sends any number with lip_rpc_call_send (server-initiated writes: frames
 * on a clock, events), and returns when the session is over. Its return value becomes the
 * status after every queued message has left (0: OK; a *resp is sent last). */
typedef int (*lip_rpc_handler_fn)(void *ud, lip_rpc_call *call, const uint8_t *req, size_t len,
                                  lip_rpc_buf *resp, lip_err *err);

typedef struct lip_rpc_method {
    const char *name;       /* method name, e.g. "InferBatchComposite" */
    int kind;               /* enum lip_rpc_kind */
    bool heavy;             /* runs on the compute pool under admission control */
    lip_rpc_handler_fn fn;
} lip_rpc_method;

typedef struct lip_rpc_opts {
    const char *host;           /* listen address; default "0.0.0.0" */
    int port;                   /* 0 picks a free port (see lip_rpc_server_port) */
    int cq_threads;             /* completion-queue threads; default 2 */
    int compute_threads;        /* heavy-handler threads; default 2 */
    int max_queued;             /* heavy calls waiting beyond those running; default 8 */
    int max_recv_bytes;         /* default 100 MiB */
    int max_send_bytes;         /* default 100 MiB */
    int keepalive_time_ms;      /* server pings after this idle time; default 10000 */
    int keepalive_timeout_ms;   /* ping ack timeout; default 3000 */
    int min_client_ping_ms;     /* client pings accepted this often, also without calls; 5000 */
    double request_timeout_ms;  /* server-side limit per heavy call; 0 = only client deadlines */
    double recv_timeout_ms;     /* an admitted heavy call whose request message has not fully
                                   arrived after this long is cancelled, so clients that never
                                   send cannot hold admission slots; default 30000 */
    int max_streams;            /* LIP_RPC_STREAM sessions open at once (one thread each);
                                   beyond it RESOURCE_EXHAUSTED; default 64 */
    /* TLS (NULL or "" = plaintext h2c). PEM files, read once at lip_rpc_server_start: the
     * certificate chain and its key; with tls_client_ca every client must also present a
     * certificate signed by that CA (mTLS), otherwise client certificates are not requested. */
    const char *tls_cert;
    const char *tls_key;
    const char *tls_client_ca;
} lip_rpc_opts;

lip_rpc_opts lip_rpc_opts_default(void);

/* Creates a server (calls grpc_init). Nothing listens until lip_rpc_server_start. NULL + err on
 * failure. Call lip_rpc_block_signals() before this if the process will use
 * lip_rpc_wait_signal, so that gRPC's threads inherit the signal mask. */
lip_rpc_server *lip_rpc_server_new(const lip_rpc_opts *opts, lip_err *err);
/* Shuts down (if running) with a zero grace period and frees everything, then releases gRPC
 * (grpc_shutdown). NULL is a no-op. Not thread-safe: no other call on s may be running. */
void lip_rpc_server_free(lip_rpc_server *s);

/* Adds a service: "/<service>/<method>" paths for each method, all called with ud. The service
 * name becomes a health name (initially NOT_SERVING until set). Copies the table. Only before
 * start. LIP_EINVAL on duplicate paths or after start. */
int lip_rpc_server_add_service(lip_rpc_server *s, const char *service, const lip_rpc_method *m,
                               int n, void *ud, lip_err *err);
/* Binds host:port and starts the threads. LIP_EIO when the port cannot be bound, LIP_ENOMEM
 * when threads cannot start; the server must then only be freed. Not thread-safe. */
int lip_rpc_server_start(lip_rpc_server *s, lip_err *err);
/* The bound port (after start; 0 before). Thread-safe. */
int lip_rpc_server_port(const lip_rpc_server *s);

/* grpc.health.v1 statuses. */
enum { LIP_HEALTH_UNKNOWN = 0, LIP_HEALTH_SERVING = 1, LIP_HEALTH_NOT_SERVING = 2,
       LIP_HEALTH_SERVICE_UNKNOWN = 3 };
/* Sets the health status of a registered service name ("" = the whole server) and notifies
 * Watch streams. LIP_ENOTFOUND for an unknown name. Thread-safe. */
int lip_rpc_server_set_health(lip_rpc_server *s, const char *service, int status);
/* Current status; LIP_HEALTH_SERVICE_UNKNOWN for an unknown name. Thread-safe. */
int lip_rpc_server_health(lip_rpc_server *s, const char *service);

/* Graceful shutdown: all health statuses go NOT_SERVING (Watch streams get it, then end with
 * OK), no new calls are accepted, in-flight calls get grace_ms to finish, the rest are cancelled,
 * and the threads are joined. Idempotent. Not thread-safe against lip_rpc_server_free. */
void lip_rpc_server_shutdown(lip_rpc_server *s, double grace_ms);

/* Counters for stats and tests (thread-safe snapshot). */
typedef struct lip_rpc_stats {
    long calls;          /* calls accepted */
    long unimplemented;  /* unknown paths */
    long rejected_busy;  /* admission refusals */
    long failed;         /* non-OK statuses sent */
    int heavy_active;    /* heavy calls admitted now (running + queued) */
    int streams;         /* LIP_RPC_STREAM sessions open now */
    long rejected_streams; /* stream calls refused at max_streams */
} lip_rpc_stats;
void lip_rpc_server_stats(lip_rpc_server *s, lip_rpc_stats *out);

/* ---- guard: authentication, authorization, limits and audit at the dispatch ------------------
 * A guard sees every call to a registered method (not the built-in grpc.health.v1 ones, nor
 * unknown paths), at the one place all calls pass, so no handler can skip it:
 *   begin    after the path and request metadata are known, before admission and before the
 *            request is read: a non-OK status ends the call with err->msg (nothing else runs);
 *            *state (per call, owned by the guard) is handed to the other hooks;
 *   message  every request message before its handler sees it (unary, each bidi message, the
 *            first message of a stream and each one lip_rpc_call_recv returns): non-OK ends
 *            the call with that status;
 *   output   every response message that leaves on success (unary response, bidi responses,
 *            lip_rpc_call_send), for counting what was served; it may also shorten the message
 *            in place (e.g. drop list entries the caller may not see) and returns the length
 *            to send (len to send it as it is);
 *   end      exactly once per call begin accepted, with the status it ended with (the guard
 *            frees its state here).
 * Hooks run on queue, compute and session threads concurrently: they must be thread-safe and
 * must not block. A guard is set before lip_rpc_server_start and must outlive the server. */
typedef struct lip_rpc_guard {
    void *ud;
    grpc_status_code (*begin)(void *ud, lip_rpc_call *c, void **state, lip_err *err);
    grpc_status_code (*message)(void *ud, lip_rpc_call *c, void *state, const uint8_t *msg,
                                size_t len, lip_err *err);
    size_t (*output)(void *ud, lip_rpc_call *c, void *state, uint8_t *msg, size_t len);
    void (*end)(void *ud, lip_rpc_call *c, void *state, grpc_status_code code, const char *msg);
} lip_rpc_guard;
/* Installs g (copied; NULL removes it). LIP_EINVAL after start. Not thread-safe. */
int lip_rpc_server_set_guard(lip_rpc_server *s, const lip_rpc_guard *g, lip_err *err);

/* Signals: block SIGINT/SIGTERM/SIGHUP in the calling thread (call before creating any thread),
 * then lip_rpc_wait_signal waits for one of them and returns its number (SIGHUP: reload, e.g.
 * the API keys; the caller goes on waiting). */
void lip_rpc_block_signals(void);
int lip_rpc_wait_signal(void);

/* glibc malloc tuning for tens-of-MB messages (no mmap per allocation, no trimming): faulting
 * fresh pages per message otherwise dominates the cost of a big call; and few arenas (2, or a
 * quarter of the cores from 8 up, unless MALLOC_ARENA_MAX is set) so freed buffers are reused
 * across threads instead of pooling per arena. Process-wide; call once at start-up before
 * threads exist. */
void lip_rpc_tune_malloc(void);

/* ---- inside a handler --------------------------------------------------------------------- */
/* True once the client cancelled, the connection dropped, the deadline (client's or the server's
 * request_timeout_ms) passed, or the server is cancelling all calls. Thread-safe, cheap. */
bool lip_rpc_call_cancelled(const lip_rpc_call *c);
/* True if the deadline passed (as opposed to a cancel). */
bool lip_rpc_call_deadline_passed(const lip_rpc_call *c);
/* lip_time_ms() when the call arrived, and the deadline as lip_time_ms() (0 = none). */
double lip_rpc_call_start_ms(const lip_rpc_call *c);
double lip_rpc_call_deadline_ms(const lip_rpc_call *c);
/* A pointer to the flag that becomes nonzero on cancel (for lip_request.cancel). */
const volatile int *lip_rpc_call_cancel_flag(const lip_rpc_call *c);
/* The method path, NUL-terminated (owned by the call). */
const char *lip_rpc_call_path(const lip_rpc_call *c);
/* The value of request metadata key (lower-case, e.g. "authorization"; the last one when sent
 * several times) copied NUL-terminated into buf. Returns its length, or -1 when the key is
 * absent, the value holds a NUL byte or does not fit in n bytes (buf then gets ""). Thread-safe
 * (the metadata does not change during a call). */
int lip_rpc_call_metadata(const lip_rpc_call *c, const char *key, char *buf, size_t n);
/* The peer address ("ipv4:127.0.0.1:50000"), or "" when unknown, into buf. Thread-safe. */
void lip_rpc_call_peer(const lip_rpc_call *c, char *buf, size_t n);
/* A retry hint for a RESOURCE_EXHAUSTED (or other) status: the call's status then carries the
 * trailing metadata `retry-after-ms: <ms>`. Set before the call ends. Thread-safe. */
void lip_rpc_call_set_retry_after(lip_rpc_call *c, double ms);

/* ---- inside a LIP_RPC_STREAM handler ---------------------------------------------------------
 * Messages arriving on the call are queued (at most 8 unread; beyond that the server stops
 * reading and HTTP/2 flow control holds the client back, so nothing grows without bound). Sends
 * are queued behind the one in flight (at most 8 queued), so one SEND_MESSAGE and one
 * RECV_MESSAGE are outstanding at a time, overlapping. Both functions are meant for the session
 * thread; lip_rpc_call_send may also be called from other threads (calls are serialised). */

/* Next message into *msg (caller frees msg->data with lip_free); *arrival_ms (may be NULL) gets
 * the lip_time_ms() at which the server received it. Waits up to timeout_ms (< 0: until
 * something happens; 0: no wait). Returns 1 with a message, 0 when the client half-closed (no
 * more messages; sending is still allowed), LIP_ETIMEOUT when nothing arrived in time,
 * LIP_ECANCELLED when the call is over (client cancel or disconnect, deadline, server
 * shutting down). */
int lip_rpc_call_recv(lip_rpc_call *c, lip_rpc_buf *msg, double *arrival_ms, double timeout_ms);
/* Queues one message; takes ownership of msg->data (freed and cleared whatever happens). Blocks
 * while 8 messages are already queued (the client reads slowly). 0 once queued ("departed" as
 * far as the server is concerned); LIP_ECANCELLED when the call is over, LIP_EIO when gRPC
 * refused the send. */
int lip_rpc_call_send(lip_rpc_call *c, lip_rpc_buf *msg, lip_err *err);
/* Messages queued or in flight on the call (0..9). Thread-safe. */
int lip_rpc_call_send_queued(lip_rpc_call *c);

/* ---- client ------------------------------------------------------------------------------- */
typedef struct lip_rpc_client lip_rpc_client;

/* Opens an insecure channel to target ("host:port"); max_msg_bytes limits both directions
 * (0 = 100 MiB). Connects lazily. NULL + err on failure. A client may be used from many threads
 * at once (each call has its own queue). */
lip_rpc_client *lip_rpc_client_new(const char *target, int max_msg_bytes, lip_err *err);
/* Channel options for clients that balance over several servers (the compositing role's
 * remote inference). Zero fields keep gRPC's defaults. */
typedef struct lip_rpc_client_opts {
    int max_msg_bytes;            /* both directions; 0 = 100 MiB */
    const char *lb_policy;        /* "round_robin", "pick_first"; NULL = gRPC's default */
    int max_attempts;             /* > 1: the service config retries calls that end UNAVAILABLE
                                     (before the server answered) up to this many attempts in
                                     all (gRPC caps it at 5); each attempt picks its backend
                                     anew, so round_robin moves it to another one */
    int retry_backoff_ms;         /* initial retry backoff; 0 = 50 ms (max 8x that) */
    int reconnect_max_backoff_ms; /* cap of the reconnect backoff to a failed backend; 0 = 120 s */
    /* TLS: with tls_ca (a PEM file of trusted CAs) the channel uses TLS and checks the server's
     * certificate against it; tls_cert/tls_key (PEM, both or neither) present a client
     * certificate (mTLS). tls_target_name overrides the name checked in the server's
     * certificate (default: the host of target). NULL or "" = plaintext. */
    const char *tls_ca;
    const char *tls_cert;
    const char *tls_key;
    const char *tls_target_name;
    /* Sent with every call as `authorization: Bearer <api_key>` (copied); NULL = none. */
    const char *api_key;
} lip_rpc_client_opts;

lip_rpc_client_opts lip_rpc_client_opts_default(void);
/* Opens an insecure channel to target: "host:port", "dns:///host:port" (every address the name
 * resolves to, re-resolved when connections fail) or "ipv4:a:p,b:q" (a fixed list), with the
 * options above as channel args and a service config. NULL + err (LIP_EINVAL for a bad policy
 * name or target, LIP_ENOMEM). Connects lazily; thread-safe like lip_rpc_client_new. */
lip_rpc_client *lip_rpc_client_new_opts(const char *target, const lip_rpc_client_opts *opts,
                                        lip_err *err);
/* The channel's connectivity (grpc_connectivity_state: 0 IDLE, 1 CONNECTING, 2 READY,
 * 3 TRANSIENT_FAILURE, 4 SHUTDOWN); with round_robin READY means at least one backend is
 * connected. try_to_connect starts connecting an IDLE channel. Thread-safe, non-blocking. */
int lip_rpc_client_state(lip_rpc_client *c, bool try_to_connect);
/* Closes the channel (calls still running on it fail) and releases gRPC. NULL is a no-op. */
void lip_rpc_client_free(lip_rpc_client *c);

/* The outcome of a call: gRPC status and its details text. */
typedef struct lip_rpc_status {
    grpc_status_code code;
    char details[LIP_ERRMSG_MAX];
} lip_rpc_status;

/* Blocking unary call of path ("/pkg.Service/Method") with timeout_ms (<= 0: none). On OK the
 * response bytes go to *resp (caller frees resp->data with lip_free; may be empty). Returns 0 if
 * the call completed (whatever its status, see *st), or a negative code with err set when it
 * could not be started. On a non-OK status any response message is dropped. */
int lip_rpc_client_unary(lip_rpc_client *c, const char *path, const uint8_t *req, size_t len,
                         double timeout_ms, lip_rpc_buf *resp, lip_rpc_status *st, lip_err *err);

/* The same, cancelled (status CANCELLED) soon after *cancel becomes nonzero, checked every
 * 20 ms; cancel NULL is lip_rpc_client_unary. For calls made on behalf of a request whose own
 * client may go away (the compositing role's remote inference). */
int lip_rpc_client_unary_cancel(lip_rpc_client *c, const char *path, const uint8_t *req,
                                size_t len, double timeout_ms, const volatile int *cancel,
                                lip_rpc_buf *resp, lip_rpc_status *st, lip_err *err);

/* A blocking bidi stream. One thread at a time may write (write, close_send) and one other may
 * read at the same time (send-only and receive-only batches may overlap); finish after both. */
typedef struct lip_rpc_stream lip_rpc_stream;
/* Opens a stream on path with a deadline of timeout_ms (<= 0: none); NULL + err (LIP_EUNAVAIL)
 * when it cannot be opened. The stream is owned by the caller until lip_rpc_stream_finish. */
lip_rpc_stream *lip_rpc_stream_open(lip_rpc_client *c, const char *path, double timeout_ms,
                                    lip_err *err);
/* Sends one message (msg is not kept after return). LIP_EIO if the stream is broken (read the
 * status with _finish). */
int lip_rpc_stream_write(lip_rpc_stream *s, const uint8_t *msg, size_t len, lip_err *err);
/* Half-closes the sending side. */
int lip_rpc_stream_close_send(lip_rpc_stream *s, lip_err *err);
/* Reads one message into *msg (caller frees with lip_free). Returns 1 with a message, 0 at the
 * end of the stream, negative on failure. */
int lip_rpc_stream_read(lip_rpc_stream *s, lip_rpc_buf *msg, lip_err *err);
/* Waits for the final status (cancels the call first if cancel is set) and frees the stream. */
int lip_rpc_stream_finish(lip_rpc_stream *s, bool cancel, lip_rpc_status *st);

#endif
