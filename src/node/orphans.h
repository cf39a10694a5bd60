/* SPDX-License-Identifier: Apache-2.0 */
/* The workers a remote server leaves behind when it ends alone (the OOM
 * killer, a crash): they keep its process group, serve nobody useful, and
 * hold their slice's GPU memory. The agent ends the group at once and
 * reaps the workers that were re-parented to it: flexpu-node is PID 1 of
 * its container in Kubernetes, so nobody else would (docs/REMOTE.md,
 * "Kubernetes"). Only children in a remembered group are reaped, never a
 * group's leader: the agent's own servers and daemons lead their groups,
 * and their exit statuses stay for the agent's supervision. */
#ifndef FX_NODE_ORPHANS_H
#define FX_NODE_ORPHANS_H

#include <sys/types.h>

#define FX_ORPHAN_GROUPS 64

struct fx_orphans {
    pid_t pgid[FX_ORPHAN_GROUPS]; /* groups whose leader ended; 0: free */
};

/* Group `pgid`'s leader was reaped: kills what is left of the group
 * (SIGKILL) and remembers it for fx_orphans_reap. With every entry taken,
 * the oldest is forgotten (its zombies wait for the agent's exit). */
void fx_orphans_add(struct fx_orphans *o, pid_t pgid);

/* Reaps, without waiting, this process's ended children in the remembered
 * groups; forgets a group with no child of this process left in it (so it
 * was never ours: a process re-parented elsewhere), or whose id now names
 * a new group leader (the pid reused). Returns how many were reaped. */
int fx_orphans_reap(struct fx_orphans *o);

#endif
