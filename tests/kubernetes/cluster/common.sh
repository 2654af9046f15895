# Shared settings of build.sh / up.sh / down.sh (sourced, not run).
# Everything the cluster writes lives outside the repository:
#   CLIPPER_K8S_CACHE  binaries, cached by version (survives between runs)
#   CLIPPER_K8S_STATE  certificates, etcd data, kubelet/containerd state, logs (wiped by down.sh)
#   CLIPPER_K8S_RUN    sockets and pid files
K8S_VERSION=v1.34.4
K8S_MINOR=34
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CLIPPER_K8S_CACHE="${CLIPPER_K8S_CACHE:-/var/cache/clipper-k8s}"
K8S_BIN="$CLIPPER_K8S_CACHE/$K8S_VERSION/bin"
# Each binary is stamped with a hash of the sources that pin it (<bin>.key): editing go.mod/go.sum,
# coredns/ or pause/ rebuilds exactly what they pin.
src_key() { (cd "$HERE" && cat "$@" | sha256sum | cut -c1-16); }
K8S_SRC=(go.mod go.sum)
COREDNS_SRC=(coredns/go.mod coredns/go.sum coredns/main.go)
PAUSE_SRC=(pause/pause.go pause/Dockerfile)
K8S_BINARIES=(kubectl kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy etcd coredns pause)
CLIPPER_K8S_STATE="${CLIPPER_K8S_STATE:-/var/lib/clipper-k8s}"
CLIPPER_K8S_RUN="${CLIPPER_K8S_RUN:-/run/clipper-k8s}"
CLIPPER_K8S_KUBECONFIG="${CLIPPER_K8S_KUBECONFIG:-$CLIPPER_K8S_STATE/admin.kubeconfig}"
CONTAINERD_SOCK="$CLIPPER_K8S_RUN/containerd.sock"
POD_CIDR=10.244.0.0/24
SERVICE_CIDR=10.96.0.0/16
KUBERNETES_SVC_IP=10.96.0.1
DNS_IP=10.96.0.10
PAUSE_IMAGE=localhost/clipper-pause:ci
# hostPath PersistentVolumes up.sh creates for claims without a storage class (Retain: one per claim)
PV_COUNT=8
PV_SIZE=2Gi
# Cluster-private ports on 127.0.0.1 (chosen off the usual defaults so a developer's cluster is not hit).
ETCD_CLIENT_PORT=23791
ETCD_PEER_PORT=23801
APISERVER_PORT=16443
log() { printf '[k8s-cluster %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
NODE_NAME=clipper-node
# The cluster's own bridge; its gateway address is the node's address (API server, kubelet, DNS).
BRIDGE=ck8s0
NODE_IP=10.244.0.1
FORWARD_RULES=("-s 10.244.0.0/16 -j ACCEPT" "-d 10.244.0.0/16 -j ACCEPT")
# Docker images (patterns for `docker images`) imported into the cluster's containerd by up.sh.
CLIPPER_K8S_IMAGES="${CLIPPER_K8S_IMAGES:-clipper/*}"
