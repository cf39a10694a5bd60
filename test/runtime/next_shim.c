/* SPDX-License-Identifier: Apache-2.0 */
/* Another interposer preloaded after libflexpu-cuda.so, as containers often
 * have: it wraps puts() and finds the real one with dlsym(RTLD_NEXT). If the
 * library's dlsym resolved RTLD_NEXT relative to itself, this would find the
 * shim again and recurse. */
#include <dlfcn.h>
#include <stdio.h>

int puts(const char *s)
{
    int (*next)(const char *) = (int (*)(const char *))dlsym(RTLD_NEXT, "puts");
    if (!next || next == puts)
        return -1;
    fputs("shim:", stdout);
    return next(s);
}
