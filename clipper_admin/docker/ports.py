"""Host port selection, as the original's ``find_unbound_port``."""

from __future__ import annotations

import logging
import random
import socket


def find_unbound_port(
    start: int | None = None,
    increment: bool = False,
    port_range: tuple[int, int] = (10000, 50000),
    verbose: bool = False,
    logger: logging.Logger | None = None,
) -> int:
    """Return ``start`` if it can be bound on 127.0.0.1, else another free port.

    The next candidate is ``start + 1`` with ``increment``, else a random port in ``port_range``; a
    falsy ``start`` begins with a random port. The check is done on the local machine.
    """
    log = logger or logging.getLogger(__name__)
    port = start or random.randint(*port_range)
    for _ in range(10_000):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", int(port)))
                return int(port)
            except OSError:
                if verbose:
                    log.info(f"Port {port} is in use, trying another one")
        port = port + 1 if increment else random.randint(*port_range)
    raise OSError("no unbound port found")
