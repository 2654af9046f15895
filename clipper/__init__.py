"""The Clipper serving plane: query frontend, management frontend, RPC and model-container runtime.

This package knows nothing of the admin API, manifests or backends (see docs/architecture.md).
"""

__version__ = "0.1.0"
