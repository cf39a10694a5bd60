/* SPDX-License-Identifier: Apache-2.0 */
/* The kubelet device plugin for flexpu.io/gpu, and how it finds the pod an
 * allocation is for (docs/KUBERNETES.md, "Which pod is the kubelet
 * allocating for?").
 *
 * Each GPU is advertised as `slots` device IDs "<uuid>::<k>". The kubelet's
 * calls carry device IDs but no pod, so:
 *  - GetPreferredAllocation steers the kubelet to the GPUs flexpu-scheduler
 *    gave to a pod bound here that has no devices yet (oldest binding first,
 *    as the kubelet admits pods in that order);
 *  - Allocate hands out the device nodes of the GPUs behind the IDs (any pod
 *    waiting for exactly those GPUs is served by the same answer) and a
 *    per-allocation directory whose slice.conf fails closed for now;
 *  - PreStartContainer, which the kubelet calls before the container starts
 *    and after it has recorded the IDs, asks the kubelet's PodResources API
 *    which pod holds the IDs and writes that pod's slice.conf.
 * No step takes a node-wide lock across calls, so pods on one node start in
 * parallel; the only mutex guards the in-memory tables for microseconds. */
#ifndef FX_NODE_PLUGIN_H
#define FX_NODE_PLUGIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "flexpu/error.h"
#include "kube/contract.h"
#include "kube/kube.h"
#include "node/dirlimit.h"
#include "node/gpus.h"
#include "node/grpc.h"
#include "node/mps.h"
#include "node/reclaim_mem.h"

#define FX_DP_RESOURCE "flexpu.io/gpu"
#define FX_DP_VERSION "v1beta1"
#define FX_DP_SLOTS 16

/* Paths inside the container. */
#define FX_CTR_LIB      "/usr/lib/flexpu/libflexpu-cuda.so"
#define FX_CTR_PRELOAD  "/etc/ld.so.preload"
#define FX_CTR_CONF_DIR "/etc/flexpu"
#define FX_CTR_LEDGER   "/run/flexpu/ledger"
#define FX_CTR_ARB      "/run/flexpu/arb" /* the agent's arbiter pages, read-only (runtime/arbagent.h) */
#define FX_CTR_MPS      "/run/flexpu/mps" /* the slice's MPS pipe directory (mps mode) */

struct fx_plugin_config {
    const char *node_name;
    const char *root;         /* host directory with lib/, ld.so.preload, slices/, state/ */
    const char *podresources; /* the kubelet's PodResources socket */
    int slots;                /* device IDs per GPU; 0: FX_DP_SLOTS */
    int wait_ms;              /* how long a call waits for the pod to show up; 0: 10000 */
    enum fx_dir_limits dir_limits; /* size limit of each slice's ledger (dirlimit.h) */
    int cap_clock_mhz;        /* written into capped slices' slice.conf (slices.h); 0: none */
    /* mps: each slice gets its own MPS control daemon with its limits
     * (mps.h), started before PreStartContainer answers. */
    enum fx_sharing_mode sharing;
    const char *mps_control;  /* NULL: FX_MPS_CONTROL_DEFAULT */
    int mps_timeout_ms;       /* 0: FX_MPS_TIMEOUT_MS_DEFAULT */
    int mps_tick_ms;          /* how often daemons are checked; 0: 500 */
    /* The driver's MIG capability minors, which name the device nodes that
     * open a MIG device (/dev/nvidia-caps/nvidia-cap<minor>); NULL:
     * FX_MIG_MINORS_DEFAULT. Read at Allocate for MIG devices only. */
    const char *mig_minors;
    /* Where a killed borrower's MemoryReclaimed Event goes (kube.h); NULL:
     * none (tests). */
    struct kube_recorder *events;
};
#define FX_MIG_MINORS_DEFAULT "/proc/driver/nvidia-caps/mig-minors"

struct fx_plugin;

struct fx_plugin *fx_plugin_new(const struct fx_plugin_config *cfg, const struct fx_node_gpu *gpus,
                                int ngpu, struct flexpu_error *err);
void fx_plugin_free(struct fx_plugin *p);

/* Feeds the watch of the pods bound to this node. */
void fx_plugin_pod_event(struct fx_plugin *p, enum kube_event ev, json_t *pod);

/* New health of the GPUs (same order as at creation); true when the device
 * list changed. */
bool fx_plugin_set_health(struct fx_plugin *p, const struct fx_node_gpu *gpus, int ngpu);

/* The ListAndWatch message for the current devices (malloc'd). */
int fx_plugin_device_list(struct fx_plugin *p, uint8_t **msg, size_t *len);

/* The plugin's MPS daemons (mps mode; NULL otherwise), for tests. */
struct fx_mps *fx_plugin_mps(struct fx_plugin *p);

/* The plugin's gRPC methods (ctx: the plugin). */
extern const struct fx_grpc_method fx_plugin_methods[];
#define FX_DP_LIST_AND_WATCH "/v1beta1.DevicePlugin/ListAndWatch"

/* For reclaim_mem (ctx: the plugin): this node's allocations (every slice,
 * and borrowers bound here whose slice is not written yet), or -1 before
 * the first full list of the pods (until then no borrower is known); and a
 * borrower killed for an owner's memory, whose containers PreStartContainer
 * refuses from then on (kept across restarts: reclaimed.h), and whose pod
 * gets a MemoryReclaimed Event through cfg.events. */
int fx_plugin_allocations(void *ctx, struct fx_alloc_view *out, int max);
void fx_plugin_reclaimed(void *ctx, const struct fx_reclaim_note *note);

/* The MemoryReclaimed Event of a killed borrower (Warning, on its pod):
 * the node, the GPU, the owner's pod (or its slice, when no pod of this
 * node has it) and the bytes its allocation asked. False when the
 * borrower's pod is not known here (no event). */
bool fx_plugin_reclaim_event(struct fx_plugin *p, const struct fx_reclaim_note *note,
                             struct kube_pod_event *out);

/* The remote slices this node's agent serves on its GPUs (remote_agent.h):
 * pods bound to other nodes, so not among the pods the plugin sees, whose
 * reserved memory on a GPU of this node a borrower must leave alone as a
 * local owner's. holds(ctx, uuid, out, max) writes what each remote slice
 * on GPU uuid holds (at most max) and returns how many there are (more than
 * max when they do not fit), or -1 while they are not known (the remote
 * watch's first list has not come in). pod_name(ctx, uid, ...) names the
 * pod of the remote slice whose tenant is uid (its pod UID), 0 when known:
 * fx_plugin_pod_name (the metrics' labels) and a MemoryReclaimed Event
 * whose owner is a remote slice name it as they name a local pod. */
struct fx_plugin_remote {
    int (*holds)(void *ctx, const char *uuid, struct fx_gpu_hold *out, int max);
    int (*pod_name)(void *ctx, const char *uid, char *ns, size_t ns_len, char *name,
                    size_t name_len);
    void *ctx;
};
/* Sets them (before the pods are watched; NULL fields: none). Returns once
 * no call of the previous ones is under way, and none is made after: set
 * them to none before what their ctx points to is freed (main.c). */
void fx_plugin_set_remote(struct fx_plugin *p, const struct fx_plugin_remote *remote);

/* The namespace/name of the pod with UID uid (for metrics): a pod bound
 * here, else a remote slice's served from here (fx_plugin_remote); 0 when
 * known. */
int fx_plugin_pod_name(struct fx_plugin *p, const char *uid, char *ns, size_t ns_len, char *name,
                       size_t name_len);

/* The Register request for endpoint `endpoint` (a file name in the
 * device-plugin directory), packed (malloc'd). */
int fx_plugin_register_request(const char *endpoint, uint8_t **msg, size_t *len);

#endif
