"""Packaging a closure into a model directory, and building it for the local backend."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import cloudpickle
import pytest

from clipper_admin import ClipperException
from clipper_admin.deployers.deployer_utils import save_python_function, serialize_object
from clipper_admin.deployers.python import default_python_base_image
from clipper_admin.local.build import build_local_model, model_dir_of
from clipper_admin.requirements import is_satisfied

SCRIPT = """
import json, os, sys
import numpy as np
import {helper}
from clipper_admin.deployers.deployer_utils import save_python_function

scale = 2.0
def predict(xs):
    return [str({helper}.total(x) * scale) for x in xs]

print(save_python_function("m", predict))
"""


def package_in_subprocess(tmp_path: Path, helper_source: str, helper="helper_mod") -> Path:
    """Package a function from a script, as a user would (its helper is a local module)."""
    (tmp_path / f"{helper}.py").write_text(helper_source)
    (tmp_path / "script.py").write_text(SCRIPT.format(helper=helper))
    out = subprocess.run(
        [sys.executable, "script.py"], cwd=tmp_path, capture_output=True, text=True, timeout=60, check=True
    )
    return Path(out.stdout.strip().splitlines()[-1])


def test_closure_with_local_module_and_numpy(tmp_path):
    helper = "import numpy as np\nimport yaml_free_helper2\n\ndef total(x):\n    return float(np.sum(x))\n"
    (tmp_path / "yaml_free_helper2.py").write_text("VALUE = 1\n")
    model = package_in_subprocess(tmp_path, helper)
    try:
        assert sorted(p.name for p in model.iterdir()) == [
            "clipper_model.json",
            "func.pkl",
            "modules",
            "requirements.txt",
        ]
        import numpy

        assert model.joinpath("requirements.txt").read_text() == f"numpy=={numpy.__version__}\n"
        meta = json.loads(model.joinpath("clipper_model.json").read_text())
        assert meta["kind"] == "python" and meta["python"] == f"{sys.version_info[0]}.{sys.version_info[1]}"
        assert meta["requirements"] == [f"numpy=={numpy.__version__}"]
        # the helper and what the helper imports are shipped
        assert sorted(p.name for p in (model / "modules").iterdir()) == [
            "helper_mod.py",
            "yaml_free_helper2.py",
        ]
        # the function loads and runs where only modules/ provides the helper
        check = (
            "import sys, cloudpickle, numpy as np; sys.path.insert(0, sys.argv[1] + '/modules');"
            "f = cloudpickle.load(open(sys.argv[1] + '/func.pkl', 'rb'));"
            "print(f(np.array([[1.0, 2.0], [3.0, 4.0]])))"
        )
        out = subprocess.run(
            [sys.executable, "-c", check, str(model)], cwd="/", capture_output=True, text=True, timeout=60
        )
        assert out.stdout.strip() == "['6.0', '14.0']", out.stderr
    finally:
        import shutil

        shutil.rmtree(model)


def test_local_package_is_copied_whole(tmp_path):
    pkg = tmp_path / "mypkg_local"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("from .sub import total\n")
    (pkg / "sub.py").write_text("def total(x):\n    return sum(x)\n")
    model = package_in_subprocess(tmp_path, "from mypkg_local import total\n", helper="helper_pkg_user")
    assert (model / "modules" / "mypkg_local" / "sub.py").is_file()
    assert (model / "modules" / "helper_pkg_user.py").is_file()


def test_stdlib_and_runtime_are_not_requirements(tmp_path):
    script = (
        "import json\n"
        "import clipper\n"
        "from clipper_admin.deployers.deployer_utils import save_python_function\n"
        "def f(xs):\n"
        "    return [json.dumps(len(x)) + clipper.__name__ for x in xs]\n"
        "print(save_python_function('m', f))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    model = Path(out.stdout.strip().splitlines()[-1])
    assert model.joinpath("requirements.txt").read_text() == ""
    assert not (model / "modules").exists()
    assert cloudpickle.loads(model.joinpath("func.pkl").read_bytes())([[1, 2]]) == ["2clipper"]


def test_function_from_an_importable_module_ships_its_package():
    """A function defined in an importable (non-site-packages) module is pickled by reference: its
    top-level package goes to modules/ and that package's pip imports become requirements."""
    model = Path(save_python_function("m", _module_level_predict))
    assert (model / "modules" / "tests" / "unit" / "test_admin_deployer.py").is_file()
    assert "numpy==" in model.joinpath("requirements.txt").read_text()


def _module_level_predict(xs):
    return [str(len(x)) for x in xs]


def test_unpicklable_closure_names_the_object():
    lock = threading.Lock()

    def f(xs):
        with lock:
            return xs

    with pytest.raises(ClipperException) as e:
        save_python_function("m", f)
    assert "closure variable 'lock'" in str(e.value)
    assert "_thread.lock" in str(e.value)

    def g():
        return None

    g.sock = threading.Lock()
    with pytest.raises(ClipperException, match="cannot be pickled|Could not serialize"):
        serialize_object(threading.Lock())


def test_default_base_image():
    assert default_python_base_image().startswith(
        f"clipper/python3{sys.version_info.minor}-closure-container:"
    )


def test_requirement_satisfaction():
    import numpy

    assert is_satisfied(f"numpy=={numpy.__version__}")
    assert is_satisfied("numpy>=1")
    assert not is_satisfied("numpy<1")
    assert not is_satisfied("surely-not-installed-pkg-xyz")
    assert is_satisfied('surely-not-installed-pkg-xyz; python_version < "3"')
    with pytest.raises(ClipperException, match="Invalid package requirement"):
        is_satisfied("not a requirement !!")


def test_local_build_copies_and_skips_satisfied_requirements(tmp_path):
    def f(xs):
        import numpy as np

        return [str(np.sum(x)) for x in xs]

    src = Path(save_python_function("m", f))
    image = build_local_model(tmp_path / "models", "m", "1", src, pkgs_to_install=["numpy>=1"])
    dest = tmp_path / "models" / "m" / "1"
    assert image == f"local:{dest}"
    assert model_dir_of(image, tmp_path / "models") == dest
    assert (dest / "func.pkl").is_file()
    assert not (dest / "site-packages").exists()  # numpy is already installed here
    assert "numpy>=1" in (dest / "requirements.txt").read_text()
    assert "numpy>=1" in json.loads((dest / "clipper_model.json").read_text())["requirements"]
    # rebuilding replaces the directory
    assert build_local_model(tmp_path / "models", "m", "1", src) == image


def test_local_build_missing_requirement_fails_with_pip_output(tmp_path):
    src = tmp_path / "model"
    src.mkdir()
    (src / "func.pkl").write_bytes(cloudpickle.dumps(len))
    (src / "requirements.txt").write_text("surely-not-installed-pkg-xyz==1.0\n")
    with pytest.raises(ClipperException, match="Could not install the model's requirements"):
        build_local_model(tmp_path / "models", "m", "1", src)
    assert not (tmp_path / "models" / "m" / "1").exists()


def test_local_build_errors(tmp_path):
    with pytest.raises(ClipperException, match="is not a directory"):
        build_local_model(tmp_path / "models", "m", "1", tmp_path / "missing")
    with pytest.raises(ClipperException, match="cannot run image 'clipper/foo:1'"):
        model_dir_of("clipper/foo:1", tmp_path / "models")
    (tmp_path / "models" / "empty" / "1").mkdir(parents=True)
    with pytest.raises(ClipperException, match="is not a model directory"):
        model_dir_of(f"local:{tmp_path / 'models' / 'empty' / '1'}", tmp_path / "models")
