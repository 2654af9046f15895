"""The launch specification: settings -> argv/env of each server, and how each backend uses it."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest

from clipper.query_frontend.__main__ import build_parser as query_parser
from clipper_admin import launch
from clipper_admin.deployers.pyspark import MIN_REPLICA_TIMEOUT_S, patient_replica_wait
from clipper_admin.docker.docker_container_manager import DockerContainerManager
from clipper_admin.kubernetes import objects
from clipper_admin.kubernetes.kubernetes_container_manager import KubernetesContainerManager
from clipper_admin.kubernetes.settings import ObjectSettings, determine_resources, determine_service_types
from clipper_admin.launch import FrontendSettings, Limits, ReplicaSettings, Timeouts
from clipper_admin.local.local_container_manager import LocalContainerManager

BASE = dict(store="sqlite:////s/config.db", management_port=11, query_port=12, rpc_port=13)


@pytest.mark.parametrize(
    "settings, args, env, secret_env",
    [
        (
            FrontendSettings(**BASE, host="127.0.0.1", admin_token="file", admin_token_file="/c/admin_token"),
            ["--store", "sqlite:////s/config.db", "--host", "127.0.0.1", "--port", "11"],
            {"CLIPPER_ADMIN_TOKEN_FILE": "/c/admin_token"},
            {},
        ),
        (
            FrontendSettings(**BASE, admin_token="env"),
            ["--store", "sqlite:////s/config.db", "--port", "11"],
            {},
            {"CLIPPER_ADMIN_TOKEN": "token"},
        ),
        (FrontendSettings(**BASE), ["--store", "sqlite:////s/config.db", "--port", "11"], {}, {}),
    ],
)
def test_management_frontend(settings, args, env, secret_env):
    spec = launch.management_frontend(settings)
    assert (spec.module, list(spec.args), dict(spec.env), dict(spec.secret_env)) == (
        "clipper.management_frontend", args, env, secret_env,
    )  # fmt: skip


COMMON_QUERY_ARGS = [
    "--prediction-cache-size", "100", "--thread_pool_size", "2", "--timeout_request", "6",
    "--timeout_content", "7",
]  # fmt: skip


@pytest.mark.parametrize(
    "extra, tail, secret_env",
    [
        ({"rpc_auth": "none"}, ["--rpc-auth", "none"], {}),
        ({"rpc_keys_file": "/c/rpc_keys.json"}, ["--rpc-auth", "curve", "--rpc-keys-file", "/c/rpc_keys.json"], {}),
        ({}, ["--rpc-auth", "curve"], {"CLIPPER_RPC_KEYS": "frontend"}),
        (
            {"rpc_auth": "none", "limits": Limits(max_batch_inputs=5, max_connections=6,
                                                  rpc_max_message_bytes=1024, batch_timeout_s=0.5)},
            ["--max-batch-inputs", "5", "--max-connections", "6", "--rpc-max-message-bytes", "1024",
             "--batch-timeout", "0.5", "--rpc-auth", "none"],
            {},
        ),
    ],
)  # fmt: skip
def test_query_frontend(extra, tail, secret_env):
    s = FrontendSettings(
        **BASE, cache_size_bytes=100, thread_pool_size=2, timeout_request=6, timeout_content=7, **extra
    )
    spec = launch.query_frontend(s)
    head = ["--store", "sqlite:////s/config.db", "--port", "12", "--rpc-port", "13"]
    assert list(spec.args) == head + COMMON_QUERY_ARGS + tail
    assert dict(spec.secret_env) == secret_env and spec.env == {}
    # every flag is one the query frontend accepts, with the value it was given
    parsed = query_parser().parse_args(list(spec.args))
    assert (parsed.prediction_cache_size, parsed.thread_pool_size, parsed.rpc_port) == (100, 2, 13)


@pytest.mark.parametrize(
    "replica, env, secret_env",
    [
        (
            ReplicaSettings("m", "1", "doubles", "127.0.0.1", 7000, model_path="/m", rpc_keys="file",
                            rpc_keys_file="/c/rpc_keys.json"),
            {"CLIPPER_MODEL_NAME": "m", "CLIPPER_MODEL_VERSION": "1", "CLIPPER_IP": "127.0.0.1",
             "CLIPPER_PORT": "7000", "CLIPPER_INPUT_TYPE": "doubles", "CLIPPER_MODEL_PATH": "/m",
             "CLIPPER_RPC_KEYS_FILE": "/c/rpc_keys.json"},
            {},
        ),
        (
            ReplicaSettings("m", "2", "ints", "query_frontend-1", metrics_port=1390, rpc_keys="secret"),
            {"CLIPPER_MODEL_NAME": "m", "CLIPPER_MODEL_VERSION": "2", "CLIPPER_IP": "query_frontend-1",
             "CLIPPER_INPUT_TYPE": "ints", "CLIPPER_METRICS_PORT": "1390"},
            {"CLIPPER_RPC_KEYS": "replica"},
        ),
    ],
)  # fmt: skip
def test_model_replica(replica, env, secret_env):
    spec = launch.model_replica(replica)
    assert (spec.module, spec.args, dict(spec.env), dict(spec.secret_env)) == (
        "clipper.container", (), env, secret_env,
    )  # fmt: skip


def test_settings_are_checked():
    with pytest.raises(ValueError, match="admin_token_file"):
        FrontendSettings(**BASE, admin_token="file")
    with pytest.raises(ValueError, match="frontend_start_s"):
        Timeouts(frontend_start_s=0)
    with pytest.raises(ValueError, match="rpc_keys_file"):
        launch.model_replica(ReplicaSettings("m", "1", "doubles", "h", rpc_keys="file"))


@pytest.mark.parametrize("flag", ["--timeout_request", "--timeout_content"])
def test_the_query_frontend_refuses_a_timeout_that_is_not_positive(flag, tmp_path):
    from clipper.query_frontend.__main__ import frontend_from_args

    args = query_parser().parse_args(
        ["--store", f"sqlite:///{tmp_path}/c.db", "--rpc-auth", "none", flag, "0"]
    )
    with pytest.raises(SystemExit, match=f"{flag} must be a positive number of seconds"):
        frontend_from_args(args)


# --- each backend's spelling of the same settings --------------------------------------------------


def test_local_backend_argv_and_env(tmp_path):
    cm = LocalContainerManager("c", clipper_rpc_port=7123, state_dir=str(tmp_path))
    s = FrontendSettings(**BASE, host="127.0.0.1", rpc_host="127.0.0.1", frontend_id="query",
                         rpc_keys_file="/k.json")  # fmt: skip
    entry = cm._process_spec(launch.query_frontend(s))
    assert entry["argv"][:3] == [sys.executable, "-m", "clipper.query_frontend"]
    assert entry["argv"][3:9] == ["--store", "sqlite:////s/config.db", "--host", "127.0.0.1", "--port", "12"]
    assert "--prediction-cache-size" in entry["argv"] and entry["env"] == {}
    model = cm._model_spec("m", "1", "doubles", tmp_path / "m")
    assert model["argv"] == [sys.executable, "-m", "clipper.container"]
    assert model["env"]["CLIPPER_PORT"] == "7123" and model["cwd"] == str(tmp_path / "m")
    assert model["env"]["CLIPPER_RPC_KEYS_FILE"] == str(cm.rpc_keys_file)  # a path, never the keys


def test_the_local_backend_keeps_tcp_when_its_directory_is_too_long_for_a_socket(tmp_path):
    """A Unix socket's path holds at most 107 bytes (not characters): longer cluster directories
    keep their replicas on the CURVE-protected TCP port."""
    short = LocalContainerManager("c", state_dir=str(tmp_path))
    assert short._rpc_socket_path() == str(tmp_path.resolve() / "c" / "rpc.sock")
    fill = 107 - len(str(tmp_path.resolve() / "c" / "rpc.sock"))
    fits = tmp_path / ("d" * (fill - 1))  # + "/": exactly 107 bytes
    assert len(LocalContainerManager("c", state_dir=str(fits))._rpc_socket_path() or "") == 107
    too_long = tmp_path / ("é" * ((fill - 1) // 2 + 1))  # fewer characters, more bytes
    assert len(str(too_long)) <= len(str(fits))
    assert LocalContainerManager("c", state_dir=str(too_long))._rpc_socket_path() is None


def test_docker_backend_argv_and_env_without_talking_to_docker(monkeypatch):
    import docker

    monkeypatch.setattr(docker, "from_env", lambda: pytest.fail("the constructor talked to Docker"))
    cm = DockerContainerManager("c", redis_ip="redis-c", limits=Limits(max_connections=9))
    spec = launch.query_frontend(cm._frontend_settings(cache_size_bytes=5))
    assert list(spec.args[:6]) == ["--store", "redis://redis-c:6379", "--port", "1337", "--rpc-port", "7000"]
    assert "--max-connections" in spec.args and "--prediction-cache-size" in spec.args
    assert cm._environment(spec, {"frontend": "KEYS"}) == {"CLIPPER_RPC_KEYS": "KEYS"}
    mgmt = launch.management_frontend(cm._frontend_settings(admin_token="env"))
    assert cm._environment(mgmt, {"token": "T"}) == {"CLIPPER_ADMIN_TOKEN": "T"}


def test_kubernetes_backend_argv_and_env():
    s = ObjectSettings(cluster="c", namespace="ns", service_types=determine_service_types(None),
                       resources=determine_resources(None), redis_port=6379)  # fmt: skip
    dep = objects.query_deployment(s, 0, "img", "redis-at-c", 6379, 5, 1, 5, 300, "rpc-keys-at-c",
                                   Limits(max_batch_inputs=3))  # fmt: skip
    [c] = dep["spec"]["template"]["spec"]["containers"]
    expected = launch.query_frontend(
        objects.frontend_settings("redis-at-c", 6379, frontend_id="query-frontend-0-at-c", cache_size_bytes=5,
                                  limits=Limits(max_batch_inputs=3))
    )  # fmt: skip
    assert c["command"] == ["python", "-m", "clipper.query_frontend"] and c["args"] == list(expected.args)
    assert c["env"] == [
        {
            "name": "CLIPPER_RPC_KEYS",
            "valueFrom": {"secretKeyRef": {"name": "rpc-keys-at-c", "key": "frontend"}},
        }
    ]
    mgmt = objects.mgmt_deployment(s, "img", "redis-at-c", 6379, "admin-token-at-c")
    [m] = mgmt["spec"]["template"]["spec"]["containers"]
    assert m["env"] == [
        {
            "name": "CLIPPER_ADMIN_TOKEN",
            "valueFrom": {"secretKeyRef": {"name": "admin-token-at-c", "key": "token"}},
        }
    ]


# --- timeouts ---------------------------------------------------------------------------------------


def test_original_timeout_keywords_map_to_one_timeouts_setting(tmp_path):
    local = LocalContainerManager("c", state_dir=str(tmp_path), start_timeout=5, replica_timeout=7)
    assert local.timeouts == Timeouts(5, 7) and (local.start_timeout, local.replica_timeout) == (5, 7)
    k8s = KubernetesContainerManager("c", wait_timeout_s=9, api=object())
    assert k8s.timeouts == Timeouts(9, 9) and k8s.wait_timeout_s == 9
    docker_cm = DockerContainerManager("c", timeouts=Timeouts(3, 4))
    assert docker_cm.start_timeout == 3 and docker_cm.timeouts.replica_connect_s == 4


@pytest.mark.parametrize("backend", ["local", "docker", "kubernetes"])
def test_the_pyspark_wait_is_honoured_on_every_backend(tmp_path, backend):
    cm = {
        "local": lambda: LocalContainerManager(
            "c", state_dir=str(tmp_path), start_timeout=5, replica_timeout=5
        ),
        "docker": lambda: DockerContainerManager("c", timeouts=Timeouts(5, 5)),
        "kubernetes": lambda: KubernetesContainerManager("c", wait_timeout_s=5, api=object()),
    }[backend]()

    class Conn:
        pass

    conn = Conn()
    conn.cm = cm
    with patient_replica_wait(conn):
        assert cm.timeouts == Timeouts(5, MIN_REPLICA_TIMEOUT_S)
    assert cm.timeouts == Timeouts(5, 5)


def test_kubernetes_model_waits_use_the_replica_timeout():
    cm = KubernetesContainerManager("c", timeouts=Timeouts(1, 2), api=object(), local_cluster=True)
    seen = []
    cm._wait_available = lambda deps, replicas, message, timeout=None: seen.append(timeout)
    cm._apply = lambda *objs: None
    cm.deploy_model("m", "1", "doubles", "reg.example.com/m:1")
    assert seen == [2]


# --- no side effects on import ------------------------------------------------------------------


def test_importing_clipper_admin_configures_no_logging():
    code = (
        "import logging, clipper_admin, clipper_admin.local, clipper_admin.docker.docker_container_manager\n"
        "root = logging.getLogger()\n"
        "print(len(root.handlers), root.level)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["0", str(logging.WARNING)]
