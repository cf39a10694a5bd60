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
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
    "  --max-clients N       workers at once, 1 to 4096 (default 16); more\n"
    "                        connections are closed at once\n"
    "  --hello-timeout-ms N  the handshake and HELLO, from the connection's\n"
    "                        start (default 10000)\n"
    "  --frame-timeout-ms N  a frame either way, first byte to last\n"
    "                        (default 60000)\n"
    "  --port-file PATH      write the port listened on to PATH\n"
    "  --log-level LEVEL     debug, info, warn, error, off (default info)\n"
    "  --help                this text\n";

/* Reads the token: the file's bytes without a final newline, 16 to 256.
 * The file must be a regular file (not a link, nor a FIFO that would block
 * the start) that only its owner may read or write: the token is the
 * slice's only secret. */
static int read_token(const char *path, unsigned char *buf, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOFOLLOW);
    if (fd < 0) {
        FX_ERROR(COMP, "cannot read the token file", "path=%s error=\"%s\"", path,
                 strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || (st.st_mode & 077)) {
        FX_ERROR(COMP, "the token file must be a regular file only its owner may read",
                 "path=%s mode=%04o (expected a regular file with mode 0600 or 0400)", path,
                 (unsigned)(st.st_mode & 07777));
        close(fd);
        return -1;
    }
    ssize_t n = read(fd, buf, FX_WIRE_TOKEN_MAX + 1);
    close(fd);
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        n--;
    if (n < 16 || n > (ssize_t)FX_WIRE_TOKEN_MAX) {
        FX_ERROR(COMP, "a token is 16 to 256 bytes", "path=%s bytes=%zd", path, n);
        return -1;
    }
    *len = (size_t)n;
    return 0;
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

static int write_port(const char *path, int port)
{
    FILE *f = fopen(path, "we");
    if (!f || fprintf(f, "%d\n", port) < 0 || fclose(f) != 0) {
        FX_ERROR(COMP, "cannot write the port file", "path=%s", path);
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

/* Reaps exited workers; returns how many. */
static int reap(void)
{
    int n = 0;
    while (waitpid(-1, NULL, WNOHANG) > 0)
        n++;
    return n;
}

/* Accepts connections and forks a worker for each, at most max_clients at
 * once: a connection beyond that is closed before anything is read from
 * it, so idle or unauthenticated connections cannot make the server fork
 * without bound (each worker also has hello_timeout_ms to authenticate). */
static void serve_forever(int lfd, const struct fx_srv_opts *opts, int max_clients)
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
    int live = 0, full_logged = 0;
    for (;;) {
        live -= reap();
        struct pollfd p = {.fd = lfd, .events = POLLIN};
        if (ppoll(&p, 1, NULL, &waiting) <= 0)
            continue; /* SIGCHLD: reap */
        live -= reap();
        int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno != EINTR && errno != ECONNABORTED && errno != EAGAIN)
                FX_WARN(COMP, "accept failed", "error=\"%s\"", strerror(errno));
            continue;
        }
        if (live >= max_clients) {
            if (!full_logged)
                FX_WARN(COMP, "refusing connections: too many clients", "max_clients=%d",
                        max_clients);
            full_logged = 1;
            close(fd);
            continue;
        }
        full_logged = 0;
        pid_t pid = fork();
        if (pid == 0) {
            close(lfd);
            signal(SIGCHLD, SIG_DFL);
            sigprocmask(SIG_SETMASK, &waiting, NULL);
            fx_net_tune(fd);
            _exit(fx_srv_serve(fd, opts) == 0 ? 0 : 1);
        }
        if (pid < 0) {
            FX_ERROR(COMP, "cannot fork a worker", "error=\"%s\"", strerror(errno));
        } else {
            live++;
            FX_INFO(COMP, "client connected", "worker=%d clients=%d", (int)pid, live);
        }
        close(fd);
    }
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {{"listen", required_argument, 0, 'l'},
                                             {"token-file", required_argument, 0, 't'},
                                             {"port-file", required_argument, 0, 'p'},
                                             {"insecure", no_argument, 0, 'i'},
                                             {"max-clients", required_argument, 0, 'm'},
                                             {"hello-timeout-ms", required_argument, 0, 'H'},
                                             {"frame-timeout-ms", required_argument, 0, 'F'},
                                             {"log-level", required_argument, 0, 'v'},
                                             {"help", no_argument, 0, 'h'},
                                             {0, 0, 0, 0}};
    const char *listen_addr = NULL, *token_file = NULL, *port_file = NULL;
    int insecure = 0, max_clients = 16;
    struct fx_srv_opts opts = {.hello_timeout_ms = 10000, .frame_timeout_ms = 60000,
                               .progress_ms = 250};
    flexpu_log_set_timestamps(1);
    flexpu_log_set_level(FLEXPU_LOG_INFO);
    int ch;
    while ((ch = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (ch) {
        case 'l': listen_addr = optarg; break;
        case 't': token_file = optarg; break;
        case 'p': port_file = optarg; break;
        case 'i': insecure = 1; break;
        case 'm':
            if (int_option("max-clients", optarg, 1, 4096, &max_clients) != 0)
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
    static unsigned char token[FX_WIRE_TOKEN_MAX + 1];
    if (token_file) {
        if (read_token(token_file, token, &opts.token_len) != 0)
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
    if (!token_file && !insecure && !fx_net_is_loopback(lfd)) {
        FX_ERROR(COMP, "without --token-file, --listen must be a loopback address",
                 "listen=%s (give --token-file, or --insecure to serve plaintext to anyone)",
                 listen_addr);
        close(lfd);
        return 2;
    }
    if (port_file && write_port(port_file, port) != 0)
        return 1;
    /* A client that vanishes does not kill the listener through SIGPIPE
     * (writes use MSG_NOSIGNAL anyway). */
    signal(SIGPIPE, SIG_IGN);
    FX_INFO(COMP, "listening", "address=%s port=%d token=%s max_clients=%d", listen_addr, port,
            token_file ? "required" : "none", max_clients);
    serve_forever(lfd, &opts, max_clients);
    return 0;
}
