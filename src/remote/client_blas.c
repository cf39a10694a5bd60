/* SPDX-License-Identifier: Apache-2.0 */
/* The client's libcublas.so.12 (docs/REMOTE.md, "Where to cut"): cuBLAS
 * forwarded by handle over the runtime library's connection. A handle is the
 * server's index; matrices are device pointers, the server's own addresses,
 * passed unchanged; alpha and beta are read here (host pointer mode, cuBLAS's
 * default) and sent by value. A GEMM goes without a reply, like a launch:
 * the arguments cuBLAS would refuse are refused here, at once, and what fails
 * on the server comes back as a deferred CUDA error at the next
 * synchronisation. */
#include <string.h>

#include "remote/client.h"

typedef int cublasStatus_t;
typedef struct fx_blas_handle *cublasHandle_t;

enum {
    CUBLAS_STATUS_SUCCESS = 0,
    CUBLAS_STATUS_NOT_INITIALIZED = 1,
    CUBLAS_STATUS_INVALID_VALUE = 7,
    CUBLAS_STATUS_EXECUTION_FAILED = 13,
    CUBLAS_STATUS_NOT_SUPPORTED = 15,
};
#define CUBLAS_COMPUTE_32F   68
#define CUBLAS_GEMM_DEFAULT  (-1)
#define CUDA_R_32F           0
#define MAX_HANDLES          256

/* The stream each handle was given, for cublasGetStream_v2. */
static cudaStream_t handle_streams[MAX_HANDLES + 1];

static uint32_t id_of(cublasHandle_t h)
{
    uintptr_t v = (uintptr_t)h;
    return v >= 1 && v <= MAX_HANDLES ? (uint32_t)v : 0;
}

/* Sends `q` and waits for its reply. `lost` is the status when the
 * connection is gone. */
static cublasStatus_t call(struct fx_wire_req *q, struct fx_rd *r, cublasStatus_t lost)
{
    const struct fx_cl_iface *io = __flexpu_remote_v1();
    if (io->lock() != cudaSuccess)
        return lost;
    int deferred;
    int st = io->wait(io->queue(q), r, &deferred);
    io->unlock();
    return st == cudaErrorDevicesUnavailable ? lost : st; /* no cublasStatus_t is 46 */
}

FX_CL_API cublasStatus_t cublasCreate_v2(cublasHandle_t *handle)
{
    if (!handle)
        return CUBLAS_STATUS_INVALID_VALUE;
    struct fx_wire_req q = {.h.op = FX_OP_BLAS_CREATE};
    struct fx_rd r;
    cublasStatus_t st = call(&q, &r, CUBLAS_STATUS_NOT_INITIALIZED);
    if (st != CUBLAS_STATUS_SUCCESS)
        return st;
    uint32_t id = fx_rd_u32(&r, "handle");
    if (r.bad || id == 0 || id > MAX_HANDLES)
        return CUBLAS_STATUS_NOT_INITIALIZED;
    handle_streams[id] = NULL;
    *handle = (cublasHandle_t)(uintptr_t)id;
    return CUBLAS_STATUS_SUCCESS;
}

FX_CL_API cublasStatus_t cublasDestroy_v2(cublasHandle_t handle)
{
    uint32_t id = id_of(handle);
    if (!id)
        return CUBLAS_STATUS_NOT_INITIALIZED;
    struct fx_wire_req q = {.h.op = FX_OP_BLAS_DESTROY};
    q.u.id.id = id;
    struct fx_rd r;
    return call(&q, &r, CUBLAS_STATUS_EXECUTION_FAILED);
}

FX_CL_API cublasStatus_t cublasSetStream_v2(cublasHandle_t handle, cudaStream_t stream)
{
    uint32_t id = id_of(handle);
    if (!id)
        return CUBLAS_STATUS_NOT_INITIALIZED;
    struct fx_wire_req q = {.h.op = FX_OP_BLAS_SET_STREAM};
    q.u.blas_stream.handle = id;
    q.u.blas_stream.stream = fx_cl_stream_id(stream);
    struct fx_rd r;
    cublasStatus_t st = call(&q, &r, CUBLAS_STATUS_EXECUTION_FAILED);
    if (st == CUBLAS_STATUS_SUCCESS)
        handle_streams[id] = stream;
    return st;
}

FX_CL_API cublasStatus_t cublasGetStream_v2(cublasHandle_t handle, cudaStream_t *stream)
{
    uint32_t id = id_of(handle);
    if (!id)
        return CUBLAS_STATUS_NOT_INITIALIZED;
    if (!stream)
        return CUBLAS_STATUS_INVALID_VALUE;
    *stream = handle_streams[id];
    return CUBLAS_STATUS_SUCCESS;
}

static size_t type_size(int t)
{
    switch (t) {
    case 0: case 10: return 4; /* CUDA_R_32F, CUDA_R_32I */
    case 1: return 8;          /* CUDA_R_64F */
    case 2: case 14: return 2; /* CUDA_R_16F, CUDA_R_16BF */
    case 3: return 1;          /* CUDA_R_8I */
    default: return 0;
    }
}

static size_t scalar_size(int compute)
{
    switch (compute) {
    case 64: case 65: return 2;
    case 68: case 69: case 74: case 75: case 77: case 72: case 73: return 4;
    case 70: case 71: return 8;
    default: return 0;
    }
}

static int max1(int v)
{
    return v > 1 ? v : 1;
}

FX_CL_API cublasStatus_t cublasGemmEx(cublasHandle_t handle, int transa, int transb, int m, int n,
                                      int k, const void *alpha, const void *A, int Atype, int lda,
                                      const void *B, int Btype, int ldb, const void *beta, void *C,
                                      int Ctype, int ldc, int computeType, int algo)
{
    uint32_t id = id_of(handle);
    if (!id)
        return CUBLAS_STATUS_NOT_INITIALIZED;
    size_t scalar = scalar_size(computeType);
    if (!scalar || !type_size(Atype) || !type_size(Btype) || !type_size(Ctype))
        return CUBLAS_STATUS_NOT_SUPPORTED;
    /* What cuBLAS checks before it launches anything. */
    if (transa < 0 || transa > 2 || transb < 0 || transb > 2 || m < 0 || n < 0 || k < 0 ||
        !alpha || !beta || lda < max1(transa ? k : m) || ldb < max1(transb ? n : k) ||
        ldc < max1(m))
        return CUBLAS_STATUS_INVALID_VALUE;
    struct fx_wire_req q = {.h.op = FX_OP_BLAS_GEMM, .h.flags = FX_WIRE_NO_REPLY};
    struct fx_wire_gemm *g = &q.u.gemm;
    g->handle = id;
    g->transa = (uint32_t)transa;
    g->transb = (uint32_t)transb;
    g->m = m;
    g->n = n;
    g->k = k;
    g->atype = Atype;
    g->btype = Btype;
    g->ctype = Ctype;
    g->compute = computeType;
    g->algo = algo;
    g->a = (uintptr_t)A;
    g->b = (uintptr_t)B;
    g->c = (uintptr_t)C;
    g->lda = lda;
    g->ldb = ldb;
    g->ldc = ldc;
    memcpy(g->alpha, alpha, scalar);
    memcpy(g->beta, beta, scalar);
    g->scalar_len = scalar;
    const struct fx_cl_iface *io = __flexpu_remote_v1();
    if (io->lock() != cudaSuccess)
        return CUBLAS_STATUS_EXECUTION_FAILED;
    int ok = io->queue(&q) != 0 && io->flush() == cudaSuccess;
    io->unlock();
    return ok ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_EXECUTION_FAILED;
}

FX_CL_API cublasStatus_t cublasSgemm_v2(cublasHandle_t handle, int transa, int transb, int m,
                                        int n, int k, const float *alpha, const float *A, int lda,
                                        const float *B, int ldb, const float *beta, float *C,
                                        int ldc)
{
    return cublasGemmEx(handle, transa, transb, m, n, k, alpha, A, CUDA_R_32F, lda, B, CUDA_R_32F,
                        ldb, beta, C, CUDA_R_32F, ldc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
}
