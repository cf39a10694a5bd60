/* SPDX-License-Identifier: Apache-2.0 */
/* What the node agent's arbiter reads from tenants (issue 12; arbagent.h,
 * docs/SECURITY.md): every request file under <root>/ledger is written by a
 * tenant's processes, which may write anything, truncate it, replace it, and
 * hold or drop its slots' locks. One input is one agent over a fresh root
 * with up to four slices (their slice.conf as the agent would write it, the
 * numbers from the bytes) on one GPU, then up to 128 steps: each changes a
 * request file (a process record's fields, timestamps in the past, the
 * future or anywhere; a slot's lock; the header; a truncation or a file of
 * raw bytes), removes or restores a slice, and runs a round of
 * fx_arb_agent_step a chosen time later (simulated CLOCK_MONOTONIC).
 *
 * After every round the page (<root>/arb/<uuid>.state, read as a tenant
 * reads it) must hold:
 *  - the holder is nobody or an in-use record, and after a scan one of a
 *    slice that is there now;
 *  - in-use records have distinct, non-zero gens and names of slices the
 *    input made; demand only names in-use records; the agent's per-tenant
 *    process slots say which records are in use;
 *  - per record (same gen): GPU time and throttled time never go down (no
 *    wrap); GPU time charged to a record is at most twice the time since
 *    it was assigned, plus a slice (the agent charges what it saw, shared
 *    when work overlaps, never a tenant's own figure);
 *  - a holder's slice ends no earlier than it started.
 * And no crash, no sanitizer report, bounded memory (libFuzzer's limits). */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "flexpu/log.h"
#include "fuzz_input.h"
#include "fuzz_scratch.h"
#include "runtime/arbagent.h"
#include "runtime/arbiter.h"
#include "runtime/shmfile.h"
#include "runtime/state.h"

#define UUID "GPU-fuzz"
#define NT 4
#define MS (1000 * 1000ull)

static char root[64];

struct tenant {
    char name[8];
    int conf;                 /* slice.conf is there */
    int fd;                   /* the request file, as its processes hold it */
    struct fx_arb_req req;
};

static struct tenant tn[NT];
static int nt;

struct rec_seen {
    uint32_t gen;
    uint64_t since, gpu_time, throttled;
};
static struct rec_seen seen[FX_MAX_TENANTS];

static void drop_line(const char *line, void *ctx)
{
    (void)line;
    (void)ctx;
}

static void fail(const char *what, unsigned long long a, unsigned long long b)
{
    fprintf(stderr, "fuzz_arb: %s (%llu, %llu)\n", what, a, b);
    abort();
}

static void path_of(char *buf, size_t n, const char *a, const char *b, const char *c)
{
    snprintf(buf, n, "%s/%s/%s%s", root, a, b, c);
}

static void write_conf(struct tenant *t, struct fuzz_in *in)
{
    static const char *const prio[] = {"normal", "high", "low", "normal"};
    char path[200];
    path_of(path, sizeof path, "slices", t->name, "/slice.conf");
    FILE *f = fopen(path, "w");
    if (!f)
        abort();
    uint8_t share = fuzz_byte(in), cap = fuzz_byte(in), p = fuzz_byte(in), clk = fuzz_byte(in);
    fprintf(f, "tenant = %s\ncompute_share = %u\npriority = %s\n", t->name, 1u + share % 100,
            prio[p % 4]);
    if (cap % 2)
        fprintf(f, "compute_cap = %u\n", 1u + cap % 100);
    if (clk % 4 == 1)
        fprintf(f, "cap_clock_mhz = %u\n", 100u + clk * 10u);
    fclose(f);
    t->conf = 1;
}

static void remove_conf(struct tenant *t)
{
    char path[200];
    path_of(path, sizeof path, "slices", t->name, "/slice.conf");
    unlink(path);
    t->conf = 0;
}

static void open_req(struct tenant *t)
{
    char path[200];
    path_of(path, sizeof path, "ledger", t->name, "/" UUID ".req");
    unlink(path);
    t->fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (t->fd < 0)
        abort();
    memset(&t->req, 0, sizeof t->req);
    fx_shm_header_init(&t->req.h, FX_REQ_MAGIC, FX_REQ_VERSION, sizeof t->req);
    snprintf(t->req.uuid, sizeof t->req.uuid, "%s", UUID);
}

static void flush_req(struct tenant *t)
{
    if (pwrite(t->fd, &t->req, sizeof t->req, 0) != (ssize_t)sizeof t->req)
        abort();
}

/* A timestamp a process might publish: near now, in the past or future,
 * or anything. */
static uint64_t stamp(struct fuzz_in *in, uint64_t now)
{
    uint8_t k = fuzz_byte(in);
    uint64_t d = (uint64_t)fuzz_byte(in) * 100 * 1000;
    switch (k % 4) {
    case 0: return now > d ? now - d : 0;
    case 1: return now + d;
    case 2: return k < 128 ? 0 : UINT64_MAX - d;
    default: return fuzz_u64(in);
    }
}

static uint32_t count(struct fuzz_in *in)
{
    uint8_t b = fuzz_byte(in);
    return b < 200 ? b % 8 : b < 250 ? (uint32_t)fuzz_u64(in) : UINT32_MAX - b % 4;
}

/* One change a tenant's processes make. */
static void tenant_move(struct fuzz_in *in, uint64_t now)
{
    struct tenant *t = &tn[fuzz_byte(in) % nt];
    uint8_t what = fuzz_byte(in);
    int slot = fuzz_byte(in) % 6; /* few slots, so records meet again */
    struct fx_proc_rec *p = &t->req.procs[slot];
    switch (what % 10) {
    case 0: /* a process takes the slot */
        (void)fx_shm_lock_byte(t->fd, FX_LOCK_SLOT_BASE + slot, F_WRLCK, 0);
        p->in_use = 1;
        p->pid = 100 + fuzz_byte(in);
        p->attach_ns = stamp(in, now);
        break;
    case 1: /* it leaves, or dies without clearing its record */
        (void)fx_shm_lock_byte(t->fd, FX_LOCK_SLOT_BASE + slot, F_UNLCK, 0);
        if (fuzz_byte(in) & 1)
            p->in_use = 0;
        break;
    case 2:
        p->waiting = count(in);
        p->poll_ns = stamp(in, now);
        break;
    case 3:
        p->inflight = count(in);
        p->beat_ns = stamp(in, now);
        p->launches += fuzz_byte(in);
        p->last_launch_ns = stamp(in, now);
        break;
    case 4:
        p->inflight = 0;
        p->drained_ns = stamp(in, now);
        break;
    case 5:
        p->waited_us += (uint32_t)fuzz_u64(in);
        p->launching = count(in);
        break;
    case 6: /* every field at once, as raw bytes */
        for (size_t i = 0; i < sizeof *p; i++)
            ((unsigned char *)p)[i] = fuzz_byte(in);
        break;
    case 7: /* the header or the UUID broken, or the file cut short */
        if (fuzz_byte(in) & 1)
            ((unsigned char *)&t->req)[fuzz_byte(in) % (sizeof t->req.h + sizeof t->req.uuid)] ^=
                (unsigned char)(1 + fuzz_byte(in) % 255);
        else if (ftruncate(t->fd, fuzz_byte(in) * 64) != 0)
            abort();
        break;
    case 8: /* the file replaced by another (its locks go with the old one) */
        close(t->fd);
        open_req(t);
        break;
    default: /* the slice goes, or comes back */
        if (t->conf)
            remove_conf(t);
        else
            write_conf(t, in);
        return;
    }
    if (what % 10 != 7)
        flush_req(t);
}

static void check_page(const struct fx_gpu_state *st, uint64_t now, int scanned)
{
    uint32_t in_use = 0;
    for (int r = 0; r < FX_MAX_TENANTS; r++) {
        const struct fx_tenant_rec *tr = &st->tenants[r];
        struct rec_seen *s = &seen[r];
        if (st->procs[r].tenant != (tr->in_use ? r : -1) || st->procs[r].in_use != tr->in_use)
            fail("a tenant's process slot disagrees with its record", (unsigned)r,
                 (unsigned)st->procs[r].tenant);
        if (!tr->in_use) {
            s->gen = 0;
            continue;
        }
        in_use |= 1u << r;
        int known = 0;
        for (int i = 0; i < nt; i++)
            known |= strncmp(tr->name, tn[i].name, sizeof tr->name) == 0;
        if (!known || tr->gen == 0)
            fail("an in-use record of no slice", (unsigned)r, tr->gen);
        for (int q = 0; q < r; q++)
            if (st->tenants[q].in_use && (st->tenants[q].gen == tr->gen ||
                                          strncmp(st->tenants[q].name, tr->name,
                                                  sizeof tr->name) == 0))
                fail("two in-use records with one gen or name", (unsigned)q, (unsigned)r);
        if (s->gen != tr->gen) {
            *s = (struct rec_seen){tr->gen, now, tr->gpu_time_ns, tr->throttled_ns};
            if (tr->gpu_time_ns > FX_ARB_SLICE_NS)
                fail("a new record comes with GPU time", (unsigned)r, tr->gpu_time_ns);
            continue;
        }
        if (tr->gpu_time_ns < s->gpu_time || tr->throttled_ns < s->throttled)
            fail("GPU or throttled time went down", tr->gpu_time_ns, s->gpu_time);
        if (tr->gpu_time_ns - s->gpu_time > 2 * (now - s->since) + FX_ARB_SLICE_NS)
            fail("more GPU time charged than has passed", tr->gpu_time_ns - s->gpu_time,
                 now - s->since);
    }
    uint32_t h = st->arb.holder;
    if (h && (h > FX_MAX_TENANTS || !((in_use >> (h - 1)) & 1)))
        fail("the holder is no in-use record", h, in_use);
    if (h && scanned) {
        int there = 0;
        for (int i = 0; i < nt; i++)
            there |= tn[i].conf &&
                     strncmp(st->tenants[h - 1].name, tn[i].name, sizeof tn[i].name) == 0;
        if (!there)
            fail("the holder's slice is gone after a scan", h, 0);
    }
    if (st->arb.demand & ~in_use)
        fail("demand names a free record", st->arb.demand, in_use);
    if (h && st->arb.slice_started && st->arb.slice_end_ns < st->arb.slice_start_ns)
        fail("a slice ends before it starts", st->arb.slice_start_ns, st->arb.slice_end_ns);
}

/* What the previous input left: the page (an agent takes a page over as it
 * finds it), the slices' files. */
static void reset_root(void)
{
    char path[200];
    snprintf(path, sizeof path, "%s/arb/%s.state", root, UUID);
    unlink(path);
    for (int i = 0; i < NT; i++) {
        char name[8];
        snprintf(name, sizeof name, "t%d", i);
        path_of(path, sizeof path, "slices", name, "/slice.conf");
        unlink(path);
        path_of(path, sizeof path, "ledger", name, "/" UUID ".req");
        unlink(path);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!root[0]) {
        flexpu_log_set_level(FLEXPU_LOG_DEBUG);
        flexpu_log_set_sink(drop_line, NULL);
        /* tmpfs when there is one: files made and removed at every input
         * cost several times more on ext4. */
        struct stat sb;
        snprintf(root, sizeof root, "%s/flexpu-fuzz-arb-XXXXXX",
                 stat("/dev/shm", &sb) == 0 && S_ISDIR(sb.st_mode) ? "/dev/shm" : "/tmp");
        char dir[200];
        if (!mkdtemp(root))
            abort();
        fuzz_scratch_remove_at_exit(root);
        for (int i = 0; i < NT; i++) {
            char name[8];
            snprintf(name, sizeof name, "t%d", i);
            path_of(dir, sizeof dir, "slices", "", "");
            mkdir(dir, 0755);
            path_of(dir, sizeof dir, "ledger", "", "");
            mkdir(dir, 0755);
            path_of(dir, sizeof dir, "slices", name, "");
            mkdir(dir, 0755);
            path_of(dir, sizeof dir, "ledger", name, "");
            mkdir(dir, 0755);
        }
    }
    if (size < 2)
        return 0;
    reset_root();
    struct fuzz_in in = {data, size};
    struct flexpu_error err = {0};
    struct fx_arb_agent *a = NULL;
    if (fx_arb_agent_new(&a, root, &err) != 0 || fx_arb_agent_add_gpu(a, UUID, &err) != 0)
        abort();
    uint64_t now = 1000 * 1000 * MS; /* CLOCK_MONOTONIC, simulated */
    nt = 1 + fuzz_byte(&in) % NT;
    for (int i = 0; i < nt; i++) {
        struct tenant *t = &tn[i];
        snprintf(t->name, sizeof t->name, "t%d", i);
        write_conf(t, &in);
        open_req(t);
        flush_req(t);
    }
    memset(seen, 0, sizeof seen);
    char page_path[200];
    snprintf(page_path, sizeof page_path, "%s/arb/%s.state", root, UUID);
    int pfd = open(page_path, O_RDONLY | O_CLOEXEC);
    const struct fx_gpu_state *st =
        pfd >= 0 ? mmap(NULL, sizeof *st, PROT_READ, MAP_SHARED, pfd, 0) : MAP_FAILED;
    if (st == MAP_FAILED)
        abort();
    uint64_t next_scan = 0;
    for (int round = 0; round < 128 && in.n; round++) {
        tenant_move(&in, now);
        uint8_t dt = fuzz_byte(&in);
        now += dt < 200 ? (uint64_t)dt * 100 * 1000 : (uint64_t)(dt - 199) * 20 * MS;
        int scanned = now >= next_scan;
        if (scanned)
            next_scan = now + FX_ARB_AGENT_SCAN_NS;
        fx_arb_agent_step(a, now);
        check_page(st, now, scanned);
    }
    munmap((void *)st, sizeof *st);
    close(pfd);
    fx_arb_agent_free(a);
    for (int i = 0; i < nt; i++)
        close(tn[i].fd);
    return 0;
}
