/* SPDX-License-Identifier: Apache-2.0 */
/* The hard mode: MIG partitions as GPUs of their own (flexpu-node
 * --sharing-mode mig --mig-layout L; docs/SECURITY.md, "Hard mode").
 *
 * At start the agent makes each MIG-capable GPU's instances match one
 * layout: it enables MIG where it is off, adopts GPU instances (GIs) of the
 * layout's profiles that are there already, destroys the ones the layout
 * has no place for if no process runs on them (and refuses, changing
 * nothing on that GPU, when one does), creates what is missing with one
 * compute instance (CI) spanning each GI, and then lists the GPU's MIG
 * devices. Each becomes an fx_node_gpu of its own (MIG UUID, its memory,
 * the parent's minor, NUMA node and NVLink group, model
 * "<parent model>-MIG-<profile>"), published in flexpu.io/gpus and
 * allocated whole: the hardware isolates a MIG device (its own SMs, memory
 * and L2 slices), and sharing it again would only bring back the soft
 * limits MIG is chosen to avoid. A GPU without MIG stays a plain GPU. */
#ifndef FX_NODE_MIG_H
#define FX_NODE_MIG_H

#include <stddef.h>
#include <stdint.h>

#include "flexpu/error.h"
#include "node/gpus.h"

#define FX_MIG_NAME_MAX  24 /* "7g.80gb", "1g.10gb+me" */
#define FX_MIG_ITEMS_MAX 8  /* distinct profiles in a layout */
#define FX_MIG_COUNT_MAX 8  /* instances of one profile on a GPU (7 on A100/H100) */

/* A layout: the MIG devices wanted on every MIG-capable GPU. */
struct fx_mig_layout {
    int n;
    struct {
        char profile[FX_MIG_NAME_MAX]; /* "<slices>g.<GB>gb" as nvidia-smi names it */
        int count;
    } items[FX_MIG_ITEMS_MAX];
};

/* Parses "1g.10gb*7" or "3g.40gb,4g.40gb" (items separated by commas, each
 * a profile name and an optional "*count"; a profile named twice adds up).
 * FLEXPU_EINVAL naming --mig-layout, the item and what is wrong. */
int fx_mig_layout_parse(const char *text, struct fx_mig_layout *out, struct flexpu_error *err);

/* Writes the layout back in its own syntax ("3g.40gb,4g.40gb*1" style). */
void fx_mig_layout_format(const struct fx_mig_layout *l, char *out, size_t len);

/* The name nvidia-smi gives a profile of `slices` compute slices and
 * mem_mib MiB on a GPU of gpu_mem_bytes: its share of the GPU's memory
 * rounded up to eighths, times the GPU's memory in whole GB (rounded up):
 * 9728 MiB of an 80 GiB A100 is "1g.10gb". */
void fx_mig_profile_name(unsigned slices, unsigned long long mem_mib, int64_t gpu_mem_bytes,
                         char *out, size_t len);

/* Applies `layout` to every MIG-capable GPU of gpus[0..*count) and
 * replaces each by its MIG devices (in place, in GPU order; at most max
 * entries in all). GPUs without MIG are kept as they are, and logged.
 * Errors name the GPU (UUID), the instance and what NVML said; a GPU whose
 * busy instances would have to go is refused with nothing changed on it.
 * On error gpus[] is unchanged. */
int fx_mig_setup(struct fx_nvml *n, const struct fx_mig_layout *layout, struct fx_node_gpu *gpus,
                 int *count, int max, struct flexpu_error *err);

/* The GPU instance profiles of `gpu` (from discovery) as fx_mig_setup
 * names them, with their compute slices, MIG enabled first if it is off
 * (as fx_mig_setup would). Returns how many (at most max), 0 when the GPU
 * has no MIG, -1 with err set on an NVML error. For test/gpu/mig_check.sh,
 * which picks a layout the GPU has. */
int fx_mig_profiles(struct fx_nvml *n, const struct fx_node_gpu *gpu,
                    char names[][FX_MIG_NAME_MAX], unsigned *slices, int max,
                    struct flexpu_error *err);

#endif
