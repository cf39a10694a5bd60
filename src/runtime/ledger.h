/* SPDX-License-Identifier: Apache-2.0 */
/* A tenant's memory ledger on one GPU: what each of its processes holds,
 * checked against the tenant's quota. One file per tenant and GPU, in a
 * directory only that tenant's containers can write (in Kubernetes, the
 * node agent mounts it into the slice's containers alone; docs/SECURITY.md).
 *
 * Memory is the one resource a tenant can take from another for good (an
 * allocation is kept until freed), so its accounting shares nothing with
 * other tenants: their processes cannot read, change, lock or truncate this
 * file, and the quota it is checked against is the process's own
 * configuration (in Kubernetes a read-only file the node agent writes). What
 * a tenant can do to its own ledger only affects itself; a tenant that wants
 * to exceed its own quota can bypass the library anyway (docs/RUNTIME.md,
 * "what the library cannot stop").
 *
 * Crash safety as in state.h: usage is kept per process slot, each process
 * holds an OFD lock on its slot's byte, and a slot whose lock is free
 * belongs to a dead process and is reclaimed. */
#ifndef FX_RUNTIME_LEDGER_H
#define FX_RUNTIME_LEDGER_H

#include <stdint.h>

#include "flexpu/error.h"
#include "runtime/config.h"
#include "runtime/shmfile.h"

#define FX_LEDGER_MAGIC 0x314c5846u /* "FXL1" little-endian */
#define FX_LEDGER_VERSION 1u
#define FX_LEDGER_PROCS 256
#define FX_LEDGER_UUID_MAX 96
#define FX_LEDGER_SLOT_BASE (1 << 24) /* lock bytes, beyond the data */

struct fx_ledger_proc {
    uint32_t in_use;
    int32_t pid;                 /* in the process's own PID namespace */
    char comm[16];
    uint64_t used_bytes;         /* everything it holds on the GPU (atomic) */
    uint64_t context_bytes;      /* the part charged for its context */
    uint64_t attach_ns;          /* CLOCK_REALTIME at registration */
};

struct fx_ledger {
    struct fx_shm_header h;
    char uuid[FX_LEDGER_UUID_MAX];
    char tenant[FX_TENANT_NAME_MAX];
    uint64_t total_bytes;        /* physical memory of the GPU */
    /* As the tenant's processes are configured: for readers only. What is
     * enforced is each process's own configuration. */
    uint64_t quota_bytes;
    uint64_t oom_refusals;       /* allocations refused for the quota */
    uint64_t generation;         /* bumped by every locked write */
    struct fx_ledger_proc procs[FX_LEDGER_PROCS];
};

/* A process's place in its tenant's ledger for one GPU. */
struct fx_ledger_handle {
    int fd;
    struct fx_ledger *led;
    int slot;                    /* -1 when read-only */
    uint64_t quota;              /* bytes: the configured quota, or the GPU */
};

/* The directory of the configured tenant's ledgers: cfg->ledger_dir, or
 * <state_dir>/ledger/<tenant> when none is configured. */
int fx_ledger_dir(const struct fx_slice_config *cfg, char *buf, size_t len);

/* Opens (creating it and its directory if needed) the tenant's ledger for
 * GPU `uuid` and takes a slot for this process. Dead slots are reclaimed
 * first. Errors name the path and the reason. */
int fx_ledger_attach(struct fx_ledger_handle *l, const char *dir, const char *uuid,
                     uint64_t total_bytes, const struct fx_slice_config *cfg,
                     struct flexpu_error *err);

/* Opens a ledger read-only (flexpu-smi, the node agent, nvidia-smi under
 * the library): a private copy read with pread, never a mapping, since the
 * tenant that writes the ledger can truncate it at any moment (a mapping's
 * reader would then die of SIGBUS); the fd stays open for the slots'
 * locks. The usage it gives is a snapshot as of the open. Never blocks;
 * refuses what is not a ledger. */
int fx_ledger_open_readonly(struct fx_ledger_handle *l, const char *path,
                            struct flexpu_error *err);

/* Unmaps and closes; the kernel drops the slot's lock, and the next writer
 * reclaims the slot, exactly as if the process had died. */
void fx_ledger_detach(struct fx_ledger_handle *l);

/* 1 when slot i's process is alive. */
int fx_ledger_slot_alive(const struct fx_ledger_handle *l, int i);

/* The tenant's usage: the sum over its live slots (snapshot; `procs`, if
 * not NULL, receives how many are live). */
uint64_t fx_ledger_used(const struct fx_ledger_handle *l, int *procs);

/* Charges `bytes` to this process if the tenant stays within its quota
 * (force: charge anyway, for memory the driver already handed out).
 * Returns 0, or FLEXPU_ENOFIT when over quota, or when the ledger stayed
 * locked past a bound (a frozen process of the same tenant). */
int fx_ledger_charge(struct fx_ledger_handle *l, uint64_t bytes, int force);
/* Credits `bytes` back; never below zero (an attempt is logged). Takes no
 * lock: a process only ever writes its own slot. */
void fx_ledger_uncharge(struct fx_ledger_handle *l, uint64_t bytes);
/* The context overhead, charged once per process (then 0 until credited). */
int fx_ledger_charge_context(struct fx_ledger_handle *l, uint64_t bytes);
void fx_ledger_uncharge_context(struct fx_ledger_handle *l);

/* In a forked child, before anything else. */
void fx_ledger_after_fork(void);

/* For readers: calls fn for the ledger of GPU `uuid` of every tenant under
 * `root` (<root>/<tenant dir>/<uuid>.ledger), opened read-only and closed
 * after the call. What is not a ledger is skipped, and reported to `bad`
 * (may be NULL) with the error: tenants can write their directories. */
void fx_ledger_scan(const char *root, const char *uuid,
                    void (*fn)(const struct fx_ledger_handle *l, void *ctx),
                    void (*bad)(const char *msg, void *ctx), void *ctx);

#endif
