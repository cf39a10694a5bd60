/* SPDX-License-Identifier: Apache-2.0 */
#include "scheduler/model.h"

#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "flexpu/gang.h"
#include "flexpu/log.h"
#include "flexpu/queue.h"
#include "flexpu/rng.h"
#include "flexpu/sched.h"
#include "kube/contract.h"
#include "kube/pod_rules.h"
#include "scheduler/borrow.h"
#include "scheduler/remote_topology.h"
#include "util/alloc.h"
#include "util/fnv.h"
#include "util/strmap.h"

#define SHAPES_MAX  128
#define COMP        "model"

enum pod_state {
    POD_QUEUED,  /* ours, waiting in the heap */
    POD_WAITING, /* ours, fits nowhere now; back to the heap when capacity frees */
    POD_INVALID, /* ours, malformed; back when the pod changes */
    POD_ASSUMED, /* ours, decided and being bound, or its bind's outcome unknown */
    POD_BOUND,   /* on a node (anyone's) */
    POD_NOMINATED, /* ours, holding its place on a node until its victims are gone */
    /* ours, pending with spec.schedulingGates: never decided, charged to
     * no queue, no member of its gang yet, until its last gate goes */
    POD_GATED,
};

struct node;
struct gang;
struct vhold;

/* Strings a pod may or may not have are allocated at their length (NULL:
 * empty): a cluster holds tens of thousands of pods, and fixed buffers sized
 * for the longest names cost the daemon most of its memory. */
struct pod {
    char uid[64];
    char *ns, *name, *node;
    enum pod_state state;
    bool ours;
    int64_t alloc;      /* engine allocation, 0 when not accounted */
    struct node *on;    /* the node record it is listed on */
    struct pod *prev, *next;
    struct fx_pod_spec spec;
    struct flexpu_pod_req req;
    struct flexpu_filter *filter; /* node constraints of a pending pod of ours; NULL: none */
    char *allocation;   /* the recorded annotation (NULL when none) */
    char created[40];
    int64_t created_s; /* created in unix seconds (epoch_of), read once: victims' ages */
    uint64_t seq;
    int heap;           /* index in its heap, -1 when not queued */
    int hq;             /* which heap: a queue id, or LOOSE */
    /* Its queue (flexpu.io/queue, or the default one): qname as labelled
     * (NULL: none), qid resolved (-1: not a member, or the queue does not
     * exist yet: noqueue), and what is charged to it now (qheld: 0 nothing,
     * 1 pending, 2 allocated; qamt the amount, in queue qheld_id). */
    char *qname;
    int qid;
    bool noqueue;
    bool limited;       /* waits because its queue is at a limit */
    int qheld, qheld_id;
    int64_t qamt[FLEXPU_RES_COUNT_];
    /* Its pod group (flexpu.io/pod-group), NULL: none; listed on it, with
     * the values it carries (grp: min-members, queue, opportunistic; its
     * group's may differ: gang_carries). */
    struct gang *gang;
    struct pod *gprev, *gnext;
    struct fx_pod_group grp;
    bool gang_short;    /* waits for more members of its group to exist */
    bool gang_refused;  /* invalid for carrying other values than its group */
    bool gang_tell;     /* to be told why its group's last try failed (gang_told) */
    /* Preemption: a victim being evicted for the pod whose uid is
     * `preemptor` (evicted: its eviction was accepted); a nominated pod
     * waits for nvictims victims to go. A victim whose eviction was refused
     * is not one again while shielded == the model's end_epoch. */
    bool evicting, evicted;
    bool never_preempt; /* spec.preemptionPolicy: Never */
    char *preemptor;
    int nvictims;
    uint64_t shielded;
    /* A victim's capacity booked until it is gone (struct vhold); NULL
     * for every other pod. */
    struct vhold *hold;
    char *told;         /* the last message reported for it */
    /* When its PodScheduled condition turned False (unix seconds), as the
     * watch last showed it; 0: not False. A new reason keeps it
     * (fx_attempt's unscheduled_since_s). Only a pending pod of ours. */
    int64_t unsched_s;
    char *problem;      /* why the pod is invalid */
    char *gates;        /* its spec.schedulingGates as "[a b]"; NULL: none */
    bool counted;       /* its shape is in the workload */
    uint64_t gen;       /* the list generation it was last seen in */
    /* An assumed pod whose bind may or may not have been applied (timeout,
     * 5xx, 409): it keeps its allocation until the watch shows it bound or
     * deleted, or a read-back at settle_ms finds it still unbound. */
    bool unsure;
    int64_t settle_ms;
    /* On the model's list of waiting pods (POD_WAITING): woken when a node
     * it may fit changes, without a walk over every pod. */
    bool wlinked;
    struct pod *wprev, *wnext;
    /* What its allocation holds on its node: gpus (bit i: GPU i), noquota
     * (those without a memory quota: a whole GPU, all its memory). A
     * borrower (docs/KUBERNETES.md, "Borrowing idle GPUs") holds none of
     * them in the engine: it borrows bgpu, bcores percent of it and
     * bmem_mib of its memory; reclaimed: its eviction is a reclaim. */
    uint32_t gpus, noquota;
    bool borrowed, reclaimed;
    /* On the model's list of borrowers while borrowed (borrow_set): the
     * victim search for lent capacity walks them, not every pod. */
    struct pod *bprev, *bnext;
    /* A reclaim, or an eviction for lent capacity, that a
     * PodDisruptionBudget refused is done by a delete (reclaim_delete:
     * borrower_delete). A reclaim refused otherwise (the delete too, the
     * API failing) is not tried again before reclaim_after_s (the model's
     * clock; 0: none), the wait doubling from FX_RECLAIM_GPU_GAP_S up to
     * FX_RECLAIM_BACKOFF_MAX_S: a borrower kept in place must not come
     * back every gap, nor spend the cluster's reclaims. */
    bool reclaim_delete;
    int32_t reclaim_backoff_s;
    int64_t reclaim_after_s;
    int bgpu, bcores;
    int64_t bmem_mib;
    int64_t borrow_try_s; /* when it last looked for a GPU to borrow (the model's clock) */
    /* A remote slice (docs/REMOTE.md, "Kubernetes"): the pod runs on its
     * node (alloc: its CPU and memory there) and its GPU share is on node
     * rnode (ralloc: that share, no CPU or memory; 0 while that node is out
     * of the engine, or while the pod leaves as a victim: its hold books
     * it then). NULL: not remote. rnoquota: the GPUs of rnode its share
     * holds without a memory quota (all their memory, as noquota), counted
     * in rnode's rwhole while ralloc or its hold holds them (remote_whole). */
    char *rnode;
    int64_t ralloc;
    uint32_t rnoquota;
    /* flexpu.io/remote-topology-key of a pod to place: a remote slice only
     * where its node and the GPU node share this label's value
     * (remote_rule_scope). NULL: no rule. */
    char *rkey;
    /* Its inter-pod rules (pod affinity and anti-affinity, required and
     * preferred, topology spread constraints; NULL: none), read for every
     * pod, as pods placed by others count too (rules_filter), and its
     * labels (metadata.labels, packed: fx_labels_pack; NULL: none), which
     * other pods' rules select on. A pod with rules that act on the pods
     * decided after it (required anti-affinity: the symmetric rule; required
     * affinity and preferred terms: InterPodAffinity's score) is on the
     * model's list of them (aprev, anext). terminating: its
     * metadata.deletionTimestamp is set (spread does not count it). */
    struct fx_pod_rules *rules;
    char *labels;
    bool alinked, terminating;
    struct pod *aprev, *anext;
};

#define STR(s) ((s) ? (s) : "")

/* Sets a pod string; NULL or "" frees it. On allocation failure the old
 * value stays and the failure is logged (a name, never an accounting). */
static void str_set(char **dst, const char *src)
{
    if (!src || !*src) {
        fx_free(*dst);
        *dst = NULL;
        return;
    }
    if (*dst && strcmp(*dst, src) == 0)
        return;
    char *copy = fx_strdup(src);
    if (!copy) {
        FX_ERROR(COMP, "out of memory for a pod's string", "value=%.40s", src);
        return;
    }
    fx_free(*dst);
    *dst = copy;
}

static void pod_free(struct pod *p)
{
    fx_free(p->ns);
    fx_free(p->name);
    fx_free(p->node);
    fx_free(p->allocation);
    fx_free(p->told);
    fx_free(p->problem);
    fx_free(p->gates);
    fx_free(p->qname);
    fx_free(p->preemptor);
    fx_free(p->rnode);
    fx_free(p->rkey);
    fx_free(p->hold); /* released in the engine already, or freed with it */
    flexpu_filter_free(p->filter);
    fx_pod_rules_free(p->rules);
    fx_free(p->labels);
    fx_free(p);
}

struct node {
    char name[256];
    int id;             /* engine id, -1 when not in the engine (cordoned, no GPUs yet...) */
    struct fx_node_inv inv;
    int64_t cpu_milli, mem_bytes;
    bool cordoned;      /* not Ready, or its labels or taints unreadable: out of the engine */
    int remote_slots;   /* without GPUs: remote pods it may run (allocatable flexpu.io/gpu) */
    uint64_t attrs_hash; /* its labels and taints (fx_node_attrs_parse) */
    bool seen;          /* the Node object exists (else a record holding its pods) */
    struct pod *pods;   /* pods bound here */
    int64_t holds[FLEXPU_MAX_GPUS]; /* allocations that fence unhealthy GPUs */
    /* Remote slices here without a memory quota, per GPU (pod rnoquota):
     * their pods are on other nodes, not in pods, and a borrower must not
     * take the memory they hold (borrow_gpu_ok). */
    int rwhole[FLEXPU_MAX_GPUS];
    /* Measured use (flexpu.io/gpu-usage, fx_model_gpu_use): as of use_ts,
     * the agent's unix seconds (0: none); use_busy -1: GPU not measured. */
    int64_t use_ts;
    int16_t use_busy[FLEXPU_MAX_GPUS], use_mean[FLEXPU_MAX_GPUS];
    int64_t use_mem[FLEXPU_MAX_GPUS];
    int64_t use_owner_mem[FLEXPU_MAX_GPUS]; /* of it, the owners' (borrow.h, --borrow-mem idle) */
    /* Borrowing's view of each GPU (borrow.h), from its first usage
     * reading on; NULL: none yet. nwatch entries (its GPUs then). */
    struct fx_gpu_watch *watch;
    int nwatch;
};

/* Beyond this many nodes with freed capacity between two wake-ups, every
 * waiting pod is retried (a busy cluster frees capacity everywhere). */
#define CHANGED_MAX 64

struct shape {
    struct flexpu_pod_req req;
    double count;
    double cpu_sum; /* the shape's CPU is the mean of its pods' (flexpu weighs CPU per GPU) */
    double mem_sum; /* and its memory too (flexpu's change 9 weighs memory per GPU) */
};

/* A binary heap of pods on (class priority desc, priority desc, created
 * asc, seq asc). */
struct pheap {
    struct pod **h;
    size_t n, cap;
};

#define LOOSE (-1)
#define READY (-2)

/* A pod group: pods of one namespace with one flexpu.io/pod-group label,
 * placed min_members at a time all or none (docs/QUEUES.md, "Gangs"). */
struct gang {
    char key[320];             /* namespace/group */
    /* Its values, as some member carries them (gang_settle); a member
     * carrying others is refused (gang_refuse). */
    struct fx_pod_group grp;
    struct pod *members;
    int nmembers;
    /* Why its last try to place the missing members failed, as told to
     * the member whose turn it was; the others tried with it are told the
     * same (gang_tell). */
    char *said;
    enum fx_wait said_why;
};

/* Pods by uid, oldest first. */
struct uidq {
    char **v;
    size_t n, cap;
};

static bool uidq_push(struct uidq *q, const char *uid)
{
    if (q->n == q->cap) {
        size_t cap = q->cap ? q->cap * 2 : 16;
        char **v = fx_realloc(q->v, cap * sizeof(*v));
        if (!v)
            return false;
        q->v = v;
        q->cap = cap;
    }
    char *u = fx_strdup(uid);
    if (!u)
        return false;
    q->v[q->n++] = u;
    return true;
}

/* Removes entry i and hands it to the caller, to free. */
static char *uidq_take(struct uidq *q, size_t i)
{
    char *u = q->v[i];
    memmove(q->v + i, q->v + i + 1, (q->n - i - 1) * sizeof(*q->v));
    q->n--;
    return u;
}

static void uidq_free(struct uidq *q)
{
    for (size_t i = 0; i < q->n; i++)
        fx_free(q->v[i]);
    fx_free(q->v);
}

struct reclaim_item {
    char uid[64];
    char msg[400];
};

struct fx_model {
    struct flexpu_engine *e;
    struct flexpu_rng rng;
    char sched_name[256];
    struct fx_strmap pods, nodes;
    /* Pods to decide: one heap per queue (served in the queues' fair-share
     * order) and the loose heap of pods that only need telling (invalid,
     * or naming a queue that does not exist), served first. */
    struct pheap *qh;   /* by queue id */
    int nqh;
    struct pheap loose;
    /* Gang members decided with the one fx_model_next returned, waiting
     * for their own turn to be returned for binding (state ASSUMED). */
    struct pheap ready;
    struct fx_strmap gangs; /* by key */
    int ngang_tell;         /* members with gang_tell */
    uint64_t mig_models; /* engine model bits of MIG devices: allocated whole */
    uint64_t gangs_placed, gang_waits;
    /* Victims to hand out as FX_EVICT attempts, oldest first; pods whose
     * status.nominatedNodeName names a place they gave back, for
     * FX_UNNOMINATE attempts (nomination_drop). */
    struct uidq evictq, unnomq;
    uint64_t end_epoch;  /* bumped when a pod ends: shielded victims may go again */
    /* The victims' holds (struct vhold), and the engine nodes where
     * capacity was freed since the short ones last took what they lack
     * (holds_refresh; holds_freed_all: anywhere, or more than CHANGED_MAX
     * nodes). */
    struct vhold *holds;
    int nholds;
    int holds_freed[CHANGED_MAX];
    int nholds_freed;
    bool holds_freed_all;
    int64_t min_prio;    /* the lowest class priority of a bound pod seen (a bound) */
    bool min_prio_set;
    uint64_t preemptions, evictions, evictions_refused, evictions_deleted;
    enum fx_reclaim reclaim;
    enum fx_borrow_mem borrow_mem; /* which memory borrowers may take (borrow.h) */
    struct flexpu_queues *queues;
    bool shares_dirty;  /* demand, capacity or quotas changed since the last compute */
    bool queue_freed;   /* a queue's allocation went down: limited pods may fit */
    bool queues_changed; /* queues defined or removed: pods without one may have one */
    int64_t gpu_mem_total; /* MiB of the GPUs in the engine (queues' capacity) */
    uint64_t seq;
    /* Capacity freed since the waiting pods were last woken: on these
     * engine nodes, or anywhere (changed_all: more than CHANGED_MAX nodes,
     * or a release whose node is unknown). */
    int changed[CHANGED_MAX];
    int nchanged;
    bool changed_all;
    /* Nodes where a borrower turned a victim (bound) since then: a pod
     * that takes back lent capacity may fit there once the borrowers go
     * (borrower_bound; bbound_all: more than CHANGED_MAX nodes). */
    int bbound[CHANGED_MAX];
    int nbbound;
    bool bbound_all;
    struct pod *waiting; /* the waiting pods, most recent first */
    int nwaiting;
    uint64_t wake_checks, wakes; /* pods tested against changed nodes; pods woken */
    int64_t conflicts;
    /* Borrowing: the scheduler's wall clock (unix seconds, fx_model_set_clock;
     * 0: borrowing off), borrowers bound or assumed, reclaims decided and
     * queued (uids and their events' messages), a reading that may make a
     * reclaim due, and when waiting opportunistic pods were last retried. */
    int64_t now_s;
    int nborrowers;
    struct pod *borrowers; /* the nborrowers pods with borrowed set (borrow_set) */
    uint64_t borrows, reclaims, reclaims_refused, reclaims_deleted;
    struct reclaim_item *reclaimq;
    size_t nreclaimq, capreclaimq;
    bool reclaim_check;
    int64_t reclaim_scan_s;
    size_t reclaim_scan_at; /* the pods' slot where the next scan starts */
    int reclaims_this_s;
    bool borrow_wake;
    int64_t borrow_wake_s;
    struct shape shapes[SHAPES_MAX];
    int nshapes;
    bool shapes_dirty;
    uint64_t shapes_total, shapes_refreshed;
    uint64_t workload_refreshes; /* times the engine was given the shapes again */
    uint64_t hold_books; /* victims' holds booked in the engine (hold_book) */
    uint64_t pod_gen;  /* bumped at each full pod list */
    int nunsure;       /* pods with unsure set */
    int nremote;       /* pods with a remote slice (rnode set) */
    uint64_t remote_placed;
    struct fx_remote_topology remote_topo; /* where a remote pod runs near its GPU */
    /* Pods with inter-pod rules (nruled) and those whose rules act on
     * others (the list at acting: struct pod's rules): a model without them
     * pays nothing for them. */
    int nruled;
    struct pod *acting;
};

/* ---- the queues' heaps ---- */

static bool before(const struct pod *a, const struct pod *b)
{
    if (a->spec.class_priority != b->spec.class_priority)
        return a->spec.class_priority > b->spec.class_priority;
    if (a->spec.priority != b->spec.priority)
        return a->spec.priority > b->spec.priority;
    int c = strcmp(a->created, b->created); /* RFC 3339 UTC sorts as text */
    if (c)
        return c < 0;
    return a->seq < b->seq;
}

static void heap_set(struct pheap *h, size_t i, struct pod *p)
{
    h->h[i] = p;
    p->heap = (int)i;
}

static void sift_up(struct pheap *h, size_t i)
{
    struct pod *p = h->h[i];
    while (i > 0 && before(p, h->h[(i - 1) / 2])) {
        heap_set(h, i, h->h[(i - 1) / 2]);
        i = (i - 1) / 2;
    }
    heap_set(h, i, p);
}

static void sift_down(struct pheap *h, size_t i)
{
    struct pod *p = h->h[i];
    for (;;) {
        size_t l = 2 * i + 1, best = i;
        struct pod *bp = p;
        if (l < h->n && before(h->h[l], bp))
            best = l, bp = h->h[l];
        if (l + 1 < h->n && before(h->h[l + 1], bp))
            best = l + 1, bp = h->h[l + 1];
        if (best == i)
            break;
        heap_set(h, i, bp);
        i = best;
    }
    heap_set(h, i, p);
}

static struct pheap *heap_at(struct fx_model *m, int hq)
{
    return hq == LOOSE ? &m->loose : hq == READY ? &m->ready : &m->qh[hq];
}

/* The heap a pod belongs in: its queue's, once it is valid and has one. */
static int heap_for(const struct pod *p)
{
    return p->state == POD_INVALID || p->state == POD_GATED || p->qid < 0 ? LOOSE : p->qid;
}

static bool heap_push(struct pheap *h, struct pod *p)
{
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 64;
        struct pod **n = fx_realloc(h->h, cap * sizeof(*n));
        if (!n)
            return false;
        h->h = n;
        h->cap = cap;
    }
    heap_set(h, h->n++, p);
    sift_up(h, h->n - 1);
    return true;
}
static void wait_link(struct fx_model *m, struct pod *p)
{
    if (p->wlinked)
        return;
    p->wprev = NULL;
    p->wnext = m->waiting;
    if (m->waiting)
        m->waiting->wprev = p;
    m->waiting = p;
    p->wlinked = true;
    m->nwaiting++;
}

static void wait_unlink(struct fx_model *m, struct pod *p)
{
    if (!p->wlinked)
        return;
    if (p->wprev)
        p->wprev->wnext = p->wnext;
    else
        m->waiting = p->wnext;
    if (p->wnext)
        p->wnext->wprev = p->wprev;
    p->wprev = p->wnext = NULL;
    p->wlinked = false;
    m->nwaiting--;
}

/* ---- queues: what each pod charges to its queue ---- */

/* A pod's request in the queues' units (include/flexpu/queue.h). A slice
 * without flexpu.io/gpu-memory charges no GPU memory: its default quota is
 * only known once its GPU is. */
static void pod_amount(const struct pod *p, int64_t a[FLEXPU_RES_COUNT_])
{
    const struct flexpu_pod_req *r = &p->req;
    a[FLEXPU_RES_GPU] = r->num_gpu;
    a[FLEXPU_RES_GPU_MILLI] = (int64_t)r->num_gpu * r->gpu_milli;
    a[FLEXPU_RES_GPU_MEM] = (int64_t)r->num_gpu * r->gpu_mem_mib;
    a[FLEXPU_RES_CPU] = r->cpu_milli;
    a[FLEXPU_RES_MEM] = r->mem_mib;
}

/* Which queue a pod belongs to: ours join the one they name or the default
 * one; other schedulers' pods only one they name (they hold capacity the
 * queue's users asked for). A name with no queue leaves qid -1 and, for our
 * pods, noqueue set: they wait, told why, until the queue exists. */
static void queue_resolve(struct fx_model *m, struct pod *p)
{
    bool member = p->ours || p->qname;
    int id = member ? flexpu_queues_find(m->queues, p->qname ? p->qname : FLEXPU_QUEUE_DEFAULT)
                    : -1;
    if (id >= m->nqh)
        id = -1; /* cannot happen: the heaps grow with every queue defined */
    p->qid = id;
    p->noqueue = member && id < 0;
}

/* Keeps the pod's charge equal to what its state says: pending while it
 * waits, allocated while it holds (assumed or bound), nothing otherwise. */
static void queue_sync(struct fx_model *m, struct pod *p)
{
    int want = 0;
    if (p->qid >= 0) {
        if (p->state == POD_QUEUED || p->state == POD_WAITING)
            want = 1;
        else if (p->state == POD_ASSUMED || p->state == POD_BOUND ||
                 p->state == POD_NOMINATED)
            want = 2;
        if (p->evicting)
            want = 0; /* on its way out: its queue no longer holds it */
    }
    int64_t amt[FLEXPU_RES_COUNT_];
    pod_amount(p, amt);
    bool same = p->qheld_id == p->qid && memcmp(amt, p->qamt, sizeof(amt)) == 0;
    if (want == p->qheld && (!want || same))
        return;
    if (p->qheld == 1)
        flexpu_queues_pending(m->queues, p->qheld_id, p->qamt, -1);
    else if (p->qheld == 2) {
        flexpu_queues_allocated(m->queues, p->qheld_id, p->qamt, -1);
        m->queue_freed = true;
    }
    if (want == 1)
        flexpu_queues_pending(m->queues, p->qid, amt, +1);
    else if (want == 2)
        flexpu_queues_allocated(m->queues, p->qid, amt, +1);
    /* Fair shares follow demand (pending + allocated): a pod moving from
     * one to the other leaves them as they are. */
    if (!(same && p->qheld && want))
        m->shares_dirty = true;
    p->qheld = want;
    p->qheld_id = p->qid;
    memcpy(p->qamt, amt, sizeof(amt));
}

/* Every change of a pod's state goes here: it keeps the waiting list and
 * the queues' charges. */
static void set_state(struct fx_model *m, struct pod *p, enum pod_state st)
{
    p->state = st;
    if ((st == POD_BOUND || st == POD_ASSUMED) &&
        (!m->min_prio_set || p->spec.class_priority < m->min_prio)) {
        m->min_prio = p->spec.class_priority;
        m->min_prio_set = true;
    }
    if (st == POD_WAITING)
        wait_link(m, p);
    else
        wait_unlink(m, p);
    queue_sync(m, p);
}

/* One heap per queue id. */
static int heaps_fit(struct fx_model *m)
{
    int n = flexpu_queues_count(m->queues);
    if (n <= m->nqh)
        return 0;
    struct pheap *h = fx_realloc(m->qh, (size_t)n * sizeof(*h));
    if (!h)
        return FLEXPU_ENOMEM;
    memset(h + m->nqh, 0, (size_t)(n - m->nqh) * sizeof(*h));
    m->qh = h;
    m->nqh = n;
    return 0;
}

static void compute_shares(struct fx_model *m)
{
    struct flexpu_stats s;
    flexpu_engine_stats(m->e, &s);
    int64_t cap[FLEXPU_RES_COUNT_] = {
        [FLEXPU_RES_GPU] = s.gpus,
        [FLEXPU_RES_GPU_MILLI] = s.gpu_milli_total,
        [FLEXPU_RES_GPU_MEM] = m->gpu_mem_total,
        [FLEXPU_RES_CPU] = s.cpu_milli_total,
        [FLEXPU_RES_MEM] = s.mem_mib_total,
    };
    flexpu_queues_compute(m->queues, cap);
    m->shares_dirty = false;
}

/* ---- pod groups (gangs) ---- */

static void enqueue(struct fx_model *m, struct pod *p);
static void give_back(struct fx_model *m, struct pod *p);

/* Whether two members' values agree (fx_pod_group_agree: min-members,
 * queue, opportunistic). */
static bool group_values_same(const struct fx_pod_group *a, const struct fx_pod_group *b)
{
    struct flexpu_error err = {0};
    return fx_pod_group_agree(a, "", b, "", &err) == 0;
}

/* Whether member q carries its group's values. */
static bool gang_carries(const struct gang *g, const struct pod *q)
{
    return group_values_same(&g->grp, &q->grp);
}

/* Every member of g waiting for a decision, or refused for what it
 * carries, is decided again: what it was told depends on the group as it
 * was (its values, how many members exist, the member a refusal names). */
static void gang_retry(struct fx_model *m, struct gang *g)
{
    for (struct pod *q = g->members; q; q = q->gnext) {
        if (q->state == POD_WAITING || (q->state == POD_INVALID && q->gang_refused)) {
            q->gang_short = false;
            q->gang_refused = false;
            enqueue(m, q);
        }
    }
}

/* A group keeps its values while a member carries them, so members edited
 * one by one never make it run on a mix. Once none does (each edited, or
 * the last carrier gone), it takes those of `from` (the member just
 * edited; NULL: its first member), and its members are decided again
 * (gang_retry). */
static void gang_settle(struct fx_model *m, struct gang *g, const struct pod *from)
{
    for (const struct pod *q = g->members; q; q = q->gnext)
        if (gang_carries(g, q))
            return;
    g->grp = (from ? from : g->members)->grp;
    gang_retry(m, g);
}

/* p no longer waits to be told what its group's last try said (its own
 * turn came, or it left the group). */
static void gang_untell(struct fx_model *m, struct pod *p)
{
    if (p->gang_tell) {
        p->gang_tell = false;
        m->ngang_tell--;
    }
}

static void gang_leave(struct fx_model *m, struct pod *p)
{
    struct gang *g = p->gang;
    if (!g)
        return;
    if (p->gprev)
        p->gprev->gnext = p->gnext;
    else
        g->members = p->gnext;
    if (p->gnext)
        p->gnext->gprev = p->gprev;
    p->gprev = p->gnext = NULL;
    p->gang = NULL;
    p->gang_short = false;
    p->gang_refused = false;
    memset(&p->grp, 0, sizeof(p->grp));
    gang_untell(m, p);
    if (--g->nmembers == 0) {
        fx_strmap_del(&m->gangs, g->key);
        fx_free(g->said);
        fx_free(g);
        return;
    }
    gang_settle(m, g, NULL);
    /* What the members left were told counted p (the members that exist,
     * the missing ones that do not fit together) or named it (a refusal):
     * each is told anew at once, as kube-scheduler rewrites a pod's
     * condition at its next attempt; a deleted waiting member frees no
     * capacity that would wake them. */
    gang_retry(m, g);
}

/* The members that waited for more members to exist are tried again: one
 * joined, or one's last scheduling gate went. */
static void gang_wake(struct fx_model *m, struct gang *g)
{
    for (struct pod *q = g->members; q; q = q->gnext) {
        if (q->gang_short && q->state == POD_WAITING) {
            q->gang_short = false;
            enqueue(m, q);
        }
    }
}

/* Lists p, carrying grp, on the group its labels name (leaving any other).
 * A member that carries other values than its group is listed all the
 * same, and refused when decided (gang_refuse), so that it is decided
 * again when the group takes its values (gang_settle). A new member wakes
 * the members that waited for the group to be complete. */
static int gang_join(struct fx_model *m, struct pod *p, const struct fx_pod_group *grp,
                     struct flexpu_error *err)
{
    char key[sizeof(((struct gang *)0)->key)];
    snprintf(key, sizeof(key), "%s/%s", STR(p->ns), grp->group);
    struct gang *g = fx_strmap_get(&m->gangs, key);
    if (p->gang == g && g) {
        /* Its own values edited: it may need fewer members, or differ from
         * its group now; either way it is decided again (pod_event). */
        if (!group_values_same(&p->grp, grp))
            p->gang_short = false;
        p->grp = *grp;
        gang_settle(m, g, p);
        return 0;
    }
    gang_leave(m, p);
    if (!(g = fx_strmap_get(&m->gangs, key))) {
        g = fx_calloc(1, sizeof(*g));
        if (!g || fx_strmap_put(&m->gangs, key, g)) {
            fx_free(g);
            return flexpu_error_set(err, FLEXPU_ENOMEM, "out of memory for pod group %s", key);
        }
        snprintf(g->key, sizeof(g->key), "%s", key);
    }
    p->grp = *grp;
    p->gprev = NULL;
    p->gnext = g->members;
    if (g->members)
        g->members->gprev = p;
    g->members = p;
    g->nmembers++;
    p->gang = g;
    gang_settle(m, g, p);
    gang_wake(m, g);
    return 0;
}

static void holds_freed(struct fx_model *m, int id);

/* Capacity grew on engine node `id` (-1: somewhere unknown). */
static void capacity_freed(struct fx_model *m, int id)
{
    holds_freed(m, id); /* a short hold there takes it first (holds_refresh) */
    if (m->changed_all)
        return;
    for (int i = 0; i < m->nchanged; i++)
        if (m->changed[i] == id)
            return;
    if (id < 0 || m->nchanged == CHANGED_MAX)
        m->changed_all = true;
    else
        m->changed[m->nchanged++] = id;
}

static void dequeue(struct fx_model *m, struct pod *p);

static void enqueue_as(struct fx_model *m, struct pod *p, enum pod_state st)
{
    set_state(m, p, st);
    int hq = heap_for(p);
    if (p->heap >= 0 && p->hq == hq)
        return;
    dequeue(m, p);
    if (!heap_push(heap_at(m, hq), p)) {
        FX_ERROR(COMP, "out of memory queueing a pod", "pod=%s/%s", STR(p->ns), STR(p->name));
        set_state(m, p, POD_WAITING); /* retried at the next capacity change */
        return;
    }
    p->hq = hq;
}

static void enqueue(struct fx_model *m, struct pod *p)
{
    enqueue_as(m, p, POD_QUEUED);
}

static void dequeue(struct fx_model *m, struct pod *p)
{
    if (p->heap < 0)
        return;
    struct pheap *h = heap_at(m, p->hq);
    size_t i = (size_t)p->heap;
    p->heap = -1;
    if (--h->n == i)
        return;
    heap_set(h, i, h->h[h->n]);
    sift_up(h, i);
    sift_down(h, (size_t)h->h[i]->heap);
}

/* ---- lifecycle ---- */

struct fx_model *fx_model_new(const char *scheduler_name, const char *policy, uint64_t seed,
                              struct flexpu_error *err)
{
    struct fx_model *m = fx_calloc(1, sizeof(*m));
    if (!m || !(m->e = flexpu_engine_new())) {
        fx_free(m);
        flexpu_error_set(err, FLEXPU_ENOMEM, "out of memory creating the model");
        return NULL;
    }
    if (flexpu_engine_set_policy(m->e, policy, err)) {
        fx_model_free(m);
        return NULL;
    }
    if (!(m->queues = flexpu_queues_new()) || heaps_fit(m)) {
        fx_model_free(m);
        flexpu_error_set(err, FLEXPU_ENOMEM, "out of memory creating the model's queues");
        return NULL;
    }
    snprintf(m->sched_name, sizeof(m->sched_name), "%s", scheduler_name);
    /* Valid by construction (remote_topology_test checks it). */
    fx_remote_topology_parse("remote topology keys", FX_REMOTE_TOPOLOGY_KEYS_DEFAULT,
                             &m->remote_topo, NULL);
    flexpu_rng_seed(&m->rng, seed);
    fx_strmap_init(&m->pods);
    fx_strmap_init(&m->nodes);
    fx_strmap_init(&m->gangs);
    return m;
}

void fx_model_free(struct fx_model *m)
{
    if (!m)
        return;
    const char *k;
    void *v;
    for (size_t i = 0; fx_strmap_next(&m->pods, &i, &k, &v);)
        pod_free(v);
    for (size_t i = 0; fx_strmap_next(&m->nodes, &i, &k, &v);) {
        fx_free(((struct node *)v)->watch);
        fx_free(v);
    }
    fx_strmap_free(&m->pods);
    fx_strmap_free(&m->nodes);
    for (int i = 0; i < m->nqh; i++)
        fx_free(m->qh[i].h);
    fx_free(m->qh);
    fx_free(m->reclaimq);
    fx_free(m->loose.h);
    fx_free(m->ready.h);
    uidq_free(&m->evictq);
    uidq_free(&m->unnomq);
    for (size_t i = 0; fx_strmap_next(&m->gangs, &i, &k, &v);) {
        fx_free(((struct gang *)v)->said);
        fx_free(v);
    }
    fx_strmap_free(&m->gangs);
    flexpu_queues_free(m->queues);
    flexpu_engine_free(m->e);
    fx_free(m);
}

static void rules_touch(struct fx_model *m, const struct pod *q, bool landing);
static void rules_set(struct fx_model *m, struct pod *p, struct fx_pod_rules *r);

/* A pod lands on node n (or leaves its node, unlink_pod): waiting pods
 * whose inter-pod rules it may change are tried again (rules_touch). */
static void link_pod(struct fx_model *m, struct node *n, struct pod *p)
{
    rules_touch(m, p, true);
    p->on = n;
    p->prev = NULL;
    p->next = n->pods;
    if (n->pods)
        n->pods->prev = p;
    n->pods = p;
}

static void unlink_pod(struct fx_model *m, struct pod *p)
{
    if (!p->on)
        return;
    rules_touch(m, p, false);
    if (p->prev)
        p->prev->next = p->next;
    else
        p->on->pods = p->next;
    if (p->next)
        p->next->prev = p->prev;
    p->on = NULL;
    p->prev = p->next = NULL;
}

/* ---- victims' holds (docs/KUBERNETES.md, "Preemption and reclaim") ----
 *
 * A victim runs out its grace period after its eviction: until the watch
 * shows it gone (victim_gone), what it holds beyond what its preemptor
 * takes must stay booked, or another pod is placed on capacity still in
 * use (kube-scheduler, too, keeps victims until they terminate). The
 * engine never over-commits (flexpu_engine_assign refuses it, and its node
 * classes, policies and victim search count on nothing being over its
 * capacity), so the victims are not booked beside their preemptor: each
 * victim's allocation is released for the preemptor's place to be taken
 * (hold_take), and what is left of it is booked again at once as its hold
 * (hold_book): its CPU and memory, and its share of each of its GPUs, each
 * as much as is free. Where the preemptor takes part of a victim's room the
 * hold is short: the node runs over its capacity until the victim goes, so
 * capacity freed there (another pod ending, a fellow victim gone, the
 * preemptor deleted) goes to the short holds first (holds_refresh, at the
 * end of each event the model is given and before each decision) until
 * they are whole. Other pods thus see max(0, capacity
 * - what runs - the preemptors' places), exactly as with the victims booked
 * beside their preemptors. A hold ends with its victim (release: its
 * capacity freed and the node's waiting pods woken) or when the victim
 * stays after all (victim_stays: its full allocation booked again).
 *
 * A remote pod (docs/REMOTE.md, "Preemption") is a victim on either of its
 * nodes: its hold has its CPU and memory on its own node (pod->on) and its
 * GPU shares on its GPU node (pod->rnode, hold_gnode), each booked, short
 * and taken back on that node. */
struct vhold {
    struct pod *pod;
    struct flexpu_pod_req req;   /* the victim's allocation: its CPU and memory, */
    struct flexpu_placement pl;  /* its GPUs and its share of each, on hold_gnode */
    int64_t host;                /* its CPU and memory held now (0: none) */
    int64_t gpu[FLEXPU_MAX_GPUS]; /* its share of GPU pl.gpu[i] held now (0: none) */
    bool whole;                  /* all of it held: nothing more to take back */
    struct vhold *prev, *next;   /* the model's list */
};

static int64_t at_most(int64_t want, int64_t free)
{
    return want < free ? want : (free > 0 ? free : 0);
}

/* The node of h's GPU shares: its victim's own, or a remote pod's GPU
 * node (NULL when unknown). */
static struct node *hold_gnode(struct fx_model *m, const struct vhold *h)
{
    return h->pod->rnode ? fx_strmap_get(&m->nodes, h->pod->rnode) : h->pod->on;
}

static int remote_place(const struct node *g, const struct fx_allocation *al,
                        struct flexpu_pod_req *r, struct flexpu_placement *pl, uint32_t *whole);

/* Remote victim c's GPU shares for its hold: what its ralloc holds, or
 * while its GPU node is out of the engine what it will hold there, as its
 * allocation records them (remote_account); none when they could not be
 * accounted (a conflict). Its ralloc released; its rnoquota stays, as a
 * local victim's noquota does: it still runs there. */
static void hold_take_remote(struct fx_model *m, struct pod *c, struct vhold *h)
{
    struct node *g = fx_strmap_get(&m->nodes, c->rnode);
    struct fx_allocation al;
    struct flexpu_pod_req r;
    uint32_t whole;
    struct flexpu_error err = {0};
    memset(&h->pl, 0, sizeof(h->pl));
    if (g && (c->ralloc || g->id < 0) && c->allocation &&
        fx_allocation_parse(c->allocation, &al, &err) == 0 && al.ngpu >= 1 &&
        remote_place(g, &al, &r, &h->pl, &whole) >= 0)
        memset(&h->pl, 0, sizeof(h->pl)); /* a GPU it names is not there: none */
    if (c->ralloc && flexpu_engine_release(m->e, c->ralloc, &err))
        FX_ERROR(COMP, "releasing a victim's remote slice failed", "pod=%s/%s node=%s error=\"%s\"",
                 STR(c->ns), STR(c->name), STR(c->rnode), err.msg);
    c->ralloc = 0;
}

/* Victim c, before its preemptor's place is taken: its allocation
 * released (a remote pod's slice too: the engine's victim search counts
 * it on its GPU node), what it held remembered for its hold. A remote pod
 * whose own node is out of the engine has no allocation there (account):
 * its hold remembers the CPU and memory account books there, for when
 * that node comes back (hold_book). False when out of memory (nothing
 * changed). */
static bool hold_take(struct fx_model *m, struct pod *c)
{
    struct vhold *h = fx_calloc(1, sizeof(*h));
    struct flexpu_error err = {0};
    if (!h || (c->alloc && flexpu_engine_alloc_get(m->e, c->alloc, &h->req, &h->pl, &err))) {
        fx_free(h);
        return false;
    }
    if (!c->alloc)
        h->req = (struct flexpu_pod_req){.cpu_milli = c->req.cpu_milli, .mem_mib = c->req.mem_mib};
    else if (flexpu_engine_release(m->e, c->alloc, &err))
        FX_ERROR(COMP, "releasing a victim's allocation failed", "pod=%s/%s error=\"%s\"",
                 STR(c->ns), STR(c->name), err.msg);
    c->alloc = 0;
    if (c->rnode)
        hold_take_remote(m, c, h);
    h->pod = c;
    h->next = m->holds;
    if (m->holds)
        m->holds->prev = h;
    m->holds = h;
    m->nholds++;
    c->hold = h;
    return true;
}

/* Books as much of h's victim's capacity as its node has free: its CPU
 * and memory, its share of each GPU. A GPU whose compute is all taken
 * keeps no memory hold: no pod lands there meanwhile, and its memory is
 * taken back with the compute when that frees. */
static void hold_book(struct fx_model *m, struct vhold *h)
{
    /* A node out of the engine: its part is booked when it comes back
     * (node_in). */
    struct node *on = h->pod->on, *n = hold_gnode(m, h);
    bool on_in = on && on->id >= 0, n_in = n && n->id >= 0;
    h->whole = false;
    if (!on_in && !(n_in && h->pl.ngpu > 0))
        return;
    m->hold_books++;
    struct flexpu_error err = {0};
    struct flexpu_pod_req r = {0};
    if (on_in) {
        r.cpu_milli = at_most(h->req.cpu_milli, flexpu_engine_node_free_cpu(m->e, on->id));
        r.mem_mib = at_most(h->req.mem_mib, flexpu_engine_node_free_mem(m->e, on->id));
    }
    bool whole = r.cpu_milli == h->req.cpu_milli && r.mem_mib == h->req.mem_mib;
    struct flexpu_placement pl = {.node = on_in ? on->id : -1};
    if ((r.cpu_milli || r.mem_mib) && flexpu_engine_assign(m->e, &r, &pl, &h->host, &err)) {
        h->host = 0;
        whole = false;
    }
    if (!n_in && h->pl.ngpu > 0)
        whole = false;
    for (int i = 0; n_in && i < h->pl.ngpu; i++) {
        int g = h->pl.gpu[i];
        if (g < 0 || g >= n->inv.ngpu) {
            whole = false; /* its inventory changed: the GPU is not there */
            continue;
        }
        int milli = (int)at_most(h->pl.milli[i], flexpu_engine_gpu_free_milli(m->e, n->id, g));
        int64_t mem = h->pl.gpu_mem_mib[i];
        if (n->inv.gpus[g].mem_bytes / FX_MIB > 0) /* else its memory is not counted */
            mem = at_most(mem, flexpu_engine_gpu_free_mem(m->e, n->id, g));
        whole = whole && milli == h->pl.milli[i] && mem == h->pl.gpu_mem_mib[i];
        if (milli <= 0)
            continue;
        struct flexpu_pod_req one = {.num_gpu = 1, .gpu_milli = milli, .gpu_mem_mib = mem};
        struct flexpu_placement gp = {
            .node = n->id, .ngpu = 1, .gpu = {g}, .milli = {milli}, .gpu_mem_mib = {mem}};
        if (flexpu_engine_assign(m->e, &one, &gp, &h->gpu[i], &err)) {
            h->gpu[i] = 0;
            whole = false;
        }
    }
    if (!whole && err.msg[0])
        FX_ERROR(COMP, "a victim's hold could not be booked", "pod=%s/%s error=\"%s\"",
                 STR(h->pod->ns), STR(h->pod->name), err.msg);
    h->whole = whole;
}

/* Releases what h holds now; true when it held anything. */
static bool hold_drop(struct fx_model *m, struct vhold *h)
{
    struct flexpu_error err;
    bool any = false;
    for (int i = -1; i < h->pl.ngpu; i++) {
        int64_t *id = i < 0 ? &h->host : &h->gpu[i];
        if (!*id)
            continue;
        if (flexpu_engine_release(m->e, *id, &err))
            FX_ERROR(COMP, "releasing a victim's hold failed", "pod=%s/%s error=\"%s\"",
                     STR(h->pod->ns), STR(h->pod->name), err.msg);
        *id = 0;
        any = true;
    }
    h->whole = false;
    return any;
}

/* p's hold, if any, ends: released (capacity freed on its nodes when
 * `freed`: the victim is gone) and forgotten. */
static void hold_end(struct fx_model *m, struct pod *p, bool freed)
{
    struct vhold *h = p->hold;
    if (!h)
        return;
    struct node *g = hold_gnode(m, h);
    if (hold_drop(m, h) && freed) {
        capacity_freed(m, p->on ? p->on->id : -1);
        if (g && g != p->on && g->id >= 0)
            capacity_freed(m, g->id); /* a remote pod's slice */
    }
    if (h->prev)
        h->prev->next = h->next;
    else
        m->holds = h->next;
    if (h->next)
        h->next->prev = h->prev;
    m->nholds--;
    p->hold = NULL;
    fx_free(h);
}

/* Node n went out of the engine, which released every allocation on it:
 * its victims' holds hold nothing now (booked again by holds_refresh when
 * it comes back). */
static void holds_out(struct fx_model *m, struct node *n)
{
    for (struct vhold *h = m->holds; h; h = h->next) {
        bool host = h->pod->on == n, gpus = hold_gnode(m, h) == n;
        if (host)
            h->host = 0;
        if (gpus)
            memset(h->gpu, 0, sizeof(h->gpu)); /* a remote pod's on its GPU node */
        if (host || gpus)
            h->whole = false;
    }
}

/* Capacity was freed on engine node id (-1: anywhere): the short holds
 * there take it first (holds_refresh). Nothing to note without holds. */
static void holds_freed(struct fx_model *m, int id)
{
    if (!m->holds || m->holds_freed_all)
        return;
    for (int i = 0; i < m->nholds_freed; i++)
        if (m->holds_freed[i] == id)
            return;
    if (id < 0 || m->nholds_freed == CHANGED_MAX)
        m->holds_freed_all = true;
    else
        m->holds_freed[m->nholds_freed++] = id;
}

/* Whether capacity was freed on engine node id since the last refresh. */
static bool holds_freed_on(const struct fx_model *m, int id)
{
    if (m->holds_freed_all)
        return true;
    for (int i = 0; i < m->nholds_freed; i++)
        if (m->holds_freed[i] == id)
            return true;
    return false;
}

/* Capacity was freed since the last call: each short hold on a node
 * where it was freed takes back what it lacks of it (released and booked
 * again as much as is free). One after another, so the short holds of a
 * node together take min(what they lack, what is free), whatever their
 * order. Only those nodes: a hold's node has no more free than when it
 * was booked unless capacity was freed there, and booking a hold again
 * costs the engine a node move (each pod ending anywhere would otherwise
 * book every short hold in the cluster again). */
static void holds_refresh(struct fx_model *m)
{
    if (!m->holds_freed_all && m->nholds_freed == 0)
        return;
    for (struct vhold *h = m->holds; h; h = h->next) {
        if (h->whole)
            continue;
        struct node *n = h->pod->on, *g = hold_gnode(m, h); /* g: a remote pod's GPU node */
        if (!(n && n->id >= 0 && holds_freed_on(m, n->id)) &&
            !(g && g != n && g->id >= 0 && holds_freed_on(m, g->id)))
            continue;
        hold_drop(m, h);
        hold_book(m, h);
    }
    m->nholds_freed = 0;
    m->holds_freed_all = false;
}

static struct node *engine_node(struct fx_model *m, int id);
static void remote_set(struct fx_model *m, struct pod *p, const char *gpu_node);
static void remote_whole(struct fx_model *m, struct pod *p, uint32_t gpus);

static void release(struct fx_model *m, struct pod *p)
{
    hold_end(m, p, true);
    remote_whole(m, p, 0); /* a victim's too, whose hold held its slice */
    if (p->ralloc) {
        struct flexpu_error err;
        struct node *g = fx_strmap_get(&m->nodes, STR(p->rnode));
        if (flexpu_engine_release(m->e, p->ralloc, &err))
            FX_ERROR(COMP, "releasing a remote slice failed", "pod=%s/%s node=%s error=\"%s\"",
                     STR(p->ns), STR(p->name), STR(p->rnode), err.msg);
        p->ralloc = 0;
        capacity_freed(m, g ? g->id : -1);
    }
    remote_set(m, p, NULL);
    if (p->alloc) {
        struct flexpu_error err;
        if (flexpu_engine_release(m->e, p->alloc, &err))
            FX_ERROR(COMP, "releasing an allocation failed", "pod=%s/%s error=\"%s\"",
                     STR(p->ns), STR(p->name), err.msg);
        p->alloc = 0;
        capacity_freed(m, p->on ? p->on->id : -1);
    }
}

/* ---- accounting a bound pod ---- */

static int gpu_index(const struct node *n, const char *uuid)
{
    for (int i = 0; i < n->inv.ngpu; i++)
        if (strcmp(n->inv.gpus[i].uuid, uuid) == 0)
            return i;
    return -1;
}

/* Accounts a pod bound to node n. Pods of other schedulers count their CPU
 * and memory (clamped to what is free: the model must never refuse a pod
 * that is already running); flexpu pods count exactly what their
 * allocation annotation records. */
static void borrow_set(struct fx_model *m, struct pod *p, bool on);

/* ---- remote slices (docs/REMOTE.md, "Kubernetes") ---- */

/* Marks p remote, its slice on node gpu_node (NULL: not remote), keeping
 * the count. */
static void remote_set(struct fx_model *m, struct pod *p, const char *gpu_node)
{
    if (p->rnode)
        m->nremote--;
    str_set(&p->rnode, gpu_node);
    if (p->rnode)
        m->nremote++;
}

/* Remote pod p's share holds GPUs `gpus` (bit i: GPU i) of its GPU node
 * without a memory quota, as its ralloc is set (0: as it is released or
 * zeroed; a victim's hold keeps them until it is gone): the node's rwhole
 * counts them. Called with ralloc, never between, so that the counts stay
 * those of the node rnode names. */
static void remote_whole(struct fx_model *m, struct pod *p, uint32_t gpus)
{
    struct node *g = p->rnode ? fx_strmap_get(&m->nodes, p->rnode) : NULL;
    for (int i = 0; g && i < FLEXPU_MAX_GPUS; i++)
        g->rwhole[i] += (int)((gpus >> i) & 1u) - (int)((p->rnoquota >> i) & 1u);
    p->rnoquota = g ? gpus : 0;
}

/* The engine request and placement of GPU node g for the shares allocation
 * al records, and its GPUs without a memory quota (*whole); -1, or the
 * index of a GPU of al that g lacks or that al names twice. */
static int remote_place(const struct node *g, const struct fx_allocation *al,
                        struct flexpu_pod_req *r, struct flexpu_placement *pl, uint32_t *whole)
{
    *pl = (struct flexpu_placement){.node = g->id, .ngpu = al->ngpu};
    int bad = -1;
    *whole = 0;
    for (int i = 0; i < al->ngpu && bad < 0; i++) {
        int gi = gpu_index(g, al->gpus[i].uuid);
        for (int k = 0; k < i && gi >= 0; k++)
            if (pl->gpu[k] == gi)
                gi = -1; /* one GPU twice: never a placement of ours */
        if (gi < 0)
            bad = i;
        else if (al->gpus[i].mem <= 0)
            *whole |= 1u << gi;
        pl->gpu[i] = gi;
        pl->milli[i] = al->gpus[i].cores > 0 ? al->gpus[i].cores * 10 : 1;
        pl->gpu_mem_mib[i] = (al->gpus[i].mem + FX_MIB - 1) / FX_MIB;
    }
    *r = (struct flexpu_pod_req){.num_gpu = al->ngpu, .gpu_milli = pl->milli[0],
                                 .gpu_mem_mib = pl->gpu_mem_mib[0]};
    return bad;
}

/* Accounts remote pod p's GPU shares on its GPU node, exactly as its
 * allocation records them (one engine allocation for all its GPUs, as a
 * local pod of that shape holds: released at once), when that node is in
 * the engine (else when it comes in: remote_node_in). */
static void remote_account(struct fx_model *m, struct pod *p)
{
    struct node *g = fx_strmap_get(&m->nodes, STR(p->rnode));
    struct fx_allocation al;
    struct flexpu_error err = {0};
    if (p->ralloc || !g || g->id < 0 || !p->allocation ||
        fx_allocation_parse(p->allocation, &al, &err) || al.ngpu < 1)
        return;
    struct flexpu_placement pl;
    struct flexpu_pod_req r;
    uint32_t whole;
    int bad = remote_place(g, &al, &r, &pl, &whole);
    if (p->hold) {
        /* A victim leaving: its hold books its shares (hold_book, its GPU
         * node come back), and they still hold their GPUs' memory. */
        if (bad < 0)
            remote_whole(m, p, whole);
        return;
    }
    if (bad >= 0 || flexpu_engine_assign(m->e, &r, &pl, &p->ralloc, &err)) {
        FX_ERROR(COMP, "a remote slice cannot be accounted", "pod=%s/%s node=%s gpu=%s error=\"%s\"",
                 STR(p->ns), STR(p->name), g->name, al.gpus[bad >= 0 ? bad : 0].uuid,
                 bad >= 0 ? "the node has no such GPU, or it is named twice" : err.msg);
        m->conflicts++;
        p->ralloc = 0;
        return;
    }
    remote_whole(m, p, whole);
}

/* Node n went out of the engine (its allocations released with it: the
 * remote slices there hold nothing now) or came in (they are accounted
 * again). A walk over the pods, only when there are remote ones. */
static void remote_node_inout(struct fx_model *m, struct node *n, bool in)
{
    if (m->nremote == 0)
        return;
    const char *k;
    void *v;
    for (size_t i = 0; fx_strmap_next(&m->pods, &i, &k, &v);) {
        struct pod *p = v;
        if (!p->rnode || strcmp(p->rnode, n->name) != 0)
            continue;
        if (in) {
            remote_account(m, p);
        } else {
            remote_whole(m, p, 0);
            p->ralloc = 0;
        }
    }
}

static void account(struct fx_model *m, struct pod *p, struct node *n)
{
    struct fx_allocation al;
    struct flexpu_error err = {0};
    if (p->hold) {
        holds_freed(m, n->id); /* a victim: its hold is booked (node_in), not all of it */
        return;
    }
    if (n->id < 0 && !p->rnode && p->spec.wants_gpu && p->allocation &&
        fx_allocation_parse(p->allocation, &al, &err) == 0 && al.remote_node[0]) {
        /* The pod's node is out of the engine (cordoned, not ready...): its
         * CPU waits for it, but its slice is on another node, held now. */
        remote_set(m, p, al.remote_node);
        remote_account(m, p);
    }
    if (p->alloc || n->id < 0)
        return;
    struct flexpu_pod_req r = p->req;
    struct flexpu_placement pl = {.node = n->id};
    p->gpus = p->noquota = 0;
    borrow_set(m, p, false);
    if (p->spec.wants_gpu && p->allocation &&
        fx_allocation_parse(p->allocation, &al, &err) == 0 && al.borrowed && al.ngpu == 1 &&
        gpu_index(n, al.gpus[0].uuid) >= 0) {
        /* A borrower holds no GPU share in the engine: only its node's CPU
         * and memory. Its GPU, share and memory are the model's. */
        p->bgpu = gpu_index(n, al.gpus[0].uuid);
        p->bcores = al.gpus[0].cores;
        p->bmem_mib = (al.gpus[0].mem + FX_MIB - 1) / FX_MIB;
        borrow_set(m, p, true);
        r.num_gpu = r.gpu_milli = 0;
        r.gpu_mem_mib = 0;
    } else if (p->spec.wants_gpu && p->allocation &&
               fx_allocation_parse(p->allocation, &al, &err) == 0 && al.remote_node[0]) {
        /* A remote slice: here only the pod's CPU and memory; its GPU share
         * is accounted on the node the allocation names. */
        remote_set(m, p, al.remote_node);
        remote_account(m, p);
        r.num_gpu = r.gpu_milli = 0;
        r.gpu_mem_mib = 0;
    } else if (p->spec.wants_gpu && p->allocation) {
        if (fx_allocation_parse(p->allocation, &al, &err)) {
            FX_ERROR(COMP, "a bound pod has a malformed allocation", "pod=%s/%s error=\"%s\"",
                     STR(p->ns), STR(p->name), err.msg);
            m->conflicts++;
            r.num_gpu = r.gpu_milli = 0;
            r.gpu_mem_mib = 0;
        } else {
            pl.ngpu = al.ngpu;
            r.num_gpu = al.ngpu;
            for (int i = 0; i < al.ngpu; i++) {
                int g = gpu_index(n, al.gpus[i].uuid);
                if (g < 0) {
                    FX_ERROR(COMP, "a bound pod names a GPU its node does not have",
                             "pod=%s/%s node=%s gpu=%s", STR(p->ns), STR(p->name), n->name,
                             al.gpus[i].uuid);
                    m->conflicts++;
                    r.num_gpu = pl.ngpu = 0;
                    break;
                }
                pl.gpu[i] = g;
                pl.milli[i] = al.gpus[i].cores > 0 ? al.gpus[i].cores * 10 : 1;
                pl.gpu_mem_mib[i] = (al.gpus[i].mem + FX_MIB - 1) / FX_MIB;
                p->gpus |= 1u << g;
                if (al.gpus[i].mem <= 0)
                    p->noquota |= 1u << g;
            }
            if (r.num_gpu) {
                r.gpu_milli = pl.milli[0];
                r.gpu_mem_mib = pl.gpu_mem_mib[0];
            } else {
                r.gpu_milli = 0;
                r.gpu_mem_mib = 0;
            }
        }
    } else {
        /* Not ours, or bound without a recorded allocation: no GPU of ours. */
        r.num_gpu = r.gpu_milli = 0;
        r.gpu_mem_mib = 0;
    }
    r.model_mask = 0;
    int rc = flexpu_engine_assign(m->e, &r, &pl, &p->alloc, &err);
    if (rc == FLEXPU_ENOFIT && r.num_gpu == 0) {
        int64_t fc = flexpu_engine_node_free_cpu(m->e, n->id);
        int64_t fm = flexpu_engine_node_free_mem(m->e, n->id);
        r.cpu_milli = r.cpu_milli < fc ? r.cpu_milli : (fc > 0 ? fc : 0);
        r.mem_mib = r.mem_mib < fm ? r.mem_mib : (fm > 0 ? fm : 0);
        rc = flexpu_engine_assign(m->e, &r, &pl, &p->alloc, &err);
    }
    if (rc) {
        /* Two pods recorded on the same share: never created by this
         * scheduler, but reported loudly if found. */
        FX_ERROR(COMP, "a bound pod cannot be accounted", "pod=%s/%s node=%s error=\"%s\"",
                 STR(p->ns), STR(p->name), n->name, err.msg);
        m->conflicts++;
        p->alloc = 0;
    }
}

/* Marks p a borrower or not, keeping the count and the list: the one
 * place either changes (fx_model_check verifies them against the pods). */
static void borrow_set(struct fx_model *m, struct pod *p, bool on)
{
    if (p->borrowed == on)
        return;
    p->borrowed = on;
    m->nborrowers += on ? 1 : -1;
    if (on) {
        p->bprev = NULL;
        p->bnext = m->borrowers;
        if (m->borrowers)
            m->borrowers->bprev = p;
        m->borrowers = p;
        return;
    }
    if (p->bprev)
        p->bprev->bnext = p->bnext;
    else
        m->borrowers = p->bnext;
    if (p->bnext)
        p->bnext->bprev = p->bprev;
    p->bprev = p->bnext = NULL;
    p->bgpu = p->bcores = 0;
    p->bmem_mib = 0;
}

/* Borrower p is bound, so now a victim of any pod that takes back lent
 * capacity (victim_reason): its node is noted for wake_waiting. A waiting
 * pod decided while p's bind was in flight found no victim in it, and is
 * woken only by a change of a node it may fit: none may come. */
static void borrower_bound(struct fx_model *m, const struct pod *p)
{
    int id = p->on ? p->on->id : -1;
    if (!p->borrowed || !p->alloc || id < 0 || m->bbound_all)
        return;
    for (int i = 0; i < m->nbbound; i++)
        if (m->bbound[i] == id)
            return;
    if (m->nbbound == CHANGED_MAX)
        m->bbound_all = true;
    else
        m->bbound[m->nbbound++] = id;
}

/* ---- nodes ---- */

static void drop_node(struct fx_model *m, struct node *n)
{
    fx_strmap_del(&m->nodes, n->name);
    fx_free(n->watch);
    fx_free(n);
}

/* The record for a node name, created (outside the engine) when absent. */
static struct node *node_record(struct fx_model *m, const char *name)
{
    struct node *n = fx_strmap_get(&m->nodes, name);
    if (n)
        return n;
    n = fx_calloc(1, sizeof(*n));
    if (!n || fx_strmap_put(&m->nodes, name, n)) {
        fx_free(n);
        FX_ERROR(COMP, "out of memory recording a node", "node=%s", name);
        return NULL;
    }
    snprintf(n->name, sizeof(n->name), "%s", name);
    n->id = -1;
    return n;
}

static void node_out(struct fx_model *m, struct node *n)
{
    if (n->id < 0)
        return;
    for (struct pod *p = n->pods; p; p = p->next)
        p->alloc = 0; /* remove_node releases them all */
    holds_out(m, n);
    remote_node_inout(m, n, false);
    struct flexpu_error err;
    int released = 0;
    if (flexpu_engine_remove_node(m->e, n->id, &released, &err))
        FX_ERROR(COMP, "removing a node failed", "node=%s error=\"%s\"", n->name, err.msg);
    memset(n->holds, 0, sizeof(n->holds));
    n->id = -1;
    for (int i = 0; i < n->inv.ngpu; i++)
        m->gpu_mem_total -= n->inv.gpus[i].mem_bytes / FX_MIB;
    m->shares_dirty = true; /* the queues' capacity */
    /* The shapes' weights count the GPUs of each model (workload.c,
     * model_pressure): a node going takes its GPUs out of that count. */
    if (n->inv.ngpu)
        m->shapes_dirty = true;
}

/* A MIG device (flexpu.io/gpus "mig") is a hardware slice allocated whole
 * (node/mig.h): a request for a share of a GPU keeps off its model. An
 * error when the request names no other model. */
static int mig_whole(const struct fx_model *m, struct flexpu_pod_req *r, struct flexpu_error *err)
{
    if (!m->mig_models || r->num_gpu == 0 || r->gpu_milli >= 1000)
        return 0;
    uint64_t mask = (r->model_mask ? r->model_mask : ~0ULL) & ~m->mig_models;
    if (!mask)
        return flexpu_error_set(err, FLEXPU_EINVAL, "metadata.annotations[" FX_ANN_GPU_MODEL
                                "]: names only MIG devices, which are allocated whole: a pod "
                                "asking a share of a GPU (gpu-cores below 100) fits none");
    r->model_mask = mask;
    return 0;
}

/* Models seen on MIG devices; pods of ours not yet placed keep off new
 * ones too. */
static void mig_models_add(struct fx_model *m, uint64_t bits)
{
    if (!(bits & ~m->mig_models))
        return;
    m->mig_models |= bits;
    const char *k;
    void *v;
    for (size_t i = 0; fx_strmap_next(&m->pods, &i, &k, &v);) {
        struct pod *p = v;
        struct flexpu_error err;
        if (p->ours && !p->alloc)
            mig_whole(m, &p->req, &err); /* else the node agent refuses it */
    }
}

static void node_in(struct fx_model *m, struct node *n, const struct fx_node_attrs *attrs)
{
    if (n->cordoned || !n->seen)
        return;
    struct flexpu_node_info info = {.name = n->name,
                                    .cpu_milli = n->cpu_milli,
                                    .mem_mib = n->mem_bytes / FX_MIB,
                                    .ngpu = n->inv.ngpu,
                                    .label_list = attrs->labels,
                                    .nlabel_list = attrs->nlabels,
                                    .taints = attrs->taints,
                                    .ntaints = attrs->ntaints};
    for (int i = 0; i < n->inv.ngpu; i++) {
        info.gpus[i].model = n->inv.gpus[i].model;
        info.gpus[i].mem_mib = n->inv.gpus[i].mem_bytes / FX_MIB;
        info.gpus[i].numa = n->inv.gpus[i].numa;
        info.gpus[i].topo_group = n->inv.gpus[i].group;
        uint64_t bit = 0;
        struct flexpu_error merr;
        if (n->inv.gpus[i].mig[0] && !flexpu_engine_models(m->e, info.gpus[i].model, &bit, &merr))
            mig_models_add(m, bit);
    }
    struct flexpu_error err;
    if (flexpu_engine_add_node(m->e, &info, &n->id, &err)) {
        FX_ERROR(COMP, "a node cannot be modelled", "node=%s error=\"%s\"", n->name, err.msg);
        n->id = -1;
        return;
    }
    for (struct pod *p = n->pods; p; p = p->next)
        account(m, p, n);
    if (n->inv.ngpu)
        remote_node_inout(m, n, true);
    for (int i = 0; i < n->inv.ngpu; i++)
        m->gpu_mem_total += n->inv.gpus[i].mem_bytes / FX_MIB;
    m->shares_dirty = true;
    if (n->inv.ngpu)
        m->shapes_dirty = true; /* its GPUs count in the model pressure (node_out) */
    /* An unhealthy GPU takes no new work: a hold takes what is left of it. */
    for (int g = 0; g < n->inv.ngpu; g++) {
        if (n->inv.gpus[g].healthy)
            continue;
        int free = flexpu_engine_gpu_free_milli(m->e, n->id, g);
        if (free <= 0)
            continue;
        struct flexpu_pod_req r = {.num_gpu = 1, .gpu_milli = free};
        struct flexpu_placement pl = {.node = n->id, .ngpu = 1, .gpu = {g}, .milli = {free}};
        if (flexpu_engine_assign(m->e, &r, &pl, &n->holds[g], &err))
            FX_WARN(COMP, "cannot fence an unhealthy GPU", "node=%s gpu=%s error=\"%s\"", n->name,
                    n->inv.gpus[g].uuid, err.msg);
    }
    capacity_freed(m, n->id); /* new to the engine: its capacity too */
}

/* What the borrowers on GPU g of n hold: their shares in thousandths
 * (those not leaving: what the owners compete with), their memory in MiB
 * (all of them: a leaving borrower holds it until it is gone), and how many. */
static void borrowers_on(const struct node *n, int g, int *milli, int64_t *mem_mib, int *count)
{
    *milli = 0;
    *mem_mib = 0;
    if (count)
        *count = 0;
    for (const struct pod *p = n->pods; p; p = p->next) {
        if (!p->borrowed || p->bgpu != g)
            continue;
        *mem_mib += p->bmem_mib;
        if (count)
            ++*count;
        if (!p->evicting)
            *milli += p->bcores * 10;
    }
}

/* The owners' use of GPU g of n: the slices that are not borrowers. The
 * GPU's figure less the borrowers' slices, or the owners' slices summed,
 * whichever is higher (the GPU's figure is capped at 1000; a slice the
 * agent did not publish counts as an owner's). A slice is a borrower's only
 * when that borrower is bound here, on this GPU: a slice named after a
 * borrower elsewhere (the agent's text is the node's tenants') is an
 * owner's, and cannot hide what the owners use. */
static void owners_use(struct fx_model *m, const struct node *n, int g,
                       const struct fx_usage_gpu *u, int *busy, int *mean, int64_t *mem)
{
    int ob = 0, om = 0, bb = 0, bm = 0;
    int64_t omem = 0, bmem = 0;
    for (int k = 0; k < u->nslices && k < FX_USAGE_SLICES_MAX; k++) {
        const struct pod *p = fx_strmap_get(&m->pods, u->slices[k].pod);
        if (p && p->borrowed && p->on == n && p->bgpu == g) {
            bb += u->slices[k].busy;
            bm += u->slices[k].mean;
            bmem += u->slices[k].mem;
        } else {
            ob += u->slices[k].busy;
            om += u->slices[k].mean;
            omem += u->slices[k].mem;
        }
    }
    *mem = u->mem - bmem > omem ? u->mem - bmem : omem;
    *busy = u->busy - bb > ob ? u->busy - bb : ob;
    *mean = u->mean - bm > om ? u->mean - bm : om;
    *busy = *busy < 0 ? 0 : *busy > 1000 ? 1000 : *busy;
    *mean = *mean < 0 ? 0 : *mean > 1000 ? 1000 : *mean;
}

static bool borrow_mem_over(const struct fx_model *m, const struct node *n, int g);

/* The node's measured use, from flexpu.io/gpu-usage as parsed, and, on a
 * new reading, borrowing's view of each GPU (borrow.h). */
static void use_set(struct fx_model *m, struct node *n, const struct fx_node_usage *u)
{
    bool fresh = u->ts > 0 && u->ts != n->use_ts;
    n->use_ts = u->ts;
    for (int g = 0; g < FLEXPU_MAX_GPUS; g++) {
        n->use_busy[g] = (int16_t)(u->gpus[g].known ? u->gpus[g].busy : -1);
        n->use_mean[g] = (int16_t)u->gpus[g].mean;
        n->use_mem[g] = u->gpus[g].mem;
    }
    if (!fresh || n->inv.ngpu == 0)
        return;
    /* A reading dated ahead of the scheduler's clock (a node clock far
     * off) is unknown to fx_model_gpu_use; it must not move borrowing's
     * view either: its run above capacity and its hour of the day would
     * belong to a time that has not come. */
    if (m->now_s > 0 && u->ts - m->now_s > FX_USAGE_SKEW_S)
        return;
    if (n->nwatch != n->inv.ngpu) {
        struct fx_gpu_watch *w = fx_realloc(n->watch, (size_t)n->inv.ngpu * sizeof(*w));
        if (!w) {
            FX_ERROR(COMP, "out of memory watching a node's GPUs for borrowing", "node=%s",
                     n->name);
            return;
        }
        for (int g = n->nwatch; g < n->inv.ngpu; g++)
            fx_watch_init(&w[g]);
        n->watch = w;
        n->nwatch = n->inv.ngpu;
    }
    for (int g = 0; g < n->nwatch; g++) {
        int busy = -1, mean = -1, milli;
        int64_t mem;
        n->use_owner_mem[g] = u->gpus[g].mem;
        if (u->gpus[g].known)
            owners_use(m, n, g, &u->gpus[g], &busy, &mean, &n->use_owner_mem[g]);
        borrowers_on(n, g, &milli, &mem, NULL);
        fx_watch_reading(&n->watch[g], u->ts, busy, mean, milli);
        if (n->watch[g].over_ts || borrow_mem_over(m, n, g))
            m->reclaim_check = true;
    }
    m->borrow_wake = true;
}

bool fx_model_gpu_use(const struct fx_model *m, const char *node, int gpu, int64_t now_s,
                      struct fx_gpu_use *out)
{
    const struct node *n = fx_strmap_get(&m->nodes, node);
    if (!n || !n->seen || gpu < 0 || gpu >= n->inv.ngpu || n->use_ts <= 0 ||
        n->use_busy[gpu] < 0 || now_s - n->use_ts > FX_USAGE_STALE_S ||
        n->use_ts - now_s > FX_USAGE_SKEW_S)
        return false;
    *out = (struct fx_gpu_use){.busy = n->use_busy[gpu], .mean = n->use_mean[gpu],
                               .mem = n->use_mem[gpu], .ts = n->use_ts};
    return true;
}

static void node_event(struct fx_model *m, enum kube_event ev, json_t *obj)
{
    if (ev == KUBE_SYNC_BEGIN || ev == KUBE_SYNC_END)
        return; /* nodes are never pruned on relist: DELETED events are reliable enough
                   and a missing node's pods keep their accounting until it returns */
    const char *name = kube_str(obj, "metadata.name");
    if (!name || strlen(name) >= sizeof(((struct node *)0)->name))
        return;
    struct node *n = fx_strmap_get(&m->nodes, name);
    if (ev == KUBE_DELETED) {
        if (!n)
            return;
        node_out(m, n);
        n->seen = false;
        /* Its pods hold nothing while the node is gone, but stay listed on
         * the record: a kubelet that registers its Node again brings them
         * back, and they are accounted again before anything new lands. */
        if (!n->pods)
            drop_node(m, n);
        return; /* no capacity freed: its pods held only its own */
    }
    struct fx_node_inv inv;
    struct flexpu_error err;
    const char *inv_text = kube_annotation(obj, FX_ANN_NODE_GPUS);
    if (fx_node_inv_parse(inv_text, &inv, &err)) {
        FX_WARN(COMP, "node GPU inventory ignored", "node=%s error=\"%s\"", name, err.msg);
        memset(&inv, 0, sizeof(inv));
    }
    struct fx_node_usage use;
    if (fx_node_usage_parse(kube_annotation(obj, FX_ANN_NODE_USAGE), inv.ngpu, &use, &err))
        FX_WARN(COMP, "node GPU usage ignored", "node=%s error=\"%s\"", name, err.msg);
    int64_t cpu, mem;
    if (fx_node_allocatable(obj, &cpu, &mem, &err)) {
        FX_WARN(COMP, "node allocatable ignored", "node=%s error=\"%s\"", name, err.msg);
        cpu = mem = 0;
    }
    int slots = 0;
    if (inv.ngpu == 0 && fx_node_remote_slots(obj, &slots, &err))
        FX_WARN(COMP, "node remote slots ignored", "node=%s error=\"%s\"", name, err.msg);
    bool cordoned = fx_node_cordoned(obj);
    struct fx_node_attrs attrs;
    if (fx_node_attrs_parse(obj, &attrs, &err)) {
        /* Which pods may go there is unknown: none, until it reads well. */
        FX_WARN(COMP, "node labels or taints unreadable: it takes no pods", "node=%s error=\"%s\"",
                name, err.msg);
        cordoned = true;
    }
    if (n && n->id >= 0 && !cordoned && n->cpu_milli == cpu && n->mem_bytes == mem &&
        n->attrs_hash == attrs.hash && n->remote_slots == slots &&
        memcmp(&n->inv, &inv, sizeof(inv)) == 0) {
        fx_node_attrs_free(&attrs);
        use_set(m, n, &use);
        return; /* a status heartbeat or a usage update: the engine's nodes are unchanged */
    }
    if (!n && !(n = node_record(m, name))) {
        fx_node_attrs_free(&attrs);
        return;
    }
    node_out(m, n);
    n->inv = inv;
    n->cpu_milli = cpu;
    n->mem_bytes = mem;
    n->cordoned = cordoned;
    n->remote_slots = slots;
    n->attrs_hash = attrs.hash;
    n->seen = true;
    use_set(m, n, &use);
    node_in(m, n, &attrs);
    fx_node_attrs_free(&attrs);
}

void fx_model_node_event(struct fx_model *m, enum kube_event ev, json_t *obj)
{
    node_event(m, ev, obj);
    holds_refresh(m); /* the victims' holds exact between events too */
}

/* ---- pods ---- */

static void shape_seen(struct fx_model *m, const struct flexpu_pod_req *r)
{
    if (!r->num_gpu)
        return;
    for (int i = 0; i < m->nshapes; i++) {
        struct flexpu_pod_req *s = &m->shapes[i].req;
        if (s->num_gpu == r->num_gpu && s->gpu_milli == r->gpu_milli &&
            s->model_mask == r->model_mask) {
            m->shapes[i].count++;
            m->shapes[i].cpu_sum += (double)r->cpu_milli;
            m->shapes[i].mem_sum += (double)r->mem_mib;
            m->shapes_total++;
            /* Popularity moves slowly: refresh when the count grew by a
             * quarter (each refresh resets the engine's cost cache). */
            if (m->shapes_total >= m->shapes_refreshed * 5 / 4)
                m->shapes_dirty = true;
            return;
        }
    }
    if (m->nshapes < SHAPES_MAX) {
        m->shapes[m->nshapes].req = *r;
        m->shapes[m->nshapes].cpu_sum = (double)r->cpu_milli;
        m->shapes[m->nshapes].mem_sum = (double)r->mem_mib;
        m->shapes[m->nshapes++].count = 1;
        m->shapes_total++;
        m->shapes_dirty = true; /* a new shape: at once */
    }
}

void fx_model_refresh_workload(struct fx_model *m)
{
    if (!m->shapes_dirty || m->nshapes == 0)
        return;
    struct flexpu_pod_req reqs[SHAPES_MAX];
    double w[SHAPES_MAX];
    for (int i = 0; i < m->nshapes; i++) {
        reqs[i] = m->shapes[i].req;
        reqs[i].cpu_milli = (int64_t)(m->shapes[i].cpu_sum / m->shapes[i].count);
        reqs[i].mem_mib = (int64_t)(m->shapes[i].mem_sum / m->shapes[i].count);
        w[i] = m->shapes[i].count;
    }
    struct flexpu_error err;
    if (flexpu_engine_set_workload(m->e, reqs, w, m->nshapes, &err))
        FX_WARN(COMP, "workload not updated", "error=\"%s\"", err.msg);
    m->shapes_dirty = false;
    m->shapes_refreshed = m->shapes_total;
    m->workload_refreshes++;
}

static void clear_unsure(struct fx_model *m, struct pod *p)
{
    if (p->unsure) {
        p->unsure = false;
        m->nunsure--;
    }
}

/* A pod ended: a victim's preemptor binds once its last victim is gone,
 * and victims shielded by a refused eviction may be chosen again. */
static void victim_gone(struct fx_model *m, struct pod *p)
{
    m->end_epoch++;
    if (!p->preemptor)
        return;
    struct pod *pr = fx_strmap_get(&m->pods, p->preemptor);
    if (!pr || pr->state != POD_NOMINATED || --pr->nvictims > 0)
        return;
    /* The preemptor, and for a gang every member nominated with it. */
    for (struct pod *q = pr->gang ? pr->gang->members : pr; q; q = pr->gang ? q->gnext : NULL) {
        if (q->state != POD_NOMINATED || q->nvictims > 0)
            continue;
        set_state(m, q, POD_ASSUMED);
        if (heap_push(&m->ready, q)) {
            q->hq = READY;
        } else {
            FX_ERROR(COMP, "out of memory queueing a preemptor's bind", "pod=%s/%s",
                     STR(q->ns), STR(q->name));
            give_back(m, q);
        }
    }
    /* Members that waited for these to be bound (gang_turn) are decided
     * again: the group has its placed members now, wherever they fit. */
    for (struct pod *q = pr->gang ? pr->gang->members : NULL; q; q = q->gnext)
        if (q->state == POD_WAITING && !q->gang_short)
            enqueue(m, q);
}

/* Victim c stays after all: no longer leaving (for any preemptor), its
 * hold given up for its whole allocation accounted on its node again, and
 * its queue's share with it. Every caller has released its preemptor's
 * place first, so the allocation fits: what the victim's hold lacked was
 * taken by that place. Whether it was a borrower reclaimed is the
 * caller's to clear. */
static void victim_stays(struct fx_model *m, struct pod *c)
{
    c->evicting = false;
    str_set(&c->preemptor, NULL);
    hold_end(m, c, false);
    if (c->on)
        account(m, c, c->on);
    if (c->rnode)
        remote_account(m, c); /* its slice, even while its own node is out */
    queue_sync(m, c);
}

/* The borrowers reclaimed for preemptor uid (its quota needs their GPU
 * memory: borrow_conflict) whose reclaims have not gone out yet (still in
 * reclaimq, sent after the evictions) stay, as victims_unqueue's do: each
 * is accounted again on its node, and the node's waiting pods are woken,
 * since an owner that also needs that memory now asks the reclaim itself.
 * Each was queued for uid: reclaimq is drained before any pod is decided,
 * so a reclaim queued for another reason has gone out before a preemptor
 * claims its borrower. A reclaim sent goes on; a delete queued after a
 * budget refused it (reclaim_delete) counts as sent. */
static void reclaims_unqueue(struct fx_model *m, const char *uid)
{
    for (size_t q = 0; q < m->nreclaimq;) {
        struct pod *b = fx_strmap_get(&m->pods, m->reclaimq[q].uid);
        if (!b || !b->evicting || !b->reclaimed || b->evicted || b->reclaim_delete ||
            strcmp(STR(b->preemptor), uid) != 0) {
            q++;
            continue;
        }
        memmove(m->reclaimq + q, m->reclaimq + q + 1,
                (m->nreclaimq - q - 1) * sizeof(*m->reclaimq));
        m->nreclaimq--;
        b->reclaimed = false;
        victim_stays(m, b);
        if (b->on)
            capacity_freed(m, b->on->id); /* its owners, woken, ask for it again */
    }
}

/* A preemptor (uid) no longer needs its victims: those whose evictions
 * have not gone out yet (still in evictq: one goes per fx_model_next,
 * after the binds, and a round of decisions may end between them) stay,
 * their places given back, since nothing needs their room now and a pod
 * created and deleted at once must not evict for nothing; so do the
 * borrowers reclaimed for its memory (reclaims_unqueue). Evictions and
 * reclaims already sent go on. Called once the preemptor's place is
 * released. */
static void victims_unqueue(struct fx_model *m, const char *uid)
{
    reclaims_unqueue(m, uid);
    for (size_t q = 0; q < m->evictq.n;) {
        struct pod *c = fx_strmap_get(&m->pods, m->evictq.v[q]);
        if (!c || !c->evicting || c->evicted || strcmp(STR(c->preemptor), uid) != 0) {
            q++;
            continue;
        }
        fx_free(uidq_take(&m->evictq, q));
        victim_stays(m, c);
    }
}

/* The victims still leaving for preemptor `from` now leave for `to` (O(pods):
 * rare): victim_gone counts them against `to`, and their Preempted events
 * name it. */
static void victims_repoint(struct fx_model *m, const char *from, const char *to)
{
    const char *k;
    void *val;
    for (size_t i = 0; fx_strmap_next(&m->pods, &i, &k, &val);) {
        struct pod *c = val;
        if (c->evicting && c->preemptor && strcmp(c->preemptor, from) == 0)
            str_set(&c->preemptor, to);
    }
}

/* Nominated pod q gives its place back and is decided again (its eviction
 * refused, its group no longer reaching min-members, an edit): its
 * status.nominatedNodeName, which names that place, is cleared by an
 * FX_UNNOMINATE attempt before any decision (as kube-scheduler clears a
 * nomination that no longer holds), unless the pod is bound or nominated
 * again first. The victims it keeps from leaving are the caller's to make
 * stay first; those still leaving for it go on for no one, since a victim
 * gone must not count against q nominated again (bound before its new
 * victims are gone). */
static void nomination_drop(struct fx_model *m, struct pod *q)
{
    release(m, q);
    victims_repoint(m, q->uid, NULL);
    unlink_pod(m, q);
    str_set(&q->node, NULL);
    str_set(&q->allocation, NULL);
    q->nvictims = 0;
    if (!uidq_push(&m->unnomq, q->uid))
        FX_ERROR(COMP, "out of memory queueing a nomination's end", "pod=%s/%s", STR(q->ns),
                 STR(q->name));
    enqueue(m, q);
}

/* Whether gang member q, other than one being deleted, holds a place
 * toward its group's minimum: placed, or nominated (holding it while its
 * victims go). A member waiting holds none: it may fit nowhere. */
static bool gang_holds_place(const struct pod *q)
{
    return q->state == POD_ASSUMED || q->state == POD_BOUND || q->state == POD_NOMINATED;
}

/* Gang member p, nominated (its place already released), is deleted, or
 * bound elsewhere (`placed`: it holds a place toward the minimum, where
 * the server says); still listed on its group. While the members holding
 * places (p among them when placed) still reach min-members the group's
 * preemption goes on: if p is the member its victims name, another
 * nominated member takes that over (else they would
 * go for a pod that no longer exists, and the members waiting on them
 * never be bound), and when none is left nothing needs the victims. When
 * they no longer reach it (the whole group deleted, or any member of the
 * batch nominated together, which was just the members missing), nothing
 * needs the victims either: those whose evictions have not gone out stay
 * (victims_unqueue), and every member still nominated gives its place back
 * and is decided again with the members waiting, all or none (counting a
 * waiting member instead would bind the others below min-members when it
 * fits nowhere, and evict for them). */
static void gang_nominee_gone(struct fx_model *m, struct pod *p, bool placed)
{
    struct gang *g = p->gang;
    int holding = placed;
    struct pod *heir = NULL;
    for (struct pod *q = g->members; q; q = q->gnext) {
        if (q == p || !gang_holds_place(q))
            continue;
        holding++;
        if (!heir && q->state == POD_NOMINATED && q->nvictims == 0)
            heir = q;
    }
    if (holding >= g->grp.min_members) {
        if (p->nvictims > 0 && heir) {
            heir->nvictims = p->nvictims;
            victims_repoint(m, p->uid, heir->uid);
        } else if (p->nvictims > 0) {
            victims_unqueue(m, p->uid);
        }
        return;
    }
    /* Every place given back before any victim stays: a victim accounted
     * again needs the room a member's place took (on another node than
     * p's, for a group across nodes). */
    for (struct pod *q = g->members; q; q = q->gnext)
        if (q != p && q->state == POD_NOMINATED)
            release(m, q);
    if (p->nvictims > 0)
        victims_unqueue(m, p->uid);
    for (struct pod *q = g->members; q; q = q->gnext) {
        if (q == p || q->state != POD_NOMINATED)
            continue;
        if (q->nvictims > 0) {
            victims_unqueue(m, q->uid);
            /* Its evictions already sent go on for no one: a victim gone
             * must not count against q, nominated again later. */
            victims_repoint(m, q->uid, p->uid);
        }
        nomination_drop(m, q);
    }
}

/* Nominated pod p stops waiting for its victims without their being gone:
 * deleted, or bound elsewhere (`placed`: another instance of the scheduler
 * or a user's Binding). Its place is released already. The victims whose
 * evictions have not gone out stay (victims_unqueue); for a group member,
 * as gang_nominee_gone decides. The one place for every such path. */
static void nomination_ends(struct fx_model *m, struct pod *p, bool placed)
{
    if (p->gang)
        gang_nominee_gone(m, p, placed);
    else if (p->nvictims > 0)
        victims_unqueue(m, p->uid);
    p->nvictims = 0;
}

/* Nominated pod p was edited while its victims go (what it asks, its
 * group, or made malformed): it is decided again with what it asks now, as
 * a waiting pod edited is, not bound as decided before. Its victims not
 * yet evicted stay (nomination_ends: for a group member, as when it is
 * deleted); those evicted go on, for no one (nomination_drop). */
static void nominee_edited(struct fx_model *m, struct pod *p)
{
    release(m, p);
    nomination_ends(m, p, false);
    nomination_drop(m, p);
}

static void forget(struct fx_model *m, struct pod *p)
{
    struct node *on = p->on;
    bool nominated = p->state == POD_NOMINATED;
    /* A borrower gone frees its GPU's memory, which the engine never
     * counted: owners waiting for it are woken (borrow_conflict). */
    if (p->borrowed && on && on->id >= 0)
        capacity_freed(m, on->id);
    borrow_set(m, p, false);
    clear_unsure(m, p);
    dequeue(m, p);
    release(m, p);
    if (nominated)
        nomination_ends(m, p, false);
    unlink_pod(m, p);
    if (on && !on->seen && !on->pods)
        drop_node(m, on); /* the last pod of a node that is gone */
    wait_unlink(m, p);
    p->qid = -1;
    queue_sync(m, p); /* its charge off its queue */
    gang_leave(m, p);
    victim_gone(m, p);
    rules_set(m, p, NULL);
    fx_strmap_del(&m->pods, p->uid);
    pod_free(p);
}

/* The n decimal digits at s as a number within lo..hi, or -1. */
static int time_field(const char *s, int n, int lo, int hi)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v >= lo && v <= hi ? v : -1;
}

/* Seconds since the epoch of an RFC 3339 UTC time ("2026-01-01T00:00:00Z",
 * what follows the seconds unread), 0 when unreadable: the age of a
 * victim, from its creation. Fixed-width fields within their ranges, so an
 * out-of-range one (month 13, second 99999) is unreadable like a missing
 * time, not carried into the next field by timegm, and no number can
 * overflow (a signed "%d" could, undefined). */
static int64_t epoch_of(const char *t)
{
    static const char shape[] = "dddd-dd-ddTdd:dd:dd";
    for (size_t i = 0; t && i < sizeof(shape) - 1; i++)
        if (!t[i] || (shape[i] != 'd' && t[i] != shape[i]))
            return 0;
    if (!t)
        return 0;
    struct tm tm = {
        .tm_year = time_field(t, 4, 0, 9999),
        .tm_mon = time_field(t + 5, 2, 1, 12),
        .tm_mday = time_field(t + 8, 2, 1, 31),
        .tm_hour = time_field(t + 11, 2, 0, 23),
        .tm_min = time_field(t + 14, 2, 0, 59),
        .tm_sec = time_field(t + 17, 2, 0, 60), /* a leap second */
    };
    if (tm.tm_year < 0 || tm.tm_mon < 0 || tm.tm_mday < 0 || tm.tm_hour < 0 || tm.tm_min < 0 ||
        tm.tm_sec < 0)
        return 0;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return (int64_t)timegm(&tm);
}

/* ---- inter-pod rules: who has them, and who they wake ---- */

/* Gives p the rules r (NULL: none; p's old ones freed), keeping the count
 * of pods with rules and the list of those whose rules act on others. */
static void rules_set(struct fx_model *m, struct pod *p, struct fx_pod_rules *r)
{
    if (p->rules)
        m->nruled--;
    if (p->alinked) {
        if (p->aprev)
            p->aprev->anext = p->anext;
        else
            m->acting = p->anext;
        if (p->anext)
            p->anext->aprev = p->aprev;
        p->aprev = p->anext = NULL;
        p->alinked = false;
    }
    fx_pod_rules_free(p->rules);
    p->rules = r;
    if (!r)
        return;
    m->nruled++;
    if (r->nanti > 0 || r->naff > 0 || r->npaff > 0 || r->npanti > 0) {
        p->anext = m->acting;
        if (m->acting)
            m->acting->aprev = p;
        m->acting = p;
        p->alinked = true;
    }
}

/* Whether pod q counts for the required pod affinity r of a pod in
 * namespace ns: only a pod that every term selects does, as kube-scheduler
 * counts it (updateWithAffinityTerms); one selected by some terms alone
 * satisfies none. */
static bool affinity_selects(const struct fx_pod_rules *r, const char *ns, const struct pod *q)
{
    for (int t = 0; t < r->naff; t++)
        if (!fx_pod_term_matches(&r->aff[t], ns, q->ns, q->labels))
            return false;
    return r->naff > 0;
}

/* Whether pod q landing on a node (landing) or leaving it may let waiting
 * pod w be placed through w's own rules: w's pod affinity counts it
 * (affinity_selects), or a spread constraint of w's does, either way (a
 * landing raises the smallest count, a leaving lowers a domain's; the
 * last selected pod leaving frees a pod with affinity to itself); an
 * anti-affinity term of w's selects it, only when it leaves (a landing
 * only excludes more, so kube-scheduler's queueing hint skips it too). */
static bool rules_involve(const struct pod *w, const struct pod *q, bool landing)
{
    const struct fx_pod_rules *r = w->rules;
    if (r && affinity_selects(r, w->ns, q))
        return true;
    for (int i = 0; r && !landing && i < r->nanti; i++)
        if (fx_pod_term_matches(&r->anti[i], w->ns, q->ns, q->labels))
            return true;
    for (int i = 0; r && i < r->nspread; i++)
        if (!r->spread[i].soft && strcmp(STR(w->ns), STR(q->ns)) == 0 &&
            fx_label_sel_matches(&r->spread[i].sel, q->labels))
            return true;
    return false;
}

/* Pod q lands on a node (landing) or leaves one: the waiting pods whose
 * inter-pod rules it may unblock (rules_involve) are queued again, and,
 * when it leaves, those that q's own anti-affinity selects (its symmetric
 * rule: it only excludes, so its landing frees no one). Capacity wake-ups
 * (wake_waiting) look at one node; a rule on a zone key reaches further,
 * so these are woken by what they select. Nothing is walked while no pod
 * has rules. */
static void rules_touch(struct fx_model *m, const struct pod *q, bool landing)
{
    if (m->nruled == 0)
        return;
    const struct fx_pod_rules *qr = landing ? NULL : q->rules;
    for (struct pod *w = m->waiting, *next; w; w = next) {
        next = w->wnext;
        if (w == q || w->gang_short || w->limited || w->noqueue)
            continue;
        bool wake = w->rules && rules_involve(w, q, landing);
        for (int i = 0; !wake && qr && i < qr->nanti; i++)
            wake = fx_pod_term_matches(&qr->anti[i], q->ns, w->ns, w->labels);
        if (wake) {
            m->wakes++;
            enqueue(m, w);
        }
    }
}

/* p's labels as other pods' rules see them (packed); true when they
 * changed. *old, when not NULL, receives the labels replaced (the
 * caller's to free). */
static bool labels_set(struct pod *p, json_t *obj, char **old)
{
    char *l = NULL;
    if (fx_labels_pack(kube_get(obj, "metadata.labels"), &l)) {
        FX_ERROR(COMP, "out of memory keeping a pod's labels", "pod=%s/%s", STR(p->ns),
                 STR(p->name));
        return false;
    }
    if (fx_labels_equal(l, p->labels)) {
        fx_free(l);
        return false;
    }
    if (old)
        *old = p->labels;
    else
        fx_free(p->labels);
    p->labels = l;
    return true;
}

static bool deleting(json_t *obj)
{
    json_t *dt = kube_get(obj, "metadata.deletionTimestamp");
    return dt && !json_is_null(dt);
}

/* A placed pod's labels edited (bound, or nominated: its place held): the
 * waiting pods whose rules selected it as it was, or select it as it is,
 * are tried again. Its deletion begun: it no longer counts for spread, so
 * they are tried again as if it left. */
static void placed_relabel(struct fx_model *m, struct pod *p, json_t *obj)
{
    if (!p->terminating && deleting(obj)) {
        p->terminating = true;
        if (p->on)
            rules_touch(m, p, false);
    }
    char *old = NULL;
    if (labels_set(p, obj, &old) && p->on) {
        rules_touch(m, p, true); /* as it is: as if landing */
        char *now = p->labels;
        p->labels = old;
        rules_touch(m, p, false); /* as it was: as if leaving */
        p->labels = now;
    }
    fx_free(old);
}

/* The lastTransitionTime (unix seconds) of pod obj's PodScheduled
 * condition when its status is False, else 0 (none, another status, a
 * time unreadable): a new reason or message with the same status keeps
 * it, as kube-scheduler's podutil.UpdatePodCondition does. */
static int64_t unscheduled_since(json_t *obj)
{
    json_t *conds = kube_get(obj, "status.conditions"), *c;
    size_t i;
    json_array_foreach(conds, i, c) {
        const char *type = json_string_value(json_object_get(c, "type"));
        if (!type || strcmp(type, "PodScheduled") != 0)
            continue;
        const char *status = json_string_value(json_object_get(c, "status"));
        if (!status || strcmp(status, "False") != 0)
            return 0;
        return epoch_of(json_string_value(json_object_get(c, "lastTransitionTime")));
    }
    return 0;
}

/* Reads what the model needs from a pod object into p; returns the parse
 * error (the pod is then invalid when ours). */
static int read_pod(struct fx_model *m, struct pod *p, json_t *obj, struct flexpu_error *err)
{
    const char *ns = kube_str(obj, "metadata.namespace");
    const char *name = kube_str(obj, "metadata.name");
    const char *created = kube_str(obj, "metadata.creationTimestamp");
    const char *node = kube_str(obj, "spec.nodeName");
    const char *sched = kube_str(obj, "spec.schedulerName");
    const char *alloc = kube_annotation(obj, FX_ANN_ALLOCATION);
    str_set(&p->ns, ns);
    str_set(&p->name, name);
    snprintf(p->created, sizeof(p->created), "%s", created ? created : "");
    p->created_s = epoch_of(p->created);
    str_set(&p->node, node);
    str_set(&p->allocation, alloc);
    json_t *labels = json_object_get(json_object_get(obj, "metadata"), "labels");
    str_set(&p->qname, json_string_value(json_object_get(labels, FX_LABEL_QUEUE)));
    p->ours = sched && strcmp(sched, m->sched_name) == 0;
    p->unsched_s = p->ours && !(node && *node) ? unscheduled_since(obj) : 0;
    const char *pp = kube_str(obj, "spec.preemptionPolicy");
    p->never_preempt = pp && strcmp(pp, "Never") == 0;
    /* Node constraints matter only while the pod waits for us to place it. */
    flexpu_filter_free(p->filter);
    p->filter = NULL;
    int rc = fx_pod_spec_parse(obj, &p->spec, err);
    if (!rc && p->ours && !(node && *node))
        rc = fx_pod_filter_parse(obj, &p->filter, err);
    const char *rkey = NULL; /* the remote rule too: where the pod goes */
    if (!rc && p->ours && !(node && *node))
        rc = fx_pod_remote_rule_parse(obj, &p->spec, &rkey, err);
    str_set(&p->rkey, rkey);
    /* Inter-pod rules: every pod's, as pods placed by others count for
     * the symmetric anti-affinity rule; a malformed rule matters only on a
     * pod of ours still to place (kube-scheduler placed the others). */
    labels_set(p, obj, NULL);
    p->terminating = deleting(obj);
    struct fx_pod_rules *rules = NULL;
    struct flexpu_error rerr = {0};
    int rrc = fx_pod_rules_parse(obj, &rules, &rerr);
    rules_set(m, p, rules);
    if (!rc && rrc && p->ours && !(node && *node)) {
        *err = rerr;
        rc = rrc;
    }
    /* Its scheduling gates: only a pending pod has any (the API server
     * refuses a pod created with both a node and gates). */
    char gates[300] = "";
    if (!rc && p->ours && !(node && *node)) {
        int ngates = fx_pod_gates_parse(obj, gates, sizeof(gates), err);
        rc = ngates < 0 ? ngates : 0;
    }
    str_set(&p->gates, gates);
    if (gates[0] && !p->gates) /* never taken as ungated: its bind would be refused */
        rc = flexpu_error_set(err, FLEXPU_ENOMEM, "out of memory reading spec.schedulingGates");
    /* Its pod group: bound members count toward the group's minimum (a
     * restart in the middle of a gang places only what is missing). A bad
     * group is an error only for a pod of ours still to place. */
    struct fx_pod_group grp;
    struct flexpu_error gerr = {0};
    int grc = fx_pod_group_parse(obj, &grp, &gerr);
    if (!grc && grp.group[0])
        grc = gang_join(m, p, &grp, &gerr);
    if (grc || !grp.group[0])
        gang_leave(m, p);
    if (!rc && grc && p->ours && !(node && *node)) {
        *err = gerr;
        rc = grc;
    }
    /* A pod group is placed all at once by the engine's gang search, which
     * takes no rule that depends on its own members: refused, named (its
     * preferences are not scored there). */
    if (!rc && p->gang && p->rules && p->rules->nblocking && p->ours && !(node && *node))
        rc = flexpu_error_set(err, FLEXPU_EINVAL,
                              "field '%s': a member of a pod group (" FX_LABEL_POD_GROUP
                              ") cannot have inter-pod rules: flexpu-scheduler places a group "
                              "all at once and does not evaluate them there",
                              p->rules->nanti   ? "spec.affinity.podAntiAffinity"
                              : p->rules->naff ? "spec.affinity.podAffinity"
                                               : "spec.topologySpreadConstraints");
    if (rc) {
        memset(&p->req, 0, sizeof(p->req));
        /* What the pod asks for in CPU and memory still counts once bound. */
        p->req.cpu_milli = p->spec.cpu_milli;
        p->req.mem_mib = (p->spec.mem_bytes + FX_MIB - 1) / FX_MIB;
        return rc;
    }
    fx_pod_spec_req(&p->spec, &p->req);
    if (p->spec.wants_gpu && p->spec.model[0]) {
        rc = flexpu_engine_models(m->e, p->spec.model, &p->req.model_mask, err);
        if (rc)
            flexpu_error_prefix(err, "metadata.annotations[" FX_ANN_GPU_MODEL "]");
    }
    if (!rc)
        rc = mig_whole(m, &p->req, err);
    return rc;
}

/* A string with its NUL, a separator no string holds. */
static uint64_t inputs_str(uint64_t h, const char *s)
{
    return fx_fnv1a_byte(fx_fnv1a_str(h, s), 0);
}

#define INPUTS_MIX(h, v) ((h) = fx_fnv1a_u64(h, (uint64_t)(v)))

/* A digest of everything read_pod gave pod p that decides where it may go:
 * fx_model_pod_event compares it before and after an update, and a waiting
 * pod whose digest changed (a user edited an annotation, added a
 * toleration) is tried again at once; an update that changes none of them
 * (its status, a label nobody reads, resourceVersion) costs no decision.
 * Field by field, never the structs' bytes (their padding is not
 * compared). A new input that read_pod reads, or a new field of struct
 * fx_pod_spec, struct flexpu_pod_req or struct fx_pod_group, must be added
 * here, or editing it on a waiting pod leaves the pod parked until capacity
 * frees somewhere. spec.schedulingGates is not: a gated pod is never a
 * waiting one, and the update that removes its last gate queues it
 * (pod_event). */
static uint64_t pod_inputs(const struct pod *p)
{
    const struct fx_pod_spec *s = &p->spec;
    const struct flexpu_pod_req *r = &p->req;
    uint64_t h = FX_FNV1A_OFFSET;
    INPUTS_MIX(h, s->wants_gpu);
    INPUTS_MIX(h, s->cpu_milli);
    INPUTS_MIX(h, s->mem_bytes);
    INPUTS_MIX(h, s->num_gpu);
    INPUTS_MIX(h, s->cores);
    INPUTS_MIX(h, s->gpu_mem);
    INPUTS_MIX(h, s->cores_limit);
    INPUTS_MIX(h, s->priority);
    INPUTS_MIX(h, s->priority_asked);
    INPUTS_MIX(h, s->priority_capped);
    INPUTS_MIX(h, s->class_priority);
    h = inputs_str(h, s->model);
    INPUTS_MIX(h, s->opportunistic);
    INPUTS_MIX(h, s->remote_allowed);
    INPUTS_MIX(h, r->cpu_milli);
    INPUTS_MIX(h, r->mem_mib);
    INPUTS_MIX(h, r->num_gpu);
    INPUTS_MIX(h, r->gpu_milli);
    INPUTS_MIX(h, r->gpu_mem_mib);
    INPUTS_MIX(h, r->model_mask);
    INPUTS_MIX(h, r->priority);
    INPUTS_MIX(h, r->qos);
    INPUTS_MIX(h, flexpu_filter_hash(p->filter)); /* tolerations, selector, affinity */
    h = inputs_str(h, p->rkey);
    INPUTS_MIX(h, p->rules ? p->rules->hash : 0); /* inter-pod rules */
    h = inputs_str(h, p->qname);
    h = inputs_str(h, p->gang ? p->gang->key : NULL);
    INPUTS_MIX(h, p->grp.min_members);
    INPUTS_MIX(h, p->never_preempt);
    INPUTS_MIX(h, p->ours);
    return h;
}

/* Whether an update of nominated pod p moves it out of its pod group (into
 * another, or none), or changes what its members must agree on: read_pod
 * would move it, so its nomination ends first, with the group it was
 * nominated with (gang_nominee_gone). A malformed group counts. */
static bool nominee_regrouped(const struct pod *p, json_t *obj)
{
    struct fx_pod_group grp;
    struct flexpu_error err = {0};
    if (fx_pod_group_parse(obj, &grp, &err))
        return true;
    if (!p->gang)
        return grp.group[0] != 0;
    return strcmp(grp.group, p->grp.group) != 0 || !group_values_same(&p->grp, &grp);
}

/* What a gated pod is told: kube-scheduler's words (its SchedulingGates
 * plugin, the PodScheduled condition's message with reason
 * SchedulingGated). */
static void gated_msg(const struct pod *p, char *msg, size_t n)
{
    snprintf(msg, n, "waiting for scheduling gates: %s", STR(p->gates));
}

/* A pending pod with scheduling gates is left alone until its last gate
 * goes, as kube-scheduler keeps it out of its queues (PreEnqueue): never
 * decided, so never placed, nominated or a preemptor; charged to no queue
 * (queue_sync: no demand to reclaim for); not a member its gang counts
 * (gang_turn). It is told once (fx_model_next), not every round. */
static void gate(struct fx_model *m, struct pod *p)
{
    char msg[400];
    gated_msg(p, msg, sizeof(msg));
    dequeue(m, p);
    p->limited = false;
    p->gang_short = false;
    set_state(m, p, POD_GATED);
    if (strcmp(STR(p->told), msg) != 0)
        enqueue_as(m, p, POD_GATED); /* fx_model_next reports it once */
}

static bool terminal(json_t *obj)
{
    const char *phase = kube_str(obj, "status.phase");
    return phase && (strcmp(phase, "Succeeded") == 0 || strcmp(phase, "Failed") == 0);
}

/* After a relist, pods not seen in it were deleted while no watch was
 * open; our own binds in flight stay (their result decides). */
static void prune(struct fx_model *m)
{
    const char *k;
    void *v;
    for (size_t i = 0; fx_strmap_next(&m->pods, &i, &k, &v);) {
        struct pod *p = v;
        if (p->gen != m->pod_gen && p->state != POD_ASSUMED) {
            forget(m, p);
            i = 0; /* deletion shifts entries: restart (rare, after a relist) */
        }
    }
}

static void pod_event(struct fx_model *m, enum kube_event ev, json_t *obj)
{
    if (ev == KUBE_SYNC_BEGIN) {
        m->pod_gen++;
        return;
    }
    if (ev == KUBE_SYNC_END) {
        prune(m);
        return;
    }
    const char *uid = kube_str(obj, "metadata.uid");
    if (!uid || strlen(uid) >= sizeof(((struct pod *)0)->uid))
        return;
    struct pod *p = fx_strmap_get(&m->pods, uid);
    if (ev == KUBE_DELETED || terminal(obj)) {
        if (p)
            forget(m, p);
        return;
    }
    if (p)
        p->gen = m->pod_gen;
    const char *node = kube_str(obj, "spec.nodeName");
    bool bound = node && *node;
    if (p && p->state == POD_BOUND) {
        placed_relabel(m, p, obj); /* other pods' rules select on its labels */
        return; /* a bound pod's node and allocation never change */
    }
    if (p && p->state == POD_ASSUMED && !bound)
        return; /* our bind is in flight; its result decides */
    if (!p) {
        if (!bound) {
            const char *sched = kube_str(obj, "spec.schedulerName");
            if (!sched || strcmp(sched, m->sched_name) != 0)
                return; /* another scheduler's pending pod: not ours to track */
        }
        p = fx_calloc(1, sizeof(*p));
        if (!p || fx_strmap_put(&m->pods, uid, p)) {
            pod_free(p);
            FX_ERROR(COMP, "out of memory tracking a pod", "uid=%s", uid);
            return;
        }
        snprintf(p->uid, sizeof(p->uid), "%s", uid);
        p->heap = -1;
        p->hq = LOOSE;
        p->qid = -1;
        p->seq = ++m->seq;
        p->state = POD_QUEUED;
        p->gen = m->pod_gen;
    }
    struct flexpu_error err = {0};
    char assumed_node[256];
    bool assumed = p->state == POD_ASSUMED;
    snprintf(assumed_node, sizeof(assumed_node), "%s", assumed ? STR(p->node) : "");
    /* What we assumed, to compare with what the server recorded. */
    char *assumed_alloc = assumed && p->allocation ? fx_strdup(p->allocation) : NULL;
    bool alloc_lost = assumed && p->allocation && !assumed_alloc;
    /* What decides where the pod may go, before this event (edited). */
    uint64_t was_inputs = pod_inputs(p);
    /* A nominated pod keeps its place and the node it was told unless it
     * was edited (nominee_edited, below); one whose group changes ends its
     * nomination first, with the group it was nominated with, since
     * read_pod moves it. */
    bool nominee = p->state == POD_NOMINATED && !bound;
    if (nominee && nominee_regrouped(p, obj)) {
        nominee_edited(m, p);
        nominee = false;
    }
    char *kept_node = NULL, *kept_alloc = NULL;
    if (nominee) {
        placed_relabel(m, p, obj); /* other pods' rules select on its labels */
        kept_node = p->node;
        kept_alloc = p->allocation;
        p->node = p->allocation = NULL;
    }
    int bad = read_pod(m, p, obj, &err);
    bool edited = pod_inputs(p) != was_inputs;
    if (nominee) {
        str_set(&p->node, kept_node);
        str_set(&p->allocation, kept_alloc);
        fx_free(kept_node);
        fx_free(kept_alloc);
        if (!bad && !edited)
            return; /* its status, or a label or annotation nobody reads */
        nominee_edited(m, p);
    }
    int old_qid = p->qid;
    queue_resolve(m, p);
    if (p->qid != old_qid && p->state == POD_WAITING)
        p->limited = false; /* another queue's limits */
    queue_sync(m, p);
    bool same_alloc = !alloc_lost && strcmp(STR(assumed_alloc), STR(p->allocation)) == 0;
    fx_free(assumed_alloc);
    if (bound) {
        dequeue(m, p);
        clear_unsure(m, p);
        if (assumed && strcmp(assumed_node, STR(p->node)) == 0 && same_alloc && p->alloc) {
            set_state(m, p, POD_BOUND); /* our own bind, confirmed */
            borrower_bound(m, p);
            return;
        }
        /* Assumed elsewhere or with other GPUs (another instance bound it),
         * or never accounted: what the server recorded is what counts.
         * Nominated, it waits for its victims no more: those not evicted
         * yet stay (before, they were evicted for nothing). */
        bool nominated = p->state == POD_NOMINATED;
        release(m, p);
        if (nominated)
            nomination_ends(m, p, true);
        unlink_pod(m, p);
        set_state(m, p, POD_BOUND);
        /* Pods can arrive before their node: a placeholder record
         * collects them until the node itself is seen. */
        struct node *n = fx_strmap_get(&m->nodes, STR(p->node));
        if (!n && !(n = node_record(m, STR(p->node))))
            return; /* not schedulable until the Node object is seen */
        link_pod(m, n, p);
        account(m, p, n);
        borrower_bound(m, p);
        return;
    }
    /* Ours and pending. */
    if (bad) {
        dequeue(m, p);
        str_set(&p->problem, err.msg);
        set_state(m, p, POD_INVALID);
        if (strcmp(STR(p->told), STR(p->problem)) != 0)
            enqueue_as(m, p, POD_INVALID); /* fx_model_next reports it once */
        return;
    }
    str_set(&p->problem, NULL);
    p->gang_refused = false; /* decided again: refused again if it still differs */
    if (!p->counted) {
        shape_seen(m, &p->req);
        p->counted = true;
    }
    if (p->gates) {
        gate(m, p);
        return;
    }
    /* Its last gate removed (gates are never added after creation): queued
     * at once, whatever pod_inputs says, and the members of its gang that
     * waited for more members try again. */
    bool ungated = p->state == POD_GATED;
    /* Waiting pods stay parked until capacity frees, or until what the
     * pod asks changes (pod_inputs: its flexpu.io/ annotations, queue and
     * group, tolerations: what a user may edit on a pending pod), as
     * kube-scheduler moves a pod back to its active queue on an update that
     * may make it schedulable. One held by its queue's limit goes too: a
     * smaller request may fit within the limit (fx_model_next checks it
     * again, and says nothing new when it still does not), and one whose
     * queue does not exist is told the queue it names now. One short of
     * its group's members stays as it is: no edit of its own brings them
     * (gang_join wakes it; leaving the group, or an edit of the values it
     * carries for the group, clears gang_short). */
    if (p->state != POD_WAITING || (edited && !p->gang_short))
        enqueue(m, p);
    if (ungated && p->gang)
        gang_wake(m, p->gang);
}

void fx_model_pod_event(struct fx_model *m, enum kube_event ev, json_t *obj)
{
    pod_event(m, ev, obj);
    holds_refresh(m); /* the victims' holds exact between events too */
}

/* ---- deciding ---- */

/* Queues again the waiting pods that freed capacity may now hold. A pod
 * waits because it fitted no node when it was last tried; since then only
 * the nodes that freed capacity can have turned to fit it, so it is retried
 * only when one of them does (flexpu_engine_node_may_fit). The cost is the
 * waiting pods times the changed nodes, not a placement per waiting pod
 * per change anywhere, nor a walk over every pod. */
static bool may_borrow(const struct fx_model *m, const struct pod *p);

/* A pod that allows a remote slice may fit once either half of it does:
 * its GPU share on a GPU node (without its CPU and memory), or its CPU and
 * memory on a node without GPUs. */
static bool remote_may_fit(struct fx_model *m, int node, const struct pod *p)
{
    if (!p->spec.remote_allowed)
        return false;
    struct flexpu_pod_req gpu = p->req, cpu = p->req;
    gpu.cpu_milli = gpu.mem_mib = 0;
    cpu.num_gpu = cpu.gpu_milli = 0;
    cpu.gpu_mem_mib = 0;
    cpu.model_mask = 0;
    return flexpu_engine_node_may_fit(m->e, node, &gpu) ||
           flexpu_engine_node_may_fit(m->e, node, &cpu);
}

static bool yields_to(const struct pod *p);

/* The CPU and memory the borrowers bound on engine node id hold, victims
 * of any pod that yields_to (victim_reason): all the engine books for a
 * borrower (account, borrow). */
static void lent_held(struct fx_model *m, int id, int64_t *cpu, int64_t *mem)
{
    struct node *n = engine_node(m, id);
    *cpu = *mem = 0;
    for (const struct pod *b = n ? n->pods : NULL; b; b = b->next)
        if (b->borrowed && b->state == POD_BOUND && b->alloc && !b->evicting && !b->unsure &&
            b->shielded != m->end_epoch + 1) {
            *cpu += b->req.cpu_milli;
            *mem += b->req.mem_mib;
        }
}

/* Whether p may fit engine node id once borrowers holding cpu and mem
 * there are gone. */
static bool may_fit_lent(struct fx_model *m, int id, int64_t cpu, int64_t mem,
                         const struct pod *p)
{
    if (cpu == 0 && mem == 0)
        return false;
    struct flexpu_pod_req r = p->req;
    r.cpu_milli = r.cpu_milli > cpu ? r.cpu_milli - cpu : 0;
    r.mem_mib = r.mem_mib > mem ? r.mem_mib - mem : 0;
    return flexpu_engine_node_may_fit(m->e, id, &r);
}

static void wake_waiting(struct fx_model *m)
{
    /* New readings of the usage feed may show a GPU to borrow: waiting
     * opportunistic pods are tried again, at most every FX_BORROW_RETRY_S. */
    bool borrow = m->borrow_wake && m->now_s > 0 &&
                  m->now_s - m->borrow_wake_s >= FX_BORROW_RETRY_S;
    if (borrow) {
        m->borrow_wake = false;
        m->borrow_wake_s = m->now_s;
    }
    if (!m->changed_all && m->nchanged == 0 && !m->queue_freed && !borrow && m->nbbound == 0 &&
        !m->bbound_all)
        return;
    /* What the borrowers hold on each node where one was bound: read once
     * per wake-up, not per waiting pod. */
    int64_t lent_cpu[CHANGED_MAX], lent_mem[CHANGED_MAX];
    for (int i = 0; i < m->nbbound; i++)
        lent_held(m, m->bbound[i], &lent_cpu[i], &lent_mem[i]);
    for (struct pod *p = m->waiting, *next; p; p = next) {
        next = p->wnext;
        if (borrow && may_borrow(m, p) && !p->limited && !p->noqueue) {
            m->wakes++;
            enqueue(m, p);
            continue;
        }
        /* A pod held back by its queue's limit may go once a queue's
         * allocation went down (which queue matters little: limits nest);
         * one without a queue, once the queue is defined (fx_model_queue_set). */
        if (p->gang_short)
            continue; /* woken when a member joins (gang_join) */
        if (p->limited || p->noqueue) {
            if (p->limited && m->queue_freed) {
                m->wakes++;
                enqueue(m, p);
            }
            continue;
        }
        bool may = m->changed_all;
        for (int i = 0; !may && i < m->nchanged; i++) {
            m->wake_checks++;
            may = flexpu_engine_node_may_fit(m->e, m->changed[i], &p->req) ||
                  remote_may_fit(m, m->changed[i], p);
        }
        /* A pod decided while a borrower's bind was in flight found no
         * victim in it; bound, the borrower may go for it. */
        if (!may && yields_to(p)) {
            may = m->bbound_all;
            for (int i = 0; !may && i < m->nbbound; i++) {
                m->wake_checks++;
                may = may_fit_lent(m, m->bbound[i], lent_cpu[i], lent_mem[i], p);
            }
        }
        if (may) {
            m->wakes++;
            enqueue(m, p);
        }
    }
    m->nchanged = 0;
    m->changed_all = false;
    m->nbbound = 0;
    m->bbound_all = false;
    m->queue_freed = false;
}

static bool borrow_conflict(struct fx_model *m, const struct pod *p, struct node *n,
                            const struct flexpu_placement *pl, struct pod *waiter);

/* A placement taken (allocation *id) on GPUs where borrowers hold memory
 * it needs: given back, and FLEXPU_EBUSY with why: the pod waits for the
 * borrowers, reclaimed at once (borrow_conflict), and is woken when they
 * are gone. 0 otherwise. */
static int owner_waits(struct fx_model *m, struct pod *p, struct flexpu_placement *pl,
                       int64_t *id, int64_t *slice_mem, struct flexpu_noplace *why)
{
    if (!p->spec.wants_gpu || m->nborrowers == 0)
        return 0;
    const char *name = flexpu_engine_node_name(m->e, pl->node);
    struct node *n = name ? fx_strmap_get(&m->nodes, name) : NULL;
    if (!borrow_conflict(m, p, n, pl, NULL))
        return 0;
    struct flexpu_error err;
    flexpu_engine_release(m->e, *id, &err);
    *id = 0;
    *slice_mem = 0;
    memset(why, 0, sizeof(*why));
    snprintf(why->text, sizeof(why->text),
             "waits for the borrowers on its GPU(s) of node %.100s to be evicted: they hold "
             "memory its quota needs (docs/KUBERNETES.md, \"Borrowing idle GPUs\")",
             name ? name : "?");
    return FLEXPU_EBUSY;
}

/* Places a pod in the engine. A slice without flexpu.io/gpu-memory gets a memory quota
 * of its share of the chosen GPU's memory (fx_default_slice_mem), which is
 * only known once the GPU is: decide first, then account that memory, so no
 * other pod is promised it. *slice_mem: that quota in bytes, else 0. */
static int place_engine(struct fx_model *m, struct pod *p, struct flexpu_placement *pl,
                        int64_t *id, int64_t *slice_mem, struct flexpu_noplace *why)
{
    *slice_mem = 0;
    struct flexpu_pod_req r;
    flexpu_engine_effective_req(m->e, &p->req, &r);
    int rc;
    if (!p->spec.wants_gpu || p->spec.gpu_mem > 0 || r.num_gpu != 1 || r.gpu_milli >= 1000) {
        return flexpu_engine_place_filtered(m->e, &p->req, p->filter, &m->rng, pl, id, why);
    }
    rc = flexpu_engine_decide_filtered(m->e, &p->req, p->filter, &m->rng, pl, why);
    if (rc)
        return rc;
    const char *node = flexpu_engine_node_name(m->e, pl->node);
    struct node *n = node ? fx_strmap_get(&m->nodes, node) : NULL;
    if (n && pl->gpu[0] < n->inv.ngpu)
        *slice_mem = fx_default_slice_mem(p->spec.num_gpu, p->spec.cores, p->spec.gpu_mem,
                                          n->inv.gpus[pl->gpu[0]].mem_bytes);
    pl->gpu_mem_mib[0] = *slice_mem / FX_MIB;
    struct flexpu_error err = {0};
    rc = flexpu_engine_assign(m->e, &r, pl, id, &err);
    if (rc) {
        *slice_mem = 0;
        memset(why, 0, sizeof(*why));
        snprintf(why->text, sizeof(why->text),
                 "no room for the default memory quota of a slice (its share of the GPU's "
                 "memory; set %s to ask less): %.180s",
                 FX_RES_GPU_MEMORY, err.msg);
        return FLEXPU_ENOFIT;
    }
    return 0;
}

/* GPUs hidden from the engine for one decision: each held by an allocation
 * of what is free of its compute (as an unhealthy GPU is fenced), so that
 * no pod asking a GPU is placed there. Given back before the model goes on. */
#define HIDE_MAX 64
struct hidden {
    int n;
    int64_t id[HIDE_MAX];
};

/* Hides GPU g of engine node `node`; false when there is no room to
 * remember it (the GPU stays as it was). */
static bool hide_gpu(struct fx_model *m, int node, int g, struct hidden *h)
{
    int free = flexpu_engine_gpu_free_milli(m->e, node, g);
    if (free <= 0)
        return true; /* nothing to place there anyway */
    if (h->n == HIDE_MAX)
        return false;
    struct flexpu_pod_req r = {.num_gpu = 1, .gpu_milli = free};
    struct flexpu_placement pl = {.node = node, .ngpu = 1, .gpu = {g}, .milli = {free}};
    struct flexpu_error err;
    if (flexpu_engine_assign(m->e, &r, &pl, &h->id[h->n], &err))
        return false;
    h->n++;
    return true;
}

static void unhide(struct fx_model *m, struct hidden *h)
{
    struct flexpu_error err;
    while (h->n > 0)
        flexpu_engine_release(m->e, h->id[--h->n], &err);
}

/* The placement's GPUs (bit i: pl->gpu[i]) where borrowers hold memory
 * that p's quota needs, the placement being taken in the engine (whose
 * free memory never counted the borrowers'): a whole GPU (no quota) needs
 * all of it. */
static uint32_t blocked_gpus(const struct fx_model *m, const struct node *n,
                             const struct flexpu_placement *pl)
{
    uint32_t bits = 0;
    for (int i = 0; n && m->nborrowers > 0 && i < pl->ngpu; i++) {
        int milli, count;
        int64_t bmem;
        borrowers_on(n, pl->gpu[i], &milli, &bmem, &count);
        if (count > 0 && (pl->gpu_mem_mib[i] <= 0 ||
                          flexpu_engine_gpu_free_mem(m->e, n->id, pl->gpu[i]) < bmem))
            bits |= 1u << i;
    }
    return bits;
}

static struct node *engine_node(struct fx_model *m, int id)
{
    const char *name = flexpu_engine_node_name(m->e, id);
    return name ? fx_strmap_get(&m->nodes, name) : NULL;
}

/* How many times a placement that borrowers block is decided again with
 * the GPUs they block hidden, before the pod waits for a reclaim: each
 * round is one decision, and only pods that met borrowers pay for it. */
#define AROUND_ROUNDS 4

/* p was placed (pl, taken as *id). Where borrowers hold memory its quota
 * needs on the GPUs the engine chose, rather than wait for their reclaim,
 * the decision is made again with the blocked GPUs hidden, round after
 * round: a GPU free now wins. 0: *pl, *id and *slice_mem are a placement
 * no borrower blocks (the first, or a new one). Otherwise the first placement is taken again, as it
 * was, for the pod to wait on (1), or could not be (FLEXPU_ENOFIT, *id 0). */
static int place_around(struct fx_model *m, struct pod *p, struct flexpu_placement *pl,
                        int64_t *id, int64_t *slice_mem, struct flexpu_noplace *why)
{
    const struct flexpu_placement first = *pl;
    const int64_t first_mem = *slice_mem;
    struct hidden h = {0};
    struct flexpu_error err;
    uint32_t blocked = blocked_gpus(m, engine_node(m, pl->node), pl);
    if (!blocked)
        return 0;
    int rc = 1;
    for (int round = 0; blocked && round < AROUND_ROUNDS; round++) {
        flexpu_engine_release(m->e, *id, &err);
        *id = 0;
        bool hid = true;
        for (int i = 0; i < pl->ngpu && hid; i++)
            if (blocked & (1u << i))
                hid = hide_gpu(m, pl->node, pl->gpu[i], &h);
        struct flexpu_noplace scratch;
        if (!hid || place_engine(m, p, pl, id, slice_mem, &scratch)) {
            *id = 0;
            break;
        }
        blocked = blocked_gpus(m, engine_node(m, pl->node), pl);
        if (!blocked)
            rc = 0;
    }
    unhide(m, &h);
    if (rc == 0)
        return 0;
    if (*id)
        flexpu_engine_release(m->e, *id, &err);
    *pl = first;
    *slice_mem = first_mem;
    struct flexpu_pod_req r;
    flexpu_engine_effective_req(m->e, &p->req, &r);
    if (flexpu_engine_assign(m->e, &r, pl, id, &err)) { /* cannot happen: it was taken */
        *id = 0;
        *slice_mem = 0;
        memset(why, 0, sizeof(*why));
        snprintf(why->text, sizeof(why->text), "%.300s", err.msg);
        return FLEXPU_ENOFIT;
    }
    return 1;
}

/* Places a pod (place_engine). Where the engine's choice needs memory
 * that borrowers hold, another GPU that takes the pod now is looked for
 * first (place_around); only when there is none does the pod wait for
 * the borrowers (owner_waits), or with `reclaim` false, the placement is
 * given back (FLEXPU_EBUSY, *id 0) and no borrower is reclaimed: nothing
 * takes the pod now. */
static int place_pod_as(struct fx_model *m, struct pod *p, struct flexpu_placement *pl,
                        int64_t *id, int64_t *slice_mem, struct flexpu_noplace *why, bool reclaim)
{
    int rc = place_engine(m, p, pl, id, slice_mem, why);
    if (rc || !p->spec.wants_gpu || m->nborrowers == 0)
        return rc;
    rc = place_around(m, p, pl, id, slice_mem, why);
    if (rc != 1)
        return rc;
    if (reclaim)
        return owner_waits(m, p, pl, id, slice_mem, why);
    struct flexpu_error err;
    flexpu_engine_release(m->e, *id, &err);
    *id = 0;
    *slice_mem = 0;
    memset(why, 0, sizeof(*why));
    snprintf(why->text, sizeof(why->text),
             "borrowers on its GPU(s) hold memory its quota needs (docs/KUBERNETES.md, "
             "\"Borrowing idle GPUs\")");
    return FLEXPU_EBUSY;
}

static int place_pod(struct fx_model *m, struct pod *p, struct flexpu_placement *pl, int64_t *id,
                     int64_t *slice_mem, struct flexpu_noplace *why)
{
    return place_pod_as(m, p, pl, id, slice_mem, why, true);
}

static void fill(struct fx_attempt *a, const struct pod *p, enum fx_outcome o)
{
    memset(a, 0, sizeof(*a));
    a->outcome = o;
    a->unscheduled_since_s = p->unsched_s;
    snprintf(a->ns, sizeof(a->ns), "%s", STR(p->ns));
    snprintf(a->name, sizeof(a->name), "%s", STR(p->name));
    snprintf(a->uid, sizeof(a->uid), "%s", p->uid);
}

/* Takes a decided placement as p's: the allocation it records, assumed,
 * listed on its node. */
static void assume(struct fx_model *m, struct pod *p, struct node *n,
                   const struct flexpu_placement *pl, int64_t id, int64_t slice_mem)
{
    p->gpus = p->noquota = 0;
    if (p->spec.wants_gpu) {
        struct fx_allocation al = {.ngpu = pl->ngpu};
        for (int i = 0; i < pl->ngpu; i++) {
            snprintf(al.gpus[i].uuid, sizeof(al.gpus[i].uuid), "%s",
                     n->inv.gpus[pl->gpu[i]].uuid);
            al.gpus[i].index = pl->gpu[i];
            al.gpus[i].cores = pl->milli[i] >= 10 ? pl->milli[i] / 10 : 0;
            al.gpus[i].mem = p->spec.gpu_mem ? p->spec.gpu_mem : slice_mem;
            p->gpus |= 1u << pl->gpu[i];
            if (al.gpus[i].mem <= 0)
                p->noquota |= 1u << pl->gpu[i]; /* a whole GPU: all its memory */
        }
        char *s = fx_allocation_format(&al);
        str_set(&p->allocation, s);
        free(s);
    }
    p->alloc = id;
    set_state(m, p, POD_ASSUMED);
    str_set(&p->node, n->name);
    str_set(&p->told, NULL);
    link_pod(m, n, p);
}

/* The bind of an assumed pod. */
static void bind_attempt(struct fx_attempt *a, const struct pod *p)
{
    fill(a, p, FX_BIND);
    snprintf(a->node, sizeof(a->node), "%s", STR(p->node));
    snprintf(a->allocation, sizeof(a->allocation), "%s", STR(p->allocation));
    if (p->spec.wants_gpu && p->spec.priority_capped) {
        /* Bound all the same, at the level its class allows; the event
         * tells the user why the annotation did not count. */
        snprintf(a->message, sizeof(a->message),
                 "%s: %s ignored: spec.priority %lld allows at most %s "
                 "(a PriorityClass of value %d or more allows high)",
                 FX_ANN_PRIORITY, fx_priority_name(p->spec.priority_asked),
                 (long long)p->spec.class_priority, fx_priority_name(p->spec.priority),
                 FX_PRIO_CLASS_HIGH);
    }
}

/* Whether node n (without GPUs) has `need` remote slots free: the kubelet
 * admits a pod there only for devices its agent registered (flexpu-node
 * --remote-slots), a remote pod holding one per GPU it asks (its
 * container is given that many devices of flexpu.io/gpu). */
static bool remote_slot_free(const struct node *n, int need)
{
    int used = 0;
    for (const struct pod *q = n->pods; q && used + need <= n->remote_slots; q = q->next)
        if (q->rnode)
            used += q->spec.num_gpu > 0 ? q->spec.num_gpu : 1;
    return used + need <= n->remote_slots;
}

/* How near node id is to GPU node gpu_node (engine ids): the index of the
 * first topology key whose label both nodes have with one value, not
 * empty, or m->remote_topo.n when none (or gpu_node is -1). An empty value
 * (rack "") names no place: nodes an admin left blank are not near each
 * other, and a blank rack must not beat a real zone. */
static int remote_nearness(const struct fx_model *m, int gpu_node, int id)
{
    const struct fx_remote_topology *t = &m->remote_topo;
    for (int k = 0; gpu_node >= 0 && k < t->n; k++) {
        const char *v = flexpu_engine_node_label(m->e, gpu_node, t->key[k]);
        const char *w = v && v[0] ? flexpu_engine_node_label(m->e, id, t->key[k]) : NULL;
        if (w && strcmp(v, w) == 0)
            return k;
    }
    return t->n;
}

/* The remote slots remote pod p holds: one per GPU it asks. */
static int remote_slots_of(const struct pod *p)
{
    return p->spec.num_gpu > 0 ? p->spec.num_gpu : 1;
}

/* Whether node n could take remote pod p, its remote slots aside: without
 * GPUs, in the engine, with room for its CPU and memory (*cpu: its free
 * CPU), its node filters (and taints) allowing it; with a rule
 * (flexpu.io/remote-topology-key), labelled with the key, not empty. */
static bool remote_cpu_room(struct fx_model *m, const struct pod *p, const struct node *n,
                            int64_t *cpu)
{
    if (n->id < 0 || n->inv.ngpu > 0)
        return false;
    *cpu = flexpu_engine_node_free_cpu(m->e, n->id);
    const char *v = p->rkey ? flexpu_engine_node_label(m->e, n->id, p->rkey) : NULL;
    return *cpu >= p->req.cpu_milli &&
           flexpu_engine_node_free_mem(m->e, n->id) >= p->req.mem_mib &&
           (!p->rkey || (v && v[0])) &&
           flexpu_engine_node_filter(m->e, n->id, p->filter, NULL, NULL) == -1;
}

/* Whether node n could take remote pod p: remote_cpu_room, and a remote
 * slot free for each GPU it asks. */
static bool remote_cpu_ok(struct fx_model *m, const struct pod *p, const struct node *n,
                          int64_t *cpu)
{
    return remote_slot_free(n, remote_slots_of(p)) && remote_cpu_room(m, p, n, cpu);
}

/* The node without GPUs where remote pod p would run, its slice on engine
 * node gpu_node (-1: not placed yet, any node will do): one that could
 * take it (remote_cpu_ok), in gpu_node's domain of its rule when it has one
 * (the same value of p->rkey); the nearest to gpu_node (remote_nearness:
 * the first topology key shared, *near receiving its index), then the one
 * with the most CPU free, then the first name. NULL: none. A walk over the
 * nodes, only for pods that allow a remote slice and fit no local one. */
static struct node *remote_cpu_node(struct fx_model *m, const struct pod *p, int gpu_node,
                                    int *near)
{
    struct node *best = NULL;
    int64_t best_cpu = -1, fc;
    int best_near = m->remote_topo.n + 1;
    const char *rv = p->rkey && gpu_node >= 0 ? flexpu_engine_node_label(m->e, gpu_node, p->rkey)
                                              : NULL;
    const char *k;
    void *v;
    for (size_t i = 0; fx_strmap_next(&m->nodes, &i, &k, &v);) {
        struct node *n = v;
        if (!remote_cpu_ok(m, p, n, &fc))
            continue;
        if (p->rkey && gpu_node >= 0 &&
            (!rv || strcmp(rv, flexpu_engine_node_label(m->e, n->id, p->rkey)) != 0))
            continue;
        int nr = remote_nearness(m, gpu_node, n->id);
        if (nr < best_near || (nr == best_near && fc > best_cpu) ||
            (nr == best_near && fc == best_cpu && strcmp(n->name, best->name) < 0)) {
            best = n;
            best_cpu = fc;
            best_near = nr;
        }
    }
    if (near)
        *near = best_near;
    return best;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Remote pod p's rule (flexpu.io/remote-topology-key) as the scope of its
 * slice: the GPU nodes whose value of p->rkey is shared by a node without
 * GPUs that could take p (remote_cpu_ok), as a filter with one required
 * term "p->rkey In (those values)" (terms of 65,535 values at most, ORed).
 * The engine then decides once over every such domain, as it would over
 * each in turn (gangs' scoped decisions, one domain each) keeping its own
 * best: the same GPU, one decision. A GPU node without the label, or with
 * it empty, is in no domain. *ndom: the domains (0: none, *out NULL).
 * 0 or FLEXPU_ENOMEM. */
static int remote_rule_scope(struct fx_model *m, const struct pod *p, struct flexpu_filter **out,
                             int *ndom)
{
    *out = NULL;
    *ndom = 0;
    const char **val = fx_malloc((m->nodes.len + 1) * sizeof(*val));
    if (!val)
        return FLEXPU_ENOMEM;
    int n = 0;
    int64_t fc;
    const char *k;
    void *v;
    for (size_t i = 0; fx_strmap_next(&m->nodes, &i, &k, &v);)
        if (remote_cpu_ok(m, p, v, &fc))
            val[n++] = flexpu_engine_node_label(m->e, ((struct node *)v)->id, p->rkey);
    qsort(val, (size_t)n, sizeof(*val), cmp_str);
    int u = 0;
    for (int i = 0; i < n; i++)
        if (u == 0 || strcmp(val[u - 1], val[i]) != 0)
            val[u++] = val[i];
    struct flexpu_filter *f = u ? flexpu_filter_new() : NULL;
    struct flexpu_error err;
    int rc = u && !f ? FLEXPU_ENOMEM : 0;
    for (int i = 0; !rc && i < u; i += UINT16_MAX) {
        int cnt = u - i < UINT16_MAX ? u - i : UINT16_MAX;
        rc = flexpu_filter_add_term(f, 0, &err);
        if (!rc)
            rc = flexpu_filter_add_match(f, false, p->rkey, FLEXPU_MATCH_IN, val + i, cnt, &err);
    }
    fx_free(val);
    if (rc) {
        flexpu_filter_free(f);
        return rc;
    }
    *out = f;
    *ndom = u;
    return 0;
}

/* The GPU node of remote pod p's slice passes its taints with p's
 * tolerations (docs/REMOTE.md, "A tainted GPU node"): a taint keeps off
 * the node what its owner did not let on, and a slice of its GPU is that
 * node's to give as a pod placed there would be, so a pod uses a GPU,
 * local or remote, only where it tolerates the node's taints. Its node
 * selector and affinity stay with the node it runs on. *scope (the rule's
 * domains, remote_rule_scope; NULL: none) gets the tolerations, or a
 * filter of them alone is made. 0, or FLEXPU_ENOMEM (*scope then freed). */
static int remote_slice_filter(const struct pod *p, struct flexpu_filter **scope)
{
    if (!p->filter)
        return 0; /* no tolerations: the engine's taints apply as to any pod */
    struct flexpu_filter *f = *scope ? *scope : flexpu_filter_new();
    struct flexpu_error err;
    if (f && !flexpu_filter_copy_tolerations(f, p->filter, &err)) {
        *scope = f;
        return 0;
    }
    flexpu_filter_free(f);
    *scope = NULL;
    return FLEXPU_ENOMEM;
}

/* A topology key as a message shows it: whole up to 80 characters, else
 * "..." and its last 77 (the name, which says what it is, is at the end;
 * a key may be 317 characters). */
static const char *key_shown(const char *key, const char **dots)
{
    size_t n = strlen(key);
    *dots = n > 80 ? "..." : "";
    return n > 80 ? key + n - 77 : key;
}

/* The end of a remote pod's binding message: which topology key its node
 * shares with its GPU node, or that none does (empty without keys); with
 * a rule (p->rkey), that both are in its domain, as the rule asked. */
static void remote_near_text(const struct fx_model *m, const struct pod *p, int gpu_node,
                             int near, char *buf, size_t len)
{
    const struct fx_remote_topology *t = &m->remote_topo;
    const char *dots, *key = key_shown(t->key[near < t->n ? near : 0], &dots);
    bool rule_said = false;
    if (near < t->n) {
        snprintf(buf, len, "; both in %s%.80s=%.63s", dots, key,
                 flexpu_engine_node_label(m->e, gpu_node, t->key[near]));
        rule_said = p->rkey && strcmp(p->rkey, t->key[near]) == 0;
    } else if (t->n > 0 && !p->rkey) {
        snprintf(buf, len, "; no node without GPUs for it shares a topology label with its "
                           "GPU node (%s%.80s%s)", dots, key, t->n > 1 ? ", ..." : "");
    } else {
        buf[0] = '\0';
    }
    size_t off = strlen(buf);
    if (!p->rkey || off >= len)
        return;
    if (rule_said) {
        snprintf(buf + off, len - off, " (%s)", FX_ANN_REMOTE_TOPOLOGY_KEY);
        return;
    }
    key = key_shown(p->rkey, &dots);
    snprintf(buf + off, len - off, "; both in %s%.80s=%.63s (%s)", dots, key,
             flexpu_engine_node_label(m->e, gpu_node, p->rkey), FX_ANN_REMOTE_TOPOLOGY_KEY);
}

/* why->text becomes `head` (w characters, as snprintf wrote it), then
 * the local reason it held, cut to fit. */
static void remote_wait_text(struct flexpu_noplace *why, const char *local, int w)
{
    if (w > 0 && (size_t)w < sizeof(why->text) - 1) {
        size_t n = strnlen(local, sizeof(why->text) - 1 - (size_t)w);
        memcpy(why->text + w, local, n);
        why->text[(size_t)w + n] = '\0';
    }
}

/* Why remote pod p with a rule gets no remote slice: no domain of its key
 * (ndom of them have a node without GPUs that could take it) has both
 * halves. Written over why->text, the local reason after it. */
static void remote_rule_wait(const struct pod *p, int ndom, struct flexpu_noplace *why)
{
    char local[sizeof(why->text)];
    memcpy(local, why->text, sizeof(local));
    const char *dots, *key = key_shown(p->rkey, &dots);
    int w = snprintf(why->text, sizeof(why->text),
                     "%s: no %s%.80s has both a free slice for it and a node without GPUs with "
                     "a remote slot and room for it (%d with such a node); no local slice fits: ",
                     FX_ANN_REMOTE_TOPOLOGY_KEY, dots, key, ndom);
    remote_wait_text(why, local, w);
}

/* Why remote pod p of several GPUs gets no remote slices: no GPU node has
 * them all (its slices are on one node, never spread). Written over
 * why->text, the local reason after it. */
static void remote_multi_wait(const struct pod *p, struct flexpu_noplace *why)
{
    char local[sizeof(why->text)];
    memcpy(local, why->text, sizeof(local));
    int w = snprintf(why->text, sizeof(why->text),
                     "%s: no GPU node can give it %d GPUs at once (a remote pod's slices are "
                     "all on one GPU node); no local slice fits: ",
                     FX_ANN_REMOTE, p->spec.num_gpu);
    remote_wait_text(why, local, w);
}

/* Why remote pod p waits where its slice was taken on GPU node `gpu_node`
 * but borrowers there hold memory its quota needs (remote_slice with
 * reclaim: owner_waits, which reclaims them): the pod is woken when they
 * are gone, as a local owner is. Written over why->text, the local reason
 * after it (both in its 320 bytes: the borrowers' own Reclaimed Events
 * point to docs/KUBERNETES.md); without it the Event named only the local
 * reason, which no reclaim changes. */
static void remote_borrowers_wait(const char *gpu_node, struct flexpu_noplace *why)
{
    char local[sizeof(why->text)];
    memcpy(local, why->text, sizeof(local));
    int w = snprintf(why->text, sizeof(why->text),
                     "%s: waits for the borrowers on its GPU(s) of GPU node %.100s to be "
                     "reclaimed (they hold memory its quota needs); no local slice fits: ",
                     FX_ANN_REMOTE, gpu_node ? gpu_node : "?");
    remote_wait_text(why, local, w);
}

/* Remote pod p's slice on a GPU node, within `scope` (the GPU nodes it
 * may use: remote_slice_filter, remote_rule_scope): placed and taken as a
 * local pod of its GPU shares is (place_pod_as: around borrowers, and
 * waiting for them only when `reclaim`), with no CPU or memory, which are
 * its node's without GPUs. The one decision of whether a slice for it is
 * free: remote() takes it, remote_slots_wait asks it. */
static int remote_slice(struct fx_model *m, struct pod *p, struct flexpu_filter *scope,
                        struct flexpu_placement *pl, int64_t *id, int64_t *slice_mem,
                        struct flexpu_noplace *why, bool reclaim)
{
    const struct flexpu_pod_req req = p->req;
    struct flexpu_filter *filter = p->filter;
    p->req.cpu_milli = 0;
    p->req.mem_mib = 0;
    p->filter = scope;
    int rc = place_pod_as(m, p, pl, id, slice_mem, why, reclaim);
    p->req = req;
    p->filter = filter;
    return rc;
}

/* Remote pod p (without a rule) has no node without GPUs to run on: when
 * that is only for want of remote slots (a node without GPUs has room for
 * it otherwise, and a slice for it is free on a GPU node: remote_slice,
 * the very placement remote() takes, its memory quota and the borrowers
 * in its way counted, here reclaiming none and given back at once, the
 * model's random state kept), why->text says so before the local reason:
 * the kubelet admits a remote pod only with a slot per GPU it asks
 * (flexpu-node --remote-slots), and without this the wait named only why
 * no local slice fits. */
static void remote_slots_wait(struct fx_model *m, struct pod *p, struct flexpu_noplace *why)
{
    int rooms = 0;
    int64_t fc;
    const char *k;
    void *v;
    for (size_t i = 0; fx_strmap_next(&m->nodes, &i, &k, &v);)
        rooms += remote_cpu_room(m, p, v, &fc);
    struct flexpu_filter *f = NULL;
    if (rooms == 0 || remote_slice_filter(p, &f))
        return;
    struct flexpu_rng rng = m->rng;
    struct flexpu_placement pl;
    struct flexpu_noplace gwhy;
    int64_t gid = 0, slice_mem = 0;
    int rc = remote_slice(m, p, f, &pl, &gid, &slice_mem, &gwhy, false);
    m->rng = rng;
    flexpu_filter_free(f);
    if (rc)
        return;
    struct flexpu_error err;
    flexpu_engine_release(m->e, gid, &err);
    char local[sizeof(why->text)];
    memcpy(local, why->text, sizeof(local));
    int need = remote_slots_of(p);
    int w = snprintf(why->text, sizeof(why->text),
                     "%s: no node without GPUs has %d remote slot%s free (%d with room for it "
                     "otherwise; a remote pod holds one per GPU); no local slice fits: ",
                     FX_ANN_REMOTE, need, need == 1 ? "" : "s", rooms);
    remote_wait_text(why, local, w);
}

/* p allows a remote slice (flexpu.io/remote: "allowed") and fits no local
 * one: its GPU share on whichever GPU the engine chooses (no CPU or memory
 * there, and not the pod's node selector or affinity: they are for the
 * node it runs on; the GPU node's taints with its tolerations,
 * remote_slice_filter), among the GPU nodes of its rule's domains when it
 * has one (remote_rule_scope), then the pod on the node without GPUs nearest to
 * it (remote_cpu_node), in that domain. Both accounted, the allocation
 * naming the GPU node; true when a is the bind. A pod with a rule that
 * gets none has why->text say so (remote_rule_wait). */
static bool remote(struct fx_model *m, struct pod *p, struct fx_attempt *a,
                   struct flexpu_noplace *why)
{
    if (!p->spec.remote_allowed || !p->spec.wants_gpu || p->gang)
        return false;
    /* No node without GPUs for it (in a domain of its rule): no GPU share
     * decided in vain. */
    struct flexpu_filter *scope = NULL;
    int ndom = 0;
    struct node *cn = NULL;
    if (p->rkey && remote_rule_scope(m, p, &scope, &ndom)) {
        FX_ERROR(COMP, "out of memory scoping a remote slice", "pod=%s/%s", STR(p->ns),
                 STR(p->name));
        return false;
    }
    if (!p->rkey)
        cn = remote_cpu_node(m, p, -1, NULL);
    if (!cn && !scope) {
        if (p->rkey)
            remote_rule_wait(p, ndom, why);
        else
            remote_slots_wait(m, p, why);
        return false;
    }
    if (remote_slice_filter(p, &scope)) {
        FX_ERROR(COMP, "out of memory filtering a remote slice", "pod=%s/%s", STR(p->ns),
                 STR(p->name));
        return false;
    }
    const struct flexpu_pod_req req = p->req;
    struct flexpu_placement gpl;
    struct flexpu_noplace gwhy;
    int64_t gid = 0, slice_mem = 0, cid = 0;
    int rc = remote_slice(m, p, scope, &gpl, &gid, &slice_mem, &gwhy, true);
    flexpu_filter_free(scope);
    if (rc == FLEXPU_EBUSY) {
        /* Taken where borrowers block it, and given back: they are being
         * reclaimed (owner_waits), whatever its rule or GPU count. */
        remote_borrowers_wait(flexpu_engine_node_name(m->e, gpl.node), why);
        return false;
    }
    if (rc) {
        if (p->rkey)
            remote_rule_wait(p, ndom, why);
        else if (p->spec.num_gpu > 1)
            remote_multi_wait(p, why);
        return false;
    }
    struct node *gn = engine_node(m, gpl.node);
    /* The share holds no CPU or memory, and the GPU node is no candidate:
     * a node was found above (in the GPU node's domain, with a rule), so
     * one is found again, the nearest. */
    int near = m->remote_topo.n;
    if (m->remote_topo.n > 0 || p->rkey)
        cn = remote_cpu_node(m, p, gpl.node, &near);
    struct flexpu_pod_req r = req;
    r.num_gpu = r.gpu_milli = 0;
    r.gpu_mem_mib = 0;
    r.model_mask = 0;
    struct flexpu_error err = {0};
    struct fx_allocation al;
    if (!gn || !cn) {
        flexpu_engine_release(m->e, gid, &err);
        return false;
    }
    struct flexpu_placement cpl = {.node = cn->id};
    if (flexpu_engine_assign(m->e, &r, &cpl, &cid, &err)) {
        flexpu_engine_release(m->e, gid, &err);
        return false;
    }
    char near_text[400];
    remote_near_text(m, p, gpl.node, near, near_text, sizeof(near_text));
    /* Assumed as a local slice of gn, then moved: listed on its own node,
     * the allocation naming gn. */
    assume(m, p, gn, &gpl, cid, slice_mem);
    unlink_pod(m, p);
    link_pod(m, cn, p);
    str_set(&p->node, cn->name);
    uint32_t whole = p->noquota; /* gn's GPUs, as assume booked them */
    p->gpus = p->noquota = 0;
    if (fx_allocation_parse(p->allocation, &al, &err) == 0) {
        snprintf(al.remote_node, sizeof(al.remote_node), "%.253s", gn->name);
        char *text = fx_allocation_format(&al);
        str_set(&p->allocation, text);
        free(text);
    }
    p->ralloc = gid;
    remote_set(m, p, gn->name);
    remote_whole(m, p, whole);
    m->remote_placed++;
    bind_attempt(a, p);
    /* A capped priority's warning (bind_attempt) stays the message, and
     * says where the pod runs after it: one event, the warning. */
    bool capped = a->message[0] != '\0';
    size_t off = strlen(a->message);
    char gpus[FLEXPU_MAX_GPUS * 4 + 8] = "";
    for (int i = 0, o = 0; i < gpl.ngpu && o >= 0 && (size_t)o < sizeof(gpus); i++)
        o += snprintf(gpus + o, sizeof(gpus) - (size_t)o, "%s%d", i ? "," : "", gpl.gpu[i]);
    int w = snprintf(a->message + off, sizeof(a->message) - off,
                     "%sno local slice fits: runs on node %.100s (no GPUs) with %s "
                     "of GPU%s %s of node %.100s (%s: \"%s\")",
                     capped ? "; " : "", cn->name,
                     gpl.ngpu > 1 ? "remote slices" : "a remote slice", gpl.ngpu > 1 ? "s" : "",
                     gpus, gn->name, FX_ANN_REMOTE, FX_REMOTE_ALLOWED);
    if (w > 0 && off + (size_t)w < sizeof(a->message))
        snprintf(a->message + off + w, sizeof(a->message) - off - (size_t)w, "%s", near_text);
    a->remote = !capped; /* its event: RemoteSlice, else the capped priority's warning */
    return true;
}

/* ---- inter-pod rules compiled to node requirements ----
 *
 * kube-scheduler's InterPodAffinity and PodTopologySpread filters,
 * evaluated over the pods the model knows on nodes (bound, assumed and
 * nominated: a pod just decided counts for the next one) and turned, per
 * decision, into requirements
 * on topology labels added to the pod's node filter: the engine, its
 * classes and its victim search stay as they are, and a node a rule
 * excludes is never chosen, nor preempted on. A pod on a node out of the
 * engine (not Ready, labels unreadable) is not counted: its domain is
 * unknown. */

/* One (topology key, value) that a rule names, and its weight for a
 * score; strings belong to the engine and live through the decision. */
struct dom {
    const char *key, *val;
    int64_t w;
};

struct domset {
    struct dom *d;
    int n, cap;
};

static bool dom_addw(struct domset *s, const char *key, const char *val, int64_t w)
{
    if (!val)
        return true; /* the node has no such label: in no domain */
    if (s->n == s->cap) {
        int cap = s->cap ? s->cap * 2 : 16;
        struct dom *d = fx_realloc(s->d, (size_t)cap * sizeof(*d));
        if (!d)
            return false;
        s->d = d;
        s->cap = cap;
    }
    s->d[s->n++] = (struct dom){key, val, w};
    return true;
}

static bool dom_add(struct domset *s, const char *key, const char *val)
{
    return dom_addw(s, key, val, 0);
}

static int dom_cmp(const void *a, const void *b)
{
    const struct dom *x = a, *y = b;
    int c = strcmp(x->key, y->key);
    return c ? c : strcmp(x->val, y->val);
}

/* Sorted, each (key, value) once. */
static void dom_unique(struct domset *s)
{
    if (s->n == 0)
        return;
    qsort(s->d, (size_t)s->n, sizeof(*s->d), dom_cmp);
    int u = 1;
    for (int i = 1; i < s->n; i++)
        if (dom_cmp(&s->d[u - 1], &s->d[i]) != 0)
            s->d[u++] = s->d[i];
    s->n = u;
}

/* Whether s holds key (sorted: dom_unique). */
static bool dom_has_key(const struct domset *s, const char *key)
{
    for (int i = 0; i < s->n; i++)
        if (strcmp(s->d[i].key, key) == 0)
            return true;
    return false;
}

/* The label of node n as the engine's filters see it (NULL: none, or
 * n out of the engine). */
static const char *node_topo(const struct fx_model *m, const struct node *n, const char *key)
{
    return n && n->id >= 0 ? flexpu_engine_node_label(m->e, n->id, key) : NULL;
}

/* Appends "; WHAT KEY in [v1 v2 ...]" to note. Values that do not fit are
 * counted, never cut ("[v1 v2 ... +37 more]"): room for that ending is kept
 * before each value. A clause whose head does not fit is said as "; ..."
 * (every clause leaves room for it), and the clauses after it are not. */
static void note_add(char *note, size_t len, const char *what, const char *key,
                     const struct dom *d, int n)
{
    static const char cut[] = "; ...";
    size_t off = strlen(note);
    if (off >= 3 && strcmp(note + off - 3, "...") == 0)
        return; /* a clause before was left out */
    size_t lim = len - (sizeof(cut) - 1); /* what this clause may fill */
    size_t reserve = (size_t)snprintf(NULL, 0, " ... +%d more]", n);
    const char *dots;
    const char *k = key_shown(key, &dots);
    int w = snprintf(note + off, len - off, "%s%s %s%s in [", off ? "; " : "", what, dots, k);
    if (w < 0 || off + (size_t)w + reserve >= lim) {
        snprintf(note + off, len - off, "%s", off ? cut : cut + 2);
        return;
    }
    off += (size_t)w;
    int i = 0;
    for (; i < n; i++) {
        const char *sep = i ? " " : "";
        size_t need = strlen(sep) + strnlen(d[i].val, 63) + (i + 1 < n ? reserve : 1);
        if (off + need >= lim)
            break;
        off += (size_t)snprintf(note + off, len - off, "%s%.63s", sep, d[i].val);
    }
    if (i < n)
        snprintf(note + off, len - off, "%s... +%d more]", i ? " " : "", n - i);
    else
        snprintf(note + off, len - off, "]");
}

/* For each key of s (sorted), one requirement: key NotIn (anti) or In its
 * values; "what" names the rule in note. 0 or an error. */
static int dom_require(struct flexpu_filter *f, const struct domset *s, bool in,
                       const char *what, char *note, size_t len, struct flexpu_error *err)
{
    for (int i = 0, j; i < s->n; i = j) {
        for (j = i; j < s->n && strcmp(s->d[j].key, s->d[i].key) == 0; j++)
            ;
        const char **vals = fx_malloc((size_t)(j - i) * sizeof(*vals));
        if (!vals)
            return flexpu_error_set(err, FLEXPU_ENOMEM, "out of memory compiling pod rules");
        for (int k = i; k < j; k++)
            vals[k - i] = s->d[k].val;
        int rc = 0;
        for (int k = 0; !rc && k < j - i; k += UINT16_MAX)
            rc = flexpu_filter_add_required(f, s->d[i].key,
                                            in ? FLEXPU_MATCH_IN : FLEXPU_MATCH_NOT_IN, vals + k,
                                            j - i - k < UINT16_MAX ? j - i - k : UINT16_MAX, err);
        fx_free(vals);
        if (rc)
            return rc;
        note_add(note, len, what, s->d[i].key, s->d + i, j - i);
    }
    return 0;
}

/* A requirement no node meets (key Exists and DoesNotExist). */
static int require_none(struct flexpu_filter *f, const char *key, struct flexpu_error *err)
{
    int rc = flexpu_filter_add_required(f, key, FLEXPU_MATCH_EXISTS, NULL, 0, err);
    return rc ? rc : flexpu_filter_add_required(f, key, FLEXPU_MATCH_DOES_NOT_EXIST, NULL, 0, err);
}

/* The domains p's own terms (pod affinity: aff, anti-affinity: anti) and
 * the anti-affinity of the pods on nodes (sym, its symmetric rule) name:
 * one walk over the pods on engine nodes for p's own terms, one over the
 * pods with anti-affinity for the symmetric rule. */
static bool rules_domains(struct fx_model *m, const struct pod *p, struct domset *aff,
                          struct domset *anti, struct domset *sym)
{
    const struct fx_pod_rules *r = p->rules;
    bool ok = true;
    const char *k;
    void *v;
    for (size_t i = 0; r && (r->naff || r->nanti) && fx_strmap_next(&m->nodes, &i, &k, &v);) {
        const struct node *n = v;
        if (n->id < 0 || !n->pods)
            continue;
        for (const struct pod *q = n->pods; q; q = q->next) {
            if (q == p)
                continue;
            if (r->naff && affinity_selects(r, p->ns, q))
                for (int t = 0; t < r->naff; t++)
                    ok &= dom_add(aff, r->aff[t].topo_key, node_topo(m, n, r->aff[t].topo_key));
            for (int t = 0; t < r->nanti; t++)
                if (fx_pod_term_matches(&r->anti[t], p->ns, q->ns, q->labels))
                    ok &= dom_add(anti, r->anti[t].topo_key,
                                  node_topo(m, n, r->anti[t].topo_key));
        }
    }
    for (const struct pod *q = m->acting; q; q = q->anext) {
        if (q == p || !q->on || !q->rules->nanti)
            continue;
        for (int t = 0; t < q->rules->nanti; t++)
            if (fx_pod_term_matches(&q->rules->anti[t], q->ns, p->ns, p->labels))
                ok &= dom_add(sym, q->rules->anti[t].topo_key,
                              node_topo(m, q->on, q->rules->anti[t].topo_key));
    }
    dom_unique(aff);
    dom_unique(anti);
    dom_unique(sym);
    return ok;
}

/* p's required pod affinity: every term's key on the node, and its value
 * among the domains holding a pod that every term selects (aff; as
 * kube-scheduler, a pod selected by one term of two counts for neither).
 * When no pod anywhere is selected and p matches all its own terms, any
 * node with the keys will do: the first of a group with affinity to
 * itself. */
static int affinity_require(const struct pod *p, struct flexpu_filter *f, const struct domset *aff,
                            char *note, size_t len, struct flexpu_error *err)
{
    const struct fx_pod_rules *r = p->rules;
    bool self = aff->n == 0;
    for (int t = 0; self && t < r->naff; t++)
        self = fx_pod_term_matches(&r->aff[t], p->ns, p->ns, p->labels);
    for (int t = 0; t < r->naff; t++) {
        const char *key = r->aff[t].topo_key;
        int rc = flexpu_filter_add_required(f, key, FLEXPU_MATCH_EXISTS, NULL, 0, err);
        if (!rc && !self && !dom_has_key(aff, key)) {
            rc = require_none(f, key, err);
            note_add(note, len, "pod affinity: no pod it selects, in any", key, NULL, 0);
        }
        if (rc)
            return rc;
    }
    return self ? 0 : dom_require(f, aff, true, "pod affinity: only", note, len, err);
}

/* One domain of a spread constraint and the pods there it counts; dom:
 * a node that makes it a domain lies in it. */
struct dcount {
    const char *val;
    int count;
    bool dom;
};

static int dcount_cmp(const void *a, const void *b)
{
    return strcmp(((const struct dcount *)a)->val, ((const struct dcount *)b)->val);
}

/* Whether node n counts for spread constraint c of pod p (kube-scheduler's
 * node inclusion policies): with nodeAffinityPolicy Honor, it passes p's
 * node selector and required affinity (aff: p's filter tolerating every
 * taint); with nodeTaintsPolicy Honor, p tolerates its taints (tol: p's
 * tolerations alone). */
static bool spread_includes(const struct fx_model *m, const struct node *n,
                            const struct fx_spread *c, const struct flexpu_filter *aff,
                            const struct flexpu_filter *tol)
{
    return (!c->honor_affinity || flexpu_engine_node_filter(m->e, n->id, aff, NULL, NULL) == -1) &&
           (!c->honor_taints || flexpu_engine_node_filter(m->e, n->id, tol, NULL, NULL) == -1);
}

/* Whether engine node n has the key of every spread constraint of p of
 * the kind soft (kube-scheduler reads the DoNotSchedule ones for its
 * filter, the ScheduleAnyway ones for its score). */
static bool spread_keys(const struct fx_model *m, const struct node *n,
                        const struct fx_pod_rules *r, bool soft)
{
    if (n->id < 0)
        return false;
    for (int j = 0; j < r->nspread; j++)
        if (r->spread[j].soft == soft && !node_topo(m, n, r->spread[j].topo_key))
            return false;
    return true;
}

/* The domains of p's spread constraint c, sorted, each once (*nd), with
 * the pods there it counts as kube-scheduler's countPodsMatchSelector
 * does: of p's namespace, matching c's selector, not terminating. Over
 * the engine nodes with the keys of p's constraints of c's kind; a node's
 * pods count when c's inclusion policies keep it, and it makes its value
 * a domain when it passes scope (NULL: when the policies keep it). NULL
 * when out of memory. */
static struct dcount *spread_counts(struct fx_model *m, const struct pod *p,
                                    const struct fx_spread *c, const struct flexpu_filter *aff,
                                    const struct flexpu_filter *tol,
                                    const struct flexpu_filter *scope, int *nd)
{
    struct dcount *d = fx_malloc((m->nodes.len + 1) * sizeof(*d));
    if (!d)
        return NULL;
    int n = 0;
    const char *k;
    void *v;
    for (size_t i = 0; fx_strmap_next(&m->nodes, &i, &k, &v);) {
        const struct node *nd_ = v;
        if (!spread_keys(m, nd_, p->rules, c->soft))
            continue;
        bool counts = spread_includes(m, nd_, c, aff, tol);
        bool dom = scope ? flexpu_engine_node_filter(m->e, nd_->id, scope, NULL, NULL) == -1
                         : counts;
        if (!counts && !dom)
            continue;
        int cnt = 0;
        for (const struct pod *q = counts ? nd_->pods : NULL; q; q = q->next)
            cnt += q != p && !q->terminating && strcmp(STR(q->ns), STR(p->ns)) == 0 &&
                   fx_label_sel_matches(&c->sel, q->labels);
        d[n++] = (struct dcount){node_topo(m, nd_, c->topo_key), cnt, dom};
    }
    qsort(d, (size_t)n, sizeof(*d), dcount_cmp);
    int u = 0;
    for (int i = 0; i < n; i++) {
        if (u > 0 && strcmp(d[u - 1].val, d[i].val) == 0) {
            d[u - 1].count += d[i].count;
            d[u - 1].dom |= d[i].dom;
        } else {
            d[u++] = d[i];
        }
    }
    int w = 0; /* values where no node makes a domain are none */
    for (int i = 0; i < u; i++)
        if (d[i].dom)
            d[w++] = d[i];
    *nd = w;
    return d;
}

/* Spread constraint ci of p (whenUnsatisfiable DoNotSchedule), as
 * kube-scheduler's PodTopologySpread filter: over the engine nodes that
 * have every such constraint's key and that its inclusion policies keep,
 * the pods it counts per domain (spread_counts); a domain is allowed when
 * its count, plus 1 if p matches the selector itself, minus the smallest
 * count (0 while fewer domains than minDomains exist) is at most maxSkew.
 * Adds key In the allowed domains to f. */
static int spread_one(struct fx_model *m, const struct pod *p, int ci, struct flexpu_filter *f,
                      const struct flexpu_filter *aff, const struct flexpu_filter *tol,
                      char *note, size_t len, struct flexpu_error *err)
{
    const struct fx_spread *c = &p->rules->spread[ci];
    int u = 0;
    struct dcount *d = spread_counts(m, p, c, aff, tol, NULL, &u);
    if (!d)
        return flexpu_error_set(err, FLEXPU_ENOMEM, "out of memory compiling spread constraints");
    int min = u > 0 ? d[0].count : 0;
    for (int i = 1; i < u; i++)
        min = d[i].count < min ? d[i].count : min;
    if (u < c->min_domains)
        min = 0;
    int self = fx_label_sel_matches(&c->sel, p->labels) ? 1 : 0;
    struct domset ok = {0};
    bool mem = true;
    for (int i = 0; i < u; i++)
        if (d[i].count + self - min <= c->max_skew)
            mem &= dom_add(&ok, c->topo_key, d[i].val);
    fx_free(d);
    int rc = mem ? 0 : flexpu_error_set(err, FLEXPU_ENOMEM, "out of memory compiling spread");
    if (!rc)
        rc = flexpu_filter_add_required(f, c->topo_key, FLEXPU_MATCH_EXISTS, NULL, 0, err);
    if (!rc && ok.n == 0) {
        rc = require_none(f, c->topo_key, err);
        note_add(note, len, "topology spread: no domain of", c->topo_key, NULL, 0);
    } else if (!rc) {
        rc = dom_require(f, &ok, true, "topology spread: only", note, len, err);
    }
    fx_free(ok.d);
    return rc;
}

/* ---- inter-pod preferences compiled to scored terms ----
 *
 * kube-scheduler's InterPodAffinity and PodTopologySpread scores are sums
 * over the topology domains a node lies in, so each domain's share is a
 * scored term key In [domain] of that weight on the pod's filter
 * (flexpu_filter_add_scored); the engine normalises them over the feasible
 * nodes as kube-scheduler does (place.c). Domains of equal weight share
 * one term. */

static int dom_wcmp(const void *a, const void *b)
{
    const struct dom *x = a, *y = b;
    int c = strcmp(x->key, y->key);
    if (c)
        return c;
    if (x->w != y->w)
        return x->w < y->w ? -1 : 1;
    return strcmp(x->val, y->val);
}

/* Each (key, value) once, its weights summed; those summing to 0 dropped
 * (they score nothing). */
static void dom_sum(struct domset *s)
{
    if (s->n == 0)
        return;
    qsort(s->d, (size_t)s->n, sizeof(*s->d), dom_cmp);
    int u = 0;
    for (int i = 0; i < s->n; i++) {
        if (u > 0 && dom_cmp(&s->d[u - 1], &s->d[i]) == 0)
            s->d[u - 1].w += s->d[i].w;
        else
            s->d[u++] = s->d[i];
    }
    s->n = 0;
    for (int i = 0; i < u; i++)
        if (s->d[i].w != 0)
            s->d[s->n++] = s->d[i];
}

static int clamp_int(int64_t w)
{
    return w > INT_MAX ? INT_MAX : w < -INT_MAX ? -INT_MAX : (int)w;
}

/* The requirement key Exists for the key of every ScheduleAnyway
 * constraint of r (NULL: none), on f's last term. */
static int soft_keys(struct flexpu_filter *f, const struct fx_pod_rules *r,
                     struct flexpu_error *err)
{
    int rc = 0;
    for (int i = 0; !rc && r && i < r->nspread; i++)
        if (r->spread[i].soft)
            rc = flexpu_filter_add_match(f, false, r->spread[i].topo_key, FLEXPU_MATCH_EXISTS,
                                         NULL, 0, err);
    return rc;
}

/* s's domains as scored terms of plugin `score` on f: one per key and
 * weight, key In [its values], each also requiring the keys of keys'
 * ScheduleAnyway constraints (soft_keys; NULL: none). 0 or an error. */
static int dom_score(struct flexpu_filter *f, struct domset *s, enum flexpu_score score,
                     const struct fx_pod_rules *keys, struct flexpu_error *err)
{
    if (s->n == 0)
        return 0;
    qsort(s->d, (size_t)s->n, sizeof(*s->d), dom_wcmp);
    const char **vals = fx_malloc((size_t)s->n * sizeof(*vals));
    if (!vals)
        return flexpu_error_set(err, FLEXPU_ENOMEM, "out of memory scoring pod rules");
    int rc = 0;
    for (int i = 0, j; !rc && i < s->n; i = j) {
        for (j = i; j < s->n && j - i < UINT16_MAX && strcmp(s->d[j].key, s->d[i].key) == 0 &&
                    s->d[j].w == s->d[i].w;
             j++)
            vals[j - i] = s->d[j].val;
        rc = flexpu_filter_add_scored(f, score, clamp_int(s->d[i].w), err);
        if (!rc)
            rc = soft_keys(f, keys, err);
        if (!rc)
            rc = flexpu_filter_add_match(f, false, s->d[i].key, FLEXPU_MATCH_IN, vals, j - i, err);
    }
    fx_free(vals);
    return rc;
}

/* InterPodAffinity's raw score for p per domain (s, summed), as
 * kube-scheduler's PreScore adds it up over the pods on nodes: the weight
 * of each preferred affinity term of p's selecting a pod there (minus,
 * for its anti-affinity), and for each pod there on the list at acting, the
 * weight of each of its preferred terms selecting p (anti-affinity: minus)
 * and 1 (hardPodAffinityWeight) for each of its required affinity terms
 * selecting p. Terminating pods count, as they do there. */
static bool podaff_domains(struct fx_model *m, const struct pod *p, struct domset *s)
{
    const struct fx_pod_rules *r = p->rules;
    bool ok = true;
    const char *k;
    void *v;
    for (size_t i = 0; r && (r->npaff || r->npanti) && fx_strmap_next(&m->nodes, &i, &k, &v);) {
        const struct node *n = v;
        for (const struct pod *q = n->id >= 0 ? n->pods : NULL; q; q = q->next) {
            for (int t = 0; q != p && t < r->npaff + r->npanti; t++) {
                const struct fx_pod_wterm *wt = t < r->npaff ? &r->paff[t] : &r->panti[t - r->npaff];
                if (fx_pod_term_matches(&wt->t, p->ns, q->ns, q->labels))
                    ok &= dom_addw(s, wt->t.topo_key, node_topo(m, n, wt->t.topo_key),
                                   t < r->npaff ? wt->weight : -wt->weight);
            }
        }
    }
    for (const struct pod *q = m->acting; q; q = q->anext) {
        if (q == p || !q->on)
            continue;
        const struct fx_pod_rules *qr = q->rules;
        for (int t = 0; t < qr->naff; t++)
            if (fx_pod_term_matches(&qr->aff[t], q->ns, p->ns, p->labels))
                ok &= dom_addw(s, qr->aff[t].topo_key, node_topo(m, q->on, qr->aff[t].topo_key),
                               1);
        for (int t = 0; t < qr->npaff + qr->npanti; t++) {
            const struct fx_pod_wterm *wt = t < qr->npaff ? &qr->paff[t] : &qr->panti[t - qr->npaff];
            if (fx_pod_term_matches(&wt->t, q->ns, p->ns, p->labels))
                ok &= dom_addw(s, wt->t.topo_key, node_topo(m, q->on, wt->t.topo_key),
                               t < qr->npaff ? wt->weight : -wt->weight);
        }
    }
    dom_sum(s);
    return ok;
}

/* p's ScheduleAnyway constraints as kube-scheduler's PodTopologySpread
 * score, in thousandths (place.c rounds the sum): a node with every such
 * constraint's key scores the sum of each constraint's maxSkew - 1 (one
 * term requiring the keys: a node without one is scored 0, as there) and,
 * per domain, count * ln(domains + 2) (a term per weight over the domains
 * holding pods it counts, also requiring the keys, so the terms grow with
 * the pods selected, not with the nodes). The domains are those of the nodes p may use (passing
 * f, its required rules included, with the keys); kube-scheduler takes the
 * nodes that passed all its filters, room included. */
static int spread_score(struct fx_model *m, const struct pod *p, struct flexpu_filter *f,
                        const struct flexpu_filter *aff, const struct flexpu_filter *tol,
                        struct flexpu_error *err)
{
    const struct fx_pod_rules *r = p->rules;
    struct flexpu_filter *scope = flexpu_filter_copy(f); /* f gains terms as it goes */
    int rc = scope ? 0 : flexpu_error_set(err, FLEXPU_ENOMEM, "out of memory scoring spread");
    int64_t base = 0;
    for (int i = 0; i < r->nspread; i++)
        base += r->spread[i].soft ? 1000 * ((int64_t)r->spread[i].max_skew - 1) : 0;
    if (!rc)
        rc = flexpu_filter_add_scored(f, FLEXPU_SCORE_SPREAD, clamp_int(base), err);
    if (!rc)
        rc = soft_keys(f, r, err);
    for (int i = 0; !rc && i < r->nspread; i++) {
        const struct fx_spread *c = &r->spread[i];
        if (!c->soft)
            continue;
        int u = 0;
        struct dcount *d = spread_counts(m, p, c, aff, tol, scope, &u);
        if (!d) {
            rc = flexpu_error_set(err, FLEXPU_ENOMEM, "out of memory scoring spread");
            break;
        }
        double tw = log((double)u + 2.0);
        struct domset s = {0};
        bool mem = true;
        for (int j = 0; j < u; j++) {
            double w = 1000.0 * (double)d[j].count * tw;
            if (d[j].count > 0)
                mem &= dom_addw(&s, c->topo_key, d[j].val, w > INT_MAX ? INT_MAX : llround(w));
        }
        fx_free(d);
        rc = mem ? dom_score(f, &s, FLEXPU_SCORE_SPREAD, r, err)
                 : flexpu_error_set(err, FLEXPU_ENOMEM, "out of memory scoring spread");
        fx_free(s.d);
    }
    flexpu_filter_free(scope);
    return rc;
}

/* p's spread constraints: the DoNotSchedule ones each ANDed into f
 * (spread_one), then the ScheduleAnyway ones scored (spread_score). */
static int spread_require(struct fx_model *m, const struct pod *p, struct flexpu_filter *f,
                          char *note, size_t len, struct flexpu_error *err)
{
    struct flexpu_filter *aff = flexpu_filter_copy(p->filter), *tol = flexpu_filter_new();
    int rc = aff && tol ? 0 : flexpu_error_set(err, FLEXPU_ENOMEM, "out of memory");
    if (!rc)
        rc = flexpu_filter_add_toleration(aff, "", FLEXPU_TOL_EXISTS, "", FLEXPU_TAINT_ANY, err);
    if (!rc)
        rc = flexpu_filter_copy_tolerations(tol, p->filter, err);
    for (int i = 0; !rc && i < p->rules->nspread; i++)
        if (!p->rules->spread[i].soft)
            rc = spread_one(m, p, i, f, aff, tol, note, len, err);
    if (!rc && p->rules->nhard < p->rules->nspread)
        rc = spread_score(m, p, f, aff, tol, err);
    flexpu_filter_free(aff);
    flexpu_filter_free(tol);
    return rc;
}

/* Pod p's decision filter: its own node filter and, when inter-pod rules
 * apply to it (its own, or those of pods on nodes that select it), their
 * requirements and scored terms; *out NULL when none apply (p->filter is
 * used as it is). note: which domains the rules exclude or allow, for the
 * message of a pod that fits nowhere. 0 or FLEXPU_ENOMEM. */
static int rules_filter(struct fx_model *m, const struct pod *p, struct flexpu_filter **out,
                        char *note, size_t len)
{
    *out = NULL;
    note[0] = '\0';
    if (!p->rules && !m->acting)
        return 0;
    struct domset aff = {0}, anti = {0}, sym = {0}, pa = {0};
    struct flexpu_error err = {0};
    int rc = rules_domains(m, p, &aff, &anti, &sym) && podaff_domains(m, p, &pa) ? 0
                                                                                 : FLEXPU_ENOMEM;
    bool apply = p->rules || sym.n > 0 || pa.n > 0;
    struct flexpu_filter *f = !rc && apply ? flexpu_filter_copy(p->filter) : NULL;
    if (!rc && apply && !f)
        rc = FLEXPU_ENOMEM;
    if (!rc && f)
        rc = dom_require(f, &anti, false, "pod anti-affinity: not", note, len, &err);
    if (!rc && f)
        rc = dom_require(f, &sym, false, "existing pods' anti-affinity: not", note, len, &err);
    if (!rc && f && p->rules && p->rules->naff)
        rc = affinity_require(p, f, &aff, note, len, &err);
    if (!rc && f && p->rules && p->rules->nspread)
        rc = spread_require(m, p, f, note, len, &err);
    if (!rc && f)
        rc = dom_score(f, &pa, FLEXPU_SCORE_POD_AFFINITY, NULL, &err);
    fx_free(pa.d);
    fx_free(aff.d);
    fx_free(anti.d);
    fx_free(sym.d);
    if (rc) {
        flexpu_filter_free(f);
        return rc;
    }
    *out = f;
    return 0;
}

/* Tells the pod `msg` once (FX_WAIT, waiting for `why`) and parks it: true
 * when a is filled. */
static bool park(struct fx_model *m, struct pod *p, const char *msg, enum fx_wait why,
                 struct fx_attempt *a)
{
    set_state(m, p, POD_WAITING);
    gang_untell(m, p);
    if (strcmp(msg, STR(p->told)) == 0)
        return false; /* said already */
    str_set(&p->told, msg);
    fill(a, p, FX_WAIT);
    a->wait = why;
    snprintf(a->message, sizeof(a->message), "%s", msg);
    return true;
}

static bool waiting_member(const struct pod *q)
{
    return (q->state == POD_QUEUED || q->state == POD_WAITING) && !q->noqueue &&
           gang_carries(q->gang, q);
}

/* A slice without flexpu.io/gpu-memory gets its share of the chosen GPU's
 * memory (place_pod): for a gang member placed without it, the allocation
 * is taken again with that memory. */
static int gang_slice_mem(struct fx_model *m, struct pod *p, struct flexpu_gang_member *gm,
                          int64_t *slice_mem)
{
    *slice_mem = 0;
    struct flexpu_pod_req r;
    flexpu_engine_effective_req(m->e, &p->req, &r);
    if (!p->spec.wants_gpu || p->spec.gpu_mem > 0 || r.num_gpu != 1 || r.gpu_milli >= 1000)
        return 0;
    const char *node = flexpu_engine_node_name(m->e, gm->place.node);
    struct node *n = node ? fx_strmap_get(&m->nodes, node) : NULL;
    if (!n || gm->place.gpu[0] >= n->inv.ngpu)
        return 0;
    int64_t mem = fx_default_slice_mem(p->spec.num_gpu, p->spec.cores, p->spec.gpu_mem,
                                       n->inv.gpus[gm->place.gpu[0]].mem_bytes);
    struct flexpu_error err = {0};
    flexpu_engine_release(m->e, gm->alloc_id, &err);
    gm->alloc_id = 0;
    gm->place.gpu_mem_mib[0] = mem / FX_MIB;
    int rc = flexpu_engine_assign(m->e, &r, &gm->place, &gm->alloc_id, &err);
    if (!rc)
        *slice_mem = mem;
    return rc;
}

/* A pod group placed (gm: members mem, on nodes, slice_mem) whose members
 * need memory that borrowers hold on the GPUs chosen: as place_around for
 * a pod, the group is placed again with the blocked GPUs hidden, round
 * after round. 0: the members hold a placement no borrower blocks (the
 * first, or a new one: gm, nodes and slice_mem say which). 1: the first
 * placement is held again, as it was, for the group to wait on. -1: it
 * could not be (cannot happen: it was held), nothing is held. */
static int gang_around(struct fx_model *m, struct pod **mem, struct flexpu_gang_member *gm, int n,
                       struct node **nodes, int64_t *slice_mem)
{
    bool any = false;
    for (int i = 0; i < n; i++)
        any |= blocked_gpus(m, nodes[i], &gm[i].place) != 0;
    if (!any)
        return 0;
    struct flexpu_placement *first = fx_calloc((size_t)n, sizeof(*first));
    int64_t *first_mem = fx_calloc((size_t)n, sizeof(*first_mem));
    uint32_t *blocked = fx_calloc((size_t)n, sizeof(*blocked));
    if (!first || !first_mem || !blocked) {
        fx_free(first);
        fx_free(first_mem);
        fx_free(blocked);
        return 1; /* the first placement, still held: wait for the reclaim */
    }
    for (int i = 0; i < n; i++) {
        first[i] = gm[i].place;
        first_mem[i] = slice_mem[i];
    }
    struct hidden h = {0};
    struct flexpu_error err;
    bool ok = false, held = true;
    for (int round = 0; round < AROUND_ROUNDS && !ok; round++) {
        for (int i = 0; i < n; i++)
            blocked[i] = blocked_gpus(m, nodes[i], &gm[i].place);
        for (int i = 0; i < n; i++) {
            flexpu_engine_release(m->e, gm[i].alloc_id, &err);
            gm[i].alloc_id = 0;
        }
        held = false;
        bool hid = true;
        for (int i = 0; i < n && hid; i++)
            for (int j = 0; j < gm[i].place.ngpu && hid; j++)
                if (blocked[i] & (1u << j))
                    hid = hide_gpu(m, gm[i].place.node, gm[i].place.gpu[j], &h);
        struct flexpu_gang_result res;
        struct flexpu_noplace why;
        if (!hid || flexpu_engine_place_gang(m->e, gm, n, &m->rng, &res, &why))
            break;
        held = true;
        bool fine = true;
        for (int i = 0; i < n && fine; i++)
            fine = (nodes[i] = engine_node(m, gm[i].place.node)) &&
                   !gang_slice_mem(m, mem[i], &gm[i], &slice_mem[i]);
        if (!fine)
            break;
        any = false;
        for (int i = 0; i < n; i++)
            any |= blocked_gpus(m, nodes[i], &gm[i].place) != 0;
        ok = !any;
    }
    unhide(m, &h);
    int rc = 0;
    if (!ok) {
        for (int i = 0; held && i < n; i++) {
            if (gm[i].alloc_id)
                flexpu_engine_release(m->e, gm[i].alloc_id, &err);
            gm[i].alloc_id = 0;
        }
        rc = 1;
        for (int i = 0; i < n; i++) {
            struct flexpu_pod_req r;
            flexpu_engine_effective_req(m->e, &mem[i]->req, &r);
            gm[i].place = first[i];
            slice_mem[i] = first_mem[i];
            nodes[i] = engine_node(m, first[i].node);
            if (rc == 1 && flexpu_engine_assign(m->e, &r, &gm[i].place, &gm[i].alloc_id, &err))
                rc = -1;
        }
        for (int i = 0; rc < 0 && i < n; i++) {
            if (gm[i].alloc_id)
                flexpu_engine_release(m->e, gm[i].alloc_id, &err);
            gm[i].alloc_id = 0;
        }
    }
    fx_free(first);
    fx_free(first_mem);
    fx_free(blocked);
    return rc;
}

/* Member p, to decide, carries other values than its group (a user edited
 * them on some members only): refused (FX_INVALID, told once per message)
 * naming the value it carries and a member carrying the group's. True
 * when a is filled. */
static bool gang_refuse(struct fx_model *m, struct pod *p, struct fx_attempt *a)
{
    struct gang *g = p->gang;
    const struct pod *c = g->members;
    while (c && (c == p || !gang_carries(g, c)))
        c = c->gnext;
    char me[300], other[300], why[400];
    snprintf(me, sizeof(me), "%s/%s", STR(p->ns), STR(p->name));
    snprintf(other, sizeof(other), "%s/%s", c ? STR(c->ns) : "?", c ? STR(c->name) : "?");
    struct flexpu_error err = {0};
    fx_pod_group_agree(&g->grp, other, &p->grp, me, &err);
    snprintf(why, sizeof(why), "%.300s (the group keeps its value while a member carries it)",
             err.msg);
    set_state(m, p, POD_INVALID);
    p->gang_refused = true;
    str_set(&p->problem, why);
    if (strcmp(STR(p->told), why) == 0)
        return false;
    fill(a, p, FX_INVALID);
    snprintf(a->message, sizeof(a->message), "%s", why);
    str_set(&p->told, why);
    return true;
}

/* p, a member of a pod group, is next. While the group has fewer placed
 * (assumed or bound) members than its minimum, the missing ones are
 * placed together, all or none (flexpu_engine_place_gang): p and the
 * group's other waiting members, oldest seen first. Returns 2 when the
 * group has its minimum (p is placed alone), 1 when a is filled (p's
 * bind, or why it waits), 0 when p waits and was told so already. The
 * members decided with p are returned by the next calls (the ready heap). */
static bool gang_preempt(struct fx_model *m, struct pod **mem, struct flexpu_gang_member *gm,
                         int n, struct fx_attempt *a);

static int gang_turn(struct fx_model *m, struct pod *p, struct fx_attempt *a)
{
    struct gang *g = p->gang;
    int placed = 0, nominated = 0, waiting = 1, gated = 0;
    for (struct pod *q = g->members; q; q = q->gnext) {
        if (q->state == POD_ASSUMED || q->state == POD_BOUND)
            placed++;
        else if (q->state == POD_NOMINATED)
            nominated++;
        else if (q->state == POD_GATED)
            gated++; /* not a member until its last gate goes (gang_wake) */
        else if (q != p && waiting_member(q))
            waiting++;
    }
    int need = g->grp.min_members - placed;
    if (need <= 0)
        return 2;
    char msg[400];
    if (nominated > 0) {
        /* Members hold their places while their victims go: p is not
         * short of members (no gang_short: no member need join), it is
         * woken as a pod that fits nowhere is, when capacity frees, and
         * the victims' going frees theirs as the members are bound. Even
         * with enough members waiting for a batch of their own: a second
         * batch nominated beside the first would have its members with no
         * victims of their own bound with the first (victim_gone binds
         * every such member of the group) before its victims are gone. */
        snprintf(msg, sizeof(msg),
                 "pod group %.120s waits for its members: %d of %d exist (%d placed, %d "
                 "nominated, waiting for their victims to be evicted), none more is placed "
                 "before they are bound",
                 g->key, waiting + placed + nominated, g->grp.min_members, placed, nominated);
        m->gang_waits++;
        return park(m, p, msg, FX_WAIT_ROOM, a) ? 1 : 0; /* as for victims of its own */
    }
    if (waiting < need) {
        char more[64] = "";
        if (gated)
            snprintf(more, sizeof(more), "; %d more with scheduling gates", gated);
        snprintf(msg, sizeof(msg),
                 "pod group %.120s waits for its members: %d of %d exist (%d placed%s), none is "
                 "placed before %d can be placed together",
                 g->key, waiting + placed, g->grp.min_members, placed, more,
                 g->grp.min_members);
        p->gang_short = true;
        m->gang_waits++;
        return park(m, p, msg, FX_WAIT_POD_GROUP, a) ? 1 : 0; /* no node brings members */
    }
    struct pod **mem = fx_calloc((size_t)need, sizeof(*mem));
    struct flexpu_gang_member *gm = fx_calloc((size_t)need, sizeof(*gm));
    if (!mem || !gm) {
        fx_free(mem);
        fx_free(gm);
        return park(m, p, "out of memory placing its pod group; retried when capacity frees",
                    FX_WAIT_ERROR, a);
    }
    int n = 0;
    mem[n++] = p;
    for (struct pod *q = g->members; q && n < need; q = q->gnext)
        if (q != p && waiting_member(q))
            mem[n++] = q;
    int64_t sum[FLEXPU_RES_COUNT_] = {0};
    for (int i = 0; i < n; i++) {
        int64_t amt[FLEXPU_RES_COUNT_];
        pod_amount(mem[i], amt);
        for (int r = 0; r < FLEXPU_RES_COUNT_; r++)
            sum[r] += amt[r];
        gm[i].req = mem[i]->req;
        gm[i].filter = mem[i]->filter;
    }
    char held[300] = "";
    int rc = FLEXPU_ENOFIT;
    struct flexpu_noplace why = {0};
    enum fx_wait wait = FX_WAIT_ROOM;
    if (p->qid >= 0 && !flexpu_queues_within_limit(m->queues, p->qid, sum, held, sizeof(held))) {
        snprintf(msg, sizeof(msg), "pod group %.120s: its %d missing members together exceed a limit: %.200s",
                 g->key, need, held);
        p->limited = true;
        wait = FX_WAIT_QUEUE_LIMIT;
    } else {
        struct flexpu_gang_result res;
        rc = flexpu_engine_place_gang(m->e, gm, n, &m->rng, &res, &why);
        if (rc == FLEXPU_ENOFIT && gang_preempt(m, mem, gm, n, a)) {
            fx_free(mem);
            fx_free(gm);
            return 1;
        }
        if (rc)
            snprintf(msg, sizeof(msg), "pod group %.120s: its %d missing members do not fit together: %.200s",
                     g->key, need, why.text);
    }
    int64_t *slice_mem = rc ? NULL : fx_calloc((size_t)n, sizeof(*slice_mem));
    struct node **nodes = rc ? NULL : fx_calloc((size_t)n, sizeof(*nodes));
    if (!rc && (!slice_mem || !nodes))
        rc = FLEXPU_ENOMEM;
    for (int i = 0; !rc && i < n; i++) {
        const char *name = flexpu_engine_node_name(m->e, gm[i].place.node);
        if (!name || !(nodes[i] = fx_strmap_get(&m->nodes, name)))
            rc = FLEXPU_ENOMEM; /* cannot happen: every engine node has a record */
    }
    for (int i = 0; !rc && i < n; i++) {
        if (gang_slice_mem(m, mem[i], &gm[i], &slice_mem[i])) {
            snprintf(msg, sizeof(msg),
                     "pod group %.120s: no room for a member's default slice memory (its share of "
                     "the GPU's memory; set %s to ask less)", g->key, FX_RES_GPU_MEMORY);
            rc = FLEXPU_ENOFIT;
        }
    }
    /* Borrowers holding memory a member's quota needs: GPUs free now are
     * looked for first (gang_around); else they are reclaimed at once, and
     * the group waits for them (as a single pod does: owner_waits). */
    if (!rc && m->nborrowers > 0 && gang_around(m, mem, gm, n, nodes, slice_mem) < 0) {
        snprintf(msg, sizeof(msg), "pod group %.120s: its placement could not be taken again",
                 g->key);
        rc = FLEXPU_ENOFIT;
    }
    bool conflict = false;
    for (int i = 0; !rc && i < n; i++)
        conflict |= borrow_conflict(m, mem[i], nodes[i], &gm[i].place, NULL);
    if (conflict) {
        snprintf(msg, sizeof(msg),
                 "pod group %.120s: waits for the borrowers on its GPUs to be evicted: they hold "
                 "memory its members' quotas need", g->key);
        rc = FLEXPU_EBUSY;
    }
    if (rc) {
        struct flexpu_error err;
        for (int i = 0; i < n; i++)
            if (gm[i].alloc_id)
                flexpu_engine_release(m->e, gm[i].alloc_id, &err);
        /* Every chosen member waits: any of them woken by freed capacity
         * tries the group again. */
        for (int i = 1; i < n; i++) {
            dequeue(m, mem[i]);
            set_state(m, mem[i], POD_WAITING);
            mem[i]->limited = p->limited;
        }
        if (rc == FLEXPU_ENOMEM) {
            snprintf(msg, sizeof(msg), "out of memory placing pod group %.120s", g->key);
            wait = FX_WAIT_ERROR;
        }
        /* The others tried with p wait for the same reason: each is told
         * (gang_told), as kube-scheduler tells every member it fails. */
        str_set(&g->said, msg);
        g->said_why = wait;
        for (int i = 1; i < n; i++)
            if (!mem[i]->gang_tell) {
                mem[i]->gang_tell = true;
                m->ngang_tell++;
            }
        fx_free(mem);
        fx_free(gm);
        fx_free(slice_mem);
        fx_free(nodes);
        m->gang_waits++;
        return park(m, p, msg, wait, a) ? 1 : 0;
    }
    for (int i = 0; i < n; i++) {
        dequeue(m, mem[i]);
        assume(m, mem[i], nodes[i], &gm[i].place, gm[i].alloc_id, slice_mem[i]);
        if (i == 0)
            continue;
        if (heap_push(&m->ready, mem[i])) {
            mem[i]->hq = READY;
        } else {
            FX_ERROR(COMP, "out of memory queueing a gang member's bind", "pod=%s/%s",
                     STR(mem[i]->ns), STR(mem[i]->name));
            give_back(m, mem[i]); /* placed again on its own */
        }
    }
    m->gangs_placed++;
    bind_attempt(a, p);
    fx_free(mem);
    fx_free(gm);
    fx_free(slice_mem);
    fx_free(nodes);
    return 1;
}

/* ---- preemption and reclaim ---- */

/* The reason a borrower is a victim of any pod that is not opportunistic
 * (docs/KUBERNETES.md, "A borrower yields its node's CPU and memory"). */
#define BORROWED_REASON "borrowed: runs on lent capacity"
/* The one pointer victim_reason returns for it: victims_collect tells a
 * borrower taken for lent capacity by it. */
static const char borrowed_reason[] = BORROWED_REASON;

/* Whether borrowers yield to p, which takes back lent capacity: any pod
 * that is not opportunistic, whatever the PriorityClasses. An opportunistic pod is a
 * borrower's peer (both agreed to go when others need the room): it evicts
 * one only as it would evict any pod. */
static bool yields_to(const struct pod *p)
{
    return !p->spec.opportunistic;
}

/* The preemptor borrower v leaves for when it goes because that pod takes
 * back lent capacity (victim_reason's borrowed_reason), else NULL; NULL
 * too once that pod no longer waits for it (gone, or bound elsewhere):
 * then nothing needs v's room, and a budget keeps v (borrower_delete). */
static struct pod *lent_preemptor(struct fx_model *m, const struct pod *v)
{
    struct pod *pr = v->preemptor ? fx_strmap_get(&m->pods, v->preemptor) : NULL;
    if (!v->borrowed || v->reclaimed || !pr || !yields_to(pr) || pr->state != POD_NOMINATED)
        return NULL;
    return pr;
}

/* Why v may be evicted for p, or NULL: v borrows and p may take back lent
 * capacity (yields_to), a lower PriorityClass, or p's queue taking back
 * what v's queue holds above its fair share. A pod whose PriorityClass
 * says never preempt only takes back lent capacity. */
static const char *victim_reason(struct fx_model *m, const struct pod *p, const int64_t amt[],
                                 const struct pod *v)
{
    /* A remote pod whose own node is out of the engine has no allocation
     * (account) but still its slice on its GPU node (ralloc): a victim
     * there, its own-node part freeing nothing while that node is out. */
    if (v == p || v->state != POD_BOUND || (!v->alloc && !v->ralloc) || v->evicting ||
        v->unsure || v->shielded == m->end_epoch + 1)
        return NULL;
    if (v->borrowed && yields_to(p))
        return borrowed_reason;
    if (p->never_preempt)
        return NULL;
    if (v->spec.class_priority < p->spec.class_priority)
        return "priority";
    if (m->reclaim == FX_RECLAIM_NEVER ||
        (m->reclaim == FX_RECLAIM_NOT_HIGHER && v->spec.class_priority > p->spec.class_priority))
        return NULL;
    if (p->qid >= 0 && v->qid >= 0 && v->qid != p->qid && v->qheld == 2 &&
        flexpu_queues_may_reclaim(m->queues, p->qid, amt, v->qid, v->qamt))
        return "reclaim";
    return NULL;
}

/* The candidates to evict for p (asking amt), with why each may go, and
 * the engine's view of them: allocation, work lost (GPU compute x age; a
 * CPU-only pod counts as a thousandth of a GPU, never zero so fewer wins),
 * priority for the reprieve, and a gang's members as one group. A remote
 * pod is two candidates of one group, one victim (docs/REMOTE.md,
 * "Preemption"): its allocation on its own node (CPU and memory) and its
 * slice on its GPU node (GPU shares, no CPU or memory), so it is a victim
 * where either is, as a local pod is where it runs; `of` maps the
 * candidates to the pods, and the search's evicted candidates become each
 * victim's pod once (victims_of). */
struct vset {
    struct pod **who;
    const char **why;
    struct flexpu_victim_cand *cands;
    size_t *of;
    int *evicted;
    size_t n, nc;
};

static void vset_free(struct vset *vs)
{
    fx_free(vs->who);
    fx_free(vs->why);
    fx_free(vs->cands);
    fx_free(vs->of);
    fx_free(vs->evicted);
    memset(vs, 0, sizeof(*vs));
}

/* The search's *n evicted candidates (ascending, a pod's adjacent) become
 * the indices in who of their pods, each once. */
static void victims_of(struct vset *vs, int *n)
{
    int k = 0;
    for (int i = 0; i < *n; i++) {
        int w = (int)vs->of[vs->evicted[i]];
        if (k == 0 || vs->evicted[k - 1] != w)
            vs->evicted[k++] = w;
    }
    *n = k;
}

/* Whether a queue other than `except` holds more than its fair share: with
 * none, reclaim has no victim (O(queues), before any walk over the pods). */
static bool some_queue_over(const struct fx_model *m, int except)
{
    int n = flexpu_queues_count(m->queues);
    for (int i = 0; i < n; i++)
        if (i != except && flexpu_queues_usage(m->queues, i) > 1.0)
            return true;
    return false;
}

/* Adds candidate c (why: r) to vs, whose arrays hold *cap; false when out
 * of memory (vs then freed). */
static bool vset_add(struct vset *vs, size_t *cap, struct pod *c, const char *r)
{
    if (vs->n == *cap) {
        *cap = *cap ? *cap * 2 : 64;
        struct pod **w = fx_realloc(vs->who, *cap * sizeof(*w));
        if (w)
            vs->who = w;
        const char **y = w ? fx_realloc(vs->why, *cap * sizeof(*y)) : NULL;
        if (y)
            vs->why = y;
        if (!w || !y) {
            vset_free(vs);
            return false;
        }
    }
    vs->who[vs->n] = c;
    vs->why[vs->n++] = r;
    return true;
}

/* A candidate and where the walk over every pod meets it. */
struct borrower_at {
    size_t at;
    struct pod *p;
    const char *why;
};

static int borrower_at_cmp(const void *a, const void *b)
{
    const struct borrower_at *x = a, *y = b;
    return x->at < y->at ? -1 : x->at > y->at;
}

/* The candidates when only lent capacity gives p a reason: the borrowers
 * (O(borrowers), not O(pods)), in the order the walk over every pod would
 * list them, so the engine's search and its ties see exactly what it
 * would. False when out of memory. */
static bool borrowers_collect(struct fx_model *m, const struct pod *p, const int64_t amt[],
                              struct vset *vs)
{
    struct borrower_at *b = fx_malloc((size_t)m->nborrowers * sizeof(*b));
    if (!b)
        return false;
    size_t n = 0, cap = 0;
    for (struct pod *c = m->borrowers; c && n < (size_t)m->nborrowers; c = c->bnext) {
        const char *r = victim_reason(m, p, amt, c);
        if (r)
            b[n++] = (struct borrower_at){fx_strmap_index(&m->pods, c->uid), c, r};
    }
    qsort(b, n, sizeof(*b), borrower_at_cmp);
    bool ok = true;
    for (size_t i = 0; i < n && ok; i++)
        ok = vset_add(vs, &cap, b[i].p, b[i].why);
    fx_free(b);
    return ok;
}

static bool victims_collect(struct fx_model *m, const struct pod *p, const int64_t amt[],
                            struct vset *vs)
{
    memset(vs, 0, sizeof(*vs));
    /* Cheap tests first: most pods that wait can preempt no one (a full
     * cluster fails many pods, each retried whenever capacity frees). A
     * pod whose PriorityClass says never preempt waits rather than evicts,
     * but a borrower is no peer of it: lent capacity it takes back. */
    bool by_borrow = m->nborrowers > 0 && yields_to(p);
    bool by_prio = !p->never_preempt && m->min_prio_set && p->spec.class_priority > m->min_prio;
    bool by_queue = !p->never_preempt && m->reclaim != FX_RECLAIM_NEVER && p->qid >= 0 &&
                    flexpu_queues_count(m->queues) > 1 &&
                    flexpu_queues_usage(m->queues, p->qid) < 1.0 && some_queue_over(m, p->qid);
    if (!by_borrow && !by_prio && !by_queue)
        return false;
    if (!by_prio && !by_queue) {
        /* Only borrowers can be victims: while any exists every waiting
         * pod gets here, and a walk over every pod of a full cluster
         * would cost each failed placement ~2 ms (bench/victim_cost.c). */
        if (!borrowers_collect(m, p, amt, vs))
            return false;
    } else {
        size_t cap = 0;
        const char *k;
        void *v;
        for (size_t i = 0; fx_strmap_next(&m->pods, &i, &k, &v);) {
            const char *r = victim_reason(m, p, amt, v);
            if (r && !vset_add(vs, &cap, v, r))
                return false;
        }
    }
    int64_t newest = 0;
    vs->nc = 0;
    for (size_t i = 0; i < vs->n; i++) {
        int64_t e = vs->who[i]->created_s;
        newest = e > newest ? e : newest;
        vs->nc += (vs->who[i]->alloc != 0) + (vs->who[i]->ralloc != 0);
    }
    if (vs->n == 0 || !(vs->cands = fx_calloc(vs->nc, sizeof(*vs->cands))) ||
        !(vs->of = fx_calloc(vs->nc, sizeof(*vs->of))) ||
        !(vs->evicted = fx_calloc(vs->nc, sizeof(*vs->evicted)))) {
        vset_free(vs);
        return false;
    }
    for (size_t i = 0, j = 0; i < vs->n; i++) {
        struct pod *c = vs->who[i];
        int64_t age = newest - c->created_s;
        double gpu = (double)c->req.num_gpu * c->req.gpu_milli;
        struct flexpu_victim_cand d;
        d.alloc_id = c->alloc;
        d.cost = (gpu > 0 ? gpu : 1.0) * (double)(age > 0 ? age + 1 : 1);
        /* A borrower taken for lent capacity is reprieved last, whatever
         * its class: it runs on what others lent, and an ordinary pod
         * (even of a lower class) is not to go in its place. */
        d.priority = vs->why[i] == borrowed_reason ? INT32_MIN
                     : (int)(c->spec.class_priority > INT32_MAX   ? INT32_MAX
                             : c->spec.class_priority < INT32_MIN ? INT32_MIN
                                                                  : c->spec.class_priority);
        d.group = c->gang ? (int64_t)(intptr_t)c->gang : 0;
        if (c->alloc) {
            vs->of[j] = i;
            vs->cands[j++] = d;
        }
        if (c->ralloc) {
            /* Its slice: one group with its allocation (the pod's own
             * address when not in a gang: no gang has it), the work lost
             * counted once; alone while its own node is out (no
             * allocation: victim_reason). */
            if (!d.group)
                d.group = (int64_t)(intptr_t)c;
            if (c->alloc)
                d.cost = 0;
            d.alloc_id = c->ralloc;
            vs->of[j] = i;
            vs->cands[j++] = d;
        }
    }
    return true;
}

/* The chosen victims' allocations released for the preemptor's place,
 * taken right after (so no other pod can be decided in between), each
 * marked as leaving for p; what p does not take of them is booked again by
 * victims_hold once it has its place. Undone by victims_restore. */
static void victims_take(struct fx_model *m, const struct pod *p, struct vset *vs, int n)
{
    for (int i = 0; i < n; i++) {
        struct pod *c = vs->who[vs->evicted[i]];
        if (!hold_take(m, c)) {
            FX_ERROR(COMP, "out of memory keeping a victim booked; released at once",
                     "pod=%s/%s", STR(c->ns), STR(c->name));
            release(m, c);
        }
        c->evicting = true;
        c->evicted = false;
        str_set(&c->preemptor, p->uid);
        queue_sync(m, c);
    }
}

/* The preemptor has its place: each victim keeps the rest of what it
 * held, booked until it is gone (struct vhold). */
static void victims_hold(struct fx_model *m, struct vset *vs, int n)
{
    for (int i = 0; i < n; i++) {
        struct pod *c = vs->who[vs->evicted[i]];
        if (c->hold)
            hold_book(m, c->hold);
    }
}

static void victims_restore(struct fx_model *m, struct vset *vs, int n)
{
    for (int i = 0; i < n; i++)
        victim_stays(m, vs->who[vs->evicted[i]]);
}

/* The victims' evictions queued, and p's nomination told in a. */
static void victims_queue(struct fx_model *m, struct pod *p, struct vset *vs, int n,
                          const char *where, struct fx_attempt *a)
{
    p->nvictims = n;
    m->preemptions++;
    fill(a, p, FX_NOMINATE);
    snprintf(a->node, sizeof(a->node), "%s", STR(p->node));
    /* One reason for all, or each victim's own: a borrower taken for lent
     * capacity beside a pod of a lower class (a gang's victims on several
     * nodes) is not reported as evicted for the other's reason. */
    const char *why = vs->why[vs->evicted[0]];
    for (int i = 1; i < n && why; i++)
        if (strcmp(vs->why[vs->evicted[i]], why) != 0)
            why = NULL;
    int len = why ? snprintf(a->message, sizeof(a->message), "preempting %d pod(s) %s (%s):", n,
                             where, why)
                  : snprintf(a->message, sizeof(a->message), "preempting %d pod(s) %s:", n,
                             where);
    for (int i = 0; i < n; i++) {
        struct pod *c = vs->who[vs->evicted[i]];
        if (!uidq_push(&m->evictq, c->uid))
            FX_ERROR(COMP, "out of memory queueing an eviction", "pod=%s/%s", STR(c->ns),
                     STR(c->name));
        m->evictions++;
        if (len > 0 && (size_t)len < sizeof(a->message))
            len += snprintf(a->message + len, sizeof(a->message) - (size_t)len,
                            why ? " %s/%s" : " %s/%s (%s)", STR(c->ns), STR(c->name),
                            vs->why[vs->evicted[i]]);
    }
}

/* A slice without flexpu.io/gpu-memory gets its share of the chosen GPU's
 * memory; its placement is given that memory before it is assigned. */
static int64_t slice_mem_for(struct fx_model *m, const struct pod *p, struct node *nd,
                             struct flexpu_placement *pl)
{
    struct flexpu_pod_req r;
    flexpu_engine_effective_req(m->e, &p->req, &r);
    if (!nd || !p->spec.wants_gpu || p->spec.gpu_mem > 0 || r.num_gpu != 1 ||
        r.gpu_milli >= 1000 || pl->gpu[0] >= nd->inv.ngpu)
        return 0;
    int64_t mem = fx_default_slice_mem(p->spec.num_gpu, p->spec.cores, p->spec.gpu_mem,
                                       nd->inv.gpus[pl->gpu[0]].mem_bytes);
    pl->gpu_mem_mib[0] = mem / FX_MIB;
    return mem;
}

static struct node *node_of(struct fx_model *m, int id)
{
    const char *name = flexpu_engine_node_name(m->e, id);
    return name ? fx_strmap_get(&m->nodes, name) : NULL;
}

/* p fits nowhere: finds the pods to evict so it fits (the fewest, then the
 * least GPU work lost; a gang's members together), and if there are,
 * releases them and holds p's place on their node at once (nothing else
 * can take it), queues their evictions and fills a with p's nomination.
 * Candidates: a lower PriorityClass, or, p's queue being below its fair
 * share, a queue that would stay at or above its own
 * (flexpu_queues_may_reclaim), or a borrower (victim_reason). False when
 * nothing can be done. */
static bool preempt(struct fx_model *m, struct pod *p, struct fx_attempt *a)
{
    int64_t amt[FLEXPU_RES_COUNT_];
    pod_amount(p, amt);
    struct vset vs;
    if (!victims_collect(m, p, amt, &vs))
        return false;
    struct flexpu_preemption pre;
    struct flexpu_noplace why;
    int rc = flexpu_engine_find_victims(m->e, &p->req, p->filter, vs.cands, (int)vs.nc, &pre,
                                        vs.evicted, &why);
    if (rc || pre.nevicted == 0) {
        vset_free(&vs);
        return false;
    }
    victims_of(&vs, &pre.nevicted);
    victims_take(m, p, &vs, pre.nevicted);
    struct flexpu_pod_req r;
    flexpu_engine_effective_req(m->e, &p->req, &r);
    struct node *nd = node_of(m, pre.place.node);
    int64_t slice_mem = slice_mem_for(m, p, nd, &pre.place);
    int64_t id = 0;
    struct flexpu_error err = {0};
    if (!nd || flexpu_engine_assign(m->e, &r, &pre.place, &id, &err)) {
        /* Cannot happen (the search said it fits): put the victims back. */
        FX_ERROR(COMP, "a preemption's place could not be taken; undone", "pod=%s/%s error=\"%s\"",
                 STR(p->ns), STR(p->name), err.msg);
        victims_restore(m, &vs, pre.nevicted);
        vset_free(&vs);
        return false;
    }
    victims_hold(m, &vs, pre.nevicted);
    assume(m, p, nd, &pre.place, id, slice_mem);
    set_state(m, p, POD_NOMINATED);
    char where[300];
    snprintf(where, sizeof(where), "on node %.200s", nd->name);
    victims_queue(m, p, &vs, pre.nevicted, where, a);
    /* Borrowers whose memory its quota needs go too, and it waits for them. */
    borrow_conflict(m, p, nd, &pre.place, p);
    vset_free(&vs);
    return true;
}

/* The same for the n members of p's group that gang_turn could not place
 * (mem[0] is p): the engine's gang victim search; every member holds its
 * place, nominated, and p counts the victims for all (victim_gone binds
 * them together). */
static bool gang_preempt(struct fx_model *m, struct pod **mem, struct flexpu_gang_member *gm,
                         int n, struct fx_attempt *a)
{
    struct pod *p = mem[0];
    int64_t sum[FLEXPU_RES_COUNT_] = {0};
    for (int i = 0; i < n; i++) {
        int64_t amt[FLEXPU_RES_COUNT_];
        pod_amount(mem[i], amt);
        for (int r = 0; r < FLEXPU_RES_COUNT_; r++)
            sum[r] += amt[r];
    }
    struct vset vs;
    if (!victims_collect(m, p, sum, &vs))
        return false;
    struct flexpu_gang_result res;
    struct flexpu_preemption pre;
    struct flexpu_noplace why;
    int rc = flexpu_engine_find_gang_victims(m->e, gm, n, vs.cands, (int)vs.nc, &res, &pre,
                                             vs.evicted, &why);
    if (rc || pre.nevicted == 0) {
        vset_free(&vs);
        return false;
    }
    victims_of(&vs, &pre.nevicted);
    victims_take(m, p, &vs, pre.nevicted);
    struct node **nodes = fx_calloc((size_t)n, sizeof(*nodes));
    int64_t *ids = fx_calloc((size_t)n, sizeof(*ids));
    int64_t *slice = fx_calloc((size_t)n, sizeof(*slice));
    int i = 0;
    struct flexpu_error err = {0};
    for (; nodes && ids && slice && i < n; i++) {
        struct flexpu_pod_req r;
        flexpu_engine_effective_req(m->e, &mem[i]->req, &r);
        nodes[i] = node_of(m, gm[i].place.node);
        slice[i] = slice_mem_for(m, mem[i], nodes[i], &gm[i].place);
        if (!nodes[i] || flexpu_engine_assign(m->e, &r, &gm[i].place, &ids[i], &err))
            break;
    }
    if (i < n) {
        FX_ERROR(COMP, "a gang preemption's places could not be taken; undone",
                 "pod=%s/%s error=\"%s\"", STR(p->ns), STR(p->name), err.msg);
        for (int j = 0; ids && j < i; j++)
            flexpu_engine_release(m->e, ids[j], &err);
        victims_restore(m, &vs, pre.nevicted);
        vset_free(&vs);
        fx_free(nodes);
        fx_free(ids);
        fx_free(slice);
        return false;
    }
    victims_hold(m, &vs, pre.nevicted);
    for (i = 0; i < n; i++) {
        dequeue(m, mem[i]);
        assume(m, mem[i], nodes[i], &gm[i].place, ids[i], slice[i]);
        set_state(m, mem[i], POD_NOMINATED);
        mem[i]->nvictims = 0;
    }
    char where[300];
    snprintf(where, sizeof(where), "for pod group %.120s (%d members, placed by %s)",
             p->gang->key, n, flexpu_gang_level_name(res.level));
    victims_queue(m, p, &vs, pre.nevicted, where, a);
    /* Borrowers whose memory a member needs go too; p counts them. */
    for (i = 0; i < n; i++)
        borrow_conflict(m, mem[i], nodes[i], &gm[i].place, p);
    vset_free(&vs);
    fx_free(nodes);
    fx_free(ids);
    fx_free(slice);
    return true;
}

/* The next pod whose nomination ended (nomination_drop), as an
 * FX_UNNOMINATE attempt: one gone, bound, or nominated again since has
 * nothing to clear. */
static bool next_unnomination(struct fx_model *m, struct fx_attempt *a)
{
    while (m->unnomq.n) {
        char *uid = uidq_take(&m->unnomq, 0);
        struct pod *p = fx_strmap_get(&m->pods, uid);
        fx_free(uid);
        if (!p || p->state == POD_BOUND || p->state == POD_ASSUMED || p->state == POD_NOMINATED)
            continue;
        fill(a, p, FX_UNNOMINATE);
        snprintf(a->message, sizeof(a->message),
                 "the place held for it while its victims go was given back: it is decided "
                 "again");
        return true;
    }
    return false;
}

/* The next victim to evict, as an FX_EVICT attempt. */
static bool next_eviction(struct fx_model *m, struct fx_attempt *a)
{
    while (m->evictq.n) {
        char *uid = uidq_take(&m->evictq, 0);
        struct pod *v = fx_strmap_get(&m->pods, uid);
        fx_free(uid);
        if (!v || !v->evicting)
            continue; /* gone already, or undone */
        struct pod *pr = v->preemptor ? fx_strmap_get(&m->pods, v->preemptor) : NULL;
        fill(a, v, FX_EVICT);
        snprintf(a->node, sizeof(a->node), "%s", STR(v->node));
        if (lent_preemptor(m, v))
            snprintf(a->message, sizeof(a->message),
                     "evicted for %s/%s (" BORROWED_REASON "): this pod borrows a GPU (%s) "
                     "and the node's CPU and memory it holds are needed by a pod that does "
                     "not borrow",
                     STR(pr->ns), STR(pr->name), FX_ANN_OPPORTUNISTIC);
        else if (v->spec.class_priority < (pr ? pr->spec.class_priority : INT64_MIN))
            snprintf(a->message, sizeof(a->message),
                     "preempted by %s/%s (priority %lld over this pod's %lld)",
                     pr ? STR(pr->ns) : "?", pr ? STR(pr->name) : "?",
                     (long long)(pr ? pr->spec.class_priority : 0),
                     (long long)v->spec.class_priority);
        else
            snprintf(a->message, sizeof(a->message),
                     "reclaimed by %s/%s: its queue is below its fair share and this pod's "
                     "queue above its own",
                     pr ? STR(pr->ns) : "?", pr ? STR(pr->name) : "?");
        return true;
    }
    return false;
}

void fx_model_set_reclaim(struct fx_model *m, enum fx_reclaim mode)
{
    m->reclaim = mode;
}

void fx_model_set_borrow_mem(struct fx_model *m, enum fx_borrow_mem mode)
{
    m->borrow_mem = mode;
}

void fx_model_set_remote_topology(struct fx_model *m, const struct fx_remote_topology *keys)
{
    m->remote_topo = *keys;
}

int fx_reclaim_parse(const char *s, enum fx_reclaim *mode)
{
    static const char *const names[] = {"any", "not-higher-priority", "never"};
    for (int i = 0; i < 3; i++)
        if (s && strcmp(s, names[i]) == 0) {
            *mode = (enum fx_reclaim)i;
            return 0;
        }
    return -1;
}

static bool borrower_delete(struct fx_model *m, struct pod *b, const struct pod *pr);
static void reclaim_backoff(struct fx_model *m, struct pod *b);

/* Whether q is preemptor pr, or a member of its group nominated with it
 * (one with victims of its own waits for those), still nominated. */
static bool nominated_with(const struct pod *q, const struct pod *pr)
{
    return q->state == POD_NOMINATED && (q == pr || q->nvictims == 0);
}

static bool evict_done(struct fx_model *m, const char *uid, int rc)
{
    struct pod *v = fx_strmap_get(&m->pods, uid);
    if (!v || !v->evicting)
        return false;
    if (rc == 0 || rc == FLEXPU_ENOENT) {
        v->evicted = true; /* the watch shows it gone */
        return false;
    }
    /* A borrower goes for those it borrows from: its GPU's owners (a
     * reclaim) or a pod that takes back its node's CPU and memory. */
    const struct pod *lent = v->reclaimed ? NULL : lent_preemptor(m, v);
    if ((v->reclaimed || lent) && rc == FLEXPU_EBUSY && !v->reclaim_delete &&
        borrower_delete(m, v, lent))
        return true; /* still leaving: deleted instead */
    v->reclaim_delete = false;
    if (v->reclaimed)
        reclaim_backoff(m, v);
    if (v->reclaimed && v->preemptor) {
        /* A borrower a preemptor waits for: the preemption is undone as
         * for any victim of it (below). */
        v->reclaimed = false;
        m->reclaims_refused++;
    } else if (v->reclaimed) {
        /* A borrower the API server keeps (the delete refused too, or the
         * server failing): it stays, and is reclaimed again after its
         * back-off if its owners still need it. */
        m->reclaims_refused++;
        v->reclaimed = false;
        m->reclaim_check = true;
        victim_stays(m, v);
        return false;
    }
    m->evictions_refused++;
    /* Undo: the preemptor's place back, then every victim of it whose
     * eviction was not accepted keeps its own (O(pods): rare). */
    struct pod *pr = v->preemptor ? fx_strmap_get(&m->pods, v->preemptor) : NULL;
    char pre_uid[64] = "";
    snprintf(pre_uid, sizeof(pre_uid), "%s", STR(v->preemptor));
    /* The preemptor, and for a gang every member nominated with it, release
     * their places before any victim stays, and give them back after: the
     * victims still leaving for them then (accepted) go on for no one
     * (nomination_drop). */
    for (struct pod *q = pr && pr->gang ? pr->gang->members : pr; q;
         q = pr->gang ? q->gnext : NULL)
        if (nominated_with(q, pr))
            release(m, q);
    v->shielded = m->end_epoch + 1;
    const char *k;
    void *val;
    for (size_t i = 0; fx_strmap_next(&m->pods, &i, &k, &val);) {
        struct pod *c = val;
        if (!c->evicting || c->evicted || strcmp(STR(c->preemptor), pre_uid) != 0)
            continue;
        c->reclaimed = false; /* a borrower it waited for stays too */
        c->reclaim_delete = false; /* its delete, if not sent yet, is not */
        victim_stays(m, c);
    }
    for (struct pod *q = pr && pr->gang ? pr->gang->members : pr; q;
         q = pr->gang ? q->gnext : NULL)
        if (nominated_with(q, pr))
            nomination_drop(m, q);
    return false;
}

bool fx_model_evict_done(struct fx_model *m, const char *uid, int rc)
{
    bool deleting = evict_done(m, uid, rc);
    holds_refresh(m); /* the victims' holds exact between events too */
    return deleting;
}

/* ---- borrowing idle GPUs (docs/KUBERNETES.md, "Borrowing idle GPUs") ---- */

void fx_model_set_clock(struct fx_model *m, int64_t now_s)
{
    m->now_s = now_s;
}

/* Whether p may borrow: it opted in, asks one GPU as a slice (whole GPUs
 * have no memory quota to keep it within), and is no gang's member. */
static bool may_borrow(const struct fx_model *m, const struct pod *p)
{
    if (!p->spec.opportunistic || !p->spec.wants_gpu || p->gang || p->spec.num_gpu != 1 ||
        p->spec.cores <= 0 || p->spec.cores >= 100)
        return false;
    struct flexpu_pod_req r;
    flexpu_engine_effective_req(m->e, &p->req, &r);
    return r.num_gpu == 1 && r.gpu_milli < 1000;
}

/* Whether GPU model `model` is among "A100|H100" (empty: any). */
static bool model_ok(const char *allowed, const char *model)
{
    if (!allowed[0])
        return true;
    size_t len = strlen(model);
    for (const char *t = allowed; *t;) {
        t += strspn(t, " ,|");
        size_t n = strcspn(t, " ,|");
        if (n == len && strncmp(t, model, n) == 0)
            return true;
        t += n;
    }
    return false;
}

/* The memory quota p would have on GPU g of n (bytes): its gpu-memory, or
 * the default share of that GPU's memory. */
static int64_t borrow_mem(const struct pod *p, const struct node *n, int g)
{
    return p->spec.gpu_mem ? p->spec.gpu_mem
                           : fx_default_slice_mem(1, p->spec.cores, 0, n->inv.gpus[g].mem_bytes);
}

/* Whether p may borrow GPU g of n now: measured fresh, predicted idle
 * enough beside the borrowers there (fx_watch_admits), no owner without a
 * memory quota, and p's quota within the memory no slice reserved (the
 * engine's free memory, which counts every owner's quota) less what the
 * borrowers there hold. *pred and *milli: the owners' prediction and the
 * borrowers' shares, to rank GPUs. */
static bool borrow_gpu_ok(struct fx_model *m, const struct pod *p, struct node *n, int g,
                          int *pred, int *milli)
{
    const struct fx_gpu_inv *gi = &n->inv.gpus[g];
    struct fx_gpu_use use;
    /* The cheap tests first (the watch alone), the walk over the node's
     * pods last. */
    int64_t want = borrow_mem(p, n, g);
    bool light = m->borrow_mem == FX_BORROW_MEM_IDLE &&
                 fx_borrow_light(want, p->spec.cores, gi->mem_bytes);
    int need = fx_borrow_fit_milli(light, p->spec.cores);
    if (g >= n->nwatch || !gi->healthy || !fx_watch_admits(&n->watch[g], m->now_s, 0, need) ||
        !model_ok(p->spec.model, gi->model) || !fx_model_gpu_use(m, n->name, g, m->now_s, &use))
        return false;
    int64_t bmem;
    borrowers_on(n, g, milli, &bmem, NULL);
    if (!fx_watch_admits(&n->watch[g], m->now_s, *milli, need))
        return false;
    for (const struct pod *o = n->pods; o; o = o->next)
        if (!o->borrowed && (o->noquota & (1u << g)))
            return false; /* a whole GPU: all its memory is its owner's */
    if (n->rwhole[g] > 0)
        return false; /* the same, a remote slice's (its pod on another node) */
    /* Memory no slice reserved; a light borrower with --borrow-mem idle
     * also what the owners reserved and do not use (borrow.h). */
    int64_t reserved = gi->mem_bytes - flexpu_engine_gpu_free_mem(m->e, n->id, g) * FX_MIB;
    int64_t room = fx_borrow_mem_room(gi->mem_bytes, reserved, n->use_owner_mem[g], light);
    if (want <= 0 || room - bmem * FX_MIB < want)
        return false;
    *pred = fx_watch_predict(&n->watch[g], m->now_s);
    return true;
}

/* p fits nowhere: places it as a borrower on the GPU whose owners are
 * predicted least busy (with the borrowers there), if any admits it. The
 * engine books only its node's CPU and memory. */
static bool borrow(struct fx_model *m, struct pod *p, struct fx_attempt *a)
{
    if (m->now_s <= 0 || !may_borrow(m, p))
        return false;
    /* A look over every GPU of the cluster: at most once per
     * FX_BORROW_RETRY_S per pod, however often capacity frees. */
    if (p->borrow_try_s && m->now_s - p->borrow_try_s < FX_BORROW_RETRY_S)
        return false;
    p->borrow_try_s = m->now_s;
    struct node *best = NULL;
    int bg = -1, bscore = 0, bpred = 0, bmilli = 0;
    const char *k;
    void *v;
    for (size_t i = 0; fx_strmap_next(&m->nodes, &i, &k, &v);) {
        struct node *n = v;
        if (!n->seen || n->id < 0 || n->cordoned || !n->watch ||
            flexpu_engine_node_filter(m->e, n->id, p->filter, NULL, NULL) != -1 ||
            flexpu_engine_node_free_cpu(m->e, n->id) < p->req.cpu_milli ||
            flexpu_engine_node_free_mem(m->e, n->id) < p->req.mem_mib)
            continue;
        for (int g = 0; g < n->inv.ngpu; g++) {
            int pred, milli;
            if (!borrow_gpu_ok(m, p, n, g, &pred, &milli))
                continue;
            int score = pred + milli;
            if (!best || score < bscore ||
                (score == bscore && strcmp(n->name, best->name) < 0)) {
                best = n;
                bg = g;
                bscore = score;
                bpred = pred;
                bmilli = milli;
            }
        }
    }
    if (!best)
        return false;
    struct flexpu_pod_req r = {.cpu_milli = p->req.cpu_milli, .mem_mib = p->req.mem_mib};
    struct flexpu_placement pl = {.node = best->id};
    int64_t id = 0;
    struct flexpu_error err = {0};
    struct fx_allocation al = {.ngpu = 1, .borrowed = true};
    snprintf(al.gpus[0].uuid, sizeof(al.gpus[0].uuid), "%s", best->inv.gpus[bg].uuid);
    al.gpus[0].index = bg;
    al.gpus[0].cores = p->spec.cores;
    al.gpus[0].mem = borrow_mem(p, best, bg);
    /* The node agent checks its memory by the same rule (borrow_rule.h). */
    al.borrow_idle = m->borrow_mem == FX_BORROW_MEM_IDLE &&
                     fx_borrow_light(al.gpus[0].mem, p->spec.cores,
                                     best->inv.gpus[bg].mem_bytes);
    char *text = fx_allocation_format(&al);
    if (!text || flexpu_engine_assign(m->e, &r, &pl, &id, &err)) {
        free(text);
        FX_WARN(COMP, "a borrower's place could not be taken", "pod=%s/%s node=%s error=\"%s\"",
                STR(p->ns), STR(p->name), best->name, text ? err.msg : "out of memory");
        return false;
    }
    str_set(&p->allocation, text);
    free(text);
    p->alloc = id;
    p->gpus = p->noquota = 0;
    p->bgpu = bg;
    p->bcores = p->spec.cores;
    p->bmem_mib = (al.gpus[0].mem + FX_MIB - 1) / FX_MIB;
    borrow_set(m, p, true);
    set_state(m, p, POD_ASSUMED);
    str_set(&p->node, best->name);
    str_set(&p->told, NULL);
    link_pod(m, best, p);
    m->borrows++;
    bind_attempt(a, p);
    a->borrowed = true;
    snprintf(a->message, sizeof(a->message),
             "borrows GPU %d (%.48s) of node %.63s, allocated to others but measured idle: "
             "its owners are predicted to use %d/1000 and borrowers hold %d/1000; runs at "
             "priority low, evicted (Reclaimed) when the owners need it",
             bg, best->inv.gpus[bg].uuid, best->name, bpred, bmilli);
    return true;
}

static bool reclaimq_push(struct fx_model *m, const char *uid, const char *msg)
{
    if (m->nreclaimq == m->capreclaimq) {
        size_t cap = m->capreclaimq ? m->capreclaimq * 2 : 8;
        struct reclaim_item *q = fx_realloc(m->reclaimq, cap * sizeof(*q));
        if (!q)
            return false;
        m->reclaimq = q;
        m->capreclaimq = cap;
    }
    struct reclaim_item *it = &m->reclaimq[m->nreclaimq++];
    snprintf(it->uid, sizeof(it->uid), "%s", uid);
    snprintf(it->msg, sizeof(it->msg), "%s", msg);
    return true;
}

/* Borrower b is to go: marked leaving (its memory still counts on its GPU
 * until it is gone), and its eviction queued with msg for its event. Its
 * node's CPU and memory stay booked until it is gone too, as a victim's
 * (struct vhold): nothing takes their place, so its hold is whole, and it
 * ends as a victim's does (release, victim_stays). */
static void reclaim_take(struct fx_model *m, struct pod *b, const char *msg)
{
    if (!reclaimq_push(m, b->uid, msg)) {
        FX_ERROR(COMP, "out of memory queueing a reclaim", "pod=%s/%s", STR(b->ns),
                 STR(b->name));
        return;
    }
    if (b->alloc && hold_take(m, b))
        hold_book(m, b->hold);
    else
        release(m, b); /* not in the engine, or out of memory: nothing to keep */
    b->evicting = true;
    b->evicted = false;
    b->reclaimed = true;
    b->reclaim_delete = false;
    queue_sync(m, b);
    m->reclaims++;
}

/* A PodDisruptionBudget refused the eviction of borrower b, which goes
 * for those it borrows from: its GPU's owners (a reclaim), or pr (not
 * NULL), which takes back the node's CPU and memory b holds
 * (victim_reason). It is deleted instead (FX_DELETE), with its grace
 * period. A pod that borrows agreed to go whenever what it borrows is
 * needed back when it opted in, and a budget must not keep an owner from
 * its memory or its GPU time, nor a pod that does not borrow from the
 * node's CPU and memory, for as long as the budget holds
 * (docs/KUBERNETES.md, "A PodDisruptionBudget does not keep a borrower").
 * b stays leaving meanwhile: an owner or a preemptor keeps waiting for it.
 * False when the delete cannot be queued. */
static bool borrower_delete(struct fx_model *m, struct pod *b, const struct pod *pr)
{
    char msg[400], who[140];
    if (pr && pr->gang)
        snprintf(who, sizeof(who), "pod group %.120s", pr->gang->key);
    else if (pr)
        snprintf(who, sizeof(who), "%.63s/%.63s", STR(pr->ns), STR(pr->name));
    if (pr)
        snprintf(msg, sizeof(msg),
                 "evicted for %s (" BORROWED_REASON ") by deleting it (its grace period "
                 "runs): its eviction was refused by a PodDisruptionBudget, and a pod that "
                 "borrows agreed to go when what it borrows is needed (%s: \"true\")",
                 who, FX_ANN_OPPORTUNISTIC);
    else
        snprintf(msg, sizeof(msg),
                 "reclaimed from GPU %d of node %.63s by deleting it (its grace period runs): "
                 "its eviction was refused by a PodDisruptionBudget, and a pod that borrows "
                 "agreed to be reclaimed when its GPU's owners need it (%s: \"true\")",
                 b->bgpu, b->on ? b->on->name : STR(b->node), FX_ANN_OPPORTUNISTIC);
    if (!reclaimq_push(m, b->uid, msg)) {
        FX_ERROR(COMP, "out of memory queueing a borrower's delete", "pod=%s/%s", STR(b->ns),
                 STR(b->name));
        return false;
    }
    b->reclaim_delete = true;
    if (pr)
        m->evictions_deleted++;
    else
        m->reclaims_deleted++;
    return true;
}

/* Borrower b's reclaim was refused for good this time: it is not tried
 * again before its back-off has passed (reclaim_scan then wakes the pods
 * that may wait for its memory). */
static void reclaim_backoff(struct fx_model *m, struct pod *b)
{
    b->reclaim_delete = false;
    b->reclaim_backoff_s = b->reclaim_backoff_s >= FX_RECLAIM_BACKOFF_MAX_S / 2
                               ? FX_RECLAIM_BACKOFF_MAX_S
                           : b->reclaim_backoff_s ? b->reclaim_backoff_s * 2
                                                  : FX_RECLAIM_GPU_GAP_S;
    b->reclaim_after_s = m->now_s + b->reclaim_backoff_s;
    m->reclaim_check = true;
}

/* Whether b's last reclaim was refused less than its back-off ago. */
static bool reclaim_backing_off(const struct fx_model *m, const struct pod *b)
{
    return b->reclaim_after_s > m->now_s;
}

/* An owner placed on GPUs of node n (pl): a GPU where borrowers hold
 * memory the owner's quota now needs (the engine never counted the
 * borrowers'), or any memory when the owner has no quota (a whole GPU),
 * makes the owner wait for them: they are reclaimed at once. True then.
 * A nominated owner (waiter) counts them among its victims: it is bound
 * once they are gone too (victim_gone). */
static bool borrow_conflict(struct fx_model *m, const struct pod *p, struct node *n,
                            const struct flexpu_placement *pl, struct pod *waiter)
{
    if (!n || m->nborrowers == 0)
        return false;
    uint32_t blocked = blocked_gpus(m, n, pl);
    for (int i = 0; i < pl->ngpu; i++) {
        int g = pl->gpu[i];
        if (!(blocked & (1u << i)))
            continue;
        for (struct pod *b = n->pods; b; b = b->next) {
            if (!b->borrowed || b->bgpu != g)
                continue;
            /* One whose reclaim was just refused is not asked again for
             * each owner decided meanwhile: the owner waits (reclaim_scan
             * wakes it after the back-off). A preemptor counts it among
             * its victims all the same: it must not bind beside it. */
            if (!b->evicting && (!reclaim_backing_off(m, b) || waiter)) {
                char msg[400];
                snprintf(msg, sizeof(msg),
                         "reclaimed from GPU %d (%.48s) of node %.63s: pod %.63s/%.63s is "
                         "placed there and its memory quota needs the memory this pod borrowed",
                         g, n->inv.gpus[g].uuid, n->name, STR(p->ns), STR(p->name));
                reclaim_take(m, b, msg);
            }
            if (waiter && b->evicting && !b->preemptor) {
                str_set(&b->preemptor, waiter->uid);
                waiter->nvictims++;
            }
        }
    }
    return blocked != 0;
}

/* Whether a borrower on the same GPU as b, also to be reclaimed, started
 * after b (reclaim takes the one that started last: the least work lost;
 * one backing off is not to be reclaimed now). */
static bool later_borrower(const struct fx_model *m, const struct pod *b)
{
    for (const struct pod *o = b->on->pods; o; o = o->next) {
        if (o == b || !o->borrowed || o->bgpu != b->bgpu || o->evicting ||
            reclaim_backing_off(m, o))
            continue;
        int c = strcmp(o->created, b->created);
        if (c > 0 || (c == 0 && o->seq > b->seq))
            return true;
    }
    return false;
}

/* Borrower b in reclaim_scan: reclaimed when its GPU's rise is confirmed,
 * the GPU's gap has passed and it started last there, while *budget lasts.
 * *pending: b needs a later scan. False when b was due and the budget is
 * spent (the next scan starts with it). */
/* --borrow-mem idle: whether the borrowers on GPU g of n (those not
 * leaving) no longer fit in the memory the owners leave them, by the last
 * reading (borrow.h). */
static bool borrow_mem_over(const struct fx_model *m, const struct node *n, int g)
{
    if (m->borrow_mem != FX_BORROW_MEM_IDLE || m->e == NULL || n->id < 0 || g >= n->inv.ngpu)
        return false;
    int64_t mib = 0;
    for (const struct pod *p = n->pods; p; p = p->next)
        if (p->borrowed && p->bgpu == g && !p->evicting)
            mib += p->bmem_mib;
    if (mib == 0)
        return false;
    int64_t gpu = n->inv.gpus[g].mem_bytes;
    int64_t reserved = gpu - flexpu_engine_gpu_free_mem(m->e, n->id, g) * FX_MIB;
    return mib * FX_MIB > fx_borrow_mem_room(gpu, reserved, n->use_owner_mem[g], true);
}

static bool reclaim_consider(struct fx_model *m, struct pod *b, int *budget, bool *pending)
{
    if (!b->borrowed || b->evicting || !b->on || b->bgpu >= b->on->nwatch ||
        (b->state != POD_BOUND && b->state != POD_ASSUMED))
        return true;
    struct node *n = b->on;
    if (b->reclaim_after_s) {
        if (reclaim_backing_off(m, b)) {
            *pending = true; /* costs no budget: others go meanwhile */
            return true;
        }
        /* Its back-off is over: owners that wait for its memory are
         * decided again, and reclaim it if they still need it. */
        b->reclaim_after_s = 0;
        capacity_freed(m, n->id);
    }
    struct fx_gpu_watch *w = &n->watch[b->bgpu];
    struct fx_gpu_use use;
    /* Memory (--borrow-mem idle) goes at once: an owner's allocation may
     * be waiting for it (runtime/oom_wait.h); compute once confirmed. */
    bool mem_over = borrow_mem_over(m, n, b->bgpu);
    if ((!w->over_ts && !mem_over) || !fx_model_gpu_use(m, n->name, b->bgpu, m->now_s, &use))
        return true;
    *pending = true;
    if (mem_over ? (w->reclaim_s && m->now_s - w->reclaim_s < FX_RECLAIM_GPU_GAP_S)
                 : !fx_watch_reclaim_due(w, m->now_s))
        return true;
    if (later_borrower(m, b))
        return true;
    if (*budget == 0)
        return false;
    --*budget;
    int milli;
    int64_t mem;
    borrowers_on(n, b->bgpu, &milli, &mem, NULL);
    char msg[400];
    if (mem_over)
        snprintf(msg, sizeof(msg),
                 "reclaimed from GPU %d (%.48s) of node %.63s: its owners use %lld MiB of its "
                 "memory (measured) and the borrowers' %lld MiB no longer fit beside them "
                 "with %d%% of headroom; this pod started last",
                 b->bgpu, n->inv.gpus[b->bgpu].uuid, n->name,
                 (long long)(n->use_owner_mem[b->bgpu] / FX_MIB), (long long)mem,
                 FX_BORROW_MEM_HEADROOM_PCT);
    else
        snprintf(msg, sizeof(msg),
                 "reclaimed from GPU %d (%.48s) of node %.63s: its owners use %d/1000 of it "
                 "(busy, measured) and the borrowers' shares %d/1000 no longer fit beside "
                 "them, for %llds of readings; this pod started last",
                 b->bgpu, n->inv.gpus[b->bgpu].uuid, n->name, w->owner_busy, milli,
                 (long long)(w->last_ts - w->over_ts));
    w->reclaim_s = m->now_s;
    reclaim_take(m, b, msg);
    return true;
}

/* Once per second of the clock while some GPU with borrowers reads above
 * capacity, or some borrower backs off: the borrowers whose GPU's rise is
 * confirmed and whose reclaim gap has passed are reclaimed, one per GPU,
 * FX_RECLAIM_PER_S at most. The walk starts where the last one ran out of
 * budget, so that no pod's place in the table keeps it ahead of others. */
static void reclaim_scan(struct fx_model *m)
{
    if (!m->reclaim_check || m->now_s <= 0 || m->now_s == m->reclaim_scan_s)
        return;
    m->reclaim_scan_s = m->now_s;
    bool pending = false;
    int budget = FX_RECLAIM_PER_S;
    size_t start = m->reclaim_scan_at < m->pods.cap ? m->reclaim_scan_at : 0;
    m->reclaim_scan_at = 0;
    const char *k;
    void *v;
    for (int pass = 0; pass < 2; pass++) {
        size_t i = pass ? 0 : start;
        while (fx_strmap_next(&m->pods, &i, &k, &v) && (!pass || i - 1 < start)) {
            if (!reclaim_consider(m, v, &budget, &pending)) {
                m->reclaim_scan_at = i - 1;
                m->reclaim_check = true;
                return;
            }
        }
    }
    m->reclaim_check = pending;
}

/* The next reclaim to send, as an FX_RECLAIM attempt, or a borrower's
 * delete, FX_DELETE, when a budget refused its eviction (borrower_delete:
 * a reclaim's, or one for lent capacity). */
static bool next_reclaim(struct fx_model *m, struct fx_attempt *a)
{
    reclaim_scan(m);
    while (m->nreclaimq) {
        struct reclaim_item it = m->reclaimq[0];
        memmove(m->reclaimq, m->reclaimq + 1, (m->nreclaimq - 1) * sizeof(*m->reclaimq));
        m->nreclaimq--;
        struct pod *b = fx_strmap_get(&m->pods, it.uid);
        if (!b || !b->evicting || !(b->reclaimed || b->reclaim_delete))
            continue; /* gone already, or undone */
        if (b->reclaim_delete && !b->reclaimed && !lent_preemptor(m, b)) {
            /* Its preemptor went (or was bound elsewhere) after the budget
             * refused the eviction and before this delete went out: not
             * deleted past its budget for no one; it stays, as a victim
             * whose eviction had not gone out (victims_unqueue). */
            b->reclaim_delete = false;
            victim_stays(m, b);
            continue;
        }
        fill(a, b, b->reclaim_delete ? FX_DELETE : FX_RECLAIM);
        a->preempts = b->reclaim_delete && !b->reclaimed;
        snprintf(a->node, sizeof(a->node), "%s", STR(b->node));
        snprintf(a->message, sizeof(a->message), "%s", it.msg);
        return true;
    }
    return false;
}

/* The heap to serve next: pods that only need telling first, then the
 * queue furthest below its fair share (flexpu_queues_compare). */
static struct pheap *next_heap(struct fx_model *m)
{
    if (m->loose.n)
        return &m->loose;
    if (m->shares_dirty)
        compute_shares(m);
    int best = -1;
    for (int i = 0; i < m->nqh; i++)
        if (m->qh[i].n && (best < 0 || flexpu_queues_compare(m->queues, i, best) < 0))
            best = i;
    return best < 0 ? NULL : &m->qh[best];
}

/* Tells one member marked gang_tell what its group's last try said:
 * true when a is filled. A member queued again meanwhile has a turn of its
 * own coming; one no longer waiting has nothing to be told. */
static bool gang_told(struct fx_model *m, struct fx_attempt *a)
{
    const char *k;
    void *v;
    for (size_t i = 0; m->ngang_tell > 0 && fx_strmap_next(&m->gangs, &i, &k, &v);) {
        struct gang *g = v;
        for (struct pod *q = g->members; q; q = q->gnext) {
            if (!q->gang_tell)
                continue;
            gang_untell(m, q);
            if (q->state != POD_WAITING || q->heap >= 0 || !g->said ||
                strcmp(g->said, STR(q->told)) == 0)
                continue;
            str_set(&q->told, g->said);
            fill(a, q, FX_WAIT);
            a->wait = g->said_why;
            snprintf(a->message, sizeof(a->message), "%s", g->said);
            return true;
        }
    }
    return false;
}

bool fx_model_next(struct fx_model *m, struct fx_attempt *a)
{
    reclaim_scan(m); /* first: a borrower's back-off ending wakes the pods it held back */
    holds_refresh(m);
    wake_waiting(m);
    fx_model_refresh_workload(m);
    if (m->ready.n) {
        struct pod *r = m->ready.h[0];
        dequeue(m, r);
        bind_attempt(a, r);
        return true;
    }
    if (next_unnomination(m, a) || gang_told(m, a) || next_eviction(m, a) || next_reclaim(m, a))
        return true;
    struct pheap *h;
    while ((h = next_heap(m))) {
        holds_refresh(m); /* a reclaim for the pod before may have freed some */
        struct pod *p = h->h[0];
        dequeue(m, p);
        if (p->state == POD_INVALID) {
            fill(a, p, FX_INVALID);
            snprintf(a->message, sizeof(a->message), "%s", STR(p->problem));
            str_set(&p->told, p->problem);
            return true;
        }
        if (p->state == POD_GATED) {
            fill(a, p, FX_GATED);
            gated_msg(p, a->message, sizeof(a->message));
            str_set(&p->told, a->message);
            return true;
        }
        if (p->gang && !gang_carries(p->gang, p)) {
            if (gang_refuse(m, p, a))
                return true;
            continue;
        }
        char held[400] = "";
        if (p->noqueue)
            snprintf(held, sizeof(held),
                     "queue \"%.100s\" does not exist (label " FX_LABEL_QUEUE "): the pod waits "
                     "until a Queue of that name is created",
                     STR(p->qname));
        int64_t amt[FLEXPU_RES_COUNT_];
        pod_amount(p, amt);
        p->limited = !p->noqueue &&
                     !flexpu_queues_within_limit(m->queues, p->qid, amt, held, sizeof(held));
        if (held[0] && (p->noqueue || p->limited)) {
            /* Neither is room: no node a cluster autoscaler adds ends it. */
            if (park(m, p, held, p->noqueue ? FX_WAIT_NO_QUEUE : FX_WAIT_QUEUE_LIMIT, a))
                return true;
            continue;
        }
        if (p->gang) {
            int turn = gang_turn(m, p, a);
            if (turn == 1)
                return true;
            if (turn == 0)
                continue;
        }
        struct flexpu_placement pl;
        struct flexpu_noplace why;
        int64_t id;
        int64_t slice_mem = 0;
        /* Its inter-pod rules, as node requirements for this decision: the
         * placement, a remote slice's node, borrowing and the victim search
         * all read p->filter. */
        struct flexpu_filter *own = p->filter, *ruled = NULL;
        char note[171]; /* all of it fits msg below */
        if (rules_filter(m, p, &ruled, note, sizeof(note))) {
            FX_ERROR(COMP, "out of memory compiling inter-pod rules", "pod=%s/%s", STR(p->ns),
                     STR(p->name));
            set_state(m, p, POD_WAITING); /* retried at the next change */
            continue;
        }
        if (ruled)
            p->filter = ruled;
        int rc = place_pod(m, p, &pl, &id, &slice_mem, &why);
        /* A remote slice is a slice, and borrowing disturbs no one: both
         * come before evicting others. */
        bool done = rc == FLEXPU_ENOFIT &&
                    (remote(m, p, a, &why) || borrow(m, p, a) || preempt(m, p, a));
        p->filter = own;
        flexpu_filter_free(ruled);
        if (done)
            return true;
        if (rc) {
            set_state(m, p, POD_WAITING);
            char msg[400];
            if (note[0])
                snprintf(msg, sizeof(msg), "%.200s (inter-pod rules: %s)", why.text, note);
            else
                snprintf(msg, sizeof(msg), "%s", why.text);
            gang_untell(m, p);
            if (strcmp(msg, STR(p->told)) == 0)
                continue; /* said already */
            str_set(&p->told, msg);
            fill(a, p, rc == FLEXPU_EINVAL ? FX_INVALID : FX_WAIT);
            /* Fits nowhere (its inter-pod rules included, as kube-scheduler
             * counts them), or waits for borrowers reclaimed for it. */
            a->wait = rc == FLEXPU_ENOMEM ? FX_WAIT_ERROR : FX_WAIT_ROOM;
            snprintf(a->message, sizeof(a->message), "%s", msg);
            if (rc == FLEXPU_EINVAL)
                set_state(m, p, POD_INVALID);
            return true;
        }
        const char *node = flexpu_engine_node_name(m->e, pl.node);
        struct node *n = node ? fx_strmap_get(&m->nodes, node) : NULL;
        if (!n) { /* cannot happen: every engine node has a record */
            struct flexpu_error err;
            flexpu_engine_release(m->e, id, &err);
            set_state(m, p, POD_WAITING);
            continue;
        }
        assume(m, p, n, &pl, id, slice_mem);
        bind_attempt(a, p);
        return true;
    }
    /* A pod that waits without a new word (told already) may have had a
     * borrower reclaimed for it meanwhile: that goes out now. */
    return next_reclaim(m, a);
}

/* An assumed pod's bind did not happen: its allocation back, and the pod
 * queued again. */
static void give_back(struct fx_model *m, struct pod *p)
{
    clear_unsure(m, p);
    borrow_set(m, p, false);
    p->gpus = p->noquota = 0;
    release(m, p);
    unlink_pod(m, p);
    str_set(&p->node, NULL);
    str_set(&p->allocation, NULL);
    enqueue(m, p);
}

static void bind_done(struct fx_model *m, const char *uid, int rc, int64_t now_ms)
{
    struct pod *p = fx_strmap_get(&m->pods, uid);
    if (!p || p->state != POD_ASSUMED)
        return;
    if (rc == 0) {
        clear_unsure(m, p);
        return; /* the watch confirms it */
    }
    if (rc == FLEXPU_ENOENT) {
        forget(m, p); /* the pod is gone */
        return;
    }
    if (rc == FLEXPU_EINVAL) {
        give_back(m, p); /* refused as such (4xx): nothing was written */
        return;
    }
    /* A timeout, a 5xx or a 409: the server may have bound it (a request
     * that ran out may still be applied), or someone else did. Giving the
     * allocation back now would let the next pod take the same share. */
    if (!p->unsure) {
        p->unsure = true;
        m->nunsure++;
    }
    p->settle_ms = now_ms + FX_BIND_SETTLE_MS;
}

void fx_model_bind_done(struct fx_model *m, const char *uid, int rc, int64_t now_ms)
{
    bind_done(m, uid, rc, now_ms);
    holds_refresh(m); /* the victims' holds exact between events too */
}

bool fx_model_next_unsure(struct fx_model *m, int64_t now_ms, struct fx_attempt *a)
{
    if (m->nunsure == 0)
        return false;
    const char *k;
    void *v;
    for (size_t i = 0; fx_strmap_next(&m->pods, &i, &k, &v);) {
        struct pod *p = v;
        if (!p->unsure || p->settle_ms > now_ms)
            continue;
        /* Offered again later if the read-back fails or never comes. */
        p->settle_ms = now_ms + FX_BIND_RETRY_MS;
        fill(a, p, FX_BIND);
        snprintf(a->node, sizeof(a->node), "%s", STR(p->node));
        snprintf(a->allocation, sizeof(a->allocation), "%s", STR(p->allocation));
        return true;
    }
    return false;
}

static void bind_settle(struct fx_model *m, const char *uid, json_t *obj)
{
    struct pod *p = fx_strmap_get(&m->pods, uid);
    if (!p || p->state != POD_ASSUMED || !p->unsure)
        return;
    const char *got = obj ? kube_str(obj, "metadata.uid") : NULL;
    if (!got || strcmp(got, uid) != 0) {
        forget(m, p); /* deleted (a pod of the same name is another pod) */
        return;
    }
    const char *node = kube_str(obj, "spec.nodeName");
    if ((node && *node) || terminal(obj)) {
        fx_model_pod_event(m, KUBE_MODIFIED, obj); /* as the watch will tell it */
        return;
    }
    give_back(m, p); /* still unbound well after the bind: it never happened */
}

void fx_model_bind_settle(struct fx_model *m, const char *uid, json_t *obj)
{
    bind_settle(m, uid, obj);
    holds_refresh(m); /* the victims' holds exact between events too */
}

void fx_model_stats(const struct fx_model *m, struct fx_model_stats *o)
{
    memset(o, 0, sizeof(*o));
    struct flexpu_stats s;
    flexpu_engine_stats(m->e, &s);
    o->nodes = s.nodes;
    o->gpus = s.gpus;
    o->gpu_milli_total = s.gpu_milli_total;
    o->gpu_milli_used = s.gpu_milli_used;
    o->conflicts = m->conflicts;
    o->workload_refreshes = m->workload_refreshes;
    o->hold_books = m->hold_books;
    o->wakes = m->wakes;
    o->wake_checks = m->wake_checks;
    o->preemptions = m->preemptions;
    o->evictions = m->evictions;
    o->evictions_refused = m->evictions_refused;
    o->evictions_deleted = m->evictions_deleted;
    o->gangs_placed = m->gangs_placed;
    o->borrows = m->borrows;
    o->reclaims = m->reclaims;
    o->reclaims_refused = m->reclaims_refused;
    o->reclaims_deleted = m->reclaims_deleted;
    o->remote = m->nremote;
    o->remote_placed = m->remote_placed;
    const char *k;
    void *v;
    for (size_t i = 0; fx_strmap_next(&m->pods, &i, &k, &v);) {
        const struct pod *p = v;
        o->pods_bound += p->state == POD_BOUND || p->state == POD_ASSUMED;
        o->pods_queued += p->state == POD_QUEUED;
        o->pods_waiting += p->state == POD_WAITING;
        o->pods_invalid += p->state == POD_INVALID;
        o->pods_gated += p->state == POD_GATED;
        o->pods_unsure += p->unsure;
        o->pods_nominated += p->state == POD_NOMINATED;
        o->borrowers += p->borrowed && !p->evicting &&
                        (p->state == POD_BOUND || p->state == POD_ASSUMED);
    }
}

/* ---- queues ---- */

int fx_model_queue_set(struct fx_model *m, const struct flexpu_queue_info *info,
                       struct flexpu_error *err)
{
    int rc = flexpu_queues_set(m->queues, info, NULL, err);
    if (rc)
        return rc;
    if (heaps_fit(m)) {
        /* The queue exists but its pods cannot be queued: set it aside
         * so they keep waiting, told why, rather than never being served. */
        flexpu_queues_remove(m->queues, info->name, NULL);
        flexpu_error_set(err, FLEXPU_ENOMEM, "out of memory adding queue %s", info->name);
        return FLEXPU_ENOMEM;
    }
    m->shares_dirty = true;
    /* Pods that named it before it existed join it now, and pods held back
     * by a limit are tried again against the new one. O(pods): queues
     * change rarely. */
    const char *k;
    void *v;
    for (size_t i = 0; fx_strmap_next(&m->pods, &i, &k, &v);) {
        struct pod *p = v;
        if (p->qid < 0 && (p->ours || p->qname)) {
            queue_resolve(m, p);
            queue_sync(m, p);
            /* Out of the loose heap (or the waiting list) into its queue's. */
            if ((p->state == POD_WAITING || p->state == POD_QUEUED) && !p->noqueue)
                enqueue(m, p);
        } else if (p->limited && p->state == POD_WAITING) {
            enqueue(m, p);
        }
    }
    return 0;
}

int fx_model_queue_remove(struct fx_model *m, const char *name, struct flexpu_error *err)
{
    int id = flexpu_queues_find(m->queues, name);
    if (id < 0)
        return 0; /* gone already */
    int rc = flexpu_queues_remove(m->queues, name, err);
    if (rc)
        return rc;
    m->shares_dirty = true;
    if (flexpu_queues_find(m->queues, name) == id)
        return 0; /* the default queue: reset, still there */
    /* Its waiting pods have no queue now: they wait, told why. What its
     * bound pods hold stays charged to it until they end. */
    const char *k;
    void *v;
    for (size_t i = 0; fx_strmap_next(&m->pods, &i, &k, &v);) {
        struct pod *p = v;
        if (p->qid != id || !(p->state == POD_QUEUED || p->state == POD_WAITING))
            continue;
        queue_resolve(m, p);
        p->limited = false;
        enqueue(m, p); /* to the loose heap, to be told */
    }
    return 0;
}

int fx_model_queue_count(const struct fx_model *m)
{
    return flexpu_queues_count(m->queues);
}

int fx_model_queue_find(const struct fx_model *m, const char *name)
{
    return flexpu_queues_find(m->queues, name);
}

bool fx_model_queue_get(struct fx_model *m, int id, struct flexpu_queue_status *out)
{
    if (m->shares_dirty)
        compute_shares(m);
    return flexpu_queues_get(m->queues, id, out);
}

/* The borrowers' list (borrow_set) against a scan of the pods: the same
 * pods, as many as counted, each linked both ways. */
static int borrowers_check(const struct fx_model *m, struct flexpu_error *err)
{
    int listed = 0, scanned = 0;
    for (const struct pod *p = m->borrowers; p; p = p->bnext) {
        if (++listed > m->nborrowers || !p->borrowed ||
            fx_strmap_get(&m->pods, p->uid) != p || (p->bnext && p->bnext->bprev != p) ||
            (p->bprev ? p->bprev->bnext != p : m->borrowers != p))
            return flexpu_error_set(err, FLEXPU_EINVAL,
                                    "borrowers' list: pod %s listed wrongly (%d listed, %d "
                                    "counted)",
                                    p->uid, listed, m->nborrowers);
    }
    const char *k;
    void *v;
    for (size_t i = 0; fx_strmap_next(&m->pods, &i, &k, &v);)
        scanned += ((const struct pod *)v)->borrowed;
    if (listed != m->nborrowers || scanned != m->nborrowers)
        return flexpu_error_set(err, FLEXPU_EINVAL,
                                "borrowers: %d listed, %d counted, %d pods borrowing", listed,
                                m->nborrowers, scanned);
    return 0;
}

/* The victims' holds (struct vhold) against the pods: each listed once,
 * linked both ways, its pod's, a pod leaving whose own allocation (and
 * remote slice) is released; as many as counted, and no other pod with one. */
static int holds_check(const struct fx_model *m, struct flexpu_error *err)
{
    int listed = 0, scanned = 0;
    for (const struct vhold *h = m->holds; h; h = h->next) {
        const struct pod *p = h->pod;
        if (++listed > m->nholds || !p || p->hold != h || !p->evicting || p->alloc || p->ralloc ||
            fx_strmap_get(&m->pods, p->uid) != p || (h->next && h->next->prev != h) ||
            (h->prev ? h->prev->next != h : m->holds != h))
            return flexpu_error_set(err, FLEXPU_EINVAL,
                                    "victims' holds: pod %s held wrongly (%d listed, %d "
                                    "counted)",
                                    p ? p->uid : "?", listed, m->nholds);
    }
    const char *k;
    void *v;
    for (size_t i = 0; fx_strmap_next(&m->pods, &i, &k, &v);)
        scanned += ((const struct pod *)v)->hold != NULL;
    if (listed != m->nholds || scanned != m->nholds)
        return flexpu_error_set(err, FLEXPU_EINVAL,
                                "victims' holds: %d listed, %d counted, %d pods holding", listed,
                                m->nholds, scanned);
    return 0;
}

/* Each node's rwhole is what the remote pods accounted there hold without
 * a quota (remote_whole), and a pod holds such GPUs only while accounted
 * (or leaving as a victim, its hold holding them). */
static int rwhole_check(const struct fx_model *m, struct flexpu_error *err)
{
    const char *k, *pk;
    void *v, *pv;
    for (size_t j = 0; fx_strmap_next(&m->pods, &j, &pk, &pv);) {
        const struct pod *p = pv;
        if (p->rnoquota && (!(p->ralloc || p->hold) || !p->rnode))
            return flexpu_error_set(err, FLEXPU_EINVAL, "pod %s: GPUs without a quota held "
                                    "remotely while not accounted", p->uid);
    }
    for (size_t i = 0; fx_strmap_next(&m->nodes, &i, &k, &v);) {
        const struct node *n = v;
        for (int g = 0; g < FLEXPU_MAX_GPUS; g++) {
            int want = 0;
            for (size_t j = 0; fx_strmap_next(&m->pods, &j, &pk, &pv);) {
                const struct pod *p = pv;
                want += p->rnode && strcmp(p->rnode, n->name) == 0 &&
                        (p->rnoquota & (1u << g)) != 0;
            }
            if (n->rwhole[g] != want)
                return flexpu_error_set(err, FLEXPU_EINVAL,
                                        "node %s GPU %d: %d remote slices without a quota "
                                        "counted, %d held",
                                        n->name, g, n->rwhole[g], want);
        }
    }
    return 0;
}

int fx_model_check(const struct fx_model *m, struct flexpu_error *err)
{
    int rc = borrowers_check(m, err);
    if (!rc)
        rc = holds_check(m, err);
    if (!rc)
        rc = rwhole_check(m, err);
    return rc ? rc : flexpu_engine_check(m->e, err);
}
