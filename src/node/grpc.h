/* SPDX-License-Identifier: Apache-2.0 */
/* gRPC over a Unix socket, as much of it as the kubelet's device plugin and
 * PodResources APIs need: unary calls both ways and one server-streaming
 * method. HTTP/2 is nghttp2's; messages are protobuf-c's; this file only
 * frames messages (1 byte compressed flag + 4 bytes big-endian length) and
 * carries the status in the trailers (grpc-status, grpc-message).
 *
 * Server threading: one thread accepts; each connection has its own thread
 * that alone touches its nghttp2 session; every unary call runs on a thread
 * of its own, so a slow handler (one that asks the kubelet or waits for the
 * API server) never holds up the other calls of the connection — the
 * kubelet multiplexes all its calls on one connection. */
#ifndef FX_NODE_GRPC_H
#define FX_NODE_GRPC_H

#include <stddef.h>
#include <stdint.h>

#include "flexpu/error.h"

/* gRPC status codes used here. */
enum {
    FX_GRPC_OK = 0,
    FX_GRPC_UNKNOWN = 2,
    FX_GRPC_INVALID_ARGUMENT = 3,
    FX_GRPC_DEADLINE_EXCEEDED = 4,
    FX_GRPC_NOT_FOUND = 5,
    FX_GRPC_FAILED_PRECONDITION = 9,
    FX_GRPC_UNIMPLEMENTED = 12,
    FX_GRPC_INTERNAL = 13,
    FX_GRPC_UNAVAILABLE = 14,
};

/* A reply: a message (malloc'd bytes, NULL/0 for an empty message) or a
 * status with its message. */
struct fx_grpc_reply {
    int status;
    char message[512];
    uint8_t *data;
    size_t len;
};

/* Unary handler: req/len is the request message (without framing). Fills
 * the reply. Runs on its own thread. */
typedef void (*fx_grpc_unary_fn)(void *ctx, const uint8_t *req, size_t len,
                                 struct fx_grpc_reply *reply);

/* Server-streaming handler: called when a stream opens; returns the first
 * message (malloc'd) or NULL with a status in reply. Later messages come from
 * fx_grpc_server_publish. */
typedef void (*fx_grpc_stream_fn)(void *ctx, struct fx_grpc_reply *reply);

struct fx_grpc_method {
    const char *path; /* "/package.Service/Method" */
    fx_grpc_unary_fn unary;
    fx_grpc_stream_fn stream;
};

struct fx_grpc_server;

/* Listens on the Unix socket `path` (a stale file there is replaced) and
 * serves `methods` (NULL-terminated by path; borrowed, must outlive the
 * server) in background threads. */
struct fx_grpc_server *fx_grpc_server_start(const char *path, const struct fx_grpc_method *methods,
                                            void *ctx, struct flexpu_error *err);

/* Sends msg to every open stream of `path`, on every connection. */
void fx_grpc_server_publish(struct fx_grpc_server *s, const char *path, const uint8_t *msg,
                            size_t len);

/* Stops accepting, closes every connection with GOAWAY (open streams end;
 * the kubelet dials again after it re-registers), waits for the threads and
 * removes the socket file. */
void fx_grpc_server_stop(struct fx_grpc_server *s);

/* One unary call to the server at Unix socket `sock`. On return 0 the reply
 * holds the status; the response message is in reply->data when status is
 * OK. Returns an error (transport, protocol, timeout) naming the socket. */
int fx_grpc_call(const char *sock, const char *path, const uint8_t *req, size_t len,
                 int timeout_ms, struct fx_grpc_reply *reply, struct flexpu_error *err);

/* Percent-encoding of grpc-message (exposed for tests). out must hold 3 *
 * strlen(in) + 1 bytes. */
void fx_grpc_msg_encode(const char *in, char *out);
void fx_grpc_msg_decode(const char *in, size_t len, char *out, size_t out_len);

#endif
