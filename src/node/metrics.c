/* SPDX-License-Identifier: Apache-2.0 */
/* Prometheus metrics from the runtime's shared state (see metrics.h). */
#include "node/metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "flexpu/log.h"
#include "runtime/state.h"
#include "util/promserve.h"

#define COMP "metrics"

struct slice_row {
    char uuid[FX_UUID_MAX];
    char tenant[FX_TENANT_NAME_MAX];
    char ns[64], pod[256];
    uint64_t used, quota, gpu_time_ns, throttled_ns, oom;
    unsigned share, cap;
    int procs;
};

struct rows {
    struct slice_row *v;
    size_t n, cap;
    const char *uuid;
    uint64_t total_bytes;
};

static struct slice_row *row_of(struct rows *rs, const char *tenant)
{
    for (size_t i = 0; i < rs->n; i++)
        if (strcmp(rs->v[i].tenant, tenant) == 0)
            return &rs->v[i];
    if (rs->n == rs->cap) {
        size_t nc = rs->cap ? 2 * rs->cap : 16;
        struct slice_row *grown = realloc(rs->v, nc * sizeof(*grown));
        if (!grown)
            return NULL;
        rs->v = grown;
        rs->cap = nc;
    }
    struct slice_row *r = &rs->v[rs->n++];
    memset(r, 0, sizeof(*r));
    snprintf(r->uuid, sizeof(r->uuid), "%.*s", (int)sizeof(r->uuid) - 1, rs->uuid);
    snprintf(r->tenant, sizeof(r->tenant), "%s", tenant);
    return r;
}

/* A slice's memory, from its ledger. Its fields are the tenant's own
 * figures (only its containers write the file): they describe that slice
 * and nothing else. */
static void ledger_row(const struct fx_ledger_handle *l, void *ctx)
{
    struct rows *rs = ctx;
    char tenant[FX_TENANT_NAME_MAX];
    memcpy(tenant, l->led->tenant, sizeof(tenant) - 1); /* may lack its NUL */
    tenant[sizeof(tenant) - 1] = '\0';
    struct slice_row *r = row_of(rs, tenant);
    if (!r)
        return;
    int procs = 0;
    r->used = fx_ledger_used(l, &procs);
    r->procs = procs;
    uint64_t q = __atomic_load_n(&l->led->quota_bytes, __ATOMIC_RELAXED);
    r->quota = q && q < rs->total_bytes ? q : rs->total_bytes;
    r->oom = __atomic_load_n(&l->led->oom_refusals, __ATOMIC_RELAXED);
}

static void ledger_bad(const char *msg, void *ctx)
{
    (void)ctx;
    FX_WARN(COMP, "ledger skipped", "error=\"%s\"", msg);
}

/* Reads one GPU's state: its used memory and its slices (appended). */
static uint64_t read_gpu(const struct fx_metrics_source *src, const struct fx_node_gpu *gpu,
                         struct slice_row **rows, size_t *nrows, size_t *cap)
{
    struct rows rs = {*rows, *nrows, *cap, gpu->uuid, gpu->mem_bytes};
    size_t first = rs.n;
    char path[512];
    struct fx_gpu g;
    struct flexpu_error err = {0};
    int orc = -1;
    if (snprintf(path, sizeof(path), "%.300s/%.96s.state", src->state_dir, gpu->uuid) <
        (int)sizeof(path))
        orc = fx_gpu_open_readonly(&g, path, &err);
    if (orc != 0 && orc != FLEXPU_ENOENT && orc != -1)
        /* Tenants can write the directory: whatever they put there must not
         * stop the GPU's other figures from being served. */
        FX_WARN(COMP, "state file skipped", "uuid=%s error=\"%s\"", gpu->uuid, err.msg);
    for (int t = 0; orc == 0 && t < FX_MAX_TENANTS; t++) {
        const struct fx_tenant_rec *tr = &g.st->tenants[t];
        if (!tr->in_use)
            continue;
        char tenant[FX_TENANT_NAME_MAX];
        memcpy(tenant, tr->name, sizeof(tenant) - 1);
        tenant[sizeof(tenant) - 1] = '\0';
        struct slice_row *r = row_of(&rs, tenant);
        if (!r)
            break;
        r->quota = rs.total_bytes;
        r->share = tr->compute_share;
        r->cap = tr->compute_cap;
        r->gpu_time_ns = tr->gpu_time_ns;
        r->throttled_ns = tr->throttled_ns;
    }
    if (orc == 0)
        fx_gpu_detach(&g);
    if (src->ledger_root)
        fx_ledger_scan(src->ledger_root, gpu->uuid, ledger_row, ledger_bad, &rs);
    uint64_t total_used = 0;
    for (size_t i = first; i < rs.n; i++) {
        struct slice_row *r = &rs.v[i];
        total_used += r->used;
        if (!src->pod || src->pod(src->ctx, r->tenant, r->ns, sizeof(r->ns), r->pod,
                                  sizeof(r->pod)) != 0)
            r->ns[0] = r->pod[0] = '\0';
    }
    *rows = rs.v;
    *nrows = rs.n;
    *cap = rs.cap;
    return total_used;
}

static void slice_labels(FILE *f, const struct slice_row *r)
{
    fputs("{uuid=\"", f);
    fx_prom_label(f, r->uuid);
    fputs("\",tenant=\"", f);
    fx_prom_label(f, r->tenant);
    fputs("\",namespace=\"", f);
    fx_prom_label(f, r->ns);
    fputs("\",pod=\"", f);
    fx_prom_label(f, r->pod);
    fputs("\"}", f);
}

static const struct {
    const char *name, *type, *text;
} slice_metrics[] = {
    {"flexpu_slice_memory_used_bytes", "gauge",
     "Memory held by the live processes of a slice on a GPU."},
    {"flexpu_slice_memory_quota_bytes", "gauge",
     "Memory quota of a slice on a GPU (the whole GPU when it has none)."},
    {"flexpu_slice_compute_share_ratio", "gauge",
     "Guaranteed compute share of a slice (0-1 of the GPU)."},
    {"flexpu_slice_compute_cap_ratio", "gauge",
     "Most compute a slice may take even when the GPU is idle (0-1)."},
    {"flexpu_slice_gpu_time_seconds_total", "counter",
     "GPU time a slice has held under arbitration."},
    {"flexpu_slice_throttled_seconds_total", "counter",
     "Time the launches of a slice waited for its turn."},
    {"flexpu_slice_oom_refusals_total", "counter",
     "Allocations refused because the slice's memory quota was reached."},
    {"flexpu_slice_processes", "gauge", "Live processes of a slice on a GPU."},
};

/* Value of slice_metrics[m] for a slice. */
static double slice_value(const struct slice_row *r, size_t m)
{
    switch (m) {
    case 0: return (double)r->used;
    case 1: return (double)r->quota;
    case 2: return r->share / 100.0;
    case 3: return r->cap / 100.0;
    case 4: return (double)r->gpu_time_ns / 1e9;
    case 5: return (double)r->throttled_ns / 1e9;
    case 6: return (double)r->oom;
    default: return r->procs;
    }
}

char *fx_metrics_render(const struct fx_metrics_source *src)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f)
        return NULL;
    if (src->lock)
        src->lock(src->ctx, 1);
    int n = *src->ngpu;
    struct fx_node_gpu gpus[FLEXPU_MAX_GPUS];
    memcpy(gpus, src->gpus, (size_t)n * sizeof(gpus[0]));
    if (src->lock)
        src->lock(src->ctx, 0);

    struct slice_row *rows = NULL;
    size_t nrows = 0, cap = 0;
    uint64_t used[FLEXPU_MAX_GPUS];
    for (int i = 0; i < n; i++)
        used[i] = read_gpu(src, &gpus[i], &rows, &nrows, &cap);

    fx_prom_help(f, "flexpu_gpu_info", "gauge",
                 "A GPU of this node (always 1), with its description.");
    for (int i = 0; i < n; i++) {
        fputs("flexpu_gpu_info{uuid=\"", f);
        fx_prom_label(f, gpus[i].uuid);
        fputs("\",model=\"", f);
        fx_prom_label(f, gpus[i].model);
        fprintf(f, "\",index=\"%d\",minor=\"%d\",numa=\"%d\",nvlink_group=\"%d\"} 1\n",
                gpus[i].index, gpus[i].minor, gpus[i].numa, gpus[i].group);
    }
    struct {
        const char *name, *text;
    } const per_gpu[] = {
        {"flexpu_gpu_healthy", "1 when NVML answers for the GPU, 0 when it is lost."},
        {"flexpu_gpu_memory_total_bytes", "Physical memory of the GPU."},
        {"flexpu_gpu_memory_used_bytes",
         "Memory held on the GPU by the live processes of all slices."},
    };
    for (size_t m = 0; m < sizeof(per_gpu) / sizeof(per_gpu[0]); m++) {
        fx_prom_help(f, per_gpu[m].name, "gauge", per_gpu[m].text);
        for (int i = 0; i < n; i++) {
            fprintf(f, "%s{uuid=\"", per_gpu[m].name);
            fx_prom_label(f, gpus[i].uuid);
            unsigned long long v = m == 0   ? (unsigned long long)gpus[i].healthy
                                   : m == 1 ? (unsigned long long)gpus[i].mem_bytes
                                            : (unsigned long long)used[i];
            fprintf(f, "\"} %llu\n", v);
        }
    }
    for (size_t m = 0; m < sizeof(slice_metrics) / sizeof(slice_metrics[0]); m++) {
        fx_prom_help(f, slice_metrics[m].name, slice_metrics[m].type, slice_metrics[m].text);
        for (size_t i = 0; i < nrows; i++) {
            fputs(slice_metrics[m].name, f);
            slice_labels(f, &rows[i]);
            /* %.15g: integers below 2^53 exactly, ratios without noise */
            fprintf(f, " %.15g\n", slice_value(&rows[i], m));
        }
    }
    free(rows);
    if (src->reclaim)
        fx_reclaim_mem_metrics(src->reclaim, f);
    if (fclose(f) != 0) {
        free(text);
        return NULL;
    }
    return text;
}

struct fx_metrics_server {
    struct fx_promserve *http;
    struct fx_metrics_source src;
};

static char *render(void *ctx)
{
    return fx_metrics_render(&((struct fx_metrics_server *)ctx)->src);
}

struct fx_metrics_server *fx_metrics_start(const char *addr, int port,
                                           const struct fx_metrics_source *src,
                                           struct flexpu_error *err)
{
    struct fx_metrics_server *s = calloc(1, sizeof(*s));
    if (!s) {
        flexpu_error_set(err, FLEXPU_ENOMEM, "out of memory");
        return NULL;
    }
    s->src = *src;
    if (!(s->http = fx_promserve_start(addr, port, render, NULL, s, err))) {
        free(s);
        return NULL;
    }
    return s;
}

void fx_metrics_stop(struct fx_metrics_server *s)
{
    if (!s)
        return;
    fx_promserve_stop(s->http);
    free(s);
}
