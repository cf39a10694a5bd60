/* SPDX-License-Identifier: Apache-2.0 */
/* The memory a borrower may take (docs/KUBERNETES.md, "Borrowing reserved
 * memory"): one rule for the scheduler, which places a borrower
 * (scheduler/borrow.h), and the node agent, which checks it again at
 * PreStartContainer (kube/contract.h, fx_borrow_fits_idle). Pure; no JSON,
 * so the simulator takes it too. Defined in contract.c. */
#ifndef FX_KUBE_BORROW_RULE_H
#define FX_KUBE_BORROW_RULE_H

#include <stdbool.h>
#include <stdint.h>

/* What is kept free of borrowers above the owners' measured memory: this
 * percent of the GPU's memory (an owner's use moves between readings). */
#define FX_BORROW_MEM_HEADROOM_PCT 10

/* Whether a borrower of `mem` bytes and `cores` percent on a GPU of
 * gpu_mem bytes is light: mem at most a quarter of cores% of gpu_mem. */
bool fx_borrow_light(int64_t mem, int cores, int64_t gpu_mem);
/* The memory (bytes) left for borrowers on a GPU of gpu_mem bytes: what
 * no slice reserved (gpu_mem - reserved), or, when idle is set, what the
 * owners do not use either (gpu_mem - owners_used - the headroom) if that
 * is more. Never negative. */
int64_t fx_borrow_mem_room(int64_t gpu_mem, int64_t reserved, int64_t owners_used, bool idle);

#endif
