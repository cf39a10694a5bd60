/* SPDX-License-Identifier: Apache-2.0 */
/* What this process holds on each GPU, by address or handle, so a free is
 * credited with exactly what its allocation was charged. Thread-safe. */
#ifndef FX_RUNTIME_PTRMAP_H
#define FX_RUNTIME_PTRMAP_H

#include <stdint.h>

/* Kinds keep keys of different namespaces apart: a device pointer and an
 * array handle may have the same numeric value. */
enum fx_alloc_kind {
    FX_KIND_MEM = 1,  /* cuMemAlloc, pitch, managed, async from a pool */
    FX_KIND_ARRAY,    /* cuArrayCreate, cuArray3DCreate */
    FX_KIND_MIPMAP,   /* cuMipmappedArrayCreate */
};

struct fx_alloc {
    uint64_t size;
    int dev;
    uint64_t ctx; /* the context it was made in (freed with it); 0 unknown */
};

/* Records an allocation; returns 0, or -1 when out of host memory. */
int fx_ptrmap_put(enum fx_alloc_kind kind, uint64_t key, struct fx_alloc a);
/* Removes and returns the record; 0 when found, -1 when unknown (memory the
 * library did not charge, such as an IPC import). */
int fx_ptrmap_take(enum fx_alloc_kind kind, uint64_t key, struct fx_alloc *out);
/* Removes every record made in context `ctx` and adds their bytes per
 * device into bytes_by_dev[ndev]. Returns how many were removed. */
int fx_ptrmap_take_ctx(uint64_t ctx, uint64_t *bytes_by_dev, int ndev);
/* Forgets everything (after fork: the child holds none of it). */
void fx_ptrmap_reset(void);
/* How many records there are (tests). */
uint64_t fx_ptrmap_count(void);

#endif
