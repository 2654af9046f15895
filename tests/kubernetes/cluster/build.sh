#!/usr/bin/env bash
# Builds the test cluster's binaries from the pinned Go modules in this directory into
# $CLIPPER_K8S_CACHE/<version>/bin (default /var/cache/clipper-k8s), once per machine:
#   go.mod/go.sum   k8s.io/kubernetes commands + etcd (a wrapper module: k8s.io/kubernetes replaces
#                   its staging modules with local paths, so `go install k8s.io/kubernetes/...@v` fails)
#   coredns/        CoreDNS with only the plugins the cluster uses
#   pause/          the pod sandbox image's binary (also the smoke test's HTTP server)
# A run with unchanged pins only checks the stamps. Needs Go >= 1.24 and the Go module proxy.
# Builds at low priority (nice 19, one package at a time) so a shared machine stays usable;
# CLIPPER_K8S_BUILD_FLAGS="-p=8" builds faster on a dedicated machine.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

command -v go >/dev/null || die "go is not installed (Go >= 1.24 builds Kubernetes $K8S_VERSION from modules)"
mkdir -p "$K8S_BIN"
exec 9>"$CLIPPER_K8S_CACHE/.build.lock"
flock 9  # one build per machine at a time (concurrent up.sh runs wait here)
flags="${CLIPPER_K8S_BUILD_FLAGS:--p=1}"
start=$(date +%s)
B=k8s.io/component-base/version
K8S_LD="-s -w -X $B.gitVersion=$K8S_VERSION -X $B.gitMajor=1 -X $B.gitMinor=$K8S_MINOR -X $B.gitTreeState=clean"
export CGO_ENABLED=0

# build NAME KEY DIR PACKAGE [LDFLAGS]: build unless $K8S_BIN/NAME is stamped with KEY.
build() {
  local name=$1 key=$2 dir=$3 pkg=$4 ld=${5:--s -w}
  if [ -x "$K8S_BIN/$name" ] && [ "$(cat "$K8S_BIN/$name.key" 2>/dev/null)" = "$key" ]; then return; fi
  log "building $name"
  (cd "$HERE/$dir" && nice -n 19 go build $flags -mod=readonly -trimpath -ldflags "$ld" -o "$K8S_BIN/$name.tmp" "$pkg") ||
    die "building $name failed (see the go output above)"
  mv "$K8S_BIN/$name.tmp" "$K8S_BIN/$name"
  echo "$key" >"$K8S_BIN/$name.key"
}

k8s_key=$(src_key "${K8S_SRC[@]}")
for cmd in kubectl kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy; do
  build "$cmd" "$k8s_key" . "k8s.io/kubernetes/cmd/$cmd" "$K8S_LD"
done
build etcd "$k8s_key" . go.etcd.io/etcd/server/v3
build coredns "$(src_key "${COREDNS_SRC[@]}")" coredns .
build pause "$(src_key "${PAUSE_SRC[@]}")" pause .
log "binaries ready in $K8S_BIN ($(( $(date +%s) - start ))s)"
echo "$K8S_BIN"
