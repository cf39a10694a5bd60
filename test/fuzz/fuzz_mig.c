/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target: the input, as a NUL-terminated string, is a MIG layout
 * (flexpu-node --mig-layout; src/node/mig.c). Beyond the sanitizers it
 * checks the contract: only FLEXPU_EINVAL fails, naming --mig-layout; a
 * parsed layout has 1..FX_MIG_ITEMS_MAX distinct profiles with counts in
 * 1..FX_MIG_COUNT_MAX, and what fx_mig_layout_format writes parses back to
 * the same layout. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "node/mig.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    if (!s)
        return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    struct fx_mig_layout l, back;
    struct flexpu_error err = {0};
    int rc = fx_mig_layout_parse(s, &l, &err);
    free(s);
    if (rc != 0) {
        if (rc != FLEXPU_EINVAL || err.code != rc || !strstr(err.msg, "--mig-layout"))
            abort();
        return 0;
    }
    if (l.n < 1 || l.n > FX_MIG_ITEMS_MAX)
        abort();
    for (int i = 0; i < l.n; i++) {
        if (l.items[i].count < 1 || l.items[i].count > FX_MIG_COUNT_MAX ||
            strlen(l.items[i].profile) >= FX_MIG_NAME_MAX)
            abort();
        for (int j = 0; j < i; j++)
            if (strcmp(l.items[i].profile, l.items[j].profile) == 0)
                abort();
    }
    char text[FX_MIG_ITEMS_MAX * (FX_MIG_NAME_MAX + 4)];
    fx_mig_layout_format(&l, text, sizeof(text));
    if (fx_mig_layout_parse(text, &back, &err) != 0 || back.n != l.n)
        abort();
    for (int i = 0; i < l.n; i++)
        if (strcmp(back.items[i].profile, l.items[i].profile) != 0 ||
            back.items[i].count != l.items[i].count)
            abort();
    return 0;
}
