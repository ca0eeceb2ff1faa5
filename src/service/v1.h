/* SPDX-License-Identifier: MIT */
/* service/v1.h: the native API lipsync.v1.LipSync (proto/lipsync_v1.proto, docs/API.md): a
 * real-time Stream session (audio chunks in, timestamped frames out, idle frames at 25 fps while
 * no speech arrives), a unary Render of a whole utterance, ListAvatars and GetStats. It runs on
 * the shared lip_service state (avatars, pipeline, audio encoder). Kept in its own header so the
 * serve command can attach it beside the API.md services. */
#ifndef LIP_SERVICE_V1_H
#define LIP_SERVICE_V1_H

#include "service/service.h"

#define LIP_V1_SERVICE "lipsync.v1.LipSync"

/* Attaches lipsync.v1.LipSync to srv (before lip_rpc_server_start) on sv's avatars and
 * pipeline; its health follows lip_service_update_health like the other services. At most 4
 * attachments per process (the per-attachment counters live in static storage, so nothing needs
 * freeing). LIP_EINVAL after start, a duplicate, or a fifth attachment. Not thread-safe. */
int lip_service_register_v1(lip_service *sv, lip_rpc_server *srv, lip_err *err);

/* Stream sessions open now across every attachment (tests, stats). Thread-safe. */
int lip_service_v1_sessions(void);

#endif
