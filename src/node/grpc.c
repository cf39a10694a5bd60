/* SPDX-License-Identifier: Apache-2.0 */
/* gRPC framing and status over nghttp2 (see grpc.h for the threading). */
#include "node/grpc.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <nghttp2/nghttp2.h>

#include "flexpu/log.h"
#include "util/clock.h"

/* Bigger requests are refused: the kubelet's largest is a preferred-allocation
 * request listing every device, a few hundred IDs. */
#define MAX_MESSAGE (4u << 20)
#define MAX_PUBLISHED 4

/* ---- shared helpers ---- */

void fx_grpc_msg_encode(const char *in, char *out)
{
    static const char hex[] = "0123456789ABCDEF";
    for (; *in; in++) {
        unsigned char c = (unsigned char)*in;
        if (c < 0x20 || c > 0x7e || c == '%') {
            *out++ = '%';
            *out++ = hex[c >> 4];
            *out++ = hex[c & 15];
        } else {
            *out++ = (char)c;
        }
    }
    *out = '\0';
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

void fx_grpc_msg_decode(const char *in, size_t len, char *out, size_t out_len)
{
    size_t o = 0;
    for (size_t i = 0; i < len && o + 1 < out_len; i++) {
        int h, l;
        if (in[i] == '%' && i + 2 < len &&
            (h = hexval(in[i + 1])) >= 0 && (l = hexval(in[i + 2])) >= 0) {
            out[o++] = (char)(h << 4 | l);
            i += 2;
        } else {
            out[o++] = in[i];
        }
    }
    if (out_len)
        out[o] = '\0';
}

static void frame_header(uint8_t *p, size_t len)
{
    p[0] = 0;
    p[1] = (uint8_t)(len >> 24);
    p[2] = (uint8_t)(len >> 16);
    p[3] = (uint8_t)(len >> 8);
    p[4] = (uint8_t)len;
}

/* Appends framed `msg` to a growing buffer. */
static int frame_append(uint8_t **buf, size_t *len, size_t *cap, const uint8_t *msg, size_t n)
{
    size_t need = *len + 5 + n;
    if (need > *cap) {
        size_t nc = *cap ? *cap : 256;
        while (nc < need)
            nc *= 2;
        uint8_t *nb = realloc(*buf, nc);
        if (!nb)
            return -1;
        *buf = nb;
        *cap = nc;
    }
    frame_header(*buf + *len, n);
    if (n)
        memcpy(*buf + *len + 5, msg, n);
    *len = need;
    return 0;
}

/* Checks that body holds exactly one uncompressed message; points at it. */
static int frame_parse(const uint8_t *body, size_t len, const uint8_t **msg, size_t *n,
                       char *why, size_t why_len)
{
    if (len < 5) {
        snprintf(why, why_len, "message frame of %zu bytes, want at least 5", len);
        return -1;
    }
    if (body[0] != 0) {
        snprintf(why, why_len, "compressed message (flag %u): compression is not supported",
                 body[0]);
        return -1;
    }
    size_t m = (size_t)body[1] << 24 | (size_t)body[2] << 16 | (size_t)body[3] << 8 | body[4];
    if (m != len - 5) {
        snprintf(why, why_len, "message frame says %zu bytes, %zu came", m, len - 5);
        return -1;
    }
    *msg = body + 5;
    *n = m;
    return 0;
}

static int append_bytes(uint8_t **buf, size_t *len, size_t *cap, const uint8_t *p, size_t n)
{
    if (*len + n > MAX_MESSAGE + 5)
        return -1;
    if (*len + n > *cap) {
        size_t nc = *cap ? *cap : 512;
        while (nc < *len + n)
            nc *= 2;
        uint8_t *nb = realloc(*buf, nc);
        if (!nb)
            return -1;
        *buf = nb;
        *cap = nc;
    }
    memcpy(*buf + *len, p, n);
    *len += n;
    return 0;
}

#define NV(n, v)                                                                             \
    {(uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, strlen(v), NGHTTP2_NV_FLAG_NO_COPY_NAME}

static ssize_t sock_send(nghttp2_session *h2, const uint8_t *data, size_t len, int flags,
                         void *user)
{
    (void)h2;
    (void)flags;
    int fd = *(int *)user; /* both connection kinds start with the fd */
    ssize_t n = send(fd, data, len, MSG_NOSIGNAL);
    if (n < 0)
        return errno == EAGAIN || errno == EWOULDBLOCK ? NGHTTP2_ERR_WOULDBLOCK
                                                       : NGHTTP2_ERR_CALLBACK_FAILURE;
    return n;
}

/* ---- server ---- */

struct pubslot {
    char path[128];
    uint8_t *msg;
    size_t len;
    uint64_t gen;
};

struct gconn;

struct gstream {
    int32_t id;
    char path[128];
    bool grpc_ctype;
    uint8_t *req;
    size_t req_len, req_cap;
    /* response */
    uint8_t *out;
    size_t out_len, out_off, out_cap;
    bool streaming, done, deferred;
    int status;
    char message[512];
    uint64_t gen; /* the published generation this stream has sent */
    struct gstream *next;
};

struct completion {
    int32_t id;
    struct fx_grpc_reply reply;
    struct completion *next;
};

struct gconn {
    int fd; /* first: sock_send reads it */
    int wake[2];
    nghttp2_session *h2;
    struct fx_grpc_server *srv;
    struct gstream *streams; /* loop thread only */
    pthread_mutex_t mu;      /* completions and refs */
    struct completion *done;
    int refs;
    bool finished;
    pthread_t thread;
    struct gconn *next;
};

struct fx_grpc_server {
    int lfd;
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    const struct fx_grpc_method *methods;
    void *ctx;
    int stop_pipe[2];
    pthread_t accept_thread;
    pthread_mutex_t mu; /* conns, pubs, workers */
    pthread_cond_t workers_cv;
    int workers;
    struct gconn *conns;
    struct pubslot pubs[MAX_PUBLISHED];
    volatile int stopping;
};

static void wake(struct gconn *c)
{
    char b = 1;
    ssize_t r = write(c->wake[1], &b, 1);
    (void)r; /* a full pipe already means "wake up" */
}

static void conn_unref(struct gconn *c)
{
    pthread_mutex_lock(&c->mu);
    int left = --c->refs;
    pthread_mutex_unlock(&c->mu);
    if (left)
        return;
    for (struct completion *d = c->done, *n; d; d = n) {
        n = d->next;
        free(d->reply.data);
        free(d);
    }
    close(c->wake[0]);
    close(c->wake[1]);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

static const struct fx_grpc_method *find_method(struct fx_grpc_server *s, const char *path)
{
    for (const struct fx_grpc_method *m = s->methods; m->path; m++)
        if (strcmp(m->path, path) == 0)
            return m;
    return NULL;
}

static struct gstream *stream_of(struct gconn *c, int32_t id)
{
    return nghttp2_session_get_stream_user_data(c->h2, id);
}

static ssize_t stream_read(nghttp2_session *h2, int32_t id, uint8_t *buf, size_t len,
                           uint32_t *flags, nghttp2_data_source *src, void *user)
{
    (void)user;
    struct gstream *st = src->ptr;
    size_t left = st->out_len - st->out_off;
    if (left) {
        size_t n = left < len ? left : len;
        memcpy(buf, st->out + st->out_off, n);
        st->out_off += n;
        if (st->out_off == st->out_len)
            st->out_off = st->out_len = 0;
        return (ssize_t)n;
    }
    if (!st->done) {
        st->deferred = true;
        return NGHTTP2_ERR_DEFERRED;
    }
    *flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
    char code[16], enc[3 * sizeof(st->message) + 1];
    snprintf(code, sizeof(code), "%d", st->status);
    fx_grpc_msg_encode(st->message, enc);
    nghttp2_nv tr[] = {NV("grpc-status", code), NV("grpc-message", enc)};
    nghttp2_submit_trailer(h2, id, tr, st->message[0] ? 2 : 1);
    return 0;
}

/* A status with no message: headers and trailers in one frame. */
static void reply_status_only(struct gconn *c, struct gstream *st, int status, const char *msg)
{
    char code[16], enc[3 * 512 + 1];
    snprintf(code, sizeof(code), "%d", status);
    char trimmed[512];
    snprintf(trimmed, sizeof(trimmed), "%s", msg ? msg : "");
    fx_grpc_msg_encode(trimmed, enc);
    nghttp2_nv h[] = {NV(":status", "200"), NV("content-type", "application/grpc"),
                      NV("grpc-status", code), NV("grpc-message", enc)};
    nghttp2_submit_response(c->h2, st->id, h, trimmed[0] ? 4 : 3, NULL);
    st->done = true;
}

/* Starts a response with data: headers now, DATA as st->out fills. */
static void reply_begin(struct gconn *c, struct gstream *st)
{
    nghttp2_nv h[] = {NV(":status", "200"), NV("content-type", "application/grpc")};
    nghttp2_data_provider prd = {.source.ptr = st, .read_callback = stream_read};
    nghttp2_submit_response(c->h2, st->id, h, 2, &prd);
}

static void stream_push(struct gconn *c, struct gstream *st, const uint8_t *msg, size_t len)
{
    if (frame_append(&st->out, &st->out_len, &st->out_cap, msg, len) != 0) {
        nghttp2_submit_rst_stream(c->h2, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_INTERNAL_ERROR);
        return;
    }
    if (st->deferred) {
        st->deferred = false;
        nghttp2_session_resume_data(c->h2, st->id);
    }
}

struct worker_arg {
    struct gconn *conn;
    const struct fx_grpc_method *m;
    int32_t id;
    uint8_t *req;
    size_t len;
};

static void *worker_main(void *p)
{
    struct worker_arg *w = p;
    struct fx_grpc_server *s = w->conn->srv;
    struct completion *d = calloc(1, sizeof(*d));
    if (d) {
        d->id = w->id;
        d->reply.status = FX_GRPC_OK;
        w->m->unary(s->ctx, w->req, w->len, &d->reply);
        pthread_mutex_lock(&w->conn->mu);
        d->next = w->conn->done;
        w->conn->done = d;
        pthread_mutex_unlock(&w->conn->mu);
        wake(w->conn);
    }
    free(w->req);
    conn_unref(w->conn);
    free(w);
    pthread_mutex_lock(&s->mu);
    if (--s->workers == 0)
        pthread_cond_broadcast(&s->workers_cv);
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

static struct pubslot *pub_find(struct fx_grpc_server *s, const char *path, bool create)
{
    for (int i = 0; i < MAX_PUBLISHED; i++)
        if (s->pubs[i].path[0] && strcmp(s->pubs[i].path, path) == 0)
            return &s->pubs[i];
    if (!create)
        return NULL;
    for (int i = 0; i < MAX_PUBLISHED; i++)
        if (!s->pubs[i].path[0]) {
            snprintf(s->pubs[i].path, sizeof(s->pubs[i].path), "%s", path);
            return &s->pubs[i];
        }
    return NULL;
}

static void dispatch(struct gconn *c, struct gstream *st)
{
    struct fx_grpc_server *s = c->srv;
    const struct fx_grpc_method *m = find_method(s, st->path);
    if (!m) {
        char msg[200];
        snprintf(msg, sizeof(msg), "unknown method %s", st->path);
        reply_status_only(c, st, FX_GRPC_UNIMPLEMENTED, msg);
        return;
    }
    if (!st->grpc_ctype) {
        reply_status_only(c, st, FX_GRPC_INVALID_ARGUMENT, "content-type is not application/grpc");
        return;
    }
    const uint8_t *msg;
    size_t n;
    char why[160];
    if (frame_parse(st->req, st->req_len, &msg, &n, why, sizeof(why)) != 0) {
        reply_status_only(c, st, FX_GRPC_INVALID_ARGUMENT, why);
        return;
    }
    if (m->stream) {
        pthread_mutex_lock(&s->mu);
        struct pubslot *p = pub_find(s, st->path, false);
        st->gen = p ? p->gen : 0;
        pthread_mutex_unlock(&s->mu);
        struct fx_grpc_reply r = {.status = FX_GRPC_OK};
        m->stream(s->ctx, &r);
        if (r.status != FX_GRPC_OK) {
            reply_status_only(c, st, r.status, r.message);
            free(r.data);
            return;
        }
        st->streaming = true;
        reply_begin(c, st);
        stream_push(c, st, r.data, r.len);
        free(r.data);
        return;
    }
    struct worker_arg *w = calloc(1, sizeof(*w));
    uint8_t *copy = n ? malloc(n) : NULL;
    if (!w || (n && !copy)) {
        free(w);
        free(copy);
        reply_status_only(c, st, FX_GRPC_INTERNAL, "out of memory");
        return;
    }
    if (n)
        memcpy(copy, msg, n);
    *w = (struct worker_arg){.conn = c, .m = m, .id = st->id, .req = copy, .len = n};
    pthread_mutex_lock(&c->mu);
    c->refs++;
    pthread_mutex_unlock(&c->mu);
    pthread_mutex_lock(&s->mu);
    s->workers++;
    pthread_mutex_unlock(&s->mu);
    pthread_t t;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&t, &attr, worker_main, w) != 0) {
        pthread_attr_destroy(&attr);
        free(copy);
        free(w);
        conn_unref(c);
        pthread_mutex_lock(&s->mu);
        s->workers--;
        pthread_mutex_unlock(&s->mu);
        reply_status_only(c, st, FX_GRPC_UNAVAILABLE, "cannot start a thread for the call");
        return;
    }
    pthread_attr_destroy(&attr);
}

/* Called on the loop thread when woken: unary replies and published
 * messages. */
static void deliver(struct gconn *c)
{
    pthread_mutex_lock(&c->mu);
    struct completion *d = c->done;
    c->done = NULL;
    pthread_mutex_unlock(&c->mu);
    while (d) {
        struct completion *next = d->next;
        struct gstream *st = stream_of(c, d->id);
        if (st) { /* NULL: the client gave up on the call */
            if (d->reply.status != FX_GRPC_OK) {
                reply_status_only(c, st, d->reply.status, d->reply.message);
            } else {
                st->status = FX_GRPC_OK;
                st->done = true;
                if (frame_append(&st->out, &st->out_len, &st->out_cap, d->reply.data,
                                 d->reply.len) != 0)
                    reply_status_only(c, st, FX_GRPC_INTERNAL, "out of memory");
                else
                    reply_begin(c, st);
            }
        }
        free(d->reply.data);
        free(d);
        d = next;
    }
    struct fx_grpc_server *s = c->srv;
    for (struct gstream *st = c->streams; st; st = st->next) {
        if (!st->streaming || st->done)
            continue;
        pthread_mutex_lock(&s->mu);
        struct pubslot *p = pub_find(s, st->path, false);
        if (p && p->gen != st->gen) {
            st->gen = p->gen;
            stream_push(c, st, p->msg, p->len);
        }
        pthread_mutex_unlock(&s->mu);
    }
}

static int on_begin_headers(nghttp2_session *h2, const nghttp2_frame *f, void *user)
{
    struct gconn *c = user;
    if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    struct gstream *st = calloc(1, sizeof(*st));
    if (!st)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    st->id = f->hd.stream_id;
    st->next = c->streams;
    c->streams = st;
    nghttp2_session_set_stream_user_data(h2, st->id, st);
    return 0;
}

static int on_header(nghttp2_session *h2, const nghttp2_frame *f, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *user)
{
    (void)flags;
    struct gconn *c = user;
    if (f->hd.type != NGHTTP2_HEADERS)
        return 0;
    struct gstream *st = stream_of(c, f->hd.stream_id);
    (void)h2;
    if (!st)
        return 0;
    if (namelen == 5 && memcmp(name, ":path", 5) == 0) {
        size_t n = valuelen < sizeof(st->path) - 1 ? valuelen : sizeof(st->path) - 1;
        memcpy(st->path, value, n);
        st->path[n] = '\0';
    } else if (namelen == 12 && memcmp(name, "content-type", 12) == 0) {
        st->grpc_ctype = valuelen >= 16 && memcmp(value, "application/grpc", 16) == 0;
    }
    return 0;
}

static int on_data(nghttp2_session *h2, uint8_t flags, int32_t id, const uint8_t *data,
                   size_t len, void *user)
{
    (void)flags;
    struct gconn *c = user;
    struct gstream *st = stream_of(c, id);
    if (!st)
        return 0;
    if (append_bytes(&st->req, &st->req_len, &st->req_cap, data, len) != 0)
        nghttp2_submit_rst_stream(h2, NGHTTP2_FLAG_NONE, id, NGHTTP2_REFUSED_STREAM);
    return 0;
}

static int on_frame(nghttp2_session *h2, const nghttp2_frame *f, void *user)
{
    (void)h2;
    struct gconn *c = user;
    if ((f->hd.type == NGHTTP2_DATA || f->hd.type == NGHTTP2_HEADERS) &&
        (f->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
        struct gstream *st = stream_of(c, f->hd.stream_id);
        if (st && !st->done && !st->streaming)
            dispatch(c, st);
    }
    return 0;
}

static int on_close(nghttp2_session *h2, int32_t id, uint32_t code, void *user)
{
    (void)h2;
    (void)code;
    struct gconn *c = user;
    for (struct gstream **pp = &c->streams; *pp; pp = &(*pp)->next) {
        if ((*pp)->id == id) {
            struct gstream *st = *pp;
            *pp = st->next;
            nghttp2_session_set_stream_user_data(c->h2, id, NULL);
            free(st->req);
            free(st->out);
            free(st);
            break;
        }
    }
    return 0;
}

static void *conn_main(void *p)
{
    struct gconn *c = p;
    struct fx_grpc_server *s = c->srv;
    nghttp2_session_callbacks *cb;
    nghttp2_session_callbacks_new(&cb);
    nghttp2_session_callbacks_set_send_callback(cb, sock_send);
    nghttp2_session_callbacks_set_on_begin_headers_callback(cb, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_close);
    int rc = nghttp2_session_server_new(&c->h2, cb, c);
    nghttp2_session_callbacks_del(cb);
    if (rc == 0) {
        nghttp2_settings_entry iv[] = {{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 256}};
        nghttp2_submit_settings(c->h2, NGHTTP2_FLAG_NONE, iv, 1);
        uint8_t buf[16384];
        while (!s->stopping) {
            if (nghttp2_session_send(c->h2) != 0)
                break;
            if (!nghttp2_session_want_read(c->h2) && !nghttp2_session_want_write(c->h2))
                break;
            struct pollfd pf[2] = {
                {.fd = c->fd,
                 .events = POLLIN | (nghttp2_session_want_write(c->h2) ? POLLOUT : 0)},
                {.fd = c->wake[0], .events = POLLIN}};
            if (poll(pf, 2, 1000) < 0 && errno != EINTR)
                break;
            if (pf[1].revents & POLLIN) {
                char drain[64];
                while (read(c->wake[0], drain, sizeof(drain)) > 0)
                    ;
                deliver(c);
            }
            if (pf[0].revents & (POLLIN | POLLHUP | POLLERR)) {
                ssize_t n = recv(c->fd, buf, sizeof(buf), 0);
                if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
                    break;
                if (n > 0 && nghttp2_session_mem_recv(c->h2, buf, (size_t)n) < 0)
                    break;
            }
        }
        if (s->stopping) {
            nghttp2_session_terminate_session(c->h2, NGHTTP2_NO_ERROR);
            nghttp2_session_send(c->h2);
        }
        /* Frees the remaining streams through on_close. */
        nghttp2_session_del(c->h2);
        c->h2 = NULL;
        while (c->streams) {
            struct gstream *st = c->streams;
            c->streams = st->next;
            free(st->req);
            free(st->out);
            free(st);
        }
    }
    close(c->fd);
    c->fd = -1;
    pthread_mutex_lock(&s->mu);
    c->finished = true;
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* Joins finished connection threads (accept thread, or stop). */
static void reap(struct fx_grpc_server *s, bool all)
{
    for (;;) {
        struct gconn *victim = NULL;
        pthread_mutex_lock(&s->mu);
        for (struct gconn **pp = &s->conns; *pp; pp = &(*pp)->next) {
            if ((*pp)->finished || all) {
                victim = *pp;
                *pp = victim->next;
                break;
            }
        }
        pthread_mutex_unlock(&s->mu);
        if (!victim)
            return;
        wake(victim);
        pthread_join(victim->thread, NULL);
        conn_unref(victim);
    }
}

static void *accept_main(void *p)
{
    struct fx_grpc_server *s = p;
    while (!s->stopping) {
        struct pollfd pf[2] = {{.fd = s->lfd, .events = POLLIN},
                               {.fd = s->stop_pipe[0], .events = POLLIN}};
        int n = poll(pf, 2, 1000);
        reap(s, false);
        if (n <= 0 || !(pf[0].revents & POLLIN))
            continue;
        int fd = accept4(s->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            continue;
        struct gconn *c = calloc(1, sizeof(*c));
        if (!c || pipe2(c->wake, O_NONBLOCK | O_CLOEXEC) != 0) {
            free(c);
            close(fd);
            continue;
        }
        c->fd = fd;
        c->srv = s;
        c->refs = 1;
        pthread_mutex_init(&c->mu, NULL);
        if (pthread_create(&c->thread, NULL, conn_main, c) != 0) {
            close(fd);
            c->fd = -1;
            conn_unref(c);
            continue;
        }
        pthread_mutex_lock(&s->mu);
        c->next = s->conns;
        s->conns = c;
        pthread_mutex_unlock(&s->mu);
    }
    return NULL;
}

struct fx_grpc_server *fx_grpc_server_start(const char *path, const struct fx_grpc_method *methods,
                                            void *ctx, struct flexpu_error *err)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(sa.sun_path)) {
        flexpu_error_set(err, FLEXPU_EINVAL, "socket path '%s' is longer than %zu bytes", path,
                         sizeof(sa.sun_path) - 1);
        return NULL;
    }
    struct fx_grpc_server *s = calloc(1, sizeof(*s));
    if (!s) {
        flexpu_error_set(err, FLEXPU_ENOMEM, "out of memory");
        return NULL;
    }
    snprintf(s->path, sizeof(s->path), "%s", path);
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    s->methods = methods;
    s->ctx = ctx;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->workers_cv, NULL);
    s->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s->lfd < 0 || pipe2(s->stop_pipe, O_CLOEXEC) != 0) {
        flexpu_error_set(err, FLEXPU_EIO, "socket: %s", strerror(errno));
        goto fail;
    }
    unlink(path);
    if (bind(s->lfd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(s->lfd, 64) != 0) {
        flexpu_error_set(err, FLEXPU_EIO, "cannot listen on '%s': %s", path, strerror(errno));
        goto fail;
    }
    if (pthread_create(&s->accept_thread, NULL, accept_main, s) != 0) {
        flexpu_error_set(err, FLEXPU_EIO, "cannot start the accept thread");
        unlink(path);
        goto fail;
    }
    return s;
fail:
    if (s->lfd >= 0)
        close(s->lfd);
    free(s);
    return NULL;
}

void fx_grpc_server_publish(struct fx_grpc_server *s, const char *path, const uint8_t *msg,
                            size_t len)
{
    uint8_t *copy = len ? malloc(len) : NULL;
    if (len && !copy)
        return; /* the next publish carries the full list again */
    if (len)
        memcpy(copy, msg, len);
    pthread_mutex_lock(&s->mu);
    struct pubslot *p = pub_find(s, path, true);
    if (p) {
        free(p->msg);
        p->msg = copy;
        p->len = len;
        p->gen++;
        copy = NULL;
    }
    for (struct gconn *c = s->conns; c; c = c->next)
        wake(c);
    pthread_mutex_unlock(&s->mu);
    free(copy);
}

void fx_grpc_server_stop(struct fx_grpc_server *s)
{
    if (!s)
        return;
    s->stopping = 1;
    char b = 1;
    ssize_t r = write(s->stop_pipe[1], &b, 1);
    (void)r;
    pthread_join(s->accept_thread, NULL);
    reap(s, true);
    pthread_mutex_lock(&s->mu);
    while (s->workers > 0)
        pthread_cond_wait(&s->workers_cv, &s->mu);
    pthread_mutex_unlock(&s->mu);
    close(s->lfd);
    close(s->stop_pipe[0]);
    close(s->stop_pipe[1]);
    unlink(s->path);
    for (int i = 0; i < MAX_PUBLISHED; i++)
        free(s->pubs[i].msg);
    pthread_cond_destroy(&s->workers_cv);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

/* ---- client ---- */

struct gclient {
    int fd; /* first: sock_send reads it */
    int32_t id;
    const uint8_t *req;
    size_t req_len, req_off;
    uint8_t *body;
    size_t body_len, body_cap;
    int http_status;
    int grpc_status; /* -1: not seen */
    char message[512];
    bool closed;
    uint32_t close_code;
    bool too_big;
};

static ssize_t client_read(nghttp2_session *h2, int32_t id, uint8_t *buf, size_t len,
                           uint32_t *flags, nghttp2_data_source *src, void *user)
{
    (void)h2;
    (void)id;
    (void)src;
    struct gclient *g = user;
    size_t left = g->req_len - g->req_off;
    size_t n = left < len ? left : len;
    memcpy(buf, g->req + g->req_off, n);
    g->req_off += n;
    if (g->req_off == g->req_len)
        *flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)n;
}

static int client_header(nghttp2_session *h2, const nghttp2_frame *f, const uint8_t *name,
                         size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                         void *user)
{
    (void)h2;
    (void)flags;
    struct gclient *g = user;
    if (f->hd.stream_id != g->id)
        return 0;
    char v[32];
    size_t vn = valuelen < sizeof(v) - 1 ? valuelen : sizeof(v) - 1;
    if (namelen == 7 && memcmp(name, ":status", 7) == 0) {
        memcpy(v, value, vn);
        v[vn] = '\0';
        g->http_status = atoi(v);
    } else if (namelen == 11 && memcmp(name, "grpc-status", 11) == 0) {
        memcpy(v, value, vn);
        v[vn] = '\0';
        g->grpc_status = atoi(v);
    } else if (namelen == 12 && memcmp(name, "grpc-message", 12) == 0) {
        fx_grpc_msg_decode((const char *)value, valuelen, g->message, sizeof(g->message));
    }
    return 0;
}

static int client_data(nghttp2_session *h2, uint8_t flags, int32_t id, const uint8_t *data,
                       size_t len, void *user)
{
    (void)h2;
    (void)flags;
    struct gclient *g = user;
    if (id == g->id && append_bytes(&g->body, &g->body_len, &g->body_cap, data, len) != 0)
        g->too_big = true;
    return 0;
}

static int client_close(nghttp2_session *h2, int32_t id, uint32_t code, void *user)
{
    (void)h2;
    struct gclient *g = user;
    if (id == g->id) {
        g->closed = true;
        g->close_code = code;
    }
    return 0;
}

int fx_grpc_call(const char *sock, const char *path, const uint8_t *req, size_t len,
                 int timeout_ms, struct fx_grpc_reply *reply, struct flexpu_error *err)
{
    memset(reply, 0, sizeof(*reply));
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(sock) >= sizeof(sa.sun_path)) {
        flexpu_error_set(err, FLEXPU_EINVAL, "socket path '%s' is too long", sock);
        return -1;
    }
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock);
    struct gclient g = {.fd = -1, .grpc_status = -1};
    uint8_t *framed = malloc(len + 5);
    if (!framed) {
        flexpu_error_set(err, FLEXPU_ENOMEM, "out of memory");
        return -1;
    }
    frame_header(framed, len);
    if (len)
        memcpy(framed + 5, req, len);
    g.req = framed;
    g.req_len = len + 5;

    int rc = -1;
    nghttp2_session *h2 = NULL;
    g.fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (g.fd < 0 || connect(g.fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        flexpu_error_set(err, FLEXPU_EIO, "cannot connect to '%s': %s", sock, strerror(errno));
        goto out;
    }
    fcntl(g.fd, F_SETFL, fcntl(g.fd, F_GETFL) | O_NONBLOCK);
    nghttp2_session_callbacks *cb;
    nghttp2_session_callbacks_new(&cb);
    nghttp2_session_callbacks_set_send_callback(cb, sock_send);
    nghttp2_session_callbacks_set_on_header_callback(cb, client_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, client_data);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, client_close);
    int r = nghttp2_session_client_new(&h2, cb, &g);
    nghttp2_session_callbacks_del(cb);
    if (r != 0) {
        flexpu_error_set(err, FLEXPU_ENOMEM, "nghttp2: %s", nghttp2_strerror(r));
        goto out;
    }
    nghttp2_submit_settings(h2, NGHTTP2_FLAG_NONE, NULL, 0);
    nghttp2_nv h[] = {NV(":method", "POST"),         NV(":scheme", "http"),
                      NV(":path", path),             NV(":authority", "localhost"),
                      NV("content-type", "application/grpc"), NV("te", "trailers"),
                      NV("user-agent", "flexpu-node")};
    nghttp2_data_provider prd = {.read_callback = client_read};
    g.id = nghttp2_submit_request(h2, NULL, h, sizeof(h) / sizeof(h[0]), &prd, &g);
    if (g.id < 0) {
        flexpu_error_set(err, FLEXPU_EIO, "nghttp2: %s", nghttp2_strerror(g.id));
        goto out;
    }
    int64_t deadline = fx_mono_ms() + timeout_ms;
    uint8_t buf[16384];
    while (!g.closed) {
        if (nghttp2_session_send(h2) != 0) {
            flexpu_error_set(err, FLEXPU_EIO, "'%s': connection lost while sending %s", sock,
                             path);
            goto out;
        }
        int64_t left = deadline - fx_mono_ms();
        if (left <= 0) {
            flexpu_error_set(err, FLEXPU_EIO, "'%s': %s: no answer in %d ms", sock, path,
                             timeout_ms);
            goto out;
        }
        struct pollfd pf = {.fd = g.fd,
                            .events = POLLIN | (nghttp2_session_want_write(h2) ? POLLOUT : 0)};
        if (poll(&pf, 1, (int)left) < 0 && errno != EINTR)
            break;
        if (pf.revents & (POLLIN | POLLHUP | POLLERR)) {
            ssize_t n = recv(g.fd, buf, sizeof(buf), 0);
            if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
                flexpu_error_set(err, FLEXPU_EIO, "'%s': connection closed during %s", sock,
                                 path);
                goto out;
            }
            if (n > 0 && nghttp2_session_mem_recv(h2, buf, (size_t)n) < 0) {
                flexpu_error_set(err, FLEXPU_EIO, "'%s': bad HTTP/2 from the server", sock);
                goto out;
            }
        }
    }
    if (g.too_big) {
        flexpu_error_set(err, FLEXPU_EIO, "'%s': %s: answer over %u bytes", sock, path,
                         MAX_MESSAGE);
        goto out;
    }
    if (g.http_status != 200 || g.grpc_status < 0) {
        flexpu_error_set(err, FLEXPU_EIO, "'%s': %s: HTTP status %d, grpc-status %s (stream code %u)",
                         sock, path, g.http_status, g.grpc_status < 0 ? "absent" : "present",
                         g.close_code);
        goto out;
    }
    reply->status = g.grpc_status;
    snprintf(reply->message, sizeof(reply->message), "%s", g.message);
    if (g.grpc_status == FX_GRPC_OK) {
        const uint8_t *msg;
        size_t n;
        char why[160];
        if (frame_parse(g.body, g.body_len, &msg, &n, why, sizeof(why)) != 0) {
            flexpu_error_set(err, FLEXPU_EIO, "'%s': %s: %s", sock, path, why);
            goto out;
        }
        reply->data = malloc(n ? n : 1);
        if (!reply->data) {
            flexpu_error_set(err, FLEXPU_ENOMEM, "out of memory");
            goto out;
        }
        memcpy(reply->data, msg, n);
        reply->len = n;
    }
    rc = 0;
out:
    if (h2)
        nghttp2_session_del(h2);
    if (g.fd >= 0)
        close(g.fd);
    free(g.body);
    free(framed);
    return rc;
}
