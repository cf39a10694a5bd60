/* SPDX-License-Identifier: Apache-2.0 */
/* flexpu-sim --mode reuse: options, the three runs, the outputs. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "sim/reuse.h"
#include "util/alloc.h"

/* The options, one table: getopt's list and --help both come from it. */
static const struct {
    const char *name, *arg, *help;
} docs[] = {
    {"mode", "reuse", "this mode"},
    {"nodes", "FILE", "node list CSV (default: openb_node_list_gpu_node.csv in the trace directory)"},
    {"pods", "FILE", "pod list CSV (default: openb_pod_list_default.csv in the trace directory)"},
    {"genai", "DIR", "GenAI usage data (default: alibaba-genai-v2026 beside the trace directory)"},
    {"genai-part", "PART", "GenAI pods the owners draw from: 'report' (default), 'tune' or 'all'"},
    {"ref-mem-gib", "X", "GPU memory the GenAI memory series are a fraction of (default: 48)"},
    {"owner-share", "X", "owners reserve this share of the GPU compute, 0..1 (default: 0.8)"},
    {"owner-mem", "M", "owners' memory: 'peak' of their series (default) or 'share' of the GPU"},
    {"trace-part", "PART", "LS and BE pods by creation: 'report' (second half, default), 'tune' "
                           "(first half) or 'all'"},
    {"backlog", "N", "batch jobs kept waiting (default: 2000)"},
    {"batch-mem", "X", "a batch job's GPU memory, a fraction of its share of the GPU's "
                       "(default: 1)"},
    {"batch-gpu", "M", "a batch job's GPU time: 'idle' (default), all its owners leave, shared by "
                       "share weight (uncapped, as flexpu runs a pod without gpu-cores-limit), or "
                       "'share', at most its share (a cap equal to its share)"},
    {"warmup-hours", "X", "simulated before the window (default: 1)"},
    {"hours", "X", "window length in hours (default: 4)"},
    {"quick", NULL, "a small run: 0.25 h warm-up, 0.5 h window, backlog 500 (options after it win)"},
    {"seed", "N", "seed of the engine's ties and of each owner's series and offset, drawn "
                  "from the owner's own generator (default: 42)"},
    {"request-ms", "X", "an owner's request (GPU burst) whose slowdown is modelled (default: 20)"},
    {"borrow-fit", "X", "a borrower needs predicted idle compute for X of its share (default: 1, "
                        "the scheduler's rule)"},
    {"handover-ms", "X", "what a high owner waits per burst beside lower tenants (default: 0.44, "
                         "measured on an H200)"},
    {"predict", "N", "predictor: the max of the owner's last N samples (default: 10)"},
    {"borrow-mem", "M", "borrowers take memory no allocation reserved ('unreserved', default, "
                        "as flexpu-scheduler's) or, light jobs (--batch-mem 0.25 or less), also "
                        "what owners reserved and do not use ('idle': --borrow-mem idle, killed "
                        "before an owner's allocation fails)"},
    {"evict-latency", "S", "idle: seconds an owner's allocation waits while borrowers are killed "
                           "and their memory freed (default: 1; 0.05 on the fake driver, a GPU's "
                           "to measure)"},
    {"reclaim-after", "N", "reclaim after N samples of starved borrowers (default: 3)"},
    {"out", "DIR", "write reuse.md, reuse.csv and reuse.svg there (default: out/sim)"},
    {"help", NULL, "this text"},
};
#define NOPTS ((int)(sizeof(docs) / sizeof(docs[0])))

static void usage(FILE *f)
{
    fprintf(f, "usage: flexpu-sim --mode reuse [options]\n\nOwners (the trace's LS pods) with "
               "GenAI duty-cycle and memory series, a standing backlog of batch jobs (its BE "
               "pods): whole-GPU, flexpu, and flexpu with reuse of idle reserved GPUs "
               "(docs/REUSE.md).\n\noptions:\n");
    for (int i = 0; i < NOPTS; i++) {
        char left[40];
        snprintf(left, sizeof(left), "--%s%s%s", docs[i].name, docs[i].arg ? " " : "",
                 docs[i].arg ? docs[i].arg : "");
        fprintf(f, "  %-22s %s\n", left, docs[i].help);
    }
}

static int number(const char *name, const char *s, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (*s == '\0' || *end != '\0' || errno || !(v >= lo && v <= hi)) {
        fprintf(stderr, "flexpu-sim: field '--%s': invalid value '%s': expected a number in "
                        "[%g, %g]\n",
                name, s, lo, hi);
        return -1;
    }
    *out = v;
    return 0;
}

struct opts {
    char nodes[4096], pods[4096], genai[4096];
    const char *out, *part;
    double ref_gib;
    struct fx_reuse_config c;
};

static int parse(int argc, char **argv, struct opts *o)
{
    struct option longopts[NOPTS + 1];
    for (int i = 0; i < NOPTS; i++)
        longopts[i] = (struct option){docs[i].name, docs[i].arg ? required_argument : no_argument,
                                      NULL, 1000 + i};
    longopts[NOPTS] = (struct option){0, 0, 0, 0};
    int opt;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        if (opt == '?') {
            usage(stderr);
            return 2;
        }
        const char *n = docs[opt - 1000].name;
        double v = 0;
        int bad = 0;
        if (!strcmp(n, "help")) {
            usage(stdout);
            return 1;
        } else if (!strcmp(n, "mode")) {
            if (strcmp(optarg, "reuse"))
                bad = 1;
        } else if (!strcmp(n, "nodes"))
            snprintf(o->nodes, sizeof(o->nodes), "%s", optarg);
        else if (!strcmp(n, "pods"))
            snprintf(o->pods, sizeof(o->pods), "%s", optarg);
        else if (!strcmp(n, "genai"))
            snprintf(o->genai, sizeof(o->genai), "%s", optarg);
        else if (!strcmp(n, "out"))
            o->out = optarg;
        else if (!strcmp(n, "genai-part")) {
            o->part = optarg;
            if (strcmp(optarg, "report") && strcmp(optarg, "tune") && strcmp(optarg, "all")) {
                fprintf(stderr, "flexpu-sim: field '--genai-part': invalid value '%s': expected "
                                "report, tune or all\n",
                        optarg);
                return 2;
            }
        } else if (!strcmp(n, "ref-mem-gib"))
            bad = number(n, optarg, 1, 4096, &o->ref_gib);
        else if (!strcmp(n, "owner-share"))
            bad = number(n, optarg, 0, 1, &o->c.owner_share);
        else if (!strcmp(n, "owner-mem")) {
            if (strcmp(optarg, "peak") && strcmp(optarg, "share")) {
                fprintf(stderr, "flexpu-sim: field '--owner-mem': invalid value '%s': expected "
                                "peak or share\n",
                        optarg);
                return 2;
            }
            o->c.owner_mem = strcmp(optarg, "peak") ? FX_OWNER_MEM_SHARE : FX_OWNER_MEM_PEAK;
        } else if (!strcmp(n, "trace-part")) {
            if (strcmp(optarg, "report") && strcmp(optarg, "tune") && strcmp(optarg, "all")) {
                fprintf(stderr, "flexpu-sim: field '--trace-part': invalid value '%s': expected "
                                "report, tune or all\n",
                        optarg);
                return 2;
            }
            o->c.trace_part = !strcmp(optarg, "all") ? -1 : !strcmp(optarg, "tune") ? 0 : 1;
        } else if (!strcmp(n, "backlog") && !(bad = number(n, optarg, 1, 1e6, &v)))
            o->c.backlog = (int)v;
        else if (!strcmp(n, "warmup-hours") && !(bad = number(n, optarg, 0, 1e4, &v)))
            o->c.warmup_s = v * 3600;
        else if (!strcmp(n, "hours") && !(bad = number(n, optarg, 0.01, 1e4, &v)))
            o->c.window_s = v * 3600;
        else if (!strcmp(n, "quick")) {
            o->c.warmup_s = 900;
            o->c.window_s = 1800;
            o->c.backlog = 500;
        } else if (!strcmp(n, "seed") && !(bad = number(n, optarg, 0, 1e15, &v)))
            o->c.seed = (uint64_t)v;
        else if (!strcmp(n, "batch-mem"))
            bad = number(n, optarg, 0, 1, &o->c.batch_mem);
        else if (!strcmp(n, "batch-gpu")) {
            if (strcmp(optarg, "idle") && strcmp(optarg, "share")) {
                fprintf(stderr, "flexpu-sim: field '--batch-gpu': invalid value '%s': expected "
                                "idle or share\n",
                        optarg);
                return 2;
            }
            o->c.batch_gpu = strcmp(optarg, "idle") ? FX_BATCH_GPU_SHARE : FX_BATCH_GPU_IDLE;
        } else if (!strcmp(n, "borrow-fit"))
            bad = number(n, optarg, 0.01, 1, &o->c.borrow_fit);
        else if (!strcmp(n, "handover-ms"))
            bad = number(n, optarg, 0, 1e4, &o->c.handover_ms);
        else if (!strcmp(n, "request-ms"))
            bad = number(n, optarg, 0.001, 1e6, &o->c.request_ms);
        else if (!strcmp(n, "predict") && !(bad = number(n, optarg, 1, 64, &v)))
            o->c.predict_samples = (int)v;
        else if (!strcmp(n, "borrow-mem")) {
            if (strcmp(optarg, "unreserved") && strcmp(optarg, "idle")) {
                fprintf(stderr, "flexpu-sim: field '--borrow-mem': invalid value '%s': expected "
                                "unreserved or idle\n",
                        optarg);
                return 2;
            }
            o->c.borrow_mem = strcmp(optarg, "idle") ? FX_BORROW_MEM_UNRESERVED
                                                      : FX_BORROW_MEM_IDLE;
        } else if (!strcmp(n, "evict-latency"))
            bad = number(n, optarg, 0, 1e4, &o->c.evict_latency_s);
        else if (!strcmp(n, "reclaim-after") && !(bad = number(n, optarg, 1, 1e6, &v)))
            o->c.reclaim_samples = (int)v;
        if (bad) {
            if (!strcmp(n, "mode"))
                fprintf(stderr, "flexpu-sim: field '--mode': invalid value '%s'\n", optarg);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "flexpu-sim: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    return 0;
}

static int ensure_dir(const char *dir)
{
    char tmp[512];
    snprintf(tmp, sizeof(tmp), "%s", dir);
    for (char *p = tmp + 1; *p; p++)
        if (*p == '/') {
            *p = '\0';
            if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
                return -1;
            *p = '/';
        }
    return mkdir(tmp, 0755) != 0 && errno != EEXIST ? -1 : 0;
}

static int write_outputs(const struct opts *o, const struct fx_reuse_result *r)
{
    char path[600];
    struct flexpu_error err;
    if (ensure_dir(o->out) != 0) {
        fprintf(stderr, "flexpu-sim: cannot create %s: %s\n", o->out, strerror(errno));
        return 1;
    }
    snprintf(path, sizeof(path), "%s/reuse.md", o->out);
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "flexpu-sim: %s: cannot write: %s\n", path, strerror(errno));
        return 1;
    }
    fx_reuse_report(f, r, FX_REUSE_MODES_, &o->c);
    if (fclose(f) != 0) {
        fprintf(stderr, "flexpu-sim: %s: write failed\n", path);
        return 1;
    }
    /* The same figures, one line per mode, for bench/reuse.sh's tables. */
    snprintf(path, sizeof(path), "%s/reuse.csv", o->out);
    if (!(f = fopen(path, "w"))) {
        fprintf(stderr, "flexpu-sim: %s: cannot write: %s\n", path, strerror(errno));
        return 1;
    }
    fprintf(f, "mode,owner_share,seed,busy,owners,batch,borrowed,lost,reserved,allocated,"
               "batch_done,jct_p50,jct_p99,evict_memory,evict_reclaim,evict_owner,"
               "evictions_per_hour,owner_p99,owner_delayed,refused,backlog_min,seconds,"
               "borrow_mem,owner_delays,owner_delay_p99,owner_stalled,bound,bound_no_cpu,"
               "bound_no_hostmem,bound_no_gpumem,present_bound,present_no_cpu,present_no_hostmem,"
               "present_no_gpumem,bound_breaches,witness\n");
    for (int i = 0; i < FX_REUSE_MODES_; i++)
        fprintf(f, "%s,%g,%llu,%.4f,%.4f,%.4f,%.4f,%.4f,%.4f,%.4f,%d,%.0f,%.0f,%d,%d,%d,%.1f,%.4f,"
                   "%.4f,%lld,%d,%.1f,%s,%d,%g,%.6f,%.4f,%.4f,%.4f,%.4f,%.4f,%.4f,%.4f,%.4f,%d,%.4f\n",
                i == FX_REUSE_WHOLE ? "whole" : i == FX_REUSE_FLEXPU ? "flexpu" : "reuse",
                o->c.owner_share, (unsigned long long)o->c.seed, r[i].busy_share,
                r[i].owner_share, r[i].batch_share, r[i].borrowed_share, r[i].lost_share,
                r[i].reserved_share, r[i].alloc_share, r[i].batch_done, r[i].jct_p50,
                r[i].jct_p99, r[i].evict_memory, r[i].evict_reclaim, r[i].evict_owner,
                r[i].evictions_per_hour, r[i].owner_p99, r[i].owner_delayed,
                (long long)r[i].refused, r[i].backlog_min, r[i].seconds,
                o->c.borrow_mem == FX_BORROW_MEM_IDLE ? "idle" : "unreserved",
                r[i].owner_delays, r[i].owner_delay_p99, r[i].owner_stalled,
                r[i].bound_share[FX_BOUND_ALL], r[i].bound_share[FX_BOUND_NO_CPU],
                r[i].bound_share[FX_BOUND_NO_HOSTMEM], r[i].bound_share[FX_BOUND_NO_GPUMEM],
                r[i].hand_share[FX_BOUND_ALL], r[i].hand_share[FX_BOUND_NO_CPU],
                r[i].hand_share[FX_BOUND_NO_HOSTMEM], r[i].hand_share[FX_BOUND_NO_GPUMEM],
                r[i].bound_breaches, r[i].witness_share);
    if (fclose(f) != 0) {
        fprintf(stderr, "flexpu-sim: %s: write failed\n", path);
        return 1;
    }
    snprintf(path, sizeof(path), "%s/reuse.svg", o->out);
    if (fx_reuse_plot(path, r, FX_REUSE_MODES_, &err)) {
        fprintf(stderr, "flexpu-sim: %s\n", err.msg);
        return 1;
    }
    printf("wrote %s/reuse.md, %s/reuse.csv and %s\n", o->out, o->out, path);
    return 0;
}

int fx_reuse_main(int argc, char **argv, const char *trace_dir)
{
    struct opts o = {.out = "out/sim", .part = "report", .ref_gib = 48};
    snprintf(o.nodes, sizeof(o.nodes), "%s/openb_node_list_gpu_node.csv", trace_dir);
    snprintf(o.pods, sizeof(o.pods), "%s/openb_pod_list_default.csv", trace_dir);
    snprintf(o.genai, sizeof(o.genai), "%s/../alibaba-genai-v2026", trace_dir);
    fx_reuse_defaults(&o.c);
    int rc = parse(argc, argv, &o);
    if (rc)
        return rc == 1 ? 0 : rc;
    struct fx_trace t = {0};
    struct fx_genai u = {0};
    struct flexpu_error err;
    char duty[4200], mem[4200];
    snprintf(duty, sizeof(duty), "%s/pod_gpu_duty_cycle_anon.csv", o.genai);
    snprintf(mem, sizeof(mem), "%s/pod_gpu_memory_used_bytes_anon.csv", o.genai);
    if (fx_trace_read_nodes(&t, o.nodes, NULL, &err) || fx_trace_read_pods(&t, o.pods, NULL, &err) ||
        fx_genai_read(&u, duty, NULL, mem, NULL, o.ref_gib * 1073741824.0, &err)) {
        fprintf(stderr, "flexpu-sim: %s\n", err.msg);
        fx_trace_free(&t);
        return 2;
    }
    int all = u.npods;
    fx_genai_keep_part(&u, !strcmp(o.part, "all") ? -1 : !strcmp(o.part, "tune") ? 0 : 1);
    printf("GenAI series: %d of %d pods (%s half), %d samples every %.0f s\n", u.npods, all,
           o.part, u.nsteps, u.step_s);
    struct fx_reuse_result *r = fx_calloc(FX_REUSE_MODES_, sizeof(*r));
    rc = r ? 0 : 2;
    for (int m = 0; m < FX_REUSE_MODES_ && rc == 0; m++)
        if (fx_reuse_run(&t, &u, (enum fx_reuse_mode)m, &o.c, &r[m], &err)) {
            fprintf(stderr, "flexpu-sim: %s\n", err.msg);
            rc = 2;
        }
    if (rc == 0) {
        fx_reuse_report(stdout, r, FX_REUSE_MODES_, &o.c);
        if (o.out && *o.out)
            rc = write_outputs(&o, r);
    }
    fx_free(r);
    fx_genai_free(&u);
    fx_trace_free(&t);
    return rc;
}
