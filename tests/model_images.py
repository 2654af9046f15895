"""Model images a test suite builds are removed again when its session ends, pass or fail.

A model image is one with the ``ai.clipper.model.name`` label: every image a Clipper manager (and
``clipper build``/``apply``) builds carries it, with its cluster's name in ``ai.clipper.container.label``.
The images images/build.sh builds once and the suite reuses on purpose (``clipper/*``, the debootstrap
base) carry no model label and are never touched; nor is any image (or tag) that existed before the
session started. ``owns`` picks the clusters of the suite that uses it: under ./test.sh the Docker
suite and the Kubernetes end-to-end suite each run in a pytest of their own beside the rest of the
suite, so none may remove what another is building. Images the session imported into a containerd (the test cluster's) go from there too.
"""

from __future__ import annotations

import subprocess
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

MODEL_LABEL = "ai.clipper.model.name"
CLUSTER_LABEL = "ai.clipper.container.label"  # clipper_admin.container_manager.CLIPPER_DOCKER_LABEL


def _engine() -> Any:
    """A Docker client, or ``None`` when no engine answers (then nothing can have been built)."""
    try:
        import docker

        client = docker.from_env()
        client.ping()
    except Exception:  # noqa: BLE001 - no engine, no images to remove
        return None
    return client


def _listed(client: Any) -> list[tuple[str, list[str], dict[str, str]]]:
    """``(id, tags, labels)`` of every model image, from one listing call. Not ``images.list()``:
    that inspects each image afterwards, and an image another suite removes in between (they run
    side by side) would fail it with ImageNotFound."""
    return [
        (
            row["Id"],
            [t for t in row.get("RepoTags") or [] if t != "<none>:<none>"],
            row.get("Labels") or {},
        )
        for row in client.api.images(filters={"label": MODEL_LABEL})
    ]


def _model_images(client: Any) -> set[tuple[str, str]]:
    """``(image id, tag)`` of every model image; ``(id, "")`` for an untagged one."""
    return {(image_id, tag) for image_id, tags, _ in _listed(client) for tag in tags or [""]}


def cri_ref(tag: str) -> str:
    """The name ``ctr images import`` gives a ``docker save``d tag (``x:1`` -> ``docker.io/library/x:1``)."""
    first, sep, _ = tag.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return tag
    return f"docker.io/{tag}" if sep else f"docker.io/library/{tag}"


def _ctr(socket: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ctr", "--address", socket, "-n", "k8s.io", "images", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def _cri_images(socket: str | None) -> set[tuple[str, str]]:
    """``(ref, digest)`` of the images in a containerd's CRI namespace (empty when it does not answer)."""
    if socket is None:
        return set()
    try:
        proc = _ctr(socket, "ls")
    except (OSError, subprocess.SubprocessError):
        return set()
    rows = [line.split() for line in proc.stdout.splitlines()[1:]]
    return {(row[0], row[2]) for row in rows if len(row) >= 3} if proc.returncode == 0 else set()


@contextmanager
def removed_afterwards(owns: Callable[[str], bool], containerd: str | None = None) -> Iterator[None]:
    """Remove, on exit, the model images of the clusters ``owns`` accepts that appeared meanwhile,
    from the Docker engine and from the containerd at socket ``containerd`` (its ``k8s.io`` namespace).
    A failed removal is a warning: it must not hide the test's own result."""
    client = _engine()
    if client is None:
        yield
        return
    before, cri_before = _model_images(client), _cri_images(containerd)
    try:
        yield
    finally:
        _remove_new(client, before, owns, containerd, cri_before)


def _remove_new(
    client: Any,
    before: set[tuple[str, str]],
    owns: Callable[[str], bool],
    containerd: str | None,
    cri_before: set[tuple[str, str]],
) -> None:
    import docker

    failed: list[str] = []
    refs: set[str] = set()
    old_ids = {image_id for image_id, _ in before}
    for image_id, image_tags, labels in _listed(client):
        if not owns(labels.get(CLUSTER_LABEL, "")):
            continue
        tags = [tag for tag in image_tags if (image_id, tag) not in before]
        if not image_tags and image_id not in old_ids:
            tags = [image_id]  # an untagged image of this session (its tag was built again)
        # in containerd, what is new there: an image the engine had before (a build from the cache) may
        # still be imported by this session. The CRI names it by its tag and by its id (config digest).
        refs.update([image_id, *(cri_ref(tag) for tag in image_tags)])
        for tag in tags:
            try:
                client.images.remove(tag, force=True)
            except docker.errors.ImageNotFound:
                pass
            except docker.errors.APIError as e:
                failed.append(f"{tag}: {e.explanation or e}")
    if containerd is not None:
        stale = sorted(
            ref for ref, digest in _cri_images(containerd) if ref in refs and (ref, digest) not in cri_before
        )
        if stale:
            proc = _ctr(containerd, "rm", *stale)
            if proc.returncode != 0:
                failed.append(f"containerd {containerd}: {proc.stderr.strip()}")
    if failed:
        warnings.warn("model images left behind: " + "; ".join(failed), stacklevel=1)
