"""User-defined metrics for prediction functions: ``add_metric`` and ``report_metric``."""

from .client import Prom_Type, add_metric, report_metric  # noqa: F401
from .config import API_VERSION, CHANNEL_NAME, DEFAULT_BUCKETS, UNIX_SOCKET_PATH  # noqa: F401

__all__ = ["add_metric", "report_metric", "DEFAULT_BUCKETS"]
