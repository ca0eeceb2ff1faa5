/* SPDX-License-Identifier: MIT */
/* fuzz/fuzz.h: what every libFuzzer harness shares. The harnesses feed hostile bytes to one
 * parser each and check the error contract on top of what ASan/UBSan catch: a failure must
 * return a negative LIP_E* code, put the same code in the lip_err and say something in it. */
#ifndef LIP_FUZZ_H
#define LIP_FUZZ_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/core.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* Aborts (a finding) when a failing call broke the error contract. */
static inline void fuzz_check_err(int rc, const lip_err *e, const char *what)
{
    if (rc > 0 || (rc < 0 && (e->code != rc || e->msg[0] == 0))) {
        fprintf(stderr, "%s: rc=%d but lip_err has code %d and message '%s'\n", what, rc,
                e->code, e->msg);
        abort();
    }
}

/* Errors only: the parsers log warnings the fuzzer would otherwise print millions of times. */
#define FUZZ_QUIET_INIT                                                                 \
    int LLVMFuzzerInitialize(int *argc, char ***argv)                                   \
    {                                                                                   \
        (void)argc;                                                                     \
        (void)argv;                                                                     \
        lip_log_set_level(LIP_LOG_ERROR);                                               \
        return 0;                                                                       \
    }

#endif
