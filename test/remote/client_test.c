/* SPDX-License-Identifier: Apache-2.0 */
/* The client library's deadlines (docs/REMOTE.md, "Failures") against a
 * scripted server on loopback, in plain TCP. Each case forks: the child
 * loads the client libcudart.so.12 (a fresh connection, the process's
 * only one) with FLEXPU_REMOTE_TIMEOUT_MS=1500 and exits with the CUDA
 * error of its call; the parent plays the server:
 *   - a reply trickled a byte every 150 ms (7 s in all) is given up on:
 *     the deadline is per frame, not per byte;
 *   - PROGRESS frames every 250 ms for 3 s, then the reply: the call
 *     succeeds (the deadline is the longest time between frames);
 *   - a worker that reads nothing for 3 s (blocked in the driver behind
 *     queued work) but sends PROGRESS: a 32 MiB copy is sent whole;
 *   - a server that closes the first connection unanswered and refuses the
 *     second's HELLO (busy), then serves: the client retries and its call
 *     succeeds; one that refuses every try: the call fails once
 *     FLEXPU_REMOTE_WAIT_MS has passed, after several tries.
 * The client library's path is CLIENT_LIB (its build path). */
#include <dlfcn.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "remote/net.h"
#include "remote/wire.h"

#define DEVICES_UNAVAILABLE 46 /* cudaErrorDevicesUnavailable */

typedef int (*mem_get_info_fn)(size_t *, size_t *);
typedef int (*memcpy_fn)(void *, const void *, size_t, int);

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

/* The child: one call through the client library, its connect retried for
 * wait_ms (FLEXPU_REMOTE_WAIT_MS); exits with its error. */
static void client(int port, const char *call, const char *wait_ms)
{
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    setenv("FLEXPU_REMOTE_ADDR", addr, 1);
    setenv("FLEXPU_REMOTE_WAIT_MS", wait_ms, 1);
    setenv("FLEXPU_REMOTE_TIMEOUT_MS", "1500", 1);
    setenv("FLEXPU_LOG_LEVEL", "off", 1);
    unsetenv("FLEXPU_REMOTE_TOKEN_FILE");
    void *lib = dlopen(CLIENT_LIB, RTLD_NOW | RTLD_LOCAL);
    if (!lib)
        _exit(100);
    int rc;
    if (strcmp(call, "memgetinfo") == 0) {
        mem_get_info_fn f = (mem_get_info_fn)dlsym(lib, "cudaMemGetInfo");
        size_t free_b = 0, total = 0;
        rc = f ? f(&free_b, &total) : 101;
        if (rc == 0 && (free_b != 1u << 20 || total != 2u << 20))
            rc = 102;
    } else {
        memcpy_fn f = (memcpy_fn)dlsym(lib, "cudaMemcpy");
        size_t n = 32u << 20;
        void *host = calloc(1, n);
        rc = f && host ? f((void *)(uintptr_t)0x10000, host, n, 1 /* H2D */) : 101;
    }
    _exit(rc);
}

/* Reads one request whole; 0 or -1 (the client left). */
static int read_request(int fd, struct fx_wire_hdr *h)
{
    unsigned char hb[FX_WIRE_HDR_SIZE];
    static unsigned char body[FX_WIRE_MAX_PAYLOAD];
    struct flexpu_error err = {0};
    if (fx_net_read_all(fd, hb, sizeof hb, fx_net_deadline(20000)) != 0 ||
        fx_wire_hdr_decode(hb, h, &err) != 0)
        return -1;
    return fx_net_read_all(fd, body, h->len, fx_net_deadline(20000)) == 0 ? 0 : -1;
}

/* A reply to `req` with status 0 and `fields`, in `out` (header first). */
static size_t encode_reply(const struct fx_wire_hdr *req, const void *fields, size_t n,
                           unsigned char *out)
{
    uint32_t head[3] = {0, 0, 0}; /* status, deferred, deferred_seq */
    struct fx_wire_hdr h = {.len = (uint32_t)(sizeof head + n),
                            .op = (uint16_t)(req->op | FX_WIRE_REPLY),
                            .seq = req->seq};
    fx_wire_hdr_encode(&h, out);
    memcpy(out + FX_WIRE_HDR_SIZE, head, sizeof head);
    if (n)
        memcpy(out + FX_WIRE_HDR_SIZE + sizeof head, fields, n);
    return FX_WIRE_HDR_SIZE + h.len;
}

static int send_bytes(int fd, const void *p, size_t n)
{
    return fx_net_write_all(fd, p, n, fx_net_deadline(5000));
}

static int send_progress(int fd)
{
    unsigned char hb[FX_WIRE_HDR_SIZE];
    fx_wire_hdr_encode(&(struct fx_wire_hdr){.op = FX_OP_PROGRESS | FX_WIRE_REPLY}, hb);
    return send_bytes(fd, hb, sizeof hb);
}

/* Accepts the child's next connection, which must come within 10 s (a
 * client that gave up does not hang the test). */
static int accept_child(int lfd)
{
    assert_int_equal(fx_net_wait(lfd, POLLIN, fx_net_deadline(10000)), 0);
    return accept(lfd, NULL, NULL);
}

/* Accepts the child's connection and answers its HELLO (one device). */
static int serve_hello(int lfd)
{
    int fd = accept_child(lfd);
    assert_true(fd >= 0);
    struct fx_wire_hdr h;
    assert_int_equal(read_request(fd, &h), 0);
    assert_int_equal(h.op, FX_OP_HELLO);
    uint32_t fields[2] = {1, 13000};
    unsigned char out[64];
    assert_int_equal(send_bytes(fd, out, encode_reply(&h, fields, sizeof fields, out)), 0);
    return fd;
}

/* A listener on a free port of 127.0.0.1 (*lfd; a 64 KiB receive buffer
 * when small_rcvbuf) and a child making `call` to it (client()); returns
 * the child. */
static pid_t client_start(const char *call, const char *wait_ms, int small_rcvbuf, int *lfd)
{
    int port = 0;
    struct flexpu_error err = {0};
    *lfd = fx_net_listen("127.0.0.1:0", &port, &err);
    assert_true(*lfd >= 0);
    if (small_rcvbuf) {
        /* Inherited by the accepted socket: the client's send fills it. */
        int n = 64 << 10;
        setsockopt(*lfd, SOL_SOCKET, SO_RCVBUF, &n, sizeof n);
    }
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(*lfd);
        client(port, call, wait_ms);
    }
    return pid;
}

/* Runs `script` as the server of a child making `call`; returns the
 * child's exit status. */
static int run_case(const char *call, void (*script)(int fd), int small_rcvbuf)
{
    int lfd;
    pid_t pid = client_start(call, "0", small_rcvbuf, &lfd);
    int fd = serve_hello(lfd);
    script(fd);
    close(fd);
    close(lfd);
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    return WEXITSTATUS(st);
}

static void trickle_reply(int fd)
{
    struct fx_wire_hdr h;
    assert_int_equal(read_request(fd, &h), 0);
    assert_int_equal(h.op, FX_OP_MEM_GET_INFO);
    uint64_t fields[2] = {1u << 20, 2u << 20};
    unsigned char out[64];
    size_t n = encode_reply(&h, fields, sizeof fields, out);
    /* 44 bytes, one per 150 ms: each wait sees a byte long before 1.5 s. */
    for (size_t i = 0; i < n; i++) {
        if (send(fd, out + i, 1, MSG_NOSIGNAL) != 1)
            return; /* the client gave up */
        sleep_ms(150);
    }
}

/* A reply trickled byte by byte is a lost server: the deadline bounds the
 * whole frame, not each byte. */
static void test_trickled_reply_is_lost(void **state)
{
    (void)state;
    assert_int_equal(run_case("memgetinfo", trickle_reply, 0), DEVICES_UNAVAILABLE);
}

static void progress_then_reply(int fd)
{
    struct fx_wire_hdr h;
    assert_int_equal(read_request(fd, &h), 0);
    for (int i = 0; i < 12; i++) {
        assert_int_equal(send_progress(fd), 0);
        sleep_ms(250);
    }
    uint64_t fields[2] = {1u << 20, 2u << 20};
    unsigned char out[64];
    assert_int_equal(send_bytes(fd, out, encode_reply(&h, fields, sizeof fields, out)), 0);
}

/* PROGRESS frames keep a call waiting well past the timeout. */
static void test_progress_keeps_a_wait(void **state)
{
    (void)state;
    assert_int_equal(run_case("memgetinfo", progress_then_reply, 0), 0);
}

static void busy_then_read(int fd)
{
    /* The worker is "in the driver": it reads nothing for 3 s. */
    for (int i = 0; i < 12; i++) {
        assert_int_equal(send_progress(fd), 0);
        sleep_ms(250);
    }
    size_t got = 0;
    struct fx_wire_hdr h;
    do {
        assert_int_equal(read_request(fd, &h), 0);
        assert_int_equal(h.op, FX_OP_MEMCPY_H2D);
        got += h.len;
    } while (h.flags & FX_WIRE_NO_REPLY);
    assert_true(got > 32u << 20); /* every chunk came */
    unsigned char out[64];
    assert_int_equal(send_bytes(fd, out, encode_reply(&h, NULL, 0, out)), 0);
}

/* A send that waits for a busy worker is not a lost server while the
 * worker sends PROGRESS. */
static void test_progress_keeps_a_send(void **state)
{
    (void)state;
    assert_int_equal(run_case("h2d", busy_then_read, 1), 0);
}

/* Refuses a HELLO as a busy server does: status cudaErrorDevicesUnavailable. */
static void refuse_hello(int lfd)
{
    int fd = accept_child(lfd);
    assert_true(fd >= 0);
    struct fx_wire_hdr h;
    if (read_request(fd, &h) == 0) {
        uint32_t head[3] = {DEVICES_UNAVAILABLE, 0, 0};
        unsigned char out[64];
        struct fx_wire_hdr r = {.len = sizeof head, .op = (uint16_t)(h.op | FX_WIRE_REPLY),
                                .seq = h.seq};
        fx_wire_hdr_encode(&r, out);
        memcpy(out + FX_WIRE_HDR_SIZE, head, sizeof head);
        send_bytes(fd, out, FX_WIRE_HDR_SIZE + sizeof head);
    }
    close(fd);
}

/* A connection closed before the HELLO's answer (a server evicting it, or
 * restarting) and a HELLO refused as busy are retried: the slice's client
 * is not lost at the first refusal. */
static void test_refused_connect_is_retried(void **state)
{
    (void)state;
    int lfd;
    pid_t pid = client_start("memgetinfo", "20000", 0, &lfd);
    int fd = accept_child(lfd); /* closed unanswered */
    assert_true(fd >= 0);
    close(fd);
    refuse_hello(lfd);
    fd = serve_hello(lfd);
    progress_then_reply(fd);
    close(fd);
    close(lfd);
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
}

/* A server that refuses every try: the retries end with the wait, as the
 * GPU lost (not a hang), after more than one try. */
static void test_refusals_end_with_the_wait(void **state)
{
    (void)state;
    int lfd;
    pid_t pid = client_start("memgetinfo", "1500", 0, &lfd);
    int tries = 0, st = 0;
    pid_t done = 0;
    while ((done = waitpid(pid, &st, WNOHANG)) == 0) {
        if (fx_net_wait(lfd, POLLIN, fx_net_deadline(100)) == 0) {
            refuse_hello(lfd);
            tries++;
        }
    }
    close(lfd);
    assert_int_equal(done, pid);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), DEVICES_UNAVAILABLE);
    assert_true(tries > 1);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_trickled_reply_is_lost),
        cmocka_unit_test(test_progress_keeps_a_wait),
        cmocka_unit_test(test_progress_keeps_a_send),
        cmocka_unit_test(test_refused_connect_is_retried),
        cmocka_unit_test(test_refusals_end_with_the_wait),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
