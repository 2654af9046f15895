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
