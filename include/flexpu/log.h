/* SPDX-License-Identifier: Apache-2.0 */
/* One logger for the programs: one line per event, logfmt (key=value). The
 * scheduling engine never logs; the programs that call it do. */
#ifndef FLEXPU_LOG_H
#define FLEXPU_LOG_H

#include "flexpu/error.h"

enum flexpu_log_level {
    FLEXPU_LOG_DEBUG = 0,
    FLEXPU_LOG_INFO = 1,
    FLEXPU_LOG_WARN = 2,
    FLEXPU_LOG_ERROR = 3,
    FLEXPU_LOG_OFF = 4,
};

/* Receives each finished line (without the newline). The default writes it
 * to stderr. */
typedef void (*flexpu_log_sink)(const char *line, void *ctx);

void flexpu_log_set_level(enum flexpu_log_level level);
enum flexpu_log_level flexpu_log_get_level(void);
/* sink NULL restores stderr. */
void flexpu_log_set_sink(flexpu_log_sink sink, void *ctx);
/* When off (the default for tests), lines carry no time= field. */
void flexpu_log_set_timestamps(int on);

/* "debug", "info", "warn"/"warning", "error", "off" (any case). */
int flexpu_log_level_parse(const char *s, enum flexpu_log_level *out, struct flexpu_error *err);

/* A daemon's --log-level option: sets the level, or prints
 * "PROG: --log-level: <why>" on stderr and returns -1. */
int flexpu_log_level_option(const char *prog, const char *value);
const char *flexpu_log_level_name(enum flexpu_log_level level);

/* The longest line, newline not counted; longer ones are cut (an escape is
 * never split). */
#define FLEXPU_LOG_LINE_MAX 2048

/* Logs `time=... level=L comp=COMP msg="MSG" KV`. KV comes from kvfmt, a
 * printf format of space-separated key=value fields; NULL or blank adds
 * none. The format's text gives the keys and the quotes; what its
 * conversions make is data, so a log pipeline reads back exactly the fields
 * the format names, whatever the arguments hold:
 * - a value the format quotes (key="%s", key="%s: %s") is written quoted,
 *   with '"', '\\', \n, \r, \t escaped so and other control bytes as \u00XX,
 *   as go-logfmt (Loki, Vector) and JSON read them;
 * - a bare value (key=%s) stays bare unless it holds a space, '"', '=', '\\'
 *   or a control byte: then it is quoted and escaped the same way;
 * - a key a conversion makes has those bytes replaced by '_'.
 * msg is always quoted and escaped so. %n is not honoured (it and any
 * conversion after it are dropped). */
void flexpu_log(enum flexpu_log_level level, const char *comp, const char *msg, const char *kvfmt,
                ...) __attribute__((format(printf, 4, 5)));

/* The kv format must be a string literal: the macros join " " to it, so
 * anything else (a variable, NULL) does not compile, and -Wformat checks it
 * against the arguments. A line with no fields passes "". */
#define FX_DEBUG(comp, msg, ...) flexpu_log(FLEXPU_LOG_DEBUG, comp, msg, " " __VA_ARGS__)
#define FX_INFO(comp, msg, ...)  flexpu_log(FLEXPU_LOG_INFO, comp, msg, " " __VA_ARGS__)
#define FX_WARN(comp, msg, ...)  flexpu_log(FLEXPU_LOG_WARN, comp, msg, " " __VA_ARGS__)
#define FX_ERROR(comp, msg, ...) flexpu_log(FLEXPU_LOG_ERROR, comp, msg, " " __VA_ARGS__)

#endif
