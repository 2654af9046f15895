"""Peers live in their own virtual environments under a cache directory, never in the repository.

``CLIPPER_BENCH_CACHE`` overrides the default ``~/.cache/clipper-bench``. A venv is reused when its
marker file names the same pinned requirement; otherwise it is (re)created with pip from PyPI.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from peers.procs import BenchError

MARKER = ".clipper-bench-installed"


def cache_dir() -> Path:
    base = os.environ.get("CLIPPER_BENCH_CACHE") or str(Path.home() / ".cache" / "clipper-bench")
    return Path(base)


def ensure_venv(name: str, requirements: list[str], log=print) -> Path:
    """The python of a venv holding ``requirements`` (pinned), installing them when needed."""
    requirement = " ".join(requirements)
    root = cache_dir() / "venvs" / name
    python = root / "bin" / "python"
    marker = root / MARKER
    if python.exists() and marker.exists() and marker.read_text().strip() == requirement:
        return python
    if root.exists():
        shutil.rmtree(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    log(f"installing {requirement} into {root} (one time; a large download)")
    steps = [
        [sys.executable, "-m", "venv", str(root)],
        [str(python), "-m", "pip", "install", "-q", "--upgrade", "pip"],
        [str(python), "-m", "pip", "install", "-q", *requirements],
    ]
    for cmd in steps:
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            raise BenchError(f"{' '.join(cmd)} failed ({res.returncode}):\n{res.stderr[-3000:]}")
    marker.write_text(requirement + "\n")
    return python
