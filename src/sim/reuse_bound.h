/* SPDX-License-Identifier: Apache-2.0 */
/* An upper bound on the GPU busy share of the reuse replay (sim/reuse.h;
 * docs/REUSE.md, "An upper bound"): given where the owners are and what they
 * use, the most GPU time the batch jobs could add under ANY placement rule,
 * with the constraints the replay enforces on every placement:
 *
 *   - a batch job holds its CPU and host memory on its node, and the
 *     owners' leave the rest (the engine books both);
 *   - on a GPU, the batch jobs' GPU memory fits beside what the owners hold
 *     there (reserved, or in use with --borrow-mem idle): a job needs at
 *     least batch_mem x its share's (a borrower's need; an ordinary job
 *     reserves its whole share's, more);
 *   - the batch jobs on a GPU use at most the time its owners leave
 *     (--batch-gpu idle), and, held to their shares (share), at most the sum
 *     of their shares, so at most the GPU memory they fit in / batch_mem.
 *
 * Per node, a GPU that carries batch work carries at least one job, and
 * distinct GPUs' jobs are distinct (the trace's BE pods ask one GPU; a job
 * of n GPUs is charged 1/n of its CPU and memory on each). Relaxed: each
 * such job is taken to be the cheapest shape in the trace's BE pods whose
 * GPU memory fits that GPU (the least CPU and, separately, the least host
 * memory of those shapes), with as many copies as wanted; placement rules
 * (the predicted-idle fit, the headroom, at most 8 borrowers a GPU), GPU
 * models and node boundaries of other jobs are ignored. So the most a node
 * can add is a two-constraint knapsack over its GPUs (value: the GPU time a
 * covered GPU can carry; weights: the cheapest fitting job's CPU and host
 * memory; capacities: the node's free CPU and memory after the owners), and
 * whatever a placement achieves on the node is a feasible subset of it:
 * the GPUs where batch jobs run, each charged one of its own jobs, whose
 * CPU and memory are at least the cheapest's and add up to at most what
 * the owners leave. Summed over the nodes, with the owners' use, that is
 * the bound "of any jobs": it holds for any rule, even one that could pick
 * the cheapest job at will (the trace's rarest, cheapest pods then stand in
 * for every job).
 *
 * The bound "of the jobs present" counts those cheap jobs. Take a set R of
 * shapes (a level: those below a CPU per GPU theta or below a GPU memory
 * phi), only the others for the knapsacks, and add one GPU's time (1000)
 * per batch job of R present (waiting or running, in the run): in any
 * placement, the GPUs whose charged job is of R carry at most 1000 each,
 * and the other GPUs with their jobs are a feasible set of the knapsacks
 * without R. The least over the levels (level 0: R empty) is the bound. It
 * holds for any placement of the jobs the run had at that moment; the
 * count is the run's (a rule that started other jobs would hold other
 * ones, and one that started more would have drawn more): not a bound for
 * every rule, as the first is. */
#ifndef FX_SIM_REUSE_BOUND_H
#define FX_SIM_REUSE_BOUND_H

#include <stdbool.h>

/* One batch job shape, per GPU it asks. */
struct fx_rbound_shape {
    double cpu, mem; /* CPU (milli) and host memory (MiB) */
    double gmem;     /* the least GPU memory it needs on a GPU, thousandths */
};

/* Shapes sorted by gmem, with cpu and mem replaced by their prefix minima:
 * entry k holds the least CPU and memory of the shapes needing at most its
 * gmem. */
struct fx_rbound_table {
    int n;
    struct fx_rbound_shape *s;
};

/* Builds t from shapes[0..n); -1 when out of memory. */
int fx_rbound_table_init(struct fx_rbound_table *t, const struct fx_rbound_shape *shapes, int n);
void fx_rbound_table_free(struct fx_rbound_table *t);

/* The least CPU and the least host memory (not necessarily of one shape)
 * among the shapes whose GPU memory fits in room thousandths; false if
 * none fits. */
bool fx_rbound_cheapest(const struct fx_rbound_table *t, double room, double *cpu, double *mem);

/* One GPU of a node: the batch GPU time it could carry (thousandths; 0
 * where no shape fits it), and the cheapest fitting job's CPU and memory. */
struct fx_rbound_gpu {
    double value, cpu, mem;
};

/* The most total value of a set of g[0..n) whose CPU adds up to at most
 * free_cpu and memory to at most free_mem: exact for n <= 16 (every subset),
 * above that the fractional relaxation of the tighter constraint (still an
 * upper bound). */
double fx_rbound_node(const struct fx_rbound_gpu *g, int n, double free_cpu, double free_mem);

#endif
