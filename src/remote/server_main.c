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
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
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
    "  --token-file PATH     the slice's token; clients must present it\n"
    "                        (without it, any client is served: loopback only)\n"
    "  --port-file PATH      write the port listened on to PATH\n"
    "  --log-level LEVEL     debug, info, warn, error, off (default info)\n"
    "  --help                this text\n";

/* Reads the token: the file's bytes without a final newline, 16 to 256. */
static int read_token(const char *path, unsigned char *buf, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        FX_ERROR(COMP, "cannot read the token file", "path=%s error=\"%s\"", path,
                 strerror(errno));
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

static int write_port(const char *path, int port)
{
    FILE *f = fopen(path, "we");
    if (!f || fprintf(f, "%d\n", port) < 0 || fclose(f) != 0) {
        FX_ERROR(COMP, "cannot write the port file", "path=%s", path);
        return -1;
    }
    return 0;
}

static void serve_forever(int lfd, const struct fx_srv_opts *opts)
{
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno != EINTR && errno != ECONNABORTED)
                FX_WARN(COMP, "accept failed", "error=\"%s\"", strerror(errno));
            continue;
        }
        pid_t pid = fork();
        if (pid == 0) {
            close(lfd);
            fx_net_tune(fd);
            _exit(fx_srv_serve(fd, opts) == 0 ? 0 : 1);
        }
        if (pid < 0)
            FX_ERROR(COMP, "cannot fork a worker", "error=\"%s\"", strerror(errno));
        else
            FX_INFO(COMP, "client connected", "worker=%d", (int)pid);
        close(fd);
    }
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {{"listen", required_argument, 0, 'l'},
                                             {"token-file", required_argument, 0, 't'},
                                             {"port-file", required_argument, 0, 'p'},
                                             {"log-level", required_argument, 0, 'v'},
                                             {"help", no_argument, 0, 'h'},
                                             {0, 0, 0, 0}};
    const char *listen_addr = NULL, *token_file = NULL, *port_file = NULL;
    flexpu_log_set_timestamps(1);
    flexpu_log_set_level(FLEXPU_LOG_INFO);
    int ch;
    while ((ch = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (ch) {
        case 'l': listen_addr = optarg; break;
        case 't': token_file = optarg; break;
        case 'p': port_file = optarg; break;
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
    struct fx_srv_opts opts = {.hello_timeout_ms = 10000, .write_timeout_ms = 60000,
                               .progress_ms = 1000};
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
    if (port_file && write_port(port_file, port) != 0)
        return 1;
    /* Workers are reaped by the kernel; a client that vanishes does not
     * kill the listener through SIGPIPE (writes use MSG_NOSIGNAL anyway). */
    signal(SIGCHLD, SIG_IGN);
    signal(SIGPIPE, SIG_IGN);
    FX_INFO(COMP, "listening", "address=%s port=%d token=%s", listen_addr, port,
            token_file ? "required" : "none");
    serve_forever(lfd, &opts);
    return 0;
}
