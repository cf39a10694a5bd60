/* SPDX-License-Identifier: Apache-2.0 */
/* A hostile tenant against the others (docs/SECURITY.md). The test process
 * plays the attacker: it has what a tenant's container has — the shared
 * state directory, read-write — and does to it what any process there can
 * do. The victims are CUDA client processes with the library preloaded
 * against the fake driver, each with its own ledger directory, as the node
 * agent mounts it into its slice alone. Each test asserts that the victim
 * keeps its memory quota, keeps working, and is neither killed nor stalled.
 * At 7db897c (quotas and usage in the shared file) the memory attacks gave
 * the attacker any quota it wanted, truncation killed every process on the
 * GPU, and a held lock stopped every allocation and cuInit. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "runtime/state.h"
#include "../runtime/spawn.h"

#define MiB (1ull << 20)

static char state_dir[256], fake_dir[256], ledger_root[256];



/* A victim: tenant `name`, 1 GiB quota, its ledger in its own directory. */
static void victim_start(struct fx_client *c, const char *name)
{
    static char env[4][3][300];
    static int k;
    char(*e)[300] = env[k++ % 4];
    snprintf(e[0], 300, "FLEXPU_TENANT=%s", name);
    snprintf(e[1], 300, "FLEXPU_LEDGER_DIR=%s/%s", ledger_root, name);
    snprintf(e[2], 300, "FLEXPU_MEMORY_LIMIT=1Gi");
    const char *const extra[] = {e[0], e[1], e[2], NULL};
    static const char *const defaults[] = {
        "FAKECUDA_TOTAL_MEM=17179869184", "FAKECUDA_CTX_OVERHEAD=314572800",
        "FLEXPU_CONTEXT_OVERHEAD=0", "FLEXPU_LOG_LEVEL=off", "FLEXPU_COMPUTE_SHARE=50", NULL};
    char *argv[] = {(char *)FX_TEST_CLIENT, NULL};
    struct fx_spawned p;
    fx_spawn(&p, FX_TEST_LIB, argv, state_dir, fake_dir, extra, defaults);
    c->pid = p.pid;
    c->to = p.to;
    c->from = p.from;
    assert_string_equal(fx_cmd(c, "init"), "ok");
    assert_string_equal(fx_cmd(c, "ctx 0"), "ok");
}

/* Stops a victim; fails if it died (a signal) instead of exiting. */
static void victim_stop(struct fx_client *c)
{
    fprintf(c->to, "exit\n");
    fclose(c->to);
    fclose(c->from);
    int st;
    assert_int_equal(waitpid(c->pid, &st, 0), c->pid);
    if (WIFSIGNALED(st))
        fail_msg("the victim was killed by signal %d", WTERMSIG(st));
}

/* The victim's memory quota holds: it holds 768 MiB, 512 more are refused,
 * 256 more are granted (then given back), and it still runs kernels. */
static void victim_intact(struct fx_client *c)
{
    assert_string_equal(fx_cmd(c, "alloc %llu", 512 * MiB), "err 2");
    const char *r = fx_cmd(c, "alloc %llu", 256 * MiB);
    assert_true(strncmp(r, "ok ", 3) == 0);
    assert_string_equal(fx_cmd(c, "free %s", r + 3), "ok");
    fprintf(c->to, "burn 200 100\n");
    fflush(c->to);
    assert_non_null(fgets(c->line, sizeof(c->line), c->from));
    assert_true(strncmp(c->line, "ok ", 3) == 0);
}

/* The one state file (the fake's GPU), mapped read-write as a tenant can. */
static int state_file(char *path, size_t len)
{
    DIR *d = opendir(state_dir);
    assert_non_null(d);
    struct dirent *e;
    int found = 0;
    while (!found && (e = readdir(d))) {
        size_t n = strlen(e->d_name);
        if (n > 6 && strcmp(e->d_name + n - 6, ".state") == 0) {
            snprintf(path, len, "%s/%s", state_dir, e->d_name);
            found = 1;
        }
    }
    closedir(d);
    return found;
}

static void fill_state(int byte)
{
    char path[600];
    assert_true(state_file(path, sizeof(path)));
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    struct stat sb;
    assert_int_equal(fstat(fd, &sb), 0);
    unsigned char *m = mmap(NULL, (size_t)sb.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    assert_true(m != MAP_FAILED);
    /* Everything but the header (a wrong header only makes newcomers run
     * on a private state, tested below). */
    memset(m + sizeof(struct fx_shm_header), byte, (size_t)sb.st_size - sizeof(struct fx_shm_header));
    munmap(m, (size_t)sb.st_size);
    close(fd);
}

static int setup(void **state)
{
    (void)state;
    snprintf(state_dir, sizeof(state_dir), "/tmp/fxsec-state-XXXXXX");
    assert_non_null(mkdtemp(state_dir));
    snprintf(fake_dir, sizeof(fake_dir), "/tmp/fxsec-fake-XXXXXX");
    assert_non_null(mkdtemp(fake_dir));
    snprintf(ledger_root, sizeof(ledger_root), "/tmp/fxsec-ledger-XXXXXX");
    assert_non_null(mkdtemp(ledger_root));
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char c[900];
    snprintf(c, sizeof(c), "rm -rf %s %s %s", state_dir, fake_dir, ledger_root);
    return system(c) == 0 ? 0 : -1;
}

/* Zeroing the shared state (quotas and usage lived there) or filling it
 * with 0xff (indices out of range, caps of 0, huge budgets) changes nothing
 * of the victim's memory and does not crash it. */
static void test_rewritten_state_leaves_quota_intact(void **state)
{
    (void)state;
    struct fx_client v;
    victim_start(&v, "victim");
    assert_string_equal(fx_cmd(&v, "alloc %llu", 768 * MiB), "ok 0");
    fill_state(0);
    victim_intact(&v);
    fill_state(0xff);
    victim_intact(&v);
    /* a newcomer of the same tenant still sees the usage */
    struct fx_client w;
    victim_start(&w, "victim");
    assert_string_equal(fx_cmd(&w, "alloc %llu", 512 * MiB), "err 2");
    victim_stop(&w);
    victim_stop(&v);
}

/* Truncating the shared state file does not kill the processes mapping it,
 * and the ones that start afterwards get the GPU and their quota. */
static void test_truncated_state_kills_nobody(void **state)
{
    (void)state;
    struct fx_client v;
    victim_start(&v, "victim");
    assert_string_equal(fx_cmd(&v, "alloc %llu", 768 * MiB), "ok 0");
    char path[600];
    assert_true(state_file(path, sizeof(path)));
    assert_int_equal(truncate(path, 0), 0);
    victim_intact(&v);
    struct fx_client w;
    victim_start(&w, "other");
    assert_string_equal(fx_cmd(&w, "alloc %llu", 768 * MiB), "ok 0");
    victim_intact(&w);
    victim_stop(&w);
    victim_stop(&v);
}

/* A tenant that holds the shared state's lock, or every slot's lock,
 * stalls nobody for good: processes start, allocate and launch. */
static void test_held_locks_stall_nobody(void **state)
{
    (void)state;
    struct fx_client v;
    victim_start(&v, "victim"); /* creates the state file */
    char path[600];
    assert_true(state_file(path, sizeof(path)));
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    /* the writers' lock, and every free slot's */
    struct flock wl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = FX_LOCK_WRITERS,
                       .l_len = 1};
    assert_int_equal(fcntl(fd, F_OFD_SETLK, &wl), 0);
    int slots = 0;
    for (int i = 0; i < FX_MAX_PROCS; i++) {
        struct flock sl = {.l_type = F_WRLCK, .l_whence = SEEK_SET,
                           .l_start = FX_LOCK_SLOT_BASE + i, .l_len = 1};
        slots += fcntl(fd, F_OFD_SETLK, &sl) == 0;
    }
    assert_int_equal(slots, FX_MAX_PROCS - 1);
    assert_string_equal(fx_cmd(&v, "alloc %llu", 768 * MiB), "ok 0");
    victim_intact(&v);
    struct fx_client w;
    victim_start(&w, "newcomer");
    assert_string_equal(fx_cmd(&w, "alloc %llu", 768 * MiB), "ok 0");
    victim_intact(&w);
    victim_stop(&w);
    victim_stop(&v);
    close(fd);
}

/* A FIFO under the GPU's state file name: the victim starts anyway (it
 * would block forever in open()). */
static void test_planted_fifo_blocks_nobody(void **state)
{
    (void)state;
    /* The fake's GPU name: learn it from a first process, then plant. */
    struct fx_client v;
    victim_start(&v, "victim");
    victim_stop(&v);
    char path[600];
    assert_true(state_file(path, sizeof(path)));
    assert_int_equal(unlink(path), 0);
    assert_int_equal(mkfifo(path, 0666), 0);
    victim_start(&v, "victim");
    assert_string_equal(fx_cmd(&v, "alloc %llu", 768 * MiB), "ok 0");
    victim_intact(&v);
    victim_stop(&v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_rewritten_state_leaves_quota_intact, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_truncated_state_kills_nobody, setup, teardown),
        cmocka_unit_test_setup_teardown(test_held_locks_stall_nobody, setup, teardown),
        cmocka_unit_test_setup_teardown(test_planted_fifo_blocks_nobody, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
