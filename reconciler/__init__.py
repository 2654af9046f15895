"""Turns manifests into calls on clipper_admin: load -> observe -> plan -> apply -> watch."""
