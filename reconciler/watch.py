"""``clipper watch``: apply on manifest changes (debounced) and re-observe every ``--interval`` seconds.

Watched: the manifests and every model source they use (the function's file, the local modules it
imports, a PySpark model directory; recomputed after each pass, so a newly imported module is
watched from then on). Every pass recomputes the desired state from disk, so a code edit rolls out
a new version like a manifest edit, on the change event or at the latest on the next drift check.
An invalid edit is reported and the last valid manifests stay in force (they are also the ones
drift repair applies); it is reported on its change event or, should the file watcher miss it, on
the next drift check, once per distinct set of problems.

Ctrl-C exits cleanly (exit 0, "watch stopped", nothing on stderr). It is cooperative: the first
one only asks to stop (:class:`CtrlC`); an apply in progress stops at its next safe point (before an
action, between the polls of a wait, between a rollout's analyses; :class:`reconciler.interrupt.Stopped`)
and cleans up as after any failure, bounded by its timeouts: the replicas it started are stopped, a
canary/blueGreen rollout is left in progress (the next apply or watch resumes it). A second Ctrl-C
aborts at once. (A KeyboardInterrupt raised wherever the main thread happened to be could land
inside a library between a lock's acquire and release, urllib3's connection pool for one, and the
library's own cleanup then waited on that lock forever.) ``kill -USR1`` makes any ``clipper`` command
print every thread's stack to stderr (:func:`reconciler.cli.main`), should it ever hang. Nothing else
ends the watch: any error while loading, applying or printing (a render error included) is logged and the
next event or check tries again.

Output is one line per event (a manifest load, an executed action, a failure), nothing while the
cluster matches the manifests. Repeated apply failures back off exponentially (``--interval``
doubled per failure in a row, at most ``--max-backoff``), and each failure says when the next try
is; a success or an edit of the manifests tries again at once and, on success, resets the backoff.
Text from the user or the cluster is never parsed as rich markup.
"""

from __future__ import annotations

import argparse
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from rich.markup import escape

from reconciler.desired import source_paths
from reconciler.errors import ManifestErrors, ReconcilerError
from reconciler.interrupt import CtrlC
from reconciler.plan import Action

if TYPE_CHECKING:
    from rich.console import Console

    from reconciler.engine import Target
    from reconciler.plan import Plan

#: One apply of the watch loop: ``(target, args)``; its result is not used.
ApplyOnce = Callable[["Target", argparse.Namespace], object]

log = logging.getLogger("reconciler.watch")

DEFAULT_MAX_BACKOFF = 300.0  # seconds


def _survive(what: str, step: Callable[[], None], console: Console) -> None:
    """Run one step of the loop; an unexpected error is logged, never ends the watch."""
    try:
        step()
    except Exception as e:
        log.error("watch: %s failed (%s: %s); still watching", what, type(e).__name__, e,
                  exc_info=log.isEnabledFor(logging.DEBUG))  # fmt: skip
        try:
            console.print(f"{what} failed: {e}; still watching", markup=False, highlight=False)
        except Exception:  # the console itself is broken: the log line above is all there is
            pass


class Backoff:
    """Delay before the next apply: ``interval`` while applies succeed, then doubled per failure in
    a row up to ``cap`` (never below ``interval``)."""

    def __init__(self, interval: float, cap: float) -> None:
        self.interval, self.cap, self.failures = interval, max(cap, interval), 0

    def failed(self) -> float:
        self.failures += 1
        return self.delay()

    def succeeded(self) -> int:
        """Reset; returns the number of failures in a row that this success ends."""
        failures, self.failures = self.failures, 0
        return failures

    def delay(self) -> float:
        if not self.failures:
            return self.interval
        # past the cap doubling changes nothing; an unbounded 2**n overflows a float after ~1024 failures
        doublings = min(self.failures - 1, 64)
        return min(self.interval * 2.0**doublings, self.cap)


class LineReporter:
    """Reports an apply as one line per executed action (no progress bars, nothing when idle)."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.connected: dict[str, tuple[int, int]] = {}

    def start(self, action: Action) -> None:
        self.connected.pop(action.ref, None)

    def progress(self, action: Action, done: int, total: int) -> None:
        self.connected[action.ref] = (done, total)

    def finish(self, action: Action, error: BaseException | None) -> None:
        from reconciler.render import event_line

        line = event_line(action, error, self.connected.pop(action.ref, None))
        self.console.print(
            f"{time.strftime('%H:%M:%S')} {line}", markup=False, highlight=False, soft_wrap=True
        )


def apply_reporting_lines(console: Console) -> Callable[[Target, argparse.Namespace], Plan]:
    """The apply ``clipper watch`` runs: :func:`reconciler.engine.apply` with a :class:`LineReporter`."""

    def apply_once(t: Target, args: argparse.Namespace) -> Plan:
        from reconciler.engine import apply

        return apply(
            t, args.owner or t.desired.cluster_name, args.prune, args.lock_timeout, LineReporter(console),
            on_lock_wait=lambda p: console.print(f"waiting for another apply ({p}) ...", markup=False),
            note=lambda line: console.print(f"{time.strftime('%H:%M:%S')} {line}", markup=False,
                                            highlight=False, soft_wrap=True),
        )  # fmt: skip

    return apply_once


def watch(
    args: argparse.Namespace, apply_once: ApplyOnce, console: Console, stop: threading.Event | None = None
) -> int:
    import watchfiles

    from reconciler.engine import load_target

    stop = stop or threading.Event()
    last_good = None
    backoff = Backoff(args.interval, getattr(args, "max_backoff", DEFAULT_MAX_BACKOFF))

    reported: list[str] | None = None  # the problems of the invalid manifests last reported

    def report_invalid(problems: list[str]) -> None:
        nonlocal reported
        reported = problems
        console.print(
            f"[bold red]invalid manifests[/bold red] ({len(problems)} problem(s)); keeping the last good ones"
        )
        for p in problems:
            console.print(f"  {p}", markup=False, highlight=False)

    def reload() -> None:
        nonlocal last_good, reported
        try:
            last_good = load_target(args.files)
            reported = None
            console.print("manifests loaded")
        except ManifestErrors as e:
            report_invalid([str(p) for p in e.problems])
        except ReconcilerError as e:
            console.print(f"[bold red]error:[/bold red] {escape(str(e))}", highlight=False)

    def refresh() -> None:
        """Recompute the desired state from disk before a drift check (a model source may have
        changed unseen). Invalid manifests keep the last good state; they are reported here unless
        these very problems were reported already, so that an edit the file watcher missed (a
        network file system, an edit between two watchers) is still reported, once."""
        nonlocal last_good, reported
        if "-" in args.files:  # stdin was read once
            return
        try:
            fresh = load_target(args.files)
        except ManifestErrors as e:
            problems = [str(p) for p in e.problems]
            if problems != reported:
                report_invalid(problems)
            return
        except ReconcilerError as e:
            log.debug("watch: keeping the last good manifests: %s", e)
            return
        if last_good is None or reported is not None:
            console.print("manifests loaded")
        last_good, reported = fresh, None

    def converge() -> None:
        if last_good is None or stop.is_set():  # Ctrl-C meanwhile: no new apply
            return
        try:
            apply_once(last_good, args)
        except Exception as e:  # keep watching: the next event or the backoff's delay retries
            delay = backoff.failed()
            at = time.strftime("%H:%M:%S", time.localtime(time.time() + delay))
            console.print(f"[bold red]apply failed:[/bold red] {escape(str(e))}; retrying in {delay:g} s "
                          f"(at {at}; {backoff.failures} failure(s) in a row)", highlight=False)  # fmt: skip
            return
        failures = backoff.succeeded()
        if failures:
            console.print(
                f"apply succeeded after {failures} failure(s) in a row; checking every {args.interval:g} s"
            )

    manifests = [str(Path(p).resolve()) for p in args.files if p != "-"]

    def to_watch() -> list[str]:
        sources: list[str] = []
        if last_good is not None:
            sources = [str(p) for p in source_paths(last_good.desired) if p.exists()]
        return list(dict.fromkeys([*manifests, *sources]))

    tick = min(args.interval, 1.0)  # how often the loop wakes to see whether the next check is due
    try:
        with CtrlC(stop).installed():
            _survive("loading the manifests", reload, console)
            _survive("apply", converge, console)
            next_at = time.monotonic() + backoff.delay()
            watched = to_watch()
            # soft_wrap: paths are never broken across lines (by rich at 80 columns when not a terminal)
            console.print(f"watching {', '.join(watched)} (drift check every {args.interval:g} s; Ctrl-C to stop)",
                          markup=False, soft_wrap=True)  # fmt: skip
            while not stop.is_set():
                # restarted after each change (an editor's save may replace a watched file) and whenever
                # the set of watched files changes; the first tick of each watcher re-reads the disk
                # (unless backing off), so that an edit made before it started is not missed
                if not backoff.failures:
                    next_at = min(next_at, time.monotonic())
                restart = False
                for changes in watchfiles.watch(
                    *watched, debounce=int(args.debounce * 1000), rust_timeout=max(int(tick * 1000), 1),
                    yield_on_timeout=True, stop_event=stop, raise_interrupt=True,
                ):  # fmt: skip
                    if changes:
                        _survive("loading the manifests", reload, console)
                    elif time.monotonic() < next_at:
                        continue
                    else:
                        _survive("loading the manifests", refresh, console)
                    _survive("apply", converge, console)
                    next_at = time.monotonic() + backoff.delay()
                    now = to_watch()
                    if changes or now != watched:
                        added = [p for p in now if p not in watched]
                        if added:
                            console.print(f"also watching {', '.join(added)}", markup=False, soft_wrap=True)
                        watched, restart = now, True
                        break
                if not restart:
                    break
    except KeyboardInterrupt:  # Stopped from the apply, a second Ctrl-C, or one before the handler
        pass
    console.print("watch stopped")
    return 0
