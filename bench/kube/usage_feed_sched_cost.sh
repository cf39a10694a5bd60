#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The usage feed's cost to flexpu-scheduler (docs/KUBERNETES.md, "Usage
# feed"): CPU seconds the scheduler spends while NODES kwok nodes of 8 GPUs
# each have their flexpu.io/gpu-usage annotation rewritten every PERIOD
# seconds (8 GPUs with 2 slices each, busy and mean changing at every write,
# as flexpu-node writes them), against the same time with the annotations
# left alone. A writer (python3, one HTTPS connection per thread to the API
# server of test/cluster) plays the node agents; the scheduler has no pods
# to place, so what it spends is the Node watch and the model's update.
#
#   bench/kube/usage_feed_sched_cost.sh BUILD_DIR [NODES] [SECONDS] [PERIOD]
# Defaults: 1000 nodes, 120 s per window, 10 s between two writes of a node.
E2E_NAME=usage-sched-cost E2E_LOGS="scheduler.log writer.log"
nodes="${2:-1000}"
window="${3:-120}"
period="${4:-10}"
# shellcheck source=test/e2e/lib.sh
. "$(dirname "$0")/../../test/e2e/lib.sh"
e2e_up
pki="$work/cluster/pki"
server="$(kubectl config view -o jsonpath='{.clusters[0].cluster.server}')"

cat >"$work/feed.py" <<'EOF'
import json, random, ssl, sys, threading, time, http.client, urllib.parse
server, pki, n, period, mode, secs = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), sys.argv[5], float(sys.argv[6])
u = urllib.parse.urlparse(server)
ctx = ssl.create_default_context(cafile=pki + "/ca.crt")
ctx.load_cert_chain(pki + "/admin.crt", pki + "/admin.key")
def conn():
    return http.client.HTTPSConnection(u.hostname, u.port, context=ctx, timeout=30)
def call(c, method, path, body, ctype):
    c.request(method, path, body=json.dumps(body), headers={"Content-Type": ctype})
    r = c.getresponse()
    data = r.read()
    if r.status >= 300:
        raise SystemExit("%s %s: %d %s" % (method, path, r.status, data[:200]))
def inventory(name):
    return json.dumps([{"uuid": "GPU-%s-%d" % (name, i), "model": "A100", "memory": 85899345920,
                        "numa": i // 4, "group": i // 4} for i in range(8)])
def usage(i):
    gpus = []
    for g in range(8):
        s = [{"pod": "%08d-0000-4000-8000-%012d" % (i, g * 2 + k), "busy": random.randint(0, 500),
              "mean": random.randint(0, 300), "memory": random.randint(0, 1 << 34)} for k in range(2)]
        gpus.append({"index": g, "busy": s[0]["busy"] + s[1]["busy"], "mean": s[0]["mean"] + s[1]["mean"],
                     "memory": s[0]["memory"] + s[1]["memory"], "slices": s})
    return json.dumps({"v": 1, "ts": int(time.time()), "gpus": gpus}, separators=(",", ":"))
def name(i):
    return "feed-%04d" % i
if mode == "create":
    c = conn()
    for i in range(n):
        res = {"cpu": "64", "memory": "512Gi", "pods": "110", "flexpu.io/gpu": "128",
               "flexpu.io/gpu-cores": "800", "flexpu.io/gpu-memory": "640Gi"}
        call(c, "POST", "/api/v1/nodes", {"apiVersion": "v1", "kind": "Node", "metadata": {
            "name": name(i), "labels": {"type": "kwok"}, "annotations": {
                "kwok.x-k8s.io/node": "fake", "flexpu.io/gpus": inventory(name(i)),
                "flexpu.io/gpu-usage": usage(i)}},
            "status": {"allocatable": res, "capacity": res}}, "application/json")
    sys.exit(0)
# mode write: every node once per period, spread evenly, for secs seconds.
threads, done = 4, [0] * 4
def run(t):
    c = conn()
    start = time.time()
    k = 0
    while True:
        i = t + k * threads
        due = start + (k * threads + t) * period / n
        if due - start >= secs:
            break
        delay = due - time.time()
        if delay > 0:
            time.sleep(delay)
        call(c, "PATCH", "/api/v1/nodes/" + name(i % n),
             {"metadata": {"annotations": {"flexpu.io/gpu-usage": usage(i % n)}}},
             "application/merge-patch+json")
        done[t] += 1
        k += 1
ts = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
t0 = time.time()
for t in ts: t.start()
for t in ts: t.join()
print("%d writes in %.1f s" % (sum(done), time.time() - t0))
EOF

python3 "$work/feed.py" "$server" "$pki" "$nodes" "$period" create 0 >"$work/writer.log" 2>&1 ||
  fail "creating $nodes nodes: $(cat "$work/writer.log")"
start_scheduler --log-level info
synced() { grep -q "nodes=$nodes " "$work/scheduler.log"; }
wait_for 120 "the scheduler did not model $nodes nodes" synced
sleep 10 # its first list digested
cpu() { awk '{print $14 + $15}' "/proc/$sched_pid/stat"; }
hz="$(getconf CLK_TCK)"

c0="$(cpu)"
sleep "$window"
c1="$(cpu)"
python3 "$work/feed.py" "$server" "$pki" "$nodes" "$period" write "$window" >>"$work/writer.log" 2>&1 ||
  fail "the writer: $(cat "$work/writer.log")"
c2="$(cpu)"
writes="$(tail -n 1 "$work/writer.log" | awk '{print $1}')"
kill -0 "$sched_pid" || fail "the scheduler died"
base="$(echo "($c1 - $c0) / $hz" | bc -l)"
feed="$(echo "($c2 - $c1) / $hz" | bc -l)"
printf 'nodes %d (8 GPUs, 2 slices each), window %d s, a write per node every %d s\n' \
  "$nodes" "$window" "$period"
printf 'scheduler CPU without usage writes: %.2f s (%.2f%% of a core)\n' "$base" \
  "$(echo "$base * 100 / $window" | bc -l)"
printf 'scheduler CPU with %d usage writes: %.2f s (%.2f%% of a core); per write %.0f us over the idle window\n' \
  "$writes" "$feed" "$(echo "$feed * 100 / $window" | bc -l)" \
  "$(echo "($feed - $base) * 1000000 / $writes" | bc -l)"
