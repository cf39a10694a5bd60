/* SPDX-License-Identifier: Apache-2.0 */
/* Plain or TLS channels (chan.h), with OpenSSL. The TLS 1.3 key is the
 * SHA-256 of the slice's token, given to OpenSSL through its PSK callbacks
 * (used for TLS 1.3 with TLS_AES_128_GCM_SHA256). */
#include "remote/chan.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "remote/net.h"

#define PSK_IDENTITY "flexpu-remote-v1"
#define KEY_LEN      32

/* The key, kept with the context (SSL_CTX app data). */
struct key {
    unsigned char k[KEY_LEN];
};

void fx_chan_plain(struct fx_chan *ch, int fd)
{
    ch->fd = fd;
    ch->ssl = NULL;
    ch->ctx = NULL;
}

static const struct key *key_of(SSL *ssl)
{
    return SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
}

static unsigned int client_psk(SSL *ssl, const char *hint, char *identity,
                               unsigned int max_identity_len, unsigned char *psk,
                               unsigned int max_psk_len)
{
    (void)hint;
    const struct key *k = key_of(ssl);
    if (!k || max_psk_len < KEY_LEN || max_identity_len < sizeof PSK_IDENTITY)
        return 0;
    memcpy(identity, PSK_IDENTITY, sizeof PSK_IDENTITY);
    memcpy(psk, k->k, KEY_LEN);
    return KEY_LEN;
}

static unsigned int server_psk(SSL *ssl, const char *identity, unsigned char *psk,
                               unsigned int max_psk_len)
{
    const struct key *k = key_of(ssl);
    if (!k || !identity || strcmp(identity, PSK_IDENTITY) != 0 || max_psk_len < KEY_LEN)
        return 0;
    memcpy(psk, k->k, KEY_LEN);
    return KEY_LEN;
}

/* After an SSL call returned `r`: 0 with *ev the socket event to wait for
 * before retrying, or a negative errno. */
static int ssl_want(struct fx_chan *ch, int r, short *ev)
{
    switch (SSL_get_error(ch->ssl, r)) {
    case SSL_ERROR_WANT_READ: *ev = POLLIN; return 0;
    case SSL_ERROR_WANT_WRITE: *ev = POLLOUT; return 0;
    case SSL_ERROR_ZERO_RETURN: return -ECONNRESET;
    case SSL_ERROR_SYSCALL: return errno && errno != EAGAIN ? -errno : -ECONNRESET;
    default: return -EPROTO;
    }
}

/* ssl_want, then the wait for the socket by `deadline_ms`. */
static int ssl_wait(struct fx_chan *ch, int r, int64_t deadline_ms)
{
    short ev = 0;
    int rc = ssl_want(ch, r, &ev);
    return rc != 0 ? rc : fx_net_wait(ch->fd, ev, deadline_ms);
}

int fx_chan_tls(struct fx_chan *ch, int fd, int server, const unsigned char *token,
                size_t token_len, int64_t deadline_ms, struct flexpu_error *err)
{
    fx_chan_plain(ch, fd);
    struct key *k = OPENSSL_zalloc(sizeof *k);
    unsigned int klen = 0;
    SSL_CTX *ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
    ch->ctx = ctx;
    if (!k || !ctx || !EVP_Digest(token, token_len, k->k, &klen, EVP_sha256(), NULL) ||
        klen != KEY_LEN || !SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION)) {
        OPENSSL_free(k);
        return flexpu_error_set(err, FLEXPU_ENOMEM, "TLS setup failed"), -1;
    }
    SSL_CTX_set_app_data(ctx, k);
    /* A peer that exits without close_notify has left, not attacked: the
     * frames are whole or the reader says which is cut. */
    SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
    if (server)
        SSL_CTX_set_psk_server_callback(ctx, server_psk);
    else
        SSL_CTX_set_psk_client_callback(ctx, client_psk);
    SSL *ssl = SSL_new(ctx);
    ch->ssl = ssl;
    if (!ssl || !SSL_set_fd(ssl, fd) ||
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) != 0)
        return flexpu_error_set(err, FLEXPU_ENOMEM, "TLS setup failed"), -1;
    SSL_set_mode(ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    for (;;) {
        int r = server ? SSL_accept(ssl) : SSL_connect(ssl);
        if (r == 1)
            return 0;
        int rc = ssl_wait(ch, r, deadline_ms);
        if (rc != 0) {
            unsigned long e = ERR_get_error();
            char why[160];
            ERR_error_string_n(e, why, sizeof why);
            ERR_clear_error();
            return flexpu_error_set(err, FLEXPU_EIO, "TLS handshake: %s",
                                    e ? why : strerror(-rc)),
                   -1;
        }
    }
}

/* SSL_write may write to a closed socket: SIGPIPE is blocked on this thread
 * meanwhile and a pending one taken back, so the process never sees it. */
static int ssl_write_some(struct fx_chan *ch, const void *p, size_t n, size_t *done, short *ev)
{
    sigset_t pipe_set, old;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
    *done = 0;
    int r = SSL_write_ex(ch->ssl, p, n, done);
    int rc = r == 1 ? 0 : ssl_want(ch, r, ev);
    if (r != 1 && rc == 0)
        rc = -EAGAIN;
    struct timespec zero = {0, 0};
    while (sigtimedwait(&pipe_set, NULL, &zero) > 0)
        ;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    ERR_clear_error();
    return rc;
}

int fx_chan_write_some(struct fx_chan *ch, const void *buf, size_t n, size_t *done,
                       short *wait_for)
{
    *wait_for = POLLOUT;
    if (ch->ssl)
        return ssl_write_some(ch, buf, n, done, wait_for);
    for (;;) {
        ssize_t w = send(ch->fd, buf, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w >= 0) {
            *done = (size_t)w;
            return w > 0 ? 0 : -EAGAIN;
        }
        if (errno != EINTR)
            return errno == EAGAIN || errno == EWOULDBLOCK ? -EAGAIN : -errno;
    }
}

int fx_chan_read_some(struct fx_chan *ch, void *buf, size_t n, size_t *done, short *wait_for)
{
    *wait_for = POLLIN;
    *done = 0;
    if (ch->ssl) {
        int r = SSL_read_ex(ch->ssl, buf, n, done);
        int rc = r == 1 ? 0 : ssl_want(ch, r, wait_for);
        ERR_clear_error();
        return r != 1 && rc == 0 ? -EAGAIN : rc;
    }
    for (;;) {
        ssize_t got = recv(ch->fd, buf, n, MSG_DONTWAIT);
        if (got > 0) {
            *done = (size_t)got;
            return 0;
        }
        if (got == 0)
            return -ECONNRESET;
        if (errno != EINTR)
            return errno == EAGAIN || errno == EWOULDBLOCK ? -EAGAIN : -errno;
    }
}

/* All of `n` bytes, waiting for the socket until deadline_ms: written from
 * `out` when it is not NULL, else read into `in`. */
static int chan_all(struct fx_chan *ch, char *in, const char *out, size_t n, int64_t deadline_ms)
{
    size_t off = 0;
    while (off < n) {
        size_t done = 0;
        short ev = 0;
        int rc = out ? fx_chan_write_some(ch, out + off, n - off, &done, &ev)
                     : fx_chan_read_some(ch, in + off, n - off, &done, &ev);
        if (rc == -EAGAIN)
            rc = fx_net_wait(ch->fd, ev, deadline_ms);
        if (rc != 0)
            return rc;
        off += done;
    }
    return 0;
}

int fx_chan_write_all(struct fx_chan *ch, const void *buf, size_t n, int64_t deadline_ms)
{
    return chan_all(ch, NULL, buf, n, deadline_ms);
}

int fx_chan_read_all(struct fx_chan *ch, void *buf, size_t n, int64_t deadline_ms)
{
    return chan_all(ch, buf, NULL, n, deadline_ms);
}

void fx_chan_close(struct fx_chan *ch)
{
    if (ch->ssl)
        SSL_free(ch->ssl);
    if (ch->ctx) {
        OPENSSL_free(SSL_CTX_get_app_data(ch->ctx));
        SSL_CTX_free(ch->ctx);
    }
    if (ch->fd >= 0)
        close(ch->fd);
    fx_chan_plain(ch, -1);
}
