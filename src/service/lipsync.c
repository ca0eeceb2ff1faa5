/* SPDX-License-Identifier: MIT */
/* service/lipsync.c: lipsync.LipSyncComposite and lipsync.LipSync (API.md §2, §3). Not built
 * yet: registering them fails with a clear message at start-up. */
#include "service/svc_int.h"

int svc_register_lipsync_composite(lip_service *sv, lip_rpc_server *srv, lip_err *err)
{
    (void)sv;
    (void)srv;
    return lip_err_set(err, LIP_ENOTFOUND, "lipsync.LipSyncComposite is not available yet");
}

int svc_register_lipsync(lip_service *sv, lip_rpc_server *srv, lip_err *err)
{
    (void)sv;
    (void)srv;
    return lip_err_set(err, LIP_ENOTFOUND, "lipsync.LipSync is not available yet");
}
