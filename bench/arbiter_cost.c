/* SPDX-License-Identifier: Apache-2.0 */
/* What arbitration costs, tenants deciding (the shared state) against the
 * node agent deciding (runtime/arbagent.h), with no driver at all: two
 * tenants are two handles in this process (each its own open file
 * description, so its own locks, as two processes).
 *  - launch: ns per fx_arb_fast_path call of a tenant alone (the check
 *    every launch makes);
 *  - hand-over: the time from the holder publishing that its work drained
 *    after its slice to the other tenant's fx_arb_acquire returning, over
 *    the hand-overs of `secs` seconds of two tenants taking turns;
 *  - agent: the CPU time the agent's thread took meanwhile (agent mode).
 * Usage: arbiter_cost shared|agent [secs]. Prints one line per figure. */
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "runtime/arbagent.h"
#include "runtime/arbiter.h"
#include "runtime/state.h"
#include "util/clock.h"

static struct fx_arb_agent *agent;
static int agent_stop, run_stop;
static char root[64];

static void *agent_main(void *arg)
{
    (void)arg;
    struct sched_param sp = {.sched_priority = 1};
    (void)pthread_setschedparam(pthread_self(), SCHED_FIFO, &sp);
    fx_arb_agent_run(agent, &agent_stop);
    return NULL;
}

static void attach(struct fx_gpu *g, const char *name, int use_agent)
{
    struct fx_slice_config cfg;
    fx_config_defaults(&cfg);
    snprintf(cfg.tenant, sizeof(cfg.tenant), "%s", name);
    cfg.compute_share = 50;
    snprintf(cfg.state_dir, sizeof(cfg.state_dir), "%s/state", root);
    char cmd[700];
    snprintf(cmd, sizeof(cmd), "mkdir -p %s/slices/%s %s/ledger/%s", root, name, root, name);
    if (system(cmd) != 0)
        exit(1);
    snprintf(cfg.ledger_dir, sizeof(cfg.ledger_dir), "%s/ledger/%s", root, name);
    if (use_agent) {
        snprintf(cfg.arbiter_dir, sizeof(cfg.arbiter_dir), "%s/arb", root);
        snprintf(cmd, sizeof(cmd), "%s/slices/%s/slice.conf", root, name);
        FILE *f = fopen(cmd, "w");
        fprintf(f, "tenant = %s\ncompute_share = 50\n", name);
        fclose(f);
    }
    struct flexpu_error err = {0};
    if (fx_gpu_attach(g, &cfg, "GPU-bench", 1ull << 34, &err) != 0 || (use_agent && !g->agent)) {
        fprintf(stderr, "attach %s: %s\n", name, err.msg);
        exit(1);
    }
    while (use_agent && fx_gpu_agent_tenant(g) < 0)
        usleep(1000);
}

struct turn {
    struct fx_gpu *g;
    struct turn *other;
    uint64_t drained_ns;         /* when its work last drained (atomic) */
    uint64_t gaps, gap_sum, gap_max;
};

static void *taker(void *arg)
{
    struct turn *t = arg;
    while (!__atomic_load_n(&run_stop, __ATOMIC_ACQUIRE)) {
        fx_arb_acquire(t->g);
        uint64_t now = fx_mono_ns();
        uint64_t d = __atomic_exchange_n(&t->other->drained_ns, 0, __ATOMIC_ACQ_REL);
        if (d && now > d) {
            t->gaps++;
            t->gap_sum += now - d;
            t->gap_max = now - d > t->gap_max ? now - d : t->gap_max;
        }
        fx_arb_launched(t->g, now);
        fx_arb_set_inflight(t->g, 1);
        fx_arb_launch_done(t->g);
        /* Holds the GPU (work in flight) until its slice is over. */
        struct fx_arbiter *a = &t->g->st->arb;
        while (!__atomic_load_n(&run_stop, __ATOMIC_ACQUIRE)) {
            now = fx_mono_ns();
            fx_arb_heartbeat(t->g, now);
            if (__atomic_load_n(&a->holder, __ATOMIC_SEQ_CST) == (uint32_t)t->g->tenant + 1 &&
                now >= __atomic_load_n(&a->slice_end_ns, __ATOMIC_SEQ_CST))
                break;
            struct timespec ts = {0, 50 * 1000};
            nanosleep(&ts, NULL);
        }
        __atomic_store_n(&t->drained_ns, fx_mono_ns(), __ATOMIC_RELEASE);
        if (fx_arb_set_inflight(t->g, 0))
            fx_arb_hand_over(t->g);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    int use_agent = argc > 1 && strcmp(argv[1], "agent") == 0;
    int secs = argc > 2 ? atoi(argv[2]) : 2;
    snprintf(root, sizeof(root), "/tmp/fxarbcost-XXXXXX");
    if (!mkdtemp(root))
        return 1;
    pthread_t at;
    if (use_agent) {
        struct flexpu_error err = {0};
        if (fx_arb_agent_new(&agent, root, &err) != 0)
            return 1;
        pthread_create(&at, NULL, agent_main, NULL);
    }
    struct fx_gpu g[2];
    attach(&g[0], "a", use_agent);
    /* launch: one tenant alone */
    const long n = 20 * 1000 * 1000;
    int fast = 0;
    uint64_t t0 = fx_mono_ns();
    for (long i = 0; i < n; i++)
        fast += fx_arb_fast_path(&g[0], 0);
    uint64_t t1 = fx_mono_ns();
    printf("%s launch check alone: %.1f ns (%d of %ld on the fast path)\n",
           use_agent ? "agent " : "shared", (double)(t1 - t0) / n, fast, n);
    /* hand-over: two tenants taking turns */
    attach(&g[1], "b", use_agent);
    struct turn tu[2] = {{.g = &g[0]}, {.g = &g[1]}};
    tu[0].other = &tu[1];
    tu[1].other = &tu[0];
    pthread_t th[2];
    clockid_t acpu;
    struct timespec c0 = {0, 0}, c1 = {0, 0};
    if (use_agent && pthread_getcpuclockid(at, &acpu) == 0)
        clock_gettime(acpu, &c0);
    for (int i = 0; i < 2; i++)
        pthread_create(&th[i], NULL, taker, &tu[i]);
    sleep((unsigned)secs);
    if (use_agent)
        clock_gettime(acpu, &c1);
    __atomic_store_n(&run_stop, 1, __ATOMIC_RELEASE);
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    uint64_t k = tu[0].gaps + tu[1].gaps, sum = tu[0].gap_sum + tu[1].gap_sum;
    uint64_t mx = tu[0].gap_max > tu[1].gap_max ? tu[0].gap_max : tu[1].gap_max;
    printf("%s hand-over: %llu in %d s, mean %.1f us, max %.1f us\n",
           use_agent ? "agent " : "shared", (unsigned long long)k, secs,
           k ? (double)sum / k / 1000.0 : 0.0, mx / 1000.0);
    if (use_agent)
        printf("agent  thread CPU while contended: %.1f%% of a core\n",
               ((c1.tv_sec - c0.tv_sec) * 1e9 + (c1.tv_nsec - c0.tv_nsec)) / (secs * 1e7));
    for (int i = 0; i < 2; i++)
        fx_gpu_detach(&g[i]);
    if (use_agent) {
        __atomic_store_n(&agent_stop, 1, __ATOMIC_RELEASE);
        pthread_join(at, NULL);
        fx_arb_agent_free(agent);
    }
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", root);
    return system(cmd) == 0 ? 0 : 1;
}
