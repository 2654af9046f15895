"""``clipper controller``: the in-cluster reconciler of the clipper.ai/v1 custom resources.

It runs the same load/plan/apply/status code as the CLI (:mod:`reconciler.engine`,
:mod:`reconciler.status`); this package only turns custom resources into a manifest set
(:mod:`.manifests`), their results into status documents (:mod:`.conditions`), and talks to the
Kubernetes API (:mod:`.kube`) under a Lease (:mod:`.leader`). See docs/controller.md.
"""

from __future__ import annotations

GROUP = "clipper.ai"
VERSION = "v1"
#: kind -> plural of the custom resources, in the order a namespace is listed
PLURALS: dict[str, str] = {"Cluster": "clusters", "Model": "models", "Application": "applications"}
#: on every custom resource the controller manages: what it owned goes before the resource does
FINALIZER = "clipper.ai/cleanup"
#: field manager of its writes and source component of its Events
COMPONENT = "clipper-controller"
