#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The remote path end to end on loopback (docs/REMOTE.md): flexpu-remoted
# with its workers on the fake driver under libflexpu-cuda.so (a 64 MiB
# quota, 16 MiB of it the context, and a 50% compute cap, so that the
# arbiter charges the tenant's GPU time), and remote_app, a plain CUDA program,
# run unmodified against the client libcudart.so.12.
#
# usage: remote_test.sh SERVER CLIENT_LIB_DIR APP RUNTIME_LIB FAKE_LIB_PATH SMI
# (FAKE_LIB_PATH: the fake libcuda's and libcublas's directories, ':'-separated)
set -u
server_bin=$1 client_dir=$2 app=$3 runtime_lib=$4 fake_dir=$5 smi=$6

work=$(mktemp -d /tmp/flexpu-remote-test.XXXXXX)
spid=
fails=0
cleanup() {
    [ -n "$spid" ] && kill -KILL -- "-$spid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

fail() {
    echo "FAIL: $*"
    echo "--- server log"; tail -n 30 "$work/server.log" 2>/dev/null
    fails=$((fails + 1))
}

head -c 32 /dev/urandom | base64 > "$work/token"
echo "wrong-token-wrong-token-wrong" > "$work/bad-token"

# Starts the server in its own process group (so the test can kill or stop
# it with its workers) and waits for its port.
start_server() {
    rm -f "$work/port"
    setsid env LD_PRELOAD="$runtime_lib" LD_LIBRARY_PATH="$fake_dir" \
        FLEXPU_TENANT=remote-test FLEXPU_MEMORY_LIMIT=64Mi FLEXPU_CONTEXT_OVERHEAD=16Mi \
        FLEXPU_COMPUTE_CAP=50 \
        FLEXPU_STATE_DIR="$work/state" FAKECUDA_DIR="$work/fake" \
        ASAN_OPTIONS=detect_leaks=0 \
        "$server_bin" --listen 127.0.0.1:0 --token-file "$work/token" \
        --port-file "$work/port" >>"$work/server.log" 2>&1 &
    spid=$!
    for _ in $(seq 100); do
        [ -s "$work/port" ] && break
        sleep 0.1
    done
    port=$(cat "$work/port" 2>/dev/null)
    [ -n "$port" ] || { fail "the server did not start"; exit 1; }
}

stop_server() {
    kill -KILL -- "-$spid" 2>/dev/null
    wait "$spid" 2>/dev/null
    spid=
}

# Runs the app against the server; a hang is a failure (timeout).
app() {
    timeout 60 env LD_LIBRARY_PATH="$client_dir" FLEXPU_REMOTE_ADDR="127.0.0.1:$port" \
        FLEXPU_REMOTE_TOKEN_FILE="${token_file:-$work/token}" FLEXPU_REMOTE_TIMEOUT_MS="${timeout_ms:-10000}" \
        ASAN_OPTIONS=detect_leaks=0 "$app" "$@"
}

# The same, replacing the calling (background) shell, so that $! is the
# app's own pid and the test can kill it.
app_exec() {
    exec env LD_LIBRARY_PATH="$client_dir" FLEXPU_REMOTE_ADDR="127.0.0.1:$port" \
        FLEXPU_REMOTE_TOKEN_FILE="$work/token" ASAN_OPTIONS=detect_leaks=0 "$app" "$@"
}

# Waits until the server has no worker left (a client that left is freed).
wait_workers_gone() {
    for _ in $(seq 100); do
        [ -z "$(pgrep -P "$spid")" ] && return 0
        sleep 0.1
    done
    return 1
}

mkdir -p "$work/state" "$work/fake"
start_server

# 1. Data come back right; bad pointers are refused.
out=$(app basic 2>&1) || fail "basic: $out"
echo "$out"

# 1a. cuBLAS by handle (the workers load the fake libcublas.so.12).
out=$(app blas 2>&1) || fail "blas: $out"
echo "$out"

# 1a'. Threads sharing the process's connection, each its own stream.
out=$(app threads 2>&1) || fail "threads: $out"
echo "$out"

# 1b. Garbage on the wire: the worker drops the connection, the server goes on.
for i in 1 2 3 4 5; do
    head -c $((i * 700)) /dev/urandom > "/dev/tcp/127.0.0.1/$port" 2>/dev/null
done
# A valid HELLO header whose payload lies about its token's length.
printf '\x10\x00\x00\x00\x01\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\xff\xff\x00\x00AAAAAAAA' \
    > "/dev/tcp/127.0.0.1/$port" 2>/dev/null
wait_workers_gone || fail "a worker outlived garbage"
out=$(app basic 2>&1) || fail "basic after garbage: $out"

# 1c. The server speaks TLS only: a plaintext HELLO carrying the right token
# gets no plaintext reply.
tok=$(tr -d '\n' < "$work/token")
hex() { printf '\\x%02x\\x%02x\\x%02x\\x%02x' $(($1 & 255)) $(($1 >> 8 & 255)) 0 0; }
exec 3<>"/dev/tcp/127.0.0.1/$port"
printf "$(hex $((8 + ${#tok})))\\x01\\x00\\x00\\x00\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x00$(hex 1)$(hex ${#tok})%s" "$tok" >&3
answer=$(timeout 5 head -c 6 <&3 2>/dev/null | od -An -tx1 | tr -d ' \n')
exec 3<&-
[ "$answer" != "100000000180" ] || fail "the server answered a plaintext HELLO"
wait_workers_gone || fail "a worker outlived a plaintext client"

# 2. The quota: 64 MiB, 16 of them the context: 48 MiB in 8 MiB blocks.
wait_workers_gone || fail "a worker outlived its client"
out=$(app quota 2>&1) || fail "quota: $out"
echo "$out"
[[ $out == *"refused after 48 MiB"* ]] || fail "quota: expected a refusal after 48 MiB: $out"

# 3. A client killed while holding memory: its worker frees it all.
wait_workers_gone || fail "a worker outlived its client"
app_exec hold 40 > "$work/hold.out" 2>&1 &
hpid=$!
for _ in $(seq 100); do grep -q holding "$work/hold.out" && break; sleep 0.1; done
grep -q holding "$work/hold.out" || fail "hold: $(cat "$work/hold.out")"
# The remote tenant is a local tenant of the GPU: flexpu-smi shows its worker
# holding the 40 MiB and the context against the slice's quota.
smi_out=$(LD_LIBRARY_PATH="$fake_dir" "$smi" --state-dir "$work/state" 2>&1)
echo "$smi_out" | grep -Eq "remote-test +64.0 MiB +56.0 MiB" ||
    fail "flexpu-smi does not show the remote tenant's 56 MiB: $smi_out"
echo "$smi_out" | grep -q "flexpu-remoted" || fail "flexpu-smi shows no worker: $smi_out"
kill -KILL "$hpid"; wait "$hpid" 2>/dev/null
wait_workers_gone || fail "the killed client's worker did not exit"
out=$(app quota 2>&1) || fail "quota after a killed client: $out"
[[ $out == *"refused after 48 MiB"* ]] || fail "a killed client's memory was not freed: $out"
echo "after a killed client: $out"

# 3b. Two clients of the slice share its quota, as two processes of a local
# container do: one holds 24 MiB (and its worker's 16 MiB context), so the
# other, after its own context, gets one 8 MiB block.
wait_workers_gone || fail "a worker outlived its client"
app_exec hold 24 > "$work/hold2.out" 2>&1 &
hpid=$!
for _ in $(seq 100); do grep -q holding "$work/hold2.out" && break; sleep 0.1; done
out=$(app quota 2>&1) || fail "quota beside a holder: $out"
[[ $out == *"refused after 8 MiB"* ]] || fail "two clients do not share the quota: $out"
echo "beside a client holding 24 MiB: $out"
kill -KILL "$hpid"; wait "$hpid" 2>/dev/null
wait_workers_gone || fail "the killed client's worker did not exit"

# 4. A wrong token, no token: refused, as CUDA errors.
out=$(token_file="$work/bad-token" app nodevice 2>&1) || fail "bad token: $out"
[[ $out == *"nodevice: cudaErrorDevicesUnavailable"* ]] || fail "bad token accepted: $out"
out=$(token_file=/dev/null app nodevice 2>&1) || fail "no token: $out"
[[ $out == *"nodevice: cudaErrorDevicesUnavailable"* ]] || fail "no token accepted: $out"

# 5. The server killed mid-run: CUDA errors, not a hang.
app loop > "$work/loop.out" 2>&1 &
lpid=$!
for _ in $(seq 100); do grep -q running "$work/loop.out" && break; sleep 0.1; done
sleep 0.3
# The remote kernels ran through the runtime's arbiter: the tenant has GPU
# time (2 ms kernels, a few dozen of them by now).
gpu_time=$(LD_LIBRARY_PATH="$fake_dir" "$smi" --state-dir "$work/state" 2>&1 |
    awk '$1 == "remote-test" { print $9 }')
[ -n "$gpu_time" ] && [ "$gpu_time" != "0.0s" ] ||
    fail "the remote tenant has no GPU time in flexpu-smi: '$gpu_time'"
echo "the remote tenant's GPU time so far: $gpu_time"
stop_server
wait "$lpid"; rc=$?
[ "$rc" = 3 ] || fail "server killed: app exit $rc: $(cat "$work/loop.out")"
grep -q "loop: cudaErrorDevicesUnavailable" "$work/loop.out" ||
    fail "server killed: $(cat "$work/loop.out")"
grep "loop:" "$work/loop.out"

# 6. The server stopped (a silent network): the deadline ends the wait.
start_server
timeout_ms=1000 app loop > "$work/loop2.out" 2>&1 &
lpid=$!
for _ in $(seq 100); do grep -q running "$work/loop2.out" && break; sleep 0.1; done
sleep 0.3
kill -STOP -- "-$spid"
wait "$lpid"; rc=$?
[ "$rc" = 3 ] || fail "server stopped: app exit $rc: $(cat "$work/loop2.out")"
grep -q "loop: cudaErrorDevicesUnavailable" "$work/loop2.out" ||
    fail "server stopped: $(cat "$work/loop2.out")"
grep "loop:" "$work/loop2.out"
stop_server

# 7. No server at all.
out=$(app nodevice 2>&1) || fail "no server: $out"
[[ $out == *"nodevice: cudaErrorDevicesUnavailable"* ]] || fail "no server: $out"

# 8. Nothing in the server's workers tripped a sanitizer (sanitized builds).
if grep -q "Sanitizer\|runtime error" "$work/server.log"; then
    fail "the server's log has sanitizer reports"
fi

[ "$fails" = 0 ] && echo "remote_test: all passed"
exit "$fails"
