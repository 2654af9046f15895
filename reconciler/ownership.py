"""Ownership registry: which applications and model versions this cluster's reconciler created.

Clipper applications have no labels, and model labels prove nothing (anyone who can reach the
management API can register a version with any labels), so what a manifest set created is recorded
in ``<cluster dir>/reconciler/apps.json`` (``$CLIPPER_HOME/<cluster>/``; for docker and kubernetes
clusters the same path on the machine that runs ``clipper``), readable and writable by its owner
only (file 0600, directory 0700). For a model version the record holds the image (model directory)
the reconciler deployed and the content hash of its source: only a registered version whose image
matches its record counts as the reconciler's, so only such a version is ever scaled or started
again. The registry is consulted only to decide *ownership* (may this object be updated or
pruned?); the state of every object is always observed from the management API. An app that is in
the registry but gone from the cluster is recreated.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from reconciler.observed import AppRecord, ModelRecord


class OwnershipRegistry:
    def __init__(self, cluster_dir: Path):
        self.path = cluster_dir / "reconciler" / "apps.json"

    def _read(self) -> dict[str, Any]:
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
        self.path.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(self.path.parent, 0o700)
        tmp = self.path.with_suffix(".tmp")
        tmp.unlink(missing_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(body, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, self.path)

    def load(self) -> dict[str, AppRecord]:
        return {name: AppRecord(**rec) for name, rec in self._read().get("apps", {}).items()}

    def save(self, records: dict[str, AppRecord]) -> None:
        body = self._read()
        body["apps"] = {n: {"owner": r.owner, "git_commit": r.git_commit} for n, r in sorted(records.items())}
        self._write(body)

    def load_models(self) -> dict[str, dict[str, ModelRecord]]:
        return {
            name: {version: ModelRecord(**rec) for version, rec in versions.items()}
            for name, versions in self._read().get("models", {}).items()
        }

    def record_model(self, name: str, version: str, record: ModelRecord) -> None:
        """Record a version the reconciler is about to register (before it exists: no orphan)."""
        body = self._read()
        body.setdefault("models", {}).setdefault(name, {})[version] = {
            "owner": record.owner,
            "image": record.image,
            "content_hash": record.content_hash,
        }
        self._write(body)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
