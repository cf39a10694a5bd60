/* SPDX-License-Identifier: Apache-2.0 */
/* flexpu-scheduler's Prometheus metrics and health. The main thread owns
 * the model and the binder; it copies what the metrics show into a
 * snapshot at most once a second (fx_model_stats walks every pod), and the
 * HTTP threads render only the snapshot. /healthz fails when the main loop
 * has not come round for FX_SCHED_STALL_MS: a wedged scheduler is restarted
 * by its liveness probe instead of holding the lease while binding nothing. */
#ifndef FX_SCHED_METRICS_H
#define FX_SCHED_METRICS_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "scheduler/bind.h"
#include "scheduler/model.h"

#define FX_SCHED_STALL_MS 60000

struct fx_sched_metrics {
    pthread_mutex_t mu;
    struct fx_model_stats st;
    long binds, bind_errors, binds_unsent, events_dropped;
    bool leader, synced;
    int64_t loop_ms;   /* the main loop's last pass (monotonic) */
    int64_t stats_ms;  /* when st was taken */
};

void fx_sched_metrics_init(struct fx_sched_metrics *m);
void fx_sched_metrics_destroy(struct fx_sched_metrics *m);

/* The main loop's pass at now_ms: the counters always, the model's figures
 * when the last copy is a second old. */
void fx_sched_metrics_update(struct fx_sched_metrics *m, const struct fx_model *model,
                             const struct fx_binder *b, bool leader, bool synced, int64_t now_ms);

/* The exposition text (malloc'd). */
char *fx_sched_metrics_render(struct fx_sched_metrics *m);

/* 0 when healthy at now_ms, else why. */
int fx_sched_metrics_health(struct fx_sched_metrics *m, int64_t now_ms, char *why, size_t len);

#endif
