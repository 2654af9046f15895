"""The on-disk state of a local cluster, shared by the manager (any process) and the supervisor.

``$CLIPPER_HOME/<cluster>/``:

* ``cluster.json``  ports, store URL, admin token, interpreter, supervisor pid (written by the manager)
* ``desired.json``  ``{"processes": {id: {"argv": [...], "env": {...}}}}``: what must run (manager writes,
  supervisor re-reads whenever it changes)
* ``status.json``   ``{"supervisor_pid", "processes": {id: {"pid", "state", "restarts", "last_exit"}}}``
  (supervisor writes)
* ``supervisor.pid``, ``config.db`` (SQLite store), ``logs/<id>.log``, ``models/<name>/<version>/``
* ``supervisor.lock``  held (``flock``) by the running supervisor for its whole life: the lock, not the
  pid file, says whether a supervisor runs (a pid can be recycled, a pid file can be stale)

Every JSON file is replaced atomically (write to a temporary file, then rename); read-modify-write
of ``desired.json`` holds an ``flock`` so that two admin processes cannot lose each other's edits.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import Any

from clipper import process_table as _table

# the process table and the atomic writes are shared with the management frontend (its dashboard
# scales replicas): clipper.process_table; here under the local backend's names
MODEL_PREFIX = _table.MODEL_PREFIX
model_process_id = _table.model_process_id
parse_model_process_id = _table.parse_model_process_id
read_json = _table.read_json
read_processes = _table.read_processes
edit_processes = _table.edit_processes
write_json_atomic = _table.write_json_atomic
write_text_atomic = _table.write_text_atomic

MANAGEMENT = "management"
QUERY = "query-0"


def clipper_home() -> Path:
    return Path(os.environ.get("CLIPPER_HOME") or Path.home() / ".clipper").expanduser()


def log_name(proc_id: str) -> str:
    """``model/m/1/0`` -> ``model-m-1-0.log`` (names and versions contain no ``/`` or ``_``)."""
    return proc_id.replace("/", "-") + ".log"


class ClusterDir:
    """Paths and file access for one cluster directory."""

    def __init__(self, root: Path):
        self.root = Path(root)

    @property
    def cluster_file(self) -> Path:
        return self.root / "cluster.json"

    @property
    def desired_file(self) -> Path:
        return self.root / "desired.json"

    @property
    def status_file(self) -> Path:
        return self.root / "status.json"

    @property
    def pid_file(self) -> Path:
        return self.root / "supervisor.pid"

    @property
    def lock_file(self) -> Path:
        return self.root / "supervisor.lock"

    @property
    def spawn_lock_file(self) -> Path:
        return self.root / ".spawn.lock"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def store_path(self) -> Path:
        return self.root / "config.db"

    def log_file(self, proc_id: str) -> Path:
        return self.logs / log_name(proc_id)

    # -- cluster.json ----------------------------------------------------------------------------
    def read_cluster(self) -> dict[str, Any] | None:
        info: dict[str, Any] | None = read_json(self.cluster_file)
        return info

    def write_cluster(self, info: dict[str, Any]) -> None:
        # The admin token lives here: readable by the owner only.
        write_json_atomic(self.cluster_file, info, mode=0o600)

    # -- desired.json ----------------------------------------------------------------------------
    def read_desired(self) -> dict[str, dict[str, Any]]:
        return read_processes(self.root)

    def edit_desired(self) -> contextlib.AbstractContextManager[dict[str, dict[str, Any]]]:
        """Yield the desired-process table for editing; written back atomically on exit."""
        return edit_processes(self.root)

    # -- status.json -----------------------------------------------------------------------------
    def read_status(self) -> dict[str, dict[str, Any]]:
        processes: dict[str, dict[str, Any]] = (read_json(self.status_file) or {}).get("processes", {})
        return processes

    def read_current_status(self) -> dict[str, dict[str, Any]]:
        """The status the running supervisor wrote, or ``{}`` while ``status.json`` is still the one a
        previous supervisor left (a new one has not written its own yet): the restart counts in it
        are that supervisor's and say nothing about the processes now starting."""
        status = read_json(self.status_file) or {}
        if status.get("supervisor_pid") != self.supervisor_pid():
            return {}
        processes: dict[str, dict[str, Any]] = status.get("processes", {})
        return processes

    def supervisor_pid(self) -> int | None:
        try:
            return int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def supervisor_alive(self) -> bool:
        """True while a supervisor holds ``supervisor.lock`` (see ``Supervisor.run``)."""
        try:
            fd = os.open(self.lock_file, os.O_RDONLY)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)  # also releases the probe's own shared lock
        return False

    def tail_log(self, proc_id: str, lines: int = 20) -> str:
        try:
            with open(self.log_file(proc_id), "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - 16384))
                text = f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return "(no log written)"
        return "\n".join(text.splitlines()[-lines:])


def proc_start_time(pid: int) -> int | None:
    """The start time of ``pid`` (clock ticks since boot, ``/proc/<pid>/stat`` field 22), or None.

    With the pid it identifies a process for good: a recycled pid has another start time.
    """
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    if fields[0] == "Z":
        return None
    return int(fields[19])


def same_process(pid: int | None, start: int | None) -> bool:
    """True while the process recorded as (``pid``, ``start``) runs (not a zombie, not recycled)."""
    return pid is not None and start is not None and proc_start_time(pid) == start


def pid_alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return True
