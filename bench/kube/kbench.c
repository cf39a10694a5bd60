/* SPDX-License-Identifier: Apache-2.0 */
/* flexpu-kbench: the Kubernetes scheduling benchmark (docs/KUBERNETES.md,
 * "Benchmark"). On a running API server with kwok it creates N fake nodes of
 * 8 GPUs (CPU, memory and GPU model of the trace's 8-GPU nodes, cycled),
 * samples P pods from the Alibaba trace with a fixed seed, and measures each
 * scheduler given with --scheduler, one at a time, on the same nodes:
 *
 *   backlog: all P pods are created while the scheduler is not running; it
 *     is then started, and binding is timed from its start until every pod
 *     is bound or no new binding came for --idle seconds:
 *     throughput = pods bound / (last binding - start).
 *   stream: with the scheduler running, S pods are created at a fixed rate;
 *     the latency of each is from its creation being acknowledged to its
 *     binding being seen on a watch (both on this program's monotonic clock).
 *
 * Between phases the pods are deleted (grace period 0) and their absence is
 * awaited. The scheduler's peak RSS is VmHWM from /proc/PID/status, read just
 * before it is stopped. Every wait is bounded (--timeout).
 *
 * flexpu pods ask flexpu.io/gpu (+ flexpu.io/gpu-cores for a share; kind
 * flexpu-whole leaves the cores out, so a share takes a whole GPU); pods for
 * the default kube-scheduler ask the same number of whole nvidia.com/gpu, which
 * the nodes also advertise (8 each): the no-slicing baseline. Kind peer is
 * scheduler-plugins' Coscheduling and CapacityScheduling (docs/KUBERNETES.md,
 * "Peers with queues and gangs"): whole nvidia.com/gpu too, a queue is a
 * namespace NS-qK with one ElasticQuota, a gang a PodGroup made before its
 * pods. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "flexpu/rng.h"
#include "kube/contract.h"
#include "kube/kube.h"
#include "sim/trace.h"
#include "util/alloc.h"
#include "util/procstat.h"

#ifndef FLEXPU_TRACE_DIR
#define FLEXPU_TRACE_DIR "../shared/data/alibaba-gpu-v2023"
#endif

#define GPUS_PER_NODE 8
#define CHUNK         500 /* pods per label value, one DeleteCollection each */
#define MAX_SCHED     4
#define MAX_CLIENTS   16
#define PEER_SCHED    "scheduler-plugins" /* the peer's profile (bench/kube/run.sh) */
#define PEER_API      "/apis/scheduling.x-k8s.io/v1alpha1/namespaces/"

enum kind { KIND_FLEXPU, KIND_KUBE, KIND_PEER };

struct sched {
    char name[64];
    enum kind kind;
    bool whole; /* flexpu-whole: flexpu pods ask whole GPUs, as the others do */
    const char *cmd;
};

static struct {
    const char *kubeconfig, *trace_dir, *log_dir, *ns, *out;
    int nodes, pods, stream_pods, clients;
    int queues, gang; /* flexpu pods: spread over kq0..kqN-1; in pod groups of gang */
    double rate, idle_s, timeout_s;
    uint64_t seed;
    struct sched sched[MAX_SCHED];
    int nsched;
    bool peer; /* a --scheduler of kind peer: its namespaces and PodGroups exist */
} opt = {.trace_dir = FLEXPU_TRACE_DIR,
         .log_dir = ".",
         .ns = "kbench",
         .nodes = 1000,
         .pods = 10000,
         .stream_pods = -1,
         .clients = 4,
         .rate = 100,
         .idle_s = 10,
         .timeout_s = 1800,
         .seed = 42};

static struct kube_config cfg;
static struct kube_client *clients[MAX_CLIENTS];
static struct fx_trace trace;
static int *node_src;   /* trace node index of each benchmark node */
static int *pod_src;    /* trace pod index of each sampled pod */
static volatile sig_atomic_t child_pid;

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void sleep_until_ms(double t)
{
    struct timespec ts = {(time_t)(t / 1e3), (long)(fmod(t, 1e3) * 1e6)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
        ;
}

static void sleep_ms(double ms)
{
    sleep_until_ms(now_ms() + ms);
}

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "kbench: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static void on_signal(int sig)
{
    if (child_pid > 0)
        kill((pid_t)child_pid, SIGKILL);
    signal(sig, SIG_DFL);
    raise(sig);
}

/* ---- parallel requests: one thread per client, indices taken in turn ---- */

struct pfor {
    int n;
    atomic_int next;
    void *ctx;
    /* returns 0 or a FLEXPU_E* code; errors are counted, the loop goes on */
    int (*fn)(struct kube_client *c, int i, void *ctx);
    atomic_int errors;
    int worker;
};

struct pfor_arg {
    struct pfor *p;
    int w;
};

static void *pfor_main(void *a)
{
    struct pfor_arg *pa = a;
    struct pfor *p = pa->p;
    for (;;) {
        int i = atomic_fetch_add(&p->next, 1);
        if (i >= p->n)
            break;
        if (p->fn(clients[pa->w], i, p->ctx))
            atomic_fetch_add(&p->errors, 1);
    }
    return NULL;
}

static int parallel_for(int n, int (*fn)(struct kube_client *, int, void *), void *ctx)
{
    struct pfor p = {.n = n, .ctx = ctx, .fn = fn};
    atomic_init(&p.next, 0);
    atomic_init(&p.errors, 0);
    pthread_t t[MAX_CLIENTS];
    struct pfor_arg a[MAX_CLIENTS];
    for (int w = 0; w < opt.clients; w++) {
        a[w] = (struct pfor_arg){&p, w};
        pthread_create(&t[w], NULL, pfor_main, &a[w]);
    }
    for (int w = 0; w < opt.clients; w++)
        pthread_join(t[w], NULL);
    return atomic_load(&p.errors);
}

/* ---- nodes ---- */

/* GPU memory by model: a trailing "M<GiB>" in the name (V100M16, V100M32),
 * else 32 GiB. The trace's pods ask no GPU memory, so this only fills the
 * inventory. */
static int64_t model_mem(const char *model)
{
    const char *m = strrchr(model, 'M');
    if (m && m[1] >= '0' && m[1] <= '9') {
        char *end;
        long g = strtol(m + 1, &end, 10);
        if (!*end && g > 0 && g < 1024)
            return (int64_t)g << 30;
    }
    return (int64_t)32 << 30;
}

static json_t *node_json(int i)
{
    const struct fx_trace_node *tn = &trace.nodes[node_src[i]];
    char name[64], cpu[32], mem[32], gpu[16], cores[16], gmem[32], text[64];
    snprintf(name, sizeof(name), "kb-node-%05d", i);
    struct fx_node_inv inv = {.ngpu = GPUS_PER_NODE};
    for (int g = 0; g < GPUS_PER_NODE; g++) {
        struct fx_gpu_inv *v = &inv.gpus[g];
        snprintf(v->uuid, sizeof(v->uuid), "GPU-%s-%d", name, g);
        snprintf(v->model, sizeof(v->model), "%s", tn->model);
        v->mem_bytes = model_mem(tn->model);
        v->numa = g / 4;
        v->group = g / 4;
        v->healthy = true;
    }
    char *invs = fx_node_inv_format(&inv);
    snprintf(cpu, sizeof(cpu), "%lldm", (long long)tn->cpu_milli);
    snprintf(mem, sizeof(mem), "%lldMi", (long long)tn->mem_mib);
    snprintf(gpu, sizeof(gpu), "%d", GPUS_PER_NODE * 16);
    snprintf(cores, sizeof(cores), "%d", GPUS_PER_NODE * 100);
    snprintf(gmem, sizeof(gmem), "%lld",
             (long long)(GPUS_PER_NODE * model_mem(tn->model)));
    snprintf(text, sizeof(text), "%d", GPUS_PER_NODE);
    json_t *res = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "cpu", cpu, "memory", mem,
                            "pods", "110", FX_RES_GPU, gpu, FX_RES_GPU_CORES, cores,
                            FX_RES_GPU_MEMORY, gmem, "nvidia.com/gpu", text);
    json_t *n = json_pack("{s:s, s:s, s:{s:s, s:{s:s, s:s}, s:{s:s, s:s}}, s:{s:O, s:O}}",
                          "apiVersion", "v1", "kind", "Node", "metadata", "name", name, "labels",
                          "type", "kwok", "app", "kbench", "annotations", "kwok.x-k8s.io/node",
                          "fake", FX_ANN_NODE_GPUS, invs ? invs : "[]", "status", "allocatable",
                          res, "capacity", res);
    json_decref(res);
    free(invs);
    return n;
}

static int create_node(struct kube_client *c, int i, void *ctx)
{
    (void)ctx;
    json_t *n = node_json(i);
    long st;
    struct flexpu_error err;
    int rc = kube_request(c, "POST", "/api/v1/nodes", n, NULL, &st, NULL, &err);
    json_decref(n);
    if (rc == FLEXPU_EEXIST)
        return 0; /* a previous run on this cluster made it */
    if (rc)
        say("creating node %d: %s", i, err.msg);
    return rc;
}

/* Lists paged; calls fn on every item. Returns the item count or -1. */
static int list_each(struct kube_client *c, const char *path, const char *labels,
                     void (*fn)(json_t *, void *), void *ctx)
{
    char url[2048], cont[1024] = "", e1[256], e2[1100];
    int count = 0;
    for (;;) {
        snprintf(url, sizeof(url), "%s?limit=500&labelSelector=%s%s%s", path,
                 kube_escape(labels, e1, sizeof(e1)), cont[0] ? "&continue=" : "",
                 cont[0] ? kube_escape(cont, e2, sizeof(e2)) : "");
        long st;
        json_t *page;
        struct flexpu_error err;
        if (kube_request_list(c, url, &st, &page, &err)) {
            say("listing %s: %s", path, err.msg);
            return -1;
        }
        size_t i;
        json_t *it;
        json_t *items = json_object_get(page, "items");
        json_array_foreach(items, i, it)
        {
            if (fn)
                fn(it, ctx);
            count++;
        }
        const char *next = kube_str(page, "metadata.continue");
        snprintf(cont, sizeof(cont), "%s", next && strlen(next) < sizeof(cont) ? next : "");
        json_decref(page);
        if (!cont[0])
            return count;
    }
}

static void count_ready(json_t *node, void *ctx)
{
    size_t i;
    json_t *cnd;
    json_array_foreach(kube_get(node, "status.conditions"), i, cnd)
    {
        const char *t = kube_str(cnd, "type"), *s = kube_str(cnd, "status");
        if (t && s && strcmp(t, "Ready") == 0 && strcmp(s, "True") == 0)
            ++*(int *)ctx;
    }
}

/* ---- pods ---- */

struct phase {
    char prefix[16]; /* pod names are PREFIX%05d */
    int n;
    enum kind kind;
    bool whole;      /* GPUs asked whole (every kind but flexpu without flexpu-whole) */
    const int *src;  /* trace pod of each pod */
    double rate;     /* 0: as fast as the clients go */
    double t0;
    double *ack, *bind;
    unsigned char *seen;
    int *gpus;       /* whole GPUs (kube) or GPUs in the allocation (flexpu) of each */
    pthread_mutex_t mu;
    int synced; /* the watch's first list is done */
    int nseen, nbound;
    double first_bind, last_bind;
    int *node;            /* node index of each bound pod, or -1 */
    uint16_t *mask;       /* flexpu: bit g set when the pod's allocation names GPU g */
    unsigned char *gone;  /* bound, then deleted before the phase ended: a preemption */
    int ngone;
    bool taken;           /* the figures are taken: deletions now are the benchmark's */
    int bad_alloc;
};

/* Bound, and still there: what the cluster holds at the end of the phase. */
static bool held(const struct phase *ph, int i)
{
    return ph->bind[i] > 0 && !ph->gone[i];
}

static int pod_gpus(const struct fx_trace_pod *tp)
{
    return tp->num_gpu; /* a share (gpu_milli < 1000) has num_gpu 1: one whole GPU */
}

/* A gang's members are consecutive pods and share a queue. */
static int group_of(int i)
{
    return opt.gang > 1 ? i / opt.gang : i;
}

static int queue_of(int i)
{
    return opt.queues > 0 ? group_of(i) % opt.queues : 0;
}

/* The namespace of pod i: the peer's queues are namespaces (one ElasticQuota
 * each), so its pods go to NS-qK; everyone else's to NS. */
static const char *pod_ns(const struct phase *ph, int i, char *buf, size_t n)
{
    if (ph->kind != KIND_PEER || opt.queues == 0)
        return opt.ns;
    snprintf(buf, n, "%s-q%d", opt.ns, queue_of(i));
    return buf;
}

/* Members of the group of pod i: gang, or what is left for the last one. */
static int group_size(const struct phase *ph, int i)
{
    int left = ph->n - group_of(i) * opt.gang;
    return left < opt.gang ? left : opt.gang;
}

static json_t *pod_json(const struct phase *ph, int i, const char *name)
{
    const struct fx_trace_pod *tp = &trace.pods[ph->src[i]];
    char cpu[32], mem[32], chunk[16], n1[16], n2[16], nsb[64];
    snprintf(cpu, sizeof(cpu), "%lldm", (long long)tp->cpu_milli);
    snprintf(mem, sizeof(mem), "%lldMi", (long long)tp->mem_mib);
    snprintf(chunk, sizeof(chunk), "c%d", i / CHUNK);
    json_t *lim = json_pack("{s:s, s:s}", "cpu", cpu, "memory", mem);
    if (tp->num_gpu > 0) {
        snprintf(n1, sizeof(n1), "%d", pod_gpus(tp));
        if (ph->kind != KIND_FLEXPU) {
            json_object_set_new(lim, "nvidia.com/gpu", json_string(n1));
        } else {
            json_object_set_new(lim, FX_RES_GPU, json_string(n1));
            if (tp->gpu_milli < FLEXPU_GPU_MILLI && !ph->whole) {
                snprintf(n2, sizeof(n2), "%d", (tp->gpu_milli + 9) / 10);
                json_object_set_new(lim, FX_RES_GPU_CORES, json_string(n2));
            }
        }
    }
    json_t *ctr = json_pack("{s:s, s:s, s:{s:O, s:O}}", "name", "c", "image", "kbench",
                            "resources", "limits", lim, "requests", lim);
    json_decref(lim);
    json_t *spec = json_pack("{s:[o], s:i}", "containers", ctr, "terminationGracePeriodSeconds", 0);
    if (ph->kind == KIND_FLEXPU)
        json_object_set_new(spec, "schedulerName", json_string("flexpu-scheduler"));
    else if (ph->kind == KIND_PEER)
        json_object_set_new(spec, "schedulerName", json_string(PEER_SCHED));
    json_t *pod = json_pack("{s:s, s:s, s:{s:s, s:s, s:{s:s, s:s}}, s:o}", "apiVersion", "v1",
                            "kind", "Pod", "metadata", "name", name, "namespace",
                            pod_ns(ph, i, nsb, sizeof(nsb)), "labels", "app", "kbench",
                            "kbench-chunk", chunk, "spec", spec);
    json_t *labels = kube_get(pod, "metadata.labels");
    char v[64];
    if (ph->kind == KIND_FLEXPU && opt.queues > 0) {
        snprintf(v, sizeof(v), "kq%d", queue_of(i));
        json_object_set_new(labels, "flexpu.io/queue", json_string(v));
    }
    if (ph->kind != KIND_KUBE && opt.gang > 1) {
        snprintf(v, sizeof(v), "%sg%d", ph->prefix, group_of(i));
        if (ph->kind == KIND_PEER) {
            /* its PodGroup (make_podgroups) holds minMember */
            json_object_set_new(labels, "scheduling.x-k8s.io/pod-group", json_string(v));
        } else {
            json_object_set_new(labels, "flexpu.io/pod-group", json_string(v));
            snprintf(v, sizeof(v), "%d", group_size(ph, i));
            json_object_set_new(json_object_get(pod, "metadata"), "annotations",
                                json_pack("{s:s}", "flexpu.io/min-members", v));
        }
    }
    return pod;
}

/* The peer's PodGroup of each gang of the phase, made before its pods (the
 * peer rejects a pod whose group does not exist): minMember is the gang. */
static int create_podgroup(struct kube_client *c, int g, void *ctx)
{
    const struct phase *ph = ctx;
    char name[64], path[256], nsb[64];
    snprintf(name, sizeof(name), "%sg%d", ph->prefix, g);
    snprintf(path, sizeof(path), PEER_API "%s/podgroups",
             pod_ns(ph, g * opt.gang, nsb, sizeof(nsb)));
    json_t *pg = json_pack("{s:s, s:s, s:{s:s, s:{s:s}}, s:{s:i}}", "apiVersion",
                           "scheduling.x-k8s.io/v1alpha1", "kind", "PodGroup", "metadata",
                           "name", name, "labels", "app", "kbench", "spec", "minMember",
                           group_size(ph, g * opt.gang));
    long st;
    struct flexpu_error err;
    int rc = kube_request(c, "POST", path, pg, NULL, &st, NULL, &err);
    json_decref(pg);
    if (rc == FLEXPU_EEXIST)
        return 0;
    if (rc)
        say("creating PodGroup %s in %s: %s", name, pod_ns(ph, g * opt.gang, nsb, sizeof(nsb)),
            err.msg);
    return rc;
}

static int make_podgroups(struct phase *ph)
{
    if (ph->kind != KIND_PEER || opt.gang <= 1)
        return 0;
    int n = (ph->n + opt.gang - 1) / opt.gang;
    int errs = parallel_for(n, create_podgroup, ph);
    if (errs)
        say("%d of %d PodGroups could not be created", errs, n);
    return errs ? -1 : 0;
}

static int create_pod(struct kube_client *c, int i, void *ctx)
{
    struct phase *ph = ctx;
    char name[64], path[256], nsb[64];
    snprintf(name, sizeof(name), "%s%05d", ph->prefix, i);
    snprintf(path, sizeof(path), "/api/v1/namespaces/%s/pods", pod_ns(ph, i, nsb, sizeof(nsb)));
    json_t *p = pod_json(ph, i, name);
    if (ph->rate > 0)
        sleep_until_ms(ph->t0 + 1e3 * i / ph->rate);
    long st;
    struct flexpu_error err;
    int rc = kube_request(c, "POST", path, p, NULL, &st, NULL, &err);
    double t = now_ms();
    json_decref(p);
    if (rc) {
        say("creating pod %s: %s", name, err.msg);
        return rc;
    }
    pthread_mutex_lock(&ph->mu);
    ph->ack[i] = t;
    pthread_mutex_unlock(&ph->mu);
    return 0;
}

/* The watch: the first event that shows a pod bound is its binding time. */
static int watch_cb(enum kube_event ev, json_t *obj, void *ctx)
{
    struct phase *ph = ctx;
    if (ev == KUBE_SYNC_END) {
        pthread_mutex_lock(&ph->mu);
        ph->synced = 1;
        pthread_mutex_unlock(&ph->mu);
    }
    if (ev != KUBE_ADDED && ev != KUBE_MODIFIED && ev != KUBE_DELETED)
        return 0;
    double t = now_ms();
    const char *name = kube_str(obj, "metadata.name");
    size_t pl = strlen(ph->prefix);
    if (!name || strncmp(name, ph->prefix, pl) != 0)
        return 0;
    char *end;
    long i = strtol(name + pl, &end, 10);
    if (*end || i < 0 || i >= ph->n)
        return 0;
    const char *node = kube_str(obj, "spec.nodeName");
    pthread_mutex_lock(&ph->mu);
    if (!ph->seen[i]) {
        ph->seen[i] = 1;
        ph->nseen++;
    }
    /* A bound pod that goes (or starts to) while the phase runs was evicted
     * by the scheduler (preemption, reclaim): the benchmark deletes only
     * after the phase's figures are taken. */
    if (!ph->taken && ph->bind[i] > 0 && !ph->gone[i] &&
        (ev == KUBE_DELETED || kube_get(obj, "metadata.deletionTimestamp"))) {
        ph->gone[i] = 1;
        if (ph->ngone++ < 3) { /* the scheduler's reason, for the log */
            size_t k;
            json_t *cnd;
            const char *why = "no DisruptionTarget condition";
            json_array_foreach(kube_get(obj, "status.conditions"), k, cnd)
            {
                const char *ty = kube_str(cnd, "type"), *m = kube_str(cnd, "message");
                if (ty && m && strcmp(ty, "DisruptionTarget") == 0)
                    why = m;
            }
            say("%s evicted during the phase: %s", name, why);
        }
    }
    if (ev != KUBE_DELETED && node && *node && ph->bind[i] == 0) {
        ph->bind[i] = t;
        ph->nbound++;
        if (ph->nbound == 1)
            ph->first_bind = t;
        ph->last_bind = t;
        const struct fx_trace_pod *tp = &trace.pods[ph->src[i]];
        int nidx = -1;
        if (sscanf(node, "kb-node-%d", &nidx) != 1 || nidx < 0 || nidx >= opt.nodes)
            nidx = -1;
        ph->node[i] = nidx;
        if (ph->kind != KIND_FLEXPU) {
            ph->gpus[i] = pod_gpus(tp);
        } else if (tp->num_gpu > 0) {
            const char *a = kube_annotation(obj, FX_ANN_ALLOCATION);
            struct fx_allocation al;
            struct flexpu_error err;
            if (!a || nidx < 0 || fx_allocation_parse(a, &al, &err)) {
                ph->bad_alloc++;
            } else {
                ph->gpus[i] = al.ngpu;
                for (int g = 0; g < al.ngpu; g++)
                    if (al.gpus[g].index >= 0 && al.gpus[g].index < 16)
                        ph->mask[i] |= (uint16_t)(1u << al.gpus[g].index);
            }
        }
    }
    pthread_mutex_unlock(&ph->mu);
    return 0;
}

struct watcher {
    struct phase *ph;
    atomic_int stop;
    pthread_t tid;
    struct kube_client *c;
};

static void *watch_main(void *a)
{
    struct watcher *w = a;
    /* every namespace: the peer's pods are in one per queue */
    struct kube_watch_opts o = {.path = "/api/v1/pods", .label_selector = "app=kbench",
                                .stop = &w->stop};
    struct flexpu_error err;
    if (kube_list_watch(w->c, &o, watch_cb, w->ph, &err) && !atomic_load(&w->stop))
        say("watch ended: %s", err.msg);
    return NULL;
}

static int watch_start(struct watcher *w, struct phase *ph)
{
    struct flexpu_error err;
    w->ph = ph;
    atomic_store(&w->stop, 0);
    w->c = kube_client_new(&cfg, "flexpu-kbench", &err);
    if (!w->c) {
        say("%s", err.msg);
        return -1;
    }
    pthread_create(&w->tid, NULL, watch_main, w);
    return 0;
}

static void watch_stop(struct watcher *w)
{
    atomic_store(&w->stop, 1);
    pthread_join(w->tid, NULL);
    kube_client_free(w->c);
}

static int phase_init(struct phase *ph, const char *prefix, int n, const struct sched *s,
                      const int *src, double rate)
{
    memset(ph, 0, sizeof(*ph));
    snprintf(ph->prefix, sizeof(ph->prefix), "%s", prefix);
    ph->n = n;
    ph->kind = s->kind;
    ph->whole = s->kind != KIND_FLEXPU || s->whole;
    ph->src = src;
    ph->rate = rate;
    ph->ack = fx_calloc((size_t)n + 1, sizeof(double));
    ph->bind = fx_calloc((size_t)n + 1, sizeof(double));
    ph->seen = fx_calloc((size_t)n + 1, 1);
    ph->gpus = fx_calloc((size_t)n + 1, sizeof(int));
    ph->node = fx_calloc((size_t)n + 1, sizeof(int));
    ph->mask = fx_calloc((size_t)n + 1, sizeof(uint16_t));
    ph->gone = fx_calloc((size_t)n + 1, 1);
    pthread_mutex_init(&ph->mu, NULL);
    return ph->ack && ph->bind && ph->seen && ph->gpus && ph->node && ph->mask && ph->gone
               ? 0
               : -1;
}

static void phase_free(struct phase *ph)
{
    fx_free(ph->ack);
    fx_free(ph->bind);
    fx_free(ph->seen);
    fx_free(ph->gpus);
    fx_free(ph->node);
    fx_free(ph->mask);
    fx_free(ph->gone);
    pthread_mutex_destroy(&ph->mu);
}

/* GPUs the pods held at the end hold: for flexpu the distinct GPUs their
 * allocations name; for whole nvidia.com/gpu the GPUs they asked. *over
 * counts nodes given more GPUs than they have (must be 0). */
static int gpus_used(const struct phase *ph, int *over)
{
    int *per = fx_calloc((size_t)opt.nodes + 1, sizeof(int));
    uint16_t *bits = fx_calloc((size_t)opt.nodes + 1, sizeof(uint16_t));
    int n = 0;
    *over = 0;
    for (int i = 0; per && bits && i < ph->n; i++) {
        if (!held(ph, i) || ph->node[i] < 0)
            continue;
        if (ph->kind == KIND_FLEXPU)
            bits[ph->node[i]] |= ph->mask[i];
        else
            per[ph->node[i]] += ph->gpus[i];
    }
    for (int k = 0; per && bits && k < opt.nodes; k++) {
        n += ph->kind == KIND_FLEXPU ? __builtin_popcount(bits[k]) : per[k];
        *over += per[k] > GPUS_PER_NODE;
    }
    fx_free(per);
    fx_free(bits);
    return n;
}

/* The namespaces of benchmark pods: NS, and NS-q0.. when the peer has queues. */
static int n_namespaces(void)
{
    return 1 + (opt.peer ? opt.queues : 0);
}

static const char *namespace_at(int k, char *buf, size_t n)
{
    if (k == 0)
        return opt.ns;
    snprintf(buf, n, "%s-q%d", opt.ns, k - 1);
    return buf;
}

/* Deletes every benchmark pod (grace period 0, by namespace and label chunk)
 * and events in the namespaces, and the peer's PodGroups, then waits until no
 * benchmark pod is listed. */
static int del_chunk(struct kube_client *c, int i, void *ctx)
{
    int chunks = *(const int *)ctx;
    char path[512], sel[64], esc[128], nsb[64];
    const char *ns = namespace_at(i / chunks, nsb, sizeof(nsb));
    i %= chunks;
    if (i == 0)
        snprintf(sel, sizeof(sel), "app=kbench,kbench-chunk=w");
    else
        snprintf(sel, sizeof(sel), "app=kbench,kbench-chunk=c%d", i - 1);
    snprintf(path, sizeof(path), "/api/v1/namespaces/%s/pods?labelSelector=%s", ns,
             kube_escape(sel, esc, sizeof(esc)));
    json_t *body = json_pack("{s:s, s:s, s:i}", "apiVersion", "v1", "kind", "DeleteOptions",
                             "gracePeriodSeconds", 0);
    long st;
    struct flexpu_error err;
    int rc = kube_request(c, "DELETE", path, body, NULL, &st, NULL, &err);
    json_decref(body);
    return rc;
}

static int delete_all(int max_pods, double *took_s)
{
    double t0 = now_ms();
    char path[256], nsb[64];
    int left = -1, chunks = max_pods / CHUNK + 2;
    for (int round = 0; round < 10; round++) {
        parallel_for(chunks * n_namespaces(), del_chunk, &chunks);
        for (int k = 0; k < 20; k++) {
            left = list_each(clients[0], "/api/v1/pods", "app=kbench", NULL, NULL);
            if (left == 0)
                break;
            sleep_ms(500);
        }
        if (left == 0 || now_ms() - t0 > opt.timeout_s * 1e3)
            break;
    }
    /* Events of the phase (FailedScheduling, Scheduled): not needed, and a
     * failure here does not matter. */
    long st;
    struct flexpu_error err;
    for (int k = 0; k < n_namespaces(); k++) {
        const char *ns = namespace_at(k, nsb, sizeof(nsb));
        snprintf(path, sizeof(path), "/api/v1/namespaces/%s/events", ns);
        kube_request(clients[0], "DELETE", path, NULL, NULL, &st, NULL, &err);
        /* The phase's groups: the next phase makes its own (other names). */
        snprintf(path, sizeof(path), PEER_API "%s/podgroups", ns);
        if (opt.peer)
            kube_request(clients[0], "DELETE", path, NULL, NULL, &st, NULL, &err);
    }
    if (took_s)
        *took_s = (now_ms() - t0) / 1e3;
    if (left != 0)
        say("%d pods still listed after deleting", left);
    return left == 0 ? 0 : -1;
}

/* ---- the scheduler process ---- */

static pid_t spawn(const struct sched *s)
{
    char log[1024], *cmd;
    snprintf(log, sizeof(log), "%s/%s.log", opt.log_dir, s->name);
    int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd < 0) {
        say("cannot open %s: %s", log, strerror(errno));
        return -1;
    }
    size_t n = strlen(s->cmd) + 8;
    cmd = malloc(n);
    if (!cmd) {
        close(fd);
        return -1;
    }
    snprintf(cmd, n, "exec %s", s->cmd);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fd, 1);
        dup2(fd, 2);
        close(fd);
        signal(SIGPIPE, SIG_DFL); /* ignored here; an ignored signal stays so across exec */
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    close(fd);
    free(cmd);
    if (pid > 0) {
        child_pid = pid;
        char pf[1100];
        snprintf(pf, sizeof(pf), "%s/%s.pid", opt.log_dir, s->name);
        FILE *f = fopen(pf, "w");
        if (f) {
            fprintf(f, "%d\n", (int)pid);
            fclose(f);
        }
    }
    return pid;
}

static long vm_kib(pid_t pid, const char *key)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    long v = -1;
    size_t kl = strlen(key);
    while (fgets(line, sizeof(line), f))
        if (strncmp(line, key, kl) == 0 && line[kl] == ':') {
            v = strtol(line + kl + 1, NULL, 10);
            break;
        }
    fclose(f);
    return v;
}

/* User + system CPU seconds of a process (util/procstat.h). */
static double cpu_s(pid_t pid)
{
    struct fx_procstat st;
    if (fx_procstat_read(pid, &st, NULL) != 0)
        return NAN;
    return (double)(st.utime + st.stime) / (double)sysconf(_SC_CLK_TCK);
}

static bool alive(pid_t pid)
{
    int st;
    return waitpid(pid, &st, WNOHANG) == 0;
}

static void stop_child(pid_t pid)
{
    int st;
    kill(pid, SIGTERM);
    for (int i = 0; i < 100; i++) {
        if (waitpid(pid, &st, WNOHANG) != 0)
            goto done;
        sleep_ms(100);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &st, 0);
done:
    child_pid = 0;
}

/* Waits until every pod is bound, or no binding came for idle_s (after the
 * first: up to timeout), or the scheduler died. */
static void wait_bindings(struct phase *ph, int expected, double since, pid_t pid)
{
    double deadline = since + opt.timeout_s * 1e3;
    for (;;) {
        sleep_ms(100);
        pthread_mutex_lock(&ph->mu);
        int bound = ph->nbound;
        double last = ph->nbound ? ph->last_bind : since;
        pthread_mutex_unlock(&ph->mu);
        double t = now_ms();
        if (bound >= expected)
            return;
        if (last < since)
            last = since;
        /* before the first binding, the scheduler may still be listing */
        double idle = bound ? opt.idle_s * 1e3 : opt.idle_s * 6e3;
        if (t - last > idle || t > deadline)
            return;
        if (pid > 0 && !alive(pid)) {
            say("the scheduler exited (see its log)");
            return;
        }
    }
}

/* ---- results ---- */

struct result {
    int created, create_errors;
    double create_s;
    int bound, gpu_pods_bound, gpus_used, bad_alloc;
    int64_t demand_milli;
    int evicted;    /* backlog: pods bound, then evicted by the scheduler */
    int nodes_over; /* backlog: nodes given more GPUs than they have */
    double first_s, last_s, thr, steady;
    int s_created, s_bound;
    double s_rate, p50, p99, pmax;
    int gangs, gangs_bound;    /* backlog: pod groups, and those all of whose members bound */
    int gangs_partial;         /* backlog: pod groups some but not all of whose members bound */
    double q_dev, q_min, q_max; /* backlog: queues' shares of the GPU demand bound (points) */
    double g_p50, g_p99;       /* stream: a gang's last binding after its last creation (ms) */
    double delete_s;
    long hwm_kib, hwm_backlog_kib, hwm_delete_kib; /* VmHWM at the end of each stage */
    double cpu_backlog_s, cpu_s;
    bool died;
};

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(const double *v, int n, double q)
{
    if (n == 0)
        return NAN;
    int k = (int)ceil(q * n);
    return v[k < 1 ? 0 : k - 1];
}

/* Waits until the watch has listed and seen n pods of the phase. */
static int wait_seen(struct phase *ph, int n)
{
    double t0 = now_ms();
    for (;;) {
        pthread_mutex_lock(&ph->mu);
        int s = ph->nseen, synced = ph->synced;
        pthread_mutex_unlock(&ph->mu);
        if (s >= n && synced)
            return 0;
        if (now_ms() - t0 > 120e3) {
            say("the watch saw %d of %d pods", s, n);
            return -1;
        }
        sleep_ms(50);
    }
}

static int run_sched(int si, struct result *r)
{
    const struct sched *s = &opt.sched[si];
    memset(r, 0, sizeof(*r));
    r->p50 = r->p99 = r->pmax = r->g_p50 = r->g_p99 = NAN;
    r->q_dev = r->q_min = r->q_max = NAN;
    struct phase ph;
    struct watcher w;
    char prefix[16];

    /* backlog */
    snprintf(prefix, sizeof(prefix), "s%d-b-", si);
    if (phase_init(&ph, prefix, opt.pods, s, pod_src, 0) || watch_start(&w, &ph))
        return -1;
    if (make_podgroups(&ph)) {
        watch_stop(&w);
        phase_free(&ph);
        return -1;
    }
    say("%s: creating %d pods (scheduler not running)", s->name, opt.pods);
    double t = now_ms();
    r->create_errors = parallel_for(opt.pods, create_pod, &ph);
    r->create_s = (now_ms() - t) / 1e3;
    r->created = opt.pods - r->create_errors;
    say("%s: created %d pods in %.1f s (%.0f/s)", s->name, r->created, r->create_s,
        r->created / r->create_s);
    /* A failing API server must not turn into a result. */
    if (r->create_errors > opt.pods / 100 || wait_seen(&ph, r->created)) {
        say("%s: %d pod creations failed or the watch fell behind; stopping", s->name,
            r->create_errors);
        watch_stop(&w);
        phase_free(&ph);
        return -1;
    }
    double t0 = now_ms();
    pid_t pid = spawn(s);
    if (pid < 0) {
        watch_stop(&w);
        phase_free(&ph);
        return -1;
    }
    say("%s: started (pid %d); waiting for bindings", s->name, (int)pid);
    wait_bindings(&ph, r->created, t0, pid);
    r->died = !alive(pid);
    pthread_mutex_lock(&ph.mu);
    /* Pods a preemption took away count neither as bound nor in the rate. */
    ph.taken = true;
    r->evicted = ph.ngone;
    r->bound = ph.nbound - ph.ngone;
    r->first_s = ph.nbound ? (ph.first_bind - t0) / 1e3 : NAN;
    r->last_s = ph.nbound ? (ph.last_bind - t0) / 1e3 : NAN;
    r->thr = r->bound > 0 ? r->bound / r->last_s : 0;
    r->steady = r->bound > 1 ? (r->bound - 1) / ((ph.last_bind - ph.first_bind) / 1e3) : NAN;
    for (int i = 0; i < ph.n; i++) {
        if (!held(&ph, i))
            continue;
        const struct fx_trace_pod *tp = &trace.pods[ph.src[i]];
        r->gpu_pods_bound += tp->num_gpu > 0;
        r->demand_milli += (int64_t)tp->num_gpu * tp->gpu_milli;
    }
    r->gpus_used = gpus_used(&ph, &r->nodes_over);
    r->bad_alloc = ph.bad_alloc;
    if (s->kind != KIND_KUBE && opt.queues > 1) {
        /* Each queue's share of the GPUs bound, against its fair share: with
         * equal guarantees and weights and every queue asking more than its
         * part (the trace's demand is above the GPUs), 1/N each. A pod counts
         * the GPUs it asked: whole ones, or the trace's demand for a share. */
        double *q = fx_calloc((size_t)opt.queues, sizeof(double));
        double all = 0;
        for (int i = 0; q && i < ph.n; i++) {
            if (!held(&ph, i))
                continue;
            const struct fx_trace_pod *tp = &trace.pods[ph.src[i]];
            double d = ph.whole ? 1e3 * pod_gpus(tp) : (double)tp->num_gpu * tp->gpu_milli;
            q[queue_of(i)] += d;
            all += d;
        }
        for (int k = 0; q && all > 0 && k < opt.queues; k++) {
            double pts = 100.0 * q[k] / all;
            double dev = fabs(pts - 100.0 / opt.queues);
            r->q_dev = isnan(r->q_dev) || dev > r->q_dev ? dev : r->q_dev;
            r->q_min = isnan(r->q_min) || pts < r->q_min ? pts : r->q_min;
            r->q_max = isnan(r->q_max) || pts > r->q_max ? pts : r->q_max;
        }
        fx_free(q);
    }
    if (s->kind != KIND_KUBE && opt.gang > 1)
        for (int g = 0; g * opt.gang < ph.n; g++) {
            int all = 1, any = 0;
            for (int i = g * opt.gang; i < ph.n && i < (g + 1) * opt.gang; i++) {
                all = all && held(&ph, i);
                any = any || held(&ph, i);
            }
            r->gangs++;
            r->gangs_bound += all;
            r->gangs_partial += any && !all;
        }
    pthread_mutex_unlock(&ph.mu);
    r->hwm_backlog_kib = r->died ? -1 : vm_kib(pid, "VmHWM");
    r->cpu_backlog_s = r->died ? NAN : cpu_s(pid);
    say("%s: %d of %d bound; last binding %.1f s after start: %.1f pods/s", s->name, r->bound,
        r->created, r->last_s, r->thr);
    say("%s: deleting the pods", s->name);
    int del_rc = delete_all(opt.pods, &r->delete_s);
    say("%s: deleted in %.1f s", s->name, r->delete_s);
    r->died = r->died || !alive(pid);
    r->hwm_delete_kib = r->died ? -1 : vm_kib(pid, "VmHWM");
    watch_stop(&w);
    phase_free(&ph);
    if (del_rc) {
        stop_child(pid);
        return -1; /* the next phase would start on a cluster still holding these pods */
    }

    /* stream */
    bool streamed = false;
    if (!r->died && opt.stream_pods > 0) {
        snprintf(prefix, sizeof(prefix), "s%d-w-", si);
        struct phase warm;
        phase_init(&warm, prefix, 1, s, pod_src, 0);
        /* the warm-up pod: the scheduler is up and its watches are current */
        int first_gpu = 0;
        while (first_gpu < opt.pods && trace.pods[pod_src[first_gpu]].num_gpu == 0)
            first_gpu++;
        warm.src = pod_src + (first_gpu < opt.pods ? first_gpu : 0);
        if (make_podgroups(&warm) == 0 && watch_start(&w, &warm) == 0) {
            char name[64], path[256], nsb[64];
            snprintf(name, sizeof(name), "%s00000", prefix);
            snprintf(path, sizeof(path), "/api/v1/namespaces/%s/pods",
                     pod_ns(&warm, 0, nsb, sizeof(nsb)));
            json_t *p = pod_json(&warm, 0, name);
            json_object_set_new(kube_get(p, "metadata.labels"), "kbench-chunk",
                                json_string("w"));
            long st;
            struct flexpu_error err;
            if (kube_request(clients[0], "POST", path, p, NULL, &st, NULL, &err))
                say("warm-up pod: %s", err.msg);
            json_decref(p);
            wait_bindings(&warm, 1, now_ms(), pid);
            if (!warm.nbound)
                say("%s: the warm-up pod was not bound", s->name);
            watch_stop(&w);
        }
        phase_free(&warm);

        snprintf(prefix, sizeof(prefix), "s%d-s-", si);
        if (phase_init(&ph, prefix, opt.stream_pods, s, pod_src, opt.rate) ||
            make_podgroups(&ph) || watch_start(&w, &ph)) {
            stop_child(pid);
            phase_free(&ph);
            return -1;
        }
        streamed = true;
        wait_seen(&ph, 0); /* listed, so the watch is open before the first pod */
        say("%s: streaming %d pods at %.0f/s", s->name, opt.stream_pods, opt.rate);
        ph.t0 = now_ms();
        int errs = parallel_for(opt.stream_pods, create_pod, &ph);
        double span = (now_ms() - ph.t0) / 1e3;
        r->s_created = opt.stream_pods - errs;
        if (errs > opt.stream_pods / 100) {
            say("%s: %d pod creations failed; stopping", s->name, errs);
            stop_child(pid);
            watch_stop(&w);
            phase_free(&ph);
            return -1;
        }
        r->s_rate = r->s_created / span;
        wait_bindings(&ph, r->s_created, now_ms(), pid);
        pthread_mutex_lock(&ph.mu);
        double *lat = fx_calloc((size_t)ph.n + 1, sizeof(double));
        int nl = 0;
        for (int i = 0; lat && i < ph.n; i++)
            if (ph.bind[i] > 0 && ph.ack[i] > 0) {
                double d = ph.bind[i] - ph.ack[i];
                lat[nl++] = d > 0 ? d : 0;
            }
        ph.taken = true;
        r->s_bound = ph.nbound;
        /* Gangs: from the last member's creation to the last member's
         * binding, for gangs bound whole. */
        double *glat = s->kind != KIND_KUBE && opt.gang > 1
                           ? fx_calloc((size_t)ph.n / (size_t)opt.gang + 2, sizeof(double))
                           : NULL;
        int ng = 0;
        for (int g = 0; glat && g * opt.gang < ph.n; g++) {
            double ack = 0, bind = 0;
            int all = 1;
            for (int i = g * opt.gang; i < ph.n && i < (g + 1) * opt.gang; i++) {
                all = all && ph.bind[i] > 0 && ph.ack[i] > 0;
                ack = ph.ack[i] > ack ? ph.ack[i] : ack;
                bind = ph.bind[i] > bind ? ph.bind[i] : bind;
            }
            if (all)
                glat[ng++] = bind > ack ? bind - ack : 0;
        }
        pthread_mutex_unlock(&ph.mu);
        if (glat) {
            qsort(glat, (size_t)ng, sizeof(double), cmp_double);
            r->g_p50 = pct(glat, ng, 0.50);
            r->g_p99 = pct(glat, ng, 0.99);
        }
        fx_free(glat);
        if (lat) {
            qsort(lat, (size_t)nl, sizeof(double), cmp_double);
            r->p50 = pct(lat, nl, 0.50);
            r->p99 = pct(lat, nl, 0.99);
            r->pmax = nl ? lat[nl - 1] : NAN;
        }
        fx_free(lat);
        say("%s: stream: %d of %d bound; p50 %.0f ms, p99 %.0f ms", s->name, r->s_bound,
            r->s_created, r->p50, r->p99);
        r->died = r->died || !alive(pid);
    }
    r->hwm_kib = r->died ? -1 : vm_kib(pid, "VmHWM");
    r->cpu_s = r->died ? NAN : cpu_s(pid);
    stop_child(pid);
    int rc = 0;
    if (streamed) {
        rc = delete_all(opt.stream_pods, NULL);
        watch_stop(&w);
        phase_free(&ph);
    }
    return rc;
}

/* ---- report ---- */

static void fmt_num(char *b, size_t n, double v, const char *f)
{
    if (isnan(v))
        snprintf(b, n, "n/a");
    else
        snprintf(b, n, f, v);
}

static void report(FILE *f, const struct result *res, double setup_s)
{
    int shares = 0, whole = 0, cpu_only = 0;
    int64_t demand = 0, whole_gpus = 0, cpu = 0;
    for (int i = 0; i < opt.pods; i++) {
        const struct fx_trace_pod *tp = &trace.pods[pod_src[i]];
        cpu += tp->cpu_milli;
        if (tp->num_gpu == 0)
            cpu_only++;
        else if (tp->gpu_milli < FLEXPU_GPU_MILLI)
            shares++;
        else
            whole++;
        demand += (int64_t)tp->num_gpu * tp->gpu_milli;
        whole_gpus += pod_gpus(tp);
    }
    int64_t node_cpu = 0;
    for (int i = 0; i < opt.nodes; i++)
        node_cpu += trace.nodes[node_src[i]].cpu_milli;
    /* models of the nodes, in order of first appearance */
    fprintf(f, "### Setup\n\n");
    fprintf(f, "- %d kwok nodes x %d GPUs = %d GPUs, %.0f CPU cores; models cycled from the "
               "trace's 8-GPU nodes:",
            opt.nodes, GPUS_PER_NODE, opt.nodes * GPUS_PER_NODE, node_cpu / 1e3);
    for (int i = 0; i < opt.nodes; i++) {
        const char *m = trace.nodes[node_src[i]].model;
        int seen = 0, cnt = 0;
        for (int j = 0; j < i && !seen; j++)
            seen = strcmp(trace.nodes[node_src[j]].model, m) == 0;
        if (seen)
            continue;
        for (int j = 0; j < opt.nodes; j++)
            cnt += strcmp(trace.nodes[node_src[j]].model, m) == 0;
        fprintf(f, " %s x%d", m, cnt);
    }
    fprintf(f, " (created and Ready in %.1f s)\n", setup_s);
    fprintf(f,
            "- %d pods sampled from the trace (seed %llu, with replacement): %d GPU shares, "
            "%d whole-GPU pods, %d CPU-only; they ask %.0f CPU cores and %.1f GPUs of compute "
            "as shares, %lld GPUs as whole GPUs (the kube-scheduler form)\n",
            opt.pods, (unsigned long long)opt.seed, shares, whole, cpu_only, cpu / 1e3,
            demand / 1e3, (long long)whole_gpus);
    if (opt.stream_pods > 0)
        fprintf(f, "- stream: %d pods at %.0f pods/s; ", opt.stream_pods, opt.rate);
    else
        fprintf(f, "- no stream phase (--stream-pods 0); ");
    fprintf(f, "%d API clients; a phase ends when every pod is bound or none was bound for "
               "%.0f s\n",
            opt.clients, opt.idle_s);
    if (opt.queues > 0)
        fprintf(f, "- flexpu pods in %d Queues (kq0..kq%d, each guaranteed %d GPUs; a gang's "
                   "members share one), by label flexpu.io/queue\n",
                opt.queues, opt.queues - 1, opt.nodes * GPUS_PER_NODE / opt.queues);
    if (opt.queues > 0 && opt.peer)
        fprintf(f, "- %s pods in %d namespaces (%s-q0..%s-q%d, a gang's members share one), "
                   "each with one ElasticQuota: min %d nvidia.com/gpu and 1/%d of the nodes' "
                   "CPU and memory, max the whole cluster\n",
                PEER_SCHED, opt.queues, opt.ns, opt.ns, opt.queues - 1,
                opt.nodes * GPUS_PER_NODE / opt.queues, opt.queues);
    if (opt.gang > 1)
        fprintf(f, "- flexpu pods in pod groups of %d consecutive pods (flexpu.io/pod-group, "
                   "flexpu.io/min-members %d): placed all or none; %skube-scheduler's pods "
                   "have neither (it has no gangs)\n",
                opt.gang, opt.gang,
                opt.peer ? PEER_SCHED "'s the same pods in a PodGroup "
                           "(scheduling.x-k8s.io/v1alpha1, minMember the group's size, made "
                           "before its pods) named by the label scheduling.x-k8s.io/pod-group; "
                         : "");
    fprintf(f, "\n");
    fprintf(f, "### Results\n\n| |");
    for (int s = 0; s < opt.nsched; s++)
        fprintf(f, " %s |", opt.sched[s].name);
    fprintf(f, "\n|---|");
    for (int s = 0; s < opt.nsched; s++)
        fprintf(f, "---:|");
    fprintf(f, "\n");
#define ROW(label, ...)                                                                           \
    do {                                                                                          \
        fprintf(f, "| %s |", label);                                                              \
        for (int s = 0; s < opt.nsched; s++) {                                                    \
            const struct result *r = &res[s];                                                     \
            char b[64];                                                                           \
            (void)r;                                                                              \
            __VA_ARGS__;                                                                          \
            fprintf(f, " %s |", b);                                                               \
        }                                                                                         \
        fprintf(f, "\n");                                                                         \
    } while (0)
    ROW("backlog: pods created (s to create)",
        snprintf(b, sizeof(b), "%d (%.1f s)", r->created, r->create_s));
    ROW("backlog: pods bound (held at the end)", snprintf(b, sizeof(b), "%d", r->bound));
    ROW("backlog: pods evicted by the scheduler (bound, then deleted)",
        snprintf(b, sizeof(b), "%d", r->evicted));
    ROW("backlog: GPU pods bound", snprintf(b, sizeof(b), "%d", r->gpu_pods_bound));
    ROW("backlog: GPUs used", snprintf(b, sizeof(b), "%d of %d", r->gpus_used,
                                       opt.nodes * GPUS_PER_NODE));
    ROW("backlog: nodes given more GPUs than they have (must be 0)",
        snprintf(b, sizeof(b), "%d", r->nodes_over));
    ROW("backlog: trace GPU demand bound (GPUs)",
        snprintf(b, sizeof(b), "%.1f", r->demand_milli / 1e3));
    ROW("backlog: first binding after start (s)", fmt_num(b, sizeof(b), r->first_s, "%.2f"));
    ROW("backlog: last binding after start (s)", fmt_num(b, sizeof(b), r->last_s, "%.2f"));
    ROW("**backlog: throughput (pods/s, bound / last binding)**",
        snprintf(b, sizeof(b), "**%.1f**", r->thr));
    ROW("backlog: steady rate (pods/s, first to last binding)",
        fmt_num(b, sizeof(b), r->steady, "%.1f"));
    if (opt.stream_pods > 0) {
        ROW("stream: pods created (achieved rate/s)",
            snprintf(b, sizeof(b), "%d (%.1f)", r->s_created, r->s_rate));
        ROW("stream: pods bound", snprintf(b, sizeof(b), "%d", r->s_bound));
        ROW("stream: creation to binding p50 (ms)", fmt_num(b, sizeof(b), r->p50, "%.0f"));
        ROW("**stream: creation to binding p99 (ms)**",
            fmt_num(b, sizeof(b), r->p99, "**%.0f**"));
        ROW("stream: creation to binding max (ms)", fmt_num(b, sizeof(b), r->pmax, "%.0f"));
    }
    if (opt.queues > 1) {
        ROW("backlog: queues' shares of the GPUs bound (%, lowest-highest)",
            isnan(r->q_min) ? snprintf(b, sizeof(b), "n/a")
                            : snprintf(b, sizeof(b), "%.2f-%.2f", r->q_min, r->q_max));
        ROW("**backlog: fairness, largest gap to the fair share (points)**",
            fmt_num(b, sizeof(b), r->q_dev, "**%.2f**"));
    }
    if (opt.gang > 1) {
        ROW("backlog: pod groups bound whole", r->gangs ? snprintf(b, sizeof(b), "%d of %d",
                                                                  r->gangs_bound, r->gangs)
                                                        : snprintf(b, sizeof(b), "n/a"));
        ROW("backlog: pod groups bound in part (must be 0)",
            r->gangs ? snprintf(b, sizeof(b), "%d", r->gangs_partial)
                     : snprintf(b, sizeof(b), "n/a"));
        if (opt.stream_pods > 0) {
            ROW("stream: gang last creation to last binding p50 (ms)",
                fmt_num(b, sizeof(b), r->g_p50, "%.0f"));
            ROW("**stream: gang last creation to last binding p99 (ms)**",
                fmt_num(b, sizeof(b), r->g_p99, "**%.0f**"));
        }
    }
    ROW("**scheduler peak RSS (MiB, VmHWM at the end)**",
        fmt_num(b, sizeof(b), r->hwm_kib > 0 ? r->hwm_kib / 1024.0 : NAN, "**%.1f**"));
    ROW("scheduler VmHWM when the backlog was bound (MiB)",
        fmt_num(b, sizeof(b), r->hwm_backlog_kib > 0 ? r->hwm_backlog_kib / 1024.0 : NAN,
                "%.1f"));
    ROW("scheduler VmHWM when the backlog was deleted (MiB)",
        fmt_num(b, sizeof(b), r->hwm_delete_kib > 0 ? r->hwm_delete_kib / 1024.0 : NAN,
                "%.1f"));
    ROW("scheduler CPU time, backlog (s)", fmt_num(b, sizeof(b), r->cpu_backlog_s, "%.1f"));
    ROW("scheduler CPU time, whole run (s)", fmt_num(b, sizeof(b), r->cpu_s, "%.1f"));
    ROW("scheduler exited by itself", snprintf(b, sizeof(b), "%s", r->died ? "yes" : "no"));
#undef ROW
    fprintf(f, "\n");
    for (int a = 0; a < opt.nsched; a++) {
        if (opt.sched[a].kind != KIND_FLEXPU)
            continue;
        for (int k = 0; k < opt.nsched; k++) {
            if (opt.sched[k].kind == KIND_FLEXPU)
                continue;
            fprintf(f, "- throughput ratio %s / %s: **%.2f**", opt.sched[a].name,
                    opt.sched[k].name, res[k].thr > 0 ? res[a].thr / res[k].thr : NAN);
            if (opt.stream_pods > 0)
                fprintf(f, "; stream p99 ratio: %.3f",
                        res[k].p99 > 0 ? res[a].p99 / res[k].p99 : NAN);
            fprintf(f, "\n");
        }
    }
    for (int s = 0; s < opt.nsched; s++)
        if (res[s].bad_alloc)
            fprintf(f, "- %s: %d bound GPU pods had no readable allocation annotation\n",
                    opt.sched[s].name, res[s].bad_alloc);
    fprintf(f, "\n");
}

/* ---- main ---- */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: flexpu-kbench --scheduler NAME:KIND:CMD [--scheduler ...] [options]\n"
            "  --scheduler NAME:KIND:CMD  a scheduler to measure, in order; KIND decides the\n"
            "                             pods' form: flexpu (shares ask gpu-cores),\n"
            "                             flexpu-whole (flexpu.io/gpu whole), kube\n"
            "                             (nvidia.com/gpu), peer (nvidia.com/gpu, scheduler\n"
            "                             %s, a namespace and ElasticQuota per queue, a\n"
            "                             PodGroup per gang); CMD runs with /bin/sh\n"
            "  --kubeconfig PATH      ($KUBECONFIG)\n"
            "  --trace DIR            the Alibaba trace (%s)\n"
            "  --nodes N              kwok nodes of 8 GPUs (1000)\n"
            "  --pods N               pods sampled from the trace for the backlog (10000)\n"
            "  --stream-pods N        pods created at --rate in the stream phase (pods/5)\n"
            "  --rate R               stream creation rate, pods/s (100)\n"
            "  --seed N               sampling seed (42)\n"
            "  --clients N            parallel API clients creating and deleting (4)\n"
            "  --idle S               a phase ends after S s without a new binding (10)\n"
            "  --timeout S            bound on each wait (1800)\n"
            "  --namespace NS         namespace of the pods (kbench)\n"
            "  --queues N             flexpu pods join Queues kq0..kqN-1, each guaranteed an\n"
            "                         equal part of the GPUs (0: no label, the default queue);\n"
            "                         peer pods namespaces NS-q0.. with an ElasticQuota each\n"
            "  --gang-size N          flexpu and peer pods in pod groups of N consecutive\n"
            "                         pods, all or none (1: no groups)\n"
            "  --log-dir DIR          scheduler logs and pid files (.)\n"
            "  --out FILE             markdown results (stdout)\n",
            PEER_SCHED, FLEXPU_TRACE_DIR);
}

static int parse_num(const char *flag, const char *s, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *end || !*s || v < lo || v > hi) {
        fprintf(stderr, "flexpu-kbench: %s: invalid value '%s': must be between %g and %g\n",
                flag, s, lo, hi);
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_args(int argc, char **argv)
{
    static const struct option lo[] = {
        {"scheduler", required_argument, 0, 'S'}, {"kubeconfig", required_argument, 0, 'k'},
        {"trace", required_argument, 0, 't'},     {"nodes", required_argument, 0, 'n'},
        {"pods", required_argument, 0, 'p'},      {"stream-pods", required_argument, 0, 's'},
        {"rate", required_argument, 0, 'r'},      {"seed", required_argument, 0, 'e'},
        {"clients", required_argument, 0, 'c'},   {"idle", required_argument, 0, 'i'},
        {"timeout", required_argument, 0, 'T'},   {"namespace", required_argument, 0, 'N'},
        {"log-dir", required_argument, 0, 'l'},   {"out", required_argument, 0, 'o'},
        {"queues", required_argument, 0, 'Q'},    {"gang-size", required_argument, 0, 'G'},
        {"help", no_argument, 0, 'h'},            {0, 0, 0, 0}};
    int ch;
    double v;
    while ((ch = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        switch (ch) {
        case 'S': {
            const char *c1 = strchr(optarg, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
            if (opt.nsched >= MAX_SCHED || !c1 || !c2 || c1 == optarg ||
                (size_t)(c1 - optarg) >= sizeof(opt.sched[0].name) || !c2[1]) {
                fprintf(stderr, "flexpu-kbench: --scheduler: invalid value '%s': expected "
                                "NAME:KIND:CMD (at most %d)\n", optarg, MAX_SCHED);
                return -1;
            }
            struct sched *s = &opt.sched[opt.nsched++];
            snprintf(s->name, sizeof(s->name), "%.*s", (int)(c1 - optarg), optarg);
            if (strncmp(c1 + 1, "flexpu:", 7) == 0) {
                s->kind = KIND_FLEXPU;
            } else if (strncmp(c1 + 1, "flexpu-whole:", 13) == 0) {
                s->kind = KIND_FLEXPU;
                s->whole = true;
            } else if (strncmp(c1 + 1, "kube:", 5) == 0) {
                s->kind = KIND_KUBE;
            } else if (strncmp(c1 + 1, "peer:", 5) == 0) {
                s->kind = KIND_PEER;
                opt.peer = true;
            } else {
                fprintf(stderr, "flexpu-kbench: --scheduler: kind must be flexpu, "
                                "flexpu-whole, kube or peer in '%s'\n", optarg);
                return -1;
            }
            s->cmd = c2 + 1;
            break;
        }
        case 'k': opt.kubeconfig = optarg; break;
        case 't': opt.trace_dir = optarg; break;
        case 'n':
            if (parse_num("--nodes", optarg, 1, 100000, &v))
                return -1;
            opt.nodes = (int)v;
            break;
        case 'p':
            if (parse_num("--pods", optarg, 1, 1000000, &v))
                return -1;
            opt.pods = (int)v;
            break;
        case 's':
            if (parse_num("--stream-pods", optarg, 0, 1000000, &v))
                return -1;
            opt.stream_pods = (int)v;
            break;
        case 'r':
            if (parse_num("--rate", optarg, 0.1, 100000, &opt.rate))
                return -1;
            break;
        case 'e':
            if (parse_num("--seed", optarg, 0, 1e15, &v))
                return -1;
            opt.seed = (uint64_t)v;
            break;
        case 'c':
            if (parse_num("--clients", optarg, 1, MAX_CLIENTS, &v))
                return -1;
            opt.clients = (int)v;
            break;
        case 'i':
            if (parse_num("--idle", optarg, 1, 3600, &opt.idle_s))
                return -1;
            break;
        case 'T':
            if (parse_num("--timeout", optarg, 10, 86400, &opt.timeout_s))
                return -1;
            break;
        case 'N': opt.ns = optarg; break;
        case 'l': opt.log_dir = optarg; break;
        case 'o': opt.out = optarg; break;
        case 'Q':
            if (parse_num("--queues", optarg, 0, 1000, &v))
                return -1;
            opt.queues = (int)v;
            break;
        case 'G':
            if (parse_num("--gang-size", optarg, 1, 1000, &v))
                return -1;
            opt.gang = (int)v;
            break;
        case 'h': usage(stdout); exit(0);
        default: usage(stderr); return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "flexpu-kbench: unexpected argument '%s'\n", argv[optind]);
        return -1;
    }
    if (opt.nsched == 0) {
        fprintf(stderr, "flexpu-kbench: at least one --scheduler is needed\n");
        return -1;
    }
    if (opt.stream_pods < 0)
        opt.stream_pods = opt.pods / 5;
    return 0;
}

static int load_trace(void)
{
    char path[2048];
    struct flexpu_error err;
    snprintf(path, sizeof(path), "%s/openb_node_list_gpu_node.csv", opt.trace_dir);
    if (fx_trace_read_nodes(&trace, path, NULL, &err)) {
        fprintf(stderr, "flexpu-kbench: %s\n", err.msg);
        return -1;
    }
    snprintf(path, sizeof(path), "%s/openb_pod_list_default.csv", opt.trace_dir);
    if (fx_trace_read_pods(&trace, path, NULL, &err)) {
        fprintf(stderr, "flexpu-kbench: %s\n", err.msg);
        return -1;
    }
    int n8 = 0;
    node_src = fx_calloc((size_t)opt.nodes, sizeof(int));
    /* The stream takes its pods from the start of the same sample, which
     * is drawn long enough for both phases. */
    int nsample = opt.pods > opt.stream_pods ? opt.pods : opt.stream_pods;
    pod_src = fx_calloc((size_t)nsample, sizeof(int));
    if (!node_src || !pod_src || trace.npods == 0)
        return -1;
    for (int i = 0, k = 0; i < opt.nodes; k++) {
        if (k == trace.nnodes) {
            if (n8 == 0) {
                fprintf(stderr, "flexpu-kbench: the trace has no node with %d GPUs\n",
                        GPUS_PER_NODE);
                return -1;
            }
            k = 0;
        }
        if (trace.nodes[k].ngpu == GPUS_PER_NODE) {
            node_src[i++] = k;
            n8++;
        }
    }
    struct flexpu_rng rng;
    flexpu_rng_seed(&rng, opt.seed);
    for (int i = 0; i < nsample; i++)
        pod_src[i] = (int)flexpu_rng_below(&rng, (uint64_t)trace.npods);
    return 0;
}

/* Queues kq0..kqN-1, each guaranteed an equal part of the GPUs (the CRD
 * must be installed: run.sh applies it). Existing ones are replaced. */
static int make_queues(void)
{
    for (int q = 0; q < opt.queues; q++) {
        char name[32], path[128], gpus[32];
        snprintf(name, sizeof(name), "kq%d", q);
        snprintf(path, sizeof(path), "/apis/flexpu.io/v1alpha1/queues/%s", name);
        snprintf(gpus, sizeof(gpus), "%d", opt.nodes * GPUS_PER_NODE / opt.queues);
        long st;
        struct flexpu_error err;
        kube_request(clients[0], "DELETE", path, NULL, NULL, &st, NULL, &err);
        json_t *obj = json_pack("{s:s, s:s, s:{s:s}, s:{s:{s:s}}}", "apiVersion",
                                "flexpu.io/v1alpha1", "kind", "Queue", "metadata", "name", name,
                                "spec", "guaranteed", "flexpu.io/gpu", gpus);
        int rc = kube_request(clients[0], "POST", "/apis/flexpu.io/v1alpha1/queues", obj, NULL,
                              &st, NULL, &err);
        json_decref(obj);
        if (rc) {
            fprintf(stderr, "flexpu-kbench: creating queue %s: %s\n", name, err.msg);
            return -1;
        }
    }
    if (opt.queues)
        say("%d queues, each guaranteed %d GPUs", opt.queues, opt.nodes * GPUS_PER_NODE / opt.queues);
    return 0;
}

/* The peer's queues: namespaces NS-q0..NS-qN-1, each with one ElasticQuota
 * whose min is an equal part of the cluster and max the whole cluster (the
 * nearest match to a Queue guaranteed a part that borrows idle GPUs). min and
 * max name cpu and memory too: CapacityScheduling takes a resource missing
 * from them as 0, and refuses a pod once all quotas together would use more
 * than the sum of their min. Existing quotas are replaced. */
static int make_peer_queues(void)
{
    if (!opt.peer || opt.queues == 0)
        return 0;
    int64_t cpu = 0, mem = 0;
    for (int i = 0; i < opt.nodes; i++) {
        cpu += trace.nodes[node_src[i]].cpu_milli;
        mem += trace.nodes[node_src[i]].mem_mib;
    }
    int gpus = opt.nodes * GPUS_PER_NODE, n = opt.queues;
    char min_g[32], min_c[32], min_m[32], max_g[32], max_c[32], max_m[32];
    snprintf(min_g, sizeof(min_g), "%d", (gpus + n - 1) / n);
    snprintf(min_c, sizeof(min_c), "%lldm", (long long)((cpu + n - 1) / n));
    snprintf(min_m, sizeof(min_m), "%lldMi", (long long)((mem + n - 1) / n));
    snprintf(max_g, sizeof(max_g), "%d", gpus);
    snprintf(max_c, sizeof(max_c), "%lldm", (long long)cpu);
    snprintf(max_m, sizeof(max_m), "%lldMi", (long long)mem);
    for (int q = 0; q < n; q++) {
        char ns[64], path[256];
        snprintf(ns, sizeof(ns), "%s-q%d", opt.ns, q);
        long st;
        struct flexpu_error err;
        json_t *obj = json_pack("{s:s, s:s, s:{s:s}}", "apiVersion", "v1", "kind", "Namespace",
                                "metadata", "name", ns);
        int rc = kube_request(clients[0], "POST", "/api/v1/namespaces", obj, NULL, &st, NULL,
                              &err);
        json_decref(obj);
        if (rc && rc != FLEXPU_EEXIST) {
            fprintf(stderr, "flexpu-kbench: creating namespace %s: %s\n", ns, err.msg);
            return -1;
        }
        snprintf(path, sizeof(path), PEER_API "%s/elasticquotas/kbench", ns);
        kube_request(clients[0], "DELETE", path, NULL, NULL, &st, NULL, &err);
        obj = json_pack("{s:s, s:s, s:{s:s, s:s}, s:{s:{s:s, s:s, s:s}, s:{s:s, s:s, s:s}}}",
                        "apiVersion", "scheduling.x-k8s.io/v1alpha1", "kind", "ElasticQuota",
                        "metadata", "name", "kbench", "namespace", ns, "spec", "min",
                        "nvidia.com/gpu", min_g, "cpu", min_c, "memory", min_m, "max",
                        "nvidia.com/gpu", max_g, "cpu", max_c, "memory", max_m);
        snprintf(path, sizeof(path), PEER_API "%s/elasticquotas", ns);
        rc = kube_request(clients[0], "POST", path, obj, NULL, &st, NULL, &err);
        json_decref(obj);
        if (rc) {
            fprintf(stderr, "flexpu-kbench: creating ElasticQuota %s/kbench: %s\n", ns,
                    err.msg);
            return -1;
        }
    }
    say("%d peer queues (namespaces %s-q*), ElasticQuota min %s GPUs, %s CPU, %s memory; "
        "max the cluster", n, opt.ns, min_g, min_c, min_m);
    return 0;
}

int main(int argc, char **argv)
{
    if (parse_args(argc, argv) || load_trace())
        return 2;
    struct flexpu_error err;
    if (kube_config_load(opt.kubeconfig, NULL, &cfg, &err)) {
        fprintf(stderr, "flexpu-kbench: %s\n", err.msg);
        return 1;
    }
    for (int i = 0; i < opt.clients; i++) {
        if (!(clients[i] = kube_client_new(&cfg, "flexpu-kbench", &err))) {
            fprintf(stderr, "flexpu-kbench: %s\n", err.msg);
            return 1;
        }
        /* Deleting a chunk of pods by label is one request that takes long on
         * a loaded server; the benchmark leads nothing, so it may wait. */
        kube_client_set_timeouts(clients[i], KUBE_TIMEOUT_LIST_MS, 0);
    }
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    json_t *ns = json_pack("{s:s, s:s, s:{s:s}}", "apiVersion", "v1", "kind", "Namespace",
                           "metadata", "name", opt.ns);
    long st;
    int rc = kube_request(clients[0], "POST", "/api/v1/namespaces", ns, NULL, &st, NULL, &err);
    json_decref(ns);
    if (rc && rc != FLEXPU_EEXIST) {
        fprintf(stderr, "flexpu-kbench: %s\n", err.msg);
        return 1;
    }
    /* a previous run's pods would hold capacity */
    if (delete_all(opt.pods > opt.stream_pods ? opt.pods : opt.stream_pods, NULL))
        return 1;

    say("creating %d nodes", opt.nodes);
    double t = now_ms();
    if (parallel_for(opt.nodes, create_node, NULL)) {
        fprintf(stderr, "flexpu-kbench: some nodes could not be created\n");
        return 1;
    }
    int ready = 0;
    for (;;) {
        ready = 0;
        list_each(clients[0], "/api/v1/nodes", "app=kbench", count_ready, &ready);
        if (ready >= opt.nodes || now_ms() - t > 300e3)
            break;
        sleep_ms(1000);
    }
    double setup_s = (now_ms() - t) / 1e3;
    if (ready < opt.nodes) {
        fprintf(stderr, "flexpu-kbench: only %d of %d nodes became Ready (is kwok running?)\n",
                ready, opt.nodes);
        return 1;
    }
    say("%d nodes Ready in %.1f s", ready, setup_s);
    if (make_queues() || make_peer_queues())
        return 1;

    struct result res[MAX_SCHED];
    for (int s = 0; s < opt.nsched; s++)
        if (run_sched(s, &res[s])) {
            fprintf(stderr, "flexpu-kbench: %s could not be measured\n", opt.sched[s].name);
            return 1;
        }
    FILE *f = opt.out ? fopen(opt.out, "w") : stdout;
    if (!f) {
        fprintf(stderr, "flexpu-kbench: cannot write %s: %s\n", opt.out, strerror(errno));
        return 1;
    }
    report(f, res, setup_s);
    if (f != stdout)
        fclose(f);
    for (int i = 0; i < opt.clients; i++)
        kube_client_free(clients[i]);
    kube_config_free(&cfg);
    fx_trace_free(&trace);
    fx_free(node_src);
    fx_free(pod_src);
    return 0;
}
