/* SPDX-License-Identifier: Apache-2.0 */
/* Internal state of the placement engine, shared by the files of src/sched/.
 *
 * Nodes live in a dense array indexed by id. Nodes whose state is identical
 * (same static spec and same usage) belong to one class; the decision loop
 * visits classes, not nodes, so a 10,000-node cluster with 9,000 empty
 * nodes costs one evaluation for all empty nodes of a kind. */
#ifndef FX_SCHED_ENGINE_H
#define FX_SCHED_ENGINE_H

#include <stdint.h>

#include "flexpu/sched.h"

/* The part of a node that decides class membership. Zero-filled before use
 * so padding never differs. */
struct fx_key {
    int32_t type;
    int32_t ngpu;
    int64_t cpu_used;
    int64_t mem_used;
    int32_t gused[FLEXPU_MAX_GPUS];
    int64_t gmem_used[FLEXPU_MAX_GPUS];
};

/* A decision cached on a class: the cost of placing one request shape on a
 * member. A class's state never changes while it exists (a node that
 * changes moves to another class), so the cost stays true until the
 * workload or the policy changes (memo_epoch). */
#define FX_MEMO_SLOTS 32
struct fx_memo {
    int64_t cpu_milli, mem_mib, gpu_mem_mib;
    uint64_t model_mask;
    int num_gpu, gpu_milli;
    uint64_t epoch; /* 0: empty */
    double cost; /* the choice's raw part under a policy with a rescore hook */
    /* The GPUs the choice takes (bit g: GPU g), for rescore: the class's
     * members number their GPUs alike, or all their GPUs are one model. */
    uint32_t gpus;
    int ok;
};

/* Change 10 prices at most this many sets of GPU models (those that bring
 * the most GPU demand), so that a node class keeps its rooms inline. */
#define FX_ROOM_SETS 16

struct fx_class {
    struct fx_key key;
    uint64_t hash;
    struct fx_class *chain; /* next in hash bucket */
    int head;               /* first member node id */
    int count;              /* members */
    int live_idx;           /* index in engine->live */
    int prio_min;           /* member with the smallest node priority; -1: rescan */
    double frag;            /* FGD fragmentation of one member */
    double room[FX_ROOM_SETS]; /* change 10: the room one member keeps for each model set */
    uint64_t frag_epoch;    /* workload epoch frag was computed for */
    struct fx_memo memo[FX_MEMO_SLOTS];
    int memo_next;          /* round-robin replacement */
};

/* An interned set of labels and taints (filter.c). Nodes with equal sets
 * share one: the daemon's 1,000s of nodes are a few pools. A node's
 * kubernetes.io/hostname label equal to its own name (every kubelet sets
 * one) is kept out of the set, as a flag, so that it does not make every
 * node's set (and class) its own. One allocation holds the set, its arrays
 * and its strings. */
#define FX_LABEL_HOSTNAME "kubernetes.io/hostname"
struct fx_kv {
    const char *key, *value;
};
struct fx_ntaint {
    const char *key, *value;
    int effect; /* enum flexpu_taint_effect, never ANY */
};
struct fx_attrs {
    uint64_t hash;
    int refs;            /* live nodes with it, plus one per type it defines */
    int hostname;        /* kubernetes.io/hostname = the node's name */
    int nlabels, ntaints;
    int hard_taints;     /* NoSchedule and NoExecute */
    int prefer_taints;   /* PreferNoSchedule */
    struct fx_kv *labels;     /* sorted by key */
    struct fx_ntaint *taints; /* sorted by key, effect, value */
};

/* One decision's verdict on an attribute set (filter.c). */
struct fx_attr_eval {
    int reason;     /* -1 passes, else FLEXPU_REJECT_TAINT / _AFFINITY */
    int affinity;   /* weights of the preferred terms matched */
    int intolerable; /* PreferNoSchedule taints not tolerated */
    /* Weights of the scored terms matched (flexpu_filter_add_scored), per
     * plugin; spread_in: a spread term matched (the node has every
     * constraint's key: kube-scheduler scores the others 0). */
    int64_t podaff, spread;
    int spread_in;
    int bad_taint;  /* index of the first untolerated hard taint, -1 */
};

struct fx_node {
    char name[FLEXPU_NAME_MAX];
    int attrs; /* index in engine->attrs, -1: no labels or taints */
    int alive;
    int type; /* static-spec id; nodes with equal specs share it */
    int symmetric; /* all GPUs interchangeable: class key may sort GPUs */
    int64_t cpu_cap, mem_cap, cpu_used, mem_used;
    int ngpu;
    uint8_t model[FLEXPU_MAX_GPUS];
    int8_t numa[FLEXPU_MAX_GPUS];
    int16_t topo[FLEXPU_MAX_GPUS];
    int64_t gmem_cap[FLEXPU_MAX_GPUS];
    int32_t gused[FLEXPU_MAX_GPUS];
    int64_t gmem_used[FLEXPU_MAX_GPUS];
    uint64_t model_mask;
    uint64_t prio; /* tie priority (smaller wins), from the engine's tie seed and the id */
    struct fx_class *cls;
    int next, prev; /* class member list */
    int nallocs;
};

struct fx_alloc {
    int64_t id; /* 0: free slot */
    struct flexpu_pod_req req;
    struct flexpu_placement p;
};

/* A typical request shape of the workload, with its popularity. */
struct fx_shape {
    struct flexpu_pod_req req;
    double weight;        /* popularity, by count; sums to 1 */
    double demand_weight; /* popularity by GPU demand; sums to 1 */
};

/* Shapes grouped by their GPU part, so one pass over the GPUs serves every
 * shape of the group (shapes differ mostly in CPU). */
struct fx_shape_group {
    int num_gpu, gpu_milli;
    int64_t gpu_mem_mib;
    uint64_t model_mask;
    int first, n; /* range in workload.shapes (sorted by group) */
    double weight;
};

struct fx_workload {
    struct fx_shape *shapes;
    int nshapes;
    double cpu_per_gpu_milli; /* CPU the GPU shapes bring per GPU milli (popularity-weighted) */
    /* The same for their memory (MiB), where flexpu's stranded compute
     * counts memory too (policy.c, change 9: where strand_weight is above
     * 1); 0 elsewhere. */
    double mem_per_gpu_milli;
    /* What flexpu's stranded compute weighs against its fragments (policy.c,
     * change 7): the multi-GPU shapes' demand weight x the GPUs of the
     * largest live node, at least 1 (and 1 where the workload asks more CPU
     * per GPU than the cluster has), so that a GPU's worth of compute
     * stranded by CPU costs what opening an empty node costs those shapes. */
    double strand_weight;
    /* Change 8 (policy.c, flexpu_frag): per model set of the live nodes,
     * the share of the GPU demand whose shapes can use a GPU of the set
     * (fx_workload_strand_share), computed when the workload is set. */
    struct fx_model_share {
        uint64_t models;
        double share;
    } *model_share;
    int nmodel_share;
    /* The same per GPU shape (policy.c, cpu_stranded_by_shape): each shape's
     * CPU per GPU milli, ascending, and from each index on the sums of the
     * shapes' shares of the GPU demand (ratio_w) and of share / ratio
     * (ratio_w_inv); nratio + 1 entries, the last 0. */
    int nratio;
    double *ratio, *ratio_w, *ratio_w_inv;
    struct fx_shape_group *groups;
    int ngroups;
    /* Change 10 (policy.c, rescore_flexpu): the sets of GPU models that
     * GPU shapes name, one entry per set, with what prices the room their
     * models' nodes keep for them (fx_workload_refresh_prices). */
    struct fx_model_set *sets;
    int nsets;
};

struct fx_model_set {
    uint64_t models;
    double demand; /* its shapes' share of the workload's GPU demand (pods x GPU milli) */
    /* CPU (milli) and memory (MiB) per GPU milli of its CPU- and
     * memory-heaviest tenth: the ratio at or above which a tenth of its GPU
     * demand lies. A node's room for the set is the compute its free CPU
     * and memory can feed at these ratios, so a node that the set's heavy
     * pods would leave stranded is not counted as room. */
    double cpu, mem;
    /* Per milli of room taken, set before each decision: the set's demand
     * still to come over its room, at most 1, in steps of 1/16 (the form
     * measured on the tune traces). */
    double price;
};

struct fx_policy;

struct flexpu_engine {
    const struct fx_policy *policy;
    char models[FLEXPU_MAX_MODELS][FLEXPU_NAME_MAX];
    int nmodels;

    struct fx_node *nodes;
    int nnodes, cap_nodes;
    int ntypes, cap_types;
    int *type_rep; /* a node of each type */

    struct fx_class **buckets;
    int nbuckets;
    struct fx_class **live;
    int nlive, cap_live;

    struct fx_alloc *allocs; /* open-addressed by id */
    int64_t cap_allocs, nallocs;
    int64_t next_alloc_id;

    struct fx_workload wl;
    uint64_t wl_epoch;
    uint64_t memo_epoch; /* bumped when the workload or the policy changes */

    int ties;          /* enum fx_ties (sched/ties.h): FX_TIES_POLICY follows the policy */
    uint64_t tie_seed; /* node priorities derive from it */

    int64_t max_node_cpu; /* normalisers of the bestfit/dotprod scores */
    int max_node_gpus;

    struct flexpu_stats stats; /* frag_milli/classes derived on read */
    double frag_total;
    double room_total[FX_ROOM_SETS]; /* change 10: the live nodes' room per model set */

    struct fx_attrs **attrs;        /* interned label/taint sets; NULL: a free slot */
    struct fx_attr_eval *attr_eval; /* per set, filled by each decision (no allocation there) */
    int nattrs, cap_attrs;
    int prefer_nodes; /* live nodes with a PreferNoSchedule taint */

    /* The gangs' topology keys (gang.c): "k1\0k2\0...", NULL while the
     * defaults apply. */
    char *topo_keys;
    int ntopo_keys;

    /* Classes dropped when their last member left, kept (linked by chain)
     * for class_get to reuse: a node that moves back to a state whose class
     * was dropped (releasing what was just assigned: a gang's undone
     * attempt) then needs no allocation, so undoing cannot fail. */
    struct fx_class *spare;
};

/* A node's free resources, the input of every scoring function. Scoring a
 * hypothetical placement means scoring a modified copy. */
struct fx_view {
    int64_t cpu_free, mem_free;
    int ngpu;
    int32_t free[FLEXPU_MAX_GPUS];
    int64_t gmem_free[FLEXPU_MAX_GPUS]; /* INT64_MAX when unknown */
    uint8_t model[FLEXPU_MAX_GPUS];
    int16_t topo[FLEXPU_MAX_GPUS];
};

/* cluster.c */
void fx_view_of(const struct fx_node *n, struct fx_view *v);
int fx_gpu_fits(const struct fx_view *v, int g, const struct flexpu_pod_req *r);
/* Free GPU compute of the node, in milli, over all its GPUs. */
int64_t fx_view_idle(const struct fx_view *v);
void fx_view_apply(struct fx_view *v, const struct flexpu_pod_req *r,
                   const struct flexpu_placement *p);
void fx_refrag(struct flexpu_engine *e);
const char *fx_model_name(const struct flexpu_engine *e, int id);

/* The node of class c that wins a tie under the node-priority rule. */
int fx_class_prio_node(struct flexpu_engine *e, struct fx_class *c);

/* frag.c: FGD fragmentation (GPU milli) of a node view for the workload,
 * with shapes weighted by count (the paper) or by GPU demand. */
double fx_frag(const struct fx_workload *w, const struct fx_view *v);
double fx_frag_weighted(const struct fx_workload *w, const struct fx_view *v, int demand_weighted);
/* The idle GPU milli that FGD's published simulator also books as fragment
 * for every CPU-only shape that fits (its "XL" category). */
double fx_frag_cpu_idle(const struct fx_workload *w, const struct fx_view *v);

/* workload.c */
void fx_workload_clear(struct fx_workload *w);
/* The share of w's GPU demand (pods x GPU milli) that GPUs of the model
 * set `models` can serve: that of the shapes that accept no model or one
 * of the set (exactly 1 where every shape can use them). Looked up in
 * w->model_share, computed from the shapes for a set not there. */
double fx_workload_strand_share(const struct fx_workload *w, uint64_t models);
/* Change 10: sets each model set's price from the cluster's free compute
 * and the room its models' nodes keep for it (room_total). Nothing to do
 * for a workload whose shapes name no model. */
void fx_workload_refresh_prices(struct flexpu_engine *e);
/* What taking r's CPU and memory, and r's share of each GPU g in `gpus`
 * (bit g), from node v costs at the model sets' prices: the sum over sets
 * of price x the room taken (a GPU counts for the sets of its model). */
double fx_workload_room_cost(const struct fx_workload *w, const struct fx_view *v,
                             const struct flexpu_pod_req *r, uint32_t gpus);
/* The room node v keeps for set k of the workload (0 past its sets). */
double fx_workload_set_room(const struct fx_workload *w, int k, const struct fx_view *v);

/* filter.c: label and taint sets, and evaluating a pod's filter on them. */
/* Interns the labels and taints of in; *id receives the set (-1 when the
 * node has none) with a reference taken. Errors name the field. */
int fx_attrs_intern(struct flexpu_engine *e, const struct flexpu_node_info *in, int *id,
                    struct flexpu_error *err);
void fx_attrs_ref(struct flexpu_engine *e, int id);
void fx_attrs_unref(struct flexpu_engine *e, int id);
void fx_attrs_free_all(struct flexpu_engine *e);
/* Whether f's verdict depends on the node's name (metadata.name, or the
 * kubernetes.io/hostname label), so that it is evaluated node by node. */
int fx_filter_name_dep(const struct flexpu_filter *f);
int fx_filter_has_preferred(const struct flexpu_filter *f);
/* Whether f has scored terms of plugin score (flexpu_filter_add_scored). */
int fx_filter_has_scored(const struct flexpu_filter *f, enum flexpu_score score);
/* f (NULL: none) on a set (NULL: none) of the node `name`. */
void fx_filter_eval(const struct flexpu_filter *f, const struct fx_attrs *a, const char *name,
                    struct fx_attr_eval *out);
/* Describes a hard taint for a message: "{key=value:NoSchedule}". */
void fx_taint_describe(const struct fx_ntaint *t, char *buf, size_t len);
/* The value of label key on node id (kubernetes.io/hostname included), or
 * NULL when it has none. */
const char *fx_node_label(const struct flexpu_engine *e, int id, const char *key);

/* place.c: decisions limited to part of the cluster, for gangs (gang.c). */
struct fx_scope {
    int node;                /* >= 0: this node only */
    const char *key, *value; /* key non-NULL: only nodes whose label key is value */
};
/* flexpu_engine_decide_filtered within scope (NULL: everywhere); why->nodes
 * counts the nodes in scope. */
int fx_decide_scoped(struct flexpu_engine *e, const struct flexpu_pod_req *req,
                     const struct flexpu_filter *f, const struct fx_scope *scope,
                     struct flexpu_rng *rng, struct flexpu_placement *out,
                     struct flexpu_noplace *why);
/* The first check node n (seen as v) fails for the effective request r
 * (enum flexpu_reject), or -1 when r may fit; filters left out. */
int fx_reject_reason(const struct fx_node *n, const struct fx_view *v,
                     const struct flexpu_pod_req *r);

/* gang.c: order[0..n) receives the members' indices biggest first (GPU
 * compute, GPU count, GPU memory, CPU, memory, then index); 0 or
 * FLEXPU_ENOMEM. */
int fx_gang_order(const struct flexpu_pod_req *req, int n, int *order);

/* cluster.c: the order in which decisions visit the classes and each
 * class's members (which member stands for it, which wins a random tie).
 * Saved before placements that are then undone (gang.c) and put back
 * after, so that undoing leaves the engine deciding exactly as before. */
struct fx_order {
    int *nodes; /* the members of each class, class after class */
    int *start; /* per class, its first index in nodes; nclasses + 1 entries */
    int nclasses;
};
int fx_order_save(const struct flexpu_engine *e, struct fx_order *o);
/* Requires every node back in a class of the state it had when saved. */
void fx_order_restore(struct flexpu_engine *e, const struct fx_order *o);
void fx_order_free(struct fx_order *o);

/* cluster.c: an allocation by id, or NULL. */
const struct fx_alloc *fx_alloc_find(const struct flexpu_engine *e, int64_t id);

#endif
