"""``__version__`` and ``__registry__`` as in the original (the registry is read once, at import)."""

import os

from clipper import __version__

__registry__ = os.environ.get("CLIPPER_REGISTRY", "clipper")

__all__ = ["__version__", "__registry__"]
