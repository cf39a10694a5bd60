/* SPDX-License-Identifier: Apache-2.0 */
/* Everything flexpu reads from Kubernetes that a user or another program
 * wrote: kubeconfig YAML, pod specs and annotations (node constraints
 * too, evaluated on the same object read as a node; inter-pod rules,
 * matched against its own labels), node inventories,
 * allocation annotations, watch streams, and Queue objects with a pod's queue
 * and pod-group labels (read from the same JSON as the pod spec). The first
 * byte picks the parser;
 * none may crash, leak or read out of bounds, whatever the input. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "flexpu/log.h"
#include "kube/contract.h"
#include "kube/kube.h"
#include "kube/pod_rules.h"
#include "kube/queue_spec.h"
#include "util/alloc.h"

static int on_line(const char *type, json_t *obj, void *ctx)
{
    (void)ctx;
    struct fx_pod_spec s;
    struct flexpu_error err;
    if (strcmp(type, "ADDED") == 0)
        fx_pod_spec_parse(obj, &s, &err);
    return 0;
}

/* Log lines (a kubeconfig's http:// server is warned about) are formatted,
 * at every level, and dropped: writing them would slow the run and bury
 * libFuzzer's own output. */
static void drop_line(const char *line, void *ctx)
{
    (void)line;
    (void)ctx;
}

/* The object's inter-pod rules, each term and spread selector matched
 * against the object's own labels and namespace. */
static void pod_rules(json_t *j)
{
    struct flexpu_error err;
    struct fx_pod_rules *r = NULL;
    if (fx_pod_rules_parse(j, &r, &err) || !r)
        return;
    char *labels = NULL;
    if (fx_labels_pack(kube_get(j, "metadata.labels"), &labels)) {
        fx_pod_rules_free(r);
        return;
    }
    const char *ns = kube_str(j, "metadata.namespace");
    for (int i = 0; i < r->naff; i++)
        fx_pod_term_matches(&r->aff[i], ns, "other", labels);
    for (int i = 0; i < r->nanti; i++)
        fx_pod_term_matches(&r->anti[i], ns, ns, labels);
    for (int i = 0; i < r->npaff; i++)
        fx_pod_term_matches(&r->paff[i].t, ns, ns, labels);
    for (int i = 0; i < r->npanti; i++)
        fx_pod_term_matches(&r->panti[i].t, ns, "other", labels);
    for (int i = 0; i < r->nspread; i++)
        fx_label_sel_matches(&r->spread[i].sel, labels);
    fx_labels_equal(labels, labels);
    fx_free(labels);
    fx_pod_rules_free(r);
}

/* The object as a pod's node constraints and as a node's labels and
 * taints at once: the filter is evaluated on that node, and decided on. */
static void filters(json_t *j)
{
    pod_rules(j);
    struct flexpu_error err;
    struct flexpu_filter *f = NULL;
    struct fx_node_attrs a;
    if (fx_pod_filter_parse(j, &f, &err) || fx_node_attrs_parse(j, &a, &err)) {
        flexpu_filter_free(f);
        return;
    }
    struct flexpu_engine *e = flexpu_engine_new();
    const char *name = json_string_value(json_object_get(json_object_get(j, "metadata"), "name"));
    struct flexpu_node_info info = {.name = name && *name && strlen(name) < 64 ? name : "n",
                                    .cpu_milli = 1000,
                                    .mem_mib = 1024,
                                    .ngpu = 1,
                                    .label_list = a.labels,
                                    .nlabel_list = a.nlabels,
                                    .taints = a.taints,
                                    .ntaints = a.ntaints};
    info.gpus[0].model = "T4";
    int id;
    if (e && flexpu_engine_add_node(e, &info, &id, &err) == 0) {
        int aff, intol;
        flexpu_engine_node_filter(e, id, f, &aff, &intol);
        struct flexpu_pod_req r = {.cpu_milli = 100, .mem_mib = 1, .num_gpu = 1,
                                   .gpu_milli = 100};
        struct flexpu_placement p;
        struct flexpu_noplace why;
        flexpu_engine_decide_filtered(e, &r, f, NULL, &p, &why);
    }
    flexpu_engine_free(e);
    fx_node_attrs_free(&a);
    flexpu_filter_free(f);
}

/* The object as a Queue, and its status written back from what was read;
 * and as a pod's queue and pod group, checked against a fixed member. */
static void queues(json_t *j)
{
    struct flexpu_error err;
    struct flexpu_queue_info in;
    json_t *patch;
    if (fx_queue_parse(j, &in, &err) == 0) {
        struct flexpu_queue_status st = {.name = in.name, .parent = in.parent,
                                         .orphan = in.parent && in.parent[0] == 'x'};
        memcpy(st.guaranteed, in.guaranteed, sizeof(st.guaranteed));
        memcpy(st.allocated, in.limit, sizeof(st.allocated));
        patch = fx_queue_status_patch(&st, "2026-01-01T00:00:00Z", j);
    } else {
        patch = fx_queue_refused_patch(err.msg, "2026-01-01T00:00:00Z", j);
    }
    json_decref(patch);
    struct fx_pod_group g, first = {.queue = "default", .group = "g", .min_members = 2};
    if (fx_pod_group_parse(j, &g, &err) == 0 && g.group[0])
        fx_pod_group_agree(&first, "d/a", &g, "d/b", &err);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int quiet;
    if (!quiet) {
        flexpu_log_set_level(FLEXPU_LOG_DEBUG);
        flexpu_log_set_sink(drop_line, NULL);
        quiet = 1;
    }
    if (size < 1)
        return 0;
    uint8_t which = data[0] % 5;
    data++;
    size--;
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = 0;
    struct flexpu_error err;
    switch (which) {
    case 0: {
        struct kube_config c;
        if (kube_config_parse(text, size, "/nonexistent", NULL, &c, &err) == 0)
            kube_config_free(&c);
        break;
    }
    case 1: {
        json_error_t je;
        json_t *j = json_loads(text, 0, &je);
        struct fx_pod_spec s;
        if (j) {
            const char *rkey;
            if (fx_pod_spec_parse(j, &s, &err) == 0)
                fx_pod_remote_rule_parse(j, &s, &rkey, &err);
            filters(j);
            queues(j);
        }
        json_decref(j);
        break;
    }
    case 2: {
        struct fx_node_inv inv;
        if (fx_node_inv_parse(text, &inv, &err) == 0)
            free(fx_node_inv_format(&inv));
        break;
    }
    case 3: {
        struct fx_allocation a;
        if (fx_allocation_parse(text, &a, &err) == 0)
            free(fx_allocation_format(&a));
        break;
    }
    case 4: {
        struct kube_stream *s = kube_stream_new(4096, on_line, NULL);
        if (s) {
            /* Two feeds cut at an input-chosen point. */
            size_t cut = size ? (unsigned char)text[0] % (size + 1) : 0;
            if (kube_stream_feed(s, text, cut, &err) == 0)
                kube_stream_feed(s, text + cut, size - cut, &err);
            kube_stream_free(s);
        }
        break;
    }
    }
    free(text);
    return 0;
}
