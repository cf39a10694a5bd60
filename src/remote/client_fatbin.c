/* SPDX-License-Identifier: Apache-2.0 */
/* Kernels registered by nvcc-generated code (__cudaRegisterFatBinary,
 * __cudaRegisterFunction) and their lazy loading on the server: a fat
 * binary is shipped with MODULE_LOAD at the first launch of one of its
 * kernels on a device (a module lives in one device's context, as
 * cudart loads a module per device), and a kernel's id and parameter
 * layout are asked for once per device (FUNC_GET; the server reads the
 * layout from the driver). Registration
 * never talks to the server, so a program whose server is down still
 * starts and gets its errors from CUDA calls. */
#include <pthread.h>
#include <string.h>

#include "remote/client.h"
#include "util/alloc.h"

#define BUCKETS 4096

struct fx_cl_fatbin {
    const unsigned char *image;
    size_t size;     /* 0: not a fat binary this library understands */
    uint32_t module[FX_CL_MAX_DEVICES]; /* the server's id on each device; 0 until loaded */
};

struct fx_cl_func {
    struct fx_cl_func *next; /* bucket chain */
    const void *host;        /* the host stub's address: the key */
    char *name;
    struct fx_cl_fatbin *fb;
    uint32_t id[FX_CL_MAX_DEVICES]; /* the server's id on each device; 0 until resolved */
    unsigned nparams;
    uint32_t args_len;
    uint32_t offset[FX_WIRE_PARAMS_MAX], size[FX_WIRE_PARAMS_MAX];
};

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static struct fx_cl_func *buckets[BUCKETS];

static size_t bucket_of(const void *p)
{
    return (size_t)(((uintptr_t)p * 0x9E3779B97F4A7C15ull) >> 52) % BUCKETS;
}

FX_CL_API void **__cudaRegisterFatBinary(void *fatCubin)
{
    struct fx_cl_fatbin *fb = fx_calloc(1, sizeof *fb);
    const struct fx_fatbinc_wrapper *w = fatCubin;
    if (fb && w && w->magic == FX_FATBINC_MAGIC && w->data) {
        struct fx_fatbin_header h;
        memcpy(&h, w->data, sizeof h);
        if (h.magic == FX_FATBIN_MAGIC && h.header_size >= sizeof h &&
            h.fat_size <= FX_WIRE_MAX_PAYLOAD - 64 - h.header_size) {
            fb->image = (const unsigned char *)w->data;
            fb->size = h.header_size + h.fat_size;
        }
    }
    return (void **)fb;
}

FX_CL_API void __cudaRegisterFatBinaryEnd(void **handle)
{
    (void)handle;
}

FX_CL_API void __cudaRegisterFunction(void **handle, const char *hostFun, char *deviceFun,
                                      const char *deviceName, int thread_limit, uint3 *tid,
                                      uint3 *bid, dim3 *bDim, dim3 *gDim, int *wSize)
{
    (void)deviceFun, (void)thread_limit, (void)tid, (void)bid, (void)bDim, (void)gDim,
        (void)wSize;
    if (!handle || !hostFun || !deviceName)
        return;
    struct fx_cl_func *f = fx_calloc(1, sizeof *f);
    char *name = fx_strdup(deviceName);
    if (!f || !name) {
        fx_free(f);
        fx_free(name);
        return; /* its launches fail with cudaErrorInvalidDeviceFunction */
    }
    f->host = hostFun;
    f->name = name;
    f->fb = (struct fx_cl_fatbin *)handle;
    pthread_mutex_lock(&reg_lock);
    size_t b = bucket_of(hostFun);
    f->next = buckets[b];
    buckets[b] = f;
    pthread_mutex_unlock(&reg_lock);
}

/* Forgets the binary and its kernels (a library being unloaded takes its
 * stubs with it). Nothing is sent: this runs at exit, when waiting on a
 * lost server would only delay the exit; the server frees the module with
 * the connection. */
FX_CL_API void __cudaUnregisterFatBinary(void **handle)
{
    struct fx_cl_fatbin *fb = (struct fx_cl_fatbin *)handle;
    if (!fb)
        return;
    pthread_mutex_lock(&reg_lock);
    for (size_t b = 0; b < BUCKETS; b++) {
        for (struct fx_cl_func **p = &buckets[b]; *p;) {
            struct fx_cl_func *f = *p;
            if (f->fb == fb) {
                *p = f->next;
                fx_free(f->name);
                fx_free(f);
            } else {
                p = &f->next;
            }
        }
    }
    pthread_mutex_unlock(&reg_lock);
    fx_free(fb);
}

/* Connection lock held: the module on device dev (the thread's current
 * one, which the frame names). */
static int load_module(struct fx_cl_fatbin *fb, int dev)
{
    if (fb->module[dev])
        return cudaSuccess;
    if (!fb->size)
        return cudaErrorInvalidKernelImage;
    struct fx_wire_req q = {.h.op = FX_OP_MODULE_LOAD};
    q.u.module_load.image = fb->image;
    q.u.module_load.n = fb->size;
    struct fx_rd r;
    int deferred;
    int rc = fx_cl_call(&q, &r, &deferred);
    if (rc != cudaSuccess)
        return rc;
    uint32_t id = fx_rd_u32(&r, "module");
    if (r.bad || id == 0)
        return cudaErrorUnknown;
    fb->module[dev] = id;
    return cudaSuccess;
}

/* Connection lock held: FUNC_GET on device dev and the reply's layout
 * (the same kernel's on every device). */
static int get_func(struct fx_cl_func *f, int dev)
{
    struct fx_wire_req q = {.h.op = FX_OP_FUNC_GET};
    q.u.func_get.module = f->fb->module[dev];
    q.u.func_get.name = (const unsigned char *)f->name;
    q.u.func_get.name_len = strlen(f->name);
    struct fx_rd r;
    int deferred;
    int rc = fx_cl_call(&q, &r, &deferred);
    if (rc != cudaSuccess)
        return rc;
    uint32_t id = fx_rd_u32(&r, "func"), n = fx_rd_u32(&r, "nparams");
    if (r.bad || id == 0 || n > FX_WIRE_PARAMS_MAX)
        return cudaErrorUnknown;
    uint32_t len = 0;
    for (uint32_t i = 0; i < n; i++) {
        f->offset[i] = fx_rd_u32(&r, "offset");
        f->size[i] = fx_rd_u32(&r, "size");
        if (f->offset[i] > FX_WIRE_ARGS_MAX || f->size[i] > FX_WIRE_ARGS_MAX - f->offset[i])
            return cudaErrorUnknown;
        if (f->offset[i] + f->size[i] > len)
            len = f->offset[i] + f->size[i];
    }
    if (fx_rd_done(&r, NULL) != 0)
        return cudaErrorUnknown;
    f->nparams = n;
    f->args_len = len;
    f->id[dev] = id;
    return cudaSuccess;
}

int fx_cl_func_resolve(const void *host_fn, const struct fx_cl_func **out)
{
    pthread_mutex_lock(&reg_lock);
    struct fx_cl_func *f = buckets[bucket_of(host_fn)];
    while (f && f->host != host_fn)
        f = f->next;
    int rc = !f ? cudaErrorInvalidDeviceFunction : cudaSuccess;
    int dev = fx_cl_device();
    if (rc == cudaSuccess && (dev < 0 || dev >= FX_CL_MAX_DEVICES))
        rc = cudaErrorInvalidDevice;
    if (rc == cudaSuccess && !f->id[dev]) {
        rc = load_module(f->fb, dev);
        if (rc == cudaSuccess)
            rc = get_func(f, dev);
    }
    pthread_mutex_unlock(&reg_lock);
    *out = f;
    return rc;
}

uint32_t fx_cl_func_id(const struct fx_cl_func *f)
{
    int dev = fx_cl_device(); /* resolved for it (fx_cl_func_resolve) */
    return dev >= 0 && dev < FX_CL_MAX_DEVICES ? f->id[dev] : 0;
}

unsigned fx_cl_func_nparams(const struct fx_cl_func *f)
{
    return f->nparams;
}

void fx_cl_func_param(const struct fx_cl_func *f, unsigned i, uint32_t *offset, uint32_t *size)
{
    *offset = f->offset[i];
    *size = f->size[i];
}

uint32_t fx_cl_func_args_len(const struct fx_cl_func *f)
{
    return f->args_len;
}
