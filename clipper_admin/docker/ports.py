"""Host ports: their selection, as the original's ``find_unbound_port``, and who forwards them."""

from __future__ import annotations

import contextlib
import itertools
import logging
import random
import socket
from pathlib import Path


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


def processes(program: str, proc: Path = Path("/proc")) -> dict[int, list[str]]:
    """The arguments (after the program) of each running process whose program's file name is
    ``program``, by pid (Linux ``/proc``; none where it cannot be read)."""
    found: dict[int, list[str]] = {}
    with contextlib.suppress(OSError):
        for entry in proc.iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError):  # gone meanwhile, or not ours to read
                argv = (entry / "cmdline").read_bytes().decode(errors="replace").rstrip("\0").split("\0")
                if Path(argv[0]).name == program:
                    found[int(entry.name)] = argv[1:]
    return dict(sorted(found.items()))


def userland_proxy_pids(host_port: int, proc: Path = Path("/proc")) -> list[int]:
    """The engine's ``docker-proxy`` processes relaying connections to ``host_port`` of this machine:
    one per published port and address family when the engine runs with its default
    ``userland-proxy``; none when it forwards published ports with iptables DNAT
    (``"userland-proxy": false``), or when the engine runs on another machine."""
    port = str(host_port)
    return [
        pid
        for pid, args in processes("docker-proxy", proc).items()
        if any(flag == "-host-port" and value == port for flag, value in itertools.pairwise(args))
    ]
