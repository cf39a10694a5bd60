/* SPDX-License-Identifier: Apache-2.0 */
/* What the fake NVML's MIG part (fake_nvml_mig.c) and its device part
 * (fake_nvml.c) share. */
#ifndef FAKE_NVML_H
#define FAKE_NVML_H

#include "node/nvml_mig_abi.h"

/* The index of the physical GPU behind `h` (a handle from
 * nvmlDeviceGetHandleByIndex), or -1 with *r set. Takes the device lock:
 * never call it with the MIG lock held. */
int fake_nvml_index(nvmlDevice_t h, nvmlReturn_t *r);
unsigned long long fake_nvml_total_mem(void);

/* Called by the first nvmlInit, with the device lock held: reads
 * FAKENVML_MIG and the MIG state a previous process saved. */
void fake_mig_init(unsigned int device_count, const char *dir);

/* Whether `h` is a MIG device handle; if so, its UUID and memory. */
int fake_mig_is_handle(nvmlDevice_t h);
nvmlReturn_t fake_mig_uuid(nvmlDevice_t h, char *uuid, unsigned int length);
nvmlReturn_t fake_mig_memory(nvmlDevice_t h, nvmlMemory_t *memory);

#endif
