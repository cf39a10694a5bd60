/* SPDX-License-Identifier: Apache-2.0 */
/* No hang at exit, ever: a process under libflexpu-cuda.so is gone soon
 * after exit(), a return from main, SIGTERM or SIGINT, whatever its threads
 * are doing in the driver and whatever its exit handlers and destructors
 * still call (shutdown_client mimics JAX's shutdown). The bound is a hang
 * detector, not a timing requirement. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "runtime/state.h"
#include "spawn.h"

#define GONE_WITHIN_MS 5000
#define READY_WITHIN_MS 20000

static char state_dir[256];
static char fake_dir[256];



static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Starts `argv` as a container would run it (spawn.h), with `extra`
 * NAME=VALUE pairs (NULL-ended). */
static void spawn(struct fx_spawned *p, char *const argv[], const char *const *extra)
{
    static const char *const defaults[] = {"FAKECUDA_TOTAL_MEM=17179869184",
                                           "FLEXPU_CONTEXT_OVERHEAD=0", "FLEXPU_LOG_LEVEL=error",
                                           NULL};
    fx_spawn(p, FX_TEST_LIB, argv, state_dir, fake_dir, extra, defaults);
}

/* The next line of output, waiting at most `ms`; NULL on timeout or EOF. */
static const char *line_within(struct fx_spawned *p, int ms, char *buf, size_t len)
{
    struct pollfd pfd = {fileno(p->from), POLLIN, 0};
    if (poll(&pfd, 1, ms) != 1 || !fgets(buf, (int)len, p->from))
        return NULL;
    buf[strcspn(buf, "\n")] = '\0';
    return buf;
}

/* Reaps `pid` if it ends within `ms`; otherwise kills it (so a hang fails
 * the test instead of hanging it) and returns 0. */
static int gone_within(pid_t pid, int ms, int *status, uint64_t *took_ms)
{
    uint64_t t0 = now_ms();
    while (now_ms() - t0 < (uint64_t)ms) {
        if (waitpid(pid, status, WNOHANG) == pid) {
            *took_ms = now_ms() - t0;
            return 1;
        }
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    kill(pid, SIGKILL);
    waitpid(pid, status, 0);
    *took_ms = now_ms() - t0;
    return 0;
}

static void proc_close(struct fx_spawned *p)
{
    if (p->to)
        fclose(p->to);
    if (p->from)
        fclose(p->from);
    p->to = p->from = NULL;
}

/* Another tenant keeping the GPU busy with 1 ms kernels for a minute: at
 * high priority it holds the GPU whenever it has work. */
static void competitor_start(struct fx_spawned *c, const char *priority)
{
    static char prio[64];
    snprintf(prio, sizeof(prio), "FLEXPU_PRIORITY=%s", priority);
    const char *const env[] = {"FLEXPU_TENANT=other", "FLEXPU_COMPUTE_SHARE=50", prio, NULL};
    char *argv[] = {(char *)FX_TEST_CLIENT, NULL};
    spawn(c, argv, env);
    char line[128];
    fprintf(c->to, "init\n");
    assert_string_equal(line_within(c, READY_WITHIN_MS, line, sizeof(line)), "ok");
    fprintf(c->to, "ctx 0\n");
    assert_string_equal(line_within(c, READY_WITHIN_MS, line, sizeof(line)), "ok");
    fprintf(c->to, "burn 1000 60000\n");
    struct timespec ts = {0, 200 * 1000 * 1000};
    nanosleep(&ts, NULL);
}

static void competitor_stop(struct fx_spawned *c)
{
    kill(c->pid, SIGKILL);
    waitpid(c->pid, NULL, 0);
    proc_close(c);
}

/* Holds the GPU state's writers' lock, as a tenant frozen inside it would
 * (docker pause, SIGSTOP at the wrong instant). Returns the descriptor. */
static int freeze_state_lock(void)
{
    DIR *d = opendir(state_dir);
    assert_non_null(d);
    char path[600] = "";
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t n = strlen(e->d_name);
        if (n > 6 && !strcmp(e->d_name + n - 6, ".state"))
            snprintf(path, sizeof(path), "%s/%s", state_dir, e->d_name);
    }
    closedir(d);
    int fd = open(path, O_RDWR | O_CLOEXEC);
    assert_true(fd >= 0);
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = FX_LOCK_WRITERS,
                       .l_len = 1};
    /* Waiting: the lock's live users take it for microseconds at a time. */
    assert_int_equal(fcntl(fd, F_OFD_SETLKW, &fl), 0);
    return fd;
}

enum ending { BY_EXIT, BY_RETURN, BY_SIGNAL, BY_SIGNAL_FLAG };

struct scenario {
    const char *actors;
    enum ending ending;
    int sig;                   /* BY_SIGNAL, BY_SIGNAL_FLAG */
    const char *competitor;    /* priority of a busy other tenant, or NULL */
    int freeze;                /* hold the state lock while it ends */
    const char *const *env;    /* this tenant's configuration */
};

static void run(const struct scenario *s)
{
    struct fx_spawned other = {0}, c = {0};
    if (s->competitor)
        competitor_start(&other, s->competitor);
    static const char *const ends[] = {"exit", "return", "wait", "flag"};
    char *argv[] = {(char *)FX_TEST_SHUTDOWN_CLIENT, (char *)s->actors,
                    (char *)ends[s->ending], NULL};
    spawn(&c, argv, s->env);
    char line[128];
    const char *r = line_within(&c, READY_WITHIN_MS, line, sizeof(line));
    if (!r || strcmp(r, "ready") != 0) {
        kill(c.pid, SIGKILL);
        waitpid(c.pid, NULL, 0);
        if (s->competitor)
            competitor_stop(&other);
        fail_msg("shutdown_client %s did not get ready: %s", s->actors, r ? r : "(nothing)");
    }
    int frozen = s->freeze ? freeze_state_lock() : -1;
    if (s->ending == BY_EXIT || s->ending == BY_RETURN) {
        fprintf(c.to, "go\n");
    } else {
        /* While it works (main inside its launches), not at the instant it
         * printed "ready". */
        struct timespec ts = {0, 300 * 1000 * 1000};
        nanosleep(&ts, NULL);
        kill(c.pid, s->sig);
    }
    int status = 0;
    uint64_t took = 0;
    int gone = gone_within(c.pid, GONE_WITHIN_MS, &status, &took);
    if (frozen >= 0)
        close(frozen);
    proc_close(&c);
    if (s->competitor)
        competitor_stop(&other);
    print_message("%s %s: %s after %llu ms (status %#x)\n", s->actors, ends[s->ending],
                  gone ? "gone" : "STILL RUNNING", (unsigned long long)took, status);
    if (!gone)
        fail_msg("still running %d ms after it was asked to end: a hang", GONE_WITHIN_MS);
    if (s->ending == BY_SIGNAL) {
        assert_true(WIFSIGNALED(status));
        assert_int_equal(WTERMSIG(status), s->sig);
    } else {
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), s->ending == BY_SIGNAL_FLAG ? 3 : 0);
    }
}

static const char *const alone[] = {"FLEXPU_TENANT=t", "FLEXPU_COMPUTE_SHARE=50", NULL};
static const char *const low[] = {"FLEXPU_TENANT=t", "FLEXPU_COMPUTE_SHARE=50",
                                  "FLEXPU_PRIORITY=low", NULL};
static const char *const capped[] = {"FLEXPU_TENANT=t", "FLEXPU_COMPUTE_SHARE=10",
                                     "FLEXPU_COMPUTE_CAP=10", NULL};
static const char *const quota[] = {"FLEXPU_TENANT=t", "FLEXPU_MEMORY_LIMIT=1Gi", NULL};

#define EVERYTHING "loop,long,sync,atexit,dtor,join"

/* Alone on the GPU (the fast path, markers in flight, the monitor running):
 * exit() and a return from main with every kind of thread and teardown. */
static void test_exit_alone(void **state)
{
    (void)state;
    struct scenario s = {.actors = EVERYTHING, .ending = BY_EXIT, .env = alone};
    run(&s);
}

static void test_return_from_main_alone(void **state)
{
    (void)state;
    struct scenario s = {.actors = EVERYTHING, .ending = BY_RETURN, .env = alone};
    run(&s);
}

/* The GPU held by another tenant that never lets go (it has priority and
 * always has work): the threads wait for a slice that never comes, and the
 * teardown launches too. */
static void test_exit_while_waiting_for_the_gpu(void **state)
{
    (void)state;
    struct scenario s = {.actors = "loop,long,atexit,dtor,join", .ending = BY_EXIT,
                         .competitor = "high", .env = low};
    run(&s);
}

/* Beside a tenant of equal priority: slices do come. */
static void test_exit_while_sharing_the_gpu(void **state)
{
    (void)state;
    struct scenario s = {.actors = EVERYTHING, .ending = BY_EXIT, .competitor = "normal",
                         .env = alone};
    run(&s);
}

/* Capped at 10%: long kernels overdraw the budget, and every launch of the
 * teardown would wait for it to refill. */
static void test_exit_capped(void **state)
{
    (void)state;
    struct scenario s = {.actors = "loop,long,atexit,dtor,join", .ending = BY_EXIT, .env = capped};
    run(&s);
}

/* An allocation refused for the quota just before the end (JAX after cuBLAS
 * could not get its workspace). */
static void test_exit_after_a_refused_allocation(void **state)
{
    (void)state;
    struct scenario s = {.actors = EVERYTHING ",oom", .ending = BY_EXIT, .env = quota};
    run(&s);
}

/* Another tenant frozen inside the GPU state's lock while this process
 * tears down (frees, context destruction: all credits). */
static void test_exit_while_a_peer_holds_the_state_lock(void **state)
{
    (void)state;
    struct scenario s = {.actors = "loop,long,atexit,dtor", .ending = BY_EXIT, .freeze = 1,
                         .env = alone};
    run(&s);
}

/* The same beside another tenant: the threads are stuck waiting for that
 * lock inside the arbiter, and so may be the monitor. */
static void test_exit_sharing_while_a_peer_holds_the_state_lock(void **state)
{
    (void)state;
    struct scenario s = {.actors = "loop,long,atexit,dtor", .ending = BY_EXIT, .freeze = 1,
                         .competitor = "normal", .env = alone};
    run(&s);
}

/* Default dispositions: the signal ends the process wherever its threads
 * wait. */
static void test_sigterm_default(void **state)
{
    (void)state;
    struct scenario s = {.actors = "loop,long,sync,atexit,dtor", .ending = BY_SIGNAL,
                         .sig = SIGTERM, .competitor = "high", .env = low};
    run(&s);
}

static void test_sigint_default(void **state)
{
    (void)state;
    struct scenario s = {.actors = "loop,long,sync,atexit,dtor", .ending = BY_SIGNAL,
                         .sig = SIGINT, .env = alone};
    run(&s);
}

/* Python's way: the handler only sets a flag, and main, launching, must get
 * back to check it even though its launches wait for a GPU held by another
 * tenant; then exit() runs the whole teardown. */
static void test_sigterm_flag_while_main_waits_for_the_gpu(void **state)
{
    (void)state;
    struct scenario s = {.actors = "loop,long,atexit,dtor,join", .ending = BY_SIGNAL_FLAG,
                         .sig = SIGTERM, .competitor = "high", .env = low};
    run(&s);
}

static void test_sigint_flag_capped(void **state)
{
    (void)state;
    struct scenario s = {.actors = "loop,long,atexit,dtor,join", .ending = BY_SIGNAL_FLAG,
                         .sig = SIGINT, .env = capped};
    run(&s);
}

static void test_sigint_flag_alone(void **state)
{
    (void)state;
    struct scenario s = {.actors = EVERYTHING, .ending = BY_SIGNAL_FLAG, .sig = SIGINT,
                         .env = alone};
    run(&s);
}

static int setup(void **state)
{
    (void)state;
    snprintf(state_dir, sizeof(state_dir), "/tmp/fxsd-state-XXXXXX");
    assert_non_null(mkdtemp(state_dir));
    snprintf(fake_dir, sizeof(fake_dir), "/tmp/fxsd-fake-XXXXXX");
    assert_non_null(mkdtemp(fake_dir));
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char c[600];
    snprintf(c, sizeof(c), "rm -rf %s %s", state_dir, fake_dir);
    return system(c) == 0 ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_exit_alone, setup, teardown),
        cmocka_unit_test_setup_teardown(test_return_from_main_alone, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exit_while_waiting_for_the_gpu, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exit_while_sharing_the_gpu, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exit_capped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exit_after_a_refused_allocation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exit_while_a_peer_holds_the_state_lock, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_exit_sharing_while_a_peer_holds_the_state_lock,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_sigterm_default, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sigint_default, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sigterm_flag_while_main_waits_for_the_gpu, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_sigint_flag_capped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sigint_flag_alone, setup, teardown),
    };
    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
