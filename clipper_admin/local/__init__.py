"""The embedded local backend: frontends and model replicas as supervised local processes."""

from .local_container_manager import LocalContainerManager

__all__ = ["LocalContainerManager"]
