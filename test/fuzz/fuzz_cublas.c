/* SPDX-License-Identifier: Apache-2.0 */
/* The cuBLAS fuzz_remote hands flexpu-remoted's worker (FLEXPU_REMOTE_CUBLAS):
 * the four functions server_blas.c calls, computing nothing. A GEMM asks the
 * harness whether every byte cuBLAS would read or write (the elements its
 * shape, transposes and leading dimensions reach, column-major) lies in
 * memory the client allocated, and whether its handle and stream are live
 * ones; the harness aborts when not. A handle is a heap block of its own, so
 * a destroyed one used again is a use after free under ASan. */
#include <stdint.h>
#include <stdlib.h>

#define API __attribute__((visibility("default")))

struct handle {
    void *stream;
};

/* Set by the harness (dlsym): whether [p, p + n) is the client's, and
 * whether a stream is NULL or live. Each aborts on a violation. */
static void (*check_mem)(uint64_t p, uint64_t n, const char *what);
static void (*check_stream)(void *s, const char *what);
static long live_handles;

API void fuzz_cublas_set_checks(void (*mem)(uint64_t, uint64_t, const char *),
                                void (*stream)(void *, const char *))
{
    check_mem = mem;
    check_stream = stream;
}

API long fuzz_cublas_live_handles(void)
{
    return live_handles;
}

API int cublasCreate_v2(struct handle **out)
{
    *out = calloc(1, sizeof **out);
    if (!*out)
        return 3;
    live_handles++;
    return 0;
}

API int cublasDestroy_v2(struct handle *h)
{
    if (!h)
        return 1;
    h->stream = (void *)(uintptr_t)0xdead; /* a use after this is a use after free */
    free(h);
    live_handles--;
    return 0;
}

API int cublasSetStream_v2(struct handle *h, void *stream)
{
    if (!h)
        return 1;
    if (check_stream)
        check_stream(stream, "cublasSetStream_v2");
    h->stream = stream;
    return 0;
}

static size_t esize(int t)
{
    switch (t) {
    case 0: case 10: return 4;
    case 1: return 8;
    case 2: case 14: return 2;
    case 3: return 1;
    default: return 0;
    }
}

/* The bytes of a rows x cols operand cuBLAS touches: from its first element
 * to its last, (cols - 1) * ld + rows elements. */
static void operand(uint64_t p, int64_t rows, int64_t cols, int64_t ld, size_t es,
                    const char *what)
{
    if (rows <= 0 || cols <= 0 || !check_mem)
        return;
    unsigned __int128 elems = (unsigned __int128)(cols - 1) * (uint64_t)ld + (uint64_t)rows;
    unsigned __int128 bytes = elems * es;
    check_mem(p, bytes > UINT64_MAX ? UINT64_MAX : (uint64_t)bytes, what);
}

API int cublasGemmEx(struct handle *h, int transa, int transb, int m, int n, int k,
                     const void *alpha, const void *A, int Atype, int lda, const void *B,
                     int Btype, int ldb, const void *beta, void *C, int Ctype, int ldc,
                     int computeType, int algo)
{
    (void)computeType;
    (void)algo;
    if (!h)
        return 1;
    if (!alpha || !beta || m < 0 || n < 0 || k < 0)
        return 7;
    size_t ea = esize(Atype), eb = esize(Btype), ec = esize(Ctype);
    if (!ea || !eb || !ec)
        return 15;
    if (check_stream)
        check_stream(h->stream, "cublasGemmEx's handle");
    if (m > 0 && n > 0 && k > 0) {
        operand((uint64_t)(uintptr_t)A, transa ? k : m, transa ? m : k, lda, ea, "GEMM A");
        operand((uint64_t)(uintptr_t)B, transb ? n : k, transb ? k : n, ldb, eb, "GEMM B");
    }
    operand((uint64_t)(uintptr_t)C, m, n, ldc, ec, "GEMM C");
    return 0;
}
