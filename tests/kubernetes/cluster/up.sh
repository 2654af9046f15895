#!/usr/bin/env bash
# Starts a single-node Kubernetes cluster as host processes (root, Linux, cgroup v1 or v2):
# containerd (its own instance: own root, state and socket; Docker's engine is untouched) with CRI,
# CNI bridge networking, etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubelet,
# kube-proxy (iptables mode) and CoreDNS, all built by build.sh. Imports the project's images
# (clipper/*) from the Docker engine into the cluster's containerd, writes a kubeconfig
# ($CLIPPER_K8S_KUBECONFIG, context "clipper-k8s"), waits until the node is Ready and a smoke
# Deployment answers through a Service and through cluster DNS. down.sh removes everything.
#
# Addresses: the node, the API server, the kubelet and DNS use 10.244.0.1 (the gateway address of
# the cluster's own bridge ck8s0); etcd listens on 127.0.0.1. Nothing listens on the machine's
# external interfaces. Prints the kubeconfig path on success; exits non-zero with the reason otherwise.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

[ "$(id -u)" = 0 ] || die "up.sh must run as root (containerd, kubelet, iptables, mounts)"
for tool in containerd ctr runc openssl iptables ip docker; do
  command -v "$tool" >/dev/null || die "$tool is not installed (apt-get install containerd runc openssl iptables iproute2 docker.io)"
done
[ -x /usr/lib/cni/bridge ] && [ -x /usr/lib/cni/portmap ] && [ -x /usr/lib/cni/host-local ] ||
  die "CNI plugins missing in /usr/lib/cni (apt-get install containernetworking-plugins)"
docker info >/dev/null 2>&1 || die "the Docker engine is not running (needed to build the pause image and to export clipper/* images)"

"$HERE/build.sh" >/dev/null
for b in "${K8S_BINARIES[@]}"; do [ -x "$K8S_BIN/$b" ] || die "$K8S_BIN/$b missing after build.sh"; done
export PATH="$K8S_BIN:$PATH"

if [ -e "$CLIPPER_K8S_RUN/up.done" ] && kubectl --kubeconfig "$CLIPPER_K8S_KUBECONFIG" get --raw /readyz >/dev/null 2>&1; then
  log "cluster already up"
  echo "$CLIPPER_K8S_KUBECONFIG"
  exit 0
fi
# Leftovers of an earlier run (killed, or failed half-way) are removed first.
"$HERE/down.sh"

T0=$(date +%s)
PKI="$CLIPPER_K8S_STATE/pki"
LOGS="$CLIPPER_K8S_STATE/logs"
mkdir -p "$PKI" "$LOGS" "$CLIPPER_K8S_RUN" "$CLIPPER_K8S_STATE/cni/net.d" "$CLIPPER_K8S_STATE/cni/cache"
show_logs() { log "failed; logs in $LOGS (tail below)"; for f in "$LOGS"/*.log; do echo "== $f"; tail -n 15 "$f"; done >&2; }
trap show_logs ERR
die() { log "ERROR: $*"; show_logs; exit 1; }

# start NAME CMD...: run in its own session, output to $LOGS/NAME.log, pid in $CLIPPER_K8S_RUN/NAME.pid.
start() {
  local name=$1
  shift
  setsid "$@" >"$LOGS/$name.log" 2>&1 </dev/null &
  echo $! >"$CLIPPER_K8S_RUN/$name.pid"
}
# wait_for WHAT SECONDS CMD...: retry CMD until it succeeds.
wait_for() {
  local what=$1 secs=$2 i
  shift 2
  for ((i = 0; i < secs; i++)); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 1
  done
  die "timed out after ${secs}s waiting for $what"
}
alive() { kill -0 "$(cat "$CLIPPER_K8S_RUN/$1.pid")" 2>/dev/null || die "$1 exited: $(tail -n 5 "$LOGS/$1.log")"; }

# --- certificates: one CA, the API server's serving cert, one admin client cert, SA keys ------------
log "certificates"
ssl() { openssl "$@" 2>/dev/null; }
ssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=clipper-k8s-ca" -keyout "$PKI/ca.key" -out "$PKI/ca.crt"
cat >"$PKI/apiserver.ext" <<EOF
subjectAltName=IP:$NODE_IP,IP:127.0.0.1,IP:$KUBERNETES_SVC_IP,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,DNS:$NODE_NAME
extendedKeyUsage=serverAuth
EOF
ssl req -newkey rsa:2048 -nodes -subj "/CN=kube-apiserver" -keyout "$PKI/apiserver.key" -out "$PKI/apiserver.csr"
ssl x509 -req -in "$PKI/apiserver.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial -days 30 \
  -extfile "$PKI/apiserver.ext" -out "$PKI/apiserver.crt"
printf 'extendedKeyUsage=clientAuth\n' >"$PKI/client.ext"
ssl req -newkey rsa:2048 -nodes -subj "/O=system:masters/CN=clipper-admin" -keyout "$PKI/admin.key" -out "$PKI/admin.csr"
ssl x509 -req -in "$PKI/admin.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial -days 30 \
  -extfile "$PKI/client.ext" -out "$PKI/admin.crt"
ssl genrsa -out "$PKI/sa.key" 2048
ssl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub"
KC="$CLIPPER_K8S_KUBECONFIG"
mkdir -p "$(dirname "$KC")"
kubectl config --kubeconfig "$KC" set-cluster clipper-k8s --server "https://$NODE_IP:$APISERVER_PORT" \
  --certificate-authority "$PKI/ca.crt" --embed-certs >/dev/null
kubectl config --kubeconfig "$KC" set-credentials clipper-admin --client-certificate "$PKI/admin.crt" \
  --client-key "$PKI/admin.key" --embed-certs >/dev/null
kubectl config --kubeconfig "$KC" set-context clipper-k8s --cluster clipper-k8s --user clipper-admin >/dev/null
kubectl config --kubeconfig "$KC" use-context clipper-k8s >/dev/null
export KUBECONFIG="$KC"

# --- the cluster's bridge and the FORWARD rules (Docker sets the FORWARD policy to DROP) -------------
log "network: bridge $BRIDGE $NODE_IP"
ip link add "$BRIDGE" type bridge
ip addr add "$NODE_IP/24" dev "$BRIDGE"
ip link set "$BRIDGE" up
for rule in "${FORWARD_RULES[@]}"; do iptables -I FORWARD $rule; done
cat >"$CLIPPER_K8S_STATE/cni/net.d/10-clipper.conflist" <<EOF
{"cniVersion": "0.4.0", "name": "clipper-k8s", "plugins": [
  {"type": "bridge", "bridge": "$BRIDGE", "isGateway": true, "ipMasq": true, "hairpinMode": true,
   "ipam": {"type": "host-local", "dataDir": "$CLIPPER_K8S_STATE/cni/networks",
            "ranges": [[{"subnet": "$POD_CIDR", "gateway": "$NODE_IP"}]], "routes": [{"dst": "0.0.0.0/0"}]}},
  {"type": "portmap", "capabilities": {"portMappings": true}}]}
EOF

# --- containerd (CRI) and the images --------------------------------------------------------------
log "containerd"
cat >"$CLIPPER_K8S_STATE/containerd.toml" <<EOF
version = 2
root = "$CLIPPER_K8S_STATE/containerd"
state = "$CLIPPER_K8S_RUN/containerd"
[grpc]
  address = "$CONTAINERD_SOCK"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  # The kubelet asks for oom_score_adj -998 for sandboxes; lowering it below our own needs a
  # capability root lacks in some VMs ("failed to update /proc/self/oom_score_adj: Permission denied").
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$CLIPPER_K8S_STATE/cni/net.d"
EOF
start containerd containerd --config "$CLIPPER_K8S_STATE/containerd.toml"
wait_for containerd 30 ctr --address "$CONTAINERD_SOCK" version
ctrk() { ctr --address "$CONTAINERD_SOCK" -n k8s.io "$@"; }
PAUSE_CTX="$CLIPPER_K8S_STATE/pause-image"
mkdir -p "$PAUSE_CTX"
cp "$K8S_BIN/pause" "$HERE/pause/Dockerfile" "$PAUSE_CTX/"
docker build -q -t "$PAUSE_IMAGE" "$PAUSE_CTX" >/dev/null
docker save "$PAUSE_IMAGE" | ctrk images import - >/dev/null
images=()
read -ra patterns <<<"$CLIPPER_K8S_IMAGES"  # word-split, never glob-expanded (./clipper/* exists in the repository)
for pattern in "${patterns[@]}"; do
  images+=($(docker images --format '{{.Repository}}:{{.Tag}}' "$pattern" | grep -v '<none>' || true))
done
if [ ${#images[@]} -gt 0 ]; then
  log "importing ${#images[@]} images (${CLIPPER_K8S_IMAGES}) into the cluster's containerd"
  docker save "${images[@]}" | ctrk images import - >/dev/null  # one stream: shared layers travel once
fi

# --- etcd, control plane ----------------------------------------------------------------------------
log "etcd"
start etcd etcd --name clipper --data-dir "$CLIPPER_K8S_STATE/etcd" --unsafe-no-fsync \
  --listen-client-urls "http://127.0.0.1:$ETCD_CLIENT_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_CLIENT_PORT" \
  --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
  --initial-cluster "clipper=http://127.0.0.1:$ETCD_PEER_PORT"
wait_for etcd 60 curl -sf "http://127.0.0.1:$ETCD_CLIENT_PORT/health"

log "kube-apiserver"
start kube-apiserver kube-apiserver --etcd-servers "http://127.0.0.1:$ETCD_CLIENT_PORT" \
  --bind-address "$NODE_IP" --advertise-address "$NODE_IP" --secure-port "$APISERVER_PORT" \
  --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" --client-ca-file "$PKI/ca.crt" \
  --service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
  --service-account-issuer https://kubernetes.default.svc.cluster.local \
  --service-cluster-ip-range "$SERVICE_CIDR" --authorization-mode Node,RBAC --allow-privileged \
  --kubelet-client-certificate "$PKI/admin.crt" --kubelet-client-key "$PKI/admin.key" \
  --kubelet-preferred-address-types InternalIP,Hostname --profiling=false
wait_for kube-apiserver 120 kubectl get --raw /readyz

log "kube-controller-manager, kube-scheduler"
start kube-controller-manager kube-controller-manager --kubeconfig "$KC" --bind-address 127.0.0.1 \
  --authentication-kubeconfig "$KC" --authorization-kubeconfig "$KC" --leader-elect=false \
  --cluster-signing-cert-file "$PKI/ca.crt" --cluster-signing-key-file "$PKI/ca.key" --root-ca-file "$PKI/ca.crt" \
  --service-account-private-key-file "$PKI/sa.key" --use-service-account-credentials \
  --service-cluster-ip-range "$SERVICE_CIDR" --profiling=false
start kube-scheduler kube-scheduler --kubeconfig "$KC" --bind-address 127.0.0.1 \
  --authentication-kubeconfig "$KC" --authorization-kubeconfig "$KC" --leader-elect=false --profiling=false

# --- the node -----------------------------------------------------------------------------------------
log "kubelet"
sysctl -qw fs.inotify.max_user_instances=8192 fs.inotify.max_user_watches=524288 || true
cat >"$CLIPPER_K8S_STATE/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization: {mode: Webhook}
cgroupDriver: cgroupfs
failSwapOn: false
failCgroupV1: false
containerRuntimeEndpoint: unix://$CONTAINERD_SOCK
clusterDNS: [$NODE_IP]
clusterDomain: cluster.local
resolvConf: $CLIPPER_K8S_STATE/resolv.conf
evictionHard: {memory.available: 100Mi, nodefs.available: 1%, imagefs.available: 1%, nodefs.inodesFree: 1%}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
runtimeRequestTimeout: 10m
podLogsDir: $CLIPPER_K8S_STATE/pod-logs
EOF
# Pods resolve cluster names only: the machine has no upstream DNS worth forwarding to.
: >"$CLIPPER_K8S_STATE/resolv.conf"
start kubelet kubelet --config "$CLIPPER_K8S_STATE/kubelet.yaml" --kubeconfig "$KC" \
  --root-dir "$CLIPPER_K8S_STATE/kubelet" --cert-dir "$CLIPPER_K8S_STATE/kubelet-pki" \
  --hostname-override "$NODE_NAME" --node-ip "$NODE_IP" --v=1
wait_for "node $NODE_NAME Ready" 180 kubectl wait --for=condition=Ready "node/$NODE_NAME" --timeout=5s

log "kube-proxy"
cat >"$CLIPPER_K8S_STATE/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $KC}
mode: iptables
clusterCIDR: $POD_CIDR
hostnameOverride: $NODE_NAME
bindAddress: 127.0.0.1
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
nodePortAddresses: ["$NODE_IP/32", "127.0.0.1/32"]
conntrack: {maxPerCore: 0}
EOF
sysctl -n net.ipv4.conf.all.route_localnet >"$CLIPPER_K8S_STATE/route_localnet"  # down.sh restores it
start kube-proxy kube-proxy --config "$CLIPPER_K8S_STATE/kube-proxy.yaml"
wait_for kube-proxy 60 curl -sf http://127.0.0.1:10256/healthz

log "coredns on $NODE_IP:53"
cat >"$CLIPPER_K8S_STATE/Corefile" <<EOF
.:53 {
    bind $NODE_IP
    errors
    health 127.0.0.1:18080
    ready 127.0.0.1:18181
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig $KC clipper-k8s
        pods insecure
    }
}
EOF
start coredns coredns -conf "$CLIPPER_K8S_STATE/Corefile"
wait_for coredns 60 curl -sf http://127.0.0.1:18181/ready

# --- smoke test: a Deployment answering through its Service, by name (DNS) and by node port --------
log "smoke test"
kubectl apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Namespace
metadata: {name: clipper-k8s-smoke}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: smoke, namespace: clipper-k8s-smoke}
spec:
  replicas: 1
  selector: {matchLabels: {app: smoke}}
  template:
    metadata: {labels: {app: smoke}}
    spec:
      containers:
      - {name: smoke, image: $PAUSE_IMAGE, imagePullPolicy: Never, command: [/pause, serve, "8080"]}
---
apiVersion: v1
kind: Service
metadata: {name: smoke, namespace: clipper-k8s-smoke}
spec:
  type: NodePort
  selector: {app: smoke}
  ports: [{port: 80, targetPort: 8080, nodePort: 30080}]
EOF
kubectl -n clipper-k8s-smoke rollout status deploy/smoke --timeout=180s >/dev/null ||
  die "smoke Deployment not ready: $(kubectl -n clipper-k8s-smoke describe pods | tail -n 20)"
svc_ip=$(kubectl -n clipper-k8s-smoke get svc smoke -o jsonpath='{.spec.clusterIP}')
wait_for "the smoke Service on $svc_ip:80" 60 curl -sf "http://$svc_ip/"
wait_for "the smoke NodePort on $NODE_IP:30080" 30 curl -sf "http://$NODE_IP:30080/"
dns_ip=$(python3 "$HERE/dns_query.py" "$NODE_IP" smoke.clipper-k8s-smoke.svc.cluster.local || true)
[ "$dns_ip" = "$svc_ip" ] || die "cluster DNS answered '$dns_ip' for the smoke Service (expected $svc_ip)"
kubectl delete namespace clipper-k8s-smoke --wait=false >/dev/null

# --- storage: a few hostPath PersistentVolumes (no provisioner runs here; a PVC without a storage class,
# like the Kubernetes manager's Redis data claim, binds to one of them) -------------------------------
log "$PV_COUNT persistent volumes (hostPath, ${PV_SIZE} each)"
for i in $(seq 1 "$PV_COUNT"); do
  # pods run as non-root users; a hostPath volume keeps the host directory's owner and mode
  install -d -m 0777 "$CLIPPER_K8S_STATE/pv/pv$i"
  cat <<EOF
apiVersion: v1
kind: PersistentVolume
metadata: {name: clipper-k8s-pv$i}
spec:
  capacity: {storage: $PV_SIZE}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  hostPath: {path: "$CLIPPER_K8S_STATE/pv/pv$i", type: Directory}
---
EOF
done | kubectl apply -f - >/dev/null
touch "$CLIPPER_K8S_RUN/up.done"
trap - ERR
log "cluster up in $(( $(date +%s) - T0 ))s; KUBECONFIG=$KC"
echo "$KC"
