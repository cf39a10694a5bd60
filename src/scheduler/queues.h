/* SPDX-License-Identifier: Apache-2.0 */
/* The Queue objects between the API server and the model: their specs go
 * into the model's queues (fx_model_queue_set), and the model's view of
 * each (allocated, pending, fair share) goes back as the object's status,
 * written only when it changed. No I/O: the daemon passes the watch's events
 * in and sends the patches it is given. */
#ifndef FX_SCHED_QUEUES_H
#define FX_SCHED_QUEUES_H

#include <jansson.h>

#include "kube/kube.h"
#include "scheduler/model.h"

struct fx_queue_sync;

struct fx_queue_sync *fx_queue_sync_new(void);
void fx_queue_sync_free(struct fx_queue_sync *s);

/* A watch event on the Queue collection. A spec the model refuses (a
 * malformed quantity the schema let through, a parent cycle) leaves the
 * queue as it last was accepted, and its status says why. After a relist,
 * queues not seen in it are removed. */
void fx_queue_sync_event(struct fx_queue_sync *s, struct fx_model *m, enum kube_event ev,
                         json_t *obj);

/* Calls send(name, patch) for each queue whose status is not what was last
 * written (patch borrowed); a send returning 0 records it as written, so
 * a failed write is tried again next time. `now` (RFC 3339) stamps a
 * condition that changes. Returns how many were sent successfully. */
typedef int (*fx_queue_send_fn)(const char *name, json_t *patch, void *ctx);
int fx_queue_sync_publish(struct fx_queue_sync *s, struct fx_model *m, const char *now,
                          fx_queue_send_fn send, void *ctx);

/* Queue objects known (those with a spec accepted, and refused ones). */
int fx_queue_sync_count(const struct fx_queue_sync *s);

#endif
