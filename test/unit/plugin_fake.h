/* SPDX-License-Identifier: Apache-2.0 */
/* The device plugin's unit tests (node_test.c, mig_test.c, mps_test.c): a
 * fake kubelet PodResources service answering the pods in held[], the
 * plugin's gRPC calls as the kubelet makes them (each must get an answer),
 * and a plugin served on sockets of a test directory. One copy, so that the
 * three tests fake the kubelet alike. Include after cmocka.h. */
#ifndef FX_TEST_PLUGIN_FAKE_H
#define FX_TEST_PLUGIN_FAKE_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "deviceplugin/v1beta1/api.pb-c.h"
#include "kube/kube.h"
#include "node/grpc.h"
#include "node/plugin.h"
#include "podresources/v1/api.pb-c.h"

/* The pods the fake kubelet has given devices to (nheld of them), each
 * with one container, "main". */
static struct {
    const char *ns, *name;
    char *ids[4];
    size_t n;
} held[8];
static int nheld;

/* One more pod in held[]: ns/name holding the n device IDs ids (kept, not
 * copied). */
static inline void hold(const char *ns, const char *name, char **ids, size_t n)
{
    assert_true(nheld < 8 && n <= 4);
    held[nheld].ns = ns;
    held[nheld].name = name;
    for (size_t i = 0; i < n; i++)
        held[nheld].ids[i] = ids[i];
    held[nheld].n = n;
    nheld++;
}

/* The kubelet's List (pkg/kubelet/cm/container_manager.go,
 * containerDevicesFromResourceDeviceInstances) gives each device of a
 * container an entry of its own (one per NUMA node of the device, with that
 * node as its topology, which proto/ leaves out): a 2-GPU container has 2
 * entries of 1 ID each. */
static void podres_list(void *ctx, const uint8_t *req, size_t len, struct fx_grpc_reply *r)
{
    (void)ctx;
    (void)req;
    (void)len;
    V1__PodResources pr[8], *prp[8];
    V1__ContainerResources cr[8], *crp[8];
    V1__ContainerDevices cd[8][4], *cdp[8][4];
    for (int i = 0; i < nheld; i++) {
        v1__pod_resources__init(&pr[i]);
        v1__container_resources__init(&cr[i]);
        for (size_t d = 0; d < held[i].n; d++) {
            v1__container_devices__init(&cd[i][d]);
            cd[i][d].resource_name = FX_DP_RESOURCE;
            cd[i][d].n_device_ids = 1;
            cd[i][d].device_ids = &held[i].ids[d];
            cdp[i][d] = &cd[i][d];
        }
        cr[i].name = "main";
        cr[i].n_devices = held[i].n;
        cr[i].devices = cdp[i];
        crp[i] = &cr[i];
        pr[i].name = (char *)held[i].name;
        pr[i].namespace_ = (char *)held[i].ns;
        pr[i].n_containers = 1;
        pr[i].containers = &crp[i];
        prp[i] = &pr[i];
    }
    V1__ListPodResourcesResponse resp = V1__LIST_POD_RESOURCES_RESPONSE__INIT;
    resp.n_pod_resources = (size_t)nheld;
    resp.pod_resources = prp;
    r->len = v1__list_pod_resources_response__get_packed_size(&resp);
    r->data = malloc(r->len + 1);
    v1__list_pod_resources_response__pack(&resp, r->data);
}

static const struct fx_grpc_method podres_methods[] = {
    {"/v1.PodResourcesLister/List", podres_list, NULL},
    {NULL, NULL, NULL},
};

/* Calls method on the server at sock with message m; the call itself must
 * succeed (the answer's status is the caller's to check; it frees
 * r.data). 15 s: a bound for a loaded machine under ASan, not a timing. */
static inline struct fx_grpc_reply call(const char *sock, const char *method,
                                        const ProtobufCMessage *m)
{
    uint8_t buf[4096];
    size_t len = protobuf_c_message_pack(m, buf);
    struct fx_grpc_reply r;
    struct flexpu_error err = {0};
    assert_int_equal(fx_grpc_call(sock, method, buf, len, 15000, &r, &err), 0);
    return r;
}

/* One Allocate call for one container with these device IDs. */
static inline struct fx_grpc_reply allocate(const char *sock, char **ids, size_t n)
{
    V1beta1__ContainerAllocateRequest car = V1BETA1__CONTAINER_ALLOCATE_REQUEST__INIT;
    car.n_devices_ids = n;
    car.devices_ids = ids;
    V1beta1__ContainerAllocateRequest *carp = &car;
    V1beta1__AllocateRequest aq = V1BETA1__ALLOCATE_REQUEST__INIT;
    aq.n_container_requests = 1;
    aq.container_requests = &carp;
    return call(sock, "/v1beta1.DevicePlugin/Allocate", &aq.base);
}

/* allocate(), which must answer OK: its answer unpacked (the caller frees
 * it with v1beta1__allocate_response__free_unpacked). */
static inline V1beta1__AllocateResponse *allocate_ok(const char *sock, char **ids, size_t n)
{
    struct fx_grpc_reply r = allocate(sock, ids, n);
    assert_int_equal(r.status, FX_GRPC_OK);
    V1beta1__AllocateResponse *ar = v1beta1__allocate_response__unpack(NULL, r.len, r.data);
    assert_non_null(ar);
    assert_int_equal(ar->n_container_responses, 1);
    free(r.data);
    return ar;
}

/* The mount of c at container_path, NULL if it has none. */
static inline const V1beta1__Mount *mount_at(const V1beta1__ContainerAllocateResponse *c,
                                             const char *container_path)
{
    for (size_t i = 0; i < c->n_mounts; i++)
        if (strcmp(c->mounts[i]->container_path, container_path) == 0)
            return c->mounts[i];
    return NULL;
}

/* One PreStartContainer call for these device IDs. */
static inline struct fx_grpc_reply prestart_call(const char *sock, char **ids, size_t n)
{
    V1beta1__PreStartContainerRequest ps = V1BETA1__PRE_START_CONTAINER_REQUEST__INIT;
    ps.n_devices_ids = n;
    ps.devices_ids = ids;
    return call(sock, "/v1beta1.DevicePlugin/PreStartContainer", &ps.base);
}

/* A plugin served as the kubelet sees it. */
struct plugin_run {
    char podres[300], dp[300]; /* the sockets: the fake PodResources, the plugin */
    struct fx_grpc_server *prs, *dps;
    struct fx_plugin *p;
};

/* The fake PodResources on dir/podres.sock, the plugin of pc (its
 * podresources set to that socket) on gpus served on dir/dp.sock, and pod
 * (kept by the caller) known to it from a first full list. */
static inline void plugin_up_with(struct plugin_run *run, const char *dir,
                                  struct fx_plugin_config *pc, const struct fx_node_gpu *gpus,
                                  int ngpu, json_t *pod)
{
    snprintf(run->podres, sizeof(run->podres), "%s/podres.sock", dir);
    snprintf(run->dp, sizeof(run->dp), "%s/dp.sock", dir);
    struct flexpu_error err = {0};
    run->prs = fx_grpc_server_start(run->podres, podres_methods, NULL, &err);
    assert_non_null(run->prs);
    pc->podresources = run->podres;
    run->p = fx_plugin_new(pc, gpus, ngpu, &err);
    assert_non_null(run->p);
    run->dps = fx_grpc_server_start(run->dp, fx_plugin_methods, run->p, &err);
    assert_non_null(run->dps);
    fx_plugin_pod_event(run->p, KUBE_SYNC_BEGIN, NULL);
    fx_plugin_pod_event(run->p, KUBE_ADDED, pod);
    fx_plugin_pod_event(run->p, KUBE_SYNC_END, NULL);
}

/* Stops what plugin_up_with started; the kubelet forgets every pod. */
static inline void plugin_down(struct plugin_run *run)
{
    fx_grpc_server_stop(run->dps);
    fx_plugin_free(run->p);
    fx_grpc_server_stop(run->prs);
    nheld = 0;
}

#endif
