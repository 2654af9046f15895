"""Shared helpers for the local-backend admin integration tests (real processes, free ports)."""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import requests

from clipper.net import free_port
from clipper_admin import ClipperConnection, LocalContainerManager
from clipper_admin.local.state import pid_alive


def new_manager(name: str, state_dir, **kwargs) -> LocalContainerManager:
    return LocalContainerManager(
        name,
        clipper_query_port=free_port(),
        clipper_management_port=free_port(),
        clipper_rpc_port=free_port(),
        state_dir=state_dir,
        **kwargs,
    )


@contextlib.contextmanager
def clipper_home(path) -> Iterator[None]:
    """``CLIPPER_HOME`` set to ``path`` inside the block, restored afterwards."""
    old = os.environ.get("CLIPPER_HOME")
    os.environ["CLIPPER_HOME"] = str(path)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("CLIPPER_HOME", None)
        else:
            os.environ["CLIPPER_HOME"] = old


def start_cluster(name: str, state_dir, **kwargs) -> ClipperConnection:
    conn = ClipperConnection(new_manager(name, state_dir, **kwargs))
    conn.start_clipper()
    return conn


def predict(conn: ClipperConnection, app: str, body: dict, timeout: float = 30.0) -> dict:
    """POST until a non-default answer arrives: a just-registered app or just-linked model takes a
    moment to reach the query frontend (404, then default outputs)."""
    url = f"http://{conn.get_query_addr()}/{app}/predict"
    deadline = time.monotonic() + timeout
    while True:
        r = requests.post(
            url, headers={"Content-type": "application/json"}, data=json.dumps(body), timeout=10
        )
        if r.status_code == 404 and time.monotonic() < deadline:
            time.sleep(0.05)
            continue
        assert r.status_code == 200, r.text
        out = r.json()
        answers = out.get("batch_predictions", [out])
        if not any(a.get("default") for a in answers) or time.monotonic() > deadline:
            return out
        time.sleep(0.05)


def wait_for(predicate, timeout=30.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def cluster_processes(root) -> set[int]:
    """Every live process the cluster's supervisors started (they carry the cluster directory)."""
    marker = f"CLIPPER_LOCAL_CLUSTER_DIR={root}\0".encode()
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if marker in (entry / "environ").read_bytes() and pid_alive(int(entry.name)):
                    found.add(int(entry.name))
    return found
