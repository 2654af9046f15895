"""Docker backend helpers that need no engine: ports and the model-image Dockerfile."""

from __future__ import annotations

import os
import socket
import sys
import time

from clipper_admin.docker.ports import find_unbound_port, processes, userland_proxy_pids
from clipper_admin.image_builder import _requirements, dockerfile_labels, render_dockerfile


def test_find_unbound_port_returns_a_free_requested_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert find_unbound_port(port) == port


def test_find_unbound_port_moves_off_a_taken_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        taken = s.getsockname()[1]
        assert find_unbound_port(taken) != taken
        other = find_unbound_port(taken, increment=True)
        assert other > taken


def test_model_dockerfile_only_adds_the_model_and_its_wheels():
    plain = render_dockerfile("clipper/python311-closure-container:1", with_wheels=False, user="clipper")
    assert plain.splitlines() == ["FROM clipper/python311-closure-container:1", "COPY model/ /model/"]
    with_reqs = render_dockerfile("base:1", with_wheels=True, user="clipper").splitlines()
    assert any("--no-index" in line for line in with_reqs)
    # the model directory (a new function) comes last: the requirements' layers stay cached
    assert with_reqs[-2:] == ["USER clipper", "COPY model/ /model/"]


def test_model_dockerfile_sets_all_labels_in_one_final_step():
    labels = {"ai.clipper.container.label": "c", "odd": 'a $HOME "q" back\\slash ${x}'}
    lines = render_dockerfile("base:1", with_wheels=False, user="clipper", labels=labels).splitlines()
    assert lines[1:] == [
        "COPY model/ /model/",
        'LABEL "ai.clipper.container.label"="c" "odd"="a \\$HOME \\"q\\" back\\\\slash \\${x}"',
    ]
    # what a LABEL cannot carry is left to the engine's labels option (the caller's fallback)
    assert dockerfile_labels({"a": "two\nlines"}) is None
    assert dockerfile_labels({}) is None and dockerfile_labels(None) is None
    assert "LABEL" not in render_dockerfile("base:1", False, "clipper", {"a": "two\nlines"})


def test_requirements_merge_file_and_pkgs_to_install(tmp_path):
    (tmp_path / "requirements.txt").write_text("# captured\nsix==1.16.0\n\n")
    assert _requirements(str(tmp_path), ["tabulate"]) == ["six==1.16.0", "tabulate"]
    assert _requirements(str(tmp_path / "missing"), None) == []


def test_prometheus_config_dir_targets_and_removal(tmp_path, monkeypatch):
    """The per-cluster directory holds the config and the replicas' file_sd targets; removal only
    ever touches a directory of that shape (a label naming another path leaves it alone)."""
    import json
    import tempfile

    from ruamel.yaml import YAML

    from clipper_admin.docker import prometheus

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    config_dir = prometheus.make_config_dir("my cluster/1")
    assert os.path.dirname(config_dir) == str(tmp_path.resolve())
    assert os.path.basename(config_dir).startswith("clipper-prometheus-my_cluster_1-")
    assert os.stat(config_dir).st_mode & 0o777 == 0o755  # the container's user reads it
    path = prometheus.write_config(config_dir, ["query_frontend-1:1337"])
    config = YAML(typ="safe").load(open(path))
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["query"]["static_configs"] == [{"targets": ["query_frontend-1:1337"]}]
    sd_file = jobs["model-containers"]["file_sd_configs"][0]["files"][0]
    assert sd_file == f"{prometheus.CONTAINER_CONFIG_DIR}/{prometheus.TARGETS_FILE}"
    targets = os.path.join(config_dir, prometheus.TARGETS_FILE)
    assert json.load(open(targets)) == []

    groups = prometheus.model_targets([("m_1-7", "m", "1"), ("m_1-3", "m", "1")], 1390)
    prometheus.write_targets(config_dir, groups)
    assert json.load(open(targets)) == [
        {"targets": ["m_1-3:1390"], "labels": {"job": "m_1-3", "model_name": "m", "model_version": "1"}},
        {"targets": ["m_1-7:1390"], "labels": {"job": "m_1-7", "model_name": "m", "model_version": "1"}},
    ]
    # no temporary files left behind
    assert sorted(os.listdir(config_dir)) == [prometheus.TARGETS_FILE, prometheus.CONFIG_FILE]
    assert os.stat(targets).st_mode & 0o777 == 0o644

    foreign = tmp_path / "elsewhere"
    foreign.mkdir()
    (foreign / "prometheus.yml").write_text("x")
    assert prometheus.config_dir_of(str(foreign / "prometheus.yml")) is None
    prometheus.remove_config(str(foreign / "prometheus.yml"))
    prometheus.remove_config("/etc/passwd")
    assert (foreign / "prometheus.yml").exists() and os.path.exists("/etc/passwd")

    assert prometheus.config_dir_of(path) == config_dir
    prometheus.remove_config(path)
    assert not os.path.exists(config_dir)
    prometheus.remove_config(path)  # a second stop_all: nothing left, no error
    legacy = tmp_path / "clipper-prometheus-x1y2.yml"  # the single file older versions wrote
    legacy.write_text("x")
    prometheus.remove_config(str(legacy))
    assert not legacy.exists()


def test_host_network_query_frontend_is_refused_off_linux(monkeypatch):
    import pytest

    from clipper_admin import ClipperException
    from clipper_admin.docker.docker_container_manager import DockerContainerManager

    monkeypatch.setattr("sys.platform", "darwin")
    with pytest.raises(ClipperException, match="query_frontend_host_network needs a Linux Docker engine"):
        DockerContainerManager(query_frontend_host_network=True)
    assert not DockerContainerManager().query_frontend_host_network  # the default publishes the ports


def _fake_proc(root, processes: dict[str, list[str]]):
    for pid, argv in processes.items():
        (root / pid).mkdir()
        (root / pid / "cmdline").write_bytes("\0".join(argv).encode() + b"\0")
    return root


def test_the_userland_proxy_of_a_port_is_found_by_its_arguments(tmp_path):
    proxy = ["/usr/bin/docker-proxy", "-proto", "tcp", "-host-ip", "127.0.0.1", "-host-port"]
    proc = _fake_proc(
        tmp_path,
        {
            "11": [*proxy, "1337", "-container-ip", "172.18.0.3", "-container-port", "1337"],
            "12": [*proxy, "13370", "-container-ip", "172.18.0.3", "-container-port", "1337"],
            "13": ["/usr/bin/not-docker-proxy", "-host-port", "1337"],
            "14": ["/usr/sbin/dockerd", "--userland-proxy=false"],
            "15": [],  # a kernel thread: empty cmdline
            "self": [*proxy, "1337"],  # not a pid
        },
    )
    (proc / "16").mkdir()  # a process that exited between listing and reading
    assert userland_proxy_pids(1337, proc=proc) == [11]
    assert userland_proxy_pids(13370, proc=proc) == [12]
    assert userland_proxy_pids(7000, proc=proc) == []
    assert processes("dockerd", proc=proc) == {14: ["--userland-proxy=false"]}
    assert userland_proxy_pids(1337, proc=tmp_path / "no-proc") == []


def test_a_cluster_whose_query_port_a_userland_proxy_relays_says_how_to_avoid_it(caplog):
    """The manager's start-up hint, against a real process named as the engine's proxy is."""
    import subprocess

    from clipper_admin import DockerContainerManager

    port = find_unbound_port()
    cm = DockerContainerManager(cluster_name="proxy-hint", clipper_query_port=port)
    with caplog.at_level("WARNING"):
        cm._warn_if_relayed_by_userland_proxy()
    assert "userland proxy" not in caplog.text

    relay = subprocess.Popen(
        [
            "bash",
            "-c",
            f'exec -a docker-proxy "$0" -c "import time; time.sleep(60)" -host-port {port}',
            sys.executable,
        ],
    )
    try:
        deadline = time.monotonic() + 10
        while not userland_proxy_pids(port) and time.monotonic() < deadline:
            time.sleep(0.01)
        with caplog.at_level("WARNING"):
            cm._warn_if_relayed_by_userland_proxy()
    finally:
        relay.kill()
        relay.wait()
    assert (
        f"query port 127.0.0.1:{port} through its userland proxy (docker-proxy, pid {relay.pid})"
        in caplog.text
    )
    assert '"userland-proxy": false' in caplog.text and "query_frontend_host_network=True" in caplog.text
