/* SPDX-License-Identifier: Apache-2.0 */
/* The Queue object to the engine's queue, and the engine's view back to the
 * Queue's status. */
#include "kube/queue_spec.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "flexpu/quantity.h"
#include "kube/kube.h"

#define MIB ((int64_t)1 << 20)

static int bad(struct flexpu_error *err, const char *field, const char *value, const char *why)
{
    return flexpu_error_field(err, FLEXPU_EINVAL, field, value ? value : "",
                              value ? strlen(value) : 0, why);
}

/* A quantity as the int-or-string the CRD allows: "4", 4. */
static const char *quantity_text(json_t *v, char *buf, size_t len)
{
    if (json_is_string(v))
        return json_string_value(v);
    if (json_is_integer(v)) {
        snprintf(buf, len, "%" PRId64, (int64_t)json_integer_value(v));
        return buf;
    }
    return NULL;
}

static int64_t ceil_div(int64_t a, int64_t b)
{
    return a / b + (a % b != 0);
}

/* One amount, from the CRD's unit to the engine's. */
static int amount(enum flexpu_res r, json_t *v, const char *field, int64_t *out,
                  struct flexpu_error *err)
{
    char num[32];
    const char *s = quantity_text(v, num, sizeof(num));
    if (!s)
        return bad(err, field, json_is_real(v) ? "(a fraction)" : "(not a string)",
                   "must be a Kubernetes quantity, as a string or an integer");
    int64_t x;
    int rc;
    if (r == FLEXPU_RES_GPU_MEM || r == FLEXPU_RES_MEM)
        rc = flexpu_quantity_parse(s, field, &x, err); /* bytes, rounded up */
    else
        rc = flexpu_quantity_parse_milli(s, field, &x, err);
    if (rc)
        return rc;
    if (x < 0)
        return bad(err, field, s, "must not be negative");
    switch (r) {
    case FLEXPU_RES_GPU:
        if (x % 1000)
            return bad(err, field, s, "must be a whole number of GPUs (a slice counts as one)");
        *out = x / 1000;
        break;
    case FLEXPU_RES_GPU_MILLI: /* percent in thousandths; 100 percent = 1000 milli-GPU */
        *out = ceil_div(x, 100);
        break;
    case FLEXPU_RES_GPU_MEM:
    case FLEXPU_RES_MEM:
        *out = ceil_div(x, MIB);
        break;
    default: /* CPU: milli-cores */
        *out = x;
        break;
    }
    return 0;
}

/* spec.guaranteed or spec.limit: a resource list over the queue's five
 * resources. `set` marks the resources it names. */
static int resource_list(json_t *spec, const char *key, int64_t out[FLEXPU_RES_COUNT_],
                         bool set[FLEXPU_RES_COUNT_], struct flexpu_error *err)
{
    json_t *list = json_object_get(spec, key);
    char field[160];
    if (!list)
        return 0;
    if (!json_is_object(list)) {
        snprintf(field, sizeof(field), "spec.%s", key);
        return bad(err, field, "(not an object)",
                   "must map resource names to quantities, e.g. {\"flexpu.io/gpu\": \"8\"}");
    }
    const char *name;
    json_t *v;
    json_object_foreach(list, name, v)
    {
        snprintf(field, sizeof(field), "spec.%s[%s]", key, name);
        int r = flexpu_res_from_name(name);
        if (r < 0)
            return bad(err, field, quantity_text(v, (char[32]){0}, 32),
                       "unknown resource: a queue has flexpu.io/gpu, flexpu.io/gpu-cores, "
                       "flexpu.io/gpu-memory, cpu and memory");
        int rc = amount((enum flexpu_res)r, v, field, &out[r], err);
        if (rc)
            return rc;
        set[r] = true;
    }
    return 0;
}

static int weight(json_t *spec, double *out, struct flexpu_error *err)
{
    json_t *w = json_object_get(spec, "overQuotaWeight");
    *out = 1.0;
    if (!w)
        return 0;
    char shown[48];
    if (!json_is_number(w))
        return bad(err, "spec.overQuotaWeight", json_string_value(w), "must be a number");
    double d = json_number_value(w);
    snprintf(shown, sizeof(shown), "%g", d);
    if (!isfinite(d) || d < 0)
        return bad(err, "spec.overQuotaWeight", shown, "must be a number, 0 or more");
    *out = d;
    return 0;
}

int fx_queue_parse(json_t *queue, struct flexpu_queue_info *out, struct flexpu_error *err)
{
    memset(out, 0, sizeof(*out));
    out->weight = 1.0;
    for (int r = 0; r < FLEXPU_RES_COUNT_; r++)
        out->limit[r] = FLEXPU_QUEUE_UNLIMITED;
    out->name = kube_str(queue, "metadata.name");
    if (!out->name || !*out->name)
        return bad(err, "metadata.name", out->name, "a Queue must have a name");
    json_t *spec = json_object_get(queue, "spec");
    if (!spec || json_is_null(spec))
        return 0;
    if (!json_is_object(spec))
        return bad(err, "spec", "(not an object)", "must be an object");
    json_t *p = json_object_get(spec, "parent");
    if (p && !json_is_null(p) && !json_is_string(p))
        return bad(err, "spec.parent", "(not a string)", "must be a queue's name");
    out->parent = json_string_value(p);
    if (out->parent && strcmp(out->parent, out->name) == 0)
        return bad(err, "spec.parent", out->parent, "a queue cannot be its own parent");
    bool gset[FLEXPU_RES_COUNT_] = {0}, lset[FLEXPU_RES_COUNT_] = {0};
    int rc = resource_list(spec, "guaranteed", out->guaranteed, gset, err);
    if (!rc)
        rc = resource_list(spec, "limit", out->limit, lset, err);
    if (!rc)
        rc = weight(spec, &out->weight, err);
    if (rc)
        return rc;
    for (int r = 0; r < FLEXPU_RES_COUNT_; r++) {
        if (!lset[r] || out->limit[r] >= out->guaranteed[r])
            continue;
        char field[96], why[160], num[32], gnum[32];
        const char *name = flexpu_res_name((enum flexpu_res)r);
        json_t *lv = json_object_get(json_object_get(spec, "limit"), name);
        json_t *gv = json_object_get(json_object_get(spec, "guaranteed"), name);
        snprintf(field, sizeof(field), "spec.limit[%s]", name);
        snprintf(why, sizeof(why), "must not be below spec.guaranteed[%s] (%s)", name,
                 quantity_text(gv, gnum, sizeof(gnum)));
        return bad(err, field, quantity_text(lv, num, sizeof(num)), why);
    }
    return 0;
}

/* ---- status ---- */

void fx_queue_quantity(enum flexpu_res r, int64_t v, char *buf, size_t len)
{
    if (v < 0)
        v = 0;
    switch (r) {
    case FLEXPU_RES_GPU_MILLI: /* gpu-cores percent: 10 milli-GPU each */
        if (v % 10 == 0)
            snprintf(buf, len, "%" PRId64, v / 10);
        else
            snprintf(buf, len, "%" PRId64 "m", v * 100);
        break;
    case FLEXPU_RES_GPU_MEM:
    case FLEXPU_RES_MEM:
        snprintf(buf, len, v ? "%" PRId64 "Mi" : "%" PRId64, v);
        break;
    case FLEXPU_RES_CPU:
        if (v % 1000 == 0)
            snprintf(buf, len, "%" PRId64, v / 1000);
        else
            snprintf(buf, len, "%" PRId64 "m", v);
        break;
    default:
        snprintf(buf, len, "%" PRId64, v);
        break;
    }
}

static json_t *res_list(const int64_t v[FLEXPU_RES_COUNT_])
{
    json_t *o = json_object();
    for (int r = 0; o && r < FLEXPU_RES_COUNT_; r++) {
        char q[40];
        fx_queue_quantity((enum flexpu_res)r, v[r], q, sizeof(q));
        if (json_object_set_new(o, flexpu_res_name((enum flexpu_res)r), json_string(q))) {
            json_decref(o);
            return NULL;
        }
    }
    return o;
}

/* A condition; its lastTransitionTime stays what `queue` had while its
 * status does not change. */
static json_t *condition(json_t *queue, const char *type, bool ok, const char *reason,
                         const char *message, const char *now)
{
    const char *status = ok ? "True" : "False", *since = now;
    size_t i;
    json_t *c;
    json_array_foreach(kube_get(queue, "status.conditions"), i, c)
    {
        const char *t = json_string_value(json_object_get(c, "type"));
        const char *s = json_string_value(json_object_get(c, "status"));
        const char *at = json_string_value(json_object_get(c, "lastTransitionTime"));
        if (t && s && at && strcmp(t, type) == 0 && strcmp(s, status) == 0)
            since = at;
    }
    json_t *gen = kube_get(queue, "metadata.generation");
    json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:s}", "type", type, "status", status, "reason",
                          reason, "message", message, "lastTransitionTime", since);
    if (o && json_is_integer(gen))
        json_object_set(o, "observedGeneration", gen);
    return o;
}

/* {"status": status}, or NULL; status (may be NULL) is stolen. */
static json_t *wrap(json_t *status)
{
    json_t *patch = status ? json_object() : NULL;
    if (!patch || json_object_set_new(patch, "status", status)) {
        json_decref(patch);
        json_decref(status); /* not stolen when patch is NULL */
        return NULL;
    }
    return patch;
}

/* obj[key] = v, v stolen; false (obj freed) on failure. */
static bool put(json_t **obj, const char *key, json_t *v)
{
    if (*obj && v && json_object_set_new(*obj, key, v) == 0)
        return true;
    if (*obj && v)
        v = NULL; /* json_object_set_new stole it */
    json_decref(v);
    json_decref(*obj);
    *obj = NULL;
    return false;
}

/* list += v, v stolen; false (list freed) on failure. */
static bool push(json_t **list, json_t *v)
{
    if (*list && v && json_array_append_new(*list, v) == 0)
        return true;
    if (*list && v)
        v = NULL;
    json_decref(v);
    json_decref(*list);
    *list = NULL;
    return false;
}

json_t *fx_queue_status_patch(const struct flexpu_queue_status *st, const char *now, json_t *queue)
{
    char msg[512];
    const char *parent = st->parent ? st->parent : "";
    if (st->orphan)
        snprintf(msg, sizeof(msg),
                 "parent queue '%s' does not exist: the queue is served as a top-level queue",
                 parent);
    else if (*parent)
        snprintf(msg, sizeof(msg), "under queue '%s'", parent);
    else
        snprintf(msg, sizeof(msg), "a top-level queue");
    const char *reason = st->orphan ? "ParentMissing" : *parent ? "ParentExists" : "TopLevel";
    json_t *conds = json_array();
    push(&conds, condition(queue, "Accepted", true, "Applied",
                           "flexpu-scheduler applies this spec", now));
    push(&conds, condition(queue, "ParentFound", !st->orphan, reason, msg, now));
    json_t *status = json_object();
    put(&status, "guaranteed", res_list(st->guaranteed));
    put(&status, "allocated", res_list(st->allocated));
    put(&status, "pending", res_list(st->pending));
    put(&status, "fairShare", res_list(st->fair_share));
    put(&status, "conditions", conds);
    return wrap(status);
}

json_t *fx_queue_refused_patch(const char *why, const char *now, json_t *queue)
{
    json_t *conds = json_array();
    size_t i;
    json_t *c;
    /* A merge patch replaces a list whole: the other conditions go back in. */
    json_array_foreach(kube_get(queue, "status.conditions"), i, c)
    {
        const char *t = json_string_value(json_object_get(c, "type"));
        if (!t || strcmp(t, "Accepted") != 0)
            push(&conds, json_incref(c));
    }
    push(&conds, condition(queue, "Accepted", false, "InvalidSpec", why, now));
    json_t *status = json_object();
    put(&status, "conditions", conds);
    return wrap(status);
}
