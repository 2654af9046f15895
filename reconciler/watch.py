"""``clipper watch``: apply on manifest changes (debounced) and re-observe every ``--interval`` seconds.

An invalid edit is reported and the last valid manifests stay in force (they are also the ones
drift repair applies). Ctrl-C exits cleanly (exit 0). Nothing else ends the watch: any error while
loading, applying or printing (a render error included) is logged and the next event or interval
tries again. Text from the user or the cluster is never parsed as rich markup.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

from rich.markup import escape

from reconciler.errors import ManifestErrors, ReconcilerError

log = logging.getLogger("reconciler.watch")


def _survive(what: str, step: Callable[[], None], console) -> None:
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


def watch(args, apply_once, console, stop: threading.Event | None = None) -> int:
    import watchfiles

    from reconciler.engine import load_target

    stop = stop or threading.Event()
    last_good = None

    def reload() -> None:
        nonlocal last_good
        try:
            last_good = load_target(args.files)
            console.print("manifests loaded")
        except ManifestErrors as e:
            console.print(
                f"[bold red]invalid manifests[/bold red] ({len(e.problems)} problem(s)); keeping the last good ones"
            )
            for p in e.problems:
                console.print(f"  {p}", markup=False, highlight=False)
        except ReconcilerError as e:
            console.print(f"[bold red]error:[/bold red] {escape(str(e))}", highlight=False)

    def converge() -> None:
        if last_good is None:
            return
        try:
            plan = apply_once(last_good, args)
            if plan.has_changes:
                console.print(f"applied {len(plan.changes)} change(s)")
        except Exception as e:  # keep watching: the next event or interval retries
            console.print(f"[bold red]apply failed:[/bold red] {escape(str(e))}", highlight=False)

    _survive("loading the manifests", reload, console)
    _survive("apply", converge, console)
    paths = [p for p in args.files if p != "-"]
    watched = [str(Path(p).resolve()) for p in paths]
    console.print(
        f"watching {', '.join(watched)} (drift check every {args.interval:g} s; Ctrl-C to stop)", markup=False
    )
    try:
        for changes in watchfiles.watch(
            *watched, debounce=int(args.debounce * 1000), rust_timeout=int(args.interval * 1000),
            yield_on_timeout=True, stop_event=stop, raise_interrupt=False,
        ):  # fmt: skip
            if changes:
                _survive("loading the manifests", reload, console)
            _survive("apply", converge, console)
    except KeyboardInterrupt:
        pass
    console.print("watch stopped")
    return 0
