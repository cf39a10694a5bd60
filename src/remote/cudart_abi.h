/* SPDX-License-Identifier: Apache-2.0 */
/* The subset of NVIDIA's runtime API ABI (cuda_runtime_api.h, CUDA 12) the
 * remote client implements and the server answers with: types, the error
 * codes used, and the fat-binary layouts nvcc emits. Written from the
 * published headers' values, so nothing needs the CUDA toolkit. */
#ifndef FX_REMOTE_CUDART_ABI_H
#define FX_REMOTE_CUDART_ABI_H

#include <stddef.h>
#include <stdint.h>

typedef int cudaError_t;
typedef struct CUstream_st *cudaStream_t;

/* X(name, value, message): the error codes the remote path returns. */
#define FX_CUDART_ERRORS(X)                                                                        \
    X(cudaSuccess, 0, "no error")                                                                  \
    X(cudaErrorInvalidValue, 1, "invalid argument")                                               \
    X(cudaErrorMemoryAllocation, 2, "out of memory")                                              \
    X(cudaErrorInitializationError, 3, "initialization error")                                    \
    X(cudaErrorCudartUnloading, 4, "driver shutting down")                                        \
    X(cudaErrorInvalidConfiguration, 9, "invalid configuration argument")                         \
    X(cudaErrorInvalidDevicePointer, 17, "invalid device pointer")                                \
    X(cudaErrorInvalidMemcpyDirection, 21, "invalid copy direction for memcpy")                   \
    X(cudaErrorDevicesUnavailable, 46, "CUDA-capable device(s) is/are busy or unavailable")       \
    X(cudaErrorMissingConfiguration, 52, "__global__ function call is not configured")            \
    X(cudaErrorInvalidDeviceFunction, 98, "invalid device function")                              \
    X(cudaErrorNoDevice, 100, "no CUDA-capable device is detected")                               \
    X(cudaErrorInvalidDevice, 101, "invalid device ordinal")                                      \
    X(cudaErrorInvalidKernelImage, 200, "device kernel image is invalid")                         \
    X(cudaErrorDeviceUninitialized, 201, "invalid device context")                                \
    X(cudaErrorNoKernelImageForDevice, 209, "no kernel image is available for execution on the device") \
    X(cudaErrorInvalidResourceHandle, 400, "invalid resource handle")                             \
    X(cudaErrorSymbolNotFound, 500, "named symbol not found")                                     \
    X(cudaErrorNotReady, 600, "device not ready")                                                 \
    X(cudaErrorIllegalAddress, 700, "an illegal memory access was encountered")                   \
    X(cudaErrorLaunchOutOfResources, 701, "too many resources requested for launch")              \
    X(cudaErrorLaunchFailure, 719, "unspecified launch failure")                                  \
    X(cudaErrorNotPermitted, 800, "operation not permitted")                                      \
    X(cudaErrorNotSupported, 801, "operation not supported")                                      \
    X(cudaErrorUnknown, 999, "unknown error")

enum {
#define FX_CUDART_ERROR_ENUM(name, value, msg) name = value,
    FX_CUDART_ERRORS(FX_CUDART_ERROR_ENUM)
#undef FX_CUDART_ERROR_ENUM
};

enum cudaMemcpyKind {
    cudaMemcpyHostToHost = 0,
    cudaMemcpyHostToDevice = 1,
    cudaMemcpyDeviceToHost = 2,
    cudaMemcpyDeviceToDevice = 3,
    cudaMemcpyDefault = 4,
};

/* cudaStreamLegacy and cudaStreamPerThread, as cuda_runtime_api.h defines. */
#define FX_CUDA_STREAM_LEGACY     ((cudaStream_t)0x1)
#define FX_CUDA_STREAM_PER_THREAD ((cudaStream_t)0x2)
#define FX_CUDA_STREAM_NON_BLOCKING 0x1u

typedef struct dim3 {
    unsigned int x, y, z;
} dim3;
typedef struct uint3 {
    unsigned int x, y, z;
} uint3;

/* What __cudaRegisterFatBinary receives (nvcc's __fatBinC_Wrapper_t), and
 * the header of the fat binary it points to. */
#define FX_FATBINC_MAGIC 0x466243b1
#define FX_FATBIN_MAGIC  0xBA55ED50u
struct fx_fatbinc_wrapper {
    int magic;
    int version;
    const unsigned long long *data;
    void *filename_or_fatbins;
};
struct fx_fatbin_header {
    uint32_t magic;
    uint16_t version;
    uint16_t header_size;
    uint64_t fat_size; /* bytes of entries after the header */
};

#endif
