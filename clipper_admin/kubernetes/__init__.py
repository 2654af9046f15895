"""Clipper on Kubernetes: ``KubernetesContainerManager`` and the pure object builders it applies."""

from .kubernetes_container_manager import KubernetesContainerManager, get_model_deployment_name

__all__ = ["KubernetesContainerManager", "get_model_deployment_name"]
