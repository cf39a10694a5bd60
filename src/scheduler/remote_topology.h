/* SPDX-License-Identifier: Apache-2.0 */
/* Where a remote pod runs relative to its GPU (docs/REMOTE.md, "Near its
 * GPU"): the node label keys (--remote-topology-keys) whose values a node
 * without GPUs must share with the GPU node to count as near it, most
 * specific first. The model compares the labels the engine keeps for its
 * node filters (flexpu_engine_node_label); this file holds the keys, their
 * default and the list's parse (each key checked by kube/topology_key.h,
 * as a pod's flexpu.io/remote-topology-key is). */
#ifndef FX_SCHED_REMOTE_TOPOLOGY_H
#define FX_SCHED_REMOTE_TOPOLOGY_H

#include "flexpu/error.h"
#include "kube/topology_key.h"

/* A rack (the label flexpu's gangs use too, include/flexpu/gang.h), a zone,
 * a region: the last two are Kubernetes' well-known labels, set by cloud
 * providers on every node. */
#define FX_REMOTE_TOPOLOGY_KEYS_DEFAULT \
    "topology.kubernetes.io/rack,topology.kubernetes.io/zone,topology.kubernetes.io/region"
#define FX_REMOTE_TOPOLOGY_KEYS_MAX 8

struct fx_remote_topology {
    int n; /* 0: no preference among nodes without GPUs */
    char key[FX_REMOTE_TOPOLOGY_KEYS_MAX][FX_LABEL_KEY_MAX + 1];
};

/* Reads "key,key,..." (text "" or NULL: no keys) into *out. FLEXPU_EINVAL
 * names `field` and the key that is not a label key Kubernetes accepts
 * (an optional DNS-subdomain prefix and '/', then 1-63 letters, digits,
 * '-', '_' or '.' starting and ending with a letter or digit), an empty
 * one, one given twice, kubernetes.io/hostname (no two nodes share it), or
 * more than FX_REMOTE_TOPOLOGY_KEYS_MAX keys; *out is then unchanged. */
int fx_remote_topology_parse(const char *field, const char *text, struct fx_remote_topology *out,
                             struct flexpu_error *err);

#endif
