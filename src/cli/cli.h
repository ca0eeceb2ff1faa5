/* SPDX-License-Identifier: MIT */
/* cli: the `lipsync` command line. main.c dispatches to one function per subcommand; each
 * lives in cmd_<name>.c, parses its own flags (getopt_long), prints --help, and returns the
 * process exit status (0 ok, 1 runtime failure, 2 usage error). */
#ifndef LIP_CLI_H
#define LIP_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct lip_err;
struct lip_avatar;
struct lip_avatar_paths;
struct lip_pipeline;
struct lip_pipeline_opts;
struct lip_service;
struct lip_service_opts;
struct lip_rpc_server;
struct lip_rpc_client;
struct lip_rpc_buf;

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
/* The CPU model from /proc/cpuinfo ("model name") into buf; buf is left as it is when there
 * is none. */
void lip_cli_cpu_model(char *buf, size_t n);
/* One line describing this machine (CPU model, CPU count, kernel) for benchmark headers. */
void lip_cli_machine(char *buf, size_t n);
/* True when stderr is a terminal (progress bars). */
bool lip_cli_tty(void);

/* Shared by several command files (common.c). */

/* True if s ends with suf, ignoring ASCII case. */
bool lip_cli_ends_with(const char *s, const char *suf);
/* What lip_cli_load_audio reads besides WAV. */
enum { LIP_CLI_AUDIO_NPY = 1, LIP_CLI_AUDIO_FFMPEG = 2 };
/* Loads an input audio file as mono 16 kHz float PCM (*pcm from lip_malloc), the reader chosen
 * by the name: with LIP_CLI_AUDIO_NPY a .npy is a 1-D float32/float64 array of 16 kHz samples;
 * with LIP_CLI_AUDIO_FFMPEG anything but a .wav goes through FFmpeg; the rest is read as WAV. */
int lip_cli_load_audio(const char *path, int kinds, float **pcm, size_t *n, struct lip_err *err);
/* Loads the avatar in dir (named id; ap may be NULL) and a one-slot pipeline with po's other
 * options, the avatar's UNet and the pipeline's audio encoder both on provider. On failure
 * both are NULL (nothing left to free) and the error code is returned. */
int lip_cli_avatar_pipeline(const char *dir, const char *id, const struct lip_avatar_paths *ap,
                            const char *provider, const struct lip_pipeline_opts *po,
                            struct lip_avatar **av, struct lip_pipeline **pl, struct lip_err *err);
/* The API key of a client command: the first line of file, else $LIPSYNC_API_KEY (never a
 * flag value, which other users could read in the process list). 0 with buf "" when there is
 * none; 2 after printing "lipsync <cmd>: ..." when the file cannot be read or its first line
 * is empty or does not fit in n - 1 characters. The file's bytes are zeroed after use. */
int lip_cli_api_key(const char *cmd, const char *file, char *buf, size_t n);
/* The value of a flag that takes one of two words: 0 for a, 1 for b, or -1 after printing
 * "lipsync <cmd>: --<flag> takes <a> or <b>, not '<arg>'". */
int lip_cli_choice(const char *cmd, const char *flag, const char *arg, const char *a,
                   const char *b);
/* qsort comparator: doubles, ascending. */
int lip_cli_cmp_double(const void *a, const void *b);
/* The p-th percentile (nearest rank) of n >= 1 sorted values. */
double lip_cli_percentile(const double *sorted, int n, double p);

/* Benchmarks (common.c). */

/* A number flag of a benchmark in lo..hi: 0, or 2 (the usage-error status) after printing
 * "lipsync bench: bad number '<arg>'". */
int lip_cli_bench_long(const char *arg, long lo, long hi, long *v);
/* A comma-separated list of client counts, each 1..max, at most cap of them, into levels
 * (*nlev of them; *maxc the largest, at least 1): 0, or 2 after printing the bad entry. */
int lip_cli_bench_clients(const char *arg, long max, int *levels, int cap, int *nlev, int *maxc);
/* A service with options so (pipeline_slots = threads) serving `service` on a free loopback
 * port with `threads` compute threads and room for `queued` waiting calls. *sv and *srv are
 * set as far as they got, also on failure: the caller shuts down and frees them. */
int lip_cli_bench_server(const struct lip_service_opts *so, const char *service, int threads,
                         int queued, struct lip_service **sv, struct lip_rpc_server **srv,
                         struct lip_err *err);
/* Speech-like PCM (220 Hz, 3 Hz envelope) for a request of batch frames from stream frame 8
 * with its full context: *n = (batch + 15) * 640 samples, from lip_malloc; NULL when out of
 * memory. */
float *lip_cli_bench_speech(int batch, size_t *n);
/* Packs the monolithic InferBatchComposite request for model: batch frames from stream frame 8,
 * pcm as raw 16 kHz audio, and vis (vis_len bytes) as client visual tensors unless NULL. */
int lip_cli_bench_request(const char *model, int batch, const float *pcm, size_t n_pcm,
                          const uint8_t *vis, size_t vis_len, struct lip_rpc_buf *out,
                          struct lip_err *err);
/* One unary call with a 120 s deadline, the response dropped: 0, or 1 with the transport error
 * or the status details in why. */
int lip_cli_bench_unary(struct lip_rpc_client *cl, const char *path, const uint8_t *req,
                        size_t len, char *why, size_t why_len);
/* One call of a benchmark case from client thread `thread` (0..conc-1): 0, or non-zero with
 * the reason in why. */
typedef int (*lip_cli_bench_call)(void *arg, int thread, char *why, size_t why_len);
/* The column heads of lip_cli_bench_case's lines, the case name in width columns. */
void lip_cli_bench_case_header(int width);
/* A timed case: conc threads each make `requests` calls one after the other. Prints one line:
 * name, conc, batch, frames/s (successful calls x batch over the wall time), p50 and p99
 * latency in ms, failures and the last failure's reason. 1 when nothing could run. */
int lip_cli_bench_case(const char *name, int width, int conc, int requests, int batch,
                       lip_cli_bench_call call, void *arg);

#endif
