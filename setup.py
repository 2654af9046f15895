"""Build hook: pure Python unless ``CLIPPER_COMPILE=1``, which compiles the prediction hot path
(:data:`clipper.compiled.HOT_PATH_MODULES`) with mypyc. Everything else is in pyproject.toml.

mypyc type-checks the modules with this project's mypy settings, so the build needs mypy and
clipper's dependencies installed where it runs:

    pip install mypy setuptools wheel . && CLIPPER_COMPILE=1 pip install --no-build-isolation --no-deps --force-reinstall .

Not for editable installs: compiled modules next to their sources would shadow every later edit.
"""

import os
import sys
from pathlib import Path

from setuptools import setup

ext_modules = []
if os.environ.get("CLIPPER_COMPILE") == "1":
    try:
        import pydantic  # noqa: F401  (mypy's pydantic plugin, pyproject.toml)
        from mypyc.build import mypycify
    except ImportError as e:
        sys.exit(
            f"CLIPPER_COMPILE=1: {e}. The build type-checks the hot path with clipper's dependencies: "
            "install mypy, setuptools, wheel and clipper first (pip install mypy setuptools wheel .), "
            "then build with pip install --no-build-isolation --no-deps --force-reinstall ."
        )
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from clipper.compiled import HOT_PATH_MODULES

    ext_modules = mypycify([name.replace(".", "/") + ".py" for name in HOT_PATH_MODULES], opt_level="3")

setup(ext_modules=ext_modules)
