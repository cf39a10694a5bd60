/* SPDX-License-Identifier: Apache-2.0 */
/* A topology key: a node label key whose value names a place that nodes
 * share (a rack, a zone). One check for every place flexpu reads one: the
 * scheduler's --remote-topology-keys (src/scheduler/remote_topology.c) and
 * a pod's flexpu.io/remote-topology-key (contract.c). Tested through both:
 * remote_topology_test and remote_kube_test. */
#ifndef FX_KUBE_TOPOLOGY_KEY_H
#define FX_KUBE_TOPOLOGY_KEY_H

#include <stddef.h>

#define FX_LABEL_KEY_MAX 317 /* a 253-byte prefix, '/', a 63-byte name */

/* Why key[0..n) is no topology key, or NULL when it is one: a label key
 * Kubernetes accepts (an optional DNS-subdomain prefix of at most 253 bytes
 * and '/', then 1-63 letters, digits, '-', '_' or '.' starting and ending
 * with a letter or digit), and not kubernetes.io/hostname (no two nodes
 * share it). The text is static, for an error naming the field. */
const char *fx_topology_key_problem(const char *key, size_t n);

#endif
