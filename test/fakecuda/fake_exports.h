/* SPDX-License-Identifier: Apache-2.0 */
/* Every cu* function the fake libcuda.so.1 exports, with NVIDIA's published
 * signature (CUDA 12/13 ABI). Each fake_*.c includes this header, so a
 * definition that drifts from its declaration does not compile; fake_lookup.c
 * lists the same functions with the CUDA version each variant appeared in.
 *
 * Legacy variants: the pre-3.2 32-bit cuMemAlloc, cuMemAllocPitch and
 * cuMemFree answer CUDA_ERROR_NOT_SUPPORTED (the fake's addresses do not fit
 * 32 bits); cuMemGetInfo and cuDeviceTotalMem answer, clamped to 32 bits;
 * cuArrayCreate and cuArray3DCreate take 32-bit descriptors and work. Other
 * older variants with the current signature (cuCtxCreate, cuCtxDestroy,
 * cuDevicePrimaryCtxRelease/Reset, cuDeviceGetUuid, ...) behave like the
 * newest one. Pointer parameters whose struct the ABI header does not declare
 * (CUexecAffinityParam *, CUctxCreateParams *) are void *. */
#ifndef FAKE_EXPORTS_H
#define FAKE_EXPORTS_H

#include "fake_internal.h"

/* Initialization, version, errors, lookup. */
FAKE_API CUresult cuInit(unsigned int Flags);
FAKE_API CUresult cuDriverGetVersion(int *driverVersion);
FAKE_API CUresult cuGetErrorString(CUresult error, const char **pStr);
FAKE_API CUresult cuGetErrorName(CUresult error, const char **pStr);
FAKE_API CUresult cuGetProcAddress(const char *symbol, void **pfn, int cudaVersion,
                                   cuuint64_t flags);
FAKE_API CUresult cuGetProcAddress_v2(const char *symbol, void **pfn, int cudaVersion,
                                      cuuint64_t flags,
                                      CUdriverProcAddressQueryResult *symbolStatus);
FAKE_API CUresult cuGetExportTable(const void **ppExportTable, const CUuuid *pExportTableId);

/* Devices. */
FAKE_API CUresult cuDeviceGet(CUdevice *device, int ordinal);
FAKE_API CUresult cuDeviceGetCount(int *count);
FAKE_API CUresult cuDeviceGetName(char *name, int len, CUdevice dev);
FAKE_API CUresult cuDeviceTotalMem(unsigned int *bytes, CUdevice dev);
FAKE_API CUresult cuDeviceTotalMem_v2(size_t *bytes, CUdevice dev);
FAKE_API CUresult cuDeviceGetAttribute(int *pi, CUdevice_attribute attrib, CUdevice dev);
FAKE_API CUresult cuDeviceGetPCIBusId(char *pciBusId, int len, CUdevice dev);
FAKE_API CUresult cuDeviceGetUuid(CUuuid *uuid, CUdevice dev);
FAKE_API CUresult cuDeviceGetUuid_v2(CUuuid *uuid, CUdevice dev);

/* Contexts. */
FAKE_API CUresult cuCtxCreate(CUcontext *pctx, unsigned int flags, CUdevice dev);
FAKE_API CUresult cuCtxCreate_v2(CUcontext *pctx, unsigned int flags, CUdevice dev);
FAKE_API CUresult cuCtxCreate_v3(CUcontext *pctx, void *paramsArray, int numParams,
                                 unsigned int flags, CUdevice dev);
FAKE_API CUresult cuCtxCreate_v4(CUcontext *pctx, void *ctxCreateParams, unsigned int flags,
                                 CUdevice dev);
FAKE_API CUresult cuCtxDestroy_v2(CUcontext ctx);
FAKE_API CUresult cuCtxPushCurrent_v2(CUcontext ctx);
FAKE_API CUresult cuCtxPopCurrent_v2(CUcontext *pctx);
FAKE_API CUresult cuCtxSetCurrent(CUcontext ctx);
FAKE_API CUresult cuCtxGetCurrent(CUcontext *pctx);
FAKE_API CUresult cuCtxGetDevice(CUdevice *device);
FAKE_API CUresult cuCtxSynchronize(void);
FAKE_API CUresult cuDevicePrimaryCtxRetain(CUcontext *pctx, CUdevice dev);
FAKE_API CUresult cuDevicePrimaryCtxRelease(CUdevice dev);
FAKE_API CUresult cuDevicePrimaryCtxRelease_v2(CUdevice dev);
FAKE_API CUresult cuDevicePrimaryCtxReset_v2(CUdevice dev);
FAKE_API CUresult cuDevicePrimaryCtxGetState(CUdevice dev, unsigned int *flags, int *active);
FAKE_API CUresult cuCtxDestroy(CUcontext ctx);
FAKE_API CUresult cuDevicePrimaryCtxReset(CUdevice dev);

/* Classic, host, array and IPC memory. */
FAKE_API CUresult cuMemAlloc(unsigned int *dptr, unsigned int bytesize);
FAKE_API CUresult cuMemAllocPitch(unsigned int *dptr, unsigned int *pPitch, unsigned int WidthInBytes,
                                  unsigned int Height, unsigned int ElementSizeBytes);
/* A stand-in for a variant that a driver newer than the library may add:
 * the library has no hook for it and must refuse it. */
FAKE_API CUresult cuMemAlloc_v9(CUdeviceptr *dptr, size_t bytesize);
FAKE_API CUresult cuMemAlloc_v2(CUdeviceptr *dptr, size_t bytesize);
FAKE_API CUresult cuMemAllocPitch_v2(CUdeviceptr *dptr, size_t *pPitch, size_t WidthInBytes,
                                     size_t Height, unsigned int ElementSizeBytes);
FAKE_API CUresult cuMemAllocManaged(CUdeviceptr *dptr, size_t bytesize, unsigned int flags);
FAKE_API CUresult cuMemFree(unsigned int dptr);
FAKE_API CUresult cuMemFree_v2(CUdeviceptr dptr);
FAKE_API CUresult cuMemGetInfo(unsigned int *free_bytes, unsigned int *total_bytes);
FAKE_API CUresult cuMemGetInfo_v2(size_t *free_bytes, size_t *total_bytes);
FAKE_API CUresult cuMemAllocHost_v2(void **pp, size_t bytesize);
FAKE_API CUresult cuMemHostAlloc(void **pp, size_t bytesize, unsigned int Flags);
FAKE_API CUresult cuMemFreeHost(void *p);
FAKE_API CUresult cuArrayCreate_v2(CUarray *pHandle, const CUDA_ARRAY_DESCRIPTOR *pAllocateArray);
FAKE_API CUresult cuArrayCreate(CUarray *pHandle, const CUDA_ARRAY_DESCRIPTOR_v1 *pAllocateArray);
FAKE_API CUresult cuArray3DCreate(CUarray *pHandle,
                                  const CUDA_ARRAY3D_DESCRIPTOR_v1 *pAllocateArray);
FAKE_API CUresult cuArray3DCreate_v2(CUarray *pHandle,
                                     const CUDA_ARRAY3D_DESCRIPTOR *pAllocateArray);
FAKE_API CUresult cuArrayDestroy(CUarray hArray);
FAKE_API CUresult cuMipmappedArrayCreate(CUmipmappedArray *pHandle,
                                         const CUDA_ARRAY3D_DESCRIPTOR *pMipmappedArrayDesc,
                                         unsigned int numMipmapLevels);
FAKE_API CUresult cuMipmappedArrayDestroy(CUmipmappedArray hMipmappedArray);
FAKE_API CUresult cuIpcGetMemHandle(CUipcMemHandle *pHandle, CUdeviceptr dptr);
FAKE_API CUresult cuIpcOpenMemHandle(CUdeviceptr *pdptr, CUipcMemHandle handle, unsigned int Flags);
FAKE_API CUresult cuIpcOpenMemHandle_v2(CUdeviceptr *pdptr, CUipcMemHandle handle,
                                        unsigned int Flags);
FAKE_API CUresult cuIpcCloseMemHandle(CUdeviceptr dptr);

/* Virtual memory management. */
FAKE_API CUresult cuMemGetAllocationGranularity(size_t *granularity,
                                                const CUmemAllocationProp *prop,
                                                CUmemAllocationGranularity_flags option);
FAKE_API CUresult cuMemCreate(CUmemGenericAllocationHandle *handle, size_t size,
                              const CUmemAllocationProp *prop, unsigned long long flags);
FAKE_API CUresult cuMemRelease(CUmemGenericAllocationHandle handle);
FAKE_API CUresult cuMemRetainAllocationHandle(CUmemGenericAllocationHandle *handle, void *addr);
FAKE_API CUresult cuMemAddressReserve(CUdeviceptr *ptr, size_t size, size_t alignment,
                                      CUdeviceptr addr, unsigned long long flags);
FAKE_API CUresult cuMemAddressFree(CUdeviceptr ptr, size_t size);
FAKE_API CUresult cuMemMap(CUdeviceptr ptr, size_t size, size_t offset,
                           CUmemGenericAllocationHandle handle, unsigned long long flags);
FAKE_API CUresult cuMemUnmap(CUdeviceptr ptr, size_t size);
FAKE_API CUresult cuMemSetAccess(CUdeviceptr ptr, size_t size, const CUmemAccessDesc *desc,
                                 size_t count);
FAKE_API CUresult cuMemExportToShareableHandle(void *shareableHandle,
                                               CUmemGenericAllocationHandle handle,
                                               CUmemAllocationHandleType handleType,
                                               unsigned long long flags);
FAKE_API CUresult cuMemImportFromShareableHandle(CUmemGenericAllocationHandle *handle,
                                                 void *osHandle,
                                                 CUmemAllocationHandleType shHandleType);

/* Stream-ordered memory pools. */
FAKE_API CUresult cuDeviceGetDefaultMemPool(CUmemoryPool *pool_out, CUdevice dev);
FAKE_API CUresult cuDeviceGetMemPool(CUmemoryPool *pool, CUdevice dev);
FAKE_API CUresult cuDeviceSetMemPool(CUdevice dev, CUmemoryPool pool);
FAKE_API CUresult cuMemPoolCreate(CUmemoryPool *pool, const CUmemPoolProps *poolProps);
FAKE_API CUresult cuMemPoolDestroy(CUmemoryPool pool);
FAKE_API CUresult cuMemPoolGetAttribute(CUmemoryPool pool, CUmemPool_attribute attr, void *value);
FAKE_API CUresult cuMemPoolSetAttribute(CUmemoryPool pool, CUmemPool_attribute attr, void *value);
FAKE_API CUresult cuMemPoolTrimTo(CUmemoryPool pool, size_t minBytesToKeep);
FAKE_API CUresult cuMemAllocAsync(CUdeviceptr *dptr, size_t bytesize, CUstream hStream);
FAKE_API CUresult cuMemAllocAsync_ptsz(CUdeviceptr *dptr, size_t bytesize, CUstream hStream);
FAKE_API CUresult cuMemAllocFromPoolAsync(CUdeviceptr *dptr, size_t bytesize, CUmemoryPool pool,
                                          CUstream hStream);
FAKE_API CUresult cuMemAllocFromPoolAsync_ptsz(CUdeviceptr *dptr, size_t bytesize,
                                               CUmemoryPool pool, CUstream hStream);
FAKE_API CUresult cuMemFreeAsync(CUdeviceptr dptr, CUstream hStream);
FAKE_API CUresult cuMemFreeAsync_ptsz(CUdeviceptr dptr, CUstream hStream);

/* Streams and events. */
FAKE_API CUresult cuStreamCreate(CUstream *phStream, unsigned int Flags);
FAKE_API CUresult cuStreamCreateWithPriority(CUstream *phStream, unsigned int flags, int priority);
FAKE_API CUresult cuStreamDestroy_v2(CUstream hStream);
FAKE_API CUresult cuStreamSynchronize(CUstream hStream);
FAKE_API CUresult cuStreamSynchronize_ptsz(CUstream hStream);
FAKE_API CUresult cuStreamQuery(CUstream hStream);
FAKE_API CUresult cuStreamQuery_ptsz(CUstream hStream);
FAKE_API CUresult cuStreamGetCtx(CUstream hStream, CUcontext *pctx);
FAKE_API CUresult cuStreamGetCtx_ptsz(CUstream hStream, CUcontext *pctx);
FAKE_API CUresult cuStreamWaitEvent(CUstream hStream, CUevent hEvent, unsigned int Flags);
FAKE_API CUresult cuStreamWaitEvent_ptsz(CUstream hStream, CUevent hEvent, unsigned int Flags);
FAKE_API CUresult cuEventCreate(CUevent *phEvent, unsigned int Flags);
FAKE_API CUresult cuEventRecord(CUevent hEvent, CUstream hStream);
FAKE_API CUresult cuEventRecord_ptsz(CUevent hEvent, CUstream hStream);
FAKE_API CUresult cuEventRecordWithFlags(CUevent hEvent, CUstream hStream, unsigned int flags);
FAKE_API CUresult cuEventRecordWithFlags_ptsz(CUevent hEvent, CUstream hStream, unsigned int flags);
FAKE_API CUresult cuEventQuery(CUevent hEvent);
FAKE_API CUresult cuEventSynchronize(CUevent hEvent);
FAKE_API CUresult cuEventElapsedTime(float *pMilliseconds, CUevent hStart, CUevent hEnd);
FAKE_API CUresult cuEventElapsedTime_v2(float *pMilliseconds, CUevent hStart, CUevent hEnd);
FAKE_API CUresult cuEventDestroy_v2(CUevent hEvent);

/* Kernel launches. */
FAKE_API CUresult cuLaunchKernel(CUfunction f, unsigned int gridDimX, unsigned int gridDimY,
                                 unsigned int gridDimZ, unsigned int blockDimX,
                                 unsigned int blockDimY, unsigned int blockDimZ,
                                 unsigned int sharedMemBytes, CUstream hStream, void **kernelParams,
                                 void **extra);
FAKE_API CUresult cuLaunchKernel_ptsz(CUfunction f, unsigned int gridDimX, unsigned int gridDimY,
                                      unsigned int gridDimZ, unsigned int blockDimX,
                                      unsigned int blockDimY, unsigned int blockDimZ,
                                      unsigned int sharedMemBytes, CUstream hStream,
                                      void **kernelParams, void **extra);
FAKE_API CUresult cuLaunchKernelEx(const CUlaunchConfig *config, CUfunction f, void **kernelParams,
                                   void **extra);
FAKE_API CUresult cuLaunchKernelEx_ptsz(const CUlaunchConfig *config, CUfunction f,
                                        void **kernelParams, void **extra);
FAKE_API CUresult cuLaunchCooperativeKernel(CUfunction f, unsigned int gridDimX,
                                            unsigned int gridDimY, unsigned int gridDimZ,
                                            unsigned int blockDimX, unsigned int blockDimY,
                                            unsigned int blockDimZ, unsigned int sharedMemBytes,
                                            CUstream hStream, void **kernelParams);
FAKE_API CUresult cuLaunchCooperativeKernel_ptsz(CUfunction f, unsigned int gridDimX,
                                                 unsigned int gridDimY, unsigned int gridDimZ,
                                                 unsigned int blockDimX, unsigned int blockDimY,
                                                 unsigned int blockDimZ,
                                                 unsigned int sharedMemBytes, CUstream hStream,
                                                 void **kernelParams);
/* The pre-4.0 launch API: parameters set on the function beforehand
 * (cuParamSeti at offset 0 sets a fake kernel's duration in microseconds,
 * as kernelParams[0] does for cuLaunchKernel). */
FAKE_API CUresult cuParamSeti(CUfunction hfunc, int offset, unsigned int value);
FAKE_API CUresult cuLaunch(CUfunction f);
FAKE_API CUresult cuLaunchGrid(CUfunction f, int grid_width, int grid_height);
FAKE_API CUresult cuLaunchGridAsync(CUfunction f, int grid_width, int grid_height, CUstream hStream);
FAKE_API CUresult cuLaunchCooperativeKernelMultiDevice(CUDA_LAUNCH_PARAMS *launchParamsList,
                                                       unsigned int numDevices,
                                                       unsigned int flags);

/* Stream capture and graphs. */
FAKE_API CUresult cuStreamBeginCapture(CUstream hStream);
FAKE_API CUresult cuStreamBeginCapture_ptsz(CUstream hStream);
FAKE_API CUresult cuStreamBeginCapture_v2(CUstream hStream, CUstreamCaptureMode mode);
FAKE_API CUresult cuStreamBeginCapture_v2_ptsz(CUstream hStream, CUstreamCaptureMode mode);
FAKE_API CUresult cuStreamEndCapture(CUstream hStream, CUgraph *phGraph);
FAKE_API CUresult cuStreamEndCapture_ptsz(CUstream hStream, CUgraph *phGraph);
FAKE_API CUresult cuStreamIsCapturing(CUstream hStream, CUstreamCaptureStatus *captureStatus);
FAKE_API CUresult cuStreamIsCapturing_ptsz(CUstream hStream, CUstreamCaptureStatus *captureStatus);
FAKE_API CUresult cuStreamGetCaptureInfo(CUstream hStream, CUstreamCaptureStatus *captureStatus_out,
                                         cuuint64_t *id_out);
FAKE_API CUresult cuStreamGetCaptureInfo_ptsz(CUstream hStream,
                                              CUstreamCaptureStatus *captureStatus_out,
                                              cuuint64_t *id_out);
FAKE_API CUresult cuStreamGetCaptureInfo_v2(CUstream hStream,
                                            CUstreamCaptureStatus *captureStatus_out,
                                            cuuint64_t *id_out, CUgraph *graph_out,
                                            const CUgraphNode **dependencies_out,
                                            size_t *numDependencies_out);
FAKE_API CUresult cuStreamGetCaptureInfo_v2_ptsz(CUstream hStream,
                                                 CUstreamCaptureStatus *captureStatus_out,
                                                 cuuint64_t *id_out, CUgraph *graph_out,
                                                 const CUgraphNode **dependencies_out,
                                                 size_t *numDependencies_out);
FAKE_API CUresult cuStreamGetCaptureInfo_v3(CUstream hStream,
                                            CUstreamCaptureStatus *captureStatus_out,
                                            cuuint64_t *id_out, CUgraph *graph_out,
                                            const CUgraphNode **dependencies_out,
                                            const CUgraphEdgeData **edgeData_out,
                                            size_t *numDependencies_out);
FAKE_API CUresult cuStreamGetCaptureInfo_v3_ptsz(CUstream hStream,
                                                 CUstreamCaptureStatus *captureStatus_out,
                                                 cuuint64_t *id_out, CUgraph *graph_out,
                                                 const CUgraphNode **dependencies_out,
                                                 const CUgraphEdgeData **edgeData_out,
                                                 size_t *numDependencies_out);
FAKE_API CUresult cuThreadExchangeStreamCaptureMode(CUstreamCaptureMode *mode);
FAKE_API CUresult cuGraphInstantiate(CUgraphExec *phGraphExec, CUgraph hGraph,
                                     CUgraphNode *phErrorNode, char *logBuffer, size_t bufferSize);
FAKE_API CUresult cuGraphInstantiate_v2(CUgraphExec *phGraphExec, CUgraph hGraph,
                                        CUgraphNode *phErrorNode, char *logBuffer,
                                        size_t bufferSize);
FAKE_API CUresult cuGraphInstantiateWithFlags(CUgraphExec *phGraphExec, CUgraph hGraph,
                                              unsigned long long flags);
FAKE_API CUresult cuGraphDestroy(CUgraph hGraph);
FAKE_API CUresult cuGraphExecDestroy(CUgraphExec hGraphExec);
FAKE_API CUresult cuGraphLaunch(CUgraphExec hGraphExec, CUstream hStream);
FAKE_API CUresult cuGraphLaunch_ptsz(CUgraphExec hGraphExec, CUstream hStream);
FAKE_API CUresult cuDeviceGetGraphMemAttribute(CUdevice device, CUgraphMem_attribute attr,
                                               void *value);
FAKE_API CUresult cuDeviceSetGraphMemAttribute(CUdevice device, CUgraphMem_attribute attr,
                                               void *value);
FAKE_API CUresult cuDeviceGraphMemTrim(CUdevice device);

/* Modules, functions and copies (fake_module.c). */
FAKE_API CUresult cuModuleLoadData(CUmodule *module, const void *image);
FAKE_API CUresult cuModuleUnload(CUmodule hmod);
FAKE_API CUresult cuModuleGetFunction(CUfunction *hfunc, CUmodule hmod, const char *name);
FAKE_API CUresult cuFuncGetParamInfo(CUfunction func, size_t paramIndex, size_t *paramOffset,
                                     size_t *paramSize);
FAKE_API CUresult cuMemcpyHtoD_v2(CUdeviceptr dst, const void *src, size_t n);
FAKE_API CUresult cuMemcpyDtoH_v2(void *dst, CUdeviceptr src, size_t n);
FAKE_API CUresult cuMemcpyDtoD_v2(CUdeviceptr dst, CUdeviceptr src, size_t n);
FAKE_API CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr dst, const void *src, size_t n, CUstream s);
FAKE_API CUresult cuMemcpyDtoHAsync_v2(void *dst, CUdeviceptr src, size_t n, CUstream s);
FAKE_API CUresult cuMemcpyDtoDAsync_v2(CUdeviceptr dst, CUdeviceptr src, size_t n, CUstream s);
FAKE_API CUresult cuMemsetD8_v2(CUdeviceptr dst, unsigned char value, size_t n);
FAKE_API CUresult cuMemsetD8Async(CUdeviceptr dst, unsigned char value, size_t n, CUstream s);

/* Test-only helpers (fakecuda.h). */
FAKE_API unsigned long long fakecuda_busy_us(int device);
FAKE_API CUresult fakecuda_graph_exec_create(CUgraphExec *out, unsigned duration_us,
                                             size_t graph_mem_bytes);
FAKE_API unsigned long long fakecuda_used_bytes(int device);

#endif
