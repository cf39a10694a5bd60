/* SPDX-License-Identifier: Apache-2.0 */
/* A pod's inter-pod rules (pod affinity, pod anti-affinity, topology
 * spread constraints) read from its spec, and label selectors matched
 * against other pods' labels, with the API's semantics (metav1.LabelSelector,
 * kube-scheduler's InterPodAffinity and PodTopologySpread). */
#include <stdio.h>
#include <string.h>

#include "kube/kube.h"
#include "kube/pod_rules.h"
#include "util/alloc.h"
#include "util/fnv.h"

#define AFF_PATH  "spec.affinity.podAffinity.requiredDuringSchedulingIgnoredDuringExecution"
#define ANTI_PATH "spec.affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution"
#define TSC_PATH  "spec.topologySpreadConstraints"
#define PAFF_PATH "spec.affinity.podAffinity.preferredDuringSchedulingIgnoredDuringExecution"
#define PANTI_PATH \
    "spec.affinity.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution"

static int bad(struct flexpu_error *err, const char *field, const char *value, const char *why)
{
    return flexpu_error_field(err, FLEXPU_EINVAL, field, value ? value : "",
                              value ? strlen(value) : 0, why);
}

static int nomem(struct flexpu_error *err)
{
    return flexpu_error_set(err, FLEXPU_ENOMEM, "out of memory reading inter-pod rules");
}

static void sel_free(struct fx_label_sel *s)
{
    for (int i = 0; i < s->nreq; i++) {
        fx_free(s->req[i].key);
        for (int j = 0; j < s->req[i].nvals; j++)
            fx_free(s->req[i].vals[j]);
        fx_free(s->req[i].vals);
    }
    fx_free(s->req);
}

static void term_free(struct fx_pod_term *t)
{
    fx_free(t->topo_key);
    sel_free(&t->sel);
    for (int j = 0; j < t->nns; j++)
        fx_free(t->ns[j]);
    fx_free(t->ns);
}

void fx_pod_rules_free(struct fx_pod_rules *r)
{
    if (!r)
        return;
    for (int i = 0; i < r->naff; i++)
        term_free(&r->aff[i]);
    for (int i = 0; i < r->nanti; i++)
        term_free(&r->anti[i]);
    for (int i = 0; i < r->npaff; i++)
        term_free(&r->paff[i].t);
    for (int i = 0; i < r->npanti; i++)
        term_free(&r->panti[i].t);
    fx_free(r->aff);
    fx_free(r->anti);
    fx_free(r->paff);
    fx_free(r->panti);
    for (int i = 0; i < r->nspread; i++) {
        fx_free(r->spread[i].topo_key);
        sel_free(&r->spread[i].sel);
    }
    fx_free(r->spread);
    fx_free(r);
}

/* Appends a requirement (values copied); 0 or FLEXPU_ENOMEM. */
static int req_add(struct fx_label_sel *s, const char *key, enum fx_sel_op op,
                   const char *const *vals, int nvals)
{
    struct fx_sel_req *n = fx_realloc(s->req, (size_t)(s->nreq + 1) * sizeof(*n));
    if (!n)
        return FLEXPU_ENOMEM;
    s->req = n;
    struct fx_sel_req *r = &s->req[s->nreq];
    memset(r, 0, sizeof(*r));
    r->op = op;
    if (!(r->key = fx_strdup(key)))
        return FLEXPU_ENOMEM;
    s->nreq++; /* freed with the selector from here on */
    if (nvals && !(r->vals = fx_calloc((size_t)nvals, sizeof(*r->vals))))
        return FLEXPU_ENOMEM;
    for (int i = 0; i < nvals; i++, r->nvals++)
        if (!(r->vals[i] = fx_strdup(vals[i])))
            return FLEXPU_ENOMEM;
    return 0;
}

static int label_key_ok(const char *path, const char *key, struct flexpu_error *err)
{
    if (!key || !*key)
        return bad(err, path, key, "must not be empty");
    if (strlen(key) > 317)
        return bad(err, path, key, "longer than a label key may be (317 bytes)");
    return 0;
}

/* A metav1.LabelSelector at `path` (v: NULL or null selects nothing). */
static int sel_parse(json_t *v, const char *path, struct fx_label_sel *s, struct flexpu_error *err)
{
    char f[400];
    if (!v || json_is_null(v)) {
        s->nothing = true;
        return 0;
    }
    if (!json_is_object(v))
        return bad(err, path, "", "must be a label selector (matchLabels, matchExpressions)");
    json_t *ml = json_object_get(v, "matchLabels");
    json_t *me = json_object_get(v, "matchExpressions");
    if (ml && !json_is_null(ml) && !json_is_object(ml)) {
        snprintf(f, sizeof(f), "%s.matchLabels", path);
        return bad(err, f, "", "must be an object of strings");
    }
    if (me && !json_is_null(me) && !json_is_array(me)) {
        snprintf(f, sizeof(f), "%s.matchExpressions", path);
        return bad(err, f, "", "must be an array of requirements");
    }
    const char *k;
    json_t *x;
    json_object_foreach(json_is_object(ml) ? ml : NULL, k, x)
    {
        snprintf(f, sizeof(f), "%s.matchLabels[%s]", path, k);
        int rc = label_key_ok(f, k, err);
        if (rc)
            return rc;
        if (!json_is_string(x))
            return bad(err, f, "", "must be a string");
        const char *val = json_string_value(x);
        if (req_add(s, k, FX_SEL_IN, &val, 1))
            return nomem(err);
    }
    size_t i;
    json_array_foreach(json_is_array(me) ? me : NULL, i, x)
    {
        const char *key = json_string_value(json_object_get(x, "key"));
        const char *op = json_string_value(json_object_get(x, "operator"));
        json_t *vals = json_object_get(x, "values");
        snprintf(f, sizeof(f), "%s.matchExpressions[%zu].key", path, i);
        int rc = label_key_ok(f, key, err);
        if (rc)
            return rc;
        snprintf(f, sizeof(f), "%s.matchExpressions[%zu].operator", path, i);
        enum fx_sel_op o;
        if (op && strcmp(op, "In") == 0)
            o = FX_SEL_IN;
        else if (op && strcmp(op, "NotIn") == 0)
            o = FX_SEL_NOT_IN;
        else if (op && strcmp(op, "Exists") == 0)
            o = FX_SEL_EXISTS;
        else if (op && strcmp(op, "DoesNotExist") == 0)
            o = FX_SEL_DOES_NOT_EXIST;
        else
            return bad(err, f, op, "must be In, NotIn, Exists or DoesNotExist");
        snprintf(f, sizeof(f), "%s.matchExpressions[%zu].values", path, i);
        if (vals && !json_is_null(vals) && !json_is_array(vals))
            return bad(err, f, "", "must be an array of strings");
        size_t n = json_is_array(vals) ? json_array_size(vals) : 0;
        if ((o == FX_SEL_IN || o == FX_SEL_NOT_IN) && n == 0)
            return bad(err, f, op, "In and NotIn need at least one value");
        if ((o == FX_SEL_EXISTS || o == FX_SEL_DOES_NOT_EXIST) && n > 0)
            return bad(err, f, op, "Exists and DoesNotExist take no values");
        if (n > 4096)
            return bad(err, f, "", "too many values");
        const char *vs[4096];
        for (size_t j = 0; j < n; j++)
            if (!(vs[j] = json_string_value(json_array_get(vals, j))))
                return bad(err, f, "", "every value must be a string");
        if (req_add(s, key, o, vs, (int)n))
            return nomem(err);
    }
    return 0;
}

/* matchLabelKeys / mismatchLabelKeys at `path`: each key the pod has a
 * label of adds key In (match) or NotIn (mismatch) its value to s; a key
 * the pod lacks is ignored, as kube-scheduler does. */
static int label_keys(json_t *keys, bool match, json_t *own, const char *path,
                      struct fx_label_sel *s, struct flexpu_error *err)
{
    if (!keys || json_is_null(keys))
        return 0;
    if (!json_is_array(keys))
        return bad(err, path, "", "must be an array of label keys");
    size_t i;
    json_t *k;
    json_array_foreach(keys, i, k)
    {
        char f[400];
        snprintf(f, sizeof(f), "%s[%zu]", path, i);
        const char *key = json_string_value(k);
        int rc = label_key_ok(f, key, err);
        if (rc)
            return rc;
        const char *val = json_string_value(json_object_get(own, key));
        if (!val)
            continue;
        if (s->nothing)
            return 0; /* a selector that selects nothing stays so (the API refuses it) */
        if (req_add(s, key, match ? FX_SEL_IN : FX_SEL_NOT_IN, &val, 1))
            return nomem(err);
    }
    return 0;
}

static int topo_key(json_t *v, const char *path, char **out, struct flexpu_error *err)
{
    const char *k = json_string_value(v);
    int rc = label_key_ok(path, k, err);
    if (rc)
        return rc;
    if (!(*out = fx_strdup(k)))
        return nomem(err);
    return 0;
}

static int term_parse(json_t *t, const char *path, json_t *own, struct fx_pod_term *out,
                      struct flexpu_error *err)
{
    char f[400];
    if (!json_is_object(t))
        return bad(err, path, "", "must be a pod affinity term");
    snprintf(f, sizeof(f), "%s.topologyKey", path);
    int rc = topo_key(json_object_get(t, "topologyKey"), f, &out->topo_key, err);
    snprintf(f, sizeof(f), "%s.labelSelector", path);
    if (!rc)
        rc = sel_parse(json_object_get(t, "labelSelector"), f, &out->sel, err);
    snprintf(f, sizeof(f), "%s.matchLabelKeys", path);
    if (!rc)
        rc = label_keys(json_object_get(t, "matchLabelKeys"), true, own, f, &out->sel, err);
    snprintf(f, sizeof(f), "%s.mismatchLabelKeys", path);
    if (!rc)
        rc = label_keys(json_object_get(t, "mismatchLabelKeys"), false, own, f, &out->sel, err);
    if (rc)
        return rc;
    json_t *nss = json_object_get(t, "namespaces");
    json_t *nsel = json_object_get(t, "namespaceSelector");
    snprintf(f, sizeof(f), "%s.namespaces", path);
    if (nss && !json_is_null(nss) && !json_is_array(nss))
        return bad(err, f, "", "must be an array of namespace names");
    size_t n = json_is_array(nss) ? json_array_size(nss) : 0;
    if (n && !(out->ns = fx_calloc(n, sizeof(*out->ns))))
        return nomem(err);
    for (size_t i = 0; i < n; i++) {
        const char *s = json_string_value(json_array_get(nss, i));
        if (!s || !*s)
            return bad(err, f, s, "every namespace must be a non-empty string");
        if (!(out->ns[out->nns++] = fx_strdup(s)))
            return nomem(err);
    }
    snprintf(f, sizeof(f), "%s.namespaceSelector", path);
    if (nsel && !json_is_null(nsel)) {
        json_t *ml = json_object_get(nsel, "matchLabels");
        json_t *me = json_object_get(nsel, "matchExpressions");
        if (!json_is_object(nsel) || (json_is_object(ml) && json_object_size(ml) > 0) ||
            (json_is_array(me) && json_array_size(me) > 0) || (ml && !json_is_object(ml) &&
            !json_is_null(ml)) || (me && !json_is_array(me) && !json_is_null(me)))
            return bad(err, f, "",
                       "only an empty namespaceSelector ({}: every namespace) is supported: "
                       "flexpu-scheduler does not read Namespace labels; list the namespaces "
                       "in namespaces instead");
        out->all_ns = true;
    }
    return 0;
}

/* Parses one element t of a term list at path into slot. */
typedef int (*elem_parse_fn)(json_t *t, const char *path, json_t *own, void *slot,
                             struct flexpu_error *err);

/* The list at path, each element parse()d into *out (size bytes apiece); a list that is not
   an array gets the error why. *n counts the elements the rules must free, so it grows
   before an element is parsed: a half-parsed one is freed with the rest. */
static int list_parse(json_t *list, const char *path, const char *why, size_t size,
                      elem_parse_fn parse, json_t *own, void **out, int *n,
                      struct flexpu_error *err)
{
    if (!list || json_is_null(list))
        return 0;
    if (!json_is_array(list))
        return bad(err, path, "", why);
    size_t cnt = json_array_size(list);
    if (cnt == 0)
        return 0;
    if (!(*out = fx_calloc(cnt, size)))
        return nomem(err);
    size_t i;
    json_t *t;
    json_array_foreach(list, i, t)
    {
        char f[300];
        snprintf(f, sizeof(f), "%s[%zu]", path, i);
        (*n)++;
        int rc = parse(t, f, own, (char *)*out + i * size, err);
        if (rc)
            return rc;
    }
    return 0;
}

static int term_elem_parse(json_t *t, const char *path, json_t *own, void *slot,
                           struct flexpu_error *err)
{
    return term_parse(t, path, own, slot, err);
}

/* A weighted term ({weight, podAffinityTerm}) at path. */
static int wterm_elem_parse(json_t *t, const char *path, json_t *own, void *slot,
                            struct flexpu_error *err)
{
    struct fx_pod_wterm *out = slot;
    char g[330];
    if (!json_is_object(t))
        return bad(err, path, "", "must be a weighted pod affinity term");
    json_t *w = json_object_get(t, "weight");
    snprintf(g, sizeof(g), "%s.weight", path);
    if (!json_is_integer(w) || json_integer_value(w) < 1 || json_integer_value(w) > 100) {
        char val[32] = "";
        if (json_is_integer(w))
            snprintf(val, sizeof(val), "%lld", (long long)json_integer_value(w));
        return bad(err, g, val, "must be an integer from 1 to 100");
    }
    out->weight = (int)json_integer_value(w);
    snprintf(g, sizeof(g), "%s.podAffinityTerm", path);
    return term_parse(json_object_get(t, "podAffinityTerm"), g, own, &out->t, err);
}

static int terms_parse(json_t *list, const char *path, json_t *own, struct fx_pod_term **out,
                       int *n, struct flexpu_error *err)
{
    void *arr = NULL;
    int rc = list_parse(list, path, "must be an array of pod affinity terms", sizeof(**out),
                        term_elem_parse, own, &arr, n, err);
    *out = arr;
    return rc;
}

static int wterms_parse(json_t *list, const char *path, json_t *own, struct fx_pod_wterm **out,
                        int *n, struct flexpu_error *err)
{
    void *arr = NULL;
    int rc = list_parse(list, path, "must be an array of weighted pod affinity terms",
                        sizeof(**out), wterm_elem_parse, own, &arr, n, err);
    *out = arr;
    return rc;
}

static int spread_parse(json_t *c, const char *path, json_t *own, struct fx_spread *out,
                        bool *hard, struct flexpu_error *err)
{
    char f[400]; /* path (under 300) and the longest field name */
    if (!json_is_object(c))
        return bad(err, path, "", "must be a topology spread constraint");
    json_t *ms = json_object_get(c, "maxSkew");
    snprintf(f, sizeof(f), "%s.maxSkew", path);
    if (!json_is_integer(ms) || json_integer_value(ms) < 1 || json_integer_value(ms) > INT32_MAX) {
        char val[32] = "";
        if (json_is_integer(ms))
            snprintf(val, sizeof(val), "%lld", (long long)json_integer_value(ms));
        return bad(err, f, val, "must be an integer of at least 1");
    }
    out->max_skew = (int)json_integer_value(ms);
    const char *wu = json_string_value(json_object_get(c, "whenUnsatisfiable"));
    snprintf(f, sizeof(f), "%s.whenUnsatisfiable", path);
    if (!wu || (strcmp(wu, "DoNotSchedule") != 0 && strcmp(wu, "ScheduleAnyway") != 0))
        return bad(err, f, wu, "must be DoNotSchedule or ScheduleAnyway");
    *hard = strcmp(wu, "DoNotSchedule") == 0;
    json_t *md = json_object_get(c, "minDomains");
    snprintf(f, sizeof(f), "%s.minDomains", path);
    out->min_domains = 1;
    if (md && !json_is_null(md)) {
        if (!json_is_integer(md) || json_integer_value(md) < 1 ||
            json_integer_value(md) > INT32_MAX)
            return bad(err, f, "", "must be an integer of at least 1");
        if (!*hard)
            return bad(err, f, "", "is only allowed with whenUnsatisfiable DoNotSchedule");
        out->min_domains = (int)json_integer_value(md);
    }
    const char *nap = json_string_value(json_object_get(c, "nodeAffinityPolicy"));
    const char *ntp = json_string_value(json_object_get(c, "nodeTaintsPolicy"));
    snprintf(f, sizeof(f), "%s.nodeAffinityPolicy", path);
    if (nap && strcmp(nap, "Honor") != 0 && strcmp(nap, "Ignore") != 0)
        return bad(err, f, nap, "must be Honor or Ignore");
    out->honor_affinity = !nap || strcmp(nap, "Honor") == 0;
    snprintf(f, sizeof(f), "%s.nodeTaintsPolicy", path);
    if (ntp && strcmp(ntp, "Honor") != 0 && strcmp(ntp, "Ignore") != 0)
        return bad(err, f, ntp, "must be Honor or Ignore");
    out->honor_taints = ntp && strcmp(ntp, "Honor") == 0;
    snprintf(f, sizeof(f), "%s.topologyKey", path);
    int rc = topo_key(json_object_get(c, "topologyKey"), f, &out->topo_key, err);
    snprintf(f, sizeof(f), "%s.labelSelector", path);
    if (!rc)
        rc = sel_parse(json_object_get(c, "labelSelector"), f, &out->sel, err);
    snprintf(f, sizeof(f), "%s.matchLabelKeys", path);
    if (!rc)
        rc = label_keys(json_object_get(c, "matchLabelKeys"), true, own, f, &out->sel, err);
    return rc;
}

static int spreads_parse(json_t *list, json_t *own, struct fx_pod_rules *r,
                         struct flexpu_error *err)
{
    if (!list || json_is_null(list))
        return 0;
    if (!json_is_array(list))
        return bad(err, TSC_PATH, "", "must be an array of topology spread constraints");
    size_t cnt = json_array_size(list);
    if (cnt && !(r->spread = fx_calloc(cnt, sizeof(*r->spread))))
        return nomem(err);
    size_t i;
    json_t *c;
    json_array_foreach(list, i, c)
    {
        char f[300];
        snprintf(f, sizeof(f), "%s[%zu]", TSC_PATH, i);
        bool hard = false;
        struct fx_spread *s = &r->spread[r->nspread++];
        int rc = spread_parse(c, f, own, s, &hard, err);
        if (rc)
            return rc;
        s->soft = !hard;
        r->nhard += hard;
    }
    return 0;
}

static uint64_t json_hash(uint64_t h, json_t *v)
{
    if (!v)
        return h;
    char *s = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
    h = fx_fnv1a_field(h, s);
    free(s);
    return h;
}

int fx_pod_rules_parse(json_t *pod, struct fx_pod_rules **out, struct flexpu_error *err)
{
    *out = NULL;
    json_t *spec = json_object_get(pod, "spec");
    json_t *own = kube_get(pod, "metadata.labels");
    json_t *pa = kube_get(spec, "affinity.podAffinity");
    json_t *paa = kube_get(spec, "affinity.podAntiAffinity");
    json_t *tsc = json_object_get(spec, "topologySpreadConstraints");
    if ((!pa || json_is_null(pa)) && (!paa || json_is_null(paa)) && (!tsc || json_is_null(tsc)))
        return 0;
    if (pa && !json_is_null(pa) && !json_is_object(pa))
        return bad(err, "spec.affinity.podAffinity", "", "must be an object");
    if (paa && !json_is_null(paa) && !json_is_object(paa))
        return bad(err, "spec.affinity.podAntiAffinity", "", "must be an object");
    struct fx_pod_rules *r = fx_calloc(1, sizeof(*r));
    if (!r)
        return nomem(err);
    const char *req = "requiredDuringSchedulingIgnoredDuringExecution";
    const char *pref = "preferredDuringSchedulingIgnoredDuringExecution";
    int rc = terms_parse(json_object_get(pa, req), AFF_PATH, own, &r->aff, &r->naff, err);
    if (!rc)
        rc = terms_parse(json_object_get(paa, req), ANTI_PATH, own, &r->anti, &r->nanti, err);
    if (!rc)
        rc = wterms_parse(json_object_get(pa, pref), PAFF_PATH, own, &r->paff, &r->npaff, err);
    if (!rc)
        rc = wterms_parse(json_object_get(paa, pref), PANTI_PATH, own, &r->panti, &r->npanti,
                          err);
    if (!rc)
        rc = spreads_parse(tsc, own, r, err);
    r->nblocking = r->naff + r->nanti + r->nhard;
    if (rc || (r->nblocking == 0 && r->npaff == 0 && r->npanti == 0 && r->nspread == 0)) {
        fx_pod_rules_free(r);
        return rc;
    }
    uint64_t h = FX_FNV1A_OFFSET;
    h = json_hash(h, pa);
    h = json_hash(h, paa);
    h = json_hash(h, tsc);
    r->hash = json_hash(h, own); /* matchLabelKeys read the pod's own labels */
    *out = r;
    return 0;
}

int fx_labels_pack(json_t *labels, char **out)
{
    *out = NULL;
    size_t len = 1;
    const char *k;
    json_t *v;
    json_object_foreach(json_is_object(labels) ? labels : NULL, k, v)
        if (json_is_string(v) && *k) /* an empty key would end the set */
            len += strlen(k) + 1 + json_string_length(v) + 1;
    if (len == 1)
        return 0;
    char *buf = fx_malloc(len), *w = buf;
    if (!buf)
        return FLEXPU_ENOMEM;
    json_object_foreach(labels, k, v)
    {
        if (!json_is_string(v) || !*k)
            continue;
        size_t kl = strlen(k) + 1, vl = strlen(json_string_value(v)) + 1;
        memcpy(w, k, kl);
        memcpy(w + kl, json_string_value(v), vl);
        w += kl + vl;
    }
    *w = '\0';
    *out = buf;
    return 0;
}

const char *fx_labels_get(const char *packed, const char *key)
{
    for (const char *k = packed; k && *k;) {
        const char *v = k + strlen(k) + 1;
        if (strcmp(k, key) == 0)
            return v;
        k = v + strlen(v) + 1;
    }
    return NULL;
}

bool fx_labels_equal(const char *a, const char *b)
{
    if (!a || !b)
        return a == b;
    while (*a && *b) { /* at a key (never empty): the key, then its value */
        for (int part = 0; part < 2; part++) {
            size_t n = strlen(a);
            if (n != strlen(b) || memcmp(a, b, n) != 0)
                return false;
            a += n + 1;
            b += n + 1;
        }
    }
    return *a == *b;
}

static bool req_matches(const struct fx_sel_req *r, const char *labels)
{
    const char *have = fx_labels_get(labels, r->key);
    bool in = false;
    for (int i = 0; have && i < r->nvals && !in; i++)
        in = strcmp(have, r->vals[i]) == 0;
    switch (r->op) {
    case FX_SEL_IN:
        return in;
    case FX_SEL_NOT_IN:
        return !in;
    case FX_SEL_EXISTS:
        return have != NULL;
    case FX_SEL_DOES_NOT_EXIST:
        return have == NULL;
    }
    return false;
}

bool fx_label_sel_matches(const struct fx_label_sel *s, const char *labels)
{
    if (s->nothing)
        return false;
    for (int i = 0; i < s->nreq; i++)
        if (!req_matches(&s->req[i], labels))
            return false;
    return true;
}

bool fx_pod_term_matches(const struct fx_pod_term *t, const char *own_ns, const char *ns,
                         const char *labels)
{
    bool ns_ok = t->all_ns;
    for (int i = 0; !ns_ok && i < t->nns; i++)
        ns_ok = strcmp(t->ns[i], ns ? ns : "") == 0;
    if (!ns_ok && t->nns == 0 && !t->all_ns)
        ns_ok = strcmp(own_ns ? own_ns : "", ns ? ns : "") == 0;
    return ns_ok && fx_label_sel_matches(&t->sel, labels);
}
