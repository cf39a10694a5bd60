/* SPDX-License-Identifier: Apache-2.0 */
/* Gangs and preemption in the placement engine (issue 15). Pure, like the
 * rest of the engine: no I/O, no clock; the caller's pod groups, queues and
 * priorities become arguments (docs/SCHEDULING.md, "Gangs and preemption").
 *
 * Gangs. A gang is n requests placed all or none in one call. The members
 * go, in order of preference, all on one node; else all within one domain
 * of the first topology key (the nodes sharing one value of a node label,
 * e.g. one multi-node NVLink domain), then of the next key; else anywhere.
 * Among the domains of one level the best fit wins: the one with the least
 * free GPU compute left once the gang's total is taken (then CPU, then
 * memory), so big domains stay whole. Domains that cannot hold the gang's
 * total (GPU compute, whole free GPUs, CPU, memory summed over the domain)
 * are skipped before anything is tried. Inside the chosen node or domain
 * each member is placed by the engine's policy, biggest first.
 *
 * Preemption. flexpu_engine_find_victims answers "whom to evict so that
 * this request fits": among caller-given candidate allocations, the node
 * where the fewest victims (a group counts once) and then the least cost
 * make room, after giving back every candidate that is not needed. */
#ifndef FLEXPU_GANG_H
#define FLEXPU_GANG_H

#include "flexpu/sched.h"

/* ---- topology keys ---------------------------------------------------- */

#define FLEXPU_TOPOLOGY_KEYS_MAX 8
/* The keys a new engine uses, in order: a multi-node NVLink domain (GPU
 * Feature Discovery's label), a rack, a zone. */
#define FLEXPU_TOPOLOGY_KEYS_DEFAULT \
    "nvidia.com/gpu.clique,topology.kubernetes.io/rack,topology.kubernetes.io/zone"

/* Sets the topology keys (copied), most preferred first. keys NULL restores
 * the defaults; n 0 with keys non-NULL leaves only "one node" and
 * "anywhere". FLEXPU_EINVAL names a key that is empty, too long (over 317
 * bytes), repeated or kubernetes.io/hostname (one node is already the
 * first level), or n above FLEXPU_TOPOLOGY_KEYS_MAX; the keys are then
 * unchanged. */
int flexpu_engine_set_topology_keys(struct flexpu_engine *e, const char *const *keys, int n,
                                    struct flexpu_error *err);

/* The keys in force into keys[0..max); returns how many there are. The
 * strings belong to the engine and live until the next set. */
int flexpu_engine_topology_keys(const struct flexpu_engine *e, const char **keys, int max);

/* ---- gangs ------------------------------------------------------------ */

struct flexpu_gang_member {
    struct flexpu_pod_req req;          /* in */
    const struct flexpu_filter *filter; /* in; NULL: no node constraint */
    struct flexpu_placement place;      /* out, on success */
    int64_t alloc_id;                   /* out, on success of place_gang; 0 otherwise */
};

enum flexpu_gang_level {
    FLEXPU_GANG_NODE = 0, /* every member on one node */
    FLEXPU_GANG_DOMAIN,   /* within one domain of a topology key */
    FLEXPU_GANG_ANYWHERE,
};

struct flexpu_gang_result {
    enum flexpu_gang_level level;
    int key;          /* FLEXPU_GANG_DOMAIN: the topology key's index; else -1 */
    int node;         /* FLEXPU_GANG_NODE: the node; else -1 */
    char domain[128]; /* the label value or the node's name (truncated); "" anywhere */
    int tried;        /* nodes and domains where placing the members was attempted */
    int skipped;      /* domains (and node classes) the aggregate check ruled out */
};

/* "node", "domain", "anywhere". */
const char *flexpu_gang_level_name(enum flexpu_gang_level level);

/* Places the n members of m all or none. On success returns 0, fills each
 * member's place and alloc_id (release each with flexpu_engine_release)
 * and *res (may be NULL). Otherwise nothing is held and the engine
 * decides exactly as before: capacity, allocations, the next allocation
 * id and the order in which it visits nodes are put back (only the
 * classes' caches of past decisions may be colder):
 * FLEXPU_ENOFIT with why->text saying how many members fit anywhere and
 * why the first that did not failed (why->rejected are that member's
 * counts); FLEXPU_EINVAL for n < 1 or a malformed member (why->text names
 * it); FLEXPU_ENOMEM.
 *
 * Cost, with C node classes, D domains of a key, n members: the aggregate
 * check is O(C log C) per key; each attempt on a node is O(n), on a domain
 * O(n C); domains are attempted best fit first until one holds the gang,
 * so a gang that fits its best domain costs O(K C log C + n C) for K keys. */
int flexpu_engine_place_gang(struct flexpu_engine *e, struct flexpu_gang_member *m, int n,
                             struct flexpu_rng *rng, struct flexpu_gang_result *res,
                             struct flexpu_noplace *why);

/* Like place_gang but commits nothing: fills each member's place (alloc_id
 * 0) and leaves the engine as place_gang leaves it on failure. */
int flexpu_engine_decide_gang(struct flexpu_engine *e, struct flexpu_gang_member *m, int n,
                              struct flexpu_rng *rng, struct flexpu_gang_result *res,
                              struct flexpu_noplace *why);

/* ---- victims ---------------------------------------------------------- */

/* An allocation the caller allows to be evicted (lower priority, or its
 * queue above its fair share: the engine knows neither). */
struct flexpu_victim_cand {
    int64_t alloc_id; /* a live allocation */
    double cost;      /* work lost if evicted, >= 0 (e.g. GPU milli x seconds run) */
    int priority;     /* the reprieve gives back the highest first */
    int64_t group;    /* 0: alone; candidates of one nonzero group (a gang) are
                       * evicted together and count as one victim */
};

struct flexpu_preemption {
    struct flexpu_placement place; /* the preemptor's placement once the victims are gone */
    int victims;    /* victims as counted: a group is one */
    int nevicted;   /* candidates to evict: entries written to the index array */
    double cost;    /* the summed cost of every evicted candidate */
};

/* Finds where req (with node filter f, may be NULL) fits once some of the
 * candidates are evicted. Per node holding candidates: evict them all (a
 * group as a whole; its members elsewhere go too), and if req then fits,
 * give back the victims not needed, highest priority first (then highest
 * cost first); the answer is the node with the fewest victims, then the
 * least cost, then the tie rule's node priority. evicted (room for ncand)
 * receives the candidates' indices, a group's members all listed, in
 * candidate order. If req fits without evicting anything, returns 0 with
 * no victims. FLEXPU_ENOFIT when evicting every candidate still leaves no
 * room; FLEXPU_EINVAL names a bad candidate (unknown or repeated
 * allocation, negative or NaN cost) or request. The engine is not changed
 * (the search works on copies of the nodes' free resources).
 *
 * Cost: O(ncand log ncand) to group the candidates by node, then per node
 * holding u victim units O(u log u + u G) fit checks on G GPUs: the
 * candidates per node, not the whole cluster per candidate; one ordinary
 * decision first (req may fit as it is). */
int flexpu_engine_find_victims(struct flexpu_engine *e, const struct flexpu_pod_req *req,
                               const struct flexpu_filter *f,
                               const struct flexpu_victim_cand *cands, int ncand,
                               struct flexpu_preemption *out, int *evicted,
                               struct flexpu_noplace *why);

/* The same for a whole gang: where evicting some candidates lets every
 * member fit, by gang placement's levels (one node, a domain of each
 * topology key, anywhere; the first level with an answer wins, and within
 * it the node or domain with the fewest victims, then the least cost).
 * Within a node or domain the members are taken biggest first: each goes
 * where it fits as things stand (best fit) or, if nowhere, to the node
 * chosen by the single request's rules among the candidates not yet
 * evicted (fewest victims, least cost, reprieve); victims stay evicted for
 * the members after it, and a group evicted for one member frees its
 * members' room on the domain's other nodes too. On success each member's
 * place is where it goes once the victims are gone (alloc_id 0), *res the
 * level, out->place.node -1, and out and evicted as for one request. If
 * the gang fits as things are, no victims. The engine is not changed.
 *
 * Cost: with m candidates on N nodes, n members and K keys, at most
 * O((K + 2) n (N + m G)) fit checks, plus O(m log m) to group them and the
 * cost of one flexpu_engine_decide_gang. Greedy: a gang that only fits
 * with a cleverer arrangement may get no answer, or more victims than
 * needed. */
int flexpu_engine_find_gang_victims(struct flexpu_engine *e, struct flexpu_gang_member *m,
                                    int n, const struct flexpu_victim_cand *cands, int ncand,
                                    struct flexpu_gang_result *res,
                                    struct flexpu_preemption *out, int *evicted,
                                    struct flexpu_noplace *why);

#endif
