/* SPDX-License-Identifier: MIT */
/* cli/cmd_serve.c: `lipsync serve` (not built yet). */
#include "cli/cli.h"

#include <stdio.h>

int lip_cli_serve(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    lip_cli_fail("serve", "this command is not available in this build yet");
    return 1;
}
