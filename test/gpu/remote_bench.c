/* SPDX-License-Identifier: Apache-2.0 */
/* The GPU check of docs/REMOTE.md ("The GPU check"): one program measured
 * against NVIDIA's runtime (local) and against the client libraries over
 * loopback (remote). It loads the runtime and cuBLAS it is given with dlopen,
 * so one binary, built with gcc on any machine, drives either: NVIDIA's
 * libcudart.so.12 or .13 and the client's libcudart.so.12 export the same
 * entry points with the same arguments. Its kernel is a fat binary nvcc made
 * on the GPU machine (--fatbin), or the fake driver's description of add_u32
 * (--fake-kernel), registered as nvcc-generated code registers it.
 *
 * usage: remote_bench --cudart LIB --cublas LIB
 *                     (--fatbin FILE | --fake-kernel | --no-kernel)
 *                     [--label NAME] [--calls N] [--copy-max-mib M]
 *                     [--copy-total-mib T] [--gemm N,N,...|none] [--gemm-flop F]
 * (--no-kernel: no nvcc on the machine; the launch latency is left out.)
 *
 * Prints one JSON object: the latency of a small kernel launch + device
 * synchronisation and of a call with a reply (median and p99 of N), the time
 * of pageable copies each way from 4 KiB up to M MiB (powers of 16, then M;
 * 3 to 200 copies of each size, T MiB of each or more, 512 unless given),
 * and bf16 GEMM throughput (cublasGemmEx, bf16 in and out, fp32 compute;
 * wall clock around repetitions worth F floating-point operations, then a
 * synchronisation; the median of 3 trials). Each result is checked: the
 * kernel's count of launches and copies' bytes read back, a GEMM element
 * against n * v * v. Exit 0 when every check passed; 1 with "error" in the
 * object otherwise; 2 on bad usage. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* --- What cuda_runtime_api.h and cublas_api.h declare ---------------------- */
typedef int cudaError_t;
typedef struct {
    unsigned x, y, z;
} dim3;
typedef struct {
    unsigned x, y, z;
} uint3;
enum { H2D = 1, D2H = 2 };
enum { CUDA_R_16BF = 14, CUBLAS_COMPUTE_32F = 68, CUBLAS_GEMM_DEFAULT = -1, CUBLAS_OP_N = 0 };

static struct {
    cudaError_t (*get_device_count)(int *);
    cudaError_t (*set_device)(int);
    cudaError_t (*malloc_)(void **, size_t);
    cudaError_t (*free_)(void *);
    cudaError_t (*memcpy_)(void *, const void *, size_t, int);
    cudaError_t (*memset_)(void *, int, size_t);
    cudaError_t (*device_sync)(void);
    cudaError_t (*mem_get_info)(size_t *, size_t *);
    const char *(*error_name)(cudaError_t);
    cudaError_t (*launch)(const void *, dim3, dim3, void **, size_t, void *);
    void **(*register_fatbin)(void *);
    void (*register_fatbin_end)(void **);
    void (*register_function)(void **, const char *, char *, const char *, int, uint3 *, uint3 *,
                              dim3 *, dim3 *, int *);
    int (*blas_create)(void **);
    int (*blas_destroy)(void *);
    int (*gemm_ex)(void *, int, int, int, int, int, const void *, const void *, int, int,
                   const void *, int, int, const void *, void *, int, int, int, int);
} rt;

/* --- Output: one JSON object, built as the run goes ------------------------- */

static char out[1 << 16];
static size_t out_len;

static void emit(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(out + out_len, sizeof out - out_len, fmt, ap);
    va_end(ap);
    if (n > 0)
        out_len += (size_t)n < sizeof out - out_len ? (size_t)n : sizeof out - out_len - 1;
}

static const char *label = "run";

/* Prints {"label", "error"} instead of the partial object (a JSON-safe
 * message) and exits 1. */
static void die(const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    for (char *c = msg; *c; c++)
        if (*c == '"' || *c == '\\' || (unsigned char)*c < 0x20)
            *c = '\'';
    printf("{\"label\":\"%s\",\"error\":\"%s\"}\n", label, msg);
    fprintf(stderr, "remote_bench: %s\n", msg);
    exit(1);
}

static const char *err_name(cudaError_t e)
{
    const char *s = rt.error_name ? rt.error_name(e) : NULL;
    return s ? s : "?";
}

#define CHECK(call)                                                                                \
    do {                                                                                           \
        cudaError_t e_ = (call);                                                                   \
        if (e_ != 0)                                                                               \
            die("%s: %s (%d)", #call, err_name(e_), e_);                                           \
    } while (0)

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The q-quantile (0..1) of n sorted values, nearest rank. */
static double quantile(const double *v, size_t n, double q)
{
    size_t i = (size_t)ceil(q * (double)n);
    return v[i == 0 ? 0 : i - 1];
}

/* --- Loading ---------------------------------------------------------------- */

static void *sym(void *lib, const char *libname, const char *name)
{
    void *p = dlsym(lib, name);
    if (!p)
        die("%s has no %s", libname, name);
    return p;
}

static void load(const char *cudart, const char *cublas)
{
    /* Global: the client's cuBLAS finds the client's runtime by its soname. */
    void *r = dlopen(cudart, RTLD_NOW | RTLD_GLOBAL);
    if (!r)
        die("cannot load the runtime: %s", dlerror());
    *(void **)&rt.error_name = sym(r, cudart, "cudaGetErrorName");
    *(void **)&rt.get_device_count = sym(r, cudart, "cudaGetDeviceCount");
    *(void **)&rt.set_device = sym(r, cudart, "cudaSetDevice");
    *(void **)&rt.malloc_ = sym(r, cudart, "cudaMalloc");
    *(void **)&rt.free_ = sym(r, cudart, "cudaFree");
    *(void **)&rt.memcpy_ = sym(r, cudart, "cudaMemcpy");
    *(void **)&rt.memset_ = sym(r, cudart, "cudaMemset");
    *(void **)&rt.device_sync = sym(r, cudart, "cudaDeviceSynchronize");
    *(void **)&rt.mem_get_info = sym(r, cudart, "cudaMemGetInfo");
    *(void **)&rt.launch = sym(r, cudart, "cudaLaunchKernel");
    *(void **)&rt.register_fatbin = sym(r, cudart, "__cudaRegisterFatBinary");
    *(void **)&rt.register_fatbin_end = sym(r, cudart, "__cudaRegisterFatBinaryEnd");
    *(void **)&rt.register_function = sym(r, cudart, "__cudaRegisterFunction");
    void *b = dlopen(cublas, RTLD_NOW | RTLD_LOCAL);
    if (!b)
        die("cannot load cuBLAS: %s", dlerror());
    *(void **)&rt.blas_create = sym(b, cublas, "cublasCreate_v2");
    *(void **)&rt.blas_destroy = sym(b, cublas, "cublasDestroy_v2");
    *(void **)&rt.gemm_ex = sym(b, cublas, "cublasGemmEx");
}

/* --- The kernel --------------------------------------------------------------- */

/* The fake driver's kernel description (test/fakecuda/fake_module.c) in a
 * fat binary's layout: header, one entry header, payload. */
#define FAKE_KERNELS "fakecubin\nadd_u32 add_u32 4,8,4,4\n"
static const struct {
    uint32_t magic;
    uint16_t version, header_size;
    uint64_t fat_size;
    uint16_t kind, flags;
    uint32_t entry_header_size;
    uint64_t payload_size;
    char payload[sizeof FAKE_KERNELS];
} __attribute__((aligned(8))) fake_fatbin = {0xBA55ED50u,           1, 16, sizeof fake_fatbin - 16, 2, 0,
                                             16, sizeof FAKE_KERNELS, FAKE_KERNELS};

static struct {
    int magic, version;
    const void *data;
    void *filename_or_fatbins;
} wrapper = {0x466243b1, 1, NULL, NULL};

/* The host address the kernel is registered under, as nvcc's stub is. */
static void add_u32_stub(void) {}

static void *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        die("cannot open the fat binary %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    /* 8-aligned, as nvcc places fat binaries. */
    void *p = n > 16 ? aligned_alloc(8, ((size_t)n + 7) & ~(size_t)7) : NULL;
    if (!p || fread(p, 1, (size_t)n, f) != (size_t)n)
        die("cannot read the fat binary %s", path);
    fclose(f);
    if (*(const uint32_t *)p != 0xBA55ED50u)
        die("%s is not a fat binary (nvcc -fatbin)", path);
    return p;
}

static void register_kernel(const char *fatbin_path, int fake)
{
    if (!fatbin_path && !fake)
        return;
    wrapper.data = fatbin_path ? read_file(fatbin_path) : (const void *)&fake_fatbin;
    void **h = rt.register_fatbin(&wrapper);
    if (!h)
        die("__cudaRegisterFatBinary failed");
    rt.register_function(h, (const char *)add_u32_stub, (char *)"add_u32", "add_u32", -1, NULL,
                         NULL, NULL, NULL, NULL);
    rt.register_fatbin_end(h);
}

static cudaError_t launch_add(uint32_t *p, unsigned n, unsigned v)
{
    unsigned us = 0;
    void *args[] = {&us, &p, &n, &v};
    dim3 grid = {(n + 255) / 256, 1, 1}, block = {256, 1, 1};
    return rt.launch((const void *)add_u32_stub, grid, block, args, 0, NULL);
}

/* --- Measurements --------------------------------------------------------------- */

static void emit_stats(const char *name, double *us, size_t n)
{
    qsort(us, n, sizeof *us, cmp_double);
    double sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += us[i];
    emit("\"%s\":{\"n\":%zu,\"median_us\":%.2f,\"p99_us\":%.2f,\"mean_us\":%.2f,\"min_us\":%.2f},",
         name, n, quantile(us, n, 0.5), quantile(us, n, 0.99), sum / (double)n, us[0]);
}

/* A small kernel launch + cudaDeviceSynchronize (unless there is no
 * kernel), and cudaMemGetInfo (a call with a reply and no GPU work), each
 * timed one by one. */
static void latency(size_t calls, int kernel)
{
    double *us = malloc(calls * sizeof *us);
    uint32_t *d = NULL, count = 0;
    if (!us)
        die("out of memory");
    CHECK(rt.malloc_((void **)&d, 4));
    CHECK(rt.memset_(d, 0, 4));
    for (int i = 0; kernel && i < 10; i++) { /* warm up: the module loads at the first launch */
        CHECK(launch_add(d, 1, 1));
        CHECK(rt.device_sync());
    }
    for (size_t i = 0; kernel && i < calls; i++) {
        double t0 = now_s();
        CHECK(launch_add(d, 1, 1));
        CHECK(rt.device_sync());
        us[i] = (now_s() - t0) * 1e6;
    }
    CHECK(rt.memcpy_(&count, d, 4, D2H));
    if (kernel && count != calls + 10)
        die("the kernel ran %u times, not %zu", count, calls + 10);
    if (kernel)
        emit_stats("launch_sync", us, calls);
    size_t free_b, total;
    for (size_t i = 0; i < calls; i++) {
        double t0 = now_s();
        CHECK(rt.mem_get_info(&free_b, &total));
        us[i] = (now_s() - t0) * 1e6;
    }
    emit_stats("call", us, calls);
    CHECK(rt.free_(d));
    free(us);
}

/* Pageable copies each way (the remote path has no pinned memory): the
 * median time of `reps` copies of each size; bytes checked after the last. */
/* The median time of `reps` copies of `s` bytes in direction `kind`, each
 * timed into t[]. */
static double copy_median_s(void *dst, const void *src, size_t s, int kind, double *t,
                            size_t reps)
{
    for (size_t i = 0; i < reps; i++) {
        double t0 = now_s();
        cudaError_t e = rt.memcpy_(dst, src, s, kind);
        if (e != 0)
            die("cudaMemcpy of %zu bytes, %s: %s (%d)", s, kind == H2D ? "H2D" : "D2H",
                err_name(e), e);
        t[i] = now_s() - t0;
    }
    qsort(t, reps, sizeof *t, cmp_double);
    return quantile(t, reps, 0.5);
}

static void copies(size_t max_bytes, size_t total)
{
    size_t sizes[16], n = 0;
    for (size_t s = 4096; s < max_bytes && n < 15; s *= 16)
        sizes[n++] = s;
    sizes[n++] = max_bytes;
    unsigned char *host = malloc(max_bytes), *back = malloc(max_bytes);
    unsigned char *d = NULL;
    if (!host || !back)
        die("out of memory for %zu-byte host buffers", max_bytes);
    for (size_t i = 0; i < max_bytes; i++)
        host[i] = (unsigned char)(i * 131 + 7);
    CHECK(rt.malloc_((void **)&d, max_bytes));
    emit("\"copy\":[");
    for (size_t k = 0; k < n; k++) {
        size_t s = sizes[k];
        /* `total` bytes or more each way, 3 to 200 copies. */
        size_t reps = total / s;
        reps = reps < 3 ? 3 : reps > 200 ? 200 : reps;
        double *t = malloc(reps * sizeof *t), h2d, d2h;
        if (!t)
            die("out of memory");
        CHECK(rt.memcpy_(d, host, s, H2D));
        h2d = copy_median_s(d, host, s, H2D, t, reps);
        memset(back, 0, s);
        d2h = copy_median_s(back, d, s, D2H, t, reps);
        free(t);
        if (memcmp(host, back, s) != 0)
            die("a %zu-byte copy came back different", s);
        emit("%s{\"bytes\":%zu,\"reps\":%zu,\"h2d_s\":%.9f,\"d2h_s\":%.9f,"
             "\"h2d_gbps\":%.3f,\"d2h_gbps\":%.3f}",
             k ? "," : "", s, reps, h2d, d2h, (double)s / h2d / 1e9, (double)s / d2h / 1e9);
    }
    emit("],");
    CHECK(rt.free_(d));
    free(host);
    free(back);
}

static float bf16_to_float(uint16_t h)
{
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

/* C = A * B, n x n, bf16 in and out, fp32 compute: repetitions worth
 * `flop` operations between two synchronisations, 3 trials. Every element
 * of A and B is v (the bytes 0x3c3c), so every element of C is n * v * v. */
static void gemm(void *blas, int n, double flop, int first)
{
    size_t bytes = (size_t)n * (size_t)n * 2;
    uint16_t *a = NULL, *b = NULL, *c = NULL, got[2];
    CHECK(rt.malloc_((void **)&a, bytes));
    CHECK(rt.malloc_((void **)&b, bytes));
    CHECK(rt.malloc_((void **)&c, bytes));
    CHECK(rt.memset_(a, 0x3c, bytes));
    CHECK(rt.memset_(b, 0x3c, bytes));
    CHECK(rt.memset_(c, 0, bytes));
    const float one = 1, zero = 0;
    double op = 2.0 * n * n * (double)n;
    int reps = (int)ceil(flop / op);
    reps = reps < 2 ? 2 : reps > 1000 ? 1000 : reps;
    for (int i = 0; i < 2; i++) { /* warm up: cuBLAS's first call picks its kernels */
        int st = rt.gemm_ex(blas, CUBLAS_OP_N, CUBLAS_OP_N, n, n, n, &one, a, CUDA_R_16BF, n, b,
                            CUDA_R_16BF, n, &zero, c, CUDA_R_16BF, n, CUBLAS_COMPUTE_32F,
                            CUBLAS_GEMM_DEFAULT);
        if (st != 0)
            die("cublasGemmEx n=%d: status %d", n, st);
    }
    CHECK(rt.device_sync());
    double secs[3];
    for (int trial = 0; trial < 3; trial++) {
        double t0 = now_s();
        for (int i = 0; i < reps; i++) {
            int st = rt.gemm_ex(blas, CUBLAS_OP_N, CUBLAS_OP_N, n, n, n, &one, a, CUDA_R_16BF, n,
                                b, CUDA_R_16BF, n, &zero, c, CUDA_R_16BF, n, CUBLAS_COMPUTE_32F,
                                CUBLAS_GEMM_DEFAULT);
            if (st != 0)
                die("cublasGemmEx n=%d: status %d", n, st);
        }
        CHECK(rt.device_sync());
        secs[trial] = now_s() - t0;
    }
    /* The first and the last element of C. */
    CHECK(rt.memcpy_(&got[0], c, 2, D2H));
    CHECK(rt.memcpy_(&got[1], (char *)c + bytes - 2, 2, D2H));
    float v = bf16_to_float(0x3c3c), want = (float)n * v * v;
    for (int i = 0; i < 2; i++)
        if (fabsf(bf16_to_float(got[i]) - want) > 0.01f * want)
            die("GEMM n=%d: C holds %g, not %g", n, (double)bf16_to_float(got[i]), (double)want);
    /* The median trial's time; TFLOP/s from it (slowest trial first). */
    qsort(secs, 3, sizeof *secs, cmp_double);
    emit("%s{\"n\":%d,\"reps\":%d,\"s\":%.9f,\"tflops\":%.6g,"
         "\"tflops_trials\":[%.6g,%.6g,%.6g]}",
         first ? "" : ",", n, reps, secs[1], op * reps / secs[1] / 1e12,
         op * reps / secs[2] / 1e12, op * reps / secs[1] / 1e12, op * reps / secs[0] / 1e12);
    CHECK(rt.free_(a));
    CHECK(rt.free_(b));
    CHECK(rt.free_(c));
}

static void usage(void)
{
    fprintf(stderr, "usage: remote_bench --cudart LIB --cublas LIB\n"
                    "         (--fatbin FILE | --fake-kernel | --no-kernel)\n"
                    "         [--label NAME] [--calls N] [--copy-max-mib M]\n"
                    "         [--copy-total-mib T] [--gemm N,N,...|none] [--gemm-flop F]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    const char *cudart = NULL, *cublas = NULL, *fatbin = NULL;
    const char *gemms = "4096,16384";
    int fake = 0, no_kernel = 0;
    long calls = 2000, copy_mib = 256, total_mib = 512;
    double flop = 4e13;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--fake-kernel") == 0) {
            fake = 1;
            continue;
        }
        if (strcmp(a, "--no-kernel") == 0) {
            no_kernel = 1;
            continue;
        }
        if (!v)
            usage();
        i++;
        if (strcmp(a, "--cudart") == 0)
            cudart = v;
        else if (strcmp(a, "--cublas") == 0)
            cublas = v;
        else if (strcmp(a, "--fatbin") == 0)
            fatbin = v;
        else if (strcmp(a, "--label") == 0)
            label = v;
        else if (strcmp(a, "--calls") == 0)
            calls = strtol(v, NULL, 10);
        else if (strcmp(a, "--copy-max-mib") == 0)
            copy_mib = strtol(v, NULL, 10);
        else if (strcmp(a, "--copy-total-mib") == 0)
            total_mib = strtol(v, NULL, 10);
        else if (strcmp(a, "--gemm") == 0)
            gemms = v;
        else if (strcmp(a, "--gemm-flop") == 0)
            flop = strtod(v, NULL);
        else
            usage();
    }
    if (!cudart || !cublas || fake + !!fatbin + no_kernel != 1 || calls < 10 || calls > 1000000 || copy_mib < 1 ||
        copy_mib > 4096 || total_mib < 1 || total_mib > 65536 || !(flop > 0))
        usage();
    for (const char *c = label; *c; c++)
        if (*c == '"' || *c == '\\' || (unsigned char)*c < 0x20)
            usage();
    emit("{\"label\":\"%s\",", label);
    load(cudart, cublas);
    register_kernel(fatbin, fake);
    int count = 0;
    CHECK(rt.get_device_count(&count));
    CHECK(rt.set_device(0));
    emit("\"devices\":%d,", count);
    latency((size_t)calls, !no_kernel);
    copies((size_t)copy_mib << 20, (size_t)total_mib << 20);
    const char *sizes = strcmp(gemms, "none") == 0 ? "" : gemms;
    void *blas = NULL;
    int st = *sizes ? rt.blas_create(&blas) : 0;
    if (st != 0)
        die("cublasCreate_v2: status %d", st);
    emit("\"gemm\":[");
    int first = 1;
    for (const char *p = sizes; *p;) {
        char *end;
        long n = strtol(p, &end, 10);
        if (end == p || n < 16 || n > 65536 || (*end && *end != ','))
            die("--gemm: a size is 16 to 65536, not '%s'", p);
        gemm(blas, (int)n, flop, first);
        first = 0;
        p = *end ? end + 1 : end;
    }
    emit("],");
    if (blas)
        rt.blas_destroy(blas);
    CHECK(rt.device_sync());
    emit("\"error\":null}\n");
    fputs(out, stdout);
    return 0;
}
