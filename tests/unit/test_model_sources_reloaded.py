"""What ``clipper watch`` watches besides the manifests, and that a model is loaded again as it is on
disk now (a long-running watch must not deploy a local module it imported before an edit)."""

from __future__ import annotations

from pathlib import Path

from reconciler.deploy import load_function
from reconciler.desired import desired_state, source_paths
from reconciler.loader import load_manifests

MANIFEST = """\
apiVersion: clipper.ai/v1
kind: Model
metadata: {name: m}
spec:
  inputType: doubles
  source: {python: {function: models/model.py:predict}}
"""


def write_model(root: Path, factor: int) -> None:
    (root / "models").mkdir(exist_ok=True)
    (root / "models" / "factors.py").write_text(f"FACTOR = {factor}\n")
    (root / "models" / "model.py").write_text(
        "from factors import FACTOR\n\n\ndef predict(xs):\n    return [str(sum(x) * FACTOR) for x in xs]\n"
    )


def test_source_paths_are_the_model_file_and_its_local_modules(tmp_path: Path) -> None:
    write_model(tmp_path, 2)
    (tmp_path / "m.yaml").write_text(MANIFEST)
    state = desired_state(load_manifests([str(tmp_path / "m.yaml")]))
    models = (tmp_path / "models").resolve()
    assert source_paths(state) == [models / "factors.py", models / "model.py"]


def test_a_model_is_loaded_with_its_local_modules_as_they_are_now(tmp_path: Path) -> None:
    write_model(tmp_path, 2)
    assert load_function("models/model.py:predict", tmp_path)([[1.0, 2.0]]) == ["6.0"]
    (tmp_path / "models" / "factors.py").write_text("FACTOR = 5\n")
    assert load_function("models/model.py:predict", tmp_path)([[1.0, 2.0]]) == ["15.0"]
