#!/usr/bin/env bash
# The main job: a local Clipper cluster (embedded default backend: supervised local processes and
# SQLite, no Docker) serving the hello-world sum model, then one prediction over HTTP.
#
# Everything is installed in a virtual environment of this clone, .venv/ (git-ignored): the system
# Python is not modified, and a second run finds it ready. The ports can be moved with QUERY_PORT,
# MANAGEMENT_PORT and RPC_PORT (see examples/manifests/quickstart.yaml).
set -euo pipefail
cd "$(dirname "$0")"
. ./.ci/venv.sh

ensure_venv ""
# The prediction hot path compiled with mypyc (clipper/compiled.py), built once per change of the
# sources into ~/.cache/clipper/hot-path, outside this clone: the cluster's query frontend and model
# replicas then run it (about a quarter more predictions per second). It needs a C compiler and the
# Python headers (mypy is installed into .venv for it); without them, or with
# CLIPPER_HOT_PATH_CACHE=off, everything runs interpreted, the same code.
if [ "${CLIPPER_HOT_PATH_CACHE:-}" != off ] && ! python -c 'import clipper.compiled as c, sys; sys.exit(c.cached_build() is None)'; then
  toolchain() { python -c 'import clipper.compiled as c; print(c.missing_toolchain() or "")'; }
  missing=$(toolchain)
  case "$missing" in
    *"not installed"*) echo "==> pip install mypy setuptools wheel (into .venv: they compile the hot path)"
            python -m pip install -q "mypy>=1.10" "setuptools>=65" "wheel>=0.40" && missing=$(toolchain) ;;
  esac
  if [ -z "$missing" ]; then
    echo "==> python -m clipper.compiled build (the hot path compiled with mypyc: about a minute, once)"
    python -m clipper.compiled build || echo "note: the build failed (above); the hot path runs interpreted"
  else
    echo "note: the hot path runs interpreted: $missing; then: .venv/bin/python -m clipper.compiled build"
  fi
fi
echo "==> clipper apply -f examples/manifests/quickstart.yaml"
clipper apply -f examples/manifests/quickstart.yaml
url="http://127.0.0.1:${QUERY_PORT:-1337}/hello-world/predict"
echo "==> POST $url {\"input\": [1.1, 2.2, 3.3]}"
python - "$url" <<'PY'
import json, sys, time, urllib.request
req = urllib.request.Request(sys.argv[1], data=json.dumps({"input": [1.1, 2.2, 3.3]}).encode(),
                             headers={"Content-Type": "application/json"})
for _ in range(100):
    body = json.loads(urllib.request.urlopen(req, timeout=5).read())
    if not body["default"]:
        break
    time.sleep(0.1)
print(json.dumps(body))
PY
echo "==> the cluster keeps running: '.venv/bin/clipper status -f examples/manifests/quickstart.yaml';" \
  "'.venv/bin/clipper delete -f examples/manifests/quickstart.yaml --cluster' stops it"
