/* SPDX-License-Identifier: Apache-2.0 */
/* The node's GPUs as NVML describes them. NVML is loaded at run time
 * (dlopen), so one flexpu-node image runs on nodes with any driver version,
 * and the tests use a fake library with the same ABI. */
#ifndef FX_NODE_GPUS_H
#define FX_NODE_GPUS_H

#include <stdbool.h>
#include <stdint.h>

#include "flexpu/error.h"
#include "flexpu/sched.h"
#include "kube/contract.h"

struct fx_node_gpu {
    char uuid[FX_UUID_MAX];
    char model[FLEXPU_NAME_MAX]; /* the product name, "NVIDIA " dropped, spaces as '-' */
    int64_t mem_bytes;
    int index;                   /* NVML index */
    int minor;                   /* /dev/nvidia<minor> */
    int numa;                    /* -1: unknown */
    int group;                   /* NVLink group: GPUs linked directly or through a switch */
    bool healthy;
    char health_reason[96];      /* why not healthy */
    /* A MIG device (--sharing-mode mig; mig.h): its GPU and compute
     * instance ids on the parent (index, minor: the parent's) and its
     * profile ("1g.10gb"). Allocated whole only. */
    bool mig;
    int mig_gi, mig_ci;
    char mig_profile[24];
    void *handle;                /* its NVML handle (the MIG device's for one) */
};

struct fx_nvml;

/* Loads NVML from `path` (NULL: "libnvidia-ml.so.1") and initialises it.
 * Errors name the library and NVML's message. */
struct fx_nvml *fx_nvml_open(const char *path, struct flexpu_error *err);
void fx_nvml_close(struct fx_nvml *n);

/* Fills gpus[0..*count) (at most max). */
int fx_nvml_discover(struct fx_nvml *n, struct fx_node_gpu *gpus, int max, int *count,
                     struct flexpu_error *err);

/* Probes each GPU again; a GPU NVML reports lost (or that fails its memory
 * query) becomes unhealthy, and healthy again when the query works. Returns
 * how many changed. */
int fx_nvml_check_health(struct fx_nvml *n, struct fx_node_gpu *gpus, int count);

/* The driver's own measure of how busy GPU g is (nvmlDeviceGetUtilizationRates'
 * `gpu`: the percent of its last sample period in which a kernel ran), in
 * thousandths. 0 with *milli -1 when the driver does not measure it (the
 * library lacks the call, or NVML_ERROR_NOT_SUPPORTED: MIG devices, some
 * products); another NVML error is FLEXPU_EIO naming the GPU. Safe from a
 * thread beside the one that probes health (NVML is thread-safe). */
int fx_nvml_utilization(struct fx_nvml *n, const struct fx_node_gpu *g, int *milli,
                        struct flexpu_error *err);

/* GPU g's SM clock now, in MHz (nvmlDeviceGetClockInfo): 0, or -1 when
 * the library lacks the call or the driver does not tell. For the agent's
 * arbiter (caps that refer to a clock: runtime/arbagent.h). */
int fx_nvml_sm_clock(struct fx_nvml *n, const struct fx_node_gpu *g, unsigned *mhz);

/* An NVML function of the loaded library by name, NULL when it has none
 * (mig.c loads the MIG calls this way), and NVML's text for a code. */
void *fx_nvml_sym(struct fx_nvml *n, const char *name);
const char *fx_nvml_strerror(struct fx_nvml *n, int code);

/* "NVIDIA A100-SXM4-80GB" -> "A100-SXM4-80GB"; exposed for tests. */
void fx_gpu_model_name(const char *product, char *out, size_t len);

#endif
