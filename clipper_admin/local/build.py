"""``build_model`` on the local backend: the "image" is a model directory under the cluster directory."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from ..exceptions import ClipperException
from ..requirements import is_satisfied, pip_install_target, read_requirements_file

LOCAL_IMAGE_PREFIX = "local:"


def image_for(model_dir: Path) -> str:
    return f"{LOCAL_IMAGE_PREFIX}{model_dir}"


def model_dir_of(image: str, models_root: Path) -> Path:
    """The model directory a ``local:<path>`` image names (a plain directory path works too).

    Only directories this cluster built are accepted: under ``models_root`` once every symlink and
    ``..`` is resolved, and owned (with ``models_root`` and the model files) by the user running the
    cluster. A ``container_name`` is recorded by the management API, which other local users may
    reach; without this check a forged one would make the cluster run their code as its owner.
    """
    path = Path(image[len(LOCAL_IMAGE_PREFIX) :] if image.startswith(LOCAL_IMAGE_PREFIX) else image)
    if not path.is_absolute() or not path.is_dir():
        raise ClipperException(
            f"The local backend cannot run image {image!r}: it runs model directories, named "
            "'local:<model dir>'. Build one with ClipperConnection.build_model (or a deployer)."
        )
    root = Path(models_root).resolve()
    real = path.resolve()
    if not real.is_relative_to(root) or real == root:
        raise ClipperException(
            f"The local backend runs only model directories it built for this cluster (under {root}); "
            f"{image!r} is not one. Build it with ClipperConnection.build_model (or a deployer)."
        )
    files = [p for p in (real / "func.pkl", real / "clipper_model.json") if p.is_file()]
    if not files:
        raise ClipperException(f"{path} is not a model directory (no func.pkl or clipper_model.json)")
    chain = [*files, real, *(d for d in real.parents if d.is_relative_to(root))]
    for p in chain:
        if p.lstat().st_uid != os.getuid():
            raise ClipperException(
                f"Refusing to run model directory {real}: {p} belongs to another user (uid "
                f"{p.lstat().st_uid}). Rebuild the model with ClipperConnection.build_model."
            )
    return real


def build_local_model(
    models_root: Path, name: str, version: str, model_data_path: str, pkgs_to_install: list[str] | None = None
) -> str:
    """Copy ``model_data_path`` to ``<models_root>/<name>/<version>/`` and install missing requirements.

    Requirements come from the directory's ``requirements.txt`` plus ``pkgs_to_install``; only those
    the running environment does not already satisfy are installed, into ``site-packages/``.
    The directory is assembled next to its destination and renamed into place, so a failed build
    leaves the previous one (if any) untouched.
    """
    src = Path(model_data_path)
    if not src.is_dir():
        raise ClipperException(f"model_data_path {str(model_data_path)!r} is not a directory")
    dest = models_root / name / version
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=dest.parent))
    try:
        build = staging / "model"
        shutil.copytree(src, build, ignore=shutil.ignore_patterns("__pycache__"))
        requirements = read_requirements_file(build / "requirements.txt")
        extra = list(pkgs_to_install or [])
        if extra:
            requirements += [p for p in extra if p not in requirements]
            (build / "requirements.txt").write_text("".join(f"{r}\n" for r in requirements))
            _record_requirements(build, requirements)
        missing = [r for r in requirements if not is_satisfied(r)]
        if missing:
            pip_install_target(missing, build / "site-packages")
        if dest.exists():
            shutil.rmtree(dest)
        build.rename(dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return image_for(dest)


def _record_requirements(model_dir: Path, requirements: list[str]) -> None:
    meta_path = model_dir / "clipper_model.json"
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {"kind": "python"}
    meta["requirements"] = requirements
    meta_path.write_text(json.dumps(meta, indent=1))
