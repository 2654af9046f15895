"""``python -m clipper.query_frontend``: the query frontend process (docs/internals.md).

Also accepts the original's flags (``--redis_ip --redis_port --rpc_service_port --prediction_cache_size
--thread_pool_size --timeout_request --timeout_content``, as ``--name=value`` or ``--name value``).
When started the original way (``--redis_ip`` given and no ``--host``) it binds 0.0.0.0 as the
original did; otherwise it binds ``--host`` (default 127.0.0.1).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import signal
import sys

from clipper.compiled import use_cached_build

use_cached_build()  # before the hot path is imported: a cached compiled build of these sources, if any

from clipper.http.server import install_uvloop  # noqa: E402
from clipper.query_frontend.requests import DEFAULT_MAX_BATCH_INPUTS  # noqa: E402
from clipper.query_frontend.server import DEFAULT_CACHE_BYTES, QueryFrontend  # noqa: E402
from clipper.query_frontend.workers import DEFAULT_BATCH_TIMEOUT_S  # noqa: E402
from clipper.rpc.auth import RpcKeyError, RpcKeys, check_role, keys_from_env  # noqa: E402
from clipper.rpc.server import DEFAULT_MAX_MESSAGE_BYTES  # noqa: E402

log = logging.getLogger("clipper.query_frontend")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m clipper.query_frontend", description=__doc__.splitlines()[0])
    p.add_argument("--store", help="config store URL: sqlite:///abs/path.db or redis://host:port")
    p.add_argument("--host", default=None, help="HTTP bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=1337, help="HTTP port (default 1337)")
    p.add_argument("--rpc-host", default=None, help="RPC (ZeroMQ) bind address (default: --host)")
    p.add_argument("--rpc-port", type=int, default=None, help="RPC port (default 7000)")
    p.add_argument(
        "--rpc-socket",
        default=None,
        help="also serve replicas on this Unix socket, without CURVE: its directory must be the user's "
        "alone (mode 0700) and the socket is made owner-only (replicas: CLIPPER_RPC_SOCKET)",
    )
    p.add_argument(
        "--prediction-cache-size", type=int, default=None, help="cache capacity in bytes (0 = off)"
    )
    p.add_argument("--max-body-bytes", type=int, default=16 * 1024 * 1024, help="larger bodies get 413")
    p.add_argument(
        "--max-batch-inputs",
        type=int,
        default=DEFAULT_MAX_BATCH_INPUTS,
        help=f"longest input_batch of one request; longer get 413 (default {DEFAULT_MAX_BATCH_INPUTS})",
    )
    p.add_argument("--max-url-bytes", type=int, default=8192, help="longer URLs get 414 (default 8192)")
    p.add_argument(
        "--max-header-bytes", type=int, default=65536, help="larger request heads get 431 (default 65536)"
    )
    p.add_argument(
        "--max-connections",
        type=int,
        default=0,
        help="open HTTP connections at most; beyond, the longest-idle one is closed, else 503 "
        "(default 0: the open-file limit, raised to its hard limit, less headroom)",
    )
    p.add_argument(
        "--frontend-id", default=None, help="tag of this frontend's container rows (default host:rpc-port)"
    )
    p.add_argument(
        "--batch-timeout",
        type=float,
        default=DEFAULT_BATCH_TIMEOUT_S,
        help="seconds a replica may hold a batch before it is considered hung (default 4)",
    )
    p.add_argument(
        "--liveness-timeout", type=float, default=3.0, help="seconds of RPC silence = dead replica"
    )
    p.add_argument(
        "--rpc-auth",
        choices=("curve", "none"),
        default="curve",
        help="who may register as a model replica: 'curve' (default) only containers holding the "
        "cluster's RPC keys (--rpc-keys-file, or CLIPPER_RPC_KEYS_FILE / CLIPPER_RPC_KEYS in the "
        "environment); 'none' any container that reaches the RPC port (original-protocol containers)",
    )
    p.add_argument(
        "--rpc-keys-file",
        default=None,
        help="JSON file of the cluster's RPC CURVE keys (python -m clipper.rpc.auth FILE writes one)",
    )
    p.add_argument(
        "--rpc-max-message-bytes",
        type=int,
        default=DEFAULT_MAX_MESSAGE_BYTES,
        help="largest RPC frame (one input or one output) a peer may send; larger: disconnected "
        "(default 64 MiB)",
    )
    p.add_argument(
        "--traffic-seed",
        type=int,
        default=None,
        help="seed of the random choices of traffic splits, shadows and exp3 (reproducible tests and "
        "experiments; default: unseeded)",
    )
    p.add_argument("--log-level", default="INFO")
    # The original's flags.
    p.add_argument("--redis_ip", default=None, help=argparse.SUPPRESS)
    p.add_argument("--redis_port", type=int, default=6379, help=argparse.SUPPRESS)
    p.add_argument("--rpc_service_port", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--prediction_cache_size", type=int, dest="prediction_cache_size", help=argparse.SUPPRESS)
    p.add_argument("--thread_pool_size", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--timeout_request", type=int, default=5, help=argparse.SUPPRESS)
    p.add_argument("--timeout_content", type=int, default=300, help=argparse.SUPPRESS)
    return p


def frontend_from_args(args: argparse.Namespace) -> QueryFrontend:
    from clipper.config_store import open_store

    url = args.store
    if url is None:
        if args.redis_ip is None:
            raise SystemExit("error: --store URL (or the original --redis_ip/--redis_port) is required")
        url = f"redis://{args.redis_ip}:{args.redis_port}"
    host = args.host or ("0.0.0.0" if args.redis_ip is not None else "127.0.0.1")
    rpc_port = args.rpc_port if args.rpc_port is not None else (args.rpc_service_port or 7000)
    # --prediction-cache-size and the original --prediction_cache_size share one destination.
    cache = args.prediction_cache_size if args.prediction_cache_size is not None else DEFAULT_CACHE_BYTES
    if cache < 0:
        raise SystemExit("error: the prediction cache size must be >= 0")
    for flag in ("max_batch_inputs", "max_url_bytes", "max_header_bytes", "max_connections"):
        if getattr(args, flag) < (0 if flag == "max_connections" else 1):
            bound = ">= 0" if flag == "max_connections" else "positive"
            raise SystemExit(f"error: --{flag.replace('_', '-')} must be {bound}")
    for flag in ("timeout_request", "timeout_content"):  # the original's names and units (seconds)
        if getattr(args, flag) <= 0:
            raise SystemExit(f"error: --{flag} must be a positive number of seconds")
    if args.rpc_max_message_bytes <= 0:
        raise SystemExit("error: --rpc-max-message-bytes must be positive")
    rpc_keys = rpc_keys_from_args(args)
    store = open_store(url)
    return QueryFrontend(
        store,
        host=host,
        port=args.port,
        rpc_host=args.rpc_host or host,
        rpc_port=rpc_port,
        cache_bytes=cache,
        max_body_bytes=args.max_body_bytes,
        frontend_id=args.frontend_id,
        batch_timeout=args.batch_timeout,
        liveness_timeout=args.liveness_timeout,
        header_timeout=float(args.timeout_request),
        body_timeout=float(args.timeout_content),
        max_batch_inputs=args.max_batch_inputs,
        max_connections=args.max_connections,
        max_url_bytes=args.max_url_bytes,
        max_header_bytes=args.max_header_bytes,
        rpc_keys=rpc_keys,
        rpc_max_message_bytes=args.rpc_max_message_bytes,
        traffic_seed=args.traffic_seed,
        rpc_socket=args.rpc_socket,
    )


def rpc_keys_from_args(args: argparse.Namespace) -> RpcKeys | None:
    """The keys replicas must hold (``--rpc-auth curve``), or None (``--rpc-auth none``)."""
    if args.rpc_auth == "none":
        log.warning("--rpc-auth none: any process that reaches the RPC port can register as a replica")
        return None
    try:
        keys = RpcKeys.read(args.rpc_keys_file) if args.rpc_keys_file else keys_from_env()
        if keys is not None:
            check_role(keys, "frontend")
    except RpcKeyError as e:
        raise SystemExit(f"error: {e}") from None
    if keys is None:
        raise SystemExit(
            "error: --rpc-auth curve (the default) needs the cluster's RPC keys: --rpc-keys-file FILE "
            "(python -m clipper.rpc.auth FILE writes new ones) or CLIPPER_RPC_KEYS_FILE / "
            "CLIPPER_RPC_KEYS in the environment; --rpc-auth none lets any container register"
        )
    return keys


async def _run(args: argparse.Namespace) -> None:
    qf = frontend_from_args(args)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await qf.start()
    # Start-up objects (modules, config) never die: keep them out of every collection, and collect
    # young objects less often (the hot path allocates small acyclic objects per request).
    gc.collect()
    gc.freeze()
    gc.set_threshold(20000, 20, 50)
    try:
        await stop.wait()
    finally:
        log.info("shutting down")
        await qf.close()
        qf.store.close()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    install_uvloop()
    try:
        asyncio.run(_run(args))
    except (OSError, ValueError) as e:
        log.error("cannot run the query frontend: %s", e)
        return 1
    except Exception as e:  # e.g. the config store is unreachable at start-up
        log.error("cannot run the query frontend: %s: %s", type(e).__name__, e)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
