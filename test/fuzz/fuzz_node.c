/* SPDX-License-Identifier: Apache-2.0 */
/* What the kubelet sends flexpu-node's device plugin (protobuf messages for
 * GetPreferredAllocation, Allocate and PreStartContainer) and the pods of
 * its node (JSON), in any order: none may crash, leak or read out of
 * bounds. The first byte picks the input; the plugin lives across inputs so
 * sequences reach its tables (waiting pods, allocations, offers).
 *
 * Input 6 builds a well-formed GetPreferredAllocation or Allocate request
 * from the bytes (sizes, and IDs that are mostly the node's own): raw
 * protobuf rarely spells several valid device IDs with the right nested
 * lengths, so counts that disagree with each other (more must-include IDs
 * than the size) were found only after many minutes, if at all. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "deviceplugin/v1beta1/api.pb-c.h"
#include "flexpu/log.h"
#include "fuzz_input.h"
#include "fuzz_scratch.h"
#include "node/plugin.h"

static struct fx_plugin *plugin;

/* Every line is formatted (debug included, so the log calls' arguments are
 * fuzzed too) and dropped: writing them to stderr made each input cost a
 * write, slowed the run several times over and filled the terminal. */
static void drop_line(const char *line, void *ctx)
{
    (void)line;
    (void)ctx;
}

static void setup(void)
{
    flexpu_log_set_level(FLEXPU_LOG_DEBUG);
    flexpu_log_set_sink(drop_line, NULL);
    static char root[64] = "/tmp/flexpu-fuzz-node-XXXXXX";
    if (!mkdtemp(root))
        abort();
    fuzz_scratch_remove_at_exit(root);
    struct fx_node_gpu gpus[4];
    memset(gpus, 0, sizeof(gpus));
    for (int i = 0; i < 4; i++) {
        /* short UUIDs, so inputs can name devices "G0::3" */
        snprintf(gpus[i].uuid, sizeof(gpus[i].uuid), "G%d", i);
        gpus[i].index = gpus[i].minor = i;
        gpus[i].numa = i / 2;
        gpus[i].healthy = true;
    }
    struct fx_plugin_config c = {.node_name = "n1", .root = root,
                                 .podresources = "/nonexistent/podresources.sock", .wait_ms = 1};
    struct flexpu_error err;
    plugin = fx_plugin_new(&c, gpus, 4, &err);
    if (!plugin)
        abort();
}

#define IDS_MAX 12

/* Up to IDS_MAX device IDs: GPUs 0-3 are the node's, 4 is not; slots 0-15
 * are valid, 16 is not; 0xff gives a string that is no ID at all. */
static size_t make_ids(struct fuzz_in *in, char ids[][16], char **ptrs)
{
    size_t n = fuzz_byte(in) % (IDS_MAX + 1);
    for (size_t i = 0; i < n; i++) {
        uint8_t b = fuzz_byte(in);
        if (b == 0xff)
            snprintf(ids[i], 16, "G0:x");
        else
            snprintf(ids[i], 16, "G%d::%d", (b >> 5) % 5, b % 17);
        ptrs[i] = ids[i];
    }
    return n;
}

/* A GetPreferredAllocation (one or two containers) or an Allocate request
 * built from the bytes, packed and sent as the kubelet would. */
static void structured(const uint8_t *data, size_t size)
{
    static char ids[2][2][IDS_MAX][16];
    char *ptrs[2][2][IDS_MAX];
    struct fuzz_in in = {data, size};
    uint8_t mode = fuzz_byte(&in);
    size_t nc = 1 + mode / 2 % 2;
    uint8_t buf[4096];
    size_t len;
    const struct fx_grpc_method *m;
    if (mode % 2 == 0) {
        V1beta1__ContainerPreferredAllocationRequest cq[2], *cqp[2];
        for (size_t c = 0; c < nc; c++) {
            v1beta1__container_preferred_allocation_request__init(&cq[c]);
            cq[c].allocation_size = (int8_t)fuzz_byte(&in) % 7; /* -6..6 */
            cq[c].n_available_deviceids = make_ids(&in, ids[c][0], ptrs[c][0]);
            cq[c].available_deviceids = ptrs[c][0];
            cq[c].n_must_include_deviceids = make_ids(&in, ids[c][1], ptrs[c][1]);
            cq[c].must_include_deviceids = ptrs[c][1];
            cqp[c] = &cq[c];
        }
        V1beta1__PreferredAllocationRequest q = V1BETA1__PREFERRED_ALLOCATION_REQUEST__INIT;
        q.n_container_requests = nc;
        q.container_requests = cqp;
        len = v1beta1__preferred_allocation_request__pack(&q, buf);
        m = &fx_plugin_methods[2];
    } else {
        V1beta1__ContainerAllocateRequest cq[2], *cqp[2];
        for (size_t c = 0; c < nc; c++) {
            v1beta1__container_allocate_request__init(&cq[c]);
            cq[c].n_devices_ids = make_ids(&in, ids[c][0], ptrs[c][0]);
            cq[c].devices_ids = ptrs[c][0];
            cqp[c] = &cq[c];
        }
        V1beta1__AllocateRequest q = V1BETA1__ALLOCATE_REQUEST__INIT;
        q.n_container_requests = nc;
        q.container_requests = cqp;
        len = v1beta1__allocate_request__pack(&q, buf);
        m = &fx_plugin_methods[3];
    }
    struct fx_grpc_reply r = {0};
    m->unary(plugin, buf, len, &r);
    free(r.data);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!plugin)
        setup();
    if (size < 1)
        return 0;
    uint8_t which = data[0] % 7;
    data++;
    size--;
    if (which == 6) {
        structured(data, size);
        return 0;
    }
    if (which >= 3) {
        /* a pod event: 3 added, 4 modified, 5 deleted */
        json_error_t je;
        json_t *pod = json_loadb((const char *)data, size, 0, &je);
        if (pod) {
            fx_plugin_pod_event(plugin, which == 3 ? KUBE_ADDED : which == 4 ? KUBE_MODIFIED
                                                                             : KUBE_DELETED,
                                pod);
            json_decref(pod);
        }
        return 0;
    }
    /* fx_plugin_methods: 0 options, 1 list-and-watch, 2 preferred, 3 allocate, 4 prestart */
    const struct fx_grpc_method *m = &fx_plugin_methods[2 + which];
    struct fx_grpc_reply r = {0};
    m->unary(plugin, data, size, &r);
    free(r.data);
    return 0;
}
