/* SPDX-License-Identifier: Apache-2.0 */
/* cuGetProcAddress: maps a base name ("cuMemAlloc"), a CUDA version and
 * flags to the exported variant ("cuMemAlloc_v2") the real driver would
 * return. The table is the one list of what the fake exports: every row
 * names an exported function, and the self-test checks that every exported
 * cu* function is reachable through some row. */
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

#include "fake_exports.h"

/* X(base name, exported variant, first CUDA version it is returned for,
 *   1 if it is the per-thread default stream (_ptsz) variant). */
#define FAKE_SYMBOLS(X)                                                                            \
    X(cuInit, cuInit, 2000, 0)                                                                     \
    X(cuDriverGetVersion, cuDriverGetVersion, 2020, 0)                                             \
    X(cuGetErrorString, cuGetErrorString, 6000, 0)                                                 \
    X(cuGetErrorName, cuGetErrorName, 6000, 0)                                                     \
    X(cuGetProcAddress, cuGetProcAddress, 11030, 0)                                                \
    X(cuGetProcAddress, cuGetProcAddress_v2, 12000, 0)                                             \
    X(cuGetExportTable, cuGetExportTable, 3000, 0)                                                 \
    X(cuDeviceGet, cuDeviceGet, 2000, 0)                                                           \
    X(cuDeviceGetCount, cuDeviceGetCount, 2000, 0)                                                 \
    X(cuDeviceGetName, cuDeviceGetName, 2000, 0)                                                   \
    X(cuDeviceTotalMem, cuDeviceTotalMem, 2000, 0)                                                 \
    X(cuDeviceTotalMem, cuDeviceTotalMem_v2, 3020, 0)                                              \
    X(cuDeviceGetAttribute, cuDeviceGetAttribute, 2000, 0)                                         \
    X(cuDeviceGetPCIBusId, cuDeviceGetPCIBusId, 4010, 0)                                           \
    X(cuDeviceGetUuid, cuDeviceGetUuid, 9020, 0)                                                   \
    X(cuDeviceGetUuid, cuDeviceGetUuid_v2, 11040, 0)                                               \
    X(cuCtxCreate, cuCtxCreate, 2000, 0)                                                           \
    X(cuCtxCreate, cuCtxCreate_v2, 3020, 0)                                                        \
    X(cuCtxCreate, cuCtxCreate_v3, 11040, 0)                                                       \
    X(cuCtxCreate, cuCtxCreate_v4, 12050, 0)                                                       \
    X(cuCtxDestroy, cuCtxDestroy, 2000, 0)                                                         \
    X(cuCtxDestroy, cuCtxDestroy_v2, 4000, 0)                                                      \
    X(cuCtxPushCurrent, cuCtxPushCurrent_v2, 4000, 0)                                              \
    X(cuCtxPopCurrent, cuCtxPopCurrent_v2, 4000, 0)                                                \
    X(cuCtxSetCurrent, cuCtxSetCurrent, 4000, 0)                                                   \
    X(cuCtxGetCurrent, cuCtxGetCurrent, 4000, 0)                                                   \
    X(cuCtxGetDevice, cuCtxGetDevice, 2000, 0)                                                     \
    X(cuCtxSynchronize, cuCtxSynchronize, 2000, 0)                                                 \
    X(cuDevicePrimaryCtxRetain, cuDevicePrimaryCtxRetain, 7000, 0)                                 \
    X(cuDevicePrimaryCtxRelease, cuDevicePrimaryCtxRelease, 7000, 0)                               \
    X(cuDevicePrimaryCtxRelease, cuDevicePrimaryCtxRelease_v2, 11000, 0)                           \
    X(cuDevicePrimaryCtxReset, cuDevicePrimaryCtxReset, 7000, 0)                                   \
    X(cuDevicePrimaryCtxReset, cuDevicePrimaryCtxReset_v2, 11000, 0)                               \
    X(cuDevicePrimaryCtxGetState, cuDevicePrimaryCtxGetState, 7000, 0)                             \
    X(cuMemAlloc, cuMemAlloc, 2000, 0)                                                             \
    X(cuMemAlloc, cuMemAlloc_v2, 3020, 0)                                                          \
    X(cuMemAlloc, cuMemAlloc_v9, 99000, 0)                                                         \
    X(cuMemAllocPitch, cuMemAllocPitch, 2000, 0)                                                   \
    X(cuMemAllocPitch, cuMemAllocPitch_v2, 3020, 0)                                                \
    X(cuMemAllocManaged, cuMemAllocManaged, 6000, 0)                                               \
    X(cuMemFree, cuMemFree, 2000, 0)                                                               \
    X(cuMemFree, cuMemFree_v2, 3020, 0)                                                            \
    X(cuMemGetInfo, cuMemGetInfo, 2000, 0)                                                         \
    X(cuMemGetInfo, cuMemGetInfo_v2, 3020, 0)                                                      \
    X(cuMemAllocHost, cuMemAllocHost_v2, 3020, 0)                                                  \
    X(cuMemHostAlloc, cuMemHostAlloc, 2020, 0)                                                     \
    X(cuMemFreeHost, cuMemFreeHost, 2000, 0)                                                       \
    X(cuArrayCreate, cuArrayCreate, 2000, 0)                                                       \
    X(cuArrayCreate, cuArrayCreate_v2, 3020, 0)                                                    \
    X(cuArray3DCreate, cuArray3DCreate, 2000, 0)                                                   \
    X(cuArray3DCreate, cuArray3DCreate_v2, 3020, 0)                                                \
    X(cuArrayDestroy, cuArrayDestroy, 2000, 0)                                                     \
    X(cuMipmappedArrayCreate, cuMipmappedArrayCreate, 5000, 0)                                     \
    X(cuMipmappedArrayDestroy, cuMipmappedArrayDestroy, 5000, 0)                                   \
    X(cuIpcGetMemHandle, cuIpcGetMemHandle, 4010, 0)                                               \
    X(cuIpcOpenMemHandle, cuIpcOpenMemHandle, 4010, 0)                                             \
    X(cuIpcOpenMemHandle, cuIpcOpenMemHandle_v2, 11000, 0)                                         \
    X(cuIpcCloseMemHandle, cuIpcCloseMemHandle, 4010, 0)                                           \
    X(cuMemGetAllocationGranularity, cuMemGetAllocationGranularity, 10020, 0)                      \
    X(cuMemCreate, cuMemCreate, 10020, 0)                                                          \
    X(cuMemRelease, cuMemRelease, 10020, 0)                                                        \
    X(cuMemRetainAllocationHandle, cuMemRetainAllocationHandle, 11000, 0)                          \
    X(cuMemAddressReserve, cuMemAddressReserve, 10020, 0)                                          \
    X(cuMemAddressFree, cuMemAddressFree, 10020, 0)                                                \
    X(cuMemMap, cuMemMap, 10020, 0)                                                                \
    X(cuMemUnmap, cuMemUnmap, 10020, 0)                                                            \
    X(cuMemSetAccess, cuMemSetAccess, 10020, 0)                                                    \
    X(cuMemExportToShareableHandle, cuMemExportToShareableHandle, 10020, 0)                        \
    X(cuMemImportFromShareableHandle, cuMemImportFromShareableHandle, 10020, 0)                    \
    X(cuDeviceGetDefaultMemPool, cuDeviceGetDefaultMemPool, 11020, 0)                              \
    X(cuDeviceGetMemPool, cuDeviceGetMemPool, 11020, 0)                                            \
    X(cuDeviceSetMemPool, cuDeviceSetMemPool, 11020, 0)                                            \
    X(cuMemPoolCreate, cuMemPoolCreate, 11020, 0)                                                  \
    X(cuMemPoolDestroy, cuMemPoolDestroy, 11020, 0)                                                \
    X(cuMemPoolGetAttribute, cuMemPoolGetAttribute, 11020, 0)                                      \
    X(cuMemPoolSetAttribute, cuMemPoolSetAttribute, 11020, 0)                                      \
    X(cuMemPoolTrimTo, cuMemPoolTrimTo, 11020, 0)                                                  \
    X(cuMemAllocAsync, cuMemAllocAsync, 11020, 0)                                                  \
    X(cuMemAllocAsync, cuMemAllocAsync_ptsz, 11020, 1)                                             \
    X(cuMemAllocFromPoolAsync, cuMemAllocFromPoolAsync, 11020, 0)                                  \
    X(cuMemAllocFromPoolAsync, cuMemAllocFromPoolAsync_ptsz, 11020, 1)                             \
    X(cuMemFreeAsync, cuMemFreeAsync, 11020, 0)                                                    \
    X(cuMemFreeAsync, cuMemFreeAsync_ptsz, 11020, 1)                                               \
    X(cuStreamCreate, cuStreamCreate, 2000, 0)                                                     \
    X(cuStreamCreateWithPriority, cuStreamCreateWithPriority, 5050, 0)                             \
    X(cuStreamDestroy, cuStreamDestroy_v2, 4000, 0)                                                \
    X(cuStreamSynchronize, cuStreamSynchronize, 2000, 0)                                           \
    X(cuStreamSynchronize, cuStreamSynchronize_ptsz, 7000, 1)                                      \
    X(cuStreamQuery, cuStreamQuery, 2000, 0)                                                       \
    X(cuStreamQuery, cuStreamQuery_ptsz, 7000, 1)                                                  \
    X(cuStreamGetCtx, cuStreamGetCtx, 9020, 0)                                                     \
    X(cuStreamGetCtx, cuStreamGetCtx_ptsz, 9020, 1)                                                \
    X(cuStreamWaitEvent, cuStreamWaitEvent, 3020, 0)                                               \
    X(cuStreamWaitEvent, cuStreamWaitEvent_ptsz, 7000, 1)                                          \
    X(cuEventCreate, cuEventCreate, 2000, 0)                                                       \
    X(cuEventRecord, cuEventRecord, 2000, 0)                                                       \
    X(cuEventRecord, cuEventRecord_ptsz, 7000, 1)                                                  \
    X(cuEventRecordWithFlags, cuEventRecordWithFlags, 11010, 0)                                    \
    X(cuEventRecordWithFlags, cuEventRecordWithFlags_ptsz, 11010, 1)                               \
    X(cuEventQuery, cuEventQuery, 2000, 0)                                                         \
    X(cuEventSynchronize, cuEventSynchronize, 2000, 0)                                             \
    X(cuEventElapsedTime, cuEventElapsedTime, 2000, 0)                                             \
    X(cuEventElapsedTime, cuEventElapsedTime_v2, 12080, 0)                                         \
    X(cuEventDestroy, cuEventDestroy_v2, 4000, 0)                                                  \
    X(cuModuleLoadData, cuModuleLoadData, 2000, 0)                                                 \
    X(cuModuleUnload, cuModuleUnload, 2000, 0)                                                     \
    X(cuModuleGetFunction, cuModuleGetFunction, 2000, 0)                                           \
    X(cuFuncGetParamInfo, cuFuncGetParamInfo, 12040, 0)                                            \
    X(cuMemcpyHtoD, cuMemcpyHtoD_v2, 3020, 0)                                                      \
    X(cuMemcpyDtoH, cuMemcpyDtoH_v2, 3020, 0)                                                      \
    X(cuMemcpyDtoD, cuMemcpyDtoD_v2, 3020, 0)                                                      \
    X(cuMemcpyHtoDAsync, cuMemcpyHtoDAsync_v2, 3020, 0)                                            \
    X(cuMemcpyDtoHAsync, cuMemcpyDtoHAsync_v2, 3020, 0)                                            \
    X(cuMemcpyDtoDAsync, cuMemcpyDtoDAsync_v2, 3020, 0)                                            \
    X(cuMemsetD8, cuMemsetD8_v2, 3020, 0)                                                          \
    X(cuMemsetD8Async, cuMemsetD8Async, 3020, 0)                                                   \
    X(cuLaunchKernel, cuLaunchKernel, 4000, 0)                                                     \
    X(cuLaunchKernel, cuLaunchKernel_ptsz, 7000, 1)                                                \
    X(cuLaunchKernelEx, cuLaunchKernelEx, 11060, 0)                                                \
    X(cuLaunchKernelEx, cuLaunchKernelEx_ptsz, 11060, 1)                                           \
    X(cuLaunchCooperativeKernel, cuLaunchCooperativeKernel, 9000, 0)                               \
    X(cuLaunchCooperativeKernel, cuLaunchCooperativeKernel_ptsz, 9000, 1)                          \
    X(cuLaunchCooperativeKernelMultiDevice, cuLaunchCooperativeKernelMultiDevice, 9000, 0)         \
    X(cuParamSeti, cuParamSeti, 2000, 0)                                                           \
    X(cuLaunch, cuLaunch, 2000, 0)                                                                 \
    X(cuLaunchGrid, cuLaunchGrid, 2000, 0)                                                         \
    X(cuLaunchGridAsync, cuLaunchGridAsync, 2000, 0)                                               \
    X(cuStreamBeginCapture, cuStreamBeginCapture, 10000, 0)                                        \
    X(cuStreamBeginCapture, cuStreamBeginCapture_ptsz, 10000, 1)                                   \
    X(cuStreamBeginCapture, cuStreamBeginCapture_v2, 10010, 0)                                     \
    X(cuStreamBeginCapture, cuStreamBeginCapture_v2_ptsz, 10010, 1)                                \
    X(cuStreamEndCapture, cuStreamEndCapture, 10000, 0)                                            \
    X(cuStreamEndCapture, cuStreamEndCapture_ptsz, 10000, 1)                                       \
    X(cuStreamIsCapturing, cuStreamIsCapturing, 10000, 0)                                          \
    X(cuStreamIsCapturing, cuStreamIsCapturing_ptsz, 10000, 1)                                     \
    X(cuStreamGetCaptureInfo, cuStreamGetCaptureInfo, 10010, 0)                                    \
    X(cuStreamGetCaptureInfo, cuStreamGetCaptureInfo_ptsz, 10010, 1)                               \
    X(cuStreamGetCaptureInfo, cuStreamGetCaptureInfo_v2, 11030, 0)                                 \
    X(cuStreamGetCaptureInfo, cuStreamGetCaptureInfo_v2_ptsz, 11030, 1)                            \
    X(cuStreamGetCaptureInfo, cuStreamGetCaptureInfo_v3, 12030, 0)                                 \
    X(cuStreamGetCaptureInfo, cuStreamGetCaptureInfo_v3_ptsz, 12030, 1)                            \
    X(cuThreadExchangeStreamCaptureMode, cuThreadExchangeStreamCaptureMode, 10010, 0)              \
    X(cuGraphInstantiate, cuGraphInstantiate, 10000, 0)                                            \
    X(cuGraphInstantiate, cuGraphInstantiate_v2, 11000, 0)                                         \
    X(cuGraphInstantiate, cuGraphInstantiateWithFlags, 12000, 0)                                   \
    X(cuGraphInstantiateWithFlags, cuGraphInstantiateWithFlags, 11040, 0)                          \
    X(cuGraphDestroy, cuGraphDestroy, 10000, 0)                                                    \
    X(cuGraphExecDestroy, cuGraphExecDestroy, 10000, 0)                                            \
    X(cuGraphLaunch, cuGraphLaunch, 10000, 0)                                                      \
    X(cuGraphLaunch, cuGraphLaunch_ptsz, 10000, 1)                                                 \
    X(cuDeviceGetGraphMemAttribute, cuDeviceGetGraphMemAttribute, 11040, 0)                        \
    X(cuDeviceSetGraphMemAttribute, cuDeviceSetGraphMemAttribute, 11040, 0)                        \
    X(cuDeviceGraphMemTrim, cuDeviceGraphMemTrim, 11040, 0)

struct symbol_row {
    const char *base;
    const char *name;
    void *fn;
    int version;
    int ptsz;
};

/* A function's address as a data pointer: what dlsym and cuGetProcAddress
 * return (defined on POSIX systems, which is all the fake builds for). */
static const struct symbol_row symbol_table[] = {
#define FAKE_SYMBOL_ROW(base, name, version, ptsz) {#base, #name, (void *)name, version, ptsz},
    FAKE_SYMBOLS(FAKE_SYMBOL_ROW)
#undef FAKE_SYMBOL_ROW
};

/* With FAKECUDA_LOOKUP_LOG set, every request is appended to that file as
 * "symbol version flags answer" (answer: the variant returned, or "-"), so
 * a test can see what real libraries (libcudart, cuBLAS) ask the driver
 * for. One write per line, O_APPEND: lines of concurrent threads and
 * processes do not mix. */
static void record(const char *symbol, int version, cuuint64_t flags, const char *answer)
{
    const char *path = getenv("FAKECUDA_LOOKUP_LOG");
    if (!path || !*path || !symbol)
        return;
    char line[256];
    int n = snprintf(line, sizeof line, "%s %d %llu %s\n", symbol, version,
                     (unsigned long long)flags, answer);
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return;
    if (n > 0 && (size_t)n < sizeof line && write(fd, line, (size_t)n) != n)
        n = -1; /* a short record is the test's to notice */
    close(fd);
}

/* The variant for `symbol` at `version`: among the rows of that base name
 * (only its _ptsz rows when per-thread semantics are asked for and it has
 * some), the one with the highest first version not above `version`. */
static CUresult lookup(const char *symbol, void **pfn, int version, cuuint64_t flags,
                       CUdriverProcAddressQueryResult *status)
{
    if (!symbol || !pfn ||
        (flags & ~(cuuint64_t)(CU_GET_PROC_ADDRESS_LEGACY_STREAM |
                               CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM)))
        return CUDA_ERROR_INVALID_VALUE;
    int known = 0, has_ptsz = 0;
    for (size_t i = 0; i < sizeof symbol_table / sizeof symbol_table[0]; i++) {
        if (strcmp(symbol_table[i].base, symbol) == 0) {
            known = 1;
            has_ptsz |= symbol_table[i].ptsz;
        }
    }
    int want_ptsz = has_ptsz && (flags & CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM);
    const struct symbol_row *best = NULL;
    for (size_t i = 0; i < sizeof symbol_table / sizeof symbol_table[0]; i++) {
        const struct symbol_row *row = &symbol_table[i];
        if (row->ptsz == want_ptsz && row->version <= version && strcmp(row->base, symbol) == 0 &&
            (!best || row->version > best->version))
            best = row;
    }
    record(symbol, version, flags, best ? best->name : "-");
    *pfn = best ? best->fn : NULL;
    if (status)
        *status = best    ? CU_GET_PROC_ADDRESS_SUCCESS
                  : known ? CU_GET_PROC_ADDRESS_VERSION_NOT_SUFFICIENT
                          : CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND;
    return best ? CUDA_SUCCESS : CUDA_ERROR_NOT_FOUND;
}

/* Lookups work before cuInit: libcudart gets cuInit itself this way. */
FAKE_API CUresult cuGetProcAddress_v2(const char *symbol, void **pfn, int cudaVersion,
                                      cuuint64_t flags,
                                      CUdriverProcAddressQueryResult *symbolStatus)
{
    return lookup(symbol, pfn, cudaVersion, flags, symbolStatus);
}

FAKE_API CUresult cuGetProcAddress(const char *symbol, void **pfn, int cudaVersion,
                                   cuuint64_t flags)
{
    return lookup(symbol, pfn, cudaVersion, flags, NULL);
}

/* The runtime's private channel to the driver; a fake has nothing to offer. */
FAKE_API CUresult cuGetExportTable(const void **ppExportTable, const CUuuid *pExportTableId)
{
    (void)pExportTableId;
    if (ppExportTable)
        *ppExportTable = NULL;
    return CUDA_ERROR_NOT_SUPPORTED;
}
