"""Time series for the dashboard's charts, sampled from the query frontends' own ``/metrics`` JSON.

A daemon thread fetches each configured URL every ``interval_s`` and keeps the last ``window_s``
of samples in a ring buffer; a sample holds, per application, the throughput (from the change of
``num_predictions`` since the previous sample), the p50/p99 latency of the frontend's reservoir and
the default-output ratio, and per model version the batch size and cache hit ratio.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.request
from collections import deque
from typing import Any

log = logging.getLogger(__name__)

Sample = dict[str, Any]


def _leaves(tree: dict[str, Any]) -> dict[str, dict[str, float]]:
    """``{category: [{name: {field: "value"}}]}`` -> ``{name: {field: float}}`` (unit strings dropped)."""
    out: dict[str, dict[str, float]] = {}
    for items in tree.values():
        for item in items:
            for name, fields in item.items():
                vals: dict[str, float] = {}
                for k, v in fields.items():
                    try:
                        vals[k] = float(v)
                    except (TypeError, ValueError):
                        continue
                out[name] = vals
    return out


def summarize(metrics: dict[str, dict[str, float]]) -> Sample:
    """Per app and per model version numbers of one report (throughput is added by the caller)."""
    apps: dict[str, dict[str, float]] = {}
    models: dict[str, dict[str, float]] = {}
    for name, v in metrics.items():
        parts = name.split(":")
        if parts[0] == "app" and len(parts) == 3:
            a = apps.setdefault(parts[1], {})
            field = parts[2]
            if field == "prediction_latency":
                a["p50_ms"] = v.get("p50", 0.0) / 1000.0
                a["p99_ms"] = v.get("p99", 0.0) / 1000.0
            elif field == "num_predictions":
                a["count"] = v.get("count", 0.0)
            elif field == "default_prediction_ratio":
                a["default_ratio"] = v.get("ratio", 0.0)
        elif parts[0] == "model" and len(parts) == 4:
            m = models.setdefault(f"{parts[1]}:{parts[2]}", {})
            field = parts[3]
            if field == "batch_size":
                m["batch_mean"] = v.get("mean", 0.0)
                m["batch_p99"] = v.get("p99", 0.0)
            elif field == "cache_hit_ratio":
                m["cache_hit_ratio"] = v.get("ratio", 0.0)
            elif field == "num_predictions":
                m["count"] = v.get("count", 0.0)
    cache = metrics.get("internal:prediction_cache_hit_ratio", {}).get("ratio", 0.0)
    return {"apps": apps, "models": models, "cache_hit_ratio": cache}


def _ratio(x: float) -> float:
    return x if x == x else 0.0  # nan (no lookups yet) -> 0


def merge(samples: list[Sample]) -> Sample:
    """One sample of several frontends: counts add up, latencies take the worst, ratios the mean."""
    if len(samples) == 1:
        return samples[0]
    out: Sample = {"apps": {}, "models": {}, "cache_hit_ratio": 0.0}
    for s in samples:
        out["cache_hit_ratio"] += _ratio(s["cache_hit_ratio"]) / len(samples)
        for kind in ("apps", "models"):
            for name, vals in s[kind].items():
                acc = out[kind].setdefault(name, {})
                for k, v in vals.items():
                    if k == "count":
                        acc[k] = acc.get(k, 0.0) + v
                    elif k.endswith("_ms") or k.endswith("_p99") or k.endswith("_mean"):
                        acc[k] = max(acc.get(k, 0.0), v)
                    else:
                        acc[k] = acc.get(k, 0.0) + _ratio(v) / len(samples)
    return out


class MetricsPoller:
    """Samples ``urls`` every ``interval_s``; :meth:`series` gives the ring buffer to the handlers."""

    def __init__(
        self, urls: list[str], interval_s: float = 2.0, window_s: float = 600.0, timeout_s: float = 1.5
    ) -> None:
        self.urls = urls
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self.samples: deque[Sample] = deque(maxlen=max(2, int(window_s / interval_s)))
        self.errors: dict[str, str] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._prev: tuple[float, Sample] | None = None

    def start(self) -> None:
        if not self.urls or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="dashboard-metrics", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.timeout_s + 1.0)

    def _fetch(self, url: str) -> Sample | None:
        try:
            req = urllib.request.Request(url, headers={"Accept": "application/json"})
            with urllib.request.urlopen(req, timeout=self.timeout_s) as r:  # noqa: S310 (configured URL)
                body = r.read()
            self.errors.pop(url, None)
            return summarize(_leaves(json.loads(body) if body.strip() else {}))
        except Exception as e:  # a frontend that is down is shown as such, never fatal
            self.errors[url] = str(e)
            return None

    def sample_once(self, now: float | None = None) -> None:
        got = [s for s in (self._fetch(u) for u in self.urls) if s is not None]
        if not got:
            return
        t = time.time() if now is None else now
        s = merge(got)
        s["t"] = t
        prev = self._prev
        for kind in ("apps", "models"):
            for name, vals in s[kind].items():
                rate = 0.0
                if prev is not None and t > prev[0]:
                    before = prev[1][kind].get(name, {}).get("count")
                    if before is not None and vals.get("count", 0.0) >= before:
                        rate = (vals.get("count", 0.0) - before) / (t - prev[0])
                vals["qps"] = rate
        self._prev = (t, s)
        self.samples.append(s)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample_once()
            self._stop.wait(self.interval_s)

    def series(self, since: float = 0.0) -> list[Sample]:
        return [s for s in list(self.samples) if s["t"] > since]
