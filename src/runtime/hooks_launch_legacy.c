/* SPDX-License-Identifier: Apache-2.0 */
/* The pre-4.0 launch API (cuLaunch, cuLaunchGrid, cuLaunchGridAsync, with
 * the block shape and parameters set beforehand by cuFuncSetBlockShape and
 * cuParamSet*) and the multi-device cooperative launch. They are still
 * exported and launch work, so they wait for the tenant's slice like every
 * other launch (hooks_launch.c). */
#include "runtime/rt.h"

static CUresult arbitrated(CUstream stream, CUresult (*call)(const void *), const void *args)
{
    struct fx_launch l;
    CUresult rc = fx_launch_begin(&l, stream, 0);
    if (rc != CUDA_SUCCESS)
        return rc;
    CUresult r = call(args);
    fx_launch_end(&l, r);
    return r;
}

struct grid {
    CUfunction f;
    int w, h;
    CUstream stream;
    CUDA_LAUNCH_PARAMS *list;
    unsigned int n, flags;
};

static CUresult call_launch(const void *a)
{
    return fx_real.cuLaunch(((const struct grid *)a)->f);
}

static CUresult call_grid(const void *a)
{
    const struct grid *g = a;
    return fx_real.cuLaunchGrid(g->f, g->w, g->h);
}

static CUresult call_grid_async(const void *a)
{
    const struct grid *g = a;
    return fx_real.cuLaunchGridAsync(g->f, g->w, g->h, g->stream);
}

static CUresult call_multi(const void *a)
{
    const struct grid *g = a;
    return fx_real.cuLaunchCooperativeKernelMultiDevice(g->list, g->n, g->flags);
}

/* cuLaunch and cuLaunchGrid run on the legacy default stream. */
CUresult cuLaunch(CUfunction f)
{
    struct grid g = {.f = f};
    return arbitrated(NULL, call_launch, &g);
}

CUresult cuLaunchGrid(CUfunction f, int grid_width, int grid_height)
{
    struct grid g = {.f = f, .w = grid_width, .h = grid_height};
    return arbitrated(NULL, call_grid, &g);
}

CUresult cuLaunchGridAsync(CUfunction f, int grid_width, int grid_height, CUstream hStream)
{
    struct grid g = {.f = f, .w = grid_width, .h = grid_height, .stream = hStream};
    return arbitrated(hStream, call_grid_async, &g);
}

/* Arbitrated on the calling thread's current GPU and marked on the first
 * launch's stream: exact for one device; with several, the others' work is
 * launched in the same slice of this GPU (the API is deprecated since CUDA
 * 11.3 and used by no framework seen). */
CUresult cuLaunchCooperativeKernelMultiDevice(CUDA_LAUNCH_PARAMS *launchParamsList,
                                              unsigned int numDevices, unsigned int flags)
{
    struct grid g = {.list = launchParamsList, .n = numDevices, .flags = flags};
    CUstream s = launchParamsList && numDevices ? launchParamsList[0].hStream : NULL;
    return arbitrated(s, call_multi, &g);
}
