"""Execute a plan on a :class:`reconciler.port.ClusterPort`, one action at a time, in order.

A new model version rolls out in explicit steps: build its image, start its replicas, wait until
they are connected and not reported hung, record it in the ownership registry, register it (which
makes it current and moves the traffic), and after a short drain stop the previous version's
replicas. With a health check (``Model.spec.health``) the version is registered without taking
traffic, must answer a smoke prediction, and only then becomes current. The previous
version stays registered, so ``set_model_version`` (or reverting the manifest) rolls back. When a
step fails the rollout stops there: the new replicas are stopped, the previous version keeps
serving, and the error propagates (the reporter is told which action failed).

``checkpoint`` is called at the executor's safe points (before each action, between the polls of a
wait, between a rollout's analyses): by default :func:`reconciler.interrupt.checkpoint`, which
raises :class:`reconciler.interrupt.Stopped` there after a Ctrl-C of ``watch``, ``apply`` or
``sync``, so that the interruption never lands inside a library call (a lock it holds stays held).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from reconciler.deploy import Artifact, build_version
from reconciler.desired import DesiredApp, DesiredModel, DesiredState
from reconciler.errors import ReconcilerError
from reconciler.interrupt import checkpoint as ctrl_c_checkpoint
from reconciler.labels import model_labels
from reconciler.observed import AppRecord, ModelRecord
from reconciler.ownership import OwnershipRegistry
from reconciler.plan import Action, Op, Plan
from reconciler.port import ClusterPort, Readiness
from reconciler.rollout import (
    POLL_S,
    AppSplit,
    Driver,
    Interrupted,
    RolloutStore,
    new_record,
    promoted,
    routes_to,
)

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


#: Builds a version's image; :func:`reconciler.deploy.build_version` unless a test gives another.
Builder = Callable[[ClusterPort, DesiredModel, str | None], Artifact]


@dataclass
class Executor:
    cluster: ClusterPort
    desired: DesiredState
    owner: str
    registry: OwnershipRegistry
    git_commit: str | None = None
    reporter: Reporter = NullReporter()  # noqa: RUF009 - stateless
    builder: Builder = build_version
    connect_timeout_s: float = CONNECT_TIMEOUT
    stop_timeout_s: float = STOP_TIMEOUT
    drain_s: float = DRAIN_SECONDS
    #: where canary/blueGreen rollouts keep their state (default: the cluster's records)
    rollouts: RolloutStore | None = None
    #: lines about a rollout's steps and analyses (``clipper apply`` prints them)
    note: Callable[[str], None] | None = None
    rollout_poll_s: float = POLL_S
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    #: called at each safe point; raises (:class:`Stopped`) to stop the apply there
    checkpoint: Callable[[], None] = ctrl_c_checkpoint
    _in_rollout: bool = False

    def run(self, plan: Plan) -> None:
        """Execute the mutating actions of ``plan`` in order; starting the cluster (its ``create``)
        is the engine's (:func:`reconciler.engine.apply`), so it is skipped here."""
        owners = self.registry.load()
        for action in plan.actions:
            if not action.mutating or (action.kind == "Cluster" and action.op is not Op.UPDATE):
                continue
            self.checkpoint()
            self.reporter.start(action)
            try:
                if action.kind == "Cluster":
                    # restarts the affected frontends one at a time (the plan's reason says which)
                    self.cluster.reconfigure_cluster(dict(action.settings))
                elif action.kind == "Model":
                    self._model(action)
                elif action.kind == "Application":
                    self._application(action, owners)
                elif action.kind == "Link":
                    self._link(action)
                elif action.kind == "Traffic":
                    self.cluster.set_app_traffic(action.name, action.traffic)
                else:
                    raise ReconcilerError(f"{action.ref}: unknown kind of action")
            except BaseException as e:
                self.reporter.finish(action, e)
                raise
            self.reporter.finish(action, None)

    # -- models ----------------------------------------------------------------------------------
    def _progress(self, action: Action) -> Callable[[int, int], None]:
        def progress(done: int, total: int) -> None:
            self.reporter.progress(action, done, total)
            self.checkpoint()  # called between the polls of a wait

        return progress

    def _sleep(self, seconds: float) -> None:
        self.checkpoint()
        self.sleep(seconds)

    def _wait(self, action: Action, m: DesiredModel) -> None:
        self.cluster.wait_replicas(
            m.name,
            m.version,
            m.replicas,
            Readiness.HEALTHY,
            timeout_s=self.connect_timeout_s,
            on_progress=self._progress(action),
        )

    def _smoke(self, m: DesiredModel) -> None:
        """The health gate (``Model.spec.health``): a smoke prediction on the version before it
        takes traffic."""
        if m.health is not None and m.replicas > 0:
            self.cluster.smoke_predict(
                m.name, m.version, m.input_type, m.health.input, m.health.timeout_seconds
            )

    def _roll_out(self, action: Action, m: DesiredModel) -> None:
        """A version that is not registered: build, start, wait, record, register (moves traffic)."""
        artifact = self.builder(self.cluster, m, self.desired.cluster.registry)
        self.cluster.start_replicas(
            m.name, m.version, m.input_type, artifact.image, m.replicas, artifact.min_start_timeout_s
        )
        try:
            self._wait(action, m)
            # what this reconciler deployed, in its owner-only registry: the only proof of
            # ownership; recorded before registering, so that an interrupted apply orphans nothing
            self.registry.record_model(
                m.name, m.version, ModelRecord(self.owner, artifact.image, m.content_hash)
            )
            labels = model_labels(self.owner, m.content_hash, self.git_commit, m.labels)
            # with a health check or a progressive rollout and a version serving, register without
            # moving the traffic, smoke-test, then move it; a model's first version has no traffic
            progressive = self._progressive(action, m)
            gated = progressive or (
                m.health is not None and m.replicas > 0 and action.previous_version is not None
            )
            self.cluster.register_version(
                m.name, m.version, m.input_type, artifact.image, labels, m.batch_size, not gated
            )
            self._smoke(m)
            if progressive:
                assert action.previous_version is not None
                self._drive(action, m, action.previous_version)
            elif gated:
                self.cluster.set_current_version(m.name, m.version)
            if not progressive and action.previous_version:
                self._follow(m.name, action.previous_version, m.version)
        except BaseException as e:
            self._stop_after_failure(m, e)
            raise

    def _progressive(self, action: Action, m: DesiredModel) -> bool:
        return m.rollout.strategy != "immediate" and m.replicas > 0 and action.previous_version is not None

    def _store(self) -> RolloutStore:
        return self.rollouts if self.rollouts is not None else RolloutStore(None, self.cluster)

    def _drive(self, action: Action, m: DesiredModel, previous: str, resume: bool = False) -> None:
        """A canary or blueGreen rollout of the registered (not current) ``m.version``
        (:mod:`reconciler.rollout`): new, or resumed from its record."""
        from reconciler.lock import who

        store = self._store()
        record = store.get(m.name) if resume else None
        if record is None:
            splits = []
            for app, setting, slo in routes_to(self.cluster.observe(), m.name, previous):
                d = self.desired.apps.get(app)
                sticky = d.traffic.sticky_key if d is not None and d.traffic is not None else None
                splits.append(AppSplit(app, None if setting is None else setting.to_dict(), slo, sticky))
            record = new_record(m.name, previous, m.version, m.rollout, splits, who())
            store.take_command(m.name)  # a command left for an earlier rollout does not apply
        else:
            self._note(
                f"{m.name}: resuming the {record.strategy} rollout of {m.version} at step {record.step + 1}"
            )
        self._in_rollout = True  # from here on, an interruption leaves the rollout in progress
        Driver(
            self.cluster, store, record, self._note,
            lambda weight: self.reporter.progress(action, int(weight), 100),
            self.clock, self._sleep, self.rollout_poll_s,
        ).run()  # fmt: skip
        self._in_rollout = False

    def _note(self, line: str) -> None:
        if self.note is not None:
            self.note(line)

    def _follow(self, name: str, old: str, new: str) -> None:
        """After ``name``'s current version changed from ``old`` to ``new``: apps whose traffic
        configuration names ``old`` get ``new`` in its place (before ``old``'s replicas stop)."""
        for app, setting, _ in routes_to(self.cluster.observe(), name, old):
            if setting is not None:
                self.cluster.set_app_traffic(app, promoted(setting, name, old, new))

    def _stop_after_failure(self, m: DesiredModel, error: BaseException) -> None:
        """Stop the replicas a failed rollout started (their version is not registered, or not
        current); not those of a canary left in progress (traffic still goes to them)."""
        if isinstance(error, Interrupted) or (isinstance(error, KeyboardInterrupt) and self._in_rollout):
            return
        try:
            self.cluster.stop_replicas(m.name, (m.version,), self.stop_timeout_s)
        except Exception as e:  # the rollout's own error is the one to report
            error.add_note(f"stopping the new replicas of {m.name}:{m.version} failed too: {e}")

    def _scale(self, action: Action, m: DesiredModel) -> None:
        """Scale a version this reconciler deployed, from the image it recorded (never from the
        store's ``container_name``, which anyone who reaches the management API can choose)."""
        if not action.image:
            raise ReconcilerError(f"Model/{m.name}: no recorded image for version {m.version}")
        if self.cluster.running_replicas(m.name, m.version) > 0:
            self.cluster.scale_replicas(m.name, m.version, m.input_type, action.image, m.replicas)
        else:
            self.cluster.start_replicas(m.name, m.version, m.input_type, action.image, m.replicas)
        self._wait(action, m)

    def _stop(self, name: str, versions: tuple[str, ...]) -> None:
        """Stop the replicas of ``versions``; they stay registered (rollback)."""
        if versions:
            self.cluster.stop_replicas(name, versions, self.stop_timeout_s)

    def _model(self, action: Action) -> None:
        if action.op is Op.DELETE:
            self.cluster.delete_model(action.name)
            return
        m = action.model
        if m is None:
            raise ReconcilerError(f"{action.ref}: the plan carries no desired model")
        if action.op is Op.CREATE:
            self._roll_out(action, m)
        elif action.op is Op.REPLACE:
            if action.version_registered:
                record = self._store().get(m.name) if self._progressive(action, m) else None
                resume = (
                    record is not None and record.active and record.to_version == m.version
                    and record.from_version == action.previous_version
                )  # fmt: skip
                # back to the version the last rollout replaced (it served everything): at once
                back = record is not None and not record.active and record.from_version == m.version
                progressive = self._progressive(action, m) and not back
                try:
                    self._scale(action, m)
                    self._smoke(m)
                    if progressive:
                        assert action.previous_version is not None
                        self._drive(action, m, action.previous_version, resume=resume)
                except BaseException as e:
                    self._stop_after_failure(m, e)
                    raise
                if not progressive:
                    self.cluster.set_current_version(m.name, m.version)
                    if action.previous_version:
                        self._follow(m.name, action.previous_version, m.version)
            else:
                self._roll_out(action, m)
            old = tuple(v for v in (action.previous_version, *action.stop_versions) if v and v != m.version)
            if old:
                time.sleep(self.drain_s)
                self._stop(m.name, tuple(dict.fromkeys(old)))
        elif action.op is Op.UPDATE:
            if any(c.field == "replicas" for c in action.changes):
                self._scale(action, m)
            self._stop(m.name, action.stop_versions)

    # -- applications and links ------------------------------------------------------------------
    def _application(self, action: Action, owners: dict[str, AppRecord]) -> None:
        if action.op in (Op.REPLACE, Op.DELETE):
            self.cluster.unregister_application(action.name)
        if action.op is Op.DELETE:
            owners.pop(action.name, None)
        else:
            a: DesiredApp | None = action.app
            if a is None:
                raise ReconcilerError(f"{action.ref}: the plan carries no desired application")
            # record ownership first: an interrupted apply must not orphan the app
            owners[a.name] = AppRecord(self.owner, self.git_commit)
            self.registry.save(owners)
            if action.op is Op.UPDATE:  # default output / SLO in place: the app keeps serving
                self.cluster.update_application(a.name, a.default_output, a.slo_micros)
            else:
                self.cluster.register_application(a.name, a.input_type, a.default_output, a.slo_micros)
        self.registry.save(owners)

    def _link(self, action: Action) -> None:
        for model in action.unlink:
            self.cluster.unlink(action.name, model)
        if action.link is not None:
            self.cluster.link(action.name, action.link)
