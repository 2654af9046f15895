"""A model's Python sources: the file a manifest names and the local modules it imports.

Used to hash a model's code (:mod:`reconciler.desired`) and to check at validation that it compiles
(:mod:`reconciler.loader`): ``compile()`` only, nothing is imported or executed.
"""

from __future__ import annotations

import ast
import os
from dataclasses import dataclass
from pathlib import Path


def local_module_files(source: Path, root: Path, seen: set[Path]) -> None:
    """``source`` and the modules next to it that it imports (recursively), into ``seen``."""
    source = source.resolve()
    if source in seen or not source.is_file():
        return
    seen.add(source)
    try:
        tree = ast.parse(source.read_bytes(), filename=str(source))
    except (SyntaxError, ValueError):
        return  # reported by compile_errors; hashed as bytes anyway
    names: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend((0, a.name) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            names.append((node.level, base))
            names.extend((node.level, f"{base}.{a.name}" if base else a.name) for a in node.names)
    for level, dotted in names:
        anchor = source.parent if level else root
        for _ in range(max(level - 1, 0)):
            anchor = anchor.parent
        rel = Path(*dotted.split(".")) if dotted else Path()
        for cand in (anchor / rel.with_suffix(".py") if dotted else None, anchor / rel / "__init__.py"):
            if cand is not None and cand.is_file():
                if cand.name == "__init__.py":
                    for f in sorted(cand.parent.rglob("*.py")):
                        local_module_files(f, root, seen)
                else:
                    local_module_files(cand, root, seen)


def model_source_files(path: Path) -> list[Path]:
    """The model file ``path`` and every local module it imports, sorted."""
    path = path.resolve()
    seen: set[Path] = set()
    local_module_files(path, path.parent, seen)
    return sorted(seen)


@dataclass(frozen=True)
class CompileError:
    file: Path
    line: int
    column: int
    message: str  # "SyntaxError: invalid syntax"

    def display_file(self) -> str:
        """The file relative to the working directory when it is below it, else absolute."""
        try:
            return os.path.relpath(self.file) if self.file.is_relative_to(Path.cwd()) else str(self.file)
        except (OSError, ValueError):
            return str(self.file)


def compile_errors(path: Path) -> list[CompileError]:
    """Errors ``compile()`` finds in the model file and the local modules it imports."""
    errors = []
    for f in model_source_files(path):
        try:
            compile(f.read_bytes(), str(f), "exec", dont_inherit=True)
        except SyntaxError as e:  # IndentationError, TabError included
            errors.append(CompileError(f, e.lineno or 0, e.offset or 0, f"{type(e).__name__}: {e.msg}"))
        except (ValueError, OSError) as e:  # a null byte; unreadable
            errors.append(CompileError(f, 0, 0, f"cannot compile: {e}"))
    return errors
