"""Running containers and waiting for them, with errors that show the container's last log lines."""

from __future__ import annotations

import random
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import docker
import docker.errors
import requests

from ..exceptions import ClipperException

if TYPE_CHECKING:
    from docker.models.containers import Container

#: How many log lines an error message quotes.
LOG_TAIL = 25


def random_name(prefix: str) -> str:
    return f"{prefix}-{random.randint(0, 100000)}"


def last_logs(container: Container, tail: int = LOG_TAIL) -> str:
    try:
        text = container.logs(tail=tail).decode("utf-8", "replace").rstrip()
    except docker.errors.APIError as e:
        return f"(logs unavailable: {e})"
    return text or "(no output)"


def describe_failure(container: Container, what: str) -> str:
    try:
        container.reload()
        state = container.attrs.get("State", {})
        status = f"status {state.get('Status')}, exit code {state.get('ExitCode')}"
    except docker.errors.APIError:
        status = "status unknown"
    return f"{what} ({container.name}, {status}). Last log lines:\n{last_logs(container)}"


def ensure_image(client: docker.DockerClient, image: str) -> None:
    """The image exists locally, or is pulled; else a ``ClipperException`` saying how to build it."""
    try:
        client.images.get(image)
        return
    except docker.errors.ImageNotFound:
        pass
    try:
        client.images.pull(image)
    except docker.errors.APIError as e:
        raise ClipperException(
            f"Docker image {image} not found locally and it could not be pulled. Build Clipper's "
            f"images with images/build.sh, or pass an image that exists. ({e.explanation or e})"
        ) from e


def run_container(
    client: docker.DockerClient, image: str, name_prefix: str, tries: int = 5, **kwargs: Any
) -> Container:
    """``containers.run`` with a fresh random name per try (a name clash or a transient API error retries).

    A missing image is a ``ClipperException`` saying how to build it.
    """
    ensure_image(client, image)
    last: Exception | None = None
    for _ in range(tries):
        try:
            container: Container = client.containers.run(image, name=random_name(name_prefix), **kwargs)
            return container
        except docker.errors.ImageNotFound as e:
            raise ClipperException(
                f"Docker image {image} not found. Build the images with images/build.sh "
                f"(or pass an image that exists locally). ({e.explanation})"
            ) from e
        except docker.errors.APIError as e:
            last = e
            if e.status_code is not None and e.status_code < 500 and e.status_code != 409:
                raise ClipperException(f"Docker refused to start {image}: {e.explanation or e}") from e
            time.sleep(0.2)
    raise ClipperException(f"Could not start a container from {image}: {last}")


def wait_until(
    container: Container,
    ready: Callable[[], bool],
    what: str,
    timeout: float,
    interval: float = 0.2,
) -> None:
    """Poll ``ready()`` until it is true; fail fast if the container exits, else after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        container.reload()
        status = container.attrs["State"]["Status"]
        if status in ("exited", "dead"):
            raise ClipperException(describe_failure(container, f"{what} exited while starting"))
        if status == "running":
            try:
                if ready():
                    return
            except (OSError, requests.RequestException):
                pass
        if time.monotonic() >= deadline:
            raise ClipperException(describe_failure(container, f"{what} not ready after {timeout:.0f} s"))
        time.sleep(interval)


def healthy_if_checked(container: Container) -> Callable[[], bool]:
    """Ready when the image's HEALTHCHECK passes; images without one are ready once running."""

    def check() -> bool:
        health = container.attrs["State"].get("Health")
        if health is None:
            return True
        healthy: bool = health.get("Status") == "healthy"
        return healthy

    return check


def http_ok(url: str, headers: dict[str, str] | None = None) -> Callable[[], bool]:
    return lambda: requests.get(url, headers=headers or {}, timeout=2).status_code == 200


def tcp_open(host: str, port: int) -> Callable[[], bool]:
    def check() -> bool:
        with socket.create_connection((host, port), timeout=1):
            return True

    return check


def redis_pong(host: str, port: int) -> Callable[[], bool]:
    def check() -> bool:
        with socket.create_connection((host, port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")

    return check
