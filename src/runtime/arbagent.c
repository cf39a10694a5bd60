/* SPDX-License-Identifier: Apache-2.0 */
#include "runtime/arbagent.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "flexpu/log.h"
#include "runtime/arbiter.h"
#include "runtime/config.h"
#include "runtime/state.h"
#include "util/alloc.h"
#include "util/clock.h"

#define COMP "flexpu-node"
#define ROOT_MAX 200
#define MAX_GPUS 16
#define MAX_SRC 64 /* request files per GPU */
/* The most threads of one process taken as waiting for the GPU at once:
 * bounds the throttled time one request slot can add per look (the figure
 * is the tenant's word; it can inflate its own, never another's). */
#define WAITERS_MAX 64

#define LOAD(p) __atomic_load_n((p), __ATOMIC_SEQ_CST)
#define STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_SEQ_CST)

/* One slice's request file for one GPU, and the agent's own copy of its
 * records (the published fields are replaced at every round; seen_* are the
 * agent's view and stay). */
struct src {
    char key[FX_ARB_AGENT_KEY_MAX];
    int fd;
    int t;                       /* tenant index in the page */
    int seen;                    /* found by the current scan */
    uint64_t alive;              /* bit i: slot i's process holds its lock */
    uint64_t read_ns;            /* the last round that read it whole (0: none) */
    struct fx_slice_config policy;
    struct fx_proc_rec procs[FX_REQ_PROCS];
};

struct gpu {
    char uuid[FX_UUID_MAX];
    int fd;
    struct fx_gpu_state *st;     /* the page, mapped read-write here */
    struct src *src[MAX_SRC];
    int nsrc;
    /* A holder whose claimed work outlasted its drain: since when, and the
     * last round that charged it (0: none). */
    uint64_t overrun_since[FX_MAX_TENANTS], overrun_charged[FX_MAX_TENANTS];
    /* Of the holder's slice that started at shared_start: the overruns'
     * parts of the time they ran beside it (overrun_charge), kept off its
     * charge. */
    uint64_t shared_ns, shared_start;
    uint32_t fresh;              /* records made by this step's scan (bit per index) */
    uint64_t clock_next;         /* no SM clock sample before then */
    int clock_warned;
};

struct fx_arb_agent {
    char root[ROOT_MAX];
    struct gpu gpus[MAX_GPUS];
    int ngpu;
    int fixed;                   /* 1: only the GPUs added by fx_arb_agent_add_gpu */
    uint64_t next_scan;
    uint64_t rounds;
    fx_arb_clock_fn clock;
    void *clock_ctx;
    struct fx_arb_req scratch;
};

/* Names a tenant can choose (a slice key is the agent's own, a GPU UUID the
 * driver's; both come from directory entries tenants can create). */
static int plain_name(const char *s, size_t max)
{
    size_t n = 0;
    for (; s[n]; n++)
        if (n >= max || !((s[n] >= 'a' && s[n] <= 'z') || (s[n] >= 'A' && s[n] <= 'Z') ||
                          (s[n] >= '0' && s[n] <= '9') || s[n] == '-' || s[n] == '_'))
            return 0;
    return n > 0 && s[0] != '-';
}

int fx_arb_agent_new(struct fx_arb_agent **out, const char *root, struct flexpu_error *err)
{
    *out = NULL;
    if (strlen(root) >= ROOT_MAX - 80)
        return flexpu_error_set(err, FLEXPU_EINVAL, "arbiter root %s: too long", root);
    struct fx_arb_agent *a = fx_calloc(1, sizeof(*a));
    if (!a)
        return flexpu_error_set(err, FLEXPU_ENOMEM, "arbiter: out of memory");
    snprintf(a->root, sizeof(a->root), "%s", root);
    char dir[ROOT_MAX + 8];
    snprintf(dir, sizeof(dir), "%s/arb", root);
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        int e = errno;
        fx_free(a);
        return flexpu_error_set(err, FLEXPU_EIO, "%s: cannot create: %s", dir, strerror(e));
    }
    *out = a;
    return 0;
}

static void src_free(struct src *s)
{
    if (s->fd >= 0)
        close(s->fd);
    fx_free(s);
}

void fx_arb_agent_free(struct fx_arb_agent *a)
{
    if (!a)
        return;
    for (int i = 0; i < a->ngpu; i++) {
        struct gpu *g = &a->gpus[i];
        for (int k = 0; k < g->nsrc; k++)
            src_free(g->src[k]);
        munmap(g->st, sizeof(*g->st));
        close(g->fd);
    }
    fx_free(a);
}

void fx_arb_agent_set_clock(struct fx_arb_agent *a, fx_arb_clock_fn fn, void *ctx)
{
    a->clock = fn;
    a->clock_ctx = ctx;
}

uint64_t fx_arb_agent_rounds(const struct fx_arb_agent *a)
{
    return __atomic_load_n(&a->rounds, __ATOMIC_RELAXED);
}

static void init_page(void *buf, const void *arg)
{
    struct fx_gpu_state *st = buf;
    st->h.magic = FX_STATE_MAGIC;
    st->h.version = FX_STATE_VERSION;
    st->h.size = sizeof(*st);
    snprintf(st->uuid, sizeof(st->uuid), "%s", (const char *)arg);
}

static struct gpu *gpu_of(struct fx_arb_agent *a, const char *uuid, int add)
{
    for (int i = 0; i < a->ngpu; i++)
        if (strcmp(a->gpus[i].uuid, uuid) == 0)
            return &a->gpus[i];
    if (a->ngpu == MAX_GPUS || (a->fixed && !add))
        return NULL;
    char path[ROOT_MAX + FX_UUID_MAX + 16];
    snprintf(path, sizeof(path), "%s/arb/%s.state", a->root, uuid);
    struct gpu *g = &a->gpus[a->ngpu];
    struct flexpu_error err = {0};
    void *m = NULL;
    int fd = -1;
    /* Readable by every container (the directory is mounted read-only);
     * written by the agent alone. A page left by an earlier agent is taken
     * over as it is. */
    int rc = fx_shm_map(path, "arbiter page", sizeof(struct fx_gpu_state), FX_STATE_MAGIC,
                        FX_STATE_VERSION, 1, init_page, uuid, 0644, &fd, &m, &err);
    if (rc == FLEXPU_EPARSE) {
        /* One of another layout, left by an agent of another version: the
         * agent's own file, made again (a process mapping the page meanwhile
         * waits for it: arbreq.c). Processes started before keep the old
         * page, which nobody updates now: their waits end at their bound. */
        FX_WARN(COMP, "replacing an arbiter page flexpu cannot read", "path=%s reason=\"%s\"",
                path, err.msg);
        memset(&err, 0, sizeof(err));
        rc = unlink(path) == 0
                 ? fx_shm_map(path, "arbiter page", sizeof(struct fx_gpu_state), FX_STATE_MAGIC,
                              FX_STATE_VERSION, 1, init_page, uuid, 0644, &fd, &m, &err)
                 : flexpu_error_set(&err, FLEXPU_EIO, "cannot remove it: %s", strerror(errno));
    }
    if (rc != 0) {
        FX_ERROR(COMP, "cannot create the GPU's arbiter page", "path=%s reason=\"%s\"", path,
                 err.msg);
        return NULL;
    }
    memset(g, 0, sizeof(*g));
    snprintf(g->uuid, sizeof(g->uuid), "%s", uuid);
    g->st = m;
    g->fd = fd;
    /* The page's process slots stand for its tenants (one each, for the
     * node's readers: usage.c, metrics.c, flexpu-smi), alive while the agent
     * holds their locks. */
    for (int t = 0; t < FX_MAX_TENANTS; t++)
        (void)fx_shm_lock_byte(fd, FX_LOCK_SLOT_BASE + t, F_WRLCK, 0);
    a->ngpu++;
    return g;
}

int fx_arb_agent_add_gpu(struct fx_arb_agent *a, const char *uuid, struct flexpu_error *err)
{
    if (!plain_name(uuid, FX_UUID_MAX - 1))
        return flexpu_error_set(err, FLEXPU_EINVAL, "arbiter: GPU '%.96s': not a UUID", uuid);
    a->fixed = 1;
    if (!gpu_of(a, uuid, 1))
        return flexpu_error_set(err, FLEXPU_EBUSY, "arbiter: GPU %s: no page (%d GPUs at most)",
                                uuid, MAX_GPUS);
    return 0;
}

/* Empties a tenant record. Tenants read it while the agent writes (a
 * process may still hold this index), so every field is stored atomically,
 * in_use and gen first (a process that cached the index sees the change:
 * fx_gpu_agent_index); a field added to fx_tenant_rec must be added here. */
static void clear_tenant(struct fx_tenant_rec *tr)
{
    __atomic_store_n(&tr->in_use, 0u, __ATOMIC_RELEASE);
    __atomic_store_n(&tr->gen, 0u, __ATOMIC_RELAXED);
    /* gen 0 before any other field changes, for a process reading the
     * record between two loads of gen (fx_gpu_agent_tenant). */
    __atomic_thread_fence(__ATOMIC_RELEASE);
    STORE(&tr->reserved, 0u);
    STORE(&tr->priority, 0u);
    fx_name_store(tr->name, "", sizeof(tr->name));
    STORE(&tr->compute_share, 0u);
    STORE(&tr->compute_cap, 0u);
    STORE(&tr->gpu_time_ns, 0ull);
    STORE(&tr->throttled_ns, 0ull);
    STORE(&tr->vtime, 0ull);
    STORE(&tr->budget_ns, 0ll);
    STORE(&tr->budget_ts, 0ull);
    STORE(&tr->cap_clock_mhz, 0u);
    STORE(&tr->clock_mhz, 0u);
    STORE(&tr->slice_clock, 0ull);
}
_Static_assert(offsetof(struct fx_tenant_rec, reserved) + sizeof(uint32_t) ==
                   sizeof(struct fx_tenant_rec),
               "clear_tenant must clear a field added after reserved");

/* A tenant record is freed or reused: what the arbiter remembers of that
 * index belonged to the previous tenant (as state.c's forget_tenant). */
static void forget(struct gpu *g, int t)
{
    struct fx_arbiter *ar = &g->st->arb;
    uint32_t bit = 1u << t;
    __atomic_fetch_and(&ar->demand, ~bit, __ATOMIC_SEQ_CST);
    ar->seen_demand &= ~bit;
    if (LOAD(&ar->holder) == (uint32_t)t + 1) {
        STORE(&ar->holder, 0u);
        __atomic_fetch_add(&ar->seq, 1, __ATOMIC_SEQ_CST);
    }
    clear_tenant(&g->st->tenants[t]);
    g->overrun_since[t] = 0;
}

/* The record of the tenant the policy names, added if new; -1 when the page
 * is full. */
static int tenant_of(struct gpu *g, const struct fx_slice_config *pol)
{
    struct fx_tenant_rec *tr = g->st->tenants;
    int free_rec = -1;
    for (int t = 0; t < FX_MAX_TENANTS; t++) {
        if (tr[t].in_use && strncmp(tr[t].name, pol->tenant, sizeof(tr[t].name)) == 0)
            return t;
        if (!tr[t].in_use && free_rec < 0)
            free_rec = t;
    }
    if (free_rec >= 0) {
        forget(g, free_rec);
        fx_name_store(tr[free_rec].name, pol->tenant, sizeof(tr[free_rec].name));
        /* A gen never given before on this page (the counter lives on the
         * page, so an agent that takes a page over goes on from it), set
         * after the name: what makes the name valid to a process looking it
         * up, and an index cached from an earlier assignment invalid. */
        uint32_t gen = g->st->tenant_gens + 1;
        gen += gen == 0;
        g->st->tenant_gens = gen;
        __atomic_store_n(&tr[free_rec].gen, gen, __ATOMIC_RELEASE);
        __atomic_store_n(&tr[free_rec].in_use, 1u, __ATOMIC_RELEASE);
        g->fresh |= 1u << free_rec;
    }
    return free_rec;
}

static void set_policy(struct fx_tenant_rec *tr, const struct fx_slice_config *pol)
{
    STORE(&tr->compute_share, (uint32_t)pol->compute_share);
    STORE(&tr->compute_cap, (uint32_t)pol->compute_cap);
    STORE(&tr->priority, (uint32_t)pol->priority);
    /* The reference is the agent's (slice.conf); the clock it is compared
     * with is read by the agent (sample_clock). */
    STORE(&tr->cap_clock_mhz, (uint32_t)pol->cap_clock_mhz);
}

/* The slice's policy, as the agent wrote it: 0, or -1 (not yet named, or
 * unreadable: the slice is not arbitrated until it is). */
static int read_policy(const struct fx_arb_agent *a, const char *key, struct fx_slice_config *pol)
{
    char path[ROOT_MAX + 300];
    snprintf(path, sizeof(path), "%s/slices/%s/slice.conf", a->root, key);
    struct flexpu_error err = {0};
    fx_config_defaults(pol);
    if (fx_config_load_file(pol, path, &err) != 1)
        return -1;
    return pol->tenant[0] ? 0 : -1;
}

static struct src *src_of(struct gpu *g, const char *key)
{
    for (int k = 0; k < g->nsrc; k++)
        if (strcmp(g->src[k]->key, key) == 0)
            return g->src[k];
    if (g->nsrc == MAX_SRC)
        return NULL;
    struct src *s = fx_calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    snprintf(s->key, sizeof(s->key), "%.*s", FX_ARB_AGENT_KEY_MAX - 1, key);
    s->fd = -1;
    s->t = -1;
    g->src[g->nsrc++] = s;
    return s;
}

/* Opens the request file at dirfd/name without blocking or following a
 * link; -1 unless it is a regular file. */
static int open_req(int dirfd, const char *name)
{
    int fd = openat(dirfd, name, O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC);
    struct stat sb;
    if (fd >= 0 && (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode))) {
        close(fd);
        fd = -1;
    }
    return fd;
}

/* One slice directory: its request files, one per GPU its processes use. */
static void scan_slice(struct fx_arb_agent *a, int ledger_fd, const char *key)
{
    struct fx_slice_config pol;
    if (read_policy(a, key, &pol) != 0)
        return;
    int dfd = openat(ledger_fd, key, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
    if (!d) {
        if (dfd >= 0)
            close(dfd);
        return;
    }
    struct dirent *e;
    int files = 0;
    while ((e = readdir(d)) && files < MAX_GPUS) {
        size_t n = strlen(e->d_name);
        if (n < 5 || n - 4 >= FX_UUID_MAX || strcmp(e->d_name + n - 4, ".req") != 0)
            continue;
        char uuid[FX_UUID_MAX];
        snprintf(uuid, sizeof(uuid), "%.*s", (int)(n - 4), e->d_name);
        if (!plain_name(uuid, FX_UUID_MAX - 1))
            continue;
        files++;
        struct gpu *g = gpu_of(a, uuid, 0);
        struct src *s = g ? src_of(g, key) : NULL;
        if (!s)
            continue;
        /* Reopened at every scan: the tenant may have replaced the file. */
        int fd = open_req(dfd, e->d_name);
        if (fd < 0)
            continue;
        if (s->fd >= 0)
            close(s->fd);
        s->fd = fd;
        s->seen = 1;
        s->policy = pol;
        s->alive = 0;
        for (int i = 0; i < FX_REQ_PROCS; i++)
            if (fx_shm_byte_locked(fd, FX_LOCK_SLOT_BASE + i))
                s->alive |= 1ull << i;
    }
    closedir(d);
}

/* Drops what the scan did not find, and gives every source its tenant
 * record (policy from its slice.conf); records no source names are freed. */
static void settle_gpu(struct gpu *g)
{
    int named[FX_MAX_TENANTS] = {0};
    for (int k = 0; k < g->nsrc;) {
        struct src *s = g->src[k];
        if (!s->seen) {
            src_free(s);
            g->src[k] = g->src[--g->nsrc];
            continue;
        }
        s->seen = 0;
        k++;
    }
    /* Records first freed, then added, so a full page makes room. */
    for (int k = 0; k < g->nsrc; k++)
        for (int t = 0; t < FX_MAX_TENANTS; t++)
            if (g->st->tenants[t].in_use &&
                strncmp(g->st->tenants[t].name, g->src[k]->policy.tenant,
                        sizeof(g->st->tenants[t].name)) == 0)
                named[t] = 1;
    for (int t = 0; t < FX_MAX_TENANTS; t++)
        if (g->st->tenants[t].in_use && !named[t])
            forget(g, t);
    for (int k = 0; k < g->nsrc; k++) {
        struct src *s = g->src[k];
        s->t = tenant_of(g, &s->policy);
        if (s->t >= 0)
            set_policy(&g->st->tenants[s->t], &s->policy);
    }
}

static void scan(struct fx_arb_agent *a)
{
    char dir[ROOT_MAX + 16];
    snprintf(dir, sizeof(dir), "%s/ledger", a->root);
    int lfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = lfd >= 0 ? fdopendir(lfd) : NULL;
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)))
            if (plain_name(e->d_name, FX_ARB_AGENT_KEY_MAX - 1))
                scan_slice(a, lfd, e->d_name);
        closedir(d);
    } else if (lfd >= 0) {
        close(lfd);
    }
    for (int i = 0; i < a->ngpu; i++)
        settle_gpu(&a->gpus[i]);
}

/* What one round gathers per tenant besides the arbiter's activity. */
struct tally {
    uint64_t launches;           /* for the node's readers */
    uint64_t waited_us;          /* throttled time published since the last look */
};

/* The increase of a slot's waited_us since the agent's copy `mine` (a new
 * process in the slot starts from 0), bounded by what WAITERS_MAX threads
 * can wait from the file's previous look (or, first, about a scan before
 * it: a process's slot is read from the scan after it took it) to now. */
static uint64_t waited_since(const struct src *s, const struct fx_proc_rec *mine,
                             const struct fx_proc_rec *pub, int fresh, uint64_t now)
{
    uint32_t d = pub->waited_us - (fresh ? 0u : mine->waited_us); /* wraps */
    uint64_t since = s->read_ns && now > s->read_ns ? now - s->read_ns : 0;
    uint64_t most = (since + 2 * FX_ARB_AGENT_SCAN_NS) / 1000 * WAITERS_MAX;
    return d < most ? d : most;
}

/* Reads one request file into the agent's copy and adds its live processes
 * to the tenant's activity and tally. What is not a request file of this GPU
 * (the tenant broke its own) counts as no activity. */
static void read_src(struct fx_arb_agent *a, struct gpu *g, struct src *s,
                     struct fx_arb_activity *act, struct tally *tl, uint64_t now)
{
    struct fx_arb_req *r = &a->scratch;
    ssize_t n = pread(s->fd, r, sizeof(*r), 0);
    if (n != (ssize_t)sizeof(*r) || r->h.magic != FX_REQ_MAGIC ||
        r->h.version != FX_REQ_VERSION || r->h.size != sizeof(*r) ||
        strncmp(r->uuid, g->uuid, sizeof(r->uuid)) != 0)
        return;
    for (int i = 0; i < FX_REQ_PROCS; i++) {
        struct fx_proc_rec *mine = &s->procs[i], *pub = &r->procs[i];
        if (!((s->alive >> i) & 1) || !pub->in_use)
            continue;
        /* A new process in the slot starts with a fresh view. */
        uint64_t seen_l = mine->seen_launches, seen_ns = mine->seen_ns;
        int fresh = mine->attach_ns != pub->attach_ns || mine->pid != pub->pid;
        if (fresh)
            seen_l = pub->launches, seen_ns = 0;
        tl[s->t].waited_us += waited_since(s, mine, pub, fresh, now);
        *mine = *pub;
        mine->seen_launches = seen_l;
        mine->seen_ns = seen_ns;
        fx_arb_account(&act[s->t], mine, now);
        tl[s->t].launches += mine->launches;
    }
    s->read_ns = now;
}

/* Above any GPU's clock; keeps a slice's sum of samples (state.h) within 32
 * bits: a slice lasts at most ~220 ms, sampled every FX_ARB_AGENT_CLOCK_NS. */
#define CLOCK_MAX_MHZ 65535u

/* While a tenant whose cap refers to a clock holds the GPU, one sample of
 * the SM clock for its slice, which charge() in arbiter.c takes (the
 * library samples it itself outside Kubernetes: hooks_nvml.c). */
static void sample_clock(struct fx_arb_agent *a, struct gpu *g, uint64_t now)
{
    struct fx_arbiter *ar = &g->st->arb;
    uint32_t h = LOAD(&ar->holder);
    if (!a->clock || h == 0 || h > FX_MAX_TENANTS || !LOAD(&ar->slice_started) ||
        now < g->clock_next)
        return;
    struct fx_tenant_rec *tr = &g->st->tenants[h - 1];
    if (!LOAD(&tr->cap_clock_mhz) || LOAD(&tr->compute_cap) >= 100)
        return;
    g->clock_next = now + FX_ARB_AGENT_CLOCK_NS;
    uint32_t mhz = 0;
    if (a->clock(a->clock_ctx, g->uuid, &mhz) != 0 || mhz == 0) {
        if (!g->clock_warned)
            FX_WARN(COMP, "cannot read the GPU's SM clock; caps with cap_clock_mhz are charged "
                    "in GPU time only", "uuid=%s", g->uuid);
        g->clock_warned = 1;
        return;
    }
    mhz = mhz > CLOCK_MAX_MHZ ? CLOCK_MAX_MHZ : mhz;
    __atomic_fetch_add(&tr->slice_clock, (1ull << 32) | mhz, __ATOMIC_SEQ_CST);
    STORE(&tr->clock_mhz, mhz);
}

/* A holder loses the GPU with work still claimed once its drain has taken
 * FX_ARB_AGENT_DRAIN_MAX_NS, and a settle at the start of contention ends
 * after as long, whatever is still claimed (arbiter.h: a claim is the
 * tenant's word). Work still claimed then is an overrun: charged to its
 * tenant round by round, while it is claimed and its tenant does not hold
 * the GPU, for FX_ARB_DRAIN_MAX_NS at most (overrun_charge), so an honest
 * queue that needs more than the drain (several processes, long kernels, a
 * fast-path backlog) is paid for as before, and a tenant claiming endless
 * work pays for its claims, never delaying the others for them. A holder
 * cut short by a higher priority leaves its rest uncharged, as on the
 * shared state. This starts the overruns the round's decision made: `h`,
 * the holder before it; `ended`, when its slice ended (0: not yet);
 * `settled`, when a settle under way began (0: none). */
static void overrun_start(struct gpu *g, const struct fx_arb_activity *act, uint32_t h,
                          uint64_t ended, uint64_t settled, uint64_t now)
{
    struct fx_arbiter *ar = &g->st->arb;
    uint32_t holder = LOAD(&ar->holder), demand = LOAD(&ar->demand);
    if (h && holder != h && ended && now - ended >= FX_ARB_AGENT_DRAIN_MAX_NS &&
        act[h - 1].inflight)
        g->overrun_since[h - 1] = g->overrun_charged[h - 1] = now;
    if (settled && !ar->settle_since_ns && now - settled >= FX_ARB_AGENT_DRAIN_MAX_NS)
        for (int t = 0; t < FX_MAX_TENANTS; t++)
            if (((demand >> t) & 1) && act[t].inflight && holder != (uint32_t)t + 1)
                g->overrun_since[t] = g->overrun_charged[t] = now;
}

/* Charges the overruns for the time since the previous round, before this
 * round's decision (which charges the holder's slice when it ends). The
 * queues running side by side share that time: each overrun pays its part,
 * and so does the holder while it holds the GPU (its slice's charge covers
 * every round from the grant to the hand-over), which keeps the rest of it,
 * the overruns' parts, off its charge (g->shared_ns, taken by
 * fx_arb_decide). Without that the holder paid for its whole slice while
 * it had only part of the GPU, and the two charges added up to more than
 * the time that passed. Nobody else running, an overrun pays the whole time
 * (a capped tenant alone, whose cap it counts against). A settle charges
 * its tenants itself. */
static void overrun_charge(struct gpu *g, const struct fx_arb_activity *act, uint64_t now)
{
    struct fx_arbiter *ar = &g->st->arb;
    uint32_t h = LOAD(&ar->holder);
    int started = h && h <= FX_MAX_TENANTS && LOAD(&ar->slice_started);
    uint64_t running = 0, start = started ? LOAD(&ar->slice_start_ns) : now;
    if (!started || start != g->shared_start) {
        /* A new slice, or none: nothing of it shared yet. */
        g->shared_ns = 0;
        g->shared_start = start;
    }
    for (int t = 0; t < FX_MAX_TENANTS; t++) {
        if (g->overrun_since[t] && (!act[t].inflight || h == (uint32_t)t + 1 ||
                                    now - g->overrun_since[t] >= FX_ARB_DRAIN_MAX_NS))
            g->overrun_since[t] = 0;
        running += g->overrun_since[t] != 0;
    }
    int holder_runs = started && running;
    running += holder_runs;
    for (int t = 0; t < FX_MAX_TENANTS; t++) {
        if (!g->overrun_since[t])
            continue;
        uint64_t from = g->overrun_charged[t];
        if (!ar->settle_since_ns && now > from) {
            fx_arb_charge(g->st, t, (now - from) / running);
            /* Of the part of that time the holder's slice covers, what is
             * this overrun's is not the holder's. */
            from = from > start ? from : start;
            if (holder_runs && now > from)
                g->shared_ns += (now - from) / running;
        }
        g->overrun_charged[t] = now;
    }
}

/* One GPU's round. Returns 1 when it is contended (someone holds it, or a
 * tenant has work). */
static int round_gpu(struct fx_arb_agent *a, struct gpu *g, uint64_t now)
{
    struct fx_arb_activity act[FX_MAX_TENANTS];
    struct tally tl[FX_MAX_TENANTS];
    memset(act, 0, sizeof(act));
    memset(tl, 0, sizeof(tl));
    for (int k = 0; k < g->nsrc; k++)
        if (g->src[k]->t >= 0 && g->src[k]->fd >= 0)
            read_src(a, g, g->src[k], act, tl, now);
    struct fx_arbiter *ar = &g->st->arb;
    uint32_t claims = 0;
    for (int t = 0; t < FX_MAX_TENANTS; t++) {
        struct fx_arb_activity *x = &act[t];
        /* The holder is charged from the grant (fx_arb_decide) until the
         * round that takes the GPU back, whatever it says of its work: the
         * GPU was held for it. Charged only until the last round it showed
         * work, a holder that said it launched once and then launched
         * unseen held the GPU FX_ARB_IDLE_NS more, uncharged, each turn. */
        x->used_ns = now;
        if (g->st->tenants[t].in_use &&
            (x->inflight || x->waiting || (x->last_ns && now - x->last_ns < FX_ARB_IDLE_NS)))
            claims |= 1u << t;
    }
    __atomic_fetch_or(&ar->demand, claims, __ATOMIC_SEQ_CST);
    sample_clock(a, g, now);
    uint32_t h = LOAD(&ar->holder);
    uint64_t ended = LOAD(&ar->slice_started) && LOAD(&ar->slice_end_ns) <= now
                         ? LOAD(&ar->slice_end_ns)
                         : 0;
    uint64_t settled = ar->settle_since_ns;
    overrun_charge(g, act, now);
    if (h && h <= FX_MAX_TENANTS)
        act[h - 1].shared_ns = g->shared_ns;
    /* A record made by this step's scan exists from now: nothing of the
     * time since the previous round is its (fuzz_arb found a slice that
     * came back during a settle charged the whole 17.9 ms round). */
    for (int t = 0; t < FX_MAX_TENANTS; t++)
        if ((g->fresh >> t) & 1)
            act[t].since_ns = now;
    g->fresh = 0;
    fx_arb_decide(g->st, act, now, 1);
    overrun_start(g, act, h, ended, settled, now);
    /* What the node's readers look for in process slots, per tenant. */
    for (int t = 0; t < FX_MAX_TENANTS; t++) {
        struct fx_proc_rec *p = &g->st->procs[t];
        uint32_t on = g->st->tenants[t].in_use;
        STORE(&p->tenant, on ? t : -1);
        STORE(&p->launches, tl[t].launches);
        /* Throttled time, kept on the page as the shared state keeps it
         * (metrics, flexpu-smi read it there). */
        if (on && tl[t].waited_us)
            __atomic_fetch_add(&g->st->tenants[t].throttled_ns, tl[t].waited_us * 1000,
                               __ATOMIC_RELAXED);
        STORE(&p->last_launch_ns, act[t].last_ns);
        STORE(&p->inflight, act[t].inflight ? 1u : 0u);
        STORE(&p->in_use, on);
    }
    g->st->generation++;
    return LOAD(&ar->holder) != 0 || LOAD(&ar->demand) != 0;
}

uint64_t fx_arb_agent_step(struct fx_arb_agent *a, uint64_t now)
{
    if (now >= a->next_scan) {
        scan(a);
        a->next_scan = now + FX_ARB_AGENT_SCAN_NS;
    }
    int busy = 0;
    for (int i = 0; i < a->ngpu; i++)
        busy |= round_gpu(a, &a->gpus[i], now);
    __atomic_fetch_add(&a->rounds, 1, __ATOMIC_RELAXED);
    return busy ? FX_ARB_AGENT_POLL_NS : FX_ARB_AGENT_IDLE_NS;
}

void fx_arb_agent_run(struct fx_arb_agent *a, const int *stop)
{
    while (!__atomic_load_n(stop, __ATOMIC_ACQUIRE)) {
        uint64_t wait = fx_arb_agent_step(a, fx_mono_ns());
        struct timespec ts = {0, (long)wait};
        nanosleep(&ts, NULL);
    }
}
