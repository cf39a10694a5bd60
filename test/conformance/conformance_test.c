/* SPDX-License-Identifier: Apache-2.0 */
/* NVIDIA's real libcudart 12 and 13, cuBLAS 12 and 13 and NCCL 2.32 (cu12
 * and cu13), loaded against the fake driver with libflexpu-cuda.so
 * preloaded. The fake records every
 * entry point the libraries ask for (symbol, version, flags, the variant it
 * answered); the library logs what it answered for each. Asserted:
 *  - the process exits, by itself, with every library function found;
 *  - the library answered every request the driver saw, and nothing else;
 *  - nothing was refused: each answer is the driver's own (a function the
 *    library leaves alone, or "not found" where the driver said so), or,
 *    where the driver answered with a variant the library replaces, that
 *    variant's hook;
 *  - a function family the library replaces is never one the fake cannot
 *    answer (the fake must know every variant real libraries ask for);
 *  - what the libraries ask for is the list kept in test/conformance/
 *    recorded/, so a change shows in review. FLEXPU_CONFORMANCE_UPDATE=1
 *    rewrites the lists instead.
 *
 *   conformance_test cudart|cublas|nccl [--agent]
 *
 * NCCL's own requests (cuMem* VMM, multicast, stream memory operations)
 * go through its static runtime, which stops before them on the fake: the
 * client makes them as NCCL declares them (conformance_client.c), and the
 * test checks they were made.
 *
 * The libraries come from scripts/fetch-nvidia-libs.sh. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <dlfcn.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "runtime/arbagent.h"

/* --agent: the node agent's arbiter runs in this process and the client is
 * a slice of it (arbiter_dir set): the libraries start the same way. */
static int agent_mode;
static char agent_root[200];
static struct fx_arb_agent *agent;
static int agent_stop;

static void *agent_main(void *arg)
{
    (void)arg;
    fx_arb_agent_run(agent, &agent_stop);
    return NULL;
}

#define MAX_REQS 4096
#define EXIT_LIMIT_S 120

struct req {
    char key[160];    /* "symbol version flags" */
    char answer[100]; /* the fake's variant or "-"; the library's word */
};

struct run {
    const char *name;     /* the recorded list's name */
    const char *cudart;   /* PACKAGE-VERSION/lib/FILE under the cache (NCCL's) */
    const char *cublas;   /* the same, or NULL */
    const char *extra_lib; /* cuBLAS's own directory, for libcublasLt */
    const char *declared_in; /* NCCL runs: the library whose debug information
                              * names NCCL's entry points (the cu12 build;
                              * the cu13 one is stripped), else NULL */
};

static const struct run cudart_runs[] = {
    {"cudart-12", "nvidia-cuda-runtime-cu12-12.9.79/lib/libcudart.so.12", NULL, NULL, NULL},
    {"cudart-13", "nvidia-cuda-runtime-13.0.96/lib/libcudart.so.13", NULL, NULL, NULL},
};
static const struct run cublas_runs[] = {
    {"cublas-12", "nvidia-cuda-runtime-cu12-12.9.79/lib/libcudart.so.12",
     "nvidia-cublas-cu12-12.9.1.4/lib/libcublas.so.12", "nvidia-cublas-cu12-12.9.1.4/lib", NULL},
    {"cublas-13", "nvidia-cuda-runtime-13.0.96/lib/libcudart.so.13",
     "nvidia-cublas-13.0.2.14/lib/libcublas.so.13", "nvidia-cublas-13.0.2.14/lib", NULL},
};
#define NCCL12 "nvidia-nccl-cu12-2.32.3/lib/libnccl.so.2"
static const struct run nccl_runs[] = {
    {"nccl-12", NCCL12, NULL, NULL, NCCL12},
    {"nccl-13", "nvidia-nccl-cu13-2.32.6/lib/libnccl.so.2", NULL, NULL, NCCL12},
};
/* NCCL's own requests, which the static runtime's never include: its VMM
 * and NVSwitch multicast entry points. */
static const char *const nccl_own[] = {"cuMemCreate 10020 0", "cuMemRetainAllocationHandle 11000 0",
                                       "cuMulticastCreate 12010 0"};

static const char *libs_dir(void)
{
    const char *d = getenv("FLEXPU_NVIDIA_LIBS");
    return d && *d ? d : FX_NVIDIA_LIBS;
}

/* The last three words are the version, the flags and the answer; the
 * symbol is what precedes them (libcudart asks for "" once). */
static int parse_record(char *line, struct req *r)
{
    line[strcspn(line, "\n")] = '\0';
    char *w[3];
    for (int i = 2; i >= 0; i--) {
        char *sp = strrchr(line, ' ');
        if (!sp)
            return -1;
        w[i] = sp + 1;
        *sp = '\0';
    }
    if (strlen(line) + strlen(w[0]) + strlen(w[1]) + 3 > sizeof r->key ||
        strlen(w[2]) >= sizeof r->answer)
        return -1;
    snprintf(r->key, sizeof r->key, "%.100s %.20s %.20s", line, w[0], w[1]);
    snprintf(r->answer, sizeof r->answer, "%.99s", w[2]);
    return 0;
}

/* A library log line: msg="entry point" symbol=S version=V flags=F answer=A */
static int parse_log(const char *line, struct req *r)
{
    if (!strstr(line, "msg=\"entry point\""))
        return -1;
    const char *s = strstr(line, " symbol="), *v = strstr(line, " version="),
               *f = strstr(line, " flags="), *a = strstr(line, " answer=");
    if (!s || !v || !f || !a || v < s)
        return -1;
    int sym_len = (int)(v - (s + 8));
    int version = atoi(v + 9);
    unsigned long long flags = strtoull(f + 7, NULL, 10);
    snprintf(r->key, sizeof r->key, "%.*s %d %llu", sym_len, s + 8, version, flags);
    snprintf(r->answer, sizeof r->answer, "%s", a + 8);
    r->answer[strcspn(r->answer, " \n")] = '\0';
    return 0;
}

static int read_reqs(const char *path, int log, struct req *out, int max)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    char line[1024];
    int n = 0;
    while (n < max && fgets(line, sizeof line, f))
        if ((log ? parse_log(line, &out[n]) : parse_record(line, &out[n])) == 0)
            n++;
    fclose(f);
    return n;
}

static int by_key(const void *a, const void *b)
{
    return strcmp(((const struct req *)a)->key, ((const struct req *)b)->key);
}

static int contains(const char *path, const char *needle)
{
    FILE *f = fopen(path, "r");
    char line[1024];
    int found = 0;
    while (f && !found && fgets(line, sizeof line, f))
        found = strstr(line, needle) != NULL;
    if (f)
        fclose(f);
    return found;
}

/* 1 when the library replaces some variant of `symbol`'s family. */
static int family_hooked(void *lib, const char *symbol)
{
    char name[128];
    static const char *const suffixes[] = {"", "_v2", "_v3", "_v4", "_ptsz", "_v2_ptsz"};
    for (size_t i = 0; i < sizeof suffixes / sizeof suffixes[0]; i++) {
        snprintf(name, sizeof name, "%s%s", symbol, suffixes[i]);
        if (dlsym(lib, name))
            return 1;
    }
    return 0;
}

/* Runs the client and waits for it; fails the test if it does not exit. */
static void run_client(const struct run *r, const char *dir, const char *out, const char *err)
{
    char cudart[1024], cublas[1024], preload[600], ldpath[1200], rec[600], state[600];
    char declared[1024];
    snprintf(cudart, sizeof cudart, "%s/%s", libs_dir(), r->cudart);
    snprintf(cublas, sizeof cublas, "%s/%s", libs_dir(), r->cublas ? r->cublas : "");
    snprintf(declared, sizeof declared, "%s/%s", libs_dir(),
             r->declared_in ? r->declared_in : "");
    struct stat st;
    if (stat(cudart, &st) != 0 || (r->cublas && stat(cublas, &st) != 0) ||
        (r->declared_in && stat(declared, &st) != 0))
        fail_msg("%s: NVIDIA's libraries are not in %s: run scripts/fetch-nvidia-libs.sh %s",
                 r->name, libs_dir(),
                 r->declared_in ? "nccl" : r->cublas ? "cublas" : "cudart");
    snprintf(preload, sizeof preload, "LD_PRELOAD=%s", FX_TEST_LIB);
    snprintf(ldpath, sizeof ldpath, "LD_LIBRARY_PATH=%s%s%s/%s", FX_TEST_FAKE_DIR,
             r->extra_lib ? ":" : "", r->extra_lib ? libs_dir() : "",
             r->extra_lib ? r->extra_lib : "");
    snprintf(rec, sizeof rec, "FAKECUDA_LOOKUP_LOG=%s/requests.txt", dir);
    snprintf(state, sizeof state, "FLEXPU_STATE_DIR=%s/state", dir);
    char arb[300], ledger[300];
    snprintf(arb, sizeof arb, "FLEXPU_ARBITER_DIR=%s/arb", agent_root);
    snprintf(ledger, sizeof ledger, "FLEXPU_LEDGER_DIR=%s/ledger/conf", agent_root);
    /* Outside agent mode the NULL in the tenant's place ends the list. */
    char *env[] = {preload, ldpath, rec, state, "FLEXPU_LOG_LEVEL=debug",
                   "FLEXPU_MEMORY_LIMIT=4Gi", "ASAN_OPTIONS=detect_leaks=0",
                   agent_mode ? "FLEXPU_TENANT=conf" : NULL, arb, ledger, NULL};
    char *argv[] = {FX_CONF_CLIENT, cudart, r->cublas ? cublas : NULL, NULL, NULL};
    char nccl_flag[] = "--nccl";
    if (r->declared_in) {
        argv[1] = nccl_flag;
        argv[2] = cudart;
        argv[3] = declared;
    }
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int o = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int e = open(err, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (o < 0 || e < 0)
            _exit(126);
        dup2(o, 1);
        dup2(e, 2);
        execve(FX_CONF_CLIENT, argv, env);
        _exit(127);
    }
    int status = 0;
    struct timespec tick = {0, 50 * 1000 * 1000};
    for (int i = 0; i < EXIT_LIMIT_S * 20; i++) {
        if (waitpid(pid, &status, WNOHANG) == pid)
            break;
        nanosleep(&tick, NULL);
        if (i == EXIT_LIMIT_S * 20 - 1) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            fail_msg("%s: the process did not exit within %d s", r->name, EXIT_LIMIT_S);
        }
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fail_msg("%s: the client failed (status %#x); see %s and %s", r->name, status, out, err);
}

/* The unique requests, sorted, against the kept list (or into it). */
static void compare_recorded(const char *name, struct req *reqs, int n, const char *dir)
{
    char kept[600], now[600];
    snprintf(kept, sizeof kept, "%s/%s.txt", FX_RECORDED_DIR, name);
    snprintf(now, sizeof now, "%s/%s.txt", dir, name);
    const char *update = getenv("FLEXPU_CONFORMANCE_UPDATE");
    FILE *f = fopen(update && !strcmp(update, "1") ? kept : now, "w");
    assert_non_null(f);
    fprintf(f, "# What %s asks the driver for while it starts (symbol version flags),\n"
               "# recorded by test/conformance against the fake driver.\n", name);
    for (int i = 0; i < n; i++)
        if (i == 0 || strcmp(reqs[i].key, reqs[i - 1].key) != 0)
            fprintf(f, "%s\n", reqs[i].key);
    fclose(f);
    if (update && !strcmp(update, "1"))
        return;
    char diff[1400];
    snprintf(diff, sizeof diff, "diff -u %s %s", kept, now);
    if (system(diff) != 0)
        fail_msg("%s asks the driver for something else than %s (diff above): review it, then "
                 "rerun with FLEXPU_CONFORMANCE_UPDATE=1",
                 name, kept);
}

static void check(const struct run *r)
{
    char dir[] = "/tmp/fxconf-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char out[100], err[100], rec[100], state[100];
    snprintf(out, sizeof out, "%s/stdout", dir);
    snprintf(err, sizeof err, "%s/stderr", dir);
    snprintf(rec, sizeof rec, "%s/requests.txt", dir);
    snprintf(state, sizeof state, "%s/state", dir);
    assert_int_equal(mkdir(state, 0700), 0);
    pthread_t at;
    if (agent_mode) {
        snprintf(agent_root, sizeof agent_root, "%s/node", dir);
        char cmd[600];
        snprintf(cmd, sizeof cmd, "mkdir -p %s/slices/conf %s/ledger/conf", agent_root,
                 agent_root);
        assert_int_equal(system(cmd), 0);
        snprintf(cmd, sizeof cmd, "%s/slices/conf/slice.conf", agent_root);
        FILE *f = fopen(cmd, "w");
        assert_non_null(f);
        fprintf(f, "tenant = conf\ncompute_share = 50\n");
        fclose(f);
        struct flexpu_error e = {0};
        assert_int_equal(fx_arb_agent_new(&agent, agent_root, &e), 0);
        agent_stop = 0;
        assert_int_equal(pthread_create(&at, NULL, agent_main, NULL), 0);
    }
    run_client(r, dir, out, err);
    if (agent_mode) {
        __atomic_store_n(&agent_stop, 1, __ATOMIC_RELEASE);
        pthread_join(at, NULL);
        fx_arb_agent_free(agent);
        agent = NULL;
        /* it joined the agent's arbiter, not a private state */
        if (contains(err, "cannot join"))
            fail_msg("%s: the process did not join the agent's arbiter (see %s)", r->name, err);
    }

    static struct req seen[MAX_REQS], said[MAX_REQS];
    int n_seen = read_reqs(rec, 0, seen, MAX_REQS);
    int n_said = read_reqs(err, 1, said, MAX_REQS);
    print_message("%s: %d entry points asked for\n", r->name, n_seen);
    /* libcudart asks for a few hundred: far fewer means it never started. */
    assert_true(n_seen > 100);
    if (contains(err, "refused"))
        fail_msg("%s: the library refused an entry point (see %s)", r->name, err);
    assert_int_equal(n_said, n_seen);
    qsort(seen, (size_t)n_seen, sizeof seen[0], by_key);
    qsort(said, (size_t)n_said, sizeof said[0], by_key);

    void *lib = dlopen(FX_TEST_LIB, RTLD_LAZY | RTLD_LOCAL);
    assert_non_null(lib);
    int hooks = 0;
    for (int i = 0; i < n_seen; i++) {
        if (strcmp(seen[i].key, said[i].key) != 0)
            fail_msg("%s: the driver saw \"%s\" where the library answered \"%s\"", r->name,
                     seen[i].key, said[i].key);
        const char *want = !strcmp(seen[i].answer, "-") ? "none"
                           : dlsym(lib, seen[i].answer) ? "hook"
                                                        : "driver";
        hooks += !strcmp(want, "hook");
        if (strcmp(said[i].answer, want) != 0)
            fail_msg("%s: \"%s\": the driver answered %s, the library %s (expected %s)", r->name,
                     seen[i].key, seen[i].answer, said[i].answer, want);
        char symbol[100];
        snprintf(symbol, sizeof symbol, "%.*s", (int)strcspn(seen[i].key, " "), seen[i].key);
        if (!strcmp(seen[i].answer, "-") && symbol[0] && family_hooked(lib, symbol))
            fail_msg("%s: \"%s\" is of a family the library replaces, and the fake cannot "
                     "answer it: add the variant to test/fakecuda/fake_lookup.c",
                     r->name, seen[i].key);
    }
    dlclose(lib);
    for (size_t i = 0; r->declared_in && i < sizeof nccl_own / sizeof nccl_own[0]; i++) {
        struct req want;
        snprintf(want.key, sizeof want.key, "%s", nccl_own[i]);
        if (!bsearch(&want, seen, (size_t)n_seen, sizeof seen[0], by_key))
            fail_msg("%s: NCCL's own \"%s\" was never asked for (see %s)", r->name, nccl_own[i],
                     out);
    }
    print_message("%s: %d answered with hooks, none refused\n", r->name, hooks);
    assert_true(hooks > 10);
    compare_recorded(r->name, seen, n_seen, dir);

    char rm[200];
    snprintf(rm, sizeof rm, "rm -rf %s", dir);
    assert_int_equal(system(rm), 0);
}

static void test_cudart_12(void **state)
{
    (void)state;
    check(&cudart_runs[0]);
}
static void test_cudart_13(void **state)
{
    (void)state;
    check(&cudart_runs[1]);
}
static void test_cublas_12(void **state)
{
    (void)state;
    check(&cublas_runs[0]);
}
static void test_cublas_13(void **state)
{
    (void)state;
    check(&cublas_runs[1]);
}
static void test_nccl_12(void **state)
{
    (void)state;
    check(&nccl_runs[0]);
}
static void test_nccl_13(void **state)
{
    (void)state;
    check(&nccl_runs[1]);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest cudart[] = {
        cmocka_unit_test(test_cudart_12),
        cmocka_unit_test(test_cudart_13),
    };
    const struct CMUnitTest cublas[] = {
        cmocka_unit_test(test_cublas_12),
        cmocka_unit_test(test_cublas_13),
    };
    const struct CMUnitTest nccl[] = {
        cmocka_unit_test(test_nccl_12),
        cmocka_unit_test(test_nccl_13),
    };
    agent_mode = argc > 2 && !strcmp(argv[2], "--agent");
    if (argc > 1 && !strcmp(argv[1], "nccl"))
        return cmocka_run_group_tests_name(agent_mode ? "conformance_nccl --agent"
                                                      : "conformance_nccl", nccl, NULL, NULL);
    if (argc > 1 && !strcmp(argv[1], "cublas"))
        return cmocka_run_group_tests_name(agent_mode ? "conformance_cublas --agent"
                                                      : "conformance_cublas", cublas, NULL, NULL);
    return cmocka_run_group_tests_name(agent_mode ? "conformance_cudart --agent"
                                                  : "conformance_cudart", cudart, NULL, NULL);
}
