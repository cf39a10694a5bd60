/* SPDX-License-Identifier: Apache-2.0 */
/* The timed replay with queues, fair shares and reclaim (sim/timed.h). */
#include "sim/timed.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "flexpu/gang.h"
#include "sched/ties.h"
#include "util/alloc.h"
#include "util/clock.h"

#define R FLEXPU_RES_COUNT_
#define NFAILED 64 /* request shapes remembered as not fitting in one pass */
#define NFREED  64 /* freed nodes remembered between passes */

/* ---- configuration ------------------------------------------------------ */

static const char *const default_spec = "serving=50:1,batch=30:1,default=20:1";
/* Four teams, each the whole trace's mix of classes (priorities). */
static const char *const teams_spec = "team0=25:1,team1=25:1,team2=25:1,team3=25:1";

static int bad(struct flexpu_error *err, const char *part, size_t len, const char *why)
{
    return flexpu_error_field(err, FLEXPU_EINVAL, "--queues", part, len, why);
}

int fx_qsim_parse(const char *spec, struct fx_qsim_config *c, struct flexpu_error *err)
{
    memset(c, 0, sizeof(*c));
    if (!spec || !*spec)
        return bad(err, "", 0, "expected NAME=GUARANTEE%[:WEIGHT[:LIMIT%]],... or qos");
    bool teams = strcmp(spec, "teams") == 0;
    if (strcmp(spec, "qos") == 0)
        spec = default_spec;
    else if (teams)
        spec = teams_spec;
    const char *p = spec;
    while (*p) {
        size_t len = strcspn(p, ",");
        char part[160];
        if (len >= sizeof(part) || c->nqueues == FX_QSIM_MAX_QUEUES)
            return bad(err, p, len, "too long, or more than 8 queues");
        memcpy(part, p, len);
        part[len] = '\0';
        char *eq = strchr(part, '=');
        double g = 0, w = 1, l = -100;
        int used = 0, n = eq ? sscanf(eq + 1, "%lf%n:%lf%n:%lf%n", &g, &used, &w, &used, &l, &used)
                            : 0;
        if (!eq || eq == part || (size_t)(eq - part) >= FLEXPU_NAME_MAX || n < 1 ||
            eq[1 + used] != '\0' || !(g >= 0 && g <= 100) || !(w >= 0 && w <= 1e6) ||
            (n == 3 && !(l >= g && l <= 100)))
            return bad(err, p, len,
                       "expected NAME=GUARANTEE%[:WEIGHT[:LIMIT%]] with 0 <= GUARANTEE <= LIMIT "
                       "<= 100 and 0 <= WEIGHT <= 1000000");
        int i = c->nqueues++;
        memcpy(c->q[i].name, part, (size_t)(eq - part));
        c->q[i].guarantee = g / 100;
        c->q[i].weight = w;
        c->q[i].limit = n == 3 ? l / 100 : -1;
        p += len;
        if (*p)
            p++;
    }
    /* The QoS mapping of docs/QUEUES.md; a missing queue maps to the last. */
    static const struct {
        enum flexpu_qos qos;
        const char *queue;
    } map[] = {
        {FLEXPU_QOS_LS, "serving"},      {FLEXPU_QOS_GUARANTEED, "serving"},
        {FLEXPU_QOS_BE, "batch"},        {FLEXPU_QOS_BURSTABLE, "default"},
        {FLEXPU_QOS_NONE, "default"},
    };
    for (size_t m = 0; m < sizeof(map) / sizeof(map[0]); m++) {
        c->by_qos[map[m].qos] = c->nqueues - 1;
        for (int i = 0; i < c->nqueues; i++)
            if (strcmp(c->q[i].name, map[m].queue) == 0)
                c->by_qos[map[m].qos] = i;
    }
    c->by_copy = teams;
    return 0;
}

static const char *const reclaim_names[] = {"any", "not-higher-priority", "never"};

int fx_qsim_reclaim_parse(const char *s, enum fx_qsim_reclaim *mode, struct flexpu_error *err)
{
    for (int i = 0; i < 3; i++)
        if (s && strcmp(s, reclaim_names[i]) == 0) {
            *mode = (enum fx_qsim_reclaim)i;
            return 0;
        }
    return flexpu_error_field(err, FLEXPU_EINVAL, "--reclaim", s ? s : "", s ? strlen(s) : 0,
                              "expected any, not-higher-priority or never");
}

const char *fx_qsim_reclaim_name(enum fx_qsim_reclaim mode)
{
    return mode >= FX_QSIM_RECLAIM_ANY && mode <= FX_QSIM_RECLAIM_NEVER ? reclaim_names[mode]
                                                                        : "?";
}

int fx_qsim_gangs_parse(const char *s, int *gangs, struct flexpu_error *err)
{
    int n = 0, used = 0;
    if (s && strcmp(s, "auto") == 0)
        *gangs = FX_QSIM_GANGS_AUTO;
    else if (s && strcmp(s, "none") == 0)
        *gangs = FX_QSIM_GANGS_NONE;
    else if (s && sscanf(s, "%d%n", &n, &used) == 1 && s[used] == '\0' && n >= 2 &&
             n <= FX_QSIM_GANG_MAX)
        *gangs = n;
    else
        return flexpu_error_field(err, FLEXPU_EINVAL, "--gangs", s ? s : "", s ? strlen(s) : 0,
                                  "expected auto, none or a gang size from 2 to 64");
    return 0;
}

/* ---- state -------------------------------------------------------------- */

#define NPRIO 4 /* priorities 0..3 (BE, Burstable, LS, Guaranteed) */

struct pod {
    int queue; /* index into the run's queues */
    int rank;  /* arrival order */
    int prio;  /* 0..NPRIO-1; 0 for every pod without queues */
    int gang;  /* index into the run's gangs, -1: alone */
    int64_t arrival, run, start, first_start;
    int64_t alloc_id; /* -1: not running */
    int gen;          /* bumped on eviction: older departures are void */
    int64_t stamp;    /* the pass in which it last fitted nowhere */
    int run_pos;      /* index in running[], -1 */
    struct flexpu_pod_req req;
    struct flexpu_placement pl;
    int64_t amount[R];
};

/* A gang: members start all together or wait (flexpu_engine_place_gang),
 * run as long as the longest of them ran in the trace and end together;
 * evicted, all go. Pending, it is one entry in its queue, its last member
 * to arrive (rep). */
struct gang {
    int first, n; /* members: gmem[first .. first + n) */
    int arrived, running, rep;
    int64_t last_arrival;
    bool started;
};

struct departure {
    int64_t end;
    int pod, gen;
};

struct list {
    int *a;
    int n;
};

struct sim {
    const struct fx_trace *t;
    struct flexpu_engine *e;
    struct flexpu_rng rng;
    struct flexpu_queues *qs;
    int nq;
    int qid[FX_QSIM_MAX_QUEUES];
    bool preempt; /* queues on: priority preemption and (unless never) reclaim */
    enum fx_qsim_reclaim reclaim;
    int64_t capacity[R];
    struct pod *pods;
    struct departure *heap;
    int nheap, heap_cap;
    struct list pending[FX_QSIM_MAX_QUEUES];
    int cursor[FX_QSIM_MAX_QUEUES]; /* pending pods before it did not fit in this pass */
    struct flexpu_pod_req failed[FX_QSIM_MAX_QUEUES][NFAILED];
    int nfailed[FX_QSIM_MAX_QUEUES];
    int *running, nrunning;
    int run_prio[FX_QSIM_MAX_QUEUES][NPRIO]; /* running pods by queue and priority */
    struct gang *gangs;
    int ngangs, *gmem, npartial; /* gangs with some members running, not all */
    double *gwaits;
    int ngwaits;
    struct flexpu_gang_member *gm; /* scratch: a gang's members, FX_QSIM_GANG_MAX */
    /* Passes: a pod that fitted nowhere in the last pass can fit now only
     * on a node freed since (flexpu_engine_node_may_fit), so only those
     * nodes are checked before its full retry. */
    int64_t pass;
    int freed[NFREED], nfreed; /* nodes freed since the last pass; NFREED + 1: too many */
    double *waits[FX_QSIM_MAX_QUEUES];
    int nwaits[FX_QSIM_MAX_QUEUES];
    /* Scratch of a preemption: candidates and the victims chosen. */
    int *cand, *best;
    double *cost;
    char *elig;
    int *gbad, search;
    int win_preempt, win_reclaim; /* victims in the window, for the rates */
    /* Metrics over the arrival window [w0, w1]. */
    double w0, w1, last_t;
    double area_alloc, contended;
    double area_share[FX_QSIM_MAX_QUEUES], area_fair[FX_QSIM_MAX_QUEUES],
        area_dev[FX_QSIM_MAX_QUEUES];
    int next_point;
    struct fx_qsim_result *out;
};

/* Departures of evicted runs stay in the heap until they surface, so it
 * may hold more entries than pods. */
static int heap_push(struct sim *s, struct departure d)
{
    if (s->nheap == s->heap_cap) {
        int cap = s->heap_cap * 2;
        struct departure *h = fx_realloc(s->heap, (size_t)cap * sizeof(*h));
        if (!h)
            return FLEXPU_ENOMEM;
        s->heap = h;
        s->heap_cap = cap;
    }
    int i = s->nheap++;
    while (i > 0) {
        struct departure *p = &s->heap[(i - 1) / 2];
        if (p->end < d.end || (p->end == d.end && p->pod < d.pod))
            break;
        s->heap[i] = *p;
        i = (i - 1) / 2;
    }
    s->heap[i] = d;
    return 0;
}

static struct departure heap_pop(struct sim *s)
{
    struct departure top = s->heap[0], last = s->heap[--s->nheap];
    int i = 0;
    for (;;) {
        int c = 2 * i + 1;
        if (c >= s->nheap)
            break;
        if (c + 1 < s->nheap && (s->heap[c + 1].end < s->heap[c].end ||
                                 (s->heap[c + 1].end == s->heap[c].end &&
                                  s->heap[c + 1].pod < s->heap[c].pod)))
            c++;
        if (last.end < s->heap[c].end || (last.end == s->heap[c].end && last.pod < s->heap[c].pod))
            break;
        s->heap[i] = s->heap[c];
        i = c;
    }
    if (s->nheap > 0)
        s->heap[i] = last;
    return top;
}

/* Whether pod a is served before pod b: higher priority, then earlier
 * arrival (kube-scheduler's active queue). */
static bool before(const struct sim *s, int a, int b)
{
    const struct pod *x = &s->pods[a], *y = &s->pods[b];
    return x->prio != y->prio ? x->prio > y->prio : x->rank < y->rank;
}

/* Inserts pod i (a gang: its rep) into its queue's pending list in
 * serving order. */
static void pend_insert(struct sim *s, int i)
{
    struct list *l = &s->pending[s->pods[i].queue];
    int k = l->n;
    while (k > 0 && before(s, i, l->a[k - 1]))
        k--;
    memmove(&l->a[k + 1], &l->a[k], (size_t)(l->n - k) * sizeof(int));
    l->a[k] = i;
    l->n++;
}

static void pend_remove(struct sim *s, int q, int k)
{
    struct list *l = &s->pending[q];
    memmove(&l->a[k], &l->a[k + 1], (size_t)(l->n - k - 1) * sizeof(int));
    l->n--;
}

/* ---- metrics ------------------------------------------------------------ */

/* Moves the clock to t, adding the state since the last event to the
 * window's time-weighted sums and samples. */
static void advance(struct sim *s, double t)
{
    double a = s->last_t > s->w0 ? s->last_t : s->w0, b = t < s->w1 ? t : s->w1;
    double dt = b > a ? b - a : 0;
    double cap = (double)s->capacity[FLEXPU_RES_GPU_MILLI];
    struct flexpu_stats st;
    flexpu_engine_stats(s->e, &st);
    int64_t waiting = 0;
    double share[FX_QSIM_MAX_QUEUES], fair[FX_QSIM_MAX_QUEUES];
    for (int q = 0; q < s->nq; q++) {
        struct flexpu_queue_status qs;
        flexpu_queues_get(s->qs, s->qid[q], &qs);
        share[q] = (double)qs.allocated[FLEXPU_RES_GPU_MILLI] / cap;
        fair[q] = (double)qs.fair_share[FLEXPU_RES_GPU_MILLI] / cap;
        waiting += qs.pending[FLEXPU_RES_GPU_MILLI];
    }
    if (dt > 0) {
        s->area_alloc += dt * (double)st.gpu_milli_used / cap;
        if (waiting > 0)
            s->contended += dt;
        for (int q = 0; q < s->nq; q++) {
            s->area_share[q] += dt * share[q];
            s->area_fair[q] += dt * fair[q];
            if (waiting > 0)
                s->area_dev[q] += dt * fabs(share[q] - fair[q]);
        }
    }
    double step = (s->w1 - s->w0) / (FX_QSIM_POINTS - 1);
    for (; s->next_point < FX_QSIM_POINTS && s->w0 + s->next_point * step < t; s->next_point++)
        for (int q = 0; q < s->nq; q++) {
            s->out->q[q].t[s->next_point] = s->w0 + s->next_point * step;
            s->out->q[q].share[s->next_point] = share[q];
            s->out->q[q].fair[s->next_point] = fair[q];
        }
    if (t > s->last_t)
        s->last_t = t;
}

/* ---- starting, stopping, evicting ----------------------------------------- */

/* Gang g's running members change by d; npartial follows. */
static void gang_running(struct sim *s, int g, int d)
{
    struct gang *G = &s->gangs[g];
    bool was = G->running > 0 && G->running < G->n;
    G->running += d;
    bool is = G->running > 0 && G->running < G->n;
    s->npartial += (int)is - (int)was;
}

static int start(struct sim *s, int i, int64_t now, int64_t alloc_id, struct flexpu_error *err)
{
    struct pod *p = &s->pods[i];
    if (p->gang >= 0)
        gang_running(s, p->gang, 1);
    s->run_prio[p->queue][p->prio]++;
    p->alloc_id = alloc_id;
    p->start = now;
    if (p->first_start < 0) {
        p->first_start = now;
        s->waits[p->queue][s->nwaits[p->queue]++] = (double)(now - p->arrival);
    }
    p->run_pos = s->nrunning;
    s->running[s->nrunning++] = i;
    flexpu_queues_pending(s->qs, s->qid[p->queue], p->amount, -1);
    flexpu_queues_allocated(s->qs, s->qid[p->queue], p->amount, 1);
    if (heap_push(s, (struct departure){now + p->run, i, p->gen}))
        return flexpu_error_set(err, FLEXPU_ENOMEM, "out of memory for departures");
    return 0;
}

/* Releases a running pod's allocation and takes it off the running list. */
static int stop(struct sim *s, int i, struct flexpu_error *err)
{
    struct pod *p = &s->pods[i];
    int rc = flexpu_engine_release(s->e, p->alloc_id, err);
    if (rc)
        return rc;
    if (s->nfreed < NFREED) {
        int k = 0;
        while (k < s->nfreed && s->freed[k] != p->pl.node)
            k++;
        if (k == s->nfreed)
            s->freed[s->nfreed++] = p->pl.node;
    } else {
        s->nfreed = NFREED + 1;
    }
    int last = s->running[--s->nrunning];
    s->running[p->run_pos] = last;
    s->pods[last].run_pos = p->run_pos;
    p->run_pos = -1;
    p->alloc_id = -1;
    flexpu_queues_allocated(s->qs, s->qid[p->queue], p->amount, -1);
    s->run_prio[p->queue][p->prio]--;
    if (p->gang >= 0)
        gang_running(s, p->gang, -1);
    return 0;
}

/* ---- serving ------------------------------------------------------------ */

static bool same_shape(const struct flexpu_pod_req *a, const struct flexpu_pod_req *b)
{
    return a->cpu_milli == b->cpu_milli && a->mem_mib == b->mem_mib && a->num_gpu == b->num_gpu &&
           a->gpu_milli == b->gpu_milli && a->model_mask == b->model_mask;
}

/* A new pass: every queue looks at all its pods again, and the nodes freed
 * from now on are collected for the next. */
static void new_pass(struct sim *s)
{
    s->pass++;
    for (int q = 0; q < s->nq; q++) {
        s->cursor[q] = 0;
        s->nfailed[q] = 0;
    }
}

static void forget_freed(struct sim *s)
{
    s->nfreed = 0;
}

static const char *pod_name(const struct sim *s, int i)
{
    return s->t->pods[i % s->t->npods].name;
}

/* What gang g asks in all, for the queues. */
static void gang_amount(const struct sim *s, int g, int64_t amt[R])
{
    const struct gang *G = &s->gangs[g];
    memset(amt, 0, R * sizeof(amt[0]));
    for (int k = 0; k < G->n; k++)
        for (int r = 0; r < R; r++)
            amt[r] += s->pods[s->gmem[G->first + k]].amount[r];
}

/* Gang g's members' requests into s->gm. */
static void gang_members(struct sim *s, int g)
{
    const struct gang *G = &s->gangs[g];
    for (int k = 0; k < G->n; k++)
        s->gm[k] = (struct flexpu_gang_member){.req = s->pods[s->gmem[G->first + k]].req};
}

/* Starts gang g's members, holding the allocations in s->gm. */
static int gang_start(struct sim *s, int g, int64_t now, struct flexpu_error *err)
{
    struct gang *G = &s->gangs[g];
    for (int k = 0; k < G->n; k++) {
        int m = s->gmem[G->first + k];
        s->pods[m].pl = s->gm[k].place;
        int rc = start(s, m, now, s->gm[k].alloc_id, err);
        if (rc)
            return rc;
    }
    if (!G->started) {
        G->started = true;
        s->gwaits[s->ngwaits++] = (double)(now - G->last_arrival);
    }
    return 0;
}

/* Gang of rep i, at the cursor of queue q: all its members placed in one
 * decision (flexpu_engine_place_gang) or none. 1 started, 0 not, <0 error. */
static int try_gang(struct sim *s, int q, int i, int64_t now, struct flexpu_error *err)
{
    struct pod *p = &s->pods[i];
    const struct gang *G = &s->gangs[p->gang];
    if (p->stamp == s->pass - 1 && s->nfreed <= NFREED) {
        bool known = true; /* as for one pod: only a freed node can change anything */
        for (int f = 0; f < s->nfreed && known; f++)
            for (int k = 0; k < G->n && known; k++)
                known = !flexpu_engine_node_may_fit(s->e, s->freed[f],
                                                    &s->pods[s->gmem[G->first + k]].req);
        if (known) {
            p->stamp = s->pass;
            return 0;
        }
    }
    int64_t amt[R];
    gang_amount(s, p->gang, amt);
    if (!flexpu_queues_within_limit(s->qs, s->qid[q], amt, NULL, 0))
        return 0;
    gang_members(s, p->gang);
    struct flexpu_noplace why;
    int rc = flexpu_engine_place_gang(s->e, s->gm, G->n, &s->rng, NULL, &why);
    if (rc == FLEXPU_ENOFIT) {
        p->stamp = s->pass;
        return 0;
    }
    if (rc)
        return flexpu_error_set(err, rc, "gang of pod %s: %s", pod_name(s, i), why.text);
    pend_remove(s, q, s->cursor[q]);
    rc = gang_start(s, p->gang, now, err);
    return rc ? rc : 1;
}

/* Starts the first pod (or gang) of queue q, from its cursor on, that is
 * within the queue's limits and fits. 1 started, 0 none, <0 error. */
static int try_queue(struct sim *s, int q, int64_t now, struct flexpu_error *err)
{
    struct list *l = &s->pending[q];
    for (; s->cursor[q] < l->n; s->cursor[q]++) {
        int i = l->a[s->cursor[q]];
        struct pod *p = &s->pods[i];
        if (p->gang >= 0) {
            int rc = try_gang(s, q, i, now, err);
            if (rc)
                return rc;
            continue;
        }
        bool known = false;
        for (int f = 0; f < s->nfailed[q] && !known; f++)
            known = same_shape(&s->failed[q][f], &p->req);
        if (!known && p->stamp == s->pass - 1 && s->nfreed <= NFREED) {
            known = true; /* fitted nowhere last pass: only a freed node can change that */
            for (int f = 0; f < s->nfreed && known; f++)
                known = !flexpu_engine_node_may_fit(s->e, s->freed[f], &p->req);
        }
        if (known) {
            p->stamp = s->pass;
            continue;
        }
        if (!flexpu_queues_within_limit(s->qs, s->qid[q], p->amount, NULL, 0))
            continue;
        struct flexpu_noplace why;
        int64_t id;
        int rc = flexpu_engine_place(s->e, &p->req, &s->rng, &p->pl, &id, &why);
        if (rc == FLEXPU_ENOFIT) {
            p->stamp = s->pass;
            if (s->nfailed[q] < NFAILED)
                s->failed[q][s->nfailed[q]++] = p->req;
            continue;
        }
        if (rc)
            return flexpu_error_set(err, rc, "pod %s: %s", s->t->pods[i % s->t->npods].name,
                                    why.text);
        pend_remove(s, q, s->cursor[q]);
        int src = start(s, i, now, id, err);
        return src ? src : 1;
    }
    return 0;
}

/* Why running pod v may go for a taker of queue q with priority prio
 * asking amt: 1 priority (its own queue, lower priority: kube-scheduler's
 * PriorityClass preemption), 2 reclaim (another queue above its share,
 * as flexpu_queues_may_reclaim and the reclaim mode allow), 0 it stays. */
static int victim_kind(const struct sim *s, int q, int prio, const int64_t amt[R],
                       bool by_queue, const bool *over, int v)
{
    const struct pod *vp = &s->pods[v];
    if (vp->queue == q)
        return vp->prio < prio ? 1 : 0;
    if (!by_queue || !over[vp->queue] ||
        (s->reclaim == FX_QSIM_RECLAIM_NOT_HIGHER && vp->prio > prio))
        return 0;
    return flexpu_queues_may_reclaim(s->qs, s->qid[q], amt, s->qid[vp->queue], vp->amount) ? 2
                                                                                            : 0;
}

/* Work lost: GPU compute (or, for a CPU-only pod, a thousandth of its
 * CPU) times the time it has run. */
static double work_lost(const struct pod *vp, int64_t now)
{
    double w = vp->amount[FLEXPU_RES_GPU_MILLI] > 0
                   ? (double)vp->amount[FLEXPU_RES_GPU_MILLI]
                   : (double)vp->amount[FLEXPU_RES_CPU] / 1000.0;
    return w * (double)(now - vp->start + 1);
}

/* Evicts the victims s->best[0..n) for a taker of queue q: back to
 * pending with their work lost, a gang once its last member is stopped. */
static int evict(struct sim *s, int q, int n, int64_t now, struct flexpu_error *err)
{
    bool in_window = (double)now >= s->w0 && (double)now <= s->w1;
    for (int j = 0; j < n; j++) {
        int v = s->best[j];
        struct pod *vp = &s->pods[v];
        int rc = stop(s, v, err);
        if (rc)
            return rc;
        vp->gen++; /* its departure is void: the work is lost */
        s->out->q[vp->queue].evicted++;
        s->out->evictions++;
        flexpu_queues_pending(s->qs, s->qid[vp->queue], vp->amount, 1);
        int back = v;
        if (vp->gang >= 0 && s->gangs[vp->gang].running > 0)
            continue; /* the gang's other members are still to stop */
        if (vp->gang >= 0)
            back = s->gangs[vp->gang].rep;
        pend_insert(s, back);
        if (vp->queue == q) {
            s->out->preemptions++;
            s->out->q[vp->queue].preempted++;
            s->win_preempt += in_window;
        } else {
            s->out->reclaims++;
            s->out->q[vp->queue].reclaimed++;
            s->win_reclaim += in_window;
        }
    }
    return 0;
}

/* The first pod (or gang) of queue q within its limits, which fitted
 * nowhere, makes room: by priority, evicting lower-priority pods of its
 * own queue; by reclaim, when its queue stays within its fair share with
 * it, pods of queues above theirs. One search over both kinds, the
 * engine's (flexpu_engine_find_victims, find_gang_victims for a gang): the
 * fewest victims, a gang counting once, then the least GPU work lost.
 * 1 started, 0 not, <0 error. */
static int try_preempt(struct sim *s, int q, int64_t now, struct flexpu_error *err)
{
    struct list *l = &s->pending[q];
    int64_t amt[R];
    int k = 0;
    for (; k < l->n; k++) {
        const struct pod *p = &s->pods[l->a[k]];
        if (p->gang >= 0)
            gang_amount(s, p->gang, amt);
        else
            memcpy(amt, p->amount, sizeof(amt));
        if (flexpu_queues_within_limit(s->qs, s->qid[q], amt, NULL, 0))
            break;
    }
    if (k == l->n)
        return 0;
    int taker = l->a[k];
    const struct pod *tp = &s->pods[taker];
    /* Cheap tests before any walk over the running pods. */
    bool by_prio = false;
    for (int pr = 0; pr < tp->prio; pr++)
        by_prio = by_prio || s->run_prio[q][pr] > 0;
    bool by_queue = s->reclaim != FX_QSIM_RECLAIM_NEVER;
    struct flexpu_queue_status st;
    flexpu_queues_get(s->qs, s->qid[q], &st);
    for (int r = 0; r < R && by_queue; r++) /* the taker's own side: the queues are top level */
        if (amt[r] > 0 && st.allocated[r] + amt[r] > st.fair_share[r])
            by_queue = false;
    bool over[FX_QSIM_MAX_QUEUES] = {false}, any = false;
    for (int j = 0; j < s->nq && by_queue; j++) {
        flexpu_queues_get(s->qs, s->qid[j], &st);
        for (int r = 0; r < R; r++)
            over[j] = over[j] || st.allocated[r] > st.fair_share[r];
        any = any || (over[j] && j != q);
    }
    by_queue = by_queue && any;
    if (!by_prio && !by_queue)
        return 0;
    /* A gang goes as one victim, so only if every member may go. */
    s->search++;
    for (int j = 0; j < s->nrunning; j++) {
        int v = s->running[j];
        s->elig[v] = (char)victim_kind(s, q, tp->prio, amt, by_queue, over, v);
        if (!s->elig[v] && s->pods[v].gang >= 0)
            s->gbad[s->pods[v].gang] = s->search;
    }
    int nc = 0;
    for (int j = 0; j < s->nrunning; j++) {
        int v = s->running[j];
        if (!s->elig[v] || (s->pods[v].gang >= 0 && s->gbad[s->pods[v].gang] == s->search))
            continue;
        s->cand[nc] = v;
        s->cost[nc] = work_lost(&s->pods[v], now);
        nc++;
    }
    if (nc == 0)
        return 0;
    struct flexpu_victim_cand *vc = fx_malloc((size_t)nc * sizeof(*vc));
    int *evicted = fx_malloc((size_t)nc * sizeof(int));
    if (!vc || !evicted) {
        fx_free(vc);
        fx_free(evicted);
        return flexpu_error_set(err, FLEXPU_ENOMEM, "out of memory for preemption candidates");
    }
    for (int j = 0; j < nc; j++) {
        const struct pod *vp = &s->pods[s->cand[j]];
        vc[j] = (struct flexpu_victim_cand){vp->alloc_id, s->cost[j], vp->prio,
                                            vp->gang >= 0 ? vp->gang + 1 : 0};
    }
    struct flexpu_preemption pre;
    struct flexpu_noplace why;
    int rc;
    int gn = tp->gang >= 0 ? s->gangs[tp->gang].n : 0;
    if (tp->gang >= 0) {
        gang_members(s, tp->gang);
        rc = flexpu_engine_find_gang_victims(s->e, s->gm, gn, vc, nc, NULL, &pre, evicted, &why);
    } else {
        rc = flexpu_engine_find_victims(s->e, &tp->req, NULL, vc, nc, &pre, evicted, &why);
    }
    int best_n = rc == 0 ? pre.nevicted : 0;
    for (int j = 0; j < best_n; j++)
        s->best[j] = s->cand[evicted[j]];
    fx_free(vc);
    fx_free(evicted);
    if (rc == FLEXPU_ENOFIT || best_n == 0)
        return 0; /* no room even so (or room without evicting: the next pass takes it) */
    if (rc)
        return flexpu_error_set(err, rc, "preemption for pod %s: %s", pod_name(s, taker),
                                why.text);
    /* Each reclaim victim taken in turn must still be allowed with the ones
     * before it gone: the queues' rule holds for the whole set. */
    int j = 0;
    bool allowed = true;
    for (; j < best_n && allowed; j++) {
        const struct pod *vp = &s->pods[s->best[j]];
        allowed = vp->queue == q || flexpu_queues_may_reclaim(s->qs, s->qid[q], amt,
                                                                s->qid[vp->queue], vp->amount);
        flexpu_queues_allocated(s->qs, s->qid[vp->queue], vp->amount, -1);
    }
    for (int u = j - 1; u >= 0; u--)
        flexpu_queues_allocated(s->qs, s->qid[s->pods[s->best[u]].queue],
                                s->pods[s->best[u]].amount, 1);
    if (!allowed)
        return 0;
    /* Capacity grows on the victims' nodes (stop records them): every
     * queue may look again. */
    new_pass(s);
    forget_freed(s);
    if ((rc = evict(s, q, best_n, now, err)))
        return rc;
    for (k = 0; l->a[k] != taker; k++)
        ;
    pend_remove(s, q, k);
    if (tp->gang < 0) {
        int64_t id;
        s->pods[taker].pl = pre.place;
        if ((rc = flexpu_engine_assign(s->e, &s->pods[taker].req, &pre.place, &id, err)))
            return rc;
        rc = start(s, taker, now, id, err);
        return rc ? rc : 1;
    }
    for (int m = 0; m < gn; m++)
        if ((rc = flexpu_engine_assign(s->e, &s->gm[m].req, &s->gm[m].place, &s->gm[m].alloc_id,
                                       err))) {
            struct flexpu_error ignored;
            for (int u = m - 1; u >= 0; u--) /* never a partial gang */
                flexpu_engine_release(s->e, s->gm[u].alloc_id, &ignored);
            return rc;
        }
    rc = gang_start(s, tp->gang, now, err);
    return rc ? rc : 1;
}

/* Serves the queues after the events of one instant: fair shares first,
 * then the queue lowest in usage, one pod at a time, until no queue can
 * start anything. */
static int serve(struct sim *s, int64_t now, struct flexpu_error *err)
{
    flexpu_queues_compute(s->qs, s->capacity);
    bool blocked[FX_QSIM_MAX_QUEUES] = {false};
    new_pass(s);
    for (;;) {
        int best = -1;
        for (int q = 0; q < s->nq; q++)
            if (s->pending[q].n > 0 && !blocked[q] &&
                (best < 0 || flexpu_queues_compare(s->qs, s->qid[q], s->qid[best]) < 0))
                best = q;
        if (best < 0) {
            forget_freed(s);
            return 0;
        }
        int rc = try_queue(s, best, now, err);
        if (rc == 0 && s->preempt)
            rc = try_preempt(s, best, now, err);
        if (rc < 0)
            return rc;
        if (s->npartial > 0)
            s->out->gangs_partial++; /* never: gangs start and stop whole */
        if (rc == 0)
            blocked[best] = true;
    }
}

/* ---- the run ------------------------------------------------------------ */

static int64_t median_run(const struct fx_trace *t)
{
    int64_t *v = fx_malloc(((size_t)t->npods + 1) * sizeof(*v));
    int n = 0;
    if (!v)
        return 0;
    for (int i = 0; i < t->npods; i++) {
        const struct fx_trace_pod *p = &t->pods[i];
        int64_t from = p->scheduled >= 0 ? p->scheduled : p->creation;
        if (p->deletion >= 0 && from >= 0 && p->deletion >= from) {
            int64_t x = p->deletion - from;
            int k = n++;
            while (k > 0 && v[k - 1] > x) /* insertion: runs once per run */
                k--;
            memmove(&v[k + 1], &v[k], (size_t)(n - 1 - k) * sizeof(*v));
            v[k] = x;
        }
    }
    int64_t m = n ? v[n / 2] : 0;
    fx_free(v);
    return m;
}

static int cmp_rank(const void *pa, const void *pb, void *ctx)
{
    const struct sim *s = ctx;
    int a = *(const int *)pa, b = *(const int *)pb;
    if (s->pods[a].arrival != s->pods[b].arrival)
        return s->pods[a].arrival < s->pods[b].arrival ? -1 : 1;
    return a - b;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(double *v, int n, double p)
{
    return n ? v[(int)((n - 1) * p)] : 0;
}

/* The queues of the run and each pod's amounts and queue. */
static int setup_queues(struct sim *s, const struct fx_qsim_config *c, struct flexpu_error *err)
{
    const struct fx_trace *t = s->t;
    s->qs = flexpu_queues_new();
    if (!s->qs)
        return flexpu_error_set(err, FLEXPU_ENOMEM, "out of memory for the queues");
    s->capacity[FLEXPU_RES_GPU_MILLI] = t->gpus * FLEXPU_GPU_MILLI;
    s->nq = c->nqueues > 0 ? c->nqueues : 1;
    s->preempt = c->nqueues > 0;
    s->reclaim = c->reclaim;
    for (int q = 0; q < s->nq; q++) {
        struct flexpu_queue_info in = {.name = c->nqueues ? c->q[q].name : FLEXPU_QUEUE_DEFAULT,
                                       .weight = c->nqueues ? c->q[q].weight : 1.0};
        for (int r = 0; r < R; r++) {
            double cap = (double)s->capacity[r];
            in.guaranteed[r] = c->nqueues ? (int64_t)(c->q[q].guarantee * cap) : 0;
            in.limit[r] = c->nqueues && c->q[q].limit >= 0 ? (int64_t)ceil(c->q[q].limit * cap)
                                                           : FLEXPU_QUEUE_UNLIMITED;
            if (in.limit[r] >= 0 && in.limit[r] < in.guaranteed[r])
                in.limit[r] = in.guaranteed[r];
        }
        int rc = flexpu_queues_set(s->qs, &in, &s->qid[q], err);
        if (rc)
            return rc;
        snprintf(s->out->q[q].name, sizeof(s->out->q[q].name), "%s", in.name);
    }
    return 0;
}

static int run(struct sim *s, const int *order, int n, struct flexpu_error *err)
{
    int k = 0, rc = 0;
    for (;;) {
        while (s->nheap > 0 && (s->pods[s->heap[0].pod].gen != s->heap[0].gen ||
                                s->pods[s->heap[0].pod].alloc_id < 0))
            heap_pop(s); /* the departure of an evicted run */
        int64_t next_arr = k < n ? s->pods[order[k]].arrival : INT64_MAX;
        int64_t next_dep = s->nheap > 0 ? s->heap[0].end : INT64_MAX;
        int64_t now = next_arr < next_dep ? next_arr : next_dep;
        if (now == INT64_MAX)
            return 0;
        advance(s, (double)now);
        while (s->nheap > 0 && s->heap[0].end == now) {
            struct departure d = heap_pop(s);
            if (s->pods[d.pod].gen == d.gen && s->pods[d.pod].alloc_id >= 0 &&
                (rc = stop(s, d.pod, err)))
                return rc;
        }
        if (s->npartial > 0)
            s->out->gangs_partial++;
        for (; k < n && s->pods[order[k]].arrival == now; k++) {
            struct pod *p = &s->pods[order[k]];
            flexpu_queues_pending(s->qs, s->qid[p->queue], p->amount, 1);
            if (p->gang < 0) {
                pend_insert(s, order[k]);
                continue;
            }
            /* A gang waits in its queue from its last member's arrival. */
            struct gang *G = &s->gangs[p->gang];
            if (++G->arrived == G->n) {
                G->rep = order[k];
                G->last_arrival = now;
                pend_insert(s, order[k]);
            }
        }
        if ((rc = serve(s, now, err)))
            return rc;
    }
}

static void results(struct sim *s)
{
    struct fx_qsim_result *o = s->out;
    double win = s->w1 - s->w0;
    o->window_s = win;
    o->contended_s = s->contended;
    o->alloc_mean = win > 0 ? s->area_alloc / win : 0;
    o->evictions_per_hour = win > 0 ? o->evictions / (win / 3600.0) : 0;
    o->preemptions_per_hour = win > 0 ? s->win_preempt / (win / 3600.0) : 0;
    o->reclaims_per_hour = win > 0 ? s->win_reclaim / (win / 3600.0) : 0;
    o->preemptions_per_trace_hour = o->preemptions_per_hour / o->rate;
    o->reclaims_per_trace_hour = o->reclaims_per_hour / o->rate;
    o->gangs = s->ngangs;
    o->gangs_started = s->ngwaits;
    qsort(s->gwaits, (size_t)s->ngwaits, sizeof(double), cmp_double);
    o->gang_wait_p50 = pct(s->gwaits, s->ngwaits, 0.5);
    o->gang_wait_p99 = pct(s->gwaits, s->ngwaits, 0.99);
    o->npoints = s->next_point;
    int all = 0;
    for (int q = 0; q < s->nq; q++)
        all += s->nwaits[q];
    double *every = fx_malloc(((size_t)all + 1) * sizeof(double));
    int m = 0;
    for (int q = 0; q < s->nq; q++) {
        struct fx_qsim_queue *r = &o->q[q];
        qsort(s->waits[q], (size_t)s->nwaits[q], sizeof(double), cmp_double);
        r->started = s->nwaits[q];
        r->never_started = r->pods - r->started;
        r->wait_p50 = pct(s->waits[q], s->nwaits[q], 0.5);
        r->wait_p99 = pct(s->waits[q], s->nwaits[q], 0.99);
        r->share_mean = win > 0 ? s->area_share[q] / win : 0;
        r->fair_mean = win > 0 ? s->area_fair[q] / win : 0;
        r->dev_mean = s->contended > 0 ? s->area_dev[q] / s->contended : 0;
        if (every)
            for (int j = 0; j < s->nwaits[q]; j++)
                every[m++] = s->waits[q][j];
    }
    if (every) {
        qsort(every, (size_t)m, sizeof(double), cmp_double);
        o->wait_p50 = pct(every, m, 0.5);
        o->wait_p99 = pct(every, m, 0.99);
    }
    fx_free(every);
}

/* ---- gangs of the trace --------------------------------------------------- */

struct gkey_ctx {
    const struct fx_trace *t;
    bool by_time; /* auto: creation second first; size: shape first */
};

static int cmp_gkey(const void *pa, const void *pb, void *ctx)
{
    const struct gkey_ctx *g = ctx;
    int a = *(const int *)pa, b = *(const int *)pb;
    const struct fx_trace_pod *x = &g->t->pods[a], *y = &g->t->pods[b];
    int64_t kx[6] = {x->creation, x->cpu_milli, x->mem_mib, x->num_gpu, x->gpu_milli, x->qos};
    int64_t ky[6] = {y->creation, y->cpu_milli, y->mem_mib, y->num_gpu, y->gpu_milli, y->qos};
    for (int k = g->by_time ? 0 : 1; k < 6; k++)
        if (kx[k] != ky[k])
            return kx[k] < ky[k] ? -1 : 1;
    int c = strcmp(x->gpu_spec, y->gpu_spec);
    if (c)
        return c;
    if (!g->by_time && x->creation != y->creation)
        return x->creation < y->creation ? -1 : 1;
    return a - b;
}

static bool same_gang_key(const struct fx_trace *t, int a, int b, bool by_time)
{
    const struct fx_trace_pod *x = &t->pods[a], *y = &t->pods[b];
    return (!by_time || x->creation == y->creation) && x->cpu_milli == y->cpu_milli &&
           x->mem_mib == y->mem_mib && x->num_gpu == y->num_gpu &&
           x->gpu_milli == y->gpu_milli && x->qos == y->qos &&
           strcmp(x->gpu_spec, y->gpu_spec) == 0;
}

/* The trace's gangs (sim/timed.h, FX_QSIM_GANGS_*), each copy's its own:
 * s->gangs and s->gmem, and each member's gang and run time (the longest
 * of its gang's: they end together). */
static int build_gangs(struct sim *s, int mode, int copies, struct flexpu_error *err)
{
    const struct fx_trace *t = s->t;
    int nt = t->npods, *idx = fx_malloc(((size_t)nt + 1) * sizeof(int));
    int *tg = fx_malloc(((size_t)nt + 1) * sizeof(int)); /* trace pod -> its group's start in idx */
    int *tn = fx_malloc(((size_t)nt + 1) * sizeof(int)); /* ... and size, at the start */
    int rc = 0;
    if (!idx || !tg || !tn) {
        rc = flexpu_error_set(err, FLEXPU_ENOMEM, "out of memory for gangs");
        goto out;
    }
    int m = 0;
    for (int i = 0; i < nt; i++) {
        tg[i] = -1;
        if (mode != FX_QSIM_GANGS_NONE && t->pods[i].num_gpu > 0 && t->pods[i].gpu_milli > 0)
            idx[m++] = i; /* GPU pods only: a gang is a multi-pod GPU job */
    }
    struct gkey_ctx ctx = {t, mode == FX_QSIM_GANGS_AUTO};
    qsort_r(idx, (size_t)m, sizeof(int), cmp_gkey, &ctx);
    int size = mode == FX_QSIM_GANGS_AUTO ? FX_QSIM_GANG_MAX : mode, ngroups = 0, members = 0;
    for (int a = 0; a < m;) {
        int b = a + 1;
        while (b < m && b - a < size && same_gang_key(t, idx[a], idx[b], ctx.by_time))
            b++;
        if (b - a >= 2 && (mode == FX_QSIM_GANGS_AUTO || b - a == size)) {
            tn[a] = b - a;
            for (int k = a; k < b; k++)
                tg[idx[k]] = a;
            ngroups++;
            members += b - a;
        }
        a = b;
    }
    s->ngangs = ngroups * copies;
    s->out->gang_pods = members * copies;
    s->gangs = fx_calloc((size_t)s->ngangs + 1, sizeof(*s->gangs));
    s->gmem = fx_malloc(((size_t)s->out->gang_pods + 1) * sizeof(int));
    s->gwaits = fx_malloc(((size_t)s->ngangs + 1) * sizeof(double));
    s->gbad = fx_calloc((size_t)s->ngangs + 1, sizeof(int));
    if (!s->gangs || !s->gmem || !s->gwaits || !s->gbad) {
        rc = flexpu_error_set(err, FLEXPU_ENOMEM, "out of memory for %d gangs", s->ngangs);
        goto out;
    }
    int g = 0, used = 0;
    for (int c = 0; c < copies; c++)
        for (int a = 0; a < m; a++) {
            if (tg[idx[a]] != a)
                continue; /* not the first member of a group */
            struct gang *G = &s->gangs[g];
            G->first = used;
            G->n = tn[a];
            int64_t longest = 0;
            for (int k = a; k < a + tn[a]; k++) {
                int i = c * nt + idx[k];
                s->gmem[used++] = i;
                s->pods[i].gang = g;
                longest = s->pods[i].run > longest ? s->pods[i].run : longest;
            }
            for (int k = 0; k < G->n; k++)
                s->pods[s->gmem[G->first + k]].run = longest;
            g++;
        }
out:
    fx_free(idx);
    fx_free(tg);
    fx_free(tn);
    return rc;
}

int fx_qsim_run(const struct fx_trace *t, const char *policy, double coverage, double rate,
                const struct fx_qsim_config *c, struct fx_qsim_result *out,
                struct flexpu_error *err)
{
    memset(out, 0, sizeof(*out));
    out->policy = policy;
    out->rate = rate;
    if (t->gpus == 0 || t->npods == 0)
        return flexpu_error_set(err, FLEXPU_EINVAL, "the trace has no GPUs or no pods");
    if (!(rate >= 1.0))
        return flexpu_error_set(err, FLEXPU_EINVAL, "field '--rate': invalid value '%g': below 1",
                                rate);
    for (int i = 0; i < t->npods; i++)
        if (t->pods[i].creation < 0)
            return flexpu_error_set(err, FLEXPU_EINVAL,
                                    "pod %s (line %d): the timed replay needs creation_time",
                                    t->pods[i].name, i + 2);
    struct sim s = {.t = t, .out = out};
    int copies = c->copies > 1 ? c->copies : 1;
    if (copies > 1000 || (int64_t)t->npods * copies > 50000000)
        return flexpu_error_set(err, FLEXPU_EINVAL,
                                "field '--copies': invalid value '%d': at most 1000 and 50,000,000 "
                                "pods in all",
                                copies);
    size_t n = (size_t)t->npods * (size_t)copies;
    int rc = fx_trace_engine(t, &s.e, err);
    if (rc)
        return rc;
    int *order = fx_malloc(n * sizeof(int));
    s.pods = fx_calloc(n, sizeof(*s.pods));
    s.heap_cap = (int)n + 16;
    s.heap = fx_malloc((size_t)s.heap_cap * sizeof(*s.heap));
    s.running = fx_malloc(n * sizeof(int));
    s.cand = fx_malloc(n * sizeof(int));
    s.best = fx_malloc(n * sizeof(int));
    s.cost = fx_malloc(n * sizeof(double));
    s.elig = fx_calloc(n, 1);
    s.gm = fx_calloc(FX_QSIM_GANG_MAX, sizeof(*s.gm));
    bool ok = order && s.pods && s.heap && s.running && s.cand && s.best && s.cost && s.elig &&
              s.gm;
    for (int q = 0; q < FX_QSIM_MAX_QUEUES && ok; q++) {
        s.pending[q].a = fx_malloc(n * sizeof(int));
        s.waits[q] = fx_malloc(n * sizeof(double));
        ok = s.pending[q].a && s.waits[q];
    }
    if (!ok) {
        rc = flexpu_error_set(err, FLEXPU_ENOMEM, "out of memory for the timed replay");
        goto out;
    }
    if ((rc = flexpu_engine_set_policy(s.e, policy, err)) ||
        (rc = fx_trace_set_workload(s.e, t, coverage, err)) || (rc = setup_queues(&s, c, err)))
        goto out;
    fx_engine_set_ties(s.e, FX_TIES_POLICY, 42);
    flexpu_rng_seed(&s.rng, 42);
    int64_t fallback = median_run(t);
    for (size_t i = 0; i < n; i++) {
        const struct fx_trace_pod *tp = &t->pods[i % (size_t)t->npods];
        struct pod *p = &s.pods[i];
        if ((rc = fx_trace_req(s.e, tp, &p->req, err)))
            goto out;
        p->req.priority = tp->qos == FLEXPU_QOS_BE          ? 0
                          : tp->qos == FLEXPU_QOS_BURSTABLE  ? 1
                          : tp->qos == FLEXPU_QOS_GUARANTEED ? 3
                                                             : 2;
        p->prio = c->nqueues > 0 ? p->req.priority : 0; /* the baseline: arrival order only */
        p->gang = -1;
        int64_t from = tp->scheduled >= 0 ? tp->scheduled : tp->creation;
        p->run = tp->deletion >= from ? tp->deletion - from : fallback;
        p->arrival = (int64_t)((double)tp->creation / rate);
        p->alloc_id = -1;
        p->first_start = -1;
        p->run_pos = -1;
        p->stamp = -2; /* never tried */
        p->queue = c->nqueues == 0 ? 0
                   : c->by_copy    ? (int)(i / (size_t)t->npods) % c->nqueues
                                   : c->by_qos[tp->qos];
        /* The queues share GPU compute, the figure the issue measures:
         * devices, CPU and memory are left to placement. Counting them
         * too makes a queue's usage its most used resource (a share of a
         * GPU holds a whole device), and a pod under its GPU share could
         * then not take back what its queue lent. */
        p->amount[FLEXPU_RES_GPU_MILLI] = (int64_t)tp->num_gpu * tp->gpu_milli;
        out->q[p->queue].pods++;
        order[i] = (int)i;
    }
    if ((rc = build_gangs(&s, c->gangs, copies, err)))
        goto out;
    qsort_r(order, n, sizeof(int), cmp_rank, &s);
    for (size_t k = 0; k < n; k++)
        s.pods[order[k]].rank = (int)k;
    /* The window: from the 10th to the 90th percentile of arrivals. The
     * trace's first arrivals trickle in over four months before 90% of
     * its pods come in the last month; its last ones leave as the trace
     * ends: neither is a steady state. */
    s.w0 = (double)s.pods[order[n / 10]].arrival;
    s.w1 = (double)s.pods[order[n - 1 - n / 10]].arrival;
    if (s.w1 <= s.w0)
        s.w1 = s.w0 + 1;
    s.last_t = s.w0;
    out->nqueues = s.nq;
    out->pods = (int)n;
    double t0 = fx_mono_seconds();
    rc = run(&s, order, (int)n, err);
    advance(&s, s.w1 + 1);
    results(&s);
    out->seconds = fx_mono_seconds() - t0;
out:
    fx_free(order);
    fx_free(s.pods);
    fx_free(s.heap);
    fx_free(s.running);
    fx_free(s.cand);
    fx_free(s.best);
    fx_free(s.cost);
    fx_free(s.elig);
    fx_free(s.gm);
    fx_free(s.gangs);
    fx_free(s.gmem);
    fx_free(s.gwaits);
    fx_free(s.gbad);
    for (int q = 0; q < FX_QSIM_MAX_QUEUES; q++) {
        fx_free(s.pending[q].a);
        fx_free(s.waits[q]);
    }
    flexpu_queues_free(s.qs);
    flexpu_engine_free(s.e);
    return rc;
}

/* ---- report ------------------------------------------------------------- */

void fx_qsim_report(FILE *f, const struct fx_qsim_result *with, const struct fx_qsim_result *base,
                    const char *trace)
{
    fprintf(f,
            "trace: %s (timed replay with queues: arrivals at %gx the trace's rate, real run "
            "times; window %.0f s from the 10th to the 90th percentile arrival, contended %.0f s)\n",
            trace, with->rate, with->window_s, with->contended_s);
    fprintf(f, "%-10s %6s %7s %6s %7s %9s %9s %9s %9s %9s\n", "queue", "pods", "started",
            "never", "evicted", "wait p50", "wait p99", "GPU share", "fair", "|dev| cont");
    for (int q = 0; q < with->nqueues; q++) {
        const struct fx_qsim_queue *r = &with->q[q];
        fprintf(f, "%-10s %6d %7d %6d %7d %8.0fs %8.0fs %8.2f%% %8.2f%% %8.2fpt\n", r->name,
                r->pods, r->started, r->never_started, r->evicted, r->wait_p50, r->wait_p99,
                100 * r->share_mean, 100 * r->fair_mean, 100 * r->dev_mean);
    }
    fprintf(f, "policy %s: GPU allocation %.2f%% with queues, %.2f%% without (%+.2f points); "
               "time-to-start p50 %.0f s p99 %.0f s with queues, p50 %.0f s p99 %.0f s "
               "without; %d evictions (%.1f per hour); %.2f s + %.2f s\n",
            with->policy, 100 * with->alloc_mean, 100 * base->alloc_mean,
            100 * (with->alloc_mean - base->alloc_mean), with->wait_p50, with->wait_p99,
            base->wait_p50, base->wait_p99, with->evictions, with->evictions_per_hour,
            with->seconds, base->seconds);
    fprintf(f, "victims (a gang once): %d by priority (%.1f per hour of the window, %.2f per "
               "hour of trace time), %d by reclaim (%.1f, %.2f)\n",
            with->preemptions, with->preemptions_per_hour, with->preemptions_per_trace_hour,
            with->reclaims, with->reclaims_per_hour, with->reclaims_per_trace_hour);
    fprintf(f, "gangs: %d (%d pods), %d started, time-to-start p50 %.0f s p99 %.0f s with "
               "queues, p50 %.0f s p99 %.0f s without; steps with a gang running in part: %d "
               "and %d\n",
            with->gangs, with->gang_pods, with->gangs_started, with->gang_wait_p50,
            with->gang_wait_p99, base->gang_wait_p50, base->gang_wait_p99, with->gangs_partial,
            base->gangs_partial);
}

int fx_qsim_csv(const char *path, const struct fx_qsim_result *r, struct flexpu_error *err)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return flexpu_error_set(err, FLEXPU_EIO, "%s: cannot write", path);
    fputs("policy,queue,time_s,gpu_share,fair_share\n", f);
    for (int q = 0; q < r->nqueues; q++)
        for (int j = 0; j < r->npoints; j++)
            fprintf(f, "%s,%s,%.0f,%.6f,%.6f\n", r->policy, r->q[q].name, r->q[q].t[j],
                    r->q[q].share[j], r->q[q].fair[j]);
    if (fclose(f) != 0)
        return flexpu_error_set(err, FLEXPU_EIO, "%s: write failed", path);
    return 0;
}
