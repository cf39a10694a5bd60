/* SPDX-License-Identifier: Apache-2.0 */
/* The workers a remote server leaves when it ends alone (node/orphans.h),
 * with this test process as the subreaper that flexpu-node is as PID 1 of
 * its container: the group is killed and its workers reaped, while a
 * supervised child leading its own group keeps its exit status for its
 * own waitpid, and a group id that now names a new leader (a reused pid)
 * is forgotten without taking that leader's status. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "node/orphans.h"

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

/* A server: its own session, two workers that wait (30 s at most), their pids
 * written to `out`, then it ends alone. */
static pid_t server(int out)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid > 0)
        return pid;
    setsid();
    for (int i = 0; i < 2; i++) {
        pid_t w = fork();
        if (w == 0) {
            alarm(30); /* a failed test leaves no worker for long */
            for (;;)
                pause();
        }
        if (write(out, &w, sizeof w) != sizeof w)
            _exit(1);
    }
    _exit(3);
}

/* A child leading its own group (as the agent's servers and daemons do)
 * that exits with `code` at once. */
static pid_t leader(int code)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        setpgid(0, 0);
        _exit(code);
    }
    setpgid(pid, pid);
    return pid;
}

static void test_server_ended_alone(void **state)
{
    (void)state;
    assert_int_equal(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t sv = server(fds[1]);
    pid_t w[2];
    size_t got = 0;
    while (got < sizeof w) {
        ssize_t n = read(fds[0], (char *)w + got, sizeof w - got);
        assert_true(n > 0);
        got += (size_t)n;
    }
    close(fds[0]);
    close(fds[1]);
    pid_t sup = leader(7);
    int st = 0;
    /* The supervision reaps its server, then hands over its group. */
    assert_int_equal(waitpid(sv, &st, 0), sv);
    assert_int_equal(WEXITSTATUS(st), 3);
    struct fx_orphans o = {0};
    fx_orphans_add(&o, sv);
    int reaped = 0;
    for (int i = 0; i < 500 && reaped < 2; i++) {
        reaped += fx_orphans_reap(&o);
        if (reaped < 2)
            sleep_ms(10);
    }
    assert_int_equal(reaped, 2);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(kill(w[i], 0), -1); /* gone, not a zombie */
        assert_int_equal(errno, ESRCH);
    }
    /* The group is forgotten once empty; the supervised child's status
     * was not taken. */
    assert_int_equal(fx_orphans_reap(&o), 0);
    for (int i = 0; i < FX_ORPHAN_GROUPS; i++)
        assert_int_equal(o.pgid[i], 0);
    assert_int_equal(waitpid(sup, &st, 0), sup);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 7);
}

static void test_reused_id_leads_a_new_group(void **state)
{
    (void)state;
    pid_t l = leader(5);
    /* Ended, not reaped: waited for with WNOWAIT. A fixed 100 ms assumed
     * the child had run by then; on a loaded machine one still running is
     * a live group (kept, and SIGKILLed by fx_orphans_add). */
    siginfo_t si;
    assert_int_equal(waitid(P_PID, (id_t)l, &si, WEXITED | WNOWAIT), 0);
    struct fx_orphans o = {0};
    fx_orphans_add(&o, l);
    assert_int_equal(fx_orphans_reap(&o), 0);
    for (int i = 0; i < FX_ORPHAN_GROUPS; i++)
        assert_int_equal(o.pgid[i], 0);
    int st = 0;
    assert_int_equal(waitpid(l, &st, 0), l);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 5);
}

static void test_table_full(void **state)
{
    (void)state;
    struct fx_orphans o = {0};
    /* Ids of no group (no process has them as a group): nothing killed. */
    pid_t base = 1 << 23; /* above the kernel's limit of pid_max (2^22) */
    for (pid_t i = 0; i < FX_ORPHAN_GROUPS + 2; i++)
        fx_orphans_add(&o, base + i);
    assert_int_equal(o.pgid[0], base + 2); /* the two oldest forgotten */
    assert_int_equal(o.pgid[FX_ORPHAN_GROUPS - 1], base + FX_ORPHAN_GROUPS + 1);
    fx_orphans_add(&o, base + 5); /* known already */
    assert_int_equal(o.pgid[FX_ORPHAN_GROUPS - 1], base + FX_ORPHAN_GROUPS + 1);
    /* None of them has a child of ours: all forgotten. */
    assert_int_equal(fx_orphans_reap(&o), 0);
    for (int i = 0; i < FX_ORPHAN_GROUPS; i++)
        assert_int_equal(o.pgid[i], 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_server_ended_alone),
        cmocka_unit_test(test_reused_id_leads_a_new_group),
        cmocka_unit_test(test_table_full),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
