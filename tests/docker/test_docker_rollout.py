"""Progressive delivery on the Docker backend: the local scenarios of
tests/integration/test_reconciler_rollout.py with containers and a model image built per version. A
canary of a good version advances to 100 % with no failed request; then a version that raises on 30 %
of its inputs is rolled back within its first step, the previous version serving alone again."""

from __future__ import annotations

import os
import uuid

import pytest

from clipper.net import free_port
from tests.integration.test_reconciler import MODEL_SRC, clipper
from tests.integration.test_reconciler_rollout import (
    BAD_SRC,
    GOOD_SRC,
    Hammer,
    apply_rolled_back_under_load,
    background_apply,
    canary,
    rollout_status,
)

from .helpers import wait_for

pytestmark = pytest.mark.slow


def test_a_canary_advances_on_docker_and_a_failing_one_rolls_back(tmp_path, test_network, docker_client):
    from clipper_admin import ClipperConnection
    from clipper_admin.container_manager import (
        CLIPPER_DOCKER_LABEL,
        CLIPPER_MODEL_CONTAINER_LABEL,
        create_model_container_label,
    )
    from clipper_admin.docker.docker_container_manager import DockerContainerManager

    cluster = f"t-rollout-{uuid.uuid4().hex[:8]}"
    ports = (free_port(), free_port(), free_port())
    extra = f"backend: docker, docker: {{network: {test_network}, prometheusPort: {free_port()}}}"
    work = tmp_path / "manifests"
    (work / "models").mkdir(parents=True)
    (work / "models" / "sum_model.py").write_text(MODEL_SRC.format(factor=1))
    f = str(work / "all.yaml")
    env = {**os.environ, "CLIPPER_HOME": str(tmp_path / "home")}

    def write(steps: str) -> None:
        text = canary(ports, steps).replace("{name: rt}", f"{{name: {cluster}}}", 1)
        (work / "all.yaml").write_text(text.replace("backend: local", extra, 1))

    def replicas(conn: ClipperConnection) -> set[str]:
        """The versions with a registered replica, once each has exactly one running container."""
        registered = {r["model_version"] for r in conn.get_all_model_replicas(verbose=True)}
        running = [c.labels[CLIPPER_MODEL_CONTAINER_LABEL] for c in docker_client.containers.list(
            filters={"label": f"{CLIPPER_DOCKER_LABEL}={cluster}"}) if CLIPPER_MODEL_CONTAINER_LABEL in c.labels]  # fmt: skip
        return (
            registered
            if sorted(running) == sorted(create_model_container_label("sum-model", v) for v in registered)
            else set()
        )

    try:
        write("[{weight: 20, pause: 3}, {weight: 60, pause: 3}]")
        clipper("apply", "-f", f, env=env, timeout=600, check=0)
        conn = ClipperConnection(DockerContainerManager(cluster_name=cluster, docker_network=test_network))
        conn.connect()
        old = conn.get_current_model_version("sum-model")

        # 1. a good version: every step's analysis passes, it becomes current, no request fails
        (work / "models" / "sum_model.py").write_text(GOOD_SRC)
        with Hammer(ports[0]) as h:
            wait_for(lambda: h.total > 20, 120, "the first answers")
            proc = background_apply(f, env)
            progressing = wait_for(
                lambda: (s := rollout_status(f, env)) and s["phase"] == "Progressing" and s,
                400,
                "the rollout to start (the new version's image built and its replica up)",
            )
            assert progressing["strategy"] == "canary" and progressing["from_version"] == old
            out, _ = proc.communicate(timeout=600)
        assert proc.returncode == 0, out
        assert "step 1/2: 20%" in out and "step 2 passed" in out, out
        good = conn.get_current_model_version("sum-model")
        assert good == progressing["to_version"] != old
        final = rollout_status(f, env)
        assert final is not None and final["phase"] == "Succeeded" and final["weight"] == 100
        assert final["numbers"]["requests"] >= 15 and final["numbers"]["errors"] == 0, final
        assert conn.get_app_traffic("hello")["configured"] is False  # a plain app again
        wait_for(lambda: replicas(conn) == {good}, 120, "the previous version's container stopped")
        # both versions answered during the rollout; no client saw a failure or a default
        assert h.failed == 0 and h.defaults == 0 and {3.0, 30.0} <= {float(o) for o in h.outputs}, vars(h)
        assert clipper("diff", "-f", f, env=env).returncode == 0

        # 2. a version raising on 30 % of its inputs: rolled back within its first step
        write("[{weight: 20, pause: 60}, {weight: 100, pause: 60}]")
        (work / "models" / "sum_model.py").write_text(BAD_SRC)
        _, during, h = apply_rolled_back_under_load(ports[0], f, env, timeout=600)
        assert conn.get_current_model_version("sum-model") == good
        wait_for(lambda: replicas(conn) == {good}, 120, "the failing version's container stopped")
        assert conn.get_app_traffic("hello")["configured"] is False
        # 30 % failures on 20 % of the traffic: about 6 % defaults, never more than the 20 % it got
        assert h.failed == 0 and during[0] > 0 and during[1] <= 0.2 * during[0], (during, vars(h))
        record = rollout_status(f, env)
        assert record is not None and record["phase"] == "RolledBack" and record["step"] == 0
        diff = clipper("diff", "-f", f, env=env)
        assert "clipper rollout retry sum-model" in diff.stdout + diff.stderr
    finally:
        # its images (one per version built) go at the module's end (conftest's _model_images)
        DockerContainerManager(cluster_name=cluster, docker_network=test_network).stop_all(graceful=False)
