/* SPDX-License-Identifier: MIT */
/* cli/bench_encode.c: `lipsync bench encode` (not built yet). */
#include "cli/cli.h"

int lip_bench_encode(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    lip_cli_fail("bench", "the encode benchmark is not available in this build yet");
    return 1;
}
