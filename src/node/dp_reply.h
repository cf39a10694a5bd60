/* SPDX-License-Identifier: Apache-2.0 */
/* What both device plugins of flexpu.io/gpu (plugin.c for the node's GPUs,
 * remote_plugin.c for remote slices) answer the same way: a refused call, a
 * packed answer, GetDevicePluginOptions, and the kubelet's PodResources
 * List. One copy, so the two plugins cannot drift apart on the options they
 * announce or on how a refusal is logged. */
#ifndef FX_NODE_DP_REPLY_H
#define FX_NODE_DP_REPLY_H

#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#include "deviceplugin/v1beta1/api.pb-c.h"
#include "node/grpc.h"
#include "podresources/v1/api.pb-c.h"

/* Refuses the call: status and message set, logged as a warning of
 * component comp (each plugin's own). */
void fx_dp_fail(const char *comp, struct fx_grpc_reply *r, int status, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Answers m (packed, malloc'd into r->data), or refuses with INTERNAL when
 * out of memory. */
void fx_dp_packed(const char *comp, struct fx_grpc_reply *r, const ProtobufCMessage *m);

/* Sets resp's n environment variables keys[i]=values[i] (not copied: they
 * must outlive the packing), built in env and envp (n entries each). */
void fx_dp_envs(V1beta1__ContainerAllocateResponse *resp,
                V1beta1__ContainerAllocateResponse__EnvsEntry *env,
                V1beta1__ContainerAllocateResponse__EnvsEntry **envp, const char *const *keys,
                const char *const *values, size_t n);

/* GetDevicePluginOptions (a unary fx_grpc_method; ctx unused): both plugins
 * want PreStartContainer and answer GetPreferredAllocation. */
void fx_dp_get_options(void *ctx, const uint8_t *req, size_t len, struct fx_grpc_reply *r);

/* The kubelet's PodResources List at socket podresources; NULL with `why`
 * set when it does not answer. Free with
 * v1__list_pod_resources_response__free_unpacked. */
V1__ListPodResourcesResponse *fx_dp_podres_list(const char *podresources, char *why,
                                                size_t why_len);

#endif
