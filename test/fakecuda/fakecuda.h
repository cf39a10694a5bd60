/* SPDX-License-Identifier: Apache-2.0 */
/* Test-only entry points of the fake libcuda.so.1 built from test/fakecuda.
 * They are exported next to the cu* functions; tests reach them with
 * dlsym() on the library they loaded, so a test and the library under test
 * see the same process-wide state. */
#ifndef FAKECUDA_H
#define FAKECUDA_H

#include "runtime/cuda_abi.h"

/* Simulated kernel time, in microseconds, that this process has completed on
 * `device` (measured with CLOCK_MONOTONIC while the kernel held the device).
 * With clocks modelled (fake_clock.h) it is the work done: that time scaled
 * to the loaded clock, so a kernel run faster at the max clock counts its
 * full duration. Work still queued or running is not counted. 0 for an
 * unknown device. */
unsigned long long fakecuda_busy_us(int device);

/* Creates a graph exec, as if instantiated from a captured graph, whose launch
 * runs one kernel of `duration_us` and needs `graph_mem_bytes` of graph
 * memory. That memory is taken from the launching device's graph pool at the
 * first launch (CUDA_ERROR_OUT_OF_MEMORY when it does not fit), is reported
 * by cuDeviceGetGraphMemAttribute, stops being used at cuGraphExecDestroy and
 * is given back to the device at the next cuDeviceGraphMemTrim. Destroy the
 * exec with cuGraphExecDestroy. */
CUresult fakecuda_graph_exec_create(CUgraphExec *out, unsigned duration_us, size_t graph_mem_bytes);

/* Bytes of `device` memory this process holds: allocations of every kind,
 * the per-process context overhead, memory-pool and graph-pool reserves.
 * 0 for an unknown device. */
unsigned long long fakecuda_used_bytes(int device);

typedef unsigned long long (*fakecuda_busy_us_fn)(int device);
typedef CUresult (*fakecuda_graph_exec_create_fn)(CUgraphExec *out, unsigned duration_us,
                                                  size_t graph_mem_bytes);
typedef unsigned long long (*fakecuda_used_bytes_fn)(int device);

#endif
