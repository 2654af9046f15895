"""``clipper delete --cluster`` holds the cluster's apply lease while it stops the cluster; the lease
lives in that cluster's store, so it goes with it: releasing it afterwards must not call the stopped
management API (which failed and logged a misleading warning after every successful delete)."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from reconciler.clipper_cluster import ClipperCluster
from reconciler.lock import cluster_lease


class Admin:
    def __init__(self) -> None:
        self.up = True
        self.routes: list[str] = []

    def post_json(self, route: str, body: dict[str, Any]) -> Any:
        if not self.up:
            raise ConnectionError("connection refused: the management frontend is stopped")
        self.routes.append(route)
        if route == "acquire_lease":
            return {"holder": body["holder"]}
        if route == "renew_lease":
            return {"renewed": True}
        if route == "release_lease":
            return {"released": True}
        raise AssertionError(route)


class Conn:
    def __init__(self) -> None:
        self._admin = Admin()

    def stop_all(self) -> None:
        self._admin.up = False

    def connect(self) -> None:
        self._admin.up = True

    @property
    def cm(self) -> object:
        return object()


def test_a_lease_held_while_the_cluster_stops_is_released_without_a_warning(caplog: pytest.LogCaptureFixture):
    conn = Conn()
    cluster = ClipperCluster(conn)  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING), cluster_lease(cluster, timeout=0, ttl_s=0.3):
        cluster.stop_cluster()
        assert cluster.renew_lease("reconciler-apply", "me", 0.3)  # the renewer finds nothing to lose
    assert conn._admin.routes == ["acquire_lease"]  # nothing asked of the stopped cluster
    assert not [r for r in caplog.records if "lease" in r.getMessage()], caplog.text


def test_a_running_cluster_still_gets_its_lease_released(caplog: pytest.LogCaptureFixture):
    conn = Conn()
    cluster = ClipperCluster(conn)  # type: ignore[arg-type]
    with cluster_lease(cluster, timeout=0, ttl_s=30):
        pass
    assert conn._admin.routes == ["acquire_lease", "release_lease"]
    # a cluster started again after a stop keeps its lease the usual way
    cluster.stop_cluster()
    cluster.connect()
    with cluster_lease(cluster, timeout=0, ttl_s=30):
        pass
    assert conn._admin.routes[-2:] == ["acquire_lease", "release_lease"]


def test_a_failed_release_on_a_running_cluster_still_warns(caplog: pytest.LogCaptureFixture):
    conn = Conn()
    cluster = ClipperCluster(conn)  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING), cluster_lease(cluster, timeout=0, ttl_s=30):
        conn._admin.up = False  # the management frontend died, the cluster was not stopped by us
    assert "could not release the cluster's apply lease" in caplog.text
