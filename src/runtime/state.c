/* SPDX-License-Identifier: Apache-2.0 */
#include "runtime/state.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "flexpu/log.h"
#include "util/clock.h"

#define COMP "flexpu-cuda"

#define LOAD(p) __atomic_load_n((p), __ATOMIC_SEQ_CST)
#define STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_SEQ_CST)

/* OFD locks exclude other open file descriptions, not other threads sharing
 * ours, so threads of this process take this mutex first. */
static pthread_mutex_t local_lock = PTHREAD_MUTEX_INITIALIZER;

static int exiting;

void fx_process_set_exiting(void)
{
    __atomic_store_n(&exiting, 1, __ATOMIC_RELAXED);
}

int fx_process_exiting(void)
{
    return __atomic_load_n(&exiting, __ATOMIC_RELAXED);
}

/* At exit the lock is held for microseconds by live peers; what stays taken
 * longer belongs to a frozen one (docker pause, SIGSTOP inside it), and an
 * exiting process does not wait for that. */
#define EXIT_LOCK_WAIT_NS (100 * 1000 * 1000ull)

/* Until when waits for the lock are skipped (a timeout was seen). */
static uint64_t wedged_until;
static int exit_timed_out;

int fx_gpu_lock(struct fx_gpu *g)
{
    uint64_t bound = FX_STATE_LOCK_WAIT_NS;
    if (fx_process_exiting())
        bound = LOAD(&exit_timed_out) ? 0 : EXIT_LOCK_WAIT_NS;
    else if (fx_mono_ns() < LOAD(&wedged_until))
        bound = 0;
    if (fx_shm_writers_lock(&local_lock, g->fd, bound, !fx_process_exiting()) == 0)
        return 0;
    if (fx_process_exiting()) {
        STORE(&exit_timed_out, 1);
    } else if (bound) {
        STORE(&wedged_until, fx_mono_ns() + FX_STATE_WEDGED_NS);
        FX_WARN(COMP, "the GPU's shared state stayed locked (a process of another tenant holds "
                "it); going ahead without arbitration while it stays locked",
                "uuid=%.96s waited_ms=%llu", g->st->uuid, (unsigned long long)(bound / 1000000));
    }
    return -1;
}

void fx_gpu_unlock(struct fx_gpu *g)
{
    g->st->generation++;
    fx_shm_writers_unlock(&local_lock, g->fd);
}

static void guard_after_fork(void);

void fx_state_after_fork(void)
{
    /* Only the forking thread exists in the child; the locks may have been
     * held by another. */
    pthread_mutex_t fresh = PTHREAD_MUTEX_INITIALIZER;
    local_lock = fresh;
    guard_after_fork();
    fx_ledger_after_fork();
}

int fx_gpu_slot_alive(const struct fx_gpu *g, int slot)
{
    if (slot == g->slot)
        return 1;
    return fx_shm_byte_locked(g->fd, FX_LOCK_SLOT_BASE + slot);
}

/* A tenant record is freed or reused: whatever the arbiter remembers of
 * that index (holding the GPU, a stale slice, a claim) belonged to the
 * previous tenant and must not be inherited. Caller holds the lock. */
static void forget_tenant(struct fx_gpu_state *st, int t)
{
    struct fx_arbiter *a = &st->arb;
    uint32_t bit = 1u << t;
    __atomic_fetch_and(&a->demand, ~bit, __ATOMIC_SEQ_CST);
    a->seen_demand &= ~bit;
    if (LOAD(&a->holder) == (uint32_t)t + 1) {
        STORE(&a->holder, 0u);
        __atomic_fetch_add(&a->seq, 1, __ATOMIC_SEQ_CST);
    }
    memset(&st->tenants[t], 0, sizeof(st->tenants[t]));
}

/* Caller holds the writers' lock. Reclaims the slots of dead processes and
 * the records of tenants with no process left. */
static void reap_locked(struct fx_gpu *g)
{
    struct fx_gpu_state *st = g->st;
    int live[FX_MAX_TENANTS] = {0};
    for (int i = 0; i < FX_MAX_PROCS; i++) {
        struct fx_proc_rec *p = &st->procs[i];
        if (!p->in_use)
            continue;
        if (!fx_gpu_slot_alive(g, i)) {
            FX_DEBUG(COMP, "reclaimed the slot of a process that exited",
                     "uuid=%.96s slot=%d pid=%d", st->uuid, i, (int)p->pid);
            memset(p, 0, sizeof(*p));
            continue;
        }
        if (p->tenant >= 0 && p->tenant < FX_MAX_TENANTS)
            live[p->tenant]++;
    }
    for (int t = 0; t < FX_MAX_TENANTS; t++) {
        if (st->tenants[t].in_use && live[t] == 0 && t != g->tenant)
            forget_tenant(st, t);
    }
}

struct init_arg {
    const char *uuid;
    uint64_t total;
};

static void init_state(void *buf, const void *argp)
{
    const struct init_arg *arg = argp;
    struct fx_gpu_state *st = buf;
    fx_shm_header_init(&st->h, FX_STATE_MAGIC, FX_STATE_VERSION, sizeof(*st));
    snprintf(st->uuid, sizeof(st->uuid), "%s", arg->uuid);
    st->total_bytes = arg->total;
}

int fx_gpu_open_readonly(struct fx_gpu *g, const char *path, struct flexpu_error *err)
{
    memset(g, 0, sizeof(*g));
    g->req_fd = -1;
    g->slot = -1;
    g->tenant = -1;
    g->mem.fd = -1;
    g->mem.slot = -1;
    /* A private copy read with pread, not a mapping of the file: every
     * tenant can truncate the shared state file, and a reader of a mapping
     * (the node agent's usage feed and metrics) would then die of SIGBUS.
     * private_state: unmapped as this process's own. The fd stays open for
     * the slots' locks. */
    void *m = mmap(NULL, sizeof(struct fx_gpu_state), PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED)
        return flexpu_error_set(err, FLEXPU_ENOMEM, "%s: out of memory", path);
    int rc = fx_shm_read(path, "state file", m, sizeof(struct fx_gpu_state), FX_STATE_MAGIC,
                         FX_STATE_VERSION, &g->fd, err);
    if (rc) {
        munmap(m, sizeof(struct fx_gpu_state));
        g->fd = -1;
        return rc;
    }
    g->st = m;
    g->procs = g->st->procs;
    g->private_state = 1;
    return 0;
}

static int find_or_add_tenant(struct fx_gpu_state *st, const struct fx_slice_config *cfg)
{
    int free_rec = -1;
    for (int t = 0; t < FX_MAX_TENANTS; t++) {
        if (st->tenants[t].in_use &&
            strncmp(st->tenants[t].name, cfg->tenant, sizeof(st->tenants[t].name)) == 0)
            return t;
        if (!st->tenants[t].in_use && free_rec < 0)
            free_rec = t;
    }
    if (free_rec >= 0) {
        forget_tenant(st, free_rec);
        snprintf(st->tenants[free_rec].name, sizeof(st->tenants[free_rec].name), "%s",
                 cfg->tenant);
        st->tenants[free_rec].in_use = 1;
    }
    return free_rec;
}

static int register_locked(struct fx_gpu *g, const struct fx_slice_config *cfg,
                           struct flexpu_error *err)
{
    struct fx_gpu_state *st = g->st;
    reap_locked(g);
    int t = find_or_add_tenant(st, cfg);
    if (t < 0)
        return flexpu_error_set(err, FLEXPU_EBUSY,
                                "GPU %.96s already has %d tenants; tenant '%s' cannot join",
                                st->uuid, FX_MAX_TENANTS, cfg->tenant);
    struct fx_tenant_rec *tr = &st->tenants[t];
    if (tr->compute_share != (uint32_t)cfg->compute_share ||
        tr->compute_cap != (uint32_t)cfg->compute_cap || tr->priority != (uint32_t)cfg->priority ||
        tr->cap_clock_mhz != (uint32_t)cfg->cap_clock_mhz)
        FX_DEBUG(COMP, "tenant configuration set",
                 "tenant=%s uuid=%.96s share=%d cap=%d cap_clock_mhz=%d", cfg->tenant, st->uuid,
                 cfg->compute_share, cfg->compute_cap, cfg->cap_clock_mhz);
    tr->compute_share = (uint32_t)cfg->compute_share;
    tr->compute_cap = (uint32_t)cfg->compute_cap;
    STORE(&tr->cap_clock_mhz, (uint32_t)cfg->cap_clock_mhz);
    tr->priority = (uint32_t)cfg->priority;

    for (int i = 0; i < FX_MAX_PROCS; i++) {
        if (st->procs[i].in_use)
            continue;
        /* Taking the slot's lock is what makes it ours; a slot whose lock
         * is still held belongs to a process that has not been reaped. */
        if (fx_shm_lock_byte(g->fd, FX_LOCK_SLOT_BASE + i, F_WRLCK, 0) != 0)
            continue;
        struct fx_proc_rec *p = &st->procs[i];
        memset(p, 0, sizeof(*p));
        p->tenant = t;
        fx_shm_slot_owner(&p->pid, p->comm, &p->attach_ns);
        p->in_use = 1;
        g->slot = i;
        g->tenant = t;
        return 0;
    }
    return flexpu_error_set(err, FLEXPU_EBUSY, "GPU %.96s already has %d processes", st->uuid,
                            FX_MAX_PROCS);
}

/* Truncating a mapped file turns every later access to the lost pages into
 * SIGBUS, and every tenant can truncate the shared state file. So that no
 * tenant can kill the others' processes that way, a SIGBUS whose address
 * lies in a shared state mapping replaces that mapping with private zeroed
 * memory and the access is retried: the process goes on as if it ran on a
 * private state (state.h). Any other SIGBUS goes to the handler that was
 * there before, or kills the process as it would have. */
#define GUARD_MAX 16
static struct {
    char *addr;
    size_t len;
} guarded[GUARD_MAX];
static struct sigaction prev_bus;
static pthread_mutex_t guard_lock = PTHREAD_MUTEX_INITIALIZER;

static void on_sigbus(int sig, siginfo_t *si, void *uc)
{
    char *at = si->si_addr;
    for (int i = 0; i < GUARD_MAX; i++) {
        char *b = __atomic_load_n(&guarded[i].addr, __ATOMIC_ACQUIRE);
        if (!b || at < b || at >= b + guarded[i].len)
            continue;
        if (mmap(b, guarded[i].len, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) == MAP_FAILED)
            break;
        static const char msg[] =
            "flexpu-cuda: the GPU's shared state file was truncated by another process; this "
            "process goes on with a private state (its compute is no longer arbitrated "
            "against other tenants)\n";
        ssize_t w = write(2, msg, sizeof(msg) - 1);
        (void)w;
        return;
    }
    if (prev_bus.sa_flags & SA_SIGINFO) {
        prev_bus.sa_sigaction(sig, si, uc);
    } else if (prev_bus.sa_handler != SIG_DFL && prev_bus.sa_handler != SIG_IGN) {
        prev_bus.sa_handler(sig);
    } else {
        /* Returning retries the access, which now kills the process. */
        struct sigaction dfl = {.sa_handler = SIG_DFL};
        sigaction(SIGBUS, &dfl, NULL);
    }
}

static void guard_after_fork(void)
{
    pthread_mutex_t fresh = PTHREAD_MUTEX_INITIALIZER;
    guard_lock = fresh;
}

static void guard_mapping(void *addr, size_t len, int on)
{
    pthread_mutex_lock(&guard_lock);
    static int installed;
    if (on && !installed) {
        struct sigaction sa = {.sa_sigaction = on_sigbus, .sa_flags = SA_SIGINFO | SA_ONSTACK};
        sigemptyset(&sa.sa_mask);
        if (sigaction(SIGBUS, &sa, &prev_bus) == 0)
            installed = 1;
    }
    for (int i = 0; i < GUARD_MAX; i++) {
        if (on && !guarded[i].addr) {
            guarded[i].len = len;
            __atomic_store_n(&guarded[i].addr, (char *)addr, __ATOMIC_RELEASE);
            break;
        }
        if (!on && guarded[i].addr == addr) {
            __atomic_store_n(&guarded[i].addr, NULL, __ATOMIC_RELEASE);
            break;
        }
    }
    pthread_mutex_unlock(&guard_lock);
}

static void unmap_state(struct fx_gpu *g)
{
    if (g->agent) {
        fx_gpu_leave_agent(g);
        return;
    }
    if (g->st && !g->private_state)
        guard_mapping(g->st, sizeof(*g->st), 0);
    if (g->st)
        munmap(g->st, sizeof(*g->st));
    if (g->fd >= 0)
        close(g->fd);
    g->st = NULL;
    g->procs = NULL;
    g->fd = -1;
    g->slot = -1;
    g->tenant = -1;
}

/* Joins the shared state file. */
static int join_shared(struct fx_gpu *g, const char *path, const char *uuid, uint64_t total,
                       const struct fx_slice_config *cfg, struct flexpu_error *err)
{
    struct init_arg arg = {uuid, total};
    void *m = NULL;
    /* Tenants of one GPU are different containers, often different users. */
    int rc = fx_shm_map(path, "state file", sizeof(struct fx_gpu_state), FX_STATE_MAGIC,
                        FX_STATE_VERSION, 1, init_state, &arg, 0666, &g->fd, &m, err);
    if (rc)
        return rc;
    g->st = m;
    g->procs = g->st->procs;
    guard_mapping(m, sizeof(struct fx_gpu_state), 1);
    if (strncmp(g->st->uuid, uuid, sizeof(g->st->uuid)) != 0)
        rc = flexpu_error_set(err, FLEXPU_EPARSE, "%s: holds GPU %.96s, not %s", path,
                              g->st->uuid, uuid);
    else if (fx_gpu_lock(g) != 0)
        rc = flexpu_error_set(err, FLEXPU_EBUSY, "%s: stayed locked", path);
    if (rc == 0) {
        g->st->total_bytes = total;
        rc = register_locked(g, cfg, err);
        fx_gpu_unlock(g);
    }
    if (rc)
        unmap_state(g);
    return rc;
}

/* A state of this process's own, in memory: the arbiter works as usual,
 * alone on it (its own cap still holds). */
static int join_private(struct fx_gpu *g, const char *uuid, uint64_t total,
                        const struct fx_slice_config *cfg, struct flexpu_error *err)
{
    int fd = memfd_create("flexpu-private-state", MFD_CLOEXEC);
    if (fd < 0)
        return flexpu_error_set(err, FLEXPU_EIO, "memfd_create: %s", strerror(errno));
    void *m = MAP_FAILED;
    if (ftruncate(fd, sizeof(struct fx_gpu_state)) == 0)
        m = mmap(NULL, sizeof(struct fx_gpu_state), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED) {
        int e = errno;
        close(fd);
        return flexpu_error_set(err, FLEXPU_EIO, "private state: %s", strerror(e));
    }
    struct init_arg arg = {uuid, total};
    init_state(m, &arg);
    g->fd = fd;
    g->st = m;
    g->procs = g->st->procs;
    g->private_state = 1;
    int rc = fx_gpu_lock(g) == 0 ? 0 : flexpu_error_set(err, FLEXPU_EIO, "private state lock");
    if (rc == 0) {
        rc = register_locked(g, cfg, err);
        fx_gpu_unlock(g);
    }
    if (rc)
        unmap_state(g);
    return rc;
}

int fx_gpu_attach(struct fx_gpu *g, const struct fx_slice_config *cfg, const char *uuid,
                  uint64_t total_bytes, struct flexpu_error *err)
{
    memset(g, 0, sizeof(*g));
    g->fd = -1;
    g->req_fd = -1;
    g->slot = -1;
    g->tenant = -1;
    const char *dir = cfg->state_dir;
    /* Under the node agent the shared state is not used, and its directory
     * is not mounted (docs/SECURITY.md): nothing to make. */
    int shared = !cfg->arbiter_dir[0];
    if (shared && mkdir(dir, 01777) == 0)
        (void)chmod(dir, 01777); /* umask must not stop other users' containers */
    else if (shared && errno != EEXIST)
        return flexpu_error_set(err, FLEXPU_EIO, "state directory %s: cannot create: %s", dir,
                                strerror(errno));
    char ldir[FX_STATE_DIR_MAX + FX_TENANT_NAME_MAX + 16];
    if (fx_ledger_dir(cfg, ldir, sizeof(ldir)) != 0)
        return flexpu_error_set(err, FLEXPU_EINVAL, "ledger directory of %s: too long", dir);
    int rc = fx_ledger_attach(&g->mem, ldir, uuid, total_bytes, cfg, err);
    if (rc)
        return rc;
    char path[FX_STATE_DIR_MAX + FX_UUID_MAX + 16];
    snprintf(path, sizeof(path), "%s/%s.state", dir, uuid);
    struct flexpu_error why = {0};
    /* Under the node agent, the agent's page or nothing: the shared state
     * file is what a hostile tenant could write. */
    if (cfg->arbiter_dir[0] ? fx_gpu_join_agent(g, cfg, uuid, &why) == 0
                            : join_shared(g, path, uuid, total_bytes, cfg, &why) == 0)
        return 0;
    /* Whatever is wrong with the shared state, other processes can have
     * caused it: it must not take the GPU from this one. */
    FX_ERROR(COMP, "cannot join the GPU's shared state; this process's compute is not "
             "arbitrated against other tenants (its memory quota and its cap still hold)",
             "uuid=%s tenant=%s reason=\"%s\"", uuid, cfg->tenant, why.msg);
    rc = join_private(g, uuid, total_bytes, cfg, err);
    if (rc)
        fx_ledger_detach(&g->mem);
    return rc;
}

void fx_gpu_detach(struct fx_gpu *g)
{
    unmap_state(g);
    fx_ledger_detach(&g->mem);
    g->private_state = 0;
}
