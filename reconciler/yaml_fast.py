"""Manifests composed by libyaml into the round-trip loader's trees, positions included.

The loader needs ruamel.yaml's round-trip trees (``CommentedMap``/``CommentedSeq``): their ``.lc``
positions let every error name a line and column. The round-trip parser runs in Python, ~2 ms per
small manifest: at 500 models and 500 applications it was most of a no-op ``clipper apply``.
libyaml (``ruamel.yaml.clib``) composes the same stream about ten times faster; :func:`documents`
turns its nodes into the same trees with the same positions, for the streams made only of what
manifests use: mappings with plain scalar keys, sequences, and the core schema's scalars (strings,
integers, floats, booleans, null). Anything else -- a tag, an anchor or alias, a merge key, a
complex or duplicate key, a directive, a syntax error -- or a missing libyaml returns ``None``, and
the caller parses the stream with the round-trip loader, which reports it exactly as before. One
position differs: an empty (null) value sits right after its key's colon, where an error about it
belongs (the round-trip parser places it at the next token, often the next line).
"""

from __future__ import annotations

from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

_TAG = "tag:yaml.org,2002:"
_STR, _INT, _FLOAT, _BOOL, _NULL = (_TAG + t for t in ("str", "int", "float", "bool", "null"))
_MAP, _SEQ = _TAG + "map", _TAG + "seq"


class _Unsupported(Exception):
    """Something only the round-trip loader handles (or reports) as the loader expects."""


def _libyaml() -> YAML | None:
    """ruamel.yaml's safe loader on libyaml's parser (``CParser``), when ruamel.yaml.clib is installed."""
    yaml = YAML(typ="safe", pure=False)
    return yaml if yaml.Parser.__name__ == "CParser" else None


_YAML = _libyaml()


def documents(text: str) -> list[Any] | None:
    """The documents of ``text`` as the round-trip loader builds them, or ``None`` (see above)."""
    if _YAML is None or text.startswith("%") or "\n%" in text:  # a directive (%YAML 1.1, %TAG)
        return None
    try:
        nodes = list(_YAML.compose_all(text))
        return [None if n is None else _tree(n, set()) for n in nodes]
    except (_Unsupported, YAMLError, ValueError, TypeError):
        return None


def _tree(node: Node, seen: set[int]) -> Any:
    if id(node) in seen or getattr(node, "anchor", None):
        raise _Unsupported  # an alias (or an anchor): the round-trip loader expands and checks them
    seen.add(id(node))
    if isinstance(node, ScalarNode):
        return _scalar(node)
    mark = node.start_mark
    if isinstance(node, MappingNode) and node.tag == _MAP:
        out = CommentedMap()
        out._yaml_set_line_col(mark.line, mark.column)
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode) or key_node.tag not in (_STR, _INT, _BOOL, _NULL):
                raise _Unsupported  # a complex key, a merge key (<<), ...
            key = _scalar(key_node)
            if key in out:
                raise _Unsupported  # the round-trip loader names the duplicate key
            out[key] = _tree(value_node, seen)
            k, v = key_node.start_mark, value_node.start_mark
            out._yaml_set_kv_line_col(key, [k.line, k.column, v.line, v.column])
        return out
    if isinstance(node, SequenceNode) and node.tag == _SEQ:
        seq = CommentedSeq()
        seq._yaml_set_line_col(mark.line, mark.column)
        for i, item in enumerate(node.value):
            seq.append(_tree(item, seen))
            seq._yaml_set_idx_line_col(i, [item.start_mark.line, item.start_mark.column])
        return seq
    raise _Unsupported  # a tagged collection (!!omap, !!set, a custom tag)


def _scalar(node: ScalarNode) -> Any:
    assert _YAML is not None
    tag, constructor = node.tag, _YAML.constructor
    if tag == _STR:
        return node.value
    if tag == _NULL:
        return None
    if tag == _BOOL:
        return constructor.construct_yaml_bool(node)
    if tag == _INT:
        return constructor.construct_yaml_int(node)
    if tag == _FLOAT:
        return constructor.construct_yaml_float(node)
    raise _Unsupported  # a timestamp, binary, a custom tag: the round-trip loader's types
