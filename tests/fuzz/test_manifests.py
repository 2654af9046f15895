"""Hypothesis-generated manifests never produce a traceback: the loader raises ``ManifestErrors``
(each problem with file:line:col) or succeeds, and ``clipper diff -f`` exits 2 with located errors.

Documents are mutations of a valid manifest set (random keys, values, types, YAML syntax noise), so
the loader's deep paths are reached, not only the YAML parser."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from reconciler.errors import ManifestErrors
from reconciler.loader import load_manifests

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
LOCATED = re.compile(r"^\S+:\d+:\d+ ", re.M)

BASE = [
    {"apiVersion": "clipper.ai/v1", "kind": "Cluster", "metadata": {"name": "c"},
     "spec": {"backend": "local", "queryPort": 18001, "managementPort": 18002, "rpcPort": 18003}},
    {"apiVersion": "clipper.ai/v1", "kind": "Model", "metadata": {"name": "m"},
     "spec": {"inputType": "doubles", "replicas": 1, "source": {"python": {"function": "model.py:predict"}}}},
    {"apiVersion": "clipper.ai/v1", "kind": "Application", "metadata": {"name": "a"},
     "spec": {"inputType": "doubles", "defaultOutput": "-1.0", "latencySloMicros": 100000, "model": "m"}},
]  # fmt: skip

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(["doubles", "local", "docker", "${NOPE}", "${HOME}", "../x.py:f", "clipper.ai/v1", ""]),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=10,
)
KEYS = ["apiVersion", "kind", "metadata", "name", "spec", "backend", "queryPort", "inputType", "replicas",
        "source", "python", "function", "model", "latencySloMicros", "defaultOutput", "labels", "x"]  # fmt: skip


def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, (*prefix, i))


@st.composite
def mutated_docs(draw):
    import copy

    docs = copy.deepcopy(BASE)
    for _ in range(draw(st.integers(1, 4))):
        doc = docs[draw(st.integers(0, len(docs) - 1))]
        path = draw(st.sampled_from(list(_paths(doc))[1:]))
        parent = doc
        for p in path[:-1]:
            parent = parent[p]
        action = draw(st.sampled_from(["set", "delete", "add"]))
        if action == "set":
            parent[path[-1]] = draw(values)
        elif action == "delete" and isinstance(parent, dict):
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[draw(st.sampled_from(KEYS))] = draw(values)
    return docs


def dump(docs) -> str:
    import io

    yaml = YAML()
    out = io.StringIO()
    yaml.dump_all(docs, out)
    return out.getvalue()


def noise(text: str, data) -> str:
    """Byte-level damage to the YAML text: cut, insert syntax characters, break indentation."""
    for _ in range(data.draw(st.integers(0, 3))):
        i = data.draw(st.integers(0, len(text)))
        text = (
            text[:i]
            + data.draw(st.sampled_from(["", ":", "- ", "\t", "{", "]", "&a", "*a", "\n  x", "'", "%"]))
            + text[i:]
        )
    if data.draw(st.booleans()):
        text = text[: data.draw(st.integers(0, len(text)))]
    return text


def check_load(tmp: Path, text: str) -> None:
    f = tmp / "m.yaml"
    f.write_text(text)
    (tmp / "model.py").write_text("def predict(xs):\n    return [str(sum(x)) for x in xs]\n")
    try:
        load_manifests([str(f)], env={"HOME": "/root"})
    except ManifestErrors as e:
        assert e.problems
        for p in e.problems:
            assert str(p).startswith(f"{p.file}:{p.line}:{p.column} "), str(p)


SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True
)


@SETTINGS
@given(docs=mutated_docs())
def test_mutated_manifests_load_or_give_located_errors(tmp_path_factory, docs):
    assume(not any(isinstance(d.get("kind"), list | dict) for d in docs))  # known defect, see below
    check_load(tmp_path_factory.mktemp("m", numbered=True), dump(docs))


@SETTINGS
@given(docs=mutated_docs(), data=st.data())
def test_damaged_yaml_gives_located_errors(tmp_path_factory, docs, data):
    assume(not any(isinstance(d.get("kind"), list | dict) for d in docs))  # known defect, see below
    check_load(tmp_path_factory.mktemp("y", numbered=True), noise(dump(docs), data))


@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(text=st.text(max_size=300))
def test_arbitrary_text_gives_located_errors(tmp_path_factory, text):
    check_load(tmp_path_factory.mktemp("t", numbered=True), text)


@pytest.mark.parametrize("kind", ["[Model]", "{a: 1}"])
def test_non_scalar_kind_is_a_located_error(tmp_path, kind):
    check_load(tmp_path, f"apiVersion: clipper.ai/v1\nkind: {kind}\nmetadata: {{name: m}}\nspec: {{}}\n")


@pytest.mark.parametrize(
    "text",
    [
        "kind: Model\nmetadata: {name: m}\nspec: [",
        "apiVersion: clipper.ai/v1\nkind: Nope\nmetadata: {name: x}\n",
        dump([{**BASE[1], "spec": {**BASE[1]["spec"], "replicas": "many"}}]),
        "\x00\x01binary",
    ],
    ids=["yaml-syntax", "unknown-kind", "bad-field", "binary"],
)
def test_clipper_diff_exits_2_with_located_errors(tmp_path, text):
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    r = subprocess.run(
        [sys.executable, "-m", "reconciler", "diff", "-f", str(f)],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )  # fmt: skip
    out = r.stdout + r.stderr
    assert r.returncode == 2, out
    assert "Traceback" not in out
    assert LOCATED.search(out) or f"{f}:" in out, out
