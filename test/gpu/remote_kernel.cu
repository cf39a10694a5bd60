// SPDX-License-Identifier: Apache-2.0
// The kernel remote_bench launches, compiled on the GPU machine by
// remote_check.sh with `nvcc -fatbin` (a fat binary, no host code): the same
// signature as the fake driver's add_u32 (test/fakecuda/fake_module.c), so
// one program drives both. `us` is the fake's duration; here it is unused.
extern "C" __global__ void add_u32(unsigned us, unsigned *p, unsigned n, unsigned v)
{
    (void)us;
    unsigned i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        p[i] += v;
}
