/* SPDX-License-Identifier: Apache-2.0 */
/* A tenant process's side of arbitration by the node agent (state.h,
 * arbagent.h): the agent's page of a GPU, mapped read-only, and this
 * process's record in its slice's request file. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#include "runtime/ledger.h"
#include "runtime/state.h"
#include "util/clock.h"

struct req_init {
    const char *uuid;
};

static void init_req(void *buf, const void *argp)
{
    const struct req_init *arg = argp;
    struct fx_arb_req *r = buf;
    fx_shm_header_init(&r->h, FX_REQ_MAGIC, FX_REQ_VERSION, sizeof(*r));
    snprintf(r->uuid, sizeof(r->uuid), "%s", arg->uuid);
}

int fx_gpu_agent_tenant(struct fx_gpu *g)
{
    const struct fx_tenant_rec *tr = g->st->tenants;
    char name[FX_TENANT_NAME_MAX];
    for (int t = 0; t < FX_MAX_TENANTS; t++) {
        /* The name is the one of assignment `gen` if gen reads the same
         * before and after it (the agent zeroes gen before it rewrites a
         * record and sets the new one last: arbagent.c's tenant_of). */
        uint32_t gen = __atomic_load_n(&tr[t].gen, __ATOMIC_ACQUIRE);
        if (!gen)
            continue;
        fx_name_load(name, tr[t].name, sizeof(name));
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        if (__atomic_load_n(&tr[t].gen, __ATOMIC_RELAXED) != gen ||
            strncmp(name, g->name, sizeof(name)) != 0)
            continue;
        __atomic_store_n(&g->tenant, t, __ATOMIC_RELAXED);
        __atomic_store_n(&g->agent_rec, (uint64_t)gen << 32 | (uint32_t)(t + 1),
                         __ATOMIC_RELAXED);
        return t;
    }
    __atomic_store_n(&g->agent_rec, 0ull, __ATOMIC_RELAXED);
    return -1;
}

/* Takes a free slot: one whose lock byte nobody holds is unused or left by
 * a dead process, and holding its lock is what makes it this process's. */
static int take_slot(struct fx_gpu *g)
{
    for (int i = 0; i < FX_REQ_PROCS; i++) {
        if (fx_shm_lock_byte(g->req_fd, FX_LOCK_SLOT_BASE + i, F_WRLCK, 0) != 0)
            continue;
        struct fx_proc_rec *p = &g->req->procs[i];
        memset(p, 0, sizeof(*p));
        fx_shm_slot_owner(&p->pid, p->comm, &p->attach_ns);
        __atomic_store_n(&p->in_use, 1u, __ATOMIC_RELEASE);
        return i;
    }
    return -1;
}

/* How long a process waits for the agent to add the page of a GPU it has
 * not seen used yet (the agent makes one when it finds the GPU's first
 * request file, within FX_ARB_AGENT_SCAN_NS). */
#define PAGE_WAIT_NS (1000 * 1000 * 1000ull)
#define PAGE_POLL_NS (2 * 1000 * 1000ull)

static int map_page(struct fx_gpu *g, const char *path, struct flexpu_error *err)
{
    uint64_t until = fx_mono_ns() + PAGE_WAIT_NS;
    for (;;) {
        void *m = NULL;
        int rc = fx_shm_map(path, "arbiter page", sizeof(struct fx_gpu_state), FX_STATE_MAGIC,
                            FX_STATE_VERSION, 0, NULL, NULL, 0, &g->fd, &m, err);
        if (rc == 0) {
            g->st = m;
            return 0;
        }
        g->fd = -1;
        if (rc != FLEXPU_ENOENT || fx_mono_ns() >= until || fx_process_exiting())
            return rc;
        struct timespec ts = {0, (long)PAGE_POLL_NS};
        nanosleep(&ts, NULL);
    }
}

int fx_gpu_join_agent(struct fx_gpu *g, const struct fx_slice_config *cfg, const char *uuid,
                      struct flexpu_error *err)
{
    char path[FX_STATE_DIR_MAX * 2 + FX_UUID_MAX + 16];
    snprintf(g->name, sizeof(g->name), "%s", cfg->tenant);
    g->agent = 1;
    g->fd = -1;
    g->req_fd = -1;
    g->st = NULL;
    __atomic_store_n(&g->agent_rec, 0ull, __ATOMIC_RELAXED);
    char ldir[FX_STATE_DIR_MAX + FX_TENANT_NAME_MAX + 16];
    if (fx_ledger_dir(cfg, ldir, sizeof(ldir)) != 0) {
        fx_gpu_leave_agent(g);
        return flexpu_error_set(err, FLEXPU_EINVAL, "ledger directory of %s: too long",
                                cfg->state_dir);
    }
    /* The request file first: it is what tells the agent this GPU is used. */
    snprintf(path, sizeof(path), "%s/%s.req", ldir, uuid);
    struct req_init arg = {uuid};
    void *m = NULL;
    int rc = fx_shm_map(path, "request file", sizeof(struct fx_arb_req), FX_REQ_MAGIC,
                        FX_REQ_VERSION, 1, init_req, &arg, 0666, &g->req_fd, &m, err);
    if (rc) {
        g->req_fd = -1;
        fx_gpu_leave_agent(g);
        return rc;
    }
    g->req = m;
    g->procs = g->req->procs;
    g->slot = take_slot(g);
    if (g->slot < 0) {
        fx_gpu_leave_agent(g);
        return flexpu_error_set(err, FLEXPU_EBUSY, "%s: all %d process slots are taken", path,
                                FX_REQ_PROCS);
    }
    /* The agent's page: read-only here, and in a directory tenants cannot
     * write (so nobody can swap another file in under its name). */
    snprintf(path, sizeof(path), "%s/%s.state", cfg->arbiter_dir, uuid);
    rc = map_page(g, path, err);
    if (rc) {
        fx_gpu_leave_agent(g);
        return rc;
    }
    __atomic_store_n(&g->tenant, -1, __ATOMIC_RELAXED);
    __atomic_store_n(&g->agent_rec, 0ull, __ATOMIC_RELAXED);
    g->joined_ns = fx_mono_ns();
    (void)fx_gpu_agent_tenant(g);
    return 0;
}

void fx_gpu_leave_agent(struct fx_gpu *g)
{
    if (g->req)
        munmap(g->req, sizeof(*g->req));
    if (g->req_fd >= 0)
        close(g->req_fd);
    if (g->st)
        munmap(g->st, sizeof(*g->st));
    if (g->fd >= 0)
        close(g->fd);
    g->req = NULL;
    g->req_fd = -1;
    g->st = NULL;
    g->fd = -1;
    g->procs = NULL;
    g->slot = -1;
    __atomic_store_n(&g->tenant, -1, __ATOMIC_RELAXED);
    __atomic_store_n(&g->agent_rec, 0ull, __ATOMIC_RELAXED);
    g->agent = 0;
}
