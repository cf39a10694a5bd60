/* SPDX-License-Identifier: Apache-2.0 */
#include "runtime/ledger.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "flexpu/log.h"
#include "runtime/state.h"

#define COMP "flexpu-cuda"

#define LOAD(p) __atomic_load_n((p), __ATOMIC_SEQ_CST)

/* Only processes of the same tenant take this lock, for microseconds. One
 * that keeps it (stopped inside it, or a buggy process of the tenant)
 * delays the tenant's own allocations by this much each, then they fail. */
#define LEDGER_LOCK_WAIT_NS (1000 * 1000 * 1000ull)
/* At exit a credit that cannot get the lock in time is dropped (the kernel
 * releases the slot with the process); after one timeout, no more waits. */
#define LEDGER_EXIT_WAIT_NS (100 * 1000 * 1000ull)

static pthread_mutex_t local_lock = PTHREAD_MUTEX_INITIALIZER;

void fx_ledger_after_fork(void)
{
    pthread_mutex_t fresh = PTHREAD_MUTEX_INITIALIZER;
    local_lock = fresh;
}

static int lock(struct fx_ledger_handle *l)
{
    static int exit_timed_out;
    uint64_t bound = LEDGER_LOCK_WAIT_NS;
    if (fx_process_exiting())
        bound = LOAD(&exit_timed_out) ? 0 : LEDGER_EXIT_WAIT_NS;
    if (fx_shm_writers_lock(&local_lock, l->fd, bound, !fx_process_exiting()) == 0)
        return 0;
    if (fx_process_exiting())
        __atomic_store_n(&exit_timed_out, 1, __ATOMIC_SEQ_CST);
    else
        FX_WARN(COMP, "the tenant's memory ledger stayed locked; the allocation is refused",
                "uuid=%.96s tenant=%.63s waited_ms=%llu", l->led->uuid, l->led->tenant,
                (unsigned long long)(bound / 1000000));
    return -1;
}

static void unlock(struct fx_ledger_handle *l)
{
    l->led->generation++;
    fx_shm_writers_unlock(&local_lock, l->fd);
}

int fx_ledger_dir(const struct fx_slice_config *cfg, char *buf, size_t len)
{
    int n = cfg->ledger_dir[0] ? snprintf(buf, len, "%s", cfg->ledger_dir)
                               : snprintf(buf, len, "%s/ledger/%s", cfg->state_dir, cfg->tenant);
    return n < 0 || (size_t)n >= len ? -1 : 0;
}

int fx_ledger_slot_alive(const struct fx_ledger_handle *l, int i)
{
    if (i == l->slot)
        return 1;
    return fx_shm_byte_locked(l->fd, FX_LEDGER_SLOT_BASE + i);
}

uint64_t fx_ledger_used(const struct fx_ledger_handle *l, int *procs)
{
    uint64_t sum = 0;
    int n = 0;
    for (int i = 0; i < FX_LEDGER_PROCS; i++) {
        const struct fx_ledger_proc *p = &l->led->procs[i];
        if (LOAD(&p->in_use) && fx_ledger_slot_alive(l, i)) {
            sum += LOAD(&p->used_bytes);
            n++;
        }
    }
    if (procs)
        *procs = n;
    return sum;
}

/* Under the lock: the booked usage of every slot, dead ones included (they
 * are reclaimed before a refusal, not on every charge). */
static uint64_t booked(const struct fx_ledger *led)
{
    uint64_t sum = 0;
    for (int i = 0; i < FX_LEDGER_PROCS; i++)
        if (LOAD(&led->procs[i].in_use))
            sum += LOAD(&led->procs[i].used_bytes);
    return sum;
}

/* Under the lock. Returns how many slots were reclaimed. */
static int reap(struct fx_ledger_handle *l)
{
    int n = 0;
    for (int i = 0; i < FX_LEDGER_PROCS; i++) {
        struct fx_ledger_proc *p = &l->led->procs[i];
        if (!LOAD(&p->in_use) || fx_ledger_slot_alive(l, i))
            continue;
        FX_INFO(COMP, "reclaimed the memory of a process that exited",
                "uuid=%.96s tenant=%.63s pid=%d bytes=%llu", l->led->uuid, l->led->tenant,
                (int)p->pid, (unsigned long long)p->used_bytes);
        memset(p, 0, sizeof(*p));
        n++;
    }
    return n;
}

static int fits(const struct fx_ledger_handle *l, uint64_t used, uint64_t bytes)
{
    return bytes <= l->quota && used <= l->quota - bytes;
}

/* Under the lock: admits `bytes`, reclaiming dead slots before refusing. */
static int admit(struct fx_ledger_handle *l, uint64_t bytes)
{
    uint64_t used = booked(l->led);
    if (!fits(l, used, bytes) && reap(l) > 0)
        used = booked(l->led);
    if (fits(l, used, bytes))
        return 0;
    l->led->oom_refusals++;
    FX_INFO(COMP, "allocation refused: over the memory quota",
            "tenant=%.63s uuid=%.96s bytes=%llu used=%llu quota=%llu", l->led->tenant, l->led->uuid,
            (unsigned long long)bytes, (unsigned long long)used, (unsigned long long)l->quota);
    return FLEXPU_ENOFIT;
}

int fx_ledger_charge(struct fx_ledger_handle *l, uint64_t bytes, int force)
{
    struct fx_ledger_proc *p = &l->led->procs[l->slot];
    if (force) {
        /* Memory the driver already handed out is booked whatever the
         * lock: only this process writes its slot. */
        __atomic_fetch_add(&p->used_bytes, bytes, __ATOMIC_SEQ_CST);
        return 0;
    }
    if (lock(l) != 0)
        return FLEXPU_ENOFIT;
    int rc = admit(l, bytes);
    if (rc == 0)
        __atomic_fetch_add(&p->used_bytes, bytes, __ATOMIC_SEQ_CST);
    unlock(l);
    return rc;
}

void fx_ledger_uncharge(struct fx_ledger_handle *l, uint64_t bytes)
{
    uint64_t *u = &l->led->procs[l->slot].used_bytes;
    uint64_t cur = LOAD(u), next;
    do {
        next = cur >= bytes ? cur - bytes : 0;
    } while (!__atomic_compare_exchange_n(u, &cur, next, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST));
    if (cur < bytes)
        FX_WARN(COMP, "credit larger than the charge; clamped at zero",
                "uuid=%.96s used=%llu credit=%llu", l->led->uuid, (unsigned long long)cur,
                (unsigned long long)bytes);
}

int fx_ledger_charge_context(struct fx_ledger_handle *l, uint64_t bytes)
{
    /* One lock for check and charge: two threads making contexts at once
     * must not both charge. */
    if (lock(l) != 0)
        return FLEXPU_ENOFIT;
    struct fx_ledger_proc *p = &l->led->procs[l->slot];
    int rc = 0;
    if (!p->context_bytes && bytes) {
        rc = admit(l, bytes);
        if (rc == 0) {
            __atomic_fetch_add(&p->used_bytes, bytes, __ATOMIC_SEQ_CST);
            p->context_bytes = bytes;
        }
    }
    unlock(l);
    return rc;
}

void fx_ledger_uncharge_context(struct fx_ledger_handle *l)
{
    if (lock(l) != 0)
        return; /* only at exit: the slot goes with the process */
    struct fx_ledger_proc *p = &l->led->procs[l->slot];
    uint64_t b = p->context_bytes;
    p->context_bytes = 0;
    unlock(l);
    fx_ledger_uncharge(l, b);
}

struct init_arg {
    const char *uuid;
    const char *tenant;
    uint64_t total;
};

static void init_ledger(void *buf, const void *argp)
{
    const struct init_arg *arg = argp;
    struct fx_ledger *led = buf;
    fx_shm_header_init(&led->h, FX_LEDGER_MAGIC, FX_LEDGER_VERSION, sizeof(*led));
    snprintf(led->uuid, sizeof(led->uuid), "%s", arg->uuid);
    snprintf(led->tenant, sizeof(led->tenant), "%s", arg->tenant);
    led->total_bytes = arg->total;
}

/* mkdir -p for the ledger's directory (its parents may not exist outside
 * Kubernetes, where <state_dir>/ledger/<tenant> is the default). */
static int make_dirs(const char *dir, struct flexpu_error *err)
{
    char buf[FX_STATE_DIR_MAX + FX_TENANT_NAME_MAX + 16];
    if (snprintf(buf, sizeof(buf), "%s", dir) >= (int)sizeof(buf))
        return flexpu_error_set(err, FLEXPU_EINVAL, "ledger directory %s: too long", dir);
    for (char *s = buf + 1;; s++) {
        int end = *s == '\0';
        if (*s == '/' || end) {
            *s = '\0';
            /* Processes of one tenant may run as different users. */
            if (mkdir(buf, 0777) == 0)
                (void)chmod(buf, 0777);
            else if (errno != EEXIST)
                return flexpu_error_set(err, FLEXPU_EIO, "ledger directory %s: cannot create: %s",
                                        buf, strerror(errno));
            if (end)
                return 0;
            *s = '/';
        }
    }
}

static void ledger_path(char *buf, size_t len, const char *dir, const char *uuid)
{
    snprintf(buf, len, "%s/%s.ledger", dir, uuid);
}

int fx_ledger_open_readonly(struct fx_ledger_handle *l, const char *path,
                            struct flexpu_error *err)
{
    memset(l, 0, sizeof(*l));
    l->slot = -1;
    l->fd = -1;
    /* Anonymous memory, so that fx_ledger_detach unmaps it as any. */
    struct fx_ledger *copy = mmap(NULL, sizeof(*copy), PROT_READ | PROT_WRITE,
                                  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (copy == MAP_FAILED)
        return flexpu_error_set(err, FLEXPU_ENOMEM, "%s: out of memory", path);
    int rc = fx_shm_read(path, "ledger", copy, sizeof(*copy), FX_LEDGER_MAGIC,
                         FX_LEDGER_VERSION, &l->fd, err);
    if (rc) {
        munmap(copy, sizeof(*copy));
        l->fd = -1;
        return rc;
    }
    l->led = copy;
    return 0;
}

int fx_ledger_attach(struct fx_ledger_handle *l, const char *dir, const char *uuid,
                     uint64_t total_bytes, const struct fx_slice_config *cfg,
                     struct flexpu_error *err)
{
    memset(l, 0, sizeof(*l));
    l->fd = -1;
    l->slot = -1;
    l->quota = cfg->memory_limit > 0 && (uint64_t)cfg->memory_limit < total_bytes
                   ? (uint64_t)cfg->memory_limit : total_bytes;
    int rc = make_dirs(dir, err);
    if (rc)
        return rc;
    char path[FX_STATE_DIR_MAX + FX_TENANT_NAME_MAX + FX_LEDGER_UUID_MAX + 32];
    ledger_path(path, sizeof(path), dir, uuid);
    struct init_arg arg = {uuid, cfg->tenant, total_bytes};
    void *m = NULL;
    rc = fx_shm_map(path, "ledger", sizeof(struct fx_ledger), FX_LEDGER_MAGIC, FX_LEDGER_VERSION,
                    1, init_ledger, &arg, 0666, &l->fd, &m, err);
    if (rc)
        return rc;
    l->led = m;
    if (strncmp(l->led->uuid, uuid, sizeof(l->led->uuid)) != 0)
        rc = flexpu_error_set(err, FLEXPU_EPARSE, "%s: the ledger of GPU %.96s, not of %s", path,
                              l->led->uuid, uuid);
    else if (lock(l) != 0)
        rc = flexpu_error_set(err, FLEXPU_EBUSY, "%s: stayed locked", path);
    if (rc == 0 && strncmp(l->led->tenant, cfg->tenant, sizeof(l->led->tenant)) != 0) {
        /* The directory of an allocation whose pod has ended may be reused
         * before the node agent removed it (the same devices, the same key):
         * a ledger with no live process is taken over. */
        reap(l);
        int live = 0;
        (void)fx_ledger_used(l, &live);
        if (live)
            rc = flexpu_error_set(err, FLEXPU_EBUSY, "%s: the ledger of tenant '%.63s', which "
                                  "still has %d live process(es), not of '%s'", path,
                                  l->led->tenant, live, cfg->tenant);
        else {
            FX_INFO(COMP, "ledger taken over from a tenant with no process left",
                    "path=%s from=%.63s to=%s", path, l->led->tenant, cfg->tenant);
            snprintf(l->led->tenant, sizeof(l->led->tenant), "%s", cfg->tenant);
            l->led->oom_refusals = 0;
        }
        if (rc)
            unlock(l);
    }
    if (rc == 0) {
        reap(l);
        l->led->total_bytes = total_bytes;
        l->led->quota_bytes = (uint64_t)cfg->memory_limit;
        for (int i = 0; i < FX_LEDGER_PROCS && l->slot < 0; i++) {
            struct fx_ledger_proc *p = &l->led->procs[i];
            /* Taking the slot's lock is what makes it ours. */
            if (p->in_use || fx_shm_lock_byte(l->fd, FX_LEDGER_SLOT_BASE + i, F_WRLCK, 0) != 0)
                continue;
            memset(p, 0, sizeof(*p));
            fx_shm_slot_owner(&p->pid, p->comm, &p->attach_ns);
            __atomic_store_n(&p->in_use, 1u, __ATOMIC_SEQ_CST);
            l->slot = i;
        }
        unlock(l);
        if (l->slot < 0)
            rc = flexpu_error_set(err, FLEXPU_EBUSY, "%s: tenant '%s' already has %d processes "
                                  "on this GPU", path, cfg->tenant, FX_LEDGER_PROCS);
    }
    if (rc)
        fx_ledger_detach(l);
    return rc;
}

void fx_ledger_detach(struct fx_ledger_handle *l)
{
    if (l->led)
        munmap(l->led, sizeof(*l->led));
    if (l->fd >= 0)
        close(l->fd);
    l->led = NULL;
    l->fd = -1;
    l->slot = -1;
}

void fx_ledger_scan(const char *root, const char *uuid,
                    void (*fn)(const struct fx_ledger_handle *l, void *ctx),
                    void (*bad)(const char *msg, void *ctx), void *ctx)
{
    DIR *d = opendir(root);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char path[4096];
        if (snprintf(path, sizeof(path), "%s/%s/%s.ledger", root, e->d_name, uuid) >=
            (int)sizeof(path))
            continue;
        struct fx_ledger_handle l;
        struct flexpu_error err = {0};
        int rc = fx_ledger_open_readonly(&l, path, &err);
        if (rc == 0) {
            fn(&l, ctx);
            fx_ledger_detach(&l);
        } else if (rc != FLEXPU_ENOENT && bad) {
            bad(err.msg, ctx);
        }
    }
    closedir(d);
}
