/* SPDX-License-Identifier: Apache-2.0 */
#include "node/remote_node.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "flexpu/log.h"
#include "kube/contract.h"
#include "node/remote.h"
#include "node/remote_agent.h"
#include "node/remote_key.h"
#include "node/remote_plugin.h"
#include "node/remote_spawn.h"

#define COMP "node"

struct fx_remote_node {
    struct fx_remote_key key;
    struct fx_node_inv inv;
    char runtime_lib[600];
    struct fx_remote_plugin *plugin;
    struct fx_remote_serve *serve;
};

int fx_remote_opt(struct fx_remote_opts *o, int ch, const char *arg)
{
    switch (ch - FX_REMOTE_OPT_FIRST) {
    case 0: {
        char *end;
        long v = strtol(arg, &end, 10);
        if (*arg == 0 || *end || v < 0 || v > FX_REMOTE_SLOTS_MAX) {
            fprintf(stderr, "flexpu-node: --remote-slots: invalid value '%s': want 0-%d\n", arg,
                    FX_REMOTE_SLOTS_MAX);
            return 2;
        }
        o->slots = (int)v;
        return 0;
    }
    case 1: o->key_path = arg; return 0;
    case 2: o->client_dir = arg; return 0;
    case 3: {
        int lo, hi;
        struct flexpu_error err = {0};
        if (fx_remote_port_range_parse(arg, &lo, &hi, &err)) {
            fprintf(stderr, "flexpu-node: %s\n", err.msg);
            return 2;
        }
        o->ports = arg;
        return 0;
    }
    case 4: o->address = arg; return 0;
    case 5: o->server_bin = arg; return 0;
    case 6: o->runtime_lib = arg; return 0;
    case 9: {
        struct flexpu_error err = {0};
        if (fx_remote_uid_range_parse(arg, &o->uid_first, &o->uid_last, &err)) {
            fprintf(stderr, "flexpu-node: %s\n", err.msg);
            return 2;
        }
        return 0;
    }
    case 10:
    case 11: {
        struct flexpu_error err = {0};
        bool clients = ch - FX_REMOTE_OPT_FIRST == 10;
        if (fx_remote_limit_parse(clients ? "--remote-max-clients" : "--remote-max-module-mib",
                                  arg, clients ? FX_REMOTE_MAX_CLIENTS_MAX
                                               : FX_REMOTE_MAX_MODULE_MIB_MAX,
                                  clients ? &o->max_clients : &o->max_module_mib, &err)) {
            fprintf(stderr, "flexpu-node: %s\n", err.msg);
            return 2;
        }
        return 0;
    }
    case 7:
    case 8: {
        struct flexpu_error err = {0};
        bool is_uid = ch - FX_REMOTE_OPT_FIRST == 7;
        if (fx_remote_id_parse(is_uid ? "--remote-uid" : "--remote-gid", arg,
                               is_uid ? &o->uid : &o->gid, &err)) {
            fprintf(stderr, "flexpu-node: %s\n", err.msg);
            return 2;
        }
        return 0;
    }
    default: return 2;
    }
}

/* The servers parse network input: they run as an unprivileged user that
 * cannot read the cluster key (docs/REMOTE.md, "The servers' privileges").
 * An agent that is not root cannot change user: its servers run as itself,
 * which can read the key (tests, a development machine), said once. */
static int servers_user_check(const char *key_path, unsigned uid, unsigned first,
                              unsigned last, struct flexpu_error *err)
{
    struct stat st;
    if (geteuid() != 0) {
        FX_WARN(COMP, "not root: the remote servers run as this agent's user, not "
                "--remote-uid or --remote-uid-range, and could read the cluster key",
                "uid=%d remote_uid=%u", (int)geteuid(), uid);
        return 0;
    }
    /* The key refuses group and other bits (remote_key.c): its owner is
     * the one user besides root that may read it. */
    if (stat(key_path, &st) != 0)
        return 0;
    if (!first && st.st_uid == uid)
        return flexpu_error_set(err, FLEXPU_EINVAL, "--remote-key '%s' belongs to uid %u, the "
                                "remote servers' user (--remote-uid): they could read it; "
                                "give the key to root or the servers another uid",
                                key_path, uid);
    if (first && st.st_uid >= first && st.st_uid <= last)
        return flexpu_error_set(err, FLEXPU_EINVAL, "--remote-key '%s' belongs to uid %u, in "
                                "the remote servers' --remote-uid-range %u-%u: one of them "
                                "could read it; give the key to root or the servers another "
                                "range", key_path, (unsigned)st.st_uid, first, last);
    return 0;
}

bool fx_remote_node_serves(const struct fx_remote_opts *o, int ngpu)
{
    return o->slots == 0 && o->key_path && ngpu > 0;
}

struct fx_remote_node *fx_remote_node_start(const struct fx_remote_opts *o, const char *node,
                                            const char *root, enum fx_dir_limits limits,
                                            const char *podresources,
                                            const struct fx_node_gpu *gpus, int ngpu,
                                            struct kube_config *kube,
                                            const struct fx_grpc_method **methods, void **ctx,
                                            struct flexpu_error *err)
{
    *methods = NULL;
    *ctx = NULL;
    err->code = 0;
    if (o->slots > 0 && ngpu > 0) {
        flexpu_error_set(err, FLEXPU_EINVAL, "--remote-slots is for a node without GPUs (this "
                         "one has %d): its own GPUs serve local slices", ngpu);
        return NULL;
    }
    if (o->slots == 0 && !fx_remote_node_serves(o, ngpu))
        return NULL; /* nothing remote on this node (a key alone on a node without GPUs
                      * has nothing to serve) */
    struct fx_remote_node *r = calloc(1, sizeof(*r));
    if (!r) {
        flexpu_error_set(err, FLEXPU_ENOMEM, "out of memory");
        return NULL;
    }
    if (!o->key_path) {
        flexpu_error_set(err, FLEXPU_EINVAL, "--remote-slots needs --remote-key (the cluster "
                                             "key of the slices' tokens)");
        goto fail;
    }
    if (fx_remote_key_load(o->key_path, &r->key, err))
        goto fail;
    if (o->slots > 0) {
        const char *from = o->client_dir ? o->client_dir : "/usr/lib/flexpu/remote";
        if (fx_remote_client_install(root, from, err))
            goto fail;
        struct fx_remote_plugin_config pc = {.node_name = node, .root = root,
                                             .podresources = podresources, .slots = o->slots,
                                             .key = &r->key};
        if (!(r->plugin = fx_remote_plugin_new(&pc, err)))
            goto fail;
        *methods = fx_remote_plugin_methods;
        *ctx = r->plugin;
        FX_INFO(COMP, "remote slots offered", "node=%s slots=%d client=%s", node, o->slots, from);
        return r;
    }
    r->inv.ngpu = ngpu;
    for (int i = 0; i < ngpu; i++) {
        struct fx_gpu_inv *g = &r->inv.gpus[i];
        snprintf(g->uuid, sizeof(g->uuid), "%s", gpus[i].uuid);
        snprintf(g->model, sizeof(g->model), "%s", gpus[i].model);
        g->mem_bytes = gpus[i].mem_bytes;
        g->healthy = gpus[i].healthy;
        if (gpus[i].mig)
            snprintf(g->mig, sizeof(g->mig), "%s", gpus[i].mig_profile);
    }
    int lo = 7100, hi = 7199;
    if (o->ports && fx_remote_port_range_parse(o->ports, &lo, &hi, err))
        goto fail;
    const char *addr = o->address ? o->address : getenv("NODE_IP");
    if (!addr || !*addr) {
        flexpu_error_set(err, FLEXPU_EINVAL, "serving remote slices needs this node's address: "
                         "--remote-address or $NODE_IP (the DaemonSet sets it from "
                         "status.hostIP)");
        goto fail;
    }
    snprintf(r->runtime_lib, sizeof(r->runtime_lib), "%s", o->runtime_lib ? o->runtime_lib : "");
    if (!o->runtime_lib)
        snprintf(r->runtime_lib, sizeof(r->runtime_lib), "%.500s/lib/libflexpu-cuda.so", root);
    if (o->uid && o->uid_first) {
        flexpu_error_set(err, FLEXPU_EINVAL, "--remote-uid %u and --remote-uid-range %u-%u: "
                         "give one (a shared user, or one per slice)", o->uid, o->uid_first,
                         o->uid_last);
        goto fail;
    }
    unsigned uid = o->uid ? o->uid : FX_REMOTE_UID_DEFAULT;
    unsigned gid = o->gid ? o->gid : FX_REMOTE_UID_DEFAULT;
    if (servers_user_check(o->key_path, uid, o->uid_first, o->uid_last, err))
        goto fail;
    struct fx_remote_serve_config sc = {
        .node = node, .root = root, .address = addr,
        .server_bin = o->server_bin ? o->server_bin : "/usr/bin/flexpu-remoted",
        .runtime_lib = r->runtime_lib, .limits = limits, .port_min = lo,
        .port_max = hi, .max_clients = o->max_clients, .max_module_mib = o->max_module_mib,
        .key = &r->key, .inv = &r->inv, .kube = kube,
        .cap_clock_mhz = o->cap_clock_mhz, .drop = geteuid() == 0, .uid = uid, .gid = gid,
        .uid_first = o->uid_first, .uid_last = o->uid_last};
    if (!(r->serve = fx_remote_serve_start(&sc, err)))
        goto fail;
    return r;
fail:
    memset(&r->key, 0, sizeof(r->key));
    free(r);
    return NULL;
}

void fx_remote_node_pod_event(struct fx_remote_node *r, enum kube_event ev, json_t *pod)
{
    if (!r || !r->plugin)
        return;
    fx_remote_plugin_pod_event(r->plugin, ev, pod);
}

int fx_remote_node_holds(void *ctx, const char *uuid, struct fx_gpu_hold *out, int max)
{
    struct fx_remote_node *r = ctx;
    return r && r->serve ? fx_remote_serve_holds(r->serve, uuid, out, max) : 0;
}

int fx_remote_node_pod_name(void *ctx, const char *uid, char *ns, size_t ns_len, char *name,
                            size_t name_len)
{
    struct fx_remote_node *r = ctx;
    return r && r->serve ? fx_remote_serve_pod_name(r->serve, uid, ns, ns_len, name, name_len)
                         : -1;
}

void fx_remote_node_tick(struct fx_remote_node *r)
{
    if (r && r->plugin)
        fx_remote_plugin_tick(r->plugin);
}

void fx_remote_node_stop(struct fx_remote_node *r)
{
    if (!r)
        return;
    fx_remote_serve_stop(r->serve, false);
    fx_remote_plugin_free(r->plugin);
    memset(&r->key, 0, sizeof(r->key));
    free(r);
}
