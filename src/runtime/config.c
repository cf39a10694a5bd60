/* SPDX-License-Identifier: Apache-2.0 */
#include "runtime/config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "flexpu/quantity.h"

#define CONF_FILE_MAX 65536

void fx_config_defaults(struct fx_slice_config *c)
{
    memset(c, 0, sizeof(*c));
    snprintf(c->tenant, sizeof(c->tenant), "default");
    c->memory_limit = 0;
    c->compute_share = 0;
    c->compute_cap = 100;
    c->priority = FX_PRIO_NORMAL;
    snprintf(c->state_dir, sizeof(c->state_dir), "/tmp/flexpu");
    c->log_level = FLEXPU_LOG_WARN;
    c->context_overhead = (int64_t)512 << 20;
    c->oom_wait_ms = FX_OOM_WAIT_MS_DEFAULT;
}

/* Each setter validates one value; `field` is the name the user wrote (an
 * environment variable or a file key) so the error names it. */
typedef int (*setter_fn)(struct fx_slice_config *c, const char *field, const char *v,
                         struct flexpu_error *err);

static int set_tenant(struct fx_slice_config *c, const char *field, const char *v,
                      struct flexpu_error *err)
{
    size_t n = strlen(v);
    if (n == 0 || n >= sizeof(c->tenant))
        return flexpu_error_field(err, FLEXPU_EINVAL, field, v, n, "must be 1-63 characters");
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)v[i];
        if (!isalnum(ch) && ch != '-' && ch != '_' && ch != '.')
            return flexpu_error_field(err, FLEXPU_EINVAL, field, v, n,
                                      "only letters, digits, '-', '_' and '.' are allowed");
    }
    memcpy(c->tenant, v, n + 1);
    return 0;
}

/* The smallest quota accepted: the scheduler refuses flexpu.io/gpu-memory
 * below 1Mi too, and a quota of a few bytes (FLEXPU_MEMORY_LIMIT=0.0000001
 * rounded up to 1 byte) is a mistake that would fail every allocation. */
#define MEMORY_LIMIT_MIN ((int64_t)1 << 20)

static int set_memory(struct fx_slice_config *c, const char *field, const char *v,
                      struct flexpu_error *err)
{
    int64_t b;
    int rc = flexpu_size_parse_whole(v, field, &b, err);
    if (rc)
        return rc;
    if (b <= 0)
        return flexpu_error_field(err, FLEXPU_EINVAL, field, v, strlen(v),
                                  "must be a positive size such as 4g or 512Mi");
    if (b < MEMORY_LIMIT_MIN)
        return flexpu_error_field(err, FLEXPU_EINVAL, field, v, strlen(v),
                                  "must be at least 1Mi (1048576 bytes); the unit is bytes "
                                  "unless given, as in 4g or 512Mi");
    c->memory_limit = b;
    return 0;
}

static int parse_percent(const char *field, const char *v, int lo, int *out,
                         struct flexpu_error *err)
{
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (end == v || *end != '\0' || errno || x < lo || x > 100) {
        char why[64];
        snprintf(why, sizeof(why), "must be a whole percent from %d to 100", lo);
        return flexpu_error_field(err, FLEXPU_EINVAL, field, v, strlen(v), why);
    }
    *out = (int)x;
    return 0;
}

static int set_share(struct fx_slice_config *c, const char *field, const char *v,
                     struct flexpu_error *err)
{
    return parse_percent(field, v, 0, &c->compute_share, err);
}

static int set_cap(struct fx_slice_config *c, const char *field, const char *v,
                   struct flexpu_error *err)
{
    return parse_percent(field, v, 1, &c->compute_cap, err);
}

static int set_cap_clock(struct fx_slice_config *c, const char *field, const char *v,
                         struct flexpu_error *err)
{
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (end == v || *end != '\0' || errno ||
        (x != 0 && (x < FX_CAP_CLOCK_MIN_MHZ || x > FX_CAP_CLOCK_MAX_MHZ))) {
        char why[96];
        snprintf(why, sizeof(why), "must be a whole number of MHz from %d to %d, or 0 for none",
                 FX_CAP_CLOCK_MIN_MHZ, FX_CAP_CLOCK_MAX_MHZ);
        return flexpu_error_field(err, FLEXPU_EINVAL, field, v, strlen(v), why);
    }
    c->cap_clock_mhz = (int)x;
    return 0;
}

static int set_priority(struct fx_slice_config *c, const char *field, const char *v,
                        struct flexpu_error *err)
{
    return fx_priority_parse(v, field, &c->priority, err);
}

static int set_arbiter_dir(struct fx_slice_config *c, const char *field, const char *v,
                           struct flexpu_error *err)
{
    size_t n = strlen(v);
    if (n == 0 || v[0] != '/' || n >= sizeof(c->arbiter_dir))
        return flexpu_error_field(err, FLEXPU_EINVAL, field, v, n,
                                  "must be an absolute path shorter than 200 bytes");
    memcpy(c->arbiter_dir, v, n + 1);
    return 0;
}

static int set_state_dir(struct fx_slice_config *c, const char *field, const char *v,
                         struct flexpu_error *err)
{
    size_t n = strlen(v);
    if (n == 0 || v[0] != '/' || n >= sizeof(c->state_dir))
        return flexpu_error_field(err, FLEXPU_EINVAL, field, v, n,
                                  "must be an absolute path shorter than 200 bytes");
    memcpy(c->state_dir, v, n + 1);
    return 0;
}

static int set_ledger_dir(struct fx_slice_config *c, const char *field, const char *v,
                          struct flexpu_error *err)
{
    size_t n = strlen(v);
    if (n == 0 || v[0] != '/' || n >= sizeof(c->ledger_dir))
        return flexpu_error_field(err, FLEXPU_EINVAL, field, v, n,
                                  "must be an absolute path shorter than 200 bytes");
    memcpy(c->ledger_dir, v, n + 1);
    return 0;
}

static int set_borrowed_dir(struct fx_slice_config *c, const char *field, const char *v,
                            struct flexpu_error *err)
{
    size_t n = strlen(v);
    if (n == 0 || v[0] != '/' || n >= sizeof(c->borrowed_dir))
        return flexpu_error_field(err, FLEXPU_EINVAL, field, v, n,
                                  "must be an absolute path shorter than 200 bytes");
    memcpy(c->borrowed_dir, v, n + 1);
    return 0;
}

static int set_oom_wait(struct fx_slice_config *c, const char *field, const char *v,
                        struct flexpu_error *err)
{
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (end == v || *end != '\0' || errno || x < 0 || x > FX_OOM_WAIT_MS_MAX) {
        char why[80];
        snprintf(why, sizeof(why), "must be a whole number of milliseconds from 0 to %d",
                 FX_OOM_WAIT_MS_MAX);
        return flexpu_error_field(err, FLEXPU_EINVAL, field, v, strlen(v), why);
    }
    c->oom_wait_ms = (int)x;
    return 0;
}

static int set_log_level(struct fx_slice_config *c, const char *field, const char *v,
                         struct flexpu_error *err)
{
    if (flexpu_log_level_parse(v, &c->log_level, NULL) != 0)
        return flexpu_error_field(err, FLEXPU_EINVAL, field, v, strlen(v),
                                  "must be debug, info, warn, error or off");
    return 0;
}

static int set_overhead(struct fx_slice_config *c, const char *field, const char *v,
                        struct flexpu_error *err)
{
    return flexpu_size_parse(v, field, &c->context_overhead, err);
}

/* One table: the file key, the environment variable, and the setter. */
static const struct option {
    const char *key;
    const char *env;
    setter_fn set;
} options[] = {
    {"tenant", "FLEXPU_TENANT", set_tenant},
    {"arbiter_dir", "FLEXPU_ARBITER_DIR", set_arbiter_dir},
    {"memory_limit", "FLEXPU_MEMORY_LIMIT", set_memory},
    {"compute_share", "FLEXPU_COMPUTE_SHARE", set_share},
    {"compute_cap", "FLEXPU_COMPUTE_CAP", set_cap},
    {"cap_clock_mhz", "FLEXPU_CAP_CLOCK_MHZ", set_cap_clock},
    {"priority", "FLEXPU_PRIORITY", set_priority},
    {"state_dir", "FLEXPU_STATE_DIR", set_state_dir},
    {"ledger_dir", "FLEXPU_LEDGER_DIR", set_ledger_dir},
    {"log_level", "FLEXPU_LOG_LEVEL", set_log_level},
    {"context_overhead", "FLEXPU_CONTEXT_OVERHEAD", set_overhead},
    {"borrowed_dir", "FLEXPU_BORROWED_DIR", set_borrowed_dir},
    {"oom_wait_ms", "FLEXPU_OOM_WAIT_MS", set_oom_wait},
};
#define N_OPTIONS (sizeof(options) / sizeof(options[0]))

/* Checks that hold between options. */
static int validate(const struct fx_slice_config *c, int from_file, struct flexpu_error *err)
{
    if (c->compute_cap < c->compute_share) {
        return flexpu_error_set(err, FLEXPU_EINVAL,
                                "field '%s': invalid value '%d': the cap is below the "
                                "guaranteed share %d",
                                from_file ? "compute_cap" : "FLEXPU_COMPUTE_CAP",
                                c->compute_cap, c->compute_share);
    }
    return 0;
}

int fx_config_from_env(struct fx_slice_config *c, const char *(*get)(const char *name, void *ctx),
                       void *ctx, struct flexpu_error *err)
{
    for (size_t i = 0; i < N_OPTIONS; i++) {
        const char *v = get(options[i].env, ctx);
        if (!v)
            continue;
        int rc = options[i].set(c, options[i].env, v, err);
        if (rc)
            return rc;
    }
    c->from_file = 0;
    return validate(c, 0, err);
}

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    char *e = s + strlen(s);
    while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
        *--e = '\0';
    return s;
}

int fx_config_parse(struct fx_slice_config *c, const char *text, const char *origin,
                    struct flexpu_error *err)
{
    unsigned seen = 0;
    int lineno = 0;
    const char *p = text;
    while (*p) {
        lineno++;
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        char line[512];
        if (len >= sizeof(line))
            return flexpu_error_set(err, FLEXPU_EPARSE, "%s:%d: line longer than %zu bytes",
                                    origin, lineno, sizeof(line) - 1);
        memcpy(line, p, len);
        line[len] = '\0';
        p = nl ? nl + 1 : p + len;

        char *hash = strchr(line, '#');
        if (hash)
            *hash = '\0';
        char *s = trim(line);
        if (*s == '\0')
            continue;
        char *eq = strchr(s, '=');
        if (!eq)
            return flexpu_error_set(err, FLEXPU_EPARSE, "%s:%d: expected 'key = value', got '%.64s'",
                                    origin, lineno, s);
        *eq = '\0';
        char *key = trim(s), *val = trim(eq + 1);
        size_t i = 0;
        while (i < N_OPTIONS && strcmp(options[i].key, key) != 0)
            i++;
        if (i == N_OPTIONS) {
            flexpu_error_field(err, FLEXPU_EPARSE, "key", key, strlen(key), "unknown key");
            flexpu_error_prefix(err, "%s:%d", origin, lineno);
            return FLEXPU_EPARSE;
        }
        if (seen & (1u << i)) {
            flexpu_error_field(err, FLEXPU_EPARSE, "key", key, strlen(key), "appears twice");
            flexpu_error_prefix(err, "%s:%d", origin, lineno);
            return FLEXPU_EPARSE;
        }
        seen |= 1u << i;
        int rc = options[i].set(c, key, val, err);
        if (rc) {
            flexpu_error_prefix(err, "%s:%d", origin, lineno);
            return rc;
        }
    }
    c->from_file = 1;
    int rc = validate(c, 1, err);
    if (rc)
        flexpu_error_prefix(err, "%s", origin);
    return rc;
}

int fx_config_load_file(struct fx_slice_config *c, const char *path, struct flexpu_error *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            return 0;
        return flexpu_error_set(err, FLEXPU_EIO, "%s: cannot open: %s", path, strerror(errno));
    }
    char *buf = malloc(CONF_FILE_MAX + 1);
    if (!buf) {
        close(fd);
        return flexpu_error_set(err, FLEXPU_ENOMEM, "%s: out of memory", path);
    }
    size_t n = 0;
    for (;;) {
        ssize_t r = read(fd, buf + n, CONF_FILE_MAX + 1 - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int e = errno;
            free(buf);
            close(fd);
            return flexpu_error_set(err, FLEXPU_EIO, "%s: cannot read: %s", path, strerror(e));
        }
        if (r == 0)
            break;
        n += (size_t)r;
        if (n > CONF_FILE_MAX) {
            free(buf);
            close(fd);
            return flexpu_error_set(err, FLEXPU_ERANGE, "%s: larger than %d bytes", path,
                                    CONF_FILE_MAX);
        }
    }
    close(fd);
    buf[n] = '\0';
    if (memchr(buf, '\0', n)) {
        free(buf);
        return flexpu_error_set(err, FLEXPU_EPARSE, "%s: contains a NUL byte", path);
    }
    int rc = fx_config_parse(c, buf, path, err);
    free(buf);
    return rc ? rc : 1;
}
