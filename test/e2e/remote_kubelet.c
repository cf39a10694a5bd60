/* SPDX-License-Identifier: Apache-2.0 */
/* The kubelet's part for remote_e2e.sh (there is no kubelet on a kwok
 * node): serves the device plugin Registration socket and the PodResources
 * API (listing pod NS/NAME's container c with device ID of flexpu.io/gpu),
 * then calls the node agent's device plugin as the kubelet does before a
 * container starts: GetDevicePluginOptions, GetPreferredAllocation,
 * Allocate, PreStartContainer. Prints what the container gets, one per
 * line ("env KEY=VALUE", "mount CONTAINER_PATH HOST_PATH ro|rw", "device
 * PATH"), and "prestart ok" or the refusal on stderr (exit 1).
 *
 *   remote_kubelet DP_DIR PODRES_SOCKET NS NAME DEVICE_ID[,DEVICE_ID...]
 *
 * (a remote pod of N GPUs holds N devices, docs/REMOTE.md). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "deviceplugin/v1beta1/api.pb-c.h"
#include "node/grpc.h"
#include "podresources/v1/api.pb-c.h"

#define MAX_IDS 16
static const char *pod_ns, *pod_name;
static char *dev_ids[MAX_IDS];
static size_t n_ids;

static void packed(struct fx_grpc_reply *r, const ProtobufCMessage *m)
{
    r->len = protobuf_c_message_get_packed_size(m);
    r->data = malloc(r->len ? r->len : 1);
    protobuf_c_message_pack(m, r->data);
    r->status = FX_GRPC_OK;
}

static void do_register(void *ctx, const uint8_t *req, size_t len, struct fx_grpc_reply *r)
{
    (void)ctx;
    (void)req;
    (void)len;
    V1beta1__Empty e = V1BETA1__EMPTY__INIT;
    packed(r, &e.base);
}

static void podres_list(void *ctx, const uint8_t *req, size_t len, struct fx_grpc_reply *r)
{
    (void)ctx;
    (void)req;
    (void)len;
    V1__ContainerDevices cd = V1__CONTAINER_DEVICES__INIT;
    cd.resource_name = "flexpu.io/gpu";
    cd.n_device_ids = n_ids;
    cd.device_ids = dev_ids;
    V1__ContainerDevices *cdp = &cd;
    V1__ContainerResources c = V1__CONTAINER_RESOURCES__INIT;
    c.name = "c";
    c.n_devices = 1;
    c.devices = &cdp;
    V1__ContainerResources *cp = &c;
    V1__PodResources pr = V1__POD_RESOURCES__INIT;
    pr.name = (char *)pod_name;
    pr.namespace_ = (char *)pod_ns;
    pr.n_containers = 1;
    pr.containers = &cp;
    V1__PodResources *prp = &pr;
    V1__ListPodResourcesResponse res = V1__LIST_POD_RESOURCES_RESPONSE__INIT;
    res.n_pod_resources = 1;
    res.pod_resources = &prp;
    packed(r, &res.base);
}

static int call(const char *sock, const char *method, const ProtobufCMessage *m,
                struct fx_grpc_reply *r)
{
    size_t n = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = malloc(n ? n : 1);
    protobuf_c_message_pack(m, buf);
    struct flexpu_error err = {0};
    int rc = fx_grpc_call(sock, method, buf, n, 20000, r, &err);
    free(buf);
    if (rc) {
        fprintf(stderr, "remote_kubelet: %s: %s\n", method, err.msg);
        return -1;
    }
    if (r->status != FX_GRPC_OK) {
        fprintf(stderr, "remote_kubelet: %s refused: status %d: %s\n", method, r->status,
                r->message);
        free(r->data);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 6) {
        fprintf(stderr, "usage: remote_kubelet DP_DIR PODRES_SOCKET NS NAME DEVICE_ID[,...]\n");
        return 2;
    }
    pod_ns = argv[3];
    pod_name = argv[4];
    for (char *save = NULL, *t = strtok_r(argv[5], ",", &save); t && n_ids < MAX_IDS;
         t = strtok_r(NULL, ",", &save))
        dev_ids[n_ids++] = t;
    if (n_ids == 0) {
        fprintf(stderr, "remote_kubelet: no device id\n");
        return 2;
    }
    char kubelet[600], plugin[600];
    snprintf(kubelet, sizeof(kubelet), "%s/kubelet.sock", argv[1]);
    snprintf(plugin, sizeof(plugin), "%s/flexpu-gpu.sock", argv[1]);
    static const struct fx_grpc_method reg[] = {
        {"/v1beta1.Registration/Register", do_register, NULL}, {NULL, NULL, NULL}};
    static const struct fx_grpc_method pres[] = {
        {"/v1.PodResourcesLister/List", podres_list, NULL}, {NULL, NULL, NULL}};
    struct flexpu_error err = {0};
    struct fx_grpc_server *rs = fx_grpc_server_start(kubelet, reg, NULL, &err);
    struct fx_grpc_server *ps = rs ? fx_grpc_server_start(argv[2], pres, NULL, &err) : NULL;
    if (!ps) {
        fprintf(stderr, "remote_kubelet: %s\n", err.msg);
        return 1;
    }
    /* The agent registers again when it sees a new kubelet.sock: wait for
     * its socket to answer. */
    struct fx_grpc_reply r;
    V1beta1__Empty e = V1BETA1__EMPTY__INIT;
    int rc = -1;
    for (int i = 0; i < 100 && rc; i++) {
        rc = access(plugin, F_OK) == 0 ? call(plugin, "/v1beta1.DevicePlugin/GetDevicePluginOptions",
                                              &e.base, &r)
                                       : -1;
        if (rc)
            usleep(100000);
    }
    if (rc)
        return 1;
    V1beta1__DevicePluginOptions *o = v1beta1__device_plugin_options__unpack(NULL, r.len, r.data);
    free(r.data);
    if (!o || !o->pre_start_required) {
        fprintf(stderr, "remote_kubelet: the plugin does not ask PreStartContainer\n");
        return 1;
    }
    v1beta1__device_plugin_options__free_unpacked(o, NULL);

    /* Its devices and, for one, another the kubelet could have given. */
    char *avail[MAX_IDS + 1];
    size_t na = 0;
    for (; na < n_ids; na++)
        avail[na] = dev_ids[na];
    if (n_ids == 1 && strcmp(dev_ids[0], "remote-1") != 0)
        avail[na++] = "remote-1";
    V1beta1__ContainerPreferredAllocationRequest pq =
        V1BETA1__CONTAINER_PREFERRED_ALLOCATION_REQUEST__INIT;
    pq.n_available_deviceids = na;
    pq.available_deviceids = avail;
    pq.allocation_size = (int32_t)n_ids;
    V1beta1__ContainerPreferredAllocationRequest *pqp = &pq;
    V1beta1__PreferredAllocationRequest preq = V1BETA1__PREFERRED_ALLOCATION_REQUEST__INIT;
    preq.n_container_requests = 1;
    preq.container_requests = &pqp;
    if (call(plugin, "/v1beta1.DevicePlugin/GetPreferredAllocation", &preq.base, &r))
        return 1;
    free(r.data);

    V1beta1__ContainerAllocateRequest cq = V1BETA1__CONTAINER_ALLOCATE_REQUEST__INIT;
    cq.n_devices_ids = n_ids;
    cq.devices_ids = dev_ids;
    V1beta1__ContainerAllocateRequest *cqp = &cq;
    V1beta1__AllocateRequest aq = V1BETA1__ALLOCATE_REQUEST__INIT;
    aq.n_container_requests = 1;
    aq.container_requests = &cqp;
    if (call(plugin, "/v1beta1.DevicePlugin/Allocate", &aq.base, &r))
        return 1;
    V1beta1__AllocateResponse *ar = v1beta1__allocate_response__unpack(NULL, r.len, r.data);
    free(r.data);
    if (!ar || ar->n_container_responses != 1) {
        fprintf(stderr, "remote_kubelet: Allocate: malformed answer\n");
        return 1;
    }
    V1beta1__ContainerAllocateResponse *c = ar->container_responses[0];
    for (size_t i = 0; i < c->n_envs; i++)
        printf("env %s=%s\n", c->envs[i]->key, c->envs[i]->value);
    for (size_t i = 0; i < c->n_mounts; i++)
        printf("mount %s %s %s\n", c->mounts[i]->container_path, c->mounts[i]->host_path,
               c->mounts[i]->read_only ? "ro" : "rw");
    for (size_t i = 0; i < c->n_devices; i++)
        printf("device %s\n", c->devices[i]->host_path);
    v1beta1__allocate_response__free_unpacked(ar, NULL);

    V1beta1__PreStartContainerRequest sq = V1BETA1__PRE_START_CONTAINER_REQUEST__INIT;
    sq.n_devices_ids = n_ids;
    sq.devices_ids = dev_ids;
    if (call(plugin, "/v1beta1.DevicePlugin/PreStartContainer", &sq.base, &r))
        return 1;
    free(r.data);
    printf("prestart ok\n");
    fflush(stdout);
    fx_grpc_server_stop(ps);
    fx_grpc_server_stop(rs);
    return 0;
}
