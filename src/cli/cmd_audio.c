/* SPDX-License-Identifier: MIT */
/* cli/cmd_audio.c: `lipsync audio` (not built yet). */
#include "cli/cli.h"

#include <stdio.h>

int lip_cli_audio(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    lip_cli_fail("audio", "this command is not available in this build yet");
    return 1;
}
