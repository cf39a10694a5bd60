/* SPDX-License-Identifier: Apache-2.0 */
/* The scheduler's writes to the API server: deciding and binding while it
 * leads, the events users read, and reading back pods whose bind's outcome
 * is unknown. Apart from main.c so tests drive it against a local HTTP
 * server. */
#ifndef FX_SCHED_BIND_H
#define FX_SCHED_BIND_H

#include <stdbool.h>
#include <stdint.h>

#include "kube/kube.h"
#include "scheduler/model.h"

struct fx_binder {
    struct kube_client *c;
    struct kube_lease *lease; /* NULL: no leader election, always leading */
    const char *identity;     /* the events' reportingInstance */
    long binds, bind_errors;
};

/* Whether this instance may bind now: it leads, and its lease stays valid
 * (kube_lease_valid_for) for the whole timeout of the bind it would send,
 * so a bind never lands after another instance could have taken over. */
bool fx_binder_leading(const struct fx_binder *b);

/* Decides and binds (or reports) up to `max` pods, checking the lease
 * before each decision and stopping when it no longer holds: a pod is
 * assumed only when its bind goes out at once. Returns the attempts made. */
int fx_bind_round(struct fx_model *m, struct fx_binder *b, int max, volatile int *stop);

/* Reads back (GET) each pod whose bind's outcome has stayed unknown for
 * FX_BIND_SETTLE_MS by now_ms (monotonic) and settles it in the model
 * (fx_model_bind_settle). A read is not a write, so followers settle too;
 * the round stops at the first failed read (the server is away). */
void fx_settle_round(struct fx_model *m, struct fx_binder *b, int64_t now_ms);

#endif
