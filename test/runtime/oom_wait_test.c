/* SPDX-License-Identifier: Apache-2.0 */
/* Borrowed memory given back before an owner is refused (oom_wait.h), on the
 * fake driver with node-wide device memory (FAKECUDA_NODE_MEM=1): a
 * "borrower" process holds most of the GPU; the owner's allocation, within
 * its quota, waits while the borrower is killed and then succeeds; nobody
 * freeing, it gets the out-of-memory error after its bound; without a mark
 * on its GPU, or as a borrower, it never waits. Also how a pool allocation
 * and the other threads of its process meet (its wait, its settle). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "runtime/oom_wait.h"
#include "spawn.h"

#define MIB (1024ull * 1024)

static char state_dir[256], fake_dir[256], marks[300], uuid[128];

static void start(struct fx_client *c, const char *const *extra)
{
    static const char *const defaults[] = {
        "FAKECUDA_TOTAL_MEM=1073741824", "FAKECUDA_CTX_OVERHEAD=0", "FAKECUDA_NODE_MEM=1",
        "FLEXPU_CONTEXT_OVERHEAD=0", "FLEXPU_LOG_LEVEL=error", NULL};
    fx_client_spawn(c, FX_TEST_LIB, FX_TEST_CLIENT, state_dir, fake_dir, extra, defaults);
    assert_string_equal(fx_cmd(c, "init"), "ok");
    assert_string_equal(fx_cmd(c, "ctx 0"), "ok");
}

static void stop(struct fx_client *c, int sig)
{
    if (sig)
        kill(c->pid, sig);
    else
        fprintf(c->to, "exit\n");
    fclose(c->to);
    fclose(c->from);
    int st;
    waitpid(c->pid, &st, 0);
}

/* Sends a command whose answer is read later (fx_answer). */
static void fx_send(struct fx_client *c, const char *cmd)
{
    fprintf(c->to, "%s\n", cmd);
    fflush(c->to);
}
static const char *fx_answer(struct fx_client *c)
{
    if (!fgets(c->line, sizeof(c->line), c->from))
        snprintf(c->line, sizeof(c->line), "eof");
    c->line[strcspn(c->line, "\n")] = '\0';
    return c->line;
}

/* The next answer if one comes within ms, else "timeout". Only for a
 * moment when no earlier line can be left in the stream's buffer (poll
 * sees the pipe, not the buffer): every line written so far was read. */
static const char *answer_within(struct fx_client *c, int ms)
{
    struct pollfd p = {fileno(c->from), POLLIN, 0};
    if (poll(&p, 1, ms) != 1) {
        snprintf(c->line, sizeof(c->line), "timeout");
        return c->line;
    }
    return fx_answer(c);
}

/* Background answers ("bg ...", cuda_client's bgasync) that came before a
 * command's own answer, kept for bg_answer. */
static char bg_lines[4][600];
static int n_bg;

/* Sends a command and returns its own answer, keeping background lines. */
static const char *cmd_fg(struct fx_client *c, const char *cmd)
{
    fx_send(c, cmd);
    for (;;) {
        const char *a = fx_answer(c);
        if (strncmp(a, "bg ", 3) != 0)
            return a;
        assert_true(n_bg < 4);
        snprintf(bg_lines[n_bg++], sizeof(bg_lines[0]), "%s", a);
    }
}

/* The next background answer: a kept one, else the next line. */
static void bg_answer(struct fx_client *c, char *buf, size_t len)
{
    if (n_bg > 0) {
        snprintf(buf, len, "%s", bg_lines[0]);
        memmove(bg_lines[0], bg_lines[1], sizeof(bg_lines) - sizeof(bg_lines[0]));
        n_bg--;
        return;
    }
    snprintf(buf, len, "%s", fx_answer(c));
}

/* The id of an "ok ID" answer. */
static int id_in(const char *answer)
{
    assert_true(strncmp(answer, "ok ", 3) == 0);
    return atoi(answer + 3);
}

/* What the fake driver says process pid holds on device 0 (FAKECUDA_NODE_MEM
 * publishes it in <fake_dir>/mem.<pid>): the device's truth. */
static uint64_t fake_used(pid_t pid)
{
    char path[400];
    snprintf(path, sizeof(path), "%s/mem.%d", fake_dir, (int)pid);
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    uint64_t v = 0;
    assert_int_equal(pread(fd, &v, sizeof(v), 0), (ssize_t)sizeof(v));
    close(fd);
    return v;
}

/* What the library has booked for the owner (its quota less the free memory
 * cuMemGetInfo shows; pools are settled first). */
static uint64_t booked(struct fx_client *o)
{
    unsigned long long f = 0, t = 0;
    assert_int_equal(sscanf(cmd_fg(o, "meminfo"), "ok %llu %llu", &f, &t), 2);
    return t - f;
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* The fake's device 0 as the library names it: its ledger file's name. */
static void learn_uuid(const char *tenant)
{
    char dir[400];
    snprintf(dir, sizeof(dir), "%s/ledger/%s", state_dir, tenant);
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *e;
    uuid[0] = '\0';
    while ((e = readdir(d))) {
        size_t n = strlen(e->d_name);
        if (n > 7 && strcmp(e->d_name + n - 7, ".ledger") == 0)
            snprintf(uuid, sizeof(uuid), "%.*s", (int)(n - 7), e->d_name);
    }
    closedir(d);
    assert_true(uuid[0] != '\0');
}

static void mark(int on)
{
    char path[512];
    assert_int_equal(fx_borrowed_marker_path(marks, uuid, path, sizeof(path)), 0);
    if (on) {
        FILE *f = fopen(path, "w");
        assert_non_null(f);
        fclose(f);
    } else {
        unlink(path);
    }
}

static int wants(const char *tenant)
{
    char dir[400];
    snprintf(dir, sizeof(dir), "%s/ledger/%s", state_dir, tenant);
    return fx_want_pending(dir, uuid, (int64_t)time(NULL), 60);
}

/* Waits (10 s at most) for the owner's want to appear. */
static int want_appears(const char *tenant)
{
    for (int i = 0; i < 1000; i++) {
        if (wants(tenant))
            return 1;
        usleep(10000);
    }
    return 0;
}

static int setup(void **state)
{
    (void)state;
    snprintf(state_dir, sizeof(state_dir), "/tmp/fxoom-state-XXXXXX");
    assert_non_null(mkdtemp(state_dir));
    snprintf(fake_dir, sizeof(fake_dir), "/tmp/fxoom-fake-XXXXXX");
    assert_non_null(mkdtemp(fake_dir));
    snprintf(marks, sizeof(marks), "%s/borrowed", state_dir);
    assert_int_equal(mkdir(marks, 0755), 0);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char c[700];
    snprintf(c, sizeof(c), "rm -rf %s %s", state_dir, fake_dir);
    return system(c) == 0 ? 0 : -1;
}

static const char *const borrower_env[] = {"FLEXPU_TENANT=b", "FLEXPU_MEMORY_LIMIT=768Mi",
                                           NULL};

/* A borrower holding 768 of the GPU's 1024 MiB. */
static void borrower_holds(struct fx_client *b)
{
    start(b, borrower_env);
    assert_true(strncmp(fx_cmd(b, "alloc 805306368"), "ok", 2) == 0);
}

static void owner(struct fx_client *o, const char *wait_ms)
{
    char w[64], d[400];
    snprintf(w, sizeof(w), "FLEXPU_OOM_WAIT_MS=%s", wait_ms);
    snprintf(d, sizeof(d), "FLEXPU_BORROWED_DIR=%s", marks);
    const char *const env[] = {"FLEXPU_TENANT=o", "FLEXPU_MEMORY_LIMIT=512Mi", w, d, NULL};
    start(o, env);
    /* 128 MiB first: the owner is attached and its GPU known. */
    assert_true(strncmp(fx_cmd(o, "alloc 134217728"), "ok", 2) == 0);
    learn_uuid("o");
}

static void test_owner_gets_memory_once_the_borrower_is_killed(void **state)
{
    (void)state;
    struct fx_client b, o;
    borrower_holds(&b);
    owner(&o, "60000");
    mark(1);
    /* 256 MiB more: within the owner's 512 MiB, but the borrower holds it. */
    fx_send(&o, "alloc 268435456");
    assert_true(want_appears("o"));
    uint64_t t0 = now_ms();
    stop(&b, SIGKILL);
    const char *a = fx_answer(&o);
    uint64_t t1 = now_ms();
    assert_true(strncmp(a, "ok", 2) == 0);
    print_message("kill-to-allocation on the fake driver: %llu ms\n",
                  (unsigned long long)(t1 - t0));
    assert_false(wants("o"));
    stop(&o, 0);
}

/* A stream-ordered allocation (the default pool) waits the same way. */
static void test_pool_allocation_waits_too(void **state)
{
    (void)state;
    struct fx_client b, o;
    borrower_holds(&b);
    owner(&o, "60000");
    mark(1);
    fx_send(&o, "async 268435456");
    assert_true(want_appears("o"));
    stop(&b, SIGKILL);
    assert_true(strncmp(fx_answer(&o), "ok", 2) == 0);
    assert_false(wants("o"));
    stop(&o, 0);
}

/* Thread A's pool allocation of a_bytes, sent while the GPU is marked and
 * borrower b holds the memory, waits (its want appears); the main thread's
 * b_bytes is then sent beside it. r->b: the main thread's answer within
 * 10 s, else "late " and the answer it got after A's; r->a_waiting: A's want
 * still there when that answer came (or did not); r->a: A's answer once b
 * is killed. */
struct beside {
    char a[600], b[600];
    int a_waiting;
};
static void beside_a_wait(struct fx_client *o, struct fx_client *b, uint64_t a_bytes,
                          uint64_t b_bytes, struct beside *r)
{
    char cmd[64];
    snprintf(cmd, sizeof(cmd), "bgasync %llu", (unsigned long long)a_bytes);
    assert_string_equal(fx_cmd(o, cmd), "ok");
    assert_true(want_appears("o"));
    snprintf(cmd, sizeof(cmd), "async %llu", (unsigned long long)b_bytes);
    fx_send(o, cmd);
    snprintf(r->b, sizeof(r->b), "%s", answer_within(o, 10000));
    r->a_waiting = wants("o");
    stop(b, SIGKILL);
    snprintf(r->a, sizeof(r->a), "%s", fx_answer(o));
    if (strcmp(r->b, "timeout") == 0)
        snprintf(r->b, sizeof(r->b), "late %.500s", fx_answer(o));
}

/* A pool allocation waiting for borrowers holds no other pool allocation
 * of its process: thread A's 256 MiB waits (the borrower holds the memory);
 * the main thread's 2 MiB, within the quota and the device's free memory,
 * is answered while A still provably waits (its want is there, the
 * borrower alive). Before, it waited behind A's wait. */
static void test_pool_wait_holds_no_other_pool_allocation(void **state)
{
    (void)state;
    struct fx_client b, o;
    borrower_holds(&b);
    owner(&o, "30000");
    mark(1);
    struct beside r;
    beside_a_wait(&o, &b, 268435456, 2097152, &r);
    stop(&o, 0);
    assert_true(strncmp(r.b, "ok", 2) == 0);
    assert_true(r.a_waiting);
    assert_true(strncmp(r.a, "bg ok", 5) == 0);
}

/* While it waits, a pool allocation keeps its place in the quota: booked at
 * its whole size, so it counts on none of the pool's free memory, which
 * another thread may take. The owner (512 MiB) holds 128 MiB and a pool
 * with 256 MiB free; the borrower fills the device. A asks 384 MiB (its
 * estimate: the pool grows by 128) and waits; B's 128 MiB, which the free
 * memory A's estimate counted on would serve, is refused at once by the
 * quota (128 + 384 + 128 > 512) instead of taking A's place, and A gets its
 * memory once the borrower is killed. The owner's memory on the device and
 * its booking stay within the quota and agree. */
static void test_a_waiting_pool_allocation_keeps_its_place(void **state)
{
    (void)state;
    struct fx_client b, o;
    owner(&o, "30000");
    int f = id_in(cmd_fg(&o, "async 268435456"));
    char cmd[64];
    snprintf(cmd, sizeof(cmd), "asyncfree %d", f);
    assert_string_equal(cmd_fg(&o, cmd), "ok");
    start(&b, borrower_env);
    assert_true(strncmp(fx_cmd(&b, "alloc 671088640"), "ok", 2) == 0); /* the device full */
    mark(1);
    struct beside r;
    beside_a_wait(&o, &b, 402653184, 134217728, &r);
    uint64_t dev = fake_used(o.pid), book = booked(&o);
    stop(&o, 0);
    assert_string_equal(r.b, "err 2");
    assert_true(r.a_waiting);
    assert_true(strncmp(r.a, "bg ok", 5) == 0);
    assert_true(dev <= 512 * MIB);
    assert_int_equal(book, dev);
}

/* Two pool allocations of one process admitted at once against the same
 * free memory, one of them waiting for the borrower's memory: 384 and 256
 * MiB, each within the quota (512 MiB, 128 held) beside the pool's 256 MiB
 * of free memory, both together not. Each iteration, one asks first and
 * waits (the borrower's memory freed once its want is there), or both ask
 * at once and the borrower frees after a random moment. Never both succeed;
 * one always does; the owner's memory on the device stays within the quota
 * and equals its booking. */
static void test_pool_allocations_racing_a_wait_stay_within_quota(void **state)
{
    (void)state;
    struct fx_client b, o;
    owner(&o, "30000");
    start(&b, borrower_env);
    mark(1);
    unsigned seed = 16;
    int waited = 0, both = 0;
    char cmd[64], ans[2][600];
    n_bg = 0;
    for (int i = 0; i < 60; i++) {
        /* The owner's pool: 256 MiB reserved, free. */
        assert_string_equal(cmd_fg(&o, "trim 0"), "ok");
        int f = id_in(cmd_fg(&o, "async 268435456"));
        snprintf(cmd, sizeof(cmd), "asyncfree %d", f);
        assert_string_equal(cmd_fg(&o, cmd), "ok");
        int held = id_in(fx_cmd(&b, "alloc 671088640")); /* the device full */
        assert_string_equal(cmd_fg(&o, "bgasync 402653184"), "ok");
        if (i % 2 == 0) {
            assert_true(want_appears("o")); /* A waits: B asks during its wait */
            assert_string_equal(cmd_fg(&o, "bgasync 268435456"), "ok");
        } else {
            assert_string_equal(cmd_fg(&o, "bgasync 268435456"), "ok");
            usleep((useconds_t)(rand_r(&seed) % 20000));
            both++;
        }
        waited += wants("o");
        snprintf(cmd, sizeof(cmd), "free %d", held);
        assert_string_equal(fx_cmd(&b, cmd), "ok");
        bg_answer(&o, ans[0], sizeof(ans[0]));
        bg_answer(&o, ans[1], sizeof(ans[1]));
        int ok = 0, mine = -1;
        for (int k = 0; k < 2; k++) {
            if (strncmp(ans[k], "bg ok ", 6) == 0) {
                ok++;
                mine = atoi(ans[k] + 6);
            } else {
                assert_string_equal(ans[k], "bg err 2");
            }
        }
        assert_int_equal(ok, 1);
        uint64_t dev = fake_used(o.pid);
        assert_true(dev <= 512 * MIB);
        assert_int_equal(booked(&o), dev);
        snprintf(cmd, sizeof(cmd), "asyncfree %d", mine);
        assert_string_equal(cmd_fg(&o, cmd), "ok");
    }
    print_message("pool allocations racing a wait: 60 iterations (%d at once), %d seen waiting\n",
                  both, waited);
    stop(&o, 0);
    stop(&b, 0);
}

/* A pool allocation's settle is not taken over by another thread's
 * allocation. The tenant (64 MiB) holds 58 MiB and a pool of two free
 * 2 MiB blocks; thread A's 4 MiB pool allocation is admitted at nothing
 * (the pool holds 4 MiB free) but the blocks do not serve it, so the pool
 * grows by 4 MiB, past the quota; the fake pauses A right after that
 * growth (FAKECUDA_POOL_GROW_GATE), and the main thread's classic 4 MiB,
 * over quota, settles the pools meanwhile. A's own settle must still see
 * the growth and refuse A (then the classic one fits); before, the classic
 * allocation booked the growth first, A's settle saw none and A kept
 * memory past the quota (66 MiB on the device). */
static void test_a_pool_settle_under_way_is_not_taken_over(void **state)
{
    (void)state;
    char gate[300], held[320], g_env[340];
    snprintf(gate, sizeof(gate), "%s/grow-gate", fake_dir);
    snprintf(held, sizeof(held), "%s.held", gate);
    snprintf(g_env, sizeof(g_env), "FAKECUDA_POOL_GROW_GATE=%s", gate);
    const char *const env[] = {"FLEXPU_TENANT=o", "FLEXPU_MEMORY_LIMIT=64Mi", g_env, NULL};
    struct fx_client o;
    start(&o, env);
    n_bg = 0;
    assert_true(strncmp(cmd_fg(&o, "alloc 60817408"), "ok", 2) == 0); /* 58 MiB */
    int a = id_in(cmd_fg(&o, "async 2097152")), b = id_in(cmd_fg(&o, "async 2097152"));
    char cmd[64];
    snprintf(cmd, sizeof(cmd), "asyncfree %d", a);
    assert_string_equal(cmd_fg(&o, cmd), "ok");
    snprintf(cmd, sizeof(cmd), "asyncfree %d", b);
    assert_string_equal(cmd_fg(&o, cmd), "ok");
    FILE *f = fopen(gate, "w");
    assert_non_null(f);
    fclose(f);
    assert_string_equal(cmd_fg(&o, "bgasync 4194304"), "ok");
    int paused = 0;
    for (int i = 0; i < 1000 && !(paused = access(held, F_OK) == 0); i++)
        usleep(10000);
    assert_true(paused);
    /* Answered at once before (over quota, the growth booked); now it waits
     * for A's settle. Given a second to get there either way. */
    fx_send(&o, "alloc 4194304");
    char ans[2][600];
    snprintf(ans[0], sizeof(ans[0]), "%s", answer_within(&o, 1000));
    assert_int_equal(unlink(gate), 0);
    if (strcmp(ans[0], "timeout") == 0)
        snprintf(ans[0], sizeof(ans[0]), "%s", fx_answer(&o));
    snprintf(ans[1], sizeof(ans[1]), "%s", fx_answer(&o));
    int k = strncmp(ans[0], "bg ", 3) == 0; /* which one is the classic's */
    uint64_t dev = fake_used(o.pid), book = booked(&o);
    print_message("pool allocation paused after its growth: %s; classic beside it: %s; "
                  "device %llu MiB\n", ans[!k], ans[k], (unsigned long long)(dev / MIB));
    stop(&o, 0);
    assert_true(dev <= 64 * MIB);
    assert_int_equal(book, dev);
    assert_string_equal(ans[!k], "bg err 2");
    assert_true(strncmp(ans[k], "ok", 2) == 0);
}

static void test_owner_gets_oom_after_the_bound(void **state)
{
    (void)state;
    struct fx_client b, o;
    borrower_holds(&b);
    owner(&o, "300");
    mark(1);
    fx_send(&o, "alloc 268435456");
    assert_true(want_appears("o"));
    assert_string_equal(fx_answer(&o), "err 2"); /* CUDA_ERROR_OUT_OF_MEMORY */
    assert_false(wants("o"));
    /* The borrower still holds its memory: nobody killed it. */
    assert_string_equal(fx_cmd(&b, "free 0"), "ok");
    stop(&o, 0);
    stop(&b, 0);
}

/* With a wait of ten minutes (the most), an answer at all (the test's
 * timeout is two) shows it did not wait. */
static void test_no_wait_without_a_borrower_on_the_gpu(void **state)
{
    (void)state;
    struct fx_client b, o;
    borrower_holds(&b); /* memory taken, but the GPU is not marked */
    owner(&o, "600000");
    assert_string_equal(fx_cmd(&o, "alloc 268435456"), "err 2");
    assert_false(wants("o"));
    /* The mark gone while waiting: tries for FX_OOM_GONE_GRACE_MS more, then
     * the error. */
    mark(1);
    fx_send(&o, "alloc 268435456");
    assert_true(want_appears("o"));
    mark(0);
    assert_string_equal(fx_answer(&o), "err 2");
    assert_false(wants("o"));
    stop(&o, 0);
    stop(&b, 0);
}

static void test_a_borrower_never_waits(void **state)
{
    (void)state;
    struct fx_client o, b2;
    owner(&o, "600000"); /* learns the uuid; holds 128 MiB */
    mark(1);
    assert_true(strncmp(fx_cmd(&o, "alloc 268435456"), "ok", 2) == 0);
    /* A second borrower: no marks directory in its configuration. */
    const char *const env[] = {"FLEXPU_TENANT=b2", "FLEXPU_OOM_WAIT_MS=600000", NULL};
    start(&b2, env);
    assert_string_equal(fx_cmd(&b2, "alloc 805306368"), "err 2");
    stop(&b2, 0);
    stop(&o, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_owner_gets_memory_once_the_borrower_is_killed, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_pool_allocation_waits_too, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pool_wait_holds_no_other_pool_allocation, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_a_waiting_pool_allocation_keeps_its_place, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_pool_allocations_racing_a_wait_stay_within_quota,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_pool_settle_under_way_is_not_taken_over, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_owner_gets_oom_after_the_bound, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_wait_without_a_borrower_on_the_gpu, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_a_borrower_never_waits, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
