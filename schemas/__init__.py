"""Manifests as pydantic models (pure data, no I/O)."""
