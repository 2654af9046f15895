#!/usr/bin/env bash
# Stops the cluster started by up.sh and removes everything it left on the machine: its processes
# (control plane, kubelet, containerd, shims, containers), mounts, network namespaces, iptables
# chains and rules (KUBE-*, CNI-*, the FORWARD rules up.sh added), the ck8s0 bridge and veths,
# cgroups and state. A sweep, not a replay: it also cleans up after a crashed or half-started run.
# Safe to run when nothing is up. Leaves the Docker engine and the binary cache alone.
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

[ "$(id -u)" = 0 ] || die "down.sh must run as root"
export PATH="$K8S_BIN:$PATH"

# stop PID...: SIGTERM, then SIGKILL after 10 s.
stop_pids() {
  local pid i any
  [ $# -gt 0 ] || return 0
  kill "$@" 2>/dev/null
  for ((i = 0; i < 20; i++)); do
    any=0
    for pid in "$@"; do kill -0 "$pid" 2>/dev/null && any=1; done
    [ $any = 0 ] && return 0
    sleep 0.5
  done
  kill -9 "$@" 2>/dev/null
  sleep 0.5
}

# 1. The cluster's host processes, by their pid files (kubelet first: it would restart containers).
for name in kubelet kube-proxy coredns kube-scheduler kube-controller-manager kube-apiserver etcd; do
  f="$CLIPPER_K8S_RUN/$name.pid"
  [ -f "$f" ] && stop_pids "$(cat "$f")"
  rm -f "$f"
done

# 2. Containers: kill the tasks through our containerd (their shims then exit), then containerd.
if [ -S "$CONTAINERD_SOCK" ]; then
  ctrk() { timeout 20 ctr --address "$CONTAINERD_SOCK" -n k8s.io "$@"; }
  for t in $(ctrk tasks ls -q 2>/dev/null); do ctrk tasks kill -s SIGKILL "$t" >/dev/null 2>&1; done
  sleep 1
  for t in $(ctrk tasks ls -q 2>/dev/null); do ctrk tasks delete -f "$t" >/dev/null 2>&1; done
fi
f="$CLIPPER_K8S_RUN/containerd.pid"
[ -f "$f" ] && stop_pids "$(cat "$f")"
rm -f "$f"
# Shims (and anything else) still attached to our containerd socket, found by pid.
leftover=()
for d in /proc/[0-9]*; do
  if tr '\0' ' ' 2>/dev/null <"$d/cmdline" | grep -qF -- "$CONTAINERD_SOCK"; then leftover+=("${d#/proc/}"); fi
done
stop_pids "${leftover[@]}"
# Container processes left in the kubelet's cgroups (a crashed run), then the cgroups themselves.
for procs in $(find /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods -name cgroup.procs 2>/dev/null); do
  while read -r pid; do kill -9 "$pid" 2>/dev/null; done <"$procs"
done
sleep 0.5
for root in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods; do
  [ -d "$root" ] && find "$root" -depth -type d -exec rmdir {} \; 2>/dev/null
done

# 3. Mounts under the cluster's directories and the pods' network namespaces (containerd's CRI names them cni-*).
findmnt -rn -o TARGET | grep -E "^($CLIPPER_K8S_STATE|$CLIPPER_K8S_RUN|/run/netns/cni-|/var/run/netns/cni-)" | sort -r |
  while read -r m; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null; done
rm -f /run/netns/cni-* 2>/dev/null

# 4. iptables: rules jumping to KUBE-*/CNI-* chains, up.sh's FORWARD rules, then the chains.
for ipt in iptables ip6tables; do
  command -v $ipt >/dev/null || continue
  for table in filter nat mangle raw; do
    $ipt -t $table -S 2>/dev/null | grep -E '^-A ' | grep -E -- '-j (KUBE-|CNI-)' | grep -vE '^-A (KUBE-|CNI-)' |
      while read -r rule; do eval "$ipt -t $table -D ${rule#-A }" 2>/dev/null; done
    chains=$($ipt -t $table -S 2>/dev/null | awk '/^-N (KUBE-|CNI-)/ {print $2}')
    for c in $chains; do $ipt -t $table -F "$c" 2>/dev/null; done
    for c in $chains; do $ipt -t $table -X "$c" 2>/dev/null; done
  done
done
for rule in "${FORWARD_RULES[@]}"; do
  while iptables -D FORWARD $rule 2>/dev/null; do :; done
done
if [ -f "$CLIPPER_K8S_STATE/route_localnet" ]; then
  sysctl -qw net.ipv4.conf.all.route_localnet="$(cat "$CLIPPER_K8S_STATE/route_localnet")"
fi

# 5. Interfaces: the pods' veths on our bridge, then the bridge.
for v in $(ip -o link show master "$BRIDGE" 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1); do
  ip link delete "$v" 2>/dev/null
done
ip link delete "$BRIDGE" 2>/dev/null

# 6. State (the binary cache stays).
rm -rf /var/lib/cni/results/clipper-k8s-* "$CLIPPER_K8S_RUN" 2>/dev/null
rm -rf "$CLIPPER_K8S_STATE" 2>/dev/null || { sleep 1; rm -rf "$CLIPPER_K8S_STATE"; }
exit 0
