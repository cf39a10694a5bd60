/* SPDX-License-Identifier: Apache-2.0 */
/* Loads NVIDIA's real libcudart (and optionally cuBLAS) and makes the calls
 * that start them: each asks the driver for its entry points then. Run with
 * libflexpu-cuda.so preloaded against the fake driver, which cannot serve
 * the runtime's private export tables, so the calls end with an error
 * (cudart 801, cuBLAS CUBLAS_STATUS_NOT_INITIALIZED): what matters here is
 * what was asked for and answered on the way, and that the process exits.
 *
 *   conformance_client LIBCUDART [LIBCUBLAS]
 *
 * Prints one line per call: "NAME STATUS". Exits 0 when every library
 * loaded and every function was found. */
#include <dlfcn.h>
#include <stdio.h>

static void *sym(void *lib, const char *name, int *missing)
{
    void *p = dlsym(lib, name);
    if (!p) {
        printf("missing %s\n", name);
        *missing = 1;
    }
    return p;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: conformance_client LIBCUDART [LIBCUBLAS]\n");
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
