# SPDX-License-Identifier: Apache-2.0
"""One framework case under a flexpu memory slice; prints one JSON line.

    python3 cases.py CASE          (run.py sets LD_PRELOAD and the FLEXPU_* variables)

Cases: torch_eager, torch_compile, torch_graph, jax, cupy, torch_signal.
Each checks that the framework
  - sees the quota as its total memory (FW_QUOTA_BYTES, 4 GiB),
  - computes correct products (against a CPU reference in float64), through cuBLAS,
  - raises its own out-of-memory error past the quota, and can allocate again after
    freeing.
The JSON line has status "ok", "fail" or "skip" and a reason. A framework that
cannot be imported is a skip, with the import error as the reason; everything else
that goes wrong is a failure. torch_signal prints its line once it has been
refused memory and a second thread is launching kernels, then waits for run.py to
send SIGTERM or SIGINT.
"""
import json
import os
import sys
import threading
import time

QUOTA = int(os.environ.get("FW_QUOTA_BYTES", str(4 << 30)))
GiB, MiB = 1 << 30, 1 << 20
BLOCK = 256 * MiB
# What a process gets before the refusal: the quota less the context's 512 MiB and
# the framework's own buffers (cuBLAS workspace, cached blocks). Less is an error.
MIN_BEFORE_OOM = QUOTA - 5 * GiB // 4


class Skip(Exception):
    pass


def need(module):
    try:
        return __import__(module)
    except Exception as e:  # ImportError, or a broken install
        raise Skip(f"{module} not importable: {type(e).__name__}: {e}")


def rel_err(got, ref):
    """Frobenius-norm relative error; both float64 (torch tensors or numpy arrays)."""
    return float(((got - ref) ** 2).sum() ** 0.5 / ((ref ** 2).sum() ** 0.5))


def check_err(info, problems, what, err, tol):
    info.setdefault("rel_err", {})[what] = err
    if not err <= tol:  # also catches NaN
        problems.append(f"{what}: relative error {err:.3g} > {tol}")


def check_total(problems, what, total):
    if total != QUOTA:
        problems.append(f"{what} = {total}, expected the quota {QUOTA}")


def fill_until_refused(info, problems, alloc, oom_ok, least=MIN_BEFORE_OOM):
    """Allocate BLOCK-sized buffers until the allocator refuses; return the buffers.
    Refused before `least` bytes is an error too."""
    blocks, err = [], None
    try:
        while len(blocks) * BLOCK < 4 * QUOTA:
            blocks.append(alloc())
    except Exception as e:
        err = e
    got = len(blocks) * BLOCK
    info["allocated_before_oom_mib"] = got // MiB
    if err is None:
        problems.append(f"no out-of-memory error after {got // MiB} MiB")
        return blocks
    info["oom_error"] = f"{type(err).__name__}: {str(err).strip().splitlines()[0][:200]}"
    if not oom_ok(err):
        problems.append(f"wrong error past the quota: {info['oom_error']}")
    if got > QUOTA:
        problems.append(f"allocated {got // MiB} MiB, more than the quota")
    elif got < least:
        problems.append(f"refused after only {got // MiB} MiB (expected at least {least // MiB})")
    return blocks


# ---------------------------------------------------------------- PyTorch

def torch_start(info):
    torch = need("torch")
    info["torch"] = torch.__version__
    info["step"] = "cuda init"
    if not torch.cuda.is_available():
        raise RuntimeError("torch.cuda.is_available() is False (cuInit refused?)")
    torch.cuda.init()
    info["alloc_conf"] = os.environ.get("PYTORCH_CUDA_ALLOC_CONF", "")
    return torch


def torch_quota(torch, info, problems):
    info["step"] = "quota view"
    free, total = torch.cuda.mem_get_info()
    props = torch.cuda.get_device_properties(0).total_memory
    info.update(mem_get_info_total=total, mem_get_info_free=free, props_total=props)
    if os.environ.get("FX_CASE_BARE") == "1":
        return  # no library, no quota: a reference run
    check_total(problems, "torch.cuda.mem_get_info()[1]", total)
    check_total(problems, "get_device_properties().total_memory", props)


def torch_matmuls(torch, info, problems, n=1024):
    info["step"] = "cublas handle"
    handle = torch.cuda.current_blas_handle()  # cublasCreate: what failed before the fix
    info["cublas_handle"] = hex(handle)
    if not handle:
        problems.append("no cuBLAS handle")
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(n, n, generator=g), torch.randn(n, n, generator=g)
    bias = torch.randn(n, generator=g)
    for dtype, name, tol in ((torch.float32, "fp32", 5e-3), (torch.bfloat16, "bf16", 2e-2)):
        info["step"] = f"matmul {name}"
        ac, bc = a.to(dtype), b.to(dtype)
        got = (ac.cuda() @ bc.cuda()).cpu().double()
        check_err(info, problems, f"matmul_{name}", rel_err(got, ac.double() @ bc.double()), tol)
    info["step"] = "linear bf16 (cublasLt, bias epilogue)"
    ab, bb, cb = a.bfloat16(), b.bfloat16(), bias.bfloat16()
    got = torch.nn.functional.linear(ab.cuda(), bb.cuda(), cb.cuda()).cpu().double()
    ref = ab.double() @ bb.double().T + cb.double()
    check_err(info, problems, "linear_bf16", rel_err(got, ref), 2e-2)
    info["step"] = "bmm fp32 (strided batched)"
    x, y = a.view(4, n // 4, n)[:, :, : n // 4], b.view(4, n // 4, n)[:, :, : n // 4]
    got = torch.bmm(x.cuda(), y.cuda()).cpu().double()
    check_err(info, problems, "bmm_fp32", rel_err(got, torch.bmm(x.double(), y.double())), 5e-3)


def torch_oom(torch, info, problems):
    info["step"] = "fill until refused"
    oom = getattr(torch, "OutOfMemoryError", None) or torch.cuda.OutOfMemoryError
    return fill_until_refused(info, problems,
                              lambda: torch.empty(BLOCK, dtype=torch.uint8, device="cuda"),
                              lambda e: isinstance(e, oom))


def torch_recover(torch, info, problems, blocks):
    info["step"] = "allocate after freeing"
    blocks.clear()
    torch.cuda.empty_cache()
    x = torch.ones(GiB // 4, device="cuda")  # 1 GiB
    if float(x[-1]) != 1.0:
        problems.append("1 GiB tensor after freeing does not hold its value")
    del x
    info["free_after_release"] = torch.cuda.mem_get_info()[0]


def case_torch_eager(info, problems):
    torch = torch_start(info)
    torch_quota(torch, info, problems)
    torch_matmuls(torch, info, problems)
    blocks = torch_oom(torch, info, problems)
    torch_recover(torch, info, problems, blocks)
    torch_matmuls(torch, info, problems, n=512)  # still works after the refusal


def case_torch_compile(info, problems):
    torch = torch_start(info)
    triton = need("triton")
    info["triton"] = triton.__version__
    torch_quota(torch, info, problems)
    info["step"] = "torch.compile"
    f = torch.compile(lambda a, b: torch.relu(a @ b) * 0.5 + torch.sin(a))
    h = torch.compile(lambda a: torch.softmax(a * 2.0, dim=-1).sum(dim=0))
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(1024, 1024, generator=g), torch.randn(1024, 1024, generator=g)
    got = f(a.cuda(), b.cuda()).cpu().double()
    ad, bd = a.double(), b.double()
    check_err(info, problems, "compiled_mm_pointwise", rel_err(got, torch.relu(ad @ bd) * 0.5 + torch.sin(ad)), 5e-3)
    got = h(a.cuda()).cpu().double()
    check_err(info, problems, "compiled_softmax_sum", rel_err(got, torch.softmax(ad * 2.0, dim=-1).sum(dim=0)), 1e-4)
    try:
        from torch._inductor import metrics
        info["triton_kernels_generated"] = metrics.generated_kernel_count
        if metrics.generated_kernel_count == 0:
            problems.append("inductor generated no Triton kernel")
    except Exception as e:  # the metric is internal: report, do not fail on its absence
        info["triton_kernels_generated"] = f"unknown ({type(e).__name__})"
    if os.environ.get("FX_CASE_BARE") == "1":
        return  # the bare reference: only its exit time is compared
    blocks = torch_oom(torch, info, problems)
    torch_recover(torch, info, problems, blocks)


def case_torch_graph(info, problems):
    torch = torch_start(info)
    torch_quota(torch, info, problems)
    info["step"] = "cublas handle"
    info["cublas_handle"] = hex(torch.cuda.current_blas_handle())
    g = torch.Generator().manual_seed(2)
    for dtype, name, tol in ((torch.float32, "fp32", 5e-3), (torch.bfloat16, "bf16", 2e-2)):
        info["step"] = f"graph capture {name}"
        x = torch.zeros(1024, 1024, device="cuda", dtype=dtype)
        y = torch.zeros(1024, 1024, device="cuda", dtype=dtype)
        body = lambda: torch.relu(x @ y) + 1.0  # noqa: E731
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm-up off the capture stream, as documented
            for _ in range(3):
                body()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            out = body()
        for k in range(3):
            info["step"] = f"graph replay {name} {k}"
            a = torch.randn(1024, 1024, generator=g).to(dtype)
            b = torch.randn(1024, 1024, generator=g).to(dtype)
            x.copy_(a)
            y.copy_(b)
            graph.replay()
            torch.cuda.synchronize()
            ref = torch.relu(a.double() @ b.double()) + 1.0
            check_err(info, problems, f"graph_{name}_replay{k}", rel_err(out.cpu().double(), ref), tol)
        del graph, out
    blocks = torch_oom(torch, info, problems)
    torch_recover(torch, info, problems, blocks)


def case_torch_signal(info, problems):
    """Refused memory, then a second thread launches products until the signal."""
    torch = torch_start(info)
    torch_quota(torch, info, problems)
    blocks = torch_oom(torch, info, problems)
    info["step"] = "kernel thread"
    del blocks[-2:]  # keep the rest: the process dies holding most of its quota
    # The freed blocks go back to the driver: this thread's cuBLAS handle
    # allocates its own workspace outside PyTorch's cache.
    torch.cuda.empty_cache()
    x = torch.randn(4096, 4096, device="cuda", dtype=torch.bfloat16)
    y = torch.randn(4096, 4096, device="cuda", dtype=torch.bfloat16)
    launched = [0]

    def launch():
        while True:
            for _ in range(8):
                x @ y
            launched[0] += 8
            torch.cuda.synchronize()

    threading.Thread(target=launch, daemon=True).start()
    time.sleep(1.0)
    info["launched_before_signal"] = launched[0]
    if launched[0] == 0:
        problems.append("the kernel thread launched nothing in 1 s")
    info.pop("step")
    report(info, problems)
    while True:
        time.sleep(0.05)


# ---------------------------------------------------------------- JAX

def case_jax(info, problems):
    import importlib.util
    jax = need("jax")
    np = need("numpy")
    info["jax"] = jax.__version__

    def have(m):
        try:
            return importlib.util.find_spec(m) is not None
        except Exception:
            return False
    if not any(have(m) for m in ("jax_cuda13_plugin", "jax_cuda12_plugin",
                                 "jax_plugins.xla_cuda13", "jax_plugins.xla_cuda12")):
        raise Skip("jax is installed without a CUDA plugin (jax-cuda13-plugin)")
    import jax.numpy as jnp
    info["env"] = {k: v for k, v in os.environ.items() if k.startswith(("XLA_", "JAX_"))}
    info["step"] = "devices"
    dev = jax.devices()[0]
    info["device"] = f"{dev.platform}: {dev.device_kind}"
    if dev.platform != "gpu":
        raise RuntimeError(f"first JAX device is {dev.platform}, not a GPU")
    info["step"] = "allocator limit"
    limit = (dev.memory_stats() or {}).get("bytes_limit")
    info.update(bytes_limit=limit, limit_over_quota=limit / QUOTA if limit else None)
    platform = os.environ.get("XLA_PYTHON_CLIENT_ALLOCATOR") == "platform"
    if not platform:  # its own allocator takes a fraction (75%) of the total it is told
        fraction = float(os.environ.get("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.75"))
        if not limit or limit > QUOTA or abs(limit / QUOTA - fraction) > 0.02:
            problems.append(f"allocator limit {limit}, expected {fraction} x quota {QUOTA}")
    rng = np.random.default_rng(3)
    a = rng.standard_normal((1024, 1024), dtype=np.float32)
    b = rng.standard_normal((1024, 1024), dtype=np.float32)
    info["step"] = "matmul fp32"
    got = np.asarray(jnp.matmul(jnp.asarray(a), jnp.asarray(b), precision="highest"))
    check_err(info, problems, "matmul_fp32", rel_err(got.astype(np.float64), a.astype(np.float64) @ b.astype(np.float64)), 5e-3)
    info["step"] = "matmul bf16"
    a16, b16 = a.astype(jnp.bfloat16), b.astype(jnp.bfloat16)
    got = np.asarray(jnp.matmul(jnp.asarray(a16), jnp.asarray(b16))).astype(np.float64)
    check_err(info, problems, "matmul_bf16", rel_err(got, a16.astype(np.float64) @ b16.astype(np.float64)), 2e-2)
    info["step"] = "fill until refused"

    def alloc():
        x = jnp.zeros((BLOCK // 4,), jnp.float32)
        x.block_until_ready()
        return x
    # Past its own limit (75% of what it is told) JAX refuses by itself; with the
    # platform allocator (cudaMalloc per buffer) the library refuses, and that must
    # come back as the same error.
    least = MIN_BEFORE_OOM if platform or not limit else limit - 512 * MiB
    blocks = fill_until_refused(info, problems, alloc, lambda e: type(e).__name__ in (
        "XlaRuntimeError", "JaxRuntimeError") and "RESOURCE_EXHAUSTED" in str(e), least)
    info["step"] = "allocate after freeing"
    blocks.clear()
    x = jnp.ones((GiB // 4,), jnp.float32)  # 1 GiB
    if float(x[-1]) != 1.0:
        problems.append("1 GiB array after freeing does not hold its value")


# ---------------------------------------------------------------- CuPy

def case_cupy(info, problems):
    cupy = need("cupy")
    np = need("numpy")
    import cupy.cublas  # noqa: F401 - cupy.cublas.gemm below
    info["cupy"] = cupy.__version__
    info["step"] = "quota view"
    free, total = cupy.cuda.runtime.memGetInfo()
    props = cupy.cuda.runtime.getDeviceProperties(0)["totalGlobalMem"]
    info.update(mem_info_total=total, mem_info_free=free, props_total=props)
    check_total(problems, "cupy.cuda.runtime.memGetInfo()[1]", total)
    check_total(problems, "getDeviceProperties()['totalGlobalMem']", props)
    info["step"] = "cublas handle"
    handle = cupy.cuda.device.get_cublas_handle()
    info["cublas_handle"] = hex(handle)
    if not handle:
        problems.append("no cuBLAS handle")
    rng = np.random.default_rng(4)
    a = rng.standard_normal((1024, 1024), dtype=np.float32)
    b = rng.standard_normal((1024, 1024), dtype=np.float32)
    ref = a.astype(np.float64) @ b.astype(np.float64)
    ca, cb = cupy.asarray(a), cupy.asarray(b)
    info["step"] = "cupy.cublas.gemm fp32"
    got = cupy.asnumpy(cupy.cublas.gemm("N", "N", ca, cb)).astype(np.float64)
    check_err(info, problems, "cublas_gemm_fp32", rel_err(got, ref), 5e-3)
    info["step"] = "cupy.matmul fp32"
    check_err(info, problems, "matmul_fp32", rel_err(cupy.asnumpy(ca @ cb).astype(np.float64), ref), 5e-3)
    info["step"] = "cupy.matmul fp16"
    a16, b16 = a.astype(np.float16), b.astype(np.float16)
    got = cupy.asnumpy(cupy.asarray(a16) @ cupy.asarray(b16)).astype(np.float64)
    check_err(info, problems, "matmul_fp16", rel_err(got, a16.astype(np.float64) @ b16.astype(np.float64)), 2e-2)
    info["step"] = "fill until refused"
    blocks = fill_until_refused(info, problems, lambda: cupy.empty(BLOCK, dtype=cupy.uint8),
                                lambda e: isinstance(e, cupy.cuda.memory.OutOfMemoryError))
    info["step"] = "allocate after freeing"
    blocks.clear()
    cupy.get_default_memory_pool().free_all_blocks()
    x = cupy.empty(GiB, dtype=cupy.uint8)
    x[-1:] = 7  # a fill kernel
    if int(x[-1]) != 7:
        problems.append("1 GiB array after freeing does not hold its value")


# ---------------------------------------------------------------- driver

CASES = {
    "torch_eager": case_torch_eager,
    "torch_compile": case_torch_compile,
    "torch_graph": case_torch_graph,
    "torch_signal": case_torch_signal,
    "jax": case_jax,
    "cupy": case_cupy,
}


def report(info, problems, status=None, reason=None):
    status = status or ("fail" if problems else "ok")
    line = {"case": sys.argv[1], "status": status, "reason": reason or "; ".join(problems)}
    line.update(info)
    print(json.dumps(line, default=str), flush=True)


def main():
    if len(sys.argv) != 2 or sys.argv[1] not in CASES:
        sys.exit(f"usage: cases.py {{{'|'.join(CASES)}}}")
    info, problems = {}, []
    try:
        CASES[sys.argv[1]](info, problems)
    except Skip as e:
        report(info, [], "skip", str(e))
        return
    except Exception as e:  # KeyboardInterrupt goes on, as in any program
        msg = (str(e).strip().splitlines() or [""])[0][:300]
        problems.append(f"{info.get('step', 'start')}: {type(e).__name__}: {msg}")
    info.pop("step", None)
    report(info, problems)


if __name__ == "__main__":
    main()
