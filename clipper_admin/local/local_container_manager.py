"""``LocalContainerManager``: the embedded default backend (supervised local processes, SQLite store).

A cluster lives in ``$CLIPPER_HOME/<cluster>/`` (``CLIPPER_HOME`` defaults to ``~/.clipper``) and
outlives the Python process that started it: a detached supervisor (``supervisor.py``) keeps the
frontends and the model replicas running, and ``connect()`` from any process finds the cluster
through ``cluster.json``. See ``state.py`` for the directory layout.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Literal

import requests

from clipper.net import port_in_use
from clipper.process_table import model_replicas, scale_replicas
from clipper.rpc.auth import RpcKeys
from clipper.rpc.stream import MAX_SOCKET_PATH_BYTES

from .. import launch
from ..admin_auth import (
    OPT_OUT_WARNING,
    TOKEN_FILE_ENV,
    check_token,
    private_dir,
    read_token_file,
    resolve_token,
    write_token_file,
)
from ..admin_client import AdminClient
from ..container_manager import (
    CLIPPER_INTERNAL_MANAGEMENT_PORT,
    CLIPPER_INTERNAL_QUERY_PORT,
    CLIPPER_INTERNAL_RPC_PORT,
    ClusterAdapter,
    ContainerManager,
)
from ..exceptions import ClipperException
from ..launch import FrontendSettings, Limits, ReplicaSettings, Timeouts
from ..validation import validate_input_type, validate_num_replicas
from . import build
from .state import (
    MANAGEMENT,
    QUERY,
    ClusterDir,
    clipper_home,
    parse_model_process_id,
    pid_alive,
    read_json,
    same_process,
    write_text_atomic,
)

logger = logging.getLogger(__name__)

POLL = 0.05
_CLUSTER_NAME = re.compile(r"[A-Za-z0-9][-A-Za-z0-9_.]*\Z")


class LocalContainerManager(ContainerManager):
    waits_for_frontends = True  # start_clipper polls /admin/ping and /metrics itself

    def __init__(
        self,
        cluster_name="default-cluster",
        clipper_query_port=CLIPPER_INTERNAL_QUERY_PORT,
        clipper_management_port=CLIPPER_INTERNAL_MANAGEMENT_PORT,
        clipper_rpc_port=CLIPPER_INTERNAL_RPC_PORT,
        prometheus_port=9090,
        admin_token=None,
        state_dir=None,
        host="127.0.0.1",
        start_timeout=60.0,
        replica_timeout=60.0,
        allow_unauthenticated_replicas=False,
        *,
        timeouts: Timeouts | None = None,
        limits: Limits | None = None,
    ):
        """A Clipper cluster made of local processes.

        Parameters
        ----------
        cluster_name : str
            Names the cluster directory ``<state_dir>/<cluster_name>``.
        clipper_query_port, clipper_management_port, clipper_rpc_port : int
            Ports of the query frontend (HTTP), the management frontend and the model RPC service.
        prometheus_port : int
            Accepted for compatibility with ``DockerContainerManager``; the local backend runs no
            Prometheus (``get_metric_addr()`` is the query frontend, which serves the metrics).
        admin_token : str or False, optional
            The bearer token the management API requires. By default ``start_clipper()`` generates
            one; it is kept in ``<cluster dir>/admin_token`` (mode 0600, directory 0700), and
            ``connect()`` from another process of the same user reads it from there. Give a string
            to choose the token, or ``False`` to run without one (for REST clients of the original
            Clipper: any local user can then change the cluster; a warning says so).
        state_dir : str, optional
            Where clusters live; default ``$CLIPPER_HOME`` or ``~/.clipper``.
        host : str
            Interface the frontends bind to.
        start_timeout, replica_timeout : float
            Seconds to wait for the frontends, and for new model replicas to connect (the
            ``Timeouts`` the manager keeps; ``timeouts=`` gives both at once and wins).
        allow_unauthenticated_replicas : bool
            By default only the model replicas this cluster starts may register with the query
            frontend: ``start_clipper()`` generates CURVE keys (``<cluster dir>/rpc_keys.json``, mode
            0600) and hands them to the frontend and to every replica. ``True`` accepts any process
            that reaches the RPC port, e.g. original-protocol model containers you start yourself.
        timeouts : clipper_admin.launch.Timeouts, optional
        limits : clipper_admin.launch.Limits, optional
            Query frontend limits (``--max-batch-inputs``, ``--max-connections``...); default: the
            frontend's own.
        """
        if not isinstance(cluster_name, str) or not _CLUSTER_NAME.match(cluster_name):
            raise ClipperException(
                f"Invalid cluster_name {cluster_name!r}: use letters, digits, '-', '_' or '.', "
                "starting with a letter or digit"
            )
        self.cluster_name = cluster_name
        self.cluster_identifier = cluster_name
        self.clipper_query_port = clipper_query_port
        self.clipper_management_port = clipper_management_port
        self.clipper_rpc_port = clipper_rpc_port
        self.prometheus_port = prometheus_port
        if admin_token is not None and admin_token is not False:
            check_token(admin_token)
        self._admin_token_arg = admin_token
        self.admin_token = admin_token or None
        self.host: str = host
        self.timeouts = timeouts or Timeouts(start_timeout, replica_timeout)
        self.rpc_socket: str | None = None  # set when the cluster starts or is connected to
        self.limits = limits or Limits()
        self.allow_unauthenticated_replicas = bool(allow_unauthenticated_replicas)
        home = Path(state_dir).expanduser() if state_dir else clipper_home()
        self.dir = ClusterDir(home.absolute() / cluster_name)
        self.python = sys.executable
        self.logger = ClusterAdapter(logger, {"cluster_name": self.cluster_identifier})
        # attributes scripts written for the original's DockerContainerManager read
        self.centralize_log = False  # no fluentd: get_logs() copies the processes' log files
        self.logging_system_instance = None
        self.prom_config_path = None  # no Prometheus server on the local backend

    @property
    def public_hostname(self) -> str:
        """The host the cluster's addresses name (the original's ``docker_ip_address``): ``host``."""
        return self.host

    @property
    def docker_client(self):
        """Not available: an ``AttributeError`` that says why (``hasattr`` stays False)."""
        raise AttributeError(
            "LocalContainerManager has no docker_client: the local backend runs supervised "
            "processes, not Docker containers (use DockerContainerManager for Docker)"
        )

    # -- lifecycle -------------------------------------------------------------------------------
    def start_clipper(
        self,
        query_frontend_image=None,
        mgmt_frontend_image=None,
        frontend_exporter_image=None,
        cache_size=33554432,
        qf_http_thread_pool_size=1,
        qf_http_timeout_request=5,
        qf_http_timeout_content=300,
        num_frontend_replicas=1,
    ):
        """Start the management and query frontends under a new supervisor; images are ignored."""
        if num_frontend_replicas != 1:
            raise ClipperException(
                "The local container manager runs one query frontend. "
                "Please set num_frontend_replicas=1 or use Kubernetes."
            )
        info = self.dir.read_cluster()
        if info is not None:
            if self.dir.supervisor_alive():
                raise ClipperException(
                    f"Cluster {self.cluster_name} cannot be started because it already exists. "
                    "Please use ClipperConnection.connect() to connect to it."
                )
            # A start never deletes a cluster's state: the cluster comes back as it was recorded
            # (ports, store, models), under a new supervisor that adopts what still runs.
            self.logger.info(f"Restarting the stopped cluster recorded in {self.dir.root}")
            self.connect()
            return
        ports = {
            "clipper_query_port": self.clipper_query_port,
            "clipper_management_port": self.clipper_management_port,
            "clipper_rpc_port": self.clipper_rpc_port,
        }
        for arg, port in ports.items():
            if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
                raise ClipperException(f"{arg} must be a TCP port number, got {port!r}")
            if port_in_use(port, self.host):
                raise ClipperException(
                    f"Port {port} ({arg}) is already in use on {self.host}; stop what uses it or "
                    f"pass another {arg}= to LocalContainerManager"
                )
        if len(set(ports.values())) != len(ports):
            raise ClipperException(f"The cluster's ports must differ: {ports}")

        store_existed = self.dir.store_path.exists()  # then a failed start keeps it
        private_dir(self.dir.root)  # owner-only: the token, the store and the model code live here
        self.dir.logs.mkdir(parents=True, exist_ok=True)
        token = resolve_token(self._admin_token_arg)
        if token is None:
            self.admin_token_file.unlink(missing_ok=True)
            self.logger.warning(OPT_OUT_WARNING.format(cluster=self.cluster_name, addr=self.get_admin_addr()))
        else:
            write_token_file(self.admin_token_file, token)
        self.admin_token = token
        store = f"sqlite:///{self.dir.store_path}"
        rpc_auth = self._rpc_auth_setup()
        self.rpc_socket = self._rpc_socket_path() if rpc_auth == "curve" else None
        self.dir.write_cluster(
            {
                "cluster_name": self.cluster_name,
                "host": self.host,
                "query_port": self.clipper_query_port,
                "management_port": self.clipper_management_port,
                "rpc_port": self.clipper_rpc_port,
                "prometheus_port": self.prometheus_port,
                "store": store,
                "admin_auth": "token" if token else "none",  # the token itself: admin_token (0600)
                "rpc_auth": rpc_auth,  # "curve": the keys are in rpc_keys.json (0600)
                "rpc_socket": self.rpc_socket,  # where this cluster's replicas connect (None: TCP)
                "python": self.python,
                "created": time.time(),
            }
        )
        settings = FrontendSettings(
            store=store,
            management_port=self.clipper_management_port,
            query_port=self.clipper_query_port,
            rpc_port=self.clipper_rpc_port,
            host=self.host,
            rpc_host=self.host,
            frontend_id=QUERY,
            cache_size_bytes=cache_size,
            thread_pool_size=qf_http_thread_pool_size,
            timeout_request=qf_http_timeout_request,
            timeout_content=qf_http_timeout_content,
            admin_token="file" if token else "none",
            admin_token_file=str(self.admin_token_file) if token else None,
            rpc_auth=rpc_auth,
            rpc_keys_file=str(self.rpc_keys_file) if rpc_auth == "curve" else None,
            rpc_socket=self.rpc_socket,
            limits=self.limits,
            dashboard_metrics_url=f"http://{self.host}:{self.clipper_query_port}/metrics",
            cluster_dir=str(self.dir.root),
        )
        with self.dir.edit_desired() as table:
            table.clear()
            table[MANAGEMENT] = self._process_spec(launch.management_frontend(settings))
            table[QUERY] = self._process_spec(launch.query_frontend(settings))
        try:
            self._spawn_supervisor()
            self._wait_for_frontends()
        except BaseException:
            self._stop_processes(graceful=False)
            self._remove_state(keep_store=store_existed)
            raise
        self.connect()

    def _spawn_supervisor(self) -> None:
        """Start a supervisor unless one runs; returns once it holds ``supervisor.lock``.

        Serialised by ``.spawn.lock``: two processes connecting at once start one supervisor.
        """
        self.dir.logs.mkdir(parents=True, exist_ok=True)
        with open(self.dir.spawn_lock_file, "a") as spawn_lock:
            fcntl.flock(spawn_lock, fcntl.LOCK_EX)
            if self.dir.supervisor_alive():
                return
            try:
                with open(self.dir.logs / "supervisor.log", "ab") as log:
                    proc = subprocess.Popen(
                        [self.python, "-m", "clipper_admin.local.supervisor", str(self.dir.root)],
                        stdin=subprocess.DEVNULL,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                        close_fds=True,
                        cwd=str(self.dir.root),
                    )
            except OSError as e:
                raise ClipperException(
                    f"Cluster {self.cluster_name}: cannot start its supervisor with {self.python}: {e}"
                ) from None
            # reaped by stop_all when started by this process
            self._supervisor_proc: subprocess.Popen[bytes] | None = proc
            info = self.dir.read_cluster()
            assert info is not None  # written by start_clipper before any supervisor
            info["supervisor_pid"] = proc.pid
            self.dir.write_cluster(info)
            write_text_atomic(self.dir.pid_file, str(proc.pid))
            # Until it holds its lock (Python starting on a loaded machine) it is only a child of ours.
            deadline = time.monotonic() + self.start_timeout
            while not self.dir.supervisor_alive():
                self._raise_if_supervisor_exited("while starting")
                if time.monotonic() >= deadline:
                    raise ClipperException(
                        f"Cluster {self.cluster_name}: the supervisor did not start within "
                        f"{self.start_timeout:.0f} s.\n" + self._supervisor_log_tail()
                    )
                time.sleep(POLL)

    def _raise_if_supervisor_exited(self, doing: str) -> None:
        proc = getattr(self, "_supervisor_proc", None)
        code = proc.poll() if proc is not None else None
        if code is not None or (proc is None and not self.dir.supervisor_alive()):
            how = f" with code {code}" if code is not None else ""
            raise ClipperException(
                f"Cluster {self.cluster_name}: the supervisor exited{how} {doing}.\n"
                + self._supervisor_log_tail()
            )

    def _supervisor_log_tail(self) -> str:
        log = self.dir.logs / "supervisor.log"
        return f"--- last lines of {log} ---\n" + _tail_file(log)

    def _restart_supervisor(self) -> None:
        """A recorded cluster without a supervisor (killed, machine rebooted): start a new one, which
        adopts the processes still running and restarts the others; the store is kept."""
        self.logger.warning(
            f"Cluster {self.cluster_name}: its supervisor is not running; starting a new one (it adopts "
            "the processes still running, restarts the others, and keeps the store)"
        )
        self._supervisor_proc = None
        try:
            self._spawn_supervisor()
            self._wait_for_frontends()
        except (ClipperException, OSError) as e:
            raise ClipperException(
                f"Cluster {self.cluster_name} is not running and its supervisor could not bring it back "
                f"(logs in {self.dir.logs}): {e}\nCall ClipperConnection.stop_all() to clean it up, "
                "then start_clipper()."
            ) from None

    def _wait_for_frontends(self) -> None:
        checks = {
            MANAGEMENT: f"http://{self.get_admin_addr()}/admin/ping",
            QUERY: f"http://{self.get_query_addr()}/metrics",
        }
        headers = AdminClient(self).headers()
        pending = dict(checks)
        deadline = time.monotonic() + self.start_timeout
        while pending:
            self._raise_if_crashed(list(pending), "while starting")
            for proc_id, url in list(pending.items()):
                with contextlib.suppress(requests.RequestException):
                    if requests.get(url, headers=headers, timeout=2).status_code == 200:
                        del pending[proc_id]
            if not pending:
                return
            if time.monotonic() >= deadline:
                raise ClipperException(
                    f"Cluster {self.cluster_name}: {', '.join(pending)} did not answer within "
                    f"{self.start_timeout:.0f} s.\n" + self._log_tails(pending)
                )
            time.sleep(POLL)

    def _raise_if_crashed(self, proc_ids: list[str], doing: str) -> None:
        self._raise_if_supervisor_exited(doing)
        status = self.dir.read_current_status()
        crashed = [p for p in proc_ids if status.get(p, {}).get("restarts", 0) > 0]
        if crashed:
            codes = ", ".join(f"{p} (exit code {status[p]['last_exit']})" for p in crashed)
            raise ClipperException(
                f"Cluster {self.cluster_name}: {codes} crashed {doing}.\n" + self._log_tails(crashed)
            )

    def _log_tails(self, proc_ids) -> str:
        return "\n".join(
            f"--- last lines of {self.dir.log_file(p)} ---\n{self.dir.tail_log(p)}" for p in proc_ids
        )

    @property
    def admin_token_file(self) -> Path:
        return self.dir.root / "admin_token"

    def connect(self):
        try:
            info = self.dir.read_cluster()
        except PermissionError:
            raise ClipperException(
                f"Cluster {self.cluster_name}: cannot read {self.dir.cluster_file}, the cluster belongs "
                "to another user. Connect as that user, or use another cluster_name or CLIPPER_HOME."
            ) from None
        if info is None:
            raise ClipperException(
                f"Cluster {self.cluster_name} does not exist: there is no {self.dir.cluster_file}. "
                "Start it with ClipperConnection(LocalContainerManager("
                f"cluster_name={self.cluster_name!r})).start_clipper(), or set CLIPPER_HOME "
                "(or state_dir=) to the directory the cluster was started in."
            )
        self.host = info["host"]
        self.clipper_query_port = info["query_port"]
        self.clipper_management_port = info["management_port"]
        self.clipper_rpc_port = info["rpc_port"]
        self.prometheus_port = info.get("prometheus_port", self.prometheus_port)
        if isinstance(self._admin_token_arg, str):
            self.admin_token = self._admin_token_arg  # given explicitly: honoured
        elif info.get("admin_auth") == "none":
            self.admin_token = None
        else:  # clusters of earlier releases recorded the token in cluster.json
            self.admin_token = info.get("admin_token") or read_token_file(self.admin_token_file)
        self.python = info.get("python", self.python)
        self.allow_unauthenticated_replicas = info.get("rpc_auth", "none") == "none"
        self.rpc_socket = info.get("rpc_socket")  # clusters of earlier releases: TCP only
        if not self.dir.supervisor_alive():
            self._restart_supervisor()

    # -- settings of a running cluster -----------------------------------------------------------
    #: ``ClusterSpec`` fields (Python names) :meth:`apply_settings` changes on a running cluster.
    RECONFIGURABLE = frozenset(
        {"cache_size_bytes", "query_port", "management_port", "rpc_port", "admin_auth", "admin_token"}
    )

    def running_settings(self) -> dict[str, Any]:
        """The settings the running cluster runs with, keyed by ``ClusterSpec`` field (Python names):
        read from ``cluster.json``, the supervisor's desired process table and the token file."""
        info = self.dir.read_cluster()
        if info is None:
            raise ClipperException(f"Cluster {self.cluster_name} does not exist: no {self.dir.cluster_file}")
        query_argv: list[str] = self.dir.read_desired().get(QUERY, {}).get("argv", [])
        auth = info.get("admin_auth", "token")
        return {
            "backend": "local",
            "query_port": info["query_port"],
            "management_port": info["management_port"],
            "rpc_port": info["rpc_port"],
            "cache_size_bytes": int(_flag_value(query_argv, "--prediction-cache-size") or 33554432),
            "frontend_replicas": 1,
            "admin_auth": auth,
            "admin_token": read_token_file(self.admin_token_file) if auth == "token" else None,
            "allow_unauthenticated_replicas": info.get("rpc_auth", "none") == "none",
        }

    def apply_settings(self, changes: dict[str, Any]) -> None:
        """Change settings of the running cluster (keys: :attr:`RECONFIGURABLE`), restarting only the
        processes they concern, one at a time, each answering before the next: the query frontend
        (cache size, query or RPC port), every model replica (RPC port: they connect to it), the
        management frontend (its port, the admin token or ``admin_auth``)."""
        unknown = sorted(set(changes) - self.RECONFIGURABLE)
        if unknown:
            raise ClipperException(
                f"Cluster {self.cluster_name}: {', '.join(unknown)} cannot be changed on a running "
                "local cluster: delete the cluster and start it again"
            )
        info = self.dir.read_cluster()
        if info is None:
            raise ClipperException(f"Cluster {self.cluster_name} does not exist: no {self.dir.cluster_file}")
        for key in ("query_port", "management_port", "rpc_port"):
            port = changes.get(key)
            if port is not None and port != info[key] and port_in_use(port, self.host):
                raise ClipperException(
                    f"Cluster {self.cluster_name}: port {port} ({key}) is already in use on {self.host}"
                )
        query_changed = {"cache_size_bytes", "query_port", "rpc_port"} & set(changes)
        mgmt_changed = {"management_port", "admin_auth", "admin_token"} & set(changes)
        if "admin_auth" in changes or "admin_token" in changes:
            token = None if changes.get("admin_auth", info.get("admin_auth")) == "none" else (
                changes.get("admin_token") or read_token_file(self.admin_token_file) or resolve_token(None)
            )  # fmt: skip
            if token is None:
                self.admin_token_file.unlink(missing_ok=True)
            else:
                write_token_file(self.admin_token_file, token)
            info["admin_auth"] = "token" if token else "none"
        for key in ("query_port", "management_port", "rpc_port"):
            if key in changes:
                info[key] = changes[key]
        self.dir.write_cluster(info)
        if query_changed:
            with self.dir.edit_desired() as table:
                argv = table[QUERY]["argv"]
                for key, flag in (
                    ("cache_size_bytes", "--prediction-cache-size"),
                    ("query_port", "--port"),
                    ("rpc_port", "--rpc-port"),
                ):
                    if key in changes:
                        _set_flag(argv, flag, str(changes[key]))
            self.clipper_query_port, self.clipper_rpc_port = info["query_port"], info["rpc_port"]
            self._wait_restarted(QUERY, f"http://{self.get_query_addr()}/metrics")
        if "rpc_port" in changes:
            # Replicas on the Unix socket keep it (its path does not change): they reconnect to the
            # restarted frontend by themselves. Restarting them too would let the wait below count
            # a replica that the supervisor is about to replace.
            with self.dir.edit_desired() as table:
                for proc_id in table:
                    env = table[proc_id]["env"]
                    if parse_model_process_id(proc_id) and "CLIPPER_RPC_SOCKET" not in env:
                        env["CLIPPER_PORT"] = str(changes["rpc_port"])
        if query_changed:
            self._wait_replicas_reconnected()
        if mgmt_changed:
            with self.dir.edit_desired() as table:
                spec = table[MANAGEMENT]
                if "management_port" in changes:
                    _set_flag(spec["argv"], "--port", str(changes["management_port"]))
                spec["env"].pop(TOKEN_FILE_ENV, None)
                if info["admin_auth"] == "token":
                    spec["env"][TOKEN_FILE_ENV] = str(self.admin_token_file)
                # the token is read at start: a new token in the same file needs a restart too
                spec["restarted"] = time.time()
            self.clipper_management_port = info["management_port"]
            self.admin_token = read_token_file(self.admin_token_file)
            self._wait_restarted(MANAGEMENT, f"http://{self.get_admin_addr()}/admin/ping")

    def _wait_replicas_reconnected(self) -> None:
        """After a query frontend restart: wait until every model replica has connected to it again."""
        want = sum(1 for p in self.dir.read_desired() if parse_model_process_id(p))
        client = AdminClient(self, timeout=5)
        deadline = time.monotonic() + self.replica_timeout
        connected = 0
        while time.monotonic() < deadline:
            with contextlib.suppress(ClipperException, requests.RequestException):
                connected = len(client.post_json("get_all_containers", {"verbose": True}))
                if connected >= want:
                    return
            time.sleep(POLL)
        raise ClipperException(
            f"Cluster {self.cluster_name}: {connected} of {want} model replicas reconnected to the "
            f"restarted query frontend within {self.replica_timeout:.0f} s"
        )

    def _wait_restarted(self, proc_id: str, url: str) -> None:
        """Wait until the supervisor runs ``proc_id``'s new command and it answers ``url``."""
        from .supervisor import spec_hash

        want = spec_hash(self.dir.read_desired()[proc_id])
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            self._raise_if_supervisor_exited(f"while restarting {proc_id}")
            state = self.dir.read_status().get(proc_id, {})
            if state.get("spec") == want and state.get("pid"):
                with contextlib.suppress(requests.RequestException):
                    if requests.get(url, headers=AdminClient(self).headers(), timeout=2).status_code == 200:
                        return
            time.sleep(POLL)
        raise ClipperException(
            f"Cluster {self.cluster_name}: {proc_id} did not answer at {url} within "
            f"{self.start_timeout:.0f} s after its restart.\n" + self._log_tails([proc_id])
        )

    # -- models ----------------------------------------------------------------------------------
    def build_model(
        self, name, version, model_data_path, base_image, container_registry=None, pkgs_to_install=None
    ) -> str:
        """Copy the model directory under the cluster directory; returns ``local:<path>``.

        ``base_image`` and ``container_registry`` do not apply to local processes and are ignored.
        """
        return build.build_local_model(self.dir.models, name, str(version), model_data_path, pkgs_to_install)

    def deploy_model(self, name, version, input_type, image, num_replicas=1):
        self.set_num_replicas(name, version, input_type, image, num_replicas)

    @property
    def rpc_keys_file(self) -> Path:
        return self.dir.root / "rpc_keys.json"

    def _rpc_socket_path(self) -> str | None:
        """Where the replicas this cluster starts reach the query frontend: a Unix socket in the
        cluster directory (owner-only, so no CURVE is needed on it: every frame of a batch is
        otherwise encrypted and decrypted on both sides), or None (TCP with CURVE) when the
        directory's path is too long for a Unix socket address."""
        path = str(self.dir.root.resolve() / "rpc.sock")
        return path if len(os.fsencode(path)) <= MAX_SOCKET_PATH_BYTES else None

    def _rpc_auth_setup(self) -> Literal["curve", "none"]:
        """Generate the cluster's RPC keys (unless unauthenticated replicas are allowed); returns
        the ``rpc_auth`` mode (recorded in cluster.json)."""
        if self.allow_unauthenticated_replicas:
            self.rpc_keys_file.unlink(missing_ok=True)
            return "none"
        RpcKeys.generate().write(self.rpc_keys_file)
        return "curve"

    def _process_spec(self, spec: launch.Launch) -> dict[str, Any]:
        """A supervisor process entry (``desired.json``); never holds a secret: the local backend
        hands secrets over as file paths."""
        assert not spec.secret_env, spec.secret_env
        return {"argv": [*spec.command(self.python), *spec.args], "env": dict(spec.env)}

    def _model_spec(self, name: str, version: str, input_type: str, model_dir: Path) -> dict[str, Any]:
        replica = ReplicaSettings(
            name=name,
            version=version,
            input_type=input_type,
            rpc_host=self.host,
            rpc_port=self.clipper_rpc_port,
            model_path=str(model_dir),
            rpc_keys="none" if self.allow_unauthenticated_replicas else "file",
            rpc_keys_file=None if self.allow_unauthenticated_replicas else str(self.rpc_keys_file),
            rpc_socket=self.rpc_socket,
        )
        return {**self._process_spec(launch.model_replica(replica)), "cwd": str(model_dir)}

    def get_num_replicas(self, name, version) -> int:
        """The number of replicas the supervisor keeps running (a crashed one is being restarted)."""
        return len(model_replicas(self.dir.read_desired(), name, str(version)))

    def set_num_replicas(self, name, version, input_type, image, num_replicas):
        version = str(version)
        validate_num_replicas(num_replicas)
        input_type = validate_input_type(input_type)
        model_dir = build.model_dir_of(image, self.dir.models)
        spec = self._model_spec(name, version, input_type, model_dir)
        with self.dir.edit_desired() as table:
            current = model_replicas(table, name, version)
            self.logger.info(
                f"Found {len(current)} replicas for {name}:{version}. "
                + (f"Adding {num_replicas - len(current)}" if num_replicas >= len(current) else
                   f"Removing {len(current) - num_replicas}")
            )  # fmt: skip
            added = scale_replicas(table, name, version, num_replicas, spec)
        if added:
            try:
                self._wait_for_replicas(name, version, num_replicas, added)
            except ClipperException:
                with self.dir.edit_desired() as table:
                    for proc_id in added:
                        table.pop(proc_id, None)
                raise

    def _wait_for_replicas(self, name, version, num_replicas, added: list[str]) -> None:
        """Wait until the new replicas run and ``num_replicas`` are connected to the query frontend."""
        client = AdminClient(self, timeout=5)
        deadline = time.monotonic() + self.replica_timeout
        while True:
            self._raise_if_crashed(added, f"while starting model {name}:{version}")
            status = self.dir.read_status()
            if all(status.get(p, {}).get("state") == "running" for p in added):
                connected = [
                    c
                    for c in client.post_json("get_all_containers", {"verbose": True})
                    if c.get("model_name") == name and str(c.get("model_version")) == version
                ]
                if len(connected) >= num_replicas:
                    return
            if time.monotonic() >= deadline:
                raise ClipperException(
                    f"Model {name}:{version}: {len(added)} new replica(s) did not connect to the query "
                    f"frontend within {self.replica_timeout:.0f} s.\n" + self._log_tails(added)
                )
            time.sleep(POLL)

    def _remove_models(self, keep) -> None:
        with self.dir.edit_desired() as table:
            removed = [p for p in table if parse_model_process_id(p) and not keep(parse_model_process_id(p))]
            for proc_id in removed:
                del table[proc_id]
        # Wait (bounded) for the supervisor to let go of them, so that stop_* is synchronous.
        deadline = time.monotonic() + 10
        while removed and time.monotonic() < deadline and self.dir.supervisor_alive():
            status = self.dir.read_status()
            if not any(p in status for p in removed):
                return
            time.sleep(POLL)

    def stop_models(self, models):
        wanted = {(name, str(v)) for name, versions in models.items() for v in versions}
        self._remove_models(lambda parsed: parsed[:2] not in wanted)

    def stop_all_model_containers(self):
        self._remove_models(lambda parsed: False)

    def remove_model_image(self, image: str) -> None:
        """Delete a model directory this cluster built (``local:<path>`` under its models); one that is
        not this cluster's (:func:`build.model_dir_of` refuses it) is left alone."""
        try:
            model_dir = build.model_dir_of(image, self.dir.models)
        except ClipperException:
            return
        shutil.rmtree(model_dir, ignore_errors=True)

    def stop_all(self, graceful=True):
        """Stop the supervisor and every process it started, and forget the cluster's state.

        Logs stay in ``<cluster dir>/logs``. Works without ``connect()``; a no-op without a cluster.
        This explicit call is the only one that deletes the cluster's store (``config.db``).
        """
        self._stop_processes(graceful)
        self._remove_state()

    def _stop_processes(self, graceful: bool) -> None:
        """The supervisor (which stops its processes), then any recorded process still running
        (e.g. left by a supervisor that was SIGKILLed)."""
        pid = self.dir.supervisor_pid()
        if pid is not None and pid_alive(pid) and _is_our_supervisor(pid, self.dir.root):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM if graceful else signal.SIGKILL)
            deadline = time.monotonic() + (15 if graceful else 2)
            while pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(POLL)
            # Whatever is left of its process group (children, their children) goes too.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
        proc = getattr(self, "_supervisor_proc", None)
        if proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
        status = read_json(self.dir.status_file, {}) or {}
        left = [*(status.get("processes") or {}).values(), *(status.get("stopping") or [])]
        for entry in left:
            if same_process(entry.get("pid"), entry.get("start")):
                with contextlib.suppress(OSError):
                    if (pgid := os.getpgid(entry["pid"])) != os.getpgid(0):
                        os.killpg(pgid, signal.SIGKILL)  # with what it started
                with contextlib.suppress(OSError):
                    os.kill(entry["pid"], signal.SIGKILL)

    def _remove_state(self, keep_store: bool = False) -> None:
        for path in (
            self.dir.cluster_file, self.dir.desired_file, self.dir.status_file, self.dir.pid_file,
            self.admin_token_file, self.rpc_keys_file,
        ):  # fmt: skip
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        for path in [] if keep_store else self.dir.root.glob("config.db*"):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        shutil.rmtree(self.dir.models, ignore_errors=True)

    # -- logs and addresses ----------------------------------------------------------------------
    def get_logs(self, logging_dir):
        logging_dir = Path(logging_dir).expanduser().absolute()
        logging_dir.mkdir(parents=True, exist_ok=True)
        paths = []
        for log in sorted(self.dir.logs.glob("*.log")):
            dest = logging_dir / f"{self.cluster_name}-{log.name}"
            shutil.copyfile(log, dest)
            paths.append(str(dest))
        return paths

    def get_admin_addr(self):
        return f"{self.host}:{self.clipper_management_port}"

    def get_query_addr(self):
        return f"{self.host}:{self.clipper_query_port}"

    def get_metric_addr(self):
        """The query frontend: the local backend runs no Prometheus, the frontend serves the metrics."""
        return f"{self.host}:{self.clipper_query_port}"


def _flag_value(argv: list[str], flag: str) -> str | None:
    return argv[argv.index(flag) + 1] if flag in argv[:-1] else None


def _set_flag(argv: list[str], flag: str, value: str) -> None:
    """Set ``flag``'s value in ``argv`` (a command :mod:`clipper_admin.launch` built) in place."""
    if flag in argv[:-1]:
        argv[argv.index(flag) + 1] = value
    else:
        argv += [flag, value]


def _tail_file(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log written)"


def _is_our_supervisor(pid: int, root: Path) -> bool:
    """Guard against a recycled pid: the process must be this cluster's supervisor."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return True  # no /proc: trust the pid file
    return b"clipper_admin.local.supervisor" in cmdline and str(root).encode() in cmdline
