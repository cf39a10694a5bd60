/* SPDX-License-Identifier: Apache-2.0 */
/* The flexpu placement engine: a pure library (no I/O, no clock, no globals)
 * that keeps a model of a cluster's nodes and GPUs and decides where each GPU
 * request goes. The simulator and the scheduler daemon are its two callers:
 * time, randomness and cluster changes are always arguments.
 *
 * Model. A node has CPU (milli-cores), memory (MiB), labels and up to
 * FLEXPU_MAX_GPUS GPUs. A GPU has a model name, memory (MiB), 1000 compute
 * milli-units, a NUMA node and a topology group (GPUs of one NVLink island
 * share a group). A pod asks for CPU, memory and `num_gpu` GPUs with
 * `gpu_milli` compute each: a share of one GPU when below 1000, whole GPUs
 * otherwise. Multi-GPU pods always take distinct GPUs of one node.
 *
 * Cost. Nodes in identical states form one class, kept in a hash table;
 * deciding visits each class that can hold the request once (not each node),
 * and assigning or releasing moves one node between classes in O(1). */
#ifndef FLEXPU_SCHED_H
#define FLEXPU_SCHED_H

#include <stdbool.h>
#include <stdint.h>

#include "flexpu/error.h"
#include "flexpu/rng.h"

#define FLEXPU_MAX_GPUS   16
#define FLEXPU_GPU_MILLI  1000
#define FLEXPU_MAX_MODELS 64
#define FLEXPU_NAME_MAX   64

enum flexpu_qos {
    FLEXPU_QOS_NONE = 0,
    FLEXPU_QOS_LS,         /* latency-sensitive service */
    FLEXPU_QOS_BE,         /* best-effort batch */
    FLEXPU_QOS_BURSTABLE,
    FLEXPU_QOS_GUARANTEED,
};

struct flexpu_gpu_info {
    const char *model;  /* e.g. "T4", "A100"; required */
    int64_t mem_mib;    /* 0: unknown, GPU memory is then not constrained */
    int numa;           /* NUMA node, -1 unknown */
    int topo_group;     /* NVLink/PCIe-switch island; GPUs with equal values are close */
};

/* Node labels and taints, as Kubernetes has them. A toleration's effect
 * may be FLEXPU_TAINT_ANY (every effect); a taint's may not. */
enum flexpu_taint_effect {
    FLEXPU_TAINT_ANY = 0,
    FLEXPU_TAINT_NO_SCHEDULE,
    FLEXPU_TAINT_PREFER_NO_SCHEDULE,
    FLEXPU_TAINT_NO_EXECUTE,
};

struct flexpu_label {
    const char *key, *value;
};

struct flexpu_taint {
    const char *key, *value; /* value may be NULL (empty) */
    enum flexpu_taint_effect effect;
};

struct flexpu_node_info {
    const char *name;
    int64_t cpu_milli;
    int64_t mem_mib;
    const char *labels; /* "k=v,k=v" (copied), may be NULL */
    int ngpu;
    struct flexpu_gpu_info gpus[FLEXPU_MAX_GPUS];
    /* More labels as pairs, and the node's taints (both copied; nodes with
     * equal sets share one copy). See "Node filters" below. */
    const struct flexpu_label *label_list;
    int nlabel_list;
    const struct flexpu_taint *taints;
    int ntaints;
};

/* A request. Callers fill it in; model_mask comes from flexpu_engine_models(). */
struct flexpu_pod_req {
    int64_t cpu_milli;
    int64_t mem_mib;
    int num_gpu;        /* 0..FLEXPU_MAX_GPUS */
    int gpu_milli;      /* per GPU, 1..1000 when num_gpu > 0 */
    int64_t gpu_mem_mib; /* per GPU; 0: none asked */
    uint64_t model_mask; /* allowed GPU models; 0: any */
    int priority;
    enum flexpu_qos qos;
};

/* Where a request goes: a node and, for each of its GPUs, the index on the
 * node and the share granted. Decide and place define every field on every
 * return: entries past ngpu are "none" (gpu -1, milli 0, gpu_mem_mib 0),
 * and a request not placed (any error) gets node -1, ngpu 0 and every
 * entry "none", so a copy of the whole struct holds no stale values. */
struct flexpu_placement {
    int node;
    int ngpu;
    int gpu[FLEXPU_MAX_GPUS];
    int milli[FLEXPU_MAX_GPUS];
    int64_t gpu_mem_mib[FLEXPU_MAX_GPUS];
};

/* Why a request fits nowhere: counts of nodes by the first check they fail,
 * and a one-line message such as
 * "0/1213 nodes fit: 3 insufficient cpu, 1210 no 2 free T4 GPUs". */
enum flexpu_reject {
    FLEXPU_REJECT_MODEL = 0, /* no GPU of an allowed model */
    FLEXPU_REJECT_GPU_COUNT, /* node has fewer GPUs than asked */
    FLEXPU_REJECT_CPU,
    FLEXPU_REJECT_MEMORY,
    FLEXPU_REJECT_GPU_FREE,  /* not enough GPUs with the share free */
    FLEXPU_REJECT_GPU_MEMORY,
    FLEXPU_REJECT_TAINT,     /* a NoSchedule/NoExecute taint the pod does not tolerate */
    FLEXPU_REJECT_AFFINITY,  /* the pod's node selector or required node affinity */
    FLEXPU_REJECT_COUNT_
};

struct flexpu_noplace {
    int nodes;
    int rejected[FLEXPU_REJECT_COUNT_];
    char text[320];
};

/* Cluster-wide totals, maintained incrementally (O(1) to read). */
struct flexpu_stats {
    int nodes;
    int gpus;
    int64_t gpu_milli_total;
    int64_t gpu_milli_used;
    int64_t cpu_milli_total, cpu_milli_used;
    int64_t mem_mib_total, mem_mib_used;
    int gpus_idle;        /* GPUs with nothing on them */
    int gpus_shared;      /* GPUs holding a share below 1000 */
    int64_t allocations;  /* live allocations */
    double frag_milli;    /* FGD fragmentation against the workload, in GPU milli */
    int classes;          /* distinct node states (the decision cost) */
};

struct flexpu_engine;

/* Policies, selectable by name: "whole", "random", "bestfit", "dotprod",
 * "packing", "fgd", "flexpu". names[i] for i < flexpu_policy_count(). */
int flexpu_policy_count(void);
const char *flexpu_policy_name(int i);
const char *flexpu_policy_help(int i);

/* A new empty engine using policy "flexpu". NULL when out of memory. */
struct flexpu_engine *flexpu_engine_new(void);
void flexpu_engine_free(struct flexpu_engine *e);

/* Selects the policy by name; unknown names give FLEXPU_EINVAL naming the
 * known ones, and leave the policy unchanged. */
int flexpu_engine_set_policy(struct flexpu_engine *e, const char *name, struct flexpu_error *err);
const char *flexpu_engine_policy(const struct flexpu_engine *e);

/* Turns "T4|A100" (any of | , space separated; empty: any) into a model mask,
 * registering names not seen yet so a request may name a model that no node
 * has (it then fits nowhere, with reason "gpu model"). */
int flexpu_engine_models(struct flexpu_engine *e, const char *spec, uint64_t *mask,
                         struct flexpu_error *err);

/* The workload the fragmentation-aware policies defend: typical request
 * shapes and their popularity (any positive weights; normalised here). The
 * engine copies them. Replaces the previous workload. */
int flexpu_engine_set_workload(struct flexpu_engine *e, const struct flexpu_pod_req *shapes,
                               const double *weights, int n, struct flexpu_error *err);

/* Adds a node; *id receives its id (ids are dense, never reused while the
 * engine lives). Errors name the field: GPU count, empty model, negatives. */
int flexpu_engine_add_node(struct flexpu_engine *e, const struct flexpu_node_info *info, int *id,
                           struct flexpu_error *err);

/* Removes a node and releases every allocation on it; *released (may be
 * NULL) receives how many. */
int flexpu_engine_remove_node(struct flexpu_engine *e, int id, int *released,
                              struct flexpu_error *err);

int flexpu_engine_node_count(const struct flexpu_engine *e);
int flexpu_engine_node_find(const struct flexpu_engine *e, const char *name);
const char *flexpu_engine_node_name(const struct flexpu_engine *e, int id);

/* Checks a request for impossible values (negative CPU, share above 1000,
 * too many GPUs...): FLEXPU_EINVAL naming the field, or 0. */
int flexpu_req_validate(const struct flexpu_pod_req *req, struct flexpu_error *err);

/* Decides where req would go under the current policy, without changing the
 * engine. Returns 0 and fills *out, FLEXPU_ENOFIT and fills *why, or
 * FLEXPU_EINVAL for a malformed request or a NULL out (message in
 * why->text); on error *out is the placement "none" (above). rng is used
 * by the random policy and to break ties between equal nodes. */
int flexpu_engine_decide(struct flexpu_engine *e, const struct flexpu_pod_req *req,
                         struct flexpu_rng *rng, struct flexpu_placement *out,
                         struct flexpu_noplace *why);

/* Commits a placement (from decide, or rebuilt from a pod's annotation after
 * a restart). Checks it fits exactly — no GPU's compute or memory and no
 * node's CPU or memory may be over-committed — and leaves the engine
 * unchanged on error (FLEXPU_ENOFIT / FLEXPU_EINVAL / FLEXPU_ENOENT).
 * *alloc_id receives a handle for release. */
int flexpu_engine_assign(struct flexpu_engine *e, const struct flexpu_pod_req *req,
                         const struct flexpu_placement *p, int64_t *alloc_id,
                         struct flexpu_error *err);

/* What allocation alloc_id books: its request and placement as assign
 * took them (the node an id it had then). FLEXPU_ENOENT for an id that is
 * not live (*req and *p then unchanged). */
int flexpu_engine_alloc_get(const struct flexpu_engine *e, int64_t alloc_id,
                            struct flexpu_pod_req *req, struct flexpu_placement *p,
                            struct flexpu_error *err);

/* Releases an allocation, restoring exactly what assign took. */
int flexpu_engine_release(struct flexpu_engine *e, int64_t alloc_id, struct flexpu_error *err);

/* Decide + assign in one call. */
int flexpu_engine_place(struct flexpu_engine *e, const struct flexpu_pod_req *req,
                        struct flexpu_rng *rng, struct flexpu_placement *out, int64_t *alloc_id,
                        struct flexpu_noplace *why);

/* ---- Node filters: kube-scheduler's TaintToleration and NodeAffinity ----
 *
 * A pod's constraints on nodes, evaluated like kube-scheduler's plugins of
 * those names (docs/SCHEDULING.md, "Node filters"):
 *  - a node with a NoSchedule or NoExecute taint that no toleration of the
 *    pod tolerates is not feasible; PreferNoSchedule taints it does not
 *    tolerate lower the node's preference;
 *  - every nodeSelector pair must be a label of the node;
 *  - of the required affinity terms at least one must match (a term matches
 *    when all its requirements do; a term without any matches nothing);
 *  - the preferred terms a node matches add their weights (1-100) to its
 *    preference.
 * Among feasible nodes the most preferred win (kube-scheduler's scores of
 * the two plugins, normalised over the feasible nodes and weighed 2 and 3 as
 * in its default configuration); the policy's cost decides among nodes of
 * equal preference, and the tie rule among nodes of equal cost. */
enum flexpu_toleration_op {
    FLEXPU_TOL_EQUAL = 0,  /* key and value equal ("" operator is Equal) */
    FLEXPU_TOL_EXISTS,     /* any value; with an empty key, every taint */
    FLEXPU_TOL_LT,         /* the taint's value, an integer, below the toleration's */
    FLEXPU_TOL_GT,         /* ... above it */
};

enum flexpu_match_op {
    FLEXPU_MATCH_IN = 0,
    FLEXPU_MATCH_NOT_IN,   /* also true when the label is absent */
    FLEXPU_MATCH_EXISTS,
    FLEXPU_MATCH_DOES_NOT_EXIST,
    FLEXPU_MATCH_GT,       /* the label's value, an integer, above the one value */
    FLEXPU_MATCH_LT,
};

struct flexpu_filter;

/* A new empty filter (every node passes, taints still count). NULL when
 * out of memory. Filters copy every string they are given. */
struct flexpu_filter *flexpu_filter_new(void);
void flexpu_filter_free(struct flexpu_filter *f);

/* Each adder returns 0, FLEXPU_EINVAL naming the value and the rule it
 * breaks (an empty key with Equal, a value with Exists, a non-integer for
 * Lt/Gt, a weight outside 1-100...), or FLEXPU_ENOMEM; the filter is then
 * as it was. */
int flexpu_filter_add_toleration(struct flexpu_filter *f, const char *key,
                                 enum flexpu_toleration_op op, const char *value,
                                 enum flexpu_taint_effect effect, struct flexpu_error *err);
/* A nodeSelector pair: the node must have label key = value. */
int flexpu_filter_add_selector(struct flexpu_filter *f, const char *key, const char *value,
                               struct flexpu_error *err);
/* Starts an affinity term: weight 0 for a required term, 1-100 for a
 * preferred one. Requirements added next belong to it. */
int flexpu_filter_add_term(struct flexpu_filter *f, int weight, struct flexpu_error *err);
/* A requirement of the last term, on a label (field false) or on a node
 * field (field true: only "metadata.name", with In or NotIn and one value).
 * In/NotIn take one or more values, Exists/DoesNotExist none, Gt/Lt one
 * integer. */
int flexpu_filter_add_match(struct flexpu_filter *f, bool field, const char *key,
                            enum flexpu_match_op op, const char *const *values, int nvalues,
                            struct flexpu_error *err);

/* A requirement every feasible node must meet, whatever its affinity
 * terms (ANDed with them, as nodeSelector is): on a label, with the
 * operators and values of flexpu_filter_add_match. For rules compiled from
 * other pods (inter-pod affinity, anti-affinity, topology spread). */
int flexpu_filter_add_required(struct flexpu_filter *f, const char *key, enum flexpu_match_op op,
                               const char *const *values, int nvalues, struct flexpu_error *err);

/* kube-scheduler's score plugins whose scores a filter's scored terms
 * carry, besides NodeAffinity's preferred terms. */
enum flexpu_score {
    FLEXPU_SCORE_POD_AFFINITY = 1, /* InterPodAffinity: min-max normalised, weight 2 */
    FLEXPU_SCORE_SPREAD,           /* PodTopologySpread: weights in thousandths, fewer is better */
};

/* Starts a term whose weight (any sign) adds to the node's raw score for
 * plugin `score` when its requirements (added next, as for
 * flexpu_filter_add_match) hold. For scores compiled from other pods per
 * decision: a topology domain's weight is a term key In [values]. */
int flexpu_filter_add_scored(struct flexpu_filter *f, enum flexpu_score score, int weight,
                             struct flexpu_error *err);

/* A copy of src (NULL: a new empty filter), or NULL when out of memory. */
struct flexpu_filter *flexpu_filter_copy(const struct flexpu_filter *src);

/* A digest of everything f holds (its tolerations, node selector and
 * affinity terms, by content and in order): two filters built from equal
 * pod specs have equal digests, and a changed one (a toleration added)
 * almost surely another. NULL has a digest of its own. For telling whether
 * a pod's constraints changed without keeping the old filter. */
uint64_t flexpu_filter_hash(const struct flexpu_filter *f);

/* Adds src's tolerations (none when src is NULL) to dst, and nothing of
 * its node selector or affinity: for the GPU node of a remote slice, which
 * the pod's taints-and-tolerations rule reaches and its node constraints
 * do not (docs/REMOTE.md, "A tainted GPU node"). 0, or FLEXPU_ENOMEM with
 * dst's tolerations as they were. */
int flexpu_filter_copy_tolerations(struct flexpu_filter *dst, const struct flexpu_filter *src,
                                   struct flexpu_error *err);

/* decide/place for a pod with node constraints; f NULL is no constraint
 * (flexpu_engine_decide and _place are these with NULL). Untolerated taints
 * apply to every pod. */
int flexpu_engine_decide_filtered(struct flexpu_engine *e, const struct flexpu_pod_req *req,
                                  const struct flexpu_filter *f, struct flexpu_rng *rng,
                                  struct flexpu_placement *out, struct flexpu_noplace *why);
int flexpu_engine_place_filtered(struct flexpu_engine *e, const struct flexpu_pod_req *req,
                                 const struct flexpu_filter *f, struct flexpu_rng *rng,
                                 struct flexpu_placement *out, int64_t *alloc_id,
                                 struct flexpu_noplace *why);

/* Whether node `id` passes f (-1) or the first filter it fails
 * (FLEXPU_REJECT_TAINT or FLEXPU_REJECT_AFFINITY), and its preference
 * inputs: the weights of the preferred terms it matches and its
 * PreferNoSchedule taints f does not tolerate. For tests and tools. */
int flexpu_engine_node_filter(const struct flexpu_engine *e, int id, const struct flexpu_filter *f,
                              int *affinity, int *intolerable);

/* The value of node `id`'s label `key` as the node filters see it
 * (kubernetes.io/hostname included), or NULL: no such label, or no such
 * node. The string belongs to the engine and lives until the node is
 * removed or its labels change. */
const char *flexpu_engine_node_label(const struct flexpu_engine *e, int id, const char *key);

void flexpu_engine_stats(const struct flexpu_engine *e, struct flexpu_stats *out);

/* Free compute of one GPU (milli) and free CPU/memory of a node, for tests
 * and observability. Return -1 for unknown ids. */
int flexpu_engine_gpu_free_milli(const struct flexpu_engine *e, int node, int gpu);
int64_t flexpu_engine_gpu_free_mem(const struct flexpu_engine *e, int node, int gpu);
int64_t flexpu_engine_node_free_cpu(const struct flexpu_engine *e, int node);
int64_t flexpu_engine_node_free_mem(const struct flexpu_engine *e, int node);

/* Whether req fits node `id` as it stands (GPU count, models, free compute
 * and memory, CPU, memory), leaving out the pod's node filters: a pod that
 * fitted nowhere can fit again only where this turns true, so a caller
 * retries it only after such a node changed. False for unknown ids. */
bool flexpu_engine_node_may_fit(const struct flexpu_engine *e, int id,
                                const struct flexpu_pod_req *req);

/* The request as the engine will account it under the current policy
 * ("whole" rounds shares up to whole GPUs). */
void flexpu_engine_effective_req(const struct flexpu_engine *e, const struct flexpu_pod_req *in,
                                 struct flexpu_pod_req *out);

/* Checks every internal invariant (totals equal the sum of allocations, no
 * over-commit, class membership); 0 or FLEXPU_EINVAL with the first broken
 * one in err. O(nodes + allocations): for tests. */
int flexpu_engine_check(const struct flexpu_engine *e, struct flexpu_error *err);

#endif
