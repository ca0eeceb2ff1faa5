/* SPDX-License-Identifier: MIT */
/* service/optimized.c: optimized_lipsyncsrv.OptimizedLipSyncService (API.md §7). Not built yet:
 * registering it fails with a clear message so a configuration that enables it is refused at
 * start-up rather than answering UNIMPLEMENTED at run time. */
#include "service/svc_int.h"

int svc_register_optimized(lip_service *sv, lip_rpc_server *srv, lip_err *err)
{
    (void)sv;
    (void)srv;
    return lip_err_set(err, LIP_ENOTFOUND, "optimized_lipsyncsrv.OptimizedLipSyncService is not "
                       "available in this build yet");
}
