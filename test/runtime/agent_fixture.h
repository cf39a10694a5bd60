/* SPDX-License-Identifier: Apache-2.0 */
/* The node agent's arbiter on a thread of the test, as flexpu-node runs it
 * (runtime/arbagent.h), for the tests whose clients are slices of it
 * (runtime_test --agent, security_test). One copy, so both run the agent
 * alike. Include after cmocka.h. */
#ifndef FX_TEST_AGENT_FIXTURE_H
#define FX_TEST_AGENT_FIXTURE_H

#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <sys/stat.h>

#include "runtime/arbagent.h"

static char agent_root[300];
static struct fx_arb_agent *agent;
static pthread_t agent_thread;
static int agent_stop;

static void *agent_main(void *arg)
{
    (void)arg;
    /* As flexpu-node runs it: above the tenants' threads where allowed, so
     * that hand-overs do not wait for a core on a loaded machine. */
    struct sched_param sp = {.sched_priority = 1};
    (void)pthread_setschedparam(pthread_self(), SCHED_FIFO, &sp);
    fx_arb_agent_run(agent, &agent_stop);
    return NULL;
}

/* Starts the agent on agent_root = <under>/node, made here. */
static inline void agent_thread_start(const char *under)
{
    snprintf(agent_root, sizeof(agent_root), "%s/node", under);
    assert_int_equal(mkdir(agent_root, 0755), 0);
    struct flexpu_error err = {0};
    assert_int_equal(fx_arb_agent_new(&agent, agent_root, &err), 0);
    agent_stop = 0;
    assert_int_equal(pthread_create(&agent_thread, NULL, agent_main, NULL), 0);
}

/* Stops and frees it (its files stay for the test's teardown). */
static inline void agent_thread_stop(void)
{
    __atomic_store_n(&agent_stop, 1, __ATOMIC_RELEASE);
    pthread_join(agent_thread, NULL);
    fx_arb_agent_free(agent);
    agent = NULL;
}

#endif
