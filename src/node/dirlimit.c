/* SPDX-License-Identifier: Apache-2.0 */
/* Size-limited tenant directories (see dirlimit.h). */
#include "node/dirlimit.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include "runtime/ledger.h"
#include "runtime/state.h"

#ifndef TMPFS_MAGIC
#define TMPFS_MAGIC 0x01021994
#endif

int fx_dir_limits_parse(const char *s, enum fx_dir_limits *out)
{
    static const char *const names[] = {"off", "shared", "local"};
    for (int i = 0; i < 3; i++)
        if (!strcmp(s, names[i])) {
            *out = (enum fx_dir_limits)i;
            return 0;
        }
    return -1;
}

/* A ledger file per GPU, rounded to pages, twice over (a process creating
 * one writes a temporary copy before linking it), and room for the few
 * processes of a container that start at once: 1 MiB besides. tmpfs takes
 * memory only for what is written. */
uint64_t fx_dir_ledger_bytes(size_t ngpu)
{
    /* Per GPU a ledger and a request file to the agent's arbiter (state.h),
     * each twice: a file is made whole beside its name, then linked. */
    uint64_t file = ((uint64_t)sizeof(struct fx_ledger) + 4095) & ~(uint64_t)4095;
    uint64_t req = ((uint64_t)sizeof(struct fx_arb_req) + 4095) & ~(uint64_t)4095;
    return (1ull << 20) + 2 * (uint64_t)ngpu * (file + req);
}

/* Undoes mountinfo's octal escapes (\040 for a space) in place. */
static void unescape(char *s)
{
    char *o = s;
    for (char *i = s; *i; i++) {
        if (i[0] == '\\' && i[1] >= '0' && i[1] <= '3' && i[2] >= '0' && i[2] <= '7' &&
            i[3] >= '0' && i[3] <= '7') {
            *o++ = (char)((i[1] - '0') * 64 + (i[2] - '0') * 8 + (i[3] - '0'));
            i += 3;
        } else {
            *o++ = *i;
        }
    }
    *o = 0;
}

int fx_mountinfo_each(void (*fn)(const char *mnt, const char *optional, void *ctx), void *ctx)
{
    FILE *f = fopen("/proc/self/mountinfo", "re");
    if (!f)
        return -1;
    char line[4096];
    while (fgets(line, sizeof(line), f)) {
        /* id parent major:minor root mount-point options optional... - ... */
        char *save = NULL, *tok = strtok_r(line, " \n", &save);
        char *mnt = NULL, opt[1024] = "";
        for (int field = 0; tok; field++, tok = strtok_r(NULL, " \n", &save)) {
            if (field == 4)
                mnt = tok;
            else if (field >= 6 && !strcmp(tok, "-"))
                break;
            else if (field >= 6 && strlen(opt) + strlen(tok) + 2 < sizeof(opt)) {
                strcat(opt, opt[0] ? " " : "");
                strcat(opt, tok);
            }
        }
        if (!mnt)
            continue;
        unescape(mnt);
        fn(mnt, opt, ctx);
    }
    fclose(f);
    return 0;
}

/* Whether `mnt` is `path` or one of its parent directories. */
static int covers(const char *mnt, const char *path)
{
    size_t n = strlen(mnt);
    if (n == 1 && mnt[0] == '/')
        return 1;
    return !strncmp(mnt, path, n) && (path[n] == 0 || path[n] == '/');
}

struct holder {
    const char *path;
    char best[PATH_MAX], opt[1024];
    size_t len;
};

static void find_holder(const char *mnt, const char *optional, void *ctx)
{
    struct holder *h = ctx;
    size_t n = strlen(mnt);
    if (covers(mnt, h->path) && n >= h->len && n < sizeof(h->best)) {
        h->len = n;
        memcpy(h->best, mnt, n + 1);
        snprintf(h->opt, sizeof(h->opt), "%s", optional);
    }
}

int fx_dir_limits_check(const char *root, enum fx_dir_limits m, struct flexpu_error *err)
{
    if (m != FX_DIR_LIMITS_SHARED)
        return 0;
    char real[PATH_MAX];
    if (!realpath(root, real))
        return flexpu_error_set(err, FLEXPU_EIO, "--root '%s': %s", root, strerror(errno));
    /* The last mount listed whose mount point is the longest prefix of the
     * root is the one the root is on (later mounts hide earlier ones). */
    struct holder h = {.path = real};
    if (fx_mountinfo_each(find_holder, &h) != 0)
        return flexpu_error_set(err, FLEXPU_EIO, "/proc/self/mountinfo: %s", strerror(errno));
    if (!h.len)
        return flexpu_error_set(err, FLEXPU_EIO, "--root '%s': no mount holds it in "
                                "/proc/self/mountinfo", root);
    if (strstr(h.opt, "shared:"))
        return 0;
    /* The fix first: a long path must not cut it off the message. */
    return flexpu_error_set(err, FLEXPU_EINVAL,
                            "--size-limits=shared: mount '%s' (holding --root) is %s, not shared "
                            "with the host, so the kubelet would not see flexpu's tmpfs mounts; "
                            "give the volume mountPropagation: Bidirectional, or use "
                            "--size-limits=local on the host or off",
                            h.best, h.opt[0] ? h.opt : "private");
}

int fx_dir_is_tmpfs_root(const char *dir)
{
    struct statfs fs;
    struct stat here, up;
    char parent[PATH_MAX + 4];
    if (snprintf(parent, sizeof(parent), "%s/..", dir) >= (int)sizeof(parent) ||
        statfs(dir, &fs) != 0 || lstat(dir, &here) != 0 || stat(parent, &up) != 0)
        return -1;
    return fs.f_type == TMPFS_MAGIC && here.st_dev != up.st_dev;
}

/* Whether the directory holds anything (1), nothing (0), or cannot be read. */
static int has_entries(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    struct dirent *e;
    int any = 0;
    while (!any && (e = readdir(d)))
        any = strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
    closedir(d);
    return any;
}

int fx_dir_limit(const char *dir, enum fx_dir_limits m, uint64_t bytes, unsigned inodes,
                 mode_t mode, struct flexpu_error *err)
{
    if (m == FX_DIR_LIMITS_OFF)
        return 0;
    int t = fx_dir_is_tmpfs_root(dir);
    if (t < 0)
        return flexpu_error_set(err, FLEXPU_EIO, "'%s': %s", dir, strerror(errno));
    if (t == 1)
        return 0;
    int full = has_entries(dir);
    if (full != 0)
        return flexpu_error_set(err, FLEXPU_EBUSY,
                                "cannot limit the size of '%s': %s; a tmpfs mounted over it "
                                "would hide it from the containers that use it",
                                dir, full < 0 ? strerror(errno) : "it is not empty");
    char opts[128];
    snprintf(opts, sizeof(opts), "size=%llu,nr_inodes=%u,mode=%04o", (unsigned long long)bytes,
             inodes, (unsigned)mode & 07777);
    if (mount("flexpu", dir, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, opts) != 0) {
        int e = errno;
        return flexpu_error_set(err, FLEXPU_EIO,
                                "cannot mount a size-limited tmpfs on '%s': %s%s", dir,
                                strerror(e),
                                e == EPERM ? " (it needs CAP_SYS_ADMIN: a privileged "
                                             "container, or root on the host; "
                                             "--size-limits=off leaves the directory unlimited)"
                                           : "");
    }
    return 0;
}

void fx_dir_unlimit(const char *dir)
{
    if (fx_dir_is_tmpfs_root(dir) == 1)
        (void)umount2(dir, MNT_DETACH | UMOUNT_NOFOLLOW);
}
