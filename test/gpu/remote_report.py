#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""The GPU check's report (docs/REMOTE.md, "The GPU check"): remote_bench's
objects for the local run and the remote runs, side by side, and what a
25 and a 100 Gb/s network would give, computed from the measured per-call
and per-byte costs.

usage: remote_report.py OUT_DIR [--rtt-us R]
Reads OUT_DIR/{local,remote,remote_plain}.json (each remote_bench's output,
or missing) and OUT_DIR/skipped.txt (lines "LEG reason"), writes
OUT_DIR/result.json and OUT_DIR/result.md, and prints the markdown.

The model (REMOTE.md): a call costs its loopback time plus one network round
trip (R, 30 us unless given: two kernel TCP stacks and a switch); a copy of S
bytes costs a + R + S * max(b, 8 / link) where a and b come from a least-
squares line through the loopback copy times (a: the fixed cost of a copy
call, b: the loopback's seconds per byte, the CPU's work: TLS, two buffers,
the pageable copy on the GPU node), on the assumption that a copy's 4 MiB
frames keep the link and the CPUs busy at once; a GEMM needs no bytes of
its matrices on the network, so its throughput is the loopback one but for
one round trip per synchronisation.
"""
import json
import os
import sys

LINKS_GBPS = (25, 100)


def load(path):
    try:
        with open(path) as f:
            return json.loads(f.read().strip().splitlines()[-1])
    except (OSError, ValueError, IndexError) as e:
        return {"error": f"no result ({e.__class__.__name__})"}


def fit(copies, key):
    """Least squares t = a + b * bytes over the copy sizes."""
    pts = [(c["bytes"], c[key]) for c in copies]
    if len(pts) < 2:
        return None
    n = len(pts)
    mx = sum(x for x, _ in pts) / n
    my = sum(y for _, y in pts) / n
    sxx = sum((x - mx) ** 2 for x, _ in pts)
    if sxx == 0:
        return None
    b = sum((x - mx) * (y - my) for x, y in pts) / sxx
    a = my - b * mx
    # The smallest copy bounds the fixed cost from above; a negative
    # intercept (noise) means "negligible".
    return {"a_s": max(a, 0.0), "b_s_per_byte": max(b, 1e-15)}


def project(res, rtt_s):
    """What each link would give, from one remote run's loopback figures."""
    out = {}
    copies = res.get("copy") or []
    fits = {k: fit(copies, k + "_s") for k in ("h2d", "d2h")}
    for gbps in LINKS_GBPS:
        wire_b = 8 / (gbps * 1e9)
        p = {"rtt_us": rtt_s * 1e6}
        for k in ("launch_sync", "call"):
            if k in res:
                p[k + "_median_us"] = res[k]["median_us"] + rtt_s * 1e6
        for d, f in fits.items():
            if not f:
                continue
            rows = []
            for c in copies:
                t = f["a_s"] + rtt_s + c["bytes"] * max(f["b_s_per_byte"], wire_b)
                rows.append({"bytes": c["bytes"], "gbps": c["bytes"] / t / 1e9})
            p[d] = rows
            p[d + "_asymptote_gbps"] = 1 / max(f["b_s_per_byte"], wire_b) / 1e9
        gem = []
        for g in res.get("gemm") or []:
            n, reps, t = g["n"], g["reps"], g["s"]
            gem.append({"n": n, "tflops": 2.0 * n ** 3 * reps / (t + rtt_s) / 1e12})
        p["gemm"] = gem
        out[f"{gbps}gbps"] = p
    out["fit"] = fits
    return out


def fmt(v, nd=1):
    return "n/a" if v is None else f"{v:.{nd}f}"


def ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b


def server_memory(path):
    """The peaks of remote_check.sh's samples ("PID ROLE RSS HWM", KiB) of
    one leg's server, or None when there are none."""
    try:
        with open(path) as f:
            rows = [line.split() for line in f]
    except OSError:
        return None
    ends = [r for r in rows if len(r) == 3 and r[1] == "end" and r[2].isdigit()]
    rows = [r for r in rows if len(r) == 4 and r[2].isdigit() and r[3].isdigit()]
    if not rows and not ends:
        return None
    lis = [r for r in rows if r[1] == "listener"]
    wk = [r for r in rows if r[1] == "worker"]
    return {
        "listener_rss_kib_max": max((int(r[2]) for r in lis), default=0),
        "listener_hwm_kib": max((int(r[3]) for r in lis), default=0),
        # Sampled workers and those the listener logged at their end
        # ("PID end PEAK": the kernel's peak, ru_maxrss).
        "workers": len({r[0] for r in wk} | {r[0] for r in ends}),
        "worker_rss_kib_max": max((int(r[2]) for r in wk), default=0),
        "worker_hwm_kib_max": max([int(r[3]) for r in wk] + [int(r[2]) for r in ends], default=0),
        "worker_peak_kib_at_end": max((int(r[2]) for r in ends), default=0),
        "samples": len(rows),
    }


def main():
    if len(sys.argv) < 2:
        sys.exit("usage: remote_report.py OUT_DIR [--rtt-us R]")
    outdir = sys.argv[1]
    rtt_us = 30.0
    if len(sys.argv) == 4 and sys.argv[2] == "--rtt-us":
        rtt_us = float(sys.argv[3])
    skipped = {}
    try:
        with open(os.path.join(outdir, "skipped.txt")) as f:
            for line in f:
                leg, _, why = line.strip().partition(" ")
                if leg:
                    skipped[leg] = why
    except OSError:
        pass
    legs = {}
    for leg in ("local", "remote", "remote_plain"):
        if leg in skipped:
            legs[leg] = {"skipped": skipped[leg]}
        else:
            legs[leg] = load(os.path.join(outdir, leg + ".json"))
    device = ""
    try:
        with open(os.path.join(outdir, "device.txt")) as f:
            device = f.readline().strip()
    except OSError:
        pass
    result = {"device": device, "legs": legs, "rtt_us_assumed": rtt_us}
    memory = {leg: m for leg in ("remote", "remote_plain")
              if (m := server_memory(os.path.join(outdir, leg + ".mem")))}
    if memory:
        result["server_memory"] = memory
    ok = {k: v for k, v in legs.items() if not v.get("error") and "skipped" not in v}
    if "remote" in ok:
        result["projection"] = project(ok["remote"], rtt_us / 1e6)

    md = [f"Remote GPU check on {device or 'an unknown device'}: client and server on "
          "loopback TCP; `remote` with TLS (the slice's token), `remote_plain` without.", ""]
    for leg, v in legs.items():
        if "skipped" in v:
            md.append(f"- {leg}: SKIPPED: {v['skipped']}")
        elif v.get("error"):
            where = " (the server's side: out/server.log)" if leg != "local" else ""
            md.append(f"- {leg}: FAILED: {v['error']}{where}")
    for leg, m in memory.items():
        md.append(f"- {leg}: the server's host memory: listener VmHWM "
                  f"{m['listener_hwm_kib'] / 1024:.1f} MiB; {m['workers']} worker(s), VmHWM "
                  f"{m['worker_hwm_kib_max'] / 1024:.1f} MiB, VmRSS at most "
                  f"{m['worker_rss_kib_max'] / 1024:.1f} MiB ({m['samples']} samples)")
    md.append("")
    cols = [k for k in ("local", "remote", "remote_plain") if k in ok]
    if not cols:
        md.append("No leg ran to the end: no figures.")
    else:
        md.append("| figure | " + " | ".join(cols) + " | remote / local |")
        md.append("|---" * (len(cols) + 2) + "|")

    def row(name, get, nd=1):
        if not cols:
            return
        vals = [get(ok[c]) for c in cols]
        r = ratio(get(ok["remote"]), get(ok["local"])) if "remote" in ok and "local" in ok else None
        md.append(f"| {name} | " + " | ".join(fmt(v, nd) for v in vals) + f" | {fmt(r, 2)} |")

    def stat(k, f):
        return lambda r: r[k][f] if k in r else None
    row("launch + sync, median (us)", stat("launch_sync", "median_us"))
    row("launch + sync, p99 (us)", stat("launch_sync", "p99_us"))
    row("call with a reply, median (us)", stat("call", "median_us"))
    row("call with a reply, p99 (us)", stat("call", "p99_us"))
    sizes = []
    for c in cols:
        for cp in ok[c].get("copy") or []:
            if cp["bytes"] not in sizes:
                sizes.append(cp["bytes"])

    def copy_of(size, d):
        def g(r):
            for cp in r.get("copy") or []:
                if cp["bytes"] == size:
                    return cp[d + "_gbps"]
            return None
        return g
    for d in ("h2d", "d2h"):
        for s in sizes:
            label = f"{s >> 20} MiB" if s >= 1 << 20 else f"{s >> 10} KiB"
            row(f"{d.upper()} {label} (GB/s)", copy_of(s, d), 2)
    ns = []
    for c in cols:
        for g in ok[c].get("gemm") or []:
            if g["n"] not in ns:
                ns.append(g["n"])

    def gemm_of(n):
        def g(r):
            for x in r.get("gemm") or []:
                if x["n"] == n:
                    return x["tflops"]
            return None
        return g
    for n in ns:
        row(f"bf16 GEMM {n}^3 (TFLOP/s)", gemm_of(n))
    if "projection" in result:
        p = result["projection"]
        md += ["", f"Projected from the remote (TLS) run, a round trip of {rtt_us:g} us "
               "per call (REMOTE.md, \"The GPU check\"):", ""]
        md.append("| link | launch + sync (us) | call (us) | H2D max (GB/s) | D2H max (GB/s) | "
                  + " | ".join(f"GEMM {g['n']}^3 (TFLOP/s)" for g in p[f"{LINKS_GBPS[0]}gbps"]["gemm"])
                  + " |")
        md.append("|---" * (5 + len(p[f"{LINKS_GBPS[0]}gbps"]["gemm"])) + "|")
        for gbps in LINKS_GBPS:
            q = p[f"{gbps}gbps"]
            md.append(f"| {gbps} Gb/s | {fmt(q.get('launch_sync_median_us'))} | "
                      f"{fmt(q.get('call_median_us'))} | {fmt(q.get('h2d_asymptote_gbps'), 2)} | "
                      f"{fmt(q.get('d2h_asymptote_gbps'), 2)} | "
                      + " | ".join(fmt(g["tflops"]) for g in q["gemm"]) + " |")
        f = p["fit"]
        for d in ("h2d", "d2h"):
            if f.get(d):
                md.append("")
                md.append(f"{d.upper()} on loopback: {f[d]['a_s'] * 1e6:.1f} us per copy + "
                          f"{f[d]['b_s_per_byte'] * 1e9:.3f} ns per byte "
                          f"({1 / f[d]['b_s_per_byte'] / 1e9:.2f} GB/s).")
    text = "\n".join(md) + "\n"
    with open(os.path.join(outdir, "result.json"), "w") as f:
        json.dump(result, f, indent=1)
    with open(os.path.join(outdir, "result.md"), "w") as f:
        f.write(text)
    print(text, end="")
    # Exit 1 when a leg that ran failed.
    return 1 if any(v.get("error") for v in legs.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
