/* SPDX-License-Identifier: Apache-2.0 */
/* A three-node, eight-pod trace for the replay tests, read from memory the
 * way flexpu-sim reads files, and the real default trace where it is.
 * Include after cmocka.h. */
#ifndef FX_TEST_SMALL_TRACE_H
#define FX_TEST_SMALL_TRACE_H

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "sim/trace.h"

static const char *const small_nodes = "sn,cpu_milli,memory_mib,gpu,model\n"
                                       "n0,32000,65536,4,T4\n"
                                       "n1,32000,65536,2,T4\n"
                                       "n2,64000,131072,8,V100\n";

static const char *const small_pods =
    "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos\n"
    "p0,4000,8192,1,1000,,LS\n"
    "p1,2000,4096,1,500,,BE\n"
    "p2,1000,2048,1,250,,BE\n"
    "p3,8000,16384,2,1000,,LS\n"
    "p4,1000,1024,0,0,,BE\n"
    "p5,2000,4096,1,810,,LS\n"
    "p6,16000,32768,8,1000,,LS\n"
    "p7,2000,4096,1,470,,BE\n";

/* Reads a node list and a pod list given as strings into t. */
static inline void load_trace(struct fx_trace *t, const char *nodes, const char *pods)
{
    struct flexpu_error err;
    FILE *f = fmemopen((void *)nodes, strlen(nodes), "r");
    if (fx_trace_read_nodes(t, "nodes.csv", f, &err))
        fail_msg("%s", err.msg);
    f = fmemopen((void *)pods, strlen(pods), "r");
    if (fx_trace_read_pods(t, "pods.csv", f, &err))
        fail_msg("%s", err.msg);
}

/* Reads the trace's default node and pod lists into t; 0 when they are not
 * there (the caller skips). */
static inline int load_default_trace(struct fx_trace *t)
{
    const char *nodes = FLEXPU_TRACE_DIR "/openb_node_list_gpu_node.csv";
    const char *pods = FLEXPU_TRACE_DIR "/openb_pod_list_default.csv";
    if (access(nodes, R_OK) != 0 || access(pods, R_OK) != 0)
        return 0;
    struct flexpu_error err;
    if (fx_trace_read_nodes(t, nodes, NULL, &err) || fx_trace_read_pods(t, pods, NULL, &err))
        fail_msg("%s", err.msg);
    return 1;
}

#endif
