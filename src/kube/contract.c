/* SPDX-License-Identifier: Apache-2.0 */
#include "kube/contract.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "flexpu/quantity.h"
#include "kube/kube.h"
#include "kube/topology_key.h"
#include "util/fnv.h"

static int bad(struct flexpu_error *err, const char *field, const char *value, const char *why)
{
    return flexpu_error_field(err, FLEXPU_EINVAL, field, value ? value : "",
                              value ? strlen(value) : 0, why);
}

/* resources.limits[name], else resources.requests[name] (the API server
 * copies limits into requests for extended resources, but not always for
 * CPU and memory). Returns the string or NULL; *field names where it was. */
static const char *resource(json_t *ctr, const char *name, bool prefer_requests, char *field,
                            size_t flen, const char *prefix)
{
    const char *order[2] = {"limits", "requests"};
    if (prefer_requests) {
        order[0] = "requests";
        order[1] = "limits";
    }
    for (int i = 0; i < 2; i++) {
        json_t *v = json_object_get(kube_get(ctr, "resources"), order[i]);
        v = json_object_get(v, name);
        if (v) {
            snprintf(field, flen, "%s.resources.%s[%s]", prefix, order[i], name);
            return json_is_string(v) ? json_string_value(v) : "";
        }
    }
    return NULL;
}

/* An integer resource quantity within [lo, hi]. */
static int int_resource(json_t *ctr, const char *name, const char *prefix, int64_t lo, int64_t hi,
                        int64_t *out, bool *present, struct flexpu_error *err)
{
    char field[256];
    const char *s = resource(ctr, name, false, field, sizeof(field), prefix);
    *present = s != NULL;
    if (!s)
        return 0;
    int64_t milli;
    if (flexpu_quantity_parse_milli(s, field, &milli, err))
        return FLEXPU_EINVAL;
    if (milli % 1000)
        return bad(err, field, s, "must be a whole number");
    if (milli / 1000 < lo || milli / 1000 > hi) {
        char why[96];
        snprintf(why, sizeof(why), "must be between %lld and %lld", (long long)lo, (long long)hi);
        return bad(err, field, s, why);
    }
    *out = milli / 1000;
    return 0;
}

/* CPU (milli) and memory (bytes) a container requests. */
static int ctr_cpu_mem(json_t *ctr, const char *prefix, int64_t *cpu, int64_t *mem,
                       struct flexpu_error *err)
{
    char field[256];
    *cpu = *mem = 0;
    const char *s = resource(ctr, "cpu", true, field, sizeof(field), prefix);
    if (s && flexpu_quantity_parse_milli(s, field, cpu, err))
        return FLEXPU_EINVAL;
    s = resource(ctr, "memory", true, field, sizeof(field), prefix);
    if (s && flexpu_quantity_parse(s, field, mem, err))
        return FLEXPU_EINVAL;
    if (*cpu < 0 || *mem < 0)
        return bad(err, field, s, "must not be negative");
    return 0;
}

static int gpu_resources(json_t *ctr, const char *prefix, struct fx_pod_spec *o, bool *has,
                         struct flexpu_error *err)
{
    int64_t n = 0, cores = 0, mem = 0;
    bool pn, pc, pm;
    char field[256];
    int rc;
    if ((rc = int_resource(ctr, FX_RES_GPU, prefix, 1, FLEXPU_MAX_GPUS, &n, &pn, err)) ||
        (rc = int_resource(ctr, FX_RES_GPU_CORES, prefix, 1, 100, &cores, &pc, err)))
        return rc;
    const char *ms = resource(ctr, FX_RES_GPU_MEMORY, false, field, sizeof(field), prefix);
    pm = ms != NULL;
    if (ms) {
        if (flexpu_quantity_parse(ms, field, &mem, err))
            return FLEXPU_EINVAL;
        if (mem < FX_MIB)
            return bad(err, field, ms,
                       "is in bytes and must be at least 1Mi (write 4Gi, or 4096Mi)");
    }
    *has = pn || pc || pm;
    if (!*has)
        return 0;
    if (!pn) {
        snprintf(field, sizeof(field), "%s.resources.limits[%s]", prefix, FX_RES_GPU);
        return bad(err, field, "",
                   "must be set (1 for a slice) when gpu-cores or gpu-memory is requested");
    }
    o->num_gpu = (int)n;
    o->cores = pc ? (int)cores : (pm ? 0 : 100);
    o->gpu_mem = mem;
    return 0;
}

static int containers(json_t *list, const char *kind, struct fx_pod_spec *o, int64_t *cpu,
                      int64_t *mem, bool sum, bool gpu_allowed, int *gpu_ctrs,
                      struct flexpu_error *err)
{
    size_t i;
    json_t *ctr;
    json_array_foreach(list, i, ctr)
    {
        char prefix[96];
        snprintf(prefix, sizeof(prefix), "%s[%zu]", kind, i);
        int64_t c, m;
        if (ctr_cpu_mem(ctr, prefix, &c, &m, err))
            return FLEXPU_EINVAL;
        if (sum) {
            *cpu += c;
            *mem += m;
        } else {
            *cpu = c > *cpu ? c : *cpu;
            *mem = m > *mem ? m : *mem;
        }
        bool has = false;
        int rc = gpu_resources(ctr, prefix, o, &has, err);
        if (rc)
            return rc;
        if (has && (!gpu_allowed || ++*gpu_ctrs > 1)) {
            char field[128];
            snprintf(field, sizeof(field), "%s.resources.limits[%s]", prefix, FX_RES_GPU);
            return bad(err, field, "",
                       gpu_allowed ? "only one container of a pod may request flexpu.io GPUs"
                                   : "init containers may not request flexpu.io GPUs");
        }
    }
    return 0;
}

int fx_pod_spec_parse(json_t *pod, struct fx_pod_spec *o, struct flexpu_error *err)
{
    memset(o, 0, sizeof(*o));
    o->cores_limit = 100;
    o->priority = FX_PRIO_NORMAL;
    json_t *spec = json_object_get(pod, "spec");
    int64_t cpu = 0, mem = 0, icpu = 0, imem = 0;
    int gpu_ctrs = 0;
    int rc = containers(json_object_get(spec, "containers"), "containers", o, &cpu, &mem, true,
                        true, &gpu_ctrs, err);
    if (!rc)
        rc = containers(json_object_get(spec, "initContainers"), "initContainers", o, &icpu,
                        &imem, false, false, &gpu_ctrs, err);
    if (rc)
        return rc;
    o->cpu_milli = cpu > icpu ? cpu : icpu;
    o->mem_bytes = mem > imem ? mem : imem;
    json_t *overhead = json_object_get(spec, "overhead");
    if (overhead) {
        int64_t c = 0, m = 0;
        const char *s = json_string_value(json_object_get(overhead, "cpu"));
        if (s && flexpu_quantity_parse_milli(s, "spec.overhead[cpu]", &c, err))
            return FLEXPU_EINVAL;
        s = json_string_value(json_object_get(overhead, "memory"));
        if (s && flexpu_quantity_parse(s, "spec.overhead[memory]", &m, err))
            return FLEXPU_EINVAL;
        o->cpu_milli += c;
        o->mem_bytes += m;
    }
    o->wants_gpu = gpu_ctrs > 0;
    /* Node constraints are read by fx_pod_filter_parse (the scheduler's
     * business; the node agent reads this function too). */

    json_t *ann = kube_get(pod, "metadata.annotations");
    const char *s = json_string_value(json_object_get(ann, FX_ANN_CORES_LIMIT));
    if (s) {
        int64_t v;
        if (flexpu_quantity_parse_milli(s, "metadata.annotations[" FX_ANN_CORES_LIMIT "]", &v,
                                        err))
            return FLEXPU_EINVAL;
        if (v % 1000 || v < 1000 || v > 100000)
            return bad(err, "metadata.annotations[" FX_ANN_CORES_LIMIT "]", s,
                       "must be a whole percent between 1 and 100");
        if (o->wants_gpu && v / 1000 < o->cores)
            return bad(err, "metadata.annotations[" FX_ANN_CORES_LIMIT "]", s,
                       "must not be below the pod's flexpu.io/gpu-cores");
        o->cores_limit = (int)(v / 1000);
    }
    /* spec.priority, not the annotation, decides how high a pod may go:
     * the annotation is the user's, the class is the admin's. */
    json_t *cp = json_object_get(spec, "priority");
    o->class_priority = json_is_integer(cp) ? json_integer_value(cp) : 0;
    enum fx_priority allowed = fx_priority_allowed(o->class_priority);
    o->priority_asked = allowed;
    s = json_string_value(json_object_get(ann, FX_ANN_PRIORITY));
    if (s && fx_priority_parse(s, "metadata.annotations[" FX_ANN_PRIORITY "]",
                               &o->priority_asked, err))
        return FLEXPU_EINVAL;
    o->priority_capped = o->priority_asked > allowed;
    o->priority = o->priority_capped ? allowed : o->priority_asked;
    s = json_string_value(json_object_get(ann, FX_ANN_GPU_MODEL));
    if (s) {
        size_t n = strlen(s);
        if (n == 0 || n >= sizeof(o->model) || strspn(s,
                                                      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopq"
                                                      "rstuvwxyz0123456789-_.| ,") != n)
            return bad(err, "metadata.annotations[" FX_ANN_GPU_MODEL "]", s,
                       "must list GPU models separated by | (letters, digits, - _ .)");
        memcpy(o->model, s, n + 1);
    }
    s = json_string_value(json_object_get(ann, FX_ANN_OPPORTUNISTIC));
    if (!s && json_object_get(ann, FX_ANN_OPPORTUNISTIC))
        return bad(err, "metadata.annotations[" FX_ANN_OPPORTUNISTIC "]", "(not a string)",
                   "must be \"true\" or \"false\"");
    if (s && strcmp(s, "true") && strcmp(s, "false"))
        return bad(err, "metadata.annotations[" FX_ANN_OPPORTUNISTIC "]", s,
                   "must be \"true\" or \"false\"");
    o->opportunistic = s && strcmp(s, "true") == 0;
    s = json_string_value(json_object_get(ann, FX_ANN_REMOTE));
    if (!s && json_object_get(ann, FX_ANN_REMOTE))
        return bad(err, "metadata.annotations[" FX_ANN_REMOTE "]", "(not a string)",
                   "must be \"" FX_REMOTE_ALLOWED "\"");
    if (s && strcmp(s, FX_REMOTE_ALLOWED))
        return bad(err, "metadata.annotations[" FX_ANN_REMOTE "]", s,
                   "must be \"" FX_REMOTE_ALLOWED "\"");
    o->remote_allowed = s != NULL;
    return 0;
}

int fx_pod_remote_rule_parse(json_t *pod, const struct fx_pod_spec *spec, const char **key,
                             struct flexpu_error *err)
{
    *key = NULL;
    json_t *ann = kube_get(pod, "metadata.annotations");
    json_t *v = json_object_get(ann, FX_ANN_REMOTE_TOPOLOGY_KEY);
    if (!v)
        return 0;
    const char *s = json_string_value(v);
    const char *why = !s ? "must be a string: a node label key"
                         : fx_topology_key_problem(s, strlen(s));
    /* Without flexpu.io/remote the rule would be moot, silently: the pod
     * never runs remotely. */
    if (!why && !spec->remote_allowed)
        why = "is only for pods with " FX_ANN_REMOTE ": \"" FX_REMOTE_ALLOWED "\"";
    if (why)
        return bad(err, "metadata.annotations[" FX_ANN_REMOTE_TOPOLOGY_KEY "]",
                   s ? s : "(not a string)", why);
    *key = s;
    return 0;
}

/* A value as JSON, for an error message (the caller frees it; NULL when it
 * cannot be written, which bad() shows as empty). */
static char *json_shown(json_t *v)
{
    return json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
}

int fx_pod_gates_parse(json_t *pod, char *names, size_t cap, struct flexpu_error *err)
{
    if (cap)
        names[0] = 0;
    json_t *gates = kube_get(pod, "spec.schedulingGates");
    if (!gates || json_is_null(gates))
        return 0;
    if (!json_is_array(gates)) {
        char *v = json_shown(gates);
        int rc = bad(err, "spec.schedulingGates", v, "must be a list of {\"name\": ...}");
        free(v);
        return rc;
    }
    size_t i, len = 0;
    json_t *g;
    json_array_foreach(gates, i, g) {
        const char *name = json_string_value(json_object_get(g, "name"));
        if (!name || !*name) {
            char field[64], *v = json_shown(g);
            snprintf(field, sizeof(field), "spec.schedulingGates[%zu]", i);
            int rc = bad(err, field, v, "must be an object with a non-empty string \"name\"");
            free(v);
            return rc;
        }
        /* kube-scheduler's form: "[a b]"; a list too long for names ends
         * in "..." (the gates are still counted). */
        size_t at = len < cap ? len : cap;
        int w = snprintf(names + at, cap - at, "%s%s", i ? " " : "[", name);
        len += w > 0 ? (size_t)w : 0;
    }
    if (json_array_size(gates) == 0)
        return 0;
    if (len + 2 > cap && cap >= 5)
        snprintf(names + cap - 5, 5, "...]");
    else if (cap)
        snprintf(names + len, cap - len, "]");
    return (int)json_array_size(gates);
}

/* ---- queues and gangs ---- */

/* A Queue's name as a label value: a DNS subdomain (what metadata.name of a
 * Queue allows) that fits a label (63 characters). */
static bool queue_name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 63 || strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789-.") != n)
        return false;
    return s[0] != '-' && s[0] != '.' && s[n - 1] != '-' && s[n - 1] != '.';
}

/* A label value as the API server allows it, non-empty. */
static bool label_value_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 63 ||
        strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.") != n)
        return false;
    return strchr("-_.", s[0]) == NULL && strchr("-_.", s[n - 1]) == NULL;
}

int fx_pod_group_parse(json_t *pod, struct fx_pod_group *o, struct flexpu_error *err)
{
    memset(o, 0, sizeof(*o));
    snprintf(o->queue, sizeof(o->queue), "%s", FLEXPU_QUEUE_DEFAULT);
    json_t *labels = kube_get(pod, "metadata.labels");
    json_t *qv = json_object_get(labels, FX_LABEL_QUEUE);
    json_t *gv = json_object_get(labels, FX_LABEL_POD_GROUP);
    const char *q = json_string_value(qv), *g = json_string_value(gv);
    const char *mm = kube_annotation(pod, FX_ANN_MIN_MEMBERS);
    if ((qv && !q) || (q && *q && !queue_name_ok(q)))
        return bad(err, "metadata.labels[" FX_LABEL_QUEUE "]", q,
                   "must name a Queue: lower-case letters, digits, '-' and '.', at most 63");
    if (q && *q) /* an empty value is no choice: the default queue */
        memcpy(o->queue, q, strlen(q) + 1);
    if ((gv && !g) || (g && !label_value_ok(g)))
        return bad(err, "metadata.labels[" FX_LABEL_POD_GROUP "]", g,
                   "must name the pod group: letters, digits, '-', '_' and '.', at most 63");
    if (!g) {
        if (mm)
            return bad(err, "metadata.annotations[" FX_ANN_MIN_MEMBERS "]", mm,
                       "is only for members of a pod group (label " FX_LABEL_POD_GROUP ")");
        return 0;
    }
    memcpy(o->group, g, strlen(g) + 1);
    if (!mm)
        return bad(err, "metadata.annotations[" FX_ANN_MIN_MEMBERS "]", "",
                   "must be set on every member of a pod group: how many of its pods must "
                   "start together");
    char *end = NULL;
    errno = 0;
    long v = strtol(mm, &end, 10);
    if (errno || !isdigit((unsigned char)mm[0]) || *end || v < 1 ||
        v > FX_MIN_MEMBERS_MAX)
        return bad(err, "metadata.annotations[" FX_ANN_MIN_MEMBERS "]", mm,
                   "must be a whole number between 1 and 10000");
    o->min_members = (int)v;
    /* Its value is checked with the pod's spec (fx_pod_spec_parse). */
    const char *opp = kube_annotation(pod, FX_ANN_OPPORTUNISTIC);
    o->opportunistic = opp && strcmp(opp, "true") == 0;
    return 0;
}

/* A member's flexpu.io/opportunistic as a message shows it. */
static const char *opp_value(const struct fx_pod_group *g)
{
    return g->opportunistic ? "'true'" : "'false' (or none)";
}

int fx_pod_group_agree(const struct fx_pod_group *a, const char *a_pod,
                       const struct fx_pod_group *b, const char *b_pod, struct flexpu_error *err)
{
    if (a->min_members != b->min_members)
        return flexpu_error_set(err, FLEXPU_EINVAL,
                                "pod group '%s': pod %s has " FX_ANN_MIN_MEMBERS
                                " '%d' but pod %s has '%d': every member must carry the same",
                                b->group, b_pod, b->min_members, a_pod, a->min_members);
    if (strcmp(a->queue, b->queue) != 0)
        return flexpu_error_set(err, FLEXPU_EINVAL,
                                "pod group '%s': pod %s is in queue '%s' but pod %s is in '%s': "
                                "a pod group's members share one queue (label " FX_LABEL_QUEUE ")",
                                b->group, b_pod, b->queue, a_pod, a->queue);
    /* Mixed, a group would evict borrowers or not by which member's turn
     * it is (yields_to in model.c looks at one pod). */
    if (a->opportunistic != b->opportunistic)
        return flexpu_error_set(err, FLEXPU_EINVAL,
                                "pod group '%s': pod %s has " FX_ANN_OPPORTUNISTIC
                                " %s but pod %s has %s: every member must carry the same",
                                b->group, b_pod, opp_value(b), a_pod, opp_value(a));
    return 0;
}

enum fx_priority fx_priority_allowed(int64_t class_priority)
{
    if (class_priority >= FX_PRIO_CLASS_HIGH)
        return FX_PRIO_HIGH;
    return class_priority < 0 ? FX_PRIO_LOW : FX_PRIO_NORMAL;
}

int64_t fx_default_slice_mem(int num_gpu, int cores, int64_t gpu_mem, int64_t gpu_mem_bytes)
{
    if (num_gpu != 1 || cores >= 100 || gpu_mem > 0 || gpu_mem_bytes <= 0)
        return 0;
    /* A memory-only slice always names its memory, so cores is 1..99 here. */
    int64_t mib = gpu_mem_bytes / FX_MIB;
    return mib * cores / 100 * FX_MIB;
}

void fx_pod_spec_req(const struct fx_pod_spec *s, struct flexpu_pod_req *r)
{
    memset(r, 0, sizeof(*r));
    r->cpu_milli = s->cpu_milli;
    r->mem_mib = (s->mem_bytes + FX_MIB - 1) / FX_MIB;
    if (s->wants_gpu) {
        r->num_gpu = s->num_gpu;
        /* A memory-only slice guarantees no compute: it is accounted at the
         * smallest share and lives on what others leave idle. */
        r->gpu_milli = s->cores > 0 ? s->cores * 10 : 1;
        r->gpu_mem_mib = (s->gpu_mem + FX_MIB - 1) / FX_MIB;
    }
    r->priority = (int)s->priority;
}

/* ---- node inventory ---- */

static int copy_str(char *dst, size_t len, const char *s, const char *field,
                    struct flexpu_error *err)
{
    if (!s || !*s || strlen(s) >= len)
        return bad(err, field, s, "must be a non-empty string of reasonable length");
    memcpy(dst, s, strlen(s) + 1);
    return 0;
}

int fx_node_inv_parse(const char *text, struct fx_node_inv *out, struct flexpu_error *err)
{
    memset(out, 0, sizeof(*out));
    if (!text)
        return 0;
    json_error_t je;
    json_t *a = json_loads(text, 0, &je);
    if (!json_is_array(a)) {
        json_decref(a);
        return bad(err, "metadata.annotations[" FX_ANN_NODE_GPUS "]", text,
                   "must be a JSON array of GPUs");
    }
    if (json_array_size(a) > FLEXPU_MAX_GPUS) {
        json_decref(a);
        return bad(err, "metadata.annotations[" FX_ANN_NODE_GPUS "]", text,
                   "lists more than 16 GPUs");
    }
    size_t i;
    json_t *g;
    int rc = 0;
    json_array_foreach(a, i, g)
    {
        struct fx_gpu_inv *v = &out->gpus[i];
        char field[96];
        snprintf(field, sizeof(field), FX_ANN_NODE_GPUS "[%zu].uuid", i);
        if ((rc = copy_str(v->uuid, sizeof(v->uuid), json_string_value(json_object_get(g, "uuid")),
                           field, err)))
            break;
        snprintf(field, sizeof(field), FX_ANN_NODE_GPUS "[%zu].model", i);
        if ((rc = copy_str(v->model, sizeof(v->model),
                           json_string_value(json_object_get(g, "model")), field, err)))
            break;
        json_t *m = json_object_get(g, "memory");
        if (m && (!json_is_integer(m) || json_integer_value(m) < 0)) {
            snprintf(field, sizeof(field), FX_ANN_NODE_GPUS "[%zu].memory", i);
            rc = bad(err, field, "", "must be a non-negative integer (bytes)");
            break;
        }
        v->mem_bytes = json_integer_value(m);
        json_t *numa = json_object_get(g, "numa");
        v->numa = json_is_integer(numa) ? (int)json_integer_value(numa) : -1;
        json_t *grp = json_object_get(g, "group");
        v->group = json_is_integer(grp) ? (int)json_integer_value(grp) : 0;
        const char *h = json_string_value(json_object_get(g, "health"));
        v->healthy = !h || strcmp(h, "Healthy") == 0;
        json_t *mig = json_object_get(g, "mig");
        snprintf(field, sizeof(field), FX_ANN_NODE_GPUS "[%zu].mig", i);
        if (mig && (rc = copy_str(v->mig, sizeof(v->mig), json_string_value(mig), field, err)))
            break;
        for (size_t j = 0; j < i; j++)
            if (strcmp(out->gpus[j].uuid, v->uuid) == 0) {
                snprintf(field, sizeof(field), FX_ANN_NODE_GPUS "[%zu].uuid", i);
                rc = bad(err, field, v->uuid, "appears twice");
                break;
            }
        if (rc)
            break;
        out->ngpu = (int)i + 1;
    }
    json_decref(a);
    if (rc)
        memset(out, 0, sizeof(*out));
    return rc;
}

char *fx_node_inv_format(const struct fx_node_inv *inv)
{
    json_t *a = json_array();
    for (int i = 0; i < inv->ngpu; i++) {
        const struct fx_gpu_inv *g = &inv->gpus[i];
        json_t *o = json_pack("{s:s, s:s, s:I, s:i, s:i, s:s}", "uuid", g->uuid, "model",
                              g->model, "memory", (json_int_t)g->mem_bytes, "numa", g->numa,
                              "group", g->group, "health", g->healthy ? "Healthy" : "Unhealthy");
        if (g->mig[0])
            json_object_set_new(o, "mig", json_string(g->mig));
        json_array_append_new(a, o);
    }
    char *s = json_dumps(a, JSON_COMPACT);
    json_decref(a);
    return s;
}

/* ---- usage feed ---- */

#define USAGE_FIELD "metadata.annotations[" FX_ANN_NODE_USAGE "]"

/* An integer member in lo..hi; absent is an error too. */
static int usage_int(json_t *obj, const char *key, const char *field, int64_t lo, int64_t hi,
                     const char *why, int64_t *out, struct flexpu_error *err)
{
    json_t *v = json_object_get(obj, key);
    char val[64];
    if (!v)
        return bad(err, field, "", why);
    if (!json_is_integer(v)) {
        char *dump = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
        snprintf(val, sizeof(val), "%s", dump ? dump : "?");
        free(dump);
        return bad(err, field, val, why);
    }
    json_int_t n = json_integer_value(v);
    if (n < lo || n > hi) {
        snprintf(val, sizeof(val), "%lld", (long long)n);
        return bad(err, field, val, why);
    }
    *out = n;
    return 0;
}

/* "mean", optional: absent, it is taken as busy (the cautious figure). */
static int usage_mean(json_t *obj, const char *at, int *out, int busy, struct flexpu_error *err)
{
    char field[160];
    int64_t v = busy;
    snprintf(field, sizeof(field), "%s.mean", at);
    if (json_object_get(obj, "mean") &&
        usage_int(obj, "mean", field, 0, FX_USAGE_BUSY_MAX,
                  "must be 0-1000 (thousandths of the GPU)", &v, err))
        return FLEXPU_EINVAL;
    *out = (int)v;
    return 0;
}

static int usage_slice(json_t *s, const char *at, struct fx_usage_slice *o,
                       struct flexpu_error *err)
{
    char field[160];
    int64_t v;
    snprintf(field, sizeof(field), "%s.pod", at);
    const char *pod = json_string_value(json_object_get(s, "pod"));
    if (!pod || !*pod || strlen(pod) >= sizeof(o->pod))
        return bad(err, field, pod, "must be the pod's UID (1-63 characters)");
    memcpy(o->pod, pod, strlen(pod) + 1);
    snprintf(field, sizeof(field), "%s.busy", at);
    if (usage_int(s, "busy", field, 0, FX_USAGE_BUSY_MAX, "must be 0-1000 (thousandths of the GPU)",
                  &v, err))
        return FLEXPU_EINVAL;
    o->busy = (int)v;
    if (usage_mean(s, at, &o->mean, o->busy, err))
        return FLEXPU_EINVAL;
    snprintf(field, sizeof(field), "%s.memory", at);
    if (usage_int(s, "memory", field, 0, INT64_MAX, "must be a non-negative integer (bytes)",
                  &o->mem, err))
        return FLEXPU_EINVAL;
    return 0;
}

static int usage_gpu(json_t *g, size_t i, int ngpu, struct fx_node_usage *out,
                     struct flexpu_error *err)
{
    char at[96], field[128];
    int64_t idx, v;
    snprintf(at, sizeof(at), USAGE_FIELD ".gpus[%zu]", i);
    snprintf(field, sizeof(field), "%s.index", at);
    if (!json_is_object(g))
        return bad(err, at, "", "must be an object {index, busy, memory, slices}");
    char why[96];
    snprintf(why, sizeof(why), "must be the index of one of the node's %d GPUs (" FX_ANN_NODE_GPUS
             ")", ngpu);
    if (usage_int(g, "index", field, 0, ngpu - 1, why, &idx, err))
        return FLEXPU_EINVAL;
    struct fx_usage_gpu *o = &out->gpus[idx];
    if (o->known) {
        char val[16];
        snprintf(val, sizeof(val), "%lld", (long long)idx);
        return bad(err, field, val, "appears twice");
    }
    snprintf(field, sizeof(field), "%s.busy", at);
    if (usage_int(g, "busy", field, 0, FX_USAGE_BUSY_MAX, "must be 0-1000 (thousandths of the GPU)",
                  &v, err))
        return FLEXPU_EINVAL;
    o->busy = (int)v;
    if (usage_mean(g, at, &o->mean, o->busy, err))
        return FLEXPU_EINVAL;
    snprintf(field, sizeof(field), "%s.memory", at);
    if (usage_int(g, "memory", field, 0, INT64_MAX, "must be a non-negative integer (bytes)",
                  &o->mem, err))
        return FLEXPU_EINVAL;
    json_t *sl = json_object_get(g, "slices");
    snprintf(field, sizeof(field), "%s.slices", at);
    if (sl && (!json_is_array(sl) || json_array_size(sl) > FX_USAGE_SLICES_MAX))
        return bad(err, field, json_is_array(sl) ? "" : "not an array",
                   "must be an array of at most 32 slices");
    size_t j;
    json_t *s;
    json_array_foreach(sl, j, s)
    {
        snprintf(field, sizeof(field), "%s.slices[%zu]", at, j);
        if (usage_slice(s, field, &o->slices[j], err))
            return FLEXPU_EINVAL;
        o->nslices = (int)j + 1;
    }
    o->known = true;
    return 0;
}

int fx_node_usage_parse(const char *text, int ngpu, struct fx_node_usage *out,
                        struct flexpu_error *err)
{
    memset(out, 0, sizeof(*out));
    if (!text)
        return 0;
    if (ngpu > FLEXPU_MAX_GPUS)
        ngpu = FLEXPU_MAX_GPUS;
    json_error_t je;
    json_t *j = json_loads(text, 0, &je);
    int64_t v = 0, ts = 0;
    int rc = 0;
    json_t *gpus = json_object_get(j, "gpus");
    if (!json_is_object(j))
        rc = bad(err, USAGE_FIELD, text, "must be a JSON object {v, ts, gpus}");
    else if (usage_int(j, "v", USAGE_FIELD ".v", FX_USAGE_VERSION, FX_USAGE_VERSION,
                       "unsupported version: this scheduler reads version 1", &v, err) ||
             usage_int(j, "ts", USAGE_FIELD ".ts", 0, INT64_MAX,
                       "must be a non-negative integer (unix seconds)", &ts, err))
        rc = FLEXPU_EINVAL;
    else if (!json_is_array(gpus) || json_array_size(gpus) > FLEXPU_MAX_GPUS)
        rc = bad(err, USAGE_FIELD ".gpus", json_is_array(gpus) ? "" : "not an array",
                 "must be an array of at most 16 GPUs");
    size_t i;
    json_t *g;
    json_array_foreach(rc ? NULL : gpus, i, g)
    {
        if ((rc = usage_gpu(g, i, ngpu, out, err)))
            break;
    }
    json_decref(j);
    if (rc)
        memset(out, 0, sizeof(*out));
    else
        out->ts = ts;
    return rc;
}

static json_t *usage_entry(const char *key, const char *pod, int i, int busy, int mean,
                           int64_t mem, json_t *slices)
{
    json_t *o = json_object();
    if (!o) {
        json_decref(slices);
        return NULL;
    }
    int rc = pod ? json_object_set_new(o, key, json_string(pod))
                 : json_object_set_new(o, key, json_integer(i));
    rc |= json_object_set_new(o, "busy", json_integer(busy));
    rc |= json_object_set_new(o, "mean", json_integer(mean));
    rc |= json_object_set_new(o, "memory", json_integer((json_int_t)mem));
    if (slices)
        rc |= json_object_set_new(o, "slices", slices);
    if (rc) {
        json_decref(o);
        return NULL;
    }
    return o;
}

char *fx_node_usage_format(const struct fx_node_usage *u, int ngpu)
{
    json_t *top = json_object(), *a = json_array();
    int rc = !top || !a;
    for (int i = 0; i < ngpu && i < FLEXPU_MAX_GPUS && !rc; i++) {
        const struct fx_usage_gpu *g = &u->gpus[i];
        if (!g->known)
            continue;
        json_t *sl = json_array();
        for (int k = 0; sl && k < g->nslices && k < FX_USAGE_SLICES_MAX && !rc; k++)
            rc = json_array_append_new(sl, usage_entry("pod", g->slices[k].pod, 0,
                                                       g->slices[k].busy, g->slices[k].mean,
                                                       g->slices[k].mem, NULL));
        if (!sl || rc) {
            json_decref(sl);
            rc = -1;
            break;
        }
        rc = json_array_append_new(a,
                                   usage_entry("index", NULL, i, g->busy, g->mean, g->mem, sl));
    }
    char *s = NULL;
    if (!rc && top) {
        rc = json_object_set_new(top, "v", json_integer(FX_USAGE_VERSION));
        rc |= json_object_set_new(top, "ts", json_integer((json_int_t)u->ts));
        rc |= json_object_set_new(top, "gpus", a);
        a = NULL;
        if (!rc)
            s = json_dumps(top, JSON_COMPACT);
    }
    json_decref(a);
    json_decref(top);
    return s;
}

/* ---- allocation ---- */

/* A node name as metadata.name allows it: a DNS subdomain, lowercase
 * letters, digits, '-' and '.', starting and ending alphanumeric. */
static bool node_name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n >= FX_NODE_NAME_MAX ||
        strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789-.") != n)
        return false;
    return s[0] != '-' && s[0] != '.' && s[n - 1] != '-' && s[n - 1] != '.';
}

/* "remote":{"node":NAME} and nothing else in it. */
static int remote_parse(json_t *r, struct fx_allocation *out, struct flexpu_error *err)
{
    const char *field = "metadata.annotations[" FX_ANN_ALLOCATION "].remote";
    if (!json_is_object(r) || json_object_size(r) != 1)
        return bad(err, field, json_is_string(r) ? json_string_value(r) : "(not {\"node\":...})",
                   "must be {\"node\":NAME}, the GPU node's name");
    const char *node = json_string_value(json_object_get(r, "node"));
    if (!node || !node_name_ok(node))
        return bad(err, "metadata.annotations[" FX_ANN_ALLOCATION "].remote.node",
                   node ? node : "(not a string)",
                   "must be a node name (lowercase letters, digits, - and ., at most 253)");
    memcpy(out->remote_node, node, strlen(node) + 1);
    return 0;
}

int fx_allocation_parse(const char *text, struct fx_allocation *out, struct flexpu_error *err)
{
    memset(out, 0, sizeof(*out));
    const char *field = "metadata.annotations[" FX_ANN_ALLOCATION "]";
    json_error_t je;
    json_t *j = text ? json_loads(text, 0, &je) : NULL;
    json_t *gpus = json_object_get(j, "gpus");
    if (!json_is_array(gpus) || json_array_size(gpus) == 0 ||
        json_array_size(gpus) > FLEXPU_MAX_GPUS) {
        json_decref(j);
        return bad(err, field, text, "must be {\"gpus\":[{uuid,index,cores,memory}...]}");
    }
    size_t i;
    json_t *g;
    int rc = 0;
    json_array_foreach(gpus, i, g)
    {
        struct fx_alloc_gpu *a = &out->gpus[i];
        json_t *idx = json_object_get(g, "index"), *cores = json_object_get(g, "cores"),
               *mem = json_object_get(g, "memory");
        const char *uuid = json_string_value(json_object_get(g, "uuid"));
        if (!uuid || !*uuid || strlen(uuid) >= sizeof(a->uuid) || !json_is_integer(idx) ||
            json_integer_value(idx) < 0 || json_integer_value(idx) >= FLEXPU_MAX_GPUS ||
            !json_is_integer(cores) || json_integer_value(cores) < 0 ||
            json_integer_value(cores) > 100 || (mem && !json_is_integer(mem)) ||
            json_integer_value(mem) < 0) {
            rc = bad(err, field, text, "a GPU entry needs uuid, index 0-15, cores 0-100, memory");
            break;
        }
        memcpy(a->uuid, uuid, strlen(uuid) + 1);
        a->index = (int)json_integer_value(idx);
        a->cores = (int)json_integer_value(cores);
        a->mem = json_integer_value(mem);
        out->ngpu = (int)i + 1;
    }
    json_t *b = json_object_get(j, "borrowed");
    if (!rc && b && !json_is_boolean(b))
        rc = bad(err, "metadata.annotations[" FX_ANN_ALLOCATION "].borrowed", text,
                 "must be true or false");
    out->borrowed = json_is_true(b);
    json_t *bm = json_object_get(j, "borrow_mem");
    const char *bms = json_string_value(bm);
    if (!rc && bm && (!bms || (strcmp(bms, "idle") != 0 && strcmp(bms, "unreserved") != 0)))
        rc = bad(err, "metadata.annotations[" FX_ANN_ALLOCATION "].borrow_mem",
                 bms ? bms : text, "must be \"idle\" or \"unreserved\"");
    else if (!rc && bm && !out->borrowed)
        rc = bad(err, "metadata.annotations[" FX_ANN_ALLOCATION "].borrow_mem", bms,
                 "only a borrowed allocation says which memory it borrows");
    out->borrow_idle = bms && strcmp(bms, "idle") == 0;
    json_t *r = json_object_get(j, "remote");
    if (!rc && r)
        rc = remote_parse(r, out, err);
    json_decref(j);
    if (rc)
        memset(out, 0, sizeof(*out));
    return rc;
}

int fx_allocation_check(const struct fx_pod_spec *s, const struct fx_allocation *a,
                        const int64_t *gpu_mem_bytes, struct flexpu_error *err)
{
    char field[128], val[48], why[200];
    if (!s->wants_gpu)
        return bad(err, "metadata.annotations[" FX_ANN_ALLOCATION "]", "",
                   "the pod requests no flexpu.io resources");
    if (a->ngpu != s->num_gpu) {
        snprintf(val, sizeof(val), "%d GPU(s)", a->ngpu);
        snprintf(why, sizeof(why), "the pod requests %s: %d", FX_RES_GPU, s->num_gpu);
        return bad(err, "metadata.annotations[" FX_ANN_ALLOCATION "].gpus", val, why);
    }
    if (a->remote_node[0]) {
        /* A forged remote allocation must not give a slice to a pod that
         * did not ask for one elsewhere. */
        const char *rf = "metadata.annotations[" FX_ANN_ALLOCATION "].remote.node";
        if (!s->remote_allowed)
            return bad(err, rf, a->remote_node,
                       "the pod does not allow a remote slice (" FX_ANN_REMOTE
                       " is not \"" FX_REMOTE_ALLOWED "\")");
        if (a->borrowed)
            return bad(err, rf, a->remote_node, "a borrowed slice is never remote");
        /* N GPUs, all of one GPU node (the count is checked above): each
         * a slice of its own GPU, so no GPU twice. */
        for (int i = 0; i < a->ngpu; i++)
            for (int k = 0; k < i; k++)
                if (strcmp(a->gpus[i].uuid, a->gpus[k].uuid) == 0) {
                    snprintf(field, sizeof(field),
                             "metadata.annotations[" FX_ANN_ALLOCATION "].gpus[%d].uuid", i);
                    snprintf(why, sizeof(why), "a remote pod's GPUs are distinct; gpus[%d] "
                             "names it too", k);
                    return bad(err, field, a->gpus[i].uuid, why);
                }
    }
    if (a->borrowed) {
        /* Only a slice of one GPU may borrow, and only for a pod that said
         * so: a forged borrowed allocation must not make a pod run where no
         * share was given to it. */
        const char *bf = "metadata.annotations[" FX_ANN_ALLOCATION "].borrowed";
        if (!s->opportunistic)
            return bad(err, bf, "true",
                       "the pod is not opportunistic (" FX_ANN_OPPORTUNISTIC " is not \"true\")");
        if (s->num_gpu != 1 || s->cores <= 0 || s->cores >= 100) {
            snprintf(why, sizeof(why),
                     "only a slice of one GPU may borrow; the pod asks %d GPU(s) with %s %d",
                     s->num_gpu, FX_RES_GPU_CORES, s->cores);
            return bad(err, bf, "true", why);
        }
        if (a->gpus[0].cores != s->cores) {
            snprintf(val, sizeof(val), "%d", a->gpus[0].cores);
            snprintf(why, sizeof(why), "a borrowed slice has the pod's own %s: %d",
                     FX_RES_GPU_CORES, s->cores);
            return bad(err, "metadata.annotations[" FX_ANN_ALLOCATION "].gpus[0].cores", val,
                       why);
        }
    }
    for (int i = 0; i < a->ngpu; i++) {
        const struct fx_alloc_gpu *g = &a->gpus[i];
        snprintf(field, sizeof(field), "metadata.annotations[" FX_ANN_ALLOCATION "].gpus[%d].cores",
                 i);
        snprintf(val, sizeof(val), "%d", g->cores);
        if (g->cores != s->cores && g->cores != 100) {
            snprintf(why, sizeof(why), "the pod requests %s: %d", FX_RES_GPU_CORES, s->cores);
            return bad(err, field, val, why);
        }
        int64_t want = s->gpu_mem;
        if (!want && g->cores < 100)
            want = fx_default_slice_mem(s->num_gpu, s->cores, 0, gpu_mem_bytes[i]);
        if (g->mem != want) {
            snprintf(field, sizeof(field),
                     "metadata.annotations[" FX_ANN_ALLOCATION "].gpus[%d].memory", i);
            snprintf(val, sizeof(val), "%lld", (long long)g->mem);
            snprintf(why, sizeof(why), "the pod's request implies %lld bytes (%s %s)",
                     (long long)want, FX_RES_GPU_MEMORY,
                     s->gpu_mem ? "as asked" : "defaulted to its share of the GPU");
            return bad(err, field, val, why);
        }
    }
    return 0;
}

char *fx_allocation_format(const struct fx_allocation *al)
{
    json_t *a = json_array();
    for (int i = 0; i < al->ngpu; i++)
        json_array_append_new(a, json_pack("{s:s, s:i, s:i, s:I}", "uuid", al->gpus[i].uuid,
                                           "index", al->gpus[i].index, "cores", al->gpus[i].cores,
                                           "memory", (json_int_t)al->gpus[i].mem));
    json_t *o = json_pack("{s:o}", "gpus", a);
    if (o && al->borrowed)
        json_object_set_new(o, "borrowed", json_true());
    if (o && al->borrowed && al->borrow_idle)
        json_object_set_new(o, "borrow_mem", json_string("idle"));
    if (o && al->remote_node[0])
        json_object_set_new(o, "remote", json_pack("{s:s}", "node", al->remote_node));
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    return s;
}

/* The allocations on a borrower's GPU: the owners' quotas (whole: one has
 * none, all the memory is its) and the other borrowers'. */
static void holds_sum(const struct fx_gpu_hold *holds, int n, int64_t *reserved,
                      int64_t *borrowed, bool *whole)
{
    *reserved = *borrowed = 0;
    *whole = false;
    for (int i = 0; i < n; i++) {
        if (holds[i].borrowed)
            *borrowed += holds[i].mem;
        else if (holds[i].mem <= 0)
            *whole = true;
        else
            *reserved += holds[i].mem;
    }
}

int fx_borrow_fits(int64_t gpu_mem, const struct fx_gpu_hold *holds, int n, int64_t want,
                   struct flexpu_error *err)
{
    int64_t reserved, borrowed;
    bool whole;
    holds_sum(holds, n, &reserved, &borrowed, &whole);
    int64_t left = whole ? 0 : gpu_mem - reserved - borrowed;
    if (want > 0 && left >= want)
        return 0;
    char val[32], why[240];
    snprintf(val, sizeof(val), "%lld", (long long)want);
    snprintf(why, sizeof(why),
             "a borrowed slice takes only memory no slice reserved: the GPU has %lld bytes, "
             "its slices reserve %s%lld, other borrowers hold %lld",
             (long long)gpu_mem, whole ? "all (a whole GPU) of it, " : "", (long long)reserved,
             (long long)borrowed);
    return bad(err, "metadata.annotations[" FX_ANN_ALLOCATION "].gpus[0].memory", val, why);
}

int fx_borrow_fits_idle(int64_t gpu_mem, const struct fx_gpu_hold *holds, int n, int64_t want,
                        int cores, int64_t owners_used, struct flexpu_error *err)
{
    int64_t reserved, borrowed;
    bool whole;
    holds_sum(holds, n, &reserved, &borrowed, &whole);
    char val[32], why[300];
    snprintf(val, sizeof(val), "%lld", (long long)want);
    if (!fx_borrow_light(want, cores, gpu_mem)) {
        snprintf(why, sizeof(why),
                 "a slice borrowing reserved memory must be light: at most a quarter of its "
                 "share (%d%% cores) of the GPU's %lld bytes", cores, (long long)gpu_mem);
        return bad(err, "metadata.annotations[" FX_ANN_ALLOCATION "].gpus[0].memory", val, why);
    }
    /* Whole: an owner without a quota may take all of it at any time. */
    int64_t room = whole ? 0 : fx_borrow_mem_room(gpu_mem, reserved, owners_used, true);
    if (room - borrowed >= want)
        return 0;
    snprintf(why, sizeof(why),
             "a borrowed slice takes only memory its GPU's owners do not use: the GPU has %lld "
             "bytes, its slices reserve %s%lld and use %lld (measured; %d%% of the GPU kept "
             "free above that), other borrowers hold %lld",
             (long long)gpu_mem, whole ? "all (a whole GPU) of it, " : "", (long long)reserved,
             (long long)owners_used, FX_BORROW_MEM_HEADROOM_PCT, (long long)borrowed);
    return bad(err, "metadata.annotations[" FX_ANN_ALLOCATION "].gpus[0].memory", val, why);
}

bool fx_borrow_light(int64_t mem, int cores, int64_t gpu_mem)
{
    if (mem <= 0 || cores <= 0 || cores > 100 || gpu_mem <= 0)
        return false;
    /* mem <= gpu_mem * cores / 100 / 4, without overflow or rounding up */
    return mem <= gpu_mem / 400 * cores + gpu_mem % 400 * cores / 400;
}

int64_t fx_borrow_mem_room(int64_t gpu_mem, int64_t reserved, int64_t owners_used, bool idle)
{
    int64_t room = gpu_mem - reserved;
    if (idle) {
        int64_t head = gpu_mem / 100 * FX_BORROW_MEM_HEADROOM_PCT;
        int64_t used = owners_used > 0 ? owners_used : 0;
        if (gpu_mem - used - head > room)
            room = gpu_mem - used - head;
    }
    return room > 0 ? room : 0;
}

/* ---- nodes ---- */

int fx_node_allocatable(json_t *node, int64_t *cpu_milli, int64_t *mem_bytes,
                        struct flexpu_error *err)
{
    json_t *alloc = kube_get(node, "status.allocatable");
    if (!alloc)
        alloc = kube_get(node, "status.capacity");
    const char *cpu = json_string_value(json_object_get(alloc, "cpu"));
    const char *mem = json_string_value(json_object_get(alloc, "memory"));
    *cpu_milli = *mem_bytes = 0;
    if (cpu && flexpu_quantity_parse_milli(cpu, "status.allocatable[cpu]", cpu_milli, err))
        return FLEXPU_EINVAL;
    if (mem && flexpu_quantity_parse(mem, "status.allocatable[memory]", mem_bytes, err))
        return FLEXPU_EINVAL;
    return 0;
}

int fx_node_remote_slots(json_t *node, int *slots, struct flexpu_error *err)
{
    json_t *alloc = kube_get(node, "status.allocatable");
    if (!alloc)
        alloc = kube_get(node, "status.capacity");
    const char *v = json_string_value(json_object_get(alloc, FX_RES_GPU));
    int64_t n = 0;
    *slots = 0;
    if (v && flexpu_quantity_parse(v, "status.allocatable[" FX_RES_GPU "]", &n, err))
        return FLEXPU_EINVAL;
    /* More than a node could ever run is a typo, not capacity. */
    *slots = n < 0 ? 0 : n > 100000 ? 100000 : (int)n;
    return 0;
}

bool fx_node_cordoned(json_t *node)
{
    size_t i;
    json_t *t;
    json_array_foreach(kube_get(node, "status.conditions"), i, t)
    {
        const char *type = json_string_value(json_object_get(t, "type"));
        if (type && strcmp(type, "Ready") == 0) {
            const char *st = json_string_value(json_object_get(t, "status"));
            return !st || strcmp(st, "True") != 0;
        }
    }
    return false;
}

/* ---- node filters: labels, taints, tolerations, affinity ---- */

static const char *const effect_names[] = {"", "NoSchedule", "PreferNoSchedule", "NoExecute"};

/* An effect name, "" allowed only for tolerations; -1 when unknown. */
static int effect_parse(const char *s, bool empty_ok)
{
    if (!s || !*s)
        return empty_ok ? FLEXPU_TAINT_ANY : -1;
    for (int i = 1; i < 4; i++)
        if (strcmp(s, effect_names[i]) == 0)
            return i;
    return -1;
}

/* A string member of obj (absent: NULL; present but not a string: error). */
static int opt_str(json_t *obj, const char *name, const char *field, const char **out,
                   struct flexpu_error *err)
{
    json_t *v = json_object_get(obj, name);
    *out = NULL;
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_string(v))
        return bad(err, field, "", "must be a string");
    *out = json_string_value(v);
    return 0;
}

void fx_node_attrs_free(struct fx_node_attrs *a)
{
    free(a->labels);
    free(a->taints);
    memset(a, 0, sizeof(*a));
}

int fx_node_attrs_parse(json_t *node, struct fx_node_attrs *out, struct flexpu_error *err)
{
    memset(out, 0, sizeof(*out));
    json_t *labels = kube_get(node, "metadata.labels");
    json_t *taints = kube_get(node, "spec.taints");
    bool unsched = json_is_true(kube_get(node, "spec.unschedulable"));
    if (labels && !json_is_object(labels) && !json_is_null(labels))
        return bad(err, "metadata.labels", "", "must be an object of strings");
    if (taints && !json_is_array(taints) && !json_is_null(taints))
        return bad(err, "spec.taints", "", "must be an array of taints");
    size_t nl = json_object_size(labels), nt = json_array_size(taints) + (unsched ? 1 : 0);
    out->labels = nl ? calloc(nl, sizeof(*out->labels)) : NULL;
    out->taints = nt ? calloc(nt, sizeof(*out->taints)) : NULL;
    if ((nl && !out->labels) || (nt && !out->taints)) {
        fx_node_attrs_free(out);
        return flexpu_error_set(err, FLEXPU_ENOMEM, "out of memory reading a node's labels");
    }
    uint64_t h = FX_FNV1A_OFFSET;
    char field[128];
    const char *key;
    json_t *v;
    json_object_foreach(labels, key, v)
    {
        if (!json_is_string(v)) {
            snprintf(field, sizeof(field), "metadata.labels[%.80s]", key);
            fx_node_attrs_free(out);
            return bad(err, field, "", "must be a string");
        }
        out->labels[out->nlabels].key = key;
        out->labels[out->nlabels++].value = json_string_value(v);
        h = fx_fnv1a_field(fx_fnv1a_field(h, key), json_string_value(v));
    }
    h = fx_fnv1a_byte(h, 0xfe);
    size_t i;
    json_t *t;
    bool have_unsched = false;
    json_array_foreach(taints, i, t)
    {
        const char *k, *val, *eff;
        snprintf(field, sizeof(field), "spec.taints[%zu].key", i);
        int rc = opt_str(t, "key", field, &k, err);
        if (!rc && (!k || !*k))
            rc = bad(err, field, k, "a taint needs a key");
        if (!rc) {
            snprintf(field, sizeof(field), "spec.taints[%zu].value", i);
            rc = opt_str(t, "value", field, &val, err);
        }
        if (!rc) {
            snprintf(field, sizeof(field), "spec.taints[%zu].effect", i);
            rc = opt_str(t, "effect", field, &eff, err);
        }
        int e = rc ? -1 : effect_parse(eff, false);
        if (!rc && e < 0)
            rc = bad(err, field, eff, "must be NoSchedule, PreferNoSchedule or NoExecute");
        if (rc) {
            fx_node_attrs_free(out);
            return rc;
        }
        struct flexpu_taint *x = &out->taints[out->ntaints++];
        x->key = k;
        x->value = val ? val : "";
        x->effect = (enum flexpu_taint_effect)e;
        have_unsched |= strcmp(k, FX_TAINT_UNSCHEDULABLE) == 0 && e == FLEXPU_TAINT_NO_SCHEDULE;
        h = fx_fnv1a_field(fx_fnv1a_field(h, k), x->value) * (uint64_t)(3 + e);
    }
    if (unsched && !have_unsched) {
        struct flexpu_taint *x = &out->taints[out->ntaints++];
        x->key = FX_TAINT_UNSCHEDULABLE;
        x->value = "";
        x->effect = FLEXPU_TAINT_NO_SCHEDULE;
    }
    out->hash = fx_fnv1a_byte(h, unsched);
    return 0;
}

static int tolerations(json_t *list, struct flexpu_filter **f, struct flexpu_error *err)
{
    static const char *const ops[] = {"Equal", "Exists", "Lt", "Gt"};
    size_t i;
    json_t *t;
    json_array_foreach(list, i, t)
    {
        char field[96];
        const char *key, *op, *value, *eff;
        snprintf(field, sizeof(field), "spec.tolerations[%zu]", i);
        if (!json_is_object(t))
            return bad(err, field, "", "must be an object");
        int rc;
        snprintf(field, sizeof(field), "spec.tolerations[%zu].key", i);
        if ((rc = opt_str(t, "key", field, &key, err)))
            return rc;
        snprintf(field, sizeof(field), "spec.tolerations[%zu].value", i);
        if ((rc = opt_str(t, "value", field, &value, err)))
            return rc;
        snprintf(field, sizeof(field), "spec.tolerations[%zu].operator", i);
        if ((rc = opt_str(t, "operator", field, &op, err)))
            return rc;
        int o = op && *op ? -1 : FLEXPU_TOL_EQUAL;
        for (int k = 0; k < 4 && o < 0; k++)
            if (strcmp(op, ops[k]) == 0)
                o = k;
        if (o < 0)
            return bad(err, field, op, "must be Equal, Exists, Lt or Gt");
        snprintf(field, sizeof(field), "spec.tolerations[%zu].effect", i);
        if ((rc = opt_str(t, "effect", field, &eff, err)))
            return rc;
        int e = effect_parse(eff, true);
        if (e < 0)
            return bad(err, field, eff, "must be empty, NoSchedule, PreferNoSchedule or NoExecute");
        if (!*f && !(*f = flexpu_filter_new()))
            return flexpu_error_set(err, FLEXPU_ENOMEM, "out of memory reading tolerations");
        rc = flexpu_filter_add_toleration(*f, key, (enum flexpu_toleration_op)o, value,
                                          (enum flexpu_taint_effect)e, err);
        if (rc) {
            flexpu_error_prefix(err, "spec.tolerations[%zu]", i);
            return rc;
        }
    }
    return 0;
}

static int selector(json_t *sel, struct flexpu_filter **f, struct flexpu_error *err)
{
    const char *key;
    json_t *v;
    json_object_foreach(sel, key, v)
    {
        char field[128];
        snprintf(field, sizeof(field), "spec.nodeSelector[%.80s]", key);
        if (!json_is_string(v))
            return bad(err, field, "", "must be a string");
        if (!*f && !(*f = flexpu_filter_new()))
            return flexpu_error_set(err, FLEXPU_ENOMEM, "out of memory reading nodeSelector");
        int rc = flexpu_filter_add_selector(*f, key, json_string_value(v), err);
        if (rc) {
            flexpu_error_prefix(err, "%s", field);
            return rc;
        }
    }
    return 0;
}

/* The requirements of one term (matchExpressions or matchFields). */
static int requirements(json_t *list, bool fields, const char *path, struct flexpu_filter *f,
                        struct flexpu_error *err)
{
    static const char *const ops[] = {"In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"};
    const char *kind = fields ? "matchFields" : "matchExpressions";
    if (list && !json_is_array(list) && !json_is_null(list)) {
        char field[300];
        snprintf(field, sizeof(field), "%s.%s", path, kind);
        return bad(err, field, "", "must be an array of requirements");
    }
    size_t i;
    json_t *r;
    json_array_foreach(list, i, r)
    {
        char field[300];
        const char *key, *op;
        snprintf(field, sizeof(field), "%s.%s[%zu].key", path, kind, i);
        int rc = opt_str(r, "key", field, &key, err);
        if (rc)
            return rc;
        snprintf(field, sizeof(field), "%s.%s[%zu].operator", path, kind, i);
        if ((rc = opt_str(r, "operator", field, &op, err)))
            return rc;
        int o = -1;
        for (int k = 0; k < 6 && op && o < 0; k++)
            if (strcmp(op, ops[k]) == 0)
                o = k;
        if (o < 0)
            return bad(err, field, op, "must be In, NotIn, Exists, DoesNotExist, Gt or Lt");
        json_t *vals = json_object_get(r, "values");
        snprintf(field, sizeof(field), "%s.%s[%zu].values", path, kind, i);
        if (vals && !json_is_array(vals) && !json_is_null(vals))
            return bad(err, field, "", "must be an array of strings");
        size_t nv = json_array_size(vals);
        if (nv > 1024)
            return bad(err, field, "", "more than 1024 values");
        const char **v = nv ? calloc(nv, sizeof(*v)) : NULL;
        if (nv && !v)
            return flexpu_error_set(err, FLEXPU_ENOMEM, "out of memory reading node affinity");
        for (size_t k = 0; k < nv; k++) {
            v[k] = json_string_value(json_array_get(vals, k));
            if (!v[k]) {
                free(v);
                return bad(err, field, "", "must be an array of strings");
            }
        }
        rc = flexpu_filter_add_match(f, fields, key, (enum flexpu_match_op)o, v, (int)nv, err);
        free(v);
        if (rc) {
            snprintf(field, sizeof(field), "%s.%s[%zu]", path, kind, i);
            flexpu_error_prefix(err, "%s", field);
            return rc;
        }
    }
    return 0;
}

/* One node selector term (required, weight 0; or a preference). */
static int term(json_t *t, int weight, const char *path, struct flexpu_filter *f,
                struct flexpu_error *err)
{
    if (t && !json_is_object(t) && !json_is_null(t))
        return bad(err, path, "", "must be a node selector term");
    int rc = flexpu_filter_add_term(f, weight, err);
    if (rc) {
        flexpu_error_prefix(err, "%s", path);
        return rc;
    }
    if ((rc = requirements(json_object_get(t, "matchExpressions"), false, path, f, err)))
        return rc;
    return requirements(json_object_get(t, "matchFields"), true, path, f, err);
}

/* Absent, null or an empty array. */
static bool empty_list(json_t *v)
{
    return !v || json_is_null(v) || (json_is_array(v) && json_array_size(v) == 0);
}

static int node_affinity(json_t *na, struct flexpu_filter **f, struct flexpu_error *err)
{
    static const char *const req_path =
        "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution";
    static const char *const pref_path =
        "spec.affinity.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution";
    json_t *req = json_object_get(na, "requiredDuringSchedulingIgnoredDuringExecution");
    json_t *pref = json_object_get(na, "preferredDuringSchedulingIgnoredDuringExecution");
    if (json_is_null(req))
        req = NULL;
    if (json_is_null(pref))
        pref = NULL;
    if (!req && !pref)
        return 0;
    if (!*f && !(*f = flexpu_filter_new()))
        return flexpu_error_set(err, FLEXPU_ENOMEM, "out of memory reading node affinity");
    char path[300];
    if (req) {
        json_t *terms = json_object_get(req, "nodeSelectorTerms");
        if (!json_is_array(terms) || json_array_size(terms) == 0) {
            snprintf(path, sizeof(path), "%s.nodeSelectorTerms", req_path);
            return bad(err, path, "", "must list at least one node selector term");
        }
        size_t i;
        json_t *t;
        json_array_foreach(terms, i, t)
        {
            snprintf(path, sizeof(path), "%s.nodeSelectorTerms[%zu]", req_path, i);
            int rc = term(t, 0, path, *f, err);
            if (rc)
                return rc;
        }
    }
    if (pref && !json_is_array(pref))
        return bad(err, pref_path, "", "must be an array of weighted terms");
    size_t i;
    json_t *p;
    json_array_foreach(pref, i, p)
    {
        json_t *w = json_object_get(p, "weight");
        json_t *t = json_object_get(p, "preference");
        snprintf(path, sizeof(path), "%s[%zu].weight", pref_path, i);
        if (!json_is_integer(w) || json_integer_value(w) < 1 || json_integer_value(w) > 100) {
            char val[32] = "";
            if (json_is_integer(w))
                snprintf(val, sizeof(val), "%lld", (long long)json_integer_value(w));
            return bad(err, path, val, "must be an integer between 1 and 100");
        }
        /* An empty preference matches every node with no weight: a no-op,
         * as kube-scheduler takes it. Anything else goes through term(),
         * which names what is malformed. */
        if ((!t || json_is_null(t) || json_is_object(t)) &&
            empty_list(json_object_get(t, "matchExpressions")) &&
            empty_list(json_object_get(t, "matchFields")))
            continue;
        snprintf(path, sizeof(path), "%s[%zu].preference", pref_path, i);
        int rc = term(t, (int)json_integer_value(w), path, *f, err);
        if (rc)
            return rc;
    }
    return 0;
}

int fx_pod_filter_parse(json_t *pod, struct flexpu_filter **out, struct flexpu_error *err)
{
    *out = NULL;
    json_t *spec = json_object_get(pod, "spec");
    int rc = 0;
    json_t *tol = json_object_get(spec, "tolerations");
    json_t *sel = json_object_get(spec, "nodeSelector");
    json_t *na = kube_get(spec, "affinity.nodeAffinity");
    struct flexpu_filter *f = NULL;
    if (tol && !json_is_array(tol) && !json_is_null(tol))
        rc = bad(err, "spec.tolerations", "", "must be an array of tolerations");
    else if (sel && !json_is_object(sel) && !json_is_null(sel))
        rc = bad(err, "spec.nodeSelector", "", "must be an object of strings");
    else if (na && !json_is_object(na) && !json_is_null(na))
        rc = bad(err, "spec.affinity.nodeAffinity", "", "must be an object");
    if (!rc)
        rc = tolerations(tol, &f, err);
    if (!rc)
        rc = selector(sel, &f, err);
    if (!rc)
        rc = node_affinity(na, &f, err);
    if (rc) {
        flexpu_filter_free(f);
        return rc;
    }
    *out = f;
    return 0;
}
