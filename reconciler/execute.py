"""Execute a plan against a connected ``ClipperConnection``, one action at a time, in order.

Rolling replace of a model: the new version's replicas start, and only once they are connected
(polled with ``get_all_model_replicas``) is the version registered / made current, which moves the
traffic; after a short drain the previous version's replicas stop. The previous version stays
registered, so ``set_model_version`` (or reverting the manifest) rolls back.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Any, Protocol

from reconciler.desired import DesiredState
from reconciler.errors import ReconcilerError
from reconciler.labels import model_labels
from reconciler.observed import AppRecord, ModelRecord
from reconciler.ownership import OwnershipRegistry
from reconciler.plan import Action, Op, Plan

CONNECT_TIMEOUT = 120.0  # seconds for new replicas to connect
STOP_TIMEOUT = 30.0  # seconds for stopped replicas to disconnect (not an error when exceeded)
DRAIN_SECONDS = 1.0  # let queries already sent to the previous version finish before it stops


class Reporter(Protocol):
    def start(self, action: Action) -> None: ...
    def progress(self, action: Action, done: int, total: int) -> None: ...
    def finish(self, action: Action, error: BaseException | None) -> None: ...


class NullReporter:
    def start(self, action: Action) -> None:
        pass

    def progress(self, action: Action, done: int, total: int) -> None:
        pass

    def finish(self, action: Action, error: BaseException | None) -> None:
        pass


def connected_replicas(conn: Any, name: str, version: str) -> int:
    return sum(
        1
        for r in conn.get_all_model_replicas(verbose=True)
        if r["model_name"] == name and str(r["model_version"]) == version
    )


def wait_connected(
    conn: Any, name: str, version: str, want: int, on_progress=None, timeout: float = CONNECT_TIMEOUT
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        have = connected_replicas(conn, name, version)
        if on_progress is not None:
            on_progress(min(have, want), want)
        if have >= want:
            return
        if time.monotonic() >= deadline:
            raise ReconcilerError(
                f"Model {name}:{version}: {have}/{want} replicas connected after {timeout:g} s"
            )
        time.sleep(0.1)


@contextlib.contextmanager
def _register_after_connected(conn: Any, on_progress, on_register=None):
    """Make ``conn.register_model`` (which moves traffic) wait until the new replicas are connected;
    ``on_register(name, version, image)`` runs just before the version is registered."""
    original = conn.register_model

    def register_model(name, version, input_type, image=None, labels=None, batch_size=-1, **kw):
        wait_connected(conn, name, str(version), _want.get((name, str(version)), 0), on_progress)
        if on_register is not None:
            on_register(name, str(version), image)
        return original(name, version, input_type, image=image, labels=labels, batch_size=batch_size, **kw)

    _want: dict[tuple[str, str], int] = {}
    conn.register_model = register_model
    try:
        yield _want
    finally:
        del conn.register_model  # back to the class method


@dataclass
class Executor:
    conn: Any
    desired: DesiredState
    owner: str
    registry: OwnershipRegistry
    git_commit: str | None = None
    reporter: Reporter = NullReporter()  # noqa: RUF009 - stateless

    def run(self, plan: Plan) -> None:
        owners = self.registry.load()
        for action in plan.actions:
            if not action.mutating or action.kind == "Cluster":
                continue
            self.reporter.start(action)
            try:
                getattr(self, f"_{action.kind.lower()}")(action, owners)
            except BaseException as e:
                self.reporter.finish(action, e)
                raise
            self.reporter.finish(action, None)

    # -- models ----------------------------------------------------------------------------------
    def _deploy(self, action: Action) -> None:
        from reconciler.deploy import deploy_version

        m = action.model
        labels = model_labels(self.owner, m.content_hash, self.git_commit, m.labels)

        def record(name: str, version: str, image: str | None) -> None:
            # what this reconciler deployed, in its owner-only registry: the only proof of ownership
            self.registry.record_model(name, version, ModelRecord(self.owner, image or "", m.content_hash))

        progress = lambda d, t: self.reporter.progress(action, d, t)  # noqa: E731
        with _register_after_connected(self.conn, progress, record) as want:
            want[(m.name, m.version)] = m.replicas
            deploy_version(self.conn, m, labels, self.desired.cluster.registry)

    def _stop(self, name: str, versions: tuple[str, ...]) -> None:
        """Stop the replicas of ``versions``; they stay registered (rollback)."""
        if not versions:
            return
        self.conn.cm.stop_models({name: list(versions)})
        # wait (bounded) until the frontend has let go of them, so that the next plan is clean
        deadline = time.monotonic() + STOP_TIMEOUT
        while time.monotonic() < deadline:
            if not any(connected_replicas(self.conn, name, v) for v in versions):
                return
            time.sleep(0.1)

    def _scale(self, action: Action) -> None:
        """Scale a version this reconciler deployed, from the image it recorded (never from the
        store's ``container_name``, which anyone who reaches the management API can choose)."""
        m = action.model
        if not action.image:
            raise ReconcilerError(f"Model/{m.name}: no recorded image for version {m.version}")
        cm = self.conn.cm
        if cm.get_num_replicas(m.name, m.version) > 0:
            # a running replica set is scaled in place (backends start more of the image it runs)
            cm.set_num_replicas(m.name, m.version, m.input_type, action.image, m.replicas)
        else:
            # none running: start the recorded image as the caller's explicit choice (set_num_replicas
            # would take it as learned from the store, and refuse a prebuilt one on Docker/Kubernetes)
            cm.deploy_model(m.name, m.version, m.input_type, action.image, m.replicas)

    def _model(self, action: Action, owners: dict[str, AppRecord]) -> None:
        m = action.model
        if action.op is Op.CREATE:
            self._deploy(action)
        elif action.op is Op.REPLACE:
            if action.version_registered:
                self._scale(action)
                wait_connected(
                    self.conn,
                    m.name,
                    m.version,
                    m.replicas,
                    lambda d, t: self.reporter.progress(action, d, t),
                )
                self.conn.set_model_version(m.name, m.version)
            else:
                self._deploy(action)
            old = tuple(v for v in (action.previous_version, *action.stop_versions) if v and v != m.version)
            if old:
                time.sleep(DRAIN_SECONDS)
                self._stop(m.name, tuple(dict.fromkeys(old)))
        elif action.op is Op.UPDATE:
            if any(c.field == "replicas" for c in action.changes):
                self._scale(action)
                wait_connected(
                    self.conn,
                    m.name,
                    m.version,
                    m.replicas,
                    lambda d, t: self.reporter.progress(action, d, t),
                )
            self._stop(m.name, action.stop_versions)
        elif action.op is Op.DELETE:
            self.conn.stop_models([action.name])

    # -- applications and links ------------------------------------------------------------------
    def _application(self, action: Action, owners: dict[str, AppRecord]) -> None:
        a = action.app
        if action.op in (Op.UPDATE, Op.REPLACE, Op.DELETE):
            self.conn.unregister_application(action.name)
        if action.op is Op.DELETE:
            owners.pop(action.name, None)
        else:
            # record ownership first: an interrupted apply must not orphan the app
            owners[a.name] = AppRecord(self.owner, self.git_commit)
            self.registry.save(owners)
            self.conn.register_application(a.name, a.input_type, a.default_output, a.slo_micros)
        self.registry.save(owners)

    def _link(self, action: Action, owners: dict[str, AppRecord]) -> None:
        for model in action.unlink:
            self.conn.unlink_model_from_app(action.name, model)
        if action.link is not None:
            self.conn.link_model_to_app(action.name, action.link)
