"""Ownership registry: which applications and model versions this cluster's reconciler created.

Clipper applications have no labels, and model labels prove nothing (anyone who can reach the
management API can register a version with any labels), so what a manifest set created is recorded
by the reconciler itself. For a model version the record holds the image (model directory) the
reconciler deployed and the content hash of its source: only a registered version whose image
matches its record counts as the reconciler's, so only such a version is ever scaled or started
again. The registry is consulted only to decide *ownership* (may this object be updated or
pruned?); the state of every object is always observed from the management API. An app that is in
the registry but gone from the cluster is recreated.

Where the records live:

* in the cluster's own config store (record ``reconciler/ownership``, through the token-protected
  management API) when the cluster runs and its admin API requires the token: every machine that
  applies to the cluster sees the same records. Only token holders can write them, and a token
  holder can register any model version anyway.
* otherwise in ``<cluster dir>/reconciler/apps.json`` (``$CLIPPER_HOME/<cluster>/``) on the machine
  that runs ``clipper``, readable and writable by its owner only (file 0600, directory 0700): a
  cluster started with ``adminAuth: none`` lets anybody write its store, and a record anybody can
  forge would let a forged version be started by ``clipper apply``.

A local ``apps.json`` left from before is read once and moved into the cluster's store.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from reconciler.observed import AppRecord, ModelRecord

NAMESPACE = "reconciler"
KEY = "ownership"


def write_owner_only(path: Path, text: str) -> None:
    """Replace ``path`` atomically by a file only its owner can read, in a directory only it can enter."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    tmp = path.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


class RecordStore(Protocol):
    """The record operations of :class:`reconciler.port.ClusterPort`."""

    def get_record(self, namespace: str, key: str) -> str | None: ...

    def get_records(self, namespace: str, keys: Sequence[str]) -> dict[str, str | None]: ...

    def put_record(self, namespace: str, key: str, value: str | None) -> None: ...


class OwnershipRegistry:
    """The records in ``store`` (the cluster's) when given, else in the owner-only local file."""

    def __init__(self, cluster_dir: Path, store: RecordStore | None = None):
        self.path = cluster_dir / "reconciler" / "apps.json"
        self.store = store

    def _read(self) -> dict[str, Any]:
        if self.store is None:
            return self._read_file()
        text = self.store.get_record(NAMESPACE, KEY)
        if text is None:
            return self._migrate()
        try:
            body = json.loads(text)
        except ValueError as e:
            raise OSError(f"cannot read the cluster's ownership records: {e}") from e
        if not isinstance(body, dict):
            raise OSError("cannot read the cluster's ownership records: not a JSON object")
        return body

    def _migrate(self) -> dict[str, Any]:
        """Move a local ``apps.json`` (written before the records lived in the cluster) into it."""
        body = self._read_file()
        if body and self.store is not None:
            self.store.put_record(NAMESPACE, KEY, json.dumps(body, sort_keys=True))
            self.path.unlink(missing_ok=True)
        return body

    def _read_file(self) -> dict[str, Any]:
        try:
            body = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as e:
            raise OSError(f"cannot read the ownership registry {self.path}: {e}") from e
        if not isinstance(body, dict):
            raise OSError(f"cannot read the ownership registry {self.path}: not a JSON object")
        return body

    def _write(self, body: dict[str, Any]) -> None:
        if self.store is not None:
            self.store.put_record(NAMESPACE, KEY, json.dumps(body, sort_keys=True))
            return
        write_owner_only(self.path, json.dumps(body, indent=2, sort_keys=True) + "\n")

    def load(self) -> dict[str, AppRecord]:
        return {name: AppRecord(**rec) for name, rec in self._read().get("apps", {}).items()}

    def save(self, records: dict[str, AppRecord]) -> None:
        body = self._read()
        body["apps"] = {n: {"owner": r.owner, "git_commit": r.git_commit} for n, r in sorted(records.items())}
        self._write(body)

    def load_models(self) -> dict[str, dict[str, ModelRecord]]:
        """Per model, its recorded versions, oldest first (:attr:`ModelRecord.recorded_at`)."""
        out: dict[str, dict[str, ModelRecord]] = {}
        for name, versions in self._read().get("models", {}).items():
            records = [(version, ModelRecord(**rec)) for version, rec in versions.items()]
            records.sort(key=lambda vr: vr[1].recorded_at or 0.0)
            out[name] = dict(records)
        return out

    def record_model(self, name: str, version: str, record: ModelRecord) -> None:
        """Record a version the reconciler is about to register (before it exists: no orphan)."""
        body = self._read()
        body.setdefault("models", {}).setdefault(name, {})[version] = {
            "owner": record.owner,
            "image": record.image,
            "content_hash": record.content_hash,
            "recorded_at": record.recorded_at if record.recorded_at is not None else time.time(),
        }
        self._write(body)

    def remove(self) -> None:
        """Forget every record (the cluster was deleted)."""
        if self.store is not None:
            try:
                self.store.put_record(NAMESPACE, KEY, None)
            except Exception:  # a stopped cluster's store went with it
                pass
        self.path.unlink(missing_ok=True)
