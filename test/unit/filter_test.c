/* SPDX-License-Identifier: Apache-2.0 */
/* Node filters in the engine: taints and tolerations, node selectors,
 * required and preferred node affinity, each rule as kube-scheduler's
 * TaintToleration and NodeAffinity plugins evaluate it, how preference and
 * the policy's cost combine, malformed input, and what a label set costs. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "flexpu/sched.h"
#include "util/alloc.h"

#define NS  FLEXPU_TAINT_NO_SCHEDULE
#define PNS FLEXPU_TAINT_PREFER_NO_SCHEDULE
#define NE  FLEXPU_TAINT_NO_EXECUTE

/* ---- helpers ---------------------------------------------------------- */

static void check(const struct flexpu_engine *e)
{
    struct flexpu_error err = {0};
    if (flexpu_engine_check(e, &err))
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

/* A node of ngpu T4s with "k=v,k=v" labels and up to 4 taints given as
 * "key=value:Effect" (value optional). */
static int node(struct flexpu_engine *e, const char *name, int ngpu, const char *labels,
                const char *taints)
{
    struct flexpu_node_info n;
    memset(&n, 0, sizeof(n));
    n.name = name;
    n.cpu_milli = 64000;
    n.mem_mib = 262144;
    n.labels = labels;
    n.ngpu = ngpu;
    for (int g = 0; g < ngpu; g++)
        n.gpus[g].model = "T4";
    struct flexpu_taint t[4];
    char buf[4][2][128];
    const char *p = taints ? taints : "";
    while (*p && n.ntaints < 4) {
        size_t len = strcspn(p, ",");
        char one[128];
        snprintf(one, sizeof(one), "%.*s", (int)len, p);
        char *colon = strrchr(one, ':');
        assert_non_null(colon);
        *colon = '\0';
        char *eq = strchr(one, '=');
        if (eq)
            *eq = '\0';
        snprintf(buf[n.ntaints][0], 128, "%s", one);
        snprintf(buf[n.ntaints][1], 128, "%s", eq ? eq + 1 : "");
        t[n.ntaints].key = buf[n.ntaints][0];
        t[n.ntaints].value = buf[n.ntaints][1];
        t[n.ntaints].effect = strcmp(colon + 1, "NoSchedule") == 0         ? NS
                              : strcmp(colon + 1, "PreferNoSchedule") == 0 ? PNS
                                                                           : NE;
        n.ntaints++;
        p += len;
        if (*p)
            p++;
    }
    n.taints = t;
    int id = -1;
    struct flexpu_error err;
    if (flexpu_engine_add_node(e, &n, &id, &err))
        fail_msg("add_node %s: %s", name, err.msg);
    return id;
}

static struct flexpu_pod_req slice(int milli)
{
    struct flexpu_pod_req r;
    memset(&r, 0, sizeof(r));
    r.cpu_milli = 1000;
    r.mem_mib = 1024;
    r.num_gpu = 1;
    r.gpu_milli = milli;
    return r;
}

/* Where r goes under f: the node's name, or NULL when it fits nowhere (the
 * reason in why). Places it when commit is set. */
static const char *where(struct flexpu_engine *e, const struct flexpu_filter *f, int milli,
                         int commit, struct flexpu_noplace *why)
{
    struct flexpu_pod_req r = slice(milli);
    struct flexpu_placement p;
    struct flexpu_noplace local;
    struct flexpu_rng rng;
    flexpu_rng_seed(&rng, 7);
    int rc = commit ? flexpu_engine_place_filtered(e, &r, f, &rng, &p, NULL, why ? why : &local)
                    : flexpu_engine_decide_filtered(e, &r, f, &rng, &p, why ? why : &local);
    check(e);
    if (rc == FLEXPU_ENOFIT)
        return NULL;
    assert_int_equal(rc, 0);
    return flexpu_engine_node_name(e, p.node);
}

static void tol(struct flexpu_filter *f, const char *key, enum flexpu_toleration_op op,
                const char *value, enum flexpu_taint_effect effect)
{
    struct flexpu_error err;
    if (flexpu_filter_add_toleration(f, key, op, value, effect, &err))
        fail_msg("toleration: %s", err.msg);
}

static void term(struct flexpu_filter *f, int weight)
{
    struct flexpu_error err;
    assert_int_equal(flexpu_filter_add_term(f, weight, &err), 0);
}

static void expr(struct flexpu_filter *f, const char *key, enum flexpu_match_op op,
                 const char *v1, const char *v2)
{
    const char *vals[2] = {v1, v2};
    int n = v2 ? 2 : v1 ? 1 : 0;
    struct flexpu_error err;
    if (flexpu_filter_add_match(f, false, key, op, vals, n, &err))
        fail_msg("match: %s", err.msg);
}

static void assert_on(const char *got, const char *want)
{
    if (!want && got)
        fail_msg("placed on %s, expected nowhere", got);
    if (want && (!got || strcmp(got, want) != 0))
        fail_msg("placed on %s, expected %s", got ? got : "(nowhere)", want);
}

/* ---- a filter's digest ------------------------------------------------- */

/* Filters built alike have one digest; any toleration, selector or term
 * changed gives another (the model's test for an edited waiting pod). */
static struct flexpu_filter *built(const char *tol_value, const char *zone, int weight)
{
    struct flexpu_filter *f = flexpu_filter_new();
    assert_non_null(f);
    tol(f, "team", FLEXPU_TOL_EQUAL, tol_value, NS);
    term(f, weight);
    expr(f, "zone", FLEXPU_MATCH_IN, zone, NULL);
    return f;
}

static void test_filter_hash(void **state)
{
    (void)state;
    struct flexpu_filter *a = built("a", "z1", 0), *b = built("a", "z1", 0);
    assert_true(flexpu_filter_hash(a) == flexpu_filter_hash(b));
    struct flexpu_filter *other[] = {built("b", "z1", 0), built("a", "z2", 0),
                                     built("a", "z1", 10), flexpu_filter_new()};
    for (size_t i = 0; i < sizeof(other) / sizeof(other[0]); i++) {
        assert_true(flexpu_filter_hash(a) != flexpu_filter_hash(other[i]));
        flexpu_filter_free(other[i]);
    }
    /* One more toleration; two values against their concatenation. */
    tol(b, "nvidia.com/gpu", FLEXPU_TOL_EXISTS, NULL, NS);
    assert_true(flexpu_filter_hash(a) != flexpu_filter_hash(b));
    struct flexpu_filter *x = flexpu_filter_new(), *y = flexpu_filter_new();
    term(x, 0);
    expr(x, "k", FLEXPU_MATCH_IN, "ab", "c");
    term(y, 0);
    expr(y, "k", FLEXPU_MATCH_IN, "a", "bc");
    assert_true(flexpu_filter_hash(x) != flexpu_filter_hash(y));
    assert_true(flexpu_filter_hash(NULL) == flexpu_filter_hash(NULL));
    assert_true(flexpu_filter_hash(NULL) != flexpu_filter_hash(x));
    flexpu_filter_free(a);
    flexpu_filter_free(b);
    flexpu_filter_free(x);
    flexpu_filter_free(y);
}

/* ---- taints and tolerations ------------------------------------------- */

static void test_untolerated_taints_exclude(void **state)
{
    (void)state;
    struct flexpu_engine *e = engine("flexpu");
    node(e, "gpu", 4, NULL, "nvidia.com/gpu=present:NoSchedule");
    node(e, "evict", 4, NULL, "dedicated=ml:NoExecute");
    struct flexpu_noplace why;
    /* No filter at all: taints still apply to every pod. */
    assert_on(where(e, NULL, 500, 0, &why), NULL);
    assert_int_equal(why.rejected[FLEXPU_REJECT_TAINT], 2);
    assert_non_null(strstr(why.text, "2 untolerated taint {"));
    struct flexpu_filter *f = flexpu_filter_new();
    assert_on(where(e, f, 500, 0, NULL), NULL);
    /* Equal with the value: that node only. */
    tol(f, "nvidia.com/gpu", FLEXPU_TOL_EQUAL, "present", NS);
    assert_on(where(e, f, 500, 0, NULL), "gpu");
    flexpu_filter_free(f);
    /* NoExecute excludes like NoSchedule; tolerated, the node is used. */
    f = flexpu_filter_new();
    tol(f, "dedicated", FLEXPU_TOL_EXISTS, NULL, NE);
    assert_on(where(e, f, 500, 0, NULL), "evict");
    flexpu_filter_free(f);
    flexpu_engine_free(e);
}

/* A remote slice's GPU node gets the pod's tolerations and nothing of
 * its node selector: copied, they tolerate what they did; the selector
 * that kept the pod off the node is not copied; a term added next (a
 * rule's scope) applies with them. */
static void test_copy_tolerations(void **state)
{
    (void)state;
    struct flexpu_engine *e = engine("flexpu");
    node(e, "gpu", 4, "zone=z1", "nvidia.com/gpu=present:NoSchedule");
    struct flexpu_filter *src = flexpu_filter_new(), *dst = flexpu_filter_new();
    struct flexpu_error err;
    tol(src, "nvidia.com/gpu", FLEXPU_TOL_EXISTS, NULL, NS);
    assert_int_equal(flexpu_filter_add_selector(src, "zone", "z9", &err), 0);
    assert_on(where(e, src, 500, 0, NULL), NULL);
    assert_on(where(e, dst, 500, 0, NULL), NULL);
    assert_int_equal(flexpu_filter_copy_tolerations(dst, src, &err), 0);
    assert_on(where(e, dst, 500, 0, NULL), "gpu");
    assert_int_equal(flexpu_filter_copy_tolerations(dst, NULL, &err), 0);
    term(dst, 0);
    expr(dst, "zone", FLEXPU_MATCH_IN, "z2", NULL);
    assert_on(where(e, dst, 500, 0, NULL), NULL);
    flexpu_filter_free(src);
    flexpu_filter_free(dst);
    flexpu_engine_free(e);
}

static void test_toleration_matching_rules(void **state)
{
    (void)state;
    struct flexpu_engine *e = engine("bestfit");
    node(e, "t", 2, NULL, "k=v:NoSchedule");
    struct {
        const char *key;
        enum flexpu_toleration_op op;
        const char *value;
        enum flexpu_taint_effect effect;
        int tolerates;
    } cases[] = {
        {"k", FLEXPU_TOL_EQUAL, "v", NS, 1},
        {"k", FLEXPU_TOL_EQUAL, "v", FLEXPU_TAINT_ANY, 1},  /* empty effect: every effect */
        {"k", FLEXPU_TOL_EQUAL, "w", NS, 0},                /* other value */
        {"k", FLEXPU_TOL_EQUAL, "", NS, 0},                 /* Equal "" is not Exists */
        {"k", FLEXPU_TOL_EXISTS, NULL, NS, 1},
        {"k", FLEXPU_TOL_EXISTS, NULL, NE, 0},              /* other effect */
        {"k", FLEXPU_TOL_EXISTS, NULL, PNS, 0},
        {"other", FLEXPU_TOL_EXISTS, NULL, NS, 0},          /* other key */
        {"", FLEXPU_TOL_EXISTS, NULL, FLEXPU_TAINT_ANY, 1}, /* empty key + Exists: everything */
        {"", FLEXPU_TOL_EXISTS, NULL, NS, 1},               /* every key of that effect */
        {"", FLEXPU_TOL_EXISTS, NULL, NE, 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct flexpu_filter *f = flexpu_filter_new();
        tol(f, cases[i].key, cases[i].op, cases[i].value, cases[i].effect);
        const char *got = where(e, f, 100, 0, NULL);
        if (!!got != cases[i].tolerates)
            fail_msg("case %zu (key '%s'): tolerated=%d, expected %d", i, cases[i].key, !!got,
                     cases[i].tolerates);
        flexpu_filter_free(f);
    }
    /* Several taints: each must be tolerated. */
    node(e, "t2", 2, NULL, "a=1:NoSchedule,b=2:NoExecute");
    struct flexpu_filter *f = flexpu_filter_new();
    tol(f, "a", FLEXPU_TOL_EXISTS, NULL, FLEXPU_TAINT_ANY);
    assert_on(where(e, f, 100, 0, NULL), NULL);
    tol(f, "b", FLEXPU_TOL_EQUAL, "2", NE);
    assert_on(where(e, f, 100, 0, NULL), "t2");
    flexpu_filter_free(f);
    /* Numeric operators compare the taint's value with the toleration's. */
    struct flexpu_engine *e2 = engine("bestfit");
    node(e2, "n", 2, NULL, "tier=5:NoSchedule");
    f = flexpu_filter_new();
    tol(f, "tier", FLEXPU_TOL_LT, "6", NS); /* 5 < 6 */
    assert_on(where(e2, f, 100, 0, NULL), "n");
    flexpu_filter_free(f);
    f = flexpu_filter_new();
    tol(f, "tier", FLEXPU_TOL_GT, "5", NS); /* 5 > 5: no */
    assert_on(where(e2, f, 100, 0, NULL), NULL);
    flexpu_filter_free(f);
    flexpu_engine_free(e2);
    flexpu_engine_free(e);
}

static void test_prefer_no_schedule_is_a_score(void **state)
{
    (void)state;
    struct flexpu_engine *e = engine("bestfit");
    int soft = node(e, "soft", 2, NULL, "spot=true:PreferNoSchedule");
    node(e, "plain", 2, NULL, NULL);
    /* bestfit would take the fuller node: fill "soft" half-way first. */
    struct flexpu_pod_req r = slice(500);
    struct flexpu_placement p = {.node = soft, .ngpu = 1, .gpu = {0}, .milli = {500}};
    struct flexpu_error err;
    assert_int_equal(flexpu_engine_assign(e, &r, &p, NULL, &err), 0);
    assert_on(where(e, NULL, 300, 0, NULL), "plain");
    /* Tolerated (PreferNoSchedule or every effect), the fuller node wins. */
    struct flexpu_filter *f = flexpu_filter_new();
    tol(f, "spot", FLEXPU_TOL_EXISTS, NULL, PNS);
    assert_on(where(e, f, 300, 0, NULL), "soft");
    flexpu_filter_free(f);
    /* A NoSchedule toleration does not count for a PreferNoSchedule taint. */
    f = flexpu_filter_new();
    tol(f, "spot", FLEXPU_TOL_EXISTS, NULL, NS);
    assert_on(where(e, f, 300, 0, NULL), "plain");
    flexpu_filter_free(f);
    /* Only a soft node has room: it is used. */
    struct flexpu_engine *e2 = engine("bestfit");
    node(e2, "soft", 2, NULL, "spot=true:PreferNoSchedule");
    node(e2, "cpu", 0, NULL, NULL);
    assert_on(where(e2, NULL, 300, 0, NULL), "soft");
    flexpu_engine_free(e2);
    flexpu_engine_free(e);
}

/* ---- node selector and required affinity ------------------------------ */

static void test_node_selector_exact_match(void **state)
{
    (void)state;
    struct flexpu_engine *e = engine("flexpu");
    node(e, "a", 2, "pool=train,zone=z1", NULL);
    node(e, "b", 2, "pool=serve,zone=z1", NULL);
    node(e, "c", 2, NULL, NULL);
    struct flexpu_filter *f = flexpu_filter_new();
    struct flexpu_error err;
    assert_int_equal(flexpu_filter_add_selector(f, "pool", "serve", &err), 0);
    for (int i = 0; i < 5; i++)
        assert_on(where(e, f, 100, 1, NULL), "b");
    assert_int_equal(flexpu_filter_add_selector(f, "zone", "z2", &err), 0);
    struct flexpu_noplace why;
    assert_on(where(e, f, 100, 0, &why), NULL);
    assert_int_equal(why.rejected[FLEXPU_REJECT_AFFINITY], 3);
    assert_non_null(strstr(why.text, "3 node affinity/selector mismatch"));
    flexpu_filter_free(f);
    /* "pool=" (an empty value) is not an absent label. */
    node(e, "d", 2, "pool=", NULL);
    f = flexpu_filter_new();
    assert_int_equal(flexpu_filter_add_selector(f, "pool", "", &err), 0);
    assert_on(where(e, f, 100, 0, NULL), "d");
    flexpu_filter_free(f);
    flexpu_engine_free(e);
}

static void test_required_affinity_operators(void **state)
{
    (void)state;
    struct flexpu_engine *e = engine("bestfit");
    node(e, "a100", 2, "gpu=a100,gen=8", NULL);
    node(e, "h100", 2, "gpu=h100,gen=9", NULL);
    node(e, "bare", 2, NULL, NULL);
    node(e, "odd", 2, "gen=x", NULL);
    struct {
        const char *key;
        enum flexpu_match_op op;
        const char *v1, *v2;
        const char *fits; /* the nodes that match, in name order */
    } cases[] = {
        {"gpu", FLEXPU_MATCH_IN, "h100", "b200", "h100"},
        {"gpu", FLEXPU_MATCH_IN, "a100", "h100", "a100 h100"},
        {"gpu", FLEXPU_MATCH_NOT_IN, "a100", NULL, "bare h100 odd"}, /* absent label matches */
        {"gpu", FLEXPU_MATCH_EXISTS, NULL, NULL, "a100 h100"},
        {"gpu", FLEXPU_MATCH_DOES_NOT_EXIST, NULL, NULL, "bare odd"},
        {"gen", FLEXPU_MATCH_GT, "8", NULL, "h100"},              /* "x" is no integer */
        {"gen", FLEXPU_MATCH_LT, "9", NULL, "a100"},
        {"gen", FLEXPU_MATCH_GT, "-1", NULL, "a100 h100"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct flexpu_filter *f = flexpu_filter_new();
        term(f, 0);
        expr(f, cases[i].key, cases[i].op, cases[i].v1, cases[i].v2);
        char got[64] = "";
        const char *names[] = {"a100", "bare", "h100", "odd"};
        for (int n = 0; n < 4; n++) {
            int id = flexpu_engine_node_find(e, names[n]);
            if (flexpu_engine_node_filter(e, id, f, NULL, NULL) < 0)
                snprintf(got + strlen(got), sizeof(got) - strlen(got), "%s%s", got[0] ? " " : "",
                         names[n]);
        }
        if (strcmp(got, cases[i].fits) != 0)
            fail_msg("case %zu (%s): matches '%s', expected '%s'", i, cases[i].key, got,
                     cases[i].fits);
        /* And the decision agrees: it lands on one of them, or nowhere. */
        const char *w = where(e, f, 100, 0, NULL);
        assert_true(w ? strstr(cases[i].fits, w) != NULL : cases[i].fits[0] == '\0');
        flexpu_filter_free(f);
    }
    flexpu_engine_free(e);
}

static void test_terms_or_expressions_and(void **state)
{
    (void)state;
    struct flexpu_engine *e = engine("bestfit");
    int a = node(e, "a", 2, "zone=z1,disk=ssd", NULL);
    int b = node(e, "b", 2, "zone=z2,disk=hdd", NULL);
    int c = node(e, "c", 2, "zone=z2,disk=ssd", NULL);
    struct flexpu_filter *f = flexpu_filter_new();
    /* (zone=z1 AND disk=ssd) OR (zone=z2 AND disk=hdd) */
    term(f, 0);
    expr(f, "zone", FLEXPU_MATCH_IN, "z1", NULL);
    expr(f, "disk", FLEXPU_MATCH_IN, "ssd", NULL);
    term(f, 0);
    expr(f, "zone", FLEXPU_MATCH_IN, "z2", NULL);
    expr(f, "disk", FLEXPU_MATCH_IN, "hdd", NULL);
    assert_int_equal(flexpu_engine_node_filter(e, a, f, NULL, NULL), -1);
    assert_int_equal(flexpu_engine_node_filter(e, b, f, NULL, NULL), -1);
    assert_int_equal(flexpu_engine_node_filter(e, c, f, NULL, NULL), FLEXPU_REJECT_AFFINITY);
    flexpu_filter_free(f);
    /* A required term without requirements matches no node; with another
     * term that matches, the node is feasible (terms are ORed). */
    f = flexpu_filter_new();
    term(f, 0);
    assert_int_equal(flexpu_engine_node_filter(e, a, f, NULL, NULL), FLEXPU_REJECT_AFFINITY);
    assert_on(where(e, f, 100, 0, NULL), NULL);
    term(f, 0);
    expr(f, "zone", FLEXPU_MATCH_IN, "z2", NULL);
    assert_int_equal(flexpu_engine_node_filter(e, a, f, NULL, NULL), FLEXPU_REJECT_AFFINITY);
    assert_int_equal(flexpu_engine_node_filter(e, c, f, NULL, NULL), -1);
    /* nodeSelector and affinity must both hold. */
    struct flexpu_error err;
    assert_int_equal(flexpu_filter_add_selector(f, "disk", "hdd", &err), 0);
    assert_int_equal(flexpu_engine_node_filter(e, c, f, NULL, NULL), FLEXPU_REJECT_AFFINITY);
    assert_on(where(e, f, 100, 0, NULL), "b");
    flexpu_filter_free(f);
    flexpu_engine_free(e);
}

static void test_match_fields_and_hostname(void **state)
{
    (void)state;
    struct flexpu_engine *e = engine("flexpu");
    char name[16], labels[96];
    for (int i = 0; i < 8; i++) {
        snprintf(name, sizeof(name), "n%d", i);
        snprintf(labels, sizeof(labels), "pool=p,kubernetes.io/hostname=n%d", i);
        node(e, name, 4, labels, NULL);
    }
    /* The hostname label of each node's own name keeps its set shared: the
     * eight empty nodes are one class. */
    struct flexpu_stats st;
    flexpu_engine_stats(e, &st);
    assert_int_equal(st.classes, 1);
    struct flexpu_filter *f = flexpu_filter_new();
    struct flexpu_error err;
    const char *v = "n5";
    term(f, 0);
    assert_int_equal(flexpu_filter_add_match(f, true, "metadata.name", FLEXPU_MATCH_IN, &v, 1, &err),
                     0);
    for (int i = 0; i < 4; i++)
        assert_on(where(e, f, 200, 1, NULL), "n5");
    flexpu_filter_free(f);
    /* NotIn on the name: anywhere else. */
    f = flexpu_filter_new();
    term(f, 0);
    assert_int_equal(
        flexpu_filter_add_match(f, true, "metadata.name", FLEXPU_MATCH_NOT_IN, &v, 1, &err), 0);
    for (int i = 0; i < 20; i++) {
        const char *w = where(e, f, 100, 0, NULL);
        assert_non_null(w);
        assert_string_not_equal(w, "n5");
    }
    flexpu_filter_free(f);
    /* The hostname label reads as a label, node by node. */
    f = flexpu_filter_new();
    assert_int_equal(flexpu_filter_add_selector(f, "kubernetes.io/hostname", "n2", &err), 0);
    assert_on(where(e, f, 100, 0, NULL), "n2");
    flexpu_filter_free(f);
    f = flexpu_filter_new();
    term(f, 0);
    expr(f, "kubernetes.io/hostname", FLEXPU_MATCH_IN, "n3", "n6");
    for (int i = 0; i < 10; i++) {
        const char *w = where(e, f, 100, 0, NULL);
        assert_true(w && (strcmp(w, "n3") == 0 || strcmp(w, "n6") == 0));
    }
    flexpu_filter_free(f);
    /* A hostname label that is not the node's name is an ordinary label. */
    node(e, "x", 4, "kubernetes.io/hostname=other", NULL);
    f = flexpu_filter_new();
    assert_int_equal(flexpu_filter_add_selector(f, "kubernetes.io/hostname", "other", &err), 0);
    assert_on(where(e, f, 100, 0, NULL), "x");
    flexpu_filter_free(f);
    flexpu_engine_free(e);
}

/* A node's labels read back as the filters see them (the scheduler's
 * choice of a remote pod's node compares them): its own hostname too,
 * NULL for an absent label, an unknown or removed node. */
static void test_node_label_read_back(void **state)
{
    (void)state;
    struct flexpu_engine *e = engine("flexpu");
    int a = node(e, "a", 2, "zone=z1,kubernetes.io/hostname=a", NULL);
    int b = node(e, "b", 2, NULL, NULL);
    assert_string_equal(flexpu_engine_node_label(e, a, "zone"), "z1");
    assert_string_equal(flexpu_engine_node_label(e, a, "kubernetes.io/hostname"), "a");
    assert_null(flexpu_engine_node_label(e, a, "rack"));
    assert_null(flexpu_engine_node_label(e, b, "zone"));
    assert_null(flexpu_engine_node_label(e, -1, "zone"));
    assert_null(flexpu_engine_node_label(e, 99, "zone"));
    struct flexpu_error err;
    assert_int_equal(flexpu_engine_remove_node(e, a, NULL, &err), 0);
    assert_null(flexpu_engine_node_label(e, a, "zone"));
    flexpu_engine_free(e);
}

/* ---- preferred affinity and how it meets the policy ------------------- */

static void test_preferred_affinity_weights(void **state)
{
    (void)state;
    struct flexpu_engine *e = engine("bestfit");
    int a = node(e, "a", 2, "zone=z1,disk=ssd", NULL);
    node(e, "b", 2, "zone=z2,disk=ssd", NULL);
    node(e, "c", 2, "zone=z2,disk=hdd", NULL);
    struct flexpu_filter *f = flexpu_filter_new();
    term(f, 30);
    expr(f, "zone", FLEXPU_MATCH_IN, "z2", NULL);
    term(f, 20);
    expr(f, "disk", FLEXPU_MATCH_IN, "ssd", NULL);
    int aff = -1;
    assert_int_equal(flexpu_engine_node_filter(e, a, f, &aff, NULL), -1);
    assert_int_equal(aff, 20);
    /* b matches both (50), c and a one each. */
    for (int i = 0; i < 3; i++)
        assert_on(where(e, f, 300, 1, NULL), "b");
    flexpu_filter_free(f);
    /* A preferred term never excludes: nothing matches, the pod still fits. */
    f = flexpu_filter_new();
    term(f, 100);
    expr(f, "zone", FLEXPU_MATCH_IN, "nowhere", NULL);
    assert_non_null(where(e, f, 100, 0, NULL));
    flexpu_filter_free(f);
    flexpu_engine_free(e);
}

/* Among equally preferred nodes the policy's cost decides: bestfit takes
 * the fuller of the preferred nodes, not the fullest node overall. */
static void test_preference_then_policy(void **state)
{
    (void)state;
    struct flexpu_engine *e = engine("bestfit");
    int p1 = node(e, "p1", 2, "tier=gold", NULL);
    int p2 = node(e, "p2", 2, "tier=gold", NULL);
    int o = node(e, "other", 2, "tier=bronze", NULL);
    struct flexpu_error err;
    struct flexpu_pod_req r = slice(400);
    struct flexpu_placement pl = {.node = p2, .ngpu = 1, .gpu = {0}, .milli = {400}};
    assert_int_equal(flexpu_engine_assign(e, &r, &pl, NULL, &err), 0);
    r = slice(900);
    pl = (struct flexpu_placement){.node = o, .ngpu = 1, .gpu = {0}, .milli = {900}};
    assert_int_equal(flexpu_engine_assign(e, &r, &pl, NULL, &err), 0);
    (void)p1;
    struct flexpu_filter *f = flexpu_filter_new();
    term(f, 10);
    expr(f, "tier", FLEXPU_MATCH_IN, "gold", NULL);
    assert_on(where(e, f, 100, 0, NULL), "p2");
    /* Without the preference the fullest node overall wins. */
    assert_on(where(e, NULL, 100, 0, NULL), "other");
    flexpu_filter_free(f);
    /* Under flexpu too, preferred nodes come first whatever the policy
     * would choose among all nodes. */
    struct flexpu_engine *e2 = engine("flexpu");
    int g1 = node(e2, "g1", 2, "tier=gold", NULL);
    int g2 = node(e2, "g2", 2, "tier=gold", NULL);
    node(e2, "s", 2, NULL, NULL);
    r = slice(500);
    double w = 1;
    assert_int_equal(flexpu_engine_set_workload(e2, &r, &w, 1, &err), 0);
    pl = (struct flexpu_placement){.node = g2, .ngpu = 1, .gpu = {1}, .milli = {500}};
    assert_int_equal(flexpu_engine_assign(e2, &r, &pl, NULL, &err), 0);
    f = flexpu_filter_new();
    term(f, 1);
    expr(f, "tier", FLEXPU_MATCH_IN, "gold", NULL);
    for (int i = 0; i < 5; i++) {
        struct flexpu_rng rng;
        flexpu_rng_seed(&rng, (uint64_t)i);
        struct flexpu_pod_req q = slice(500);
        struct flexpu_placement out;
        assert_int_equal(flexpu_engine_decide_filtered(e2, &q, f, &rng, &out, NULL), 0);
        assert_true(out.node == g1 || out.node == g2);
    }
    flexpu_filter_free(f);
    flexpu_engine_free(e2);
    flexpu_engine_free(e);
}

/* The two scores as kube-scheduler weighs them by default: a matched
 * preferred term (NodeAffinity, weight 2) does not outweigh an untolerated
 * PreferNoSchedule taint (TaintToleration, weight 3). */
static void test_taint_and_affinity_scores_combine(void **state)
{
    (void)state;
    struct flexpu_engine *e = engine("bestfit");
    node(e, "liked-but-tainted", 2, "want=yes", "spot=1:PreferNoSchedule");
    node(e, "plain", 2, NULL, NULL);
    struct flexpu_filter *f = flexpu_filter_new();
    term(f, 100);
    expr(f, "want", FLEXPU_MATCH_EXISTS, NULL, NULL);
    assert_on(where(e, f, 100, 0, NULL), "plain");
    /* Tolerating the taint, the preference decides. */
    tol(f, "spot", FLEXPU_TOL_EXISTS, NULL, FLEXPU_TAINT_ANY);
    assert_on(where(e, f, 100, 0, NULL), "liked-but-tainted");
    flexpu_filter_free(f);
    /* Fewer untolerated soft taints score higher. */
    struct flexpu_engine *e2 = engine("bestfit");
    node(e2, "two", 2, NULL, "a=1:PreferNoSchedule,b=1:PreferNoSchedule");
    node(e2, "one", 2, NULL, "a=1:PreferNoSchedule");
    assert_on(where(e2, NULL, 100, 0, NULL), "one");
    flexpu_engine_free(e2);
    flexpu_engine_free(e);
}

static void scored(struct flexpu_filter *f, enum flexpu_score score, int weight)
{
    struct flexpu_error err;
    if (flexpu_filter_add_scored(f, score, weight, &err))
        fail_msg("scored term: %s", err.msg);
}

/* InterPodAffinity's scored terms, of any sign, normalised min-max over the
 * feasible nodes and weighed 2: zone b (raw 50) beats c (0) and a (-100);
 * with b's only PreferNoSchedule taint (TaintToleration, weight 3) c wins
 * (2 * 66 + 300 against 2 * 100 + 0). */
static void test_pod_affinity_scores(void **state)
{
    (void)state;
    for (int tainted = 0; tainted < 2; tainted++) {
        struct flexpu_engine *e = engine("bestfit");
        node(e, "a", 2, "zone=a", NULL);
        node(e, "b", 2, "zone=b", tainted ? "spot=1:PreferNoSchedule" : NULL);
        node(e, "c", 2, "zone=c", NULL);
        struct flexpu_filter *f = flexpu_filter_new();
        scored(f, FLEXPU_SCORE_POD_AFFINITY, -100);
        expr(f, "zone", FLEXPU_MATCH_IN, "a", NULL);
        scored(f, FLEXPU_SCORE_POD_AFFINITY, 50);
        expr(f, "zone", FLEXPU_MATCH_IN, "b", NULL);
        assert_on(where(e, f, 100, 0, NULL), tainted ? "c" : "b");
        flexpu_filter_free(f);
        flexpu_engine_free(e);
    }
    struct flexpu_error err;
    struct flexpu_filter *f = flexpu_filter_new();
    assert_int_equal(flexpu_filter_add_scored(f, (enum flexpu_score)7, 1, &err), FLEXPU_EINVAL);
    flexpu_filter_free(f);
}

/* PodTopologySpread's scored terms (thousandths): fewer is better among
 * the nodes a spread term matches (a scores 3, b 0: b gets 100, a 0), and
 * a node no spread term matches (no key) scores 0 however low its raw. */
static void test_spread_scores(void **state)
{
    (void)state;
    struct flexpu_engine *e = engine("bestfit");
    node(e, "a", 2, "zone=a", NULL);
    node(e, "b", 2, "zone=b", NULL);
    node(e, "nokey", 2, NULL, NULL);
    struct flexpu_filter *f = flexpu_filter_new();
    scored(f, FLEXPU_SCORE_SPREAD, 0);
    expr(f, "zone", FLEXPU_MATCH_EXISTS, NULL, NULL);
    scored(f, FLEXPU_SCORE_SPREAD, 2600); /* rounds to 3 */
    expr(f, "zone", FLEXPU_MATCH_IN, "a", NULL);
    assert_on(where(e, f, 100, 0, NULL), "b");
    /* b full: a (0) and nokey (0) tie on preference; both stay feasible */
    assert_on(where(e, f, 1000, 1, NULL), "b");
    assert_on(where(e, f, 1000, 1, NULL), "b");
    const char *w = where(e, f, 100, 0, NULL);
    assert_true(w && (strcmp(w, "a") == 0 || strcmp(w, "nokey") == 0));
    flexpu_filter_free(f);
    flexpu_engine_free(e);
}

/* Long In and NotIn lists (searched by halves once sorted) match exactly
 * their values, given in any order: a scored term over 20 of 24 nodes and
 * a required NotIn over 19 of them leave the one listed only in the
 * first. */
static void test_long_value_lists(void **state)
{
    (void)state;
    struct flexpu_engine *e = engine("bestfit");
    char names[24][8];
    const char *in[20], *notin[19];
    int ids[24];
    for (int i = 0; i < 24; i++) {
        char labels[40];
        snprintf(names[i], sizeof(names[i]), "n%02d", (i * 7) % 24);
        snprintf(labels, sizeof(labels), "kubernetes.io/hostname=%s", names[i]);
        ids[i] = node(e, names[i], 2, labels, NULL);
    }
    for (int i = 0; i < 20; i++)
        in[i] = names[23 - i];
    for (int i = 0; i < 19; i++)
        notin[i] = names[i == 0 ? 23 : 23 - i - 1]; /* all of in[] but in[1] */
    struct flexpu_error err;
    struct flexpu_filter *f = flexpu_filter_new();
    scored(f, FLEXPU_SCORE_POD_AFFINITY, 10);
    assert_int_equal(flexpu_filter_add_match(f, false, "kubernetes.io/hostname", FLEXPU_MATCH_IN,
                                             in, 20, &err),
                     0);
    assert_int_equal(flexpu_filter_add_required(f, "kubernetes.io/hostname",
                                                FLEXPU_MATCH_NOT_IN, notin, 19, &err),
                     0);
    struct flexpu_filter *c = flexpu_filter_copy(f);
    assert_non_null(c);
    assert_on(where(e, c, 100, 0, NULL), names[22]);
    for (int i = 0; i < 24; i++) {
        int excluded = 0;
        for (int j = 0; j < 19; j++)
            excluded |= strcmp(notin[j], names[i]) == 0;
        assert_int_equal(flexpu_engine_node_filter(e, ids[i], f, NULL, NULL),
                         excluded ? FLEXPU_REJECT_AFFINITY : -1);
    }
    flexpu_filter_free(c);
    flexpu_filter_free(f);
    flexpu_engine_free(e);
}

/* ---- malformed input -------------------------------------------------- */

static void test_malformed_filters_name_the_value(void **state)
{
    (void)state;
    struct flexpu_filter *f = flexpu_filter_new();
    struct flexpu_error err;
    assert_int_equal(flexpu_filter_add_toleration(f, "", FLEXPU_TOL_EQUAL, "v", NS, &err),
                     FLEXPU_EINVAL);
    assert_non_null(strstr(err.msg, "toleration.key"));
    assert_non_null(strstr(err.msg, "Exists"));
    assert_int_equal(flexpu_filter_add_toleration(f, "k", FLEXPU_TOL_EXISTS, "v", NS, &err),
                     FLEXPU_EINVAL);
    assert_non_null(strstr(err.msg, "'v'"));
    assert_int_equal(flexpu_filter_add_toleration(f, "k", FLEXPU_TOL_LT, "ten", NS, &err),
                     FLEXPU_EINVAL);
    assert_non_null(strstr(err.msg, "'ten'"));
    assert_int_equal(flexpu_filter_add_toleration(f, "k", (enum flexpu_toleration_op)9, "", NS,
                                                  &err),
                     FLEXPU_EINVAL);
    assert_int_equal(flexpu_filter_add_toleration(f, "k", FLEXPU_TOL_EQUAL, "v",
                                                  (enum flexpu_taint_effect)7, &err),
                     FLEXPU_EINVAL);
    assert_non_null(strstr(err.msg, "effect"));
    /* A requirement before any term. */
    const char *one = "1";
    assert_int_equal(flexpu_filter_add_match(f, false, "k", FLEXPU_MATCH_IN, &one, 1, &err),
                     FLEXPU_EINVAL);
    assert_int_equal(flexpu_filter_add_term(f, 101, &err), FLEXPU_EINVAL);
    assert_non_null(strstr(err.msg, "'101'"));
    assert_int_equal(flexpu_filter_add_term(f, -1, &err), FLEXPU_EINVAL);
    assert_int_equal(flexpu_filter_add_term(f, 0, &err), 0);
    assert_int_equal(flexpu_filter_add_match(f, false, "k", FLEXPU_MATCH_IN, NULL, 0, &err),
                     FLEXPU_EINVAL);
    assert_non_null(strstr(err.msg, "at least one value"));
    assert_int_equal(flexpu_filter_add_match(f, false, "k", FLEXPU_MATCH_EXISTS, &one, 1, &err),
                     FLEXPU_EINVAL);
    assert_non_null(strstr(err.msg, "no values"));
    const char *two[] = {"1", "2"}, *bad = "1.5";
    assert_int_equal(flexpu_filter_add_match(f, false, "k", FLEXPU_MATCH_GT, two, 2, &err),
                     FLEXPU_EINVAL);
    assert_int_equal(flexpu_filter_add_match(f, false, "k", FLEXPU_MATCH_LT, &bad, 1, &err),
                     FLEXPU_EINVAL);
    assert_non_null(strstr(err.msg, "'1.5'"));
    assert_int_equal(flexpu_filter_add_match(f, false, "", FLEXPU_MATCH_EXISTS, NULL, 0, &err),
                     FLEXPU_EINVAL);
    assert_int_equal(flexpu_filter_add_match(f, true, "metadata.uid", FLEXPU_MATCH_IN, &one, 1,
                                             &err),
                     FLEXPU_EINVAL);
    assert_non_null(strstr(err.msg, "metadata.uid"));
    assert_int_equal(flexpu_filter_add_match(f, true, "metadata.name", FLEXPU_MATCH_EXISTS, NULL,
                                             0, &err),
                     FLEXPU_EINVAL);
    assert_int_equal(flexpu_filter_add_match(f, true, "metadata.name", FLEXPU_MATCH_IN, two, 2,
                                             &err),
                     FLEXPU_EINVAL);
    /* Nothing of the refused input stayed: the one empty term matches no node. */
    struct flexpu_engine *e = engine("flexpu");
    node(e, "n", 1, "k=1", NULL);
    assert_on(where(e, f, 100, 0, NULL), NULL);
    flexpu_engine_free(e);
    flexpu_filter_free(f);
}

static void test_malformed_nodes_name_the_field(void **state)
{
    (void)state;
    struct flexpu_engine *e = engine("flexpu");
    struct flexpu_node_info n;
    memset(&n, 0, sizeof(n));
    n.name = "bad";
    n.cpu_milli = 1000;
    n.labels = "zone";
    struct flexpu_error err;
    assert_int_equal(flexpu_engine_add_node(e, &n, NULL, &err), FLEXPU_EINVAL);
    assert_non_null(strstr(err.msg, "node.labels"));
    assert_non_null(strstr(err.msg, "'zone'"));
    n.labels = "a=1,a=2";
    assert_int_equal(flexpu_engine_add_node(e, &n, NULL, &err), FLEXPU_EINVAL);
    assert_non_null(strstr(err.msg, "twice"));
    n.labels = NULL;
    struct flexpu_taint t = {"k", "v", FLEXPU_TAINT_ANY};
    n.taints = &t;
    n.ntaints = 1;
    assert_int_equal(flexpu_engine_add_node(e, &n, NULL, &err), FLEXPU_EINVAL);
    assert_non_null(strstr(err.msg, "node.taints.effect"));
    t.effect = NS;
    t.key = "";
    assert_int_equal(flexpu_engine_add_node(e, &n, NULL, &err), FLEXPU_EINVAL);
    assert_non_null(strstr(err.msg, "node.taints.key"));
    struct flexpu_label l = {"k", NULL};
    n.ntaints = 0;
    n.label_list = &l;
    n.nlabel_list = 1;
    assert_int_equal(flexpu_engine_add_node(e, &n, NULL, &err), FLEXPU_EINVAL);
    assert_int_equal(flexpu_engine_node_count(e), 0);
    check(e);
    flexpu_engine_free(e);
}

/* ---- cost ------------------------------------------------------------- */

static void test_sets_are_shared_and_released(void **state)
{
    (void)state;
    struct flexpu_engine *e = engine("flexpu");
    struct flexpu_label extra[2] = {{"team", "ml"}, {"kubernetes.io/arch", "amd64"}};
    char name[16];
    for (int i = 0; i < 200; i++) {
        struct flexpu_node_info n;
        memset(&n, 0, sizeof(n));
        snprintf(name, sizeof(name), "w%d", i);
        n.name = name;
        n.cpu_milli = 64000;
        n.mem_mib = 65536;
        n.ngpu = 8;
        for (int g = 0; g < 8; g++)
            n.gpus[g].model = "A100";
        n.label_list = extra;
        n.nlabel_list = 2;
        struct flexpu_taint t = {"gpu", "", NS};
        n.taints = i % 2 ? &t : NULL;
        n.ntaints = i % 2;
        struct flexpu_error err;
        assert_int_equal(flexpu_engine_add_node(e, &n, NULL, &err), 0);
    }
    struct flexpu_stats st;
    flexpu_engine_stats(e, &st);
    assert_int_equal(st.classes, 2); /* tainted and untainted: two sets, two classes */
    /* Half tolerate nothing: only untainted nodes take the pod. */
    for (int i = 0; i < 50; i++) {
        const char *w = where(e, NULL, 1000, 1, NULL);
        assert_non_null(w);
        int id = flexpu_engine_node_find(e, w);
        assert_int_equal(id % 2, 0);
    }
    /* Removing and adding nodes back reuses the sets. */
    for (int i = 0; i < 200; i += 3) {
        struct flexpu_error err;
        assert_int_equal(flexpu_engine_remove_node(e, i, NULL, &err), 0);
    }
    check(e);
    node(e, "new", 8, "team=ml", "gpu:NoSchedule");
    check(e);
    flexpu_engine_free(e);
}

static void test_out_of_memory_is_clean(void **state)
{
    (void)state;
    for (long n = 0; n < 200; n++) {
        struct flexpu_engine *e = flexpu_engine_new();
        struct flexpu_filter *f = e ? flexpu_filter_new() : NULL;
        if (!e || !f) {
            flexpu_filter_free(f);
            flexpu_engine_free(e);
            continue;
        }
        fx_alloc_fail_after(n);
        int ok = 1;
        for (int i = 0; i < 4 && ok; i++) {
            char name[8];
            snprintf(name, sizeof(name), "n%d", i);
            struct flexpu_node_info info;
            memset(&info, 0, sizeof(info));
            info.name = name;
            info.cpu_milli = 8000;
            info.mem_mib = 8192;
            info.labels = i % 2 ? "a=1,b=2" : "a=1";
            struct flexpu_taint t = {"k", "v", PNS};
            info.taints = &t;
            info.ntaints = 1;
            info.ngpu = 1;
            info.gpus[0].model = "T4";
            int rc = flexpu_engine_add_node(e, &info, NULL, NULL);
            ok = rc == 0;
            if (!ok)
                assert_int_equal(rc, FLEXPU_ENOMEM);
        }
        const char *vals[] = {"1", "2"};
        int rc = 0;
        if (ok && !(rc = flexpu_filter_add_toleration(f, "k", FLEXPU_TOL_EXISTS, NULL, PNS, NULL)) &&
            !(rc = flexpu_filter_add_selector(f, "a", "1", NULL)) &&
            !(rc = flexpu_filter_add_term(f, 5, NULL)))
            rc = flexpu_filter_add_match(f, false, "b", FLEXPU_MATCH_IN, vals, 2, NULL);
        if (rc)
            assert_int_equal(rc, FLEXPU_ENOMEM);
        fx_alloc_fail_after(-1);
        check(e);
        if (ok && !rc) {
            struct flexpu_pod_req r = slice(100);
            struct flexpu_placement p;
            assert_int_equal(flexpu_engine_decide_filtered(e, &r, f, NULL, &p, NULL), 0);
            /* n1 and n3 match both (one class); n0 and n2 only the selector. */
            const char *w = flexpu_engine_node_name(e, p.node);
            assert_true(strcmp(w, "n1") == 0 || strcmp(w, "n3") == 0);
        }
        flexpu_filter_free(f);
        flexpu_engine_free(e);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_filter_hash),
        cmocka_unit_test(test_untolerated_taints_exclude),
        cmocka_unit_test(test_copy_tolerations),
        cmocka_unit_test(test_toleration_matching_rules),
        cmocka_unit_test(test_prefer_no_schedule_is_a_score),
        cmocka_unit_test(test_node_selector_exact_match),
        cmocka_unit_test(test_required_affinity_operators),
        cmocka_unit_test(test_terms_or_expressions_and),
        cmocka_unit_test(test_match_fields_and_hostname),
        cmocka_unit_test(test_node_label_read_back),
        cmocka_unit_test(test_preferred_affinity_weights),
        cmocka_unit_test(test_preference_then_policy),
        cmocka_unit_test(test_taint_and_affinity_scores_combine),
        cmocka_unit_test(test_pod_affinity_scores),
        cmocka_unit_test(test_spread_scores),
        cmocka_unit_test(test_long_value_lists),
        cmocka_unit_test(test_malformed_filters_name_the_value),
        cmocka_unit_test(test_malformed_nodes_name_the_field),
        cmocka_unit_test(test_sets_are_shared_and_released),
        cmocka_unit_test(test_out_of_memory_is_clean),
    };
    return cmocka_run_group_tests_name("filter", tests, NULL, NULL);
}
