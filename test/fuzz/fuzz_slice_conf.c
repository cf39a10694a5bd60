/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target: the slice configuration file parser (the runtime library
 * reads it in every container process, so it must never crash). Contracts:
 * a failure is EPARSE/EINVAL/ERANGE with a message that names the origin; a
 * success leaves every value in its documented range. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    struct fx_slice_config c;
    struct flexpu_error err = {0};
    fx_config_defaults(&c);
    int rc = fx_config_parse(&c, text, "fz.conf", &err);
    free(text);
    if (rc != 0) {
        if (rc != FLEXPU_EPARSE && rc != FLEXPU_EINVAL && rc != FLEXPU_ERANGE)
            abort();
        if (!strstr(err.msg, "fz.conf"))
            abort();
        return 0;
    }
    if (c.compute_share < 0 || c.compute_share > 100 || c.compute_cap < 1 ||
        c.compute_cap > 100 || c.compute_cap < c.compute_share || c.memory_limit < 0 ||
        c.context_overhead < 0 || c.tenant[0] == '\0' || c.state_dir[0] != '/')
        abort();
    return 0;
}
