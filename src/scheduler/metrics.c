/* SPDX-License-Identifier: Apache-2.0 */
#include "scheduler/metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/promserve.h"

void fx_sched_metrics_init(struct fx_sched_metrics *m)
{
    memset(m, 0, sizeof(*m));
    pthread_mutex_init(&m->mu, NULL);
}

void fx_sched_metrics_destroy(struct fx_sched_metrics *m)
{
    pthread_mutex_destroy(&m->mu);
}

void fx_sched_metrics_update(struct fx_sched_metrics *m, const struct fx_model *model,
                             const struct fx_binder *b, bool leader, bool synced, int64_t now_ms)
{
    struct fx_model_stats st;
    bool take = m->stats_ms == 0 || now_ms - m->stats_ms >= 1000;
    if (take)
        fx_model_stats(model, &st); /* outside the lock: it walks every pod */
    pthread_mutex_lock(&m->mu);
    if (take) {
        m->st = st;
        m->stats_ms = now_ms;
    }
    m->binds = b->binds;
    m->bind_errors = b->bind_errors;
    m->binds_unsent = b->binds_unsent;
    m->events_dropped = b->events_dropped;
    m->leader = leader;
    m->synced = synced;
    m->loop_ms = now_ms;
    pthread_mutex_unlock(&m->mu);
}

char *fx_sched_metrics_render(struct fx_sched_metrics *m)
{
    pthread_mutex_lock(&m->mu);
    struct fx_sched_metrics s = *m; /* a consistent copy; its mutex is not used */
    pthread_mutex_unlock(&m->mu);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f)
        return NULL;
    fx_prom_help(f, "flexpu_scheduler_leader", "gauge",
                 "1 while this instance leads (decides and binds), else 0.");
    fprintf(f, "flexpu_scheduler_leader %d\n", s.leader);
    fx_prom_help(f, "flexpu_scheduler_synced", "gauge",
                 "1 once the first lists of nodes and pods are in the model.");
    fprintf(f, "flexpu_scheduler_synced %d\n", s.synced);
    fx_prom_help(f, "flexpu_scheduler_nodes", "gauge", "Nodes in the model.");
    fprintf(f, "flexpu_scheduler_nodes %d\n", s.st.nodes);
    fx_prom_help(f, "flexpu_scheduler_gpus", "gauge", "GPUs of the nodes in the model.");
    fprintf(f, "flexpu_scheduler_gpus %d\n", s.st.gpus);
    fx_prom_help(f, "flexpu_scheduler_gpu_capacity_milli", "gauge",
                 "GPU compute of the nodes in the model, in thousandths of a GPU.");
    fprintf(f, "flexpu_scheduler_gpu_capacity_milli %lld\n", (long long)s.st.gpu_milli_total);
    fx_prom_help(f, "flexpu_scheduler_gpu_allocated_milli", "gauge",
                 "GPU compute allocated to pods (bound or being bound), in thousandths of a GPU.");
    fprintf(f, "flexpu_scheduler_gpu_allocated_milli %lld\n", (long long)s.st.gpu_milli_used);
    fx_prom_help(f, "flexpu_scheduler_pods", "gauge",
                 "Pods of this scheduler by state: bound (or being bound), queued, waiting for "
                 "capacity, invalid (an event names the field), unsure (a bind of unknown "
                 "outcome, within bound), nominated (holding a place until its victims are "
                 "gone), gated (spec.schedulingGates: left alone until ungated).");
    const struct {
        const char *state;
        int n;
    } pods[] = {{"bound", s.st.pods_bound},     {"queued", s.st.pods_queued},
                {"waiting", s.st.pods_waiting}, {"invalid", s.st.pods_invalid},
                {"unsure", s.st.pods_unsure},   {"nominated", s.st.pods_nominated},
                {"gated", s.st.pods_gated}};
    for (size_t i = 0; i < sizeof(pods) / sizeof(pods[0]); i++)
        fprintf(f, "flexpu_scheduler_pods{state=\"%s\"} %d\n", pods[i].state, pods[i].n);
    fx_prom_help(f, "flexpu_scheduler_binds_total", "counter",
                 "Bindings by outcome: bound; failed (refused, or unknown and then read back); "
                 "unsent (the lease would not have covered it).");
    fprintf(f, "flexpu_scheduler_binds_total{result=\"bound\"} %ld\n", s.binds);
    fprintf(f, "flexpu_scheduler_binds_total{result=\"failed\"} %ld\n", s.bind_errors);
    fprintf(f, "flexpu_scheduler_binds_total{result=\"unsent\"} %ld\n", s.binds_unsent);
    fx_prom_help(f, "flexpu_scheduler_events_dropped_total", "counter",
                 "Events not written because their queue was full.");
    fprintf(f, "flexpu_scheduler_events_dropped_total %ld\n", s.events_dropped);
    fx_prom_help(f, "flexpu_scheduler_allocation_conflicts_total", "counter",
                 "Recorded allocations that could not be accounted (over capacity).");
    fprintf(f, "flexpu_scheduler_allocation_conflicts_total %lld\n", (long long)s.st.conflicts);
    fx_prom_help(f, "flexpu_scheduler_wakes_total", "counter",
                 "Waiting pods queued again because a node they may fit freed capacity.");
    fprintf(f, "flexpu_scheduler_wakes_total %llu\n", (unsigned long long)s.st.wakes);
    fx_prom_help(f, "flexpu_scheduler_wake_checks_total", "counter",
                 "Waiting pods checked against a node that freed capacity.");
    fprintf(f, "flexpu_scheduler_wake_checks_total %llu\n", (unsigned long long)s.st.wake_checks);
    fx_prom_help(f, "flexpu_scheduler_preemptions_total", "counter",
                 "Pods nominated to a node by evicting others (lower priority, or reclaim).");
    fprintf(f, "flexpu_scheduler_preemptions_total %llu\n", (unsigned long long)s.st.preemptions);
    fx_prom_help(f, "flexpu_scheduler_evictions_total", "counter",
                 "Victims chosen for preemption, by outcome: chosen, deleted (a borrower "
                 "taken for lent capacity whose eviction a PodDisruptionBudget refused: "
                 "deleted instead), refused (a PodDisruptionBudget or an error: the "
                 "preemption was undone).");
    fprintf(f, "flexpu_scheduler_evictions_total{result=\"chosen\"} %llu\n",
            (unsigned long long)s.st.evictions);
    fprintf(f, "flexpu_scheduler_evictions_total{result=\"deleted\"} %llu\n",
            (unsigned long long)s.st.evictions_deleted);
    fprintf(f, "flexpu_scheduler_evictions_total{result=\"refused\"} %llu\n",
            (unsigned long long)s.st.evictions_refused);
    fx_prom_help(f, "flexpu_scheduler_borrowers", "gauge",
                 "Opportunistic pods running on (or being bound to) a GPU they borrow.");
    fprintf(f, "flexpu_scheduler_borrowers %d\n", s.st.borrowers);
    fx_prom_help(f, "flexpu_scheduler_borrows_total", "counter",
                 "Opportunistic pods placed as borrowers on GPUs allocated but measured idle.");
    fprintf(f, "flexpu_scheduler_borrows_total %llu\n", (unsigned long long)s.st.borrows);
    fx_prom_help(f, "flexpu_scheduler_reclaims_total", "counter",
                 "Borrowers chosen to evict because their GPU's owners need it, by outcome: "
                 "chosen, deleted (a PodDisruptionBudget refused the eviction: deleted "
                 "instead), refused (the API server: the borrower stays for now).");
    fprintf(f, "flexpu_scheduler_reclaims_total{result=\"chosen\"} %llu\n",
            (unsigned long long)s.st.reclaims);
    fprintf(f, "flexpu_scheduler_reclaims_total{result=\"deleted\"} %llu\n",
            (unsigned long long)s.st.reclaims_deleted);
    fprintf(f, "flexpu_scheduler_reclaims_total{result=\"refused\"} %llu\n",
            (unsigned long long)s.st.reclaims_refused);
    fx_prom_help(f, "flexpu_scheduler_gangs_placed_total", "counter",
                 "Pod groups whose missing members were placed together.");
    fprintf(f, "flexpu_scheduler_gangs_placed_total %llu\n", (unsigned long long)s.st.gangs_placed);
    fx_prom_help(f, "flexpu_scheduler_workload_refreshes_total", "counter",
                 "Times the policy's workload (request shapes and their weights) was recomputed.");
    fprintf(f, "flexpu_scheduler_workload_refreshes_total %llu\n",
            (unsigned long long)s.st.workload_refreshes);
    if (fclose(f) != 0) {
        free(buf);
        return NULL;
    }
    return buf;
}

int fx_sched_metrics_health(struct fx_sched_metrics *m, int64_t now_ms, char *why, size_t len)
{
    pthread_mutex_lock(&m->mu);
    int64_t last = m->loop_ms;
    pthread_mutex_unlock(&m->mu);
    if (last && now_ms - last > FX_SCHED_STALL_MS) {
        snprintf(why, len, "the main loop has not run for %lld s",
                 (long long)((now_ms - last) / 1000));
        return 1;
    }
    return 0;
}
