/* SPDX-License-Identifier: Apache-2.0 */
/* The node agent's MPS mode (src/node/mps.c) against a fake
 * nvidia-cuda-mps-control (test/fakemps/) that records every command it
 * gets: a daemon per slice with its pipe directory, the limits set and read
 * back before fx_mps_start (and PreStartContainer) returns, a daemon that
 * dies restarted, a failing one failing the start with what it said, a
 * released slice quit and removed, a previous agent's orphans cleaned, and
 * the device plugin's answers in mps and soft mode. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "deviceplugin/v1beta1/api.pb-c.h"
#include "flexpu/log.h"
#include "kube/contract.h"
#include "node/grpc.h"
#include "node/mps.h"
#include "node/plugin.h"
#include "node/slices.h"
#include "podresources/v1/api.pb-c.h"
#include "runtime/config.h"
#include "util/clock.h"
#include "util/procstat.h"
#include "unit/plugin_fake.h"

static char tmpdir[256];

#define KEY_A "0123456789abcdef01234567"
#define KEY_B "89abcdef0123456789abcdef"
#define KEY_C "fedcba9876543210fedcba98"

static int setup_dir(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/flexpu-mps-test-XXXXXX");
    assert_non_null(mkdtemp(tmpdir));
    return 0;
}

static int teardown_dir(void **state)
{
    (void)state;
    /* Daemons the test left are its children: quit by their pipe, reaped. */
    char cmd[1024];
    snprintf(cmd, sizeof(cmd),
             "for p in '%s'/mps/*/pipe/nvidia-cuda-mps-control.pid; do "
             "[ -f \"$p\" ] && kill -9 \"$(cat \"$p\")\" 2>/dev/null; done; rm -rf '%s'",
             tmpdir, tmpdir);
    int rc = system(cmd);
    while (waitpid(-1, NULL, WNOHANG) > 0)
        ;
    return rc == 0 ? 0 : -1;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* A control program that runs the fake with FAKEMPS_FAIL=how. */
static void failing_control(const char *how, char *out, size_t len)
{
    snprintf(out, len, "%s/control-%s", tmpdir, how);
    FILE *f = fopen(out, "w");
    assert_non_null(f);
    fprintf(f, "#!/bin/sh\nFAKEMPS_FAIL=%s exec '%s' \"$@\"\n", how, FAKEMPS_PATH);
    fclose(f);
    chmod(out, 0755);
}

/* Each run of the control program in a daemon's start (its first answer,
 * the limits set, then read back) has the timeout. When one timeout
 * bounded the whole start, 3 s was too short for six ASan processes on a
 * loaded 2-core machine (under `nice -n 19` beside a busy core the start
 * failed "no answer in time", in 7 of 10 tests). A start that works ends
 * at once, so the bound is generous; the daemon that never answers has a
 * short one of its own. */
#define START_MS 30000
#define HANG_MS 3000

/* A control program slow on every node of a loaded cluster: each client
 * run sleeps `ms` first (the daemon, -f, starts at once); a run whose
 * command is `hung` (NULL: none) never answers. */
static void slow_control(int ms, const char *hung, char *out, size_t len)
{
    snprintf(out, len, "%s/control-slow", tmpdir);
    FILE *f = fopen(out, "w");
    assert_non_null(f);
    fprintf(f,
            "#!/bin/sh\n"
            "[ \"$1\" = -f ] && exec '%s' \"$@\"\n"
            "sleep %d.%03d\n"
            "IFS= read -r line\n"
            "[ \"$line\" = '%s' ] && exec sleep 60\n"
            "exec '%s' <<EOF\n$line\nEOF\n",
            FAKEMPS_PATH, ms / 1000, ms % 1000, hung ? hung : "", FAKEMPS_PATH);
    fclose(f);
    chmod(out, 0755);
}

static struct fx_mps *new_mps_within(const char *control, int timeout_ms)
{
    struct fx_mps_config c = {.root = tmpdir, .control = control ? control : FAKEMPS_PATH,
                              .timeout_ms = timeout_ms, .tick_ms = 20};
    struct flexpu_error err = {0};
    struct fx_mps *m = fx_mps_new(&c, &err);
    assert_non_null(m);
    return m;
}

static struct fx_mps *new_mps(const char *control)
{
    return new_mps_within(control, START_MS);
}

static void read_text(const char *path, char *out, size_t len)
{
    out[0] = '\0';
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    size_t n = fread(out, 1, len - 1, f);
    out[n] = '\0';
    fclose(f);
}

/* The commands slice `key`'s daemon got. */
static void commands(const char *key, char *out, size_t len)
{
    char path[400];
    snprintf(path, sizeof(path), "%s/mps/%s/log/commands", tmpdir, key);
    read_text(path, out, len);
}

static int count(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p++)
        n++;
    return n;
}

/* The pid the slice's daemon wrote in its pipe directory; 0 if none. */
static pid_t daemon_pid(const char *key)
{
    char path[400], text[32];
    snprintf(path, sizeof(path), "%s/mps/%s/pipe/nvidia-cuda-mps-control.pid", tmpdir, key);
    read_text(path, text, sizeof(text));
    return (pid_t)atoi(text);
}

static bool alive(pid_t pid)
{
    struct fx_procstat st;
    return pid > 0 && kill(pid, 0) == 0 && fx_procstat_read(pid, &st, NULL) == 0 &&
           !fx_procstat_ended(&st);
}

static bool exists(const char *key)
{
    char path[400];
    struct stat st;
    snprintf(path, sizeof(path), "%s/mps/%s", tmpdir, key);
    return stat(path, &st) == 0;
}

static struct fx_mps_limits two_gpus(void)
{
    struct fx_mps_limits l = {.thread_pct = 25, .ndev = 2, .mem_mib = {1024, 2048}};
    snprintf(l.visible, sizeof(l.visible), "GPU-a,GPU-b");
    return l;
}

static void test_sharing_mode_parse(void **state)
{
    (void)state;
    enum fx_sharing_mode m = FX_SHARING_MPS;
    assert_int_equal(fx_sharing_mode_parse("soft", &m), 0);
    assert_int_equal(m, FX_SHARING_SOFT);
    assert_int_equal(fx_sharing_mode_parse("mps", &m), 0);
    assert_int_equal(m, FX_SHARING_MPS);
    assert_int_equal(fx_sharing_mode_parse("MPS", &m), -1);
    assert_int_equal(fx_sharing_mode_parse("", &m), -1);
    assert_string_equal(fx_sharing_mode_name(FX_SHARING_MPS), "mps");
    char dir[300];
    assert_int_equal(fx_mps_pipe_dir("/r", KEY_A, dir, sizeof(dir)), 0);
    assert_string_equal(dir, "/r/mps/" KEY_A "/pipe");
    /* a key is 24 lower-case hex digits: nothing else becomes a path */
    assert_int_equal(fx_mps_pipe_dir("/r", "../../etc/passwd0000000", dir, sizeof(dir)), -1);
    assert_int_equal(fx_mps_pipe_dir("/r", "0123456789ABCDEF01234567", dir, sizeof(dir)), -1);
    assert_int_equal(fx_mps_pipe_dir("/r", KEY_A "0", dir, sizeof(dir)), -1);
}

/* The daemon runs on the slice's pipe directory with the slice's GPUs, and
 * both limits are set and read back before fx_mps_start returns. */
static void test_daemon_started_with_limits(void **state)
{
    (void)state;
    struct fx_mps *m = new_mps(NULL);
    struct fx_mps_limits l = two_gpus();
    struct flexpu_error err = {0};
    assert_int_equal(fx_mps_start(m, KEY_A, &l, &err), 0);
    char text[4096];
    commands(KEY_A, text, sizeof(text));
    char *start = strstr(text, "start pid="), *pct = strstr(text,
        "set_default_active_thread_percentage 25\n"),
         *mem0 = strstr(text, "set_default_device_pinned_mem_limit 0 1024M\n"),
         *mem1 = strstr(text, "set_default_device_pinned_mem_limit 1 2048M\n"),
         *get = strstr(text, "get_default_device_pinned_mem_limit 1\n");
    assert_non_null(start);
    assert_non_null(strstr(text, "visible=GPU-a,GPU-b\n"));
    assert_non_null(pct);
    assert_non_null(mem0);
    assert_non_null(mem1);
    assert_non_null(get);
    assert_true(start < pct && pct < mem1 && mem0 < mem1 && mem1 < get);
    pid_t pid = daemon_pid(KEY_A);
    assert_true(alive(pid));
    /* the agent's record, beside the pipe directory */
    char path[400], rec[400];
    snprintf(path, sizeof(path), "%s/mps/%s/daemon", tmpdir, KEY_A);
    read_text(path, rec, sizeof(rec));
    char want[64];
    snprintf(want, sizeof(want), "%d ", (int)pid);
    assert_true(strncmp(rec, want, strlen(want)) == 0);
    assert_non_null(strstr(rec, " 25 2 1024 2048 GPU-a,GPU-b\n"));

    /* a container of the slice starting again: the same daemon */
    assert_int_equal(fx_mps_start(m, KEY_A, &l, &err), 0);
    assert_int_equal(fx_mps_starts(m), 1);
    assert_int_equal(daemon_pid(KEY_A), pid);
    /* other limits: a new daemon with them */
    l.thread_pct = 40;
    assert_int_equal(fx_mps_start(m, KEY_A, &l, &err), 0);
    assert_int_equal(fx_mps_starts(m), 2);
    assert_false(alive(pid));
    commands(KEY_A, text, sizeof(text));
    assert_non_null(strstr(text, "quit\nstart pid="));
    assert_non_null(strstr(text, "set_default_active_thread_percentage 40\n"));

    /* limits out of range never reach a daemon */
    l.thread_pct = 0;
    assert_int_equal(fx_mps_start(m, KEY_B, &l, &err), FLEXPU_EINVAL);
    assert_non_null(strstr(err.msg, KEY_B));
    l = two_gpus();
    snprintf(l.visible, sizeof(l.visible), "GPU-a;rm -rf /");
    assert_int_equal(fx_mps_start(m, KEY_B, &l, &err), FLEXPU_EINVAL);
    assert_false(exists(KEY_B));
    fx_mps_free(m);
}

/* A daemon that dies while its slice lives is started again, limits and
 * all. */
static void test_daemon_restarted(void **state)
{
    (void)state;
    struct fx_mps *m = new_mps(NULL);
    struct fx_mps_limits l = two_gpus();
    struct flexpu_error err = {0};
    assert_int_equal(fx_mps_start(m, KEY_A, &l, &err), 0);
    pid_t pid = daemon_pid(KEY_A);
    assert_true(pid > 0);
    assert_int_equal(kill(pid, SIGKILL), 0);
    pid_t again = 0;
    char text[8192] = "";
    for (int i = 0; i < 500; i++) {
        sleep_ms(20);
        commands(KEY_A, text, sizeof(text));
        again = daemon_pid(KEY_A);
        if (fx_mps_starts(m) == 2 && again != pid && alive(again) &&
            count(text, "get_default_device_pinned_mem_limit 1\n") == 2)
            break;
    }
    assert_int_equal(fx_mps_starts(m), 2);
    assert_int_not_equal(again, pid);
    assert_true(alive(again));
    assert_int_equal(count(text, "start pid="), 2);
    assert_int_equal(count(text, "set_default_active_thread_percentage 25\n"), 2);
    assert_int_equal(count(text, "set_default_device_pinned_mem_limit 1 2048M\n"), 2);
    fx_mps_free(m);
}

/* A daemon that cannot start, or will not take a limit, or never answers:
 * the start fails naming the slice and what went wrong, and leaves no
 * daemon running. */
static void test_failing_daemon(void **state)
{
    (void)state;
    char ctl[300];
    struct fx_mps_limits l = two_gpus();
    struct flexpu_error err = {0};

    failing_control("start", ctl, sizeof(ctl));
    struct fx_mps *m = new_mps(ctl);
    assert_int_equal(fx_mps_start(m, KEY_A, &l, &err), FLEXPU_EIO);
    assert_non_null(strstr(err.msg, KEY_A));
    assert_non_null(strstr(err.msg, "exited with status 1"));
    assert_non_null(strstr(err.msg, "no CUDA-capable device is detected"));
    /* not restarted behind the caller's back */
    sleep_ms(100);
    assert_int_equal(fx_mps_starts(m), 1);
    fx_mps_free(m);

    failing_control("limits", ctl, sizeof(ctl));
    m = new_mps(ctl);
    assert_int_equal(fx_mps_start(m, KEY_B, &l, &err), FLEXPU_EIO);
    assert_non_null(strstr(err.msg, KEY_B));
    assert_non_null(strstr(err.msg, "device 0 pinned memory limit reads back '0', want 1024M"));
    char text[4096];
    commands(KEY_B, text, sizeof(text));
    assert_non_null(strstr(text, "quit\n")); /* and it was quit */
    assert_int_equal(daemon_pid(KEY_B), 0);
    fx_mps_free(m);

    failing_control("hang", ctl, sizeof(ctl));
    m = new_mps_within(ctl, HANG_MS);
    assert_int_equal(fx_mps_start(m, KEY_C, &l, &err), FLEXPU_EIO);
    assert_non_null(strstr(err.msg, "did not answer within 3000 ms"));
    assert_non_null(strstr(err.msg, "Cannot find MPS control daemon process"));
    commands(KEY_C, text, sizeof(text));
    int hung = 0;
    assert_int_equal(sscanf(text, "start pid=%d", &hung), 1);
    assert_false(alive(hung)); /* killed after the quit went unanswered */

    /* a control program that does not exist */
    fx_mps_free(m);
    snprintf(ctl, sizeof(ctl), "%s/no-such-control", tmpdir);
    m = new_mps(ctl);
    assert_int_equal(fx_mps_start(m, KEY_A, &l, &err), FLEXPU_EIO);
    assert_non_null(strstr(err.msg, "exited with status 127"));
    fx_mps_free(m);
}

/* Each run of the control program has the whole timeout, not a share of
 * one: a control program that takes 300 ms a run against a 1.5 s timeout
 * starts a daemon with four GPUs limited (11 runs: its answer, 5 limits
 * set and 5 read back, over 3 s in all). A run that never answers fails
 * the start naming its step, its command and the timeout, and the daemon
 * is quit. */
static void test_slow_control_each_step_timed(void **state)
{
    (void)state;
    char ctl[300], text[4096];
    struct fx_mps_limits l = {.thread_pct = 30, .ndev = 4, .mem_mib = {1024, 2048, 3072, 4096}};
    snprintf(l.visible, sizeof(l.visible), "GPU-a,GPU-b,GPU-c,GPU-d");
    struct flexpu_error err = {0};
    slow_control(300, NULL, ctl, sizeof(ctl));
    struct fx_mps *m = new_mps_within(ctl, 1500);
    if (fx_mps_start(m, KEY_A, &l, &err) != 0)
        fail_msg("a start whose every step ends in time failed: %s", err.msg);
    commands(KEY_A, text, sizeof(text));
    assert_non_null(strstr(text, "set_default_device_pinned_mem_limit 3 4096M\n"));
    assert_non_null(strstr(text, "get_default_device_pinned_mem_limit 3\n"));
    assert_true(alive(daemon_pid(KEY_A)));
    fx_mps_free(m);

    /* one device limited: 5 steps; the 4th never answers */
    l = (struct fx_mps_limits){.thread_pct = 30, .ndev = 1, .mem_mib = {1024}};
    slow_control(300, "get_default_active_thread_percentage", ctl, sizeof(ctl));
    m = new_mps_within(ctl, 1500);
    assert_int_equal(fx_mps_start(m, KEY_B, &l, &err), FLEXPU_EIO);
    if (!strstr(err.msg, KEY_B) || !strstr(err.msg, "step 4 of 5") ||
        !strstr(err.msg, "'get_default_active_thread_percentage'") ||
        !strstr(err.msg, "got no answer within 1500 ms"))
        fail_msg("the error does not name the slice, the step and the timeout: %s", err.msg);
    commands(KEY_B, text, sizeof(text));
    assert_non_null(strstr(text, "quit\n"));
    assert_int_equal(daemon_pid(KEY_B), 0);
    fx_mps_free(m);
}

/* A released slice: its daemon quit, its directories gone. */
static void test_release(void **state)
{
    (void)state;
    struct fx_mps *m = new_mps(NULL);
    struct fx_mps_limits l = two_gpus();
    struct flexpu_error err = {0};
    assert_int_equal(fx_mps_start(m, KEY_A, &l, &err), 0);
    assert_int_equal(fx_mps_start(m, KEY_B, &l, &err), 0);
    pid_t a = daemon_pid(KEY_A), b = daemon_pid(KEY_B);
    fx_mps_release(m, KEY_A);
    assert_true(fx_mps_settle(m, 10000));
    assert_false(exists(KEY_A));
    assert_false(alive(a));
    char quits[1024], path[400];
    snprintf(path, sizeof(path), "%s/mps/fakemps-quits", tmpdir);
    read_text(path, quits, sizeof(quits));
    assert_non_null(strstr(quits, KEY_A "/pipe\n")); /* by quit, not by a signal */
    /* the other slice is untouched */
    assert_true(exists(KEY_B));
    assert_true(alive(b));
    /* releasing what has no daemon removes its directories */
    assert_int_equal(fx_mps_prepare(m, KEY_C, &err), 0);
    fx_mps_release(m, KEY_C);
    assert_true(fx_mps_settle(m, 10000));
    assert_false(exists(KEY_C));
    fx_mps_free(m);
}

static bool keep_a(const char *key, void *ctx)
{
    (void)ctx;
    return strcmp(key, KEY_A) == 0;
}

/* After an agent restart: the daemons of slices still wanted are adopted
 * (and restarted when they die), the others quit, a directory without the
 * agent's record removed. */
static void test_orphans_after_restart(void **state)
{
    (void)state;
    struct fx_mps *m = new_mps(NULL);
    struct fx_mps_limits l = two_gpus();
    struct flexpu_error err = {0};
    assert_int_equal(fx_mps_start(m, KEY_A, &l, &err), 0);
    assert_int_equal(fx_mps_start(m, KEY_B, &l, &err), 0);
    fx_mps_free(m); /* the agent goes; its daemons stay */
    pid_t a = daemon_pid(KEY_A), b = daemon_pid(KEY_B);
    assert_true(alive(a) && alive(b));
    /* a command while the agent is away: the daemon grows (the fake maps
     * 1 MiB per command, as the real one grows with its servers), and is
     * still the same process to the next agent */
    char cmd[800];
    snprintf(cmd, sizeof(cmd),
             "echo get_server_list | CUDA_MPS_PIPE_DIRECTORY=%s/mps/%s/pipe %s >/dev/null",
             tmpdir, KEY_A, FAKEMPS_PATH);
    assert_int_equal(system(cmd), 0);
    char path[400];
    snprintf(path, sizeof(path), "%s/mps/%s", tmpdir, KEY_C);
    assert_int_equal(mkdir(path, 0755), 0); /* no record: not one of ours */

    m = new_mps(NULL);
    assert_true(fx_mps_settle(m, 10000));
    assert_false(exists(KEY_C));
    fx_mps_keep_only(m, keep_a, NULL);
    assert_true(fx_mps_settle(m, 10000));
    assert_false(exists(KEY_B));
    /* b took quit, and the quit waited until b was a zombie or gone, read
     * from the same /proc/PID/stat as alive() (util/procstat.h): no wait
     * here, or a daemon misread as gone would pass unseen. */
    assert_false(alive(b));
    assert_true(exists(KEY_A));
    assert_true(alive(a));
    /* the adopted one is the same daemon, not a new one */
    assert_int_equal(fx_mps_start(m, KEY_A, &l, &err), 0);
    assert_int_equal(fx_mps_starts(m), 0);
    /* and supervised: killed, it comes back */
    assert_int_equal(kill(a, SIGKILL), 0);
    for (int i = 0; i < 500 && fx_mps_starts(m) == 0; i++)
        sleep_ms(20);
    assert_int_equal(fx_mps_starts(m), 1);
    for (int i = 0; i < 500 && !alive(daemon_pid(KEY_A)); i++)
        sleep_ms(20);
    assert_true(alive(daemon_pid(KEY_A)));
    fx_mps_free(m);
}

/* ---- the device plugin in mps mode, with a fake PodResources ---- */

#define NGPU 2
static struct fx_node_gpu gpus[NGPU];
/* Pod default/a, bound to n1 with 30% and 8 GiB of GPU 1. */
static json_t *pod_a(void)
{
    struct fx_allocation a = {.ngpu = 1};
    snprintf(a.gpus[0].uuid, sizeof(a.gpus[0].uuid), "%s", gpus[1].uuid);
    a.gpus[0].index = 1;
    a.gpus[0].cores = 30;
    a.gpus[0].mem = 8LL << 30;
    char *text = fx_allocation_format(&a);
    json_t *p = json_pack("{s:{s:s, s:s, s:s, s:{s:s}}, s:{s:s, s:[{s:s, s:{s:{s:s, s:s, s:s}}}]},"
                          " s:{s:s}}",
                          "metadata", "name", "a", "namespace", "default", "uid", "uid-a",
                          "annotations", FX_ANN_ALLOCATION, text, "spec", "nodeName", "n1",
                          "containers", "name", "main", "resources", "limits", FX_RES_GPU, "1",
                          FX_RES_GPU_CORES, "30", FX_RES_GPU_MEMORY, "8589934592", "status",
                          "phase", "Pending");
    free(text);
    return p;
}

static void plugin_up(struct plugin_run *run, enum fx_sharing_mode mode, const char *control)
{
    for (int i = 0; i < NGPU; i++) {
        memset(&gpus[i], 0, sizeof(gpus[i]));
        snprintf(gpus[i].uuid, sizeof(gpus[i].uuid), "GPU-mps-%d", i);
        gpus[i].index = gpus[i].minor = i;
        gpus[i].healthy = true;
        gpus[i].mem_bytes = 80LL << 30;
    }
    struct fx_plugin_config pc = {.node_name = "n1", .root = tmpdir, .wait_ms = 1500,
                                  .sharing = mode,
                                  .mps_control = control ? control : FAKEMPS_PATH,
                                  .mps_timeout_ms = START_MS, .mps_tick_ms = 20};
    json_t *pa = pod_a();
    plugin_up_with(run, tmpdir, &pc, gpus, NGPU, pa);
    json_decref(pa);
}

/* Allocate for GPU 1; the slice key, and whether the answer mounts an MPS
 * pipe directory (its host path in pipe) and sets CUDA_MPS_PIPE_DIRECTORY. */
static void allocate_a(struct plugin_run *run, char *ids[1], char key[FX_SLICE_KEY_LEN + 1],
                       char *pipe, size_t pipe_len, bool *env)
{
    V1beta1__AllocateResponse *ar = allocate_ok(run->dp, ids, 1);
    V1beta1__ContainerAllocateResponse *c0 = ar->container_responses[0];
    pipe[0] = '\0';
    *env = false;
    key[0] = '\0';
    const V1beta1__Mount *mt = mount_at(c0, FX_CTR_MPS);
    if (mt) {
        assert_false(mt->read_only);
        snprintf(pipe, pipe_len, "%s", mt->host_path);
    }
    for (size_t i = 0; i < c0->n_envs; i++) {
        if (strcmp(c0->envs[i]->key, "CUDA_MPS_PIPE_DIRECTORY") == 0) {
            assert_string_equal(c0->envs[i]->value, FX_CTR_MPS);
            *env = true;
        }
        if (strcmp(c0->envs[i]->key, "FLEXPU_ALLOCATION") == 0)
            snprintf(key, FX_SLICE_KEY_LEN + 1, "%s", c0->envs[i]->value);
    }
    v1beta1__allocate_response__free_unpacked(ar, NULL);
    assert_int_equal(strlen(key), FX_SLICE_KEY_LEN);
}

static struct fx_grpc_reply prestart(struct plugin_run *run, char *ids[1])
{
    nheld = 0;
    hold("default", "a", ids, 1);
    return prestart_call(run->dp, ids, 1);
}

/* The tenant slice.conf names, "" while it fails closed. */
static void slice_tenant(const char *key, char *out, size_t len)
{
    char path[400];
    snprintf(path, sizeof(path), "%s/slices/%s/slice.conf", tmpdir, key);
    struct fx_slice_config cfg;
    fx_config_defaults(&cfg);
    struct flexpu_error err = {0};
    out[0] = '\0';
    if (fx_config_load_file(&cfg, path, &err) == 1)
        snprintf(out, len, "%s", cfg.tenant);
}

static void test_plugin_mps(void **state)
{
    (void)state;
    struct plugin_run run;
    plugin_up(&run, FX_SHARING_MPS, NULL);
    char *ids[1] = {"GPU-mps-1::3"}, key[FX_SLICE_KEY_LEN + 1], pipe[400], want[400];
    bool env;
    allocate_a(&run, ids, key, pipe, sizeof(pipe), &env);
    /* the container gets its own pipe directory, and only its own */
    assert_true(env);
    assert_int_equal(fx_mps_pipe_dir(tmpdir, key, want, sizeof(want)), 0);
    assert_string_equal(pipe, want);
    struct stat st;
    assert_int_equal(stat(pipe, &st), 0);

    struct fx_grpc_reply r = prestart(&run, ids);
    assert_int_equal(r.status, FX_GRPC_OK);
    free(r.data);
    /* by the time PreStartContainer answered: the daemon on that directory,
     * its threads at the pod's 30% and GPU 0 of its view (the node's GPU
     * 1) pinned at 8 GiB */
    char text[4096];
    commands(key, text, sizeof(text));
    assert_non_null(strstr(text, "start pid="));
    assert_non_null(strstr(text, "visible=GPU-mps-1\n"));
    assert_non_null(strstr(text, "set_default_active_thread_percentage 30\n"));
    assert_non_null(strstr(text, "set_default_device_pinned_mem_limit 0 8192M\n"));
    assert_true(alive(daemon_pid(key)));
    char tenant[64];
    slice_tenant(key, tenant, sizeof(tenant));
    assert_string_equal(tenant, "uid-a");

    /* the pod goes: its daemon is quit and its directories removed */
    pid_t pid = daemon_pid(key);
    json_t *pa = pod_a();
    fx_plugin_pod_event(run.p, KUBE_DELETED, pa);
    json_decref(pa);
    assert_true(fx_mps_settle(fx_plugin_mps(run.p), 10000));
    assert_false(exists(key));
    assert_false(alive(pid));
    plugin_down(&run);
}

/* A daemon that cannot start fails PreStartContainer, naming the pod and
 * what the daemon said; the slice stays fail closed. */
static void test_plugin_mps_failure(void **state)
{
    (void)state;
    char ctl[300];
    failing_control("start", ctl, sizeof(ctl));
    struct plugin_run run;
    plugin_up(&run, FX_SHARING_MPS, ctl);
    char *ids[1] = {"GPU-mps-1::0"}, key[FX_SLICE_KEY_LEN + 1], pipe[400];
    bool env;
    allocate_a(&run, ids, key, pipe, sizeof(pipe), &env);
    struct fx_grpc_reply r = prestart(&run, ids);
    assert_int_equal(r.status, FX_GRPC_FAILED_PRECONDITION);
    assert_non_null(strstr(r.message, "pod default/a"));
    assert_non_null(strstr(r.message, "MPS daemon of slice"));
    assert_non_null(strstr(r.message, "no CUDA-capable device is detected"));
    free(r.data);
    char tenant[64];
    slice_tenant(key, tenant, sizeof(tenant));
    assert_string_equal(tenant, "");
    plugin_down(&run);
}

/* After a restart, a slice whose pod ended while the agent was away: its
 * daemon is quit and its directories removed after the first list. */
static void test_plugin_mps_orphan(void **state)
{
    (void)state;
    struct plugin_run run;
    plugin_up(&run, FX_SHARING_MPS, NULL);
    char *ids[1] = {"GPU-mps-1::1"}, key[FX_SLICE_KEY_LEN + 1], pipe[400];
    bool env;
    allocate_a(&run, ids, key, pipe, sizeof(pipe), &env);
    struct fx_grpc_reply r = prestart(&run, ids);
    assert_int_equal(r.status, FX_GRPC_OK);
    free(r.data);
    pid_t pid = daemon_pid(key);
    assert_true(alive(pid));
    plugin_down(&run);
    assert_true(alive(pid)); /* the agent went, the daemon stays */

    /* the agent again, and its first list has no pod a */
    struct flexpu_error err = {0};
    struct fx_plugin_config pc = {.node_name = "n1", .root = tmpdir, .podresources = run.podres,
                                  .wait_ms = 1500, .sharing = FX_SHARING_MPS,
                                  .mps_control = FAKEMPS_PATH, .mps_timeout_ms = START_MS,
                                  .mps_tick_ms = 20};
    struct fx_plugin *p = fx_plugin_new(&pc, gpus, NGPU, &err);
    assert_non_null(p);
    assert_true(exists(key)); /* not before the list says so */
    fx_plugin_pod_event(p, KUBE_SYNC_BEGIN, NULL);
    fx_plugin_pod_event(p, KUBE_SYNC_END, NULL);
    assert_true(fx_mps_settle(fx_plugin_mps(p), 10000));
    assert_false(exists(key));
    assert_false(alive(pid));
    fx_plugin_free(p);
}

/* soft mode: no MPS mount, no variable, no directory. */
static void test_plugin_soft(void **state)
{
    (void)state;
    struct plugin_run run;
    plugin_up(&run, FX_SHARING_SOFT, NULL);
    assert_null(fx_plugin_mps(run.p));
    char *ids[1] = {"GPU-mps-1::2"}, key[FX_SLICE_KEY_LEN + 1], pipe[400];
    bool env;
    allocate_a(&run, ids, key, pipe, sizeof(pipe), &env);
    assert_string_equal(pipe, "");
    assert_false(env);
    struct fx_grpc_reply r = prestart(&run, ids);
    assert_int_equal(r.status, FX_GRPC_OK);
    free(r.data);
    char path[400];
    struct stat st;
    snprintf(path, sizeof(path), "%s/mps", tmpdir);
    assert_int_not_equal(stat(path, &st), 0);
    char tenant[64];
    slice_tenant(key, tenant, sizeof(tenant));
    assert_string_equal(tenant, "uid-a");
    plugin_down(&run);
}

int main(void)
{
    flexpu_log_set_level(FLEXPU_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sharing_mode_parse),
        cmocka_unit_test_setup_teardown(test_daemon_started_with_limits, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_daemon_restarted, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_failing_daemon, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_slow_control_each_step_timed, setup_dir,
                                        teardown_dir),
        cmocka_unit_test_setup_teardown(test_release, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_orphans_after_restart, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_plugin_mps, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_plugin_mps_failure, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_plugin_mps_orphan, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_plugin_soft, setup_dir, teardown_dir),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
