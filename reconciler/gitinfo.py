"""Which git commit the manifests come from (recorded on what apply creates)."""

from __future__ import annotations

import subprocess
from pathlib import Path


def git_commit(paths: list[Path]) -> str | None:
    """``<sha12>`` or ``<sha12>-dirty`` when the manifests live in a git work tree, else None."""
    if not paths:
        return None
    where = paths[0].resolve().parent
    try:
        sha = subprocess.run(
            ["git", "-C", str(where), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        )
        if sha.returncode != 0:
            return None
        dirs = sorted({str(p.resolve().parent) for p in paths})
        status = subprocess.run(
            ["git", "-C", str(where), "status", "--porcelain", "--", *dirs],
            capture_output=True, text=True, timeout=10,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return None
    dirty = status.returncode == 0 and bool(status.stdout.strip())
    return sha.stdout.strip()[:12] + ("-dirty" if dirty else "")
