/* SPDX-License-Identifier: Apache-2.0 */
/* The usage feed (docs/KUBERNETES.md, "Usage feed"): the node agent
 * measures, every FX_USAGE_SAMPLE_MS, how busy each GPU and each slice is
 * (and every FX_USAGE_MEM_EVERY samples how much memory they hold), smooths
 * it, and publishes it on its Node as the annotation flexpu.io/gpu-usage
 * (kube/contract.h) at a bounded rate, for the scheduler's opportunistic
 * placement.
 *
 * What a sample is (per slice, over the interval since the previous one):
 *  - the GPU time the runtime's arbiter charged the slice (gpu_time_ns in
 *    the shared state; charged at each hand-over while tenants contend),
 *    over the wall time;
 *  - but a slice that was active in the interval (a process of it
 *    launched, or had work in flight) is charged at least the GPU time no
 *    other slice was charged: a tenant alone on its GPU launches on the
 *    fast path, which the arbiter does not time, so alone it counts as busy
 *    for the whole interval. The sample is thus an upper bound of the true
 *    duty cycle at the sampling resolution: a GPU is called idle only when
 *    nothing launched on it.
 * A GPU's sample is the sum of its slices', at most 1, and at least what
 * the driver measured (NVML's utilization: the floor no tenant can bend,
 * since the shared state is tenant-written; fx_usage_read_driver). Memory
 * is what the slices' ledgers hold (runtime/ledger.h), bounded by the
 * GPU's memory.
 *
 * Smoothing, two figures: `busy`, an exponentially weighted mean with a
 * short time constant when the sample is above it and a long one when below
 * (FX_USAGE_TAU_UP_S, FX_USAGE_TAU_DOWN_S): use that rises is seen within
 * seconds, and a GPU has to stay idle for minutes to look idle (what
 * protects an owner); and `mean`, the same samples weighted evenly
 * (FX_USAGE_TAU_MEAN_S both ways: the duty cycle of about the last minute,
 * what a borrower could have). Memory rises at once and falls with the long
 * constant.
 *
 * Writing: at most once per FX_USAGE_MIN_INTERVAL_S, and only when busy or
 * memory moved by FX_USAGE_BUSY_DELTA or FX_USAGE_MEM_DELTA since the last
 * write or a slice came or went (mean, which settles for minutes after a
 * change, rides along); and at least every FX_USAGE_REFRESH_S, so that the
 * scheduler can tell a stopped agent from an unchanged GPU and mean is at
 * most that old.
 *
 * The tracker (fx_usage_new ... fx_usage_written) does no I/O and reads no
 * clock: time is an argument, so the tests drive it. */
#ifndef FX_NODE_USAGE_H
#define FX_NODE_USAGE_H

#include <stdbool.h>
#include <stdint.h>

#include "flexpu/error.h"
#include "kube/contract.h"
#include "kube/kube.h"
#include "node/gpus.h"

#define FX_USAGE_SAMPLE_MS 100 /* a 20 ms burst every 5 s reads 2%, not 20% */
#define FX_USAGE_MEM_EVERY 10   /* the ledgers (a directory walk) once a second */
#define FX_USAGE_TAU_UP_S 5
#define FX_USAGE_TAU_DOWN_S 60
#define FX_USAGE_TAU_MEAN_S 60
#define FX_USAGE_MIN_INTERVAL_S 10
#define FX_USAGE_REFRESH_S 60
#define FX_USAGE_BUSY_DELTA 50                      /* thousandths of the GPU */
#define FX_USAGE_MEM_DELTA (256LL * 1024 * 1024)    /* bytes */

/* One slice as read from the runtime's files at one instant. */
struct fx_usage_obs_slice {
    char pod[FX_USAGE_POD_MAX]; /* the tenant's name: its pod UID */
    uint64_t gpu_time_ns;       /* the arbiter's counter */
    uint64_t activity;          /* moves whenever a process of it launches */
    bool inflight;              /* a live process has work on the GPU now */
    int64_t mem;                /* bytes its ledgers hold */
};

struct fx_usage_obs_gpu {
    /* The state file is there but could not be read (a tenant can put
     * anything under its name): the GPU's use is then unknown, never 0. */
    bool failed;
    /* The ledgers were read: slices' memory is known. Without, memory
     * keeps its last value and slices not seen in the state are kept. */
    bool have_mem;
    /* The driver's utilization of the GPU over its last sample period,
     * thousandths (fx_usage_read_driver); 0 when not read. */
    int driver_milli;
    int nslices;
    struct fx_usage_obs_slice slices[FX_USAGE_SLICES_MAX];
};

struct fx_usage;

/* A tracker for `ngpu` GPUs whose memory sizes (bytes) are mem_bytes[i].
 * NULL when out of memory. */
struct fx_usage *fx_usage_new(int ngpu, const int64_t *mem_bytes);
void fx_usage_free(struct fx_usage *u);

/* One observation of every GPU (obs[0..ngpu)) at now_ns (monotonic). The
 * first only sets the baselines; each later one updates the means with the
 * samples of the interval since the previous. Counters that went backwards
 * (a record reused, or written by a tenant) give a zero sample and a new
 * baseline. */
void fx_usage_observe(struct fx_usage *u, uint64_t now_ns, const struct fx_usage_obs_gpu *obs);

/* Whether the feed should be written at now_ns (see above). */
bool fx_usage_due(const struct fx_usage *u, uint64_t now_ns);

/* The smoothed values now, stamped wall_s (unix seconds). */
void fx_usage_current(const struct fx_usage *u, int64_t wall_s, struct fx_node_usage *out);

/* A write was tried at now_ns: `published` is what the Node now holds, or
 * NULL when the write failed (the next try waits FX_USAGE_MIN_INTERVAL_S
 * all the same, so a failing API server is not called every second). */
void fx_usage_written(struct fx_usage *u, uint64_t now_ns, const struct fx_node_usage *published);

/* Writes made so far (for the log and the tests). */
uint64_t fx_usage_writes(const struct fx_usage *u);

/* Reads one GPU's slices from <state_dir>/<uuid>.state and, unless
 * ledger_root is NULL, their memory from the ledgers under it (have_mem).
 * Everything in those files is written by tenants: names that are not 1-63
 * characters of [A-Za-z0-9._-] are skipped, memory is bounded by mem_bytes,
 * at most FX_USAGE_SLICES_MAX slices. No state file yet is no slices, not
 * an error; another error names the path (failed; *out then holds what the
 * ledgers gave). */
int fx_usage_read_gpu(const char *state_dir, const char *ledger_root, const char *uuid,
                      int64_t mem_bytes, struct fx_usage_obs_gpu *out, struct flexpu_error *err);

/* The driver's utilization of GPU g into out->driver_milli (NVML through
 * n). A GPU the driver does not measure (fx_nvml_utilization: -1) keeps 0:
 * the runtime's figure alone; returns 0 and sets *measured false then.
 * Another NVML error makes the GPU's use unknown (out->failed: a floor
 * that cannot be read is not taken as 0) and is returned. */
int fx_usage_read_driver(struct fx_nvml *n, const struct fx_node_gpu *g,
                         struct fx_usage_obs_gpu *out, bool *measured, struct flexpu_error *err);

/* The agent's feed: a thread that samples every FX_USAGE_SAMPLE_MS and,
 * when due, merge-patches flexpu.io/gpu-usage on Node `node` through a
 * client of its own. Start it once the inventory is on the Node (the
 * scheduler reads GPU indices against it). The strings and GPUs are
 * copied; `kube` must outlive the feed. */
struct fx_usage_feed_config {
    const struct kube_config *kube;
    struct fx_nvml *nvml; /* the driver's utilization as a floor; NULL: none */
    const char *node, *state_dir, *ledger_root;
    const struct fx_node_gpu *gpus;
    int ngpu;
};
struct fx_usage_feed;
struct fx_usage_feed *fx_usage_feed_start(const struct fx_usage_feed_config *c,
                                          struct flexpu_error *err);
/* Stops the thread (within a sample, or a write's timeout) and frees. */
void fx_usage_feed_stop(struct fx_usage_feed *f);

#endif
