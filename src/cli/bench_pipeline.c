/* SPDX-License-Identifier: MIT */
/* cli/bench_pipeline.c: `lipsync bench pipeline` (not built yet). */
#include "cli/cli.h"

int lip_bench_pipeline(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    lip_cli_fail("bench", "the pipeline benchmark is not available in this build yet");
    return 1;
}
