/* SPDX-License-Identifier: Apache-2.0 */
/* What NVML (nvidia-smi, pynvml, DCGM in the container) says about memory:
 * the same view as cuMemGetInfo, found through the GPU's UUID because NVML
 * numbers devices its own way. */
#include <stdio.h>
#include <string.h>

#include "runtime/rt.h"

/* The quota and the tenant's usage on the GPU behind `device`; -1 when the
 * GPU is unknown to flexpu (then the real figures stand). */
static int tenant_view(nvmlDevice_t device, uint64_t phys_total, uint64_t *quota, uint64_t *used)
{
    if (!fx_real.nvmlDeviceGetUUID)
        return -1;
    char uuid[FX_UUID_MAX];
    if (fx_real.nvmlDeviceGetUUID(device, uuid, sizeof(uuid)) != NVML_SUCCESS)
        return -1;
    const struct fx_slice_config *cfg = fx_rt_config();
    *quota = cfg->memory_limit > 0 ? (uint64_t)cfg->memory_limit : phys_total;
    struct fx_gpu *g = fx_rt_gpu_by_uuid(uuid);
    if (g) {
        *used = fx_gpu_tenant_used(g);
        return 0;
    }
    /* This process does not use the GPU (nvidia-smi): read the shared state
     * without joining it. */
    char path[FX_STATE_DIR_MAX + FX_UUID_MAX + 16];
    snprintf(path, sizeof(path), "%s/%s.state", cfg->state_dir, uuid);
    struct fx_gpu ro;
    *used = 0;
    if (fx_gpu_open_readonly(&ro, path, NULL) == 0) {
        *used = fx_gpu_usage_of(&ro, cfg->tenant, NULL);
        fx_gpu_detach(&ro);
    }
    return 0;
}

/* A configuration that cannot be honoured hides the GPU's memory figures as
 * it hides CUDA. */
static nvmlReturn_t ready(void)
{
    CUresult rc = fx_rt_ready();
    if (rc == CUDA_ERROR_NOT_INITIALIZED)
        return NVML_ERROR_NO_PERMISSION;
    return fx_nvml_load() == 0 ? NVML_SUCCESS : NVML_ERROR_UNINITIALIZED;
}

/* Replaces the figures NVML gave with the tenant's view, as cuMemGetInfo
 * gives it. Returns 0 when it did. */
static int tell(nvmlDevice_t device, unsigned long long *total, unsigned long long *free,
                unsigned long long *used)
{
    uint64_t quota, u, t, f;
    if (tenant_view(device, *total, &quota, &u) != 0)
        return -1;
    fx_memory_view(quota, u, *total, *free, &t, &f);
    *total = t;
    *free = f;
    *used = u;
    return 0;
}

nvmlReturn_t nvmlDeviceGetMemoryInfo(nvmlDevice_t device, nvmlMemory_t *memory)
{
    nvmlReturn_t rc = ready();
    if (rc != NVML_SUCCESS)
        return rc;
    nvmlReturn_t r = fx_real.nvmlDeviceGetMemoryInfo(device, memory);
    if (r == NVML_SUCCESS && memory)
        tell(device, &memory->total, &memory->free, &memory->used);
    return r;
}

nvmlReturn_t nvmlDeviceGetMemoryInfo_v2(nvmlDevice_t device, nvmlMemory_v2_t *memory)
{
    nvmlReturn_t rc = ready();
    if (rc != NVML_SUCCESS)
        return rc;
    nvmlReturn_t r = fx_real.nvmlDeviceGetMemoryInfo_v2(device, memory);
    if (r == NVML_SUCCESS && memory && tell(device, &memory->total, &memory->free, &memory->used) == 0)
        memory->reserved = 0;
    return r;
}
