/* SPDX-License-Identifier: Apache-2.0 */
/* A small reader of comma-separated files with a header line (RFC 4180
 * quoting), that knows the file, line and column of every field so errors
 * can name them. Fields are looked up by header name, not position. */
#ifndef FX_SIM_CSV_H
#define FX_SIM_CSV_H

#include <stdint.h>
#include <stdio.h>

#include "flexpu/error.h"

#define FX_CSV_MAX_FIELDS 64

struct fx_csv {
    FILE *f;
    const char *path;
    long line;      /* of the current record, 1-based */
    char *buf;      /* the record, fields NUL-separated */
    size_t cap;
    int nfields;
    char *field[FX_CSV_MAX_FIELDS];
    char *header[FX_CSV_MAX_FIELDS];
    int nheader;
    char *header_buf;
};

/* Opens path (or reads from f if not NULL) and reads the header line. */
int fx_csv_open(struct fx_csv *c, const char *path, FILE *f, struct flexpu_error *err);
/* Reads the next record: 1, 0 at end of file, or a negative error. Empty
 * lines are errors too: a trace has none, and skipping would hide a cut
 * file. */
int fx_csv_next(struct fx_csv *c, struct flexpu_error *err);
void fx_csv_close(struct fx_csv *c);

/* Index of a header column, or a FLEXPU_EPARSE error naming it. */
int fx_csv_column(const struct fx_csv *c, const char *name, struct flexpu_error *err);
/* Same, but -1 without error when absent. */
int fx_csv_column_opt(const struct fx_csv *c, const char *name);

/* Field col of the current record as text, or as an integer in [lo, hi];
 * errors name file, line, column and value. */
const char *fx_csv_str(const struct fx_csv *c, int col);
int fx_csv_int(const struct fx_csv *c, int col, int64_t lo, int64_t hi, int64_t *out,
               struct flexpu_error *err);
/* Formats "path:line: column 'name' (N)" context into err. */
int fx_csv_error(const struct fx_csv *c, int col, struct flexpu_error *err, const char *why);

#endif
