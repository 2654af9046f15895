#!/usr/bin/env bash
# The whole test suite on a fresh Debian machine: installs what the tests need (system packages,
# Python packages in .venv/), starts the Docker engine and builds the images offline, lints, then runs
# pytest. Idempotent: on a prepared machine it goes straight to the checks. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")"

need_apt=()
command -v redis-server >/dev/null || need_apt+=(redis-server)
command -v wrk >/dev/null || need_apt+=(wrk)
command -v java >/dev/null || need_apt+=(default-jre-headless)
command -v debootstrap >/dev/null || need_apt+=(debootstrap)
command -v dockerd >/dev/null || need_apt+=(docker.io)
command -v git >/dev/null || need_apt+=(git)
command -v gpg >/dev/null || need_apt+=(gnupg)  # clipper sync --verify-signatures and its tests
# the Kubernetes test cluster (tests/kubernetes/cluster/up.sh): containerd's CRI, runc, CNI plugins
command -v containerd >/dev/null || need_apt+=(containerd)
command -v runc >/dev/null || need_apt+=(runc)
[ -x /usr/lib/cni/bridge ] || need_apt+=(containernetworking-plugins)
command -v iptables >/dev/null || need_apt+=(iptables)
command -v ip >/dev/null || need_apt+=(iproute2)
command -v openssl >/dev/null || need_apt+=(openssl)
command -v chromium >/dev/null || need_apt+=(chromium)  # tests/browser: the dashboard in a real browser
command -v chromedriver >/dev/null || need_apt+=(chromium-driver)
command -v python3 >/dev/null || need_apt+=(python3)
python3 -c 'import ensurepip, venv' 2>/dev/null || need_apt+=(python3-venv)
# tests/integration/test_compiled_hot_path.py compiles the hot path with mypyc: a C compiler, the headers
command -v cc >/dev/null || need_apt+=(gcc)
python3 -c 'import os, sys, sysconfig; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
  || need_apt+=(python3-dev)
export CLIPPER_REQUIRE_COMPILED=1
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "==> apt-get install ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# The Python side lives in .venv/ (as for quickstart.sh): created with python3 and filled only when
# something is missing; Debian's externally managed system Python is left alone.
. ./.ci/venv.sh
ensure_venv "dev,pyspark"

if [ -x .ci/docker.sh ] && [ "${CLIPPER_SKIP_DOCKER:-0}" != "1" ]; then
  echo "==> Docker engine and offline images"
  bash .ci/docker.sh || echo "!! Docker setup failed: the Docker suite will report why it is skipped"
fi

# The Kubernetes suite runs on a real single-node cluster built from Go modules and started as host
# processes (docs/kubernetes-test-cluster.md). The first run on a machine builds its binaries (cached
# in /var/cache/clipper-k8s; see README for timings). A cluster that cannot start fails the run with the
# reason: the suite is never skipped silently. CLIPPER_SKIP_KUBERNETES=1 (e.g. for a quick
# `./test.sh tests/unit`) leaves it out; CLIPPER_K8S_KEEP=1 leaves the cluster up for the next run.
# The cluster starts in the background while the linters run.
k8s=0
if [ "${CLIPPER_SKIP_KUBERNETES:-0}" != "1" ]; then
  command -v go >/dev/null || { echo "!! Go is not installed: the Kubernetes test cluster is built from Go modules (Go >= 1.24)"; exit 1; }
  k8s=1
  k8s_logs=$(mktemp -d /tmp/clipper-test-k8s.XXXXXX)
  echo "==> Kubernetes test cluster: starting in the background (log: $k8s_logs/up.log)"
  CLIPPER_K8S_BUILD_FLAGS="${CLIPPER_K8S_BUILD_FLAGS:--p=2}" bash tests/kubernetes/cluster/up.sh \
    >"$k8s_logs/kubeconfig" 2>"$k8s_logs/up.log" &
  up_pid=$!
  [ "${CLIPPER_K8S_KEEP:-0}" = "1" ] || trap 'echo "==> stopping the Kubernetes test cluster"; bash tests/kubernetes/cluster/down.sh >/dev/null 2>&1 || true' EXIT
fi

echo "==> lint (ruff, import-linter layers, mypy --strict)"
ruff check .
ruff format --check .
lint-imports
# mypy --strict, configured in pyproject.toml (the original's public clipper_admin signatures stay
# unannotated on purpose: see the override there)
mypy schemas clipper clipper_admin reconciler

# Waits for the cluster; exports what only the e2e tests read (tests/kubernetes/e2e.py).
k8s_ready() {
  if ! wait "$up_pid"; then
    cat "$k8s_logs/up.log"
    echo "!! the Kubernetes test cluster did not start (the reason is above); CLIPPER_SKIP_KUBERNETES=1 runs the rest"
    return 1
  fi
  echo "==> Kubernetes test cluster is up ($(tail -1 "$k8s_logs/up.log"))"
  export CLIPPER_K8S_E2E_KUBECONFIG="$(cat "$k8s_logs/kubeconfig")" CLIPPER_K8S_CONTEXT=clipper-k8s \
    CLIPPER_K8S_REQUIRED=1 CLIPPER_K8S_E2E_IMAGE_LOADER="containerd:${CLIPPER_K8S_RUN:-/run/clipper-k8s}/containerd.sock"
}

# the slowest tests are listed at the end: what to look at when the run gets long
DURATIONS=--durations=25
E2E_GLOB='tests/kubernetes/test_e2e_*.py'
COMPILED=tests/integration/test_compiled_hot_path.py  # ~5 min: in the second lane, after the Docker suite
if [ "$k8s" = 1 ] && [ $# -eq 0 ]; then
  # The whole suite, in two lanes of about equal length (each mostly waits on engines and
  # clusters, so two run side by side on 2 cores): the rest of the suite in one pytest; in a second,
  # the Docker suite and the compiled hot path's (while the cluster starts), then the Kubernetes
  # end-to-end suite. The second lane's output is printed when both have finished; the run fails if
  # any pytest fails.
  echo "==> pytest (all but the Docker, the compiled hot path's and the Kubernetes end-to-end suites; those run beside it)"
  python -m pytest "$DURATIONS" --ignore-glob="*/$E2E_GLOB" --ignore=tests/docker --ignore="$COMPILED" &
  main_pid=$!
  trap 'kill "$main_pid" 2>/dev/null || true' INT TERM
  docker_rc=0
  python -m pytest "$DURATIONS" -p no:cacheprovider --basetemp="$k8s_logs/tmp-docker" tests/docker "$COMPILED" \
    >"$k8s_logs/docker.log" 2>&1 || docker_rc=$?
  e2e_rc=0
  if k8s_ready; then
    # shellcheck disable=SC2086  # the glob expands to the e2e files
    python -m pytest "$DURATIONS" -p no:cacheprovider --basetemp="$k8s_logs/tmp" $E2E_GLOB >"$k8s_logs/e2e.log" 2>&1 || e2e_rc=$?
  else
    e2e_rc=1
  fi
  main_rc=0
  wait "$main_pid" || main_rc=$?
  echo "==> pytest: the Docker suite and the compiled hot path's (ran beside the rest)"
  cat "$k8s_logs/docker.log" 2>/dev/null || true
  echo "==> pytest: the Kubernetes end-to-end suite (ran beside the rest, after the Docker suite)"
  cat "$k8s_logs/e2e.log" 2>/dev/null || true
  echo "==> results: the suite exited $main_rc, the Docker suite $docker_rc, the Kubernetes end-to-end suite $e2e_rc"
  [ "$main_rc" = 0 ] && [ "$docker_rc" = 0 ] && [ "$e2e_rc" = 0 ]
  exit
fi

if [ "$k8s" = 1 ]; then
  k8s_ready || exit 1
fi
echo "==> pytest"
python -m pytest "$DURATIONS" "$@"
