/* SPDX-License-Identifier: MIT */
/* cli/cmd_client.c: `lipsync client` (not built yet). */
#include "cli/cli.h"

#include <stdio.h>

int lip_cli_client(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    lip_cli_fail("client", "this command is not available in this build yet");
    return 1;
}
