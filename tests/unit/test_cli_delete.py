"""``clipper delete --cluster``: the cluster stops even when deleting its objects one by one fails."""

from __future__ import annotations

import argparse
import io
from types import SimpleNamespace

from rich.console import Console

from reconciler import commands
from reconciler.observed import AppRecord, Observed, ObservedApp


class FakeConn:
    stopped = False

    def stop_all(self) -> None:
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
        conn=FakeConn(),
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
    args = argparse.Namespace(files=["x"], owner=None, cluster=True)
    assert commands.cmd_delete(args) == commands.EXIT_OK
    assert target.conn.stopped and target.registry.removed
    assert FailingExecutor.ran == ["Application/fine"]
    text = buf.getvalue()
    assert (
        "Application/broken was not deleted on its own (Error reading the config store: database disk" in text
    )
    assert "Deleted 1 object(s) and stopped cluster c1." in text
