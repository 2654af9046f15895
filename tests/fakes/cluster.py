"""An in-memory :class:`reconciler.port.ClusterPort` for unit tests of the executor and the engine.

It keeps the state a management frontend and a container manager would (apps, links, registered
versions, the current version, running and connected replicas), refuses what the management API
refuses with the same structured exceptions, records every call in :attr:`FakeCluster.calls` (for
ordering assertions), and fails on demand (:meth:`FakeCluster.fail`, :attr:`FakeCluster.never_connect`,
:attr:`FakeCluster.broken`).
Replicas start and connect at once; a wait that cannot succeed fails at once instead of sleeping.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from clipper_admin.exceptions import AlreadyExists, ClipperException, ClipperHTTPError, NotFound
from reconciler.errors import ReconcilerError
from reconciler.observed import (
    Observed,
    ObservedApp,
    ObservedVersion,
    RunningSettings,
    TargetStats,
    TrafficReport,
    TrafficSetting,
)
from reconciler.port import ModelBuild, Progress, Readiness


@dataclass
class Version:
    input_type: str
    image: str
    labels: tuple[str, ...]
    batch_size: int


@dataclass
class App:
    input_type: str
    default_output: str
    slo_micros: int
    linked: list[str] = field(default_factory=list)


class FakeCluster:
    def __init__(self, running: bool = True) -> None:
        self.running = running
        self.connected = False
        self.apps: dict[str, App] = {}
        self.versions: dict[tuple[str, str], Version] = {}
        self.current: dict[str, str] = {}
        self.replicas: dict[tuple[str, str], int] = {}  # running (and, unless never_connect, connected)
        self.unhealthy: dict[tuple[str, str], int] = {}
        self.never_connect: set[tuple[str, str]] = set()
        self.broken: set[tuple[str, str]] = set()  # versions whose smoke prediction fails
        self.smoked: list[tuple[str, str, list[int | float] | str]] = []
        self.built: list[ModelBuild] = []
        self.calls: list[tuple[str, ...]] = []
        self._failures: dict[str, BaseException] = {}
        #: the running settings (``None``: not reported, like Docker/Kubernetes) and what can change
        self.settings: dict[str, object] | None = None
        self.reconfigurable: frozenset[str] = frozenset()
        #: the reconciler's lease and records (not in :attr:`calls`); ``protected``: the admin API needs the token
        self.protected = True
        self.leases: dict[str, tuple[str, float]] = {}  # name -> (holder, expiry on :attr:`clock`)
        self.records: dict[tuple[str, str], str] = {}
        self.clock = time.monotonic
        #: traffic configurations by app, and the statistics :meth:`get_app_traffic` reports:
        #: ``stats(app, setting) -> {"model:version": TargetStats}`` (default: none counted)
        self.traffic: dict[str, TrafficSetting] = {}
        self.stats: Callable[[str, TrafficSetting], dict[str, TargetStats]] = lambda app, setting: {}
        self.traffic_history: list[tuple[str, TrafficSetting | None]] = []

    # -- test helpers ----------------------------------------------------------------------------
    def fail(self, call: str, error: BaseException) -> None:
        """The next call whose :attr:`calls` entry starts with ``call`` (e.g. ``"register_version m"``)
        raises ``error``."""
        self._failures[call] = error

    def _call(self, *entry: str) -> None:
        self.calls.append(entry)
        text = " ".join(entry)
        for key in list(self._failures):
            if text == key or text.startswith(key + " "):
                raise self._failures.pop(key)

    def add_version(self, name: str, version: str, replicas: int = 1, image: str = "img", input_type: str = "doubles",
                    labels: tuple[str, ...] = (), current: bool = True) -> None:  # fmt: skip
        """A version registered (and running) before the test: not a call."""
        self.versions[(name, version)] = Version(input_type, image, labels, -1)
        self.replicas[(name, version)] = replicas
        if current or name not in self.current:
            self.current[name] = version

    def serving(self, name: str) -> tuple[str | None, int]:
        """The current version of ``name`` and its connected replicas: what answers queries."""
        v = self.current.get(name)
        return v, (self.replica_count(name, v, Readiness.CONNECTED) if v else 0)

    def _require_running(self) -> None:
        if not self.running or not self.connected:
            raise ClipperException("No connection to Clipper cluster (fake)")

    # -- lifecycle -------------------------------------------------------------------------------
    def connect(self) -> None:
        self._call("connect")
        if not self.running:
            raise ClipperException("Cluster fake does not exist")
        self.connected = True

    def start_cluster(self, cache_size_bytes: int, frontend_replicas: int) -> None:
        self._call("start_cluster")
        self.running = self.connected = True

    def stop_cluster(self) -> None:
        self._call("stop_cluster")
        self.running = self.connected = False
        self.apps.clear()
        self.versions.clear()
        self.current.clear()
        self.replicas.clear()

    def cluster_settings(self) -> RunningSettings | None:
        self._require_running()
        return None if self.settings is None else RunningSettings(dict(self.settings), self.reconfigurable)

    def reconfigure_cluster(self, changes: Mapping[str, object]) -> None:
        self._require_running()
        self._call("reconfigure_cluster", *sorted(changes))
        if self.settings is None or set(changes) - self.reconfigurable:
            raise ReconcilerError(f"cannot change {sorted(changes)} (fake)")
        self.settings.update(changes)

    # -- observation -----------------------------------------------------------------------------
    def observe(self) -> Observed:
        self._require_running()
        obs = Observed(running=True)
        for name, a in self.apps.items():
            obs.apps[name] = ObservedApp(
                name, a.input_type, a.default_output, a.slo_micros, tuple(a.linked), self.traffic.get(name)
            )
        for (name, version), v in self.versions.items():
            obs.models.setdefault(name, {})[version] = ObservedVersion(
                name, version, v.input_type, v.labels, v.image, self.current.get(name) == version,
                self.replica_count(name, version, Readiness.HEALTHY),
            )  # fmt: skip
        return obs

    def replica_count(self, name: str, version: str, readiness: Readiness) -> int:
        key = (name, version)
        if key in self.never_connect:
            return 0
        n = self.replicas.get(key, 0)
        return n - self.unhealthy.get(key, 0) if readiness is Readiness.HEALTHY else n

    def running_replicas(self, name: str, version: str) -> int:
        return self.replicas.get((name, version), 0)

    # -- model versions --------------------------------------------------------------------------
    def build_model(self, build: ModelBuild) -> str:
        self._call("build_model", build.name, build.version)
        self.built.append(build)
        return f"built/{build.name}:{build.version}"

    def start_replicas(self, name: str, version: str, input_type: str, image: str, count: int,
                       min_start_timeout_s: float | None = None) -> None:  # fmt: skip
        self._call("start_replicas", name, version, str(count))
        self._require_running()
        self.replicas[(name, version)] = count

    def scale_replicas(self, name: str, version: str, input_type: str, image: str, count: int) -> None:
        self._call("scale_replicas", name, version, str(count))
        self._require_running()
        if not self.replicas.get((name, version)):
            raise ClipperException(f"no running replicas of {name}:{version} to scale")
        self.replicas[(name, version)] = count

    def wait_replicas(self, name: str, version: str, want: int, readiness: Readiness = Readiness.CONNECTED,
                      timeout_s: float = 120.0, on_progress: Progress | None = None) -> None:  # fmt: skip
        self._call("wait_replicas", name, version, str(want))
        have = self.replica_count(name, version, readiness)
        if on_progress is not None:
            on_progress(min(have, want), want)
        if have < want:
            raise ReconcilerError(
                f"Model {name}:{version}: {have}/{want} replicas {readiness.value} after {timeout_s:g} s"
            )

    def register_version(self, name: str, version: str, input_type: str, image: str, labels: Sequence[str],
                         batch_size: int, make_current: bool = True) -> None:  # fmt: skip
        self._call("register_version", name, version, *(() if make_current else ("not-current",)))
        self._require_running()
        if (name, version) in self.versions:
            raise AlreadyExists(f"model with name '{name}' and version '{version}' already exists")
        self.versions[(name, version)] = Version(input_type, image, tuple(labels), batch_size)
        if make_current:
            self.current[name] = version

    def smoke_predict(self, name: str, version: str, input_type: str, sample: list[int | float] | str,
                      timeout_s: float) -> None:  # fmt: skip
        """Answers when ``name:version`` is registered and has a healthy replica, unless
        :attr:`broken` holds it (then it fails like a model whose predict raises)."""
        self._call("smoke_predict", name, version)
        self.smoked.append((name, version, sample))
        if (name, version) not in self.versions:
            raise ReconcilerError(f"Model {name}:{version}: health check: version not registered")
        if self.replica_count(name, version, Readiness.HEALTHY) == 0:
            raise ReconcilerError(f"Model {name}:{version}: health check: no healthy replica")
        if (name, version) in self.broken:
            raise ReconcilerError(
                f"Model {name}:{version}: health check failed: ValueError: broken model\nlog tail: Traceback ..."
            )

    def set_current_version(self, name: str, version: str) -> None:
        self._call("set_current_version", name, version)
        if (name, version) not in self.versions:
            raise ClipperHTTPError(f"Cannot set non-existent version '{version}' for model '{name}'", 400)
        self.current[name] = version

    def stop_replicas(self, name: str, versions: Sequence[str], timeout_s: float = 30.0) -> None:
        self._call("stop_replicas", name, *versions)
        for v in versions:
            self.replicas.pop((name, v), None)

    def delete_model(self, name: str) -> None:
        self._call("delete_model", name)
        for key in [k for k in self.versions if k[0] == name]:
            self.versions.pop(key)
            self.replicas.pop(key, None)
        self.current.pop(name, None)

    # -- applications and links ------------------------------------------------------------------
    def register_application(self, name: str, input_type: str, default_output: str, slo_micros: int) -> None:
        self._call("register_application", name)
        if name in self.apps:
            raise ClipperHTTPError(f"application '{name}' already exists", 400)
        self.apps[name] = App(input_type, default_output, slo_micros)

    def update_application(self, name: str, default_output: str, slo_micros: int) -> None:
        self._call("update_application", name)
        app = self.apps.get(name)
        if app is None:
            raise ClipperHTTPError(f"Application '{name}' does not exist", 400)
        app.default_output, app.slo_micros = default_output, slo_micros

    def unregister_application(self, name: str) -> None:
        self._call("unregister_application", name)
        if name not in self.apps:
            raise ClipperHTTPError(f"Application '{name}' does not exist", 400)
        del self.apps[name]
        self.traffic.pop(name, None)

    def link(self, app: str, model: str) -> None:
        self._call("link", app, model)
        if app not in self.apps:
            raise ClipperHTTPError(f"No app with name '{app}' exists.", 400)
        if model not in self.current:
            raise NotFound(f"No model with name '{model}' exists.")
        self.apps[app].linked = [model]

    def unlink(self, app: str, model: str) -> None:
        self._call("unlink", app, model)
        if app not in self.apps or model not in self.apps[app].linked:
            raise ClipperHTTPError(f"Model '{model}' is not linked to app '{app}'", 400)
        self.apps[app].linked.remove(model)

    def set_app_traffic(self, app: str, setting: TrafficSetting | None) -> None:
        self._require_running()
        self._call(
            "set_app_traffic", app, *(f"{m}:{v}={w:g}" for m, v, w in (setting.targets if setting else ()))
        )
        if app not in self.apps:
            raise ClipperHTTPError(f"application {app!r} does not exist; register it first", 400)
        if setting is not None:
            for m, v, _ in (*setting.targets, *((setting.shadow,) if setting.shadow else ())):
                if (m, v) not in self.versions:
                    raise ClipperHTTPError(f"model {m!r} has no version {v!r}", 400)
            self.traffic[app] = setting
        else:
            self.traffic.pop(app, None)
        self.traffic_history.append((app, setting))

    def get_app_traffic(self, app: str) -> TrafficReport:
        self._require_running()
        if app not in self.apps:
            raise ClipperHTTPError(f"application {app!r} does not exist", 400)
        setting = self.traffic.get(app)
        return TrafficReport(setting, dict(self.stats(app, setting)) if setting else {})

    def remove_versions(self, name: str, versions: Sequence[str]) -> None:
        self._call("remove_versions", name, *versions)
        for v in versions:
            if self.current.get(name) == v:
                raise ClipperHTTPError(f"{name}:{v} is the current version", 400)
            self.versions.pop((name, v), None)
            self.replicas.pop((name, v), None)

    # -- the reconciler's lease and records --------------------------------------------------------
    def shared_state(self) -> bool:
        self._require_running()
        return self.protected

    def acquire_lease(self, name: str, holder: str, ttl_s: float) -> str:
        self._require_running()
        now = self.clock()
        current = self.leases.get(name)
        if current is not None and current[0] != holder and current[1] > now:
            return current[0]
        self.leases[name] = (holder, now + ttl_s)
        return holder

    def renew_lease(self, name: str, holder: str, ttl_s: float) -> bool:
        current = self.leases.get(name)
        if current is None or current[0] != holder or current[1] <= self.clock():
            return False
        self.leases[name] = (holder, self.clock() + ttl_s)
        return True

    def release_lease(self, name: str, holder: str) -> bool:
        if self.leases.get(name, ("", 0.0))[0] != holder:
            return False
        del self.leases[name]
        return True

    def get_record(self, namespace: str, key: str) -> str | None:
        self._require_running()
        return self.records.get((namespace, key))

    def get_records(self, namespace: str, keys: Sequence[str]) -> dict[str, str | None]:
        self._require_running()
        return {k: self.records.get((namespace, k)) for k in keys}

    def put_record(self, namespace: str, key: str, value: str | None) -> None:
        self._require_running()
        if value is None:
            self.records.pop((namespace, key), None)
        else:
            self.records[(namespace, key)] = value
