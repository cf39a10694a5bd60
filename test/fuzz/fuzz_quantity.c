/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target: the input, as a NUL-terminated string, goes to the three
 * quantity parsers. Beyond the sanitizers it checks the contracts: only
 * EPARSE/ERANGE fail, a failure leaves the output alone and names the field,
 * sizes are never negative, and whole units agree with thousandths. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "flexpu/quantity.h"

#define SENTINEL INT64_C(0x5a5a5a5a5a5a)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int check(int rc, int64_t v, const struct flexpu_error *err)
{
    if (rc == 0)
        return 0;
    if (rc != FLEXPU_EPARSE && rc != FLEXPU_ERANGE)
        abort();
    if (err->code != rc || v != SENTINEL || !strstr(err->msg, "field 'fz'"))
        abort();
    if (strlen(err->msg) >= sizeof(err->msg))
        abort();
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    if (!s)
        return 0;
    memcpy(s, data, size);
    s[size] = '\0';

    struct flexpu_error err;
    int64_t milli = SENTINEL, units = SENTINEL, bytes = SENTINEL;
    int rm = check(flexpu_quantity_parse_milli(s, "fz", &milli, &err), milli, &err);
    int ru = check(flexpu_quantity_parse(s, "fz", &units, &err), units, &err);
    int rb = check(flexpu_size_parse(s, "fz", &bytes, &err), bytes, &err);

    /* A quantity that fits in thousandths fits in units, and both round
     * away from zero: units == milli / 1000 rounded away from zero. */
    if (rm == 0) {
        if (ru != 0)
            abort();
        int64_t want = milli / 1000 + (milli % 1000 > 0) - (milli % 1000 < 0);
        if (units != want)
            abort();
    }
    /* The same syntax never parses in one and fails to parse in the other. */
    if ((rm == FLEXPU_EPARSE) != (ru == FLEXPU_EPARSE))
        abort();
    if (rb == 0 && bytes < 0)
        abort();
    /* Without a Docker letter a size is the quantity in units. */
    if (rb == 0 && ru == 0 && !strpbrk(s, "kmgt") && bytes != units)
        abort();
    free(s);
    return 0;
}
