/* SPDX-License-Identifier: Apache-2.0 */
/* The reuse replay (sim/reuse.h, docs/REUSE.md). */
#include "sim/reuse.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "flexpu/gang.h"
#include "sim/reuse_bound.h"
#include "sim/svg.h"
#include "util/alloc.h"
#include "util/clock.h"

#define MAXB      8   /* borrowers on one GPU */
#define MAXHIST   64  /* predictor samples */
#define SCAN      64  /* backlog jobs looked at in one pass */
#define NFAILED   8   /* request shapes that fitted nowhere in one pass */
#define NBFAILED  64  /* the same for borrowers (a cheaper search) */
#define NBINS     20000 /* slowdown histogram: 1.000 .. 21.000 by 0.001 */
#define NCPULEV   3   /* the bound's levels (bound_setup): of CPU per GPU, */
#define NMEMLEV   4   /* of GPU memory, */
#define NLEV      (NCPULEV * NMEMLEV) /* and both */
#define GPU_MEM   1000.0 /* GPU memory in thousandths: shares reserve it in proportion */
/* The compute kept free of borrowers above the owners' predicted use, as the
 * scheduler's FX_BORROW_HEADROOM (src/scheduler/borrow.h), thousandths. */
#define HEADROOM  200.0
/* flexpu_rng_derive's stream of the owners' own draws (the engine's ties
 * use the generator seeded with the seed itself). */
#define OWNER_STREAM 1

enum kind { OWNER, BATCH };
enum state { WAIT, RUN, BORROW, DONE };
enum ev_type { EV_OWNER_END, EV_BATCH_END, EV_TICK };

/* A batch job shape for the bound's witness (witness_sample). */
struct wshape {
    double cpu, mem, gmem, share; /* cpu INFINITY: asks several GPUs, left out */
};

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
    float duty, mres; /* mres: memory reserved, a fraction of its share's (1: all of it) */
    float mem;        /* memory in use now, a fraction of the GPU's, before the cap at its
                       * reservation */
    long rose, stall_tick; /* ticks its memory last rose, and its allocation last waited */
    bool stall;            /* its allocation waited; its next requests wait too */
    float hd[MAXHIST];
};

struct gpu {
    int node;
    double own_use, own_res, own_mres, pred_use; /* owners: use, compute and memory
                                                  * reserved, predicted use; thousandths */
    double own_muse; /* owners' memory in use (idle: what borrowers stay out of), thousandths */
    double batch; /* ordinary batch compute (and memory: shares reserve in proportion) */
    int nn, cap_n, *n; /* the ordinary batch jobs on it */
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
    int njobs, cap_jobs;
    int *own, nown, cap_own; /* running owners */
    int *ls, nls, ls_next;   /* the trace's LS pods with GPUs, in creation order */
    double owner_wait;       /* GPU compute the waiting owners ask, thousandths */
    float *peak;             /* each GenAI pod's peak memory */
    int *cand;               /* scratch: GPUs a borrower may go to */
    double *fw, *fc, *fa, *fb; /* scratch of the arbiter's division: weights, caps, two GPUs'
                                * allotments */
    int cap_fill;
    struct gpu *g;
    int ngpus, *gbase;
    uint64_t *node_mask;
    struct ev *heap;
    int nheap, cap_heap;
    int *backlog, nbacklog, cap_backlog; /* job indices, oldest first */
    int *owait, nowait, cap_owait;
    int *be, nbe, be_next; /* the trace's BE pods with GPUs, in creation order */
    double be_t0, be_span;
    long tick;
    double w0, w1, last_t;
    /* sums */
    double owner_use, batch_rate, owner_res;
    double a_owner, a_res, a_alloc, useful_batch, useful_borrowed, lost;
    double *jct, *runs;
    int njct, cap_jct;
    double hist[NBINS], bursts, delayed, stalled;
    int next_point;
    /* The upper bounds (sim/reuse_bound.h), kept per node and refreshed
     * only where the owners changed. Level k < nlev takes the BE pods'
     * shapes whose CPU per GPU is at least theta[k] and GPU memory at least
     * phi[k] (level 0: all of them), the jobs present below either counted
     * in nrare[k]. The owners' CPU and host memory on each node; the nodes
     * to refresh; each node's most batch GPU time per level and
     * fx_reuse_bound (nnodes x NLEV x FX_REUSE_BOUNDS), their sums, and the
     * bounds' time integrals over the window. */
    struct fx_rbound_table shapes[NLEV];
    double theta[NLEV], phi[NLEV];
    int nlev, nrare[NLEV];
    double *own_cpu, *own_mem, *nbest;
    int *dirty, ndirty;
    bool *is_dirty;
    struct fx_rbound_gpu *bgpu;
    /* The witness (witness_sample): the BE pods' distinct shapes, each
     * pod's shape (by trace pod), how many jobs of each are present, and
     * the sum of its samples over the window. */
    struct wshape *wshape;
    int nwshape, *pod_shape, *wcount, *wleft, *gorder;
    double a_witness;
    int nwitness;
    double bsum[NLEV][FX_REUSE_BOUNDS], a_bound[FX_REUSE_BOUNDS], a_hand[FX_REUSE_BOUNDS];
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

/* The runtime's arbiter (fx_arb_decide, runtime/arbiter.c) gives the GPU
 * to the highest priority with work, and among tenants of one priority to
 * the one with the least GPU time per unit of share weight (its slice's
 * cores): GPU-bound tenants of one priority divide what the higher ones
 * leave in proportion to their shares. A capped tenant (gpu-cores-limit
 * below 100) gets at most its cap of the wall clock (its bucket), and what
 * it cannot take goes to the others. out[i]: tenant i's thousandths of the
 * GPU's time, at most cap[i]; they add up to at most avail. */
static void arbiter_divide(double avail, int n, const double *w, const double *cap, double *out)
{
    double left = avail > 0 ? avail : 0;
    for (int i = 0; i < n; i++)
        out[i] = -1;
    for (;;) {
        double wsum = 0;
        for (int i = 0; i < n; i++)
            if (out[i] < 0)
                wsum += w[i];
        if (wsum <= 0)
            return;
        double level = left / wsum;
        bool capped = false;
        for (int i = 0; i < n; i++)
            if (out[i] < 0 && cap[i] <= level * w[i]) {
                out[i] = cap[i];
                left -= cap[i];
                capped = true;
            }
        if (!capped) {
            for (int i = 0; i < n; i++)
                if (out[i] < 0)
                    out[i] = level * w[i];
            return;
        }
    }
}

/* The most of one GPU's time (thousandths) batch job j may take there:
 * uncapped (idle: the trace's pods name no gpu-cores-limit, and flexpu's
 * default is none), or capped at its share (share). */
static double batch_cap(const struct sim *s, const struct job *j)
{
    return s->c->batch_gpu == FX_BATCH_GPU_SHARE ? j->req.gpu_milli : FLEXPU_GPU_MILLI;
}

/* Room for the arbiter's scratch of n tenants. */
static int fill_room(struct sim *s, int n)
{
    if (n <= s->cap_fill)
        return 0;
    int cap = n > 2 * s->cap_fill ? n : 2 * s->cap_fill;
    double *a[4] = {s->fw, s->fc, s->fa, s->fb};
    for (int k = 0; k < 4; k++) {
        double *x = fx_realloc(a[k], (size_t)cap * sizeof(double));
        if (!x)
            return FLEXPU_ENOMEM;
        a[k] = x;
    }
    s->fw = a[0];
    s->fc = a[1];
    s->fa = a[2];
    s->fb = a[3];
    s->cap_fill = cap;
    return 0;
}

/* The ordinary (normal) batch jobs of GPU gi divide the time its owners
 * (high) leave: into out[k] for gi's k-th job. Each is taken as asking for
 * all it can get there (a job on several GPUs uses only the least of what
 * its GPUs give it, and the rest of its allotment is not given to the
 * other ordinary jobs: a lower bound, and the trace's BE pods ask one GPU). */
static void normal_divide(struct sim *s, int gi, double *out)
{
    const struct gpu *g = &s->g[gi];
    for (int k = 0; k < g->nn; k++) {
        const struct job *j = &s->jobs[g->n[k]];
        double w = 1;
        for (int m = 0; m < j->pl.ngpu; m++)
            if (gid_of(s, &j->pl, m) == gi)
                w = j->pl.milli[m];
        s->fw[k] = w > 1 ? w : 1;
        s->fc[k] = batch_cap(s, j);
    }
    arbiter_divide(FLEXPU_GPU_MILLI - g->own_use, g->nn, s->fw, s->fc, out);
}

/* The GPU time (thousandths) GPU g's ordinary batch jobs use: each job's
 * rate is spread over its GPUs. */
static double normal_use(const struct sim *s, const struct gpu *g)
{
    double u = 0;
    for (int k = 0; k < g->nn; k++) {
        const struct job *j = &s->jobs[g->n[k]];
        u += j->rate / (j->pl.ngpu > 0 ? j->pl.ngpu : 1);
    }
    return u;
}

/* The borrowers (low) of GPU gi divide what its owners and ordinary jobs
 * leave, by their shares, each at most its cap. */
static int borrower_rates(struct sim *s, int gi, double now)
{
    struct gpu *g = &s->g[gi];
    if (g->nb == 0)
        return 0;
    if (fill_room(s, g->nb))
        return FLEXPU_ENOMEM;
    for (int k = 0; k < g->nb; k++) {
        const struct job *j = &s->jobs[g->b[k]];
        s->fw[k] = j->req.gpu_milli > 1 ? j->req.gpu_milli : 1;
        s->fc[k] = batch_cap(s, j);
    }
    /* Into fb, never fa: gpu_rates calls this for a multi-GPU job's other
     * GPUs while it still reads its own GPU's division from fa. */
    arbiter_divide(FLEXPU_GPU_MILLI - g->own_use - normal_use(s, g), g->nb, s->fw, s->fc, s->fb);
    for (int k = 0; k < g->nb; k++) {
        int id = g->b[k];
        if (fabs(s->fb[k] - s->jobs[id].rate) > 1e-9) {
            int rc = set_rate(s, id, now, s->fb[k]);
            if (rc)
                return rc;
        }
    }
    return 0;
}

/* Brings the rates of everything on GPU gi up to date after its owners or
 * its batch jobs changed: the ordinary jobs first (a job on several GPUs
 * at the least its GPUs give it, its other GPUs' borrowers then getting
 * the rest), then the borrowers. */
static int gpu_rates(struct sim *s, int gi, double now)
{
    struct gpu *g = &s->g[gi];
    if (fill_room(s, g->nn))
        return FLEXPU_ENOMEM;
    normal_divide(s, gi, s->fa);
    for (int k = 0; k < g->nn; k++) {
        int id = g->n[k];
        struct job *j = &s->jobs[id];
        double per = s->fa[k];
        for (int m = 0; m < j->pl.ngpu; m++) {
            int o = gid_of(s, &j->pl, m);
            if (o == gi)
                continue;
            if (fill_room(s, s->g[o].nn))
                return FLEXPU_ENOMEM;
            normal_divide(s, o, s->fb);
            for (int q = 0; q < s->g[o].nn; q++)
                if (s->g[o].n[q] == id)
                    per = fmin(per, s->fb[q]);
        }
        double r = per * (j->pl.ngpu > 0 ? j->pl.ngpu : 1);
        if (fabs(r - j->rate) <= 1e-9)
            continue;
        int rc = set_rate(s, id, now, r);
        for (int m = 0; m < j->pl.ngpu && rc == 0; m++)
            if (gid_of(s, &j->pl, m) != gi)
                rc = borrower_rates(s, gid_of(s, &j->pl, m), now);
        if (rc)
            return rc;
    }
    return borrower_rates(s, gi, now);
}

/* Adds ordinary job id to (add) or removes it from the lists of its GPUs. */
static int normal_list(struct sim *s, int id, bool add)
{
    const struct job *j = &s->jobs[id];
    for (int m = 0; m < j->pl.ngpu; m++) {
        struct gpu *g = &s->g[gid_of(s, &j->pl, m)];
        if (!add) {
            for (int k = 0; k < g->nn; k++)
                if (g->n[k] == id) {
                    g->n[k] = g->n[--g->nn];
                    break;
                }
            continue;
        }
        if (g->nn == g->cap_n) {
            int cap = g->cap_n ? 2 * g->cap_n : 4;
            int *a = fx_realloc(g->n, (size_t)cap * sizeof(int));
            if (!a)
                return FLEXPU_ENOMEM;
            g->n = a;
            g->cap_n = cap;
        }
        g->n[g->nn++] = id;
    }
    return 0;
}

/* The compute shares of GPU g's borrowers, thousandths. */
static double lent_milli(const struct sim *s, const struct gpu *g)
{
    double m = 0;
    for (int k = 0; k < g->nb; k++)
        m += s->jobs[g->b[k]].req.gpu_milli;
    return m;
}

/* The memory they hold: batch_mem of their shares' memory each. */
static double borrowed_mem(const struct sim *s, const struct gpu *g)
{
    return lent_milli(s, g) * s->c->batch_mem;
}

/* Room for one more job in the backlog (evictions put jobs back). */
static int backlog_room(struct sim *s)
{
    if (s->nbacklog < s->cap_backlog)
        return 0;
    int cap = s->cap_backlog ? 2 * s->cap_backlog : 1024;
    int *a = fx_realloc(s->backlog, (size_t)cap * sizeof(int));
    if (!a)
        return FLEXPU_ENOMEM;
    s->backlog = a;
    s->cap_backlog = cap;
    return 0;
}

static int backlog_front(struct sim *s, int id)
{
    if (backlog_room(s))
        return FLEXPU_ENOMEM;
    memmove(&s->backlog[1], &s->backlog[0], (size_t)s->nbacklog * sizeof(int));
    s->backlog[0] = id;
    s->nbacklog++;
    return 0;
}

/* The GPUs batch job j left (a borrower's one, or its allocation's) give
 * its time to the others there. */
static int batch_gone_rates(struct sim *s, const struct job *j, bool borrower, double now)
{
    if (borrower)
        return gpu_rates(s, j->gid, now);
    for (int k = 0; k < j->pl.ngpu; k++) {
        int rc = gpu_rates(s, gid_of(s, &j->pl, k), now);
        if (rc)
            return rc;
    }
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
        normal_list(s, id, false);
    }
    bool borrower = j->state == BORROW;
    j->state = WAIT;
    j->alloc_id = -1;
    j->rate = j->done = j->win = 0;
    j->gen++;
    if (backlog_front(s, id))
        return flexpu_error_set(err, FLEXPU_ENOMEM, "out of memory for the backlog");
    return batch_gone_rates(s, j, borrower, now);
}

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

/* --borrow-mem idle as flexpu-scheduler has it (scheduler/borrow.h): only
 * light jobs, whose memory is at most a quarter of their share's
 * (batch_mem <= 0.25), take memory owners reserved but do not use, and
 * they borrow where half their share is predicted idle. Other jobs keep
 * the unreserved rules. */
static bool idle_light(const struct sim *s)
{
    return s->c->borrow_mem == FX_BORROW_MEM_IDLE && s->c->batch_mem <= 0.25 + 1e-9;
}

static double fit(const struct sim *s)
{
    return idle_light(s) ? fmin(s->c->borrow_fit, 0.5) : s->c->borrow_fit;
}

/* The scheduler's memory headroom above the owners' measured use,
 * thousandths of the GPU. */
#define MEM_HEADROOM (FX_BORROW_MEM_HEADROOM_PCT * 10.0)

/* The owners' memory on g that borrowers must stay out of: what they
 * reserved (unreserved), or what they use now (idle: an owner whose use
 * rises into a borrower's memory has it killed, node/reclaim_mem.h). */
static double owners_mem_now(const struct sim *s, const struct gpu *g)
{
    return idle_light(s) ? g->own_muse : g->own_mres;
}

/* The same when placing a borrower, and for the scheduler's reclaim: idle
 * keeps it off the owners' latest use plus MEM_HEADROOM, or off what they
 * reserved where that leaves more (the scheduler's fx_borrow_mem_room). */
static double owners_mem_placing(const struct sim *s, const struct gpu *g)
{
    return idle_light(s) ? fmin(g->own_mres, g->own_muse + MEM_HEADROOM) : g->own_mres;
}

/* Counts belong to the measured window only, as its rates are per hour of it. */
static bool in_window(const struct sim *s, double now)
{
    return now >= s->w0 && now < s->w1;
}

static void owner_delayed(struct sim *s, struct job *o, double now)
{
    if (o->stall_tick == s->tick)
        return;
    o->stall_tick = s->tick;
    o->stall = true;
    if (in_window(s, now))
        s->out->owner_delays++;
}

/* The rule that keeps owners from ever being refused. Unreserved: borrowers
 * hold only memory no allocation reserved, so when a new allocation (an
 * owner, an ordinary batch job) reserves memory a borrower holds, borrowers
 * go first, the one with the least work done first (evict_memory).
 * Reservations never exceed the GPU (shares do not, and a reservation is at
 * most its share), so that always makes room; `refused` counts it ever
 * failing. Idle: the same against what owners use (never more than they
 * reserved), so again evicting every borrower always makes room; the owner
 * allocation that found borrowers in its way is delayed (evict_latency_s:
 * the node agent kills them, the driver frees their memory, the allocation
 * is retried), never refused. `who` is the owner that starts, -1 at a step
 * (the owners on g whose memory rose), -2 an ordinary batch job (its wait
 * is not an owner's). */
static int settle_memory(struct sim *s, int gi, int who, double now, struct flexpu_error *err)
{
    struct gpu *g = &s->g[gi];
    int evicted = 0;
    while (g->nb > 0 && owners_mem_now(s, g) + g->batch + borrowed_mem(s, g) > GPU_MEM + 1e-6) {
        int rc = evict(s, least_done(s, g), now, err);
        if (rc)
            return rc;
        if (in_window(s, now))
            s->out->evict_memory++;
        evicted++;
    }
    if (owners_mem_now(s, g) + g->batch + borrowed_mem(s, g) > GPU_MEM + 1e-6)
        s->out->refused++;
    if (evicted > 0 && idle_light(s) && who >= 0)
        owner_delayed(s, &s->jobs[who], now);
    for (int i = 0; evicted > 0 && idle_light(s) && who == -1 && i < s->nown; i++) {
        struct job *o = &s->jobs[s->own[i]];
        if (o->rose != s->tick)
            continue;
        for (int k = 0; k < o->pl.ngpu; k++)
            if (gid_of(s, &o->pl, k) == gi)
                owner_delayed(s, o, now);
    }
    /* At a step, the scheduler's reclaim (idle): borrowers the owners'
     * latest use plus the headroom leaves no room for go through the
     * Eviction API, no owner waiting for them. */
    while (who == -1 && idle_light(s) && g->nb > 0 &&
           owners_mem_placing(s, g) + g->batch + borrowed_mem(s, g) > GPU_MEM + 1e-6) {
        int rc = evict(s, least_done(s, g), now, err);
        if (rc)
            return rc;
        if (in_window(s, now))
            s->out->evict_memory++;
    }
    return 0;
}

/* ---- owners ------------------------------------------------------------------ */

/* The predictor: the most the owner used in its last predict_samples
 * samples; all of its reservation until it has that many. (The GenAI
 * series cover 22.8 hours, too short to learn a daily pattern from one day
 * and check it on another: docs/REUSE.md.) */
static double predicted(const struct sim *s, const struct job *o)
{
    int n = s->c->predict_samples;
    if (o->age < n)
        return 1;
    float d = 0;
    for (int k = 0; k < n; k++)
        d = fmaxf(d, o->hd[k]);
    return d;
}

/* An owner's memory on a GPU where it reserves res thousandths of compute:
 * the fraction f of the GPU's memory, never more than it reserved (an owner
 * that grows past what it named fails its own allocation, docs/REUSE.md). */
static double owner_mem_milli(const struct job *o, double res, float f)
{
    return fmin(f * GPU_MEM, o->mres * res);
}

/* Adds (sign 1) or removes (-1) an owner's use, memory and prediction on
 * its GPUs. */
static void bound_dirty(struct sim *s, int node);
static void bound_present(struct sim *s, const struct job *j, int sign);

static void owner_apply(struct sim *s, const struct job *o, int sign)
{
    double pd = predicted(s, o);
    s->own_cpu[o->pl.node] += sign * (double)o->req.cpu_milli;
    s->own_mem[o->pl.node] += sign * (double)o->req.mem_mib;
    bound_dirty(s, o->pl.node);
    for (int k = 0; k < o->pl.ngpu; k++) {
        struct gpu *g = &s->g[gid_of(s, &o->pl, k)];
        double res = o->pl.milli[k];
        g->own_use += sign * o->duty * o->req.gpu_milli;
        g->own_res += sign * res;
        g->own_mres += sign * o->mres * res;
        g->own_muse += sign * owner_mem_milli(o, res, o->mem);
        g->pred_use += sign * pd * o->req.gpu_milli;
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
    if (p->mem[k] > o->mem)
        o->rose = s->tick;
    o->mem = p->mem[k];
    memmove(&o->hd[1], &o->hd[0], (size_t)(s->c->predict_samples - 1) * sizeof(float));
    o->hd[0] = o->duty;
}

static int owner_start(struct sim *s, int id, double now, int64_t alloc, struct flexpu_error *err)
{
    struct job *o = &s->jobs[id];
    o->state = RUN;
    o->alloc_id = alloc;
    o->age = 0;
    o->mem = 0;
    o->stall_tick = -1;
    owner_sample(s, o);
    owner_apply(s, o, 1);
    if (s->nown == s->cap_own) {
        int cap = s->cap_own ? 2 * s->cap_own : 256;
        int *a = fx_realloc(s->own, (size_t)cap * sizeof(int));
        if (!a)
            return flexpu_error_set(err, FLEXPU_ENOMEM, "out of memory for owners");
        s->own = a;
        s->cap_own = cap;
    }
    s->own[s->nown++] = id;
    s->owner_wait -= (double)o->req.gpu_milli * o->req.num_gpu;
    s->out->owners_started++;
    for (int k = 0; k < o->pl.ngpu; k++) {
        int gi = gid_of(s, &o->pl, k), rc;
        if ((rc = settle_memory(s, gi, id, now, err)) || (rc = gpu_rates(s, gi, now)))
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
    for (int i = 0; i < s->njobs; i++)
        nc += s->jobs[i].kind == BATCH && (s->jobs[i].state == RUN || s->jobs[i].state == BORROW);
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
    for (int i = 0; i < s->njobs; i++) {
        struct job *j = &s->jobs[i];
        if (j->kind != BATCH || (j->state != RUN && j->state != BORROW))
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
        if (in_window(s, now))
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

/* A new job's index, its record zeroed; -1 when out of memory. */
static int new_job(struct sim *s)
{
    if (s->njobs == s->cap_jobs) {
        int cap = s->cap_jobs * 2;
        struct job *a = fx_realloc(s->jobs, (size_t)cap * sizeof(*a));
        if (!a)
            return -1;
        s->jobs = a;
        s->cap_jobs = cap;
    }
    memset(&s->jobs[s->njobs], 0, sizeof(s->jobs[0]));
    s->jobs[s->njobs].alloc_id = -1;
    s->jobs[s->njobs].first_start = -1;
    return s->njobs++;
}

static bool same_shape(const struct flexpu_pod_req *a, const struct flexpu_pod_req *b)
{
    return a->cpu_milli == b->cpu_milli && a->mem_mib == b->mem_mib && a->num_gpu == b->num_gpu &&
           a->gpu_milli == b->gpu_milli && a->model_mask == b->model_mask;
}

static bool may_fit_freed(const struct sim *s, const struct flexpu_pod_req *req, const int *gpus,
                          int ngpus);

/* Starts the waiting owners that fit, oldest first, on gpus[0..n) (NULL:
 * anywhere; then, with `preempt`, evicting batch jobs for those that fit
 * nowhere). A shape that did not fit is not tried again in the same pass. */
static int serve_owners(struct sim *s, double now, bool preempt, const int *gpus, int ngpus,
                        struct flexpu_error *err)
{
    struct flexpu_pod_req failed[NFAILED];
    int nfailed = 0;
    for (int k = 0; k < s->nowait && nfailed < NFAILED;) {
        int id = s->owait[k];
        struct job *o = &s->jobs[id];
        bool known = false;
        for (int f = 0; f < nfailed && !known; f++)
            known = same_shape(&failed[f], &o->req);
        if (known) {
            k++;
            continue;
        }
        struct flexpu_noplace why;
        int64_t alloc;
        int rc = may_fit_freed(s, &o->req, gpus, ngpus)
                     ? flexpu_engine_place(s->e, &o->req, &s->rng, &o->pl, &alloc, &why)
                     : FLEXPU_ENOFIT;
        bool placed = false;
        if (rc == 0) {
            rc = owner_start(s, id, now, alloc, err);
            placed = true;
        } else if (rc == FLEXPU_ENOFIT) {
            rc = preempt && !gpus ? owner_preempt(s, id, now, err) : 0;
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
            failed[nfailed++] = o->req;
            k++;
        }
    }
    return 0;
}

/* The owner admitted ordinal-th (the same trace pod in every policy: they
 * are cycled in creation order) draws its series and offset from a
 * generator of its own, seeded from the run's seed and that ordinal, not
 * from the engine's: a tie broken differently, or a placement only one
 * policy makes, would otherwise shift every owner's draw after it, and the
 * policies would be compared on different owners (docs/REUSE.md, "Common
 * random numbers"). */
static void owner_draw(struct sim *s, int ordinal, struct job *o)
{
    struct flexpu_rng r;
    flexpu_rng_seed(&r, flexpu_rng_derive(s->c->seed, OWNER_STREAM, (uint64_t)ordinal));
    o->series = (int)flexpu_rng_below(&r, (uint64_t)s->u->npods);
    o->offset = (int)flexpu_rng_below(&r, (uint64_t)s->u->nsteps);
    if (ordinal < FX_REUSE_OWNERS_KEPT) {
        s->out->owner[ordinal] = (struct fx_reuse_owner){o->trace, o->series, o->offset};
        s->out->owners_kept = ordinal + 1;
    }
}

/* Owners arrive while the GPU compute they reserve, with what the waiting
 * ones ask, is below owner_share of the cluster's: each the next LS pod of
 * the trace (cycled in creation order), with its series and offset drawn.
 * So the share is a knob however the trace's arrivals bunch; the run
 * reports the time mean it reached (reserved_share). They wait for the
 * caller's serve_owners. */
static int admit_owners(struct sim *s, double now, struct flexpu_error *err)
{
    double target = s->c->owner_share * s->ngpus * FLEXPU_GPU_MILLI;
    for (int n = 0; s->owner_res + s->owner_wait < target && n < s->nls; n++) {
        int id = new_job(s);
        if (id < 0)
            return flexpu_error_set(err, FLEXPU_ENOMEM, "out of memory for owners");
        int ordinal = s->ls_next++;
        int ti = s->ls[ordinal % s->nls];
        const struct fx_trace_pod *p = &s->t->pods[ti];
        struct job *o = &s->jobs[id];
        o->kind = OWNER;
        o->state = WAIT;
        o->trace = ti;
        int rc = fx_trace_req(s->e, p, &o->req, err);
        if (rc)
            return rc;
        int64_t from = p->scheduled >= 0 ? p->scheduled : p->creation;
        o->run = p->deletion >= from ? (double)(p->deletion - from) : 1;
        if (o->run < 1)
            o->run = 1;
        o->arrival = now;
        owner_draw(s, ordinal, o);
        o->mres = s->c->owner_mem == FX_OWNER_MEM_SHARE
                      ? 1.0f
                      : fminf(1.0f, s->peak[o->series] * (float)FLEXPU_GPU_MILLI /
                                        (float)o->req.gpu_milli);
        if (s->nowait == s->cap_owait) {
            int cap = s->cap_owait ? 2 * s->cap_owait : 256;
            int *a = fx_realloc(s->owait, (size_t)cap * sizeof(int));
            if (!a)
                return flexpu_error_set(err, FLEXPU_ENOMEM, "out of memory for owners");
            s->owait = a;
            s->cap_owait = cap;
        }
        s->owait[s->nowait++] = id;
        s->owner_wait += (double)o->req.gpu_milli * o->req.num_gpu;
    }
    return 0;
}

/* ---- batch ------------------------------------------------------------------- */

/* Appends the next BE pod of the cycled trace to the backlog. */
static int batch_new(struct sim *s, double now, struct flexpu_error *err)
{
    int id = new_job(s);
    if (id < 0)
        return flexpu_error_set(err, FLEXPU_ENOMEM, "out of memory for batch jobs");
    int ti = s->be[s->be_next++ % s->nbe];
    const struct fx_trace_pod *tp = &s->t->pods[ti];
    struct job *j = &s->jobs[id];
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
    bound_present(s, j, 1);
    if (backlog_room(s))
        return flexpu_error_set(err, FLEXPU_ENOMEM, "out of memory for the backlog");
    s->backlog[s->nbacklog++] = id;
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

/* Whether borrower j may go on GPU gi: the owners are predicted idle
 * enough to leave it its whole share, and its memory (its share of the
 * GPU's, as an ordinary slice's) fits in what no allocation reserved.
 * Ordinary jobs count with what they use, as the scheduler's usage feed
 * counts every slice that is not a borrower's with the owners
 * (scheduler/borrow.h): their share's, or with batch_gpu idle all the
 * owners leave, so no borrower goes beside one. */
static bool may_borrow(const struct sim *s, const struct job *j, int gi)
{
    const struct gpu *g = &s->g[gi];
    if (g->nb == MAXB || g->own_res <= 0)
        return false;
    if (j->req.model_mask && !(j->req.model_mask & s->node_mask[g->node]))
        return false;
    double want = j->req.gpu_milli;
    if (FLEXPU_GPU_MILLI - HEADROOM - g->pred_use - normal_use(s, g) - lent_milli(s, g) <
        fit(s) * want)
        return false;
    if (owners_mem_placing(s, g) + g->batch + borrowed_mem(s, g) + want * s->c->batch_mem >
        GPU_MEM + 1e-6)
        return false;
    return flexpu_engine_node_free_cpu(s->e, g->node) >= j->req.cpu_milli &&
           flexpu_engine_node_free_mem(s->e, g->node) >= j->req.mem_mib;
}

/* Places batch job id as a borrower on a GPU among gpus[0..n) (NULL: all):
 * the one with the least compute no allocation reserved (where no ordinary
 * job can come and claim the borrower's memory), then the most predicted
 * idle compute. 1 placed, 0 not, <0 error. */
static int borrow(struct sim *s, int id, double now, const int *gpus, int n,
                  struct flexpu_error *err)
{
    struct job *j = &s->jobs[id];
    if (j->req.num_gpu != 1)
        return 0;
    int best = -1;
    double best_idle = -1, best_free = INFINITY;
    int count = gpus ? n : s->ngpus;
    for (int k = 0; k < count; k++) {
        int gi = gpus ? gpus[k] : k;
        if (!may_borrow(s, j, gi))
            continue;
        const struct gpu *g = &s->g[gi];
        double idle = FLEXPU_GPU_MILLI - g->pred_use - normal_use(s, g) - lent_milli(s, g);
        double free = FLEXPU_GPU_MILLI - g->own_res - g->batch;
        if (free < best_free - 1e-9 || (free < best_free + 1e-9 && idle > best_idle)) {
            best = gi;
            best_idle = idle;
            best_free = free;
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
    if (in_window(s, now))
        s->out->borrows++;
    if ((rc = batch_begin(s, id, now, 0)))
        return flexpu_error_set(err, rc, "out of memory for events");
    rc = borrower_rates(s, best, now);
    return rc ? rc : 1;
}

/* The most predicted idle compute a borrower could find on GPU gi (to
 * compare with borrow_fit x its share), 0 where none may go. */
static double gpu_room(const struct sim *s, int gi)
{
    const struct gpu *g = &s->g[gi];
    if (g->nb == MAXB || g->own_res <= 0)
        return 0;
    double c = FLEXPU_GPU_MILLI - HEADROOM - g->pred_use - normal_use(s, g) - lent_milli(s, g);
    double m = GPU_MEM - owners_mem_placing(s, g) - g->batch - borrowed_mem(s, g);
    if (s->c->batch_mem > 0) /* its memory grows with its share */
        c = fmin(c, fit(s) * m / s->c->batch_mem);
    return c > 0 ? c : 0;
}

/* Reuse: backlog jobs that are still waiting after the ordinary pass go,
 * oldest first, as borrowers where their share is predicted idle. Only the
 * GPUs with room are searched, and a job larger than the most room any of
 * them has is passed over without a search. Each pending pod is tried on
 * its own (as the scheduler retries each), so up to NBFAILED shapes may
 * fail (on CPU or host memory) before the pass ends. */
static int serve_borrowers(struct sim *s, double now, const int *gpus, int ngpus,
                           struct flexpu_error *err)
{
    int count = gpus ? ngpus : s->ngpus, nc = 0;
    double room = 0;
    for (int k = 0; k < count; k++) {
        int gi = gpus ? gpus[k] : k;
        double r = gpu_room(s, gi);
        if (r >= 1) {
            s->cand[nc++] = gi;
            room = fmax(room, r);
        }
    }
    struct flexpu_pod_req failed[NBFAILED];
    int nfailed = 0;
    for (int k = 0; k < s->nbacklog && room >= 1 && nfailed < NBFAILED;) {
        struct job *j = &s->jobs[s->backlog[k]];
        bool skip = j->req.num_gpu != 1 || fit(s) * j->req.gpu_milli > room + 1e-9;
        for (int f = 0; f < nfailed && !skip; f++)
            skip = same_shape(&failed[f], &j->req);
        if (skip) {
            k++;
            continue;
        }
        int rc = borrow(s, s->backlog[k], now, s->cand, nc, err);
        if (rc < 0)
            return rc;
        if (rc == 0) {
            failed[nfailed++] = j->req;
            k++;
            continue;
        }
        backlog_remove(s, k);
        room = 0;
        for (int c = 0; c < nc; c++)
            room = fmax(room, gpu_room(s, s->cand[c]));
    }
    return 0;
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
            /* Out of the backlog first: the memory it reserves may evict
             * borrowers, which go back to the backlog's front. */
            backlog_remove(s, k);
            j->alloc_id = alloc;
            j->state = RUN;
            for (int g = 0; g < j->pl.ngpu; g++)
                s->g[gid_of(s, &j->pl, g)].batch += j->pl.milli[g];
            /* Its rate is the arbiter's, set by gpu_rates below. */
            if (normal_list(s, id, true) || batch_begin(s, id, now, 0))
                return flexpu_error_set(err, FLEXPU_ENOMEM, "out of memory for events");
            for (int g = 0; g < j->pl.ngpu; g++) {
                int gi = gid_of(s, &j->pl, g);
                if ((rc = settle_memory(s, gi, -2, now, err)) || (rc = gpu_rates(s, gi, now)))
                    return rc;
            }
        } else if (rc == FLEXPU_ENOFIT) {
            failed[nfailed++] = j->req;
            k++;
            continue;
        } else {
            return flexpu_error_set(err, rc, "batch %s: %s", s->t->pods[j->trace].name, why.text);
        }
    }
    if (s->mode == FX_REUSE_BORROW) {
        int rc = serve_borrowers(s, now, gpus, ngpus, err);
        if (rc)
            return rc;
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
    bool borrower = j->state == BORROW;
    if (borrower) {
        struct gpu *g = &s->g[j->gid];
        for (int k = 0; k < g->nb; k++)
            if (g->b[k] == id)
                g->b[k] = g->b[--g->nb];
    } else {
        for (int k = 0; k < j->pl.ngpu; k++)
            s->g[gid_of(s, &j->pl, k)].batch -= j->pl.milli[k];
        normal_list(s, id, false);
    }
    j->state = DONE;
    j->rate = 0;
    j->alloc_id = -1;
    bound_present(s, j, -1);
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
    return batch_gone_rates(s, j, borrower, now);
}

/* ---- the step: owners' samples, memory, reclaim, interference ---------------- */

/* The hand-over the runtime measured on an H200 (docs/RUNTIME.md, "Measured
 * on an H200", column 48cf180): a `high` service's p99 went from 0.57 ms
 * alone to 1.01 ms beside a `low` batch, 0.44 ms added. The service keeps
 * the GPU while it launches, so that is paid once per burst: when it comes
 * back to a GPU a lower tenant is running on (one batch kernel must end
 * first: a process cannot take the GPU from a running kernel). */
#define FX_HANDOVER_MS_H200 0.44

/* An owner's slowdown on one request of request_ms (its GPU burst): it is
 * `high`, so tenants of lower priority (ordinary batch `normal`, borrowers
 * `low`) cost it only the hand-over, once per burst; alone it is 1. Other
 * owners on its GPU are high too and left out: their reservations add up to
 * at most the GPU, the same with or without reuse (docs/REUSE.md). */
static double owner_slowdown(double request_ms, double handover_ms, bool lower_running)
{
    return lower_running ? (request_ms + handover_ms) / request_ms : 1.0;
}

/* Whether a tenant of lower priority than the owners runs on GPU g: one
 * that gets GPU time there. A GPU-bound one (batch_gpu idle) runs whenever
 * the owners leave the GPU, so every burst finds it; one held to its share
 * runs only part of that time, and counting every burst overstates what
 * it costs the owners. */
static bool lower_running(const struct sim *s, const struct gpu *g)
{
    for (int k = 0; k < g->nn; k++)
        if (s->jobs[g->n[k]].rate > 0)
            return true;
    for (int k = 0; k < g->nb; k++)
        if (s->jobs[g->b[k]].rate > 0)
            return true;
    return false;
}

/* An owner's requests while its allocation waits for borrowers to be
 * evicted (borrow_mem idle): the process is blocked in the allocation, so
 * all its requests of the next evict_latency_s wait, each for the rest of
 * it (spread evenly: STALL_SLICES waits from L/20 to 19 L/20). Returns
 * how many requests that was. */
#define STALL_SLICES 10
static double stalled_requests(struct sim *s, const struct job *o)
{
    double b = s->c->request_ms, lat_ms = s->c->evict_latency_s * 1000.0;
    double n = fmin(o->duty * lat_ms / b, o->duty * s->u->step_s * 1000.0 / b);
    for (int k = 0; k < STALL_SLICES && n > 0; k++) {
        double wait = lat_ms * (k + 0.5) / STALL_SLICES;
        int bin = (int)lround(wait / b * 1000);
        s->hist[bin >= NBINS ? NBINS - 1 : bin] += n / STALL_SLICES;
    }
    s->stalled += n;
    return n;
}

/* This step's requests of the running owners, into the slowdown histogram:
 * duty x step / request_ms of them, each slowed if a lower tenant runs on
 * any of its GPUs (and, idle, the ones that waited for an eviction). */
static void interference(struct sim *s)
{
    double b = s->c->request_ms;
    for (int i = 0; i < s->nown; i++) {
        struct job *o = &s->jobs[s->own[i]];
        double waited = 0;
        if (o->stall) {
            o->stall = false;
            waited = stalled_requests(s, o);
        }
        if (o->duty <= 0)
            continue;
        bool other = false;
        for (int k = 0; k < o->pl.ngpu && !other; k++)
            other = lower_running(s, &s->g[gid_of(s, &o->pl, k)]);
        double slow = owner_slowdown(b, s->c->handover_ms, other);
        double n = o->duty * s->u->step_s * 1000.0 / b - waited;
        s->bursts += waited;
        int bin = (int)lround((slow - 1) * 1000);
        s->hist[bin < 0 ? 0 : bin >= NBINS ? NBINS - 1 : bin] += n;
        s->bursts += n;
        if (other)
            s->delayed += n;
    }
}

/* Reclaim: a GPU whose borrowers have got less than half their shares for
 * reclaim_samples samples in a row (the owner's use, or an ordinary job's,
 * rose and stayed up: the scheduler counts every slice that is not a
 * borrower's with the owners)
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
        double got = 0, want = lent_milli(s, g);
        for (int k = 0; k < g->nb; k++)
            got += s->jobs[g->b[k]].rate;
        g->starved = got < 0.5 * want ? g->starved + 1 : 0;
        if (g->starved < s->c->reclaim_samples || budget == 0 ||
            s->tick - g->last_reclaim < s->c->reclaim_gap)
            continue;
        int rc = evict(s, least_done(s, g), now, err);
        if (rc)
            return rc;
        if (in_window(s, now))
            s->out->evict_reclaim++;
        g->last_reclaim = (int)s->tick;
        g->starved = 0;
        budget--;
    }
    return 0;
}

static int step(struct sim *s, double now, struct flexpu_error *err)
{
    for (int i = 0; i < s->nown; i++) {
        struct job *o = &s->jobs[s->own[i]];
        owner_apply(s, o, -1);
        owner_sample(s, o);
        o->age++;
        owner_apply(s, o, 1);
    }
    int rc = 0;
    for (int gi = 0; gi < s->ngpus && rc == 0; gi++)
        rc = settle_memory(s, gi, -1, now, err);
    /* The rates first: reclaim reads what the borrowers get. */
    for (int gi = 0; gi < s->ngpus && rc == 0; gi++)
        if (s->g[gi].nb > 0 || s->g[gi].nn > 0)
            rc = gpu_rates(s, gi, now);
    if (rc == 0)
        rc = reclaim(s, now, err);
    if (rc == 0 && now >= s->w0 && now < s->w1)
        interference(s);
    return rc;
}

/* ---- the upper bound (sim/reuse_bound.h; docs/REUSE.md, "An upper bound") ---- */

/* Node n's owners changed: its bound is refreshed before the next time it
 * is counted. */
static void bound_dirty(struct sim *s, int node)
{
    if (s->is_dirty[node])
        return;
    s->is_dirty[node] = true;
    s->dirty[s->ndirty++] = node;
}

/* The most batch GPU time node n could carry beside its owners as they are
 * now, under bound b, whatever the placement (the proof: sim/reuse_bound.h).
 * A GPU carries at most the time its owners leave (with batch_gpu share, at
 * most the shares that fit the memory they leave, over batch_mem), if a
 * shape fits the GPU memory the owners leave (their reservation, or with
 * borrow_mem idle for light jobs what they use: owners_mem_now, what the
 * replay evicts borrowers against), at the cost of the cheapest fitting
 * shape's CPU and host memory; the node has what its owners leave. */
static double bound_node(struct sim *s, int n, int lev, enum fx_reuse_bound b)
{
    const struct fx_trace_node *tn = &s->t->nodes[n];
    for (int k = 0; k < tn->ngpu; k++) {
        const struct gpu *g = &s->g[s->gbase[n] + k];
        struct fx_rbound_gpu *x = &s->bgpu[k];
        double room = b == FX_BOUND_NO_GPUMEM ? INFINITY : GPU_MEM - owners_mem_now(s, g);
        x->value = fmax(0, FLEXPU_GPU_MILLI - g->own_use);
        if (s->c->batch_gpu == FX_BATCH_GPU_SHARE && s->c->batch_mem > 0 &&
            b != FX_BOUND_NO_GPUMEM)
            x->value = fmin(x->value, fmax(0, room) / s->c->batch_mem);
        if (!fx_rbound_cheapest(&s->shapes[lev], room, &x->cpu, &x->mem))
            x->value = x->cpu = x->mem = 0;
    }
    double cpu = b == FX_BOUND_NO_CPU ? INFINITY : (double)tn->cpu_milli - s->own_cpu[n];
    double mem = b == FX_BOUND_NO_HOSTMEM ? INFINITY : (double)tn->mem_mib - s->own_mem[n];
    return fx_rbound_node(s->bgpu, tn->ngpu, cpu, mem);
}

/* The bound of the jobs present (batch GPU time, thousandths): at level k,
 * its shapes' bound, and each job present of the shapes it leaves out adds
 * at most one GPU's time (reuse_bound.h); the least over the levels. */
static double hand_now(const struct sim *s, enum fx_reuse_bound b)
{
    double hand = s->bsum[0][b];
    for (int l = 1; l < s->nlev; l++)
        hand = fmin(hand, s->bsum[l][b] + FLEXPU_GPU_MILLI * (double)s->nrare[l]);
    return hand;
}

static void bound_refresh(struct sim *s)
{
    for (int i = 0; i < s->ndirty; i++) {
        int n = s->dirty[i];
        s->is_dirty[n] = false;
        for (int l = 0; l < s->nlev; l++)
            for (int b = 0; b < FX_REUSE_BOUNDS; b++) {
                double v = bound_node(s, n, l, (enum fx_reuse_bound)b);
                double *old = &s->nbest[((size_t)n * NLEV + (size_t)l) * FX_REUSE_BOUNDS + (size_t)b];
                s->bsum[l][b] += v - *old;
                *old = v;
            }
    }
    s->ndirty = 0;
}

/* A batch job's CPU per GPU it asks, as the bound charges it. */
static double per_gpu_cpu(const struct flexpu_pod_req *r)
{
    return (double)r->cpu_milli / (r->num_gpu > 0 ? r->num_gpu : 1);
}

/* The least GPU memory it needs on a GPU: batch_mem of its share's (a
 * borrower's; an ordinary job reserves all of its share's). */
static double least_gmem(const struct sim *s, const struct flexpu_pod_req *r)
{
    return s->c->batch_mem * r->gpu_milli * (GPU_MEM / FLEXPU_GPU_MILLI);
}

/* A batch job enters (+1) or leaves (-1, done) the jobs present: counted
 * at each level it is below. */
static void bound_present(struct sim *s, const struct job *j, int sign)
{
    double cpu = per_gpu_cpu(&j->req), gmem = least_gmem(s, &j->req);
    for (int l = 1; l < s->nlev; l++)
        if (cpu < s->theta[l] || gmem < s->phi[l])
            s->nrare[l] += sign;
    s->wcount[s->pod_shape[j->trace]] += sign;
}


/* A witness from below: one assignment of the batch jobs present now, one
 * job a GPU, that fits every constraint the bound counts (each node's CPU
 * and host memory after its owners, each GPU's memory after its owners),
 * found greedily: node by node, its GPUs by the most time they can carry,
 * each given a present job that fits: with best_fit, the one whose GPU
 * memory leaves the least of the GPU's (keeping the small ones for the
 * GPUs with little left), else the one of least CPU; then the least CPU
 * and memory. Its busy share (the better of the two) is what the
 * constraints allow at this moment at least; a rule that held it would
 * also have to move jobs as they end and owners come (docs/REUSE.md, "An
 * upper bound"). */
static double witness_greedy(struct sim *s, bool best_fit)
{
    memcpy(s->wleft, s->wcount, (size_t)s->nwshape * sizeof(int));
    double sum = s->owner_use;
    for (int n = 0; n < s->t->nnodes; n++) {
        const struct fx_trace_node *tn = &s->t->nodes[n];
        double cpu = (double)tn->cpu_milli - s->own_cpu[n], mem = (double)tn->mem_mib - s->own_mem[n];
        int ng = tn->ngpu, *o = s->gorder;
        for (int k = 0; k < ng; k++) { /* the GPUs by idle time, most first */
            int q = k;
            double v = s->g[s->gbase[n] + k].own_use;
            while (q > 0 && s->g[s->gbase[n] + o[q - 1]].own_use > v) {
                o[q] = o[q - 1];
                q--;
            }
            o[q] = k;
        }
        for (int k = 0; k < ng; k++) {
            const struct gpu *g = &s->g[s->gbase[n] + o[k]];
            double room = GPU_MEM - owners_mem_now(s, g);
            int best = -1;
            for (int q = 0; q < s->nwshape; q++) {
                const struct wshape *x = &s->wshape[q], *y = best >= 0 ? &s->wshape[best] : NULL;
                if (s->wleft[q] <= 0 || x->gmem > room + 1e-6 || x->cpu > cpu + 1e-6 ||
                    x->mem > mem + 1e-6)
                    continue;
                if (!y || (best_fit && x->gmem > y->gmem) ||
                    ((!best_fit || x->gmem == y->gmem) &&
                     (x->cpu < y->cpu || (x->cpu == y->cpu && x->mem < y->mem))))
                    best = q;
            }
            if (best < 0)
                continue;
            /* What the owners leave; held to its share, at most that. */
            double v = fmax(0, FLEXPU_GPU_MILLI - g->own_use);
            if (s->c->batch_gpu == FX_BATCH_GPU_SHARE)
                v = fmin(v, s->wshape[best].share);
            if (v <= 0)
                continue;
            s->wleft[best]--;
            cpu -= s->wshape[best].cpu;
            mem -= s->wshape[best].mem;
            sum += v;
        }
    }
    return sum;
}

static void bound_refresh(struct sim *s);
static double hand_now(const struct sim *s, enum fx_reuse_bound b);

/* Sampled at each step of the window. It is an assignment of the jobs
 * present under the bound's constraints, so never above the bound of the
 * jobs present: a breach if it were. */
static void witness_sample(struct sim *s)
{
    double w = fmax(witness_greedy(s, true), witness_greedy(s, false));
    bound_refresh(s);
    if (w > s->owner_use + hand_now(s, FX_BOUND_ALL) + 1e-6 * s->ngpus * FLEXPU_GPU_MILLI)
        s->out->bound_breaches++;
    s->a_witness += w;
    s->nwitness++;
}

static int cmp_dbl(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The BE pods' shapes (every batch job is one), per GPU they ask, with the
 * least GPU memory each needs on a GPU; and the levels: every pair of one
 * of the NCPULEV least CPU values per GPU among them and one of the NMEMLEV
 * least GPU memory values (the least of each is 0: level 0, every shape),
 * level k's table the shapes at or above both. Every node is refreshed
 * before it is first counted. */
static int bound_setup(struct sim *s)
{
    const struct fx_trace *t = s->t;
    int maxg = 1;
    for (int n = 0; n < t->nnodes; n++)
        maxg = t->nodes[n].ngpu > maxg ? t->nodes[n].ngpu : maxg;
    struct fx_rbound_shape *sh = fx_malloc(((size_t)s->nbe + 1) * sizeof(*sh));
    struct fx_rbound_shape *keep = fx_malloc(((size_t)s->nbe + 1) * sizeof(*keep));
    double *cpus = fx_malloc(((size_t)s->nbe + 1) * sizeof(double));
    double *gmems = fx_malloc(((size_t)s->nbe + 1) * sizeof(double));
    s->own_cpu = fx_calloc((size_t)t->nnodes + 1, sizeof(double));
    s->own_mem = fx_calloc((size_t)t->nnodes + 1, sizeof(double));
    s->nbest = fx_calloc(((size_t)t->nnodes + 1) * NLEV * FX_REUSE_BOUNDS, sizeof(double));
    s->dirty = fx_malloc(((size_t)t->nnodes + 1) * sizeof(int));
    s->is_dirty = fx_calloc((size_t)t->nnodes + 1, sizeof(bool));
    s->bgpu = fx_malloc((size_t)maxg * sizeof(*s->bgpu));
    int rc = !sh || !keep || !cpus || !gmems || !s->own_cpu || !s->own_mem || !s->nbest || !s->dirty ||
             !s->is_dirty || !s->bgpu;
    for (int i = 0; i < s->nbe && !rc; i++) {
        const struct fx_trace_pod *p = &t->pods[s->be[i]];
        struct flexpu_pod_req r = {.cpu_milli = p->cpu_milli, .num_gpu = p->num_gpu,
                                   .gpu_milli = p->gpu_milli};
        double n = p->num_gpu > 0 ? p->num_gpu : 1;
        sh[i] = (struct fx_rbound_shape){per_gpu_cpu(&r), (double)p->mem_mib / n,
                                         least_gmem(s, &r)};
        cpus[i] = sh[i].cpu;
        gmems[i] = sh[i].gmem;
    }
    if (!rc) {
        /* The least values first: the rarest cheap jobs are what a bound
         * of any jobs leans on. */
        double th[NCPULEV] = {0}, ph[NMEMLEV] = {0};
        int nth = 1, nph = 1;
        qsort(cpus, (size_t)s->nbe, sizeof(double), cmp_dbl);
        qsort(gmems, (size_t)s->nbe, sizeof(double), cmp_dbl);
        for (int i = 1; i < s->nbe && nth < NCPULEV; i++)
            if (cpus[i] > cpus[i - 1])
                th[nth++] = cpus[i];
        for (int i = 1; i < s->nbe && nph < NMEMLEV; i++)
            if (gmems[i] > gmems[i - 1])
                ph[nph++] = gmems[i];
        s->nlev = 0;
        for (int a = 0; a < nth; a++)
            for (int b = 0; b < nph; b++) {
                s->theta[s->nlev] = th[a];
                s->phi[s->nlev++] = ph[b];
            }
    }
    for (int l = 0; l < s->nlev && !rc; l++) {
        int nk = 0;
        for (int i = 0; i < s->nbe; i++)
            if (sh[i].cpu >= s->theta[l] && sh[i].gmem >= s->phi[l])
                keep[nk++] = sh[i];
        rc = fx_rbound_table_init(&s->shapes[l], keep, nk);
    }
    fx_free(sh);
    fx_free(keep);
    fx_free(cpus);
    fx_free(gmems);
    /* The witness's shapes: the BE pods' distinct ones. */
    s->wshape = fx_malloc(((size_t)s->nbe + 1) * sizeof(*s->wshape));
    s->pod_shape = fx_calloc((size_t)t->npods + 1, sizeof(int));
    s->wcount = fx_calloc((size_t)s->nbe + 1, sizeof(int));
    s->wleft = fx_calloc((size_t)s->nbe + 1, sizeof(int));
    s->gorder = fx_malloc((size_t)maxg * sizeof(int));
    rc = rc || !s->wshape || !s->pod_shape || !s->wcount || !s->wleft || !s->gorder;
    for (int i = 0; i < s->nbe && !rc; i++) {
        const struct fx_trace_pod *p = &t->pods[s->be[i]];
        struct flexpu_pod_req r = {.cpu_milli = p->cpu_milli, .num_gpu = p->num_gpu,
                                   .gpu_milli = p->gpu_milli};
        struct wshape w = {p->num_gpu == 1 ? (double)p->cpu_milli : INFINITY,
                           (double)p->mem_mib, least_gmem(s, &r), p->gpu_milli};
        int q = 0;
        while (q < s->nwshape && memcmp(&s->wshape[q], &w, sizeof(w)))
            q++;
        if (q == s->nwshape)
            s->wshape[s->nwshape++] = w;
        s->pod_shape[s->be[i]] = q;
    }
    for (int n = 0; n < t->nnodes && !rc; n++)
        bound_dirty(s, n);
    return rc ? FLEXPU_ENOMEM : 0;
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
    if (dt > 0) {
        bound_refresh(s);
        for (int b = 0; b < FX_REUSE_BOUNDS; b++) {
            double hand = hand_now(s, (enum fx_reuse_bound)b);
            s->a_bound[b] += dt * (s->owner_use + s->bsum[0][b]);
            s->a_hand[b] += dt * (s->owner_use + hand);
            if (b == FX_BOUND_ALL && s->batch_rate > hand + 1e-6 * cap)
                s->out->bound_breaches++;
        }
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
        if ((rc = admit_owners(s, e.t, err)))
            return rc;
        break;
    case EV_OWNER_END:
        if (j->state != RUN)
            return 0;
        owner_apply(s, j, -1);
        if ((rc = flexpu_engine_release(s->e, j->alloc_id, err)))
            return rc;
        j->state = DONE;
        for (int k = 0; k < s->nown; k++)
            if (s->own[k] == e.id) {
                s->own[k] = s->own[--s->nown];
                break;
            }
        for (int k = 0; k < j->pl.ngpu; k++) {
            freed[nfreed++] = gid_of(s, &j->pl, k);
            if ((rc = gpu_rates(s, freed[nfreed - 1], e.t)))
                return rc;
        }
        if ((rc = admit_owners(s, e.t, err))) /* j may move: new owners grow the jobs */
            return rc;
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
    if (s->nowait > 0 && (rc = serve_owners(s, e.t, full, full ? NULL : freed, nfreed, err)))
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
    for (int i = 0; i < s->njobs; i++) /* work in progress at the end is kept */
        if (s->jobs[i].kind == BATCH &&
            (s->jobs[i].state == RUN || s->jobs[i].state == BORROW)) {
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
    for (int b = 0; b < FX_REUSE_BOUNDS; b++) {
        o->bound_share[b] = s->a_bound[b] / cap;
        o->hand_share[b] = s->a_hand[b] / cap;
    }
    o->witness_share = s->nwitness > 0 ? s->a_witness / s->nwitness /
                                             ((double)s->ngpus * FLEXPU_GPU_MILLI)
                                       : 0;
    o->evictions_per_hour = (o->evict_memory + o->evict_reclaim + o->evict_owner) / (win / 3600);
    if (s->njct > 0) { /* qsort wants an array even when empty */
        qsort(s->jct, (size_t)s->njct, sizeof(double), cmp_double);
        qsort(s->runs, (size_t)s->njct, sizeof(double), cmp_double);
    }
    o->jct_p50 = pct(s->jct, s->njct, 0.5);
    o->jct_p99 = pct(s->jct, s->njct, 0.99);
    o->run_p50 = pct(s->runs, s->njct, 0.5);
    o->run_p99 = pct(s->runs, s->njct, 0.99);
    double acc = 0;
    o->owner_p99 = 1;
    for (int b = 0; b < NBINS && s->bursts > 0; b++) {
        acc += s->hist[b];
        if (acc >= 0.99 * s->bursts) {
            o->owner_p99 = 1 + b / 1000.0;
            break;
        }
    }
    o->owner_delayed = s->bursts > 0 ? s->delayed / s->bursts : 0;
    o->owner_stalled = s->bursts > 0 ? s->stalled / s->bursts : 0;
    /* One latency for every eviction (a knob, to be measured): each delayed
     * allocation waits all of it, so that is also their p99. */
    o->owner_delay_p99 = o->owner_delays > 0 ? s->c->evict_latency_s : 0;
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
        {"owner_share", c->owner_share, 0, 1},
        {"backlog", c->backlog, 1, 1e6},
        {"warmup_s", c->warmup_s, 0, 1e9},
        {"window_s", c->window_s, 1, 1e9},
        {"trace_part", c->trace_part, -1, 1},
        {"owner_mem", c->owner_mem, 0, 1},
        {"request_ms", c->request_ms, 0.001, 1e6},
        {"handover_ms", c->handover_ms, 0, 1e4},
        {"batch_mem", c->batch_mem, 0, 1},
        {"borrow_fit", c->borrow_fit, 0.01, 1},
        {"predict_samples", c->predict_samples, 1, MAXHIST},
        {"reclaim_samples", c->reclaim_samples, 1, 1e6},
        {"reclaim_gap", c->reclaim_gap, 0, 1e6},
        {"reclaim_per_step", c->reclaim_per_step, 0, 1e6},
        {"borrow_mem", c->borrow_mem, 0, 1},
        {"batch_gpu", c->batch_gpu, 0, 1},
        {"evict_latency_s", c->evict_latency_s, 0, 1e4},
    };
    for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++)
        if (!(f[i].v >= f[i].lo && f[i].v <= f[i].hi))
            return flexpu_error_set(err, FLEXPU_EINVAL,
                                    "field '%s': invalid value '%g': must be in [%g, %g]",
                                    f[i].name, f[i].v, f[i].lo, f[i].hi);
    return 0;
}

/* Keeps the half of a creation-ordered list that `part` names. */
static void keep_half(int *a, int *n, int part)
{
    if (part < 0 || *n < 2)
        return;
    int h = *n / 2;
    if (part == 1)
        memmove(a, a + h, (size_t)(*n - h) * sizeof(int));
    *n = part == 1 ? *n - h : h;
}

/* The LS and BE lists; the window; the GPUs; the first step at 0. */
static int setup(struct sim *s, struct flexpu_error *err)
{
    const struct fx_trace *t = s->t;
    s->be = fx_malloc(((size_t)t->npods + 1) * sizeof(int));
    s->ls = fx_malloc(((size_t)t->npods + 1) * sizeof(int));
    s->gbase = fx_malloc(((size_t)t->nnodes + 1) * sizeof(int));
    s->node_mask = fx_calloc((size_t)t->nnodes + 1, sizeof(uint64_t));
    s->peak = fx_malloc((size_t)s->u->npods * sizeof(float));
    if (!s->be || !s->ls || !s->gbase || !s->node_mask || !s->peak)
        return flexpu_error_set(err, FLEXPU_ENOMEM, "out of memory for the reuse replay");
    for (int i = 0; i < t->npods; i++) {
        const struct fx_trace_pod *p = &t->pods[i];
        if (p->num_gpu > 0 && p->qos == FLEXPU_QOS_LS)
            s->ls[s->nls++] = i;
        else if (p->num_gpu > 0 && p->qos == FLEXPU_QOS_BE)
            s->be[s->nbe++] = i;
    }
    if (s->nls == 0 || s->nbe == 0)
        return flexpu_error_set(err, FLEXPU_EINVAL,
                                "the trace has %d LS pods with GPUs (owners) and %d BE pods with "
                                "GPUs (batch): both must be some",
                                s->nls, s->nbe);
    for (int i = 0; i < t->npods; i++)
        if (t->pods[i].creation < 0)
            return flexpu_error_set(err, FLEXPU_EINVAL,
                                    "pod %s (line %d): the reuse replay needs creation_time",
                                    t->pods[i].name, i + 2);
    qsort_r(s->ls, (size_t)s->nls, sizeof(int), cmp_arrival, s);
    qsort_r(s->be, (size_t)s->nbe, sizeof(int), cmp_arrival, s);
    keep_half(s->ls, &s->nls, s->c->trace_part);
    keep_half(s->be, &s->nbe, s->c->trace_part);
    for (int i = 0; i < s->u->npods; i++) {
        float m = 0;
        for (int k = 0; k < s->u->nsteps; k++)
            m = fmaxf(m, s->u->pods[i].mem[k]);
        s->peak[i] = m;
    }
    s->w0 = s->c->warmup_s;
    s->w1 = s->c->warmup_s + s->c->window_s;
    s->cap_jobs = s->c->backlog + 1024;
    s->jobs = fx_calloc((size_t)s->cap_jobs, sizeof(*s->jobs));
    if (!s->jobs)
        return flexpu_error_set(err, FLEXPU_ENOMEM, "out of memory for the reuse replay");
    int rc;
    for (int n = 0; n < t->nnodes; n++) {
        s->gbase[n] = s->ngpus;
        s->ngpus += t->nodes[n].ngpu;
        if ((rc = flexpu_engine_models(s->e, t->nodes[n].model, &s->node_mask[n], err)))
            return rc;
    }
    s->g = fx_calloc((size_t)s->ngpus + 1, sizeof(*s->g));
    s->cand = fx_malloc(((size_t)s->ngpus + 1) * sizeof(int));
    if (!s->g || !s->cand)
        return flexpu_error_set(err, FLEXPU_ENOMEM, "out of memory for the GPUs");
    for (int n = 0; n < t->nnodes; n++)
        for (int k = 0; k < t->nodes[n].ngpu; k++) {
            s->g[s->gbase[n] + k].node = n;
            s->g[s->gbase[n] + k].last_reclaim = -1000000;
        }
    s->last_t = 0;
    if (bound_setup(s))
        return flexpu_error_set(err, FLEXPU_ENOMEM, "out of memory for the upper bound");
    return push(s, 0, EV_TICK, 0, 0) ? FLEXPU_ENOMEM : 0;
}

static void teardown(struct sim *s)
{
    for (int gi = 0; s->g && gi < s->ngpus; gi++)
        fx_free(s->g[gi].n);
    fx_free(s->fw);
    fx_free(s->fc);
    fx_free(s->fa);
    fx_free(s->fb);
    fx_free(s->jobs);
    fx_free(s->g);
    fx_free(s->gbase);
    fx_free(s->node_mask);
    fx_free(s->heap);
    fx_free(s->backlog);
    fx_free(s->owait);
    fx_free(s->own);
    fx_free(s->ls);
    fx_free(s->be);
    fx_free(s->peak);
    fx_free(s->cand);
    fx_free(s->jct);
    fx_free(s->runs);
    fx_free(s->own_cpu);
    fx_free(s->own_mem);
    fx_free(s->nbest);
    fx_free(s->dirty);
    fx_free(s->is_dirty);
    fx_free(s->bgpu);
    fx_free(s->wshape);
    fx_free(s->pod_shape);
    fx_free(s->wcount);
    fx_free(s->wleft);
    fx_free(s->gorder);
    for (int l = 0; l < NLEV; l++)
        fx_rbound_table_free(&s->shapes[l]);
    flexpu_engine_free(s->e);
}

void fx_reuse_defaults(struct fx_reuse_config *c)
{
    *c = (struct fx_reuse_config){.owner_share = 0.8, .backlog = 2000, .warmup_s = 3600,
                                  .window_s = 4 * 3600, .trace_part = 1, .seed = 42,
                                  .owner_mem = FX_OWNER_MEM_PEAK, .request_ms = 20,
                                  .handover_ms = FX_HANDOVER_MS_H200, .batch_mem = 1,
                                  .borrow_fit = 1,
                                  .predict_samples = 10,
                                  .reclaim_samples = 3, .reclaim_gap = 5,
                                  .reclaim_per_step = 50,
                                  .borrow_mem = FX_BORROW_MEM_UNRESERVED,
                                  .batch_gpu = FX_BATCH_GPU_IDLE,
                                  .evict_latency_s = 1};
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
        if (rc == 0 && e.type == EV_TICK && in_window(&s, e.t))
            witness_sample(&s);
        if (e.t >= s.w0 && s.nbacklog < out->backlog_min)
            out->backlog_min = s.nbacklog;
    }
    if (rc == 0) {
        account(&s, s.w1);
        results(&s);
    }
    /* The books must balance: the backlog holds only waiting batch jobs,
     * and each running one holds an allocation. */
    for (int k = 0; k < s.nbacklog && rc == 0; k++)
        if (s.jobs[s.backlog[k]].state != WAIT)
            rc = flexpu_error_set(err, FLEXPU_EINVAL,
                                  "reuse replay: batch job %d is in the backlog but not waiting",
                                  s.backlog[k]);
    for (int i = 0; i < s.njobs && rc == 0; i++)
        if ((s.jobs[i].state == RUN || s.jobs[i].state == BORROW) && s.jobs[i].alloc_id < 0)
            rc = flexpu_error_set(err, FLEXPU_EINVAL, "reuse replay: job %d runs without an "
                                  "allocation", i);
    out->seconds = fx_mono_seconds() - t0;
    teardown(&s);
    return rc;
}

/* ---- report ------------------------------------------------------------------- */

void fx_reuse_report(FILE *f, const struct fx_reuse_result *r, int n,
                     const struct fx_reuse_config *c)
{
    static const char *const parts[] = {"all", "first half (tune)", "second half (report)"};
    fprintf(f, "window %.1f h after %.1f h of warm-up; owners reserve %.0f%% of GPU compute "
               "(target), memory: %s; trace pods: %s; seed %llu; standing backlog of %d batch "
               "jobs; owner request %g ms, hand-over %g ms; borrowers take memory %s; batch GPU "
               "time: %s\n\n",
            r[0].window_s / 3600, c->warmup_s / 3600, 100 * c->owner_share,
            c->owner_mem == FX_OWNER_MEM_PEAK ? "owners' peak" : "owners' share",
            parts[c->trace_part + 1], (unsigned long long)c->seed, c->backlog, c->request_ms,
            c->handover_ms,
            c->borrow_mem == FX_BORROW_MEM_IDLE
                ? "owners do not use (idle: light jobs, as flexpu-scheduler --borrow-mem idle)"
                : "no allocation reserved (unreserved)",
            c->batch_gpu == FX_BATCH_GPU_SHARE
                ? "at most its share (share: gpu-cores-limit = gpu-cores)"
                : "all its owners leave, shared by share weight (idle: uncapped, the arbiter's)");
    fprintf(f, "| policy | GPU busy | bound: any jobs / jobs present | owners | batch (borrowed) | lost | owners reserve | "
               "allocated | batch done | JCT p50 / p99 | run p50 / p99 | evictions/h (counts: "
               "memory, reclaim, owner) | owners' p99 slowdown (met a tenant) | refused | seconds |\n");
    fprintf(f, "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for (int i = 0; i < n; i++) {
        const struct fx_reuse_result *x = &r[i];
        fprintf(f,
                "| %s | %.1f%% | %.1f%% / %.1f%% | %.1f%% | %.1f%% (%.1f%%) | %.1f%% | %.1f%% | %.1f%% | %d | "
                "%.0f / %.0f s | %.0f / %.0f s | %.1f (%d, %d, %d) | %.3fx (%.1f%%) | %lld | "
                "%.1f |\n",
                fx_reuse_mode_name(x->mode), 100 * x->busy_share,
                100 * x->bound_share[FX_BOUND_ALL], 100 * x->hand_share[FX_BOUND_ALL],
                100 * x->owner_share,
                100 * x->batch_share, 100 * x->borrowed_share, 100 * x->lost_share,
                100 * x->reserved_share, 100 * x->alloc_share, x->batch_done, x->jct_p50,
                x->jct_p99, x->run_p50, x->run_p99, x->evictions_per_hour, x->evict_memory,
                x->evict_reclaim, x->evict_owner, x->owner_p99, 100 * x->owner_delayed,
                (long long)x->refused, x->seconds);
    }
    fprintf(f, "\nbound: the most busy share any placement of batch jobs could reach beside "
               "the run's owners (docs/REUSE.md, \"An upper bound\"): of any jobs of the BE "
               "pods' shapes / of the jobs present in the run; each with one constraint "
               "dropped (the nodes' CPU, their host memory, GPU memory):\n");
    for (int i = 0; i < n; i++)
        fprintf(f, "  %s: %.1f%% (%.1f%%, %.1f%%, %.1f%%) / %.1f%% (%.1f%%, %.1f%%, %.1f%%)%s\n",
                fx_reuse_mode_name(r[i].mode), 100 * r[i].bound_share[FX_BOUND_ALL],
                100 * r[i].bound_share[FX_BOUND_NO_CPU],
                100 * r[i].bound_share[FX_BOUND_NO_HOSTMEM],
                100 * r[i].bound_share[FX_BOUND_NO_GPUMEM], 100 * r[i].hand_share[FX_BOUND_ALL],
                100 * r[i].hand_share[FX_BOUND_NO_CPU], 100 * r[i].hand_share[FX_BOUND_NO_HOSTMEM],
                100 * r[i].hand_share[FX_BOUND_NO_GPUMEM],
                r[i].bound_breaches ? " (BREACHED: the run used more than the bound)" : "");
    fprintf(f, "an assignment of the jobs present that fits the same constraints, found "
               "greedily at each step (what they allow at least):");
    for (int i = 0; i < n; i++)
        fprintf(f, "%s %s %.1f%%", i ? ";" : "", fx_reuse_mode_name(r[i].mode),
                100 * r[i].witness_share);
    fprintf(f, "\n");
    const struct fx_reuse_result *no = NULL, *re = NULL;
    for (int i = 0; i < n; i++) {
        if (r[i].mode == FX_REUSE_FLEXPU)
            no = &r[i];
        if (r[i].mode == FX_REUSE_BORROW)
            re = &r[i];
    }
    if (re && c->borrow_mem == FX_BORROW_MEM_IDLE)
        fprintf(f, "\nborrowing idle memory: owner allocations delayed by "
                   "evictions %d (%.1f/h), delay p99 %g s (the eviction latency), owners' "
                   "requests that waited for one %.3f%%\n",
                re->owner_delays, re->owner_delays / (re->window_s / 3600), re->owner_delay_p99,
                100 * re->owner_stalled);
    if (no && re)
        fprintf(f, "\ntargets (issue 16): busy share with reuse %.2fx flexpu without (>= 1.3: %s), "
                   "%.1f%% (>= 76%%: %s); owners' p99 slowdown %.3fx (<= 1.5: %s); refused %lld "
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
