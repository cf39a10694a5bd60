#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The remote path on one GPU machine (docs/REMOTE.md, "The GPU check"): the
# client libraries and flexpu-remoted on loopback TCP against NVIDIA's
# runtime and cuBLAS locally: call latency, copy bandwidth, bf16 GEMM
# throughput, and what 25 and 100 Gb/s links would give.
#
#   test/gpu/remote_check.sh prepare [BUILD]   # here: Release build in BUILD
#                       # (default build-rel), everything the run needs copied
#                       # into BUILD/gpu-remote/, the device tool's call printed
#   test/gpu/remote_check.sh run DIR           # on the GPU machine (DIR: that
#                       # gpu-remote folder), from the checkout root
#   test/gpu/remote_check.sh fake BUILD FAKE_LIB_PATH
#                       # the same steps here, the server's workers on the fake
#                       # driver (FAKE_LIB_PATH: the fake libcuda's and fake
#                       # libcublas's directories, ':'-separated), small sizes
#   test/gpu/remote_check.sh save OUT.tgz      # here: unpack a run's results
#                       # into bench/results/remote-<device>-<commit>/
#
# Steps of `run` (outputs under DIR/out/), each under a timeout shortened
# when earlier steps ran long so that the whole stays under RC_BUDGET_S
# (330 s; each can add 5 s to kill); a failed or skipped step does not stop
# the others:
#   libs     the binaries' shared libraries (libssl.so.3 and libcrypto.so.3:
#            the carried Debian copies when the machine has none)
#   nvcc     the kernel as a fat binary (no nvcc: the launch latency is
#            SKIPPED, the rest measured with --no-kernel)       limit 120 s
#   local    remote_bench on NVIDIA's libcudart and libcublas   limit  90 s
#   remote   the same through the client libraries and a flexpu-remoted
#            under libflexpu-cuda.so (8 GiB quota), TLS keyed by a token
#                                                                limit 120 s
#   plain    the same without a token (plaintext TCP)           limit 120 s
#   report   out/result.{json,md}                                limit  20 s
# While each remote leg runs, the server's listener and workers have their
# VmRSS and VmHWM sampled (out/LEG.mem; result.json's server_memory).
# Exit 0 when every step that ran passed.
set -uo pipefail
cd "$(dirname "$0")/../.."

here=$(pwd)
mode=${1:-}

# step NAME LIMIT RESERVE CMD...: CMD under a timeout of LIMIT seconds, or
# less so that RESERVE seconds stay for the steps after it.
step() {
    local name=$1 limit=$2 reserve=$3 t0 rc=0 st left
    shift 3
    t0=$(date +%s)
    left=$((deadline - t0 - reserve))
    [ "$left" -lt "$limit" ] && limit=$left
    if [ "$limit" -lt 10 ]; then
        printf '%-8s %-26s\n' "$name" "NOT RUN (budget spent)" >>"$sum"
        failed=1
        return 1
    fi
    timeout -k 5 "$limit" "$@" || rc=$?
    case $rc in
    0) st=ok ;;
    124 | 137) st=TIMEOUT ;;
    *) st="FAIL (exit $rc)" ;;
    esac
    [ "$rc" -eq 0 ] || failed=1
    printf '%-8s %-26s %4d s (limit %d s)\n' "$name" "$st" $(($(date +%s) - t0)) "$limit" >>"$sum"
    return "$rc"
}

skip() { # LEG REASON
    echo "$1 $2" >>"$out/skipped.txt"
    printf '%-8s SKIPPED: %s\n' "$1" "$2" >>"$sum"
}

# The libraries BIN needs that the loader cannot find ("" when none).
missing_libs() {
    LD_LIBRARY_PATH="${2:-}" ldd "$1" 2>&1 | awk '/not found/ {print $1} /version .* not found/ {print}' | sort -u | tr '\n' ' '
}

# NVIDIA's libcublas.so.N and a libcudart.so.N of the same N, searched where
# the CUDA toolkit and PyTorch's wheels put them; prints "CUDART CUBLAS".
find_nvidia() {
    local dirs=() d py
    [ -n "${CUDA_HOME:-}" ] && dirs+=("$CUDA_HOME/lib64" "$CUDA_HOME/lib")
    dirs+=(/usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib /usr/lib/x86_64-linux-gnu)
    py=$(python3 -c 'import site; print(" ".join(site.getsitepackages()))' 2>/dev/null)
    for d in $py; do
        dirs+=("$d"/nvidia/cu1*/lib "$d/nvidia/cublas/lib" "$d/nvidia/cuda_runtime/lib")
    done
    local n blas rt
    for n in 13 12; do
        blas= rt=
        for d in "${dirs[@]}"; do
            [ -z "$blas" ] && [ -e "$d/libcublas.so.$n" ] && blas="$d/libcublas.so.$n"
            [ -z "$rt" ] && [ -e "$d/libcudart.so.$n" ] && rt="$d/libcudart.so.$n"
        done
        if [ -n "$blas" ] && [ -n "$rt" ]; then
            echo "$rt $blas"
            return 0
        fi
    done
    return 1
}

# Starts flexpu-remoted (TOKEN_FILE or "" for none) in its own process group
# and waits for its port; sets spid and port.
start_server() {
    local token=$1 tokarg=()
    [ -n "$token" ] && tokarg=(--token-file "$token")
    rm -f "$work/port"
    # The machine's own LD_LIBRARY_PATH stays (libcuda.so.1 may be found there).
    setsid env LD_PRELOAD="$d/libflexpu-cuda.so" LD_LIBRARY_PATH="$server_path${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
        FLEXPU_REMOTE_CUBLAS="$server_cublas" FLEXPU_TENANT=remote-check \
        FLEXPU_MEMORY_LIMIT="$quota" "${server_env[@]}" FLEXPU_STATE_DIR="$work/state" FAKECUDA_DIR="$work/fake" \
        ASAN_OPTIONS=detect_leaks=0 \
        "$d/flexpu-remoted" --listen 127.0.0.1:0 "${tokarg[@]}" --port-file "$work/port" \
        >>"$out/server.log" 2>&1 &
    spid=$!
    for _ in $(seq 100); do
        [ -s "$work/port" ] && break
        sleep 0.1
    done
    port=$(cat "$work/port" 2>/dev/null)
    [ -n "$port" ]
}

stop_server() {
    [ -n "${spid:-}" ] && kill -KILL -- "-$spid" 2>/dev/null
    [ -n "${spid:-}" ] && wait "$spid" 2>/dev/null
    spid=
}

# The server's host memory while a leg runs (docs/REMOTE.md, "The servers'
# host memory": a real worker's is not measured yet): every 0.2 s, the
# listener's and each worker's VmRSS and VmHWM (KiB) from /proc, appended
# to out/LEG.mem as "PID ROLE RSS HWM" (remote_report.py keeps the peaks).
sample_mem() {
    local f="$out/$1.mem" p role
    while kill -0 "$spid" 2>/dev/null; do
        for p in "$spid" $(pgrep -P "$spid"); do
            role=worker
            [ "$p" = "$spid" ] && role=listener
            awk -v p="$p" -v role="$role" '/^VmRSS:/ { r = $2 } /^VmHWM:/ { h = $2 }
                END { if (h != "") print p, role, r, h }' "/proc/$p/status" 2>/dev/null
        done >>"$f"
        sleep 0.2
    done
}

# One remote leg: LEG LIMIT RESERVE TOKEN_FILE.
remote_leg() {
    local leg=$1 limit=$2 reserve=$3 token=$4
    if ! start_server "$token"; then
        echo "{\"label\":\"$leg\",\"error\":\"flexpu-remoted did not start (server.log)\"}" >"$out/$leg.json"
        printf '%-8s %-26s\n' "$leg" "FAIL (server)" >>"$sum"
        failed=1
        stop_server
        return
    fi
    local log_at
    log_at=$(wc -l <"$out/server.log")
    sample_mem "$leg" &
    local mpid=$!
    step "$leg" "$limit" "$reserve" env LD_LIBRARY_PATH="$client_path${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
        FLEXPU_REMOTE_ADDR="127.0.0.1:$port" FLEXPU_REMOTE_TOKEN_FILE="$token" \
        FLEXPU_REMOTE_TIMEOUT_MS=30000 ASAN_OPTIONS=detect_leaks=0 \
        "$d/remote_bench" --cudart "$d/client/libcudart.so.12" \
        --cublas "$d/client/libcublas.so.12" --label "$leg" "${kernel_args[@]}" "${size_args[@]}" \
        >"$out/$leg.json" 2>"$out/$leg.log"
    kill "$mpid" 2>/dev/null
    wait "$mpid" 2>/dev/null
    # The workers' peaks as the listener logs them when it reaps each
    # (flexpu-remoted's "client's worker ended ... peak_rss_kib=N"): a
    # worker shorter than a sample is counted too. Waited for (at most
    # 5 s) before the server is stopped, which would take the log with it.
    local i
    for i in $(seq 50); do
        sed -n "$((log_at + 1)),\$p" "$out/server.log" >"$out/server.log.$leg"
        grep -q "client's worker ended" "$out/server.log.$leg" && break
        sleep 0.1
    done
    sed -n "s/.*client's worker ended.* worker=\([0-9]*\) .*peak_rss_kib=\([0-9]*\).*/\1 end \2/p" \
        "$out/server.log.$leg" >>"$out/$leg.mem"
    rm -f "$out/server.log.$leg"
    stop_server
}

# The steps, on the GPU (FAKE=0) or on the fake driver (FAKE=1).
run_all() {
    out="$d/out"
    rm -rf "$out" && mkdir -p "$out"
    work=$(mktemp -d /tmp/flexpu-remote-check.XXXXXX)
    spid=
    trap 'stop_server; rm -rf "$work"' EXIT
    sum="$out/summary.txt"
    failed=0
    deadline=$(($(date +%s) + ${RC_BUDGET_S:-330}))
    cp "$d/commit.txt" "$out/" 2>/dev/null || true
    if [ "$FAKE" = 1 ]; then
        echo "fake driver" >"$out/device.txt"
    else
        timeout 20 nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader \
            >"$out/device.txt" 2>/dev/null || echo "unknown (nvidia-smi failed)" >"$out/device.txt"
    fi
    echo "device: $(head -n 1 "$out/device.txt"); commit: $(cat "$out/commit.txt" 2>/dev/null)" >"$sum"

    # Shared libraries: the Debian libssl/libcrypto carried in lib/ stand in
    # for missing ones; anything else missing is a clear failure.
    client_path="$d/client" server_path=""
    local miss
    miss="$(missing_libs "$d/flexpu-remoted")$(missing_libs "$d/client/libcudart.so.12" "$d/client")"
    if [ -n "$miss" ] && [ -d "$d/lib" ]; then
        echo "libs: missing here: $miss; using the carried $d/lib" >>"$sum"
        client_path="$d/client:$d/lib" server_path="$d/lib"
        miss="$(missing_libs "$d/flexpu-remoted" "$server_path")$(missing_libs "$d/client/libcudart.so.12" "$client_path")"
    fi
    if [ -n "$miss" ]; then
        echo "libs     FAIL: the binaries cannot load here: $miss" | tee -a "$sum"
        echo "(ldd $d/flexpu-remoted, built on Debian 12: glibc 2.34 or later, libssl.so.3)" | tee -a "$sum"
        return 1
    fi
    echo "libs     ok" >>"$sum"

    local rt="" blas=""
    quota=8Gi server_env=()
    if [ "$FAKE" = 1 ]; then
        server_path="$FAKE_LIB_PATH${server_path:+:$server_path}"
        server_cublas=libcublas.so.12
        quota=512Mi
        server_env=(FLEXPU_CONTEXT_OVERHEAD=16Mi) # the fake's context is not an H100's
        kernel_args=(--fake-kernel)
        size_args=(--calls 200 --copy-max-mib 16 --copy-total-mib 32 --gemm 32,64 --gemm-flop 1e6)
        skip local "NVIDIA's runtime cannot run on the fake driver (its export tables, docs/RUNTIME.md)"
    else
        size_args=()
        if read -r rt blas < <(find_nvidia); then
            echo "cuBLAS   $blas (runtime $rt)" >>"$sum"
            server_path="$(dirname "$blas")${server_path:+:$server_path}"
            server_cublas=$(basename "$blas")
        else
            echo "cuBLAS   none found: no GEMMs (CUDA_HOME, /usr/local/cuda, the wheels' nvidia/)" >>"$sum"
            server_cublas=libcublas.so.12
            size_args=(--gemm none)
        fi
        # The GPU's own architecture (-arch=native needs nvcc 11.6).
        local cc arch=-arch=native
        cc=$(timeout 20 nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null |
            head -n 1 | tr -d '. ')
        [[ "$cc" =~ ^[0-9]+$ ]] && arch="-arch=sm_$cc"
        if command -v nvcc >/dev/null && step nvcc 120 240 nvcc -fatbin "$arch" \
            -o "$work/kernel.fatbin" test/gpu/remote_kernel.cu >"$out/nvcc.log" 2>&1; then
            kernel_args=(--fatbin "$work/kernel.fatbin")
        elif command -v nvcc >/dev/null; then
            kernel_args=(--no-kernel)
            echo "nvcc failed (out/nvcc.log): launch latency SKIPPED" >>"$sum"
        else
            kernel_args=(--no-kernel)
            echo "nvcc     SKIPPED: no nvcc on PATH: launch latency not measured" >>"$sum"
        fi
        if [ -n "$rt" ]; then
            step local 90 200 env LD_LIBRARY_PATH="$(dirname "$blas"):$(dirname "$rt")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
                "$d/remote_bench" --cudart "$rt" --cublas "$blas" --label local \
                "${kernel_args[@]}" "${size_args[@]}" >"$out/local.json" 2>"$out/local.log"
        else
            skip local "no NVIDIA libcudart/libcublas of one major version found"
        fi
    fi
    # A token file only its owner reads (the server and client refuse others).
    (umask 077 && head -c 32 /dev/urandom | base64 >"$work/token")
    chmod 600 "$work/token" # flexpu-remoted refuses a token others may read
    remote_leg remote 120 130 "$work/token"
    remote_leg remote_plain 120 10 ""
    step report 20 0 python3 "$d/remote_report.py" "$out" >"$out/report.txt" 2>&1
    grep -i "sanitizer\|runtime error" "$out/server.log" >/dev/null &&
        { echo "server   sanitizer report in out/server.log" >>"$sum"; failed=1; }
    for f in summary.txt report.txt; do
        echo "==== $f"
        cat "$out/$f" 2>/dev/null || echo "(missing)"
    done
    return "$failed"
}

case "$mode" in
prepare)
    b=${2:-build-rel}
    cmake -S . -B "$b" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null &&
        ninja -C "$b" -j "${JOBS:-2}" flexpu-remoted flexpu-cudart flexpu-cublas flexpu-cuda \
            remote_bench >/dev/null || { echo "build failed in $b" >&2; exit 1; }
    d="$b/gpu-remote"
    rm -rf "$d" && mkdir -p "$d/client" "$d/lib"
    cp "$b/flexpu-remoted" "$b/libflexpu-cuda.so" "$b/test/remote/remote_bench" \
        test/gpu/remote_report.py "$d/"
    cp -L "$b/remote/libcudart.so.12" "$b/remote/libcublas.so.12" "$d/client/"
    # OpenSSL 3 from this Debian, for a machine without it (see `run`).
    for l in libssl.so.3 libcrypto.so.3; do
        p=$(ldd "$b/flexpu-remoted" | awk -v l="$l" '$1 == l {print $3}')
        [ -n "$p" ] && cp -L "$p" "$d/lib/"
    done
    commit=$(git rev-parse --short=12 HEAD)
    [ -z "$(git status --porcelain -- src test/gpu test/remote CMakeLists.txt)" ] || commit="$commit+dirty"
    echo "$commit" >"$d/commit.txt"
    cat <<EOF
prepared $d/ (commit $commit, $(du -sh "$d" | cut -f1))
device tool, one call:
  carry:     ["$d"]
  timeout_s: 420
  command:   bash test/gpu/remote_check.sh run $d; rc=\$?; tar czf "\$OUT/remote-out.tgz" -C $d out; exit \$rc
then here: test/gpu/remote_check.sh save <files_at>/remote-out.tgz
EOF
    ;;
run)
    d=${2:?usage: remote_check.sh run DIR}
    [ -x "$d/flexpu-remoted" ] && [ -x "$d/remote_bench" ] ||
        { echo "$d: no flexpu-remoted or remote_bench: run 'remote_check.sh prepare' here first and carry it" >&2; exit 2; }
    d=$(realpath "$d")
    FAKE=0
    run_all
    ;;
fake)
    b=${2:?usage: remote_check.sh fake BUILD FAKE_LIB_PATH}
    FAKE_LIB_PATH=${3:?usage: remote_check.sh fake BUILD FAKE_LIB_PATH}
    b=$(realpath "$b")
    d=$(mktemp -d /tmp/flexpu-remote-fake.XXXXXX)
    mkdir -p "$d/client"
    ln -s "$b/flexpu-remoted" "$b/libflexpu-cuda.so" "$b/test/remote/remote_bench" "$d/"
    ln -s "$here/test/gpu/remote_report.py" "$d/"
    ln -s "$b/remote/libcudart.so.12" "$b/remote/libcublas.so.12" "$d/client/"
    FAKE=1
    run_all
    rc=$?
    # What the run must have produced: a remote leg over TLS and one in
    # plaintext, each with the checked figures, and the projections.
    python3 - "$d/out" <<'EOF' || rc=1
import json, sys
r = json.load(open(sys.argv[1] + "/result.json"))
for leg in ("remote", "remote_plain"):
    x = r["legs"][leg]
    assert x.get("error") is None, (leg, x)
    assert x["launch_sync"]["n"] == 200 and x["call"]["n"] == 200, leg
    assert [c["bytes"] for c in x["copy"]] == [4096, 65536, 1048576, 16777216], leg
    assert [g["n"] for g in x["gemm"]] == [32, 64], leg
    # The server's host memory was sampled: the listener and a worker.
    m = r["server_memory"][leg]
    assert m["listener_hwm_kib"] > 0 and m["workers"] >= 1 and m["worker_hwm_kib_max"] > 0, (leg, m)
assert "skipped" in r["legs"]["local"]
p = r["projection"]
assert p["25gbps"]["h2d_asymptote_gbps"] <= 25 / 8 + 1e-9
assert p["100gbps"]["launch_sync_median_us"] > r["legs"]["remote"]["launch_sync"]["median_us"]
print("fake: result.json as expected")
EOF
    if [ "$rc" -eq 0 ] && [ -z "${RC_KEEP:-}" ]; then rm -rf "$d"; else echo "kept $d/out (server.log)"; fi
    exit "$rc"
    ;;
save)
    exec test/gpu/save_out.sh remote "${2:?usage: remote_check.sh save remote-out.tgz}"
    ;;
*)
    echo "usage: remote_check.sh prepare [BUILD] | run DIR | fake BUILD FAKE_LIB_PATH | save OUT.tgz" >&2
    exit 2
    ;;
esac
