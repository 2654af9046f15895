"""Who may register as a model replica: ZeroMQ CURVE with per-cluster keys.

A cluster has two CURVE key pairs: the frontend's (server) and one shared by the replicas the
cluster starts (client). The query frontend's ROUTER is a CURVE server that accepts, through a ZAP
handler, only the cluster's client public key; a replica proves it holds the client secret key
during the handshake, before any message is exchanged. A peer without the keys (a rogue process, or
an original-protocol container, which knows nothing of CURVE) fails the handshake and is
disconnected by ZeroMQ: the frontend never sees a message from it.

Keys travel as a small JSON document of Z85 texts (``server_public``, ``client_public`` and, per
role, ``server_secret`` and/or ``client_secret``), given to a process either as a file path in
``CLIPPER_RPC_KEYS_FILE`` (local backend: an owner-only file in the cluster directory) or inline in
``CLIPPER_RPC_KEYS`` (Docker: container environment; Kubernetes: a Secret referenced by the pod).
Without keys a container speaks plain RPC v3 as the original, and a frontend accepts anyone only
when started with ``--rpc-auth none`` (the cluster opted in to original containers).
"""

from __future__ import annotations

import contextlib
import hmac
import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import zmq

if TYPE_CHECKING:
    from zmq.auth.thread import ThreadAuthenticator

RPC_KEYS_ENV = "CLIPPER_RPC_KEYS"
RPC_KEYS_FILE_ENV = "CLIPPER_RPC_KEYS_FILE"
ZAP_DOMAIN = "clipper"
_FIELDS = ("server_public", "client_public", "server_secret", "client_secret")


class RpcKeyError(ValueError):
    """Keys that are missing, unreadable or malformed; the message says which and where."""


@dataclass(frozen=True)
class RpcKeys:
    """A cluster's CURVE keys (Z85 text, 40 characters each). Secrets are absent where a role has
    no use for them: the frontend needs ``server_secret``, a replica ``client_secret``."""

    server_public: str
    client_public: str
    server_secret: str | None = None
    client_secret: str | None = None

    @classmethod
    def generate(cls) -> RpcKeys:
        require_curve()
        server_public, server_secret = zmq.curve_keypair()
        client_public, client_secret = zmq.curve_keypair()
        return cls(
            server_public.decode(), client_public.decode(), server_secret.decode(), client_secret.decode()
        )

    def for_frontend(self) -> RpcKeys:
        return RpcKeys(self.server_public, self.client_public, server_secret=self.server_secret)

    def for_replica(self) -> RpcKeys:
        return RpcKeys(self.server_public, self.client_public, client_secret=self.client_secret)

    def to_json(self) -> str:
        return json.dumps({k: getattr(self, k) for k in _FIELDS if getattr(self, k) is not None})

    @classmethod
    def from_json(cls, text: str, where: str = "the RPC keys") -> RpcKeys:
        try:
            doc = json.loads(text)
        except ValueError:
            raise RpcKeyError(f"{where}: not a JSON document of RPC keys") from None
        if not isinstance(doc, dict):
            raise RpcKeyError(f"{where}: not a JSON object of RPC keys")
        values: dict[str, str] = {}
        for name in _FIELDS:
            value = doc.get(name)
            if value is None and name.endswith("_public"):
                raise RpcKeyError(f"{where}: {name} is missing")
            if value is not None:
                if not isinstance(value, str) or len(value) != 40:
                    raise RpcKeyError(f"{where}: {name} is not a 40-character Z85 CURVE key")
                values[name] = value
        return cls(**values)

    def write(self, path: Path) -> None:
        """Write atomically with mode 0600 (the secrets in it admit a process as a replica)."""
        path = Path(path)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(self.to_json())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    @classmethod
    def read(cls, path: Path) -> RpcKeys:
        try:
            text = Path(path).read_text()
        except OSError as e:
            raise RpcKeyError(f"cannot read the RPC key file {path}: {e.strerror or e}") from None
        return cls.from_json(text, str(path))


def keys_from_env(env: Mapping[str, str] | None = None, role: str | None = None) -> RpcKeys | None:
    """The keys given by ``CLIPPER_RPC_KEYS`` (inline) or ``CLIPPER_RPC_KEYS_FILE``; None if neither.
    ``role`` ("frontend" / "replica"): also check that the secret that role needs is there."""
    env = os.environ if env is None else env
    inline = env.get(RPC_KEYS_ENV, "").strip()
    path = env.get(RPC_KEYS_FILE_ENV, "").strip()
    if inline:
        keys = RpcKeys.from_json(inline, RPC_KEYS_ENV)
    elif path:
        keys = RpcKeys.read(Path(path))
    else:
        return None
    if role is not None:
        check_role(keys, role)
    return keys


def check_role(keys: RpcKeys, role: str) -> str:
    """Raise RpcKeyError unless ``keys`` hold the secret ``role`` needs and CURVE is available;
    returns that secret."""
    secret = {"frontend": keys.server_secret, "replica": keys.client_secret}[role]
    if secret is None:
        need = "server_secret" if role == "frontend" else "client_secret"
        raise RpcKeyError(f"the RPC keys given to the {role} lack {need}")
    require_curve()
    return secret


def require_curve() -> None:
    if not zmq.has("curve"):
        raise RpcKeyError(
            "this pyzmq/libzmq has no CURVE support: reinstall pyzmq from its wheel, or run the "
            "cluster with unauthenticated replicas (--rpc-auth none)"
        )


class _OnlyClusterReplicas:
    """ZAP credentials provider: admits exactly the cluster's client public key."""

    def __init__(self, client_public: str) -> None:
        self._key = client_public.encode()

    def callback(self, domain: str, key: bytes) -> bool:
        return hmac.compare_digest(key, self._key)


def secure_server(
    ctx: zmq.Context[zmq.Socket[bytes]], sock: zmq.Socket[bytes], keys: RpcKeys
) -> ThreadAuthenticator:
    """Make ``sock`` a CURVE server admitting only the cluster's replicas; returns the started ZAP
    authenticator (a pyzmq thread: handshakes never wait for the event loop). Stop it after closing
    the socket."""
    from zmq.auth.thread import ThreadAuthenticator

    server_secret = check_role(keys, "frontend")
    auth = ThreadAuthenticator(ctx)
    auth.start()
    auth.configure_curve_callback(ZAP_DOMAIN, _OnlyClusterReplicas(keys.client_public))
    sock.curve_server = True
    sock.curve_publickey = keys.server_public.encode()
    sock.curve_secretkey = server_secret.encode()
    sock.setsockopt(zmq.ZAP_DOMAIN, ZAP_DOMAIN.encode())
    sock.setsockopt(zmq.ZAP_ENFORCE_DOMAIN, 1)  # no ZAP handler answering = nobody admitted
    return auth


def secure_client(sock: zmq.Socket[bytes], keys: RpcKeys) -> None:
    """Make ``sock`` a CURVE client with the cluster's replica keys (before ``connect``)."""
    client_secret = check_role(keys, "replica")
    sock.curve_serverkey = keys.server_public.encode()
    sock.curve_publickey = keys.client_public.encode()
    sock.curve_secretkey = client_secret.encode()


def main(argv: list[str] | None = None) -> int:
    """``python -m clipper.rpc.auth FILE``: write new cluster keys to FILE (mode 0600)."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    usage = "usage: python -m clipper.rpc.auth FILE  (writes new RPC CURVE keys, mode 0600)"
    if args in (["-h"], ["--help"]):
        print(usage)
        return 0
    if len(args) != 1 or args[0].startswith("-"):
        print(usage, file=sys.stderr)
        return 2
    try:
        RpcKeys.generate().write(Path(args[0]))
    except (OSError, RpcKeyError) as e:
        print(f"error: cannot write {args[0]}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
