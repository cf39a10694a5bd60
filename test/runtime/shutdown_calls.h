/* SPDX-License-Identifier: Apache-2.0 */
/* What shutdown_client hands to its exit-time code (an atexit handler of
 * its own and the destructor of libshutdown_dtor.so): the driver entry
 * points as the application got them (the library's hooks), and the handles
 * they tear down. */
#ifndef SHUTDOWN_CALLS_H
#define SHUTDOWN_CALLS_H

#include "runtime/cuda_abi.h"

typedef CUresult (*sc_launch_fn)(CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned,
                                 unsigned, unsigned, CUstream, void **, void **);

struct shutdown_calls {
    sc_launch_fn launch;
    CUresult (*stream_sync)(CUstream);
    CUresult (*mem_free)(CUdeviceptr);
    CUresult (*ctx_destroy)(CUcontext);
    CUresult (*primary_release)(CUdevice);
    CUstream stream;     /* on the primary context of device 0 */
    CUdeviceptr buffer;  /* freed by the destructor */
    CUcontext own;       /* a context of its own, destroyed by the destructor */
};

/* Exported by libshutdown_dtor.so: what its destructor will call. */
typedef void (*shutdown_arm_fn)(const struct shutdown_calls *c);

#endif
