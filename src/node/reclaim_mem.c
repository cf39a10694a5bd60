/* SPDX-License-Identifier: Apache-2.0 */
/* Borrowed memory taken back for an owner (reclaim_mem.h). */
#include "node/reclaim_mem.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "flexpu/log.h"
#include "node/remote.h"
#include "runtime/arbagent.h"
#include "runtime/ledger.h"
#include "runtime/oom_wait.h"
#include "util/alloc.h"
#include "util/clock.h"
#include "util/promserve.h"

#define COMP "flexpu-node"
#define MAX_VIEWS 512
#define MAX_FAILED 256
#define KILL_RETRY_MS 5000 /* a kill that failed is tried again after this */

/* A kill that failed, not tried again before KILL_RETRY_MS. The kills that
 * worked are the plugin's marks (the list's `reclaimed`), which outlive
 * the agent. */
struct failed {
    char uid[64];
    int64_t at_ms;
};

struct fx_reclaim_mem {
    struct fx_reclaim_mem_config cfg;
    char marks[320];
    pthread_t tid;
    bool running;
    atomic_int stop;
    atomic_uint_fast64_t n_killed, n_failed;
    struct failed failed[MAX_FAILED];
    int nfailed;
    struct fx_alloc_view views[MAX_VIEWS];
};

int fx_reclaim_dir(const char *root, char *buf, size_t len)
{
    int n = snprintf(buf, len, "%s/borrowed", root);
    if (n < 0 || (size_t)n >= len)
        return -1;
    return mkdir(buf, 0755) == 0 || errno == EEXIST ? 0 : -1;
}

int fx_reclaim_mark(const char *root, const char *uuid, struct flexpu_error *err)
{
    char dir[320], path[448];
    if (fx_reclaim_dir(root, dir, sizeof(dir)) != 0 ||
        fx_borrowed_marker_path(dir, uuid, path, sizeof(path)) != 0)
        return flexpu_error_set(err, FLEXPU_EIO, "cannot mark GPU %s as borrowed in %s/borrowed",
                                uuid, root);
    int fd = open(path, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        return flexpu_error_set(err, FLEXPU_EIO, "cannot mark GPU %s as borrowed: %s: %s", uuid,
                                path, strerror(e));
    }
    close(fd);
    return 0;
}

/* A pod UID as the API server writes it: hex digits and dashes. It becomes
 * part of a path. */
static bool pod_uid_ok(const char *uid)
{
    size_t n = strlen(uid);
    if (n == 0 || n > 63)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((uid[i] >= '0' && uid[i] <= '9') || (uid[i] >= 'a' && uid[i] <= 'f') ||
              (uid[i] >= 'A' && uid[i] <= 'F') || uid[i] == '-'))
            return false;
    return true;
}

int fx_pod_cgroup(const char *cgroup_root, const char *uid, char *out, size_t len,
                  struct flexpu_error *err)
{
    if (!pod_uid_ok(uid))
        return flexpu_error_field(err, FLEXPU_EINVAL, "pod uid", uid, strlen(uid),
                                  "must be hex digits and dashes");
    char probe[512];
    struct stat st;
    snprintf(probe, sizeof(probe), "%s/cgroup.controllers", cgroup_root);
    if (stat(probe, &st) != 0)
        return flexpu_error_set(err, FLEXPU_EINVAL,
                                "%s is not a cgroup v2 mount (no cgroup.controllers): cgroup v1 "
                                "has no cgroup.kill, borrowers cannot be killed",
                                cgroup_root);
    char sd[64]; /* systemd escapes '-' in unit names */
    snprintf(sd, sizeof(sd), "%s", uid);
    for (char *c = sd; *c; c++)
        if (*c == '-')
            *c = '_';
    static const char *const qos[] = {"", "burstable", "besteffort"};
    for (int q = 0; q < 3; q++) {
        char a[256], b[256];
        if (qos[q][0]) {
            snprintf(a, sizeof(a), "kubepods.slice/kubepods-%s.slice/kubepods-%s-pod%s.slice",
                     qos[q], qos[q], sd);
            snprintf(b, sizeof(b), "kubepods/%s/pod%s", qos[q], uid);
        } else {
            snprintf(a, sizeof(a), "kubepods.slice/kubepods-pod%s.slice", sd);
            snprintf(b, sizeof(b), "kubepods/pod%s", uid);
        }
        const char *cand[2] = {a, b};
        for (int i = 0; i < 2; i++) {
            int n = snprintf(out, len, "%s/%s", cgroup_root, cand[i]);
            if (n > 0 && (size_t)n < len && stat(out, &st) == 0 && S_ISDIR(st.st_mode))
                return 0;
        }
    }
    return flexpu_error_set(err, FLEXPU_ENOENT,
                            "no cgroup of pod %s under %s (kubepods.slice or kubepods, any QoS "
                            "class)",
                            uid, cgroup_root);
}

int fx_pod_kill(const char *cgroup_root, const char *uid, struct flexpu_error *err)
{
    char dir[512], path[560];
    int rc = fx_pod_cgroup(cgroup_root, uid, dir, sizeof(dir), err);
    if (rc)
        return rc;
    snprintf(path, sizeof(path), "%s/cgroup.kill", dir);
    int fd = open(path, O_WRONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0 || write(fd, "1", 1) != 1) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        return flexpu_error_set(err, FLEXPU_EIO, "%s: %s (cgroup.kill needs Linux 5.14)", path,
                                strerror(e));
    }
    close(fd);
    return 0;
}

struct fx_reclaim_mem *fx_reclaim_mem_new(const struct fx_reclaim_mem_config *cfg,
                                          struct flexpu_error *err)
{
    struct fx_reclaim_mem *r = fx_calloc(1, sizeof(*r));
    if (!r) {
        flexpu_error_set(err, FLEXPU_ENOMEM, "out of memory");
        return NULL;
    }
    r->cfg = *cfg;
    char probe[512];
    struct stat st;
    snprintf(probe, sizeof(probe), "%s/cgroup.controllers", cfg->cgroup_root);
    if (stat(probe, &st) != 0)
        FX_WARN(COMP, "no cgroup v2 at the cgroup root: borrowers cannot be killed for an "
                "owner's memory (an owner waiting for it is refused after its wait)",
                "cgroup_root=%s", cfg->cgroup_root);
    if (fx_reclaim_dir(cfg->root, r->marks, sizeof(r->marks)) != 0) {
        flexpu_error_set(err, FLEXPU_EIO, "cannot create %s/borrowed: %s", cfg->root,
                         strerror(errno));
        free(r);
        return NULL;
    }
    return r;
}

void fx_reclaim_mem_free(struct fx_reclaim_mem *r)
{
    if (!r)
        return;
    fx_reclaim_mem_stop(r);
    free(r);
}

static struct failed *failed_of(struct fx_reclaim_mem *r, const char *uid)
{
    for (int i = 0; i < r->nfailed; i++)
        if (strcmp(r->failed[i].uid, uid) == 0)
            return &r->failed[i];
    return NULL;
}

/* A pod the plugin no longer knows is gone: forget its failed kill. */
static void forget_gone(struct fx_reclaim_mem *r, int n)
{
    for (int i = 0; i < r->nfailed;) {
        bool seen = false;
        for (int v = 0; v < n && !seen; v++)
            seen = strcmp(r->views[v].uid, r->failed[i].uid) == 0;
        if (seen)
            i++;
        else
            r->failed[i] = r->failed[--r->nfailed];
    }
}

/* Whether a directory under <root>/ledger is a slice's: a local slice's
 * key (FX_SLICE_KEY_LEN hexadecimal digits) or a remote slice's server's
 * (remote.h: FX_REMOTE_KEY_PREFIX and its pod's UID). A remote slice is an
 * owner, never a borrower (a borrowed slice is never remote,
 * kube/contract.c), and no pod of this node's: the plugin's list does not
 * name it. */
static bool slice_dir(const char *name)
{
    size_t n = strlen(name);
    if (name[0] == '.')
        return false;
    if (strncmp(name, FX_REMOTE_KEY_PREFIX, strlen(FX_REMOTE_KEY_PREFIX)) == 0)
        return n > strlen(FX_REMOTE_KEY_PREFIX) && n < FX_ARB_AGENT_KEY_MAX;
    return n <= FX_SLICE_KEY_LEN;
}

static bool ledger_of(const struct fx_reclaim_mem *r, const char *key, const char *uuid,
                      struct fx_ledger_handle *l)
{
    char path[640];
    struct flexpu_error err = {0};
    if (!key[0] || snprintf(path, sizeof(path), "%s/ledger/%s/%s.ledger", r->cfg.root, key,
                            uuid) >= (int)sizeof(path))
        return false;
    return fx_ledger_open_readonly(l, path, &err) == 0;
}

/* Whether any process of slice `key` is alive on GPU uuid. */
static bool slice_live(const struct fx_reclaim_mem *r, const char *key, const char *uuid)
{
    struct fx_ledger_handle l;
    if (!ledger_of(r, key, uuid, &l))
        return false;
    int procs = 0;
    (void)fx_ledger_used(&l, &procs);
    fx_ledger_detach(&l);
    return procs > 0;
}

/* Whether a slice that is not a borrower's has a live process waiting for
 * memory on GPU uuid; *who: its key. Every slice's ledger directory is
 * looked at, known to the plugin or not (after a restart, or a process run
 * beside the kubelet's), except the borrowers': a want names its GPU. */
static bool owner_wants(const struct fx_reclaim_mem *r, int n, int g, int64_t now_s, char *who,
                        size_t len, uint64_t *bytes);

/* Whether slice `key` has a live process waiting for memory on GPU uuid;
 * *bytes: what it asks (at most gpu_mem; 0 when its want does not say). */
static bool slice_wants(const struct fx_reclaim_mem *r, const char *key, const char *uuid,
                        int64_t now_s, uint64_t gpu_mem, uint64_t *bytes)
{
    char dir[400];
    int slots[8];
    if (!key[0] || snprintf(dir, sizeof(dir), "%s/ledger/%s", r->cfg.root, key) >= (int)sizeof(dir))
        return false;
    int n = fx_want_slots(dir, uuid, now_s, FX_WANT_FRESH_S, slots, 8);
    if (n == 0)
        return false;
    struct fx_ledger_handle l;
    if (!ledger_of(r, key, uuid, &l))
        return false;
    bool alive = false;
    for (int i = 0; i < n && !alive; i++)
        if ((alive = fx_ledger_slot_alive(&l, slots[i])))
            *bytes = fx_want_bytes(dir, uuid, slots[i], gpu_mem);
    fx_ledger_detach(&l);
    return alive;
}

static bool owner_wants(const struct fx_reclaim_mem *r, int n, int g, int64_t now_s, char *who,
                        size_t len, uint64_t *bytes)
{
    const char *uuid = r->cfg.gpus[g].uuid;
    char root[400];
    snprintf(root, sizeof(root), "%s/ledger", r->cfg.root);
    DIR *d = opendir(root);
    if (!d)
        return false;
    bool found = false;
    struct dirent *e;
    while (!found && (e = readdir(d))) {
        if (!slice_dir(e->d_name))
            continue;
        /* A borrower's want, or one of a slice known to be on other GPUs
         * only, is not an owner's of this GPU. */
        bool skip = false;
        for (int v = 0; v < n && !skip; v++)
            skip = strcmp(r->views[v].key, e->d_name) == 0 &&
                   (r->views[v].borrowed ||
                    (r->views[v].gpuset && !(r->views[v].gpuset & (1u << g))));
        if (!skip &&
            slice_wants(r, e->d_name, uuid, now_s, (uint64_t)r->cfg.gpus[g].mem_bytes, bytes)) {
            snprintf(who, len, "%s", e->d_name);
            found = true;
        }
    }
    closedir(d);
    return found;
}

int64_t fx_reclaim_owners_mem(const char *root, const char *uuid, int64_t gpu_mem,
                              const char *const *skip, int nskip)
{
    char dir[400];
    snprintf(dir, sizeof(dir), "%s/ledger", root);
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    int64_t sum = 0;
    struct dirent *e;
    while (sum < gpu_mem && (e = readdir(d))) {
        if (!slice_dir(e->d_name))
            continue;
        bool borrower = false;
        for (int i = 0; i < nskip && !borrower; i++)
            borrower = strcmp(skip[i], e->d_name) == 0;
        char path[640];
        struct fx_ledger_handle l;
        struct flexpu_error err = {0};
        if (borrower || snprintf(path, sizeof(path), "%s/%s/%s.ledger", dir, e->d_name, uuid) >=
                            (int)sizeof(path) ||
            fx_ledger_open_readonly(&l, path, &err) != 0)
            continue;
        uint64_t used = fx_ledger_used(&l, NULL);
        fx_ledger_detach(&l);
        /* Tenant-written: bounded before it is added. */
        sum += used > (uint64_t)gpu_mem ? gpu_mem : (int64_t)used;
    }
    closedir(d);
    return sum < gpu_mem ? sum : gpu_mem;
}

static void kill_borrowers(struct fx_reclaim_mem *r, int n, int g, const char *owner_key,
                           uint64_t bytes)
{
    const char *uuid = r->cfg.gpus[g].uuid;
    int64_t now = fx_mono_ms();
    for (int v = 0; v < n; v++) {
        struct fx_alloc_view *b = &r->views[v];
        if (!b->borrowed || b->reclaimed || !(b->gpuset & (1u << g)) || !b->uid[0])
            continue;
        struct failed *f = failed_of(r, b->uid);
        if (f && now - f->at_ms < KILL_RETRY_MS)
            continue;
        struct flexpu_error err = {0};
        int rc = fx_pod_kill(r->cfg.cgroup_root, b->uid, &err);
        char why[400];
        snprintf(why, sizeof(why), "GPU %s: an owner's allocation (slice %s) needs memory it "
                 "reserved and this borrower holds", uuid, owner_key);
        if (rc == 0) {
            if (f)
                *f = r->failed[--r->nfailed];
            /* Until the next list says so (the plugin marks it now). */
            for (int w = 0; w < n; w++)
                if (strcmp(r->views[w].uid, b->uid) == 0)
                    r->views[w].reclaimed = true;
            atomic_fetch_add(&r->n_killed, 1);
            FX_INFO(COMP, "borrower killed", "pod_uid=%s reason=\"%s\"", b->uid, why);
            struct fx_reclaim_note note = {.uid = b->uid, .gpu = uuid, .owner_key = owner_key,
                                           .bytes = bytes, .why = why};
            if (r->cfg.reclaimed)
                r->cfg.reclaimed(r->cfg.ctx, &note);
        } else {
            if (!f && r->nfailed < MAX_FAILED)
                f = &r->failed[r->nfailed++];
            if (f) {
                snprintf(f->uid, sizeof(f->uid), "%s", b->uid);
                f->at_ms = now;
            }
            atomic_fetch_add(&r->n_failed, 1);
            FX_ERROR(COMP, "cannot kill a borrower; the owner will be refused memory",
                     "pod_uid=%s reason=\"%s\" error=\"%s\"", b->uid, why, err.msg);
        }
    }
}

void fx_reclaim_mem_tick(struct fx_reclaim_mem *r)
{
    /* A borrower is in the list from its binding on, before its
     * PreStartContainer marks its GPU, and until its pod is deleted, which
     * comes after its containers ended: a mark is never taken from a
     * borrower that may still start or run. */
    int64_t now_s = (int64_t)time(NULL);
    int n = r->cfg.list(r->cfg.ctx, r->views, MAX_VIEWS);
    /* Not known yet (a restarted agent before its first list of the
     * pods): the borrowers the last agent admitted may still run, so their
     * marks stay, and no want is answered before they are known. */
    if (n < 0)
        return;
    forget_gone(r, n);
    for (int g = 0; g < r->cfg.ngpu && g < 32; g++) {
        const char *uuid = r->cfg.gpus[g].uuid;
        char mark[448];
        if (fx_borrowed_marker_path(r->marks, uuid, mark, sizeof(mark)) != 0)
            continue;
        /* Marked while a borrower there may still hold memory: not killed
         * yet, or killed and some process of it still alive. */
        bool active = false;
        for (int v = 0; v < n && !active; v++) {
            const struct fx_alloc_view *b = &r->views[v];
            if (!b->borrowed || !(b->gpuset & (1u << g)))
                continue;
            active = !b->reclaimed || slice_live(r, b->key, uuid);
        }
        if (!active) {
            unlink(mark);
            continue;
        }
        struct stat st;
        struct flexpu_error err = {0};
        if (lstat(mark, &st) != 0 && fx_reclaim_mark(r->cfg.root, uuid, &err) != 0)
            FX_WARN(COMP, "cannot mark a borrowed GPU", "error=\"%s\"", err.msg);
        char who[FX_ARB_AGENT_KEY_MAX];
        uint64_t bytes = 0;
        if (owner_wants(r, n, g, now_s, who, sizeof(who), &bytes))
            kill_borrowers(r, n, g, who, bytes);
    }
}

static void *loop(void *arg)
{
    struct fx_reclaim_mem *r = arg;
    while (!atomic_load(&r->stop)) {
        fx_reclaim_mem_tick(r);
        struct timespec ts = {0, FX_RECLAIM_MEM_PERIOD_MS * 1000000L};
        nanosleep(&ts, NULL);
    }
    return NULL;
}

int fx_reclaim_mem_start(struct fx_reclaim_mem *r, struct flexpu_error *err)
{
    atomic_store(&r->stop, 0);
    if (pthread_create(&r->tid, NULL, loop, r) != 0)
        return flexpu_error_set(err, FLEXPU_ENOMEM, "cannot start the borrowed-memory thread");
    r->running = true;
    return 0;
}

void fx_reclaim_mem_stop(struct fx_reclaim_mem *r)
{
    if (!r || !r->running)
        return;
    atomic_store(&r->stop, 1);
    pthread_join(r->tid, NULL);
    r->running = false;
}

void fx_reclaim_mem_counts(struct fx_reclaim_mem *r, uint64_t *killed, uint64_t *failed)
{
    *killed = atomic_load(&r->n_killed);
    *failed = atomic_load(&r->n_failed);
}

void fx_reclaim_mem_metrics(struct fx_reclaim_mem *r, FILE *f)
{
    uint64_t k, x;
    fx_reclaim_mem_counts(r, &k, &x);
    fx_prom_help(f, "flexpu_node_borrowers_killed_total", "counter",
                 "Borrowers' pods killed so that an owner of their GPU gets back memory it "
                 "reserved (result: killed, or failed: the owner is refused after its wait).");
    fprintf(f, "flexpu_node_borrowers_killed_total{result=\"killed\"} %llu\n",
            (unsigned long long)k);
    fprintf(f, "flexpu_node_borrowers_killed_total{result=\"failed\"} %llu\n",
            (unsigned long long)x);
}
