"""The harness's runtime cases again, with the node agent deciding (Kubernetes mode).

compare.py (../shared/bench/vgpu) runs the library with the tenants deciding among
themselves (the shared state, outside Kubernetes). In a cluster the node agent decides
(docs/RUNTIME.md, "Who decides"; docs/SECURITY.md): each slice's processes publish requests
in their own ledger and wait on the agent's read-only page. This runs the cases whose figures
depend on who decides (launch rate, a 30/70 pair, a 30% cap, a `high` service beside a `low`
batch) as slices of test/gpu/agent_host (flexpu-node's arbiter thread alone), and scores them
with score.py against the bare figures of the same run's result.json.

usage: agent_cases.py --lib LIB --host AGENT_HOST --bare RESULT.json --out DIR
Writes DIR/agent_result.json and DIR/agent_host.log; prints score.py's lines.
"""
import argparse, json, os, shutil, subprocess, sys, time

HERE = os.path.dirname(os.path.abspath(__file__))
BENCH = os.path.dirname(HERE)  # .gpu-bench: compare.py, score.py
sys.path.insert(0, BENCH)
from compare import run, co_run  # noqa: E402
import score  # noqa: E402

ROOT = "/tmp/flexpu-agent"


def uuids():
    out = subprocess.run(["nvidia-smi", "--query-gpu=uuid", "--format=csv,noheader"],
                         capture_output=True, text=True, timeout=20).stdout
    return [u.strip() for u in out.splitlines() if u.strip().startswith("GPU-")]


class Agent:
    """agent_host over a fresh ROOT, one per case (no virtual time carried over)."""

    def __init__(self, host, log):
        shutil.rmtree(ROOT, ignore_errors=True)
        os.makedirs(ROOT + "/ledger")
        os.makedirs(ROOT + "/slices")
        self.p = subprocess.Popen([host, ROOT] + uuids(), stdout=log, stderr=log, text=True)
        for _ in range(100):  # its pages, before any tenant looks for them
            if os.path.isdir(ROOT + "/arb") and any(f.endswith(".state") for f in os.listdir(ROOT + "/arb")):
                break
            if self.p.poll() is not None:
                raise RuntimeError(f"agent_host exited {self.p.returncode}")
            time.sleep(0.05)

    def stop(self):
        self.p.terminate()
        try:
            self.p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()


def slice_env(lib, key, mem, share, cap, prio):
    """A slice as flexpu-node makes one: its policy in slices/<key>/slice.conf, which only
    the agent reads; its processes' requests in ledger/<key>."""
    os.makedirs(f"{ROOT}/slices/{key}", exist_ok=True)
    os.makedirs(f"{ROOT}/ledger/{key}", exist_ok=True)
    with open(f"{ROOT}/slices/{key}/slice.conf", "w") as f:
        f.write(f"tenant = {key}\ncompute_share = {share}\ncompute_cap = {cap}\npriority = {prio}\n")
    return {"LD_PRELOAD": lib, "FLEXPU_TENANT": key, "FLEXPU_MEMORY_LIMIT": mem,
            "FLEXPU_COMPUTE_SHARE": str(share), "FLEXPU_COMPUTE_CAP": str(cap),
            "FLEXPU_PRIORITY": prio, "FLEXPU_ARBITER_DIR": f"{ROOT}/arb",
            "FLEXPU_LEDGER_DIR": f"{ROOT}/ledger/{key}", "FLEXPU_STATE_DIR": f"{ROOT}/state"}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lib", required=True)
    ap.add_argument("--host", required=True)
    ap.add_argument("--bare", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    lib = os.path.realpath(a.lib)
    try:
        bare = json.load(open(a.bare))
    except (OSError, ValueError) as e:
        bare = {}
        print(f"no bare figures ({e}): agent figures printed without ratios", flush=True)
    R = {"runtime": "flexpu under the node agent"}
    for k in ("bare_launches", "bare_matmul", "bare_pair", "bare_requests_alone", "bare_requests_with_batch"):
        if k in bare:
            R[k] = bare[k]
    cases = [
        ("rt_launches_nolimit", lambda: run(slice_env(lib, "a", "79g", 100, 100, "normal"),
                                            "launches", "--seconds", "4")),
        ("rt_matmul_sm30", lambda: run(slice_env(lib, "a", "20g", 30, 30, "normal"),
                                       "matmul", "--seconds", "10")),
        ("rt_pair_30_70", lambda: co_run([(slice_env(lib, "a", "20g", 30, 100, "normal"), "matmul"),
                                          (slice_env(lib, "b", "20g", 70, 100, "normal"), "matmul")],
                                         "--seconds", "10")),
        ("rt_requests_with_batch", lambda: co_run(
            [(slice_env(lib, "a", "20g", 50, 100, "high"), "requests"),
             (slice_env(lib, "b", "20g", 50, 100, "low"), "matmul")], "--seconds", "8")),
    ]
    with open(os.path.join(a.out, "agent_host.log"), "w") as log:
        for name, case in cases:
            log.write(f"--- {name}\n")
            log.flush()
            ag = Agent(a.host, log)
            try:
                R[name] = case()
            finally:
                ag.stop()
            print(f"{name}: {json.dumps(R[name])[:300]}", flush=True)
    shutil.rmtree(ROOT, ignore_errors=True)
    with open(os.path.join(a.out, "agent_result.json"), "w") as f:
        json.dump(R, f)
    missed = 0
    for name, v, target, met in score.figures(R):
        missed += not met
        print(f"{'ok ' if met else 'MISS'} {name:52s} {v:8.3f}   target {target}")
    errors = [f"{k}: {c['error'][-200:]}" for k, c in R.items()
              for c in (c if isinstance(c, list) else [c]) if isinstance(c, dict) and "error" in c]
    for e in errors:
        print(f"ERROR {e}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
