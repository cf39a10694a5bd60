/* SPDX-License-Identifier: Apache-2.0 */
/* flexpu-scheduler: schedules the pods whose spec.schedulerName is ours.
 *
 * Threads: one watch each for nodes, pods and Queues (each with its own
 * connection) push events into a queue; the main thread owns the model, applies the
 * events, and, while it leads, decides; a pool of senders posts the
 * Bindings and a thread of its own the Events (bind.c). The decision travels in
 * the Binding's annotations, which the API server copies onto the pod in the
 * same write that sets spec.nodeName: a pod is never bound without its
 * allocation recorded, nor recorded without being bound. */
#include <errno.h>
#include <getopt.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "flexpu/log.h"
#include "kube/contract.h"
#include "kube/kube.h"
#include "scheduler/bind.h"
#include "scheduler/metrics.h"
#include "scheduler/model.h"
#include "scheduler/queues.h"
#include "scheduler/relabel.h"
#include "util/alloc.h"
#include "util/clock.h"
#include "util/promserve.h"

#define COMP "scheduler"

/* Set by the signal handler and the watch threads (lock-free, so allowed
 * in a handler); read by every loop that stops. */
static atomic_int stop_flag;

static void on_signal(int sig)
{
    (void)sig;
    atomic_store(&stop_flag, 1);
}

/* ---- the event queue between watch threads and the main loop ---- */

/* A condition-variable deadline 100 ms from now (their default clock). */
static void in_100ms(struct timespec *ts)
{
    clock_gettime(CLOCK_REALTIME, ts);
    ts->tv_nsec += 100 * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

/* What a watch event is about. */
enum {
    EV_NODE = 0,
    EV_POD,
    EV_QUEUE,
    EV_KINDS
};

struct qev {
    int kind;
    enum kube_event ev;
    json_t *obj;
    struct qev *next;
};

/* Events waiting for the main thread. Beyond this many a watch thread waits
 * (the API server's stream waits with it), so a list of 100,000 pending pods
 * never sits in memory as JSON at once. */
#define QUEUE_MAX 256

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv, room;
    size_t len;
    struct qev *head, *tail;
    int synced[EV_KINDS]; /* first full list delivered */
} q = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, PTHREAD_COND_INITIALIZER, 0,
       NULL, NULL, {0, 0, 0}};

static int push(int kind, enum kube_event ev, json_t *obj)
{
    struct qev *e = fx_malloc(sizeof(*e));
    if (!e) {
        /* A lost event would leave the model wrong with nothing to heal it:
         * stop, and let the Deployment start a fresh instance that relists. */
        FX_ERROR(COMP, "out of memory queueing a watch event; stopping", "event=%s",
                 kube_event_name(ev));
        atomic_store(&stop_flag, 1);
        return 1;
    }
    e->kind = kind;
    e->ev = ev;
    /* managedFields are most of an object's size and nothing here reads
     * them. */
    json_object_del(json_object_get(obj, "metadata"), "managedFields");
    e->obj = obj ? json_incref(obj) : NULL;
    e->next = NULL;
    pthread_mutex_lock(&q.mu);
    while (q.len >= QUEUE_MAX && !atomic_load(&stop_flag)) {
        struct timespec ts;
        in_100ms(&ts);
        pthread_cond_timedwait(&q.room, &q.mu, &ts);
    }
    q.len++;
    if (q.tail)
        q.tail->next = e;
    else
        q.head = e;
    q.tail = e;
    pthread_cond_signal(&q.cv);
    pthread_mutex_unlock(&q.mu);
    return 0;
}

static int node_cb(enum kube_event ev, json_t *obj, void *ctx)
{
    (void)ctx;
    return push(EV_NODE, ev, obj);
}

static int pod_cb(enum kube_event ev, json_t *obj, void *ctx)
{
    (void)ctx;
    return push(EV_POD, ev, obj);
}

static int queue_cb(enum kube_event ev, json_t *obj, void *ctx)
{
    (void)ctx;
    return push(EV_QUEUE, ev, obj);
}

struct watcher {
    struct kube_config *cfg;
    const char *path, *fields;
    kube_watch_cb cb;
    pthread_t tid;
    volatile long list_status; /* the last list's HTTP status */
};

static void *watch_main(void *arg)
{
    struct watcher *w = arg;
    struct flexpu_error err = {0};
    struct kube_client *c = kube_client_new(w->cfg, "flexpu-scheduler", &err);
    if (!c) {
        FX_ERROR(COMP, "cannot create a client", "error=\"%s\"", err.msg);
        atomic_store(&stop_flag, 1);
        return NULL;
    }
    /* Pages of 100: a page is parsed whole, and its objects live until the
     * main thread has applied them. */
    struct kube_watch_opts o = {.path = w->path, .field_selector = w->fields, .page_size = 100,
                                .stop = &stop_flag, .list_status = &w->list_status};
    int rc = kube_list_watch(c, &o, w->cb, NULL, &err);
    if (rc && !atomic_load(&stop_flag))
        FX_ERROR(COMP, "watch ended", "path=%s error=\"%s\"", w->path, err.msg);
    kube_client_free(c);
    return NULL;
}

/* ---- Queue status ---- */

static int send_queue_status(const char *name, json_t *patch, void *ctx)
{
    struct flexpu_error err = {0};
    int rc = kube_queue_patch_status(ctx, name, patch, &err);
    if (rc && rc != FLEXPU_ENOENT)
        FX_WARN(COMP, "cannot write a queue's status", "queue=%s error=\"%s\"", name, err.msg);
    return rc;
}

/* Whether the Queue collection is as listed: its first list came, or the
 * server says there is none to list (the CRD not installed: 404) or none we
 * may read (403). Pods then all share the default queue; once the CRD
 * appears, the watch (retrying) brings its queues in. */
static bool queues_ready(const struct watcher *w, bool *absent)
{
    long st = w->list_status;
    *absent = !q.synced[EV_QUEUE] && (st == 404 || st == 403);
    return q.synced[EV_QUEUE] || *absent;
}

/* ---- metrics ---- */

static char *metrics_render(void *ctx)
{
    return fx_sched_metrics_render(ctx);
}

static int metrics_health(void *ctx, char *why, size_t len)
{
    return fx_sched_metrics_health(ctx, fx_mono_ms(), why, len);
}

/* ---- main ---- */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: flexpu-scheduler [options]\n"
            "  --kubeconfig PATH      kubeconfig (default: $KUBECONFIG, in-cluster, ~/.kube/config)\n"
            "  --scheduler-name NAME  pods' spec.schedulerName to serve (flexpu-scheduler)\n"
            "  --policy NAME          placement policy (flexpu); whole, bestfit, fgd, ...\n"
            "  --leader-elect BOOL    elect a leader on a Lease (true)\n"
            "  --lease-namespace NS   namespace of the Lease (the configuration's namespace)\n"
            "  --lease-name NAME      name of the Lease (flexpu-scheduler)\n"
            "  --identity ID          this instance's name (hostname_pid)\n"
            "  --seed N               tie-breaking seed (42)\n"
            "  --reclaim MODE         which pods a queue under its fair share may evict from\n"
            "                         queues above theirs: any (default), not-higher-priority\n"
            "                         (none of a higher PriorityClass than the pod), never\n"
            "  --borrow-mem MODE      memory an opportunistic pod may borrow: unreserved (the\n"
            "                         default: what no slice reserved) or idle (light pods\n"
            "                         also what owners reserved and do not use)\n"
            "  --remote-topology-keys KEYS\n"
            "                         node label keys, most specific first, whose value a\n"
            "                         remote pod's node (no GPUs) should share with its GPU's\n"
            "                         node; \"\": no preference (default:\n"
            "                         " FX_REMOTE_TOPOLOGY_KEYS_DEFAULT ")\n"
            "  --bind-workers N       Bindings sent at once, each on its own connection (8; 1-64)\n"
            "  --metrics-address ADDR IPv4 address for metrics (0.0.0.0)\n"
            "  --metrics-port PORT    port for /metrics and /healthz (0: off, the default;\n"
            "                         deploy/ and the Helm chart use 9401)\n"
            "  --log-level LEVEL      debug, info, warn, error (info)\n");
}

int main(int argc, char **argv)
{
    const char *kubeconfig = NULL, *sched_name = "flexpu-scheduler", *policy = "flexpu";
    const char *lease_ns = NULL, *lease_name = "flexpu-scheduler", *identity = NULL;
    int leader_elect = 1, bind_workers = FX_BIND_WORKERS_DEFAULT, metrics_port = 0;
    const char *metrics_addr = "0.0.0.0";
    unsigned long long seed = 42;
    enum fx_reclaim reclaim = FX_RECLAIM_ANY;
    enum fx_borrow_mem borrow_mem = FX_BORROW_MEM_UNRESERVED;
    struct fx_remote_topology remote_topo;
    const char *remote_keys = FX_REMOTE_TOPOLOGY_KEYS_DEFAULT;
    static const struct option opts[] = {
        {"kubeconfig", required_argument, 0, 'k'},  {"scheduler-name", required_argument, 0, 'n'},
        {"policy", required_argument, 0, 'p'},      {"leader-elect", required_argument, 0, 'l'},
        {"lease-namespace", required_argument, 0, 'N'}, {"lease-name", required_argument, 0, 'L'},
        {"identity", required_argument, 0, 'i'},    {"seed", required_argument, 0, 's'},
        {"reclaim", required_argument, 0, 'R'},
        {"borrow-mem", required_argument, 0, 'B'},
        {"remote-topology-keys", required_argument, 0, 'T'},
        {"log-level", required_argument, 0, 'v'},   {"bind-workers", required_argument, 0, 'b'},
        {"metrics-address", required_argument, 0, 'a'}, {"metrics-port", required_argument, 0, 'P'},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    struct flexpu_error err = {0};
    int ch;
    flexpu_log_set_timestamps(1);
    flexpu_log_set_level(FLEXPU_LOG_INFO);
    /* Objects are parsed on the watch threads and freed on the main thread;
     * one arena per thread would keep each thread's peak apart. */
    mallopt(M_ARENA_MAX, 1);
    while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (ch) {
        case 'k': kubeconfig = optarg; break;
        case 'n': sched_name = optarg; break;
        case 'p': policy = optarg; break;
        case 'l':
            if (strcmp(optarg, "true") && strcmp(optarg, "false")) {
                fprintf(stderr, "flexpu-scheduler: --leader-elect: invalid value '%s': "
                                "must be true or false\n", optarg);
                return 2;
            }
            leader_elect = strcmp(optarg, "true") == 0;
            break;
        case 'N': lease_ns = optarg; break;
        case 'R':
            if (fx_reclaim_parse(optarg, &reclaim)) {
                fprintf(stderr, "flexpu-scheduler: --reclaim: invalid value '%s': must be any, "
                                "not-higher-priority or never\n", optarg);
                return 2;
            }
            break;
        case 'B':
            if (fx_borrow_mem_parse(optarg, &borrow_mem)) {
                fprintf(stderr, "flexpu-scheduler: --borrow-mem: invalid value '%s': must be "
                                "unreserved or idle\n", optarg);
                return 2;
            }
            break;
        case 'T': remote_keys = optarg; break;
        case 'L': lease_name = optarg; break;
        case 'i': identity = optarg; break;
        case 's': {
            char *end;
            errno = 0;
            seed = strtoull(optarg, &end, 10);
            if (errno || *end || !*optarg) {
                fprintf(stderr, "flexpu-scheduler: --seed: invalid value '%s'\n", optarg);
                return 2;
            }
            break;
        }
        case 'b': {
            char *end;
            errno = 0;
            long v = strtol(optarg, &end, 10);
            if (errno || *end || !*optarg || v < 1 || v > FX_BIND_WORKERS_MAX) {
                fprintf(stderr, "flexpu-scheduler: --bind-workers: invalid value '%s': "
                                "must be a whole number from 1 to %d\n", optarg,
                        FX_BIND_WORKERS_MAX);
                return 2;
            }
            bind_workers = (int)v;
            break;
        }
        case 'a': metrics_addr = optarg; break;
        case 'P':
            if (fx_prom_parse_port(optarg, &metrics_port)) {
                fprintf(stderr, "flexpu-scheduler: --metrics-port: invalid value '%s': "
                                "want 0-65535\n", optarg);
                return 2;
            }
            break;
        case 'v':
            if (flexpu_log_level_option("flexpu-scheduler", optarg))
                return 2;
            break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "flexpu-scheduler: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if (fx_remote_topology_parse("--remote-topology-keys", remote_keys, &remote_topo, &err)) {
        fprintf(stderr, "flexpu-scheduler: %s\n", err.msg);
        return 2;
    }

    struct kube_config cfg;
    if (kube_config_load(kubeconfig, NULL, &cfg, &err)) {
        fprintf(stderr, "flexpu-scheduler: %s\n", err.msg);
        return 1;
    }
    struct fx_model *m = fx_model_new(sched_name, policy, seed, &err);
    if (!m) {
        fprintf(stderr, "flexpu-scheduler: --policy: %s\n", err.msg);
        kube_config_free(&cfg);
        return 2;
    }
    fx_model_set_reclaim(m, reclaim);
    fx_model_set_borrow_mem(m, borrow_mem);
    fx_model_set_remote_topology(m, &remote_topo);
    char ident[256];
    if (!identity) {
        char host[200] = "unknown";
        gethostname(host, sizeof(host) - 1);
        snprintf(ident, sizeof(ident), "%s_%d", host, (int)getpid());
        identity = ident;
    }
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    struct kube_client *c = kube_client_new(&cfg, "flexpu-scheduler", &err);
    if (!c) {
        fprintf(stderr, "flexpu-scheduler: %s\n", err.msg);
        return 1;
    }
    struct kube_lease lease = {.namespace = lease_ns ? lease_ns : cfg.namespace,
                               .name = lease_name,
                               .identity = identity,
                               .duration_s = 15};
    int64_t next_lease = 0, next_report = 0;
    bool was_leader = false;
    FX_INFO(COMP, "starting",
            "scheduler_name=%s policy=%s identity=%s leader_elect=%s reclaim=%s "
            "remote_topology_keys=\"%s\"",
            sched_name, policy, identity, leader_elect ? "true" : "false",
            reclaim == FX_RECLAIM_ANY ? "any"
            : reclaim == FX_RECLAIM_NEVER ? "never" : "not-higher-priority", remote_keys);
    struct fx_binder binder = {.c = c, .lease = leader_elect ? &lease : NULL,
                               .identity = identity};
    if (fx_binder_start(&binder, &cfg, bind_workers, &err)) {
        fprintf(stderr, "flexpu-scheduler: cannot start the bind senders: %s\n", err.msg);
        kube_client_free(c);
        fx_model_free(m);
        kube_config_free(&cfg);
        return 1;
    }
    struct fx_sched_metrics metrics;
    fx_sched_metrics_init(&metrics);
    struct fx_promserve *ms = NULL;
    if (metrics_port > 0 && !(ms = fx_promserve_start(metrics_addr, metrics_port, metrics_render,
                                                      metrics_health, &metrics, &err))) {
        fprintf(stderr, "flexpu-scheduler: --metrics-port: %s\n", err.msg);
        fx_binder_stop(&binder, NULL);
        fx_sched_metrics_destroy(&metrics);
        kube_client_free(c);
        fx_model_free(m);
        kube_config_free(&cfg);
        return 1;
    }
    /* Pods that finished hold nothing: the API server filters them out, and
     * a pod that finishes leaves the watch as DELETED. */
    struct watcher wn = {&cfg, "/api/v1/nodes", NULL, node_cb, 0, 0};
    struct watcher wp = {&cfg, "/api/v1/pods", "status.phase!=Succeeded,status.phase!=Failed",
                         pod_cb, 0, 0};
    struct watcher wq = {&cfg, KUBE_QUEUES_PATH, NULL, queue_cb, 0, 0};
    struct fx_queue_sync *qs = fx_queue_sync_new();
    struct fx_relabel *relabel = fx_relabel_new();
    if (!qs || !relabel) {
        fprintf(stderr, "flexpu-scheduler: out of memory\n");
        return 1;
    }
    pthread_create(&wn.tid, NULL, watch_main, &wn);
    pthread_create(&wp.tid, NULL, watch_main, &wp);
    pthread_create(&wq.tid, NULL, watch_main, &wq);
    int64_t next_queue_status = 0;
    int queues_said = -1; /* what was logged of the Queue CRD: -1 nothing, 0 absent, 1 present */

    while (!atomic_load(&stop_flag)) {
        int64_t now = (int64_t)fx_mono_ns();
        bool leader = true;
        if (leader_elect) {
            if (now >= next_lease) {
                if (kube_lease_step(c, &lease, now, &err))
                    FX_WARN(COMP, "leader election step failed", "error=\"%s\"", err.msg);
                next_lease = now + 2000000000LL;
            }
            leader = lease.leader;
        }
        if (leader != was_leader) {
            FX_INFO(COMP, leader ? "leading" : "following", "identity=%s", identity);
            was_leader = leader;
        }
        /* Take the events that arrived; wait a little when there are none. */
        pthread_mutex_lock(&q.mu);
        if (!q.head) {
            struct timespec ts;
            in_100ms(&ts);
            pthread_cond_timedwait(&q.cv, &q.mu, &ts);
        }
        struct qev *list = q.head;
        q.head = q.tail = NULL;
        q.len = 0;
        pthread_cond_broadcast(&q.room);
        pthread_mutex_unlock(&q.mu);
        while (list) {
            struct qev *e = list;
            list = e->next;
            if (e->ev == KUBE_SYNC_END)
                q.synced[e->kind] = 1;
            if (e->kind == EV_POD) {
                fx_model_pod_event(m, e->ev, e->obj);
                fx_relabel_pod_event(relabel, e->ev, e->obj);
            }
            else if (e->kind == EV_NODE)
                fx_model_node_event(m, e->ev, e->obj);
            else
                fx_queue_sync_event(qs, m, e->ev, e->obj);
            json_decref(e->obj);
            fx_free(e);
        }
        bool queues_absent;
        bool synced = q.synced[EV_NODE] && q.synced[EV_POD] && queues_ready(&wq, &queues_absent);
        fx_sched_metrics_update(&metrics, m, &binder, leader, synced, fx_mono_ms());
        if (!synced)
            continue;
        if (queues_said != !queues_absent) {
            if (queues_absent)
                FX_WARN(COMP, "no Queue objects to read: every pod is in the default queue",
                        "path=%s status=%ld hint=\"404: the CRD is not installed; 403: no RBAC\"",
                        KUBE_QUEUES_PATH, wq.list_status);
            else if (queues_said == 0)
                FX_INFO(COMP, "Queue objects readable now", "queues=%d", fx_queue_sync_count(qs));
            queues_said = !queues_absent;
        }
        fx_binder_collect(m, &binder);
        fx_settle_round(m, &binder, fx_mono_ms());
        /* Borrowing compares the usage feed's timestamps (the agents' wall
         * clocks) with this one. */
        fx_model_set_clock(m, (int64_t)time(NULL));
        if (!leader)
            continue;
        /* Decide and bind until nothing is waiting or new events arrived:
         * events go first so the next decision sees them. The lease is
         * checked again before each bind (fx_bind_round). */
        fx_bind_round(m, &binder, 256, &stop_flag);
        /* Remote pods bound before the scheduler labelled them, a few
         * writes a round (relabel.h). */
        fx_relabel_round(relabel, c, 16, fx_mono_ms());
        /* Queue status, at most every 10 s and only what changed: a
         * status is for people and dashboards, not for deciding. */
        if (now >= next_queue_status) {
            char stamp[40];
            kube_time_now(stamp, sizeof(stamp), false);
            fx_queue_sync_publish(qs, m, stamp, send_queue_status, c);
            next_queue_status = now + 10000000000LL;
        }
        if (now >= next_report) {
            struct fx_model_stats st;
            fx_model_stats(m, &st);
            FX_INFO(COMP, "state",
                    "nodes=%d gpus=%d bound=%d queued=%d waiting=%d invalid=%d unsure=%d "
                    "gpu_alloc=%.4f binds=%ld bind_errors=%ld binds_unsent=%ld "
                    "events_dropped=%ld conditions_dropped=%ld conflicts=%lld",
                    st.nodes, st.gpus, st.pods_bound, st.pods_queued, st.pods_waiting,
                    st.pods_invalid, st.pods_unsure,
                    st.gpu_milli_total ? (double)st.gpu_milli_used / (double)st.gpu_milli_total
                                       : 0.0,
                    binder.binds, binder.bind_errors, binder.binds_unsent,
                    binder.events_dropped, binder.conditions_dropped, (long long)st.conflicts);
            next_report = now + 10000000000LL;
        }
    }
    FX_INFO(COMP, "stopping", "identity=%s", identity);
    /* Before the lease goes: binds on the wire finish under it. */
    fx_binder_stop(&binder, m);
    fx_promserve_stop(ms);
    fx_sched_metrics_destroy(&metrics);
    if (leader_elect && kube_lease_release(c, &lease, &err))
        FX_WARN(COMP, "cannot release the lease", "error=\"%s\"", err.msg);
    pthread_join(wn.tid, NULL);
    pthread_join(wp.tid, NULL);
    pthread_join(wq.tid, NULL);
    fx_queue_sync_free(qs);
    fx_relabel_free(relabel);
    kube_client_free(c);
    fx_model_free(m);
    kube_config_free(&cfg);
    while (q.head) {
        struct qev *e = q.head;
        q.head = e->next;
        json_decref(e->obj);
        fx_free(e);
    }
    return 0;
}
