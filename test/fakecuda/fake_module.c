/* SPDX-License-Identifier: Apache-2.0 */
/* Modules, functions and copies: what a program that loads its own kernels
 * needs (the remote server of docs/REMOTE.md loads every fat binary a client
 * registers with cuModuleLoadData).
 *
 * The image the fake accepts is a fat binary as nvcc lays it out: a 16-byte
 * header (magic 0xBA55ED50, version 1, header size 16, size of the entries
 * that follow), then entries. The fake does not read the entries' headers;
 * it looks for a description of the kernels inside them:
 *
 *     fakecubin\n
 *     <name> <op> <param size>,<param size>,...\n     (one line per kernel)
 *
 * ended by a NUL or the end of the image. <op> is "sleep" (parameter 0 is
 * the kernel's duration in microseconds, as for every launch) or "add_u32"
 * (parameters: u32 duration, u64 device pointer p, u32 n, u32 v; when the
 * kernel runs, in stream order, v is added to the n 32-bit words at p; a p
 * that is not inside a device allocation makes the launch fail with
 * CUDA_ERROR_ILLEGAL_ADDRESS, one not a multiple of 4 with
 * CUDA_ERROR_MISALIGNED_ADDRESS). Parameters are laid out at their natural
 * alignment, as the real ABI does, and cuFuncGetParamInfo reports them. */
#include <stdio.h>
#include "fake_exports.h"

#define FATBIN_MAGIC    0xBA55ED50u
#define FATBIN_HDR_SIZE 16u
#define CUBIN_MARKER    "fakecubin\n"
#define FUNC_NAME_MAX   128
/* Past the remote protocol's 256 (FX_WIRE_PARAMS_MAX), so that a kernel of
 * 256 parameters and one of 257 can be described. */
#define FUNC_PARAMS_MAX 320

enum fake_op { FAKE_OP_SLEEP, FAKE_OP_ADD_U32 };

struct fake_func {
    struct fake_func *next; /* module->funcs */
    char name[FUNC_NAME_MAX];
    enum fake_op op;
    unsigned nparams;
    size_t offset[FUNC_PARAMS_MAX], size[FUNC_PARAMS_MAX];
};

struct fake_module {
    struct fake_module *next; /* modules */
    struct fake_func *funcs;
    struct fake_ctx *ctx; /* the context it was loaded in: its functions run there only */
};

static struct fake_module *modules; /* lock held */

static uint32_t le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void module_free(struct fake_module *m)
{
    while (m->funcs) {
        struct fake_func *f = m->funcs;
        m->funcs = f->next;
        free(f);
    }
    free(m);
}

/* Parses one "<name> <op> <sizes>" line of `len` bytes into a new function
 * of `m`. Returns 0, or -1 for a malformed line or no memory. */
static int parse_func(struct fake_module *m, const char *line, size_t len)
{
    char buf[2048]; /* a name and FUNC_PARAMS_MAX sizes of one digit */
    if (len == 0 || len >= sizeof buf)
        return -1;
    memcpy(buf, line, len);
    buf[len] = '\0';
    char *save = NULL;
    const char *name = strtok_r(buf, " ", &save);
    const char *op = strtok_r(NULL, " ", &save);
    char *sizes = strtok_r(NULL, " ", &save);
    if (!name || !op || strlen(name) >= FUNC_NAME_MAX)
        return -1;
    struct fake_func *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    snprintf(f->name, sizeof f->name, "%s", name);
    if (strcmp(op, "sleep") == 0)
        f->op = FAKE_OP_SLEEP;
    else if (strcmp(op, "add_u32") == 0)
        f->op = FAKE_OP_ADD_U32;
    else {
        free(f);
        return -1;
    }
    size_t off = 0;
    for (char *tok = sizes ? strtok_r(sizes, ",", &save) : NULL; tok;
         tok = strtok_r(NULL, ",", &save)) {
        unsigned long sz = strtoul(tok, NULL, 10);
        if (f->nparams == FUNC_PARAMS_MAX || (sz != 1 && sz != 2 && sz != 4 && sz != 8)) {
            free(f);
            return -1;
        }
        off = (off + sz - 1) / sz * sz;
        f->offset[f->nparams] = off;
        f->size[f->nparams++] = sz;
        off += sz;
    }
    /* add_u32 needs its four parameters with their sizes. */
    if (f->op == FAKE_OP_ADD_U32 && (f->nparams != 4 || f->size[0] != 4 || f->size[1] != 8 ||
                                     f->size[2] != 4 || f->size[3] != 4)) {
        free(f);
        return -1;
    }
    f->next = m->funcs;
    m->funcs = f;
    return 0;
}

/* The kernel description inside a fat binary image, or -1 when the image is
 * not one the fake accepts. */
static int parse_image(struct fake_module *m, const unsigned char *img)
{
    if (le32(img) != FATBIN_MAGIC || (img[4] | img[5] << 8) != 1 ||
        (img[6] | img[7] << 8) != FATBIN_HDR_SIZE)
        return -1;
    uint64_t body = le32(img + 8) | (uint64_t)le32(img + 12) << 32;
    if (body > (64u << 20))
        return -1;
    const char *p = (const char *)img + FATBIN_HDR_SIZE, *end = p + body;
    const char *mark = memmem(p, body, CUBIN_MARKER, strlen(CUBIN_MARKER));
    if (!mark)
        return -1;
    p = mark + strlen(CUBIN_MARKER);
    while (p < end && *p != '\0') {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *stop = nl ? nl : end;
        const char *nul = memchr(p, '\0', (size_t)(stop - p));
        if (nul)
            stop = nul;
        if (parse_func(m, p, (size_t)(stop - p)) != 0)
            return -1;
        p = stop + (stop < end && *stop == '\n');
    }
    return m->funcs ? 0 : -1;
}

FAKE_API CUresult cuModuleLoadData(CUmodule *module, const void *image)
{
    FAKE_REQUIRE_INIT();
    if (!module || !image)
        return CUDA_ERROR_INVALID_VALUE;
    struct fake_module *m = calloc(1, sizeof *m);
    if (!m)
        return CUDA_ERROR_OUT_OF_MEMORY;
    if (parse_image(m, image) != 0) {
        module_free(m);
        return FAKE_ERROR_INVALID_IMAGE;
    }
    fake_lock();
    if (!fake_current_ctx()) {
        fake_unlock();
        module_free(m);
        return CUDA_ERROR_INVALID_CONTEXT;
    }
    m->ctx = fake_current_ctx();
    m->next = modules;
    modules = m;
    fake_unlock();
    *module = (CUmodule)m;
    return CUDA_SUCCESS;
}

/* The driver unloads a module from the current context (CUDA_ERROR_INVALID_CONTEXT
 * otherwise, cuModuleUnload's documentation): a caller that holds modules of
 * several devices makes each one's context current first. The refusal is
 * also said on stderr, since a caller tidying up may ignore the result and a
 * test sees the module left behind there. */
FAKE_API CUresult cuModuleUnload(CUmodule hmod)
{
    FAKE_REQUIRE_INIT();
    fake_lock();
    for (struct fake_module **p = &modules; *p; p = &(*p)->next) {
        if ((CUmodule)*p == hmod) {
            struct fake_module *m = *p;
            if (m->ctx != fake_current_ctx()) {
                fake_unlock();
                fprintf(stderr, "fakecuda: cuModuleUnload of a module of another context "
                                "than the current one: CUDA_ERROR_INVALID_CONTEXT\n");
                return CUDA_ERROR_INVALID_CONTEXT;
            }
            *p = m->next;
            fake_unlock();
            module_free(m);
            return CUDA_SUCCESS;
        }
    }
    fake_unlock();
    return CUDA_ERROR_INVALID_HANDLE;
}

FAKE_API CUresult cuModuleGetFunction(CUfunction *hfunc, CUmodule hmod, const char *name)
{
    FAKE_REQUIRE_INIT();
    if (!hfunc || !name)
        return CUDA_ERROR_INVALID_VALUE;
    CUresult r = CUDA_ERROR_INVALID_HANDLE;
    fake_lock();
    for (struct fake_module *m = modules; m; m = m->next) {
        if ((CUmodule)m != hmod)
            continue;
        r = CUDA_ERROR_NOT_FOUND;
        for (struct fake_func *f = m->funcs; f; f = f->next) {
            if (strcmp(f->name, name) == 0) {
                *hfunc = (CUfunction)f;
                r = CUDA_SUCCESS;
                break;
            }
        }
    }
    fake_unlock();
    return r;
}

/* Lock held. The module function `h`, or NULL (another handle: the generic
 * kernel every launch has been). */
static struct fake_func *func_find(CUfunction h)
{
    for (struct fake_module *m = modules; m; m = m->next)
        for (struct fake_func *f = m->funcs; f; f = f->next)
            if ((CUfunction)f == h)
                return f;
    return NULL;
}

struct fake_ctx *fake_func_ctx(CUfunction h)
{
    for (struct fake_module *m = modules; m; m = m->next)
        for (struct fake_func *f = m->funcs; f; f = f->next)
            if ((CUfunction)f == h)
                return m->ctx;
    return NULL;
}

FAKE_API CUresult cuFuncGetParamInfo(CUfunction func, size_t paramIndex, size_t *paramOffset,
                                     size_t *paramSize)
{
    FAKE_REQUIRE_INIT();
    if (!paramOffset || !paramSize)
        return CUDA_ERROR_INVALID_VALUE;
    fake_lock();
    struct fake_func *f = func_find(func);
    CUresult r = !f ? CUDA_ERROR_INVALID_HANDLE
                 : paramIndex >= f->nparams ? CUDA_ERROR_INVALID_VALUE
                                            : CUDA_SUCCESS;
    if (r == CUDA_SUCCESS) {
        *paramOffset = f->offset[paramIndex];
        *paramSize = f->size[paramIndex];
    }
    fake_unlock();
    return r;
}

/* Lock held. The host memory behind device range [p, p + n), or NULL when
 * the range is not inside one allocation that has memory behind it. */
static unsigned char *device_range(CUdeviceptr p, size_t n)
{
    unsigned kinds = FAKE_KIND(FAKE_ALLOC_DEVICE) | FAKE_KIND(FAKE_ALLOC_MANAGED) |
                     FAKE_KIND(FAKE_ALLOC_POOL_BLOCK);
    if (n == 0 || p + n < p)
        return NULL;
    struct fake_alloc *a = fake_registry_find_overlap(p, p + n, kinds);
    if (!a || !a->map || a->key > p || p + n > a->key + a->size)
        return NULL;
    return (unsigned char *)a->map + (p - a->key);
}

CUresult fake_enqueue_launch(struct fake_stream *s, CUfunction h, void **params,
                             unsigned int duration_us)
{
    struct fake_work w = {.kind = FAKE_WORK_KERNEL, .duration_us = duration_us};
    struct fake_func *f = func_find(h);
    if (f && f->op == FAKE_OP_ADD_U32) {
        if (!params || !params[1] || !params[2] || !params[3])
            return CUDA_ERROR_INVALID_VALUE;
        memcpy(&w.add_ptr, params[1], sizeof w.add_ptr);
        memcpy(&w.add_n, params[2], sizeof w.add_n);
        memcpy(&w.add_v, params[3], sizeof w.add_v);
        if (w.add_n && !device_range(w.add_ptr, (size_t)w.add_n * 4))
            return FAKE_ERROR_ILLEGAL_ADDRESS;
        /* 32-bit words at an address that is not a multiple of 4: a GPU
         * faults (CUDA_ERROR_MISALIGNED_ADDRESS), and the host words the
         * fake adds to would be misaligned stores (found by fuzz_remote). */
        if (w.add_n && w.add_ptr % 4)
            return FAKE_ERROR_MISALIGNED_ADDRESS;
    }
    fake_enqueue(s, w);
    return CUDA_SUCCESS;
}

void fake_run_add(const struct fake_work *w)
{
    /* The memory may have been freed while the kernel was queued. */
    uint32_t *words = (uint32_t *)device_range(w->add_ptr, (size_t)w->add_n * 4);
    for (unsigned i = 0; words && i < w->add_n; i++)
        words[i] += w->add_v;
}

/* --- Copies ----------------------------------------------------------------
 * Every copy (and memset) completes before it returns, after the work already issued to
 * the context (an asynchronous copy may be synchronous; the fake's streams
 * of a context are one FIFO, so that is stream order too). */

/* Lock held. Waits for the work already issued to `stream`'s context (the
 * current one when !use_stream), so that a copy or memset comes after it;
 * the stream's or the context's error otherwise. */
static CUresult after_issued(CUstream stream, int use_stream)
{
    struct fake_stream *s = NULL;
    CUresult r = CUDA_SUCCESS;
    if (use_stream)
        r = fake_stream_resolve(stream, &s);
    else if (!fake_current_ctx())
        r = CUDA_ERROR_INVALID_CONTEXT;
    struct fake_ctx *c = s ? s->ctx : fake_current_ctx();
    if (r == CUDA_SUCCESS)
        fake_wait_ticket(c, c->submitted);
    return r;
}

static CUresult copy(CUdeviceptr ddst, void *hdst, CUdeviceptr dsrc, const void *hsrc, size_t n,
                     CUstream stream, int use_stream)
{
    FAKE_REQUIRE_INIT();
    if (n == 0)
        return CUDA_SUCCESS;
    fake_lock();
    CUresult r = after_issued(stream, use_stream);
    unsigned char *to = ddst ? device_range(ddst, n) : hdst;
    const unsigned char *from = dsrc ? device_range(dsrc, n) : hsrc;
    if (r == CUDA_SUCCESS && (!to || !from))
        r = CUDA_ERROR_INVALID_VALUE;
    if (r == CUDA_SUCCESS)
        memmove(to, from, n);
    fake_unlock();
    return r;
}

FAKE_API CUresult cuMemcpyHtoD_v2(CUdeviceptr dst, const void *src, size_t n)
{
    return copy(dst, NULL, 0, src, n, NULL, 0);
}

FAKE_API CUresult cuMemcpyDtoH_v2(void *dst, CUdeviceptr src, size_t n)
{
    return copy(0, dst, src, NULL, n, NULL, 0);
}

FAKE_API CUresult cuMemcpyDtoD_v2(CUdeviceptr dst, CUdeviceptr src, size_t n)
{
    return copy(dst, NULL, src, NULL, n, NULL, 0);
}

FAKE_API CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr dst, const void *src, size_t n, CUstream s)
{
    return copy(dst, NULL, 0, src, n, s, 1);
}

FAKE_API CUresult cuMemcpyDtoHAsync_v2(void *dst, CUdeviceptr src, size_t n, CUstream s)
{
    return copy(0, dst, src, NULL, n, s, 1);
}

FAKE_API CUresult cuMemcpyDtoDAsync_v2(CUdeviceptr dst, CUdeviceptr src, size_t n, CUstream s)
{
    return copy(dst, NULL, src, NULL, n, s, 1);
}

/* Sets `n` bytes at `dst` to `value`, in order after the work issued, like
 * a copy. */
static CUresult set_bytes(CUdeviceptr dst, unsigned char value, size_t n, CUstream stream,
                          int use_stream)
{
    FAKE_REQUIRE_INIT();
    if (n == 0)
        return CUDA_SUCCESS;
    fake_lock();
    CUresult r = after_issued(stream, use_stream);
    unsigned char *to = device_range(dst, n);
    if (r == CUDA_SUCCESS && !to)
        r = CUDA_ERROR_INVALID_VALUE;
    if (r == CUDA_SUCCESS)
        memset(to, value, n);
    fake_unlock();
    return r;
}

FAKE_API CUresult cuMemsetD8_v2(CUdeviceptr dst, unsigned char value, size_t n)
{
    return set_bytes(dst, value, n, NULL, 0);
}

FAKE_API CUresult cuMemsetD8Async(CUdeviceptr dst, unsigned char value, size_t n, CUstream s)
{
    return set_bytes(dst, value, n, s, 1);
}
