/* SPDX-License-Identifier: Apache-2.0 */
/* cuBLAS by handle (docs/REMOTE.md): the worker loads libcublas.so.12 at the
 * first BLAS request and keeps the connection's handles in a table; the
 * client names a handle by its index. A GEMM's matrices are device pointers
 * of this connection, each checked over the extent its shape and leading
 * dimension make cuBLAS read or write, before cuBLAS sees them. */
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>

#include "flexpu/log.h"
#include "remote/cudart_abi.h"
#include "remote/server_conn.h"
#include "util/alloc.h"

#define MAX_HANDLES 256

/* cublasStatus_t values (cublas_api.h). */
enum {
    BLAS_SUCCESS = 0,
    BLAS_NOT_INITIALIZED = 1,
    BLAS_ALLOC_FAILED = 3,
    BLAS_INVALID_VALUE = 7,
    BLAS_EXECUTION_FAILED = 13,
    BLAS_INTERNAL_ERROR = 14,
    BLAS_NOT_SUPPORTED = 15,
};

typedef void *blas_handle;

struct fx_srv_blas {
    void *lib;
    int (*create)(blas_handle *);
    int (*destroy)(blas_handle);
    int (*set_stream)(blas_handle, CUstream);
    int (*gemm_ex)(blas_handle, int, int, int, int, int, const void *, const void *, int, int,
                   const void *, int, int, const void *, void *, int, int, int, int);
    blas_handle handles[MAX_HANDLES]; /* id - 1; NULL: free */
    int dev[MAX_HANDLES];
    CUstream stream[MAX_HANDLES]; /* the stream set on each handle; NULL: the default */
};

static int load(struct fx_srv_conn *c)
{
    if (c->blas)
        return c->blas->lib ? BLAS_SUCCESS : BLAS_NOT_INITIALIZED;
    struct fx_srv_blas *b = fx_calloc(1, sizeof *b);
    if (!b)
        return BLAS_ALLOC_FAILED;
    c->blas = b;
    /* FLEXPU_REMOTE_CUBLAS: another cuBLAS (a path, or libcublas.so.13: the
     * four functions used here have kept their arguments). */
    const char *name = getenv("FLEXPU_REMOTE_CUBLAS");
    if (!name || !*name)
        name = "libcublas.so.12";
    b->lib = dlopen(name, RTLD_NOW | RTLD_LOCAL);
    if (!b->lib) {
        FX_ERROR(COMP, "cannot load cuBLAS", "FLEXPU_REMOTE_CUBLAS=%s error=\"%s\"", name,
                 dlerror());
        return BLAS_NOT_INITIALIZED;
    }
    *(void **)&b->create = dlsym(b->lib, "cublasCreate_v2");
    *(void **)&b->destroy = dlsym(b->lib, "cublasDestroy_v2");
    *(void **)&b->set_stream = dlsym(b->lib, "cublasSetStream_v2");
    *(void **)&b->gemm_ex = dlsym(b->lib, "cublasGemmEx");
    if (!b->create || !b->destroy || !b->set_stream || !b->gemm_ex) {
        const char *missing = !b->create       ? "cublasCreate_v2"
                              : !b->destroy    ? "cublasDestroy_v2"
                              : !b->set_stream ? "cublasSetStream_v2"
                                               : "cublasGemmEx";
        FX_ERROR(COMP, "cuBLAS lacks a function", "FLEXPU_REMOTE_CUBLAS=%s function=%s", name,
                 missing);
        dlclose(b->lib);
        b->lib = NULL;
        return BLAS_NOT_INITIALIZED;
    }
    return BLAS_SUCCESS;
}

static blas_handle handle_of(struct fx_srv_conn *c, uint32_t id, unsigned dev)
{
    if (!c->blas || id == 0 || id > MAX_HANDLES || (int)dev != c->blas->dev[id - 1])
        return NULL;
    return c->blas->handles[id - 1];
}

static int create(struct fx_srv_conn *c, const struct fx_wire_req *q)
{
    struct fx_srv_blas *b = c->blas;
    size_t slot = 0;
    while (slot < MAX_HANDLES && b->handles[slot])
        slot++;
    if (slot == MAX_HANDLES)
        return BLAS_ALLOC_FAILED;
    int st = b->create(&b->handles[slot]);
    if (st != BLAS_SUCCESS) {
        b->handles[slot] = NULL;
        return st;
    }
    b->dev[slot] = q->h.dev;
    b->stream[slot] = NULL;
    fx_wr_u32(&c->out, (uint32_t)slot + 1);
    return BLAS_SUCCESS;
}

/* Bytes of one element of a cudaDataType the GEMM path knows; 0 otherwise. */
static size_t type_size(int t)
{
    switch (t) {
    case 0: return 4;  /* CUDA_R_32F */
    case 1: return 8;  /* CUDA_R_64F */
    case 2: return 2;  /* CUDA_R_16F */
    case 3: return 1;  /* CUDA_R_8I */
    case 10: return 4; /* CUDA_R_32I */
    case 14: return 2; /* CUDA_R_16BF */
    default: return 0;
    }
}

/* Bytes of alpha and beta for a cublasComputeType_t; 0 for an unknown one. */
static size_t scalar_size(int compute)
{
    switch (compute) {
    case 64: case 65: return 2;                            /* 16F */
    case 68: case 69: case 74: case 75: case 77: return 4; /* 32F and its fast modes */
    case 70: case 71: return 8;                            /* 64F */
    case 72: case 73: return 4;                            /* 32I */
    default: return 0;
    }
}

/* Whether the rows x cols matrix at `p` with leading dimension `ld` lies in
 * this connection's memory (column-major: (cols - 1) * ld + rows elements). */
static int matrix_ok(const struct fx_srv_conn *c, uint64_t p, int64_t rows, int64_t cols,
                     int64_t ld, size_t esize)
{
    if (ld < (rows > 1 ? rows : 1))
        return 0;
    if (rows == 0 || cols == 0)
        return 1;
    uint64_t elems, bytes;
    if (__builtin_mul_overflow((uint64_t)(cols - 1), (uint64_t)ld, &elems) ||
        __builtin_add_overflow(elems, (uint64_t)rows, &elems) ||
        __builtin_mul_overflow(elems, (uint64_t)esize, &bytes))
        return 0;
    return fx_srv_owned(c, p, bytes);
}

/* A GEMM has no reply: its status is a cudaError_t, deferred. */
static int gemm(struct fx_srv_conn *c, const struct fx_wire_req *q)
{
    const struct fx_wire_gemm *g = &q->u.gemm;
    blas_handle h = handle_of(c, g->handle, q->h.dev);
    if (!h)
        return cudaErrorInvalidResourceHandle;
    size_t ea = type_size(g->atype), eb = type_size(g->btype), ec = type_size(g->ctype);
    if (!ea || !eb || !ec || scalar_size(g->compute) != g->scalar_len)
        return cudaErrorNotSupported;
    int64_t ra = g->transa ? g->k : g->m, ca = g->transa ? g->m : g->k;
    int64_t rb = g->transb ? g->n : g->k, cb = g->transb ? g->k : g->n;
    int reads_ab = g->k > 0 && g->m > 0 && g->n > 0;
    if ((reads_ab && (!matrix_ok(c, g->a, ra, ca, g->lda, ea) ||
                      !matrix_ok(c, g->b, rb, cb, g->ldb, eb))) ||
        !matrix_ok(c, g->c, g->m, g->n, g->ldc, ec))
        return cudaErrorInvalidValue;
    int st = c->blas->gemm_ex(h, (int)g->transa, (int)g->transb, g->m, g->n, g->k, g->alpha,
                              (const void *)(uintptr_t)g->a, g->atype, g->lda,
                              (const void *)(uintptr_t)g->b, g->btype, g->ldb, g->beta,
                              (void *)(uintptr_t)g->c, g->ctype, g->ldc, g->compute, g->algo);
    switch (st) {
    case BLAS_SUCCESS: return cudaSuccess;
    case BLAS_INVALID_VALUE: return cudaErrorInvalidValue;
    case BLAS_NOT_SUPPORTED: return cudaErrorNotSupported;
    case BLAS_ALLOC_FAILED: return cudaErrorMemoryAllocation;
    default: return cudaErrorLaunchFailure;
    }
}

int fx_srv_blas(struct fx_srv_conn *c, const struct fx_wire_req *q)
{
    int st = load(c);
    if (st != BLAS_SUCCESS)
        return q->h.op == FX_OP_BLAS_GEMM ? cudaErrorNotSupported : st;
    switch (q->h.op) {
    case FX_OP_BLAS_CREATE:
        return create(c, q);
    case FX_OP_BLAS_DESTROY: {
        blas_handle h = handle_of(c, q->u.id.id, q->h.dev);
        if (!h)
            return BLAS_NOT_INITIALIZED;
        st = c->blas->destroy(h);
        if (st == BLAS_SUCCESS)
            c->blas->handles[q->u.id.id - 1] = NULL;
        return st;
    }
    case FX_OP_BLAS_SET_STREAM: {
        blas_handle h = handle_of(c, q->u.blas_stream.handle, q->h.dev);
        CUstream s;
        if (!h)
            return BLAS_NOT_INITIALIZED;
        if (fx_srv_stream(c, q->u.blas_stream.stream, q->h.dev, &s) != cudaSuccess)
            return BLAS_INVALID_VALUE;
        st = c->blas->set_stream(h, s);
        if (st == BLAS_SUCCESS)
            c->blas->stream[q->u.blas_stream.handle - 1] = s;
        return st;
    }
    default:
        return gemm(c, q);
    }
}

void fx_srv_blas_stream_gone(struct fx_srv_conn *c, CUstream s)
{
    struct fx_srv_blas *b = c->blas;
    for (size_t i = 0; b && b->lib && s && i < MAX_HANDLES; i++) {
        if (!b->handles[i] || b->stream[i] != s)
            continue;
        /* cuBLAS would otherwise hand a destroyed stream to the driver at
         * the handle's next call: the handle goes back to the default
         * stream, where a handle starts. */
        if (b->set_stream(b->handles[i], NULL) != BLAS_SUCCESS)
            FX_WARN(COMP, "cannot reset a cuBLAS handle's stream", "handle=%zu", i + 1);
        b->stream[i] = NULL;
    }
}

void fx_srv_blas_release(struct fx_srv_conn *c)
{
    struct fx_srv_blas *b = c->blas;
    if (!b)
        return;
    /* Each handle with its own device current, as cuBLAS wants for every
     * call with a handle: on a server of several GPUs the context current
     * last may be another device's. */
    for (size_t i = 0; b->lib && i < MAX_HANDLES; i++) {
        if (!b->handles[i])
            continue;
        int rc = fx_srv_use_dev(c, (unsigned)b->dev[i]);
        int st = rc == cudaSuccess ? b->destroy(b->handles[i]) : BLAS_SUCCESS;
        if (rc != cudaSuccess || st != BLAS_SUCCESS)
            FX_WARN(COMP, "cannot destroy a cuBLAS handle the client left",
                    "handle=%zu device=%d error=%d status=%d", i + 1, b->dev[i], rc, st);
    }
    /* The library stays loaded: the process is about to exit, and cuBLAS's
     * own destructors run then. */
    fx_free(b);
    c->blas = NULL;
}
