/* SPDX-License-Identifier: Apache-2.0 */
/* GPU discovery and health through NVML, loaded at run time. */
#include "node/gpus.h"

#include <ctype.h>
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/nvml_abi.h"

struct fx_nvml {
    void *lib;
    nvmlReturn_t (*init)(void);
    nvmlReturn_t (*shutdown)(void);
    const char *(*error_string)(nvmlReturn_t);
    nvmlReturn_t (*count)(unsigned int *);
    nvmlReturn_t (*handle)(unsigned int, nvmlDevice_t *);
    nvmlReturn_t (*uuid)(nvmlDevice_t, char *, unsigned int);
    nvmlReturn_t (*name)(nvmlDevice_t, char *, unsigned int);
    nvmlReturn_t (*memory)(nvmlDevice_t, nvmlMemory_t *);
    nvmlReturn_t (*minor)(nvmlDevice_t, unsigned int *);
    /* Optional: older drivers lack some. */
    nvmlReturn_t (*pci)(nvmlDevice_t, nvmlPciInfo_t *);
    nvmlReturn_t (*numa)(nvmlDevice_t, unsigned int *);
    nvmlReturn_t (*link_state)(nvmlDevice_t, unsigned int, nvmlEnableState_t *);
    nvmlReturn_t (*link_remote)(nvmlDevice_t, unsigned int, nvmlPciInfo_t *);
    nvmlReturn_t (*utilization)(nvmlDevice_t, nvmlUtilization_t *);
    nvmlReturn_t (*clock)(nvmlDevice_t, nvmlClockType_t, unsigned int *);
    nvmlDevice_t handles[FLEXPU_MAX_GPUS];
    char busids[FLEXPU_MAX_GPUS][32];
};

void fx_gpu_model_name(const char *product, char *out, size_t len)
{
    static const char *const prefixes[] = {"NVIDIA ", "Tesla "};
    for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++)
        if (strncmp(product, prefixes[i], strlen(prefixes[i])) == 0)
            product += strlen(prefixes[i]);
    size_t o = 0;
    for (; *product && o + 1 < len; product++)
        out[o++] = isspace((unsigned char)*product) ? '-' : *product;
    if (len)
        out[o] = '\0';
}

static const char *nv_err(struct fx_nvml *n, nvmlReturn_t r)
{
    return n->error_string ? n->error_string(r) : "NVML error";
}

const char *fx_nvml_strerror(struct fx_nvml *n, int code)
{
    return nv_err(n, code);
}

void *fx_nvml_sym(struct fx_nvml *n, const char *name)
{
    return dlsym(n->lib, name);
}

#define LOAD(field, sym, required)                                                         \
    do {                                                                                   \
        *(void **)&n->field = dlsym(n->lib, sym);                                          \
        if (required && !n->field) {                                                       \
            flexpu_error_set(err, FLEXPU_EIO, "NVML library '%s' has no %s", path, sym);   \
            goto fail;                                                                     \
        }                                                                                  \
    } while (0)

struct fx_nvml *fx_nvml_open(const char *path, struct flexpu_error *err)
{
    if (!path)
        path = "libnvidia-ml.so.1";
    struct fx_nvml *n = calloc(1, sizeof(*n));
    if (!n) {
        flexpu_error_set(err, FLEXPU_ENOMEM, "out of memory");
        return NULL;
    }
    n->lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!n->lib) {
        flexpu_error_set(err, FLEXPU_EIO, "cannot load NVML '%s': %s", path, dlerror());
        free(n);
        return NULL;
    }
    LOAD(error_string, "nvmlErrorString", 0);
    LOAD(init, "nvmlInit_v2", 1);
    LOAD(shutdown, "nvmlShutdown", 1);
    LOAD(count, "nvmlDeviceGetCount_v2", 1);
    LOAD(handle, "nvmlDeviceGetHandleByIndex_v2", 1);
    LOAD(uuid, "nvmlDeviceGetUUID", 1);
    LOAD(name, "nvmlDeviceGetName", 1);
    LOAD(memory, "nvmlDeviceGetMemoryInfo", 1);
    LOAD(minor, "nvmlDeviceGetMinorNumber", 1);
    LOAD(pci, "nvmlDeviceGetPciInfo_v3", 0);
    LOAD(numa, "nvmlDeviceGetNumaNodeId", 0);
    LOAD(link_state, "nvmlDeviceGetNvLinkState", 0);
    LOAD(link_remote, "nvmlDeviceGetNvLinkRemotePciInfo_v2", 0);
    LOAD(utilization, "nvmlDeviceGetUtilizationRates", 0);
    LOAD(clock, "nvmlDeviceGetClockInfo", 0);
    nvmlReturn_t r = n->init();
    if (r != NVML_SUCCESS) {
        flexpu_error_set(err, FLEXPU_EIO, "nvmlInit from '%s' failed: %s", path, nv_err(n, r));
        goto fail;
    }
    return n;
fail:
    dlclose(n->lib);
    free(n);
    return NULL;
}

void fx_nvml_close(struct fx_nvml *n)
{
    if (!n)
        return;
    n->shutdown();
    dlclose(n->lib);
    free(n);
}

/* NUMA node: NVML when it knows, else the PCI device's sysfs entry. */
static int numa_of(struct fx_nvml *n, nvmlDevice_t h, const char *busid)
{
    unsigned int node;
    if (n->numa && n->numa(h, &node) == NVML_SUCCESS)
        return (int)node;
    if (!busid[0])
        return -1;
    /* sysfs names use a 4-digit domain and lower case: 0000:3b:00.0 */
    char id[32];
    const char *b = busid;
    if (strlen(b) == 16) /* 00000000:3B:00.0 */
        b += 4;
    size_t i = 0;
    for (; b[i] && i + 1 < sizeof(id); i++)
        id[i] = (char)tolower((unsigned char)b[i]);
    id[i] = '\0';
    char path[96];
    snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/numa_node", id);
    FILE *f = fopen(path, "r");
    int v = -1;
    if (f) {
        if (fscanf(f, "%d", &v) != 1)
            v = -1;
        fclose(f);
    }
    return v;
}

static int find_root(int *parent, int i)
{
    while (parent[i] != i)
        i = parent[i] = parent[parent[i]];
    return i;
}

/* Groups GPUs linked by NVLink: directly (the remote is another GPU) or
 * through NVSwitches (the remote is no GPU of ours: every GPU reaching a
 * switch joins one group). Unlinked GPUs are groups of their own. */
static void nvlink_groups(struct fx_nvml *n, struct fx_node_gpu *gpus, int count)
{
    int parent[FLEXPU_MAX_GPUS];
    int switch_member = -1;
    for (int i = 0; i < count; i++)
        parent[i] = i;
    for (int i = 0; n->link_state && n->link_remote && i < count; i++) {
        for (unsigned int l = 0; l < FX_NVML_NVLINK_MAX_LINKS; l++) {
            nvmlEnableState_t on = 0;
            nvmlPciInfo_t remote;
            if (n->link_state(n->handles[i], l, &on) != NVML_SUCCESS || !on ||
                n->link_remote(n->handles[i], l, &remote) != NVML_SUCCESS)
                continue;
            int peer = -1;
            for (int j = 0; j < count; j++)
                if (j != i && strcasecmp(remote.busId, n->busids[j]) == 0)
                    peer = j;
            if (peer < 0) {
                if (switch_member < 0)
                    switch_member = i;
                peer = switch_member;
            }
            parent[find_root(parent, i)] = find_root(parent, peer);
        }
    }
    /* Number the groups 0.. in order of their first GPU. */
    int number[FLEXPU_MAX_GPUS];
    int next = 0;
    for (int i = 0; i < count; i++)
        number[i] = -1;
    for (int i = 0; i < count; i++) {
        int r = find_root(parent, i);
        if (number[r] < 0)
            number[r] = next++;
        gpus[i].group = number[r];
    }
}

int fx_nvml_discover(struct fx_nvml *n, struct fx_node_gpu *gpus, int max, int *count,
                     struct flexpu_error *err)
{
    unsigned int c = 0;
    nvmlReturn_t r = n->count(&c);
    if (r != NVML_SUCCESS)
        return flexpu_error_set(err, FLEXPU_EIO, "nvmlDeviceGetCount: %s", nv_err(n, r));
    if ((int)c > max || c > FLEXPU_MAX_GPUS)
        return flexpu_error_set(err, FLEXPU_ERANGE, "NVML reports %u GPUs; at most %d per node",
                                c, max < FLEXPU_MAX_GPUS ? max : FLEXPU_MAX_GPUS);
    for (unsigned int i = 0; i < c; i++) {
        struct fx_node_gpu *g = &gpus[i];
        memset(g, 0, sizeof(*g));
        g->index = (int)i;
        nvmlDevice_t h;
        char product[FX_NVML_NAME_LEN];
        nvmlMemory_t mem;
        unsigned int minor;
        if ((r = n->handle(i, &h)) != NVML_SUCCESS ||
            (r = n->uuid(h, g->uuid, sizeof(g->uuid))) != NVML_SUCCESS ||
            (r = n->name(h, product, sizeof(product))) != NVML_SUCCESS ||
            (r = n->minor(h, &minor)) != NVML_SUCCESS)
            return flexpu_error_set(err, FLEXPU_EIO, "NVML cannot describe GPU %u: %s", i,
                                    nv_err(n, r));
        n->handles[i] = h;
        g->handle = h;
        fx_gpu_model_name(product, g->model, sizeof(g->model));
        g->minor = (int)minor;
        nvmlPciInfo_t pci;
        n->busids[i][0] = '\0';
        if (n->pci && n->pci(h, &pci) == NVML_SUCCESS)
            snprintf(n->busids[i], sizeof(n->busids[i]), "%s", pci.busId);
        g->numa = numa_of(n, h, n->busids[i]);
        /* Memory is read here and by every health check: a lost GPU fails it. */
        r = n->memory(h, &mem);
        g->healthy = r == NVML_SUCCESS;
        g->mem_bytes = r == NVML_SUCCESS ? (int64_t)mem.total : 0;
        if (!g->healthy)
            snprintf(g->health_reason, sizeof(g->health_reason), "%s", nv_err(n, r));
    }
    nvlink_groups(n, gpus, (int)c);
    *count = (int)c;
    return 0;
}

int fx_nvml_check_health(struct fx_nvml *n, struct fx_node_gpu *gpus, int count)
{
    int changed = 0;
    for (int i = 0; i < count; i++) {
        nvmlMemory_t mem;
        /* A MIG device is probed through its own handle. */
        nvmlDevice_t h = gpus[i].handle ? (nvmlDevice_t)gpus[i].handle
                                        : n->handles[gpus[i].index];
        nvmlReturn_t r = n->memory(h, &mem);
        bool ok = r == NVML_SUCCESS;
        if (ok && gpus[i].mem_bytes == 0)
            gpus[i].mem_bytes = (int64_t)mem.total; /* unhealthy at discovery */
        if (ok != gpus[i].healthy) {
            gpus[i].healthy = ok;
            snprintf(gpus[i].health_reason, sizeof(gpus[i].health_reason), "%s",
                     ok ? "" : nv_err(n, r));
            changed++;
        }
    }
    return changed;
}

int fx_nvml_utilization(struct fx_nvml *n, const struct fx_node_gpu *g, int *milli,
                        struct flexpu_error *err)
{
    *milli = -1;
    if (!n->utilization)
        return 0; /* an NVML without the call */
    if (!g->handle && (g->index < 0 || g->index >= FLEXPU_MAX_GPUS))
        return flexpu_error_set(err, FLEXPU_EINVAL, "GPU %s: no NVML handle (index %d)", g->uuid,
                                g->index);
    nvmlDevice_t h = g->handle ? (nvmlDevice_t)g->handle : n->handles[g->index];
    nvmlUtilization_t u = {0};
    nvmlReturn_t r = n->utilization(h, &u);
    if (r == NVML_ERROR_NOT_SUPPORTED)
        return 0;
    if (r != NVML_SUCCESS)
        return flexpu_error_set(err, FLEXPU_EIO, "nvmlDeviceGetUtilizationRates of GPU %s: %s",
                                g->uuid, nv_err(n, r));
    /* A percent: anything above 100 is the driver's rounding, read as 100. */
    *milli = u.gpu > 100 ? 1000 : (int)u.gpu * 10;
    return 0;
}

int fx_nvml_sm_clock(struct fx_nvml *n, const struct fx_node_gpu *g, unsigned *mhz)
{
    *mhz = 0;
    if (!n->clock || (!g->handle && (g->index < 0 || g->index >= FLEXPU_MAX_GPUS)))
        return -1;
    nvmlDevice_t h = g->handle ? (nvmlDevice_t)g->handle : n->handles[g->index];
    unsigned int v = 0;
    if (n->clock(h, NVML_CLOCK_SM, &v) != NVML_SUCCESS || v == 0)
        return -1;
    *mhz = v;
    return 0;
}
