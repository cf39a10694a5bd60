/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target: the input, through fmemopen(), as a pod list and as a node
 * list. Beyond the sanitizers it checks that a failed read leaves the trace
 * as it was and that what is read obeys the documented limits. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim/trace.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static FILE *open_input(const uint8_t *data, size_t size)
{
    /* Read-only use: fmemopen() wants a non-const pointer. */
    return fmemopen((void *)(uintptr_t)data, size, "r");
}

static void check_pods(const struct fx_trace *t)
{
    for (int i = 0; i < t->npods; i++) {
        const struct fx_trace_pod *p = &t->pods[i];
        if (p->cpu_milli < 0 || p->mem_mib < 0 || p->num_gpu < 0 ||
            p->num_gpu > FLEXPU_MAX_GPUS || p->gpu_milli < 0 || p->gpu_milli > FLEXPU_GPU_MILLI)
            abort();
        if ((p->num_gpu == 0) != (p->gpu_milli == 0))
            abort();
        if (memchr(p->name, '\0', sizeof(p->name)) == NULL ||
            memchr(p->gpu_spec, '\0', sizeof(p->gpu_spec)) == NULL)
            abort();
        if (p->creation >= 0 && p->deletion >= 0 && p->deletion < p->creation)
            abort();
    }
}

static void check_nodes(const struct fx_trace *t)
{
    int64_t gpus = 0;
    for (int i = 0; i < t->nnodes; i++) {
        const struct fx_trace_node *n = &t->nodes[i];
        if (n->name[0] == '\0' || n->cpu_milli < 0 || n->mem_mib < 0 || n->ngpu < 0 ||
            n->ngpu > FLEXPU_MAX_GPUS || (n->ngpu > 0 && n->model[0] == '\0'))
            abort();
        gpus += n->ngpu;
    }
    if (gpus != t->gpus)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fx_trace t;
    struct flexpu_error err;
    memset(&t, 0, sizeof(t));

    /* fx_trace_read_* close the stream in every case. */
    FILE *f = open_input(data, size);
    if (f) {
        int rc = fx_trace_read_pods(&t, "fuzz.csv", f, &err);
        if (rc != 0 && (rc != err.code || t.npods != 0 || t.pods))
            abort();
        check_pods(&t);
    }
    int npods = t.npods;
    f = open_input(data, size);
    if (f) {
        int rc = fx_trace_read_nodes(&t, "fuzz.csv", f, &err);
        if (rc != 0 && (rc != err.code || t.nnodes != 0 || t.nodes))
            abort();
        if (t.npods != npods)
            abort();
        check_nodes(&t);
    }
    /* Appending the same pods again doubles them, or fails leaving them. */
    f = open_input(data, size);
    if (f && npods > 0) {
        int rc = fx_trace_read_pods(&t, "fuzz.csv", f, &err);
        if (t.npods != (rc == 0 ? 2 * npods : npods))
            abort();
        check_pods(&t);
    } else if (f) {
        fclose(f);
    }
    fx_trace_free(&t);
    return 0;
}
