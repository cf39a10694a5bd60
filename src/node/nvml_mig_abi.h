/* SPDX-License-Identifier: Apache-2.0 */
/* The subset of NVML's MIG ABI (nvml.h, R470 and later) that flexpu-node
 * uses in --sharing-mode mig (mig.h), declared here so the project builds
 * without the CUDA toolkit. Layouts and values are nvml.h's; the fake NVML
 * (test/fakecuda/fake_nvml_mig.c) implements the same ones. */
#ifndef FX_NVML_MIG_ABI_H
#define FX_NVML_MIG_ABI_H

#include "runtime/nvml_abi.h"

/* Return codes beyond nvml_abi.h's. */
enum {
    NVML_ERROR_IN_USE = 19,
    NVML_ERROR_INSUFFICIENT_RESOURCES = 23,
};

#define NVML_DEVICE_MIG_DISABLE 0u
#define NVML_DEVICE_MIG_ENABLE  1u

/* GPU instance profiles (the `profile` argument of
 * nvmlDeviceGetGpuInstanceProfileInfo); the profile's own id, which the
 * other calls take, comes back in the info's `id`. */
#define NVML_GPU_INSTANCE_PROFILE_1_SLICE      0x0u
#define NVML_GPU_INSTANCE_PROFILE_2_SLICE      0x1u
#define NVML_GPU_INSTANCE_PROFILE_3_SLICE      0x2u
#define NVML_GPU_INSTANCE_PROFILE_4_SLICE      0x3u
#define NVML_GPU_INSTANCE_PROFILE_7_SLICE      0x4u
#define NVML_GPU_INSTANCE_PROFILE_8_SLICE      0x5u
#define NVML_GPU_INSTANCE_PROFILE_6_SLICE      0x6u
#define NVML_GPU_INSTANCE_PROFILE_1_SLICE_REV1 0x7u
#define NVML_GPU_INSTANCE_PROFILE_2_SLICE_REV1 0x8u
#define NVML_GPU_INSTANCE_PROFILE_1_SLICE_REV2 0x9u
#define NVML_GPU_INSTANCE_PROFILE_COUNT        0xAu

/* Compute instance profiles, by slice count, and the engine profile. */
#define NVML_COMPUTE_INSTANCE_PROFILE_1_SLICE 0x0u
#define NVML_COMPUTE_INSTANCE_PROFILE_2_SLICE 0x1u
#define NVML_COMPUTE_INSTANCE_PROFILE_3_SLICE 0x2u
#define NVML_COMPUTE_INSTANCE_PROFILE_4_SLICE 0x3u
#define NVML_COMPUTE_INSTANCE_PROFILE_7_SLICE 0x4u
#define NVML_COMPUTE_INSTANCE_PROFILE_8_SLICE 0x5u
#define NVML_COMPUTE_INSTANCE_PROFILE_6_SLICE 0x6u
#define NVML_COMPUTE_INSTANCE_PROFILE_COUNT   0x8u
#define NVML_COMPUTE_INSTANCE_ENGINE_PROFILE_SHARED 0x0u

typedef struct nvmlGpuInstance_st *nvmlGpuInstance_t;
typedef struct nvmlComputeInstance_st *nvmlComputeInstance_t;

typedef struct nvmlGpuInstancePlacement_st {
    unsigned int start;
    unsigned int size;
} nvmlGpuInstancePlacement_t;

typedef struct nvmlGpuInstanceProfileInfo_st {
    unsigned int id;
    unsigned int isP2pSupported;
    unsigned int sliceCount;
    unsigned int instanceCount;
    unsigned int multiprocessorCount;
    unsigned int copyEngineCount;
    unsigned int decoderCount;
    unsigned int encoderCount;
    unsigned int jpegCount;
    unsigned int ofaCount;
    unsigned long long memorySizeMB;
} nvmlGpuInstanceProfileInfo_t;

typedef struct nvmlGpuInstanceInfo_st {
    nvmlDevice_t device;
    unsigned int id;
    unsigned int profileId;
    nvmlGpuInstancePlacement_t placement;
} nvmlGpuInstanceInfo_t;

typedef struct nvmlComputeInstanceProfileInfo_st {
    unsigned int id;
    unsigned int sliceCount;
    unsigned int instanceCount;
    unsigned int multiprocessorCount;
    unsigned int sharedCopyEngineCount;
    unsigned int sharedDecoderCount;
    unsigned int sharedEncoderCount;
    unsigned int sharedJpegCount;
    unsigned int sharedOfaCount;
} nvmlComputeInstanceProfileInfo_t;

/* nvmlProcessInfo_v2_t, what nvmlDeviceGetComputeRunningProcesses_v3
 * fills; on a MIG device handle it lists that device's processes. */
typedef struct nvmlProcessInfo_st {
    unsigned int pid;
    unsigned long long usedGpuMemory;
    unsigned int gpuInstanceId;
    unsigned int computeInstanceId;
} nvmlProcessInfo_t;

#endif
