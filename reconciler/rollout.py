"""Progressive delivery of a model's new version: canary steps and blue-green, with analysis.

A new version of a Model whose ``spec.rollout.strategy`` is ``canary`` or ``blueGreen`` is started next
to the current one and registered *aside* (not current). Then every application that routes to the
current version (linked to the model without a traffic configuration, or with a target on that
version) is given a traffic configuration that sends each step's ``weight`` percent of that share
to the new version (``/admin/set_app_traffic``; the app's other targets, its sticky key and its shadow
stay; a selection policy is suspended while the weights are the canary's). During a step the
new version's per-target statistics (counted by the query frontends since the configuration took
effect) are read about once a second and compared with ``spec.rollout.analysis``:

* a threshold exceeded (once ``minRequests`` requests were counted) rolls back at once: every app gets
  its configuration from before the rollout back, the new version's replicas stop (it stays
  registered, not current), the rollout's record says why, and the apply fails with that reason;
* the step passes once its ``pause`` has elapsed and ``minRequests`` were counted; a step without
  ``minRequests`` after ``stepTimeoutSeconds`` rolls back (no traffic is no evidence).

After the last step the version is *promoted*: it becomes current (``set_model_version``), each app
gets its configuration from before with the new version in the place of the old one (a plain app is
plain again: its configuration is cleared), and the executor stops the previous version's replicas.
blueGreen is the same with one step of weight 100: all traffic at once after the health gate, the
previous version's replicas kept until the step's analysis passed.

The rollout's state is a record in the reconciler's store (:class:`RolloutStore`, beside the ownership
records and the history): ``clipper rollout status`` reads it; ``clipper rollout promote|abort`` write a
*command* record that the apply driving the rollout reads at its next poll, or, when no apply holds the
cluster's lease, act on the cluster themselves from the record (:func:`finish`). An interrupted apply
leaves the record ``Progressing``: the next ``clipper apply`` (or ``clipper watch``) resumes at its step.
A version that was rolled back or aborted is not tried again by the plan (a warning says so) until the
manifests name another version or ``clipper rollout retry`` forgets the record.
"""

from __future__ import annotations

import datetime
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from reconciler.errors import ReconcilerError
from reconciler.observed import Observed, TargetStats, TrafficSetting
from reconciler.ownership import RecordStore, write_owner_only
from reconciler.port import ClusterPort
from schemas.model import CanaryStep, Rollout, RolloutAnalysis

NAMESPACE = "reconciler"
#: seconds between two reads of the statistics (the query frontends write them about once a second)
POLL_S = 1.0

PROGRESSING = "Progressing"
SUCCEEDED = "Succeeded"
ROLLED_BACK = "RolledBack"
ABORTED = "Aborted"
PROMOTE = "promote"
ABORT = "abort"


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class AppSplit:
    """An application the rollout splits: its configuration before the rollout (``None``: plain)."""

    app: str
    before: dict[str, Any] | None
    slo_micros: int
    sticky_key: str | None = None

    def before_setting(self) -> TrafficSetting | None:
        return None if self.before is None else TrafficSetting.from_dict(self.before)


@dataclass
class RolloutRecord:
    model: str
    from_version: str
    to_version: str
    strategy: str
    steps: list[dict[str, float]]  # [{"weight", "pause"}]
    analysis: dict[str, Any]  # RolloutAnalysis, snake_case
    apps: list[AppSplit]
    phase: str = PROGRESSING
    step: int = 0  # index into steps
    weight: float = 0.0  # percent now sent to the new version
    reason: str | None = None
    started: str = field(default_factory=now)
    updated: str = field(default_factory=now)
    step_started: str | None = None
    #: the analysis of the current (or last) step: requests, defaults, errors, rates, p99 ratio
    numbers: dict[str, Any] = field(default_factory=dict)
    who: str | None = None

    @property
    def active(self) -> bool:
        return self.phase == PROGRESSING

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @staticmethod
    def from_json(text: str) -> RolloutRecord:
        d = json.loads(text)
        d["apps"] = [AppSplit(**a) for a in d.get("apps", [])]
        return RolloutRecord(**d)

    def summary(self) -> dict[str, Any]:
        """What ``clipper rollout status --output json`` prints."""
        d = asdict(self)
        d["apps"] = [a["app"] for a in d["apps"]]
        return d


class RolloutStore:
    """Rollout records (``rollout/<model>``) and commands (``rollout-command/<model>``) in ``store``
    (the cluster's, when it keeps the reconciler's records) else in ``<cluster dir>/reconciler/``.

    The management frontend's dashboard (``clipper/management_frontend/dashboard/app.py``,
    ``ROLLOUTS_NAMESPACE``) reads these records and writes the same command records for its promote
    and abort buttons without importing this module (layering): a change to the keys, to
    :class:`RolloutRecord`'s fields or to the command's JSON must be made there too
    (``tests/unit/test_dashboard.py`` writes records with this module and reads them through the
    dashboard)."""

    def __init__(self, cluster_dir: Path | None, store: RecordStore | None) -> None:
        self.dir = None if cluster_dir is None else cluster_dir / "reconciler"
        self.store = store
        if store is None and cluster_dir is None:
            raise ValueError("a rollout store needs the cluster's store or a cluster directory")

    def _get(self, key: str) -> str | None:
        if self.store is not None:
            return self.store.get_record(NAMESPACE, key)
        assert self.dir is not None
        try:
            return (self.dir / (key.replace("/", "-") + ".json")).read_text()
        except FileNotFoundError:
            return None

    def _put(self, key: str, value: str | None) -> None:
        if self.store is not None:
            self.store.put_record(NAMESPACE, key, value)
            return
        assert self.dir is not None
        path = self.dir / (key.replace("/", "-") + ".json")
        if value is None:
            path.unlink(missing_ok=True)
        else:
            write_owner_only(path, value)

    def get(self, model: str) -> RolloutRecord | None:
        text = self._get(f"rollout/{model}")
        return None if text is None else self._parse(model, text)

    @staticmethod
    def _parse(model: str, text: str) -> RolloutRecord:
        try:
            return RolloutRecord.from_json(text)
        except (ValueError, TypeError, KeyError) as e:
            raise OSError(f"cannot read the rollout record of {model}: {e}") from e

    def put(self, record: RolloutRecord) -> None:
        record.updated = now()
        self._put(f"rollout/{record.model}", record.to_json())

    def forget(self, model: str) -> None:
        self._put(f"rollout/{model}", None)
        self._put(f"rollout-command/{model}", None)

    def request(self, model: str, command: str, who: str) -> None:
        self._put(f"rollout-command/{model}", json.dumps({"command": command, "who": who, "time": now()}))

    def take_command(self, model: str) -> tuple[str, str] | None:
        """The pending ``(command, who)`` for ``model``, removed; ``None`` when there is none."""
        text = self._get(f"rollout-command/{model}")
        if text is None:
            return None
        self._put(f"rollout-command/{model}", None)
        try:
            d = json.loads(text)
            return str(d["command"]), str(d.get("who") or "?")
        except (ValueError, KeyError, TypeError):
            return None

    def all(self, models: list[str]) -> dict[str, RolloutRecord]:
        """The rollout records of ``models`` that have one; from the cluster's store in one request."""
        if self.store is None:
            texts = {m: self._get(f"rollout/{m}") for m in models}
        else:
            found = self.store.get_records(NAMESPACE, [f"rollout/{m}" for m in models])
            texts = {m: found.get(f"rollout/{m}") for m in models}
        return {m: self._parse(m, text) for m, text in texts.items() if text is not None}


# -- traffic transformations (pure) -------------------------------------------------------------
def split(
    before: TrafficSetting | None, model: str, old: str, new: str, weight: float, sticky_key: str | None
) -> TrafficSetting:
    """The configuration of one step: ``weight`` percent of the share of ``model:old`` goes to
    ``model:new``. Other targets, the sticky key and the shadow stay; a selection policy is suspended
    (it would ignore the weights); a shadow on the new version is dropped (it is now a target)."""
    base = before.targets if before is not None else ((model, old, 1.0),)
    targets: list[tuple[str, str, float]] = []
    for m, v, w in base:
        if (m, v) == (model, old):
            if weight < 100:
                targets.append((m, old, w * (100 - weight) / 100))
            targets.append((m, new, w * weight / 100))
        elif (m, v) != (model, new):
            targets.append((m, v, w))
    shadow = before.shadow if before is not None else None
    if shadow is not None and (shadow[0], shadow[1]) == (model, new):
        shadow = None
    sticky = (before.sticky_key if before is not None else None) or sticky_key
    return TrafficSetting(tuple(targets), sticky, shadow, None)


def promoted(before: TrafficSetting | None, model: str, old: str, new: str) -> TrafficSetting | None:
    """The configuration after a promotion: ``model:new`` in the place of ``model:old`` (``None``, a
    plain app, stays plain: it follows the current version)."""
    if before is None:
        return None
    targets: list[tuple[str, str, float]] = []
    for m, v, w in before.targets:
        key = (m, new) if (m, v) == (model, old) else (m, v)
        same = [i for i, t in enumerate(targets) if (t[0], t[1]) == key]
        if same:
            i = same[0]
            targets[i] = (key[0], key[1], targets[i][2] + w)
        else:
            targets.append((key[0], key[1], w))
    shadow = before.shadow
    if shadow is not None and (shadow[0], shadow[1]) == (model, new):
        shadow = None
    return TrafficSetting(tuple(targets), before.sticky_key, shadow, before.selection)


def routes_to(obs: Observed, model: str, version: str) -> list[tuple[str, TrafficSetting | None, int]]:
    """``(app, its traffic configuration, SLO)`` of every app that sends requests to ``model:version``."""
    out: list[tuple[str, TrafficSetting | None, int]] = []
    cur = obs.current(model)
    for name in sorted(obs.apps):
        a = obs.apps[name]
        if a.traffic is None:
            if model in a.linked and cur is not None and cur.version == version:
                out.append((name, None, a.slo_micros))
        elif any((m, v) == (model, version) for m, v, _ in a.traffic.targets):
            out.append((name, a.traffic, a.slo_micros))
    return out


# -- analysis (pure) ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Verdict:
    state: str  # "wait" | "pass" | "fail"
    reason: str
    numbers: dict[str, Any]


def analyse(
    per_app: list[tuple[TargetStats, int]], analysis: RolloutAnalysis, elapsed_s: float, pause_s: float
) -> Verdict:
    """Judge one step from the new version's statistics in each app (``(stats, app SLO micros)``)."""
    requests = sum(s.requests for s, _ in per_app)
    defaults = sum(s.defaults for s, _ in per_app)
    errors = sum(s.errors for s, _ in per_app)
    ratios = [
        s.p99_latency_micros / slo for s, slo in per_app if s.requests and s.p99_latency_micros is not None
    ]
    ratio = max(ratios) if ratios else None
    numbers: dict[str, Any] = {
        "requests": requests,
        "defaults": defaults,
        "errors": errors,
        "defaultRate": defaults / requests if requests else None,
        "errorRate": errors / requests if requests else None,
        "p99LatencyRatio": None if ratio is None or math.isinf(ratio) else ratio,
        "elapsedSeconds": round(elapsed_s, 1),
    }
    if requests < analysis.min_requests:
        if elapsed_s >= analysis.step_timeout_seconds:
            return Verdict("fail", f"only {requests} request(s) reached the new version in "
                           f"{elapsed_s:.0f} s (minRequests {analysis.min_requests})", numbers)  # fmt: skip
        return Verdict("wait", f"{requests}/{analysis.min_requests} requests", numbers)
    checks = (
        ("error rate", errors / requests, analysis.max_error_rate, "maxErrorRate"),
        ("default rate", defaults / requests, analysis.max_default_rate, "maxDefaultRate"),
        ("p99 latency / objective", ratio, analysis.max_p99_latency_ratio, "maxP99LatencyRatio"),
    )
    for what, value, limit, name in checks:
        if limit is not None and value is not None and value > limit:
            return Verdict("fail", f"{what} {value:.3g} > {name} {limit:g} ({errors} error(s), {defaults} "
                           f"default(s) in {requests} request(s))", numbers)  # fmt: skip
    if elapsed_s < pause_s:
        return Verdict("wait", f"pause {elapsed_s:.0f}/{pause_s:g} s", numbers)
    return Verdict("pass", "analysis passed", numbers)


def new_record(
    model: str, old: str, new: str, rollout: Rollout, apps: list[AppSplit], who: str | None
) -> RolloutRecord:
    return RolloutRecord(
        model=model,
        from_version=old,
        to_version=new,
        strategy=rollout.strategy,
        steps=[{"weight": s.weight, "pause": s.pause} for s in rollout.effective_steps()],
        analysis=rollout.analysis.model_dump(),
        apps=apps,
        who=who,
    )


# -- driving a rollout on the cluster ----------------------------------------------------------
class RolledBack(ReconcilerError):
    """The rollout rolled back (analysis) or was aborted; the message says why."""


class Interrupted(ReconcilerError):
    """The rollout stopped halfway and is left in progress (split traffic, both versions running)."""


@dataclass
class Driver:
    cluster: ClusterPort
    store: RolloutStore
    record: RolloutRecord
    note: Callable[[str], None] = lambda line: None
    progress: Callable[[float], None] = lambda weight: None
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    poll_s: float = POLL_S

    def _set(self, weight: float) -> None:
        r = self.record
        for a in r.apps:
            self.cluster.set_app_traffic(
                a.app, split(a.before_setting(), r.model, r.from_version, r.to_version, weight, a.sticky_key)
            )

    def run(self) -> None:
        """Walk the steps from the record's; promote, or roll back and raise :class:`RolledBack`.

        An error of the cluster on the way (say, the management API restarting) rolls back too; when
        even that fails, or on Ctrl-C, the rollout is left as it is (its record ``Progressing``, the
        split in place, both versions running) and :class:`Interrupted` is raised: the next
        ``clipper apply``/``watch`` resumes it, ``clipper rollout abort`` rolls it back."""
        try:
            self._walk()
        except RolledBack:
            raise
        except Exception as e:
            try:
                self.roll_back(ROLLED_BACK, f"the rollout failed: {e}")
            except RolledBack:
                raise
            except Exception as again:
                raise Interrupted(
                    f"Model/{self.record.model}: the rollout of {self.record.to_version} failed ({e}) and "
                    f"could not be rolled back ({again}); it is left in progress: clipper apply resumes "
                    "it, clipper rollout abort rolls it back"
                ) from e
        except KeyboardInterrupt:
            self.note(
                f"{self.record.model}: the rollout of {self.record.to_version} is left in progress: clipper "
                "apply (or watch) resumes it, clipper rollout abort rolls it back"
            )
            raise

    def _walk(self) -> None:
        r = self.record
        analysis = RolloutAnalysis.model_validate(r.analysis)
        steps = [CanaryStep.model_validate(s) for s in r.steps]
        if not r.apps:
            self.note(f"{r.model}: no application routes to {r.from_version}: nothing to analyse, promoting")
            steps = []
        while r.step < len(steps):
            step = steps[r.step]
            r.weight = step.weight
            r.step_started, r.numbers = now(), {}
            self._set(step.weight)
            self.store.put(r)
            self.progress(step.weight)
            self.note(f"{r.model}: step {r.step + 1}/{len(steps)}: {step.weight:g}% to {r.to_version}"
                      + (f", pause {step.pause:g} s" if step.pause else ""))  # fmt: skip
            start = self.clock()
            while True:
                command = self.store.take_command(r.model)
                if command is not None and command[0] == ABORT:
                    self.roll_back(ABORTED, f"aborted by {command[1]} (clipper rollout abort)")
                if command is not None and command[0] == PROMOTE:
                    self.note(f"{r.model}: promoted by {command[1]} (clipper rollout promote)")
                    r.step = len(steps)
                    break
                verdict = analyse(self._stats(), analysis, self.clock() - start, step.pause)
                if verdict.numbers != r.numbers:
                    r.numbers = verdict.numbers
                    self.store.put(r)
                if verdict.state == "fail":
                    self.roll_back(ROLLED_BACK, f"step {r.step + 1} ({step.weight:g}%): {verdict.reason}")
                if verdict.state == "pass":
                    self.note(f"{r.model}: step {r.step + 1} passed ({verdict.numbers['requests']} requests, "
                              f"error rate {_pct(verdict.numbers['errorRate'])})")  # fmt: skip
                    r.step += 1
                    break
                self.sleep(self.poll_s)
        self.promote()

    def _stats(self) -> list[tuple[TargetStats, int]]:
        r = self.record
        key = f"{r.model}:{r.to_version}"
        return [
            (self.cluster.get_app_traffic(a.app).stats.get(key, TargetStats()), a.slo_micros) for a in r.apps
        ]

    def promote(self) -> None:
        """The new version becomes current; each app gets its configuration back with it in the old
        one's place. (The executor then stops the previous version's replicas.)"""
        r = self.record
        self.cluster.set_current_version(r.model, r.to_version)
        for a in r.apps:
            self.cluster.set_app_traffic(
                a.app, promoted(a.before_setting(), r.model, r.from_version, r.to_version)
            )
        r.phase, r.weight, r.reason = SUCCEEDED, 100.0, None
        self.store.put(r)
        self.progress(100.0)

    def roll_back(self, phase: str, reason: str) -> None:
        """Every app back to its configuration from before, the new replicas stopped; raises."""
        r = self.record
        for a in r.apps:
            self.cluster.set_app_traffic(a.app, a.before_setting())
        r.phase, r.reason, r.weight = phase, reason, 0.0
        self.store.put(r)
        self.cluster.stop_replicas(r.model, (r.to_version,))
        raise RolledBack(
            f"Model/{r.model}: the {r.strategy} rollout of version {r.to_version} was "
            f"{'aborted' if phase == ABORTED else 'rolled back'}: {reason}; {r.from_version} serves"
        )


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def finish(cluster: ClusterPort, store: RolloutStore, record: RolloutRecord, command: str, who: str) -> str:
    """``clipper rollout promote|abort`` when no apply drives the rollout: act from the record.
    Returns what was done."""
    driver = Driver(cluster, store, record)
    if command == ABORT:
        try:
            driver.roll_back(ABORTED, f"aborted by {who} (clipper rollout abort)")
        except RolledBack as e:
            return str(e)
    driver.promote()
    cluster.stop_replicas(record.model, (record.from_version,))
    return (
        f"Model/{record.model}: version {record.to_version} promoted by {who}; {record.from_version} stopped"
    )
