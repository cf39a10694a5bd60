/* SPDX-License-Identifier: Apache-2.0 */
/* The Queue custom resource (flexpu.io/v1alpha1, deploy/helm/flexpu/crds/)
 * as the engine's queues take it, and the status flexpu-scheduler writes
 * back. docs/KUBERNETES.md ("Queues and gangs") shows the object.
 *
 * Units: the CRD speaks Kubernetes quantities in the units pods request
 * (flexpu.io/gpu in GPUs, flexpu.io/gpu-cores in percent of one GPU,
 * flexpu.io/gpu-memory and memory in bytes, cpu in cores); the engine
 * (include/flexpu/queue.h) counts GPUs, milli-GPUs (gpu-cores x 10), MiB
 * and milli-cores. */
#ifndef FX_KUBE_QUEUE_SPEC_H
#define FX_KUBE_QUEUE_SPEC_H

#include <jansson.h>

#include "flexpu/error.h"
#include "flexpu/queue.h"

/* Reads a Queue object (JSON as the API server serves it). name and parent
 * point into the JSON (valid while it lives; flexpu_queues_set copies
 * them). Absent spec fields are defaults: no guarantee, no limit, weight 1.
 * Amounts round up to the engine's unit, except flexpu.io/gpu, which must
 * be whole. FLEXPU_EINVAL (or FLEXPU_ERANGE, FLEXPU_EPARSE from the
 * quantity parser) with a message naming the field and the value, such as
 * "field 'spec.limit[flexpu.io/gpu]': invalid value '2': must not be below
 * spec.guaranteed (4)"; *out is then unspecified. */
int fx_queue_parse(json_t *queue, struct flexpu_queue_info *out, struct flexpu_error *err);

/* The merge patch that sets a Queue's status from the engine's view of it:
 * {"status": {"guaranteed", "allocated", "pending", "fairShare": every
 * resource as a quantity in the CRD's units, "conditions": [...]}}. The
 * conditions are Accepted (True) and ParentFound (False for an orphan,
 * naming the parent). `now` is the RFC 3339 time a condition that changes
 * gets as lastTransitionTime; `queue` (may be NULL) is the object as last
 * seen, whose conditions keep their time when their status is unchanged.
 * A new reference, or NULL when out of memory. */
json_t *fx_queue_status_patch(const struct flexpu_queue_status *st, const char *now, json_t *queue);

/* The merge patch for a Queue whose spec flexpu-scheduler refused (it keeps
 * the last spec it accepted, or none): Accepted is False with reason
 * InvalidSpec and `why` as its message. Other status fields are left as
 * they are. A new reference, or NULL when out of memory. */
json_t *fx_queue_refused_patch(const char *why, const char *now, json_t *queue);

/* One amount in the CRD's units ("4", "250", "1500m", "80Gi"), for a
 * resource in the engine's units; negative amounts are written as 0. */
void fx_queue_quantity(enum flexpu_res r, int64_t amount, char *buf, size_t len);

#endif
