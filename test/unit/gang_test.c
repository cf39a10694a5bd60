/* SPDX-License-Identifier: Apache-2.0 */
/* Gangs and victims in the placement engine: all or nothing with the
 * engine unchanged on failure, the topology levels and their order, best
 * fit among domains, the two-gang case, filters per member; the victim
 * order (fewest, then cheapest), groups, the reprieve, and purity; and a
 * randomized property test of both. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "flexpu/gang.h"
#include "flexpu/sched.h"
#include "placement_eq.h"
#include "sched/engine.h"
#include "sched/ties.h"
#include "util/alloc.h"

/* ---- helpers ---------------------------------------------------------- */

static int add_node(struct flexpu_engine *e, const char *name, int ngpu, const char *clique,
                    const char *rack)
{
    struct flexpu_node_info n;
    memset(&n, 0, sizeof(n));
    n.name = name;
    n.cpu_milli = 64000;
    n.mem_mib = 256 * 1024;
    n.ngpu = ngpu;
    for (int g = 0; g < ngpu; g++) {
        n.gpus[g].model = "A100";
        n.gpus[g].mem_mib = 40960;
        n.gpus[g].numa = 0;
    }
    struct flexpu_label labels[2];
    int nl = 0;
    if (clique)
        labels[nl++] = (struct flexpu_label){"nvidia.com/gpu.clique", clique};
    if (rack)
        labels[nl++] = (struct flexpu_label){"topology.kubernetes.io/rack", rack};
    n.label_list = labels;
    n.nlabel_list = nl;
    int id = -1;
    struct flexpu_error err;
    assert_int_equal(flexpu_engine_add_node(e, &n, &id, &err), 0);
    return id;
}

static struct flexpu_pod_req req(int ngpu, int milli)
{
    struct flexpu_pod_req r;
    memset(&r, 0, sizeof(r));
    r.cpu_milli = 1000;
    r.mem_mib = 1024;
    r.num_gpu = ngpu;
    r.gpu_milli = ngpu ? milli : 0;
    return r;
}

static void check(const struct flexpu_engine *e)
{
    struct flexpu_error err = {0};
    if (flexpu_engine_check(e, &err))
        fail_msg("invariant broken: %s", err.msg);
}

static struct flexpu_engine *engine(void)
{
    struct flexpu_engine *e = flexpu_engine_new();
    assert_non_null(e);
    struct flexpu_error err;
    assert_int_equal(flexpu_engine_set_policy(e, "bestfit", &err), 0);
    return e;
}

static int64_t hold(struct flexpu_engine *e, int node, int ngpu, const int *gpus, int milli)
{
    struct flexpu_pod_req r = req(ngpu, milli);
    struct flexpu_placement p;
    memset(&p, 0, sizeof(p));
    p.node = node;
    p.ngpu = ngpu;
    for (int i = 0; i < ngpu; i++) {
        p.gpu[i] = gpus[i];
        p.milli[i] = milli;
    }
    int64_t id = 0;
    struct flexpu_error err;
    if (flexpu_engine_assign(e, &r, &p, &id, &err))
        fail_msg("assign: %s", err.msg);
    return id;
}

/* Everything a failed call must leave as it was. */
#define SNAP_MAX 64
struct snap {
    int nodes;
    int64_t cpu[SNAP_MAX], mem[SNAP_MAX];
    int gfree[SNAP_MAX][FLEXPU_MAX_GPUS];
    int64_t gmem[SNAP_MAX][FLEXPU_MAX_GPUS];
    struct flexpu_stats stats;
    int64_t next_alloc_id, nallocs;
};

static void snap(const struct flexpu_engine *e, struct snap *s)
{
    memset(s, 0, sizeof(*s));
    s->nodes = flexpu_engine_node_count(e);
    assert_true(s->nodes <= SNAP_MAX);
    for (int n = 0; n < s->nodes; n++) {
        s->cpu[n] = flexpu_engine_node_free_cpu(e, n);
        s->mem[n] = flexpu_engine_node_free_mem(e, n);
        for (int g = 0; g < FLEXPU_MAX_GPUS; g++) {
            s->gfree[n][g] = flexpu_engine_gpu_free_milli(e, n, g);
            s->gmem[n][g] = flexpu_engine_gpu_free_mem(e, n, g);
        }
    }
    flexpu_engine_stats(e, &s->stats);
    s->stats.classes = 0; /* the class count may not move, but order may: compare below */
    s->next_alloc_id = e->next_alloc_id;
    s->nallocs = e->nallocs;
}

static void assert_unchanged(const struct flexpu_engine *e, const struct snap *before)
{
    struct snap now;
    snap(e, &now);
    assert_int_equal(memcmp(now.cpu, before->cpu, sizeof(now.cpu)), 0);
    assert_int_equal(memcmp(now.mem, before->mem, sizeof(now.mem)), 0);
    assert_int_equal(memcmp(now.gfree, before->gfree, sizeof(now.gfree)), 0);
    assert_int_equal(memcmp(now.gmem, before->gmem, sizeof(now.gmem)), 0);
    assert_int_equal(memcmp(&now.stats, &before->stats, sizeof(now.stats)), 0);
    assert_int_equal(now.next_alloc_id, before->next_alloc_id);
    assert_int_equal(now.nallocs, before->nallocs);
    check(e);
}

static void members(struct flexpu_gang_member *m, int n, int ngpu, int milli)
{
    memset(m, 0, (size_t)n * sizeof(*m));
    for (int i = 0; i < n; i++)
        m[i].req = req(ngpu, milli);
}

static void release_all(struct flexpu_engine *e, struct flexpu_gang_member *m, int n)
{
    struct flexpu_error err;
    for (int i = 0; i < n; i++)
        assert_int_equal(flexpu_engine_release(e, m[i].alloc_id, &err), 0);
}

/* ---- gangs ------------------------------------------------------------ */

static void test_all_or_nothing(void **state)
{
    (void)state;
    struct flexpu_engine *e = engine();
    add_node(e, "n0", 4, NULL, NULL);
    add_node(e, "n1", 4, NULL, NULL);
    hold(e, 1, 1, (int[]){0}, 300);
    struct snap before;
    snap(e, &before);
    struct flexpu_gang_member m[3];
    members(m, 3, 4, 1000);
    struct flexpu_gang_result res;
    struct flexpu_noplace why;
    assert_int_equal(flexpu_engine_place_gang(e, m, 3, NULL, &res, &why), FLEXPU_ENOFIT);
    assert_unchanged(e, &before);
    for (int i = 0; i < 3; i++)
        assert_int_equal(m[i].alloc_id, 0);
    /* How many fit and why the rest did not. */
    assert_non_null(strstr(why.text, "gang of 3: 1/3 members fit"));
    assert_non_null(strstr(why.text, "no node fits"));
    assert_int_equal(res.level, FLEXPU_GANG_ANYWHERE);
    /* One member alone fits: on the node with every GPU free. */
    assert_int_equal(flexpu_engine_place_gang(e, m, 1, NULL, &res, &why), 0);
    assert_int_equal(res.level, FLEXPU_GANG_NODE);
    assert_int_equal(m[0].place.node, 0);
    check(e);
    release_all(e, m, 1);
    snap(e, &before); /* the same capacity; one allocation id spent */
    /* Bad input names the member. */
    m[2].req.gpu_milli = 2000;
    assert_int_equal(flexpu_engine_place_gang(e, m, 3, NULL, &res, &why), FLEXPU_EINVAL);
    assert_non_null(strstr(why.text, "gang member 2"));
    assert_non_null(strstr(why.text, "gpu_milli"));
    assert_int_equal(flexpu_engine_place_gang(e, m, 0, NULL, &res, &why), FLEXPU_EINVAL);
    assert_unchanged(e, &before);
    flexpu_engine_free(e);
}

static void test_one_node_best_fit(void **state)
{
    (void)state;
    struct flexpu_engine *e = engine();
    add_node(e, "big", 8, "c1", NULL);
    int tight = add_node(e, "tight", 8, "c1", NULL);
    add_node(e, "small", 4, "c1", NULL);
    hold(e, tight, 2, (int[]){0, 1}, 1000);
    struct flexpu_gang_member m[3];
    members(m, 3, 2, 1000);
    struct flexpu_gang_result res;
    struct flexpu_noplace why;
    assert_int_equal(flexpu_engine_place_gang(e, m, 3, NULL, &res, &why), 0);
    assert_int_equal(res.level, FLEXPU_GANG_NODE);
    assert_int_equal(res.node, tight);
    assert_string_equal(res.domain, "tight");
    for (int i = 0; i < 3; i++) {
        assert_int_equal(m[i].place.node, tight);
        assert_true(m[i].alloc_id > 0);
    }
    for (int g = 0; g < 8; g++)
        assert_int_equal(flexpu_engine_gpu_free_milli(e, tight, g), 0);
    check(e);
    /* "small" cannot hold 6 GPUs: ruled out by the aggregate check. */
    assert_true(res.skipped >= 1);
    flexpu_engine_free(e);
}

static void test_domain_key_order(void **state)
{
    (void)state;
    struct flexpu_engine *e = engine();
    /* Cliques {n0,n1} {n2,n3}; racks {n1,n2} {n0} {n3}. */
    add_node(e, "n0", 4, "c1", "r0");
    add_node(e, "n1", 4, "c1", "r1");
    add_node(e, "n2", 4, "c2", "r1");
    add_node(e, "n3", 4, "c2", "r3");
    struct flexpu_gang_member m[2];
    members(m, 2, 4, 1000);
    struct flexpu_gang_result res;
    struct flexpu_noplace why;
    /* Default keys: the clique first; both cliques fit equally, the first
     * by name wins. */
    assert_int_equal(flexpu_engine_place_gang(e, m, 2, NULL, &res, &why), 0);
    assert_int_equal(res.level, FLEXPU_GANG_DOMAIN);
    assert_int_equal(res.key, 0);
    assert_string_equal(res.domain, "c1");
    int on[4] = {0};
    on[m[0].place.node]++;
    on[m[1].place.node]++;
    assert_int_equal(on[0], 1);
    assert_int_equal(on[1], 1);
    release_all(e, m, 2);
    /* Racks first: n1 and n2. */
    const char *keys[] = {"topology.kubernetes.io/rack", "nvidia.com/gpu.clique"};
    struct flexpu_error err;
    assert_int_equal(flexpu_engine_set_topology_keys(e, keys, 2, &err), 0);
    const char *got[FLEXPU_TOPOLOGY_KEYS_MAX];
    assert_int_equal(flexpu_engine_topology_keys(e, got, FLEXPU_TOPOLOGY_KEYS_MAX), 2);
    assert_string_equal(got[0], "topology.kubernetes.io/rack");
    assert_int_equal(flexpu_engine_place_gang(e, m, 2, NULL, &res, &why), 0);
    assert_int_equal(res.level, FLEXPU_GANG_DOMAIN);
    assert_int_equal(res.key, 0);
    assert_string_equal(res.domain, "r1");
    memset(on, 0, sizeof(on));
    on[m[0].place.node]++;
    on[m[1].place.node]++;
    assert_int_equal(on[1], 1);
    assert_int_equal(on[2], 1);
    release_all(e, m, 2);
    /* No keys: anywhere. */
    assert_int_equal(flexpu_engine_set_topology_keys(e, keys, 0, &err), 0);
    assert_int_equal(flexpu_engine_place_gang(e, m, 2, NULL, &res, &why), 0);
    assert_int_equal(res.level, FLEXPU_GANG_ANYWHERE);
    assert_int_equal(res.key, -1);
    release_all(e, m, 2);
    /* Defaults back; bad keys refused and the keys unchanged. */
    assert_int_equal(flexpu_engine_set_topology_keys(e, NULL, 0, &err), 0);
    assert_int_equal(flexpu_engine_topology_keys(e, got, FLEXPU_TOPOLOGY_KEYS_MAX), 3);
    assert_string_equal(got[2], "topology.kubernetes.io/zone");
    const char *bad[] = {"a", "a"};
    assert_int_equal(flexpu_engine_set_topology_keys(e, bad, 2, &err), FLEXPU_EINVAL);
    assert_non_null(strstr(err.msg, "twice"));
    const char *host[] = {"kubernetes.io/hostname"};
    assert_int_equal(flexpu_engine_set_topology_keys(e, host, 1, &err), FLEXPU_EINVAL);
    const char *empty[] = {""};
    assert_int_equal(flexpu_engine_set_topology_keys(e, empty, 1, &err), FLEXPU_EINVAL);
    assert_int_equal(flexpu_engine_set_topology_keys(e, bad, 9, &err), FLEXPU_EINVAL);
    assert_int_equal(flexpu_engine_topology_keys(e, got, FLEXPU_TOPOLOGY_KEYS_MAX), 3);
    check(e);
    flexpu_engine_free(e);
}

static void test_best_fit_domain(void **state)
{
    (void)state;
    struct flexpu_engine *e = engine();
    /* c-big: 4 nodes x 4 GPUs; c-small: 2 nodes x 4 GPUs. */
    const char *names[] = {"b0", "b1", "b2", "b3", "s0", "s1"};
    for (int i = 0; i < 6; i++)
        add_node(e, names[i], 4, i < 4 ? "c-big" : "c-small", NULL);
    struct flexpu_gang_member m[3];
    members(m, 3, 4, 1000);
    struct flexpu_gang_result res;
    struct flexpu_noplace why;
    assert_int_equal(flexpu_engine_place_gang(e, m, 2, NULL, &res, &why), 0);
    assert_string_equal(res.domain, "c-small");
    assert_int_equal(m[0].place.node / 4, 1);
    assert_int_equal(m[1].place.node / 4, 1);
    release_all(e, m, 2);
    /* Three whole nodes do not fit c-small's total: skipped untried. */
    assert_int_equal(flexpu_engine_place_gang(e, m, 3, NULL, &res, &why), 0);
    assert_string_equal(res.domain, "c-big");
    assert_int_equal(res.tried, 1);
    assert_true(res.skipped >= 1);
    for (int i = 0; i < 3; i++)
        assert_true(m[i].place.node < 4);
    check(e);
    flexpu_engine_free(e);
}

static void test_aggregate_counts_nodes(void **state)
{
    (void)state;
    struct flexpu_engine *e = engine();
    /* "scattered": 8 free GPUs, two per node; "whole": 12, four per node. */
    char name[8];
    for (int i = 0; i < 4; i++) {
        snprintf(name, sizeof(name), "s%d", i);
        hold(e, add_node(e, name, 4, "scattered", NULL), 2, (int[]){0, 1}, 1000);
    }
    for (int i = 0; i < 3; i++) {
        snprintf(name, sizeof(name), "w%d", i);
        add_node(e, name, 4, "whole", NULL);
    }
    struct flexpu_gang_member m[2];
    members(m, 2, 4, 1000);
    struct flexpu_gang_result res;
    struct flexpu_noplace why;
    /* By sums "scattered" fits best, but no node of it takes a member. */
    assert_int_equal(flexpu_engine_place_gang(e, m, 2, NULL, &res, &why), 0);
    assert_string_equal(res.domain, "whole");
    assert_int_equal(res.tried, 1);
    check(e);
    flexpu_engine_free(e);
}

static void test_node_priority_ties(void **state)
{
    (void)state;
    for (uint64_t seed = 1; seed <= 10; seed++) {
        struct flexpu_engine *e = engine();
        char name[8];
        for (int i = 0; i < 4; i++) {
            snprintf(name, sizeof(name), "n%d", i);
            add_node(e, name, 4, NULL, NULL);
        }
        fx_engine_set_ties(e, FX_TIES_NODE_PRIORITY, seed);
        int want = 0;
        for (int i = 1; i < 4; i++)
            if (fx_engine_node_priority(e, i) < fx_engine_node_priority(e, want))
                want = i;
        struct flexpu_gang_member m[2];
        members(m, 2, 1, 1000);
        struct flexpu_gang_result res;
        assert_int_equal(flexpu_engine_place_gang(e, m, 2, NULL, &res, NULL), 0);
        assert_int_equal(res.level, FLEXPU_GANG_NODE);
        assert_int_equal(res.node, want);
        flexpu_engine_free(e);
    }
}

static void test_two_gangs(void **state)
{
    (void)state;
    struct flexpu_engine *e = engine();
    add_node(e, "n0", 4, NULL, NULL);
    add_node(e, "n1", 4, NULL, NULL);
    struct flexpu_gang_member a[3], b[3];
    members(a, 3, 2, 1000);
    members(b, 3, 2, 1000);
    struct flexpu_noplace why;
    /* Each fits alone. */
    assert_int_equal(flexpu_engine_decide_gang(e, b, 3, NULL, NULL, &why), 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(b[i].alloc_id, 0);
    assert_int_equal(flexpu_engine_place_gang(e, a, 3, NULL, NULL, &why), 0);
    struct snap before;
    snap(e, &before);
    assert_int_equal(flexpu_engine_place_gang(e, b, 3, NULL, NULL, &why), FLEXPU_ENOFIT);
    assert_unchanged(e, &before);
    assert_non_null(strstr(why.text, "1/3 members fit"));
    /* The first gang gone, the second fits. */
    release_all(e, a, 3);
    assert_int_equal(flexpu_engine_place_gang(e, b, 3, NULL, NULL, &why), 0);
    check(e);
    flexpu_engine_free(e);
}

static void test_filters_per_member(void **state)
{
    (void)state;
    struct flexpu_engine *e = engine();
    add_node(e, "n0", 8, "c1", NULL);
    add_node(e, "n1", 8, "c1", NULL);
    struct flexpu_gang_member m[2];
    members(m, 2, 1, 1000);
    struct flexpu_error err;
    struct flexpu_filter *f0 = flexpu_filter_new(), *f1 = flexpu_filter_new();
    assert_non_null(f0);
    assert_non_null(f1);
    const char *v0[] = {"n0"}, *v1[] = {"n1"};
    assert_int_equal(flexpu_filter_add_term(f0, 0, &err), 0);
    assert_int_equal(flexpu_filter_add_match(f0, true, "metadata.name", FLEXPU_MATCH_IN, v0, 1,
                                             &err), 0);
    assert_int_equal(flexpu_filter_add_term(f1, 0, &err), 0);
    assert_int_equal(flexpu_filter_add_match(f1, true, "metadata.name", FLEXPU_MATCH_IN, v1, 1,
                                             &err), 0);
    m[0].filter = f0;
    m[1].filter = f1;
    struct flexpu_gang_result res;
    struct flexpu_noplace why;
    /* No one node passes both filters: the clique holds them. */
    assert_int_equal(flexpu_engine_place_gang(e, m, 2, NULL, &res, &why), 0);
    assert_int_equal(res.level, FLEXPU_GANG_DOMAIN);
    assert_int_equal(m[0].place.node, 0);
    assert_int_equal(m[1].place.node, 1);
    release_all(e, m, 2);
    /* Both asking n1: one node. */
    m[0].filter = f1;
    assert_int_equal(flexpu_engine_place_gang(e, m, 2, NULL, &res, &why), 0);
    assert_int_equal(res.level, FLEXPU_GANG_NODE);
    assert_int_equal(res.node, 1);
    release_all(e, m, 2);
    /* A member no node accepts fails the gang, with the filter's reason. */
    const char *none[] = {"nowhere"};
    struct flexpu_filter *f2 = flexpu_filter_new();
    assert_int_equal(flexpu_filter_add_selector(f2, "pool", none[0], &err), 0);
    m[1].filter = f2;
    struct snap before;
    snap(e, &before);
    assert_int_equal(flexpu_engine_place_gang(e, m, 2, NULL, &res, &why), FLEXPU_ENOFIT);
    assert_non_null(strstr(why.text, "member 1"));
    assert_non_null(strstr(why.text, "affinity"));
    assert_int_equal(why.rejected[FLEXPU_REJECT_AFFINITY], 2);
    assert_unchanged(e, &before);
    flexpu_engine_free(e);
    flexpu_filter_free(f0);
    flexpu_filter_free(f1);
    flexpu_filter_free(f2);
}

static void test_bigger_first(void **state)
{
    (void)state;
    struct flexpu_engine *e = engine();
    add_node(e, "n0", 4, NULL, NULL);
    struct flexpu_gang_member m[3];
    members(m, 3, 1, 500);
    m[1].req = req(3, 1000); /* taken first, so the shares go to the last GPU */
    struct flexpu_noplace why;
    assert_int_equal(flexpu_engine_place_gang(e, m, 3, NULL, NULL, &why), 0);
    assert_int_equal(m[1].place.ngpu, 3);
    assert_int_equal(m[0].place.gpu[0], m[2].place.gpu[0]);
    check(e);
    flexpu_engine_free(e);
}

/* ---- victims ---------------------------------------------------------- */

static struct flexpu_victim_cand cand(int64_t id, double cost, int prio, int64_t group)
{
    return (struct flexpu_victim_cand){id, cost, prio, group};
}

static void test_victims_fewest(void **state)
{
    (void)state;
    struct flexpu_engine *e = engine();
    add_node(e, "a", 4, NULL, NULL);
    add_node(e, "b", 4, NULL, NULL);
    struct flexpu_victim_cand c[5];
    for (int g = 0; g < 4; g++)
        c[g] = cand(hold(e, 0, 1, (int[]){g}, 1000), 1, 0, 0);
    c[4] = cand(hold(e, 1, 4, (int[]){0, 1, 2, 3}, 1000), 100, 0, 0);
    struct snap before;
    snap(e, &before);
    struct flexpu_pod_req r = req(4, 1000);
    struct flexpu_preemption out;
    int ev[5];
    struct flexpu_noplace why;
    assert_int_equal(flexpu_engine_find_victims(e, &r, NULL, c, 5, &out, ev, &why), 0);
    /* One costly victim beats four cheap ones. */
    assert_int_equal(out.place.node, 1);
    assert_int_equal(out.victims, 1);
    assert_int_equal(out.nevicted, 1);
    assert_int_equal(ev[0], 4);
    assert_true(out.cost == 100);
    assert_int_equal(out.place.ngpu, 4);
    assert_unchanged(e, &before);
    /* The answer is real: evict, and the placement fits. */
    struct flexpu_error err;
    assert_int_equal(flexpu_engine_release(e, c[4].alloc_id, &err), 0);
    int64_t id;
    assert_int_equal(flexpu_engine_assign(e, &r, &out.place, &id, &err), 0);
    check(e);
    flexpu_engine_free(e);
}

static void test_victims_least_cost(void **state)
{
    (void)state;
    struct flexpu_engine *e = engine();
    add_node(e, "a", 4, NULL, NULL);
    add_node(e, "b", 4, NULL, NULL);
    add_node(e, "c", 4, NULL, NULL);
    struct flexpu_victim_cand c[3] = {
        cand(hold(e, 0, 4, (int[]){0, 1, 2, 3}, 1000), 10, 0, 0),
        cand(hold(e, 1, 4, (int[]){0, 1, 2, 3}, 1000), 5, 0, 0),
        cand(hold(e, 2, 4, (int[]){0, 1, 2, 3}, 1000), 7, 0, 0),
    };
    struct flexpu_pod_req r = req(2, 1000);
    struct flexpu_preemption out;
    int ev[3];
    assert_int_equal(flexpu_engine_find_victims(e, &r, NULL, c, 3, &out, ev, NULL), 0);
    assert_int_equal(out.place.node, 1);
    assert_int_equal(out.nevicted, 1);
    assert_int_equal(ev[0], 1);
    flexpu_engine_free(e);
}

static void test_victims_group(void **state)
{
    (void)state;
    struct flexpu_engine *e = engine();
    add_node(e, "a", 4, NULL, NULL);
    add_node(e, "b", 4, NULL, NULL);
    add_node(e, "c", 4, NULL, NULL);
    struct flexpu_victim_cand c[4] = {
        cand(hold(e, 2, 2, (int[]){0, 1}, 1000), 1, 0, 0),
        cand(hold(e, 0, 4, (int[]){0, 1, 2, 3}, 1000), 10, 0, 7),
        cand(hold(e, 2, 2, (int[]){2, 3}, 1000), 1, 0, 0),
        cand(hold(e, 1, 4, (int[]){0, 1, 2, 3}, 1000), 10, 0, 7),
    };
    struct flexpu_pod_req r = req(4, 1000);
    struct flexpu_preemption out;
    int ev[4];
    struct snap before;
    snap(e, &before);
    assert_int_equal(flexpu_engine_find_victims(e, &r, NULL, c, 4, &out, ev, NULL), 0);
    /* The gang is one victim (on a or b) against two on c; all its
     * members are listed, and its cost is theirs together. */
    assert_true(out.place.node == 0 || out.place.node == 1);
    assert_int_equal(out.victims, 1);
    assert_int_equal(out.nevicted, 2);
    assert_int_equal(ev[0], 1);
    assert_int_equal(ev[1], 3);
    assert_true(out.cost == 20);
    assert_unchanged(e, &before);
    /* Made dearer than the two on c, the gang is still fewer victims. */
    c[1].cost = c[3].cost = 1000;
    assert_int_equal(flexpu_engine_find_victims(e, &r, NULL, c, 4, &out, ev, NULL), 0);
    assert_int_equal(out.victims, 1);
    /* Without the group each half is still one victim against two. */
    c[1].group = c[3].group = 0;
    assert_int_equal(flexpu_engine_find_victims(e, &r, NULL, c, 4, &out, ev, NULL), 0);
    assert_int_equal(out.victims, 1);
    assert_int_equal(out.nevicted, 1);
    /* Bad candidates are named. */
    struct flexpu_noplace why;
    c[2].alloc_id = c[0].alloc_id;
    assert_int_equal(flexpu_engine_find_victims(e, &r, NULL, c, 4, &out, ev, &why),
                     FLEXPU_EINVAL);
    assert_non_null(strstr(why.text, "listed twice"));
    c[2].alloc_id = 999;
    assert_int_equal(flexpu_engine_find_victims(e, &r, NULL, c, 4, &out, ev, &why),
                     FLEXPU_EINVAL);
    assert_non_null(strstr(why.text, "candidate[2].alloc_id"));
    flexpu_engine_free(e);
}

static void test_victims_reprieve(void **state)
{
    (void)state;
    struct flexpu_engine *e = engine();
    add_node(e, "a", 4, NULL, NULL);
    struct flexpu_victim_cand c[3] = {
        cand(hold(e, 0, 2, (int[]){0, 1}, 1000), 1, 5, 0),
        cand(hold(e, 0, 1, (int[]){2}, 1000), 1, 1, 0),
        cand(hold(e, 0, 1, (int[]){3}, 1000), 1, 9, 0),
    };
    struct flexpu_pod_req r = req(2, 1000);
    struct flexpu_preemption out;
    int ev[3];
    assert_int_equal(flexpu_engine_find_victims(e, &r, NULL, c, 3, &out, ev, NULL), 0);
    /* Given back: priority 9 (fits), then 5 (would not: a victim), then 1
     * (fits again). */
    assert_int_equal(out.victims, 1);
    assert_int_equal(out.nevicted, 1);
    assert_int_equal(ev[0], 0);
    assert_int_equal(out.place.ngpu, 2);
    assert_true((out.place.gpu[0] == 0 && out.place.gpu[1] == 1) ||
                (out.place.gpu[0] == 1 && out.place.gpu[1] == 0));
    /* Room for one of two 1-GPU candidates to stay: the higher priority. */
    struct flexpu_error err;
    for (int i = 0; i < 3; i++)
        assert_int_equal(flexpu_engine_release(e, c[i].alloc_id, &err), 0);
    struct flexpu_victim_cand d[2] = {
        cand(hold(e, 0, 1, (int[]){0}, 1000), 1, 1, 0),
        cand(hold(e, 0, 1, (int[]){1}, 1000), 1, 9, 0),
    };
    r = req(3, 1000);
    assert_int_equal(flexpu_engine_find_victims(e, &r, NULL, d, 2, &out, ev, NULL), 0);
    assert_int_equal(out.nevicted, 1);
    assert_int_equal(ev[0], 0);
    d[0].priority = 10;
    assert_int_equal(flexpu_engine_find_victims(e, &r, NULL, d, 2, &out, ev, NULL), 0);
    assert_int_equal(ev[0], 1);
    for (int i = 0; i < 2; i++)
        assert_int_equal(flexpu_engine_release(e, d[i].alloc_id, &err), 0);
    c[0] = cand(hold(e, 0, 2, (int[]){0, 1}, 1000), 1, 5, 0);
    c[1] = cand(hold(e, 0, 1, (int[]){2}, 1000), 1, 1, 0);
    c[2] = cand(hold(e, 0, 1, (int[]){3}, 1000), 1, 9, 0);
    r = req(2, 1000);
    /* Equal priorities: the costlier is given back first. */
    c[0].priority = c[1].priority = c[2].priority = 3;
    c[1].cost = 50;
    c[2].cost = 40;
    assert_int_equal(flexpu_engine_find_victims(e, &r, NULL, c, 3, &out, ev, NULL), 0);
    assert_int_equal(out.nevicted, 1);
    assert_int_equal(ev[0], 0);
    flexpu_engine_free(e);
}

static void test_victims_none(void **state)
{
    (void)state;
    struct flexpu_engine *e = engine();
    add_node(e, "a", 4, NULL, NULL);
    add_node(e, "b", 4, NULL, NULL);
    hold(e, 0, 2, (int[]){0, 1}, 1000); /* not a candidate */
    struct flexpu_victim_cand c[2] = {
        cand(hold(e, 0, 2, (int[]){2, 3}, 1000), 1, 0, 0),
        cand(hold(e, 1, 1, (int[]){0}, 1000), 1, 0, 0),
    };
    hold(e, 1, 3, (int[]){1, 2, 3}, 1000);
    struct snap before;
    snap(e, &before);
    struct flexpu_pod_req r = req(4, 1000);
    struct flexpu_preemption out;
    int ev[2];
    struct flexpu_noplace why;
    assert_int_equal(flexpu_engine_find_victims(e, &r, NULL, c, 2, &out, ev, &why),
                     FLEXPU_ENOFIT);
    assert_non_null(strstr(why.text, "even with all 2 candidates evicted"));
    assert_int_equal(out.place.node, -1);
    assert_unchanged(e, &before);
    /* A request that fits as things are needs no victim. */
    r = req(0, 0);
    assert_int_equal(flexpu_engine_find_victims(e, &r, NULL, c, 2, &out, ev, &why), 0);
    assert_int_equal(out.victims, 0);
    assert_int_equal(out.nevicted, 0);
    assert_true(out.place.node >= 0);
    assert_unchanged(e, &before);
    flexpu_engine_free(e);
}

static void test_gang_victims(void **state)
{
    (void)state;
    struct flexpu_engine *e = engine();
    add_node(e, "a", 4, "c1", NULL);
    add_node(e, "b", 4, "c1", NULL);
    add_node(e, "c", 4, "c2", NULL);
    struct flexpu_victim_cand c[2] = {
        cand(hold(e, 0, 4, (int[]){0, 1, 2, 3}, 1000), 10, 0, 0),
        cand(hold(e, 1, 4, (int[]){0, 1, 2, 3}, 1000), 10, 0, 0),
    };
    struct flexpu_gang_member m[2];
    members(m, 2, 4, 1000);
    struct flexpu_gang_result res;
    struct flexpu_preemption out;
    int ev[2];
    struct flexpu_noplace why;
    struct snap before;
    snap(e, &before);
    /* One clique holds the gang if both its nodes are freed: the domain
     * level comes before "anywhere" (c free plus one victim). */
    assert_int_equal(flexpu_engine_find_gang_victims(e, m, 2, c, 2, &res, &out, ev, &why), 0);
    assert_int_equal(res.level, FLEXPU_GANG_DOMAIN);
    assert_string_equal(res.domain, "c1");
    assert_int_equal(out.victims, 2);
    assert_int_equal(out.nevicted, 2);
    assert_true(out.cost == 20);
    assert_int_equal(out.place.node, -1);
    assert_true(m[0].place.node != m[1].place.node && m[0].place.node < 2 &&
                m[1].place.node < 2);
    assert_unchanged(e, &before);
    /* Without topology keys: anywhere, one victim. */
    const char *none[1] = {NULL};
    struct flexpu_error err;
    assert_int_equal(flexpu_engine_set_topology_keys(e, none, 0, &err), 0);
    assert_int_equal(flexpu_engine_find_gang_victims(e, m, 2, c, 2, &res, &out, ev, &why), 0);
    assert_int_equal(res.level, FLEXPU_GANG_ANYWHERE);
    assert_int_equal(out.victims, 1);
    assert_int_equal(out.nevicted, 1);
    int on_c = (m[0].place.node == 2) + (m[1].place.node == 2);
    assert_int_equal(on_c, 1);
    assert_unchanged(e, &before);
    /* Evicting them makes the members' places fit. */
    for (int i = 0; i < out.nevicted; i++)
        assert_int_equal(flexpu_engine_release(e, c[ev[i]].alloc_id, &err), 0);
    for (int i = 0; i < 2; i++) {
        int64_t id;
        assert_int_equal(flexpu_engine_assign(e, &m[i].req, &m[i].place, &id, &err), 0);
    }
    check(e);
    /* Nothing left to evict: no answer, the engine as it was. */
    snap(e, &before);
    assert_int_equal(flexpu_engine_find_gang_victims(e, m, 2, NULL, 0, &res, &out, ev, &why),
                     FLEXPU_ENOFIT);
    assert_non_null(strstr(why.text, "even with all 0 candidates evicted"));
    assert_unchanged(e, &before);
    flexpu_engine_free(e);
}

static void test_gang_victims_group(void **state)
{
    (void)state;
    struct flexpu_engine *e = engine();
    add_node(e, "a", 4, NULL, NULL);
    add_node(e, "b", 4, NULL, NULL);
    add_node(e, "c", 4, NULL, NULL);
    /* A two-node gang on a and b (group 3), two singles on c. */
    struct flexpu_victim_cand c[4] = {
        cand(hold(e, 0, 4, (int[]){0, 1, 2, 3}, 1000), 30, 0, 3),
        cand(hold(e, 2, 2, (int[]){0, 1}, 1000), 1, 0, 0),
        cand(hold(e, 1, 4, (int[]){0, 1, 2, 3}, 1000), 30, 0, 3),
        cand(hold(e, 2, 2, (int[]){2, 3}, 1000), 1, 0, 0),
    };
    struct flexpu_gang_member m[2];
    members(m, 2, 4, 1000);
    struct flexpu_gang_result res;
    struct flexpu_preemption out;
    int ev[4];
    const char *none[1] = {NULL};
    struct flexpu_error err;
    assert_int_equal(flexpu_engine_set_topology_keys(e, none, 0, &err), 0);
    /* The group is one victim and frees both a and b; c would need two
     * more for the second member. */
    assert_int_equal(flexpu_engine_find_gang_victims(e, m, 2, c, 4, &res, &out, ev, NULL), 0);
    assert_int_equal(out.victims, 1);
    assert_int_equal(out.nevicted, 2);
    assert_int_equal(ev[0], 0);
    assert_int_equal(ev[1], 2);
    assert_true(m[0].place.node <= 1 && m[1].place.node <= 1 &&
                m[0].place.node != m[1].place.node);
    /* Fits as it is: no victims. */
    struct flexpu_gang_member one[1];
    members(one, 1, 0, 0);
    assert_int_equal(flexpu_engine_find_gang_victims(e, one, 1, c, 4, &res, &out, ev, NULL), 0);
    assert_int_equal(out.victims, 0);
    assert_int_equal(out.nevicted, 0);
    flexpu_engine_free(e);
}

/* ---- randomized ------------------------------------------------------- */

static struct flexpu_pod_req random_req(struct flexpu_rng *rng)
{
    int whole = flexpu_rng_below(rng, 3) != 0;
    int ngpu = whole ? 1 + (int)flexpu_rng_below(rng, 4) : 1;
    struct flexpu_pod_req r = req(ngpu, whole ? 1000 : 100 * (1 + (int)flexpu_rng_below(rng, 9)));
    r.cpu_milli = 1000 * (int64_t)flexpu_rng_below(rng, 16);
    if (flexpu_rng_below(rng, 10) == 0)
        r = req(0, 0);
    return r;
}

static struct flexpu_engine *random_cluster(struct flexpu_rng *rng, int *nnodes)
{
    struct flexpu_engine *e = engine();
    static const char *const policies[] = {"bestfit", "flexpu", "fgd",   "packing",
                                           "random",  "whole",  "dotprod"};
    struct flexpu_error err;
    assert_int_equal(flexpu_engine_set_policy(e, policies[flexpu_rng_below(rng, 7)], &err), 0);
    int n = 2 + (int)flexpu_rng_below(rng, 20);
    char name[16];
    const char *cliques[] = {"c0", "c1", "c2", NULL};
    const char *racks[] = {"r0", "r1", NULL};
    for (int i = 0; i < n; i++) {
        snprintf(name, sizeof(name), "n%d", i);
        add_node(e, name, 1 + (int)flexpu_rng_below(rng, 8), cliques[flexpu_rng_below(rng, 4)],
                 racks[flexpu_rng_below(rng, 3)]);
    }
    /* Fill it part way. */
    int fill = (int)flexpu_rng_below(rng, (uint64_t)n * 4);
    for (int i = 0; i < fill; i++) {
        struct flexpu_pod_req r = random_req(rng);
        struct flexpu_placement p;
        int64_t id;
        flexpu_engine_place(e, &r, rng, &p, &id, NULL);
    }
    *nnodes = n;
    return e;
}

static void test_random_gangs(void **state)
{
    (void)state;
    struct flexpu_rng rng;
    flexpu_rng_seed(&rng, 15);
    int ok = 0, fail = 0;
    /* Some members ask for a clique or a rack. */
    struct flexpu_filter *filters[3];
    const char *sel[3][2] = {{"nvidia.com/gpu.clique", "c0"},
                             {"nvidia.com/gpu.clique", "c1"},
                             {"topology.kubernetes.io/rack", "r0"}};
    for (int i = 0; i < 3; i++) {
        struct flexpu_error err;
        filters[i] = flexpu_filter_new();
        assert_non_null(filters[i]);
        assert_int_equal(flexpu_filter_add_selector(filters[i], sel[i][0], sel[i][1], &err), 0);
    }
    for (int round = 0; round < 300; round++) {
        int nnodes;
        struct flexpu_engine *e = random_cluster(&rng, &nnodes);
        for (int k = 0; k < 4; k++) {
            int n = 1 + (int)flexpu_rng_below(&rng, 8);
            struct flexpu_gang_member m[8];
            memset(m, 0, sizeof(m));
            for (int i = 0; i < n; i++) {
                m[i].req = random_req(&rng);
                int f = (int)flexpu_rng_below(&rng, 12);
                m[i].filter = f < 3 ? filters[f] : NULL;
            }
            struct snap before;
            snap(e, &before);
            struct flexpu_gang_result res;
            struct flexpu_noplace why;
            int rc = flexpu_engine_place_gang(e, m, n, &rng, &res, &why);
            if (rc == 0) {
                ok++;
                check(e);
                assert_int_equal(e->nallocs, before.nallocs + n);
                for (int i = 0; i < n; i++) {
                    const struct fx_alloc *a = fx_alloc_find(e, m[i].alloc_id);
                    assert_non_null(a);
                    assert_int_equal(a->p.node, m[i].place.node);
                    if (res.level == FLEXPU_GANG_NODE)
                        assert_int_equal(m[i].place.node, res.node);
                    if (res.level == FLEXPU_GANG_DOMAIN) {
                        const char *keys[FLEXPU_TOPOLOGY_KEYS_MAX];
                        flexpu_engine_topology_keys(e, keys, FLEXPU_TOPOLOGY_KEYS_MAX);
                        const char *v = fx_node_label(e, m[i].place.node, keys[res.key]);
                        assert_non_null(v);
                        assert_string_equal(v, res.domain);
                    }
                    if (m[i].filter)
                        assert_int_equal(flexpu_engine_node_filter(e, m[i].place.node,
                                                                   m[i].filter, NULL, NULL),
                                         -1);
                }
            } else {
                fail++;
                assert_int_equal(rc, FLEXPU_ENOFIT);
                assert_non_null(strstr(why.text, "members fit"));
                assert_unchanged(e, &before);
            }
        }
        flexpu_engine_free(e);
    }
    for (int i = 0; i < 3; i++)
        flexpu_filter_free(filters[i]);
    /* Both outcomes were exercised. */
    assert_true(ok > 100);
    assert_true(fail > 100);
}

/* Trying a gang and undoing it leaves every later decision as it would
 * have been: the same nodes and GPUs, tie draws included. */
static void test_undo_changes_no_decision(void **state)
{
    (void)state;
    int differ = 0;
    for (int round = 0; round < 100; round++) {
        struct flexpu_rng ra, rb, rg;
        flexpu_rng_seed(&ra, 1000 + (uint64_t)round);
        flexpu_rng_seed(&rb, 1000 + (uint64_t)round);
        flexpu_rng_seed(&rg, 7 + (uint64_t)round);
        int na, nb;
        struct flexpu_engine *a = random_cluster(&ra, &na);
        struct flexpu_engine *b = random_cluster(&rb, &nb);
        for (int k = 0; k < 3; k++) {
            struct flexpu_gang_member m[9];
            memset(m, 0, sizeof(m));
            int n = 1 + (int)flexpu_rng_below(&rg, 8);
            for (int i = 0; i < n; i++)
                m[i].req = random_req(&rg);
            flexpu_engine_decide_gang(a, m, n, &rg, NULL, NULL);
            /* The smallest member, tried last, fits nowhere: undone. */
            m[n] = (struct flexpu_gang_member){.req = req(0, 0)};
            m[n].req.cpu_milli = 1000000000;
            n++;
            flexpu_engine_place_gang(a, m, n, &rg, NULL, NULL);
        }
        /* The same classes in the same order, with the same members in the
         * same order. */
        assert_int_equal(a->nlive, b->nlive);
        for (int i = 0; i < a->nlive; i++) {
            assert_int_equal(memcmp(&a->live[i]->key, &b->live[i]->key, sizeof(a->live[i]->key)),
                             0);
            int x = a->live[i]->head, y = b->live[i]->head;
            for (; x >= 0 && y >= 0; x = a->nodes[x].next, y = b->nodes[y].next)
                assert_int_equal(x, y);
            assert_int_equal(x, y);
        }
        for (int k = 0; k < 40; k++) {
            struct flexpu_pod_req r = random_req(&ra);
            struct flexpu_pod_req r2 = random_req(&rb);
            struct flexpu_placement pa, pb;
            int64_t ida, idb;
            int rca = flexpu_engine_place(a, &r, &ra, &pa, &ida, NULL);
            int rcb = flexpu_engine_place(b, &r2, &rb, &pb, &idb, NULL);
            assert_int_equal(rca, rcb);
            if (rca == 0) {
                assert_int_equal(ida, idb);
                differ += !placement_eq(&pa, &pb);
            }
        }
        check(a);
        flexpu_engine_free(a);
        flexpu_engine_free(b);
    }
    assert_int_equal(differ, 0);
}

static void test_random_victims(void **state)
{
    (void)state;
    struct flexpu_rng rng;
    flexpu_rng_seed(&rng, 16);
    int found = 0, none = 0;
    for (int round = 0; round < 300; round++) {
        int nnodes;
        struct flexpu_engine *e = random_cluster(&rng, &nnodes);
        /* Every allocation a candidate with probability 1/2, in random
         * groups. */
        struct flexpu_victim_cand c[256];
        int nc = 0;
        for (int64_t i = 0; i < e->cap_allocs && nc < 256; i++) {
            if (!e->allocs[i].id || flexpu_rng_below(&rng, 2))
                continue;
            c[nc++] = cand(e->allocs[i].id, (double)flexpu_rng_below(&rng, 100),
                           (int)flexpu_rng_below(&rng, 5), (int64_t)flexpu_rng_below(&rng, 4));
        }
        struct flexpu_pod_req r = random_req(&rng);
        r.num_gpu = r.num_gpu ? r.num_gpu + 2 : 0;
        if (r.num_gpu > 1)
            r.gpu_milli = 1000;
        struct snap before;
        snap(e, &before);
        struct flexpu_preemption out;
        int ev[256];
        struct flexpu_noplace why;
        int rc = flexpu_engine_find_victims(e, &r, NULL, c, nc, &out, ev, &why);
        assert_unchanged(e, &before);
        if (rc == FLEXPU_ENOFIT) {
            none++;
            flexpu_engine_free(e);
            continue;
        }
        assert_int_equal(rc, 0);
        found += out.victims > 0;
        assert_true(out.victims <= out.nevicted);
        /* Evicting them makes room where the answer says. */
        struct flexpu_error err;
        for (int i = 0; i < out.nevicted; i++)
            assert_int_equal(flexpu_engine_release(e, c[ev[i]].alloc_id, &err), 0);
        struct flexpu_pod_req eff;
        flexpu_engine_effective_req(e, &r, &eff);
        int64_t id;
        if (flexpu_engine_assign(e, &eff, &out.place, &id, &err))
            fail_msg("round %d: victims' room does not fit: %s", round, err.msg);
        check(e);
        flexpu_engine_free(e);
    }
    assert_true(found > 30);
    assert_true(none > 10);
}

/* Fills a random cluster to the brim, so that gangs need victims. */
static void fill_more(struct flexpu_engine *e, struct flexpu_rng *rng)
{
    for (int i = 0; i < 200; i++) {
        struct flexpu_pod_req r = random_req(rng);
        struct flexpu_placement p;
        int64_t id;
        flexpu_engine_place(e, &r, rng, &p, &id, NULL);
    }
}

static void test_random_gang_victims(void **state)
{
    (void)state;
    struct flexpu_rng rng;
    flexpu_rng_seed(&rng, 17);
    int found = 0, none = 0;
    for (int round = 0; round < 300; round++) {
        int nnodes;
        struct flexpu_engine *e = random_cluster(&rng, &nnodes);
        struct flexpu_victim_cand c[256];
        int nc = 0;
        for (int64_t i = 0; i < e->cap_allocs && nc < 256; i++) {
            if (!e->allocs[i].id || flexpu_rng_below(&rng, 3) != 0)
                continue;
            c[nc++] = cand(e->allocs[i].id, (double)flexpu_rng_below(&rng, 100),
                           (int)flexpu_rng_below(&rng, 5), (int64_t)flexpu_rng_below(&rng, 4));
        }
        int n = 1 + (int)flexpu_rng_below(&rng, 6);
        fill_more(e, &rng);
        struct flexpu_gang_member m[6];
        memset(m, 0, sizeof(m));
        for (int i = 0; i < n; i++)
            m[i].req = random_req(&rng);
        struct snap before;
        snap(e, &before);
        struct flexpu_gang_result res;
        struct flexpu_preemption out;
        int ev[256];
        struct flexpu_noplace why;
        int rc = flexpu_engine_find_gang_victims(e, m, n, c, nc, &res, &out, ev, &why);
        assert_unchanged(e, &before);
        if (rc == FLEXPU_ENOFIT) {
            none++;
            flexpu_engine_free(e);
            continue;
        }
        assert_int_equal(rc, 0);
        found += out.victims > 0;
        assert_true(out.victims <= out.nevicted);
        /* Evicting them makes room for every member where the answer says. */
        struct flexpu_error err;
        for (int i = 0; i < out.nevicted; i++)
            assert_int_equal(flexpu_engine_release(e, c[ev[i]].alloc_id, &err), 0);
        for (int i = 0; i < n; i++) {
            struct flexpu_pod_req eff;
            flexpu_engine_effective_req(e, &m[i].req, &eff);
            int64_t id;
            if (flexpu_engine_assign(e, &eff, &m[i].place, &id, &err))
                fail_msg("round %d member %d: the victims' room does not fit: %s", round, i,
                         err.msg);
            if (res.level == FLEXPU_GANG_NODE)
                assert_int_equal(m[i].place.node, res.node);
        }
        check(e);
        flexpu_engine_free(e);
    }
    assert_true(found > 30);
    assert_true(none > 10);
}

/* Every allocation failing in turn: each call either succeeds or returns
 * FLEXPU_ENOMEM with the engine as it was (undoing never allocates). */
static void test_out_of_memory(void **state)
{
    (void)state;
    int nomem = 0, ok = 0;
    for (long n = 0; n < 300; n++) {
        struct flexpu_engine *e = engine();
        struct flexpu_victim_cand c[6];
        char name[8];
        for (int i = 0; i < 6; i++) {
            snprintf(name, sizeof(name), "n%d", i);
            int id = add_node(e, name, 4, i < 3 ? "c0" : "c1", NULL);
            c[i] = cand(hold(e, id, 2, (int[]){0, 1}, 1000), 1, 0, i % 3);
        }
        struct flexpu_gang_member big[7], small[3];
        members(big, 7, 2, 1000);   /* 6 fit anywhere: undone with 6 placed */
        members(small, 3, 2, 1000); /* one clique */
        struct snap before;
        snap(e, &before);
        struct flexpu_gang_result res;
        struct flexpu_preemption out;
        int ev[6];
        struct flexpu_pod_req four = req(4, 1000);
        fx_alloc_fail_after(n);
        int rc[4] = {flexpu_engine_decide_gang(e, big, 7, NULL, &res, NULL),
                     flexpu_engine_place_gang(e, big, 7, NULL, &res, NULL),
                     flexpu_engine_find_victims(e, &four, NULL, c, 6, &out, ev, NULL),
                     flexpu_engine_find_gang_victims(e, big, 7, c, 6, &res, &out, ev, NULL)};
        int placed = flexpu_engine_place_gang(e, small, 3, NULL, &res, NULL);
        fx_alloc_fail_after(-1);
        int want[4] = {FLEXPU_ENOFIT, FLEXPU_ENOFIT, 0, 0};
        for (int i = 0; i < 4; i++) {
            if (rc[i] != FLEXPU_ENOMEM)
                assert_int_equal(rc[i], want[i]);
            nomem += rc[i] == FLEXPU_ENOMEM;
        }
        if (placed == 0) {
            ok++;
            release_all(e, small, 3);
            before.next_alloc_id = e->next_alloc_id; /* spent by the success */
        } else {
            assert_int_equal(placed, FLEXPU_ENOMEM);
            for (int i = 0; i < 3; i++)
                assert_int_equal(small[i].alloc_id, 0);
        }
        assert_unchanged(e, &before);
        flexpu_engine_free(e);
    }
    /* Failures hit every call at some point, and from some n on all fit. */
    assert_true(nomem > 50);
    assert_true(ok > 200);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_all_or_nothing),
        cmocka_unit_test(test_one_node_best_fit),
        cmocka_unit_test(test_domain_key_order),
        cmocka_unit_test(test_best_fit_domain),
        cmocka_unit_test(test_aggregate_counts_nodes),
        cmocka_unit_test(test_node_priority_ties),
        cmocka_unit_test(test_two_gangs),
        cmocka_unit_test(test_filters_per_member),
        cmocka_unit_test(test_bigger_first),
        cmocka_unit_test(test_victims_fewest),
        cmocka_unit_test(test_victims_least_cost),
        cmocka_unit_test(test_victims_group),
        cmocka_unit_test(test_victims_reprieve),
        cmocka_unit_test(test_victims_none),
        cmocka_unit_test(test_gang_victims),
        cmocka_unit_test(test_gang_victims_group),
        cmocka_unit_test(test_random_gangs),
        cmocka_unit_test(test_undo_changes_no_decision),
        cmocka_unit_test(test_out_of_memory),
        cmocka_unit_test(test_random_victims),
        cmocka_unit_test(test_random_gang_victims),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
