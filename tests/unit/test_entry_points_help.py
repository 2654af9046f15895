"""Every entry point answers ``--help`` with its usage (exit 0), without needing its configuration."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import clipper.container

ENTRY_POINTS = {
    "container": [sys.executable, "-m", "clipper.container"],
    "query frontend": [sys.executable, "-m", "clipper.query_frontend"],
    "management frontend": [sys.executable, "-m", "clipper.management_frontend"],
    "supervisor": [sys.executable, "-m", "clipper_admin.local.supervisor"],
    # the console script pip installs next to the interpreter
    "clipper CLI": [str(Path(sys.executable).with_name("clipper"))],
}


def clean_env() -> dict[str, str]:
    """No CLIPPER_* variable: --help must not depend on the configuration."""
    return {k: v for k, v in os.environ.items() if not k.startswith("CLIPPER_")}


@pytest.mark.parametrize("name", list(ENTRY_POINTS))
def test_help_prints_usage_and_exits_0(name):
    out = subprocess.run(
        [*ENTRY_POINTS[name], "--help"], capture_output=True, text=True, timeout=60, env=clean_env()
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("usage: "), out.stdout
    assert "--help" in out.stdout


def test_container_help_names_every_variable_it_reads():
    out = subprocess.run(
        [*ENTRY_POINTS["container"], "--help"], capture_output=True, text=True, timeout=60, env=clean_env()
    )
    read = set()  # the container's code and the RPC modules it uses
    package = Path(clipper.container.__file__).parent
    for source in [*package.glob("*.py"), *(package.parent / "rpc").glob("*.py")]:
        read |= set(re.findall(r'"(CLIPPER_[A-Z_]+)"', source.read_text()))
    assert {"CLIPPER_MODEL_NAME", "CLIPPER_IP", "CLIPPER_PORT", "CLIPPER_SPARK_MASTER"} <= read
    missing = sorted(v for v in read if v not in out.stdout)
    assert not missing, f"--help does not describe {missing}"


def test_container_rejects_arguments():
    out = subprocess.run(
        [*ENTRY_POINTS["container"], "--model", "x"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 2
    assert "unrecognized arguments: --model x" in out.stderr
