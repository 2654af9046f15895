"""The /admin route logic as plain functions: request body bytes -> :class:`Reply`.

Validation order, texts and status codes are the original's (``docs/wire-protocol.md``); fixes: an
unknown ``input_type`` is a 400 (the original sent nothing), ``delete_app`` also drops the app's links,
a store failure is a 500 carrying the original's "Error ... Redis" text.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, NamedTuple

import orjson

from clipper.config_store.base import AppRecord, ConfigStore, ContainerRecord, ModelRecord
from clipper.datatypes import parse_input_type
from clipper.management_frontend import jsonbody as jb
from clipper.management_frontend import messages as msg
from clipper.management_frontend import reconciler_state as rs
from clipper.management_frontend import traffic as tr

log = logging.getLogger(__name__)

JSON_CT = "application/json"  # the original's Content-Type for every reply, plain text included
DEFAULT_BATCH_SIZE = -1
PROHIBITED_GROUP_CHARS = (",", ":")


class Reply(NamedTuple):
    status: int
    body: bytes
    content_type: str = JSON_CT


class OperationError(Exception):
    """The original's ManagementOperationError: 400 with the bare message."""


class StoreFailure(Exception):
    """A write the store could not do: 500 with the original's failure text."""


def _text(s: str, status: int = 200) -> Reply:
    return Reply(status, s.encode())


def _json(v: Any) -> Reply:
    return Reply(200, orjson.dumps(v))


def _input_type(text: str) -> str:
    try:
        return parse_input_type(text).canonical
    except ValueError as e:
        raise OperationError(str(e)) from None


def _validate_group_str(value: str, label: str) -> None:
    if any(c in value for c in PROHIBITED_GROUP_CHARS):
        raise OperationError(msg.invalid_group_string(label, value))


def model_json(m: ModelRecord, current: str | None) -> dict[str, Any]:
    return {
        "model_name": m.name,
        "model_version": m.version,
        "input_type": m.input_type,
        "labels": list(m.labels),
        "container_name": m.container_name,
        "model_data_path": m.model_data_path,
        "is_current_version": current == m.version,
    }


def app_json(a: AppRecord, links: list[str]) -> dict[str, Any]:
    return {
        "input_type": a.input_type,
        "default_output": a.default_output,
        "latency_slo_micros": a.latency_slo_micros,
        "name": a.name,
        "linked_models": links,
    }


def container_json(c: ContainerRecord) -> dict[str, Any]:
    return {
        "model_id": f"{c.model_name}:{c.model_version}",
        "model_name": c.model_name,
        "model_version": c.model_version,
        "model_replica_id": c.replica_id,
        "input_type": c.input_type,
        "healthy": c.healthy,  # added: False while the query frontend considers the replica hung
    }


class AdminHandlers:
    """One method per route; each takes the raw body and returns a :class:`Reply`."""

    def __init__(self, store: ConfigStore) -> None:
        self.store = store

    # -- the route table ---------------------------------------------------------------------
    def routes(self) -> dict[str, tuple[str, Callable[[bytes], Reply]]]:
        """path -> (method, handler)."""
        post = {
            "add_app": (self.add_app, msg.ADD_APPLICATION_JSON_SCHEMA),
            "delete_app": (self.delete_app, msg.ADD_APPLICATION_JSON_SCHEMA),  # sic: the original's schema
            "update_app": (self.update_app, msg.UPDATE_APPLICATION_JSON_SCHEMA),  # added
            "add_model_links": (self.add_model_links, msg.ADD_MODEL_LINKS_JSON_SCHEMA),
            "delete_model_links": (self.delete_model_links, msg.DELETE_MODEL_LINKS_JSON_SCHEMA),
            "add_model": (self.add_model, msg.ADD_MODEL_JSON_SCHEMA),
            "set_model_version": (self.set_model_version, msg.SET_VERSION_JSON_SCHEMA),
            "delete_versioned_model": (self.delete_versioned_model, msg.DELETE_VERSIONED_MODEL_JSON_SCHEMA),
            "get_all_applications": (self.get_all_applications, msg.VERBOSE_OPTION_JSON_SCHEMA),
            "get_application": (self.get_application, msg.GET_APPLICATION_REQUESTS_SCHEMA),
            "get_linked_models": (self.get_linked_models, msg.GET_LINKED_MODELS_REQUESTS_SCHEMA),
            "get_all_models": (self.get_all_models, msg.VERBOSE_OPTION_JSON_SCHEMA),
            "get_model": (self.get_model, msg.GET_MODEL_REQUESTS_SCHEMA),
            "get_all_containers": (self.get_all_containers, msg.VERBOSE_OPTION_JSON_SCHEMA),
            "get_container": (self.get_container, msg.GET_CONTAINER_REQUESTS_SCHEMA),
            "get_state": (self.get_state, msg.SELECTION_JSON_SCHEMA),
            # added: traffic splitting, shadow and selection policies (clipper.management_frontend.traffic)
            "set_app_traffic": (self.set_app_traffic, tr.SET_APP_TRAFFIC_SCHEMA),
            "get_app_traffic": (self.get_app_traffic, tr.GET_APP_TRAFFIC_SCHEMA),
            "get_all_app_traffic": (self.get_all_app_traffic, tr.GET_ALL_APP_TRAFFIC_SCHEMA),
            "clear_app_traffic": (self.clear_app_traffic, tr.GET_APP_TRAFFIC_SCHEMA),
            # added: the reconciler's apply lease and records (clipper.management_frontend.reconciler_state)
            "acquire_lease": (self.acquire_lease, rs.ACQUIRE_LEASE_SCHEMA),
            "renew_lease": (self.renew_lease, rs.ACQUIRE_LEASE_SCHEMA),
            "release_lease": (self.release_lease, rs.RELEASE_LEASE_SCHEMA),
            "get_record": (self.get_record, rs.GET_RECORD_SCHEMA),
            "get_records": (self.get_records, rs.GET_RECORDS_SCHEMA),
            "put_record": (self.put_record, rs.PUT_RECORD_SCHEMA),
        }
        table: dict[str, tuple[str, Callable[[bytes], Reply]]] = {
            "/admin/ping": ("GET", lambda _body: _text(msg.PONG)),
        }
        for name, (fn, schema) in post.items():
            table[f"/admin/{name}"] = ("POST", _guarded(name, fn, schema))
        return table

    # -- applications ------------------------------------------------------------------------
    def add_app(self, d: Any) -> Reply:
        name = jb.get_string(d, "name")
        input_type = _input_type(jb.get_string(d, "input_type"))
        default_output = jb.get_string(d, "default_output")
        slo = jb.get_int(d, "latency_slo_micros")
        if self.store.get_app(name) is not None:
            raise OperationError(msg.app_exists(name))
        try:
            added = self.store.add_app(AppRecord(name, input_type, default_output, slo))
        except Exception as e:
            raise StoreFailure(msg.app_add_failed(name)) from e
        if not added:
            raise OperationError(msg.app_exists(name))
        return _text(msg.app_added(name))

    def delete_app(self, d: Any) -> Reply:
        name = jb.get_string(d, "name")
        if self.store.get_app(name) is None:
            raise OperationError(msg.app_missing(name))
        try:
            self.store.delete_app(name)
        except Exception as e:
            raise StoreFailure(msg.app_delete_failed(name)) from e
        return _text(msg.app_deleted(name))

    def update_app(self, d: Any) -> Reply:
        """Added: change the default output and/or SLO in place. The app stays registered and linked
        throughout, so no request sees it missing (unregister + register + relink would)."""
        name = jb.get_string(d, "name")
        has = isinstance(d, dict)
        default_output = jb.get_string(d, "default_output") if has and "default_output" in d else None
        slo = jb.get_int(d, "latency_slo_micros") if has and "latency_slo_micros" in d else None
        if default_output is None and slo is None:
            raise OperationError(msg.app_update_nothing(name))
        if self.store.get_app(name) is None:
            raise OperationError(msg.app_missing(name))
        try:
            updated = self.store.update_app(name, default_output, slo)
        except Exception as e:
            raise StoreFailure(msg.app_update_failed(name)) from e
        if updated is None:  # deleted meanwhile
            raise OperationError(msg.app_missing(name))
        return _text(msg.app_updated(name))

    def add_model_links(self, d: Any) -> Reply:
        app_name = jb.get_string(d, "app_name")
        model_names = jb.get_string_array(d, "model_names")
        app = self.store.get_app(app_name)
        if app is None:
            raise OperationError(msg.link_no_app(app_name))
        for m in model_names:
            version = self.store.get_current_version(m)
            if version is None:
                raise OperationError(msg.link_no_model(m))
            rec = self.store.get_model(m, version)
            model_type = rec.input_type if rec is not None else ""
            if model_type != app.input_type:
                raise OperationError(msg.link_incompatible(m, model_type, app.input_type))
        if len(model_names) != 1:
            if not model_names:
                raise OperationError(msg.link_none_given(app_name))
            raise OperationError(msg.link_too_many(len(model_names)))
        new = model_names[0]
        existing = self.store.get_links(app_name)
        if existing:
            if new in existing:
                raise OperationError(msg.link_same_exists(new, app_name))
            raise OperationError(msg.link_other_exists(existing[0], app_name))
        try:
            self.store.add_link(app_name, new)
        except Exception as e:
            raise StoreFailure(msg.link_failed(app_name)) from e
        return _text(msg.linked(new, app_name))

    def delete_model_links(self, d: Any) -> Reply:
        app_name = jb.get_string(d, "app_name")
        model_names = jb.get_string_array(d, "model_names")
        if self.store.get_app(app_name) is None:
            raise OperationError(msg.unlink_no_app(app_name))
        existing = self.store.get_links(app_name)
        for m in model_names:
            if m not in existing:
                raise OperationError(msg.unlink_missing(app_name, m))
        try:
            for m in model_names:
                self.store.remove_link(app_name, m)
        except Exception as e:
            raise StoreFailure(msg.unlink_failed(app_name)) from e
        return _text(msg.UNLINKED)

    # -- models --------------------------------------------------------------------------------
    def _check_consistent_with_links(self, name: str, input_type: str) -> None:
        for app in self.store.list_apps():
            if name in self.store.get_links(app.name) and app.input_type != input_type:
                raise OperationError(msg.model_inconsistent(name, app.name, app.input_type, input_type))

    def add_model(self, d: Any) -> Reply:
        name = jb.get_string(d, "model_name")
        version = jb.get_string(d, "model_version")
        labels = jb.get_string_array(d, "labels")
        input_type = _input_type(jb.get_string(d, "input_type"))
        container_name = jb.get_string(d, "container_name")
        model_data_path = jb.get_string(d, "model_data_path")
        batch_size = jb.get_int(d, "batch_size")
        if batch_size <= 0 and batch_size != DEFAULT_BATCH_SIZE:
            raise OperationError(msg.BAD_BATCH_SIZE)
        _validate_group_str(name, "model name")
        _validate_group_str(version, "model version")
        for label in labels:
            _validate_group_str(label, "label")
        if self.store.get_model(name, version) is not None:  # marked-invalid versions still count
            raise OperationError(msg.model_exists(name, version))
        self._check_consistent_with_links(name, input_type)
        record = ModelRecord(
            name=name,
            version=version,
            input_type=input_type,
            labels=tuple(labels),
            container_name=container_name,
            model_data_path=model_data_path,
            batch_size=batch_size,
        )
        # the version becomes current, unless "make_current": false (a rollout's health check
        # predicts on the version before it takes traffic)
        make_current = jb.get_bool(d, "make_current") if isinstance(d, dict) and "make_current" in d else True
        try:
            added = self.store.add_model(record, make_current)
        except Exception as e:
            raise StoreFailure(msg.model_add_failed(name, version)) from e
        if not added:
            raise OperationError(msg.model_exists(name, version))
        return _text(msg.model_added(name, input_type))

    def set_model_version(self, d: Any) -> Reply:
        name = jb.get_string(d, "model_name")
        version = jb.get_string(d, "model_version")
        versions = self.store.list_model_versions(name)
        if not versions:
            raise OperationError(msg.set_version_no_model(name))
        if version not in versions:
            raise OperationError(msg.set_version_no_version(name, version))
        rec = self.store.get_model(name, version)
        self._check_consistent_with_links(name, rec.input_type if rec else "")
        try:
            self.store.set_current_version(name, version)
        except Exception as e:
            raise StoreFailure(msg.version_update_failed(name, version)) from e
        return _text(msg.version_set(name, version))

    def delete_versioned_model(self, d: Any) -> Reply:
        name = jb.get_string(d, "model_name")
        version = jb.get_string(d, "model_version")
        rec = self.store.get_model(name, version)
        if rec is None:
            raise OperationError(msg.model_missing(name, version))
        if not rec.valid:
            raise OperationError(msg.model_already_invalid(name, version))
        try:
            self.store.mark_model_invalid(name, version)
        except Exception as e:
            raise StoreFailure(msg.model_delete_failed(name, version)) from e
        return _text(msg.model_deleted(name, version))

    # -- getters -------------------------------------------------------------------------------
    def get_all_applications(self, d: Any) -> Reply:
        verbose = jb.get_bool(d, "verbose")
        apps = self.store.list_apps()
        if not verbose:
            return _json([a.name for a in apps])
        return _json([app_json(a, self.store.get_links(a.name)) for a in apps])

    def get_application(self, d: Any) -> Reply:
        name = jb.get_string(d, "name")
        app = self.store.get_app(name)
        return _json(app_json(app, self.store.get_links(name)) if app else {})

    def get_linked_models(self, d: Any) -> Reply:
        app_name = jb.get_string(d, "app_name")
        if self.store.get_app(app_name) is None:
            raise OperationError(msg.no_application(app_name))
        return _json(self.store.get_links(app_name))

    def _listed_models(self) -> list[ModelRecord]:
        """Versions marked invalid by ``delete_versioned_model`` are gone for every reader at once.

        The record itself stays until a query frontend purges it (within ~1 s, asynchronously), so
        that re-adding the same ``name:version`` is refused meanwhile, as in the original; listing
        it would let a script that reads the list right after ``stop_*`` see stopped versions."""
        return [m for m in self.store.list_models() if m.valid]

    def get_all_models(self, d: Any) -> Reply:
        verbose = jb.get_bool(d, "verbose")
        models = self._listed_models()
        if not verbose:
            return _json([f"{m.name}:{m.version}" for m in models])
        current = self.store.snapshot().current_versions
        return _json([model_json(m, current.get(m.name)) for m in models])

    def get_model(self, d: Any) -> Reply:
        name = jb.get_string(d, "model_name")
        version = jb.get_string(d, "model_version")
        m = self.store.get_model(name, version)
        return _json(model_json(m, self.store.get_current_version(name)) if m and m.valid else {})

    def _listed_containers(self) -> list[ContainerRecord]:
        """Replicas of versions marked invalid are hidden like the versions (see ``_listed_models``);
        replicas of a version not registered yet are listed (they connect before it is registered)."""
        invalid = {(m.name, m.version) for m in self.store.list_models() if not m.valid}
        return [c for c in self.store.list_containers() if (c.model_name, c.model_version) not in invalid]

    def get_all_containers(self, d: Any) -> Reply:
        verbose = jb.get_bool(d, "verbose")
        containers = self._listed_containers()
        if not verbose:
            return _json([f"{c.model_name}:{c.model_version}:{c.replica_id}" for c in containers])
        return _json([container_json(c) for c in containers])

    def get_container(self, d: Any) -> Reply:
        name = jb.get_string(d, "model_name")
        version = jb.get_string(d, "model_version")
        replica_id = jb.get_int(d, "replica_id")
        for c in self._listed_containers():
            if (c.model_name, c.model_version, c.replica_id) == (name, version, replica_id):
                return _json(container_json(c))
        return _json({})

    def get_state(self, d: Any) -> Reply:
        app_name = jb.get_string(d, "app_name")
        uid = jb.get_int(d, "uid")
        if uid != 0:
            log.error("Personalized default outputs are not currently supported. Using default UID 0 instead")
        app = self.store.get_app(app_name)
        return _text(app.default_output if app else "")

    # -- traffic (added) -----------------------------------------------------------------------
    def set_app_traffic(self, d: Any) -> Reply:
        try:
            name, config = tr.parse_traffic(d, self.store)
        except tr.TrafficError as e:
            raise OperationError(str(e)) from None
        try:
            self.store.set_app_traffic(name, config)
        except Exception as e:
            raise StoreFailure(f"Error setting the traffic of application {name} in the config store") from e
        return _json(tr.traffic_report(self.store, name))

    def get_app_traffic(self, d: Any) -> Reply:
        name = jb.get_string(d, "name")
        try:
            return _json(tr.traffic_report(self.store, name))
        except tr.TrafficError as e:
            raise OperationError(str(e)) from None

    def get_all_app_traffic(self, d: Any) -> Reply:
        if not isinstance(d, dict):
            raise OperationError("the body must be a JSON object ({})")
        try:
            return _json(tr.all_traffic_configs(self.store))
        except Exception as e:
            raise StoreFailure("Error reading the applications' traffic from the config store") from e

    def clear_app_traffic(self, d: Any) -> Reply:
        """Back to a plain app (its linked model's current version)."""
        name = jb.get_string(d, "name")
        if self.store.get_app(name) is None:
            raise OperationError(f"application {name!r} does not exist")
        try:
            self.store.set_app_traffic(name, None)
        except Exception as e:
            raise StoreFailure(f"Error clearing the traffic of application {name} in the config store") from e
        return _json(tr.traffic_report(self.store, name))

    # -- the reconciler's lease and records (added) ---------------------------------------------
    def acquire_lease(self, d: Any) -> Reply:
        """``{"acquired": bool, "holder": <who holds it now>}``."""
        name, holder, ttl_s = self._lease_args(d)
        now_held_by = self.store.acquire_lease(name, holder, ttl_s)
        return _json({"acquired": now_held_by == holder, "holder": now_held_by})

    def renew_lease(self, d: Any) -> Reply:
        name, holder, ttl_s = self._lease_args(d)
        return _json({"renewed": self.store.renew_lease(name, holder, ttl_s)})

    def release_lease(self, d: Any) -> Reply:
        name, holder = self._state_args(d, "name", "holder")
        return _json({"released": self.store.release_lease(name, holder)})

    def get_record(self, d: Any) -> Reply:
        namespace, key = self._state_args(d, "namespace", "key")
        return _json({"value": self.store.get_record(namespace, key)})

    def get_records(self, d: Any) -> Reply:
        (namespace,) = self._state_args(d, "namespace")
        keys = jb.get_string_array(d, "keys")
        if len(keys) > rs.MAX_KEYS:
            raise OperationError(f"'keys' holds {len(keys)} keys; at most {rs.MAX_KEYS} per request")
        for key in keys:
            if not key or len(key) > rs.MAX_NAME_CHARS:
                raise OperationError(
                    f"every key must be a non-empty string of at most {rs.MAX_NAME_CHARS} characters"
                )
        return _json({"values": self.store.get_records(namespace, keys)})

    def put_record(self, d: Any) -> Reply:
        namespace, key = self._state_args(d, "namespace", "key")
        try:
            value = rs.value_arg(d)
        except rs.StateError as e:
            raise OperationError(str(e)) from None
        self.store.put_record(namespace, key, value)
        return _json({"stored": value is not None})

    @staticmethod
    def _state_args(d: Any, *keys: str) -> list[str]:
        try:
            return [rs.name_arg(d, k) for k in keys]
        except rs.StateError as e:
            raise OperationError(str(e)) from None

    @classmethod
    def _lease_args(cls, d: Any) -> tuple[str, str, float]:
        name, holder = cls._state_args(d, "name", "holder")
        try:
            return name, holder, rs.ttl_s_arg(d)
        except rs.StateError as e:
            raise OperationError(str(e)) from None


def _guarded(name: str, fn: Callable[[Any], Reply], schema: str) -> Callable[[bytes], Reply]:
    """Parse the body, run the route, turn its exceptions into the original's replies."""

    def route(body: bytes) -> Reply:
        try:
            return fn(jb.parse(body))
        except jb.JsonError as e:
            return _text(msg.json_error(str(e), schema), 400)
        except OperationError as e:
            return _text(str(e), 400)
        except StoreFailure as e:
            log.error("%s: %s (%s)", name, e, e.__cause__)
            return _text(str(e), 500)
        except Exception as e:
            log.exception("admin route %s failed", name)
            return _text(f"Error reading the config store: {e}", 500)

    route.__name__ = name
    return route
