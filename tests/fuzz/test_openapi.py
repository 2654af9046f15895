"""The frontends' OpenAPI documents: valid, complete (every served route is documented), and
schemathesis-fuzzed against the live processes: no 5xx, no hang, no crash, responses as documented."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from openapi_spec_validator import validate
from schemathesis.specs.openapi.checks import (
    positive_data_acceptance,
    response_schema_conformance,
)

from clipper.config_store import open_store
from clipper.management_frontend.handlers import AdminHandlers

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
QUERY_SPEC = REPO / "clipper/query_frontend/openapi.json"
MGMT_SPEC = REPO / "clipper/management_frontend/openapi.json"
MAX_EXAMPLES = 50
FUZZ_SETTINGS = settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,  # the same examples on every run: a failure is reproducible
)


@pytest.mark.parametrize("path", [QUERY_SPEC, MGMT_SPEC], ids=["query", "management"])
def test_specs_are_valid_openapi(path):
    validate(json.loads(path.read_text()))


def test_management_spec_documents_every_route(tmp_path):
    store = open_store(f"sqlite:///{tmp_path}/c.db")
    try:
        served = {(path, method.lower()) for path, (method, _) in AdminHandlers(store).routes().items()}
    finally:
        store.close()
    served |= {("/health", "get"), ("/openapi.json", "get")}
    paths = json.loads(MGMT_SPEC.read_text())["paths"]
    documented = {(p, m) for p, ops in paths.items() for m in ops}
    assert served == documented


def test_query_spec_documents_every_route():
    paths = json.loads(QUERY_SPEC.read_text())["paths"]
    documented = {(p, m) for p, ops in paths.items() for m in ops}
    assert documented == {
        ("/{app}/predict", "post"),
        ("/{app}/update", "post"),
        ("/metrics", "get"),
        ("/prometheus", "get"),
        ("/health", "get"),
        ("/openapi.json", "get"),
    }


def test_served_specs_are_the_files(live):
    assert live.http.get(f"{live.url}/openapi.json", timeout=5).json() == json.loads(QUERY_SPEC.read_text())
    mgmt = live.http.get(f"http://127.0.0.1:{live.mgmt_port}/openapi.json", timeout=5).json()
    assert mgmt == json.loads(MGMT_SPEC.read_text())


@pytest.fixture(scope="session")
def query_schema(live):
    return schemathesis.openapi.from_url(f"{live.url}/openapi.json")


@pytest.fixture(scope="session")
def mgmt_schema(live):
    return schemathesis.openapi.from_url(f"http://127.0.0.1:{live.mgmt_port}/openapi.json")


query_fuzz = schemathesis.pytest.from_fixture("query_schema")
mgmt_fuzz = schemathesis.pytest.from_fixture("mgmt_schema")


def _health(url: str) -> None:
    import requests

    assert requests.get(f"{url}/health", timeout=10).status_code == 200, "the frontend died"


@query_fuzz.parametrize()
@FUZZ_SETTINGS
def test_query_frontend_fuzz(case, live):
    case.call_and_validate(timeout=30)


@mgmt_fuzz.parametrize()
@FUZZ_SETTINGS
def test_management_frontend_fuzz(case):
    # The original's plain-text bodies are served as Content-Type application/json (kept
    # for wire compatibility, and documented so in openapi.json): they cannot parse as JSON.
    # Schema-valid requests can still be refused: "no such app", "already exists"... are 400s by the
    # original's contract, which a JSON schema cannot express.
    case.call_and_validate(
        timeout=30, excluded_checks=[response_schema_conformance, positive_data_acceptance]
    )


def test_frontends_alive_after_fuzzing(live):
    _health(live.url)
    _health(f"http://127.0.0.1:{live.mgmt_port}")
    assert live.wait_serving("a", {"input": [1.0, 2.0]})["output"] == 3.0


@pytest.mark.parametrize("path", ["/health", "/metrics", "/prometheus", "/openapi.json", "/a/predict"])
def test_query_frontend_405_has_allow_header(live, path):
    import requests

    r = requests.request("TRACE", f"{live.url}{path}", timeout=10)
    assert r.status_code == 405
    assert r.headers["Allow"] == ("POST" if path.endswith("predict") else "GET, HEAD")


def test_query_spec_documents_404_for_update():
    spec = json.loads(QUERY_SPEC.read_text())
    assert "404" in spec["paths"]["/{app}/update"]["post"]["responses"]
