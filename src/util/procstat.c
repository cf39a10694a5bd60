/* SPDX-License-Identifier: Apache-2.0 */
/* /proc/PID/stat, parsed in one place (see procstat.h). */
#include "util/procstat.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* proc(5)'s numbering of the fields this reader keeps. */
enum {
    F_STATE = 3,
    F_PPID = 4,
    F_PGRP = 5,
    F_UTIME = 14,
    F_STIME = 15,
    F_STARTTIME = 22,
};

/* A field ends at a space, the line's end or the text's end. */
static size_t field_len(const char *p)
{
    return strcspn(p, " \n");
}

static const char *field_name(int field)
{
    switch (field) {
    case F_STATE:
        return "state";
    case F_PPID:
        return "ppid";
    case F_PGRP:
        return "pgrp";
    case F_UTIME:
        return "utime";
    case F_STIME:
        return "stime";
    case F_STARTTIME:
        return "starttime";
    default:
        return "unused";
    }
}

/* Names the field by proc(5)'s number and name: "22 (starttime)". */
static int bad_field(struct flexpu_error *err, int field, const char *p, const char *why)
{
    char name[32];
    snprintf(name, sizeof(name), "%d (%s)", field, field_name(field));
    return flexpu_error_field(err, FLEXPU_EPARSE, name, p ? p : "", p ? field_len(p) : 0, why);
}

/* The decimal field at p, whole, as an unsigned value up to max. */
static int number(const char *p, int field, unsigned long long max, unsigned long long *v,
                  struct flexpu_error *err)
{
    size_t len = field_len(p);
    char *end;
    if (len == 0 || p[0] < '0' || p[0] > '9')
        return bad_field(err, field, p, "not a number");
    errno = 0;
    unsigned long long x = strtoull(p, &end, 10);
    if (errno != 0 || (size_t)(end - p) != len || x > max)
        return bad_field(err, field, p, "not a number in range");
    *v = x;
    return 0;
}

int fx_procstat_parse(const char *text, struct fx_procstat *out, struct flexpu_error *err)
{
    /* The name ends at the last ')': it may hold ')' itself, the numbers after
     * it cannot. */
    const char *p = text ? strrchr(text, ')') : NULL;
    if (!p)
        return flexpu_error_set(err, FLEXPU_EPARSE,
                                "/proc stat: no ')' ending the command's name");
    const char *at[F_STARTTIME + 1] = {0};
    p++;
    for (int field = F_STATE; field <= F_STARTTIME; field++) {
        if (*p != ' ')
            return bad_field(err, field, NULL, "missing");
        p++;
        at[field] = p;
        p += field_len(p);
    }
    if (field_len(at[F_STATE]) != 1)
        return bad_field(err, F_STATE, at[F_STATE], "not one letter");
    unsigned long long ppid, pgrp, utime, stime, start;
    int rc;
    if ((rc = number(at[F_PPID], F_PPID, INT_MAX, &ppid, err)) != 0 ||
        (rc = number(at[F_PGRP], F_PGRP, INT_MAX, &pgrp, err)) != 0 ||
        (rc = number(at[F_UTIME], F_UTIME, ULLONG_MAX, &utime, err)) != 0 ||
        (rc = number(at[F_STIME], F_STIME, ULLONG_MAX, &stime, err)) != 0 ||
        (rc = number(at[F_STARTTIME], F_STARTTIME, ULLONG_MAX, &start, err)) != 0)
        return rc;
    out->state = at[F_STATE][0];
    out->ppid = (int)ppid;
    out->pgrp = (int)pgrp;
    out->utime = utime;
    out->stime = stime;
    out->start_time = start;
    return 0;
}

int fx_procstat_read(pid_t pid, struct fx_procstat *out, struct flexpu_error *err)
{
    /* 52 fields of at most 20 digits and a name of at most 64 bytes: one
     * read of this size holds the whole line. */
    char path[64], buf[2048];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n = -1;
    int saved = errno;
    if (fd >= 0) {
        n = read(fd, buf, sizeof(buf) - 1);
        saved = errno;
        close(fd);
    }
    /* The process may end between open and read: then the read fails (ESRCH). */
    if (n < 0)
        return flexpu_error_set(err, saved == ENOENT || saved == ESRCH ? FLEXPU_ENOENT : FLEXPU_EIO,
                                "%s: %s", path, strerror(saved));
    buf[n] = '\0';
    int rc = fx_procstat_parse(buf, out, err);
    if (rc != 0 && err)
        flexpu_error_prefix(err, "%s", path);
    return rc;
}

bool fx_procstat_ended(const struct fx_procstat *st)
{
    return st->state == 'Z' || st->state == 'X';
}
