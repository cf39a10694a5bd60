/* SPDX-License-Identifier: Apache-2.0 */
/* What flexpu reads from and writes to Kubernetes objects: resource and
 * annotation names, a pod's GPU request, the allocation annotation the
 * scheduler records at binding, and the GPU inventory the node agent
 * publishes on its Node. One place, used by the scheduler, the node agent
 * and the tests (docs/KUBERNETES.md explains each name and unit). */
#ifndef FX_KUBE_CONTRACT_H
#define FX_KUBE_CONTRACT_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "flexpu/error.h"
#include "flexpu/queue.h"
#include "flexpu/sched.h"
#include "kube/borrow_rule.h"
#include "util/priority.h"

#define FX_RES_GPU        "flexpu.io/gpu"        /* number of GPUs (device plugin) */
#define FX_RES_GPU_CORES  "flexpu.io/gpu-cores"  /* percent of each GPU (node extended resource) */
#define FX_RES_GPU_MEMORY "flexpu.io/gpu-memory" /* bytes of each GPU (node extended resource) */
#define FX_ANN_CORES_LIMIT "flexpu.io/gpu-cores-limit"
#define FX_ANN_PRIORITY    "flexpu.io/priority"
#define FX_ANN_GPU_MODEL   "flexpu.io/gpu-model"
#define FX_ANN_ALLOCATION  "flexpu.io/allocation" /* written by the scheduler at binding */
#define FX_ANN_NODE_GPUS   "flexpu.io/gpus"       /* written by the node agent on its Node */
/* "true": the pod may borrow a GPU that is allocated but measured idle when
 * it fits nowhere else (docs/KUBERNETES.md, "Borrowing idle GPUs"). */
#define FX_ANN_OPPORTUNISTIC "flexpu.io/opportunistic"
/* "allowed": the pod may run on a node without a GPU of its own, its slice
 * on a GPU of another node reached over the network (docs/REMOTE.md,
 * "Kubernetes"); a local slice is preferred whenever one fits. */
#define FX_ANN_REMOTE "flexpu.io/remote"
#define FX_REMOTE_ALLOWED "allowed"
/* A rule for a remote pod (docs/REMOTE.md, "Never across a zone"): a node
 * label key, such as topology.kubernetes.io/zone, whose value the pod's
 * node and its slice's GPU node must share, neither without it. One key,
 * as a pod affinity's topologyKey: topology labels nest (a rack is in one
 * zone), so the narrowest place asked is the rule. Only with
 * flexpu.io/remote: "allowed". */
#define FX_ANN_REMOTE_TOPOLOGY_KEY "flexpu.io/remote-topology-key"
/* The label flexpu-scheduler puts on a pod with a remote slice before it
 * binds it: the GPU node serving the slice. The GPU node's agent watches
 * only the pods carrying its own name there (docs/REMOTE.md, "The GPU
 * node's watch"); it is a filter, never trusted: the allocation's
 * remote.node decides. The admission policy keeps everyone but the
 * scheduler from setting, changing or removing it. */
#define FX_LABEL_REMOTE_GPU_NODE "flexpu.io/remote-gpu-node"
/* A node name (a DNS subdomain): at most 253 characters. */
#define FX_NODE_NAME_MAX 254

/* Queues and gangs (docs/KUBERNETES.md, "Queues and gangs"): a pod joins a
 * queue with a label, and a gang (pod group) with a label naming the group
 * and an annotation giving its minimum count, carried by every member. */
#define FX_LABEL_QUEUE     "flexpu.io/queue"
#define FX_LABEL_POD_GROUP "flexpu.io/pod-group"
#define FX_ANN_MIN_MEMBERS "flexpu.io/min-members"
#define FX_MIN_MEMBERS_MAX 10000

/* A pod's queue and pod group. A pod without the queue label is in
 * FLEXPU_QUEUE_DEFAULT; without the group label it is no gang's member
 * (group empty, min_members 0). Group names are per namespace. */
struct fx_pod_group {
    char queue[64]; /* label values are at most 63 characters */
    char group[64];
    int min_members; /* 1..FX_MIN_MEMBERS_MAX for a member, else 0 */
    /* flexpu.io/opportunistic is "true": whether the group yields lent
     * capacity back (docs/KUBERNETES.md, "A borrower yields its node's CPU
     * and memory") is one answer for the whole group, so members agree. */
    bool opportunistic;
};

/* Reads the labels and the annotation. FLEXPU_EINVAL naming the field and
 * the value for a malformed label, a member without flexpu.io/min-members
 * (or with one that is not a whole number in 1..FX_MIN_MEMBERS_MAX), or the
 * annotation on a pod that names no group. */
int fx_pod_group_parse(json_t *pod, struct fx_pod_group *out, struct flexpu_error *err);

/* Whether pod `b` agrees with `a`, a member already seen of the same group:
 * the same min-members, the same queue and the same flexpu.io/opportunistic.
 * FLEXPU_EINVAL naming the group, both pods (namespace/name) and both values
 * when not. */
int fx_pod_group_agree(const struct fx_pod_group *a, const char *a_pod,
                       const struct fx_pod_group *b, const char *b_pod, struct flexpu_error *err);

/* flexpu.io/priority is bounded by the pod's spec.priority, which the API
 * server's Priority admission sets from the PriorityClass (users cannot
 * choose the number, and only cluster admins create PriorityClasses):
 * at least FX_PRIO_CLASS_HIGH allows high, below 0 forces low, anything
 * else (no class: 0) allows normal. Without the annotation a pod gets its
 * class's level; the annotation may only lower it. */
#define FX_PRIO_CLASS_HIGH 1000

/* The highest flexpu priority a pod's spec.priority allows. */
enum fx_priority fx_priority_allowed(int64_t class_priority);

/* The default memory quota of a slice (gpu: 1 with gpu-cores below 100 and
 * no gpu-memory) on a GPU of gpu_mem_bytes: its share of the GPU's memory
 * in proportion to its cores, rounded down to whole MiB. The scheduler
 * accounts it and records it in the allocation; the node agent checks it.
 * 0 for whole GPUs and for requests that name their memory. */
int64_t fx_default_slice_mem(int num_gpu, int cores, int64_t gpu_mem, int64_t gpu_mem_bytes);

#define FX_UUID_MAX 96
#define FX_MIB      (1024 * 1024)

/* A pod as flexpu sees it. */
struct fx_pod_spec {
    bool wants_gpu;      /* asks for any flexpu.io resource */
    int64_t cpu_milli;   /* effective request (containers, init containers, overhead) */
    int64_t mem_bytes;
    int num_gpu;
    int cores;           /* percent of each GPU, 1..100 (100: whole GPUs) */
    int64_t gpu_mem;     /* bytes per GPU; 0: not asked */
    int cores_limit;     /* cap in percent; 100: none */
    enum fx_priority priority;  /* what the pod gets: its annotation, capped by its class */
    enum fx_priority priority_asked; /* the annotation (or the class's level without one) */
    bool priority_capped;       /* the annotation asked above what spec.priority allows */
    int64_t class_priority;     /* spec.priority (0 when absent) */
    char model[256];     /* allowed models "T4|A100"; empty: any */
    bool opportunistic;  /* flexpu.io/opportunistic: "true" */
    bool remote_allowed; /* flexpu.io/remote: "allowed" */
};

/* Reads a pod (JSON as the API server serves it). Bad values give
 * FLEXPU_EINVAL with a message naming the field and the value, such as
 * "field 'containers[0].resources.limits[flexpu.io/gpu-cores]': invalid value
 * '130': must be between 1 and 100". */
int fx_pod_spec_parse(json_t *pod, struct fx_pod_spec *out, struct flexpu_error *err);

/* A pod's flexpu.io/remote-topology-key, read like its node filters only
 * where it is placed (the node agents never read it: a rule for where a
 * pod goes must not stop a running one's slice). *key: the value, inside
 * pod (NULL: no rule). FLEXPU_EINVAL naming the annotation and the value
 * for a value that is no topology key (kube/topology_key.h) or a rule on a
 * pod without flexpu.io/remote: "allowed" (spec, as fx_pod_spec_parse
 * read it); *key is then NULL. */
int fx_pod_remote_rule_parse(json_t *pod, const struct fx_pod_spec *spec, const char **key,
                             struct flexpu_error *err);

/* A pod's spec.schedulingGates (Kubernetes 1.26+, GA in 1.30): while the
 * list is not empty the pod must not be scheduled (the API server refuses
 * its binding: 409, "pod NAME has non-empty .spec.schedulingGates"), and
 * its gates can only be removed, never added, after creation. Returns how
 * many gates it has (0: absent, null or empty), their names written to
 * names as kube-scheduler shows them ("[a b]", cut to cap with "...]"), or
 * FLEXPU_EINVAL naming the field and the value when the field is not a
 * list or an entry has no string name; names is then "". */
int fx_pod_gates_parse(json_t *pod, char *names, size_t cap, struct flexpu_error *err);

/* The engine request for a pod: CPU milli, memory MiB (rounded up), GPU
 * share in milli. model_mask is left 0 (the caller resolves model names). */
void fx_pod_spec_req(const struct fx_pod_spec *s, struct flexpu_pod_req *out);

/* One GPU of a node's inventory. */
struct fx_gpu_inv {
    char uuid[FX_UUID_MAX];
    char model[FLEXPU_NAME_MAX];
    int64_t mem_bytes;
    int numa;
    int group;
    bool healthy;
    /* A MIG device's profile ("1g.10gb"; flexpu-node --sharing-mode mig),
     * empty for a whole GPU. A MIG device is allocated whole only. */
    char mig[24];
};

struct fx_node_inv {
    int ngpu;
    struct fx_gpu_inv gpus[FLEXPU_MAX_GPUS];
};

/* Parses the inventory annotation (a JSON array of {uuid, model, memory,
 * numa, group, health}, and "mig" for a MIG device). An absent annotation
 * is an empty inventory. */
int fx_node_inv_parse(const char *text, struct fx_node_inv *out, struct flexpu_error *err);
/* Serialises an inventory (the node agent's side); the caller frees with free(). */
char *fx_node_inv_format(const struct fx_node_inv *inv);

/* The usage feed (docs/KUBERNETES.md, "Usage feed"): what the node agent
 * measured on each GPU and slice, smoothed, on its Node as the annotation
 * flexpu.io/gpu-usage, version FX_USAGE_VERSION:
 *   {"v":1,"ts":UNIX_SECONDS,"gpus":[{"index":I,"busy":B,"mean":A,"memory":M,
 *     "slices":[{"pod":UID,"busy":B,"mean":A,"memory":M}...]}...]}
 * index is the GPU's position in flexpu.io/gpus; busy is in thousandths of
 * the GPU's time (0..1000), quick to rise and slow to fall (what protects
 * an owner); mean the same time over the last minute or so, evenly
 * weighted (what a borrower could have; optional: absent, it is busy);
 * memory in bytes; ts is the agent's wall clock when it wrote the value. A
 * GPU not listed has no measure. */
#define FX_ANN_NODE_USAGE "flexpu.io/gpu-usage"
#define FX_USAGE_VERSION 1
#define FX_USAGE_BUSY_MAX 1000
/* A GPU has at most this many slices in the feed: the runtime's tenant
 * records per GPU (runtime/state.h FX_MAX_TENANTS). */
#define FX_USAGE_SLICES_MAX 32
#define FX_USAGE_POD_MAX 64 /* a pod UID is 36 characters */

struct fx_usage_slice {
    char pod[FX_USAGE_POD_MAX]; /* the pod UID (the runtime's tenant name) */
    int busy;                   /* thousandths */
    int mean;                   /* thousandths */
    int64_t mem;                /* bytes */
};
struct fx_usage_gpu {
    bool known;  /* listed in the annotation */
    int busy;    /* thousandths */
    int mean;    /* thousandths */
    int64_t mem; /* bytes */
    int nslices;
    struct fx_usage_slice slices[FX_USAGE_SLICES_MAX];
};
struct fx_node_usage {
    int64_t ts; /* unix seconds, the agent's clock */
    struct fx_usage_gpu gpus[FLEXPU_MAX_GPUS]; /* by inventory index */
};

/* Parses flexpu.io/gpu-usage for a node whose inventory has `ngpu` GPUs
 * (an index at or beyond it is refused). NULL text: nothing known (ts 0).
 * FLEXPU_EINVAL naming the field and the value for malformed JSON, another
 * version, a busy outside 0..1000, a negative memory, an unknown or repeated
 * GPU index, or a slice without a pod UID; *out is then all unknown. */
int fx_node_usage_parse(const char *text, int ngpu, struct fx_node_usage *out,
                        struct flexpu_error *err);
/* Serialises (compact JSON; GPUs with known set, in index order); the caller
 * frees with free(). NULL when out of memory. */
char *fx_node_usage_format(const struct fx_node_usage *u, int ngpu);

/* The allocation annotation: the GPUs (by UUID and index on the node) and
 * the share of each. */
struct fx_alloc_gpu {
    char uuid[FX_UUID_MAX];
    int index;
    int cores;       /* percent */
    int64_t mem;     /* bytes; 0: no memory quota asked */
};
struct fx_allocation {
    int ngpu;
    struct fx_alloc_gpu gpus[FLEXPU_MAX_GPUS];
    /* "borrowed":true: an opportunistic pod placed on a GPU that others
     * hold, measured idle; its cores are not the GPU's to give (it runs at
     * priority low) and its memory is what no slice there reserved. */
    bool borrowed;
    /* "borrow_mem":"idle" (with borrowed): placed by flexpu-scheduler
     * --borrow-mem idle, a light borrower whose memory may also be what the
     * GPU's owners reserved and do not use (kube/borrow_rule.h). The node
     * agent checks it by that rule (fx_borrow_fits_idle), not by the
     * unreserved one: the scheduler's mode travels with each pod it placed,
     * in an annotation only it may write (deploy/admission.yaml). Absent
     * or "unreserved": false. */
    bool borrow_idle;
    /* "remote":{"node":NAME}: a remote slice (docs/REMOTE.md, "Kubernetes"):
     * the GPUs are on node NAME, not on the pod's node, which reaches them
     * through NAME's flexpu-remoted. Empty: the pod's own node. */
    char remote_node[FX_NODE_NAME_MAX];
};
int fx_allocation_parse(const char *text, struct fx_allocation *out, struct flexpu_error *err);
/* Whether an allocation is what flexpu-scheduler gives the pod `s`: as many
 * GPUs as it asks, on each its gpu-cores (or 100: a policy that rounds
 * slices up to whole GPUs), never 0 cores when it asks cores, and its
 * gpu-memory (or, for a slice that names none, fx_default_slice_mem of that
 * GPU, whose memory in bytes is gpu_mem_bytes[i] for entry i). The node
 * agent checks this before it writes a slice: the annotation alone is not
 * trusted. A borrowed allocation must also be for an opportunistic pod
 * asking exactly one GPU as a slice (gpu-cores below 100, its own cores, and
 * a memory quota). A remote allocation must be for a pod that allows it
 * (flexpu.io/remote: "allowed"), of one GPU, not borrowed: the GPU node
 * serves one slice per remote pod. FLEXPU_EINVAL with a message naming
 * the field, the value and what the request implies. */
int fx_allocation_check(const struct fx_pod_spec *s, const struct fx_allocation *a,
                        const int64_t *gpu_mem_bytes, struct flexpu_error *err);
char *fx_allocation_format(const struct fx_allocation *a);

/* What one allocation holds on a GPU, for fx_borrow_fits: its memory quota
 * (0: none, a whole GPU: all of it) and whether it is borrowed. */
struct fx_gpu_hold {
    int64_t mem;
    bool borrowed;
};
/* Whether a borrowed slice of `want` bytes fits on a GPU of gpu_mem bytes
 * beside the n allocations others hold there: the GPU's memory minus every
 * owner's quota (an owner without one takes it all) minus the other
 * borrowers' must be at least want. The node agent checks this before it
 * writes a borrowed slice. FLEXPU_EINVAL naming the GPU's figures when not. */
int fx_borrow_fits(int64_t gpu_mem, const struct fx_gpu_hold *holds, int n, int64_t want,
                   struct flexpu_error *err);
/* The same for a borrowed slice placed with --borrow-mem idle (the
 * allocation's borrow_idle), as the scheduler places it: the slice is light
 * (fx_borrow_light with its `cores`), no owner there is without a quota,
 * and want fits in fx_borrow_mem_room(gpu_mem, the owners' quotas,
 * owners_used, idle) less the other borrowers' quotas, owners_used being
 * the owners' measured memory (bytes). FLEXPU_EINVAL naming the figures. */
int fx_borrow_fits_idle(int64_t gpu_mem, const struct fx_gpu_hold *holds, int n, int64_t want,
                        int cores, int64_t owners_used, struct flexpu_error *err);

/* The devices of flexpu.io/gpu a node's kubelet offers
 * (status.allocatable): on a node without GPUs, the remote slots its agent
 * registered (flexpu-node --remote-slots, docs/REMOTE.md). 0 when absent. */
int fx_node_remote_slots(json_t *node, int *slots, struct flexpu_error *err);

/* Node CPU (milli) and memory (bytes) from status.allocatable. */
int fx_node_allocatable(json_t *node, int64_t *cpu_milli, int64_t *mem_bytes,
                        struct flexpu_error *err);

/* True when the node's Ready condition is there and not True: it takes no
 * pods at all (kube-scheduler relies on the not-ready taint the node
 * controller adds; flexpu reads the condition itself, so a cluster without
 * that controller is safe too). Taints and spec.unschedulable are node
 * filters (fx_node_attrs_parse), not this. */
bool fx_node_cordoned(json_t *node);

/* A node's labels and taints as the engine's node filters take them.
 * spec.unschedulable is the taint node.kubernetes.io/unschedulable:NoSchedule
 * (as kube-scheduler's NodeUnschedulable plugin treats it), so a cordoned
 * node takes only pods that tolerate that. Strings point into the JSON
 * (valid while it lives); `hash` changes when any of them does. A malformed
 * label or taint gives FLEXPU_EINVAL naming the field and the value. */
struct fx_node_attrs {
    struct flexpu_label *labels;
    int nlabels;
    struct flexpu_taint *taints;
    int ntaints;
    uint64_t hash;
};
#define FX_TAINT_UNSCHEDULABLE "node.kubernetes.io/unschedulable"
int fx_node_attrs_parse(json_t *node, struct fx_node_attrs *out, struct flexpu_error *err);
void fx_node_attrs_free(struct fx_node_attrs *a);

/* A pod's node constraints as an engine filter: spec.tolerations,
 * spec.nodeSelector and spec.affinity.nodeAffinity (required and preferred
 * terms). *out is NULL when the pod has none. Malformed input gives
 * FLEXPU_EINVAL naming the field and the value. Inter-pod affinity and
 * anti-affinity and spec.topologySpreadConstraints are read apart
 * (kube/pod_rules.h): they depend on other pods, which only the
 * scheduler's model knows. */
int fx_pod_filter_parse(json_t *pod, struct flexpu_filter **out, struct flexpu_error *err);

#endif
