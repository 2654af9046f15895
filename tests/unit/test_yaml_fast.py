"""libyaml's composition of a manifest stream (reconciler/yaml_fast.py) builds the round-trip loader's
trees with the same values and positions, or declines (None) for what only the round-trip loader
handles or reports as the loader expects."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from reconciler import yaml_fast

REPO = Path(__file__).resolve().parents[2]
MANIFESTS = sorted(
    p
    for d in ("examples", "deploy", "tests")
    for p in (REPO / d).rglob("*")
    if p.suffix in (".yaml", ".yml") and p.is_file()
)


def _positions(node: Any) -> dict[Any, list[int]]:
    return {k: list(v) for k, v in (node.lc.data or {}).items()}


def assert_same_tree(fast: Any, rt: Any, path: tuple[Any, ...] = ()) -> None:
    if isinstance(rt, CommentedMap | CommentedSeq):
        assert type(fast) is type(rt), path
        assert (fast.lc.line, fast.lc.col) == (rt.lc.line, rt.lc.col), path
        assert _positions(fast) == _positions(rt), path
        assert list(fast) == list(rt) if isinstance(rt, CommentedMap) else len(fast) == len(rt), path
        for k in fast if isinstance(rt, CommentedMap) else range(len(rt)):
            assert_same_tree(fast[k], rt[k], (*path, k))
    else:  # the round-trip loader's str/int/float subclasses keep the source's style: same values
        assert fast == rt and type(fast) is not bool or type(rt) is bool, (path, fast, rt)
        assert isinstance(rt, type(fast)) or isinstance(fast, type(rt)), (path, type(fast), type(rt))


def test_libyaml_is_there() -> None:
    assert yaml_fast._YAML is not None, "ruamel.yaml.clib (a dependency) is not installed"


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_manifest_here_composes_as_the_round_trip_loader_reads_it(path: Path) -> None:
    text = path.read_text()
    rt = list(YAML(typ="rt").load_all(text))
    fast = yaml_fast.documents(text)
    if fast is None:
        assert "examples/manifests" not in str(path), "the examples must take the fast path"
        return
    assert len(fast) == len(rt)
    for f, r in zip(fast, rt, strict=True):
        assert_same_tree(f, r)


def test_the_examples_take_the_fast_path() -> None:
    examples = [p for p in MANIFESTS if "examples/manifests" in str(p)]
    assert len(examples) >= 5
    assert all(yaml_fast.documents(p.read_text()) is not None for p in examples)


SCALARS = """\
s: text
q: "quoted: 1"
i: 42
h: 0x1F
o: 0o17
f: 2.5
e: 1e3
inf: .inf
t: true
n: null
tilde: ~
block: |
  two
  lines
folded: >-
  one
  line
list: [1, "2", {k: v}]
"""


def test_scalars_resolve_as_the_round_trip_loader_resolves_them() -> None:
    (fast,) = yaml_fast.documents(SCALARS) or [None]
    (rt,) = YAML(typ="rt").load_all(SCALARS)
    assert_same_tree(fast, rt)
    assert (
        fast["i"] == 42 and fast["h"] == 31 and fast["o"] == 15 and fast["f"] == 2.5 and fast["e"] == 1000.0
    )
    assert fast["t"] is True and fast["n"] is None and fast["tilde"] is None
    assert fast["block"] == "two\nlines\n" and fast["folded"] == "one line" and fast["q"] == "quoted: 1"


@pytest.mark.parametrize(
    "text",
    [
        "a: &x 1\nb: *x\n",  # an anchor and an alias (the loader checks alias bombs)
        "base: &b {k: 1}\nm:\n  <<: *b\n",  # a merge key
        "a: !custom 1\n",  # a custom tag
        "a: !!binary aGk=\n",
        "when: 2024-01-01\n",  # a timestamp: the round-trip loader's own type
        "? [a, b]\n: 1\n",  # a complex key
        "a: 1\na: 2\n",  # a duplicate key: the round-trip loader names it
        "%YAML 1.1\n---\na: yes\n",  # a directive: YAML 1.1 resolves "yes" as a boolean
        "a: [1, 2\n",  # a syntax error: the round-trip loader's message and position
        # a colon inside a flow-style plain scalar: libyaml refuses it, ruamel.yaml reads it (as it always did)
        "spec: {source: {python: {function: models/sum.py:predict}}}\n",
        "a: !!omap [{k: 1}]\n",
    ],
)
def test_what_only_the_round_trip_loader_handles_is_left_to_it(text: str) -> None:
    assert yaml_fast.documents(text) is None


def test_a_stream_libyaml_refuses_still_loads() -> None:
    text = "spec: {source: {python: {function: models/sum.py:predict}}}\n"
    assert yaml_fast.documents(text) is None
    (doc,) = YAML(typ="rt").load_all(text)
    assert doc["spec"]["source"]["python"]["function"] == "models/sum.py:predict"


def test_without_libyaml_every_stream_is_left_to_the_round_trip_loader(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(yaml_fast, "_YAML", None)
    assert yaml_fast.documents("a: 1\n") is None


def test_empty_documents_and_streams() -> None:
    for text in ("", "a: 1\n---\n", "---\n---\nb: 2\n"):
        assert yaml_fast.documents(text) == list(YAML(typ="rt").load_all(text))


def test_an_empty_value_is_placed_on_its_keys_line() -> None:
    """The one position that differs: libyaml puts an empty (null) value right after its key's
    colon, where an error about it belongs; the round-trip parser at the next token."""
    (fast,) = yaml_fast.documents("spec:\n  replicas:\n  inputType: doubles\n") or [None]
    assert fast["spec"]["replicas"] is None
    assert fast["spec"].lc.value("replicas") == (1, 11)
