"""The local supervisor with dummy processes: start, restart after SIGKILL, table edits, stop."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from clipper_admin.local.state import ClusterDir, pid_alive

SLEEPER = [sys.executable, "-c", "import time, os; print('up', os.getpid(), flush=True); time.sleep(600)"]


def wait_for(predicate, timeout=20.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def supervised(tmp_path):
    d = ClusterDir(tmp_path / "c")
    d.root.mkdir()
    with d.edit_desired() as table:
        table["a"] = {"argv": SLEEPER, "env": {"X_TEST": "1"}}
    proc = subprocess.Popen(
        [sys.executable, "-m", "clipper_admin.local.supervisor", str(d.root)],
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
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
