/* SPDX-License-Identifier: Apache-2.0 */
/* Deciding: visit every class of identical nodes once, reject those that
 * cannot hold the request (counting why), let the policy score the rest,
 * and keep the cheapest, breaking ties by the tie rule in force: uniformly
 * over nodes, or by a fixed node priority (sched/ties.h). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "sched/engine.h"
#include "sched/policy.h"
#include "sched/ties.h"

int flexpu_engine_set_policy(struct flexpu_engine *e, const char *name, struct flexpu_error *err)
{
    const struct fx_policy *p = fx_policy_find(name);
    if (!p) {
        char known[160] = "";
        for (int i = 0; i < flexpu_policy_count(); i++) {
            strncat(known, i ? ", " : "", sizeof(known) - strlen(known) - 1);
            strncat(known, flexpu_policy_name(i), sizeof(known) - strlen(known) - 1);
        }
        char why[200];
        snprintf(why, sizeof(why), "unknown policy (known: %s)", known);
        return flexpu_error_field(err, FLEXPU_EINVAL, "policy", name ? name : "",
                                  name ? strlen(name) : 0, why);
    }
    e->policy = p;
    e->memo_epoch++;
    return 0;
}

const char *flexpu_engine_policy(const struct flexpu_engine *e)
{
    return e->policy->name;
}

int flexpu_req_validate(const struct flexpu_pod_req *r, struct flexpu_error *err)
{
    char buf[32];
    const char *field = NULL, *why = NULL;
    long long val = 0;
    if (r->cpu_milli < 0)
        field = "cpu_milli", val = r->cpu_milli, why = "must not be negative";
    else if (r->mem_mib < 0)
        field = "mem_mib", val = r->mem_mib, why = "must not be negative";
    else if (r->num_gpu < 0 || r->num_gpu > FLEXPU_MAX_GPUS)
        field = "num_gpu", val = r->num_gpu, why = "must be between 0 and 16";
    else if (r->num_gpu > 0 && (r->gpu_milli < 1 || r->gpu_milli > FLEXPU_GPU_MILLI))
        field = "gpu_milli", val = r->gpu_milli, why = "must be between 1 and 1000 per GPU";
    else if (r->num_gpu == 0 && (r->gpu_milli != 0 || r->gpu_mem_mib != 0))
        field = "gpu_milli", val = r->gpu_milli, why = "a GPU share needs num_gpu >= 1";
    else if (r->gpu_mem_mib < 0)
        field = "gpu_mem_mib", val = r->gpu_mem_mib, why = "must not be negative";
    if (!field)
        return 0;
    snprintf(buf, sizeof(buf), "%lld", val);
    return flexpu_error_field(err, FLEXPU_EINVAL, field, buf, strlen(buf), why);
}

void flexpu_engine_effective_req(const struct flexpu_engine *e, const struct flexpu_pod_req *in,
                                 struct flexpu_pod_req *out)
{
    *out = *in;
    if (e->policy->round_whole && out->num_gpu > 0) {
        out->gpu_milli = FLEXPU_GPU_MILLI;
        out->gpu_mem_mib = 0; /* the whole GPU, memory included */
    }
}

/* The first check node n fails for r, or -1 if r may fit. */
static int reject_reason(const struct fx_node *n, const struct fx_view *v,
                         const struct flexpu_pod_req *r)
{
    if (r->num_gpu > 0) {
        int allowed = 0, share = 0, both = 0;
        for (int g = 0; g < n->ngpu; g++) {
            if (r->model_mask && !(r->model_mask & (1ULL << n->model[g])))
                continue;
            allowed++;
            if (v->free[g] >= r->gpu_milli) {
                share++;
                both += v->gmem_free[g] >= r->gpu_mem_mib;
            }
        }
        if (n->ngpu > 0 && allowed == 0 && r->model_mask)
            return FLEXPU_REJECT_MODEL;
        if (allowed < r->num_gpu)
            return FLEXPU_REJECT_GPU_COUNT;
        if (v->cpu_free < r->cpu_milli)
            return FLEXPU_REJECT_CPU;
        if (v->mem_free < r->mem_mib)
            return FLEXPU_REJECT_MEMORY;
        if (share < r->num_gpu)
            return FLEXPU_REJECT_GPU_FREE;
        if (both < r->num_gpu)
            return FLEXPU_REJECT_GPU_MEMORY;
        return -1;
    }
    if (v->cpu_free < r->cpu_milli)
        return FLEXPU_REJECT_CPU;
    if (v->mem_free < r->mem_mib)
        return FLEXPU_REJECT_MEMORY;
    return -1;
}

bool flexpu_engine_node_may_fit(const struct flexpu_engine *e, int id,
                                const struct flexpu_pod_req *req)
{
    if (id < 0 || id >= e->nnodes || !e->nodes[id].alive)
        return false;
    struct flexpu_pod_req r;
    flexpu_engine_effective_req(e, req, &r);
    struct fx_view v;
    fx_view_of(&e->nodes[id], &v);
    return reject_reason(&e->nodes[id], &v, &r) < 0;
}

static void describe_models(const struct flexpu_engine *e, uint64_t mask, char *buf, size_t len)
{
    buf[0] = '\0';
    for (int i = 0; i < e->nmodels; i++) {
        if (!(mask & (1ULL << i)))
            continue;
        if (buf[0])
            strncat(buf, "|", len - strlen(buf) - 1);
        strncat(buf, e->models[i], len - strlen(buf) - 1);
    }
}

static void explain(const struct flexpu_engine *e, const struct flexpu_pod_req *r,
                    const char *taint, struct flexpu_noplace *why)
{
    char models[96] = "", what[128];
    describe_models(e, r->model_mask, models, sizeof(models));
    if (r->num_gpu == 0)
        snprintf(what, sizeof(what), "cpu-only pod");
    else
        snprintf(what, sizeof(what), "%d %s%sGPU(s) with %d milli%s free", r->num_gpu, models,
                 models[0] ? " " : "", r->gpu_milli,
                 r->gpu_mem_mib ? " and the memory" : "");
    static const char *const names[FLEXPU_REJECT_COUNT_] = {
        "gpu model constraint", "too few GPUs", "insufficient cpu", "insufficient memory",
        "no room on enough GPUs", "insufficient GPU memory", "untolerated taint",
        "node affinity/selector mismatch"};
    int off = snprintf(why->text, sizeof(why->text), "no node fits %s (cpu %lldm, memory %lldMi): "
                       "0/%d nodes available",
                       what, (long long)r->cpu_milli, (long long)r->mem_mib, why->nodes);
    for (int i = 0; i < FLEXPU_REJECT_COUNT_ && off < (int)sizeof(why->text); i++)
        if (why->rejected[i])
            off += snprintf(why->text + off, sizeof(why->text) - (size_t)off, ", %d %s%s%s",
                            why->rejected[i], names[i], i == FLEXPU_REJECT_TAINT ? " " : "",
                            i == FLEXPU_REJECT_TAINT ? taint : "");
}

static struct fx_memo *memo_find(struct fx_class *c, const struct flexpu_pod_req *r,
                                 uint64_t epoch)
{
    for (int i = 0; i < FX_MEMO_SLOTS; i++) {
        struct fx_memo *m = &c->memo[i];
        if (m->epoch == epoch && m->num_gpu == r->num_gpu && m->gpu_milli == r->gpu_milli &&
            m->cpu_milli == r->cpu_milli && m->mem_mib == r->mem_mib &&
            m->gpu_mem_mib == r->gpu_mem_mib && m->model_mask == r->model_mask)
            return m;
    }
    return NULL;
}

static void memo_put(struct fx_class *c, const struct flexpu_pod_req *r, uint64_t epoch, int ok,
                     double cost, uint32_t gpus)
{
    struct fx_memo *m = &c->memo[c->memo_next];
    c->memo_next = (c->memo_next + 1) % FX_MEMO_SLOTS;
    *m = (struct fx_memo){r->cpu_milli, r->mem_mib,   r->gpu_mem_mib, r->model_mask, r->num_gpu,
                          r->gpu_milli, epoch,        cost,           gpus,          ok};
}

/* A decision in progress: the best candidate so far. A candidate is a
 * class (every member alike) or, for filters that depend on the node's
 * name, one member of a class. */
struct pick {
    struct flexpu_engine *e;
    struct flexpu_rng *rng;
    int by_priority;
    struct fx_choice best;
    struct fx_class *best_cls;
    int best_node;
    int best_memo; /* best's cost came from the cache: its GPUs are still to be chosen */
    int best_pref;
    int64_t tied; /* nodes sharing the best preference and cost so far */
};

/* Offers candidate `node` (a member of c standing for `count` nodes) of
 * preference pref and choice ch. Preference first, then cost, then the
 * tie rule. */
static void offer(struct pick *k, struct fx_class *c, int node, int64_t count, int pref,
                  const struct fx_choice *ch, int memo)
{
    struct flexpu_engine *e = k->e;
    /* Costs are sums of the same terms in different orders: compare with
     * a tolerance so equal placements tie. */
    double tol = 1e-9 * (fabs(ch->cost) + fabs(k->best.cost) + 1.0);
    int same_pref = k->tied > 0 && pref == k->best_pref;
    int better = k->tied == 0 || pref > k->best_pref ||
                 (same_pref && ch->cost < k->best.cost - tol);
    int tie = !better && same_pref && ch->cost <= k->best.cost + tol;
    int take = better;
    if (k->by_priority) {
        /* The class's member of smallest priority stands for it; among
         * tied classes the smallest such member wins. */
        if (!better && !tie)
            return;
        int cand = node >= 0 ? node : fx_class_prio_node(e, c);
        take = better || e->nodes[cand].prio < e->nodes[k->best_node].prio ||
               (e->nodes[cand].prio == e->nodes[k->best_node].prio && cand < k->best_node);
        node = cand;
        k->tied = better ? count : k->tied + count;
    } else if (better) {
        k->tied = count;
    } else if (tie) {
        k->tied += count;
        take = k->rng && flexpu_rng_below(k->rng, (uint64_t)k->tied) < (uint64_t)count;
    }
    if (!take)
        return;
    k->best = *ch;
    k->best_cls = c;
    k->best_node = node >= 0 ? node : c->head;
    k->best_memo = memo;
    k->best_pref = pref;
}

/* The feasible nodes' extremes that kube-scheduler's normalisations read:
 * NodeAffinity's and TaintToleration's maxima, InterPodAffinity's raw
 * minimum and maximum (pa), PodTopologySpread's over the nodes it scores
 * (sp: rounded to whole counts, as its Score returns them). */
struct extremes {
    int max_aff, max_intol;
    int64_t pa_min, pa_max, sp_min, sp_max;
    int pa, sp; /* the filter has scored terms of that plugin */
};

/* PodTopologySpread's Score: its raw sum in thousandths, rounded. */
static int64_t spread_raw(const struct fx_attr_eval *v)
{
    return (v->spread + 500) / 1000;
}

static void extremes_add(struct extremes *x, const struct fx_attr_eval *v)
{
    x->max_aff = v->affinity > x->max_aff ? v->affinity : x->max_aff;
    x->max_intol = v->intolerable > x->max_intol ? v->intolerable : x->max_intol;
    x->pa_min = v->podaff < x->pa_min ? v->podaff : x->pa_min;
    x->pa_max = v->podaff > x->pa_max ? v->podaff : x->pa_max;
    if (v->spread_in) {
        int64_t s = spread_raw(v);
        x->sp_min = s < x->sp_min ? s : x->sp_min;
        x->sp_max = s > x->sp_max ? s : x->sp_max;
    }
}

/* kube-scheduler's scores for its four plugins, normalised over the
 * feasible nodes as it does and weighed as in its default configuration:
 * NodeAffinity 2 and TaintToleration 3 (DefaultNormalizeScore, integer
 * division; reversed for taints: fewer untolerated PreferNoSchedule taints
 * score higher), InterPodAffinity 2 (100 * (raw - min) / (max - min),
 * truncated), PodTopologySpread 2 (100 * (max + min - raw) / max, fewer
 * matching pods score higher; a node without every constraint's key 0). */
static int preference(const struct fx_attr_eval *v, const struct extremes *x)
{
    int aff = x->max_aff > 0 ? 100 * v->affinity / x->max_aff : 0;
    int taint = x->max_intol > 0 ? 100 - 100 * v->intolerable / x->max_intol : 100;
    int pa = 0, sp = 0;
    if (x->pa && x->pa_max > x->pa_min)
        pa = (int)(100.0 * (double)(v->podaff - x->pa_min) / (double)(x->pa_max - x->pa_min));
    if (x->sp && v->spread_in)
        sp = x->sp_max == 0 ? 100
                            : (int)(100 * (x->sp_max + x->sp_min - spread_raw(v)) / x->sp_max);
    return 2 * aff + 3 * taint + 2 * pa + 2 * sp;
}

static const struct fx_attrs *node_attrs(const struct flexpu_engine *e, const struct fx_node *n)
{
    return n->attrs >= 0 ? e->attrs[n->attrs] : NULL;
}

/* The filter's verdict on node n: per set (computed once per decision) or,
 * when it depends on the name, on the node itself into *tmp. */
static const struct fx_attr_eval *verdict(const struct flexpu_engine *e,
                                          const struct flexpu_filter *f, int name_dep,
                                          const struct fx_attr_eval *plain,
                                          const struct fx_node *n, struct fx_attr_eval *tmp)
{
    if (name_dep) {
        fx_filter_eval(f, node_attrs(e, n), n->name, tmp);
        return tmp;
    }
    return n->attrs >= 0 ? &e->attr_eval[n->attrs] : plain;
}

/* Notes the first untolerated taint seen, for the message. */
static void note_taint(const struct flexpu_engine *e, const struct fx_node *n,
                       const struct fx_attr_eval *v, char *buf, size_t len)
{
    if (buf[0] || v->reason != FLEXPU_REJECT_TAINT || v->bad_taint < 0)
        return;
    fx_taint_describe(&node_attrs(e, n)->taints[v->bad_taint], buf, len);
}

int fx_reject_reason(const struct fx_node *n, const struct fx_view *v,
                     const struct flexpu_pod_req *r)
{
    return reject_reason(n, v, r);
}

/* Whether class c lies in the scope; every member of a class has the same
 * label set (it is part of the node's type). */
static int in_scope(const struct flexpu_engine *e, const struct fx_class *c,
                    const struct fx_scope *s)
{
    if (!s || !s->key)
        return 1;
    const char *v = fx_node_label(e, c->head, s->key);
    return v && strcmp(v, s->value) == 0;
}

/* The classes a scoped decision visits: the node's own, or every live one. */
static int scope_classes(const struct flexpu_engine *e, const struct fx_scope *s)
{
    return s && s->node >= 0 ? 1 : e->nlive;
}

static struct fx_class *scope_class(const struct flexpu_engine *e, const struct fx_scope *s,
                                    int i)
{
    return s && s->node >= 0 ? e->nodes[s->node].cls : e->live[i];
}

/* Every field of a placement defined: the entries from `from` on are
 * "none" (GPU -1, share 0, memory 0), whatever the policy left there, so
 * a caller that copies or reads the whole array (a gang member's, the
 * scheduler's first choice kept aside) never meets stale values. */
static void placement_tail_none(struct flexpu_placement *p, int from)
{
    for (int i = from; i < FLEXPU_MAX_GPUS; i++) {
        p->gpu[i] = -1;
        p->milli[i] = 0;
        p->gpu_mem_mib[i] = 0;
    }
}

/* The placement of a request not placed: node -1, no GPU. */
static void placement_none(struct flexpu_placement *p)
{
    p->node = -1;
    p->ngpu = 0;
    placement_tail_none(p, 0);
}

int flexpu_engine_decide_filtered(struct flexpu_engine *e, const struct flexpu_pod_req *req,
                                  const struct flexpu_filter *f, struct flexpu_rng *rng,
                                  struct flexpu_placement *out, struct flexpu_noplace *why)
{
    return fx_decide_scoped(e, req, f, NULL, rng, out, why);
}

int fx_decide_scoped(struct flexpu_engine *e, const struct flexpu_pod_req *req,
                     const struct flexpu_filter *f, const struct fx_scope *scope,
                     struct flexpu_rng *rng, struct flexpu_placement *out,
                     struct flexpu_noplace *why)
{
    struct flexpu_noplace local;
    if (!why)
        why = &local;
    memset(why, 0, sizeof(*why));
    if (!out) {
        snprintf(why->text, sizeof(why->text), "out: NULL");
        return FLEXPU_EINVAL;
    }
    placement_none(out); /* what every path but success leaves */
    /* One node: its class is visited for that member alone. */
    int single = scope && scope->node >= 0;
    int nclasses = scope_classes(e, scope);
    why->nodes = single ? 1 : 0;
    for (int i = 0; !single && i < e->nlive; i++)
        why->nodes += in_scope(e, e->live[i], scope) ? e->live[i]->count : 0;
    struct flexpu_error err;
    if (flexpu_req_validate(req, &err)) {
        memcpy(why->text, err.msg, sizeof(why->text));
        return FLEXPU_EINVAL;
    }
    struct flexpu_pod_req r;
    flexpu_engine_effective_req(e, req, &r);
    /* The filter on each label set once (sets are few: a cluster's pools),
     * unless it reads the node's name. */
    int name_dep = fx_filter_name_dep(f);
    struct fx_attr_eval plain, tmp;
    fx_filter_eval(f, NULL, NULL, &plain);
    for (int i = 0; i < e->nattrs && !name_dep; i++)
        if (e->attrs[i])
            fx_filter_eval(f, e->attrs[i], NULL, &e->attr_eval[i]);
    /* Preferences need the feasible nodes' maxima first (kube-scheduler
     * normalises over them): a pass without the policy. */
    struct extremes x = {.pa_min = INT64_MAX, .pa_max = INT64_MIN, .sp_min = INT64_MAX,
                         .pa = fx_filter_has_scored(f, FLEXPU_SCORE_POD_AFFINITY),
                         .sp = fx_filter_has_scored(f, FLEXPU_SCORE_SPREAD)};
    if (fx_filter_has_preferred(f) || e->prefer_nodes > 0) {
        for (int i = 0; i < nclasses; i++) {
            struct fx_class *c = scope_class(e, scope, i);
            if (!in_scope(e, c, scope))
                continue;
            struct fx_view v;
            fx_view_of(&e->nodes[c->head], &v);
            if (reject_reason(&e->nodes[c->head], &v, &r) >= 0)
                continue;
            for (int id = single ? scope->node : c->head; id >= 0;
                 id = name_dep && !single ? e->nodes[id].next : -1) {
                const struct fx_attr_eval *ve = verdict(e, f, name_dep, &plain, &e->nodes[id],
                                                        &tmp);
                if (ve->reason >= 0)
                    continue;
                extremes_add(&x, ve);
            }
        }
    }
    if (e->policy->rescore)
        fx_workload_refresh_prices(e);
    char taint[128] = "";
    struct pick k = {.e = e, .rng = rng, .best_node = -1,
                     .by_priority = fx_engine_ties(e) == FX_TIES_NODE_PRIORITY};
    for (int i = 0; i < nclasses; i++) {
        struct fx_class *c = scope_class(e, scope, i);
        if (!in_scope(e, c, scope))
            continue;
        const struct fx_node *n = &e->nodes[c->head];
        const struct fx_attr_eval *ve = NULL;
        int count = single ? 1 : c->count;
        if (!name_dep) {
            ve = verdict(e, f, 0, &plain, n, &tmp);
            if (ve->reason >= 0) {
                why->rejected[ve->reason] += count;
                note_taint(e, n, ve, taint, sizeof(taint));
                continue;
            }
        }
        struct fx_view v;
        fx_view_of(n, &v);
        int reason = reject_reason(n, &v, &r);
        if (reason >= 0 && !name_dep) {
            why->rejected[reason] += count;
            continue;
        }
        struct fx_eval_ctx ctx = {e, c, rng};
        struct fx_choice ch;
        int ok = -1, memo = 0; /* -1: not evaluated yet */
        int per_node = name_dep || single;
        for (int id = single ? scope->node : c->head; id >= 0;
             id = name_dep && !single ? e->nodes[id].next : -1) {
            if (name_dep) {
                ve = verdict(e, f, 1, &plain, &e->nodes[id], &tmp);
                if (ve->reason >= 0) {
                    why->rejected[ve->reason]++;
                    note_taint(e, &e->nodes[id], ve, taint, sizeof(taint));
                    continue;
                }
                if (reason >= 0) {
                    why->rejected[reason]++;
                    continue;
                }
            }
            if (ok < 0) {
                struct fx_memo *m = e->policy->memo ? memo_find(c, &r, e->memo_epoch) : NULL;
                if (m) {
                    ok = m->ok;
                    ch.cost = ok && e->policy->rescore
                                  ? e->policy->rescore(&ctx, &v, &r, m->cost, m->gpus)
                                  : m->cost;
                    memo = 1;
                } else {
                    ok = e->policy->eval(&ctx, &v, &r, &ch);
                    if (e->policy->memo)
                        memo_put(c, &r, e->memo_epoch, ok,
                                 e->policy->rescore ? ch.raw : ch.cost,
                                 e->policy->rescore ? ch.gpus : 0);
                }
                ch.p.node = c->head;
            }
            if (!ok) {
                why->rejected[FLEXPU_REJECT_GPU_FREE] += per_node ? 1 : c->count;
                continue;
            }
            offer(&k, c, per_node ? id : -1, per_node ? 1 : c->count,
                  preference(ve, &x), &ch, memo);
        }
    }
    if (k.tied == 0) {
        explain(e, &r, taint, why);
        return FLEXPU_ENOFIT;
    }
    /* Choose the winner's GPUs on its own state when the winner is not the
     * member evaluated (a member whose GPUs may be numbered differently) or
     * its cost came from the cache, with the deterministic evaluation that
     * produced the cost. (Under the node-priority rule a cacheable policy
     * always evaluates again.) */
    if (k.best_node != k.best_cls->head || k.best_memo || (k.by_priority && e->policy->memo)) {
        struct fx_view v;
        fx_view_of(&e->nodes[k.best_node], &v);
        struct fx_eval_ctx ctx = {e, k.best_cls, rng};
        e->policy->eval(&ctx, &v, &r, &k.best);
    }
    k.best.p.node = k.best_node;
    *out = k.best.p;
    placement_tail_none(out, out->ngpu);
    return 0;
}

int flexpu_engine_decide(struct flexpu_engine *e, const struct flexpu_pod_req *req,
                         struct flexpu_rng *rng, struct flexpu_placement *out,
                         struct flexpu_noplace *why)
{
    return flexpu_engine_decide_filtered(e, req, NULL, rng, out, why);
}

int flexpu_engine_place(struct flexpu_engine *e, const struct flexpu_pod_req *req,
                        struct flexpu_rng *rng, struct flexpu_placement *out, int64_t *alloc_id,
                        struct flexpu_noplace *why)
{
    return flexpu_engine_place_filtered(e, req, NULL, rng, out, alloc_id, why);
}

int flexpu_engine_place_filtered(struct flexpu_engine *e, const struct flexpu_pod_req *req,
                                 const struct flexpu_filter *f, struct flexpu_rng *rng,
                                 struct flexpu_placement *out, int64_t *alloc_id,
                                 struct flexpu_noplace *why)
{
    int rc = flexpu_engine_decide_filtered(e, req, f, rng, out, why);
    if (rc)
        return rc;
    struct flexpu_pod_req r;
    flexpu_engine_effective_req(e, req, &r);
    struct flexpu_error err;
    rc = flexpu_engine_assign(e, &r, out, alloc_id, &err);
    if (rc) {
        placement_none(out); /* decided but not taken: not a placement */
        if (why)
            memcpy(why->text, err.msg, sizeof(why->text));
    }
    return rc;
}
