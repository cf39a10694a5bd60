/* SPDX-License-Identifier: Apache-2.0 */
/* The client's one connection per process (client.h): connecting and saying
 * HELLO at the first call, the send buffer that batches requests without a
 * reply, and waits that never outlast FLEXPU_REMOTE_TIMEOUT_MS without a
 * whole frame from the server (a PROGRESS frame counts: the worker is
 * alive), whether the client is reading a reply or sending. A
 * process-wide object by nature: it stands for the process's device. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "flexpu/log.h"
#include "remote/chan.h"
#include "remote/client.h"
#include "remote/net.h"
#include "util/alloc.h"

#define COMP            "remote-client"
#define FLUSH_AT        (64u << 10) /* send buffered requests beyond this */
#define IN_STEP         (64u << 10) /* the receive buffer grows from this */
#define DEFAULT_TIMEOUT 10000
#define MIN_TIMEOUT     1000 /* the worker sends PROGRESS every 250 ms */

static struct {
    pthread_mutex_t lock;
    struct fx_chan ch; /* ch.fd -1: not connected */
    int dead;  /* sticky cudaError_t once lost; 0 while usable */
    int connecting; /* a try of connect_server: a failure is retried */
    char why[480];  /* the last failure's reason */
    pid_t pid; /* the process that connected */
    int ndev;
    int driver_version;
    int timeout_ms;
    uint32_t seq;
    struct fx_wr out;
    /* Frames received: whole ones not yet taken in [in_start, in_tail)
     * (replies that came while the client was sending), then the one being
     * read in [in_tail, in_len). */
    unsigned char *in;
    size_t in_cap, in_start, in_tail, in_len;
} conn = {.lock = PTHREAD_MUTEX_INITIALIZER, .ch = {.fd = -1}};

static _Thread_local int tls_device;
static _Thread_local int tls_error;

int fx_cl_device(void)
{
    return tls_device;
}

void fx_cl_set_device(int dev)
{
    tls_device = dev;
}

void fx_cl_set_error(int e)
{
    if (e != cudaSuccess)
        tls_error = e;
}

int fx_cl_take_error(int peek)
{
    int e = tls_error;
    if (!peek)
        tls_error = cudaSuccess;
    return e;
}

/* Lock held. Ends the connection for good with `why` logged. */
static int lose(const char *why, const char *detail)
{
    if (!conn.dead && !conn.connecting)
        FX_ERROR(COMP, "remote GPU lost: every CUDA call fails from now on", "reason=\"%s: %s\"",
                 why, detail);
    if (!conn.dead)
        snprintf(conn.why, sizeof conn.why, "%s: %s", why, detail);
    conn.dead = cudaErrorDevicesUnavailable;
    fx_chan_close(&conn.ch);
    conn.out.len = 0;
    conn.out.bad = 0;
    conn.in_start = conn.in_tail = conn.in_len = 0;
    return conn.dead;
}

static int env_timeout(void)
{
    const char *s = getenv("FLEXPU_REMOTE_TIMEOUT_MS");
    if (!s || !*s)
        return DEFAULT_TIMEOUT;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < MIN_TIMEOUT || v > 3600000) {
        FX_WARN(COMP, "ignored: not 1000 to 3600000", "FLEXPU_REMOTE_TIMEOUT_MS=\"%s\"", s);
        return DEFAULT_TIMEOUT;
    }
    return (int)v;
}

/* The token file's bytes without a final newline; 0 bytes without a file. */
static int read_token(unsigned char *buf, size_t *len)
{
    const char *path = getenv("FLEXPU_REMOTE_TOKEN_FILE");
    *len = 0;
    if (!path || !*path)
        return 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, FX_WIRE_TOKEN_MAX);
    close(fd);
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        n--;
    if (n < 0)
        return -1;
    *len = (size_t)n;
    return 0;
}

static void set_log_level(void)
{
    enum flexpu_log_level lvl = FLEXPU_LOG_WARN;
    const char *s = getenv("FLEXPU_LOG_LEVEL");
    if (s && *s && flexpu_log_level_parse(s, &lvl, NULL) != 0)
        lvl = FLEXPU_LOG_WARN;
    flexpu_log_set_level(lvl);
}

/* The endpoint from FLEXPU_REMOTE_ADDR_FILE, which the pod's node agent
 * fills once the GPU node's server listens (docs/REMOTE.md, "Kubernetes"):
 * waited for, up to FLEXPU_REMOTE_WAIT_MS (default 120 s, at most an
 * hour), then a clear error rather than a hang. 0, or -1 with why. */
static long env_wait(void)
{
    long wait_ms = 120000;
    const char *s = getenv("FLEXPU_REMOTE_WAIT_MS");
    if (s && *s) {
        char *end;
        errno = 0;
        long v = strtol(s, &end, 10);
        if (errno || *end || v < 0 || v > 3600000)
            FX_WARN(COMP, "ignored: not 0 to 3600000", "FLEXPU_REMOTE_WAIT_MS=\"%s\"", s);
        else
            wait_ms = v;
    }
    return wait_ms;
}

static int addr_from_file(const char *path, char *addr, size_t len, long wait_ms, char *why,
                          size_t why_len)
{
    int64_t until = fx_net_deadline((int)wait_ms);
    for (int said = 0;; said = 1) {
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd >= 0) {
            ssize_t n = read(fd, addr, len - 1);
            close(fd);
            while (n > 0 && (addr[n - 1] == '\n' || addr[n - 1] == '\r'))
                n--;
            if (n > 0) {
                addr[n] = 0;
                return 0;
            }
        }
        if (fx_net_deadline(0) >= until) {
            snprintf(why, why_len, "no endpoint in %s after %ld ms (FLEXPU_REMOTE_WAIT_MS): "
                     "the GPU node's server did not start", path, wait_ms);
            return -1;
        }
        if (!said)
            FX_INFO(COMP, "waiting for the remote GPU's endpoint", "file=%s wait_ms=%ld", path,
                    wait_ms);
        usleep(50000);
    }
}

/* Lock held: one try at connecting to `addr` and saying HELLO. 0, or the
 * connection lost (conn.dead set, conn.why says why). */
static int connect_once(const char *addr)
{
    unsigned char token[FX_WIRE_TOKEN_MAX];
    size_t token_len = 0;
    if (read_token(token, &token_len) != 0)
        return lose("cannot read FLEXPU_REMOTE_TOKEN_FILE", strerror(errno));
    struct flexpu_error err = {0};
    int fd = fx_net_connect(addr, conn.timeout_ms, &err);
    if (fd < 0)
        return lose("cannot connect", err.msg);
    /* With a token, TLS keyed by it; without, plain TCP (loopback only). */
    if (token_len == 0)
        fx_chan_plain(&conn.ch, fd);
    else if (fx_chan_tls(&conn.ch, fd, 0, token, token_len, fx_net_deadline(conn.timeout_ms),
                         &err) != 0)
        return lose("TLS with the server failed (token?)", err.msg);
    conn.pid = getpid();
    struct fx_wire_req q = {.h.op = FX_OP_HELLO};
    q.u.hello.version = FX_WIRE_VERSION;
    q.u.hello.token = token;
    q.u.hello.token_len = token_len;
    struct fx_rd f;
    int deferred;
    int rc = fx_cl_call(&q, &f, &deferred);
    if (rc == cudaSuccess) {
        conn.ndev = (int)fx_rd_u32(&f, "devices");
        conn.driver_version = (int)fx_rd_u32(&f, "driver_version");
        if (f.bad || conn.ndev <= 0)
            return lose("the server has no device", addr);
        if (conn.ndev > FX_CL_MAX_DEVICES)
            conn.ndev = FX_CL_MAX_DEVICES; /* the server's own bound; never more ids than that */
    } else if (!conn.dead) {
        char detail[32];
        snprintf(detail, sizeof detail, "status %d", rc);
        return lose("the server refused this client (busy, or the token?)", detail);
    }
    return conn.dead;
}

/* Lock held: connects and says HELLO. A try that fails (no server yet, a
 * server restarting, busy, or holding connections that never
 * authenticate) is retried with back-off, 100 ms doubling to 2 s, until
 * FLEXPU_REMOTE_WAIT_MS (from the first try) has passed: then the GPU is
 * lost, never a hang. The endpoint file is read again at each try (a
 * restarted server has a new endpoint). */
static int connect_server(void)
{
    set_log_level();
    const char *addr = getenv("FLEXPU_REMOTE_ADDR");
    const char *addr_file = getenv("FLEXPU_REMOTE_ADDR_FILE");
    static char addr_buf[320];
    long wait_ms = env_wait();
    int64_t until = fx_net_deadline((int)wait_ms);
    int from_file = (!addr || !*addr) && addr_file && *addr_file;
    if (from_file) {
        char why[400];
        if (addr_from_file(addr_file, addr_buf, sizeof(addr_buf), wait_ms, why, sizeof(why)) != 0)
            return lose("no remote GPU", why);
        addr = addr_buf;
    }
    if (!addr || !*addr) {
        FX_ERROR(COMP, "FLEXPU_REMOTE_ADDR is not set: no remote GPU", "");
        return conn.dead = cudaErrorNoDevice;
    }
    conn.timeout_ms = env_timeout();
    fx_wr_init(&conn.out, FX_WIRE_HDR_SIZE + FX_WIRE_MAX_PAYLOAD);
    int backoff_ms = 100;
    for (int tries = 1;; tries++) {
        conn.connecting = 1;
        int rc = connect_once(addr);
        conn.connecting = 0;
        if (rc == 0)
            return 0;
        if (fx_net_deadline(backoff_ms) >= until) {
            FX_ERROR(COMP, "remote GPU lost: every CUDA call fails from now on",
                     "reason=\"%s\" tries=%d wait_ms=%ld setting=FLEXPU_REMOTE_WAIT_MS", conn.why,
                     tries, wait_ms);
            return conn.dead;
        }
        if (tries == 1)
            FX_WARN(COMP, "cannot reach the remote GPU yet: retrying", "reason=\"%s\" wait_ms=%ld",
                    conn.why, wait_ms);
        conn.dead = 0;
        usleep((useconds_t)backoff_ms * 1000);
        backoff_ms = backoff_ms < 1000 ? backoff_ms * 2 : 2000;
        if (from_file) {
            char why[400];
            if (addr_from_file(addr_file, addr_buf, sizeof(addr_buf), 0, why, sizeof(why)) != 0)
                return lose("no remote GPU", why);
        }
    }
}

int fx_cl_lock(void)
{
    pthread_mutex_lock(&conn.lock);
    if (conn.ch.fd >= 0 && conn.pid != getpid()) {
        /* A forked child: the connection is its parent's. Closing the
         * child's copy of the socket leaves the parent's open. */
        fx_chan_close(&conn.ch);
        conn.dead = cudaErrorInitializationError;
    }
    if (conn.ch.fd < 0 && !conn.dead)
        connect_server();
    if (conn.dead) {
        int e = conn.dead;
        pthread_mutex_unlock(&conn.lock);
        return e;
    }
    return cudaSuccess;
}

void fx_cl_unlock(void)
{
    pthread_mutex_unlock(&conn.lock);
}

int fx_cl_device_count(void)
{
    return conn.ndev;
}

int fx_cl_driver_version(void)
{
    return conn.driver_version;
}

/* Drops the frames already taken (their fields are no longer used: see
 * client.h), keeping any not yet taken. */
static void rx_compact(void)
{
    if (conn.in_start == 0)
        return;
    memmove(conn.in, conn.in + conn.in_start, conn.in_len - conn.in_start);
    conn.in_tail -= conn.in_start;
    conn.in_len -= conn.in_start;
    conn.in_start = 0;
}

/* Reads, without waiting, what the frame being received still needs (never
 * past it), growing the buffer as bytes arrive. A whole PROGRESS frame is
 * dropped; another is kept for fx_cl_wait. Returns 2 when a frame became
 * whole, 1 when bytes came, 0 when none can until the socket is ready for
 * *ev, or -1 when the connection is lost. */
static int rx_some(short *ev)
{
    struct fx_wire_hdr h = {0};
    struct flexpu_error err = {0};
    size_t have = conn.in_len - conn.in_tail, need = FX_WIRE_HDR_SIZE;
    if (have >= FX_WIRE_HDR_SIZE) {
        fx_wire_hdr_decode(conn.in + conn.in_tail, &h, &err); /* checked when it came */
        need += h.len;
    }
    if (conn.in_len == conn.in_cap) {
        size_t n = conn.in_cap < IN_STEP ? IN_STEP : conn.in_cap * 2;
        if (n > conn.in_len + (need - have))
            n = conn.in_len + (need - have);
        unsigned char *p = fx_realloc(conn.in, n);
        if (!p)
            return lose("out of memory for a reply", "receive buffer"), -1;
        conn.in = p;
        conn.in_cap = n;
    }
    size_t room = conn.in_cap - conn.in_len, done = 0;
    int rc = fx_chan_read_some(&conn.ch, conn.in + conn.in_len,
                               need - have < room ? need - have : room, &done, ev);
    if (rc == -EAGAIN)
        return 0;
    if (rc != 0)
        return lose(have ? "the connection broke in a reply" : "the connection broke",
                    strerror(-rc)),
               -1;
    conn.in_len += done;
    have += done;
    if (have < FX_WIRE_HDR_SIZE)
        return 1;
    if (have == FX_WIRE_HDR_SIZE) {
        if (fx_wire_hdr_decode(conn.in + conn.in_tail, &h, &err) != 0 ||
            !(h.op & FX_WIRE_REPLY))
            return lose("protocol error", err.msg), -1;
        need = FX_WIRE_HDR_SIZE + h.len;
    }
    if (have < need)
        return 1;
    if (h.op == (FX_OP_PROGRESS | FX_WIRE_REPLY))
        conn.in_len = conn.in_tail; /* the worker is alive, the call still running */
    else
        conn.in_tail = conn.in_len;
    return 2;
}

/* Waits until the socket is ready for `ev` or the deadline passes (then
 * the connection is lost, logged with `why`). 0 or -1. */
static int wait_io(short ev, int64_t deadline, const char *why)
{
    int rc = fx_net_wait(conn.ch.fd, ev, deadline);
    if (rc != 0)
        return lose(rc == -ETIMEDOUT ? why : "the connection broke", strerror(-rc)), -1;
    return 0;
}

/* Sends what is queued. While the socket is full, what the server sends is
 * read: its frames (PROGRESS while a driver call blocks the worker) move
 * the deadline, so queued GPU work that outlasts the timeout is not a lost
 * server. */
int fx_cl_flush(void)
{
    if (conn.dead)
        return conn.dead;
    rx_compact();
    int64_t deadline = fx_net_deadline(conn.timeout_ms);
    size_t off = 0;
    while (off < conn.out.len) {
        size_t done = 0;
        short wev = 0, rev = 0;
        int rc = fx_chan_write_some(&conn.ch, conn.out.buf + off, conn.out.len - off, &done,
                                    &wev);
        if (rc == 0) {
            off += done;
            continue;
        }
        if (rc != -EAGAIN)
            return lose("cannot send", strerror(-rc));
        int r;
        while ((r = rx_some(&rev)) > 0)
            if (r == 2)
                deadline = fx_net_deadline(conn.timeout_ms);
        if (r < 0 || wait_io(wev | rev, deadline, "cannot send: the server is silent") != 0)
            return conn.dead;
    }
    conn.out.len = 0;
    return cudaSuccess;
}

uint32_t fx_cl_queue(struct fx_wire_req *q)
{
    if (conn.dead)
        return 0;
    q->h.seq = ++conn.seq ? conn.seq : ++conn.seq; /* 0 means "lost" */
    q->h.dev = (uint16_t)tls_device;
    if (fx_wire_req_encode(&conn.out, q) != 0) {
        if (fx_cl_flush() != cudaSuccess)
            return 0;
        if (fx_wire_req_encode(&conn.out, q) != 0) {
            lose("a request does not fit a frame", fx_wire_op_name(q->h.op));
            return 0;
        }
    }
    if (conn.out.len >= FLUSH_AT && fx_cl_flush() != cudaSuccess)
        return 0;
    return q->h.seq;
}

int fx_cl_wait(uint32_t seq, struct fx_rd *fields, int *deferred)
{
    *deferred = 0;
    fx_rd_init(fields, NULL, 0);
    if (seq == 0 || fx_cl_flush() != cudaSuccess)
        return cudaErrorDevicesUnavailable;
    /* Each frame must be whole within the timeout of the one before (or of
     * the wait's start): silence and a trickle both end the wait. */
    int64_t deadline = fx_net_deadline(conn.timeout_ms);
    while (conn.in_start == conn.in_tail) {
        short ev = POLLIN;
        int r = rx_some(&ev);
        if (r == 2)
            deadline = fx_net_deadline(conn.timeout_ms);
        else if (r < 0 || (r == 0 && wait_io(ev, deadline, "the server is silent") != 0))
            return cudaErrorDevicesUnavailable;
    }
    struct fx_wire_hdr h;
    struct flexpu_error err = {0};
    fx_wire_hdr_decode(conn.in + conn.in_start, &h, &err); /* checked when it came */
    const unsigned char *payload = conn.in + conn.in_start + FX_WIRE_HDR_SIZE;
    conn.in_start += FX_WIRE_HDR_SIZE + h.len;
    if (h.seq != seq) {
        lose("a reply out of order", fx_wire_op_name(h.op));
        return cudaErrorDevicesUnavailable;
    }
    struct fx_wire_reply r;
    fx_rd_init(fields, payload, h.len);
    fx_wire_reply_read(fields, &r);
    if (fields->bad) {
        lose("a reply too short", fx_wire_op_name(h.op));
        return cudaErrorDevicesUnavailable;
    }
    if (r.deferred != cudaSuccess) {
        *deferred = r.deferred;
        fx_cl_set_error(r.deferred);
    }
    return r.status;
}

int fx_cl_call(struct fx_wire_req *q, struct fx_rd *fields, int *deferred)
{
    return fx_cl_wait(fx_cl_queue(q), fields, deferred);
}
