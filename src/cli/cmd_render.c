/* SPDX-License-Identifier: MIT */
/* cli/cmd_render.c: `lipsync render` (not built yet). */
#include "cli/cli.h"

#include <stdio.h>

int lip_cli_render(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    lip_cli_fail("render", "this command is not available in this build yet");
    return 1;
}
