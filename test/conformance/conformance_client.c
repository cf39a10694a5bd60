/* SPDX-License-Identifier: Apache-2.0 */
/* Loads NVIDIA's real libcudart (and optionally cuBLAS), or NCCL, and makes
 * the calls that start them: each asks the driver for its entry points
 * then. Run with libflexpu-cuda.so preloaded against the fake driver, which
 * cannot serve the runtime's private export tables, so the calls end with an
 * error (cudart 801, cuBLAS CUBLAS_STATUS_NOT_INITIALIZED, NCCL
 * ncclUnhandledCudaError): what matters here is what was asked for and
 * answered on the way, and that the process exits.
 *
 *   conformance_client LIBCUDART [LIBCUBLAS]
 *   conformance_client --nccl LIBNCCL [DECLARED_IN]
 *
 * NCCL carries its own static copy of the runtime, which asks for its
 * entry points when NCCL first needs CUDA; NCCL's own driver functions (the
 * cuMem* VMM, multicast, IPC and stream memory operations) it asks for
 * through that runtime's cudaGetDriverEntryPointByVersion, only once the
 * runtime has started, which it cannot on the fake. Those requests are
 * therefore made here as NCCL makes them: for each PFN_<symbol>_v<version>
 * that NCCL declares (the names are in the debug information of the cu12
 * build, DECLARED_IN, or LIBNCCL itself), cuGetProcAddress_v2(symbol,
 * version, flags 0) of libcuda.so.1, found with dlsym as the runtime finds
 * it.
 *
 * Prints one line per call: "NAME STATUS". Exits 0 when every library
 * loaded and every function was found. */
#include <dlfcn.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static void *sym(void *lib, const char *name, int *missing)
{
    void *p = dlsym(lib, name);
    if (!p) {
        printf("missing %s\n", name);
        *missing = 1;
    }
    return p;
}

/* The (symbol, version) pairs declared as PFN_<symbol>_v<digits>, each
 * asked for once through `gpa`. Returns how many, or -1 when the file cannot
 * be read. */
typedef int (*gpa_fn)(const char *, void **, int, unsigned long long, int *);

static int name_char(char c)
{
    return c == '_' || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static int replay_declared(const char *path, gpa_fn gpa)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || st.st_size == 0) {
        if (fd >= 0)
            close(fd);
        return fd < 0 ? -1 : 0;
    }
    size_t size = (size_t)st.st_size;
    const char *data = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (data == MAP_FAILED)
        return -1;
    static const char prefix[] = "PFN_cu";
    static char seen[256][100];
    int asked = 0;
    const char *end = data + size, *p = data;
    while ((p = memmem(p, (size_t)(end - p), prefix, sizeof prefix - 1)) != NULL) {
        const char *start = p, *q = p + sizeof prefix - 1;
        p = q;
        /* A whole string: a NUL before it and after its name. */
        if (start > data && start[-1] != '\0')
            continue;
        while (q < end && name_char(*q) && q - start < 100)
            q++;
        if (q == end || *q != '\0' || q - start >= 100)
            continue;
        char word[100];
        snprintf(word, sizeof word, "%.*s", (int)(q - start), start);
        char *v = strrchr(word, '_');
        if (!v || v[1] != 'v' || !v[2] || strspn(v + 2, "0123456789") != strlen(v + 2))
            continue;
        *v = '\0';
        const char *symbol = word + 4;
        int version = atoi(v + 2), dup = 0;
        char key[100];
        snprintf(key, sizeof key, "%.80s %d", symbol, version);
        for (int i = 0; i < asked; i++)
            dup |= !strcmp(seen[i], key);
        if (dup)
            continue;
        if (asked == (int)(sizeof seen / sizeof seen[0])) {
            printf("more than %d declared entry points\n", asked);
            munmap((void *)data, size);
            return -1;
        }
        snprintf(seen[asked++], sizeof seen[0], "%s", key);
        void *pfn = NULL;
        int status = -1;
        int r = gpa(symbol, &pfn, version, 0, &status);
        printf("cuGetProcAddress_v2 %s %d %d status %d\n", symbol, version, r, status);
    }
    munmap((void *)data, size);
    return asked;
}

static int nccl(const char *lib, const char *declared_in)
{
    void *h = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        printf("dlopen %s\n", dlerror());
        return 1;
    }
    int missing = 0, v = 0;
    int (*version)(int *) = sym(h, "ncclGetVersion", &missing);
    int (*unique_id)(void *) = sym(h, "ncclGetUniqueId", &missing);
    int (*init_all)(void **, int, const int *) = sym(h, "ncclCommInitAll", &missing);
    int (*destroy)(void *) = sym(h, "ncclCommDestroy", &missing);
    if (missing)
        return 1;
    int st = version(&v);
    printf("ncclGetVersion %d %d\n", st, v);
    /* ncclUniqueId is 128 bytes; the bootstrap needs no GPU. */
    _Alignas(16) char id[128];
    printf("ncclGetUniqueId %d\n", unique_id(id));
    void *comm = NULL;
    int dev = 0;
    st = init_all(&comm, 1, &dev);
    printf("ncclCommInitAll %d\n", st);
    if (st == 0)
        printf("ncclCommDestroy %d\n", destroy(comm));
    /* As the runtime finds the driver: dlopen, then dlsym (the library's). */
    void *cuda = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    gpa_fn gpa = cuda ? (gpa_fn)(uintptr_t)dlsym(cuda, "cuGetProcAddress_v2") : NULL;
    if (!gpa) {
        printf("missing cuGetProcAddress_v2\n");
        return 1;
    }
    int n = replay_declared(declared_in ? declared_in : lib, gpa);
    printf("declared %d\n", n);
    return n < 0;
}

int main(int argc, char **argv)
{
    if (argc > 2 && !strcmp(argv[1], "--nccl"))
        return nccl(argv[2], argc > 3 ? argv[3] : NULL);
    if (argc < 2) {
        fprintf(stderr, "usage: conformance_client LIBCUDART [LIBCUBLAS] | --nccl LIBNCCL [DECLARED_IN]\n");
        return 2;
    }
    void *rt = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (!rt) {
        printf("dlopen %s\n", dlerror());
        return 1;
    }
    int missing = 0, v = 0, n = 0;
    int (*driver_version)(int *) = sym(rt, "cudaDriverGetVersion", &missing);
    int (*count)(int *) = sym(rt, "cudaGetDeviceCount", &missing);
    int (*cfree)(void *) = sym(rt, "cudaFree", &missing);
    if (missing)
        return 1;
    printf("cudaDriverGetVersion %d\n", driver_version(&v));
    printf("cudaGetDeviceCount %d\n", count(&n));
    printf("cudaFree %d\n", cfree(NULL));
    if (argc > 2) {
        /* cuBLAS carries its own copy of the runtime, which asks again. */
        void *blas = dlopen(argv[2], RTLD_NOW | RTLD_LOCAL);
        if (!blas) {
            printf("dlopen %s\n", dlerror());
            return 1;
        }
        int (*create)(void **) = sym(blas, "cublasCreate_v2", &missing);
        int (*destroy)(void *) = sym(blas, "cublasDestroy_v2", &missing);
        if (missing)
            return 1;
        void *h = NULL;
        int st = create(&h);
        printf("cublasCreate_v2 %d\n", st);
        if (st == 0)
            printf("cublasDestroy_v2 %d\n", destroy(h));
    }
    return 0;
}
