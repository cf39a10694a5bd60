/* SPDX-License-Identifier: Apache-2.0 */
#include "sim/report.h"

#include <errno.h>
#include <math.h>
#include <string.h>

#include "sim/svg.h"

/* Mean and sample standard deviation of n values at stride. */
static struct fx_stat stat_of(const double *v, int n)
{
    struct fx_stat s = {0, 0};
    if (n <= 0)
        return s;
    for (int i = 0; i < n; i++)
        s.mean += v[i];
    s.mean /= n;
    if (n > 1) {
        for (int i = 0; i < n; i++)
            s.sd += (v[i] - s.mean) * (v[i] - s.mean);
        s.sd = sqrt(s.sd / (n - 1));
    }
    return s;
}

enum { MAX_RUNS = 256 };

void fx_summarize(const struct fx_replay_result *runs, int n, struct fx_summary *out)
{
    double v[9][MAX_RUNS];
    memset(out, 0, sizeof(*out));
    if (n > MAX_RUNS)
        n = MAX_RUNS;
    out->policy = n ? runs[0].policy : "";
    out->runs = n;
    for (int i = 0; i < n; i++) {
        const struct fx_replay_result *r = &runs[i];
        v[0][i] = 100 * r->alloc[100];
        v[1][i] = 100 * r->alloc[130];
        v[2][i] = (double)(r->total_milli - r->alloc_milli) / 1000.0;
        v[3][i] = 100 * r->frag[100];
        v[4][i] = 100 * r->frag[130];
        v[5][i] = r->pods_placed;
        v[6][i] = r->pods_arrived;
        v[7][i] = (double)r->demand_placed_milli / 1000.0;
        v[8][i] = r->seconds;
        out->failed_multi_gpu += (double)r->failed_multi_gpu / n;
        for (int x = 0; x < FX_CURVE_POINTS; x++)
            out->curve[x] += r->alloc[x] / n;
    }
    out->alloc100 = stat_of(v[0], n);
    out->alloc130 = stat_of(v[1], n);
    out->unalloc130 = stat_of(v[2], n);
    out->frag100 = stat_of(v[3], n);
    out->frag130 = stat_of(v[4], n);
    out->pods_placed = stat_of(v[5], n);
    out->pods_arrived = stat_of(v[6], n);
    out->demand_placed_gpus = stat_of(v[7], n);
    out->seconds = stat_of(v[8], n);
}

void fx_report_table(FILE *f, const struct fx_summary *s, int n, const char *trace)
{
    fprintf(f, "trace: %s (%d seeds)\n", trace, n ? s[0].runs : 0);
    fprintf(f, "%-8s %14s %14s %18s %12s %16s %14s %8s\n", "policy", "alloc@100%", "alloc@130%",
            "unalloc GPUs@130%", "frag@130%", "pods placed/arr.", "GPUs demanded*", "s/run");
    for (int i = 0; i < n; i++) {
        fprintf(f, "%-8s %7.2f ± %4.2f %7.2f ± %4.2f %10.1f ± %5.1f ", s[i].policy,
                s[i].alloc100.mean, s[i].alloc100.sd, s[i].alloc130.mean, s[i].alloc130.sd,
                s[i].unalloc130.mean, s[i].unalloc130.sd);
        if (s[i].pods_placed.mean < 0) /* the bound: no pods, no fragmentation */
            fprintf(f, "%12s %9s/%-6.0f ", "-", "-", s[i].pods_arrived.mean);
        else
            fprintf(f, "%6.2f ± %3.1f %9.0f/%-6.0f ", s[i].frag130.mean, s[i].frag130.sd,
                    s[i].pods_placed.mean, s[i].pods_arrived.mean);
        fprintf(f, "%14.1f %8.3f\n", s[i].demand_placed_gpus.mean, s[i].seconds.mean);
    }
    fprintf(f, "alloc: allocated GPU share of capacity (%%) when arrived demand reaches 100%% "
               "and 130%%; frag: FGD fragmentation (%% of capacity);\n* GPUs demanded: the "
               "requested GPU total of the pods placed (a share counts as its fraction).\n");
    fprintf(f, "Each figure is the mean (± standard deviation) over the seeds; pods placed/arr.: "
               "pods placed of pods arrived at 130%%.\n");
    for (int i = 0; i < n; i++)
        if (!strcmp(s[i].policy, "whole")) {
            fprintf(f, "whole: every share rounded up to a whole GPU (no slicing); its alloc and "
                       "frag count the rounded-up GPUs it hands out, not the demand it serves "
                       "(compare GPUs demanded), so its low fragmentation is not a better "
                       "packing.\n");
            break;
        }
}

static FILE *open_out(const char *path, struct flexpu_error *err)
{
    FILE *f = fopen(path, "w");
    if (!f)
        flexpu_error_set(err, FLEXPU_EIO, "%s: cannot write: %s", path, strerror(errno));
    return f;
}

static int close_out(FILE *f, const char *path, struct flexpu_error *err)
{
    if (fclose(f) != 0)
        return flexpu_error_set(err, FLEXPU_EIO, "%s: write failed: %s", path, strerror(errno));
    return 0;
}

int fx_report_curves_csv(const char *path, const struct fx_replay_result *runs, int n,
                         struct flexpu_error *err)
{
    FILE *f = open_out(path, err);
    if (!f)
        return FLEXPU_EIO;
    fputs("policy,seed,demand_pct,alloc_ratio,frag_ratio\n", f);
    for (int i = 0; i < n; i++)
        for (int x = 0; x < FX_CURVE_POINTS; x++)
            fprintf(f, "%s,%llu,%d,%.6f,%.6f\n", runs[i].policy,
                    (unsigned long long)runs[i].seed, x, runs[i].alloc[x], runs[i].frag[x]);
    return close_out(f, path, err);
}

int fx_report_summary_csv(const char *path, const struct fx_summary *s, int n,
                          struct flexpu_error *err)
{
    FILE *f = open_out(path, err);
    if (!f)
        return FLEXPU_EIO;
    fputs("policy,runs,alloc100_pct,alloc100_sd,alloc130_pct,alloc130_sd,unalloc_gpus130,"
          "unalloc_gpus130_sd,frag100_pct,frag130_pct,pods_placed,pods_arrived,"
          "gpu_demand_placed,seconds_per_run\n",
          f);
    for (int i = 0; i < n; i++)
        fprintf(f, "%s,%d,%.4f,%.4f,%.4f,%.4f,%.2f,%.2f,%.4f,%.4f,%.1f,%.1f,%.2f,%.4f\n",
                s[i].policy, s[i].runs, s[i].alloc100.mean, s[i].alloc100.sd, s[i].alloc130.mean,
                s[i].alloc130.sd, s[i].unalloc130.mean, s[i].unalloc130.sd, s[i].frag100.mean,
                s[i].frag130.mean, s[i].pods_placed.mean, s[i].pods_arrived.mean,
                s[i].demand_placed_gpus.mean, s[i].seconds.mean);
    return close_out(f, path, err);
}

int fx_report_plot(const char *path, const struct fx_summary *s, int n, const char *trace,
                   struct flexpu_error *err)
{
    static double x[FX_CURVE_POINTS];
    double y[16][FX_CURVE_POINTS];
    struct fx_series series[16];
    if (n > 16)
        n = 16;
    double ymin = 100;
    for (int i = 0; i < FX_CURVE_POINTS; i++)
        x[i] = i;
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < FX_CURVE_POINTS; j++) {
            y[i][j] = 100 * s[i].curve[j];
            if (j >= 60 && y[i][j] < ymin)
                ymin = y[i][j];
        }
        series[i] = (struct fx_series){s[i].policy, x, y[i], FX_CURVE_POINTS};
    }
    char title[160];
    snprintf(title, sizeof(title), "GPU allocation vs arrived demand — %s", trace);
    return fx_svg_plot(path, title, "arrived GPU demand (% of capacity)",
                       "GPUs allocated (% of capacity)", floor(fmax(ymin - 5, 0) / 10) * 10, 100,
                       series, n, err);
}

void fx_report_timed(FILE *f, const struct fx_timed_result *r, int n, const char *trace,
                     double rate)
{
    fprintf(f, "trace: %s (timed replay: arrivals at %gx the trace's rate, real run times)\n",
            trace, rate);
    fprintf(f, "%-8s %8s %10s %8s %7s %12s %12s %12s %9s %9s %8s\n", "policy", "pods",
            "on-arrival", "later", "never", "wait mean s", "wait p99 s", "wait max s", "alloc avg",
            "alloc max", "s/run");
    for (int i = 0; i < n; i++)
        fprintf(f, "%-8s %8d %10d %8d %7d %12.0f %12.0f %12.0f %8.2f%% %8.2f%% %8.3f\n",
                r[i].policy, r[i].pods, r[i].placed_on_arrival, r[i].placed_later,
                r[i].never_placed, r[i].pending_mean, r[i].pending_p99, r[i].pending_max,
                100 * r[i].alloc_mean, 100 * r[i].alloc_peak, r[i].seconds);
}

int fx_report_timed_csv(const char *path, const struct fx_timed_result *r, int n,
                        struct flexpu_error *err)
{
    FILE *f = open_out(path, err);
    if (!f)
        return FLEXPU_EIO;
    fputs("policy,time_s,alloc_ratio\n", f);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < r[i].npoints; j++)
            fprintf(f, "%s,%.0f,%.6f\n", r[i].policy, r[i].t[j], r[i].alloc[j]);
    return close_out(f, path, err);
}
