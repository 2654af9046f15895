"""Where the cluster's configuration lives: Redis for Docker/Kubernetes, SQLite for the local default."""

from clipper.config_store.base import (
    AppRecord,
    ConfigSnapshot,
    ConfigStore,
    ContainerRecord,
    ModelRecord,
    open_store,
)

__all__ = [
    "AppRecord",
    "ConfigSnapshot",
    "ConfigStore",
    "ContainerRecord",
    "ModelRecord",
    "open_store",
]
