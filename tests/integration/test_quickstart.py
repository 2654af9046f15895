"""The README's first command on a fresh machine: ``./quickstart.sh`` in a fresh copy of the clone, with a
new HOME and a ``python3`` that has nothing installed (a bare virtual environment first on PATH).

It used to decide "already installed" by importing ``clipper`` from the working directory, which
succeeds without the package, its dependencies or the ``clipper`` command (``clipper: command not
found``). Now it installs into ``.venv/`` of the clone when something is missing, and a second run
installs nothing. The cluster runs on free ports (``QUERY_PORT``... in the quickstart manifest).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from clipper.net import free_port
from clipper_admin import LocalContainerManager

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


def fresh_copy(dest: Path) -> None:
    """What a clone of the current work tree holds: tracked and untracked files, nothing git ignores
    (so no .venv/, no egg-info)."""
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO, capture_output=True, check=True,
    ).stdout.split(b"\0")  # fmt: skip
    for name in filter(None, files):
        src = REPO / os.fsdecode(name)
        if src.is_file():
            (dest / src.relative_to(REPO)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / src.relative_to(REPO))


@pytest.fixture
def fresh(tmp_path):
    clone, home, bare = tmp_path / "clone", tmp_path / "home", tmp_path / "bare"
    clone.mkdir()
    home.mkdir()
    fresh_copy(clone)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True)
    here = str(Path(sys.executable).parent)
    path = [str(bare / "bin"), *(p for p in os.environ["PATH"].split(os.pathsep) if p != here)]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLIPPER_", "VIRTUAL_ENV", "PYTHON"))}
    env.update(
        HOME=str(home),
        PATH=os.pathsep.join(path),
        PIP_CACHE_DIR=os.environ.get("PIP_CACHE_DIR") or str(Path.home() / ".cache" / "pip"),
        QUERY_PORT=str(free_port()),
        MANAGEMENT_PORT=str(free_port()),
        RPC_PORT=str(free_port()),
    )
    try:
        yield clone, env
    finally:
        subprocess.run(
            [str(clone / ".venv/bin/clipper"), "delete", "-f", "examples/manifests/quickstart.yaml", "--cluster"],
            cwd=clone, env=env, capture_output=True, timeout=120, check=False,
        )  # fmt: skip
        LocalContainerManager("quickstart", state_dir=home / ".clipper").stop_all()  # whatever is left


def run_quickstart(clone: Path, env: dict) -> str:
    out = subprocess.run(["./quickstart.sh"], cwd=clone, env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def test_quickstart_on_a_fresh_machine_twice(fresh):
    clone, env = fresh
    bare_python = subprocess.run(
        ["python3", "-c", "import sys; print(sys.prefix)"], env=env, capture_output=True, text=True
    )
    assert bare_python.stdout.strip().endswith("bare")  # python3 is the bare one

    first = run_quickstart(clone, env)
    assert "==> pip install -e '.' (into .venv)" in first
    answer = json.loads(first.strip().splitlines()[-2])
    assert answer == {"query_id": 0, "output": 6.6, "default": False}
    assert (clone / ".venv/bin/clipper").exists()
    assert (Path(env["HOME"]) / ".clipper" / "quickstart" / "cluster.json").exists()
    # the interpreter the user ran is left as it was
    assert not list(
        (Path(env["PATH"].split(os.pathsep)[0]).parent / "lib").glob("python3*/site-packages/clipper*")
    )

    second = run_quickstart(clone, env)
    assert "pip install" not in second and "venv" not in second.split("==> clipper apply")[0]
    assert json.loads(second.strip().splitlines()[-2])["output"] == 6.6
