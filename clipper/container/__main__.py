"""``python -m clipper.container``: load the model directory and serve it to the query frontend.

Exit codes: 0 after SIGTERM/SIGINT, 1 for a configuration or model error, 3 when the model needs a
package that is not installed (as the original ``container_entry.sh`` hint).
"""

from __future__ import annotations

import logging
import os
import sys

from clipper.container.config import ConfigError, ContainerConfig
from clipper.container.loader import ModelLoadError, load_model
from clipper.container.metrics import ContainerMetrics
from clipper.container.runtime import ContainerRuntime


def main() -> int:
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
    try:
        predict = load_model(config.model_path)
    except ModelLoadError as e:
        log.error("%s", e)
        return e.exit_code
    log.info("model loaded from %s", config.model_path)
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
    ContainerRuntime(predict, config, metrics).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
