"""``python -m schemas [DIR]``: write the JSON Schemas (default: schemas/json/ of a source checkout).

The default directory is the repository's ``schemas/json/`` only when this package runs from a
source checkout: the directory above the package holds the ``pyproject.toml`` of the ``clipper``
project. An installed package (site-packages) is never written into: a directory must be given.
"""

from __future__ import annotations

import sys
from pathlib import Path

from schemas.kinds import json_schema_text, published, schema_filename

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


def write_schemas(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for kind in published():
        path = directory / schema_filename(kind)
        path.write_text(json_schema_text(kind))
        written.append(path)
    return written


def main(argv: list[str]) -> int:
    directory = Path(argv[0]) if argv else default_dir()
    if directory is None:
        print("usage: python -m schemas DIR (this is an installed package, not a source checkout: "
              "say where to write the schemas)", file=sys.stderr)  # fmt: skip
        return 2
    for p in write_schemas(directory):
        print(p)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
