/* SPDX-License-Identifier: Apache-2.0 */
/* Victims stay booked until they are gone (issue 16, docs/KUBERNETES.md,
 * "Preemption and reclaim"): a victim runs out its grace period after its
 * eviction, so what it holds beyond what its preemptor takes (CPU, memory,
 * a GPU's compute or memory) is no one else's until the watch shows it
 * gone; then it is free as usual. A victim that stays after all (its
 * preemptor deleted, its eviction refused) leaves its node's accounting as
 * it was, and the model's invariants hold after each step. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "kube/contract.h"
#include "scheduler/model.h"

#include "model_fixture.h"

/* What a pod asks: CPUs, one GPU's cores (0: no GPU; 100: a whole one),
 * its gpu-memory in GiB (0: none asked), its PriorityClass value, its
 * pod group (NULL: none; min-members 2) and its queue (NULL: the
 * default one). */
struct ask {
    int cpu, cores, mem_gib, prio;
    const char *group, *queue;
};

/* Pod `uid` created at second `sec`: pending, or bound to GPU `gpu` of
 * `on` with the allocation recorded. */
static void pod(struct fx_model *m, const char *uid, struct ask a, int sec, const char *on,
                int gpu)
{
    char created[40], cpu[16], cores[16], mem[16];
    snprintf(created, sizeof(created), "2026-01-01T00:%02d:%02dZ", sec / 60, sec % 60);
    snprintf(cpu, sizeof(cpu), "%d", a.cpu);
    snprintf(cores, sizeof(cores), "%d", a.cores);
    snprintf(mem, sizeof(mem), "%dGi", a.mem_gib);
    json_t *limits = json_pack("{s:s}", "cpu", cpu);
    if (a.cores) {
        json_object_set_new(limits, "flexpu.io/gpu", json_string("1"));
        json_object_set_new(limits, "flexpu.io/gpu-cores", json_string(cores));
        if (a.mem_gib)
            json_object_set_new(limits, "flexpu.io/gpu-memory", json_string(mem));
    }
    json_t *meta = json_pack("{s:s, s:s, s:s, s:s}", "name", uid, "namespace", "t", "uid", uid,
                             "creationTimestamp", created);
    json_t *ann = json_object();
    json_t *labels = json_object();
    if (a.group) {
        json_object_set_new(labels, "flexpu.io/pod-group", json_string(a.group));
        json_object_set_new(ann, "flexpu.io/min-members", json_string("2"));
    }
    if (a.queue)
        json_object_set_new(labels, FX_LABEL_QUEUE, json_string(a.queue));
    json_object_set_new(meta, "labels", labels);
    json_t *p = json_pack("{s:o, s:{s:s, s:i, s:[{s:s, s:{s:o}}]}}", "metadata", meta, "spec",
                          "schedulerName", "flexpu-scheduler", "priority", a.prio, "containers",
                          "name", "c", "resources", "limits", limits);
    assert_non_null(p);
    if (on) {
        if (a.cores) {
            struct fx_allocation al = {.ngpu = 1};
            snprintf(al.gpus[0].uuid, sizeof(al.gpus[0].uuid), "GPU-%s-%d", on, gpu);
            al.gpus[0].index = gpu;
            al.gpus[0].cores = a.cores;
            al.gpus[0].mem = (int64_t)a.mem_gib * GIB;
            char *text = fx_allocation_format(&al);
            json_object_set_new(ann, FX_ANN_ALLOCATION, json_string(text));
            free(text);
        }
        json_object_set_new(json_object_get(p, "spec"), "nodeName", json_string(on));
    }
    json_object_set_new(meta, "annotations", ann);
    fx_model_pod_event(m, KUBE_ADDED, p);
    json_decref(p);
}

static int64_t gpu_used(const struct fx_model *m)
{
    struct fx_model_stats st = model_stats(m);
    assert_int_equal(st.conflicts, 0); /* nothing failed to be accounted */
    return st.gpu_milli_used;
}

static const struct ask WHOLE_8CPU = {.cpu = 8, .cores = 100};   /* a whole GPU and 8 CPUs */
static const struct ask HI_HALF = {.cpu = 12, .cores = 50, .mem_gib = 40, .prio = 1000};
static const struct ask HALF = {.cpu = 1, .cores = 50, .mem_gib = 40}; /* what HI_HALF leaves */
/* A member of pod group g of PriorityClass 1000: 600 milli, more than a
 * node's GPU has beside a WHOLE_8CPU pod's 400 milli it keeps. */
static const struct ask GROUP_600 = {.cpu = 2, .cores = 60, .mem_gib = 30, .prio = 1000,
                                     .group = "g"};

/* n1 (one GPU) with low on its GPU and 8 of its CPUs, hi (HI_HALF)
 * nominated there and low's eviction decided. */
static struct fx_model *low_evicted_for_hi(void)
{
    struct fx_model *m = new_model();
    a100_node(m, "n1", 1);
    pod(m, "low", WHOLE_8CPU, 0, "n1", 0);
    pod(m, "hi", HI_HALF, 10, NULL, 0);
    next(m, FX_NOMINATE, "hi");
    next(m, FX_EVICT, "low");
    return m;
}

/* low is gone: hi, waiting for it, is bound, then `then`, which waited for
 * what low kept. */
static void low_gone_binds(struct fx_model *m, const char *then)
{
    gone(m, "low");
    next(m, FX_BIND, "hi");
    next(m, FX_BIND, then);
}

/* n1 and n2 (one GPU each), low1 and low2 on their whole GPUs and 8 CPUs. */
static struct fx_model *two_lows(void)
{
    struct fx_model *m = new_model();
    a100_node(m, "n1", 1);
    a100_node(m, "n2", 1);
    pod(m, "low1", WHOLE_8CPU, 0, "n1", 0);
    pod(m, "low2", WHOLE_8CPU, 1, "n2", 0);
    return m;
}

/* (1) low holds n1's GPU and 8 of its 16 CPUs; hi takes half the GPU and
 * 12 CPUs (4 of them low's). While low runs out its grace period, a pod
 * asking the other half of the GPU (and 1 CPU) and one asking 3 of the 4
 * CPUs hi leaves of low's 8 both wait; once low is gone both are placed. Before, low's
 * capacity was free at its eviction, and both were bound beside it. */
static void test_leftover_waits_for_victim(void **state)
{
    (void)state;
    struct fx_model *m = low_evicted_for_hi();
    fx_model_evict_done(m, "low", 0);
    model_checked(m);
    pod(m, "half", HALF, 20, NULL, 0);
    pod(m, "cpu3", (struct ask){.cpu = 3}, 21, NULL, 0);
    next(m, FX_WAIT, "half");
    next(m, FX_WAIT, "cpu3");
    nothing_left(m);
    low_gone_binds(m, "half");
    next(m, FX_BIND, "cpu3");
    nothing_left(m);
    fx_model_free(m);
}

/* (2) The same on one GPU's share: low has 1000 milli (and 40 GiB of
 * memory), hi takes 500 and 20 GiB, and a third pod of 500 waits until low
 * is gone. And on its memory: low has 100 milli and 60 GiB beside a pod of
 * a higher class with 500 and 10 GiB, hi takes 300 and 30 GiB (of low's
 * memory: 10 were free): compute is left for a pod of 100 milli and 10 GiB
 * but no memory, until low is gone. */
static void test_gpu_share_waits_for_victim(void **state)
{
    (void)state;
    struct fx_model *m = new_model();
    a100_node(m, "n1", 1);
    pod(m, "low", (struct ask){.cpu = 1, .cores = 100, .mem_gib = 40}, 0, "n1", 0);
    int64_t before = gpu_used(m);
    pod(m, "hi", (struct ask){.cpu = 1, .cores = 50, .mem_gib = 20, .prio = 1000}, 10, NULL, 0);
    next(m, FX_NOMINATE, "hi");
    /* low's 1000 milli are booked until it is gone: 500 hi's, 500 its own. */
    assert_int_equal(gpu_used(m), before);
    pod(m, "third", (struct ask){.cpu = 1, .cores = 50, .mem_gib = 20}, 20, NULL, 0);
    next(m, FX_EVICT, "low");
    next(m, FX_WAIT, "third");
    fx_model_evict_done(m, "low", 0);
    nothing_left(m);
    low_gone_binds(m, "third");
    nothing_left(m);
    fx_model_free(m);

    m = new_model();
    a100_node(m, "n1", 1);
    pod(m, "top", (struct ask){.cpu = 1, .cores = 50, .mem_gib = 10, .prio = 2000}, 0, "n1", 0);
    pod(m, "low", (struct ask){.cpu = 1, .cores = 10, .mem_gib = 60}, 1, "n1", 0);
    pod(m, "hi", (struct ask){.cpu = 1, .cores = 30, .mem_gib = 30, .prio = 1000}, 10, NULL, 0);
    next(m, FX_NOMINATE, "hi");
    next(m, FX_EVICT, "low");
    pod(m, "third", (struct ask){.cpu = 1, .cores = 10, .mem_gib = 10}, 20, NULL, 0);
    struct fx_attempt a = next(m, FX_WAIT, "third");
    assert_non_null(strstr(a.message, "memory"));
    fx_model_evict_done(m, "low", 0);
    nothing_left(m);
    low_gone_binds(m, "third");
    nothing_left(m);
    fx_model_free(m);
}

/* (3) A victim that stays after all leaves its node as before the
 * preemption: low's eviction is refused by a budget (the preemption
 * undone), or hi is deleted before low's eviction goes out (low stays:
 * victims_unqueue). A pod asking low's other half, decided while hi was
 * nominated, waits and still waits after, low accounted whole, 8 CPUs free
 * as before. Before, that pod was bound in low's leftover, and low could
 * not be accounted again (a conflict: its GPU lost to the model). */
static void test_victim_stays_exactly(void **state)
{
    (void)state;
    for (int refused = 0; refused < 2; refused++) {
        struct fx_model *m = new_model();
        a100_node(m, "n1", 1);
        pod(m, "low", WHOLE_8CPU, 0, "n1", 0);
        int64_t before = gpu_used(m);
        pod(m, "hi", HI_HALF, 10, NULL, 0);
        next(m, FX_NOMINATE, "hi");
        if (refused) {
            next(m, FX_EVICT, "low");
            pod(m, "half", HALF, 20, NULL, 0);
            next(m, FX_WAIT, "half"); /* low's other half is low's */
            fx_model_evict_done(m, "low", FLEXPU_EBUSY);
        } else {
            gone(m, "hi"); /* its eviction not sent: one goes per step, after binds */
            pod(m, "half", HALF, 20, NULL, 0);
        }
        model_checked(m);
        assert_int_equal(gpu_used(m), before);
        pod(m, "cpu9", (struct ask){.cpu = 9}, 21, NULL, 0); /* 8 are free, as before */
        pod(m, "cpu8", (struct ask){.cpu = 8}, 22, NULL, 0);
        struct fx_attempt a;
        bool half = false, cpu9 = false, cpu8 = false;
        while (fx_model_next(m, &a)) {
            if (a.outcome == FX_BIND) {
                half = half || strcmp(a.uid, "half") == 0;
                cpu9 = cpu9 || strcmp(a.uid, "cpu9") == 0;
                cpu8 = cpu8 || strcmp(a.uid, "cpu8") == 0;
            }
            if (a.outcome == FX_NOMINATE || a.outcome == FX_EVICT)
                fail_msg("%s: outcome %d for %s (%s)", refused ? "refused" : "deleted",
                         a.outcome, a.uid, a.message);
        }
        assert_false(half);
        assert_false(cpu9);
        assert_true(cpu8);
        assert_int_equal(gpu_used(m), before);
        model_checked(m);
        fx_model_free(m);
    }
}

/* (4) A pod group across two nodes: each member needs 600 milli, so one
 * per node, each evicting the pod that has its node's whole GPU. The 400
 * milli each victim keeps are no one else's until it is gone; the first
 * gone frees its node's for a pod waiting, the second binds the group. */
static void test_gang_across_nodes_waits(void **state)
{
    (void)state;
    struct fx_model *m = two_lows();
    pod(m, "g1", GROUP_600, 10, NULL, 0);
    pod(m, "g2", GROUP_600, 11, NULL, 0);
    struct fx_attempt a = next(m, FX_NOMINATE, NULL);
    assert_non_null(strstr(a.message, "preempting 2 pod(s)"));
    next(m, FX_EVICT, NULL);
    next(m, FX_EVICT, NULL);
    fx_model_evict_done(m, "low1", 0);
    fx_model_evict_done(m, "low2", 0);
    pod(m, "p40", (struct ask){.cpu = 1, .cores = 40, .mem_gib = 20}, 20, NULL, 0);
    next(m, FX_WAIT, "p40");
    nothing_left(m);
    gone(m, "low1");
    a = next(m, FX_BIND, "p40"); /* low1's 400 milli, free now; the group waits for low2 */
    assert_string_equal(a.node, "n1");
    nothing_left(m);
    gone(m, "low2");
    a = next(m, FX_BIND, NULL);
    struct fx_attempt b = next(m, FX_BIND, NULL);
    assert_true((!strcmp(a.uid, "g1") && !strcmp(b.uid, "g2")) ||
                (!strcmp(a.uid, "g2") && !strcmp(b.uid, "g1")));
    nothing_left(m);
    fx_model_free(m);
}

/* The group deleted before its evictions go out (gang_nominee_gone): both
 * victims stay, each accounted whole on its node. Before, the victim on
 * the node of the member not yet given back was accounted while that
 * member still held 600 milli of its GPU: a conflict, its GPU lost. */
static void test_gang_deleted_victims_stay(void **state)
{
    (void)state;
    for (int first = 0; first < 2; first++) {
        struct fx_model *m = two_lows();
        int64_t before = gpu_used(m);
        pod(m, "g1", GROUP_600, 10, NULL, 0);
        pod(m, "g2", GROUP_600, 11, NULL, 0);
        next(m, FX_NOMINATE, NULL);
        gone(m, first ? "g2" : "g1");
        model_checked(m);
        gone(m, first ? "g1" : "g2");
        nothing_left(m);
        assert_int_equal(gpu_used(m), before);
        pod(m, "p40", (struct ask){.cpu = 1, .cores = 40, .mem_gib = 20}, 20, NULL, 0);
        next(m, FX_WAIT, "p40");
        nothing_left(m);
        fx_model_free(m);
    }
}

/* A victim's node leaves the engine (not ready) and comes back while the
 * victim runs: its hold is booked again, not its whole allocation (the
 * preemptor's place is there too), and both are exact once it is gone. */
static void test_node_back_keeps_hold(void **state)
{
    (void)state;
    struct fx_model *m = low_evicted_for_hi();
    json_t *n = json_pack("{s:{s:s}, s:{}, s:{s:{s:s, s:s}, s:[{s:s, s:s}]}}", "metadata",
                          "name", "n1", "spec", "status", "allocatable", "cpu", "16", "memory",
                          "64Gi", "conditions", "type", "Ready", "status", "False");
    char *text = a100_inventory("n1", 1);
    json_object_set_new(json_object_get(n, "metadata"), "annotations",
                        json_pack("{s:s}", "flexpu.io/gpus", text));
    fx_model_node_event(m, KUBE_MODIFIED, n);
    model_checked(m);
    a100_node(m, "n1", 1); /* ready again */
    assert_int_equal(gpu_used(m), 1000); /* hi's half and low's: no conflict */
    pod(m, "half", HALF, 20, NULL, 0);
    next(m, FX_WAIT, "half");
    nothing_left(m);
    low_gone_binds(m, "half");
    nothing_left(m);
    json_decref(n);
    free(text);
    fx_model_free(m);
}

/* No pod failed to be accounted, and the model's invariants hold. */
static void exact(const struct fx_model *m)
{
    gpu_used(m);
    model_checked(m);
}

/* Every outcome until there is nothing to do, the model exact after each;
 * returns how many binds of uid there were. */
static int drain(struct fx_model *m, const char *uid)
{
    struct fx_attempt a;
    int binds = 0;
    for (int i = 0; i < 50 && fx_model_next(m, &a); i++) {
        exact(m);
        if (a.outcome == FX_BIND && uid && strcmp(a.uid, uid) == 0)
            binds++;
    }
    exact(m);
    return binds;
}

/* (5) Holds under churn, the model exact after each step: two
 * preemptions on one node, the first undone by a budget while the
 * second's victim still holds; a victim gone before its hold was ever
 * whole; a victim's node deleted while it holds; a victim's bound event
 * again (a resync) while it leaves; a relist (KUBE_SYNC_BEGIN/END) that
 * no longer lists a victim, and one that still does. */
static void test_holds_under_churn(void **state)
{
    (void)state;
    const struct ask low = {.cpu = 8, .cores = 50, .mem_gib = 40};
    const struct ask hi = {.cpu = 6, .cores = 50, .mem_gib = 40, .prio = 1000};
    /* Two preemptions on n1, hiA's undone. */
    struct fx_model *m = new_model();
    a100_node(m, "n1", 1);
    pod(m, "low1", low, 0, "n1", 0);
    pod(m, "low2", (struct ask){.cpu = 8, .cores = 50, .mem_gib = 40, .prio = 1500}, 1, "n1", 0);
    int64_t before = gpu_used(m);
    pod(m, "hiA", hi, 10, NULL, 0);
    next(m, FX_NOMINATE, "hiA");
    next(m, FX_EVICT, "low1");
    exact(m);
    pod(m, "hiB", (struct ask){.cpu = 6, .cores = 50, .mem_gib = 40, .prio = 2000}, 11, NULL, 0);
    next(m, FX_NOMINATE, "hiB");
    next(m, FX_EVICT, "low2");
    fx_model_evict_done(m, "low2", 0);
    exact(m);
    fx_model_evict_done(m, "low1", FLEXPU_EBUSY); /* hiA undone: low1 whole again */
    exact(m);
    assert_int_equal(gpu_used(m), before);
    pod(m, "cpu2", (struct ask){.cpu = 2}, 20, NULL, 0); /* low2 holds 2 of its 8 CPUs */
    drain(m, NULL);
    gone(m, "low2");
    exact(m);
    assert_int_equal(drain(m, "hiB"), 1);
    fx_model_free(m);

    /* A victim gone before its hold was ever whole (hi took the CPUs it
     * held, x holds the rest), then x. */
    m = new_model();
    a100_node(m, "n1", 1);
    pod(m, "low", (struct ask){.cpu = 8, .cores = 100}, 0, "n1", 0);
    pod(m, "x", (struct ask){.cpu = 8}, 1, "n1", 0);
    pod(m, "hi", (struct ask){.cpu = 8, .cores = 50, .prio = 1000}, 10, NULL, 0);
    next(m, FX_NOMINATE, "hi");
    next(m, FX_EVICT, "low");
    exact(m);
    gone(m, "low");
    exact(m);
    next(m, FX_BIND, "hi");
    gone(m, "x");
    pod(m, "cpu8", (struct ask){.cpu = 8}, 20, NULL, 0);
    assert_int_equal(drain(m, "cpu8"), 1);
    fx_model_free(m);

    /* A victim's node deleted while it holds, then the victim gone. */
    m = low_evicted_for_hi();
    json_t *n = json_pack("{s:{s:s}}", "metadata", "name", "n1");
    fx_model_node_event(m, KUBE_DELETED, n);
    json_decref(n);
    exact(m);
    drain(m, NULL);
    gone(m, "low");
    exact(m);
    drain(m, NULL);
    a100_node(m, "n1", 1);
    exact(m);
    drain(m, NULL);
    fx_model_free(m);

    /* A victim's bound event again while it leaves, and relists. */
    for (int listed = 0; listed < 2; listed++) {
        m = low_evicted_for_hi();
        fx_model_evict_done(m, "low", 0);
        before = gpu_used(m);
        pod(m, "low", WHOLE_8CPU, 0, "n1", 0);
        exact(m);
        assert_int_equal(gpu_used(m), before);
        fx_model_pod_event(m, KUBE_SYNC_BEGIN, NULL);
        pod(m, "hi", HI_HALF, 10, NULL, 0);
        if (listed)
            pod(m, "low", WHOLE_8CPU, 0, "n1", 0);
        fx_model_pod_event(m, KUBE_SYNC_END, NULL);
        exact(m);
        pod(m, "half", HALF, 20, NULL, 0);
        int binds = drain(m, "half");
        assert_int_equal(binds, listed ? 0 : 1);
        if (listed) {
            gone(m, "low");
            assert_int_equal(drain(m, "half"), 1);
        }
        fx_model_free(m);
    }
}

/* (6) A short hold takes back capacity freed on its own node only: low's
 * hold on n1 lacks the 8 CPUs hi took, and a pod ending on n2 leaves it
 * alone (booking it again costs the engine a node move, and every short
 * hold in the cluster was booked again for each pod ending anywhere: with
 * 1,000 nodes and 200 short holds, 2,000 pod ends took 3.4 s instead of
 * 0.03 s). A pod ending on n1 gives it what it lacks, and no more is free
 * there. */
static void test_hold_refreshed_on_its_node(void **state)
{
    (void)state;
    struct fx_model *m = new_model();
    a100_node(m, "n1", 1);
    a100_node(m, "n2", 1);
    pod(m, "low", WHOLE_8CPU, 0, "n1", 0);
    pod(m, "x1", (struct ask){.cpu = 4, .prio = 5000}, 1, "n1", 0);
    pod(m, "x2", (struct ask){.cpu = 14, .prio = 5000}, 2, "n2", 0);
    pod(m, "hi", HI_HALF, 10, NULL, 0); /* 12 CPUs: n1's, with low's 8 */
    struct fx_attempt a = next(m, FX_NOMINATE, "hi");
    assert_string_equal(a.node, "n1");
    next(m, FX_EVICT, "low");
    fx_model_evict_done(m, "low", 0);
    nothing_left(m);
    uint64_t books = model_stats(m).hold_books;
    gone(m, "x2"); /* n2's capacity: nothing for low's hold */
    nothing_left(m);
    assert_int_equal(model_stats(m).hold_books, books);
    pod(m, "cpu16", (struct ask){.cpu = 16}, 20, NULL, 0);
    a = next(m, FX_BIND, "cpu16");
    assert_string_equal(a.node, "n2");
    gone(m, "x1"); /* n1's 4: low's hold takes them */
    assert_true(model_stats(m).hold_books > books);
    pod(m, "cpu1", (struct ask){.cpu = 1}, 21, NULL, 0);
    next(m, FX_WAIT, "cpu1");
    nothing_left(m);
    gone(m, "low");
    next(m, FX_BIND, "hi");
    next(m, FX_BIND, "cpu1");
    nothing_left(m);
    fx_model_free(m);
}

/* (7) A nominated pod edited while its victims go is decided again with
 * what it asks now, not bound as decided before: its nominatedNodeName
 * cleared (FX_UNNOMINATE) before anything else is decided. Edited before
 * low's eviction went out to ask 4 CPUs and no GPU: low stays, accounted
 * whole, and hi is bound beside it at once. An update that changes
 * nothing it asks keeps the nomination. Before, hi kept its place and low
 * was evicted for a pod that no longer needed its room. */
static void test_nominee_edited_before_eviction(void **state)
{
    (void)state;
    struct fx_model *m = new_model();
    a100_node(m, "n1", 1);
    pod(m, "low", WHOLE_8CPU, 0, "n1", 0);
    int64_t before = gpu_used(m);
    pod(m, "hi", HI_HALF, 10, NULL, 0);
    next(m, FX_NOMINATE, "hi");
    pod(m, "hi", HI_HALF, 10, NULL, 0); /* the same: its status, say */
    next(m, FX_EVICT, "low");
    fx_model_free(m);

    m = new_model();
    a100_node(m, "n1", 1);
    pod(m, "low", WHOLE_8CPU, 0, "n1", 0);
    pod(m, "hi", HI_HALF, 10, NULL, 0);
    next(m, FX_NOMINATE, "hi");
    pod(m, "hi", (struct ask){.cpu = 4, .prio = 1000}, 10, NULL, 0);
    next(m, FX_UNNOMINATE, "hi");
    struct fx_attempt a = next(m, FX_BIND, "hi");
    assert_string_equal(a.node, "n1");
    assert_string_equal(a.allocation, ""); /* no GPU */
    nothing_left(m);
    assert_int_equal(gpu_used(m), before); /* low whole, never evicted */
    assert_int_equal(model_stats(m).evictions, 1); /* decided, not sent */
    fx_model_free(m);
}

/* (8) The same once low's eviction went out: low goes on leaving, and hi,
 * edited to a whole GPU and 12 CPUs, is nominated again on n2 (n1's GPU is
 * low's until it is gone). low gone does not bind hi: it counts no more
 * for hi, which waits for low2, then is bound on n2 with the whole GPU it
 * asks now. Before, hi was bound on n1 with half a GPU as first decided. */
static void test_nominee_edited_after_eviction(void **state)
{
    (void)state;
    struct fx_model *m = two_lows();
    pod(m, "hi", HI_HALF, 10, NULL, 0);
    struct fx_attempt a = next(m, FX_NOMINATE, "hi");
    const char *first = strcmp(a.node, "n1") == 0 ? "low1" : "low2";
    const char *second = strcmp(first, "low1") == 0 ? "low2" : "low1";
    const char *then = strcmp(first, "low1") == 0 ? "n2" : "n1";
    next(m, FX_EVICT, first);
    fx_model_evict_done(m, first, 0);
    pod(m, "hi", (struct ask){.cpu = 12, .cores = 100, .prio = 1000}, 10, NULL, 0);
    next(m, FX_UNNOMINATE, "hi");
    a = next(m, FX_NOMINATE, "hi");
    assert_string_equal(a.node, then);
    next(m, FX_EVICT, second);
    fx_model_evict_done(m, second, 0);
    gone(m, first);
    nothing_left(m); /* hi waits for its victim now, not for low */
    gone(m, second);
    a = next(m, FX_BIND, "hi");
    assert_string_equal(a.node, then);
    assert_non_null(strstr(a.allocation, "\"cores\":100"));
    nothing_left(m);
    assert_int_equal(gpu_used(m), 1000);
    fx_model_free(m);
}

/* (9) A member of a nominated pod group edited out of the group (its
 * label removed, 2 CPUs and no GPU asked) before the evictions go out: the
 * other alone cannot reach min-members, so both give their places back
 * (each nominatedNodeName cleared), neither victim is evicted, the edited
 * pod is bound on its own and the other waits for its members. Before, both
 * were bound as nominated once the victims were gone. */
static void test_gang_nominee_edited(void **state)
{
    (void)state;
    struct fx_model *m = two_lows();
    int64_t before = gpu_used(m);
    pod(m, "g1", GROUP_600, 10, NULL, 0);
    pod(m, "g2", GROUP_600, 11, NULL, 0);
    next(m, FX_NOMINATE, NULL);
    pod(m, "g2", (struct ask){.cpu = 2, .prio = 1000}, 11, NULL, 0);
    next(m, FX_UNNOMINATE, "g1");
    next(m, FX_UNNOMINATE, "g2");
    struct fx_attempt a = next(m, FX_WAIT, "g1");
    assert_non_null(strstr(a.message, "waits for its members: 1 of 2 exist"));
    next(m, FX_BIND, "g2");
    nothing_left(m);
    assert_int_equal(gpu_used(m), before); /* both lows whole */
    fx_model_free(m);
}

/* (10) hi needs a whole GPU: n1's is held by v1 and v2, n2's by w1 and w2,
 * older (more work lost), so n1 is chosen first. v1's eviction (or v2's,
 * whichever goes first) is accepted, the other's refused: the preemption
 * is undone and hi, nominated again, takes n2 for w1 and w2 (the refused
 * victim is shielded, and the accepted one keeps what it held until it is
 * gone). The victim accepted on n1 gone counts no more for hi: it waits
 * for both of its new victims, then is bound on n2. Before, that victim
 * still named hi as its preemptor, so it and w1 gone bound hi on n2 beside
 * w2, which still ran there. */
static void test_refused_eviction_renominated(void **state)
{
    (void)state;
    struct fx_model *m = new_model();
    a100_node(m, "n1", 1);
    a100_node(m, "n2", 1);
    const struct ask half = {.cpu = 4, .cores = 50, .mem_gib = 40};
    pod(m, "w1", half, 0, "n2", 0);
    pod(m, "w2", half, 1, "n2", 0);
    pod(m, "v1", half, 5, "n1", 0);
    pod(m, "v2", half, 6, "n1", 0);
    pod(m, "hi", (struct ask){.cpu = 12, .cores = 100, .prio = 1000}, 10, NULL, 0);
    struct fx_attempt a = next(m, FX_NOMINATE, "hi");
    assert_string_equal(a.node, "n1");
    a = next(m, FX_EVICT, NULL);
    char accepted[64];
    snprintf(accepted, sizeof(accepted), "%s", a.uid);
    const char *refused = strcmp(accepted, "v1") == 0 ? "v2" : "v1";
    fx_model_evict_done(m, accepted, 0);
    next(m, FX_EVICT, refused);
    fx_model_evict_done(m, refused, FLEXPU_EBUSY); /* a PodDisruptionBudget */
    model_checked(m);
    next(m, FX_UNNOMINATE, "hi");
    a = next(m, FX_NOMINATE, "hi");
    assert_string_equal(a.node, "n2");
    for (int i = 0; i < 2; i++) {
        a = next(m, FX_EVICT, NULL);
        assert_int_equal(a.uid[0], 'w');
        fx_model_evict_done(m, a.uid, 0);
    }
    gone(m, accepted);
    gone(m, "w1");
    nothing_left(m); /* hi waits for w2, not for the victim it lost on n1 */
    gone(m, "w2");
    a = next(m, FX_BIND, "hi");
    assert_string_equal(a.node, "n2");
    nothing_left(m);
    fx_model_free(m);
}

/* Remote pod `uid` (flexpu.io/remote "allowed", PriorityClass `prio`,
 * created at second `sec`) on node `on` without GPUs, with `cpu` CPUs
 * there and a slice of GPU 0 of n1 of `cores` and `mem_gib` GiB (0: no
 * gpu-memory asked, no quota: the GPU's memory is all its own)
 * (docs/REMOTE.md, "Kubernetes"). */
static void remote_pod_q(struct fx_model *m, const char *uid, int cpu, int cores, int mem_gib,
                         int prio, int sec, const char *on, const char *queue)
{
    char created[40], c[16], cores_s[16], mem[16];
    snprintf(created, sizeof(created), "2026-01-01T00:%02d:%02dZ", sec / 60, sec % 60);
    snprintf(c, sizeof(c), "%d", cpu);
    snprintf(cores_s, sizeof(cores_s), "%d", cores);
    snprintf(mem, sizeof(mem), "%dGi", mem_gib);
    struct fx_allocation al = {.ngpu = 1};
    snprintf(al.gpus[0].uuid, sizeof(al.gpus[0].uuid), "GPU-n1-0");
    al.gpus[0].cores = cores;
    al.gpus[0].mem = (int64_t)mem_gib * GIB;
    snprintf(al.remote_node, sizeof(al.remote_node), "n1");
    char *text = fx_allocation_format(&al);
    json_t *p = json_pack("{s:{s:s, s:s, s:s, s:s, s:{s:s, s:s}}, s:{s:s, s:s, s:i, "
                          "s:[{s:s, s:{s:{s:s, s:s, s:s, s:s}}}]}}",
                          "metadata", "name", uid, "namespace", "t", "uid", uid,
                          "creationTimestamp", created, "annotations", FX_ANN_REMOTE,
                          FX_REMOTE_ALLOWED, FX_ANN_ALLOCATION, text, "spec", "schedulerName",
                          "flexpu-scheduler", "nodeName", on, "priority", prio, "containers",
                          "name", "c", "resources", "limits", "cpu", c, "flexpu.io/gpu", "1",
                          "flexpu.io/gpu-cores", cores_s, "flexpu.io/gpu-memory", mem);
    assert_non_null(p);
    if (queue)
        json_object_set_new(json_object_get(p, "metadata"), "labels",
                            json_pack("{s:s}", FX_LABEL_QUEUE, queue));
    if (mem_gib == 0) {
        json_t *ctr = json_array_get(json_object_get(json_object_get(p, "spec"), "containers"), 0);
        json_object_del(json_object_get(json_object_get(ctr, "resources"), "limits"),
                        "flexpu.io/gpu-memory");
    }
    fx_model_pod_event(m, KUBE_ADDED, p);
    json_decref(p);
    free(text);
}

static void remote_pod(struct fx_model *m, const char *uid, int cpu, int cores, int mem_gib,
                       int prio, int sec, const char *on)
{
    remote_pod_q(m, uid, cpu, cores, mem_gib, prio, sec, on, NULL);
}

/* n1 (one GPU, 16 CPUs) and c1 (no GPUs, 16 CPUs), rlow (PriorityClass
 * `prio`) on c1 with 8 CPUs and a slice of `cores` and `mem_gib` GiB of
 * n1's GPU. */
static struct fx_model *remote_low_of(int prio, int cores, int mem_gib)
{
    struct fx_model *m = new_model();
    a100_node(m, "n1", 1);
    a100_node(m, "c1", 0);
    remote_pod(m, "rlow", 8, cores, mem_gib, prio, 0, "c1");
    assert_int_equal(model_stats(m).remote, 1);
    assert_int_equal(gpu_used(m), cores * 10);
    model_checked(m);
    return m;
}

/* The same with 80% and 40 GiB. */
static struct fx_model *remote_low(int prio)
{
    return remote_low_of(prio, 80, 40);
}

/* (11) A remote pod is a victim where its slice is (docs/REMOTE.md,
 * "Preemption"): rlow runs on c1 with 80% of n1's GPU; hi, of a higher
 * class, needs half of that GPU. hi preempts rlow on n1 (its Eviction),
 * and is bound there once rlow is gone. Meanwhile what rlow keeps is
 * booked on both its nodes: the rest of its slice on n1 (a pod asking 30%
 * waits; 50% of rlow's 80% went to hi), and its 8 CPUs on c1 (a pod asking
 * 9 of c1's CPUs waits). A pod of rlow's class does not preempt it, as it
 * would not preempt a local pod of that class. Before, the victim search
 * took victims only from the pods on the node considered, and rlow is on
 * c1: hi waited. */
static void test_remote_pod_is_a_victim(void **state)
{
    (void)state;
    struct fx_model *m = remote_low(0);
    pod(m, "hi", (struct ask){.cpu = 2, .cores = 50, .mem_gib = 20, .prio = 1000}, 10, NULL, 0);
    struct fx_attempt a = next(m, FX_NOMINATE, "hi");
    assert_string_equal(a.node, "n1");
    assert_non_null(strstr(a.message, "t/rlow"));
    a = next(m, FX_EVICT, "rlow");
    assert_non_null(strstr(a.message, "hi"));
    fx_model_evict_done(m, "rlow", 0);
    model_checked(m);
    assert_int_equal(gpu_used(m), 1000); /* hi's 500 and what rlow keeps */
    pod(m, "p30", (struct ask){.cpu = 1, .cores = 30, .mem_gib = 10}, 20, NULL, 0);
    next(m, FX_WAIT, "p30");
    pod(m, "cpu9", (struct ask){.cpu = 9}, 21, NULL, 0);
    struct fx_attempt w = next(m, FX_BIND, "cpu9");
    assert_string_equal(w.node, "n1"); /* c1 has 8 free: rlow's 8 are rlow's */
    pod(m, "cpu9b", (struct ask){.cpu = 9}, 22, NULL, 0);
    next(m, FX_WAIT, "cpu9b"); /* n1: 16 - 2 - 9; c1: 8 free */
    nothing_left(m);
    gone(m, "rlow");
    next(m, FX_BIND, "hi");
    a = next(m, FX_BIND, NULL);
    struct fx_attempt b = next(m, FX_BIND, NULL);
    assert_true((!strcmp(a.uid, "p30") && !strcmp(b.uid, "cpu9b")) ||
                (!strcmp(a.uid, "cpu9b") && !strcmp(b.uid, "p30")));
    nothing_left(m);
    assert_int_equal(model_stats(m).remote, 0);
    assert_int_equal(gpu_used(m), 800);
    fx_model_free(m);

    /* Of the same class: no victim, as for a local pod of that class. */
    m = remote_low(1000);
    pod(m, "hi", (struct ask){.cpu = 2, .cores = 50, .mem_gib = 20, .prio = 1000}, 10, NULL, 0);
    next(m, FX_WAIT, "hi");
    nothing_left(m);
    assert_int_equal(model_stats(m).evictions, 0);
    fx_model_free(m);
}

/* (12) Evicting a remote pod frees no CPU on its GPU node: its CPUs are
 * on c1. hi needs rlow's GPU share and 10 CPUs on n1, where a pod of a
 * higher class holds 8 of the 16: it waits, and nothing is evicted. */
static void test_remote_victim_frees_no_cpu_there(void **state)
{
    (void)state;
    struct fx_model *m = remote_low(0);
    pod(m, "top", (struct ask){.cpu = 8, .prio = 5000}, 1, "n1", 0);
    pod(m, "hi", (struct ask){.cpu = 10, .cores = 50, .mem_gib = 20, .prio = 1000}, 10, NULL, 0);
    next(m, FX_WAIT, "hi");
    nothing_left(m);
    assert_int_equal(model_stats(m).evictions, 0);
    assert_int_equal(gpu_used(m), 800);
    fx_model_free(m);
}

/* (13) A remote victim that stays after all is accounted on both its
 * nodes as before: its eviction refused by a budget, or its preemptor
 * deleted before the eviction goes out. And one whose GPU node leaves the
 * engine and comes back while it leaves: its hold there is booked again,
 * not its whole slice (hi's place is there too); with a quota, and with
 * a whole GPU without one, whose GPU lends no memory to borrowers until
 * it is gone (the node's count of such slices exact: fx_model_check). */
static void test_remote_victim_stays(void **state)
{
    (void)state;
    for (int refused = 0; refused < 2; refused++) {
        struct fx_model *m = remote_low(0);
        pod(m, "hi", (struct ask){.cpu = 2, .cores = 50, .mem_gib = 20, .prio = 1000}, 10, NULL,
            0);
        next(m, FX_NOMINATE, "hi");
        if (refused) {
            next(m, FX_EVICT, "rlow");
            fx_model_evict_done(m, "rlow", FLEXPU_EBUSY);
            model_checked(m);
            next(m, FX_UNNOMINATE, "hi");
            next(m, FX_WAIT, "hi"); /* rlow is shielded now */
        } else {
            gone(m, "hi");
        }
        nothing_left(m);
        assert_int_equal(gpu_used(m), 800);
        assert_int_equal(model_stats(m).remote, 1);
        pod(m, "cpu9", (struct ask){.cpu = 9}, 21, NULL, 0);
        struct fx_attempt a = next(m, FX_BIND, "cpu9");
        assert_string_equal(a.node, "n1"); /* c1's 8 free, as before */
        nothing_left(m);
        fx_model_free(m);
    }

    for (int whole = 0; whole < 2; whole++) {
        struct fx_model *m = whole ? remote_low_of(0, 100, 0) : remote_low(0);
        pod(m, "hi", (struct ask){.cpu = 2, .cores = 50, .mem_gib = 20, .prio = 1000}, 10, NULL, 0);
        next(m, FX_NOMINATE, "hi");
        next(m, FX_EVICT, "rlow");
        fx_model_evict_done(m, "rlow", 0);
        model_checked(m);
        json_t *n = json_pack("{s:{s:s}, s:{}, s:{s:{s:s, s:s}, s:[{s:s, s:s}]}}", "metadata",
                              "name", "n1", "spec", "status", "allocatable", "cpu", "16", "memory",
                              "64Gi", "conditions", "type", "Ready", "status", "False");
        char *text = a100_inventory("n1", 1);
        json_object_set_new(json_object_get(n, "metadata"), "annotations",
                            json_pack("{s:s}", "flexpu.io/gpus", text));
        fx_model_node_event(m, KUBE_MODIFIED, n);
        model_checked(m);
        a100_node(m, "n1", 1); /* ready again */
        model_checked(m);
        assert_int_equal(gpu_used(m), 1000); /* hi's half and rlow's hold: no conflict */
        pod(m, "p30", (struct ask){.cpu = 1, .cores = 30, .mem_gib = 10}, 20, NULL, 0);
        next(m, FX_WAIT, "p30");
        nothing_left(m);
        gone(m, "rlow");
        next(m, FX_BIND, "hi");
        next(m, FX_BIND, "p30");
        nothing_left(m);
        json_decref(n);
        free(text);
        fx_model_free(m);
    }
}

/* (14) A remote pod is a victim on its own node too, as before, for a pod
 * that needs its CPUs there: hic (12 CPUs, no GPU) evicts rlow on c1 (n1's
 * CPUs are a pod of a higher class's). rlow's slice on n1 is its own until
 * it is gone, whole (hic takes nothing of it): a pod asking the 20% left
 * is bound, one asking 30% waits until rlow is gone. */
static void test_remote_victim_on_its_own_node(void **state)
{
    (void)state;
    struct fx_model *m = remote_low(0);
    pod(m, "top", (struct ask){.cpu = 15, .prio = 5000}, 1, "n1", 0);
    pod(m, "hic", (struct ask){.cpu = 12, .prio = 1000}, 10, NULL, 0);
    struct fx_attempt a = next(m, FX_NOMINATE, "hic");
    assert_string_equal(a.node, "c1");
    next(m, FX_EVICT, "rlow");
    fx_model_evict_done(m, "rlow", 0);
    model_checked(m);
    assert_int_equal(gpu_used(m), 800);
    pod(m, "p30", (struct ask){.cpu = 1, .cores = 30, .mem_gib = 10}, 20, NULL, 0);
    next(m, FX_WAIT, "p30");
    pod(m, "p20", (struct ask){.cpu = 1, .cores = 20, .mem_gib = 10}, 21, NULL, 0);
    a = next(m, FX_BIND, "p20");
    assert_string_equal(a.node, "n1");
    nothing_left(m);
    gone(m, "p20");
    gone(m, "rlow");
    a = next(m, FX_BIND, "hic");
    assert_string_equal(a.node, "c1");
    next(m, FX_BIND, "p30");
    nothing_left(m);
    assert_int_equal(gpu_used(m), 300);
    fx_model_free(m);
}

/* c1, the node without GPUs, not ready (out of the engine). */
static void c1_not_ready(struct fx_model *m)
{
    json_t *n = json_pack("{s:{s:s}, s:{}, s:{s:{s:s, s:s}, s:[{s:s, s:s}]}}", "metadata", "name",
                          "c1", "spec", "status", "allocatable", "cpu", "16", "memory", "64Gi",
                          "conditions", "type", "Ready", "status", "False");
    fx_model_node_event(m, KUBE_MODIFIED, n);
    json_decref(n);
    model_checked(m);
}

/* (15) A remote pod whose own node is out of the engine (not ready) still
 * holds its slice on its GPU node (remote_account), so it is a victim
 * there as any remote pod is: hi (a higher class) needs half of n1's GPU,
 * 80% of which is rlow's, while c1 is not ready; it preempts rlow on n1.
 * What rlow keeps stays booked: the rest of its slice on n1 (a pod asking
 * 30% waits), and its 8 CPUs on c1 once c1 is ready again (a pod asking 9
 * CPUs goes to n1, a second one waits: c1 has 8 free). Once rlow is gone
 * both are bound. Its eviction refused, it stays, accounted on both nodes
 * as before. Before, the victim search took only pods with an allocation
 * on their own node: hi waited while rlow kept 80% of the GPU. */
static void test_remote_victim_own_node_out(void **state)
{
    (void)state;
    struct fx_model *m = remote_low(0);
    c1_not_ready(m);
    assert_int_equal(gpu_used(m), 800); /* its slice held while c1 is out */
    pod(m, "hi", (struct ask){.cpu = 2, .cores = 50, .mem_gib = 20, .prio = 1000}, 10, NULL, 0);
    struct fx_attempt a = next(m, FX_NOMINATE, "hi");
    assert_string_equal(a.node, "n1");
    assert_non_null(strstr(a.message, "t/rlow"));
    a = next(m, FX_EVICT, "rlow");
    assert_non_null(strstr(a.message, "hi"));
    fx_model_evict_done(m, "rlow", 0);
    model_checked(m);
    assert_int_equal(gpu_used(m), 1000); /* hi's 500 and what rlow keeps */
    pod(m, "p30", (struct ask){.cpu = 1, .cores = 30, .mem_gib = 10}, 20, NULL, 0);
    next(m, FX_WAIT, "p30");
    nothing_left(m);
    a100_node(m, "c1", 0); /* ready again: rlow's 8 CPUs booked there until it is gone */
    model_checked(m);
    pod(m, "cpu9", (struct ask){.cpu = 9}, 21, NULL, 0);
    a = next(m, FX_BIND, "cpu9");
    assert_string_equal(a.node, "n1"); /* c1 has 8 free: rlow's 8 are rlow's */
    pod(m, "cpu9b", (struct ask){.cpu = 9}, 22, NULL, 0);
    next(m, FX_WAIT, "cpu9b"); /* n1: 16 - 2 - 9; c1: 8 free */
    nothing_left(m);
    gone(m, "rlow");
    next(m, FX_BIND, "hi");
    a = next(m, FX_BIND, NULL);
    struct fx_attempt b = next(m, FX_BIND, NULL);
    assert_true((!strcmp(a.uid, "p30") && !strcmp(b.uid, "cpu9b")) ||
                (!strcmp(a.uid, "cpu9b") && !strcmp(b.uid, "p30")));
    nothing_left(m);
    assert_int_equal(model_stats(m).remote, 0);
    assert_int_equal(gpu_used(m), 800);
    fx_model_free(m);

    /* Its eviction refused: it stays, its slice held as before, and once
     * c1 is ready again its CPUs are accounted there. */
    m = remote_low(0);
    c1_not_ready(m);
    pod(m, "hi", (struct ask){.cpu = 2, .cores = 50, .mem_gib = 20, .prio = 1000}, 10, NULL, 0);
    next(m, FX_NOMINATE, "hi");
    next(m, FX_EVICT, "rlow");
    fx_model_evict_done(m, "rlow", FLEXPU_EBUSY);
    model_checked(m);
    next(m, FX_UNNOMINATE, "hi");
    next(m, FX_WAIT, "hi"); /* rlow is shielded now */
    nothing_left(m);
    assert_int_equal(gpu_used(m), 800);
    assert_int_equal(model_stats(m).remote, 1);
    a100_node(m, "c1", 0);
    model_checked(m);
    pod(m, "cpu9", (struct ask){.cpu = 9}, 21, NULL, 0);
    a = next(m, FX_BIND, "cpu9");
    assert_string_equal(a.node, "n1"); /* c1's 8 free, as before */
    nothing_left(m);
    assert_int_equal(gpu_used(m), 800);
    fx_model_free(m);
}

/* Queue q (no parent, weight 1, nothing guaranteed, no limit). */
static void queue_of(struct fx_model *m, const char *q)
{
    struct flexpu_queue_info qi = {.name = q, .weight = 1};
    for (int r = 0; r < FLEXPU_RES_COUNT_; r++)
        qi.limit[r] = FLEXPU_QUEUE_UNLIMITED;
    struct flexpu_error err = {0};
    if (fx_model_queue_set(m, &qi, &err))
        fail_msg("fx_model_queue_set %s: %s", q, err.msg);
}

/* (16) Queue reclaim of a remote pod whose own node is out of the engine:
 * its queue's charge follows its state (bound: allocated), not its node,
 * so queue a still holds rlow's GPU while c1 is not Ready and queue b
 * takes it back as from any pod. n1 has 2 GPUs: rlow (queue a, 80% of
 * GPU 0, on c1) and a1 (queue a, GPU 1 whole); b asks hi (50%) and b2
 * (a whole GPU, 30 s later): a's fair share is one GPU and 1000 of its
 * 2000 milli, so only rlow may go (a1 would leave a under its share), and
 * only by reclaim (all of PriorityClass 0). Checked with c1 Ready too. */
static void test_remote_reclaimed_own_node_out(void **state)
{
    (void)state;
    for (int out = 0; out < 2; out++) {
        struct fx_model *m = new_model();
        queue_of(m, "a");
        queue_of(m, "b");
        a100_node(m, "n1", 2);
        a100_node(m, "c1", 0);
        remote_pod_q(m, "rlow", 8, 80, 40, 0, 5, "c1", "a");
        pod(m, "a1", (struct ask){.cpu = 1, .cores = 100, .queue = "a"}, 0, "n1", 1);
        model_checked(m);
        if (out)
            c1_not_ready(m);
        assert_int_equal(gpu_used(m), 1800);
        pod(m, "hi", (struct ask){.cpu = 2, .cores = 50, .mem_gib = 20, .queue = "b"}, 10, NULL,
            0);
        pod(m, "b2", (struct ask){.cpu = 1, .cores = 100, .queue = "b"}, 40, NULL, 0);
        struct fx_attempt a;
        bool evicted = false;
        for (int i = 0; i < 10 && !evicted && fx_model_next(m, &a); i++) {
            if (a.outcome == FX_EVICT) {
                if (strcmp(a.uid, "rlow") != 0 || !strstr(a.message, "reclaimed by"))
                    fail_msg("c1 %s: evicted %s: %s", out ? "out" : "in", a.uid, a.message);
                evicted = true;
            }
        }
        if (!evicted)
            fail_msg("c1 %s: rlow was not reclaimed", out ? "out" : "in");
        fx_model_free(m);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_leftover_waits_for_victim),
        cmocka_unit_test(test_gpu_share_waits_for_victim),
        cmocka_unit_test(test_victim_stays_exactly),
        cmocka_unit_test(test_gang_across_nodes_waits),
        cmocka_unit_test(test_gang_deleted_victims_stay),
        cmocka_unit_test(test_node_back_keeps_hold),
        cmocka_unit_test(test_holds_under_churn),
        cmocka_unit_test(test_hold_refreshed_on_its_node),
        cmocka_unit_test(test_nominee_edited_before_eviction),
        cmocka_unit_test(test_nominee_edited_after_eviction),
        cmocka_unit_test(test_gang_nominee_edited),
        cmocka_unit_test(test_refused_eviction_renominated),
        cmocka_unit_test(test_remote_pod_is_a_victim),
        cmocka_unit_test(test_remote_victim_frees_no_cpu_there),
        cmocka_unit_test(test_remote_victim_stays),
        cmocka_unit_test(test_remote_victim_on_its_own_node),
        cmocka_unit_test(test_remote_victim_own_node_out),
        cmocka_unit_test(test_remote_reclaimed_own_node_out),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
