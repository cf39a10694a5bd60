/* SPDX-License-Identifier: Apache-2.0 */
/* TCP with a bound on every wait (net.h). */
#include "remote/net.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "util/clock.h"

int fx_net_split(const char *addr, char *host, size_t host_len, char *port, size_t port_len,
                 const char *field, struct flexpu_error *err)
{
    const char *why = "expected host:port or [v6 address]:port";
    const char *colon = addr ? strrchr(addr, ':') : NULL;
    if (!colon || colon == addr || !colon[1])
        return flexpu_error_field(err, FLEXPU_EINVAL, field, addr ? addr : "", addr ? strlen(addr) : 0,
                                  why);
    const char *h = addr, *hend = colon;
    if (*h == '[') {
        if (hend[-1] != ']')
            return flexpu_error_field(err, FLEXPU_EINVAL, field, addr, strlen(addr), why);
        h++;
        hend--;
    }
    size_t hl = (size_t)(hend - h), pl = strlen(colon + 1);
    if (hl == 0 || hl >= host_len || pl >= port_len || strspn(colon + 1, "0123456789") != pl)
        return flexpu_error_field(err, FLEXPU_EINVAL, field, addr, strlen(addr), why);
    memcpy(host, h, hl);
    host[hl] = '\0';
    memcpy(port, colon + 1, pl + 1);
    return 0;
}

void fx_net_tune(int fd)
{
    int one = 1, idle = 10, intvl = 5, cnt = 3;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt);
}

int64_t fx_net_deadline(int timeout_ms)
{
    return timeout_ms < 0 ? -1 : fx_mono_ms() + timeout_ms;
}

int fx_net_wait(int fd, short events, int64_t deadline_ms)
{
    struct pollfd p = {.fd = fd, .events = events};
    for (;;) {
        int64_t left = deadline_ms < 0 ? -1 : deadline_ms - fx_mono_ms();
        if (deadline_ms >= 0 && left <= 0)
            return -ETIMEDOUT;
        int r = poll(&p, 1, left > INT32_MAX ? INT32_MAX : (int)left);
        if (r > 0)
            return 0; /* readable, writable, or an error the next call reports */
        if (r < 0 && errno != EINTR)
            return -errno;
    }
}

int fx_net_is_loopback(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
        return 0;
    if (ss.ss_family == AF_INET)
        return (ntohl(((struct sockaddr_in *)&ss)->sin_addr.s_addr) >> 24) == 127;
    if (ss.ss_family != AF_INET6)
        return 0;
    const struct in6_addr *a = &((struct sockaddr_in6 *)&ss)->sin6_addr;
    return IN6_IS_ADDR_LOOPBACK(a) || (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
}

static int connect_one(const struct addrinfo *ai, int timeout_ms)
{
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK,
                    ai->ai_protocol);
    if (fd < 0)
        return -errno;
    int rc = connect(fd, ai->ai_addr, ai->ai_addrlen) == 0 ? 0 : -errno;
    if (rc == -EINPROGRESS) {
        rc = fx_net_wait(fd, POLLOUT, fx_net_deadline(timeout_ms));
        int soerr = 0;
        socklen_t len = sizeof soerr;
        if (rc == 0 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) == 0 && soerr)
            rc = -soerr;
    }
    if (rc == 0 && fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) != 0)
        rc = -errno;
    if (rc != 0) {
        close(fd);
        return rc;
    }
    fx_net_tune(fd);
    return fd;
}

int fx_net_connect(const char *addr, int timeout_ms, struct flexpu_error *err)
{
    char host[256], port[16];
    if (fx_net_split(addr, host, sizeof host, port, sizeof port, "address", err) != 0)
        return -1;
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
    int g = getaddrinfo(host, port, &hints, &res);
    if (g != 0) {
        flexpu_error_set(err, FLEXPU_EIO, "%s: %s", addr, gai_strerror(g));
        return -1;
    }
    int fd = -ENOENT;
    for (const struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next)
        fd = connect_one(ai, timeout_ms);
    freeaddrinfo(res);
    if (fd < 0)
        flexpu_error_set(err, FLEXPU_EIO, "connect %s: %s", addr, strerror(-fd));
    return fd < 0 ? -1 : fd;
}

int fx_net_listen(const char *addr, int *port, struct flexpu_error *err)
{
    char host[256], portstr[16];
    if (fx_net_split(addr, host, sizeof host, portstr, sizeof portstr, "listen", err) != 0)
        return -1;
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE}, *res = NULL;
    int g = getaddrinfo(host, portstr, &hints, &res);
    if (g != 0) {
        flexpu_error_set(err, FLEXPU_EIO, "%s: %s", addr, gai_strerror(g));
        return -1;
    }
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
    int rc = fd < 0 ? -errno : 0;
    if (rc == 0)
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (rc == 0 && (bind(fd, res->ai_addr, res->ai_addrlen) != 0 || listen(fd, 64) != 0))
        rc = -errno;
    freeaddrinfo(res);
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (rc == 0 && getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
        rc = -errno;
    if (rc != 0) {
        if (fd >= 0)
            close(fd);
        flexpu_error_set(err, FLEXPU_EIO, "listen %s: %s", addr, strerror(-rc));
        return -1;
    }
    *port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                           : ((struct sockaddr_in *)&ss)->sin_port);
    return fd;
}

int fx_net_write_all(int fd, const void *buf, size_t n, int64_t deadline_ms)
{
    const char *p = buf;
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w > 0) {
            p += w;
            n -= (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
            return -errno;
        int rc = fx_net_wait(fd, POLLOUT, deadline_ms);
        if (rc != 0)
            return rc;
    }
    return 0;
}

int fx_net_read_all(int fd, void *buf, size_t n, int64_t deadline_ms)
{
    char *p = buf;
    while (n > 0) {
        ssize_t r = recv(fd, p, n, MSG_DONTWAIT);
        if (r > 0) {
            p += r;
            n -= (size_t)r;
            continue;
        }
        if (r == 0)
            return -ECONNRESET;
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            return -errno;
        int rc = fx_net_wait(fd, POLLIN, deadline_ms);
        if (rc != 0)
            return rc;
    }
    return 0;
}
