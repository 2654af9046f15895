"""The health gate's smoke prediction sends the sample as the model's input type expects it."""

from __future__ import annotations

import json as jsonlib
from typing import Any

import pytest

from reconciler import clipper_cluster
from reconciler.clipper_cluster import ClipperCluster


class _Conn:
    """The few ``ClipperConnection`` calls a smoke prediction makes."""

    def get_all_apps(self) -> list[str]:
        return []

    def register_application(self, *args: Any) -> None: ...

    def link_model_to_app(self, *args: Any) -> None: ...

    def unregister_application(self, *args: Any) -> None: ...

    def get_query_addr(self) -> str:
        return "127.0.0.1:1"


class _Answer:
    status_code = 200
    headers = {"content-type": "application/json"}
    text = ""

    def json(self) -> dict[str, Any]:
        return {"output": "1.0", "default": False}


@pytest.mark.parametrize(
    ("input_type", "sample", "sent"),
    [
        ("doubles", [1, 2, 3], "[1.0, 2.0, 3.0]"),  # as read back from a custom resource
        ("floats", [1, 2.5], "[1.0, 2.5]"),
        ("ints", [1, 2], "[1, 2]"),
        ("strings", "abc", '"abc"'),
    ],
)
def test_a_sample_of_numbers_is_sent_as_the_input_type(monkeypatch, input_type, sample, sent):
    bodies: list[str] = []

    def post(url: str, json: Any, timeout: float) -> _Answer:
        bodies.append(jsonlib.dumps(json["input"]))
        return _Answer()

    monkeypatch.setattr(clipper_cluster.requests, "post", post)
    ClipperCluster(_Conn()).smoke_predict("m", "1", input_type, sample, timeout_s=1.0)  # type: ignore[arg-type]
    assert bodies == [sent]
