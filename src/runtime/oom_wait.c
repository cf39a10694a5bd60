/* SPDX-License-Identifier: Apache-2.0 */
/* An owner's allocation refused by the driver waits, bounded, for the
 * borrowers on its GPU to be removed (oom_wait.h). */
#include "runtime/oom_wait.h"

#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "flexpu/log.h"
#include "runtime/state.h"
#include "util/clock.h"

#define COMP "flexpu-cuda"

/* A uuid becomes part of a path: one plain file name only. */
static int plain_name(const char *s)
{
    return s[0] && s[0] != '.' && !strchr(s, '/');
}

int fx_borrowed_marker_path(const char *dir, const char *uuid, char *buf, size_t len)
{
    if (!plain_name(uuid))
        return -1;
    int n = snprintf(buf, len, "%s/%s", dir, uuid);
    return n < 0 || (size_t)n >= len ? -1 : 0;
}

int fx_want_path(const char *ledger_dir, const char *uuid, int slot, char *buf, size_t len)
{
    if (!plain_name(uuid))
        return -1;
    int n = snprintf(buf, len, "%s/%s.%d%s", ledger_dir, uuid, slot, FX_WANT_SUFFIX);
    return n < 0 || (size_t)n >= len ? -1 : 0;
}

int fx_want_slots(const char *ledger_dir, const char *uuid, int64_t now_s, int max_age_s,
                  int *slots, int max)
{
    DIR *d = opendir(ledger_dir);
    if (!d)
        return 0;
    size_t ul = strlen(uuid), sl = strlen(FX_WANT_SUFFIX);
    int found = 0;
    struct dirent *e;
    while (found < max && (e = readdir(d))) {
        size_t n = strlen(e->d_name);
        /* <uuid>.<slot>.want, the slot being 1-3 digits */
        if (n <= ul + 1 + sl || n > ul + 4 + sl || strncmp(e->d_name, uuid, ul) != 0 ||
            e->d_name[ul] != '.' || strcmp(e->d_name + n - sl, FX_WANT_SUFFIX) != 0)
            continue;
        int slot = 0;
        size_t i = ul + 1;
        for (; i < n - sl && e->d_name[i] >= '0' && e->d_name[i] <= '9'; i++)
            slot = slot * 10 + (e->d_name[i] - '0');
        if (i != n - sl || slot >= FX_LEDGER_PROCS)
            continue;
        struct stat st;
        if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode))
            continue;
        if (st.st_mtime <= now_s + 1 && st.st_mtime >= now_s - max_age_s)
            slots[found++] = slot;
    }
    closedir(d);
    return found;
}

int fx_want_pending(const char *ledger_dir, const char *uuid, int64_t now_s, int max_age_s)
{
    int slot;
    return fx_want_slots(ledger_dir, uuid, now_s, max_age_s, &slot, 1);
}

uint64_t fx_want_bytes(const char *ledger_dir, const char *uuid, int slot, uint64_t max)
{
    char path[1024], text[32];
    if (fx_want_path(ledger_dir, uuid, slot, path, sizeof(path)) != 0)
        return 0;
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return 0;
    struct stat st;
    ssize_t n = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) ? read(fd, text, sizeof(text) - 1)
                                                            : -1;
    close(fd);
    if (n <= 0)
        return 0;
    text[n] = '\0';
    uint64_t v = 0;
    int i = 0;
    for (; i < n && text[i] >= '0' && text[i] <= '9'; i++) {
        uint64_t d = (uint64_t)(text[i] - '0');
        if (v > max / 10 || v * 10 > max - d)
            return 0; /* more than max: no figure rather than a wrong one */
        v = v * 10 + d;
    }
    return i > 0 && (i == n || text[i] == '\n') ? v : 0;
}

static int marked(const char *marker)
{
    struct stat st;
    return stat(marker, &st) == 0;
}

/* The want: a file only this tenant can write, named after this process's
 * slot, so processes of one tenant never remove each other's. Its content
 * is for people (the bytes asked); the agent reads its name and age. */
static int want_write(const char *path, uint64_t bytes)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0)
        return -1;
    char text[32];
    int n = snprintf(text, sizeof(text), "%" PRIu64 "\n", bytes);
    ssize_t w = write(fd, text, (size_t)n);
    close(fd);
    return w == n ? 0 : -1;
}

/* 1 when this process may wait for its GPU's borrowers (oom_wait.h), with
 * the GPU's uuid and the path of its mark filled in. */
static int may_wait(const struct fx_slice_config *cfg, const struct fx_ledger_handle *led,
                    char uuid[FX_LEDGER_UUID_MAX], char *marker, size_t marker_len)
{
    if (!cfg->borrowed_dir[0] || cfg->oom_wait_ms <= 0 || !led->led || led->slot < 0 ||
        fx_process_exiting())
        return 0;
    snprintf(uuid, FX_LEDGER_UUID_MAX, "%.*s", FX_LEDGER_UUID_MAX - 1, led->led->uuid);
    return fx_borrowed_marker_path(cfg->borrowed_dir, uuid, marker, marker_len) == 0 &&
           marked(marker);
}

int fx_oom_may_wait(const struct fx_slice_config *cfg, const struct fx_ledger_handle *led)
{
    char uuid[FX_LEDGER_UUID_MAX], marker[FX_STATE_DIR_MAX + FX_LEDGER_UUID_MAX + 2];
    return may_wait(cfg, led, uuid, marker, sizeof(marker));
}

CUresult fx_oom_retry(const struct fx_slice_config *cfg, const struct fx_ledger_handle *led,
                      uint64_t bytes, CUresult r, fx_retry_fn again, const void *args, void *out)
{
    char uuid[FX_LEDGER_UUID_MAX], marker[FX_STATE_DIR_MAX + FX_LEDGER_UUID_MAX + 2];
    if (r != CUDA_ERROR_OUT_OF_MEMORY || !may_wait(cfg, led, uuid, marker, sizeof(marker)))
        return r;
    char ldir[FX_STATE_DIR_MAX + FX_TENANT_NAME_MAX + 16];
    char want[sizeof(ldir) + FX_LEDGER_UUID_MAX + 32];
    if (fx_ledger_dir(cfg, ldir, sizeof(ldir)) != 0 ||
        fx_want_path(ldir, uuid, led->slot, want, sizeof(want)) != 0 ||
        want_write(want, bytes) != 0) {
        FX_WARN(COMP, "cannot ask for borrowed memory back", "gpu=%s bytes=%" PRIu64, uuid,
                bytes);
        return r;
    }
    uint64_t t0 = fx_mono_ns(), bound = (uint64_t)cfg->oom_wait_ms * 1000000ull;
    uint64_t gone = 0; /* when the GPU's mark was first seen gone */
    int tries = 0;
    while (r == CUDA_ERROR_OUT_OF_MEMORY && !fx_process_exiting() &&
           fx_mono_ns() - t0 < bound) {
        /* The borrowers' processes are gone once the mark is: the driver
         * frees their memory as it tears their contexts down, soon after. */
        if (!gone && !marked(marker))
            gone = fx_mono_ns();
        if (gone && fx_mono_ns() - gone > FX_OOM_GONE_GRACE_MS * 1000000ull)
            break;
        struct timespec ts = {0, FX_OOM_RETRY_MS * 1000000L};
        nanosleep(&ts, NULL);
        r = again(args, out);
        /* Still waiting: written again, in case another thread of this
         * process (the same slot, the same want) ended its wait and removed it. */
        if (++tries % (FX_WANT_REFRESH_MS / FX_OOM_RETRY_MS) == 0)
            want_write(want, bytes);
    }
    unlink(want);
    uint64_t waited_ms = (fx_mono_ns() - t0) / 1000000ull;
    if (r == CUDA_SUCCESS)
        FX_INFO(COMP, "borrowed memory given back", "gpu=%s bytes=%" PRIu64 " waited_ms=%" PRIu64
                " tries=%d", uuid, bytes, waited_ms, tries);
    else
        FX_WARN(COMP, "out of device memory after waiting for borrowers", "gpu=%s bytes=%" PRIu64
                " waited_ms=%" PRIu64 " result=%d", uuid, bytes, waited_ms, (int)r);
    return r;
}
