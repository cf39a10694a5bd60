/* SPDX-License-Identifier: Apache-2.0 */
/* The placement engine: invariants, exact release, multi-GPU and topology,
 * each policy on small clusters with a known best answer, and reasons. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "flexpu/sched.h"
#include "sched/engine.h"
#include "util/alloc.h"

/* ---- helpers ---------------------------------------------------------- */

static int add_node(struct flexpu_engine *e, const char *name, int64_t cpu, int64_t mem, int ngpu,
                    const char *model, int64_t gmem, const int *topo)
{
    struct flexpu_node_info n;
    memset(&n, 0, sizeof(n));
    n.name = name;
    n.cpu_milli = cpu;
    n.mem_mib = mem;
    n.ngpu = ngpu;
    for (int g = 0; g < ngpu; g++) {
        n.gpus[g].model = model;
        n.gpus[g].mem_mib = gmem;
        n.gpus[g].numa = 0;
        n.gpus[g].topo_group = topo ? topo[g] : 0;
    }
    int id = -1;
    struct flexpu_error err;
    assert_int_equal(flexpu_engine_add_node(e, &n, &id, &err), 0);
    return id;
}

static struct flexpu_pod_req req(int64_t cpu, int ngpu, int milli)
{
    struct flexpu_pod_req r;
    memset(&r, 0, sizeof(r));
    r.cpu_milli = cpu;
    r.mem_mib = 1024;
    r.num_gpu = ngpu;
    r.gpu_milli = ngpu ? milli : 0;
    return r;
}

static void check(const struct flexpu_engine *e)
{
    struct flexpu_error err = {0};
    int rc = flexpu_engine_check(e, &err);
    if (rc)
        fail_msg("invariant broken: %s", err.msg);
}

static struct flexpu_engine *engine(const char *policy)
{
    struct flexpu_engine *e = flexpu_engine_new();
    assert_non_null(e);
    struct flexpu_error err;
    assert_int_equal(flexpu_engine_set_policy(e, policy, &err), 0);
    return e;
}

/* Places r and returns the placement (fails the test if it does not fit). */
static struct flexpu_placement place_ok(struct flexpu_engine *e, struct flexpu_pod_req r,
                                        struct flexpu_rng *rng, int64_t *id)
{
    struct flexpu_placement p;
    struct flexpu_noplace why;
    int rc = flexpu_engine_place(e, &r, rng, &p, id, &why);
    if (rc)
        fail_msg("place failed: %s", why.text);
    check(e);
    return p;
}

/* ---- invariants ------------------------------------------------------- */

static void test_release_restores_exactly(void **state)
{
    (void)state;
    struct flexpu_engine *e = engine("flexpu");
    add_node(e, "a", 32000, 65536, 4, "T4", 16384, NULL);
    add_node(e, "b", 64000, 131072, 8, "A100", 81920, NULL);
    struct flexpu_stats before, after;
    flexpu_engine_stats(e, &before);
    struct flexpu_rng rng;
    flexpu_rng_seed(&rng, 1);
    int64_t ids[64];
    int n = 0;
    static const int shares[] = {250, 500, 1000, 810, 470};
    for (int i = 0; i < 40; i++) {
        struct flexpu_pod_req r = req(1000, (i % 7 == 0) ? 2 : 1, shares[i % 5]);
        if (i % 7 == 0)
            r.gpu_milli = 1000;
        struct flexpu_placement p;
        if (flexpu_engine_place(e, &r, &rng, &p, &ids[n], NULL) == 0)
            n++;
        check(e);
    }
    assert_true(n > 10);
    for (int i = n - 1; i >= 0; i -= 2) /* release in a scrambled order */
        assert_int_equal(flexpu_engine_release(e, ids[i], NULL), 0);
    for (int i = n - 2; i >= 0; i -= 2)
        assert_int_equal(flexpu_engine_release(e, ids[i], NULL), 0);
    check(e);
    flexpu_engine_stats(e, &after);
    assert_int_equal(after.gpu_milli_used, 0);
    assert_int_equal(after.cpu_milli_used, 0);
    assert_int_equal(after.mem_mib_used, 0);
    assert_int_equal(after.gpus_idle, before.gpus_idle);
    assert_int_equal(after.gpus_shared, 0);
    assert_int_equal(after.allocations, 0);
    assert_int_equal(after.classes, before.classes);
    for (int g = 0; g < 8; g++)
        assert_int_equal(flexpu_engine_gpu_free_milli(e, 1, g), 1000);
    assert_int_equal(flexpu_engine_release(e, ids[0], NULL), FLEXPU_ENOENT);
    flexpu_engine_free(e);
}

/* Random place/release churn never over-commits anything. */
static void test_churn_never_overcommits(void **state)
{
    (void)state;
    struct flexpu_engine *e = engine("flexpu");
    for (int i = 0; i < 12; i++) {
        char name[16];
        snprintf(name, sizeof(name), "n%d", i);
        add_node(e, name, 16000 + 8000 * (i % 3), 65536, 1 + i % 8, i % 2 ? "T4" : "V100", 16384,
                 NULL);
    }
    struct flexpu_rng rng;
    flexpu_rng_seed(&rng, 99);
    int64_t live[512];
    int nlive = 0;
    for (int step = 0; step < 3000; step++) {
        if (nlive > 0 && (flexpu_rng_below(&rng, 3) == 0 || nlive == 512)) {
            int k = (int)flexpu_rng_below(&rng, (uint64_t)nlive);
            assert_int_equal(flexpu_engine_release(e, live[k], NULL), 0);
            live[k] = live[--nlive];
        } else {
            int ngpu = (int)flexpu_rng_below(&rng, 4);
            struct flexpu_pod_req r = req(500 * (int64_t)flexpu_rng_below(&rng, 8), ngpu,
                                          ngpu == 1 ? 50 + 50 * (int)flexpu_rng_below(&rng, 20)
                                                    : 1000);
            r.gpu_mem_mib = ngpu ? 1024 * (int64_t)flexpu_rng_below(&rng, 8) : 0;
            struct flexpu_placement p;
            if (flexpu_engine_place(e, &r, &rng, &p, &live[nlive], NULL) == 0)
                nlive++;
        }
        if (step % 50 == 0)
            check(e);
    }
    check(e);
    flexpu_engine_free(e);
}

static void test_assign_rejects_overcommit(void **state)
{
    (void)state;
    struct flexpu_engine *e = engine("bestfit");
    int a = add_node(e, "a", 8000, 16384, 2, "T4", 16000, NULL);
    struct flexpu_pod_req r = req(1000, 1, 600);
    struct flexpu_placement p = {.node = a, .ngpu = 1, .gpu = {0}, .milli = {600}};
    struct flexpu_error err;
    assert_int_equal(flexpu_engine_assign(e, &r, &p, NULL, &err), 0);
    struct flexpu_stats s1, s2;
    flexpu_engine_stats(e, &s1);
    /* 600 + 600 > 1000 on GPU 0 */
    assert_int_equal(flexpu_engine_assign(e, &r, &p, NULL, &err), FLEXPU_ENOFIT);
    assert_non_null(strstr(err.msg, "GPU 0"));
    /* CPU beyond the node */
    struct flexpu_pod_req big = req(8000, 1, 100);
    p.gpu[0] = 1;
    p.milli[0] = 100;
    assert_int_equal(flexpu_engine_assign(e, &big, &p, NULL, &err), FLEXPU_ENOFIT);
    assert_non_null(strstr(err.msg, "insufficient cpu"));
    /* GPU memory beyond the GPU */
    struct flexpu_pod_req gm = req(100, 1, 100);
    gm.gpu_mem_mib = 17000;
    p.gpu_mem_mib[0] = 17000;
    assert_int_equal(flexpu_engine_assign(e, &gm, &p, NULL, &err), FLEXPU_ENOFIT);
    /* the same GPU twice, a GPU that does not exist, a share below the ask */
    struct flexpu_pod_req two = req(100, 2, 100);
    struct flexpu_placement dup = {.node = a, .ngpu = 2, .gpu = {1, 1}, .milli = {100, 100}};
    assert_int_equal(flexpu_engine_assign(e, &two, &dup, NULL, &err), FLEXPU_EINVAL);
    struct flexpu_placement out = {.node = a, .ngpu = 1, .gpu = {5}, .milli = {100}};
    assert_int_equal(flexpu_engine_assign(e, &gm, &out, NULL, &err), FLEXPU_EINVAL);
    struct flexpu_placement less = {.node = a, .ngpu = 1, .gpu = {1}, .milli = {50}};
    assert_int_equal(flexpu_engine_assign(e, &r, &less, NULL, &err), FLEXPU_EINVAL);
    struct flexpu_placement nonode = {.node = 7, .ngpu = 1, .gpu = {0}, .milli = {100}};
    assert_int_equal(flexpu_engine_assign(e, &gm, &nonode, NULL, &err), FLEXPU_ENOENT);
    flexpu_engine_stats(e, &s2);
    assert_int_equal(s1.gpu_milli_used, s2.gpu_milli_used);
    assert_int_equal(s1.cpu_milli_used, s2.cpu_milli_used);
    assert_int_equal(s1.allocations, s2.allocations);
    check(e);
    flexpu_engine_free(e);
}

static void test_gpu_memory_limits_sharing(void **state)
{
    (void)state;
    struct flexpu_engine *e = engine("bestfit");
    add_node(e, "a", 64000, 65536, 1, "T4", 16000, NULL);
    struct flexpu_pod_req r = req(100, 1, 200);
    r.gpu_mem_mib = 10000;
    int64_t id;
    place_ok(e, r, NULL, &id);
    struct flexpu_placement p;
    struct flexpu_noplace why;
    assert_int_equal(flexpu_engine_place(e, &r, NULL, &p, NULL, &why), FLEXPU_ENOFIT);
    assert_int_equal(why.rejected[FLEXPU_REJECT_GPU_MEMORY], 1);
    assert_non_null(strstr(why.text, "insufficient GPU memory"));
    assert_int_equal(flexpu_engine_gpu_free_mem(e, 0, 0), 6000);
    flexpu_engine_free(e);
}

/* ---- multi-GPU and topology ------------------------------------------ */

static void test_multi_gpu_one_node_and_island(void **state)
{
    (void)state;
    struct flexpu_engine *e = engine("bestfit");
    static const int topo[8] = {0, 0, 0, 0, 1, 1, 1, 1};
    int a = add_node(e, "a", 96000, 393216, 8, "A100", 81920, topo);
    add_node(e, "b", 96000, 393216, 2, "A100", 81920, NULL);
    /* Take GPU 0 so island 0 has 3 free, island 1 has 4. */
    struct flexpu_pod_req one = req(1000, 1, 1000);
    struct flexpu_placement p0 = {.node = a, .ngpu = 1, .gpu = {0}, .milli = {1000}};
    assert_int_equal(flexpu_engine_assign(e, &one, &p0, NULL, NULL), 0);
    /* A 2-GPU pod takes the smaller island that holds it (island 0). */
    struct flexpu_placement p = place_ok(e, req(1000, 2, 1000), NULL, NULL);
    if (p.node == a) {
        assert_int_equal(topo[p.gpu[0]], topo[p.gpu[1]]);
    }
    /* A 4-GPU pod fits only node a, and only on island 1 whole. */
    p = place_ok(e, req(1000, 4, 1000), NULL, NULL);
    assert_int_equal(p.node, a);
    assert_int_equal(p.ngpu, 4);
    for (int i = 0; i < 4; i++)
        assert_int_equal(topo[p.gpu[i]], 1);
    /* Five GPUs exist on no single node any more. */
    struct flexpu_noplace why;
    struct flexpu_pod_req five = req(1000, 5, 1000);
    assert_int_equal(flexpu_engine_place(e, &five, NULL, &p, NULL, &why), FLEXPU_ENOFIT);
    assert_non_null(strstr(why.text, "0/2 nodes available"));
    check(e);
    flexpu_engine_free(e);
}

static void test_multi_gpu_spans_islands_when_needed(void **state)
{
    (void)state;
    struct flexpu_engine *e = engine("flexpu");
    static const int topo[4] = {0, 0, 1, 1};
    add_node(e, "a", 96000, 393216, 4, "A100", 0, topo);
    struct flexpu_placement p = place_ok(e, req(1000, 3, 1000), NULL, NULL);
    assert_int_equal(p.ngpu, 3);
    int seen[4] = {0};
    for (int i = 0; i < 3; i++)
        seen[p.gpu[i]]++;
    for (int g = 0; g < 4; g++)
        assert_true(seen[g] <= 1);
    flexpu_engine_free(e);
}

/* ---- policies with known answers -------------------------------------- */

static void test_bestfit_prefers_fuller_node(void **state)
{
    (void)state;
    struct flexpu_engine *e = engine("bestfit");
    int a = add_node(e, "a", 64000, 262144, 8, "G2", 0, NULL);
    int b = add_node(e, "b", 64000, 262144, 8, "G2", 0, NULL);
    struct flexpu_placement p = {.node = b, .ngpu = 4, .gpu = {0, 1, 2, 3},
                                 .milli = {1000, 1000, 1000, 1000}};
    struct flexpu_pod_req four = req(4000, 4, 1000);
    assert_int_equal(flexpu_engine_assign(e, &four, &p, NULL, NULL), 0);
    struct flexpu_placement q = place_ok(e, req(1000, 1, 1000), NULL, NULL);
    assert_int_equal(q.node, b);
    (void)a;
    /* A share goes on the GPU with the least room that fits. */
    struct flexpu_pod_req half = req(100, 1, 500);
    q = place_ok(e, half, NULL, NULL);
    int gpu_half = q.gpu[0];
    q = place_ok(e, req(100, 1, 400), NULL, NULL);
    assert_int_equal(q.gpu[0], gpu_half);
    assert_int_equal(flexpu_engine_gpu_free_milli(e, q.node, gpu_half), 100);
    flexpu_engine_free(e);
}

static void test_packing_prefers_shared_gpu(void **state)
{
    (void)state;
    struct flexpu_engine *e = engine("packing");
    add_node(e, "empty", 64000, 262144, 2, "T4", 0, NULL);
    int used = add_node(e, "used", 64000, 262144, 4, "T4", 0, NULL);
    struct flexpu_placement p = {.node = used, .ngpu = 1, .gpu = {2}, .milli = {300}};
    struct flexpu_pod_req r = req(100, 1, 300);
    assert_int_equal(flexpu_engine_assign(e, &r, &p, NULL, NULL), 0);
    struct flexpu_placement q = place_ok(e, req(100, 1, 300), NULL, NULL);
    assert_int_equal(q.node, used);
    assert_int_equal(q.gpu[0], 2);
    /* A whole GPU goes to the used node before the empty one. */
    q = place_ok(e, req(100, 1, 1000), NULL, NULL);
    assert_int_equal(q.node, used);
    flexpu_engine_free(e);
}

static void test_whole_rounds_up(void **state)
{
    (void)state;
    struct flexpu_engine *e = engine("whole");
    add_node(e, "a", 64000, 262144, 2, "T4", 0, NULL);
    place_ok(e, req(100, 1, 300), NULL, NULL);
    place_ok(e, req(100, 1, 300), NULL, NULL);
    struct flexpu_stats s;
    flexpu_engine_stats(e, &s);
    assert_int_equal(s.gpu_milli_used, 2000);
    assert_int_equal(s.gpus_shared, 0);
    struct flexpu_placement p;
    struct flexpu_pod_req third = req(100, 1, 300);
    assert_int_equal(flexpu_engine_place(e, &third, NULL, &p, NULL, NULL), FLEXPU_ENOFIT);
    flexpu_engine_free(e);
    /* The same three shares fit on one GPU... with slicing. */
    e = engine("flexpu");
    add_node(e, "a", 64000, 262144, 2, "T4", 0, NULL);
    for (int i = 0; i < 3; i++)
        place_ok(e, req(100, 1, 300), NULL, NULL);
    flexpu_engine_stats(e, &s);
    assert_int_equal(s.gpu_milli_used, 900);
    flexpu_engine_free(e);
}

/* The per-class cache of costs changes nothing: under churn, every decision
 * made with the cache equals the one made right after the cache was
 * invalidated (setting the policy again does that), same random draws. */
static void test_cost_cache_changes_no_decision(void **state)
{
    (void)state;
    static const char *const pols[] = {"fgd", "flexpu"};
    for (int k = 0; k < 2; k++) {
        struct flexpu_engine *e = engine(pols[k]);
        for (int i = 0; i < 16; i++) {
            char name[16];
            snprintf(name, sizeof(name), "n%d", i);
            add_node(e, name, 32000, 131072, 1 + i % 8, i % 3 ? "T4" : "V100", 0, NULL);
        }
        struct flexpu_pod_req shapes[3] = {req(1000, 1, 500), req(2000, 1, 1000),
                                           req(500, 2, 1000)};
        double w[3] = {3, 2, 1};
        assert_int_equal(flexpu_engine_set_workload(e, shapes, w, 3, NULL), 0);
        struct flexpu_rng rng;
        flexpu_rng_seed(&rng, 7);
        int64_t live[256];
        int nlive = 0, compared = 0;
        for (int step = 0; step < 1500; step++) {
            if (nlive > 0 && (flexpu_rng_below(&rng, 3) == 0 || nlive == 256)) {
                int j = (int)flexpu_rng_below(&rng, (uint64_t)nlive);
                assert_int_equal(flexpu_engine_release(e, live[j], NULL), 0);
                live[j] = live[--nlive];
                continue;
            }
            int ngpu = (int)flexpu_rng_below(&rng, 3);
            struct flexpu_pod_req r =
                req(500 * (int64_t)flexpu_rng_below(&rng, 4), ngpu,
                    ngpu == 1 ? 250 * (1 + (int)flexpu_rng_below(&rng, 4)) : 1000);
            struct flexpu_rng r1 = rng, r2 = rng;
            struct flexpu_placement cached, fresh;
            int rc1 = flexpu_engine_decide(e, &r, &r1, &cached, NULL);
            assert_int_equal(flexpu_engine_set_policy(e, pols[k], NULL), 0);
            int rc2 = flexpu_engine_decide(e, &r, &r2, &fresh, NULL);
            assert_int_equal(rc1, rc2);
            if (rc1 == 0) {
                assert_int_equal(cached.node, fresh.node);
                assert_int_equal(cached.ngpu, fresh.ngpu);
                for (int g = 0; g < cached.ngpu; g++) {
                    assert_int_equal(cached.gpu[g], fresh.gpu[g]);
                    assert_int_equal(cached.milli[g], fresh.milli[g]);
                }
                assert_int_equal(flexpu_engine_assign(e, &r, &cached, &live[nlive], NULL), 0);
                nlive++;
                compared++;
            }
            /* Decide once more without invalidating, so the next round
             * meets a warm cache. */
            struct flexpu_rng r3 = r2;
            struct flexpu_placement again;
            flexpu_engine_decide(e, &r, &r3, &again, NULL);
            rng = r2;
        }
        assert_true(compared > 100);
        check(e);
        flexpu_engine_free(e);
    }
}

/* The FGD example: with a workload of 500 shares and whole GPUs, a 500
 * share should fill the half-used GPU of node a rather than open a fresh
 * GPU, which would strand 500 milli that a whole-GPU pod cannot use. */
static void test_fgd_and_flexpu_fill_the_fragment(void **state)
{
    (void)state;
    static const char *const pols[] = {"fgd", "flexpu"};
    for (int k = 0; k < 2; k++) {
        struct flexpu_engine *e = engine(pols[k]);
        int a = add_node(e, "a", 64000, 262144, 2, "T4", 0, NULL);
        add_node(e, "b", 64000, 262144, 2, "T4", 0, NULL);
        struct flexpu_pod_req shapes[2] = {req(100, 1, 500), req(100, 1, 1000)};
        double w[2] = {1, 1};
        assert_int_equal(flexpu_engine_set_workload(e, shapes, w, 2, NULL), 0);
        struct flexpu_stats s;
        flexpu_engine_stats(e, &s);
        assert_true(s.frag_milli == 0.0);
        struct flexpu_placement p = {.node = a, .ngpu = 1, .gpu = {1}, .milli = {500}};
        assert_int_equal(flexpu_engine_assign(e, &shapes[0], &p, NULL, NULL), 0);
        /* 500 free on GPU 1 is a fragment for the whole-GPU shape only. */
        flexpu_engine_stats(e, &s);
        if (s.frag_milli < 249.999 || s.frag_milli > 250.001)
            fail_msg("%s: frag %g, want 250", pols[k], s.frag_milli);
        struct flexpu_rng rng;
        flexpu_rng_seed(&rng, 5);
        struct flexpu_placement q = place_ok(e, shapes[0], &rng, NULL);
        assert_int_equal(q.node, a);
        assert_int_equal(q.gpu[0], 1);
        flexpu_engine_stats(e, &s);
        assert_true(s.frag_milli < 1e-9);
        flexpu_engine_free(e);
    }
}

/* A CPU-only pod that leaves every shape its CPU still strands GPUs when
 * the node's CPU can no longer feed all of its idle GPUs: FGD sees no
 * difference between the nodes, flexpu keeps the CPU where the GPUs are. */
static void test_flexpu_keeps_cpu_for_idle_gpus(void **state)
{
    (void)state;
    struct flexpu_engine *e = engine("flexpu");
    add_node(e, "tight", 16000, 262144, 4, "T4", 0, NULL); /* 4 cores per GPU */
    int roomy = add_node(e, "roomy", 64000, 262144, 4, "T4", 0, NULL);
    struct flexpu_pod_req shapes[1] = {req(4000, 1, 1000)};
    double w[1] = {1};
    assert_int_equal(flexpu_engine_set_workload(e, shapes, w, 1, NULL), 0);
    for (uint64_t seed = 1; seed <= 20; seed++) {
        struct flexpu_rng rng;
        flexpu_rng_seed(&rng, seed);
        struct flexpu_placement p;
        struct flexpu_noplace why;
        assert_int_equal(flexpu_engine_decide(e, &(struct flexpu_pod_req){.cpu_milli = 4000,
                                                                           .mem_mib = 1024},
                                              &rng, &p, &why),
                         0);
        assert_int_equal(p.node, roomy);
    }
    flexpu_engine_free(e);
}

/* Runs, for seeds 1..8, a 2-GPU T4 node and an 8-GPU G2 node under a
 * workload of w[0] any-GPU pods, w[1] T4-only pods and w[2] 8-GPU pods, all
 * of a GPU a piece: `nany` any-GPU pods must go to the G2 node, and the two
 * T4-only pods that follow to the T4 node. */
static void scarce_t4_case(const double w[3], int nany)
{
    for (uint64_t seed = 1; seed <= 8; seed++) {
        struct flexpu_engine *e = engine("flexpu");
        int t4 = add_node(e, "t4", 64000, 262144, 2, "T4", 0, NULL);
        int g2 = add_node(e, "g2", 64000, 262144, 8, "G2", 0, NULL);
        struct flexpu_pod_req any = req(1000, 1, 1000), only_t4 = req(1000, 1, 1000);
        assert_int_equal(flexpu_engine_models(e, "T4", &only_t4.model_mask, NULL), 0);
        struct flexpu_pod_req shapes[3] = {any, only_t4, req(8000, 8, 1000)};
        assert_int_equal(flexpu_engine_set_workload(e, shapes, w, 3, NULL), 0);
        struct flexpu_rng rng;
        flexpu_rng_seed(&rng, seed);
        for (int i = 0; i < nany; i++)
            assert_int_equal(place_ok(e, any, &rng, NULL).node, g2);
        for (int i = 0; i < 2; i++)
            assert_int_equal(place_ok(e, only_t4, &rng, NULL).node, t4);
        check(e);
        flexpu_engine_free(e);
    }
}

/* A scarce model kept for the pods that can only use it: two T4 GPUs, eight
 * G2 GPUs, and a workload of 100 unconstrained single-GPU pods, 20 that
 * only a T4 can hold (a fifth as many, for a fifth of the GPUs) and one
 * 8-GPU pod. Unconstrained pods must go to the G2 node, so that both
 * T4-only pods that follow still fit. Before the shapes' demand was weighed
 * by the GPUs of their models (change 5), defending the empty 8-GPU node
 * made flexpu fill the small T4 node first (it can never hold 8 GPUs, the
 * G2 node can) and both T4-only pods failed. */
static void test_flexpu_protects_a_scarce_model(void **state)
{
    (void)state;
    scarce_t4_case((const double[3]){100, 20, 1}, 2);
}

/* Change 10: a pod that could run anywhere does not take the room of a
 * model its own pods will want. The same nodes; the workload: 100 any-GPU
 * pods, 40 T4-only pods and 10 8-GPU pods. Opening the G2 node costs the
 * 8-GPU shape its only node, and with change 5's pressure alone that
 * outweighed the T4-only shape, so the any-GPU pod took a T4 and one of the
 * two T4-only pods that follow failed. The T4-only pods bring 40/220 of the
 * GPU demand, so of the 10 free GPUs they will want 1.8 of T4's 2: its room
 * is priced at 14/16 per milli. */
static void test_flexpu_prices_the_room_of_a_wanted_model(void **state)
{
    (void)state;
    scarce_t4_case((const double[3]){100, 40, 10}, 1);
}

/* Change 6: a CPU-only pod is priced by the compute it strands shape by
 * shape. GPU shapes of 8 and 16 cores per GPU (mean 12); a G2-like node of
 * 8 GPUs and 100 cores (12.5 per GPU) and a T4-like node of 2 GPUs and 104
 * cores. At the mean ratio a 4-core CPU-only pod strands nothing on either
 * (96 cores still feed 8 GPUs at 12), so the nodes tie and one is drawn;
 * for the 16-core shape the G2 node is already short and the 4 cores cost
 * it 250 more milli of idle compute, so the pod goes to the T4 node. */
static void test_flexpu_cpu_pod_spares_tight_node(void **state)
{
    (void)state;
    for (uint64_t seed = 1; seed <= 8; seed++) {
        struct flexpu_engine *e = engine("flexpu");
        add_node(e, "g2", 100000, 262144, 8, "G2", 0, NULL);
        int t4 = add_node(e, "t4", 104000, 262144, 2, "T4", 0, NULL);
        struct flexpu_pod_req shapes[3] = {req(8000, 1, 1000), req(16000, 1, 1000),
                                           req(4000, 0, 0)};
        double w[3] = {1, 1, 1};
        assert_int_equal(flexpu_engine_set_workload(e, shapes, w, 3, NULL), 0);
        struct flexpu_rng rng;
        flexpu_rng_seed(&rng, seed);
        assert_int_equal(place_ok(e, req(4000, 0, 0), &rng, NULL).node, t4);
        flexpu_engine_free(e);
    }
}

/* Change 7: where multi-GPU pods bring much of the demand, a GPU pod opens
 * an empty node rather than strand a GPU on a partly used one. Two 8-GPU
 * nodes of 96 cores; the workload is ten 1-GPU pods of 10 cores and two
 * 8-GPU pods of 80 (10 cores per GPU; the 8-GPU shape is 17/32 of the
 * demand, so stranded compute weighs 17/32 x 8 = 4.25). One node
 * already runs six GPUs with 72 cores: 2 GPUs and 24 cores are left. A
 * 1-GPU pod of 24 cores there would leave a GPU with no core to feed it;
 * at weight 1 (before change 7) that cost less than opening the empty node
 * (3,719 milli of fragment for the 8-GPU shape), and the GPU stayed idle
 * for good: of the nine 1-GPU pods of 10 cores that follow, only eight
 * fit. Opening the empty node instead leaves room for all nine, and all 16
 * GPUs are used. */
static void test_flexpu_opens_a_node_rather_than_strand_a_gpu(void **state)
{
    (void)state;
    for (uint64_t seed = 1; seed <= 8; seed++) {
        struct flexpu_engine *e = engine("flexpu");
        int used = add_node(e, "used", 96000, 262144, 8, "G2", 0, NULL);
        int empty = add_node(e, "empty", 96000, 262144, 8, "G2", 0, NULL);
        struct flexpu_pod_req shapes[2] = {req(10000, 1, 1000), req(80000, 8, 1000)};
        assert_int_equal(flexpu_engine_set_workload(e, shapes, (double[]){10, 2}, 2, NULL), 0);
        if (fabs(e->wl.strand_weight - 17.0 / 32 * 8) > 1e-12)
            fail_msg("strand weight %g, want 4.25", e->wl.strand_weight);
        for (int g = 0; g < 6; g++) {
            struct flexpu_placement p = {.node = used, .ngpu = 1, .gpu = {g}, .milli = {1000}};
            struct flexpu_pod_req r = req(12000, 1, 1000);
            assert_int_equal(flexpu_engine_assign(e, &r, &p, NULL, NULL), 0);
        }
        struct flexpu_rng rng;
        flexpu_rng_seed(&rng, seed);
        assert_int_equal(place_ok(e, req(24000, 1, 1000), &rng, NULL).node, empty);
        for (int k = 0; k < 9; k++)
            place_ok(e, req(10000, 1, 1000), &rng, NULL);
        struct flexpu_stats st;
        flexpu_engine_stats(e, &st);
        assert_int_equal(st.gpu_milli_used, 16 * 1000);
        flexpu_engine_free(e);
    }
    /* Without multi-GPU shapes, or with few (M x G <= 1: here one 8-GPU pod
     * for 60 1-GPU pods, M = 8.5 / 98.5), the weight is change 3's,
     * exactly 1 (nodes of 96 cores for 8 GPUs). */
    struct flexpu_engine *e = engine("flexpu");
    add_node(e, "n", 96000, 262144, 8, "G2", 0, NULL);
    struct flexpu_pod_req one[2] = {req(10000, 1, 1000), req(4000, 1, 500)};
    assert_int_equal(flexpu_engine_set_workload(e, one, (double[]){3, 1}, 2, NULL), 0);
    assert_true(e->wl.strand_weight == 1.0);
    struct flexpu_pod_req few[2] = {req(10000, 1, 1000), req(80000, 8, 1000)};
    assert_int_equal(flexpu_engine_set_workload(e, few, (double[]){60, 1}, 2, NULL), 0);
    assert_true(e->wl.strand_weight == 1.0);
    /* Nor where the workload asks more CPU per GPU than the cluster has (13
     * cores per GPU on nodes of 12): stranding cannot be avoided there,
     * only moved. The same shapes at 11 cores per GPU get 17/32 x 8. */
    struct flexpu_pod_req heavy[2] = {req(13000, 1, 1000), req(104000, 8, 1000)};
    assert_int_equal(flexpu_engine_set_workload(e, heavy, (double[]){10, 2}, 2, NULL), 0);
    assert_true(e->wl.strand_weight == 1.0);
    struct flexpu_pod_req spare[2] = {req(11000, 1, 1000), req(88000, 8, 1000)};
    assert_int_equal(flexpu_engine_set_workload(e, spare, (double[]){10, 2}, 2, NULL), 0);
    if (fabs(e->wl.strand_weight - 17.0 / 32 * 8) > 1e-12)
        fail_msg("strand weight %g with CPU to spare, want 4.25", e->wl.strand_weight);
    flexpu_engine_free(e);
}

/* A request of req()'s with its memory, MiB. */
static struct flexpu_pod_req req_mem(int64_t cpu, int64_t mem, int ngpu, int milli)
{
    struct flexpu_pod_req r = req(cpu, ngpu, milli);
    r.mem_mib = mem;
    return r;
}

/* Change 9: where stranding weighs more than a fragment (change 7), the
 * compute a node's memory cannot feed is stranded as that its CPU cannot.
 * Two G2-like nodes (96 cores, 384 GiB, 8 GPUs); the workload asks 10 cores
 * and 40 GiB per GPU (1-GPU pods and 8-GPU pods, strand weight 4.25). One
 * node has 2 GPUs, 24 cores and 84 GiB left. A 1-GPU pod of 10 cores and
 * 84 GiB there leaves its last GPU with cores but no memory: 1,000 milli
 * stranded, 4,250 at the weight, against 3,719 for opening the empty node
 * (the 8-GPU shape's fragment), so it opens the empty node. Counting CPU
 * alone (before change 9) the partly used node cost -62 milli (its last GPU
 * booked only for the 1-GPU shape, which no longer fits there) and won; of
 * the nine 1-GPU pods of 10 cores and 40 GiB that follow, only eight then
 * fit, where all nine do beside the opened node. */
static void test_flexpu_opens_a_node_rather_than_strand_a_gpu_by_memory(void **state)
{
    (void)state;
    const int64_t gib = 1024;
    for (uint64_t seed = 1; seed <= 8; seed++) {
        struct flexpu_engine *e = engine("flexpu");
        int used = add_node(e, "used", 96000, 384 * gib, 8, "G2", 0, NULL);
        int empty = add_node(e, "empty", 96000, 384 * gib, 8, "G2", 0, NULL);
        struct flexpu_pod_req shapes[2] = {req_mem(10000, 40 * gib, 1, 1000),
                                           req_mem(80000, 320 * gib, 8, 1000)};
        assert_int_equal(flexpu_engine_set_workload(e, shapes, (double[]){10, 2}, 2, NULL), 0);
        if (fabs(e->wl.strand_weight - 17.0 / 32 * 8) > 1e-12)
            fail_msg("strand weight %g, want 4.25", e->wl.strand_weight);
        if (fabs(e->wl.mem_per_gpu_milli - 40.0 * gib / 1000) > 1e-9)
            fail_msg("memory per GPU milli %g, want 40.96", e->wl.mem_per_gpu_milli);
        for (int g = 0; g < 6; g++) {
            struct flexpu_placement p = {.node = used, .ngpu = 1, .gpu = {g}, .milli = {1000}};
            struct flexpu_pod_req r = req_mem(12000, 50 * gib, 1, 1000);
            assert_int_equal(flexpu_engine_assign(e, &r, &p, NULL, NULL), 0);
        }
        struct flexpu_rng rng;
        flexpu_rng_seed(&rng, seed);
        assert_int_equal(place_ok(e, req_mem(10000, 84 * gib, 1, 1000), &rng, NULL).node, empty);
        for (int k = 0; k < 9; k++)
            place_ok(e, req_mem(10000, 40 * gib, 1, 1000), &rng, NULL);
        struct flexpu_stats st;
        flexpu_engine_stats(e, &st);
        assert_int_equal(st.gpu_milli_used, 16 * 1000);
        flexpu_engine_free(e);
    }
    /* Where stranding weighs 1 (no multi-GPU shapes) memory is left out, and
     * every decision is change 3's. */
    struct flexpu_engine *e = engine("flexpu");
    add_node(e, "n", 96000, 384 * gib, 8, "G2", 0, NULL);
    struct flexpu_pod_req one[1] = {req_mem(10000, 40 * gib, 1, 1000)};
    assert_int_equal(flexpu_engine_set_workload(e, one, (double[]){1}, 1, NULL), 0);
    assert_true(e->wl.strand_weight == 1.0);
    assert_true(e->wl.mem_per_gpu_milli == 0);
    /* Nor does change 7 apply where the workload asks more memory per GPU
     * than the nodes hold (50 GiB per GPU of nodes with 48): the GPUs cannot
     * all be fed, whatever the placement. */
    struct flexpu_pod_req heavy[2] = {req_mem(10000, 50 * gib, 1, 1000),
                                      req_mem(80000, 400 * gib, 8, 1000)};
    assert_int_equal(flexpu_engine_set_workload(e, heavy, (double[]){10, 2}, 2, NULL), 0);
    assert_true(e->wl.strand_weight == 1.0);
    assert_true(e->wl.mem_per_gpu_milli == 0);
    flexpu_engine_free(e);
}

/* Change 11: a shape that only some nodes' CPU and memory can hold weighs
 * its demand per GPU of those nodes. One G3-like node (128 cores, 8 GPUs)
 * and three G2-like (96 cores); the workload: 1-GPU pods of 12 and 24
 * cores, 8-GPU pods of 64 cores and of 120 cores, which only the G3 node
 * holds (8 of the 32 GPUs on nodes of eight: its demand weight x4, 68 of
 * 177). A 1-GPU pod of 20 cores strands compute on a G2 node (76 cores left
 * for 7 GPUs at the workload's 12 cores per GPU) and none on the G3 node;
 * with the 120-core shape weighed by its demand alone (17 of 126) the G3
 * node was the cheaper to open, and the 120-core pod that followed found no
 * node. */
static void test_flexpu_keeps_the_nodes_only_some_pods_fit(void **state)
{
    (void)state;
    const int64_t gib = 1024;
    struct flexpu_pod_req shapes[4] = {req_mem(12000, 40 * gib, 1, 1000),
                                       req_mem(24000, 40 * gib, 1, 1000),
                                       req_mem(64000, 256 * gib, 8, 1000),
                                       req_mem(120000, 640 * gib, 8, 1000)};
    for (uint64_t seed = 1; seed <= 8; seed++) {
        struct flexpu_engine *e = engine("flexpu");
        int g3 = add_node(e, "g3", 128000, 768 * gib, 8, "G3", 0, NULL);
        for (int i = 0; i < 3; i++) {
            char name[8];
            snprintf(name, sizeof(name), "g2-%d", i);
            add_node(e, name, 96000, 384 * gib, 8, "G2", 0, NULL);
        }
        assert_int_equal(flexpu_engine_set_workload(e, shapes, (double[]){40, 10, 4, 2}, 4, NULL),
                         0);
        for (int i = 0; i < e->wl.nshapes; i++) {
            const struct fx_shape *sh = &e->wl.shapes[i];
            double want = sh->req.cpu_milli == 120000 ? 68.0 / 177
                          : sh->req.num_gpu == 8      ? 34.0 / 177
                                                      : 1.5 * (sh->req.cpu_milli == 12000 ? 40 : 10) / 177;
            if (fabs(sh->demand_weight - want) > 1e-12)
                fail_msg("shape of %lld cores: demand weight %g, want %g",
                         (long long)sh->req.cpu_milli, sh->demand_weight, want);
        }
        struct flexpu_rng rng;
        flexpu_rng_seed(&rng, seed);
        assert_int_not_equal(place_ok(e, req_mem(20000, 40 * gib, 1, 1000), &rng, NULL).node, g3);
        assert_int_equal(place_ok(e, req_mem(120000, 640 * gib, 8, 1000), &rng, NULL).node, g3);
        flexpu_engine_free(e);
    }
    /* The shapes that the same nodes hold weigh together at most the whole
     * workload's demand, as change 5's sets do: ten times as many 120-core
     * pods weigh 4 x 170 = 680 of a workload of 279, cut to 279 of 388. */
    struct flexpu_engine *e = engine("flexpu");
    add_node(e, "g3", 128000, 768 * gib, 8, "G3", 0, NULL);
    for (int i = 0; i < 3; i++)
        add_node(e, i == 0 ? "g2-0" : i == 1 ? "g2-1" : "g2-2", 96000, 384 * gib, 8, "G2", 0, NULL);
    assert_int_equal(flexpu_engine_set_workload(e, shapes, (double[]){40, 10, 4, 20}, 4, NULL), 0);
    for (int i = 0; i < e->wl.nshapes; i++)
        if (e->wl.shapes[i].req.cpu_milli == 120000 &&
            fabs(e->wl.shapes[i].demand_weight - 279.0 / 388) > 1e-12)
            fail_msg("capped demand weight %g, want 279/388", e->wl.shapes[i].demand_weight);
    flexpu_engine_free(e);
}

/* Change 8: compute stranded by a node's CPU weighs only for the shapes
 * that can use the node's GPUs. Two nodes of 2 GPUs: V100 with 12 cores
 * and G3 with 80; the workload is one unconstrained 1-GPU shape and one
 * G3-only, of 8 cores each (8 CPU milli per GPU milli). An unconstrained
 * pod of 12 cores on the V100 node leaves its other GPU with no core,
 * stranding 500 more milli; but the G3-only shape, which cannot use a V100
 * anyway, already books all the node's idle compute as fragment, so that
 * stranding costs only the unconstrained half of the GPU demand: 250 milli
 * (cost -83 milli, score 52), against 500 (cost +167, score 45) before,
 * which lost to the G3 node (score 50). On the V100 node it leaves both G3
 * GPUs to the two G3-only pods that follow; on the G3 node one of them
 * failed. */
static void test_flexpu_strands_only_for_shapes_that_can_use_the_node(void **state)
{
    (void)state;
    for (uint64_t seed = 1; seed <= 5; seed++) {
        struct flexpu_engine *e = engine("flexpu");
        int v100 = add_node(e, "v100", 12000, 262144, 2, "V100", 0, NULL);
        int g3 = add_node(e, "g3", 80000, 262144, 2, "G3", 0, NULL);
        struct flexpu_pod_req any = req(8000, 1, 1000), only_g3 = req(8000, 1, 1000);
        assert_int_equal(flexpu_engine_models(e, "G3", &only_g3.model_mask, NULL), 0);
        uint64_t v100_models = 0;
        assert_int_equal(flexpu_engine_models(e, "V100", &v100_models, NULL), 0);
        struct flexpu_pod_req shapes[2] = {any, only_g3};
        assert_int_equal(flexpu_engine_set_workload(e, shapes, (double[]){1, 1}, 2, NULL), 0);
        assert_true(e->wl.strand_weight == 1.0);
        if (fabs(fx_workload_strand_share(&e->wl, v100_models) - 0.5) > 1e-12)
            fail_msg("V100 strand share %g, want 1/2",
                     fx_workload_strand_share(&e->wl, v100_models));
        assert_true(fx_workload_strand_share(&e->wl, only_g3.model_mask) == 1.0);
        struct flexpu_rng rng;
        flexpu_rng_seed(&rng, seed);
        assert_int_equal(place_ok(e, req(12000, 1, 1000), &rng, NULL).node, v100);
        for (int i = 0; i < 2; i++)
            assert_int_equal(place_ok(e, only_g3, &rng, NULL).node, g3);
        flexpu_engine_free(e);
    }
    /* Without model constraints every node's share is exactly 1. */
    struct flexpu_engine *e = engine("flexpu");
    add_node(e, "v100", 12000, 262144, 2, "V100", 0, NULL);
    uint64_t v100_models = 0;
    assert_int_equal(flexpu_engine_models(e, "V100", &v100_models, NULL), 0);
    struct flexpu_pod_req plain[2] = {req(8000, 1, 1000), req(4000, 1, 500)};
    assert_int_equal(flexpu_engine_set_workload(e, plain, (double[]){1, 3}, 2, NULL), 0);
    assert_true(fx_workload_strand_share(&e->wl, v100_models) == 1.0);
    flexpu_engine_free(e);
}

/* The weights behind change 5: a shape that names models weighs its demand
 * (GPUs + 1/2) times the cluster's GPUs over its models' GPUs; the shapes of
 * one set of models weigh together at most the whole workload's demand; and
 * a workload without model constraints keeps its weights bit for bit. */
static void test_flexpu_model_pressure_weights(void **state)
{
    (void)state;
    struct flexpu_engine *e = engine("flexpu");
    add_node(e, "t4", 64000, 262144, 2, "T4", 0, NULL);
    add_node(e, "g2", 64000, 262144, 8, "G2", 0, NULL);
    struct flexpu_pod_req any = req(1000, 1, 1000), t4 = req(1000, 1, 500),
                          t4big = req(2000, 1, 1000), g2 = req(1000, 1, 1000);
    assert_int_equal(flexpu_engine_models(e, "T4", &t4.model_mask, NULL), 0);
    t4big.model_mask = t4.model_mask;
    assert_int_equal(flexpu_engine_models(e, "G2", &g2.model_mask, NULL), 0);
    const struct fx_workload *wl = &e->wl;
    /* Unconstrained: demand weights exactly as without change 5. */
    struct flexpu_pod_req plain[2] = {any, req(1000, 8, 1000)};
    assert_int_equal(flexpu_engine_set_workload(e, plain, (double[]){3, 1}, 2, NULL), 0);
    assert_true(wl->shapes[0].demand_weight == 3 * 1.5 / (3 * 1.5 + 8.5));
    assert_true(wl->shapes[1].demand_weight == 8.5 / (3 * 1.5 + 8.5));
    /* T4 (2 of 10 GPUs): x5; G2 (8 of 10): x1.25. Demand before pressure:
     * any 10 x 1.5, t4 2 x 1.0, g2 4 x 1.5: 23 in all. */
    struct flexpu_pod_req mixed[3] = {any, t4, g2};
    assert_int_equal(flexpu_engine_set_workload(e, mixed, (double[]){10, 2, 4}, 3, NULL), 0);
    double sum = 15 + 2 * 5 + 6 * 1.25;
    for (int i = 0; i < 3; i++) {
        const struct fx_shape *sh = &wl->shapes[i];
        double want = sh->req.model_mask == t4.model_mask   ? 10 / sum
                      : sh->req.model_mask == g2.model_mask ? 7.5 / sum
                                                            : 15 / sum;
        if (fabs(sh->demand_weight - want) > 1e-12)
            fail_msg("shape %d: weight %g, want %g", i, sh->demand_weight, want);
    }
    /* T4-only pods asking more than the whole workload's demand per GPU:
     * both T4 shapes together (2 x 1.0 + 4 x 1.5 = 8, x5 = 40) are capped at
     * the demand before pressure (15 + 8 = 23), in proportion. */
    struct flexpu_pod_req heavy[3] = {any, t4, t4big};
    assert_int_equal(flexpu_engine_set_workload(e, heavy, (double[]){10, 2, 4}, 3, NULL), 0);
    double t4sum = 0;
    for (int i = 0; i < 3; i++)
        if (wl->shapes[i].req.model_mask)
            t4sum += wl->shapes[i].demand_weight;
    if (fabs(t4sum - 23.0 / 38.0) > 1e-12)
        fail_msg("T4 set weighs %g, want 23/38", t4sum);
    for (int i = 0; i < 3; i++)
        if (wl->shapes[i].req.gpu_milli == 500 &&
            fabs(wl->shapes[i].demand_weight - 23.0 / 38.0 * 2 / 8) > 1e-12)
            fail_msg("T4 share shape weighs %g, want a quarter of its set",
                     wl->shapes[i].demand_weight);
    flexpu_engine_free(e);
}

static void test_dotprod_and_random_stay_feasible(void **state)
{
    (void)state;
    static const char *const pols[] = {"dotprod", "random"};
    for (int k = 0; k < 2; k++) {
        struct flexpu_engine *e = engine(pols[k]);
        add_node(e, "small", 4000, 8192, 1, "T4", 0, NULL);
        int big = add_node(e, "big", 64000, 262144, 4, "T4", 0, NULL);
        struct flexpu_rng rng;
        flexpu_rng_seed(&rng, 11);
        for (int i = 0; i < 10; i++) {
            /* 6 cores only fit the big node */
            struct flexpu_placement p = place_ok(e, req(6000, 1, 100), &rng, NULL);
            assert_int_equal(p.node, big);
        }
        flexpu_engine_free(e);
    }
}

static void test_random_spreads_over_identical_nodes(void **state)
{
    (void)state;
    struct flexpu_engine *e = engine("random");
    for (int i = 0; i < 4; i++) {
        char name[8];
        snprintf(name, sizeof(name), "n%d", i);
        add_node(e, name, 64000, 262144, 8, "T4", 0, NULL);
    }
    struct flexpu_rng rng;
    flexpu_rng_seed(&rng, 3);
    int hits[4] = {0};
    for (int i = 0; i < 24; i++)
        hits[place_ok(e, req(100, 1, 100), &rng, NULL).node]++;
    for (int i = 0; i < 4; i++)
        assert_true(hits[i] > 0);
    flexpu_engine_free(e);
}

/* ---- reasons and bad input -------------------------------------------- */

static void test_reasons_name_the_constraint(void **state)
{
    (void)state;
    struct flexpu_engine *e = engine("flexpu");
    add_node(e, "a", 8000, 16384, 2, "A100", 0, NULL);
    add_node(e, "b", 2000, 16384, 4, "T4", 0, NULL);
    struct flexpu_pod_req r = req(4000, 2, 1000);
    assert_int_equal(flexpu_engine_models(e, "T4", &r.model_mask, NULL), 0);
    struct flexpu_placement p;
    struct flexpu_noplace why;
    assert_int_equal(flexpu_engine_decide(e, &r, NULL, &p, &why), FLEXPU_ENOFIT);
    assert_int_equal(why.rejected[FLEXPU_REJECT_MODEL], 1);
    assert_int_equal(why.rejected[FLEXPU_REJECT_CPU], 1);
    assert_non_null(strstr(why.text, "2 T4 GPU(s)"));
    assert_non_null(strstr(why.text, "1 gpu model constraint"));
    assert_non_null(strstr(why.text, "1 insufficient cpu"));
    /* A model no node has. */
    assert_int_equal(flexpu_engine_models(e, "H100|B200", &r.model_mask, NULL), 0);
    r.cpu_milli = 100;
    assert_int_equal(flexpu_engine_decide(e, &r, NULL, &p, &why), FLEXPU_ENOFIT);
    assert_int_equal(why.rejected[FLEXPU_REJECT_MODEL], 2);
    assert_non_null(strstr(why.text, "H100|B200"));
    /* The allowed model fits. */
    assert_int_equal(flexpu_engine_models(e, "A100, T4", &r.model_mask, NULL), 0);
    assert_int_equal(flexpu_engine_decide(e, &r, NULL, &p, &why), 0);
    flexpu_engine_free(e);
}

static void test_bad_requests_and_nodes(void **state)
{
    (void)state;
    struct flexpu_engine *e = engine("flexpu");
    add_node(e, "a", 8000, 16384, 2, "A100", 0, NULL);
    struct flexpu_error err;
    struct flexpu_pod_req r = req(100, 1, 1200);
    assert_int_equal(flexpu_req_validate(&r, &err), FLEXPU_EINVAL);
    assert_non_null(strstr(err.msg, "gpu_milli"));
    assert_non_null(strstr(err.msg, "1200"));
    struct flexpu_placement p;
    struct flexpu_noplace why;
    assert_int_equal(flexpu_engine_decide(e, &r, NULL, &p, &why), FLEXPU_EINVAL);
    assert_non_null(strstr(why.text, "1200"));
    r = req(-5, 0, 0);
    assert_int_equal(flexpu_req_validate(&r, &err), FLEXPU_EINVAL);
    assert_non_null(strstr(err.msg, "cpu_milli"));
    r = req(1, 17, 1000);
    assert_int_equal(flexpu_req_validate(&r, &err), FLEXPU_EINVAL);
    r = req(1, 0, 0);
    r.gpu_milli = 10;
    assert_int_equal(flexpu_req_validate(&r, &err), FLEXPU_EINVAL);
    /* nodes */
    struct flexpu_node_info n;
    memset(&n, 0, sizeof(n));
    n.name = "a";
    assert_int_equal(flexpu_engine_add_node(e, &n, NULL, &err), FLEXPU_EEXIST);
    n.name = "c";
    n.ngpu = 17;
    assert_int_equal(flexpu_engine_add_node(e, &n, NULL, &err), FLEXPU_EINVAL);
    assert_non_null(strstr(err.msg, "17"));
    n.ngpu = 1;
    n.gpus[0].model = "";
    assert_int_equal(flexpu_engine_add_node(e, &n, NULL, &err), FLEXPU_EINVAL);
    assert_non_null(strstr(err.msg, "model"));
    n.ngpu = 0;
    n.cpu_milli = -1;
    assert_int_equal(flexpu_engine_add_node(e, &n, NULL, &err), FLEXPU_EINVAL);
    assert_non_null(strstr(err.msg, "cpu_milli"));
    assert_int_equal(flexpu_engine_set_policy(e, "magic", &err), FLEXPU_EINVAL);
    assert_non_null(strstr(err.msg, "magic"));
    assert_non_null(strstr(err.msg, "fgd"));
    assert_string_equal(flexpu_engine_policy(e), "flexpu");
    double w = -1;
    struct flexpu_pod_req shape = req(1, 1, 100);
    assert_int_equal(flexpu_engine_set_workload(e, &shape, &w, 1, &err), FLEXPU_EINVAL);
    assert_int_equal(flexpu_engine_node_count(e), 1);
    check(e);
    flexpu_engine_free(e);
}

/* Every field of decide's output is defined on every return: the entries
 * past ngpu are "none" (GPU -1, share 0, memory 0), and a
 * request that fits nowhere or is malformed gets the whole placement
 * "none" (node -1, ngpu 0). The output is poisoned first, so a field
 * decide leaves alone reads back as the poison. */
static void assert_tail_none(const struct flexpu_placement *p, int from)
{
    for (int i = from; i < FLEXPU_MAX_GPUS; i++)
        if (p->gpu[i] != -1 || p->milli[i] != 0 || p->gpu_mem_mib[i] != 0)
            fail_msg("entry %d of %d: gpu %d milli %d gpu_mem_mib %lld, want -1, 0, 0", i,
                     p->ngpu, p->gpu[i], p->milli[i], (long long)p->gpu_mem_mib[i]);
}

static void assert_none(const struct flexpu_placement *p)
{
    assert_int_equal(p->node, -1);
    assert_int_equal(p->ngpu, 0);
    assert_tail_none(p, 0);
}

static void poison(struct flexpu_placement *p)
{
    memset(p, 0xa5, sizeof(*p));
}

static void test_decide_output_defined(void **state)
{
    (void)state;
    struct flexpu_rng rng;
    flexpu_rng_seed(&rng, 7);
    struct flexpu_pod_req shapes[] = {req(1000, 1, 300), req(1000, 2, 1000), req(1000, 0, 0),
                                      req(1000, 1, 1000)};
    shapes[0].gpu_mem_mib = 1024;
    for (int k = 0; k < flexpu_policy_count(); k++) {
        struct flexpu_engine *e = engine(flexpu_policy_name(k));
        add_node(e, "a", 8000, 16384, 4, "T4", 16384, NULL);
        add_node(e, "b", 8000, 16384, 4, "T4", 16384, NULL);
        struct flexpu_placement p;
        struct flexpu_noplace why;
        /* fits: twice each, the second decision from the cost cache */
        for (int round = 0; round < 2; round++)
            for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++) {
                poison(&p);
                assert_int_equal(flexpu_engine_decide(e, &shapes[i], &rng, &p, &why), 0);
                assert_true(p.node >= 0 && p.node < 2);
                assert_int_equal(p.ngpu, shapes[i].num_gpu);
                for (int g = 0; g < p.ngpu; g++)
                    assert_true(p.gpu[g] >= 0 && p.gpu[g] < 4);
                assert_tail_none(&p, p.ngpu);
                if (round == 0) { /* placed: the next decision meets another state */
                    int64_t id;
                    poison(&p);
                    assert_int_equal(flexpu_engine_place(e, &shapes[i], &rng, &p, &id, &why), 0);
                    assert_tail_none(&p, p.ngpu);
                }
            }
        /* fits nowhere */
        struct flexpu_pod_req big = req(1000, 5, 1000);
        poison(&p);
        assert_int_equal(flexpu_engine_decide(e, &big, &rng, &p, &why), FLEXPU_ENOFIT);
        assert_none(&p);
        poison(&p);
        assert_int_equal(flexpu_engine_place(e, &big, &rng, &p, NULL, &why), FLEXPU_ENOFIT);
        assert_none(&p);
        /* malformed */
        struct flexpu_pod_req bad = req(1000, 1, 1200);
        poison(&p);
        assert_int_equal(flexpu_engine_decide(e, &bad, &rng, &p, &why), FLEXPU_EINVAL);
        assert_none(&p);
        poison(&p);
        assert_int_equal(flexpu_engine_place(e, &bad, &rng, &p, NULL, &why), FLEXPU_EINVAL);
        assert_none(&p);
        check(e);
        flexpu_engine_free(e);
    }
    /* an empty engine: nothing to decide on */
    struct flexpu_engine *e = engine("flexpu");
    struct flexpu_placement p;
    poison(&p);
    struct flexpu_pod_req one = req(100, 1, 100);
    assert_int_equal(flexpu_engine_decide(e, &one, NULL, &p, NULL), FLEXPU_ENOFIT);
    assert_none(&p);
    flexpu_engine_free(e);
}

static void test_remove_node_releases(void **state)
{
    (void)state;
    struct flexpu_engine *e = engine("bestfit");
    int a = add_node(e, "a", 64000, 262144, 4, "T4", 0, NULL);
    add_node(e, "b", 64000, 262144, 4, "T4", 0, NULL);
    int on_a = 0;
    int64_t ids[8];
    for (int i = 0; i < 8; i++)
        on_a += place_ok(e, req(1000, 1, 300), NULL, &ids[i]).node == a;
    int released = -1;
    assert_int_equal(flexpu_engine_remove_node(e, a, &released, NULL), 0);
    assert_int_equal(released, on_a);
    check(e);
    struct flexpu_stats s;
    flexpu_engine_stats(e, &s);
    assert_int_equal(s.nodes, 1);
    assert_int_equal(s.gpus, 4);
    assert_int_equal(s.allocations, 8 - on_a);
    assert_int_equal(flexpu_engine_node_find(e, "a"), -1);
    assert_int_equal(flexpu_engine_remove_node(e, a, NULL, NULL), FLEXPU_ENOENT);
    /* New placements avoid the removed node. */
    struct flexpu_placement p = place_ok(e, req(1000, 1, 300), NULL, NULL);
    assert_int_not_equal(p.node, a);
    flexpu_engine_free(e);
}

/* An allocation reads back as assign took it; a released or unknown id
 * is FLEXPU_ENOENT and leaves the outputs alone. */
static void test_alloc_get(void **state)
{
    (void)state;
    struct flexpu_engine *e = engine("bestfit");
    add_node(e, "a", 64000, 262144, 4, "T4", 0, NULL);
    struct flexpu_pod_req r = req(1500, 2, 400);
    int64_t id = 0;
    struct flexpu_placement p = place_ok(e, r, NULL, &id);
    struct flexpu_pod_req got;
    struct flexpu_placement gp;
    assert_int_equal(flexpu_engine_alloc_get(e, id, &got, &gp, NULL), 0);
    assert_int_equal(got.cpu_milli, 1500);
    assert_int_equal(got.num_gpu, 2);
    assert_int_equal(got.gpu_milli, 400);
    assert_int_equal(gp.node, p.node);
    assert_int_equal(gp.ngpu, 2);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(gp.gpu[i], p.gpu[i]);
        assert_int_equal(gp.milli[i], p.milli[i]);
    }
    assert_int_equal(flexpu_engine_release(e, id, NULL), 0);
    got.cpu_milli = -7;
    struct flexpu_error err = {0};
    assert_int_equal(flexpu_engine_alloc_get(e, id, &got, &gp, &err), FLEXPU_ENOENT);
    assert_int_equal(got.cpu_milli, -7);
    assert_non_null(strstr(err.msg, "no allocation"));
    assert_int_equal(flexpu_engine_alloc_get(e, 0, &got, &gp, NULL), FLEXPU_ENOENT);
    flexpu_engine_free(e);
}

/* Every allocation failing in turn leaves a consistent engine and no leak
 * (AddressSanitizer checks the leak part). */
static void test_out_of_memory_is_clean(void **state)
{
    (void)state;
    for (long n = 0; n < 200; n++) {
        struct flexpu_engine *e = flexpu_engine_new();
        fx_alloc_fail_after(n);
        if (!e) {
            fx_alloc_fail_after(-1);
            continue;
        }
        int ok = 1;
        for (int i = 0; i < 6 && ok; i++) {
            char name[8];
            snprintf(name, sizeof(name), "n%d", i);
            struct flexpu_node_info info;
            memset(&info, 0, sizeof(info));
            info.name = name;
            info.cpu_milli = 64000;
            info.mem_mib = 65536;
            info.labels = "zone=a";
            info.ngpu = 2 + i % 3;
            for (int g = 0; g < info.ngpu; g++)
                info.gpus[g].model = "T4";
            int rc = flexpu_engine_add_node(e, &info, NULL, NULL);
            ok = rc == 0;
            if (!ok)
                assert_int_equal(rc, FLEXPU_ENOMEM);
        }
        for (int i = 0; i < 30 && ok; i++) {
            struct flexpu_pod_req r = req(100, 1, 100 + 30 * i);
            struct flexpu_placement p;
            int rc = flexpu_engine_place(e, &r, NULL, &p, NULL, NULL);
            if (rc == FLEXPU_ENOMEM)
                ok = 0;
            else
                assert_true(rc == 0 || rc == FLEXPU_ENOFIT);
        }
        fx_alloc_fail_after(-1);
        check(e);
        flexpu_engine_free(e);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_release_restores_exactly),
        cmocka_unit_test(test_churn_never_overcommits),
        cmocka_unit_test(test_cost_cache_changes_no_decision),
        cmocka_unit_test(test_assign_rejects_overcommit),
        cmocka_unit_test(test_gpu_memory_limits_sharing),
        cmocka_unit_test(test_multi_gpu_one_node_and_island),
        cmocka_unit_test(test_multi_gpu_spans_islands_when_needed),
        cmocka_unit_test(test_bestfit_prefers_fuller_node),
        cmocka_unit_test(test_packing_prefers_shared_gpu),
        cmocka_unit_test(test_whole_rounds_up),
        cmocka_unit_test(test_fgd_and_flexpu_fill_the_fragment),
        cmocka_unit_test(test_flexpu_keeps_cpu_for_idle_gpus),
        cmocka_unit_test(test_flexpu_protects_a_scarce_model),
        cmocka_unit_test(test_flexpu_model_pressure_weights),
        cmocka_unit_test(test_flexpu_cpu_pod_spares_tight_node),
        cmocka_unit_test(test_flexpu_opens_a_node_rather_than_strand_a_gpu),
        cmocka_unit_test(test_flexpu_opens_a_node_rather_than_strand_a_gpu_by_memory),
        cmocka_unit_test(test_flexpu_strands_only_for_shapes_that_can_use_the_node),
        cmocka_unit_test(test_flexpu_keeps_the_nodes_only_some_pods_fit),
        cmocka_unit_test(test_flexpu_prices_the_room_of_a_wanted_model),
        cmocka_unit_test(test_dotprod_and_random_stay_feasible),
        cmocka_unit_test(test_random_spreads_over_identical_nodes),
        cmocka_unit_test(test_reasons_name_the_constraint),
        cmocka_unit_test(test_bad_requests_and_nodes),
        cmocka_unit_test(test_decide_output_defined),
        cmocka_unit_test(test_remove_node_releases),
        cmocka_unit_test(test_alloc_get),
        cmocka_unit_test(test_out_of_memory_is_clean),
    };
    return cmocka_run_group_tests_name("sched", tests, NULL, NULL);
}
