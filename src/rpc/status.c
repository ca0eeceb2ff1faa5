/* SPDX-License-Identifier: MIT */
/* rpc/status.c: the one place where our LIP_E* codes become gRPC status codes (keyed on the
 * gRPC status names that core.h's LIP_ERRORS table carries), status names for messages, message
 * packing, and the process-level helpers of a server (signals, malloc tuning). */
#include "rpc/rpc.h"

#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *const status_names[] = {
    "OK",          "CANCELLED",          "UNKNOWN",         "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED", "NOT_FOUND",    "ALREADY_EXISTS",  "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
    "UNIMPLEMENTED", "INTERNAL",         "UNAVAILABLE",     "DATA_LOSS",
    "UNAUTHENTICATED",
};

const char *lip_rpc_status_name(grpc_status_code code)
{
    if ((int)code < 0 || (size_t)code >= LIP_ARRAY_LEN(status_names)) return "UNKNOWN";
    return status_names[code];
}

/* The table: core.h names the gRPC status of every LIP_E* code; we resolve the name to the
 * numeric code once here, so adding an error code needs no edit in rpc/. */
grpc_status_code lip_rpc_status_of(int lip_code)
{
    if (lip_code == LIP_OK) return GRPC_STATUS_OK;
    const char *name = lip_err_grpc_name(lip_code);
    if (name)
        for (size_t i = 0; i < LIP_ARRAY_LEN(status_names); i++)
            if (strcmp(name, status_names[i]) == 0) return (grpc_status_code)i;
    return GRPC_STATUS_INTERNAL;
}

int lip_rpc_pack(const ProtobufCMessage *msg, lip_rpc_buf *out, lip_err *err)
{
    out->data = NULL;
    out->len = 0;
    size_t n = protobuf_c_message_get_packed_size(msg);
    out->data = lip_malloc(n ? n : 1);
    if (!out->data)
        return lip_err_set(err, LIP_ENOMEM, "out of memory packing a %zu-byte %s response", n,
                           msg->descriptor->name);
    out->len = protobuf_c_message_pack(msg, out->data);
    LIP_ASSERT(out->len == n);
    return 0;
}

void lip_rpc_block_signals(void)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
}

int lip_rpc_wait_signal(void)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    int sig = 0;
    if (sigwait(&set, &sig) != 0) return -1;
    return sig;
}

void lip_rpc_tune_malloc(void)
{
    /* Keep big buffers on the heap and never give them back: a 60 MB message then reuses pages
     * that are already faulted in (measured 230 ms -> 83 ms per 59 MB call, notes/grpc-c-core). */
    mallopt(M_MMAP_MAX, 0);
    mallopt(M_TRIM_THRESHOLD, 1 << 30);
    /* Few malloc arenas: glibc gives threads up to 8 per core, and each arena keeps the freed
     * request buffers of the threads that used it, so a server whose many threads take turns
     * with tens-of-MB buffers grows a pool per arena, and its resident size creeps up for
     * hours (bench/soak.py: +3-4 % after warm-up with the default, flat with 2). Small
     * allocations stay lock-free in the per-thread caches. MALLOC_ARENA_MAX in the environment
     * still wins. */
    if (!getenv("MALLOC_ARENA_MAX")) {
        long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
        mallopt(M_ARENA_MAX, ncpu >= 8 ? (int)(ncpu / 4) : 2);
    }
}
