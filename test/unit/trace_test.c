/* SPDX-License-Identifier: Apache-2.0 */
/* Reading the Alibaba GPU trace: node and pod lists, their checks, their
 * error messages, and the real trace when it is present. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "sim/trace.h"

#define NODE_HEADER "sn,cpu_milli,memory_mib,gpu,model\n"
#define POD_HEADER                                                                                 \
    "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,creation_time,"           \
    "deletion_time,scheduled_time\n"

static FILE *mem(const char *text)
{
    FILE *f = fmemopen((void *)text, strlen(text), "r");
    assert_non_null(f);
    return f;
}

static void contains(const char *msg, const char *part)
{
    if (!strstr(msg, part))
        print_error("message '%s' lacks '%s'\n", msg, part);
    assert_non_null(strstr(msg, part));
}

static int read_nodes(struct fx_trace *t, const char *text, struct flexpu_error *err)
{
    return fx_trace_read_nodes(t, "nodes.csv", mem(text), err);
}

static int read_pods(struct fx_trace *t, const char *text, struct flexpu_error *err)
{
    return fx_trace_read_pods(t, "pods.csv", mem(text), err);
}

/* Reads text as a node list and expects an EPARSE whose message holds every
 * part given (NULL-terminated). */
static void nodes_fail(const char *text, ...)
{
    struct fx_trace t = {0};
    struct flexpu_error err = {0};
    int rc = read_nodes(&t, text, &err);
    if (rc != FLEXPU_EPARSE)
        print_error("rc %d for:\n%s\n", rc, text);
    assert_int_equal(rc, FLEXPU_EPARSE);
    assert_int_equal(err.code, FLEXPU_EPARSE);
    assert_int_equal(t.nnodes, 0);
    assert_null(t.nodes);
    va_list ap;
    va_start(ap, text);
    for (const char *p; (p = va_arg(ap, const char *));)
        contains(err.msg, p);
    va_end(ap);
    fx_trace_free(&t);
}

static void pods_fail(const char *text, ...)
{
    struct fx_trace t = {0};
    struct flexpu_error err = {0};
    int rc = read_pods(&t, text, &err);
    if (rc != FLEXPU_EPARSE)
        print_error("rc %d for:\n%s\n", rc, text);
    assert_int_equal(rc, FLEXPU_EPARSE);
    assert_int_equal(err.code, FLEXPU_EPARSE);
    assert_int_equal(t.npods, 0);
    assert_null(t.pods);
    va_list ap;
    va_start(ap, text);
    for (const char *p; (p = va_arg(ap, const char *));)
        contains(err.msg, p);
    va_end(ap);
    fx_trace_free(&t);
}

static void test_nodes_good(void **state)
{
    (void)state;
    struct fx_trace t = {0};
    struct flexpu_error err = {0};
    assert_int_equal(read_nodes(&t,
                                NODE_HEADER "openb-node-0000,64000,262144,2,P100\n"
                                            "openb-node-0001,96000,786432,8,\"V100M32\"\r\n"
                                            "cpu-only,32000,131072,0,\n"
                                            "n3,0,0,16,A10\n",
                                &err),
                     0);
    assert_int_equal(t.nnodes, 4);
    assert_int_equal(t.gpus, 26);
    assert_int_equal(t.npods, 0);
    assert_string_equal(t.nodes[0].name, "openb-node-0000");
    assert_int_equal(t.nodes[0].cpu_milli, 64000);
    assert_int_equal(t.nodes[0].mem_mib, 262144);
    assert_int_equal(t.nodes[0].ngpu, 2);
    assert_string_equal(t.nodes[0].model, "P100");
    assert_string_equal(t.nodes[1].name, "openb-node-0001");
    assert_int_equal(t.nodes[1].cpu_milli, 96000);
    assert_int_equal(t.nodes[1].mem_mib, 786432);
    assert_int_equal(t.nodes[1].ngpu, 8);
    assert_string_equal(t.nodes[1].model, "V100M32");
    assert_string_equal(t.nodes[2].name, "cpu-only");
    assert_int_equal(t.nodes[2].ngpu, 0);
    assert_string_equal(t.nodes[2].model, "");
    assert_int_equal(t.nodes[3].ngpu, 16);
    assert_int_equal(t.nodes[3].cpu_milli, 0);

    /* A second file appends. */
    assert_int_equal(read_nodes(&t, NODE_HEADER "n4,1000,1024,1,T4\n", &err), 0);
    assert_int_equal(t.nnodes, 5);
    assert_int_equal(t.gpus, 27);
    assert_string_equal(t.nodes[4].name, "n4");
    assert_string_equal(t.nodes[0].name, "openb-node-0000");

    /* A failed read keeps what was there. */
    assert_int_equal(read_nodes(&t, NODE_HEADER "n5,1000,1024,1,T4\nn6,x,1,1,T4\n", &err),
                     FLEXPU_EPARSE);
    assert_int_equal(t.nnodes, 5);
    assert_int_equal(t.gpus, 27);
    assert_string_equal(t.nodes[4].name, "n4");

    fx_trace_free(&t);
    assert_null(t.nodes);
    assert_int_equal(t.nnodes, 0);
    assert_int_equal(t.gpus, 0);
}

static void test_nodes_columns_by_name(void **state)
{
    (void)state;
    struct fx_trace t = {0};
    struct flexpu_error err = {0};
    assert_int_equal(read_nodes(&t,
                                "model,extra,gpu,sn,memory_mib,cpu_milli\n"
                                "T4,ignored,1,n0,2048,4000\n",
                                &err),
                     0);
    assert_int_equal(t.nnodes, 1);
    assert_string_equal(t.nodes[0].name, "n0");
    assert_int_equal(t.nodes[0].cpu_milli, 4000);
    assert_int_equal(t.nodes[0].mem_mib, 2048);
    assert_int_equal(t.nodes[0].ngpu, 1);
    assert_string_equal(t.nodes[0].model, "T4");
    fx_trace_free(&t);

    /* A header alone is an empty, valid list. */
    assert_int_equal(read_nodes(&t, NODE_HEADER, &err), 0);
    assert_int_equal(t.nnodes, 0);
    fx_trace_free(&t);
}

static void test_nodes_bad(void **state)
{
    (void)state;
    nodes_fail("sn,cpu_milli,memory_mib,model\nn0,1,1,T4\n", "nodes.csv",
               "missing column 'gpu'", NULL);
    nodes_fail("sn,cpu_milli,gpu,model\nn0,1,1,T4\n", "missing column 'memory_mib'", NULL);
    nodes_fail("name,cpu_milli,memory_mib,gpu,model\n", "missing column 'sn'", NULL);
    nodes_fail(NODE_HEADER "n0,64000,262144,2,P100\nn1,12x,262144,2,P100\n", "nodes.csv:3:",
               "cpu_milli", "'12x'", "expected an integer", NULL);
    nodes_fail(NODE_HEADER "n0,64000,262144,17,P100\n", "nodes.csv:2:", "column 4", "'gpu'",
               "'17'", "out of range [0, 16]", NULL);
    nodes_fail(NODE_HEADER "n0,64000,-1,1,P100\n", "nodes.csv:2:", "memory_mib", "'-1'",
               "out of range", NULL);
    nodes_fail(NODE_HEADER "n0,99999999999999999999,1,1,P100\n", "nodes.csv:2:", "cpu_milli",
               "'99999999999999999999'", "out of range", NULL);
    nodes_fail(NODE_HEADER "n0,,1,1,P100\n", "nodes.csv:2:", "cpu_milli", "empty", NULL);
    nodes_fail(NODE_HEADER "n0,1000,1024,2,\n", "nodes.csv:2:", "'model'",
               "a node with GPUs needs a GPU model", NULL);
    nodes_fail(NODE_HEADER ",1000,1024,0,\n", "nodes.csv:2:", "'sn'", "empty node name", NULL);
    nodes_fail(NODE_HEADER "n0,1000,1024,1,T4\nn1,1000,1024,1,T4,extra\n",
               "nodes.csv:3: 6 fields, the header has 5", NULL);
    nodes_fail(NODE_HEADER "n0,1000,1024,1,T4\n\nn1,1000,1024,1,T4\n", "nodes.csv:3: empty line",
               NULL);
    nodes_fail(NODE_HEADER "n0,1000,1024,1,\"T4\n", "nodes.csv:2:", "unterminated quote", NULL);

    /* Names must fit FLEXPU_NAME_MAX - 1 bytes. */
    char text[512], name[FLEXPU_NAME_MAX + 1];
    memset(name, 'n', FLEXPU_NAME_MAX);
    name[FLEXPU_NAME_MAX] = '\0';
    snprintf(text, sizeof(text), NODE_HEADER "%s,1,1,0,\n", name);
    nodes_fail(text, "nodes.csv:2:", "'sn'", "too long", NULL);
    name[FLEXPU_NAME_MAX - 1] = '\0';
    snprintf(text, sizeof(text), NODE_HEADER "%s,1,1,0,\n", name);
    struct fx_trace t = {0};
    struct flexpu_error err = {0};
    assert_int_equal(read_nodes(&t, text, &err), 0);
    assert_string_equal(t.nodes[0].name, name);
    fx_trace_free(&t);
}

static void test_pods_good(void **state)
{
    (void)state;
    struct fx_trace t = {0};
    struct flexpu_error err = {0};
    assert_int_equal(
        read_pods(&t,
                  POD_HEADER "openb-pod-0000,12000,16384,1,1000,,LS,Running,0,12537496,0\n"
                             "openb-pod-0001,6000,12288,1,460,V100M16|V100M32,BE,Running,"
                             "427061,12902960,427065\r\n"
                             "cpu-pod,88000,327680,0,0,,Burstable,Pending,10,,\n"
                             "\"p,3\",1000,1024,8,1000,\"A10,T4\",Guaranteed,Running,,,\n"
                             "p4,0,0,2,1,,,,5,5,5\n",
                  &err),
        0);
    assert_int_equal(t.npods, 5);
    assert_int_equal(t.nnodes, 0);
    const struct fx_trace_pod *p = t.pods;
    assert_string_equal(p[0].name, "openb-pod-0000");
    assert_int_equal(p[0].cpu_milli, 12000);
    assert_int_equal(p[0].mem_mib, 16384);
    assert_int_equal(p[0].num_gpu, 1);
    assert_int_equal(p[0].gpu_milli, 1000);
    assert_string_equal(p[0].gpu_spec, "");
    assert_int_equal(p[0].qos, FLEXPU_QOS_LS);
    assert_int_equal(p[0].creation, 0);
    assert_int_equal(p[0].deletion, 12537496);
    assert_int_equal(p[0].scheduled, 0);

    assert_string_equal(p[1].name, "openb-pod-0001");
    assert_int_equal(p[1].cpu_milli, 6000);
    assert_int_equal(p[1].mem_mib, 12288);
    assert_int_equal(p[1].num_gpu, 1);
    assert_int_equal(p[1].gpu_milli, 460);
    assert_string_equal(p[1].gpu_spec, "V100M16|V100M32");
    assert_int_equal(p[1].qos, FLEXPU_QOS_BE);
    assert_int_equal(p[1].creation, 427061);
    assert_int_equal(p[1].deletion, 12902960);
    assert_int_equal(p[1].scheduled, 427065);

    assert_string_equal(p[2].name, "cpu-pod");
    assert_int_equal(p[2].num_gpu, 0);
    assert_int_equal(p[2].gpu_milli, 0);
    assert_int_equal(p[2].qos, FLEXPU_QOS_BURSTABLE);
    assert_int_equal(p[2].creation, 10);
    assert_int_equal(p[2].deletion, -1);
    assert_int_equal(p[2].scheduled, -1);

    assert_string_equal(p[3].name, "p,3");
    assert_int_equal(p[3].num_gpu, 8);
    assert_string_equal(p[3].gpu_spec, "A10,T4");
    assert_int_equal(p[3].qos, FLEXPU_QOS_GUARANTEED);
    assert_int_equal(p[3].creation, -1);
    assert_int_equal(p[3].deletion, -1);
    assert_int_equal(p[3].scheduled, -1);

    assert_int_equal(p[4].num_gpu, 2);
    assert_int_equal(p[4].gpu_milli, 1);
    assert_int_equal(p[4].qos, FLEXPU_QOS_NONE);
    assert_int_equal(p[4].creation, 5);
    assert_int_equal(p[4].deletion, 5);
    assert_int_equal(p[4].scheduled, 5);

    /* Appending, and a failed read keeping the earlier pods. */
    assert_int_equal(read_pods(&t, POD_HEADER "p5,1,1,0,0,,,,,,\n", &err), 0);
    assert_int_equal(t.npods, 6);
    assert_string_equal(t.pods[5].name, "p5");
    assert_string_equal(t.pods[0].name, "openb-pod-0000");
    assert_int_equal(read_pods(&t, POD_HEADER "p6,1,1,0,0,,,,,,\np7,1,1,0,0,,XX,,,,\n", &err),
                     FLEXPU_EPARSE);
    assert_int_equal(t.npods, 6);
    assert_string_equal(t.pods[5].name, "p5");
    fx_trace_free(&t);
    assert_null(t.pods);
    assert_int_equal(t.npods, 0);
}

/* Only the four resource columns are required. */
static void test_pods_minimal_columns(void **state)
{
    (void)state;
    struct fx_trace t = {0};
    struct flexpu_error err = {0};
    assert_int_equal(
        read_pods(&t, "gpu_milli,num_gpu,memory_mib,cpu_milli\n500,1,2048,4000\n0,0,0,0\n", &err),
        0);
    assert_int_equal(t.npods, 2);
    assert_string_equal(t.pods[0].name, "");
    assert_int_equal(t.pods[0].cpu_milli, 4000);
    assert_int_equal(t.pods[0].mem_mib, 2048);
    assert_int_equal(t.pods[0].num_gpu, 1);
    assert_int_equal(t.pods[0].gpu_milli, 500);
    assert_string_equal(t.pods[0].gpu_spec, "");
    assert_int_equal(t.pods[0].qos, FLEXPU_QOS_NONE);
    assert_int_equal(t.pods[0].creation, -1);
    assert_int_equal(t.pods[0].deletion, -1);
    assert_int_equal(t.pods[0].scheduled, -1);
    fx_trace_free(&t);
}

/* More than the first allocation (1024 records) forces the arrays to grow. */
static void test_many_records(void **state)
{
    (void)state;
    enum { N = 3000 };
    static char text[N * 64 + 128];
    size_t o = (size_t)snprintf(text, sizeof(text), NODE_HEADER);
    for (int i = 0; i < N; i++)
        o += (size_t)snprintf(text + o, sizeof(text) - o, "n%d,%d,%d,%d,T4\n", i, i * 10, i,
                              i % 9);
    struct fx_trace t = {0};
    struct flexpu_error err = {0};
    assert_int_equal(read_nodes(&t, text, &err), 0);
    assert_int_equal(t.nnodes, N);
    int64_t gpus = 0;
    for (int i = 0; i < N; i++) {
        char name[16];
        snprintf(name, sizeof(name), "n%d", i);
        assert_string_equal(t.nodes[i].name, name);
        assert_int_equal(t.nodes[i].cpu_milli, i * 10);
        assert_int_equal(t.nodes[i].ngpu, i % 9);
        gpus += i % 9;
    }
    assert_int_equal(t.gpus, gpus);

    o = (size_t)snprintf(text, sizeof(text), POD_HEADER);
    for (int i = 0; i < N; i++)
        o += (size_t)snprintf(text + o, sizeof(text) - o, "p%d,%d,1,1,%d,,LS,,%d,,\n", i, i,
                              1 + i % 1000, i);
    assert_int_equal(read_pods(&t, text, &err), 0);
    assert_int_equal(t.npods, N);
    for (int i = 0; i < N; i++) {
        assert_int_equal(t.pods[i].cpu_milli, i);
        assert_int_equal(t.pods[i].gpu_milli, 1 + i % 1000);
        assert_int_equal(t.pods[i].creation, i);
    }
    /* Appending to a non-empty list copies the earlier pods. */
    assert_int_equal(read_pods(&t, text, &err), 0);
    assert_int_equal(t.npods, 2 * N);
    assert_int_equal(t.pods[N + 7].cpu_milli, 7);
    assert_int_equal(t.pods[7].cpu_milli, 7);
    fx_trace_free(&t);
}

static void test_pods_bad(void **state)
{
    (void)state;
    pods_fail("name,cpu_milli,memory_mib,num_gpu\np,1,1,0\n", "pods.csv",
              "missing column 'gpu_milli'", NULL);
    pods_fail("name,memory_mib,num_gpu,gpu_milli\np,1,0,0\n", "missing column 'cpu_milli'", NULL);
    pods_fail(POD_HEADER "p0,1000,1024,0,500,,LS,Running,0,10,0\n", "pods.csv:2:", "column 5",
              "'gpu_milli'", "'500'", "num_gpu 0", NULL);
    pods_fail(POD_HEADER "p0,1000,1024,2,0,,LS,Running,0,10,0\n", "pods.csv:2:", "'gpu_milli'",
              "'0'", "num_gpu > 0 needs gpu_milli", NULL);
    pods_fail(POD_HEADER "p0,1000,1024,1,1001,,LS,Running,0,10,0\n", "pods.csv:2:",
              "'gpu_milli'", "'1001'", "out of range [0, 1000]", NULL);
    pods_fail(POD_HEADER "p0,1000,1024,17,1000,,LS,Running,0,10,0\n", "pods.csv:2:",
              "'num_gpu'", "'17'", "out of range [0, 16]", NULL);
    pods_fail(POD_HEADER "p0,1000,1024,-1,1000,,LS,Running,0,10,0\n", "'num_gpu'", "'-1'",
              "out of range", NULL);
    pods_fail(POD_HEADER "p0,1000,1024,1,1000,,LS,Running,0,10,0\n"
                         "p1,1000,1024,1,1000,,Gold,Running,0,10,0\n",
              "pods.csv:3:", "column 7", "'qos'", "'Gold'", "unknown qos", NULL);
    pods_fail(POD_HEADER "p0,1000,1024,1,1000,,ls,Running,0,10,0\n", "'qos'", "'ls'", NULL);
    pods_fail(POD_HEADER "p0,1000,1024,1,1000,,LS,Running,100,99,100\n", "pods.csv:2:",
              "column 10", "'deletion_time'", "'99'", "deletion_time before creation_time",
              NULL);
    pods_fail(POD_HEADER "p0,1000,1024,1,1000,,LS,Running,100,200,50\n", "pods.csv:2:",
              "'scheduled_time'", "'50'", "scheduled_time before creation_time", NULL);
    pods_fail(POD_HEADER "p0,1000,1024,1,1000,,LS,Running,1e3,,\n", "pods.csv:2:",
              "'creation_time'", "'1e3'", "expected an integer", NULL);
    pods_fail(POD_HEADER "p0,1000,1024,1,1000,,LS,Running,-5,,\n", "'creation_time'", "'-5'",
              "out of range", NULL);
    pods_fail(POD_HEADER "p0,4k,1024,1,1000,,LS,Running,0,,\n", "pods.csv:2:", "'cpu_milli'",
              "'4k'", "expected an integer", NULL);
    pods_fail(POD_HEADER "p0,1000,,1,1000,,LS,Running,0,,\n", "'memory_mib'", "empty", NULL);
    pods_fail(POD_HEADER "p0,1000,1024,1,1000,,LS,Running,0\n",
              "pods.csv:2: 9 fields, the header has 11", NULL);
    pods_fail(POD_HEADER "p0,1000,1024,1,1000,,LS,Running,0,,\n\n", "pods.csv:3: empty line",
              NULL);

    char text[512], spec[200];
    memset(spec, 's', 128);
    spec[128] = '\0';
    snprintf(text, sizeof(text), POD_HEADER "p0,1,1,1,1,%s,LS,,,,\n", spec);
    pods_fail(text, "'gpu_spec'", "too long", NULL);
}

static void test_open_errors(void **state)
{
    (void)state;
    struct fx_trace t = {0};
    struct flexpu_error err = {0};
    assert_int_equal(fx_trace_read_nodes(&t, "/nonexistent/nodes.csv", NULL, &err), FLEXPU_EIO);
    contains(err.msg, "/nonexistent/nodes.csv");
    assert_int_equal(fx_trace_read_pods(&t, "/nonexistent/pods.csv", NULL, &err), FLEXPU_EIO);
    contains(err.msg, "/nonexistent/pods.csv");
    FILE *f = tmpfile();
    assert_non_null(f);
    assert_int_equal(fx_trace_read_pods(&t, "empty.csv", f, &err), FLEXPU_EPARSE);
    contains(err.msg, "empty.csv");
    assert_int_equal(t.npods, 0);
    assert_int_equal(t.nnodes, 0);
    fx_trace_free(&t);
}

static void test_real_trace(void **state)
{
    (void)state;
    const char *nodes = FLEXPU_TRACE_DIR "/openb_node_list_gpu_node.csv";
    const char *pods = FLEXPU_TRACE_DIR "/openb_pod_list_default.csv";
    if (access(nodes, R_OK) != 0 || access(pods, R_OK) != 0) {
        print_message("no trace at %s, skipping\n", FLEXPU_TRACE_DIR);
        skip();
    }
    struct fx_trace t = {0};
    struct flexpu_error err = {0};
    int rc = fx_trace_read_nodes(&t, nodes, NULL, &err);
    if (rc)
        print_error("%s\n", err.msg);
    assert_int_equal(rc, 0);
    assert_int_equal(t.nnodes, 1213);
    assert_int_equal(t.gpus, 6212);
    assert_string_equal(t.nodes[0].name, "openb-node-0000");
    assert_int_equal(t.nodes[0].ngpu, 2);
    assert_string_equal(t.nodes[0].model, "P100");

    rc = fx_trace_read_pods(&t, pods, NULL, &err);
    if (rc)
        print_error("%s\n", err.msg);
    assert_int_equal(rc, 0);
    assert_int_equal(t.npods, 8152);
    assert_string_equal(t.pods[0].name, "openb-pod-0000");
    assert_int_equal(t.pods[0].cpu_milli, 12000);
    assert_int_equal(t.pods[0].mem_mib, 16384);
    assert_int_equal(t.pods[0].num_gpu, 1);
    assert_int_equal(t.pods[0].gpu_milli, 1000);
    assert_int_equal(t.pods[0].qos, FLEXPU_QOS_LS);
    assert_int_equal(t.pods[0].deletion, 12537496);
    int64_t sum = 0;
    for (int i = 0; i < t.nnodes; i++)
        sum += t.nodes[i].ngpu;
    assert_int_equal(sum, t.gpus);
    for (int i = 0; i < t.npods; i++) {
        const struct fx_trace_pod *p = &t.pods[i];
        assert_true((p->num_gpu == 0) == (p->gpu_milli == 0));
        assert_true(p->gpu_milli >= 0 && p->gpu_milli <= 1000);
    }
    fx_trace_free(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nodes_good),
        cmocka_unit_test(test_nodes_columns_by_name),
        cmocka_unit_test(test_nodes_bad),
        cmocka_unit_test(test_pods_good),
        cmocka_unit_test(test_pods_minimal_columns),
        cmocka_unit_test(test_many_records),
        cmocka_unit_test(test_pods_bad),
        cmocka_unit_test(test_open_errors),
        cmocka_unit_test(test_real_trace),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
