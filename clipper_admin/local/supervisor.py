"""The per-cluster supervisor: keeps the desired-process table running.

Run as ``python -m clipper_admin.local.supervisor <cluster dir>`` in a new session (so that it and
its children form one process group that outlives the admin process). It re-reads ``desired.json``
whenever it changes (polled every 50 ms), starts what is missing, stops what is no longer desired or
whose command changed, restarts crashed processes with exponential backoff (0.1 s doubling to 10 s,
reset after 10 s of healthy running), appends each process's output to ``logs/<id>.log`` and
publishes pids in ``status.json``. SIGTERM (or SIGINT) stops every process and exits.

No single fault takes the cluster down with it:

* The processes do not depend on the supervisor (no parent-death signal): if it is killed, the
  frontends and replicas keep serving. The next supervisor (``connect()`` and ``start_clipper()``
  start one when none runs) *adopts* the processes recorded in ``status.json`` that still run the
  desired command (identified by pid and start time, so a recycled pid is never adopted), restarts
  them when they later exit, and stops them on SIGTERM like its own children.
* I/O errors (a full disk, a read-only file system) never stop it: a failed status write is retried
  every poll, a log that cannot be opened or written is skipped, an unreadable ``desired.json`` keeps
  the current table; each error is reported on stderr (``logs/supervisor.log``), best effort.
* Every exit is logged with its reason (signal, error, lost lock); only SIGKILL goes unlogged.
  One supervisor per cluster: it holds ``supervisor.lock`` for its whole life.
"""

from __future__ import annotations

import argparse
import contextlib
import faulthandler
import fcntl
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from .state import ClusterDir, proc_start_time, read_json, same_process, write_json_atomic, write_text_atomic

POLL = 0.05
BACKOFF_MIN = 0.1
BACKOFF_MAX = 10.0
STABLE_AFTER = 10.0
STOP_GRACE = 5.0
LOCK_WAIT = 10.0
ERROR_REPEAT = 60.0  # the same I/O error is reported again at most once a minute


def spec_hash(spec: dict[str, Any]) -> str:
    """Identifies a process's command (argv, env, cwd): an adopted process must run the desired one."""
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class Child:
    spec: dict[str, Any]
    proc: subprocess.Popen[bytes] | None = None
    adopted_pid: int | None = None  # a process started by an earlier supervisor (not our child)
    adopted_start: int | None = None  # the process's start time (ours too, for status.json)
    pgid: int | None = None
    started_at: float = 0.0
    restarts: int = 0
    last_exit: int | None = None
    backoff: float = BACKOFF_MIN
    next_start: float = 0.0
    stop_deadline: float | None = None
    log_handles: list[BinaryIO] = field(default_factory=list)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else self.adopted_pid

    @property
    def start_time(self) -> int | None:
        """Recorded in status.json with the pid: lets the next supervisor adopt the process."""
        return self.adopted_start

    def has_process(self) -> bool:
        return self.proc is not None or self.adopted_pid is not None

    def poll(self) -> tuple[bool, int | None]:
        """(exited, exit code); the exit code of an adopted process is unknown (None)."""
        if self.proc is not None:
            code = self.proc.poll()
            return code is not None, code
        if self.adopted_pid is not None:
            return not same_process(self.adopted_pid, self.adopted_start), None
        return True, None

    def send(self, sig: int) -> None:
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(sig)
        elif self.adopted_pid is not None and same_process(self.adopted_pid, self.adopted_start):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(self.adopted_pid, sig)

    def forget_process(self) -> None:
        self.proc = None
        self.adopted_pid = None
        self.adopted_start = None
        self.pgid = None


class Supervisor:
    def __init__(self, root: Path):
        self.dir = ClusterDir(root)
        self.children: dict[str, Child] = {}
        self.stopping: list[Child] = []  # no longer desired, terminating
        self.desired_stamp: tuple[Any, ...] | None = None
        self.shutdown: str | None = None  # the reason to stop, once there is one
        self.status_dirty = True
        self._lock_fd: int | None = None
        self._reported: dict[str, float] = {}

    # -- reporting -------------------------------------------------------------------------------
    def log(self, message: str) -> None:
        """One line on stderr (``logs/supervisor.log``); never raises (the disk may be full)."""
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        with contextlib.suppress(Exception):
            sys.stderr.write(f"[supervisor {os.getpid()} {stamp}] {message}\n")
            sys.stderr.flush()

    def report_error(self, what: str, error: BaseException) -> None:
        """Log an I/O error, the same one at most once a minute (they are retried every poll)."""
        key = f"{what}: {error}"
        now = time.monotonic()
        if now - self._reported.get(key, -ERROR_REPEAT) >= ERROR_REPEAT:
            self._reported[key] = now
            self.log(f"{key} (continuing; retried)")

    # -- desired table ---------------------------------------------------------------------------
    def _desired_changed(self) -> bool:
        try:
            st = self.dir.desired_file.stat()
            stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        except FileNotFoundError:
            stamp = None
        except OSError as e:
            self.report_error(f"cannot stat {self.dir.desired_file}", e)
            return False
        if stamp == self.desired_stamp:
            return False
        self.desired_stamp = stamp
        return True

    def read_desired(self) -> dict[str, dict[str, Any]] | None:
        """The desired table, or None when it cannot be read now (keep the current one)."""
        try:
            text = self.dir.desired_file.read_text()
        except FileNotFoundError:
            return {}
        except OSError as e:
            self.report_error(f"cannot read {self.dir.desired_file}", e)
            return None
        try:
            processes: dict[str, dict[str, Any]] = json.loads(text).get("processes", {})
            return processes
        except (ValueError, AttributeError) as e:
            self.report_error(f"cannot parse {self.dir.desired_file}", e)
            return None

    def reconcile_table(self) -> None:
        desired = self.read_desired()
        if desired is None:
            self.desired_stamp = None  # retry on the next poll
            return
        for proc_id in list(self.children):
            child = self.children[proc_id]
            if desired.get(proc_id) != child.spec:
                self._begin_stop(child)
                del self.children[proc_id]
        for proc_id, spec in desired.items():
            if proc_id not in self.children:
                self.children[proc_id] = Child(spec=spec)
        self.status_dirty = True

    def adopt(self) -> None:
        """Take over the processes an earlier supervisor left running (see the module docstring)."""
        previous = read_json(self.dir.status_file, {}) or {}
        desired = self.read_desired() or {}
        for proc_id, entry in (previous.get("processes") or {}).items():
            pid, start = entry.get("pid"), entry.get("start")
            if not same_process(pid, start):
                continue
            child = Child(spec=desired.get(proc_id, {}), adopted_pid=pid, adopted_start=start)
            child.pgid = entry.get("pgid")
            child.started_at = time.monotonic()
            if proc_id in desired and entry.get("spec") == spec_hash(desired[proc_id]):
                self.log(f"adopted {proc_id} (pid {pid}), still running from the previous supervisor")
                self.children[proc_id] = child
            else:
                self.log(f"stopping {proc_id} (pid {pid}) left by the previous supervisor: no longer desired")
                self._begin_stop(child)
        for entry in previous.get("stopping") or []:
            if same_process(entry.get("pid"), entry.get("start")):
                child = Child(spec={}, adopted_pid=entry["pid"], adopted_start=entry["start"])
                self.log(f"stopping pid {entry['pid']}, which the previous supervisor was stopping")
                self._begin_stop(child)

    # -- process control -------------------------------------------------------------------------
    def _open_log(self, proc_id: str) -> BinaryIO | None:
        """The process's log file, or None when it cannot be opened (its output is then discarded)."""
        try:
            self.dir.logs.mkdir(parents=True, exist_ok=True)
            return open(self.dir.log_file(proc_id), "ab", buffering=0)
        except OSError as e:
            self.report_error(f"cannot open the log of {proc_id}, its output is discarded", e)
            return None

    def _write_log(self, child: Child, line: str) -> None:
        for h in child.log_handles:
            try:
                h.write(line.encode())
            except (OSError, ValueError) as e:
                self.report_error(f"cannot write to {getattr(h, 'name', 'a log')}", e)

    def _start(self, proc_id: str, child: Child) -> None:
        log = self._open_log(proc_id)
        child.log_handles = [log] if log is not None else []
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        self._write_log(child, f"[supervisor {stamp}] starting {proc_id}: {' '.join(child.spec['argv'])}\n")
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
                stdout=log if log is not None else subprocess.DEVNULL,
                stderr=subprocess.STDOUT,
            )
        except (OSError, KeyError, TypeError, ValueError) as e:
            self._write_log(child, f"[supervisor] cannot start: {e}\n")
            self.report_error(f"cannot start {proc_id}", e)
            self._close_logs(child)
            child.forget_process()
            child.restarts += 1
            child.last_exit = -1
            child.next_start = time.monotonic() + child.backoff
            child.backoff = min(child.backoff * 2, BACKOFF_MAX)
            self.status_dirty = True
            return
        child.adopted_start = proc_start_time(child.proc.pid)
        child.pgid = os.getpgid(0)
        child.started_at = time.monotonic()
        self.status_dirty = True

    def _begin_stop(self, child: Child) -> None:
        exited, _ = child.poll()
        if not exited:
            child.send(signal.SIGTERM)
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
            if child.poll()[0]:
                self._close_logs(child)
                self.stopping.remove(child)
                self.status_dirty = True
            elif child.stop_deadline is not None and now >= child.stop_deadline:
                child.send(signal.SIGKILL)
                child.stop_deadline = None

    def _check(self, proc_id: str, child: Child, now: float) -> None:
        if child.has_process():
            exited, code = child.poll()
            if not exited:
                if now - child.started_at >= STABLE_AFTER:
                    child.backoff = BACKOFF_MIN
                return
            # crashed (or exited): schedule a restart with backoff
            ran = now - child.started_at
            if ran >= STABLE_AFTER:
                child.backoff = BACKOFF_MIN
            adopted = child.proc is None
            child.last_exit = code
            child.restarts += 1
            child.forget_process()
            child.next_start = now + child.backoff
            how = "(adopted: exit code unknown)" if adopted else f"with code {code}"
            message = f"{proc_id} exited {how} after {ran:.1f} s; restarting in {child.backoff:.1f} s"
            self._write_log(child, f"[supervisor] {message}\n")
            if adopted:
                self.log(message)
            self._close_logs(child)
            child.backoff = min(child.backoff * 2, BACKOFF_MAX)
            self.status_dirty = True
        if now >= child.next_start:
            self._start(proc_id, child)

    def step(self) -> None:
        if self._desired_changed():
            self.reconcile_table()
        now = time.monotonic()
        for proc_id, child in list(self.children.items()):
            try:
                self._check(proc_id, child, now)
            except Exception as e:  # one process's trouble never stops the others
                self.report_error(f"error supervising {proc_id}", e)
        self._reap_stopping()
        if self.status_dirty:
            self.write_status()

    def status(self) -> dict[str, Any]:
        processes: dict[str, dict[str, Any]] = {}
        for proc_id, child in self.children.items():
            running = child.has_process() and not child.poll()[0]
            processes[proc_id] = {
                "pid": child.pid if running else None,
                "start": child.start_time if running else None,
                "pgid": child.pgid if running else None,
                "spec": spec_hash(child.spec),
                "state": "running" if running else "backoff",
                "restarts": child.restarts,
                "last_exit": child.last_exit,
            }
        stopping = [{"pid": c.pid, "start": c.start_time} for c in self.stopping]
        return {
            "supervisor_pid": os.getpid(),
            "processes": processes,
            "stopping_pids": [s["pid"] for s in stopping],
            "stopping": stopping,
        }

    def write_status(self) -> None:
        """Publish the status; on an I/O error (full disk) it stays dirty and is retried next poll."""
        try:
            write_json_atomic(self.dir.status_file, self.status())
        except OSError as e:
            self.report_error(f"cannot write {self.dir.status_file}", e)
            return
        self.status_dirty = False

    def stop_everything(self) -> None:
        groups = {c.pgid for c in [*self.children.values(), *self.stopping] if c.adopted_start is not None}
        for child in self.children.values():
            self._begin_stop(child)
        self.children.clear()
        deadline = time.monotonic() + STOP_GRACE
        while self.stopping and time.monotonic() < deadline:
            self._reap_stopping()
            time.sleep(POLL)
        for child in self.stopping:
            child.send(signal.SIGKILL)
            if child.proc is not None:
                child.proc.wait()
            self._close_logs(child)
        # What adopted processes started themselves lives in their (earlier supervisor's) group.
        own = os.getpgid(0)
        for pgid in {g for g in groups if g is not None} - {own}:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)
        self.stopping.clear()
        self.write_status()

    # -- life ------------------------------------------------------------------------------------
    def _acquire_lock(self) -> bool:
        """Hold ``supervisor.lock`` (one supervisor per cluster); brief probes may delay it."""
        self._lock_fd = os.open(self.dir.lock_file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        deadline = time.monotonic() + LOCK_WAIT
        while True:
            try:
                fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    return False
                time.sleep(POLL)

    def run(self) -> int:
        self.log(f"starting for {self.dir.root} (python {sys.executable})")
        if not self._acquire_lock():
            self.log(f"exiting: another supervisor holds {self.dir.lock_file}")
            return 1
        with contextlib.suppress(OSError):
            faulthandler.enable(sys.stderr)  # a fatal signal (SIGSEGV...) still leaves a traceback

        def on_signal(signum: int, frame: object) -> None:
            self.shutdown = f"received {signal.Signals(signum).name}"

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        try:
            write_text_atomic(self.dir.pid_file, str(os.getpid()))
        except OSError as e:
            self.report_error(f"cannot write {self.dir.pid_file}", e)
        code = 0
        try:
            try:
                self.adopt()
            except Exception as e:  # e.g. status.json unreadable: supervise without adopting
                self.log(f"cannot adopt the previous supervisor's processes: {e!r}")
            while not self.shutdown:
                try:
                    self.step()
                except Exception as e:  # never leave the cluster unsupervised over a bug or I/O error
                    self.report_error("error in the supervision loop", e)
                    self.log(traceback.format_exc().rstrip())
                time.sleep(POLL)
            self.log(f"{self.shutdown}: stopping every process")
        except BaseException as e:
            code = 1
            self.log(f"stopping every process after an unexpected error: {e!r}\n{traceback.format_exc()}")
            raise
        finally:
            try:
                self.stop_everything()
            finally:
                with contextlib.suppress(OSError):
                    if self.dir.supervisor_pid() == os.getpid():
                        self.dir.pid_file.unlink()
                self.log(f"exiting with code {code}")
        return code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m clipper_admin.local.supervisor",
        description="The supervisor of one local Clipper cluster (started by LocalContainerManager): "
        "keeps the processes of <cluster dir>/desired.json running, restarts them when they exit, "
        "publishes <cluster dir>/status.json, logs to stderr. SIGTERM stops every process and exits.",
    )
    parser.add_argument("cluster_dir", help="the cluster directory, $CLIPPER_HOME/<cluster name>")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    return Supervisor(Path(args.cluster_dir)).run()


if __name__ == "__main__":
    sys.exit(main())
