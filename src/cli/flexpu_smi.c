/* SPDX-License-Identifier: Apache-2.0 */
/* flexpu-smi: what each GPU's slices hold, read from the shared state the
 * runtime library keeps (docs/RUNTIME.md). Read-only: it never joins a GPU
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

static void show_gpu(const struct fx_gpu *g, const char *path)
{
    const struct fx_gpu_state *st = g->st;
    char total[32];
    human(st->total_bytes, total, sizeof(total));
    printf("GPU %s  memory %s  state %s\n", st->uuid, total, path);
    printf("  %-24s %10s %10s %6s %5s %-7s %10s %10s %6s %6s\n", "TENANT", "QUOTA", "USED", "SHARE",
           "CAP", "PRIO", "GPU-TIME", "THROTTLED", "OOM", "PROCS");
    for (int t = 0; t < FX_MAX_TENANTS; t++) {
        const struct fx_tenant_rec *tr = &st->tenants[t];
        if (!tr->in_use)
            continue;
        uint64_t used = 0;
        int procs = 0;
        for (int i = 0; i < FX_MAX_PROCS; i++) {
            const struct fx_proc_rec *p = &st->procs[i];
            if (p->in_use && p->tenant == t && fx_gpu_slot_alive(g, i)) {
                used += p->used_bytes;
                procs++;
            }
        }
        char quota[32], usedh[32];
        if (tr->quota_bytes)
            human(tr->quota_bytes, quota, sizeof(quota));
        else
            snprintf(quota, sizeof(quota), "whole");
        human(used, usedh, sizeof(usedh));
        printf("  %-24s %10s %10s %5u%% %4u%% %-7s %9.1fs %9.1fs %6llu %6d\n", tr->name, quota,
               usedh, tr->compute_share, tr->compute_cap,
               fx_priority_name((enum fx_priority)tr->priority), (double)tr->gpu_time_ns / 1e9,
               (double)tr->throttled_ns / 1e9, (unsigned long long)tr->oom_refusals, procs);
        for (int i = 0; i < FX_MAX_PROCS; i++) {
            const struct fx_proc_rec *p = &st->procs[i];
            if (!p->in_use || p->tenant != t || !fx_gpu_slot_alive(g, i))
                continue;
            char pu[32], pc[32];
            human(p->used_bytes, pu, sizeof(pu));
            human(p->context_bytes, pc, sizeof(pc));
            printf("    pid %-8d %-16.16s %10s (context %s)\n", (int)p->pid, p->comm, pu, pc);
        }
    }
}

static int usage(FILE *f, int rc)
{
    fprintf(f, "usage: flexpu-smi [--state-dir DIR]\n"
               "Prints, per GPU and tenant: memory quota and use, compute share, cap and\n"
               "priority, GPU time used and throttled, refused allocations, processes.\n"
               "DIR defaults to $FLEXPU_STATE_DIR, then /tmp/flexpu.\n");
    return rc;
}

int main(int argc, char **argv)
{
    const char *dir = getenv("FLEXPU_STATE_DIR");
    if (!dir || !*dir)
        dir = "/tmp/flexpu";
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--state-dir") == 0 && i + 1 < argc)
            dir = argv[++i];
        else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0)
            return usage(stdout, 0);
        else {
            fprintf(stderr, "flexpu-smi: unknown argument '%s'\n", argv[i]);
            return usage(stderr, 2);
        }
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
        show_gpu(&g, path);
        fx_gpu_detach(&g);
        shown++;
    }
    closedir(d);
    if (!shown && !failed)
        printf("no GPU is shared yet (no state in %s)\n", dir);
    return failed;
}
