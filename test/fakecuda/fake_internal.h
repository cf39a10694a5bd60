/* SPDX-License-Identifier: Apache-2.0 */
/* Internals shared by the files of the fake libcuda.so.1.
 *
 * The whole driver state is one process-wide struct, `fake`, guarded by one
 * mutex, `fake.lock`: a test double does not need finer locking, and one lock
 * makes every entry point obviously thread-safe. Functions below that touch
 * the state say "lock held" when the caller must hold it. The only code that
 * runs without it is a context's worker thread while it sleeps through a
 * simulated kernel.
 *
 * Simulated execution: each context has a FIFO of work (kernels, event
 * records, event waits) executed in issue order by one worker thread, so all
 * streams of a context are serialized. A kernel takes an exclusive flock() on
 * FAKECUDA_DIR/gpu<N>.busy while it "runs", so kernels of different processes
 * on one device never overlap, as on a time-sliced GPU. */
#ifndef FAKE_INTERNAL_H
#define FAKE_INTERNAL_H

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>

#include "runtime/cuda_abi.h"
#include "fake_clock.h"
#include "fake_common.h"

/* Every cu* export; the other files are built with -fvisibility=hidden. */
#define FAKE_API __attribute__((visibility("default")))

#define FAKE_DRIVER_VERSION       13000
#define FAKE_GRANULE              (2ull << 20) /* VMM granularity, pool reserve unit */
#define FAKE_PITCH_ALIGN          512ull       /* cuMemAllocPitch and mipmap levels */
#define FAKE_QUEUE_CAP            1024 /* launches block when a context has this many queued */
#define FAKE_CTX_STACK_MAX        64   /* per-thread context stack depth */
#define FAKE_DEFAULT_CTX_OVERHEAD (300ull << 20)

/* cuda.h flag values the fake checks but the ABI header does not need. */
#define FAKE_STREAM_NON_BLOCKING 0x1u
#define FAKE_EVENT_FLAGS_MASK    0x7u /* BLOCKING_SYNC | DISABLE_TIMING | INTERPROCESS */
#define FAKE_IPC_LAZY_PEER       0x1u
/* cuda.h error codes the ABI header does not need. */
#define FAKE_ERROR_INVALID_IMAGE   200
#define FAKE_ERROR_ILLEGAL_ADDRESS 700
#define FAKE_ERROR_MISALIGNED_ADDRESS 716

#define FAKE_REQUIRE_INIT()                                                                        \
    do {                                                                                           \
        if (!atomic_load(&fake.initialized))                                                       \
            return CUDA_ERROR_NOT_INITIALIZED;                                                     \
    } while (0)

struct fake_ctx;
struct fake_event;
struct fake_capture;

/* --- Execution ---------------------------------------------------------- */

enum fake_work_kind { FAKE_WORK_KERNEL, FAKE_WORK_EVENT_RECORD, FAKE_WORK_EVENT_WAIT };

struct fake_work {
    enum fake_work_kind kind;
    unsigned int duration_us;     /* KERNEL */
    unsigned long long ticket;    /* position in the context's issue order */
    struct fake_event *event;     /* RECORD, WAIT: holds a reference */
    unsigned long long event_seq; /* RECORD: this record; WAIT: the record waited for */
    unsigned long long add_ptr;   /* KERNEL of an add_u32 function (fake_module.c) */
    unsigned int add_n, add_v;    /* add_n 0: nothing to compute */
};

struct fake_stream {
    struct fake_stream *next; /* ctx->streams */
    struct fake_ctx *ctx;
    unsigned long long last_ticket; /* ticket of the last work issued to it */
    struct fake_capture *capture;   /* non-NULL while capturing */
};

struct fake_event {
    struct fake_event *next; /* ctx->events while alive */
    struct fake_ctx *ctx;
    unsigned int flags;
    int refs;                      /* the handle, plus one per queued record or wait */
    unsigned long long record_seq; /* records issued */
    unsigned long long done_seq;   /* records completed */
    unsigned long long done_ns;    /* CLOCK_MONOTONIC time the last record completed */
    unsigned long long capture_id; /* non-zero when last recorded into a capture */
};

struct fake_ctx {
    struct fake_ctx *next; /* fake.contexts */
    int dev;
    int is_primary;
    int primary_refs;
    pthread_t worker;
    int stopping;
    pthread_cond_t work_cv; /* worker waits here for work */
    struct fake_work queue[FAKE_QUEUE_CAP];
    size_t head, count;
    unsigned long long submitted, completed; /* tickets */
    int busy_fd, turn_fd;                    /* FAKECUDA_DIR/gpu<N>.busy, .turn */
    struct fake_stream null_stream;          /* NULL, CU_STREAM_LEGACY, CU_STREAM_PER_THREAD */
    struct fake_stream *streams;
    struct fake_event *events;
};

/* --- Memory --------------------------------------------------------------- */

enum fake_alloc_kind {
    FAKE_ALLOC_DEVICE,      /* cuMemAlloc, cuMemAllocPitch */
    FAKE_ALLOC_MANAGED,     /* cuMemAllocManaged */
    FAKE_ALLOC_HOST,        /* cuMemAllocHost, cuMemHostAlloc: never charged */
    FAKE_ALLOC_ARRAY,       /* cuArrayCreate, cuArray3DCreate: key is the handle */
    FAKE_ALLOC_MIPMAP,      /* cuMipmappedArrayCreate: key is the handle */
    FAKE_ALLOC_IPC,         /* cuIpcOpenMemHandle: an uncharged mapping */
    FAKE_ALLOC_POOL_BLOCK,  /* a block reserved by a memory pool */
    FAKE_ALLOC_GRAPH_VA,    /* address handed out by a captured cuMemAllocAsync */
    FAKE_ALLOC_VMM_HANDLE,  /* cuMemCreate, cuMemImportFromShareableHandle */
    FAKE_ALLOC_VA_RANGE,    /* cuMemAddressReserve */
    FAKE_ALLOC_VMM_MAPPING, /* cuMemMap: key is the mapped address */
};
#define FAKE_KIND(k) (1u << (k))

/* One registered allocation or handle, found by key (a device pointer or a
 * handle value). */
struct fake_alloc {
    struct fake_alloc *hash_next;
    unsigned long long key;
    enum fake_alloc_kind kind;
    int dev;                    /* device charged, -1 when none */
    size_t size;                /* bytes the caller sees */
    unsigned long long charged; /* bytes charged to fake.dev[dev].used */
    void *map;                  /* host mapping backing it, or NULL */
    size_t map_len;
    void *owner;                  /* POOL_BLOCK: its pool; GRAPH_VA: its graph;
                                   * device memory and arrays: their context */
    struct fake_alloc *pool_next; /* POOL_BLOCK: next block of the same pool */
    size_t req;                   /* POOL_BLOCK: bytes requested while in use */
    int in_use;                   /* POOL_BLOCK */
    int released;                 /* VMM_HANDLE: cuMemRelease called */
    int retains;                  /* VMM_HANDLE: cuMemRetainAllocationHandle references
                                   * a cuMemRelease drops before the creation's */
    int map_refs;                 /* VMM_HANDLE: live mappings */
    struct fake_alloc *target;    /* VMM_MAPPING: the handle mapped */
};

struct fake_pool {
    struct fake_pool *next; /* fake.pools (created pools only) */
    int dev;
    unsigned long long threshold; /* CU_MEMPOOL_ATTR_RELEASE_THRESHOLD */
    unsigned long long reserved, reserved_high, used, used_high;
    struct fake_alloc *blocks;
};

/* --- Graphs --------------------------------------------------------------- */

struct fake_graph {
    struct fake_graph *next; /* fake.graphs */
    unsigned int *kernels;   /* durations, in launch order */
    size_t nkernels, cap;
    unsigned long long mem_bytes; /* graph memory its allocation nodes need */
};

struct fake_exec {
    struct fake_exec *next; /* fake.execs */
    unsigned int *kernels;
    size_t nkernels;
    unsigned long long mem_bytes;
    int mem_dev; /* device whose graph pool backs it; -1 before first launch */
};

struct fake_capture {
    struct fake_capture *next; /* fake.captures */
    unsigned long long id;
    CUstreamCaptureMode mode;
    pthread_t thread; /* the thread that began it */
    int invalidated;
    struct fake_stream *origin;
    struct fake_graph *graph;
};

/* --- Process state -------------------------------------------------------- */

struct fake_device {
    unsigned long long used;    /* everything fakecuda_used_bytes reports */
    unsigned long long busy_ns; /* completed kernel work: time at the loaded clock */
    struct fake_clock_page *clock; /* mapped at its first context when clocks are modelled */
    int contexts;               /* live contexts; the overhead is charged while > 0 */
    struct fake_ctx *primary;
    struct fake_pool default_pool;
    struct fake_pool *current_pool;
    unsigned long long graph_used, graph_used_high, graph_reserved, graph_reserved_high;
};

struct fake_state {
    pthread_mutex_t lock;
    pthread_cond_t done_cv; /* broadcast whenever any work completes */
    atomic_int initialized;
    int ndevices;
    unsigned long long total_mem;
    unsigned long long ctx_overhead;
    unsigned clock_max_mhz, clock_loaded_mhz; /* fake_clock.h; loaded 0: not modelled */
    char dir[PATH_MAX - 32]; /* room left for "/gpu<N>.busy" */
    struct fake_device dev[FAKE_MAX_DEVICES];
    struct fake_ctx *contexts;
    struct fake_pool *pools;
    struct fake_capture *captures;
    struct fake_graph *graphs;
    struct fake_exec *execs;
    unsigned long long next_capture_id;
};

extern struct fake_state fake;

void fake_lock(void);
/* Node-wide device memory (fake_nodemem.c, FAKECUDA_NODE_MEM=1): what the
 * node's other processes hold on dev, and publishing this one's. */
unsigned long long fake_node_others(int dev);
void fake_node_publish(int dev);
void fake_unlock(void);
unsigned long long fake_now_ns(void);
int fake_valid_dev(CUdevice dev);

/* fake_ctx.c (lock held) */
struct fake_ctx *fake_ctx_find(CUcontext h);
struct fake_ctx *fake_current_ctx(void);

/* fake_worker.c (lock held) */
void *fake_worker_main(void *arg); /* thread entry; takes the lock itself */
void fake_enqueue(struct fake_stream *s, struct fake_work w);
void fake_wait_ticket(struct fake_ctx *c, unsigned long long ticket);
CUresult fake_enqueue_kernel(struct fake_stream *s, unsigned int duration_us);
void fake_event_put(struct fake_event *ev);

/* fake_stream.c (lock held) */
CUresult fake_stream_resolve(CUstream h, struct fake_stream **out);
void fake_streams_free(struct fake_ctx *c);

/* fake_mem.c (lock held) */
CUresult fake_charge(int dev, unsigned long long bytes);
void fake_uncharge(int dev, unsigned long long bytes);
void *fake_map(size_t len);
struct fake_alloc *fake_alloc_new(enum fake_alloc_kind kind, int dev);
void fake_registry_add(struct fake_alloc *a);
struct fake_alloc *fake_registry_find(unsigned long long key, unsigned kinds);
struct fake_alloc *fake_registry_find_overlap(unsigned long long lo, unsigned long long hi,
                                              unsigned kinds);
CUresult fake_map_and_register(enum fake_alloc_kind kind, int dev, size_t len,
                               unsigned long long charge, struct fake_alloc **out);
void fake_alloc_destroy(struct fake_alloc *a);
void fake_registry_destroy_owned(void *owner);

/* fake_pool.c (lock held) */
void fake_pools_trim_device(int dev, int ignore_threshold);
void fake_pool_block_free(struct fake_alloc *block);

/* fake_graph.c (lock held) */
CUresult fake_capture_check_unsafe(void);
struct fake_capture *fake_capture_find(unsigned long long id);
CUresult fake_capture_status(const struct fake_stream *s);
CUresult fake_capture_add_kernel(struct fake_capture *cap, unsigned int duration_us);
CUresult fake_capture_add_alloc(struct fake_capture *cap, size_t size, CUdeviceptr *dptr);
void fake_capture_stream_gone(struct fake_stream *s);

/* fake_module.c (lock held): enqueues a launch of `f`, computing in stream
 * order what a module function computes; applies an add_u32 kernel's work. */
CUresult fake_enqueue_launch(struct fake_stream *s, CUfunction f, void **params,
                             unsigned int duration_us);
void fake_run_add(const struct fake_work *w);

/* Duration of a simulated kernel: *(unsigned int *)kernelParams[0] µs. */
unsigned int fake_kernel_duration(void **kernelParams);
/* Lock held. The context module function h was loaded in (as the real
 * driver, a function launches in its module's context only); NULL for a
 * handle that is no module's (the generic kernel). */
struct fake_ctx *fake_func_ctx(CUfunction h);

#endif
