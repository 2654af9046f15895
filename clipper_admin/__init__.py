"""The original Clipper admin API: ``ClipperConnection``, container managers, deployers, exceptions.

The container managers are imported lazily, so that ``import clipper_admin`` needs neither the
docker nor the kubernetes package until ``DockerContainerManager`` / ``KubernetesContainerManager``
is used.
"""

from __future__ import annotations

import importlib
from typing import Any

from . import deployers  # noqa: F401
from .clipper_admin import (  # noqa: F401
    CLIPPER_TEMP_DIR,
    DEFAULT_LABEL,
    DEFAULT_PREDICTION_CACHE_SIZE_BYTES,
    ClipperConnection,
    logger,
)
from .exceptions import ClipperException, UnconnectedException  # noqa: F401
from .validation import deploy_regex_str, deployment_regex  # noqa: F401
from .version import __registry__, __version__  # noqa: F401

_LAZY = {
    "DockerContainerManager": "clipper_admin.docker.docker_container_manager",
    "KubernetesContainerManager": "clipper_admin.kubernetes.kubernetes_container_manager",
    "LocalContainerManager": "clipper_admin.local.local_container_manager",
}

__all__ = [
    "ClipperConnection",
    "ClipperException",
    "UnconnectedException",
    "DockerContainerManager",
    "KubernetesContainerManager",
    "LocalContainerManager",
    "DEFAULT_LABEL",
    "DEFAULT_PREDICTION_CACHE_SIZE_BYTES",
    "CLIPPER_TEMP_DIR",
    "deploy_regex_str",
    "deployment_regex",
    "logger",
    "deployers",
    "__version__",
    "__registry__",
]


def __getattr__(name: str) -> Any:  # a lazily imported manager class
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'clipper_admin' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
