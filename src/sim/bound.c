/* SPDX-License-Identifier: Apache-2.0 */
#include "sim/bound.h"

#include <lpsolve/lp_lib.h>
#include <stdlib.h>
#include <string.h>

#include "util/alloc.h"

#define MILLI 1000
#define MAX_POOLS 64

/* Items merged by the size the capacity check sees. */
struct group {
    int cap;       /* size in the capacity check (rounded down to the grid) */
    int vol;       /* largest true size in the group: what one item is worth */
    int64_t count; /* supply (in a pool's view: what the pool may take) */
};

/* Items of one group accepting the same pools. */
struct class {
    int group;
    uint64_t pools; /* bit p: pool p's GPUs may hold them */
    int64_t count;
};

/* GPU models that no item tells apart, counted as one. */
struct pool {
    uint64_t models;
    int64_t gpus;
};

/* The configuration columns as built, to switch off those that hold more
 * of a group than their pool may take at a later solve: column c (LP column
 * 1 + c) belongs to pool pool[c] and holds k[j] of group[j] for j in
 * start[c]..start[c + 1]. */
struct columns {
    int n, cap;
    int *pool, *start;
    int nk, kcap;
    int *group, *k;
    char *on;
};

struct fx_bound_lp {
    lprec *lp;
    int n;          /* items it was built for */
    int64_t *most;  /* each one's count then */
    int *class_of;  /* each one's class; -1: no pool may take it */
    struct class *cls;
    int nc, ng, np;
    struct pool pools[MAX_POOLS];
    int *rows, *shared_row; /* lay_out_rows */
    int64_t *avail;         /* per pool and group: what the pool may take now */
    struct columns cols;
};

struct enumeration {
    lprec *lp;
    const struct group *g; /* the groups one pool may take */
    const int *row;        /* each one's row in the LP */
    const int *group;      /* each one's group */
    int ng;
    int pool;
    int *k; /* items of each group in the configuration being built */
    int max_columns;
    REAL *col;
    int *rowno;
    struct columns *cols;
    int failed;
};

static int cmp_group_desc(const void *a, const void *b)
{
    const struct group *x = a, *y = b;
    return (y->cap > x->cap) - (y->cap < x->cap);
}

static uint64_t bit(int i)
{
    return (uint64_t)1 << i;
}

/* Whether every item naming models accepts model a exactly when it accepts
 * model b. */
static int alike(const struct fx_bound_item *items, int n, int a, int b)
{
    for (int i = 0; i < n; i++)
        if (items[i].count > 0 && items[i].models &&
            !(items[i].models & bit(a)) != !(items[i].models & bit(b)))
            return 0;
    return 1;
}

/* Models with GPUs, merged into pools of models no item tells apart;
 * returns the number of pools. */
static int make_pools(const struct fx_bound_item *items, int n, const int64_t *gpus, int nmodels,
                      struct pool *out, int *rep)
{
    int np = 0;
    for (int m = 0; m < nmodels; m++) {
        if (gpus[m] == 0)
            continue;
        int p = 0;
        while (p < np && !alike(items, n, rep[p], m))
            p++;
        if (p == np) {
            rep[np] = m;
            out[np++] = (struct pool){0, 0};
        }
        out[p].models |= bit(m);
        out[p].gpus += gpus[m];
    }
    return np;
}

/* The pools whose GPUs an item may use. */
static uint64_t item_pools(const struct fx_bound_item *it, const struct pool *pools, int np)
{
    uint64_t s = 0;
    for (int p = 0; p < np; p++)
        if (it->models == 0 || (it->models & pools[p].models))
            s |= bit(p);
    return s;
}

static int grid_size(int s, int grid)
{
    /* Whole GPUs stay whole; sizes below the grid keep their size, so
     * nothing rounds to zero (which would make the bound infinite). */
    return s == MILLI || s < grid ? s : s / grid * grid;
}

/* Merges the items some pool may hold onto a grid of `grid` milli into
 * groups (largest first) and classes, class_of[i] item i's class (-1 when
 * no pool may hold it); returns the number of groups. */
static int group_items(const struct fx_bound_item *items, int n, int grid,
                       const struct pool *pools, int np, struct group *out, struct class *cls,
                       int *ncls, int *class_of)
{
    int ng = 0;
    for (int i = 0; i < n; i++) {
        if (items[i].count == 0 || item_pools(&items[i], pools, np) == 0)
            continue;
        int s = items[i].milli, cap = grid_size(s, grid);
        int j = 0;
        while (j < ng && out[j].cap != cap)
            j++;
        if (j == ng)
            out[ng++] = (struct group){cap, s, 0};
        if (s > out[j].vol)
            out[j].vol = s;
        out[j].count += items[i].count;
    }
    qsort(out, (size_t)ng, sizeof(*out), cmp_group_desc);
    int nc = 0;
    for (int i = 0; i < n; i++) {
        uint64_t ps = items[i].count ? item_pools(&items[i], pools, np) : 0;
        class_of[i] = -1;
        if (ps == 0)
            continue;
        int cap = grid_size(items[i].milli, grid), gi = 0;
        while (out[gi].cap != cap)
            gi++;
        int c = 0;
        while (c < nc && (cls[c].group != gi || cls[c].pools != ps))
            c++;
        if (c == nc)
            cls[nc++] = (struct class){gi, ps, 0};
        cls[c].count += items[i].count;
        class_of[i] = c;
    }
    *ncls = nc;
    return ng;
}

/* Grows two int arrays of capacity *cap together to hold `need`; 0 or -1. */
static int grow_pair(int **a, int **b, int *cap, int need)
{
    if (need <= *cap)
        return 0;
    int c = *cap ? *cap : 1024;
    while (c < need)
        c *= 2;
    int *x = fx_realloc(*a, (size_t)c * sizeof(*x));
    if (!x)
        return -1;
    *a = x;
    int *y = fx_realloc(*b, (size_t)c * sizeof(*y));
    if (!y)
        return -1;
    *b = y;
    *cap = c;
    return 0;
}

/* Room for one more column of up to `entries` groups; 0 or -1. */
static int columns_room(struct columns *c, int entries)
{
    if (grow_pair(&c->pool, &c->start, &c->cap, c->n + 2) ||
        grow_pair(&c->group, &c->k, &c->kcap, c->nk + entries))
        return -1;
    return 0;
}

/* Adds the configuration in e->k as an LP column: its worth in the
 * objective (row 0), one GPU of its pool, and its items. */
static void add_configuration(struct enumeration *e)
{
    struct columns *c = e->cols;
    if (columns_room(c, e->ng)) {
        e->failed = 1;
        return;
    }
    int m = 0;
    double worth = 0;
    for (int i = 0; i < e->ng; i++)
        worth += (double)e->k[i] * e->g[i].vol;
    e->col[m] = worth;
    e->rowno[m++] = 0;
    e->col[m] = 1;
    e->rowno[m++] = 1 + e->pool;
    c->pool[c->n] = e->pool;
    c->start[c->n] = c->nk;
    for (int i = 0; i < e->ng; i++)
        if (e->k[i]) {
            e->col[m] = e->k[i];
            e->rowno[m++] = e->row[i];
            c->group[c->nk] = e->group[i];
            c->k[c->nk++] = e->k[i];
        }
    c->start[++c->n] = c->nk;
    if (!add_columnex(e->lp, m, e->col, e->rowno))
        e->failed = 1;
}

/* Every non-empty multiset of items that fits in `rem` milli, largest
 * sizes first; stops once the column budget is spent. */
static void enumerate(struct enumeration *e, int i, int rem, int any)
{
    if (e->failed || e->cols->n > e->max_columns)
        return;
    if (i == e->ng) {
        if (any)
            add_configuration(e);
        return;
    }
    int64_t most = rem / e->g[i].cap;
    if (most > e->g[i].count)
        most = e->g[i].count;
    for (int64_t k = most; k >= 0; k--) {
        e->k[i] = (int)k;
        enumerate(e, i + 1, rem - (int)k * e->g[i].cap, any || k > 0);
    }
    e->k[i] = 0;
}

/* The LP's rows: 1..np the pools' GPUs, then one per pool and group the
 * pool may take (rows[p * ng + g], 0 where it may not), then one per class
 * that more than one pool may take (its supply, shared by flow columns).
 * A pool's row of a group is bounded by the classes only that pool takes,
 * plus the flows it receives of the shared ones; with one pool that is the
 * classic LP, row for row. Returns the number of rows. */
static int lay_out_rows(int ng, const struct class *cls, int nc, int np, int *rows,
                        int *shared_row)
{
    int r = np;
    for (int p = 0; p < np; p++)
        for (int gi = 0; gi < ng; gi++) {
            rows[p * ng + gi] = 0;
            for (int c = 0; c < nc && !rows[p * ng + gi]; c++)
                if (cls[c].group == gi && (cls[c].pools & bit(p)))
                    rows[p * ng + gi] = ++r;
        }
    for (int c = 0; c < nc; c++)
        shared_row[c] = __builtin_popcountll(cls[c].pools) > 1 ? ++r : 0;
    return r;
}

/* The flow columns: shared class c sending items to pool p is -1 in the
 * pool's row of its group and +1 in its supply row. 0, or -1 when lp_solve
 * fails to add one. */
static int add_flows(struct fx_bound_lp *b)
{
    for (int c = 0; c < b->nc; c++)
        for (int p = 0; p < b->np && b->shared_row[c]; p++) {
            if (!(b->cls[c].pools & bit(p)))
                continue;
            REAL col[] = {-1, 1};
            int rowno[] = {b->rows[p * b->ng + b->cls[c].group], b->shared_row[c]};
            if (!add_columnex(b->lp, 2, col, rowno))
                return -1;
        }
    return 0;
}

static void drop_lp(struct fx_bound_lp *b)
{
    if (b->lp)
        delete_lp(b->lp);
    fx_free(b->rows);
    fx_free(b->shared_row);
    fx_free(b->avail);
    fx_free(b->cols.pool);
    fx_free(b->cols.start);
    fx_free(b->cols.group);
    fx_free(b->cols.k);
    fx_free(b->cols.on);
    b->lp = NULL;
    b->rows = b->shared_row = NULL;
    b->avail = NULL;
    b->cols = (struct columns){0};
}

/* Builds b's LP on groups g: 0, 1 when the configurations exceed the
 * budget, or an error code. */
static int build_lp(struct fx_bound_lp *b, const struct group *g, int max_columns,
                    struct flexpu_error *err)
{
    int ng = b->ng;
    b->rows = fx_calloc((size_t)b->np * ng + 1, sizeof(*b->rows));
    b->shared_row = fx_calloc((size_t)b->nc + 1, sizeof(*b->shared_row));
    b->avail = fx_calloc((size_t)b->np * ng + 1, sizeof(*b->avail));
    struct group *view = fx_calloc((size_t)ng + 1, sizeof(*view));
    int *view_row = fx_calloc((size_t)ng + 1, sizeof(*view_row));
    int *view_group = fx_calloc((size_t)ng + 1, sizeof(*view_group));
    int *k = fx_calloc((size_t)ng + 1, sizeof(*k));
    REAL *col = fx_calloc((size_t)ng + 2, sizeof(*col));
    int *rowno = fx_calloc((size_t)ng + 2, sizeof(*rowno));
    int rc = 0;
    if (!b->rows || !b->shared_row || !b->avail || !view || !view_row || !view_group || !k ||
        !col || !rowno ||
        !(b->lp = make_lp(lay_out_rows(ng, b->cls, b->nc, b->np, b->rows, b->shared_row), 0))) {
        rc = flexpu_error_set(err, FLEXPU_ENOMEM, "out of memory building the packing LP");
        goto out;
    }
    set_verbose(b->lp, NEUTRAL);
    set_maxim(b->lp);
    for (int r = 1; r <= get_Nrows(b->lp); r++)
        set_constr_type(b->lp, r, LE);
    struct enumeration e = {b->lp, view, view_row, view_group, 0, 0, k, max_columns,
                            col, rowno, &b->cols, 0};
    for (int p = 0; p < b->np && !e.failed && b->cols.n <= max_columns; p++) {
        /* The groups pool p may take, each as many as its classes hold. */
        e.ng = 0;
        e.pool = p;
        for (int gi = 0; gi < ng; gi++) {
            if (!b->rows[p * ng + gi])
                continue;
            view[e.ng] = (struct group){g[gi].cap, g[gi].vol, 0};
            for (int c = 0; c < b->nc; c++)
                if (b->cls[c].group == gi && (b->cls[c].pools & bit(p)))
                    view[e.ng].count += b->cls[c].count;
            view_row[e.ng] = b->rows[p * ng + gi];
            view_group[e.ng++] = gi;
        }
        enumerate(&e, 0, MILLI, 0);
    }
    if (e.failed || (b->cols.n <= max_columns && add_flows(b)) ||
        !(b->cols.on = fx_malloc((size_t)b->cols.n + 1))) {
        rc = flexpu_error_set(err, FLEXPU_ENOMEM, "lp_solve could not add a column");
        goto out;
    }
    memset(b->cols.on, 1, (size_t)b->cols.n + 1);
    if (b->cols.n > max_columns)
        rc = 1;
out:
    fx_free(view);
    fx_free(view_row);
    fx_free(view_group);
    fx_free(k);
    fx_free(col);
    fx_free(rowno);
    if (rc)
        drop_lp(b);
    return rc;
}

static int check_input(const struct fx_bound_item *items, int n, const int64_t *gpus, int nmodels,
                       struct flexpu_error *err)
{
    if (nmodels < 0 || nmodels > MAX_POOLS)
        return flexpu_error_set(err, FLEXPU_EINVAL, "field 'nmodels': invalid value '%d': "
                                "expected 0 to %d", nmodels, MAX_POOLS);
    for (int m = 0; m < nmodels; m++)
        if (gpus[m] < 0)
            return flexpu_error_set(err, FLEXPU_EINVAL, "field 'gpus': invalid value '%lld': "
                                    "expected 0 or more", (long long)gpus[m]);
    for (int i = 0; i < n; i++) {
        if (items[i].milli < 1 || items[i].milli > MILLI)
            return flexpu_error_set(err, FLEXPU_EINVAL, "field 'gpu_milli': invalid value "
                                    "'%d': expected 1 to 1000", items[i].milli);
        if (items[i].count < 0)
            return flexpu_error_set(err, FLEXPU_EINVAL, "field 'count': invalid value '%lld': "
                                    "expected 0 or more", (long long)items[i].count);
        if (nmodels < MAX_POOLS && items[i].models >> nmodels)
            return flexpu_error_set(err, FLEXPU_EINVAL, "field 'models': invalid value '%#llx': "
                                    "names a model past the %d given",
                                    (unsigned long long)items[i].models, nmodels);
    }
    return 0;
}

void fx_bound_lp_free(struct fx_bound_lp *b)
{
    if (!b)
        return;
    drop_lp(b);
    fx_free(b->most);
    fx_free(b->class_of);
    fx_free(b->cls);
    fx_free(b);
}

int fx_bound_lp_new(const struct fx_bound_item *items, int n, const int64_t *gpus, int nmodels,
                    int max_configs, struct fx_bound_lp **out, int *grid,
                    struct flexpu_error *err)
{
    static const int grids[] = {1, 5, 10, 20, 25, 50, 100, 200};
    int rc = check_input(items, n, gpus, nmodels, err);
    if (rc)
        return rc;
    if (max_configs <= 0)
        max_configs = 200000;
    struct fx_bound_lp *b = fx_calloc(1, sizeof(*b));
    struct group *g = fx_calloc((size_t)n + 1, sizeof(*g));
    if (b) {
        b->n = n;
        b->most = fx_calloc((size_t)n + 1, sizeof(*b->most));
        b->class_of = fx_calloc((size_t)n + 1, sizeof(*b->class_of));
        b->cls = fx_calloc((size_t)n + 1, sizeof(*b->cls));
    }
    if (!b || !g || !b->most || !b->class_of || !b->cls) {
        fx_free(g);
        fx_bound_lp_free(b);
        return flexpu_error_set(err, FLEXPU_ENOMEM, "out of memory building the packing LP");
    }
    for (int i = 0; i < n; i++)
        b->most[i] = items[i].count;
    int rep[MAX_POOLS];
    b->np = make_pools(items, n, gpus, nmodels, b->pools, rep);
    rc = 1;
    for (size_t i = 0; rc == 1 && i < sizeof(grids) / sizeof(grids[0]); i++) {
        b->ng = group_items(items, n, grids[i], b->pools, b->np, g, b->cls, &b->nc, b->class_of);
        rc = build_lp(b, g, max_configs, err);
        if (rc == 0 && grid)
            *grid = grids[i];
    }
    fx_free(g);
    if (rc == 1)
        rc = flexpu_error_set(err, FLEXPU_EINVAL, "the packing LP has more than %d "
                              "configurations even on a 200-milli grid", max_configs);
    if (rc) {
        fx_bound_lp_free(b);
        return rc;
    }
    *out = b;
    return 0;
}

/* Sets the right-hand sides for the items' counts (the pools' GPUs, each
 * pool's row of a group the classes only it takes, each shared class its
 * supply) and switches each configuration on exactly when its pool may
 * take every item of it. */
static void set_counts(struct fx_bound_lp *b)
{
    for (int p = 0; p < b->np; p++)
        set_rh(b->lp, 1 + p, (REAL)b->pools[p].gpus);
    for (int r = b->np + 1; r <= get_Nrows(b->lp); r++)
        set_rh(b->lp, r, 0);
    memset(b->avail, 0, (size_t)b->np * b->ng * sizeof(*b->avail));
    for (int c = 0; c < b->nc; c++) {
        const struct class *k = &b->cls[c];
        int r = b->shared_row[c] ? b->shared_row[c]
                                 : b->rows[__builtin_ctzll(k->pools) * b->ng + k->group];
        set_rh(b->lp, r, get_rh(b->lp, r) + (REAL)k->count);
        for (int p = 0; p < b->np; p++)
            if (k->pools & bit(p))
                b->avail[p * b->ng + k->group] += k->count;
    }
    const struct columns *cols = &b->cols;
    for (int c = 0; c < cols->n; c++) {
        const int64_t *avail = &b->avail[cols->pool[c] * b->ng];
        char on = 1;
        for (int j = cols->start[c]; j < cols->start[c + 1] && on; j++)
            on = cols->k[j] <= avail[cols->group[j]];
        if (on != cols->on[c]) {
            set_upbo(b->lp, 1 + c, on ? get_infinite(b->lp) : 0);
            cols->on[c] = on;
        }
    }
}

int fx_bound_lp_solve(struct fx_bound_lp *b, const struct fx_bound_item *items, int n,
                      double *milli, struct flexpu_error *err)
{
    if (n != b->n)
        return flexpu_error_set(err, FLEXPU_EINVAL, "field 'n': invalid value '%d': the "
                                "packing LP was built for %d items", n, b->n);
    for (int c = 0; c < b->nc; c++)
        b->cls[c].count = 0;
    for (int i = 0; i < n; i++) {
        if (items[i].count < 0 || items[i].count > b->most[i])
            return flexpu_error_set(err, FLEXPU_EINVAL, "field 'count': invalid value '%lld': "
                                    "expected 0 to the %lld the packing LP was built for",
                                    (long long)items[i].count, (long long)b->most[i]);
        if (b->class_of[i] >= 0)
            b->cls[b->class_of[i]].count += items[i].count;
    }
    if (b->cols.n == 0) {
        *milli = 0;
        return 0;
    }
    set_counts(b);
    int status = solve(b->lp);
    if (status != OPTIMAL)
        return flexpu_error_set(err, FLEXPU_EIO, "the packing LP did not solve (lp_solve "
                                "status %d)", status);
    *milli = get_objective(b->lp);
    return 0;
}

int fx_bound_packable(const struct fx_bound_item *items, int n, const int64_t *gpus, int nmodels,
                      int max_configs, double *milli, int *grid, struct flexpu_error *err)
{
    struct fx_bound_lp *b = NULL;
    int rc = fx_bound_lp_new(items, n, gpus, nmodels, max_configs, &b, grid, err);
    if (rc == 0)
        rc = fx_bound_lp_solve(b, items, n, milli, err);
    fx_bound_lp_free(b);
    return rc;
}
