# SPDX-License-Identifier: Apache-2.0
"""The framework matrix: each case of cases.py under a 4 GiB flexpu slice.

    python3 run.py --lib /abs/build/libflexpu-cuda.so --out DIR [--jobs 4] [--budget S]

Each case runs as its own process with LD_PRELOAD=the library, FLEXPU_MEMORY_LIMIT=4Gi,
FLEXPU_TENANT=<case> and a fresh FLEXPU_STATE_DIR. The runner keeps the time of every
stdout line and of the exit: a process still there 5 s after its last line (or after
the signal, for the signal cases) fails; one still there after EXIT_WAIT s is killed
and reported as no_exit. Writes DIR/frameworks.json, DIR/frameworks.txt (one row per
case: ok / FAIL / SKIP and the reason) and DIR/frameworks-logs/CASE.log (stderr), and
exits 1 at the end if any case failed. Cases run JOBS at a time (correctness and exit
time only; nothing here measures speed).
"""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
QUOTA = 4 << 30
EXIT_LIMIT = 5.0  # seconds from the last line (or the signal) to the exit
EXIT_WAIT = 12.0  # then the process is killed: no_exit
CAP30 = {"FLEXPU_COMPUTE_SHARE": "30", "FLEXPU_COMPUTE_CAP": "30"}
JAX = {"JAX_PLATFORMS": "cuda"}

# name, case in cases.py, extra environment, signal to send once it printed, timeout (s)
CASES = [
    ("torch_eager", "torch_eager", {}, None, 90),
    ("torch_compile", "torch_compile", {}, None, 150),
    # The same without the library: its exit time is the reference for the one above
    # (inductor's compile workers take seconds to shut down).
    ("torch_compile_bare", "torch_compile", {"LD_PRELOAD": "", "FX_CASE_BARE": "1"}, None, 150),
    ("torch_cuda_graph", "torch_graph", {}, None, 90),
    ("torch_expandable_segments", "torch_eager",
     {"PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True"}, None, 90),
    ("torch_cudamallocasync", "torch_eager",
     {"PYTORCH_CUDA_ALLOC_CONF": "backend:cudaMallocAsync"}, None, 90),
    ("jax_no_prealloc", "jax", {**JAX, "XLA_PYTHON_CLIENT_PREALLOCATE": "false"}, None, 90),
    ("jax_prealloc", "jax", {**JAX, "XLA_PYTHON_CLIENT_PREALLOCATE": "true"}, None, 90),
    ("jax_platform_alloc", "jax", {**JAX, "XLA_PYTHON_CLIENT_ALLOCATOR": "platform"}, None, 90),
    ("cupy", "cupy", {}, None, 90),
    # Refused memory, a second thread launching products (waiting on a 30% cap most of
    # the time), then the signal: gone within 5 s.
    ("torch_sigterm", "torch_signal", CAP30, signal.SIGTERM, 90),
    ("torch_sigint", "torch_signal", CAP30, signal.SIGINT, 90),
]
# Variables of the caller that would change a case: each case sets its own.
CLEARED = ("FLEXPU_", "PYTORCH_CUDA_ALLOC_CONF", "XLA_", "JAX_", "LD_PRELOAD")


def last_json(lines):
    for _, text in reversed(lines):
        if text.startswith("{"):
            try:
                return json.loads(text)
            except ValueError:
                pass
    return None


def run_case(a, deadline, name, case, extra, sig, timeout):
    r = {"case": name, "result": "FAIL", "reason": ""}
    timeout = min(timeout, deadline - time.monotonic())
    if timeout < 10:
        r["reason"] = "not run: the matrix's time budget was spent"
        return r
    env = {k: v for k, v in os.environ.items() if not k.startswith(CLEARED)}
    state = tempfile.mkdtemp(prefix=f"{name}-", dir=a.state_base)
    env.update(LD_PRELOAD=a.lib, FLEXPU_MEMORY_LIMIT="4Gi", FLEXPU_TENANT=name,
               FLEXPU_STATE_DIR=state, FW_QUOTA_BYTES=str(QUOTA), PYTHONUNBUFFERED="1")
    env.update(extra)
    r["env"] = {k: v for k, v in env.items() if k.startswith(CLEARED)}
    log = open(os.path.join(a.out, "frameworks-logs", name + ".log"), "w")
    t0 = time.monotonic()
    p = subprocess.Popen([sys.executable, os.path.join(HERE, "cases.py"), case], env=env,
                         stdout=subprocess.PIPE, stderr=log, text=True, start_new_session=True)
    lines = []  # (time, text) of each stdout line

    def read():
        for text in p.stdout:
            lines.append((time.monotonic(), text.rstrip("\n")))
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    t_sig, why = None, None
    while p.poll() is None:
        now = time.monotonic()
        printed = last_json(lines) is not None
        if sig is not None and printed and t_sig is None:
            os.kill(p.pid, sig)
            t_sig = now
        since = t_sig if t_sig is not None else (lines[-1][0] if printed else None)
        if since is not None and now - since > EXIT_WAIT:
            why = f"no_exit: still running {EXIT_WAIT:.0f} s after its " + (
                "signal" if t_sig is not None else "last line")
        elif now - t0 > timeout:
            why = f"timeout: no result within {timeout:.0f} s"
        if why:
            p.kill()
            break
        time.sleep(0.02)
    t_exit = time.monotonic()
    rc = p.wait()
    try:  # children it left behind (compile workers...): noted, then ended
        os.killpg(p.pid, signal.SIGKILL)
        r["left_children"] = True
    except (ProcessLookupError, PermissionError):
        pass
    reader.join(2)
    log.close()
    shutil.rmtree(state, ignore_errors=True)
    res = last_json(lines) or {}
    r.update({k: v for k, v in res.items() if k != "case"})
    r.update(result="FAIL", returncode=rc, wall_s=round(t_exit - t0, 2))
    lag = 0.0
    if t_sig is not None:
        r["exit_after_signal_s"] = round(t_exit - t_sig, 2)
        lag = t_exit - t_sig
    elif lines:
        r["exit_after_last_line_s"] = round(max(0.0, t_exit - lines[-1][0]), 2)
        lag = t_exit - lines[-1][0]
    status, what = res.get("status"), "signal" if t_sig is not None else "last line"
    problems = [why] if why else []
    if not res:
        if not why:
            problems.append(f"no result line (exit code {rc})")
    elif status not in ("ok", "skip"):
        problems.append(res.get("reason") or f"status {status}")
    if res and not why and lag > EXIT_LIMIT:
        problems.append(f"exited {lag:.1f} s after its {what}")
    if res and not why and rc != 0 and sig is None:
        problems.append(f"exit code {rc} after its result")
    if problems:
        r["reason"] = "; ".join(problems)
    else:
        r.update(result="SKIP" if status == "skip" else "ok", reason=res.get("reason", ""))
    if r["result"] == "FAIL":
        with open(log.name, errors="replace") as f:
            r["stderr_tail"] = f.read()[-1500:]
    return r


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lib", required=True, help="absolute path of libflexpu-cuda.so")
    ap.add_argument("--out", required=True)
    ap.add_argument("--jobs", type=int, default=4)
    ap.add_argument("--budget", type=float,
                    default=float(os.environ.get("VGPU_STEP_S", "165")) - 15,
                    help="seconds for the whole matrix (default: the step's timeout - 15)")
    ap.add_argument("--state-base", default="/tmp/flexpu-fw")
    ap.add_argument("--only", nargs="*", help="case names")
    a = ap.parse_args()
    a.lib = os.path.abspath(a.lib)
    os.makedirs(os.path.join(a.out, "frameworks-logs"), exist_ok=True)
    shutil.rmtree(a.state_base, ignore_errors=True)
    os.makedirs(a.state_base)
    cases = [c for c in CASES if not a.only or c[0] in a.only]
    deadline = time.monotonic() + a.budget
    t0 = time.monotonic()
    with ThreadPoolExecutor(a.jobs) as pool:
        results = list(pool.map(lambda c: run_case(a, deadline, *c), cases))
    counts = {k: sum(r["result"] == k for r in results) for k in ("ok", "FAIL", "SKIP")}
    summary = f"{len(results)} cases: {counts['ok']} ok, {counts['FAIL']} FAIL, {counts['SKIP']} SKIP"
    with open(os.path.join(a.out, "frameworks.json"), "w") as f:
        json.dump({"library": a.lib, "quota": QUOTA, "exit_limit_s": EXIT_LIMIT,
                   "wall_s": round(time.monotonic() - t0, 1), "summary": summary,
                   "cases": results}, f, indent=1, default=str)
    rows = [f"{'case':27} {'result':6} {'exit_s':>6}  reason"]
    for r in results:
        lag = r.get("exit_after_signal_s", r.get("exit_after_last_line_s"))
        lag = "-" if lag is None else f"{lag:.1f}"
        rows.append(f"{r['case']:27} {r['result']:6} {lag:>6}  {r['reason']}")
    rows.append(summary)
    text = "\n".join(rows) + "\n"
    with open(os.path.join(a.out, "frameworks.txt"), "w") as f:
        f.write(text)
    sys.stdout.write(text)
    sys.exit(1 if counts["FAIL"] else 0)


if __name__ == "__main__":
    main()
