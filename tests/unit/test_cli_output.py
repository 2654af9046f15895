"""User and cluster text in ``clipper`` output is printed verbatim, never parsed as rich markup,
and ``clipper watch`` outlives any error of one iteration (a render error included)."""

from __future__ import annotations

import argparse
import io
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from rich.console import Console

from reconciler import commands
from reconciler.plan import Action, Op, Plan
from reconciler.render import plan_lines

NASTY = ["a[/]b", "[bold]x", "[link=http://example.com]m", "[/]"]

CLUSTER = """\
apiVersion: clipper.ai/v1
kind: Cluster
metadata: {name: out}
spec: {backend: local, queryPort: 18001, managementPort: 18002, rpcPort: 18003}
"""


@pytest.fixture
def console(monkeypatch) -> io.StringIO:
    buf = io.StringIO()
    c = Console(file=buf, width=400, no_color=True, highlight=False)
    monkeypatch.setattr(commands, "out", c)
    monkeypatch.setattr(commands, "err", c)
    return buf


def test_table_cells_are_verbatim(console):
    commands._table("Applications", ["name", "model"], [[n, n] for n in NASTY], "text")
    text = console.getvalue()
    for n in NASTY:
        assert f"{n} " in text, text


def test_plan_and_progress_show_refs_verbatim(console):
    plan = Plan(tuple(Action(op, "Application", n, reason=n) for op, n in zip(
        (Op.DELETE, Op.PRUNE, Op.CONFLICT, Op.CREATE), NASTY, strict=True)))  # fmt: skip
    for line in plan_lines(plan, verbose=True):
        commands.out.print(line)
    with commands._progress() as progress:
        reporter = commands.RichReporter(progress)
        for a in plan.actions:
            reporter.start(a)
            reporter.finish(a, RuntimeError(a.name))
    text = console.getvalue()
    for n in NASTY:
        assert f"Application/{n} " in text and f"({n})" in text, text
    assert "x Application/[/] failed" in text


def test_done_actions_leave_the_live_display_as_lines(console):
    """The live display holds only the actions in progress (each refresh redraws all it holds, so a
    500-model apply was quadratic); a done action is printed once, a failed one stays."""
    actions = [Action(Op.CREATE, "Model", f"m{i}") for i in range(300)] + [
        Action(Op.CREATE, "Model", NASTY[0])
    ]
    with commands._progress() as progress:
        reporter = commands.RichReporter(progress)
        for a in actions[:-1]:
            reporter.start(a)
            reporter.finish(a, None)
            assert len(progress.tasks) == 0
        reporter.start(actions[-1])
        assert len(progress.tasks) == 1
        reporter.finish(actions[-1], RuntimeError("no"))
        assert len(progress.tasks) == 1  # a failure stays in view
    text = console.getvalue()
    for a in actions[:-1]:
        assert text.count(f"+ Model/{a.name} create done in ") == 1, text[-500:]
    assert f"x Model/{NASTY[0]} failed" in text


def test_errors_are_verbatim(console):
    from reconciler.errors import ReconcilerError

    commands.report_error(ReconcilerError("app [/] is [bold]broken"))
    assert "error: app [/] is [bold]broken" in console.getvalue()


class FlakyConsole(Console):
    """A console whose rendering fails once, as a markup bug in a message would."""

    failed = False

    def print(self, *objects, **kwargs):
        if not self.failed and any("apply failed" in str(o) for o in objects):
            from rich.errors import MarkupError

            self.failed = True
            raise MarkupError("closing tag '[/]' at position 12 has nothing to close")
        return super().print(*objects, **kwargs)


def test_watch_outlives_errors_of_an_iteration(tmp_path):
    """Apply errors whose text is markup, and an error in printing itself, never end the watch."""
    from reconciler import watch as watch_mod

    f = tmp_path / "c.yaml"
    f.write_text(CLUSTER)
    buf = io.StringIO()
    console = FlakyConsole(file=buf, width=400, no_color=True, highlight=False)
    stop = threading.Event()
    calls: list[int] = []

    def apply_once(target, args):
        calls.append(1)
        if len(calls) <= 2:
            raise RuntimeError("Application/[/] is managed by '[bold]x'")
        if len(calls) >= 4:
            stop.set()
        return Plan(())

    args = argparse.Namespace(files=[str(f)], interval=0.05, debounce=0.01)
    thread = threading.Thread(target=watch_mod.watch, args=(args, apply_once, console, stop), daemon=True)
    thread.start()
    thread.join(timeout=60)
    assert not thread.is_alive() and len(calls) >= 4
    text = buf.getvalue()
    # 1st error: the console failed to render it (logged, watch goes on); 2nd: printed verbatim
    assert "apply failed: closing tag '[/]' at position 12 has nothing to close; still watching" in text
    assert "apply failed: Application/[/] is managed by '[bold]x'" in text
    assert text.rstrip().endswith("watch stopped")


DIFF_CASES = [
    # (actions, exit status, says "matches the manifests")
    ((Action(Op.NOOP, "Model", "m"),), 0, True),
    ((Action(Op.NOOP, "Model", "m"), Action(Op.PRUNE, "Application", "old")), 1, False),
    ((Action(Op.CONFLICT, "Model", "m", reason="managed by 'x'"),), 2, False),
    ((Action(Op.PRUNE, "Application", "old"), Action(Op.CONFLICT, "Model", "m")), 2, False),
    ((Action(Op.CREATE, "Model", "m"),), 1, False),
]


@pytest.mark.parametrize(("actions", "code", "matches"), DIFF_CASES)
def test_diff_exit_status_and_message(console, monkeypatch, actions, code, matches):
    """0 only when apply would do nothing and nothing conflicts; "matches" only then."""
    from reconciler import engine

    plan = Plan(actions)
    monkeypatch.setattr(commands, "_target", lambda args: argparse.Namespace(desired=None))
    monkeypatch.setattr(engine, "plan_for", lambda t, owner, prune: (plan, None))
    args = argparse.Namespace(owner="o", prune=False, output="text", verbose=False)
    assert commands.cmd_diff(args) == code
    text = console.getvalue()
    assert ("matches the manifests" in text) is matches, text
    if any(a.op is Op.PRUNE for a in actions):
        assert "would be pruned (use --prune)" in text
    if plan.conflicts:
        assert "1 conflict(s) (Model/m) left untouched" in text
    monkeypatch.setattr(commands, "_apply_once", lambda t, a: plan)
    console.truncate(0)
    console.seek(0)
    if code != 2:  # apply refuses conflicts before its summary
        assert commands.cmd_apply(argparse.Namespace(output="text", files=[], wait=False)) == 0
        after = not any(a.op is Op.PRUNE for a in actions)  # once applied, only a pending prune differs
        assert ("matches the manifests" in console.getvalue()) is after, console.getvalue()


def _clipper(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "reconciler", *args], capture_output=True, text=True,
                          timeout=120, **kw)  # fmt: skip


def test_version():
    from importlib.metadata import version

    proc = _clipper("--version")
    assert (proc.returncode, proc.stdout.strip()) == (0, f"clipper {version('clipper')}"), proc.stderr


def test_output_to_a_closed_pipe_exits_quietly(tmp_path):
    """``clipper diff --output json | head -c 10``: the reader is gone before clipper writes."""
    f = tmp_path / "c.yaml"
    f.write_text(CLUSTER)
    read, write = os.pipe()
    os.close(read)  # as head does once it has what it wants
    try:
        proc = subprocess.run([sys.executable, "-m", "reconciler", "diff", "-f", str(f), "--output", "json"],
                              stdout=write, stderr=subprocess.PIPE, text=True, timeout=120,
                              env={**os.environ, "CLIPPER_HOME": str(tmp_path / "home")})  # fmt: skip
    finally:
        os.close(write)
    assert proc.returncode == 141 and proc.stderr == "", proc.stderr


def test_schema_writes_to_the_directory_given(tmp_path):
    from schemas.kinds import published, schema_filename

    names = sorted(schema_filename(k) for k in published())
    assert "clipper.schema.json" in names
    for args, where in (
        (["schema", str(tmp_path / "a")], "a"),
        (["schema", "--out", str(tmp_path / "b")], "b"),
    ):
        proc = _clipper(*args)
        assert proc.returncode == 0, proc.stderr
        assert sorted(p.name for p in (tmp_path / where).iterdir()) == names


def test_schema_default_directory(console, monkeypatch):
    """From a source checkout: its schemas/json/; installed: never the package, a DIR is required."""
    import schemas.__main__ as schemas_main

    repo = Path(__file__).resolve().parents[2]
    assert schemas_main.default_dir() == repo / "schemas" / "json"
    monkeypatch.setattr(schemas_main, "source_checkout", lambda: None)
    written: list[Path] = []
    monkeypatch.setattr(schemas_main, "write_schemas", lambda d: written.append(d) or [])
    with pytest.raises(commands.ReconcilerError, match=r"clipper schema DIR"):
        commands.cmd_schema(argparse.Namespace(directory=None, out=None))
    assert written == []


def test_watch_backs_off_on_repeated_failures_and_resets_after_success(tmp_path):
    """Failures in a row double the delay (capped) and each says when the next try is; a success
    resets it. Only lower bounds are timed: a slow machine can only make the gaps longer."""
    from reconciler.watch import watch

    (tmp_path / "c.yaml").write_text(CLUSTER)
    buf, stop, calls = io.StringIO(), threading.Event(), []

    def apply_once(target, args):
        calls.append(time.monotonic())
        if len(calls) == 7:
            return Plan(())  # one success after six failures
        if len(calls) >= 9:
            stop.set()
        raise RuntimeError("model replica crashed")

    args = argparse.Namespace(files=[str(tmp_path / "c.yaml")], interval=0.05, debounce=0.01, max_backoff=0.4)
    console = Console(file=buf, width=400, no_color=True, highlight=False)
    thread = threading.Thread(target=watch, args=(args, apply_once, console, stop), daemon=True)
    thread.start()
    thread.join(timeout=60)
    assert not thread.is_alive()
    text = buf.getvalue()
    delays = re.findall(
        r"apply failed: model replica crashed; retrying in ([\d.]+) s \(at \d\d:\d\d:\d\d; (\d+)", text
    )
    assert delays[:8] == [("0.05", "1"), ("0.1", "2"), ("0.2", "3"), ("0.4", "4"), ("0.4", "5"), ("0.4", "6"),
                          ("0.05", "1"), ("0.1", "2")], text  # fmt: skip
    assert "apply succeeded after 6 failure(s) in a row; checking every 0.05 s" in text
    assert calls[5] - calls[4] >= 0.35 and calls[3] - calls[2] >= 0.15, calls  # backed off, capped at 0.4


def test_watch_reports_an_invalid_edit_its_file_watcher_missed_once(tmp_path, monkeypatch):
    """A file system without change events (or an edit between two watchers): the drift check
    still reports invalid manifests, once per distinct set of problems, and a fix loads again."""
    import watchfiles

    from reconciler.watch import watch

    def no_events(*paths, stop_event, **kw):  # only the timeouts, never a change
        while not stop_event.is_set():
            time.sleep(0.01)
            yield set()

    monkeypatch.setattr(watchfiles, "watch", no_events)
    f = tmp_path / "c.yaml"
    f.write_text(CLUSTER)
    buf, stop, calls = io.StringIO(), threading.Event(), []
    args = argparse.Namespace(files=[str(f)], interval=0.02, debounce=0.01)
    console = Console(file=buf, width=400, no_color=True, highlight=False)
    thread = threading.Thread(
        target=watch, args=(args, lambda t, a: calls.append(t), console, stop), daemon=True
    )
    thread.start()

    def wait_for(text: str, count: int) -> None:
        deadline = time.monotonic() + 30
        while buf.getvalue().count(text) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        assert buf.getvalue().count(text) == count, buf.getvalue()

    try:
        wait_for("manifests loaded", 1)
        f.write_text(CLUSTER.replace("18001", "-1"))
        wait_for("invalid manifests", 1)
        applied = len(calls)
        time.sleep(0.3)  # many drift checks of the same invalid file: reported once, last good applied
        assert buf.getvalue().count("invalid manifests") == 1 and len(calls) > applied
        assert all(c.desired.cluster.query_port == 18001 for c in calls)
        f.write_text(CLUSTER.replace("18001", "nope"))  # another mistake: reported
        wait_for("invalid manifests", 2)
        f.write_text(CLUSTER.replace("18001", "18011"))  # fixed: loaded and applied
        wait_for("manifests loaded", 2)
        deadline = time.monotonic() + 30
        while calls[-1].desired.cluster.query_port != 18011 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert calls[-1].desired.cluster.query_port == 18011
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not thread.is_alive()


def test_watch_prints_one_line_per_event(tmp_path):
    from reconciler.desired import DesiredModel
    from reconciler.plan import Change
    from reconciler.watch import LineReporter

    m = DesiredModel("sum-model", "9c1d4e2b7a", "doubles", 2, 1, "9c1d4e2b7a", False)
    buf = io.StringIO()
    reporter = LineReporter(Console(file=buf, width=400, no_color=True, highlight=False))
    rollout = Action(Op.REPLACE, "Model", "sum-model", model=m, previous_version="3f2a0b1c9d")
    scale = Action(Op.UPDATE, "Model", "sum-model", (Change("replicas", 1, 2),), model=m)
    app = Action(Op.CREATE, "Application", "hello", (Change("slo_micros", None, 2000),))
    for action, error in ((rollout, None), (scale, None), (app, None), (app, RuntimeError("[/] down"))):
        reporter.start(action)
        if action.kind == "Model":
            reporter.progress(action, 1, 2)
            reporter.progress(action, 2, 2)
        reporter.finish(action, error)
    lines = [line.split(" ", 1)[1] for line in buf.getvalue().splitlines()]  # after the HH:MM:SS
    assert lines == [
        "sum-model 3f2a0b1… -> 9c1d4e2… rolled out, 2/2 connected",
        "sum-model 9c1d4e2… scaled 1 -> 2, 2/2 connected",
        "Application/hello created (slo_micros: (none) -> 2000)",
        "Application/hello create failed: [/] down",
    ]


def test_watch_stops_on_ctrl_c_without_a_library_warning(tmp_path):
    """SIGINT: exit 0, "watch stopped", and nothing from a library (watchfiles warned before).
    The watched paths are printed whole, on one line, however long (not wrapped at 80 columns)."""
    f = tmp_path / ("long-directory-name-" * 5) / "c.yaml"
    f.parent.mkdir()
    f.write_text(CLUSTER.replace("18001", "-1"))  # invalid: nothing is applied, no cluster starts
    proc = subprocess.Popen([sys.executable, "-m", "reconciler", "--no-color", "watch", "-f", str(f),
                             "--interval", "0.2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "CLIPPER_HOME": str(tmp_path / "home")})  # fmt: skip
    try:
        seen = ""
        while "watching" not in seen and proc.poll() is None:
            seen += proc.stderr.readline()
        time.sleep(0.5)  # a few idle ticks: nothing is printed for them
        proc.send_signal(signal.SIGINT)
        out, rest = proc.communicate(timeout=60)
    finally:
        proc.kill()
    stderr = seen + rest
    assert proc.returncode == 0, stderr
    assert "invalid manifests" in stderr and stderr.rstrip().endswith("watch stopped"), stderr
    assert f"watching {f} (drift check" in stderr, stderr
    assert "WARNING" not in stderr and "KeyboardInterrupt" not in stderr and "Traceback" not in stderr, stderr
    assert "\n\n" not in stderr and out == "", stderr


def test_get_without_manifests_uses_the_only_local_cluster(tmp_path):
    from reconciler.errors import ReconcilerError
    from reconciler.local_clusters import pick_cluster

    with pytest.raises(ReconcilerError, match=r"no local cluster in .*: run `clipper apply -f <manifests>`"):
        pick_cluster(None, tmp_path)
    (tmp_path / "not-a-cluster").mkdir()  # a directory without cluster.json does not count
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "cluster.json").write_text("{}")
    assert pick_cluster(None, tmp_path) == "b"
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "cluster.json").write_text("{}")
    with pytest.raises(
        ReconcilerError, match=r"2 local clusters in .* \(a, b\): name one with --cluster NAME"
    ):
        pick_cluster(None, tmp_path)
    assert pick_cluster("zz", tmp_path) == "zz"


@pytest.mark.parametrize(
    "args", [["get", "models"], ["status", "--cluster", "nope"], ["get", "apps", "--cluster", "x"]]
)
def test_cli_errors_name_cli_commands_not_python(tmp_path, args):
    """A missing cluster: the message says which ``clipper`` command creates it, never a Python call."""
    proc = _clipper(*args, env={**os.environ, "CLIPPER_HOME": str(tmp_path)})
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "run `clipper apply -f <manifests>`" in proc.stderr, proc.stderr
    assert "ClipperConnection" not in proc.stderr and "start_clipper" not in proc.stderr, proc.stderr
