#!/usr/bin/env bash
# The whole test suite on a fresh Debian machine: installs what the tests need (system packages,
# Python packages), starts the Docker engine and builds the images offline, lints, then runs pytest.
# Idempotent: on a prepared machine it goes straight to the checks. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")"

need_apt=()
command -v redis-server >/dev/null || need_apt+=(redis-server)
command -v wrk >/dev/null || need_apt+=(wrk)
command -v java >/dev/null || need_apt+=(default-jre-headless)
command -v debootstrap >/dev/null || need_apt+=(debootstrap)
command -v dockerd >/dev/null || need_apt+=(docker.io)
command -v git >/dev/null || need_apt+=(git)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "==> apt-get install ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

echo "==> pip install -e '.[dev,pyspark]'"
python3 -m pip install -q -e '.[dev,pyspark]' 2>&1 | grep -v -e '^WARNING: Running pip as' -e 'pip is configured' || true

if [ -x .ci/docker.sh ] && [ "${CLIPPER_SKIP_DOCKER:-0}" != "1" ]; then
  echo "==> Docker engine and offline images"
  bash .ci/docker.sh || echo "!! Docker setup failed: the Docker suite will report why it is skipped"
fi

echo "==> lint (ruff, import-linter layers)"
ruff check .
lint-imports

echo "==> pytest"
exec python3 -m pytest "$@"
