/* SPDX-License-Identifier: Apache-2.0 */
/* Summaries of replays over seeds: the table, the CSV files and the plot. */
#ifndef FX_SIM_REPORT_H
#define FX_SIM_REPORT_H

#include <stdio.h>

#include "sim/replay.h"

struct fx_stat {
    double mean, sd;
};

struct fx_summary {
    const char *policy;
    int runs;
    struct fx_stat alloc100, alloc130, unalloc130, frag100, frag130;
    struct fx_stat pods_placed, pods_arrived, demand_placed_gpus, seconds;
    double failed_multi_gpu;
    double curve[FX_CURVE_POINTS]; /* mean allocation ratio */
};

/* Summarises n runs of one policy. */
void fx_summarize(const struct fx_replay_result *runs, int n, struct fx_summary *out);

void fx_report_table(FILE *f, const struct fx_summary *s, int n, const char *trace);
/* Long format: policy,seed,demand_pct,alloc_ratio,frag_ratio per point. */
int fx_report_curves_csv(const char *path, const struct fx_replay_result *runs, int n,
                         struct flexpu_error *err);
/* One line per policy with every summary column. */
int fx_report_summary_csv(const char *path, const struct fx_summary *s, int n,
                          struct flexpu_error *err);
int fx_report_plot(const char *path, const struct fx_summary *s, int n, const char *trace,
                   struct flexpu_error *err);

void fx_report_timed(FILE *f, const struct fx_timed_result *r, int n, const char *trace,
                     double rate);
int fx_report_timed_csv(const char *path, const struct fx_timed_result *r, int n,
                        struct flexpu_error *err);

#endif
