/* SPDX-License-Identifier: MIT */
/* cli/main.c: `lipsync <command> [options]`. A table of subcommands, global --help, and
 * shared helpers for the command files. */
#include "cli/cli.h"
#include "core/core.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static const struct {
    const char *name;
    int (*fn)(int, char **);
    const char *help;
} commands[] = {
    {"serve", lip_cli_serve, "run a gRPC server (--role monolithic|inference|compositing)"},
    {"render", lip_cli_render, "render an avatar speaking a WAV to MP4 or an image sequence"},
    {"client", lip_cli_client, "call a running server's RPCs"},
    {"bench", lip_cli_bench, "measure speed and memory (`lipsync bench --help` lists them)"},
    {"audio", lip_cli_audio, "audio front end: features and mel of a WAV"},
    {"avatar", lip_cli_avatar, "import avatars from video, inspect them"},
    {"model", lip_cli_model, "inspect and run ONNX models (info, run)"},
    {"version", lip_cli_version, "print versions of lipsync and the libraries it links"},
};

static void usage(FILE *f)
{
    fprintf(f, "lipsync %s: real-time lip-sync serving\n\nusage: lipsync <command> [options]\n\n"
               "commands:\n", LIP_VERSION);
    for (size_t i = 0; i < LIP_ARRAY_LEN(commands); i++)
        fprintf(f, "  %-9s %s\n", commands[i].name, commands[i].help);
    fprintf(f, "\n`lipsync <command> --help` describes each command.\n");
}

void lip_cli_fail(const char *cmd, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "lipsync %s: %s\n", cmd, msg);
}

bool lip_cli_wants_help(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0) break;
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) return true;
    }
    return false;
}

bool lip_cli_tty(void) { return isatty(STDERR_FILENO); }

int main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "--version") == 0) return lip_cli_version(1, argv);
    for (size_t i = 0; i < LIP_ARRAY_LEN(commands); i++)
        if (strcmp(argv[1], commands[i].name) == 0) return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "lipsync: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
