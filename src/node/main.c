/* SPDX-License-Identifier: Apache-2.0 */
/* flexpu-node: the node agent (a DaemonSet).
 *
 *  - Discovers the GPUs through NVML and publishes them on its Node: the
 *    inventory annotation flexpu.io/gpus (read by flexpu-scheduler) and the
 *    node-level extended resources flexpu.io/gpu-cores and
 *    flexpu.io/gpu-memory in the Node's status (counted by kubelet
 *    admission).
 *  - Serves the kubelet device plugin for flexpu.io/gpu (plugin.c), and
 *    registers again whenever the kubelet restarts.
 *  - Installs the runtime library and /etc/ld.so.preload's content on the
 *    host, which Allocate mounts into the containers, and the directories of
 *    the slices' files and ledgers (slices.h).
 *  - Arbitrates compute between the slices (runtime/arbagent.h).
 *  - Serves Prometheus metrics from the arbiter's pages and the slices'
 *    ledgers (metrics.c).
 *  - Publishes each GPU's and slice's measured use on its Node, at most
 *    once per 10 s and only on change (usage.c, annotation
 *    flexpu.io/gpu-usage).
 *  - In --sharing-mode mig, partitions each MIG-capable GPU to
 *    --mig-layout at start and publishes its MIG devices as GPUs (mig.c).
 *
 * Threads: the pod watch (pods bound to this node) feeds the plugin; the
 * gRPC server has its own, and so has the usage feed; the main thread
 * checks health and the kubelet once a second. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "flexpu/log.h"
#include "kube/contract.h"
#include "kube/kube.h"
#include "node/file_install.h"
#include "node/gpus.h"
#include "node/grpc.h"
#include "node/metrics.h"
#include "node/mig.h"
#include "util/promserve.h"
#include "node/plugin.h"
#include "node/remote_node.h"
#include "node/slices.h"
#include "node/usage.h"
#include "runtime/arbagent.h"

#define COMP "node"
#define ENDPOINT "flexpu-gpu.sock"
/* Above the 10 s the kubelet may spend dialing a plugin's socket back
 * while it handles Register. */
#define REGISTER_TIMEOUT_MS 15000

/* Set by the signal handler and the watch threads (lock-free, so allowed
 * in a handler); read by every loop that stops. */
static atomic_int stop_flag;

static void on_signal(int sig)
{
    (void)sig;
    atomic_store(&stop_flag, 1);
}

struct agent {
    const char *node, *root, *dp_dir, *runtime_lib;
    enum fx_dir_limits dir_limits;
    int cap_clock_mhz; /* --cap-clock-mhz; 0: off */
    enum fx_sharing_mode sharing;
    const char *mps_control;
    struct fx_mig_layout mig_layout; /* mig mode: what every MIG-capable GPU holds */
    bool mig_layout_set;
    struct kube_config cfg;
    struct kube_client *client;
    struct fx_nvml *nvml;
    pthread_mutex_t gpu_mu; /* gpus[] for the metrics thread */
    struct fx_node_gpu gpus[FLEXPU_MAX_GPUS];
    int ngpu;
    struct fx_plugin *plugin;
    /* Remote slices (remote_node.h); the device plugin served is the
     * remote one when dp_methods is set (a node without GPUs). */
    struct fx_remote_node *remote;
    const struct fx_grpc_method *dp_methods;
    void *dp_ctx;
    struct fx_grpc_server *grpc;
    char sock[512], kubelet_sock[512];
    ino_t kubelet_ino;
    bool registered;
    unsigned register_failures;
};

/* ---- host files the containers mount ---- */

static int install_host_files(struct agent *a, struct flexpu_error *err)
{
    char path[600];
    const char *dirs[] = {"", "/lib", "/slices", "/ledger"};
    for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
        snprintf(path, sizeof(path), "%s%s", a->root, dirs[i]);
        if (mkdir(path, 0755) != 0 && errno != EEXIST)
            return flexpu_error_set(err, FLEXPU_EIO, "cannot create '%s': %s", path,
                                    strerror(errno));
    }
    if (fx_dir_limits_check(a->root, a->dir_limits, err) != 0)
        return -1;
    if (a->dir_limits == FX_DIR_LIMITS_OFF)
        FX_WARN(COMP, "tenant-writable directories have no size limit (--size-limits=off): a "
                "tenant can fill the filesystem that holds them", "root=%s", a->root);
    if (a->runtime_lib[0]) {
        snprintf(path, sizeof(path), "%s/lib/libflexpu-cuda.so", a->root);
        if (fx_file_install(a->runtime_lib, path, "--runtime-library", err) != 0)
            return -1;
    }
    return fx_preload_install(a->root, err);
}

/* ---- the Node object ---- */

static int publish_node(struct agent *a, struct flexpu_error *err)
{
    struct fx_node_inv inv = {.ngpu = a->ngpu};
    long long mem = 0;
    for (int i = 0; i < a->ngpu; i++) {
        struct fx_gpu_inv *g = &inv.gpus[i];
        snprintf(g->uuid, sizeof(g->uuid), "%s", a->gpus[i].uuid);
        snprintf(g->model, sizeof(g->model), "%s", a->gpus[i].model);
        g->mem_bytes = a->gpus[i].mem_bytes;
        g->numa = a->gpus[i].numa;
        g->group = a->gpus[i].group;
        g->healthy = a->gpus[i].healthy;
        if (a->gpus[i].mig)
            snprintf(g->mig, sizeof(g->mig), "%s", a->gpus[i].mig_profile);
        mem += a->gpus[i].mem_bytes;
    }
    char *text = fx_node_inv_format(&inv);
    if (!text)
        return flexpu_error_set(err, FLEXPU_ENOMEM, "out of memory");
    char path[400], esc[300];
    kube_escape(a->node, esc, sizeof(esc));
    snprintf(path, sizeof(path), "/api/v1/nodes/%s", esc);
    /* The sharing mode as a label: a pod that needs hard limits selects
     * mps or mig nodes with a nodeSelector. */
    json_t *patch = json_pack("{s:{s:{s:s}, s:{s:s}}}", "metadata", "annotations",
                              FX_ANN_NODE_GPUS, text, "labels", FX_LABEL_SHARING_MODE,
                              fx_sharing_mode_name(a->sharing));
    free(text);
    long status;
    int rc = kube_request(a->client, "PATCH", path, patch, KUBE_MERGE_PATCH, &status, NULL, err);
    json_decref(patch);
    if (rc)
        return rc;
    /* Capacity counts every GPU, healthy or not: the kubelet must keep
     * admitting the pods already placed; the scheduler fences lost GPUs
     * through the inventory. */
    char cores[32], bytes[32];
    snprintf(cores, sizeof(cores), "%d", 100 * a->ngpu);
    snprintf(bytes, sizeof(bytes), "%lld", mem);
    json_t *res = json_pack("{s:s, s:s}", FX_RES_GPU_CORES, cores, FX_RES_GPU_MEMORY, bytes);
    json_t *st = json_pack("{s:{s:O, s:O}}", "status", "capacity", res, "allocatable", res);
    json_decref(res);
    strncat(path, "/status", sizeof(path) - strlen(path) - 1);
    rc = kube_request(a->client, "PATCH", path, st, KUBE_MERGE_PATCH, &status, NULL, err);
    json_decref(st);
    return rc;
}

/* ---- pods bound to this node ---- */

static int pod_cb(enum kube_event ev, json_t *obj, void *ctx)
{
    fx_plugin_pod_event(ctx, ev, obj);
    return 0;
}

static int remote_pod_cb(enum kube_event ev, json_t *obj, void *ctx)
{
    fx_remote_node_pod_event(ctx, ev, obj);
    return 0;
}

struct watch_arg {
    struct agent *a;
    pthread_t tid;
};

/* Compute arbitration between the slices (runtime/arbagent.h): above the
 * tenants' threads where allowed, so hand-overs do not wait for a core. */
static int arb_stop;

static void *arb_main(void *p)
{
    struct sched_param sp = {.sched_priority = 1};
    if (pthread_setschedparam(pthread_self(), SCHED_FIFO, &sp) != 0)
        FX_INFO(COMP, "arbiter thread runs at normal priority (no CAP_SYS_NICE)", "policy=fifo");
    fx_arb_agent_run(p, &arb_stop);
    return NULL;
}

/* The SM clock the arbiter charges clock-referred caps by: read here, by
 * the agent, never taken from a tenant. gpus[] is read without gpu_mu: the
 * UUIDs and handles the health probe leaves alone. */
static int arb_clock(void *ctx, const char *uuid, uint32_t *mhz)
{
    struct agent *a = ctx;
    for (int i = 0; i < a->ngpu; i++)
        if (strcmp(a->gpus[i].uuid, uuid) == 0) {
            unsigned v = 0;
            int rc = fx_nvml_sm_clock(a->nvml, &a->gpus[i], &v);
            *mhz = v;
            return rc;
        }
    return -1;
}

static void *watch_main(void *p)
{
    struct agent *a = ((struct watch_arg *)p)->a;
    struct flexpu_error err = {0};
    struct kube_client *c = kube_client_new(&a->cfg, "flexpu-node", &err);
    if (!c) {
        FX_ERROR(COMP, "cannot create a client", "error=\"%s\"", err.msg);
        atomic_store(&stop_flag, 1);
        return NULL;
    }
    char fields[400];
    snprintf(fields, sizeof(fields), "spec.nodeName=%s", a->node);
    struct kube_watch_opts o = {.path = "/api/v1/pods", .field_selector = fields,
                                .stop = &stop_flag};
    if (kube_list_watch(c, &o, a->dp_methods ? remote_pod_cb : pod_cb,
                        a->dp_methods ? (void *)a->remote : a->plugin, &err) &&
        !atomic_load(&stop_flag)) {
        FX_ERROR(COMP, "pod watch ended", "error=\"%s\"", err.msg);
        atomic_store(&stop_flag, 1);
    }
    kube_client_free(c);
    return NULL;
}

/* ---- the kubelet ---- */

static int serve_and_register(struct agent *a)
{
    struct flexpu_error err = {0};
    struct stat st;
    if (a->grpc && stat(a->sock, &st) != 0) {
        /* Our socket was removed before the kubelet took it (the kubelet
         * cleaning its directory, an operator): a server nobody can dial
         * would be registered in vain. */
        FX_INFO(COMP, "the device plugin's socket is gone; serving it again", "socket=%s",
                a->sock);
        fx_grpc_server_stop(a->grpc);
        a->grpc = NULL;
    }
    if (!a->grpc) {
        a->grpc = fx_grpc_server_start(a->sock, a->dp_methods ? a->dp_methods : fx_plugin_methods,
                                       a->dp_methods ? a->dp_ctx : a->plugin, &err);
        if (!a->grpc) {
            FX_ERROR(COMP, "cannot serve the device plugin", "error=\"%s\"", err.msg);
            return -1;
        }
    }
    uint8_t *msg;
    size_t len;
    if (fx_plugin_register_request(ENDPOINT, &msg, &len) != 0)
        return -1;
    struct fx_grpc_reply r;
    /* Waiting less than the kubelet may take to answer would call a
     * registration that went through a failure, and register again. */
    int rc = fx_grpc_call(a->kubelet_sock, "/v1beta1.Registration/Register", msg, len,
                          REGISTER_TIMEOUT_MS, &r, &err);
    free(msg);
    if (rc) {
        /* Every second while the kubelet is away: say so now and then. */
        if (a->register_failures++ % 30 == 0)
            FX_WARN(COMP, "kubelet not reachable; will retry", "error=\"%s\"", err.msg);
        return -1;
    }
    a->register_failures = 0;
    free(r.data);
    if (r.status != FX_GRPC_OK) {
        FX_ERROR(COMP, "the kubelet refused the registration", "status=%d message=\"%s\"",
                 r.status, r.message);
        return -1;
    }
    a->kubelet_ino = stat(a->kubelet_sock, &st) == 0 ? st.st_ino : 0;
    a->registered = true;
    FX_INFO(COMP, "registered with the kubelet", "resource=%s endpoint=%s gpus=%d",
            FX_DP_RESOURCE, ENDPOINT, a->ngpu);
    return 0;
}

/* The kubelet, when it restarts, removes the plugins' sockets and makes a
 * new kubelet.sock: either sign means "register again". */
static bool kubelet_restarted(struct agent *a)
{
    struct stat st;
    if (stat(a->sock, &st) != 0)
        return true;
    if (stat(a->kubelet_sock, &st) != 0 || st.st_ino != a->kubelet_ino)
        return true;
    return false;
}

static void metrics_lock(void *ctx, int on)
{
    struct agent *a = ctx;
    if (on)
        pthread_mutex_lock(&a->gpu_mu);
    else
        pthread_mutex_unlock(&a->gpu_mu);
}

static int metrics_pod(void *ctx, const char *uid, char *ns, size_t ns_len, char *name,
                       size_t name_len)
{
    struct agent *a = ctx;
    return fx_plugin_pod_name(a->plugin, uid, ns, ns_len, name, name_len);
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: flexpu-node [options]\n"
            "  --node-name NAME          this node (default: $NODE_NAME)\n"
            "  --kubeconfig PATH         kubeconfig (default: $KUBECONFIG, in-cluster, ~/.kube/config)\n"
            "  --nvml-library PATH       NVML to load (libnvidia-ml.so.1)\n"
            "  --device-plugin-dir DIR   the kubelet's device plugin directory\n"
            "                            (/var/lib/kubelet/device-plugins)\n"
            "  --pod-resources-socket P  the kubelet's PodResources socket\n"
            "                            (/var/lib/kubelet/pod-resources/kubelet.sock)\n"
            "  --root DIR                host directory for the runtime library, slices,\n"
            "                            ledgers and arbiter pages (/var/lib/flexpu)\n"
            "  --size-limits MODE        what bounds the directories tenants write (the\n"
            "                            slices' ledgers): a tmpfs each, mounted so\n"
            "                            that the host sees it (shared: the root's mount must\n"
            "                            propagate, as with\n"
            "                            mountPropagation: Bidirectional), mounted in the\n"
            "                            agent's namespace (local: an agent on the host), or\n"
            "                            nothing (off) (shared)\n"
            "  --sharing-mode MODE       soft: the runtime library alone; mps: also an NVIDIA\n"
            "                            MPS control daemon per slice with its thread and\n"
            "                            pinned-memory limits; mig: each MIG-capable GPU cut\n"
            "                            into --mig-layout, each MIG device a GPU allocated\n"
            "                            whole (soft); published as the Node label\n"
            "                            " FX_LABEL_SHARING_MODE "\n"
            "  --mig-layout LAYOUT       mig mode: the MIG devices of every MIG-capable GPU,\n"
            "                            as 1g.10gb*7 or 3g.40gb,4g.40gb (required there)\n"
            "  --mps-control PATH        the MPS control program (" FX_MPS_CONTROL_DEFAULT ")\n"
            "  --cap-clock-mhz off|N     the SM clock (MHz) of the fully loaded GPU that a\n"
            "                            cap's percent refers to: a capped slice alone runs\n"
            "                            faster and is charged at clock / N (cap_clock_mhz in\n"
            "                            its slice.conf; docs/RUNTIME.md); 100-10000 (off)\n"
            "  --runtime-library PATH    libflexpu-cuda.so to install there\n"
            "                            (/usr/lib/flexpu/libflexpu-cuda.so; \"\" to skip)\n"
            "  --cgroup-root DIR         the host's cgroup v2 mount, where borrowers' pods are\n"
            "                            killed for an owner's memory (/sys/fs/cgroup)\n"
            "  --metrics-address ADDR    IPv4 address for metrics (0.0.0.0)\n"
            "  --metrics-port PORT       port for /metrics and /healthz (9400; 0: off)\n"
            "  --log-level LEVEL         debug, info, warn, error (info)\n"
            FX_REMOTE_USAGE);
}

int main(int argc, char **argv)
{
    struct agent a = {.root = "/var/lib/flexpu",
                      .dp_dir = "/var/lib/kubelet/device-plugins",
                      .runtime_lib = "/usr/lib/flexpu/libflexpu-cuda.so",
                      .dir_limits = FX_DIR_LIMITS_SHARED};
    const char *kubeconfig = NULL, *nvml_path = NULL, *metrics_addr = "0.0.0.0";
    const char *podres = "/var/lib/kubelet/pod-resources/kubelet.sock";
    const char *cgroup_root = "/sys/fs/cgroup";
    int metrics_port = 9400;
    a.node = getenv("NODE_NAME");
    static const struct option opts[] = {
        {"node-name", required_argument, 0, 'n'},
        {"kubeconfig", required_argument, 0, 'k'},
        {"nvml-library", required_argument, 0, 'N'},
        {"device-plugin-dir", required_argument, 0, 'd'},
        {"pod-resources-socket", required_argument, 0, 'P'},
        {"root", required_argument, 0, 'r'},
        {"runtime-library", required_argument, 0, 'R'},
        {"size-limits", required_argument, 0, 'L'},
        {"sharing-mode", required_argument, 0, 'S'},
        {"mps-control", required_argument, 0, 'M'},
        {"mig-layout", required_argument, 0, 'G'},
        {"cap-clock-mhz", required_argument, 0, 'c'},
        {"cgroup-root", required_argument, 0, 'C'},
        {"metrics-address", required_argument, 0, 'a'},
        {"metrics-port", required_argument, 0, 'p'},
        {"log-level", required_argument, 0, 'v'},
        {"help", no_argument, 0, 'h'},
        FX_REMOTE_LONG_OPTS,
        {0, 0, 0, 0}};
    struct fx_remote_opts ro = {0};
    struct flexpu_error err = {0};
    flexpu_log_set_timestamps(1);
    flexpu_log_set_level(FLEXPU_LOG_INFO);
    int ch;
    while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (ch) {
        case 'n': a.node = optarg; break;
        case 'k': kubeconfig = optarg; break;
        case 'N': nvml_path = optarg; break;
        case 'd': a.dp_dir = optarg; break;
        case 'P': podres = optarg; break;
        case 'r': a.root = optarg; break;
        case 'R': a.runtime_lib = optarg; break;
        case 'L':
            if (fx_dir_limits_parse(optarg, &a.dir_limits)) {
                fprintf(stderr, "flexpu-node: --size-limits: invalid value '%s': want shared, "
                                "local or off\n", optarg);
                return 2;
            }
            break;
        case 'S':
            if (fx_sharing_mode_parse(optarg, &a.sharing)) {
                fprintf(stderr, "flexpu-node: --sharing-mode: invalid value '%s': want soft, "
                                "mps or mig\n", optarg);
                return 2;
            }
            break;
        case 'M': a.mps_control = optarg; break;
        case 'G':
            if (fx_mig_layout_parse(optarg, &a.mig_layout, &err)) {
                fprintf(stderr, "flexpu-node: %s\n", err.msg);
                return 2;
            }
            a.mig_layout_set = true;
            break;
        case 'c':
            if (fx_cap_clock_flag_parse(optarg, &a.cap_clock_mhz, &err)) {
                fprintf(stderr, "flexpu-node: %s\n", err.msg);
                return 2;
            }
            break;
        case 'C': cgroup_root = optarg; break;
        case 'a': metrics_addr = optarg; break;
        case 'p':
            if (fx_prom_parse_port(optarg, &metrics_port)) {
                fprintf(stderr, "flexpu-node: --metrics-port: invalid value '%s': want 0-65535\n",
                        optarg);
                return 2;
            }
            break;
        case 'v':
            if (flexpu_log_level_option("flexpu-node", optarg))
                return 2;
            break;
        case FX_REMOTE_OPT_FIRST ... FX_REMOTE_OPT_LAST:
            if (fx_remote_opt(&ro, ch, optarg))
                return 2;
            break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "flexpu-node: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if ((a.sharing == FX_SHARING_MIG) != a.mig_layout_set) {
        fprintf(stderr, "flexpu-node: %s\n", a.mig_layout_set
                ? "--mig-layout is for --sharing-mode mig"
                : "--sharing-mode mig needs --mig-layout (as 1g.10gb*7 or 3g.40gb,4g.40gb)");
        return 2;
    }
    if (!a.node || !*a.node) {
        fprintf(stderr, "flexpu-node: no node name: pass --node-name or set NODE_NAME "
                        "(the DaemonSet sets it from spec.nodeName)\n");
        return 2;
    }
    snprintf(a.sock, sizeof(a.sock), "%s/%s", a.dp_dir, ENDPOINT);
    snprintf(a.kubelet_sock, sizeof(a.kubelet_sock), "%s/kubelet.sock", a.dp_dir);
    pthread_mutex_init(&a.gpu_mu, NULL);

    if (kube_config_load(kubeconfig, NULL, &a.cfg, &err)) {
        fprintf(stderr, "flexpu-node: %s\n", err.msg);
        return 1;
    }
    /* A node without GPUs for remote pods needs no driver (nor NVML). */
    bool no_gpus = ro.slots > 0 && !nvml_path;
    a.nvml = no_gpus ? NULL : fx_nvml_open(nvml_path, &err);
    if (!no_gpus &&
        (!a.nvml || fx_nvml_discover(a.nvml, a.gpus, FLEXPU_MAX_GPUS, &a.ngpu, &err))) {
        fprintf(stderr, "flexpu-node: %s\n", err.msg);
        return 1;
    }
    /* Before anything is published or served: the GPUs are then the
     * layout's MIG devices (and the GPUs without MIG). */
    if (a.sharing == FX_SHARING_MIG &&
        fx_mig_setup(a.nvml, &a.mig_layout, a.gpus, &a.ngpu, FLEXPU_MAX_GPUS, &err)) {
        fprintf(stderr, "flexpu-node: --sharing-mode mig: %s\n", err.msg);
        return 1;
    }
    for (int i = 0; i < a.ngpu; i++)
        FX_INFO(COMP, "gpu", "index=%d uuid=%s model=%s memory=%lld minor=%d numa=%d group=%d "
                "healthy=%d mig=%s", a.gpus[i].index, a.gpus[i].uuid, a.gpus[i].model,
                (long long)a.gpus[i].mem_bytes, a.gpus[i].minor, a.gpus[i].numa,
                a.gpus[i].group, a.gpus[i].healthy, a.gpus[i].mig ? a.gpus[i].mig_profile : "-");
    if (install_host_files(&a, &err)) {
        fprintf(stderr, "flexpu-node: %s\n", err.msg);
        return 1;
    }
    /* Events on pods (a killed borrower's MemoryReclaimed), posted from a
     * thread of their own (kube.h). */
    struct kube_recorder *events = kube_recorder_start(&a.cfg, "flexpu-node", a.node, 0, &err);
    if (!events) {
        fprintf(stderr, "flexpu-node: %s\n", err.msg);
        return 1;
    }
    struct fx_plugin_config pc = {.node_name = a.node, .root = a.root, .podresources = podres,
                                  .dir_limits = a.dir_limits, .cap_clock_mhz = a.cap_clock_mhz,
                                  .sharing = a.sharing,
                                  .mps_control = a.mps_control, .events = events};
    a.plugin = fx_plugin_new(&pc, a.gpus, a.ngpu, &err);
    if (!a.plugin) {
        fprintf(stderr, "flexpu-node: %s\n", err.msg);
        return 1;
    }
    ro.cap_clock_mhz = a.cap_clock_mhz;
    a.remote = fx_remote_node_start(&ro, a.node, a.root, a.dir_limits, podres, a.gpus, a.ngpu,
                                    &a.cfg, &a.dp_methods, &a.dp_ctx, &err);
    if (!a.remote && err.code) {
        fprintf(stderr, "flexpu-node: %s\n", err.msg);
        return 1;
    }
    /* A borrower on a GPU of this node leaves the remote slices' memory
     * alone, as a local owner's, and the metrics name their pods
     * (plugin.h). */
    if (a.remote)
        fx_plugin_set_remote(a.plugin,
                             &(struct fx_plugin_remote){.holds = fx_remote_node_holds,
                                                        .pod_name = fx_remote_node_pod_name,
                                                        .ctx = a.remote});
    a.client = kube_client_new(&a.cfg, "flexpu-node", &err);
    if (!a.client) {
        fprintf(stderr, "flexpu-node: %s\n", err.msg);
        return 1;
    }
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    /* Borrowers killed when an owner needs memory they hold (reclaim_mem.h). */
    struct fx_reclaim_mem_config rc = {.root = a.root, .cgroup_root = cgroup_root,
                                       .gpus = a.gpus, .ngpu = a.ngpu,
                                       .list = fx_plugin_allocations,
                                       .reclaimed = fx_plugin_reclaimed, .ctx = a.plugin};
    struct fx_reclaim_mem *reclaim = fx_reclaim_mem_new(&rc, &err);
    if (!reclaim || fx_reclaim_mem_start(reclaim, &err)) {
        fprintf(stderr, "flexpu-node: %s\n", err.msg);
        return 1;
    }
    struct fx_metrics_server *ms = NULL;
    struct fx_metrics_source msrc = {.gpus = a.gpus, .ngpu = &a.ngpu, .lock = metrics_lock,
                                     .pod = metrics_pod, .ctx = &a, .reclaim = reclaim};
    char state_dir[600];
    /* GPU time and activity per slice: the agent's arbiter pages (the
     * library writes no shared state under the agent). */
    snprintf(state_dir, sizeof(state_dir), "%s/arb", a.root);
    msrc.state_dir = state_dir;
    char ledger_root[600];
    snprintf(ledger_root, sizeof(ledger_root), "%s/ledger", a.root);
    msrc.ledger_root = ledger_root;
    if (metrics_port > 0 && !(ms = fx_metrics_start(metrics_addr, metrics_port, &msrc, &err))) {
        fprintf(stderr, "flexpu-node: %s\n", err.msg);
        return 1;
    }
    struct fx_arb_agent *arb = NULL;
    pthread_t arb_tid;
    int arb_rc = fx_arb_agent_new(&arb, a.root, &err);
    /* Its GPUs only (a tenant names its request files as it likes). A GPU
     * without a page is not arbitrated: its processes run unarbitrated
     * after a 1 s wait, as the library's log says. */
    for (int i = 0; i < a.ngpu && arb_rc == 0; i++) {
        struct flexpu_error gerr = {0};
        if (fx_arb_agent_add_gpu(arb, a.gpus[i].uuid, &gerr) != 0)
            FX_WARN(COMP, "GPU not arbitrated", "uuid=%s error=\"%s\"", a.gpus[i].uuid,
                    gerr.msg);
    }
    if (arb_rc == 0 && a.nvml)
        fx_arb_agent_set_clock(arb, arb_clock, &a);
    if (arb_rc != 0 || pthread_create(&arb_tid, NULL, arb_main, arb) != 0) {
        fprintf(stderr, "flexpu-node: arbiter: %s\n", err.msg);
        return 1;
    }
    struct watch_arg wa = {.a = &a};
    pthread_create(&wa.tid, NULL, watch_main, &wa);
    FX_INFO(COMP, "starting", "node=%s gpus=%d root=%s device_plugin_dir=%s metrics_port=%d "
            "sharing_mode=%s cap_clock_mhz=%d", a.node, a.ngpu, a.root, a.dp_dir, metrics_port,
            fx_sharing_mode_name(a.sharing), a.cap_clock_mhz);

    struct fx_usage_feed *feed = NULL;
    struct fx_usage_feed_config fc = {.kube = &a.cfg, .nvml = a.nvml, .node = a.node,
                                      .state_dir = state_dir, .ledger_root = ledger_root,
                                      .gpus = a.gpus, .ngpu = a.ngpu};
    bool published = false;
    int64_t tick = 0;
    while (!atomic_load(&stop_flag)) {
        if (a.registered && kubelet_restarted(&a)) {
            FX_INFO(COMP, "the kubelet restarted; registering again", "socket=%s", a.sock);
            fx_grpc_server_stop(a.grpc);
            a.grpc = NULL;
            a.registered = false;
        }
        if (!a.registered)
            serve_and_register(&a);
        bool before[FLEXPU_MAX_GPUS];
        for (int i = 0; i < a.ngpu; i++)
            before[i] = a.gpus[i].healthy;
        pthread_mutex_lock(&a.gpu_mu);
        int changed = fx_nvml_check_health(a.nvml, a.gpus, a.ngpu);
        pthread_mutex_unlock(&a.gpu_mu);
        if (changed) {
            for (int i = 0; i < a.ngpu; i++)
                if (before[i] != a.gpus[i].healthy)
                    FX_INFO(COMP, "gpu health changed", "uuid=%s healthy=%d reason=\"%s\"",
                            a.gpus[i].uuid, a.gpus[i].healthy, a.gpus[i].health_reason);
            if (fx_plugin_set_health(a.plugin, a.gpus, a.ngpu) && a.grpc) {
                uint8_t *msg;
                size_t len;
                if (fx_plugin_device_list(a.plugin, &msg, &len) == 0) {
                    fx_grpc_server_publish(a.grpc, FX_DP_LIST_AND_WATCH, msg, len);
                    free(msg);
                }
            }
            published = false; /* the scheduler fences lost GPUs by the annotation */
        }
        if (!published) {
            if (publish_node(&a, &err) == 0) {
                published = true;
                FX_INFO(COMP, "inventory published", "node=%s gpus=%d", a.node, a.ngpu);
            } else if (tick % 10 == 0) {
                FX_WARN(COMP, "cannot publish the inventory; will retry", "error=\"%s\"",
                        err.msg);
            }
        }
        /* After the inventory: the scheduler reads GPU indices against it. */
        if (published && !feed && !(feed = fx_usage_feed_start(&fc, &err)) && tick % 10 == 0)
            FX_WARN(COMP, "cannot start the usage feed; will retry", "error=\"%s\"", err.msg);
        fx_remote_node_tick(a.remote);
        tick++;
        sleep(1);
    }
    FX_INFO(COMP, "stopping", "node=%s", a.node);
    fx_grpc_server_stop(a.grpc);
    pthread_join(wa.tid, NULL);
    /* The metrics and the reclaim threads still run and ask the plugin,
     * which asks the remote watch: none of that once it is freed. */
    fx_plugin_set_remote(a.plugin, &(struct fx_plugin_remote){0});
    fx_remote_node_stop(a.remote);
    fx_metrics_stop(ms);
    fx_usage_feed_stop(feed);
    fx_reclaim_mem_free(reclaim);
    __atomic_store_n(&arb_stop, 1, __ATOMIC_RELEASE);
    pthread_join(arb_tid, NULL);
    fx_arb_agent_free(arb);
    fx_plugin_free(a.plugin);
    kube_recorder_stop(events);
    kube_client_free(a.client);
    fx_nvml_close(a.nvml);
    kube_config_free(&a.cfg);
    return 0;
}
