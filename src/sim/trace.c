/* SPDX-License-Identifier: Apache-2.0 */
#include "sim/trace.h"

#include <stdlib.h>
#include <string.h>

#include "sched/ties.h"
#include "sim/csv.h"
#include "util/alloc.h"

#define MAX_MILLI_CPU  (1LL << 40)
#define MAX_MEM_MIB    (1LL << 40)
#define MAX_TIME       (1LL << 50)

static int copy_name(const struct fx_csv *c, int col, char *dst, size_t cap,
                     struct flexpu_error *err)
{
    const char *s = fx_csv_str(c, col);
    if (strlen(s) >= cap)
        return fx_csv_error(c, col, err, "too long");
    memcpy(dst, s, strlen(s) + 1);
    return 0;
}

static int grow(void **arr, int n, int *cap, size_t size)
{
    if (n < *cap)
        return 0;
    int nc = *cap ? *cap * 2 : 1024;
    void *a = fx_realloc(*arr, (size_t)nc * size);
    if (!a)
        return FLEXPU_ENOMEM;
    *arr = a;
    *cap = nc;
    return 0;
}

int fx_trace_read_nodes(struct fx_trace *t, const char *path, FILE *f, struct flexpu_error *err)
{
    struct fx_csv c;
    int rc = fx_csv_open(&c, path, f, err);
    if (rc)
        return rc;
    int csn, ccpu, cmem, cgpu, cmodel;
    if ((csn = fx_csv_column(&c, "sn", err)) < 0 || (ccpu = fx_csv_column(&c, "cpu_milli", err)) < 0 ||
        (cmem = fx_csv_column(&c, "memory_mib", err)) < 0 ||
        (cgpu = fx_csv_column(&c, "gpu", err)) < 0 || (cmodel = fx_csv_column(&c, "model", err)) < 0) {
        fx_csv_close(&c);
        return FLEXPU_EPARSE;
    }
    struct fx_trace_node *nodes = NULL;
    int n = 0, cap = 0;
    int64_t gpus = 0;
    while ((rc = fx_csv_next(&c, err)) == 1) {
        if (grow((void **)&nodes, n, &cap, sizeof(*nodes))) {
            rc = flexpu_error_set(err, FLEXPU_ENOMEM, "out of memory reading %s", path);
            break;
        }
        struct fx_trace_node *nd = &nodes[n];
        int64_t ngpu;
        memset(nd, 0, sizeof(*nd));
        if ((rc = copy_name(&c, csn, nd->name, sizeof(nd->name), err)) ||
            (rc = fx_csv_int(&c, ccpu, 0, MAX_MILLI_CPU, &nd->cpu_milli, err)) ||
            (rc = fx_csv_int(&c, cmem, 0, MAX_MEM_MIB, &nd->mem_mib, err)) ||
            (rc = fx_csv_int(&c, cgpu, 0, FLEXPU_MAX_GPUS, &ngpu, err)) ||
            (rc = copy_name(&c, cmodel, nd->model, sizeof(nd->model), err)))
            break;
        if (nd->name[0] == '\0') {
            rc = fx_csv_error(&c, csn, err, "empty node name");
            break;
        }
        nd->ngpu = (int)ngpu;
        if (ngpu > 0 && nd->model[0] == '\0') {
            rc = fx_csv_error(&c, cmodel, err, "a node with GPUs needs a GPU model");
            break;
        }
        gpus += ngpu;
        n++;
    }
    fx_csv_close(&c);
    if (rc < 0) {
        fx_free(nodes);
        return rc;
    }
    struct fx_trace_node *all = fx_realloc(t->nodes, (size_t)(t->nnodes + n + 1) * sizeof(*all));
    if (!all) {
        fx_free(nodes);
        return flexpu_error_set(err, FLEXPU_ENOMEM, "out of memory reading %s", path);
    }
    if (n)
        memcpy(all + t->nnodes, nodes, (size_t)n * sizeof(*all));
    fx_free(nodes);
    t->nodes = all;
    t->nnodes += n;
    t->gpus += gpus;
    return 0;
}

static int parse_qos(const struct fx_csv *c, int col, enum flexpu_qos *q, struct flexpu_error *err)
{
    static const struct {
        const char *name;
        enum flexpu_qos q;
    } names[] = {{"", FLEXPU_QOS_NONE},
                 {"LS", FLEXPU_QOS_LS},
                 {"BE", FLEXPU_QOS_BE},
                 {"Burstable", FLEXPU_QOS_BURSTABLE},
                 {"Guaranteed", FLEXPU_QOS_GUARANTEED}};
    const char *s = col >= 0 ? fx_csv_str(c, col) : "";
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (strcmp(s, names[i].name) == 0) {
            *q = names[i].q;
            return 0;
        }
    }
    return fx_csv_error(c, col, err, "unknown qos (expected LS, BE, Burstable or Guaranteed)");
}

static int opt_time(const struct fx_csv *c, int col, int64_t *out, struct flexpu_error *err)
{
    *out = -1;
    if (col < 0 || fx_csv_str(c, col)[0] == '\0')
        return 0;
    return fx_csv_int(c, col, 0, MAX_TIME, out, err);
}

/* Reads one pod record into p, checking consistency across fields. */
static int read_pod(const struct fx_csv *c, const int *col, struct fx_trace_pod *p,
                    struct flexpu_error *err)
{
    enum { NAME, CPU, MEM, NGPU, MILLI, SPEC, QOS, CREATE, DELETE, SCHED };
    int64_t ngpu, milli;
    int rc;
    memset(p, 0, sizeof(*p));
    if (col[NAME] >= 0 && (rc = copy_name(c, col[NAME], p->name, sizeof(p->name), err)))
        return rc;
    if ((rc = fx_csv_int(c, col[CPU], 0, MAX_MILLI_CPU, &p->cpu_milli, err)) ||
        (rc = fx_csv_int(c, col[MEM], 0, MAX_MEM_MIB, &p->mem_mib, err)) ||
        (rc = fx_csv_int(c, col[NGPU], 0, FLEXPU_MAX_GPUS, &ngpu, err)) ||
        (rc = fx_csv_int(c, col[MILLI], 0, FLEXPU_GPU_MILLI, &milli, err)))
        return rc;
    if (ngpu == 0 && milli != 0)
        return fx_csv_error(c, col[MILLI], err, "a GPU share on a pod with num_gpu 0");
    if (ngpu > 0 && milli == 0)
        return fx_csv_error(c, col[MILLI], err, "num_gpu > 0 needs gpu_milli between 1 and 1000");
    p->num_gpu = (int)ngpu;
    p->gpu_milli = (int)milli;
    if (col[SPEC] >= 0 && (rc = copy_name(c, col[SPEC], p->gpu_spec, sizeof(p->gpu_spec), err)))
        return rc;
    if ((rc = parse_qos(c, col[QOS], &p->qos, err)) ||
        (rc = opt_time(c, col[CREATE], &p->creation, err)) ||
        (rc = opt_time(c, col[DELETE], &p->deletion, err)) ||
        (rc = opt_time(c, col[SCHED], &p->scheduled, err)))
        return rc;
    if (p->deletion >= 0 && p->creation >= 0 && p->deletion < p->creation)
        return fx_csv_error(c, col[DELETE], err, "deletion_time before creation_time");
    if (p->scheduled >= 0 && p->creation >= 0 && p->scheduled < p->creation)
        return fx_csv_error(c, col[SCHED], err, "scheduled_time before creation_time");
    return 0;
}

int fx_trace_read_pods(struct fx_trace *t, const char *path, FILE *f, struct flexpu_error *err)
{
    struct fx_csv c;
    int rc = fx_csv_open(&c, path, f, err);
    if (rc)
        return rc;
    static const char *const required[] = {"cpu_milli", "memory_mib", "num_gpu", "gpu_milli"};
    int col[10];
    col[0] = fx_csv_column_opt(&c, "name");
    for (int i = 0; i < 4; i++)
        if ((col[1 + i] = fx_csv_column(&c, required[i], err)) < 0) {
            fx_csv_close(&c);
            return FLEXPU_EPARSE;
        }
    col[5] = fx_csv_column_opt(&c, "gpu_spec");
    col[6] = fx_csv_column_opt(&c, "qos");
    col[7] = fx_csv_column_opt(&c, "creation_time");
    col[8] = fx_csv_column_opt(&c, "deletion_time");
    col[9] = fx_csv_column_opt(&c, "scheduled_time");
    int n = t->npods, cap = t->npods;
    struct fx_trace_pod *pods = NULL;
    if (n) {
        pods = fx_malloc((size_t)n * sizeof(*pods));
        if (!pods) {
            fx_csv_close(&c);
            return flexpu_error_set(err, FLEXPU_ENOMEM, "out of memory reading %s", path);
        }
        memcpy(pods, t->pods, (size_t)n * sizeof(*pods));
    }
    while ((rc = fx_csv_next(&c, err)) == 1) {
        if (grow((void **)&pods, n, &cap, sizeof(*pods))) {
            rc = flexpu_error_set(err, FLEXPU_ENOMEM, "out of memory reading %s", path);
            break;
        }
        if ((rc = read_pod(&c, col, &pods[n], err)) < 0)
            break;
        n++;
    }
    fx_csv_close(&c);
    if (rc < 0) {
        fx_free(pods);
        return rc;
    }
    fx_free(t->pods);
    t->pods = pods;
    t->npods = n;
    return 0;
}

void fx_trace_free(struct fx_trace *t)
{
    fx_free(t->nodes);
    fx_free(t->pods);
    memset(t, 0, sizeof(*t));
}

int fx_trace_engine(const struct fx_trace *t, struct flexpu_engine **out,
                    struct flexpu_error *err)
{
    struct flexpu_engine *e = flexpu_engine_new();
    if (!e)
        return flexpu_error_set(err, FLEXPU_ENOMEM, "out of memory creating the engine");
    for (int i = 0; i < t->nnodes; i++) {
        const struct fx_trace_node *tn = &t->nodes[i];
        struct flexpu_node_info info;
        memset(&info, 0, sizeof(info));
        info.name = tn->name;
        info.cpu_milli = tn->cpu_milli;
        info.mem_mib = tn->mem_mib;
        info.ngpu = tn->ngpu;
        for (int g = 0; g < tn->ngpu; g++) {
            info.gpus[g].model = tn->model;
            info.gpus[g].numa = -1;
        }
        int rc = flexpu_engine_add_node(e, &info, NULL, err);
        if (rc) {
            flexpu_engine_free(e);
            return rc;
        }
    }
    *out = e;
    return 0;
}

int fx_trace_req(struct flexpu_engine *e, const struct fx_trace_pod *p,
                 struct flexpu_pod_req *r, struct flexpu_error *err)
{
    memset(r, 0, sizeof(*r));
    r->cpu_milli = p->cpu_milli;
    r->mem_mib = p->mem_mib;
    r->num_gpu = p->num_gpu;
    r->gpu_milli = p->gpu_milli;
    r->qos = p->qos;
    return flexpu_engine_models(e, p->gpu_spec, &r->model_mask, err);
}

struct shape_count {
    struct flexpu_pod_req req;
    const char *spec; /* the gpu_spec text of its first pod */
    long count;
    double mem_sum; /* the memory of its pods, MiB */
};

static int cmp_i64(int64_t a, int64_t b)
{
    return a < b ? -1 : a > b;
}

/* Most popular first; among equal counts smaller shapes first (CPU, share,
 * GPUs, model mask). */
static int cmp_count(const void *a, const void *b)
{
    const struct shape_count *x = a, *y = b;
    int c;
    if ((c = cmp_i64(y->count, x->count)) || (c = cmp_i64(x->req.cpu_milli, y->req.cpu_milli)) ||
        (c = cmp_i64(x->req.gpu_milli, y->req.gpu_milli)) ||
        (c = cmp_i64(x->req.num_gpu, y->req.num_gpu)))
        return c;
    return x->req.model_mask < y->req.model_mask ? -1 : x->req.model_mask > y->req.model_mask;
}

/* Most popular first; among equal counts larger shapes first (CPU, share,
 * GPUs, then the gpu_spec text in descending byte order), the order of the
 * reference simulator's typical pods. */
static int cmp_count_larger(const void *a, const void *b)
{
    const struct shape_count *x = a, *y = b;
    int c;
    if ((c = cmp_i64(y->count, x->count)) || (c = cmp_i64(y->req.cpu_milli, x->req.cpu_milli)) ||
        (c = cmp_i64(y->req.gpu_milli, x->req.gpu_milli)) ||
        (c = cmp_i64(y->req.num_gpu, x->req.num_gpu)))
        return c;
    return strcmp(y->spec, x->spec);
}

int fx_trace_set_workload(struct flexpu_engine *e, const struct fx_trace *t, double coverage,
                          struct flexpu_error *err)
{
    struct fx_policy_rules rules = {FX_TIES_RANDOM, 1.0, FX_TYPICAL_SMALLER_FIRST};
    fx_policy_rules(flexpu_engine_policy(e), &rules);
    if (!(coverage > 0))
        coverage = rules.coverage;
    /* The reference keys its typical pods by the gpu_spec text, so
     * "V100M16|V100M32|V100M32" (in the artifact's gpuspec traces) is a shape
     * of its own there, with its own count towards the coverage, where the
     * model mask alone would merge it with "V100M16|V100M32". */
    int by_text = rules.typical == FX_TYPICAL_LARGER_FIRST;
    struct shape_count *sc = fx_calloc((size_t)t->npods + 1, sizeof(*sc));
    struct flexpu_pod_req *reqs = fx_calloc((size_t)t->npods + 1, sizeof(*reqs));
    double *w = fx_calloc((size_t)t->npods + 1, sizeof(*w));
    int rc = 0, n = 0;
    if (!sc || !reqs || !w) {
        rc = flexpu_error_set(err, FLEXPU_ENOMEM, "out of memory building the workload");
        goto out;
    }
    for (int i = 0; i < t->npods; i++) {
        struct flexpu_pod_req r;
        if ((rc = fx_trace_req(e, &t->pods[i], &r, err)))
            goto out;
        /* FGD's shapes leave memory out; the quadratic scan is fine for the
         * few hundred distinct shapes a trace has, and runs once. */
        int64_t mem = r.mem_mib;
        r.mem_mib = 0;
        r.qos = FLEXPU_QOS_NONE;
        int j = 0;
        while (j < n && (memcmp(&sc[j].req, &r, sizeof(r)) != 0 ||
                         (by_text && strcmp(sc[j].spec, t->pods[i].gpu_spec) != 0)))
            j++;
        if (j == n) {
            sc[n].spec = t->pods[i].gpu_spec;
            sc[n++].req = r;
        }
        sc[j].count++;
        sc[j].mem_sum += (double)mem;
    }
    qsort(sc, (size_t)n, sizeof(*sc),
          rules.typical == FX_TYPICAL_LARGER_FIRST ? cmp_count_larger : cmp_count);
    long kept = 0;
    int k = 0;
    while (k < n && (double)kept < coverage * t->npods) {
        reqs[k] = sc[k].req;
        /* The other policies' shapes carry their pods' mean memory, as the
         * scheduler's do (src/scheduler/model.c): flexpu's stranded compute
         * counts memory (change 9), and its fragments then see the shapes
         * that the node's memory can no longer hold. The reference's
         * (by_text, fgd) leave it out. */
        if (!by_text)
            reqs[k].mem_mib = (int64_t)(sc[k].mem_sum / (double)sc[k].count + 0.5);
        w[k] = (double)sc[k].count;
        kept += sc[k].count;
        k++;
    }
    rc = flexpu_engine_set_workload(e, reqs, w, k, err);
out:
    fx_free(sc);
    fx_free(reqs);
    fx_free(w);
    return rc;
}
