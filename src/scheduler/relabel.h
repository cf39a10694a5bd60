/* SPDX-License-Identifier: Apache-2.0 */
/* Remote pods bound before flexpu-scheduler labelled them (docs/REMOTE.md,
 * "The GPU node's watch"): a bound pod whose allocation names a GPU node in
 * remote.node but whose FX_LABEL_REMOTE_GPU_NODE is missing or another is
 * labelled by the leader, so the GPU node's agent, which watches only the
 * pods with its label, sees it; a bound pod without a remote slice that
 * carries the label (left by a remote attempt whose Binding failed) loses
 * it. Fed from the scheduler's pod watch; the writes are merge patches with
 * the pod's UID as precondition (kube_label_pod). */
#ifndef FX_SCHED_RELABEL_H
#define FX_SCHED_RELABEL_H

#include <stdint.h>

#include <jansson.h>

#include "kube/kube.h"

/* A failed write is tried again this much later. */
#define FX_RELABEL_RETRY_MS 5000

struct fx_relabel;

struct fx_relabel *fx_relabel_new(void);
void fx_relabel_free(struct fx_relabel *r);

/* A pod watch event (obj borrowed): a pod to label or unlabel is
 * remembered (its namespace, name, UID and GPU node), one labelled right,
 * deleted, ended or being deleted is forgotten. */
void fx_relabel_pod_event(struct fx_relabel *r, enum kube_event ev, json_t *obj);

/* Labels up to `max` remembered pods due by now_ms (monotonic): done or
 * gone (FLEXPU_ENOENT) forgets a pod, another failure retries it after
 * FX_RELABEL_RETRY_MS. Returns the writes sent. Only the leader calls it. */
int fx_relabel_round(struct fx_relabel *r, struct kube_client *c, int max, int64_t now_ms);

/* Pods remembered (to label). */
int fx_relabel_pending(const struct fx_relabel *r);

#endif
