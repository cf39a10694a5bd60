/* SPDX-License-Identifier: Apache-2.0 */
/* A CUDA program that shuts down the way JAX does: while threads of the
 * framework are still inside driver calls, with atexit handlers and static
 * destructors that call the driver after the runtime's own exit handlers
 * ran, or on a signal. shutdown_test runs it under the library and checks
 * that the process is gone soon after.
 *
 *   shutdown_client ACTORS END
 *
 * ACTORS, comma-separated:
 *   loop    a thread launching 2 ms kernels in a loop (its own context)
 *   long    a thread launching 50 ms kernels, so it sits in the bound on
 *           work in flight (its own context)
 *   sync    a thread in cuCtxSynchronize on 100 ms kernels (its own context)
 *   atexit  an atexit handler registered before any CUDA call, so it runs
 *           after the runtime's: launches, synchronizes, frees
 *   dtor    libshutdown_dtor.so loaded after the runtime: its destructor
 *           frees, launches, synchronizes, destroys a context and releases
 *           the primary context
 *   join    an atexit handler registered last (it runs first) that stops
 *           the threads and joins them, as a thread pool's destructor does
 *   oom     an allocation over the quota, refused, just before the end
 * END:
 *   exit    after "ready", exit(0) when a line arrives on stdin
 *   return  the same, returning from main
 *   wait    sleep until a signal ends the process
 *   flag    launch (and now and then synchronize) in a loop from main;
 *           SIGTERM and SIGINT set a flag that main checks between calls,
 *           then exit(3) (Python's way)
 *
 * Prints "ready" once everything is set up and the threads are running. The
 * driver is reached as libcudart does: dlopen and cuGetProcAddress_v2. */
#include <dlfcn.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "shutdown_calls.h"

#define MiB (1ull << 20)
#define MAX_THREADS 3

typedef CUresult (*getproc_fn)(const char *, void **, int, cuuint64_t,
                               CUdriverProcAddressQueryResult *);
static getproc_fn getproc;
static struct shutdown_calls calls;
static CUdeviceptr atexit_buffer;
static pthread_t threads[MAX_THREADS];
static int n_threads;
static int stopping;
static volatile sig_atomic_t got_signal;

static void *entry(const char *name)
{
    void *p = NULL;
    CUdriverProcAddressQueryResult st = 0;
    if (getproc(name, &p, 13000, 0, &st) != CUDA_SUCCESS || !p) {
        fprintf(stderr, "shutdown_client: no entry point %s\n", name);
        exit(2);
    }
    return p;
}

static void check(CUresult r, const char *what)
{
    if (r != CUDA_SUCCESS) {
        fprintf(stderr, "shutdown_client: %s: error %d\n", what, r);
        exit(2);
    }
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static CUresult launch_us(unsigned us, CUstream stream)
{
    void *params[] = {&us};
    return calls.launch((CUfunction)(uintptr_t)1, 1, 1, 1, 1, 1, 1, 0, stream, params, NULL);
}

/* A context of the calling thread's own, current to it. */
static CUcontext own_context(void)
{
    CUresult (*create)(CUcontext *, void *, unsigned, CUdevice) =
        (CUresult(*)(CUcontext *, void *, unsigned, CUdevice))entry("cuCtxCreate");
    CUcontext ctx;
    check(create(&ctx, NULL, 0, 0), "cuCtxCreate");
    return ctx;
}

static int stopped(void)
{
    return __atomic_load_n(&stopping, __ATOMIC_ACQUIRE);
}

static void *launch_loop(void *arg)
{
    unsigned us = (unsigned)(uintptr_t)arg;
    own_context();
    while (!stopped() && launch_us(us, NULL) == CUDA_SUCCESS)
        ;
    return NULL;
}

static void *sync_loop(void *arg)
{
    (void)arg;
    own_context();
    CUresult (*sync)(void) = (CUresult(*)(void))entry("cuCtxSynchronize");
    while (!stopped()) {
        for (int i = 0; i < 3; i++)
            launch_us(100 * 1000, NULL);
        sync();
    }
    return NULL;
}

static void start(void *(*fn)(void *), void *arg)
{
    if (pthread_create(&threads[n_threads], NULL, fn, arg) != 0) {
        fprintf(stderr, "shutdown_client: pthread_create failed\n");
        exit(2);
    }
    n_threads++;
}

/* Registered before anything else: runs after the runtime's handlers. */
static void late_teardown(void)
{
    if (!calls.launch)
        return;
    CUresult l = launch_us(1000, calls.stream);
    CUresult s = calls.stream_sync(calls.stream);
    CUresult f = calls.mem_free(atexit_buffer);
    fprintf(stderr, "shutdown_client: atexit launch=%d sync=%d free=%d\n", l, s, f);
}

/* Registered last: runs first, like the destructor of a thread pool. */
static void join_threads(void)
{
    __atomic_store_n(&stopping, 1, __ATOMIC_RELEASE);
    for (int i = 0; i < n_threads; i++)
        pthread_join(threads[i], NULL);
    fprintf(stderr, "shutdown_client: joined %d threads\n", n_threads);
}

static void on_signal(int sig)
{
    got_signal = sig;
}

static int has(const char *list, const char *actor)
{
    size_t n = strlen(actor);
    for (const char *p = list; (p = strstr(p, actor)) != NULL; p += n)
        if ((p == list || p[-1] == ',') && (p[n] == ',' || p[n] == '\0'))
            return 1;
    return 0;
}

static void setup_driver(const char *actors)
{
    void *libcuda = dlopen("libcuda.so.1", RTLD_NOW);
    getproc = libcuda ? (getproc_fn)dlsym(libcuda, "cuGetProcAddress_v2") : NULL;
    if (!getproc) {
        fprintf(stderr, "shutdown_client: no driver: %s\n", dlerror());
        exit(2);
    }
    check(((CUresult(*)(unsigned))entry("cuInit"))(0), "cuInit");
    CUcontext primary;
    check(((CUresult(*)(CUcontext *, CUdevice))entry("cuDevicePrimaryCtxRetain"))(&primary, 0),
          "cuDevicePrimaryCtxRetain");
    CUresult (*set_current)(CUcontext) = (CUresult(*)(CUcontext))entry("cuCtxSetCurrent");
    check(set_current(primary), "cuCtxSetCurrent");
    calls.launch = (sc_launch_fn)entry("cuLaunchKernel");
    calls.stream_sync = (CUresult(*)(CUstream))entry("cuStreamSynchronize");
    calls.mem_free = (CUresult(*)(CUdeviceptr))entry("cuMemFree");
    calls.ctx_destroy = (CUresult(*)(CUcontext))entry("cuCtxDestroy");
    calls.primary_release = (CUresult(*)(CUdevice))entry("cuDevicePrimaryCtxRelease");
    check(((CUresult(*)(CUstream *, unsigned))entry("cuStreamCreate"))(&calls.stream, 1),
          "cuStreamCreate");
    CUresult (*alloc)(CUdeviceptr *, size_t) =
        (CUresult(*)(CUdeviceptr *, size_t))entry("cuMemAlloc");
    check(alloc(&atexit_buffer, 64 * MiB), "cuMemAlloc");
    check(alloc(&calls.buffer, 64 * MiB), "cuMemAlloc");
    if (has(actors, "dtor")) {
        calls.own = own_context();
        check(set_current(primary), "cuCtxSetCurrent");
        void *lib = dlopen(FX_SHUTDOWN_DTOR_LIB, RTLD_NOW);
        shutdown_arm_fn arm = lib ? (shutdown_arm_fn)dlsym(lib, "shutdown_dtor_arm") : NULL;
        if (!arm) {
            fprintf(stderr, "shutdown_client: %s\n", dlerror());
            exit(2);
        }
        arm(&calls);
    }
}

static void refuse_one_allocation(void)
{
    CUresult (*alloc)(CUdeviceptr *, size_t) =
        (CUresult(*)(CUdeviceptr *, size_t))entry("cuMemAlloc");
    CUdeviceptr p;
    CUresult r = alloc(&p, 4096 * MiB);
    if (r != CUDA_ERROR_OUT_OF_MEMORY) {
        fprintf(stderr, "shutdown_client: an allocation over the quota got %d\n", r);
        exit(2);
    }
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: shutdown_client ACTORS exit|return|wait|flag\n");
        return 2;
    }
    const char *actors = argv[1], *end = argv[2];
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (has(actors, "atexit"))
        atexit(late_teardown);
    if (!strcmp(end, "flag")) {
        struct sigaction sa;
        memset(&sa, 0, sizeof(sa));
        sa.sa_handler = on_signal; /* no SA_RESTART, as CPython installs it */
        sigaction(SIGTERM, &sa, NULL);
        sigaction(SIGINT, &sa, NULL);
    }
    setup_driver(actors);
    if (has(actors, "loop"))
        start(launch_loop, (void *)(uintptr_t)2000);
    if (has(actors, "long"))
        start(launch_loop, (void *)(uintptr_t)50000);
    if (has(actors, "sync"))
        start(sync_loop, NULL);
    if (has(actors, "join"))
        atexit(join_threads);
    if (has(actors, "oom"))
        refuse_one_allocation();
    sleep_ms(300); /* the threads are inside their calls by now */
    printf("ready\n");
    if (!strcmp(end, "wait")) {
        for (;;)
            pause();
    }
    if (!strcmp(end, "flag")) {
        /* A few launches, then their results (so the teardown does not
         * wait for a long backlog on the fake GPU, a driver wait). */
        for (unsigned n = 1; !got_signal; n++) {
            launch_us(1000, calls.stream);
            if (n % 4 == 0)
                calls.stream_sync(calls.stream);
        }
        exit(3);
    }
    char line[64];
    if (!fgets(line, sizeof(line), stdin))
        return 4;
    if (!strcmp(end, "return"))
        return 0;
    exit(0);
}
