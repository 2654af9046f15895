"""Errors a user can cause, with the location they come from."""

from __future__ import annotations

from dataclasses import dataclass


class ReconcilerError(Exception):
    """A problem the user can fix (bad manifest, unreachable cluster, lock held, ...)."""


@dataclass(frozen=True)
class ManifestProblem:
    """One problem in one manifest: ``file:line:col Kind/name path: message``."""

    file: str
    line: int
    column: int
    message: str
    obj: str = ""  # "Model/sum-model"
    path: str = ""  # "spec.replicas"

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}"
        what = " ".join(p for p in (self.obj, self.path + ":" if self.path else "") if p)
        return f"{where} {what} {self.message}".replace("  ", " ") if what else f"{where} {self.message}"


class ManifestErrors(ReconcilerError):
    """All problems found in one load; nothing is applied when there is any."""

    def __init__(self, problems: list[ManifestProblem]):
        self.problems = sorted(problems, key=lambda p: (p.file, p.line, p.column))
        super().__init__("\n".join(str(p) for p in self.problems))
