/* SPDX-License-Identifier: Apache-2.0 */
/* flexpu-sim: replays a GPU cluster trace through the placement engine under
 * each policy and reports how much of the cluster every policy can use. */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include "flexpu/log.h"
#include "flexpu/sched.h"
#include "sched/ties.h"
#include "sim/replay.h"
#include "sim/report.h"
#include "sim/reuse.h"
#include "sim/timed.h"
#include "util/alloc.h"

#ifndef FLEXPU_TRACE_DIR
#define FLEXPU_TRACE_DIR "../shared/data/alibaba-gpu-v2023"
#endif

struct config {
    const char *nodes, *pods, *policies, *seeds, *mode, *out;
    const char *queues; /* timed mode: NULL, or the queues (sim/timed.h) */
    int no_reclaim;
    const char *reclaim, *gangs; /* timed mode with queues (sim/timed.h) */
    double copies;
    double scale, coverage, rate;
    int synth_nodes, synth_pods;
    int quiet;
    int ties; /* enum fx_ties */
};

/* The options, one table: getopt's list and --help both come from it. */
static const struct option_doc {
    const char *name;
    const char *arg;
    const char *help;
} docs[] = {
    {"nodes", "FILE", "node list CSV (default: openb_node_list_gpu_node.csv in the trace directory)"},
    {"pods", "FILE", "pod list CSV (default: openb_pod_list_default.csv in the trace directory)"},
    {"policy", "LIST", "comma-separated policies or 'all' (default: all)"},
    {"seeds", "A-B|A,B", "seeds of the arrival replay (default: 42-51)"},
    {"mode", "MODE",
     "'arrivals' (FGD method, default), 'timed' (real times) or 'reuse' (idle reserved GPUs "
     "lent to batch, docs/REUSE.md; its options: --mode reuse --help)"},
    {"scale", "X", "arrived GPU demand to stop at, times capacity (default: 1.3)"},
    {"rate", "X", "timed mode: arrivals X times faster than in the trace (default: 1)"},
    {"queues", "SPEC",
     "timed mode with queues by QoS class (docs/QUEUES.md): 'qos' (serving=50:1,batch=30:1,"
     "default=20:1), 'teams' (team0..3 at 25%, copy k of the trace in team k) or "
     "NAME=GUARANTEE%[:WEIGHT[:LIMIT%]],...; compared with the same run without queues"},
    {"reclaim", "MODE",
     "with --queues: which pods of other queues reclaim may evict: any (default), "
     "not-higher-priority or never"},
    {"no-reclaim", NULL, "with --queues: --reclaim never"},
    {"gangs", "G",
     "with --queues: auto (GPU pods of one creation second, shape and QoS; default), none, or "
     "a size N (runs of N pods of one shape and QoS)"},
    {"copies", "K", "with --queues: each trace pod arrives K times (default: 1)"},
    {"coverage", "X",
     "typical-pod popularity coverage for fgd/flexpu (default: the policy's own, fgd 0.95, "
     "flexpu 1.0)"},
    {"ties", "RULE",
     "ties between nodes: 'random' (per decision), 'priority' (a fixed random node priority "
     "per run) or 'policy' (default: fgd priority, the others random)"},
    {"out", "DIR", "write summary.csv, curves.csv and alloc.svg there (default: out/sim)"},
    {"synthetic", "N,M", "scale test: N nodes and M pods drawn from the trace"},
    {"quiet", NULL, "print only the table"},
    {"help", NULL, "this text"},
};
#define NOPTS ((int)(sizeof(docs) / sizeof(docs[0])))

/* Where the default trace is: $FLEXPU_TRACE_DIR, else the directory set
 * when flexpu was configured. */
static const char *trace_dir(void)
{
    const char *d = getenv("FLEXPU_TRACE_DIR");
    return d && *d ? d : FLEXPU_TRACE_DIR;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: flexpu-sim [options]\n\nReplays a GPU cluster trace under each placement "
               "policy.\n\noptions:\n");
    for (int i = 0; i < NOPTS; i++) {
        char left[40];
        snprintf(left, sizeof(left), "--%s%s%s", docs[i].name, docs[i].arg ? " " : "",
                 docs[i].arg ? docs[i].arg : "");
        fprintf(f, "  %-22s %s\n", left, docs[i].help);
    }
    fprintf(f, "\ntrace directory: %s\n  (the Alibaba GPU trace v2023: $FLEXPU_TRACE_DIR, else the "
               "directory set when flexpu was configured, cmake -DFLEXPU_TRACE_DIR=DIR)\n",
            trace_dir());
    fprintf(f, "\npolicies:\n");
    for (int i = 0; i < flexpu_policy_count(); i++)
        fprintf(f, "  %-8s %s\n", flexpu_policy_name(i), flexpu_policy_help(i));
    fprintf(f, "  %-8s %s\n", FX_BOUND_POLICY,
            "not a policy: the packing LP's upper bound on what any placement could allocate "
            "(arrivals mode; not in 'all')");
}

static int die(const char *what)
{
    fprintf(stderr, "flexpu-sim: %s\n", what);
    return 2;
}

static int parse_double(const char *s, const char *field, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (*s == '\0' || *end != '\0' || errno || !(v >= lo && v <= hi)) {
        fprintf(stderr, "flexpu-sim: field '--%s': invalid value '%s': expected a number in "
                        "[%g, %g]\n",
                field, s, lo, hi);
        return -1;
    }
    *out = v;
    return 0;
}

/* "42-51" or "1,2,7" into seeds[]; returns the count or -1. */
static int parse_seeds(const char *s, uint64_t *seeds, int max)
{
    unsigned long long a, b;
    int n = 0, used;
    if (sscanf(s, "%llu-%llu%n", &a, &b, &used) == 2 && s[used] == '\0' && a <= b &&
        b - a < (unsigned long long)max) {
        for (unsigned long long x = a; x <= b; x++)
            seeds[n++] = x;
        return n;
    }
    const char *p = s;
    while (*p && n < max) {
        char *end;
        errno = 0;
        unsigned long long v = strtoull(p, &end, 10);
        if (end == p || errno || (*end && *end != ','))
            break;
        seeds[n++] = v;
        p = *end ? end + 1 : end;
        if (*end == '\0')
            return n;
    }
    fprintf(stderr, "flexpu-sim: field '--seeds': invalid value '%s': expected A-B or A,B,... "
                    "(at most %d seeds)\n",
            s, max);
    return -1;
}

/* Splits the policy list, checking every name. */
static int parse_policies(const char *s, const char **out, int max)
{
    if (strcmp(s, "all") == 0) {
        int n = flexpu_policy_count();
        for (int i = 0; i < n && i < max; i++)
            out[i] = flexpu_policy_name(i);
        return n;
    }
    int n = 0;
    const char *p = s;
    while (*p) {
        size_t len = strcspn(p, ",");
        int found = -1;
        for (int i = 0; i < flexpu_policy_count(); i++)
            if (strlen(flexpu_policy_name(i)) == len && strncmp(p, flexpu_policy_name(i), len) == 0)
                found = i;
        int bound = strlen(FX_BOUND_POLICY) == len && strncmp(p, FX_BOUND_POLICY, len) == 0;
        if ((found < 0 && !bound) || n == max) {
            fprintf(stderr, "flexpu-sim: field '--policy': invalid value '%.*s': unknown policy "
                            "(see --help)\n",
                    (int)len, p);
            return -1;
        }
        out[n++] = bound ? FX_BOUND_POLICY : flexpu_policy_name(found);
        p += len;
        if (*p)
            p++;
    }
    return n;
}

/* Replaces t's nodes by n nodes drawn from them with replacement (fresh
 * names), for the scale test. */
static int synthesize(struct fx_trace *t, int n, struct flexpu_error *err)
{
    struct fx_trace_node *nodes = fx_calloc((size_t)n, sizeof(*nodes));
    if (!nodes)
        return flexpu_error_set(err, FLEXPU_ENOMEM, "out of memory for %d nodes", n);
    struct flexpu_rng rng;
    flexpu_rng_seed(&rng, 7);
    int64_t gpus = 0;
    for (int i = 0; i < n; i++) {
        nodes[i] = t->nodes[flexpu_rng_below(&rng, (uint64_t)t->nnodes)];
        snprintf(nodes[i].name, sizeof(nodes[i].name), "synthetic-%06d", i);
        gpus += nodes[i].ngpu;
    }
    fx_free(t->nodes);
    t->nodes = nodes;
    t->nnodes = n;
    t->gpus = gpus;
    return 0;
}

static int ensure_dir(const char *dir)
{
    char tmp[512];
    snprintf(tmp, sizeof(tmp), "%s", dir);
    for (char *p = tmp + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
                return -1;
            *p = '/';
        }
    }
    return mkdir(tmp, 0755) != 0 && errno != EEXIST ? -1 : 0;
}

static long peak_rss_kib(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

static int run_arrivals(const struct config *c, const struct fx_trace *t, const char **pol,
                        int npol, const uint64_t *seeds, int nseeds)
{
    struct fx_replay_result *runs = fx_calloc((size_t)(npol * nseeds), sizeof(*runs));
    struct fx_summary *sum = fx_calloc((size_t)npol, sizeof(*sum));
    struct flexpu_error err;
    int rc = 0;
    if (!runs || !sum) {
        rc = die("out of memory");
        goto out;
    }
    for (int p = 0; p < npol; p++) {
        for (int s = 0; s < nseeds; s++) {
            struct fx_replay_opts o = {c->scale, c->coverage, seeds[s], 0, c->ties};
            if (c->synth_pods > 0) {
                o.max_pods = c->synth_pods;
                o.scale = 1e9;
            }
            if (fx_replay_arrivals(t, pol[p], &o, &runs[p * nseeds + s], &err)) {
                rc = die(err.msg);
                goto out;
            }
            if (!c->quiet)
                FX_INFO("sim", "replay done",
                        "policy=%s seed=%llu pods=%d placed=%d alloc100=%.4f alloc_end=%.4f "
                        "seconds=%.3f classes_max=%d failed_multi=%d fail_cpu=%d fail_mem=%d "
                        "fail_gpu=%d",
                        pol[p], (unsigned long long)seeds[s], runs[p * nseeds + s].pods_arrived,
                        runs[p * nseeds + s].pods_placed, runs[p * nseeds + s].alloc[100],
                        runs[p * nseeds + s].alloc[130], runs[p * nseeds + s].seconds,
                        runs[p * nseeds + s].classes_max, runs[p * nseeds + s].failed_multi_gpu,
                        runs[p * nseeds + s].failed[FLEXPU_REJECT_CPU],
                        runs[p * nseeds + s].failed[FLEXPU_REJECT_MEMORY],
                        runs[p * nseeds + s].failed[FLEXPU_REJECT_GPU_FREE]);
        }
        fx_summarize(&runs[p * nseeds], nseeds, &sum[p]);
    }
    fx_report_table(stdout, sum, npol, c->pods);
    if (c->synth_nodes > 0)
        printf("synthetic cluster: %d nodes, %lld GPUs, %d pods per run; peak RSS %.1f MiB\n",
               t->nnodes, (long long)t->gpus, runs[0].pods_arrived, peak_rss_kib() / 1024.0);
    if (c->out && *c->out) {
        char path[600];
        if (ensure_dir(c->out) != 0) {
            fprintf(stderr, "flexpu-sim: cannot create %s: %s\n", c->out, strerror(errno));
            rc = 1;
            goto out;
        }
        snprintf(path, sizeof(path), "%s/summary.csv", c->out);
        int wrc = fx_report_summary_csv(path, sum, npol, &err);
        if (wrc == 0) {
            snprintf(path, sizeof(path), "%s/curves.csv", c->out);
            wrc = fx_report_curves_csv(path, runs, npol * nseeds, &err);
        }
        if (wrc == 0) {
            snprintf(path, sizeof(path), "%s/alloc.svg", c->out);
            wrc = fx_report_plot(path, sum, npol, c->pods, &err);
        }
        if (wrc == 0)
            printf("wrote %s/summary.csv, %s/curves.csv and the plot %s\n", c->out, c->out,
                   path);
        else
            rc = die(err.msg);
    }
out:
    fx_free(runs);
    fx_free(sum);
    return rc;
}

/* Timed mode with queues: each policy with the queues and without. */
static int run_queued(const struct config *c, const struct fx_trace *t, const char **pol, int npol)
{
    struct fx_qsim_config qc, none;
    struct flexpu_error err;
    if (fx_qsim_parse(c->queues, &qc, &err))
        return die(err.msg);
    if ((c->reclaim && fx_qsim_reclaim_parse(c->reclaim, &qc.reclaim, &err)) ||
        (c->gangs && fx_qsim_gangs_parse(c->gangs, &qc.gangs, &err)))
        return die(err.msg);
    if (c->no_reclaim)
        qc.reclaim = FX_QSIM_RECLAIM_NEVER;
    qc.copies = (int)c->copies;
    memset(&none, 0, sizeof(none));
    none.copies = qc.copies;
    none.gangs = qc.gangs; /* the same workload, gangs included */
    struct fx_qsim_result *r = fx_calloc(2, sizeof(*r));
    if (!r)
        return die("out of memory");
    int rc = 0;
    for (int p = 0; p < npol && rc == 0; p++) {
        if (fx_qsim_run(t, pol[p], c->coverage, c->rate, &qc, &r[0], &err) ||
            fx_qsim_run(t, pol[p], c->coverage, c->rate, &none, &r[1], &err)) {
            rc = die(err.msg);
            break;
        }
        fx_qsim_report(stdout, &r[0], &r[1], c->pods);
        if (c->out && *c->out && ensure_dir(c->out) == 0) {
            char path[600];
            snprintf(path, sizeof(path), "%s/queues-%s.csv", c->out, pol[p]);
            if (fx_qsim_csv(path, &r[0], &err) == 0)
                printf("wrote %s\n", path);
            else
                rc = die(err.msg);
        }
    }
    fx_free(r);
    return rc;
}

static int run_timed(const struct config *c, const struct fx_trace *t, const char **pol, int npol)
{
    if (c->queues)
        return run_queued(c, t, pol, npol);
    struct fx_timed_result *r = fx_calloc((size_t)npol, sizeof(*r));
    struct flexpu_error err;
    int rc = 0;
    if (!r)
        return die("out of memory");
    for (int p = 0; p < npol && rc == 0; p++)
        if (fx_replay_timed(t, pol[p], c->coverage, c->rate, &r[p], &err))
            rc = die(err.msg);
    if (rc == 0) {
        fx_report_timed(stdout, r, npol, c->pods, c->rate);
        if (c->out && *c->out && ensure_dir(c->out) == 0) {
            char path[600];
            snprintf(path, sizeof(path), "%s/timed.csv", c->out);
            if (fx_report_timed_csv(path, r, npol, &err) == 0)
                printf("wrote %s\n", path);
            else
                rc = die(err.msg);
        }
    }
    fx_free(r);
    return rc;
}

int main(int argc, char **argv)
{
    /* --mode reuse has its own options (sim/reuse.h). */
    for (int i = 1; i < argc; i++)
        if ((!strcmp(argv[i], "--mode") && i + 1 < argc && !strcmp(argv[i + 1], "reuse")) ||
            !strcmp(argv[i], "--mode=reuse"))
            return fx_reuse_main(argc, argv, trace_dir());
    static char default_nodes[4096], default_pods[4096];
    snprintf(default_nodes, sizeof(default_nodes), "%s/openb_node_list_gpu_node.csv", trace_dir());
    snprintf(default_pods, sizeof(default_pods), "%s/openb_pod_list_default.csv", trace_dir());
    struct config c = {default_nodes, default_pods, "all", "42-51", "arrivals", "out/sim",
                       NULL, 0, NULL, NULL, 1, 1.3, 0, 1.0, 0, 0, 0, FX_TIES_POLICY};
    struct option longopts[NOPTS + 1];
    for (int i = 0; i < NOPTS; i++)
        longopts[i] = (struct option){docs[i].name, docs[i].arg ? required_argument : no_argument,
                                      NULL, 1000 + i};
    longopts[NOPTS] = (struct option){0, 0, 0, 0};
    int opt;
    while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        if (opt == '?') {
            usage(stderr);
            return 2;
        }
        const char *name = docs[opt - 1000].name;
        if (!strcmp(name, "nodes"))
            c.nodes = optarg;
        else if (!strcmp(name, "pods"))
            c.pods = optarg;
        else if (!strcmp(name, "policy"))
            c.policies = optarg;
        else if (!strcmp(name, "seeds"))
            c.seeds = optarg;
        else if (!strcmp(name, "mode"))
            c.mode = optarg;
        else if (!strcmp(name, "queues"))
            c.queues = optarg;
        else if (!strcmp(name, "no-reclaim"))
            c.no_reclaim = 1;
        else if (!strcmp(name, "reclaim"))
            c.reclaim = optarg;
        else if (!strcmp(name, "gangs"))
            c.gangs = optarg;
        else if (!strcmp(name, "copies")) {
            if (parse_double(optarg, name, 1, 1000, &c.copies) || c.copies != floor(c.copies)) {
                fprintf(stderr, "flexpu-sim: field '--copies': expected a whole number\n");
                return 2;
            }
        }
        else if (!strcmp(name, "out"))
            c.out = optarg;
        else if (!strcmp(name, "ties")) {
            enum fx_ties t;
            if (fx_ties_parse(optarg, &t)) {
                fprintf(stderr, "flexpu-sim: field '--ties': invalid value '%s': expected "
                                "random, priority or policy\n",
                        optarg);
                return 2;
            }
            c.ties = (int)t;
        } else if (!strcmp(name, "quiet"))
            c.quiet = 1;
        else if (!strcmp(name, "help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(name, "scale")) {
            if (parse_double(optarg, name, 0.01, 100, &c.scale))
                return 2;
        } else if (!strcmp(name, "rate")) {
            if (parse_double(optarg, name, 1, 1e6, &c.rate))
                return 2;
        } else if (!strcmp(name, "coverage")) {
            if (parse_double(optarg, name, 0.01, 1, &c.coverage))
                return 2;
        } else if (!strcmp(name, "synthetic")) {
            int used = 0;
            if (sscanf(optarg, "%d,%d%n", &c.synth_nodes, &c.synth_pods, &used) != 2 ||
                optarg[used] || c.synth_nodes < 1 || c.synth_pods < 1 ||
                c.synth_nodes > 1000000 || c.synth_pods > 10000000) {
                fprintf(stderr, "flexpu-sim: field '--synthetic': invalid value '%s': expected "
                                "NODES,PODS such as 10000,100000\n",
                        optarg);
                return 2;
            }
        }
    }
    if (optind < argc) {
        fprintf(stderr, "flexpu-sim: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if (strcmp(c.mode, "arrivals") && strcmp(c.mode, "timed")) {
        fprintf(stderr, "flexpu-sim: field '--mode': invalid value '%s': expected arrivals or "
                        "timed\n",
                c.mode);
        return 2;
    }
    if (c.queues && strcmp(c.mode, "timed")) {
        fprintf(stderr, "flexpu-sim: field '--queues': invalid value '%s': needs --mode timed\n",
                c.queues);
        return 2;
    }
    flexpu_log_set_level(c.quiet ? FLEXPU_LOG_WARN : FLEXPU_LOG_INFO);
    const char *pol[32];
    uint64_t seeds[128];
    int npol = parse_policies(c.policies, pol, 32);
    int nseeds = parse_seeds(c.seeds, seeds, 128);
    if (npol < 0 || nseeds < 0)
        return 2;
    struct fx_trace t = {0};
    struct flexpu_error err;
    const char *failed = NULL;
    if (fx_trace_read_nodes(&t, c.nodes, NULL, &err))
        failed = c.nodes;
    else if (fx_trace_read_pods(&t, c.pods, NULL, &err))
        failed = c.pods;
    if (failed) {
        fx_trace_free(&t);
        int rc = die(err.msg);
        if (err.code == FLEXPU_EIO && (failed == default_nodes || failed == default_pods))
            fprintf(stderr,
                    "flexpu-sim: the default trace is the public Alibaba GPU trace v2023 "
                    "(openb_node_list_gpu_node.csv and openb_pod_list_*.csv), published at "
                    "https://github.com/alibaba/clusterdata/tree/master/cluster-trace-gpu-v2023; "
                    "put it in %s, set FLEXPU_TRACE_DIR=DIR, or pass --nodes and --pods\n",
                    trace_dir());
        return rc;
    }
    if (c.synth_nodes > 0 && synthesize(&t, c.synth_nodes, &err)) {
        fx_trace_free(&t);
        return die(err.msg);
    }
    int rc = strcmp(c.mode, "timed") == 0 ? run_timed(&c, &t, pol, npol)
                                          : run_arrivals(&c, &t, pol, npol, seeds, nseeds);
    fx_trace_free(&t);
    return rc;
}
