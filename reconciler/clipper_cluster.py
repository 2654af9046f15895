""":class:`ClusterPort` over ``ClipperConnection``: the one place the reconciler touches ``clipper_admin``.

Most steps are public ``ClipperConnection`` methods. Three have no public method, because the
original API only offers them combined with registration or unregistration, and a rollout needs them
apart: starting replicas of a version that is not registered yet, scaling a version to an explicit
image, stopping replicas while their version stays registered (for rollback). Those go to the
connection's container manager, here and nowhere else.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, cast

import requests

from clipper_admin.exceptions import ClipperException, ClipperHTTPError
from reconciler.errors import ReconcilerError
from reconciler.observed import Observed, RunningSettings, TrafficReport, TrafficSetting, from_listings
from reconciler.port import ModelBuild, Progress, Readiness

if TYPE_CHECKING:
    from clipper_admin import ClipperConnection

POLL_S = 0.1
MAX_RECORDS_PER_REQUEST = 10_000  # the management frontend's limit on get_records' keys
SMOKE_POLL_S = 0.2
SMOKE_MIN_WAIT_S = 5.0  # the query frontend(s) learn a new app and version within a reload
HEALTH_APP_PREFIX = "clipper-health-"
HEALTH_DEFAULT = "__clipper_health_check_default__"


class ClipperCluster:
    """A :class:`reconciler.port.ClusterPort` backed by a (not yet connected) ``ClipperConnection``."""

    def __init__(self, conn: ClipperConnection) -> None:
        self.conn = conn
        # set by stop_cluster: the lease and records lived in the stopped cluster's store and went
        # with it, so renewing or releasing the lease afterwards asks nobody (and warns nobody)
        self.stopped = False

    # -- lifecycle -------------------------------------------------------------------------------
    def connect(self) -> None:
        self.stopped = False
        self.conn.connect()  # type: ignore[no-untyped-call]  # the original's untyped signature
        self.cluster_settings()  # a manifest's new admin token: the running one until it is changed

    def start_cluster(self, cache_size_bytes: int, frontend_replicas: int) -> None:
        self.stopped = False
        self.conn.start_clipper(  # type: ignore[no-untyped-call]  # the original's untyped signature
            cache_size=cache_size_bytes, num_frontend_replicas=frontend_replicas
        )

    def stop_cluster(self) -> None:
        self.conn.stop_all()  # type: ignore[no-untyped-call]  # the original's untyped signature
        self.stopped = True

    def cluster_settings(self) -> RunningSettings | None:
        cm = self.conn.cm
        read = getattr(cm, "running_settings", None)
        if read is None:  # a manager that cannot report its settings (see README)
            return None
        values = dict(read())
        running = values.get("admin_token")
        if values.get("admin_auth") == "token" and running and running != cm.admin_token:
            cm.admin_token = running  # the plan reports the change; until it is made, this one works
        return RunningSettings(values, frozenset(getattr(cm, "RECONFIGURABLE", ())))

    def reconfigure_cluster(self, changes: Mapping[str, object]) -> None:
        change = getattr(self.conn.cm, "apply_settings", None)
        if change is None:
            raise ReconcilerError(
                f"the {type(self.conn.cm).__name__} cannot change a running cluster's settings: "
                "delete the cluster and apply again"
            )
        change(dict(changes))

    # -- observation -----------------------------------------------------------------------------
    def observe(self) -> Observed:
        apps = self.conn.get_all_apps(verbose=True)
        traffic = self._all_app_traffic([a["name"] for a in apps])
        return from_listings(
            apps,
            self.conn.get_all_models(verbose=True),
            self.conn.get_all_model_replicas(verbose=True),
            traffic=traffic,
        )

    def _all_app_traffic(self, names: list[str]) -> dict[str, TrafficSetting | None]:
        """Every application's traffic configuration in one request; one per application from a
        management frontend of an earlier release (which answers 404 to ``get_all_app_traffic``)."""
        try:
            configs = self.conn._admin.post_json("get_all_app_traffic", {})
        except ClipperHTTPError as e:
            if e.status != 404:
                raise
            return {name: self.get_app_traffic(name).setting for name in names}
        if not isinstance(configs, dict):
            raise ReconcilerError(
                f"the management frontend answered get_all_app_traffic with {configs!r:.200}"
            )
        # an application added since the listing has no entry: observed on the next pass
        return {n: None if configs.get(n) is None else TrafficSetting.from_dict(configs[n]) for n in names}

    def replica_count(self, name: str, version: str, readiness: Readiness) -> int:
        return sum(
            1
            for r in self.conn.get_all_model_replicas(verbose=True)
            if r["model_name"] == name
            and str(r["model_version"]) == version
            and (readiness is Readiness.CONNECTED or r.get("healthy", True))
        )

    def running_replicas(self, name: str, version: str) -> int:
        return cast(int, self.conn.cm.get_num_replicas(name, version))

    # -- model versions --------------------------------------------------------------------------
    def build_model(self, build: ModelBuild) -> str:
        image = self.conn.build_model(  # type: ignore[no-untyped-call]
            build.name, build.version, build.model_dir, build.base_image, build.registry,
            list(build.packages) or None,
        )  # fmt: skip
        return cast(str, image)

    def start_replicas(
        self,
        name: str,
        version: str,
        input_type: str,
        image: str,
        count: int,
        min_start_timeout_s: float | None = None,
    ) -> None:
        with self._start_timeout(min_start_timeout_s):
            self.conn.cm.deploy_model(
                name=name, version=version, input_type=input_type, image=image, num_replicas=count
            )

    @contextlib.contextmanager
    def _start_timeout(self, minimum: float | None) -> Iterator[None]:
        if minimum is None:
            yield
            return
        from clipper_admin.deployers.pyspark import patient_replica_wait

        with patient_replica_wait(self.conn, minimum):
            yield

    def scale_replicas(self, name: str, version: str, input_type: str, image: str, count: int) -> None:
        self.conn.cm.set_num_replicas(name, version, input_type, image, count)

    def wait_replicas(
        self,
        name: str,
        version: str,
        want: int,
        readiness: Readiness = Readiness.CONNECTED,
        timeout_s: float = 120.0,
        on_progress: Progress | None = None,
    ) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            have = self.replica_count(name, version, readiness)
            if on_progress is not None:
                on_progress(min(have, want), want)
            if have >= want:
                return
            if time.monotonic() >= deadline:
                raise ReconcilerError(
                    f"Model {name}:{version}: {have}/{want} replicas {readiness.value} after {timeout_s:g} s"
                )
            time.sleep(POLL_S)

    def register_version(
        self,
        name: str,
        version: str,
        input_type: str,
        image: str,
        labels: Sequence[str],
        batch_size: int,
        make_current: bool = True,
    ) -> None:
        if make_current:
            self.conn.register_model(
                name, version, input_type, image=image, labels=list(labels), batch_size=batch_size
            )
            return
        # the original's register_model always makes the version current; the management API's
        # add_model takes "make_current": false (this implementation's extension)
        self.conn._admin.post(
            "add_model",
            {
                "model_name": name, "model_version": version, "labels": list(labels),
                "input_type": input_type, "container_name": image, "model_data_path": "DEPRECATED",
                "batch_size": batch_size, "make_current": False,
            },
        )  # fmt: skip

    def smoke_predict(
        self, name: str, version: str, input_type: str, sample: list[int | float] | str, timeout_s: float
    ) -> None:
        """Through a private application linked to ``name`` for the duration of the check (created and
        removed here), with the predict request's ``version`` field: apps serving users never see it."""
        if isinstance(sample, list) and input_type in ("doubles", "floats"):
            # a sample read back from JSON (a custom resource: the API server writes 1.0 as 1) holds
            # ints, which the query frontend refuses for these input types
            sample = [float(v) for v in sample]
        app = f"{HEALTH_APP_PREFIX}{name}"[:63]
        if app in self.conn.get_all_apps():  # a leftover of an interrupted check
            self.conn.unregister_application(app)
        slo_micros = max(1, int(timeout_s * 1_000_000))
        self.conn.register_application(app, input_type, HEALTH_DEFAULT, slo_micros)
        try:
            self.conn.link_model_to_app(app, name)
            problem = self._smoke(app, version, sample, timeout_s)
        finally:
            with contextlib.suppress(ClipperException, OSError):
                self.conn.unregister_application(app)
        if problem is not None:
            tail = self._log_tail(name, version)
            raise ReconcilerError(
                f"Model {name}:{version}: health check failed: {problem}"
                + (f"\nlast lines of its replica's log:\n{tail}" if tail else "")
            )

    def _smoke(self, app: str, version: str, sample: list[int | float] | str, timeout_s: float) -> str | None:
        """None once the version answers ``sample`` without error; else what it answered last. Waits
        (up to ``timeout_s``, at least a few seconds) for the query frontend(s) to learn the app."""
        url = f"http://{self.conn.get_query_addr()}/{app}/predict"
        deadline = time.monotonic() + max(timeout_s, SMOKE_MIN_WAIT_S)
        problem = "no answer"
        while time.monotonic() < deadline:
            try:
                r = requests.post(url, json={"input": sample, "version": version}, timeout=timeout_s + 1)
            except requests.RequestException as e:
                problem = f"query frontend unreachable: {e}"
            else:
                body = r.json() if r.headers.get("content-type", "").startswith("application/json") else None
                if r.status_code == 200 and isinstance(body, dict) and body.get("default") is False:
                    return None
                if r.status_code == 200 and isinstance(body, dict):
                    problem = f"it answered with the default output: {body.get('default_explanation')}"
                else:
                    problem = f"HTTP {r.status_code}: {r.text.strip()[:500]}"
                    if r.status_code == 400 and "Json error" in r.text:
                        return problem  # the sample does not fit the input type: retrying cannot help
            time.sleep(SMOKE_POLL_S)
        return problem

    def _log_tail(self, name: str, version: str, lines: int = 20) -> str:
        """The last lines of one replica's log of ``name:version``, where the backend keeps logs."""
        try:
            with tempfile.TemporaryDirectory() as d:
                paths = self.conn.get_clipper_logs(d)
                mine = sorted(p for p in paths if f"{name}-{version}" in Path(p).name)
                if not mine:
                    return ""
                return "\n".join(Path(mine[-1]).read_text(errors="replace").splitlines()[-lines:])
        except Exception:  # noqa: BLE001 - the tail only decorates the health check's error
            return ""

    def set_current_version(self, name: str, version: str) -> None:
        self.conn.set_model_version(name, version)

    def stop_replicas(self, name: str, versions: Sequence[str], timeout_s: float = 30.0) -> None:
        if not versions:
            return
        self.conn.cm.stop_models({name: list(versions)})
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not any(self.replica_count(name, v, Readiness.CONNECTED) for v in versions):
                return
            time.sleep(POLL_S)

    def delete_model(self, name: str) -> None:
        self.conn.stop_models([name])

    # -- applications and links ------------------------------------------------------------------
    def register_application(self, name: str, input_type: str, default_output: str, slo_micros: int) -> None:
        self.conn.register_application(name, input_type, default_output, slo_micros)

    def update_application(self, name: str, default_output: str, slo_micros: int) -> None:
        self.conn.update_application(name, default_output, slo_micros)

    def unregister_application(self, name: str) -> None:
        self.conn.unregister_application(name)

    def link(self, app: str, model: str) -> None:
        self.conn.link_model_to_app(app, model)

    def unlink(self, app: str, model: str) -> None:
        self.conn.unlink_model_from_app(app, model)

    def set_app_traffic(self, app: str, setting: TrafficSetting | None) -> None:
        if setting is None:
            self.conn.clear_app_traffic(app)
            return
        self.conn._admin.post_json("set_app_traffic", {"name": app, **setting.to_dict()})

    def get_app_traffic(self, app: str) -> TrafficReport:
        return TrafficReport.from_report(self.conn.get_app_traffic(app))

    def remove_versions(self, name: str, versions: Sequence[str]) -> None:
        images = {
            str(m["model_version"]): str(m.get("container_name", ""))
            for m in self.conn.get_all_models(verbose=True)
            if m["model_name"] == name and str(m["model_version"]) in versions and not m["is_current_version"]
        }
        if not images:
            return
        self.conn.stop_versioned_models({name: sorted(images)})
        remove = getattr(self.conn.cm, "remove_model_image", None)
        if remove is not None:
            for image in images.values():
                if image:
                    remove(image)

    # -- the reconciler's own state in the cluster (lease and records) ----------------------------
    def shared_state(self) -> bool:
        admin = self.conn._admin
        try:  # no Authorization header: a protected management API answers 401
            r = requests.post(admin.url("get_record"), data=b"{}", timeout=admin.timeout)
        except requests.exceptions.RequestException:
            return False
        return r.status_code == 401

    def acquire_lease(self, name: str, holder: str, ttl_s: float) -> str:
        body = {"name": name, "holder": holder, "ttl_ms": max(1, int(ttl_s * 1000))}
        return str(self.conn._admin.post_json("acquire_lease", body)["holder"])

    def renew_lease(self, name: str, holder: str, ttl_s: float) -> bool:
        if self.stopped:  # the lease went with the cluster: nothing to lose
            return True
        body = {"name": name, "holder": holder, "ttl_ms": max(1, int(ttl_s * 1000))}
        return bool(self.conn._admin.post_json("renew_lease", body)["renewed"])

    def release_lease(self, name: str, holder: str) -> bool:
        if self.stopped:  # released with the cluster
            return True
        return bool(self.conn._admin.post_json("release_lease", {"name": name, "holder": holder})["released"])

    def get_record(self, namespace: str, key: str) -> str | None:
        value = self.conn._admin.post_json("get_record", {"namespace": namespace, "key": key})["value"]
        return None if value is None else str(value)

    def get_records(self, namespace: str, keys: Sequence[str]) -> dict[str, str | None]:
        out: dict[str, str | None] = {}
        for i in range(0, len(keys), MAX_RECORDS_PER_REQUEST):
            chunk = list(keys[i : i + MAX_RECORDS_PER_REQUEST])
            try:
                values = self.conn._admin.post_json("get_records", {"namespace": namespace, "keys": chunk})[
                    "values"
                ]
            except ClipperHTTPError as e:
                if e.status != 404:  # a management frontend of an earlier release: one key at a time
                    raise
                values = {key: self.get_record(namespace, key) for key in chunk}
            out.update((key, None if values.get(key) is None else str(values[key])) for key in chunk)
        return out

    def put_record(self, namespace: str, key: str, value: str | None) -> None:
        self.conn._admin.post("put_record", {"namespace": namespace, "key": key, "value": value})
