/* SPDX-License-Identifier: Apache-2.0 */
/* Borrowers killed for an owner's memory, kept across restarts (reclaimed.h). */
#include "node/reclaimed.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "flexpu/log.h"
#include "node/slices.h"

#define COMP "flexpu-node"
/* The largest file a full set writes: a UID and its newline a line. */
#define FILE_MAX (FX_RECLAIMED_MAX * FX_RECLAIMED_UID_MAX)

bool fx_reclaimed_uid_ok(const char *uid)
{
    size_t n = strlen(uid);
    if (n == 0 || n >= FX_RECLAIMED_UID_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = uid[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              c == '-'))
            return false;
    }
    return true;
}

static int path_of(const char *root, char *buf, size_t len, struct flexpu_error *err)
{
    if (snprintf(buf, len, "%s/%s", root, FX_RECLAIMED_FILE) >= (int)len)
        return flexpu_error_set(err, FLEXPU_EINVAL, "--root '%.200s' is too long", root);
    return 0;
}

/* uid, checked by fx_reclaimed_uid_ok, fits. */
static void put_uid(struct fx_reclaimed *s, const char *uid)
{
    memcpy(s->uid[s->n++], uid, strlen(uid) + 1);
}

bool fx_reclaimed_has(const struct fx_reclaimed *s, const char *uid)
{
    for (int i = 0; i < s->n; i++)
        if (strcmp(s->uid[i], uid) == 0)
            return true;
    return false;
}

/* Reads the whole file into buf (at most FILE_MAX bytes); *len its size. */
static int read_file(const char *path, char *buf, size_t *len, struct flexpu_error *err)
{
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        if (errno == ENOENT)
            return FLEXPU_ENOENT;
        return flexpu_error_set(err, FLEXPU_EIO, "cannot read '%s': %s", path, strerror(errno));
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > FILE_MAX) {
        close(fd);
        return flexpu_error_set(err, FLEXPU_EINVAL, "'%s': not a regular file of at most %d "
                                "bytes (%d marks); no mark taken from it", path, FILE_MAX,
                                FX_RECLAIMED_MAX);
    }
    size_t have = 0;
    ssize_t r;
    while (have < (size_t)FILE_MAX && (r = read(fd, buf + have, FILE_MAX - have)) != 0) {
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int e = errno;
            close(fd);
            return flexpu_error_set(err, FLEXPU_EIO, "cannot read '%s': %s", path, strerror(e));
        }
        have += (size_t)r;
    }
    close(fd);
    *len = have;
    return 0;
}

int fx_reclaimed_load(struct fx_reclaimed *s, const char *root, struct flexpu_error *err)
{
    s->n = 0;
    char path[600];
    char buf[FILE_MAX + 1];
    size_t len = 0;
    int rc = path_of(root, path, sizeof(path), err);
    if (rc == 0)
        rc = read_file(path, buf, &len, err);
    if (rc == FLEXPU_ENOENT)
        return 0;
    if (rc)
        return rc;
    buf[len] = '\0';
    int line = 0, bad = 0;
    char *p = buf;
    while (*p) {
        char *nl = strchr(p, '\n');
        if (nl)
            *nl = '\0';
        line++;
        if (fx_reclaimed_uid_ok(p) && !fx_reclaimed_has(s, p) && s->n < FX_RECLAIMED_MAX)
            put_uid(s, p);
        else if (!bad++)
            flexpu_error_set(err, FLEXPU_EINVAL, "'%s' line %d: invalid value '%.80s': a pod "
                             "UID is 1-63 letters, digits and dashes, once (line skipped)",
                             path, line, p);
        if (!nl)
            break;
        p = nl + 1;
    }
    return bad ? FLEXPU_EINVAL : 0;
}

static int save(const struct fx_reclaimed *s, const char *root, struct flexpu_error *err)
{
    char path[600];
    char text[FILE_MAX + 1];
    size_t len = 0;
    int rc = path_of(root, path, sizeof(path), err);
    if (rc)
        return rc;
    for (int i = 0; i < s->n; i++)
        len += (size_t)snprintf(text + len, sizeof(text) - len, "%s\n", s->uid[i]);
    text[len] = '\0';
    return fx_file_replace(path, text, 0600, err);
}

int fx_reclaimed_add(struct fx_reclaimed *s, const char *root, const char *uid,
                     struct flexpu_error *err)
{
    if (!fx_reclaimed_uid_ok(uid))
        return flexpu_error_field(err, FLEXPU_EINVAL, "pod uid", uid, strlen(uid),
                                  "must be 1-63 letters, digits and dashes");
    if (fx_reclaimed_has(s, uid))
        return 0;
    if (s->n == FX_RECLAIMED_MAX) {
        FX_WARN(COMP, "too many killed borrowers remembered: the oldest is forgotten",
                "pod_uid=%s max=%d", s->uid[0], FX_RECLAIMED_MAX);
        memmove(s->uid[0], s->uid[1], (size_t)(s->n - 1) * sizeof(s->uid[0]));
        s->n--;
    }
    put_uid(s, uid);
    return save(s, root, err);
}

int fx_reclaimed_keep(struct fx_reclaimed *s, const char *root,
                      bool (*keep)(const char *uid, void *ctx), void *ctx,
                      struct flexpu_error *err)
{
    int kept = 0;
    for (int i = 0; i < s->n; i++)
        if (keep(s->uid[i], ctx)) {
            if (kept != i)
                memcpy(s->uid[kept], s->uid[i], sizeof(s->uid[0]));
            kept++;
        }
    if (kept == s->n)
        return 0;
    s->n = kept;
    return save(s, root, err);
}
