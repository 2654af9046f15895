"""Which cluster ``clipper get``/``status`` look at when no manifests are given, and what the CLI
says when a cluster cannot be reached (in ``clipper`` commands, not Python calls).

Without ``-f``, only local clusters can be found: those with a ``cluster.json`` in
``$CLIPPER_HOME/<name>/``. ``--cluster NAME`` names one; without it, the only one there is used,
and none or several are an error saying what to run.
"""

from __future__ import annotations

from pathlib import Path

from reconciler.errors import ReconcilerError


def _home() -> Path:
    from clipper_admin.local.state import clipper_home

    return clipper_home()


def local_cluster_names(home: Path | None = None) -> list[str]:
    home = _home() if home is None else home
    try:
        return sorted(d.name for d in home.iterdir() if (d / "cluster.json").is_file())
    except OSError:  # no CLIPPER_HOME yet
        return []


def pick_cluster(given: str | None, home: Path | None = None) -> str:
    """``given``, or the only local cluster; otherwise a :class:`ReconcilerError` saying what to do."""
    if given:
        return given
    home = _home() if home is None else home
    names = local_cluster_names(home)
    if len(names) == 1:
        return names[0]
    if not names:
        raise ReconcilerError(f"no local cluster in {home} (CLIPPER_HOME): run `clipper apply -f <manifests>` "
                              "to create one, or give the manifests of a Docker or Kubernetes cluster with -f")  # fmt: skip
    raise ReconcilerError(f"{len(names)} local clusters in {home} ({', '.join(names)}): name one with "
                          "--cluster NAME, or give its manifests with -f")  # fmt: skip


def unreachable_message(name: str, backend: str, cluster_dir: Path, error: BaseException) -> str:
    """Why ``clipper`` cannot talk to cluster ``name``, and the command that fixes it."""
    if backend == "local" and not (cluster_dir / "cluster.json").is_file():
        return (f"cluster {name!r} does not exist (nothing in {cluster_dir}): run "
                "`clipper apply -f <manifests>` to create it")  # fmt: skip
    return (f"cluster {name!r} ({backend} backend) is not running or cannot be reached: run "
            "`clipper apply -f <manifests>` to start it, or `clipper delete -f <manifests> --cluster` to "
            f"remove what is left of it (the backend said: {error})")  # fmt: skip
