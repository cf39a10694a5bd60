/* SPDX-License-Identifier: Apache-2.0 */
#include "sim/bound.h"

#include <lpsolve/lp_lib.h>
#include <stdlib.h>

#include "util/alloc.h"

#define MILLI 1000

/* Items merged by the size the capacity check sees. */
struct group {
    int cap;       /* size in the capacity check (rounded down to the grid) */
    int vol;       /* largest true size in the group: what one item is worth */
    int64_t count; /* supply */
};

struct enumeration {
    lprec *lp;
    const struct group *g;
    int ng;
    int *k; /* items of each group in the configuration being built */
    int columns, max_columns;
    REAL *col;
    int *rowno;
    int failed;
};

static int cmp_group_desc(const void *a, const void *b)
{
    const struct group *x = a, *y = b;
    return (y->cap > x->cap) - (y->cap < x->cap);
}

/* Merges items onto a grid of `grid` milli; returns the number of groups. */
static int group_items(const struct fx_bound_item *items, int n, int grid, struct group *out)
{
    int ng = 0;
    for (int i = 0; i < n; i++) {
        if (items[i].count == 0)
            continue;
        int s = items[i].milli;
        /* Whole GPUs stay whole; sizes below the grid keep their size, so
         * nothing rounds to zero (which would make the bound infinite). */
        int cap = s == MILLI || s < grid ? s : s / grid * grid;
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
    return ng;
}

/* Adds the configuration in e->k as an LP column: its worth in the
 * objective (row 0), one GPU (row 1), and its items (rows 2..). */
static void add_configuration(struct enumeration *e)
{
    int m = 0;
    double worth = 0;
    for (int i = 0; i < e->ng; i++)
        worth += (double)e->k[i] * e->g[i].vol;
    e->col[m] = worth;
    e->rowno[m++] = 0;
    e->col[m] = 1;
    e->rowno[m++] = 1;
    for (int i = 0; i < e->ng; i++)
        if (e->k[i]) {
            e->col[m] = e->k[i];
            e->rowno[m++] = 2 + i;
        }
    if (!add_columnex(e->lp, m, e->col, e->rowno))
        e->failed = 1;
    e->columns++;
}

/* Every non-empty multiset of items that fits in `rem` milli, largest
 * sizes first; stops once the column budget is spent. */
static void enumerate(struct enumeration *e, int i, int rem, int any)
{
    if (e->failed || e->columns > e->max_columns)
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

/* Solves the LP on one grid: 0 and *milli, 1 when the configurations
 * exceed the budget, or an error code. */
static int solve_on_grid(const struct group *g, int ng, int64_t gpus, int max_columns,
                         double *milli, struct flexpu_error *err)
{
    int rows = 1 + ng;
    lprec *lp = make_lp(rows, 0);
    int *k = fx_calloc((size_t)ng + 1, sizeof(*k));
    REAL *col = fx_calloc((size_t)ng + 2, sizeof(*col));
    int *rowno = fx_calloc((size_t)ng + 2, sizeof(*rowno));
    int rc = 0;
    if (!lp || !k || !col || !rowno) {
        rc = flexpu_error_set(err, FLEXPU_ENOMEM, "out of memory building the packing LP");
        goto out;
    }
    set_verbose(lp, NEUTRAL);
    set_maxim(lp);
    set_constr_type(lp, 1, LE);
    set_rh(lp, 1, (REAL)gpus);
    for (int i = 0; i < ng; i++) {
        set_constr_type(lp, 2 + i, LE);
        set_rh(lp, 2 + i, (REAL)g[i].count);
    }
    struct enumeration e = {lp, g, ng, k, 0, max_columns, col, rowno, 0};
    enumerate(&e, 0, MILLI, 0);
    if (e.failed) {
        rc = flexpu_error_set(err, FLEXPU_ENOMEM, "lp_solve could not add a column");
        goto out;
    }
    if (e.columns > max_columns) {
        rc = 1;
        goto out;
    }
    if (e.columns == 0) {
        *milli = 0;
        goto out;
    }
    int status = solve(lp);
    if (status != OPTIMAL) {
        rc = flexpu_error_set(err, FLEXPU_EIO, "the packing LP did not solve (lp_solve status %d)",
                              status);
        goto out;
    }
    *milli = get_objective(lp);
out:
    if (lp)
        delete_lp(lp);
    fx_free(k);
    fx_free(col);
    fx_free(rowno);
    return rc;
}

int fx_bound_packable(const struct fx_bound_item *items, int n, int64_t gpus, int max_configs,
                      double *milli, int *grid, struct flexpu_error *err)
{
    static const int grids[] = {1, 5, 10, 20, 25, 50, 100, 200};
    if (gpus < 0)
        return flexpu_error_set(err, FLEXPU_EINVAL, "field 'gpus': invalid value '%lld': "
                                "expected 0 or more", (long long)gpus);
    for (int i = 0; i < n; i++) {
        if (items[i].milli < 1 || items[i].milli > MILLI)
            return flexpu_error_set(err, FLEXPU_EINVAL, "field 'gpu_milli': invalid value "
                                    "'%d': expected 1 to 1000", items[i].milli);
        if (items[i].count < 0)
            return flexpu_error_set(err, FLEXPU_EINVAL, "field 'count': invalid value '%lld': "
                                    "expected 0 or more", (long long)items[i].count);
    }
    if (max_configs <= 0)
        max_configs = 200000;
    struct group *g = fx_calloc((size_t)n + 1, sizeof(*g));
    if (!g)
        return flexpu_error_set(err, FLEXPU_ENOMEM, "out of memory building the packing LP");
    int rc = 1;
    for (size_t i = 0; rc == 1 && i < sizeof(grids) / sizeof(grids[0]); i++) {
        int ng = group_items(items, n, grids[i], g);
        rc = solve_on_grid(g, ng, gpus, max_configs, milli, err);
        if (rc == 0 && grid)
            *grid = grids[i];
    }
    if (rc == 1)
        rc = flexpu_error_set(err, FLEXPU_EINVAL, "the packing LP has more than %d "
                              "configurations even on a 200-milli grid", max_configs);
    fx_free(g);
    return rc;
}
