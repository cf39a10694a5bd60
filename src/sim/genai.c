/* SPDX-License-Identifier: Apache-2.0 */
/* Per-pod GPU use series from the GenAI serving data (sim/genai.h). */
#include "sim/genai.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sim/csv.h"
#include "util/alloc.h"

struct sample {
    char id[48];
    double t;
    float v;
};

struct samples {
    struct sample *a;
    size_t n, cap;
};

static int parse_num(struct fx_csv *c, int col, double lo, double hi, double *out,
                     struct flexpu_error *err)
{
    const char *s = fx_csv_str(c, col);
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (*s == '\0' || *end != '\0' || errno || !(v >= lo && v <= hi)) {
        char why[96];
        snprintf(why, sizeof(why), "expected a number in [%g, %g]", lo, hi);
        return fx_csv_error(c, col, err, why);
    }
    *out = v;
    return 0;
}

/* Reads every (id, time, value) of one file, value scaled by `scale`. */
static int read_samples(const char *path, FILE *f, double hi, double scale, struct samples *s,
                        struct flexpu_error *err)
{
    struct fx_csv c;
    int rc = fx_csv_open(&c, path, f, err);
    if (rc)
        return rc;
    int cv = fx_csv_column(&c, "value", err), ct = -1, ci = -1;
    if (cv >= 0 && (ct = fx_csv_column(&c, "timestamp_anon", err)) >= 0)
        ci = fx_csv_column(&c, "container_ip", err);
    if (cv < 0 || ct < 0 || ci < 0) {
        fx_csv_close(&c);
        return FLEXPU_EPARSE;
    }
    while ((rc = fx_csv_next(&c, err)) == 1) {
        double t, v;
        const char *id = fx_csv_str(&c, ci);
        if ((rc = parse_num(&c, ct, 0, 1e12, &t, err)) || (rc = parse_num(&c, cv, 0, hi, &v, err)))
            break;
        if (*id == '\0' || strlen(id) >= sizeof(s->a[0].id)) {
            rc = fx_csv_error(&c, ci, err, "expected a pod id of 1 to 47 characters");
            break;
        }
        if (s->n == s->cap) {
            size_t cap = s->cap ? s->cap * 2 : 4096;
            struct sample *a = fx_realloc(s->a, cap * sizeof(*a));
            if (!a) {
                rc = flexpu_error_set(err, FLEXPU_ENOMEM, "%s: out of memory", path);
                break;
            }
            s->a = a;
            s->cap = cap;
        }
        struct sample *x = &s->a[s->n++];
        snprintf(x->id, sizeof(x->id), "%s", id);
        x->t = t;
        x->v = (float)fmin(1.0, v * scale);
    }
    fx_csv_close(&c);
    return rc < 0 ? rc : 0;
}

static int cmp_sample(const void *pa, const void *pb)
{
    const struct sample *a = pa, *b = pb;
    int c = strcmp(a->id, b->id);
    return c ? c : (a->t < b->t ? -1 : a->t > b->t);
}

/* Fills out[nsteps] from one pod's samples a[0..n) on the grid; returns
 * how many grid points had a sample. */
static int fill(const struct sample *a, size_t n, double t0, double step, int nsteps, float *out)
{
    int have = 0;
    for (int k = 0; k < nsteps; k++)
        out[k] = NAN;
    for (size_t i = 0; i < n; i++) {
        long k = lround((a[i].t - t0) / step);
        if (k >= 0 && k < nsteps) {
            have += isnan(out[k]);
            out[k] = a[i].v;
        }
    }
    float last = NAN;
    for (int k = 0; k < nsteps; k++)
        out[k] = isnan(out[k]) ? last : (last = out[k]);
    for (int k = nsteps - 1; k >= 0; k--) /* the start takes the first sample after it */
        out[k] = isnan(out[k]) ? last : (last = out[k]);
    return have;
}

static size_t group_end(const struct samples *s, size_t i)
{
    size_t j = i;
    while (j < s->n && strcmp(s->a[j].id, s->a[i].id) == 0)
        j++;
    return j;
}

static int build(struct fx_genai *u, struct samples *d, struct samples *m, const char *path,
                 struct flexpu_error *err)
{
    double t0 = INFINITY, t1 = -INFINITY, step = INFINITY;
    for (size_t i = 0; i < d->n; i++) {
        t0 = fmin(t0, d->a[i].t);
        t1 = fmax(t1, d->a[i].t);
        if (i > 0 && strcmp(d->a[i].id, d->a[i - 1].id) == 0 && d->a[i].t > d->a[i - 1].t)
            step = fmin(step, d->a[i].t - d->a[i - 1].t);
    }
    if (!isfinite(step) || step <= 0 || (t1 - t0) / step > 1e6)
        return flexpu_error_set(err, FLEXPU_EINVAL,
                                "%s: no pod has two samples at distinct times (or over a "
                                "million steps)",
                                path);
    u->step_s = step;
    u->nsteps = (int)lround((t1 - t0) / step) + 1;
    u->pods = fx_calloc(d->n, sizeof(*u->pods));
    if (!u->pods)
        return flexpu_error_set(err, FLEXPU_ENOMEM, "out of memory for the usage series");
    size_t j = 0; /* walks m in step with d: both sorted by id */
    for (size_t i = 0; i < d->n;) {
        size_t ie = group_end(d, i);
        while (j < m->n && strcmp(m->a[j].id, d->a[i].id) < 0)
            j = group_end(m, j);
        size_t je = j < m->n && strcmp(m->a[j].id, d->a[i].id) == 0 ? group_end(m, j) : j;
        struct fx_genai_pod *p = &u->pods[u->npods];
        p->duty = fx_malloc((size_t)u->nsteps * sizeof(float));
        p->mem = fx_malloc((size_t)u->nsteps * sizeof(float));
        if (!p->duty || !p->mem) {
            fx_free(p->duty);
            fx_free(p->mem);
            return flexpu_error_set(err, FLEXPU_ENOMEM, "out of memory for the usage series");
        }
        int hd = fill(&d->a[i], ie - i, t0, step, u->nsteps, p->duty);
        int hm = je > j ? fill(&m->a[j], je - j, t0, step, u->nsteps, p->mem) : 0;
        if (2 * hd >= u->nsteps && 2 * hm >= u->nsteps) {
            snprintf(p->id, sizeof(p->id), "%s", d->a[i].id);
            u->npods++;
        } else {
            fx_free(p->duty);
            fx_free(p->mem);
        }
        i = ie;
    }
    if (u->npods == 0)
        return flexpu_error_set(err, FLEXPU_EINVAL,
                                "%s: no pod has both series over half of the %d samples", path,
                                u->nsteps);
    return 0;
}

int fx_genai_read(struct fx_genai *u, const char *duty_path, FILE *duty_f, const char *mem_path,
                  FILE *mem_f, double ref_mem_bytes, struct flexpu_error *err)
{
    memset(u, 0, sizeof(*u));
    if (!(ref_mem_bytes > 0))
        return flexpu_error_set(err, FLEXPU_EINVAL,
                                "field 'ref_mem_bytes': invalid value '%g': must be positive",
                                ref_mem_bytes);
    struct samples d = {0}, m = {0};
    int rc = read_samples(duty_path, duty_f, 100, 0.01, &d, err);
    if (!rc)
        rc = read_samples(mem_path, mem_f, 1e15, 1.0 / ref_mem_bytes, &m, err);
    if (!rc) {
        qsort(d.a, d.n, sizeof(*d.a), cmp_sample);
        qsort(m.a, m.n, sizeof(*m.a), cmp_sample);
        rc = build(u, &d, &m, duty_path, err);
    }
    fx_free(d.a);
    fx_free(m.a);
    if (rc)
        fx_genai_free(u);
    return rc;
}

void fx_genai_keep_part(struct fx_genai *u, int part)
{
    if (part < 0)
        return;
    int n = 0;
    for (int i = 0; i < u->npods; i++) {
        if (i % 2 == part)
            u->pods[n++] = u->pods[i];
        else {
            fx_free(u->pods[i].duty);
            fx_free(u->pods[i].mem);
        }
    }
    u->npods = n;
}

void fx_genai_free(struct fx_genai *u)
{
    for (int i = 0; i < u->npods; i++) {
        fx_free(u->pods[i].duty);
        fx_free(u->pods[i].mem);
    }
    fx_free(u->pods);
    memset(u, 0, sizeof(*u));
}
