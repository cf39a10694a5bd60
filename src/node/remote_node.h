/* SPDX-License-Identifier: Apache-2.0 */
/* flexpu-node's remote slices (docs/REMOTE.md, "Kubernetes"), as main.c
 * starts them: its --remote-* options, and per node either
 *  - a node without GPUs with --remote-slots N: the remote device plugin
 *    (remote_plugin.h) instead of the GPU one, the client libraries
 *    installed in <root>/remote-lib; or
 *  - a node with GPUs given --remote-key: the servers of the remote slices
 *    placed on its GPUs (remote_agent.h).
 * Both need the cluster key (remote_key.h). */
#ifndef FX_NODE_REMOTE_NODE_H
#define FX_NODE_REMOTE_NODE_H

#include <getopt.h>
#include <stdbool.h>

#include "flexpu/error.h"
#include "kube/contract.h"
#include "kube/kube.h"
#include "node/gpus.h"
#include "node/dirlimit.h"
#include "node/grpc.h"

struct fx_remote_opts {
    int slots;
    const char *key_path, *client_dir, *ports, *address, *server_bin, *runtime_lib;
    unsigned uid, gid; /* the servers' user and group; 0: the default, 65534 */
    /* --remote-uid-range: a user of its own for each slice's server, from
     * uid_first to uid_last (remote_agent.h); 0: all run as uid */
    unsigned uid_first, uid_last;
    /* --remote-max-clients, --remote-max-module-mib: each server's
     * --max-clients and --max-module-mib; 0: the defaults (remote.h) */
    int max_clients, max_module_mib;
    int cap_clock_mhz; /* --cap-clock-mhz (not a --remote-* option): the capped servers'
                        * slices carry it as local slices do; 0: off */
};

/* The servers' user and group unless --remote-uid/--remote-gid say
 * otherwise: nobody/nogroup on Debian. */
#define FX_REMOTE_UID_DEFAULT 65534

/* getopt_long codes of the --remote-* options: FX_REMOTE_OPT_FIRST.. */
#define FX_REMOTE_OPT_FIRST 0x400
#define FX_REMOTE_OPT_LAST (FX_REMOTE_OPT_FIRST + 11)
#define FX_REMOTE_LONG_OPTS                                                                        \
    {"remote-slots", required_argument, 0, FX_REMOTE_OPT_FIRST},                                   \
        {"remote-key", required_argument, 0, FX_REMOTE_OPT_FIRST + 1},                             \
        {"remote-client-dir", required_argument, 0, FX_REMOTE_OPT_FIRST + 2},                      \
        {"remote-ports", required_argument, 0, FX_REMOTE_OPT_FIRST + 3},                           \
        {"remote-address", required_argument, 0, FX_REMOTE_OPT_FIRST + 4},                         \
        {"remote-server", required_argument, 0, FX_REMOTE_OPT_FIRST + 5},                          \
        {"remote-runtime-library", required_argument, 0, FX_REMOTE_OPT_FIRST + 6},                 \
        {"remote-uid", required_argument, 0, FX_REMOTE_OPT_FIRST + 7},                             \
        {"remote-gid", required_argument, 0, FX_REMOTE_OPT_FIRST + 8},                             \
        {"remote-uid-range", required_argument, 0, FX_REMOTE_OPT_FIRST + 9},                       \
        {"remote-max-clients", required_argument, 0, FX_REMOTE_OPT_FIRST + 10},                    \
        {"remote-max-module-mib", required_argument, 0, FX_REMOTE_OPT_FIRST + 11}

#define FX_REMOTE_USAGE                                                                            \
    "  --remote-slots N          a node without GPUs: offer N devices of flexpu.io/gpu\n"          \
    "                            for pods with a remote slice (needs --remote-key)\n"              \
    "  --remote-key PATH         the cluster key of remote slices' tokens (a file only\n"          \
    "                            its owner reads, 32+ bytes); with GPUs: serve the\n"             \
    "                            remote slices placed on them\n"                                    \
    "  --remote-client-dir DIR   the client's libcudart.so.12 and libcublas.so.12\n"               \
    "                            (/usr/lib/flexpu/remote)\n"                                        \
    "  --remote-ports LO-HI      the servers' ports (7100-7199)\n"                                 \
    "  --remote-address HOST     this node's address in endpoints ($NODE_IP)\n"                   \
    "  --remote-server PATH      flexpu-remoted (/usr/bin/flexpu-remoted)\n"                       \
    "  --remote-runtime-library PATH  the servers' LD_PRELOAD\n"                                   \
    "                            (<root>/lib/libflexpu-cuda.so)\n"                                 \
    "  --remote-uid N            the servers' user, never root (65534); an agent\n"             \
    "                            that is not root runs them as itself, warning\n"              \
    "  --remote-gid N            the servers' group, never root (65534)\n"                       \
    "  --remote-uid-range A-B    a user of its own for each slice's server, from\n"          \
    "                            A to B (ids nothing else on the node uses), instead\n"     \
    "                            of one --remote-uid for all\n"                               \
    "  --remote-max-clients N    client processes each server serves at once,\n"            \
    "                            1 to 4096 (16); its --max-clients\n"                           \
    "  --remote-max-module-mib N fat binaries each client may hold loaded, in MiB,\n"       \
    "                            1 to 65536 (1024); its --max-module-mib\n"

/* One --remote-* option (ch in FX_REMOTE_OPT_FIRST..LAST); 2 with a message
 * on stderr when its value is bad. */
int fx_remote_opt(struct fx_remote_opts *o, int ch, const char *arg);

/* Whether the options make this node's agent run remote slices' servers
 * (a GPU node with --remote-key). Each server is a slice of the agent's
 * arbiter, as a local slice is (remote_agent.h). */
bool fx_remote_node_serves(const struct fx_remote_opts *o, int ngpu);

struct fx_remote_node;

/* Starts what the options ask on this node (ngpu: its GPUs); *methods and
 * *ctx are then the device plugin to serve instead of the GPU one (NULL:
 * the GPU one); limits: what bounds the servers' ledger directories
 * (--size-limits). NULL result with err->code 0: nothing asked. */
struct fx_remote_node *fx_remote_node_start(const struct fx_remote_opts *o, const char *node,
                                            const char *root, enum fx_dir_limits limits,
                                            const char *podresources,
                                            const struct fx_node_gpu *gpus, int ngpu,
                                            struct kube_config *kube,
                                            const struct fx_grpc_method **methods, void **ctx,
                                            struct flexpu_error *err);

/* The pod watch's events (pods bound to this node), for the remote plugin. */
void fx_remote_node_pod_event(struct fx_remote_node *r, enum kube_event ev, json_t *pod);

/* For the GPU device plugin's borrower check (plugin.h, fx_plugin_remote;
 * ctx: the fx_remote_node): what the remote slices this node serves hold
 * on GPU uuid (fx_remote_serve_holds); 0 on a node that serves none. */
int fx_remote_node_holds(void *ctx, const char *uuid, struct fx_gpu_hold *out, int max);
/* The same's pod_name (fx_remote_serve_pod_name); -1 on a node that serves
 * none. */
int fx_remote_node_pod_name(void *ctx, const char *uid, char *ns, size_t ns_len, char *name,
                            size_t name_len);

/* Once a second from the main loop. */
void fx_remote_node_tick(struct fx_remote_node *r);

/* Stops the threads; servers keep running for the next agent. */
void fx_remote_node_stop(struct fx_remote_node *r);

#endif
