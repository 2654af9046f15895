"""Constants of the original ``clipper_admin.metrics`` (kept for import compatibility)."""

from ..version import __version__

DEFAULT_BUCKETS = [5, 10, 20, 35, 50, 75, 100, 150, 200, 250, 300, 400, 500, float("inf")]
CHANNEL_NAME = "clipper"
UNIX_SOCKET_PATH = "/tmp/redis.sock"
API_VERSION = __version__
