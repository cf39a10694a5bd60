/* SPDX-License-Identifier: Apache-2.0 */
/* Node filters: a node's labels and taints (interned sets shared by the
 * nodes of a pool) and a pod's tolerations, node selector and node
 * affinity, evaluated with kube-scheduler's semantics (its TaintToleration
 * and NodeAffinity plugins; docs/SCHEDULING.md, "Node filters"). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sched/engine.h"
#include "util/alloc.h"
#include "util/fnv.h"

#define KEY_MAX    317 /* a qualified label key: 253-byte prefix, '/', 63-byte name */
#define VALUE_MAX  4096

/* ---- the pod's side --------------------------------------------------- */

/* One requirement. Strings are offsets in the filter's pool; a
 * requirement's values lie one after another, each NUL-terminated. */
struct fx_match {
    int term;       /* -1: nodeSelector */
    uint8_t op;     /* enum flexpu_match_op */
    uint8_t field;  /* on metadata.name */
    uint16_t nval;
    uint32_t key, val;
    uint32_t sorted; /* 0, or 1 + where its values' offsets start in vidx, sorted */
    int64_t num;    /* Gt/Lt */
};

/* In/NotIn lists this long are searched by halves: a decision's compiled
 * inter-pod rules list one value per topology domain (kubernetes.io/hostname:
 * per node), evaluated node by node. */
#define SORTED_MIN 16

struct fx_tol {
    uint32_t key, value;
    uint8_t op, effect;
    int64_t num;    /* Lt/Gt */
};

struct flexpu_filter {
    char *pool;
    uint32_t npool, cap_pool;
    struct fx_match *match;
    int nmatch, cap_match;
    uint32_t *vidx; /* pool offsets of long value lists, each sorted (SORTED_MIN) */
    int nvidx, cap_vidx;
    int *weight; /* per term: 0 required, 1-100 preferred; any for a scored term */
    uint8_t *kind; /* per term: 0 node affinity, else enum flexpu_score */
    int nterm, cap_term;
    int scored[3]; /* scored terms per enum flexpu_score */
    struct fx_tol *tol;
    int ntol, cap_tol;
    int required;  /* required terms declared */
    int preferred; /* preferred terms declared */
    int name_dep;
};

struct flexpu_filter *flexpu_filter_new(void)
{
    return fx_calloc(1, sizeof(struct flexpu_filter));
}

void flexpu_filter_free(struct flexpu_filter *f)
{
    if (!f)
        return;
    fx_free(f->pool);
    fx_free(f->match);
    fx_free(f->vidx);
    fx_free(f->weight);
    fx_free(f->kind);
    fx_free(f->tol);
    fx_free(f);
}

/* Grows an array to hold one more element. */
static int grow(void **arr, int n, int *cap, size_t elem)
{
    if (n < *cap)
        return 0;
    int nc = *cap ? *cap * 2 : 4;
    void *p = fx_realloc(*arr, (size_t)nc * elem);
    if (!p)
        return FLEXPU_ENOMEM;
    *arr = p;
    *cap = nc;
    return 0;
}

/* Appends a string to the pool; *off receives where it starts. */
static int pool_add(struct flexpu_filter *f, const char *s, uint32_t *off)
{
    size_t n = strlen(s) + 1;
    if (f->npool + n > f->cap_pool) {
        size_t cap = f->cap_pool ? f->cap_pool : 64;
        while (cap < f->npool + n)
            cap *= 2;
        if (cap > UINT32_MAX)
            return FLEXPU_ENOMEM;
        char *p = fx_realloc(f->pool, cap);
        if (!p)
            return FLEXPU_ENOMEM;
        f->pool = p;
        f->cap_pool = (uint32_t)cap;
    }
    memcpy(f->pool + f->npool, s, n);
    *off = f->npool;
    f->npool += (uint32_t)n;
    return 0;
}

static int nomem(struct flexpu_error *err)
{
    return flexpu_error_set(err, FLEXPU_ENOMEM, "out of memory building a node filter");
}

static int invalid(struct flexpu_error *err, const char *field, const char *value, const char *why)
{
    return flexpu_error_field(err, FLEXPU_EINVAL, field, value ? value : "",
                              value ? strlen(value) : 0, why);
}

/* A base-10 int64 with nothing else around it, as Go's strconv.ParseInt. */
static int parse_int(const char *s, int64_t *out)
{
    if (!s || !*s)
        return -1;
    const char *p = s;
    if (*p == '+' || *p == '-')
        p++;
    if (!*p)
        return -1;
    for (const char *q = p; *q; q++)
        if (*q < '0' || *q > '9')
            return -1;
    errno = 0;
    char *end;
    long long v = strtoll(s, &end, 10);
    if (errno || *end)
        return -1;
    *out = v;
    return 0;
}

static int check_key(const char *field, const char *key, struct flexpu_error *err)
{
    if (!key || !*key)
        return invalid(err, field, key, "must not be empty");
    if (strlen(key) > KEY_MAX)
        return invalid(err, field, key, "longer than a label key may be (317 bytes)");
    return 0;
}

static int check_value(const char *field, const char *value, struct flexpu_error *err)
{
    if (value && strlen(value) > VALUE_MAX)
        return invalid(err, field, value, "longer than 4096 bytes");
    return 0;
}

int flexpu_filter_add_toleration(struct flexpu_filter *f, const char *key,
                                 enum flexpu_toleration_op op, const char *value,
                                 enum flexpu_taint_effect effect, struct flexpu_error *err)
{
    const char *k = key ? key : "", *v = value ? value : "";
    if ((int)op < FLEXPU_TOL_EQUAL || op > FLEXPU_TOL_GT)
        return invalid(err, "toleration.operator", "", "must be Equal, Exists, Lt or Gt");
    if ((int)effect < FLEXPU_TAINT_ANY || effect > FLEXPU_TAINT_NO_EXECUTE)
        return invalid(err, "toleration.effect", "",
                       "must be empty, NoSchedule, PreferNoSchedule or NoExecute");
    if (!*k && op != FLEXPU_TOL_EXISTS)
        return invalid(err, "toleration.key", "",
                       "an empty key (every taint) needs the operator Exists");
    if (op == FLEXPU_TOL_EXISTS && *v)
        return invalid(err, "toleration.value", v, "must be empty with the operator Exists");
    if (strlen(k) > KEY_MAX)
        return invalid(err, "toleration.key", k, "longer than a taint key may be (317 bytes)");
    int rc = check_value("toleration.value", v, err);
    if (rc)
        return rc;
    struct fx_tol t = {.op = (uint8_t)op, .effect = (uint8_t)effect};
    if ((op == FLEXPU_TOL_LT || op == FLEXPU_TOL_GT) && parse_int(v, &t.num))
        return invalid(err, "toleration.value", v, "must be an integer with the operator Lt or Gt");
    uint32_t mark = f->npool;
    if (grow((void **)&f->tol, f->ntol, &f->cap_tol, sizeof(*f->tol)) ||
        pool_add(f, k, &t.key) || pool_add(f, v, &t.value)) {
        f->npool = mark;
        return nomem(err);
    }
    f->tol[f->ntol++] = t;
    return 0;
}

static int str_ptr_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* m's values (pooled) indexed in vidx, sorted: m->sorted set. 0 or
 * FLEXPU_ENOMEM (vidx as it was). */
static int vidx_add(struct flexpu_filter *f, struct fx_match *m)
{
    const char **v = fx_malloc((size_t)m->nval * sizeof(*v));
    if (!v)
        return FLEXPU_ENOMEM;
    int cap = f->cap_vidx;
    while (cap < f->nvidx + m->nval)
        cap = cap ? cap * 2 : 64;
    if (cap != f->cap_vidx) {
        uint32_t *n = fx_realloc(f->vidx, (size_t)cap * sizeof(*n));
        if (!n) {
            fx_free(v);
            return FLEXPU_ENOMEM;
        }
        f->vidx = n;
        f->cap_vidx = cap;
    }
    const char *s = f->pool + m->val;
    for (int i = 0; i < m->nval; i++, s += strlen(s) + 1)
        v[i] = s;
    qsort(v, m->nval, sizeof(*v), str_ptr_cmp);
    for (int i = 0; i < m->nval; i++)
        f->vidx[f->nvidx + i] = (uint32_t)(v[i] - f->pool);
    fx_free(v);
    m->sorted = (uint32_t)f->nvidx + 1;
    f->nvidx += m->nval;
    return 0;
}

static int add_match(struct flexpu_filter *f, int term, bool field, const char *key,
                     enum flexpu_match_op op, const char *const *values, int nvalues,
                     struct flexpu_error *err)
{
    const char *what = field ? "matchFields.key" : "matchExpressions.key";
    int rc = check_key(what, key, err);
    if (rc)
        return rc;
    if ((int)op < FLEXPU_MATCH_IN || op > FLEXPU_MATCH_LT)
        return invalid(err, "operator", "", "must be In, NotIn, Exists, DoesNotExist, Gt or Lt");
    if (nvalues < 0 || nvalues > UINT16_MAX || (nvalues > 0 && !values))
        return invalid(err, "values", "", "too many values");
    for (int i = 0; i < nvalues; i++) {
        if (!values[i])
            return invalid(err, "values", "", "a value is missing");
        if ((rc = check_value("values", values[i], err)))
            return rc;
    }
    struct fx_match m = {.term = term, .op = (uint8_t)op, .field = field, .nval = (uint16_t)nvalues};
    if (field) {
        if (strcmp(key, "metadata.name") != 0)
            return invalid(err, "matchFields.key", key, "only metadata.name is a node field");
        if (op != FLEXPU_MATCH_IN && op != FLEXPU_MATCH_NOT_IN)
            return invalid(err, "matchFields.operator", key,
                           "node fields take the operator In or NotIn");
        if (nvalues != 1)
            return invalid(err, "matchFields.values", key, "must have exactly one value");
    } else if (op == FLEXPU_MATCH_IN || op == FLEXPU_MATCH_NOT_IN) {
        if (nvalues < 1)
            return invalid(err, "matchExpressions.values", key,
                           "In and NotIn need at least one value");
    } else if (op == FLEXPU_MATCH_EXISTS || op == FLEXPU_MATCH_DOES_NOT_EXIST) {
        if (nvalues != 0)
            return invalid(err, "matchExpressions.values", values[0],
                           "Exists and DoesNotExist take no values");
    } else {
        if (nvalues != 1)
            return invalid(err, "matchExpressions.values", key,
                           "Gt and Lt take exactly one value");
        if (parse_int(values[0], &m.num))
            return invalid(err, "matchExpressions.values", values[0],
                           "must be an integer for Gt and Lt");
    }
    uint32_t mark = f->npool;
    if (grow((void **)&f->match, f->nmatch, &f->cap_match, sizeof(*f->match)) ||
        pool_add(f, key, &m.key))
        goto oom;
    for (int i = 0; i < nvalues; i++) {
        uint32_t off;
        if (pool_add(f, values[i], &off))
            goto oom;
        if (i == 0)
            m.val = off;
    }
    if (nvalues >= SORTED_MIN && (op == FLEXPU_MATCH_IN || op == FLEXPU_MATCH_NOT_IN) &&
        vidx_add(f, &m))
        goto oom;
    f->match[f->nmatch++] = m;
    if (field || strcmp(key, FX_LABEL_HOSTNAME) == 0)
        f->name_dep = 1;
    return 0;
oom:
    f->npool = mark;
    return nomem(err);
}

int flexpu_filter_add_selector(struct flexpu_filter *f, const char *key, const char *value,
                               struct flexpu_error *err)
{
    const char *v = value ? value : "";
    return add_match(f, -1, false, key, FLEXPU_MATCH_IN, &v, 1, err);
}

int flexpu_filter_add_required(struct flexpu_filter *f, const char *key, enum flexpu_match_op op,
                               const char *const *values, int nvalues, struct flexpu_error *err)
{
    return add_match(f, -1, false, key, op, values, nvalues, err);
}

struct flexpu_filter *flexpu_filter_copy(const struct flexpu_filter *src)
{
    struct flexpu_filter *f = flexpu_filter_new();
    if (!f || !src)
        return f;
    *f = *src;
    f->pool = NULL;
    f->match = NULL;
    f->vidx = NULL;
    f->weight = NULL;
    f->kind = NULL;
    f->tol = NULL;
    f->cap_pool = src->npool;
    f->cap_match = src->nmatch;
    f->cap_vidx = src->nvidx;
    f->cap_term = src->nterm;
    f->cap_tol = src->ntol;
    if ((src->npool && !(f->pool = fx_malloc(src->npool))) ||
        (src->nmatch && !(f->match = fx_malloc((size_t)src->nmatch * sizeof(*f->match)))) ||
        (src->nvidx && !(f->vidx = fx_malloc((size_t)src->nvidx * sizeof(*f->vidx)))) ||
        (src->nterm && !(f->weight = fx_malloc((size_t)src->nterm * sizeof(*f->weight)))) ||
        (src->nterm && !(f->kind = fx_malloc((size_t)src->nterm))) ||
        (src->ntol && !(f->tol = fx_malloc((size_t)src->ntol * sizeof(*f->tol))))) {
        flexpu_filter_free(f);
        return NULL;
    }
    if (src->npool)
        memcpy(f->pool, src->pool, src->npool);
    if (src->nmatch)
        memcpy(f->match, src->match, (size_t)src->nmatch * sizeof(*f->match));
    if (src->nvidx)
        memcpy(f->vidx, src->vidx, (size_t)src->nvidx * sizeof(*f->vidx));
    if (src->nterm) {
        memcpy(f->weight, src->weight, (size_t)src->nterm * sizeof(*f->weight));
        memcpy(f->kind, src->kind, (size_t)src->nterm);
    }
    if (src->ntol)
        memcpy(f->tol, src->tol, (size_t)src->ntol * sizeof(*f->tol));
    return f;
}

static int term_add(struct flexpu_filter *f, uint8_t kind, int weight, struct flexpu_error *err)
{
    /* weight and kind grow together: cap_term counts both */
    int cap = f->cap_term;
    if (grow((void **)&f->weight, f->nterm, &cap, sizeof(*f->weight)))
        return nomem(err);
    if (cap != f->cap_term) {
        uint8_t *k = fx_realloc(f->kind, (size_t)cap);
        if (!k)
            return nomem(err); /* weight's larger block is kept: harmless */
        f->kind = k;
        f->cap_term = cap;
    }
    f->kind[f->nterm] = kind;
    f->weight[f->nterm++] = weight;
    if (kind)
        f->scored[kind]++;
    if (kind || weight)
        f->preferred++;
    else
        f->required++;
    return 0;
}

int flexpu_filter_add_term(struct flexpu_filter *f, int weight, struct flexpu_error *err)
{
    if (weight < 0 || weight > 100) {
        char buf[24];
        snprintf(buf, sizeof(buf), "%d", weight);
        return invalid(err, "weight", buf, "must be between 1 and 100");
    }
    return term_add(f, 0, weight, err);
}

int flexpu_filter_add_scored(struct flexpu_filter *f, enum flexpu_score score, int weight,
                             struct flexpu_error *err)
{
    if (score != FLEXPU_SCORE_POD_AFFINITY && score != FLEXPU_SCORE_SPREAD)
        return invalid(err, "score", "", "must be a score plugin (enum flexpu_score)");
    return term_add(f, (uint8_t)score, weight, err);
}

int flexpu_filter_add_match(struct flexpu_filter *f, bool field, const char *key,
                            enum flexpu_match_op op, const char *const *values, int nvalues,
                            struct flexpu_error *err)
{
    if (f->nterm == 0)
        return flexpu_error_set(err, FLEXPU_EINVAL,
                                "a node affinity requirement needs a term to belong to");
    return add_match(f, f->nterm - 1, field, key, op, values, nvalues, err);
}

uint64_t flexpu_filter_hash(const struct flexpu_filter *f)
{
    uint64_t h = FX_FNV1A_OFFSET;
    if (!f)
        return h;
    /* By content, never by pool offsets: the strings, then every field
     * that evaluation reads, in the order they were added. */
    h = fx_fnv1a_u64(h, (uint64_t)f->ntol);
    for (int i = 0; i < f->ntol; i++) {
        const struct fx_tol *t = &f->tol[i];
        h = fx_fnv1a_field(fx_fnv1a_field(h, f->pool + t->key), f->pool + t->value);
        h = fx_fnv1a_u64(h, (uint64_t)t->op << 8 | t->effect);
    }
    h = fx_fnv1a_u64(h, (uint64_t)f->nterm);
    for (int i = 0; i < f->nterm; i++)
        h = fx_fnv1a_u64(h, (uint64_t)(uint32_t)f->weight[i] << 8 | f->kind[i]);
    h = fx_fnv1a_u64(h, (uint64_t)f->nmatch);
    for (int i = 0; i < f->nmatch; i++) {
        const struct fx_match *m = &f->match[i];
        h = fx_fnv1a_u64(h, (uint64_t)(uint32_t)m->term << 32 | (uint64_t)m->op << 24 |
                                (uint64_t)m->field << 16 | m->nval);
        h = fx_fnv1a_field(h, f->pool + m->key);
        const char *v = f->pool + m->val;
        for (int j = 0; j < m->nval; j++, v += strlen(v) + 1)
            h = fx_fnv1a_field(h, v);
    }
    return h;
}

int flexpu_filter_copy_tolerations(struct flexpu_filter *dst, const struct flexpu_filter *src,
                                   struct flexpu_error *err)
{
    int n0 = dst->ntol;
    uint32_t mark = dst->npool;
    for (int i = 0; src && i < src->ntol; i++) {
        const struct fx_tol *t = &src->tol[i];
        int rc = flexpu_filter_add_toleration(dst, src->pool + t->key, t->op,
                                              src->pool + t->value, t->effect, err);
        if (rc) {
            dst->ntol = n0;
            dst->npool = mark;
            return rc;
        }
    }
    return 0;
}

int fx_filter_name_dep(const struct flexpu_filter *f)
{
    return f && f->name_dep;
}

int fx_filter_has_preferred(const struct flexpu_filter *f)
{
    return f && f->preferred > 0;
}

int fx_filter_has_scored(const struct flexpu_filter *f, enum flexpu_score score)
{
    return f && (score == FLEXPU_SCORE_POD_AFFINITY || score == FLEXPU_SCORE_SPREAD) &&
           f->scored[score] > 0;
}

/* ---- the node's side -------------------------------------------------- */

static const char *label_get(const struct fx_attrs *a, const char *name, const char *key)
{
    if (!a)
        return NULL;
    if (a->hostname && name && strcmp(key, FX_LABEL_HOSTNAME) == 0)
        return name;
    int lo = 0, hi = a->nlabels - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        int c = strcmp(a->labels[mid].key, key);
        if (c == 0)
            return a->labels[mid].value;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    return NULL;
}

/* One requirement against a node: a label selector's rules (k8s labels
 * package) for labels, a field selector's for metadata.name. */
static int match_one(const struct flexpu_filter *f, const struct fx_match *m,
                     const struct fx_attrs *a, const char *name)
{
    const char *key = f->pool + m->key;
    const char *have = m->field ? name : label_get(a, name, key);
    int in = 0;
    if (have && (m->op == FLEXPU_MATCH_IN || m->op == FLEXPU_MATCH_NOT_IN) && m->sorted) {
        const uint32_t *idx = f->vidx + m->sorted - 1;
        for (int lo = 0, hi = m->nval - 1; lo <= hi && !in;) {
            int mid = lo + (hi - lo) / 2, c = strcmp(have, f->pool + idx[mid]);
            in = c == 0;
            if (c < 0)
                hi = mid - 1;
            else
                lo = mid + 1;
        }
    } else if (have && (m->op == FLEXPU_MATCH_IN || m->op == FLEXPU_MATCH_NOT_IN)) {
        const char *v = f->pool + m->val;
        for (int i = 0; i < m->nval && !in; i++, v += strlen(v) + 1)
            in = strcmp(v, have) == 0;
    }
    int64_t n;
    switch (m->op) {
    case FLEXPU_MATCH_IN:
        return in;
    case FLEXPU_MATCH_NOT_IN:
        return !in;
    case FLEXPU_MATCH_EXISTS:
        return have != NULL;
    case FLEXPU_MATCH_DOES_NOT_EXIST:
        return have == NULL;
    case FLEXPU_MATCH_GT:
        return have && parse_int(have, &n) == 0 && n > m->num;
    case FLEXPU_MATCH_LT:
        return have && parse_int(have, &n) == 0 && n < m->num;
    default:
        return 0;
    }
}

/* All requirements of a term (term -1: the node selector). A term without
 * requirements matches nothing; the node selector without any, everything. */
static int term_matches(const struct flexpu_filter *f, int term, const struct fx_attrs *a,
                        const char *name)
{
    int any = 0;
    for (int i = 0; i < f->nmatch; i++) {
        if (f->match[i].term != term)
            continue;
        any = 1;
        if (!match_one(f, &f->match[i], a, name))
            return 0;
    }
    return any || term < 0;
}

static int tolerates(const struct flexpu_filter *f, const struct fx_tol *t,
                     const struct fx_ntaint *x)
{
    if (t->effect != FLEXPU_TAINT_ANY && t->effect != x->effect)
        return 0;
    const char *key = f->pool + t->key;
    if (*key && strcmp(key, x->key) != 0)
        return 0;
    int64_t n;
    switch (t->op) {
    case FLEXPU_TOL_EQUAL:
        return strcmp(f->pool + t->value, x->value) == 0;
    case FLEXPU_TOL_EXISTS:
        return 1;
    case FLEXPU_TOL_LT:
        return parse_int(x->value, &n) == 0 && n < t->num;
    case FLEXPU_TOL_GT:
        return parse_int(x->value, &n) == 0 && n > t->num;
    default:
        return 0;
    }
}

static int tolerated(const struct flexpu_filter *f, const struct fx_ntaint *x)
{
    for (int i = 0; f && i < f->ntol; i++)
        if (tolerates(f, &f->tol[i], x))
            return 1;
    return 0;
}

/* A weighted term t matched: its weight to its plugin's raw score. */
static void credit(const struct flexpu_filter *f, int t, struct fx_attr_eval *o)
{
    switch (f->kind[t]) {
    case FLEXPU_SCORE_POD_AFFINITY:
        o->podaff += f->weight[t];
        break;
    case FLEXPU_SCORE_SPREAD:
        o->spread += f->weight[t];
        o->spread_in = 1;
        break;
    default:
        o->affinity += f->weight[t];
    }
}

void fx_filter_eval(const struct flexpu_filter *f, const struct fx_attrs *a, const char *name,
                    struct fx_attr_eval *o)
{
    o->reason = -1;
    o->affinity = 0;
    o->podaff = o->spread = 0;
    o->spread_in = 0;
    o->intolerable = 0;
    o->bad_taint = -1;
    for (int i = 0; a && i < a->ntaints; i++) {
        const struct fx_ntaint *x = &a->taints[i];
        if (tolerated(f, x))
            continue;
        if (x->effect == FLEXPU_TAINT_PREFER_NO_SCHEDULE) {
            o->intolerable++;
        } else if (o->bad_taint < 0) {
            o->bad_taint = i;
            o->reason = FLEXPU_REJECT_TAINT;
        }
    }
    if (!f)
        return;
    if (o->reason < 0 && !term_matches(f, -1, a, name))
        o->reason = FLEXPU_REJECT_AFFINITY;
    if (o->reason < 0 && f->required) {
        int any = 0;
        for (int t = 0; t < f->nterm && !any; t++)
            any = !f->kind[t] && f->weight[t] == 0 && term_matches(f, t, a, name);
        if (!any)
            o->reason = FLEXPU_REJECT_AFFINITY;
    }
    /* A term's requirements follow it (flexpu_filter_add_match adds to
     * the last term), so one pass evaluates every weighted term: a
     * decision's scored terms may be one per topology domain. */
    int t = -1, ok = 0;
    for (int i = 0; i <= f->nmatch; i++) {
        int mt = i < f->nmatch ? f->match[i].term : f->nterm;
        if (mt < 0)
            continue;
        if (mt != t) {
            if (t >= 0 && ok)
                credit(f, t, o);
            t = mt;
            ok = t < f->nterm && (f->kind[t] || f->weight[t] > 0);
        }
        if (ok && !match_one(f, &f->match[i], a, name))
            ok = 0;
    }
}

static const char *effect_name(int effect)
{
    switch (effect) {
    case FLEXPU_TAINT_NO_SCHEDULE:
        return "NoSchedule";
    case FLEXPU_TAINT_PREFER_NO_SCHEDULE:
        return "PreferNoSchedule";
    case FLEXPU_TAINT_NO_EXECUTE:
        return "NoExecute";
    default:
        return "?";
    }
}

void fx_taint_describe(const struct fx_ntaint *t, char *buf, size_t len)
{
    snprintf(buf, len, "{%.60s%s%.40s:%s}", t->key, t->value[0] ? "=" : "", t->value,
             effect_name(t->effect));
}

/* ---- interning sets --------------------------------------------------- */

static int cmp_kv(const void *a, const void *b)
{
    return strcmp(((const struct fx_kv *)a)->key, ((const struct fx_kv *)b)->key);
}

static int cmp_taint(const void *a, const void *b)
{
    const struct fx_ntaint *x = a, *y = b;
    int c = strcmp(x->key, y->key);
    if (c)
        return c;
    if (x->effect != y->effect)
        return x->effect < y->effect ? -1 : 1;
    return strcmp(x->value, y->value);
}

static uint64_t attrs_hash(const struct fx_attrs *a)
{
    uint64_t h = FX_FNV1A_OFFSET ^ (uint64_t)a->hostname;
    for (int i = 0; i < a->nlabels; i++)
        h = fx_fnv1a_field(fx_fnv1a_field(h, a->labels[i].key), a->labels[i].value);
    h = fx_fnv1a_byte(h, 0xfe);
    for (int i = 0; i < a->ntaints; i++)
        h = fx_fnv1a_field(fx_fnv1a_field(h, a->taints[i].key), a->taints[i].value) *
            (uint64_t)(3 + a->taints[i].effect);
    return h;
}

static int attrs_equal(const struct fx_attrs *a, const struct fx_attrs *b)
{
    if (a->hash != b->hash || a->hostname != b->hostname || a->nlabels != b->nlabels ||
        a->ntaints != b->ntaints)
        return 0;
    for (int i = 0; i < a->nlabels; i++)
        if (strcmp(a->labels[i].key, b->labels[i].key) ||
            strcmp(a->labels[i].value, b->labels[i].value))
            return 0;
    for (int i = 0; i < a->ntaints; i++)
        if (cmp_taint(&a->taints[i], &b->taints[i]))
            return 0;
    return 1;
}

/* The labels of the "k=v,k=v" text, counted (out NULL) or stored into out
 * with their strings in *strs. */
static int text_labels(const char *text, struct fx_kv *out, char **strs,
                       struct flexpu_error *err)
{
    int n = 0;
    const char *p = text ? text : "";
    while (*p) {
        size_t len = strcspn(p, ",");
        if (len > 0) {
            const char *eq = memchr(p, '=', len);
            if (!eq || eq == p)
                return flexpu_error_field(err, FLEXPU_EINVAL, "node.labels", p, len,
                                          "must be key=value pairs separated by commas");
            if (out) {
                size_t kl = (size_t)(eq - p), vl = len - kl - 1;
                memcpy(*strs, p, kl);
                (*strs)[kl] = '\0';
                out[n].key = *strs;
                *strs += kl + 1;
                memcpy(*strs, eq + 1, vl);
                (*strs)[vl] = '\0';
                out[n].value = *strs;
                *strs += vl + 1;
            }
            n++;
        }
        p += len;
        if (*p)
            p++;
    }
    return n;
}

static char *copy_str(char **strs, const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = *strs;
    memcpy(d, s, n);
    *strs += n;
    return d;
}

/* Checks the input and sizes the set: labels, taints, string bytes. */
static int attrs_measure(const struct flexpu_node_info *in, int *nl, int *nt, size_t *bytes,
                         struct flexpu_error *err)
{
    int rc = text_labels(in->labels, NULL, NULL, err);
    if (rc < 0)
        return rc;
    *nl = rc;
    *bytes = in->labels ? strlen(in->labels) + 1 : 0;
    if (in->nlabel_list < 0 || in->ntaints < 0 || (in->nlabel_list && !in->label_list) ||
        (in->ntaints && !in->taints))
        return flexpu_error_set(err, FLEXPU_EINVAL, "node %s: label or taint list missing",
                                in->name);
    for (int i = 0; i < in->nlabel_list; i++) {
        const struct flexpu_label *l = &in->label_list[i];
        if (!l->key || !*l->key || strlen(l->key) > KEY_MAX)
            return invalid(err, "node.labels", l->key, "a label key must be 1 to 317 bytes");
        if (!l->value || strlen(l->value) > VALUE_MAX)
            return invalid(err, "node.labels", l->key, "a label needs a value of at most 4096 bytes");
        *bytes += strlen(l->key) + strlen(l->value) + 2;
    }
    *nl += in->nlabel_list;
    for (int i = 0; i < in->ntaints; i++) {
        const struct flexpu_taint *t = &in->taints[i];
        if (!t->key || !*t->key || strlen(t->key) > KEY_MAX)
            return invalid(err, "node.taints.key", t->key, "a taint key must be 1 to 317 bytes");
        if (t->value && strlen(t->value) > VALUE_MAX)
            return invalid(err, "node.taints.value", t->value, "longer than 4096 bytes");
        if (t->effect != FLEXPU_TAINT_NO_SCHEDULE && t->effect != FLEXPU_TAINT_NO_EXECUTE &&
            t->effect != FLEXPU_TAINT_PREFER_NO_SCHEDULE)
            return invalid(err, "node.taints.effect", t->key,
                           "must be NoSchedule, PreferNoSchedule or NoExecute");
        *bytes += strlen(t->key) + (t->value ? strlen(t->value) : 0) + 2;
    }
    *nt = in->ntaints;
    return 0;
}

/* Builds the set of in as one allocation. */
static int attrs_build(const struct flexpu_node_info *in, struct fx_attrs **out,
                       struct flexpu_error *err)
{
    int nl, nt;
    size_t bytes;
    int rc = attrs_measure(in, &nl, &nt, &bytes, err);
    if (rc)
        return rc;
    size_t size = sizeof(struct fx_attrs) + (size_t)nl * sizeof(struct fx_kv) +
                  (size_t)nt * sizeof(struct fx_ntaint) + bytes;
    struct fx_attrs *a = fx_calloc(1, size);
    if (!a)
        return flexpu_error_set(err, FLEXPU_ENOMEM, "out of memory adding node %s", in->name);
    a->labels = (struct fx_kv *)(a + 1);
    a->taints = (struct fx_ntaint *)(a->labels + nl);
    char *strs = (char *)(a->taints + nt);
    int n = text_labels(in->labels, a->labels, &strs, err);
    for (int i = 0; i < in->nlabel_list; i++, n++) {
        a->labels[n].key = copy_str(&strs, in->label_list[i].key);
        a->labels[n].value = copy_str(&strs, in->label_list[i].value);
    }
    qsort(a->labels, (size_t)n, sizeof(*a->labels), cmp_kv);
    /* Keys are unique; the node's own hostname label leaves the set. */
    int w = 0;
    for (int i = 0; i < n; i++) {
        if (i > 0 && strcmp(a->labels[i].key, a->labels[i - 1].key) == 0) {
            rc = invalid(err, "node.labels", a->labels[i].key, "the key appears twice");
            fx_free(a);
            return rc;
        }
        if (strcmp(a->labels[i].key, FX_LABEL_HOSTNAME) == 0 &&
            strcmp(a->labels[i].value, in->name) == 0) {
            a->hostname = 1;
            continue;
        }
        a->labels[w++] = a->labels[i];
    }
    a->nlabels = w;
    for (int i = 0; i < nt; i++) {
        const struct flexpu_taint *t = &in->taints[i];
        a->taints[i].key = copy_str(&strs, t->key);
        a->taints[i].value = copy_str(&strs, t->value ? t->value : "");
        a->taints[i].effect = (int)t->effect;
        if (t->effect == FLEXPU_TAINT_PREFER_NO_SCHEDULE)
            a->prefer_taints++;
        else
            a->hard_taints++;
    }
    a->ntaints = nt;
    qsort(a->taints, (size_t)nt, sizeof(*a->taints), cmp_taint);
    a->hash = attrs_hash(a);
    *out = a;
    return 0;
}

int fx_attrs_intern(struct flexpu_engine *e, const struct flexpu_node_info *in, int *id,
                    struct flexpu_error *err)
{
    *id = -1;
    if ((!in->labels || !*in->labels) && in->nlabel_list == 0 && in->ntaints == 0)
        return 0;
    struct fx_attrs *a = NULL;
    int rc = attrs_build(in, &a, err);
    if (rc)
        return rc;
    if (a->nlabels == 0 && a->ntaints == 0 && !a->hostname) {
        fx_free(a);
        return 0;
    }
    int slot = -1;
    for (int i = 0; i < e->nattrs; i++) {
        if (!e->attrs[i]) {
            if (slot < 0)
                slot = i;
        } else if (attrs_equal(e->attrs[i], a)) {
            fx_free(a);
            e->attrs[i]->refs++;
            *id = i;
            return 0;
        }
    }
    if (slot < 0) {
        if (e->nattrs == e->cap_attrs) {
            int cap = e->cap_attrs ? e->cap_attrs * 2 : 16;
            struct fx_attrs **na = fx_realloc(e->attrs, (size_t)cap * sizeof(*na));
            if (!na)
                goto oom;
            e->attrs = na;
            struct fx_attr_eval *ne = fx_realloc(e->attr_eval, (size_t)cap * sizeof(*ne));
            if (!ne)
                goto oom;
            e->attr_eval = ne;
            e->cap_attrs = cap;
        }
        slot = e->nattrs++;
    }
    a->refs = 1;
    e->attrs[slot] = a;
    *id = slot;
    return 0;
oom:
    fx_free(a);
    return flexpu_error_set(err, FLEXPU_ENOMEM, "out of memory adding node %s", in->name);
}

void fx_attrs_ref(struct flexpu_engine *e, int id)
{
    if (id >= 0)
        e->attrs[id]->refs++;
}

void fx_attrs_unref(struct flexpu_engine *e, int id)
{
    if (id < 0 || --e->attrs[id]->refs > 0)
        return;
    fx_free(e->attrs[id]);
    e->attrs[id] = NULL;
}

void fx_attrs_free_all(struct flexpu_engine *e)
{
    for (int i = 0; i < e->nattrs; i++)
        fx_free(e->attrs[i]);
    fx_free(e->attrs);
    fx_free(e->attr_eval);
}

const char *fx_node_label(const struct flexpu_engine *e, int id, const char *key)
{
    const struct fx_node *n = &e->nodes[id];
    return label_get(n->attrs >= 0 ? e->attrs[n->attrs] : NULL, n->name, key);
}

const char *flexpu_engine_node_label(const struct flexpu_engine *e, int id, const char *key)
{
    if (id < 0 || id >= e->nnodes || !e->nodes[id].alive || !key)
        return NULL;
    return fx_node_label(e, id, key);
}

int flexpu_engine_node_filter(const struct flexpu_engine *e, int id, const struct flexpu_filter *f,
                              int *affinity, int *intolerable)
{
    if (id < 0 || id >= e->nnodes || !e->nodes[id].alive)
        return FLEXPU_ENOENT;
    const struct fx_node *n = &e->nodes[id];
    struct fx_attr_eval v;
    fx_filter_eval(f, n->attrs >= 0 ? e->attrs[n->attrs] : NULL, n->name, &v);
    if (affinity)
        *affinity = v.affinity;
    if (intolerable)
        *intolerable = v.intolerable;
    return v.reason;
}
