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

struct flexpu_node_info {
    const char *name;
    int64_t cpu_milli;
    int64_t mem_mib;
    const char *labels; /* "k=v,k=v" (copied), may be NULL */
    int ngpu;
    struct flexpu_gpu_info gpus[FLEXPU_MAX_GPUS];
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
 * node and the share granted. */
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
 * FLEXPU_EINVAL for a malformed request (message in why->text). rng is used
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

/* Releases an allocation, restoring exactly what assign took. */
int flexpu_engine_release(struct flexpu_engine *e, int64_t alloc_id, struct flexpu_error *err);

/* Decide + assign in one call. */
int flexpu_engine_place(struct flexpu_engine *e, const struct flexpu_pod_req *req,
                        struct flexpu_rng *rng, struct flexpu_placement *out, int64_t *alloc_id,
                        struct flexpu_noplace *why);

void flexpu_engine_stats(const struct flexpu_engine *e, struct flexpu_stats *out);

/* Free compute of one GPU (milli) and free CPU/memory of a node, for tests
 * and observability. Return -1 for unknown ids. */
int flexpu_engine_gpu_free_milli(const struct flexpu_engine *e, int node, int gpu);
int64_t flexpu_engine_gpu_free_mem(const struct flexpu_engine *e, int node, int gpu);
int64_t flexpu_engine_node_free_cpu(const struct flexpu_engine *e, int node);
int64_t flexpu_engine_node_free_mem(const struct flexpu_engine *e, int node);

/* The request as the engine will account it under the current policy
 * ("whole" rounds shares up to whole GPUs). */
void flexpu_engine_effective_req(const struct flexpu_engine *e, const struct flexpu_pod_req *in,
                                 struct flexpu_pod_req *out);

/* Checks every internal invariant (totals equal the sum of allocations, no
 * over-commit, class membership); 0 or FLEXPU_EINVAL with the first broken
 * one in err. O(nodes + allocations): for tests. */
int flexpu_engine_check(const struct flexpu_engine *e, struct flexpu_error *err);

#endif
