"""``clipper delete --cluster``: the cluster stops even when deleting its objects one by one fails."""

from __future__ import annotations

import argparse
import io
from types import SimpleNamespace

from rich.console import Console

from reconciler import commands
from reconciler.observed import AppRecord, Observed, ObservedApp


class FakeCluster:
    stopped = False

    def connect(self) -> None:
        pass

    def shared_state(self) -> bool:  # an adminAuth: none cluster: no cluster lease
        return False

    def stop_cluster(self) -> None:
        self.stopped = True


class FakeRegistry:
    removed = False

    def remove(self) -> None:
        self.removed = True


class FailingExecutor:
    """Deleting ``broken`` fails (its management call errors); the others succeed."""

    ran: list[str] = []

    def __init__(self, *args, **kwargs) -> None:
        pass

    def run(self, plan) -> None:
        for a in plan.actions:
            if a.name == "broken":
                raise RuntimeError("Error reading the config store: database disk image is malformed")
            FailingExecutor.ran.append(a.ref)


def test_delete_cluster_stops_it_when_objects_fail_to_delete(tmp_path, monkeypatch):
    names = ["broken", "fine"]
    target = SimpleNamespace(
        desired=SimpleNamespace(cluster_name="c1", apps=dict.fromkeys(names), models={}),
        cluster=FakeCluster(),
        registry=FakeRegistry(),
        cluster_dir=tmp_path,
    )
    obs = Observed(
        running=True,
        apps={n: ObservedApp(n, "doubles", "-1", 1000, ()) for n in names},
        app_owners={n: AppRecord("c1") for n in names},
    )
    buf = io.StringIO()
    console = Console(file=buf, width=300, no_color=True, highlight=False)
    monkeypatch.setattr(commands, "out", console)
    monkeypatch.setattr(commands, "err", console)
    monkeypatch.setattr(commands, "_target", lambda args: target)
    monkeypatch.setattr("reconciler.engine.observe_target", lambda t: obs)
    monkeypatch.setattr("reconciler.execute.Executor", FailingExecutor)
    args = argparse.Namespace(files=["x"], owner=None, cluster=True, lock_timeout=0.0)
    assert commands.cmd_delete(args) == commands.EXIT_OK
    assert target.cluster.stopped and target.registry.removed
    assert FailingExecutor.ran == ["Application/fine"]
    text = buf.getvalue()
    assert (
        "Application/broken was not deleted on its own (Error reading the config store: database disk" in text
    )
    assert "Deleted 1 object(s) and stopped cluster c1." in text


def test_delete_waits_for_the_lock_as_long_as_lock_timeout_says(tmp_path, monkeypatch):
    """The delete path takes --lock-timeout (0: give up at once) instead of a fixed 60 s."""
    import time

    import pytest

    from reconciler.errors import ReconcilerError
    from reconciler.lock import apply_lock

    target = SimpleNamespace(
        desired=SimpleNamespace(cluster_name="c1", apps={}, models={}),
        cluster=FakeCluster(),
        registry=FakeRegistry(),
        cluster_dir=tmp_path,
    )
    monkeypatch.setattr(commands, "_target", lambda args: target)
    args = argparse.Namespace(files=["x"], owner=None, cluster=True, lock_timeout=0.0)
    with apply_lock(tmp_path, 0):
        t0 = time.monotonic()
        with pytest.raises(ReconcilerError, match="gave up after 0 s"):
            commands.cmd_delete(args)
        assert time.monotonic() - t0 < 30  # not the old fixed 60 s
    assert not target.cluster.stopped


def test_delete_has_a_lock_timeout_option():
    from reconciler.cli import build_parser

    args = build_parser().parse_args(["delete", "-f", "x.yaml", "--lock-timeout", "5"])
    assert args.lock_timeout == 5.0
