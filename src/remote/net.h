/* SPDX-License-Identifier: Apache-2.0 */
/* TCP for the remote protocol: every wait has a bound. Used by the client
 * library (inside applications: no SIGPIPE, no output) and the server. */
#ifndef FX_REMOTE_NET_H
#define FX_REMOTE_NET_H

#include <stddef.h>
#include <stdint.h>

#include "flexpu/error.h"

/* Splits "host:port" or "[v6 host]:port". Returns 0, or FLEXPU_EINVAL
 * naming the field `field` and the value. */
int fx_net_split(const char *addr, char *host, size_t host_len, char *port, size_t port_len,
                 const char *field, struct flexpu_error *err);

/* Connects to `addr` within `timeout_ms`. Returns the socket (blocking,
 * close-on-exec, TCP_NODELAY, keepalive on), or -1 with err set. */
int fx_net_connect(const char *addr, int timeout_ms, struct flexpu_error *err);

/* Listens on `addr` (port 0: any free port, returned in *port). Returns the
 * socket or -1 with err set. */
int fx_net_listen(const char *addr, int *port, struct flexpu_error *err);

/* TCP_NODELAY, and keepalive probes that find a vanished peer in about
 * 25 s (10 s idle, then 3 probes 5 s apart). */
void fx_net_tune(int fd);

/* The deadline `timeout_ms` from now on fx_mono_ms()'s clock; -1 (none)
 * for a negative timeout. */
int64_t fx_net_deadline(int timeout_ms);

/* Waits until `fd` is ready for `events` or `deadline_ms` (fx_mono_ms(),
 * -1: none) has passed. Returns 0, -ETIMEDOUT or a negative errno. */
int fx_net_wait(int fd, short events, int64_t deadline_ms);

/* Writes or reads exactly `n` bytes, all of them by `deadline_ms` (an
 * absolute bound: a peer that trickles bytes does not move it; -1 waits
 * for ever). Returns 0, or a negative errno: -ETIMEDOUT, -ECONNRESET (the
 * peer closed: read only), or the socket's error. */
int fx_net_write_all(int fd, const void *buf, size_t n, int64_t deadline_ms);
int fx_net_read_all(int fd, void *buf, size_t n, int64_t deadline_ms);

/* Whether the socket `fd` is bound to a loopback address (127.0.0.0/8,
 * ::1, or an IPv4-mapped 127.0.0.0/8). */
int fx_net_is_loopback(int fd);

#endif
