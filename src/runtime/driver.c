/* SPDX-License-Identifier: Apache-2.0 */
#include "runtime/driver.h"

#include <dlfcn.h>
#include <link.h>
#include <pthread.h>
#include <stdio.h>
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

/* The sanitizer runtime of a sanitized program calls dlsym(RTLD_NEXT) while
 * it initialises, before its shadow memory exists: what that path runs must
 * carry no instrumentation (it only matters in the sanitizer build). */
#define FX_UNINSTRUMENTED __attribute__((no_sanitize("address", "undefined")))

typedef void *(*dlsym_fn)(void *, const char *);
static dlsym_fn libc_dlsym;

/* libc's dlsym, found with dlvsym. No once-lock: a thread waiting on one
 * while another holds the loader's lock (inside dlopen, in a constructor
 * that calls dlsym) would deadlock. The lookup is idempotent, so racing
 * threads may both do it. */
FX_UNINSTRUMENTED void *fx_real_dlsym(void *handle, const char *name)
{
    dlsym_fn f = __atomic_load_n(&libc_dlsym, __ATOMIC_ACQUIRE);
    if (!f) {
        /* glibc 2.34 moved dlsym into libc under a new version; older ones
         * have only the first. */
        f = (dlsym_fn)dlvsym(RTLD_NEXT, "dlsym", "GLIBC_2.34");
        if (!f)
            f = (dlsym_fn)dlvsym(RTLD_NEXT, "dlsym", "GLIBC_2.2.5");
        __atomic_store_n(&libc_dlsym, f, __ATOMIC_RELEASE);
    }
    return f ? f(handle, name) : NULL;
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

/* Loading without pthread_once: a thread holding a once-lock while it waits
 * for the dynamic loader's lock would deadlock against a thread that holds
 * the loader's lock (inside dlopen, running a constructor) and calls dlsym.
 * Here no lock of this library is held across dlopen; racing threads may
 * both look the symbols up, and the first to finish publishes them. */
static int cuda_state, nvml_state; /* 0 not yet, 1 loaded, -1 unavailable */
static void *cuda_lib, *nvml_lib;
static pthread_mutex_t publish_lock = PTHREAD_MUTEX_INITIALIZER;
/* Set while this thread loads a library: its constructors may call dlsym,
 * which must then pass through instead of loading again. */
static _Thread_local int loading;

static int load(const char *soname, int nvml, int *state, void **lib_out)
{
    int s = __atomic_load_n(state, __ATOMIC_ACQUIRE);
    if (s)
        return s > 0 ? 0 : -1;
    if (loading)
        return -1;
    loading = 1;
    void *lib = dlopen(soname, RTLD_LAZY | RTLD_GLOBAL);
    if (!lib)
        FX_DEBUG(COMP, "library to interpose is not there", "lib=%s error=\"%s\"", soname,
                 dlerror());
    pthread_mutex_lock(&publish_lock);
    if (!__atomic_load_n(state, __ATOMIC_ACQUIRE)) {
        fill(lib, nvml);
        *lib_out = lib;
        __atomic_store_n(state, lib ? 1 : -1, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&publish_lock);
    loading = 0;
    return __atomic_load_n(state, __ATOMIC_ACQUIRE) > 0 ? 0 : -1;
}

int fx_driver_load(void)
{
    return load("libcuda.so.1", 0, &cuda_state, &cuda_lib);
}

int fx_nvml_load(void)
{
    return load("libnvidia-ml.so.1", 1, &nvml_state, &nvml_lib);
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

/* Base names of entry points that take device memory or GPU time: a variant
 * of one of them that the library has no hook for (an ABI it does not know,
 * such as the 32-bit cuMemAlloc) is refused, so no path escapes the quota or
 * the arbiter. */
static const char *const must_hook[] = {
    "cuMemAlloc",    "cuMemAllocPitch",        "cuMemAllocManaged",
    "cuArrayCreate", "cuArray3DCreate",        "cuMipmappedArrayCreate",
    "cuMemCreate",   "cuMemAllocAsync",        "cuMemAllocFromPoolAsync",
    "cuCtxCreate",   "cuDevicePrimaryCtxRetain", "cuGetProcAddress",
    "cuInit",        "cuLaunchKernel",         "cuLaunchKernelEx",
    "cuLaunchCooperativeKernel", "cuGraphLaunch", "cuMemMap",
    "cuMemUnmap",    "cuMemRelease",           "cuMemFree",
    "cuMemRetainAllocationHandle", "cuCtxDestroy", "cuDevicePrimaryCtxRelease",
    "cuDevicePrimaryCtxReset", "cuLaunch", "cuLaunchGrid", "cuLaunchGridAsync",
    "cuLaunchCooperativeKernelMultiDevice",
};

int fx_must_hook(const char *symbol)
{
    /* The base name: without _ptsz/_ptds and _vN suffixes. */
    char base[96];
    snprintf(base, sizeof(base), "%s", symbol);
    for (int changed = 1; changed;) {
        changed = 0;
        size_t n = strlen(base);
        if (n > 5 && (!strcmp(base + n - 5, "_ptsz") || !strcmp(base + n - 5, "_ptds"))) {
            base[n - 5] = '\0';
            changed = 1;
        }
        char *v = strrchr(base, '_');
        if (v && v[1] == 'v' && v[2] >= '0' && v[2] <= '9' && strspn(v + 2, "0123456789") == strlen(v + 2)) {
            *v = '\0';
            changed = 1;
        }
    }
    for (size_t i = 0; i < sizeof(must_hook) / sizeof(must_hook[0]); i++)
        if (strcmp(base, must_hook[i]) == 0)
            return 1;
    return 0;
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
    /* The driver's export of a variant with no hook, of a function that
     * takes memory or GPU time: refused. */
    if (!nvml && cuda_lib && fx_must_hook(name) && fx_real_dlsym(cuda_lib, name) == real) {
        FX_ERROR(COMP, "refused a driver export that would escape the quota", "symbol=%s", name);
        return FX_REFUSED;
    }
    return NULL;
}

/* RTLD_NEXT means "after the caller", and libc finds the caller from the
 * return address, which here would be this library. So the search is done
 * for the caller: the objects after it in the load order, each asked in
 * turn through a handle of its own (each object's search takes its own
 * dependencies after it, which is where RTLD_NEXT would look too, give or
 * take the order among later objects). */
FX_UNINSTRUMENTED static void *next_after(const void *caller, const char *name)
{
    Dl_info info;
    struct link_map *lm = NULL;
    /* From the program itself (lm first in the list), "next" is every
     * library, which from here is the same search minus this library's
     * own exports (hooked below anyway). It is also the only case that may
     * come before the program is fully set up (a sanitizer runtime linked
     * into the program looks its functions up this way while it
     * initialises, when dlopen is not yet usable). */
    if (!dladdr1(caller, &info, (void **)&lm, RTLD_DL_LINKMAP) || !lm || !lm->l_prev)
        return fx_real_dlsym(RTLD_NEXT, name);
    /* A caller loaded before this library (a sanitizer runtime preloaded
     * first, as it must be): "next" is this library and what follows, the
     * same search as from here but for this library's own exports, which
     * are hooked below. No dlopen then: such callers may run before the
     * program is set up (libasan looks its functions up while it
     * initialises, when its dlopen interceptor cannot work yet). */
    struct link_map *self = NULL;
    Dl_info self_info;
    if (!dladdr1((void *)next_after, &self_info, (void **)&self, RTLD_DL_LINKMAP) || !self)
        return fx_real_dlsym(RTLD_NEXT, name);
    for (struct link_map *l = lm->l_next; l; l = l->l_next)
        if (l == self)
            return fx_real_dlsym(RTLD_NEXT, name);
    for (struct link_map *l = lm->l_next; l; l = l->l_next) {
        if (!l->l_name || !l->l_name[0])
            continue;
        void *h = dlopen(l->l_name, RTLD_LAZY | RTLD_NOLOAD);
        if (!h)
            continue;
        void *p = fx_real_dlsym(h, name);
        dlclose(h);
        if (p)
            return p;
    }
    return NULL;
}

/* The application's dlsym. Everything is looked up by libc; only a driver or
 * NVML export that this library replaces is swapped for its hook. */
FX_EXPORT void *dlsym(void *handle, const char *name);
FX_UNINSTRUMENTED __attribute__((noinline)) void *dlsym(void *handle, const char *name)
{
    void *p = handle == RTLD_NEXT ? next_after(__builtin_return_address(0), name)
                                  : fx_real_dlsym(handle, name);
    void *h = fx_hook_for_name(name, p);
    if (h == FX_REFUSED)
        return NULL;
    return h ? h : p;
}
