/* SPDX-License-Identifier: Apache-2.0 */
/* A small HTTP server on loopback for the Kubernetes client's unit tests
 * (kube_test.c, evict_test.c): each test sets the status and body it
 * answers, and reads back the last request it got; threaded, it answers
 * each connection on a thread of its own after delay_ms. Include after
 * cmocka.h.
 *
 * A test's server comes from http_new, on the heap, and the test runs
 * under http_teardown (http_test() in its list): a failed assertion
 * longjmps out of the test past its http_stop, and a server on the test's
 * stack then had its thread reading a dead frame, which the next test
 * reused (ASan failed that test, not the one at fault). */
#ifndef FX_TEST_HTTP_FAKE_H
#define FX_TEST_HTTP_FAKE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

#include "kube/kube.h"
#include "util/clock.h"

struct http_srv {
    int fd, port;
    pthread_t tid;
    atomic_int stop; /* set by the test; read by the server's threads */
    bool silent;            /* read each request, never answer */
    int status;             /* the answer's status */
    /* and body (JSON); one the test allocates is freed after http_stop,
     * not once its client has the answer: the server's send() may not have
     * returned yet (and ASan checks the buffer after it returns) */
    const char *body;
    /* A body the test allocated (it may also be `body`): http_teardown
     * frees it after the server stopped, whether the test passed or not. */
    char *body_owned;
    int nreq;
    char method[16], path[512], req_body[4096]; /* the last request */
    /* When set, what a PATCH is answered instead of status and body. */
    int patch_status;
    const char *patch_body;
    /* threaded: each connection on a thread of its own, answered after
     * delay_ms; inflight/max_inflight count requests held at once. */
    bool threaded;
    int delay_ms, inflight, max_inflight, conns;
    /* Every request's "METHOD PATH\n", in order (as much as fits). */
    char log[16384];
    pthread_mutex_t log_mu;
    /* If set, answers each request instead of status and body: returns
     * the status, sets *body (static or owned by the test) and may set
     * *delay_ms (threaded only: the answer waits that long). */
    int (*route)(struct http_srv *s, const char *method, const char *path, const char *req_body,
                 const char **body, int *delay_ms);
    void *ctx; /* the test's, for route */
    struct http_srv *next_owned; /* http_new's list, for http_teardown */
};

/* The servers http_new made (main thread only), each stopped and freed by
 * http_teardown. */
static struct http_srv *http_owned;

static inline void log_request(struct http_srv *s, const char *method, const char *path)
{
    pthread_mutex_lock(&s->log_mu);
    size_t n = strlen(s->log);
    snprintf(s->log + n, sizeof(s->log) - n, "%s %s\n", method, path);
    pthread_mutex_unlock(&s->log_mu);
}

/* Reads one request (headers, then Content-Length bytes of body). */
static inline int read_request(struct http_srv *s, int c)
{
    char buf[16384];
    size_t len = 0;
    char *end = NULL;
    while (!(end = strstr(buf, "\r\n\r\n"))) {
        if (len + 1 >= sizeof(buf))
            return -1;
        ssize_t r = read(c, buf + len, sizeof(buf) - 1 - len);
        if (r <= 0)
            return -1;
        len += (size_t)r;
        buf[len] = 0;
    }
    sscanf(buf, "%15s %511s", s->method, s->path);
    const char *cl = strcasestr(buf, "content-length:");
    size_t want = cl ? strtoul(cl + 15, NULL, 10) : 0;
    size_t have = len - (size_t)(end + 4 - buf);
    if (strcasestr(buf, "expect: 100-continue") && have < want)
        (void)!write(c, "HTTP/1.1 100 Continue\r\n\r\n", 25);
    memmove(buf, end + 4, have);
    while (have < want && have + 1 < sizeof(buf)) {
        ssize_t r = read(c, buf + have, sizeof(buf) - 1 - have);
        if (r <= 0)
            return -1;
        have += (size_t)r;
    }
    buf[have] = 0;
    size_t keep = have < sizeof(s->req_body) - 1 ? have : sizeof(s->req_body) - 1;
    memcpy(s->req_body, buf, keep);
    s->req_body[keep] = 0;
    return 0;
}

static inline void answer_with(int c, int status, const char *body)
{
    char head[256];
    size_t bl = strlen(body ? body : "");
    int hl = snprintf(head, sizeof(head),
                      "HTTP/1.1 %d X\r\nContent-Type: application/json\r\n"
                      "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                      status, bl);
    /* A client gone (a watch its agent stopped) is no reason to die. */
    (void)!send(c, head, (size_t)hl, MSG_NOSIGNAL);
    (void)!send(c, body ? body : "", bl, MSG_NOSIGNAL);
}

static inline void answer(struct http_srv *s, int c)
{
    bool patch = s->patch_status && !strcmp(s->method, "PATCH");
    answer_with(c, patch ? s->patch_status : s->status, patch ? s->patch_body : s->body);
}

struct conn {
    struct http_srv *s;
    int fd;
};

static inline void *conn_main(void *arg)
{
    struct conn *k = arg;
    struct http_srv *s = k->s, scratch = {0};
    if (read_request(&scratch, k->fd) == 0) {
        __atomic_add_fetch(&s->nreq, 1, __ATOMIC_SEQ_CST);
        log_request(s, scratch.method, scratch.path);
        int status = s->status, delay = s->delay_ms;
        const char *body = s->body;
        if (s->route)
            status = s->route(s, scratch.method, scratch.path, scratch.req_body, &body, &delay);
        int now = __atomic_add_fetch(&s->inflight, 1, __ATOMIC_SEQ_CST);
        int max = __atomic_load_n(&s->max_inflight, __ATOMIC_SEQ_CST);
        while (now > max && !__atomic_compare_exchange_n(&s->max_inflight, &max, now, false,
                                                         __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST))
            ;
        /* Held against the clock, not for a count of sleeps: each sleep
         * overshoots on a loaded machine, and 70 of them held a 700 ms
         * answer past its client's 1 s timeout. */
        int64_t until = fx_mono_ms() + delay;
        while (fx_mono_ms() < until && !atomic_load(&s->stop))
            usleep(10000);
        __atomic_sub_fetch(&s->inflight, 1, __ATOMIC_SEQ_CST);
        answer_with(k->fd, status, body);
    }
    close(k->fd);
    free(k);
    __atomic_sub_fetch(&s->conns, 1, __ATOMIC_SEQ_CST);
    return NULL;
}

static inline void *http_main(void *arg)
{
    struct http_srv *s = arg;
    while (!atomic_load(&s->stop)) {
        struct pollfd pfd = {.fd = s->fd, .events = POLLIN};
        if (poll(&pfd, 1, 50) <= 0)
            continue;
        int c = accept(s->fd, NULL, NULL);
        if (c < 0)
            continue;
        if (s->threaded) {
            struct conn *k = malloc(sizeof(*k));
            pthread_t t;
            *k = (struct conn){s, c};
            __atomic_add_fetch(&s->conns, 1, __ATOMIC_SEQ_CST);
            if (pthread_create(&t, NULL, conn_main, k) == 0) {
                pthread_detach(t);
            } else {
                __atomic_sub_fetch(&s->conns, 1, __ATOMIC_SEQ_CST);
                free(k);
                close(c);
            }
            continue;
        }
        if (read_request(s, c) == 0) {
            s->nreq++;
            log_request(s, s->method, s->path);
            if (s->route) {
                const char *body = s->body;
                int delay = 0;
                answer_with(c, s->route(s, s->method, s->path, s->req_body, &body, &delay), body);
            } else if (s->silent) {
                while (!atomic_load(&s->stop)) /* the connection stays open, unanswered */
                    usleep(20000);
            } else {
                answer(s, c);
            }
        }
        close(c);
    }
    return NULL;
}

/* Starts s in place, for a caller whose s outlives the server however its
 * test ends (remote_node_test's fixture, on the heap); tests use http_new. */
static inline void http_start(struct http_srv *s)
{
    s->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(s->fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof(sa);
    assert_int_equal(bind(s->fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(s->fd, 8), 0);
    assert_int_equal(getsockname(s->fd, (struct sockaddr *)&sa, &sl), 0);
    s->port = ntohs(sa.sin_port);
    pthread_mutex_init(&s->log_mu, NULL);
    atomic_store(&s->stop, 0);
    if (pthread_create(&s->tid, NULL, http_main, s) != 0) {
        atomic_store(&s->stop, 1); /* no thread for http_stop to join */
        fail_msg("pthread_create for the fake API server failed");
    }
}

/* Stops s: no-op if stopped already (http_teardown stops what the test
 * did not). What it recorded stays readable. */
static inline void http_stop(struct http_srv *s)
{
    if (atomic_exchange(&s->stop, 1))
        return;
    pthread_join(s->tid, NULL);
    while (__atomic_load_n(&s->conns, __ATOMIC_SEQ_CST) > 0)
        usleep(10000);
    close(s->fd);
}

/* A server configured as `init` (fd, port and thread its own), started on
 * the heap; it stays readable after http_stop until http_teardown frees it
 * after the test, passed or failed. */
static inline struct http_srv *http_new(struct http_srv init)
{
    struct http_srv *s = malloc(sizeof(*s));
    assert_non_null(s);
    *s = init;
    s->stop = 1; /* not running until http_start: http_teardown skips its join */
    s->next_owned = http_owned;
    http_owned = s;
    http_start(s);
    return s;
}

/* A cmocka teardown: the servers http_new made, stopped if the test did not
 * get to it, and freed. A failed test's client threads that still reach
 * for the server meet a closed port. */
static inline int http_teardown(void **state)
{
    (void)state;
    while (http_owned) {
        struct http_srv *s = http_owned;
        http_owned = s->next_owned;
        http_stop(s);
        free(s->body_owned);
        free(s);
    }
    return 0;
}

/* A test that makes servers with http_new, in a cmocka test list. */
#define http_test(f) cmocka_unit_test_teardown(f, http_teardown)

/* The configuration of a client of the server on loopback, through a
 * kubeconfig like a user's. */
static inline void loopback_config(int port, struct kube_config *cfg)
{
    char yaml[512];
    snprintf(yaml, sizeof(yaml),
             "clusters:\n- name: c\n  cluster: {server: 'http://127.0.0.1:%d'}\n"
             "contexts:\n- name: x\n  context: {cluster: c}\ncurrent-context: x\n",
             port);
    struct flexpu_error err = {0};
    assert_int_equal(kube_config_parse(yaml, strlen(yaml), ".", NULL, cfg, &err), 0);
}

static inline struct kube_client *loopback_client(int port)
{
    struct kube_config cfg;
    struct flexpu_error err = {0};
    loopback_config(port, &cfg);
    struct kube_client *c = kube_client_new(&cfg, "kube-test", &err);
    kube_config_free(&cfg);
    assert_non_null(c);
    return c;
}

#endif
