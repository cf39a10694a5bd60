/* SPDX-License-Identifier: Apache-2.0 */
/* The rules that make fgd the published FGD (sched/ties.h): ties between
 * nodes go to a fixed random node priority for the whole run, and the
 * typical pods keep the most popular shapes up to 95% of pods, larger CPU
 * first among equal counts. Other policies keep random ties and every
 * shape. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sched/engine.h"
#include "sched/ties.h"
#include "small_trace.h"

static int add_node_cpu(struct flexpu_engine *e, const char *name, int ngpu, int64_t cpu)
{
    struct flexpu_node_info n;
    memset(&n, 0, sizeof(n));
    n.name = name;
    n.cpu_milli = cpu;
    n.mem_mib = 262144;
    n.ngpu = ngpu;
    for (int g = 0; g < ngpu; g++) {
        n.gpus[g].model = "T4";
        n.gpus[g].numa = 0;
    }
    int id = -1;
    struct flexpu_error err;
    assert_int_equal(flexpu_engine_add_node(e, &n, &id, &err), 0);
    return id;
}

static int add_node(struct flexpu_engine *e, const char *name, int ngpu)
{
    return add_node_cpu(e, name, ngpu, 64000);
}

static struct flexpu_pod_req req(int ngpu, int milli)
{
    struct flexpu_pod_req r;
    memset(&r, 0, sizeof(r));
    r.cpu_milli = 1000;
    r.mem_mib = 1024;
    r.num_gpu = ngpu;
    r.gpu_milli = milli;
    return r;
}

/* n one-GPU nodes under policy, defending whole GPUs; identical nodes (one
 * class), or with distinct CPU sizes (a class each) that still tie. */
static struct flexpu_engine *cluster_of(const char *policy, int n, int distinct)
{
    struct flexpu_engine *e = flexpu_engine_new();
    assert_non_null(e);
    assert_int_equal(flexpu_engine_set_policy(e, policy, NULL), 0);
    for (int i = 0; i < n; i++) {
        char name[16];
        snprintf(name, sizeof(name), "n%d", i);
        add_node_cpu(e, name, 1, 64000 + (distinct ? i * 1000 : 0));
    }
    struct flexpu_pod_req shape = req(1, 1000);
    double w = 1;
    assert_int_equal(flexpu_engine_set_workload(e, &shape, &w, 1, NULL), 0);
    return e;
}

static struct flexpu_engine *cluster(const char *policy, int n)
{
    return cluster_of(policy, n, 0);
}

static const struct flexpu_engine *sort_engine;

static int by_priority(const void *a, const void *b)
{
    uint64_t pa = fx_engine_node_priority(sort_engine, *(const int *)a);
    uint64_t pb = fx_engine_node_priority(sort_engine, *(const int *)b);
    return pa < pb ? -1 : pa > pb;
}

#define NODES 8

/* Whole-GPU pods on eight empty one-GPU nodes all tie under fgd. Each pod
 * is placed with a different generator state, yet they fill the nodes in
 * the order of the node priority, the same order for the same tie seed.
 * A random tie-break (the old rule) gives this order with probability
 * 1/8! for each seed. */
static void test_fgd_ties_follow_fixed_node_priority(void **state)
{
    (void)state;
    int first[3];
    for (int k = 0; k < 3; k++) {
        uint64_t tie_seed = (uint64_t)(42 + k);
        struct flexpu_engine *e = cluster("fgd", NODES);
        assert_int_equal(fx_engine_ties(e), FX_TIES_NODE_PRIORITY);
        fx_engine_set_ties(e, FX_TIES_POLICY, tie_seed);
        int want[NODES];
        for (int i = 0; i < NODES; i++)
            want[i] = i;
        sort_engine = e;
        qsort(want, NODES, sizeof(want[0]), by_priority);
        for (int i = 0; i < NODES; i++) {
            struct flexpu_rng rng;
            flexpu_rng_seed(&rng, 1000 + (uint64_t)i * 7919 + (uint64_t)k);
            struct flexpu_pod_req r = req(1, 1000);
            struct flexpu_placement p;
            struct flexpu_noplace why;
            assert_int_equal(flexpu_engine_place(e, &r, &rng, &p, NULL, &why), 0);
            if (p.node != want[i])
                fail_msg("tie seed %llu, pod %d: node %d, want node %d (priority order)",
                         (unsigned long long)tie_seed, i, p.node, want[i]);
        }
        first[k] = want[0];
        assert_int_equal(flexpu_engine_check(e, NULL), 0);
        flexpu_engine_free(e);
    }
    /* The priority is random per run: these three seeds do not all pick
     * the same first node. */
    assert_false(first[0] == first[1] && first[1] == first[2]);
}

/* The decision does not depend on the caller's generator, only on the tie
 * seed; and a node that leaves the winning class hands the tie to the
 * next node in priority (the class's cached winner is refreshed). */
static void test_fgd_priority_ignores_generator(void **state)
{
    (void)state;
    struct flexpu_engine *e = cluster("fgd", NODES);
    fx_engine_set_ties(e, FX_TIES_POLICY, 7);
    int node = -1;
    for (uint64_t s = 1; s <= 32; s++) {
        struct flexpu_rng rng;
        flexpu_rng_seed(&rng, s);
        struct flexpu_pod_req r = req(1, 1000);
        struct flexpu_placement p;
        assert_int_equal(flexpu_engine_decide(e, &r, &rng, &p, NULL), 0);
        if (node < 0)
            node = p.node;
        assert_int_equal(p.node, node);
    }
    flexpu_engine_free(e);
}

/* Two 2-GPU nodes in one class (interchangeable GPUs): a has its GPU 0
 * half used, b its GPU 1. A 500 share fills the half-used GPU of whichever
 * node has the higher priority, on that node's own GPU index. */
static void test_priority_winner_gets_its_own_gpus(void **state)
{
    (void)state;
    for (uint64_t seed = 1; seed <= 8; seed++) {
        struct flexpu_engine *e = flexpu_engine_new();
        assert_int_equal(flexpu_engine_set_policy(e, "fgd", NULL), 0);
        int a = add_node(e, "a", 2), b = add_node(e, "b", 2);
        struct flexpu_pod_req shapes[2] = {req(1, 500), req(1, 1000)};
        double w[2] = {1, 1};
        assert_int_equal(flexpu_engine_set_workload(e, shapes, w, 2, NULL), 0);
        fx_engine_set_ties(e, FX_TIES_POLICY, seed);
        struct flexpu_placement pa = {.node = a, .ngpu = 1, .gpu = {0}, .milli = {500}};
        struct flexpu_placement pb = {.node = b, .ngpu = 1, .gpu = {1}, .milli = {500}};
        assert_int_equal(flexpu_engine_assign(e, &shapes[0], &pa, NULL, NULL), 0);
        assert_int_equal(flexpu_engine_assign(e, &shapes[0], &pb, NULL, NULL), 0);
        struct flexpu_stats s;
        flexpu_engine_stats(e, &s);
        assert_int_equal(s.classes, 1);
        int want = fx_engine_node_priority(e, a) < fx_engine_node_priority(e, b) ? a : b;
        struct flexpu_rng rng;
        flexpu_rng_seed(&rng, 3);
        struct flexpu_placement p;
        assert_int_equal(flexpu_engine_place(e, &shapes[0], &rng, &p, NULL, NULL), 0);
        assert_int_equal(p.node, want);
        assert_int_equal(p.gpu[0], want == a ? 0 : 1);
        assert_int_equal(flexpu_engine_check(e, NULL), 0);
        flexpu_engine_free(e);
    }
}

/* flexpu keeps random ties unless asked, and the override works both ways:
 * fgd with random ties spreads over tied nodes again. (Random ties draw a
 * class of identical nodes in proportion to its size and take any member:
 * members are interchangeable; so the tied nodes here differ in size.) */
static void test_other_policies_keep_random_ties(void **state)
{
    (void)state;
    static const char *const random_ties[] = {"flexpu", "bestfit", "random", "dotprod",
                                              "packing", "whole"};
    for (size_t i = 0; i < sizeof(random_ties) / sizeof(random_ties[0]); i++) {
        struct flexpu_engine *e = cluster(random_ties[i], 1);
        assert_int_equal(fx_engine_ties(e), FX_TIES_RANDOM);
        flexpu_engine_free(e);
    }
    static const char *const pols[] = {"flexpu", "fgd"};
    for (int k = 0; k < 2; k++) {
        struct flexpu_engine *e = cluster_of(pols[k], NODES, 1);
        if (k == 1)
            fx_engine_set_ties(e, FX_TIES_RANDOM, 7);
        int hits[NODES] = {0};
        for (uint64_t s = 1; s <= 64; s++) {
            struct flexpu_rng rng;
            flexpu_rng_seed(&rng, s);
            struct flexpu_pod_req r = req(1, 1000);
            struct flexpu_placement p;
            assert_int_equal(flexpu_engine_decide(e, &r, &rng, &p, NULL), 0);
            hits[p.node]++;
        }
        int used = 0;
        for (int i = 0; i < NODES; i++)
            used += hits[i] > 0;
        if (used < 4)
            fail_msg("%s with random ties used %d of %d tied nodes", pols[k], used, NODES);
        /* and asked for the node priority, flexpu follows it */
        fx_engine_set_ties(e, FX_TIES_NODE_PRIORITY, 7);
        assert_int_equal(fx_engine_ties(e), FX_TIES_NODE_PRIORITY);
        flexpu_engine_free(e);
    }
    enum fx_ties t;
    assert_int_equal(fx_ties_parse("priority", &t), 0);
    assert_int_equal(t, FX_TIES_NODE_PRIORITY);
    assert_int_equal(fx_ties_parse("random", &t), 0);
    assert_int_equal(t, FX_TIES_RANDOM);
    assert_int_equal(fx_ties_parse("policy", &t), 0);
    assert_int_equal(t, FX_TIES_POLICY);
    assert_int_equal(fx_ties_parse("smallest", &t), -1);
}

/* 20 pods: 18 of shape A, one of B (2 cores) and one of C (8 cores), B and
 * C alike but for CPU. 95% is 19 pods: A (18) is not enough, the next
 * shape reaches 19 and the list stops there. fgd takes C, the larger CPU;
 * the old rule (coverage 1.0, smaller CPU first) kept all three. */
static const char *const typical_pods =
    "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos\n"
    "a0,4000,1024,1,500,,LS\na1,4000,1024,1,500,,LS\na2,4000,1024,1,500,,LS\n"
    "a3,4000,1024,1,500,,LS\na4,4000,1024,1,500,,LS\na5,4000,1024,1,500,,LS\n"
    "a6,4000,1024,1,500,,LS\na7,4000,1024,1,500,,LS\na8,4000,1024,1,500,,LS\n"
    "a9,4000,1024,1,500,,LS\na10,4000,1024,1,500,,LS\na11,4000,1024,1,500,,LS\n"
    "a12,4000,1024,1,500,,LS\na13,4000,1024,1,500,,LS\na14,4000,1024,1,500,,LS\n"
    "a15,4000,1024,1,500,,LS\na16,4000,1024,1,500,,LS\na17,4000,1024,1,500,,LS\n"
    "b,2000,1024,1,1000,,LS\n"
    "c,8000,1024,1,1000,,LS\n";

static struct flexpu_engine *workload_of(const struct fx_trace *t, const char *policy,
                                         double coverage)
{
    struct flexpu_engine *e;
    struct flexpu_error err;
    assert_int_equal(fx_trace_engine(t, &e, &err), 0);
    assert_int_equal(flexpu_engine_set_policy(e, policy, &err), 0);
    if (fx_trace_set_workload(e, t, coverage, &err))
        fail_msg("%s", err.msg);
    return e;
}

static int has_cpu(const struct flexpu_engine *e, int64_t cpu, double *weight)
{
    for (int i = 0; i < e->wl.nshapes; i++)
        if (e->wl.shapes[i].req.cpu_milli == cpu) {
            *weight = e->wl.shapes[i].weight;
            return 1;
        }
    return 0;
}

static void test_fgd_typical_pods_95_larger_cpu_first(void **state)
{
    (void)state;
    struct fx_trace t = {0};
    load_trace(&t, small_nodes, typical_pods);
    struct fx_policy_rules rules;
    assert_int_equal(fx_policy_rules("fgd", &rules), 0);
    assert_true(rules.coverage == 0.95);
    assert_int_equal(rules.typical, FX_TYPICAL_LARGER_FIRST);
    assert_int_equal(fx_policy_rules("nonesuch", &rules), -1);

    double w;
    struct flexpu_engine *e = workload_of(&t, "fgd", 0); /* the policy's own */
    assert_int_equal(e->wl.nshapes, 2);
    assert_true(has_cpu(e, 4000, &w) && w > 18.0 / 19 - 1e-9 && w < 18.0 / 19 + 1e-9);
    assert_true(has_cpu(e, 8000, &w) && w > 1.0 / 19 - 1e-9 && w < 1.0 / 19 + 1e-9);
    assert_false(has_cpu(e, 2000, &w));
    flexpu_engine_free(e);

    /* flexpu keeps every shape; at 95% it would take the smaller CPU. */
    e = workload_of(&t, "flexpu", 0);
    assert_int_equal(e->wl.nshapes, 3);
    flexpu_engine_free(e);
    e = workload_of(&t, "flexpu", 0.95);
    assert_int_equal(e->wl.nshapes, 2);
    assert_true(has_cpu(e, 2000, &w));
    flexpu_engine_free(e);

    /* An explicit coverage overrides the policy's. */
    e = workload_of(&t, "fgd", 1.0);
    assert_int_equal(e->wl.nshapes, 3);
    flexpu_engine_free(e);
    fx_trace_free(&t);
}

/* The reference keys typical pods by the gpu_spec text: the artifact's
 * gpuspec traces write "V100M16|V100M32|V100M32" for some pods, a shape of
 * its own there (with its own count towards the 95%), which the model mask
 * alone would merge with "V100M16|V100M32". fgd keeps them apart; flexpu,
 * whose shapes are weights not a list to cut, merges them. */
static void test_fgd_typical_pods_keyed_by_spec_text(void **state)
{
    (void)state;
    struct fx_trace t = {0};
    load_trace(&t, small_nodes,
               "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos\n"
               "a0,4000,1024,1,500,T4|V100,LS\na1,4000,1024,1,500,T4|V100,LS\n"
               "a2,4000,1024,1,500,T4|V100|V100,LS\n"
               "c,8000,1024,1,1000,,LS\n");
    struct flexpu_engine *e = workload_of(&t, "fgd", 1.0);
    assert_int_equal(e->wl.nshapes, 3);
    double sum = 0;
    for (int i = 0; i < e->wl.nshapes; i++)
        if (e->wl.shapes[i].req.cpu_milli == 4000)
            sum += e->wl.shapes[i].weight;
    assert_true(fabs(sum - 0.75) < 1e-12);
    flexpu_engine_free(e);
    e = workload_of(&t, "flexpu", 1.0);
    assert_int_equal(e->wl.nshapes, 2);
    flexpu_engine_free(e);
    fx_trace_free(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fgd_ties_follow_fixed_node_priority),
        cmocka_unit_test(test_fgd_priority_ignores_generator),
        cmocka_unit_test(test_priority_winner_gets_its_own_gpus),
        cmocka_unit_test(test_other_policies_keep_random_ties),
        cmocka_unit_test(test_fgd_typical_pods_95_larger_cpu_first),
        cmocka_unit_test(test_fgd_typical_pods_keyed_by_spec_text),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
