/* SPDX-License-Identifier: Apache-2.0 */
#include "flexpu/log.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/types.h>
#include <wchar.h>
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

/* A line being written: off < cap always, so a NUL fits after it. Every put
 * stops at the end of the line; a cut line is still one bounded line. */
struct line_out {
    char *buf;
    size_t off, cap;
};

/* Appends as much of s[0..n) as fits. */
static void put_raw(struct line_out *o, const char *s, size_t n)
{
    size_t room = o->cap - 1 - o->off;
    if (n > room)
        n = room;
    memcpy(o->buf + o->off, s, n);
    o->off += n;
}

/* Bytes a logfmt reader would take for something other than part of a bare
 * value: the field separator, the quote, '=', the escape, control bytes. */
static int is_special(unsigned char c)
{
    return c <= ' ' || c == '"' || c == '=' || c == '\\' || c == 0x7f;
}

/* The escape of one byte inside a quoted value, as logfmt readers (go-logfmt,
 * and so Loki and Vector) and JSON undo it; 0 when the byte stands as is. */
static size_t escape_of(unsigned char c, char esc[8])
{
    static const char named[] = {'\n', 'n', '\r', 'r', '\t', 't', '"', '"', '\\', '\\'};
    for (size_t i = 0; i < sizeof(named); i += 2) {
        if (c == (unsigned char)named[i]) {
            esc[0] = '\\';
            esc[1] = named[i + 1];
            return 2;
        }
    }
    if (c < 0x20 || c == 0x7f)
        return (size_t)snprintf(esc, 8, "\\u%04x", c);
    return 0;
}

/* Appends s[0..n) as a quoted value. An escape is never split by the end of
 * the line. close_always keeps room for the closing quote (msg, which is
 * always closed); otherwise a value cut by the end of the line stays open, as
 * any cut text does. */
static void put_quoted(struct line_out *o, const char *s, size_t n, int close_always)
{
    size_t end = o->cap - 1 - (close_always ? 1 : 0); /* the body stops before it */
    if (o->off + 1 > end)
        return;
    o->buf[o->off++] = '"';
    size_t i = 0;
    for (; i < n; i++) {
        char esc[8];
        size_t len = escape_of((unsigned char)s[i], esc);
        if (o->off + (len ? len : 1) > end)
            break;
        if (len) {
            memcpy(o->buf + o->off, esc, len);
            o->off += len;
        } else {
            o->buf[o->off++] = s[i];
        }
    }
    if (i == n || close_always)
        put_raw(o, "\"", 1);
}

/* A value: bare when nothing in it could end it early, quoted otherwise or
 * when the format quoted it. */
static void put_value(struct line_out *o, const char *s, size_t n, int quoted)
{
    for (size_t i = 0; i < n && !quoted; i++)
        quoted = is_special((unsigned char)s[i]);
    if (quoted)
        put_quoted(o, s, n, 0);
    else
        put_raw(o, s, n);
}

/* A key: the format's own text, but one formatted from an argument could
 * hold anything, so what would end it becomes '_'. */
static void put_key(struct line_out *o, char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (is_special((unsigned char)s[i]))
            s[i] = '_';
    put_raw(o, s, n);
}

enum arg_size { ARG_INT, ARG_CHAR, ARG_SHORT, ARG_LONG, ARG_LLONG, ARG_MAX, ARG_SIZE, ARG_PTRDIFF,
                ARG_LDOUBLE };

/* Takes the argument of one conversion off ap, by the type -Wformat checked
 * it against at the call site. */
static void skip_arg(va_list *ap, enum arg_size size, char conv)
{
    switch (conv) {
    case 'd': case 'i':
        if (size == ARG_LONG)
            (void)va_arg(*ap, long);
        else if (size == ARG_LLONG)
            (void)va_arg(*ap, long long);
        else if (size == ARG_MAX)
            (void)va_arg(*ap, intmax_t);
        else if (size == ARG_SIZE)
            (void)va_arg(*ap, ssize_t);
        else if (size == ARG_PTRDIFF)
            (void)va_arg(*ap, ptrdiff_t);
        else
            (void)va_arg(*ap, int);
        break;
    case 'o': case 'u': case 'x': case 'X':
        if (size == ARG_LONG)
            (void)va_arg(*ap, unsigned long);
        else if (size == ARG_LLONG)
            (void)va_arg(*ap, unsigned long long);
        else if (size == ARG_MAX)
            (void)va_arg(*ap, uintmax_t);
        else if (size == ARG_SIZE || size == ARG_PTRDIFF)
            (void)va_arg(*ap, size_t);
        else
            (void)va_arg(*ap, unsigned);
        break;
    case 'e': case 'E': case 'f': case 'F': case 'g': case 'G': case 'a': case 'A':
        if (size == ARG_LDOUBLE)
            (void)va_arg(*ap, long double);
        else
            (void)va_arg(*ap, double);
        break;
    case 'c':
        if (size == ARG_LONG)
            (void)va_arg(*ap, wint_t);
        else
            (void)va_arg(*ap, int);
        break;
    case 's':
        if (size == ARG_LONG)
            (void)va_arg(*ap, const wchar_t *);
        else
            (void)va_arg(*ap, const char *);
        break;
    case 'p':
        (void)va_arg(*ap, const void *);
        break;
    default: /* '%' and glibc's 'm' take none */
        break;
    }
}

/* Formats the one conversion at *f (on its '%') into dst, moving *f past it
 * and ap past its arguments. Returns the bytes written (at most room - 1), or
 * -1 for one it does not know (%n, or what -Wformat would have refused):
 * the arguments after it cannot be found then. */
static int put_conv(const char **f, char *dst, size_t room, va_list *ap)
{
    if ((*f)[1] == 's') { /* most of them: copied, not parsed again by vsnprintf */
        const char *arg = va_arg(*ap, const char *);
        size_t n = strlen(arg ? arg : "(null)");
        n = n < room ? n : room - 1;
        memcpy(dst, arg ? arg : "(null)", n);
        *f += 2;
        return (int)n;
    }
    const char *s = *f + 1;
    int stars = 0;
    s += strspn(s, "-+ #0'I");
    if (*s == '*') {
        stars++;
        s++;
    } else {
        s += strspn(s, "0123456789");
    }
    if (*s == '.') {
        s++;
        if (*s == '*') {
            stars++;
            s++;
        } else {
            s += strspn(s, "0123456789");
        }
    }
    static const struct {
        const char *mod;
        enum arg_size size;
    } mods[] = {{"hh", ARG_CHAR}, {"ll", ARG_LLONG}, {"h", ARG_SHORT},   {"l", ARG_LONG},
                {"j", ARG_MAX},   {"z", ARG_SIZE},   {"t", ARG_PTRDIFF}, {"L", ARG_LDOUBLE}};
    enum arg_size size = ARG_INT;
    for (size_t i = 0; i < sizeof(mods) / sizeof(mods[0]); i++) {
        size_t len = strlen(mods[i].mod);
        if (strncmp(s, mods[i].mod, len) == 0) {
            size = mods[i].size;
            s += len;
            break;
        }
    }
    char spec[32];
    size_t len = (size_t)(s + 1 - *f);
    if (!*s || !strchr("diouxXeEfFgGaAcspm%", *s) || len >= sizeof(spec))
        return -1;
    memcpy(spec, *f, len);
    spec[len] = '\0';
    va_list cp;
    va_copy(cp, *ap);
    int n = vsnprintf(dst, room, spec, cp);
    va_end(cp);
    while (stars-- > 0)
        (void)va_arg(*ap, int);
    skip_arg(ap, size, *s);
    *f = s + 1;
    if (n < 0)
        return -1;
    return (size_t)n < room ? n : (int)room - 1;
}

/* Formats the format's text from *f into val (from *n on) until the end of
 * the part: a key ends at '=' or a separator, a value at a separator outside
 * the format's own quotes (which are dropped: put_value quotes again, and
 * *quoted says the format asked for it). Returns -1 when a conversion cannot
 * be followed. */
static int put_part(const char **f, char *val, size_t cap, size_t *n, int is_value, int *quoted,
                    va_list *ap)
{
    int in_quotes = 0;
    while (**f) {
        char c = **f;
        if (c == '%') {
            int w = put_conv(f, val + *n, cap - *n, ap);
            if (w < 0)
                return -1;
            *n += (size_t)w;
            continue;
        }
        if (!in_quotes && (c == ' ' || (unsigned char)c < ' ' || (!is_value && c == '=')))
            break;
        (*f)++;
        if (is_value && c == '"') {
            in_quotes = !in_quotes;
            *quoted = 1;
        } else if (*n + 1 < cap) {
            val[(*n)++] = c;
        }
    }
    return 0;
}

/* Appends the key=value fields of kvfmt: the format gives the keys and the
 * quotes, but every formatted value is quoted and escaped as its bytes need,
 * so no argument can end its field early and forge others. */
static void put_fields(struct line_out *o, const char *f, va_list *ap)
{
    char val[FLEXPU_LOG_LINE_MAX];
    while (f && *f) {
        if (*f == ' ' || (unsigned char)*f < ' ') {
            f++;
            continue;
        }
        put_raw(o, " ", 1);
        size_t n = 0;
        int quoted = 0;
        int rc = put_part(&f, val, sizeof(val), &n, 0, &quoted, ap);
        put_key(o, val, n);
        if (rc < 0)
            return;
        if (*f != '=')
            continue;
        f++;
        put_raw(o, "=", 1);
        n = 0;
        rc = put_part(&f, val, sizeof(val), &n, 1, &quoted, ap);
        put_value(o, val, n, quoted);
        if (rc < 0)
            return;
    }
}

void flexpu_log(enum flexpu_log_level level, const char *comp, const char *msg, const char *kvfmt,
                ...)
{
    if (level < log_state.level || level >= FLEXPU_LOG_OFF)
        return;
    char line[FLEXPU_LOG_LINE_MAX];
    struct line_out o = {line, 0, sizeof(line)};
    if (log_state.timestamps) {
        struct timespec ts;
        struct tm tm;
        char t[48];
        clock_gettime(CLOCK_REALTIME, &ts);
        gmtime_r(&ts.tv_sec, &tm);
        size_t n = strftime(t, sizeof(t), "time=%Y-%m-%dT%H:%M:%S", &tm);
        n += (size_t)snprintf(t + n, sizeof(t) - n, ".%03ldZ ", ts.tv_nsec / 1000000);
        put_raw(&o, t, n);
    }
    put_raw(&o, "level=", 6);
    const char *name = flexpu_log_level_name(level);
    put_raw(&o, name, strlen(name));
    put_raw(&o, " comp=", 6);
    comp = comp ? comp : "-";
    put_value(&o, comp, strlen(comp), 0);
    put_raw(&o, " msg=", 5);
    msg = msg ? msg : "";
    put_quoted(&o, msg, strlen(msg), 1);
    va_list ap;
    va_start(ap, kvfmt);
    put_fields(&o, kvfmt, &ap);
    va_end(ap);
    line[o.off] = '\0';
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
