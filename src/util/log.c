/* SPDX-License-Identifier: Apache-2.0 */
#include "flexpu/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* Process-wide by nature: a program has one log. */
static struct {
    enum flexpu_log_level level;
    flexpu_log_sink sink;
    void *ctx;
    int timestamps;
} log_state = {FLEXPU_LOG_INFO, NULL, NULL, 1};

static const char *const level_names[] = {"debug", "info", "warn", "error", "off"};

void flexpu_log_set_level(enum flexpu_log_level level)
{
    log_state.level = level;
}

enum flexpu_log_level flexpu_log_get_level(void)
{
    return log_state.level;
}

void flexpu_log_set_sink(flexpu_log_sink sink, void *ctx)
{
    log_state.sink = sink;
    log_state.ctx = ctx;
}

void flexpu_log_set_timestamps(int on)
{
    log_state.timestamps = on;
}

const char *flexpu_log_level_name(enum flexpu_log_level level)
{
    if ((unsigned)level > FLEXPU_LOG_OFF)
        return "unknown";
    return level_names[level];
}

int flexpu_log_level_parse(const char *s, enum flexpu_log_level *out, struct flexpu_error *err)
{
    for (int i = 0; i <= FLEXPU_LOG_OFF; i++) {
        if (s && strcasecmp(s, level_names[i]) == 0) {
            *out = (enum flexpu_log_level)i;
            return 0;
        }
    }
    if (s && strcasecmp(s, "warning") == 0) {
        *out = FLEXPU_LOG_WARN;
        return 0;
    }
    return flexpu_error_field(err, FLEXPU_EINVAL, "log level", s ? s : "", s ? strlen(s) : 0,
                              "expected debug, info, warn, error or off");
}

/* Appends src to buf, escaping what would break a quoted logfmt value. */
static size_t append_escaped(char *buf, size_t off, size_t cap, const char *src)
{
    for (; *src && off + 3 < cap; src++) {
        unsigned char c = (unsigned char)*src;
        if (c == '"' || c == '\\') {
            buf[off++] = '\\';
            buf[off++] = (char)c;
        } else if (c == '\n') {
            buf[off++] = '\\';
            buf[off++] = 'n';
        } else {
            buf[off++] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
        }
    }
    return off;
}

void flexpu_log(enum flexpu_log_level level, const char *comp, const char *msg, const char *kvfmt,
                ...)
{
    if (level < log_state.level || level >= FLEXPU_LOG_OFF)
        return;
    char line[2048];
    size_t off = 0;
    if (log_state.timestamps) {
        struct timespec ts;
        struct tm tm;
        clock_gettime(CLOCK_REALTIME, &ts);
        gmtime_r(&ts.tv_sec, &tm);
        off += strftime(line, sizeof(line), "time=%Y-%m-%dT%H:%M:%S", &tm);
        off += (size_t)snprintf(line + off, sizeof(line) - off, ".%03ldZ ", ts.tv_nsec / 1000000);
    }
    off += (size_t)snprintf(line + off, sizeof(line) - off, "level=%s comp=%s msg=\"",
                            flexpu_log_level_name(level), comp ? comp : "-");
    /* snprintf returns the untruncated length: keep room for '"' and NUL. */
    if (off > sizeof(line) - 3)
        off = sizeof(line) - 3;
    off = append_escaped(line, off, sizeof(line) - 2, msg ? msg : "");
    line[off++] = '"';
    line[off] = '\0';
    if (kvfmt && *kvfmt && off + 2 < sizeof(line)) {
        line[off++] = ' ';
        va_list ap;
        va_start(ap, kvfmt);
        vsnprintf(line + off, sizeof(line) - off, kvfmt, ap);
        va_end(ap);
        for (char *p = line + off; *p; p++)
            if (*p == '\n' || *p == '\r')
                *p = ' ';
    }
    if (log_state.sink)
        log_state.sink(line, log_state.ctx);
    else
        fprintf(stderr, "%s\n", line);
}

int flexpu_log_level_option(const char *prog, const char *value)
{
    struct flexpu_error err = {0};
    enum flexpu_log_level lvl;
    if (flexpu_log_level_parse(value, &lvl, &err)) {
        fprintf(stderr, "%s: --log-level: %s\n", prog, err.msg);
        return -1;
    }
    flexpu_log_set_level(lvl);
    return 0;
}
