/* SPDX-License-Identifier: Apache-2.0 */
/* flexpu-variants: trace variants for held-out evaluation (docs/SCHEDULING.md,
 * "Trace variants"). Reads a pod list of the Alibaba GPU trace and writes a
 * pod list of the same columns in which, with a seed:
 *
 *   --share P     a share P of the GPU pods share a GPU (single-GPU pods
 *                 asking below 1000 milli): whole-GPU single pods become
 *                 copies of random sharing pods, or the reverse;
 *   --multigpu P  a share P of the GPU pods ask for several GPUs: random
 *                 single-GPU pods become copies of random multi-GPU pods;
 *   --multigpu-demand P  copies of random multi-GPU pods are added (named
 *                 after their donor with a "-m<k>" suffix) until the
 *                 multi-GPU pods hold a share P of the GPU demand; the
 *                 single-GPU pods all stay (the axis of the FGD artifact's
 *                 multigpuNN variants, NN = P in percent);
 *   --cpu X       every GPU pod asks X times its CPU (rounded to a core, at
 *                 most the largest node's CPU), so CPU per GPU is heavier;
 *   --gpuspec P   a share P of the GPU pods name the GPU models they accept
 *                 (gpu_spec): random unconstrained GPU pods get one model
 *                 (half of them) or two to four, drawn among the cluster's
 *                 models that hold at least 1% of its GPUs and have a node
 *                 with enough GPUs for the pod;
 *   --gpuspec-mix MIX  how those models are drawn: "uniform" (the default:
 *                 every eligible model alike), "capacity" (in proportion to
 *                 the model's GPUs in the node list, without replacement),
 *                 or a list "SPEC=W,SPEC=W,..." where each SPEC is a
 *                 gpu_spec (models joined by '|') drawn with weight W among
 *                 the entries that have a node with enough GPUs for the pod;
 *   --cpu-pods X  the CPU-only pods become X times as many: below 1 a random
 *                 subset is kept, above 1 copies of random CPU-only pods are
 *                 added (named after their donor with a "-c<k>" suffix). The
 *                 GPU pods are untouched, so the CPU the cluster is asked for
 *                 grows while the GPU demand stays: CPU becomes scarce
 *                 around the GPUs without any GPU pod asking more per GPU.
 *
 * They apply in that order. A converted pod keeps its name, QoS, phase and
 * times and takes the donor's CPU, memory, GPU count, share and gpu_spec.
 * The same input, options and seed give the same file, byte for byte. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "flexpu/rng.h"
#include "sim/csv.h"

#ifndef FLEXPU_TRACE_DIR
#define FLEXPU_TRACE_DIR "../shared/data/alibaba-gpu-v2023"
#endif

enum { NAME, CPU, MEM, NGPU, MILLI, SPEC, NCOLS_USED };
static const char *const used_cols[NCOLS_USED] = {"name", "cpu_milli", "memory_mib",
                                                  "num_gpu", "gpu_milli", "gpu_spec"};

#define MAX_MODELS 64
#define SPEC_MAX   160

struct pod {
    char *field[FX_CSV_MAX_FIELDS]; /* every column as read (owned) */
    long long cpu, mem;
    int ngpu, milli;
    char spec[SPEC_MAX];
};

struct trace {
    char *header[FX_CSV_MAX_FIELDS];
    int ncols;
    int col[NCOLS_USED];
    struct pod *pods;
    int n, cap;
};

struct model {
    char name[64];
    long long gpus;
    int max_per_node;
};

static int fail(const char *msg)
{
    fprintf(stderr, "flexpu-variants: %s\n", msg);
    return 2;
}

static char *dup_str(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}

static int read_pods(const char *path, struct trace *t, struct flexpu_error *err)
{
    struct fx_csv c;
    int rc = fx_csv_open(&c, path, NULL, err);
    if (rc)
        return rc;
    t->ncols = c.nheader;
    for (int i = 0; i < c.nheader; i++)
        if (!(t->header[i] = dup_str(c.header[i])))
            rc = flexpu_error_set(err, FLEXPU_ENOMEM, "out of memory");
    for (int i = 0; i < NCOLS_USED && rc == 0; i++) {
        t->col[i] = fx_csv_column(&c, used_cols[i], err);
        if (t->col[i] < 0)
            rc = t->col[i];
    }
    while (rc == 0 && (rc = fx_csv_next(&c, err)) == 1) {
        rc = 0;
        if (c.nfields != t->ncols) {
            rc = fx_csv_error(&c, 0, err, "wrong number of fields");
            break;
        }
        if (t->n == t->cap) {
            int cap = t->cap ? t->cap * 2 : 1024;
            struct pod *p = realloc(t->pods, (size_t)cap * sizeof(*p));
            if (!p) {
                rc = flexpu_error_set(err, FLEXPU_ENOMEM, "out of memory");
                break;
            }
            t->pods = p;
            t->cap = cap;
        }
        struct pod *p = &t->pods[t->n];
        memset(p, 0, sizeof(*p));
        int64_t v[4];
        if ((rc = fx_csv_int(&c, t->col[CPU], 0, 1LL << 40, &v[0], err)) ||
            (rc = fx_csv_int(&c, t->col[MEM], 0, 1LL << 40, &v[1], err)) ||
            (rc = fx_csv_int(&c, t->col[NGPU], 0, 16, &v[2], err)) ||
            (rc = fx_csv_int(&c, t->col[MILLI], 0, 1000, &v[3], err)))
            break;
        const char *spec = fx_csv_str(&c, t->col[SPEC]);
        if (strlen(spec) >= SPEC_MAX) {
            rc = fx_csv_error(&c, t->col[SPEC], err, "gpu_spec too long");
            break;
        }
        p->cpu = v[0];
        p->mem = v[1];
        p->ngpu = (int)v[2];
        p->milli = (int)v[3];
        memcpy(p->spec, spec, strlen(spec) + 1);
        for (int i = 0; i < t->ncols; i++)
            if (!(p->field[i] = dup_str(fx_csv_str(&c, i)))) {
                rc = flexpu_error_set(err, FLEXPU_ENOMEM, "out of memory");
                break;
            }
        t->n++;
    }
    fx_csv_close(&c);
    return rc < 0 ? rc : 0;
}

/* The cluster's GPU models, GPUs per model, the most GPUs of a model on
 * one node, and the largest node's CPU. */
static int read_nodes(const char *path, struct model *m, int *nm, long long *max_cpu,
                      struct flexpu_error *err)
{
    struct fx_csv c;
    int rc = fx_csv_open(&c, path, NULL, err);
    if (rc)
        return rc;
    int ccpu = fx_csv_column(&c, "cpu_milli", err), cgpu = fx_csv_column(&c, "gpu", err),
        cmodel = fx_csv_column(&c, "model", err);
    if (ccpu < 0 || cgpu < 0 || cmodel < 0) {
        fx_csv_close(&c);
        return FLEXPU_EPARSE;
    }
    *nm = 0;
    *max_cpu = 0;
    while ((rc = fx_csv_next(&c, err)) == 1) {
        int64_t cpu, gpus;
        if ((rc = fx_csv_int(&c, ccpu, 0, 1LL << 40, &cpu, err)) ||
            (rc = fx_csv_int(&c, cgpu, 0, 16, &gpus, err)))
            break;
        if (cpu > *max_cpu)
            *max_cpu = cpu;
        const char *name = fx_csv_str(&c, cmodel);
        if (gpus == 0 || !*name)
            continue;
        int i = 0;
        while (i < *nm && strcmp(m[i].name, name) != 0)
            i++;
        if (i == *nm) {
            if (*nm == MAX_MODELS || strlen(name) >= sizeof(m[i].name)) {
                rc = fx_csv_error(&c, cmodel, err, "too many models or name too long");
                break;
            }
            memset(&m[i], 0, sizeof(m[i]));
            memcpy(m[i].name, name, strlen(name) + 1);
            (*nm)++;
        }
        m[i].gpus += gpus;
        if (gpus > m[i].max_per_node)
            m[i].max_per_node = (int)gpus;
    }
    fx_csv_close(&c);
    return rc < 0 ? rc : 0;
}

static int is_gpu(const struct pod *p)
{
    return p->ngpu > 0;
}
static int is_sharing(const struct pod *p)
{
    return p->ngpu == 1 && p->milli < 1000;
}
static int is_whole_single(const struct pod *p)
{
    return p->ngpu == 1 && p->milli == 1000;
}
static int is_multi(const struct pod *p)
{
    return p->ngpu > 1;
}
static int is_single(const struct pod *p)
{
    return p->ngpu == 1;
}

typedef int (*pod_pred)(const struct pod *);

static void set_num(char **field, long long v)
{
    char buf[32];
    snprintf(buf, sizeof(buf), "%lld", v);
    char *d = dup_str(buf);
    if (d) {
        free(*field);
        *field = d;
    }
}

/* p takes donor's request (CPU, memory, GPUs, share, gpu_spec). */
static void take_request(struct pod *p, const struct pod *donor)
{
    p->cpu = donor->cpu;
    p->mem = donor->mem;
    p->ngpu = donor->ngpu;
    p->milli = donor->milli;
    memcpy(p->spec, donor->spec, sizeof(p->spec));
}

/* Pods satisfying pred, in a random order. */
static int *shuffled(const struct trace *t, pod_pred pred, int *n, struct flexpu_rng *rng)
{
    int *idx = malloc(((size_t)t->n + 1) * sizeof(*idx));
    if (!idx)
        return NULL;
    *n = 0;
    for (int i = 0; i < t->n; i++)
        if (pred(&t->pods[i]))
            idx[(*n)++] = i;
    for (int i = *n - 1; i > 0; i--) {
        int j = (int)flexpu_rng_below(rng, (uint64_t)i + 1);
        int x = idx[i];
        idx[i] = idx[j];
        idx[j] = x;
    }
    return idx;
}

static int count(const struct trace *t, pod_pred pred)
{
    int n = 0;
    for (int i = 0; i < t->n; i++)
        n += pred(&t->pods[i]);
    return n;
}

/* Converts random pods satisfying from_pred into copies of random pods
 * satisfying to_pred until `want` GPU pods satisfy to_pred. The donors are
 * drawn from the pods as they were before this step. */
static int convert(struct trace *t, pod_pred from_pred, pod_pred to_pred, int want,
                   struct flexpu_rng *rng)
{
    int nfrom, ndonor;
    int *from = shuffled(t, from_pred, &nfrom, rng);
    int *donor = shuffled(t, to_pred, &ndonor, rng);
    int rc = 0;
    if (!from || !donor) {
        rc = -1;
    } else if (ndonor == 0) {
        rc = -2;
    } else {
        struct pod *donors = malloc((size_t)ndonor * sizeof(*donors));
        if (!donors) {
            rc = -1;
        } else {
            for (int i = 0; i < ndonor; i++)
                donors[i] = t->pods[donor[i]];
            int have = count(t, to_pred);
            for (int k = 0; k < nfrom && have < want; k++) {
                const struct pod *d = &donors[flexpu_rng_below(rng, (uint64_t)ndonor)];
                take_request(&t->pods[from[k]], d);
                have++;
            }
            free(donors);
        }
    }
    free(from);
    free(donor);
    return rc;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* A gpu_spec for pod p: one model (half the time) or two to four, drawn
 * among the eligible models. */
static void draw_spec(struct pod *p, const struct model *m, int nm, long long total_gpus,
                      struct flexpu_rng *rng)
{
    int ok[MAX_MODELS], nok = 0;
    for (int i = 0; i < nm; i++)
        if (m[i].gpus * 100 >= total_gpus && m[i].max_per_node >= p->ngpu)
            ok[nok++] = i;
    if (nok == 0)
        return;
    int want = 1;
    if (flexpu_rng_below(rng, 2) == 1)
        want = 2 + (int)flexpu_rng_below(rng, 3);
    if (want > nok)
        want = nok;
    for (int i = 0; i < want; i++) { /* partial Fisher-Yates */
        int j = i + (int)flexpu_rng_below(rng, (uint64_t)(nok - i));
        int x = ok[i];
        ok[i] = ok[j];
        ok[j] = x;
    }
    const char *names[MAX_MODELS];
    for (int i = 0; i < want; i++)
        names[i] = m[ok[i]].name;
    qsort(names, (size_t)want, sizeof(names[0]), cmp_str);
    p->spec[0] = '\0';
    for (int i = 0; i < want; i++) {
        if (i)
            strncat(p->spec, "|", SPEC_MAX - strlen(p->spec) - 1);
        strncat(p->spec, names[i], SPEC_MAX - strlen(p->spec) - 1);
    }
}

static int parse_share(const char *s, const char *name, double lo, double hi, double *out);

/* How constrained pods name their models (--gpuspec-mix). */
enum mix_kind { MIX_UNIFORM, MIX_CAPACITY, MIX_LIST };
#define MIX_MAX 32
struct mix {
    enum mix_kind kind;
    int n;
    char spec[MIX_MAX][SPEC_MAX];
    double w[MIX_MAX];
    int max_per_node[MIX_MAX]; /* the most GPUs of the entry's models on one node */
};

/* Parses "uniform", "capacity" or "SPEC=W,...", checking every model of a
 * SPEC against the node list. */
static int parse_mix(const char *s, const struct model *m, int nm, struct mix *mix)
{
    memset(mix, 0, sizeof(*mix));
    if (strcmp(s, "uniform") == 0)
        return 0;
    if (strcmp(s, "capacity") == 0) {
        mix->kind = MIX_CAPACITY;
        return 0;
    }
    mix->kind = MIX_LIST;
    const char *p = s;
    while (*p) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        const char *eq = memchr(p, '=', len);
        if (mix->n == MIX_MAX || !eq || eq == p || (size_t)(eq - p) >= SPEC_MAX) {
            fprintf(stderr, "flexpu-variants: field '--gpuspec-mix': invalid entry '%.*s': "
                            "expected SPEC=WEIGHT (at most %d entries)\n",
                    (int)len, p, MIX_MAX);
            return -1;
        }
        char *spec = mix->spec[mix->n];
        memcpy(spec, p, (size_t)(eq - p));
        spec[eq - p] = '\0';
        char num[32];
        size_t nl = len - (size_t)(eq - p) - 1;
        if (nl == 0 || nl >= sizeof(num)) {
            fprintf(stderr, "flexpu-variants: field '--gpuspec-mix': invalid weight in '%.*s'\n",
                    (int)len, p);
            return -1;
        }
        memcpy(num, eq + 1, nl);
        num[nl] = '\0';
        if (parse_share(num, "gpuspec-mix", 1e-9, 1e9, &mix->w[mix->n]))
            return -1;
        /* every model of the entry must be in the node list */
        char tmp[SPEC_MAX];
        memcpy(tmp, spec, strlen(spec) + 1);
        char *save = NULL;
        for (char *tok = strtok_r(tmp, "|", &save); tok; tok = strtok_r(NULL, "|", &save)) {
            int i = 0;
            while (i < nm && strcmp(m[i].name, tok) != 0)
                i++;
            if (i == nm) {
                fprintf(stderr, "flexpu-variants: field '--gpuspec-mix': model '%s' is not in "
                                "the node list\n",
                        tok);
                return -1;
            }
            if (m[i].max_per_node > mix->max_per_node[mix->n])
                mix->max_per_node[mix->n] = m[i].max_per_node;
        }
        mix->n++;
        p += len;
        if (*p == ',')
            p++;
    }
    if (mix->n == 0) {
        fprintf(stderr, "flexpu-variants: field '--gpuspec-mix': empty list\n");
        return -1;
    }
    return 0;
}

/* A gpu_spec for p in proportion to the models' GPUs: the same number of
 * models as draw_spec, drawn by capacity without replacement. */
static void draw_spec_capacity(struct pod *p, const struct model *m, int nm,
                               long long total_gpus, struct flexpu_rng *rng)
{
    int ok[MAX_MODELS], nok = 0;
    for (int i = 0; i < nm; i++)
        if (m[i].gpus * 100 >= total_gpus && m[i].max_per_node >= p->ngpu)
            ok[nok++] = i;
    if (nok == 0)
        return;
    int want = 1;
    if (flexpu_rng_below(rng, 2) == 1)
        want = 2 + (int)flexpu_rng_below(rng, 3);
    if (want > nok)
        want = nok;
    const char *names[MAX_MODELS];
    for (int k = 0; k < want; k++) {
        long long left = 0;
        for (int i = 0; i < nok; i++)
            left += m[ok[i]].gpus;
        long long r = (long long)flexpu_rng_below(rng, (uint64_t)left);
        int i = 0;
        while (r >= m[ok[i]].gpus)
            r -= m[ok[i++]].gpus;
        names[k] = m[ok[i]].name;
        ok[i] = ok[--nok];
    }
    qsort(names, (size_t)want, sizeof(names[0]), cmp_str);
    p->spec[0] = '\0';
    for (int i = 0; i < want; i++) {
        if (i)
            strncat(p->spec, "|", SPEC_MAX - strlen(p->spec) - 1);
        strncat(p->spec, names[i], SPEC_MAX - strlen(p->spec) - 1);
    }
}

/* A gpu_spec for p drawn from the list by weight, among the entries with a
 * node that holds p's GPUs. */
static void draw_spec_list(struct pod *p, const struct mix *mix, struct flexpu_rng *rng)
{
    double sum = 0;
    for (int i = 0; i < mix->n; i++)
        if (mix->max_per_node[i] >= p->ngpu)
            sum += mix->w[i];
    if (sum <= 0)
        return;
    double r = flexpu_rng_unit(rng) * sum;
    int pick = -1;
    for (int i = 0; i < mix->n; i++)
        if (mix->max_per_node[i] >= p->ngpu) {
            pick = i;
            if ((r -= mix->w[i]) < 0)
                break;
        }
    memcpy(p->spec, mix->spec[pick], strlen(mix->spec[pick]) + 1);
}

static int is_cpu_only(const struct pod *p)
{
    return p->ngpu == 0;
}

/* Appends `extra` copies of pods drawn with replacement from idx[0..n),
 * every column copied from the donor but the name, which gets a suffix
 * "-<tag><k>", k counting from `first`, so names stay unique. 0, -1 out of
 * memory. */
static int append_copies(struct trace *t, const int *idx, int n, int extra, char tag, int first,
                         struct flexpu_rng *rng)
{
    if (t->n + extra > t->cap) {
        struct pod *p = realloc(t->pods, ((size_t)t->n + extra) * sizeof(*p));
        if (!p)
            return -1;
        t->pods = p;
        t->cap = t->n + extra;
    }
    for (int k = 0; k < extra; k++) {
        const struct pod *d = &t->pods[idx[flexpu_rng_below(rng, (uint64_t)n)]];
        struct pod *p = &t->pods[t->n];
        *p = *d;
        for (int i = 0; i < t->ncols; i++) {
            char buf[256];
            if (i == t->col[NAME])
                snprintf(buf, sizeof(buf), "%s-%c%d", d->field[i], tag, first + k);
            p->field[i] = dup_str(i == t->col[NAME] ? buf : d->field[i]);
            if (!p->field[i]) {
                for (int j = 0; j < i; j++)
                    free(p->field[j]);
                return -1;
            }
        }
        t->n++;
    }
    return 0;
}

/* --cpu-pods: the CPU-only pods become `x` times as many (rounded). Fewer:
 * a random subset of them is dropped. More: copies of CPU-only pods drawn
 * with replacement are appended, every column copied from the donor but the
 * name, which gets a suffix so names stay unique. */
static int scale_cpu_pods(struct trace *t, double x, struct flexpu_rng *rng)
{
    int n;
    int *idx = shuffled(t, is_cpu_only, &n, rng);
    if (!idx)
        return -1;
    int want = (int)(x * n + 0.5);
    int rc = 0;
    if (want < n) {
        char *drop = calloc((size_t)t->n + 1, 1);
        if (!drop) {
            free(idx);
            return -1;
        }
        for (int k = want; k < n; k++)
            drop[idx[k]] = 1;
        int w = 0;
        for (int r = 0; r < t->n; r++) {
            if (drop[r]) {
                for (int i = 0; i < t->ncols; i++)
                    free(t->pods[r].field[i]);
                continue;
            }
            t->pods[w++] = t->pods[r];
        }
        t->n = w;
        free(drop);
    } else if (want > n && n == 0) {
        rc = -2;
    } else if (want > n) {
        rc = append_copies(t, idx, n, want - n, 'c', 1, rng);
    }
    free(idx);
    return rc;
}

/* --multigpu-demand: copies of random multi-GPU pods are appended (named
 * after the donor with a "-m<k>" suffix) until the multi-GPU pods hold a
 * share p of the trace's GPU demand (GPUs times share). The single-GPU pods
 * all stay, as in the FGD artifact's multigpuNN variants, where NN is that
 * share in percent: the replay then sees the same single-GPU mix beside
 * more whole-node and half-node requests. -2: no multi-GPU pod to copy, -3:
 * the trace already holds more than p. */
static int add_multi_demand(struct trace *t, double p, struct flexpu_rng *rng)
{
    double multi = 0, all = 0;
    for (int i = 0; i < t->n; i++) {
        double d = (double)t->pods[i].ngpu * (double)t->pods[i].milli / 1000.0;
        all += d;
        multi += is_multi(&t->pods[i]) ? d : 0;
    }
    if (multi > p * all)
        return -3;
    int n;
    int *idx = shuffled(t, is_multi, &n, rng);
    if (!idx)
        return -1;
    int rc = 0;
    if (n == 0 && p > 0)
        rc = -2;
    /* One copy at a time (a draw decides its size) until the share is met;
     * each copy adds its demand to both sums. */
    for (int k = 1; rc == 0 && n > 0 && multi < p * all; k++) {
        rc = append_copies(t, idx, n, 1, 'm', k, rng);
        if (rc == 0) {
            const struct pod *c = &t->pods[t->n - 1];
            double d = (double)c->ngpu * (double)c->milli / 1000.0;
            multi += d;
            all += d;
        }
    }
    free(idx);
    return rc;
}

static int unconstrained_gpu(const struct pod *p)
{
    return p->ngpu > 0 && p->spec[0] == '\0';
}

static int parse_share(const char *s, const char *name, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (*s == '\0' || *end != '\0' || errno || !(v >= lo && v <= hi)) {
        fprintf(stderr, "flexpu-variants: field '--%s': invalid value '%s': expected a number "
                        "in [%g, %g]\n",
                name, s, lo, hi);
        return -1;
    }
    *out = v;
    return 0;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: flexpu-variants [--pods FILE] [--nodes FILE] [--seed N] [--share P]\n"
            "                       [--multigpu P] [--multigpu-demand P] [--cpu X] [--gpuspec P]\n"
            "                       [--gpuspec-mix MIX] [--cpu-pods X] [--out FILE]\n\n"
            "Writes a variant of an Alibaba GPU trace pod list (default: the default trace's).\n"
            "  --share P     a share P (0-1) of GPU pods share a GPU\n"
            "  --multigpu P  a share P (0-1) of GPU pods ask for several GPUs\n"
            "  --multigpu-demand P  copies of multi-GPU pods are added until they hold a\n"
            "                share P (0-0.95) of the GPU demand\n"
            "  --cpu X       every GPU pod asks X (0.1-10) times its CPU\n"
            "  --gpuspec P   a share P (0-1) of GPU pods name the GPU models they accept\n"
            "  --gpuspec-mix MIX  how they are drawn: uniform (default), capacity (by the\n"
            "                models' GPUs) or SPEC=W,SPEC=W,... (gpu_spec values by weight)\n"
            "  --cpu-pods X  the CPU-only pods become X (0-10) times as many\n"
            "  --seed N      the seed (default 1); --out FILE (default: standard output)\n");
}

int main(int argc, char **argv)
{
    const char *pods = FLEXPU_TRACE_DIR "/openb_pod_list_default.csv";
    const char *nodes = FLEXPU_TRACE_DIR "/openb_node_list_gpu_node.csv";
    const char *out = NULL;
    const char *mix_arg = "uniform";
    double share = -1, multi = -1, cpu = 1, spec = -1, cpu_pods = -1, multi_demand = -1;
    unsigned long long seed = 1;
    static const struct option opts[] = {
        {"pods", required_argument, NULL, 'p'},   {"nodes", required_argument, NULL, 'n'},
        {"seed", required_argument, NULL, 's'},   {"share", required_argument, NULL, 'S'},
        {"multigpu", required_argument, NULL, 'M'}, {"cpu", required_argument, NULL, 'C'},
        {"gpuspec", required_argument, NULL, 'G'}, {"out", required_argument, NULL, 'o'},
        {"gpuspec-mix", required_argument, NULL, 'X'}, {"cpu-pods", required_argument, NULL, 'P'},
        {"multigpu-demand", required_argument, NULL, 'D'},
        {"help", no_argument, NULL, 'h'},          {NULL, 0, NULL, 0}};
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        char *end;
        switch (o) {
        case 'p':
            pods = optarg;
            break;
        case 'n':
            nodes = optarg;
            break;
        case 'o':
            out = optarg;
            break;
        case 's':
            errno = 0;
            seed = strtoull(optarg, &end, 10);
            if (*optarg == '\0' || *end || errno)
                return fail("field '--seed': expected a non-negative integer");
            break;
        case 'S':
            if (parse_share(optarg, "share", 0, 1, &share))
                return 2;
            break;
        case 'M':
            if (parse_share(optarg, "multigpu", 0, 1, &multi))
                return 2;
            break;
        case 'D':
            if (parse_share(optarg, "multigpu-demand", 0, 0.95, &multi_demand))
                return 2;
            break;
        case 'C':
            if (parse_share(optarg, "cpu", 0.1, 10, &cpu))
                return 2;
            break;
        case 'G':
            if (parse_share(optarg, "gpuspec", 0, 1, &spec))
                return 2;
            break;
        case 'X':
            mix_arg = optarg;
            break;
        case 'P':
            if (parse_share(optarg, "cpu-pods", 0, 10, &cpu_pods))
                return 2;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc)
        return fail("unexpected argument (see --help)");

    struct trace t;
    memset(&t, 0, sizeof(t));
    struct model models[MAX_MODELS];
    int nmodels = 0;
    long long max_cpu = 0;
    struct flexpu_error err;
    if (read_pods(pods, &t, &err) || read_nodes(nodes, models, &nmodels, &max_cpu, &err))
        return fail(err.msg);
    long long total_gpus = 0;
    for (int i = 0; i < nmodels; i++)
        total_gpus += models[i].gpus;
    static struct mix mix;
    if (parse_mix(mix_arg, models, nmodels, &mix))
        return 2;
    struct flexpu_rng rng;
    flexpu_rng_seed(&rng, seed);
    int gpu_pods = count(&t, is_gpu);
    int rc = 0;
    if (share >= 0) {
        int want = (int)(share * gpu_pods + 0.5);
        if (count(&t, is_sharing) < want)
            rc = convert(&t, is_whole_single, is_sharing, want, &rng);
        else
            rc = convert(&t, is_sharing, is_whole_single,
                         count(&t, is_single) - want, &rng);
    }
    if (rc == 0 && multi >= 0)
        rc = convert(&t, is_single, is_multi, (int)(multi * gpu_pods + 0.5), &rng);
    if (rc == 0 && multi_demand >= 0)
        rc = add_multi_demand(&t, multi_demand, &rng);
    if (rc == -2)
        return fail("the trace has no pod of the kind to copy");
    if (rc == -3)
        return fail("field '--multigpu-demand': the trace's multi-GPU pods already hold more "
                    "of its GPU demand (it only adds pods)");
    if (rc)
        return fail("out of memory");
    if (cpu != 1) {
        for (int i = 0; i < t.n; i++) {
            struct pod *p = &t.pods[i];
            if (!is_gpu(p))
                continue;
            long long c = (long long)((double)p->cpu * cpu / 1000.0 + 0.5) * 1000;
            if (c < 1000)
                c = 1000;
            p->cpu = c > max_cpu ? max_cpu : c;
        }
    }
    if (spec >= 0) {
        int have = gpu_pods - count(&t, unconstrained_gpu);
        int want = (int)(spec * gpu_pods + 0.5), n;
        int *idx = shuffled(&t, unconstrained_gpu, &n, &rng);
        if (!idx)
            return fail("out of memory");
        for (int k = 0; k < n && have < want; k++, have++)
            if (mix.kind == MIX_UNIFORM)
                draw_spec(&t.pods[idx[k]], models, nmodels, total_gpus, &rng);
            else if (mix.kind == MIX_CAPACITY)
                draw_spec_capacity(&t.pods[idx[k]], models, nmodels, total_gpus, &rng);
            else
                draw_spec_list(&t.pods[idx[k]], &mix, &rng);
        free(idx);
    }
    if (cpu_pods >= 0) {
        rc = scale_cpu_pods(&t, cpu_pods, &rng);
        if (rc == -2)
            return fail("the trace has no CPU-only pod to copy");
        if (rc)
            return fail("out of memory");
    }

    FILE *f = out ? fopen(out, "w") : stdout;
    if (!f) {
        fprintf(stderr, "flexpu-variants: cannot write %s: %s\n", out, strerror(errno));
        return 1;
    }
    for (int i = 0; i < t.ncols; i++)
        fprintf(f, "%s%s", i ? "," : "", t.header[i]);
    fputc('\n', f);
    for (int r = 0; r < t.n; r++) {
        struct pod *p = &t.pods[r];
        set_num(&p->field[t.col[CPU]], p->cpu);
        set_num(&p->field[t.col[MEM]], p->mem);
        set_num(&p->field[t.col[NGPU]], p->ngpu);
        set_num(&p->field[t.col[MILLI]], p->milli);
        char *s = dup_str(p->spec);
        if (s) {
            free(p->field[t.col[SPEC]]);
            p->field[t.col[SPEC]] = s;
        }
        for (int i = 0; i < t.ncols; i++)
            fprintf(f, "%s%s", i ? "," : "", p->field[i]);
        fputc('\n', f);
    }
    int bad = ferror(f);
    if ((out && fclose(f) != 0) || bad) {
        fprintf(stderr, "flexpu-variants: writing %s failed\n", out ? out : "stdout");
        return 1;
    }
    for (int r = 0; r < t.n; r++)
        for (int i = 0; i < t.ncols; i++)
            free(t.pods[r].field[i]);
    for (int i = 0; i < t.ncols; i++)
        free(t.header[i]);
    free(t.pods);
    return 0;
}
