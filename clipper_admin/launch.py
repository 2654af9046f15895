"""The launch specification: one frozen settings object -> the argv and environment of each server.

Every backend (local processes, Docker, Kubernetes) starts the same three programs: the management
frontend, the query frontend and a model replica. This module is the one place that spells their
flags and environment variables; a backend adds only its transport details (the interpreter or
image that runs the program, container names, where a secret comes from). Pure: no I/O, no clock.

Secrets never appear in a :class:`Launch`. Where a server reads one from its environment, the launch
names the variable and the secret's key in :attr:`Launch.secret_env` (``token``, ``frontend``,
``replica``); the backend fills it in its own way (Docker: the value in the container environment;
Kubernetes: ``valueFrom.secretKeyRef``). Where a server reads a file (the local backend), the path is
an ordinary environment variable.

See ``docs/architecture.md`` (launch specification) for how the backends use it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from clipper.rpc.auth import RPC_KEYS_ENV, RPC_KEYS_FILE_ENV

from .admin_auth import TOKEN_FILE_ENV

#: The management frontend reads its token from this variable when it is not given a file.
ADMIN_TOKEN_ENV = "CLIPPER_ADMIN_TOKEN"

MANAGEMENT_MODULE = "clipper.management_frontend"
QUERY_MODULE = "clipper.query_frontend"
REPLICA_MODULE = "clipper.container"

#: Secret keys a backend is asked to provide (see ``Launch.secret_env``).
SecretKey = Literal["token", "frontend", "replica"]


@dataclass(frozen=True)
class Timeouts:
    """How long a backend waits, in seconds.

    ``frontend_start_s``: for the frontends (and the store) to answer after ``start_clipper``;
    ``replica_connect_s``: for new model replicas to run and connect to the query frontend.
    """

    frontend_start_s: float = 60.0
    replica_connect_s: float = 60.0

    def __post_init__(self) -> None:
        for name in ("frontend_start_s", "replica_connect_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ValueError(f"Timeouts.{name} must be a positive number of seconds, got {value!r}")

    def with_replica_connect_at_least(self, seconds: float) -> Timeouts:
        """These timeouts with at least ``seconds`` for replicas (e.g. a JVM start)."""
        return dataclasses.replace(self, replica_connect_s=max(self.replica_connect_s, seconds))


@dataclass(frozen=True)
class Limits:
    """Query frontend limits; ``None`` leaves the frontend's own default."""

    max_batch_inputs: int | None = None
    max_connections: int | None = None
    rpc_max_message_bytes: int | None = None
    batch_timeout_s: float | None = None


@dataclass(frozen=True)
class FrontendSettings:
    """Everything the two frontends are started with.

    ``host``/``rpc_host`` ``None``: the program's default (the images bind 0.0.0.0 in their entry
    point). ``admin_token``: ``"file"`` (the management frontend reads ``admin_token_file``),
    ``"env"`` (it reads ``CLIPPER_ADMIN_TOKEN``, supplied by the backend as the ``token`` secret) or
    ``"none"``. ``rpc_auth``: ``"curve"`` with ``rpc_keys_file`` (a path) or, without one, the
    ``frontend`` secret in ``CLIPPER_RPC_KEYS``; ``"none"`` admits any replica.
    """

    store: str
    management_port: int
    query_port: int
    rpc_port: int
    host: str | None = None
    rpc_host: str | None = None
    frontend_id: str | None = None
    cache_size_bytes: int = 33554432
    thread_pool_size: int = 1
    timeout_request: int = 5
    timeout_content: int = 300
    admin_token: Literal["file", "env", "none"] = "none"
    admin_token_file: str | None = None
    rpc_auth: Literal["curve", "none"] = "curve"
    rpc_keys_file: str | None = None
    # the query frontend also serves replicas on this Unix socket (no CURVE; local backend)
    rpc_socket: str | None = None
    limits: Limits = field(default_factory=Limits)
    # the dashboard: the query frontend's /metrics URL it samples, and (local backend) the cluster dir
    dashboard_metrics_url: str | None = None
    cluster_dir: str | None = None

    def __post_init__(self) -> None:
        if self.admin_token == "file" and not self.admin_token_file:
            raise ValueError("admin_token='file' needs admin_token_file")


@dataclass(frozen=True)
class ReplicaSettings:
    """What a model replica is started with. ``rpc_host``/``rpc_port``: where it connects;
    ``model_path`` ``None`` leaves the image's default; ``rpc_keys`` ``"file"`` (path in
    ``rpc_keys_file``), ``"secret"`` (the ``replica`` secret in ``CLIPPER_RPC_KEYS``) or ``"none"``."""

    name: str
    version: str
    input_type: str
    rpc_host: str
    rpc_port: int | None = None
    model_path: str | None = None
    metrics_port: int | None = None
    liveness_file: str | None = None
    rpc_keys: Literal["file", "secret", "none"] = "none"
    rpc_keys_file: str | None = None
    rpc_socket: str | None = None  # connect to the frontend's Unix socket instead (CLIPPER_RPC_SOCKET)


@dataclass(frozen=True)
class Launch:
    """One program to start: ``python -m <module> <args...>`` with ``env`` (plain values) and
    ``secret_env`` (variable -> secret key the backend supplies)."""

    module: str
    args: tuple[str, ...]
    env: Mapping[str, str]
    secret_env: Mapping[str, SecretKey]

    def command(self, python: str = "python") -> list[str]:
        return [python, "-m", self.module]


#: Flags a backend reads back from a running frontend's arguments (see :func:`flag_value`).
STORE_FLAG = "--store"
CACHE_SIZE_FLAG = "--prediction-cache-size"
RPC_AUTH_FLAG = "--rpc-auth"


def flag_value(args: list[str] | tuple[str, ...], flag: str) -> str | None:
    """The value following ``flag`` in a launched program's arguments, if any."""
    args = list(args)
    return args[args.index(flag) + 1] if flag in args[:-1] else None


def _opt(flag: str, value: object | None) -> list[str]:
    return [] if value is None else [flag, str(value)]


def management_frontend(s: FrontendSettings) -> Launch:
    args = [STORE_FLAG, s.store, *_opt("--host", s.host), "--port", str(s.management_port)]
    args += [*_opt("--metrics-url", s.dashboard_metrics_url), *_opt("--cluster-dir", s.cluster_dir)]
    env: dict[str, str] = {}
    secrets: dict[str, SecretKey] = {}
    if s.admin_token == "file":
        assert s.admin_token_file is not None  # checked in __post_init__
        env[TOKEN_FILE_ENV] = s.admin_token_file
    elif s.admin_token == "env":
        secrets[ADMIN_TOKEN_ENV] = "token"
    return Launch(MANAGEMENT_MODULE, tuple(args), env, secrets)


def query_frontend(s: FrontendSettings) -> Launch:
    lim = s.limits
    args = [
        STORE_FLAG, s.store, *_opt("--host", s.host), "--port", str(s.query_port),
        *_opt("--rpc-host", s.rpc_host), "--rpc-port", str(s.rpc_port),
        CACHE_SIZE_FLAG, str(s.cache_size_bytes), *_opt("--frontend-id", s.frontend_id),
        "--thread_pool_size", str(s.thread_pool_size),
        "--timeout_request", str(s.timeout_request),
        "--timeout_content", str(s.timeout_content),
        *_opt("--max-batch-inputs", lim.max_batch_inputs),
        *_opt("--max-connections", lim.max_connections),
        *_opt("--rpc-max-message-bytes", lim.rpc_max_message_bytes),
        *_opt("--batch-timeout", lim.batch_timeout_s),
        *_opt("--rpc-socket", s.rpc_socket),
        RPC_AUTH_FLAG, s.rpc_auth,
    ]  # fmt: skip
    secrets: dict[str, SecretKey] = {}
    if s.rpc_auth == "curve":
        if s.rpc_keys_file is not None:
            args += ["--rpc-keys-file", s.rpc_keys_file]
        else:
            secrets[RPC_KEYS_ENV] = "frontend"
    return Launch(QUERY_MODULE, tuple(args), {}, secrets)


def model_replica(r: ReplicaSettings) -> Launch:
    env = {
        "CLIPPER_MODEL_NAME": r.name,
        "CLIPPER_MODEL_VERSION": str(r.version),
        "CLIPPER_IP": r.rpc_host,
        **({"CLIPPER_PORT": str(r.rpc_port)} if r.rpc_port is not None else {}),
        "CLIPPER_INPUT_TYPE": r.input_type,
        **({"CLIPPER_MODEL_PATH": r.model_path} if r.model_path is not None else {}),
        **({"CLIPPER_METRICS_PORT": str(r.metrics_port)} if r.metrics_port is not None else {}),
        **({"CLIPPER_LIVENESS_FILE": r.liveness_file} if r.liveness_file is not None else {}),
        **({"CLIPPER_RPC_SOCKET": r.rpc_socket} if r.rpc_socket is not None else {}),
    }
    secrets: dict[str, SecretKey] = {}
    if r.rpc_keys == "file":
        if not r.rpc_keys_file:
            raise ValueError("rpc_keys='file' needs rpc_keys_file")
        env[RPC_KEYS_FILE_ENV] = r.rpc_keys_file  # the path, never the keys
    elif r.rpc_keys == "secret":
        secrets[RPC_KEYS_ENV] = "replica"
    return Launch(REPLICA_MODULE, (), env, secrets)
