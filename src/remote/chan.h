/* SPDX-License-Identifier: Apache-2.0 */
/* A connection of the remote protocol: plain TCP, or TLS 1.3 keyed by the
 * slice's token (an external pre-shared key: each end proves it holds the
 * token, nobody on the path reads or changes the frames, and no certificate
 * is needed). Every wait is bounded by an absolute deadline on
 * fx_mono_ms()'s clock (-1: none), as in net.h. */
#ifndef FX_REMOTE_CHAN_H
#define FX_REMOTE_CHAN_H

#include <stddef.h>
#include <stdint.h>

#include "flexpu/error.h"

struct fx_chan {
    int fd;
    void *ssl; /* SSL *, or NULL for plain TCP */
    void *ctx; /* SSL_CTX * */
};

/* Takes `fd` as a plain channel. */
void fx_chan_plain(struct fx_chan *ch, int fd);

/* Takes `fd` and runs the TLS handshake as client or server with the key
 * derived from `token` (SHA-256), all of it by `deadline_ms`. Returns 0,
 * or -1 with err set (the caller still closes the channel). */
int fx_chan_tls(struct fx_chan *ch, int fd, int server, const unsigned char *token,
                size_t token_len, int64_t deadline_ms, struct flexpu_error *err);

/* As fx_net_write_all / fx_net_read_all. A write never raises SIGPIPE. */
int fx_chan_write_all(struct fx_chan *ch, const void *buf, size_t n, int64_t deadline_ms);
int fx_chan_read_all(struct fx_chan *ch, void *buf, size_t n, int64_t deadline_ms);

/* Without waiting: reads or writes at least one byte and at most `n`,
 * setting *done. Returns 0, -EAGAIN when nothing can move until the socket
 * is ready for *wait_for (POLLIN or POLLOUT: TLS may need either for
 * both), -ECONNRESET when the peer closed (read), or a negative errno. */
int fx_chan_read_some(struct fx_chan *ch, void *buf, size_t n, size_t *done, short *wait_for);
int fx_chan_write_some(struct fx_chan *ch, const void *buf, size_t n, size_t *done,
                       short *wait_for);

/* Closes the socket and frees the TLS state; safe on a closed channel. */
void fx_chan_close(struct fx_chan *ch);

#endif
