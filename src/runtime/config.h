/* SPDX-License-Identifier: Apache-2.0 */
/* A slice's configuration: who the tenant is, its memory quota and compute
 * share. In Kubernetes the node agent mounts it read-only as a file, and then
 * the environment is ignored (a shell opened another way must not escape the
 * slice); standalone, FLEXPU_* environment variables configure it. The file
 * format is documented in docs/RUNTIME.md. */
#ifndef FX_RUNTIME_CONFIG_H
#define FX_RUNTIME_CONFIG_H

#include <stdint.h>

#include "flexpu/error.h"
#include "flexpu/log.h"
#include "util/priority.h"

#define FX_TENANT_NAME_MAX 64
#define FX_STATE_DIR_MAX 200
#define FX_OOM_WAIT_MS_DEFAULT 5000
#define FX_OOM_WAIT_MS_MAX 600000
/* A cap's reference clock (cap_clock_mhz): 100-10000 MHz takes in every GPU
 * clock; a value outside is a typo (a GHz figure, a stray digit). The node
 * agent's --cap-clock-mhz is held to the same bounds. */
#define FX_CAP_CLOCK_MIN_MHZ 100
#define FX_CAP_CLOCK_MAX_MHZ 10000

/* Where the node agent mounts the file. A build option so the tests can
 * point a separate test copy of the library elsewhere; never an environment
 * variable, which would let a process choose not to be limited. */
#ifndef FLEXPU_SLICE_CONF
#define FLEXPU_SLICE_CONF "/etc/flexpu/slice.conf"
#endif

struct fx_slice_config {
    char tenant[FX_TENANT_NAME_MAX];
    int64_t memory_limit;     /* bytes per GPU; 0 = the whole GPU */
    int compute_share;        /* guaranteed percent, 0-100 */
    int compute_cap;          /* most percent even when idle, 1-100 */
    /* The SM clock (MHz) a cap's percent refers to: the clock the GPU holds
     * when fully loaded. A capped tenant runs faster than that (it is not
     * power-capped), so its GPU time is charged at clock / cap_clock_mhz
     * when the clock is above it. 0 = off (GPU time only); else 100-10000. */
    int cap_clock_mhz;
    enum fx_priority priority;
    char state_dir[FX_STATE_DIR_MAX];
    /* The directory of this tenant's memory ledgers (ledger.h), which only
     * its own containers may write; "" = <state_dir>/ledger/<tenant>. */
    char ledger_dir[FX_STATE_DIR_MAX];
    /* The node agent's arbiter pages (arbagent.h), a directory tenants can
     * only read: when set, the agent decides who holds the GPU and the
     * shared state file is not used; "" = the cooperative shared state. */
    char arbiter_dir[FX_STATE_DIR_MAX];
    enum flexpu_log_level log_level;
    /* What a context costs on the device before the first allocation; charged
     * once per process and GPU (docs/RUNTIME.md explains why a constant). */
    int64_t context_overhead;
    /* Borrowed memory (issue 16; oom_wait.h): the directory where the node
     * agent marks the GPUs that have borrowers (read-only to tenants; "" =
     * none: this process never waits, as a borrower's is configured), and
     * how long an allocation the driver refuses for memory waits there for
     * the borrowers to be removed (0: never). */
    char borrowed_dir[FX_STATE_DIR_MAX];
    int oom_wait_ms;
    int from_file;            /* 1 when read from the file */
};

/* The defaults: tenant "default", no memory limit, share 0, cap 100, normal
 * priority, /tmp/flexpu, log level warn, overhead 512 MiB, no borrowed
 * directory, an OOM wait of FX_OOM_WAIT_MS_DEFAULT. */
void fx_config_defaults(struct fx_slice_config *c);

/* Reads FLEXPU_* variables through `get` (getenv in the library; a table in
 * tests). Unknown FLEXPU_* names are not an error (other tools share the
 * prefix); a bad value is, naming the variable and the value. */
int fx_config_from_env(struct fx_slice_config *c, const char *(*get)(const char *name, void *ctx),
                       void *ctx, struct flexpu_error *err);

/* Parses the file format: one `key = value` per line, '#' comments, blank
 * lines. Every key must be known and appear once; errors name file:line,
 * the key and the value. */
int fx_config_parse(struct fx_slice_config *c, const char *text, const char *origin,
                    struct flexpu_error *err);

/* Loads `path` if it exists (returns 1 and fills c, or an error when the file
 * exists but cannot be read or parsed: the caller fails closed); returns 0
 * when there is no such file. */
int fx_config_load_file(struct fx_slice_config *c, const char *path, struct flexpu_error *err);

#endif
