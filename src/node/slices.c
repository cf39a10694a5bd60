/* SPDX-License-Identifier: Apache-2.0 */
/* Per-container slice directories on the host (see slices.h). */
#include "node/slices.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/sha.h>

#include "flexpu/log.h"
#include "kube/contract.h"
#include "node/plugin.h"
#include "runtime/config.h"

#define COMP "slices"

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

void fx_slice_set_shares(struct fx_slice_file *f, const struct fx_allocation *al)
{
    f->compute_share = 100;
    f->memory = 0;
    for (int g = 0; g < al->ngpu; g++) {
        if (al->gpus[g].cores < f->compute_share)
            f->compute_share = al->gpus[g].cores;
        if (al->gpus[g].mem > f->memory)
            f->memory = al->gpus[g].mem;
    }
}

void fx_slice_set_cap(struct fx_slice_file *f, int cores_limit)
{
    if (cores_limit < 1 || cores_limit > 100)
        cores_limit = 100;
    f->compute_cap = cores_limit > f->compute_share ? cores_limit : f->compute_share;
}

int fx_slice_key(char *const *ids, size_t n, char out[FX_SLICE_KEY_LEN + 1])
{
    /* SHA-256 of the sorted IDs, one per line. */
    char **sorted = malloc((n ? n : 1) * sizeof(*sorted));
    size_t len = 0;
    for (size_t i = 0; i < n; i++)
        len += strlen(ids[i]) + 1;
    char *text = malloc(len + 1);
    unsigned char md[SHA256_DIGEST_LENGTH];
    int rc = sorted && text ? 0 : -1;
    if (rc == 0) {
        memcpy(sorted, ids, n * sizeof(*sorted));
        qsort(sorted, n, sizeof(*sorted), cmp_str);
        size_t o = 0;
        for (size_t i = 0; i < n; i++) {
            size_t l = strlen(sorted[i]);
            memcpy(text + o, sorted[i], l);
            text[o + l] = '\n';
            o += l + 1;
        }
        SHA256((const unsigned char *)text, o, md);
    }
    free(sorted);
    free(text);
    for (int i = 0; rc == 0 && i < FX_SLICE_KEY_LEN / 2; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
    return rc;
}

int fx_cap_clock_flag_parse(const char *v, int *mhz, struct flexpu_error *err)
{
    if (strcmp(v, "off") == 0) {
        *mhz = 0;
        return 0;
    }
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (end == v || *end != '\0' || errno || x < FX_CAP_CLOCK_MIN_MHZ ||
        x > FX_CAP_CLOCK_MAX_MHZ)
        return flexpu_error_set(err, FLEXPU_EINVAL,
                                "--cap-clock-mhz: invalid value '%.64s': want off or the SM "
                                "clock of the fully loaded GPU in MHz, %d to %d",
                                v, FX_CAP_CLOCK_MIN_MHZ, FX_CAP_CLOCK_MAX_MHZ);
    *mhz = (int)x;
    return 0;
}

int fx_slice_dir(const char *root, const char *key, char *buf, size_t len)
{
    return snprintf(buf, len, "%s/slices/%s", root, key) >= (int)len ? -1 : 0;
}

int fx_slice_ledger_dir(const char *root, const char *key, char *buf, size_t len)
{
    return snprintf(buf, len, "%s/ledger/%s", root, key) >= (int)len ? -1 : 0;
}

/* dir/name replaced whole (fx_file_replace): the runtime never reads a half
 * written slice file. */
static int write_file(const char *dir, const char *name, const char *text,
                      struct flexpu_error *err)
{
    char path[512];
    if (snprintf(path, sizeof(path), "%s/%s", dir, name) >= (int)sizeof(path))
        return flexpu_error_set(err, FLEXPU_EINVAL, "path under '%s' is too long", dir);
    return fx_file_replace(path, text, 0644, err);
}

/* The GPUs behind a set of device IDs "<uuid>::<k>": distinct UUIDs. */
static size_t count_gpus(char *const *ids, size_t n)
{
    size_t gpus = 0;
    for (size_t i = 0; i < n; i++) {
        size_t li = strcspn(ids[i], ":");
        int seen = 0;
        for (size_t j = 0; j < i && !seen; j++)
            seen = strcspn(ids[j], ":") == li && !strncmp(ids[i], ids[j], li);
        gpus += !seen;
    }
    return gpus;
}

/* <root>/ledger/<key>/ (path `ledger`) with `mode`, bounded so that its
 * tenant cannot fill the host's filesystem through it. A directory left
 * with files by an agent that did not limit it (an upgrade) stays as it
 * is: mounting over it would hide its tenant's ledgers from the tenant. */
static int make_ledger(const char *root, const char *key, const char *ledger, size_t ngpu,
                       enum fx_dir_limits limits, mode_t mode, struct flexpu_error *err)
{
    char ledgers[400];
    snprintf(ledgers, sizeof(ledgers), "%s/ledger", root);
    if ((mkdir(ledgers, 0755) != 0 && errno != EEXIST) ||
        (mkdir(ledger, mode) != 0 && errno != EEXIST) || chmod(ledger, mode) != 0)
        return flexpu_error_set(err, FLEXPU_EIO, "cannot create '%s': %s", ledger,
                                strerror(errno));
    struct flexpu_error lim = {0};
    if (fx_dir_limit(ledger, limits, fx_dir_ledger_bytes(ngpu), FX_DIR_LEDGER_INODES, mode,
                     &lim) != 0) {
        if (lim.code != FLEXPU_EBUSY)
            return flexpu_error_set(err, lim.code, "%s", lim.msg);
        FX_WARN(COMP, "ledger directory left without a size limit", "key=%s reason=\"%s\"",
                key, lim.msg);
    }
    return 0;
}

static int make_dir(const char *root, const char *dir, struct flexpu_error *err)
{
    char slices[400];
    snprintf(slices, sizeof(slices), "%s/slices", root);
    if ((mkdir(root, 0755) != 0 && errno != EEXIST) ||
        (mkdir(slices, 0755) != 0 && errno != EEXIST) || (mkdir(dir, 0755) != 0 && errno != EEXIST))
        return flexpu_error_set(err, FLEXPU_EIO, "cannot create '%s': %s", dir, strerror(errno));
    return 0;
}

int fx_slice_prepare(const char *root, const char *key, char *const *ids, size_t n,
                     enum fx_dir_limits limits, struct flexpu_error *err)
{
    char dir[400], ledger[400];
    if (fx_slice_dir(root, key, dir, sizeof(dir)) != 0 ||
        fx_slice_ledger_dir(root, key, ledger, sizeof(ledger)) != 0)
        return flexpu_error_set(err, FLEXPU_EINVAL, "root '%s' is too long", root);
    /* The slice's processes run as any user: its own ledger directory is
     * theirs to write (and no other slice's container has it mounted). */
    int rc = make_dir(root, dir, err);
    if (rc == 0)
        rc = make_ledger(root, key, ledger, count_gpus(ids, n), limits, 0777, err);
    if (rc != 0)
        return rc;
    size_t cap = 64;
    for (size_t i = 0; i < n; i++)
        cap += strlen(ids[i]) + 1;
    char *text = malloc(cap);
    if (!text)
        return flexpu_error_set(err, FLEXPU_ENOMEM, "out of memory");
    size_t o = 0;
    for (size_t i = 0; i < n; i++)
        o += (size_t)snprintf(text + o, cap - o, "%s\n", ids[i]);
    rc = write_file(dir, "devices", text, err);
    free(text);
    if (rc != 0)
        return rc;
    /* An unknown key: the runtime refuses to start CUDA rather than run the
     * container without its limits (docs/RUNTIME.md, fail closed). */
    char pending[256];
    snprintf(pending, sizeof(pending),
             "# flexpu-node: allocation %s waits for PreStartContainer to name its pod;\n"
             "# until then this file is invalid on purpose, so the runtime fails closed.\n"
             "pending = %s\n",
             key, key);
    char path[512];
    snprintf(path, sizeof(path), "%s/slice.conf", dir);
    if (access(path, F_OK) == 0)
        return 0; /* already named (the kubelet allocated the same IDs again) */
    return write_file(dir, "slice.conf", pending, err);
}

int fx_slice_format(const struct fx_slice_file *f, char *buf, size_t len)
{
    int n = snprintf(buf, len,
                     "# Written by flexpu-node for pod %s; read-only in the container.\n"
                     "tenant = %s\n"
                     "compute_share = %d\n"
                     "compute_cap = %d\n"
                     "priority = %s\n"
                     "ledger_dir = %s\n"
                     "arbiter_dir = %s\n",
                     f->tenant, f->tenant, f->compute_share, f->compute_cap,
                     fx_priority_name(f->priority), f->ledger_dir ? f->ledger_dir : FX_CTR_LEDGER,
                     f->arbiter_dir ? f->arbiter_dir : FX_CTR_ARB);
    if (n < 0 || (size_t)n >= len)
        return -1;
    if (f->memory > 0) {
        int m = snprintf(buf + n, len - (size_t)n, "memory_limit = %lld\n",
                         (long long)f->memory);
        if (m < 0 || (size_t)(n + m) >= len)
            return -1;
        n += m;
    }
    /* Only a cap is charged at the clock: an uncapped slice's line would
     * say something that is not applied. */
    if (f->cap_clock_mhz > 0 && f->compute_cap < 100) {
        int m = snprintf(buf + n, len - (size_t)n, "cap_clock_mhz = %d\n", f->cap_clock_mhz);
        if (m < 0 || (size_t)(n + m) >= len)
            return -1;
        n += m;
    }
    if (!f->borrower) {
        int m = snprintf(buf + n, len - (size_t)n, "borrowed_dir = %s\n",
                         f->borrowed_dir ? f->borrowed_dir : FX_CTR_BORROWED);
        if (m < 0 || (size_t)(n + m) >= len)
            return -1;
    }
    return 0;
}

int fx_slice_prepare_server(const char *root, const char *key, const struct fx_slice_file *f,
                            enum fx_dir_limits limits, bool own, uid_t uid, gid_t gid,
                            struct flexpu_error *err)
{
    char dir[400], ledger[400];
    /* The container's paths mean nothing on the host: an owner that named
     * none of the marks would never wait for its borrowers' memory. */
    if (!f->ledger_dir || !f->arbiter_dir || (!f->borrower && !f->borrowed_dir))
        return flexpu_error_set(err, FLEXPU_EINVAL, "slice %s: a server's slice names its "
                                "host directories", key);
    if (fx_slice_dir(root, key, dir, sizeof(dir)) != 0 ||
        fx_slice_ledger_dir(root, key, ledger, sizeof(ledger)) != 0)
        return flexpu_error_set(err, FLEXPU_EINVAL, "root '%s' is too long", root);
    /* One user writes it: the server's (no other slice's processes, which
     * run as any user, can). The policy is the agent's, read-only to it. */
    int rc = make_dir(root, dir, err);
    if (rc == 0)
        rc = make_ledger(root, key, ledger, 1, limits, 0700, err);
    if (rc != 0)
        return rc;
    if (own && chown(ledger, uid, gid) != 0)
        return flexpu_error_set(err, FLEXPU_EIO, "cannot give '%s' to %u:%u: %s", ledger,
                                (unsigned)uid, (unsigned)gid, strerror(errno));
    return fx_slice_write(root, key, f, err);
}

int fx_slice_write(const char *root, const char *key, const struct fx_slice_file *f,
                   struct flexpu_error *err)
{
    char dir[400], text[2048];
    if (fx_slice_dir(root, key, dir, sizeof(dir)) != 0 ||
        fx_slice_format(f, text, sizeof(text)) != 0)
        return flexpu_error_set(err, FLEXPU_EINVAL, "slice %s: path or values too long", key);
    return write_file(dir, "slice.conf", text, err);
}

/* Empties the directory open at `fd` without following symbolic links, to
 * `depth` levels (the ledger directory is the tenant's to write: it may hold
 * anything). */
void fx_dir_clear(int fd, int depth)
{
    DIR *d = fdopendir(fd);
    if (!d) {
        close(fd);
        return;
    }
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        if (unlinkat(dirfd(d), e->d_name, 0) == 0 || errno != EISDIR)
            continue;
        int sub = openat(dirfd(d), e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (sub >= 0 && depth > 0)
            fx_dir_clear(sub, depth - 1);
        else if (sub >= 0)
            close(sub);
        unlinkat(dirfd(d), e->d_name, AT_REMOVEDIR);
    }
    closedir(d);
}

static void remove_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd >= 0)
        fx_dir_clear(fd, 16);
    rmdir(dir);
}

/* Everything in the slice's directory is the agent's: its two files and
 * any temporary file a crash left between create and rename. The ledger
 * directory goes with it, whatever its tenant left there. */
void fx_slice_remove(const char *root, const char *key)
{
    char dir[400];
    if (fx_slice_dir(root, key, dir, sizeof(dir)) == 0)
        remove_dir(dir);
    if (fx_slice_ledger_dir(root, key, dir, sizeof(dir)) == 0) {
        /* Emptied first: a container that still has the tmpfs (it is
         * detached lazily) keeps none of the memory it used. */
        int fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd >= 0)
            fx_dir_clear(fd, 16);
        fx_dir_unlimit(dir);
        rmdir(dir);
    }
}

void fx_slice_scan(const char *root, void (*fn)(const char *key, const char *tenant, void *ctx),
                   void *ctx)
{
    char slices[400];
    snprintf(slices, sizeof(slices), "%s/slices", root);
    DIR *d = opendir(slices);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.' || strlen(e->d_name) != FX_SLICE_KEY_LEN)
            continue;
        char path[700], line[256], tenant[64] = "";
        snprintf(path, sizeof(path), "%s/%s/slice.conf", slices, e->d_name);
        FILE *f = fopen(path, "r");
        while (f && fgets(line, sizeof(line), f))
            if (sscanf(line, "tenant = %63s", tenant) == 1)
                break;
        if (f)
            fclose(f);
        fn(e->d_name, tenant, ctx);
    }
    closedir(d);
}

/* Writes all of text to fd; -1 on error. */
static int write_all(int fd, const char *text, size_t len)
{
    while (len > 0) {
        ssize_t w = write(fd, text, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        text += w;
        len -= (size_t)w;
    }
    return 0;
}

int fx_file_replace(const char *path, const char *text, mode_t mode, struct flexpu_error *err)
{
    /* The temporary file must be in the same directory: rename() is atomic
     * only within one file system. A unique name, so a second agent (a
     * DaemonSet rolling update) or a leftover never collides. */
    const char *slash = strrchr(path, '/');
    int dirlen = slash ? (int)(slash - path) : 0;
    const char *base = slash ? slash + 1 : path;
    char tmp[700], dir[700];
    if (!slash)
        snprintf(dir, sizeof(dir), ".");
    else if (dirlen == 0)
        snprintf(dir, sizeof(dir), "/");
    else if (snprintf(dir, sizeof(dir), "%.*s", dirlen, path) >= (int)sizeof(dir))
        return flexpu_error_set(err, FLEXPU_EINVAL, "path '%.200s' is too long", path);
    if (snprintf(tmp, sizeof(tmp), "%s/.%s.XXXXXX", dir, base) >= (int)sizeof(tmp))
        return flexpu_error_set(err, FLEXPU_EINVAL, "path '%.200s' is too long", path);
    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0)
        return flexpu_error_set(err, FLEXPU_EIO, "cannot create '%s': %s", tmp, strerror(errno));
    /* mkostemp makes the file 0600; readers in containers run as any user. */
    int bad = write_all(fd, text, strlen(text)) != 0 || fchmod(fd, mode) != 0 || fsync(fd) != 0;
    int e = errno;
    if (close(fd) != 0 && !bad) {
        bad = 1;
        e = errno;
    }
    if (bad || rename(tmp, path) != 0) {
        if (!bad)
            e = errno;
        unlink(tmp);
        return flexpu_error_set(err, FLEXPU_EIO, "cannot write '%s': %s", path, strerror(e));
    }
    /* The rename itself reaches the disk with the directory: without this a
     * crash could bring back the old file (or none) after the agent went
     * on. The file is in place either way, so a failure here is not one. */
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        (void)fsync(dfd);
        close(dfd);
    }
    return 0;
}

int fx_preload_install(const char *root, struct flexpu_error *err)
{
    char path[600];
    if (snprintf(path, sizeof(path), "%s/ld.so.preload", root) >= (int)sizeof(path))
        return flexpu_error_set(err, FLEXPU_EINVAL, "--root '%.200s' is too long", root);
    /* Never truncated in place: a process started in that window would run
     * without the library, unlimited (and containers bind-mount this very
     * file, so they would see it emptied too). */
    return fx_file_replace(path, FX_CTR_LIB "\n", 0644, err);
}
