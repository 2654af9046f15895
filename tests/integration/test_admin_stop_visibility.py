"""``stop_*`` on the local backend: when the call returns, the stopped versions and their replicas
are gone from ``get_all_models`` / ``get_all_model_replicas`` (no purge delay to wait for)."""

from __future__ import annotations

import pytest

from clipper_admin.deployers import python as python_deployer

from .admin_local_fixtures import clipper_home, start_cluster

pytestmark = pytest.mark.slow


def echo_len(xs):
    return [str(len(x)) for x in xs]


@pytest.fixture(scope="module")
def conn(tmp_path_factory):
    with clipper_home(tmp_path_factory.mktemp("clipper_home")):
        conn = start_cluster("stopvis", None)
        try:
            python_deployer.deploy_python_closure(
                conn, name="m", version=1, input_type="doubles", func=echo_len
            )
            yield conn
        finally:
            conn.stop_all()


def listed(conn) -> tuple[set[str], set[str]]:
    models = {f"{m['model_name']}:{m['model_version']}" for m in conn.get_all_models(verbose=True)}
    assert set(conn.get_all_models()) == models
    replicas = {f"{r['model_name']}:{r['model_version']}" for r in conn.get_all_model_replicas(verbose=True)}
    return models, replicas


@pytest.fixture(scope="module")
def image(conn) -> str:
    """The closure's built model, reused for every version below (no rebuild)."""
    return conn.get_model_info("m", "1")["container_name"]


def test_stopped_versions_are_unlisted_when_the_call_returns(conn, image):
    for round_ in range(3):
        v = [str(10 * round_ + i) for i in (2, 3, 4)]
        # three versions with one replica each (the last is current), and a second model
        for version in v:
            conn.deploy_model("m", version, "doubles", image, num_replicas=1)
        conn.deploy_model("other", v[0], "doubles", image, num_replicas=1)
        models, replicas = listed(conn)
        assert {f"m:{x}" for x in v} | {f"other:{v[0]}"} <= models & replicas

        conn.stop_inactive_model_versions(["m"])
        models, replicas = listed(conn)
        assert [x for x in models if x.startswith("m:")] == [f"m:{v[2]}"], models
        assert [x for x in replicas if x.startswith("m:")] == [f"m:{v[2]}"], replicas
        assert conn.get_model_info("m", v[0]) is None
        assert conn.get_current_model_version("m") == v[2]

        conn.stop_versioned_models({"m": [v[2]]})
        models, replicas = listed(conn)
        assert not [x for x in models | replicas if x.startswith("m:")], (models, replicas)

        conn.stop_models(["other"])
        models, replicas = listed(conn)
        assert models == set() and replicas == set(), (models, replicas)


def test_stop_all_model_containers_unlists_everything_at_once(conn, image):
    conn.deploy_model("x", "1", "doubles", image, num_replicas=1)
    conn.register_model("y", "1", "doubles")  # a version without replicas
    models, replicas = listed(conn)
    assert {"x:1", "y:1"} <= models and "x:1" in replicas
    conn.stop_all_model_containers()
    assert listed(conn) == (set(), set())
