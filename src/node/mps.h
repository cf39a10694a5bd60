/* SPDX-License-Identifier: Apache-2.0 */
/* Hard limits under the library: one NVIDIA MPS control daemon per slice
 * (flexpu-node --sharing-mode mps; docs/SECURITY.md, "Hard mode").
 *
 * Each slice (allocation key, slices.h) gets <root>/mps/<key>/ with
 *  - pipe/   the daemon's CUDA_MPS_PIPE_DIRECTORY, mounted into that slice's
 *            containers only (clients find their daemon through it);
 *  - log/    its CUDA_MPS_LOG_DIRECTORY (and daemon.out, its stdout and
 *            stderr), the agent's alone;
 *  - daemon  what the agent knows of it: pid, start time, limits (so that a
 *            restarted agent can adopt or clean it up).
 * The daemon is started with its limits set as defaults before any server
 * exists (set_default_active_thread_percentage and
 * set_default_device_pinned_mem_limit apply to servers not yet started),
 * and they are read back before fx_mps_start returns: a slice never runs
 * without them. A supervising thread restarts a daemon that dies while its
 * slice is wanted and quits released ones. Every run of the control
 * program is bounded by the configured timeout, each run by a whole one;
 * programs are run by execve with an argv (no shell) and a minimal
 * environment. */
#ifndef FX_NODE_MPS_H
#define FX_NODE_MPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "flexpu/error.h"
#include "flexpu/sched.h"
#include "node/slices.h"

/* How a node shares its GPUs (flexpu-node --sharing-mode), published on the
 * Node as this label so that a pod picks one with a nodeSelector. */
#define FX_LABEL_SHARING_MODE "flexpu.io/sharing-mode"
enum fx_sharing_mode {
    FX_SHARING_SOFT = 0, /* the runtime library alone (cooperative) */
    FX_SHARING_MPS,      /* plus an MPS control daemon per slice */
    FX_SHARING_MIG,      /* MIG devices, each a GPU allocated whole (mig.h) */
};

/* "soft", "mps" or "mig"; -1 otherwise. */
int fx_sharing_mode_parse(const char *s, enum fx_sharing_mode *out);
const char *fx_sharing_mode_name(enum fx_sharing_mode m);

#define FX_MPS_CONTROL_DEFAULT "nvidia-cuda-mps-control"
#define FX_MPS_TIMEOUT_MS_DEFAULT 5000

struct fx_mps_config {
    const char *root;    /* the agent's root: dirs under <root>/mps/ */
    const char *control; /* control program; NULL: FX_MPS_CONTROL_DEFAULT (found in PATH) */
    int timeout_ms;      /* each run of the control program, and a quit; 0: the default */
    int tick_ms;         /* how often the daemons are checked; 0: 500 */
};

/* The limits of one slice. */
struct fx_mps_limits {
    int thread_pct;                       /* 1..100 */
    int ndev;                             /* GPUs of the slice, 1..FLEXPU_MAX_GPUS */
    int64_t mem_mib[FLEXPU_MAX_GPUS];     /* per GPU; 0: no memory limit */
    char visible[FLEXPU_MAX_GPUS * 80];   /* the GPUs' UUIDs, comma-separated, in device order */
};

struct fx_mps;

/* Loads what a previous agent left under <root>/mps/ (each slice is adopted:
 * a daemon still running keeps serving until fx_mps_release or
 * fx_mps_keep_only says its slice is gone) and starts the supervising
 * thread. NULL with err set when the directory cannot be created. */
struct fx_mps *fx_mps_new(const struct fx_mps_config *cfg, struct flexpu_error *err);

/* Stops the supervising thread. Daemons keep running: their pods do. */
void fx_mps_free(struct fx_mps *m);

/* The host path of slice `key`'s pipe directory; -1 when it does not fit or
 * the key is not one (only [0-9a-f], FX_SLICE_KEY_LEN characters). */
int fx_mps_pipe_dir(const char *root, const char *key, char *out, size_t len);

/* Creates the slice's directories (Allocate, before its mount is answered).
 * Idempotent. */
int fx_mps_prepare(struct fx_mps *m, const char *key, struct flexpu_error *err);

/* Makes sure slice `key` has a running daemon with `lim` set and read back,
 * starting one if needed (a daemon already running with other limits is
 * quit and started again). A start runs the control program in steps,
 * each with a whole timeout, so a slow node whose every step ends in time
 * is not failed for their sum: the daemon's first answer (clients started
 * for one timeout after the daemon, the last one with a timeout of its
 * own: at most 2 timeouts), then one step per limit set and one per limit
 * read back (2 + 2 per device with a memory limit). The call returns
 * within (6 + 2 x devices with a memory limit) timeouts: those steps, the
 * quit of a failed start and the quit of a daemon with other limits. A
 * start that works takes a fraction of that; one whose every step is slow
 * may outlast the kubelet's 30 s for PreStartContainer (default 5 s, one
 * limited device: 40 s), which then fails the container and asks again,
 * finding the daemon started or waiting for its start under way. On
 * error, err names the slice, the step (its number and command) and what
 * the daemon said or how long it was waited for, and no daemon is left
 * running for the slice. */
int fx_mps_start(struct fx_mps *m, const char *key, const struct fx_mps_limits *lim,
                 struct flexpu_error *err);

/* The slice is gone: its daemon is quit (SIGKILL after the timeout) and its
 * directories removed, on the supervising thread. Unknown keys: their
 * directories, if any, are removed the same way. */
void fx_mps_release(struct fx_mps *m, const char *key);

/* Releases every slice for which keep(key) is false (after a restart, the
 * ones no slice or pod is left for). */
void fx_mps_keep_only(struct fx_mps *m, bool (*keep)(const char *key, void *ctx), void *ctx);

/* Waits until no release is pending (tests, shutdown); false after
 * timeout_ms. */
bool fx_mps_settle(struct fx_mps *m, int timeout_ms);

/* How many times a daemon was started, in all (tests, metrics). */
unsigned fx_mps_starts(struct fx_mps *m);

#endif
