"""``python -m clipper.management_frontend --store URL [--host 127.0.0.1] [--port 1338]``.

Also accepts the original ``--redis_ip/--redis_port`` (meaning ``--store redis://ip:port``).
``CLIPPER_ADMIN_TOKEN_FILE`` (or ``--admin-token-file``), a file holding the token, makes every
``/admin/*`` route except ``/admin/ping`` require ``Authorization: Bearer <token>``; the cluster
managers always use it (the token stays out of every environment, command line and log).
``CLIPPER_ADMIN_TOKEN`` (the token itself) is still accepted. Without either, the API is open and a
warning says so.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import time
from pathlib import Path

from clipper.config_store import open_store
from clipper.config_store.base import ConfigStore
from clipper.http.server import install_uvloop, serve
from clipper.management_frontend.app import ManagementApp

log = logging.getLogger("clipper.management_frontend")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m clipper.management_frontend", description=__doc__.split("\n")[0]
    )
    p.add_argument("--store", help="config store URL: sqlite:///abs/path.db or redis://host:port")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=1338)
    p.add_argument("--redis_ip", "--redis-ip", dest="redis_ip", help="original flag: Redis host")
    p.add_argument(
        "--redis_port", "--redis-port", dest="redis_port", type=int, help="original flag: Redis port"
    )
    p.add_argument(
        "--admin-token", default=os.environ.get("CLIPPER_ADMIN_TOKEN") or None, help=argparse.SUPPRESS
    )
    p.add_argument(
        "--admin-token-file",
        default=os.environ.get("CLIPPER_ADMIN_TOKEN_FILE") or None,
        help="file holding the bearer token /admin/* requires (env CLIPPER_ADMIN_TOKEN_FILE)",
    )
    p.add_argument(
        "--metrics-url",
        action="append",
        default=[u for u in os.environ.get("CLIPPER_DASHBOARD_METRICS_URLS", "").split(",") if u],
        help="a query frontend's /metrics URL the dashboard samples every 2 s (repeatable; "
        "env CLIPPER_DASHBOARD_METRICS_URLS, comma-separated)",
    )
    p.add_argument(
        "--cluster-dir",
        default=os.environ.get("CLIPPER_DASHBOARD_CLUSTER_DIR") or None,
        help="local backend: the cluster directory, whose logs/ and status.json the dashboard shows",
    )
    p.add_argument("--log-level", default=os.environ.get("CLIPPER_LOG_LEVEL", "INFO"))
    args = p.parse_args(argv)
    if args.store is None:
        if args.redis_ip is None and args.redis_port is None:
            p.error("give --store URL (or the original --redis_ip/--redis_port)")
        args.store = f"redis://{args.redis_ip or 'localhost'}:{args.redis_port or 6379}"
    if args.admin_token_file:
        try:
            args.admin_token = Path(args.admin_token_file).read_text().strip()
        except OSError as e:
            p.error(f"cannot read the admin token file {args.admin_token_file}: {e.strerror}")
        if not args.admin_token:
            p.error(f"the admin token file {args.admin_token_file} is empty")
    return args


def open_store_retrying(url: str) -> ConfigStore:
    """Like the original: retry the store connection once a second, logging each failure, until it works."""
    while True:
        try:
            store = open_store(url)
            store.list_apps()  # a real round trip
            return store
        except ValueError:
            raise
        except Exception as e:
            log.error(
                "Management frontend failed to connect to the config store %s: %s. Retrying in 1 second...",
                url,
                e,
            )
            time.sleep(1.0)


async def _main(args: argparse.Namespace) -> None:
    store = open_store_retrying(args.store)
    app = ManagementApp(
        store,
        admin_token=args.admin_token,
        store_url=args.store,
        metrics_urls=args.metrics_url,
        cluster_dir=args.cluster_dir,
    )
    server = await serve(app, args.host, args.port)
    app.dashboard.start()
    log.info(
        "management frontend listening on %s:%d (store %s%s)",
        args.host,
        server.port,
        args.store.split("?")[0],
        ", admin token required" if args.admin_token else "",
    )
    if not args.admin_token:
        log.warning(
            "no admin token: every /admin/* call is accepted from anyone who reaches %s:%d "
            "(set CLIPPER_ADMIN_TOKEN_FILE to require one)",
            args.host,
            server.port,
        )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    app.dashboard.stop()
    await server.close()
    store.close()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    install_uvloop()
    try:
        asyncio.run(_main(args))
    except ValueError as e:  # a bad store URL
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # e.g. the port is taken
        print(f"error: cannot listen on {args.host}:{args.port}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
