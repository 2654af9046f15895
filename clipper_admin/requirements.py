"""Pip requirements: which ones the running environment already satisfies, and installing the rest.

Used at model *build* time (never at replica start): the local backend installs what is missing into
``<model dir>/site-packages`` with ``pip install --target``.
"""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement

from .exceptions import ClipperException


def parse_requirement(text: str) -> Requirement:
    try:
        return Requirement(text)
    except InvalidRequirement as e:
        raise ClipperException(f"Invalid package requirement {text!r}: {e}") from None


def is_satisfied(text: str) -> bool:
    """True when an installed distribution matches the requirement (name, version and markers)."""
    req = parse_requirement(text)
    if req.url:
        return False
    if req.marker is not None and not req.marker.evaluate():
        return True  # does not apply to this interpreter
    try:
        installed = metadata.version(req.name)
    except metadata.PackageNotFoundError:
        return False
    return req.specifier.contains(installed, prereleases=True)


def read_requirements_file(path: Path) -> list[str]:
    if not path.is_file():
        return []
    lines = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            lines.append(line)
    return lines


def pip_install_target(requirements: list[str], target: Path, timeout: float = 900) -> None:
    """``pip install --target <target> <requirements>``; ``ClipperException`` with pip's output on failure."""
    target.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--disable-pip-version-check",
        "--no-input",
        "--quiet",
        "--target",
        str(target),
        *requirements,
    ]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise ClipperException(
            f"pip install of {requirements} did not finish within {timeout:.0f} s"
        ) from None
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise ClipperException(f"Could not install the model's requirements {requirements}:\n{tail}")
