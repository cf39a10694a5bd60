/* SPDX-License-Identifier: Apache-2.0 */
/* The one reader of /proc/PID/stat (proc(5)): the fields the node agent uses
 * to tell a live process from a zombie, to find a process group, and to tell
 * a process from a later one that reuses its id (its start time); and its
 * CPU time, which the Kubernetes benchmark reports.
 *
 * The command name (field 2) is the caller's to choose (prctl, exec) and may
 * hold spaces and ')', so fields are counted from the LAST ')'. Field 22 is
 * the start time; field 23, the virtual size, changes as the process grows and
 * is never an identity (reading 23 for 22 once made the agent take a live MPS
 * daemon for gone). */
#ifndef FX_UTIL_PROCSTAT_H
#define FX_UTIL_PROCSTAT_H

#include <stdbool.h>
#include <sys/types.h>

#include "flexpu/error.h"

struct fx_procstat {
    char state;                    /* field 3: R, S, D, T, Z (zombie), X (dead), ... */
    int ppid;                      /* field 4 */
    int pgrp;                      /* field 5: the process group */
    unsigned long long utime;      /* field 14: user CPU time, clock ticks */
    unsigned long long stime;      /* field 15: system CPU time, clock ticks */
    unsigned long long start_time; /* field 22: clock ticks after boot */
};

/* Parses the text of one /proc/PID/stat. 0, or FLEXPU_EPARSE with err (may be
 * NULL) naming the field and its value; *out is unchanged on error. */
int fx_procstat_parse(const char *text, struct fx_procstat *out, struct flexpu_error *err);

/* Reads and parses /proc/<pid>/stat. 0; FLEXPU_ENOENT when no process has that
 * id (a zombie still has one); FLEXPU_EIO or FLEXPU_EPARSE otherwise. *out is
 * unchanged on error. */
int fx_procstat_read(pid_t pid, struct fx_procstat *out, struct flexpu_error *err);

/* Whether the process has ended (a zombie or dead), though its id is not yet
 * free for another process. */
bool fx_procstat_ended(const struct fx_procstat *st);

#endif
