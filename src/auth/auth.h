/* SPDX-License-Identifier: MIT */
/* auth: API-key authentication, tenant scoping, per-key rate limits and the audit log of the
 * gRPC servers. A keys file (JSON) lists keys by id with the SHA-256 of the secret (the secret
 * itself is never stored), a role (client or admin), the avatars the key may use ("*" = all)
 * and optional limits. lip_auth_attach installs a guard on an rpc server (lip_rpc_guard), the
 * one place every call to a registered method passes, so no service handler can skip it:
 *
 *   - the call's `authorization: Bearer <key>` metadata is hashed and looked up
 *     (UNAUTHENTICATED when missing or unknown), before admission and before the request is read;
 *   - admin-only RPCs (LoadModel, UnloadModel, LoadPackage) need role admin (PERMISSION_DENIED);
 *   - the avatar each request names (a field found by a per-RPC policy table, empty = the default
 *     avatar) must be in the key's set (PERMISSION_DENIED naming the key id, never the key), for
 *     every message of streams too; RPCs missing from the table are admin-only (fail closed);
 *   - per key: a token bucket of frames per second (frames are counted in the responses) and a
 *     cap on calls in progress; beyond them RESOURCE_EXHAUSTED with `retry-after-ms` trailing
 *     metadata and the same hint in the message;
 *   - one JSON line per request to the audit log (time, key id, avatar, RPC, frames, status,
 *     latency, peer), never the key; admin actions and refusals are logged even when the
 *     per-request audit is off.
 * grpc.health.v1 stays open (the rpc layer serves it before any guard). Keys reload on
 * lip_auth_reload (SIGHUP in `lipsync serve`) without dropping running calls; rate-limit state
 * is kept per key id across reloads. */
#ifndef LIP_AUTH_H
#define LIP_AUTH_H

#include "core/core.h"
#include "rpc/rpc.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum lip_auth_role { LIP_AUTH_CLIENT = 0, LIP_AUTH_ADMIN = 1 };

#define LIP_AUTH_ID_MAX 64      /* key ids follow the avatar id rule (lip_valid_id) */
#define LIP_AUTH_KEY_MAX 512    /* longest secret accepted in metadata */

typedef struct lip_auth lip_auth;

typedef struct lip_auth_opts {
    const char *keys_file;      /* required */
    const char *default_avatar; /* what an empty avatar field means; "" or NULL = none */
    double frames_per_second;   /* per key without its own; 0 = unlimited */
    int burst_frames;           /* bucket size; 0 = 2 s of the key's rate (at least 1 frame) */
    int max_concurrent;         /* calls in progress per key without its own; 0 = unlimited */
    bool audit_all;             /* one line per request (else admin actions and refusals) */
    const char *audit_file;     /* appended to; NULL or "" = stderr */
} lip_auth_opts;

lip_auth_opts lip_auth_opts_default(void);

/* Loads the keys file and opens the audit log. NULL + err (file, key index and field) when the
 * file is unreadable or invalid. Not thread-safe (call once at start-up). */
lip_auth *lip_auth_new(const lip_auth_opts *opts, lip_err *err);
/* Re-reads the keys file and reopens the audit file (log rotation). On failure the previous
 * keys stay in force and err says why. Running calls keep the key they started with. Rate
 * state is kept for ids still present. Thread-safe. */
int lip_auth_reload(lip_auth *a, lip_err *err);
/* Frees everything. Only after every server it is attached to has been freed. NULL no-op. */
void lip_auth_free(lip_auth *a);
/* Installs the guard on srv (before lip_rpc_server_start). LIP_EINVAL after start. */
int lip_auth_attach(lip_auth *a, lip_rpc_server *srv, lip_err *err);
/* Keys loaded now. Thread-safe. */
int lip_auth_key_count(lip_auth *a);

/* ---- pieces, exposed for tests and tools ---------------------------------------------------- */
/* SHA-256 of key as 64 lower-case hex digits + NUL in out. Thread-safe. */
void lip_auth_hash_hex(const char *key, size_t len, char out[65]);

/* What a key may do, copied out of the key store. */
typedef struct lip_auth_principal {
    char id[LIP_AUTH_ID_MAX + 1];
    int role;                   /* enum lip_auth_role */
    bool all_avatars;
} lip_auth_principal;
/* Looks the secret up (constant-time compare against every stored hash). 0 and *p filled, or
 * LIP_EPERM when no key matches. Thread-safe. */
int lip_auth_lookup(lip_auth *a, const char *key, lip_auth_principal *p);
/* Whether key id may use avatar (exact match, or "*"). False for an unknown id. Thread-safe. */
bool lip_auth_avatar_allowed(lip_auth *a, const char *id, const char *avatar);

/* A token bucket of frames that may go into debt: a call is let in while the balance is
 * positive and charged afterwards with what it produced, so a batch larger than the bucket
 * still runs, and the key then waits until its rate has paid the debt back. Not locked:
 * the caller serialises (lip_auth does, per key). */
typedef struct lip_auth_bucket {
    double tokens;
    double last_ms;
} lip_auth_bucket;
/* Full bucket at now_ms. */
void lip_auth_bucket_init(lip_auth_bucket *b, double burst, double now_ms);
/* Refills at rate per second (capped at burst) up to now_ms; true when a call may start,
 * else false with *retry_ms the time until the balance is positive again. rate <= 0 always
 * passes. */
bool lip_auth_bucket_admit(lip_auth_bucket *b, double rate, double burst, double now_ms,
                           double *retry_ms);
/* Takes n frames (the balance may go negative). */
void lip_auth_bucket_charge(lip_auth_bucket *b, double n);

/* Protobuf wire scanning without a schema (the guard sees requests of every service): the last
 * length-delimited value of the field path (field numbers, outermost first, depth 1-3; nested
 * messages are merged the protobuf way, so the last occurrence wins). Returns 1 with *val and *vlen
 * (pointing into msg; empty when an enclosing message is present but the leaf is not), 0 when
 * the outermost field is absent, LIP_EFORMAT when the message is not well-formed protobuf or a
 * field on the path has a wire type other than length-delimited. */
int lip_auth_pb_string(const uint8_t *msg, size_t len, const uint32_t *path, int depth,
                       const uint8_t **val, size_t *vlen);
/* Occurrences of top-level field number f (any wire type); LIP_EFORMAT when malformed. */
int lip_auth_pb_count(const uint8_t *msg, size_t len, uint32_t f);
/* The last varint value of top-level field f into *v: 1 found, 0 absent, LIP_EFORMAT. */
int lip_auth_pb_varint(const uint8_t *msg, size_t len, uint32_t f, uint64_t *v);
/* Whether a listed id (len bytes, not NUL-terminated) stays in a filtered response. */
typedef bool (*lip_auth_keep_fn)(void *ud, const uint8_t *id, size_t len);
/* Filters a response in place: drops each occurrence of top-level field `field` whose id (the
 * value itself when sub is 0, else its string field sub) keep() refuses, and when count_field is
 * non-zero lowers that varint field to the number of elements left if it was higher. Every other
 * field is copied unchanged. Returns the new length, or LIP_EFORMAT (msg unchanged) when msg is
 * not well-formed protobuf. Pure. */
long lip_auth_pb_filter(uint8_t *msg, size_t len, uint32_t field, uint32_t sub,
                        uint32_t count_field, lip_auth_keep_fn keep, void *ud);

#endif
