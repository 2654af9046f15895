"""The model container's configuration, read from the environment (the original's variables)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from clipper.datatypes import InputType, parse_input_type


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

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ContainerConfig:
        """``CLIPPER_MODEL_NAME`` and ``CLIPPER_MODEL_VERSION`` are required.

        Optional: ``CLIPPER_IP`` (127.0.0.1), ``CLIPPER_PORT`` (7000), ``CLIPPER_INPUT_TYPE`` (doubles;
        every alias, case-insensitive, as the original container), ``CLIPPER_MODEL_PATH`` (/model),
        ``CLIPPER_METRICS_PORT`` (Prometheus metrics, off when unset), ``CLIPPER_READY_FILE`` (a file
        written with ``READY`` once the model is loaded, e.g. ``/model_is_ready.check`` for the
        original Docker HEALTHCHECK), ``CLIPPER_HEARTBEAT_INTERVAL`` (0.5 s) and
        ``CLIPPER_RECONNECT_TIMEOUT`` (4 s without any message from the frontend: new session).
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
