/* SPDX-License-Identifier: Apache-2.0 */
/* The remote protocol's header and messages: encoding, and decoding that
 * checks every field (wire.h). */
#include "remote/wire.h"

#include <stdio.h>
#include <string.h>

#include "util/alloc.h"

const char *fx_wire_op_name(unsigned op)
{
    switch (op & ~FX_WIRE_REPLY) {
#define FX_WIRE_OP_NAME(name, value)                                                               \
    case value:                                                                                    \
        return #name;
        FX_WIRE_OPS(FX_WIRE_OP_NAME)
#undef FX_WIRE_OP_NAME
    default:
        return "?";
    }
}

static void put16(unsigned char *p, uint16_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
}

static void put32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint16_t get16(const unsigned char *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t get32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

void fx_wire_hdr_encode(const struct fx_wire_hdr *h, unsigned char out[FX_WIRE_HDR_SIZE])
{
    put32(out, h->len);
    put16(out + 4, h->op);
    put16(out + 6, h->flags);
    put32(out + 8, h->seq);
    put16(out + 12, h->dev);
    put16(out + 14, 0);
}

static int bad_field(struct flexpu_error *err, const char *field, unsigned long long value,
                     const char *why)
{
    char v[32];
    int n = snprintf(v, sizeof v, "%llu", value);
    return flexpu_error_field(err, FLEXPU_EPARSE, field, v, n > 0 ? (size_t)n : 0, why);
}

int fx_wire_hdr_decode(const unsigned char in[FX_WIRE_HDR_SIZE], struct fx_wire_hdr *h,
                       struct flexpu_error *err)
{
    h->len = get32(in);
    h->op = get16(in + 4);
    h->flags = get16(in + 6);
    h->seq = get32(in + 8);
    h->dev = get16(in + 12);
    unsigned base = h->op & ~FX_WIRE_REPLY;
    int reply = (h->op & FX_WIRE_REPLY) != 0;
    if (h->len > FX_WIRE_MAX_PAYLOAD)
        return bad_field(err, "len", h->len, "a frame's payload is at most 64 MiB");
    if (base == 0 || base >= FX_OP_END || (base == FX_OP_PROGRESS && !reply))
        return bad_field(err, "op", h->op, "not an operation of protocol version 1");
    if (h->flags & ~(reply ? 0u : FX_WIRE_NO_REPLY))
        return bad_field(err, "flags", h->flags, "unknown flag");
    if (get16(in + 14) != 0)
        return bad_field(err, "reserved", get16(in + 14), "must be 0");
    return 0;
}

/* --- Read cursor ----------------------------------------------------------- */

void fx_rd_init(struct fx_rd *r, const void *buf, size_t len)
{
    r->p = buf;
    r->left = buf ? len : 0;
    r->bad = NULL;
}

static const unsigned char *take(struct fx_rd *r, size_t n, const char *field)
{
    if (r->bad || n > r->left) {
        if (!r->bad)
            r->bad = field;
        return NULL;
    }
    const unsigned char *p = r->p;
    r->p += n;
    r->left -= n;
    return p;
}

uint32_t fx_rd_u32(struct fx_rd *r, const char *field)
{
    const unsigned char *p = take(r, 4, field);
    return p ? get32(p) : 0;
}

uint64_t fx_rd_u64(struct fx_rd *r, const char *field)
{
    const unsigned char *p = take(r, 8, field);
    return p ? get32(p) | (uint64_t)get32(p + 4) << 32 : 0;
}

const unsigned char *fx_rd_bytes(struct fx_rd *r, size_t max, size_t *n, const char *field)
{
    uint32_t len = fx_rd_u32(r, field);
    *n = 0;
    if (r->bad)
        return NULL;
    if (len > max) {
        r->bad = field;
        return NULL;
    }
    const unsigned char *p = take(r, len, field);
    if (p)
        *n = len;
    return p;
}

int fx_rd_done(const struct fx_rd *r, struct flexpu_error *err)
{
    if (r->bad)
        return flexpu_error_set(err, FLEXPU_EPARSE,
                                "field '%s': does not fit the payload or exceeds its limit",
                                r->bad);
    if (r->left)
        return flexpu_error_set(err, FLEXPU_EPARSE, "%zu bytes after the last field", r->left);
    return 0;
}

/* --- Write buffer ---------------------------------------------------------- */

void fx_wr_init(struct fx_wr *w, size_t limit)
{
    memset(w, 0, sizeof *w);
    w->limit = limit;
}

void fx_wr_free(struct fx_wr *w)
{
    fx_free(w->buf);
    memset(w, 0, sizeof *w);
}

static unsigned char *grow(struct fx_wr *w, size_t n)
{
    if (w->bad || n > w->limit - w->len) {
        w->bad = 1;
        return NULL;
    }
    if (w->len + n > w->cap) {
        size_t cap = w->cap ? w->cap : 256;
        while (cap < w->len + n)
            cap = cap > w->limit / 2 ? w->limit : cap * 2;
        unsigned char *b = fx_realloc(w->buf, cap);
        if (!b) {
            w->bad = 1;
            return NULL;
        }
        w->buf = b;
        w->cap = cap;
    }
    unsigned char *p = w->buf + w->len;
    w->len += n;
    return p;
}

void fx_wr_u32(struct fx_wr *w, uint32_t v)
{
    unsigned char *p = grow(w, 4);
    if (p)
        put32(p, v);
}

void fx_wr_u64(struct fx_wr *w, uint64_t v)
{
    unsigned char *p = grow(w, 8);
    if (p) {
        put32(p, (uint32_t)v);
        put32(p + 4, (uint32_t)(v >> 32));
    }
}

void fx_wr_raw(struct fx_wr *w, const void *src, size_t n)
{
    unsigned char *p = n ? grow(w, n) : NULL;
    if (p)
        memcpy(p, src, n);
}

void fx_wr_bytes(struct fx_wr *w, const void *src, size_t n)
{
    if (n > UINT32_MAX) {
        w->bad = 1;
        return;
    }
    fx_wr_u32(w, (uint32_t)n);
    fx_wr_raw(w, src, n);
}

unsigned char *fx_wr_reserve(struct fx_wr *w, size_t n)
{
    return grow(w, n);
}

size_t fx_wr_begin(struct fx_wr *w)
{
    size_t at = w->len;
    grow(w, FX_WIRE_HDR_SIZE);
    return at;
}

void fx_wr_end(struct fx_wr *w, size_t at, struct fx_wire_hdr h)
{
    if (w->bad || w->len - at - FX_WIRE_HDR_SIZE > FX_WIRE_MAX_PAYLOAD) {
        w->bad = 1;
        return;
    }
    h.len = (uint32_t)(w->len - at - FX_WIRE_HDR_SIZE);
    fx_wire_hdr_encode(&h, w->buf + at);
}

/* --- Requests -------------------------------------------------------------- */

static int no_reply_allowed(unsigned op)
{
    return op == FX_OP_MEMCPY_H2D || op == FX_OP_MEMCPY_D2D || op == FX_OP_MEMSET ||
           op == FX_OP_LAUNCH ||
           op == FX_OP_BLAS_GEMM || op == FX_OP_EVENT_RECORD || op == FX_OP_STREAM_WAIT_EVENT;
}

/* Checks a copy's size: non-zero and at most one chunk. */
static int check_size(uint64_t size, struct flexpu_error *err)
{
    if (size == 0 || size > FX_WIRE_CHUNK)
        return bad_field(err, "size", size, "a copy frame holds 1 byte to 4 MiB");
    return 0;
}

static int decode_launch(struct fx_rd *r, struct fx_wire_req *q, struct flexpu_error *err)
{
    static const char *const grid[] = {"grid.x", "grid.y", "grid.z"};
    static const char *const block[] = {"block.x", "block.y", "block.z"};
    q->u.launch.func = fx_rd_u32(r, "func");
    for (int i = 0; i < 3; i++)
        q->u.launch.grid[i] = fx_rd_u32(r, grid[i]);
    for (int i = 0; i < 3; i++)
        q->u.launch.block[i] = fx_rd_u32(r, block[i]);
    q->u.launch.shared_bytes = fx_rd_u32(r, "shared_bytes");
    q->u.launch.stream = fx_rd_u32(r, "stream");
    q->u.launch.args = fx_rd_bytes(r, FX_WIRE_ARGS_MAX, &q->u.launch.args_len, "args");
    for (int i = 0; i < 3 && !r->bad; i++) {
        if (q->u.launch.grid[i] == 0)
            return bad_field(err, grid[i], 0, "a launch's dimensions are at least 1");
        if (q->u.launch.block[i] == 0)
            return bad_field(err, block[i], 0, "a launch's dimensions are at least 1");
    }
    return 0;
}

static int decode_gemm(struct fx_rd *r, struct fx_wire_req *q, struct flexpu_error *err)
{
    struct fx_wire_gemm *g = &q->u.gemm;
    g->handle = fx_rd_u32(r, "handle");
    g->transa = fx_rd_u32(r, "transa");
    g->transb = fx_rd_u32(r, "transb");
    g->m = (int32_t)fx_rd_u32(r, "m");
    g->n = (int32_t)fx_rd_u32(r, "n");
    g->k = (int32_t)fx_rd_u32(r, "k");
    g->atype = (int32_t)fx_rd_u32(r, "atype");
    g->btype = (int32_t)fx_rd_u32(r, "btype");
    g->ctype = (int32_t)fx_rd_u32(r, "ctype");
    g->compute = (int32_t)fx_rd_u32(r, "compute");
    g->algo = (int32_t)fx_rd_u32(r, "algo");
    g->a = fx_rd_u64(r, "a");
    g->b = fx_rd_u64(r, "b");
    g->c = fx_rd_u64(r, "c");
    g->lda = (int32_t)fx_rd_u32(r, "lda");
    g->ldb = (int32_t)fx_rd_u32(r, "ldb");
    g->ldc = (int32_t)fx_rd_u32(r, "ldc");
    size_t na = 0, nb = 0;
    const unsigned char *alpha = fx_rd_bytes(r, FX_WIRE_SCALAR_MAX, &na, "alpha");
    const unsigned char *beta = fx_rd_bytes(r, FX_WIRE_SCALAR_MAX, &nb, "beta");
    if (r->bad)
        return 0;
    if (na == 0 || na != nb)
        return bad_field(err, "beta", nb, "alpha and beta are 1 to 16 bytes, the same size");
    if (g->transa > 2)
        return bad_field(err, "transa", g->transa, "0 (N), 1 (T) or 2 (C)");
    if (g->transb > 2)
        return bad_field(err, "transb", g->transb, "0 (N), 1 (T) or 2 (C)");
    if (g->m < 0 || g->n < 0 || g->k < 0)
        return bad_field(err, g->m < 0 ? "m" : g->n < 0 ? "n" : "k",
                         (uint32_t)(g->m < 0 ? g->m : g->n < 0 ? g->n : g->k),
                         "a matrix dimension is not negative");
    memcpy(g->alpha, alpha, na);
    memcpy(g->beta, beta, nb);
    g->scalar_len = na;
    return 0;
}

/* The names of the up to three u32 fields of an event operation. */
static const char *const *event_fields(unsigned op)
{
    static const char *const create[] = {"flags", NULL}, *const one[] = {"event", NULL},
                             *const record[] = {"event", "stream", NULL},
                             *const elapsed[] = {"start", "end", NULL},
                             *const wait[] = {"stream", "event", "flags", NULL};
    switch (op) {
    case FX_OP_EVENT_CREATE: return create;
    case FX_OP_EVENT_RECORD: return record;
    case FX_OP_EVENT_ELAPSED: return elapsed;
    case FX_OP_STREAM_WAIT_EVENT: return wait;
    case FX_OP_EVENT_DESTROY:
    case FX_OP_EVENT_QUERY:
    case FX_OP_EVENT_SYNC: return one;
    default: return NULL;
    }
}

static int decode_body(struct fx_rd *r, struct fx_wire_req *q, struct flexpu_error *err)
{
    const char *const *ev = event_fields(q->h.op);
    if (ev) {
        uint32_t *dst[] = {&q->u.ids.a, &q->u.ids.b, &q->u.ids.c};
        for (int i = 0; ev[i]; i++)
            *dst[i] = fx_rd_u32(r, ev[i]);
        return 0;
    }
    switch (q->h.op) {
    case FX_OP_HELLO:
        q->u.hello.version = fx_rd_u32(r, "version");
        q->u.hello.token = fx_rd_bytes(r, FX_WIRE_TOKEN_MAX, &q->u.hello.token_len, "token");
        return 0;
    case FX_OP_MALLOC:
        q->u.malloc.size = fx_rd_u64(r, "size");
        return 0;
    case FX_OP_FREE:
        q->u.free.ptr = fx_rd_u64(r, "ptr");
        return 0;
    case FX_OP_MEMCPY_H2D:
        q->u.h2d.dst = fx_rd_u64(r, "dst");
        q->u.h2d.stream = fx_rd_u32(r, "stream");
        q->u.h2d.data = fx_rd_bytes(r, FX_WIRE_CHUNK, &q->u.h2d.n, "data");
        return r->bad ? 0 : check_size(q->u.h2d.n, err);
    case FX_OP_MEMCPY_D2H:
        q->u.d2h.src = fx_rd_u64(r, "src");
        q->u.d2h.size = fx_rd_u64(r, "size");
        q->u.d2h.stream = fx_rd_u32(r, "stream");
        return r->bad ? 0 : check_size(q->u.d2h.size, err);
    case FX_OP_MEMCPY_D2D:
        q->u.d2d.dst = fx_rd_u64(r, "dst");
        q->u.d2d.src = fx_rd_u64(r, "src");
        q->u.d2d.size = fx_rd_u64(r, "size");
        q->u.d2d.stream = fx_rd_u32(r, "stream");
        return r->bad ? 0 : check_size(q->u.d2d.size, err);
    case FX_OP_MEMSET:
        q->u.memset.dst = fx_rd_u64(r, "dst");
        q->u.memset.size = fx_rd_u64(r, "size");
        q->u.memset.value = fx_rd_u32(r, "value");
        q->u.memset.stream = fx_rd_u32(r, "stream");
        if (r->bad)
            return 0;
        if (q->u.memset.size == 0)
            return bad_field(err, "size", 0, "a memset sets at least 1 byte");
        if (q->u.memset.value > 255)
            return bad_field(err, "value", q->u.memset.value, "a memset's value is a byte");
        return 0;
    case FX_OP_STREAM_CREATE:
        q->u.stream_create.flags = fx_rd_u32(r, "flags");
        return 0;
    case FX_OP_STREAM_SYNC:
    case FX_OP_STREAM_DESTROY:
    case FX_OP_MODULE_UNLOAD:
        q->u.id.id = fx_rd_u32(r, "id");
        return 0;
    case FX_OP_DEVICE_SYNC:
    case FX_OP_MEM_GET_INFO:
        return 0;
    case FX_OP_MODULE_LOAD:
        q->u.module_load.image =
            fx_rd_bytes(r, FX_WIRE_MAX_PAYLOAD, &q->u.module_load.n, "image");
        if (!r->bad && q->u.module_load.n == 0)
            return bad_field(err, "image", 0, "an image is not empty");
        return 0;
    case FX_OP_FUNC_GET:
        q->u.func_get.module = fx_rd_u32(r, "module");
        q->u.func_get.name =
            fx_rd_bytes(r, FX_WIRE_NAME_MAX, &q->u.func_get.name_len, "name");
        if (!r->bad && (q->u.func_get.name_len == 0 ||
                        memchr(q->u.func_get.name, '\0', q->u.func_get.name_len)))
            return flexpu_error_field(err, FLEXPU_EPARSE, "name",
                                      (const char *)q->u.func_get.name, q->u.func_get.name_len,
                                      "a kernel name is not empty and has no NUL byte");
        return 0;
    case FX_OP_LAUNCH:
        return decode_launch(r, q, err);
    case FX_OP_BLAS_CREATE:
        return 0;
    case FX_OP_DEVICE_ATTRIBUTE:
        q->u.attribute.attr = fx_rd_u32(r, "attr");
        q->u.attribute.device = fx_rd_u32(r, "device");
        return 0;
    case FX_OP_BLAS_DESTROY:
        q->u.id.id = fx_rd_u32(r, "handle");
        return 0;
    case FX_OP_BLAS_SET_STREAM:
        q->u.blas_stream.handle = fx_rd_u32(r, "handle");
        q->u.blas_stream.stream = fx_rd_u32(r, "stream");
        return 0;
    case FX_OP_BLAS_GEMM:
        return decode_gemm(r, q, err);
    default:
        return bad_field(err, "op", q->h.op, "not a request");
    }
}

int fx_wire_req_decode(const struct fx_wire_hdr *h, const unsigned char *payload,
                       struct fx_wire_req *out, struct flexpu_error *err)
{
    memset(out, 0, sizeof *out);
    out->h = *h;
    if ((h->flags & FX_WIRE_NO_REPLY) && !no_reply_allowed(h->op))
        return bad_field(err, "flags", h->flags, "this operation always has a reply");
    struct fx_rd r;
    fx_rd_init(&r, payload, h->len);
    int rc = decode_body(&r, out, err);
    if (rc == 0)
        rc = fx_rd_done(&r, err);
    if (rc != 0)
        flexpu_error_prefix(err, "request %s (seq %u)", fx_wire_op_name(h->op), h->seq);
    return rc;
}

static void encode_gemm(struct fx_wr *w, const struct fx_wire_gemm *g)
{
    const uint32_t words[] = {g->handle,           g->transa,          g->transb,
                              (uint32_t)g->m,      (uint32_t)g->n,     (uint32_t)g->k,
                              (uint32_t)g->atype,  (uint32_t)g->btype, (uint32_t)g->ctype,
                              (uint32_t)g->compute, (uint32_t)g->algo};
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
        fx_wr_u32(w, words[i]);
    fx_wr_u64(w, g->a);
    fx_wr_u64(w, g->b);
    fx_wr_u64(w, g->c);
    fx_wr_u32(w, (uint32_t)g->lda);
    fx_wr_u32(w, (uint32_t)g->ldb);
    fx_wr_u32(w, (uint32_t)g->ldc);
    fx_wr_bytes(w, g->alpha, g->scalar_len);
    fx_wr_bytes(w, g->beta, g->scalar_len);
}

static void encode_body(struct fx_wr *w, const struct fx_wire_req *q)
{
    const char *const *ev = event_fields(q->h.op);
    if (ev) {
        const uint32_t v[] = {q->u.ids.a, q->u.ids.b, q->u.ids.c};
        for (int i = 0; ev[i]; i++)
            fx_wr_u32(w, v[i]);
        return;
    }
    switch (q->h.op) {
    case FX_OP_HELLO:
        fx_wr_u32(w, q->u.hello.version);
        fx_wr_bytes(w, q->u.hello.token, q->u.hello.token_len);
        break;
    case FX_OP_MALLOC:
        fx_wr_u64(w, q->u.malloc.size);
        break;
    case FX_OP_FREE:
        fx_wr_u64(w, q->u.free.ptr);
        break;
    case FX_OP_MEMCPY_H2D:
        fx_wr_u64(w, q->u.h2d.dst);
        fx_wr_u32(w, q->u.h2d.stream);
        fx_wr_bytes(w, q->u.h2d.data, q->u.h2d.n);
        break;
    case FX_OP_MEMCPY_D2H:
        fx_wr_u64(w, q->u.d2h.src);
        fx_wr_u64(w, q->u.d2h.size);
        fx_wr_u32(w, q->u.d2h.stream);
        break;
    case FX_OP_MEMCPY_D2D:
        fx_wr_u64(w, q->u.d2d.dst);
        fx_wr_u64(w, q->u.d2d.src);
        fx_wr_u64(w, q->u.d2d.size);
        fx_wr_u32(w, q->u.d2d.stream);
        break;
    case FX_OP_MEMSET:
        fx_wr_u64(w, q->u.memset.dst);
        fx_wr_u64(w, q->u.memset.size);
        fx_wr_u32(w, q->u.memset.value);
        fx_wr_u32(w, q->u.memset.stream);
        break;
    case FX_OP_STREAM_CREATE:
        fx_wr_u32(w, q->u.stream_create.flags);
        break;
    case FX_OP_STREAM_SYNC:
    case FX_OP_STREAM_DESTROY:
    case FX_OP_MODULE_UNLOAD:
    case FX_OP_BLAS_DESTROY: /* the handle, decoded as "handle" */
        fx_wr_u32(w, q->u.id.id);
        break;
    case FX_OP_MODULE_LOAD:
        fx_wr_bytes(w, q->u.module_load.image, q->u.module_load.n);
        break;
    case FX_OP_FUNC_GET:
        fx_wr_u32(w, q->u.func_get.module);
        fx_wr_bytes(w, q->u.func_get.name, q->u.func_get.name_len);
        break;
    case FX_OP_LAUNCH:
        fx_wr_u32(w, q->u.launch.func);
        for (int i = 0; i < 3; i++)
            fx_wr_u32(w, q->u.launch.grid[i]);
        for (int i = 0; i < 3; i++)
            fx_wr_u32(w, q->u.launch.block[i]);
        fx_wr_u32(w, q->u.launch.shared_bytes);
        fx_wr_u32(w, q->u.launch.stream);
        fx_wr_bytes(w, q->u.launch.args, q->u.launch.args_len);
        break;
    case FX_OP_DEVICE_ATTRIBUTE:
        fx_wr_u32(w, q->u.attribute.attr);
        fx_wr_u32(w, q->u.attribute.device);
        break;
    case FX_OP_BLAS_SET_STREAM:
        fx_wr_u32(w, q->u.blas_stream.handle);
        fx_wr_u32(w, q->u.blas_stream.stream);
        break;
    case FX_OP_BLAS_GEMM:
        encode_gemm(w, &q->u.gemm);
        break;
    default: /* DEVICE_SYNC, MEM_GET_INFO, BLAS_CREATE: no fields */
        break;
    }
}

int fx_wire_req_encode(struct fx_wr *w, const struct fx_wire_req *req)
{
    size_t mark = w->len;
    size_t at = fx_wr_begin(w);
    encode_body(w, req);
    fx_wr_end(w, at, req->h);
    if (w->bad) {
        w->len = mark; /* unchanged, so the caller may flush and retry */
        w->bad = 0;
        return FLEXPU_ERANGE;
    }
    return 0;
}

void fx_wire_reply_begin(struct fx_wr *w, const struct fx_wire_reply *r)
{
    fx_wr_u32(w, (uint32_t)r->status);
    fx_wr_u32(w, (uint32_t)r->deferred);
    fx_wr_u32(w, r->deferred_seq);
}

void fx_wire_reply_patch(struct fx_wr *w, size_t at, const struct fx_wire_reply *r)
{
    if (w->bad || at + FX_WIRE_REPLY_HEAD > w->len)
        return;
    put32(w->buf + at, (uint32_t)r->status);
    put32(w->buf + at + 4, (uint32_t)r->deferred);
    put32(w->buf + at + 8, r->deferred_seq);
}

void fx_wire_reply_read(struct fx_rd *r, struct fx_wire_reply *out)
{
    out->status = (int32_t)fx_rd_u32(r, "status");
    out->deferred = (int32_t)fx_rd_u32(r, "deferred");
    out->deferred_seq = fx_rd_u32(r, "deferred_seq");
}
