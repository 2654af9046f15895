"""The local backend's process table (``<cluster dir>/desired.json``) and its atomic file writes.

``{"processes": {id: {"argv": [...], "env": {...}, "cwd": ...}}}``: what must run in a local cluster.
The local container manager (``clipper_admin.local``) writes it, the cluster's supervisor re-reads it
whenever it changes and starts or stops processes to match, and the management frontend's dashboard
edits the model replicas' entries to scale a version (it copies an existing replica's entry: every
replica of a version runs the same command). A model replica's id is ``model/<name>/<version>/<i>``.

It lives here, below both, so that the management frontend (``clipper``) and the local backend
(``clipper_admin``, which may import ``clipper`` but not the reverse) share one implementation.
Every file is replaced atomically; read-modify-write of the table holds an ``flock`` on
``.desired.lock`` so that two writers cannot lose each other's edits.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

MODEL_PREFIX = "model/"
DESIRED = "desired.json"


def model_process_id(name: str, version: str, replica: int) -> str:
    return f"{MODEL_PREFIX}{name}/{version}/{replica}"


def parse_model_process_id(proc_id: str) -> tuple[str, str, int] | None:
    if not proc_id.startswith(MODEL_PREFIX):
        return None
    name, version, replica = proc_id[len(MODEL_PREFIX) :].split("/")
    return name, version, int(replica)


def write_text_atomic(path: Path, text: str, mode: int = 0o644) -> None:
    """Replace ``path`` at once: a reader never sees it empty or half-written."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_json_atomic(path: Path, data: object, mode: int = 0o644) -> None:
    write_text_atomic(path, json.dumps(data, indent=1, sort_keys=True), mode)


def read_json(path: Path, default: Any = None) -> Any:
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        return default
    except json.JSONDecodeError:
        return default


def read_processes(root: Path) -> dict[str, dict[str, Any]]:
    processes: dict[str, dict[str, Any]] = (read_json(root / DESIRED) or {}).get("processes", {})
    return processes


@contextlib.contextmanager
def edit_processes(root: Path) -> Iterator[dict[str, dict[str, Any]]]:
    """Yield the process table of the cluster in ``root`` for editing; written back atomically on exit."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".desired.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            processes = read_processes(root)
            yield processes
            write_json_atomic(root / DESIRED, {"processes": processes})
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def model_replicas(table: dict[str, Any], name: str, version: str) -> list[str]:
    """The ids of ``name:version``'s replicas in ``table``."""
    out = []
    for proc_id in table:
        parsed = parse_model_process_id(proc_id)
        if parsed is not None and parsed[:2] == (name, version):
            out.append(proc_id)
    return out


def scale_replicas(
    table: dict[str, Any], name: str, version: str, count: int, spec: dict[str, Any]
) -> list[str]:
    """Make ``table`` hold replicas ``0..count-1`` of ``name:version`` (new ones run ``spec``); returns
    the ids added."""
    for proc_id in model_replicas(table, name, version):
        parsed = parse_model_process_id(proc_id)
        if parsed is not None and parsed[2] >= count:
            del table[proc_id]
    added = []
    for i in range(count):
        proc_id = model_process_id(name, version, i)
        if proc_id not in table:
            table[proc_id] = spec
            added.append(proc_id)
    return added
