/* SPDX-License-Identifier: Apache-2.0 */
#include "flexpu/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define VALUE_SHOWN_MAX 64

const char *flexpu_err_name(int code)
{
    switch (code) {
    case FLEXPU_OK:
        return "OK";
#define FX_ERR_NAME(name, msg)                                                                     \
    case FLEXPU_E##name:                                                                           \
        return "E" #name;
        FLEXPU_ERRNO_MAP(FX_ERR_NAME)
#undef FX_ERR_NAME
    default:
        return "EUNKNOWN";
    }
}

const char *flexpu_strerror(int code)
{
    switch (code) {
    case FLEXPU_OK:
        return "success";
#define FX_ERR_MSG(name, msg)                                                                      \
    case FLEXPU_E##name:                                                                           \
        return msg;
        FLEXPU_ERRNO_MAP(FX_ERR_MSG)
#undef FX_ERR_MSG
    default:
        return "unknown error";
    }
}

int flexpu_error_set(struct flexpu_error *err, int code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        err->code = code;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
        va_end(ap);
    }
    return code;
}

/* Copies at most VALUE_SHOWN_MAX bytes of value, replacing control bytes so
 * the message stays one printable line. */
static void quote_value(char *dst, size_t dstlen, const char *value, size_t len)
{
    size_t n = len < VALUE_SHOWN_MAX ? len : VALUE_SHOWN_MAX;
    size_t o = 0;
    for (size_t i = 0; i < n && o + 1 < dstlen; i++) {
        unsigned char c = (unsigned char)value[i];
        dst[o++] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
    }
    if (len > n && o + 4 < dstlen) {
        memcpy(dst + o, "...", 3);
        o += 3;
    }
    dst[o] = '\0';
}

int flexpu_error_field(struct flexpu_error *err, int code, const char *field, const char *value,
                       size_t value_len, const char *why)
{
    char shown[VALUE_SHOWN_MAX + 8];
    quote_value(shown, sizeof(shown), value ? value : "", value ? value_len : 0);
    return flexpu_error_set(err, code, "field '%s': invalid value '%s': %s", field, shown, why);
}

void flexpu_error_prefix(struct flexpu_error *err, const char *fmt, ...)
{
    if (!err)
        return;
    char head[160];
    char tail[sizeof(err->msg)];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(head, sizeof(head), fmt, ap);
    va_end(ap);
    memcpy(tail, err->msg, sizeof(tail));
    /* Truncation is fine: the head names the place, the tail is cut. */
    size_t h = strlen(head);
    if (h + 2 >= sizeof(err->msg))
        h = sizeof(err->msg) - 3;
    memcpy(err->msg, head, h);
    memcpy(err->msg + h, ": ", 2);
    size_t room = sizeof(err->msg) - h - 3;
    size_t t = strnlen(tail, room);
    memcpy(err->msg + h + 2, tail, t);
    err->msg[h + 2 + t] = '\0';
}
