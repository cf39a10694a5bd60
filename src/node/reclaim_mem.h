/* SPDX-License-Identifier: Apache-2.0 */
/* Borrowed memory taken back for an owner (issue 16; docs/KUBERNETES.md,
 * "Borrowing reserved memory"). A borrower may hold memory an owner of its
 * GPU reserved but did not use. When the owner's allocation then fails in
 * the driver, the runtime library records a *want* in the owner's ledger
 * directory and waits (runtime/oom_wait.h); this module notices it (in any
 * slice's ledger directory but a borrower's: a want names its GPU), kills
 * the borrowers' pods on that GPU through their cgroups (cgroup.kill, v2),
 * and tells the plugin, which refuses their containers' restarts, so the
 * memory comes back and stays with the owner.
 *
 * It also keeps the marks the library reads: <root>/borrowed/<uuid> exists
 * while GPU uuid has borrowers (set by the plugin before a borrower's
 * container may start, fx_reclaim_mark; cleared here once no borrower there
 * is left alive), mounted read-only into every container. An owner waits
 * only while its GPU is marked, so an owner with no borrower beside it gets
 * the driver's error at once.
 *
 * The agent is not in the host's PID namespace, so it cannot signal the
 * borrowers' processes; the pod's cgroup holds them all. The kubelet's
 * layout of pod cgroups (cgroup v2 only):
 *   systemd driver:  kubepods.slice/[kubepods-<qos>.slice/]kubepods[-<qos>]-pod<uid, '-' as '_'>.slice
 *   cgroupfs driver: kubepods/[<qos>/]pod<uid>
 * (qos: burstable or besteffort; a Guaranteed pod sits directly under
 * kubepods). cgroup v1 has no cgroup.kill: the kill fails, is counted and
 * logged, and the owner gets the driver's error after its wait. */
#ifndef FX_NODE_RECLAIM_MEM_H
#define FX_NODE_RECLAIM_MEM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "flexpu/error.h"
#include "node/gpus.h"
#include "node/slices.h"

/* How often the wants are looked for (a want waits at most the owner's
 * oom_wait_ms, 5 s by default; a look costs a directory read per owner of
 * a GPU with borrowers, nothing when no GPU has any). */
#define FX_RECLAIM_MEM_PERIOD_MS 100
#define FX_CTR_BORROWED "/run/flexpu/borrowed" /* the marks, read-only in containers */

/* One allocation of this node (a slice), as the plugin knows it. */
struct fx_alloc_view {
    char key[FX_SLICE_KEY_LEN + 1];
    char uid[64];      /* its pod; "" when not known */
    uint32_t gpuset;   /* bit i: GPU i of this node */
    bool borrowed;     /* its pod's allocation is marked borrowed */
    bool reclaimed;    /* a borrower this node killed (plugin.c, reclaimed.h) */
};

/* A borrower killed for an owner's memory. */
struct fx_reclaim_note {
    const char *uid;       /* the borrower's pod */
    const char *gpu;       /* the GPU's UUID */
    const char *owner_key; /* the slice (ledger directory) whose process waits */
    uint64_t bytes;        /* what its allocation asks (its want); 0: not known */
    const char *why;       /* for the log */
};

struct fx_reclaim_mem_config {
    const char *root;        /* the agent's root: ledger/<key>/, borrowed/ */
    const char *cgroup_root; /* the host's cgroup v2 mount as the agent sees it */
    const struct fx_node_gpu *gpus;
    int ngpu;
    /* This node's allocations now (at most max); the plugin's. -1 while
     * they are not known yet (the pods not listed since a restart): the
     * look then removes no mark and kills nobody. */
    int (*list)(void *ctx, struct fx_alloc_view *out, int max);
    /* A borrower was killed: its containers may not start again, and the
     * list says it is reclaimed from then on, across restarts of the
     * agent (the plugin keeps the marks; one place), and its pod gets an
     * Event saying why. */
    void (*reclaimed)(void *ctx, const struct fx_reclaim_note *note);
    void *ctx;
};

struct fx_reclaim_mem;

/* Creates <root>/borrowed. The config's strings and GPUs must outlive it. */
struct fx_reclaim_mem *fx_reclaim_mem_new(const struct fx_reclaim_mem_config *cfg,
                                          struct flexpu_error *err);
void fx_reclaim_mem_free(struct fx_reclaim_mem *r);

/* One look (the thread's body; tests call it): marks, wants, kills. */
void fx_reclaim_mem_tick(struct fx_reclaim_mem *r);

/* Runs the tick every FX_RECLAIM_MEM_PERIOD_MS on a thread of its own. */
int fx_reclaim_mem_start(struct fx_reclaim_mem *r, struct flexpu_error *err);
void fx_reclaim_mem_stop(struct fx_reclaim_mem *r);

/* Counters: borrowers killed, kills that failed. */
void fx_reclaim_mem_counts(struct fx_reclaim_mem *r, uint64_t *killed, uint64_t *failed);
/* Their exposition text (metrics.c). */
void fx_reclaim_mem_metrics(struct fx_reclaim_mem *r, FILE *f);

/* Marks GPU uuid as having borrowers (<root>/borrowed/<uuid>), before a
 * borrower's container may start. */
int fx_reclaim_mark(const char *root, const char *uuid, struct flexpu_error *err);
/* The directory of the marks on the host (created if missing). */
int fx_reclaim_dir(const char *root, char *buf, size_t len);

/* What the owners of GPU uuid hold there now (bytes), for a borrower's
 * check at PreStartContainer (kube/borrow_rule.h, --borrow-mem idle): the
 * live processes' memory in the ledger of that GPU of every slice
 * directory under <root>/ledger (a remote slice's server's included) but
 * the nskip keys in skip (the borrowers'), at most gpu_mem. A directory the agent has no allocation
 * for counts as an owner's, as in the usage feed; a file that is not a
 * ledger counts nothing. */
int64_t fx_reclaim_owners_mem(const char *root, const char *uuid, int64_t gpu_mem,
                              const char *const *skip, int nskip);

/* The cgroup directory of pod uid under cgroup_root (either driver, any
 * QoS class). FLEXPU_ENOENT when none; FLEXPU_EINVAL for a uid that is not
 * a pod UID or a cgroup_root that is not cgroup v2 (no cgroup.controllers),
 * the error naming it. */
int fx_pod_cgroup(const char *cgroup_root, const char *uid, char *out, size_t len,
                  struct flexpu_error *err);
/* Kills every process of pod uid: "1" into its cgroup.kill. */
int fx_pod_kill(const char *cgroup_root, const char *uid, struct flexpu_error *err);

#endif
