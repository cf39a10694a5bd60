/* SPDX-License-Identifier: Apache-2.0 */
/* Borrowed memory taken back for an owner (node/reclaim_mem.h): the pod
 * cgroups of both kubelet drivers, an owner's want killing the borrowers
 * of its GPU and no others, once, the marks the runtime reads, and what is
 * not a want (a dead process's, a borrower's). The cgroup tree is a
 * directory of plain files: a kill is "1" written to cgroup.kill. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "node/reclaim_mem.h"
#include "node/slices.h"
#include "node/usage.h"
#include "runtime/config.h"
#include "runtime/ledger.h"
#include "runtime/oom_wait.h"
#include "runtime/state.h"

#define GIB (1024ull * 1024 * 1024)
#define OWNER_KEY "000000000000000000000aaa"
#define BORROWER_KEY "000000000000000000000bbb"
#define B_UID "0b0b0b0b-0000-4000-8000-00000000000b"
#define C_UID "0c0c0c0c-0000-4000-8000-00000000000c"

static char root[128], cg[128];
static struct fx_node_gpu gpus[3];

static struct fx_alloc_view views[8];
static int nviews;
static char reclaimed_uid[64], reclaimed_owner[64];
static uint64_t reclaimed_bytes;
static int reclaimed_calls;

static int list(void *ctx, struct fx_alloc_view *out, int max)
{
    (void)ctx;
    if (nviews < 0)
        return -1; /* the plugin before its first list of the pods */
    int n = nviews < max ? nviews : max;
    memcpy(out, views, (size_t)n * sizeof(*out));
    return n;
}

/* As the plugin: the borrower is marked, and the list says so. */
static void reclaimed(void *ctx, const struct fx_reclaim_note *note)
{
    (void)ctx;
    assert_non_null(strstr(note->why, gpus[0].uuid));
    assert_string_equal(note->gpu, gpus[0].uuid);
    snprintf(reclaimed_uid, sizeof(reclaimed_uid), "%s", note->uid);
    snprintf(reclaimed_owner, sizeof(reclaimed_owner), "%s", note->owner_key);
    reclaimed_bytes = note->bytes;
    reclaimed_calls++;
    /* Bounded by the array too: gcc -O3 cannot tell nviews <= 8 and
     * refuses the read (-Wstringop-overread) in a Release build. */
    for (int i = 0; i < nviews && i < (int)(sizeof(views) / sizeof(views[0])); i++)
        if (strcmp(views[i].uid, note->uid) == 0)
            views[i].reclaimed = true;
}

static void put(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void mkdirs(const char *path)
{
    char c[600];
    snprintf(c, sizeof(c), "mkdir -p '%s'", path);
    assert_int_equal(system(c), 0);
}

/* A pod cgroup (relative to cg) with an empty cgroup.kill. */
static void pod_cgroup(const char *rel)
{
    char p[512];
    snprintf(p, sizeof(p), "%s/%s", cg, rel);
    mkdirs(p);
    strcat(p, "/cgroup.kill");
    put(p, "");
}

static int killed(const char *rel)
{
    char p[512], buf[8] = "";
    snprintf(p, sizeof(p), "%s/%s/cgroup.kill", cg, rel);
    FILE *f = fopen(p, "r");
    assert_non_null(f);
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    return strcmp(buf, "1") == 0;
}

static int marked(int g)
{
    char p[512];
    struct stat st;
    snprintf(p, sizeof(p), "%s/borrowed/%s", root, gpus[g].uuid);
    return stat(p, &st) == 0;
}

#define B_CG "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0b0b0b0b_0000_4000_8000_00000000000b.slice"
#define C_CG "kubepods/besteffort/pod" C_UID

static int setup(void **state)
{
    (void)state;
    snprintf(root, sizeof(root), "/tmp/fxrec-root-XXXXXX");
    assert_non_null(mkdtemp(root));
    snprintf(cg, sizeof(cg), "/tmp/fxrec-cg-XXXXXX");
    assert_non_null(mkdtemp(cg));
    char p[300];
    snprintf(p, sizeof(p), "%s/cgroup.controllers", cg);
    put(p, "cpu memory pids\n");
    pod_cgroup(B_CG);
    pod_cgroup(C_CG);
    for (int g = 0; g < 3; g++) {
        memset(&gpus[g], 0, sizeof(gpus[g]));
        snprintf(gpus[g].uuid, sizeof(gpus[g].uuid), "GPU-0000000%d-test", g);
        gpus[g].mem_bytes = (int64_t)(80 * GIB);
    }
    /* GPU 0: an owner and borrower B; GPU 1: borrower C alone. */
    memset(views, 0, sizeof(views));
    snprintf(views[0].key, sizeof(views[0].key), OWNER_KEY);
    snprintf(views[0].uid, sizeof(views[0].uid), "owner-uid");
    views[0].gpuset = 1u << 0;
    snprintf(views[1].key, sizeof(views[1].key), BORROWER_KEY);
    snprintf(views[1].uid, sizeof(views[1].uid), B_UID);
    views[1].gpuset = 1u << 0;
    views[1].borrowed = true;
    snprintf(views[2].uid, sizeof(views[2].uid), C_UID); /* no slice yet */
    views[2].gpuset = 1u << 1;
    views[2].borrowed = true;
    nviews = 3;
    reclaimed_uid[0] = '\0';
    reclaimed_calls = 0;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char c[400];
    snprintf(c, sizeof(c), "rm -rf '%s' '%s'", root, cg);
    return system(c) == 0 ? 0 : -1;
}

static struct fx_reclaim_mem *new_reclaim(const char *cgroup_root)
{
    struct fx_reclaim_mem_config c = {.root = root, .cgroup_root = cgroup_root, .gpus = gpus,
                                      .ngpu = 3, .list = list, .reclaimed = reclaimed};
    struct flexpu_error err = {0};
    struct fx_reclaim_mem *r = fx_reclaim_mem_new(&c, &err);
    assert_non_null(r);
    return r;
}

/* A live process of slice `key` on GPU 0 (this test process holds the
 * slot's lock); with a want when want is set. */
static void slice_process(struct fx_ledger_handle *l, const char *key, bool want)
{
    char dir[300];
    snprintf(dir, sizeof(dir), "%s/ledger/%s", root, key);
    struct fx_slice_config cfg;
    fx_config_defaults(&cfg);
    snprintf(cfg.tenant, sizeof(cfg.tenant), "%s", key);
    struct flexpu_error err = {0};
    assert_int_equal(fx_ledger_attach(l, dir, gpus[0].uuid, 80 * GIB, &cfg, &err), 0);
    if (want) {
        char path[500];
        assert_int_equal(fx_want_path(dir, gpus[0].uuid, l->slot, path, sizeof(path)), 0);
        put(path, "268435456\n");
    }
}

static void test_pod_cgroups_of_both_drivers(void **state)
{
    (void)state;
    char out[512];
    struct flexpu_error err = {0};
    assert_int_equal(fx_pod_cgroup(cg, B_UID, out, sizeof(out), &err), 0);
    assert_non_null(strstr(out, B_CG));
    assert_int_equal(fx_pod_cgroup(cg, C_UID, out, sizeof(out), &err), 0);
    assert_non_null(strstr(out, C_CG));
    /* Guaranteed pods sit directly under kubepods, in both layouts. */
    pod_cgroup("kubepods.slice/kubepods-pod0d0d_1.slice");
    assert_int_equal(fx_pod_cgroup(cg, "0d0d-1", out, sizeof(out), &err), 0);
    pod_cgroup("kubepods/pod0e0e-2");
    assert_int_equal(fx_pod_cgroup(cg, "0e0e-2", out, sizeof(out), &err), 0);
    assert_int_equal(fx_pod_cgroup(cg, "0f0f-3", out, sizeof(out), &err), FLEXPU_ENOENT);
    assert_non_null(strstr(err.msg, "0f0f-3"));
    assert_int_equal(fx_pod_cgroup(cg, "../../etc", out, sizeof(out), &err), FLEXPU_EINVAL);
    assert_non_null(strstr(err.msg, "'../../etc'"));
    /* cgroup v1: no cgroup.kill anywhere. */
    char v1[300];
    snprintf(v1, sizeof(v1), "%s/kubepods", cg);
    assert_int_equal(fx_pod_cgroup(v1, B_UID, out, sizeof(out), &err), FLEXPU_EINVAL);
    assert_non_null(strstr(err.msg, "cgroup v1"));
    assert_int_equal(fx_pod_kill(cg, C_UID, &err), 0);
    assert_true(killed(C_CG));
}

static void test_owner_want_kills_the_borrowers_of_its_gpu_once(void **state)
{
    (void)state;
    struct fx_reclaim_mem *r = new_reclaim(cg);
    fx_reclaim_mem_tick(r);
    /* Borrowers, even one whose slice is not written yet, mark their GPUs;
     * no want: nobody is killed. */
    assert_true(marked(0));
    assert_true(marked(1));
    assert_false(marked(2));
    assert_false(killed(B_CG));
    struct fx_ledger_handle owner;
    slice_process(&owner, OWNER_KEY, true);
    fx_reclaim_mem_tick(r);
    assert_true(killed(B_CG));
    assert_false(killed(C_CG)); /* another GPU's borrower stays */
    assert_string_equal(reclaimed_uid, B_UID);
    /* what the pod's event names: the owner's slice, the bytes it asks */
    assert_string_equal(reclaimed_owner, OWNER_KEY);
    assert_int_equal(reclaimed_bytes, 268435456);
    uint64_t k, f;
    fx_reclaim_mem_counts(r, &k, &f);
    assert_int_equal(k, 1);
    assert_int_equal(f, 0);
    fx_reclaim_mem_tick(r); /* the want is still there: no second kill */
    fx_reclaim_mem_counts(r, &k, &f);
    assert_int_equal(k, 1);
    assert_int_equal(reclaimed_calls, 1);
    /* Its processes gone (its ledger has none), the mark goes. */
    assert_false(marked(0));
    assert_true(marked(1));
    char *text = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&text, &len);
    fx_reclaim_mem_metrics(r, m);
    fclose(m);
    assert_non_null(strstr(text, "flexpu_node_borrowers_killed_total{result=\"killed\"} 1\n"));
    free(text);
    fx_ledger_detach(&owner);
    fx_reclaim_mem_free(r);
}

static void test_a_killed_borrower_keeps_its_mark_while_it_lives(void **state)
{
    (void)state;
    struct fx_reclaim_mem *r = new_reclaim(cg);
    struct fx_ledger_handle owner, borrower;
    slice_process(&borrower, BORROWER_KEY, false);
    slice_process(&owner, OWNER_KEY, true);
    fx_reclaim_mem_tick(r);
    assert_true(killed(B_CG));
    fx_reclaim_mem_tick(r);
    assert_true(marked(0)); /* its process is not dead yet */
    fx_ledger_detach(&borrower);
    fx_reclaim_mem_tick(r);
    assert_false(marked(0));
    /* A mark with no borrower behind it (one the agent left before a
     * restart) goes. */
    assert_int_equal(fx_reclaim_mark(root, gpus[2].uuid, NULL), 0);
    fx_reclaim_mem_tick(r);
    assert_false(marked(2));
    fx_ledger_detach(&owner);
    fx_reclaim_mem_free(r);
}

/* A restarted agent before its first list of the pods (review M1): the
 * borrowers the last agent admitted may still run, so a mark it left stays
 * and an owner's want kills nothing yet; once the pods are known, the look
 * decides as always (the mark of a GPU without borrowers goes, a
 * borrower beside a waiting owner is killed). */
static void test_marks_stay_until_the_pods_are_known(void **state)
{
    (void)state;
    struct fx_reclaim_mem *r = new_reclaim(cg);
    assert_int_equal(fx_reclaim_mark(root, gpus[0].uuid, NULL), 0);
    assert_int_equal(fx_reclaim_mark(root, gpus[2].uuid, NULL), 0);
    struct fx_ledger_handle owner;
    slice_process(&owner, OWNER_KEY, true);
    int known = nviews;
    nviews = -1;
    for (int i = 0; i < 3; i++)
        fx_reclaim_mem_tick(r);
    assert_true(marked(0));
    assert_true(marked(2));
    assert_false(killed(B_CG));
    assert_int_equal(reclaimed_calls, 0);
    nviews = known;
    fx_reclaim_mem_tick(r);
    assert_true(killed(B_CG));
    assert_false(marked(2));
    fx_ledger_detach(&owner);
    fx_reclaim_mem_free(r);
}

/* A borrower the plugin remembers as killed (a restarted agent reads the
 * marks back, reclaimed.h) is not killed again for the next want, and its
 * GPU's mark goes once it has no live process there. */
static void test_a_remembered_kill_is_not_repeated(void **state)
{
    (void)state;
    struct fx_reclaim_mem *r = new_reclaim(cg);
    views[1].reclaimed = true;
    struct fx_ledger_handle owner, borrower;
    slice_process(&borrower, BORROWER_KEY, false);
    slice_process(&owner, OWNER_KEY, true);
    fx_reclaim_mem_tick(r);
    assert_false(killed(B_CG));
    assert_int_equal(reclaimed_calls, 0);
    assert_true(marked(0)); /* a process of it still lives */
    fx_ledger_detach(&borrower);
    fx_reclaim_mem_tick(r);
    assert_false(marked(0));
    fx_ledger_detach(&owner);
    fx_reclaim_mem_free(r);
}

static void test_what_is_not_a_want(void **state)
{
    (void)state;
    struct fx_reclaim_mem *r = new_reclaim(cg);
    /* A want whose process is dead (its slot is free). */
    struct fx_ledger_handle owner;
    slice_process(&owner, OWNER_KEY, true);
    fx_ledger_detach(&owner);
    fx_reclaim_mem_tick(r);
    assert_false(killed(B_CG));
    /* A borrower's own "want" kills no one. */
    struct fx_ledger_handle borrower;
    slice_process(&borrower, BORROWER_KEY, true);
    fx_reclaim_mem_tick(r);
    assert_false(killed(B_CG));
    /* A want of a slice the agent knows on another GPU only. */
    views[0].gpuset = 1u << 2;
    slice_process(&owner, OWNER_KEY, true);
    fx_reclaim_mem_tick(r);
    assert_false(killed(B_CG));
    fx_ledger_detach(&owner);
    views[0].gpuset = 1u << 0;
    /* A want older than FX_WANT_FRESH_S (its process stopped refreshing). */
    slice_process(&owner, OWNER_KEY, true);
    char path[500], dir[300];
    snprintf(dir, sizeof(dir), "%s/ledger/%s", root, OWNER_KEY);
    assert_int_equal(fx_want_path(dir, gpus[0].uuid, owner.slot, path, sizeof(path)), 0);
    struct timespec old[2] = {{time(NULL) - FX_WANT_FRESH_S - 2, 0},
                              {time(NULL) - FX_WANT_FRESH_S - 2, 0}};
    assert_int_equal(utimensat(AT_FDCWD, path, old, 0), 0);
    fx_reclaim_mem_tick(r);
    assert_false(killed(B_CG));
    assert_int_equal(reclaimed_calls, 0);
    fx_ledger_detach(&owner);
    fx_ledger_detach(&borrower);
    fx_reclaim_mem_free(r);
}

static void test_a_kill_that_fails_is_counted_and_not_hammered(void **state)
{
    (void)state;
    char v1[300];
    snprintf(v1, sizeof(v1), "%s/kubepods", cg); /* no cgroup.controllers: v1 */
    struct fx_reclaim_mem *r = new_reclaim(v1);
    struct fx_ledger_handle owner;
    slice_process(&owner, OWNER_KEY, true);
    fx_reclaim_mem_tick(r);
    fx_reclaim_mem_tick(r);
    uint64_t k, f;
    fx_reclaim_mem_counts(r, &k, &f);
    assert_int_equal(k, 0);
    assert_int_equal(f, 1); /* tried again only after a pause */
    assert_int_equal(reclaimed_calls, 0);
    assert_true(marked(0)); /* the borrower may still hold the memory */
    fx_ledger_detach(&owner);
    fx_reclaim_mem_free(r);
}

/* What a look costs (printed, not asserted): the agent looks every
 * FX_RECLAIM_MEM_PERIOD_MS; with 32 owners' ledger directories on a GPU with
 * borrowers, and with no borrower anywhere. */
static void test_look_cost_printed(void **state)
{
    (void)state;
    struct fx_ledger_handle owners[32];
    for (int i = 0; i < 32; i++) {
        char key[FX_SLICE_KEY_LEN + 1];
        snprintf(key, sizeof(key), "0000000000000000000%05d", i);
        slice_process(&owners[i], key, false);
    }
    struct fx_reclaim_mem *r = new_reclaim(cg);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < 1000; i++)
        fx_reclaim_mem_tick(r);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double with = ((double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec)) / 1e3;
    nviews = 1; /* the owner only: no borrower */
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < 1000; i++)
        fx_reclaim_mem_tick(r);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double without =
        ((double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec)) / 1e3;
    print_message("a look: %.1f us with borrowers on 2 GPUs and 33 slices' ledgers, %.1f us "
                  "with no borrower\n", with / 1000, without / 1000);
    assert_false(killed(B_CG));
    assert_false(marked(0));
    for (int i = 0; i < 32; i++)
        fx_ledger_detach(&owners[i]);
    fx_reclaim_mem_free(r);
}

/* What the slice tells the runtime: an owner waits, a borrower never. */
/* A tenant that truncates its own ledger and the shared state file over
 * and over while the agent looks (review H1): the agent's reads are copies
 * (pread), never mappings a truncation turns into SIGBUS. The owner's want
 * names a slot it does not hold, so the look reads its ledger every time
 * and kills nobody; the usage feed reads every ledger and the state file.
 * The looks run in a child: a signal there fails the test. */
static void test_a_truncating_tenant_cannot_crash_the_looks(void **state)
{
    (void)state;
    struct fx_ledger_handle l;
    slice_process(&l, OWNER_KEY, false);
    int slot = l.slot;
    fx_ledger_detach(&l);
    char dir[300], want[500], led[500], st[500], sdir[300];
    snprintf(dir, sizeof(dir), "%s/ledger/%s", root, OWNER_KEY);
    assert_int_equal(fx_want_path(dir, gpus[0].uuid, slot, want, sizeof(want)), 0);
    put(want, "268435456\n");
    snprintf(led, sizeof(led), "%s/%s.ledger", dir, gpus[0].uuid);
    snprintf(sdir, sizeof(sdir), "%s/state", root);
    mkdirs(sdir);
    snprintf(st, sizeof(st), "%s/%s.state", sdir, gpus[0].uuid);
    struct fx_gpu_state *img = calloc(1, sizeof(*img));
    assert_non_null(img);
    img->h.magic = FX_STATE_MAGIC;
    img->h.version = FX_STATE_VERSION;
    img->h.size = sizeof(*img);
    int sfd = open(st, O_RDWR | O_CREAT, 0644), lfd = open(led, O_RDWR);
    assert_true(sfd >= 0 && lfd >= 0);
    struct stat lst;
    assert_int_equal(fstat(lfd, &lst), 0);
    char *limg = malloc((size_t)lst.st_size);
    assert_non_null(limg);
    assert_int_equal(pread(lfd, limg, (size_t)lst.st_size, 0), lst.st_size);
    assert_int_equal(pwrite(sfd, img, sizeof(*img), 0), (ssize_t)sizeof(*img));
    pid_t tenant = fork();
    assert_true(tenant >= 0);
    if (tenant == 0)
        for (;;)
            if (ftruncate(lfd, 0) != 0 || ftruncate(sfd, 0) != 0 ||
                pwrite(lfd, limg, (size_t)lst.st_size, 0) != lst.st_size ||
                pwrite(sfd, img, sizeof(*img), 0) != (ssize_t)sizeof(*img))
                _exit(3);
    pid_t agent = fork();
    assert_true(agent >= 0);
    if (agent == 0) {
        struct fx_reclaim_mem *r = new_reclaim(cg);
        static struct fx_usage_obs_gpu obs;
        struct flexpu_error err = {0};
        char lroot[300];
        snprintf(lroot, sizeof(lroot), "%s/ledger", root);
        for (int i = 0; i < 3000; i++) {
            fx_reclaim_mem_tick(r);
            (void)fx_usage_read_gpu(sdir, lroot, gpus[0].uuid, gpus[0].mem_bytes, &obs, &err);
        }
        _exit(reclaimed_calls == 0 ? 0 : 4);
    }
    int ws = 0;
    assert_int_equal(waitpid(agent, &ws, 0), agent);
    kill(tenant, SIGKILL);
    waitpid(tenant, NULL, 0);
    close(lfd);
    close(sfd);
    free(limg);
    free(img);
    if (WIFSIGNALED(ws))
        fail_msg("the agent's looks died of signal %d (%s)", WTERMSIG(ws),
                 strsignal(WTERMSIG(ws)));
    assert_true(WIFEXITED(ws));
    assert_int_equal(WEXITSTATUS(ws), 0); /* nobody killed for a dead slot's want */
}

/* The bytes a want asks, as the agent reads them for the event: the
 * tenant writes the file, so anything but a number within the GPU's
 * memory is no figure. */
static void test_want_bytes_read_as_untrusted(void **state)
{
    (void)state;
    char dir[300], path[500];
    snprintf(dir, sizeof(dir), "%s/ledger/%s", root, OWNER_KEY);
    mkdirs(dir);
    assert_int_equal(fx_want_path(dir, gpus[0].uuid, 3, path, sizeof(path)), 0);
    const char *texts[] = {"1073741824\n", "1073741824", "12x\n", "", "-5\n",
                           "99999999999999999999999\n", "85899345921\n"};
    const uint64_t want[] = {1073741824, 1073741824, 0, 0, 0, 0, 0};
    for (int i = 0; i < 7; i++) {
        put(path, texts[i]);
        if (fx_want_bytes(dir, gpus[0].uuid, 3, 80 * GIB) != want[i])
            fail_msg("want '%s' read as %llu", texts[i],
                     (unsigned long long)fx_want_bytes(dir, gpus[0].uuid, 3, 80 * GIB));
    }
    unlink(path);
    assert_int_equal(symlink("/etc/hostname", path), 0);
    assert_int_equal(fx_want_bytes(dir, gpus[0].uuid, 3, 80 * GIB), 0);
}

/* A remote slice's server (remote_agent.c) is a slice of the agent too,
 * keyed remote-<pod UID>, and always an owner (a borrowed slice is never
 * remote): its want kills the borrowers of its GPU, and what it holds is
 * an owner's, though the plugin's list never names it. */
static void test_a_remote_slice_is_an_owner(void **state)
{
    (void)state;
    const char *rkey = "remote-5a5a5a5a-0000-4000-8000-00000000005a";
    struct fx_reclaim_mem *r = new_reclaim(cg);
    struct fx_ledger_handle server;
    slice_process(&server, rkey, false);
    assert_int_equal(fx_ledger_charge(&server, GIB, 1), 0);
    const char *skip[] = {BORROWER_KEY};
    assert_int_equal(fx_reclaim_owners_mem(root, gpus[0].uuid, (int64_t)(80 * GIB), skip, 1),
                     (int64_t)GIB);
    fx_reclaim_mem_tick(r);
    assert_false(killed(B_CG)); /* no want yet */
    char dir[300], path[500];
    snprintf(dir, sizeof(dir), "%s/ledger/%s", root, rkey);
    assert_int_equal(fx_want_path(dir, gpus[0].uuid, server.slot, path, sizeof(path)), 0);
    put(path, "268435456\n");
    fx_reclaim_mem_tick(r);
    assert_true(killed(B_CG));
    assert_false(killed(C_CG));
    assert_string_equal(reclaimed_owner, rkey);
    assert_int_equal(reclaimed_bytes, 268435456);
    fx_ledger_uncharge(&server, GIB);
    fx_ledger_detach(&server);
    fx_reclaim_mem_free(r);
}

static void test_slice_conf_names_the_marks_for_owners_only(void **state)
{
    (void)state;
    char text[1024];
    struct fx_slice_file f = {.tenant = "u", .compute_share = 30, .compute_cap = 30,
                              .memory = (int64_t)GIB};
    assert_int_equal(fx_slice_format(&f, text, sizeof(text)), 0);
    assert_non_null(strstr(text, "\nborrowed_dir = " FX_CTR_BORROWED "\n"));
    f.borrower = true;
    assert_int_equal(fx_slice_format(&f, text, sizeof(text)), 0);
    assert_null(strstr(text, "borrowed_dir"));
    struct fx_slice_config c;
    fx_config_defaults(&c);
    assert_int_equal(fx_config_parse(&c, text, "slice.conf", NULL), 0);
    assert_string_equal(c.borrowed_dir, "");
    /* A server on the host (a remote slice's) names the host's marks. */
    f.borrower = false;
    f.ledger_dir = "/r/ledger/remote-u";
    f.arbiter_dir = "/r/arb";
    f.borrowed_dir = "/r/borrowed";
    assert_int_equal(fx_slice_format(&f, text, sizeof(text)), 0);
    fx_config_defaults(&c);
    assert_int_equal(fx_config_parse(&c, text, "slice.conf", NULL), 0);
    assert_string_equal(c.borrowed_dir, "/r/borrowed");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_pod_cgroups_of_both_drivers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_owner_want_kills_the_borrowers_of_its_gpu_once, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_a_killed_borrower_keeps_its_mark_while_it_lives,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_marks_stay_until_the_pods_are_known, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_a_remembered_kill_is_not_repeated, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_what_is_not_a_want, setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_kill_that_fails_is_counted_and_not_hammered,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_look_cost_printed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_truncating_tenant_cannot_crash_the_looks, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_want_bytes_read_as_untrusted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_remote_slice_is_an_owner, setup, teardown),
        cmocka_unit_test_setup_teardown(test_slice_conf_names_the_marks_for_owners_only, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
