/* SPDX-License-Identifier: MIT */
/* metrics/gpu.c: GPU memory for /metrics through NVML, the management library that ships with
 * the NVIDIA driver. It is loaded at run time (dlopen of libnvidia-ml.so.1), so the binary
 * neither links against it nor needs it: without the driver the GPU families are not
 * registered at all. NVML reports per device, whatever process holds the memory, which is what
 * an operator compares against the card's capacity. */
#include "metrics/metrics.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>

/* The few NVML entry points used, with their C types (nvml.h, stable since the v2 API). */
typedef struct nvml_memory {
    unsigned long long total, free, used;
} nvml_memory;
typedef int (*nvml_init_fn)(void);
typedef int (*nvml_count_fn)(unsigned int *);
typedef int (*nvml_handle_fn)(unsigned int, void **);
typedef int (*nvml_mem_fn)(void *, nvml_memory *);

#define GPU_MAX 64

static struct {
    pthread_once_t once;
    int n; /* devices whose handle was obtained */
    void *dev[GPU_MAX];
    unsigned int index[GPU_MAX]; /* their NVML index, the `gpu` label */
    nvml_mem_fn mem;
} nv = {PTHREAD_ONCE_INIT, 0, {0}, {0}, NULL};

static void nv_load(void)
{
    void *h = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!h) return;
    nvml_init_fn init = (nvml_init_fn)dlsym(h, "nvmlInit_v2");
    nvml_count_fn count = (nvml_count_fn)dlsym(h, "nvmlDeviceGetCount_v2");
    nvml_handle_fn handle = (nvml_handle_fn)dlsym(h, "nvmlDeviceGetHandleByIndex_v2");
    nvml_mem_fn mem = (nvml_mem_fn)dlsym(h, "nvmlDeviceGetMemoryInfo");
    unsigned int n = 0;
    if (!init || !count || !handle || !mem || init() != 0 || count(&n) != 0) {
        dlclose(h);
        return;
    }
    for (unsigned int i = 0; i < n && nv.n < GPU_MAX; i++)
        if (handle(i, &nv.dev[nv.n]) == 0) nv.index[nv.n++] = i;
    nv.mem = mem; /* the library stays loaded for the life of the process */
}

static void gpu_hook(lip_metrics *m, void *arg)
{
    (void)arg;
    for (int i = 0; i < nv.n; i++) {
        nvml_memory mi;
        if (nv.mem(nv.dev[i], &mi) != 0) continue;
        char id[16];
        snprintf(id, sizeof id, "%u", nv.index[i]);
        const char *lv[] = {id};
        lip_gauge_set(lip_metrics_gauge(m, LIP_METRIC_GPU_USED, lv, NULL), (double)mi.used);
        lip_gauge_set(lip_metrics_gauge(m, LIP_METRIC_GPU_TOTAL, lv, NULL), (double)mi.total);
    }
}

int lip_metrics_register_gpu(lip_metrics *m, lip_err *err)
{
    pthread_once(&nv.once, nv_load);
    if (!nv.n) return 0;
    int rc = lip_metrics_register(m, LIP_METRIC_GPU_USED, LIP_METRIC_GAUGE,
                                  "GPU memory in use on the device (all processes), bytes (NVML)",
                                  "gpu", err);
    if (!rc)
        rc = lip_metrics_register(m, LIP_METRIC_GPU_TOTAL, LIP_METRIC_GAUGE,
                                  "GPU memory of the device, bytes (NVML)", "gpu", err);
    if (!rc) rc = lip_metrics_on_scrape(m, gpu_hook, NULL, err);
    return rc ? rc : nv.n;
}
