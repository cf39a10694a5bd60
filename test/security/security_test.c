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
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "runtime/arbagent.h"
#include "runtime/state.h"
#include "../runtime/spawn.h"

#define MiB (1ull << 20)

static char state_dir[256], fake_dir[256], ledger_root[256];



/* Starts victim c with `extra` before the victims' defaults (a 16 GiB fake
 * GPU, 300 MiB contexts, compute share 50 unless extra says), at context 0. */
static void victim_spawn(struct fx_client *c, const char *const *extra)
{
    static const char *const defaults[] = {
        "FAKECUDA_TOTAL_MEM=17179869184", "FAKECUDA_CTX_OVERHEAD=314572800",
        "FLEXPU_CONTEXT_OVERHEAD=0", "FLEXPU_LOG_LEVEL=off", "FLEXPU_COMPUTE_SHARE=50", NULL};
    fx_client_spawn(c, FX_TEST_LIB, FX_TEST_CLIENT, state_dir, fake_dir, extra, defaults);
    assert_string_equal(fx_cmd(c, "init"), "ok");
    assert_string_equal(fx_cmd(c, "ctx 0"), "ok");
}

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
    victim_spawn(c, extra);
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

/* ---- compute, under the node agent's arbiter ------------------------------------ */

/* The agent (arbagent.h) runs in this process over agent_root; the victim
 * is a slice of it, and the test plays a tenant of another slice: it can
 * write its own slice's request file (anything, any time), read the
 * agent's pages (mounted read-only), and use the GPU or not. */
#include "../runtime/agent_fixture.h"

/* The slice `name` as the agent configures it: its policy, its ledger. */
static void agent_slice(const char *name, int share)
{
    char cmd[800];
    snprintf(cmd, sizeof(cmd), "mkdir -p %s/slices/%s %s/ledger/%s", agent_root, name,
             agent_root, name);
    assert_int_equal(system(cmd), 0);
    snprintf(cmd, sizeof(cmd), "%s/slices/%s/slice.conf", agent_root, name);
    FILE *f = fopen(cmd, "w");
    assert_non_null(f);
    fprintf(f, "tenant = %s\ncompute_share = %d\ncompute_cap = 100\npriority = normal\n",
            name, share);
    fclose(f);
}

static int setup_agent(void **state)
{
    setup(state);
    agent_thread_start(state_dir);
    return 0;
}

static int teardown_agent(void **state)
{
    agent_thread_stop();
    return teardown(state);
}

/* A victim slice with share `share`, arbitrated by the agent. */
static void agent_victim_start(struct fx_client *c, const char *name, int share)
{
    agent_slice(name, share);
    char e[4][400];
    snprintf(e[0], 400, "FLEXPU_TENANT=%s", name);
    snprintf(e[1], 400, "FLEXPU_LEDGER_DIR=%s/ledger/%s", agent_root, name);
    snprintf(e[2], 400, "FLEXPU_ARBITER_DIR=%s/arb", agent_root);
    snprintf(e[3], 400, "FLEXPU_COMPUTE_SHARE=%d", share);
    const char *const extra[] = {e[0], e[1], e[2], e[3], NULL};
    victim_spawn(c, extra); /* its share first: the default's 50 is not read */
}

/* The victim's GPU time over a 3 s window, as a fraction of it. A hostile
 * holder is charged for its slice and its claimed drain, so the victim's
 * 70% comes in cycles: of about 700 ms when the agent waited 200 ms for
 * that drain, when a 1 s window held one or two such turns by phase alone
 * (0.76 or 0.57 of alone, the second in CI under load); the drain is now
 * capped at 10 ms (cycles of about 70 ms), and 3 s is kept. */
static double victim_burn(struct fx_client *c)
{
    fprintf(c->to, "burn 1000 3000 200\n");
    fflush(c->to);
    assert_non_null(fgets(c->line, sizeof(c->line), c->from));
    unsigned long long busy = 0, n = 0;
    assert_int_equal(sscanf(c->line, "ok %llu %llu", &busy, &n), 2);
    return busy / 3e6;
}

/* The agent's page of the fake's GPU: its path and UUID. */
static void agent_page(char *path, size_t len, char *uuid, size_t ulen)
{
    char dir[400];
    snprintf(dir, sizeof(dir), "%s/arb", agent_root);
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *e;
    int found = 0;
    while (!found && (e = readdir(d))) {
        size_t n = strlen(e->d_name);
        if (n > 6 && strcmp(e->d_name + n - 6, ".state") == 0) {
            snprintf(path, len, "%s/%s", dir, e->d_name);
            snprintf(uuid, ulen, "%.*s", (int)(n - 6), e->d_name);
            found = 1;
        }
    }
    closedir(d);
    assert_true(found);
}

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* The attacker's own request file, mapped, every slot's lock held (so the
 * agent takes all 64 for live processes). */
struct hostile {
    struct fx_arb_req *r;
    int fd;
    int mode; /* 0: claim endless work, 1: garbage, 2: truncated */
    int stop;
    uint64_t writes;
};

static void *hostile_main(void *arg)
{
    struct hostile *h = arg;
    unsigned x = 12345;
    while (!__atomic_load_n(&h->stop, __ATOMIC_ACQUIRE)) {
        uint64_t now = mono_ns();
        if (h->mode == 0) {
            for (int i = 0; i < FX_REQ_PROCS; i++) {
                struct fx_proc_rec *p = &h->r->procs[i];
                p->in_use = 1;
                p->tenant = 0; /* another tenant's index: ignored */
                p->inflight = p->waiting = p->launching = 0xffffffffu;
                p->poll_ns = p->beat_ns = p->last_launch_ns = now;
                p->drained_ns = 0;
                p->launches++;
            }
        } else if (h->mode == 1) {
            unsigned char *b = (unsigned char *)h->r->procs;
            for (size_t i = 0; i < sizeof(h->r->procs); i++) {
                x = x * 1103515245u + 12345u;
                b[i] = (unsigned char)(x >> 16);
            }
        }
        h->writes++;
        struct timespec ts = {0, 100 * 1000};
        nanosleep(&ts, NULL);
    }
    return NULL;
}

/* The attacker's request file for GPU `uuid`, mapped, claiming nothing yet,
 * every slot's lock held (so the agent takes all 64 for live processes). */
static void hostile_open(struct hostile *h, const char *uuid)
{
    char req[800];
    snprintf(req, sizeof(req), "%s/ledger/attacker/%s.req", agent_root, uuid);
    h->fd = open(req, O_RDWR | O_CREAT, 0666);
    assert_true(h->fd >= 0);
    assert_int_equal(ftruncate(h->fd, sizeof(struct fx_arb_req)), 0);
    h->r = mmap(NULL, sizeof(struct fx_arb_req), PROT_READ | PROT_WRITE, MAP_SHARED, h->fd, 0);
    assert_true(h->r != MAP_FAILED);
    h->r->h = (struct fx_shm_header){FX_REQ_MAGIC, FX_REQ_VERSION, sizeof(struct fx_arb_req), 0};
    snprintf(h->r->uuid, sizeof(h->r->uuid), "%s", uuid);
    for (int i = 0; i < FX_REQ_PROCS; i++) {
        struct flock l = {.l_type = F_WRLCK, .l_whence = SEEK_SET,
                          .l_start = FX_LOCK_SLOT_BASE + i, .l_len = 1};
        assert_int_equal(fcntl(h->fd, F_OFD_SETLK, &l), 0);
    }
}

/* A tenant that writes anything into its own request record (claims of
 * endless work in flight and waiting in all 64 slots, refreshed every
 * 100 us; random bytes; a truncated file) does not take a victim below its
 * share: with a 70% share, the victim keeps more than 0.6 of what it gets
 * alone (it measures 0.90-0.94 over 3 s, the claims charged beyond a 10 ms
 * drain; 0.69-0.70 while the agent waited 200 ms for each claimed drain;
 * 0.567 while it still waited, uncharged, for the claimed work to drain at
 * each start of contention). */
static void test_hostile_requests_keep_the_victim_share(void **state)
{
    (void)state;
    struct fx_client v;
    agent_victim_start(&v, "victim", 70);
    double alone = victim_burn(&v);
    char page[600], uuid[FX_UUID_MAX];
    agent_page(page, sizeof(page), uuid, sizeof(uuid));
    agent_slice("attacker", 30);
    struct hostile h = {0};
    hostile_open(&h, uuid);
    static const char *const what[] = {"endless work claimed", "random bytes", "truncated"};
    for (int mode = 0; mode < 3; mode++) {
        h.mode = mode;
        h.stop = 0;
        if (mode == 2) {
            munmap(h.r, sizeof(struct fx_arb_req));
            h.r = NULL;
            assert_int_equal(ftruncate(h.fd, 0), 0);
        }
        pthread_t th;
        assert_int_equal(pthread_create(&th, NULL, hostile_main, &h), 0);
        /* The agent finds the new slice at its next scan. */
        struct timespec ts = {0, 2 * FX_ARB_AGENT_SCAN_NS};
        nanosleep(&ts, NULL);
        double with = victim_burn(&v);
        __atomic_store_n(&h.stop, 1, __ATOMIC_RELEASE);
        pthread_join(th, NULL);
        print_message("victim (share 70) alone %.3f, beside an attacker (%s): %.3f\n", alone,
                      what[mode], with);
        assert_true(with > 0.6 * alone);
    }
    /* The victim's policy in the agent's page is what its slice says, and
     * the node's readers (usage.c, metrics.c, flexpu-smi open pages as
     * state files) find its GPU time and a live slot standing for it. */
    struct fx_gpu pg;
    struct flexpu_error perr = {0};
    assert_int_equal(fx_gpu_open_readonly(&pg, page, &perr), 0);
    const struct fx_gpu_state *st = pg.st;
    int seen = 0;
    for (int t = 0; t < FX_MAX_TENANTS; t++)
        if (st->tenants[t].in_use && strcmp(st->tenants[t].name, "victim") == 0) {
            assert_int_equal(st->tenants[t].compute_share, 70);
            assert_int_equal(st->tenants[t].compute_cap, 100);
            assert_true(st->tenants[t].gpu_time_ns > 0);
            assert_int_equal(st->procs[t].tenant, t);
            assert_true(st->procs[t].in_use && fx_gpu_slot_alive(&pg, t));
            seen = 1;
        }
    assert_true(seen);
    fx_gpu_detach(&pg);
    close(h.fd);
    victim_stop(&v);
}

/* The longest time tenant `t` waited between two of its turns on the page
 * `st`, sampled every 100 us while `on`, measured while `measure`. */
struct turn_watch {
    const struct fx_gpu_state *st;
    int t;
    int on, measure;
    uint64_t longest;
    int turns;
};

static void *turn_watch_main(void *arg)
{
    struct turn_watch *w = arg;
    uint64_t lost = 0;
    while (__atomic_load_n(&w->on, __ATOMIC_ACQUIRE)) {
        uint64_t now = mono_ns();
        int mine = __atomic_load_n(&w->st->arb.holder, __ATOMIC_SEQ_CST) == (uint32_t)w->t + 1;
        if (!__atomic_load_n(&w->measure, __ATOMIC_ACQUIRE)) {
            lost = 0;
        } else if (mine && lost) {
            w->longest = now - lost > w->longest ? now - lost : w->longest;
            w->turns++;
            lost = 0;
        } else if (!mine && !lost) {
            lost = now;
        }
        struct timespec ts = {0, 100 * 1000};
        nanosleep(&ts, NULL);
    }
    return NULL;
}

/* The victim's longest wait between two of its turns while it burns 1 ms
 * kernels for 1.5 s beside whatever else runs (an honest client `other`
 * burning too, when not NULL), over 1 s after 300 ms. */
static uint64_t victim_longest_wait(struct fx_client *v, struct fx_client *other,
                                    const struct fx_gpu_state *st, int t, int *turns)
{
    struct turn_watch w = {st, t, 1, 0, 0, 0};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, turn_watch_main, &w), 0);
    fprintf(v->to, "burn 1000 1500\n");
    fflush(v->to);
    if (other) {
        fprintf(other->to, "burn 1000 1500\n");
        fflush(other->to);
    }
    struct timespec ts = {0, 300 * 1000 * 1000};
    nanosleep(&ts, NULL);
    __atomic_store_n(&w.measure, 1, __ATOMIC_RELEASE);
    ts = (struct timespec){1, 0};
    nanosleep(&ts, NULL);
    __atomic_store_n(&w.measure, 0, __ATOMIC_RELEASE);
    assert_non_null(fgets(v->line, sizeof(v->line), v->from));
    assert_true(strncmp(v->line, "ok ", 3) == 0);
    if (other) {
        assert_non_null(fgets(other->line, sizeof(other->line), other->from));
        assert_true(strncmp(other->line, "ok ", 3) == 0);
    }
    __atomic_store_n(&w.on, 0, __ATOMIC_RELEASE);
    pthread_join(th, NULL);
    *turns = w.turns;
    return w.longest;
}

/* A tenant claiming endless work in flight makes its neighbour wait per
 * turn about what an honest holder does: the victim (share 50) beside an
 * honest client of the same share burning 1 ms kernels, then beside an
 * attacker of the same share claiming endless work, its longest wait
 * between two of its turns counted on the agent's page in each. The
 * attacker's turn is a slice and a drain the agent caps at
 * FX_ARB_AGENT_DRAIN_MAX_NS (both 10 ms), the honest one's a slice and 4
 * kernels; before, the agent waited 200 ms for the claimed drain at every
 * turn. The bound (twice the honest wait and 20 ms) leaves room for a
 * loaded machine. */
static void test_claimed_work_stalls_a_neighbour_no_more_than_an_honest_one(void **state)
{
    (void)state;
    struct fx_client v, o;
    agent_victim_start(&v, "victim", 50);
    agent_victim_start(&o, "honest", 50);
    /* Both known to the agent (their request files found by a scan). */
    assert_true(strncmp(fx_cmd(&v, "burn 1000 50"), "ok ", 3) == 0);
    assert_true(strncmp(fx_cmd(&o, "burn 1000 50"), "ok ", 3) == 0);
    struct timespec scans = {0, 2 * FX_ARB_AGENT_SCAN_NS};
    nanosleep(&scans, NULL);
    char page[600], uuid[FX_UUID_MAX];
    agent_page(page, sizeof(page), uuid, sizeof(uuid));
    /* Mapped live, read-only, as a container has it. */
    int pfd = open(page, O_RDONLY);
    assert_true(pfd >= 0);
    const struct fx_gpu_state *st =
        mmap(NULL, sizeof(struct fx_gpu_state), PROT_READ, MAP_SHARED, pfd, 0);
    assert_true(st != MAP_FAILED);
    int t = -1;
    for (int i = 0; i < FX_MAX_TENANTS; i++)
        if (st->tenants[i].in_use && strcmp(st->tenants[i].name, "victim") == 0)
            t = i;
    assert_true(t >= 0);
    int turns_honest = 0, turns_hostile = 0;
    uint64_t honest = victim_longest_wait(&v, &o, st, t, &turns_honest);
    victim_stop(&o);
    agent_slice("attacker", 50);
    struct hostile h = {0};
    hostile_open(&h, uuid);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, hostile_main, &h), 0);
    nanosleep(&scans, NULL);
    uint64_t hostile = victim_longest_wait(&v, NULL, st, t, &turns_hostile);
    __atomic_store_n(&h.stop, 1, __ATOMIC_RELEASE);
    pthread_join(th, NULL);
    print_message("victim's longest wait for its turn: beside an honest holder %.1f ms "
                  "(%d turns), beside endless claims %.1f ms (%d turns)\n",
                  honest / 1e6, turns_honest, hostile / 1e6, turns_hostile);
    munmap((void *)st, sizeof(struct fx_gpu_state));
    close(pfd);
    munmap(h.r, sizeof(struct fx_arb_req));
    close(h.fd);
    victim_stop(&v);
    assert_true(hostile <= 2 * honest + 20 * 1000 * 1000ull);
    /* Beside the claims the victim's turns are fewer and longer: the
     * claims, charged for 200 ms after each of the attacker's turns, pay
     * their part of the victim's slices beside them (4 turns a second
     * since; 16 before). */
    assert_true(turns_honest >= 5 && turns_hostile >= 3);
}

/* What a container sees of the agent's pages: a read-only mount (played
 * here by a mount namespace). Opening one for writing fails with EROFS,
 * and a writable shared mapping of one opened for reading with EACCES, so
 * no tenant can set the holder, the slice or another tenant's policy. */
static void test_agent_page_is_read_only_to_tenants(void **state)
{
    (void)state;
    struct fx_client v;
    agent_victim_start(&v, "victim", 50);
    char page[600], uuid[FX_UUID_MAX], dir[400];
    agent_page(page, sizeof(page), uuid, sizeof(uuid));
    snprintf(dir, sizeof(dir), "%s/arb", agent_root);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int flags = CLONE_NEWNS | (geteuid() == 0 ? 0 : CLONE_NEWUSER);
        if (unshare(flags) != 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0 ||
            mount(dir, dir, NULL, MS_BIND, NULL) != 0 ||
            mount(NULL, dir, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY, NULL) != 0)
            _exit(3);
        if (open(page, O_RDWR) >= 0 || errno != EROFS)
            _exit(1);
        int fd = open(page, O_RDONLY);
        if (fd < 0)
            _exit(4);
        void *m = mmap(NULL, sizeof(struct fx_gpu_state), PROT_READ | PROT_WRITE, MAP_SHARED,
                       fd, 0);
        _exit(m == MAP_FAILED && errno == EACCES ? 0 : 2);
    }
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    if (WEXITSTATUS(st) == 3) {
        victim_stop(&v);
        skip(); /* no mount namespace here: the page's mode is what is left to check */
    }
    assert_int_equal(WEXITSTATUS(st), 0);
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
        cmocka_unit_test_setup_teardown(test_hostile_requests_keep_the_victim_share, setup_agent,
                                        teardown_agent),
        cmocka_unit_test_setup_teardown(
            test_claimed_work_stalls_a_neighbour_no_more_than_an_honest_one, setup_agent,
            teardown_agent),
        cmocka_unit_test_setup_teardown(test_agent_page_is_read_only_to_tenants, setup_agent,
                                        teardown_agent),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
