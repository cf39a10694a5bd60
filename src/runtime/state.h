/* SPDX-License-Identifier: Apache-2.0 */
/* The node-wide shared arbitration state of one physical GPU: one file per
 * GPU, named by its UUID (so containers that number their devices
 * differently agree), in the state directory, mapped by every process that
 * uses the GPU and read by flexpu-smi and the node agent. It holds what
 * compute sharing needs (arbiter.h) and nothing of memory: each tenant's
 * memory is kept in its own ledger (ledger.h), which other tenants cannot
 * reach.
 *
 * Every tenant writes this file, so nothing read from it is trusted: indices
 * and figures are bounded where they are read (arbiter.c), no wait for its
 * lock is unbounded, and a process that cannot join it (a file that is not a
 * state file, of another version, kept locked, or full) runs on a private
 * copy instead: its compute is then not arbitrated against the others', and
 * its memory quota and its own cap still hold. docs/SECURITY.md has the
 * threat model.
 *
 * Crash safety comes from the layout, not from recovery code:
 *  - Per-process figures are kept per process slot. A process killed at any
 *    instant leaves only its own slot behind, whole.
 *  - Each process holds an OFD lock on one byte reserved for its slot. The
 *    kernel drops it when the process dies, whatever the PID namespace, so
 *    anyone can tell a dead slot from a live one and reclaim it.
 *  - The writers' lock is an OFD lock on byte 0, which the kernel also drops
 *    at death. (A process-shared robust pthread mutex is not used: its owner
 *    is a TID, and TIDs of different containers collide — two PID-1
 *    processes would see each other as themselves.) */
#ifndef FX_RUNTIME_STATE_H
#define FX_RUNTIME_STATE_H

#include <stddef.h>
#include <stdint.h>

#include "flexpu/error.h"
#include "runtime/config.h"
#include "runtime/ledger.h"
#include "runtime/shmfile.h"

#define FX_STATE_MAGIC 0x31535846u /* "FXS1" little-endian */
#define FX_STATE_VERSION 7u
#define FX_MAX_TENANTS 32
#define FX_MAX_PROCS 256
#define FX_UUID_MAX 96
/* Byte offsets used for locks (beyond the end of the data; locks need no
 * backing bytes). */
#define FX_LOCK_WRITERS 0
#define FX_LOCK_SLOT_BASE (1 << 24)

struct fx_tenant_rec {
    uint32_t in_use;
    uint32_t priority;           /* enum fx_priority */
    char name[FX_TENANT_NAME_MAX];
    uint32_t compute_share;      /* percent */
    uint32_t compute_cap;        /* percent */
    uint64_t gpu_time_ns;        /* GPU time held under arbitration */
    uint64_t throttled_ns;       /* time its launches waited */
    /* Arbiter (arbiter.c): virtual time = GPU time / share, for picking the
     * most underserved tenant; a token bucket for the cap. */
    uint64_t vtime;
    int64_t budget_ns;
    uint64_t budget_ts;
    /* A cap's reference clock (cap_clock_mhz, 0: none), and the SM clock
     * its processes sampled while it held the GPU (fx_nvml_sample_clock):
     * the last sample, and this slice's samples as count << 32 | sum of
     * MHz, which charge() takes and clears. */
    uint32_t cap_clock_mhz;
    uint32_t clock_mhz;
    uint64_t slice_clock;
    /* Under the node agent: which assignment of this record it is, unique
     * on the page (fx_gpu_state.tenant_gens), 0 while free. A process
     * checks the index it cached against it at each use (fx_gpu_agent_index):
     * the agent may free the record and give the index to another tenant. */
    uint32_t gen;
    uint32_t reserved;
};

struct fx_proc_rec {
    uint32_t in_use;
    int32_t tenant;              /* index into tenants[] */
    int32_t pid;                 /* in the process's own PID namespace */
    char comm[16];
    uint64_t attach_ns;          /* CLOCK_REALTIME at registration */
    /* Published by the process for the arbiter (atomics, no lock): */
    uint32_t inflight;           /* launches not known complete */
    uint32_t waiting;            /* threads waiting for the GPU */
    uint32_t launching;          /* threads past the arbiter, not yet marked */
    /* Under the node agent: what its launches waited for the GPU, in
     * microseconds, wrapping (the agent adds each increase to the tenant's
     * throttled_ns, which the page keeps and the tenant cannot write). */
    uint32_t waited_us;
    uint64_t poll_ns;            /* last time a waiting thread checked in */
    uint64_t beat_ns;            /* last time its in-flight count was checked */
    uint64_t launches;           /* fast-path launches (a plain counter) */
    uint64_t seen_launches;      /* the arbiter's last look at it... */
    uint64_t seen_ns;            /* ...and when it last saw it move */
    uint64_t last_launch_ns;     /* CLOCK_MONOTONIC of its last launch */
    uint64_t drained_ns;         /* when its in-flight work last reached zero */
};

/* Who may launch on the GPU now (arbiter.c). */
struct fx_arbiter {
    uint32_t holder;             /* tenant index + 1; 0 = nobody */
    uint32_t seq;                /* futex word: bumped at every hand-over */
    uint32_t demand;             /* bit t: tenant t launched recently */
    uint32_t seen_demand;        /* demand at the previous decision */
    uint64_t slice_start_ns;     /* CLOCK_MONOTONIC */
    uint64_t slice_end_ns;
    /* The granted length; its clock starts at the holder's first launch,
     * under the node agent at the grant. */
    uint64_t slice_len_ns;
    uint32_t slice_started;      /* the slice's clock runs */
    uint32_t reserved1;
    uint64_t vclock;             /* virtual time of the tenants with work */
    uint64_t settle_since_ns;    /* contention began with fast-path work queued */
    uint64_t prio_seen_ns[3];    /* by priority: when a tenant of it last had work */
};

struct fx_gpu_state {
    struct fx_shm_header h;
    char uuid[FX_UUID_MAX];
    uint64_t total_bytes;        /* physical memory of the GPU */
    uint64_t generation;         /* bumped by every write, for readers */
    struct fx_arbiter arb;
    struct fx_tenant_rec tenants[FX_MAX_TENANTS];
    struct fx_proc_rec procs[FX_MAX_PROCS];
    /* Under the node agent: the last tenant_rec.gen it gave (kept on the
     * page, so that an agent taking a page over never gives one again). */
    uint32_t tenant_gens;
    uint32_t reserved;
};

/* A tenant's requests to the node agent's arbiter (arbagent.h): the
 * records of its processes on one GPU, in a file of its own slice's
 * directory (<ledger dir>/<uuid>.req), which only its containers can write
 * and the agent only reads (pread, never mapped: a tenant can truncate it).
 * Only the fields a process publishes for the arbiter are read from it;
 * `tenant` and the arbiter's view (seen_*) are not. Slots are claimed by
 * their OFD lock byte (FX_LOCK_SLOT_BASE + slot) alone. */
#define FX_REQ_MAGIC 0x31525846u /* "FXR1" little-endian */
#define FX_REQ_VERSION 1u
#define FX_REQ_PROCS 64

struct fx_arb_req {
    struct fx_shm_header h;
    char uuid[FX_UUID_MAX];
    struct fx_proc_rec procs[FX_REQ_PROCS];
};

/* A process's handle on one GPU: the shared arbitration state and its
 * tenant's memory ledger. Under the node agent (agent = 1), st is the
 * agent's page, mapped read-only, and the process's record is in its
 * slice's request file (req); otherwise both are the shared state file. */
struct fx_gpu {
    int fd;
    struct fx_gpu_state *st;
    struct fx_proc_rec *procs;   /* where `slot` indexes: st->procs or req->procs */
    int slot;                    /* this process's slot, -1 when read-only */
    int tenant;
    /* Under the node agent: the record found for the tenant, as
     * gen << 32 | (index + 1), 0 when none; the index is valid while that
     * record's gen is still this one (fx_gpu_agent_index). */
    uint64_t agent_rec;
    int private_state;           /* 1: st is this process's own copy */
    int agent;                   /* 1: the node agent arbitrates (st is read-only) */
    int req_fd;
    struct fx_arb_req *req;
    char name[FX_TENANT_NAME_MAX]; /* the tenant, as configured */
    uint64_t joined_ns;          /* CLOCK_MONOTONIC when it joined the agent's page */
    struct fx_ledger_handle mem;
};

/* Under the node agent: the index of the record a launching thread last
 * found for this tenant (fx_gpu_agent_tenant), -1 when there is none or
 * the agent has since freed or given that record to another tenant (its
 * gen changed). Two loads: cheap enough for every launch. */
static inline int fx_gpu_agent_cached(const struct fx_gpu *g)
{
    uint64_t rec = __atomic_load_n(&g->agent_rec, __ATOMIC_RELAXED);
    int t = (int)(uint32_t)rec - 1;
    if (t < 0 || t >= FX_MAX_TENANTS ||
        __atomic_load_n(&g->st->tenants[t].gen, __ATOMIC_ACQUIRE) != (uint32_t)(rec >> 32))
        return -1;
    return t;
}

/* The tenant's index in st->tenants, -1 when none. Under the node agent the
 * launching threads set it when they find the agent's record
 * (fx_gpu_agent_index) while others read it, and a stale one reads as -1
 * until the next launch finds the record again: always read it so. */
static inline int fx_gpu_tenant(const struct fx_gpu *g)
{
    if (g->agent)
        return fx_gpu_agent_cached(g);
    return __atomic_load_n(&g->tenant, __ATOMIC_RELAXED);
}

/* A tenant record's name, which the node agent writes and clears while
 * tenants look theirs up: copied byte by byte atomically (n bytes, the last
 * one made NUL on load). */
static inline void fx_name_load(char *dst, const char *src, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = __atomic_load_n(&src[i], __ATOMIC_RELAXED);
    dst[n - 1] = '\0';
}

static inline void fx_name_store(char *dst, const char *src, size_t n)
{
    size_t i = 0;
    for (; i + 1 < n && src[i]; i++)
        __atomic_store_n(&dst[i], src[i], __ATOMIC_RELAXED);
    for (; i < n; i++)
        __atomic_store_n(&dst[i], '\0', __ATOMIC_RELAXED);
}

/* Joins GPU `uuid`: takes a slot in the tenant's memory ledger (ledger.h;
 * an error there refuses the GPU) and registers this process as a member of
 * the configured tenant in the shared state under `cfg->state_dir`: the
 * tenant record takes this process's configuration (the latest registration
 * wins, so a changed limit applies without deleting files). When the shared
 * state cannot be joined for a reason other processes can cause, the process
 * runs on a private copy (logged at error level). Errors name the path and
 * the reason. */
int fx_gpu_attach(struct fx_gpu *g, const struct fx_slice_config *cfg, const char *uuid,
                  uint64_t total_bytes, struct flexpu_error *err);

/* Under the node agent: maps the agent's page for GPU `uuid` in
 * cfg->arbiter_dir read-only and takes a slot in the slice's request file
 * (<ledger dir>/<uuid>.req, created if needed). The tenant's index in the
 * page is looked up by name (fx_gpu_agent_tenant); -1 until the agent has
 * added it. FLEXPU_ENOENT when the agent has no page for the GPU. Called by
 * fx_gpu_attach; g->mem is left alone. */
int fx_gpu_join_agent(struct fx_gpu *g, const struct fx_slice_config *cfg, const char *uuid,
                      struct flexpu_error *err);
void fx_gpu_leave_agent(struct fx_gpu *g);

/* The tenant's index in the agent's page (found by the configured tenant
 * name), or -1 while the agent has not added it. Sets g->agent_rec. */
int fx_gpu_agent_tenant(struct fx_gpu *g);

/* The tenant's index, for a launch: the cached one while its record is
 * still the same assignment, else looked up again by name. */
static inline int fx_gpu_agent_index(struct fx_gpu *g)
{
    int t = fx_gpu_agent_cached(g);
    return t >= 0 ? t : fx_gpu_agent_tenant(g);
}

/* Opens an existing state file read-only without registering (for
 * flexpu-smi, the node agent's metrics). slot is -1, no ledger. Never
 * blocks: a FIFO, device, symlink or a file of no state file's size under
 * the name is refused with an error naming the path (FLEXPU_ENOENT when
 * nothing is there). fx_gpu_attach refuses the same. */
int fx_gpu_open_readonly(struct fx_gpu *g, const char *path, struct flexpu_error *err);

/* Unmaps and closes; the slots are released by the kernel dropping their
 * locks and reclaimed by the next writer, exactly as if the process had
 * died. */
void fx_gpu_detach(struct fx_gpu *g);

/* In a forked child, before anything else. */
void fx_state_after_fork(void);

/* The writers' lock, for the arbiter's decisions. Returns 0 when held
 * (then fx_gpu_unlock), -1 when not: the lock stayed taken past
 * FX_STATE_LOCK_WAIT_NS (a peer frozen or hostile inside it must not stall
 * this process; the caller goes ahead without deciding), or, once the
 * process is exiting, past a shorter bound. After one such timeout the next
 * FX_STATE_WEDGED_NS only try the lock without waiting (a free lock is
 * still taken: a timeout that was only a peer descheduled under load costs
 * nothing more). */
#define FX_STATE_LOCK_WAIT_NS (100 * 1000 * 1000ull)
#define FX_STATE_WEDGED_NS (5000 * 1000 * 1000ull)
int fx_gpu_lock(struct fx_gpu *g);
void fx_gpu_unlock(struct fx_gpu *g);

/* The process is exiting (exit() has begun): from then on the library's
 * waits stop waiting. Nothing waits for the GPU or for another process any
 * more, locks are waited for only briefly, and a credit that cannot get its
 * lock in time is dropped (the kernel releases the slot with the process,
 * and the next writer reclaims it). Set once, never cleared. */
void fx_process_set_exiting(void);
int fx_process_exiting(void);

/* For readers: 1 when the slot's process is alive (holds its lock). */
int fx_gpu_slot_alive(const struct fx_gpu *g, int slot);

#endif
