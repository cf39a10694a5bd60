/* SPDX-License-Identifier: Apache-2.0 */
#include "runtime/state.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
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

/* OFD locks exclude other open file descriptions, not other threads sharing
 * ours, so threads of this process take this mutex first. */
static pthread_mutex_t local_lock = PTHREAD_MUTEX_INITIALIZER;

static int ofd_lock(int fd, off_t at, int type, int wait)
{
    struct flock fl = {.l_type = (short)type, .l_whence = SEEK_SET, .l_start = at, .l_len = 1};
    int rc;
    do
        rc = fcntl(fd, wait ? F_OFD_SETLKW : F_OFD_SETLK, &fl);
    while (rc < 0 && errno == EINTR);
    return rc;
}

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
#define EXIT_LOCK_POLL_NS (1000 * 1000L)
#define LOCK_NONE (-2)

/* Both locks within the bound, or neither (LOCK_NONE). After one timeout
 * the process does not wait again: its teardown may credit many times. */
static int writers_lock_at_exit(struct fx_gpu *g)
{
    static int timed_out;
    uint64_t deadline =
        fx_mono_ns() + (__atomic_load_n(&timed_out, __ATOMIC_RELAXED) ? 0 : EXIT_LOCK_WAIT_NS);
    for (;;) {
        if (pthread_mutex_trylock(&local_lock) == 0) {
            if (ofd_lock(g->fd, FX_LOCK_WRITERS, F_WRLCK, 0) == 0)
                return 0;
            pthread_mutex_unlock(&local_lock);
        }
        if (fx_mono_ns() >= deadline) {
            __atomic_store_n(&timed_out, 1, __ATOMIC_RELAXED);
            return LOCK_NONE;
        }
        struct timespec ts = {0, EXIT_LOCK_POLL_NS};
        nanosleep(&ts, NULL);
    }
}

/* Returns 0, or -1 when the cross-process lock cannot be taken (then the
 * in-process one is held all the same, and must be released by the caller
 * through writers_unlock). A process only ever writes its own slot, so
 * crediting is safe without it; admitting is not, and then fails closed.
 * LOCK_NONE only at exit: nothing is held, nothing may be written. */
static int writers_lock(struct fx_gpu *g)
{
    if (fx_process_exiting())
        return writers_lock_at_exit(g);
    pthread_mutex_lock(&local_lock);
    if (ofd_lock(g->fd, FX_LOCK_WRITERS, F_WRLCK, 1) != 0) {
        FX_ERROR(COMP, "cannot lock the GPU state", "uuid=%s errno=%d", g->st->uuid, errno);
        return -1;
    }
    return 0;
}

void fx_state_after_fork(void)
{
    /* Only the forking thread exists in the child; the lock may have been
     * held by another. */
    pthread_mutex_t fresh = PTHREAD_MUTEX_INITIALIZER;
    local_lock = fresh;
}

static void writers_unlock(struct fx_gpu *g)
{
    g->st->generation++;
    ofd_lock(g->fd, FX_LOCK_WRITERS, F_UNLCK, 0);
    pthread_mutex_unlock(&local_lock);
}

int fx_gpu_lock(struct fx_gpu *g)
{
    return writers_lock(g) == LOCK_NONE ? -1 : 0;
}

void fx_gpu_unlock(struct fx_gpu *g)
{
    writers_unlock(g);
}

int fx_gpu_slot_alive(const struct fx_gpu *g, int slot)
{
    if (slot == g->slot)
        return 1;
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET,
                       .l_start = FX_LOCK_SLOT_BASE + slot, .l_len = 1};
    if (fcntl(g->fd, F_OFD_GETLK, &fl) != 0)
        return 1; /* cannot tell: never reclaim a slot on doubt */
    return fl.l_type != F_UNLCK;
}

uint64_t fx_gpu_usage_of(const struct fx_gpu *g, const char *tenant, int *index)
{
    int t = -1;
    for (int i = 0; i < FX_MAX_TENANTS && t < 0; i++)
        if (g->st->tenants[i].in_use && strcmp(g->st->tenants[i].name, tenant) == 0)
            t = i;
    if (index)
        *index = t;
    uint64_t sum = 0;
    for (int i = 0; t >= 0 && i < FX_MAX_PROCS; i++) {
        const struct fx_proc_rec *p = &g->st->procs[i];
        if (p->in_use && p->tenant == t && fx_gpu_slot_alive(g, i))
            sum += p->used_bytes;
    }
    return sum;
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
    if (__atomic_load_n(&a->holder, __ATOMIC_SEQ_CST) == (uint32_t)t + 1) {
        __atomic_store_n(&a->holder, 0u, __ATOMIC_SEQ_CST);
        __atomic_fetch_add(&a->seq, 1, __ATOMIC_SEQ_CST);
    }
    memset(&st->tenants[t], 0, sizeof(st->tenants[t]));
}

/* Caller holds the writers' lock. */
static int reap_locked(struct fx_gpu *g)
{
    struct fx_gpu_state *st = g->st;
    int reclaimed = 0;
    int live[FX_MAX_TENANTS] = {0};
    for (int i = 0; i < FX_MAX_PROCS; i++) {
        struct fx_proc_rec *p = &st->procs[i];
        if (!p->in_use)
            continue;
        if (!fx_gpu_slot_alive(g, i)) {
            FX_INFO(COMP, "reclaimed the slot of a process that exited",
                    "uuid=%s slot=%d pid=%d bytes=%llu", st->uuid, i, (int)p->pid,
                    (unsigned long long)p->used_bytes);
            memset(p, 0, sizeof(*p));
            reclaimed++;
            continue;
        }
        if (p->tenant >= 0 && p->tenant < FX_MAX_TENANTS)
            live[p->tenant]++;
    }
    for (int t = 0; t < FX_MAX_TENANTS; t++) {
        if (st->tenants[t].in_use && live[t] == 0 && t != g->tenant)
            forget_tenant(st, t);
    }
    return reclaimed;
}

int fx_gpu_reap(struct fx_gpu *g)
{
    if (writers_lock(g) == LOCK_NONE)
        return 0;
    int n = reap_locked(g);
    writers_unlock(g);
    return n;
}

static uint64_t used_locked(const struct fx_gpu *g, int tenant)
{
    uint64_t sum = 0;
    for (int i = 0; i < FX_MAX_PROCS; i++) {
        const struct fx_proc_rec *p = &g->st->procs[i];
        if (p->in_use && p->tenant == tenant)
            sum += p->used_bytes;
    }
    return sum;
}

uint64_t fx_gpu_quota(const struct fx_gpu *g)
{
    uint64_t q = g->st->tenants[g->tenant].quota_bytes;
    return (q == 0 || q > g->st->total_bytes) ? g->st->total_bytes : q;
}

uint64_t fx_gpu_tenant_used(struct fx_gpu *g)
{
    if (writers_lock(g) == LOCK_NONE)
        return used_locked(g, g->tenant); /* at exit: a snapshot will do */
    /* What a process is told counts live processes only. */
    reap_locked(g);
    uint64_t u = used_locked(g, g->tenant);
    writers_unlock(g);
    return u;
}

int fx_gpu_charge(struct fx_gpu *g, uint64_t bytes, int force)
{
    int locked = writers_lock(g);
    /* At exit, memory the driver already handed out goes unbooked rather
     * than wait: the slot goes with the process. */
    if (locked == LOCK_NONE)
        return force ? 0 : FLEXPU_ENOFIT;
    if (locked != 0 && !force) {
        writers_unlock(g);
        return FLEXPU_ENOFIT;
    }
    uint64_t quota = fx_gpu_quota(g);
    uint64_t used = used_locked(g, g->tenant);
    if (!force && (bytes > quota || used > quota - bytes)) {
        /* Memory of processes that died may still be booked: reclaim, then
         * decide again. */
        if (reap_locked(g) > 0)
            used = used_locked(g, g->tenant);
        if (bytes > quota || used > quota - bytes) {
            g->st->tenants[g->tenant].oom_refusals++;
            writers_unlock(g);
            FX_INFO(COMP, "allocation refused: over the memory quota",
                    "tenant=%s uuid=%s bytes=%llu used=%llu quota=%llu",
                    g->st->tenants[g->tenant].name, g->st->uuid, (unsigned long long)bytes,
                    (unsigned long long)used, (unsigned long long)quota);
            return FLEXPU_ENOFIT;
        }
    }
    g->st->procs[g->slot].used_bytes += bytes;
    writers_unlock(g);
    return 0;
}

void fx_gpu_uncharge(struct fx_gpu *g, uint64_t bytes)
{
    if (writers_lock(g) == LOCK_NONE)
        return;
    struct fx_proc_rec *p = &g->st->procs[g->slot];
    if (p->used_bytes < bytes) {
        FX_WARN(COMP, "credit larger than the charge; clamped at zero",
                "uuid=%s used=%llu credit=%llu", g->st->uuid, (unsigned long long)p->used_bytes,
                (unsigned long long)bytes);
        p->used_bytes = 0;
    } else {
        p->used_bytes -= bytes;
    }
    writers_unlock(g);
}

int fx_gpu_charge_context(struct fx_gpu *g, uint64_t bytes)
{
    /* One lock for check and charge: two threads making contexts at once
     * must not both charge. */
    int locked = writers_lock(g);
    if (locked != 0) {
        if (locked != LOCK_NONE)
            writers_unlock(g);
        return FLEXPU_ENOFIT;
    }
    struct fx_proc_rec *p = &g->st->procs[g->slot];
    if (p->context_bytes || bytes == 0) {
        writers_unlock(g);
        return 0;
    }
    uint64_t quota = fx_gpu_quota(g);
    uint64_t used = used_locked(g, g->tenant);
    if ((bytes > quota || used > quota - bytes) && reap_locked(g) > 0)
        used = used_locked(g, g->tenant);
    if (bytes > quota || used > quota - bytes) {
        g->st->tenants[g->tenant].oom_refusals++;
        writers_unlock(g);
        return FLEXPU_ENOFIT;
    }
    p->used_bytes += bytes;
    p->context_bytes = bytes;
    writers_unlock(g);
    return 0;
}

void fx_gpu_uncharge_context(struct fx_gpu *g)
{
    if (writers_lock(g) == LOCK_NONE)
        return;
    struct fx_proc_rec *p = &g->st->procs[g->slot];
    uint64_t b = p->context_bytes;
    p->used_bytes = p->used_bytes >= b ? p->used_bytes - b : 0;
    p->context_bytes = 0;
    writers_unlock(g);
}

/* Creates the file fully initialised under a temporary name and links it in
 * place, so no process ever maps a half-written header. Losing the race to
 * another creator is fine. */
static int create_state_file(const char *path, const char *uuid, uint64_t total,
                             struct flexpu_error *err)
{
    /* A unique name: PIDs of different containers collide (often 1), and a
     * creator killed half-way leaves its file behind. */
    char tmp[FX_STATE_DIR_MAX + FX_UUID_MAX + 48];
    snprintf(tmp, sizeof(tmp), "%s.tmp.XXXXXX", path);
    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0)
        return flexpu_error_set(err, FLEXPU_EIO, "%s: cannot create: %s", tmp, strerror(errno));
    /* Tenants of one GPU are different containers, often different users. */
    (void)fchmod(fd, 0666);
    static struct fx_gpu_state init; /* zeroed; large for a stack */
    static pthread_mutex_t init_lock = PTHREAD_MUTEX_INITIALIZER;
    pthread_mutex_lock(&init_lock);
    memset(&init, 0, sizeof(init));
    init.magic = FX_STATE_MAGIC;
    init.version = FX_STATE_VERSION;
    init.size = sizeof(init);
    snprintf(init.uuid, sizeof(init.uuid), "%s", uuid);
    init.total_bytes = total;
    ssize_t w = pwrite(fd, &init, sizeof(init), 0);
    pthread_mutex_unlock(&init_lock);
    int rc = 0;
    if (w != (ssize_t)sizeof(init))
        rc = flexpu_error_set(err, FLEXPU_EIO, "%s: cannot write: %s", tmp,
                              w < 0 ? strerror(errno) : "short write");
    else if (link(tmp, path) != 0 && errno != EEXIST)
        rc = flexpu_error_set(err, FLEXPU_EIO, "%s: cannot link: %s", path, strerror(errno));
    close(fd);
    unlink(tmp);
    return rc;
}

/* The directory is writable by every tenant: what sits under a state file's
 * name may be a FIFO (whose blocking open never returns), a device, or a
 * symlink to any file the opener may read. The caller opened with O_NONBLOCK
 * and O_NOFOLLOW; only a regular file of a state file's size is used. */
#define STATE_FILE_MAX_BYTES (64u << 20)

static const char *file_kind(mode_t m)
{
    return S_ISFIFO(m) ? "a FIFO" : S_ISDIR(m) ? "a directory" : S_ISSOCK(m) ? "a socket"
         : S_ISCHR(m) || S_ISBLK(m) ? "a device" : "not a plain file";
}

static int map_state(struct fx_gpu *g, const char *path, int writable, struct flexpu_error *err)
{
    struct stat sb;
    if (fstat(g->fd, &sb) != 0)
        return flexpu_error_set(err, FLEXPU_EIO, "%s: cannot stat: %s", path, strerror(errno));
    if (!S_ISREG(sb.st_mode))
        return flexpu_error_set(err, FLEXPU_EPARSE,
                                "%s: not a regular file (%s); refusing it as a state file",
                                path, file_kind(sb.st_mode));
    if (sb.st_size > (off_t)STATE_FILE_MAX_BYTES)
        return flexpu_error_set(err, FLEXPU_EPARSE,
                                "%s: %lld bytes, too large for a flexpu state file; refusing it",
                                path, (long long)sb.st_size);
    if ((size_t)sb.st_size < sizeof(struct fx_gpu_state))
        return flexpu_error_set(err, FLEXPU_EPARSE,
                                "%s: %lld bytes, not a flexpu %u state file (%zu bytes)", path,
                                (long long)sb.st_size, FX_STATE_VERSION,
                                sizeof(struct fx_gpu_state));
    void *m = mmap(NULL, sizeof(struct fx_gpu_state), PROT_READ | (writable ? PROT_WRITE : 0),
                   MAP_SHARED, g->fd, 0);
    if (m == MAP_FAILED)
        return flexpu_error_set(err, FLEXPU_EIO, "%s: cannot map: %s", path, strerror(errno));
    struct fx_gpu_state *st = m;
    if (st->magic != FX_STATE_MAGIC || st->version != FX_STATE_VERSION ||
        st->size != sizeof(*st)) {
        /* Read for the message before the mapping goes. */
        uint32_t magic = st->magic, version = st->version, size = st->size;
        munmap(m, sizeof(*st));
        return flexpu_error_set(err, FLEXPU_EPARSE,
                                "%s: state file of another flexpu version (magic %#x version %u "
                                "size %u; expected version %u size %zu); remove it once no "
                                "process uses the GPU",
                                path, magic, version, size, FX_STATE_VERSION, sizeof(*st));
    }
    g->st = st;
    return 0;
}

/* O_NONBLOCK: open() of a FIFO returns at once (map_state then refuses
 * it) instead of waiting for a writer that never comes. O_NOFOLLOW: a
 * symlink planted under the name fails with ELOOP. */
static int open_state(const char *path, int mode)
{
    return open(path, mode | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC);
}

static int open_error(const char *path, struct flexpu_error *err)
{
    int e = errno;
    if (e == ELOOP)
        return flexpu_error_set(err, FLEXPU_EPARSE,
                                "%s: a symbolic link, not a state file; refusing it", path);
    return flexpu_error_set(err, e == ENOENT ? FLEXPU_ENOENT : FLEXPU_EIO, "%s: cannot open: %s",
                            path, strerror(e));
}

int fx_gpu_open_readonly(struct fx_gpu *g, const char *path, struct flexpu_error *err)
{
    memset(g, 0, sizeof(*g));
    g->slot = -1;
    g->tenant = -1;
    g->fd = open_state(path, O_RDONLY);
    if (g->fd < 0)
        return open_error(path, err);
    int rc = map_state(g, path, 0, err);
    if (rc) {
        close(g->fd);
        g->fd = -1;
    }
    return rc;
}

static int find_or_add_tenant(struct fx_gpu_state *st, const struct fx_slice_config *cfg)
{
    int free_rec = -1;
    for (int t = 0; t < FX_MAX_TENANTS; t++) {
        if (st->tenants[t].in_use && strcmp(st->tenants[t].name, cfg->tenant) == 0)
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
                                "GPU %s already has %d tenants; tenant '%s' cannot join", st->uuid,
                                FX_MAX_TENANTS, cfg->tenant);
    struct fx_tenant_rec *tr = &st->tenants[t];
    uint64_t quota = (uint64_t)cfg->memory_limit;
    if (tr->quota_bytes != quota || tr->compute_share != (uint32_t)cfg->compute_share ||
        tr->compute_cap != (uint32_t)cfg->compute_cap || tr->priority != (uint32_t)cfg->priority ||
        tr->cap_clock_mhz != (uint32_t)cfg->cap_clock_mhz)
        FX_DEBUG(COMP, "tenant configuration set",
                 "tenant=%s uuid=%s quota=%llu share=%d cap=%d cap_clock_mhz=%d", cfg->tenant,
                 st->uuid, (unsigned long long)quota, cfg->compute_share, cfg->compute_cap,
                 cfg->cap_clock_mhz);
    tr->quota_bytes = quota;
    tr->compute_share = (uint32_t)cfg->compute_share;
    tr->compute_cap = (uint32_t)cfg->compute_cap;
    __atomic_store_n(&tr->cap_clock_mhz, (uint32_t)cfg->cap_clock_mhz, __ATOMIC_RELAXED);
    tr->priority = (uint32_t)cfg->priority;

    for (int i = 0; i < FX_MAX_PROCS; i++) {
        if (st->procs[i].in_use)
            continue;
        /* Taking the slot's lock is what makes it ours; a slot whose lock
         * is still held belongs to a process that has not been reaped. */
        if (ofd_lock(g->fd, FX_LOCK_SLOT_BASE + i, F_WRLCK, 0) != 0)
            continue;
        struct fx_proc_rec *p = &st->procs[i];
        memset(p, 0, sizeof(*p));
        p->tenant = t;
        p->pid = (int32_t)getpid();
        (void)prctl(PR_GET_NAME, p->comm, 0, 0, 0);
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        p->attach_ns = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
        p->in_use = 1;
        g->slot = i;
        g->tenant = t;
        return 0;
    }
    return flexpu_error_set(err, FLEXPU_EBUSY, "GPU %s already has %d processes", st->uuid,
                            FX_MAX_PROCS);
}

int fx_gpu_attach(struct fx_gpu *g, const char *dir, const char *uuid, uint64_t total_bytes,
                  const struct fx_slice_config *cfg, struct flexpu_error *err)
{
    memset(g, 0, sizeof(*g));
    g->fd = -1;
    g->slot = -1;
    g->tenant = -1;
    if (mkdir(dir, 01777) == 0)
        (void)chmod(dir, 01777); /* umask must not stop other users' containers */
    else if (errno != EEXIST)
        return flexpu_error_set(err, FLEXPU_EIO, "state directory %s: cannot create: %s", dir,
                                strerror(errno));
    char path[FX_STATE_DIR_MAX + FX_UUID_MAX + 16];
    snprintf(path, sizeof(path), "%s/%s.state", dir, uuid);
    for (int attempt = 0; attempt < 2 && g->fd < 0; attempt++) {
        g->fd = open_state(path, O_RDWR);
        if (g->fd < 0 && errno == ENOENT && attempt == 0) {
            int rc = create_state_file(path, uuid, total_bytes, err);
            if (rc)
                return rc;
        } else if (g->fd < 0) {
            return open_error(path, err);
        }
    }
    int rc = map_state(g, path, 1, err);
    if (rc == 0 && strcmp(g->st->uuid, uuid) != 0)
        rc = flexpu_error_set(err, FLEXPU_EPARSE, "%s: holds GPU %s, not %s", path, g->st->uuid,
                              uuid);
    if (rc == 0 && writers_lock(g) == LOCK_NONE) {
        rc = flexpu_error_set(err, FLEXPU_EIO, "%s: the process is exiting and the state is "
                              "locked", path);
    } else if (rc == 0) {
        g->st->total_bytes = total_bytes;
        rc = register_locked(g, cfg, err);
        writers_unlock(g);
    }
    if (rc) {
        if (g->st)
            munmap(g->st, sizeof(*g->st));
        close(g->fd);
        g->st = NULL;
        g->fd = -1;
    }
    return rc;
}

void fx_gpu_detach(struct fx_gpu *g)
{
    if (g->st)
        munmap(g->st, sizeof(*g->st));
    if (g->fd >= 0)
        close(g->fd);
    g->st = NULL;
    g->fd = -1;
    g->slot = -1;
    g->tenant = -1;
}
