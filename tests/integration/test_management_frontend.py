"""The management frontend as a real process over HTTP, on both config stores.

Ports management_frontend_tests.cpp: the 4-field app hash and 9-field model hash (Redis), duplicates,
missing fields, malformed JSON, prohibited characters, current versions, links, invalid marks, getters.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from clipper.config_store import ContainerRecord, open_store
from clipper.management_frontend import messages as msg
from clipper.net import free_port
from tests.unit.test_config_store import RedisServer

TOKEN = "s3cret-token"


class Frontend:
    def __init__(
        self, store_url: str, home: Path, token: str | None = None, extra: tuple[str, ...] = ()
    ) -> None:
        self.port = free_port()
        self.store_url = store_url
        env = {**os.environ, "CLIPPER_HOME": str(home)}
        env.pop("CLIPPER_ADMIN_TOKEN", None)
        if token:
            env["CLIPPER_ADMIN_TOKEN"] = token
        self.log = open(home / f"mgmt-{self.port}.log", "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "clipper.management_frontend", *extra, "--port", str(self.port)]
            + ([] if "--redis_ip" in extra else ["--store", store_url]),
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.url = f"http://127.0.0.1:{self.port}"
        self.session = requests.Session()
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        deadline = time.monotonic() + 30
        while True:
            try:
                if self.session.get(self.url + "/admin/ping", timeout=2).text == "PONG":
                    break
            except requests.ConnectionError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    "management frontend did not start: " + (home / f"mgmt-{self.port}.log").read_text()
                )
            time.sleep(0.05)

    def post(self, route: str, body, raw: bool = False) -> requests.Response:
        data = body if raw else json.dumps(body)
        return self.session.post(f"{self.url}/admin/{route}", data=data, headers=self.headers, timeout=10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.session.close()
        self.log.close()


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="module", params=["sqlite", "redis"])
def frontend(request, tmp_path_factory) -> Iterator[Frontend]:
    home = tmp_path_factory.mktemp(request.param)
    if request.param == "sqlite":
        url = f"sqlite://{home}/config.db"
    else:
        url = request.getfixturevalue("redis_server").url
    fe = Frontend(url, home)
    yield fe
    fe.stop()


@pytest.fixture
def fe(frontend, request) -> Frontend:
    """The module's frontend with an emptied store."""
    if frontend.store_url.startswith("redis"):
        request.getfixturevalue("redis_server").client(0).flushall()
    else:
        import sqlite3

        c = sqlite3.connect(frontend.store_url.removeprefix("sqlite://"))
        for t in ("apps", "models", "links", "current_versions", "containers"):
            c.execute(f"DELETE FROM {t}")
        c.commit()
        c.close()
    return frontend


def app_body(name="app1", input_type="doubles", default="-1.0", slo=100000):
    return {"name": name, "input_type": input_type, "default_output": default, "latency_slo_micros": slo}


def model_body(name="m", version="1", input_type="doubles", labels=("l1", "l2"), batch_size=-1):
    return {
        "model_name": name,
        "model_version": version,
        "labels": list(labels),
        "input_type": input_type,
        "container_name": "clipper/noop:1",
        "model_data_path": "DEPRECATED",
        "batch_size": batch_size,
    }


def ok(r: requests.Response, text: str | None = None) -> None:
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"] == "application/json"
    if text is not None:
        assert r.text == text


def bad(r: requests.Response, text: str) -> None:
    assert r.status_code == 400, r.text
    assert r.text == text


# -- applications ----------------------------------------------------------------------------------


def test_ping_health_and_openapi(fe):
    ok(fe.session.get(fe.url + "/admin/ping"), "PONG")
    assert fe.session.get(fe.url + "/health").status_code == 200
    doc = fe.session.get(fe.url + "/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    routes = {p for p in doc["paths"] if p.startswith("/admin/")}
    assert routes == {f"/admin/{r}" for r in ALL_POST_ROUTES} | {"/admin/ping"}


def test_add_app_and_duplicate(fe):
    ok(fe.post("add_app", app_body()), msg.app_added("app1"))
    bad(fe.post("add_app", app_body(default="x")), "application 'app1' already exists")
    ok(
        fe.post("add_app", app_body("app2", input_type="ints")),
        "Successfully added application with name 'app2'",
    )
    assert sorted(fe.post("get_all_applications", {"verbose": False}).json()) == ["app1", "app2"]
    app2 = fe.post("get_application", {"name": "app2"}).json()
    assert app2 == {
        "input_type": "integers",
        "default_output": "-1.0",
        "latency_slo_micros": 100000,
        "name": "app2",
        "linked_models": [],
    }
    assert list(app2) == ["input_type", "default_output", "latency_slo_micros", "name", "linked_models"]


def test_add_app_validation_order_and_texts(fe):
    schema = msg.ADD_APPLICATION_JSON_SCHEMA

    def err(text):
        return f"Error parsing JSON: {text}. Expected JSON schema: {schema}"

    bad(fe.post("add_app", {"input_type": "doubles"}), err("JSON object does not have required key: name"))
    bad(
        fe.post("add_app", {"name": 3}),
        err("Type mismatch! JSON key name expected type Stringbut found type Number"),
    )
    bad(fe.post("add_app", {"name": "a"}), err("JSON object does not have required key: input_type"))
    bad(fe.post("add_app", app_body(input_type="dubs")), "dubs is not a valid input string")
    bad(
        fe.post("add_app", app_body(input_type="Doubles")), "Doubles is not a valid input string"
    )  # case-sensitive
    body = app_body()
    del body["default_output"]
    bad(fe.post("add_app", body), err("JSON object does not have required key: default_output"))
    bad(fe.post("add_app", app_body(slo=1.5)), err("PredictionData of type Number is not of type int"))
    bad(fe.post("add_app", app_body(slo=2**31)), err("PredictionData of type Number is not of type int"))
    bad(
        fe.post("add_app", app_body(slo=True)),
        err("Type mismatch! JSON key latency_slo_micros expected type Numberbut found type True"),
    )
    bad(fe.post("add_app", [1, 2]), err("Can only get key-value pair from an object"))
    bad(fe.post("add_app", b"", raw=True), err("JSON parse error: The document is empty. (offset 0)\n"))
    bad(
        fe.post("add_app", b'{"name": "a",', raw=True),
        err("JSON parse error: Missing a name for object member. (offset 13)\n"),
    )
    bad(
        fe.post("add_app", b"{nope}", raw=True),
        err("JSON parse error: Missing a name for object member. (offset 1)\n"),
    )
    bad(
        fe.post("add_app", b'{"a": [1 2]}', raw=True),
        err("JSON parse error: Missing a comma or ']' after an array element. (offset 9)\n"),
    )
    bad(
        fe.post("add_app", b'{"a": 1} x', raw=True),
        err("JSON parse error: The document root must not be followed by other values. (offset 9)\n"),
    )
    bad(fe.post("add_app", b'{"a": NaN}', raw=True), err("JSON parse error: Invalid value. (offset 0)\n"))
    assert fe.post("get_all_applications", {"verbose": False}).json() == []
    for alias, canonical in (
        ("i", "integers"),
        ("str", "strings"),
        ("b", "bytes"),
        ("f", "floats"),
        ("d", "doubles"),
    ):
        ok(fe.post("add_app", app_body(f"a-{alias}", input_type=alias)))
        assert fe.post("get_application", {"name": f"a-{alias}"}).json()["input_type"] == canonical


def test_update_app_in_place(fe):
    def err(text):
        return msg.json_error(text, msg.UPDATE_APPLICATION_JSON_SCHEMA)

    bad(fe.post("update_app", {"default_output": "x"}), err("JSON object does not have required key: name"))
    bad(fe.post("update_app", {"name": "nope", "default_output": "x"}), "Application 'nope' does not exist")
    bad(fe.post("update_app", {"name": "app1"}), msg.app_update_nothing("app1"))
    bad(
        fe.post("update_app", {"name": "app1", "default_output": 3}),
        err("Type mismatch! JSON key default_output expected type Stringbut found type Number"),
    )
    bad(
        fe.post("update_app", {"name": "app1", "latency_slo_micros": 1.5}),
        err("PredictionData of type Number is not of type int"),
    )
    fe.post("add_app", app_body())
    fe.post("add_model", model_body())
    ok(fe.post("add_model_links", {"app_name": "app1", "model_names": ["m"]}))
    ok(fe.post("update_app", {"name": "app1", "latency_slo_micros": 5000}), msg.app_updated("app1"))
    ok(
        fe.post("update_app", {"name": "app1", "default_output": "none"}),
        "Successfully updated application with name 'app1'",
    )
    assert fe.post("get_application", {"name": "app1"}).json() == {
        "input_type": "doubles",
        "default_output": "none",
        "latency_slo_micros": 5000,
        "name": "app1",
        "linked_models": ["m"],  # still linked: updated in place
    }
    # a failed update writes nothing
    bad(fe.post("update_app", {"name": "app1", "default_output": "y", "latency_slo_micros": "7"}),
        err("Type mismatch! JSON key latency_slo_micros expected type Numberbut found type String"))  # fmt: skip
    assert fe.post("get_application", {"name": "app1"}).json()["default_output"] == "none"


def test_delete_app(fe):
    bad(fe.post("delete_app", {"name": "nope"}), "Application 'nope' does not exist")
    bad(
        fe.post("delete_app", {"nom": "x"}),
        msg.json_error("JSON object does not have required key: name", msg.ADD_APPLICATION_JSON_SCHEMA),
    )
    fe.post("add_app", app_body())
    fe.post("add_model", model_body())
    ok(fe.post("add_model_links", {"app_name": "app1", "model_names": ["m"]}))
    ok(fe.post("delete_app", {"name": "app1"}), "Successfully deleted application with name 'app1'")
    assert fe.post("get_application", {"name": "app1"}).json() == {}
    ok(fe.post("add_app", app_body()))  # re-added: does not inherit the old link
    assert fe.post("get_linked_models", {"app_name": "app1"}).json() == []


# -- models ----------------------------------------------------------------------------------------


def test_add_model_sets_current_version_and_rejects_duplicates(fe):
    ok(
        fe.post("add_model", model_body(version="1")),
        "Successfully added model with name 'm' and input type 'doubles'",
    )
    bad(fe.post("add_model", model_body(version="1")), "model with name 'm' and version '1' already exists")
    assert (
        fe.post("get_model", {"model_name": "m", "model_version": "1"}).json()["is_current_version"] is True
    )
    ok(fe.post("add_model", model_body(version="2", input_type="d")))
    v1 = fe.post("get_model", {"model_name": "m", "model_version": "1"}).json()
    assert v1 == {
        "model_name": "m",
        "model_version": "1",
        "input_type": "doubles",
        "labels": ["l1", "l2"],
        "container_name": "clipper/noop:1",
        "model_data_path": "DEPRECATED",
        "is_current_version": False,
    }
    assert (
        list(v1)
        == list(v1.keys())
        == [
            "model_name",
            "model_version",
            "input_type",
            "labels",
            "container_name",
            "model_data_path",
            "is_current_version",
        ]
    )
    assert sorted(fe.post("get_all_models", {"verbose": False}).json()) == ["m:1", "m:2"]
    verbose = {
        m["model_version"]: m["is_current_version"]
        for m in fe.post("get_all_models", {"verbose": True}).json()
    }
    assert verbose == {"1": False, "2": True}
    assert fe.post("get_model", {"model_name": "m", "model_version": "9"}).json() == {}


def test_add_model_make_current_false_keeps_the_current_version(fe):
    ok(fe.post("add_model", model_body(version="1")))
    ok(fe.post("add_model", {**model_body(version="2"), "make_current": False}))
    get = lambda v: fe.post("get_model", {"model_name": "m", "model_version": v}).json()  # noqa: E731
    assert (get("1")["is_current_version"], get("2")["is_current_version"]) == (True, False)
    r = fe.post("add_model", {**model_body(version="3"), "make_current": "no"})
    assert r.status_code == 400 and "make_current" in r.text


def test_add_model_validation(fe):
    schema = msg.ADD_MODEL_JSON_SCHEMA
    body = model_body()
    del body["batch_size"]  # required although the printed schema omits it
    bad(
        fe.post("add_model", body),
        msg.json_error("JSON object does not have required key: batch_size", schema),
    )
    bad(
        fe.post("add_model", {**model_body(), "labels": ["a", 1]}),
        msg.json_error("Array input of type Number is not of type string", schema),
    )
    bad(
        fe.post("add_model", {**model_body(), "model_version": 1}),
        msg.json_error(
            "Type mismatch! JSON key model_version expected type Stringbut found type Number", schema
        ),
    )
    bad(fe.post("add_model", model_body(input_type="tensor")), "tensor is not a valid input string")
    for b in (0, -2):
        bad(
            fe.post("add_model", model_body(batch_size=b)),
            "The batch size must be positive or DEFAULT_BATCH_SIZE, which is -1",
        )
    bad(
        fe.post("add_model", model_body(name="a,b")),
        "Invalid model name supplied: a,b. Contains one of: ',', ':'",
    )
    bad(
        fe.post("add_model", model_body(version="1:2")),
        "Invalid model version supplied: 1:2. Contains one of: ',', ':'",
    )
    bad(
        fe.post("add_model", model_body(labels=["ok", "x:y"])),
        "Invalid label supplied: x:y. Contains one of: ',', ':'",
    )
    # order: batch size is checked before the grouped strings
    bad(fe.post("add_model", model_body(name="a,b", batch_size=0)), msg.BAD_BATCH_SIZE)
    ok(fe.post("add_model", model_body(batch_size=16)))
    assert fe.post("get_all_models", {"verbose": False}).json() == ["m:1"]


def test_set_model_version(fe):
    bad(
        fe.post("set_model_version", {"model_name": "m", "model_version": "1"}),
        "Cannot set version for nonexistent model 'm'",
    )
    fe.post("add_model", model_body(version="1"))
    fe.post("add_model", model_body(version="2"))
    bad(
        fe.post("set_model_version", {"model_name": "m", "model_version": "3"}),
        "Cannot set non-existent version '3' for model with name 'm'",
    )
    assert fe.post("get_model", {"model_name": "m", "model_version": "2"}).json()["is_current_version"]
    ok(
        fe.post("set_model_version", {"model_name": "m", "model_version": "1"}),
        "Successfully set model with name 'm' to version '1'",
    )
    assert fe.post("get_model", {"model_name": "m", "model_version": "1"}).json()["is_current_version"]
    bad(
        fe.post("set_model_version", {"model_name": "m"}),
        msg.json_error("JSON object does not have required key: model_version", msg.SET_VERSION_JSON_SCHEMA),
    )


def test_delete_versioned_model_marks_invalid(fe):
    bad(
        fe.post("delete_versioned_model", {"model_name": "m", "model_version": "1"}),
        "model with name 'm' and version '1' does not exist",
    )
    fe.post("add_model", model_body())
    ok(
        fe.post("delete_versioned_model", {"model_name": "m", "model_version": "1"}),
        "Successfully deleted model with name 'm' and version '1'",
    )
    bad(
        fe.post("delete_versioned_model", {"model_name": "m", "model_version": "1"}),
        "model with name 'm' and version '1' is already marked as 'invalid'",
    )
    # a version only *marked* invalid (no query frontend purged it) still exists...
    bad(fe.post("add_model", model_body()), "model with name 'm' and version '1' already exists")
    # ...but no reader sees it or its replicas any more, without waiting for the purge
    assert fe.post("get_all_models", {"verbose": False}).json() == []
    assert fe.post("get_all_models", {"verbose": True}).json() == []
    assert fe.post("get_model", {"model_name": "m", "model_version": "1"}).json() == {}
    fe.post("add_model", model_body(version="2"))
    store = open_store(fe.store_url)
    try:
        for version in ("1", "2", "3"):  # 3: connected, not registered yet (a rolling replace)
            store.put_container(ContainerRecord("m", version, 0, "doubles", "fe-1", 5))
    finally:
        store.close()
    assert fe.post("get_all_models", {"verbose": False}).json() == ["m:2"]
    assert sorted(fe.post("get_all_containers", {"verbose": False}).json()) == ["m:2:0", "m:3:0"]
    assert fe.post("get_container", {"model_name": "m", "model_version": "1", "replica_id": 0}).json() == {}
    bad(
        fe.post("delete_versioned_model", {"model_name": "m"}),
        msg.json_error(
            "JSON object does not have required key: model_version", msg.DELETE_VERSIONED_MODEL_JSON_SCHEMA
        ),
    )


# -- links -----------------------------------------------------------------------------------------


def test_links(fe):
    bad(
        fe.post("add_model_links", {"app_name": "app1", "model_names": ["m"]}),
        "No app with name 'app1' exists.",
    )
    fe.post("add_app", app_body())
    bad(fe.post("get_linked_models", {"app_name": "nope"}), "No application with name 'nope' exists.")
    assert fe.post("get_linked_models", {"app_name": "app1"}).json() == []
    bad(
        fe.post("add_model_links", {"app_name": "app1", "model_names": ["m"]}),
        "No model with name 'm' exists.",
    )
    fe.post("add_model", model_body("m"))
    fe.post("add_model", model_body("m2"))
    fe.post("add_model", model_body("ints-model", input_type="ints"))
    bad(
        fe.post("add_model_links", {"app_name": "app1", "model_names": ["ints-model"]}),
        "Model with name 'ints-model' has incompatible input_type 'integers'. Requested app to link to has input_type 'doubles'.",
    )
    bad(
        fe.post("add_model_links", {"app_name": "app1", "model_names": []}),
        "Please provide the name of the model that you want to link to the application 'app1'",
    )
    bad(
        fe.post("add_model_links", {"app_name": "app1", "model_names": ["m", "m2"]}),
        "Applications must be linked with at most one model. Attempted to add links to 2 models.",
    )
    ok(
        fe.post("add_model_links", {"app_name": "app1", "model_names": ["m"]}),
        "Successfully linked model with name 'm' to application 'app1'",
    )
    assert fe.post("get_linked_models", {"app_name": "app1"}).json() == ["m"]
    bad(
        fe.post("add_model_links", {"app_name": "app1", "model_names": ["m"]}),
        "The model with name 'm' is already linked to 'app1'",
    )
    bad(
        fe.post("add_model_links", {"app_name": "app1", "model_names": ["m2"]}),
        "A model with name m is already linked to 'app1'.",
    )
    assert fe.post("get_all_applications", {"verbose": True}).json()[0]["linked_models"] == ["m"]
    # a new version of a linked model must keep the app's input type; so must set_model_version
    bad(
        fe.post("add_model", model_body("m", version="2", input_type="strings")),
        "Model with name 'm' is already linked to app 'app1' using input type 'doubles'. "
        "The input type you provided for a new version of the model, 'strings', is not compatible.",
    )
    # delete links
    bad(
        fe.post("delete_model_links", {"app_name": "nope", "model_names": ["m"]}),
        "No app with name nope exists.",
    )
    bad(
        fe.post("delete_model_links", {"app_name": "app1", "model_names": ["m2"]}),
        "Cannot remove nonexistent link between app app1 and model m2",
    )
    ok(fe.post("delete_model_links", {"app_name": "app1", "model_names": []}), "Success!")
    ok(fe.post("delete_model_links", {"app_name": "app1", "model_names": ["m"]}), "Success!")
    assert fe.post("get_linked_models", {"app_name": "app1"}).json() == []
    bad(
        fe.post("delete_model_links", {"app_name": "app1"}),
        msg.json_error(
            "JSON object does not have required key: model_names", msg.DELETE_MODEL_LINKS_JSON_SCHEMA
        ),
    )


def test_set_model_version_rejects_incompatible_linked_version(fe):
    fe.post("add_app", app_body())
    fe.post("add_model", model_body("m", version="1"))
    fe.post("add_model", model_body("m", version="s", input_type="strings"))  # not linked yet: allowed
    ok(fe.post("set_model_version", {"model_name": "m", "model_version": "1"}))
    ok(fe.post("add_model_links", {"app_name": "app1", "model_names": ["m"]}))
    bad(
        fe.post("set_model_version", {"model_name": "m", "model_version": "s"}),
        "Model with name 'm' is already linked to app 'app1' using input type 'doubles'. "
        "The input type you provided for a new version of the model, 'strings', is not compatible.",
    )
    assert fe.post("get_model", {"model_name": "m", "model_version": "1"}).json()["is_current_version"]


# -- containers, state, getters --------------------------------------------------------------------


def test_containers_and_state(fe):
    assert fe.post("get_all_containers", {"verbose": False}).json() == []
    assert fe.post("get_container", {"model_name": "m", "model_version": "1", "replica_id": 0}).json() == {}
    store = open_store(fe.store_url)
    try:
        store.put_container(ContainerRecord("m", "1", 0, "doubles", "fe-1", 5))
    finally:
        store.close()
    assert fe.post("get_all_containers", {"verbose": False}).json() == ["m:1:0"]
    expected = {
        "model_id": "m:1",
        "model_name": "m",
        "model_version": "1",
        "model_replica_id": 0,
        "input_type": "doubles",
        "healthy": True,
    }
    assert fe.post("get_all_containers", {"verbose": True}).json() == [expected]
    assert (
        fe.post("get_container", {"model_name": "m", "model_version": "1", "replica_id": 0}).json()
        == expected
    )
    ok(fe.post("get_state", {"app_name": "nope", "uid": 0}), "")
    fe.post("add_app", app_body(default="0.5"))
    ok(fe.post("get_state", {"app_name": "app1", "uid": 7}), "0.5")
    bad(
        fe.post("get_state", {"app_name": "app1"}),
        msg.json_error("JSON object does not have required key: uid", msg.SELECTION_JSON_SCHEMA),
    )
    bad(
        fe.post("get_all_models", {"verbose": 1}),
        msg.json_error(
            "Type mismatch! JSON key verbose expected type bool but found type Number",
            msg.VERBOSE_OPTION_JSON_SCHEMA,
        ),
    )


ALL_POST_ROUTES = [
    "add_app",
    "delete_app",
    "add_model_links",
    "delete_model_links",
    "add_model",
    "set_model_version",
    "delete_versioned_model",
    "get_all_applications",
    "get_application",
    "get_linked_models",
    "get_all_models",
    "get_model",
    "get_all_containers",
    "get_container",
    "get_state",
    # added: traffic splitting (tests/integration/test_traffic.py)
    "set_app_traffic",
    "get_app_traffic",
    "get_all_app_traffic",
    "clear_app_traffic",
    # added: in-place application update
    "update_app",
    # added: the reconciler's apply lease and records (tests/integration/test_reconciler_state_routes.py)
    "acquire_lease",
    "renew_lease",
    "release_lease",
    "get_record",
    "get_records",
    "put_record",
]


def test_unknown_routes_and_wrong_methods(fe):
    r = fe.session.get(fe.url + "/admin/metrics")
    assert r.status_code == 404 and set(r.json()) == {"error", "cause"}
    assert fe.session.post(fe.url + "/admin/add_container", data="{}").status_code == 404
    for route in ALL_POST_ROUTES:
        r = fe.session.get(f"{fe.url}/admin/{route}")
        assert r.status_code == 405, route
        assert r.headers["Allow"] == "POST"
    assert fe.session.post(fe.url + "/admin/ping").status_code == 405


# -- Redis layout, auth, original flags -------------------------------------------------------------


def test_redis_hashes_have_the_original_field_counts(redis_server, tmp_path):
    redis_server.client(0).flushall()
    fe = Frontend(redis_server.url, tmp_path)
    try:
        ok(fe.post("add_app", app_body()))
        ok(fe.post("add_model", model_body(labels=[])))
        apps, models = redis_server.client(5), redis_server.client(2)
        assert len(apps.hgetall("app1")) == 4
        assert apps.hgetall("app1")["policy"] == "DefaultOutputSelectionPolicy"
        h = models.hgetall("m:1")
        assert len(h) == 9 and h["labels"] == "" and h["valid"] == "" and h["load"] == "0.000000"
        assert redis_server.client(6).get("CURRENT_MODEL_VERSION:m") == "1"
        ok(fe.post("delete_versioned_model", {"model_name": "m", "model_version": "1"}))
        assert "valid" not in models.hgetall("m:1")
    finally:
        fe.stop()


def test_original_redis_flags(redis_server, tmp_path):
    redis_server.client(0).flushall()
    fe = Frontend("", tmp_path, extra=("--redis_ip", "127.0.0.1", "--redis_port", str(redis_server.port)))
    try:
        ok(fe.post("add_app", app_body("via-flags")))
        assert redis_server.client(5).exists("via-flags")
    finally:
        fe.stop()


def test_admin_token(tmp_path):
    fe = Frontend(f"sqlite://{tmp_path}/config.db", tmp_path, token=TOKEN)
    try:
        ok(fe.post("add_app", app_body()))  # fe.headers carries the token
        r = fe.session.post(fe.url + "/admin/get_all_applications", data='{"verbose": false}')
        assert r.status_code == 401 and set(r.json()) == {"error", "cause"}
        r = fe.session.post(
            fe.url + "/admin/add_app",
            data=json.dumps(app_body("x")),
            headers={"Authorization": "Bearer wrong"},
        )
        assert r.status_code == 401
        ok(fe.session.get(fe.url + "/admin/ping"), "PONG")  # never needs the token
        assert fe.post("get_all_applications", {"verbose": False}).json() == ["app1"]
    finally:
        fe.stop()


@pytest.mark.skipif(shutil.which("ss") is None, reason="needs iproute2's ss")
def test_listens_on_loopback_by_default(tmp_path):
    fe = Frontend(f"sqlite://{tmp_path}/config.db", tmp_path)
    try:
        out = subprocess.run(
            ["ss", "-ltnH", f"sport = :{fe.port}"], capture_output=True, text=True, timeout=10
        ).stdout
        assert f"127.0.0.1:{fe.port}" in out
    finally:
        fe.stop()
