"""The original ``/metrics`` JSON: boost::property_tree style, every leaf a string.

Categories in the fixed order counters, ratio_counters, meters, histograms, each present only when
non-empty; 4-space indentation, ``/`` escaped as ``\\/``, trailing newline; empty body with no metrics.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from clipper.metrics.types import Metric

CATEGORIES = ("counters", "ratio_counters", "meters", "histograms")


def format_value(v: object) -> str:
    """Numbers as the original prints them: ints in decimal, floats ``%.17g`` (``nan``, ``-1``)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return f"{v:.17g}"
    return str(v)


def report_tree(metrics: Iterable[Metric]) -> dict[str, list[dict[str, dict[str, str]]]]:
    """``{category: [{name: {field: "value"}}]}`` in the fixed category order."""
    by_cat: dict[str, list[dict[str, dict[str, str]]]] = {c: [] for c in CATEGORIES}
    for m in metrics:
        fields = {k: format_value(v) for k, v in m.report().items()}
        by_cat[m.category].append({m.name: fields})
    return {c: items for c, items in by_cat.items() if items}


def to_json(metrics: Iterable[Metric]) -> bytes:
    tree = report_tree(metrics)
    if not tree:
        return b""
    text = json.dumps(tree, indent=4, ensure_ascii=False).replace("/", "\\/")
    return (text + "\n").encode()
