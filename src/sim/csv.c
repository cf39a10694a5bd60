/* SPDX-License-Identifier: Apache-2.0 */
#include "sim/csv.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "util/alloc.h"

/* Splits one physical line held in c->buf into fields in place, handling
 * "quoted, fields" and doubled quotes. Returns 0 or -1 on a bad quote. */
static int split(struct fx_csv *c, char *s, char **fields, int *n, struct flexpu_error *err)
{
    int k = 0;
    char *w = s;
    for (;;) {
        if (k == FX_CSV_MAX_FIELDS)
            return flexpu_error_set(err, FLEXPU_EPARSE, "%s:%ld: more than %d fields", c->path,
                                    c->line, FX_CSV_MAX_FIELDS);
        fields[k++] = w;
        if (*s == '"') {
            s++;
            for (;;) {
                if (*s == '\0')
                    return flexpu_error_set(err, FLEXPU_EPARSE,
                                            "%s:%ld: field %d: unterminated quote", c->path,
                                            c->line, k);
                if (*s == '"' && s[1] == '"') {
                    *w++ = '"';
                    s += 2;
                } else if (*s == '"') {
                    s++;
                    break;
                } else {
                    *w++ = *s++;
                }
            }
            if (*s != ',' && *s != '\0')
                return flexpu_error_set(err, FLEXPU_EPARSE,
                                        "%s:%ld: field %d: text after closing quote", c->path,
                                        c->line, k);
        } else {
            while (*s && *s != ',') {
                if (*s == '"')
                    return flexpu_error_set(err, FLEXPU_EPARSE,
                                            "%s:%ld: field %d: quote inside unquoted field",
                                            c->path, c->line, k);
                *w++ = *s++;
            }
        }
        if (*s == '\0') {
            *w = '\0';
            break;
        }
        *w++ = '\0';
        s++;
    }
    *n = k;
    return 0;
}

/* Reads one line into c->buf without the line end; 1, 0 at EOF, <0. */
static int read_line(struct fx_csv *c, struct flexpu_error *err)
{
    size_t len = 0;
    int ch;
    while ((ch = getc(c->f)) != EOF && ch != '\n') {
        if (ch == '\0')
            return flexpu_error_set(err, FLEXPU_EPARSE, "%s:%ld: NUL byte in text", c->path,
                                    c->line + 1);
        if (len + 2 > c->cap) {
            size_t cap = c->cap ? c->cap * 2 : 256;
            if (cap > (1u << 20))
                return flexpu_error_set(err, FLEXPU_EPARSE, "%s:%ld: line longer than 1 MiB",
                                        c->path, c->line + 1);
            char *b = fx_realloc(c->buf, cap);
            if (!b)
                return flexpu_error_set(err, FLEXPU_ENOMEM, "out of memory reading %s",
                                        c->path);
            c->buf = b;
            c->cap = cap;
        }
        c->buf[len++] = (char)ch;
    }
    if (ferror(c->f))
        return flexpu_error_set(err, FLEXPU_EIO, "%s: read error: %s", c->path,
                                strerror(errno));
    if (ch == EOF && len == 0)
        return 0;
    if (len && c->buf[len - 1] == '\r')
        len--;
    if (!c->buf) {
        c->buf = fx_malloc(16);
        if (!c->buf)
            return flexpu_error_set(err, FLEXPU_ENOMEM, "out of memory reading %s", c->path);
        c->cap = 16;
    }
    c->buf[len] = '\0';
    c->line++;
    return 1;
}

int fx_csv_open(struct fx_csv *c, const char *path, FILE *f, struct flexpu_error *err)
{
    memset(c, 0, sizeof(*c));
    c->path = path;
    c->f = f ? f : fopen(path, "r");
    if (!c->f)
        return flexpu_error_set(err, FLEXPU_EIO, "%s: cannot open: %s", path, strerror(errno));
    int rc = read_line(c, err);
    if (rc == 0)
        rc = flexpu_error_set(err, FLEXPU_EPARSE, "%s: empty file, expected a header line",
                              path);
    if (rc < 0)
        goto fail;
    c->header_buf = fx_strdup(c->buf);
    if (!c->header_buf) {
        rc = flexpu_error_set(err, FLEXPU_ENOMEM, "out of memory reading %s", path);
        goto fail;
    }
    if ((rc = split(c, c->header_buf, c->header, &c->nheader, err)) < 0)
        goto fail;
    return 0;
fail:
    fx_csv_close(c);
    return rc;
}

int fx_csv_next(struct fx_csv *c, struct flexpu_error *err)
{
    int rc = read_line(c, err);
    if (rc <= 0)
        return rc;
    if (c->buf[0] == '\0')
        return flexpu_error_set(err, FLEXPU_EPARSE, "%s:%ld: empty line", c->path, c->line);
    if ((rc = split(c, c->buf, c->field, &c->nfields, err)) < 0)
        return rc;
    if (c->nfields != c->nheader)
        return flexpu_error_set(err, FLEXPU_EPARSE, "%s:%ld: %d fields, the header has %d",
                                c->path, c->line, c->nfields, c->nheader);
    return 1;
}

void fx_csv_close(struct fx_csv *c)
{
    if (c->f)
        fclose(c->f);
    fx_free(c->buf);
    fx_free(c->header_buf);
    c->f = NULL;
    c->buf = c->header_buf = NULL;
}

int fx_csv_column_opt(const struct fx_csv *c, const char *name)
{
    for (int i = 0; i < c->nheader; i++)
        if (strcmp(c->header[i], name) == 0)
            return i;
    return -1;
}

int fx_csv_column(const struct fx_csv *c, const char *name, struct flexpu_error *err)
{
    int i = fx_csv_column_opt(c, name);
    if (i < 0)
        return flexpu_error_set(err, FLEXPU_EPARSE, "%s:1: missing column '%s' in the header",
                                c->path, name);
    return i;
}

const char *fx_csv_str(const struct fx_csv *c, int col)
{
    return col >= 0 && col < c->nfields ? c->field[col] : "";
}

int fx_csv_error(const struct fx_csv *c, int col, struct flexpu_error *err, const char *why)
{
    const char *v = fx_csv_str(c, col);
    flexpu_error_field(err, FLEXPU_EPARSE, col >= 0 && col < c->nheader ? c->header[col] : "?",
                       v, strlen(v), why);
    flexpu_error_prefix(err, "%s:%ld: column %d", c->path, c->line, col + 1);
    return FLEXPU_EPARSE;
}

int fx_csv_int(const struct fx_csv *c, int col, int64_t lo, int64_t hi, int64_t *out,
               struct flexpu_error *err)
{
    const char *s = fx_csv_str(c, col);
    char *end;
    errno = 0;
    if (*s == '\0')
        return fx_csv_error(c, col, err, "empty, expected an integer");
    long long v = strtoll(s, &end, 10);
    if (*end != '\0' || end == s || s[0] == ' ')
        return fx_csv_error(c, col, err, "expected an integer");
    if (errno == ERANGE || v < lo || v > hi) {
        char why[96];
        snprintf(why, sizeof(why), "out of range [%lld, %lld]", (long long)lo, (long long)hi);
        return fx_csv_error(c, col, err, why);
    }
    *out = v;
    return 0;
}
