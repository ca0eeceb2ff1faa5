/* SPDX-License-Identifier: MIT */
/* cli/bench_audio.c: `lipsync bench audio` (not built yet). */
#include "cli/cli.h"

int lip_bench_audio(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    lip_cli_fail("bench", "the audio benchmark is not available in this build yet");
    return 1;
}
