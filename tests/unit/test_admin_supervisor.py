"""The local supervisor with dummy processes: start, restart after SIGKILL, table edits, stop."""

from __future__ import annotations

import errno
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from clipper_admin.local import supervisor
from clipper_admin.local.state import (
    ClusterDir,
    pid_alive,
    read_json,
    write_json_atomic,
    write_text_atomic,
)

SLEEPER = [sys.executable, "-c", "import time, os; print('up', os.getpid(), flush=True); time.sleep(600)"]


def wait_for(predicate, timeout=20.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def spawn_supervisor(d: ClusterDir) -> subprocess.Popen:
    with open(d.root / "supervisor.log", "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "clipper_admin.local.supervisor", str(d.root)],
            start_new_session=True,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


@pytest.fixture
def supervised(tmp_path):
    d = ClusterDir(tmp_path / "c")
    d.root.mkdir()
    with d.edit_desired() as table:
        table["a"] = {"argv": SLEEPER, "env": {"X_TEST": "1"}}
    proc = spawn_supervisor(d)
    try:
        yield d, proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def running_pid(d: ClusterDir, proc_id: str):
    entry = d.read_status().get(proc_id, {})
    return entry.get("pid") if entry.get("state") == "running" else None


def test_starts_restarts_and_stops(supervised):
    d, proc = supervised
    pid = wait_for(lambda: running_pid(d, "a"), what="a running")
    assert d.supervisor_pid() == proc.pid
    assert os.getpgid(pid) == proc.pid  # one process group per cluster
    assert "X_TEST=1" in open(f"/proc/{pid}/environ").read().replace("\0", "\n")

    os.kill(pid, signal.SIGKILL)
    new_pid = wait_for(lambda: (p := running_pid(d, "a")) and p != pid and p, what="restart")
    assert d.read_status()["a"]["restarts"] == 1
    assert d.read_status()["a"]["last_exit"] == -signal.SIGKILL
    log = d.log_file("a").read_text()
    assert "exited with code -9" in log and log.count("starting a") == 2

    # add one, remove the first: the supervisor follows the table
    with d.edit_desired() as table:
        table["b"] = {"argv": SLEEPER, "env": {}}
        del table["a"]
    wait_for(lambda: running_pid(d, "b"), what="b running")
    wait_for(lambda: "a" not in d.read_status() and not pid_alive(new_pid), what="a stopped")

    b_pid = running_pid(d, "b")
    proc.terminate()
    assert proc.wait(timeout=15) == 0
    assert not pid_alive(b_pid)
    assert not d.pid_file.exists()


def test_crash_loop_backs_off(supervised):
    d, _ = supervised
    with d.edit_desired() as table:
        table["bad"] = {"argv": [sys.executable, "-c", "import sys; print('boom'); sys.exit(3)"], "env": {}}
    wait_for(lambda: d.read_status().get("bad", {}).get("restarts", 0) >= 3, what="3 restarts")
    status = d.read_status()["bad"]
    assert status["last_exit"] == 3
    assert "boom" in d.tail_log("bad")
    # the backoff doubles: after a few crashes it does not restart every poll
    time.sleep(1.0)
    assert d.read_status()["bad"]["restarts"] < 15


def test_changed_command_restarts_process(supervised):
    d, _ = supervised
    pid = wait_for(lambda: running_pid(d, "a"), what="a running")
    with d.edit_desired() as table:
        table["a"] = {"argv": SLEEPER, "env": {"X_TEST": "2"}}
    wait_for(lambda: (p := running_pid(d, "a")) and p != pid, what="a replaced")
    wait_for(lambda: not pid_alive(pid), what="old a gone")


def supervisor_log(d: ClusterDir) -> str:
    return (d.root / "supervisor.log").read_text()


def test_logs_why_it_starts_and_exits(supervised):
    d, proc = supervised
    wait_for(lambda: d.supervisor_alive(), what="the supervisor holding its lock")
    assert f"starting for {d.root}" in supervisor_log(d)
    proc.terminate()
    assert proc.wait(timeout=15) == 0
    log = supervisor_log(d)
    assert "received SIGTERM: stopping every process" in log
    assert "exiting with code 0" in log
    assert not d.supervisor_alive()


def _rewrite_pid_file(path: str, stop) -> None:
    from clipper_admin.local.state import write_text_atomic

    while not stop.is_set():
        write_text_atomic(Path(path), "12345")


def test_pid_file_is_never_seen_empty(tmp_path):
    """The flake of 'the supervisor exited while starting' with an empty log: the supervisor rewrote
    its pid file (truncate, then write) while the manager polled it and read nothing."""
    d = ClusterDir(tmp_path)
    write_text_atomic(d.pid_file, "12345")
    ctx = multiprocessing.get_context("spawn")
    stop = ctx.Event()
    writer = ctx.Process(target=_rewrite_pid_file, args=(str(d.pid_file), stop))
    writer.start()
    try:
        reads = [d.supervisor_pid() for _ in range(20000)]
    finally:
        stop.set()
        writer.join(timeout=30)
    assert set(reads) == {12345}


def test_liveness_is_the_lock_not_the_pid_file(tmp_path):
    d = ClusterDir(tmp_path)
    write_text_atomic(d.pid_file, str(os.getpid()))  # a live pid: not enough
    assert not d.supervisor_alive()
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(d.lock_file)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert d.supervisor_alive()
        assert d.supervisor_alive()  # probing does not take the lock away
    finally:
        holder.kill()
        holder.wait()
    assert not d.supervisor_alive()


HOLD_LOCK = (
    "import fcntl, sys, time\n"
    "f = open(sys.argv[1], 'a'); fcntl.flock(f, fcntl.LOCK_EX); print('locked', flush=True); time.sleep(60)\n"
)


def test_a_second_supervisor_exits_and_says_why(supervised, monkeypatch, capsys):
    d, _ = supervised
    wait_for(lambda: d.supervisor_alive(), what="the first supervisor")
    monkeypatch.setattr(supervisor, "LOCK_WAIT", 0.2)
    assert supervisor.Supervisor(d.root).run() == 1
    assert f"exiting: another supervisor holds {d.lock_file}" in capsys.readouterr().err
    assert running_pid(d, "a")  # the first one carries on


def test_processes_outlive_a_killed_supervisor_and_the_next_adopts_them(supervised):
    d, proc = supervised
    pid = wait_for(lambda: running_pid(d, "a"), what="a running")
    proc.kill()  # no parent-death signal: the process keeps running
    proc.wait()
    time.sleep(0.5)
    assert pid_alive(pid)
    second = spawn_supervisor(d)
    try:
        wait_for(
            lambda: (read_json(d.status_file) or {}).get("supervisor_pid") == second.pid, what="new status"
        )
        assert running_pid(d, "a") == pid  # adopted, not started twice
        assert d.tail_log("a").count("starting a") == 1
        assert f"adopted a (pid {pid})" in supervisor_log(d)
        # it restarts the adopted process when it dies
        os.kill(pid, signal.SIGKILL)
        new_pid = wait_for(lambda: (p := running_pid(d, "a")) and p != pid and p, what="restart")
        assert d.read_status()["a"]["restarts"] == 1
        assert "a exited (adopted: exit code unknown)" in supervisor_log(d)
    finally:
        second.terminate()
        assert second.wait(timeout=15) == 0
    assert not pid_alive(new_pid)


def test_an_adopted_process_that_is_no_longer_desired_is_stopped(supervised):
    d, proc = supervised
    pid = wait_for(lambda: running_pid(d, "a"), what="a running")
    proc.kill()
    proc.wait()
    with d.edit_desired() as table:  # changed while no supervisor ran
        table["a"] = {"argv": SLEEPER, "env": {"X_TEST": "2"}}
    second = spawn_supervisor(d)
    try:
        new_pid = wait_for(lambda: (p := running_pid(d, "a")) and p != pid and p, what="a replaced")
        wait_for(lambda: not pid_alive(pid), what="the old a stopped")
        assert "X_TEST=2" in open(f"/proc/{new_pid}/environ").read().replace("\0", "\n")
    finally:
        second.terminate()
        second.wait(timeout=15)


def test_a_recycled_pid_is_not_adopted(tmp_path):
    """status.json names a live pid whose start time differs: not ours, left alone."""
    d = ClusterDir(tmp_path / "c")
    d.root.mkdir()
    with d.edit_desired() as table:
        table["a"] = {"argv": SLEEPER, "env": {}}
    stranger = subprocess.Popen(SLEEPER, stdout=subprocess.DEVNULL)
    try:
        sup = supervisor.Supervisor(d.root)
        spec = sup.read_desired()["a"]
        write_json_atomic(
            d.status_file,
            {"processes": {"a": {"pid": stranger.pid, "start": 1, "spec": supervisor.spec_hash(spec)}}},
        )
        sup.adopt()
        assert "a" not in sup.children and not sup.stopping
        assert stranger.poll() is None
    finally:
        stranger.kill()
        stranger.wait()


@pytest.fixture
def in_process(tmp_path):
    """A supervisor driven step by step in this process (no signal handlers, no lock)."""
    d = ClusterDir(tmp_path / "c")
    d.root.mkdir()
    with d.edit_desired() as table:
        table["a"] = {"argv": SLEEPER, "env": {}}
    sup = supervisor.Supervisor(d.root)
    try:
        yield d, sup
    finally:
        sup.stop_everything()


def test_a_full_disk_does_not_stop_the_supervisor(in_process, monkeypatch, capsys):
    d, sup = in_process

    def enospc(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(supervisor, "write_json_atomic", enospc)
    for _ in range(5):
        sup.step()
    pid = sup.children["a"].proc.pid
    assert pid_alive(pid) and sup.status_dirty and not d.status_file.exists()
    err = capsys.readouterr().err
    assert (
        err.count(f"cannot write {d.status_file}: [Errno 28] No space left on device") == 1
    )  # once a minute

    monkeypatch.undo()  # space is back: the next poll publishes the status
    sup.step()
    assert not sup.status_dirty and d.read_status()["a"]["pid"] == pid


def test_a_log_that_cannot_be_opened_does_not_stop_the_process(in_process, capsys):
    d, sup = in_process
    d.logs.write_text("a file where the log directory should be")
    sup.step()
    assert pid_alive(sup.children["a"].proc.pid)
    assert "cannot open the log of a, its output is discarded" in capsys.readouterr().err
    # and a log that cannot be written to (closed, full...) neither
    d.logs.unlink()
    child = sup.children["a"]
    child.proc.kill()
    child.proc.wait()
    child.log_handles = [open(os.devnull, "rb")]  # writing raises
    sup.step()
    assert "cannot write to" in capsys.readouterr().err


def test_an_unreadable_desired_table_keeps_the_current_one(in_process, capsys):
    d, sup = in_process
    sup.step()
    pid = sup.children["a"].proc.pid
    write_text_atomic(d.desired_file, "{not json")
    sup.step()
    assert sup.children["a"].proc.pid == pid and pid_alive(pid)
    assert f"cannot parse {d.desired_file}" in capsys.readouterr().err
    table = {"a": {"argv": SLEEPER, "env": {}}, "b": {"argv": SLEEPER, "env": {}}}
    write_json_atomic(d.desired_file, {"processes": table})  # readable again: followed
    wait_for(lambda: (sup.step(), "b" in sup.children and sup.children["b"].proc)[1], what="b started")
    assert sup.children["a"].proc.pid == pid


def test_an_error_in_one_step_is_logged_and_the_loop_goes_on(in_process, monkeypatch, capsys):
    d, sup = in_process
    calls = []

    def broken():
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("a bug")
        sup.shutdown = "test done"

    monkeypatch.setattr(sup, "step", broken)
    monkeypatch.setattr(supervisor.Supervisor, "_acquire_lock", lambda self: True)
    monkeypatch.setattr(supervisor.signal, "signal", lambda *a: None)
    assert sup.run() == 0
    err = capsys.readouterr().err
    assert "error in the supervision loop: a bug (continuing; retried)" in err
    assert "test done: stopping every process" in err and "exiting with code 0" in err


def _hold_supervisor_lock(d: ClusterDir, pid: int) -> int:
    """Stand in for a live supervisor with ``pid``: hold its lock, write its pid file."""
    import fcntl

    fd = os.open(d.lock_file, os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)
    write_text_atomic(d.pid_file, str(pid))
    return fd


def test_a_new_supervisor_is_not_judged_by_the_restart_counts_its_predecessor_left(tmp_path):
    """A killed supervisor's status.json counts the restarts *it* made (a frontend killed earlier);
    until the new supervisor writes its own, nothing starting may be reported as crashed."""
    from clipper_admin.exceptions import ClipperException
    from clipper_admin.local.local_container_manager import LocalContainerManager

    cm = LocalContainerManager("c", state_dir=str(tmp_path))
    d = cm.dir
    d.root.mkdir(parents=True)
    old = {"pid": None, "start": None, "restarts": 1, "last_exit": -9, "state": "running"}
    write_json_atomic(d.status_file, {"supervisor_pid": 111, "processes": {"management": old}})
    fd = _hold_supervisor_lock(d, 222)
    try:
        assert d.read_status()["management"]["restarts"] == 1
        assert d.read_current_status() == {}
        cm._raise_if_crashed(["management"], "while starting")  # the predecessor's count: not a crash

        # once the running supervisor (222) counts a restart, it is one
        write_json_atomic(d.status_file, {"supervisor_pid": 222, "processes": {"management": old}})
        assert d.read_current_status()["management"]["restarts"] == 1
        with pytest.raises(ClipperException, match=r"management \(exit code -9\) crashed while starting"):
            cm._raise_if_crashed(["management"], "while starting")
    finally:
        os.close(fd)
