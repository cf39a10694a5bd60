/* SPDX-License-Identifier: Apache-2.0 */
/* flexpu-smi: what each GPU's slices hold, read from the shared state the
 * runtime library keeps, or from the node agent's arbiter pages, which have
 * its layout (runtime/arbagent.h; docs/RUNTIME.md). Read-only: it never joins a GPU
 * and never changes the state. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/state.h"

static void human(uint64_t b, char *out, size_t len)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)b;
    int u = 0;
    while (v >= 1024 && u < 4) {
        v /= 1024;
        u++;
    }
    snprintf(out, len, u ? "%.1f %s" : "%.0f %s", v, units[u]);
}

/* The tenants' ledgers of one GPU, read before printing. */
struct mem_row {
    char tenant[FX_TENANT_NAME_MAX];
    uint64_t quota, used, oom;
    int procs, shown;
    struct {
        int pid;
        char comm[17];
        uint64_t used, context;
    } p[8];
    int np;
};

struct mem_rows {
    struct mem_row v[FX_MAX_TENANTS * 2];
    int n;
};

static void take_ledger(const struct fx_ledger_handle *l, void *ctx)
{
    struct mem_rows *m = ctx;
    if (m->n == (int)(sizeof(m->v) / sizeof(m->v[0])))
        return;
    struct mem_row *r = &m->v[m->n++];
    memset(r, 0, sizeof(*r));
    memcpy(r->tenant, l->led->tenant, sizeof(r->tenant) - 1);
    r->quota = l->led->quota_bytes;
    r->oom = l->led->oom_refusals;
    r->used = fx_ledger_used(l, &r->procs);
    for (int i = 0; i < FX_LEDGER_PROCS && r->np < 8; i++) {
        const struct fx_ledger_proc *p = &l->led->procs[i];
        if (!p->in_use || !fx_ledger_slot_alive(l, i))
            continue;
        r->p[r->np].pid = p->pid;
        memcpy(r->p[r->np].comm, p->comm, 16);
        r->p[r->np].used = p->used_bytes;
        r->p[r->np].context = p->context_bytes;
        r->np++;
    }
}

static void bad_ledger(const char *msg, void *ctx)
{
    (void)ctx;
    fprintf(stderr, "flexpu-smi: %s\n", msg);
}

static void print_row(const char *tenant, const struct mem_row *m,
                      const struct fx_tenant_rec *tr)
{
    char quota[32], usedh[32];
    if (m && m->quota)
        human(m->quota, quota, sizeof(quota));
    else
        snprintf(quota, sizeof(quota), m ? "whole" : "-");
    human(m ? m->used : 0, usedh, sizeof(usedh));
    if (tr)
        printf("  %-24s %10s %10s %5u%% %4u%% %-7s %9.1fs %9.1fs %6llu %6d\n", tenant, quota,
               usedh, tr->compute_share, tr->compute_cap,
               fx_priority_name((enum fx_priority)(tr->priority > 2 ? 1 : tr->priority)),
               (double)tr->gpu_time_ns / 1e9, (double)tr->throttled_ns / 1e9,
               m ? (unsigned long long)m->oom : 0ull, m ? m->procs : 0);
    else
        printf("  %-24s %10s %10s %6s %5s %-7s %10s %10s %6llu %6d\n", tenant, quota, usedh,
               "-", "-", "-", "-", "-", (unsigned long long)m->oom, m->procs);
    for (int i = 0; m && i < m->np; i++) {
        char pu[32], pc[32];
        human(m->p[i].used, pu, sizeof(pu));
        human(m->p[i].context, pc, sizeof(pc));
        printf("    pid %-8d %-16.16s %10s (context %s)\n", m->p[i].pid, m->p[i].comm, pu, pc);
    }
}

static void show_gpu(const struct fx_gpu *g, const char *path, const char *ledger_root)
{
    const struct fx_gpu_state *st = g->st;
    char total[32], uuid[FX_UUID_MAX];
    memcpy(uuid, st->uuid, sizeof(uuid) - 1);
    uuid[sizeof(uuid) - 1] = '\0';
    human(st->total_bytes, total, sizeof(total));
    printf("GPU %s  memory %s  state %s\n", uuid, total, path);
    printf("  %-24s %10s %10s %6s %5s %-7s %10s %10s %6s %6s\n", "TENANT", "QUOTA", "USED", "SHARE",
           "CAP", "PRIO", "GPU-TIME", "THROTTLED", "OOM", "PROCS");
    static struct mem_rows mem;
    mem.n = 0;
    fx_ledger_scan(ledger_root, uuid, take_ledger, bad_ledger, &mem);
    for (int t = 0; t < FX_MAX_TENANTS; t++) {
        const struct fx_tenant_rec *tr = &st->tenants[t];
        if (!tr->in_use)
            continue;
        char name[FX_TENANT_NAME_MAX];
        memcpy(name, tr->name, sizeof(name) - 1);
        name[sizeof(name) - 1] = '\0';
        struct mem_row *m = NULL;
        for (int i = 0; i < mem.n && !m; i++)
            if (!mem.v[i].shown && strcmp(mem.v[i].tenant, name) == 0)
                m = &mem.v[i];
        if (m)
            m->shown = 1;
        print_row(name, m, tr);
    }
    /* Processes that run on a private state (state.h) have a ledger only. */
    for (int i = 0; i < mem.n; i++)
        if (!mem.v[i].shown && mem.v[i].procs)
            print_row(mem.v[i].tenant, &mem.v[i], NULL);
}

static int usage(FILE *f, int rc)
{
    fprintf(f, "usage: flexpu-smi [--state-dir DIR] [--ledger-root DIR]\n"
               "Prints, per GPU and tenant: memory quota and use, compute share, cap and\n"
               "priority, GPU time used and throttled, refused allocations, processes.\n"
               "--state-dir defaults to $FLEXPU_STATE_DIR, then /tmp/flexpu; --ledger-root,\n"
               "where each tenant's memory ledgers are, to <state-dir>/ledger. On a\n"
               "Kubernetes node the node agent's arbiter pages stand for the state:\n"
               "--state-dir /var/lib/flexpu/arb --ledger-root /var/lib/flexpu/ledger\n"
               "(remote slices' servers are slices there too).\n");
    return rc;
}

int main(int argc, char **argv)
{
    const char *dir = getenv("FLEXPU_STATE_DIR");
    if (!dir || !*dir)
        dir = "/tmp/flexpu";
    const char *ledger_root = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--state-dir") == 0 && i + 1 < argc)
            dir = argv[++i];
        else if (strcmp(argv[i], "--ledger-root") == 0 && i + 1 < argc)
            ledger_root = argv[++i];
        else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0)
            return usage(stdout, 0);
        else {
            fprintf(stderr, "flexpu-smi: unknown argument '%s'\n", argv[i]);
            return usage(stderr, 2);
        }
    }
    char default_root[4096];
    if (!ledger_root) {
        snprintf(default_root, sizeof(default_root), "%s/ledger", dir);
        ledger_root = default_root;
    }
    DIR *d = opendir(dir);
    if (!d) {
        if (errno == ENOENT) {
            printf("no GPU is shared yet (%s does not exist)\n", dir);
            return 0;
        }
        fprintf(stderr, "flexpu-smi: %s: %s\n", dir, strerror(errno));
        return 1;
    }
    int shown = 0, failed = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t n = strlen(e->d_name);
        if (n < 7 || strcmp(e->d_name + n - 6, ".state") != 0)
            continue;
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        struct fx_gpu g;
        struct flexpu_error err = {0};
        if (fx_gpu_open_readonly(&g, path, &err) != 0) {
            fprintf(stderr, "flexpu-smi: %s\n", err.msg);
            failed = 1;
            continue;
        }
        show_gpu(&g, path, ledger_root);
        fx_gpu_detach(&g);
        shown++;
    }
    closedir(d);
    if (!shown && !failed)
        printf("no GPU is shared yet (no state in %s)\n", dir);
    return failed;
}
