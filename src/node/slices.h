/* SPDX-License-Identifier: Apache-2.0 */
/* The per-container files flexpu-node keeps on the host, under
 * <root>/slices/<key>/: `slice.conf` (mounted read-only at /etc/flexpu in
 * the container, read by the runtime library) and `devices` (the kubelet
 * device IDs of the allocation, so a restarted agent knows them again).
 *
 * The key is derived from the device IDs alone: the kubelet never gives the
 * same ID to two live containers, so the key names one allocation, and
 * Allocate and PreStartContainer, which carry only the IDs, find the same
 * directory. */
#ifndef FX_NODE_SLICES_H
#define FX_NODE_SLICES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "flexpu/error.h"
#include "node/dirlimit.h"
#include "util/priority.h"

#define FX_SLICE_KEY_LEN 24 /* hex characters */

/* What a container's slice.conf says. */
struct fx_slice_file {
    char tenant[64];     /* the pod UID */
    int compute_share;   /* percent */
    int compute_cap;     /* percent */
    int64_t memory;      /* bytes per GPU; 0: no quota */
    enum fx_priority priority;
    /* The SM clock (MHz) of the fully loaded GPU that a cap's percent refers
     * to (--cap-clock-mhz; docs/RUNTIME.md, caps): written as cap_clock_mhz
     * for a capped slice (compute_cap < 100) only; 0: none. */
    int cap_clock_mhz;
    /* A borrower's slice names no borrowed_dir: it never waits for memory
     * (runtime/oom_wait.h); an owner's names FX_CTR_BORROWED. */
    bool borrower;
    /* A slice whose processes run on the host, not in a container (a
     * remote slice's server, remote_agent.c): the host's paths of its
     * ledger directory, of the arbiter pages and of the borrowed GPUs'
     * marks (reclaim_mem.h; an owner's only); NULL: the container's
     * (FX_CTR_LEDGER, FX_CTR_ARB, FX_CTR_BORROWED). */
    const char *ledger_dir, *arbiter_dir, *borrowed_dir;
};

struct fx_allocation;

/* A pod's one slice over the GPUs of its allocation, set in f: the
 * smallest share of its GPUs and the largest quota (the scheduler makes
 * them equal); the runtime applies both on each GPU. Used by the device
 * plugin (a local pod) and the remote agent (a remote pod's server). */
void fx_slice_set_shares(struct fx_slice_file *f, const struct fx_allocation *al);

/* A pod's compute cap in f, after fx_slice_set_shares: its
 * flexpu.io/gpu-cores-limit, never below f's share (the runtime refuses a
 * cap below the share, and a pod whose allocation was rounded up to whole
 * GPUs has a share above its limit); 100 (none) for a limit outside
 * 1-100. The device plugin and the remote agent's server plan both use it,
 * so a pod gets the same cap served locally or remotely. */
void fx_slice_set_cap(struct fx_slice_file *f, int cores_limit);

/* --cap-clock-mhz's value: "off" (0) or a whole number of MHz within the
 * runtime's bounds for cap_clock_mhz (runtime/config.h). An error names the
 * flag and the value. */
int fx_cap_clock_flag_parse(const char *v, int *mhz, struct flexpu_error *err);

/* Key of a set of device IDs (order does not matter); -1 when out of memory. */
int fx_slice_key(char *const *ids, size_t n, char out[FX_SLICE_KEY_LEN + 1]);

/* Creates <root>/slices/<key>/ with `devices` and a slice.conf that makes
 * the runtime fail closed until fx_slice_write names the pod, and the
 * slice's ledger directory <root>/ledger/<key>/ (runtime/ledger.h), which
 * only the slice's containers are given, read-write: a tmpfs of
 * fx_dir_ledger_bytes(GPUs) unless `limits` is FX_DIR_LIMITS_OFF
 * (dirlimit.h). */
int fx_slice_prepare(const char *root, const char *key, char *const *ids, size_t n,
                     enum fx_dir_limits limits, struct flexpu_error *err);

/* A slice whose processes are one server the agent runs on the host (a
 * remote slice's flexpu-remoted, remote_agent.c): <root>/slices/<key>/
 * with slice.conf (f, whose ledger_dir, arbiter_dir and, unless it is a
 * borrower, borrowed_dir are the host's paths), and its ledger directory <root>/ledger/<key>/, mode 0700 and
 * owned by uid:gid when `own` (the agent is root and runs the server as
 * that user; otherwise the agent's user runs it), bounded as a
 * container's (a tmpfs of fx_dir_ledger_bytes(1) unless `limits` is
 * FX_DIR_LIMITS_OFF). Again on the same key: the same files, rewritten. */
int fx_slice_prepare_server(const char *root, const char *key, const struct fx_slice_file *f,
                            enum fx_dir_limits limits, bool own, uid_t uid, gid_t gid,
                            struct flexpu_error *err);

/* A slice's directory <root>/slices/<key> and its ledger directory
 * <root>/ledger/<key> into buf; -1 when buf does not hold the path. */
int fx_slice_dir(const char *root, const char *key, char *buf, size_t len);
int fx_slice_ledger_dir(const char *root, const char *key, char *buf, size_t len);

/* Writes slice.conf atomically (temporary file + rename). */
int fx_slice_write(const char *root, const char *key, const struct fx_slice_file *f,
                   struct flexpu_error *err);

/* The text of a slice.conf (for tests and fx_slice_write). */
int fx_slice_format(const struct fx_slice_file *f, char *buf, size_t len);

/* Empties the directory open at `fd` (and closes it) without following
 * symbolic links, to `depth` levels: for directories a tenant can write. */
void fx_dir_clear(int fd, int depth);

/* Removes <root>/slices/<key>/ and <root>/ledger/<key>/ (emptied, then its
 * tmpfs detached). */
void fx_slice_remove(const char *root, const char *key);

/* Calls fn for every slice directory: its key and the tenant its slice.conf
 * names ("" when still pending). */
void fx_slice_scan(const char *root, void (*fn)(const char *key, const char *tenant, void *ctx),
                   void *ctx);

/* Replaces `path` with `text` atomically: written to a new file in the same
 * directory, flushed, given `mode`, and renamed over the old one, then the
 * directory is flushed. A reader (a container starting, ld.so) sees the old
 * content or the new, never an empty or partial file; a container that has
 * the old file bind-mounted keeps it intact. */
int fx_file_replace(const char *path, const char *text, mode_t mode, struct flexpu_error *err);

/* Writes <root>/ld.so.preload (one line: the runtime library's path in the
 * container), replacing any previous one atomically; Allocate mounts it at
 * /etc/ld.so.preload. */
int fx_preload_install(const char *root, struct flexpu_error *err);

#endif
