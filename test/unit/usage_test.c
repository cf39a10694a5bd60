/* SPDX-License-Identifier: Apache-2.0 */
/* The node agent's usage feed (src/node/usage.c): samples and smoothing on
 * an injected clock, the write decision (at most one per 10 s, only on a
 * meaningful change, a refresh every 60 s, a failed write retried no
 * sooner), and the reader of the runtime's files, including what a tenant
 * can put in them; the driver's utilization (the fake NVML) as a floor
 * under a GPU's figure. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "flexpu/log.h"
#include "node/gpus.h"
#include "node/usage.h"
#include "runtime/config.h"
#include "runtime/state.h"

#define S 1000000000ull /* one second in ns */
#define GIB (1LL << 30)

static const int64_t caps[2] = {80 * GIB, 80 * GIB};

/* An observation of GPU 0 with these slices; GPU 1 idle. */
struct slice {
    const char *pod;
    uint64_t gpu_time_ns, activity;
    bool inflight;
    int64_t mem;
};

static void observe(struct fx_usage *u, uint64_t now, const struct slice *sl, int n)
{
    struct fx_usage_obs_gpu obs[2];
    memset(obs, 0, sizeof(obs));
    for (int k = 0; k < n; k++) {
        struct fx_usage_obs_slice *o = &obs[0].slices[k];
        snprintf(o->pod, sizeof(o->pod), "%s", sl[k].pod);
        o->gpu_time_ns = sl[k].gpu_time_ns;
        o->activity = sl[k].activity;
        o->inflight = sl[k].inflight;
        o->mem = sl[k].mem;
    }
    obs[0].nslices = n;
    obs[0].have_mem = obs[1].have_mem = true;
    fx_usage_observe(u, now, obs);
}

static struct fx_node_usage cur(const struct fx_usage *u)
{
    struct fx_node_usage c;
    fx_usage_current(u, 1700000000, &c);
    return c;
}

/* Arbitrated GPU time over wall time; the short constant rising, the long
 * one falling (mean += dt/(tau+dt) * (sample - mean)). */
static void test_ewma_rise_and_fall(void **state)
{
    (void)state;
    struct fx_usage *u = fx_usage_new(2, caps);
    assert_non_null(u);
    uint64_t t = 5 * S, gt = 0;
    struct slice a = {"uid-a", 0, 0, false, 0};
    observe(u, t, &a, 1); /* the baseline */
    assert_int_equal(cur(u).gpus[0].busy, 0);
    double want = 0, even = 0;
    for (int i = 0; i < 10; i++) {
        t += S;
        gt += S; /* charged the whole second */
        a.gpu_time_ns = gt;
        observe(u, t, &a, 1);
        want += 1.0 / (FX_USAGE_TAU_UP_S + 1) * (1 - want);
        even += 1.0 / (FX_USAGE_TAU_MEAN_S + 1) * (1 - even);
        struct fx_node_usage c = cur(u);
        assert_int_equal(c.gpus[0].busy, (int)(want * 1000 + 0.5));
        assert_int_equal(c.gpus[0].slices[0].busy, (int)(want * 1000 + 0.5));
        assert_int_equal(c.gpus[0].mean, (int)(even * 1000 + 0.5));
        assert_int_equal(c.gpus[0].slices[0].mean, (int)(even * 1000 + 0.5));
    }
    assert_true(want > 0.8);
    assert_true(even < 0.2); /* ten busy seconds are a sixth of the even mean */
    for (int i = 0; i < 30; i++) {
        t += S;
        observe(u, t, &a, 1); /* no GPU time, no launch: idle */
        want += 1.0 / (FX_USAGE_TAU_DOWN_S + 1) * (0 - want);
        even += 1.0 / (FX_USAGE_TAU_MEAN_S + 1) * (0 - even);
        assert_int_equal(cur(u).gpus[0].busy, (int)(want * 1000 + 0.5));
        assert_int_equal(cur(u).gpus[0].mean, (int)(even * 1000 + 0.5));
    }
    /* Falling is slow: half a minute idle still reads busy. */
    assert_true(cur(u).gpus[0].busy > 400);
    /* A longer interval weighs more: dt/(tau+dt). */
    t += 10 * S;
    gt += 10 * S;
    a.gpu_time_ns = gt;
    observe(u, t, &a, 1);
    want += 10.0 / (FX_USAGE_TAU_UP_S + 10) * (1 - want);
    assert_int_equal(cur(u).gpus[0].busy, (int)(want * 1000 + 0.5));
    assert_true(cur(u).gpus[1].known);
    assert_int_equal(cur(u).gpus[1].busy, 0);
    fx_usage_free(u);
}

/* A tenant alone launches on the fast path, which the arbiter does not
 * time: active, it is charged what nobody else was. */
static void test_active_counts_untimed_time(void **state)
{
    (void)state;
    struct fx_usage *u = fx_usage_new(2, caps);
    uint64_t t = S;
    struct slice s[2] = {{"uid-a", 0, 7, false, 0}, {"uid-b", 0, 0, false, 0}};
    observe(u, t, s, 2);
    /* The first observation: a has launched at some time, b never. */
    assert_int_equal(cur(u).gpus[0].slices[0].busy, 1000);
    assert_int_equal(cur(u).gpus[0].slices[1].busy, 0);

    struct fx_usage *v = fx_usage_new(2, caps);
    observe(v, t, s, 2);
    /* a alone, launching (its counter moves), never charged; b idle. */
    s[0].activity = 8;
    t += S;
    observe(v, t, s, 2);
    struct fx_node_usage c = cur(v);
    assert_int_equal(c.gpus[0].slices[0].busy, 1000);
    assert_int_equal(c.gpus[0].slices[1].busy, 0);
    assert_int_equal(c.gpus[0].busy, 1000);
    fx_usage_free(v);

    /* Contending: a charged 0.3 s and still launching, b charged 0.3 s and
     * done: a gets all but b's 0.3. Work in flight counts as active too. */
    struct fx_usage *w = fx_usage_new(2, caps);
    struct slice x[2] = {{"uid-a", 0, 1, false, 0}, {"uid-b", 0, 1, false, 0}};
    observe(w, t, x, 2);
    x[0].gpu_time_ns = 300000000;
    x[0].activity = 2;
    x[1].gpu_time_ns = 300000000;
    t += S;
    /* Both means start at 1 (both had launched): b falls, a stays. */
    observe(w, t, x, 2);
    c = cur(w);
    double want_b = 1 + 1.0 / (FX_USAGE_TAU_DOWN_S + 1) * (0.3 - 1);
    double want_a = 1 + 1.0 / (FX_USAGE_TAU_DOWN_S + 1) * (0.7 - 1);
    assert_int_equal(c.gpus[0].slices[0].busy, (int)(want_a * 1000 + 0.5));
    assert_int_equal(c.gpus[0].slices[1].busy, (int)(want_b * 1000 + 0.5));
    assert_int_equal(c.gpus[0].busy, 1000); /* 0.7 + 0.3 */
    /* No launch but work in flight: active. */
    x[0].inflight = true;
    x[1].gpu_time_ns = 300000000;
    t += S;
    observe(w, t, x, 2);
    assert_true(cur(w).gpus[0].slices[0].busy > (int)(want_a * 1000));
    fx_usage_free(w);
    fx_usage_free(u);
}

/* What a tenant writes is bounded: a counter jump counts one interval at
 * most, a counter going back is no sample, memory stops at the GPU's, and
 * the GPU's sum at 1. */
static void test_bounds(void **state)
{
    (void)state;
    struct fx_usage *u = fx_usage_new(2, caps);
    uint64_t t = S;
    struct slice s[2] = {{"uid-a", 1000 * S, 0, false, 500 * GIB}, {"uid-b", 0, 0, false, -5}};
    observe(u, t, s, 2);
    struct fx_node_usage c = cur(u);
    assert_int_equal(c.gpus[0].slices[0].mem, 80 * GIB);
    assert_int_equal(c.gpus[0].slices[1].mem, 0);
    assert_int_equal(c.gpus[0].mem, 80 * GIB);
    s[0].gpu_time_ns += 1000 * S; /* 1000 s in 1 s */
    s[1].gpu_time_ns += 1000 * S;
    t += S;
    observe(u, t, s, 2);
    c = cur(u);
    double one = 1.0 / (FX_USAGE_TAU_UP_S + 1);
    assert_int_equal(c.gpus[0].slices[0].busy, (int)(one * 1000 + 0.5));
    assert_int_equal(c.gpus[0].busy, (int)(one * 1000 + 0.5)); /* 2 samples of 1: still 1 */
    /* Backwards: no sample (falls), and the next interval counts from the
     * new value. */
    s[0].gpu_time_ns = 5;
    s[1].gpu_time_ns = 5;
    t += S;
    observe(u, t, s, 2);
    double after = one + 1.0 / (FX_USAGE_TAU_DOWN_S + 1) * (0 - one);
    assert_int_equal(cur(u).gpus[0].slices[0].busy, (int)(after * 1000 + 0.5));
    s[0].gpu_time_ns = 5 + S / 2;
    t += S;
    observe(u, t, s, 2);
    double next = after + 1.0 / (FX_USAGE_TAU_UP_S + 1) * (0.5 - after);
    assert_int_equal(cur(u).gpus[0].slices[0].busy, (int)(next * 1000 + 0.5));
    /* Time that did not pass changes nothing. */
    struct fx_node_usage before = cur(u);
    s[0].gpu_time_ns += 100 * S;
    observe(u, t, s, 2);
    c = cur(u);
    assert_memory_equal(&before, &c, sizeof(c));
    /* An unreadable state file: unknown, never idle. */
    struct fx_usage_obs_gpu obs[2];
    memset(obs, 0, sizeof(obs));
    obs[0].failed = true;
    obs[0].have_mem = obs[1].have_mem = true;
    fx_usage_observe(u, t + S, obs);
    assert_false(cur(u).gpus[0].known);
    assert_true(cur(u).gpus[1].known);
    fx_usage_free(u);
}

/* Samples between two reads of the ledgers: memory keeps its value, and a
 * slice the state does not show (known from its ledger) is not gone. */
static void test_samples_without_memory(void **state)
{
    (void)state;
    struct fx_usage *u = fx_usage_new(2, caps);
    uint64_t t = S;
    struct slice s[2] = {{"uid-a", 0, 0, false, 4 * GIB}, {"uid-l", 0, 0, false, GIB}};
    observe(u, t, s, 2);
    struct fx_node_usage c0 = cur(u);
    assert_int_equal(c0.gpus[0].mem, 5 * GIB);
    struct fx_usage_obs_gpu obs[2];
    for (int i = 1; i <= 9; i++) {
        memset(obs, 0, sizeof(obs));
        obs[0].nslices = 1; /* the state shows uid-a alone, no memory */
        snprintf(obs[0].slices[0].pod, sizeof(obs[0].slices[0].pod), "uid-a");
        fx_usage_observe(u, t + (uint64_t)i * S / 10, obs);
    }
    struct fx_node_usage c = cur(u);
    assert_int_equal(c.gpus[0].mem, 5 * GIB);
    assert_int_equal(c.gpus[0].nslices, 2);
    assert_string_equal(c.gpus[0].slices[1].pod, "uid-l");
    assert_int_equal(c.gpus[0].slices[1].mem, GIB);
    assert_int_equal(c.gpus[0].slices[0].mem, 4 * GIB);
    /* The ledgers read again without uid-l: it is gone, its memory fades. */
    s[1] = s[0];
    observe(u, t + S, s, 1);
    c = cur(u);
    assert_int_equal(c.gpus[0].nslices, 1);
    assert_true(c.gpus[0].mem < 5 * GIB && c.gpus[0].mem > 4 * GIB);
    fx_usage_free(u);
}

/* At most one write per FX_USAGE_MIN_INTERVAL_S, only on a change past the
 * thresholds or a slice coming or going, and a refresh every
 * FX_USAGE_REFRESH_S. */
static void test_write_decision(void **state)
{
    (void)state;
    struct fx_usage *u = fx_usage_new(2, caps);
    uint64_t t0 = 100 * S, t = t0;
    assert_false(fx_usage_due(u, t)); /* nothing observed */
    struct slice a = {"uid-a", 0, 0, false, GIB};
    observe(u, t, &a, 1);
    assert_true(fx_usage_due(u, t)); /* never written */
    struct fx_node_usage c = cur(u);
    fx_usage_written(u, t, &c);
    assert_int_equal(fx_usage_writes(u), 1);
    /* Steady: no write until the refresh. */
    int writes = 0;
    for (int i = 1; i <= 2 * FX_USAGE_REFRESH_S; i++) {
        t = t0 + (uint64_t)i * S;
        observe(u, t, &a, 1);
        if (fx_usage_due(u, t)) {
            assert_true(i == FX_USAGE_REFRESH_S || i == 2 * FX_USAGE_REFRESH_S);
            c = cur(u);
            fx_usage_written(u, t, &c);
            writes++;
        }
    }
    assert_int_equal(writes, 2);
    /* Memory moving less than the threshold: no write. */
    t0 = t;
    a.mem = GIB + FX_USAGE_MEM_DELTA - 1;
    for (int i = 1; i <= 20; i++) {
        t = t0 + (uint64_t)i * S;
        observe(u, t, &a, 1);
        assert_false(fx_usage_due(u, t));
    }
    /* The GPU turns busy: a write once the last one is 10 s old, not
     * before; then at most one per 10 s while it keeps changing. */
    t0 = t;
    for (int i = 1; i <= 60; i++) {
        t = t0 + (uint64_t)i * S;
        a.gpu_time_ns += S;
        observe(u, t, &a, 1);
        if (fx_usage_due(u, t)) {
            c = cur(u);
            fx_usage_written(u, t, &c);
            writes++;
        }
    }
    /* 60 s of change: a write every 10 s at most, and it rose past 5%
     * within the first 10. */
    assert_true(writes >= 2 + 3 && writes <= 2 + 6);
    uint64_t last = t;
    /* Busy all the time now (busy reads 1000): mean keeps climbing for
     * minutes, and is carried by the refresh alone. */
    struct fx_node_usage before = cur(u);
    int steady_writes = 0;
    for (int i = 1; i <= FX_USAGE_REFRESH_S; i++) {
        t = last + (uint64_t)i * S;
        a.gpu_time_ns += S;
        observe(u, t, &a, 1);
        if (fx_usage_due(u, t)) {
            c = cur(u);
            fx_usage_written(u, t, &c);
            steady_writes++;
        }
    }
    assert_int_equal(before.gpus[0].busy, 1000);
    assert_true(cur(u).gpus[0].mean - before.gpus[0].mean > 3 * FX_USAGE_BUSY_DELTA);
    assert_int_equal(steady_writes, 1); /* the refresh, which carries it */
    writes += steady_writes;
    last = t;
    /* A slice appears: a change, written after the minimum interval. */
    struct slice two[2] = {a, {"uid-b", 0, 0, false, 0}};
    uint64_t due_at = 0;
    for (int i = 1; i <= 30 && !due_at; i++) {
        t = last + (uint64_t)i * S;
        two[0].gpu_time_ns += S;
        observe(u, t, two, 2);
        if (fx_usage_due(u, t))
            due_at = t;
    }
    assert_true(due_at != 0 && due_at - last <= FX_USAGE_MIN_INTERVAL_S * S);
    /* A failed write is retried, but not before the minimum interval. */
    fx_usage_written(u, due_at, NULL);
    assert_int_equal(fx_usage_writes(u), (uint64_t)writes + 1);
    assert_false(fx_usage_due(u, due_at + S));
    assert_false(fx_usage_due(u, due_at + FX_USAGE_MIN_INTERVAL_S * S - 1));
    assert_true(fx_usage_due(u, due_at + FX_USAGE_MIN_INTERVAL_S * S));
    fx_usage_free(u);
}

/* ---- the reader ---- */

static char tmpdir[256];

/* The slice of tenant uid-u, its runtime state in sdir and its ledger
 * under ldir, as the node agent writes its slice.conf. */
static void slice_cfg(struct fx_slice_config *cfg, const char *sdir, const char *ldir)
{
    fx_config_defaults(cfg);
    snprintf(cfg->tenant, sizeof(cfg->tenant), "uid-u");
    snprintf(cfg->state_dir, sizeof(cfg->state_dir), "%.190s", sdir);
    snprintf(cfg->ledger_dir, sizeof(cfg->ledger_dir), "%.180s/0123abcd", ldir);
}

static void test_read_state(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/flexpu-usage-test-XXXXXX");
    assert_non_null(mkdtemp(tmpdir));
    char dir[300], ledgers[300];
    snprintf(dir, sizeof(dir), "%s/state", tmpdir);
    snprintf(ledgers, sizeof(ledgers), "%s/ledger", tmpdir);
    struct fx_slice_config cfg;
    slice_cfg(&cfg, dir, ledgers);
    struct fx_gpu g;
    struct flexpu_error err = {0};
    struct fx_usage_obs_gpu o;
    /* No state file yet: no slices, no error. */
    assert_int_equal(fx_usage_read_gpu(dir, ledgers, "GPU-u-0", 80 * GIB, &o, &err), 0);
    assert_int_equal(o.nslices, 0);
    assert_false(o.failed);

    assert_int_equal(fx_gpu_attach(&g, &cfg, "GPU-u-0", 80ULL << 30, &err), 0);
    assert_int_equal(fx_ledger_charge(&g.mem, 3ULL << 30, 0), 0);
    g.st->tenants[g.tenant].gpu_time_ns = 42 * S;
    g.st->procs[g.slot].launches = 10;
    assert_int_equal(fx_usage_read_gpu(dir, ledgers, "GPU-u-0", 80 * GIB, &o, &err), 0);
    assert_int_equal(o.nslices, 1);
    assert_string_equal(o.slices[0].pod, "uid-u");
    assert_int_equal(o.slices[0].gpu_time_ns, 42 * S);
    assert_int_equal(o.slices[0].mem, 3 * GIB);
    assert_true(o.have_mem);
    /* Between two reads of the ledgers: the state alone. */
    assert_int_equal(fx_usage_read_gpu(dir, NULL, "GPU-u-0", 80 * GIB, &o, &err), 0);
    assert_false(o.have_mem);
    assert_int_equal(o.nslices, 1);
    assert_int_equal(o.slices[0].mem, 0);
    assert_int_equal(fx_usage_read_gpu(dir, ledgers, "GPU-u-0", 80 * GIB, &o, &err), 0);
    uint64_t act = o.slices[0].activity;
    g.st->procs[g.slot].launches = 11; /* a fast-path launch */
    assert_int_equal(fx_usage_read_gpu(dir, ledgers, "GPU-u-0", 80 * GIB, &o, &err), 0);
    assert_true(o.slices[0].activity != act);
    assert_false(o.slices[0].inflight);
    g.st->procs[g.slot].inflight = 1;
    assert_int_equal(fx_usage_read_gpu(dir, ledgers, "GPU-u-0", 80 * GIB, &o, &err), 0);
    assert_true(o.slices[0].inflight);
    /* Memory beyond the GPU's is cut to it. */
    assert_int_equal(fx_usage_read_gpu(dir, ledgers, "GPU-u-0", GIB, &o, &err), 0);
    assert_int_equal(o.slices[0].mem, GIB);

    /* A tenant writes another record: a name that is no pod UID is not
     * published; one that is counts as a slice (SECURITY.md says why
     * that is acceptable). */
    struct fx_tenant_rec *tr = &g.st->tenants[(g.tenant + 1) % FX_MAX_TENANTS];
    tr->in_use = 1;
    snprintf(tr->name, sizeof(tr->name), "bad name\"}");
    tr->gpu_time_ns = 7;
    assert_int_equal(fx_usage_read_gpu(dir, ledgers, "GPU-u-0", 80 * GIB, &o, &err), 0);
    assert_int_equal(o.nslices, 1);
    memset(tr->name, 'x', sizeof(tr->name)); /* no NUL at all: cut to 63 */
    assert_int_equal(fx_usage_read_gpu(dir, ledgers, "GPU-u-0", 80 * GIB, &o, &err), 0);
    assert_int_equal(o.nslices, 2);
    assert_int_equal(strlen(o.slices[1].pod), FX_TENANT_NAME_MAX - 1);
    snprintf(tr->name, sizeof(tr->name), "uid-v");
    assert_int_equal(fx_usage_read_gpu(dir, ledgers, "GPU-u-0", 80 * GIB, &o, &err), 0);
    assert_int_equal(o.nslices, 2);
    assert_int_equal(o.slices[1].gpu_time_ns, 7);
    /* A process record pointing at no tenant is ignored. */
    g.st->procs[g.slot].tenant = 1000;
    assert_int_equal(fx_usage_read_gpu(dir, ledgers, "GPU-u-0", 80 * GIB, &o, &err), 0);
    assert_false(o.slices[0].inflight);
    g.st->procs[g.slot].tenant = g.tenant;
    fx_gpu_detach(&g);
    /* Its process is gone: its counters no longer move the slice. */
    assert_int_equal(fx_usage_read_gpu(dir, ledgers, "GPU-u-0", 80 * GIB, &o, &err), 0);
    assert_false(o.slices[0].inflight);
    assert_int_equal(o.slices[0].mem, 0);

    /* Something else under a state file's name: failed, named. */
    char path[400];
    snprintf(path, sizeof(path), "%s/GPU-x-0.state", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("not a state file", f);
    fclose(f);
    assert_int_not_equal(fx_usage_read_gpu(dir, NULL, "GPU-x-0", 80 * GIB, &o, &err), 0);
    assert_true(o.failed);
    assert_non_null(strstr(err.msg, "GPU-x-0"));
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    assert_int_equal(system(cmd), 0);
}

/* The driver's measure is a floor under the GPU's figure, smoothed as the
 * runtime's: a GPU whose slices read idle (as a tenant can write them) is
 * busy when the driver says so; the slices keep their own figures. */
static void test_driver_floor(void **state)
{
    (void)state;
    struct fx_usage *u = fx_usage_new(2, caps);
    struct fx_usage_obs_gpu obs[2];
    memset(obs, 0, sizeof(obs));
    obs[0].nslices = 1;
    snprintf(obs[0].slices[0].pod, sizeof(obs[0].slices[0].pod), "uid-a");
    obs[0].have_mem = obs[1].have_mem = true;
    fx_usage_observe(u, S, obs);
    obs[0].driver_milli = 1000;
    fx_usage_observe(u, 2 * S, obs);
    struct fx_node_usage c = cur(u);
    double one = 1.0 / (FX_USAGE_TAU_UP_S + 1);
    assert_int_equal(c.gpus[0].busy, (int)(one * 1000 + 0.5));
    assert_int_equal(c.gpus[0].slices[0].busy, 0);
    assert_int_equal(c.gpus[1].busy, 0);
    /* Below the runtime's figure it changes nothing. */
    struct fx_usage *v = fx_usage_new(2, caps);
    struct slice s[1] = {{"uid-a", 0, 0, false, 0}};
    observe(v, S, s, 1);
    s[0].gpu_time_ns = S / 2;
    observe(v, 2 * S, s, 1);
    struct fx_usage *w = fx_usage_new(2, caps);
    struct slice t[1] = {{"uid-a", 0, 0, false, 0}};
    observe(w, S, t, 1);
    memset(obs, 0, sizeof(obs));
    obs[0].nslices = 1;
    snprintf(obs[0].slices[0].pod, sizeof(obs[0].slices[0].pod), "uid-a");
    obs[0].slices[0].gpu_time_ns = S / 2;
    obs[0].driver_milli = 300;
    obs[0].have_mem = obs[1].have_mem = true;
    fx_usage_observe(w, 2 * S, obs);
    assert_int_equal(cur(w).gpus[0].busy, cur(v).gpus[0].busy);
    fx_usage_free(u);
    fx_usage_free(v);
    fx_usage_free(w);
}

/* Writes FAKECUDA_DIR/gpu0.util for the fake NVML. */
static void fake_util(const char *dir, const char *text)
{
    char path[400];
    snprintf(path, sizeof(path), "%s/gpu0.util", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* The whole node half: the runtime's state file says idle (a tenant
 * attached, nothing launched) and the fake NVML says 100%: the GPU is
 * published busy. A GPU the driver does not measure keeps the runtime's
 * figure; one whose measure fails is unknown. */
static void test_driver_floor_read(void **state)
{
    (void)state;
    char dir[256];
    snprintf(dir, sizeof(dir), "/tmp/flexpu-usage-nvml-XXXXXX");
    assert_non_null(mkdtemp(dir));
    char sdir[300], ldir[300];
    snprintf(sdir, sizeof(sdir), "%s/state", dir);
    snprintf(ldir, sizeof(ldir), "%s/ledger", dir);
    setenv("FAKECUDA_DIR", dir, 1);
    setenv("FAKECUDA_DEVICES", "1", 1);
    setenv("FAKECUDA_TOTAL_MEM", "85899345920", 1);
    struct flexpu_error err = {0};
    struct fx_nvml *n = fx_nvml_open(FAKENVML_PATH, &err);
    assert_non_null(n);
    struct fx_node_gpu g[FLEXPU_MAX_GPUS];
    int count = 0;
    assert_int_equal(fx_nvml_discover(n, g, FLEXPU_MAX_GPUS, &count, &err), 0);
    assert_int_equal(count, 1);

    struct fx_slice_config cfg;
    slice_cfg(&cfg, sdir, ldir);
    struct fx_gpu rt;
    assert_int_equal(fx_gpu_attach(&rt, &cfg, g[0].uuid, 80ULL << 30, &err), 0);

    /* No file: the driver reads 0, measured. */
    struct fx_usage_obs_gpu o;
    bool measured = false;
    assert_int_equal(fx_usage_read_gpu(sdir, ldir, g[0].uuid, 80 * GIB, &o, &err), 0);
    assert_int_equal(fx_usage_read_driver(n, &g[0], &o, &measured, &err), 0);
    assert_true(measured);
    assert_int_equal(o.driver_milli, 0);

    fake_util(dir, "100\n");
    struct fx_usage *u = fx_usage_new(1, caps);
    for (int i = 0; i <= 100; i++) { /* 10 s of samples every 100 ms */
        assert_int_equal(fx_usage_read_gpu(sdir, ldir, g[0].uuid, 80 * GIB, &o, &err), 0);
        assert_int_equal(fx_usage_read_driver(n, &g[0], &o, &measured, &err), 0);
        assert_int_equal(o.driver_milli, 1000);
        assert_int_equal(o.nslices, 1);
        assert_int_equal(o.slices[0].gpu_time_ns, 0);
        fx_usage_observe(u, S + (uint64_t)i * S / 10, &o);
    }
    struct fx_node_usage c;
    fx_usage_current(u, 1700000000, &c);
    assert_true(c.gpus[0].known);
    assert_true(c.gpus[0].busy >= 850); /* 0.86 after 10 s of a 5 s constant */
    assert_int_equal(c.gpus[0].nslices, 1);
    assert_int_equal(c.gpus[0].slices[0].busy, 0); /* the slice's own figure is the state's */
    assert_true(fx_usage_due(u, 11 * S));
    char *text = fx_node_usage_format(&c, 1);
    assert_non_null(text);
    struct fx_node_usage back;
    assert_int_equal(fx_node_usage_parse(text, 1, &back, &err), 0);
    assert_int_equal(back.gpus[0].busy, c.gpus[0].busy);
    free(text);
    fx_usage_free(u);

    /* Not measured: the runtime's figure alone, and not an error. */
    fake_util(dir, "unsupported");
    assert_int_equal(fx_usage_read_gpu(sdir, ldir, g[0].uuid, 80 * GIB, &o, &err), 0);
    assert_int_equal(fx_usage_read_driver(n, &g[0], &o, &measured, &err), 0);
    assert_false(measured);
    assert_int_equal(o.driver_milli, 0);
    assert_false(o.failed);
    /* A failing measure: unknown, never idle, the error naming the GPU. */
    fake_util(dir, "garbage");
    assert_int_equal(fx_usage_read_gpu(sdir, ldir, g[0].uuid, 80 * GIB, &o, &err), 0);
    assert_int_equal(fx_usage_read_driver(n, &g[0], &o, &measured, &err), FLEXPU_EIO);
    assert_true(o.failed);
    assert_non_null(strstr(err.msg, g[0].uuid));
    assert_non_null(strstr(err.msg, "nvmlDeviceGetUtilizationRates"));

    fx_gpu_detach(&rt);
    fx_nvml_close(n);
    unsetenv("FAKECUDA_DIR");
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    flexpu_log_set_level(FLEXPU_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ewma_rise_and_fall),
        cmocka_unit_test(test_active_counts_untimed_time),
        cmocka_unit_test(test_bounds),
        cmocka_unit_test(test_samples_without_memory),
        cmocka_unit_test(test_write_decision),
        cmocka_unit_test(test_read_state),
        cmocka_unit_test(test_driver_floor),
        cmocka_unit_test(test_driver_floor_read),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
