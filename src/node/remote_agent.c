/* SPDX-License-Identifier: Apache-2.0 */
#include "node/remote_agent.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "flexpu/log.h"
#include "node/orphans.h"
#include "node/reclaim_mem.h"
#include "node/remote.h"
#include "node/remote_spawn.h"
#include "node/slices.h"
#include "util/procstat.h"

#define COMP "node"
#define BACKOFF_MIN_MS 1000
#define BACKOFF_MAX_MS 30000
#define STOP_WAIT_MS 3000
#define LEGACY_CHECK_MS 10000
#define LEGACY_CHECKS_PER_TICK 16

extern char **environ;

/* One remote slice this node serves, or a server found running. */
struct rslice {
    char uid[64], ns[256], name[256];
    bool want;                  /* its pod is here, checked, not ended */
    bool seen;                  /* seen in the current full list */
    struct fx_remote_server sv; /* as planned (port: the running server's) */
    char refused[256];          /* why its allocation was refused (said once) */
    pid_t pid;                  /* its server; 0: none */
    unsigned run_uid;           /* its user from --remote-uid-range; 0: none taken */
    bool adopted;               /* started by an earlier agent: not our child */
    /* A start planned for it runs out of the lock (struct start): its
     * server may run before its pid is recorded, so its memory is counted
     * until then even if its pod went meanwhile. */
    bool starting;
    /* Its pod gone: SIGTERM sent to its group at the pass that saw it, and
     * SIGKILL once stop_by_ms passed (killed); the slice stays, counted as
     * holding its memory, until a later pass finds the server reaped. No
     * pass waits for it (stop_step). */
    bool stopping, killed;
    int64_t stop_by_ms;
    int port;
    int64_t started_ms, next_start_ms;
    int backoff_ms;
    char endpoint[320];         /* what the pod's annotation says */
    /* Its pod lacks this node's FX_LABEL_REMOTE_GPU_NODE (bound before the
     * scheduler set it): found by the full list at start, out of the label
     * watch's sight, so it is read back by itself every LEGACY_CHECK_MS
     * until it goes or the scheduler labels it. */
    bool legacy;
    int64_t next_check_ms;
    struct rslice *next;
};

/* What the device plugin asks of a slice (fx_remote_serve_holds,
 * fx_remote_serve_pod_name), copied out of the slices: one per GPU of a
 * slice, so that each GPU counts its own quota (a slice of N GPUs holds
 * its quota on each). */
struct rview {
    char uid[64], ns[256], name[256], gpu[FX_UUID_MAX];
    int64_t mem;
    bool holds; /* its memory is counted on gpu */
};

struct fx_remote_serve {
    struct fx_remote_serve_config cfg;
    char dir[512];              /* <root>/remote */
    /* The slices' list and what the watch writes in them. The watch's
     * callback takes it for every event, so nothing slow happens under it:
     * the supervisor never waits for a server's exit (stop_step), and
     * spawns its servers and scans /proc for their uids without it
     * (struct start). Only the supervisor removes a slice from the list, or
     * changes its server's fields (pid, port, run_uid, stopping...). */
    pthread_mutex_t mu;
    /* The plugin asks under its own lock: the answers come from this copy,
     * which view_mu guards alone and publish() replaces, with mu held,
     * whenever what it says may have changed, so they never wait for mu.
     * view_ok: the first full list came in, and the copy was made (false on
     * no memory: the plugin refuses borrowers). */
    pthread_mutex_t view_mu;
    struct rview *view;
    int nview;
    bool view_ok;
    struct rslice *slices;
    bool synced;                /* a full list of pods came in */
    bool scanning;              /* the full list at start (all pods) runs */
    char selector[320];         /* FX_LABEL_REMOTE_GPU_NODE=<this node> */
    atomic_int stop;            /* fx_remote_serve_stop's; both threads and the watch read it */
    pthread_t watch_tid, sup_tid;
    struct kube_client *watch_client, *client;
    struct fx_orphans orphans; /* ended servers' groups: their workers */
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int fx_remote_port_range_parse(const char *text, int *lo, int *hi, struct flexpu_error *err)
{
    int a = 0, b = 0, n = 0;
    if (!text || sscanf(text, "%d-%d%n", &a, &b, &n) != 2 || text[n] != 0 || a < 1 || b < a ||
        b > 65535)
        return flexpu_error_field(err, FLEXPU_EINVAL, "--remote-ports", text ? text : "",
                                  text ? strlen(text) : 0, "must be LOW-HIGH within 1-65535");
    *lo = a;
    *hi = b;
    return 0;
}

static void slice_path(const struct fx_remote_serve *s, const char *uid, const char *file,
                       char *out, size_t len)
{
    snprintf(out, len, "%.400s/%.63s%s%.40s", s->dir, uid, file ? "/" : "", file ? file : "");
}

static struct rslice *slice_get(struct fx_remote_serve *s, const char *uid, bool make)
{
    for (struct rslice *r = s->slices; r; r = r->next)
        if (strcmp(r->uid, uid) == 0)
            return r;
    if (!make)
        return NULL;
    struct rslice *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    snprintf(r->uid, sizeof(r->uid), "%s", uid);
    r->next = s->slices;
    s->slices = r;
    return r;
}

/* Whether process pid is flexpu-remoted serving slice uid (its command
 * line: the server's program, `--slice UID`). */
static bool ours(const struct fx_remote_serve *s, pid_t pid, const char *uid)
{
    char path[64], buf[4096];
    snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return false;
    buf[n] = 0;
    const char *base = strrchr(s->cfg.server_bin, '/');
    base = base ? base + 1 : s->cfg.server_bin;
    const char *arg0 = strrchr(buf, '/');
    arg0 = arg0 ? arg0 + 1 : buf;
    if (strcmp(arg0, base) != 0)
        return false;
    bool after_slice = false;
    for (ssize_t i = 0; i < n; i += (ssize_t)strlen(buf + i) + 1) {
        if (after_slice && strcmp(buf + i, uid) == 0)
            return true;
        after_slice = strcmp(buf + i, "--slice") == 0;
    }
    return false;
}

/* The slice's files: first its arbitrated slice (the agent's arbiter then
 * forgets it), then its directory, whose leftover an agent that restarts
 * finds and removes again (adopt). */
static void slice_files_remove(const struct fx_remote_serve *s, const char *uid)
{
    static const char *const files[] = {"token", "server.pid", "server.log", "port"};
    char path[600], key[FX_ARB_AGENT_KEY_MAX];
    if (fx_remote_slice_key(uid, key, sizeof(key)) == 0)
        fx_slice_remove(s->cfg.root, key);
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        slice_path(s, uid, files[i], path, sizeof(path));
        unlink(path);
    }
    slice_path(s, uid, NULL, path, sizeof(path));
    rmdir(path);
}

/* Whether slice uid's server runs as a slice of the agent's arbiter: its
 * slice.conf is there (fx_slice_prepare_server). */
static bool arbitrated(const struct fx_remote_serve *s, const char *uid)
{
    char key[FX_ARB_AGENT_KEY_MAX], dir[600], path[700];
    if (fx_remote_slice_key(uid, key, sizeof(key)) != 0 ||
        fx_slice_dir(s->cfg.root, key, dir, sizeof(dir)) != 0)
        return false;
    snprintf(path, sizeof(path), "%s/slice.conf", dir);
    return access(path, F_OK) == 0;
}

/* What a server.pid says ("PID PORT [UID [GPU MEMORY [GPU...]]]", as
 * server_start writes it; the shorter forms are older agents'). */
struct server_pid {
    int pid, port;
    unsigned run_uid; /* absent: a server started before the uid range */
    /* Its GPUs and memory quota (on each): what its slice holds while it
     * runs, even once its pod is gone (absent: an older agent's server).
     * The first GPU, then the quota, then the others: an agent that knew
     * one GPU per server reads the first. */
    char gpu[FLEXPU_MAX_GPUS][FX_UUID_MAX];
    int ngpu;
    long long mem;
};

/* Parses server.pid's text into p: NULL when it makes sense, else the
 * malformed field (its value in value, why in *why). A GPU this node's
 * inventory lacks (inv; NULL: not checked) or named twice, a negative
 * quota, a pid that is not a process's (0, 1, negative), a port outside
 * 1-65535: all malformed, as the holds or the server they would name
 * cannot be known. */
static const char *server_pid_parse(char *text, const struct fx_node_inv *inv,
                                    struct server_pid *p, char *value, size_t cap,
                                    const char **why)
{
    static const char *const fields[] = {"pid", "port", "uid", "gpu", "memory"};
    char *tok[5 + FLEXPU_MAX_GPUS], *save = NULL;
    int n = 0;
    memset(p, 0, sizeof(*p));
    for (char *t = strtok_r(text, " \t\n", &save); t; t = strtok_r(NULL, " \t\n", &save)) {
        if (n == (int)(sizeof(tok) / sizeof(tok[0]))) {
            snprintf(value, cap, "%s", t);
            *why = "more GPUs than a server has";
            return "gpu";
        }
        tok[n++] = t;
    }
    long long v[3] = {0, 0, 0};
    static const long long hi[3] = {INT32_MAX, 65535, UINT32_MAX};
    for (int i = 0; i < 3 && (i < 2 || i < n); i++) {
        if (i >= n || !fx_remote_digits(tok[i], i == 0 ? 2 : i == 1 ? 1 : 0, hi[i], &v[i])) {
            snprintf(value, cap, "%s", i < n ? tok[i] : "");
            *why = i >= n     ? "missing"
                   : i == 0 ? "not a process id (2 or more)"
                   : i == 1 ? "not a port (1-65535)"
                            : "not a user id";
            return fields[i];
        }
    }
    p->pid = (int)v[0];
    p->port = (int)v[1];
    p->run_uid = (unsigned)v[2];
    if (n <= 3)
        return NULL;
    if (n == 4 || !fx_remote_digits(tok[4], 0, INT64_MAX, &p->mem)) {
        snprintf(value, cap, "%s", n > 4 ? tok[4] : "");
        *why = n == 4 ? "missing after its GPU" : "not a quota in bytes (0 or more)";
        return "memory";
    }
    for (int i = 3; i < n; i++) {
        if (i == 4)
            continue;
        const char *g = tok[i];
        snprintf(value, cap, "%s", g);
        if (strlen(g) >= FX_UUID_MAX) {
            *why = "too long for a GPU's UUID";
            return "gpu";
        }
        for (int k = 0; k < p->ngpu; k++)
            if (strcmp(p->gpu[k], g) == 0) {
                *why = "named twice";
                return "gpu";
            }
        bool known = !inv;
        for (int k = 0; inv && k < inv->ngpu && !known; k++)
            known = strcmp(inv->gpus[k].uuid, g) == 0;
        if (!known) {
            *why = "not a GPU of this node";
            return "gpu";
        }
        snprintf(p->gpu[p->ngpu++], FX_UUID_MAX, "%s", g);
    }
    return NULL;
}

/* The real uid process pid runs as; false when it cannot be read. */
static bool proc_uid(pid_t pid, unsigned *uid)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "re");
    bool got = false;
    while (f && !got && fgets(line, sizeof(line), f))
        got = sscanf(line, "Uid: %u", uid) == 1;
    if (f)
        fclose(f);
    return got;
}

/* Stops the servers of slice uid running now, found without their pid (its
 * server.pid unreadable or absent): each is killed (SIGKILL to its group)
 * as the scan meets it, so that no number of look-alikes a compromised
 * server starts hides one behind them. How many; the first max other than
 * `named` in first, and whether `named` was one in *named_seen. Only
 * what is provably one: flexpu-remoted with `--slice UID` (ours), leading
 * its own process group (as fx_remote_spawn starts it: its workers share
 * its command line but not its pid) and running as a user the servers
 * run as (--remote-uid or --remote-uid-range; the agent's own when it
 * does not drop). */
static int servers_stop(const struct fx_remote_serve *s, const char *uid, pid_t named,
                        bool *named_seen, pid_t *first, int max)
{
    DIR *d = opendir("/proc");
    int n = 0, nfirst = 0;
    *named_seen = false;
    if (!d)
        return 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        long long v;
        if (!fx_remote_digits(e->d_name, 2, INT32_MAX, &v) || !ours(s, (pid_t)v, uid))
            continue;
        struct fx_procstat st;
        unsigned run;
        if (fx_procstat_read((pid_t)v, &st, NULL) != 0 || st.pgrp != (int)v ||
            fx_procstat_ended(&st) || !proc_uid((pid_t)v, &run))
            continue;
        bool user = s->cfg.drop ? run == s->cfg.uid || (s->cfg.uid_first &&
                                                         run >= s->cfg.uid_first &&
                                                         run <= s->cfg.uid_last)
                                : run == (unsigned)geteuid();
        if (!user)
            continue;
        kill(-(pid_t)v, SIGKILL);
        n++;
        if ((pid_t)v == named)
            *named_seen = true;
        else if (nfirst < max)
            first[nfirst++] = (pid_t)v;
    }
    closedir(d);
    return n;
}

/* Reads server.pid at path into buf (at most len - 1 bytes, terminated):
 * its length, or -1 with errno. */
static ssize_t server_pid_read(const char *path, char *buf, size_t len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, len - 1);
    int e = errno;
    close(fd);
    if (n < 0) {
        errno = e;
        return -1;
    }
    if ((size_t)n == len - 1) {
        errno = EFBIG;
        return -1;
    }
    buf[n] = 0;
    return n;
}

/* The servers an earlier agent left: adopted when alive and ours, their
 * directory removed otherwise. A live server of ours is stopped when its
 * server.pid is malformed or unreadable (its holds, or the server itself,
 * cannot be known), or absent (an agent that ended between the server's
 * start and the file's write): found then by its command line, group and
 * user (servers_stop). */
static int adopt(struct fx_remote_serve *s, struct flexpu_error *err)
{
    DIR *d = opendir(s->dir);
    if (!d)
        return flexpu_error_set(err, FLEXPU_EIO, "remote slices: cannot read '%s' (the "
                                "servers an earlier agent left, to adopt): %s",
                                s->dir, strerror(errno));
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.' || strlen(e->d_name) >= sizeof(((struct rslice *)0)->uid))
            continue;
        char path[600], text[128 + FLEXPU_MAX_GPUS * FX_UUID_MAX];
        slice_path(s, e->d_name, "server.pid", path, sizeof(path));
        struct server_pid p = {0};
        const char *bad = NULL, *why = ""; /* the malformed field; its value in bad_value */
        char bad_value[FX_UUID_MAX + 16] = "";
        bool absent = false;
        if (server_pid_read(path, text, sizeof(text)) < 0) {
            absent = errno == ENOENT;
            bad = "server.pid";
            snprintf(bad_value, sizeof(bad_value), "%s", strerror(errno));
            why = "cannot be read";
        } else {
            bad = server_pid_parse(text, s->cfg.inv, &p, bad_value, sizeof(bad_value), &why);
        }
        struct rslice *r;
        bool alive = !bad && ours(s, p.pid, e->d_name);
        if (bad) {
            /* Its holds cannot be known (a GPU named twice would count its
             * quota twice, a negative quota none, an unknown GPU one
             * nothing has), or its server: not adopted. A server of ours
             * is stopped; its pod, still there, starts it again. */
            /* Listed: the pid it names first when stopped, then the first
             * 4 others the scan stopped; the line stays bounded, with the
             * count. */
            pid_t found[5];
            bool seen;
            int nfound = servers_stop(s, e->d_name, p.pid, &seen, found + 1, 4);
            int others = nfound - (seen ? 1 : 0);
            /* The pid it names, when that is ours though found otherwise
             * not (its user no longer the servers'): as before the scan. */
            if (!seen && p.pid >= 2 && ours(s, p.pid, e->d_name)) {
                kill(-p.pid, SIGKILL);
                seen = true;
                nfound++;
            }
            found[0] = p.pid;
            const pid_t *list = seen ? found : found + 1;
            int nlisted = (others < 4 ? others : 4) + (seen ? 1 : 0);
            char pids[80] = "";
            for (int i = 0, at = 0; i < nlisted; i++)
                at += snprintf(pids + at, sizeof(pids) - (size_t)at, "%s%d", i ? "," : "",
                               (int)list[i]);
            if (!absent)
                FX_WARN(COMP, "remote server's server.pid is malformed: its server is stopped",
                        "pod_uid=%s file=%s field=%s value=\"%s\" why=\"%s\" stopped=%s "
                        "count=%d", e->d_name, path, bad, bad_value, why,
                        nfound ? pids : "none", nfound);
            else if (nfound)
                FX_WARN(COMP, "remote server without a server.pid stopped",
                        "pod_uid=%s file=%s stopped=%s count=%d", e->d_name, path, pids, nfound);
            slice_files_remove(s, e->d_name);
            continue;
        }
        if (alive && !arbitrated(s, e->d_name)) {
            /* Started by an agent before the servers were its arbiter's
             * slices: it arbitrates its GPU on a shared state no local
             * slice sees. Stopped; the supervisor starts it again as a
             * slice (its clients get an error, as at a server's restart). */
            FX_WARN(COMP, "remote server outside the node's arbiter stopped; it is started "
                    "again as a slice", "pod_uid=%s pid=%d", e->d_name, p.pid);
            kill(-p.pid, SIGKILL);
            alive = false;
        }
        if (alive && (r = slice_get(s, e->d_name, true))) {
            r->pid = p.pid;
            r->port = p.port;
            r->run_uid = p.run_uid; /* still taken: not given to another slice */
            /* Its pod, once listed, plans it again (pod_seen). */
            memcpy(r->sv.gpu_uuid, p.gpu, (size_t)p.ngpu * sizeof(p.gpu[0]));
            r->sv.ngpu = p.ngpu;
            r->sv.slice.memory = p.ngpu ? p.mem : 0;
            r->adopted = true;
            r->started_ms = now_ms();
            FX_INFO(COMP, "remote server adopted", "pod_uid=%s pid=%d port=%d uid=%u", r->uid,
                    p.pid, p.port, p.run_uid);
        } else {
            slice_files_remove(s, e->d_name);
        }
    }
    closedir(d);
    return 0;
}

/* Lock held. Replaces the copy the plugin's questions read (view_mu),
 * taken briefly: a caller never waits for more than the swap. */
static void publish(struct fx_remote_serve *s)
{
    int n = 0;
    for (const struct rslice *r = s->slices; r; r = r->next)
        n += r->sv.ngpu > 0 ? r->sv.ngpu : 1;
    struct rview *v = n ? calloc((size_t)n, sizeof(*v)) : NULL;
    bool ok = s->synced && (v || !n);
    if (n && !v)
        FX_ERROR(COMP, "remote slices: out of memory: borrowers are refused until their "
                 "holds are known again", "slices=%d", n);
    int i = 0;
    for (const struct rslice *r = s->slices; r && v; r = r->next)
        for (int g = 0; g < (r->sv.ngpu > 0 ? r->sv.ngpu : 1); g++, i++) {
            snprintf(v[i].uid, sizeof(v[i].uid), "%s", r->uid);
            snprintf(v[i].ns, sizeof(v[i].ns), "%s", r->ns);
            snprintf(v[i].name, sizeof(v[i].name), "%s", r->name);
            snprintf(v[i].gpu, sizeof(v[i].gpu), "%s", r->sv.ngpu ? r->sv.gpu_uuid[g] : "");
            v[i].mem = r->sv.slice.memory;
            /* A server stopping (its pod gone) may still hold its memory:
             * counted until it is reaped; one being started, until its
             * start is recorded. sv is the last plan that passed the
             * checks. */
            v[i].holds = (r->want || r->pid > 0 || r->starting) && r->sv.ngpu > 0;
        }
    pthread_mutex_lock(&s->view_mu);
    struct rview *old = s->view;
    s->view = v;
    s->nview = v ? n : 0;
    s->view_ok = ok;
    pthread_mutex_unlock(&s->view_mu);
    free(old);
}

/* ---- the pods ---- */

/* Whether pod obj carries this node's label (the label watch's selector). */
static bool labelled_here(const struct fx_remote_serve *s, json_t *obj)
{
    json_t *labels = kube_get(obj, "metadata.labels");
    const char *v = json_string_value(json_object_get(labels, FX_LABEL_REMOTE_GPU_NODE));
    return v && strcmp(v, s->cfg.node) == 0;
}

/* Lock held. A pod from the full list at start, the label watch or a
 * legacy pod's read-back (from_list: not the label watch). Whether it is
 * a slice served here (its state may have changed). */
static bool pod_seen(struct fx_remote_serve *s, json_t *obj, bool from_list)
{
    const char *uid = kube_str(obj, "metadata.uid");
    if (!uid || !*uid || strlen(uid) >= sizeof(((struct rslice *)0)->uid))
        return false;
    const char *text = kube_annotation(obj, FX_ANN_ALLOCATION);
    struct fx_allocation al;
    struct flexpu_error err = {0};
    if (!text || fx_allocation_parse(text, &al, &err) != 0 ||
        fx_remote_role(&al, kube_str(obj, "spec.nodeName"), s->cfg.node) != FX_REMOTE_SERVE)
        return false;
    const char *phase = kube_str(obj, "status.phase");
    bool ended = phase && (strcmp(phase, "Succeeded") == 0 || strcmp(phase, "Failed") == 0);
    struct rslice *r = slice_get(s, uid, true);
    if (!r)
        return false;
    r->seen = true;
    /* The label watch will not show it: keep it in sight by itself. */
    r->legacy = from_list && !labelled_here(s, obj);
    snprintf(r->ns, sizeof(r->ns), "%s", kube_str(obj, "metadata.namespace") ?: "");
    snprintf(r->name, sizeof(r->name), "%s", kube_str(obj, "metadata.name") ?: "");
    const char *ep = kube_annotation(obj, FX_ANN_REMOTE_ENDPOINT);
    snprintf(r->endpoint, sizeof(r->endpoint), "%s", ep ? ep : "");
    struct fx_pod_spec spec;
    int rc = fx_pod_spec_parse(obj, &spec, &err);
    struct fx_remote_server sv;
    if (rc == 0)
        rc = fx_remote_server_plan(&spec, uid, &al, s->cfg.inv, 1, &sv, &err);
    if (rc != 0) {
        if (strncmp(r->refused, err.msg, 250) != 0)
            FX_WARN(COMP, "remote slice refused: no server", "pod=%s/%s error=\"%s\"", r->ns,
                    r->name, err.msg);
        snprintf(r->refused, sizeof(r->refused), "%.250s", err.msg);
        r->want = false;
        return true;
    }
    r->refused[0] = 0;
    r->sv = sv;
    r->want = !ended;
    return true;
}

static int pod_event(enum kube_event ev, json_t *obj, void *ctx)
{
    struct fx_remote_serve *s = ctx;
    bool changed = true; /* a list's end, a deletion, a pod of a slice here */
    pthread_mutex_lock(&s->mu);
    if (ev == KUBE_SYNC_BEGIN) {
        for (struct rslice *r = s->slices; r; r = r->next)
            r->seen = false;
        changed = false; /* seen is not published */
    } else if (ev == KUBE_SYNC_END) {
        /* The full list at start sees every pod; the label watch's lists
         * do not see the legacy ones, which their read-backs follow. */
        for (struct rslice *r = s->slices; r; r = r->next)
            if (!r->seen && (s->scanning || !r->legacy))
                r->want = false;
        s->synced = true;
    } else if (ev == KUBE_DELETED) {
        const char *uid = kube_str(obj, "metadata.uid");
        struct rslice *r = uid ? slice_get(s, uid, false) : NULL;
        if (r)
            r->want = false;
    } else {
        changed = pod_seen(s, obj, s->scanning); /* not every pod of the cluster's list */
    }
    if (changed)
        publish(s);
    pthread_mutex_unlock(&s->mu);
    return 0;
}

static void set_scanning(struct fx_remote_serve *s, bool on)
{
    pthread_mutex_lock(&s->mu);
    s->scanning = on;
    pthread_mutex_unlock(&s->mu);
}

/* One full list of every pod, once, for the remote pods bound before the
 * scheduler labelled them (docs/REMOTE.md, "The GPU node's watch"); then
 * only the pods labelled with this node are listed and watched. */
static void *watch_main(void *p)
{
    struct fx_remote_serve *s = p;
    struct flexpu_error err = {0};
    struct kube_watch_opts all = {.path = "/api/v1/pods", .stop = &s->stop};
    int backoff = 200;
    set_scanning(s, true);
    while (!atomic_load(&s->stop) && kube_list(s->watch_client, &all, pod_event, s, &err) != 0) {
        FX_WARN(COMP, "remote slices: the full list of pods failed; will retry",
                "error=\"%s\"", err.msg);
        for (int t = 0; t < backoff && !atomic_load(&s->stop); t += 50)
            usleep(50000);
        backoff = backoff * 2 > 5000 ? 5000 : backoff * 2;
    }
    set_scanning(s, false);
    struct kube_watch_opts o = {.path = "/api/v1/pods", .label_selector = s->selector,
                                .stop = &s->stop};
    if (kube_list_watch(s->watch_client, &o, pod_event, s, &err) && !atomic_load(&s->stop))
        FX_ERROR(COMP, "remote slices: the pod watch ended", "error=\"%s\"", err.msg);
    return NULL;
}

/* ---- the servers ---- */

static bool port_free(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return false;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    bool ok = bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
    close(fd);
    return ok;
}

/* A server to start, copied out of its slice under the lock: its files,
 * the /proc scan for its uid and the spawn are made without the lock
 * (struct fx_remote_serve's mu), then the result is written back. */
struct start {
    struct rslice *r; /* stays in the list: only the supervisor removes one */
    char uid[64], ns[256], name[256];
    struct fx_remote_server sv;
    unsigned run_uid; /* its uid of the range so far; then the one it got (0: none) */
    pid_t pid;        /* its server; 0: not started */
    int port;
};

/* What the slices' servers hold, copied under the lock for the starts made
 * without it: the ports of the servers that run (or are being stopped),
 * the range's uids of all slices; each start adds what it takes. */
struct taken {
    int *ports, nports;
    unsigned *uids;
    int nuids;
};

/* Lock held. What the slices hold, with room for `extra` more of each;
 * false on no memory. */
static bool taken_of(const struct fx_remote_serve *s, struct taken *t, int extra)
{
    int n = extra;
    for (const struct rslice *r = s->slices; r; r = r->next)
        n++;
    *t = (struct taken){.ports = malloc((size_t)n * sizeof(int)),
                        .uids = malloc((size_t)n * sizeof(unsigned))};
    if (!t->ports || !t->uids) {
        free(t->ports);
        free(t->uids);
        return false;
    }
    for (const struct rslice *r = s->slices; r; r = r->next) {
        if (r->pid > 0)
            t->ports[t->nports++] = r->port;
        if (r->run_uid)
            t->uids[t->nuids++] = r->run_uid;
    }
    return true;
}

/* A port of the range no slice holds and nothing listens on (taken). */
static int port_pick(const struct fx_remote_serve *s, struct taken *t)
{
    for (int p = s->cfg.port_min; p <= s->cfg.port_max; p++) {
        bool used = false;
        for (int i = 0; i < t->nports && !used; i++)
            used = t->ports[i] == p;
        if (!used && port_free(p)) {
            t->ports[t->nports++] = p;
            return p;
        }
    }
    return 0;
}

/* The environment the servers inherit from the agent: where libraries are
 * found (the driver's, cuBLAS's) and the fake driver's settings in tests. */
static bool passed_on(const char *kv)
{
    static const char *const names[] = {"PATH=", "LD_LIBRARY_PATH=", "FLEXPU_REMOTE_CUBLAS=",
                                        "FLEXPU_CONTEXT_OVERHEAD=", "FLEXPU_LOG_LEVEL=",
                                        "ASAN_OPTIONS=", "FAKECUDA_"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (strncmp(kv, names[i], strlen(names[i])) == 0)
            return true;
    return false;
}

/* The real, effective and saved uids of the processes this agent sees
 * (its PID namespace: the servers and their workers), at most max; how
 * many were written. */
static int uids_running(unsigned *out, int max)
{
    DIR *d = opendir("/proc");
    int n = 0;
    if (!d)
        return 0;
    struct dirent *e;
    while ((e = readdir(d)) && n + 3 <= max) {
        if (e->d_name[0] < '1' || e->d_name[0] > '9')
            continue;
        char path[300], line[256];
        snprintf(path, sizeof(path), "/proc/%.200s/status", e->d_name);
        FILE *f = fopen(path, "re");
        if (!f)
            continue; /* it ended */
        unsigned ids[3];
        while (fgets(line, sizeof(line), f))
            if (sscanf(line, "Uid: %u %u %u", &ids[0], &ids[1], &ids[2]) == 3) {
                for (int i = 0; i < 3; i++)
                    out[n++] = ids[i];
                break;
            }
        fclose(f);
    }
    closedir(d);
    return n;
}

/* The uids this PID namespace's processes run as (uids_running), scanned
 * at most once for a pass's starts; n is -1 on no memory. */
struct running {
    bool scanned;
    unsigned *ids;
    int n;
};

/* A uid of --remote-uid-range for start j: the one its slice has, or the
 * lowest no slice holds (taken) and no process runs as (one could signal
 * the other; running: scanned once per pass); 0 when none is free. */
static unsigned uid_take(const struct fx_remote_serve *s, struct start *j, struct taken *t,
                         struct running *running)
{
    unsigned first = s->cfg.uid_first, last = s->cfg.uid_last;
    if (j->run_uid >= first && j->run_uid <= last)
        return j->run_uid;
    enum { MAX_IDS = 3 * 8192 };
    if (!running->scanned) {
        running->scanned = true;
        running->ids = malloc(MAX_IDS * sizeof(*running->ids));
        running->n = running->ids ? uids_running(running->ids, MAX_IDS) : -1;
    }
    if (running->n < 0)
        return 0;
    unsigned got = 0;
    for (unsigned u = first; u <= last && !got; u++) {
        bool used = false;
        for (int i = 0; i < t->nuids && !used; i++)
            used = t->uids[i] == u;
        for (int i = 0; i < running->n && !used; i++)
            used = running->ids[i] == u;
        if (!used)
            got = j->run_uid = t->uids[t->nuids++] = u;
    }
    return got;
}

/* Without the lock: starts start j's server (its pid and port set in j);
 * false with the reason logged. */
static bool server_start(struct fx_remote_serve *s, struct start *j, struct taken *t,
                         struct running *running)
{
    char dir[600], token[600], pidf[600], logf[600], portf[600], arb[600], ledger[600],
        marks[600], key[FX_ARB_AGENT_KEY_MAX];
    slice_path(s, j->uid, NULL, dir, sizeof(dir));
    slice_path(s, j->uid, "token", token, sizeof(token));
    slice_path(s, j->uid, "server.pid", pidf, sizeof(pidf));
    slice_path(s, j->uid, "server.log", logf, sizeof(logf));
    slice_path(s, j->uid, "port", portf, sizeof(portf));
    struct flexpu_error err = {0};
    char hex[FX_REMOTE_TOKEN_HEX + 1];
    if ((mkdir(dir, 0700) != 0 && errno != EEXIST) ||
        fx_remote_token(s->cfg.key, j->uid, s->cfg.node, j->sv.gpu_uuid[0], hex, &err) != 0 ||
        fx_remote_token_write(token, hex, 0600, &err) != 0) {
        FX_ERROR(COMP, "remote server: cannot prepare its directory", "pod=%s/%s dir=%s "
                 "error=\"%s\"", j->ns, j->name, dir, err.msg[0] ? err.msg : strerror(errno));
        return false;
    }
    int port = port_pick(s, t);
    if (!port) {
        FX_ERROR(COMP, "remote server: no port free in the range", "pod=%s/%s ports=%d-%d",
                 j->ns, j->name, s->cfg.port_min, s->cfg.port_max);
        return false;
    }
    j->sv.port = port;
    if (s->cfg.max_clients)
        j->sv.max_clients = s->cfg.max_clients;
    if (s->cfg.max_module_mib)
        j->sv.max_module_mib = s->cfg.max_module_mib;
    /* Its user: its own from the range, else the servers' shared one (and
     * then no uid of a range is its: one an earlier agent gave it is not
     * recorded for a server that no longer runs as it). */
    uid_t run = (uid_t)s->cfg.uid;
    if (!s->cfg.uid_first)
        j->run_uid = 0;
    if (s->cfg.uid_first && !(run = (uid_t)uid_take(s, j, t, running))) {
        FX_ERROR(COMP, "remote server: no uid free in --remote-uid-range", "pod=%s/%s "
                 "uids=%u-%u", j->ns, j->name, s->cfg.uid_first, s->cfg.uid_last);
        return false;
    }
    /* A slice of the agent's arbiter, as a local slice (remote_agent.h). */
    snprintf(arb, sizeof(arb), "%.500s/arb", s->cfg.root);
    struct fx_slice_file f = j->sv.slice;
    f.arbiter_dir = arb;
    f.ledger_dir = ledger;
    /* An owner, as a remote slice always is (a borrowed slice is never
     * remote, kube/contract.c): its allocations wait for the borrowers of
     * its GPU to be killed (reclaim_mem.h). */
    f.borrowed_dir = marks;
    f.cap_clock_mhz = s->cfg.cap_clock_mhz;
    if (fx_reclaim_dir(s->cfg.root, marks, sizeof(marks)) != 0) {
        FX_ERROR(COMP, "remote server: cannot make the borrowed GPUs' marks directory",
                 "pod=%s/%s root=%s error=\"%s\"", j->ns, j->name, s->cfg.root, strerror(errno));
        return false;
    }
    if (fx_remote_slice_key(j->uid, key, sizeof(key)) != 0 ||
        fx_slice_ledger_dir(s->cfg.root, key, ledger, sizeof(ledger)) != 0) {
        FX_ERROR(COMP, "remote server: no slice key", "pod=%s/%s pod_uid=%s", j->ns, j->name,
                 j->uid);
        return false;
    }
    if (fx_slice_prepare_server(s->cfg.root, key, &f, s->cfg.limits, s->cfg.drop, run,
                                (gid_t)s->cfg.gid, &err) != 0) {
        FX_ERROR(COMP, "remote server: cannot prepare its slice", "pod=%s/%s key=%s "
                 "error=\"%s\"", j->ns, j->name, key, err.msg);
        return false;
    }
    char buf[4096], *argv[14], *envp[64];
    if (fx_remote_server_cmd(&j->sv, s->cfg.server_bin, s->cfg.runtime_lib, arb, ledger, marks,
                             buf, sizeof(buf), argv, 14, envp, 12, &err) != 0) {
        FX_ERROR(COMP, "remote server: bad command", "pod=%s/%s error=\"%s\"", j->ns, j->name,
                 err.msg);
        return false;
    }
    size_t e = 0;
    while (envp[e])
        e++;
    for (char **v = environ; *v && e < sizeof(envp) / sizeof(envp[0]) - 1; v++)
        if (passed_on(*v))
            envp[e++] = *v;
    envp[e] = NULL;
    /* Its own session: it is stopped with its workers as one group. Its
     * own user, no key, only its token (remote_spawn.h). */
    struct fx_remote_spawn sp = {.bin = s->cfg.server_bin, .argv = argv, .envp = envp,
                                 .token_path = token, .port_path = portf, .log_path = logf,
                                 .drop = s->cfg.drop, .uid = run, .gid = (gid_t)s->cfg.gid};
    pid_t pid;
    if (fx_remote_spawn(&sp, &pid, &err) != 0) {
        FX_ERROR(COMP, "remote server: cannot start", "pod=%s/%s bin=%s error=\"%s\"", j->ns,
                 j->name, s->cfg.server_bin, err.msg);
        return false;
    }
    char pidtext[100 + FLEXPU_MAX_GPUS * FX_UUID_MAX], gpus[FLEXPU_MAX_GPUS * FX_UUID_MAX];
    size_t po = (size_t)snprintf(pidtext, sizeof(pidtext), "%d %d %u %s %lld", (int)pid, port,
                                 j->run_uid, j->sv.gpu_uuid[0], (long long)j->sv.slice.memory);
    for (int g = 1; g < j->sv.ngpu; g++)
        po += (size_t)snprintf(pidtext + po, sizeof(pidtext) - po, " %s", j->sv.gpu_uuid[g]);
    snprintf(pidtext + po, sizeof(pidtext) - po, "\n");
    fx_remote_server_gpus(&j->sv, gpus, sizeof(gpus));
    if (fx_file_replace(pidf, pidtext, 0600, &err) != 0)
        FX_WARN(COMP, "remote server: pid file not written (a restarted agent will not adopt "
                "it)", "pod=%s/%s error=\"%s\"", j->ns, j->name, err.msg);
    j->pid = pid;
    j->port = port;
    FX_INFO(COMP, "remote server started", "pod=%s/%s pod_uid=%s gpu=%s port=%d pid=%d "
            "share=%d memory=%lld uid=%d", j->ns, j->name, j->uid, gpus, port,
            (int)pid, j->sv.slice.compute_share, (long long)j->sv.slice.memory,
            s->cfg.drop ? (int)run : (int)getuid());
    return true;
}

/* Lock held. Whether slice r's server still runs (reaped when it ended). */
static bool server_alive(struct fx_remote_serve *s, struct rslice *r)
{
    if (r->pid <= 0)
        return false;
    if (r->adopted) {
        bool gone = kill(r->pid, 0) != 0 && errno == ESRCH;
        if (!gone && ours(s, r->pid, r->uid))
            return true;
        /* Its workers serve a server that is gone, as a child's would
         * (orphans.h), and are not this agent's to reap: ended here. The
         * group is still its while its id names no process or a zombie
         * (the id is not reused before then); another process of that id
         * is not it, and its group is left alone. */
        if (!gone) {
            struct fx_procstat st;
            gone = fx_procstat_read(r->pid, &st, NULL) == 0 && fx_procstat_ended(&st);
        }
        if (gone)
            kill(-r->pid, SIGKILL);
        return false;
    }
    int st;
    pid_t w = waitpid(r->pid, &st, WNOHANG);
    if (w == 0)
        return true;
    if (w == r->pid) {
        if (!r->stopping) /* stopped: said by whoever stopped it */
            FX_WARN(COMP, "remote server ended", "pod=%s/%s pid=%d status=%d", r->ns, r->name,
                    (int)r->pid, WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
        /* Its workers serve a server that is gone: end them (orphans.h). */
        fx_orphans_add(&s->orphans, r->pid);
    }
    return false;
}

/* Lock held. Moves the stop of slice r's server and its workers (their
 * process group) on, without waiting: SIGTERM at the first call, SIGKILL
 * at the first after its stop wait; server_alive sees it reaped. */
static void stop_step(struct fx_remote_serve *s, struct rslice *r, int64_t now)
{
    if (r->pid <= 0)
        return;
    if (!r->stopping) {
        FX_INFO(COMP, "remote server stopping", "pod=%s/%s pod_uid=%s pid=%d", r->ns, r->name,
                r->uid, (int)r->pid);
        kill(-r->pid, SIGTERM);
        r->stopping = true;
        r->stop_by_ms = now + (s->cfg.stop_wait_ms > 0 ? s->cfg.stop_wait_ms : STOP_WAIT_MS);
    } else if (!r->killed && now >= r->stop_by_ms) {
        kill(-r->pid, SIGKILL);
        r->killed = true;
    }
}

/* Stops slice r's server and its workers and waits for its end (its stop
 * wait, then SIGKILL): for fx_remote_serve_stop, the threads gone. */
/* How long shutdown waits for a server to go after SIGKILL: one stuck in
 * the kernel (the GPU driver's teardown) dies only when that returns, and
 * the agent's exit must not wait on it (the kubelet would kill the agent
 * at its own grace period anyway). */
#define KILL_WAIT_MS 2000

/* At shutdown: stops r's server, waiting for it. False when it did not go
 * (stuck after SIGKILL): its files stay, so that the next agent adopts it
 * and counts its memory until it is gone. */
static bool server_stop(struct fx_remote_serve *s, struct rslice *r)
{
    if (r->pid <= 0)
        return true;
    stop_step(s, r, now_ms());
    while (server_alive(s, r) && now_ms() < r->stop_by_ms)
        usleep(20000);
    if (server_alive(s, r)) {
        kill(-r->pid, SIGKILL);
        int64_t until = now_ms() + KILL_WAIT_MS;
        bool gone = false, reaped = false;
        while (!gone && now_ms() < until) {
            if (r->adopted) {
                gone = !server_alive(s, r);
            } else {
                pid_t w = waitpid(r->pid, NULL, WNOHANG);
                reaped = w == r->pid;
                gone = reaped || (w < 0 && errno == ECHILD); /* reaped already */
            }
            if (!gone)
                usleep(20000);
        }
        if (!gone) {
            FX_WARN(COMP, "remote server still there after SIGKILL; left for the next agent "
                    "to adopt", "pod=%s/%s pod_uid=%s pid=%d waited_ms=%d", r->ns, r->name,
                    r->uid, (int)r->pid, KILL_WAIT_MS);
            return false;
        }
        if (reaped)
            fx_orphans_add(&s->orphans, r->pid);
    }
    FX_INFO(COMP, "remote server stopped", "pod=%s/%s pod_uid=%s pid=%d", r->ns, r->name,
            r->uid, (int)r->pid);
    r->pid = 0;
    r->stopping = r->killed = false;
    return true;
}

/* An endpoint to record on a pod, or a legacy pod to read back, taken out
 * of the lock. */
struct patch {
    char ns[256], name[256], uid[64], endpoint[320];
};

static void patch_of(struct patch *p, const struct rslice *r)
{
    snprintf(p->ns, sizeof(p->ns), "%s", r->ns);
    snprintf(p->name, sizeof(p->name), "%s", r->name);
    snprintf(p->uid, sizeof(p->uid), "%s", r->uid);
    p->endpoint[0] = 0;
}

/* Reads back a legacy pod (one the label watch does not show): gone (404,
 * or another pod of its name) stops its server as a deletion would;
 * otherwise it is seen as the full list would see it. An error leaves it
 * as it was until the next read-back. */
static void legacy_check(struct fx_remote_serve *s, const struct patch *p)
{
    char path[700], ens[300], ename[300];
    kube_escape(p->ns, ens, sizeof(ens));
    kube_escape(p->name, ename, sizeof(ename));
    snprintf(path, sizeof(path), "/api/v1/namespaces/%s/pods/%s", ens, ename);
    long status = 0;
    json_t *pod = NULL;
    struct flexpu_error err = {0};
    int rc = kube_request(s->client, "GET", path, NULL, NULL, &status, &pod, &err);
    if (rc != 0 && rc != FLEXPU_ENOENT) {
        FX_WARN(COMP, "remote slice: cannot read back its unlabelled pod; will retry",
                "pod=%s/%s status=%ld error=\"%s\"", p->ns, p->name, status, err.msg);
        return;
    }
    const char *uid = pod ? kube_str(pod, "metadata.uid") : NULL;
    pthread_mutex_lock(&s->mu);
    struct rslice *r = slice_get(s, p->uid, false);
    if (r && r->legacy) {
        if (!uid || strcmp(uid, p->uid) != 0)
            r->want = false;
        else
            pod_seen(s, pod, true);
        publish(s);
    }
    pthread_mutex_unlock(&s->mu);
    json_decref(pod);
}

static void record_endpoint(struct fx_remote_serve *s, const struct patch *p)
{
    char path[700], ens[300], ename[300];
    kube_escape(p->ns, ens, sizeof(ens));
    kube_escape(p->name, ename, sizeof(ename));
    snprintf(path, sizeof(path), "/api/v1/namespaces/%s/pods/%s", ens, ename);
    /* The UID as a precondition: a pod of the same name made again is
     * another pod, with another slice. */
    json_t *body = json_pack("{s:{s:s, s:{s:s}}}", "metadata", "uid", p->uid, "annotations",
                             FX_ANN_REMOTE_ENDPOINT, p->endpoint);
    long status = 0;
    struct flexpu_error err = {0};
    int rc = kube_request(s->client, "PATCH", path, body, KUBE_MERGE_PATCH, &status, NULL, &err);
    json_decref(body);
    if (rc != 0 || status / 100 != 2)
        FX_WARN(COMP, "remote endpoint not recorded; will retry", "pod=%s/%s status=%ld "
                "error=\"%s\"", p->ns, p->name, status, err.msg);
    else
        FX_INFO(COMP, "remote endpoint recorded", "pod=%s/%s endpoint=%s", p->ns, p->name,
                p->endpoint);
}

#define MAX_STARTS 16
#define MAX_PATCHES 16

/* What a supervision pass does out of the lock; a slice that finds no
 * room waits for the next pass. */
struct pass {
    struct start jobs[MAX_STARTS];
    struct patch checks[LEGACY_CHECKS_PER_TICK], patches[MAX_PATCHES];
    int nj, nc, np;
};

/* A start failed or a server ended early: the next start waits twice as
 * long as the last wait (BACKOFF_MIN_MS first, BACKOFF_MAX_MS at most). */
static void backoff_next(struct rslice *r, int64_t now)
{
    r->backoff_ms = r->backoff_ms ? r->backoff_ms * 2 : BACKOFF_MIN_MS;
    if (r->backoff_ms > BACKOFF_MAX_MS)
        r->backoff_ms = BACKOFF_MAX_MS;
    r->next_start_ms = now + r->backoff_ms;
}

/* Lock held. One slice's part of a pass: its server seen ended, its stop
 * moved on, its start, its legacy read-back and its endpoint's record
 * planned in p; false when the slice is to go (its pod gone, no server
 * left), for the caller to unlink. */
static bool supervise_slice(struct fx_remote_serve *s, struct rslice *r, int64_t now,
                            struct pass *p)
{
    if (!server_alive(s, r) && r->pid > 0) {
        if (r->stopping) {
            FX_INFO(COMP, "remote server stopped", "pod=%s/%s pod_uid=%s pid=%d", r->ns, r->name,
                    r->uid, (int)r->pid);
            /* Stopped, not failed: a pod that came back meanwhile (the
             * same UID) gets its server again at once. */
            r->stopping = r->killed = false;
            r->backoff_ms = 0;
            r->next_start_ms = now;
        } else {
            /* Ran long enough: a fresh failure, not a loop. */
            if (now - r->started_ms > BACKOFF_MAX_MS)
                r->backoff_ms = 0;
            backoff_next(r, now);
        }
        r->pid = 0;
    }
    bool gone = !r->want && s->synced; /* the pod is gone or ended, or refused */
    if (gone && r->pid == 0)
        return false;
    /* A server being stopped is waited for even if its pod came back:
     * never a second server beside it. */
    if (r->stopping || gone) {
        stop_step(s, r, now);
        return true;
    }
    if (r->want && r->pid == 0 && now >= r->next_start_ms && p->nj < MAX_STARTS) {
        struct start *j = &p->jobs[p->nj++];
        *j = (struct start){.r = r, .sv = r->sv, .run_uid = r->run_uid};
        r->starting = true;
        snprintf(j->uid, sizeof(j->uid), "%s", r->uid);
        snprintf(j->ns, sizeof(j->ns), "%s", r->ns);
        snprintf(j->name, sizeof(j->name), "%s", r->name);
    }
    if (r->want && r->legacy && s->synced && now >= r->next_check_ms &&
        p->nc < LEGACY_CHECKS_PER_TICK) {
        patch_of(&p->checks[p->nc++], r);
        r->next_check_ms = now + (s->cfg.legacy_check_ms > 0 ? s->cfg.legacy_check_ms
                                                              : LEGACY_CHECK_MS);
    }
    if (r->want && r->pid > 0 && p->np < MAX_PATCHES) {
        char ep[320], portf[600];
        snprintf(ep, sizeof(ep), "%.300s:%d", s->cfg.address, r->port);
        slice_path(s, r->uid, "port", portf, sizeof(portf));
        struct stat st;
        /* Recorded once it listens (adopted servers listen already). */
        if (strcmp(ep, r->endpoint) != 0 &&
            (r->adopted || (stat(portf, &st) == 0 && st.st_size > 0))) {
            struct patch *pa = &p->patches[p->np++];
            patch_of(pa, r);
            snprintf(pa->endpoint, sizeof(pa->endpoint), "%s", ep);
            /* Taken as written; the watch says otherwise if it failed. */
            snprintf(r->endpoint, sizeof(r->endpoint), "%s", ep);
        }
    }
    return true;
}

/* Lock held. The starts' results written into their slices. */
static void starts_record(struct start *jobs, int n)
{
    int64_t now = now_ms();
    for (int i = 0; i < n; i++) {
        struct rslice *r = jobs[i].r;
        r->starting = false;
        r->run_uid = jobs[i].run_uid;
        if (jobs[i].pid > 0) {
            /* Its pod may have gone meanwhile: the next pass stops it. */
            r->pid = jobs[i].pid;
            r->port = jobs[i].port;
            r->adopted = false;
            r->started_ms = now;
            continue;
        }
        backoff_next(r, now);
    }
}

/* One pass: under the lock, what to stop, start, read back and record;
 * without it, the slow part (removing the files of the slices gone, the
 * starts, the API calls); under it again, the starts' results. No pass
 * waits for a server's exit (stop_step). */
static void supervise(struct fx_remote_serve *s)
{
    struct pass p; /* about 40 KB on the supervisor's stack */
    struct rslice *gone = NULL;
    struct taken taken = {0};
    p.nj = p.nc = p.np = 0;
    pthread_mutex_lock(&s->mu);
    fx_orphans_reap(&s->orphans);
    int64_t now = now_ms();
    for (struct rslice **pp = &s->slices, *r; (r = *pp);) {
        if (!supervise_slice(s, r, now, &p)) {
            *pp = r->next;
            r->next = gone;
            gone = r;
            continue;
        }
        pp = &r->next;
    }
    if (p.nj && !taken_of(s, &taken, p.nj)) {
        FX_ERROR(COMP, "remote slices: out of memory: servers not started", "starts=%d", p.nj);
        for (int i = 0; i < p.nj; i++)
            p.jobs[i].r->starting = false; /* tried again at the next pass */
        p.nj = 0;
    }
    /* Servers ended, slices gone: their memory is free now, said before
     * their files go, so that whoever sees them gone sees it gone too. */
    publish(s);
    pthread_mutex_unlock(&s->mu);
    for (struct rslice *r = gone, *next; r; r = next) {
        next = r->next;
        slice_files_remove(s, r->uid);
        free(r);
    }
    struct running running = {0};
    for (int i = 0; i < p.nj; i++)
        server_start(s, &p.jobs[i], &taken, &running);
    free(running.ids);
    free(taken.ports);
    free(taken.uids);
    if (p.nj) {
        pthread_mutex_lock(&s->mu);
        starts_record(p.jobs, p.nj);
        publish(s); /* servers started */
        pthread_mutex_unlock(&s->mu);
    }
    for (int i = 0; i < p.np; i++)
        record_endpoint(s, &p.patches[i]);
    for (int i = 0; i < p.nc; i++)
        legacy_check(s, &p.checks[i]);
}

static void *sup_main(void *p)
{
    struct fx_remote_serve *s = p;
    int tick = s->cfg.tick_ms > 0 ? s->cfg.tick_ms : 200;
    while (!atomic_load(&s->stop)) {
        supervise(s);
        usleep((useconds_t)tick * 1000);
    }
    return NULL;
}

int fx_remote_serve_holds(struct fx_remote_serve *s, const char *uuid, struct fx_gpu_hold *out,
                          int max)
{
    int n = 0;
    pthread_mutex_lock(&s->view_mu); /* not mu: publish() says why */
    if (!s->view_ok) {
        pthread_mutex_unlock(&s->view_mu);
        return -1;
    }
    for (int i = 0; i < s->nview; i++)
        if (s->view[i].holds && strcmp(s->view[i].gpu, uuid) == 0) {
            if (n < max)
                out[n] = (struct fx_gpu_hold){.mem = s->view[i].mem, .borrowed = false};
            n++;
        }
    pthread_mutex_unlock(&s->view_mu);
    return n;
}

int fx_remote_serve_pod_name(struct fx_remote_serve *s, const char *uid, char *ns, size_t ns_len,
                             char *name, size_t name_len)
{
    bool known = false;
    pthread_mutex_lock(&s->view_mu); /* not mu: publish() says why */
    for (int i = 0; i < s->nview && !known; i++)
        if (strcmp(s->view[i].uid, uid) == 0 && s->view[i].name[0]) {
            known = true;
            snprintf(ns, ns_len, "%s", s->view[i].ns);
            snprintf(name, name_len, "%s", s->view[i].name);
        }
    pthread_mutex_unlock(&s->view_mu);
    return known ? 0 : -1;
}

struct fx_remote_serve *fx_remote_serve_start(const struct fx_remote_serve_config *cfg,
                                              struct flexpu_error *err)
{
    if (!cfg->key || cfg->key->len < FX_REMOTE_KEY_MIN) {
        flexpu_error_set(err, FLEXPU_EINVAL, "remote slices: no cluster key (--remote-key)");
        return NULL;
    }
    if (cfg->port_min < 1 || cfg->port_max < cfg->port_min || cfg->port_max > 65535) {
        flexpu_error_set(err, FLEXPU_EINVAL, "remote slices: bad port range %d-%d",
                         cfg->port_min, cfg->port_max);
        return NULL;
    }
    char probe[320];
    snprintf(probe, sizeof(probe), "%.300s:1", cfg->address ? cfg->address : "");
    if (fx_remote_endpoint_check(probe, "--remote-address", err) != 0)
        return NULL;
    struct fx_remote_serve *s = calloc(1, sizeof(*s));
    if (!s) {
        flexpu_error_set(err, FLEXPU_ENOMEM, "out of memory");
        return NULL;
    }
    s->cfg = *cfg;
    snprintf(s->selector, sizeof(s->selector), "%s=%.253s", FX_LABEL_REMOTE_GPU_NODE, cfg->node);
    snprintf(s->dir, sizeof(s->dir), "%.400s/remote", cfg->root);
    if (mkdir(s->dir, 0700) != 0 && errno != EEXIST) {
        flexpu_error_set(err, FLEXPU_EIO, "cannot create '%s': %s", s->dir, strerror(errno));
        free(s);
        return NULL;
    }
    pthread_mutex_init(&s->mu, NULL);
    pthread_mutex_init(&s->view_mu, NULL);
    s->watch_client = kube_client_new(cfg->kube, "flexpu-node", err);
    s->client = s->watch_client ? kube_client_new(cfg->kube, "flexpu-node", err) : NULL;
    /* Without its predecessor's servers known, a second server would be
     * started beside each: no start at all. */
    if (!s->client || adopt(s, err) != 0) {
        kube_client_free(s->client);
        kube_client_free(s->watch_client);
        pthread_mutex_destroy(&s->view_mu);
        pthread_mutex_destroy(&s->mu);
        free(s);
        return NULL;
    }
    pthread_create(&s->watch_tid, NULL, watch_main, s);
    pthread_create(&s->sup_tid, NULL, sup_main, s);
    FX_INFO(COMP, "serving remote slices", "node=%s address=%s ports=%d-%d server=%s",
            cfg->node, cfg->address, cfg->port_min, cfg->port_max, cfg->server_bin);
    return s;
}

void fx_remote_serve_stop(struct fx_remote_serve *s, bool stop_servers)
{
    if (!s)
        return;
    atomic_store(&s->stop, 1);
    pthread_join(s->watch_tid, NULL);
    pthread_join(s->sup_tid, NULL);
    /* Every stop begun (SIGTERM) before any is waited for: servers slow to
     * exit take one stop wait together, not one each. */
    int64_t now = now_ms();
    for (struct rslice *r = s->slices; r; r = r->next)
        if (stop_servers || r->stopping)
            stop_step(s, r, now);
    for (struct rslice *r = s->slices, *next; r; r = next) {
        next = r->next;
        /* A stop under way is finished: its pod is gone. */
        if ((stop_servers || r->stopping) && server_stop(s, r))
            slice_files_remove(s, r->uid);
        free(r);
    }
    kube_client_free(s->watch_client);
    kube_client_free(s->client);
    free(s->view);
    pthread_mutex_destroy(&s->view_mu);
    pthread_mutex_destroy(&s->mu);
    free(s);
}
