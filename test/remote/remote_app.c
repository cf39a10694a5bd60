/* SPDX-License-Identifier: Apache-2.0 */
/* A CUDA program as a user writes it, in plain C: it calls the runtime API
 * and launches a kernel of its own, registered the way nvcc-generated code
 * registers it (a constructor calling __cudaRegisterFatBinary and
 * __cudaRegisterFunction; a host stub that pops the <<<...>>> configuration
 * and calls cudaLaunchKernel). It is linked against libcudart.so.12 and
 * knows nothing of flexpu: remote_test.sh runs it unmodified against the
 * remote client library. The fat binary holds the fake driver's kernel
 * description (test/fakecuda/fake_module.c): add_u32 adds v to n words.
 *
 * Modes (the first argument):
 *   basic         copies each way, the kernel in stream order, events, big
 *                 copies, memory info, and the errors of bad pointers
 *   blas          cuBLAS: SGEMM and a bf16 GemmEx on a stream, checked on the
 *                 host, and the errors of bad arguments and pointers
 *   threads       4 threads, each with its own stream, buffers and kernels,
 *                 over the process's one connection
 *   quota         allocates 8 MiB blocks until refused; prints the MiB held
 *   multi         a slice of 2 GPUs: 2 devices; memory, copies and kernels on
 *                 device 1 then device 0 (each device loads the module in its
 *                 own context); a device 0 pointer read with device 1
 *                 current (unified addressing, as CUDA does); a stream
 *                 and an event of device 0 used with device 1 current
 *                 (copies, memset, record, wait, syncs, destruction); then each
 *                 device's quota, filled on device 1 first: device 0 still
 *                 has all of its own; prints the MiB each held
 *   hold MIB      allocates MIB, prints "holding", sleeps (to be killed)
 *   longsync      synchronisations that wait seconds (a stream, a copy behind
 *                 a kernel): the worker's PROGRESS frames keep the client's
 *                 timeout from ending them
 *   deepqueue     1100 launches (more than the driver queues) then a 32 MiB
 *                 asynchronous copy behind them: the worker blocks in the
 *                 driver while the client sends, and PROGRESS keeps it alive
 *   hello         cudaGetDeviceCount succeeds
 *   loop          launches and synchronises until a call fails; exits 3
 *   nodevice      expects cudaGetDeviceCount to fail; prints its error
 *   bench MIB     prints the mean time of a call with a reply, of a
 *                 launch + synchronisation, and H2D/D2H rates over MIB
 * Exit 0 when the mode's checks pass, 1 with a message otherwise. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* --- What cuda_runtime_api.h declares (CUDA 12) --------------------------- */
typedef int cudaError_t;
typedef struct CUstream_st *cudaStream_t;
typedef struct CUevent_st *cudaEvent_t;
typedef struct {
    unsigned x, y, z;
} dim3;
typedef struct {
    unsigned x, y, z;
} uint3;
enum { cudaMemcpyHostToDevice = 1, cudaMemcpyDeviceToHost = 2, cudaMemcpyDeviceToDevice = 3 };
enum { cudaErrorMemoryAllocation = 2, cudaErrorInvalidValue = 1, cudaErrorInvalidDevice = 101,
       cudaErrorInvalidResourceHandle = 400, cudaErrorIllegalAddress = 700 };
enum { cudaEventDisableTiming = 2, cudaEventInterprocess = 4 };
cudaError_t cudaEventCreate(cudaEvent_t *e);
cudaError_t cudaEventCreateWithFlags(cudaEvent_t *e, unsigned flags);
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s);
cudaError_t cudaEventQuery(cudaEvent_t e);
cudaError_t cudaEventSynchronize(cudaEvent_t e);
cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t start, cudaEvent_t end);
cudaError_t cudaEventDestroy(cudaEvent_t e);
cudaError_t cudaStreamWaitEvent(cudaStream_t s, cudaEvent_t e, unsigned flags);
cudaError_t cudaGetDeviceCount(int *count);
cudaError_t cudaSetDevice(int device);
cudaError_t cudaGetDevice(int *device);
cudaError_t cudaMalloc(void **p, size_t size);
cudaError_t cudaFree(void *p);
cudaError_t cudaMemcpy(void *dst, const void *src, size_t n, int kind);
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t n, int kind, cudaStream_t s);
cudaError_t cudaMemset(void *p, int value, size_t n);
cudaError_t cudaMemsetAsync(void *p, int value, size_t n, cudaStream_t s);
cudaError_t cudaStreamCreate(cudaStream_t *s);
cudaError_t cudaStreamSynchronize(cudaStream_t s);
cudaError_t cudaStreamDestroy(cudaStream_t s);
cudaError_t cudaDeviceSynchronize(void);
cudaError_t cudaGetLastError(void);
const char *cudaGetErrorString(cudaError_t e);
const char *cudaGetErrorName(cudaError_t e);
cudaError_t cudaMemGetInfo(size_t *free_bytes, size_t *total);
cudaError_t cudaDeviceGetAttribute(int *value, int attr, int device);
cudaError_t cudaDriverGetVersion(int *version);
cudaError_t cudaRuntimeGetVersion(int *version);
enum { cudaDevAttrMultiProcessorCount = 16, cudaDevAttrComputeCapabilityMajor = 75 };
cudaError_t cudaLaunchKernel(const void *func, dim3 grid, dim3 block, void **args, size_t shared,
                             cudaStream_t s);
/* What cublas_api.h declares (cuBLAS 12). */
typedef struct cublasContext *cublasHandle_t;
enum { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1, CUBLAS_STATUS_INVALID_VALUE = 7 };
enum { CUDA_R_32F = 0, CUDA_R_16BF = 14, CUBLAS_COMPUTE_32F = 68, CUBLAS_GEMM_DEFAULT = -1 };
int cublasCreate_v2(cublasHandle_t *h);
int cublasDestroy_v2(cublasHandle_t h);
int cublasSetStream_v2(cublasHandle_t h, cudaStream_t s);
int cublasSgemm_v2(cublasHandle_t h, int ta, int tb, int m, int n, int k, const float *alpha,
                   const float *A, int lda, const float *B, int ldb, const float *beta, float *C,
                   int ldc);
int cublasGemmEx(cublasHandle_t h, int ta, int tb, int m, int n, int k, const void *alpha,
                 const void *A, int Atype, int lda, const void *B, int Btype, int ldb,
                 const void *beta, void *C, int Ctype, int ldc, int compute, int algo);

void **__cudaRegisterFatBinary(void *fatCubin);
void __cudaRegisterFatBinaryEnd(void **handle);
void __cudaUnregisterFatBinary(void **handle);
void __cudaRegisterFunction(void **handle, const char *hostFun, char *deviceFun,
                            const char *deviceName, int thread_limit, uint3 *tid, uint3 *bid,
                            dim3 *bDim, dim3 *gDim, int *wSize);
unsigned __cudaPushCallConfiguration(dim3 grid, dim3 block, size_t shared, void *stream);
cudaError_t __cudaPopCallConfiguration(dim3 *grid, dim3 *block, size_t *shared, void *stream);

/* --- What nvcc generates for this file's kernels --------------------------- */
#define KERNELS "fakecubin\n_Z7add_u32jPjjj add_u32 4,8,4,4\n"
static const struct {
    uint32_t magic;
    uint16_t version, header_size;
    uint64_t fat_size;
    uint16_t kind, flags; /* one entry: its header, then its payload */
    uint32_t entry_header_size;
    uint64_t payload_size;
    char payload[sizeof KERNELS];
} __attribute__((aligned(8))) fatbin = {
    0xBA55ED50u, 1, 16, sizeof fatbin - 16, 2, 0, 16, sizeof KERNELS, KERNELS};
static const struct {
    int magic, version;
    const void *data;
    void *filename_or_fatbins;
} fatbin_wrapper = {0x466243b1, 1, &fatbin, NULL};
static void **fatbin_handle;

/* The host stub of __global__ void add_u32(unsigned us, unsigned *p,
 * unsigned n, unsigned v): v added to n words, after `us` microseconds. */
static void add_u32(unsigned us, uint32_t *p, unsigned n, unsigned v)
{
    void *args[] = {&us, &p, &n, &v};
    dim3 grid, block;
    size_t shared;
    cudaStream_t s;
    if (__cudaPopCallConfiguration(&grid, &block, &shared, &s) != 0)
        return;
    cudaLaunchKernel((const void *)add_u32, grid, block, args, shared, s);
}

static void unregister_all(void)
{
    __cudaUnregisterFatBinary(fatbin_handle);
}

__attribute__((constructor)) static void register_all(void)
{
    fatbin_handle = __cudaRegisterFatBinary((void *)&fatbin_wrapper);
    __cudaRegisterFunction(fatbin_handle, (const char *)add_u32, (char *)"_Z7add_u32jPjjj",
                           "_Z7add_u32jPjjj", -1, NULL, NULL, NULL, NULL, NULL);
    __cudaRegisterFatBinaryEnd(fatbin_handle);
    atexit(unregister_all);
}

/* add_u32<<<grid, block, 0, s>>>(us, p, n, v) */
static void launch_add(cudaStream_t s, unsigned us, uint32_t *p, unsigned n, unsigned v)
{
    dim3 grid = {(n + 255) / 256 ? (n + 255) / 256 : 1, 1, 1}, block = {256, 1, 1};
    if (__cudaPushCallConfiguration(grid, block, 0, s) == 0)
        add_u32(us, p, n, v);
}

/* --- The program ------------------------------------------------------------ */

#define CHECK(call)                                                                                \
    do {                                                                                           \
        cudaError_t e_ = (call);                                                                   \
        if (e_ != 0) {                                                                             \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call, cudaGetErrorName(e_)); \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

#define EXPECT(cond)                                                                               \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: expected %s\n", __FILE__, __LINE__, #cond);                   \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

static void basic_small(void)
{
    uint32_t host[64], back[64];
    for (unsigned i = 0; i < 64; i++)
        host[i] = i * 3;
    uint32_t *a = NULL, *b = NULL;
    CHECK(cudaMalloc((void **)&a, sizeof host));
    CHECK(cudaMalloc((void **)&b, sizeof host));
    CHECK(cudaMemcpy(a, host, sizeof host, cudaMemcpyHostToDevice));
    cudaStream_t s;
    CHECK(cudaStreamCreate(&s));
    launch_add(s, 1000, a, 64, 5);
    CHECK(cudaGetLastError());
    CHECK(cudaMemcpyAsync(b, a, sizeof host, cudaMemcpyDeviceToDevice, s));
    CHECK(cudaStreamSynchronize(s));
    CHECK(cudaMemcpy(back, b, sizeof back, cudaMemcpyDeviceToHost));
    for (unsigned i = 0; i < 64; i++)
        EXPECT(back[i] == i * 3 + 5);
    /* An asynchronous copy in, the kernel, a copy out on the same stream. */
    CHECK(cudaMemcpyAsync(a, back, sizeof back, cudaMemcpyHostToDevice, s));
    launch_add(s, 0, a, 64, 1);
    CHECK(cudaMemcpyAsync(host, a, sizeof host, cudaMemcpyDeviceToHost, s));
    for (unsigned i = 0; i < 64; i++)
        EXPECT(host[i] == i * 3 + 6);
    /* Memsets: the low byte of the value, in stream order around a kernel. */
    CHECK(cudaMemset(a, 0x15a, sizeof host));
    launch_add(s, 0, a, 64, 1);
    CHECK(cudaMemsetAsync(a, 0, 8, s));
    CHECK(cudaMemcpyAsync(back, a, sizeof back, cudaMemcpyDeviceToHost, s));
    EXPECT(back[0] == 0 && back[1] == 0 && back[2] == 0x5a5a5a5au + 1 && back[63] == back[2]);
    EXPECT(cudaMemset(a + 1, 0, sizeof host) == cudaErrorInvalidValue);
    cudaGetLastError();
    CHECK(cudaStreamDestroy(s));
    CHECK(cudaFree(a));
    CHECK(cudaFree(b));
}

/* Events: timing a kernel, and a second stream waiting for the first. */
static void basic_events(void)
{
    uint32_t host[64], back[64], *a = NULL, *b = NULL;
    for (unsigned i = 0; i < 64; i++)
        host[i] = i;
    CHECK(cudaMalloc((void **)&a, sizeof host));
    CHECK(cudaMalloc((void **)&b, sizeof host));
    CHECK(cudaMemcpy(a, host, sizeof host, cudaMemcpyHostToDevice));
    cudaEvent_t start, end, done, bad;
    cudaStream_t s1, s2;
    CHECK(cudaEventCreate(&start));
    CHECK(cudaEventCreate(&end));
    CHECK(cudaEventCreateWithFlags(&done, cudaEventDisableTiming));
    CHECK(cudaStreamCreate(&s1));
    CHECK(cudaStreamCreate(&s2));
    CHECK(cudaEventRecord(start, s1));
    launch_add(s1, 2000, a, 64, 9);
    CHECK(cudaEventRecord(end, s1));
    CHECK(cudaEventRecord(done, s1));
    CHECK(cudaStreamWaitEvent(s2, done, 0));
    CHECK(cudaMemcpyAsync(b, a, sizeof host, cudaMemcpyDeviceToDevice, s2));
    CHECK(cudaEventSynchronize(end));
    CHECK(cudaEventQuery(end));
    float ms = 0;
    CHECK(cudaEventElapsedTime(&ms, start, end));
    EXPECT(ms >= 1.9f); /* a lower bound: the kernel ran at least 2 ms */
    EXPECT(cudaEventElapsedTime(&ms, start, done) == cudaErrorInvalidResourceHandle);
    EXPECT(cudaGetLastError() == cudaErrorInvalidResourceHandle);
    CHECK(cudaStreamSynchronize(s2));
    CHECK(cudaMemcpy(back, b, sizeof back, cudaMemcpyDeviceToHost));
    for (unsigned i = 0; i < 64; i++)
        EXPECT(back[i] == i + 9);
    /* An interprocess event would leave the worker: refused. */
    EXPECT(cudaEventCreateWithFlags(&bad, cudaEventInterprocess | cudaEventDisableTiming) ==
           cudaErrorInvalidValue);
    cudaGetLastError();
    CHECK(cudaEventDestroy(start));
    CHECK(cudaEventDestroy(end));
    CHECK(cudaEventDestroy(done));
    EXPECT(cudaEventDestroy(done) == cudaErrorInvalidResourceHandle);
    cudaGetLastError();
    CHECK(cudaStreamDestroy(s1));
    CHECK(cudaStreamDestroy(s2));
    CHECK(cudaFree(a));
    CHECK(cudaFree(b));
}

/* More than one frame's worth each way: 9 MiB and 12 bytes. */
static void basic_big(void)
{
    size_t words = (9u << 20) / 4 + 3, bytes = words * 4;
    uint32_t *host = malloc(bytes), *back = malloc(bytes), *d = NULL;
    EXPECT(host && back);
    for (size_t i = 0; i < words; i++)
        host[i] = (uint32_t)(i * 2654435761u);
    CHECK(cudaMalloc((void **)&d, bytes));
    CHECK(cudaMemcpy(d, host, bytes, cudaMemcpyHostToDevice));
    launch_add(NULL, 0, d, (unsigned)words, 1);
    CHECK(cudaMemcpy(back, d, bytes, cudaMemcpyDeviceToHost));
    for (size_t i = 0; i < words; i++)
        EXPECT(back[i] == host[i] + 1);
    CHECK(cudaFree(d));
    free(host);
    free(back);
}

/* What the server refuses: pointers this client was not given. */
static void basic_errors(void)
{
    uint32_t *a = NULL, word = 0, pair[2] = {0, 0};
    CHECK(cudaMalloc((void **)&a, 64));
    EXPECT(cudaFree((void *)(uintptr_t)0x1000) == cudaErrorInvalidValue);
    EXPECT(cudaGetLastError() == cudaErrorInvalidValue);
    EXPECT(cudaGetLastError() == 0);
    EXPECT(cudaMemcpy(&word, a + 16, 4, cudaMemcpyDeviceToHost) == cudaErrorInvalidValue);
    EXPECT(cudaMemcpy(a + 15, pair, 8, cudaMemcpyHostToDevice) == cudaErrorInvalidValue);
    EXPECT(cudaMemcpy(a, (void *)(uintptr_t)0x1000, 4, cudaMemcpyDeviceToDevice) ==
           cudaErrorInvalidValue);
    int n = 0;
    CHECK(cudaGetDeviceCount(&n));
    EXPECT(cudaSetDevice(n) == cudaErrorInvalidDevice);
    cudaGetLastError();
    /* A kernel given an address it was not given fails, reported at the
     * next synchronisation. */
    launch_add(NULL, 0, (uint32_t *)(uintptr_t)0x1000, 4, 1);
    EXPECT(cudaDeviceSynchronize() == cudaErrorIllegalAddress);
    CHECK(cudaFree(a));
}

static int basic(void)
{
    int n = 0;
    CHECK(cudaGetDeviceCount(&n));
    EXPECT(n >= 1);
    CHECK(cudaSetDevice(0));
    basic_small();
    basic_events();
    basic_big();
    size_t free_b = 0, total = 0;
    CHECK(cudaMemGetInfo(&free_b, &total));
    EXPECT(total > 0 && free_b <= total);
    /* What the fake driver says of its device (an H100's SMs and major). */
    int sms = 0, major = 0, driver = 0, runtime = 0;
    CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
    CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, 0));
    EXPECT(sms == 132 && major == 9);
    EXPECT(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, n) ==
           cudaErrorInvalidDevice);
    cudaGetLastError();
    CHECK(cudaDriverGetVersion(&driver));
    CHECK(cudaRuntimeGetVersion(&runtime));
    EXPECT(driver == 13000 && runtime >= 12000);
    basic_errors();
    printf("basic: ok (total %zu MiB)\n", total >> 20);
    return 0;
}

/* C = alpha * A * B^T + beta * C on the host: A is m x k (lda), B is n x k
 * (ldb), column-major, as cuBLAS reads them. */
static void host_gemm_nt(int m, int n, int k, float alpha, const float *A, int lda,
                         const float *B, int ldb, float beta, float *C, int ldc)
{
    for (int j = 0; j < n; j++)
        for (int i = 0; i < m; i++) {
            float sum = 0;
            for (int l = 0; l < k; l++)
                sum += A[i + l * lda] * B[j + l * ldb];
            C[i + j * ldc] = alpha * sum + beta * C[i + j * ldc];
        }
}

static int blas(void)
{
    enum { M = 37, N = 29, K = 23, LDA = 40, LDB = 31, LDC = 37 };
    static float A[LDA * K], B[LDB * K], C[LDC * N], want[LDC * N], got[LDC * N];
    for (int i = 0; i < LDA * K; i++)
        A[i] = (float)(i % 7) - 3;
    for (int i = 0; i < LDB * K; i++)
        B[i] = (float)(i % 5) - 2;
    for (int i = 0; i < LDC * N; i++)
        C[i] = want[i] = (float)(i % 3);
    float *dA, *dB, *dC;
    CHECK(cudaMalloc((void **)&dA, sizeof A));
    CHECK(cudaMalloc((void **)&dB, sizeof B));
    CHECK(cudaMalloc((void **)&dC, sizeof C));
    cudaStream_t s;
    CHECK(cudaStreamCreate(&s));
    cublasHandle_t h;
    EXPECT(cublasCreate_v2(&h) == 0);
    EXPECT(cublasSetStream_v2(h, s) == 0);
    CHECK(cudaMemcpyAsync(dA, A, sizeof A, cudaMemcpyHostToDevice, s));
    CHECK(cudaMemcpyAsync(dB, B, sizeof B, cudaMemcpyHostToDevice, s));
    CHECK(cudaMemcpyAsync(dC, C, sizeof C, cudaMemcpyHostToDevice, s));
    const float alpha = 1.5f, beta = 0.5f;
    EXPECT(cublasSgemm_v2(h, CUBLAS_OP_N, CUBLAS_OP_T, M, N, K, &alpha, dA, LDA, dB, LDB, &beta,
                          dC, LDC) == 0);
    CHECK(cudaMemcpyAsync(got, dC, sizeof got, cudaMemcpyDeviceToHost, s));
    host_gemm_nt(M, N, K, alpha, A, LDA, B, LDB, beta, want, LDC);
    for (int i = 0; i < LDC * N; i++)
        EXPECT(got[i] == want[i]); /* small integers and halves: exact in float */

    /* bf16 inputs, float output: the inputs are small integers, exact in bf16. */
    static uint16_t A16[LDA * K], B16[LDB * K];
    for (int i = 0; i < LDA * K; i++) {
        uint32_t bits;
        memcpy(&bits, &A[i], 4);
        A16[i] = (uint16_t)(bits >> 16);
    }
    for (int i = 0; i < LDB * K; i++) {
        uint32_t bits;
        memcpy(&bits, &B[i], 4);
        B16[i] = (uint16_t)(bits >> 16);
    }
    CHECK(cudaMemcpy(dA, A16, sizeof A16, cudaMemcpyHostToDevice));
    CHECK(cudaMemcpy(dB, B16, sizeof B16, cudaMemcpyHostToDevice));
    const float one = 1, zero = 0;
    EXPECT(cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_T, M, N, K, &one, dA, CUDA_R_16BF, LDA, dB,
                        CUDA_R_16BF, LDB, &zero, dC, CUDA_R_32F, LDC, CUBLAS_COMPUTE_32F,
                        CUBLAS_GEMM_DEFAULT) == 0);
    CHECK(cudaStreamSynchronize(s));
    CHECK(cudaMemcpy(got, dC, sizeof got, cudaMemcpyDeviceToHost));
    for (int i = 0; i < LDC * N; i++)
        want[i] = 0;
    host_gemm_nt(M, N, K, 1, A, LDA, B, LDB, 0, want, LDC);
    for (int i = 0; i < LDC * N; i++)
        EXPECT(got[i] == want[i]);

    /* Refused here: a leading dimension below the rows. */
    EXPECT(cublasSgemm_v2(h, CUBLAS_OP_N, CUBLAS_OP_T, M, N, K, &alpha, dA, M - 1, dB, LDB,
                          &beta, dC, LDC) == CUBLAS_STATUS_INVALID_VALUE);
    /* Refused by the server: C one column past its allocation. Reported at
     * the next synchronisation, as a failed kernel is. */
    EXPECT(cublasSgemm_v2(h, CUBLAS_OP_N, CUBLAS_OP_T, M, N + 1, K, &alpha, dA, LDA, dB, LDB,
                          &beta, dC, LDC) == 0);
    EXPECT(cudaStreamSynchronize(s) == cudaErrorInvalidValue);
    /* A handle whose stream the program destroys: the worker puts it back
     * on the default stream, and the next GEMM runs there. */
    cudaStream_t gone;
    CHECK(cudaStreamCreate(&gone));
    EXPECT(cublasSetStream_v2(h, gone) == 0);
    CHECK(cudaStreamDestroy(gone));
    CHECK(cudaMemcpy(dA, A, sizeof A, cudaMemcpyHostToDevice));
    CHECK(cudaMemcpy(dB, B, sizeof B, cudaMemcpyHostToDevice));
    CHECK(cudaMemcpy(dC, C, sizeof C, cudaMemcpyHostToDevice));
    EXPECT(cublasSgemm_v2(h, CUBLAS_OP_N, CUBLAS_OP_T, M, N, K, &alpha, dA, LDA, dB, LDB, &beta,
                          dC, LDC) == 0);
    CHECK(cudaDeviceSynchronize());
    CHECK(cudaMemcpy(got, dC, sizeof got, cudaMemcpyDeviceToHost));
    for (int i = 0; i < LDC * N; i++)
        want[i] = C[i];
    host_gemm_nt(M, N, K, alpha, A, LDA, B, LDB, beta, want, LDC);
    for (int i = 0; i < LDC * N; i++)
        EXPECT(got[i] == want[i]);
    EXPECT(cublasDestroy_v2(h) == 0);
    CHECK(cudaStreamDestroy(s));
    CHECK(cudaFree(dA));
    CHECK(cudaFree(dB));
    CHECK(cudaFree(dC));
    printf("blas: ok\n");
    return 0;
}

/* One thread's share of "threads": its own stream and buffer, 50 rounds of
 * copy in, kernel, copy out, each checked. */
static void *thread_work(void *arg)
{
    unsigned id = (unsigned)(uintptr_t)arg;
    uint32_t host[256], back[256], *d = NULL;
    cudaStream_t s;
    if (cudaMalloc((void **)&d, sizeof host) != 0 || cudaStreamCreate(&s) != 0)
        return (void *)1;
    for (unsigned round = 0; round < 50; round++) {
        for (unsigned i = 0; i < 256; i++)
            host[i] = id * 100000 + round * 1000 + i;
        if (cudaMemcpyAsync(d, host, sizeof host, cudaMemcpyHostToDevice, s) != 0)
            return (void *)1;
        launch_add(s, 100, d, 256, id + 1);
        if (cudaMemcpyAsync(back, d, sizeof back, cudaMemcpyDeviceToHost, s) != 0)
            return (void *)1;
        for (unsigned i = 0; i < 256; i++)
            if (back[i] != host[i] + id + 1)
                return (void *)1;
    }
    if (cudaStreamDestroy(s) != 0 || cudaFree(d) != 0)
        return (void *)1;
    return NULL;
}

static int threads(void)
{
    pthread_t t[4];
    for (uintptr_t i = 0; i < 4; i++)
        EXPECT(pthread_create(&t[i], NULL, thread_work, (void *)i) == 0);
    int bad = 0;
    for (int i = 0; i < 4; i++) {
        void *r;
        EXPECT(pthread_join(t[i], &r) == 0);
        bad += r != NULL;
    }
    EXPECT(bad == 0);
    printf("threads: ok\n");
    return 0;
}

/* Waits of seconds (run with a timeout of 2 s): a stream sync behind a
 * 2.5 s kernel, then a synchronous copy out behind a 1.5 s one. */
static int longsync(void)
{
    uint32_t host[64], back[64], *a = NULL;
    for (unsigned i = 0; i < 64; i++)
        host[i] = i;
    CHECK(cudaMalloc((void **)&a, sizeof host));
    CHECK(cudaMemcpy(a, host, sizeof host, cudaMemcpyHostToDevice));
    cudaStream_t s;
    CHECK(cudaStreamCreate(&s));
    launch_add(s, 2500000, a, 64, 7);
    CHECK(cudaStreamSynchronize(s));
    launch_add(NULL, 1500000, a, 64, 1);
    CHECK(cudaMemcpy(back, a, sizeof back, cudaMemcpyDeviceToHost));
    for (unsigned i = 0; i < 64; i++)
        EXPECT(back[i] == i + 8);
    CHECK(cudaStreamDestroy(s));
    CHECK(cudaFree(a));
    printf("longsync: ok\n");
    return 0;
}

/* More queued work than the timeout (run with 2 s): 1100 launches of 2 ms,
 * past the 1024 the driver queues, then 32 MiB copied in asynchronously
 * behind them (the worker's pageable copy waits for the stream while the
 * client is still sending it), then the results. */
static int deepqueue(void)
{
    size_t n = 32u << 20;
    uint32_t words[64], *a = NULL;
    unsigned char *host = malloc(n), *big = NULL;
    EXPECT(host);
    for (size_t i = 0; i < n; i++)
        host[i] = (unsigned char)(i * 131);
    memset(words, 0, sizeof words);
    CHECK(cudaMalloc((void **)&a, sizeof words));
    CHECK(cudaMalloc((void **)&big, n));
    CHECK(cudaMemcpy(a, words, sizeof words, cudaMemcpyHostToDevice));
    cudaStream_t s;
    CHECK(cudaStreamCreate(&s));
    for (unsigned i = 0; i < 1100; i++)
        launch_add(s, 2000, a, 64, 1);
    CHECK(cudaGetLastError());
    CHECK(cudaMemcpyAsync(big, host, n, cudaMemcpyHostToDevice, s));
    CHECK(cudaStreamSynchronize(s));
    CHECK(cudaMemcpy(words, a, sizeof words, cudaMemcpyDeviceToHost));
    for (unsigned i = 0; i < 64; i++)
        EXPECT(words[i] == 1100);
    unsigned char *back = malloc(n);
    EXPECT(back);
    CHECK(cudaMemcpy(back, big, n, cudaMemcpyDeviceToHost));
    EXPECT(memcmp(back, host, n) == 0);
    CHECK(cudaStreamDestroy(s));
    CHECK(cudaFree(a));
    CHECK(cudaFree(big));
    free(host);
    free(back);
    printf("deepqueue: ok\n");
    return 0;
}

static int quota(void)
{
    void *blocks[1024];
    int n = 0;
    cudaError_t e = 0;
    while (n < 1024 && (e = cudaMalloc(&blocks[n], 8u << 20)) == 0)
        n++;
    EXPECT(e == cudaErrorMemoryAllocation);
    EXPECT(cudaGetLastError() == cudaErrorMemoryAllocation);
    /* Refused, not broken: freeing makes room again. */
    if (n > 0) {
        CHECK(cudaFree(blocks[--n]));
        CHECK(cudaMalloc(&blocks[n++], 8u << 20));
    }
    printf("quota: refused after %d MiB\n", n * 8);
    while (n > 0)
        CHECK(cudaFree(blocks[--n]));
    return 0;
}

/* 8 MiB blocks on the current device until refused, into blocks (1024 at
 * most); how many. */
static int fill(void **blocks)
{
    int n = 0;
    cudaError_t e = 0;
    while (n < 1024 && (e = cudaMalloc(&blocks[n], 8u << 20)) == 0)
        n++;
    EXPECT(e == cudaErrorMemoryAllocation);
    EXPECT(cudaGetLastError() == cudaErrorMemoryAllocation);
    return n;
}

/* Words p[0..3] on the current device: set to base + i, the kernel adds
 * v, read back. */
static void add_on_device(uint32_t *p, uint32_t base, unsigned v)
{
    uint32_t w[4] = {base, base + 1, base + 2, base + 3}, r[4];
    CHECK(cudaMemcpy(p, w, sizeof w, cudaMemcpyHostToDevice));
    launch_add(NULL, 0, p, 4, v);
    CHECK(cudaDeviceSynchronize());
    CHECK(cudaMemcpy(r, p, sizeof r, cudaMemcpyDeviceToHost));
    for (int i = 0; i < 4; i++)
        EXPECT(r[i] == base + (uint32_t)i + v);
}

static int multi(void)
{
    int n = 0, dev = -1;
    CHECK(cudaGetDeviceCount(&n));
    EXPECT(n == 2);
    EXPECT(cudaSetDevice(2) == cudaErrorInvalidDevice);
    cudaGetLastError();
    uint32_t *d1 = NULL, *d0 = NULL;
    CHECK(cudaSetDevice(1));
    CHECK(cudaGetDevice(&dev));
    EXPECT(dev == 1);
    CHECK(cudaMalloc((void **)&d1, 16));
    add_on_device(d1, 100, 5);
    CHECK(cudaSetDevice(0));
    CHECK(cudaMalloc((void **)&d0, 16));
    add_on_device(d0, 200, 7);
    CHECK(cudaSetDevice(1));
    add_on_device(d1, 300, 9); /* its module already loaded there */
    /* Device 0's words, read with device 1 current: copies name unified
     * addresses, so CUDA reads them from device 0. */
    uint32_t r[4];
    CHECK(cudaMemcpy(r, d0, sizeof r, cudaMemcpyDeviceToHost));
    EXPECT(r[0] == 207 && r[3] == 210);
    /* A stream and an event of device 0 used with device 1 current, as
     * CUDA allows (Programming Guide, "Stream and Event Behavior": a copy
     * to another device's stream succeeds, so do a stream's and an
     * event's synchronization and a stream's wait on an event; a record
     * needs the event and the stream of one device, not the current one):
     * the work runs on device 0's stream. */
    cudaStream_t s0 = NULL;
    cudaEvent_t e0 = NULL;
    CHECK(cudaSetDevice(0));
    CHECK(cudaStreamCreate(&s0));
    CHECK(cudaEventCreate(&e0));
    CHECK(cudaSetDevice(1));
    uint32_t w[4] = {40, 41, 42, 43};
    CHECK(cudaMemsetAsync(d0, 0, sizeof w, s0));
    CHECK(cudaMemcpyAsync(d0, w, sizeof w, cudaMemcpyHostToDevice, s0));
    CHECK(cudaEventRecord(e0, s0));
    CHECK(cudaStreamWaitEvent(s0, e0, 0));
    CHECK(cudaMemcpyAsync(r, d0, sizeof r, cudaMemcpyDeviceToHost, s0));
    CHECK(cudaStreamSynchronize(s0));
    CHECK(cudaEventSynchronize(e0));
    EXPECT(r[0] == 40 && r[3] == 43);
    CHECK(cudaEventDestroy(e0));
    CHECK(cudaStreamDestroy(s0));
    CHECK(cudaGetDevice(&dev));
    EXPECT(dev == 1);
    add_on_device(d1, 500, 3); /* device 1 still the one its calls name */
    CHECK(cudaFree(d0)); /* freed on its own device */
    CHECK(cudaFree(d1));
    /* Each device its own quota: device 1 full, device 0 still has all
     * of its own; then device 1 still refuses. */
    static void *b1[1024], *b0[1024];
    int n1 = fill(b1);
    CHECK(cudaSetDevice(0));
    int n0 = fill(b0);
    CHECK(cudaSetDevice(1));
    EXPECT(cudaMalloc((void **)&d1, 8u << 20) == cudaErrorMemoryAllocation);
    cudaGetLastError();
    printf("multi: 2 devices; device 1 refused after %d MiB, device 0 after %d MiB\n", n1 * 8,
           n0 * 8);
    while (n1 > 0)
        CHECK(cudaFree(b1[--n1]));
    while (n0 > 0)
        CHECK(cudaFree(b0[--n0]));
    /* Left for the server to free at the disconnect, each in its own
     * device's context (the fake driver and cuBLAS refuse another's, and
     * say so in the server's log): a cuBLAS handle of device 0 and the
     * modules of both devices, with device 1's context current last (an
     * allocation there, kept). A server without cuBLAS (remote_e2e's:
     * CUBLAS_STATUS_NOT_INITIALIZED) leaves the handle out. */
    cublasHandle_t h;
    CHECK(cudaSetDevice(0));
    int st = cublasCreate_v2(&h);
    EXPECT(st == 0 || st == 1);
    CHECK(cudaSetDevice(1));
    CHECK(cudaMalloc((void **)&d1, 16));
    printf("multi: left to the server: modules on both devices, %s\n",
           st == 0 ? "a cuBLAS handle of device 0" : "no cuBLAS handle (the server has no cuBLAS)");
    return 0;
}

static int hold(size_t mib)
{
    void *p = NULL;
    CHECK(cudaMalloc(&p, mib << 20));
    printf("holding %zu MiB\n", mib);
    fflush(stdout);
    sleep(60);
    return 1;
}

static int loop(void)
{
    uint32_t *d = NULL, word = 0;
    CHECK(cudaMalloc((void **)&d, 4));
    printf("running\n");
    fflush(stdout);
    for (long i = 0; i < 1000000; i++) {
        launch_add(NULL, 2000, d, 1, 1);
        cudaError_t e = cudaDeviceSynchronize();
        if (e == 0)
            e = cudaMemcpy(&word, d, 4, cudaMemcpyDeviceToHost);
        if (e != 0) {
            printf("loop: %s after %ld rounds\n", cudaGetErrorName(e), i);
            /* Every later call fails too, at once. */
            EXPECT(cudaMalloc((void **)&d, 4) == e);
            return 3;
        }
    }
    return 1;
}

/* A tenant that makes its worker load fat binaries until refused
 * (docs/REMOTE.md, "The servers' host memory"): `count` of them, `mib`
 * MiB each (a kernel, then padding), one launch of each kernel adding 1 to
 * one word. Prints how many loaded and the first refusal; the kernels
 * loaded still run and the connection still serves. */
static int modules(int count, size_t mib)
{
    static char keys[64]; /* the kernels' host stubs: only their addresses count */
    static const char text[] = "fakecubin\nk add_u32 4,8,4,4\n";
    EXPECT(count > 0 && count <= (int)sizeof keys && mib >= 1 && mib < 64);
    size_t size = mib << 20;
    uint32_t *d = NULL, word = 0;
    CHECK(cudaMalloc((void **)&d, 4));
    CHECK(cudaMemset(d, 0, 4));
    int loaded = 0;
    cudaError_t refused = 0;
    for (int i = 0; i < count; i++) {
        /* The fat binary's header (16 bytes), one entry's header (16), its
         * payload; calloc'd, so the kernels' text ends at a NUL. */
        unsigned char *img = calloc(1, size);
        EXPECT(img != NULL);
        uint32_t magic = 0xBA55ED50u, entry_hdr = 16;
        uint16_t version = 1, hdr = 16, kind = 2;
        uint64_t fat = size - 16, payload = size - 32;
        memcpy(img, &magic, 4);
        memcpy(img + 4, &version, 2);
        memcpy(img + 6, &hdr, 2);
        memcpy(img + 8, &fat, 8);
        memcpy(img + 16, &kind, 2);
        memcpy(img + 20, &entry_hdr, 4);
        memcpy(img + 24, &payload, 8);
        memcpy(img + 32, text, sizeof text - 1);
        struct {
            int magic, version;
            const void *data;
            void *filename_or_fatbins;
        } *wrap = calloc(1, sizeof *wrap); /* kept: registered for the process's life */
        EXPECT(wrap != NULL);
        wrap->magic = 0x466243b1;
        wrap->version = 1;
        wrap->data = img;
        void **h = __cudaRegisterFatBinary(wrap);
        __cudaRegisterFunction(h, &keys[i], (char *)"k", "k", -1, NULL, NULL, NULL, NULL, NULL);
        __cudaRegisterFatBinaryEnd(h);
        unsigned us = 0, n = 1, v = 1;
        void *args[] = {&us, &d, &n, &v};
        dim3 one = {1, 1, 1};
        cudaError_t e = cudaLaunchKernel(&keys[i], one, one, args, 0, NULL);
        if (e == 0 && !refused)
            loaded++;
        else if (e != 0 && !refused)
            refused = e;
        else
            EXPECT(e == refused); /* once refused, each further module too */
    }
    /* A kernel already loaded runs again; the connection still serves. */
    unsigned us = 0, n = 1, v = 1;
    void *args[] = {&us, &d, &n, &v};
    dim3 one = {1, 1, 1};
    CHECK(cudaLaunchKernel(&keys[0], one, one, args, 0, NULL));
    CHECK(cudaDeviceSynchronize());
    CHECK(cudaMemcpy(&word, d, 4, cudaMemcpyDeviceToHost));
    EXPECT(word == (uint32_t)loaded + 1);
    printf("modules: %d of %d MiB loaded, then %s; loaded kernels still run\n", loaded, (int)mib,
           refused ? cudaGetErrorName(refused) : "none refused");
    CHECK(cudaFree(d));
    return 0;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int bench(size_t mib)
{
    size_t bytes = mib << 20, free_b, total;
    unsigned char *host = malloc(bytes);
    uint32_t *d = NULL;
    EXPECT(host);
    memset(host, 7, bytes);
    CHECK(cudaMalloc((void **)&d, bytes));
    const int calls = 2000;
    double t0 = now_s();
    for (int i = 0; i < calls; i++)
        CHECK(cudaMemGetInfo(&free_b, &total));
    double call_us = (now_s() - t0) / calls * 1e6;
    t0 = now_s();
    for (int i = 0; i < calls; i++) {
        launch_add(NULL, 0, d, 1, 1);
        CHECK(cudaDeviceSynchronize());
    }
    double launch_us = (now_s() - t0) / calls * 1e6;
    const int reps = 5;
    CHECK(cudaMemcpy(d, host, bytes, cudaMemcpyHostToDevice));
    t0 = now_s();
    for (int i = 0; i < reps; i++)
        CHECK(cudaMemcpy(d, host, bytes, cudaMemcpyHostToDevice));
    double h2d = (double)bytes * reps / (now_s() - t0) / 1e9;
    t0 = now_s();
    for (int i = 0; i < reps; i++)
        CHECK(cudaMemcpy(host, d, bytes, cudaMemcpyDeviceToHost));
    double d2h = (double)bytes * reps / (now_s() - t0) / 1e9;
    printf("bench: call %.1f us, launch+sync %.1f us, H2D %.2f GB/s, D2H %.2f GB/s (%zu MiB)\n",
           call_us, launch_us, h2d, d2h, mib);
    CHECK(cudaFree(d));
    free(host);
    return 0;
}

/* A kernel of `n` parameters (a u32 duration, then n - 1 bytes), loaded
 * from a fat binary made here and launched once. Prints the launch's and
 * the synchronize's result: the protocol carries up to 256 parameters
 * (FX_WIRE_PARAMS_MAX), so 256 runs and 257 is refused. */
static int params(int n)
{
    static char key; /* the kernel's host stub: only its address counts */
    EXPECT(n >= 1 && n <= 300);
    char text[16 + 2 * 300 + 2] = "fakecubin\nk sleep 4";
    size_t len = strlen(text);
    for (int i = 1; i < n; i++) {
        memcpy(text + len, ",1", 2);
        len += 2;
    }
    text[len++] = '\n';
    size_t size = 32 + len + 1; /* the NUL ends the kernels' text */
    unsigned char *img = calloc(1, size);
    EXPECT(img != NULL);
    uint32_t magic = 0xBA55ED50u, entry_hdr = 16;
    uint16_t version = 1, hdr = 16, kind = 2;
    uint64_t fat = size - 16, payload = size - 32;
    memcpy(img, &magic, 4);
    memcpy(img + 4, &version, 2);
    memcpy(img + 6, &hdr, 2);
    memcpy(img + 8, &fat, 8);
    memcpy(img + 16, &kind, 2);
    memcpy(img + 20, &entry_hdr, 4);
    memcpy(img + 24, &payload, 8);
    memcpy(img + 32, text, len);
    struct {
        int magic, version;
        const void *data;
        void *filename_or_fatbins;
    } *wrap = calloc(1, sizeof *wrap); /* kept: registered for the process's life */
    EXPECT(wrap != NULL);
    wrap->magic = 0x466243b1;
    wrap->version = 1;
    wrap->data = img;
    void **h = __cudaRegisterFatBinary(wrap);
    __cudaRegisterFunction(h, &key, (char *)"k", "k", -1, NULL, NULL, NULL, NULL, NULL);
    __cudaRegisterFatBinaryEnd(h);
    unsigned us = 0;
    unsigned char bytes[300];
    void *args[300];
    args[0] = &us;
    for (int i = 1; i < n; i++) {
        bytes[i] = (unsigned char)i;
        args[i] = &bytes[i];
    }
    dim3 one = {1, 1, 1};
    cudaError_t e = cudaLaunchKernel(&key, one, one, args, 0, NULL);
    cudaError_t s = cudaDeviceSynchronize();
    printf("params %d: launch %s, synchronize %s\n", n, cudaGetErrorName(e), cudaGetErrorName(s));
    return 0;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *mode = argc > 1 ? argv[1] : "";
    if (strcmp(mode, "basic") == 0)
        return basic();
    if (strcmp(mode, "blas") == 0)
        return blas();
    if (strcmp(mode, "threads") == 0)
        return threads();
    if (strcmp(mode, "quota") == 0)
        return quota();
    if (strcmp(mode, "multi") == 0)
        return multi();
    if (strcmp(mode, "hold") == 0 && argc == 3)
        return hold(strtoul(argv[2], NULL, 10));
    if (strcmp(mode, "bench") == 0 && argc == 3)
        return bench(strtoul(argv[2], NULL, 10));
    if (strcmp(mode, "loop") == 0)
        return loop();
    if (strcmp(mode, "modules") == 0 && argc == 4)
        return modules(atoi(argv[2]), (size_t)atoi(argv[3]));
    if (strcmp(mode, "params") == 0 && argc == 3)
        return params(atoi(argv[2]));
    if (strcmp(mode, "longsync") == 0)
        return longsync();
    if (strcmp(mode, "deepqueue") == 0)
        return deepqueue();
    if (strcmp(mode, "hello") == 0) {
        int n = 0;
        CHECK(cudaGetDeviceCount(&n));
        EXPECT(n >= 1);
        printf("hello: %d devices\n", n);
        return 0;
    }
    if (strcmp(mode, "nodevice") == 0) {
        int n = -1;
        cudaError_t e = cudaGetDeviceCount(&n);
        printf("nodevice: %s, %d devices\n", cudaGetErrorName(e), n);
        return e != 0 && n == 0 ? 0 : 1;
    }
    fprintf(stderr, "usage: remote_app basic|blas|threads|quota|multi|hold MIB|longsync|deepqueue|hello|"
                    "loop|nodevice|bench MIB|modules COUNT MIB\n");
    return 2;
}
