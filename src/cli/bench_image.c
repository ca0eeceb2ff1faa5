/* SPDX-License-Identifier: MIT */
/* cli/bench_image.c: `lipsync bench image` (not built yet). */
#include "cli/cli.h"

int lip_bench_image(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    lip_cli_fail("bench", "the image benchmark is not available in this build yet");
    return 1;
}
