/* SPDX-License-Identifier: Apache-2.0 */
/* Borrowed memory given back before an owner is refused (issue 16;
 * docs/KUBERNETES.md, "Borrowing reserved memory").
 *
 * A borrower may hold memory an owner reserved but did not use. When the
 * owner then asks for it, within its own quota, the driver refuses the
 * allocation for lack of device memory. The owner's process then records a
 * *want* in its own ledger directory (only its tenant writes there), waits
 * a bounded time while the node agent kills the borrowers on that GPU, and
 * tries again; only past the bound does the application see the
 * out-of-memory error.
 *
 * Who waits: only a process whose configuration names the directory of
 * borrowed-GPU markers (the node agent writes it into owners' slices, never
 * into a borrower's), only while that directory marks its GPU (the agent
 * marks a GPU before a borrower there may start and clears the mark once
 * the borrowers' processes are gone), and never once the process is
 * exiting. So an owner with no borrower on its GPU gets the driver's error
 * at once, as does a borrower. */
#ifndef FX_RUNTIME_OOM_WAIT_H
#define FX_RUNTIME_OOM_WAIT_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/config.h"
#include "runtime/cuda_abi.h"
#include "runtime/ledger.h"

#define FX_WANT_SUFFIX ".want"
/* How often a waiting allocation is tried again. */
#define FX_OOM_RETRY_MS 10
/* A waiting process touches its want this often; the agent takes a want
 * older than FX_WANT_FRESH_S for one left by a process that died waiting. */
#define FX_WANT_REFRESH_MS 1000
/* Once the GPU's mark is gone (no borrower left alive there), tries go on
 * this long at most: the driver frees a dead process's memory soon after. */
#define FX_OOM_GONE_GRACE_MS 1000
#define FX_WANT_FRESH_S 5

/* <dir>/<uuid>: present while GPU uuid has borrowers. -1 when it does not
 * fit or the uuid is not a plain file name. */
int fx_borrowed_marker_path(const char *dir, const char *uuid, char *buf, size_t len);
/* <ledger_dir>/<uuid>.<slot>.want: a waiting process's want. */
int fx_want_path(const char *ledger_dir, const char *uuid, int slot, char *buf, size_t len);

/* For the node agent: 1 when the ledger directory `ledger_dir` (a tenant's:
 * nothing in it is trusted) holds a want for GPU uuid that is a regular
 * file modified at most max_age_s before now_s (a wait is bounded, so an
 * older one was left by a process that died waiting), else 0. */
int fx_want_pending(const char *ledger_dir, const char *uuid, int64_t now_s, int max_age_s);
/* The same wants' ledger slots (their processes' places in the tenant's
 * ledger, for the agent to check they are alive): how many, at most max. */
int fx_want_slots(const char *ledger_dir, const char *uuid, int64_t now_s, int max_age_s,
                  int *slots, int max);

/* For the node agent: the bytes the want of `slot` asks (its content, for
 * people and the agent's event), at most max; 0 when unreadable. The file
 * is the tenant's: read as untrusted, never through a link. */
uint64_t fx_want_bytes(const char *ledger_dir, const char *uuid, int slot, uint64_t max);

/* 1 when an out-of-memory answer to this process's allocation on the GPU
 * of `led` would now wait (the conditions above), else 0. For a caller that
 * must prepare the wait (hooks_mem.c: a pool allocation's admission); the
 * mark may go meanwhile, so fx_oom_retry may still return at once. */
int fx_oom_may_wait(const struct fx_slice_config *cfg, const struct fx_ledger_handle *led);

/* Tries the allocation again: `again(args, out)` is the driver call. */
typedef CUresult (*fx_retry_fn)(const void *args, void *out);

/* The allocation's first answer was r. When r is CUDA_ERROR_OUT_OF_MEMORY
 * and this process may wait (above), writes the want, calls `again` every
 * FX_OOM_RETRY_MS until it answers otherwise, cfg->oom_wait_ms pass, the
 * GPU's mark has been gone FX_OOM_GONE_GRACE_MS, or the process starts
 * exiting, removes
 * the want and returns the last answer. Otherwise returns r at once.
 * `led` is this process's ledger of the GPU (its uuid and slot). */
CUresult fx_oom_retry(const struct fx_slice_config *cfg, const struct fx_ledger_handle *led,
                      uint64_t bytes, CUresult r, fx_retry_fn again, const void *args, void *out);

#endif
