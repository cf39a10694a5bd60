/* SPDX-License-Identifier: Apache-2.0 */
/* flexpu-remoted: serves one remote slice's clients (docs/REMOTE.md). The
 * listener forks one worker per connection; the worker, like the listener,
 * runs with libflexpu-cuda.so preloaded and the slice's configuration, so the
 * tenant's quota and arbitration apply to it as to a local process. The
 * listener never touches the driver: a forked child of a process that
 * initialised CUDA cannot use it. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "flexpu/log.h"
#include "remote/net.h"
#include "remote/server.h"
#include "remote/wire.h"

#define COMP "remoted"

static const char usage[] =
    "usage: flexpu-remoted --listen HOST:PORT [options]\n"
    "Serves CUDA calls of remote clients (docs/REMOTE.md). Run it with\n"
    "libflexpu-cuda.so preloaded and the slice's configuration.\n"
    "  --listen HOST:PORT    address to listen on (port 0: any free port)\n"
    "  --token-file PATH     the slice's token (a regular file only its owner\n"
    "                        may read); clients must present it. Without it,\n"
    "                        any client is served in plaintext: loopback only\n"
    "  --insecure            allow a non-loopback --listen without a token\n"
    "  --max-clients N       authenticated clients at once, 1 to 4096\n"
    "                        (default 16); more are refused (they retry)\n"
    "  --max-preauth N       connections not yet authenticated, 1 to 4096\n"
    "                        (default 32); beyond, the oldest of the source\n"
    "                        holding the most is closed\n"
    "  --hello-timeout-ms N  the handshake and HELLO, from the connection's\n"
    "                        start (default 10000)\n"
    "  --frame-timeout-ms N  a frame either way, first byte to last\n"
    "                        (default 60000)\n"
    "  --max-module-mib N    fat binaries one client may hold loaded, in MiB,\n"
    "                        1 to 65536 (default 1024); a kernel's module\n"
    "                        beyond is cudaErrorMemoryAllocation\n"
    "  --token-fd N          the token from open descriptor N (as --token-file;\n"
    "                        the node agent's way: the file stays unreadable to\n"
    "                        the server's own user)\n"
    "  --port-file PATH      write the port listened on to PATH\n"
    "  --port-fd N           write the port listened on to open descriptor N\n"
    "  --slice NAME          the slice's name in the log (the node agent: the\n"
    "                        pod's UID; it recognises its servers by it)\n"
    "  --log-level LEVEL     debug, info, warn, error, off (default info)\n"
    "  --help                this text\n";

/* Reads the token from fd (named `what` in messages), then closes fd: the
 * file's bytes without a final newline, 16 to 256. The file must be a
 * regular file (not a FIFO that would block the start) that only its owner
 * may read or write: the token is the slice's only secret. */
static int read_token_fd(int fd, const char *what, unsigned char *buf, size_t *len)
{
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || (st.st_mode & 077)) {
        FX_ERROR(COMP, "the token file must be a regular file only its owner may read",
                 "path=%s mode=%04o expected=\"a regular file with mode 0600 or 0400\"", what,
                 (unsigned)(st.st_mode & 07777));
        close(fd);
        return -1;
    }
    ssize_t n = read(fd, buf, FX_WIRE_TOKEN_MAX + 1);
    close(fd);
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        n--;
    if (n < 16 || n > (ssize_t)FX_WIRE_TOKEN_MAX) {
        FX_ERROR(COMP, "a token is 16 to 256 bytes", "path=%s bytes=%zd", what, n);
        return -1;
    }
    *len = (size_t)n;
    return 0;
}

/* The token file is opened without following a link and without blocking. */
static int read_token(const char *path, unsigned char *buf, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOFOLLOW);
    if (fd < 0) {
        FX_ERROR(COMP, "cannot read the token file", "path=%s error=\"%s\"", path,
                 strerror(errno));
        return -1;
    }
    return read_token_fd(fd, path, buf, len);
}

/* An integer option in [lo, hi]; 0, or -1 naming the option and value. */
static int int_option(const char *name, const char *v, int lo, int hi, int *out)
{
    char *end;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (errno || end == v || *end || n < lo || n > hi) {
        fprintf(stderr, "flexpu-remoted: --%s=\"%s\": expected an integer from %d to %d\n",
                name, v, lo, hi);
        return -1;
    }
    *out = (int)n;
    return 0;
}

/* Writes the port to path, or to port_fd (then closed) when it is >= 0. */
static int write_port(const char *path, int port_fd, int port)
{
    FILE *f = port_fd >= 0 ? fdopen(port_fd, "w") : fopen(path, "we");
    if (!f || fprintf(f, "%d\n", port) < 0 || fclose(f) != 0) {
        FX_ERROR(COMP, "cannot write the port file", "path=%s fd=%d", path ? path : "",
                 port_fd);
        return -1;
    }
    return 0;
}

/* SIGCHLD only interrupts the wait for a connection, so that exited
 * workers are reaped (and counted out) at once. */
static void on_child(int sig)
{
    (void)sig;
}

/* A worker, from its connection's accept to its reaping. A connection
 * first waits in the pre-auth stage (at most --max-preauth of them): its
 * worker runs the handshake and HELLO and, with the token checked, asks
 * the listener over `ctl` for one of the --max-clients slots. So
 * connections that never authenticate cannot take the slots of the slice's
 * own clients (docs/REMOTE.md, "Authentication and isolation"). */
enum wstate { W_FREE, W_PREAUTH, W_AUTHED, W_GONE /* evicted or refused: exiting */ };

struct worker {
    enum wstate state;
    pid_t pid;
    int ctl;      /* the listener's end of the worker's control socket, or -1 */
    uint64_t seq; /* the accept's order: the oldest is evicted first */
    struct sockaddr_storage src;
};

struct listener {
    int lfd, max_clients, max_preauth;
    const struct fx_srv_opts *opts;
    struct worker *w;
    size_t nw; /* entries in w */
    uint64_t seq;
    int full_logged;
    sigset_t worker_mask; /* the signal mask a worker runs with */
};

static size_t count(const struct listener *l, enum wstate st)
{
    size_t n = 0;
    for (size_t i = 0; i < l->nw; i++)
        n += l->w[i].state == st;
    return n;
}

static void drop_ctl(struct worker *w)
{
    if (w->ctl >= 0)
        close(w->ctl);
    w->ctl = -1;
}

/* Reaps exited workers, freeing their entries. A client's worker (one
 * that was authenticated) is logged with its peak resident memory: what
 * one client cost this server in host memory (its CUDA context, cuBLAS,
 * buffers; docs/REMOTE.md, "The servers' host memory"), which the node's
 * memory limit must hold, read from the kernel at its end, so a worker
 * too short-lived for any sampler is still counted. */
static void reap(struct listener *l)
{
    pid_t pid;
    int status;
    struct rusage ru;
    while ((pid = wait4(-1, &status, WNOHANG, &ru)) > 0) {
        for (size_t i = 0; i < l->nw; i++) {
            if (l->w[i].state != W_FREE && l->w[i].pid == pid) {
                if (l->w[i].state == W_AUTHED)
                    FX_INFO(COMP, "client's worker ended", "worker=%d status=%d peak_rss_kib=%ld",
                            (int)pid,
                            WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status),
                            ru.ru_maxrss);
                drop_ctl(&l->w[i]);
                l->w[i].state = W_FREE;
                break;
            }
        }
    }
}

static int same_source(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    if (a->ss_family != b->ss_family)
        return 0;
    if (a->ss_family == AF_INET)
        return ((const struct sockaddr_in *)a)->sin_addr.s_addr ==
               ((const struct sockaddr_in *)b)->sin_addr.s_addr;
    if (a->ss_family == AF_INET6)
        return memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
                      &((const struct sockaddr_in6 *)b)->sin6_addr, sizeof(struct in6_addr)) == 0;
    return 1;
}

/* The pre-auth stage is full: ends the oldest unauthenticated connection
 * of the source address holding the most of them, so that one source
 * flooding the port evicts its own connections, not a client's handshake
 * from elsewhere. */
static void evict_one(struct listener *l)
{
    struct worker *victim = NULL;
    size_t most = 0;
    for (size_t i = 0; i < l->nw; i++) {
        if (l->w[i].state != W_PREAUTH)
            continue;
        size_t n = 0;
        struct worker *oldest = NULL;
        for (size_t j = 0; j < l->nw; j++) {
            if (l->w[j].state == W_PREAUTH && same_source(&l->w[i].src, &l->w[j].src)) {
                n++;
                if (!oldest || l->w[j].seq < oldest->seq)
                    oldest = &l->w[j];
            }
        }
        if (n > most) {
            most = n;
            victim = oldest;
        }
    }
    if (!victim)
        return;
    kill(victim->pid, SIGKILL);
    drop_ctl(victim);
    victim->state = W_GONE;
    if (!l->full_logged)
        FX_WARN(COMP, "unauthenticated connections beyond --max-preauth: closing the oldest",
                "max_preauth=%d from_one_source=%zu", l->max_preauth, most);
    l->full_logged = 1;
}

/* A worker with its token checked asks for a slot: 'Y' while fewer than
 * max_clients are served, else 'N' (its client hears the server is busy
 * and retries). A closed socket: the worker is ending. */
static void answer(struct listener *l, struct worker *w)
{
    char b = 0;
    ssize_t n = read(w->ctl, &b, 1);
    if (n < 0 && (errno == EINTR || errno == EAGAIN))
        return;
    if (n == 1 && b == 'A' && w->state == W_PREAUTH) {
        int ok = count(l, W_AUTHED) < (size_t)l->max_clients;
        if (!ok)
            FX_WARN(COMP, "refusing a client: --max-clients are served", "max_clients=%d",
                    l->max_clients);
        if (write(w->ctl, ok ? "Y" : "N", 1) == 1 && ok) {
            w->state = W_AUTHED;
            FX_INFO(COMP, "client authenticated", "worker=%d clients=%zu", (int)w->pid,
                    count(l, W_AUTHED));
        }
    }
    drop_ctl(w);
    if (w->state == W_PREAUTH)
        w->state = W_GONE;
}

/* Forks a worker for the accepted `fd`. */
static void admit(struct listener *l, int fd, const struct sockaddr_storage *src)
{
    if (count(l, W_PREAUTH) >= (size_t)l->max_preauth)
        evict_one(l);
    else
        l->full_logged = 0;
    struct worker *w = NULL;
    for (size_t i = 0; i < l->nw && !w; i++)
        if (l->w[i].state == W_FREE)
            w = &l->w[i];
    int sv[2];
    if (!w || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
        FX_WARN(COMP, "refusing a connection: no room for a worker", "workers=%zu", l->nw);
        close(fd);
        return;
    }
    pid_t pid = fork();
    if (pid == 0) {
        close(l->lfd);
        close(sv[0]);
        for (size_t i = 0; i < l->nw; i++)
            if (l->w[i].ctl >= 0)
                close(l->w[i].ctl);
        signal(SIGCHLD, SIG_DFL);
        sigprocmask(SIG_SETMASK, &l->worker_mask, NULL);
        fx_net_tune(fd);
        struct fx_srv_opts mine = *l->opts;
        mine.ctl_fd = sv[1];
        _exit(fx_srv_serve(fd, &mine) == 0 ? 0 : 1);
    }
    close(sv[1]);
    close(fd);
    if (pid < 0) {
        FX_ERROR(COMP, "cannot fork a worker", "error=\"%s\"", strerror(errno));
        close(sv[0]);
        return;
    }
    *w = (struct worker){.state = W_PREAUTH, .pid = pid, .ctl = sv[0], .seq = ++l->seq,
                         .src = *src};
    FX_DEBUG(COMP, "connection accepted", "worker=%d unauthenticated=%zu", (int)pid,
             count(l, W_PREAUTH));
}

/* Accepts connections, each into the pre-auth stage (above), and answers
 * the workers' requests for a slot. */
static void serve_forever(int lfd, const struct fx_srv_opts *opts, int max_clients,
                          int max_preauth)
{
    sigset_t chld, waiting;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    sigprocmask(SIG_BLOCK, &chld, &waiting);
    sigdelset(&waiting, SIGCHLD);
    struct sigaction sa = {.sa_handler = on_child}; /* no SA_RESTART */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGCHLD, &sa, NULL);
    /* Non-blocking: a connection reset between ppoll and accept4 must not
     * block the loop (accepted sockets do not inherit the flag). */
    fcntl(lfd, F_SETFL, fcntl(lfd, F_GETFL) | O_NONBLOCK);
    /* Evicted workers are counted until reaped: room for as many again. */
    struct listener l = {.lfd = lfd, .max_clients = max_clients, .max_preauth = max_preauth,
                         .opts = opts, .nw = (size_t)max_clients + 2u * (size_t)max_preauth,
                         .worker_mask = waiting};
    l.w = calloc(l.nw, sizeof *l.w);
    struct pollfd *p = calloc(l.nw + 1, sizeof *p);
    size_t *at = calloc(l.nw + 1, sizeof *at);
    if (!l.w || !p || !at) {
        FX_ERROR(COMP, "out of memory for the worker table", "workers=%zu", l.nw);
        return;
    }
    for (;;) {
        reap(&l);
        size_t np = 1;
        p[0] = (struct pollfd){.fd = lfd, .events = POLLIN};
        for (size_t i = 0; i < l.nw; i++) {
            if (l.w[i].ctl >= 0) {
                at[np] = i;
                p[np++] = (struct pollfd){.fd = l.w[i].ctl, .events = POLLIN};
            }
        }
        if (ppoll(p, np, NULL, &waiting) <= 0)
            continue; /* SIGCHLD: reap */
        for (size_t k = 1; k < np; k++)
            if (p[k].revents)
                answer(&l, &l.w[at[k]]);
        if (!(p[0].revents & POLLIN))
            continue;
        reap(&l);
        struct sockaddr_storage src = {0};
        socklen_t slen = sizeof src;
        int fd = accept4(lfd, (struct sockaddr *)&src, &slen, SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno != EINTR && errno != ECONNABORTED && errno != EAGAIN)
                FX_WARN(COMP, "accept failed", "error=\"%s\"", strerror(errno));
            continue;
        }
        admit(&l, fd, &src);
    }
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {{"listen", required_argument, 0, 'l'},
                                             {"token-file", required_argument, 0, 't'},
                                             {"token-fd", required_argument, 0, 'T'},
                                             {"port-file", required_argument, 0, 'p'},
                                             {"port-fd", required_argument, 0, 'q'},
                                             {"slice", required_argument, 0, 's'},
                                             {"insecure", no_argument, 0, 'i'},
                                             {"max-clients", required_argument, 0, 'm'},
                                             {"max-preauth", required_argument, 0, 'P'},
                                             {"hello-timeout-ms", required_argument, 0, 'H'},
                                             {"frame-timeout-ms", required_argument, 0, 'F'},
                                             {"max-module-mib", required_argument, 0, 'M'},
                                             {"log-level", required_argument, 0, 'v'},
                                             {"help", no_argument, 0, 'h'},
                                             {0, 0, 0, 0}};
    const char *listen_addr = NULL, *token_file = NULL, *port_file = NULL, *slice = "";
    int insecure = 0, max_clients = 16, max_preauth = 32, token_fd = -1, port_fd = -1;
    struct fx_srv_opts opts = {.hello_timeout_ms = 10000, .frame_timeout_ms = 60000,
                               .progress_ms = 250, .ctl_fd = -1,
                               .max_module_bytes = FX_SRV_MODULE_BYTES};
    flexpu_log_set_timestamps(1);
    flexpu_log_set_level(FLEXPU_LOG_INFO);
    /* Not dumpable: the node's servers share one unprivileged user, and
     * another slice's server, if it were compromised, must not read this
     * one's token or its workers' memory (ptrace, /proc/PID/mem). Workers
     * are forked and keep it. */
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    int ch;
    while ((ch = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (ch) {
        case 'l': listen_addr = optarg; break;
        case 't': token_file = optarg; break;
        case 'p': port_file = optarg; break;
        case 's': slice = optarg; break;
        case 'T':
            if (int_option("token-fd", optarg, 0, 1 << 20, &token_fd) != 0)
                return 2;
            break;
        case 'q':
            if (int_option("port-fd", optarg, 0, 1 << 20, &port_fd) != 0)
                return 2;
            break;
        case 'i': insecure = 1; break;
        case 'm':
            if (int_option("max-clients", optarg, 1, 4096, &max_clients) != 0)
                return 2;
            break;
        case 'P':
            if (int_option("max-preauth", optarg, 1, 4096, &max_preauth) != 0)
                return 2;
            break;
        case 'H':
            if (int_option("hello-timeout-ms", optarg, 100, 600000, &opts.hello_timeout_ms) != 0)
                return 2;
            break;
        case 'F':
            if (int_option("frame-timeout-ms", optarg, 100, 3600000, &opts.frame_timeout_ms) != 0)
                return 2;
            break;
        case 'M': {
            int mib = 0;
            if (int_option("max-module-mib", optarg, 1, 65536, &mib) != 0)
                return 2;
            opts.max_module_bytes = (size_t)mib << 20;
            break;
        }
        case 'v':
            if (flexpu_log_level_option("flexpu-remoted", optarg) != 0)
                return 2;
            break;
        case 'h': fputs(usage, stdout); return 0;
        default: fputs(usage, stderr); return 2;
        }
    }
    if (!listen_addr || optind != argc) {
        fputs(usage, stderr);
        return 2;
    }
    if ((token_file && token_fd >= 0) || (port_file && port_fd >= 0)) {
        fputs("flexpu-remoted: give --token-file or --token-fd, --port-file or --port-fd, "
              "not both\n", stderr);
        return 2;
    }
    static unsigned char token[FX_WIRE_TOKEN_MAX + 1];
    bool have_token = token_file || token_fd >= 0;
    if (have_token) {
        char what[32];
        snprintf(what, sizeof(what), "fd %d", token_fd);
        if ((token_file ? read_token(token_file, token, &opts.token_len)
                        : read_token_fd(token_fd, what, token, &opts.token_len)) != 0)
            return 1;
        opts.token = token;
    }
    struct flexpu_error err = {0};
    int port = 0, lfd = fx_net_listen(listen_addr, &port, &err);
    if (lfd < 0) {
        FX_ERROR(COMP, "cannot listen", "error=\"%s\"", err.msg);
        return 1;
    }
    /* Plaintext without a token serves anyone who can reach the port and
     * lets the path read every frame: loopback only, unless asked for. */
    if (!have_token && !insecure && !fx_net_is_loopback(lfd)) {
        FX_ERROR(COMP, "without --token-file, --listen must be a loopback address",
                 "listen=%s hint=\"give --token-file, or --insecure to serve plaintext to anyone\"",
                 listen_addr);
        close(lfd);
        return 2;
    }
    if ((port_file || port_fd >= 0) && write_port(port_file, port_fd, port) != 0)
        return 1;
    /* A client that vanishes does not kill the listener through SIGPIPE
     * (writes use MSG_NOSIGNAL anyway). */
    signal(SIGPIPE, SIG_IGN);
    FX_INFO(COMP, "listening", "slice=%s address=%s port=%d token=%s max_clients=%d "
            "max_preauth=%d max_module_mib=%zu uid=%d", slice, listen_addr, port,
            have_token ? "required" : "none", max_clients, max_preauth,
            opts.max_module_bytes >> 20, (int)getuid());
    serve_forever(lfd, &opts, max_clients, max_preauth);
    return 1;
}
