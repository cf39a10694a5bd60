/* SPDX-License-Identifier: Apache-2.0 */
#include "flexpu/quantity.h"

#include <stdbool.h>
#include <string.h>

/* A parsed number: value = sign * digits * 10^exp10 * 2^exp2, exact. */
struct number {
    int sign;
    uint64_t digits;
    int exp10;
    int exp2;
};

enum { MAX_SIGNIFICANT = 18 }; /* keeps digits below 10^18 < 2^63 */

static int bad(struct flexpu_error *err, const char *field, const char *s, const char *why)
{
    return flexpu_error_field(err, FLEXPU_EPARSE, field, s, strlen(s), why);
}

/* Reads [+-]digits[.digits] into n; returns the byte after it or NULL. Digits
 * past MAX_SIGNIFICANT must be zero so the value stays exact. */
static const char *read_decimal(const char *p, struct number *n)
{
    n->sign = 1;
    if (*p == '+' || *p == '-')
        n->sign = *p++ == '-' ? -1 : 1;
    int seen = 0, significant = 0;
    bool frac = false;
    for (;; p++) {
        if (*p == '.' && !frac) {
            frac = true;
            continue;
        }
        if (*p < '0' || *p > '9')
            break;
        seen++;
        int d = *p - '0';
        if (significant == 0 && d == 0) {
            if (frac)
                n->exp10--;
            continue;
        }
        if (significant < MAX_SIGNIFICANT) {
            n->digits = n->digits * 10 + (uint64_t)d;
            significant++;
            if (frac)
                n->exp10--;
        } else if (d != 0) {
            return NULL;
        } else if (!frac) {
            n->exp10++;
        }
    }
    return seen ? p : NULL;
}

struct suffix {
    const char *text;
    int exp10;
    int exp2;
};

static const struct suffix k8s_suffixes[] = {
    {"Ki", 0, 10}, {"Mi", 0, 20}, {"Gi", 0, 30}, {"Ti", 0, 40}, {"Pi", 0, 50}, {"Ei", 0, 60},
    {"n", -9, 0},  {"u", -6, 0},  {"m", -3, 0},  {"", 0, 0},    {"k", 3, 0},   {"M", 6, 0},
    {"G", 9, 0},   {"T", 12, 0},  {"P", 15, 0},  {"E", 18, 0},
};

static const struct suffix size_suffixes[] = {
    {"k", 0, 10},  {"m", 0, 20},  {"g", 0, 30},  {"t", 0, 40},  {"kb", 0, 10}, {"mb", 0, 20},
    {"gb", 0, 30}, {"tb", 0, 40}, {"kB", 0, 10}, {"mB", 0, 20}, {"gB", 0, 30}, {"tB", 0, 40},
};

static bool match_suffix(const char *p, const struct suffix *tab, size_t n, struct number *num)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(p, tab[i].text) == 0) {
            num->exp10 += tab[i].exp10;
            num->exp2 += tab[i].exp2;
            return true;
        }
    }
    return false;
}

/* Reads an exponent suffix "e<int>" / "E<int>" (the whole rest of p). */
static bool match_exponent(const char *p, struct number *num)
{
    if (*p != 'e' && *p != 'E')
        return false;
    p++;
    int sign = 1;
    if (*p == '+' || *p == '-')
        sign = *p++ == '-' ? -1 : 1;
    if (*p == '\0')
        return false;
    int e = 0;
    for (; *p; p++) {
        if (*p < '0' || *p > '9' || e > 100)
            return false;
        e = e * 10 + (*p - '0');
    }
    num->exp10 += sign * e;
    return true;
}

/* value * 10^scale10, exactly, or FLEXPU_ERANGE. An inexact result is rounded
 * away from zero (1.5 -> 2, -1.5 -> -2) as resource.Quantity's Value() and
 * MilliValue() round, and *rounded says so. */
static int scale(const struct number *n, int scale10, int64_t *out, bool *rounded)
{
    *rounded = false;
    if (n->digits == 0) {
        *out = 0;
        return 0;
    }
    unsigned __int128 v = n->digits;
    const unsigned __int128 limit = (unsigned __int128)INT64_MAX;
    for (int i = 0; i < n->exp2; i++) {
        v <<= 1;
        if (v > limit)
            return FLEXPU_ERANGE;
    }
    int e = n->exp10 + scale10;
    for (; e > 0; e--) {
        v *= 10;
        if (v > limit)
            return FLEXPU_ERANGE;
    }
    bool inexact = false;
    for (; e < 0; e++) {
        if (v % 10)
            inexact = true;
        v /= 10;
        if (v == 0) {
            inexact = true;
            break;
        }
    }
    if (inexact)
        v += 1;
    *rounded = inexact;
    if (v > limit)
        return FLEXPU_ERANGE;
    *out = n->sign * (int64_t)v;
    return 0;
}

static int parse_generic(const char *s, const char *field, int scale10, bool sizes, int64_t *out,
                         bool *rounded, struct flexpu_error *err)
{
    if (!s || !*s)
        return bad(err, field, s ? s : "", "empty quantity");
    struct number n = {0};
    const char *p = read_decimal(s, &n);
    if (!p)
        return bad(err, field, s, "expected a decimal number such as 4, 1.5 or 0.25");
    bool ok = match_suffix(p, k8s_suffixes, sizeof(k8s_suffixes) / sizeof(*k8s_suffixes), &n) ||
              match_exponent(p, &n);
    if (!ok)
        return bad(err, field, s,
                   sizes ? "unknown unit (use Ki Mi Gi Ti, k M G T, or k m g t for KiB MiB GiB TiB)"
                         : "unknown suffix (use Ki Mi Gi Ti Pi Ei, n u m k M G T P E, or e<N>)");
    if (sizes && n.sign < 0 && n.digits)
        return bad(err, field, s, "a size cannot be negative");
    int64_t v;
    if (scale(&n, scale10, &v, rounded) != 0)
        return flexpu_error_field(err, FLEXPU_ERANGE, field, s, strlen(s),
                                  "does not fit in 64 bits");
    *out = v;
    return 0;
}

int flexpu_quantity_parse_milli(const char *s, const char *field, int64_t *out_milli,
                                struct flexpu_error *err)
{
    bool rounded;
    return parse_generic(s, field, 3, false, out_milli, &rounded, err);
}

int flexpu_quantity_parse(const char *s, const char *field, int64_t *out,
                          struct flexpu_error *err)
{
    bool rounded;
    return parse_generic(s, field, 0, false, out, &rounded, err);
}

/* A size in bytes, rounded up; *rounded when the text held a fraction of a
 * byte. */
static int size_parse(const char *s, const char *field, int64_t *out_bytes, bool *rounded,
                      struct flexpu_error *err)
{
    /* A lone lower-case "m" means MiB here, so try the size units first. */
    if (s && *s) {
        struct number n = {0};
        const char *p = read_decimal(s, &n);
        if (p && match_suffix(p, size_suffixes, sizeof(size_suffixes) / sizeof(*size_suffixes),
                              &n)) {
            if (n.sign < 0 && n.digits)
                return bad(err, field, s, "a size cannot be negative");
            int64_t v;
            if (scale(&n, 0, &v, rounded) != 0)
                return flexpu_error_field(err, FLEXPU_ERANGE, field, s, strlen(s),
                                          "does not fit in 64 bits");
            *out_bytes = v;
            return 0;
        }
    }
    return parse_generic(s, field, 0, true, out_bytes, rounded, err);
}

int flexpu_size_parse(const char *s, const char *field, int64_t *out_bytes,
                      struct flexpu_error *err)
{
    bool rounded;
    return size_parse(s, field, out_bytes, &rounded, err);
}

int flexpu_size_parse_whole(const char *s, const char *field, int64_t *out_bytes,
                            struct flexpu_error *err)
{
    bool rounded;
    int64_t v;
    int rc = size_parse(s, field, &v, &rounded, err);
    if (rc)
        return rc;
    if (rounded)
        return bad(err, field, s, "not a whole number of bytes");
    *out_bytes = v;
    return 0;
}
