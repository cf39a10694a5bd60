/* SPDX-License-Identifier: Apache-2.0 */
/* A connection of the remote protocol: plain TCP, or TLS 1.3 keyed by the
 * slice's token (an external pre-shared key: each end proves it holds the
 * token, nobody on the path reads or changes the frames, and no certificate
 * is needed). Every wait is bounded as in net.h. */
#ifndef FX_REMOTE_CHAN_H
#define FX_REMOTE_CHAN_H

#include <stddef.h>

#include "flexpu/error.h"

struct fx_chan {
    int fd;
    void *ssl; /* SSL *, or NULL for plain TCP */
    void *ctx; /* SSL_CTX * */
};

/* Takes `fd` as a plain channel. */
void fx_chan_plain(struct fx_chan *ch, int fd);

/* Takes `fd` and runs the TLS handshake as client or server with the key
 * derived from `token` (SHA-256), within `timeout_ms` per wait. Returns 0,
 * or -1 with err set (the caller still closes the channel). */
int fx_chan_tls(struct fx_chan *ch, int fd, int server, const unsigned char *token,
                size_t token_len, int timeout_ms, struct flexpu_error *err);

/* As fx_net_write_all / fx_net_read_all. A write never raises SIGPIPE. */
int fx_chan_write_all(struct fx_chan *ch, const void *buf, size_t n, int timeout_ms);
int fx_chan_read_all(struct fx_chan *ch, void *buf, size_t n, int timeout_ms);

/* Closes the socket and frees the TLS state; safe on a closed channel. */
void fx_chan_close(struct fx_chan *ch);

#endif
