/* SPDX-License-Identifier: Apache-2.0 */
#include "node/dp_reply.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "deviceplugin/v1beta1/api.pb-c.h"
#include "flexpu/log.h"

void fx_dp_fail(const char *comp, struct fx_grpc_reply *r, int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->message, sizeof(r->message), fmt, ap);
    va_end(ap);
    r->status = status;
    FX_WARN(comp, "call refused", "status=%d message=\"%s\"", status, r->message);
}

void fx_dp_packed(const char *comp, struct fx_grpc_reply *r, const ProtobufCMessage *m)
{
    size_t n = protobuf_c_message_get_packed_size(m);
    r->data = malloc(n ? n : 1);
    if (!r->data) {
        fx_dp_fail(comp, r, FX_GRPC_INTERNAL, "out of memory");
        return;
    }
    r->len = protobuf_c_message_pack(m, r->data);
    r->status = FX_GRPC_OK;
}

void fx_dp_envs(V1beta1__ContainerAllocateResponse *resp,
                V1beta1__ContainerAllocateResponse__EnvsEntry *env,
                V1beta1__ContainerAllocateResponse__EnvsEntry **envp, const char *const *keys,
                const char *const *values, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        v1beta1__container_allocate_response__envs_entry__init(&env[i]);
        env[i].key = (char *)keys[i];
        env[i].value = (char *)values[i];
        envp[i] = &env[i];
    }
    resp->n_envs = n;
    resp->envs = envp;
}

void fx_dp_get_options(void *ctx, const uint8_t *req, size_t len, struct fx_grpc_reply *r)
{
    (void)ctx;
    (void)req;
    (void)len;
    V1beta1__DevicePluginOptions o = V1BETA1__DEVICE_PLUGIN_OPTIONS__INIT;
    o.pre_start_required = 1;
    o.get_preferred_allocation_available = 1;
    /* Both plugins log this (never refused but for memory) as "plugin". */
    fx_dp_packed("plugin", r, &o.base);
}

V1__ListPodResourcesResponse *fx_dp_podres_list(const char *podresources, char *why,
                                                size_t why_len)
{
    V1__ListPodResourcesRequest q = V1__LIST_POD_RESOURCES_REQUEST__INIT;
    uint8_t buf[8];
    size_t qlen = v1__list_pod_resources_request__pack(&q, buf);
    struct fx_grpc_reply rep;
    struct flexpu_error err = {0};
    if (fx_grpc_call(podresources, "/v1.PodResourcesLister/List", buf, qlen, 5000, &rep,
                     &err) != 0) {
        snprintf(why, why_len, "PodResources: %s", err.msg);
        return NULL;
    }
    if (rep.status != FX_GRPC_OK) {
        snprintf(why, why_len, "PodResources List: status %d: %s", rep.status, rep.message);
        free(rep.data);
        return NULL;
    }
    V1__ListPodResourcesResponse *res = v1__list_pod_resources_response__unpack(NULL, rep.len,
                                                                               rep.data);
    free(rep.data);
    if (!res)
        snprintf(why, why_len, "PodResources List: malformed answer");
    return res;
}
