/* SPDX-License-Identifier: Apache-2.0 */
/* Prometheus metrics of the node agent: per GPU and per slice, read from the
 * runtime library's shared state files (runtime/state.h) and the tenants'
 * memory ledgers (runtime/ledger.h) at each scrape, so
 * they are what the slices hold right now; served in the text exposition
 * format by libmicrohttpd. */
#ifndef FX_NODE_METRICS_H
#define FX_NODE_METRICS_H

#include <stddef.h>

#include "node/gpus.h"
#include "node/reclaim_mem.h"

/* Names a slice's pod from its tenant (the pod UID); 0 when known. */
typedef int (*fx_metrics_pod_fn)(void *ctx, const char *uid, char *ns, size_t ns_len, char *name,
                                 size_t name_len);

struct fx_metrics_source {
    const char *state_dir;
    /* Where the tenants' memory ledgers are (runtime/ledger.h): one
     * directory per slice. */
    const char *ledger_root;
    const struct fx_node_gpu *gpus; /* read under `lock` if set */
    const int *ngpu;
    void (*lock)(void *ctx, int on);
    fx_metrics_pod_fn pod;
    void *ctx;
    struct fx_reclaim_mem *reclaim; /* its counters; NULL: none */
};

/* Renders the exposition text (malloc'd, NUL-terminated). */
char *fx_metrics_render(const struct fx_metrics_source *src);

struct fx_metrics_server;
/* Serves GET /metrics (and /healthz) on addr:port ("127.0.0.1", "0.0.0.0"). */
struct fx_metrics_server *fx_metrics_start(const char *addr, int port,
                                           const struct fx_metrics_source *src,
                                           struct flexpu_error *err);
void fx_metrics_stop(struct fx_metrics_server *s);

#endif
