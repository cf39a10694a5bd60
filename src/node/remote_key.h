/* SPDX-License-Identifier: Apache-2.0 */
/* The token of a remote slice (docs/REMOTE.md, "Kubernetes"), derived, not
 * stored: both node agents hold one cluster key (a Secret the Helm chart
 * generates once and mounts into the node DaemonSet), and each computes
 * the slice's token as HMAC-SHA256(key, pod UID | GPU node | GPU UUID).
 * The GPU node's flexpu-remoted and the pod's client then share a secret
 * no API object holds and no other slice's token reveals. SECURITY.md says
 * what a node that leaks the key allows. */
#ifndef FX_NODE_REMOTE_KEY_H
#define FX_NODE_REMOTE_KEY_H

#include <stddef.h>

#include "flexpu/error.h"

#define FX_REMOTE_KEY_MIN 32   /* bytes: the HMAC's own strength */
#define FX_REMOTE_KEY_MAX 4096
#define FX_REMOTE_TOKEN_HEX 64 /* characters of a token (SHA-256 in hex) */

struct fx_remote_key {
    unsigned char bytes[FX_REMOTE_KEY_MAX];
    size_t len;
};

/* Reads the cluster key from `path` (its bytes, a final newline dropped).
 * Refused, naming the path: a file that is missing or not a regular file,
 * one its group or others may read or write (the Secret's defaultMode must
 * be 0400 or 0600), or a key shorter than FX_REMOTE_KEY_MIN bytes. */
int fx_remote_key_load(const char *path, struct fx_remote_key *key, struct flexpu_error *err);

/* The token of the slice of pod `uid` on GPU `gpu_uuid` of node `gpu_node`:
 * HMAC-SHA256(key, "uid|gpu_node|gpu_uuid") as 64 lowercase hex characters
 * and a NUL in hex. FLEXPU_EINVAL naming the field when one is empty or
 * holds '|' (which would let two slices share a token). */
int fx_remote_token(const struct fx_remote_key *key, const char *uid, const char *gpu_node,
                    const char *gpu_uuid, char hex[FX_REMOTE_TOKEN_HEX + 1],
                    struct flexpu_error *err);

/* Writes the token to `path` (with a newline, replaced atomically, `mode`):
 * 0600 for the GPU node's server, which refuses one others can read. */
int fx_remote_token_write(const char *path, const char *hex, unsigned mode,
                          struct flexpu_error *err);

#endif
