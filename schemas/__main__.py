"""``python -m schemas [DIR]``: write the JSON Schemas (default: schemas/json/ of a source checkout).

``python -m schemas crd [DIR]``: write the Kubernetes CustomResourceDefinitions (default:
deploy/crds/ of a source checkout).

The default directory is the repository's ``schemas/json/`` only when this package runs from a
source checkout: the directory above the package holds the ``pyproject.toml`` of the ``clipper``
project. An installed package (site-packages) is never written into: a directory must be given.
"""

from __future__ import annotations

import sys
from pathlib import Path

from schemas.crd import crd_filename, crd_text
from schemas.kinds import KINDS, json_schema_text, published, schema_filename

DEFAULT_DIR = Path(__file__).parent / "json"  # the committed schemas (in a source checkout)


def source_checkout() -> Path | None:
    """The repository this package runs from, or None when it is installed."""
    root = Path(__file__).resolve().parent.parent
    try:
        pyproject = (root / "pyproject.toml").read_text()
    except OSError:
        return None
    return root if 'name = "clipper"' in pyproject else None


def default_dir() -> Path | None:
    """Where ``clipper schema`` writes without a directory: the checkout's schemas/json, or None."""
    root = source_checkout()
    return None if root is None else root / "schemas" / "json"


def default_crd_dir() -> Path | None:
    """Where ``python -m schemas crd`` writes without a directory: the checkout's deploy/crds, or None."""
    root = source_checkout()
    return None if root is None else root / "deploy" / "crds"


def _write(directory: Path, files: dict[str, str]) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in files.items():
        path = directory / name
        path.write_text(text)
        written.append(path)
    return written


def write_crds(directory: Path) -> list[Path]:
    return _write(directory, {crd_filename(kind): crd_text(kind) for kind in KINDS})


def write_schemas(directory: Path) -> list[Path]:
    return _write(directory, {schema_filename(kind): json_schema_text(kind) for kind in published()})


def main(argv: list[str]) -> int:
    crds = argv[:1] == ["crd"]
    if crds:
        argv = argv[1:]
    if len(argv) > 1 or argv[:1] in (["-h"], ["--help"]):
        print("usage: python -m schemas [DIR]       write the JSON Schemas\n"
              "       python -m schemas crd [DIR]   write the Kubernetes CRDs", file=sys.stderr)  # fmt: skip
        return 2
    directory = Path(argv[0]) if argv else default_crd_dir() if crds else default_dir()
    if directory is None:
        what = "crd DIR" if crds else "DIR"
        print(f"usage: python -m schemas {what} (this is an installed package, not a source checkout: "
              "say where to write them)", file=sys.stderr)  # fmt: skip
        return 2
    for p in (write_crds if crds else write_schemas)(directory):
        print(p)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
