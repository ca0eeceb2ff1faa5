/* SPDX-License-Identifier: MIT */
/* cli/bench_serve.c: `lipsync bench serve` (not built yet). */
#include "cli/cli.h"

int lip_bench_serve(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    lip_cli_fail("bench", "the serve benchmark is not available in this build yet");
    return 1;
}
