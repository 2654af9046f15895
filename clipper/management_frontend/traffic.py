"""Validation and reports of the traffic routes (``/admin/set_app_traffic``, ``/admin/get_app_traffic``).

Added routes (the original has none of these). Every user error is a :class:`TrafficError` with a
message saying what is wrong; the handler turns it into a 400.
"""

from __future__ import annotations

import math
from typing import Any

from clipper.config_store.base import ConfigStore
from clipper.config_store.traffic import (
    DEFAULT_ETA,
    DEFAULT_GAMMA,
    POLICIES,
    Selection,
    Shadow,
    Target,
    TargetCounts,
    TrafficConfig,
    is_finite_number,
    merge_stats,
)

SET_APP_TRAFFIC_SCHEMA = """
  {
   "name" := string,
   "targets" := [{"model_name" := string, "model_version" := string, "weight" := number}],
   "sticky_key" := string (optional),
   "shadow" := {"model_name" := string, "model_version" := string, "percent" := number} (optional),
   "selection" := {"policy" := "exp3" | "exp4", "eta" := number, "gamma" := number} (optional)
  }
"""
GET_APP_TRAFFIC_SCHEMA = """
  {
   "name" := string
  }
"""
GET_ALL_APP_TRAFFIC_SCHEMA = """
  {}
"""
_TOP_KEYS = {"name", "targets", "sticky_key", "shadow", "selection"}


class TrafficError(ValueError):
    """A request the caller must fix (400)."""


def _obj(v: Any, what: str) -> dict[str, Any]:
    if not isinstance(v, dict):
        raise TrafficError(f"{what} must be a JSON object")
    return v


def _str(d: dict[str, Any], key: str, what: str) -> str:
    v = d.get(key)
    if not isinstance(v, str) or not v:
        raise TrafficError(f"{what}: {key!r} must be a non-empty string")
    return v


def _num(d: dict[str, Any], key: str, what: str, default: float | None = None) -> float:
    if key not in d and default is not None:
        return default
    v = d.get(key)
    if not isinstance(v, int | float) or not is_finite_number(v):
        raise TrafficError(f"{what}: {key!r} must be a finite number")
    return float(v)


def _check_version(store: ConfigStore, name: str, version: str, input_type: str, what: str) -> None:
    rec = store.get_model(name, version)
    if rec is None or not rec.valid:
        versions = [v for v in store.list_model_versions(name)]
        if not versions:
            raise TrafficError(f"{what}: model {name!r} does not exist; deploy it first")
        raise TrafficError(
            f"{what}: model {name!r} has no version {version!r} (known: {', '.join(sorted(versions))})"
        )
    if rec.input_type != input_type:
        raise TrafficError(
            f"{what}: model {name}:{version} takes {rec.input_type}, but the application takes {input_type}"
        )


def parse_traffic(d: Any, store: ConfigStore) -> tuple[str, TrafficConfig]:
    """Validate a ``set_app_traffic`` body against the store; returns (app name, configuration)."""
    d = _obj(d, "the request body")
    unknown = sorted(set(d) - _TOP_KEYS)
    if unknown:
        raise TrafficError(f"unknown field(s) {', '.join(unknown)}; expected {', '.join(sorted(_TOP_KEYS))}")
    name = _str(d, "name", "the request")
    app = store.get_app(name)
    if app is None:
        raise TrafficError(f"application {name!r} does not exist; register it first")
    raw = d.get("targets")
    if not isinstance(raw, list) or not raw:
        raise TrafficError("'targets' must be a non-empty list of {model_name, model_version, weight}")
    targets: list[Target] = []
    seen: set[tuple[str, str]] = set()
    for i, t in enumerate(raw):
        what = f"targets[{i}]"
        t = _obj(t, what)
        model, version = _str(t, "model_name", what), _str(t, "model_version", what)
        weight = _num(t, "weight", what, 1.0)
        if weight < 0:
            raise TrafficError(f"{what}: weight must be >= 0, got {weight}")
        if (model, version) in seen:
            raise TrafficError(f"{what}: {model}:{version} is listed twice")
        seen.add((model, version))
        _check_version(store, model, version, app.input_type, what)
        targets.append(Target(model, version, weight))
    if not sum(t.weight for t in targets) > 0:
        raise TrafficError("the target weights must sum to more than 0")
    sticky = d.get("sticky_key")
    if sticky is not None and (not isinstance(sticky, str) or not sticky):
        raise TrafficError("'sticky_key' must be a non-empty string (a JSON field or header name)")
    shadow = None
    if d.get("shadow") is not None:
        s = _obj(d["shadow"], "shadow")
        model, version = _str(s, "model_name", "shadow"), _str(s, "model_version", "shadow")
        percent = _num(s, "percent", "shadow")
        if not 0 < percent <= 100:
            raise TrafficError(f"shadow: percent must be in (0, 100], got {percent}")
        if (model, version) in seen:
            raise TrafficError(f"shadow: {model}:{version} is already a target")
        _check_version(store, model, version, app.input_type, "shadow")
        shadow = Shadow(model, version, percent)
    selection = None
    if d.get("selection") is not None:
        p = _obj(d["selection"], "selection")
        policy = p.get("policy")
        if policy not in POLICIES:
            raise TrafficError(f"selection: policy must be one of {', '.join(POLICIES)}, got {policy!r}")
        eta = _num(p, "eta", "selection", DEFAULT_ETA)
        gamma = _num(p, "gamma", "selection", DEFAULT_GAMMA)
        if not eta > 0:
            raise TrafficError(f"selection: eta must be > 0, got {eta}")
        if not 0 < gamma <= 1:
            raise TrafficError(f"selection: gamma must be in (0, 1], got {gamma}")
        if sticky is not None:
            raise TrafficError("selection and sticky_key cannot be combined (the policy picks the target)")
        if policy == "exp4" and shadow is not None:
            raise TrafficError("selection exp4 already queries every target: remove 'shadow'")
        selection = Selection(str(policy), eta, gamma)
    return name, TrafficConfig(tuple(targets), sticky, shadow, selection)


def _counts_json(c: TargetCounts) -> dict[str, Any]:
    def rate(x: int) -> float | None:
        return x / c.requests if c.requests else None

    def q(v: float) -> float | None:
        x = c.quantile_micros(v)
        return None if x is None or math.isinf(x) else x

    return {
        "requests": c.requests,
        "defaults": c.defaults,
        "errors": c.errors,
        "default_rate": rate(c.defaults),
        "error_rate": rate(c.errors),
        "mean_latency_micros": c.latency_sum_micros / c.requests if c.requests else None,
        "p50_latency_micros": q(0.5),
        "p99_latency_micros": q(0.99),
        "latency_buckets": c.latency_buckets,
    }


def all_traffic_configs(store: ConfigStore) -> dict[str, dict[str, Any] | None]:
    """``get_all_app_traffic``: every application's traffic configuration (``None``: a plain app),
    without statistics: what a reconciler compares with its manifests, in one request."""
    out: dict[str, dict[str, Any] | None] = {}
    for app in store.list_apps():
        config = store.get_app_traffic(app.name)
        out[app.name] = None if config is None else config.to_dict()
    return out


def traffic_report(store: ConfigStore, name: str) -> dict[str, Any]:
    """``get_app_traffic``: the configuration and per-target statistics (summed over frontends,
    counted since this configuration took effect). A plain app reports its one implicit target."""
    app = store.get_app(name)
    if app is None:
        raise TrafficError(f"application {name!r} does not exist")
    config = store.get_app_traffic(name)
    if config is None:
        links = store.get_links(name)
        version = store.get_current_version(links[0]) if links else None
        targets = (
            [{"model_name": links[0], "model_version": version, "weight": 1.0}] if links and version else []
        )
        return {
            "name": name,
            "configured": False,
            "targets": targets,
            "sticky_key": None,
            "shadow": None,
            "selection": None,
        }
    stats = merge_stats(config.fingerprint(), store.list_traffic_stats(name))
    report: dict[str, Any] = {"name": name, "configured": True, **config.to_dict()}
    for t in report["targets"]:
        t["stats"] = _counts_json(stats.get(f"{t['model_name']}:{t['model_version']}", TargetCounts()))
    if config.shadow is not None:
        c = stats.get("shadow:" + config.shadow.key, TargetCounts())
        report["shadow"]["stats"] = {
            **_counts_json(c),
            "compared": c.compared,
            "agreed": c.agreed,
            "agreement_rate": c.agreed / c.compared if c.compared else None,
        }
    if config.selection is not None:
        weights = store.get_selection_weights(name)
        logs = [weights.get(t.key, 0.0) for t in config.targets]
        m = max(logs)
        exps = [math.exp(x - m) for x in logs]
        total = sum(exps)
        report["selection"]["weights"] = {t.key: e / total for t, e in zip(config.targets, exps, strict=True)}
    return report
