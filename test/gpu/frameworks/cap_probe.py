# SPDX-License-Identifier: Apache-2.0
"""Why a compute cap alone gives more than its share of matmul throughput (0.346 of
bare at 30%, 0.574 at 50%), and how long a high-priority service waits beside a
low-priority batch. On the GPU machine, about 50 s:

    python3 cap_probe.py --lib /abs/build/libflexpu-cuda.so --out DIR

Part 1, caps. The matmul loop of workload.py (bf16 4096^3, 4 products, then
synchronize) for --seconds bare, then with FLEXPU_COMPUTE_SHARE = FLEXPU_COMPUTE_CAP =
30 and 50. A CUDA timing event is recorded before each chunk and after each product.
A product whose launch call returned at once (< BLOCKED, it did not wait in the
arbiter) was queued behind the previous one, so for products 2-4 of a chunk the
interval between events is the product's own GPU time. Then
    busy = products x mean product time, busy fraction = busy / wall,
    throughput / bare = (busy fraction / bare's) x (throughput per busy second / bare's).
A sidecar thread of this process (outside the measured one) samples SM clock, power,
temperature and clock-event reasons every 20 ms (pynvml, else nvidia-smi -lms 20);
samples inside a product's interval are "busy". The verdict line says which term
explains the excess: more work per busy second (at a higher SM clock: the
duty-cycled GPU is less power-limited) or a busy fraction above the cap (GPU work the
library does not account for).

Part 2, priorities. The requests service of workload.py (8 bf16 2048^3 products and a
synchronize, exponential gaps of mean 4 ms) alone, then beside a batch matmul; the
service FLEXPU_PRIORITY=high, the batch low, both FLEXPU_COMPUTE_SHARE=50. Per request,
the first product's wait = (its end event - the event recorded just before it) - the
product's own GPU time alone (median); reported alone and beside.

Writes DIR/cap_probe.json (after each run, so a timeout keeps what was done) and
prints a table and the verdict lines. The workloads run as children of this script
(`cap_probe.py matmul|requests ...`).
"""
import argparse
import bisect
import json
import os
import random
import shutil
import subprocess
import sys
import threading
import time

BLOCKED = 1e-3  # a launch call longer than this waited in the arbiter
FLOP_4096 = 2.0 * 4096 ** 3


# ---------------------------------------------------------------- children (on the GPU)

def torch_setup(n):
    import torch
    torch.cuda.init()
    x = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    y = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    return torch, x, y


def wait_until(wall):
    while time.time() < wall:
        time.sleep(0.001)


def child_matmul(a):
    torch, x, y = torch_setup(4096)
    for _ in range(5):
        x @ y
    torch.cuda.synchronize()
    wait_until(a.start_at)
    sets = [[torch.cuda.Event(enable_timing=True) for _ in range(5)] for _ in range(2)]
    st = {"products": 0, "durs": [], "intervals": [], "blocked": 0, "blocked_s": 0.0, "chunk_s": 0.0}

    def account(th, ev, waits):  # a chunk whose events are complete
        st["chunk_s"] += ev[0].elapsed_time(ev[4]) / 1e3  # includes waits in the arbiter
        for j in range(4):
            if waits[j] > BLOCKED:
                st["blocked"] += 1
                st["blocked_s"] += waits[j]
                continue
            s = ev[0].elapsed_time(ev[j]) / 1e3 if j else 0.0
            e = ev[0].elapsed_time(ev[j + 1]) / 1e3
            st["intervals"].append((round(th + s, 6), round(th + e, 6)))
            if j:  # products 2-4: queued behind the previous one
                st["durs"].append(e - s)

    def loop(seconds, measure):
        prev, i, windows = None, 0, []
        t0 = time.monotonic()
        while True:
            w0, k = time.monotonic(), 0
            while time.monotonic() - w0 < a.window:
                ev = sets[i % 2]
                i += 1
                th, waits = time.monotonic(), []
                ev[0].record()
                for j in range(4):
                    l0 = time.monotonic()
                    x @ y
                    waits.append(time.monotonic() - l0)
                    ev[j + 1].record()
                if prev and measure:
                    account(*prev)  # while this chunk runs on the GPU
                torch.cuda.synchronize()
                prev = (th, ev, waits)
                k += 4
            w1 = time.monotonic()
            windows.append(k * FLOP_4096 / (w1 - w0) / 1e12)
            if measure:
                st["products"] += k
            if w1 - t0 >= seconds:
                if measure:
                    account(*prev)
                return t0, w1, windows

    loop(0.5, False)  # settle: clocks, the cap's bucket
    t0, t1, windows = loop(a.seconds, True)
    durs = sorted(st.pop("durs"))
    wall = t1 - t0
    # busy_fraction_chunks: the plain measure (event before and after each chunk of 4),
    # which counts a wait in the arbiter inside a chunk as busy
    out = dict(t_start=t0, t_end=t1, wall_s=wall, tflops_windows=[round(w, 1) for w in windows],
               tflops=st["products"] * FLOP_4096 / wall / 1e12, clean_products=len(durs),
               busy_fraction_chunks=st["chunk_s"] / wall, **st)
    if durs:
        mean = sum(durs) / len(durs)
        q = lambda f: durs[min(len(durs) - 1, int(f * len(durs)))]  # noqa: E731
        out.update(product_ms=mean * 1e3, product_ms_p10=q(0.1) * 1e3, product_ms_p50=q(0.5) * 1e3,
                   product_ms_p90=q(0.9) * 1e3, busy_fraction=st["products"] * mean / wall,
                   tflops_per_busy_s=FLOP_4096 / mean / 1e12)
    print(json.dumps(out), flush=True)


def child_requests(a):
    torch, x, y = torch_setup(2048)
    for _ in range(20):
        x @ y
    torch.cuda.synchronize()
    wait_until(a.start_at)
    e0, e1, e8 = (torch.cuda.Event(enable_timing=True) for _ in range(3))
    rng, recs = random.Random(7), []
    t0 = time.monotonic()
    while time.monotonic() - t0 < a.seconds:
        r0 = time.monotonic()
        e0.record()
        x @ y
        launch1 = time.monotonic() - r0
        e1.record()
        for _ in range(7):
            x @ y
        e8.record()
        torch.cuda.synchronize()
        lat = time.monotonic() - r0
        # latency, first product incl. its wait, products 2-8, first launch call (ms)
        recs.append([round(v, 4) for v in (lat * 1e3, e0.elapsed_time(e1), e1.elapsed_time(e8), launch1 * 1e3)])
        time.sleep(rng.expovariate(1.0 / a.gap) / 1e3)
    print(json.dumps({"t_start": t0, "t_end": time.monotonic(), "requests": recs}), flush=True)


# ---------------------------------------------------------------- sampler (here)

class Sampler:
    """SM clock (MHz), power (W), reasons bit mask and temperature (C) every period."""

    def __init__(self, period=0.02):
        self.period, self.samples, self.stop_ev = period, [], threading.Event()
        self.proc, self.how = None, None
        try:
            import pynvml
            pynvml.nvmlInit()
            self.nv, self.h = pynvml, pynvml.nvmlDeviceGetHandleByIndex(0)
            self.reasons = getattr(pynvml, "nvmlDeviceGetCurrentClocksEventReasons", None) or \
                pynvml.nvmlDeviceGetCurrentClocksThrottleReasons
            self.how, target = "pynvml", self.run_nvml
        except Exception as e:
            self.how = f"nvidia-smi -lms 20 (pynvml: {type(e).__name__}: {e})"[:200]
            target = self.run_smi
        self.thread = threading.Thread(target=target, daemon=True)
        self.thread.start()

    def run_nvml(self):
        nv, h, nxt = self.nv, self.h, time.monotonic()
        while not self.stop_ev.is_set():
            try:
                clk = nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_SM)
                t = time.monotonic()
                self.samples.append((t, clk, nv.nvmlDeviceGetPowerUsage(h) / 1e3, self.reasons(h),
                                     nv.nvmlDeviceGetTemperature(h, nv.NVML_TEMPERATURE_GPU)))
            except Exception:
                pass
            nxt += self.period
            time.sleep(max(0.0, nxt - time.monotonic()))

    def run_smi(self):
        q = "clocks.sm,power.draw,clocks_event_reasons.active,temperature.gpu"
        try:
            self.proc = subprocess.Popen(["nvidia-smi", f"--query-gpu={q}", "--format=csv,noheader,nounits",
                                          "-lms", str(int(self.period * 1e3))],
                                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        except OSError as e:
            self.how += f"; nvidia-smi: {type(e).__name__}: {e}"
            return
        for line in self.proc.stdout:
            t, f = time.monotonic(), [v.strip() for v in line.split(",")]
            try:
                self.samples.append((t, float(f[0]), float(f[1]), int(f[2], 16), float(f[3])))
            except (ValueError, IndexError):
                pass

    def stop(self):
        self.stop_ev.set()
        if self.proc:
            self.proc.terminate()

    def stats(self, t0, t1, intervals):
        """Clock, power and reasons while the GPU ran a product, and otherwise."""
        starts = [s for s, _ in intervals]
        busy, idle = [], []
        for smp in self.samples:
            if t0 <= smp[0] <= t1:
                i = bisect.bisect_right(starts, smp[0]) - 1
                (busy if i >= 0 and smp[0] <= intervals[i][1] else idle).append(smp)
        mean = lambda v: round(sum(v) / len(v), 1) if v else None  # noqa: E731
        share = lambda m: round(sum(1 for s in busy if s[3] & m) / len(busy), 3) if busy else None  # noqa: E731
        masks = [s[3] for s in busy]
        return dict(samples=len(busy) + len(idle), busy_samples=len(busy),
                    sm_mhz_busy=mean([s[1] for s in busy]), sm_mhz_idle=mean([s[1] for s in idle]),
                    power_w_busy=mean([s[2] for s in busy]), power_w_all=mean([s[2] for s in busy + idle]),
                    temp_c_max=max([s[4] for s in busy + idle], default=None),
                    # clock-event reasons while busy: 0x4 software power cap, 0x8/0x80 hardware
                    # slowdown / power brake, 0x20/0x40 thermal
                    busy_power_capped=share(0x4), busy_hw_slowdown=share(0x88), busy_thermal=share(0x60),
                    busy_reasons_most=hex(max(set(masks), key=masks.count)) if masks else None)


# ---------------------------------------------------------------- parent

DEADLINE = [float("inf")]  # the whole probe's, from --budget


def child(mode, env_extra, *args, timeout=30):
    """Start `cap_probe.py MODE ARGS`; it gets `timeout` s, less if the budget is short."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLEXPU_", "LD_PRELOAD"))}
    env.update(env_extra)
    cmd = [sys.executable, os.path.abspath(__file__), mode] + [str(v) for v in args]
    timeout = min(timeout, DEADLINE[0] - time.monotonic())
    if timeout < 5:
        return None, 0
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True), timeout


def collect(spawned):
    """Its JSON line; on a timeout it is killed, and keeps what it printed."""
    p, timeout = spawned
    if p is None:
        return {"error": "not run: the probe's budget was spent"}
    extra = {}
    try:
        o, e = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        o, e = p.communicate()
        extra = {"error": f"no_exit: killed, still running after {timeout:.0f} s", "stderr_tail": e[-1500:]}
    lines = [ln for ln in o.splitlines() if ln.startswith("{")]
    if lines:
        return dict(json.loads(lines[-1]), **extra)
    last = ([ln for ln in e.splitlines() if ln.strip()] or ["no output"])[-1]
    return extra or {"error": f"exit {p.returncode}: {last[:300]}", "stderr_tail": e[-1500:]}


def pct(v, f):
    v = sorted(v)
    return round(v[min(len(v) - 1, int(f * len(v)))], 3) if v else None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("mode", nargs="?", default="probe", choices=("probe", "matmul", "requests"))
    ap.add_argument("--lib", help="absolute path of libflexpu-cuda.so")
    ap.add_argument("--out", default=".")
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--req-seconds", type=float, default=3.0)
    ap.add_argument("--window", type=float, default=0.5)
    ap.add_argument("--gap", type=float, default=4.0)
    ap.add_argument("--start-at", type=float, default=0.0)
    ap.add_argument("--state", default="/tmp/flexpu-capprobe")
    ap.add_argument("--budget", type=float, default=float(os.environ.get("VGPU_STEP_S", "105")) - 5,
                    help="seconds for the whole probe (default: the step's timeout - 5)")
    a = ap.parse_args()
    if a.mode == "matmul":
        return child_matmul(a)
    if a.mode == "requests":
        return child_requests(a)
    if not a.lib:
        ap.error("--lib is required")
    lib = os.path.abspath(a.lib)
    DEADLINE[0] = time.monotonic() + a.budget

    def slice_env(tenant, **flexpu):
        e = {"LD_PRELOAD": lib, "FLEXPU_MEMORY_LIMIT": "20Gi", "FLEXPU_TENANT": tenant,
             "FLEXPU_STATE_DIR": a.state}
        e.update({"FLEXPU_" + k.upper(): str(v) for k, v in flexpu.items()})
        return e

    def fresh():
        shutil.rmtree(a.state, ignore_errors=True)

    os.makedirs(a.out, exist_ok=True)
    R = {"seconds": a.seconds, "req_seconds": a.req_seconds, "caps": {}, "priority": {}}

    def save():
        with open(os.path.join(a.out, "cap_probe.json"), "w") as f:
            json.dump(R, f, indent=1)

    sampler = Sampler()
    R["sampler"] = sampler.how
    print(f"sampler: {sampler.how}", flush=True)

    # Part 1: bare, cap 30, cap 50
    runs = [("bare", {}), ("cap30", slice_env("cap30", compute_share=30, compute_cap=30)),
            ("cap50", slice_env("cap50", compute_share=50, compute_cap=50))]
    # VGPU_CAP_CLOCK_MHZ: the same caps again, charged at that reference clock
    # (FLEXPU_CAP_CLOCK_MHZ, docs/RUNTIME.md).
    clk = os.environ.get("VGPU_CAP_CLOCK_MHZ")
    if clk:
        runs += [("c30clk", slice_env("c30clk", compute_share=30, compute_cap=30, cap_clock_mhz=clk)),
                 ("c50clk", slice_env("c50clk", compute_share=50, compute_cap=50, cap_clock_mhz=clk))]
    print(f"{'run':6} {'TFLOP/s':>8} {'busy':>6} {'(chunk)':>7} {'ms/prod':>8} {'TF/busy-s':>9} "
          f"{'SM MHz busy':>11} {'idle':>5} {'W busy':>6} {'pwr-cap':>7} {'blocked':>7}", flush=True)
    for label, env in runs:
        fresh()
        res = collect(child("matmul", env, "--seconds", a.seconds, timeout=a.seconds + 25))
        intervals = res.pop("intervals", [])
        if "t_start" in res:
            res.update(sampler.stats(res["t_start"], res["t_end"], intervals))
        R["caps"][label] = res
        save()
        if "error" in res:
            print(f"{label:6} ERROR {res['error'][-300:]}", flush=True)
        if "t_start" not in res:
            continue
        f = lambda k, fmt: format(res[k], fmt) if res.get(k) is not None else "-".rjust(int(fmt.split(".")[0]))  # noqa: E731,E501
        print(f"{label:6} {f('tflops', '8.1f')} {f('busy_fraction', '6.3f')} {f('busy_fraction_chunks', '7.3f')} "
              f"{f('product_ms', '8.4f')} "
              f"{f('tflops_per_busy_s', '9.1f')} {f('sm_mhz_busy', '11.0f')} {f('sm_mhz_idle', '5.0f')} "
              f"{f('power_w_busy', '6.0f')} {f('busy_power_capped', '7.2f')} {res['blocked']:7d}", flush=True)

    # Part 2: the service alone, then beside a low-priority batch
    svc = slice_env("service", compute_share=50, priority="high")
    fresh()
    alone = collect(child("requests", svc, "--seconds", a.req_seconds, timeout=a.req_seconds + 25))
    fresh()
    start = time.time() + 6.0
    batch = child("matmul", slice_env("batch", compute_share=50, priority="low"),
                  "--seconds", a.req_seconds + 1.0, "--start-at", start - 0.5, timeout=a.req_seconds + 30)
    beside = collect(child("requests", svc, "--seconds", a.req_seconds, "--start-at", start,
                           timeout=a.req_seconds + 30))
    batch = collect(batch)
    batch.pop("intervals", None)
    R["priority"]["batch"] = {k: batch[k] for k in ("tflops", "busy_fraction", "error") if k in batch}
    d_alone = None
    if alone.get("requests"):
        d_alone = pct([r[2] / 7 for r in alone["requests"]], 0.5)  # one product's GPU time, ms
    R["priority"]["product_ms_alone"] = d_alone
    for label, res in (("alone", alone), ("beside_batch", beside)):
        recs = res.get("requests")
        if not recs or d_alone is None:
            R["priority"][label] = {"error": res.get("error", "no requests")}
            continue
        first = [r[1] - d_alone for r in recs]
        R["priority"][label] = dict(
            requests=len(recs), p50_ms=pct([r[0] for r in recs], 0.5), p99_ms=pct([r[0] for r in recs], 0.99),
            first_wait_p50_ms=pct(first, 0.5), first_wait_p99_ms=pct(first, 0.99),
            first_wait_max_ms=round(max(first), 3),
            launch1_p50_ms=pct([r[3] for r in recs], 0.5), launch1_p99_ms=pct([r[3] for r in recs], 0.99))
    sampler.stop()
    P = R["priority"]
    for label in ("alone", "beside_batch"):
        print(f"service {label:13} " + " ".join(f"{k}={v}" for k, v in P[label].items()), flush=True)
    print(f"batch (low) {P['batch']}", flush=True)
    if "p50_ms" in P["alone"] and "p50_ms" in P["beside_batch"]:
        al, bs = P["alone"], P["beside_batch"]
        P["first_wait_extra_p50_ms"] = round(bs["first_wait_p50_ms"] - al["first_wait_p50_ms"], 3)
        P["first_wait_extra_p99_ms"] = round(bs["first_wait_p99_ms"] - al["first_wait_p99_ms"], 3)
        print(f"verdict priority: service p50/p99 {al['p50_ms']}/{al['p99_ms']} ms alone, "
              f"{bs['p50_ms']}/{bs['p99_ms']} ms beside the low batch "
              f"(p99 x{bs['p99_ms'] / al['p99_ms']:.2f}); its first product waited "
              f"{P['first_wait_extra_p50_ms']:+.3f} ms (p50) / {P['first_wait_extra_p99_ms']:+.3f} ms (p99) "
              f"more than alone", flush=True)

    # The verdict on caps
    C, parts = R["caps"], []
    b = C.get("bare", {})
    for label, cap in (("cap30", 0.30), ("cap50", 0.50), ("c30clk", 0.30), ("c50clk", 0.50)):
        c = C.get(label, {})
        if not b.get("busy_fraction") or not c.get("busy_fraction"):
            parts.append(f"{label}: no figures ({(c.get('error') or b.get('error') or 'no clean products')[:80]})")
            continue
        per_busy = c["tflops_per_busy_s"] / b["tflops_per_busy_s"]
        causes = []
        if per_busy > 1.03:
            hotter = (c.get("sm_mhz_busy") or 0) > (b.get("sm_mhz_busy") or 0) + 15
            causes.append("more work per busy second" + (" at a higher SM clock" if hotter else ""))
        if c["busy_fraction"] > cap + 0.02:
            causes.append("GPU busy beyond the cap (work escapes the accounting, or the bucket over-grants)")
        clk = f"SM {c.get('sm_mhz_busy')} vs {b.get('sm_mhz_busy')} MHz busy"
        parts.append(f"{label}: throughput {c['tflops'] / b['tflops']:.3f} of bare = per-busy-second "
                     f"x{per_busy:.3f} ({clk}) and busy {c['busy_fraction']:.3f} vs cap {cap:.2f} "
                     f"(bare {b['busy_fraction']:.3f}) -> {', '.join(causes) or 'neither'}")
        C[label]["per_busy_second_vs_bare"] = round(per_busy, 4)
    R["verdict_caps"] = " | ".join(parts)
    R["sampler"] = f"{sampler.how}; {len(sampler.samples)} samples"
    save()
    print("verdict caps: " + R["verdict_caps"], flush=True)
    fresh()
    failed = [k for k, v in list(C.items()) + list(P.items()) if isinstance(v, dict) and "error" in v]
    if failed:
        print("cap_probe: no figures from " + ", ".join(failed), flush=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
