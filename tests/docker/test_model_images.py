"""tests/model_images.py on a real engine: what a module built for its own clusters goes at its end (a tag
built twice included, a failed test's too), and nothing else: not what existed before, not another
suite's clusters, not an image without the model label (the base and runtime images of images/build.sh)."""

from __future__ import annotations

import uuid

import docker
import pytest

from tests.model_images import CLUSTER_LABEL, MODEL_LABEL, cri_ref, removed_afterwards


def _build(client, tmp_path, tag: str, cluster: str | None, content: str) -> str:
    """A tiny image (one file on scratch) labelled as ``cluster``'s model image; its id."""
    context = tmp_path / uuid.uuid4().hex
    context.mkdir()
    (context / "f.txt").write_text(content)
    (context / "Dockerfile").write_text("FROM scratch\nCOPY f.txt /\n")
    labels = {MODEL_LABEL: "m", CLUSTER_LABEL: cluster} if cluster else {}
    image, _ = client.images.build(path=str(context), tag=tag, labels=labels, rm=True)
    return str(image.id)


def _tags(client, suffix: str) -> set[str]:
    return {tag for image in client.images.list() for tag in image.tags if suffix in tag}


def test_only_the_owned_model_images_built_meanwhile_are_removed(docker_client, tmp_path):
    suffix = uuid.uuid4().hex[:8]
    own, other = f"own-{suffix}", f"other-{suffix}"
    try:
        _build(docker_client, tmp_path, f"{own}-m:0", own, "existed before")
        with removed_afterwards(lambda cluster: cluster == own):
            _build(docker_client, tmp_path, f"{own}-m:1", own, "one")
            first = _build(docker_client, tmp_path, f"{own}-m:2", own, "two")
            _build(docker_client, tmp_path, f"{own}-m:2", own, "two, built again")  # first: untagged now
            _build(docker_client, tmp_path, f"{other}-m:1", other, "another suite's")
            _build(docker_client, tmp_path, f"{own}-base:1", None, "no model label")
        assert _tags(docker_client, suffix) == {f"{own}-m:0", f"{other}-m:1", f"{own}-base:1"}
        with pytest.raises(docker.errors.ImageNotFound):
            docker_client.images.get(first)
        with pytest.raises(RuntimeError), removed_afterwards(lambda cluster: cluster == own):
            _build(docker_client, tmp_path, f"{own}-m:3", own, "a failing test's")
            raise RuntimeError("the test failed")
        assert f"{own}-m:3" not in _tags(docker_client, suffix)
    finally:
        for tag in _tags(docker_client, suffix):
            docker_client.images.remove(tag, force=True)


def test_the_containerd_name_of_a_tag():
    assert cri_ref("e2e-sum-model:1") == "docker.io/library/e2e-sum-model:1"
    assert cri_ref("me/m:1") == "docker.io/me/m:1"
    assert cri_ref("localhost/clipper-sum:2") == "localhost/clipper-sum:2"
    assert cri_ref("registry.example:5000/m:1") == "registry.example:5000/m:1"
