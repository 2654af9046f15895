"""Getting a model image to where the cluster's nodes can pull it.

The image itself is built by ``clipper_admin.image_builder`` (shared with the Docker backend).

A node pulls from a registry; an image that exists only in the local Docker daemon is invisible
to it unless the cluster is a local one (kind, minikube, k3d...) that can side-load images, or an
image loader is configured: ``containerd:<socket>`` imports the image into the containerd that
serves the nodes' CRI (``docker save IMAGE | ctr --address <socket> -n k8s.io images import -``),
as for a single-node cluster whose kubelet runs on this machine (tests/kubernetes/cluster/up.sh).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess

from clipper_admin.exceptions import ClipperException

#: Environment variable naming the image loader when the manager is not given ``image_loader=``.
IMAGE_LOADER_ENV = "CLIPPER_K8S_IMAGE_LOADER"
LOCAL_CONTEXT = re.compile(r"^(kind-|k3d-|minikube|docker-desktop|rancher-desktop|orbstack|colima)")


def has_registry_host(image: str) -> bool:
    """``True`` when the reference names a registry (``host.tld/...``, ``host:port/...``, ``localhost/...``)."""
    first, sep, _ = image.partition("/")
    return bool(sep) and ("." in first or ":" in first or first == "localhost")


def is_local_context(context: str | None) -> bool:
    return bool(context and LOCAL_CONTEXT.match(context))


def image_loader(spec: str | None) -> str | None:
    """The containerd socket of an image loader spec (``containerd:<socket path>``), checked.

    ``spec`` ``None`` reads ``$CLIPPER_K8S_IMAGE_LOADER``; unset or empty means no loader.
    """
    if spec is None:
        spec = os.environ.get(IMAGE_LOADER_ENV)
    if not spec:
        return None
    kind, sep, socket = spec.partition(":")
    if kind != "containerd" or not sep or not socket.startswith("/"):
        raise ClipperException(
            f"Unknown image loader {spec!r}: expected 'containerd:<absolute path of the containerd socket "
            f"serving the nodes>' (KubernetesContainerManager(image_loader=...) or ${IMAGE_LOADER_ENV})."
        )
    return socket


def load_into_containerd(image: str, socket: str, namespace: str = "k8s.io") -> None:
    """Import a Docker engine image into a containerd's CRI namespace (where the kubelet finds it)."""
    if shutil.which("ctr") is None:
        raise ClipperException(
            f"Cannot load image {image} into containerd at {socket}: `ctr` is not installed "
            "(apt-get install containerd)."
        )
    if not os.path.exists(socket):
        raise ClipperException(
            f"Cannot load image {image}: no containerd socket at {socket}. Is the cluster's containerd "
            "running (tests/kubernetes/cluster/up.sh)?"
        )
    save = subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        result = subprocess.run(
            ["ctr", "--address", socket, "-n", namespace, "images", "import", "-"],
            stdin=save.stdout,
            capture_output=True,
            text=True,
            timeout=600,
        )
    finally:
        assert save.stdout is not None
        save.stdout.close()
        save_err = save.communicate(timeout=600)[1].decode(errors="replace")
    if save.returncode != 0:
        raise ClipperException(f"`docker save {image}` failed: {save_err.strip()[-2000:]}")
    if result.returncode != 0:
        raise ClipperException(
            f"Importing {image} into containerd at {socket} failed: {result.stderr.strip()[-2000:]}"
        )


def side_load(image: str, context: str) -> None:
    """Load a locally built image into a local cluster's nodes."""
    if context.startswith("kind-"):
        cmd = ["kind", "load", "docker-image", image, "--name", context[len("kind-") :]]
    elif context.startswith("k3d-"):
        cmd = ["k3d", "image", "import", image, "-c", context[len("k3d-") :]]
    elif context.startswith("minikube"):
        cmd = ["minikube", "image", "load", image, "-p", context]
    else:  # docker-desktop, rancher-desktop, orbstack, colima share the host's image store
        return
    if shutil.which(cmd[0]) is None:
        raise ClipperException(
            f"Image {image} exists only locally and `{cmd[0]}` is not installed to load it into "
            f"cluster context {context}. Install it, run `{' '.join(cmd)}`, or pass "
            "KubernetesContainerManager(registry=...) to push images to a registry."
        )
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        raise ClipperException(f"`{' '.join(cmd)}` failed: {result.stderr.strip()[-2000:]}")
