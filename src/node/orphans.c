/* SPDX-License-Identifier: Apache-2.0 */
#include "node/orphans.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>

void fx_orphans_add(struct fx_orphans *o, pid_t pgid)
{
    if (pgid <= 1)
        return;
    kill(-pgid, SIGKILL);
    size_t free_at = 0;
    for (size_t i = 0; i < FX_ORPHAN_GROUPS; i++) {
        if (o->pgid[i] == pgid)
            return;
        if (o->pgid[i] == 0 && o->pgid[free_at] != 0)
            free_at = i;
    }
    if (o->pgid[free_at] != 0) {
        memmove(o->pgid, o->pgid + 1, (FX_ORPHAN_GROUPS - 1) * sizeof(pid_t));
        free_at = FX_ORPHAN_GROUPS - 1;
    }
    o->pgid[free_at] = pgid;
}

/* Reaps group g's ended children; whether the group is to be kept. */
static int reap_group(pid_t g, int *reaped)
{
    for (;;) {
        siginfo_t si;
        memset(&si, 0, sizeof si);
        /* WNOWAIT: look first, so that a leader's status is never taken. */
        if (waitid(P_PGID, (id_t)g, &si, WEXITED | WNOHANG | WNOWAIT) != 0)
            return errno == EINTR; /* ECHILD: no child of ours in it */
        if (si.si_pid == 0)
            return 1; /* children left, none ended yet */
        if (si.si_pid == g)
            return 0; /* a new leader with the old id: not ours to reap */
        if (waitpid(si.si_pid, NULL, WNOHANG) != si.si_pid)
            return 1; /* taken meanwhile: look again next time */
        (*reaped)++;
    }
}

int fx_orphans_reap(struct fx_orphans *o)
{
    int reaped = 0;
    for (size_t i = 0; i < FX_ORPHAN_GROUPS; i++)
        if (o->pgid[i] && !reap_group(o->pgid[i], &reaped))
            o->pgid[i] = 0;
    return reaped;
}
