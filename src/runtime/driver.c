/* SPDX-License-Identifier: Apache-2.0 */
#include "runtime/driver.h"

#include <dlfcn.h>
#include <pthread.h>
#include <string.h>

#include "flexpu/log.h"

#define COMP "flexpu-cuda"

struct fx_real fx_real;

struct entry {
    const char *name;
    void *hook;  /* NULL for functions only called */
    void **real; /* into fx_real */
    int nvml;
};

#define FX_HOOK_ENTRY(name, params, args) {#name, (void *)name, (void **)&fx_real.name, 0},
#define FX_USED_ENTRY(name, params, args) {#name, NULL, (void **)&fx_real.name, 0},
#define FX_NVML_HOOK_ENTRY(name, params, args) {#name, (void *)name, (void **)&fx_real.name, 1},
#define FX_NVML_USED_ENTRY(name, params, args) {#name, NULL, (void **)&fx_real.name, 1},
static const struct entry entries[] = {
    FX_CUDA_HOOKS(FX_HOOK_ENTRY) FX_CUDA_USED(FX_USED_ENTRY) FX_NVML_HOOKS(FX_NVML_HOOK_ENTRY)
        FX_NVML_USED(FX_NVML_USED_ENTRY)};
#define N_ENTRIES (sizeof(entries) / sizeof(entries[0]))

typedef void *(*dlsym_fn)(void *, const char *);
static dlsym_fn libc_dlsym;
static pthread_once_t dlsym_once = PTHREAD_ONCE_INIT;

static void find_libc_dlsym(void)
{
    /* glibc 2.34 moved dlsym into libc under a new version; older ones have
     * only the first. */
    libc_dlsym = (dlsym_fn)dlvsym(RTLD_NEXT, "dlsym", "GLIBC_2.34");
    if (!libc_dlsym)
        libc_dlsym = (dlsym_fn)dlvsym(RTLD_NEXT, "dlsym", "GLIBC_2.2.5");
}

void *fx_real_dlsym(void *handle, const char *name)
{
    pthread_once(&dlsym_once, find_libc_dlsym);
    return libc_dlsym ? libc_dlsym(handle, name) : NULL;
}

/* Stand-ins for hooked exports the installed driver lacks (an older driver
 * than the application was linked for): the hook then reports the function
 * as unsupported instead of calling through NULL. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-parameter"
#define FX_MISSING(name, params, args)                                                             \
    static CUresult missing_##name params { return CUDA_ERROR_NOT_SUPPORTED; }
#define FX_NVML_MISSING(name, params, args)                                                        \
    static nvmlReturn_t missing_##name params { return NVML_ERROR_NOT_SUPPORTED; }
FX_CUDA_HOOKS(FX_MISSING)
FX_NVML_HOOKS(FX_NVML_MISSING)
#pragma GCC diagnostic pop

static void fill(void *lib, int nvml)
{
    /* lib NULL (no driver): only the stand-ins. Never look up with a NULL
     * handle: that is RTLD_DEFAULT, which finds this library's own hooks. */
    for (size_t i = 0; lib && i < N_ENTRIES; i++)
        if (entries[i].nvml == nvml)
            *entries[i].real = fx_real_dlsym(lib, entries[i].name);
#define FX_FILL_MISSING(name, params, args)                                                        \
    if (!fx_real.name)                                                                             \
        fx_real.name = missing_##name;
    if (!nvml) {
        FX_CUDA_HOOKS(FX_FILL_MISSING)
    } else {
        FX_NVML_HOOKS(FX_FILL_MISSING)
    }
#undef FX_FILL_MISSING
}

static pthread_once_t cuda_once = PTHREAD_ONCE_INIT, nvml_once = PTHREAD_ONCE_INIT;
static void *cuda_lib, *nvml_lib;
/* Set while this thread loads a library: its constructors may call dlsym,
 * which must then pass through instead of waiting on the load in progress. */
static _Thread_local int loading;

static void load_cuda(void)
{
    loading = 1;
    cuda_lib = dlopen("libcuda.so.1", RTLD_LAZY | RTLD_GLOBAL);
    if (!cuda_lib) {
        FX_DEBUG(COMP, "no CUDA driver to interpose", "error=\"%s\"", dlerror());
        fill(NULL, 0);
        loading = 0;
        return;
    }
    fill(cuda_lib, 0);
    loading = 0;
}

static void load_nvml(void)
{
    loading = 1;
    nvml_lib = dlopen("libnvidia-ml.so.1", RTLD_LAZY | RTLD_GLOBAL);
    fill(nvml_lib, 1);
    loading = 0;
}

int fx_driver_load(void)
{
    pthread_once(&cuda_once, load_cuda);
    return cuda_lib ? 0 : -1;
}

int fx_nvml_load(void)
{
    pthread_once(&nvml_once, load_nvml);
    return nvml_lib ? 0 : -1;
}

void *fx_hook_for_real(const void *real)
{
    if (!real)
        return NULL;
    for (size_t i = 0; i < N_ENTRIES; i++)
        if (entries[i].hook && (*entries[i].real == real || entries[i].hook == real))
            return entries[i].hook;
    return NULL;
}

void *fx_hook_for_name(const char *name, const void *real)
{
    if (!name || !real)
        return NULL;
    int nvml = strncmp(name, "nvml", 4) == 0;
    /* Driver names are "cu" and a capital (curl_* and the like are not). */
    if ((!nvml && (strncmp(name, "cu", 2) != 0 || name[2] < 'A' || name[2] > 'Z')) || loading)
        return NULL;
    if (nvml ? fx_nvml_load() : fx_driver_load())
        return NULL;
    for (size_t i = 0; i < N_ENTRIES; i++) {
        if (!entries[i].hook || strcmp(entries[i].name, name) != 0)
            continue;
        /* Only the driver's own function: a library of the application may
         * export a function of the same name. */
        if (*entries[i].real == real || entries[i].hook == real)
            return entries[i].hook;
        return NULL;
    }
    return NULL;
}

/* The application's dlsym. Everything is looked up by libc; only a driver or
 * NVML export that this library replaces is swapped for its hook. RTLD_NEXT
 * is resolved relative to this library, which is first in the search order
 * when preloaded, so it finds what the caller would have found. */
FX_EXPORT void *dlsym(void *handle, const char *name);
void *dlsym(void *handle, const char *name)
{
    void *p = fx_real_dlsym(handle, name);
    void *h = fx_hook_for_name(name, p);
    return h ? h : p;
}
