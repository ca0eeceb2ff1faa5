/* SPDX-License-Identifier: MIT */
/* cli: the `lipsync` command line. main.c dispatches to one function per subcommand; each
 * lives in cmd_<name>.c, parses its own flags (getopt_long), prints --help, and returns the
 * process exit status (0 ok, 1 runtime failure, 2 usage error). */
#ifndef LIP_CLI_H
#define LIP_CLI_H

#include <stdbool.h>
#include <stddef.h>

int lip_cli_version(int argc, char **argv);
int lip_cli_model(int argc, char **argv);
int lip_cli_bench(int argc, char **argv);
int lip_cli_audio(int argc, char **argv);
int lip_cli_render(int argc, char **argv);
int lip_cli_serve(int argc, char **argv);
int lip_cli_client(int argc, char **argv);
int lip_cli_avatar(int argc, char **argv);
/* `lipsync client stream` (cmd_client_stream.c; argv[0] is "stream"). */
int lip_cli_client_stream(int argc, char **argv);

/* Benchmarks behind `lipsync bench <name>` (argv[0] is the name); cmd_bench.c dispatches. */
int lip_bench_audio(int argc, char **argv);
int lip_bench_pipeline(int argc, char **argv);
int lip_bench_serve(int argc, char **argv);
int lip_bench_encode(int argc, char **argv);
int lip_bench_image(int argc, char **argv);
int lip_bench_registry(int argc, char **argv);
int lip_bench_separated(int argc, char **argv);
int lip_bench_stream(int argc, char **argv);

/* Prints "lipsync <cmd>: <msg>" to stderr. */
void lip_cli_fail(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* True if argv has -h/--help anywhere before a "--". */
bool lip_cli_wants_help(int argc, char **argv);
/* One line describing this machine (CPU model, CPU count, kernel) for benchmark headers. */
void lip_cli_machine(char *buf, size_t n);
/* True when stderr is a terminal (progress bars). */
bool lip_cli_tty(void);

#endif
