/* SPDX-License-Identifier: Apache-2.0 */
/* The usage feed: samples, smoothing and the write decision (no I/O), then
 * the reader of the runtime's files and the agent's tick (see usage.h). */
#include "node/usage.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "flexpu/log.h"
#include "runtime/ledger.h"
#include "runtime/state.h"
#include "util/alloc.h"
#include "util/clock.h"

#define COMP "usage"
#define NS 1000000000.0

struct track_slice {
    char pod[FX_USAGE_POD_MAX];
    uint64_t gpu_time_ns, activity; /* the baselines */
    double busy, mean, mem;         /* the means: 0..1, 0..1, bytes */
};

struct track_gpu {
    int n;
    struct track_slice s[FX_USAGE_SLICES_MAX];
    double busy, mean, mem;
    int64_t cap; /* the GPU's memory */
    bool failed;
};

struct fx_usage {
    int ngpu;
    struct track_gpu g[FLEXPU_MAX_GPUS];
    bool started;
    uint64_t last_ns;
    bool tried;
    uint64_t try_ns;
    bool have_pub;
    uint64_t pub_ns, writes;
    struct fx_node_usage pub; /* what the Node holds */
};

struct fx_usage *fx_usage_new(int ngpu, const int64_t *mem_bytes)
{
    struct fx_usage *u = fx_calloc(1, sizeof(*u));
    if (!u)
        return NULL;
    u->ngpu = ngpu < 0 ? 0 : ngpu > FLEXPU_MAX_GPUS ? FLEXPU_MAX_GPUS : ngpu;
    for (int i = 0; i < u->ngpu; i++)
        u->g[i].cap = mem_bytes[i] > 0 ? mem_bytes[i] : 0;
    return u;
}

void fx_usage_free(struct fx_usage *u)
{
    fx_free(u);
}

/* The mean moved towards x over dt seconds: the short constant when rising,
 * the long one when falling. dt/(tau+dt) is the weight of a first-order
 * filter sampled every dt (no libm, and stable for any dt). */
static double ewma(double mean, double x, double dt)
{
    double tau = x > mean ? FX_USAGE_TAU_UP_S : FX_USAGE_TAU_DOWN_S;
    return mean + dt / (tau + dt) * (x - mean);
}

/* The even mean: one constant both ways. */
static double ewma_even(double mean, double x, double dt)
{
    return mean + dt / (FX_USAGE_TAU_MEAN_S + dt) * (x - mean);
}

/* Memory: what is held now counts at once; what was freed fades. */
static double ewma_mem(double mean, double x, double dt)
{
    return x >= mean ? x : mean + dt / (FX_USAGE_TAU_DOWN_S + dt) * (x - mean);
}

static const struct track_slice *find_track(const struct track_gpu *t, const char *pod)
{
    for (int j = 0; j < t->n; j++)
        if (strcmp(t->s[j].pod, pod) == 0)
            return &t->s[j];
    return NULL;
}

static double clamp01(double x)
{
    return x < 0 ? 0 : x > 1 ? 1 : x;
}

/* One GPU: the samples of the interval of dt seconds (0: the first
 * observation, which sets the means to the samples). */
static void observe_gpu(struct track_gpu *t, double dt, const struct fx_usage_obs_gpu *o)
{
    int n = o->nslices < 0 ? 0 : o->nslices > FX_USAGE_SLICES_MAX ? FX_USAGE_SLICES_MAX
                                                                   : o->nslices;
    double arb[FX_USAGE_SLICES_MAX], sum_arb = 0;
    const struct track_slice *old[FX_USAGE_SLICES_MAX];
    for (int k = 0; k < n; k++) {
        const struct fx_usage_obs_slice *s = &o->slices[k];
        old[k] = find_track(t, s->pod);
        arb[k] = 0;
        /* A counter that went backwards is a record reused or rewritten:
         * no sample from it, a new baseline. */
        if (old[k] && dt > 0 && s->gpu_time_ns >= old[k]->gpu_time_ns)
            arb[k] = clamp01((double)(s->gpu_time_ns - old[k]->gpu_time_ns) / NS / dt);
        sum_arb += arb[k];
    }
    struct track_slice next[FX_USAGE_SLICES_MAX];
    double gpu_sample = 0, gpu_mem = 0;
    for (int k = 0; k < n; k++) {
        const struct fx_usage_obs_slice *s = &o->slices[k];
        bool active = s->inflight || (old[k] ? s->activity != old[k]->activity : s->activity != 0);
        double sample = arb[k];
        if (active) {
            /* Alone it launched on the fast path, which nobody times: it
             * had at least what no other slice was charged for. */
            double untimed = clamp01(1 - (sum_arb - arb[k]));
            if (untimed > sample)
                sample = untimed;
        }
        double mem = s->mem < 0 ? 0 : s->mem > t->cap ? (double)t->cap : (double)s->mem;
        struct track_slice *x = &next[k];
        snprintf(x->pod, sizeof(x->pod), "%s", s->pod);
        x->gpu_time_ns = s->gpu_time_ns;
        x->activity = s->activity;
        x->busy = old[k] && dt > 0 ? ewma(old[k]->busy, sample, dt) : sample;
        x->mean = old[k] && dt > 0 ? ewma_even(old[k]->mean, sample, dt) : sample;
        if (!o->have_mem)
            x->mem = old[k] ? old[k]->mem : 0; /* not read this time */
        else
            x->mem = old[k] && dt > 0 ? ewma_mem(old[k]->mem, mem, dt) : mem;
        gpu_sample += sample;
        gpu_mem += mem;
    }
    /* Without the ledgers, a slice known only from them is not gone: it
     * stays (idle here) until they are read again. */
    for (int j = 0; !o->have_mem && j < t->n && n < FX_USAGE_SLICES_MAX; j++) {
        bool seen = false;
        for (int k = 0; k < n && !seen; k++)
            seen = strcmp(next[k].pod, t->s[j].pod) == 0;
        if (!seen) {
            next[n] = t->s[j];
            next[n].busy = dt > 0 ? ewma(t->s[j].busy, 0, dt) : 0;
            next[n].mean = dt > 0 ? ewma_even(t->s[j].mean, 0, dt) : 0;
            n++;
        }
    }
    gpu_sample = clamp01(gpu_sample);
    /* The driver's measure is a floor: the shared state is written by
     * tenants, and a borrower could make its owners look idle in it. */
    double driver = clamp01(o->driver_milli / (double)FX_USAGE_BUSY_MAX);
    if (driver > gpu_sample)
        gpu_sample = driver;
    if (gpu_mem > (double)t->cap)
        gpu_mem = (double)t->cap;
    t->busy = dt > 0 ? ewma(t->busy, gpu_sample, dt) : gpu_sample;
    t->mean = dt > 0 ? ewma_even(t->mean, gpu_sample, dt) : gpu_sample;
    if (o->have_mem)
        t->mem = dt > 0 ? ewma_mem(t->mem, gpu_mem, dt) : gpu_mem;
    /* Slices that are gone leave the GPU with their use. */
    memcpy(t->s, next, (size_t)n * sizeof(next[0]));
    t->n = n;
    t->failed = o->failed;
}

void fx_usage_observe(struct fx_usage *u, uint64_t now_ns, const struct fx_usage_obs_gpu *obs)
{
    if (u->started && now_ns <= u->last_ns)
        return; /* no time passed: nothing to sample */
    double dt = u->started ? (double)(now_ns - u->last_ns) / NS : 0;
    for (int i = 0; i < u->ngpu; i++)
        observe_gpu(&u->g[i], dt, &obs[i]);
    u->started = true;
    u->last_ns = now_ns;
}

static int milli(double x)
{
    return (int)(clamp01(x) * FX_USAGE_BUSY_MAX + 0.5);
}

void fx_usage_current(const struct fx_usage *u, int64_t wall_s, struct fx_node_usage *out)
{
    memset(out, 0, sizeof(*out));
    out->ts = wall_s;
    for (int i = 0; i < u->ngpu && u->started; i++) {
        const struct track_gpu *t = &u->g[i];
        struct fx_usage_gpu *g = &out->gpus[i];
        if (t->failed)
            continue; /* unknown, not idle */
        g->known = true;
        g->busy = milli(t->busy);
        g->mean = milli(t->mean);
        g->mem = (int64_t)(t->mem + 0.5);
        g->nslices = t->n;
        for (int k = 0; k < t->n; k++) {
            snprintf(g->slices[k].pod, sizeof(g->slices[k].pod), "%s", t->s[k].pod);
            g->slices[k].busy = milli(t->s[k].busy);
            g->slices[k].mean = milli(t->s[k].mean);
            g->slices[k].mem = (int64_t)(t->s[k].mem + 0.5);
        }
    }
}

/* `mean` is not looked at: it moves for minutes after every change of load
 * (its constant is a minute), and a figure of the last minute is served
 * well enough by the writes busy makes and the refresh. */
static bool moved(double busy, double mem, int pub_busy, int64_t pub_mem)
{
    return abs(milli(busy) - pub_busy) >= FX_USAGE_BUSY_DELTA ||
           llabs((int64_t)(mem + 0.5) - pub_mem) >= FX_USAGE_MEM_DELTA;
}

/* A meaningful change since the last write: a GPU known or unknown, a
 * value moved past its threshold, a slice come or gone. */
static bool changed(const struct fx_usage *u)
{
    for (int i = 0; i < u->ngpu; i++) {
        const struct track_gpu *t = &u->g[i];
        const struct fx_usage_gpu *p = &u->pub.gpus[i];
        if (p->known == t->failed)
            return true;
        if (t->failed)
            continue;
        if (moved(t->busy, t->mem, p->busy, p->mem) || p->nslices != t->n)
            return true;
        for (int k = 0; k < t->n; k++) {
            const struct fx_usage_slice *ps = NULL;
            for (int j = 0; j < p->nslices && !ps; j++)
                if (strcmp(p->slices[j].pod, t->s[k].pod) == 0)
                    ps = &p->slices[j];
            if (!ps || moved(t->s[k].busy, t->s[k].mem, ps->busy, ps->mem))
                return true;
        }
    }
    return false;
}

bool fx_usage_due(const struct fx_usage *u, uint64_t now_ns)
{
    const uint64_t min_ns = FX_USAGE_MIN_INTERVAL_S * 1000000000ull;
    const uint64_t refresh_ns = FX_USAGE_REFRESH_S * 1000000000ull;
    if (!u->started)
        return false;
    if (u->tried && now_ns - u->try_ns < min_ns)
        return false;
    if (!u->have_pub || now_ns - u->pub_ns >= refresh_ns)
        return true;
    return changed(u);
}

void fx_usage_written(struct fx_usage *u, uint64_t now_ns, const struct fx_node_usage *published)
{
    u->tried = true;
    u->try_ns = now_ns;
    if (!published)
        return;
    u->pub = *published;
    u->have_pub = true;
    u->pub_ns = now_ns;
    u->writes++;
}

uint64_t fx_usage_writes(const struct fx_usage *u)
{
    return u->writes;
}

/* ---- reading the runtime's files ---- */

/* Tenant names are pod UIDs; anything else a tenant wrote is skipped
 * rather than published on the Node. */
static bool name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n >= FX_USAGE_POD_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '.' || c == '_'))
            return false;
    }
    return true;
}

/* The slice named `name` (a NUL-terminated copy of a tenant-written field),
 * added when new; NULL when the name is refused or the GPU is full. */
static struct fx_usage_obs_slice *slice_of(struct fx_usage_obs_gpu *o, const char *name)
{
    if (!name_ok(name))
        return NULL;
    for (int k = 0; k < o->nslices; k++)
        if (strcmp(o->slices[k].pod, name) == 0)
            return &o->slices[k];
    if (o->nslices == FX_USAGE_SLICES_MAX)
        return NULL;
    struct fx_usage_obs_slice *s = &o->slices[o->nslices++];
    memset(s, 0, sizeof(*s));
    snprintf(s->pod, sizeof(s->pod), "%s", name);
    return s;
}

static void ledger_mem(const struct fx_ledger_handle *l, void *ctx)
{
    char name[FX_TENANT_NAME_MAX];
    memcpy(name, l->led->tenant, sizeof(name) - 1); /* may lack its NUL */
    name[sizeof(name) - 1] = '\0';
    struct fx_usage_obs_slice *s = slice_of(ctx, name);
    int procs = 0;
    uint64_t used = fx_ledger_used(l, &procs);
    if (s)
        s->mem += used > INT64_MAX / 2 ? INT64_MAX / 2 : (int64_t)used;
}

static void ledger_skip(const char *msg, void *ctx)
{
    (void)ctx;
    FX_DEBUG(COMP, "ledger skipped", "error=\"%s\"", msg);
}

static void read_state(const struct fx_gpu *g, struct fx_usage_obs_gpu *out)
{
    struct fx_usage_obs_slice *of[FX_MAX_TENANTS];
    for (int t = 0; t < FX_MAX_TENANTS; t++) {
        const struct fx_tenant_rec *tr = &g->st->tenants[t];
        of[t] = NULL;
        if (!__atomic_load_n(&tr->in_use, __ATOMIC_RELAXED))
            continue;
        char name[FX_TENANT_NAME_MAX];
        memcpy(name, tr->name, sizeof(name) - 1);
        name[sizeof(name) - 1] = '\0';
        if ((of[t] = slice_of(out, name)))
            of[t]->gpu_time_ns += __atomic_load_n(&tr->gpu_time_ns, __ATOMIC_RELAXED);
    }
    for (int i = 0; i < FX_MAX_PROCS; i++) {
        const struct fx_proc_rec *p = &g->st->procs[i];
        int32_t t = __atomic_load_n(&p->tenant, __ATOMIC_RELAXED);
        if (!__atomic_load_n(&p->in_use, __ATOMIC_RELAXED) || t < 0 || t >= FX_MAX_TENANTS ||
            !of[t] || !fx_gpu_slot_alive(g, i))
            continue;
        /* Fast-path launches move `launches`, arbitrated ones stamp
         * last_launch_ns: either moving is a launch. */
        of[t]->activity += __atomic_load_n(&p->launches, __ATOMIC_RELAXED) +
                           __atomic_load_n(&p->last_launch_ns, __ATOMIC_RELAXED);
        if (__atomic_load_n(&p->inflight, __ATOMIC_RELAXED) ||
            __atomic_load_n(&p->launching, __ATOMIC_RELAXED))
            of[t]->inflight = true;
    }
}

int fx_usage_read_gpu(const char *state_dir, const char *ledger_root, const char *uuid,
                      int64_t mem_bytes, struct fx_usage_obs_gpu *out, struct flexpu_error *err)
{
    memset(out, 0, sizeof(*out));
    char path[512];
    int rc = 0;
    if (snprintf(path, sizeof(path), "%s/%s.state", state_dir, uuid) >= (int)sizeof(path)) {
        rc = flexpu_error_set(err, FLEXPU_EINVAL, "state file path too long: '%.100s...'", path);
    } else {
        struct fx_gpu g;
        rc = fx_gpu_open_readonly(&g, path, err);
        if (rc == 0) {
            read_state(&g, out);
            fx_gpu_detach(&g);
        } else if (rc == FLEXPU_ENOENT) {
            rc = 0; /* no process has used the GPU yet */
        }
    }
    out->failed = rc != 0;
    out->have_mem = ledger_root != NULL;
    if (ledger_root)
        fx_ledger_scan(ledger_root, uuid, ledger_mem, ledger_skip, out);
    for (int k = 0; k < out->nslices; k++)
        if (out->slices[k].mem > mem_bytes)
            out->slices[k].mem = mem_bytes;
    return rc;
}

int fx_usage_read_driver(struct fx_nvml *n, const struct fx_node_gpu *g,
                         struct fx_usage_obs_gpu *out, bool *measured, struct flexpu_error *err)
{
    int milli = -1;
    out->driver_milli = 0;
    *measured = false;
    int rc = fx_nvml_utilization(n, g, &milli, err);
    if (rc) {
        out->failed = true;
        return rc;
    }
    *measured = milli >= 0;
    out->driver_milli = milli < 0 ? 0 : milli;
    return 0;
}

/* ---- the agent's feed ---- */

struct fx_usage_feed {
    struct fx_usage *u;
    struct kube_client *client;
    char node[256], state_dir[512], ledger_root[512];
    int ngpu;
    struct fx_node_gpu gpus[FLEXPU_MAX_GPUS];
    struct fx_usage_obs_gpu obs[FLEXPU_MAX_GPUS];
    struct fx_nvml *nvml;
    /* Said once per GPU: the driver does not measure it; and, until it
     * can be read again, that reading it failed. */
    bool unmeasured_said[FLEXPU_MAX_GPUS], failed_said[FLEXPU_MAX_GPUS];
    int stop; /* atomic */
    pthread_t tid;
};

static int patch_usage(struct kube_client *c, const char *node, const char *text,
                       struct flexpu_error *err)
{
    char path[400], esc[300];
    kube_escape(node, esc, sizeof(esc));
    snprintf(path, sizeof(path), "/api/v1/nodes/%s", esc);
    json_t *patch = json_pack("{s:{s:{s:s}}}", "metadata", "annotations", FX_ANN_NODE_USAGE, text);
    if (!patch)
        return flexpu_error_set(err, FLEXPU_ENOMEM, "out of memory");
    long status;
    int rc = kube_request(c, "PATCH", path, patch, KUBE_MERGE_PATCH, &status, NULL, err);
    json_decref(patch);
    return rc;
}

/* Writes what is due; 0 or the error of a failed write. */
static int publish(struct fx_usage_feed *f, uint64_t now, struct flexpu_error *err)
{
    struct fx_node_usage *cur = fx_malloc(sizeof(*cur));
    if (!cur)
        return flexpu_error_set(err, FLEXPU_ENOMEM, "out of memory");
    fx_usage_current(f->u, (int64_t)time(NULL), cur);
    char *text = fx_node_usage_format(cur, f->ngpu);
    int rc = text ? patch_usage(f->client, f->node, text, err)
                  : flexpu_error_set(err, FLEXPU_ENOMEM, "out of memory");
    fx_usage_written(f->u, now, rc == 0 ? cur : NULL);
    if (rc == 0)
        FX_DEBUG(COMP, "usage published", "node=%s writes=%llu bytes=%zu", f->node,
                 (unsigned long long)f->u->writes, strlen(text));
    free(text);
    fx_free(cur);
    return rc;
}

/* The driver's floor under GPU i's figure, its failures said once. */
static void read_driver(struct fx_usage_feed *f, int i)
{
    if (!f->nvml)
        return;
    struct flexpu_error e = {0};
    bool measured;
    if (fx_usage_read_driver(f->nvml, &f->gpus[i], &f->obs[i], &measured, &e)) {
        if (!f->failed_said[i])
            FX_WARN(COMP, "cannot read the driver's utilization: the GPU's use is unknown",
                    "uuid=%s error=\"%s\"", f->gpus[i].uuid, e.msg);
        f->failed_said[i] = true;
        return;
    }
    f->failed_said[i] = false;
    if (!measured && !f->unmeasured_said[i])
        FX_INFO(COMP, "the driver does not measure this GPU's utilization: its use is the "
                      "runtime's figure alone", "uuid=%s", f->gpus[i].uuid);
    f->unmeasured_said[i] |= !measured;
}

static void *feed_main(void *p)
{
    struct fx_usage_feed *f = p;
    for (unsigned n = 0; !__atomic_load_n(&f->stop, __ATOMIC_ACQUIRE); n++) {
        const char *ledgers = n % FX_USAGE_MEM_EVERY == 0 ? f->ledger_root : NULL;
        for (int i = 0; i < f->ngpu; i++) {
            struct flexpu_error e = {0};
            if (fx_usage_read_gpu(f->state_dir, ledgers, f->gpus[i].uuid, f->gpus[i].mem_bytes,
                                  &f->obs[i], &e) &&
                ledgers)
                FX_DEBUG(COMP, "state file unreadable: the GPU's use is unknown",
                         "uuid=%s error=\"%s\"", f->gpus[i].uuid, e.msg);
            read_driver(f, i);
        }
        uint64_t now = fx_mono_ns();
        fx_usage_observe(f->u, now, f->obs);
        struct flexpu_error err = {0};
        /* Tried at most once per FX_USAGE_MIN_INTERVAL_S: each failure is said. */
        if (fx_usage_due(f->u, now) && publish(f, now, &err))
            FX_WARN(COMP, "cannot publish the GPU usage; will retry", "node=%s error=\"%s\"",
                    f->node, err.msg);
        struct timespec ts = {0, FX_USAGE_SAMPLE_MS * 1000000L};
        nanosleep(&ts, NULL);
    }
    return NULL;
}

struct fx_usage_feed *fx_usage_feed_start(const struct fx_usage_feed_config *c,
                                          struct flexpu_error *err)
{
    struct fx_usage_feed *f = fx_calloc(1, sizeof(*f));
    if (!f) {
        flexpu_error_set(err, FLEXPU_ENOMEM, "out of memory");
        return NULL;
    }
    f->ngpu = c->ngpu < 0 ? 0 : c->ngpu > FLEXPU_MAX_GPUS ? FLEXPU_MAX_GPUS : c->ngpu;
    memcpy(f->gpus, c->gpus, (size_t)f->ngpu * sizeof(f->gpus[0]));
    f->nvml = c->nvml;
    snprintf(f->node, sizeof(f->node), "%s", c->node);
    snprintf(f->state_dir, sizeof(f->state_dir), "%s", c->state_dir);
    snprintf(f->ledger_root, sizeof(f->ledger_root), "%s", c->ledger_root);
    int64_t mem[FLEXPU_MAX_GPUS];
    for (int i = 0; i < f->ngpu; i++)
        mem[i] = f->gpus[i].mem_bytes;
    f->u = fx_usage_new(f->ngpu, mem);
    if (!f->u) {
        flexpu_error_set(err, FLEXPU_ENOMEM, "out of memory");
        fx_free(f);
        return NULL;
    }
    /* Its own client: the main thread's is busy with the inventory. */
    f->client = kube_client_new(c->kube, "flexpu-node", err);
    if (!f->client || pthread_create(&f->tid, NULL, feed_main, f) != 0) {
        if (f->client)
            flexpu_error_set(err, FLEXPU_EIO, "cannot start the usage feed's thread");
        kube_client_free(f->client);
        fx_usage_free(f->u);
        fx_free(f);
        return NULL;
    }
    return f;
}

void fx_usage_feed_stop(struct fx_usage_feed *f)
{
    if (!f)
        return;
    __atomic_store_n(&f->stop, 1, __ATOMIC_RELEASE);
    pthread_join(f->tid, NULL);
    kube_client_free(f->client);
    fx_usage_free(f->u);
    fx_free(f);
}
