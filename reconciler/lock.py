"""Serialise applies against one cluster.

Two locks, taken in this order:

* an fcntl lock on ``<cluster dir>/reconciler/apply.lock``: applies from one machine (it also covers
  starting a cluster that is not running yet, when there is no cluster to hold a lease in);
* a lease in the cluster's own config store (:func:`cluster_lease`, through the management API),
  when the cluster runs and its admin API requires the token: applies from *different* machines
  (two CI runners against one Docker or Kubernetes cluster) are serialised too. The lease expires
  :data:`LEASE_TTL_S` after its last renewal; a background thread renews it while the apply runs,
  so a holder that dies (``kill -9``, a lost runner) frees the cluster within that time.

A cluster started with ``adminAuth: none`` gets only the file lock: anybody could take or drop a
lease there.
"""

from __future__ import annotations

import contextlib
import fcntl
import getpass
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

from reconciler.errors import ReconcilerError

log = logging.getLogger(__name__)


class Leases(Protocol):
    """The lease operations of :class:`reconciler.port.ClusterPort`."""

    def acquire_lease(self, name: str, holder: str, ttl_s: float) -> str: ...

    def renew_lease(self, name: str, holder: str, ttl_s: float) -> bool: ...

    def release_lease(self, name: str, holder: str) -> bool: ...


#: the lease every apply of a cluster takes
LEASE_NAME = "reconciler-apply"
#: seconds a lease outlives its holder's last renewal
LEASE_TTL_S = 30.0
POLL_S = 0.1


def who() -> str:
    """``user@host``: who applies, for the lock holder and the history."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


def new_holder() -> str:
    """A lease holder id unique to this process and apply: ``user@host pid <pid> <random>``."""
    return f"{who()} pid {os.getpid()} {uuid.uuid4().hex[:8]}"


@contextlib.contextmanager
def apply_lock(
    cluster_dir: Path, timeout: float = 60.0, on_wait: Callable[[Path], None] | None = None
) -> Iterator[None]:
    """Hold the machine-local apply lock; wait up to ``timeout`` seconds (0: fail at once)."""
    path = cluster_dir / "reconciler" / "apply.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout
        waited = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
                    raise ReconcilerError(
                        f"another apply holds the lock on {path} (pid {holder}); gave up after "
                        f"{timeout:g} s (--lock-timeout)"
                    ) from None
                if not waited and on_wait is not None:
                    on_wait(path)
                waited = True
                time.sleep(POLL_S)
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


class _Renewer:
    """Renews a held lease every ``ttl_s / 3`` until stopped; notes when the lease was lost."""

    def __init__(self, cluster: Leases, holder: str, ttl_s: float) -> None:
        self.cluster, self.holder, self.ttl_s = cluster, holder, ttl_s
        self.lost = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="clipper-lease-renewer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.ttl_s / 3):
            try:
                if not self.cluster.renew_lease(LEASE_NAME, self.holder, self.ttl_s):
                    self.lost = True
                    log.warning("the cluster's apply lease expired while this apply held it")
            except Exception as e:  # a transient failure: the next renewal may succeed
                log.warning("could not renew the cluster's apply lease: %s", e)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5.0)


@contextlib.contextmanager
def cluster_lease(
    cluster: Leases,
    timeout: float = 60.0,
    on_wait: Callable[[str], None] | None = None,
    ttl_s: float = LEASE_TTL_S,
    holder: str | None = None,
) -> Iterator[str]:
    """Hold the cluster's apply lease (the cluster is connected); wait up to ``timeout`` seconds for
    another holder to release it or for its lease to expire. Yields the holder id."""
    holder = holder or new_holder()
    deadline = time.monotonic() + timeout
    waited = False
    while True:
        current = cluster.acquire_lease(LEASE_NAME, holder, ttl_s)
        if current == holder:
            break
        if time.monotonic() >= deadline:
            raise ReconcilerError(
                f"another apply holds the cluster's apply lease ({current}); gave up after {timeout:g} s "
                f"(--lock-timeout). A holder that died frees it within {ttl_s:g} s."
            )
        if not waited and on_wait is not None:
            on_wait(f"cluster lease held by {current}")
        waited = True
        time.sleep(min(1.0, max(POLL_S, ttl_s / 10)))
    renewer = _Renewer(cluster, holder, ttl_s)
    try:
        yield holder
    finally:
        renewer.stop()
        try:
            cluster.release_lease(LEASE_NAME, holder)
        except Exception as e:  # it expires by itself
            log.warning("could not release the cluster's apply lease (it expires in %g s): %s", ttl_s, e)
