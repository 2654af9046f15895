"""The offline model-image builder both container backends use (``clipper_admin.image_builder``).

Requirements come from a local wheel found through ``PIP_FIND_LINKS`` with ``PIP_NO_INDEX``: the
host side (``pip wheel``) and the build (``pip install --no-index``) never reach a package index.
"""

from __future__ import annotations

import uuid

import docker
import pytest

from clipper_admin import image_builder
from clipper_admin.exceptions import ClipperException
from clipper_admin.version import __registry__, __version__

from .helpers import write_local_wheel

BASE = f"{__registry__}/python311-closure-container:{__version__}"


@pytest.fixture
def offline_index(tmp_path, monkeypatch):
    """A local package ``clipper_probe_pkg==1.0`` and pip configured to find only local packages."""
    wheels = tmp_path / "index"
    write_local_wheel(wheels, "clipper_probe_pkg", "1.0", "VALUE = 'probe-1.0'\n")
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(wheels))
    return wheels


def _layers(client: docker.DockerClient, tag: str) -> list[str]:
    layers: list[str] = client.images.get(tag).attrs["RootFS"]["Layers"]
    return layers


def test_a_new_function_rebuilds_only_the_model_layer(docker_client, tmp_path, offline_index):
    model = tmp_path / "model"
    model.mkdir()
    (model / "requirements.txt").write_text("clipper_probe_pkg==1.0\n")
    (model / "func.txt").write_text("version 1\n")
    repo = f"clipper-builder-test-{uuid.uuid4().hex[:8]}"
    tags = [f"{repo}:1", f"{repo}:2"]
    try:
        image_builder.build_model_image(docker_client, tags[0], str(model), BASE)
        (model / "func.txt").write_text("version 2: a new function, the same requirements\n")
        image_builder.build_model_image(docker_client, tags[1], str(model), BASE)

        base, first, second = (_layers(docker_client, t) for t in (BASE, *tags))
        # the base's layers, the wheels' copy, the pip install, the model directory
        assert first[: len(base)] == base and len(first) == len(base) + 3
        assert second[:-1] == first[:-1], "the requirements' layers were rebuilt"
        assert second[-1] != first[-1]

        out = docker_client.containers.run(
            tags[1],
            entrypoint=[
                "python",
                "-c",
                "import clipper_probe_pkg; print(clipper_probe_pkg.VALUE); "
                "print(open('/model/func.txt').read())",
            ],
            network_mode="none",
            remove=True,
        ).decode()
        assert "probe-1.0" in out and "version 2" in out
    finally:
        for tag in tags:
            try:
                docker_client.images.remove(tag, force=True)
            except docker.errors.ImageNotFound:
                pass


def test_missing_requirement_and_base_image_are_clipper_exceptions(docker_client, tmp_path, offline_index):
    model = tmp_path / "model"
    model.mkdir()
    (model / "func.txt").write_text("f\n")
    tag = f"clipper-builder-test-{uuid.uuid4().hex[:8]}:1"
    with pytest.raises(ClipperException, match="Could not fetch the model's Python packages"):
        image_builder.build_model_image(docker_client, tag, str(model), BASE, ["clipper_absent_pkg==9"])
    with pytest.raises(ClipperException, match="Base image clipper-absent-base:0 not found locally"):
        image_builder.build_model_image(docker_client, tag, str(model), "clipper-absent-base:0")
    with pytest.raises(ClipperException, match="does not exist"):
        image_builder.build_model_image(docker_client, tag, str(tmp_path / "missing"), BASE)


def test_labels_are_set_exactly_in_one_step(docker_client, tmp_path):
    """The image's labels come from one ``LABEL`` step (the engine's labels option makes a step per
    label); quotes, ``$`` and backslashes arrive unchanged, and a value a Dockerfile cannot carry (a
    newline) still arrives through the engine's option."""
    model = tmp_path / "model"
    model.mkdir()
    (model / "func.txt").write_text("f\n")
    repo = f"clipper-builder-test-{uuid.uuid4().hex[:8]}"
    odd = {"ai.clipper.model.name": "m", "odd": 'a $HOME "q" back\\slash ${x} \u00e9'}
    cases = [(f"{repo}:1", odd, 1), (f"{repo}:2", {**odd, "multi": "two\nlines"}, 3)]
    try:
        for tag, labels, label_steps in cases:
            image_builder.build_model_image(docker_client, tag, str(model), BASE, labels=labels)
            image = docker_client.images.get(tag)
            assert {k: image.labels.get(k) for k in labels} == labels
            history = docker_client.api.history(tag)
            base_ids = {h["Id"] for h in docker_client.api.history(BASE)}
            steps = [h["CreatedBy"] for h in history if h["Id"] not in base_ids]
            assert sum("LABEL" in s for s in steps) == label_steps, steps
    finally:
        for tag, _, _ in cases:
            try:
                docker_client.images.remove(tag, force=True)
            except docker.errors.ImageNotFound:
                pass
