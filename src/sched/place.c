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
                    struct flexpu_noplace *why)
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
        "no room on enough GPUs", "insufficient GPU memory"};
    int off = snprintf(why->text, sizeof(why->text), "no node fits %s (cpu %lldm, memory %lldMi): "
                       "0/%d nodes available",
                       what, (long long)r->cpu_milli, (long long)r->mem_mib, why->nodes);
    for (int i = 0; i < FLEXPU_REJECT_COUNT_ && off < (int)sizeof(why->text); i++)
        if (why->rejected[i])
            off += snprintf(why->text + off, sizeof(why->text) - (size_t)off, ", %d %s",
                            why->rejected[i], names[i]);
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
                     double cost)
{
    struct fx_memo *m = &c->memo[c->memo_next];
    c->memo_next = (c->memo_next + 1) % FX_MEMO_SLOTS;
    *m = (struct fx_memo){r->cpu_milli, r->mem_mib, r->gpu_mem_mib, r->model_mask,
                          r->num_gpu,   r->gpu_milli, epoch,     cost, ok};
}

int flexpu_engine_decide(struct flexpu_engine *e, const struct flexpu_pod_req *req,
                         struct flexpu_rng *rng, struct flexpu_placement *out,
                         struct flexpu_noplace *why)
{
    struct flexpu_noplace local;
    if (!why)
        why = &local;
    memset(why, 0, sizeof(*why));
    why->nodes = e->stats.nodes;
    struct flexpu_error err;
    if (flexpu_req_validate(req, &err)) {
        memcpy(why->text, err.msg, sizeof(why->text));
        return FLEXPU_EINVAL;
    }
    struct flexpu_pod_req r;
    flexpu_engine_effective_req(e, req, &r);
    struct fx_choice best = {0};
    struct fx_class *best_cls = NULL; /* set when best's GPUs are still to be chosen */
    int best_node = -1;               /* node priority rule: the winning node */
    int64_t tied = 0; /* nodes sharing the best cost so far */
    int by_priority = fx_engine_ties(e) == FX_TIES_NODE_PRIORITY;
    for (int i = 0; i < e->nlive; i++) {
        struct fx_class *c = e->live[i];
        const struct fx_node *n = &e->nodes[c->head];
        struct fx_view v;
        fx_view_of(n, &v);
        int reason = reject_reason(n, &v, &r);
        if (reason >= 0) {
            why->rejected[reason] += c->count;
            continue;
        }
        struct fx_eval_ctx ctx = {e, c, rng};
        struct fx_choice ch;
        struct fx_memo *m = e->policy->memo ? memo_find(c, &r, e->memo_epoch) : NULL;
        int ok;
        if (m) {
            ok = m->ok;
            ch.cost = m->cost;
        } else {
            ok = e->policy->eval(&ctx, &v, &r, &ch);
            if (e->policy->memo)
                memo_put(c, &r, e->memo_epoch, ok, ch.cost);
        }
        if (!ok) {
            why->rejected[FLEXPU_REJECT_GPU_FREE] += c->count;
            continue;
        }
        ch.p.node = c->head;
        /* Costs are sums of the same terms in different orders: compare with
         * a tolerance so equal placements tie. */
        double tol = 1e-9 * (fabs(ch.cost) + fabs(best.cost) + 1.0);
        int better = tied == 0 || ch.cost < best.cost - tol;
        int tie = !better && ch.cost <= best.cost + tol;
        if (by_priority) {
            /* The class's member of smallest priority stands for it; among
             * tied classes the smallest such member wins. */
            if (better || tie) {
                int cand = fx_class_prio_node(e, c);
                if (better || e->nodes[cand].prio < e->nodes[best_node].prio ||
                    (e->nodes[cand].prio == e->nodes[best_node].prio && cand < best_node)) {
                    best = ch;
                    best_cls = c;
                    best_node = cand;
                }
                tied = better ? c->count : tied + c->count;
            }
        } else if (better) {
            best = ch;
            best_cls = m ? c : NULL;
            tied = c->count;
        } else if (tie) {
            tied += c->count;
            if (rng && flexpu_rng_below(rng, (uint64_t)tied) < (uint64_t)c->count) {
                best = ch;
                best_cls = m ? c : NULL;
            }
        }
    }
    if (tied == 0) {
        explain(e, &r, why);
        return FLEXPU_ENOFIT;
    }
    if (by_priority && (best_node != best_cls->head || e->policy->memo)) {
        /* The winner is not the member evaluated (a member whose GPUs may
         * be numbered differently), or its cost came from the cache:
         * choose its GPUs on its own state, with the deterministic
         * evaluation that produced the cost. */
        struct fx_view v;
        fx_view_of(&e->nodes[best_node], &v);
        struct fx_eval_ctx ctx = {e, best_cls, rng};
        e->policy->eval(&ctx, &v, &r, &best);
        best.p.node = best_node;
    } else if (!by_priority && best_cls) {
        /* The winner's cost came from the cache: choose its GPUs now (the
         * same deterministic evaluation that produced the cost). */
        struct fx_view v;
        fx_view_of(&e->nodes[best_cls->head], &v);
        struct fx_eval_ctx ctx = {e, best_cls, rng};
        e->policy->eval(&ctx, &v, &r, &best);
        best.p.node = best_cls->head;
    }
    *out = best.p;
    return 0;
}

int flexpu_engine_place(struct flexpu_engine *e, const struct flexpu_pod_req *req,
                        struct flexpu_rng *rng, struct flexpu_placement *out, int64_t *alloc_id,
                        struct flexpu_noplace *why)
{
    int rc = flexpu_engine_decide(e, req, rng, out, why);
    if (rc)
        return rc;
    struct flexpu_pod_req r;
    flexpu_engine_effective_req(e, req, &r);
    struct flexpu_error err;
    rc = flexpu_engine_assign(e, &r, out, alloc_id, &err);
    if (rc && why)
        memcpy(why->text, err.msg, sizeof(why->text));
    return rc;
}
