/* SPDX-License-Identifier: Apache-2.0 */
/* The remote GPU protocol's framing and messages (docs/REMOTE.md, "Framing"):
 * a 16-byte little-endian header, then a payload read by a bounds-checked
 * cursor. The server decodes whole requests with fx_wire_req_decode, which
 * checks every field against what is left of the payload and refuses
 * trailing bytes; the client encodes them with fx_wire_req_encode, so both
 * sides share one description of each message. Pure: no I/O, no globals. */
#ifndef FX_REMOTE_WIRE_H
#define FX_REMOTE_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "flexpu/error.h"

#define FX_WIRE_VERSION     1u
#define FX_WIRE_HDR_SIZE    16u
#define FX_WIRE_MAX_PAYLOAD (64u << 20) /* a fat binary is the largest message */
#define FX_WIRE_CHUNK       (4u << 20)  /* a copy's bytes per frame */
#define FX_WIRE_REPLY       0x8000u     /* set in a reply's op */
#define FX_WIRE_NO_REPLY    0x1u        /* request flag: executed in order, no reply */
#define FX_WIRE_TOKEN_MAX   256u
#define FX_WIRE_NAME_MAX    1024u /* a kernel's (mangled) name */
#define FX_WIRE_PARAMS_MAX  256u  /* parameters of one kernel */
#define FX_WIRE_ARGS_MAX    32764u /* bytes of one kernel's parameters (CUDA 12.1+) */
#define FX_WIRE_REPLY_HEAD  12u   /* status, deferred, deferred_seq */
#define FX_WIRE_SCALAR_MAX  16u   /* bytes of a GEMM's alpha or beta */

/* X(name, value): the operations, in protocol order. */
#define FX_WIRE_OPS(X)                                                                             \
    X(HELLO, 1)                                                                                    \
    X(MALLOC, 2)                                                                                   \
    X(FREE, 3)                                                                                     \
    X(MEMCPY_H2D, 4)                                                                               \
    X(MEMCPY_D2H, 5)                                                                               \
    X(MEMCPY_D2D, 6)                                                                               \
    X(STREAM_CREATE, 7)                                                                            \
    X(STREAM_SYNC, 8)                                                                              \
    X(STREAM_DESTROY, 9)                                                                           \
    X(DEVICE_SYNC, 10)                                                                             \
    X(MEM_GET_INFO, 11)                                                                            \
    X(MODULE_LOAD, 12)                                                                             \
    X(FUNC_GET, 13)                                                                                \
    X(LAUNCH, 14)                                                                                  \
    X(MODULE_UNLOAD, 15)                                                                           \
    X(PROGRESS, 16)                                                                                \
    X(BLAS_CREATE, 17)                                                                             \
    X(BLAS_DESTROY, 18)                                                                            \
    X(BLAS_SET_STREAM, 19)                                                                         \
    X(BLAS_GEMM, 20)                                                                               \
    X(EVENT_CREATE, 21)                                                                            \
    X(EVENT_DESTROY, 22)                                                                           \
    X(EVENT_RECORD, 23)                                                                            \
    X(EVENT_QUERY, 24)                                                                             \
    X(EVENT_SYNC, 25)                                                                              \
    X(EVENT_ELAPSED, 26)                                                                           \
    X(STREAM_WAIT_EVENT, 27)                                                                       \
    X(MEMSET, 28)                                                                                  \
    X(DEVICE_ATTRIBUTE, 29)

enum fx_wire_op {
#define FX_WIRE_OP_ENUM(name, value) FX_OP_##name = value,
    FX_WIRE_OPS(FX_WIRE_OP_ENUM)
#undef FX_WIRE_OP_ENUM
    FX_OP_END
};

/* "MALLOC"; "?" for an unknown value. A reply's bit is ignored. */
const char *fx_wire_op_name(unsigned op);

struct fx_wire_hdr {
    uint32_t len; /* payload bytes */
    uint16_t op;  /* with FX_WIRE_REPLY in a reply */
    uint16_t flags;
    uint32_t seq;
    uint16_t dev;
};

void fx_wire_hdr_encode(const struct fx_wire_hdr *h, unsigned char out[FX_WIRE_HDR_SIZE]);

/* Decodes and checks a header: a known operation (PROGRESS only as a reply),
 * flags only on requests and only known ones, the reserved field 0, `len` at
 * most FX_WIRE_MAX_PAYLOAD. Returns 0, or FLEXPU_EPARSE with err naming the
 * field and value (*h then undefined). */
int fx_wire_hdr_decode(const unsigned char in[FX_WIRE_HDR_SIZE], struct fx_wire_hdr *h,
                       struct flexpu_error *err);

/* A read cursor over a payload. Reads past the end return 0 (or NULL) and
 * set `bad`; the caller checks once at the end with fx_rd_done. */
struct fx_rd {
    const unsigned char *p;
    size_t left;
    const char *bad; /* the first field that did not fit, or NULL */
};

void fx_rd_init(struct fx_rd *r, const void *buf, size_t len);
uint32_t fx_rd_u32(struct fx_rd *r, const char *field);
uint64_t fx_rd_u64(struct fx_rd *r, const char *field);
/* A u32 length and that many bytes, at most `max`; *n gets the length. The
 * bytes are not copied: they point into the payload. */
const unsigned char *fx_rd_bytes(struct fx_rd *r, size_t max, size_t *n, const char *field);
/* 0 when every read fitted and nothing is left; else FLEXPU_EPARSE. */
int fx_rd_done(const struct fx_rd *r, struct flexpu_error *err);

/* A write buffer that grows (fx_realloc) up to `limit` bytes. A write that
 * does not fit sets `bad` and is dropped. */
struct fx_wr {
    unsigned char *buf;
    size_t len, cap, limit;
    int bad;
};

void fx_wr_init(struct fx_wr *w, size_t limit);
void fx_wr_free(struct fx_wr *w);
void fx_wr_u32(struct fx_wr *w, uint32_t v);
void fx_wr_u64(struct fx_wr *w, uint64_t v);
void fx_wr_raw(struct fx_wr *w, const void *p, size_t n);
void fx_wr_bytes(struct fx_wr *w, const void *p, size_t n); /* u32 length, then bytes */
/* Appends `n` bytes for the caller to fill; NULL (and `bad`) when they do
 * not fit. */
unsigned char *fx_wr_reserve(struct fx_wr *w, size_t n);
/* Reserves a header's room at the current end; returns its offset. */
size_t fx_wr_begin(struct fx_wr *w);
/* Fills the header at `at` with `h`, its len being what was written since. */
void fx_wr_end(struct fx_wr *w, size_t at, struct fx_wire_hdr h);

/* A GEMM as cublasGemmEx takes it (Sgemm is the 32F case). */
struct fx_wire_gemm {
    uint32_t handle;
    uint32_t transa, transb; /* cublasOperation_t: 0 N, 1 T, 2 C */
    int32_t m, n, k;
    int32_t atype, btype, ctype; /* cudaDataType */
    int32_t compute, algo;       /* cublasComputeType_t, cublasGemmAlgo_t */
    uint64_t a, b, c;
    int32_t lda, ldb, ldc;
    unsigned char alpha[FX_WIRE_SCALAR_MAX], beta[FX_WIRE_SCALAR_MAX];
    size_t scalar_len; /* bytes of alpha and of beta, 1 to 16 */
};

/* One decoded request. Pointers point into the payload it was decoded from. */
struct fx_wire_req {
    struct fx_wire_hdr h;
    union {
        struct {
            uint32_t version;
            const unsigned char *token;
            size_t token_len;
        } hello;
        struct {
            uint64_t size;
        } malloc;
        struct {
            uint64_t ptr;
        } free;
        struct {
            uint64_t dst;
            uint32_t stream;
            const unsigned char *data;
            size_t n;
        } h2d;
        struct {
            uint64_t src, size;
            uint32_t stream;
        } d2h;
        struct {
            uint64_t dst, src, size;
            uint32_t stream;
        } d2d;
        struct {
            uint64_t dst, size; /* size: any non-zero count, no payload */
            uint32_t value;     /* a byte: 0 to 255 */
            uint32_t stream;
        } memset;
        struct {
            uint32_t flags;
        } stream_create;
        struct {
            uint32_t id;
        } id; /* STREAM_SYNC, STREAM_DESTROY, MODULE_UNLOAD */
        struct {
            const unsigned char *image;
            size_t n;
        } module_load;
        struct {
            uint32_t module;
            const unsigned char *name; /* not NUL-terminated; no NUL inside */
            size_t name_len;
        } func_get;
        struct {
            uint32_t func;
            uint32_t grid[3], block[3];
            uint32_t shared_bytes, stream;
            const unsigned char *args;
            size_t args_len;
        } launch;
        struct {
            uint32_t handle;
            uint32_t stream;
        } blas_stream; /* BLAS_SET_STREAM; BLAS_DESTROY uses id */
        struct fx_wire_gemm gemm;
        /* EVENT_CREATE: flags. EVENT_DESTROY, _QUERY, _SYNC: event.
         * EVENT_RECORD: event, stream. EVENT_ELAPSED: start, end.
         * STREAM_WAIT_EVENT: stream, event, flags. */
        struct {
            uint32_t a, b, c;
        } ids;
        struct {
            uint32_t attr, device;
        } attribute;
    } u;
};

/* Decodes the payload of request `h` (its len bytes at `payload`). Checks
 * every field: sizes of copies at most FX_WIRE_CHUNK and non-zero, names
 * without NUL, non-zero grid and block dimensions, no trailing bytes, and
 * NO_REPLY only on the operations that may be sent without a reply
 * (MEMCPY_H2D, MEMCPY_D2D, MEMSET, LAUNCH, BLAS_GEMM, EVENT_RECORD,
 * STREAM_WAIT_EVENT). A GEMM's shapes are
 * non-negative, its transposes 0 to 2, its scalars 1 to 16 bytes; the
 * types and leading dimensions are the server's to check.  Returns 0, or FLEXPU_EPARSE with err
 * naming the operation, the field and the value. */
int fx_wire_req_decode(const struct fx_wire_hdr *h, const unsigned char *payload,
                       struct fx_wire_req *out, struct flexpu_error *err);

/* Appends header and payload of `req` (h.op, h.flags, h.seq, h.dev are used;
 * len is computed). Returns 0, or FLEXPU_ENOMEM/FLEXPU_ERANGE when it does
 * not fit the writer's limit (the writer is then unchanged). */
int fx_wire_req_encode(struct fx_wr *w, const struct fx_wire_req *req);

/* The fixed start of a reply's payload. */
struct fx_wire_reply {
    int32_t status;
    int32_t deferred;
    uint32_t deferred_seq;
};

void fx_wire_reply_begin(struct fx_wr *w, const struct fx_wire_reply *r);
/* Rewrites the fixed start written at offset `at` of the buffer. */
void fx_wire_reply_patch(struct fx_wr *w, size_t at, const struct fx_wire_reply *r);
/* Reads the fixed start; the cursor is left on the operation's fields. */
void fx_wire_reply_read(struct fx_rd *r, struct fx_wire_reply *out);

#endif
