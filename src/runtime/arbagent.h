/* SPDX-License-Identifier: Apache-2.0 */
/* Compute arbitration run by the node agent (trusted) instead of by the
 * tenants (docs/SECURITY.md, docs/RUNTIME.md "Who decides").
 *
 * Under <root>:
 *  - arb/<uuid>.state: one page per GPU (the layout of state.h's shared
 *    state, its procs[] unused), written by the agent alone and mounted
 *    read-only into the containers: who holds the GPU, the slice, the futex
 *    word waiters sleep on, and per tenant its policy (share, cap, priority,
 *    from the slice.conf the agent wrote) and what the arbiter keeps (virtual
 *    time, cap bucket, GPU time).
 *  - ledger/<key>/<uuid>.req: each slice's request file (state.h's struct
 *    fx_arb_req), which only that slice's containers can write: per process,
 *    what it publishes for the arbiter (in flight, waiting, launches,
 *    heartbeat). The agent reads it with pread (never mapped: a truncation
 *    must not fault the agent), bounds every field (arbiter.c), and nothing
 *    in it reaches another tenant's record.
 *  - slices/<key>/slice.conf: the policy, as the agent checked it.
 *
 * The decision is arbiter.c's (fx_arb_decide), the same code the tenants run
 * on the shared state outside Kubernetes. What differs: the agent measures a
 * slice's GPU time itself (from the hand-over to when it saw the holder's
 * last work), so a tenant cannot under-report; and a round runs every
 * FX_ARB_AGENT_POLL_NS while any GPU is contended (FX_ARB_AGENT_IDLE_NS
 * otherwise), so nothing a tenant writes makes a round wait for it. */
#ifndef FX_RUNTIME_ARBAGENT_H
#define FX_RUNTIME_ARBAGENT_H

#include <stdint.h>

#include "flexpu/error.h"

#define FX_ARB_AGENT_POLL_NS (200 * 1000ull)
#define FX_ARB_AGENT_IDLE_NS (2 * 1000 * 1000ull)
/* A slice's key (its directory's name under <root>/ledger and
 * <root>/slices) and its NUL: the agent passes longer names by. */
#define FX_ARB_AGENT_KEY_MAX 64
/* New slices, request files and policies are looked for this often. */
#define FX_ARB_AGENT_SCAN_NS (20 * 1000 * 1000ull)

struct fx_arb_agent;

/* An agent over `root` (copied); creates <root>/arb (mode 0755) if needed.
 * Errors name the path. The caller owns *out (fx_arb_agent_free). */
int fx_arb_agent_new(struct fx_arb_agent **out, const char *root, struct flexpu_error *err);
void fx_arb_agent_free(struct fx_arb_agent *a);

/* Makes the page of GPU `uuid` now. Once any GPU was added so, request
 * files of other GPUs are ignored (a tenant can name a file as it likes: it
 * must not fill the agent's table with GPUs that do not exist); with none
 * added, a page is made for each GPU a request file names (tests). 0, or
 * FLEXPU_EINVAL for a name that is not a UUID, FLEXPU_EBUSY when full. */
int fx_arb_agent_add_gpu(struct fx_arb_agent *a, const char *uuid, struct flexpu_error *err);

/* The SM clock of GPU `uuid` in MHz into *mhz: 0, or non-zero when it
 * cannot be read. */
typedef int (*fx_arb_clock_fn)(void *ctx, const char *uuid, uint32_t *mhz);

/* A cap that refers to a clock (a slice.conf's cap_clock_mhz) is charged
 * at the SM clock of its slices, as outside Kubernetes (arbiter.c); under
 * the agent the clock is read by the agent, never taken from a tenant:
 * `fn` is called on the agent's thread, at most every FX_ARB_AGENT_CLOCK_NS
 * per GPU and only while a tenant with such a cap holds the GPU. Without
 * one (NULL, the default), such caps are charged in GPU time only. Set
 * before the first round. */
#define FX_ARB_AGENT_CLOCK_NS (2 * 1000 * 1000ull)
void fx_arb_agent_set_clock(struct fx_arb_agent *a, fx_arb_clock_fn fn, void *ctx);

/* One round at `now` (CLOCK_MONOTONIC): rescans when due, reads every
 * request file, decides for every GPU. Returns how long until the next
 * round is due. */
uint64_t fx_arb_agent_step(struct fx_arb_agent *a, uint64_t now);

/* Rounds until *stop becomes non-zero (read atomically). For a thread. */
void fx_arb_agent_run(struct fx_arb_agent *a, const int *stop);

/* Rounds run so far (for tests and metrics). */
uint64_t fx_arb_agent_rounds(const struct fx_arb_agent *a);

#endif
