/* SPDX-License-Identifier: Apache-2.0 */
/* FNV-1a, 64 bits (the published offset basis and prime), for the hashes
 * that stay in one process: the string map's buckets, the engine's classes,
 * node filter and label digests, a pod's scheduling inputs. Start from
 * FX_FNV1A_OFFSET and fold the pieces in order. Inline: the string map and
 * the engine hash on every lookup. */
#ifndef FX_FNV_H
#define FX_FNV_H

#include <stddef.h>
#include <stdint.h>

#define FX_FNV1A_OFFSET 0xcbf29ce484222325ULL
#define FX_FNV1A_PRIME  0x100000001b3ULL

static inline uint64_t fx_fnv1a_byte(uint64_t h, unsigned char c)
{
    return (h ^ c) * FX_FNV1A_PRIME;
}

static inline uint64_t fx_fnv1a(uint64_t h, const void *b, size_t n)
{
    const unsigned char *p = b;
    for (size_t i = 0; i < n; i++)
        h = fx_fnv1a_byte(h, p[i]);
    return h;
}

/* The bytes of s before its NUL (NULL: none). */
static inline uint64_t fx_fnv1a_str(uint64_t h, const char *s)
{
    for (; s && *s; s++)
        h = fx_fnv1a_byte(h, (unsigned char)*s);
    return h;
}

/* s, then 0xff, a byte no UTF-8 text holds: consecutive strings cannot run
 * into each other ("ab" "c" and "a" "bc" differ). */
static inline uint64_t fx_fnv1a_field(uint64_t h, const char *s)
{
    return fx_fnv1a_byte(fx_fnv1a_str(h, s), 0xff);
}

/* v's 8 bytes, least significant first, whatever the host's byte order. */
static inline uint64_t fx_fnv1a_u64(uint64_t h, uint64_t v)
{
    for (int i = 0; i < 8; i++, v >>= 8)
        h = fx_fnv1a_byte(h, (unsigned char)(v & 0xff));
    return h;
}

#endif
