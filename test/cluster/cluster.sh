#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# A real Kubernetes control plane on loopback for tests and the demo: etcd,
# kube-apiserver, kwok (fake kubelets) and, on request, the default
# kube-scheduler, all built from upstream by build-binaries.sh.
#
#   cluster.sh up DIR        start; writes DIR/admin.kubeconfig and DIR/env
#                            (CLUSTER_AUDIT_PODS=1: DIR/audit.log, below)
#   cluster.sh scheduler DIR start the default kube-scheduler too
#   cluster.sh down DIR      stop everything started in DIR
#
# Certificates are generated per cluster (a CA, the server certificate and an
# admin client certificate in system:masters). Ports are picked free.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cmd="${1:-}"
dir="${2:-}"
[ -n "$cmd" ] && [ -n "$dir" ] || { echo "usage: $0 up|scheduler|down|port DIR" >&2; exit 2; }

# A port no one listens on, below the kernel's ephemeral range: a port in
# that range may be the local end of one of the many client connections a
# test opens (or of one in TIME_WAIT), which no connect test sees, and a
# listener cannot bind it (etcd failed so in CI once).
free_port() {
  local p low=32768 lo=10000
  read -r low _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || low=32768
  [ "$low" -gt $((lo + 1000)) ] || { lo=1024; [ "$low" -gt 2048 ] || low=65535; }
  for _ in $(seq 1 200); do
    p=$(( lo + RANDOM % (low - lo) ))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      echo "$p"
      return
    fi
  done
  echo "cluster: no free port" >&2
  exit 1
}

start() { # name command...
  local name="$1"
  shift
  "$@" >"$dir/$name.log" 2>&1 &
  echo $! >"$dir/$name.pid"
}

wait_ready() { # what url [curl args...]
  local what="$1" url="$2"
  shift 2
  for _ in $(seq 1 300); do
    if curl -fsS --max-time 2 "$@" "$url" >/dev/null 2>&1; then
      return 0
    fi
    kill -0 "$(cat "$dir/$what.pid")" 2>/dev/null || break
    sleep 0.2
  done
  echo "cluster: $what did not become ready; its log:" >&2
  tail -n 30 "$dir/$what.log" >&2 || true
  exit 1
}

certs() {
  local c="$dir/pki"
  mkdir -p "$c"
  openssl req -x509 -newkey rsa:2048 -nodes -keyout "$c/ca.key" -out "$c/ca.crt" -days 3 \
    -subj "/CN=flexpu-test-ca" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -keyout "$c/server.key" -out "$c/server.csr" \
    -subj "/CN=kube-apiserver" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc\nextendedKeyUsage=serverAuth\n' >"$c/server.ext"
  openssl x509 -req -in "$c/server.csr" -CA "$c/ca.crt" -CAkey "$c/ca.key" -CAcreateserial \
    -out "$c/server.crt" -days 3 -extfile "$c/server.ext" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -keyout "$c/admin.key" -out "$c/admin.csr" \
    -subj "/O=system:masters/CN=admin" 2>/dev/null
  printf 'extendedKeyUsage=clientAuth\n' >"$c/client.ext"
  openssl x509 -req -in "$c/admin.csr" -CA "$c/ca.crt" -CAkey "$c/ca.key" -CAcreateserial \
    -out "$c/admin.crt" -days 3 -extfile "$c/client.ext" 2>/dev/null
  openssl genrsa -out "$c/sa.key" 2048 2>/dev/null
  openssl rsa -in "$c/sa.key" -pubout -out "$c/sa.pub" 2>/dev/null
}

kubeconfig() { # server
  local c="$dir/pki"
  cat >"$dir/admin.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: test
  cluster:
    server: $1
    certificate-authority: $c/ca.crt
users:
- name: admin
  user:
    client-certificate: $c/admin.crt
    client-key: $c/admin.key
contexts:
- name: test
  context: {cluster: test, user: admin, namespace: default}
current-context: test
EOF
}

case "$cmd" in
up)
  bin="$("$here/build-binaries.sh")"
  mkdir -p "$dir"
  dir="$(cd "$dir" && pwd)"
  [ -f "$dir/apiserver.pid" ] && kill -0 "$(cat "$dir/apiserver.pid")" 2>/dev/null && {
    echo "cluster: already running in $dir" >&2
    exit 0
  }
  certs
  etcd_port=$(free_port)
  peer_port=$(free_port)
  api_port=$(free_port)
  # No fsync: a test cluster trades durability across power loss for speed.
  start etcd "$bin/etcd" --name test --data-dir "$dir/etcd" \
    --listen-client-urls "http://127.0.0.1:$etcd_port" \
    --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$peer_port" \
    --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
    --initial-cluster "test=http://127.0.0.1:$peer_port" \
    --unsafe-no-fsync --quota-backend-bytes 4294967296 --log-level warn
  wait_ready etcd "http://127.0.0.1:$etcd_port/health"
  # No controller manager runs here: ServiceAccount admission would reject
  # pods until one creates each namespace's default account, and the
  # not-ready taint TaintNodesByCondition puts on new nodes would never be
  # lifted. kwok marks the nodes Ready itself.
  # CLUSTER_AUDIT_PODS=1: the API server logs every list and watch of pods
  # (who, with which query) to DIR/audit.log, for a test to check what a
  # component asked (remote_e2e: the GPU node's label selector).
  audit=()
  if [ -n "${CLUSTER_AUDIT_PODS:-}" ]; then
    cat >"$dir/audit-policy.yaml" <<'EOP'
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived", "ResponseStarted"]
rules:
  - level: Metadata
    verbs: ["list", "watch"]
    resources: [{group: "", resources: ["pods"]}]
  - level: None
EOP
    audit=(--audit-policy-file "$dir/audit-policy.yaml" --audit-log-path "$dir/audit.log"
      --audit-log-mode blocking)
  fi
  start apiserver "$bin/kube-apiserver" "${audit[@]}" \
    --etcd-servers "http://127.0.0.1:$etcd_port" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$api_port" \
    --tls-cert-file "$dir/pki/server.crt" --tls-private-key-file "$dir/pki/server.key" \
    --client-ca-file "$dir/pki/ca.crt" \
    --service-account-key-file "$dir/pki/sa.pub" \
    --service-account-signing-key-file "$dir/pki/sa.key" \
    --service-account-issuer https://kubernetes.default.svc \
    --service-cluster-ip-range 10.96.0.0/16 \
    --authorization-mode RBAC --allow-privileged=true \
    --endpoint-reconciler-type none \
    --disable-admission-plugins ServiceAccount,TaintNodesByCondition \
    --max-requests-inflight 2000 --max-mutating-requests-inflight 1000 \
    --enable-priority-and-fairness=false
  wait_ready apiserver "https://127.0.0.1:$api_port/readyz" --cacert "$dir/pki/ca.crt" \
    --cert "$dir/pki/admin.crt" --key "$dir/pki/admin.key"
  kubeconfig "https://127.0.0.1:$api_port"
  # kwok plays the kubelet of every node annotated kwok.x-k8s.io/node=fake.
  stages=()
  for f in "$bin"/kwok-stages/*.yaml; do stages+=(--config "$f"); done
  start kwok "$bin/kwok" --kubeconfig "$dir/admin.kubeconfig" "${stages[@]}" \
    --manage-all-nodes=false \
    --manage-nodes-with-annotation-selector kwok.x-k8s.io/node=fake \
    --cidr 10.0.0.0/16 --node-ip 10.0.0.1
  cat >"$dir/env" <<EOF
export KUBECONFIG=$dir/admin.kubeconfig
export FLEXPU_CLUSTER_BIN=$bin
export PATH=$bin:\$PATH
EOF
  echo "cluster: up in $dir (KUBECONFIG=$dir/admin.kubeconfig)"
  ;;
scheduler)
  dir="$(cd "$dir" && pwd)"
  bin="$("$here/build-binaries.sh")"
  start kube-scheduler "$bin/kube-scheduler" --kubeconfig "$dir/admin.kubeconfig" \
    --authentication-kubeconfig "$dir/admin.kubeconfig" \
    --authorization-kubeconfig "$dir/admin.kubeconfig" \
    --leader-elect=false --bind-address 127.0.0.1 --secure-port "$(free_port)"
  ;;
down)
  [ -d "$dir" ] || exit 0
  for p in kube-scheduler kwok apiserver etcd; do
    if [ -f "$dir/$p.pid" ]; then
      kill "$(cat "$dir/$p.pid")" 2>/dev/null || true
    fi
  done
  for p in kube-scheduler kwok apiserver etcd; do
    if [ -f "$dir/$p.pid" ]; then
      pid="$(cat "$dir/$p.pid")"
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
      rm -f "$dir/$p.pid"
    fi
  done
  ;;
port)
  # A free loopback port, for a test's own server (DIR is not used).
  free_port
  ;;
*)
  echo "usage: $0 up|scheduler|down|port DIR" >&2
  exit 2
  ;;
esac
