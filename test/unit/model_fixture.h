/* SPDX-License-Identifier: Apache-2.0 */
/* The scheduler model's tests with hand-made nodes and pods (borrow_test.c,
 * remote_kube_test.c, model_queue_test.c, queue_sync_test.c): a model, the
 * GPU inventory a node agent publishes, a pod's deletion and the next
 * attempt with the outcome it must have. One copy, so that the tests build
 * the cluster alike. Include after cmocka.h. */
#ifndef FX_TEST_MODEL_FIXTURE_H
#define FX_TEST_MODEL_FIXTURE_H

#include <stdio.h>
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

#endif
