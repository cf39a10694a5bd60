/* SPDX-License-Identifier: Apache-2.0 */
/* A hash map from strings (copied) to pointers: open addressing with linear
 * probing and backward-shift deletion, so lookups stay short without
 * tombstones. Grows at 3/4 load. */
#ifndef FX_STRMAP_H
#define FX_STRMAP_H

#include <stddef.h>

struct fx_strmap {
    struct fx_strmap_slot {
        char *key;
        void *val;
        size_t hash;
    } *slots;
    size_t cap, len;
};

void fx_strmap_init(struct fx_strmap *m);
/* Frees the keys and the table, not the values. */
void fx_strmap_free(struct fx_strmap *m);
void *fx_strmap_get(const struct fx_strmap *m, const char *key);
/* Inserts or replaces; 0, or -1 when out of memory (the map is unchanged). */
int fx_strmap_put(struct fx_strmap *m, const char *key, void *val);
/* Removes and returns the value (NULL when absent). */
void *fx_strmap_del(struct fx_strmap *m, const char *key);

/* Iterates: for (size_t i = 0; fx_strmap_next(m, &i, &k, &v);) */
int fx_strmap_next(const struct fx_strmap *m, size_t *i, const char **key, void **val);
/* Where the iteration visits key: keys come in increasing order of this
 * index, which holds until the map changes; SIZE_MAX when absent. Lets a
 * caller that walks a subset of the values visit them in the map's order. */
size_t fx_strmap_index(const struct fx_strmap *m, const char *key);

#endif
