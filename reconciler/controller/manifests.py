"""A namespace's custom resources -> the manifest set ``clipper apply`` would load from files.

Each live resource becomes a document named ``Kind/<namespace>/<name>`` (its ``apiVersion``,
``kind``, ``metadata.name``/``labels`` and ``spec``: what a manifest has) and goes through
:func:`reconciler.loader.load_documents`, the CLI's validation and cross-checks. Beyond those, the
controller refuses what it cannot run in a pod:

- a Model whose source is ``python`` or ``pyspark`` (no build in the controller: build an image with
  ``clipper build`` and reference it in ``source.image``);
- a Cluster whose backend is not ``kubernetes``, or whose ``spec.kubernetes.namespace`` is another
  namespace (the Clipper cluster runs in the namespace of its Cluster resource: it is set to it);
- a second Cluster in the namespace (the oldest one counts).

A refused resource gets a :class:`~reconciler.controller.conditions.Verdict` (InvalidSpec, with
the field path); the others are planned without it. So that a typo never deletes what serves, a
refused resource that was valid before stands in the set with its last valid document; when there
is none (the controller restarted meanwhile), nothing is pruned in that pass. Without a usable
Cluster nothing is planned: the other resources get NoCluster.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from reconciler.controller.conditions import INVALID_SPEC, NO_CLUSTER, Verdict
from reconciler.errors import ManifestErrors, ManifestProblem
from reconciler.loader import ManifestSet, load_documents
from schemas.common import API_VERSION

Ref = tuple[str, str]  # (kind, name)
KIND_ORDER = ("Cluster", "Model", "Application")


@dataclass(frozen=True)
class Resource:
    """One custom resource as the API server returned it."""

    raw: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.raw.get("kind"))

    @property
    def meta(self) -> dict[str, Any]:
        meta: dict[str, Any] = self.raw.get("metadata") or {}
        return meta

    @property
    def name(self) -> str:
        return str(self.meta.get("name"))

    @property
    def ref(self) -> Ref:
        return self.kind, self.name

    @property
    def generation(self) -> int:
        return int(self.meta.get("generation") or 0)

    @property
    def deleting(self) -> bool:
        return bool(self.meta.get("deletionTimestamp"))

    @property
    def finalizers(self) -> list[str]:
        return list(self.meta.get("finalizers") or [])

    @property
    def status(self) -> dict[str, Any]:
        status: dict[str, Any] = self.raw.get("status") or {}
        return status

    @property
    def spec(self) -> Any:
        return self.raw.get("spec")


def document(r: Resource) -> dict[str, Any]:
    """What a manifest of ``r`` says (the API server's bookkeeping left out)."""
    meta: dict[str, Any] = {"name": r.name}
    if r.meta.get("labels"):
        meta["labels"] = copy.deepcopy(r.meta["labels"])
    doc = {"apiVersion": r.raw.get("apiVersion", API_VERSION), "kind": r.kind, "metadata": meta}
    if "spec" in r.raw:
        doc["spec"] = copy.deepcopy(r.raw["spec"])
    return doc


def doc_name(namespace: str, ref: Ref) -> str:
    return f"{ref[0]}/{namespace}/{ref[1]}"


def refusal(r: Resource, namespace: str) -> str | None:
    """Why the controller cannot run ``r`` although a manifest could say it (see the module)."""
    spec = r.spec if isinstance(r.spec, Mapping) else {}
    if r.kind == "Model":
        source = spec.get("source")
        source = source if isinstance(source, Mapping) else {}
        for kind in ("python", "pyspark"):
            if source.get(kind) is not None:
                return (f"spec.source.{kind}: the controller runs model images only: build one with "
                        f"'clipper build' and reference it in spec.source.image")  # fmt: skip
    if r.kind == "Cluster":
        backend = spec.get("backend", "local")
        if backend != "kubernetes":
            return (f"spec.backend: the controller runs Clipper on Kubernetes, in this namespace: "
                    f"set backend: kubernetes (got {backend!r})")  # fmt: skip
        if spec.get("adminAuth") == "none":
            return ("spec.adminAuth: the controller keeps its ownership records and apply lease in the "
                    "cluster's store, which 'none' lets anybody rewrite: drop the field (token)")  # fmt: skip
        if spec.get("adminToken") is not None:
            return ("spec.adminToken: a token in a custom resource is readable by whoever can read the "
                    "resource: drop it, the controller generates one and keeps it in a Secret")  # fmt: skip
        k8s = spec.get("kubernetes")
        ns = k8s.get("namespace") if isinstance(k8s, Mapping) else None
        if ns is not None and ns != namespace:
            return (f"spec.kubernetes.namespace: the cluster runs in the namespace of its Cluster resource "
                    f"({namespace}); drop the field or set it to {namespace!r} (got {ns!r})")  # fmt: skip
    return None


def in_namespace(doc: dict[str, Any], namespace: str) -> dict[str, Any]:
    """A Cluster document with ``spec.kubernetes.namespace`` set to ``namespace``."""
    spec = doc.get("spec")
    if doc["kind"] == "Cluster" and isinstance(spec, dict):
        k8s = spec.get("kubernetes")
        spec["kubernetes"] = {**(k8s if isinstance(k8s, dict) else {}), "namespace": namespace}
    return doc


def problem_text(problems: list[ManifestProblem]) -> str:
    return "; ".join(f"{p.path}: {p.message}" if p.path else p.message for p in problems)


@dataclass
class Desired:
    """What one pass plans: the manifest set (None: no usable Cluster), the verdicts on refused
    resources, and whether pruning is safe."""

    manifests: ManifestSet | None
    verdicts: dict[Ref, Verdict] = field(default_factory=dict)
    prune: bool = True
    #: the resources planned with their own current spec (the others: refused, deleting)
    planned: set[Ref] = field(default_factory=set)


def desired(resources: list[Resource], namespace: str, last_good: dict[Ref, dict[str, Any]]) -> Desired:
    """The manifest set of ``resources`` (live ones only: a resource being deleted is left out, so
    the apply prunes what it owned). Updates ``last_good`` with the documents that loaded."""
    live = sorted((r for r in resources if not r.deleting),
                  key=lambda r: (KIND_ORDER.index(r.kind), str(r.meta.get("creationTimestamp")), r.name))  # fmt: skip
    verdicts: dict[Ref, Verdict] = {}
    docs: dict[Ref, dict[str, Any]] = {}
    cluster: Resource | None = None
    for r in live:
        why = refusal(r, namespace)
        if r.kind == "Cluster" and why is None:
            if cluster is not None:
                why = f"only one Cluster per namespace: Cluster/{cluster.name} is this namespace's"
            else:
                cluster = r
        if why is not None:
            verdicts[r.ref] = Verdict(INVALID_SPEC, why)
        else:
            docs[r.ref] = in_namespace(document(r), namespace)
    # a refused resource with a last valid document keeps it in force (see the module's docstring)
    stand_ins = {ref: copy.deepcopy(last_good[ref]) for ref in verdicts if ref in last_good}
    stand_ins = {ref: d for ref, d in stand_ins.items() if ref[0] != "Cluster" or cluster is None}
    docs.update(stand_ins)
    while True:
        try:
            manifests = load_documents([(doc_name(namespace, ref), d) for ref, d in docs.items()])
            break
        except ManifestErrors as e:
            by_doc: dict[str, list[ManifestProblem]] = {}
            for p in e.problems:
                by_doc.setdefault(p.file, []).append(p)
            bad = [ref for ref in docs if doc_name(namespace, ref) in by_doc]
            if not bad:  # a problem of no single document: none can be planned
                bad = list(docs)
                by_doc = {doc_name(namespace, ref): e.problems for ref in bad}
            for ref in bad:
                if ref in stand_ins:  # its last valid document no longer fits either: the refusal stands
                    del docs[ref], stand_ins[ref]
                    continue
                verdicts[ref] = Verdict(INVALID_SPEC, problem_text(by_doc[doc_name(namespace, ref)]))
                if ref in last_good and (ref[0] != "Cluster" or cluster is None or cluster.ref == ref):
                    docs[ref] = stand_ins[ref] = copy.deepcopy(last_good[ref])
                else:
                    del docs[ref]
    if manifests.cluster is None:
        return _no_cluster(live, verdicts, namespace)
    planned = {ref for ref in docs if ref not in stand_ins}
    for ref in planned:  # planned with a Cluster: in force from now on
        last_good[ref] = docs[ref]
    # what a refused resource without a stand-in owns is unknown: pruning could delete it (a refused
    # Cluster owns nothing of this one: the owner is the Cluster's name)
    prune = all(ref in stand_ins for ref in verdicts if ref[0] != "Cluster")
    return Desired(manifests, verdicts, prune, planned)


def _no_cluster(live: list[Resource], verdicts: dict[Ref, Verdict], namespace: str) -> Desired:
    clusters = [r for r in live if r.kind == "Cluster"]
    why = (f"Cluster/{clusters[0].name} cannot be used ({verdicts[clusters[0].ref].message})"
           if clusters and clusters[0].ref in verdicts
           else f"no Cluster in namespace {namespace}: create one (backend: kubernetes)")  # fmt: skip
    out = dict(verdicts)
    for r in live:
        if r.kind != "Cluster" and r.ref not in verdicts:
            out[r.ref] = Verdict(NO_CLUSTER, why)
    return Desired(None, out, False, set())
