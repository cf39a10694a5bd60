/* SPDX-License-Identifier: Apache-2.0 */
/* The scheduler's model with queues and pod groups: which pods it binds
 * when queues with guarantees, weights and limits compete for one node, how
 * pods naming a queue that does not exist, or held by a limit, come back,
 * and gangs placed all or none. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "flexpu/queue.h"
#include "scheduler/model.h"

#include "model_fixture.h"

/* A Ready node with n A100s (80 GiB), 64 CPUs and 256 GiB. */
static void add_node(struct fx_model *m, const char *name, int ngpu)
{
    a100_node_with(m, name, ngpu, "64", "256Gi");
}

/* A model with one node, n1, of ngpu A100s. */
static struct fx_model *model_n1(int ngpu)
{
    struct fx_model *m = new_model();
    add_node(m, "n1", ngpu);
    return m;
}

/* A pending pod of ours asking `gpus` whole GPUs, in queue q (NULL: no
 * label), created at second `sec`. */
static json_t *queued_pod(const char *uid, const char *q, int gpus, int sec)
{
    char created[40], n[16];
    snprintf(created, sizeof(created), "2026-01-01T00:00:%02dZ", sec);
    snprintf(n, sizeof(n), "%d", gpus);
    json_t *labels = json_object();
    if (q)
        json_object_set_new(labels, "flexpu.io/queue", json_string(q));
    json_t *p = json_pack("{s:{s:s, s:s, s:s, s:s, s:o}, s:{s:s, s:[{s:s, s:{s:{s:s, s:s}}}]}}",
                          "metadata", "name", uid, "namespace", "t", "uid", uid,
                          "creationTimestamp", created, "labels", labels, "spec", "schedulerName",
                          "flexpu-scheduler", "containers", "name", "c", "resources", "limits",
                          "cpu", "1", "flexpu.io/gpu", n);
    assert_non_null(p);
    return p;
}

/* Pod p told to the model as event ev, and released. */
static void pod_event(struct fx_model *m, enum kube_event ev, json_t *p)
{
    fx_model_pod_event(m, ev, p);
    json_decref(p);
}

/* queued_pod() as a member of pod group `group` (min-members `min`). */
static json_t *member_pod(const char *uid, const char *q, const char *group, int min, int gpus,
                          int sec)
{
    json_t *p = queued_pod(uid, q, gpus, sec);
    json_t *md = json_object_get(p, "metadata");
    json_object_set_new(json_object_get(md, "labels"), "flexpu.io/pod-group", json_string(group));
    char n[16];
    snprintf(n, sizeof(n), "%d", min);
    json_object_set_new(md, "annotations", json_pack("{s:s}", "flexpu.io/min-members", n));
    return p;
}

/* A member of pod group `group` (min-members `min`); bound to `node` with
 * whole GPU `gpu` when node is not NULL. */
static void add_member(struct fx_model *m, const char *uid, const char *group, int min, int gpus,
                       int sec, const char *node, int gpu)
{
    json_t *p = member_pod(uid, NULL, group, min, gpus, sec);
    json_t *ann = json_object_get(json_object_get(p, "metadata"), "annotations");
    if (node) {
        char alloc[256];
        snprintf(alloc, sizeof(alloc),
                 "{\"gpus\":[{\"uuid\":\"GPU-%s-%d\",\"index\":%d,\"cores\":100,"
                 "\"memory\":0}]}",
                 node, gpu, gpu);
        json_object_set_new(ann, "flexpu.io/allocation", json_string(alloc));
        json_object_set_new(json_object_get(p, "spec"), "nodeName", json_string(node));
    }
    pod_event(m, KUBE_ADDED, p);
}

/* n pending members PREFIX0..PREFIXn-1 of pod group `group`, each asking
 * `gpus`, created at seconds sec0.. */
static void add_members(struct fx_model *m, const char *prefix, const char *group, int n, int min,
                        int gpus, int sec0)
{
    for (int i = 0; i < n; i++) {
        char uid[16];
        snprintf(uid, sizeof(uid), "%s%d", prefix, i);
        add_member(m, uid, group, min, gpus, sec0 + i, NULL, 0);
    }
}

static void add_pod(struct fx_model *m, const char *uid, const char *q, int gpus, int sec)
{
    pod_event(m, KUBE_ADDED, queued_pod(uid, q, gpus, sec));
}

/* n one-GPU pods PREFIX0..PREFIXn-1 in queue q, created at seconds sec0.. */
static void add_pods(struct fx_model *m, const char *prefix, const char *q, int n, int sec0)
{
    for (int i = 0; i < n; i++) {
        char uid[16];
        snprintf(uid, sizeof(uid), "%s%d", prefix, i);
        add_pod(m, uid, q, 1, sec0 + i);
    }
}

static void set_queue(struct fx_model *m, const char *name, const char *parent, int64_t gpu_guar,
                      int64_t gpu_limit, double weight)
{
    struct flexpu_queue_info q = {.name = name, .parent = parent, .weight = weight};
    for (int r = 0; r < FLEXPU_RES_COUNT_; r++)
        q.limit[r] = FLEXPU_QUEUE_UNLIMITED;
    q.guaranteed[FLEXPU_RES_GPU] = gpu_guar;
    q.limit[FLEXPU_RES_GPU] = gpu_limit;
    struct flexpu_error err = {0};
    if (fx_model_queue_set(m, &q, &err))
        fail_msg("fx_model_queue_set %s: %s", name, err.msg);
}

/* Runs the model until it has nothing to do; counts binds by the uid's
 * first letter (the tests name pods after their queue) and keeps the last
 * wait message of any pod whose uid starts with `watch`, with why it
 * waits (its PodScheduled reason) and when its condition turned False. */
struct tally {
    int binds[26];
    int waits;
    char msg[400];
    enum fx_wait why;
    int64_t since_s;
};

static void drain(struct fx_model *m, struct tally *t, char watch)
{
    struct fx_attempt at;
    while (fx_model_next(m, &at)) {
        if (at.outcome == FX_BIND) {
            t->binds[at.uid[0] - 'a']++;
            fx_model_bind_done(m, at.uid, 0, 0);
        } else if (at.outcome == FX_WAIT) {
            t->waits++;
            if (at.uid[0] == watch) {
                snprintf(t->msg, sizeof(t->msg), "%s", at.message);
                t->why = at.wait;
                t->since_s = at.unscheduled_since_s;
            }
        } else {
            fail_msg("pod %s invalid: %s", at.uid, at.message);
        }
    }
    struct flexpu_error err = {0};
    if (fx_model_check(m, &err))
        fail_msg("model invariants: %s", err.msg);
}

/* drain() into a fresh tally. */
static struct tally drained(struct fx_model *m, char watch)
{
    struct tally t = {0};
    drain(m, &t, watch);
    return t;
}

/* Two queues each guaranteed half of an 8-GPU node, each asking for all
 * of it, the first queue's pods all older: each gets its 4 (without queues
 * the older pods would take all 8). */
static void test_guarantees_split_the_node(void **state)
{
    (void)state;
    struct fx_model *m = model_n1(8);
    set_queue(m, "a", NULL, 4, FLEXPU_QUEUE_UNLIMITED, 1);
    set_queue(m, "b", NULL, 4, FLEXPU_QUEUE_UNLIMITED, 1);
    add_pods(m, "a", "a", 8, 0);
    add_pods(m, "b", "b", 8, 20);
    struct tally t = {0};
    drain(m, &t, 0);
    assert_int_equal(t.binds[0], 4);
    assert_int_equal(t.binds[1], 4);
    struct flexpu_queue_status st;
    int a = -1;
    for (int i = 0; i < fx_model_queue_count(m); i++)
        if (fx_model_queue_get(m, i, &st) && strcmp(st.name, "a") == 0)
            a = i;
    assert_true(a >= 0);
    assert_true(fx_model_queue_get(m, a, &st));
    assert_int_equal(st.allocated[FLEXPU_RES_GPU], 4);
    assert_int_equal(st.pending[FLEXPU_RES_GPU], 4);
    assert_int_equal(st.fair_share[FLEXPU_RES_GPU], 4);
    fx_model_free(m);
}

/* The same when the pods are seen before their queues (the daemon's
 * watches race at start): the queues take them over. */
static void test_pods_before_queues(void **state)
{
    (void)state;
    struct fx_model *m = model_n1(8);
    add_pods(m, "a", "a", 6, 0);
    add_pods(m, "b", "b", 6, 20);
    set_queue(m, "a", NULL, 4, FLEXPU_QUEUE_UNLIMITED, 1);
    set_queue(m, "b", NULL, 4, FLEXPU_QUEUE_UNLIMITED, 1);
    struct tally t = {0};
    drain(m, &t, 0);
    assert_int_equal(t.binds[0], 4);
    assert_int_equal(t.binds[1], 4);
    fx_model_free(m);
}

/* No guarantees, weights 1 and 3: the node splits 2 / 6. */
static void test_weights_split_what_is_left(void **state)
{
    (void)state;
    struct fx_model *m = model_n1(8);
    set_queue(m, "a", NULL, 0, FLEXPU_QUEUE_UNLIMITED, 1);
    set_queue(m, "b", NULL, 0, FLEXPU_QUEUE_UNLIMITED, 3);
    add_pods(m, "a", "a", 8, 0);
    add_pods(m, "b", "b", 8, 20);
    struct tally t = {0};
    drain(m, &t, 0);
    assert_int_equal(t.binds[0], 2);
    assert_int_equal(t.binds[1], 6);
    fx_model_free(m);
}

/* A queue with no demand lends its guarantee: the busy one takes the node. */
static void test_idle_queue_lends(void **state)
{
    (void)state;
    struct fx_model *m = model_n1(8);
    set_queue(m, "a", NULL, 2, FLEXPU_QUEUE_UNLIMITED, 1);
    set_queue(m, "b", NULL, 6, FLEXPU_QUEUE_UNLIMITED, 1);
    add_pods(m, "a", "a", 10, 0);
    struct tally t = {0};
    drain(m, &t, 0);
    assert_int_equal(t.binds[0], 8);
    fx_model_free(m);
}

/* A limit holds pods back with a message naming it; a pod of the queue
 * ending lets the next one go. */
static void test_limit_holds_then_releases(void **state)
{
    (void)state;
    struct fx_model *m = model_n1(8);
    set_queue(m, "a", NULL, 0, 2, 1);
    add_pod(m, "a0", "a", 1, 0);
    add_pod(m, "a1", "a", 1, 1);
    add_pod(m, "a2", "a", 1, 2);
    struct tally t = drained(m, 'a');
    assert_int_equal(t.binds[0], 2);
    assert_int_equal(t.waits, 1);
    if (!strstr(t.msg, "limit") || !strstr(t.msg, "a"))
        fail_msg("the wait does not name the queue and its limit: %s", t.msg);
    assert_int_equal(t.why, FX_WAIT_QUEUE_LIMIT); /* no node ends it: not Unschedulable */
    /* Nothing changes while the queue is full: no new message, no bind. */
    struct tally t2 = drained(m, 'a');
    assert_int_equal(t2.binds[0] + t2.waits, 0);
    /* a0 ends: a2 goes. */
    pod_event(m, KUBE_DELETED, queued_pod("a0", "a", 1, 0));
    struct tally t3 = drained(m, 'a');
    assert_int_equal(t3.binds[0], 1);
    fx_model_free(m);
}

/* queued_pod() asking `cpu` CPUs instead of 1. */
static json_t *cpu_pod(const char *uid, const char *q, const char *cpu, int sec)
{
    json_t *p = queued_pod(uid, q, 1, sec);
    json_t *c = json_array_get(json_object_get(json_object_get(p, "spec"), "containers"), 0);
    json_object_set_new(json_object_get(json_object_get(c, "resources"), "limits"), "cpu",
                        json_string(cpu));
    return p;
}

/* A pod held by its queue's limit whose CPU request its user lowers (an
 * in-place resize: Kubernetes lets CPU and memory change on a pod) so it
 * fits within the limit goes at once, as any waiting pod whose inputs
 * change (fx_model_pod_event), not when the queue's allocation next goes
 * down (in a quiet cluster, never); one waiting for a queue that does not
 * exist, relabelled to another missing queue, is told the new name. */
static void test_limited_pod_edited(void **state)
{
    (void)state;
    struct fx_model *m = model_n1(8);
    struct flexpu_queue_info q = {.name = "a", .weight = 1};
    for (int r = 0; r < FLEXPU_RES_COUNT_; r++)
        q.limit[r] = FLEXPU_QUEUE_UNLIMITED;
    q.limit[FLEXPU_RES_CPU] = 3000; /* milli */
    struct flexpu_error err = {0};
    if (fx_model_queue_set(m, &q, &err))
        fail_msg("fx_model_queue_set: %s", err.msg);
    pod_event(m, KUBE_ADDED, cpu_pod("a0", "a", "1", 0));
    pod_event(m, KUBE_ADDED, cpu_pod("a1", "a", "3", 1));
    add_pod(m, "g0", "ghost", 1, 2);
    struct tally t = drained(m, 'a');
    assert_int_equal(t.binds[0], 1);
    assert_int_equal(t.waits, 2);
    assert_non_null(strstr(t.msg, "limit"));
    /* An update that changes nothing it asks: still held, nothing said. */
    pod_event(m, KUBE_MODIFIED, cpu_pod("a1", "a", "3", 1));
    struct tally t2 = drained(m, 'a');
    assert_int_equal(t2.binds[0] + t2.waits, 0);
    /* 3 CPUs -> 2: within the limit with a0's 1. */
    pod_event(m, KUBE_MODIFIED, cpu_pod("a1", "a", "2", 1));
    struct tally t3 = drained(m, 'a');
    assert_int_equal(t3.binds[0], 1);
    assert_int_equal(t3.waits, 0);
    /* ghost -> ghost2, neither defined: told the queue it names now. */
    pod_event(m, KUBE_MODIFIED, queued_pod("g0", "ghost2", 1, 2));
    struct tally t4 = drained(m, 'g');
    assert_int_equal(t4.waits, 1);
    if (!strstr(t4.msg, "queue \"ghost2\" does not exist"))
        fail_msg("the wait names another queue: %s", t4.msg);
    assert_int_equal(t4.why, FX_WAIT_NO_QUEUE);
    fx_model_free(m);
}

/* A parent's limit binds its children together. */
static void test_parent_limit_caps_children(void **state)
{
    (void)state;
    struct fx_model *m = model_n1(8);
    set_queue(m, "org", NULL, 0, 3, 1);
    set_queue(m, "c1", "org", 0, FLEXPU_QUEUE_UNLIMITED, 1);
    set_queue(m, "d1", "org", 0, FLEXPU_QUEUE_UNLIMITED, 1);
    add_pods(m, "c", "c1", 4, 0);
    add_pods(m, "d", "d1", 4, 10);
    struct tally t = drained(m, 'c');
    assert_int_equal(t.binds['c' - 'a'] + t.binds['d' - 'a'], 3);
    assert_true(t.binds['c' - 'a'] >= 1 && t.binds['d' - 'a'] >= 1);
    fx_model_free(m);
}

/* A pod naming a queue nobody created waits, told so; creating the queue
 * lets it go. */
static void test_missing_queue_waits_until_created(void **state)
{
    (void)state;
    struct fx_model *m = model_n1(8);
    add_pod(m, "g0", "ghost", 1, 0);
    struct tally t = drained(m, 'g');
    assert_int_equal(t.binds['g' - 'a'], 0);
    assert_non_null(strstr(t.msg, "queue \"ghost\" does not exist"));
    assert_int_equal(t.why, FX_WAIT_NO_QUEUE);
    set_queue(m, "ghost", NULL, 1, FLEXPU_QUEUE_UNLIMITED, 1);
    struct tally t2 = drained(m, 'g');
    assert_int_equal(t2.binds['g' - 'a'], 1);
    /* Removing the queue leaves the bound pod charged to it, and a new pod
     * naming it waits again. */
    struct flexpu_error err = {0};
    assert_int_equal(fx_model_queue_remove(m, "ghost", &err), 0);
    add_pod(m, "g1", "ghost", 1, 5);
    struct tally t3 = drained(m, 'g');
    assert_int_equal(t3.binds['g' - 'a'], 0);
    assert_non_null(strstr(t3.msg, "does not exist"));
    fx_model_free(m);
}

/* Pods without a label share the default queue with its defaults. */
static void test_unlabelled_pods_use_default(void **state)
{
    (void)state;
    struct fx_model *m = model_n1(2);
    add_pod(m, "x0", NULL, 1, 0);
    add_pod(m, "x1", NULL, 1, 1);
    add_pod(m, "x2", NULL, 1, 2);
    struct tally t = drained(m, 'x');
    assert_int_equal(t.binds['x' - 'a'], 2);
    int d = -1;
    struct flexpu_queue_status st;
    for (int i = 0; i < fx_model_queue_count(m); i++)
        if (fx_model_queue_get(m, i, &st) && strcmp(st.name, FLEXPU_QUEUE_DEFAULT) == 0)
            d = i;
    assert_true(d >= 0 && fx_model_queue_get(m, d, &st));
    assert_int_equal(st.allocated[FLEXPU_RES_GPU], 2);
    assert_int_equal(st.pending[FLEXPU_RES_GPU], 1);
    assert_int_equal(st.allocated[FLEXPU_RES_CPU], 2000);
    fx_model_free(m);
}

/* A gang of 3 x 4 GPUs on one 8-GPU node: nothing is placed (no member
 * holds anything while it waits); a second node lets all three go. */
static void test_gang_all_or_nothing(void **state)
{
    (void)state;
    struct fx_model *m = model_n1(8);
    add_members(m, "g", "train", 3, 3, 4, 0);
    struct tally t = drained(m, 'g');
    assert_int_equal(t.binds['g' - 'a'], 0);
    assert_non_null(strstr(t.msg, "do not fit together"));
    assert_int_equal(t.why, FX_WAIT_ROOM); /* a node more would place them */
    struct flexpu_queue_status st;
    assert_true(fx_model_queue_get(m, fx_model_queue_find(m, FLEXPU_QUEUE_DEFAULT), &st));
    assert_int_equal(st.allocated[FLEXPU_RES_GPU], 0);
    add_node(m, "n2", 8);
    struct tally t2 = drained(m, 'g');
    assert_int_equal(t2.binds['g' - 'a'], 3);
    fx_model_free(m);
}

/* A gang waits, told so, until min-members of it exist. */
static void test_gang_waits_for_members(void **state)
{
    (void)state;
    struct fx_model *m = model_n1(8);
    add_members(m, "g", "job", 2, 3, 1, 0);
    struct tally t = drained(m, 'g');
    assert_int_equal(t.binds['g' - 'a'], 0);
    assert_non_null(strstr(t.msg, "2 of 3 exist"));
    assert_int_equal(t.why, FX_WAIT_POD_GROUP); /* no node brings the third */
    add_member(m, "g2", "job", 3, 1, 2, NULL, 0);
    struct tally t2 = drained(m, 'g');
    assert_int_equal(t2.binds['g' - 'a'], 3);
    /* A fourth member beyond the minimum is placed on its own. */
    add_member(m, "g3", "job", 3, 1, 3, NULL, 0);
    struct tally t3 = drained(m, 'g');
    assert_int_equal(t3.binds['g' - 'a'], 1);
    fx_model_free(m);
}

/* The members still waiting after each attempt until nothing is left to
 * do: every one must be a wait of pod `prefix`N, saying `says` for reason
 * `why`; returns how many were told, at most once each. */
static int retold(struct fx_model *m, char prefix, const char *says, enum fx_wait why)
{
    struct fx_attempt at;
    bool seen[10] = {false};
    int n = 0;
    while (fx_model_next(m, &at)) {
        if (at.outcome != FX_WAIT || at.uid[0] != prefix)
            fail_msg("outcome %d for %s (%s); expected a wait of a %c member", at.outcome,
                     at.uid, at.message, prefix);
        if (!strstr(at.message, says) || at.wait != why)
            fail_msg("%s told \"%s\" (reason %d); expected \"%s\" (reason %d)", at.uid,
                     at.message, at.wait, says, why);
        int i = at.uid[1] - '0';
        assert_false(seen[i]);
        seen[i] = true;
        n++;
    }
    model_checked(m);
    return n;
}

/* Every member tried with the group is told why it waits, not only the
 * one whose turn it was: the others were told PodGroupIncomplete while
 * the group was short, and a reason left so would hide from autoscalers
 * the members that more nodes would place. */
static void test_gang_members_all_told(void **state)
{
    (void)state;
    struct fx_model *m = model_n1(8);
    add_members(m, "g", "train", 2, 3, 4, 0);
    struct fx_attempt at;
    enum fx_wait last[3] = {FX_WAIT_ERROR, FX_WAIT_ERROR, FX_WAIT_ERROR};
    char said[3][400] = {{0}};
    for (int round = 0; round < 2; round++) {
        if (round == 1)
            add_member(m, "g2", "train", 3, 4, 2, NULL, 0);
        while (fx_model_next(m, &at)) {
            assert_int_equal(at.outcome, FX_WAIT);
            last[at.uid[1] - '0'] = at.wait;
            snprintf(said[at.uid[1] - '0'], sizeof(said[0]), "%s", at.message);
        }
        for (int i = 0; i < 2 + round; i++)
            assert_int_equal(last[i], round ? FX_WAIT_ROOM : FX_WAIT_POD_GROUP);
    }
    for (int i = 0; i < 3; i++)
        assert_non_null(strstr(said[i], "do not fit together"));
    /* Told once: nothing new to say. */
    assert_false(fx_model_next(m, &at));
    /* A member to be told that is deleted first is not told; the two
     * left are told what holds them now (a member is missing), not why
     * the three did not fit together. */
    add_members(m, "h", "eval", 3, 3, 4, 3);
    assert_true(fx_model_next(m, &at));
    assert_int_equal(at.outcome, FX_WAIT);
    gone(m, strcmp(at.uid, "h2") != 0 ? "h2" : "h1");
    assert_int_equal(retold(m, 'h', "2 of 3 exist", FX_WAIT_POD_GROUP), 2);
    fx_model_free(m);
}

/* Three members tried together and told they do not fit together
 * (Unschedulable, which autoscalers add nodes for); one deleted: the two
 * left are tried again at once and told the group now waits for a member
 * (PodGroupIncomplete), not left saying its 3 missing members do not fit
 * (a node more would not place them now). Before, nothing was decided:
 * a deleted waiting member frees no capacity to wake them. */
static void test_gang_member_deleted_retold(void **state)
{
    (void)state;
    struct fx_model *m = model_n1(8);
    add_members(m, "g", "train", 3, 3, 4, 0);
    assert_int_equal(retold(m, 'g', "its 3 missing members do not fit together", FX_WAIT_ROOM),
                     3);
    gone(m, "g2");
    assert_int_equal(retold(m, 'g', "2 of 3 exist", FX_WAIT_POD_GROUP), 2);
    /* Back to three: tried together, told again why they do not fit. */
    add_member(m, "g2", "train", 3, 4, 2, NULL, 0);
    assert_int_equal(retold(m, 'g', "do not fit together", FX_WAIT_ROOM), 3);
    fx_model_free(m);
}

/* A member refused for its min-members is told a member carrying the
 * group's value by name; that member deleted while another still carries
 * it, the refused one is told anew, naming the one left, and the member
 * left is told how many members exist now. Before, the refusal kept
 * naming the deleted pod. */
static void test_gang_refusal_names_no_deleted_member(void **state)
{
    (void)state;
    struct fx_model *m = model_n1(8);
    add_member(m, "g0", "job", 3, 1, 0, NULL, 0);
    add_member(m, "g1", "job", 3, 1, 1, NULL, 0);
    add_member(m, "r0", "job", 2, 1, 2, NULL, 0);
    struct fx_attempt at;
    char named[16] = "";
    while (fx_model_next(m, &at)) {
        const char *carrier = strstr(at.message, " but pod t/");
        if (at.outcome == FX_INVALID && strcmp(at.uid, "r0") == 0 && carrier)
            sscanf(carrier, " but pod t/%15[^ ] has", named);
    }
    if (strcmp(named, "g0") != 0 && strcmp(named, "g1") != 0)
        fail_msg("r0's refusal names no carrier: \"%s\"", named);
    const char *left = strcmp(named, "g0") == 0 ? "g1" : "g0";
    gone(m, named);
    bool refused = false, counted = false;
    while (fx_model_next(m, &at)) {
        if (at.outcome == FX_INVALID && strcmp(at.uid, "r0") == 0) {
            char want[80];
            snprintf(want, sizeof(want), "but pod t/%s has '3'", left);
            if (!strstr(at.message, want))
                fail_msg("r0 told \"%s\"; expected it to name %s", at.message, left);
            refused = true;
        } else if (at.outcome == FX_WAIT && strcmp(at.uid, left) == 0) {
            if (!strstr(at.message, "1 of 3 exist"))
                fail_msg("%s told \"%s\"; expected 1 of 3 exist", left, at.message);
            counted = true;
        } else {
            fail_msg("outcome %d for %s (%s)", at.outcome, at.uid, at.message);
        }
    }
    assert_true(refused);
    assert_true(counted);
    model_checked(m);
    fx_model_free(m);
}

/* Two gangs that each fit alone but not together: one is placed whole,
 * the other holds nothing (no deadlock of two half-placed gangs). */
static void test_two_gangs_no_deadlock(void **state)
{
    (void)state;
    struct fx_model *m = model_n1(8);
    /* Interleaved arrivals: a0 b0 a1 b1. */
    add_member(m, "a0", "a", 2, 3, 0, NULL, 0);
    add_member(m, "b0", "b", 2, 3, 1, NULL, 0);
    add_member(m, "a1", "a", 2, 3, 2, NULL, 0);
    add_member(m, "b1", "b", 2, 3, 3, NULL, 0);
    struct tally t = drained(m, 'b');
    assert_int_equal(t.binds[0] + t.binds[1], 2);
    assert_true(t.binds[0] == 2 || t.binds[1] == 2);
    fx_model_free(m);
}

/* Members that disagree on min-members: the newcomer is invalid, told
 * both values. */
static void test_gang_disagreement_invalid(void **state)
{
    (void)state;
    struct fx_model *m = model_n1(8);
    add_member(m, "g0", "job", 2, 1, 0, NULL, 0);
    add_member(m, "g1", "job", 3, 1, 1, NULL, 0);
    struct fx_attempt at;
    bool told = false;
    while (fx_model_next(m, &at))
        if (at.outcome == FX_INVALID && strcmp(at.uid, "g1") == 0)
            told = strstr(at.message, "2") && strstr(at.message, "3");
    assert_true(told);
    fx_model_free(m);
}

/* flexpu.io/min-members edited on a group's only member takes effect: g0,
 * waiting for a second member, is placed once edited to 1. Before, the
 * group kept what its first member said when it was listed. */
static void test_gang_first_member_edited(void **state)
{
    (void)state;
    struct fx_model *m = model_n1(8);
    add_member(m, "g0", "job", 2, 1, 0, NULL, 0);
    struct fx_attempt at = next(m, FX_WAIT, "g0");
    assert_non_null(strstr(at.message, "1 of 2 exist"));
    add_member(m, "g0", "job", 1, 1, 0, NULL, 0);
    next(m, FX_BIND, "g0");
    fx_model_free(m);
}

/* min-members edited on every member, one by one, the group's first
 * member first: the group keeps 3 while g1 carries it, so g0 edited to 2
 * is refused, naming the annotation, both pods and both values; g1 edited
 * too, the group takes 2 and both are placed. Before, g0's edit was
 * ignored and g1's refused as disagreeing with the 3 g0 was listed with. */
static void test_gang_members_edited_one_by_one(void **state)
{
    (void)state;
    struct fx_model *m = model_n1(8);
    add_members(m, "g", "job", 2, 3, 1, 0);
    struct tally t = drained(m, 'g');
    assert_non_null(strstr(t.msg, "2 of 3 exist"));
    add_member(m, "g0", "job", 2, 1, 0, NULL, 0);
    struct fx_attempt at = next(m, FX_INVALID, "g0");
    assert_non_null(strstr(at.message, "pod t/g0 has flexpu.io/min-members '2' but pod t/g1 "
                                       "has '3'"));
    assert_false(fx_model_next(m, &at));
    add_member(m, "g1", "job", 2, 1, 1, NULL, 0);
    struct tally t2 = drained(m, 'g');
    assert_int_equal(t2.binds['g' - 'a'], 2);
    fx_model_free(m);
}

/* The group's last member carrying its value deleted: the group takes the
 * value the others carry, and the member refused for it is decided again
 * (waits for a second member, placed with it). */
static void test_gang_last_carrier_deleted(void **state)
{
    (void)state;
    struct fx_model *m = model_n1(8);
    add_member(m, "g0", "job", 3, 1, 0, NULL, 0);
    add_member(m, "g1", "job", 2, 1, 1, NULL, 0);
    struct fx_attempt at;
    bool refused = false;
    while (fx_model_next(m, &at))
        refused |= at.outcome == FX_INVALID && strcmp(at.uid, "g1") == 0 &&
                   strstr(at.message, "pod t/g1 has flexpu.io/min-members '2' but pod t/g0 "
                                      "has '3'");
    assert_true(refused);
    gone(m, "g0");
    at = next(m, FX_WAIT, "g1");
    assert_non_null(strstr(at.message, "1 of 2 exist"));
    add_member(m, "g2", "job", 2, 1, 2, NULL, 0);
    struct tally t = drained(m, 'g');
    assert_int_equal(t.binds['g' - 'a'], 2);
    fx_model_free(m);
}

/* After a restart in the middle of a gang (one of three members bound),
 * the two missing members are placed together. */
static void test_gang_restart_places_the_rest(void **state)
{
    (void)state;
    struct fx_model *m = model_n1(4);
    add_member(m, "g0", "job", 3, 1, 0, "n1", 0);
    add_member(m, "g1", "job", 3, 1, 1, NULL, 0);
    add_member(m, "g2", "job", 3, 1, 2, NULL, 0);
    struct tally t = drained(m, 'g');
    assert_int_equal(t.binds['g' - 'a'], 2);
    fx_model_free(m);
    /* The bound member counts: on a node with one GPU left the two
     * missing members cannot go together, and neither goes alone. */
    m = model_n1(2);
    add_member(m, "g0", "job", 3, 1, 0, "n1", 0);
    add_member(m, "g1", "job", 3, 1, 1, NULL, 0);
    add_member(m, "g2", "job", 3, 1, 2, NULL, 0);
    struct tally t2 = drained(m, 'g');
    assert_int_equal(t2.binds['g' - 'a'], 0);
    assert_non_null(strstr(t2.msg, "2 missing members do not fit together"));
    fx_model_free(m);
}

/* A pod group whose members each fit within their queue's limit but not
 * together waits for the queue, not for room: on an idle node, no new
 * node would place it. */
static void test_gang_over_queue_limit(void **state)
{
    (void)state;
    struct fx_model *m = model_n1(8);
    set_queue(m, "capped", NULL, 0, 2, 1);
    for (int i = 0; i < 3; i++) {
        char uid[8];
        snprintf(uid, sizeof(uid), "g%d", i);
        pod_event(m, KUBE_ADDED, member_pod(uid, "capped", "job", 3, 1, i));
    }
    struct tally t = drained(m, 'g');
    assert_int_equal(t.binds['g' - 'a'], 0);
    assert_non_null(strstr(t.msg, "together exceed a limit"));
    assert_int_equal(t.why, FX_WAIT_QUEUE_LIMIT);
    fx_model_free(m);
}

/* queued_pod() whose status shows PodScheduled with `status` since `ltt`
 * (reason SchedulingGated: the API server's, for a pod created gated). */
static json_t *pod_with_condition(const char *uid, const char *q, int gpus, const char *status,
                                  const char *ltt)
{
    json_t *p = queued_pod(uid, q, gpus, 0);
    json_object_set_new(p, "status",
                        json_pack("{s:s, s:[{s:s, s:s, s:s, s:s}]}", "phase", "Pending",
                                  "conditions", "type", "PodScheduled", "status", status,
                                  "reason", "SchedulingGated", "lastTransitionTime", ltt));
    return p;
}

/* A pod whose PodScheduled is False already keeps the time it turned
 * False when its reason or message changes (kube-scheduler's
 * podutil.UpdatePodCondition: only a new status moves lastTransitionTime);
 * one without the condition gets 0 (the write's own time). The time
 * follows what the watch shows last. */
static void test_wait_keeps_transition_time(void **state)
{
    (void)state;
    struct fx_model *m = model_n1(1);
    set_queue(m, "capped", NULL, 0, 0, 1);
    pod_event(m, KUBE_ADDED,
              pod_with_condition("q0", "capped", 1, "False", "2026-01-01T00:01:05Z"));
    struct tally t = drained(m, 'q');
    assert_int_equal(t.why, FX_WAIT_QUEUE_LIMIT);
    assert_int_equal(t.since_s, 1767225665); /* 2026-01-01T00:01:05Z */
    /* Our write landed (the watch shows it, since 00:02:00); the pod moves
     * to a queue that does not exist: a new reason, the same status. */
    pod_event(m, KUBE_MODIFIED,
              pod_with_condition("q0", "ghost", 1, "False", "2026-01-01T00:02:00Z"));
    struct tally t2 = drained(m, 'q');
    assert_int_equal(t2.why, FX_WAIT_NO_QUEUE);
    assert_int_equal(t2.since_s, 1767225720);
    /* No condition, or another status: the transition is the write. */
    pod_event(m, KUBE_ADDED, queued_pod("r0", "capped", 1, 1));
    pod_event(m, KUBE_ADDED, pod_with_condition("s0", "capped", 1, "True", "2026-01-01T00:01:05Z"));
    struct tally t3 = {.since_s = -1}, t4 = {.since_s = -1};
    drain(m, &t3, 'r');
    assert_int_equal(t3.why, FX_WAIT_QUEUE_LIMIT);
    assert_int_equal(t3.since_s, 0);
    pod_event(m, KUBE_MODIFIED, pod_with_condition("s0", NULL, 2, "True", "2026-01-01T00:01:05Z"));
    drain(m, &t4, 's');
    assert_int_equal(t4.why, FX_WAIT_ROOM); /* 2 GPUs on a node of 1 */
    assert_int_equal(t4.since_s, 0);
    fx_model_free(m);
}

/* A pod of queue q (NULL: no label) with spec.priority `prio` asking one
 * whole GPU: pending, or bound to GPU `gpu` of `node`. */
static void add_prio(struct fx_model *m, const char *uid, const char *q, int prio, int sec,
                     const char *node, int gpu)
{
    json_t *p = queued_pod(uid, q, 1, sec);
    json_t *spec = json_object_get(p, "spec");
    json_object_set_new(spec, "priority", json_integer(prio));
    if (node) {
        char alloc[256];
        snprintf(alloc, sizeof(alloc),
                 "{\"gpus\":[{\"uuid\":\"GPU-%s-%d\",\"index\":%d,\"cores\":100,"
                 "\"memory\":0}]}",
                 node, gpu, gpu);
        json_object_set_new(json_object_get(p, "metadata"), "annotations",
                            json_pack("{s:s}", "flexpu.io/allocation", alloc));
        json_object_set_new(spec, "nodeName", json_string(node));
    }
    pod_event(m, KUBE_ADDED, p);
}

static void gone_queued(struct fx_model *m, const char *uid)
{
    pod_event(m, KUBE_DELETED, queued_pod(uid, NULL, 1, 0));
}

/* One step of the model; fails unless it is `want` for pod `uid` (NULL:
 * any pod). */
static struct fx_attempt step(struct fx_model *m, enum fx_outcome want, const char *uid)
{
    struct fx_attempt at;
    if (!fx_model_next(m, &at))
        fail_msg("nothing to do, want outcome %d for %s", want, uid ? uid : "any pod");
    if (at.outcome != want || (uid && strcmp(at.uid, uid) != 0))
        fail_msg("got outcome %d for %s (%s), want %d for %s", at.outcome, at.uid, at.message,
                 want, uid ? uid : "any pod");
    return at;
}

/* A pod of a higher PriorityClass evicts one lower pod, holds its place
 * while the victim goes (nothing else takes it), then binds there. */
static void test_priority_preemption(void **state)
{
    (void)state;
    struct fx_model *m = model_n1(2);
    add_prio(m, "low0", NULL, 0, 0, "n1", 0);
    add_prio(m, "low1", NULL, 0, 1, "n1", 1);
    add_prio(m, "hi", NULL, 1000, 5, NULL, 0);
    struct fx_attempt at = step(m, FX_NOMINATE, "hi");
    assert_string_equal(at.node, "n1");
    assert_non_null(strstr(at.message, "preempting 1 pod(s)"));
    at = step(m, FX_EVICT, NULL);
    /* The newer of the two (the least work lost) goes. */
    assert_string_equal(at.uid, "low1");
    assert_non_null(strstr(at.message, "preempted by t/hi"));
    fx_model_evict_done(m, "low1", 0);
    /* A pod arriving meanwhile does not take the held place. */
    add_prio(m, "mid", NULL, 0, 6, NULL, 0);
    at = step(m, FX_WAIT, "mid");
    struct fx_attempt none;
    assert_false(fx_model_next(m, &none));
    gone_queued(m, "low1");
    step(m, FX_BIND, "hi");
    struct fx_model_stats st;
    fx_model_stats(m, &st);
    assert_int_equal(st.preemptions, 1);
    assert_int_equal(st.evictions, 1);
    struct flexpu_error err = {0};
    if (fx_model_check(m, &err))
        fail_msg("invariants: %s", err.msg);
    fx_model_free(m);
}

/* A PodDisruptionBudget refuses the eviction: the preemption is undone
 * (the victim keeps its GPU) and the other candidate is chosen instead. */
static void test_refused_eviction_undone(void **state)
{
    (void)state;
    struct fx_model *m = model_n1(2);
    add_prio(m, "low0", NULL, 0, 0, "n1", 0);
    add_prio(m, "low1", NULL, 0, 1, "n1", 1);
    add_prio(m, "hi", NULL, 1000, 5, NULL, 0);
    step(m, FX_NOMINATE, "hi");
    step(m, FX_EVICT, "low1");
    fx_model_evict_done(m, "low1", FLEXPU_EBUSY);
    struct flexpu_error err = {0};
    if (fx_model_check(m, &err))
        fail_msg("invariants after the undo: %s", err.msg);
    step(m, FX_UNNOMINATE, "hi"); /* its nominatedNodeName cleared before it is nominated again */
    step(m, FX_NOMINATE, "hi");
    step(m, FX_EVICT, "low0");
    struct fx_model_stats st;
    fx_model_stats(m, &st);
    assert_int_equal(st.evictions_refused, 1);
    fx_model_free(m);
}

/* A pod whose PriorityClass says preemptionPolicy: Never waits instead. */
static void test_preemption_policy_never(void **state)
{
    (void)state;
    struct fx_model *m = model_n1(1);
    add_prio(m, "low0", NULL, 0, 0, "n1", 0);
    json_t *p = queued_pod("hi", NULL, 1, 5);
    json_t *spec = json_object_get(p, "spec");
    json_object_set_new(spec, "priority", json_integer(1000));
    json_object_set_new(spec, "preemptionPolicy", json_string("Never"));
    pod_event(m, KUBE_ADDED, p);
    step(m, FX_WAIT, "hi");
    struct fx_attempt none;
    assert_false(fx_model_next(m, &none));
    fx_model_free(m);
}

/* No pod of a lower priority: nothing is evicted (equal priority waits). */
static void test_no_preemption_among_equals(void **state)
{
    (void)state;
    struct fx_model *m = model_n1(1);
    add_prio(m, "a0", NULL, 100, 0, "n1", 0);
    add_prio(m, "b0", NULL, 100, 1, NULL, 0);
    step(m, FX_WAIT, "b0");
    struct fx_attempt none;
    assert_false(fx_model_next(m, &none));
    fx_model_free(m);
}

/* Queue b, under its guarantee, takes back what queue a borrowed, down to
 * a's fair share and no further. */
static void test_reclaim_by_queue(void **state)
{
    (void)state;
    struct fx_model *m = model_n1(8);
    set_queue(m, "a", NULL, 4, FLEXPU_QUEUE_UNLIMITED, 1);
    set_queue(m, "b", NULL, 4, FLEXPU_QUEUE_UNLIMITED, 1);
    char uid[16];
    for (int i = 0; i < 8; i++) {
        snprintf(uid, sizeof(uid), "a%d", i);
        add_prio(m, uid, "a", 0, i, "n1", i);
    }
    for (int i = 0; i < 3; i++) {
        snprintf(uid, sizeof(uid), "b%d", i);
        add_prio(m, uid, "b", 0, 20 + i, NULL, 0);
    }
    /* Demand a 8, b 3 on 8 GPUs: b's fair share is 3, a's 5. */
    int nominated = 0, evicted = 0;
    struct fx_attempt at;
    while (fx_model_next(m, &at)) {
        if (at.outcome == FX_NOMINATE) {
            nominated++;
        } else if (at.outcome == FX_EVICT) {
            assert_int_equal(at.uid[0], 'a');
            assert_non_null(strstr(at.message, "reclaimed by"));
            fx_model_evict_done(m, at.uid, 0);
            evicted++;
        }
    }
    assert_int_equal(nominated, 3);
    assert_int_equal(evicted, 3);
    fx_model_free(m);
}

/* A gang of a higher PriorityClass evicts lower pods to fit, all its
 * members hold their places, and they bind together once the victims are
 * gone. */
static void test_gang_preemption(void **state)
{
    (void)state;
    struct fx_model *m = model_n1(3);
    add_prio(m, "low0", NULL, 0, 0, "n1", 0);
    add_prio(m, "low1", NULL, 0, 1, "n1", 1);
    add_prio(m, "low2", NULL, 0, 2, "n1", 2);
    for (int i = 0; i < 2; i++) {
        char uid[8];
        snprintf(uid, sizeof(uid), "g%d", i);
        json_t *p = queued_pod(uid, NULL, 1, 10 + i);
        json_t *md = json_object_get(p, "metadata");
        json_object_set_new(json_object_get(md, "labels"), "flexpu.io/pod-group",
                            json_string("job"));
        json_object_set_new(md, "annotations", json_pack("{s:s}", "flexpu.io/min-members", "2"));
        json_object_set_new(json_object_get(p, "spec"), "priority", json_integer(1000));
        pod_event(m, KUBE_ADDED, p);
    }
    struct fx_attempt at = step(m, FX_NOMINATE, NULL);
    assert_non_null(strstr(at.message, "preempting 2 pod(s) for pod group t/job"));
    char v[2][64];
    for (int i = 0; i < 2; i++) {
        at = step(m, FX_EVICT, NULL);
        assert_int_equal(at.uid[0], 'l');
        snprintf(v[i], sizeof(v[i]), "%s", at.uid);
        fx_model_evict_done(m, at.uid, 0);
    }
    struct fx_attempt none;
    assert_false(fx_model_next(m, &none)); /* the members wait for both victims */
    gone_queued(m, v[0]);
    assert_false(fx_model_next(m, &none));
    gone_queued(m, v[1]);
    int binds = 0;
    while (fx_model_next(m, &at))
        binds += at.outcome == FX_BIND && at.uid[0] == 'g';
    assert_int_equal(binds, 2);
    struct flexpu_error err = {0};
    if (fx_model_check(m, &err))
        fail_msg("invariants: %s", err.msg);
    fx_model_free(m);
}

/* Reclaim modes: not-higher-priority spares a victim of a higher
 * PriorityClass than the taker; never takes nothing back. */
static void test_reclaim_modes(void **state)
{
    (void)state;
    for (int mode = 0; mode < 3; mode++) {
        struct fx_model *m = new_model();
        fx_model_set_reclaim(m, (enum fx_reclaim)mode);
        add_node(m, "n1", 4);
        set_queue(m, "a", NULL, 2, FLEXPU_QUEUE_UNLIMITED, 1);
        set_queue(m, "b", NULL, 2, FLEXPU_QUEUE_UNLIMITED, 1);
        /* a borrowed all 4 GPUs with high-priority pods; b's pods are low. */
        for (int i = 0; i < 4; i++) {
            char uid[8];
            snprintf(uid, sizeof(uid), "a%d", i);
            add_prio(m, uid, "a", 1000, i, "n1", i);
        }
        add_prio(m, "b0", "b", 0, 10, NULL, 0);
        struct fx_attempt at;
        bool nominated = false;
        while (fx_model_next(m, &at))
            nominated = nominated || at.outcome == FX_NOMINATE;
        assert_int_equal(nominated, mode == FX_RECLAIM_ANY);
        fx_model_free(m);
    }
    enum fx_reclaim r;
    assert_int_equal(fx_reclaim_parse("not-higher-priority", &r), 0);
    assert_int_equal(r, FX_RECLAIM_NOT_HIGHER);
    assert_int_equal(fx_reclaim_parse("sometimes", &r), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_guarantees_split_the_node),
        cmocka_unit_test(test_pods_before_queues),
        cmocka_unit_test(test_weights_split_what_is_left),
        cmocka_unit_test(test_idle_queue_lends),
        cmocka_unit_test(test_limit_holds_then_releases),
        cmocka_unit_test(test_limited_pod_edited),
        cmocka_unit_test(test_parent_limit_caps_children),
        cmocka_unit_test(test_missing_queue_waits_until_created),
        cmocka_unit_test(test_unlabelled_pods_use_default),
        cmocka_unit_test(test_gang_all_or_nothing),
        cmocka_unit_test(test_gang_waits_for_members),
        cmocka_unit_test(test_gang_members_all_told),
        cmocka_unit_test(test_gang_member_deleted_retold),
        cmocka_unit_test(test_gang_refusal_names_no_deleted_member),
        cmocka_unit_test(test_two_gangs_no_deadlock),
        cmocka_unit_test(test_gang_disagreement_invalid),
        cmocka_unit_test(test_gang_first_member_edited),
        cmocka_unit_test(test_gang_members_edited_one_by_one),
        cmocka_unit_test(test_gang_last_carrier_deleted),
        cmocka_unit_test(test_gang_restart_places_the_rest),
        cmocka_unit_test(test_gang_over_queue_limit),
        cmocka_unit_test(test_wait_keeps_transition_time),
        cmocka_unit_test(test_priority_preemption),
        cmocka_unit_test(test_refused_eviction_undone),
        cmocka_unit_test(test_no_preemption_among_equals),
        cmocka_unit_test(test_preemption_policy_never),
        cmocka_unit_test(test_reclaim_by_queue),
        cmocka_unit_test(test_gang_preemption),
        cmocka_unit_test(test_reclaim_modes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
