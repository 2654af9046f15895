"""The apply history of a cluster, kept where its ownership records are (:mod:`reconciler.ownership`):
in the cluster's own store when its admin API requires the token, else in an owner-only local file.

Each apply that changed something appends an entry: when, the manifests' revision (git commit,
``-dirty``), who and where (``user@host``), the plan's changes, the result, and the desired state it
applied (Cluster settings without ``adminToken``, each Model's spec and resolved version, each
Application) so that ``clipper rollback`` can apply it again. The last :data:`KEEP` entries are kept.
"""

from __future__ import annotations

import datetime
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from reconciler.desired import DesiredApp, DesiredModel, DesiredState, DesiredTraffic
from reconciler.ownership import RecordStore, write_owner_only

NAMESPACE = "reconciler"
KEY = "history"
#: entries kept (the oldest are dropped)
KEEP = 100


@dataclass(frozen=True)
class Entry:
    number: int  # 1, 2, ... for the cluster's life (kept across the dropped ones)
    time: str  # ISO 8601, UTC
    revision: str | None  # git commit of the manifests (``-dirty``), or what was rolled back to
    who: str  # user@host
    changes: list[str]  # "replace Model/m (version a -> b)"
    result: str  # "succeeded" | "failed: <error>"
    desired: dict[str, Any] = field(default_factory=dict)  # see :func:`desired_doc`

    def summary(self) -> dict[str, Any]:
        """The entry without its desired state: what ``clipper history`` shows."""
        d = asdict(self)
        d.pop("desired")
        return d


def desired_doc(state: DesiredState) -> dict[str, Any]:
    """The desired state as JSON, without secrets (the admin token is never stored)."""
    cluster = state.cluster.model_dump(by_alias=True, mode="json", exclude_none=True)
    cluster.pop("adminToken", None)
    models: dict[str, Any] = {}
    for name, m in state.models.items():
        spec = m.loaded.obj.spec.model_dump(by_alias=True, mode="json", exclude_none=True) if m.loaded else {}
        models[name] = {"version": m.version, "content_hash": m.content_hash, "labels": list(m.labels),
                        "spec": spec}  # fmt: skip
    return {"cluster": state.cluster_name, "cluster_spec": cluster, "models": models,
            "apps": {name: asdict(a) for name, a in state.apps.items()}}  # fmt: skip


def desired_models(doc: dict[str, Any]) -> dict[str, DesiredModel]:
    """The models of a stored desired state, each pinned to the version it had then."""
    from schemas.model import ModelSpec

    out = {}
    for name, m in doc.get("models", {}).items():
        spec = ModelSpec.model_validate(m["spec"])
        out[name] = DesiredModel(
            name=name, version=m["version"], input_type=spec.input_type, replicas=spec.replicas,
            batch_size=spec.batch_size, content_hash=m["content_hash"], explicit_version=True,
            labels=tuple(m.get("labels", ())), source_kind=spec.source.kind, health=spec.health,
            rollout=spec.rollout,
        )  # fmt: skip
    return out


def desired_apps(doc: dict[str, Any]) -> dict[str, DesiredApp]:
    out = {}
    for name, a in doc.get("apps", {}).items():
        fields = dict(a)
        traffic = DesiredTraffic.from_dict(fields.pop("traffic", None))
        out[name] = DesiredApp(**fields, traffic=traffic)
    return out


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class History:
    """The entries in ``store`` (the cluster's) when given, else in ``<cluster dir>/reconciler/history.json``."""

    def __init__(self, cluster_dir: Path, store: RecordStore | None = None) -> None:
        self.path = cluster_dir / "reconciler" / "history.json"
        self.store = store

    def _read(self) -> list[dict[str, Any]]:
        if self.store is not None:
            text = self.store.get_record(NAMESPACE, KEY)
        else:
            try:
                text = self.path.read_text()
            except FileNotFoundError:
                text = None
        if text is None:
            return []
        try:
            body = json.loads(text)
        except ValueError as e:
            raise OSError(f"cannot read the apply history: {e}") from e
        return body if isinstance(body, list) else []

    def _write(self, entries: list[dict[str, Any]]) -> None:
        text = json.dumps(entries, sort_keys=True)
        if self.store is not None:
            self.store.put_record(NAMESPACE, KEY, text)
            return
        write_owner_only(self.path, text + "\n")

    def entries(self) -> list[Entry]:
        """Oldest first."""
        return [Entry(**e) for e in self._read()]

    def append(self, revision: str | None, who: str, changes: list[str], result: str,
               desired: dict[str, Any]) -> Entry:  # fmt: skip
        raw = self._read()
        number = (raw[-1]["number"] + 1) if raw else 1
        entry = Entry(number, now(), revision, who, changes, result, desired)
        raw.append(asdict(entry))
        self._write(raw[-KEEP:])
        return entry
