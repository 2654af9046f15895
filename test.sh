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

echo "==> lint (ruff, import-linter layers, mypy --strict)"
ruff check .
ruff format --check .
lint-imports
# mypy --strict, configured in pyproject.toml (the original's public clipper_admin signatures stay
# unannotated on purpose: see the override there)
mypy schemas clipper clipper_admin reconciler

# The Kubernetes suite runs on a real single-node cluster built from Go modules and started as host
# processes (docs/kubernetes-test-cluster.md). The first run on a machine builds its binaries (cached
# in /var/cache/clipper-k8s; see README for timings). A cluster that cannot start fails the run with the
# reason: the suite is never skipped silently. CLIPPER_SKIP_KUBERNETES=1 (e.g. for a quick
# `./test.sh tests/unit`) leaves it out; CLIPPER_K8S_KEEP=1 leaves the cluster up for the next run.
if [ "${CLIPPER_SKIP_KUBERNETES:-0}" != "1" ]; then
  echo "==> Kubernetes test cluster"
  command -v go >/dev/null || { echo "!! Go is not installed: the Kubernetes test cluster is built from Go modules (Go >= 1.24)"; exit 1; }
  if ! kubeconfig=$(CLIPPER_K8S_BUILD_FLAGS="${CLIPPER_K8S_BUILD_FLAGS:--p=2}" bash tests/kubernetes/cluster/up.sh); then
    echo "!! the Kubernetes test cluster did not start (the reason is above); CLIPPER_SKIP_KUBERNETES=1 runs the rest"
    bash tests/kubernetes/cluster/down.sh >/dev/null 2>&1 || true
    exit 1
  fi
  [ "${CLIPPER_K8S_KEEP:-0}" = "1" ] || trap 'echo "==> stopping the Kubernetes test cluster"; bash tests/kubernetes/cluster/down.sh >/dev/null 2>&1 || true' EXIT
  # only the e2e tests read these (tests/kubernetes/e2e.py): nothing else in the run reaches the cluster
  export CLIPPER_K8S_E2E_KUBECONFIG="$kubeconfig" CLIPPER_K8S_CONTEXT=clipper-k8s CLIPPER_K8S_REQUIRED=1 \
    CLIPPER_K8S_E2E_IMAGE_LOADER="containerd:${CLIPPER_K8S_RUN:-/run/clipper-k8s}/containerd.sock"
fi

echo "==> pytest"
# the slowest tests are listed at the end: what to look at when the run gets long
python -m pytest --durations=25 "$@"
