"""Model images: a model directory at ``/model`` on top of a model-container base image.

Shared by the Docker and the Kubernetes backends (the Kubernetes manager then pushes the image to
its registry or imports it into the nodes' containerd). Built with the docker SDK and offline:
requirements (the model directory's ``requirements.txt`` and ``pkgs_to_install``) are turned into
wheels on this machine with ``pip wheel`` and installed in the image with ``pip install --no-index``,
so the build itself needs no network (a ``RUN pip install -r requirements.txt`` inside the build
would need the package index from inside the build container).

Layers: the base image is untouched; the model image adds its requirements first and its directory
last, so a new version of the same function with the same requirements rebuilds only the last
layer (the wheels' layers come from the build cache; Docker checksums copied files by content).
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping

import docker
import docker.errors
from rich.console import Console
from rich.status import Status

from .container_manager import CLIPPER_DOCKER_LABEL
from .exceptions import ClipperException

logger = logging.getLogger(__name__)

#: The user our model-container base images run as (images/py-rpc/Dockerfile).
DEFAULT_CONTAINER_USER = "clipper"


def model_image_tag(cluster_identifier: str, name: str, version: str, registry: str | None) -> str:
    """The tag of a model version's image: ``[<registry>/]<cluster_identifier>-<name>:<version>``.

    The Docker and Kubernetes managers' ``build_model`` and ``clipper build`` name images so; the
    version is content-addressed when the manifest gives none, so an unchanged model keeps its tag.
    """
    repo = f"{cluster_identifier}-{name}:{version}"
    return f"{registry}/{repo}" if registry else repo


def image_exists(client: docker.DockerClient, tag: str) -> bool:
    """Whether the local Docker engine has ``tag``."""
    try:
        client.images.get(tag)
    except docker.errors.ImageNotFound:
        return False
    except docker.errors.APIError as e:
        raise ClipperException(f"Cannot look up image {tag}: {e.explanation or e}") from e
    return True


def _requirements(model_dir: str, pkgs_to_install: Iterable[str] | None) -> list[str]:
    reqs: list[str] = []
    path = os.path.join(model_dir, "requirements.txt")
    if os.path.isfile(path):
        with open(path) as f:
            reqs += [ln.strip() for ln in f if ln.strip() and not ln.lstrip().startswith("#")]
    reqs += list(pkgs_to_install or [])
    return reqs


def _download_wheels(reqs: list[str], dest: str) -> None:
    os.makedirs(dest, exist_ok=True)
    with open(os.path.join(dest, "requirements.txt"), "w") as f:
        f.write("\n".join(reqs) + "\n")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            # an sdist with only a setup.py is built in an isolated environment with its own
            # setuptools and wheel, whatever this environment's pip and packages (pip < 23.1 would
            # otherwise need the wheel package installed here)
            "--use-pep517",
            "-w",
            dest,
            "-r",
            os.path.join(dest, "requirements.txt"),
        ],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        raise ClipperException(f"Could not fetch the model's Python packages {reqs}:\n{tail}")


def _label_word(text: str) -> str | None:
    """``text`` double-quoted for a Dockerfile ``LABEL`` (``\\``, ``"`` and ``$`` escaped), or None when
    it holds a control character, which that syntax cannot carry."""
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        return None
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$") + '"'


def dockerfile_labels(labels: Mapping[str, str] | None) -> str | None:
    """One ``LABEL`` instruction setting ``labels``, or None (no labels, or one the syntax cannot carry).

    One instruction is one build step; the engine's ``labels`` build option adds a step, and with the
    classic builder a container commit, per label (bench/image_build.py: up to half of a rebuild)."""
    words = [(_label_word(k), _label_word(v)) for k, v in (labels or {}).items()]
    if not words or any(k is None or v is None for k, v in words):
        return None
    return "LABEL " + " ".join(f"{k}={v}" for k, v in words)


def render_dockerfile(
    base_image: str, with_wheels: bool, user: str, labels: Mapping[str, str] | None = None
) -> str:
    """The model image's Dockerfile: requirements (rarely changed) before the model directory, then
    ``labels`` (:func:`dockerfile_labels`; the caller passes those it returns None for to the engine)."""
    lines = [f"FROM {base_image}"]
    if with_wheels:
        lines += [
            "USER root",
            "COPY wheels/ /tmp/wheels/",
            "RUN pip install --no-cache-dir --no-index --find-links /tmp/wheels "
            "-r /tmp/wheels/requirements.txt && rm -rf /tmp/wheels",
            f"USER {user}",
        ]
    lines.append("COPY model/ /model/")
    if label_line := dockerfile_labels(labels):
        lines.append(label_line)
    return "\n".join(lines) + "\n"


def docker_client() -> docker.DockerClient:
    """A client of the local Docker engine (``$DOCKER_HOST`` or the default socket), which builds."""
    try:
        return docker.from_env()
    except docker.errors.DockerException as e:
        raise ClipperException(
            f"Cannot reach the Docker engine that builds model images: {e}. Start it, or set DOCKER_HOST."
        ) from e


def _image_user(client: docker.DockerClient, base_image: str) -> str:
    try:
        return client.images.get(base_image).attrs["Config"].get("User") or "root"
    except docker.errors.ImageNotFound as e:
        raise ClipperException(
            f"Base image {base_image} not found locally. Build Clipper's images with images/build.sh, "
            "or pass base_image= an image that exists."
        ) from e


#: how often a build is tried when an image it took from the build cache is removed under it
BUILD_ATTEMPTS = 3

#: the legacy builder's error when a cached step's image was deleted (another build's image removed
#: with its untagged parents, ``docker image prune``) between its cache lookup and the next commit
_VANISHED_PARENT = "unknown parent image ID"


class _CacheVanished(Exception):
    """A build step's cached parent image was removed while the build ran; a new build rebuilds it."""


def _build_once(
    client: docker.DockerClient, ctx: str, tag: str, labels: dict[str, str] | None, status: Status
) -> None:
    output: list[str] = []
    try:
        stream = client.api.build(path=ctx, tag=tag, rm=True, forcerm=True, labels=labels, decode=True)
        for chunk in stream:
            if "error" in chunk:
                error = chunk["error"].strip()
                if _VANISHED_PARENT in error:
                    raise _CacheVanished(error)
                output.append(chunk["error"])
                raise ClipperException(f"Building {tag} failed: {error}\n" + "".join(output[-20:]))
            text = chunk.get("stream", "")
            if text:
                output.append(text)
                if text.startswith("Step "):
                    status.update(f"Building model image {tag}: {text.strip()}")
                    logger.debug(text.strip())
    except docker.errors.APIError as e:
        explanation = str(e.explanation or e)
        if _VANISHED_PARENT in explanation:
            raise _CacheVanished(explanation) from e
        raise ClipperException(f"Building {tag} failed: {explanation}") from e


def build_model_image(
    client: docker.DockerClient,
    tag: str,
    model_dir: str,
    base_image: str,
    pkgs_to_install: Iterable[str] | None = None,
    labels: dict[str, str] | None = None,
) -> str:
    """Build ``tag`` from ``model_dir`` on ``base_image``; return the tag."""
    if not os.path.isdir(model_dir):
        raise ClipperException(f"Model directory {model_dir} does not exist")
    user = _image_user(client, base_image)
    reqs = _requirements(model_dir, pkgs_to_install)
    console = Console(stderr=True)
    with tempfile.TemporaryDirectory(prefix="clipper-build-") as ctx:
        shutil.copytree(model_dir, os.path.join(ctx, "model"), symlinks=False)
        if reqs:
            with console.status(f"Fetching Python packages for {tag}: {', '.join(reqs)}"):
                _download_wheels(reqs, os.path.join(ctx, "wheels"))
        with open(os.path.join(ctx, "Dockerfile"), "w") as f:
            f.write(render_dockerfile(base_image, bool(reqs), user, labels))
        build_labels = None if dockerfile_labels(labels) else labels  # in the Dockerfile when it can
        with console.status(f"Building model image {tag}") as status:
            for attempt in range(1, BUILD_ATTEMPTS + 1):
                try:
                    _build_once(client, ctx, tag, build_labels, status)
                    break
                except _CacheVanished as e:
                    if attempt == BUILD_ATTEMPTS:
                        raise ClipperException(
                            f"Building {tag} failed {attempt} times: the engine removed a cached layer "
                            f"while this build used it ({e}). Something is removing images as fast as "
                            "they are built; retry when it is done."
                        ) from None
                    logger.info("rebuilding %s: a cached layer it used was removed meanwhile (%s)", tag, e)
    return tag


def push_image(client: docker.DockerClient, tag: str) -> str:
    """Push ``tag``; unlike the original, an error in the push stream is raised, not ignored.

    Returns the pushed image by digest, ``<repo>@sha256:...``: the reference that names exactly
    what was pushed, whatever the tag points to later."""
    repo, _, version = tag.rpartition(":")
    digest = ""
    try:
        for chunk in client.images.push(repo, tag=version, stream=True, decode=True):
            if "error" in chunk:
                raise ClipperException(f"Pushing {tag} failed: {chunk['error']}")
            digest = (chunk.get("aux") or {}).get("Digest") or digest
    except docker.errors.APIError as e:
        raise ClipperException(f"Pushing {tag} failed: {e.explanation or e}") from e
    if not digest:
        raise ClipperException(f"Pushing {tag}: the registry reported no digest")
    return f"{repo}@{digest}"


class DockerImageModels:
    """What the managers whose model images are Docker images (Docker, Kubernetes) add to
    ``ContainerManager``: the build step of their ``build_model``, on its own. ``clipper build``
    names and builds images with it exactly as ``clipper apply`` does, then publishes them itself."""

    cluster_name: str
    cluster_identifier: str
    registry: str | None

    def builder_client(self) -> docker.DockerClient:
        """The Docker engine that builds (and pushes) this manager's model images."""
        return docker_client()

    def model_image(self, name: str, version: str, container_registry: str | None = None) -> str:
        """The tag ``build_model`` gives ``name:version`` (:func:`model_image_tag`), without building it."""
        return model_image_tag(
            self.cluster_identifier, name, str(version), container_registry or self.registry
        )

    def build_model_image(
        self,
        name: str,
        version: str,
        model_data_path: str,
        base_image: str,
        container_registry: str | None = None,
        pkgs_to_install: Iterable[str] | None = None,
    ) -> str:
        """Build the image :meth:`model_image` names in the local engine; push or load it nowhere."""
        labels = {
            CLIPPER_DOCKER_LABEL: self.cluster_name,
            "ai.clipper.model.name": name,
            "ai.clipper.model.version": str(version),
        }
        if not os.path.isdir(model_data_path):  # said before the engine is needed
            raise ClipperException(f"Model directory {model_data_path} does not exist")
        tag = self.model_image(name, version, container_registry)
        client = self.builder_client()
        return build_model_image(client, tag, model_data_path, base_image, pkgs_to_install, labels)
