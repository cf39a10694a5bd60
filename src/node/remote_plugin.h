/* SPDX-License-Identifier: Apache-2.0 */
/* The device plugin of a node without GPUs that runs remote pods
 * (flexpu-node --remote-slots N, docs/REMOTE.md "Kubernetes"): it offers N
 * devices of flexpu.io/gpu, "remote-<k>", so that the kubelet admits there
 * the pods flexpu-scheduler placed with a remote slice (the scheduler counts
 * the slots as capacity). What a container gets:
 *
 *  - Allocate (the pod not known yet): the client libraries
 *    (<root>/remote-lib, read-only, at FX_CTR_REMOTE_LIB) preloaded by
 *    LD_PRELOAD, and the slice's own read-only directory
 *    (<root>/rslices/<key>, at FX_CTR_REMOTE_DIR) where token and endpoint
 *    will be: FLEXPU_REMOTE_TOKEN_FILE and FLEXPU_REMOTE_ADDR_FILE name them.
 *  - PreStartContainer: the pod found (the kubelet's PodResources), its
 *    token derived from the cluster key (remote_key.h) written there.
 *  - When the GPU node's agent records the endpoint on the pod
 *    (flexpu.io/remote-endpoint), it is written there (fx_remote_plugin_tick);
 *    the client waits for it, bounded, at its first CUDA call. */
#ifndef FX_NODE_REMOTE_PLUGIN_H
#define FX_NODE_REMOTE_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "flexpu/error.h"
#include "kube/kube.h"
#include "node/grpc.h"
#include "node/remote_key.h"

#define FX_CTR_REMOTE_LIB "/usr/lib/flexpu/remote"
#define FX_CTR_REMOTE_DIR "/etc/flexpu/remote"
#define FX_REMOTE_SLOTS_MAX 256

struct fx_remote_plugin_config {
    const char *node_name;
    const char *root;         /* host directory: remote-lib/, rslices/ */
    const char *podresources; /* the kubelet's PodResources socket */
    int slots;                /* devices offered, 1..FX_REMOTE_SLOTS_MAX */
    int wait_ms;              /* how long PreStartContainer waits for the pod; 0: 10000 */
    const struct fx_remote_key *key;
};

struct fx_remote_plugin;

struct fx_remote_plugin *fx_remote_plugin_new(const struct fx_remote_plugin_config *cfg,
                                              struct flexpu_error *err);
void fx_remote_plugin_free(struct fx_remote_plugin *p);

/* Feeds the watch of the pods bound to this node (an endpoint it brings
 * is written at once). */
void fx_remote_plugin_pod_event(struct fx_remote_plugin *p, enum kube_event ev, json_t *pod);

/* Writes the endpoints the GPU nodes recorded since into the slices'
 * directories; forgets slices whose pod is gone. */
void fx_remote_plugin_tick(struct fx_remote_plugin *p);

/* The ListAndWatch message (malloc'd). */
int fx_remote_plugin_device_list(struct fx_remote_plugin *p, uint8_t **msg, size_t *len);

/* Installs the client's libcudart.so.12 and libcublas.so.12 from `from`
 * into <root>/remote-lib (each replaced atomically). */
int fx_remote_client_install(const char *root, const char *from, struct flexpu_error *err);

extern const struct fx_grpc_method fx_remote_plugin_methods[];

#endif
