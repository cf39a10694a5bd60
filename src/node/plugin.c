/* SPDX-License-Identifier: Apache-2.0 */
/* The device plugin's tables and calls (see plugin.h for the design). */
#include "node/plugin.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "deviceplugin/v1beta1/api.pb-c.h"
#include "flexpu/log.h"
#include "kube/contract.h"
#include "node/dp_reply.h"
#include "node/reclaimed.h"
#include "node/remote.h"
#include "node/slices.h"
#include "podresources/v1/api.pb-c.h"
#include "util/clock.h"

#define COMP "plugin"
/* An offer from GetPreferredAllocation stands this long for its pod. */
#define OFFER_MS 30000
/* An allocation no pod claims (PreStartContainer never came) is forgotten
 * after this long. */
#define UNCLAIMED_MS (3600 * 1000)

struct npod {
    char uid[64], ns[64], name[256];
    uint64_t seq;           /* order in which it was seen bound here */
    bool bound;             /* has a valid allocation for GPUs of this node */
    bool terminal;
    bool seen;              /* in the current relist */
    uint32_t gpuset;        /* bit i: GPU i of this node */
    struct fx_allocation alloc;
    int cores_limit;
    enum fx_priority priority;
    char refused[400];      /* why its allocation is not honoured (no slice is written) */
    char key[FX_SLICE_KEY_LEN + 1]; /* its allocation, once PreStartContainer named it */
    int64_t offered_ms;     /* GetPreferredAllocation offered its GPUs at */
    bool consumed;          /* scratch for matching */
};

struct arec {
    char key[FX_SLICE_KEY_LEN + 1];
    uint32_t gpuset;        /* 0: unknown (found on disk after a restart) */
    char uid[64];           /* the pod, once named */
    int64_t created_ms;
    struct arec *next;
};

struct fx_plugin {
    struct fx_plugin_config cfg;
    char root[256], podresources[256], node[256];
    pthread_mutex_t mu;
    pthread_cond_t changed; /* pods changed */
    int ngpu;
    struct fx_node_gpu gpus[FLEXPU_MAX_GPUS];
    struct npod *pods;
    size_t npods, cap;
    uint64_t seq;
    bool synced;            /* the first list is complete */
    struct arec *recs;
    struct fx_mps *mps;     /* mps mode: a control daemon per slice */
    char mig_minors[256];   /* the driver's MIG capability list */
    /* Borrowers killed for an owner's memory (reclaim_mem.h), kept in
     * <root>/reclaimed across restarts (reclaimed.h). */
    struct fx_reclaimed reclaimed;
    /* The remote slices served from this node's GPUs (fx_plugin_set_remote). */
    struct fx_plugin_remote remote;
    /* Held for reading across a call of remote.pod_name made outside mu
     * (fx_plugin_pod_name), for writing by fx_plugin_set_remote: the old
     * callbacks' ctx may be freed once it returns. Taken before mu. */
    pthread_rwlock_t remote_rw;
};

static void deadline_ts(struct timespec *ts, int ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (long)(ms % 1000) * 1000000;
    if (ts->tv_nsec >= 1000000000) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000;
    }
}

static void slice_seen(const char *key, const char *tenant, void *ctx)
{
    struct fx_plugin *p = ctx;
    struct arec *r = calloc(1, sizeof(*r));
    if (!r)
        return;
    snprintf(r->key, sizeof(r->key), "%s", key);
    snprintf(r->uid, sizeof(r->uid), "%s", tenant);
    r->created_ms = fx_mono_ms();
    r->next = p->recs;
    p->recs = r;
}

static bool slice_known(const char *key, void *ctx)
{
    struct fx_plugin *p = ctx;
    for (struct arec *r = p->recs; r; r = r->next)
        if (strcmp(r->key, key) == 0)
            return true;
    return false;
}

struct fx_plugin *fx_plugin_new(const struct fx_plugin_config *cfg, const struct fx_node_gpu *gpus,
                                int ngpu, struct flexpu_error *err)
{
    if (ngpu > FLEXPU_MAX_GPUS || ngpu > 32) {
        flexpu_error_set(err, FLEXPU_ERANGE, "%d GPUs: at most %d per node", ngpu,
                         FLEXPU_MAX_GPUS);
        return NULL;
    }
    struct fx_plugin *p = calloc(1, sizeof(*p));
    if (!p) {
        flexpu_error_set(err, FLEXPU_ENOMEM, "out of memory");
        return NULL;
    }
    p->cfg = *cfg;
    snprintf(p->root, sizeof(p->root), "%s", cfg->root);
    snprintf(p->podresources, sizeof(p->podresources), "%s", cfg->podresources);
    snprintf(p->node, sizeof(p->node), "%s", cfg->node_name);
    snprintf(p->mig_minors, sizeof(p->mig_minors), "%s",
             cfg->mig_minors ? cfg->mig_minors : FX_MIG_MINORS_DEFAULT);
    if (p->cfg.slots <= 0)
        p->cfg.slots = FX_DP_SLOTS;
    if (p->cfg.wait_ms <= 0)
        p->cfg.wait_ms = 10000;
    pthread_mutex_init(&p->mu, NULL);
    pthread_rwlock_init(&p->remote_rw, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&p->changed, &ca);
    pthread_condattr_destroy(&ca);
    p->ngpu = ngpu;
    memcpy(p->gpus, gpus, (size_t)ngpu * sizeof(*gpus));
    /* Allocations made before a restart: their pods are matched again by
     * UID, and the ones whose pod is gone are removed after the first list. */
    fx_slice_scan(p->root, slice_seen, p);
    /* So are the borrowers killed before it: their containers stay
     * refused, or a restart would take the owner's memory again. */
    struct flexpu_error rerr = {0};
    if (fx_reclaimed_load(&p->reclaimed, p->root, &rerr) != 0)
        FX_ERROR(COMP, "killed borrowers' marks read in part", "kept=%d error=\"%s\"",
                 p->reclaimed.n, rerr.msg);
    else if (p->reclaimed.n)
        FX_INFO(COMP, "killed borrowers' marks read", "count=%d", p->reclaimed.n);
    if (p->cfg.sharing == FX_SHARING_MPS) {
        struct fx_mps_config mc = {.root = p->root, .control = cfg->mps_control,
                                   .timeout_ms = cfg->mps_timeout_ms,
                                   .tick_ms = cfg->mps_tick_ms};
        if (!(p->mps = fx_mps_new(&mc, err))) {
            fx_plugin_free(p);
            return NULL;
        }
        /* Daemons of slices that are gone from disk; those of pods that
         * ended while the agent was away go after the first list. */
        fx_mps_keep_only(p->mps, slice_known, p);
    }
    return p;
}

void fx_plugin_set_remote(struct fx_plugin *p, const struct fx_plugin_remote *remote)
{
    /* The calls made under mu end with it; the metrics' one with the
     * read lock. */
    pthread_rwlock_wrlock(&p->remote_rw);
    pthread_mutex_lock(&p->mu);
    p->remote = *remote;
    pthread_mutex_unlock(&p->mu);
    pthread_rwlock_unlock(&p->remote_rw);
}

struct fx_mps *fx_plugin_mps(struct fx_plugin *p)
{
    return p->mps;
}

void fx_plugin_free(struct fx_plugin *p)
{
    if (!p)
        return;
    fx_mps_free(p->mps);
    for (struct arec *r = p->recs, *n; r; r = n) {
        n = r->next;
        free(r);
    }
    free(p->pods);
    pthread_cond_destroy(&p->changed);
    pthread_rwlock_destroy(&p->remote_rw);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

/* ---- tables ---- */

static int gpu_of_uuid(struct fx_plugin *p, const char *uuid)
{
    for (int i = 0; i < p->ngpu; i++)
        if (strcmp(p->gpus[i].uuid, uuid) == 0)
            return i;
    return -1;
}

/* "<uuid>::<k>" -> GPU index, or -1. */
static int gpu_of_id(struct fx_plugin *p, const char *id)
{
    const char *sep = strstr(id, "::");
    if (!sep || sep == id || (size_t)(sep - id) >= FX_UUID_MAX)
        return -1;
    char uuid[FX_UUID_MAX];
    memcpy(uuid, id, (size_t)(sep - id));
    uuid[sep - id] = '\0';
    char *end;
    errno = 0;
    long k = strtol(sep + 2, &end, 10);
    if (*end || end == sep + 2 || errno || k < 0 || k >= p->cfg.slots)
        return -1;
    return gpu_of_uuid(p, uuid);
}

static struct npod *pod_by_uid(struct fx_plugin *p, const char *uid)
{
    for (size_t i = 0; i < p->npods; i++)
        if (strcmp(p->pods[i].uid, uid) == 0)
            return &p->pods[i];
    return NULL;
}

static struct npod *pod_by_name(struct fx_plugin *p, const char *ns, const char *name)
{
    for (size_t i = 0; i < p->npods; i++)
        if (strcmp(p->pods[i].ns, ns) == 0 && strcmp(p->pods[i].name, name) == 0)
            return &p->pods[i];
    return NULL;
}

static struct arec *rec_by_key(struct fx_plugin *p, const char *key)
{
    for (struct arec *r = p->recs; r; r = r->next)
        if (strcmp(r->key, key) == 0)
            return r;
    return NULL;
}

static void rec_drop(struct fx_plugin *p, struct arec *victim)
{
    for (struct arec **pp = &p->recs; *pp; pp = &(*pp)->next)
        if (*pp == victim) {
            *pp = victim->next;
            fx_slice_remove(p->root, victim->key);
            if (p->mps)
                fx_mps_release(p->mps, victim->key); /* quit on its own thread */
            FX_INFO(COMP, "slice removed", "key=%s pod_uid=%s", victim->key,
                    victim->uid[0] ? victim->uid : "-");
            free(victim);
            return;
        }
}

static bool pod_listed(const char *uid, void *ctx)
{
    return pod_by_uid(ctx, uid) != NULL;
}

/* A killed borrower's mark goes with its pod, once the list is complete
 * (before, a pod not seen yet may still be one). */
static void reclaimed_prune(struct fx_plugin *p)
{
    struct flexpu_error err = {0};
    if (p->synced && fx_reclaimed_keep(&p->reclaimed, p->root, pod_listed, p, &err) != 0)
        FX_ERROR(COMP, "cannot write the killed borrowers' marks", "error=\"%s\"", err.msg);
}

static void pod_gone(struct fx_plugin *p, size_t i)
{
    struct npod *np = &p->pods[i];
    for (struct arec *r = p->recs, *n; r; r = n) {
        n = r->next;
        if (r->uid[0] && strcmp(r->uid, np->uid) == 0)
            rec_drop(p, r);
    }
    p->pods[i] = p->pods[--p->npods];
}

/* A borrowed allocation takes only memory that no slice on its GPU
 * reserved (fx_borrow_fits), or, placed with --borrow-mem idle, what its
 * owners do not use either, measured in their ledgers now
 * (fx_borrow_fits_idle: the scheduler's rule), as this agent sees the pods
 * bound here and the remote slices it serves on that GPU (always owners:
 * fx_plugin_set_remote): the scheduler's word is not taken for it. True,
 * with why, when it does not fit. Called with the mutex held. */
static bool borrow_refused(struct fx_plugin *p, const struct npod *np, char *why, size_t len)
{
    if (fx_reclaimed_has(&p->reclaimed, np->uid)) {
        snprintf(why, len, "it was killed on this node so that an owner of its GPU gets back "
                 "memory it reserved; it does not start again here (flexpu-scheduler evicts it)");
        return true;
    }
    const struct fx_alloc_gpu *mine = &np->alloc.gpus[0];
    int g = gpu_of_uuid(p, mine->uuid);
    if (g < 0 || np->alloc.ngpu != 1) {
        snprintf(why, len, "a borrowed allocation names one GPU of this node");
        return true;
    }
    struct fx_gpu_hold holds[64];
    const char *bkeys[64]; /* the borrowers' slices: not the owners' memory */
    int n = 0, nb = 0;
    for (size_t i = 0; i < p->npods && n < 64; i++) {
        const struct npod *o = &p->pods[i];
        if (o->alloc.borrowed && o->key[0] && nb < 64)
            bkeys[nb++] = o->key;
        if (o == np || !o->bound || o->terminal || o->refused[0] || !(o->gpuset & (1u << g)))
            continue; /* a refused allocation gets no slice: it holds nothing */
        for (int k = 0; k < o->alloc.ngpu; k++)
            if (strcmp(o->alloc.gpus[k].uuid, mine->uuid) == 0) {
                holds[n].mem = o->alloc.gpus[k].mem;
                holds[n++].borrowed = o->alloc.borrowed;
            }
    }
    for (struct arec *r = p->recs; r && nb < 64; r = r->next) {
        const struct npod *o = r->uid[0] ? pod_by_uid(p, r->uid) : NULL;
        if (o && o->alloc.borrowed)
            bkeys[nb++] = r->key;
    }
    int nremote = 0;
    if (p->remote.holds && n < 64) {
        nremote = p->remote.holds(p->remote.ctx, mine->uuid, holds + n, 64 - n);
        if (nremote < 0) {
            snprintf(why, len, "the remote slices this node serves on GPU %s are not listed "
                     "yet (the agent is starting): what they reserve is not known", mine->uuid);
            return true;
        }
        n = nremote > 64 - n ? 64 : n + nremote;
    }
    int64_t gpu_mem = p->gpus[g].mem_bytes;
    struct flexpu_error err = {0};
    int rc = n == 64 ? -1
           : np->alloc.borrow_idle
               ? fx_borrow_fits_idle(gpu_mem, holds, n, mine->mem, mine->cores,
                                     fx_reclaim_owners_mem(p->root, mine->uuid, gpu_mem, bkeys,
                                                           nb),
                                     &err)
               : fx_borrow_fits(gpu_mem, holds, n, mine->mem, &err);
    if (rc != 0) {
        if (n == 64)
            snprintf(why, len, "too many allocations on its GPU");
        else if (nremote > 0)
            snprintf(why, len, "%d of its GPU's slices are remote ones this node serves; %s",
                     nremote, err.msg);
        else
            snprintf(why, len, "%s", err.msg);
        return true;
    }
    return false;
}

/* Reads what the plugin needs of a pod; false when it is none of ours. */
static bool pod_read(struct fx_plugin *p, json_t *obj, struct npod *out)
{
    const char *uid = kube_str(obj, "metadata.uid"), *ns = kube_str(obj, "metadata.namespace"),
               *name = kube_str(obj, "metadata.name");
    if (!uid || !ns || !name)
        return false;
    memset(out, 0, sizeof(*out));
    snprintf(out->uid, sizeof(out->uid), "%s", uid);
    snprintf(out->ns, sizeof(out->ns), "%s", ns);
    snprintf(out->name, sizeof(out->name), "%s", name);
    const char *phase = kube_str(obj, "status.phase");
    out->terminal = phase && (strcmp(phase, "Succeeded") == 0 || strcmp(phase, "Failed") == 0);
    const char *text = kube_annotation(obj, FX_ANN_ALLOCATION);
    if (!text)
        return true;
    struct flexpu_error err = {0};
    if (fx_allocation_parse(text, &out->alloc, &err) != 0) {
        FX_WARN(COMP, "pod allocation unreadable", "pod=%s/%s error=\"%s\"", ns, name, err.msg);
        return true;
    }
    int64_t gmem[FLEXPU_MAX_GPUS]; /* memory of each allocated GPU, for the check below */
    for (int g = 0; g < out->alloc.ngpu; g++) {
        int i = gpu_of_uuid(p, out->alloc.gpus[g].uuid);
        if (i < 0) {
            FX_WARN(COMP, "pod allocated a GPU this node does not have", "pod=%s/%s gpu=%s", ns,
                    name, out->alloc.gpus[g].uuid);
            return true;
        }
        out->gpuset |= 1u << i;
        gmem[g] = p->gpus[i].mem_bytes;
        /* A MIG device is a hardware slice, given whole (mig.h): a share
         * of one would be held by the library alone. */
        if (p->gpus[i].mig && out->alloc.gpus[g].cores < 100 && !out->refused[0]) {
            snprintf(out->refused, sizeof(out->refused), "GPU %s is a MIG device (%s), "
                     "allocated whole only: the allocation gives it %d%% of its cores",
                     p->gpus[i].uuid, p->gpus[i].mig_profile, out->alloc.gpus[g].cores);
            FX_WARN(COMP, "pod allocation refused", "pod=%s/%s error=\"%s\"", ns, name,
                    out->refused);
        }
    }
    /* A remote slice (docs/REMOTE.md, "Kubernetes") is served by the named
     * node's flexpu-remoted: one naming this node's GPUs for a pod bound
     * here is forged, and never becomes a local slice. */
    if (out->alloc.remote_node[0] && !out->refused[0]) {
        snprintf(out->refused, sizeof(out->refused),
                 "a remote slice (remote.node %.100s) is served by flexpu-remoted, never as a "
                 "local slice of the pod's own node",
                 out->alloc.remote_node);
        FX_WARN(COMP, "pod allocation refused", "pod=%s/%s error=\"%s\"", ns, name,
                out->refused);
    }
    /* The annotation is checked against the pod's own request: whoever
     * could write it (deploy/ admits only flexpu-scheduler) must not get
     * more than the pod asks for. A pod that fails keeps its GPUs here (the
     * kubelet may already hold them) but PreStartContainer writes no slice
     * for it, so its slice.conf stays invalid and the runtime fails closed. */
    struct fx_pod_spec spec;
    if (fx_pod_spec_parse(obj, &spec, &err) != 0 ||
        fx_allocation_check(&spec, &out->alloc, gmem, &err) != 0) {
        snprintf(out->refused, sizeof(out->refused), "%s", err.msg);
        FX_WARN(COMP, "pod allocation refused: it does not match the pod's request",
                "pod=%s/%s error=\"%s\"", ns, name, err.msg);
        out->cores_limit = 100;
        out->priority = FX_PRIO_LOW;
    } else {
        out->cores_limit = spec.cores_limit;
        /* A borrower runs at low whatever it asked, so the arbiter gives
         * the GPU's owners their time back within its hand-over. */
        out->priority = out->alloc.borrowed ? FX_PRIO_LOW : spec.priority;
        if (spec.priority_capped && !out->alloc.borrowed)
            FX_WARN(COMP, "priority annotation ignored", "pod=%s/%s asked=%s allowed=%s "
                    "spec_priority=%lld", ns, name, fx_priority_name(spec.priority_asked),
                    fx_priority_name(spec.priority), (long long)spec.class_priority);
    }
    out->bound = out->gpuset != 0;
    return true;
}

void fx_plugin_pod_event(struct fx_plugin *p, enum kube_event ev, json_t *obj)
{
    pthread_mutex_lock(&p->mu);
    if (ev == KUBE_SYNC_BEGIN) {
        for (size_t i = 0; i < p->npods; i++)
            p->pods[i].seen = false;
    } else if (ev == KUBE_SYNC_END) {
        for (size_t i = p->npods; i-- > 0;)
            if (!p->pods[i].seen)
                pod_gone(p, i);
        if (!p->synced) {
            /* Slices of pods that ended while the agent was away. */
            for (struct arec *r = p->recs, *n; r; r = n) {
                n = r->next;
                if (r->uid[0] && !pod_by_uid(p, r->uid))
                    rec_drop(p, r);
            }
            p->synced = true;
        }
        reclaimed_prune(p);
    } else {
        struct npod np;
        if (pod_read(p, obj, &np)) {
            struct npod *old = pod_by_uid(p, np.uid);
            if (ev == KUBE_DELETED) {
                if (old)
                    pod_gone(p, (size_t)(old - p->pods));
                reclaimed_prune(p);
            } else if (old) {
                /* An allocation annotation never changes once bound; keep
                 * what the plugin learned (order, key, offer). */
                old->terminal = np.terminal;
                old->seen = true;
                if (!old->bound && np.bound) {
                    np.seq = ++p->seq;
                    np.seen = true;
                    *old = np;
                }
                if (old->terminal)
                    for (struct arec *r = p->recs, *n; r; r = n) {
                        n = r->next;
                        if (r->uid[0] && strcmp(r->uid, old->uid) == 0)
                            rec_drop(p, r);
                    }
            } else {
                if (p->npods == p->cap) {
                    size_t nc = p->cap ? 2 * p->cap : 64;
                    struct npod *grown = realloc(p->pods, nc * sizeof(*grown));
                    if (!grown) {
                        FX_ERROR(COMP, "out of memory for the pod table", "pod=%s/%s", np.ns,
                                 np.name);
                        pthread_mutex_unlock(&p->mu);
                        return;
                    }
                    p->pods = grown;
                    p->cap = nc;
                }
                np.seq = ++p->seq;
                np.seen = true;
                /* A restart: the pod's slice, if any, is known by its UID. */
                for (struct arec *r = p->recs; r; r = r->next)
                    if (r->uid[0] && strcmp(r->uid, np.uid) == 0) {
                        snprintf(np.key, sizeof(np.key), "%s", r->key);
                        r->gpuset = np.gpuset;
                    }
                p->pods[p->npods++] = np;
            }
        }
    }
    pthread_cond_broadcast(&p->changed);
    pthread_mutex_unlock(&p->mu);
}

int fx_plugin_allocations(void *ctx, struct fx_alloc_view *out, int max)
{
    struct fx_plugin *p = ctx;
    int n = 0;
    pthread_mutex_lock(&p->mu);
    if (!p->synced) {
        pthread_mutex_unlock(&p->mu);
        return -1;
    }
    for (struct arec *r = p->recs; r && n < max; r = r->next) {
        struct npod *np = r->uid[0] ? pod_by_uid(p, r->uid) : NULL;
        struct fx_alloc_view *v = &out[n++];
        snprintf(v->key, sizeof(v->key), "%s", r->key);
        snprintf(v->uid, sizeof(v->uid), "%s", r->uid);
        v->gpuset = r->gpuset ? r->gpuset : np ? np->gpuset : 0;
        v->borrowed = np && np->alloc.borrowed;
        v->reclaimed = r->uid[0] && fx_reclaimed_has(&p->reclaimed, r->uid);
    }
    /* A borrower bound here before its slice exists is one already. */
    for (size_t i = 0; i < p->npods && n < max; i++) {
        const struct npod *np = &p->pods[i];
        if (!np->bound || !np->alloc.borrowed || np->key[0])
            continue;
        struct fx_alloc_view *v = &out[n++];
        v->key[0] = '\0';
        snprintf(v->uid, sizeof(v->uid), "%s", np->uid);
        v->gpuset = np->gpuset;
        v->borrowed = true;
        v->reclaimed = fx_reclaimed_has(&p->reclaimed, np->uid);
    }
    pthread_mutex_unlock(&p->mu);
    return n;
}

/* The owner's pod of slice `key`, or NULL. Called with the mutex held. */
static const struct npod *pod_of_key(struct fx_plugin *p, const char *key)
{
    const struct arec *r = rec_by_key(p, key);
    return r && r->uid[0] ? pod_by_uid(p, r->uid) : NULL;
}

/* Called with the mutex held. */
static bool reclaim_event(struct fx_plugin *p, const struct fx_reclaim_note *note,
                          struct kube_pod_event *out)
{
    const struct npod *b = pod_by_uid(p, note->uid), *o = pod_of_key(p, note->owner_key);
    if (!b)
        return false;
    memset(out, 0, sizeof(*out));
    snprintf(out->ns, sizeof(out->ns), "%s", b->ns);
    snprintf(out->name, sizeof(out->name), "%s", b->name);
    snprintf(out->uid, sizeof(out->uid), "%s", b->uid);
    snprintf(out->type, sizeof(out->type), "Warning");
    snprintf(out->reason, sizeof(out->reason), "MemoryReclaimed");
    out->series = true; /* a pod killed again: one Event, its count raised */
    char owner[340], asked[64], rns[64], rname[256];
    size_t rp = strlen(FX_REMOTE_KEY_PREFIX);
    if (o)
        snprintf(owner, sizeof(owner), "pod %.63s/%.253s", o->ns, o->name);
    else if (strncmp(note->owner_key, FX_REMOTE_KEY_PREFIX, rp) == 0 && p->remote.pod_name &&
             p->remote.pod_name(p->remote.ctx, note->owner_key + rp, rns, sizeof(rns), rname,
                                sizeof(rname)) == 0)
        snprintf(owner, sizeof(owner), "pod %.63s/%.240s (a remote slice)", rns, rname);
    else
        snprintf(owner, sizeof(owner), "slice %s (no pod of this node's allocations)",
                 note->owner_key);
    if (note->bytes)
        snprintf(asked, sizeof(asked), "of %llu bytes", (unsigned long long)note->bytes);
    else
        snprintf(asked, sizeof(asked), "(its size not known)");
    snprintf(out->message, sizeof(out->message),
             "killed on node %.200s: owner %.330s needed memory it reserved on GPU %.100s, "
             "which this borrower held (its allocation %s waited for it); this pod's "
             "containers do not start again on this node",
             p->node, owner, note->gpu, asked);
    return true;
}

bool fx_plugin_reclaim_event(struct fx_plugin *p, const struct fx_reclaim_note *note,
                             struct kube_pod_event *out)
{
    pthread_mutex_lock(&p->mu);
    bool ok = reclaim_event(p, note, out);
    pthread_mutex_unlock(&p->mu);
    return ok;
}

void fx_plugin_reclaimed(void *ctx, const struct fx_reclaim_note *note)
{
    struct fx_plugin *p = ctx;
    struct flexpu_error err = {0};
    struct kube_pod_event ev;
    pthread_mutex_lock(&p->mu);
    int rc = fx_reclaimed_add(&p->reclaimed, p->root, note->uid, &err);
    const struct npod *np = pod_by_uid(p, note->uid);
    FX_INFO(COMP, "borrower reclaimed: its containers may not start again", "pod=%s/%s "
            "pod_uid=%s reason=\"%s\"", np ? np->ns : "-", np ? np->name : "-", note->uid,
            note->why);
    bool event = p->cfg.events && reclaim_event(p, note, &ev);
    pthread_mutex_unlock(&p->mu);
    if (rc)
        FX_ERROR(COMP, "cannot keep a killed borrower's mark across restarts", "pod_uid=%s "
                 "error=\"%s\"", note->uid, err.msg);
    /* Queued for the recorder's thread: the kill path never waits on the
     * API server. */
    if (event && !kube_recorder_emit(p->cfg.events, &ev))
        FX_WARN(COMP, "event queue full: a MemoryReclaimed event dropped", "pod=%s/%s",
                ev.ns, ev.name);
}

int fx_plugin_pod_name(struct fx_plugin *p, const char *uid, char *ns, size_t ns_len, char *name,
                       size_t name_len)
{
    pthread_rwlock_rdlock(&p->remote_rw);
    pthread_mutex_lock(&p->mu);
    struct npod *np = pod_by_uid(p, uid);
    if (np) {
        snprintf(ns, ns_len, "%s", np->ns);
        snprintf(name, name_len, "%s", np->name);
    }
    struct fx_plugin_remote remote = p->remote;
    pthread_mutex_unlock(&p->mu);
    /* A remote slice's tenant is its pod's UID too (remote.h); its name
     * is asked outside mu, the callbacks kept by the read lock. */
    int rc = np ? 0
                : remote.pod_name ? remote.pod_name(remote.ctx, uid, ns, ns_len, name, name_len)
                                  : -1;
    pthread_rwlock_unlock(&p->remote_rw);
    return rc;
}

/* Pods bound here that wait for devices, oldest binding first, less those
 * already served by an allocation no PreStartContainer has named yet
 * (each such allocation stands for one waiting pod with its GPUs). */
static size_t waiting_pods(struct fx_plugin *p, struct npod **out, size_t max)
{
    size_t n = 0;
    for (size_t i = 0; i < p->npods; i++) {
        struct npod *np = &p->pods[i];
        np->consumed = false;
        if (np->bound && !np->terminal && !np->key[0] && n < max)
            out[n++] = np;
    }
    for (size_t a = 1; a < n; a++) /* insertion sort by seq: n is small */
        for (size_t b = a; b > 0 && out[b - 1]->seq > out[b]->seq; b--) {
            struct npod *t = out[b];
            out[b] = out[b - 1];
            out[b - 1] = t;
        }
    int64_t now = fx_mono_ms();
    for (struct arec *r = p->recs, *next; r; r = next) {
        next = r->next;
        if (r->uid[0] || !r->gpuset)
            continue;
        if (now - r->created_ms > UNCLAIMED_MS) {
            rec_drop(p, r);
            continue;
        }
        for (size_t i = 0; i < n; i++)
            if (!out[i]->consumed && out[i]->gpuset == r->gpuset) {
                out[i]->consumed = true;
                break;
            }
    }
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (!out[i]->consumed)
            out[m++] = out[i];
    return m;
}

/* ---- gRPC helpers ---- */

/* dp_reply.c's, logged as this file's component. */
#define fail(r, status, ...) fx_dp_fail(COMP, r, status, __VA_ARGS__)
#define packed(r, m)         fx_dp_packed(COMP, r, m)

static int popcount(uint32_t x)
{
    return __builtin_popcount(x);
}

/* The GPUs behind a list of IDs; -1 with the reply set on a bad list. */
static int gpuset_of(struct fx_plugin *p, char **ids, size_t n, uint32_t *set,
                     struct fx_grpc_reply *r)
{
    *set = 0;
    if (n == 0) {
        fail(r, FX_GRPC_INVALID_ARGUMENT, "no device IDs in the request");
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        int g = gpu_of_id(p, ids[i]);
        if (g < 0) {
            fail(r, FX_GRPC_INVALID_ARGUMENT, "unknown device '%s' (node %s advertises %s)",
                 ids[i], p->node, "\"<GPU UUID>::<slot>\"");
            return -1;
        }
        if (*set & (1u << g)) {
            fail(r, FX_GRPC_FAILED_PRECONDITION,
                 "devices %s and another of the same GPU in one request: each device of "
                 "flexpu.io/gpu must be a different GPU",
                 ids[i]);
            return -1;
        }
        *set |= 1u << g;
    }
    return 0;
}

static void describe_set(struct fx_plugin *p, uint32_t set, char *buf, size_t len)
{
    size_t o = 0;
    buf[0] = '\0';
    for (int g = 0; g < p->ngpu && o + 1 < len; g++)
        if (set & (1u << g))
            o += (size_t)snprintf(buf + o, len - o, "%s%s", o ? "," : "", p->gpus[g].uuid);
}

/* ---- the calls ---- */

int fx_plugin_device_list(struct fx_plugin *p, uint8_t **msg, size_t *len)
{
    pthread_mutex_lock(&p->mu);
    size_t n = (size_t)p->ngpu * (size_t)p->cfg.slots;
    V1beta1__Device *devs = calloc(n ? n : 1, sizeof(*devs));
    V1beta1__Device **ptrs = calloc(n ? n : 1, sizeof(*ptrs));
    char *ids = calloc(n ? n : 1, FX_UUID_MAX + 16);
    V1beta1__TopologyInfo topo[FLEXPU_MAX_GPUS];
    V1beta1__NUMANode numa[FLEXPU_MAX_GPUS], *numap[FLEXPU_MAX_GPUS];
    int rc = -1;
    if (devs && ptrs && ids) {
        for (int g = 0; g < p->ngpu; g++) {
            v1beta1__topology_info__init(&topo[g]);
            v1beta1__numanode__init(&numa[g]);
            numa[g].id = p->gpus[g].numa;
            numap[g] = &numa[g];
            topo[g].n_nodes = 1;
            topo[g].nodes = &numap[g];
            for (int k = 0; k < p->cfg.slots; k++) {
                size_t i = (size_t)g * (size_t)p->cfg.slots + (size_t)k;
                char *id = ids + i * (FX_UUID_MAX + 16);
                snprintf(id, FX_UUID_MAX + 16, "%s::%d", p->gpus[g].uuid, k);
                v1beta1__device__init(&devs[i]);
                devs[i].id = id;
                devs[i].health = p->gpus[g].healthy ? "Healthy" : "Unhealthy";
                devs[i].topology = p->gpus[g].numa >= 0 ? &topo[g] : NULL;
                ptrs[i] = &devs[i];
            }
        }
        V1beta1__ListAndWatchResponse m = V1BETA1__LIST_AND_WATCH_RESPONSE__INIT;
        m.n_devices = n;
        m.devices = ptrs;
        *len = v1beta1__list_and_watch_response__get_packed_size(&m);
        *msg = malloc(*len ? *len : 1);
        if (*msg) {
            v1beta1__list_and_watch_response__pack(&m, *msg);
            rc = 0;
        }
    }
    pthread_mutex_unlock(&p->mu);
    free(devs);
    free(ptrs);
    free(ids);
    return rc;
}

static void list_and_watch(void *ctx, struct fx_grpc_reply *r)
{
    if (fx_plugin_device_list(ctx, &r->data, &r->len) != 0)
        fail(r, FX_GRPC_INTERNAL, "out of memory");
}

bool fx_plugin_set_health(struct fx_plugin *p, const struct fx_node_gpu *gpus, int ngpu)
{
    bool changed = false;
    pthread_mutex_lock(&p->mu);
    for (int g = 0; g < ngpu && g < p->ngpu; g++)
        if (p->gpus[g].healthy != gpus[g].healthy) {
            p->gpus[g].healthy = gpus[g].healthy;
            changed = true;
        }
    pthread_mutex_unlock(&p->mu);
    return changed;
}

/* The GPUs behind a container's must-include IDs, each one's ID put in
 * first[]. The kubelet lists only devices it already gave this container, so
 * at most allocation_size distinct IDs of this node, each of another GPU;
 * anything else is refused (the answer must never hold more IDs than asked
 * for, nor drop one that must be in it). The same ID twice is one device.
 * -1 with the reply set. */
static int must_include(struct fx_plugin *p, const V1beta1__ContainerPreferredAllocationRequest *q,
                        size_t c, const char *first[32], uint32_t *must, struct fx_grpc_reply *r)
{
    *must = 0;
    for (size_t i = 0; i < q->n_must_include_deviceids; i++) {
        const char *id = q->must_include_deviceids[i];
        int g = gpu_of_id(p, id);
        if (g < 0) {
            fail(r, FX_GRPC_INVALID_ARGUMENT,
                 "container_requests[%zu].must_include_deviceids: unknown device '%.80s' "
                 "(node %s advertises \"<GPU UUID>::<slot>\")",
                 c, id, p->node);
            return -1;
        }
        if (*must & (1u << g)) {
            if (strcmp(first[g], id) == 0)
                continue;
            fail(r, FX_GRPC_INVALID_ARGUMENT,
                 "container_requests[%zu].must_include_deviceids: devices '%.80s' and '%.80s' "
                 "are slots of the same GPU: each device of flexpu.io/gpu must be a different "
                 "GPU",
                 c, first[g], id);
            return -1;
        }
        *must |= 1u << g;
        first[g] = id;
    }
    if (popcount(*must) > q->allocation_size) {
        fail(r, FX_GRPC_INVALID_ARGUMENT,
             "container_requests[%zu].must_include_deviceids: %d devices, more than "
             "allocation_size %d",
             c, popcount(*must), q->allocation_size);
        return -1;
    }
    return 0;
}

/* The kubelet's PodResources List; NULL with `why` set when it does not
 * answer. */
static V1__ListPodResourcesResponse *podres_list(struct fx_plugin *p, char *why, size_t why_len)
{
    return fx_dp_podres_list(p->podresources, why, why_len);
}

/* Whether the kubelet lists pod ns/name with no device of flexpu.io/gpu yet:
 * the pod it is admitting, whose devices GetPreferredAllocation is asked
 * for, is one (the kubelet adds a pod to its pod manager, which PodResources
 * lists, just before it admits it, one pod at a time). */
static bool listed_without_devices(const V1__ListPodResourcesResponse *res, const char *ns,
                                   const char *name)
{
    for (size_t i = 0; i < res->n_pod_resources; i++) {
        const V1__PodResources *pr = res->pod_resources[i];
        if (strcmp(pr->namespace_, ns) != 0 || strcmp(pr->name, name) != 0)
            continue;
        for (size_t c = 0; c < pr->n_containers; c++)
            for (size_t d = 0; d < pr->containers[c]->n_devices; d++)
                if (strcmp(pr->containers[c]->devices[d]->resource_name, FX_DP_RESOURCE) == 0 &&
                    pr->containers[c]->devices[d]->n_device_ids > 0)
                    return false;
        return true;
    }
    return false;
}

/* Whether this container holds exactly these IDs of flexpu.io/gpu. The
 * kubelet lists each device of a container in an entry of its own (one per
 * NUMA node of the device: pkg/kubelet/cm/container_manager.go,
 * containerDevicesFromResourceDeviceInstances), so the IDs are the union of
 * the container's entries, in any order and possibly repeated; an entry that
 * holds several IDs is read the same way. */
static bool container_holds(const V1__ContainerResources *c, char **ids, size_t n)
{
    size_t seen = 0;
    for (size_t a = 0; a < n; a++) {
        bool found = false;
        for (size_t d = 0; !found && d < c->n_devices; d++) {
            const V1__ContainerDevices *cd = c->devices[d];
            if (strcmp(cd->resource_name, FX_DP_RESOURCE) != 0)
                continue;
            for (size_t b = 0; !found && b < cd->n_device_ids; b++)
                found = strcmp(ids[a], cd->device_ids[b]) == 0;
        }
        seen += found;
    }
    if (seen != n)
        return false;
    /* and no other ID of the resource */
    for (size_t d = 0; d < c->n_devices; d++) {
        const V1__ContainerDevices *cd = c->devices[d];
        if (strcmp(cd->resource_name, FX_DP_RESOURCE) != 0)
            continue;
        for (size_t b = 0; b < cd->n_device_ids; b++) {
            bool mine = false;
            for (size_t a = 0; !mine && a < n; a++)
                mine = strcmp(ids[a], cd->device_ids[b]) == 0;
            if (!mine)
                return false;
        }
    }
    return true;
}

/* Which pod holds exactly these IDs of flexpu.io/gpu, by the kubelet's
 * PodResources API. 0 and ns/name set when found. */
static int pod_holding(struct fx_plugin *p, char **ids, size_t n, char *ns, size_t ns_len,
                       char *name, size_t name_len, char *why, size_t why_len)
{
    V1__ListPodResourcesResponse *res = podres_list(p, why, why_len);
    if (!res)
        return -1;
    int found = -1;
    for (size_t i = 0; found && i < res->n_pod_resources; i++) {
        V1__PodResources *pr = res->pod_resources[i];
        for (size_t c = 0; found && c < pr->n_containers; c++)
            if (container_holds(pr->containers[c], ids, n)) {
                snprintf(ns, ns_len, "%s", pr->namespace_);
                snprintf(name, name_len, "%s", pr->name);
                found = 0;
            }
    }
    v1__list_pod_resources_response__free_unpacked(res, NULL);
    if (found)
        snprintf(why, why_len, "the kubelet's PodResources lists no container with these devices");
    return found;
}

/* Whether the kubelet lists a pod without devices of flexpu.io/gpu that the
 * pod watch has not delivered yet (every pod bound here is in the table). */
static bool kubelet_ahead(struct fx_plugin *p, const V1__ListPodResourcesResponse *kubelet)
{
    for (size_t i = 0; i < kubelet->n_pod_resources; i++) {
        const V1__PodResources *pr = kubelet->pod_resources[i];
        if (!pod_by_name(p, pr->namespace_, pr->name) &&
            listed_without_devices(kubelet, pr->namespace_, pr->name))
            return true;
    }
    return false;
}

/* The GPUs to offer one container: those of a pod bound here that waits for
 * exactly `size` GPUs all available (and holding the must-include ones).
 * The kubelet admits pods in its own order (by creation time), so the pod
 * it asks for is the one its PodResources answer (`kubelet`; NULL when it
 * gave none) lists without devices: that pod goes first, then one not
 * offered in the last OFFER_MS, then the oldest binding. The kubelet asks
 * within a millisecond of the bind, so the pod watch may not have the pod
 * yet: when the kubelet lists a pod the watch has not delivered (or, without
 * its answer, when no pod waits for `size` GPUs), wait for the watch up to
 * wait_ms rather than guess. Failing all that, must-include plus any
 * available, spread over distinct GPUs. 0 when no answer of `size` GPUs
 * exists. Called with p->mu held. */
static uint32_t prefer_gpus(struct fx_plugin *p, int size, uint32_t must, const char *first[32],
                            const V1__ListPodResourcesResponse *kubelet)
{
    struct timespec dl;
    deadline_ts(&dl, p->cfg.wait_ms);
    struct npod *pick = NULL;
    bool last = false; /* waited long enough: guess */
    bool waited = false;
    for (;;) {
        struct npod *w[512];
        size_t nw = waiting_pods(p, w, 512);
        int64_t now = fx_mono_ms();
        bool ahead = kubelet && !last && kubelet_ahead(p, kubelet);
        /* pass 0: listed by the kubelet, not offered lately; 1: listed;
         * 2: not offered lately; 3: any. */
        for (int pass = 0; pass < 4 && !pick; pass++) {
            if (pass < 2 && !kubelet)
                continue;
            if (pass >= 2 && ahead)
                break;
            for (size_t i = 0; i < nw && !pick; i++) {
                struct npod *np = w[i];
                if (popcount(np->gpuset) != size || (must & ~np->gpuset))
                    continue;
                if (pass % 2 == 0 && np->offered_ms && now - np->offered_ms < OFFER_MS)
                    continue;
                if (pass < 2 && !listed_without_devices(kubelet, np->ns, np->name))
                    continue;
                bool ok = true;
                for (int g = 0; g < p->ngpu; g++)
                    if ((np->gpuset & (1u << g)) && !first[g])
                        ok = false;
                if (ok)
                    pick = np;
            }
        }
        if (pick || last || (kubelet && !ahead))
            break;
        if (ahead && !waited)
            FX_DEBUG(COMP, "the kubelet lists a pod the watch has not delivered; waiting for it",
                     "size=%d", size);
        waited = true;
        if (pthread_cond_timedwait(&p->changed, &p->mu, &dl) == ETIMEDOUT)
            last = true;
    }
    if (pick) {
        pick->offered_ms = fx_mono_ms();
        FX_DEBUG(COMP, "preferred allocation", "pod=%s/%s size=%d", pick->ns, pick->name, size);
        return pick->gpuset;
    }
    /* No pod waits for these: spread over distinct GPUs. */
    uint32_t set = must;
    for (int g = 0; g < p->ngpu && popcount(set) < size; g++)
        if (first[g])
            set |= 1u << g;
    FX_WARN(COMP, "no pod bound here waits for devices of this size", "size=%d", size);
    return popcount(set) == size ? set : 0;
}

/* One container's answer into *cr (IDs in a malloc'd *chosen); -1 with the
 * reply set when the request is refused. */
static int prefer_one(struct fx_plugin *p, const V1beta1__ContainerPreferredAllocationRequest *q,
                      size_t c, V1beta1__ContainerPreferredAllocationResponse *cr, char ***chosen,
                      const V1__ListPodResourcesResponse *kubelet, struct fx_grpc_reply *r)
{
    int size = q->allocation_size;
    if (size <= 0 || size > p->ngpu)
        return 0; /* no preference: the kubelet picks */
    /* first free ID of each GPU, and the GPUs that must be included */
    const char *first[32] = {0};
    uint32_t must;
    if (must_include(p, q, c, first, &must, r) != 0)
        return -1;
    for (size_t i = 0; i < q->n_available_deviceids; i++) {
        int g = gpu_of_id(p, q->available_deviceids[i]);
        if (g >= 0 && !first[g])
            first[g] = q->available_deviceids[i];
    }
    uint32_t set = prefer_gpus(p, size, must, first, kubelet);
    if (!set || !(*chosen = calloc((size_t)size, sizeof(char *))))
        return 0;
    size_t k = 0;
    /* k < size holds by construction; checked anyway, as it bounds the array. */
    for (int g = 0; g < p->ngpu && k < (size_t)size; g++)
        if (set & (1u << g))
            (*chosen)[k++] = (char *)first[g];
    cr->n_deviceids = k;
    cr->deviceids = *chosen;
    return 0;
}

static void preferred(void *ctx, const uint8_t *req, size_t len, struct fx_grpc_reply *r)
{
    struct fx_plugin *p = ctx;
    V1beta1__PreferredAllocationRequest *in =
        v1beta1__preferred_allocation_request__unpack(NULL, len, req);
    if (!in) {
        fail(r, FX_GRPC_INVALID_ARGUMENT, "malformed PreferredAllocationRequest");
        return;
    }
    size_t nc = in->n_container_requests;
    V1beta1__ContainerPreferredAllocationResponse *cr = calloc(nc ? nc : 1, sizeof(*cr));
    V1beta1__ContainerPreferredAllocationResponse **crp = calloc(nc ? nc : 1, sizeof(*crp));
    char ***chosen = calloc(nc ? nc : 1, sizeof(*chosen));
    if (!cr || !crp || !chosen) {
        fail(r, FX_GRPC_INTERNAL, "out of memory");
        goto out;
    }
    /* Which pods the kubelet lists without devices, asked before the lock
     * (the kubelet does not hold its own while it waits for this answer). */
    char why[300];
    V1__ListPodResourcesResponse *kubelet = podres_list(p, why, sizeof(why));
    if (!kubelet)
        FX_DEBUG(COMP, "preferred allocation without PodResources", "reason=\"%s\"", why);
    int refused = 0;
    pthread_mutex_lock(&p->mu);
    for (size_t c = 0; c < nc && !refused; c++) {
        v1beta1__container_preferred_allocation_response__init(&cr[c]);
        crp[c] = &cr[c];
        refused = prefer_one(p, in->container_requests[c], c, &cr[c], &chosen[c], kubelet, r);
    }
    pthread_mutex_unlock(&p->mu);
    if (kubelet)
        v1__list_pod_resources_response__free_unpacked(kubelet, NULL);
    if (!refused) {
        V1beta1__PreferredAllocationResponse out = V1BETA1__PREFERRED_ALLOCATION_RESPONSE__INIT;
        out.n_container_responses = nc;
        out.container_responses = crp;
        packed(r, &out.base);
    }
out:
    for (size_t c = 0; chosen && c < nc; c++)
        free(chosen[c]);
    free(chosen);
    free(cr);
    free(crp);
    v1beta1__preferred_allocation_request__free_unpacked(in, NULL);
}

/* One container's answer. Strings live in `buf` (one per container). */
/* Device nodes of one answer: the control ones, and per GPU its own (a
 * MIG device: its parent's, and the capabilities of its GPU and compute
 * instances). */
#define CTR_DEVS (3 + 3 * FLEXPU_MAX_GPUS)

struct ctr_answer {
    V1beta1__ContainerAllocateResponse resp;
    V1beta1__ContainerAllocateResponse__EnvsEntry env[3], *envp[3];
    V1beta1__Mount mount[8], *mountp[8];
    V1beta1__DeviceSpec dev[CTR_DEVS], *devp[CTR_DEVS];
    char paths[CTR_DEVS][40];
    char lib[320], preload[320], conf[400], ledger[400], mps[400], borrowed[320];
    char arb[320];
    char key[FX_SLICE_KEY_LEN + 1];
    char visible[FLEXPU_MAX_GPUS * (FX_UUID_MAX + 1)];
};

/* The capability minors that open MIG device g to a process: its GPU
 * instance's and its compute instance's, from the driver's list
 * ("gpu<minor>/gi<id>/access <cap minor>", one per line). Returns how many
 * were found (2 when all is well). */
static int mig_caps(const char *list, const struct fx_node_gpu *g, int caps[2])
{
    char want[2][64];
    snprintf(want[0], sizeof(want[0]), "gpu%d/gi%d/access", g->minor, g->mig_gi);
    snprintf(want[1], sizeof(want[1]), "gpu%d/gi%d/ci%d/access", g->minor, g->mig_gi,
             g->mig_ci);
    caps[0] = caps[1] = -1;
    FILE *f = fopen(list, "re");
    if (!f)
        return 0;
    char name[64];
    int minor, found = 0;
    while (found < 2 && fscanf(f, "%63s %d", name, &minor) == 2)
        for (int k = 0; k < 2; k++)
            if (caps[k] < 0 && strcmp(name, want[k]) == 0 && minor >= 0) {
                caps[k] = minor;
                found++;
            }
    fclose(f);
    return found;
}

/* Adds device path `path` to the answer unless it is there already (two
 * MIG devices of one GPU share its node). */
static size_t dev_add(struct ctr_answer *a, size_t nd, const char *path)
{
    for (size_t i = 0; i < nd; i++)
        if (strcmp(a->paths[i], path) == 0)
            return nd;
    if (nd < CTR_DEVS)
        snprintf(a->paths[nd++], sizeof(a->paths[0]), "%s", path);
    return nd;
}

static void answer_fill(struct fx_plugin *p, struct ctr_answer *a, uint32_t set)
{
    v1beta1__container_allocate_response__init(&a->resp);
    static const char *const ctl[] = {"/dev/nvidiactl", "/dev/nvidia-uvm",
                                      "/dev/nvidia-uvm-tools"};
    size_t nd = 0;
    for (size_t i = 0; i < 3; i++)
        snprintf(a->paths[nd++], sizeof(a->paths[0]), "%s", ctl[i]);
    size_t o = 0;
    a->visible[0] = '\0';
    for (int g = 0; g < p->ngpu; g++)
        if (set & (1u << g)) {
            char path[40];
            snprintf(path, sizeof(path), "/dev/nvidia%d", p->gpus[g].minor);
            nd = dev_add(a, nd, path);
            int caps[2] = {-1, -1};
            if (p->gpus[g].mig && mig_caps(p->mig_minors, &p->gpus[g], caps) < 2)
                FX_WARN(COMP, "MIG device's capabilities not in the driver's list: left to the "
                        "container runtime", "gpu=%s list=%s", p->gpus[g].uuid, p->mig_minors);
            for (int k = 0; p->gpus[g].mig && k < 2; k++)
                if (caps[k] >= 0) {
                    snprintf(path, sizeof(path), "/dev/nvidia-caps/nvidia-cap%d", caps[k]);
                    nd = dev_add(a, nd, path);
                }
            o += (size_t)snprintf(a->visible + o, sizeof(a->visible) - o, "%s%s", o ? "," : "",
                                  p->gpus[g].uuid);
        }
    for (size_t i = 0; i < nd; i++) {
        v1beta1__device_spec__init(&a->dev[i]);
        a->dev[i].container_path = a->paths[i];
        a->dev[i].host_path = a->paths[i];
        a->dev[i].permissions = "rw";
        a->devp[i] = &a->dev[i];
    }
    a->resp.n_devices = nd;
    a->resp.devices = a->devp;

    snprintf(a->lib, sizeof(a->lib), "%s/lib/libflexpu-cuda.so", p->root);
    snprintf(a->preload, sizeof(a->preload), "%s/ld.so.preload", p->root);
    snprintf(a->conf, sizeof(a->conf), "%s/slices/%s", p->root, a->key);
    snprintf(a->ledger, sizeof(a->ledger), "%s/ledger/%s", p->root, a->key);
    /* The ledger directory is this slice's alone: the one mount a tenant
     * can write that no other tenant has (runtime/ledger.h). No shared
     * state directory: the agent arbitrates (runtime/arbagent.h), and a
     * directory every slice could write is one a tenant could use against
     * the others. */
    /* The marks of GPUs with borrowers (reclaim_mem.h), read-only. */
    fx_reclaim_dir(p->root, a->borrowed, sizeof(a->borrowed));
    /* The agent's arbiter pages: who holds each GPU, read-only. */
    snprintf(a->arb, sizeof(a->arb), "%s/arb", p->root);
    struct {
        const char *ctr, *host;
        bool ro;
    } m[7] = {{FX_CTR_LIB, a->lib, true},
              {FX_CTR_PRELOAD, a->preload, true},
              {FX_CTR_CONF_DIR, a->conf, true},
              {FX_CTR_LEDGER, a->ledger, false},
              {FX_CTR_BORROWED, a->borrowed, true},
              {FX_CTR_ARB, a->arb, true},
              {FX_CTR_MPS, a->mps, false}};
    /* mps: the slice's own pipe directory, and only its own: the clients
     * of this container find their daemon (and its limits) there. */
    int nm = 6;
    bool mps = p->mps && fx_mps_pipe_dir(p->root, a->key, a->mps, sizeof(a->mps)) == 0;
    if (mps)
        nm = 7;
    for (int i = 0; i < nm; i++) {
        v1beta1__mount__init(&a->mount[i]);
        a->mount[i].container_path = (char *)m[i].ctr;
        a->mount[i].host_path = (char *)m[i].host;
        a->mount[i].read_only = m[i].ro;
        a->mountp[i] = &a->mount[i];
    }
    a->resp.n_mounts = (size_t)nm;
    a->resp.mounts = a->mountp;

    const char *ek[3] = {"FLEXPU_ALLOCATION", "NVIDIA_VISIBLE_DEVICES", "CUDA_MPS_PIPE_DIRECTORY"};
    const char *ev[3] = {a->key, a->visible, FX_CTR_MPS};
    fx_dp_envs(&a->resp, a->env, a->envp, ek, ev, mps ? 3 : 2);
}

/* Waits (mutex held) until a pod bound here waits for exactly `set`.
 * Returns it, or NULL after the configured wait. */
static struct npod *wait_waiting(struct fx_plugin *p, uint32_t set)
{
    struct timespec dl;
    deadline_ts(&dl, p->cfg.wait_ms);
    for (;;) {
        struct npod *w[512];
        size_t nw = waiting_pods(p, w, 512);
        for (size_t i = 0; i < nw; i++)
            if (w[i]->gpuset == set)
                return w[i];
        /* The kubelet may have seen the binding before our watch did. */
        if (pthread_cond_timedwait(&p->changed, &p->mu, &dl) == ETIMEDOUT)
            return NULL;
    }
}

static void allocate(void *ctx, const uint8_t *req, size_t len, struct fx_grpc_reply *r)
{
    struct fx_plugin *p = ctx;
    V1beta1__AllocateRequest *in = v1beta1__allocate_request__unpack(NULL, len, req);
    if (!in) {
        fail(r, FX_GRPC_INVALID_ARGUMENT, "malformed AllocateRequest");
        return;
    }
    size_t nc = in->n_container_requests;
    struct ctr_answer *a = calloc(nc ? nc : 1, sizeof(*a));
    V1beta1__ContainerAllocateResponse **ap = calloc(nc ? nc : 1, sizeof(*ap));
    if (!a || !ap) {
        fail(r, FX_GRPC_INTERNAL, "out of memory");
        goto out;
    }
    for (size_t c = 0; c < nc; c++) {
        V1beta1__ContainerAllocateRequest *q = in->container_requests[c];
        uint32_t set;
        if (gpuset_of(p, q->devices_ids, q->n_devices_ids, &set, r) != 0)
            goto out;
        if (fx_slice_key(q->devices_ids, q->n_devices_ids, a[c].key) != 0) {
            fail(r, FX_GRPC_INTERNAL, "out of memory");
            goto out;
        }
        pthread_mutex_lock(&p->mu);
        struct arec *rec = rec_by_key(p, a[c].key);
        struct npod *np = rec ? NULL : wait_waiting(p, set);
        if (!rec && !np) {
            pthread_mutex_unlock(&p->mu);
            char gpus[FLEXPU_MAX_GPUS * (FX_UUID_MAX + 1)];
            describe_set(p, set, gpus, sizeof(gpus));
            fail(r, FX_GRPC_FAILED_PRECONDITION,
                 "no pod bound to node %s waits for GPU(s) %s: flexpu-scheduler assigned "
                 "other GPUs to the pods here (a pod asking for flexpu.io/gpu must be "
                 "scheduled by flexpu-scheduler)",
                 p->node, gpus);
            goto out;
        }
        if (!rec) {
            rec = calloc(1, sizeof(*rec));
            if (!rec) {
                pthread_mutex_unlock(&p->mu);
                fail(r, FX_GRPC_INTERNAL, "out of memory");
                goto out;
            }
            snprintf(rec->key, sizeof(rec->key), "%s", a[c].key);
            rec->gpuset = set;
            rec->created_ms = fx_mono_ms();
            rec->next = p->recs;
            p->recs = rec;
            np->offered_ms = 0;
        }
        pthread_mutex_unlock(&p->mu);
        struct flexpu_error err = {0};
        if (fx_slice_prepare(p->root, a[c].key, q->devices_ids, q->n_devices_ids,
                             p->cfg.dir_limits, &err) != 0 ||
            (p->mps && fx_mps_prepare(p->mps, a[c].key, &err) != 0)) {
            fail(r, FX_GRPC_INTERNAL, "%s", err.msg);
            goto out;
        }
        answer_fill(p, &a[c], set);
        ap[c] = &a[c].resp;
        FX_INFO(COMP, "allocated", "key=%s devices=%zu", a[c].key, q->n_devices_ids);
    }
    V1beta1__AllocateResponse resp = V1BETA1__ALLOCATE_RESPONSE__INIT;
    resp.n_container_responses = nc;
    resp.container_responses = ap;
    packed(r, &resp.base);
out:
    free(a);
    free(ap);
    v1beta1__allocate_request__free_unpacked(in, NULL);
}

/* The MPS limits of pod np's slice on the GPUs of `set`, in the order the
 * daemon sees them (its CUDA_VISIBLE_DEVICES: the node's order, as in
 * NVIDIA_VISIBLE_DEVICES): active threads = its share of cores, pinned
 * memory = its quota on each GPU, rounded down to MiB (a hard limit never
 * above the quota). Called with p->mu held. */
static void mps_limits(struct fx_plugin *p, const struct npod *np, uint32_t set, int share,
                       struct fx_mps_limits *lim)
{
    memset(lim, 0, sizeof(*lim));
    lim->thread_pct = share < 1 ? 1 : share > 100 ? 100 : share;
    size_t o = 0;
    for (int g = 0; g < p->ngpu && lim->ndev < FLEXPU_MAX_GPUS; g++) {
        if (!(set & (1u << g)))
            continue;
        int64_t mem = 0;
        for (int k = 0; k < np->alloc.ngpu; k++)
            if (strcmp(np->alloc.gpus[k].uuid, p->gpus[g].uuid) == 0)
                mem = np->alloc.gpus[k].mem;
        lim->mem_mib[lim->ndev++] = mem > 0 ? (mem >> 20 ? mem >> 20 : 1) : 0;
        o += (size_t)snprintf(lim->visible + o, sizeof(lim->visible) - o, "%s%s", o ? "," : "",
                              p->gpus[g].uuid);
        if (o >= sizeof(lim->visible))
            o = sizeof(lim->visible) - 1;
    }
}

static void prestart(void *ctx, const uint8_t *req, size_t len, struct fx_grpc_reply *r)
{
    struct fx_plugin *p = ctx;
    V1beta1__PreStartContainerRequest *in =
        v1beta1__pre_start_container_request__unpack(NULL, len, req);
    if (!in) {
        fail(r, FX_GRPC_INVALID_ARGUMENT, "malformed PreStartContainerRequest");
        return;
    }
    uint32_t set;
    char key[FX_SLICE_KEY_LEN + 1], ns[64] = "", name[256] = "", why[600] = "";
    if (gpuset_of(p, in->devices_ids, in->n_devices_ids, &set, r) != 0)
        goto out;
    if (fx_slice_key(in->devices_ids, in->n_devices_ids, key) != 0) {
        fail(r, FX_GRPC_INTERNAL, "out of memory");
        goto out;
    }
    /* The kubelet records the devices right after Allocate; ask again for a
     * short while in case this call raced it. */
    int64_t until = fx_mono_ms() + p->cfg.wait_ms;
    while (pod_holding(p, in->devices_ids, in->n_devices_ids, ns, sizeof(ns), name, sizeof(name),
                       why, sizeof(why)) != 0) {
        int64_t left = until - fx_mono_ms();
        if (left <= 0) {
            fail(r, FX_GRPC_FAILED_PRECONDITION, "slice %s: %s", key, why);
            goto out;
        }
        struct timespec ts = {0, (left < 200 ? left : 200) * 1000000L};
        nanosleep(&ts, NULL);
    }
    pthread_mutex_lock(&p->mu);
    struct timespec dl;
    deadline_ts(&dl, p->cfg.wait_ms);
    struct npod *np;
    while (!(np = pod_by_name(p, ns, name)) || !np->bound)
        if (pthread_cond_timedwait(&p->changed, &p->mu, &dl) == ETIMEDOUT)
            break;
    if (!np || !np->bound) {
        pthread_mutex_unlock(&p->mu);
        fail(r, FX_GRPC_FAILED_PRECONDITION,
             "pod %s/%s holds devices of flexpu.io/gpu but carries no allocation of "
             "flexpu-scheduler for node %s (annotation %s)",
             ns, name, p->node, FX_ANN_ALLOCATION);
        goto out;
    }
    if (np->refused[0]) {
        char why2[sizeof(np->refused)];
        snprintf(why2, sizeof(why2), "%s", np->refused);
        pthread_mutex_unlock(&p->mu);
        fail(r, FX_GRPC_FAILED_PRECONDITION,
             "pod %s/%s: its flexpu.io/allocation does not match its request, no slice is "
             "written: %s",
             ns, name, why2);
        goto out;
    }
    if (np->gpuset != set) {
        char got[FLEXPU_MAX_GPUS * (FX_UUID_MAX + 1)], want[sizeof(got)];
        describe_set(p, set, got, sizeof(got));
        describe_set(p, np->gpuset, want, sizeof(want));
        pthread_mutex_unlock(&p->mu);
        fail(r, FX_GRPC_FAILED_PRECONDITION,
             "pod %s/%s was given devices of GPU(s) %s but flexpu-scheduler assigned %s", ns,
             name, got, want);
        goto out;
    }
    if (np->alloc.borrowed && borrow_refused(p, np, why, sizeof(why))) {
        pthread_mutex_unlock(&p->mu);
        fail(r, FX_GRPC_FAILED_PRECONDITION, "pod %s/%s: its borrowed allocation is refused, no "
             "slice is written: %s", ns, name, why);
        goto out;
    }
    struct fx_slice_file f = {.cap_clock_mhz = p->cfg.cap_clock_mhz,
                              .borrower = np->alloc.borrowed};
    char borrowed_gpu[FX_UUID_MAX] = "";
    if (np->alloc.borrowed)
        snprintf(borrowed_gpu, sizeof(borrowed_gpu), "%s", np->alloc.gpus[0].uuid);
    snprintf(f.tenant, sizeof(f.tenant), "%s", np->uid);
    fx_slice_set_shares(&f, &np->alloc); /* one slice per pod, on each of its GPUs */
    fx_slice_set_cap(&f, np->cores_limit);
    f.priority = np->priority;
    struct fx_mps_limits lim;
    mps_limits(p, np, set, f.compute_share, &lim);
    snprintf(np->key, sizeof(np->key), "%s", key);
    np->offered_ms = 0;
    struct arec *rec = rec_by_key(p, key);
    if (!rec && (rec = calloc(1, sizeof(*rec)))) {
        snprintf(rec->key, sizeof(rec->key), "%s", key);
        rec->created_ms = fx_mono_ms();
        rec->next = p->recs;
        p->recs = rec;
    }
    if (rec) {
        rec->gpuset = set;
        snprintf(rec->uid, sizeof(rec->uid), "%s", np->uid);
    }
    pthread_mutex_unlock(&p->mu);
    struct flexpu_error err = {0};
    if (fx_slice_prepare(p->root, key, in->devices_ids, in->n_devices_ids, p->cfg.dir_limits,
                         &err) != 0) {
        fail(r, FX_GRPC_INTERNAL, "%s", err.msg);
        goto out;
    }
    /* mps: the daemon runs with the slice's limits before the container
     * may start; without them it does not start (slice.conf stays fail
     * closed). */
    if (p->mps && fx_mps_start(p->mps, key, &lim, &err) != 0) {
        fail(r, FX_GRPC_FAILED_PRECONDITION, "pod %s/%s: %s", ns, name, err.msg);
        goto out;
    }
    /* Its GPU is marked before the borrower can take memory there, so an
     * owner refused memory waits for it to be killed (reclaim_mem.h). */
    if (borrowed_gpu[0] && fx_reclaim_mark(p->root, borrowed_gpu, &err) != 0) {
        fail(r, FX_GRPC_INTERNAL, "%s", err.msg);
        goto out;
    }
    if (fx_slice_write(p->root, key, &f, &err) != 0) {
        fail(r, FX_GRPC_INTERNAL, "%s", err.msg);
        goto out;
    }
    FX_INFO(COMP, "slice written", "pod=%s/%s key=%s share=%d cap=%d memory=%lld", ns, name, key,
            f.compute_share, f.compute_cap, (long long)f.memory);
    V1beta1__PreStartContainerResponse resp = V1BETA1__PRE_START_CONTAINER_RESPONSE__INIT;
    packed(r, &resp.base);
out:
    v1beta1__pre_start_container_request__free_unpacked(in, NULL);
}

const struct fx_grpc_method fx_plugin_methods[] = {
    {"/v1beta1.DevicePlugin/GetDevicePluginOptions", fx_dp_get_options, NULL},
    {FX_DP_LIST_AND_WATCH, NULL, list_and_watch},
    {"/v1beta1.DevicePlugin/GetPreferredAllocation", preferred, NULL},
    {"/v1beta1.DevicePlugin/Allocate", allocate, NULL},
    {"/v1beta1.DevicePlugin/PreStartContainer", prestart, NULL},
    {NULL, NULL, NULL},
};

int fx_plugin_register_request(const char *endpoint, uint8_t **msg, size_t *len)
{
    V1beta1__DevicePluginOptions o = V1BETA1__DEVICE_PLUGIN_OPTIONS__INIT;
    o.pre_start_required = 1;
    o.get_preferred_allocation_available = 1;
    V1beta1__RegisterRequest q = V1BETA1__REGISTER_REQUEST__INIT;
    q.version = FX_DP_VERSION;
    q.endpoint = (char *)endpoint;
    q.resource_name = FX_DP_RESOURCE;
    q.options = &o;
    *len = v1beta1__register_request__get_packed_size(&q);
    *msg = malloc(*len ? *len : 1);
    if (!*msg)
        return -1;
    v1beta1__register_request__pack(&q, *msg);
    return 0;
}
