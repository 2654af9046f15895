#!/usr/bin/env bash
# The main job: a local Clipper cluster (embedded default backend: supervised local processes and
# SQLite, no Docker) serving the hello-world sum model, then one prediction over HTTP.
set -euo pipefail
cd "$(dirname "$0")"
if ! python3 -c "import clipper, reconciler" 2>/dev/null; then
  echo "==> pip install -e ."
  python3 -m pip install -q -e . 2>&1 | grep -v -e '^WARNING: Running pip as' || true
fi
echo "==> clipper apply -f examples/manifests/quickstart.yaml"
clipper apply -f examples/manifests/quickstart.yaml
echo "==> POST http://127.0.0.1:1337/hello-world/predict {\"input\": [1.1, 2.2, 3.3]}"
python3 - <<'PY'
import json, time, urllib.request
req = urllib.request.Request("http://127.0.0.1:1337/hello-world/predict",
                             data=json.dumps({"input": [1.1, 2.2, 3.3]}).encode(),
                             headers={"Content-Type": "application/json"})
for _ in range(100):
    body = json.loads(urllib.request.urlopen(req, timeout=5).read())
    if not body["default"]:
        break
    time.sleep(0.1)
print(json.dumps(body))
PY
echo "==> the cluster keeps running: 'clipper status', 'clipper get apps', 'clipper delete -f examples/manifests/quickstart.yaml --cluster' stops it"
