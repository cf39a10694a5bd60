/* SPDX-License-Identifier: Apache-2.0 */
/* What the watch loop needs from the HTTP layer, beside kube_request. */
#ifndef FX_KUBE_HTTP_H
#define FX_KUBE_HTTP_H

#include "kube/kube.h"

/* Receives body bytes as they arrive; a non-zero return aborts the transfer. */
typedef int (*kube_sink)(const char *buf, size_t len, void *ctx);

/* A GET whose body streams to `sink` (a watch). Aborts within about a second
 * of *stop becoming non-zero. *status gets the HTTP status (0: none). A
 * non-2xx body is collected instead and returned in the error message. */
int kube_stream_get(struct kube_client *c, const char *path, kube_sink sink, void *ctx,
                    atomic_int *stop, long *status, struct flexpu_error *err);

/* As kube_request, but when the server answers a non-2xx status with a JSON
 * body (a Status object), *out receives it too (the caller decrefs): for
 * callers that tell failures apart by the Status's details, such as the
 * PodDisruptionBudget cause of an Eviction's 429. */
int kube_request_status(struct kube_client *c, const char *method, const char *path,
                        json_t *body, const char *ctype, long *status, json_t **out,
                        struct flexpu_error *err);

/* Builds the error of a failed call from the status and the body (a
 * Kubernetes Status object when the server sent one). */
int kube_status_error(long status, const char *method, const char *path, const char *body,
                      size_t len, struct flexpu_error *err);

/* Appends len bytes to a growing buffer (*p, *plen, *cap), keeping a NUL
 * after them; capacity starts at `first` and doubles. -1 when out of memory. */
int kube_buf_append(char **p, size_t *plen, size_t *cap, size_t first, const char *data,
                    size_t len);

#endif
