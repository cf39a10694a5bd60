/* SPDX-License-Identifier: Apache-2.0 */
/* /proc/PID/stat's one reader (util/procstat.h): field 22 (the start time,
 * counted after the LAST ')') on literal lines whose name holds spaces and
 * ')', and on a live child whose start time is known from the clock and must
 * not move when the child grows (vsize, field 23, does). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/times.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "util/procstat.h"

/* A line as Linux 6.x writes it: fields 14 and 15 the CPU times (7, 3),
 * field 21 is 0, field 22 the start time (98765), field 23 the virtual size
 * (12345678). */
static const char LINE[] =
    "4242 (sleep) S 1 4240 4240 0 -1 4194560 101 0 0 0 7 3 0 0 20 0 1 0 98765 12345678 200 "
    "18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 17 3 0 0 0 0 0 0 0 0 0 0 0 0 0\n";

static void test_parse_line(void **state)
{
    (void)state;
    struct fx_procstat st;
    assert_int_equal(fx_procstat_parse(LINE, &st, NULL), 0);
    assert_int_equal(st.state, 'S');
    assert_int_equal(st.ppid, 1);
    assert_int_equal(st.pgrp, 4240);
    assert_true(st.utime == 7ull);
    assert_true(st.stime == 3ull);
    assert_true(st.start_time == 98765ull);
    assert_false(fx_procstat_ended(&st));
}

/* The name is the process's to choose: spaces, ')' and even ") Z " in it
 * must not shift the fields nor fake a zombie. */
static void test_parse_hostile_name(void **state)
{
    (void)state;
    struct fx_procstat st;
    const char *line = "77 (a) Z 9 9 (b) R 5 77 77 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 555 999 0\n";
    assert_int_equal(fx_procstat_parse(line, &st, NULL), 0);
    assert_int_equal(st.state, 'R');
    assert_int_equal(st.ppid, 5);
    assert_int_equal(st.pgrp, 77);
    assert_true(st.start_time == 555ull);

    const char *zombie = "78 (x) y) Z 5 78 78 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 556 0 0\n";
    assert_int_equal(fx_procstat_parse(zombie, &st, NULL), 0);
    assert_int_equal(st.state, 'Z');
    assert_true(fx_procstat_ended(&st));
    assert_true(st.start_time == 556ull);
}

/* Bad text is an error naming the field and value, and leaves *out alone. */
static void test_parse_bad(void **state)
{
    (void)state;
    static const struct {
        const char *text, *says;
    } bad[] = {
        {"", "no ')'"},
        {"12 (name S 1 2 3", "no ')'"},
        {"12 (n) S 1 2 3 4\n", "field '8 (unused)'"},
        {"12 (n) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18", "field '22 (starttime)'"},
        {"12 (n) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 x9 20",
         "'22 (starttime)': invalid value 'x9'"},
        {"12 (n) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 -5 20", "'-5'"},
        {"12 (n) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 99999999999999999999 20",
         "not a number in range"},
        {"12 (n) SS 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20", "'3 (state)'"},
        {"12 (n) S 1 2 3 4 5 6 7 8 9 10 1.5 12 13 14 15 16 17 18 19 20", "'14 (utime)'"},
        {"12 (n) S 1 2 3 4 5 6 7 8 9 10 11 - 13 14 15 16 17 18 19 20", "'15 (stime)'"},
        {"12 (n) S 1 2x 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20", "'5 (pgrp)'"},
        {"12 (n) S 3000000000 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20", "'4 (ppid)'"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct fx_procstat st = {.state = '?', .ppid = -7, .pgrp = -7, .start_time = 7};
        struct flexpu_error err = {0};
        assert_int_equal(fx_procstat_parse(bad[i].text, &st, &err), FLEXPU_EPARSE);
        if (!strstr(err.msg, bad[i].says))
            fail_msg("case %zu: '%s' lacks '%s'", i, err.msg, bad[i].says);
        assert_int_equal(st.state, '?');
        assert_int_equal(st.ppid, -7);
        assert_true(st.start_time == 7);
    }
    assert_int_equal(fx_procstat_parse(NULL, &(struct fx_procstat){0}, NULL), FLEXPU_EPARSE);
}

/* Clock ticks since boot, the unit and clock of field 22. */
static double boot_ticks(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_BOOTTIME, &ts);
    return ((double)ts.tv_sec + (double)ts.tv_nsec * 1e-9) * (double)sysconf(_SC_CLK_TCK);
}

/* Pages of virtual memory of pid, from /proc/PID/statm (not stat). */
static long vsize_pages(pid_t pid)
{
    char path[64];
    long pages = -1;
    snprintf(path, sizeof(path), "/proc/%d/statm", (int)pid);
    FILE *f = fopen(path, "re");
    if (f && fscanf(f, "%ld", &pages) != 1)
        pages = -1;
    if (f)
        fclose(f);
    return pages;
}

/* A child named with spaces and ')' that maps 64 MiB when told, then waits. */
static pid_t start_child(int *cmd)
{
    int p[2];
    assert_int_equal(pipe(p), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(p[1]);
        prctl(PR_SET_NAME, "a) Z 1 (b", 0, 0, 0);
        char c;
        while (read(p[0], &c, 1) == 1) {
            void *m = mmap(NULL, 64u << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                           -1, 0);
            (void)m;
        }
        _exit(0);
    }
    close(p[0]);
    *cmd = p[1];
    return pid;
}

/* Waits (bounded) until pid's state is want; the last state read. */
static char wait_state(pid_t pid, char want)
{
    struct fx_procstat st = {0};
    for (int i = 0; i < 1000; i++) {
        if (fx_procstat_read(pid, &st, NULL) == 0 && st.state == want)
            break;
        usleep(10000);
    }
    return st.state;
}

/* This process's CPU time as times(2) counts it, read around the parse. */
static void test_read_cpu_time(void **state)
{
    (void)state;
    struct tms t0, t1;
    /* Some CPU time first, so that a field read as zero would show. */
    volatile unsigned long spin = 0;
    do {
        for (int i = 0; i < 1000000; i++)
            spin += (unsigned long)i;
        times(&t0);
    } while (t0.tms_utime + t0.tms_stime < 3);
    assert_true(spin > 0);
    struct fx_procstat st;
    assert_int_equal(fx_procstat_read(getpid(), &st, NULL), 0);
    times(&t1);
    assert_int_equal(st.state, 'R');
    if (st.utime < (unsigned long long)t0.tms_utime ||
        st.utime > (unsigned long long)t1.tms_utime ||
        st.stime < (unsigned long long)t0.tms_stime || st.stime > (unsigned long long)t1.tms_stime)
        fail_msg("utime %llu stime %llu not within times() %ld..%ld, %ld..%ld", st.utime,
                 st.stime, (long)t0.tms_utime, (long)t1.tms_utime, (long)t0.tms_stime,
                 (long)t1.tms_stime);
}

static void test_read_live_child(void **state)
{
    (void)state;
    int cmd;
    double before = boot_ticks();
    pid_t pid = start_child(&cmd);
    double after = boot_ticks();

    /* Asleep on its pipe, it has its name set. */
    assert_int_equal(wait_state(pid, 'S'), 'S');
    struct fx_procstat st;
    assert_int_equal(fx_procstat_read(pid, &st, NULL), 0);
    assert_int_equal(st.ppid, (int)getpid());
    assert_int_equal(st.pgrp, (int)getpgrp());
    /* Started between the two readings of the clock (a tick of rounding
     * either side); vsize or any other field would not be. */
    if ((double)st.start_time < before - 1 || (double)st.start_time > after + 1)
        fail_msg("start time %llu not within [%.0f, %.0f]", st.start_time, before, after);

    /* It grows: vsize (field 23) changes, its start time does not. */
    long pages = vsize_pages(pid);
    assert_int_equal(write(cmd, "m", 1), 1);
    for (int i = 0; i < 1000 && vsize_pages(pid) == pages; i++)
        usleep(10000);
    assert_true(vsize_pages(pid) != pages);
    struct fx_procstat grown;
    assert_int_equal(fx_procstat_read(pid, &grown, NULL), 0);
    assert_true(grown.start_time == st.start_time);
    assert_false(fx_procstat_ended(&grown));

    /* Ended and not reaped: a zombie, still there; reaped: no such process. */
    close(cmd);
    assert_int_equal(wait_state(pid, 'Z'), 'Z');
    assert_int_equal(fx_procstat_read(pid, &st, NULL), 0);
    assert_true(fx_procstat_ended(&st));
    assert_true(st.start_time == grown.start_time);
    assert_int_equal(waitpid(pid, NULL, 0), pid);
    struct flexpu_error err = {0};
    assert_int_equal(fx_procstat_read(pid, &st, &err), FLEXPU_ENOENT);
    assert_non_null(strstr(err.msg, "/stat"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_line),
        cmocka_unit_test(test_parse_hostile_name),
        cmocka_unit_test(test_parse_bad),
        cmocka_unit_test(test_read_cpu_time),
        cmocka_unit_test(test_read_live_child),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
