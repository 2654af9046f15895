"""Ctrl-C during an apply of ``clipper watch`` is cooperative: it never lands inside a library call.

The hang it fixes: a KeyboardInterrupt raised asynchronously between urllib3's connection pool taking
its queue's (non-reentrant) lock and releasing it; urlopen's own cleanup then waited on that lock
forever, and the watch never exited. The fake cluster here reproduces that pattern deterministically.
"""

from __future__ import annotations

import argparse
import io
import os
import signal
import threading
import time
from pathlib import Path

import pytest
from rich.console import Console

from reconciler.desired import desired_state
from reconciler.engine import Target
from reconciler.execute import Executor
from reconciler.interrupt import CtrlC, Stopped, checkpoint
from reconciler.loader import load_manifests
from reconciler.ownership import OwnershipRegistry
from reconciler.plan import Action, Op, Plan
from reconciler.watch import apply_reporting_lines, watch
from tests.fakes.cluster import FakeCluster
from tests.unit.test_engine import MANIFESTS

pytestmark = pytest.mark.skipif(
    threading.current_thread() is not threading.main_thread(), reason="signals need the main thread"
)


class CtrlCInsideALibrary(FakeCluster):
    """``start_replicas`` is a library call that takes a lock, and Ctrl-C arrives before it releases
    it; its exception path takes the lock again (as urllib3's urlopen does in its ``finally``)."""

    def __init__(self, stop: threading.Event) -> None:
        super().__init__()
        self.stop = stop
        self.pool = threading.Lock()
        self.deadlocked = False

    def _library_call(self) -> None:
        self.pool.acquire()
        try:
            os.kill(os.getpid(), signal.SIGINT)
            deadline = time.monotonic() + 10
            while not self.stop.is_set() and time.monotonic() < deadline:
                pass  # a KeyboardInterrupt of the default handler is raised here, the lock held
            self.pool.release()
        except BaseException:
            # the library's cleanup: waits on its lock (forever, in urllib3; 2 s here)
            if not self.pool.acquire(timeout=2):
                self.deadlocked = True
            raise

    def start_replicas(self, *args: object, **kw: object) -> None:
        self._library_call()
        super().start_replicas(*args, **kw)  # type: ignore[arg-type]


def test_ctrl_c_during_an_apply_stops_it_at_a_safe_point_and_the_watch_exits(tmp_path: Path) -> None:
    (tmp_path / "m.yaml").write_text(MANIFESTS)
    stop = threading.Event()
    cluster = CtrlCInsideALibrary(stop)

    def load_target(paths: object) -> Target:
        manifests = load_manifests([str(tmp_path / "m.yaml")])
        return Target(desired_state(manifests), cluster, tmp_path / "state", manifests.files)

    buf = io.StringIO()
    console = Console(file=buf, width=400, no_color=True, highlight=False)
    args = argparse.Namespace(files=[str(tmp_path / "m.yaml")], interval=0.05, debounce=0.01, max_backoff=0.4,
                              owner=None, prune=False, lock_timeout=5.0)  # fmt: skip
    before = signal.getsignal(signal.SIGINT)
    import reconciler.engine

    original, reconciler.engine.load_target = reconciler.engine.load_target, load_target  # type: ignore[assignment]
    try:
        code = watch(args, apply_reporting_lines(console), console, stop)
    finally:
        reconciler.engine.load_target = original  # type: ignore[assignment]
    text = buf.getvalue()
    assert not cluster.deadlocked, text
    assert code == 0 and text.rstrip().endswith("watch stopped"), text
    # the apply went on to its next safe point (the wait), stopped there and cleaned up
    assert [c[0] for c in cluster.calls if c[0] in ("start_replicas", "wait_replicas", "stop_replicas")] == [
        "start_replicas", "wait_replicas", "stop_replicas"], cluster.calls  # fmt: skip
    assert "Model/m create failed: stopped (Ctrl-C)" in text, text
    assert ("register_version", "m", "v1") not in cluster.calls and cluster.replicas == {}
    assert signal.getsignal(signal.SIGINT) is before  # the watch's handler is gone


def test_a_second_ctrl_c_aborts_at_once() -> None:
    stop = threading.Event()
    ctrl_c = CtrlC(stop)
    with ctrl_c.installed():
        checkpoint()  # nothing asked yet: no effect
        os.kill(os.getpid(), signal.SIGINT)
        deadline = time.monotonic() + 10
        while not stop.is_set() and time.monotonic() < deadline:
            pass
        assert stop.is_set()
        with pytest.raises(Stopped):
            checkpoint()
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            while time.monotonic() < deadline:
                pass
    checkpoint()  # uninstalled: no effect


def test_the_executor_stops_at_its_checkpoints(tmp_path: Path) -> None:
    """Before an action and between the polls of a wait; the new replicas are stopped."""
    manifests_path = tmp_path / "m.yaml"
    manifests_path.write_text(MANIFESTS)
    desired = desired_state(load_manifests([str(manifests_path)]))
    cluster = FakeCluster()
    cluster.connect()
    asked: list[str] = []

    def stop_at_the_wait() -> None:
        asked.append(cluster.calls[-1][0])
        if cluster.calls[-1][0] == "wait_replicas":
            raise Stopped()

    model = Action(Op.CREATE, "Model", "m", model=desired.models["m"])
    executor = Executor(cluster, desired, "c", OwnershipRegistry(tmp_path / "state"),
                        checkpoint=stop_at_the_wait)  # fmt: skip
    with pytest.raises(Stopped):
        executor.run(Plan((model,)))
    assert asked == ["connect", "wait_replicas"]
    assert [c[0] for c in cluster.calls[1:]] == ["start_replicas", "wait_replicas", "stop_replicas"]


def test_ctrl_c_during_clipper_apply_stops_it_at_a_safe_point(tmp_path: Path) -> None:
    """``clipper apply`` (and ``sync``) install the same handler: no deadlock, the new replicas are
    stopped, and the command ends with a KeyboardInterrupt (exit 130 from ``clipper``)."""
    from reconciler.commands import _apply_once

    (tmp_path / "m.yaml").write_text(MANIFESTS)
    stop = threading.Event()
    cluster = CtrlCInsideALibrary(stop)
    manifests = load_manifests([str(tmp_path / "m.yaml")])
    target = Target(desired_state(manifests), cluster, tmp_path / "state", manifests.files)
    args = argparse.Namespace(owner=None, prune=False, lock_timeout=5.0)
    before = signal.getsignal(signal.SIGINT)
    # the library call waits for the handler's stop event: the apply's own one here
    original_init = CtrlC.__init__

    def init_with_shared_stop(self: CtrlC, _stop: threading.Event | None = None) -> None:
        original_init(self, stop)

    CtrlC.__init__ = init_with_shared_stop  # type: ignore[method-assign]
    raised: BaseException | None = None
    try:
        _apply_once(target, args)
    except KeyboardInterrupt as e:  # caught here: a plain one must fail the test, not end pytest
        raised = e
    finally:
        CtrlC.__init__ = original_init  # type: ignore[method-assign]
    assert isinstance(raised, Stopped), repr(raised)
    assert not cluster.deadlocked
    assert [c[0] for c in cluster.calls if c[0] in ("start_replicas", "wait_replicas", "stop_replicas")] == [
        "start_replicas", "wait_replicas", "stop_replicas"], cluster.calls  # fmt: skip
    assert signal.getsignal(signal.SIGINT) is before
