"""images/build.sh's choice of the hot path for the images (CLIPPER_IMAGE_COMPILE): a mode it does
not know and a compiled build it cannot make are errors that say why, before anything is built.
(That the images it built run the hot path they are labelled with: test_docker_cluster.py.)"""

from __future__ import annotations

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.path.join(ROOT, "images", "build.sh")


def _build_sh(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", BUILD, "--no-prometheus"],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=120,
    )


def test_an_unknown_compile_mode_is_an_error():
    out = _build_sh({"CLIPPER_IMAGE_COMPILE": "yes"})
    assert out.returncode == 2
    assert "CLIPPER_IMAGE_COMPILE must be auto, 1 or 0, not 'yes'" in out.stderr
    assert "building" not in out.stdout


def test_a_required_compiled_build_without_mypy_says_what_is_missing(tmp_path):
    """A python3 without mypy first on PATH (a bare venv): CLIPPER_IMAGE_COMPILE=1 stops, auto
    would fall back to the pure-Python wheel."""
    bare = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True, timeout=60)
    out = _build_sh({"CLIPPER_IMAGE_COMPILE": "1", "PATH": f"{bare / 'bin'}:{os.environ['PATH']}"})
    assert out.returncode == 1, out.stdout + out.stderr
    assert "CLIPPER_IMAGE_COMPILE=1, but the hot path cannot be compiled here" in out.stderr
    assert "cannot import mypyc" in out.stderr
    assert "building" not in out.stdout
