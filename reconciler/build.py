"""``clipper build``: the model images of a manifest set, built without a running cluster.

Each Model with a python or pyspark source becomes the image ``clipper apply`` would build for it on
the Cluster's backend (docker or kubernetes): the same model directory (:func:`reconciler.deploy.model_build`),
the same builder and the same content-addressed tag (the container manager's ``model_image`` and
``build_model_image``). A tag that already exists is an unchanged model: it is not built again.

:func:`rewrite_manifests` then gives the manifests with each built Model's source replaced by its
image: what the in-cluster controller runs, which builds nothing.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap

from reconciler.envsubst import UnsetVariable, substitute
from reconciler.errors import ReconcilerError
from reconciler.loader import ManifestSet, collect_files

#: Backends whose model images are Docker images (the local backend runs a model directory).
IMAGE_BACKENDS = ("docker", "kubernetes")


@dataclass(frozen=True)
class BuiltModel:
    name: str
    image: str  # what to run: the tag, or ``repo@sha256:...`` once pushed
    built: bool  # False: the tag existed already (an unchanged model)


def _engine() -> Any:
    """The local Docker engine's client, checked to answer."""
    import docker.errors

    from clipper_admin import image_builder

    client = image_builder.docker_client()
    try:
        client.ping()
    except docker.errors.DockerException as e:
        raise ReconcilerError(
            f"no Docker engine answers ({e}): clipper build builds model images in the local Docker "
            "engine; start it, or point DOCKER_HOST at one"
        ) from e
    return client


def build_images(
    manifests: ManifestSet,
    registry: str | None = None,
    push: bool = False,
    load: str | None = None,
    note: Callable[[str], None] = lambda _: None,
) -> list[BuiltModel]:
    """Build the image of every python/pyspark Model of ``desired``, in manifest order.

    ``registry`` (default: the Cluster's) prefixes the tags; ``push`` pushes each image there and
    returns it by digest; ``load`` (``containerd:<socket>``) imports each image into that containerd.
    Models whose source is already an image are skipped with a ``note``.
    """
    from clipper_admin import image_builder
    from clipper_admin.kubernetes import images
    from reconciler.backends import container_manager
    from reconciler.deploy import model_build
    from reconciler.desired import desired_state

    desired = desired_state(manifests)
    spec = desired.cluster
    if manifests.cluster is None:
        raise ReconcilerError(
            "no Cluster in the manifests: clipper build names model images after the Cluster they run on "
            "(as clipper apply does); add its manifest (backend: kubernetes or docker) to -f"
        )
    if spec.backend not in IMAGE_BACKENDS:
        raise ReconcilerError(
            f"Cluster/{desired.cluster_name} has backend {spec.backend!r}, which runs model directories, "
            "not images: clipper build builds the images of the docker and kubernetes backends"
        )
    registry = registry or spec.registry or None
    if push and registry is None:
        raise ReconcilerError("--push needs a registry: --registry R, or registry: in the Cluster manifest")
    socket = images.image_loader(load) if load else None
    todo = []
    for m in desired.models.values():
        assert m.loaded is not None, "a desired model always comes from a manifest"
        image = m.loaded.obj.spec.source.image
        if image is not None:
            note(f"Model/{m.name}: its source is already an image ({image}); nothing to build")
        else:
            todo.append(m)
    if not todo:
        return []
    client = _engine()
    cm = container_manager(desired)
    assert isinstance(cm, image_builder.DockerImageModels), "the docker and kubernetes managers build images"
    out = []
    for m in todo:
        tag = cm.model_image(m.name, m.version, registry)
        exists = image_builder.image_exists(client, tag)
        if exists:
            note(f"Model/{m.name}: {tag} exists (the model is unchanged); not built again")
        else:
            with model_build(m, registry) as (b, _):
                cm.build_model_image(
                    b.name, b.version, b.model_dir, b.base_image, b.registry, list(b.packages) or None
                )
        ref = image_builder.push_image(client, tag) if push else tag
        if socket is not None:
            images.load_into_containerd(tag, socket)
        out.append(BuiltModel(m.name, ref, not exists))
    return out


def _text(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    try:
        return substitute(value, os.environ)
    except UnsetVariable:
        return value


def _rewrite(doc: Any, refs: Mapping[str, str]) -> None:
    """``doc``'s ``spec.source`` becomes ``image: <ref>`` (without packages and baseImage) when it
    is a Model in ``refs``; anything else is left as it is."""
    if not isinstance(doc, CommentedMap) or _text(doc.get("kind")) != "Model":
        return
    meta, spec = doc.get("metadata"), doc.get("spec")
    if not isinstance(meta, dict) or not isinstance(spec, CommentedMap):
        return
    ref = refs.get(_text(meta.get("name")) or "")
    if ref is None:
        return
    spec["source"] = CommentedMap(image=ref)
    for key in ("packages", "baseImage"):
        spec.pop(key, None)


def rewrite_manifests(paths: Iterable[str], refs: Mapping[str, str], stdin_text: str | None = None) -> str:
    """The manifests under ``paths`` (read as ``clipper apply`` reads them; ``-``: ``stdin_text``) as
    one YAML stream, each Model named in ``refs`` with its source replaced by ``image: refs[name]``.

    Round-trip YAML: comments, key order and everything else stay as written (``${VAR}`` included)."""
    files, _ = collect_files(paths)
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 4096  # never re-wrap a long line
    yaml.indent(mapping=2, sequence=4, offset=2)
    parts = []
    for f in files:
        text = (stdin_text or "") if f == "-" else Path(f).read_text()
        docs = [d for d in yaml.load_all(text) if d is not None]
        for doc in docs:
            _rewrite(doc, refs)
        if docs:
            buf = io.StringIO()
            yaml.dump_all(docs, buf)
            parts.append(buf.getvalue())
    return "---\n".join(p if p.endswith("\n") else p + "\n" for p in parts)
