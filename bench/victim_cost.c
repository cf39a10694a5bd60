/* SPDX-License-Identifier: Apache-2.0 */
/* flexpu-victim-cost: what a failed placement costs the scheduler's model
 * while borrowers exist (docs/KUBERNETES.md, "A borrower yields its node's
 * CPU and memory", Cost). A full cluster: --nodes nodes of 8 A100s, each
 * GPU held by two bound ordinary pods (half its compute and memory each,
 * 16 pods a node), then --borrowers borrowers bound on the first nodes
 * (one CPU, 10 cores of GPU 0, as the model accounts one after a restart),
 * then --waiting pods that are not opportunistic and ask a whole GPU, which
 * fit nowhere, with or without every borrower gone. Each is attempted once
 * (fx_model_next until nothing is left): every attempt is a failed
 * placement, and with a borrower bound a victim search for it. Prints the
 * time per attempt. No I/O but the output; the model is fed as the watches
 * would feed it. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "flexpu/log.h"
#include "kube/contract.h"
#include "scheduler/model.h"
#include "util/clock.h"

#define GPUS 8
#define GIB (1024LL * 1024 * 1024)

static void die(const char *what)
{
    fprintf(stderr, "flexpu-victim-cost: %s\n", what);
    exit(1);
}

static void node(struct fx_model *m, int i)
{
    char name[32];
    snprintf(name, sizeof(name), "n%04d", i);
    json_t *inv = json_array();
    for (int g = 0; g < GPUS; g++) {
        char uuid[64];
        snprintf(uuid, sizeof(uuid), "GPU-%s-%d", name, g);
        json_array_append_new(inv, json_pack("{s:s, s:s, s:I}", "uuid", uuid, "model", "A100",
                                             "memory", (json_int_t)(80 * GIB)));
    }
    char *text = json_dumps(inv, JSON_COMPACT);
    json_decref(inv);
    json_t *n = json_pack("{s:{s:s, s:{s:s}}, s:{}, s:{s:{s:s, s:s}}}", "metadata", "name", name,
                          "annotations", "flexpu.io/gpus", text, "spec", "status", "allocatable",
                          "cpu", "64", "memory", "512Gi");
    free(text);
    if (!n)
        die("out of memory");
    fx_model_node_event(m, KUBE_ADDED, n);
    json_decref(n);
}

/* Pod uid asking one GPU with `cores` and `mem_gib` (0: none), one CPU;
 * bound to node ni's GPU g when ni >= 0 (borrowed: its allocation says so). */
static void pod(struct fx_model *m, const char *uid, int cores, int mem_gib, int ni, int g,
                bool borrowed)
{
    char c[16], mem[16];
    snprintf(c, sizeof(c), "%d", cores);
    snprintf(mem, sizeof(mem), "%dGi", mem_gib);
    json_t *limits = json_pack("{s:s, s:s, s:s, s:s}", "cpu", "1", "memory", "1Gi",
                               "flexpu.io/gpu", "1", "flexpu.io/gpu-cores", c);
    if (mem_gib)
        json_object_set_new(limits, "flexpu.io/gpu-memory", json_string(mem));
    json_t *ann = json_object();
    if (borrowed)
        json_object_set_new(ann, FX_ANN_OPPORTUNISTIC, json_string("true"));
    json_t *p = json_pack("{s:{s:s, s:s, s:s, s:s, s:o}, s:{s:s, s:[{s:s, s:{s:o}}]}}",
                          "metadata", "name", uid, "namespace", "b", "uid", uid,
                          "creationTimestamp", "2026-01-01T00:00:00Z", "annotations", ann,
                          "spec", "schedulerName", "flexpu-scheduler", "containers", "name", "c",
                          "resources", "limits", limits);
    if (!p)
        die("out of memory");
    if (ni >= 0) {
        char name[32];
        snprintf(name, sizeof(name), "n%04d", ni);
        struct fx_allocation al = {.ngpu = 1, .borrowed = borrowed};
        snprintf(al.gpus[0].uuid, sizeof(al.gpus[0].uuid), "GPU-%s-%d", name, g);
        al.gpus[0].index = g;
        al.gpus[0].cores = cores;
        al.gpus[0].mem = (int64_t)(mem_gib ? mem_gib : 8) * GIB;
        char *text = fx_allocation_format(&al);
        json_object_set_new(ann, FX_ANN_ALLOCATION, json_string(text));
        free(text);
        json_object_set_new(json_object_get(p, "spec"), "nodeName", json_string(name));
    }
    fx_model_pod_event(m, KUBE_ADDED, p);
    json_decref(p);
}

int main(int argc, char **argv)
{
    int nodes = 1000, borrowers = 1, waiting = 2000;
    static const struct option longopts[] = {{"nodes", required_argument, 0, 'n'},
                                             {"borrowers", required_argument, 0, 'b'},
                                             {"waiting", required_argument, 0, 'w'},
                                             {0, 0, 0, 0}};
    for (int c; (c = getopt_long(argc, argv, "", longopts, NULL)) != -1;) {
        int v = optarg ? atoi(optarg) : -1;
        if (c == 'n' && v > 0 && v <= 9999)
            nodes = v;
        else if (c == 'b' && v >= 0 && v <= nodes)
            borrowers = v;
        else if (c == 'w' && v > 0)
            waiting = v;
        else
            die("usage: flexpu-victim-cost [--nodes 1..9999] [--borrowers 0..NODES] "
                "[--waiting N]");
    }
    flexpu_log_set_level(FLEXPU_LOG_ERROR);
    struct flexpu_error err = {0};
    struct fx_model *m = fx_model_new("flexpu-scheduler", "flexpu", 1, &err);
    if (!m)
        die(err.msg);
    char uid[64];
    for (int i = 0; i < nodes; i++) {
        node(m, i);
        for (int g = 0; g < GPUS; g++)
            for (int k = 0; k < 2; k++) {
                snprintf(uid, sizeof(uid), "o-%d-%d-%d", i, g, k);
                pod(m, uid, 50, 40, i, g, false);
            }
    }
    for (int i = 0; i < borrowers; i++) {
        snprintf(uid, sizeof(uid), "b-%d", i);
        pod(m, uid, 10, 8, i, 0, true);
    }
    for (int i = 0; i < waiting; i++) {
        snprintf(uid, sizeof(uid), "w-%d", i);
        pod(m, uid, 100, 0, -1, 0, false);
    }
    struct fx_model_stats st;
    fx_model_stats(m, &st);
    if (st.borrowers != borrowers || st.conflicts)
        die("the cluster was not accounted as built");
    struct fx_attempt a;
    int attempts = 0, waits = 0;
    uint64_t t0 = fx_mono_ns();
    while (fx_model_next(m, &a)) {
        attempts++;
        waits += a.outcome == FX_WAIT;
    }
    double ms = (double)(fx_mono_ns() - t0) / 1e6;
    fx_model_stats(m, &st);
    printf("nodes %d pods_bound %d borrowers %d attempts %d waits %d preemptions %llu "
           "total_ms %.1f ms_per_attempt %.4f\n",
           nodes, st.pods_bound, borrowers, attempts, waits, (unsigned long long)st.preemptions,
           ms, attempts ? ms / attempts : 0.0);
    fx_model_free(m);
    return waits == waiting && st.preemptions == 0 ? 0 : 1;
}
