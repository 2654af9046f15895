"""Cluster lifecycle on a real engine: start errors, stop_all isolation, Redis persistence."""

from __future__ import annotations

import docker
import pytest

from clipper_admin import ClipperConnection, ClipperException
from clipper_admin.container_manager import CLIPPER_DOCKER_LABEL


def _cluster_objects(client, cluster):
    flt = {"label": f"{CLIPPER_DOCKER_LABEL}={cluster}"}
    return client.containers.list(all=True, filters=flt), client.volumes.list(filters=flt)


def test_stop_all_removes_this_cluster_only(make_manager, docker_client, test_network):
    cm = make_manager()
    conn = ClipperConnection(cm)
    conn.start_clipper()
    containers, volumes = _cluster_objects(docker_client, cm.cluster_name)
    names = sorted(c.name.split("-")[0] for c in containers)
    assert {"mgmt_frontend", "query_frontend", "redis"} <= set(names)
    # Redis' append-only file; the tmpfs that carries the frontend's RPC socket to the replicas
    assert sorted(v.name for v in volumes) == [f"clipper-{cm.cluster_name}-{k}" for k in ("redis", "rpc")]
    # labels carry the host ports, as in the original
    query = next(c for c in containers if c.name.startswith("query_frontend-"))
    assert query.labels["ai.clipper.query_frontend.query.port"] == str(cm.clipper_query_port)
    assert query.ports["1337/tcp"][0]["HostIp"] == "127.0.0.1"

    bystander = docker_client.containers.run(
        "clipper/debian-base:bookworm",
        ["sleep", "600"],
        detach=True,
        labels={CLIPPER_DOCKER_LABEL: f"{cm.cluster_name}-other"},
        network=test_network,
    )
    try:
        conn.stop_all()
        containers, volumes = _cluster_objects(docker_client, cm.cluster_name)
        assert containers == [] and volumes == []
        bystander.reload()
        assert bystander.status == "running"
    finally:
        bystander.remove(force=True)


def test_start_twice_is_refused_and_connect_to_missing_cluster_is_clear(make_manager):
    cm = make_manager()
    ClipperConnection(cm).start_clipper()
    again = make_manager(cluster_name=cm.cluster_name)
    with pytest.raises(ClipperException, match="already exists"):
        again.start_clipper(None, None, None, 0, 1, 5, 300, 1)
    with pytest.raises(ClipperException, match="No running Clipper cluster named nope"):
        make_manager(cluster_name="nope").connect()


def test_user_errors_are_clipper_exceptions(make_manager):
    with pytest.raises(ClipperException, match="host"):
        make_manager(docker_network="host")
    with pytest.raises(ClipperException, match="name"):
        make_manager(extra_container_kwargs={"name": "x"})
    cm = make_manager()
    with pytest.raises(ClipperException, match="scale-out"):
        cm.start_clipper(None, None, None, 0, 1, 5, 300, 2)
    with pytest.raises(ClipperException, match="not found"):
        cm.start_clipper("clipper/no-such-image:0", "clipper/no-such-image:0", None, 0, 1, 5, 300, 1)
    assert (
        docker.from_env().containers.list(
            all=True, filters={"label": f"{CLIPPER_DOCKER_LABEL}={cm.cluster_name}"}
        )
        == []
    )


def test_failed_start_quotes_the_container_logs(make_manager):
    cm = make_manager()
    # the closure container exits at once without model environment: a frontend that dies at start
    from clipper_admin.version import __version__

    bad = f"clipper/python311-closure-container:{__version__}"
    with pytest.raises(ClipperException, match="Last log lines"):
        cm.start_clipper(bad, bad, None, 0, 1, 5, 300, 1)
