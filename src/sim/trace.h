/* SPDX-License-Identifier: Apache-2.0 */
/* The Alibaba GPU-sharing trace (cluster-trace-gpu-v2023): node list and pod
 * list CSV files. Every malformed field stops the read with an error naming
 * the file, line, column and value: no line is ever skipped. */
#ifndef FX_SIM_TRACE_H
#define FX_SIM_TRACE_H

#include <stdint.h>
#include <stdio.h>

#include "flexpu/sched.h"

struct fx_trace_node {
    char name[FLEXPU_NAME_MAX];
    int64_t cpu_milli, mem_mib;
    int ngpu;
    char model[FLEXPU_NAME_MAX];
};

struct fx_trace_pod {
    char name[FLEXPU_NAME_MAX];
    int64_t cpu_milli, mem_mib;
    int num_gpu, gpu_milli;
    char gpu_spec[128];
    enum flexpu_qos qos;
    int64_t creation, deletion, scheduled; /* seconds; -1 absent */
};

struct fx_trace {
    struct fx_trace_node *nodes;
    int nnodes;
    struct fx_trace_pod *pods;
    int npods;
    int64_t gpus;
};

/* Each reads one file (f may be NULL to open path; path names it in errors)
 * and appends to t. On error t keeps what it had. */
int fx_trace_read_nodes(struct fx_trace *t, const char *path, FILE *f, struct flexpu_error *err);
int fx_trace_read_pods(struct fx_trace *t, const char *path, FILE *f, struct flexpu_error *err);
void fx_trace_free(struct fx_trace *t);

/* Builds an engine holding the trace's nodes (one topology group each). */
int fx_trace_engine(const struct fx_trace *t, struct flexpu_engine **out,
                    struct flexpu_error *err);
/* Converts a pod to a request for engine e (interning its GPU models). */
int fx_trace_req(struct flexpu_engine *e, const struct fx_trace_pod *p,
                 struct flexpu_pod_req *r, struct flexpu_error *err);

/* The FGD paper's typical pods: shapes keyed by (cpu, num_gpu, gpu_milli,
 * gpu_spec), most popular first until `coverage` of pods (the shape that
 * crosses it is kept), with popularity by pod count. Shapes of equal count
 * are ordered by the rule of e's policy (sched/ties.h: fgd larger first,
 * others smaller first); coverage <= 0 takes the policy's own (fgd 0.95,
 * others 1.0). Installs them as e's workload. */
int fx_trace_set_workload(struct flexpu_engine *e, const struct fx_trace *t, double coverage,
                          struct flexpu_error *err);

#endif
