/* SPDX-License-Identifier: Apache-2.0 */
/* MIG in the fake libnvidia-ml.so.1: GPU instances (GIs), one compute
 * instance (CI) each at most, and the MIG devices they make, with the
 * ABI of nvml.h (node/nvml_mig_abi.h). The GPU is A100-like: 7 compute
 * slices, 8 memory eighths, five profiles:
 *   1g (id 19, 1 eighth of memory, at most 7, starts 0..6)
 *   2g (id 14, 2 eighths, at most 3, starts 0, 2, 4)
 *   3g (id 9,  4 eighths, at most 2, starts 0, 4)
 *   4g (id 5,  4 eighths, at most 1, start 0)
 *   7g (id 0,  8 eighths, at most 1, start 0)
 * A profile's memory is its eighths of FAKECUDA_TOTAL_MEM less 1/64 (the
 * driver keeps some), so with 80 GiB they read as 1g.10gb ... 7g.80gb.
 * A new GI takes the lowest free start its profile allows (so creating a
 * 3g before a 4g leaves no room for the 4g, as on the real GPU).
 *
 * Environment:
 *   FAKENVML_MIG        GPUs that have MIG: "all" or indices "0,2"; the
 *                       others answer NVML_ERROR_NOT_SUPPORTED
 *   FAKENVML_MIG_PROCS  a file of "<gpu> <gi id> <pid>" lines, read at each
 *                       query: processes running on that GI's MIG device
 *                       (its CI and GI cannot be destroyed: IN_USE)
 * Mode and instances are saved in FAKECUDA_DIR/nvml-mig.state after every
 * change and read by the first nvmlInit, so they outlive the process as
 * the real GPU's do. */
#include <limits.h>
#include <stddef.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fake_common.h"
#include "fake_nvml.h"

#define NVML_API __attribute__((visibility("default")))

#define SLICES 7
#define MAX_GI SLICES
#define STATE_MAGIC 0x4d494731u /* "MIG1" */

struct profile {
    unsigned id, slices, eighths, count, nstarts, starts[SLICES];
};

/* By NVML_GPU_INSTANCE_PROFILE_* index; 5 and up are not supported. */
static const struct profile profiles[] = {
    {19, 1, 1, 7, 7, {0, 1, 2, 3, 4, 5, 6}},
    {14, 2, 2, 3, 3, {0, 2, 4}},
    {9, 3, 4, 2, 2, {0, 4}},
    {5, 4, 4, 1, 1, {0}},
    {0, 7, 8, 1, 1, {0}},
};
#define NPROFILES (sizeof(profiles) / sizeof(profiles[0]))
/* Compute instance profiles by index: their slice counts. */
static const unsigned ci_slices[] = {1, 2, 3, 4, 7};
#define NCI (sizeof(ci_slices) / sizeof(ci_slices[0]))

struct mig_ci {
    unsigned used, id, profile; /* profile: compute instance profile index */
};
struct mig_gi {
    unsigned used, id, profile; /* profile: index in profiles[] */
    unsigned start;
    struct mig_ci ci;
};
struct mig_gpu {
    unsigned mode;
    struct mig_gi gi[MAX_GI];
};
/* A MIG device handle names its GPU and GI slot. */
struct mig_dev {
    unsigned gpu, slot;
};

static pthread_mutex_t mig_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned ngpu;
static unsigned capable; /* bit i: GPU i has MIG */
static char state_path[PATH_MAX];
static struct mig_gpu gpus[FAKE_MAX_DEVICES];
static struct mig_dev devs[FAKE_MAX_DEVICES][MAX_GI];

NVML_API nvmlReturn_t nvmlDeviceGetMigMode(nvmlDevice_t device, unsigned int *currentMode,
                                           unsigned int *pendingMode);
NVML_API nvmlReturn_t nvmlDeviceSetMigMode(nvmlDevice_t device, unsigned int mode,
                                           nvmlReturn_t *activationStatus);
NVML_API nvmlReturn_t nvmlDeviceGetGpuInstanceProfileInfo(nvmlDevice_t device, unsigned int profile,
                                                          nvmlGpuInstanceProfileInfo_t *info);
NVML_API nvmlReturn_t nvmlDeviceCreateGpuInstance(nvmlDevice_t device, unsigned int profileId,
                                                  nvmlGpuInstance_t *gpuInstance);
NVML_API nvmlReturn_t nvmlGpuInstanceDestroy(nvmlGpuInstance_t gpuInstance);
NVML_API nvmlReturn_t nvmlDeviceGetGpuInstances(nvmlDevice_t device, unsigned int profileId,
                                                nvmlGpuInstance_t *gpuInstances,
                                                unsigned int *count);
NVML_API nvmlReturn_t nvmlGpuInstanceGetInfo(nvmlGpuInstance_t gpuInstance,
                                             nvmlGpuInstanceInfo_t *info);
NVML_API nvmlReturn_t nvmlGpuInstanceGetComputeInstanceProfileInfo(
    nvmlGpuInstance_t gpuInstance, unsigned int profile, unsigned int engProfile,
    nvmlComputeInstanceProfileInfo_t *info);
NVML_API nvmlReturn_t nvmlGpuInstanceCreateComputeInstance(nvmlGpuInstance_t gpuInstance,
                                                           unsigned int profileId,
                                                           nvmlComputeInstance_t *computeInstance);
NVML_API nvmlReturn_t nvmlGpuInstanceGetComputeInstances(nvmlGpuInstance_t gpuInstance,
                                                         unsigned int profileId,
                                                         nvmlComputeInstance_t *computeInstances,
                                                         unsigned int *count);
NVML_API nvmlReturn_t nvmlComputeInstanceDestroy(nvmlComputeInstance_t computeInstance);
NVML_API nvmlReturn_t nvmlDeviceGetMaxMigDeviceCount(nvmlDevice_t device, unsigned int *count);
NVML_API nvmlReturn_t nvmlDeviceGetMigDeviceHandleByIndex(nvmlDevice_t device, unsigned int index,
                                                          nvmlDevice_t *migDevice);
NVML_API nvmlReturn_t nvmlDeviceIsMigDeviceHandle(nvmlDevice_t device, unsigned int *isMigDevice);
NVML_API nvmlReturn_t nvmlDeviceGetGpuInstanceId(nvmlDevice_t device, unsigned int *id);
NVML_API nvmlReturn_t nvmlDeviceGetComputeInstanceId(nvmlDevice_t device, unsigned int *id);
NVML_API nvmlReturn_t nvmlDeviceGetComputeRunningProcesses_v3(nvmlDevice_t device,
                                                              unsigned int *infoCount,
                                                              nvmlProcessInfo_t *infos);

void fake_mig_init(unsigned int device_count, const char *dir)
{
    pthread_mutex_lock(&mig_lock);
    ngpu = device_count;
    capable = 0;
    const char *s = getenv("FAKENVML_MIG");
    if (s && strcmp(s, "all") == 0)
        capable = (1u << device_count) - 1;
    while (s && *s && strcmp(s, "all") != 0) {
        char *end;
        unsigned long i = strtoul(s, &end, 10);
        if (end == s)
            break;
        if (i < device_count)
            capable |= 1u << i;
        s = *end == ',' ? end + 1 : "";
    }
    memset(gpus, 0, sizeof gpus);
    snprintf(state_path, sizeof state_path, "%s/nvml-mig.state", dir);
    FILE *f = fopen(state_path, "rb");
    if (f) {
        unsigned magic = 0;
        struct mig_gpu saved[FAKE_MAX_DEVICES];
        if (fread(&magic, sizeof magic, 1, f) == 1 && magic == STATE_MAGIC &&
            fread(saved, sizeof saved, 1, f) == 1)
            memcpy(gpus, saved, sizeof gpus);
        fclose(f);
    }
    for (unsigned g = 0; g < FAKE_MAX_DEVICES; g++)
        for (unsigned k = 0; k < MAX_GI; k++)
            devs[g][k] = (struct mig_dev){g, k};
    pthread_mutex_unlock(&mig_lock);
}

/* Writes the state (mig_lock held): a temporary file renamed over the old
 * one, so a reader never sees half of it. */
static void save(void)
{
    char tmp[PATH_MAX + 8];
    snprintf(tmp, sizeof tmp, "%s.tmp", state_path);
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", state_path);
    char *slash = strrchr(dir, '/');
    if (slash) {
        *slash = '\0';
        mkdir(dir, 0777);
    }
    FILE *f = fopen(tmp, "wb");
    if (!f)
        return;
    unsigned magic = STATE_MAGIC;
    int ok = fwrite(&magic, sizeof magic, 1, f) == 1 && fwrite(gpus, sizeof gpus, 1, f) == 1;
    if (fclose(f) != 0 || !ok || rename(tmp, state_path) != 0)
        unlink(tmp);
}

/* The processes FAKENVML_MIG_PROCS lists on GPU `gpu`, GI `gi` (0: any
 * GI); fills pids (up to max) and returns how many there are. */
static unsigned procs_on(unsigned gpu, unsigned gi, unsigned *pids, unsigned max)
{
    const char *path = getenv("FAKENVML_MIG_PROCS");
    FILE *f = path && *path ? fopen(path, "r") : NULL;
    unsigned n = 0, g, i, pid;
    while (f && fscanf(f, "%u %u %u", &g, &i, &pid) == 3)
        if (g == gpu && (gi == 0 || i == gi)) {
            if (n < max)
                pids[n] = pid;
            n++;
        }
    if (f)
        fclose(f);
    return n;
}

static unsigned long long profile_mib(const struct profile *p)
{
    unsigned long long total_mib = fake_nvml_total_mem() >> 20;
    return total_mib * p->eighths / 8 * 63 / 64;
}

/* The GPU index of a physical handle that has MIG, or -1 with *r set. */
static int mig_gpu_of(nvmlDevice_t device, nvmlReturn_t *r)
{
    int g = fake_nvml_index(device, r);
    if (g < 0)
        return -1;
    if (!(capable & (1u << g))) {
        *r = NVML_ERROR_NOT_SUPPORTED;
        return -1;
    }
    return g;
}

static struct mig_gi *gi_of(nvmlGpuInstance_t h, unsigned *gpu)
{
    uintptr_t off = (uintptr_t)h - (uintptr_t)gpus;
    if ((uintptr_t)h < (uintptr_t)gpus || off >= sizeof gpus)
        return NULL;
    unsigned g = (unsigned)(off / sizeof gpus[0]);
    uintptr_t rem = off % sizeof gpus[0];
    if (rem < offsetof(struct mig_gpu, gi) || g >= ngpu)
        return NULL;
    uintptr_t in = rem - offsetof(struct mig_gpu, gi);
    if (in % sizeof(struct mig_gi) || in / sizeof(struct mig_gi) >= MAX_GI)
        return NULL;
    struct mig_gi *gi = &gpus[g].gi[in / sizeof(struct mig_gi)];
    if (!gi->used)
        return NULL;
    *gpu = g;
    return gi;
}

static struct mig_gi *gi_of_ci(nvmlComputeInstance_t h, unsigned *gpu)
{
    return gi_of((nvmlGpuInstance_t)((char *)h - offsetof(struct mig_gi, ci)), gpu);
}

static struct mig_dev *dev_of(nvmlDevice_t h)
{
    uintptr_t off = (uintptr_t)h - (uintptr_t)devs;
    if ((uintptr_t)h < (uintptr_t)devs || off >= sizeof devs || off % sizeof devs[0][0])
        return NULL;
    struct mig_dev *d = (struct mig_dev *)h;
    if (d->gpu >= ngpu || !gpus[d->gpu].gi[d->slot].used || !gpus[d->gpu].gi[d->slot].ci.used)
        return NULL;
    return d;
}

int fake_mig_is_handle(nvmlDevice_t h)
{
    uintptr_t off = (uintptr_t)h - (uintptr_t)devs;
    return (uintptr_t)h >= (uintptr_t)devs && off < sizeof devs;
}

NVML_API nvmlReturn_t nvmlDeviceGetMigMode(nvmlDevice_t device, unsigned int *currentMode,
                                           unsigned int *pendingMode)
{
    nvmlReturn_t r;
    int g = mig_gpu_of(device, &r);
    if (g < 0)
        return r;
    if (!currentMode || !pendingMode)
        return NVML_ERROR_INVALID_ARGUMENT;
    pthread_mutex_lock(&mig_lock);
    *currentMode = *pendingMode = gpus[g].mode;
    pthread_mutex_unlock(&mig_lock);
    return NVML_SUCCESS;
}

/* Takes effect at once (as on a GPU the driver can reset); refused while
 * a GI exists (disable) or a process runs on the GPU. */
NVML_API nvmlReturn_t nvmlDeviceSetMigMode(nvmlDevice_t device, unsigned int mode,
                                           nvmlReturn_t *activationStatus)
{
    nvmlReturn_t r;
    int g = mig_gpu_of(device, &r);
    if (g < 0)
        return r;
    if (!activationStatus || mode > NVML_DEVICE_MIG_ENABLE)
        return NVML_ERROR_INVALID_ARGUMENT;
    unsigned pid;
    pthread_mutex_lock(&mig_lock);
    r = NVML_SUCCESS;
    for (unsigned k = 0; k < MAX_GI; k++)
        if (gpus[g].gi[k].used && mode == NVML_DEVICE_MIG_DISABLE)
            r = NVML_ERROR_IN_USE;
    if (r == NVML_SUCCESS && gpus[g].mode != mode && procs_on((unsigned)g, 0, &pid, 1))
        r = NVML_ERROR_IN_USE;
    if (r == NVML_SUCCESS) {
        gpus[g].mode = mode;
        save();
    }
    *activationStatus = r;
    pthread_mutex_unlock(&mig_lock);
    return r;
}

NVML_API nvmlReturn_t nvmlDeviceGetGpuInstanceProfileInfo(nvmlDevice_t device, unsigned int profile,
                                                          nvmlGpuInstanceProfileInfo_t *info)
{
    nvmlReturn_t r;
    if (mig_gpu_of(device, &r) < 0)
        return r;
    if (!info || profile >= NVML_GPU_INSTANCE_PROFILE_COUNT)
        return NVML_ERROR_INVALID_ARGUMENT;
    if (profile >= NPROFILES)
        return NVML_ERROR_NOT_SUPPORTED;
    const struct profile *p = &profiles[profile];
    memset(info, 0, sizeof(*info));
    info->id = p->id;
    info->isP2pSupported = 0;
    info->sliceCount = p->slices;
    info->instanceCount = p->count;
    info->multiprocessorCount = 14 * p->slices;
    info->copyEngineCount = p->slices;
    info->memorySizeMB = profile_mib(p);
    return NVML_SUCCESS;
}

static int profile_by_id(unsigned id)
{
    for (unsigned i = 0; i < NPROFILES; i++)
        if (profiles[i].id == id)
            return (int)i;
    return -1;
}

/* Whether slices [start, start+n) of GPU g are free (mig_lock held). */
static int slices_free(unsigned g, unsigned start, unsigned n)
{
    for (unsigned k = 0; k < MAX_GI; k++) {
        const struct mig_gi *gi = &gpus[g].gi[k];
        if (!gi->used)
            continue;
        unsigned s = gi->start, e = s + profiles[gi->profile].slices;
        if (start < e && s < start + n)
            return 0;
    }
    return 1;
}

NVML_API nvmlReturn_t nvmlDeviceCreateGpuInstance(nvmlDevice_t device, unsigned int profileId,
                                                  nvmlGpuInstance_t *gpuInstance)
{
    nvmlReturn_t r;
    int g = mig_gpu_of(device, &r);
    if (g < 0)
        return r;
    int pi = profile_by_id(profileId);
    if (!gpuInstance || pi < 0)
        return NVML_ERROR_INVALID_ARGUMENT;
    const struct profile *p = &profiles[pi];
    pthread_mutex_lock(&mig_lock);
    struct mig_gpu *mg = &gpus[g];
    r = mg->mode == NVML_DEVICE_MIG_ENABLE ? NVML_ERROR_INSUFFICIENT_RESOURCES
                                           : NVML_ERROR_NOT_SUPPORTED;
    unsigned same = 0, slot = MAX_GI, id = 1;
    for (unsigned k = 0; k < MAX_GI; k++) {
        same += mg->gi[k].used && mg->gi[k].profile == (unsigned)pi;
        if (!mg->gi[k].used && slot == MAX_GI)
            slot = k;
    }
    /* The lowest id no GI has. */
    for (int clash = 1; clash; ) {
        clash = 0;
        for (unsigned k = 0; k < MAX_GI; k++)
            if (mg->gi[k].used && mg->gi[k].id == id) {
                id++;
                clash = 1;
            }
    }
    for (unsigned s = 0; mg->mode == NVML_DEVICE_MIG_ENABLE && same < p->count && slot < MAX_GI &&
                         s < p->nstarts; s++)
        if (slices_free((unsigned)g, p->starts[s], p->slices)) {
            mg->gi[slot] = (struct mig_gi){.used = 1, .id = id, .profile = (unsigned)pi,
                                           .start = p->starts[s]};
            *gpuInstance = (nvmlGpuInstance_t)&mg->gi[slot];
            save();
            r = NVML_SUCCESS;
            break;
        }
    pthread_mutex_unlock(&mig_lock);
    return r;
}

NVML_API nvmlReturn_t nvmlGpuInstanceDestroy(nvmlGpuInstance_t gpuInstance)
{
    unsigned g, pid;
    pthread_mutex_lock(&mig_lock);
    struct mig_gi *gi = gi_of(gpuInstance, &g);
    nvmlReturn_t r = !gi                                ? NVML_ERROR_INVALID_ARGUMENT
                     : gi->ci.used || procs_on(g, gi->id, &pid, 1) ? NVML_ERROR_IN_USE
                                                                   : NVML_SUCCESS;
    if (r == NVML_SUCCESS) {
        memset(gi, 0, sizeof(*gi));
        save();
    }
    pthread_mutex_unlock(&mig_lock);
    return r;
}

NVML_API nvmlReturn_t nvmlDeviceGetGpuInstances(nvmlDevice_t device, unsigned int profileId,
                                                nvmlGpuInstance_t *gpuInstances,
                                                unsigned int *count)
{
    nvmlReturn_t r;
    int g = mig_gpu_of(device, &r);
    if (g < 0)
        return r;
    int pi = profile_by_id(profileId);
    if (!count || pi < 0)
        return NVML_ERROR_INVALID_ARGUMENT;
    pthread_mutex_lock(&mig_lock);
    unsigned n = 0;
    r = gpus[g].mode == NVML_DEVICE_MIG_ENABLE ? NVML_SUCCESS : NVML_ERROR_NOT_SUPPORTED;
    for (unsigned k = 0; r == NVML_SUCCESS && k < MAX_GI; k++)
        if (gpus[g].gi[k].used && gpus[g].gi[k].profile == (unsigned)pi) {
            if (n < *count && gpuInstances)
                gpuInstances[n] = (nvmlGpuInstance_t)&gpus[g].gi[k];
            n++;
        }
    if (r == NVML_SUCCESS && n > *count)
        r = NVML_ERROR_INSUFFICIENT_SIZE;
    *count = n;
    pthread_mutex_unlock(&mig_lock);
    return r;
}

NVML_API nvmlReturn_t nvmlGpuInstanceGetInfo(nvmlGpuInstance_t gpuInstance,
                                             nvmlGpuInstanceInfo_t *info)
{
    unsigned g;
    pthread_mutex_lock(&mig_lock);
    struct mig_gi *gi = gi_of(gpuInstance, &g);
    nvmlReturn_t r = gi && info ? NVML_SUCCESS : NVML_ERROR_INVALID_ARGUMENT;
    if (r == NVML_SUCCESS) {
        info->device = NULL; /* callers here know their parent */
        info->id = gi->id;
        info->profileId = profiles[gi->profile].id;
        info->placement.start = gi->start;
        info->placement.size = profiles[gi->profile].slices;
    }
    pthread_mutex_unlock(&mig_lock);
    return r;
}

NVML_API nvmlReturn_t nvmlGpuInstanceGetComputeInstanceProfileInfo(
    nvmlGpuInstance_t gpuInstance, unsigned int profile, unsigned int engProfile,
    nvmlComputeInstanceProfileInfo_t *info)
{
    unsigned g;
    pthread_mutex_lock(&mig_lock);
    struct mig_gi *gi = gi_of(gpuInstance, &g);
    unsigned gi_slices = gi ? profiles[gi->profile].slices : 0;
    pthread_mutex_unlock(&mig_lock);
    if (!gi || !info || profile >= NVML_COMPUTE_INSTANCE_PROFILE_COUNT ||
        engProfile != NVML_COMPUTE_INSTANCE_ENGINE_PROFILE_SHARED)
        return NVML_ERROR_INVALID_ARGUMENT;
    if (profile >= NCI || ci_slices[profile] > gi_slices)
        return NVML_ERROR_NOT_SUPPORTED;
    memset(info, 0, sizeof(*info));
    info->id = profile;
    info->sliceCount = ci_slices[profile];
    info->instanceCount = gi_slices / ci_slices[profile];
    info->multiprocessorCount = 14 * ci_slices[profile];
    return NVML_SUCCESS;
}

/* One CI per GI here (the node agent makes one spanning its GI). */
NVML_API nvmlReturn_t nvmlGpuInstanceCreateComputeInstance(nvmlGpuInstance_t gpuInstance,
                                                           unsigned int profileId,
                                                           nvmlComputeInstance_t *computeInstance)
{
    unsigned g;
    pthread_mutex_lock(&mig_lock);
    struct mig_gi *gi = gi_of(gpuInstance, &g);
    nvmlReturn_t r = NVML_SUCCESS;
    if (!gi || !computeInstance || profileId >= NCI)
        r = NVML_ERROR_INVALID_ARGUMENT;
    else if (ci_slices[profileId] > profiles[gi->profile].slices || gi->ci.used)
        r = NVML_ERROR_INSUFFICIENT_RESOURCES;
    if (r == NVML_SUCCESS) {
        gi->ci = (struct mig_ci){.used = 1, .id = 0, .profile = profileId};
        *computeInstance = (nvmlComputeInstance_t)&gi->ci;
        save();
    }
    pthread_mutex_unlock(&mig_lock);
    return r;
}

NVML_API nvmlReturn_t nvmlGpuInstanceGetComputeInstances(nvmlGpuInstance_t gpuInstance,
                                                         unsigned int profileId,
                                                         nvmlComputeInstance_t *computeInstances,
                                                         unsigned int *count)
{
    unsigned g;
    pthread_mutex_lock(&mig_lock);
    struct mig_gi *gi = gi_of(gpuInstance, &g);
    nvmlReturn_t r = gi && count && profileId < NVML_COMPUTE_INSTANCE_PROFILE_COUNT
                         ? NVML_SUCCESS
                         : NVML_ERROR_INVALID_ARGUMENT;
    if (r == NVML_SUCCESS) {
        unsigned n = gi->ci.used && gi->ci.profile == profileId;
        if (n && *count >= 1 && computeInstances)
            computeInstances[0] = (nvmlComputeInstance_t)&gi->ci;
        if (n > *count)
            r = NVML_ERROR_INSUFFICIENT_SIZE;
        *count = n;
    }
    pthread_mutex_unlock(&mig_lock);
    return r;
}

NVML_API nvmlReturn_t nvmlComputeInstanceDestroy(nvmlComputeInstance_t computeInstance)
{
    unsigned g, pid;
    pthread_mutex_lock(&mig_lock);
    struct mig_gi *gi = gi_of_ci(computeInstance, &g);
    nvmlReturn_t r = !gi || !gi->ci.used               ? NVML_ERROR_INVALID_ARGUMENT
                     : procs_on(g, gi->id, &pid, 1) ? NVML_ERROR_IN_USE
                                                    : NVML_SUCCESS;
    if (r == NVML_SUCCESS) {
        memset(&gi->ci, 0, sizeof(gi->ci));
        save();
    }
    pthread_mutex_unlock(&mig_lock);
    return r;
}

NVML_API nvmlReturn_t nvmlDeviceGetMaxMigDeviceCount(nvmlDevice_t device, unsigned int *count)
{
    nvmlReturn_t r;
    if (mig_gpu_of(device, &r) < 0)
        return r;
    if (!count)
        return NVML_ERROR_INVALID_ARGUMENT;
    *count = MAX_GI;
    return NVML_SUCCESS;
}

/* MIG devices are numbered in the order of their GI slots. */
NVML_API nvmlReturn_t nvmlDeviceGetMigDeviceHandleByIndex(nvmlDevice_t device, unsigned int index,
                                                          nvmlDevice_t *migDevice)
{
    nvmlReturn_t r;
    int g = mig_gpu_of(device, &r);
    if (g < 0)
        return r;
    if (!migDevice || index >= MAX_GI)
        return NVML_ERROR_INVALID_ARGUMENT;
    pthread_mutex_lock(&mig_lock);
    unsigned n = 0;
    r = NVML_ERROR_NOT_FOUND;
    for (unsigned k = 0; gpus[g].mode == NVML_DEVICE_MIG_ENABLE && k < MAX_GI; k++)
        if (gpus[g].gi[k].used && gpus[g].gi[k].ci.used && n++ == index) {
            *migDevice = (nvmlDevice_t)&devs[g][k];
            r = NVML_SUCCESS;
            break;
        }
    pthread_mutex_unlock(&mig_lock);
    return r;
}

NVML_API nvmlReturn_t nvmlDeviceIsMigDeviceHandle(nvmlDevice_t device, unsigned int *isMigDevice)
{
    if (!isMigDevice)
        return NVML_ERROR_INVALID_ARGUMENT;
    *isMigDevice = (unsigned)fake_mig_is_handle(device);
    return NVML_SUCCESS;
}

/* Runs fn on the MIG device behind h under the lock. */
#define WITH_DEV(h, d, body)                                                                       \
    do {                                                                                           \
        pthread_mutex_lock(&mig_lock);                                                             \
        struct mig_dev *d = dev_of(h);                                                             \
        nvmlReturn_t r_ = NVML_ERROR_INVALID_ARGUMENT;                                             \
        if (d) {                                                                                   \
            body;                                                                                  \
            r_ = NVML_SUCCESS;                                                                     \
        }                                                                                          \
        pthread_mutex_unlock(&mig_lock);                                                           \
        return r_;                                                                                 \
    } while (0)

NVML_API nvmlReturn_t nvmlDeviceGetGpuInstanceId(nvmlDevice_t device, unsigned int *id)
{
    if (!id)
        return NVML_ERROR_INVALID_ARGUMENT;
    if (!fake_mig_is_handle(device))
        return NVML_ERROR_NOT_SUPPORTED;
    WITH_DEV(device, d, *id = gpus[d->gpu].gi[d->slot].id);
}

NVML_API nvmlReturn_t nvmlDeviceGetComputeInstanceId(nvmlDevice_t device, unsigned int *id)
{
    if (!id)
        return NVML_ERROR_INVALID_ARGUMENT;
    if (!fake_mig_is_handle(device))
        return NVML_ERROR_NOT_SUPPORTED;
    WITH_DEV(device, d, *id = gpus[d->gpu].gi[d->slot].ci.id);
}

nvmlReturn_t fake_mig_uuid(nvmlDevice_t h, char *uuid, unsigned int length)
{
    if (!uuid)
        return NVML_ERROR_INVALID_ARGUMENT;
    if (length < 41)
        return NVML_ERROR_INSUFFICIENT_SIZE;
    /* "MIG-" and a UUID of its own: the parent's, with the GI id mixed in. */
    WITH_DEV(h, d, {
        unsigned char b[16];
        fake_uuid((int)d->gpu, b);
        b[0] = 'm';
        b[6] = (unsigned char)(0x40 | gpus[d->gpu].gi[d->slot].id);
        snprintf(uuid, length,
                 "MIG-%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
                 b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13],
                 b[14], b[15]);
    });
}

nvmlReturn_t fake_mig_memory(nvmlDevice_t h, nvmlMemory_t *memory)
{
    if (!memory)
        return NVML_ERROR_INVALID_ARGUMENT;
    WITH_DEV(h, d, {
        memory->total = profile_mib(&profiles[gpus[d->gpu].gi[d->slot].profile]) << 20;
        memory->free = memory->total;
        memory->used = 0;
    });
}

NVML_API nvmlReturn_t nvmlDeviceGetComputeRunningProcesses_v3(nvmlDevice_t device,
                                                              unsigned int *infoCount,
                                                              nvmlProcessInfo_t *infos)
{
    if (!infoCount)
        return NVML_ERROR_INVALID_ARGUMENT;
    unsigned gpu, gi = 0, ci = 0;
    nvmlReturn_t r;
    if (fake_mig_is_handle(device)) {
        pthread_mutex_lock(&mig_lock);
        struct mig_dev *d = dev_of(device);
        if (d) {
            gpu = d->gpu;
            gi = gpus[d->gpu].gi[d->slot].id;
        }
        pthread_mutex_unlock(&mig_lock);
        if (!d)
            return NVML_ERROR_INVALID_ARGUMENT;
    } else {
        int g = fake_nvml_index(device, &r);
        if (g < 0)
            return r;
        gpu = (unsigned)g;
    }
    unsigned pids[64];
    unsigned n = procs_on(gpu, gi, pids, 64);
    if (n > 64)
        n = 64;
    r = n > *infoCount ? NVML_ERROR_INSUFFICIENT_SIZE : NVML_SUCCESS;
    for (unsigned i = 0; r == NVML_SUCCESS && infos && i < n; i++)
        infos[i] = (nvmlProcessInfo_t){.pid = pids[i], .gpuInstanceId = gi,
                                       .computeInstanceId = ci};
    *infoCount = n;
    return r;
}
