"""Docker backend helpers that need no engine: ports and the model-image Dockerfile."""

from __future__ import annotations

import socket

from clipper_admin.docker.image_builder import _requirements, render_dockerfile
from clipper_admin.docker.ports import find_unbound_port


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
    with_reqs = render_dockerfile("base:1", with_wheels=True, user="clipper")
    assert "--no-index" in with_reqs and with_reqs.rstrip().endswith("USER clipper")


def test_requirements_merge_file_and_pkgs_to_install(tmp_path):
    (tmp_path / "requirements.txt").write_text("# captured\nsix==1.16.0\n\n")
    assert _requirements(str(tmp_path), ["tabulate"]) == ["six==1.16.0", "tabulate"]
    assert _requirements(str(tmp_path / "missing"), None) == []
