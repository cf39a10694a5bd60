/* SPDX-License-Identifier: Apache-2.0 */
/* The node agent's parts: the gRPC layer (client and server over a Unix
 * socket), NVML discovery against the fake NVML, the slice files (read back
 * by the runtime's own parser), the device plugin's calls with a fake
 * PodResources server, and the metrics from a real shared-state file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <time.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "deviceplugin/v1beta1/api.pb-c.h"
#include "flexpu/log.h"
#include "kube/contract.h"
#include "node/gpus.h"
#include "node/dirlimit.h"
#include "node/grpc.h"
#include "node/metrics.h"
#include "node/plugin.h"
#include "node/reclaimed.h"
#include "node/slices.h"
#include "podresources/v1/api.pb-c.h"
#include "runtime/config.h"
#include "runtime/ledger.h"
#include "runtime/state.h"
#include "util/clock.h"
#include "unit/plugin_fake.h"

static char tmpdir[256];

static int setup_dir(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/flexpu-node-test-XXXXXX");
    assert_non_null(mkdtemp(tmpdir));
    return 0;
}

static void unmount_under_tmpdir(const char *mnt, const char *optional, void *ctx)
{
    (void)optional;
    (void)ctx;
    size_t n = strlen(tmpdir);
    if (!strncmp(mnt, tmpdir, n) && mnt[n] == '/')
        umount2(mnt, MNT_DETACH);
}

static int teardown_dir(void **state)
{
    (void)state;
    /* A failed test may leave its tmpfs mounts (test_ledger_size_limit):
     * rm cannot remove a mount point. */
    fx_mountinfo_each(unmount_under_tmpdir, NULL);
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

/* ---- gRPC ---- */

static void echo(void *ctx, const uint8_t *req, size_t len, struct fx_grpc_reply *r)
{
    (void)ctx;
    if (len == 4 && memcmp(req, "fail", 4) == 0) {
        r->status = FX_GRPC_FAILED_PRECONDITION;
        snprintf(r->message, sizeof(r->message), "100%% refused: naïve\nline");
        return;
    }
    r->data = malloc(len + 1);
    if (len)
        memcpy(r->data, req, len);
    r->len = len;
}

static void stream_first(void *ctx, struct fx_grpc_reply *r)
{
    (void)ctx;
    r->data = (uint8_t *)strdup("first");
    r->len = 5;
}

static const struct fx_grpc_method echo_methods[] = {
    {"/t.S/Echo", echo, NULL},
    {"/t.S/Stream", NULL, stream_first},
    {NULL, NULL, NULL},
};

static void test_grpc_roundtrip(void **state)
{
    (void)state;
    char sock[300];
    snprintf(sock, sizeof(sock), "%s/echo.sock", tmpdir);
    struct flexpu_error err = {0};
    struct fx_grpc_server *s = fx_grpc_server_start(sock, echo_methods, NULL, &err);
    assert_non_null(s);

    struct fx_grpc_reply r;
    assert_int_equal(fx_grpc_call(sock, "/t.S/Echo", (const uint8_t *)"hello", 5, 2000, &r, &err), 0);
    assert_int_equal(r.status, FX_GRPC_OK);
    assert_int_equal(r.len, 5);
    assert_memory_equal(r.data, "hello", 5);
    free(r.data);

    /* an empty message is a valid message */
    assert_int_equal(fx_grpc_call(sock, "/t.S/Echo", NULL, 0, 2000, &r, &err), 0);
    assert_int_equal(r.status, FX_GRPC_OK);
    assert_int_equal(r.len, 0);
    free(r.data);

    /* a large message crosses several DATA frames and flow-control windows */
    size_t big = 200000;
    uint8_t *blob = malloc(big);
    for (size_t i = 0; i < big; i++)
        blob[i] = (uint8_t)(i * 7);
    assert_int_equal(fx_grpc_call(sock, "/t.S/Echo", blob, big, 5000, &r, &err), 0);
    assert_int_equal(r.len, big);
    assert_memory_equal(r.data, blob, big);
    free(r.data);
    free(blob);

    /* status and a message that needs percent-encoding */
    assert_int_equal(fx_grpc_call(sock, "/t.S/Echo", (const uint8_t *)"fail", 4, 2000, &r, &err), 0);
    assert_int_equal(r.status, FX_GRPC_FAILED_PRECONDITION);
    assert_string_equal(r.message, "100% refused: naïve\nline");
    assert_null(r.data);

    assert_int_equal(fx_grpc_call(sock, "/t.S/Nope", NULL, 0, 2000, &r, &err), 0);
    assert_int_equal(r.status, FX_GRPC_UNIMPLEMENTED);
    assert_non_null(strstr(r.message, "/t.S/Nope"));

    fx_grpc_server_stop(s);
    assert_int_not_equal(access(sock, F_OK), 0);
    /* no server: a transport error naming the socket */
    assert_int_not_equal(fx_grpc_call(sock, "/t.S/Echo", NULL, 0, 500, &r, &err), 0);
    assert_non_null(strstr(err.msg, sock));
}

static void test_grpc_msg_encoding(void **state)
{
    (void)state;
    char enc[64], dec[64];
    fx_grpc_msg_encode("a%b\n", enc);
    assert_string_equal(enc, "a%25b%0A");
    fx_grpc_msg_decode(enc, strlen(enc), dec, sizeof(dec));
    assert_string_equal(dec, "a%b\n");
    /* a truncated escape is kept as text, not read past the end */
    fx_grpc_msg_decode("ab%4", 4, dec, sizeof(dec));
    assert_string_equal(dec, "ab%4");
}

/* ---- NVML discovery ---- */

static void test_nvml_discovery(void **state)
{
    (void)state;
    char lost[300];
    snprintf(lost, sizeof(lost), "%s/lost", tmpdir);
    setenv("FAKECUDA_DEVICES", "8", 1);
    setenv("FAKECUDA_TOTAL_MEM", "85899345920", 1);
    setenv("FAKENVML_NAME", "NVIDIA H100 80GB HBM3", 1);
    setenv("FAKENVML_NUMA", "0,0,0,0,1,1,1,1", 1);
    setenv("FAKENVML_NVLINK", "0-3,4-7", 1);
    setenv("FAKENVML_LOST_FILE", lost, 1);
    struct flexpu_error err = {0};
    struct fx_nvml *n = fx_nvml_open(FAKENVML_PATH, &err);
    assert_non_null(n);
    struct fx_node_gpu g[FLEXPU_MAX_GPUS];
    int count = 0;
    assert_int_equal(fx_nvml_discover(n, g, FLEXPU_MAX_GPUS, &count, &err), 0);
    assert_int_equal(count, 8);
    for (int i = 0; i < 8; i++) {
        assert_string_equal(g[i].model, "H100-80GB-HBM3");
        assert_int_equal(g[i].mem_bytes, 85899345920LL);
        assert_int_equal(g[i].minor, i);
        assert_int_equal(g[i].numa, i < 4 ? 0 : 1);
        assert_int_equal(g[i].group, i < 4 ? 0 : 1);
        assert_true(g[i].healthy);
        assert_int_equal(strncmp(g[i].uuid, "GPU-", 4), 0);
    }
    assert_string_not_equal(g[0].uuid, g[1].uuid);
    /* GPU 5 is lost, then comes back */
    FILE *f = fopen(lost, "w");
    fputs("5\n", f);
    fclose(f);
    assert_int_equal(fx_nvml_check_health(n, g, count), 1);
    assert_false(g[5].healthy);
    assert_string_equal(g[5].health_reason, "GPU is lost");
    assert_int_equal(fx_nvml_check_health(n, g, count), 0);
    unlink(lost);
    assert_int_equal(fx_nvml_check_health(n, g, count), 1);
    assert_true(g[5].healthy);
    fx_nvml_close(n);
    unsetenv("FAKENVML_LOST_FILE");

    /* no such library: the error names it */
    assert_null(fx_nvml_open("/nonexistent/libnvidia-ml.so.1", &err));
    assert_non_null(strstr(err.msg, "/nonexistent/libnvidia-ml.so.1"));

    char name[64];
    fx_gpu_model_name("Tesla T4", name, sizeof(name));
    assert_string_equal(name, "T4");
    fx_gpu_model_name("NVIDIA A100-SXM4-80GB", name, sizeof(name));
    assert_string_equal(name, "A100-SXM4-80GB");
}

/* ---- slice files ---- */

static void test_slice_files(void **state)
{
    (void)state;
    char *a[] = {"GPU-1::3", "GPU-2::0"}, *b[] = {"GPU-2::0", "GPU-1::3"}, *c[] = {"GPU-1::4"};
    char ka[FX_SLICE_KEY_LEN + 1], kb[FX_SLICE_KEY_LEN + 1], kc[FX_SLICE_KEY_LEN + 1];
    assert_int_equal(fx_slice_key(a, 2, ka), 0);
    fx_slice_key(b, 2, kb);
    fx_slice_key(c, 1, kc);
    assert_string_equal(ka, kb);
    assert_string_not_equal(ka, kc);
    assert_int_equal(strlen(ka), FX_SLICE_KEY_LEN);

    struct flexpu_error err = {0};
    assert_int_equal(fx_slice_prepare(tmpdir, ka, a, 2, FX_DIR_LIMITS_OFF, &err), 0);
    char path[400];
    snprintf(path, sizeof(path), "%s/slices/%s/slice.conf", tmpdir, ka);
    /* pending: the runtime must refuse it (fail closed) */
    struct fx_slice_config cfg;
    fx_config_defaults(&cfg);
    assert_int_not_equal(fx_config_load_file(&cfg, path, &err), 0);
    assert_non_null(strstr(err.msg, "pending"));

    struct fx_slice_file sf = {.tenant = "0b9f6c1e-uid", .compute_share = 30, .compute_cap = 50,
                               .memory = 8LL << 30, .priority = FX_PRIO_HIGH,
                               .cap_clock_mhz = 1750};
    assert_int_equal(fx_slice_write(tmpdir, ka, &sf, &err), 0);
    fx_config_defaults(&cfg);
    assert_int_equal(fx_config_load_file(&cfg, path, &err), 1);
    assert_string_equal(cfg.tenant, "0b9f6c1e-uid");
    assert_int_equal(cfg.compute_share, 30);
    assert_int_equal(cfg.compute_cap, 50);
    assert_int_equal(cfg.memory_limit, 8LL << 30);
    assert_int_equal(cfg.priority, FX_PRIO_HIGH);
    /* No shared state directory: none is mounted, and under the agent
     * (arbiter_dir) the library uses none; the runtime's default stays. */
    char text0[1024];
    assert_int_equal(fx_slice_format(&sf, text0, sizeof(text0)), 0);
    assert_null(strstr(text0, "state_dir"));
    assert_string_equal(cfg.state_dir, "/tmp/flexpu");
    assert_string_equal(cfg.ledger_dir, FX_CTR_LEDGER);
    assert_string_equal(cfg.arbiter_dir, FX_CTR_ARB);
    /* --cap-clock-mhz reaches a capped slice, as the runtime reads it... */
    assert_int_equal(cfg.cap_clock_mhz, 1750);
    /* ...and not an uncapped one, where it would not apply. */
    char text[1024];
    sf.compute_cap = 100;
    assert_int_equal(fx_slice_format(&sf, text, sizeof(text)), 0);
    assert_null(strstr(text, "cap_clock_mhz"));
    /* A temporary file a crash left between create and rename goes too. */
    char left[700];
    snprintf(left, sizeof(left), "%s/slices/%s/.slice.conf.Ab12Cd", tmpdir, ka);
    FILE *lf = fopen(left, "w");
    assert_non_null(lf);
    fclose(lf);
    /* The ledger directory goes with whatever its tenant left there: a
     * nested directory, and a symlink to a file that must survive. */
    char nested[700], link[700], outside[700];
    snprintf(nested, sizeof(nested), "%s/ledger/%s/a/b", tmpdir, ka);
    assert_int_equal(system(strcat(strcpy(left, "mkdir -p "), nested)), 0);
    snprintf(outside, sizeof(outside), "%s/keep-me", tmpdir);
    lf = fopen(outside, "w");
    assert_non_null(lf);
    fclose(lf);
    snprintf(link, sizeof(link), "%s/ledger/%s/a/link", tmpdir, ka);
    assert_int_equal(symlink(outside, link), 0);
    fx_slice_remove(tmpdir, ka);
    snprintf(path, sizeof(path), "%s/slices/%s", tmpdir, ka);
    assert_int_not_equal(access(path, F_OK), 0);
    snprintf(path, sizeof(path), "%s/ledger/%s", tmpdir, ka);
    assert_int_not_equal(access(path, F_OK), 0);
    assert_int_equal(access(outside, F_OK), 0);
}

/* --cap-clock-mhz: off or the runtime's bounds; errors name the flag and
 * the value. */
static void test_cap_clock_flag(void **state)
{
    (void)state;
    struct flexpu_error err = {0};
    int mhz = -1;
    assert_int_equal(fx_cap_clock_flag_parse("off", &mhz, &err), 0);
    assert_int_equal(mhz, 0);
    assert_int_equal(fx_cap_clock_flag_parse("1750", &mhz, &err), 0);
    assert_int_equal(mhz, 1750);
    assert_int_equal(fx_cap_clock_flag_parse("100", &mhz, &err), 0);
    assert_int_equal(fx_cap_clock_flag_parse("10000", &mhz, &err), 0);
    assert_int_equal(mhz, 10000);
    const char *bad[] = {"", "0", "99", "10001", "1.75", "1750MHz", "auto", "-1600", "OFF"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        mhz = 1234;
        memset(&err, 0, sizeof(err));
        assert_int_not_equal(fx_cap_clock_flag_parse(bad[i], &mhz, &err), 0);
        assert_int_equal(mhz, 1234); /* left alone on error */
        assert_non_null(strstr(err.msg, "--cap-clock-mhz"));
        char quoted[32];
        snprintf(quoted, sizeof(quoted), "'%s'", bad[i]);
        assert_non_null(strstr(err.msg, quoted));
    }
}

static void find_mount(const char *mnt, const char *optional, void *ctx)
{
    (void)optional;
    const char **path = ctx;
    if (*path && !strcmp(mnt, *path))
        *path = NULL;
}

/* Whether `path` is a mount point in /proc/self/mountinfo. */
static int mounted(const char *path)
{
    const char *left = path;
    assert_int_equal(fx_mountinfo_each(find_mount, &left), 0);
    return left == NULL;
}

/* A tenant that writes its ledger directory without end meets ENOSPC at
 * the slice's limit, in its own directory only; the directory is its own
 * tmpfs, kept when the kubelet's second call prepares the slice again and
 * gone with the slice. Needs CAP_SYS_ADMIN (root in CI); skipped without. */
static void test_ledger_size_limit(void **state)
{
    (void)state;
    char *a[] = {"GPU-1::3", "GPU-2::0"}, *b[] = {"GPU-1::4"}, *c[] = {"GPU-2::5"};
    char ka[FX_SLICE_KEY_LEN + 1], kb[FX_SLICE_KEY_LEN + 1], kc[FX_SLICE_KEY_LEN + 1];
    fx_slice_key(a, 2, ka);
    fx_slice_key(b, 1, kb);
    fx_slice_key(c, 1, kc);
    struct flexpu_error err = {0};
    if (geteuid() != 0)
        skip();
    if (fx_slice_prepare(tmpdir, ka, a, 2, FX_DIR_LIMITS_LOCAL, &err) != 0) {
        assert_non_null(strstr(err.msg, "Operation not permitted"));
        assert_non_null(strstr(err.msg, "--size-limits=off"));
        skip();
    }
    char la[300], lb[300], lc[300], path[400];
    snprintf(la, sizeof(la), "%s/ledger/%s", tmpdir, ka);
    snprintf(lb, sizeof(lb), "%s/ledger/%s", tmpdir, kb);
    snprintf(lc, sizeof(lc), "%s/ledger/%s", tmpdir, kc);
    assert_int_equal(fx_dir_is_tmpfs_root(la), 1);
    assert_true(mounted(la));
    assert_int_equal(fx_slice_prepare(tmpdir, kb, b, 1, FX_DIR_LIMITS_LOCAL, &err), 0);
    assert_int_equal(fx_dir_is_tmpfs_root(lb), 1);
    struct stat sb;
    assert_int_equal(stat(la, &sb), 0);
    assert_int_equal(sb.st_mode & 07777, 0777);

    /* The tenant of slice a fills its directory. */
    snprintf(path, sizeof(path), "%s/fill", la);
    int fd = open(path, O_CREAT | O_WRONLY, 0600);
    assert_true(fd >= 0);
    static char chunk[65536];
    memset(chunk, 'x', sizeof(chunk));
    uint64_t written = 0;
    int e = 0;
    for (int i = 0; i < 4096 && !e; i++) {
        ssize_t w = write(fd, chunk, sizeof(chunk));
        if (w > 0)
            written += (uint64_t)w;
        if (w < (ssize_t)sizeof(chunk))
            e = w < 0 ? errno : ENOSPC;
    }
    /* A short write is followed by ENOSPC. */
    if (write(fd, chunk, sizeof(chunk)) < 0)
        e = errno;
    close(fd);
    assert_int_equal(e, ENOSPC);
    assert_true(written <= fx_dir_ledger_bytes(2));
    assert_true(written >= (1u << 20));
    /* ... and its inodes. */
    int files = 0;
    for (; files < 100000; files++) {
        snprintf(path, sizeof(path), "%s/f%d", la, files);
        int nf = open(path, O_CREAT | O_WRONLY, 0600);
        if (nf < 0) {
            assert_int_equal(errno, ENOSPC);
            break;
        }
        close(nf);
    }
    assert_true(files <= (int)FX_DIR_LEDGER_INODES);
    /* Slice b is untouched by it. */
    snprintf(path, sizeof(path), "%s/ok", lb);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fwrite(chunk, 1, sizeof(chunk), f), sizeof(chunk));
    assert_int_equal(fclose(f), 0);

    /* PreStartContainer prepares the slice again: the same tmpfs, as it was. */
    assert_int_equal(fx_slice_prepare(tmpdir, kb, b, 1, FX_DIR_LIMITS_LOCAL, &err), 0);
    assert_int_equal(access(path, F_OK), 0);

    /* A directory an agent without limits left with files (an upgrade)
     * stays as it is, so that its tenant keeps its ledgers. */
    char cmd[700];
    snprintf(cmd, sizeof(cmd), "mkdir -p %s && touch %s/GPU-2.ledger", lc, lc);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(fx_slice_prepare(tmpdir, kc, c, 1, FX_DIR_LIMITS_LOCAL, &err), 0);
    assert_int_equal(fx_dir_is_tmpfs_root(lc), 0);
    snprintf(path, sizeof(path), "%s/GPU-2.ledger", lc);
    assert_int_equal(access(path, F_OK), 0);

    fx_slice_remove(tmpdir, ka);
    fx_slice_remove(tmpdir, kb);
    fx_slice_remove(tmpdir, kc);
    assert_false(mounted(la));
    assert_false(mounted(lb));
    assert_int_not_equal(access(la, F_OK), 0);
    assert_int_not_equal(access(lb, F_OK), 0);
    assert_int_not_equal(access(lc, F_OK), 0);
}

/* --size-limits=shared refuses a root whose mount does not propagate to the
 * host (the DaemonSet forgot mountPropagation: Bidirectional) and takes one
 * that does, found under a mount point with a space in its name. */
static void test_size_limits_propagation(void **state)
{
    (void)state;
    char mnt[400], root[500];
    snprintf(mnt, sizeof(mnt), "%s/host dir", tmpdir);
    snprintf(root, sizeof(root), "%s/flexpu", mnt);
    assert_int_equal(mkdir(mnt, 0755), 0);
    struct flexpu_error err = {0};
    assert_int_equal(fx_dir_limits_check(mnt, FX_DIR_LIMITS_LOCAL, &err), 0);
    assert_int_equal(fx_dir_limits_check(mnt, FX_DIR_LIMITS_OFF, &err), 0);
    if (geteuid() != 0 || mount("t", mnt, "tmpfs", 0, "size=1m") != 0)
        skip();
    assert_int_equal(mkdir(root, 0755), 0);
    int rc = mount(NULL, mnt, NULL, MS_PRIVATE, NULL);
    assert_int_equal(rc, 0);
    assert_int_not_equal(fx_dir_limits_check(root, FX_DIR_LIMITS_SHARED, &err), 0);
    assert_non_null(strstr(err.msg, "Bidirectional"));
    assert_non_null(strstr(err.msg, mnt));
    assert_non_null(strstr(err.msg, "--size-limits=local"));
    if (mount(NULL, mnt, NULL, MS_SHARED, NULL) == 0) {
        err.msg[0] = 0;
        assert_int_equal(fx_dir_limits_check(root, FX_DIR_LIMITS_SHARED, &err), 0);
    }
    assert_int_equal(umount2(mnt, MNT_DETACH), 0);
}

/* ld.so.preload is replaced, never truncated in place: a process starting
 * while the agent restarts must find the library's line, and a container
 * that bind-mounted the old file keeps it whole. */
static void test_preload_replaced_atomically(void **state)
{
    (void)state;
    struct flexpu_error err = {0};
    char path[400], text[256];
    snprintf(path, sizeof(path), "%s/ld.so.preload", tmpdir);
    assert_int_equal(fx_preload_install(tmpdir, &err), 0);
    struct stat before, after;
    assert_int_equal(stat(path, &before), 0);
    assert_int_equal(before.st_mode & 0777, 0644); /* read by containers of any user */
    FILE *old = fopen(path, "r"); /* what a running container has mounted */
    assert_non_null(old);

    assert_int_equal(fx_preload_install(tmpdir, &err), 0); /* the agent restarts */
    assert_int_equal(stat(path, &after), 0);
    if (after.st_ino == before.st_ino)
        fail_msg("'%s' was rewritten in place (inode %lu kept)", path,
                 (unsigned long)after.st_ino);
    assert_non_null(fgets(text, sizeof(text), old));
    assert_string_equal(text, FX_CTR_LIB "\n");
    fclose(old);
    FILE *cur = fopen(path, "r");
    assert_non_null(cur);
    assert_non_null(fgets(text, sizeof(text), cur));
    assert_string_equal(text, FX_CTR_LIB "\n");
    fclose(cur);
    assert_int_equal(after.st_mode & 0777, 0644);

    /* nothing left beside it: no temporary file */
    char cmd[400];
    snprintf(cmd, sizeof(cmd), "test \"$(ls -A '%s')\" = ld.so.preload", tmpdir);
    assert_int_equal(system(cmd), 0);

    /* a directory that does not exist: the error names the path */
    snprintf(path, sizeof(path), "%s/missing/ld.so.preload", tmpdir);
    assert_int_equal(fx_file_replace(path, "x\n", 0644, &err), FLEXPU_EIO);
    assert_non_null(strstr(err.msg, "/missing/"));
}

/* ---- the device plugin with a fake PodResources ---- */

#define NGPU 4
static struct fx_node_gpu fake_gpus[NGPU];

/* NGPU healthy 80 GiB A100s, GPU i at index and minor i, UUID <prefix><i>,
 * on NUMA node i / 2 when numa (else 0). */
static void fake_gpus_init(const char *prefix, bool numa)
{
    for (int i = 0; i < NGPU; i++) {
        memset(&fake_gpus[i], 0, sizeof(fake_gpus[i]));
        snprintf(fake_gpus[i].uuid, sizeof(fake_gpus[i].uuid), "%s%d", prefix, i);
        snprintf(fake_gpus[i].model, sizeof(fake_gpus[i].model), "A100");
        fake_gpus[i].index = fake_gpus[i].minor = i;
        fake_gpus[i].numa = numa ? i / 2 : 0;
        fake_gpus[i].healthy = true;
        fake_gpus[i].mem_bytes = 80LL << 30;
    }
}

/* A pod bound to node n1 with an allocation on the given GPUs. */
/* A pod bound to n1 with an allocation of `cores` and `mem` bytes on each of
 * its GPUs; it asks flexpu.io/gpu-memory: req_mem when req_mem > 0. */
static json_t *pod_req(const char *name, const char *uid, const int *gpus, int n, int cores,
                       long long mem, long long req_mem)
{
    struct fx_allocation a = {.ngpu = n};
    for (int i = 0; i < n; i++) {
        snprintf(a.gpus[i].uuid, sizeof(a.gpus[i].uuid), "%.*s", (int)sizeof(a.gpus[i].uuid) - 1,
                 fake_gpus[gpus[i]].uuid);
        a.gpus[i].index = gpus[i];
        a.gpus[i].cores = cores;
        a.gpus[i].mem = mem;
    }
    char *text = fx_allocation_format(&a);
    char gpu[16], pct[16];
    snprintf(gpu, sizeof(gpu), "%d", n);
    snprintf(pct, sizeof(pct), "%d", cores);
    json_t *p = json_pack("{s:{s:s, s:s, s:s, s:{s:s}}, s:{s:s, s:[{s:s, s:{s:{s:s}}}]}, s:{s:s}}",
                          "metadata", "name", name, "namespace", "default", "uid", uid,
                          "annotations", FX_ANN_ALLOCATION, text, "spec", "nodeName", "n1",
                          "containers", "name", "main", "resources", "limits", FX_RES_GPU, gpu,
                          "status", "phase", "Pending");
    if (cores < 100) { /* a slice, capped at 60% */
        json_object_set_new(json_object_get(json_object_get(json_array_get(json_object_get(
                                json_object_get(p, "spec"), "containers"), 0), "resources"),
                                "limits"),
                            FX_RES_GPU_CORES, json_string(pct));
        json_object_set_new(json_object_get(json_object_get(p, "metadata"), "annotations"),
                            FX_ANN_CORES_LIMIT, json_string("60"));
    }
    if (req_mem > 0) {
        char m[32];
        snprintf(m, sizeof(m), "%lld", req_mem);
        json_object_set_new(json_object_get(json_object_get(json_array_get(json_object_get(
                                json_object_get(p, "spec"), "containers"), 0), "resources"),
                                "limits"),
                            FX_RES_GPU_MEMORY, json_string(m));
    }
    free(text);
    return p;
}

/* A pod whose allocation is what it asks for. */
static json_t *pod(const char *name, const char *uid, const int *gpus, int n, int cores,
                   long long mem)
{
    return pod_req(name, uid, gpus, n, cores, mem, mem);
}

/* The allocation in annotations ann, parsed; and ann's allocation set to a
 * (an annotation forged from a true one). */
static void allocation_of(json_t *ann, struct fx_allocation *a)
{
    struct flexpu_error err = {0};
    const char *text = json_string_value(json_object_get(ann, FX_ANN_ALLOCATION));
    assert_int_equal(fx_allocation_parse(text, a, &err), 0);
}

static void set_allocation(json_t *ann, const struct fx_allocation *a)
{
    char *text = fx_allocation_format(a);
    json_object_set_new(ann, FX_ANN_ALLOCATION, json_string(text));
    free(text);
}

/* A pod with a borrowed allocation of `cores` and `mem` on GPU `gpu`,
 * opportunistic or not (a forged allocation), asking priority normal. */
static json_t *borrower(const char *name, const char *uid, int gpu, int cores, long long mem,
                        bool opportunistic)
{
    json_t *p = pod_req(name, uid, (int[]){gpu}, 1, cores, mem, mem);
    json_t *ann = json_object_get(json_object_get(p, "metadata"), "annotations");
    struct fx_allocation a;
    allocation_of(ann, &a);
    a.borrowed = true;
    set_allocation(ann, &a);
    json_object_set_new(ann, FX_ANN_PRIORITY, json_string("normal"));
    if (opportunistic)
        json_object_set_new(ann, FX_ANN_OPPORTUNISTIC, json_string("true"));
    return p;
}

/* A pod allowing a remote slice whose allocation names this node's GPU
 * `gpu` but says remote (a forged allocation: the scheduler never binds a
 * remote pod to its GPU node). */
static json_t *remote_forged(const char *name, const char *uid, int gpu, int cores,
                             long long mem)
{
    json_t *p = pod_req(name, uid, (int[]){gpu}, 1, cores, mem, mem);
    json_t *ann = json_object_get(json_object_get(p, "metadata"), "annotations");
    struct fx_allocation a;
    allocation_of(ann, &a);
    snprintf(a.remote_node, sizeof(a.remote_node), "n1");
    set_allocation(ann, &a);
    json_object_set_new(ann, FX_ANN_REMOTE, json_string(FX_REMOTE_ALLOWED));
    return p;
}

/* One of the two host paths is the other or lies under it. */
static bool paths_overlap(const char *x, const char *y)
{
    size_t nx = strlen(x), ny = strlen(y), n = nx < ny ? nx : ny;
    const char *longer = nx < ny ? y : x;
    return strncmp(x, y, n) == 0 && (longer[n] == '\0' || longer[n] == '/');
}

/* Allocate for one container with these device IDs, answered OK: the host
 * directory of its slice.conf ("" for none) in dir. */
static void conf_dir_of(const char *dp, char **ids, char *dir, size_t len)
{
    V1beta1__AllocateResponse *ar = allocate_ok(dp, ids, 1);
    const V1beta1__Mount *mt = mount_at(ar->container_responses[0], FX_CTR_CONF_DIR);
    snprintf(dir, len, "%s", mt ? mt->host_path : "");
    v1beta1__allocate_response__free_unpacked(ar, NULL);
}

static void test_plugin_calls(void **state)
{
    (void)state;
    fake_gpus_init("GPU-test-", true);
    char podres[300], dp[300];
    snprintf(podres, sizeof(podres), "%s/podres.sock", tmpdir);
    snprintf(dp, sizeof(dp), "%s/dp.sock", tmpdir);
    struct flexpu_error err = {0};
    struct fx_grpc_server *prs = fx_grpc_server_start(podres, podres_methods, NULL, &err);
    assert_non_null(prs);
    struct fx_plugin_config pc = {.node_name = "n1", .root = tmpdir, .podresources = podres,
                                  .wait_ms = 1500, .cap_clock_mhz = 1750};
    struct fx_plugin *p = fx_plugin_new(&pc, fake_gpus, NGPU, &err);
    assert_non_null(p);
    struct fx_grpc_server *dps = fx_grpc_server_start(dp, fx_plugin_methods, p, &err);
    assert_non_null(dps);

    /* device list: 16 slots per GPU, health and NUMA */
    uint8_t *msg;
    size_t len;
    assert_int_equal(fx_plugin_device_list(p, &msg, &len), 0);
    V1beta1__ListAndWatchResponse *lw = v1beta1__list_and_watch_response__unpack(NULL, len, msg);
    assert_non_null(lw);
    assert_int_equal(lw->n_devices, NGPU * FX_DP_SLOTS);
    assert_string_equal(lw->devices[17]->id, "GPU-test-1::1");
    assert_string_equal(lw->devices[17]->health, "Healthy");
    assert_int_equal(lw->devices[17]->topology->nodes[0]->id, 0);
    assert_int_equal(lw->devices[63]->topology->nodes[0]->id, 1);
    v1beta1__list_and_watch_response__free_unpacked(lw, NULL);
    free(msg);

    /* pods: a (GPU 2, 30%), b (GPU 2, 50%), c (GPUs 0+1, whole) */
    fx_plugin_pod_event(p, KUBE_SYNC_BEGIN, NULL);
    json_t *pa = pod("a", "uid-a", (int[]){2}, 1, 30, 8LL << 30);
    /* b names no gpu-memory: its quota is half the GPU's 80 GiB */
    json_t *pb = pod_req("b", "uid-b", (int[]){2}, 1, 50, 40LL << 30, 0);
    json_t *pcw = pod("c", "uid-c", (int[]){0, 1}, 2, 100, 0);
    fx_plugin_pod_event(p, KUBE_ADDED, pa);
    fx_plugin_pod_event(p, KUBE_ADDED, pb);
    fx_plugin_pod_event(p, KUBE_ADDED, pcw);
    fx_plugin_pod_event(p, KUBE_SYNC_END, NULL);

    /* preferred allocation for size 2: the GPUs of pod c */
    char *avail[NGPU * 2];
    char idbuf[NGPU * 2][40];
    for (int i = 0; i < NGPU * 2; i++) {
        snprintf(idbuf[i], sizeof(idbuf[i]), "GPU-test-%d::%d", i % NGPU, i / NGPU);
        avail[i] = idbuf[i];
    }
    V1beta1__ContainerPreferredAllocationRequest cq =
        V1BETA1__CONTAINER_PREFERRED_ALLOCATION_REQUEST__INIT;
    cq.n_available_deviceids = NGPU * 2;
    cq.available_deviceids = avail;
    cq.allocation_size = 2;
    V1beta1__ContainerPreferredAllocationRequest *cqp = &cq;
    V1beta1__PreferredAllocationRequest pq = V1BETA1__PREFERRED_ALLOCATION_REQUEST__INIT;
    pq.n_container_requests = 1;
    pq.container_requests = &cqp;
    struct fx_grpc_reply r = call(dp, "/v1beta1.DevicePlugin/GetPreferredAllocation", &pq.base);
    assert_int_equal(r.status, FX_GRPC_OK);
    V1beta1__PreferredAllocationResponse *pr =
        v1beta1__preferred_allocation_response__unpack(NULL, r.len, r.data);
    assert_int_equal(pr->container_responses[0]->n_deviceids, 2);
    assert_string_equal(pr->container_responses[0]->deviceids[0], "GPU-test-0::0");
    assert_string_equal(pr->container_responses[0]->deviceids[1], "GPU-test-1::0");
    v1beta1__preferred_allocation_response__free_unpacked(pr, NULL);
    free(r.data);
    /* size 1: GPU 2 (pod a, the oldest waiting for one GPU) */
    cq.allocation_size = 1;
    r = call(dp, "/v1beta1.DevicePlugin/GetPreferredAllocation", &pq.base);
    pr = v1beta1__preferred_allocation_response__unpack(NULL, r.len, r.data);
    assert_string_equal(pr->container_responses[0]->deviceids[0], "GPU-test-2::0");
    v1beta1__preferred_allocation_response__free_unpacked(pr, NULL);
    free(r.data);

    /* Allocate for a and b (both GPU 2), on different slots */
    char *ids_a[] = {"GPU-test-2::0"}, *ids_b[] = {"GPU-test-2::5"};
    char *ids_c[] = {"GPU-test-0::0", "GPU-test-1::0"};
    char **sets[3] = {ids_a, ids_b, ids_c};
    size_t nsets[3] = {1, 1, 2};
    char conf_dir[3][400];
    char hosts[3][8][400]; /* each answer's mounts, and which are writable */
    bool writable[3][8];
    size_t nhosts[3];
    for (int k = 0; k < 3; k++) {
        r = allocate(dp, sets[k], nsets[k]);
        assert_int_equal(r.status, FX_GRPC_OK);
        V1beta1__AllocateResponse *ar = v1beta1__allocate_response__unpack(NULL, r.len, r.data);
        V1beta1__ContainerAllocateResponse *c0 = ar->container_responses[0];
        int nvidia_n = 0;
        for (size_t d = 0; d < c0->n_devices; d++)
            if (strncmp(c0->devices[d]->host_path, "/dev/nvidia", 11) == 0 &&
                c0->devices[d]->host_path[11] >= '0' && c0->devices[d]->host_path[11] <= '9')
                nvidia_n++;
        assert_int_equal(nvidia_n, (int)nsets[k]);
        assert_string_equal(c0->devices[3]->host_path, k < 2 ? "/dev/nvidia2" : "/dev/nvidia0");
        conf_dir[k][0] = '\0';
        char ledger_dir[400] = "";
        bool marks = false, arb = false;
        assert_true(c0->n_mounts <= 8);
        nhosts[k] = c0->n_mounts;
        for (size_t m = 0; m < c0->n_mounts; m++) {
            snprintf(hosts[k][m], sizeof(hosts[k][m]), "%s", c0->mounts[m]->host_path);
            writable[k][m] = !c0->mounts[m]->read_only;
            /* the agent's arbiter pages (runtime/arbagent.h): read-only */
            if (strcmp(c0->mounts[m]->container_path, FX_CTR_ARB) == 0) {
                char want_arb[400];
                snprintf(want_arb, sizeof(want_arb), "%s/arb", tmpdir);
                assert_string_equal(c0->mounts[m]->host_path, want_arb);
                assert_true(c0->mounts[m]->read_only);
                arb = true;
            }
            /* the marks of GPUs with borrowers (reclaim_mem.h): read-only */
            if (strcmp(c0->mounts[m]->container_path, FX_CTR_BORROWED) == 0) {
                char want_marks[400];
                snprintf(want_marks, sizeof(want_marks), "%s/borrowed", tmpdir);
                assert_string_equal(c0->mounts[m]->host_path, want_marks);
                assert_true(c0->mounts[m]->read_only);
                marks = true;
            }
            if (strcmp(c0->mounts[m]->container_path, FX_CTR_CONF_DIR) == 0) {
                assert_true(c0->mounts[m]->read_only);
                snprintf(conf_dir[k], sizeof(conf_dir[k]), "%s", c0->mounts[m]->host_path);
            }
            /* the slice's own ledger directory, the one writable mount that
             * is the slice's alone, and it exists */
            if (strcmp(c0->mounts[m]->container_path, FX_CTR_LEDGER) == 0) {
                assert_false(c0->mounts[m]->read_only);
                snprintf(ledger_dir, sizeof(ledger_dir), "%s", c0->mounts[m]->host_path);
            }
        }
        assert_true(conf_dir[k][0]);
        assert_true(marks);
        assert_true(arb);
        const char *key = strrchr(conf_dir[k], '/');
        assert_non_null(key);
        char want_ledger[400];
        snprintf(want_ledger, sizeof(want_ledger), "%s/ledger%s", tmpdir, key);
        assert_string_equal(ledger_dir, want_ledger);
        struct stat lsb;
        assert_int_equal(stat(ledger_dir, &lsb), 0);
        assert_int_equal(lsb.st_mode & 0777, 0777);
        v1beta1__allocate_response__free_unpacked(ar, NULL);
        free(r.data);
    }
    /* The node agent arbitrates: no slice has a writable mount that another
     * slice can see (no shared state directory; docs/SECURITY.md), even
     * the two slices of one GPU. */
    for (int k = 0; k < 3; k++)
        for (size_t m = 0; m < nhosts[k]; m++)
            for (int o = 0; o < 3 && writable[k][m]; o++)
                for (size_t n = 0; o != k && n < nhosts[o]; n++)
                    if (paths_overlap(hosts[k][m], hosts[o][n]))
                        fail_msg("slice %d writes %s, which slice %d mounts as %s", k,
                                 hosts[k][m], o, hosts[o][n]);
    /* a third single-GPU allocation on GPU 2: nobody else waits for it */
    char *ids_x[] = {"GPU-test-2::9"};
    r = allocate(dp, ids_x, 1);
    assert_int_equal(r.status, FX_GRPC_FAILED_PRECONDITION);
    assert_non_null(strstr(r.message, "GPU-test-2"));
    /* an unknown device */
    char *ids_bad[] = {"GPU-not-a-device::0"};
    r = allocate(dp, ids_bad, 1);
    assert_int_equal(r.status, FX_GRPC_INVALID_ARGUMENT);
    assert_non_null(strstr(r.message, "GPU-not-a-device::0"));

    /* The kubelet gave a's slot to b and b's to a (both on GPU 2): PodResources
     * says so, and each slice names the right pod. */
    nheld = 0;
    hold("default", "b", ids_a, 1);
    hold("default", "a", ids_b, 1);
    hold("default", "c", (char *[]){ids_c[1], ids_c[0]}, 2);
    const char *expect_tenant[3] = {"uid-b", "uid-a", "uid-c"};
    int expect_share[3] = {50, 30, 100};
    long long expect_mem[3] = {40LL << 30, 8LL << 30, 0};
    for (int k = 0; k < 3; k++) {
        r = prestart_call(dp, sets[k], nsets[k]);
        assert_int_equal(r.status, FX_GRPC_OK);
        free(r.data);
        char path[500];
        snprintf(path, sizeof(path), "%.400s/slice.conf", conf_dir[k]);
        struct fx_slice_config cfg;
        fx_config_defaults(&cfg);
        assert_int_equal(fx_config_load_file(&cfg, path, &err), 1);
        assert_string_equal(cfg.tenant, expect_tenant[k]);
        assert_int_equal(cfg.compute_share, expect_share[k]);
        assert_int_equal(cfg.compute_cap, expect_share[k] > 60 ? expect_share[k] : 60);
        /* the agent's --cap-clock-mhz, in every capped slice (c is not) */
        assert_int_equal(cfg.cap_clock_mhz, cfg.compute_cap < 100 ? 1750 : 0);
        assert_int_equal(cfg.memory_limit, expect_mem[k]);
        /* owners wait for borrowers on their GPU (runtime/oom_wait.h) */
        assert_string_equal(cfg.borrowed_dir, FX_CTR_BORROWED);
    }
    char ns[64], name[64];
    assert_int_equal(fx_plugin_pod_name(p, "uid-c", ns, sizeof(ns), name, sizeof(name)), 0);
    assert_string_equal(name, "c");

    /* a PreStart for devices the kubelet never recorded: a clear refusal */
    r = prestart_call(dp, ids_x, 1);
    assert_int_equal(r.status, FX_GRPC_FAILED_PRECONDITION);
    assert_non_null(strstr(r.message, "PodResources"));
    /* nor is one device of c's two c's: a container holds exactly the IDs */
    r = prestart_call(dp, &ids_c[0], 1);
    assert_int_equal(r.status, FX_GRPC_FAILED_PRECONDITION);
    assert_non_null(strstr(r.message, "PodResources"));

    /* Allocations that do not match their pod's request get no slice: d asks
     * 30% of GPU 3 but its annotation says {"cores":0,"memory":0} (what a
     * user who binds a pod himself would write); e asks 40% of it and no memory
     * but its annotation gives it no memory quota; f has a second container
     * asking a GPU too (two slices would hold the pod's quota twice; the
     * scheduler refuses such a pod, and an annotation written by other means
     * is refused here as well). Allocate still answers (the kubelet holds
     * the devices), PreStartContainer refuses naming the pod and the field,
     * and slice.conf stays the invalid placeholder. */
    json_t *pd = pod_req("d", "uid-d", (int[]){3}, 1, 0, 0, 0);
    json_object_set_new(json_object_get(json_object_get(json_array_get(json_object_get(
                            json_object_get(pd, "spec"), "containers"), 0), "resources"),
                            "limits"),
                        FX_RES_GPU_CORES, json_string("30"));
    json_t *pe = pod_req("e", "uid-e", (int[]){3}, 1, 40, 0, 0);
    json_t *pf = pod_req("f", "uid-f", (int[]){3}, 1, 20, 0, 0);
    json_t *ctrs = json_object_get(json_object_get(pf, "spec"), "containers");
    json_t *side = json_deep_copy(json_array_get(ctrs, 0));
    json_object_set_new(side, "name", json_string("sidecar"));
    json_array_append_new(ctrs, side);
    fx_plugin_pod_event(p, KUBE_ADDED, pd);
    fx_plugin_pod_event(p, KUBE_ADDED, pe);
    fx_plugin_pod_event(p, KUBE_ADDED, pf);
    char *ids_d[] = {"GPU-test-3::0"}, *ids_e[] = {"GPU-test-3::1"}, *ids_f[] = {"GPU-test-3::2"};
    char **bad_sets[3] = {ids_d, ids_e, ids_f};
    const char *bad_names[3] = {"d", "e", "f"}, *bad_field[3] = {"cores", "memory", "containers[1]"};
    for (int k = 0; k < 3; k++) {
        char bad_dir[400];
        conf_dir_of(dp, bad_sets[k], bad_dir, sizeof(bad_dir));
        hold("default", bad_names[k], bad_sets[k], 1);
        r = prestart_call(dp, bad_sets[k], 1);
        assert_int_equal(r.status, FX_GRPC_FAILED_PRECONDITION);
        char who[32];
        snprintf(who, sizeof(who), "pod default/%s", bad_names[k]);
        if (!strstr(r.message, who) || !strstr(r.message, bad_field[k]))
            fail_msg("refusal '%s' does not name %s and %s", r.message, who, bad_field[k]);
        char path[500];
        snprintf(path, sizeof(path), "%.400s/slice.conf", bad_dir);
        struct fx_slice_config cfg;
        fx_config_defaults(&cfg);
        struct flexpu_error lerr = {0};
        assert_int_not_equal(fx_config_load_file(&cfg, path, &lerr), 1);
    }
    fx_plugin_pod_event(p, KUBE_DELETED, pd);
    fx_plugin_pod_event(p, KUBE_DELETED, pe);
    fx_plugin_pod_event(p, KUBE_DELETED, pf);
    json_decref(pd);
    json_decref(pe);
    json_decref(pf);

    /* Borrowed allocations (issue 16) on GPU 2, where a (8 GiB) and b
     * (40 GiB) leave 32 GiB unreserved: g (opportunistic, 16 GiB) gets its
     * slice at priority low whatever it asks; h's is forged (h never opted
     * in); i (opportunistic, 20 GiB) would take memory the slices reserved
     * beside g. Both refused, naming why, and left without a slice. */
    nheld = 3; /* d, e and f are gone */
    json_t *pg = borrower("g", "uid-g", 2, 20, 16LL << 30, true);
    json_t *ph = borrower("h", "uid-h", 2, 20, 1LL << 30, false);
    json_t *pi = borrower("i", "uid-i", 2, 20, 20LL << 30, true);
    /* j: a remote allocation naming this node's GPU (forged): refused. */
    json_t *pj = remote_forged("j", "uid-j", 2, 10, 1LL << 30);
    json_t *bpods[4] = {pg, ph, pi, pj};
    char *ids_g[] = {"GPU-test-2::10"}, *ids_h[] = {"GPU-test-2::11"}, *ids_i[] = {"GPU-test-2::12"},
         *ids_j[] = {"GPU-test-2::13"};
    char **bsets[4] = {ids_g, ids_h, ids_i, ids_j};
    const char *bnames[4] = {"g", "h", "i", "j"},
               *bwhy[4] = {NULL, "not opportunistic", "memory", "remote slice"};
    for (int k = 0; k < 4; k++) {
        fx_plugin_pod_event(p, KUBE_ADDED, bpods[k]);
        char bdir[400];
        conf_dir_of(dp, bsets[k], bdir, sizeof(bdir));
        hold("default", bnames[k], bsets[k], 1);
        r = prestart_call(dp, bsets[k], 1);
        char path[500];
        snprintf(path, sizeof(path), "%.400s/slice.conf", bdir);
        struct fx_slice_config cfg;
        fx_config_defaults(&cfg);
        struct flexpu_error lerr = {0};
        if (!bwhy[k]) {
            assert_int_equal(r.status, FX_GRPC_OK);
            free(r.data);
            assert_int_equal(fx_config_load_file(&cfg, path, &lerr), 1);
            assert_string_equal(cfg.tenant, "uid-g");
            assert_int_equal(cfg.priority, FX_PRIO_LOW);
            assert_int_equal(cfg.memory_limit, 16LL << 30);
            /* a borrower never waits for memory, and its GPU is marked */
            assert_string_equal(cfg.borrowed_dir, "");
            char mark[400];
            snprintf(mark, sizeof(mark), "%s/borrowed/GPU-test-2", tmpdir);
            assert_int_equal(access(mark, F_OK), 0);
            struct fx_alloc_view v[16];
            int nv = fx_plugin_allocations(p, v, 16), seen = 0;
            for (int i = 0; i < nv; i++)
                if (strcmp(v[i].uid, "uid-g") == 0) {
                    assert_true(v[i].borrowed);
                    assert_int_equal(v[i].gpuset, 1u << 2);
                    seen++;
                } else if (strcmp(v[i].uid, "uid-a") == 0) {
                    assert_false(v[i].borrowed);
                }
            assert_int_equal(seen, 1);
            /* killed for an owner's memory: its restarts are refused */
            fx_plugin_reclaimed(p, &(struct fx_reclaim_note){.uid = "uid-g", .gpu = "GPU-test-2",
                                                             .owner_key = "x", .why = "test"});
            hold("default", "g", bsets[k], 1);
            r = prestart_call(dp, bsets[k], 1);
            assert_int_equal(r.status, FX_GRPC_FAILED_PRECONDITION);
            if (!strstr(r.message, "pod default/g") || !strstr(r.message, "killed"))
                fail_msg("refusal '%s' does not name g and why", r.message);
            continue;
        }
        assert_int_equal(r.status, FX_GRPC_FAILED_PRECONDITION);
        if (!strstr(r.message, bnames[k]) || !strstr(r.message, bwhy[k]))
            fail_msg("refusal '%s' does not name %s and %s", r.message, bnames[k], bwhy[k]);
        assert_int_not_equal(fx_config_load_file(&cfg, path, &lerr), 1);
    }
    for (int k = 0; k < 4; k++) {
        fx_plugin_pod_event(p, KUBE_DELETED, bpods[k]);
        json_decref(bpods[k]);
    }

    /* pod b ends: its slice directory goes */
    fx_plugin_pod_event(p, KUBE_DELETED, pb);
    assert_int_not_equal(access(conf_dir[0], F_OK), 0);
    assert_int_equal(access(conf_dir[1], F_OK), 0);

    /* health: GPU 3 lost */
    fake_gpus[3].healthy = false;
    assert_true(fx_plugin_set_health(p, fake_gpus, NGPU));
    assert_false(fx_plugin_set_health(p, fake_gpus, NGPU));
    assert_int_equal(fx_plugin_device_list(p, &msg, &len), 0);
    lw = v1beta1__list_and_watch_response__unpack(NULL, len, msg);
    assert_string_equal(lw->devices[3 * FX_DP_SLOTS]->health, "Unhealthy");
    assert_string_equal(lw->devices[2 * FX_DP_SLOTS]->health, "Healthy");
    v1beta1__list_and_watch_response__free_unpacked(lw, NULL);
    free(msg);

    fx_grpc_server_stop(dps);
    fx_plugin_free(p);

    /* a restarted plugin keeps the live slices and drops those whose pod is
     * gone after its first full list */
    p = fx_plugin_new(&pc, fake_gpus, NGPU, &err);
    /* Until its first list it knows no borrower: it says so, and the
     * borrowed-memory look keeps the marks (reclaim_mem.h). */
    struct fx_alloc_view rv[16];
    assert_int_equal(fx_plugin_allocations(p, rv, 16), -1);
    fx_plugin_pod_event(p, KUBE_SYNC_BEGIN, NULL);
    fx_plugin_pod_event(p, KUBE_ADDED, pa);
    assert_int_equal(fx_plugin_allocations(p, rv, 16), -1);
    fx_plugin_pod_event(p, KUBE_SYNC_END, NULL);
    assert_true(fx_plugin_allocations(p, rv, 16) >= 1); /* a's slice */
    assert_int_equal(access(conf_dir[1], F_OK), 0); /* a's */
    assert_int_not_equal(access(conf_dir[2], F_OK), 0); /* c's */
    fx_plugin_free(p);
    fx_grpc_server_stop(prs);
    json_decref(pa);
    json_decref(pb);
    json_decref(pcw);
}

/* A borrower placed with flexpu-scheduler --borrow-mem idle (its
 * allocation's "borrow_mem":"idle") is checked at PreStartContainer by the
 * scheduler's rule (kube/borrow_rule.h): memory the owners reserved and do
 * not use, measured in their ledgers, and only for a light slice. */
static void test_plugin_borrow_idle(void **state)
{
    (void)state;
    fake_gpus_init("GPU-test-", false);
    nheld = 0;
    char podres[300], dp[300];
    snprintf(podres, sizeof(podres), "%s/podres.sock", tmpdir);
    snprintf(dp, sizeof(dp), "%s/dp.sock", tmpdir);
    struct flexpu_error err = {0};
    struct fx_grpc_server *prs = fx_grpc_server_start(podres, podres_methods, NULL, &err);
    assert_non_null(prs);
    struct fx_plugin_config pc = {.node_name = "n1", .root = tmpdir, .podresources = podres,
                                  .wait_ms = 1500};
    struct fx_plugin *p = fx_plugin_new(&pc, fake_gpus, NGPU, &err);
    assert_non_null(p);
    struct fx_grpc_server *dps = fx_grpc_server_start(dp, fx_plugin_methods, p, &err);
    assert_non_null(dps);

    /* o and q reserve all of GPU 2 (40 GiB each). k,
     * light (20 cores, 4 GiB: a quarter of its share), borrows memory the
     * owners reserved and do not use; l, the same placed without the
     * option, finds no memory unreserved; m (5 GiB) is not light. Once the
     * owners' ledgers hold 70 GiB (a live process, in a directory the agent
     * has no allocation for: an owner's), n is refused: 80 - 70 - 8 (10%
     * headroom) leaves 2 GiB, and k holds 4. */
    fx_plugin_pod_event(p, KUBE_SYNC_BEGIN, NULL);
    json_t *po = pod("o", "uid-o", (int[]){2}, 1, 40, 40LL << 30);
    json_t *pq = pod("q", "uid-q", (int[]){2}, 1, 40, 40LL << 30);
    fx_plugin_pod_event(p, KUBE_ADDED, po);
    fx_plugin_pod_event(p, KUBE_ADDED, pq);
    fx_plugin_pod_event(p, KUBE_SYNC_END, NULL);
    json_t *ipods[4] = {borrower("k", "uid-k", 2, 20, 4LL << 30, true),
                        borrower("l", "uid-l", 2, 20, 4LL << 30, true),
                        borrower("m", "uid-m", 2, 20, 5LL << 30, true),
                        borrower("n", "uid-n", 2, 20, 4LL << 30, true)};
    char *ids_k[] = {"GPU-test-2::10"}, *ids_l[] = {"GPU-test-2::11"},
         *ids_m[] = {"GPU-test-2::12"}, *ids_n[] = {"GPU-test-2::13"};
    char **isets[4] = {ids_k, ids_l, ids_m, ids_n};
    const char *inames[4] = {"k", "l", "m", "n"},
               *iwhy[4] = {NULL, "no slice reserved", "light", "do not use"};
    struct fx_ledger_handle owner_led;
    for (int k = 0; k < 4; k++) {
        json_t *ann = json_object_get(json_object_get(ipods[k], "metadata"), "annotations");
        struct fx_allocation a;
        allocation_of(ann, &a);
        a.borrow_idle = k != 1;
        set_allocation(ann, &a);
        if (k == 3) {
            struct fx_slice_config lc;
            fx_config_defaults(&lc);
            snprintf(lc.tenant, sizeof(lc.tenant), "owner-x");
            char ldir[400];
            snprintf(ldir, sizeof(ldir), "%s/ledger/owner-x", tmpdir);
            assert_int_equal(fx_ledger_attach(&owner_led, ldir, "GPU-test-2", 80LL << 30, &lc,
                                              &err), 0);
            assert_int_equal(fx_ledger_charge(&owner_led, 70LL << 30, 1), 0);
        }
        fx_plugin_pod_event(p, KUBE_ADDED, ipods[k]);
        char bdir[400];
        conf_dir_of(dp, isets[k], bdir, sizeof(bdir));
        hold("default", inames[k], isets[k], 1);
        struct fx_grpc_reply r = prestart_call(dp, isets[k], 1);
        if (!iwhy[k]) {
            if (r.status != FX_GRPC_OK)
                fail_msg("idle borrower k refused: %s", r.message);
            free(r.data);
            char path[500];
            snprintf(path, sizeof(path), "%.400s/slice.conf", bdir);
            struct fx_slice_config cfg;
            fx_config_defaults(&cfg);
            struct flexpu_error lerr = {0};
            assert_int_equal(fx_config_load_file(&cfg, path, &lerr), 1);
            assert_int_equal(cfg.memory_limit, 4LL << 30);
            continue;
        }
        assert_int_equal(r.status, FX_GRPC_FAILED_PRECONDITION);
        if (!strstr(r.message, inames[k]) || !strstr(r.message, iwhy[k]))
            fail_msg("refusal '%s' does not name %s and %s", r.message, inames[k], iwhy[k]);
    }
    fx_ledger_detach(&owner_led);
    for (int k = 0; k < 4; k++) {
        fx_plugin_pod_event(p, KUBE_DELETED, ipods[k]);
        json_decref(ipods[k]);
    }
    json_decref(po);
    json_decref(pq);
    fx_grpc_server_stop(dps);
    fx_plugin_free(p);
    fx_grpc_server_stop(prs);
}

/* The remote slices this node serves (remote_agent.h) as the plugin's
 * check of a borrower sees them: 30 GiB on GPU-test-2, or not known yet
 * (-1: the remote watch's first list has not come in). */
static int remote_known = -1;

static int fake_remote_holds(void *ctx, const char *uuid, struct fx_gpu_hold *out, int max)
{
    assert_string_equal(ctx, "remote");
    if (remote_known < 0)
        return -1;
    if (strcmp(uuid, "GPU-test-2") != 0)
        return 0;
    if (max > 0)
        out[0] = (struct fx_gpu_hold){.mem = 30LL << 30};
    return 1;
}

/* A remote slice served from a GPU of this node is an owner there (issue
 * 17): its pod is bound to another node, so the plugin's own pods do not
 * show it, yet a borrower must leave its reserved memory alone. On GPU 2
 * (80 GiB) o reserves 40 GiB and a remote slice 30: r (16 GiB) would fit
 * beside o alone and is refused, naming the remote slice; s (8 GiB) fits
 * in the 10 left. Before the remote slices are known, s is refused too. */
static void test_plugin_borrow_remote_owner(void **state)
{
    (void)state;
    fake_gpus_init("GPU-test-", false);
    nheld = 0;
    remote_known = -1;
    char podres[300], dp[300];
    snprintf(podres, sizeof(podres), "%s/podres.sock", tmpdir);
    snprintf(dp, sizeof(dp), "%s/dp.sock", tmpdir);
    struct flexpu_error err = {0};
    struct fx_grpc_server *prs = fx_grpc_server_start(podres, podres_methods, NULL, &err);
    assert_non_null(prs);
    struct fx_plugin_config pc = {.node_name = "n1", .root = tmpdir, .podresources = podres,
                                  .wait_ms = 1500};
    struct fx_plugin *p = fx_plugin_new(&pc, fake_gpus, NGPU, &err);
    assert_non_null(p);
    fx_plugin_set_remote(p, &(struct fx_plugin_remote){.holds = fake_remote_holds,
                                                       .ctx = "remote"});
    struct fx_grpc_server *dps = fx_grpc_server_start(dp, fx_plugin_methods, p, &err);
    assert_non_null(dps);
    fx_plugin_pod_event(p, KUBE_SYNC_BEGIN, NULL);
    json_t *po = pod("o", "uid-o", (int[]){2}, 1, 40, 40LL << 30);
    fx_plugin_pod_event(p, KUBE_ADDED, po);
    fx_plugin_pod_event(p, KUBE_SYNC_END, NULL);
    json_t *pr = borrower("r", "uid-r", 2, 20, 16LL << 30, true);
    json_t *ps = borrower("s", "uid-s", 2, 20, 8LL << 30, true);
    fx_plugin_pod_event(p, KUBE_ADDED, pr);
    fx_plugin_pod_event(p, KUBE_ADDED, ps);
    char *ids_r[] = {"GPU-test-2::10"}, *ids_s[] = {"GPU-test-2::11"};
    char dir_r[400], dir_s[400];
    conf_dir_of(dp, ids_r, dir_r, sizeof(dir_r));
    conf_dir_of(dp, ids_s, dir_s, sizeof(dir_s));
    /* Not known yet: refused, saying why. */
    hold("default", "s", ids_s, 1);
    struct fx_grpc_reply r = prestart_call(dp, ids_s, 1);
    assert_int_equal(r.status, FX_GRPC_FAILED_PRECONDITION);
    if (!strstr(r.message, "pod default/s") || !strstr(r.message, "not listed yet"))
        fail_msg("refusal '%s' does not name s and why", r.message);
    remote_known = 1;
    hold("default", "r", ids_r, 1);
    r = prestart_call(dp, ids_r, 1);
    assert_int_equal(r.status, FX_GRPC_FAILED_PRECONDITION);
    if (!strstr(r.message, "pod default/r") || !strstr(r.message, "1 of its GPU's slices are "
                                                               "remote") ||
        !strstr(r.message, "reserve 75161927680"))
        fail_msg("refusal '%s' does not name r, the remote slice and the memory", r.message);
    char path[500];
    snprintf(path, sizeof(path), "%.400s/slice.conf", dir_r);
    struct fx_slice_config cfg;
    fx_config_defaults(&cfg);
    struct flexpu_error lerr = {0};
    assert_int_not_equal(fx_config_load_file(&cfg, path, &lerr), 1);
    /* r's allocation still counts while its pod is bound here. */
    fx_plugin_pod_event(p, KUBE_DELETED, pr);
    hold("default", "s", ids_s, 1);
    r = prestart_call(dp, ids_s, 1);
    if (r.status != FX_GRPC_OK)
        fail_msg("s refused beside the remote slice: %s", r.message);
    free(r.data);
    snprintf(path, sizeof(path), "%.400s/slice.conf", dir_s);
    fx_config_defaults(&cfg);
    assert_int_equal(fx_config_load_file(&cfg, path, &lerr), 1);
    assert_int_equal(cfg.memory_limit, 8LL << 30);
    json_t *pods[3] = {po, pr, ps};
    for (int k = 0; k < 3; k++) {
        if (pods[k] != pr)
            fx_plugin_pod_event(p, KUBE_DELETED, pods[k]);
        json_decref(pods[k]);
    }
    fx_grpc_server_stop(dps);
    fx_plugin_free(p);
    fx_grpc_server_stop(prs);
}

static int fake_remote_name(void *ctx, const char *uid, char *ns, size_t ns_len, char *name,
                            size_t name_len)
{
    assert_string_equal(ctx, "remote");
    if (strcmp(uid, "uid-ra") != 0)
        return -1;
    snprintf(ns, ns_len, "t");
    snprintf(name, name_len, "ra");
    return 0;
}

static int plugin_name_of(void *ctx, const char *uid, char *ns, size_t ns_len, char *name,
                          size_t name_len)
{
    return fx_plugin_pod_name(ctx, uid, ns, ns_len, name, name_len);
}

/* A remote slice's pod is named where a local slice's is (issue 17): its
 * metrics rows carry its namespace and pod (main.c's labels come from
 * fx_plugin_pod_name), and a borrower killed for it gets an Event naming
 * that pod, not the slice's directory. */
static void test_plugin_remote_names(void **state)
{
    (void)state;
    fake_gpus_init("GPU-test-", false);
    struct flexpu_error err = {0};
    char podres[300];
    snprintf(podres, sizeof(podres), "%s/podres.sock", tmpdir);
    struct fx_plugin_config pc = {.node_name = "n1", .root = tmpdir, .podresources = podres};
    struct fx_plugin *p = fx_plugin_new(&pc, fake_gpus, NGPU, &err);
    assert_non_null(p);
    fx_plugin_set_remote(p, &(struct fx_plugin_remote){.holds = fake_remote_holds,
                                                       .pod_name = fake_remote_name,
                                                       .ctx = "remote"});
    fx_plugin_pod_event(p, KUBE_SYNC_BEGIN, NULL);
    json_t *po = pod("o", "uid-o", (int[]){2}, 1, 40, 40LL << 30);
    json_t *pb = borrower("b", "uid-b", 2, 20, 4LL << 30, true);
    fx_plugin_pod_event(p, KUBE_ADDED, po);
    fx_plugin_pod_event(p, KUBE_ADDED, pb);
    fx_plugin_pod_event(p, KUBE_SYNC_END, NULL);
    char ns[64], name[256];
    assert_int_equal(fx_plugin_pod_name(p, "uid-o", ns, sizeof(ns), name, sizeof(name)), 0);
    assert_string_equal(name, "o");
    assert_int_equal(fx_plugin_pod_name(p, "uid-ra", ns, sizeof(ns), name, sizeof(name)), 0);
    assert_string_equal(ns, "t");
    assert_string_equal(name, "ra");
    assert_int_equal(fx_plugin_pod_name(p, "uid-none", ns, sizeof(ns), name, sizeof(name)), -1);

    /* The remote slice's ledger, as its server's processes write it
     * (remote_agent.h: <root>/ledger/remote-<pod UID>, tenant the UID). */
    struct fx_slice_config lc;
    fx_config_defaults(&lc);
    snprintf(lc.tenant, sizeof(lc.tenant), "uid-ra");
    char ldir[400], ledgers[300];
    snprintf(ledgers, sizeof(ledgers), "%s/ledger", tmpdir);
    snprintf(ldir, sizeof(ldir), "%s/remote-uid-ra", ledgers);
    struct fx_ledger_handle led;
    assert_int_equal(fx_ledger_attach(&led, ldir, "GPU-test-2", 80LL << 30, &lc, &err), 0);
    assert_int_equal(fx_ledger_charge(&led, 1LL << 30, 1), 0);
    int n = NGPU;
    struct fx_metrics_source src = {.ledger_root = ledgers, .gpus = fake_gpus, .ngpu = &n,
                                    .pod = plugin_name_of, .ctx = p};
    char *text = fx_metrics_render(&src);
    assert_non_null(text);
    const char *want = "flexpu_slice_memory_used_bytes{uuid=\"GPU-test-2\",tenant=\"uid-ra\","
                       "namespace=\"t\",pod=\"ra\"} 1073741824\n";
    if (!strstr(text, want))
        fail_msg("metrics lack '%s' in:\n%s", want, text);
    free(text);
    fx_ledger_detach(&led);

    struct kube_pod_event ev;
    struct fx_reclaim_note note = {.uid = "uid-b", .gpu = "GPU-test-2",
                                   .owner_key = "remote-uid-ra", .bytes = 1LL << 30};
    assert_true(fx_plugin_reclaim_event(p, &note, &ev));
    if (!strstr(ev.message, "owner pod t/ra (a remote slice)"))
        fail_msg("event '%s' does not name the remote owner's pod", ev.message);
    note.owner_key = "remote-uid-gone"; /* not known: named by its slice */
    assert_true(fx_plugin_reclaim_event(p, &note, &ev));
    assert_non_null(strstr(ev.message, "owner slice remote-uid-gone"));
    fx_plugin_pod_event(p, KUBE_DELETED, po);
    fx_plugin_pod_event(p, KUBE_DELETED, pb);
    json_decref(po);
    json_decref(pb);
    fx_plugin_free(p);
}

/* The metrics' call of a remote slice's name under way when the agent
 * shuts down: fx_plugin_set_remote, which main.c calls to clear the
 * callbacks before it frees the remote watch they point to, returns only
 * once no call of the old ones is running, and none starts after. Before,
 * fx_plugin_pod_name called the callback outside every lock, so the watch
 * was freed under a scrape (a use after free at every shutdown that met
 * one). */
static int slow_name_entered, slow_name_release, slow_name_calls, slow_set_returned;
static int slow_remote_name(void *ctx, const char *uid, char *ns, size_t ns_len, char *name,
                            size_t name_len)
{
    (void)ctx;
    (void)uid;
    __atomic_add_fetch(&slow_name_calls, 1, __ATOMIC_SEQ_CST);
    __atomic_store_n(&slow_name_entered, 1, __ATOMIC_SEQ_CST);
    for (int i = 0; i < 20000 && !__atomic_load_n(&slow_name_release, __ATOMIC_SEQ_CST); i++)
        usleep(1000);
    snprintf(ns, ns_len, "t");
    snprintf(name, name_len, "ra");
    return 0;
}
static void *slow_name_caller(void *p)
{
    char ns[64], name[256];
    intptr_t rc = fx_plugin_pod_name(p, "uid-ra", ns, sizeof(ns), name, sizeof(name));
    return (void *)rc;
}
static void *slow_set_caller(void *p)
{
    fx_plugin_set_remote(p, &(struct fx_plugin_remote){0});
    __atomic_store_n(&slow_set_returned, 1, __ATOMIC_SEQ_CST);
    return NULL;
}
static void test_plugin_set_remote_waits_for_a_call_under_way(void **state)
{
    (void)state;
    fake_gpus_init("GPU-test-", false);
    struct flexpu_error err = {0};
    char podres[300];
    snprintf(podres, sizeof(podres), "%s/podres.sock", tmpdir);
    struct fx_plugin_config pc = {.node_name = "n1", .root = tmpdir, .podresources = podres};
    struct fx_plugin *p = fx_plugin_new(&pc, fake_gpus, NGPU, &err);
    assert_non_null(p);
    slow_name_entered = slow_name_release = slow_name_calls = slow_set_returned = 0;
    fx_plugin_set_remote(p, &(struct fx_plugin_remote){.pod_name = slow_remote_name,
                                                       .ctx = "remote"});
    pthread_t caller, setter;
    assert_int_equal(pthread_create(&caller, NULL, slow_name_caller, p), 0);
    for (int i = 0; i < 20000 && !__atomic_load_n(&slow_name_entered, __ATOMIC_SEQ_CST); i++)
        usleep(1000);
    assert_int_equal(__atomic_load_n(&slow_name_entered, __ATOMIC_SEQ_CST), 1);
    assert_int_equal(pthread_create(&setter, NULL, slow_set_caller, p), 0);
    /* Whatever the load, it must not return while the old callback runs. */
    for (int i = 0; i < 1000 && !__atomic_load_n(&slow_set_returned, __ATOMIC_SEQ_CST); i++)
        usleep(1000);
    int early = __atomic_load_n(&slow_set_returned, __ATOMIC_SEQ_CST);
    __atomic_store_n(&slow_name_release, 1, __ATOMIC_SEQ_CST);
    void *rc;
    pthread_join(caller, &rc);
    pthread_join(setter, NULL);
    if (early)
        fail_msg("fx_plugin_set_remote returned while a call of the old pod_name ran");
    assert_int_equal((int)(intptr_t)rc, 0);
    assert_int_equal(slow_set_returned, 1);
    char ns[64], name[256];
    assert_int_equal(fx_plugin_pod_name(p, "uid-ra", ns, sizeof(ns), name, sizeof(name)), -1);
    assert_int_equal(slow_name_calls, 1);
    fx_plugin_free(p);
}

/* A borrower killed for an owner's memory stays refused when the agent
 * restarts (issue 16): the mark is read back from <root>/reclaimed, so its
 * container's restart cannot take the owner's memory again; the mark goes
 * once the pod is gone from a complete list of the pods. */
static void test_plugin_reclaimed_survives_restart(void **state)
{
    (void)state;
    fake_gpus_init("GPU-test-", false);
    nheld = 0;
    char podres[300], dp[300], file[400];
    snprintf(podres, sizeof(podres), "%s/podres.sock", tmpdir);
    snprintf(dp, sizeof(dp), "%s/dp.sock", tmpdir);
    snprintf(file, sizeof(file), "%s/reclaimed", tmpdir);
    struct flexpu_error err = {0};
    struct fx_grpc_server *prs = fx_grpc_server_start(podres, podres_methods, NULL, &err);
    assert_non_null(prs);
    struct fx_plugin_config pc = {.node_name = "n1", .root = tmpdir, .podresources = podres,
                                  .wait_ms = 1500};
    json_t *po = pod("o", "uid-o", (int[]){2}, 1, 50, 40LL << 30);
    json_t *pg = borrower("g", "uid-g", 2, 20, 16LL << 30, true);
    char *ids_g[] = {"GPU-test-2::10"}, *ids_o[] = {"GPU-test-2::11"};
    for (int round = 0; round < 2; round++) {
        struct fx_plugin *p = fx_plugin_new(&pc, fake_gpus, NGPU, &err);
        assert_non_null(p);
        struct fx_grpc_server *dps = fx_grpc_server_start(dp, fx_plugin_methods, p, &err);
        assert_non_null(dps);
        fx_plugin_pod_event(p, KUBE_SYNC_BEGIN, NULL);
        fx_plugin_pod_event(p, KUBE_ADDED, po);
        fx_plugin_pod_event(p, KUBE_ADDED, pg);
        fx_plugin_pod_event(p, KUBE_SYNC_END, NULL);
        char bdir[400];
        conf_dir_of(dp, ids_g, bdir, sizeof(bdir));
        hold("default", "g", ids_g, 1);
        struct fx_grpc_reply r = prestart_call(dp, ids_g, 1);
        struct fx_alloc_view v[16];
        int nv = fx_plugin_allocations(p, v, 16), seen = 0;
        for (int i = 0; i < nv; i++)
            if (strcmp(v[i].uid, "uid-g") == 0)
                seen += v[i].reclaimed;
        if (round == 0) {
            /* admitted, then killed for an owner's memory: o's slice
             * wants 39 GiB */
            assert_int_equal(r.status, FX_GRPC_OK);
            free(r.data);
            assert_int_equal(seen, 0);
            char odir[400];
            conf_dir_of(dp, ids_o, odir, sizeof(odir));
            hold("default", "o", ids_o, 1);
            r = prestart_call(dp, ids_o, 1);
            assert_int_equal(r.status, FX_GRPC_OK);
            free(r.data);
            const char *okey = strrchr(odir, '/') + 1;
            struct fx_reclaim_note note = {.uid = "uid-g", .gpu = "GPU-test-2",
                                           .owner_key = okey, .bytes = 41875931136ull,
                                           .why = "test"};
            /* The pod's event: the node, the GPU, the owner's pod, the bytes. */
            struct kube_pod_event ev;
            assert_true(fx_plugin_reclaim_event(p, &note, &ev));
            assert_string_equal(ev.name, "g");
            assert_string_equal(ev.uid, "uid-g");
            assert_string_equal(ev.type, "Warning");
            assert_string_equal(ev.reason, "MemoryReclaimed");
            assert_true(ev.series); /* killed again: the same Event, counted */
            if (!strstr(ev.message, "node n1") || !strstr(ev.message, "GPU GPU-test-2") ||
                !strstr(ev.message, "pod default/o") || !strstr(ev.message, "41875931136 bytes"))
                fail_msg("the event's message '%s' does not name the node, the GPU, the "
                         "owner's pod and the bytes", ev.message);
            /* an owner with no pod here is named by its slice; no event
             * for a pod the agent does not know */
            assert_true(fx_plugin_reclaim_event(
                p, &(struct fx_reclaim_note){.uid = "uid-g", .gpu = "G", .owner_key = "zz",
                                             .why = "t"}, &ev));
            assert_non_null(strstr(ev.message, "slice zz"));
            assert_false(fx_plugin_reclaim_event(
                p, &(struct fx_reclaim_note){.uid = "uid-none", .gpu = "G", .owner_key = "zz",
                                             .why = "t"}, &ev));
            fx_plugin_reclaimed(p, &note);
            assert_int_equal(access(file, F_OK), 0);
        } else {
            /* the restarted agent still refuses it, and says it was killed */
            if (r.status != FX_GRPC_FAILED_PRECONDITION || !strstr(r.message, "killed"))
                fail_msg("a killed borrower restarted after the agent did: status %d '%s'",
                         r.status, r.message);
            assert_int_equal(seen, 1);
            /* g gone from the next complete list: its mark goes, on disk too */
            fx_plugin_pod_event(p, KUBE_SYNC_BEGIN, NULL);
            fx_plugin_pod_event(p, KUBE_ADDED, po);
            fx_plugin_pod_event(p, KUBE_SYNC_END, NULL);
            struct fx_reclaimed left;
            assert_int_equal(fx_reclaimed_load(&left, tmpdir, &err), 0);
            assert_int_equal(left.n, 0);
        }
        fx_grpc_server_stop(dps);
        fx_plugin_free(p);
    }
    json_decref(po);
    json_decref(pg);
    fx_grpc_server_stop(prs);
}

/* GetPreferredAllocation called directly (no socket), as the kubelet would,
 * with `n` must-include IDs: the reply, its status and message set. */
static struct fx_grpc_reply preferred_call(struct fx_plugin *p, int size, char **must, size_t n)
{
    char *avail[] = {"G0::0", "G1::0", "G2::0", "G3::0", "G0::1", "G1::1"};
    V1beta1__ContainerPreferredAllocationRequest cq =
        V1BETA1__CONTAINER_PREFERRED_ALLOCATION_REQUEST__INIT;
    cq.n_available_deviceids = sizeof(avail) / sizeof(avail[0]);
    cq.available_deviceids = avail;
    cq.n_must_include_deviceids = n;
    cq.must_include_deviceids = must;
    cq.allocation_size = size;
    V1beta1__ContainerPreferredAllocationRequest *cqp = &cq;
    V1beta1__PreferredAllocationRequest pq = V1BETA1__PREFERRED_ALLOCATION_REQUEST__INIT;
    pq.n_container_requests = 1;
    pq.container_requests = &cqp;
    uint8_t buf[1024];
    size_t len = protobuf_c_message_pack(&pq.base, buf);
    const struct fx_grpc_method *m = fx_plugin_methods;
    while (m->path && strcmp(m->path, "/v1beta1.DevicePlugin/GetPreferredAllocation") != 0)
        m++;
    assert_non_null(m->unary);
    struct fx_grpc_reply r;
    memset(&r, 0, sizeof(r));
    m->unary(p, buf, len, &r);
    return r;
}

/* The IDs of a successful single-container answer, checked to hold every
 * must-include ID, no more than `size` IDs and no GPU twice. */
static size_t preferred_ok(const struct fx_grpc_reply *r, int size, char **must, size_t n)
{
    assert_int_equal(r->status, FX_GRPC_OK);
    V1beta1__PreferredAllocationResponse *pr =
        v1beta1__preferred_allocation_response__unpack(NULL, r->len, r->data);
    assert_non_null(pr);
    assert_int_equal(pr->n_container_responses, 1);
    V1beta1__ContainerPreferredAllocationResponse *c = pr->container_responses[0];
    size_t k = c->n_deviceids;
    if (k > (size_t)size)
        fail_msg("%zu IDs answered for allocation_size %d", k, size);
    for (size_t i = 0; i < n; i++) {
        bool found = false;
        for (size_t j = 0; j < k; j++)
            found = found || strcmp(c->deviceids[j], must[i]) == 0;
        if (!found)
            fail_msg("must-include ID '%s' missing from the answer", must[i]);
    }
    for (size_t i = 0; i < k; i++)
        for (size_t j = i + 1; j < k; j++)
            assert_false(strncmp(c->deviceids[i], c->deviceids[j], 2) == 0); /* "G<n>" */
    v1beta1__preferred_allocation_response__free_unpacked(pr, NULL);
    return k;
}

/* must_include larger than the request overflowed the answer's array (found
 * by fuzz_node: test/fuzz/corpus/node/preferred-must-include-over-size). A
 * request the kubelet cannot mean is refused naming the field and the value;
 * the others get a valid answer. */
static void test_preferred_must_include(void **state)
{
    (void)state;
    struct fx_node_gpu gpus[4];
    memset(gpus, 0, sizeof(gpus));
    for (int i = 0; i < 4; i++) {
        snprintf(gpus[i].uuid, sizeof(gpus[i].uuid), "G%d", i);
        gpus[i].index = gpus[i].minor = i;
        gpus[i].healthy = true;
    }
    struct fx_plugin_config pc = {.node_name = "n1", .root = tmpdir,
                                  .podresources = "/nonexistent.sock", .wait_ms = 1};
    struct flexpu_error err = {0};
    struct fx_plugin *p = fx_plugin_new(&pc, gpus, 4, &err);
    assert_non_null(p);

    /* the fuzzer's input: two must-include GPUs for a request of one */
    char *over[] = {"G0::2", "G1::4"};
    struct fx_grpc_reply r = preferred_call(p, 1, over, 2);
    if (r.status == FX_GRPC_OK)
        preferred_ok(&r, 1, over, 2); /* fails: two IDs answered for one */
    assert_int_equal(r.status, FX_GRPC_INVALID_ARGUMENT);
    assert_non_null(strstr(r.message, "must_include_deviceids"));
    assert_non_null(strstr(r.message, "allocation_size 1"));
    free(r.data);

    /* two slots of one GPU: flexpu gives a pod each GPU once */
    char *same_gpu[] = {"G0::2", "G0::3"};
    r = preferred_call(p, 2, same_gpu, 2);
    if (r.status == FX_GRPC_OK)
        preferred_ok(&r, 2, same_gpu, 2);
    assert_int_equal(r.status, FX_GRPC_INVALID_ARGUMENT);
    assert_non_null(strstr(r.message, "G0::3"));
    free(r.data);

    /* an ID this node never advertised */
    char *unknown[] = {"GPU-elsewhere::1"};
    r = preferred_call(p, 1, unknown, 1);
    assert_int_equal(r.status, FX_GRPC_INVALID_ARGUMENT);
    assert_non_null(strstr(r.message, "'GPU-elsewhere::1'"));
    free(r.data);

    /* the same ID twice is one device: a valid answer of one ID */
    char *dup[] = {"G2::5", "G2::5"};
    r = preferred_call(p, 1, dup, 2);
    assert_int_equal(preferred_ok(&r, 1, dup, 2), 1);
    free(r.data);

    /* one must-include ID in a request of three: it plus two other GPUs */
    char *one[] = {"G3::7"};
    r = preferred_call(p, 3, one, 1);
    assert_int_equal(preferred_ok(&r, 3, one, 1), 3);
    free(r.data);
    fx_plugin_free(p);
}

/* The first GPU of a single-container answer ("G<n>::<slot>" -> n), -1 if
 * none. */
static int preferred_gpu(const struct fx_grpc_reply *r)
{
    assert_int_equal(r->status, FX_GRPC_OK);
    V1beta1__PreferredAllocationResponse *pr =
        v1beta1__preferred_allocation_response__unpack(NULL, r->len, r->data);
    assert_non_null(pr);
    int g = pr->container_responses[0]->n_deviceids
                ? pr->container_responses[0]->deviceids[0][1] - '0'
                : -1;
    v1beta1__preferred_allocation_response__free_unpacked(pr, NULL);
    return g;
}

struct late_pod {
    struct fx_plugin *p;
    json_t *pod;
};

static void *add_pod_late(void *arg)
{
    struct late_pod *l = arg;
    struct timespec ts = {0, 300 * 1000000L};
    nanosleep(&ts, NULL);
    fx_plugin_pod_event(l->p, KUBE_ADDED, l->pod);
    return NULL;
}

/* Found by the real kubelet (test/e2e/kubelet_e2e.sh): the kubelet admits
 * pods in its own order (by creation time, one at a time) and asks
 * GetPreferredAllocation within a millisecond of the bind. The plugin
 * guessed "the oldest binding waiting for this many GPUs", so it offered one
 * pod's GPUs while the kubelet admitted another (whose PreStartContainer
 * then failed for ever: the kubelet never changes a container's devices),
 * and, when its pod watch had not yet seen the pod, offered any GPUs (and
 * Allocate then refused the pod: UnexpectedAdmissionError). The pod the
 * kubelet admits is the one its PodResources lists without devices, and a
 * pod the watch has not delivered yet is waited for. */
static void test_preferred_follows_kubelet(void **state)
{
    (void)state;
    fake_gpus_init("G", false);
    char podres[300];
    snprintf(podres, sizeof(podres), "%s/podres.sock", tmpdir);
    struct flexpu_error err = {0};
    struct fx_grpc_server *prs = fx_grpc_server_start(podres, podres_methods, NULL, &err);
    assert_non_null(prs);
    struct fx_plugin_config pc = {.node_name = "n1", .root = tmpdir, .podresources = podres,
                                  .wait_ms = 3000};
    struct fx_plugin *p = fx_plugin_new(&pc, fake_gpus, NGPU, &err);
    assert_non_null(p);
    fx_plugin_pod_event(p, KUBE_SYNC_BEGIN, NULL);
    json_t *pa = pod("a", "uid-a", (int[]){0}, 1, 100, 0);
    json_t *pb = pod("b", "uid-b", (int[]){1}, 1, 100, 0);
    fx_plugin_pod_event(p, KUBE_ADDED, pa); /* bound first */
    fx_plugin_pod_event(p, KUBE_ADDED, pb);
    fx_plugin_pod_event(p, KUBE_SYNC_END, NULL);

    /* The kubelet admits b first: it lists b, without devices. */
    held[0].ns = "default", held[0].name = "b", held[0].n = 0;
    nheld = 1;
    struct fx_grpc_reply r = preferred_call(p, 1, NULL, 0);
    assert_int_equal(preferred_gpu(&r), 1);
    free(r.data);
    /* then a, with b holding its device */
    held[0].ids[0] = "G1::0", held[0].n = 1;
    held[1].ns = "default", held[1].name = "a", held[1].n = 0;
    nheld = 2;
    r = preferred_call(p, 1, NULL, 0);
    assert_int_equal(preferred_gpu(&r), 0);
    free(r.data);

    /* c is bound, and the kubelet asks, before the pod watch delivers it. */
    json_t *pcl = pod("c", "uid-c", (int[]){2}, 1, 100, 0);
    struct late_pod late = {p, pcl};
    pthread_t t;
    held[2].ns = "default", held[2].name = "c", held[2].n = 0;
    held[1].ids[0] = "G0::0", held[1].n = 1;
    nheld = 3;
    int64_t t0 = fx_mono_ms();
    assert_int_equal(pthread_create(&t, NULL, add_pod_late, &late), 0);
    r = preferred_call(p, 1, NULL, 0);
    assert_int_equal(preferred_gpu(&r), 2);
    free(r.data);
    assert_true(fx_mono_ms() - t0 < 2500); /* answered when c came, not at the bound */
    pthread_join(t, NULL);

    nheld = 0;
    fx_plugin_free(p);
    fx_grpc_server_stop(prs);
    json_decref(pa);
    json_decref(pb);
    json_decref(pcl);
}

/* ---- metrics ---- */

static int name_of(void *ctx, const char *uid, char *ns, size_t ns_len, char *name,
                   size_t name_len)
{
    (void)ctx;
    if (strcmp(uid, "uid-m") != 0)
        return -1;
    snprintf(ns, ns_len, "team-a");
    snprintf(name, name_len, "train-0");
    return 0;
}

static void test_metrics(void **state)
{
    (void)state;
    char dir[300];
    snprintf(dir, sizeof(dir), "%s/state", tmpdir);
    struct fx_slice_config cfg;
    fx_config_defaults(&cfg);
    snprintf(cfg.tenant, sizeof(cfg.tenant), "uid-m");
    cfg.memory_limit = 4LL << 30;
    cfg.compute_share = 25;
    cfg.compute_cap = 40;
    /* as the node agent lays it out: the slice's ledger in its own
     * directory under <root>/ledger */
    char ledgers[300];
    snprintf(ledgers, sizeof(ledgers), "%s/ledger", tmpdir);
    snprintf(cfg.state_dir, sizeof(cfg.state_dir), "%.190s", dir);
    snprintf(cfg.ledger_dir, sizeof(cfg.ledger_dir), "%.180s/0123abcd", ledgers);
    struct fx_gpu g;
    struct flexpu_error err = {0};
    assert_int_equal(fx_gpu_attach(&g, &cfg, "GPU-m-0", 80ULL << 30, &err), 0);
    assert_int_equal(fx_ledger_charge(&g.mem, 1ULL << 30, 0), 0);

    struct fx_node_gpu gpus[2] = {0};
    snprintf(gpus[0].uuid, sizeof(gpus[0].uuid), "GPU-m-0");
    snprintf(gpus[1].uuid, sizeof(gpus[1].uuid), "GPU-m-1");
    snprintf(gpus[0].model, sizeof(gpus[0].model), "H100");
    gpus[0].healthy = true;
    gpus[0].mem_bytes = gpus[1].mem_bytes = 80LL << 30;
    int n = 2;
    struct fx_metrics_source src = {.state_dir = dir, .ledger_root = ledgers, .gpus = gpus,
                                    .ngpu = &n, .pod = name_of};
    char *text = fx_metrics_render(&src);
    assert_non_null(text);
    const char *want[] = {
        "flexpu_gpu_healthy{uuid=\"GPU-m-0\"} 1\n",
        "flexpu_gpu_healthy{uuid=\"GPU-m-1\"} 0\n",
        "flexpu_gpu_memory_used_bytes{uuid=\"GPU-m-0\"} 1073741824\n",
        "flexpu_gpu_memory_used_bytes{uuid=\"GPU-m-1\"} 0\n",
        "flexpu_slice_memory_used_bytes{uuid=\"GPU-m-0\",tenant=\"uid-m\",namespace=\"team-a\","
        "pod=\"train-0\"} 1073741824\n",
        "flexpu_slice_memory_quota_bytes{uuid=\"GPU-m-0\",tenant=\"uid-m\",namespace=\"team-a\","
        "pod=\"train-0\"} 4294967296\n",
        "flexpu_slice_compute_share_ratio{uuid=\"GPU-m-0\",tenant=\"uid-m\",namespace=\"team-a\","
        "pod=\"train-0\"} 0.25\n",
        "flexpu_slice_compute_cap_ratio{uuid=\"GPU-m-0\",tenant=\"uid-m\",namespace=\"team-a\","
        "pod=\"train-0\"} 0.4\n",
        "flexpu_slice_processes{uuid=\"GPU-m-0\",tenant=\"uid-m\",namespace=\"team-a\","
        "pod=\"train-0\"} 1\n",
        "# TYPE flexpu_slice_gpu_time_seconds_total counter\n",
    };
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
        if (!strstr(text, want[i]))
            fail_msg("metrics lack '%s' in:\n%s", want[i], text);
    free(text);
    fx_gpu_detach(&g);
    /* the process's slot is dead now: used memory drops to zero */
    text = fx_metrics_render(&src);
    assert_non_null(strstr(text, "flexpu_gpu_memory_used_bytes{uuid=\"GPU-m-0\"} 0\n"));
    free(text);

    /* served over HTTP on loopback */
    struct fx_metrics_server *s = NULL;
    int port = 0;
    for (int p = 19400; p < 19500 && !s; p++)
        if ((s = fx_metrics_start("127.0.0.1", p, &src, &err)))
            port = p;
    assert_non_null(s);
    char cmd[200];
    snprintf(cmd, sizeof(cmd), "curl -sf http://127.0.0.1:%d/metrics | grep -q '^flexpu_gpu_info'",
             port);
    assert_int_equal(system(cmd), 0);
    snprintf(cmd, sizeof(cmd), "curl -s -o /dev/null -w '%%{http_code}' "
                               "http://127.0.0.1:%d/nope | grep -q 404", port);
    assert_int_equal(system(cmd), 0);
    fx_metrics_stop(s);
    assert_null(fx_metrics_start("not-an-address", 9400, &src, &err));
    assert_non_null(strstr(err.msg, "not-an-address"));
}

/* ---- what tenants can put in the state directory ---- */

/* Runs fn(arg) in a child that SIGALRM ends after `seconds`: a call that
 * blocks forever (open() of a FIFO) fails the test instead of hanging it. */
static void run_bounded(int (*fn)(void *), void *arg, unsigned seconds)
{
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        alarm(seconds);
        _exit(fn(arg));
    }
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    if (WIFSIGNALED(st))
        fail_msg("blocked: killed by signal %d after at most %u s", WTERMSIG(st), seconds);
    if (WEXITSTATUS(st) != 0)
        fail_msg("check %d failed (see stderr)", WEXITSTATUS(st));
}

/* A state directory holding one real state file (GPU-m-0, 1 GiB used), a
 * FIFO and a symlink under state file names (GPU-f-0, GPU-l-0). */
static void bad_state_dir(char *dir, size_t len, struct fx_gpu *g)
{
    snprintf(dir, len, "%s/state", tmpdir);
    struct fx_slice_config cfg;
    fx_config_defaults(&cfg);
    snprintf(cfg.tenant, sizeof(cfg.tenant), "uid-m");
    snprintf(cfg.state_dir, sizeof(cfg.state_dir), "%.190s", dir);
    struct flexpu_error err = {0};
    assert_int_equal(fx_gpu_attach(g, &cfg, "GPU-m-0", 80ULL << 30, &err), 0);
    assert_int_equal(fx_ledger_charge(&g->mem, 1ULL << 30, 0), 0);
    char path[400], target[400];
    snprintf(path, sizeof(path), "%s/GPU-f-0.state", dir);
    assert_int_equal(mkfifo(path, 0666), 0);
    snprintf(path, sizeof(path), "%s/GPU-l-0.state", dir);
    snprintf(target, sizeof(target), "%s/GPU-m-0.state", dir);
    assert_int_equal(symlink(target, path), 0);
}

/* Exits with the number of the first failed check. */
static int check_open_refused(void *arg)
{
    const char *dir = arg;
    struct { const char *name, *why; } cases[] = {
        {"GPU-f-0.state", "not a regular file"},
        {"GPU-l-0.state", "symbolic link"},
        {"GPU-big.state", "too large"},
    };
    for (int i = 0; i < 3; i++) {
        char path[400];
        snprintf(path, sizeof(path), "%s/%s", dir, cases[i].name);
        struct fx_gpu g;
        struct flexpu_error err = {0};
        if (fx_gpu_open_readonly(&g, path, &err) == 0 || !strstr(err.msg, path) ||
            !strstr(err.msg, cases[i].why)) {
            fprintf(stderr, "readonly %s: '%s'\n", path, err.msg);
            return 1 + i;
        }
    }
    /* a tenant's own library refuses them too: the process runs on a
     * private state rather than lose the GPU to whoever planted them */
    struct fx_slice_config cfg;
    fx_config_defaults(&cfg);
    snprintf(cfg.tenant, sizeof(cfg.tenant), "uid-x");
    snprintf(cfg.state_dir, sizeof(cfg.state_dir), "%.190s", dir);
    const char *uuids[] = {"GPU-f-0", "GPU-l-0"};
    for (int i = 0; i < 2; i++) {
        struct fx_gpu g;
        struct flexpu_error err = {0};
        if (fx_gpu_attach(&g, &cfg, uuids[i], 80ULL << 30, &err) != 0 || !g.private_state) {
            fprintf(stderr, "attach %s: private=%d '%s'\n", uuids[i], g.private_state,
                    err.msg);
            return 10 + i;
        }
        fx_gpu_detach(&g);
    }
    char path[400];
    snprintf(path, sizeof(path), "%s/GPU-m-0.state", dir);
    struct fx_gpu g;
    if (fx_gpu_open_readonly(&g, path, NULL) != 0)
        return 20;
    fx_gpu_detach(&g);
    return 0;
}

static void test_state_open_refuses_non_files(void **state)
{
    (void)state;
    char dir[300];
    struct fx_gpu g;
    bad_state_dir(dir, sizeof(dir), &g);
    char path[400];
    snprintf(path, sizeof(path), "%s/GPU-big.state", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fclose(f);
    assert_int_equal(truncate(path, 128LL << 20), 0); /* sparse */
    run_bounded(check_open_refused, dir, 3);
    fx_gpu_detach(&g);
}

static void collect_log(const char *line, void *ctx)
{
    char *buf = ctx;
    size_t n = strlen(buf);
    snprintf(buf + n, 4096 - n, "%s\n", line);
}

/* A scrape that waits (as on the agent's lock) for the pod of a slice. */
static int slow_name_of(void *ctx, const char *uid, char *ns, size_t ns_len, char *name,
                        size_t name_len)
{
    (void)ctx;
    (void)uid;
    sleep(3);
    snprintf(ns, ns_len, "team-a");
    snprintf(name, name_len, "slow");
    return 0;
}

static int check_metrics_served(void *arg)
{
    const char *dir = arg;
    struct fx_node_gpu gpus[3] = {0};
    const char *uuids[] = {"GPU-m-0", "GPU-f-0", "GPU-l-0"};
    for (int i = 0; i < 3; i++) {
        snprintf(gpus[i].uuid, sizeof(gpus[i].uuid), "%s", uuids[i]);
        gpus[i].healthy = true;
        gpus[i].mem_bytes = 80LL << 30;
    }
    int n = 3;
    static char logbuf[4096];
    flexpu_log_set_sink(collect_log, logbuf);
    char ledgers[400];
    snprintf(ledgers, sizeof(ledgers), "%s/ledger", dir);
    struct fx_metrics_source src = {.state_dir = dir, .ledger_root = ledgers, .gpus = gpus,
                                    .ngpu = &n, .pod = name_of};
    char *text = fx_metrics_render(&src);
    flexpu_log_set_sink(NULL, NULL);
    if (!text)
        return 1;
    const char *want[] = {
        "flexpu_gpu_memory_used_bytes{uuid=\"GPU-m-0\"} 1073741824\n",
        "flexpu_gpu_memory_used_bytes{uuid=\"GPU-f-0\"} 0\n",
        "flexpu_gpu_memory_used_bytes{uuid=\"GPU-l-0\"} 0\n",
    };
    for (int i = 0; i < 3; i++)
        if (!strstr(text, want[i])) {
            fprintf(stderr, "metrics lack '%s' in:\n%s", want[i], text);
            return 2 + i;
        }
    /* the symlink's target is read under its own name only */
    if (strstr(text, "uuid=\"GPU-l-0\",tenant"))
        return 5;
    free(text);
    if (!strstr(logbuf, "GPU-f-0.state: not a regular file") ||
        !strstr(logbuf, "GPU-l-0.state: a symbolic link")) {
        fprintf(stderr, "log lacks the skipped files:\n%s", logbuf);
        return 6;
    }

    /* /healthz answers while a scrape is slow */
    src.pod = slow_name_of;
    struct flexpu_error err = {0};
    struct fx_metrics_server *s = NULL;
    int port = 0;
    for (int p = 19500; p < 19600 && !s; p++)
        if ((s = fx_metrics_start("127.0.0.1", p, &src, &err)))
            port = p;
    if (!s)
        return 7;
    char cmd[400];
    snprintf(cmd, sizeof(cmd),
             "curl -s --max-time 8 http://127.0.0.1:%d/metrics >/dev/null & sleep 0.5; "
             "curl -sf --max-time 1 http://127.0.0.1:%d/healthz | grep -q ok; rc=$?; wait; "
             "exit $rc",
             port, port);
    int rc = system(cmd);
    fx_metrics_stop(s);
    return rc == 0 ? 0 : 8;
}

static void test_metrics_skip_non_files(void **state)
{
    (void)state;
    char dir[300];
    struct fx_gpu g;
    bad_state_dir(dir, sizeof(dir), &g);
    run_bounded(check_metrics_served, dir, 10);
    fx_gpu_detach(&g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_grpc_roundtrip, setup_dir, teardown_dir),
        cmocka_unit_test(test_grpc_msg_encoding),
        cmocka_unit_test_setup_teardown(test_nvml_discovery, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_slice_files, setup_dir, teardown_dir),
        cmocka_unit_test(test_cap_clock_flag),
        cmocka_unit_test_setup_teardown(test_preload_replaced_atomically, setup_dir,
                                        teardown_dir),
        cmocka_unit_test_setup_teardown(test_ledger_size_limit, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_size_limits_propagation, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_plugin_calls, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_plugin_borrow_idle, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_plugin_borrow_remote_owner, setup_dir,
                                        teardown_dir),
        cmocka_unit_test_setup_teardown(test_plugin_remote_names, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_plugin_set_remote_waits_for_a_call_under_way,
                                        setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_plugin_reclaimed_survives_restart, setup_dir,
                                        teardown_dir),
        cmocka_unit_test_setup_teardown(test_preferred_must_include, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_preferred_follows_kubelet, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_metrics, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_state_open_refuses_non_files, setup_dir,
                                        teardown_dir),
        cmocka_unit_test_setup_teardown(test_metrics_skip_non_files, setup_dir, teardown_dir),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
