"""Write argocd-cm-health.yaml: the argocd-cm patch that gives Argo CD the health of the clipper.ai
custom resources, from health.lua (one key per kind; Argo CD has no key for a whole group).

    python deploy/argocd/argocd_cm.py          # rewrites deploy/argocd/argocd-cm-health.yaml

Standalone on purpose (no project imports): a copy of deploy/ is enough to run it.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "health.lua"
TARGET = HERE / "argocd-cm-health.yaml"
GROUP = "clipper.ai"
KINDS = ("Application", "Cluster", "Model")
HEADER = """\
# Generated from health.lua by `python deploy/argocd/argocd_cm.py`; do not edit.
# Argo CD health checks of the clipper.ai custom resources, merged into Argo CD's argocd-cm:
#   kubectl -n argocd patch configmap argocd-cm --patch-file deploy/argocd/argocd-cm-health.yaml
apiVersion: v1
kind: ConfigMap
metadata:
  name: argocd-cm
  namespace: argocd
  labels:
    app.kubernetes.io/name: argocd-cm
    app.kubernetes.io/part-of: argocd
data:
"""


def key(kind: str) -> str:
    return f"resource.customizations.health.{GROUP}_{kind}"


def render(lua: str) -> str:
    """The ConfigMap patch text: ``lua`` as a literal block under each kind's key."""
    body = "".join(f"    {line}\n" if line else "\n" for line in lua.rstrip("\n").split("\n"))
    return HEADER + "".join(f"  {key(kind)}: |\n{body}" for kind in KINDS)


def main() -> int:
    TARGET.write_text(render(SCRIPT.read_text()))
    print(TARGET)
    return 0


if __name__ == "__main__":
    sys.exit(main())
