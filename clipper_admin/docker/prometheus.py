"""The Prometheus configuration of a Docker cluster: a per-cluster host directory, bind-mounted
read-only into the Prometheus container.

The directory (``<tmp>/clipper-prometheus-<cluster>-XXXX/``) holds ``prometheus.yml`` (the query
frontend as a static target, the model replicas through ``file_sd_configs``) and
``model-containers.json``, the replicas' targets. The manager rewrites the targets file (atomically)
whenever replicas start or stop; Prometheus notices the change by itself (file watch, and a re-read
every few seconds), so no reload or restart is needed. The path of ``prometheus.yml`` is recorded in
the Prometheus container's ``ai.clipper.metric.config`` label (as in the original), which is how a
manager that did not start the cluster finds it again.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterable
from typing import Any

from ruamel.yaml import YAML

logger = logging.getLogger(__name__)

#: Where the query frontend serves the Prometheus text exposition.
QUERY_FRONTEND_METRICS_PATH = "/metrics"
#: Where the config directory is mounted inside the Prometheus container.
CONTAINER_CONFIG_DIR = "/etc/clipper-prometheus"
CONFIG_FILE = "prometheus.yml"
TARGETS_FILE = "model-containers.json"
#: Every config directory's name starts with this; nothing else is ever written to or removed.
CONFIG_DIR_PREFIX = "clipper-prometheus-"
SCRAPE_INTERVAL = "5s"


def make_config_dir(cluster_name: str) -> str:
    """A new, world-readable (the container runs as another user) directory for one cluster."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", cluster_name)[:64]
    path = tempfile.mkdtemp(prefix=f"{CONFIG_DIR_PREFIX}{safe}-")
    os.chmod(path, 0o755)
    return os.path.realpath(path)


def write_config(config_dir: str, query_frontend_targets: list[str]) -> str:
    """Write ``prometheus.yml`` (query frontends ``"name:port"`` + the replicas' targets file) and an
    empty targets file into ``config_dir``; return the config file's path."""
    config = {
        "global": {"evaluation_interval": SCRAPE_INTERVAL, "scrape_interval": SCRAPE_INTERVAL},
        "scrape_configs": [
            {
                "job_name": "query",
                "metrics_path": QUERY_FRONTEND_METRICS_PATH,
                "params": {"format": ["prometheus"]},
                "static_configs": [{"targets": list(query_frontend_targets)}],
            },
            {
                # each target group sets its own ``job`` (the container name, as the original's
                # one job per replica), which takes precedence over this job name
                "job_name": "model-containers",
                "file_sd_configs": [
                    {
                        "files": [f"{CONTAINER_CONFIG_DIR}/{TARGETS_FILE}"],
                        "refresh_interval": SCRAPE_INTERVAL,
                    }
                ],
            },
        ],
    }
    buf = io.StringIO()
    YAML().dump(config, buf)
    path = os.path.join(config_dir, CONFIG_FILE)
    _write_atomically(path, buf.getvalue())
    write_targets(config_dir, [])
    return path


def model_targets(replicas: Iterable[tuple[str, str, str]], port: int) -> list[dict[str, Any]]:
    """``file_sd`` target groups for ``(container name, model name, model version)`` triples."""
    return [
        {
            "targets": [f"{container}:{port}"],
            "labels": {"job": container, "model_name": name, "model_version": version},
        }
        for container, name, version in sorted(replicas)
    ]


def write_targets(config_dir: str, groups: list[dict[str, Any]]) -> None:
    _write_atomically(os.path.join(config_dir, TARGETS_FILE), json.dumps(groups, indent=1))


def config_dir_of(config_path: str | None) -> str | None:
    """The config directory ``config_path`` (a label value) lies in, if it is one of ours, else None.

    Labels are only strings on a container: never write to or remove a path that does not have the
    shape this module gives its files.
    """
    if not config_path or os.path.basename(config_path) != CONFIG_FILE:
        return None
    directory = os.path.dirname(os.path.abspath(config_path))
    if not os.path.basename(directory).startswith(CONFIG_DIR_PREFIX) or not os.path.isdir(directory):
        return None
    return directory


def remove_config(config_path: str | None) -> None:
    """Remove the config directory of ``config_path`` (best effort; paths not ours are left alone)."""
    directory = config_dir_of(config_path)
    if directory is not None:
        shutil.rmtree(directory, ignore_errors=True)
    elif not config_path or not os.path.lexists(config_path):
        return  # already removed (e.g. by another manager's stop_all)
    elif os.path.basename(config_path).startswith(CONFIG_DIR_PREFIX) and config_path.endswith(".yml"):
        os.remove(config_path)  # a single file, as this manager wrote it before the per-cluster directory
    else:
        logger.info(f"Leaving {config_path} in place: not a Prometheus config this manager wrote")


def _write_atomically(path: str, text: str) -> None:
    """Write a temporary file next to ``path`` and rename it over ``path``: Prometheus never reads a
    half-written file, and concurrent writers never interleave."""
    directory = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise
