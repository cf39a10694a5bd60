/* SPDX-License-Identifier: Apache-2.0 */
/* MIG partitions as whole GPUs (see mig.h for the design). */
#include "node/mig.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "flexpu/log.h"
#include "node/nvml_mig_abi.h"

#define COMP "mig"
#define FIELD "--mig-layout"
#define MAX_GI 16   /* GIs one GPU may have (7 on A100/H100) */
#define MAX_PROCS 64

/* ---- the layout ---- */

/* "<digits>g.<digits>gb", optionally "+me" (the media-extension profiles). */
static bool profile_name_ok(const char *s, size_t n)
{
    size_t i = 0, d = 0;
    while (i < n && isdigit((unsigned char)s[i]))
        i++, d++;
    if (!d || i + 2 > n || s[i] != 'g' || s[i + 1] != '.')
        return false;
    i += 2;
    for (d = 0; i < n && isdigit((unsigned char)s[i]); i++)
        d++;
    if (!d || i + 2 > n || s[i] != 'g' || s[i + 1] != 'b')
        return false;
    i += 2;
    return i == n || (n - i == 3 && memcmp(s + i, "+me", 3) == 0);
}

int fx_mig_layout_parse(const char *text, struct fx_mig_layout *out, struct flexpu_error *err)
{
    memset(out, 0, sizeof(*out));
    if (!text || !*text)
        return flexpu_error_field(err, FLEXPU_EINVAL, FIELD, "", 0,
                                  "empty: name the MIG profiles each GPU gets, as "
                                  "'1g.10gb*7' or '3g.40gb,4g.40gb'");
    const char *p = text;
    for (;;) {
        size_t n = strcspn(p, ",");
        const char *star = memchr(p, '*', n);
        size_t name_len = star ? (size_t)(star - p) : n;
        long count = 1;
        if (star) {
            char num[16];
            size_t cl = n - name_len - 1;
            char *end = NULL;
            if (cl > 0 && cl < sizeof(num)) {
                memcpy(num, star + 1, cl);
                num[cl] = '\0';
                count = strtol(num, &end, 10);
            }
            if (cl == 0 || cl >= sizeof(num) || *end || !isdigit((unsigned char)num[0]) ||
                count < 1 || count > FX_MIG_COUNT_MAX) {
                char why[96];
                snprintf(why, sizeof(why), "the count after '*' must be a whole number "
                         "between 1 and %d", FX_MIG_COUNT_MAX);
                return flexpu_error_field(err, FLEXPU_EINVAL, FIELD, p, n, why);
            }
        }
        if (name_len >= FX_MIG_NAME_MAX || !profile_name_ok(p, name_len))
            return flexpu_error_field(err, FLEXPU_EINVAL, FIELD, p, n,
                                      "not a MIG profile: want '<slices>g.<GB>gb' with an "
                                      "optional '*count', as '1g.10gb*7'");
        int k = 0;
        while (k < out->n && (strlen(out->items[k].profile) != name_len ||
                              memcmp(out->items[k].profile, p, name_len) != 0))
            k++;
        if (k == out->n) {
            if (out->n == FX_MIG_ITEMS_MAX)
                return flexpu_error_field(err, FLEXPU_EINVAL, FIELD, text, strlen(text),
                                          "more distinct profiles than a GPU has");
            memcpy(out->items[k].profile, p, name_len);
            out->items[k].profile[name_len] = '\0';
            out->n++;
        }
        out->items[k].count += (int)count;
        if (out->items[k].count > FX_MIG_COUNT_MAX)
            return flexpu_error_field(err, FLEXPU_EINVAL, FIELD, text, strlen(text),
                                      "more instances of one profile than a GPU holds");
        if (!p[n])
            return 0;
        p += n + 1;
    }
}

void fx_mig_layout_format(const struct fx_mig_layout *l, char *out, size_t len)
{
    size_t o = 0;
    if (len)
        out[0] = '\0';
    for (int i = 0; i < l->n && o < len; i++) {
        int w = l->items[i].count > 1
                    ? snprintf(out + o, len - o, "%s%s*%d", i ? "," : "", l->items[i].profile,
                               l->items[i].count)
                    : snprintf(out + o, len - o, "%s%s", i ? "," : "", l->items[i].profile);
        if (w < 0)
            break;
        o += (size_t)w;
    }
}

void fx_mig_profile_name(unsigned slices, unsigned long long mem_mib, int64_t gpu_mem_bytes,
                         char *out, size_t len)
{
    unsigned long long gpu_mib = gpu_mem_bytes > 0 ? (unsigned long long)gpu_mem_bytes >> 20 : 0;
    unsigned long long gb = gpu_mib ? (gpu_mib + 1023) / 1024 : (mem_mib + 1023) / 1024;
    unsigned long long eighths = gpu_mib ? (mem_mib * 8 + gpu_mib - 1) / gpu_mib : 8;
    if (eighths > 8)
        eighths = 8;
    /* eighths of gb, to the nearest GB */
    snprintf(out, len, "%ug.%llugb", slices, (eighths * gb + 4) / 8);
}

/* ---- NVML ---- */

struct ops {
    struct fx_nvml *n;
    nvmlReturn_t (*get_mode)(nvmlDevice_t, unsigned int *, unsigned int *);
    nvmlReturn_t (*set_mode)(nvmlDevice_t, unsigned int, nvmlReturn_t *);
    nvmlReturn_t (*profile_info)(nvmlDevice_t, unsigned int, nvmlGpuInstanceProfileInfo_t *);
    nvmlReturn_t (*gi_create)(nvmlDevice_t, unsigned int, nvmlGpuInstance_t *);
    nvmlReturn_t (*gi_destroy)(nvmlGpuInstance_t);
    nvmlReturn_t (*gi_list)(nvmlDevice_t, unsigned int, nvmlGpuInstance_t *, unsigned int *);
    nvmlReturn_t (*gi_info)(nvmlGpuInstance_t, nvmlGpuInstanceInfo_t *);
    nvmlReturn_t (*ci_profile_info)(nvmlGpuInstance_t, unsigned int, unsigned int,
                                    nvmlComputeInstanceProfileInfo_t *);
    nvmlReturn_t (*ci_create)(nvmlGpuInstance_t, unsigned int, nvmlComputeInstance_t *);
    nvmlReturn_t (*ci_list)(nvmlGpuInstance_t, unsigned int, nvmlComputeInstance_t *,
                            unsigned int *);
    nvmlReturn_t (*ci_destroy)(nvmlComputeInstance_t);
    nvmlReturn_t (*max_devices)(nvmlDevice_t, unsigned int *);
    nvmlReturn_t (*device_by_index)(nvmlDevice_t, unsigned int, nvmlDevice_t *);
    nvmlReturn_t (*gi_id)(nvmlDevice_t, unsigned int *);
    nvmlReturn_t (*ci_id)(nvmlDevice_t, unsigned int *);
    nvmlReturn_t (*procs)(nvmlDevice_t, unsigned int *, nvmlProcessInfo_t *);
    nvmlReturn_t (*uuid)(nvmlDevice_t, char *, unsigned int);
    nvmlReturn_t (*memory)(nvmlDevice_t, nvmlMemory_t *);
    nvmlReturn_t (*minor)(nvmlDevice_t, unsigned int *);
};

/* Loads the MIG calls; false when the library lacks one (a driver before
 * R470: no GPU of the node has MIG then). */
static bool ops_load(struct fx_nvml *n, struct ops *o)
{
    o->n = n;
    struct {
        void *slot;
        const char *name;
    } t[] = {
        {&o->get_mode, "nvmlDeviceGetMigMode"},
        {&o->set_mode, "nvmlDeviceSetMigMode"},
        {&o->profile_info, "nvmlDeviceGetGpuInstanceProfileInfo"},
        {&o->gi_create, "nvmlDeviceCreateGpuInstance"},
        {&o->gi_destroy, "nvmlGpuInstanceDestroy"},
        {&o->gi_list, "nvmlDeviceGetGpuInstances"},
        {&o->gi_info, "nvmlGpuInstanceGetInfo"},
        {&o->ci_profile_info, "nvmlGpuInstanceGetComputeInstanceProfileInfo"},
        {&o->ci_create, "nvmlGpuInstanceCreateComputeInstance"},
        {&o->ci_list, "nvmlGpuInstanceGetComputeInstances"},
        {&o->ci_destroy, "nvmlComputeInstanceDestroy"},
        {&o->max_devices, "nvmlDeviceGetMaxMigDeviceCount"},
        {&o->device_by_index, "nvmlDeviceGetMigDeviceHandleByIndex"},
        {&o->gi_id, "nvmlDeviceGetGpuInstanceId"},
        {&o->ci_id, "nvmlDeviceGetComputeInstanceId"},
        {&o->procs, "nvmlDeviceGetComputeRunningProcesses_v3"},
        {&o->uuid, "nvmlDeviceGetUUID"},
        {&o->memory, "nvmlDeviceGetMemoryInfo"},
        {&o->minor, "nvmlDeviceGetMinorNumber"},
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
        if (!(*(void **)t[i].slot = fx_nvml_sym(n, t[i].name)))
            return false;
    return true;
}

static const char *nv(const struct ops *o, nvmlReturn_t r)
{
    return fx_nvml_strerror(o->n, r);
}

/* ---- one GPU ---- */

struct prof {
    unsigned id, slices;
    unsigned long long mem_mib;
    char name[FX_MIG_NAME_MAX];
    int want; /* instances the layout still asks for */
};

struct gi {
    nvmlGpuInstance_t h;
    unsigned id;
    int prof;  /* index in the GPU's profile table */
    bool keep;
};

struct gpu_plan {
    const struct fx_node_gpu *g;
    nvmlDevice_t h;
    int minor; /* read again once MIG is enabled: the driver may renumber the GPU */
    struct prof profs[NVML_GPU_INSTANCE_PROFILE_COUNT];
    int nprof;
    struct gi gis[MAX_GI];
    int ngi;
    bool create_failed; /* apply() could not create an instance */
};

static int gpu_fail(struct flexpu_error *err, const struct fx_node_gpu *g, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int gpu_fail(struct flexpu_error *err, const struct fx_node_gpu *g, const char *fmt, ...)
{
    char msg[260];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return flexpu_error_set(err, FLEXPU_EIO, "GPU %d (%s): %s", g->index, g->uuid, msg);
}

/* MIG on, now: 1 when the GPU has no MIG (a plain GPU), -1 on error. */
static int mig_on(const struct ops *o, struct gpu_plan *pl, struct flexpu_error *err)
{
    unsigned cur = 0, pending = 0;
    nvmlReturn_t r = o->get_mode(pl->h, &cur, &pending);
    if (r == NVML_ERROR_NOT_SUPPORTED)
        return 1;
    if (r != NVML_SUCCESS)
        return gpu_fail(err, pl->g, "cannot read its MIG mode: %s", nv(o, r));
    if (cur == NVML_DEVICE_MIG_ENABLE)
        return 0;
    nvmlReturn_t act = NVML_SUCCESS;
    r = o->set_mode(pl->h, NVML_DEVICE_MIG_ENABLE, &act);
    if (r != NVML_SUCCESS)
        return gpu_fail(err, pl->g, "cannot enable MIG: %s%s", nv(o, r),
                        r == NVML_ERROR_NO_PERMISSION ? " (the agent must run as root)"
                        : r == NVML_ERROR_IN_USE      ? " (processes run on the GPU)"
                                                      : "");
    if ((r = o->get_mode(pl->h, &cur, &pending)) != NVML_SUCCESS || cur != NVML_DEVICE_MIG_ENABLE)
        return gpu_fail(err, pl->g, "MIG is enabled but not active (%s): the GPU needs a "
                        "reset (nvidia-smi -r) or a reboot", nv(o, act != NVML_SUCCESS ? act : r));
    unsigned minor;
    if (o->minor(pl->h, &minor) == NVML_SUCCESS)
        pl->minor = (int)minor;
    FX_INFO(COMP, "MIG enabled", "gpu=%s minor=%d", pl->g->uuid, pl->minor);
    return 0;
}

/* The GPU's profiles, with what the layout asks of each. */
static int profiles_read(const struct ops *o, struct gpu_plan *pl,
                         const struct fx_mig_layout *layout, struct flexpu_error *err)
{
    for (unsigned p = 0; p < NVML_GPU_INSTANCE_PROFILE_COUNT; p++) {
        nvmlGpuInstanceProfileInfo_t info;
        if (o->profile_info(pl->h, p, &info) != NVML_SUCCESS || !info.sliceCount)
            continue;
        struct prof *pr = &pl->profs[pl->nprof];
        fx_mig_profile_name(info.sliceCount, info.memorySizeMB, pl->g->mem_bytes, pr->name,
                            sizeof(pr->name));
        bool dup = false;
        for (int k = 0; k < pl->nprof; k++)
            dup |= strcmp(pl->profs[k].name, pr->name) == 0;
        if (dup) /* a variant (+me) named like the plain profile: the plain one is meant */
            continue;
        pr->id = info.id;
        pr->slices = info.sliceCount;
        pr->mem_mib = info.memorySizeMB;
        pr->want = 0;
        pl->nprof++;
    }
    unsigned total = 0, most = 0;
    for (int k = 0; k < pl->nprof; k++)
        most = pl->profs[k].slices > most ? pl->profs[k].slices : most;
    for (int i = 0; i < layout->n; i++) {
        int k = 0;
        while (k < pl->nprof && strcmp(pl->profs[k].name, layout->items[i].profile) != 0)
            k++;
        if (k == pl->nprof) {
            char have[200];
            size_t off = 0;
            have[0] = '\0';
            for (int j = 0; j < pl->nprof && off < sizeof(have); j++)
                off += (size_t)snprintf(have + off, sizeof(have) - off, "%s%s", j ? ", " : "",
                                        pl->profs[j].name);
            return gpu_fail(err, pl->g, FIELD " profile '%s' is not one this GPU has (%s)",
                            layout->items[i].profile, have[0] ? have : "none");
        }
        pl->profs[k].want = layout->items[i].count;
        total += pl->profs[k].slices * (unsigned)layout->items[i].count;
    }
    if (total > most)
        return gpu_fail(err, pl->g, FIELD " needs %u compute slices; the GPU has %u", total,
                        most);
    return 0;
}

/* The GPU's GIs; each of a profile the layout still wants is kept. */
static int gis_read(const struct ops *o, struct gpu_plan *pl, struct flexpu_error *err)
{
    pl->ngi = 0;
    for (int k = 0; k < pl->nprof; k++) {
        nvmlGpuInstance_t hs[MAX_GI];
        unsigned cnt = MAX_GI;
        nvmlReturn_t r = o->gi_list(pl->h, pl->profs[k].id, hs, &cnt);
        if (r != NVML_SUCCESS)
            return gpu_fail(err, pl->g, "cannot list its %s instances: %s", pl->profs[k].name,
                            nv(o, r));
        for (unsigned i = 0; i < cnt && pl->ngi < MAX_GI; i++) {
            nvmlGpuInstanceInfo_t info;
            if ((r = o->gi_info(hs[i], &info)) != NVML_SUCCESS)
                return gpu_fail(err, pl->g, "cannot read a %s instance: %s", pl->profs[k].name,
                                nv(o, r));
            pl->gis[pl->ngi++] = (struct gi){.h = hs[i], .id = info.id, .prof = k};
        }
    }
    return 0;
}

/* The compute instances of a GI, one CI profile at a time: from profile
 * *p on, the next that the GPU knows and lists, its info and its CIs (cs,
 * *cnt of them); *p moves past it. False when no profile is left. */
static bool ci_next(const struct ops *o, const struct gi *gi, unsigned *p,
                    nvmlComputeInstanceProfileInfo_t *info, nvmlComputeInstance_t cs[MAX_GI],
                    unsigned *cnt)
{
    for (; *p < NVML_COMPUTE_INSTANCE_PROFILE_COUNT; ++*p) {
        if (o->ci_profile_info(gi->h, *p, NVML_COMPUTE_INSTANCE_ENGINE_PROFILE_SHARED, info) !=
            NVML_SUCCESS)
            continue;
        *cnt = MAX_GI;
        if (o->ci_list(gi->h, info->id, cs, cnt) != NVML_SUCCESS)
            continue;
        ++*p;
        return true;
    }
    return false;
}

/* The compute instances of a GI: how many span it (full) and how many
 * do not (other). */
static void cis_count(const struct ops *o, const struct gpu_plan *pl, const struct gi *gi,
                      unsigned *full, unsigned *other)
{
    *full = *other = 0;
    nvmlComputeInstanceProfileInfo_t info;
    nvmlComputeInstance_t cs[MAX_GI];
    unsigned cnt, p = 0;
    while (ci_next(o, gi, &p, &info, cs, &cnt)) {
        if (info.sliceCount == pl->profs[gi->prof].slices)
            *full += cnt;
        else
            *other += cnt;
    }
}

/* The first process on GI `id` (0 when none). MIG devices are found by
 * index; a GI without a CI has none, and so no process. */
static unsigned gi_pid(const struct ops *o, const struct gpu_plan *pl, unsigned id)
{
    unsigned max = 0;
    if (o->max_devices(pl->h, &max) != NVML_SUCCESS)
        return 0;
    for (unsigned i = 0; i < max; i++) {
        nvmlDevice_t d;
        unsigned gid;
        if (o->device_by_index(pl->h, i, &d) != NVML_SUCCESS ||
            o->gi_id(d, &gid) != NVML_SUCCESS || gid != id)
            continue;
        nvmlProcessInfo_t procs[MAX_PROCS];
        unsigned cnt = MAX_PROCS;
        nvmlReturn_t r = o->procs(d, &cnt, procs);
        if (r == NVML_ERROR_INSUFFICIENT_SIZE)
            return (unsigned)-1; /* more than we asked for: busy, pid unknown */
        if (r == NVML_SUCCESS && cnt > 0)
            return procs[0].pid ? procs[0].pid : (unsigned)-1;
    }
    return 0;
}

/* Matches the GIs against the layout (only_busy: only those running a
 * process are adopted), then refuses (changing nothing) when one to destroy
 * runs a process. */
static int plan(const struct ops *o, struct gpu_plan *pl, const char *layout_text, bool only_busy,
                struct flexpu_error *err)
{
    for (int i = 0; i < pl->ngi; i++) {
        struct gi *gi = &pl->gis[i];
        struct prof *pr = &pl->profs[gi->prof];
        unsigned full, other;
        cis_count(o, pl, gi, &full, &other);
        /* Adoptable: of a wanted profile, with one CI spanning it or none. */
        if (pr->want > 0 && other == 0 && full <= 1 && (!only_busy || gi_pid(o, pl, gi->id))) {
            gi->keep = true;
            pr->want--;
        }
    }
    for (int i = 0; i < pl->ngi; i++) {
        const struct gi *gi = &pl->gis[i];
        unsigned pid = gi->keep ? 0 : gi_pid(o, pl, gi->id);
        if (pid == (unsigned)-1)
            return gpu_fail(err, pl->g, "MIG instance %u (%s) runs processes and " FIELD
                            " '%s' has no place for it: stop its pods or choose a layout "
                            "that keeps it", gi->id, pl->profs[gi->prof].name, layout_text);
        if (pid)
            return gpu_fail(err, pl->g, "MIG instance %u (%s) runs process %u and " FIELD
                            " '%s' has no place for it: stop its pods or choose a layout "
                            "that keeps it", gi->id, pl->profs[gi->prof].name, pid, layout_text);
    }
    return 0;
}

static int gi_destroy(const struct ops *o, const struct gpu_plan *pl, const struct gi *gi,
                      struct flexpu_error *err)
{
    nvmlComputeInstanceProfileInfo_t info;
    nvmlComputeInstance_t cs[MAX_GI];
    unsigned cnt, p = 0;
    while (ci_next(o, gi, &p, &info, cs, &cnt)) {
        for (unsigned i = 0; i < cnt && i < MAX_GI; i++) {
            nvmlReturn_t r = o->ci_destroy(cs[i]);
            if (r != NVML_SUCCESS)
                return gpu_fail(err, pl->g, "cannot destroy a compute instance of MIG "
                                "instance %u (%s): %s", gi->id, pl->profs[gi->prof].name,
                                nv(o, r));
        }
    }
    nvmlReturn_t r = o->gi_destroy(gi->h);
    if (r != NVML_SUCCESS)
        return gpu_fail(err, pl->g, "cannot destroy MIG instance %u (%s): %s", gi->id,
                        pl->profs[gi->prof].name, nv(o, r));
    FX_INFO(COMP, "MIG instance destroyed: not in the layout", "gpu=%s gi=%u profile=%s",
            pl->g->uuid, gi->id, pl->profs[gi->prof].name);
    return 0;
}

/* One compute instance spanning GI h (of profile pr). */
static int ci_full(const struct ops *o, const struct gpu_plan *pl, nvmlGpuInstance_t h,
                   unsigned gi_id, const struct prof *pr, struct flexpu_error *err)
{
    for (unsigned p = 0; p < NVML_COMPUTE_INSTANCE_PROFILE_COUNT; p++) {
        nvmlComputeInstanceProfileInfo_t info;
        if (o->ci_profile_info(h, p, NVML_COMPUTE_INSTANCE_ENGINE_PROFILE_SHARED, &info) !=
                NVML_SUCCESS ||
            info.sliceCount != pr->slices)
            continue;
        nvmlComputeInstance_t ci;
        nvmlReturn_t r = o->ci_create(h, info.id, &ci);
        if (r != NVML_SUCCESS)
            return gpu_fail(err, pl->g, "cannot create the compute instance of MIG instance "
                            "%u (%s): %s", gi_id, pr->name, nv(o, r));
        return 0;
    }
    return gpu_fail(err, pl->g, "MIG instance %u (%s) offers no compute instance spanning "
                    "it", gi_id, pr->name);
}

/* Destroys what is not kept, gives kept GIs without a CI one, creates
 * what is missing (largest first: the smaller ones fit around them). */
static int apply(const struct ops *o, struct gpu_plan *pl, struct flexpu_error *err)
{
    for (int i = 0; i < pl->ngi; i++) {
        const struct gi *gi = &pl->gis[i];
        unsigned full, other;
        if (!gi->keep) {
            if (gi_destroy(o, pl, gi, err))
                return -1;
            continue;
        }
        cis_count(o, pl, gi, &full, &other);
        if (full == 0 && ci_full(o, pl, gi->h, gi->id, &pl->profs[gi->prof], err))
            return -1;
        FX_INFO(COMP, "MIG instance adopted", "gpu=%s gi=%u profile=%s", pl->g->uuid, gi->id,
                pl->profs[gi->prof].name);
    }
    for (;;) {
        struct prof *big = NULL;
        for (int k = 0; k < pl->nprof; k++)
            if (pl->profs[k].want > 0 && (!big || pl->profs[k].slices > big->slices))
                big = &pl->profs[k];
        if (!big)
            return 0;
        nvmlGpuInstance_t h;
        nvmlReturn_t r = o->gi_create(pl->h, big->id, &h);
        if (r != NVML_SUCCESS) {
            pl->create_failed = true;
            return gpu_fail(err, pl->g, "cannot create a %s MIG instance: %s", big->name,
                            nv(o, r));
        }
        nvmlGpuInstanceInfo_t info = {0};
        o->gi_info(h, &info);
        if (ci_full(o, pl, h, info.id, big, err))
            return -1;
        FX_INFO(COMP, "MIG instance created", "gpu=%s gi=%u profile=%s", pl->g->uuid, info.id,
                big->name);
        big->want--;
    }
}

/* Makes the GPU hold the layout. An adopted instance may sit where a new
 * one must go (a 3g at slice 0 leaves a 4g no room): when a creation
 * fails, every idle instance goes and the layout is made again, largest
 * first, around the busy ones it keeps. */
static int partition(const struct ops *o, struct gpu_plan *pl, const struct fx_mig_layout *layout,
                     const char *text, struct flexpu_error *err)
{
    if (profiles_read(o, pl, layout, err) || gis_read(o, pl, err) ||
        plan(o, pl, text, false, err))
        return -1;
    pl->create_failed = false;
    int rc = apply(o, pl, err);
    if (rc == 0 || !pl->create_failed)
        return rc;
    FX_INFO(COMP, "a MIG instance does not fit beside the adopted ones: making the layout again",
            "gpu=%s error=\"%s\"", pl->g->uuid, err->msg);
    pl->nprof = 0;
    if (profiles_read(o, pl, layout, err) || gis_read(o, pl, err) ||
        plan(o, pl, text, true, err))
        return -1;
    return apply(o, pl, err);
}

/* The GPU's MIG devices as GPUs of the node, appended to out[]. */
static int devices_list(const struct ops *o, struct gpu_plan *pl, struct fx_node_gpu *out,
                        int *nout, int max, struct flexpu_error *err)
{
    if (gis_read(o, pl, err))
        return -1;
    unsigned maxdev = 0;
    nvmlReturn_t r = o->max_devices(pl->h, &maxdev);
    if (r != NVML_SUCCESS)
        return gpu_fail(err, pl->g, "cannot count its MIG devices: %s", nv(o, r));
    for (unsigned i = 0; i < maxdev; i++) {
        nvmlDevice_t d;
        if ((r = o->device_by_index(pl->h, i, &d)) == NVML_ERROR_NOT_FOUND)
            continue;
        if (r != NVML_SUCCESS)
            return gpu_fail(err, pl->g, "cannot open MIG device %u: %s", i, nv(o, r));
        if (*nout >= max)
            return flexpu_error_set(err, FLEXPU_ERANGE, FIELD " makes more than %d GPUs on "
                                    "this node, the most one node publishes: use larger "
                                    "profiles", max);
        struct fx_node_gpu *m = &out[(*nout)++];
        *m = *pl->g;
        m->minor = pl->minor;
        unsigned gid = 0, cid = 0;
        nvmlMemory_t mem;
        if ((r = o->uuid(d, m->uuid, sizeof(m->uuid))) != NVML_SUCCESS ||
            (r = o->memory(d, &mem)) != NVML_SUCCESS || (r = o->gi_id(d, &gid)) != NVML_SUCCESS ||
            (r = o->ci_id(d, &cid)) != NVML_SUCCESS)
            return gpu_fail(err, pl->g, "cannot describe MIG device %u: %s", i, nv(o, r));
        m->mig = true;
        m->mig_gi = (int)gid;
        m->mig_ci = (int)cid;
        m->mem_bytes = (int64_t)mem.total;
        m->handle = d;
        snprintf(m->mig_profile, sizeof(m->mig_profile), "?");
        for (int k = 0; k < pl->ngi; k++)
            if (pl->gis[k].id == gid)
                snprintf(m->mig_profile, sizeof(m->mig_profile), "%s",
                         pl->profs[pl->gis[k].prof].name);
        char model[FLEXPU_NAME_MAX];
        snprintf(model, sizeof(model), "%.*s-MIG-%s", (int)(sizeof(model) - 6 - FX_MIG_NAME_MAX),
                 pl->g->model, m->mig_profile);
        snprintf(m->model, sizeof(m->model), "%s", model);
    }
    return 0;
}

int fx_mig_setup(struct fx_nvml *n, const struct fx_mig_layout *layout, struct fx_node_gpu *gpus,
                 int *count, int max, struct flexpu_error *err)
{
    struct ops o;
    bool have_calls = ops_load(n, &o);
    char text[200];
    fx_mig_layout_format(layout, text, sizeof(text));
    struct fx_node_gpu *out = calloc((size_t)(max > 0 ? max : 1), sizeof(*out));
    struct gpu_plan *pl = calloc(1, sizeof(*pl));
    int nout = 0, rc = 0;
    if (!out || !pl) {
        rc = flexpu_error_set(err, FLEXPU_ENOMEM, "out of memory");
        goto done;
    }
    for (int i = 0; i < *count && rc == 0; i++) {
        memset(pl, 0, sizeof(*pl));
        pl->g = &gpus[i];
        pl->h = (nvmlDevice_t)gpus[i].handle;
        pl->minor = gpus[i].minor;
        int on = have_calls ? mig_on(&o, pl, err) : 1;
        if (on < 0) {
            rc = -1;
        } else if (on > 0) {
            FX_INFO(COMP, "GPU without MIG: it stays a plain GPU", "gpu=%s model=%s reason=\"%s\"",
                    gpus[i].uuid, gpus[i].model,
                    have_calls ? "the GPU does not support MIG" : "NVML has no MIG calls");
            if (nout >= max)
                rc = flexpu_error_set(err, FLEXPU_ERANGE, FIELD " makes more than %d GPUs on "
                                      "this node, the most one node publishes", max);
            else
                out[nout++] = gpus[i];
        } else if (partition(&o, pl, layout, text, err) ||
                   devices_list(&o, pl, out, &nout, max, err)) {
            rc = -1;
        }
    }
    if (rc == 0) {
        memcpy(gpus, out, (size_t)nout * sizeof(*out));
        *count = nout;
    }
done:
    free(out);
    free(pl);
    return rc;
}

int fx_mig_profiles(struct fx_nvml *n, const struct fx_node_gpu *gpu,
                    char names[][FX_MIG_NAME_MAX], unsigned *slices, int max,
                    struct flexpu_error *err)
{
    struct ops o;
    if (!ops_load(n, &o))
        return 0;
    struct gpu_plan *pl = calloc(1, sizeof(*pl));
    if (!pl)
        return flexpu_error_set(err, FLEXPU_ENOMEM, "out of memory");
    pl->g = gpu;
    pl->h = (nvmlDevice_t)gpu->handle;
    pl->minor = gpu->minor;
    struct fx_mig_layout none = {0};
    int rc = mig_on(&o, pl, err);
    if (rc == 0 && profiles_read(&o, pl, &none, err) != 0)
        rc = -1;
    if (rc == 0)
        for (int k = 0; k < pl->nprof && rc < max; k++, rc++) {
            snprintf(names[rc], FX_MIG_NAME_MAX, "%s", pl->profs[k].name);
            slices[rc] = pl->profs[k].slices;
        }
    else
        rc = rc > 0 ? 0 : -1;
    free(pl);
    return rc;
}
