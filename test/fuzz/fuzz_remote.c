/* SPDX-License-Identifier: Apache-2.0 */
/* flexpu-remoted's side of the wire (docs/REMOTE.md, issue 17): what an
 * authenticated client sends is a tenant's word, so every frame is hostile.
 * One input is one connection after its HELLO: frames are decoded as
 * read_frame does (fx_wire_hdr_decode, then fx_wire_req_decode on a heap
 * copy of exactly the payload's length, so a decoder that reads past it is
 * an ASan report) and served by the worker's own code (fx_srv_handle) on the
 * fake driver (test/fakecuda, two devices, 64 MiB each) and a checking cuBLAS
 * (fuzz_cublas.c). At the end, fx_srv_release_all frees what the client held.
 *
 * The oracle besides the sanitizers: the worker's driver table is wrapped,
 * and every call is checked against what this connection was given: a
 * device pointer range must lie inside one live allocation the client made
 * (a neighbour's allocation, made before the client came, sits in the same
 * driver), a stream, event, module or function must be a live one of this
 * connection. The tables stay within their bounds, every reply is a
 * well-formed frame within the protocol's limit, and after release nothing
 * the client made is left in the driver.
 *
 * The first byte picks the input's form: even, raw frames (the seeds in
 * corpus/remote are real sessions recorded from remote_app); odd, requests
 * built from the bytes with fx_wire_req_encode (device pointers mostly
 * inside or just outside the client's allocations, small handle ids, module
 * images the fake driver accepts), since raw bytes rarely spell a pointer
 * the worker handed out. Kernels' durations are clamped to 20 us so that a
 * synchronisation costs nothing. */
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "flexpu/log.h"
#include "fuzz_input.h"
#include "fuzz_scratch.h"
#include "remote/cudart_abi.h"
#include "remote/server_conn.h"
#include "remote/wire.h"
#include "util/alloc.h"

#define MAX_SHADOW 4096
#define KERNEL_US_MAX 20u

static void violation(const char *what, unsigned long long a, unsigned long long b)
{
    fprintf(stderr, "fuzz_remote: %s (0x%llx, 0x%llx)\n", what, a, b);
    abort();
}

/* --- What the client was given, as the driver saw it ---------------------- */

struct sh_alloc {
    CUdeviceptr p;
    size_t n;
};
struct sh_func {
    CUfunction f;
    CUmodule m;
};

static struct {
    struct sh_alloc allocs[MAX_SHADOW];
    size_t nallocs;
    CUstream streams[MAX_SHADOW];
    size_t nstreams;
    CUevent events[MAX_SHADOW];
    size_t nevents;
    CUmodule mods[MAX_SHADOW];
    size_t nmods;
    struct sh_func funcs[MAX_SHADOW];
    size_t nfuncs;
} sh;

static struct driver real; /* the worker's driver as fx_srv_start_driver loaded it */
static CUdeviceptr neighbour;

static int owned(uint64_t p, uint64_t n)
{
    for (size_t i = 0; i < sh.nallocs; i++)
        if (p >= sh.allocs[i].p && p - sh.allocs[i].p <= sh.allocs[i].n &&
            n <= sh.allocs[i].n - (p - sh.allocs[i].p))
            return 1;
    return 0;
}

static void must_own(uint64_t p, uint64_t n, const char *what)
{
    if (!owned(p, n))
        violation(what, p, n);
}

static int find_ptr(void *const *arr, size_t n, const void *x)
{
    for (size_t i = 0; i < n; i++)
        if (arr[i] == x)
            return (int)i;
    return -1;
}

static void must_stream(void *s, const char *what)
{
    if (s && find_ptr((void *const *)sh.streams, sh.nstreams, s) < 0)
        violation(what, (uintptr_t)s, 0);
}

static void must_event(CUevent e, const char *what)
{
    if (find_ptr((void *const *)sh.events, sh.nevents, e) < 0)
        violation(what, (uintptr_t)e, 0);
}

static void must_module(CUmodule m, const char *what)
{
    if (find_ptr((void *const *)sh.mods, sh.nmods, m) < 0)
        violation(what, (uintptr_t)m, 0);
}

static void must_func(CUfunction f, const char *what)
{
    for (size_t i = 0; i < sh.nfuncs; i++)
        if (sh.funcs[i].f == f)
            return;
    violation(what, (uintptr_t)f, 0);
}

static void add_ptr(void **arr, size_t *n, void *x)
{
    if (*n == MAX_SHADOW)
        violation("more handles than the harness tracks", *n, 0);
    arr[(*n)++] = x;
}

static void drop_ptr(void **arr, size_t *n, void *x)
{
    int i = find_ptr(arr, *n, x);
    if (i >= 0)
        arr[i] = arr[--*n];
}

/* --- The wrapped driver ------------------------------------------------------ */

static CUresult w_mem_alloc(CUdeviceptr *p, size_t n)
{
    CUresult r = real.MemAlloc(p, n);
    if (r == CUDA_SUCCESS) {
        if (sh.nallocs == MAX_SHADOW)
            violation("more allocations than the harness tracks", sh.nallocs, 0);
        sh.allocs[sh.nallocs++] = (struct sh_alloc){*p, n};
    }
    return r;
}

static CUresult w_mem_free(CUdeviceptr p)
{
    size_t i = 0;
    while (i < sh.nallocs && sh.allocs[i].p != p)
        i++;
    if (i == sh.nallocs)
        violation("cuMemFree of memory the client did not allocate", p, 0);
    CUresult r = real.MemFree(p);
    if (r == CUDA_SUCCESS)
        sh.allocs[i] = sh.allocs[--sh.nallocs];
    return r;
}

static CUresult w_htod(CUdeviceptr d, const void *s, size_t n)
{
    must_own(d, n, "cuMemcpyHtoD outside the client's memory");
    return real.HtoD(d, s, n);
}

static CUresult w_dtoh(void *d, CUdeviceptr s, size_t n)
{
    must_own(s, n, "cuMemcpyDtoH outside the client's memory");
    return real.DtoH(d, s, n);
}

static CUresult w_dtod(CUdeviceptr d, CUdeviceptr s, size_t n)
{
    must_own(d, n, "cuMemcpyDtoD's destination outside the client's memory");
    must_own(s, n, "cuMemcpyDtoD's source outside the client's memory");
    return real.DtoD(d, s, n);
}

static CUresult w_htod_async(CUdeviceptr d, const void *s, size_t n, CUstream st)
{
    must_own(d, n, "cuMemcpyHtoDAsync outside the client's memory");
    must_stream(st, "cuMemcpyHtoDAsync on a stream not the client's");
    return real.HtoDAsync(d, s, n, st);
}

static CUresult w_dtoh_async(void *d, CUdeviceptr s, size_t n, CUstream st)
{
    must_own(s, n, "cuMemcpyDtoHAsync outside the client's memory");
    must_stream(st, "cuMemcpyDtoHAsync on a stream not the client's");
    return real.DtoHAsync(d, s, n, st);
}

static CUresult w_dtod_async(CUdeviceptr d, CUdeviceptr s, size_t n, CUstream st)
{
    must_own(d, n, "cuMemcpyDtoDAsync's destination outside the client's memory");
    must_own(s, n, "cuMemcpyDtoDAsync's source outside the client's memory");
    must_stream(st, "cuMemcpyDtoDAsync on a stream not the client's");
    return real.DtoDAsync(d, s, n, st);
}

static CUresult w_memset(CUdeviceptr d, unsigned char v, size_t n)
{
    must_own(d, n, "cuMemsetD8 outside the client's memory");
    return real.MemsetD8(d, v, n);
}

static CUresult w_memset_async(CUdeviceptr d, unsigned char v, size_t n, CUstream st)
{
    must_own(d, n, "cuMemsetD8Async outside the client's memory");
    must_stream(st, "cuMemsetD8Async on a stream not the client's");
    return real.MemsetD8Async(d, v, n, st);
}

static CUresult w_stream_create(CUstream *s, unsigned flags)
{
    CUresult r = real.StreamCreate(s, flags);
    if (r == CUDA_SUCCESS)
        add_ptr((void **)sh.streams, &sh.nstreams, *s);
    return r;
}

static CUresult w_stream_destroy(CUstream s)
{
    if (!s)
        violation("cuStreamDestroy of the default stream", 0, 0);
    must_stream(s, "cuStreamDestroy of a stream not the client's");
    CUresult r = real.StreamDestroy(s);
    if (r == CUDA_SUCCESS)
        drop_ptr((void **)sh.streams, &sh.nstreams, s);
    return r;
}

static CUresult w_stream_query(CUstream s)
{
    must_stream(s, "cuStreamQuery of a stream not the client's");
    return real.StreamQuery(s);
}

static CUresult w_stream_sync(CUstream s)
{
    must_stream(s, "cuStreamSynchronize of a stream not the client's");
    return real.StreamSynchronize(s);
}

static CUresult w_module_load(CUmodule *m, const void *img)
{
    CUresult r = real.ModuleLoadData(m, img);
    if (r == CUDA_SUCCESS)
        add_ptr((void **)sh.mods, &sh.nmods, *m);
    return r;
}

static CUresult w_module_unload(CUmodule m)
{
    must_module(m, "cuModuleUnload of a module not the client's");
    CUresult r = real.ModuleUnload(m);
    if (r == CUDA_SUCCESS) {
        drop_ptr((void **)sh.mods, &sh.nmods, m);
        for (size_t i = 0; i < sh.nfuncs;)
            if (sh.funcs[i].m == m)
                sh.funcs[i] = sh.funcs[--sh.nfuncs];
            else
                i++;
    }
    return r;
}

static CUresult w_module_get_function(CUfunction *f, CUmodule m, const char *name)
{
    must_module(m, "cuModuleGetFunction on a module not the client's");
    CUresult r = real.ModuleGetFunction(f, m, name);
    if (r == CUDA_SUCCESS) {
        size_t i = 0;
        while (i < sh.nfuncs && sh.funcs[i].f != *f)
            i++;
        if (i == sh.nfuncs) {
            if (sh.nfuncs == MAX_SHADOW)
                violation("more functions than the harness tracks", 0, 0);
            sh.funcs[sh.nfuncs++] = (struct sh_func){*f, m};
        }
    }
    return r;
}

static CUresult w_func_param_info(CUfunction f, size_t i, size_t *off, size_t *size)
{
    must_func(f, "cuFuncGetParamInfo of a function of no live module");
    return real.FuncGetParamInfo(f, i, off, size);
}

static CUresult w_event_create(CUevent *e, unsigned flags)
{
    CUresult r = real.EventCreate(e, flags);
    if (r == CUDA_SUCCESS)
        add_ptr((void **)sh.events, &sh.nevents, *e);
    return r;
}

static CUresult w_event_destroy(CUevent e)
{
    must_event(e, "cuEventDestroy of an event not the client's");
    CUresult r = real.EventDestroy(e);
    if (r == CUDA_SUCCESS)
        drop_ptr((void **)sh.events, &sh.nevents, e);
    return r;
}

static CUresult w_event_record(CUevent e, CUstream s)
{
    must_event(e, "cuEventRecord of an event not the client's");
    must_stream(s, "cuEventRecord on a stream not the client's");
    return real.EventRecord(e, s);
}

static CUresult w_event_query(CUevent e)
{
    must_event(e, "cuEventQuery of an event not the client's");
    return real.EventQuery(e);
}

static CUresult w_event_sync(CUevent e)
{
    must_event(e, "cuEventSynchronize of an event not the client's");
    return real.EventSynchronize(e);
}

static CUresult w_event_elapsed(float *ms, CUevent a, CUevent b)
{
    must_event(a, "cuEventElapsedTime of an event not the client's");
    must_event(b, "cuEventElapsedTime of an event not the client's");
    return real.EventElapsedTime(ms, a, b);
}

static CUresult w_stream_wait_event(CUstream s, CUevent e, unsigned flags)
{
    must_stream(s, "cuStreamWaitEvent on a stream not the client's");
    must_event(e, "cuStreamWaitEvent of an event not the client's");
    return real.StreamWaitEvent(s, e, flags);
}

/* Kernel parameters are opaque to the worker (a real kernel reaches only its
 * own process's memory), so they are not a finding; the fake's kernels run
 * on host memory in this process, so they are tamed: a duration of at most
 * KERNEL_US_MAX, and an add_u32 (4 parameters: us, p, n, v) whose words are
 * not all the client's adds to none. */
static CUresult w_launch(CUfunction f, unsigned gx, unsigned gy, unsigned gz, unsigned bx,
                         unsigned by, unsigned bz, unsigned shared, CUstream s, void **params,
                         void **extra)
{
    must_func(f, "cuLaunchKernel of a function of no live module");
    must_stream(s, "cuLaunchKernel on a stream not the client's");
    size_t off = 0, n4 = 0;
    if (params && params[0]) {
        uint32_t us; /* the fake reads 4 bytes there, whatever the size */
        memcpy(&us, params[0], 4);
        us = us > KERNEL_US_MAX ? KERNEL_US_MAX : us;
        memcpy(params[0], &us, 4);
    }
    if (params && real.FuncGetParamInfo(f, 3, &off, &n4) == CUDA_SUCCESS && n4 == 4) {
        uint64_t p;
        uint32_t n;
        memcpy(&p, params[1], 8);
        memcpy(&n, params[2], 4);
        if (!owned(p, (uint64_t)n * 4)) {
            n = 0;
            memcpy(params[2], &n, 4);
        }
    }
    return real.LaunchKernel(f, gx, gy, gz, bx, by, bz, shared, s, params, extra);
}

static void wrap(struct driver *d)
{
    real = *d;
    d->MemAlloc = w_mem_alloc;
    d->MemFree = w_mem_free;
    d->HtoD = w_htod;
    d->DtoH = w_dtoh;
    d->DtoD = w_dtod;
    d->HtoDAsync = w_htod_async;
    d->DtoHAsync = w_dtoh_async;
    d->DtoDAsync = w_dtod_async;
    d->MemsetD8 = w_memset;
    d->MemsetD8Async = w_memset_async;
    d->StreamCreate = w_stream_create;
    d->StreamDestroy = w_stream_destroy;
    d->StreamQuery = w_stream_query;
    d->StreamSynchronize = w_stream_sync;
    d->ModuleLoadData = w_module_load;
    d->ModuleUnload = w_module_unload;
    d->ModuleGetFunction = w_module_get_function;
    d->FuncGetParamInfo = w_func_param_info;
    d->EventCreate = w_event_create;
    d->EventDestroy = w_event_destroy;
    d->EventRecord = w_event_record;
    d->EventQuery = w_event_query;
    d->EventSynchronize = w_event_sync;
    d->EventElapsedTime = w_event_elapsed;
    d->StreamWaitEvent = w_stream_wait_event;
    d->LaunchKernel = w_launch;
}

/* --- Setup ------------------------------------------------------------------- */

static long (*blas_live)(void);
/* --max-module-mib at a few of module_image's images (about 80 bytes), so
 * that loads past it, and loads after unloads under it, are reached. */
#define MODULE_BYTES_MAX 400u
static const struct fx_srv_opts opts = {.hello_timeout_ms = 1000, .frame_timeout_ms = 1000,
                                        .progress_ms = 1000, .ctl_fd = -1,
                                        .max_module_bytes = MODULE_BYTES_MAX};

static void drop_line(const char *line, void *ctx)
{
    (void)line;
    (void)ctx;
}

static void setup(void)
{
    flexpu_log_set_level(FLEXPU_LOG_DEBUG);
    flexpu_log_set_sink(drop_line, NULL);
    static char dir[64] = "/tmp/flexpu-fuzz-remote-XXXXXX";
    if (!mkdtemp(dir))
        abort();
    fuzz_scratch_remove_at_exit(dir);
    setenv("FAKECUDA_DIR", dir, 1);
    setenv("FAKECUDA_DEVICES", "2", 1);
    setenv("FAKECUDA_TOTAL_MEM", "67108864", 1);
    setenv("FAKECUDA_CTX_OVERHEAD", "0", 1);
    setenv("FLEXPU_REMOTE_CUBLAS", FUZZ_CUBLAS_LIB, 1);
    /* Loaded by path first: the worker's dlopen("libcuda.so.1") finds it by
     * its soname. */
    if (!dlopen(FAKECUDA_LIB, RTLD_NOW | RTLD_GLOBAL))
        abort();
    void *blas = dlopen(FUZZ_CUBLAS_LIB, RTLD_NOW | RTLD_LOCAL);
    void (*set)(void (*)(uint64_t, uint64_t, const char *), void (*)(void *, const char *));
    *(void **)&set = blas ? dlsym(blas, "fuzz_cublas_set_checks") : NULL;
    *(void **)&blas_live = blas ? dlsym(blas, "fuzz_cublas_live_handles") : NULL;
    if (!set || !blas_live)
        abort();
    set(must_own, must_stream);
    /* A neighbour: memory in the same driver that no client was given. */
    struct fx_srv_conn *c = fx_srv_conn_new(&opts);
    CUdevice dev;
    CUcontext ctx;
    if (!c || fx_srv_start_driver(c) != cudaSuccess || c->d.DeviceGet(&dev, 0) != CUDA_SUCCESS ||
        c->d.PrimaryRetain(&ctx, dev) != CUDA_SUCCESS || c->d.CtxSetCurrent(ctx) != CUDA_SUCCESS ||
        c->d.MemAlloc(&neighbour, 1 << 20) != CUDA_SUCCESS)
        abort();
    fx_srv_conn_free(c);
}

/* --- Inputs (read with fuzz_input.h) ------------------------------------------- */

/* One frame as the worker reads it; 0, or -1 where the worker would drop the
 * connection (a bad header or payload, a reply's op, a frame cut short). */
static int serve_frame(struct fx_srv_conn *c, const unsigned char *hb, const unsigned char *payload,
                       size_t left)
{
    struct fx_wire_hdr h;
    struct fx_wire_req q;
    struct flexpu_error err = {0};
    if (fx_wire_hdr_decode(hb, &h, &err) != 0 || (h.op & FX_WIRE_REPLY))
        return -1;
    if (h.len > left)
        return -1;
    /* Exactly the payload, on the heap: a read past it is an ASan report. */
    unsigned char *copy = h.len ? fx_malloc(h.len) : NULL;
    if (h.len && !copy)
        abort();
    if (h.len)
        memcpy(copy, payload, h.len);
    int rc = fx_wire_req_decode(&h, copy, &q, &err);
    if (rc == 0) {
        fx_srv_handle(c, &q);
        /* What went out is well formed: whole frames, each within the limit. */
        size_t at = 0;
        while (at < c->out.len) {
            struct fx_wire_hdr rh;
            if (c->out.len - at < FX_WIRE_HDR_SIZE ||
                fx_wire_hdr_decode(c->out.buf + at, &rh, &err) != 0 ||
                !(rh.op & FX_WIRE_REPLY) || rh.len < FX_WIRE_REPLY_HEAD ||
                rh.len > c->out.len - at - FX_WIRE_HDR_SIZE)
                violation("a malformed reply", at, c->out.len);
            at += FX_WIRE_HDR_SIZE + rh.len;
        }
        c->out.len = 0;
        c->out.bad = 0;
        if (c->nallocs > MAX_ALLOCS || c->cap_allocs > MAX_ALLOCS ||
            c->cap_streams > MAX_STREAMS || c->cap_mods > MAX_MODULES ||
            c->cap_funcs > MAX_FUNCS || c->nfuncs > c->cap_funcs)
            violation("a connection's table past its bound", c->nallocs, c->cap_streams);
        /* The modules' bytes are those of the live ones, within the bound:
         * no path leaks a count (a client refused for nothing) or takes
         * one twice (size_t wrapping under the bound's check). */
        size_t live = 0;
        for (size_t i = 0; i < c->nmods; i++)
            live += c->mods[i].m ? c->mods[i].bytes : 0;
        if (live != c->module_bytes || c->module_bytes > c->max_module_bytes ||
            c->max_module_bytes != MODULE_BYTES_MAX)
            violation("the modules' bytes miscounted", c->module_bytes, live);
    }
    fx_free(copy);
    return rc == 0 ? 0 : -1;
}

static void raw_frames(struct fx_srv_conn *c, struct fuzz_in *in)
{
    while (in->n >= FX_WIRE_HDR_SIZE) {
        const unsigned char *hb = in->p;
        in->p += FX_WIRE_HDR_SIZE;
        in->n -= FX_WIRE_HDR_SIZE;
        uint32_t len = (uint32_t)hb[0] | (uint32_t)hb[1] << 8 | (uint32_t)hb[2] << 16 |
                       (uint32_t)hb[3] << 24;
        if (serve_frame(c, hb, in->p, in->n) != 0)
            return;
        in->p += len;
        in->n -= len;
    }
}

/* A device pointer: mostly one of the client's allocations at an offset
 * near its start or its end, sometimes the neighbour's or any value. */
static uint64_t pick_ptr(struct fuzz_in *in)
{
    uint8_t k = fuzz_byte(in), o = fuzz_byte(in);
    if (k < 16)
        return neighbour + o;
    if (k < 24)
        return ((uint64_t)fuzz_u32(in) << 32) | fuzz_u32(in);
    if (!sh.nallocs)
        return o;
    const struct sh_alloc *a = &sh.allocs[k % sh.nallocs];
    if (k >= 128)
        return a->p + (o < 64 ? 0 : o); /* its start, mostly */
    return (k & 1) ? a->p + a->n - o : a->p + o;
}

static uint32_t small_id(struct fuzz_in *in)
{
    uint8_t b = fuzz_byte(in);
    return b < 240 ? b % 6 : fuzz_u32(in);
}

static uint64_t size_of(struct fuzz_in *in)
{
    uint8_t b = fuzz_byte(in);
    return b < 200 ? (uint64_t)b * 8 + fuzz_byte(in) : (uint64_t)fuzz_u32(in) % (FX_WIRE_CHUNK + 2);
}

static const char cubin[] = "fakecubin\nk0 sleep 4\nk1 add_u32 4,8,4,4\nk2 sleep 4,8,1,2\n";

/* A fat binary the fake driver takes (fake_module.c), its size fields
 * sometimes off. */
static size_t module_image(struct fuzz_in *in, unsigned char *img, size_t cap)
{
    size_t body = sizeof cubin; /* with its NUL */
    uint8_t skew = fuzz_byte(in);
    size_t n = 16 + body;
    if (n > cap)
        abort();
    uint32_t w[4] = {0xBA55ED50u, 1u | 16u << 16, (uint32_t)body, 0};
    if (skew > 230)
        w[2] += skew - 236; /* a size that is not what came */
    if (skew == 255)
        w[3] = 1;
    for (int i = 0; i < 4; i++)
        for (int b = 0; b < 4; b++)
            img[i * 4 + b] = (unsigned char)(w[i] >> (8 * b));
    memcpy(img + 16, cubin, body);
    if (skew > 220 && skew <= 230)
        n -= skew - 220; /* cut short */
    return n;
}

static const int types[] = {0, 1, 2, 3, 10, 14, 7, -1};
static const int computes[] = {68, 64, 70, 72, 77, 0};

/* A leading dimension: mostly the operand's rows plus 0 to 3 (what a
 * client sends), sometimes anything. */
static int32_t lead(struct fuzz_in *in, int64_t rows)
{
    uint8_t l = fuzz_byte(in);
    if (l < 200)
        return (int32_t)(rows + l % 4);
    return l < 250 ? l % 48 : (int32_t)fuzz_u32(in);
}

static void build_gemm(struct fuzz_in *in, struct fx_wire_gemm *g)
{
    g->handle = small_id(in);
    uint8_t t = fuzz_byte(in);
    g->transa = t % 3;
    g->transb = t / 3 % 3;
    if (t >= 250)
        g->transa = 3; /* refused by the decoder */
    g->m = fuzz_byte(in) % 17;
    g->n = fuzz_byte(in) % 17;
    g->k = fuzz_byte(in) % 17;
    uint8_t ty = fuzz_byte(in);
    if (ty < 160) { /* the common case: 32F in and out */
        g->atype = g->btype = g->ctype = 0;
        g->compute = 68;
    } else {
        g->atype = types[ty % 8];
        g->btype = types[ty / 8 % 8];
        g->ctype = types[fuzz_byte(in) % 8];
        g->compute = computes[fuzz_byte(in) % 6];
    }
    g->algo = -1;
    g->a = pick_ptr(in);
    g->b = pick_ptr(in);
    g->c = pick_ptr(in);
    g->lda = lead(in, g->transa ? g->k : g->m);
    g->ldb = lead(in, g->transb ? g->n : g->k);
    g->ldc = lead(in, g->m);
    uint8_t s = fuzz_byte(in);
    g->scalar_len = s < 200 ? (g->compute == 70 ? 8 : g->compute == 64 ? 2 : 4) : 1 + s % 16;
    memset(g->alpha, 0, sizeof g->alpha);
    memset(g->beta, 0, sizeof g->beta);
    g->beta[0] = fuzz_byte(in) & 1;
}

/* Builds one request from the bytes; 0, or -1 when the bytes ran out. */
static int build_req(struct fuzz_in *in, struct fx_wire_req *q, unsigned char *buf, size_t cap)
{
    if (in->n < 2)
        return -1;
    memset(q, 0, sizeof *q);
    uint8_t op = fuzz_byte(in), fl = fuzz_byte(in);
    q->h.op = (uint16_t)(1 + op % (FX_OP_END - 1));
    q->h.dev = fl % 8 < 5 ? 0 : fl % 8 < 7 ? 1 : 2; /* two devices; 2 is none */
    q->h.flags = (fl & 0x80) ? FX_WIRE_NO_REPLY : 0;
    q->h.seq = fl;
    switch (q->h.op) {
    case FX_OP_HELLO:
        q->u.hello.version = FX_WIRE_VERSION;
        break;
    case FX_OP_MALLOC:
        q->u.malloc.size = size_of(in) * (fuzz_byte(in) % 4 == 0 ? 4096 : 1);
        break;
    case FX_OP_FREE:
        q->u.free.ptr = pick_ptr(in);
        break;
    case FX_OP_MEMCPY_H2D: {
        q->u.h2d.dst = pick_ptr(in);
        q->u.h2d.stream = small_id(in);
        size_t n = fuzz_byte(in) % 64 + 1;
        n = n < cap ? n : cap;
        for (size_t i = 0; i < n; i++)
            buf[i] = fuzz_byte(in);
        q->u.h2d.data = buf;
        q->u.h2d.n = n;
        break;
    }
    case FX_OP_MEMCPY_D2H:
        q->u.d2h.src = pick_ptr(in);
        q->u.d2h.size = size_of(in);
        q->u.d2h.stream = small_id(in);
        break;
    case FX_OP_MEMCPY_D2D:
        q->u.d2d.dst = pick_ptr(in);
        q->u.d2d.src = pick_ptr(in);
        q->u.d2d.size = size_of(in);
        q->u.d2d.stream = small_id(in);
        break;
    case FX_OP_MEMSET:
        q->u.memset.dst = pick_ptr(in);
        q->u.memset.size = size_of(in);
        q->u.memset.value = fuzz_byte(in);
        q->u.memset.stream = small_id(in);
        break;
    case FX_OP_STREAM_CREATE:
        q->u.stream_create.flags = fuzz_byte(in) & 3;
        break;
    case FX_OP_STREAM_SYNC:
    case FX_OP_STREAM_DESTROY:
    case FX_OP_MODULE_UNLOAD:
    case FX_OP_BLAS_DESTROY:
        q->u.id.id = small_id(in);
        break;
    case FX_OP_MODULE_LOAD:
        q->u.module_load.image = buf;
        q->u.module_load.n = module_image(in, buf, cap);
        break;
    case FX_OP_FUNC_GET: {
        static const char *const names[] = {"k0", "k1", "k2", "kx"};
        q->u.func_get.module = small_id(in);
        const char *name = names[fuzz_byte(in) % 4];
        q->u.func_get.name = (const unsigned char *)name;
        q->u.func_get.name_len = strlen(name);
        break;
    }
    case FX_OP_LAUNCH: {
        q->u.launch.func = small_id(in);
        for (int i = 0; i < 3; i++) {
            q->u.launch.grid[i] = 1 + fuzz_byte(in) % 2;
            q->u.launch.block[i] = 1 + fuzz_byte(in) % 2;
        }
        q->u.launch.stream = small_id(in);
        uint8_t shape = fuzz_byte(in);
        size_t n = shape % 4 == 0 ? 4 : shape % 4 == 1 ? 24 : shape % 4 == 2 ? 16 : shape % 64;
        n = n < cap ? n : cap;
        memset(buf, 0, n);
        buf[0] = fuzz_byte(in);
        if (n >= 24) {
            uint64_t p = pick_ptr(in);
            uint32_t cnt = fuzz_byte(in);
            memcpy(buf + 8, &p, 8);
            memcpy(buf + 16, &cnt, 4);
        }
        q->u.launch.args = buf;
        q->u.launch.args_len = n;
        break;
    }
    case FX_OP_BLAS_SET_STREAM:
        q->u.blas_stream.handle = small_id(in);
        q->u.blas_stream.stream = small_id(in);
        break;
    case FX_OP_BLAS_GEMM:
        build_gemm(in, &q->u.gemm);
        break;
    case FX_OP_EVENT_CREATE:
    case FX_OP_EVENT_DESTROY:
    case FX_OP_EVENT_RECORD:
    case FX_OP_EVENT_QUERY:
    case FX_OP_EVENT_SYNC:
    case FX_OP_EVENT_ELAPSED:
    case FX_OP_STREAM_WAIT_EVENT:
        q->u.ids.a = q->h.op == FX_OP_EVENT_CREATE ? fuzz_byte(in) % 9 : small_id(in);
        q->u.ids.b = small_id(in);
        q->u.ids.c = fuzz_byte(in) % 2;
        break;
    case FX_OP_DEVICE_ATTRIBUTE:
        q->u.attribute.attr = fuzz_byte(in) < 250 ? fuzz_byte(in) : fuzz_u32(in);
        q->u.attribute.device = fuzz_byte(in) % 3;
        break;
    default: /* DEVICE_SYNC, MEM_GET_INFO, BLAS_CREATE, PROGRESS */
        break;
    }
    return 0;
}

static void built_frames(struct fx_srv_conn *c, struct fuzz_in *in)
{
    static unsigned char buf[256];
    struct fx_wr w;
    fx_wr_init(&w, FX_WIRE_HDR_SIZE + FX_WIRE_MAX_PAYLOAD);
    struct fx_wire_req q;
    for (int i = 0; i < 256 && build_req(in, &q, buf, sizeof buf) == 0; i++) {
        w.len = 0;
        /* A request the encoder refuses (PROGRESS, HELLO's fields) is not
         * sent: the raw form covers what no client library writes. */
        if (fx_wire_req_encode(&w, &q) != 0)
            continue;
        if (serve_frame(c, w.buf, w.buf + FX_WIRE_HDR_SIZE, w.len - FX_WIRE_HDR_SIZE) != 0)
            continue; /* refused by the decoder: the next request is a new frame */
    }
    fx_wr_free(&w);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    if (!ready) {
        setup();
        ready = 1;
    }
    if (size == 0)
        return 0;
    struct fx_srv_conn *c = fx_srv_conn_new(&opts);
    if (!c || fx_srv_start_driver(c) != cudaSuccess)
        abort();
    wrap(&c->d);
    struct fuzz_in in = {data + 1, size - 1};
    if (data[0] & 1)
        built_frames(c, &in);
    else
        raw_frames(c, &in);
    fx_srv_release_all(c);
    fx_srv_conn_free(c);
    if (sh.nallocs || sh.nstreams || sh.nevents || sh.nmods || blas_live() != 0)
        violation("the client's resources outlived its connection", sh.nallocs,
                  sh.nstreams + sh.nevents + sh.nmods);
    sh.nfuncs = 0;
    return 0;
}
