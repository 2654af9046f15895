"""Objects the manager creates, checked against the real programs they configure (not the API double)."""

from __future__ import annotations

import shutil
import subprocess
import time

import pytest
import redis

from clipper.net import free_port
from clipper_admin.kubernetes import objects
from clipper_admin.kubernetes.settings import ObjectSettings


def test_redis_pod_accepts_clients_from_other_pods(tmp_path):
    """A redis-server started with the Deployment's args must not be in protected mode: in protected
    mode it answers only loopback clients, and the frontends connect from other pods."""
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not installed (apt-get install redis-server)")
    dep = objects.redis_deployment(ObjectSettings(cluster="c1", namespace="ns"), "clipper/redis:0.1.0")
    container = dep["spec"]["template"]["spec"]["containers"][0]
    port = free_port()
    args = [a if a != "/data" else str(tmp_path) for a in container["args"]]
    args[args.index("--port") + 1] = str(port)
    proc = subprocess.Popen([*container["command"], *args, "--bind", "127.0.0.1"], stdout=subprocess.DEVNULL)
    try:
        client = redis.Redis(port=port, socket_timeout=5)
        deadline = time.monotonic() + 30
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        assert client.config_get("protected-mode") == {"protected-mode": "no"}
    finally:
        proc.terminate()
        proc.wait(timeout=30)
