/* SPDX-License-Identifier: Apache-2.0 */
/* The scheduler model's tests with hand-made nodes and pods (borrow_test.c,
 * remote_kube_test.c, model_queue_test.c, queue_sync_test.c,
 * model_preempt_test.c, model_gates_test.c): a model, the GPU inventory a
 * node agent publishes and a plain node carrying it, a pod's deletion, the
 * next attempt with the outcome it must have, and the model's invariants.
 * One copy, so that the tests build the cluster alike. Include after
 * cmocka.h. */
#ifndef FX_TEST_MODEL_FIXTURE_H
#define FX_TEST_MODEL_FIXTURE_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "scheduler/model.h"

#define GIB (1024LL * 1024 * 1024)

/* A model scheduling for flexpu-scheduler; fails the test if there is none. */
static inline struct fx_model *new_model(void)
{
    struct flexpu_error err = {0};
    struct fx_model *m = fx_model_new("flexpu-scheduler", "flexpu", 1, &err);
    if (!m)
        fail_msg("fx_model_new: %s", err.msg);
    return m;
}

/* The flexpu.io/gpus annotation of node `name` with `ngpu` A100s of 80 GiB
 * (GPU-<name>-<i>), to free. */
static inline char *a100_inventory(const char *name, int ngpu)
{
    json_t *inv = json_array();
    for (int i = 0; i < ngpu; i++) {
        char uuid[64];
        snprintf(uuid, sizeof(uuid), "GPU-%s-%d", name, i);
        json_array_append_new(inv, json_pack("{s:s, s:s, s:I}", "uuid", uuid, "model", "A100",
                                             "memory", (json_int_t)(80 * GIB)));
    }
    char *text = json_dumps(inv, JSON_COMPACT);
    json_decref(inv);
    assert_non_null(text);
    return text;
}

/* Node `name` added: `ngpu` A100s of 80 GiB (a100_inventory), `cpu` and
 * `memory` allocatable (quantities), no conditions (ready). */
static inline void a100_node_with(struct fx_model *m, const char *name, int ngpu, const char *cpu,
                                  const char *memory)
{
    char *text = a100_inventory(name, ngpu);
    json_t *n = json_pack("{s:{s:s, s:{s:s}}, s:{}, s:{s:{s:s, s:s}}}", "metadata", "name", name,
                          "annotations", "flexpu.io/gpus", text, "spec", "status", "allocatable",
                          "cpu", cpu, "memory", memory);
    assert_non_null(n);
    fx_model_node_event(m, KUBE_ADDED, n);
    json_decref(n);
    free(text);
}

/* The same with 16 CPUs and 64 GiB. */
static inline void a100_node(struct fx_model *m, const char *name, int ngpu)
{
    a100_node_with(m, name, ngpu, "16", "64Gi");
}

/* Pod `uid` (namespace t) is deleted. */
static inline void gone(struct fx_model *m, const char *uid)
{
    json_t *p = json_pack("{s:{s:s, s:s, s:s}}", "metadata", "name", uid, "namespace", "t", "uid",
                          uid);
    fx_model_pod_event(m, KUBE_DELETED, p);
    json_decref(p);
}

/* The next attempt, which must have outcome o (for uid when not NULL). */
static inline struct fx_attempt next(struct fx_model *m, enum fx_outcome o, const char *uid)
{
    struct fx_attempt a;
    memset(&a, 0, sizeof(a));
    if (!fx_model_next(m, &a))
        fail_msg("nothing to do; expected outcome %d", o);
    if (a.outcome != o)
        fail_msg("outcome %d for %s (%s); expected %d", a.outcome, a.uid, a.message, o);
    if (uid)
        assert_string_equal(a.uid, uid);
    return a;
}

/* The model's invariants hold (fx_model_check). */
static inline void model_checked(const struct fx_model *m)
{
    struct flexpu_error err = {0};
    if (fx_model_check(m, &err))
        fail_msg("invariants: %s", err.msg);
}

/* Nothing is left to do, and the model's invariants hold. */
static inline void nothing_left(struct fx_model *m)
{
    struct fx_attempt a;
    if (fx_model_next(m, &a))
        fail_msg("outcome %d for %s (%s); expected nothing to do", a.outcome, a.uid, a.message);
    model_checked(m);
}

/* The model's counters now. */
static inline struct fx_model_stats model_stats(const struct fx_model *m)
{
    struct fx_model_stats st;
    fx_model_stats(m, &st);
    return st;
}

#endif
