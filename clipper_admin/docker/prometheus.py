"""The Prometheus scrape configuration of a Docker cluster (a host file bind-mounted read-only)."""

from __future__ import annotations

import io
import os
import tempfile

import requests
from ruamel.yaml import YAML

#: Where the query frontend serves the Prometheus text exposition.
QUERY_FRONTEND_METRICS_PATH = "/metrics"


def write_config(query_frontend_targets: list[str], path: str | None = None) -> str:
    """Write a config scraping the query frontends (``"name:port"``) every 5 s; return its path."""
    config = {
        "global": {"evaluation_interval": "5s", "scrape_interval": "5s"},
        "scrape_configs": [
            {
                "job_name": "query",
                "metrics_path": QUERY_FRONTEND_METRICS_PATH,
                "params": {"format": ["prometheus"]},
                "static_configs": [{"targets": list(query_frontend_targets)}],
            }
        ],
    }
    if path is None:
        fd, path = tempfile.mkstemp(prefix="clipper-prometheus-", suffix=".yml")
        os.close(fd)
    buf = io.StringIO()
    YAML().dump(config, buf)
    with open(path, "w") as f:
        f.write(buf.getvalue())
    os.chmod(path, 0o644)
    return os.path.realpath(path)


def reload(host: str, port: int) -> None:
    """Ask Prometheus to re-read its config (``--web.enable-lifecycle``); best effort."""
    try:
        requests.post(f"http://{host}:{port}/-/reload", timeout=5)
    except requests.RequestException:
        pass
