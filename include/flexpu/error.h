/* SPDX-License-Identifier: Apache-2.0 */
/* Error codes shared by every flexpu component, and an error record that names
 * the field and the value that caused it. */
#ifndef FLEXPU_ERROR_H
#define FLEXPU_ERROR_H

#include <stddef.h>

/* One list, expanded into the enum, the names and the messages. */
#define FLEXPU_ERRNO_MAP(X)                                                      \
    X(INVAL, "invalid argument")                                                 \
    X(RANGE, "value out of range")                                               \
    X(NOMEM, "out of memory")                                                    \
    X(NOENT, "no such object")                                                   \
    X(EXIST, "object already exists")                                            \
    X(IO, "input/output error")                                                  \
    X(PARSE, "malformed input")                                                  \
    X(NOFIT, "request does not fit")                                             \
    X(BUSY, "object in use")

enum flexpu_errno {
    FLEXPU_OK = 0,
#define FX_ERR_ENUM(name, msg) FLEXPU_E##name,
    FLEXPU_ERRNO_BASE = -1000,
    FLEXPU_ERRNO_MAP(FX_ERR_ENUM)
#undef FX_ERR_ENUM
    FLEXPU_ERRNO_END
};

/* Short symbolic name ("EINVAL") and message of a code; never NULL. */
const char *flexpu_err_name(int code);
const char *flexpu_strerror(int code);

/* An error record: the code and a human-readable message that names the
 * field and the offending value. Callers own it (usually on the stack). */
struct flexpu_error {
    int code;
    char msg[320];
};

/* Sets err (if not NULL) to code and a printf-formatted message; returns code
 * so callers can write `return fx_fail(err, FLEXPU_EINVAL, ...)`. */
int flexpu_error_set(struct flexpu_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Sets err to "field 'FIELD': invalid value 'VALUE': WHY". VALUE is quoted and
 * cut to a sane length so a hostile input cannot flood the log. */
int flexpu_error_field(struct flexpu_error *err, int code, const char *field, const char *value,
                       size_t value_len, const char *why);

/* Prepends "CONTEXT: " to an existing message (e.g. file and line). */
void flexpu_error_prefix(struct flexpu_error *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif
