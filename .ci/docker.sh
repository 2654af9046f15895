#!/usr/bin/env bash
# Make a Docker engine answer on this machine and build Clipper's images offline (cached).
#
#   .ci/docker.sh            install docker.io if missing, start dockerd if none answers, build images
#   .ci/docker.sh --engine   only the engine part
#
# dockerd is started with the overlay2 storage driver, or vfs when overlay2 cannot mount here, and
# without its userland proxy. An engine that already answers is used as it is.
# Its log goes to ${DOCKERD_LOG:-/var/log/clipper-dockerd.log}.
set -euo pipefail
cd "$(dirname "$0")/.."

engine_answers() { docker info >/dev/null 2>&1; }

install_docker() {
  if command -v dockerd >/dev/null 2>&1; then return; fi
  echo "[docker.sh] installing docker.io"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq docker.io >/dev/null
}

start_dockerd() {
  local driver=$1 log=${DOCKERD_LOG:-/var/log/clipper-dockerd.log}
  echo "[docker.sh] starting dockerd (storage driver $driver), log $log"
  # --userland-proxy=false: published ports are forwarded by the kernel (iptables DNAT, also from
  # 127.0.0.1), not relayed by a docker-proxy process per port, which costs about as much CPU per
  # prediction as the query frontend itself (README "Docker backend", bench/README.md)
  nohup dockerd --storage-driver="$driver" --userland-proxy=false >>"$log" 2>&1 &
  echo $! >/var/run/clipper-dockerd.pid
  for _ in $(seq 1 60); do
    if engine_answers; then return 0; fi
    if ! kill -0 "$(cat /var/run/clipper-dockerd.pid)" 2>/dev/null; then return 1; fi
    sleep 1
  done
  return 1
}

ensure_engine() {
  if engine_answers; then echo "[docker.sh] engine answers"; return; fi
  install_docker
  if start_dockerd overlay2; then return; fi
  echo "[docker.sh] overlay2 failed; retrying with vfs"
  kill "$(cat /var/run/clipper-dockerd.pid)" 2>/dev/null || true
  sleep 2
  start_dockerd vfs || { echo "[docker.sh] dockerd did not start; see the log" >&2; exit 1; }
}

ensure_engine
if [[ "${1:-}" != "--engine" ]]; then
  images/build.sh --with-pyspark   # the PySpark suite on Docker needs its image (~75 s cold)
fi
