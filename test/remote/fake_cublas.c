/* SPDX-License-Identifier: Apache-2.0 */
/* A fake libcublas.so.12 for flexpu-remoted's workers in tests: NVIDIA's
 * cuBLAS cannot start on the fake driver (its runtime needs the driver's
 * private export tables), so the worker loads this one instead. It keeps
 * the real API's signatures and status codes for the functions the server
 * calls, and computes a GEMM on the host: the fake driver's device memory is
 * host memory. The GEMM waits for the handle's stream first and computes
 * before returning, which keeps stream order for work issued after it.
 * Supported: A and B in CUDA_R_32F or CUDA_R_16BF, C in either, compute
 * CUBLAS_COMPUTE_32F. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/cuda_abi.h"

#define API __attribute__((visibility("default")))

CUresult cuStreamSynchronize(CUstream s);
CUresult cuCtxGetCurrent(CUcontext *ctx);

struct handle {
    CUstream stream;
    CUcontext ctx; /* current at its creation: the handle's device */
};

API int cublasCreate_v2(struct handle **h)
{
    if (!h)
        return 7;
    *h = calloc(1, sizeof **h);
    if (*h && cuCtxGetCurrent(&(*h)->ctx) != CUDA_SUCCESS) {
        free(*h);
        *h = NULL;
        return 1;
    }
    return *h ? 0 : 3;
}

/* cuBLAS's handle is tied to the device current at its creation, which must
 * be current again at each call with it (cuBLAS guide, "cuBLAS context"):
 * a destruction with another device current is refused here, and said on
 * stderr, since a caller tidying up may ignore the status. */
API int cublasDestroy_v2(struct handle *h)
{
    if (!h)
        return 1;
    CUcontext cur = NULL;
    if (cuCtxGetCurrent(&cur) != CUDA_SUCCESS || cur != h->ctx) {
        fprintf(stderr, "fake cublas: cublasDestroy_v2 with another device current than "
                        "the handle's: CUBLAS_STATUS_INTERNAL_ERROR\n");
        return 14;
    }
    free(h);
    return 0;
}

API int cublasSetStream_v2(struct handle *h, CUstream s)
{
    if (!h)
        return 1;
    h->stream = s;
    return 0;
}

static float load(const void *p, int type, size_t i)
{
    if (type == 0)
        return ((const float *)p)[i];
    uint32_t bits = (uint32_t)((const uint16_t *)p)[i] << 16; /* bf16: a float's top half */
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

static void store(void *p, int type, size_t i, float v)
{
    if (type == 0) {
        ((float *)p)[i] = v;
        return;
    }
    uint32_t bits;
    memcpy(&bits, &v, sizeof bits);
    bits += 0x7fffu + ((bits >> 16) & 1); /* round to nearest even */
    ((uint16_t *)p)[i] = (uint16_t)(bits >> 16);
}

API int cublasGemmEx(struct handle *h, int transa, int transb, int m, int n, int k,
                     const void *alpha, const void *A, int Atype, int lda, const void *B,
                     int Btype, int ldb, const void *beta, void *C, int Ctype, int ldc,
                     int computeType, int algo)
{
    (void)algo;
    if (!h)
        return 1;
    int ok_type = (Atype == 0 || Atype == 14) && (Btype == 0 || Btype == 14) &&
                  (Ctype == 0 || Ctype == 14);
    if (!ok_type || computeType != 68)
        return 15;
    if (m < 0 || n < 0 || k < 0 || !alpha || !beta)
        return 7;
    if (cuStreamSynchronize(h->stream) != CUDA_SUCCESS)
        return 13;
    float a = *(const float *)alpha, b = *(const float *)beta;
    for (int j = 0; j < n; j++) {
        for (int i = 0; i < m; i++) {
            float sum = 0;
            for (int l = 0; l < k; l++) {
                size_t ia = transa ? (size_t)l + (size_t)i * lda : (size_t)i + (size_t)l * lda;
                size_t ib = transb ? (size_t)j + (size_t)l * ldb : (size_t)l + (size_t)j * ldb;
                sum += load(A, Atype, ia) * load(B, Btype, ib);
            }
            size_t ic = (size_t)i + (size_t)j * ldc;
            float c = b != 0 ? load(C, Ctype, ic) : 0;
            store(C, Ctype, ic, a * sum + b * c);
        }
    }
    return 0;
}
