/* SPDX-License-Identifier: Apache-2.0 */
/* The remote protocol's framing (src/remote/wire.c): every request survives
 * an encode/decode round trip, every malformed field is refused with its
 * name, every truncation is refused, and a seeded fuzz loop of mutated and
 * random frames never reads outside the payload (payloads are copied into
 * buffers of their exact size, so ASan sees any overread) and never
 * accepts a frame whose fields do not fit. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "flexpu/rng.h"
#include "remote/wire.h"

static const unsigned char token[] = "0123456789abcdef0123456789abcdef";
static const unsigned char data[] = "some bytes for a copy";
static const unsigned char name[] = "_Z7add_u32jPjjj";
static const unsigned char args[24] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
static const unsigned char image[64] = {0x50, 0xED, 0x55, 0xBA, 1, 0, 16, 0};

/* A valid request of every operation, with fields from `rng`. */
static struct fx_wire_req sample(unsigned op, struct flexpu_rng *rng)
{
    struct fx_wire_req q = {.h = {.op = (uint16_t)op, .seq = (uint32_t)flexpu_rng_next(rng),
                                  .dev = (uint16_t)flexpu_rng_below(rng, 8)}};
    uint64_t v = flexpu_rng_next(rng);
    switch (op) {
    case FX_OP_HELLO:
        q.u.hello.version = FX_WIRE_VERSION;
        q.u.hello.token = token;
        q.u.hello.token_len = flexpu_rng_below(rng, sizeof token);
        break;
    case FX_OP_MALLOC: q.u.malloc.size = v; break;
    case FX_OP_FREE: q.u.free.ptr = v; break;
    case FX_OP_MEMCPY_H2D:
        q.h.flags = (uint16_t)flexpu_rng_below(rng, 2);
        q.u.h2d.dst = v;
        q.u.h2d.stream = (uint32_t)flexpu_rng_below(rng, 5);
        q.u.h2d.data = data;
        q.u.h2d.n = 1 + flexpu_rng_below(rng, sizeof data - 1);
        break;
    case FX_OP_MEMCPY_D2H:
        q.u.d2h.src = v;
        q.u.d2h.size = 1 + flexpu_rng_below(rng, FX_WIRE_CHUNK);
        q.u.d2h.stream = 3;
        break;
    case FX_OP_MEMCPY_D2D:
        q.h.flags = FX_WIRE_NO_REPLY;
        q.u.d2d.dst = v;
        q.u.d2d.src = ~v;
        q.u.d2d.size = FX_WIRE_CHUNK;
        q.u.d2d.stream = 7;
        break;
    case FX_OP_MEMSET:
        q.h.flags = (uint16_t)flexpu_rng_below(rng, 2);
        q.u.memset.dst = v;
        q.u.memset.size = 1 + (v >> 20);
        q.u.memset.value = (uint32_t)flexpu_rng_below(rng, 256);
        q.u.memset.stream = 2;
        break;
    case FX_OP_DEVICE_ATTRIBUTE:
        q.u.attribute.attr = (uint32_t)v;
        q.u.attribute.device = (uint32_t)(v >> 40);
        break;
    case FX_OP_STREAM_CREATE: q.u.stream_create.flags = 1; break;
    case FX_OP_STREAM_SYNC:
    case FX_OP_STREAM_DESTROY:
    case FX_OP_MODULE_UNLOAD: q.u.id.id = (uint32_t)v; break;
    case FX_OP_MODULE_LOAD:
        q.u.module_load.image = image;
        q.u.module_load.n = sizeof image;
        break;
    case FX_OP_FUNC_GET:
        q.u.func_get.module = 2;
        q.u.func_get.name = name;
        q.u.func_get.name_len = sizeof name - 1;
        break;
    case FX_OP_LAUNCH:
        q.h.flags = FX_WIRE_NO_REPLY;
        q.u.launch.func = 9;
        for (int i = 0; i < 3; i++) {
            q.u.launch.grid[i] = 1 + (uint32_t)flexpu_rng_below(rng, 1000);
            q.u.launch.block[i] = 1 + (uint32_t)flexpu_rng_below(rng, 32);
        }
        q.u.launch.shared_bytes = 48;
        q.u.launch.stream = 0;
        q.u.launch.args = args;
        q.u.launch.args_len = flexpu_rng_below(rng, sizeof args + 1);
        break;
    case FX_OP_BLAS_DESTROY: q.u.id.id = 4; break;
    case FX_OP_BLAS_SET_STREAM:
        q.u.blas_stream.handle = 1;
        q.u.blas_stream.stream = (uint32_t)flexpu_rng_below(rng, 9);
        break;
    case FX_OP_BLAS_GEMM: {
        struct fx_wire_gemm *g = &q.u.gemm;
        q.h.flags = FX_WIRE_NO_REPLY;
        g->handle = 1;
        g->transa = (uint32_t)flexpu_rng_below(rng, 3);
        g->transb = (uint32_t)flexpu_rng_below(rng, 3);
        g->m = (int32_t)flexpu_rng_below(rng, 5000);
        g->n = (int32_t)flexpu_rng_below(rng, 5000);
        g->k = (int32_t)flexpu_rng_below(rng, 5000);
        g->atype = g->btype = 14;
        g->ctype = 0;
        g->compute = 68;
        g->algo = -1;
        g->a = v;
        g->b = v + 4096;
        g->c = v + 8192;
        g->lda = g->ldb = g->ldc = 5000;
        g->scalar_len = 1 + flexpu_rng_below(rng, FX_WIRE_SCALAR_MAX);
        memset(g->alpha, 0x3f, sizeof g->alpha);
        memset(g->beta, 0, sizeof g->beta);
        break;
    }
    case FX_OP_EVENT_RECORD:
    case FX_OP_STREAM_WAIT_EVENT:
        q.h.flags = (uint16_t)flexpu_rng_below(rng, 2);
        /* fall through */
    case FX_OP_EVENT_CREATE:
    case FX_OP_EVENT_DESTROY:
    case FX_OP_EVENT_QUERY:
    case FX_OP_EVENT_SYNC:
    case FX_OP_EVENT_ELAPSED:
        q.u.ids.a = (uint32_t)v;
        q.u.ids.b = (uint32_t)(v >> 32);
        /* Only STREAM_WAIT_EVENT carries a third field. */
        q.u.ids.c = op == FX_OP_STREAM_WAIT_EVENT ? 7 : 0;
        if (op == FX_OP_EVENT_CREATE || op == FX_OP_EVENT_DESTROY || op == FX_OP_EVENT_QUERY ||
            op == FX_OP_EVENT_SYNC)
            q.u.ids.b = 0;
        break;
    default: /* DEVICE_SYNC, MEM_GET_INFO, BLAS_CREATE */
        break;
    }
    return q;
}

/* Every request operation, in turn. */
static unsigned next_op(unsigned op)
{
    op++;
    return op == FX_OP_PROGRESS ? op + 1 : op;
}

/* Decodes frame `buf` (header and payload) with the payload copied to a
 * buffer of its exact size. Returns the decoder's result. */
static int decode_frame(const unsigned char *buf, size_t len, struct fx_wire_req *out,
                        struct flexpu_error *err)
{
    struct fx_wire_hdr h;
    if (len < FX_WIRE_HDR_SIZE)
        return flexpu_error_set(err, FLEXPU_EPARSE, "short header");
    int rc = fx_wire_hdr_decode(buf, &h, err);
    if (rc != 0)
        return rc;
    if (h.op & FX_WIRE_REPLY)
        return flexpu_error_set(err, FLEXPU_EPARSE, "a reply"); /* the server takes requests */
    if (h.len != len - FX_WIRE_HDR_SIZE) /* the transport reads exactly len bytes */
        return flexpu_error_set(err, FLEXPU_EPARSE, "short payload");
    unsigned char *p = malloc(h.len ? h.len : 1);
    assert_non_null(p);
    memcpy(p, buf + FX_WIRE_HDR_SIZE, h.len);
    rc = fx_wire_req_decode(&h, p, out, err);
    /* What the decoder hands out points inside the payload. */
    if (rc == 0 && out->h.op == FX_OP_FUNC_GET)
        assert_true(out->u.func_get.name >= p &&
                    out->u.func_get.name + out->u.func_get.name_len <= p + h.len);
    free(p);
    return rc;
}

static void assert_same(const struct fx_wire_req *a, const struct fx_wire_req *b)
{
    assert_int_equal(a->h.op, b->h.op);
    assert_int_equal(a->h.flags, b->h.flags);
    assert_int_equal(a->h.seq, b->h.seq);
    assert_int_equal(a->h.dev, b->h.dev);
    switch (a->h.op) {
    case FX_OP_HELLO:
        assert_int_equal(a->u.hello.version, b->u.hello.version);
        assert_int_equal(a->u.hello.token_len, b->u.hello.token_len);
        break;
    case FX_OP_MALLOC: assert_true(a->u.malloc.size == b->u.malloc.size); break;
    case FX_OP_FREE: assert_true(a->u.free.ptr == b->u.free.ptr); break;
    case FX_OP_MEMCPY_H2D:
        assert_true(a->u.h2d.dst == b->u.h2d.dst);
        assert_int_equal(a->u.h2d.stream, b->u.h2d.stream);
        assert_int_equal(a->u.h2d.n, b->u.h2d.n);
        break;
    case FX_OP_MEMCPY_D2H:
        assert_true(a->u.d2h.src == b->u.d2h.src && a->u.d2h.size == b->u.d2h.size);
        break;
    case FX_OP_MEMCPY_D2D:
        assert_true(a->u.d2d.dst == b->u.d2d.dst && a->u.d2d.src == b->u.d2d.src);
        assert_true(a->u.d2d.size == b->u.d2d.size && a->u.d2d.stream == b->u.d2d.stream);
        break;
    case FX_OP_DEVICE_ATTRIBUTE:
        assert_memory_equal(&a->u.attribute, &b->u.attribute, sizeof a->u.attribute);
        break;
    case FX_OP_MEMSET:
        assert_true(a->u.memset.dst == b->u.memset.dst && a->u.memset.size == b->u.memset.size);
        assert_int_equal(a->u.memset.value, b->u.memset.value);
        assert_int_equal(a->u.memset.stream, b->u.memset.stream);
        break;
    case FX_OP_STREAM_SYNC:
    case FX_OP_STREAM_DESTROY:
    case FX_OP_MODULE_UNLOAD: assert_int_equal(a->u.id.id, b->u.id.id); break;
    case FX_OP_MODULE_LOAD: assert_int_equal(a->u.module_load.n, b->u.module_load.n); break;
    case FX_OP_FUNC_GET:
        assert_int_equal(a->u.func_get.module, b->u.func_get.module);
        assert_int_equal(a->u.func_get.name_len, b->u.func_get.name_len);
        break;
    case FX_OP_BLAS_GEMM:
        assert_true(a->u.gemm.m == b->u.gemm.m && a->u.gemm.n == b->u.gemm.n &&
                    a->u.gemm.k == b->u.gemm.k);
        assert_true(a->u.gemm.transa == b->u.gemm.transa && a->u.gemm.algo == b->u.gemm.algo);
        assert_true(a->u.gemm.a == b->u.gemm.a && a->u.gemm.c == b->u.gemm.c);
        assert_int_equal(a->u.gemm.scalar_len, b->u.gemm.scalar_len);
        assert_memory_equal(a->u.gemm.alpha, b->u.gemm.alpha, a->u.gemm.scalar_len);
        break;
    case FX_OP_BLAS_SET_STREAM:
        assert_int_equal(a->u.blas_stream.stream, b->u.blas_stream.stream);
        break;
    case FX_OP_EVENT_CREATE:
    case FX_OP_EVENT_DESTROY:
    case FX_OP_EVENT_RECORD:
    case FX_OP_EVENT_QUERY:
    case FX_OP_EVENT_SYNC:
    case FX_OP_EVENT_ELAPSED:
    case FX_OP_STREAM_WAIT_EVENT:
        assert_memory_equal(&a->u.ids, &b->u.ids, sizeof a->u.ids);
        break;
    case FX_OP_LAUNCH:
        assert_memory_equal(a->u.launch.grid, b->u.launch.grid, sizeof a->u.launch.grid);
        assert_memory_equal(a->u.launch.block, b->u.launch.block, sizeof a->u.launch.block);
        assert_int_equal(a->u.launch.args_len, b->u.launch.args_len);
        break;
    default:
        break;
    }
}

static void test_round_trip_every_op(void **state)
{
    (void)state;
    struct flexpu_rng rng;
    flexpu_rng_seed(&rng, 17);
    for (int round = 0; round < 200; round++) {
        for (unsigned op = FX_OP_HELLO; op < FX_OP_END; op = next_op(op)) {
            struct fx_wire_req q = sample(op, &rng), back;
            struct fx_wr w;
            fx_wr_init(&w, 1 << 20);
            assert_int_equal(fx_wire_req_encode(&w, &q), 0);
            struct flexpu_error err = {0};
            assert_int_equal(decode_frame(w.buf, w.len, &back, &err), 0);
            assert_same(&q, &back);
            /* Every shorter payload is refused: no field is optional. The
             * header says the shorter length, as a sender would. */
            struct fx_wire_hdr h;
            assert_int_equal(fx_wire_hdr_decode(w.buf, &h, &err), 0);
            for (uint32_t cut = 0; cut < h.len; cut += 1 + cut / 4) {
                h.len = cut;
                fx_wire_hdr_encode(&h, w.buf);
                assert_int_not_equal(decode_frame(w.buf, FX_WIRE_HDR_SIZE + cut, &back, &err), 0);
            }
            fx_wr_free(&w);
        }
    }
}

static void test_header_checks(void **state)
{
    (void)state;
    struct flexpu_error err = {0};
    unsigned char b[FX_WIRE_HDR_SIZE];
    struct fx_wire_hdr h = {.len = 8, .op = FX_OP_MALLOC, .seq = 5, .dev = 1}, out;
    fx_wire_hdr_encode(&h, b);
    assert_int_equal(fx_wire_hdr_decode(b, &out, &err), 0);
    assert_true(out.len == 8 && out.op == FX_OP_MALLOC && out.seq == 5 && out.dev == 1);

    h.len = FX_WIRE_MAX_PAYLOAD + 1;
    fx_wire_hdr_encode(&h, b);
    assert_int_equal(fx_wire_hdr_decode(b, &out, &err), FLEXPU_EPARSE);
    assert_non_null(strstr(err.msg, "'len'"));
    h.len = 0;
    const uint16_t bad_ops[] = {0, FX_OP_END, 0x7fff, FX_OP_PROGRESS, FX_WIRE_REPLY};
    for (size_t i = 0; i < sizeof bad_ops / sizeof bad_ops[0]; i++) {
        h.op = bad_ops[i];
        fx_wire_hdr_encode(&h, b);
        assert_int_equal(fx_wire_hdr_decode(b, &out, &err), FLEXPU_EPARSE);
        assert_non_null(strstr(err.msg, "'op'"));
    }
    h.op = FX_OP_PROGRESS | FX_WIRE_REPLY;
    fx_wire_hdr_encode(&h, b);
    assert_int_equal(fx_wire_hdr_decode(b, &out, &err), 0);
    h.flags = FX_WIRE_NO_REPLY; /* flags on a reply */
    fx_wire_hdr_encode(&h, b);
    assert_int_equal(fx_wire_hdr_decode(b, &out, &err), FLEXPU_EPARSE);
    assert_non_null(strstr(err.msg, "'flags'"));
    h.op = FX_OP_LAUNCH;
    h.flags = 2;
    fx_wire_hdr_encode(&h, b);
    assert_int_equal(fx_wire_hdr_decode(b, &out, &err), FLEXPU_EPARSE);
    h.flags = 0;
    fx_wire_hdr_encode(&h, b);
    b[15] = 1;
    assert_int_equal(fx_wire_hdr_decode(b, &out, &err), FLEXPU_EPARSE);
    assert_non_null(strstr(err.msg, "'reserved'"));
}

/* Encodes `q` and expects its decoding to fail naming `field`. */
static void expect_refused(const struct fx_wire_req *q, const char *field)
{
    struct fx_wr w;
    fx_wr_init(&w, 1 << 24);
    assert_int_equal(fx_wire_req_encode(&w, q), 0);
    struct fx_wire_req back;
    struct flexpu_error err = {0};
    assert_int_equal(decode_frame(w.buf, w.len, &back, &err), FLEXPU_EPARSE);
    if (!strstr(err.msg, field))
        fail_msg("expected '%s' in: %s", field, err.msg);
    fx_wr_free(&w);
}

static void test_field_checks(void **state)
{
    (void)state;
    struct flexpu_rng rng;
    flexpu_rng_seed(&rng, 3);
    struct fx_wire_req q = sample(FX_OP_MEMCPY_D2H, &rng);
    q.u.d2h.size = 0;
    expect_refused(&q, "'size'");
    q.u.d2h.size = FX_WIRE_CHUNK + 1;
    expect_refused(&q, "'size'");
    q = sample(FX_OP_MEMCPY_D2D, &rng);
    q.u.d2d.size = 0;
    expect_refused(&q, "'size'");
    static unsigned char big[FX_WIRE_CHUNK + 1];
    q = sample(FX_OP_MEMCPY_H2D, &rng);
    q.u.h2d.data = big;
    q.u.h2d.n = sizeof big;
    expect_refused(&q, "'data'");
    q.u.h2d.n = 0;
    expect_refused(&q, "'size'");
    q = sample(FX_OP_FUNC_GET, &rng);
    q.u.func_get.name = (const unsigned char *)"add\0evil";
    q.u.func_get.name_len = 8;
    expect_refused(&q, "'name'");
    q.u.func_get.name_len = 0;
    expect_refused(&q, "'name'");
    q = sample(FX_OP_LAUNCH, &rng);
    q.u.launch.grid[1] = 0;
    expect_refused(&q, "'grid.y'");
    q = sample(FX_OP_LAUNCH, &rng);
    q.u.launch.block[2] = 0;
    expect_refused(&q, "'block.z'");
    static unsigned char many[FX_WIRE_ARGS_MAX + 1];
    q.u.launch.block[2] = 1;
    q.u.launch.args = many;
    q.u.launch.args_len = sizeof many;
    expect_refused(&q, "'args'");
    static unsigned char long_token[FX_WIRE_TOKEN_MAX + 1];
    q = sample(FX_OP_HELLO, &rng);
    q.u.hello.token = long_token;
    q.u.hello.token_len = sizeof long_token;
    expect_refused(&q, "'token'");
    q = sample(FX_OP_MODULE_LOAD, &rng);
    q.u.module_load.n = 0;
    expect_refused(&q, "'image'");
    q = sample(FX_OP_MEMSET, &rng);
    q.u.memset.value = 256;
    expect_refused(&q, "'value'");
    q.u.memset.value = 1;
    q.u.memset.size = 0;
    expect_refused(&q, "'size'");
    q = sample(FX_OP_BLAS_GEMM, &rng);
    q.u.gemm.transb = 3;
    expect_refused(&q, "'transb'");
    q = sample(FX_OP_BLAS_GEMM, &rng);
    q.u.gemm.k = -1;
    expect_refused(&q, "'k'");
    q = sample(FX_OP_BLAS_GEMM, &rng);
    q.u.gemm.scalar_len = 0;
    expect_refused(&q, "'beta'");

    /* NO_REPLY only where no reply may be skipped. */
    q = sample(FX_OP_MALLOC, &rng);
    q.h.flags = FX_WIRE_NO_REPLY;
    expect_refused(&q, "'flags'");
    q = sample(FX_OP_MEMCPY_D2H, &rng);
    q.h.flags = FX_WIRE_NO_REPLY;
    expect_refused(&q, "'flags'");
    q = sample(FX_OP_EVENT_SYNC, &rng);
    q.h.flags = FX_WIRE_NO_REPLY;
    expect_refused(&q, "'flags'");

    /* Trailing bytes after the last field. */
    q = sample(FX_OP_FREE, &rng);
    struct fx_wr w;
    fx_wr_init(&w, 1 << 10);
    assert_int_equal(fx_wire_req_encode(&w, &q), 0);
    fx_wr_u32(&w, 0);
    struct fx_wire_hdr h;
    struct flexpu_error err = {0};
    assert_int_equal(fx_wire_hdr_decode(w.buf, &h, &err), 0);
    h.len += 4;
    fx_wire_hdr_encode(&h, w.buf);
    struct fx_wire_req back;
    assert_int_equal(decode_frame(w.buf, w.len, &back, &err), FLEXPU_EPARSE);
    assert_non_null(strstr(err.msg, "after the last field"));
    fx_wr_free(&w);
}

static void test_writer_limit(void **state)
{
    (void)state;
    struct fx_wr w;
    fx_wr_init(&w, 64);
    struct flexpu_rng rng;
    flexpu_rng_seed(&rng, 5);
    struct fx_wire_req q = sample(FX_OP_MODULE_LOAD, &rng); /* 16 + 4 + 64 bytes */
    assert_int_equal(fx_wire_req_encode(&w, &q), FLEXPU_ERANGE);
    assert_int_equal(w.len, 0); /* unchanged */
    q = sample(FX_OP_FREE, &rng);
    assert_int_equal(fx_wire_req_encode(&w, &q), 0);
    assert_int_equal(w.len, FX_WIRE_HDR_SIZE + 8);
    fx_wr_free(&w);

    struct fx_rd r;
    const unsigned char buf[8] = {0xff, 0xff, 0, 0, 1, 2, 3, 4};
    fx_rd_init(&r, buf, sizeof buf);
    size_t n;
    assert_null(fx_rd_bytes(&r, 1 << 20, &n, "blob")); /* 65535 bytes claimed, 4 there */
    assert_int_equal(n, 0);
    struct flexpu_error err = {0};
    assert_int_equal(fx_rd_done(&r, &err), FLEXPU_EPARSE);
    assert_non_null(strstr(err.msg, "'blob'"));
}

/* Mutated valid frames and random bytes: the decoder returns 0 or
 * FLEXPU_EPARSE, never reads outside the payload (ASan), and whatever it
 * accepts passes its own checks. */
static void test_fuzz_decoder(void **state)
{
    (void)state;
    struct flexpu_rng rng;
    flexpu_rng_seed(&rng, 2026);
    unsigned accepted = 0, refused = 0;
    for (int i = 0; i < 200000; i++) {
        unsigned op = FX_OP_HELLO + (unsigned)flexpu_rng_below(&rng, FX_OP_END - 1);
        if (op == FX_OP_PROGRESS)
            continue;
        struct fx_wire_req q = sample(op, &rng), back;
        struct fx_wr w;
        fx_wr_init(&w, 1 << 16);
        assert_int_equal(fx_wire_req_encode(&w, &q), 0);
        size_t len = w.len;
        int kind = (int)flexpu_rng_below(&rng, 4);
        if (kind == 0) { /* flip bytes */
            for (int k = 0; k < 1 + (int)flexpu_rng_below(&rng, 4); k++)
                w.buf[flexpu_rng_below(&rng, len)] ^= (unsigned char)(1 + flexpu_rng_below(&rng, 255));
        } else if (kind == 1) { /* cut, header left saying the old length */
            len = flexpu_rng_below(&rng, len + 1);
        } else if (kind == 2) { /* a length field inside the payload grows */
            if (len > FX_WIRE_HDR_SIZE + 4) {
                size_t at = FX_WIRE_HDR_SIZE + flexpu_rng_below(&rng, len - FX_WIRE_HDR_SIZE - 3);
                uint32_t v = (uint32_t)flexpu_rng_next(&rng);
                memcpy(w.buf + at, &v, 4);
            }
        } else { /* random bytes with a plausible header */
            for (size_t k = FX_WIRE_HDR_SIZE; k < len; k++)
                w.buf[k] = (unsigned char)flexpu_rng_next(&rng);
        }
        struct flexpu_error err = {0};
        int rc = decode_frame(w.buf, len, &back, &err);
        assert_true(rc == 0 || rc == FLEXPU_EPARSE);
        if (rc == 0) {
            accepted++;
            assert_true(back.h.op >= FX_OP_HELLO && back.h.op < FX_OP_END &&
                        back.h.op != FX_OP_PROGRESS);
            if (back.h.op == FX_OP_BLAS_GEMM)
                assert_true(back.u.gemm.m >= 0 && back.u.gemm.transa <= 2 &&
                            back.u.gemm.scalar_len >= 1 &&
                            back.u.gemm.scalar_len <= FX_WIRE_SCALAR_MAX);
            if (back.h.op == FX_OP_MEMCPY_D2H)
                assert_true(back.u.d2h.size >= 1 && back.u.d2h.size <= FX_WIRE_CHUNK);
            if (back.h.op == FX_OP_LAUNCH)
                assert_true(back.u.launch.args_len <= FX_WIRE_ARGS_MAX);
        } else {
            refused++;
            assert_true(err.msg[0] != '\0');
        }
        fx_wr_free(&w);
    }
    /* Both outcomes happen, or the loop tests nothing. */
    assert_true(accepted > 1000 && refused > 1000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_every_op),
        cmocka_unit_test(test_header_checks),
        cmocka_unit_test(test_field_checks),
        cmocka_unit_test(test_writer_limit),
        cmocka_unit_test(test_fuzz_decoder),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
