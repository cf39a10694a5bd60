/* SPDX-License-Identifier: Apache-2.0 */
/* One worker of flexpu-remoted: serves one client connection with the
 * driver API, in this process (docs/REMOTE.md). The process is the tenant's:
 * libflexpu-cuda.so, preloaded with the slice's configuration, charges and
 * arbitrates every driver call it makes. */
#ifndef FX_REMOTE_SERVER_H
#define FX_REMOTE_SERVER_H

#include <stddef.h>

/* --max-module-mib's default: what a framework's kernels loaded by one
 * process take (its fat binaries of every architecture, sent whole at a
 * kernel's first launch), with room. */
#define FX_SRV_MODULE_BYTES ((size_t)1024 << 20)

struct fx_srv_opts {
    const unsigned char *token; /* NULL: no token is asked for */
    size_t token_len;
    int hello_timeout_ms;    /* the TLS handshake and HELLO, from the connection's start */
    int frame_timeout_ms;    /* a frame either way, from its first byte to its last */
    int progress_ms;         /* PROGRESS frames while a request is being served */
    /* Bytes of fat binaries one connection may hold loaded at once (the
     * driver keeps a loaded module's code in the worker's host memory);
     * 0: FX_SRV_MODULE_BYTES. A load beyond is cudaErrorMemoryAllocation. */
    size_t max_module_bytes;
    /* The worker's socket to its listener, or -1 (every client served):
     * with the HELLO's token checked, the worker writes 'A' and is served
     * only if the listener answers 'Y' (one of --max-clients slots);
     * otherwise its client is refused as busy. */
    int ctl_fd;
};

/* Serves the connection `fd` until the client leaves, breaks the protocol or
 * stops reading, then frees everything the client held (allocations,
 * streams, modules, contexts) and closes `fd`. Returns 0 when the client
 * left cleanly, -1 otherwise (the reason is logged). */
int fx_srv_serve(int fd, const struct fx_srv_opts *opts);

#endif
