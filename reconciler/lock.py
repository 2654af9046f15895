"""Serialise applies against one cluster: an fcntl lock on ``<cluster dir>/reconciler/apply.lock``.

For docker and kubernetes clusters the lock file lives at the same path on the machine running
``clipper``, so it serialises applies from that machine only (document: run CI applies from one
runner, or one ``clipper watch``).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from reconciler.errors import ReconcilerError


@contextlib.contextmanager
def apply_lock(
    cluster_dir: Path, timeout: float = 60.0, on_wait: Callable[[Path], None] | None = None
) -> Iterator[None]:
    """Hold the cluster's apply lock; wait up to ``timeout`` seconds (0: fail at once)."""
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
                time.sleep(0.1)
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock
