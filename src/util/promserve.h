/* SPDX-License-Identifier: Apache-2.0 */
/* Prometheus exposition over HTTP for the daemons (flexpu-node,
 * flexpu-scheduler): GET /metrics renders the caller's text at each scrape,
 * GET /healthz answers 200 "ok" or 503 with the caller's reason, served by
 * libmicrohttpd with a thread per connection, so a slow scrape never holds
 * up a liveness probe. Also the two helpers of the text format. */
#ifndef FX_UTIL_PROMSERVE_H
#define FX_UTIL_PROMSERVE_H

#include <stddef.h>
#include <stdio.h>

#include "flexpu/error.h"

/* The exposition text, malloc'd and NUL-terminated; NULL: out of memory. */
typedef char *(*fx_prom_render_fn)(void *ctx);
/* 0 when healthy; otherwise writes why (one line) and returns nonzero.
 * NULL: always healthy. */
typedef int (*fx_prom_health_fn)(void *ctx, char *why, size_t len);

struct fx_promserve;

/* Serves on addr:port (an IPv4 address: "127.0.0.1", "0.0.0.0"). */
struct fx_promserve *fx_promserve_start(const char *addr, int port, fx_prom_render_fn render,
                                        fx_prom_health_fn health, void *ctx,
                                        struct flexpu_error *err);
void fx_promserve_stop(struct fx_promserve *s);

/* A --metrics-port value: a whole number 0-65535 (0: off). -1 otherwise. */
int fx_prom_parse_port(const char *s, int *out);

/* "# HELP name text" and "# TYPE name type". */
void fx_prom_help(FILE *f, const char *name, const char *type, const char *text);
/* s as a label value: backslash, quote and newline escaped. */
void fx_prom_label(FILE *f, const char *s);

#endif
