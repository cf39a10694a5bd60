/* SPDX-License-Identifier: Apache-2.0 */
/* Starting one flexpu-remoted with what it needs and nothing else
 * (docs/REMOTE.md, "The servers' privileges"): a server parses network
 * input, so it must not be able to reach the cluster key that makes every
 * slice's token. The child gets
 *  - fd 0 /dev/null, fds 1 and 2 its log (appended), fd 3 its slice's token
 *    file opened read-only, fd 4 its port file (created empty, 0600): the
 *    files stay root's, in a directory only root enters, so a server cannot
 *    open another slice's token even under the same user;
 *  - no other descriptor (everything from 5 up is closed before exec,
 *    whatever its close-on-exec flag);
 *  - a session of its own (the agent stops it with its workers as one
 *    group), an empty signal mask, no_new_privs;
 *  - oom_score_adj 1000, kept by its workers: on memory pressure in the
 *    agent's container the OOM killer takes a server first, never the
 *    agent (docs/REMOTE.md, "The servers' host memory");
 *  - when `drop`: no supplementary groups and the given gid and uid (real,
 *    effective and saved), set before exec, so the server never runs as
 *    root. */
#ifndef FX_NODE_REMOTE_SPAWN_H
#define FX_NODE_REMOTE_SPAWN_H

#include <stdbool.h>
#include <sys/types.h>

#include "flexpu/error.h"

#define FX_REMOTE_TOKEN_FD 3
#define FX_REMOTE_PORT_FD 4

struct fx_remote_spawn {
    const char *bin;         /* executed */
    char *const *argv, *const *envp;
    const char *token_path;  /* given as FX_REMOTE_TOKEN_FD */
    const char *port_path;   /* truncated, given as FX_REMOTE_PORT_FD */
    const char *log_path;    /* stdout and stderr */
    bool drop;               /* become uid/gid (the caller is root) */
    uid_t uid;
    gid_t gid;
};

/* Starts the server; its pid in *pid. A failure before the exec (a file
 * that cannot be opened, a refused setresuid, a missing binary) is returned
 * with its step and errno in err, the child reaped. */
int fx_remote_spawn(const struct fx_remote_spawn *sp, pid_t *pid, struct flexpu_error *err);

/* Parses --remote-uid or --remote-gid (flag): a decimal id, 1 to 2^31-1:
 * never 0, which would leave the servers root beside the key. */
int fx_remote_id_parse(const char *flag, const char *text, unsigned *out,
                       struct flexpu_error *err);

/* Parses --remote-uid-range "FIRST-LAST": decimal ids, 1 <= FIRST <= LAST
 * <= 2^31-1 (never 0). FLEXPU_EINVAL naming the flag and the value. */
int fx_remote_uid_range_parse(const char *text, unsigned *first, unsigned *last,
                              struct flexpu_error *err);

#endif
