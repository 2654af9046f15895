"""The whole git workflow end to end on the Docker backend: the same steps and assertions as the local
one (tests/integration/test_gitops_workflow.py), with containers and model images built per version."""

from __future__ import annotations

import os
import uuid

import pytest

from clipper.net import free_port
from tests.integration.test_gitops_workflow import docs, run_workflow
from tests.integration.test_reconciler import MODEL_SRC

pytestmark = pytest.mark.slow


def test_the_git_workflow_end_to_end_on_docker(tmp_path, test_network):
    from clipper_admin import ClipperConnection
    from clipper_admin.docker.docker_container_manager import DockerContainerManager

    cluster = f"t-gitops-{uuid.uuid4().hex[:8]}"
    ports = (free_port(), free_port(), free_port())
    extra = f"backend: docker, docker: {{network: {test_network}, prometheusPort: {free_port()}}}"

    def docker_docs(**kw: object) -> str:
        text = docs(ports, **kw)  # type: ignore[arg-type]
        return text.replace("{name: rt}", f"{{name: {cluster}}}", 1).replace("backend: local", extra, 1)

    def connect() -> ClipperConnection:
        conn = ClipperConnection(DockerContainerManager(cluster_name=cluster, docker_network=test_network))
        conn.connect()
        return conn

    work = tmp_path / "manifests"
    (work / "models").mkdir(parents=True)
    (work / "models" / "sum_model.py").write_text(MODEL_SRC.format(factor=1))
    env = {**os.environ, "CLIPPER_HOME": str(tmp_path / "home")}
    try:
        run_workflow(work, env, ports[0], docker_docs, connect)
    finally:
        DockerContainerManager(cluster_name=cluster, docker_network=test_network).stop_all(graceful=False)
