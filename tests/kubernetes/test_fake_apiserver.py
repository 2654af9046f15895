"""The API double stays strict: what a real API server rejects, it rejects."""

from __future__ import annotations

import json

import pytest
import requests

from clipper_admin.kubernetes import objects as o
from clipper_admin.kubernetes.settings import ObjectSettings

from .fake_apiserver import FakeKubernetes

S = ObjectSettings(cluster="c1", namespace="default")
APPLY = {"Content-Type": "application/apply-patch+yaml"}


@pytest.fixture(scope="module")
def url():
    with FakeKubernetes(schema_version="1.37").serve() as server:
        yield server.url


def svc_url(url, name="mgmt-frontend-at-c1"):
    return f"{url}/api/v1/namespaces/default/services/{name}?fieldManager=clipper"


def test_unknown_paths_are_404(url):
    assert (
        requests.get(f"{url}/apis/extensions/v1beta1/namespaces/default/deployments", timeout=5).status_code
        == 404
    )
    assert requests.get(f"{url}/api/v1/namespaces/default/widgets", timeout=5).status_code == 404
    r = requests.get(f"{url}/api/v1/namespaces/default/services/nope", timeout=5)
    assert r.status_code == 404 and r.json()["reason"] == "NotFound"


def test_wrong_content_type_is_415(url):
    body = json.dumps(o.mgmt_service(S))
    r = requests.patch(
        svc_url(url), data=body, headers={"Content-Type": "application/json-patch+json"}, timeout=5
    )
    assert r.status_code == 415


def test_malformed_and_mismatched_bodies_are_400(url):
    assert requests.patch(svc_url(url), data="{not: [yaml", headers=APPLY, timeout=5).status_code == 400
    body = json.dumps(o.mgmt_service(S))
    assert requests.patch(svc_url(url, "other"), data=body, headers=APPLY, timeout=5).status_code == 400


def test_invalid_objects_are_422(url):
    bad = o.mgmt_service(S)
    bad["spec"]["ports"][0]["name"] = "1338"  # the original's port name is no longer valid
    r = requests.patch(svc_url(url), data=json.dumps(bad), headers=APPLY, timeout=5)
    assert r.status_code == 422
    bad = o.mgmt_service(S)
    bad["spec"]["selectr"] = {}
    assert requests.patch(svc_url(url), data=json.dumps(bad), headers=APPLY, timeout=5).status_code == 422
    no_manager = svc_url(url).split("?")[0]
    r = requests.patch(no_manager, data=json.dumps(o.mgmt_service(S)), headers=APPLY, timeout=5)
    assert r.status_code == 422


def test_valid_apply_then_get(url):
    r = requests.patch(svc_url(url), data=json.dumps(o.mgmt_service(S)), headers=APPLY, timeout=5)
    assert r.status_code == 200, r.text
    got = requests.get(svc_url(url).split("?")[0], timeout=5).json()
    assert got["spec"]["ports"][0]["nodePort"] > 0
