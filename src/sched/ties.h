/* SPDX-License-Identifier: Apache-2.0 */
/* Rules that are part of a policy's definition besides its cost: how ties
 * between equally good nodes are broken, and which request shapes make the
 * workload the fragmentation-aware policies defend ("typical pods").
 * docs/SCHEDULING.md, "Faithful fgd", says why fgd's rules are the
 * reference simulator's and flexpu's are not.
 *
 * The simulator sets them; the scheduler daemon keeps each policy's own. */
#ifndef FX_SCHED_TIES_H
#define FX_SCHED_TIES_H

#include <stdint.h>

#include "flexpu/sched.h"

enum fx_ties {
    FX_TIES_POLICY = 0, /* whatever the policy's own rule is */
    /* A tied node drawn uniformly at random, per decision, with the
     * caller's generator. */
    FX_TIES_RANDOM,
    /* A fixed random node priority for the whole run: every node gets a
     * pseudo-random priority from (tie seed, node id) once, and among tied
     * nodes the one with the smallest priority wins, in every decision.
     * This is what FGD's published simulator does (it prefixes each node
     * name with a random per-run index and takes the tied node with the
     * smallest name). */
    FX_TIES_NODE_PRIORITY,
};

/* Which shapes of a trace are typical. Shapes are ordered by pod count,
 * most popular first, and kept until they hold `coverage` of the pods (the
 * shape that crosses the line is kept). Among shapes of equal count: */
enum fx_typical_order {
    /* smaller CPU first, then smaller share, fewer GPUs, smaller model mask */
    FX_TYPICAL_SMALLER_FIRST = 0,
    /* larger CPU first, then larger share, more GPUs, then the gpu_spec text
     * in descending byte order: the reference simulator's order. Shapes are
     * also told apart by their gpu_spec text (as the reference keys them),
     * not only by the models it names. */
    FX_TYPICAL_LARGER_FIRST,
};

struct fx_policy_rules {
    enum fx_ties ties;             /* never FX_TIES_POLICY */
    double coverage;               /* 0 < coverage <= 1 */
    enum fx_typical_order typical; /* matters only when coverage < 1 */
};

/* The rules policy `name` is defined with; -1 for an unknown name. */
int fx_policy_rules(const char *name, struct fx_policy_rules *out);

/* Overrides the policy's tie rule (FX_TIES_POLICY: back to the policy's)
 * and reseeds the node priorities. Does not change the policy. */
void fx_engine_set_ties(struct flexpu_engine *e, enum fx_ties ties, uint64_t seed);

/* The tie rule in force: the override, else the policy's. */
enum fx_ties fx_engine_ties(const struct flexpu_engine *e);

/* Node id's tie priority (smaller wins); UINT64_MAX for an unknown id. */
uint64_t fx_engine_node_priority(const struct flexpu_engine *e, int id);

/* "policy", "random", "priority" <-> enum; parse returns -1 if unknown. */
const char *fx_ties_name(enum fx_ties t);
int fx_ties_parse(const char *s, enum fx_ties *out);

#endif
