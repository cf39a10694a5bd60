/* SPDX-License-Identifier: Apache-2.0 */
/* The real driver and NVML entry points, and the table that ties each hooked
 * export to the real function it stands in for.
 *
 * Why a table of real pointers: libcudart reaches the driver through
 * cuGetProcAddress, which picks the ABI variant (_v2, _v3, _ptsz...) for the
 * caller's CUDA version and flags. The library lets the driver make that
 * choice and then swaps the returned pointer for the hook of exactly that
 * export, found by address. A pointer that is not one of the hooked exports
 * is returned untouched, so versions the library does not know are never
 * given a hook with the wrong signature. */
#ifndef FX_RUNTIME_DRIVER_H
#define FX_RUNTIME_DRIVER_H

#include "runtime/cuda_abi.h"
#include "runtime/nvml_abi.h"

typedef int CUstreamCaptureMode;
#define FX_CAPTURE_MODE_RELAXED 2

#define FX_LAUNCH_PARAMS                                                                           \
    (CUfunction f, unsigned int gridDimX, unsigned int gridDimY, unsigned int gridDimZ,            \
     unsigned int blockDimX, unsigned int blockDimY, unsigned int blockDimZ,                       \
     unsigned int sharedMemBytes, CUstream hStream, void **kernelParams, void **extra)
#define FX_LAUNCH_ARGS                                                                             \
    (f, gridDimX, gridDimY, gridDimZ, blockDimX, blockDimY, blockDimZ, sharedMemBytes, hStream,    \
     kernelParams, extra)
#define FX_COOP_PARAMS                                                                             \
    (CUfunction f, unsigned int gridDimX, unsigned int gridDimY, unsigned int gridDimZ,            \
     unsigned int blockDimX, unsigned int blockDimY, unsigned int blockDimZ,                       \
     unsigned int sharedMemBytes, CUstream hStream, void **kernelParams)
#define FX_COOP_ARGS                                                                               \
    (f, gridDimX, gridDimY, gridDimZ, blockDimX, blockDimY, blockDimZ, sharedMemBytes, hStream,    \
     kernelParams)

/* Driver exports this library replaces: X(name, parameters, arguments). */
#define FX_CUDA_HOOKS(X)                                                                           \
    X(cuInit, (unsigned int flags), (flags))                                                       \
    X(cuGetProcAddress, (const char *symbol, void **pfn, int cudaVersion, cuuint64_t flags),       \
      (symbol, pfn, cudaVersion, flags))                                                           \
    X(cuGetProcAddress_v2,                                                                         \
      (const char *symbol, void **pfn, int cudaVersion, cuuint64_t flags,                          \
       CUdriverProcAddressQueryResult *symbolStatus),                                              \
      (symbol, pfn, cudaVersion, flags, symbolStatus))                                             \
    X(cuCtxCreate_v2, (CUcontext * pctx, unsigned int flags, CUdevice dev), (pctx, flags, dev))    \
    X(cuCtxCreate_v3,                                                                              \
      (CUcontext * pctx, void *paramsArray, int numParams, unsigned int flags, CUdevice dev),      \
      (pctx, paramsArray, numParams, flags, dev))                                                  \
    X(cuCtxCreate_v4, (CUcontext * pctx, void *ctxCreateParams, unsigned int flags, CUdevice dev), \
      (pctx, ctxCreateParams, flags, dev))                                                         \
    X(cuDevicePrimaryCtxRetain, (CUcontext * pctx, CUdevice dev), (pctx, dev))                     \
    X(cuDevicePrimaryCtxRelease_v2, (CUdevice dev), (dev))                                         \
    X(cuDevicePrimaryCtxReset_v2, (CUdevice dev), (dev))                                           \
    X(cuCtxDestroy_v2, (CUcontext ctx), (ctx))                                                     \
    X(cuMemAlloc_v2, (CUdeviceptr * dptr, size_t bytesize), (dptr, bytesize))                      \
    X(cuMemAllocPitch_v2,                                                                          \
      (CUdeviceptr * dptr, size_t *pPitch, size_t WidthInBytes, size_t Height,                     \
       unsigned int ElementSizeBytes),                                                             \
      (dptr, pPitch, WidthInBytes, Height, ElementSizeBytes))                                      \
    X(cuMemAllocManaged, (CUdeviceptr * dptr, size_t bytesize, unsigned int flags),                \
      (dptr, bytesize, flags))                                                                     \
    X(cuMemFree_v2, (CUdeviceptr dptr), (dptr))                                                    \
    X(cuArrayCreate_v2, (CUarray * pHandle, const CUDA_ARRAY_DESCRIPTOR *pAllocateArray),          \
      (pHandle, pAllocateArray))                                                                   \
    X(cuArray3DCreate_v2, (CUarray * pHandle, const CUDA_ARRAY3D_DESCRIPTOR *pAllocateArray),      \
      (pHandle, pAllocateArray))                                                                   \
    X(cuArrayDestroy, (CUarray hArray), (hArray))                                                  \
    X(cuMipmappedArrayCreate,                                                                      \
      (CUmipmappedArray * pHandle, const CUDA_ARRAY3D_DESCRIPTOR *pMipmappedArrayDesc,             \
       unsigned int numMipmapLevels),                                                              \
      (pHandle, pMipmappedArrayDesc, numMipmapLevels))                                             \
    X(cuMipmappedArrayDestroy, (CUmipmappedArray hMipmappedArray), (hMipmappedArray))              \
    X(cuMemCreate,                                                                                 \
      (CUmemGenericAllocationHandle * handle, size_t size, const CUmemAllocationProp *prop,        \
       unsigned long long flags),                                                                  \
      (handle, size, prop, flags))                                                                 \
    X(cuMemRelease, (CUmemGenericAllocationHandle handle), (handle))                               \
    X(cuMemMap,                                                                                    \
      (CUdeviceptr ptr, size_t size, size_t offset, CUmemGenericAllocationHandle handle,           \
       unsigned long long flags),                                                                  \
      (ptr, size, offset, handle, flags))                                                          \
    X(cuMemUnmap, (CUdeviceptr ptr, size_t size), (ptr, size))                                     \
    X(cuMemRetainAllocationHandle, (CUmemGenericAllocationHandle * handle, void *addr),            \
      (handle, addr))                                                                              \
    X(cuMemAllocAsync, (CUdeviceptr * dptr, size_t bytesize, CUstream hStream),                    \
      (dptr, bytesize, hStream))                                                                   \
    X(cuMemAllocAsync_ptsz, (CUdeviceptr * dptr, size_t bytesize, CUstream hStream),               \
      (dptr, bytesize, hStream))                                                                   \
    X(cuMemAllocFromPoolAsync,                                                                     \
      (CUdeviceptr * dptr, size_t bytesize, CUmemoryPool pool, CUstream hStream),                  \
      (dptr, bytesize, pool, hStream))                                                             \
    X(cuMemAllocFromPoolAsync_ptsz,                                                                \
      (CUdeviceptr * dptr, size_t bytesize, CUmemoryPool pool, CUstream hStream),                  \
      (dptr, bytesize, pool, hStream))                                                             \
    X(cuMemPoolTrimTo, (CUmemoryPool pool, size_t minBytesToKeep), (pool, minBytesToKeep))         \
    X(cuMemPoolDestroy, (CUmemoryPool pool), (pool))                                               \
    X(cuMemGetInfo_v2, (size_t *free, size_t *total), (free, total))                               \
    X(cuDeviceTotalMem_v2, (size_t *bytes, CUdevice dev), (bytes, dev))                            \
    X(cuGraphLaunch, (CUgraphExec hGraphExec, CUstream hStream), (hGraphExec, hStream))            \
    X(cuGraphLaunch_ptsz, (CUgraphExec hGraphExec, CUstream hStream), (hGraphExec, hStream))       \
    X(cuDeviceGraphMemTrim, (CUdevice device), (device))                                           \
    X(cuLaunchKernel, FX_LAUNCH_PARAMS, FX_LAUNCH_ARGS)                                            \
    X(cuLaunchKernel_ptsz, FX_LAUNCH_PARAMS, FX_LAUNCH_ARGS)                                       \
    X(cuLaunchKernelEx,                                                                            \
      (const CUlaunchConfig *config, CUfunction f, void **kernelParams, void **extra),             \
      (config, f, kernelParams, extra))                                                            \
    X(cuLaunchKernelEx_ptsz,                                                                       \
      (const CUlaunchConfig *config, CUfunction f, void **kernelParams, void **extra),             \
      (config, f, kernelParams, extra))                                                            \
    X(cuLaunchCooperativeKernel, FX_COOP_PARAMS, FX_COOP_ARGS)                                     \
    X(cuLaunchCooperativeKernel_ptsz, FX_COOP_PARAMS, FX_COOP_ARGS)                                \
    FX_CUDA_LEGACY_HOOKS(X)

/* The older ABI variants of the same functions, still exported and still
 * returned by cuGetProcAddress for the version that introduced them (real
 * cudart 12 and 13 ask for cuDevicePrimaryCtxRelease and _Reset at 7000,
 * NCCL for cuCtxCreate at 3020 and cuCtxDestroy at 4000). Each has a hook
 * with its own signature and semantics; test/conformance records what real
 * libraries ask for. */
#define FX_CUDA_LEGACY_HOOKS(X)                                                                    \
    X(cuCtxCreate, (CUcontext * pctx, unsigned int flags, CUdevice dev), (pctx, flags, dev))       \
    X(cuCtxDestroy, (CUcontext ctx), (ctx))                                                        \
    X(cuDevicePrimaryCtxRelease, (CUdevice dev), (dev))                                            \
    X(cuDevicePrimaryCtxReset, (CUdevice dev), (dev))                                              \
    X(cuMemAlloc, (CUdeviceptr_v1 * dptr, unsigned int bytesize), (dptr, bytesize))                \
    X(cuMemAllocPitch,                                                                             \
      (CUdeviceptr_v1 * dptr, unsigned int *pPitch, unsigned int WidthInBytes,                     \
       unsigned int Height, unsigned int ElementSizeBytes),                                        \
      (dptr, pPitch, WidthInBytes, Height, ElementSizeBytes))                                      \
    X(cuMemFree, (CUdeviceptr_v1 dptr), (dptr))                                                    \
    X(cuArrayCreate, (CUarray * pHandle, const CUDA_ARRAY_DESCRIPTOR_v1 *pAllocateArray),          \
      (pHandle, pAllocateArray))                                                                   \
    X(cuArray3DCreate, (CUarray * pHandle, const CUDA_ARRAY3D_DESCRIPTOR_v1 *pAllocateArray),      \
      (pHandle, pAllocateArray))                                                                   \
    X(cuMemGetInfo, (unsigned int *free, unsigned int *total), (free, total))                      \
    X(cuDeviceTotalMem, (unsigned int *bytes, CUdevice dev), (bytes, dev))                         \
    X(cuLaunch, (CUfunction f), (f))                                                               \
    X(cuLaunchGrid, (CUfunction f, int grid_width, int grid_height), (f, grid_width, grid_height)) \
    X(cuLaunchGridAsync, (CUfunction f, int grid_width, int grid_height, CUstream hStream),        \
      (f, grid_width, grid_height, hStream))                                                       \
    X(cuLaunchCooperativeKernelMultiDevice,                                                        \
      (CUDA_LAUNCH_PARAMS * launchParamsList, unsigned int numDevices, unsigned int flags),        \
      (launchParamsList, numDevices, flags))

/* Driver functions the library calls but does not replace. */
#define FX_CUDA_USED(X)                                                                            \
    X(cuDeviceGetCount, (int *count), (count))                                                     \
    X(cuDeviceGet, (CUdevice * device, int ordinal), (device, ordinal))                            \
    X(cuDeviceGetUuid, (CUuuid * uuid, CUdevice dev), (uuid, dev))                                 \
    X(cuDeviceGetUuid_v2, (CUuuid * uuid, CUdevice dev), (uuid, dev))                              \
    X(cuCtxGetDevice, (CUdevice * device), (device))                                               \
    X(cuStreamIsCapturing, (CUstream hStream, CUstreamCaptureStatus * captureStatus),              \
      (hStream, captureStatus))                                                                    \
    X(cuStreamIsCapturing_ptsz, (CUstream hStream, CUstreamCaptureStatus * captureStatus),         \
      (hStream, captureStatus))                                                                    \
    X(cuThreadExchangeStreamCaptureMode, (CUstreamCaptureMode * mode), (mode))                     \
    X(cuMemPoolGetAttribute, (CUmemoryPool pool, CUmemPool_attribute attr, void *value),           \
      (pool, attr, value))                                                                         \
    X(cuDeviceGetMemPool, (CUmemoryPool * pool, CUdevice dev), (pool, dev))                        \
    X(cuMemFreeAsync, (CUdeviceptr dptr, CUstream hStream), (dptr, hStream))                       \
    X(cuMemFreeAsync_ptsz, (CUdeviceptr dptr, CUstream hStream), (dptr, hStream))                  \
    X(cuMemGetAllocationGranularity,                                                               \
      (size_t *granularity, const CUmemAllocationProp *prop,                                       \
       CUmemAllocationGranularity_flags option),                                                   \
      (granularity, prop, option))                                                                 \
    X(cuDeviceGetGraphMemAttribute, (CUdevice device, CUgraphMem_attribute attr, void *value),     \
      (device, attr, value))                                                                       \
    X(cuEventCreate, (CUevent * phEvent, unsigned int Flags), (phEvent, Flags))                    \
    X(cuEventRecord, (CUevent hEvent, CUstream hStream), (hEvent, hStream))                        \
    X(cuEventRecord_ptsz, (CUevent hEvent, CUstream hStream), (hEvent, hStream))                   \
    X(cuEventQuery, (CUevent hEvent), (hEvent))                                                    \
    X(cuEventDestroy_v2, (CUevent hEvent), (hEvent))                                               \
    X(cuCtxGetCurrent, (CUcontext * pctx), (pctx))                                                 \
    X(cuCtxSetCurrent, (CUcontext ctx), (ctx))

#define FX_NVML_HOOKS(X)                                                                           \
    X(nvmlDeviceGetMemoryInfo, (nvmlDevice_t device, nvmlMemory_t *memory), (device, memory))      \
    X(nvmlDeviceGetMemoryInfo_v2, (nvmlDevice_t device, nvmlMemory_v2_t *memory),                  \
      (device, memory))

#define FX_NVML_USED(X)                                                                            \
    X(nvmlDeviceGetUUID, (nvmlDevice_t device, char *uuid, unsigned int length),                   \
      (device, uuid, length))                                                                      \
    X(nvmlInit_v2, (void), ())                                                                     \
    X(nvmlDeviceGetHandleByUUID, (const char *uuid, nvmlDevice_t *device), (uuid, device))         \
    X(nvmlDeviceGetClockInfo, (nvmlDevice_t device, nvmlClockType_t type, unsigned int *clock),    \
      (device, type, clock))

#define FX_DECLARE_PTR(name, params, args) CUresult (*name) params;
#define FX_DECLARE_NVML_PTR(name, params, args) nvmlReturn_t (*name) params;
struct fx_real {
    FX_CUDA_HOOKS(FX_DECLARE_PTR)
    FX_CUDA_USED(FX_DECLARE_PTR)
    FX_NVML_HOOKS(FX_DECLARE_NVML_PTR)
    FX_NVML_USED(FX_DECLARE_NVML_PTR)
};
#undef FX_DECLARE_PTR
#undef FX_DECLARE_NVML_PTR

/* The real functions; a NULL member is one the installed driver lacks. */
extern struct fx_real fx_real;

/* The exports, declared from the same lists so a hook with the wrong
 * signature does not compile. */
#define FX_EXPORT __attribute__((visibility("default")))
#define FX_DECLARE_HOOK(name, params, args) FX_EXPORT CUresult name params;
#define FX_DECLARE_NVML_HOOK(name, params, args) FX_EXPORT nvmlReturn_t name params;
FX_CUDA_HOOKS(FX_DECLARE_HOOK)
FX_NVML_HOOKS(FX_DECLARE_NVML_HOOK)
#undef FX_DECLARE_HOOK
#undef FX_DECLARE_NVML_HOOK

/* dlsym from libc, found with dlvsym so this library's own dlsym is skipped. */
void *fx_real_dlsym(void *handle, const char *name);

/* Loads libcuda.so.1 and fills the driver members of fx_real (once).
 * Returns 0, or -1 when there is no driver. */
int fx_driver_load(void);
/* Loads libnvidia-ml.so.1 and fills the NVML members (once). */
int fx_nvml_load(void);

/* Given a real entry point, the hook that replaces it, or NULL. */
void *fx_hook_for_real(const void *real);
/* Given an export name and the address the real lookup gave for it, the
 * hook to return instead, NULL to keep the real one, or FX_REFUSED for a
 * variant of a must-hook function that has no hook. */
#define FX_REFUSED ((void *)1)
void *fx_hook_for_name(const char *name, const void *real);

/* 1 when `symbol` (any variant) takes device memory or GPU time, so a
 * variant without a hook must not be handed out. */
int fx_must_hook(const char *symbol);

#endif
