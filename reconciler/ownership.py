"""Ownership registry of applications (models carry ownership as labels instead).

Clipper applications have no labels, so which applications a manifest set created is recorded in
``<cluster dir>/reconciler/apps.json`` (``$CLIPPER_HOME/<cluster>/``; for docker and kubernetes
clusters the same path on the machine that runs ``clipper``). The registry is consulted only to
decide *ownership* (may this app be updated or pruned?); the state of every app is always observed
from the management API. An app that is in the registry but gone from the cluster is recreated.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from reconciler.observed import AppRecord


class OwnershipRegistry:
    def __init__(self, cluster_dir: Path):
        self.path = cluster_dir / "reconciler" / "apps.json"

    def load(self) -> dict[str, AppRecord]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as e:
            raise OSError(f"cannot read the ownership registry {self.path}: {e}") from e
        return {name: AppRecord(**rec) for name, rec in data.get("apps", {}).items()}

    def save(self, records: dict[str, AppRecord]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        body = {
            "apps": {n: {"owner": r.owner, "git_commit": r.git_commit} for n, r in sorted(records.items())}
        }
        tmp.write_text(json.dumps(body, indent=2) + "\n")
        os.replace(tmp, self.path)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
