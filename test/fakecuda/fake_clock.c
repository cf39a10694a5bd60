/* SPDX-License-Identifier: Apache-2.0 */
/* The fake GPU's SM clock (fake_clock.h), built into both fake libraries. */
#include "fake_clock.h"

#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fake_common.h"

#define LOAD(p) __atomic_load_n((p), __ATOMIC_RELAXED)
#define STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_RELAXED)

int fake_clock_settings(const char *who, unsigned *max, unsigned *loaded)
{
    unsigned long long m, l;
    if (fake_env_u64("FAKECUDA_CLOCK_MAX_MHZ", FAKE_CLOCK_DEFAULT_MHZ, &m) != 0 || m == 0 ||
        m > 100000) {
        fprintf(stderr, "%s: FAKECUDA_CLOCK_MAX_MHZ=\"%s\": want MHz, 1-100000\n", who,
                getenv("FAKECUDA_CLOCK_MAX_MHZ"));
        return -1;
    }
    /* The loaded clock above the max one would make a loaded GPU faster:
     * not a power cap, and surely a mistake in the test. */
    if (fake_env_u64("FAKECUDA_CLOCK_LOADED_MHZ", 0, &l) != 0 || l > m) {
        fprintf(stderr, "%s: FAKECUDA_CLOCK_LOADED_MHZ=\"%s\": want MHz, at most "
                        "FAKECUDA_CLOCK_MAX_MHZ (%llu)\n",
                who, getenv("FAKECUDA_CLOCK_LOADED_MHZ"), m);
        return -1;
    }
    *max = (unsigned)m;
    *loaded = (unsigned)l;
    return 0;
}

struct fake_clock_page *fake_clock_map(const char *dir, int dev)
{
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s/gpu%d.clock", dir, dev) >= (int)sizeof path)
        return NULL;
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
    if (fd < 0)
        return NULL;
    /* 0666 whatever the umask, as the device's other files (fake_ctx.c). */
    if (fchmod(fd, 0666) != 0) {
        /* another user's file: made so by its creator */
    }
    /* Zero-filled when new: no busy time, no kernel running. Growing it
     * twice at once (two processes) is harmless. */
    struct stat sb;
    void *m = MAP_FAILED;
    if (fstat(fd, &sb) == 0 &&
        ((size_t)sb.st_size >= sizeof(struct fake_clock_page) ||
         ftruncate(fd, sizeof(struct fake_clock_page)) == 0))
        m = mmap(NULL, sizeof(struct fake_clock_page), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    return m == MAP_FAILED ? NULL : m;
}

/* Busy fraction of the window ending now: the completed kernel time of the
 * last FAKE_CLOCK_WINDOW_BUCKETS buckets (the current one partly elapsed),
 * and the part of the running kernel inside it. */
static double busy_fraction(const struct fake_clock_page *p, uint64_t now)
{
    uint64_t cur = now / FAKE_CLOCK_BUCKET_NS;
    if (cur < FAKE_CLOCK_WINDOW_BUCKETS)
        return 0;
    uint64_t first = cur - (FAKE_CLOCK_WINDOW_BUCKETS - 1);
    uint64_t from = first * FAKE_CLOCK_BUCKET_NS, busy = 0;
    for (uint64_t b = first; b <= cur; b++) {
        int slot = (int)(b % FAKE_CLOCK_BUCKETS);
        if (LOAD(&p->bucket[slot]) == b)
            busy += LOAD(&p->busy_ns[slot]);
    }
    uint64_t since = LOAD(&p->running_since);
    if (since && since < now)
        busy += now - (since > from ? since : from);
    return (double)busy / (double)(now - from);
}

unsigned fake_clock_now(const struct fake_clock_page *p, unsigned max, unsigned loaded,
                        uint64_t now_ns)
{
    if (!loaded || !p)
        return max;
    if (LOAD(&p->running_since))
        return LOAD(&p->running_mhz);
    return busy_fraction(p, now_ns) >= FAKE_CLOCK_LOADED_FRACTION ? loaded : max;
}

void fake_clock_kernel_begin(struct fake_clock_page *p, uint64_t start, unsigned mhz)
{
    STORE(&p->running_mhz, mhz);
    STORE(&p->running_since, start);
}

void fake_clock_kernel_end(struct fake_clock_page *p, uint64_t start, uint64_t end)
{
    /* The kernel's time into the buckets it spans; a slot that still holds
     * an older bucket starts over. */
    for (uint64_t b = start / FAKE_CLOCK_BUCKET_NS; start < end; b++) {
        uint64_t stop = (b + 1) * FAKE_CLOCK_BUCKET_NS;
        if (stop > end)
            stop = end;
        int slot = (int)(b % FAKE_CLOCK_BUCKETS);
        if (LOAD(&p->bucket[slot]) != b) {
            STORE(&p->busy_ns[slot], 0);
            STORE(&p->bucket[slot], b);
        }
        STORE(&p->busy_ns[slot], LOAD(&p->busy_ns[slot]) + (stop - start));
        start = stop;
    }
    STORE(&p->running_since, 0);
}
