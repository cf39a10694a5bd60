/* SPDX-License-Identifier: Apache-2.0 */
/* The usage feed's contract and the scheduler's side of it: the annotation
 * flexpu.io/gpu-usage parsed (every malformed case named, nothing kept from
 * a bad one), written and read back, and the model keeping each GPU's
 * measured use with its timestamp, stale after FX_USAGE_STALE_S. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "flexpu/log.h"
#include "kube/contract.h"
#include "scheduler/model.h"

#define F "metadata.annotations[flexpu.io/gpu-usage]"

static const char *good =
    "{\"v\":1,\"ts\":1700000000,\"gpus\":["
    "{\"index\":0,\"busy\":120,\"mean\":30,\"memory\":1073741824,"
    "\"slices\":[{\"pod\":\"uid-a\",\"busy\":100,\"memory\":1000},"
    "{\"pod\":\"uid-b\",\"busy\":20,\"memory\":0}]},"
    "{\"index\":2,\"busy\":1000,\"memory\":0}]}";

static void test_parse_good(void **state)
{
    (void)state;
    struct fx_node_usage u;
    struct flexpu_error err = {0};
    assert_int_equal(fx_node_usage_parse(good, 4, &u, &err), 0);
    assert_int_equal(u.ts, 1700000000);
    assert_true(u.gpus[0].known);
    assert_int_equal(u.gpus[0].busy, 120);
    assert_int_equal(u.gpus[0].mean, 30);
    assert_int_equal(u.gpus[2].mean, 1000); /* absent: taken as busy */
    assert_int_equal(u.gpus[0].slices[0].mean, 100);
    assert_int_equal(u.gpus[0].mem, 1073741824);
    assert_int_equal(u.gpus[0].nslices, 2);
    assert_string_equal(u.gpus[0].slices[1].pod, "uid-b");
    assert_int_equal(u.gpus[0].slices[0].busy, 100);
    assert_int_equal(u.gpus[0].slices[0].mem, 1000);
    assert_false(u.gpus[1].known); /* not listed: no measure */
    assert_true(u.gpus[2].known);
    assert_int_equal(u.gpus[2].busy, 1000);
    assert_int_equal(u.gpus[2].nslices, 0);
    /* Absent: nothing known, no error. */
    assert_int_equal(fx_node_usage_parse(NULL, 4, &u, &err), 0);
    assert_int_equal(u.ts, 0);
    assert_false(u.gpus[0].known);
}

static void test_format_round_trip(void **state)
{
    (void)state;
    struct fx_node_usage u, back;
    struct flexpu_error err = {0};
    assert_int_equal(fx_node_usage_parse(good, 4, &u, &err), 0);
    char *text = fx_node_usage_format(&u, 4);
    assert_non_null(text);
    assert_int_equal(fx_node_usage_parse(text, 4, &back, &err), 0);
    assert_memory_equal(&u, &back, sizeof(u));
    /* Compact and versioned. */
    assert_null(strchr(text, ' '));
    assert_non_null(strstr(text, "\"v\":1"));
    free(text);
}

struct bad_case {
    const char *text;
    const char *field; /* in the message */
    const char *value; /* in the message, or NULL */
};

static void test_parse_malformed(void **state)
{
    (void)state;
    static const struct bad_case cases[] = {
        {"not json", F, "not json"},
        {"[1,2]", F, "[1,2]"},
        {"{\"ts\":1,\"gpus\":[]}", F ".v", NULL},
        {"{\"v\":2,\"ts\":1,\"gpus\":[]}", F ".v", "'2'"},
        {"{\"v\":\"1\",\"ts\":1,\"gpus\":[]}", F ".v", "'\"1\"'"},
        {"{\"v\":1,\"ts\":-5,\"gpus\":[]}", F ".ts", "'-5'"},
        {"{\"v\":1,\"ts\":1,\"gpus\":{}}", F ".gpus", NULL},
        {"{\"v\":1,\"ts\":1}", F ".gpus", NULL},
        /* out-of-range fractions */
        {"{\"v\":1,\"ts\":1,\"gpus\":[{\"index\":0,\"busy\":1001,\"memory\":0}]}", F ".gpus[0].busy",
         "'1001'"},
        {"{\"v\":1,\"ts\":1,\"gpus\":[{\"index\":0,\"busy\":-1,\"memory\":0}]}", F ".gpus[0].busy",
         "'-1'"},
        {"{\"v\":1,\"ts\":1,\"gpus\":[{\"index\":0,\"busy\":0.5,\"memory\":0}]}", F ".gpus[0].busy",
         "'0.5'"},
        {"{\"v\":1,\"ts\":1,\"gpus\":[{\"index\":0,\"busy\":5,\"mean\":1200,\"memory\":0}]}",
         F ".gpus[0].mean", "'1200'"},
        {"{\"v\":1,\"ts\":1,\"gpus\":[{\"index\":0,\"busy\":5,\"mean\":null,\"memory\":0}]}",
         F ".gpus[0].mean", "'null'"},
        {"{\"v\":1,\"ts\":1,\"gpus\":[{\"index\":0,\"busy\":5,\"memory\":-1}]}",
         F ".gpus[0].memory", "'-1'"},
        {"{\"v\":1,\"ts\":1,\"gpus\":[{\"index\":0,\"busy\":5}]}", F ".gpus[0].memory", NULL},
        /* unknown GPU index: the node has 4 */
        {"{\"v\":1,\"ts\":1,\"gpus\":[{\"index\":4,\"busy\":5,\"memory\":0}]}", F ".gpus[0].index",
         "'4'"},
        {"{\"v\":1,\"ts\":1,\"gpus\":[{\"index\":-1,\"busy\":5,\"memory\":0}]}", F ".gpus[0].index",
         "'-1'"},
        {"{\"v\":1,\"ts\":1,\"gpus\":[{\"busy\":5,\"memory\":0}]}", F ".gpus[0].index", NULL},
        {"{\"v\":1,\"ts\":1,\"gpus\":[{\"index\":1,\"busy\":5,\"memory\":0},"
         "{\"index\":1,\"busy\":5,\"memory\":0}]}",
         F ".gpus[1].index", "appears twice"},
        {"{\"v\":1,\"ts\":1,\"gpus\":[7]}", F ".gpus[0]", NULL},
        /* slices */
        {"{\"v\":1,\"ts\":1,\"gpus\":[{\"index\":0,\"busy\":5,\"memory\":0,\"slices\":{}}]}",
         F ".gpus[0].slices", NULL},
        {"{\"v\":1,\"ts\":1,\"gpus\":[{\"index\":0,\"busy\":5,\"memory\":0,"
         "\"slices\":[{\"busy\":1,\"memory\":0}]}]}",
         F ".gpus[0].slices[0].pod", NULL},
        {"{\"v\":1,\"ts\":1,\"gpus\":[{\"index\":0,\"busy\":5,\"memory\":0,"
         "\"slices\":[{\"pod\":\"a\",\"busy\":2000,\"memory\":0}]}]}",
         F ".gpus[0].slices[0].busy", "'2000'"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct fx_node_usage u;
        memset(&u, 0x5a, sizeof(u));
        struct flexpu_error err = {0};
        int rc = fx_node_usage_parse(cases[i].text, 4, &u, &err);
        if (rc != FLEXPU_EINVAL)
            fail_msg("case %zu (%s): rc %d", i, cases[i].text, rc);
        char want[200];
        snprintf(want, sizeof(want), "field '%s'", cases[i].field);
        if (!strstr(err.msg, want) || (cases[i].value && !strstr(err.msg, cases[i].value)))
            fail_msg("case %zu (%s): message \"%s\" lacks %s / %s", i, cases[i].text, err.msg,
                     want, cases[i].value ? cases[i].value : "-");
        /* Nothing kept from a bad annotation. */
        assert_int_equal(u.ts, 0);
        for (int g = 0; g < FLEXPU_MAX_GPUS; g++)
            assert_false(u.gpus[g].known);
    }
}

/* Too many slices, and a node with no inventory. */
static void test_parse_bounds(void **state)
{
    (void)state;
    char text[8192] = "{\"v\":1,\"ts\":1,\"gpus\":[{\"index\":0,\"busy\":5,\"memory\":0,\"slices\":[";
    for (int k = 0; k <= FX_USAGE_SLICES_MAX; k++)
        snprintf(text + strlen(text), sizeof(text) - strlen(text),
                 "%s{\"pod\":\"p%d\",\"busy\":1,\"memory\":0}", k ? "," : "", k);
    strcat(text, "]}]}");
    struct fx_node_usage u;
    struct flexpu_error err = {0};
    assert_int_equal(fx_node_usage_parse(text, 4, &u, &err), FLEXPU_EINVAL);
    assert_non_null(strstr(err.msg, "at most 32 slices"));
    assert_int_equal(fx_node_usage_parse(good, 0, &u, &err), FLEXPU_EINVAL);
    assert_non_null(strstr(err.msg, "node's 0 GPUs"));
}

/* ---- the model ---- */

static json_t *node_obj(const char *name, int ngpu, const char *usage)
{
    char inv[2048] = "[", buf[8192], ann[4096] = "";
    for (int i = 0; i < ngpu; i++)
        snprintf(inv + strlen(inv), sizeof(inv) - strlen(inv),
                 "%s{\\\"uuid\\\":\\\"GPU-%s-%d\\\",\\\"model\\\":\\\"A100\\\","
                 "\\\"memory\\\":85899345920}",
                 i ? "," : "", name, i);
    if (usage) {
        json_t *s = json_string(usage);
        char *d = json_dumps(s, JSON_ENCODE_ANY);
        snprintf(ann, sizeof(ann), ",\"flexpu.io/gpu-usage\":%s", d);
        free(d);
        json_decref(s);
    }
    snprintf(buf, sizeof(buf),
             "{\"metadata\":{\"name\":\"%s\",\"annotations\":{\"flexpu.io/gpus\":\"%s]\"%s}},"
             "\"spec\":{},\"status\":{\"allocatable\":{\"cpu\":\"16\",\"memory\":\"64Gi\"}}}",
             name, inv, ann);
    json_error_t je;
    json_t *j = json_loads(buf, 0, &je);
    if (!j)
        fail_msg("%s: %s", buf, je.text);
    return j;
}

static void event(struct fx_model *m, enum kube_event ev, const char *usage)
{
    json_t *n = node_obj("n1", 4, usage);
    fx_model_node_event(m, ev, n);
    json_decref(n);
}

static void test_model_keeps_use(void **state)
{
    (void)state;
    struct flexpu_error err = {0};
    struct fx_model *m = fx_model_new("flexpu-scheduler", "flexpu", 1, &err);
    assert_non_null(m);
    struct fx_gpu_use use;
    event(m, KUBE_ADDED, NULL);
    assert_false(fx_model_gpu_use(m, "n1", 0, 1700000000, &use)); /* none yet */

    event(m, KUBE_MODIFIED, good); /* ts 1700000000 */
    const int64_t t0 = 1700000000;
    assert_true(fx_model_gpu_use(m, "n1", 0, t0 + 5, &use));
    assert_int_equal(use.busy, 120);
    assert_int_equal(use.mean, 30);
    assert_int_equal(use.mem, 1073741824);
    assert_int_equal(use.ts, t0);
    assert_true(fx_model_gpu_use(m, "n1", 2, t0, &use));
    assert_int_equal(use.busy, 1000);
    assert_false(fx_model_gpu_use(m, "n1", 1, t0, &use)); /* not measured */
    assert_false(fx_model_gpu_use(m, "n1", 4, t0, &use)); /* no such GPU */
    assert_false(fx_model_gpu_use(m, "n1", -1, t0, &use));
    assert_false(fx_model_gpu_use(m, "nX", 0, t0, &use));
    /* Stale past FX_USAGE_STALE_S, and not believed from the future. */
    assert_true(fx_model_gpu_use(m, "n1", 0, t0 + FX_USAGE_STALE_S, &use));
    assert_false(fx_model_gpu_use(m, "n1", 0, t0 + FX_USAGE_STALE_S + 1, &use));
    assert_true(fx_model_gpu_use(m, "n1", 0, t0 - FX_USAGE_SKEW_S, &use));
    assert_false(fx_model_gpu_use(m, "n1", 0, t0 - FX_USAGE_SKEW_S - 1, &use));

    /* An update (nothing else changed: the heartbeat path) replaces it. */
    event(m, KUBE_MODIFIED,
          "{\"v\":1,\"ts\":1700000100,\"gpus\":[{\"index\":0,\"busy\":7,\"memory\":5}]}");
    assert_true(fx_model_gpu_use(m, "n1", 0, t0 + 100, &use));
    assert_int_equal(use.busy, 7);
    assert_int_equal(use.ts, t0 + 100);
    assert_false(fx_model_gpu_use(m, "n1", 2, t0 + 100, &use)); /* no longer listed */

    /* A malformed one forgets the measure (unknown, never a stale value
     * passed as fresh) and does not touch the engine. */
    struct fx_model_stats before, after;
    fx_model_stats(m, &before);
    event(m, KUBE_MODIFIED, "{\"v\":1,\"ts\":1700000200,\"gpus\":[{\"index\":9,\"busy\":0,"
                            "\"memory\":0}]}");
    assert_false(fx_model_gpu_use(m, "n1", 0, t0 + 200, &use));
    fx_model_stats(m, &after);
    assert_int_equal(after.gpus, before.gpus);
    assert_int_equal(after.gpu_milli_total, before.gpu_milli_total);
    assert_int_equal(fx_model_check(m, &err), 0);

    /* A deleted node has no measure. */
    event(m, KUBE_MODIFIED, good);
    event(m, KUBE_DELETED, good);
    assert_false(fx_model_gpu_use(m, "n1", 0, t0, &use));
    fx_model_free(m);
}

int main(void)
{
    flexpu_log_set_level(FLEXPU_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_good),
        cmocka_unit_test(test_format_round_trip),
        cmocka_unit_test(test_parse_malformed),
        cmocka_unit_test(test_parse_bounds),
        cmocka_unit_test(test_model_keeps_use),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
