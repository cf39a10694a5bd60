/* SPDX-License-Identifier: Apache-2.0 */
/* Kubernetes resource quantities ("4Gi", "1500m", "2e3") and memory sizes as
 * people write them in environment variables ("4g", "512m", "8Gi"). */
#ifndef FLEXPU_QUANTITY_H
#define FLEXPU_QUANTITY_H

#include <stddef.h>
#include <stdint.h>

#include "flexpu/error.h"

/* Parses a Kubernetes quantity (k8s.io/apimachinery resource.Quantity syntax:
 * optional sign, decimal number, then a binary suffix Ki Mi Gi Ti Pi Ei, a
 * decimal suffix n u m k M G T P E, or an exponent e<int>/E<int>) and stores
 * its value in thousandths, rounded up as Kubernetes does ("1500m" -> 1500,
 * "2" -> 2000, "0.1m" -> 1). `field` names the input in error messages.
 * Returns 0, or FLEXPU_EPARSE / FLEXPU_ERANGE with *out_milli unchanged. */
int flexpu_quantity_parse_milli(const char *s, const char *field, int64_t *out_milli,
                                struct flexpu_error *err);

/* Same syntax; stores the value in whole units rounded up ("1500m" -> 2). */
int flexpu_quantity_parse(const char *s, const char *field, int64_t *out,
                          struct flexpu_error *err);

/* Parses a memory size in bytes. Accepts every Kubernetes quantity, and also
 * the single lower-case letters k, m, g, t (optionally followed by "b"/"B")
 * as binary units the way Docker and the JVM read them: "4g" is 4 GiB and
 * "512m" is 512 MiB, never 0.512 bytes. Fractions round up to a byte.
 * Negative sizes are rejected. */
int flexpu_size_parse(const char *s, const char *field, int64_t *out_bytes,
                      struct flexpu_error *err);

/* The same, but a size that is not a whole number of bytes ("0.5",
 * "1.0000001Ki", "1e-7") is an error (FLEXPU_EPARSE) instead of being
 * rounded up: for quotas, where such a value is a mistake, not a request. */
int flexpu_size_parse_whole(const char *s, const char *field, int64_t *out_bytes,
                            struct flexpu_error *err);

#endif
