"""The reconciler's state routes (added; the original has none): an apply lease and small records.

``clipper apply`` on any machine serialises on the lease ``/admin/acquire_lease`` hands out (it
expires ``ttl_ms`` after the last renewal, so a holder that dies frees it) and keeps its ownership
records and apply history under ``/admin/put_record``. Both live in the config store beside the
configuration, so every machine that reaches this management frontend sees the same lock and
records. Like every /admin route they require the admin token; a cluster started with
``adminAuth: none`` lets anybody write them, so the reconciler keeps its records on its own machine
for such a cluster (:mod:`reconciler.ownership`).
"""

from __future__ import annotations

from typing import Any

from clipper.management_frontend import jsonbody as jb

MAX_TTL_MS = 24 * 3600 * 1000
MAX_NAME_CHARS = 256
MAX_VALUE_BYTES = 4 * 1024 * 1024

ACQUIRE_LEASE_SCHEMA = """
  {
   "name" := string,
   "holder" := string,
   "ttl_ms" := int
  }
"""
RELEASE_LEASE_SCHEMA = """
  {
   "name" := string,
   "holder" := string
  }
"""
GET_RECORD_SCHEMA = """
  {
   "namespace" := string,
   "key" := string
  }
"""
GET_RECORDS_SCHEMA = """
  {
   "namespace" := string,
   "keys" := [string]
  }
"""
MAX_KEYS = 10_000
PUT_RECORD_SCHEMA = """
  {
   "namespace" := string,
   "key" := string,
   "value" := string | null
  }
"""


class StateError(ValueError):
    """A request the route refuses (400, plain text)."""


def name_arg(d: Any, key: str) -> str:
    v = jb.get_string(d, key)
    if not v or len(v) > MAX_NAME_CHARS:
        raise StateError(f"'{key}' must be a non-empty string of at most {MAX_NAME_CHARS} characters")
    return v


def ttl_s_arg(d: Any) -> float:
    ms = jb.get_int(d, "ttl_ms")
    if not 1 <= ms <= MAX_TTL_MS:
        raise StateError(f"'ttl_ms' must be between 1 and {MAX_TTL_MS} (got {ms})")
    return ms / 1000.0


def value_arg(d: Any) -> str | None:
    if not isinstance(d, dict) or "value" not in d:
        jb.get_string(d, "value")  # raises the usual missing-key / not-an-object error
    v = d["value"]
    if v is None:
        return None
    if not isinstance(v, str):
        return jb.get_string(d, "value")  # raises the usual type mismatch
    if len(v.encode()) > MAX_VALUE_BYTES:
        raise StateError(f"'value' is larger than {MAX_VALUE_BYTES} bytes")
    return v
