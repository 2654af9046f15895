"""Cooperative Ctrl-C for the commands that apply (``watch``, ``apply``, ``sync``).

Python's default SIGINT handler raises :class:`KeyboardInterrupt` wherever the main thread happens
to be. Inside a library that can be between a lock's acquire and its release (urllib3's connection
pool, under every Docker and Kubernetes call), and the library's own cleanup then waits on that lock
forever: the command hangs. While :meth:`CtrlC.installed`, the first Ctrl-C only asks to stop; the
apply in progress stops at its next safe point (:func:`checkpoint`: before an action, between the
polls of a wait, between a rollout's analyses), raising :class:`Stopped`, and
cleans up as after any failure. A second Ctrl-C raises :class:`KeyboardInterrupt` at once.
Every apply calls :func:`checkpoint` (the executor's default): where no handler is installed (the
controller, a library caller) it does nothing.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator


class Stopped(KeyboardInterrupt):
    """Ctrl-C, raised at a safe point of an apply (a :class:`KeyboardInterrupt`: the apply cleans up
    as for one; a canary/blueGreen rollout is left in progress, resumable)."""

    def __init__(self, message: str = "stopped (Ctrl-C)") -> None:
        super().__init__(message)


class CtrlC:
    """The SIGINT handler while :meth:`installed`: the first Ctrl-C sets ``stop`` (a loop's own stop
    event, or a fresh one) and asks the apply in progress to stop at its next safe point
    (:func:`checkpoint`); another one raises :class:`KeyboardInterrupt` at once."""

    def __init__(self, stop: threading.Event | None = None) -> None:
        self.stop = stop or threading.Event()
        self.requested = False

    def __call__(self, signum: int, frame: object) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        self.stop.set()

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        """Handle SIGINT (only the main thread can; elsewhere this does nothing)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = signal.signal(signal.SIGINT, self)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)


def checkpoint() -> None:
    """A safe point of an apply: raise :class:`Stopped` there once a Ctrl-C asked to stop."""
    handler = signal.getsignal(signal.SIGINT)
    if isinstance(handler, CtrlC) and handler.requested:
        raise Stopped()
