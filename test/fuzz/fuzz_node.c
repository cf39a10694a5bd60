/* SPDX-License-Identifier: Apache-2.0 */
/* What the kubelet sends flexpu-node's device plugin (protobuf messages for
 * GetPreferredAllocation, Allocate and PreStartContainer) and the pods of
 * its node (JSON), in any order: none may crash, leak or read out of
 * bounds. The first byte picks the input; the plugin lives across inputs so
 * sequences reach its tables (waiting pods, allocations, offers). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node/plugin.h"

static struct fx_plugin *plugin;

static void setup(void)
{
    static char root[64] = "/tmp/flexpu-fuzz-node-XXXXXX";
    if (!mkdtemp(root))
        abort();
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!plugin)
        setup();
    if (size < 1)
        return 0;
    uint8_t which = data[0] % 6;
    data++;
    size--;
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
