"""The model-container runtime: ``python -m clipper.container`` (see ``runtime`` and ``__main__``)."""
