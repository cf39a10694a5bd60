/* SPDX-License-Identifier: Apache-2.0 */
/* A fake nvidia-cuda-mps-control for the node agent's tests: no GPU.
 *
 *   fake_mps_control -f | -d   the control daemon on $CUDA_MPS_PIPE_DIRECTORY:
 *                              a FIFO `control`, nvidia-cuda-mps-control.pid,
 *                              and every command it gets appended to
 *                              $CUDA_MPS_LOG_DIRECTORY/commands
 *                              ("start pid=N visible=..." first)
 *   fake_mps_control           a client: each line of stdin is sent to the
 *                              daemon, its answer printed; "Cannot find MPS
 *                              control daemon process" and status 1 when
 *                              there is none
 *
 * The daemon keeps the defaults it is given and answers the get_default_*
 * commands with them; `quit` also appends the pipe directory to
 * $CUDA_MPS_LOG_DIRECTORY/../../fakemps-quits (<root>/mps/fakemps-quits for
 * the node agent), which outlives the slice's directories. The real
 * daemon's answers are what test/gpu/mps_check.sh confirms.
 *
 * FAKEMPS_FAIL in the daemon's environment: "start" exits at once with
 * status 1 and a message; "limits" ignores
 * set_default_device_pinned_mem_limit; "hang" never makes its pipe. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static char pipe_dir[512], log_dir[512];

static void record(const char *what)
{
    char path[600];
    snprintf(path, sizeof(path), "%s/commands", log_dir);
    FILE *f = fopen(path, "a");
    if (f) {
        fprintf(f, "%s\n", what);
        fclose(f);
    }
}

static void reply(const char *name, const char *text)
{
    char path[700];
    snprintf(path, sizeof(path), "%s/%s", pipe_dir, name);
    /* The client opens its end for reading; it may have gone. */
    for (int i = 0; i < 200; i++) {
        int fd = open(path, O_WRONLY | O_NONBLOCK);
        if (fd >= 0) {
            if (*text && write(fd, text, strlen(text)) < 0)
                perror("fake mps: reply");
            close(fd);
            return;
        }
        if (errno != ENXIO)
            return;
        struct timespec ts = {0, 10000000L};
        nanosleep(&ts, NULL);
    }
}

static int daemon_main(void)
{
    const char *fail = getenv("FAKEMPS_FAIL");
    if (fail && !strcmp(fail, "start")) {
        fprintf(stderr, "fake mps: cannot start: no CUDA-capable device is detected\n");
        return 1;
    }
    char buf[900];
    snprintf(buf, sizeof(buf), "start pid=%d visible=%s", (int)getpid(),
             getenv("CUDA_VISIBLE_DEVICES") ? getenv("CUDA_VISIBLE_DEVICES") : "");
    record(buf);
    if (fail && !strcmp(fail, "hang"))
        for (;;)
            pause();
    char ctl[600], pidf[600];
    snprintf(ctl, sizeof(ctl), "%s/control", pipe_dir);
    snprintf(pidf, sizeof(pidf), "%s/nvidia-cuda-mps-control.pid", pipe_dir);
    unlink(ctl);
    if (mkfifo(ctl, 0666) != 0) {
        perror("fake mps: mkfifo");
        return 1;
    }
    FILE *pf = fopen(pidf, "w");
    if (pf) {
        fprintf(pf, "%d\n", (int)getpid());
        fclose(pf);
    }
    int fd = open(ctl, O_RDWR); /* a writer of our own: no EOF between clients */
    if (fd < 0)
        return 1;
    FILE *in = fdopen(fd, "r");
    int pct = 100;
    char mem[16][64];
    for (int i = 0; i < 16; i++)
        snprintf(mem[i], sizeof(mem[i]), "0");
    char line[800];
    while (fgets(line, sizeof(line), in)) {
        line[strcspn(line, "\n")] = '\0';
        char *tab = strchr(line, '\t');
        if (!tab)
            continue;
        *tab = '\0';
        const char *who = line, *cmd = tab + 1;
        record(cmd);
        /* The real daemon grows as it starts servers: its virtual size is
         * no identity of the process (the agent once took it for one). */
        mmap(NULL, 1 << 20, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        char out[200] = "";
        int v, d;
        char val[64];
        if (sscanf(cmd, "set_default_active_thread_percentage %d", &v) == 1) {
            if (v < 1 || v > 100)
                snprintf(out, sizeof(out), "Invalid percentage %d\n", v);
            else
                pct = v;
        } else if (sscanf(cmd, "set_default_device_pinned_mem_limit %d %63s", &d, val) == 2) {
            if (d < 0 || d >= 16)
                snprintf(out, sizeof(out), "Invalid device %d\n", d);
            else if (!(fail && !strcmp(fail, "limits")))
                snprintf(mem[d], sizeof(mem[d]), "%s", val);
        } else if (!strcmp(cmd, "get_default_active_thread_percentage")) {
            snprintf(out, sizeof(out), "%d.0\n", pct);
        } else if (sscanf(cmd, "get_default_device_pinned_mem_limit %d", &d) == 1) {
            snprintf(out, sizeof(out), "%s\n", d >= 0 && d < 16 ? mem[d] : "Invalid device");
        } else if (!strcmp(cmd, "get_server_list")) {
            out[0] = '\0';
        } else if (!strcmp(cmd, "quit")) {
            /* beside the slice directories, which go with their slice */
            char q[700];
            snprintf(q, sizeof(q), "%s/../../fakemps-quits", log_dir);
            FILE *qf = fopen(q, "a");
            if (qf) {
                fprintf(qf, "%s\n", pipe_dir);
                fclose(qf);
            }
            unlink(ctl);
            unlink(pidf);
            reply(who, "");
            return 0;
        } else {
            snprintf(out, sizeof(out), "Unknown command: %s\n", cmd);
        }
        reply(who, out);
    }
    return 0;
}

static int client_main(void)
{
    char line[700];
    while (fgets(line, sizeof(line), stdin)) {
        line[strcspn(line, "\n")] = '\0';
        if (!*line)
            continue;
        char ctl[600], name[64], rpath[700];
        snprintf(ctl, sizeof(ctl), "%s/control", pipe_dir);
        int cfd = open(ctl, O_WRONLY | O_NONBLOCK);
        if (cfd < 0) {
            printf("Cannot find MPS control daemon process\n");
            return 1;
        }
        snprintf(name, sizeof(name), "reply.%d", (int)getpid());
        snprintf(rpath, sizeof(rpath), "%s/%s", pipe_dir, name);
        unlink(rpath);
        if (mkfifo(rpath, 0600) != 0) {
            close(cfd);
            return 1;
        }
        char msg[800];
        int n = snprintf(msg, sizeof(msg), "%s\t%s\n", name, line);
        if (write(cfd, msg, (size_t)n) != n) {
            close(cfd);
            unlink(rpath);
            return 1;
        }
        close(cfd);
        int rfd = open(rpath, O_RDONLY);
        char buf[512];
        ssize_t r;
        while (rfd >= 0 && (r = read(rfd, buf, sizeof(buf))) > 0)
            fwrite(buf, 1, (size_t)r, stdout);
        if (rfd >= 0)
            close(rfd);
        unlink(rpath);
    }
    return 0;
}

int main(int argc, char **argv)
{
    const char *p = getenv("CUDA_MPS_PIPE_DIRECTORY"), *l = getenv("CUDA_MPS_LOG_DIRECTORY");
    snprintf(pipe_dir, sizeof(pipe_dir), "%s", p ? p : "/tmp/nvidia-mps");
    snprintf(log_dir, sizeof(log_dir), "%s", l ? l : "/var/log/nvidia-mps");
    signal(SIGPIPE, SIG_IGN);
    if (argc > 1 && !strcmp(argv[1], "-f"))
        return daemon_main();
    if (argc > 1 && !strcmp(argv[1], "-d")) {
        pid_t pid = fork();
        if (pid != 0)
            return pid < 0;
        setsid();
        return daemon_main();
    }
    return client_main();
}
