/* SPDX-License-Identifier: MIT */
/* cli/cmd_avatar.c: `lipsync avatar` (not built yet). */
#include "cli/cli.h"

#include <stdio.h>

int lip_cli_avatar(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    lip_cli_fail("avatar", "this command is not available in this build yet");
    return 1;
}
