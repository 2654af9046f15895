"""``query_frontend_host_network=True``: the query frontend on the host's network serves predictions
through model containers on the cluster's network (issue 18: no ``docker-proxy`` in the query path)."""

from __future__ import annotations

import socket

import clipper
from clipper_admin import ClipperConnection
from clipper_admin.container_manager import CLIPPER_QUERY_FRONTEND_CONTAINER_LABEL
from clipper_admin.docker.docker_container_manager import DockerContainerManager

from .helpers import wait_for_output, write_model_dir

BASE = f"clipper/python311-closure-container:{clipper.__version__}"


def feature_sum(xs):
    return [str(sum(x)) for x in xs]


def _refused(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return False
    except ConnectionRefusedError:
        return True


def test_query_frontend_on_the_host_network_serves(make_manager, tmp_path, docker_client):
    cm = make_manager(query_frontend_host_network=True)
    conn = ClipperConnection(cm)
    conn.start_clipper()
    conn.register_application(name="hn", input_type="doubles", default_output="-1.0", slo_micros=100000)
    model_dir = write_model_dir(tmp_path / "sum", feature_sum)
    conn.build_and_deploy_model("sum", "1", "doubles", model_dir, BASE)
    conn.link_model_to_app("hn", "sum")
    wait_for_output(conn.get_query_addr(), "hn", {"input": [1.0, 2.0]}, "3.0")

    (frontend,) = cm._containers(CLIPPER_QUERY_FRONTEND_CONTAINER_LABEL)
    assert frontend.attrs["HostConfig"]["NetworkMode"] == "host"
    assert not frontend.attrs["HostConfig"].get("PortBindings")  # nothing published: no docker-proxy
    gateway = cm._network_gateway()
    # the REST port listens on publish_host (127.0.0.1) only, as a published port did: not on the
    # gateway address the RPC port listens on for the model containers
    assert _refused(gateway, cm.clipper_query_port)
    assert not _refused(gateway, cm.clipper_rpc_port)

    # a manager of another process (connect(), not start_clipper) finds where replicas must connect
    other = ClipperConnection(
        DockerContainerManager(cluster_name=cm.cluster_name, docker_network=cm.docker_network)
    )
    other.connect()
    other.set_num_replicas("sum", 2, "1")  # returns once both replicas are healthy (connected)
    replicas = other.cm._get_replicas("sum", "1")
    assert len(replicas) == 2
    for replica in replicas:
        env = dict(item.split("=", 1) for item in replica.attrs["Config"]["Env"])
        assert (env["CLIPPER_IP"], env["CLIPPER_PORT"]) == (gateway, str(cm.clipper_rpc_port))
    wait_for_output(conn.get_query_addr(), "hn", {"input": [2.0, 2.5]}, "4.5")
