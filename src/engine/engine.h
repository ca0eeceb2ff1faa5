/* SPDX-License-Identifier: MIT */
/* engine: ONNX Runtime behind a small C API. An engine is one loaded model (an OrtSession),
 * immutable after creation and safe to run from many threads at once (ORT sessions are).
 * The engine checks the model's inputs and outputs against MODEL.md when asked to, runs
 * batches on caller-owned buffers without copying (tensors wrap the caller's memory), and
 * turns every OrtStatus into a lip_err in one place. */
#ifndef LIP_ENGINE_H
#define LIP_ENGINE_H

#include "core/core.h"

#include <stddef.h>
#include <stdint.h>

typedef struct lip_engine lip_engine;

enum lip_model_kind {
    LIP_MODEL_ANY = 0,      /* no I/O contract checked */
    LIP_MODEL_UNET,         /* input [B,6,320,320], audio [B,32,16,16] -> output [B,3,320,320] */
    LIP_MODEL_AUDIO_ENCODER /* one input [B,1,80,16] -> one output [B,512] */
};

/* UNet-328 tensor sizes (MODEL.md), in floats per frame. */
#define LIP_UNET_VISUAL_FLOATS (6 * 320 * 320)
#define LIP_UNET_AUDIO_FLOATS (32 * 16 * 16)
#define LIP_UNET_OUT_FLOATS (3 * 320 * 320)
#define LIP_ENC_IN_FLOATS (80 * 16)
#define LIP_ENC_OUT_FLOATS 512

typedef struct lip_engine_opts {
    const char *provider;   /* "cpu" (default), "cuda", "tensorrt", or "auto" (best available) */
    int device_id;          /* GPU ordinal for cuda/tensorrt */
    int intra_threads;      /* 0 = ORT default (one per physical core) */
    int inter_threads;      /* 0 = ORT default */
    size_t gpu_mem_limit;   /* bytes for the CUDA arena; 0 = no limit */
    bool cpu_arena;         /* ORT CPU memory arena (default true) */
    const char *trt_cache_dir; /* TensorRT engine cache; NULL = none */
    bool trt_fp16;          /* TensorRT: allow fp16 kernels */
    int log_level;          /* ORT logging severity 0..4 (default 3 = error) */
} lip_engine_opts;

lip_engine_opts lip_engine_opts_default(void);

/* Loads a model. With kind != LIP_MODEL_ANY the I/O names, ranks and fixed dimensions are
 * checked against MODEL.md and a mismatch is LIP_EMODEL with a message naming the tensor.
 * Returns NULL on failure (err says why). Thread-safe. */
lip_engine *lip_engine_new(const char *path, int kind, const lip_engine_opts *opts, lip_err *err);
/* Same, from model bytes in memory (copied by ORT). */
lip_engine *lip_engine_new_from_memory(const void *data, size_t len, int kind,
                                       const lip_engine_opts *opts, lip_err *err);
void lip_engine_free(lip_engine *e);

/* UNet: visual [B][6][320][320], audio [B][32][16][16] -> out [B][3][320][320]. The caller owns
 * all buffers; nothing is copied. Thread-safe. */
int lip_engine_run_unet(lip_engine *e, const float *visual, const float *audio, int batch,
                        float *out, lip_err *err);
/* Audio encoder: mel windows [B][1][80][16] -> features [B][512]. Thread-safe. */
int lip_engine_run_encoder(lip_engine *e, const float *mel, int batch, float *out, lip_err *err);

/* Generic run of a float32 model with n_in inputs (in model order). The output (first model
 * output) is allocated with lip_aligned_alloc and returned with its shape. */
typedef struct lip_tensor {
    float *data;
    int rank;
    int64_t shape[8];
} lip_tensor;
int lip_engine_run_f32(lip_engine *e, int n_in, const lip_tensor *inputs, lip_tensor *out,
                       lip_err *err);

/* Introspection. Strings are owned by the engine. */
int lip_engine_input_count(const lip_engine *e);
int lip_engine_output_count(const lip_engine *e);
/* Name, rank and dims (-1 for symbolic) of input/output i. */
const char *lip_engine_io(const lip_engine *e, bool output, int i, int *rank, int64_t dims[8]);
const char *lip_engine_provider(const lip_engine *e); /* "cpu", "cuda", "tensorrt" */
int lip_engine_device(const lip_engine *e);           /* -1 for CPU */
size_t lip_engine_model_bytes(const lip_engine *e);   /* size of the model file */

/* ONNX Runtime version string, and the execution providers this ORT build has (comma list). */
const char *lip_engine_ort_version(void);
int lip_engine_providers(char *out, size_t n);
bool lip_engine_has_provider(const char *name); /* "cuda", "tensorrt" */

#endif
