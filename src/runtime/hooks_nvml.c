/* SPDX-License-Identifier: Apache-2.0 */
/* What NVML (nvidia-smi, pynvml, DCGM in the container) says about memory:
 * the same view as cuMemGetInfo, found through the GPU's UUID because NVML
 * numbers devices its own way. And the SM clock, which the library reads
 * itself for caps that refer to a clock (fx_nvml_sample_clock). */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "flexpu/log.h"
#include "runtime/rt.h"
#include "util/clock.h"

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
        *used = fx_ledger_used(&g->mem, NULL);
        return 0;
    }
    /* This process does not use the GPU (nvidia-smi): read the tenant's
     * ledger without joining it. */
    char dir[FX_STATE_DIR_MAX + FX_TENANT_NAME_MAX + 16];
    char path[sizeof(dir) + FX_UUID_MAX + 16];
    struct fx_ledger_handle ro;
    *used = 0;
    if (fx_ledger_dir(cfg, dir, sizeof(dir)) == 0 &&
        snprintf(path, sizeof(path), "%s/%s.ledger", dir, uuid) < (int)sizeof(path) &&
        fx_ledger_open_readonly(&ro, path, NULL) == 0) {
        *used = fx_ledger_used(&ro, NULL);
        fx_ledger_detach(&ro);
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

/* The SM clock, for a capped tenant whose cap refers to a clock
 * (cap_clock_mhz): the arbiter charges its slices at that clock's pace.
 * NVML is asked at most every CLOCK_SAMPLE_NS per process and GPU, from
 * launches that already wait for the GPU (a capped tenant's), never from the
 * fast path. */
#define CLOCK_SAMPLE_NS (2 * 1000 * 1000ull)
/* Above any GPU's clock; keeps a slice's sum of samples (state.h) within
 * 32 bits: a slice lasts at most ~220 ms, so it gets at most ~110 samples
 * per process, 28,000 from FX_MAX_PROCS processes, and 65535 x 28,000 fits. */
#define CLOCK_MAX_MHZ 65535u

static struct clock_probe {
    struct fx_gpu *g;
    nvmlDevice_t dev;
    uint64_t next_ns; /* no sample before then */
    int state;        /* 0 not looked up yet, 1 ready, -1 no clock to read */
} probes[FX_MAX_DEVICES];
static pthread_mutex_t probe_lock = PTHREAD_MUTEX_INITIALIZER;

/* The NVML device of `g`, found by UUID. NVML is initialised for the
 * library's own use (nvmlInit counts its callers; an application's
 * nvmlShutdown does not end it). Returns 0 or -1. */
static int clock_device(struct fx_gpu *g, nvmlDevice_t *dev)
{
    if (fx_nvml_load() != 0 || !fx_real.nvmlInit_v2 || !fx_real.nvmlDeviceGetHandleByUUID ||
        !fx_real.nvmlDeviceGetClockInfo)
        return -1;
    nvmlReturn_t r = fx_real.nvmlInit_v2();
    if (r == NVML_SUCCESS)
        r = fx_real.nvmlDeviceGetHandleByUUID(g->st->uuid, dev);
    return r == NVML_SUCCESS ? 0 : -1;
}

void fx_nvml_forget_all(void)
{
    pthread_mutex_t fresh = PTHREAD_MUTEX_INITIALIZER;
    probe_lock = fresh;
    memset(probes, 0, sizeof(probes));
}

void fx_nvml_sample_clock(struct fx_gpu *g)
{
    /* Under the node agent the tenant records are the agent's (read-only
     * here): a cap is charged in GPU time only (docs/SECURITY.md). */
    int me = g ? fx_gpu_tenant(g) : -1;
    if (me < 0 || g->agent)
        return;
    struct fx_gpu_state *st = g->st;
    struct fx_tenant_rec *tr = &st->tenants[me];
    if (!__atomic_load_n(&tr->cap_clock_mhz, __ATOMIC_RELAXED) ||
        __atomic_load_n(&tr->compute_cap, __ATOMIC_RELAXED) >= 100)
        return;
    /* One thread samples; the others launch on without waiting for it. */
    if (pthread_mutex_trylock(&probe_lock) != 0)
        return;
    uint64_t now = fx_mono_ns();
    struct clock_probe *p = NULL;
    for (int i = 0; i < FX_MAX_DEVICES && !p; i++)
        if (probes[i].g == g || !probes[i].g)
            p = &probes[i];
    if (!p || p->state < 0 || now < p->next_ns) {
        pthread_mutex_unlock(&probe_lock);
        return;
    }
    p->g = g;
    p->next_ns = now + CLOCK_SAMPLE_NS;
    if (p->state == 0) {
        p->state = clock_device(g, &p->dev) == 0 ? 1 : -1;
        if (p->state < 0)
            FX_WARN(COMP, "cannot read the GPU's SM clock from NVML; the cap is charged in GPU "
                    "time only, as without cap_clock_mhz", "uuid=%s cap_clock_mhz=%u", st->uuid,
                    (unsigned)tr->cap_clock_mhz);
    }
    unsigned int mhz = 0;
    if (p->state > 0 &&
        fx_real.nvmlDeviceGetClockInfo(p->dev, NVML_CLOCK_SM, &mhz) == NVML_SUCCESS && mhz) {
        if (mhz > CLOCK_MAX_MHZ)
            mhz = CLOCK_MAX_MHZ;
        /* Only while its tenant holds the GPU is the clock that of its
         * work: the samples of its slice, for charge() in arbiter.c. */
        if (__atomic_load_n(&st->arb.holder, __ATOMIC_SEQ_CST) == (uint32_t)me + 1) {
            __atomic_fetch_add(&tr->slice_clock, (1ull << 32) | mhz, __ATOMIC_SEQ_CST);
            __atomic_store_n(&tr->clock_mhz, mhz, __ATOMIC_RELAXED);
        }
    }
    pthread_mutex_unlock(&probe_lock);
}
