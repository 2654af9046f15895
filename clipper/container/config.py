"""The model container's configuration, read from the environment (the original's variables)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from clipper.datatypes import InputType, parse_input_type

#: Default CLIPPER_PREDICT_TIMEOUT, seconds. Far beyond any latency objective (the query frontend
#: already stops waiting after its --batch-timeout, 4 s) but short enough that a hung function costs
#: a replica for half a minute, not forever; PySpark gets more for JVM pauses and first-job costs.
DEFAULT_PREDICT_TIMEOUT = 30.0
DEFAULT_PYSPARK_PREDICT_TIMEOUT = 120.0
#: Default CLIPPER_RPC_SPIN_US, as seconds: the replica's poll for the next batch after an answer on
#: the local backend's Unix socket (clipper.rpc.stream.StreamChannel says why and what it costs).
DEFAULT_RPC_SPIN_S = 60e-6
MAX_RPC_SPIN_US = 10_000


class ConfigError(Exception):
    """A missing or invalid environment variable; the container exits 1 with this message."""


@dataclass(frozen=True)
class ContainerConfig:
    model_name: str
    model_version: str
    input_type: InputType
    host: str = "127.0.0.1"
    port: int = 7000
    model_path: Path = Path("/model")
    metrics_port: int | None = None
    ready_file: Path | None = None
    heartbeat_interval: float = 0.5
    reconnect_after: float = 4.0
    # Longest a batch may stay in the prediction function before the container exits to be restarted
    # (CLIPPER_PREDICT_TIMEOUT; 0 disables). None: the default of the model kind (see predict_limit).
    predict_timeout: float | None = None
    liveness_file: Path | None = None
    # A Unix socket of the query frontend on this host (CLIPPER_RPC_SOCKET): used instead of
    # CLIPPER_IP/CLIPPER_PORT, without CURVE (the socket file is owner-only)
    rpc_socket: Path | None = None
    # After answering on that socket, poll for the next batch this long before blocking
    # (CLIPPER_RPC_SPIN_US; 0 disables; see clipper.rpc.stream.StreamChannel)
    rpc_spin: float = DEFAULT_RPC_SPIN_S
    # Run as SCHED_BATCH (CLIPPER_SCHED_BATCH; see clipper.container.runtime.schedule_as_batch)
    sched_batch: bool = True

    @property
    def rpc_endpoint(self) -> str:
        """The ZeroMQ endpoint the container connects to."""
        return (
            f"unix://{self.rpc_socket}" if self.rpc_socket is not None else f"tcp://{self.host}:{self.port}"
        )

    def predict_limit(self, kind: str) -> float | None:
        """The watchdog limit in seconds for a model of ``kind`` ("python" / "pyspark"); None: off."""
        if self.predict_timeout is None:
            return DEFAULT_PYSPARK_PREDICT_TIMEOUT if kind == "pyspark" else DEFAULT_PREDICT_TIMEOUT
        return self.predict_timeout or None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ContainerConfig:
        """``CLIPPER_MODEL_NAME`` and ``CLIPPER_MODEL_VERSION`` are required.

        Optional: ``CLIPPER_IP`` (127.0.0.1), ``CLIPPER_PORT`` (7000), ``CLIPPER_INPUT_TYPE`` (doubles;
        every alias, case-insensitive, as the original container), ``CLIPPER_MODEL_PATH`` (/model),
        ``CLIPPER_METRICS_PORT`` (Prometheus metrics, off when unset), ``CLIPPER_READY_FILE`` (a file
        written with ``READY`` once the model is loaded, e.g. ``/model_is_ready.check`` for the
        original Docker HEALTHCHECK), ``CLIPPER_HEARTBEAT_INTERVAL`` (0.5 s),
        ``CLIPPER_RECONNECT_TIMEOUT`` (4 s without any message from the frontend: new session),
        ``CLIPPER_PREDICT_TIMEOUT`` (seconds one batch may take before the container logs why and
        exits with code 4 so that its backend restarts it; 30, PySpark 120; 0 disables) and
        ``CLIPPER_LIVENESS_FILE`` (kept holding the epoch second until which the container counts
        as alive, for an exec liveness probe; see :mod:`clipper.container.runtime`) and
        ``CLIPPER_RPC_SOCKET`` (an absolute path: the query frontend's Unix socket on this host,
        instead of ``CLIPPER_IP``/``CLIPPER_PORT``, without CURVE; the local backend's replicas) and
        ``CLIPPER_RPC_SPIN_US`` (on that socket, microseconds to poll for the next batch after an
        answer before blocking; 60, 0 disables, at most 10,000) and ``CLIPPER_SCHED_BATCH`` (1:
        the replica's threads are scheduled as batch work, which does not preempt a running
        process when it wakes, such as the query frontend; 0: as ordinary processes; default 1).
        """
        env = os.environ if env is None else env
        name = env.get("CLIPPER_MODEL_NAME", "").strip()
        if not name:
            raise ConfigError("CLIPPER_MODEL_NAME environment variable must be set")
        version = env.get("CLIPPER_MODEL_VERSION", "").strip()
        if not version:
            raise ConfigError("CLIPPER_MODEL_VERSION environment variable must be set")
        type_text = env.get("CLIPPER_INPUT_TYPE", "doubles").strip().lower()
        try:
            input_type = parse_input_type(type_text)
        except ValueError as e:
            raise ConfigError(f"CLIPPER_INPUT_TYPE: {e}") from None
        metrics = env.get("CLIPPER_METRICS_PORT", "").strip()
        ready = env.get("CLIPPER_READY_FILE", "").strip()
        socket_path = env.get("CLIPPER_RPC_SOCKET", "").strip()
        if socket_path and not os.path.isabs(socket_path):
            raise ConfigError(f"CLIPPER_RPC_SOCKET must be an absolute path, got {socket_path!r}")
        return cls(
            model_name=name,
            model_version=version,
            input_type=input_type,
            host=env.get("CLIPPER_IP", "").strip() or "127.0.0.1",
            port=_port(env.get("CLIPPER_PORT", "7000"), "CLIPPER_PORT"),
            model_path=Path(env.get("CLIPPER_MODEL_PATH", "").strip() or "/model"),
            metrics_port=_port(metrics, "CLIPPER_METRICS_PORT") if metrics else None,
            ready_file=Path(ready) if ready else None,
            heartbeat_interval=_seconds(
                env.get("CLIPPER_HEARTBEAT_INTERVAL", "0.5"), "CLIPPER_HEARTBEAT_INTERVAL"
            ),
            reconnect_after=_seconds(env.get("CLIPPER_RECONNECT_TIMEOUT", "4"), "CLIPPER_RECONNECT_TIMEOUT"),
            predict_timeout=_optional_seconds(
                env.get("CLIPPER_PREDICT_TIMEOUT", ""), "CLIPPER_PREDICT_TIMEOUT"
            ),
            liveness_file=Path(liveness)
            if (liveness := env.get("CLIPPER_LIVENESS_FILE", "").strip())
            else None,
            rpc_socket=Path(socket_path) if socket_path else None,
            rpc_spin=_spin_us(env.get("CLIPPER_RPC_SPIN_US", "").strip()),
            sched_batch=_flag(env.get("CLIPPER_SCHED_BATCH", ""), "CLIPPER_SCHED_BATCH", True),
        )


def _port(text: str, var: str) -> int:
    try:
        port = int(text.strip())
    except ValueError:
        raise ConfigError(f"{var} must be a port number, got {text!r}") from None
    if not 0 < port < 65536:
        raise ConfigError(f"{var} must be a port number, got {text!r}")
    return port


def _seconds(text: str, var: str) -> float:
    try:
        value = float(text.strip())
    except ValueError:
        raise ConfigError(f"{var} must be a number of seconds, got {text!r}") from None
    if not value > 0:
        raise ConfigError(f"{var} must be positive, got {text!r}")
    return value


def _optional_seconds(text: str, var: str) -> float | None:
    """Unset: None (the default applies); ``0``: 0.0 (off); else a positive number of seconds."""
    if not text.strip():
        return None
    try:
        value = float(text.strip())
    except ValueError:
        raise ConfigError(f"{var} must be a number of seconds (0 disables), got {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise ConfigError(f"{var} must be a number of seconds (0 disables), got {text!r}")
    return value


def _flag(text: str, var: str, default: bool) -> bool:
    """``1`` or ``0`` (unset: ``default``)."""
    text = text.strip()
    if not text:
        return default
    if text not in ("0", "1"):
        raise ConfigError(f"{var} must be 1 (on) or 0 (off), got {text!r}")
    return text == "1"


def _spin_us(text: str) -> float:
    """``CLIPPER_RPC_SPIN_US`` in seconds (unset: the default)."""
    if not text:
        return DEFAULT_RPC_SPIN_S
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= MAX_RPC_SPIN_US:
        raise ConfigError(
            f"CLIPPER_RPC_SPIN_US must be a number of microseconds from 0 (off) to {MAX_RPC_SPIN_US}, got {text!r}"
        )
    return value / 1e6
