/* SPDX-License-Identifier: Apache-2.0 */
/* The GPU node's side of remote slices (docs/REMOTE.md, "Kubernetes"): a
 * thread that watches the pods whose allocation names this node in
 * `remote.node` (the pods the scheduler labelled FX_LABEL_REMOTE_GPU_NODE
 * with this node, after one full list at start for those bound before it
 * did: "The GPU node's watch"), checks each (fx_remote_server_plan), and keeps one
 * flexpu-remoted per slice running under libflexpu-cuda.so with the slice's
 * settings, on a port of a configured range, keyed by the slice's derived
 * token (remote_key.h); it records the endpoint on the pod (annotation
 * flexpu.io/remote-endpoint) where the pod's node reads it, restarts a
 * server that exits (back-off 1 s doubling to 30 s), and stops it and
 * removes its files when the pod goes or ends.
 *
 * Each slice has a directory <root>/remote/<pod UID>/ (0700, root's): token
 * (0600), server.pid ("PID PORT UID GPU MEMORY": an adopted server's slice
 * holds that GPU's memory even with its pod gone), server.log, port; the
 * server gets the token, log and port file as descriptors and runs as an
 * unprivileged user (remote_spawn.h). Its server is a slice of the node agent's arbiter as a
 * local slice is (fx_slice_prepare_server, key fx_remote_slice_key): its
 * policy in <root>/slices/<key>/slice.conf, its ledger and requests in
 * <root>/ledger/<key>/, writable by the server's user alone; both go with
 * the server's other files. An agent that restarts adopts the servers its
 * predecessor started (the pid's command line is flexpu-remoted with
 * `--slice <pod UID>`) instead of starting a second
 * one, and stops, after its first full list of pods, those whose pod is
 * gone: no orphan and no double server. Servers run in their own session,
 * so the agent's own end (a DaemonSet update) does not take them along. */
#ifndef FX_NODE_REMOTE_AGENT_H
#define FX_NODE_REMOTE_AGENT_H

#include "flexpu/error.h"
#include "kube/contract.h"
#include "kube/kube.h"
#include "node/remote_key.h"
#include "node/slices.h"

#define FX_ANN_REMOTE_ENDPOINT "flexpu.io/remote-endpoint"

struct fx_remote_serve_config {
    const char *node;        /* this node */
    const char *root;        /* <root>/remote/ holds the slices' directories; <root>/arb,
                              * slices/ and ledger/ are the agent's arbiter's */
    const char *address;     /* HOST the endpoint names (this node's address) */
    const char *server_bin;  /* flexpu-remoted */
    const char *runtime_lib; /* libflexpu-cuda.so for the servers' LD_PRELOAD */
    enum fx_dir_limits limits; /* what bounds the servers' ledger directories */
    int port_min, port_max;  /* the servers' ports */
    /* Each server's --max-clients and --max-module-mib
     * (--remote-max-clients, --remote-max-module-mib); 0: the defaults
     * (remote.h). */
    int max_clients, max_module_mib;
    const struct fx_remote_key *key;
    const struct fx_node_inv *inv; /* this node's GPUs (borrowed) */
    struct kube_config *kube;
    int tick_ms;             /* supervision period; 0: 200 */
    int legacy_check_ms;     /* an unlabelled pod's read-back period; 0: 10 000 */
    int stop_wait_ms;        /* a stopped server's time to exit before SIGKILL; 0: 3000 */
    int cap_clock_mhz;       /* --cap-clock-mhz for capped servers' slices (slices.h); 0: off */
    bool drop;               /* run the servers as uid:gid (the agent is root) */
    unsigned uid, gid;
    /* A user of its own for each slice's server (--remote-uid-range), from
     * uid_first to uid_last, instead of uid (0: off). A slice's uid is
     * taken when its server first starts, kept through its restarts and
     * recorded in its server.pid ("PID PORT UID ..."), so an agent that adopts
     * the server keeps it taken; it is free again when the slice's files
     * are removed. A uid some process of this PID namespace runs as (a
     * worker of a server that ended, anything else) is not taken. The
     * ledger directory is the slice's uid's. Without drop (an agent that
     * is not root) the uids are allocated all the same but the servers
     * run as the agent. */
    unsigned uid_first, uid_last;
};

struct fx_remote_serve;

/* Adopts the servers found under <root>/remote/ and starts the watch and
 * the supervisor. NULL with err on a bad configuration. */
struct fx_remote_serve *fx_remote_serve_start(const struct fx_remote_serve_config *cfg,
                                              struct flexpu_error *err);

/* Stops the threads; the servers keep running (a restarted agent adopts
 * them), unless stop_servers. A stop under way (its pod gone) is finished
 * first, waiting up to what is left of its stop_wait_ms. Every server to
 * stop gets SIGTERM before any is waited for: their waits overlap. */
void fx_remote_serve_stop(struct fx_remote_serve *s, bool stop_servers);

/* What the remote slices served here hold on GPU uuid, for the device
 * plugin's check of a borrower (plugin.h, fx_plugin_remote): one owner's
 * hold (its memory quota) per slice whose pod is here and checked, or whose
 * server still runs, from the allocation the watch parsed; at most max in
 * out. Returns how many there are (more than max when they do not fit), or
 * -1 before the first full list of pods (an adopted server's slice is not
 * known until then). It reads a copy the watch and the supervisor publish
 * as they change it: it never waits for the watch or a supervision pass
 * (a server's spawn), though the plugin calls it under its lock. */
int fx_remote_serve_holds(struct fx_remote_serve *s, const char *uuid, struct fx_gpu_hold *out,
                          int max);

/* The namespace and name of the pod of the remote slice served here whose
 * pod UID is uid, as the watch last saw it (the metrics' labels, plugin.h);
 * -1 when no such slice is known. From the same copy as the holds. */
int fx_remote_serve_pod_name(struct fx_remote_serve *s, const char *uid, char *ns, size_t ns_len,
                             char *name, size_t name_len);

/* Parses "A-B" (1 <= A <= B <= 65535) as the servers' port range. */
int fx_remote_port_range_parse(const char *text, int *lo, int *hi, struct flexpu_error *err);

#endif
