/* SPDX-License-Identifier: Apache-2.0 */
/* The node-wide shared state of one physical GPU: one file per GPU, named by
 * its UUID (so containers that number their devices differently agree), in
 * the state directory, mapped by every process that uses the GPU and read by
 * flexpu-smi and the node agent.
 *
 * Crash safety comes from the layout, not from recovery code:
 *  - Usage is kept per process slot, never as a running per-tenant sum; a
 *    tenant's usage is the sum of its live slots. A process killed at any
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

#include <stdint.h>

#include "flexpu/error.h"
#include "runtime/config.h"

#define FX_STATE_MAGIC 0x31535846u /* "FXS1" little-endian */
#define FX_STATE_VERSION 5u
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
    uint64_t quota_bytes;        /* as configured: 0 = whole GPU */
    uint32_t compute_share;      /* percent */
    uint32_t compute_cap;        /* percent */
    uint64_t gpu_time_ns;        /* GPU time held under arbitration */
    uint64_t throttled_ns;       /* time its launches waited */
    uint64_t oom_refusals;       /* allocations refused for the quota */
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
};

struct fx_proc_rec {
    uint32_t in_use;
    int32_t tenant;              /* index into tenants[] */
    int32_t pid;                 /* in the process's own PID namespace */
    char comm[16];
    uint64_t used_bytes;         /* everything this process holds on the GPU */
    uint64_t context_bytes;      /* the part of used_bytes charged for its context */
    uint64_t attach_ns;          /* CLOCK_REALTIME at registration */
    /* Published by the process for the arbiter (atomics, no lock): */
    uint32_t inflight;           /* launches not known complete */
    uint32_t waiting;            /* threads waiting for the GPU */
    uint32_t launching;          /* threads past the arbiter, not yet marked */
    uint32_t reserved1;
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
    uint64_t slice_len_ns;       /* granted length; its clock starts at first use */
    uint32_t slice_started;      /* the holder has launched in this slice */
    uint32_t reserved1;
    uint64_t vclock;             /* virtual time of the tenants with work */
    uint64_t settle_since_ns;    /* contention began with fast-path work queued */
    uint64_t prio_seen_ns[3];    /* by priority: when a tenant of it last had work */
};

struct fx_gpu_state {
    uint32_t magic;
    uint32_t version;
    uint32_t size;               /* sizeof(struct fx_gpu_state) of the writer */
    uint32_t reserved0;
    char uuid[FX_UUID_MAX];
    uint64_t total_bytes;        /* physical memory of the GPU */
    uint64_t generation;         /* bumped by every write, for readers */
    struct fx_arbiter arb;
    struct fx_tenant_rec tenants[FX_MAX_TENANTS];
    struct fx_proc_rec procs[FX_MAX_PROCS];
};

/* A process's handle on one GPU's state. */
struct fx_gpu {
    int fd;
    struct fx_gpu_state *st;
    int slot;                    /* this process's slot, -1 when read-only */
    int tenant;
};

/* Opens (creating if needed) the state of GPU `uuid` under `dir` and
 * registers this process as a member of the configured tenant: the tenant
 * record takes this process's configuration (the latest registration wins,
 * so a changed limit applies without deleting files). Dead slots are
 * reclaimed first. Errors name the path and the reason. */
int fx_gpu_attach(struct fx_gpu *g, const char *dir, const char *uuid, uint64_t total_bytes,
                  const struct fx_slice_config *cfg, struct flexpu_error *err);

/* Opens an existing state file read-only without registering (for
 * flexpu-smi, the node agent's metrics). slot is -1. Never blocks: a FIFO,
 * device, symlink or a file of no state file's size under the name is
 * refused with an error naming the path (FLEXPU_ENOENT when nothing is
 * there). fx_gpu_attach refuses the same. */
int fx_gpu_open_readonly(struct fx_gpu *g, const char *path, struct flexpu_error *err);

/* Unmaps and closes; the slot is released by the kernel dropping the lock and
 * reclaimed by the next writer, exactly as if the process had died. */
void fx_gpu_detach(struct fx_gpu *g);

/* The tenant's quota in bytes (the configured one, or the whole GPU). */
uint64_t fx_gpu_quota(const struct fx_gpu *g);

/* Charges `bytes` to this process if the tenant stays within its quota
 * (force: charge anyway, for memory the driver has already handed out).
 * Returns 0, or FLEXPU_ENOFIT when over quota (dead slots are reclaimed
 * before refusing). */
int fx_gpu_charge(struct fx_gpu *g, uint64_t bytes, int force);
/* Credits `bytes` back; never below zero (an attempt is logged). */
void fx_gpu_uncharge(struct fx_gpu *g, uint64_t bytes);
/* Charges the context overhead once (marks context_bytes). */
int fx_gpu_charge_context(struct fx_gpu *g, uint64_t bytes);

/* Credits the context overhead back (the process has no context left on
 * the GPU); the next context charges it again. */
void fx_gpu_uncharge_context(struct fx_gpu *g);

/* The tenant's usage: the sum over its live slots. */
uint64_t fx_gpu_tenant_used(struct fx_gpu *g);

/* Reclaims the slots of dead processes and tenants with no process left.
 * Returns how many slots were reclaimed. Needs a writable handle. */
int fx_gpu_reap(struct fx_gpu *g);

/* For readers (no lock: a snapshot): the bytes held by the live processes
 * of the tenant named `tenant`, and its record index (-1 when absent). */
uint64_t fx_gpu_usage_of(const struct fx_gpu *g, const char *tenant, int *index);

/* In a forked child, before anything else. */
void fx_state_after_fork(void);

/* The writers' lock, for the arbiter's decisions. Returns 0 when held
 * (then fx_gpu_unlock), -1 when not: only once the process is exiting, when
 * the lock stayed taken past a short bound (a peer frozen inside it must not
 * keep this process from ending). */
int fx_gpu_lock(struct fx_gpu *g);
void fx_gpu_unlock(struct fx_gpu *g);

/* The process is exiting (exit() has begun): from then on the library's
 * waits stop waiting. Nothing waits for the GPU or for another process any
 * more, the shared state's lock is waited for only briefly, and a credit it
 * cannot get in time is dropped (the kernel releases the slot with the
 * process, and the next writer reclaims it). Set once, never cleared. */
void fx_process_set_exiting(void);
int fx_process_exiting(void);

/* For readers: 1 when the slot's process is alive (holds its lock). */
int fx_gpu_slot_alive(const struct fx_gpu *g, int slot);

#endif
