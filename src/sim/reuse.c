/* SPDX-License-Identifier: Apache-2.0 */
/* The reuse replay (sim/reuse.h, docs/REUSE.md). */
#include "sim/reuse.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "flexpu/gang.h"
#include "sim/svg.h"
#include "util/alloc.h"
#include "util/clock.h"

#define MAXB      8   /* borrowers on one GPU */
#define MAXHIST   64  /* predictor samples */
#define SCAN      64  /* backlog jobs looked at in one pass */
#define NFAILED   8   /* request shapes that fitted nowhere in one pass */
#define NBINS     2000 /* slowdown histogram: 1.00 .. 21.00 by 0.01 */
#define GPU_MEM   1000.0 /* GPU memory in thousandths: shares reserve it in proportion */

enum kind { OWNER, BATCH };
enum state { WAIT, RUN, BORROW, DONE };
enum ev_type { EV_OWNER_END, EV_BATCH_END, EV_OWNER_ARRIVE, EV_TICK };

struct job {
    enum kind kind;
    enum state state;
    int trace;
    struct flexpu_pod_req req;
    struct flexpu_placement pl;
    int64_t alloc_id;       /* ordinary allocation, or a borrower's CPU-only one; -1 none */
    double arrival, run;    /* arrival (backlog entry for batch); trace run time */
    double work, done;      /* batch: GPU milli x seconds needed, done in this run */
    double rate, last, win; /* batch: milli now, last update, work in the window this run */
    double first_start;
    int gen, gid;           /* gid: a borrower's GPU */
    /* owners */
    int series, offset, age;
    float duty, mem;
    float hd[MAXHIST], hm[MAXHIST];
};

struct gpu {
    int node;
    double own_use, own_mem, own_res, pred_use, pred_mem; /* owners, thousandths */
    double batch; /* ordinary batch compute (and memory: shares reserve in proportion) */
    int nb, b[MAXB];
    int starved, last_reclaim;
};

struct ev {
    double t;
    int type, id, gen;
};

struct sim {
    const struct fx_trace *t;
    const struct fx_genai *u;
    const struct fx_reuse_config *c;
    enum fx_reuse_mode mode;
    struct flexpu_engine *e;
    struct flexpu_rng rng;
    struct fx_reuse_result *out;
    struct job *jobs;
    int njobs, cap_jobs, nowners;
    struct gpu *g;
    int ngpus, *gbase;
    uint64_t *node_mask;
    struct ev *heap;
    int nheap, cap_heap;
    int *backlog, nbacklog; /* job indices, oldest first */
    int *owait, nowait;
    int *be, nbe, be_next; /* the trace's BE pods with GPUs, in creation order */
    double be_t0, be_span;
    long tick;
    double w0, w1, last_t, t_start;
    /* sums */
    double owner_use, batch_rate, owner_res;
    double a_owner, a_res, a_alloc, useful_batch, useful_borrowed, lost;
    double *jct, *runs;
    int njct, cap_jct;
    double hist[NBINS], bursts, delayed;
    int next_point;
};

/* ---- small helpers -------------------------------------------------------- */

static double overlap(double a, double b, double lo, double hi)
{
    double x = a > lo ? a : lo, y = b < hi ? b : hi;
    return y > x ? y - x : 0;
}

static bool ev_less(const struct ev *a, const struct ev *b)
{
    if (a->t != b->t)
        return a->t < b->t;
    if (a->type != b->type)
        return a->type < b->type;
    return a->id < b->id;
}

static int push(struct sim *s, double t, int type, int id, int gen)
{
    if (s->nheap == s->cap_heap) {
        int cap = s->cap_heap ? s->cap_heap * 2 : 1024;
        struct ev *h = fx_realloc(s->heap, (size_t)cap * sizeof(*h));
        if (!h)
            return FLEXPU_ENOMEM;
        s->heap = h;
        s->cap_heap = cap;
    }
    struct ev e = {t, type, id, gen};
    int i = s->nheap++;
    while (i > 0 && ev_less(&e, &s->heap[(i - 1) / 2])) {
        s->heap[i] = s->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    s->heap[i] = e;
    return 0;
}

static struct ev pop(struct sim *s)
{
    struct ev top = s->heap[0], last = s->heap[--s->nheap];
    int i = 0;
    for (;;) {
        int c = 2 * i + 1;
        if (c >= s->nheap)
            break;
        if (c + 1 < s->nheap && ev_less(&s->heap[c + 1], &s->heap[c]))
            c++;
        if (!ev_less(&s->heap[c], &last))
            break;
        s->heap[i] = s->heap[c];
        i = c;
    }
    if (s->nheap > 0)
        s->heap[i] = last;
    return top;
}

static int gid_of(const struct sim *s, const struct flexpu_placement *pl, int k)
{
    return s->gbase[pl->node] + pl->gpu[k];
}

/* ---- batch progress --------------------------------------------------------- */

/* Brings a batch job's work up to now. */
static void progress(struct sim *s, struct job *j, double now)
{
    if (j->state == RUN || j->state == BORROW) {
        j->done += j->rate * (now - j->last);
        j->win += j->rate * overlap(j->last, now, s->w0, s->w1);
    }
    j->last = now;
}

/* Sets a running batch job's rate (GPU milli) and its end event. */
static int set_rate(struct sim *s, int id, double now, double rate)
{
    struct job *j = &s->jobs[id];
    progress(s, j, now);
    s->batch_rate += rate - j->rate;
    j->rate = rate;
    j->gen++;
    if (rate <= 0)
        return 0;
    double left = j->work - j->done;
    return push(s, now + (left > 0 ? left / rate : 0), EV_BATCH_END, id, j->gen);
}

/* The idle compute of GPU g left to its borrowers, shared in proportion
 * to their shares, each getting at most its share (`low` tenants: the
 * runtime gives them only what nobody else uses). */
static int borrower_rates(struct sim *s, int gi, double now)
{
    struct gpu *g = &s->g[gi];
    double idle = FLEXPU_GPU_MILLI - g->own_use - g->batch, want = 0;
    for (int k = 0; k < g->nb; k++)
        want += s->jobs[g->b[k]].req.gpu_milli;
    double f = idle <= 0 ? 0 : want <= idle ? 1 : idle / want;
    for (int k = 0; k < g->nb; k++) {
        int id = g->b[k];
        double r = s->jobs[id].req.gpu_milli * f;
        if (fabs(r - s->jobs[id].rate) > 1e-9) {
            int rc = set_rate(s, id, now, r);
            if (rc)
                return rc;
        }
    }
    return 0;
}

static double borrowed_mem(const struct sim *s, const struct gpu *g)
{
    double m = 0;
    for (int k = 0; k < g->nb; k++)
        m += s->jobs[g->b[k]].req.gpu_milli;
    return m;
}

static int backlog_front(struct sim *s, int id)
{
    memmove(&s->backlog[1], &s->backlog[0], (size_t)s->nbacklog * sizeof(int));
    s->backlog[0] = id;
    s->nbacklog++;
    return 0;
}

/* Stops a running batch job, its work of this run lost, back to the front
 * of the backlog. */
static int evict(struct sim *s, int id, double now, struct flexpu_error *err)
{
    struct job *j = &s->jobs[id];
    progress(s, j, now);
    s->lost += j->win;
    int rc = flexpu_engine_release(s->e, j->alloc_id, err);
    if (rc)
        return rc;
    s->batch_rate -= j->rate;
    if (j->state == BORROW) {
        struct gpu *g = &s->g[j->gid];
        for (int k = 0; k < g->nb; k++)
            if (g->b[k] == id)
                g->b[k] = g->b[--g->nb];
    } else {
        for (int k = 0; k < j->pl.ngpu; k++)
            s->g[gid_of(s, &j->pl, k)].batch -= j->pl.milli[k];
    }
    int gi = j->state == BORROW ? j->gid : -1;
    j->state = WAIT;
    j->alloc_id = -1;
    j->rate = j->done = j->win = 0;
    j->gen++;
    backlog_front(s, id);
    return gi >= 0 ? borrower_rates(s, gi, now) : 0;
}

/* The runtime's guarantee: before anyone on GPU g could be refused memory,
 * borrowers go, the one with the least work done first. Owners and
 * ordinary jobs never exceed their reservations, so evicting borrowers
 * always makes room; `refused` counts it ever failing. */
/* The borrower on g that loses the least work when evicted: the one that
 * has done the least. g has at least one. */
static int least_done(const struct sim *s, const struct gpu *g)
{
    int v = 0;
    for (int k = 1; k < g->nb; k++)
        if (s->jobs[g->b[k]].done < s->jobs[g->b[v]].done)
            v = k;
    return g->b[v];
}

static int settle_memory(struct sim *s, int gi, double now, struct flexpu_error *err)
{
    struct gpu *g = &s->g[gi];
    while (g->nb > 0 && g->own_mem + g->batch + borrowed_mem(s, g) > GPU_MEM + 1e-6) {
        int rc = evict(s, least_done(s, g), now, err);
        if (rc)
            return rc;
        s->out->evict_memory++;
    }
    if (g->own_mem + g->batch + borrowed_mem(s, g) > GPU_MEM + 1e-6)
        s->out->refused++;
    return 0;
}

/* ---- owners ------------------------------------------------------------------ */

/* The predictor: the most the owner used in its last predict_samples
 * samples; all of its reservation until it has that many. */
static void predicted(const struct sim *s, const struct job *o, double *duty, double *mem)
{
    int n = s->c->predict_samples;
    if (o->age < n) {
        *duty = *mem = 1;
        return;
    }
    float d = 0, m = 0;
    for (int k = 0; k < n; k++) {
        d = fmaxf(d, o->hd[k]);
        m = fmaxf(m, o->hm[k]);
    }
    *duty = d;
    *mem = m;
}

/* Adds (sign 1) or removes (-1) an owner's use, memory and prediction on
 * its GPUs. */
static void owner_apply(struct sim *s, const struct job *o, int sign)
{
    double pd, pm;
    predicted(s, o, &pd, &pm);
    for (int k = 0; k < o->pl.ngpu; k++) {
        struct gpu *g = &s->g[gid_of(s, &o->pl, k)];
        double res = o->pl.milli[k];
        g->own_use += sign * o->duty * o->req.gpu_milli;
        g->own_mem += sign * o->mem * res;
        g->own_res += sign * res;
        g->pred_use += sign * pd * o->req.gpu_milli;
        g->pred_mem += sign * pm * res;
        s->owner_use += sign * o->duty * o->req.gpu_milli;
        s->owner_res += sign * res;
    }
}

/* Takes the owner's sample for the current tick. */
static void owner_sample(struct sim *s, struct job *o)
{
    const struct fx_genai_pod *p = &s->u->pods[o->series];
    long k = (s->tick + o->offset) % s->u->nsteps;
    o->duty = p->duty[k];
    o->mem = p->mem[k];
    memmove(&o->hd[1], &o->hd[0], (MAXHIST - 1) * sizeof(float));
    memmove(&o->hm[1], &o->hm[0], (MAXHIST - 1) * sizeof(float));
    o->hd[0] = o->duty;
    o->hm[0] = o->mem;
}

static int owner_start(struct sim *s, int id, double now, int64_t alloc, struct flexpu_error *err)
{
    struct job *o = &s->jobs[id];
    o->state = RUN;
    o->alloc_id = alloc;
    o->age = 0;
    owner_sample(s, o);
    owner_apply(s, o, 1);
    s->out->owners_started++;
    for (int k = 0; k < o->pl.ngpu; k++) {
        int gi = gid_of(s, &o->pl, k), rc;
        if ((rc = settle_memory(s, gi, now, err)) || (rc = borrower_rates(s, gi, now)))
            return rc;
    }
    return push(s, now + o->run, EV_OWNER_END, id, 0) ? FLEXPU_ENOMEM : 0;
}

/* An owner that fits nowhere evicts batch jobs (ordinary, or borrowers'
 * CPU) through the engine's victim search: owners come first. */
static int owner_preempt(struct sim *s, int id, double now, struct flexpu_error *err)
{
    struct job *o = &s->jobs[id];
    int nc = 0;
    for (int i = s->nowners; i < s->njobs; i++)
        nc += s->jobs[i].state == RUN || s->jobs[i].state == BORROW;
    if (nc == 0)
        return 0;
    struct flexpu_victim_cand *vc = fx_malloc((size_t)nc * sizeof(*vc));
    int *idx = fx_malloc((size_t)nc * sizeof(int)), *ev = fx_malloc((size_t)nc * sizeof(int));
    int rc = 0;
    if (!vc || !idx || !ev) {
        rc = flexpu_error_set(err, FLEXPU_ENOMEM, "out of memory for victims");
        goto out;
    }
    nc = 0;
    for (int i = s->nowners; i < s->njobs; i++) {
        struct job *j = &s->jobs[i];
        if (j->state != RUN && j->state != BORROW)
            continue;
        progress(s, j, now);
        idx[nc] = i;
        vc[nc++] = (struct flexpu_victim_cand){j->alloc_id, j->done, 0, 0};
    }
    struct flexpu_preemption pre;
    struct flexpu_noplace why;
    rc = flexpu_engine_find_victims(s->e, &o->req, NULL, vc, nc, &pre, ev, &why);
    if (rc == FLEXPU_ENOFIT) {
        rc = 0;
        goto out;
    }
    if (rc) {
        rc = flexpu_error_set(err, rc, "owner preemption: %s", why.text);
        goto out;
    }
    for (int k = 0; k < pre.nevicted && rc == 0; k++) {
        rc = evict(s, idx[ev[k]], now, err);
        s->out->evict_owner++;
    }
    int64_t alloc;
    o->pl = pre.place;
    if (rc == 0 && (rc = flexpu_engine_assign(s->e, &o->req, &o->pl, &alloc, err)) == 0)
        rc = owner_start(s, id, now, alloc, err);
    if (rc == 0)
        rc = 1;
out:
    fx_free(vc);
    fx_free(idx);
    fx_free(ev);
    return rc;
}

/* Starts the waiting owners that fit (preempting batch when `preempt`). */
static int serve_owners(struct sim *s, double now, bool preempt, struct flexpu_error *err)
{
    for (int k = 0; k < s->nowait;) {
        int id = s->owait[k];
        struct job *o = &s->jobs[id];
        struct flexpu_noplace why;
        int64_t alloc;
        int rc = flexpu_engine_place(s->e, &o->req, &s->rng, &o->pl, &alloc, &why);
        bool placed = false;
        if (rc == 0) {
            rc = owner_start(s, id, now, alloc, err);
            placed = true;
        } else if (rc == FLEXPU_ENOFIT) {
            rc = preempt ? owner_preempt(s, id, now, err) : 0;
            placed = rc == 1;
            rc = rc == 1 ? 0 : rc;
        } else {
            return flexpu_error_set(err, rc, "owner %s: %s", s->t->pods[o->trace].name,
                                    why.text);
        }
        if (rc)
            return rc;
        if (placed) {
            memmove(&s->owait[k], &s->owait[k + 1], (size_t)(s->nowait - k - 1) * sizeof(int));
            s->nowait--;
        } else {
            k++;
        }
    }
    return 0;
}

/* ---- batch ------------------------------------------------------------------- */

/* Appends the next BE pod of the cycled trace to the backlog. */
static int batch_new(struct sim *s, double now, struct flexpu_error *err)
{
    if (s->njobs == s->cap_jobs) {
        int cap = s->cap_jobs * 2;
        struct job *a = fx_realloc(s->jobs, (size_t)cap * sizeof(*a));
        if (!a)
            return flexpu_error_set(err, FLEXPU_ENOMEM, "out of memory for batch jobs");
        s->jobs = a;
        s->cap_jobs = cap;
    }
    int ti = s->be[s->be_next++ % s->nbe];
    const struct fx_trace_pod *tp = &s->t->pods[ti];
    struct job *j = &s->jobs[s->njobs];
    memset(j, 0, sizeof(*j));
    j->kind = BATCH;
    j->state = WAIT;
    j->trace = ti;
    int rc = fx_trace_req(s->e, tp, &j->req, err);
    if (rc)
        return rc;
    int64_t from = tp->scheduled >= 0 ? tp->scheduled : tp->creation;
    j->run = tp->deletion >= from ? (double)(tp->deletion - from) : 0;
    if (j->run < 1)
        j->run = 1;
    j->work = j->run * j->req.gpu_milli * j->req.num_gpu;
    j->arrival = now;
    j->alloc_id = -1;
    j->first_start = -1;
    s->backlog[s->nbacklog++] = s->njobs++;
    return 0;
}

static void backlog_remove(struct sim *s, int k)
{
    memmove(&s->backlog[k], &s->backlog[k + 1], (size_t)(s->nbacklog - k - 1) * sizeof(int));
    s->nbacklog--;
}

static int batch_begin(struct sim *s, int id, double now, double rate)
{
    struct job *j = &s->jobs[id];
    j->last = now;
    j->rate = 0;
    if (j->first_start < 0)
        j->first_start = now;
    return set_rate(s, id, now, rate) ? FLEXPU_ENOMEM : 0;
}

/* Whether borrower j may go on GPU gi: the owner is predicted idle enough
 * to leave it its whole share, and its memory fits in what the owners
 * reserved and are predicted not to use. */
static bool may_borrow(const struct sim *s, const struct job *j, int gi)
{
    const struct gpu *g = &s->g[gi];
    if (g->nb == MAXB || g->own_res <= 0)
        return false;
    if (j->req.model_mask && !(j->req.model_mask & s->node_mask[g->node]))
        return false;
    double want = j->req.gpu_milli, lent = borrowed_mem(s, g);
    if (FLEXPU_GPU_MILLI - g->pred_use - g->batch - lent < want)
        return false;
    if (lent + want > g->own_res - g->pred_mem)
        return false;
    return flexpu_engine_node_free_cpu(s->e, g->node) >= j->req.cpu_milli &&
           flexpu_engine_node_free_mem(s->e, g->node) >= j->req.mem_mib;
}

/* Places batch job id as a borrower on the GPU, among gpus[0..n) (NULL:
 * all), with the most predicted idle compute. 1 placed, 0 not, <0 error. */
static int borrow(struct sim *s, int id, double now, const int *gpus, int n,
                  struct flexpu_error *err)
{
    struct job *j = &s->jobs[id];
    if (j->req.num_gpu != 1)
        return 0;
    int best = -1;
    double best_idle = -1;
    int count = gpus ? n : s->ngpus;
    for (int k = 0; k < count; k++) {
        int gi = gpus ? gpus[k] : k;
        if (!may_borrow(s, j, gi))
            continue;
        const struct gpu *g = &s->g[gi];
        double idle = FLEXPU_GPU_MILLI - g->pred_use - g->batch - borrowed_mem(s, g);
        if (idle > best_idle) {
            best = gi;
            best_idle = idle;
        }
    }
    if (best < 0)
        return 0;
    struct flexpu_pod_req host = j->req;
    host.num_gpu = 0;
    host.gpu_milli = 0;
    host.model_mask = 0;
    memset(&j->pl, 0, sizeof(j->pl));
    j->pl.node = s->g[best].node;
    int rc = flexpu_engine_assign(s->e, &host, &j->pl, &j->alloc_id, err);
    if (rc)
        return rc;
    j->state = BORROW;
    j->gid = best;
    s->g[best].b[s->g[best].nb++] = id;
    s->out->borrows++;
    if ((rc = batch_begin(s, id, now, 0)))
        return flexpu_error_set(err, rc, "out of memory for events");
    rc = borrower_rates(s, best, now);
    return rc ? rc : 1;
}

static bool same_shape(const struct flexpu_pod_req *a, const struct flexpu_pod_req *b)
{
    return a->cpu_milli == b->cpu_milli && a->mem_mib == b->mem_mib && a->num_gpu == b->num_gpu &&
           a->gpu_milli == b->gpu_milli && a->model_mask == b->model_mask;
}

/* Between two steps (full passes) capacity grows only on the nodes of the
 * GPUs an event freed: a job that fits none of them is not offered to the
 * engine (a full decision visits every node class) until the next step. */
static bool may_fit_freed(const struct sim *s, const struct flexpu_pod_req *req, const int *gpus,
                          int ngpus)
{
    if (!gpus)
        return true;
    for (int k = 0; k < ngpus; k++)
        if (flexpu_engine_node_may_fit(s->e, s->g[gpus[k]].node, req))
            return true;
    return false;
}

/* Starts backlog jobs, oldest first, in their own allocation or (reuse)
 * as borrowers on gpus (NULL: any), skipping shapes that fitted nowhere. */
static int serve_batch(struct sim *s, double now, const int *gpus, int ngpus,
                       struct flexpu_error *err)
{
    struct flexpu_pod_req failed[NFAILED];
    int nfailed = 0, scanned = 0;
    for (int k = 0; k < s->nbacklog && scanned < SCAN && nfailed < NFAILED;) {
        int id = s->backlog[k];
        struct job *j = &s->jobs[id];
        bool known = false;
        for (int f = 0; f < nfailed && !known; f++)
            known = same_shape(&failed[f], &j->req);
        if (known) {
            k++;
            continue;
        }
        scanned++;
        struct flexpu_noplace why;
        int64_t alloc;
        int rc = may_fit_freed(s, &j->req, gpus, ngpus)
                     ? flexpu_engine_place(s->e, &j->req, &s->rng, &j->pl, &alloc, &why)
                     : FLEXPU_ENOFIT;
        if (rc == 0) {
            j->alloc_id = alloc;
            j->state = RUN;
            for (int g = 0; g < j->pl.ngpu; g++)
                s->g[gid_of(s, &j->pl, g)].batch += j->pl.milli[g];
            /* Its job does its share's work; under "whole" it holds more. */
            if (batch_begin(s, id, now, (double)j->req.gpu_milli * j->req.num_gpu))
                return flexpu_error_set(err, FLEXPU_ENOMEM, "out of memory for events");
            for (int g = 0; g < j->pl.ngpu; g++) {
                int gi = gid_of(s, &j->pl, g);
                if ((rc = settle_memory(s, gi, now, err)) || (rc = borrower_rates(s, gi, now)))
                    return rc;
            }
        } else if (rc == FLEXPU_ENOFIT) {
            rc = s->mode == FX_REUSE_BORROW ? borrow(s, id, now, gpus, ngpus, err) : 0;
            if (rc < 0)
                return rc;
            if (rc == 0) {
                failed[nfailed++] = j->req;
                k++;
                continue;
            }
        } else {
            return flexpu_error_set(err, rc, "batch %s: %s", s->t->pods[j->trace].name, why.text);
        }
        backlog_remove(s, k);
    }
    while (s->nbacklog < s->c->backlog) {
        int rc = batch_new(s, now, err);
        if (rc)
            return rc;
    }
    return 0;
}

static int batch_end(struct sim *s, int id, double now, struct flexpu_error *err)
{
    struct job *j = &s->jobs[id];
    progress(s, j, now);
    s->useful_batch += j->win;
    if (j->state == BORROW)
        s->useful_borrowed += j->win;
    int rc = flexpu_engine_release(s->e, j->alloc_id, err);
    if (rc)
        return rc;
    s->batch_rate -= j->rate;
    int gi = -1;
    if (j->state == BORROW) {
        struct gpu *g = &s->g[j->gid];
        for (int k = 0; k < g->nb; k++)
            if (g->b[k] == id)
                g->b[k] = g->b[--g->nb];
        gi = j->gid;
    } else {
        for (int k = 0; k < j->pl.ngpu; k++)
            s->g[gid_of(s, &j->pl, k)].batch -= j->pl.milli[k];
    }
    j->state = DONE;
    j->rate = 0;
    j->alloc_id = -1;
    if (now >= s->w0 && now <= s->w1) {
        s->out->batch_done++;
        if (s->njct == s->cap_jct) {
            int cap = s->cap_jct ? s->cap_jct * 2 : 4096;
            double *a = fx_realloc(s->jct, (size_t)cap * sizeof(double));
            double *b = a ? fx_realloc(s->runs, (size_t)cap * sizeof(double)) : NULL;
            if (a)
                s->jct = a;
            if (!b)
                return flexpu_error_set(err, FLEXPU_ENOMEM, "out of memory for completions");
            s->runs = b;
            s->cap_jct = cap;
        }
        s->jct[s->njct] = now - j->arrival;
        s->runs[s->njct++] = now - j->first_start;
    }
    return gi >= 0 ? borrower_rates(s, gi, now) : 0;
}

/* ---- the step: owners' samples, memory, reclaim, interference ---------------- */

/* Owners' modelled slowdown for this step: each request of request_ms that
 * meets another tenant on its GPU waits up to one slice for the hand-over,
 * and beside ordinary tenants of equal priority runs at its share. */
static void interference(struct sim *s)
{
    double b = s->c->request_ms, w = s->c->slice_ms;
    for (int i = 0; i < s->nowners; i++) {
        const struct job *o = &s->jobs[i];
        if (o->state != RUN || o->duty <= 0)
            continue;
        const struct gpu *g = &s->g[gid_of(s, &o->pl, 0)];
        bool other = g->batch > 0 || g->nb > 0;
        double share = g->batch > 0 ? o->req.gpu_milli / (o->req.gpu_milli + g->batch) : 1;
        double slow = (b / share + (other ? w : 0)) / b;
        double n = o->duty * s->u->step_s * 1000.0 / b;
        int bin = (int)lround((slow - 1) * 100);
        s->hist[bin < 0 ? 0 : bin >= NBINS ? NBINS - 1 : bin] += n;
        s->bursts += n;
        if (other)
            s->delayed += n;
    }
}

/* Reclaim: a GPU whose borrowers have got less than half their shares for
 * reclaim_samples samples in a row (the owner's use rose and stayed up)
 * gives back one borrower, the one with the least work done; at most one
 * per GPU every reclaim_gap samples and reclaim_per_step in the cluster. */
static int reclaim(struct sim *s, double now, struct flexpu_error *err)
{
    int budget = s->c->reclaim_per_step;
    for (int gi = 0; gi < s->ngpus; gi++) {
        struct gpu *g = &s->g[gi];
        if (g->nb == 0) {
            g->starved = 0;
            continue;
        }
        double idle = FLEXPU_GPU_MILLI - g->own_use - g->batch, want = borrowed_mem(s, g);
        g->starved = idle < 0.5 * want ? g->starved + 1 : 0;
        if (g->starved < s->c->reclaim_samples || budget == 0 ||
            s->tick - g->last_reclaim < s->c->reclaim_gap)
            continue;
        int rc = evict(s, least_done(s, g), now, err);
        if (rc)
            return rc;
        s->out->evict_reclaim++;
        g->last_reclaim = (int)s->tick;
        g->starved = 0;
        budget--;
    }
    return 0;
}

static int step(struct sim *s, double now, struct flexpu_error *err)
{
    for (int i = 0; i < s->nowners; i++)
        if (s->jobs[i].state == RUN) {
            owner_apply(s, &s->jobs[i], -1);
            owner_sample(s, &s->jobs[i]);
            s->jobs[i].age++;
            owner_apply(s, &s->jobs[i], 1);
        }
    int rc = 0;
    for (int gi = 0; gi < s->ngpus && rc == 0; gi++)
        rc = settle_memory(s, gi, now, err);
    if (rc == 0)
        rc = reclaim(s, now, err);
    for (int gi = 0; gi < s->ngpus && rc == 0; gi++)
        if (s->g[gi].nb > 0)
            rc = borrower_rates(s, gi, now);
    if (rc == 0 && now >= s->w0 && now < s->w1)
        interference(s);
    return rc;
}

/* ---- the run --------------------------------------------------------------------- */

/* Time-weighted sums from the last event to now, and the plot's samples. */
static void account(struct sim *s, double now)
{
    double dt = overlap(s->last_t, now, s->w0, s->w1);
    struct flexpu_stats st;
    flexpu_engine_stats(s->e, &st);
    s->a_owner += dt * s->owner_use;
    s->a_res += dt * s->owner_res;
    s->a_alloc += dt * (double)st.gpu_milli_used;
    double cap = (double)s->ngpus * FLEXPU_GPU_MILLI, stepw = (s->w1 - s->w0) / (FX_REUSE_POINTS - 1);
    for (; s->next_point < FX_REUSE_POINTS && s->w0 + s->next_point * stepw <= now; s->next_point++) {
        s->out->t[s->next_point] = (s->next_point * stepw) / 3600.0;
        s->out->used[s->next_point] = (s->owner_use + s->batch_rate) / cap;
    }
    s->last_t = now;
}

static int handle(struct sim *s, struct ev e, struct flexpu_error *err)
{
    int rc = 0, freed[FLEXPU_MAX_GPUS], nfreed = 0;
    bool full = false;
    struct job *j = &s->jobs[e.id];
    switch (e.type) {
    case EV_TICK:
        s->tick++;
        full = true;
        if ((rc = step(s, e.t, err)) || push(s, e.t + s->u->step_s, EV_TICK, 0, 0))
            return rc ? rc : flexpu_error_set(err, FLEXPU_ENOMEM, "out of memory for events");
        break;
    case EV_OWNER_ARRIVE:
        s->owait[s->nowait++] = e.id;
        if ((rc = serve_owners(s, e.t, true, err)))
            return rc;
        break;
    case EV_OWNER_END:
        if (j->state != RUN)
            return 0;
        owner_apply(s, j, -1);
        if ((rc = flexpu_engine_release(s->e, j->alloc_id, err)))
            return rc;
        j->state = DONE;
        for (int k = 0; k < j->pl.ngpu; k++) {
            freed[nfreed++] = gid_of(s, &j->pl, k);
            if ((rc = borrower_rates(s, freed[nfreed - 1], e.t)))
                return rc;
        }
        break;
    case EV_BATCH_END:
        if (j->gen != e.gen || (j->state != RUN && j->state != BORROW))
            return 0;
        if (j->state == BORROW)
            freed[nfreed++] = j->gid;
        else
            for (int k = 0; k < j->pl.ngpu; k++)
                freed[nfreed++] = gid_of(s, &j->pl, k);
        if ((rc = batch_end(s, e.id, e.t, err)))
            return rc;
        break;
    }
    if (s->nowait > 0 && (rc = serve_owners(s, e.t, full, err)))
        return rc;
    return serve_batch(s, e.t, full ? NULL : freed, nfreed, err);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(const double *v, int n, double p)
{
    return n ? v[(int)((n - 1) * p)] : 0;
}

static void results(struct sim *s)
{
    struct fx_reuse_result *o = s->out;
    for (int i = s->nowners; i < s->njobs; i++) /* work in progress at the end is kept */
        if (s->jobs[i].state == RUN || s->jobs[i].state == BORROW) {
            progress(s, &s->jobs[i], s->w1);
            s->useful_batch += s->jobs[i].win;
            if (s->jobs[i].state == BORROW)
                s->useful_borrowed += s->jobs[i].win;
        }
    double win = s->w1 - s->w0, cap = (double)s->ngpus * FLEXPU_GPU_MILLI * win;
    o->window_s = win;
    o->owner_share = s->a_owner / cap;
    o->batch_share = s->useful_batch / cap;
    o->borrowed_share = s->useful_borrowed / cap;
    o->busy_share = o->owner_share + o->batch_share;
    o->lost_share = s->lost / cap;
    o->reserved_share = s->a_res / cap;
    o->alloc_share = s->a_alloc / cap;
    o->evictions_per_hour = (o->evict_memory + o->evict_reclaim + o->evict_owner) / (win / 3600);
    qsort(s->jct, (size_t)s->njct, sizeof(double), cmp_double);
    qsort(s->runs, (size_t)s->njct, sizeof(double), cmp_double);
    o->jct_p50 = pct(s->jct, s->njct, 0.5);
    o->jct_p99 = pct(s->jct, s->njct, 0.99);
    o->run_p50 = pct(s->runs, s->njct, 0.5);
    o->run_p99 = pct(s->runs, s->njct, 0.99);
    double acc = 0;
    o->owner_p99 = 1;
    for (int b = 0; b < NBINS && s->bursts > 0; b++) {
        acc += s->hist[b];
        if (acc >= 0.99 * s->bursts) {
            o->owner_p99 = 1 + b / 100.0;
            break;
        }
    }
    o->owner_delayed = s->bursts > 0 ? s->delayed / s->bursts : 0;
    o->npoints = s->next_point;
}

static int cmp_arrival(const void *pa, const void *pb, void *ctx)
{
    const struct sim *s = ctx;
    int a = *(const int *)pa, b = *(const int *)pb;
    int64_t x = s->t->pods[a].creation, y = s->t->pods[b].creation;
    return x != y ? (x < y ? -1 : 1) : a - b;
}

static int check_config(const struct fx_reuse_config *c, struct flexpu_error *err)
{
    struct {
        const char *name;
        double v, lo, hi;
    } f[] = {
        {"owner_rate", c->owner_rate, 1, 1e6},
        {"backlog", c->backlog, 1, 1e6},
        {"window_s", c->window_s, 0, 1e9},
        {"slice_ms", c->slice_ms, 0, 1e4},
        {"request_ms", c->request_ms, 0.001, 1e6},
        {"predict_samples", c->predict_samples, 1, MAXHIST},
        {"reclaim_samples", c->reclaim_samples, 1, 1e6},
        {"reclaim_gap", c->reclaim_gap, 0, 1e6},
        {"reclaim_per_step", c->reclaim_per_step, 0, 1e6},
    };
    for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++)
        if (!(f[i].v >= f[i].lo && f[i].v <= f[i].hi))
            return flexpu_error_set(err, FLEXPU_EINVAL,
                                    "field '%s': invalid value '%g': must be in [%g, %g]",
                                    f[i].name, f[i].v, f[i].lo, f[i].hi);
    return 0;
}

/* Owners and the BE list; the window; engine and GPUs. */
static int setup(struct sim *s, struct flexpu_error *err)
{
    const struct fx_trace *t = s->t;
    int nls = 0;
    s->be = fx_malloc(((size_t)t->npods + 1) * sizeof(int));
    int *ls = fx_malloc(((size_t)t->npods + 1) * sizeof(int));
    s->gbase = fx_malloc(((size_t)t->nnodes + 1) * sizeof(int));
    s->node_mask = fx_calloc((size_t)t->nnodes + 1, sizeof(uint64_t));
    if (!s->be || !ls || !s->gbase || !s->node_mask) {
        fx_free(ls);
        return flexpu_error_set(err, FLEXPU_ENOMEM, "out of memory for the reuse replay");
    }
    for (int i = 0; i < t->npods; i++) {
        const struct fx_trace_pod *p = &t->pods[i];
        if (p->num_gpu > 0 && p->qos == FLEXPU_QOS_LS)
            ls[nls++] = i;
        else if (p->num_gpu > 0 && p->qos == FLEXPU_QOS_BE)
            s->be[s->nbe++] = i;
    }
    int rc = 0;
    if (nls == 0 || s->nbe == 0)
        rc = flexpu_error_set(err, FLEXPU_EINVAL,
                              "the trace has %d LS pods with GPUs (owners) and %d BE pods with "
                              "GPUs (batch): both must be some",
                              nls, s->nbe);
    for (int i = 0; i < t->npods && rc == 0; i++)
        if (t->pods[i].creation < 0)
            rc = flexpu_error_set(err, FLEXPU_EINVAL,
                                  "pod %s (line %d): the reuse replay needs creation_time",
                                  t->pods[i].name, i + 2);
    if (rc) {
        fx_free(ls);
        return rc;
    }
    qsort_r(ls, (size_t)nls, sizeof(int), cmp_arrival, s);
    qsort_r(s->be, (size_t)s->nbe, sizeof(int), cmp_arrival, s);
    double c10 = (double)t->pods[ls[nls / 10]].creation;
    double c90 = (double)t->pods[ls[nls - 1 - nls / 10]].creation;
    s->w0 = 0;
    s->w1 = s->c->window_s > 0 ? s->c->window_s : (c90 - c10) / s->c->owner_rate;
    if (s->w1 <= 0)
        s->w1 = 1;
    s->cap_jobs = nls + s->c->backlog + 1024;
    s->jobs = fx_calloc((size_t)s->cap_jobs, sizeof(*s->jobs));
    s->owait = fx_malloc((size_t)nls * sizeof(int));
    s->backlog = fx_malloc(((size_t)s->c->backlog + (size_t)nls + 16) * sizeof(int));
    if (!s->jobs || !s->owait || !s->backlog) {
        fx_free(ls);
        return flexpu_error_set(err, FLEXPU_ENOMEM, "out of memory for the reuse replay");
    }
    s->nowners = s->njobs = nls;
    s->t_start = INFINITY;
    for (int k = 0; k < nls && rc == 0; k++) {
        const struct fx_trace_pod *p = &t->pods[ls[k]];
        struct job *o = &s->jobs[k];
        o->kind = OWNER;
        o->state = WAIT;
        o->trace = ls[k];
        o->alloc_id = -1;
        if ((rc = fx_trace_req(s->e, p, &o->req, err)))
            break;
        int64_t from = p->scheduled >= 0 ? p->scheduled : p->creation;
        o->run = p->deletion >= from ? (double)(p->deletion - from) : 1;
        o->arrival = ((double)p->creation - c10) / s->c->owner_rate;
        o->series = (int)flexpu_rng_below(&s->rng, (uint64_t)s->u->npods);
        o->offset = (int)flexpu_rng_below(&s->rng, (uint64_t)s->u->nsteps);
        s->t_start = fmin(s->t_start, o->arrival);
        if (push(s, o->arrival, EV_OWNER_ARRIVE, k, 0))
            rc = flexpu_error_set(err, FLEXPU_ENOMEM, "out of memory for events");
    }
    fx_free(ls);
    if (rc)
        return rc;
    s->out->owners = nls;
    for (int n = 0; n < t->nnodes; n++) {
        s->gbase[n] = s->ngpus;
        s->ngpus += t->nodes[n].ngpu;
        if ((rc = flexpu_engine_models(s->e, t->nodes[n].model, &s->node_mask[n], err)))
            return rc;
    }
    s->g = fx_calloc((size_t)s->ngpus + 1, sizeof(*s->g));
    if (!s->g)
        return flexpu_error_set(err, FLEXPU_ENOMEM, "out of memory for the GPUs");
    for (int n = 0; n < t->nnodes; n++)
        for (int k = 0; k < t->nodes[n].ngpu; k++) {
            s->g[s->gbase[n] + k].node = n;
            s->g[s->gbase[n] + k].last_reclaim = -1000000;
        }
    if (s->t_start > s->w0)
        s->t_start = s->w0;
    s->last_t = s->t_start;
    return push(s, s->t_start, EV_TICK, 0, 0) ? FLEXPU_ENOMEM : 0;
}

static void teardown(struct sim *s)
{
    fx_free(s->jobs);
    fx_free(s->g);
    fx_free(s->gbase);
    fx_free(s->node_mask);
    fx_free(s->heap);
    fx_free(s->backlog);
    fx_free(s->owait);
    fx_free(s->be);
    fx_free(s->jct);
    fx_free(s->runs);
    flexpu_engine_free(s->e);
}

void fx_reuse_defaults(struct fx_reuse_config *c)
{
    *c = (struct fx_reuse_config){.owner_rate = 40, .backlog = 2000, .window_s = 0, .seed = 42,
                                  .slice_ms = 10, .request_ms = 50, .predict_samples = 10,
                                  .reclaim_samples = 3, .reclaim_gap = 5,
                                  .reclaim_per_step = 50};
}

const char *fx_reuse_mode_name(enum fx_reuse_mode m)
{
    static const char *const names[] = {"whole-GPU", "flexpu, no reuse", "flexpu + reuse"};
    return m >= 0 && m < FX_REUSE_MODES_ ? names[m] : "?";
}

int fx_reuse_run(const struct fx_trace *t, const struct fx_genai *u, enum fx_reuse_mode mode,
                 const struct fx_reuse_config *c, struct fx_reuse_result *out,
                 struct flexpu_error *err)
{
    memset(out, 0, sizeof(*out));
    out->mode = mode;
    if (mode < 0 || mode >= FX_REUSE_MODES_)
        return flexpu_error_set(err, FLEXPU_EINVAL, "field 'mode': invalid value '%d'", (int)mode);
    if (!u || u->npods == 0 || u->nsteps == 0 || !(u->step_s > 0))
        return flexpu_error_set(err, FLEXPU_EINVAL, "no usage series to give the owners");
    int rc = check_config(c, err);
    if (rc)
        return rc;
    struct sim s = {.t = t, .u = u, .c = c, .mode = mode, .out = out};
    s.out->backlog_min = c->backlog;
    flexpu_rng_seed(&s.rng, c->seed);
    if ((rc = fx_trace_engine(t, &s.e, err)) == 0 &&
        (rc = flexpu_engine_set_policy(s.e, mode == FX_REUSE_WHOLE ? "whole" : "flexpu", err)) ==
            0 &&
        (rc = fx_trace_set_workload(s.e, t, 0, err)) == 0)
        rc = setup(&s, err);
    double t0 = fx_mono_seconds();
    while (rc == 0 && s.nheap > 0 && s.heap[0].t <= s.w1) {
        struct ev e = pop(&s);
        account(&s, e.t);
        rc = handle(&s, e, err);
        if (e.t >= s.w0 && s.nbacklog < out->backlog_min)
            out->backlog_min = s.nbacklog;
    }
    if (rc == 0) {
        account(&s, s.w1);
        results(&s);
    }
    out->seconds = fx_mono_seconds() - t0;
    teardown(&s);
    return rc;
}

/* ---- report ------------------------------------------------------------------- */

void fx_reuse_report(FILE *f, const struct fx_reuse_result *r, int n,
                     const struct fx_reuse_config *c)
{
    fprintf(f, "window %.1f h; owners arrive %gx faster than in the trace; standing backlog of "
               "%d batch jobs; slice %g ms, owner request %g ms\n\n",
            r[0].window_s / 3600, c->owner_rate, c->backlog, c->slice_ms, c->request_ms);
    fprintf(f, "| policy | GPU busy | owners | batch (borrowed) | lost | owners reserve | "
               "allocated | batch done | JCT p50 / p99 | run p50 / p99 | evictions/h (memory, "
               "reclaim, owner) | owners' p99 slowdown (met a tenant) | refused | seconds |\n");
    fprintf(f, "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for (int i = 0; i < n; i++) {
        const struct fx_reuse_result *x = &r[i];
        fprintf(f,
                "| %s | %.1f%% | %.1f%% | %.1f%% (%.1f%%) | %.1f%% | %.1f%% | %.1f%% | %d | "
                "%.0f / %.0f s | %.0f / %.0f s | %.1f (%d, %d, %d) | %.2fx (%.1f%%) | %lld | "
                "%.1f |\n",
                fx_reuse_mode_name(x->mode), 100 * x->busy_share, 100 * x->owner_share,
                100 * x->batch_share, 100 * x->borrowed_share, 100 * x->lost_share,
                100 * x->reserved_share, 100 * x->alloc_share, x->batch_done, x->jct_p50,
                x->jct_p99, x->run_p50, x->run_p99, x->evictions_per_hour, x->evict_memory,
                x->evict_reclaim, x->evict_owner, x->owner_p99, 100 * x->owner_delayed,
                (long long)x->refused, x->seconds);
    }
    const struct fx_reuse_result *no = NULL, *re = NULL;
    for (int i = 0; i < n; i++) {
        if (r[i].mode == FX_REUSE_FLEXPU)
            no = &r[i];
        if (r[i].mode == FX_REUSE_BORROW)
            re = &r[i];
    }
    if (no && re)
        fprintf(f, "\ntargets (issue 16): busy share with reuse %.2fx flexpu without (>= 1.3: %s), "
                   "%.1f%% (>= 76%%: %s); owners' p99 slowdown %.2fx (<= 1.5: %s); refused %lld "
                   "(0: %s); fewest batch jobs waiting %d (a standing backlog: %s)\n",
                no->busy_share > 0 ? re->busy_share / no->busy_share : 0,
                re->busy_share >= 1.3 * no->busy_share ? "met" : "NOT met", 100 * re->busy_share,
                re->busy_share >= 0.76 ? "met" : "NOT met", re->owner_p99,
                re->owner_p99 <= 1.5 ? "met" : "NOT met", (long long)re->refused,
                re->refused == 0 ? "met" : "NOT met", re->backlog_min,
                re->backlog_min > 0 ? "yes" : "NO");
}

int fx_reuse_plot(const char *path, const struct fx_reuse_result *r, int n,
                  struct flexpu_error *err)
{
    struct fx_series sr[FX_REUSE_MODES_];
    double y[FX_REUSE_MODES_][FX_REUSE_POINTS];
    if (n > FX_REUSE_MODES_)
        n = FX_REUSE_MODES_;
    for (int i = 0; i < n; i++) {
        for (int k = 0; k < r[i].npoints; k++)
            y[i][k] = 100 * r[i].used[k];
        sr[i] = (struct fx_series){fx_reuse_mode_name(r[i].mode), r[i].t, y[i], r[i].npoints};
    }
    return fx_svg_plot(path, "GPU time used (owners + batch), % of the cluster", "hours",
                       "% of GPU time", 0, 100, sr, n, err);
}
