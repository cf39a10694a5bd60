/* SPDX-License-Identifier: Apache-2.0 */
#include "sim/replay.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sched/ties.h"
#include "sim/bound.h"
#include "util/alloc.h"
#include "util/clock.h"

static int64_t pod_gpu_milli(const struct fx_trace_pod *p)
{
    return (int64_t)p->num_gpu * p->gpu_milli;
}

/* The point of the allocation curve that a state after an arrival counts
 * for: the arrived demand in percent of capacity, rounded to the nearest
 * integer (halves to even, as Python's round() in the FGD authors' analysis,
 * merge_alloc_discrete.py). Each point of the curve is then the mean of the
 * states after the arrivals that round to it, as there: the published
 * "allocation at 100%" is the mean over arrived demand in [99.5, 100.5),
 * not the state once 100% (or 101%) has arrived, which matters wherever
 * the curve still climbs at 100% (docs/SCHEDULING.md, "Fidelity"). */
static int curve_point(int64_t arrived_milli, int64_t cap)
{
    int64_t num = arrived_milli * 100, q = num / cap, r = num % cap;
    if (2 * r > cap || (2 * r == cap && (q & 1)))
        q++;
    return q > INT32_MAX ? INT32_MAX : (int)q;
}

/* An engine for the trace under a policy, with the trace's typical pods. */
static int setup(const struct fx_trace *t, const char *policy, double coverage,
                 struct flexpu_engine **out, struct flexpu_error *err)
{
    struct flexpu_engine *e;
    int rc = fx_trace_engine(t, &e, err);
    if (rc)
        return rc;
    if ((rc = flexpu_engine_set_policy(e, policy, err)) ||
        (rc = fx_trace_set_workload(e, t, coverage, err))) {
        flexpu_engine_free(e);
        return rc;
    }
    *out = e;
    return 0;
}

/* The arrival order: every trace pod once, shuffled, then draws with
 * replacement while the GPU request stays within scale x capacity. */
static int arrival_order(const struct fx_trace *t, const struct fx_replay_opts *o,
                         struct flexpu_rng *rng, int **order, int *n, struct flexpu_error *err)
{
    double limit = o->scale * (double)t->gpus * FLEXPU_GPU_MILLI;
    int cap = t->npods * 2 + 16;
    int *ord = fx_malloc((size_t)cap * sizeof(*ord));
    if (!ord)
        return flexpu_error_set(err, FLEXPU_ENOMEM, "out of memory for the arrival order");
    int k = 0;
    double total = 0;
    for (int i = 0; i < t->npods; i++)
        ord[i] = i;
    for (int i = t->npods - 1; i > 0; i--) {
        int j = (int)flexpu_rng_below(rng, (uint64_t)i + 1);
        int x = ord[i];
        ord[i] = ord[j];
        ord[j] = x;
    }
    for (; k < t->npods && (o->max_pods <= 0 || k < o->max_pods); k++) {
        double d = (double)pod_gpu_milli(&t->pods[ord[k]]);
        if (total + d > limit)
            break;
        total += d;
    }
    while (t->npods > 0 && (o->max_pods <= 0 || k < o->max_pods)) {
        int i = (int)flexpu_rng_below(rng, (uint64_t)t->npods);
        double d = (double)pod_gpu_milli(&t->pods[i]);
        if (total + d > limit)
            break;
        if (k == cap) {
            cap *= 2;
            int *o2 = fx_realloc(ord, (size_t)cap * sizeof(*o2));
            if (!o2) {
                fx_free(ord);
                return flexpu_error_set(err, FLEXPU_ENOMEM, "out of memory for the arrival order");
            }
            ord = o2;
        }
        ord[k++] = i;
        total += d;
    }
    *order = ord;
    *n = k;
    return 0;
}

static int main_reason(const struct flexpu_noplace *why)
{
    int best = 0;
    for (int i = 1; i < FLEXPU_REJECT_COUNT_; i++)
        if (why->rejected[i] > why->rejected[best])
            best = i;
    return best;
}

/* The packing LP's items (sim/bound.h): one per share size and set of
 * accepted GPU models, their models interned as an engine interns them, so
 * a pod's gpu_spec means to the bound what it means to the policies. */
struct bound_input {
    struct fx_bound_item *items;
    int nitems;
    int *item_of; /* per trace pod: its item; -1 for a pod asking for no GPU */
    int64_t gpus[FLEXPU_MAX_MODELS]; /* the cluster's GPUs of each model */
};

static void bound_input_free(struct bound_input *in)
{
    fx_free(in->items);
    fx_free(in->item_of);
}

static int bound_input(const struct fx_trace *t, struct bound_input *in, struct flexpu_error *err)
{
    memset(in, 0, sizeof(*in));
    struct flexpu_engine *e = flexpu_engine_new();
    in->items = fx_calloc((size_t)t->npods + 1, sizeof(*in->items));
    in->item_of = fx_calloc((size_t)t->npods + 1, sizeof(*in->item_of));
    /* first[m]: the first item of share m, next[i]: the next one after i */
    int first[FLEXPU_GPU_MILLI + 1], *next = fx_calloc((size_t)t->npods + 1, sizeof(*next));
    int rc = 0;
    if (!e || !in->items || !in->item_of || !next) {
        rc = flexpu_error_set(err, FLEXPU_ENOMEM, "out of memory for the packing LP's items");
        goto out;
    }
    for (int m = 0; m <= FLEXPU_GPU_MILLI; m++)
        first[m] = -1;
    for (int i = 0; i < t->nnodes && rc == 0; i++) {
        uint64_t mask = 0;
        if (t->nodes[i].ngpu > 0 &&
            (rc = flexpu_engine_models(e, t->nodes[i].model, &mask, err)) == 0)
            in->gpus[__builtin_ctzll(mask)] += t->nodes[i].ngpu;
    }
    for (int i = 0; i < t->npods && rc == 0; i++) {
        const struct fx_trace_pod *p = &t->pods[i];
        uint64_t mask = 0;
        in->item_of[i] = -1;
        if (p->num_gpu == 0 || (rc = flexpu_engine_models(e, p->gpu_spec, &mask, err)))
            continue;
        int k = first[p->gpu_milli];
        while (k >= 0 && in->items[k].models != mask)
            k = next[k];
        if (k < 0) {
            k = in->nitems++;
            in->items[k] = (struct fx_bound_item){p->gpu_milli, 0, mask};
            next[k] = first[p->gpu_milli];
            first[p->gpu_milli] = k;
        }
        in->item_of[i] = k;
    }
out:
    if (rc)
        bound_input_free(in);
    fx_free(next);
    flexpu_engine_free(e);
    return rc;
}

/* What pod i adds to (sign 1) or takes from (-1) the arrived items. */
static void bound_count(struct bound_input *in, const struct fx_trace *t, int i, int sign)
{
    if (in->item_of[i] >= 0)
        in->items[in->item_of[i]].count += sign * t->pods[i].num_gpu;
}

static int replay_bound(const struct fx_trace *t, const struct fx_replay_opts *o,
                        struct fx_replay_result *out, struct flexpu_error *err)
{
    struct flexpu_rng rng;
    flexpu_rng_seed(&rng, o->seed);
    int *order = NULL, n = 0;
    int rc = arrival_order(t, o, &rng, &order, &n, err);
    if (rc)
        return rc;
    double start = fx_mono_seconds();
    int64_t cap = t->gpus * FLEXPU_GPU_MILLI;
    out->total_milli = cap;
    /* ends[x]: pods arrived when demand last rounded to x % or less
     * (curve_point), so that the bound at x bounds every state that a
     * policy's point x averages. */
    int ends[FX_CURVE_POINTS];
    int64_t arrived[FX_CURVE_POINTS];
    char hit[FX_CURVE_POINTS] = {0}; /* an arrival rounds to the point */
    int64_t sum = 0;
    int point = 0;
    for (int i = 0; i < n; i++) {
        int64_t next = sum + pod_gpu_milli(&t->pods[order[i]]);
        int pct = curve_point(next, cap);
        if (pct < FX_CURVE_POINTS)
            hit[pct] = 1;
        for (; point < pct && point < FX_CURVE_POINTS; point++) {
            ends[point] = i;
            arrived[point] = sum;
        }
        sum = next;
    }
    for (; point < FX_CURVE_POINTS; point++) {
        ends[point] = n;
        arrived[point] = sum;
    }
    /* A point that no arrival rounds to averages, in a policy's curve, the
     * states of the points either side: its bound is the next point's. */
    for (int x = FX_CURVE_POINTS - 2; x >= 0; x--)
        if (!hit[x]) {
            ends[x] = ends[x + 1];
            arrived[x] = arrived[x + 1];
        }
    out->pods_arrived = n;
    out->demand_arrived_milli = sum;
    out->pods_placed = -1; /* the bound packs fractions of pods: no count */
    /* From the end down, taking the pods of each percent back out; once
     * everything that arrived fits, every earlier point fits too (a
     * sub-multiset of a packing is a packing). */
    struct bound_input in;
    if ((rc = bound_input(t, &in, err))) {
        fx_free(order);
        return rc;
    }
    for (int i = 0; i < n; i++)
        bound_count(&in, t, order[i], 1);
    /* One LP for every point, built for all that arrived; each point's
     * solve starts from the basis of the point above it. */
    struct fx_bound_lp *lp;
    if ((rc = fx_bound_lp_new(in.items, in.nitems, in.gpus, FLEXPU_MAX_MODELS, 0, &lp, NULL,
                              err))) {
        bound_input_free(&in);
        fx_free(order);
        return rc;
    }
    int upto = n, all_fit = 0;
    for (int x = FX_CURVE_POINTS - 1; x >= 0 && rc == 0; x--) {
        double best = (double)arrived[x];
        if (!all_fit) {
            for (; upto > ends[x]; upto--)
                bound_count(&in, t, order[upto - 1], -1);
            if ((rc = fx_bound_lp_solve(lp, in.items, in.nitems, &best, err)))
                break;
            all_fit = best >= (double)arrived[x] - 0.5;
        }
        out->alloc[x] = best / (double)cap;
        if (x == FX_CURVE_POINTS - 1) {
            out->alloc_milli = (int64_t)best;
            out->demand_placed_milli = (int64_t)best;
        }
    }
    out->seconds = fx_mono_seconds() - start;
    fx_bound_lp_free(lp);
    bound_input_free(&in);
    fx_free(order);
    return rc;
}

int fx_replay_arrivals(const struct fx_trace *t, const char *policy,
                       const struct fx_replay_opts *o, struct fx_replay_result *out,
                       struct flexpu_error *err)
{
    memset(out, 0, sizeof(*out));
    out->policy = policy;
    out->seed = o->seed;
    if (t->gpus == 0)
        return flexpu_error_set(err, FLEXPU_EINVAL, "the node list has no GPUs");
    if (strcmp(policy, FX_BOUND_POLICY) == 0)
        return replay_bound(t, o, out, err);
    struct flexpu_engine *e;
    int rc = setup(t, policy, o->coverage, &e, err);
    if (rc)
        return rc;
    fx_engine_set_ties(e, (enum fx_ties)o->ties, o->seed);
    struct flexpu_rng rng;
    flexpu_rng_seed(&rng, o->seed);
    int *order = NULL, n = 0;
    if ((rc = arrival_order(t, o, &rng, &order, &n, err))) {
        flexpu_engine_free(e);
        return rc;
    }
    double start = fx_mono_seconds();
    int64_t cap = t->gpus * FLEXPU_GPU_MILLI;
    out->total_milli = cap;
    /* Per percent x of arrived demand: the sums and the count of the states
     * after each arrival whose arrived demand rounds to x (curve_point). */
    double sum_alloc[FX_CURVE_POINTS] = {0}, sum_frag[FX_CURVE_POINTS] = {0};
    double last_alloc[FX_CURVE_POINTS] = {0}, last_frag[FX_CURVE_POINTS] = {0};
    int count[FX_CURVE_POINTS] = {0};
    for (int i = 0; i < n && rc == 0; i++) {
        const struct fx_trace_pod *p = &t->pods[order[i]];
        struct flexpu_pod_req r;
        struct flexpu_placement pl;
        struct flexpu_noplace why;
        if ((rc = fx_trace_req(e, p, &r, err)))
            break;
        out->pods_arrived++;
        out->demand_arrived_milli += pod_gpu_milli(p);
        int prc = flexpu_engine_place(e, &r, &rng, &pl, NULL, &why);
        if (prc == 0) {
            out->pods_placed++;
            out->demand_placed_milli += pod_gpu_milli(p);
        } else if (prc == FLEXPU_ENOFIT) {
            out->failed[main_reason(&why)]++;
            out->failed_multi_gpu += p->num_gpu > 1;
        } else {
            rc = flexpu_error_set(err, prc, "pod %s: %s", p->name, why.text);
        }
        struct flexpu_stats s;
        flexpu_engine_stats(e, &s);
        if (s.classes > out->classes_max)
            out->classes_max = s.classes;
        int x = curve_point(out->demand_arrived_milli, cap);
        if (x < FX_CURVE_POINTS) {
            last_alloc[x] = (double)s.gpu_milli_used / (double)cap;
            last_frag[x] = s.frag_milli / (double)cap;
            sum_alloc[x] += last_alloc[x];
            sum_frag[x] += last_frag[x];
            count[x]++;
        }
    }
    struct flexpu_stats s;
    flexpu_engine_stats(e, &s);
    out->alloc_milli = s.gpu_milli_used;
    double carry_alloc = 0, carry_frag = 0; /* the state after the latest arrival before x */
    for (int x = 0; x < FX_CURVE_POINTS; x++) {
        double a = sum_alloc[x], f = sum_frag[x];
        int c = count[x];
        /* No arrival rounds to x (a pod jumped past it): the reference's
         * analysis takes the states within a point either side. */
        for (int y = x - 1; c == 0 && y <= x + 1; y += 2)
            if (y >= 0 && y < FX_CURVE_POINTS) {
                a += sum_alloc[y];
                f += sum_frag[y];
                c += count[y];
            }
        /* Neither (a gap the reference leaves empty, or past the last
         * arrival): the state after the latest arrival before x. */
        out->alloc[x] = c ? a / c : carry_alloc;
        out->frag[x] = c ? f / c : carry_frag;
        if (count[x]) {
            carry_alloc = last_alloc[x];
            carry_frag = last_frag[x];
        }
    }
    out->seconds = fx_mono_seconds() - start;
    fx_free(order);
    flexpu_engine_free(e);
    return rc;
}

/* ---- timed replay ----------------------------------------------------- */

struct running {
    int64_t end;
    int64_t alloc;
};

/* A binary min-heap of running pods by end time. */
struct heap {
    struct running *a;
    int n, cap;
};

static int heap_push(struct heap *h, struct running r)
{
    if (h->n == h->cap) {
        int cap = h->cap ? h->cap * 2 : 1024;
        struct running *a = fx_realloc(h->a, (size_t)cap * sizeof(*a));
        if (!a)
            return FLEXPU_ENOMEM;
        h->a = a;
        h->cap = cap;
    }
    int i = h->n++;
    while (i > 0 && h->a[(i - 1) / 2].end > r.end) {
        h->a[i] = h->a[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h->a[i] = r;
    return 0;
}

static struct running heap_pop(struct heap *h)
{
    struct running top = h->a[0], last = h->a[--h->n];
    int i = 0;
    for (;;) {
        int c = 2 * i + 1;
        if (c >= h->n)
            break;
        if (c + 1 < h->n && h->a[c + 1].end < h->a[c].end)
            c++;
        if (last.end <= h->a[c].end)
            break;
        h->a[i] = h->a[c];
        i = c;
    }
    if (h->n > 0)
        h->a[i] = last;
    return top;
}

struct timed {
    const struct fx_trace *t;
    double rate; /* arrivals sped up by this factor; run times unchanged */
    struct flexpu_engine *e;
    struct flexpu_rng rng;
    struct heap running;
    int *pending; /* pod indexes, FIFO */
    int npending;
    double *waits;
    struct fx_timed_result *out;
    int64_t cap_milli;
    double area, last_t;
};

static int64_t arrival(const struct timed *s, const struct fx_trace_pod *p)
{
    return (int64_t)((double)p->creation / s->rate);
}

static int64_t run_time(const struct fx_trace_pod *p)
{
    int64_t from = p->scheduled >= 0 ? p->scheduled : p->creation;
    return p->deletion > from ? p->deletion - from : 0;
}

/* Tries to place pod i at time now; 1 placed, 0 no room, <0 error. */
static int try_start(struct timed *s, int i, int64_t now, struct flexpu_error *err)
{
    const struct fx_trace_pod *p = &s->t->pods[i];
    struct flexpu_pod_req r;
    struct flexpu_placement pl;
    struct flexpu_noplace why;
    int64_t id;
    int rc = fx_trace_req(s->e, p, &r, err);
    if (rc)
        return rc;
    rc = flexpu_engine_place(s->e, &r, &s->rng, &pl, &id, &why);
    if (rc == FLEXPU_ENOFIT)
        return 0;
    if (rc)
        return flexpu_error_set(err, rc, "pod %s: %s", p->name, why.text);
    s->waits[s->out->placed_on_arrival + s->out->placed_later] = (double)(now - arrival(s, p));
    if (now == arrival(s, p))
        s->out->placed_on_arrival++;
    else
        s->out->placed_later++;
    if (heap_push(&s->running, (struct running){now + run_time(p), id}))
        return flexpu_error_set(err, FLEXPU_ENOMEM, "out of memory");
    return 1;
}

/* Retries the queue in arrival order. A request that failed in this pass is
 * not tried again in the same pass: capacity only shrinks during it. */
static int retry_pending(struct timed *s, int64_t now, struct flexpu_error *err)
{
    int keep = 0;
    int failed[64], nfailed = 0;
    for (int k = 0; k < s->npending; k++) {
        int i = s->pending[k];
        int skip = 0;
        for (int f = 0; f < nfailed && !skip; f++) {
            const struct fx_trace_pod *a = &s->t->pods[i], *b = &s->t->pods[failed[f]];
            skip = a->cpu_milli == b->cpu_milli && a->mem_mib == b->mem_mib &&
                   a->num_gpu == b->num_gpu && a->gpu_milli == b->gpu_milli &&
                   strcmp(a->gpu_spec, b->gpu_spec) == 0;
        }
        int rc = skip ? 0 : try_start(s, i, now, err);
        if (rc < 0)
            return rc;
        if (rc == 0) {
            s->pending[keep++] = i;
            if (!skip && nfailed < 64)
                failed[nfailed++] = i;
        }
    }
    s->npending = keep;
    return 0;
}

/* Moves the clock to t: samples the allocation curve at the points passed
 * and adds the time-weighted allocation since the last event. */
static void advance(struct timed *s, double t, double step, int *next_point)
{
    struct flexpu_stats st;
    flexpu_engine_stats(s->e, &st);
    double a = (double)st.gpu_milli_used / (double)s->cap_milli;
    for (; *next_point < FX_TIME_POINTS && *next_point * step < t; (*next_point)++) {
        s->out->t[*next_point] = *next_point * step;
        s->out->alloc[*next_point] = a;
    }
    if (a > s->out->alloc_peak)
        s->out->alloc_peak = a;
    if (t > s->last_t)
        s->area += a * (t - s->last_t);
    s->last_t = t;
}

static int cmp_creation(const void *pa, const void *pb, void *ctx)
{
    const struct fx_trace *t = ctx;
    int a = *(const int *)pa, b = *(const int *)pb;
    int64_t ca = t->pods[a].creation, cb = t->pods[b].creation;
    if (ca != cb)
        return ca < cb ? -1 : 1;
    return a - b;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int timed_run(struct timed *s, const int *order, int n, struct flexpu_error *err)
{
    const struct fx_trace *t = s->t;
    int64_t horizon = 0;
    for (int i = 0; i < n; i++)
        if (arrival(s, &t->pods[order[i]]) + run_time(&t->pods[order[i]]) > horizon)
            horizon = arrival(s, &t->pods[order[i]]) + run_time(&t->pods[order[i]]);
    double step = horizon > 0 ? (double)horizon / (FX_TIME_POINTS - 1) : 1.0;
    int next_point = 0, rc = 0;
    for (int k = 0; k <= n && rc >= 0; k++) {
        int64_t now = k < n ? arrival(s, &t->pods[order[k]]) : INT64_MAX;
        /* Departures up to this arrival, each followed by a retry. */
        while (s->running.n > 0 && s->running.a[0].end <= now && rc >= 0) {
            int64_t when = s->running.a[0].end;
            advance(s, (double)when, step, &next_point);
            struct running r = heap_pop(&s->running);
            rc = flexpu_engine_release(s->e, r.alloc, err);
            if (rc == 0 && (s->running.n == 0 || s->running.a[0].end != when))
                rc = retry_pending(s, when, err);
        }
        if (k == n || rc < 0)
            break;
        advance(s, (double)now, step, &next_point);
        rc = try_start(s, order[k], now, err);
        if (rc == 0)
            s->pending[s->npending++] = order[k];
    }
    s->out->npoints = next_point;
    s->out->alloc_mean = s->last_t > 0 ? s->area / s->last_t : 0;
    return rc < 0 ? rc : 0;
}

int fx_replay_timed(const struct fx_trace *t, const char *policy, double coverage, double rate,
                    struct fx_timed_result *out, struct flexpu_error *err)
{
    memset(out, 0, sizeof(*out));
    out->policy = policy;
    for (int i = 0; i < t->npods; i++)
        if (t->pods[i].creation < 0 || t->pods[i].deletion < 0)
            return flexpu_error_set(err, FLEXPU_EINVAL,
                                    "pod %s (line %d): the timed replay needs creation_time and "
                                    "deletion_time",
                                    t->pods[i].name, i + 2);
    if (!(rate >= 1.0))
        return flexpu_error_set(err, FLEXPU_EINVAL, "timed replay: rate %g below 1", rate);
    struct timed s = {.t = t, .rate = rate, .out = out, .cap_milli = t->gpus * FLEXPU_GPU_MILLI};
    if (s.cap_milli == 0)
        return flexpu_error_set(err, FLEXPU_EINVAL, "the node list has no GPUs");
    int rc = setup(t, policy, coverage, &s.e, err);
    if (rc)
        return rc;
    fx_engine_set_ties(s.e, FX_TIES_POLICY, 42);
    flexpu_rng_seed(&s.rng, 42);
    int *order = fx_malloc(((size_t)t->npods + 1) * sizeof(int));
    s.pending = fx_malloc(((size_t)t->npods + 1) * sizeof(int));
    s.waits = fx_malloc(((size_t)t->npods + 1) * sizeof(double));
    if (!order || !s.pending || !s.waits) {
        rc = flexpu_error_set(err, FLEXPU_ENOMEM, "out of memory for the timed replay");
        goto out;
    }
    for (int i = 0; i < t->npods; i++)
        order[i] = i;
    qsort_r(order, (size_t)t->npods, sizeof(int), cmp_creation, (void *)t);
    double start = fx_mono_seconds();
    out->pods = t->npods;
    rc = timed_run(&s, order, t->npods, err);
    out->never_placed = s.npending;
    int placed = out->placed_on_arrival + out->placed_later;
    if (placed > 0) {
        double sum = 0;
        for (int i = 0; i < placed; i++)
            sum += s.waits[i];
        qsort(s.waits, (size_t)placed, sizeof(double), cmp_double);
        out->pending_mean = sum / placed;
        out->pending_p50 = s.waits[placed / 2];
        out->pending_p99 = s.waits[(int)((placed - 1) * 0.99)];
        out->pending_max = s.waits[placed - 1];
    }
    out->seconds = fx_mono_seconds() - start;
out:
    fx_free(order);
    fx_free(s.pending);
    fx_free(s.waits);
    fx_free(s.running.a);
    flexpu_engine_free(s.e);
    return rc;
}
