/* SPDX-License-Identifier: Apache-2.0 */
/* The victim search's parts shared by victim.c (one request) and
 * gangvictim.c (a gang). */
#ifndef FX_SCHED_VICTIM_H
#define FX_SCHED_VICTIM_H

#include "flexpu/gang.h"
#include "sched/engine.h"

/* A victim unit: a candidate alone, or every candidate of one group. */
struct fx_vunit {
    double cost; /* summed over its candidates, wherever they run */
    int prio;    /* its highest priority: the reprieve order */
    int first;   /* its first candidate's index: a repeatable order */
    int victim;  /* marked for the chosen node */
};

/* A candidate's allocation on its node; runs of one node, then one unit. */
struct fx_vpair {
    int node, unit, cand;
    const struct fx_alloc *a;
};

/* The units of one node, with their range of pairs. */
struct fx_vslot {
    int unit, from, to;
};

struct fx_vsearch {
    struct flexpu_engine *e;
    const struct flexpu_victim_cand *c;
    int nc;
    struct flexpu_pod_req r; /* effective request */
    const struct flexpu_filter *f;
    struct fx_vunit *units;
    int nunits;
    int *unit_of;    /* per candidate */
    struct fx_vpair *pairs;
};

/* Reprieve order: highest priority, then highest cost, then first
 * candidate. qsort has no context, so the keys are copied next to the
 * slot. */
struct fx_vrslot {
    struct fx_vslot s;
    int prio;
    double cost;
    int first;
};

/* Gives an allocation's usage back to (sign -1) or takes it from (+1) v. */
void fx_victim_view_change(struct fx_view *v, const struct fx_alloc *a, int sign);

/* The answer on one node for request r with filter f: pairs [from, to)
 * are its candidates, base its free resources with the units already
 * evicted (victim set) given back. Returns 1 and the new victims' count
 * and cost (marking them when mark), with *v the node's free resources
 * once they are gone; 0 if r cannot fit even with every candidate gone,
 * or there is none left to evict. rs: room for the node's units. */
int fx_victim_eval_node(struct fx_vsearch *s, int from, int to, const struct fx_view *base,
                        const struct flexpu_pod_req *r, const struct flexpu_filter *f,
                        struct fx_vrslot *rs, int mark, int *count, double *cost,
                        struct fx_view *v);

/* Whether (count, cost) on node id beats the best so far (bid -1: none):
 * fewer victims, then less cost, then the tie rule's node priority. */
int fx_victim_better(const struct flexpu_engine *e, int count, double cost, int id, int bcount,
                     double bcost, int bid);

/* Checks the candidates (s->e, c, nc set) and forms the units and the
 * pairs sorted by node then unit; why names a bad candidate. */
int fx_victim_search_init(struct fx_vsearch *s, struct flexpu_noplace *why);
void fx_victim_search_free(struct fx_vsearch *s);

/* The message of a search that failed with rc (fit: why nothing fits as
 * it is; what: "node" or "domain"). */
void fx_victim_search_failed(int rc, int ncand, const char *what, const struct flexpu_noplace *fit,
                             struct flexpu_noplace *why);

#endif
