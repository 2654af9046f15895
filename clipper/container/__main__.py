"""``python -m clipper.container``: load the model directory and serve it to the query frontend.

Exit codes: 0 after SIGTERM/SIGINT, 1 for a configuration or model error, 3 when the model needs a
package that is not installed (as the original ``container_entry.sh`` hint), 4 when a batch stayed in
the prediction function longer than ``CLIPPER_PREDICT_TIMEOUT`` (hung: restart the replica).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from clipper.compiled import use_cached_build

use_cached_build()  # before the hot path is imported: a cached compiled build of these sources, if any

from clipper.container.config import ConfigError, ContainerConfig  # noqa: E402
from clipper.container.loader import ModelLoadError, load_model, read_metadata  # noqa: E402
from clipper.container.metrics import ContainerMetrics  # noqa: E402
from clipper.container.runtime import ContainerRuntime, schedule_as_batch  # noqa: E402
from clipper.rpc.auth import RpcKeyError, keys_from_env  # noqa: E402

ENVIRONMENT = """\
The container takes no arguments: it is configured by its environment.

required:
  CLIPPER_MODEL_NAME          the model's name
  CLIPPER_MODEL_VERSION       the model's version

optional:
  CLIPPER_IP                  the query frontend's RPC host (127.0.0.1)
  CLIPPER_PORT                its RPC port (7000)
  CLIPPER_RPC_SOCKET          the query frontend's Unix socket on this host, instead of the two above
                              (an absolute path; no CURVE there: the socket file is owner-only)
  CLIPPER_RPC_SPIN_US         on that socket, microseconds to poll for the next batch after an answer
                              before blocking (60; 0 disables; costs CPU, saves a wake-up per batch)
  CLIPPER_SCHED_BATCH         1: schedule the replica as batch work, which does not preempt a running
                              process (the query frontend) when a batch wakes it; 0: as usual (1)
  CLIPPER_INPUT_TYPE          ints, floats, doubles, bytes or strings, any alias (doubles)
  CLIPPER_MODEL_PATH          the model directory (/model)
  CLIPPER_METRICS_PORT        serve Prometheus metrics on this port (off when unset)
  CLIPPER_READY_FILE          a file written with READY once the model is loaded
  CLIPPER_HEARTBEAT_INTERVAL  seconds between heartbeats (0.5)
  CLIPPER_RECONNECT_TIMEOUT   seconds without a message from the frontend before a new session (4)
  CLIPPER_PREDICT_TIMEOUT     seconds one batch may take before the container exits with code 4
                              (30, PySpark 120; 0 disables)
  CLIPPER_LIVENESS_FILE       kept holding the epoch second until which the container counts as alive
  CLIPPER_RPC_KEYS            the cluster's RPC keys, inline (see python -m clipper.rpc.auth)
  CLIPPER_RPC_KEYS_FILE       ... or the file holding them
  CLIPPER_LOG_LEVEL           DEBUG, INFO, WARNING or ERROR (INFO)
  CLIPPER_SPARK_MASTER        (PySpark models) the Spark master (local[1])
  CLIPPER_SPARK_CONF          (PySpark models) extra Spark settings, key=value separated by commas
  CLIPPER_SPARK_LOG_LEVEL     (PySpark models) Spark's log level (WARN)

exit codes: 0 after SIGTERM/SIGINT, 1 configuration or model error, 3 a package the model needs is
not installed, 4 a batch stayed in the prediction function longer than CLIPPER_PREDICT_TIMEOUT.
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Only ``-h/--help`` (the usage and the environment variables above); anything else is an error."""
    parser = argparse.ArgumentParser(
        prog="python -m clipper.container",
        description="A Clipper model container: loads the model directory and serves it to the "
        "query frontend over RPC.",
        epilog=ENVIRONMENT,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr,
        level=os.environ.get("CLIPPER_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    log = logging.getLogger("clipper.container")
    try:
        config = ContainerConfig.from_env()
    except ConfigError as e:
        log.error("%s", e)
        return 1
    if config.sched_batch:  # before the model loads: its threads and processes inherit the policy
        schedule_as_batch()
    try:  # CLIPPER_RPC_KEYS / CLIPPER_RPC_KEYS_FILE: the cluster's replica keys (clipper.rpc.auth)
        rpc_keys = keys_from_env(role="replica")
    except RpcKeyError as e:
        log.error("%s", e)
        return 1
    try:
        predict = load_model(config.model_path)
        limit = config.predict_limit(read_metadata(config.model_path)["kind"])
    except ModelLoadError as e:
        log.error("%s", e)
        return e.exit_code
    log.info("model loaded from %s", config.model_path)
    if limit is None:
        log.info("no prediction watchdog (CLIPPER_PREDICT_TIMEOUT=0)")
    metrics = None
    if config.metrics_port is not None:
        metrics = ContainerMetrics()
        try:
            metrics.serve(config.metrics_port)
        except OSError as e:
            log.error("cannot serve metrics on port %d: %s", config.metrics_port, e)
            return 1
        log.info("Prometheus metrics on port %d", config.metrics_port)
    if config.ready_file is not None:
        try:
            config.ready_file.write_text("READY")
        except OSError as e:
            log.warning("cannot write the ready file %s: %s", config.ready_file, e)
    ContainerRuntime(predict, config, metrics, rpc_keys=rpc_keys, predict_limit=limit).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
