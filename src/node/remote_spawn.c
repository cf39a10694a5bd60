/* SPDX-License-Identifier: Apache-2.0 */
#include "node/remote_spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

/* The first descriptor the child closes: 0-2 and the two it is given stay. */
#define FIRST_CLOSED (FX_REMOTE_PORT_FD + 1)

/* What the child reports through the pipe when a step before exec fails. */
struct spawn_fail {
    int step, err;
};

static const char *const steps[] = {"setsid",       "dup2",      "close the descriptors",
                                    "oom_score_adj", "no_new_privs", "setgroups",
                                    "setresgid",     "setresuid",    "execve"};

/* What the child writes to /proc/self/oom_score_adj: the most a process can
 * be chosen by the OOM killer. A server and its workers (forked: they
 * inherit it, and exec keeps it) share the agent's container and its
 * memory limit; on memory pressure they go first, never the agent that
 * serves every slice of the node (docs/REMOTE.md, "The servers' host
 * memory"). Raising one's own needs no privilege. */
#define SERVER_OOM_SCORE_ADJ "1000"

/* In the child of fork: only system calls from here to exec (the agent is
 * threaded). Raw setgroups/setresgid/setresuid: glibc's wrappers would
 * signal the agent's other threads, which the child does not have. */
static void child(const struct fx_remote_spawn *sp, const int fds[5], int report, int maxfd)
{
    struct spawn_fail f = {0, 0};
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    if (setsid() < 0)
        goto fail;
    f.step = 1;
    for (int i = 0; i < 5; i++)
        if (dup2(fds[i], i) < 0)
            goto fail;
    f.step = 2;
    /* Every other descriptor the agent has (its API connections, the
     * kubelet's sockets, any file a library opened without O_CLOEXEC) is
     * closed here, not trusted to carry close-on-exec; the report pipe
     * too, which exec would close: it is moved below the first closed. */
    if (report < FIRST_CLOSED)
        goto fail;
    if (syscall(SYS_close_range, FIRST_CLOSED, report - 1, 0) != 0) {
        for (int fd = FIRST_CLOSED; fd < report; fd++)
            close(fd);
    }
    if (syscall(SYS_close_range, report + 1, ~0U, 0) != 0) {
        for (int fd = report + 1; fd < maxfd; fd++)
            close(fd);
    }
    f.step = 3;
    /* Before the change of user: the process's /proc files are root's
     * then, and stop being writable to it once it is another user. A
     * server that cannot be marked is not started: it would compete with
     * the agent for the container's memory. */
    int adj = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
    if (adj < 0)
        goto fail;
    ssize_t w = write(adj, SERVER_OOM_SCORE_ADJ, sizeof(SERVER_OOM_SCORE_ADJ) - 1);
    if (w != (ssize_t)sizeof(SERVER_OOM_SCORE_ADJ) - 1) {
        int e = w < 0 ? errno : EIO;
        close(adj);
        errno = e;
        goto fail;
    }
    close(adj);
    f.step = 4;
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
        goto fail;
    if (sp->drop) {
        f.step = 5;
        if (syscall(SYS_setgroups, 0, NULL) != 0)
            goto fail;
        f.step = 6;
        if (syscall(SYS_setresgid, sp->gid, sp->gid, sp->gid) != 0)
            goto fail;
        f.step = 7;
        if (syscall(SYS_setresuid, sp->uid, sp->uid, sp->uid) != 0)
            goto fail;
    }
    f.step = 8;
    execve(sp->bin, sp->argv, sp->envp);
fail:
    f.err = errno;
    if (write(report, &f, sizeof(f)) < 0) {
        /* nobody to tell */
    }
    _exit(127);
}

/* Opens what the child is given, each at 10 or above (so that dup2 onto
 * 0-4 in the child never overwrites one not yet moved) and close-on-exec
 * in the agent. */
static int open_high(const char *path, int flags, mode_t mode, const char *what,
                     struct flexpu_error *err)
{
    int fd = open(path, flags | O_CLOEXEC | O_NOFOLLOW, mode);
    int high = fd < 0 ? -1 : fcntl(fd, F_DUPFD_CLOEXEC, 10);
    int e = errno;
    if (fd >= 0)
        close(fd);
    if (high < 0)
        flexpu_error_set(err, FLEXPU_EIO, "remote server: cannot open its %s '%s': %s", what,
                         path, strerror(e));
    return high;
}

int fx_remote_spawn(const struct fx_remote_spawn *sp, pid_t *pid, struct flexpu_error *err)
{
    int fds[5] = {-1, -1, -1, -1, -1}, pipefd[2] = {-1, -1}, rc = 0;
    *pid = 0;
    if ((fds[0] = open_high("/dev/null", O_RDONLY, 0, "stdin", err)) < 0 ||
        (fds[1] = open_high(sp->log_path, O_WRONLY | O_CREAT | O_APPEND, 0600, "log", err)) <
            0 ||
        (fds[3] = open_high(sp->token_path, O_RDONLY | O_NONBLOCK, 0, "token", err)) < 0 ||
        (fds[4] = open_high(sp->port_path, O_WRONLY | O_CREAT | O_TRUNC, 0600, "port file",
                            err)) < 0) {
        rc = err->code;
        goto out;
    }
    fds[2] = fds[1];
    /* A pipe the child writes only when it fails before exec; its write end
     * goes with the exec (close-on-exec), so the read sees EOF on success. */
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0) {
        rc = flexpu_error_set(err, FLEXPU_EIO, "remote server: pipe: %s", strerror(errno));
        goto out;
    }
    pipefd[0] = p[0];
    pipefd[1] = fcntl(p[1], F_DUPFD_CLOEXEC, 10);
    close(p[1]);
    if (pipefd[1] < 0) {
        rc = flexpu_error_set(err, FLEXPU_EIO, "remote server: pipe: %s", strerror(errno));
        goto out;
    }
    struct rlimit rl;
    int maxfd = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
                        rl.rlim_cur < 65536
                    ? (int)rl.rlim_cur
                    : 65536;
    pid_t c = fork();
    if (c < 0) {
        rc = flexpu_error_set(err, FLEXPU_EIO, "remote server: fork: %s", strerror(errno));
        goto out;
    }
    if (c == 0)
        child(sp, fds, pipefd[1], maxfd);
    close(pipefd[1]);
    pipefd[1] = -1;
    struct spawn_fail f;
    ssize_t n;
    do
        n = read(pipefd[0], &f, sizeof(f));
    while (n < 0 && errno == EINTR);
    if (n == (ssize_t)sizeof(f)) {
        waitpid(c, NULL, 0);
        rc = flexpu_error_set(err, FLEXPU_EIO, "remote server '%s': %s failed: %s", sp->bin,
                              f.step >= 0 && f.step < (int)(sizeof(steps) / sizeof(steps[0]))
                                  ? steps[f.step]
                                  : "?",
                              strerror(f.err));
        goto out;
    }
    *pid = c;
out:
    for (int i = 0; i < 5; i++)
        if (fds[i] >= 0 && i != 2)
            close(fds[i]);
    if (pipefd[0] >= 0)
        close(pipefd[0]);
    if (pipefd[1] >= 0)
        close(pipefd[1]);
    return rc;
}

int fx_remote_uid_range_parse(const char *text, unsigned *first, unsigned *last,
                              struct flexpu_error *err)
{
    const char *dash = text ? strchr(text, '-') : NULL;
    long long a = -1, b = -1;
    if (dash && dash > text && dash[1] >= '0' && dash[1] <= '9' && *text >= '0' && *text <= '9') {
        char *end;
        errno = 0;
        a = strtoll(text, &end, 10);
        if (end != dash || errno)
            a = -1;
        b = strtoll(dash + 1, &end, 10);
        if (*end || errno)
            b = -1;
    }
    if (a < 1 || b < a || b > INT32_MAX)
        return flexpu_error_field(err, FLEXPU_EINVAL, "--remote-uid-range", text ? text : "",
                                  text ? strlen(text) : 0,
                                  "must be FIRST-LAST, numeric ids from 1 to 2147483647 with "
                                  "FIRST <= LAST (not 0: the servers must not run as root "
                                  "beside the cluster key)");
    *first = (unsigned)a;
    *last = (unsigned)b;
    return 0;
}

int fx_remote_id_parse(const char *flag, const char *text, unsigned *out,
                       struct flexpu_error *err)
{
    char *end;
    errno = 0;
    long long v = text ? strtoll(text, &end, 10) : 0;
    if (!text || !*text || errno || *end || v < 1 || v > INT32_MAX)
        return flexpu_error_field(err, FLEXPU_EINVAL, flag, text ? text : "",
                                  text ? strlen(text) : 0,
                                  "must be a numeric id from 1 to 2147483647 (not 0: the "
                                  "servers must not run as root beside the cluster key)");
    *out = (unsigned)v;
    return 0;
}
