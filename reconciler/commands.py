"""Implementations of the ``clipper`` commands (imported lazily by :mod:`reconciler.cli`).

Text that comes from the user or the cluster (names, versions, labels, messages, paths) is never
parsed as rich markup: it is escaped, wrapped in ``Text`` or printed with ``markup=False``, so a
name such as ``a[/]b`` prints verbatim instead of raising ``MarkupError``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import time
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from reconciler.errors import ManifestErrors, ReconcilerError
from reconciler.exitcodes import EXIT_ERROR, EXIT_OK
from reconciler.plan import Action

if TYPE_CHECKING:
    from reconciler.engine import Target
    from reconciler.plan import Plan

out = Console()
err = Console(stderr=True)


class RichReporter:
    """Progress of an apply: one line per action, a bar while replicas connect."""

    def __init__(self, bar: Progress):
        self.bar = bar
        self.tasks: dict[str, Any] = {}
        self.labels: dict[str, tuple[str, float]] = {}  # ref -> (its line, when it started)

    def start(self, action: Action) -> None:
        from reconciler.render import SYMBOL

        sym, style, word = SYMBOL[action.op]
        label = f"[{style}]{sym:>3} {escape(action.ref)}[/{style}] {word}"
        self.tasks[action.ref] = self.bar.add_task(label, total=None)
        self.labels[action.ref] = (label, time.monotonic())

    def progress(self, action: Action, done: int, total: int) -> None:
        task = self.tasks.get(action.ref)
        if task is not None:
            self.bar.update(task, completed=done, total=max(total, 1))

    def finish(self, action: Action, error: BaseException | None) -> None:
        task = self.tasks.get(action.ref)
        if task is not None:
            self.bar.update(task, completed=1, total=1)
            if error is not None:
                self.bar.update(task, description=f"[bold red]  x {escape(action.ref)} failed")
            else:
                # A done action leaves the live display as a printed line: the display redraws every
                # task on each refresh, so keeping hundreds of done ones made a large apply quadratic.
                label, t0 = self.labels.pop(action.ref)
                self.bar.console.print(
                    f"{label} [dim]done in {time.monotonic() - t0:.1f} s[/dim]", highlight=False
                )
                self.bar.remove_task(task)
                del self.tasks[action.ref]


def _progress() -> Progress:
    return Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(bar_width=20),
                    TimeElapsedColumn(), console=err, transient=False)  # fmt: skip


def _print_plan(plan: Plan, output: str, verbose: bool = False) -> None:
    from reconciler.render import plan_json, plan_lines

    if output == "json":
        print(plan_json(plan))
    else:
        for line in plan_lines(plan, verbose):
            out.print(line, highlight=False, soft_wrap=True)


def _target(args: argparse.Namespace) -> Target:
    from reconciler.engine import load_target

    return load_target(args.files)


def _owner(args: argparse.Namespace, t: Target) -> str:
    owner: str = args.owner or t.desired.cluster_name
    return owner


def cmd_diff(args: argparse.Namespace) -> int:
    from reconciler.engine import plan_for

    t = _target(args)
    plan, _ = plan_for(t, _owner(args, t), args.prune)
    _print_plan(plan, args.output, args.verbose)
    from reconciler.render import plan_exit_code

    return plan_exit_code(plan)


def _apply_once(t: Target, args: argparse.Namespace) -> Plan:
    """One apply; Ctrl-C stops it at its next safe point (:mod:`reconciler.interrupt`), exit 130."""
    from reconciler.engine import apply
    from reconciler.interrupt import CtrlC

    with CtrlC().installed(), _progress() as progress:
        plan = apply(
            t, _owner(args, t), args.prune, args.lock_timeout, RichReporter(progress),
            on_lock_wait=lambda p: err.print(f"waiting for another apply ({p}) ...", markup=False),
            note=lambda line: progress.console.print(line, markup=False, highlight=False, soft_wrap=True),
        )  # fmt: skip
    return plan


def cmd_apply(args: argparse.Namespace) -> int:
    t = _target(args)
    plan = _apply_once(t, args)
    # An apply that changed nothing planned from an observation showing every object converged and
    # healthy (observed replicas are the healthy ones): observing again would only repeat it, at
    # two management calls per model.
    if args.wait and plan.has_changes:
        from reconciler.engine import pending, wait_converged

        left = pending(wait_converged(t, _owner(args, t), args.prune, args.timeout))
        if left:
            raise ReconcilerError(
                f"applied, but not converged after {args.timeout:g} s: {'; '.join(left)} "
                "(clipper diff shows what is left; clipper apply again, or a longer --timeout)"
            )
    if args.output == "json":
        _print_plan(plan, "json")
    else:
        for w in plan.warnings:
            err.print(f"[yellow]warning:[/yellow] {escape(w)}")
        from reconciler.render import summary_line

        out.print(summary_line(plan, applied=len(plan.changes)), highlight=False, soft_wrap=True)
    return EXIT_OK


def cmd_delete(args: argparse.Namespace) -> int:
    """Delete the manifests' objects; with ``--cluster`` also stop the cluster.

    Stopping the cluster never depends on observing it or on deleting its objects one by one: a
    cluster whose store is corrupt (management API failing) is stopped all the same, and what could
    not be deleted individually is reported as a warning.
    """
    from reconciler.engine import delete

    t = _target(args)
    cluster = t.desired.cluster_name
    with _progress() as progress:
        actions, failed = delete(
            t, _owner(args, t), args.cluster, args.lock_timeout, RichReporter(progress),
            warn=lambda line: err.print(f"[yellow]warning:[/yellow] {escape(line)}", highlight=False,
                                        soft_wrap=True),
        )  # fmt: skip
    if not args.cluster:
        out.print(f"Deleted {len(actions)} object(s).")
        return EXIT_OK
    for action, exc in failed:
        err.print(f"[yellow]warning:[/yellow] {escape(action.ref)} was not deleted on its own "
                  f"({escape(str(exc))}); it stopped with the cluster", highlight=False, soft_wrap=True)  # fmt: skip
    out.print(f"Deleted {len(actions) - len(failed)} object(s) and stopped cluster {escape(cluster)}.")
    return EXIT_OK


def cmd_controller(args: argparse.Namespace) -> int:
    """``clipper controller``: reconcile a namespace's custom resources (:mod:`reconciler.controller`)."""
    import os

    from reconciler.controller.kube import KubeClient, KubeError
    from reconciler.controller.run import Options, Runner, default_identity

    if args.lease_duration < 3:
        raise ReconcilerError("--lease-duration must be at least 3 seconds (the leader renews every third)")
    handler = logging.getLogger().handlers[0] if logging.getLogger().handlers else None
    if handler is not None:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger("reconciler").setLevel(logging.INFO)
    try:
        api = KubeClient.configured(args.kubeconfig, args.context)
    except KubeError as e:
        raise ReconcilerError(
            f"{e} (in a pod the service account's; elsewhere --kubeconfig/--context)"
        ) from e
    namespace = args.namespace or os.environ.get("POD_NAMESPACE") or _kube_namespace(args) or "default"
    opts = Options(namespace, args.resync, args.lease_name, args.lease_duration, args.health_port,
                   identity=default_identity())  # fmt: skip
    runner = Runner(api, opts)
    runner.stop_on_signals()
    err.print(
        f"clipper controller {opts.identity}: namespace {namespace}, Lease {opts.lease_name}", markup=False
    )
    return runner.run()


def _kube_namespace(args: argparse.Namespace) -> str | None:
    """The namespace of the service account (in a pod) or of the kubeconfig's context."""
    from pathlib import Path

    sa = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
    if not args.kubeconfig and not args.context and sa.is_file():
        return sa.read_text().strip() or None
    try:
        from kubernetes import config

        contexts, active = config.list_kube_config_contexts(config_file=args.kubeconfig)
        chosen = next((c for c in contexts if c["name"] == args.context), None) if args.context else active
        ns = (chosen or {}).get("context", {}).get("namespace")
        return str(ns) if ns else None
    except Exception:  # no kubeconfig: the in-cluster configuration has no context
        return None


def _connected_target(args: argparse.Namespace) -> Target:
    from reconciler.desired import desired_state
    from reconciler.engine import Target, connect, target_for
    from reconciler.loader import ManifestSet
    from reconciler.local_clusters import pick_cluster, unreachable_message

    if args.files:
        t = _target(args)
    else:
        from reconciler.backends import cluster_dir, connection
        from reconciler.clipper_cluster import ClipperCluster

        d = desired_state(ManifestSet(), default_cluster=pick_cluster(args.cluster))
        conn = connection(d)
        t = Target(d, ClipperCluster(conn), cluster_dir(d, conn), [], conn)
    from clipper_admin import ClipperException

    try:
        connect(t)
    except (ClipperException, OSError, KeyError) as e:
        d = t.desired
        raise ReconcilerError(unreachable_message(d.cluster_name, d.cluster.backend, t.cluster_dir, e)) from e
    del target_for
    return t


def _table(title: str, columns: list[str], rows: list[list[Any]], output: str) -> None:
    if output == "json":
        print(json.dumps([dict(zip(columns, r, strict=True)) for r in rows], indent=2))
        return
    table = Table(title=title, title_justify="left")
    for c in columns:
        table.add_column(c)
    for r in rows:
        table.add_row(*[Text("" if v is None else str(v)) for v in r])  # cells verbatim, never markup
    out.print(table)


def cmd_get(args: argparse.Namespace) -> int:
    t = _connected_target(args)
    c = t.conn
    assert c is not None  # a connected target carries its connection
    if args.what == "apps":
        rows = [[a["name"], a["input_type"], ", ".join(a.get("linked_models") or []), a["default_output"],
                 a["latency_slo_micros"]] for a in c.get_all_apps(verbose=True)]  # fmt: skip
        _table(
            "Applications",
            ["name", "input_type", "model", "default_output", "slo_micros"],
            sorted(rows),
            args.output,
        )
    elif args.what == "models":
        counts: dict[tuple[str, str], int] = {}
        for r in c.get_all_model_replicas(verbose=True):
            key = (r["model_name"], str(r["model_version"]))
            counts[key] = counts.get(key, 0) + 1
        rows = [[m["model_name"], m["model_version"], m["input_type"], "yes" if m["is_current_version"] else "",
                 counts.get((m["model_name"], str(m["model_version"])), 0), ",".join(x for x in m["labels"] if x)]
                for m in c.get_all_models(verbose=True)]  # fmt: skip
        _table(
            "Models",
            ["name", "version", "input_type", "current", "replicas", "labels"],
            sorted(rows),
            args.output,
        )
    else:
        rows = [[r["model_name"], r["model_version"], r["model_replica_id"], r["input_type"]]
                for r in c.get_all_model_replicas(verbose=True)]  # fmt: skip
        _table("Replicas", ["model", "version", "replica", "input_type"], sorted(rows), args.output)
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    """Sync and health per object (:mod:`reconciler.status`); exit 0 only when all are Synced (or no
    manifests were given) and Healthy, 1 otherwise."""
    from reconciler.engine import plan_for
    from reconciler.gitinfo import git_commit
    from reconciler.status import exit_code, status_json, statuses

    t = _connected_target(args)
    conn = t.conn
    assert conn is not None  # a connected target carries its connection
    if args.files:
        plan, obs = plan_for(t, _owner(args, t), False)
        revision = git_commit(t.files)
        objects = statuses(t.desired, obs, plan, revision)
    else:
        from reconciler.observed import observe

        obs = observe(t.cluster, t.registry.load(), t.registry.load_models())
        revision = None
        objects = statuses(None, obs, None)
        objects[0] = dataclasses.replace(objects[0], name=t.desired.cluster_name)
    if args.output in ("json", "yaml"):
        doc = status_json(t.desired.cluster_name, objects, revision)
        if args.output == "json":
            print(json.dumps(doc, indent=2))
        else:
            from ruamel.yaml import YAML

            y = YAML(typ="safe", pure=True)
            y.default_flow_style = False
            y.sort_base_mapping_type_on_output = False  # type: ignore[assignment]  # keep the documented key order
            y.dump(doc, sys.stdout)
        return exit_code(objects)
    out.print(f"Cluster [bold]{escape(t.desired.cluster_name)}[/bold]: running, query "
              f"{escape(conn.cm.get_query_addr())}, admin {escape(conn.cm.get_admin_addr())}"
              + (f", manifests at {escape(revision)}" if revision else ""),
              highlight=False, soft_wrap=True)  # fmt: skip
    table = Table(title="Objects", title_justify="left")
    for c in ["object", "sync", "health", "replicas", "version/model", "revision"]:
        table.add_column(c, overflow="fold")  # wrap and fold, never cut with an ellipsis
    for o in objects:
        version = o.current_version or "-"
        if o.previous_version:
            version += f" (previous {o.previous_version})"
        replicas = "" if o.actual_replicas is None else f"{o.actual_replicas}"
        if o.desired_replicas is not None:
            replicas += f"/{o.desired_replicas}"
        cells = [f"{o.kind}/{o.name}", o.sync.value, o.health.value, replicas,
                 version if o.kind == "Model" else (o.model or ""), o.revision or o.deployed_revision or ""]  # fmt: skip
        table.add_row(*[Text(c) for c in cells])  # cells verbatim, never markup
    out.print(table)
    for o in objects:  # reasons below the table, wrapped at the terminal's width
        if o.reason and not o.ok:
            out.print(Text(f"{o.kind}/{o.name}: {o.reason}"))
    return exit_code(objects)


def cmd_watch(args: argparse.Namespace) -> int:
    from reconciler.watch import apply_reporting_lines, watch

    return watch(args, apply_reporting_lines(err), err)


def cmd_sync(args: argparse.Namespace) -> int:
    from reconciler.sync import run_sync

    return run_sync(args, err)


def cmd_build(args: argparse.Namespace) -> int:
    """``clipper build``: one ``Model/<name>  <image>`` line per built model (on stderr when the
    manifests go to stdout with ``-o -``)."""
    import io
    from pathlib import Path

    from reconciler.build import build_images, rewrite_manifests
    from reconciler.loader import load_manifests

    stdin_text = sys.stdin.read() if "-" in args.files else None
    manifests = load_manifests(args.files, stdin=io.StringIO(stdin_text or ""))

    def note(line: str) -> None:
        err.print(f"note: {line}", markup=False, highlight=False, soft_wrap=True)

    built = build_images(manifests, args.registry, args.push, args.load, note)
    lines = err if args.output_file == "-" else out
    for b in built:
        lines.print(f"Model/{b.name}  {b.image}", markup=False, highlight=False, soft_wrap=True)
    if args.output_file:
        text = rewrite_manifests(args.files, {b.name: b.image for b in built}, stdin_text)
        if args.output_file == "-":
            sys.stdout.write(text)
        else:
            Path(args.output_file).write_text(text)
    return EXIT_OK


def cmd_schema(args: argparse.Namespace) -> int:
    from pathlib import Path

    from schemas.__main__ import default_dir, write_schemas

    if args.directory and args.out and args.directory != args.out:
        raise ReconcilerError(f"two directories given ({args.directory} and --out {args.out}): give one")
    given = args.directory or args.out
    directory = Path(given) if given else default_dir()
    if directory is None:
        raise ReconcilerError("this clipper is installed, not run from a source checkout: say where to "
                              "write the schemas (clipper schema DIR)")  # fmt: skip
    for p in write_schemas(directory):
        out.print(str(p), markup=False)
    return EXIT_OK


def report_error(e: BaseException) -> None:
    if isinstance(e, ManifestErrors):
        err.print(f"[bold red]error:[/bold red] {len(e.problems)} problem(s) in the manifests; nothing was changed",
                  highlight=False)  # fmt: skip
        for p in e.problems:
            err.print(f"  {p}", highlight=False, markup=False, soft_wrap=True)
    else:
        err.print(f"[bold red]error:[/bold red] {escape(str(e))}", highlight=False, soft_wrap=True)


def run(args: argparse.Namespace) -> int:
    global out, err
    if args.no_color:
        out, err = (
            Console(no_color=True, highlight=False),
            Console(stderr=True, no_color=True, highlight=False),
        )
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("clipper_admin").setLevel(logging.WARNING)
    handler = globals()[f"cmd_{args.command}"]
    from clipper_admin import ClipperException

    try:
        status: int = handler(args)
        return status
    except BrokenPipeError:  # stdout's reader is gone: cli.main exits quietly
        raise
    except (ReconcilerError, ClipperException, OSError) as e:
        report_error(e)
        return EXIT_ERROR
    finally:
        sys.stdout.flush()
        time.sleep(0)


def cmd_history(args: argparse.Namespace) -> int:
    """The cluster's applies, oldest first (``clipper rollback N`` takes the ``#`` shown)."""
    entries = _connected_target(args).history.entries()
    if args.output == "json":
        print(json.dumps([e.summary() for e in entries], indent=2))
        return EXIT_OK
    rows = [
        [str(e.number), e.time, e.revision or "-", e.who, "; ".join(e.changes), e.result] for e in entries
    ]
    table = Table("#", "time", "revision", "who", "changes", "result", title="Apply history")
    for row in rows:
        table.add_row(*(Text(c) for c in row))
    out.print(table if rows else "No applies recorded.")
    return EXIT_OK


def cmd_rollback(args: argparse.Namespace) -> int:
    """Apply a previous entry's desired state again (its model versions, replicas and apps)."""
    from reconciler.engine import Target, apply, connect, observe_target
    from reconciler.history import desired_apps, desired_models

    t = _target(args)
    from clipper_admin import ClipperException

    try:
        connect(t)
    except (ClipperException, OSError, KeyError) as e:
        raise ReconcilerError(
            f"cluster {t.desired.cluster_name} is not running: nothing to roll back ({e})"
        ) from e
    entries = t.history.entries()
    if args.number is None:
        earlier = [e for e in entries[:-1] if e.result == "succeeded"]
        if not earlier:
            raise ReconcilerError("no earlier successful apply in the history (clipper history lists them)")
        entry = earlier[-1]
    else:
        found = [e for e in entries if e.number == args.number]
        if not found:
            numbers = ", ".join(str(e.number) for e in entries) or "none"
            raise ReconcilerError(
                f"no apply #{args.number} in the history (kept: {numbers}; clipper history)"
            )
        entry = found[0]
    desired = dataclasses.replace(
        t.desired, models=desired_models(entry.desired), apps=desired_apps(entry.desired)
    )
    obs = observe_target(t)
    gone = [f"Model/{m.name} version {m.version}" for m in desired.models.values()
            if m.version not in obs.models.get(m.name, {})]  # fmt: skip
    if gone:
        raise ReconcilerError(
            f"cannot roll back to #{entry.number} ({entry.revision or 'no revision'}): "
            f"{', '.join(gone)} was removed from the cluster (no longer registered), and a rollback "
            f"does not rebuild it. Check out revision {entry.revision or '?'} and clipper apply it."
        )
    back = Target(desired, t.cluster, t.cluster_dir, t.files, t.conn, shared=t.shared)
    with _progress() as progress:
        plan = apply(
            back, _owner(args, t), args.prune, args.lock_timeout, RichReporter(progress),
            on_lock_wait=lambda p: err.print(f"waiting for another apply ({p}) ...", markup=False),
            revision=f"rollback to #{entry.number} ({entry.revision or '-'})",
        )  # fmt: skip
    if args.output == "json":
        _print_plan(plan, "json")
    else:
        from reconciler.render import summary_line

        out.print(f"Rolled back to #{entry.number} ({entry.revision or 'no revision'}).", markup=False)
        out.print(summary_line(plan, applied=len(plan.changes)), highlight=False, soft_wrap=True)
    return EXIT_OK


def cmd_rollout(args: argparse.Namespace) -> int:
    """``clipper rollout status|promote|abort|retry MODEL`` (:mod:`reconciler.rollout`).

    promote/abort act on the cluster themselves when no apply holds the apply lock (an interrupted
    rollout); otherwise they leave a command in the cluster's records that the apply driving the
    rollout carries out at its next poll, and wait (``--timeout``) until it did."""
    from reconciler.rollout import ABORT, PROMOTE, finish

    t = _connected_target(args)
    store = t.rollouts
    record = store.get(args.model)
    if args.action == "status":
        if record is None:
            raise ReconcilerError(f"no canary or blueGreen rollout of model {args.model!r} is recorded")
        _rollout_status(record, args.output)
        return EXIT_OK
    if args.action == "retry":
        if record is not None and record.active:
            raise ReconcilerError(f"the rollout of {args.model} is in progress: promote or abort it")
        store.forget(args.model)
        out.print(f"Model/{args.model}: rollout record forgotten; the next apply rolls the manifests' "
                  "version out again.", markup=False)  # fmt: skip
        return EXIT_OK
    if record is None or not record.active:
        state = "none is recorded" if record is None else f"the last one {record.phase}"
        raise ReconcilerError(f"no rollout of model {args.model!r} is in progress ({state})")
    from reconciler.lock import apply_lock, cluster_lease, who

    command = PROMOTE if args.action == "promote" else ABORT
    requested = False
    deadline = time.monotonic() + args.timeout
    while True:
        try:  # no apply holds the lock (none runs, or the one that did died): act here
            with apply_lock(t.cluster_dir, 0), cluster_lease(t.cluster, 0) if t.shared else _nothing():
                record = store.get(args.model)  # as it is now that no apply can change it
                if record is not None and record.active:
                    store.take_command(args.model)
                    out.print(finish(t.cluster, store, record, command, who()), markup=False, soft_wrap=True)
                    return EXIT_OK
        except ReconcilerError as e:
            if "holds" not in str(e):
                raise
            if not requested:  # an apply (or watch) drives the rollout: ask it
                store.request(args.model, command, who())
                requested = True
                out.print(f"Model/{args.model}: {command} requested; waiting for the apply driving the "
                          "rollout ...", markup=False)  # fmt: skip
        record = store.get(args.model)
        if record is None or not record.active:
            phase = "forgotten" if record is None else record.phase
            out.print(f"Model/{args.model}: {phase}" + (f" ({record.reason})" if record and record.reason else ""),
                      markup=False, soft_wrap=True)  # fmt: skip
            return EXIT_OK
        if time.monotonic() >= deadline:
            raise ReconcilerError(
                f"the {command} of {args.model} is requested, but the rollout had not ended after "
                f"{args.timeout:g} s; the apply driving it (or the next clipper apply/watch, which resumes "
                "it) carries it out"
            )
        time.sleep(0.5)


def _nothing() -> Any:
    import contextlib

    return contextlib.nullcontext()


def _rollout_status(record: Any, output: str) -> None:
    if output == "json":
        print(json.dumps(record.summary(), indent=2))
        return
    n = record.numbers or {}
    a = record.analysis

    def rate(x: Any) -> str:
        return "-" if x is None else f"{100 * x:.1f}%"

    def limit(x: Any, pct: bool = True) -> str:
        return "none" if x is None else (f"{100 * x:g}%" if pct else f"{x:g}")

    steps = ", ".join(f"{s['weight']:g}%/{s['pause']:g}s" for s in record.steps)
    table = Table(title=f"Rollout of {record.model}", title_justify="left", show_header=False)
    table.add_column("field")
    table.add_column("value", overflow="fold")
    rows = [
        ("strategy", record.strategy),
        ("versions", f"{record.from_version} -> {record.to_version}"),
        ("phase", record.phase + (f": {record.reason}" if record.reason else "")),
        ("step", f"{min(record.step + 1, len(record.steps))}/{len(record.steps)} ({steps})"),
        ("weights", f"{record.to_version} {record.weight:g}%, {record.from_version} {100 - record.weight:g}%"),
        ("applications", ", ".join(s.app for s in record.apps) or "none"),
        ("requests", f"{n.get('requests', 0)} (min {a.get('min_requests')}) in {n.get('elapsedSeconds', 0)} s"),
        ("error rate", f"{rate(n.get('errorRate'))} (max {limit(a.get('max_error_rate'))})"),
        ("default rate", f"{rate(n.get('defaultRate'))} (max {limit(a.get('max_default_rate'))})"),
        ("p99 / objective", f"{'-' if n.get('p99LatencyRatio') is None else format(n['p99LatencyRatio'], '.3g')} "
                            f"(max {limit(a.get('max_p99_latency_ratio'), pct=False)})"),
        ("started", f"{record.started} by {record.who or '?'}; updated {record.updated}"),
    ]  # fmt: skip
    for k, v in rows:
        table.add_row(Text(k), Text(str(v)))
    out.print(table)
