"""The per-cluster supervisor: keeps the desired-process table running.

Run as ``python -m clipper_admin.local.supervisor <cluster dir>`` in a new session (so that it and
its children form one process group that outlives the admin process and can be stopped as a unit).
It re-reads ``desired.json`` whenever it changes (polled every 50 ms), starts what is missing, stops
what is no longer desired or whose command changed, restarts crashed processes with exponential
backoff (0.1 s doubling to 10 s, reset after 10 s of healthy running), appends each process's output
to ``logs/<id>.log`` and publishes pids in ``status.json``. SIGTERM stops every child and exits.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from .state import ClusterDir, write_json_atomic

POLL = 0.05
BACKOFF_MIN = 0.1
BACKOFF_MAX = 10.0
STABLE_AFTER = 10.0
STOP_GRACE = 5.0


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Children get SIGTERM if the supervisor itself is killed (Linux ``PR_SET_PDEATHSIG``)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)


@dataclass
class Child:
    spec: dict
    proc: subprocess.Popen | None = None
    started_at: float = 0.0
    restarts: int = 0
    last_exit: int | None = None
    backoff: float = BACKOFF_MIN
    next_start: float = 0.0
    stop_deadline: float | None = None
    log_handles: list = field(default_factory=list)


class Supervisor:
    def __init__(self, root: Path):
        self.dir = ClusterDir(root)
        self.children: dict[str, Child] = {}
        self.stopping: list[Child] = []  # no longer desired, terminating
        self.desired_stamp: tuple | None = None
        self.shutdown = False
        self.status_dirty = True

    # -- desired table ---------------------------------------------------------------------------
    def _desired_changed(self) -> bool:
        try:
            st = self.dir.desired_file.stat()
            stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        except FileNotFoundError:
            stamp = None
        if stamp == self.desired_stamp:
            return False
        self.desired_stamp = stamp
        return True

    def reconcile_table(self) -> None:
        desired = self.dir.read_desired()
        for proc_id in list(self.children):
            child = self.children[proc_id]
            if desired.get(proc_id) != child.spec:
                self._begin_stop(child)
                del self.children[proc_id]
        for proc_id, spec in desired.items():
            if proc_id not in self.children:
                self.children[proc_id] = Child(spec=spec)
        self.status_dirty = True

    # -- process control -------------------------------------------------------------------------
    def _start(self, proc_id: str, child: Child) -> None:
        self.dir.logs.mkdir(parents=True, exist_ok=True)
        log = open(self.dir.log_file(proc_id), "ab", buffering=0)
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        log.write(f"[supervisor {stamp}] starting {proc_id}: {' '.join(child.spec['argv'])}\n".encode())
        env = dict(os.environ)
        env.update(child.spec.get("env", {}))
        env["CLIPPER_LOCAL_CLUSTER_DIR"] = str(self.dir.root)
        env.setdefault("PYTHONUNBUFFERED", "1")
        try:
            child.proc = subprocess.Popen(
                child.spec["argv"],
                env=env,
                cwd=child.spec.get("cwd") or str(self.dir.root),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,
            )
        except OSError as e:
            log.write(f"[supervisor] cannot start: {e}\n".encode())
            log.close()
            child.proc = None
            child.restarts += 1
            child.last_exit = -1
            child.next_start = time.monotonic() + child.backoff
            child.backoff = min(child.backoff * 2, BACKOFF_MAX)
            self.status_dirty = True
            return
        child.log_handles = [log]
        child.started_at = time.monotonic()
        self.status_dirty = True

    def _begin_stop(self, child: Child) -> None:
        if child.proc is not None and child.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                child.proc.terminate()
            child.stop_deadline = time.monotonic() + STOP_GRACE
            self.stopping.append(child)
        else:
            self._close_logs(child)

    @staticmethod
    def _close_logs(child: Child) -> None:
        for h in child.log_handles:
            with contextlib.suppress(OSError):
                h.close()
        child.log_handles = []

    def _reap_stopping(self) -> None:
        now = time.monotonic()
        for child in list(self.stopping):
            if child.proc.poll() is not None:
                self._close_logs(child)
                self.stopping.remove(child)
            elif child.stop_deadline is not None and now >= child.stop_deadline:
                with contextlib.suppress(ProcessLookupError):
                    child.proc.kill()
                child.stop_deadline = None

    def step(self) -> None:
        if self._desired_changed():
            self.reconcile_table()
        now = time.monotonic()
        for proc_id, child in self.children.items():
            if child.proc is not None:
                code = child.proc.poll()
                if code is None:
                    if now - child.started_at >= STABLE_AFTER:
                        child.backoff = BACKOFF_MIN
                    continue
                # crashed (or exited): schedule a restart with backoff
                ran = now - child.started_at
                if ran >= STABLE_AFTER:
                    child.backoff = BACKOFF_MIN
                child.last_exit = code
                child.restarts += 1
                child.proc = None
                child.next_start = now + child.backoff
                for h in child.log_handles:
                    with contextlib.suppress(OSError):
                        h.write(
                            f"[supervisor] {proc_id} exited with code {code} after {ran:.1f} s; "
                            f"restarting in {child.backoff:.1f} s\n".encode()
                        )
                self._close_logs(child)
                child.backoff = min(child.backoff * 2, BACKOFF_MAX)
                self.status_dirty = True
            if child.proc is None and now >= child.next_start:
                self._start(proc_id, child)
        self._reap_stopping()
        if self.status_dirty:
            self.write_status()

    def write_status(self) -> None:
        processes = {}
        for proc_id, child in self.children.items():
            running = child.proc is not None and child.proc.poll() is None
            processes[proc_id] = {
                "pid": child.proc.pid if running else None,
                "state": "running" if running else "backoff",
                "restarts": child.restarts,
                "last_exit": child.last_exit,
            }
        write_json_atomic(
            self.dir.status_file,
            {
                "supervisor_pid": os.getpid(),
                "processes": processes,
                "stopping_pids": [c.proc.pid for c in self.stopping],
            },
        )
        self.status_dirty = False

    def stop_everything(self) -> None:
        for child in self.children.values():
            self._begin_stop(child)
        self.children.clear()
        deadline = time.monotonic() + STOP_GRACE
        while self.stopping and time.monotonic() < deadline:
            self._reap_stopping()
            time.sleep(POLL)
        for child in self.stopping:
            with contextlib.suppress(ProcessLookupError):
                child.proc.kill()
            child.proc.wait()
            self._close_logs(child)
        self.stopping.clear()
        self.write_status()

    def run(self) -> int:
        self.dir.pid_file.write_text(str(os.getpid()))

        def on_term(signum, frame):
            self.shutdown = True

        signal.signal(signal.SIGTERM, on_term)
        signal.signal(signal.SIGINT, on_term)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        try:
            while not self.shutdown:
                self.step()
                time.sleep(POLL)
        finally:
            self.stop_everything()
            with contextlib.suppress(FileNotFoundError):
                if self.dir.supervisor_pid() == os.getpid():
                    self.dir.pid_file.unlink()
        return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m clipper_admin.local.supervisor <cluster dir>", file=sys.stderr)
        return 2
    return Supervisor(Path(argv[0])).run()


if __name__ == "__main__":
    sys.exit(main())
