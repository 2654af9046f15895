"""``clipper sync``: pull manifests from a git repository and apply them, on every new commit and
every ``--interval`` (drift repair), with the same load/plan/apply as ``clipper apply``
(:mod:`reconciler.engine`).

One attempt: fetch the ref's tip (:class:`reconciler.gitsource.GitSource`), verify its signature
when asked to, check it out into a work tree of its own, load the manifests in ``--path``, apply
them and wait until every object is converged and healthy (as ``clipper apply --wait``). Then the
revision is *synced*: it is the last good one. When any step fails (a fetch, a refused signature,
invalid manifests, a failed apply such as a model failing its health gate) the revision is not
synced and the reason is reported (console, status file, webhook, metrics); the cluster keeps what
it had: the executor never lets a failed version take traffic, and while the tip cannot be loaded
at all, drift repair applies the last good revision's manifests (from its own work tree).

Failed attempts back off as in ``clipper watch`` (``--interval`` doubled per failure in a row, at
most ``--max-backoff``); a new commit on the ref is tried at once, the backoff notwithstanding (the
loop looks for one every ``--interval``).

What is recorded: the apply history of the cluster (:mod:`reconciler.history`, the revision is the
commit's first 12 hex digits, as the labels on what the apply creates), and ``status.json`` in the
state directory (see :func:`Syncer.status_doc`; documented in the README). The webhook and the
metrics are in :mod:`reconciler.notify`.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import logging
import os
import re
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reconciler.errors import ManifestErrors, ReconcilerError
from reconciler.exitcodes import EXIT_ERROR, EXIT_OK
from reconciler.gitsource import Credentials, GitSource, default_state_dir
from reconciler.history import now
from reconciler.interrupt import CtrlC
from reconciler.notify import SyncMetrics, Webhook
from reconciler.ownership import write_owner_only
from reconciler.watch import DEFAULT_MAX_BACKOFF, Backoff, LineReporter

if TYPE_CHECKING:
    from rich.console import Console

    from reconciler.engine import Target
    from reconciler.status import ObjectStatus

log = logging.getLogger(__name__)

#: version of ``status.json``'s format
STATUS_FORMAT = 1
SYNCED, OUT_OF_SYNC, UNKNOWN = "Synced", "OutOfSync", "Unknown"
#: health, best first: the loop's health is its worst object's
HEALTH_ORDER = ("Healthy", "Progressing", "Degraded", "Missing", "Unknown")


def short(sha: str | None) -> str | None:
    """A commit as the reconciler records it (labels, history): its first 12 hex digits."""
    return sha[:12] if sha else None


@dataclass
class SyncState:
    """Where the loop stands; what ``status.json`` and the webhook say."""

    sync: str = UNKNOWN  # Synced: the ref's tip is applied and converged; OutOfSync: it is not
    health: str = "Unknown"  # the worst health of the objects in force
    revision: str | None = None  # the last good (synced) commit
    target_revision: str | None = None  # the ref's tip at the last fetch
    message: str = ""
    failures: int = 0  # failed attempts in a row
    last_attempt: str | None = None
    last_success: str | None = None
    cluster: str | None = None
    objects: list[ObjectStatus] = field(default_factory=list)


@contextlib.contextmanager
def state_lock(state_dir: Path) -> Iterator[None]:
    """One ``clipper sync`` per state directory: a second one fails at once, naming the first."""
    fd = os.open(state_dir / "sync.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise ReconcilerError(f"another clipper sync (pid {holder}) uses {state_dir}; stop it first, "
                                  "or give this one another --state-dir") from None  # fmt: skip
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)


class Syncer:
    """The loop of ``clipper sync`` (see the module's docstring)."""

    def __init__(self, args: argparse.Namespace, source: GitSource, console: Console,
                 webhook: Webhook | None = None, metrics: SyncMetrics | None = None,
                 stop: threading.Event | None = None) -> None:  # fmt: skip
        self.args, self.source, self.console = args, source, console
        self.webhook, self.metrics = webhook, metrics or SyncMetrics()
        self.stop = stop or threading.Event()
        self.keys = [Path(p) for p in (args.gpg_keyring or [])] if args.verify_signatures else []
        self.name = args.name or source.state_dir.name
        self.state = SyncState()
        self.backoff = Backoff(args.interval, getattr(args, "max_backoff", DEFAULT_MAX_BACKOFF))
        self._targets: dict[str, Target] = {}  # loaded manifests per commit (the tip's, the last good)
        self._notified: dict[str, tuple[Any, ...]] = {}
        self._verified: set[str] = set()  # commits whose signature this process checked

    # -- one attempt -----------------------------------------------------------------------------

    def attempt(self) -> bool:
        """Fetch, verify, load, apply, wait; True when the ref's tip is synced."""
        started = time.monotonic()
        self.metrics.runs.inc()
        ok = False
        try:
            ok = self._attempt()
        except Exception as e:  # never ends the loop: reported like any failed attempt
            log.debug("sync attempt failed", exc_info=True)
            self._fail(f"{type(e).__name__}: {e}")
            self._report(None)
        finally:
            self.metrics.duration.observe(time.monotonic() - started)
            if not ok:
                self.metrics.failures.inc()
        return ok

    def _attempt(self) -> bool:
        st = self.state
        st.last_attempt = now()
        try:
            head = self.source.fetch()
        except ReconcilerError as e:
            self._fail(f"cannot fetch {self.source.ref}: {e}")
            self._report(self._last_good())
            return False
        if head != st.target_revision:
            self._say(f"{self.source.ref} is at {short(head)}")
        st.target_revision = head
        try:
            self._verify(head)
            target = self._load(head)
            self._forget(keep={head})
        except Exception as e:  # not loadable: ReconcilerError (ManifestErrors, GitSourceError), OSError ...
            keeping = f"keeping {short(st.revision)}" if st.revision else "nothing synced yet"
            self._fail(f"revision {short(head)} not applied: {_one_line(e)} ({keeping})")
            self._repair_last_good()
            self._report(self._last_good())
            return False
        st.cluster = target.desired.cluster_name
        try:
            self._apply(target, head)
        except Exception as e:
            keeping = f"; {short(st.revision)} stays in force" if st.revision and st.revision != head else ""
            self._fail(f"revision {short(head)} failed to apply: {_one_line(e)}{keeping}")
            self._report(target)
            return False
        first = st.revision != head
        st.revision, st.sync, st.last_success = head, SYNCED, now()
        st.message = f"synced {self.source.ref} at {short(head)}"
        failures = self.backoff.succeeded()
        st.failures = 0
        self.metrics.last_success.set_to_current_time()
        self.metrics.revision.info({"revision": head, "ref": self.source.ref})
        if first or failures:
            self._say(st.message + (f" after {failures} failure(s) in a row" if failures else ""))
        self._report(target)
        return True

    def _verify(self, sha: str) -> None:
        """With ``--verify-signatures``: refuse ``sha`` unless signed by a trusted key (once per commit)."""
        if self.keys and sha not in self._verified:
            signer = self.source.verify(sha, self.keys)
            log.info("revision %s is signed by %s", short(sha), signer)
            self._verified.add(sha)

    def _load(self, sha: str) -> Target:
        from reconciler.engine import load_target

        if sha not in self._targets:
            where = self.source.checkout(sha)
            try:
                self._targets[sha] = load_target([str(where)])
            except ManifestErrors as e:  # located relative to the repository, not the private work tree
                root = f"{self.source.tree_for(sha).resolve()}/"
                raise ReconcilerError(
                    "invalid manifests: " + "; ".join(str(p).replace(root, "") for p in e.problems)
                ) from e
        return self._targets[sha]

    def _forget(self, keep: set[str]) -> None:
        """Drop the loaded manifests and work trees of every commit but ``keep`` and the last good."""
        keep = keep | ({self.state.revision} if self.state.revision else set())
        for sha in [s for s in self._targets if s not in keep]:
            del self._targets[sha]
        self.source.keep_only(keep)

    def _last_good(self) -> Target | None:
        """The last good revision's manifests (loaded again from its work tree after a restart)."""
        sha = self.state.revision
        if sha is None:
            return None
        if sha not in self._targets:
            try:  # an earlier run's (status.json), verified as any revision when signatures are checked
                self._verify(sha)
                return self._load(sha)
            except ReconcilerError as e:
                log.warning("sync: cannot load the last good revision %s: %s", short(sha), e)
                return None
        return self._targets[sha]

    def resume(self) -> None:
        """Take the last good revision from the status file an earlier run left in the state directory."""
        try:
            doc = json.loads((self.source.state_dir / "status.json").read_text())
        except (OSError, ValueError):
            return
        same = (doc.get("repo"), doc.get("ref"), doc.get("path")) == (
            self.source.url, self.source.ref, str(self.source.path))  # fmt: skip
        revision = doc.get("revision")
        if same and isinstance(revision, str) and re.fullmatch(r"[0-9a-f]{40}|[0-9a-f]{64}", revision):
            self.state.revision, self.state.last_success = revision, doc.get("lastSuccess")

    def _apply(self, t: Target, sha: str) -> None:
        from reconciler.engine import apply, pending, wait_converged

        a = self.args
        owner = a.owner or t.desired.cluster_name
        apply(t, owner, a.prune, a.lock_timeout, LineReporter(self.console), revision=short(sha),
              on_lock_wait=lambda p: self._say(f"waiting for another apply ({p}) ..."))  # fmt: skip
        left = pending(wait_converged(t, owner, a.prune, a.timeout))
        if left:
            raise ReconcilerError(f"applied, but not converged after {a.timeout:g} s: {'; '.join(left)}")

    def _repair_last_good(self) -> None:
        """While the tip cannot be used, keep the last good revision's manifests in force."""
        last = self._last_good()
        if last is None or self.state.revision is None:
            return
        try:
            self._apply(last, self.state.revision)
        except Exception as e:
            self.state.message += (
                f"; repairing drift with {short(self.state.revision)} failed: {_one_line(e)}"
            )

    def _fail(self, message: str) -> None:
        st = self.state
        st.sync = OUT_OF_SYNC if st.target_revision else UNKNOWN
        st.message = message
        delay = self.backoff.failed()
        st.failures = self.backoff.failures
        if not self.args.once:
            at = time.strftime("%H:%M:%S", time.localtime(time.time() + delay))
            self._say(f"sync failed: {message}; retrying in {delay:g} s (at {at}; {st.failures} failure(s) "
                      "in a row) or at the next commit")  # fmt: skip
        else:
            self._say(f"sync failed: {message}")

    # -- reporting -------------------------------------------------------------------------------

    def _say(self, line: str) -> None:
        self.console.print(
            f"{time.strftime('%H:%M:%S')} {line}", markup=False, highlight=False, soft_wrap=True
        )

    def _observe(self, t: Target | None) -> list[ObjectStatus]:
        """Sync and health of every object of the manifests in force, as ``clipper status`` has them."""
        if t is None:
            return []
        from reconciler.engine import plan_for
        from reconciler.gitinfo import git_commit
        from reconciler.status import statuses

        try:
            plan, obs = plan_for(t, self.args.owner or t.desired.cluster_name, self.args.prune)
            return statuses(t.desired, obs, plan, git_commit(t.files))
        except Exception as e:
            log.warning("sync: cannot observe the cluster for its status: %s", e)
            return []

    def _report(self, t: Target | None) -> None:
        """Status file, metrics and webhook after an attempt."""
        st = self.state
        st.objects = self._observe(t)
        healths = [o.health.value for o in st.objects]
        st.health = max(healths, key=HEALTH_ORDER.index) if healths else "Unknown"
        self.metrics.out_of_sync.set(sum(1 for o in st.objects if o.sync.value != SYNCED))
        try:
            write_owner_only(
                self.source.state_dir / "status.json", json.dumps(self.status_doc(), indent=2) + "\n"
            )
        except OSError as e:
            log.warning("sync: cannot write its status file: %s", e)
        for event in self._changes():
            if self.webhook is not None:
                self.webhook.send(event)

    def _event(self, obj: str, sync: str, health: str, message: str) -> dict[str, Any]:
        st = self.state
        return {"object": obj, "cluster": st.cluster, "sync": sync, "health": health,
                "revision": short(st.revision), "targetRevision": short(st.target_revision),
                "message": message, "repo": self.source.url, "ref": self.source.ref,
                "path": str(self.source.path), "time": now()}  # fmt: skip

    def _changes(self) -> list[dict[str, Any]]:
        """One event per object whose sync or health changed since the last report; the loop itself
        is the object ``Sync/<name>`` (also when the revision it is synced to or the tip moves)."""
        st = self.state
        events = []
        key: tuple[Any, ...] = (st.sync, st.health, st.revision, st.target_revision)
        if self._notified.get("") != key:
            self._notified[""] = key
            events.append(self._event(f"Sync/{self.name}", st.sync, st.health, st.message))
        for o in st.objects:
            ref = f"{o.kind}/{o.name}"
            if self._notified.get(ref) != (o.sync.value, o.health.value):
                self._notified[ref] = (o.sync.value, o.health.value)
                events.append(self._event(ref, o.sync.value, o.health.value, o.reason))
        return events

    def status_doc(self) -> dict[str, Any]:
        """``status.json``: where the loop stands and the status of each object in force."""
        st = self.state
        return {"formatVersion": STATUS_FORMAT, "name": self.name, "repo": self.source.url,
                "ref": self.source.ref, "path": str(self.source.path), "cluster": st.cluster,
                "sync": st.sync, "health": st.health, "revision": st.revision,
                "targetRevision": st.target_revision, "message": st.message,
                "failures": st.failures, "lastAttempt": st.last_attempt, "lastSuccess": st.last_success,
                "objects": [o.to_json() for o in st.objects]}  # fmt: skip

    # -- the loop --------------------------------------------------------------------------------

    def run(self) -> int:
        if self.args.once:
            return EXIT_OK if self.attempt() else EXIT_ERROR
        interval = self.args.interval
        next_at = time.monotonic()
        while not self.stop.is_set():
            if time.monotonic() >= next_at or self._new_commit():
                self.attempt()
                next_at = time.monotonic() + self.backoff.delay()
            self.stop.wait(max(0.0, min(interval, next_at - time.monotonic())))
        return EXIT_OK

    def _new_commit(self) -> bool:
        """While backing off: has the ref moved since the failed attempt? (a fetch, nothing else)"""
        if not self.backoff.failures:
            return False
        try:
            return self.source.fetch() != self.state.target_revision
        except ReconcilerError:
            return False


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())


def source_for(args: argparse.Namespace) -> GitSource:
    from clipper_admin.local.state import clipper_home

    creds = Credentials(
        token_file=Path(args.token_file) if args.token_file else None, token_env=args.token_env,
        username=args.username, ssh_key=Path(args.ssh_key) if args.ssh_key else None,
        known_hosts=Path(args.known_hosts) if args.known_hosts else None,
    )  # fmt: skip
    if args.token_file and args.token_env:
        raise ReconcilerError("give the token with --token-file or --token-env, not both")
    if args.verify_signatures and not args.gpg_keyring:
        raise ReconcilerError("--verify-signatures needs the trusted keys: --gpg-keyring FILE or DIR")
    if args.gpg_keyring and not args.verify_signatures:
        raise ReconcilerError("--gpg-keyring is used with --verify-signatures only")
    for k in args.gpg_keyring or []:
        if not Path(k).exists():
            raise ReconcilerError(f"--gpg-keyring {k} does not exist")
    state = Path(args.state_dir) if args.state_dir else default_state_dir(clipper_home(), args.repo, args.ref,
                                                                            args.path)  # fmt: skip
    return GitSource(args.repo, args.ref, args.path, state, creds, args.git_timeout)


def run_sync(args: argparse.Namespace, console: Console, stop: threading.Event | None = None,
             on_ready: Callable[[Syncer], None] | None = None) -> int:  # fmt: skip
    """``clipper sync``: set up the source, webhook and metrics, then loop (or attempt once)."""
    source = source_for(args)
    stop = stop or threading.Event()
    webhook = Webhook(args.notify, args.notify_timeout) if args.notify else None
    metrics = SyncMetrics()
    with state_lock(source.state_dir), contextlib.ExitStack() as cleanup:
        if webhook is not None:
            cleanup.callback(webhook.close)
        if args.metrics_port is not None:
            host, port = metrics.serve(args.metrics_address, args.metrics_port)
            cleanup.callback(metrics.close)
            console.print(f"metrics on http://{host}:{port}/metrics", markup=False, highlight=False)
        syncer = Syncer(args, source, console, webhook, metrics, stop)
        syncer.resume()
        if threading.current_thread() is threading.main_thread():
            previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
            cleanup.callback(signal.signal, signal.SIGTERM, previous)
        how = "once" if args.once else f"every {args.interval:g} s (Ctrl-C to stop)"
        console.print(f"syncing {source.url} {source.ref} {source.path} {how}; state in {source.state_dir}",
                      markup=False, highlight=False, soft_wrap=True)  # fmt: skip
        if on_ready is not None:
            on_ready(syncer)
        # Ctrl-C stops an apply in progress at its next safe point (reconciler.interrupt)
        cleanup.enter_context(CtrlC(stop).installed())
        if args.once:  # Ctrl-C is 130, as for every command
            return syncer.run()
        try:
            code = syncer.run()
        except KeyboardInterrupt:
            code = EXIT_OK
        console.print("sync stopped", markup=False)
        return code
