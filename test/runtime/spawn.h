/* SPDX-License-Identifier: Apache-2.0 */
/* Starting a CUDA client as a container would run it, for the runtime tests
 * (include after cmocka.h): the library preloaded, the fake driver on the
 * library path, the test's state and fake directories, the caller's
 * NAME=VALUE pairs first (getenv takes the first of duplicates), then the
 * defaults; stdin and stdout piped. */
#ifndef FX_TEST_SPAWN_H
#define FX_TEST_SPAWN_H

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

struct fx_spawned {
    pid_t pid;
    FILE *to, *from;
};

static inline void fx_spawn(struct fx_spawned *p, const char *lib, char *const argv[],
                            const char *state_dir, const char *fake_dir,
                            const char *const *extra, const char *const *defaults)
{
    int in[2], out[2];
    assert_int_equal(pipe(in), 0);
    assert_int_equal(pipe(out), 0);
    char buf[4][300];
    snprintf(buf[0], sizeof(buf[0]), "LD_PRELOAD=%s", lib);
    snprintf(buf[1], sizeof(buf[1]), "LD_LIBRARY_PATH=%s", FX_TEST_FAKE_DIR);
    snprintf(buf[2], sizeof(buf[2]), "FLEXPU_STATE_DIR=%s", state_dir);
    snprintf(buf[3], sizeof(buf[3]), "FAKECUDA_DIR=%s", fake_dir);
    char *env[48];
    int n = 0;
    for (int i = 0; extra && extra[i] && n < 20; i++)
        env[n++] = (char *)extra[i];
    for (int i = 0; i < 4; i++)
        env[n++] = buf[i];
    for (int i = 0; defaults && defaults[i] && n < 40; i++)
        env[n++] = (char *)defaults[i];
    /* Sanitizer builds: the preloaded library's instrumentation needs the
     * runtime the client carries; leaks of killed children are noise. */
    env[n++] = "ASAN_OPTIONS=detect_leaks=0";
    env[n] = NULL;
    p->pid = fork();
    assert_true(p->pid >= 0);
    if (p->pid == 0) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        close(in[1]);
        close(out[0]);
        execve(argv[0], argv, env);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    p->to = fdopen(in[1], "w");
    p->from = fdopen(out[0], "r");
    setvbuf(p->to, NULL, _IOLBF, 0);
}

/* A client driven command by command (cuda_client's protocol). */
struct fx_client {
    pid_t pid;
    FILE *to, *from;
    char line[512];
};

/* Starts program `prog` as client c, as fx_spawn does. */
static inline void fx_client_spawn(struct fx_client *c, const char *lib, const char *prog,
                                   const char *state_dir, const char *fake_dir,
                                   const char *const *extra, const char *const *defaults)
{
    char *argv[] = {(char *)prog, NULL};
    struct fx_spawned p;
    fx_spawn(&p, lib, argv, state_dir, fake_dir, extra, defaults);
    c->pid = p.pid;
    c->to = p.to;
    c->from = p.from;
}

/* Sends one command; returns its reply line without the newline ("eof"
 * when the client is gone). */
static inline const char *fx_cmd(struct fx_client *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfprintf(c->to, fmt, ap);
    va_end(ap);
    fputc('\n', c->to);
    fflush(c->to);
    if (!fgets(c->line, sizeof(c->line), c->from))
        snprintf(c->line, sizeof(c->line), "eof");
    c->line[strcspn(c->line, "\n")] = '\0';
    return c->line;
}

#endif
