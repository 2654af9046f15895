"""``python -m schemas [DIR]``: write one JSON Schema per kind (default: schemas/json/)."""

from __future__ import annotations

import sys
from pathlib import Path

from schemas.kinds import KINDS, json_schema_text, schema_filename

DEFAULT_DIR = Path(__file__).parent / "json"


def write_schemas(directory: Path = DEFAULT_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for kind in KINDS:
        path = directory / schema_filename(kind)
        path.write_text(json_schema_text(kind))
        written.append(path)
    return written


if __name__ == "__main__":
    for p in write_schemas(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_DIR):
        print(p)
