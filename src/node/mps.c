/* SPDX-License-Identifier: Apache-2.0 */
/* One NVIDIA MPS control daemon per slice (see mps.h for the design). */
#include "node/mps.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "flexpu/log.h"
#include "node/slices.h"
#include "util/clock.h"
#include "util/procstat.h"

#define COMP "mps"

struct mslice {
    char key[FX_SLICE_KEY_LEN + 1];
    pid_t pid;               /* 0: none */
    unsigned long long start; /* its start time (/proc/<pid>/stat), against pid reuse */
    bool child;              /* ours to waitpid (not adopted from a previous agent) */
    bool wanted;             /* has limits: restarted when it dies */
    bool release;            /* to be quit and removed */
    bool busy;               /* a thread works on it without the lock */
    unsigned failures;       /* restarts failed in a row */
    struct fx_mps_limits lim;
    struct mslice *next;
};

struct fx_mps {
    char root[256], control[512];
    int timeout_ms, tick_ms;
    pthread_mutex_t mu;
    pthread_cond_t cond; /* a slice's busy or release state changed; stop */
    pthread_t tid;
    bool stop;
    unsigned starts;
    struct mslice *list;
};

int fx_sharing_mode_parse(const char *s, enum fx_sharing_mode *out)
{
    if (s && strcmp(s, "soft") == 0)
        *out = FX_SHARING_SOFT;
    else if (s && strcmp(s, "mps") == 0)
        *out = FX_SHARING_MPS;
    else if (s && strcmp(s, "mig") == 0)
        *out = FX_SHARING_MIG;
    else
        return -1;
    return 0;
}

const char *fx_sharing_mode_name(enum fx_sharing_mode m)
{
    return m == FX_SHARING_MPS ? "mps" : m == FX_SHARING_MIG ? "mig" : "soft";
}

/* ---- paths ---- */

static bool key_ok(const char *key)
{
    size_t n = 0;
    for (; key[n]; n++)
        if (!isdigit((unsigned char)key[n]) && !(key[n] >= 'a' && key[n] <= 'f'))
            return false;
    return n == FX_SLICE_KEY_LEN;
}

static int slice_path(const char *root, const char *key, const char *sub, char *out, size_t len)
{
    if (!key_ok(key))
        return -1;
    int n = snprintf(out, len, "%s/mps/%s%s%s", root, key, sub ? "/" : "", sub ? sub : "");
    return n < 0 || (size_t)n >= len ? -1 : 0;
}

int fx_mps_pipe_dir(const char *root, const char *key, char *out, size_t len)
{
    return slice_path(root, key, "pipe", out, len);
}

static int mkdir_mode(const char *path, mode_t mode, struct flexpu_error *err)
{
    if (mkdir(path, mode) != 0 && errno != EEXIST)
        return flexpu_error_set(err, FLEXPU_EIO, "cannot create '%s': %s", path,
                                strerror(errno));
    struct stat st;
    if (lstat(path, &st) != 0 || !S_ISDIR(st.st_mode))
        return flexpu_error_set(err, FLEXPU_EIO, "'%s' is not a directory", path);
    chmod(path, mode);
    return 0;
}

int fx_mps_prepare(struct fx_mps *m, const char *key, struct flexpu_error *err)
{
    char path[512];
    if (slice_path(m->root, key, NULL, path, sizeof(path)) != 0)
        return flexpu_error_set(err, FLEXPU_EINVAL, "MPS: slice key '%.40s' is not one", key);
    if (mkdir_mode(path, 0755, err))
        return err->code;
    /* pipe/ is mounted into the slice's containers: clients of any user
     * connect there. log/ stays the agent's. */
    slice_path(m->root, key, "pipe", path, sizeof(path));
    if (mkdir_mode(path, 0755, err))
        return err->code;
    slice_path(m->root, key, "log", path, sizeof(path));
    return mkdir_mode(path, 0700, err);
}


static void remove_slice_dir(struct fx_mps *m, const char *key)
{
    char path[512];
    if (slice_path(m->root, key, NULL, path, sizeof(path)) != 0)
        return;
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd >= 0)
        fx_dir_clear(fd, 8);
    rmdir(path);
}

/* ---- processes ---- */

/* The start time of process pid (util/procstat.h); 0 when there is no such
 * process. A zombie is gone for our purposes: its daemon no longer serves. */
static unsigned long long start_time(pid_t pid)
{
    struct fx_procstat st;
    if (fx_procstat_read(pid, &st, NULL) != 0 || fx_procstat_ended(&st))
        return 0;
    return st.start_time;
}

/* Whether the slice's daemon runs; reaps it when it was ours and ended. */
static bool daemon_alive(struct mslice *s)
{
    if (s->pid <= 0)
        return false;
    if (s->child) {
        int st;
        pid_t r = waitpid(s->pid, &st, WNOHANG);
        if (r == 0)
            return true;
        if (r == s->pid) {
            FX_WARN(COMP, "MPS daemon ended", "key=%s pid=%d status=%d signal=%d", s->key,
                    (int)s->pid, WIFEXITED(st) ? WEXITSTATUS(st) : -1,
                    WIFSIGNALED(st) ? WTERMSIG(st) : 0);
            s->pid = 0;
            return false;
        }
    }
    if (s->start && start_time(s->pid) == s->start)
        return true;
    s->pid = 0;
    return false;
}

/* `name` as a path to execute: as is when it holds a '/', else the first
 * executable file of that name in PATH. */
static void resolve(const char *name, char *out, size_t len)
{
    snprintf(out, len, "%s", name);
    if (strchr(name, '/'))
        return;
    const char *path = getenv("PATH");
    if (!path)
        path = "/usr/local/bin:/usr/bin:/bin";
    while (*path) {
        size_t n = strcspn(path, ":");
        char cand[768];
        if (n > 0 && snprintf(cand, sizeof(cand), "%.*s/%s", (int)n, path, name) <
                         (int)sizeof(cand) &&
            access(cand, X_OK) == 0) {
            snprintf(out, len, "%s", cand);
            return;
        }
        path += n + (path[n] == ':');
    }
}

/* The environment of the daemon and of its clients: the slice's pipe and
 * log directories, the GPUs (daemon), and what a program needs to run
 * (PATH, LD_LIBRARY_PATH) - nothing else of the agent's. */
struct envbuf {
    char pipe[600], log[600], visible[sizeof(((struct fx_mps_limits *)0)->visible) + 32];
    char path[1100], ld[1100];
    char *envp[6];
};

static void env_fill(struct fx_mps *m, const char *key, const char *visible, struct envbuf *e)
{
    char dir[512];
    int n = 0;
    slice_path(m->root, key, "pipe", dir, sizeof(dir));
    snprintf(e->pipe, sizeof(e->pipe), "CUDA_MPS_PIPE_DIRECTORY=%s", dir);
    e->envp[n++] = e->pipe;
    slice_path(m->root, key, "log", dir, sizeof(dir));
    snprintf(e->log, sizeof(e->log), "CUDA_MPS_LOG_DIRECTORY=%s", dir);
    e->envp[n++] = e->log;
    if (visible) {
        snprintf(e->visible, sizeof(e->visible), "CUDA_VISIBLE_DEVICES=%s", visible);
        e->envp[n++] = e->visible;
    }
    const char *v = getenv("PATH");
    snprintf(e->path, sizeof(e->path), "PATH=%.1000s", v ? v : "/usr/local/bin:/usr/bin:/bin");
    e->envp[n++] = e->path;
    if ((v = getenv("LD_LIBRARY_PATH"))) {
        snprintf(e->ld, sizeof(e->ld), "LD_LIBRARY_PATH=%.1000s", v);
        e->envp[n++] = e->ld;
    }
    e->envp[n] = NULL;
}

/* fork + execve, stdin from `in`, stdout and stderr to `out`, in a process
 * group of its own (a signal to the agent's group does not reach the
 * daemons, which its pods keep using). Only async-signal-safe calls after
 * fork: the agent has threads. */
static pid_t spawn(const char *exe, char *const argv[], char *const envp[], int in, int out)
{
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    setpgid(0, 0);
    if (dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(out, 2) < 0)
        _exit(126);
#ifdef SYS_close_range
    if (syscall(SYS_close_range, 3U, ~0U, 0) != 0)
#endif
        for (int fd = 3; fd < 1024; fd++)
            close(fd);
    execve(exe, argv, envp);
    _exit(127);
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Waits up to ms for child pid to end; its status, or -1 (still running). */
static int wait_child(pid_t pid, int ms)
{
    int64_t until = fx_mono_ms() + ms;
    for (;;) {
        int st;
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid)
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
        if (r < 0)
            return 255;
        if (fx_mono_ms() >= until)
            return -1;
        sleep_ms(5);
    }
}

/* client()'s results that are no exit status. */
#define CLIENT_NOT_RUN (-1) /* could not be run (out says why) */
#define CLIENT_TIMEOUT (-2) /* did not end by its `until` (killed) */

/* Runs the control program as a client of slice `key`'s daemon with `cmd`
 * on its stdin; its output (stdout and stderr, trimmed) into out. Returns
 * its exit status, CLIENT_TIMEOUT when it did not end by `until`
 * (fx_mono_ms; it is killed) or CLIENT_NOT_RUN. */
static int client(struct fx_mps *m, const char *key, const char *cmd, char *out, size_t len,
                  int64_t until)
{
    char exe[768];
    resolve(m->control, exe, sizeof(exe));
    struct envbuf e;
    env_fill(m, key, NULL, &e);
    int in[2], o[2];
    out[0] = '\0';
    /* stdin is a socket: a client that exits early cannot SIGPIPE us. */
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, in) != 0) {
        snprintf(out, len, "socketpair: %s", strerror(errno));
        return CLIENT_NOT_RUN;
    }
    if (pipe2(o, O_CLOEXEC) != 0) {
        snprintf(out, len, "pipe: %s", strerror(errno));
        close(in[0]);
        close(in[1]);
        return CLIENT_NOT_RUN;
    }
    char *argv[] = {exe, NULL};
    pid_t pid = spawn(exe, argv, e.envp, in[0], o[1]);
    close(in[0]);
    close(o[1]);
    if (pid < 0) {
        snprintf(out, len, "fork: %s", strerror(errno));
        close(in[1]);
        close(o[0]);
        return CLIENT_NOT_RUN;
    }
    char line[300];
    int n = snprintf(line, sizeof(line), "%s\n", cmd);
    if (send(in[1], line, (size_t)n, MSG_NOSIGNAL) < 0)
        FX_DEBUG(COMP, "client took no command", "key=%s error=\"%s\"", key, strerror(errno));
    shutdown(in[1], SHUT_WR);
    size_t got = 0;
    bool timed_out = false;
    for (;;) {
        int64_t left = until - fx_mono_ms();
        if (left <= 0) {
            timed_out = true;
            break;
        }
        struct pollfd pfd = {.fd = o[0], .events = POLLIN};
        if (poll(&pfd, 1, (int)left) <= 0)
            continue;
        char buf[512];
        ssize_t r = read(o[0], buf, sizeof(buf));
        if (r <= 0)
            break;
        size_t take = (size_t)r < len - 1 - got ? (size_t)r : len - 1 - got;
        memcpy(out + got, buf, take);
        got += take;
    }
    out[got] = '\0';
    while (got > 0 && isspace((unsigned char)out[got - 1]))
        out[--got] = '\0';
    close(in[1]);
    close(o[0]);
    int64_t left = until - fx_mono_ms();
    int st = timed_out ? -1 : wait_child(pid, left > 0 ? (int)left : 0);
    if (st < 0) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        snprintf(out, len, "no answer in time");
        return CLIENT_TIMEOUT;
    }
    if (st == 127 && got == 0)
        /* The program's path may not fit the message: a truncated path still says which. */
        (void)!snprintf(out, len, "cannot run '%.200s'", exe);
    return st;
}

/* The last line of what the daemon wrote (log/daemon.out), for errors. */
static void daemon_said(struct fx_mps *m, const char *key, char *out, size_t len)
{
    char path[512];
    out[0] = '\0';
    if (slice_path(m->root, key, "log/daemon.out", path, sizeof(path)) != 0)
        return;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return;
    char buf[512];
    off_t end = lseek(fd, 0, SEEK_END);
    off_t from = end > (off_t)sizeof(buf) - 1 ? end - (off_t)sizeof(buf) + 1 : 0;
    ssize_t n = pread(fd, buf, sizeof(buf) - 1, from);
    close(fd);
    if (n <= 0)
        return;
    buf[n] = '\0';
    while (n > 0 && isspace((unsigned char)buf[n - 1]))
        buf[--n] = '\0';
    char *last = strrchr(buf, '\n');
    /* Its last line, cut to what the caller's message has room for. */
    if (snprintf(out, len, "%s", last ? last + 1 : buf) >= (int)len && len > 0)
        out[len - 1] = '\0';
}

/* Quits the slice's daemon: `quit`, then SIGKILL to its process group
 * (the servers it started) after the timeout, if it is still the same
 * process. */
static void daemon_quit(struct fx_mps *m, struct mslice *s)
{
    if (!daemon_alive(s))
        return;
    char out[200];
    int64_t until = fx_mono_ms() + m->timeout_ms;
    int st = client(m, s->key, "quit", out, sizeof(out), until - m->timeout_ms / 2);
    if (st != 0)
        FX_WARN(COMP, "MPS daemon did not take quit", "key=%s pid=%d status=%d output=\"%s\"",
                s->key, (int)s->pid, st, out);
    while (daemon_alive(s) && fx_mono_ms() < until)
        sleep_ms(10);
    if (s->pid > 0 && daemon_alive(s)) {
        FX_WARN(COMP, "MPS daemon still running after quit; killing it", "key=%s pid=%d",
                s->key, (int)s->pid);
        kill(-s->pid, SIGKILL);
        kill(s->pid, SIGKILL);
        if (s->child) {
            waitpid(s->pid, NULL, 0);
        } else {
            /* An adopted daemon is not ours to wait for; a killed process
             * may take a while to end under load, and "quit" means gone. */
            int64_t gone_by = fx_mono_ms() + 5000;
            while (daemon_alive(s) && fx_mono_ms() < gone_by)
                sleep_ms(10);
            if (s->pid > 0)
                FX_WARN(COMP, "MPS daemon still present 5 s after SIGKILL", "key=%s pid=%d",
                        s->key, (int)s->pid);
        }
    }
    s->pid = 0;
}

/* ---- the agent's record of a daemon ---- */

static void record_write(struct fx_mps *m, const struct mslice *s)
{
    char path[512], text[1400];
    if (slice_path(m->root, s->key, "daemon", path, sizeof(path)) != 0)
        return;
    int o = snprintf(text, sizeof(text), "%d %llu %d %d", (int)s->pid, s->start,
                     s->lim.thread_pct, s->lim.ndev);
    for (int i = 0; i < s->lim.ndev && o < (int)sizeof(text); i++)
        o += snprintf(text + o, sizeof(text) - (size_t)o, " %" PRId64, s->lim.mem_mib[i]);
    if (o < (int)sizeof(text))
        snprintf(text + o, sizeof(text) - (size_t)o, " %s\n",
                 s->lim.visible[0] ? s->lim.visible : "-");
    struct flexpu_error err = {0};
    if (fx_file_replace(path, text, 0600, &err) != 0)
        FX_WARN(COMP, "cannot record the MPS daemon", "key=%s error=\"%s\"", s->key, err.msg);
}

static bool limits_valid(const struct fx_mps_limits *l)
{
    if (l->thread_pct < 1 || l->thread_pct > 100 || l->ndev < 1 || l->ndev > FLEXPU_MAX_GPUS)
        return false;
    for (int i = 0; i < l->ndev; i++)
        if (l->mem_mib[i] < 0 || l->mem_mib[i] > (INT64_C(1) << 40))
            return false;
    /* passed as one environment value: no separators of our own */
    for (const char *c = l->visible; *c; c++)
        if (!isalnum((unsigned char)*c) && *c != '-' && *c != ',' && *c != ':' && *c != '/')
            return false;
    return true;
}

/* Reads <root>/mps/<key>/daemon into s; false when it is missing or not
 * one the agent wrote. */
static bool record_read(struct fx_mps *m, struct mslice *s)
{
    char path[512], text[1400];
    if (slice_path(m->root, s->key, "daemon", path, sizeof(path)) != 0)
        return false;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0)
        return false;
    ssize_t n = read(fd, text, sizeof(text) - 1);
    close(fd);
    if (n <= 0)
        return false;
    text[n] = '\0';
    char *p = text, *end;
    long pid = strtol(p, &end, 10);
    if (end == p || pid < 0 || pid > INT32_MAX)
        return false;
    s->pid = (pid_t)pid;
    s->start = strtoull(p = end, &end, 10);
    s->lim.thread_pct = (int)strtol(p = end, &end, 10);
    s->lim.ndev = (int)strtol(p = end, &end, 10);
    if (end == p || s->lim.ndev < 1 || s->lim.ndev > FLEXPU_MAX_GPUS)
        return false;
    for (int i = 0; i < s->lim.ndev; i++) {
        s->lim.mem_mib[i] = strtoll(p = end, &end, 10);
        if (end == p)
            return false;
    }
    _Static_assert(sizeof(s->lim.visible) == 1280, "the width below");
    char vis[sizeof(s->lim.visible)];
    if (sscanf(end, " %1279s", vis) != 1)
        return false;
    snprintf(s->lim.visible, sizeof(s->lim.visible), "%s", strcmp(vis, "-") ? vis : "");
    return limits_valid(&s->lim);
}

/* ---- starting a daemon with its limits ---- */

/* "25", "25.0" -> 25; -1 otherwise. */
static int parse_pct(const char *s)
{
    char *end;
    double v = strtod(s, &end);
    while (isspace((unsigned char)*end))
        end++;
    if (end == s || *end || v < 0 || v > 100)
        return -1;
    return (int)(v + 0.5);
}

/* "4096M", "4G", "4096 MB", "4294967296" -> MiB (bytes rounded down); -1
 * otherwise. */
static int64_t parse_mib(const char *s)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s || v < 0)
        return -1;
    while (isspace((unsigned char)*end))
        end++;
    double mul = 1.0 / (1024 * 1024);
    switch (toupper((unsigned char)*end)) {
    case 'K': mul = 1.0 / 1024; end++; break;
    case 'M': mul = 1; end++; break;
    case 'G': mul = 1024; end++; break;
    case 'T': mul = 1024.0 * 1024; end++; break;
    default: break;
    }
    if (*end == 'i')
        end++;
    if (toupper((unsigned char)*end) == 'B')
        end++;
    while (isspace((unsigned char)*end))
        end++;
    if (*end)
        return -1;
    return (int64_t)(v * mul + 1e-6);
}

/* A start's runs of the control program, counted for its errors: the
 * first is the daemon's answer (get_server_list), then the limits set and
 * read back, one command each. */
struct steps {
    int done, total;
};

static int steps_total(const struct fx_mps_limits *l)
{
    int n = 1 + 2; /* the answer, the thread percentage set and read back */
    for (int i = 0; i < l->ndev; i++)
        n += l->mem_mib[i] ? 2 : 0;
    return n;
}

/* One command that must succeed, run with a whole timeout of its own: a
 * slow node whose every step ends in time is not failed for their sum. */
static int command(struct fx_mps *m, struct mslice *s, struct steps *st, const char *cmd,
                   char *out, size_t len, struct flexpu_error *err)
{
    int step = ++st->done;
    int64_t t0 = fx_mono_ms();
    int rc = client(m, s->key, cmd, out, len, t0 + m->timeout_ms);
    if (rc == CLIENT_TIMEOUT)
        return flexpu_error_set(err, FLEXPU_EIO,
                                "MPS daemon of slice %s: step %d of %d, '%s', got no answer "
                                "within %d ms (the control program was killed after %lld ms)",
                                s->key, step, st->total, cmd, m->timeout_ms,
                                (long long)(fx_mono_ms() - t0));
    if (rc != 0)
        return flexpu_error_set(err, FLEXPU_EIO,
                                "MPS daemon of slice %s: step %d of %d, '%s', failed (%s %d): %s",
                                s->key, step, st->total, cmd,
                                rc == CLIENT_NOT_RUN ? "not run" : "status", rc,
                                out[0] ? out : "no output");
    return 0;
}

/* Starts the daemon for s (not running) and sets and checks s->lim; on
 * error no daemon is left. Called without the lock; s is busy. */
static int daemon_start(struct fx_mps *m, struct mslice *s, struct flexpu_error *err)
{
    if (fx_mps_prepare(m, s->key, err) != 0)
        return err->code;
    char exe[768], logf[512];
    resolve(m->control, exe, sizeof(exe));
    slice_path(m->root, s->key, "log/daemon.out", logf, sizeof(logf));
    int out = open(logf, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
    int in = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (out < 0 || in < 0) {
        if (out >= 0)
            close(out);
        if (in >= 0)
            close(in);
        return flexpu_error_set(err, FLEXPU_EIO, "MPS daemon of slice %s: cannot open '%s': %s",
                                s->key, logf, strerror(errno));
    }
    struct envbuf e;
    env_fill(m, s->key, s->lim.visible[0] ? s->lim.visible : NULL, &e);
    char *argv[] = {exe, "-f", NULL}; /* foreground: the agent is its parent and sees it end */
    pid_t pid = spawn(exe, argv, e.envp, in, out);
    close(in);
    close(out);
    if (pid < 0)
        return flexpu_error_set(err, FLEXPU_EIO, "MPS daemon of slice %s: fork: %s", s->key,
                                strerror(errno));
    s->pid = pid;
    s->child = true;
    s->start = 0;
    pthread_mutex_lock(&m->mu);
    m->starts++;
    pthread_mutex_unlock(&m->mu);
    /* Until a client gets an answer: the daemon made its pipes. Clients
     * are started until one timeout has passed since the daemon's start,
     * each with a whole timeout of its own (the last one started is not
     * cut short by the time the earlier ones took). */
    struct steps steps = {.done = 1, .total = steps_total(&s->lim)};
    char said[300] = "";
    int64_t t0 = fx_mono_ms(), ready_by = t0 + m->timeout_ms;
    for (;;) {
        int st = wait_child(pid, 0);
        if (st >= 0) {
            s->pid = 0;
            char last[200];
            daemon_said(m, s->key, last, sizeof(last));
            return flexpu_error_set(err, FLEXPU_EIO,
                                    "MPS daemon of slice %s ('%s -f') exited with status %d "
                                    "before it answered: %s",
                                    s->key, exe, st, last[0] ? last : "no output");
        }
        char got[300];
        int cst = client(m, s->key, "get_server_list", got, sizeof(got),
                         fx_mono_ms() + m->timeout_ms);
        if (cst == 0)
            break;
        if (cst > 0 || !said[0]) /* what a client that ran said, over a cut-off one */
            snprintf(said, sizeof(said), "%s", got);
        if (fx_mono_ms() >= ready_by) {
            flexpu_error_set(err, FLEXPU_EIO,
                             "MPS daemon of slice %s ('%s -f') did not answer within %d ms "
                             "(step 1 of %d, 'get_server_list', tried for %lld ms): %s",
                             s->key, exe, m->timeout_ms, steps.total,
                             (long long)(fx_mono_ms() - t0), said[0] ? said : "no output");
            goto fail;
        }
        sleep_ms(20);
    }
    s->start = start_time(pid);
    /* The limits, as defaults of the servers it will start (none yet: no
     * container of the slice has run), then read back. */
    char cmd[128], got[300];
    snprintf(cmd, sizeof(cmd), "set_default_active_thread_percentage %d", s->lim.thread_pct);
    if (command(m, s, &steps, cmd, got, sizeof(got), err))
        goto fail;
    for (int i = 0; i < s->lim.ndev; i++) {
        if (!s->lim.mem_mib[i])
            continue;
        snprintf(cmd, sizeof(cmd), "set_default_device_pinned_mem_limit %d %" PRId64 "M", i,
                 s->lim.mem_mib[i]);
        if (command(m, s, &steps, cmd, got, sizeof(got), err))
            goto fail;
    }
    if (command(m, s, &steps, "get_default_active_thread_percentage", got, sizeof(got), err))
        goto fail;
    if (parse_pct(got) != s->lim.thread_pct) {
        flexpu_error_set(err, FLEXPU_EIO,
                         "MPS daemon of slice %s: active thread percentage reads back '%.60s', "
                         "want %d",
                         s->key, got, s->lim.thread_pct);
        goto fail;
    }
    for (int i = 0; i < s->lim.ndev; i++) {
        if (!s->lim.mem_mib[i])
            continue;
        snprintf(cmd, sizeof(cmd), "get_default_device_pinned_mem_limit %d", i);
        if (command(m, s, &steps, cmd, got, sizeof(got), err))
            goto fail;
        if (parse_mib(got) != s->lim.mem_mib[i]) {
            flexpu_error_set(err, FLEXPU_EIO,
                             "MPS daemon of slice %s: device %d pinned memory limit reads back "
                             "'%.60s', want %" PRId64 "M",
                             s->key, i, got, s->lim.mem_mib[i]);
            goto fail;
        }
    }
    record_write(m, s);
    FX_INFO(COMP, "MPS daemon started", "key=%s pid=%d threads=%d devices=%d memory_mib=%" PRId64,
            s->key, (int)pid, s->lim.thread_pct, s->lim.ndev, s->lim.mem_mib[0]);
    return 0;
fail:
    s->start = start_time(pid);
    daemon_quit(m, s);
    return err->code;
}

/* ---- the table ---- */

static struct mslice *find(struct fx_mps *m, const char *key)
{
    for (struct mslice *s = m->list; s; s = s->next)
        if (strcmp(s->key, key) == 0)
            return s;
    return NULL;
}

static struct mslice *add(struct fx_mps *m, const char *key)
{
    struct mslice *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    if (snprintf(s->key, sizeof(s->key), "%s", key) >= (int)sizeof(s->key)) {
        free(s); /* not a slice key (they are fixed-length): never one of ours */
        return NULL;
    }
    s->next = m->list;
    m->list = s;
    return s;
}

static void unlink_slice(struct fx_mps *m, struct mslice *victim)
{
    for (struct mslice **pp = &m->list; *pp; pp = &(*pp)->next)
        if (*pp == victim) {
            *pp = victim->next;
            free(victim);
            return;
        }
}

static bool limits_equal(const struct fx_mps_limits *a, const struct fx_mps_limits *b)
{
    if (a->thread_pct != b->thread_pct || a->ndev != b->ndev ||
        strcmp(a->visible, b->visible) != 0)
        return false;
    for (int i = 0; i < a->ndev; i++)
        if (a->mem_mib[i] != b->mem_mib[i])
            return false;
    return true;
}

int fx_mps_start(struct fx_mps *m, const char *key, const struct fx_mps_limits *lim,
                 struct flexpu_error *err)
{
    if (!key_ok(key))
        return flexpu_error_set(err, FLEXPU_EINVAL, "MPS: slice key '%.40s' is not one", key);
    if (!limits_valid(lim))
        return flexpu_error_set(err, FLEXPU_EINVAL,
                                "MPS daemon of slice %s: limits out of range (threads %d%%, "
                                "%d devices)",
                                key, lim->thread_pct, lim->ndev);
    pthread_mutex_lock(&m->mu);
    struct mslice *s;
    /* A quit under way (or another start) finishes first. */
    while ((s = find(m, key)) && s->busy)
        pthread_cond_wait(&m->cond, &m->mu);
    if (!s && !(s = add(m, key))) {
        pthread_mutex_unlock(&m->mu);
        return flexpu_error_set(err, FLEXPU_ENOMEM, "out of memory");
    }
    s->release = false;
    bool same = daemon_alive(s) && limits_equal(&s->lim, lim);
    if (same) { /* a container of the slice starting again */
        s->wanted = true;
        pthread_mutex_unlock(&m->mu);
        return 0;
    }
    s->busy = true;
    pthread_mutex_unlock(&m->mu);
    daemon_quit(m, s); /* other limits: start afresh */
    s->lim = *lim;
    int rc = daemon_start(m, s, err);
    pthread_mutex_lock(&m->mu);
    s->busy = false;
    s->wanted = rc == 0;
    s->failures = 0;
    pthread_cond_broadcast(&m->cond);
    pthread_mutex_unlock(&m->mu);
    return rc;
}

void fx_mps_release(struct fx_mps *m, const char *key)
{
    if (!key_ok(key))
        return;
    pthread_mutex_lock(&m->mu);
    struct mslice *s = find(m, key);
    if (!s)
        s = add(m, key); /* only its directories to remove */
    if (s) {
        s->release = true;
        s->wanted = false;
    }
    pthread_cond_broadcast(&m->cond);
    pthread_mutex_unlock(&m->mu);
}

void fx_mps_keep_only(struct fx_mps *m, bool (*keep)(const char *key, void *ctx), void *ctx)
{
    pthread_mutex_lock(&m->mu);
    for (struct mslice *s = m->list; s; s = s->next)
        if (!s->release && !keep(s->key, ctx)) {
            s->release = true;
            s->wanted = false;
        }
    pthread_cond_broadcast(&m->cond);
    pthread_mutex_unlock(&m->mu);
}

bool fx_mps_settle(struct fx_mps *m, int timeout_ms)
{
    int64_t until = fx_mono_ms() + timeout_ms;
    pthread_mutex_lock(&m->mu);
    for (;;) {
        bool pending = false;
        for (struct mslice *s = m->list; s; s = s->next)
            pending |= s->release;
        if (!pending || fx_mono_ms() >= until) {
            pthread_mutex_unlock(&m->mu);
            return !pending;
        }
        pthread_mutex_unlock(&m->mu);
        sleep_ms(10);
        pthread_mutex_lock(&m->mu);
    }
}

unsigned fx_mps_starts(struct fx_mps *m)
{
    pthread_mutex_lock(&m->mu);
    unsigned n = m->starts;
    pthread_mutex_unlock(&m->mu);
    return n;
}

/* ---- supervision ---- */

/* One pass: quits released slices, restarts dead wanted ones. */
static void supervise(struct fx_mps *m)
{
    pthread_mutex_lock(&m->mu);
    for (struct mslice *s = m->list, *next; s; s = next) {
        next = s->next;
        if (s->busy)
            continue;
        if (s->release) {
            s->busy = true;
            pthread_mutex_unlock(&m->mu);
            daemon_quit(m, s);
            remove_slice_dir(m, s->key);
            FX_INFO(COMP, "MPS daemon quit and its directories removed", "key=%s", s->key);
            pthread_mutex_lock(&m->mu);
            next = s->next;
            unlink_slice(m, s);
            pthread_cond_broadcast(&m->cond);
            continue;
        }
        if (!s->wanted || daemon_alive(s))
            continue;
        s->busy = true;
        pthread_mutex_unlock(&m->mu);
        struct flexpu_error err = {0};
        int rc = daemon_start(m, s, &err);
        if (rc == 0)
            FX_INFO(COMP, "MPS daemon restarted", "key=%s pid=%d", s->key, (int)s->pid);
        else if (s->failures == 0)
            FX_ERROR(COMP, "cannot restart the MPS daemon; will retry", "key=%s error=\"%s\"",
                     s->key, err.msg);
        pthread_mutex_lock(&m->mu);
        s->failures = rc == 0 ? 0 : s->failures + 1;
        s->busy = false;
        next = s->next;
        pthread_cond_broadcast(&m->cond);
    }
    pthread_mutex_unlock(&m->mu);
}

static void *supervisor(void *arg)
{
    struct fx_mps *m = arg;
    pthread_mutex_lock(&m->mu);
    while (!m->stop) {
        pthread_mutex_unlock(&m->mu);
        supervise(m);
        pthread_mutex_lock(&m->mu);
        if (m->stop)
            break;
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += m->tick_ms / 1000;
        ts.tv_nsec += (long)(m->tick_ms % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&m->cond, &m->mu, &ts);
    }
    pthread_mutex_unlock(&m->mu);
    return NULL;
}

/* Slices a previous agent left: adopted with their record; a directory
 * without a readable one is released (nothing can be said of its limits). */
static void adopt(struct fx_mps *m)
{
    char dir[400];
    snprintf(dir, sizeof(dir), "%s/mps", m->root);
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!key_ok(e->d_name))
            continue;
        struct mslice *s = add(m, e->d_name);
        if (!s)
            break;
        if (record_read(m, s)) {
            s->wanted = true;
            if (!daemon_alive(s))
                s->pid = 0;
            FX_INFO(COMP, "MPS daemon of a previous agent found", "key=%s pid=%d", s->key,
                    (int)s->pid);
        } else {
            s->pid = 0;
            s->release = true;
        }
    }
    closedir(d);
}

struct fx_mps *fx_mps_new(const struct fx_mps_config *cfg, struct flexpu_error *err)
{
    struct fx_mps *m = calloc(1, sizeof(*m));
    if (!m) {
        flexpu_error_set(err, FLEXPU_ENOMEM, "out of memory");
        return NULL;
    }
    snprintf(m->root, sizeof(m->root), "%s", cfg->root);
    snprintf(m->control, sizeof(m->control), "%s",
             cfg->control && *cfg->control ? cfg->control : FX_MPS_CONTROL_DEFAULT);
    m->timeout_ms = cfg->timeout_ms > 0 ? cfg->timeout_ms : FX_MPS_TIMEOUT_MS_DEFAULT;
    m->tick_ms = cfg->tick_ms > 0 ? cfg->tick_ms : 500;
    char dir[400];
    snprintf(dir, sizeof(dir), "%s/mps", m->root);
    if (mkdir_mode(dir, 0755, err) != 0) {
        free(m);
        return NULL;
    }
    pthread_mutex_init(&m->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&m->cond, &ca);
    pthread_condattr_destroy(&ca);
    adopt(m);
    if (pthread_create(&m->tid, NULL, supervisor, m) != 0) {
        flexpu_error_set(err, FLEXPU_ENOMEM, "cannot start the MPS supervising thread");
        for (struct mslice *s = m->list, *n; s; s = n) {
            n = s->next;
            free(s);
        }
        pthread_cond_destroy(&m->cond);
        pthread_mutex_destroy(&m->mu);
        free(m);
        return NULL;
    }
    return m;
}

void fx_mps_free(struct fx_mps *m)
{
    if (!m)
        return;
    pthread_mutex_lock(&m->mu);
    m->stop = true;
    pthread_cond_broadcast(&m->cond);
    pthread_mutex_unlock(&m->mu);
    pthread_join(m->tid, NULL);
    for (struct mslice *s = m->list, *n; s; s = n) {
        n = s->next;
        free(s);
    }
    pthread_cond_destroy(&m->cond);
    pthread_mutex_destroy(&m->mu);
    free(m);
}
