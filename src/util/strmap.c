/* SPDX-License-Identifier: Apache-2.0 */
#include "util/strmap.h"

#include <stdint.h>
#include <string.h>

#include "util/alloc.h"
#include "util/fnv.h"

static size_t hash_str(const char *s)
{
    /* Not FNV's offset basis (a digit short), kept: the iteration order
     * (fx_strmap_next, fx_strmap_index) follows the hash. */
    uint64_t h = fx_fnv1a_str(1469598103934665603ULL, s);
    return (size_t)(h ^ (h >> 29));
}

void fx_strmap_init(struct fx_strmap *m)
{
    memset(m, 0, sizeof(*m));
}

void fx_strmap_free(struct fx_strmap *m)
{
    for (size_t i = 0; i < m->cap; i++)
        fx_free(m->slots[i].key);
    fx_free(m->slots);
    memset(m, 0, sizeof(*m));
}

static size_t find(const struct fx_strmap *m, const char *key, size_t h)
{
    size_t mask = m->cap - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        const struct fx_strmap_slot *s = &m->slots[i];
        if (!s->key || (s->hash == h && strcmp(s->key, key) == 0))
            return i;
    }
}

void *fx_strmap_get(const struct fx_strmap *m, const char *key)
{
    if (!m->len)
        return NULL;
    size_t i = find(m, key, hash_str(key));
    return m->slots[i].key ? m->slots[i].val : NULL;
}

size_t fx_strmap_index(const struct fx_strmap *m, const char *key)
{
    if (!m->len)
        return SIZE_MAX;
    size_t i = find(m, key, hash_str(key));
    return m->slots[i].key ? i : SIZE_MAX;
}

static int grow(struct fx_strmap *m)
{
    size_t cap = m->cap ? m->cap * 2 : 64;
    struct fx_strmap_slot *slots = fx_calloc(cap, sizeof(*slots));
    if (!slots)
        return -1;
    struct fx_strmap old = *m;
    m->slots = slots;
    m->cap = cap;
    for (size_t i = 0; i < old.cap; i++)
        if (old.slots[i].key)
            m->slots[find(m, old.slots[i].key, old.slots[i].hash)] = old.slots[i];
    fx_free(old.slots);
    return 0;
}

int fx_strmap_put(struct fx_strmap *m, const char *key, void *val)
{
    if ((m->len + 1) * 4 > m->cap * 3 && grow(m))
        return -1;
    size_t h = hash_str(key);
    size_t i = find(m, key, h);
    if (m->slots[i].key) {
        m->slots[i].val = val;
        return 0;
    }
    char *k = fx_strdup(key);
    if (!k)
        return -1;
    m->slots[i] = (struct fx_strmap_slot){k, val, h};
    m->len++;
    return 0;
}

void *fx_strmap_del(struct fx_strmap *m, const char *key)
{
    if (!m->len)
        return NULL;
    size_t mask = m->cap - 1;
    size_t i = find(m, key, hash_str(key));
    if (!m->slots[i].key)
        return NULL;
    void *val = m->slots[i].val;
    fx_free(m->slots[i].key);
    /* Backward shift: move later entries of the run into the hole when
     * their home slot is at or before it. */
    for (size_t j = (i + 1) & mask; m->slots[j].key; j = (j + 1) & mask) {
        size_t home = m->slots[j].hash & mask;
        if (((j - home) & mask) >= ((j - i) & mask)) {
            m->slots[i] = m->slots[j];
            i = j;
        }
    }
    m->slots[i] = (struct fx_strmap_slot){0};
    m->len--;
    return val;
}

int fx_strmap_next(const struct fx_strmap *m, size_t *i, const char **key, void **val)
{
    for (; *i < m->cap; (*i)++)
        if (m->slots[*i].key) {
            *key = m->slots[*i].key;
            *val = m->slots[*i].val;
            (*i)++;
            return 1;
        }
    return 0;
}
