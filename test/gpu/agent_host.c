/* SPDX-License-Identifier: Apache-2.0 */
/* The node agent's arbiter alone, for measuring slices under it on a GPU
 * machine that has no Kubernetes (test/gpu/agent_cases.py, step `agent` of
 * bench/vgpu.sh run): flexpu-node's arbiter thread (runtime/arbagent.h) over
 * ROOT, the pages of the GPUs named, until SIGTERM or SIGINT. The slices'
 * policies are the slice.conf files under ROOT/slices/<key>/ that the caller
 * writes, as flexpu-node would; their processes run with FLEXPU_ARBITER_DIR
 * = ROOT/arb and FLEXPU_LEDGER_DIR = ROOT/ledger/<key>.
 *
 *   agent_host ROOT UUID...
 *
 * Prints "ready" once every page exists. Runs the arbiter at SCHED_FIFO 1
 * where allowed, as flexpu-node does. */
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "runtime/arbagent.h"

static int stop_flag;

static void on_signal(int sig)
{
    (void)sig;
    __atomic_store_n(&stop_flag, 1, __ATOMIC_RELEASE);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: agent_host ROOT UUID...\n");
        return 2;
    }
    struct flexpu_error err = {0};
    struct fx_arb_agent *a = NULL;
    if (fx_arb_agent_new(&a, argv[1], &err) != 0) {
        fprintf(stderr, "agent_host: %s\n", err.msg);
        return 1;
    }
    for (int i = 2; i < argc; i++)
        if (fx_arb_agent_add_gpu(a, argv[i], &err) != 0) {
            fprintf(stderr, "agent_host: GPU '%s': %s\n", argv[i], err.msg);
            fx_arb_agent_free(a);
            return 1;
        }
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    struct sched_param sp = {.sched_priority = 1};
    int rt = pthread_setschedparam(pthread_self(), SCHED_FIFO, &sp) == 0;
    printf("ready (%d GPU%s, %s)\n", argc - 2, argc == 3 ? "" : "s",
           rt ? "SCHED_FIFO 1" : "normal priority: no CAP_SYS_NICE");
    fflush(stdout);
    fx_arb_agent_run(a, &stop_flag);
    printf("stopped after %llu rounds\n", (unsigned long long)fx_arb_agent_rounds(a));
    fx_arb_agent_free(a);
    return 0;
}
