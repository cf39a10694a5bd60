/* SPDX-License-Identifier: Apache-2.0 */
/* The node agent's side of remote slices (docs/REMOTE.md, "Kubernetes"),
 * as functions the agent's loop calls and the tests drive: what this node
 * does for a pod whose allocation names a remote GPU node, the GPU node's
 * flexpu-remoted for the slice (checked settings, command line and
 * environment), the slice's token, and what the pod's container gets. No
 * process is started here: supervising the servers is the agent's loop. */
#ifndef FX_NODE_REMOTE_H
#define FX_NODE_REMOTE_H

#include <stdbool.h>
#include <stddef.h>

#include "flexpu/error.h"
#include "kube/contract.h"
#include "node/slices.h"
#include "runtime/arbagent.h"

enum fx_remote_role {
    FX_REMOTE_NONE,   /* a local slice, or not this node's business */
    FX_REMOTE_SERVE,  /* this node has the GPU: it serves the slice */
    FX_REMOTE_CLIENT, /* the pod runs here: its container gets the client */
};

/* The role of node `self` for a pod bound to pod_node with allocation al. */
enum fx_remote_role fx_remote_role(const struct fx_allocation *al, const char *pod_node,
                                   const char *self);

/* One remote slice as its GPU node serves it. */
struct fx_remote_server {
    /* The GPUs its workers see, in the allocation's order (their device
     * numbers in the client: 0..ngpu-1); the first one names the token. */
    char gpu_uuid[FLEXPU_MAX_GPUS][FX_UUID_MAX];
    int ngpu;                   /* 1..FLEXPU_MAX_GPUS, all of this node */
    struct fx_slice_file slice; /* tenant (the pod UID), share, cap, memory, priority */
    int port;                   /* 1..65535 */
    /* Its --max-clients and --max-module-mib: what one slice's server may
     * hold (docs/REMOTE.md, "The servers' host memory"); the plan sets the
     * defaults, the agent its --remote-max-clients and
     * --remote-max-module-mib. */
    int max_clients, max_module_mib;
};

/* flexpu-remoted's own defaults and bounds for --max-clients (client
 * processes served at once: a pod of FLEXPU_MAX_GPUS GPUs may run a
 * process per GPU, a pod of one GPU a program and helper processes that
 * touch the device; one past the bound is refused and retries, so a lower
 * default could make a pod wait forever) and --max-module-mib (a
 * framework's fat binaries of every architecture, with room):
 * src/remote/server_main.c, server.h. Kept as the agent's defaults;
 * docs/REMOTE.md, "The servers' host memory". */
#define FX_REMOTE_MAX_CLIENTS_DEFAULT 16
#define FX_REMOTE_MAX_CLIENTS_MAX 4096
#define FX_REMOTE_MAX_MODULE_MIB_DEFAULT 1024
#define FX_REMOTE_MAX_MODULE_MIB_MAX 65536

/* Whether text is a whole decimal number from lo to hi, set in *out:
 * digits only (strtoll would take a sign and leading blanks, as in
 * "+1024" or "\v7100"); NULL is none. What the agent reads from its
 * flags and its own files (server.pid) about the servers. */
bool fx_remote_digits(const char *text, long long lo, long long hi, long long *out);

/* Parses a server limit given to the agent (flag: "--remote-max-clients"
 * or "--remote-max-module-mib"): a decimal integer, 1 to max, in *out.
 * FLEXPU_EINVAL naming the flag and the value, *out unchanged. */
int fx_remote_limit_parse(const char *flag, const char *text, int max, int *out,
                          struct flexpu_error *err);

/* The server for pod `s` (UID uid) whose allocation al names this node
 * (inv: this node's GPUs): the allocation checked as for a local slice
 * (fx_allocation_check, with the memory of each GPU it names) and each of
 * its GPUs (one or more, as many as the pod asks, each once) found in
 * inv, then the slice's settings: one slice for all of them, as a local
 * pod of several GPUs gets (the smallest share and the largest quota of
 * its GPUs, which the scheduler makes equal; the runtime applies them on
 * each GPU). FLEXPU_EINVAL naming the field
 * and the value otherwise (the pod gets no server). */
int fx_remote_server_plan(const struct fx_pod_spec *s, const char *uid,
                          const struct fx_allocation *al, const struct fx_node_inv *inv, int port,
                          struct fx_remote_server *out, struct flexpu_error *err);

/* The key of the slice the node agent arbitrates the server of pod `uid`
 * as (slices.h: <root>/slices/<key>/, <root>/ledger/<key>/):
 * FX_REMOTE_KEY_PREFIX and the UID. A local slice's key is
 * FX_SLICE_KEY_LEN hexadecimal digits, so the two never collide, and the
 * device plugin's scan of its own slices (fx_slice_scan) passes it by.
 * fx_remote_server_plan accepts only UIDs that make a key. -1 when out
 * does not hold it. */
#define FX_REMOTE_KEY_PREFIX "remote-"
#define FX_REMOTE_UID_MAX 56 /* the key then fits the arbiter's (FX_ARB_AGENT_KEY_MAX) */
_Static_assert(sizeof(FX_REMOTE_KEY_PREFIX) + FX_REMOTE_UID_MAX <= FX_ARB_AGENT_KEY_MAX,
               "a remote slice's key must fit the arbiter's");
int fx_remote_slice_key(const char *uid, char *out, size_t len);

/* sv's GPUs in buf, in the allocation's order, joined by ',' (the form
 * of CUDA_VISIBLE_DEVICES); the length it needs, cap or more when it did
 * not fit. */
size_t fx_remote_server_gpus(const struct fx_remote_server *sv, char *buf, size_t cap);

/* Its command line and environment for execve: argv is `bin --listen
 * 0.0.0.0:PORT --token-fd 3 --port-fd 4 --slice TENANT --max-clients N
 * --max-module-mib M` (the descriptors fx_remote_spawn gives it; the
 * tenant is the pod UID; N and M sv's, FLEXPU_EINVAL naming them when
 * out of the server's ranges), envp LD_PRELOAD
 * (the runtime library), CUDA_VISIBLE_DEVICES (the GPUs' UUIDs, comma-separated), the
 * slice's FLEXPU_TENANT, FLEXPU_COMPUTE_SHARE, FLEXPU_COMPUTE_CAP,
 * FLEXPU_PRIORITY, FLEXPU_MEMORY_LIMIT (when it has a quota), and
 * FLEXPU_ARBITER_DIR (arb_dir: the node agent's arbiter pages) and
 * FLEXPU_LEDGER_DIR (ledger_dir: its slice's ledger directory): the
 * server runs as a slice of the agent's arbiter, as a local slice does
 * (runtime/arbagent.h), with no shared state; and FLEXPU_BORROWED_DIR
 * (borrowed_dir: the agent's marks of borrowed GPUs): a remote slice is an
 * owner, whose allocation the driver refuses for a borrower's memory waits
 * for the agent to kill the borrower (node/reclaim_mem.h), as a local
 * owner's does. Each NULL-terminated; the strings live in buf.
 * FLEXPU_ERANGE when buf, argv (14 entries) or envp (11) is too small.
 * Nothing of the cluster key is in either. */
int fx_remote_server_cmd(const struct fx_remote_server *sv, const char *bin,
                         const char *runtime_lib, const char *arb_dir, const char *ledger_dir,
                         const char *borrowed_dir, char *buf, size_t len, char **argv, size_t nargv, char **envp,
                         size_t nenv, struct flexpu_error *err);

/* A fresh token in `path`: 32 bytes from getrandom as 64 hex characters,
 * mode 0600 (the server and the client refuse a token others can read),
 * replacing any old one atomically. */
int fx_remote_token_new(const char *path, struct flexpu_error *err);

/* The endpoint the GPU node's agent records for the pod's node, as
 * "HOST:PORT" (HOST a name or IPv4 address, or [IPv6]), checked: FLEXPU_EINVAL
 * naming `field` and the value when malformed. */
int fx_remote_endpoint_check(const char *text, const char *field, struct flexpu_error *err);

/* What the pod's container gets: FLEXPU_REMOTE_ADDR (the endpoint, checked),
 * FLEXPU_REMOTE_TOKEN_FILE (the token as the container sees it) and
 * LD_PRELOAD of the client's libcudart.so.12 and libcublas.so.12 in lib_dir
 * (ahead of the application's own copies, whatever their RUNPATH), as
 * "NAME=value" strings in buf, envp NULL-terminated (4 entries). */
int fx_remote_client_env(const char *endpoint, const char *lib_dir, const char *token,
                         char *buf, size_t len, char **envp, size_t nenv,
                         struct flexpu_error *err);

#endif
