/* SPDX-License-Identifier: MIT */
/* engine/engine.c: ONNX Runtime C API glue. One process-wide OrtEnv (created once), one
 * OrtSession per engine, execution provider chosen from the options, MODEL.md I/O checks, and
 * zero-copy runs: input and output OrtValues wrap caller buffers, so the hot path allocates
 * nothing but a few small OrtValue headers. All OrtStatus handling is in ort_check(). */
#include "engine/engine.h"

#include <onnxruntime_c_api.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_IO 4

struct lip_engine {
    OrtSession *sess;
    int kind;
    int n_in, n_out;
    char *in_name[MAX_IO], *out_name[MAX_IO];
    int in_rank[MAX_IO], out_rank[MAX_IO];
    int64_t in_dims[MAX_IO][8], out_dims[MAX_IO][8];
    int in_type[MAX_IO], out_type[MAX_IO];
    char provider[16];
    int device;
    size_t model_bytes;
};

static const OrtApi *ort;
static OrtEnv *ort_env;
static OrtMemoryInfo *cpu_mem;
static pthread_once_t ort_once = PTHREAD_ONCE_INIT;
static char ort_init_error[256];

/* Converts an OrtStatus to our error (and releases it). Returns 0 for NULL status. */
static int ort_check(OrtStatus *st, lip_err *err, const char *what)
{
    if (!st) return 0;
    OrtErrorCode c = ort->GetErrorCode(st);
    const char *m = ort->GetErrorMessage(st);
    int code = LIP_EENGINE;
    if (c == ORT_NO_SUCHFILE) code = LIP_ENOTFOUND;
    else if (c == ORT_INVALID_PROTOBUF || c == ORT_INVALID_GRAPH || c == ORT_NO_MODEL ||
             c == ORT_MODEL_LOADED || c == ORT_NOT_IMPLEMENTED)
        code = LIP_EMODEL;
    else if (c == ORT_INVALID_ARGUMENT) code = LIP_EINVAL;
    lip_err_set(err, code, "%s: %s", what, m ? m : "onnxruntime error");
    ort->ReleaseStatus(st);
    return code;
}

/* For calls that cannot fail on valid arguments (getters on objects we created). */
static void ort_ignore(OrtStatus *st)
{
    if (st) ort->ReleaseStatus(st);
}

static void ort_init(void)
{
    const OrtApiBase *base = OrtGetApiBase();
    ort = base ? base->GetApi(ORT_API_VERSION) : NULL;
    if (!ort) {
        snprintf(ort_init_error, sizeof ort_init_error,
                 "ONNX Runtime library does not provide C API version %d (library %s)",
                 ORT_API_VERSION, base ? base->GetVersionString() : "?");
        return;
    }
    OrtStatus *st = ort->CreateEnv(ORT_LOGGING_LEVEL_ERROR, "lipsync", &ort_env);
    if (!st) st = ort->CreateCpuMemoryInfo(OrtArenaAllocator, OrtMemTypeDefault, &cpu_mem);
    /* One CPU arena for every session of the process (sessions opt in with
     * session.use_env_allocators): with a private arena per session each loaded avatar keeps
     * the peak activations of its own runs, so N avatars hold N peaks. The arena grows by what
     * is asked (kSameAsRequested) rather than by powers of two up to 1 GiB, so what it holds
     * tracks the real peak instead of reserving twice of it. */
    OrtArenaCfg *ac = NULL;
    const char *ak[] = {"arena_extend_strategy"};
    const size_t av[] = {1};
    if (!st) st = ort->CreateArenaCfgV2(ak, av, 1, &ac);
    if (!st) st = ort->CreateAndRegisterAllocator(ort_env, cpu_mem, ac);
    if (ac) ort->ReleaseArenaCfg(ac);
    if (st) {
        snprintf(ort_init_error, sizeof ort_init_error, "ONNX Runtime init failed: %s",
                 ort->GetErrorMessage(st));
        ort->ReleaseStatus(st);
        ort_env = NULL;
    }
}

static int ensure_ort(lip_err *err)
{
    pthread_once(&ort_once, ort_init);
    if (!ort || !ort_env) return lip_err_set(err, LIP_EENGINE, "%s", ort_init_error);
    return 0;
}

const char *lip_engine_ort_version(void)
{
    const OrtApiBase *base = OrtGetApiBase();
    return base ? base->GetVersionString() : "unknown";
}

int lip_engine_providers(char *out, size_t n)
{
    if (ensure_ort(NULL)) return LIP_EENGINE;
    char **list = NULL;
    int cnt = 0;
    if (ort->GetAvailableProviders(&list, &cnt) != NULL) return LIP_EENGINE;
    size_t o = 0;
    out[0] = 0;
    for (int i = 0; i < cnt && o < n; i++)
        o += (size_t)snprintf(out + o, n - o, "%s%s", i ? "," : "", list[i]);
    ort_ignore(ort->ReleaseAvailableProviders(list, cnt));
    return 0;
}

bool lip_engine_has_provider(const char *name)
{
    char buf[512];
    if (lip_engine_providers(buf, sizeof buf)) return false;
    const char *want = strcmp(name, "cuda") == 0       ? "CUDAExecutionProvider"
                       : strcmp(name, "tensorrt") == 0 ? "TensorrtExecutionProvider"
                                                       : "CPUExecutionProvider";
    return strstr(buf, want) != NULL;
}

lip_engine_opts lip_engine_opts_default(void)
{
    lip_engine_opts o = {0};
    o.provider = "cpu";
    o.cpu_arena = true;
    o.log_level = 3;
    return o;
}

static int append_cuda(OrtSessionOptions *so, const lip_engine_opts *o, lip_err *err)
{
    OrtCUDAProviderOptionsV2 *cu = NULL;
    int rc = ort_check(ort->CreateCUDAProviderOptions(&cu), err, "CUDA provider options");
    if (rc) return rc;
    char dev[16], lim[32];
    snprintf(dev, sizeof dev, "%d", o->device_id);
    snprintf(lim, sizeof lim, "%zu", o->gpu_mem_limit);
    const char *keys[] = {"device_id", "arena_extend_strategy", "cudnn_conv_algo_search",
                          "do_copy_in_default_stream", "gpu_mem_limit"};
    const char *vals[] = {dev, "kSameAsRequested", "HEURISTIC", "1", lim};
    size_t nk = o->gpu_mem_limit ? 5 : 4;
    rc = ort_check(ort->UpdateCUDAProviderOptions(cu, keys, vals, nk), err, "CUDA provider options");
    if (!rc) rc = ort_check(ort->SessionOptionsAppendExecutionProvider_CUDA_V2(so, cu), err,
                            "CUDA execution provider");
    ort->ReleaseCUDAProviderOptions(cu);
    return rc;
}

static int append_trt(OrtSessionOptions *so, const lip_engine_opts *o, lip_err *err)
{
    OrtTensorRTProviderOptionsV2 *trt = NULL;
    int rc = ort_check(ort->CreateTensorRTProviderOptions(&trt), err, "TensorRT provider options");
    if (rc) return rc;
    char dev[16];
    snprintf(dev, sizeof dev, "%d", o->device_id);
    const char *keys[5] = {"device_id", "trt_fp16_enable"};
    const char *vals[5] = {dev, o->trt_fp16 ? "1" : "0"};
    size_t nk = 2;
    if (o->trt_cache_dir) {
        keys[nk] = "trt_engine_cache_enable";
        vals[nk++] = "1";
        keys[nk] = "trt_engine_cache_path";
        vals[nk++] = o->trt_cache_dir;
    }
    rc = ort_check(ort->UpdateTensorRTProviderOptions(trt, keys, vals, nk), err,
                   "TensorRT provider options");
    if (!rc) rc = ort_check(ort->SessionOptionsAppendExecutionProvider_TensorRT_V2(so, trt), err,
                            "TensorRT execution provider");
    ort->ReleaseTensorRTProviderOptions(trt);
    return rc;
}

/* Reads names, ranks and dims of inputs/outputs. */
static int read_io(lip_engine *e, lip_err *err)
{
    OrtAllocator *al;
    int rc = ort_check(ort->GetAllocatorWithDefaultOptions(&al), err, "allocator");
    if (rc) return rc;
    size_t ni, no;
    if ((rc = ort_check(ort->SessionGetInputCount(e->sess, &ni), err, "model inputs"))) return rc;
    if ((rc = ort_check(ort->SessionGetOutputCount(e->sess, &no), err, "model outputs"))) return rc;
    if (ni < 1 || ni > MAX_IO || no < 1 || no > MAX_IO)
        return lip_err_set(err, LIP_EMODEL, "model has %zu inputs and %zu outputs (supported: 1-%d each)",
                           ni, no, MAX_IO);
    e->n_in = (int)ni;
    e->n_out = (int)no;
    for (int pass = 0; pass < 2; pass++) {
        int n = pass ? e->n_out : e->n_in;
        for (int i = 0; i < n; i++) {
            char *name = NULL;
            OrtTypeInfo *ti = NULL;
            OrtStatus *st = pass ? ort->SessionGetOutputName(e->sess, (size_t)i, al, &name)
                                 : ort->SessionGetInputName(e->sess, (size_t)i, al, &name);
            if ((rc = ort_check(st, err, "model I/O name"))) return rc;
            char *copy = lip_strdup(name);
            ort_ignore(ort->AllocatorFree(al, name));
            if (!copy) return lip_err_set(err, LIP_ENOMEM, "out of memory");
            (pass ? e->out_name : e->in_name)[i] = copy;
            st = pass ? ort->SessionGetOutputTypeInfo(e->sess, (size_t)i, &ti)
                      : ort->SessionGetInputTypeInfo(e->sess, (size_t)i, &ti);
            if ((rc = ort_check(st, err, "model I/O type"))) return rc;
            const OrtTensorTypeAndShapeInfo *tsi = NULL;
            st = ort->CastTypeInfoToTensorInfo(ti, &tsi);
            if (st || !tsi) {
                if (st) ort->ReleaseStatus(st);
                ort->ReleaseTypeInfo(ti);
                return lip_err_set(err, LIP_EMODEL, "model %s '%s' is not a tensor",
                                   pass ? "output" : "input", copy);
            }
            size_t rank = 0;
            ONNXTensorElementDataType et;
            ort_ignore(ort->GetDimensionsCount(tsi, &rank));
            ort_ignore(ort->GetTensorElementType(tsi, &et));
            if (rank > 8) rank = 8;
            int64_t *dims = pass ? e->out_dims[i] : e->in_dims[i];
            ort_ignore(ort->GetDimensions(tsi, dims, rank));
            (pass ? e->out_rank : e->in_rank)[i] = (int)rank;
            (pass ? e->out_type : e->in_type)[i] = (int)et;
            ort->ReleaseTypeInfo(ti);
        }
    }
    return 0;
}

/* Checks one tensor against an expected shape (first dim is the batch: any value allowed). */
static int check_shape(const char *what, const char *name, int rank, const int64_t *dims, int type,
                       int want_rank, const int64_t *want, lip_err *err)
{
    if (type != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT)
        return lip_err_set(err, LIP_EMODEL, "%s '%s' has element type %d, expected float32", what,
                           name, type);
    bool ok = rank == want_rank;
    for (int d = 1; ok && d < rank; d++)
        if (dims[d] > 0 && dims[d] != want[d]) ok = false;
    if (!ok) {
        char got[96] = "", exp[96] = "";
        size_t g = 0, x = 0;
        for (int d = 0; d < rank && g < sizeof got; d++)
            g += (size_t)snprintf(got + g, sizeof got - g, "%s%lld", d ? "," : "", (long long)dims[d]);
        for (int d = 0; d < want_rank && x < sizeof exp; d++)
            x += (size_t)snprintf(exp + x, sizeof exp - x, "%s%s", d ? "," : "", d ? "" : "B");
        x = 0;
        for (int d = 0; d < want_rank && x < sizeof exp; d++)
            x += d ? (size_t)snprintf(exp + x, sizeof exp - x, ",%lld", (long long)want[d])
                   : (size_t)snprintf(exp + x, sizeof exp - x, "B");
        return lip_err_set(err, LIP_EMODEL, "%s '%s' has shape [%s], expected [%s]", what, name,
                           got, exp);
    }
    return 0;
}

static int find_in(const lip_engine *e, const char *name)
{
    for (int i = 0; i < e->n_in; i++)
        if (strcmp(e->in_name[i], name) == 0) return i;
    return -1;
}

static int check_contract(lip_engine *e, lip_err *err)
{
    static const int64_t vis[] = {-1, 6, 320, 320}, aud[] = {-1, 32, 16, 16},
                         out[] = {-1, 3, 320, 320}, mel[] = {-1, 1, 80, 16}, feat[] = {-1, 512};
    if (e->kind == LIP_MODEL_UNET) {
        int iv = find_in(e, "input"), ia = find_in(e, "audio");
        if (e->n_in != 2 || iv < 0 || ia < 0)
            return lip_err_set(err, LIP_EMODEL,
                               "UNet must have exactly the inputs 'input' and 'audio' (MODEL.md); "
                               "this model has %d input(s), the first named '%s'",
                               e->n_in, e->in_name[0]);
        int oi = -1;
        for (int i = 0; i < e->n_out; i++)
            if (strcmp(e->out_name[i], "output") == 0) oi = i;
        if (oi < 0) oi = 0;
        int rc = check_shape("UNet input", "input", e->in_rank[iv], e->in_dims[iv], e->in_type[iv], 4, vis, err);
        if (!rc) rc = check_shape("UNet input", "audio", e->in_rank[ia], e->in_dims[ia], e->in_type[ia], 4, aud, err);
        if (!rc) rc = check_shape("UNet output", e->out_name[oi], e->out_rank[oi], e->out_dims[oi],
                                  e->out_type[oi], 4, out, err);
        return rc;
    }
    if (e->kind == LIP_MODEL_AUDIO_ENCODER) {
        if (e->n_in != 1 || e->n_out != 1)
            return lip_err_set(err, LIP_EMODEL,
                               "audio encoder must have one input and one output, has %d and %d",
                               e->n_in, e->n_out);
        int rc = check_shape("audio encoder input", e->in_name[0], e->in_rank[0], e->in_dims[0],
                             e->in_type[0], 4, mel, err);
        if (!rc) rc = check_shape("audio encoder output", e->out_name[0], e->out_rank[0], e->out_dims[0],
                                  e->out_type[0], 2, feat, err);
        return rc;
    }
    return 0;
}

static lip_engine *engine_new(const char *path, const void *data, size_t len, int kind,
                              const lip_engine_opts *opts, lip_err *err)
{
    if (ensure_ort(err)) return NULL;
    lip_engine_opts o = opts ? *opts : lip_engine_opts_default();
    const char *prov = o.provider ? o.provider : "cpu";
    if (strcmp(prov, "auto") == 0)
        prov = lip_engine_has_provider("tensorrt") ? "tensorrt"
               : lip_engine_has_provider("cuda")   ? "cuda"
                                                   : "cpu";
    if (strcmp(prov, "cpu") && strcmp(prov, "cuda") && strcmp(prov, "tensorrt")) {
        lip_err_set(err, LIP_EINVAL, "unknown execution provider '%s' (cpu, cuda, tensorrt, auto)", prov);
        return NULL;
    }
    if (path) {
        struct stat st;
        if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) {
            lip_err_set(err, LIP_ENOTFOUND, "model file %s not found", path);
            return NULL;
        }
        len = (size_t)st.st_size;
    }
    lip_engine *e = lip_calloc(1, sizeof *e);
    OrtSessionOptions *so = NULL;
    if (!e) {
        lip_err_set(err, LIP_ENOMEM, "out of memory");
        return NULL;
    }
    e->kind = kind;
    e->model_bytes = len;
    e->device = -1;
    lip_strlcpy(e->provider, prov, sizeof e->provider);
    int rc = ort_check(ort->CreateSessionOptions(&so), err, "session options");
    if (!rc && o.intra_threads > 0)
        rc = ort_check(ort->SetIntraOpNumThreads(so, o.intra_threads), err, "intra-op threads");
    if (!rc && o.inter_threads > 0)
        rc = ort_check(ort->SetInterOpNumThreads(so, o.inter_threads), err, "inter-op threads");
    if (!rc) rc = ort_check(ort->SetSessionGraphOptimizationLevel(so, ORT_ENABLE_ALL), err, "graph optimization");
    /* Flush denormals to zero on the CPU: seeded or trained weights can drive activations into
     * the denormal range, where x86 arithmetic is tens of times slower, and a value below
     * 1e-38 cannot change an 8-bit pixel. */
    if (!rc) rc = ort_check(ort->AddSessionConfigEntry(so, "session.set_denormal_as_zero", "1"), err,
                            "denormals as zero");
    if (!rc && !o.cpu_arena) rc = ort_check(ort->DisableCpuMemArena(so), err, "cpu arena");
    if (!rc && o.cpu_arena)
        rc = ort_check(ort->AddSessionConfigEntry(so, "session.use_env_allocators", "1"), err,
                       "shared cpu arena");
    if (!rc) rc = ort_check(ort->SetSessionLogSeverityLevel(so, o.log_level), err, "log level");
    if (!rc && strcmp(prov, "tensorrt") == 0) {
        rc = append_trt(so, &o, err);
        if (!rc) rc = append_cuda(so, &o, err); /* CUDA takes what TensorRT cannot */
        e->device = o.device_id;
    } else if (!rc && strcmp(prov, "cuda") == 0) {
        rc = append_cuda(so, &o, err);
        e->device = o.device_id;
    }
    if (rc) goto fail;
    OrtStatus *st = path ? ort->CreateSession(ort_env, path, so, &e->sess)
                         : ort->CreateSessionFromArray(ort_env, data, len, so, &e->sess);
    if ((rc = ort_check(st, err, "loading model"))) goto fail;
    ort->ReleaseSessionOptions(so);
    so = NULL;
    if ((rc = read_io(e, err)) || (rc = check_contract(e, err))) goto fail;
    return e;
fail:
    if (so) ort->ReleaseSessionOptions(so);
    if (path && err) lip_err_prefix(err, "%s", path);
    lip_engine_free(e);
    return NULL;
}

lip_engine *lip_engine_new(const char *path, int kind, const lip_engine_opts *opts, lip_err *err)
{
    return engine_new(path, NULL, 0, kind, opts, err);
}

lip_engine *lip_engine_new_from_memory(const void *data, size_t len, int kind,
                                       const lip_engine_opts *opts, lip_err *err)
{
    return engine_new(NULL, data, len, kind, opts, err);
}

void lip_engine_free(lip_engine *e)
{
    if (!e) return;
    if (e->sess) ort->ReleaseSession(e->sess);
    for (int i = 0; i < MAX_IO; i++) {
        lip_free(e->in_name[i]);
        lip_free(e->out_name[i]);
    }
    lip_free(e);
}

/* ONNX Runtime's intra-op pool uses the calling thread as one of its workers, and the session's
 * denormals-as-zero option covers only the pool's own threads: set flush-to-zero and
 * denormals-are-zero on every thread that calls Run, once. */
static void caller_ftz(void)
{
#if defined(__x86_64__) || defined(__i386__)
    static _Thread_local bool done;
    if (!done) {
        unsigned csr;
        __asm__ volatile("stmxcsr %0" : "=m"(csr));
        csr |= 0x8040u; /* FTZ (bit 15) | DAZ (bit 6) */
        __asm__ volatile("ldmxcsr %0" : : "m"(csr));
        done = true;
    }
#endif
}

/* Wraps a caller buffer as a float tensor (no copy). */
static int wrap(float *data, const int64_t *shape, int rank, OrtValue **v, lip_err *err)
{
    size_t n = 1;
    for (int i = 0; i < rank; i++) n *= (size_t)shape[i];
    return ort_check(ort->CreateTensorWithDataAsOrtValue(cpu_mem, data, n * sizeof(float), shape,
                                                         (size_t)rank,
                                                         ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT, v),
                     err, "creating tensor");
}

/* Runs with n_in wrapped inputs (in model order) and one wrapped output. */
static int run_wrapped(lip_engine *e, OrtValue **in, int n_in, OrtValue *out, int out_index,
                       lip_err *err)
{
    const char *in_names[MAX_IO], *out_names[1] = {e->out_name[out_index]};
    for (int i = 0; i < n_in; i++) in_names[i] = e->in_name[i];
    OrtValue *outs[1] = {out};
    caller_ftz();
    return ort_check(ort->Run(e->sess, NULL, in_names, (const OrtValue *const *)in, (size_t)n_in,
                              out_names, 1, outs),
                     err, "inference");
}

int lip_engine_run_unet(lip_engine *e, const float *visual, const float *audio, int batch,
                        float *out, lip_err *err)
{
    if (batch < 1) return lip_err_set(err, LIP_EINVAL, "batch must be >= 1, got %d", batch);
    const int64_t vs[] = {batch, 6, 320, 320}, as[] = {batch, 32, 16, 16}, os[] = {batch, 3, 320, 320};
    OrtValue *in[2] = {NULL, NULL}, *o = NULL;
    int iv = find_in(e, "input");
    if (iv < 0 || e->n_in != 2) return lip_err_set(err, LIP_EMODEL, "model is not a UNet-328");
    int ia = 1 - iv;
    int oi = 0;
    for (int i = 0; i < e->n_out; i++)
        if (strcmp(e->out_name[i], "output") == 0) oi = i;
    int rc = wrap((float *)visual, vs, 4, &in[iv], err);
    if (!rc) rc = wrap((float *)audio, as, 4, &in[ia], err);
    if (!rc) rc = wrap(out, os, 4, &o, err);
    if (!rc) rc = run_wrapped(e, in, 2, o, oi, err);
    for (int i = 0; i < 2; i++)
        if (in[i]) ort->ReleaseValue(in[i]);
    if (o) ort->ReleaseValue(o);
    return rc;
}

int lip_engine_run_encoder(lip_engine *e, const float *mel, int batch, float *out, lip_err *err)
{
    if (batch < 1) return lip_err_set(err, LIP_EINVAL, "batch must be >= 1, got %d", batch);
    const int64_t ms[] = {batch, 1, 80, 16}, os[] = {batch, 512};
    OrtValue *in = NULL, *o = NULL;
    int rc = wrap((float *)mel, ms, 4, &in, err);
    if (!rc) rc = wrap(out, os, 2, &o, err);
    if (!rc) rc = run_wrapped(e, &in, 1, o, 0, err);
    if (in) ort->ReleaseValue(in);
    if (o) ort->ReleaseValue(o);
    return rc;
}

int lip_engine_run_f32(lip_engine *e, int n_in, const lip_tensor *inputs, lip_tensor *out,
                       lip_err *err)
{
    memset(out, 0, sizeof *out);
    if (n_in != e->n_in)
        return lip_err_set(err, LIP_EINVAL, "model takes %d inputs, %d given", e->n_in, n_in);
    OrtValue *in[MAX_IO] = {0}, *o = NULL;
    int rc = 0;
    for (int i = 0; i < n_in && !rc; i++)
        rc = wrap(inputs[i].data, inputs[i].shape, inputs[i].rank, &in[i], err);
    const char *in_names[MAX_IO], *out_names[1] = {e->out_name[0]};
    for (int i = 0; i < n_in; i++) in_names[i] = e->in_name[i];
    caller_ftz();
    if (!rc)
        rc = ort_check(ort->Run(e->sess, NULL, in_names, (const OrtValue *const *)in, (size_t)n_in,
                                out_names, 1, &o),
                       err, "inference");
    if (!rc) {
        OrtTensorTypeAndShapeInfo *info = NULL;
        rc = ort_check(ort->GetTensorTypeAndShape(o, &info), err, "output shape");
        size_t rank = 0, count = 0;
        float *src = NULL;
        if (!rc) {
            ort_ignore(ort->GetDimensionsCount(info, &rank));
            if (rank > 8) rank = 8;
            ort_ignore(ort->GetDimensions(info, out->shape, rank));
            ort_ignore(ort->GetTensorShapeElementCount(info, &count));
            ort->ReleaseTensorTypeAndShapeInfo(info);
            rc = ort_check(ort->GetTensorMutableData(o, (void **)&src), err, "output data");
        }
        if (!rc) {
            out->rank = (int)rank;
            out->data = lip_aligned_alloc(count * sizeof(float) + 1);
            if (!out->data) rc = lip_err_set(err, LIP_ENOMEM, "out of memory for output");
            else memcpy(out->data, src, count * sizeof(float));
        }
    }
    for (int i = 0; i < n_in; i++)
        if (in[i]) ort->ReleaseValue(in[i]);
    if (o) ort->ReleaseValue(o);
    return rc;
}

int lip_engine_input_count(const lip_engine *e) { return e->n_in; }
int lip_engine_output_count(const lip_engine *e) { return e->n_out; }

const char *lip_engine_io(const lip_engine *e, bool output, int i, int *rank, int64_t dims[8])
{
    if (i < 0 || i >= (output ? e->n_out : e->n_in)) return NULL;
    int r = output ? e->out_rank[i] : e->in_rank[i];
    if (rank) *rank = r;
    if (dims) memcpy(dims, output ? e->out_dims[i] : e->in_dims[i], sizeof(int64_t) * (size_t)r);
    return output ? e->out_name[i] : e->in_name[i];
}

const char *lip_engine_provider(const lip_engine *e) { return e->provider; }
int lip_engine_device(const lip_engine *e) { return e->device; }
size_t lip_engine_model_bytes(const lip_engine *e) { return e->model_bytes; }
