"""Load manifests: files, directories and stdin (or in-memory documents: :func:`load_documents`)
-> validated objects with their locations.

Every problem in every document is collected (file:line:column, object, field path) and raised
together as :class:`ManifestErrors`; callers change nothing when loading fails.

YAML anchors and aliases are allowed, but the nodes aliases add when expanded are bounded
(:data:`MAX_ALIAS_NODES` per document), so a few hundred bytes of nested aliases (a "billion
laughs") are refused at the offending alias instead of expanding into gigabytes.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from pydantic import BaseModel, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError
from ruamel.yaml.events import (
    AliasEvent,
    CollectionEndEvent,
    CollectionStartEvent,
    DocumentStartEvent,
    ScalarEvent,
)

from reconciler import yaml_fast
from reconciler.backend_options import unsupported_fields
from reconciler.envsubst import UnsetVariable, substitute
from reconciler.errors import ManifestErrors, ManifestProblem
from reconciler.sources import compile_errors
from schemas import KINDS, Application, Cluster, Model

YAML_SUFFIXES = (".yaml", ".yml")
MAX_ALIAS_NODES = 10_000  # nodes that aliases may add to one document when expanded


@dataclass(frozen=True)
class Loaded:
    """One validated object and where it came from."""

    obj: Any  # Cluster | Model | Application
    file: str
    line: int
    column: int
    base_dir: Path  # relative paths in the object are resolved against this
    node: Any = field(default=None, repr=False, compare=False)  # the YAML tree, for positions

    @property
    def ref(self) -> str:
        return f"{self.obj.kind}/{self.obj.metadata.name}"


@dataclass
class ManifestSet:
    cluster: Loaded | None = None
    models: dict[str, Loaded] = field(default_factory=dict)
    apps: dict[str, Loaded] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)


def collect_files(paths: Iterable[str]) -> tuple[list[str | Path], list[ManifestProblem]]:
    """Expand ``-f`` arguments: files as given, directories recursively (*.yaml, *.yml), ``-`` stdin."""
    out: list[str | Path] = []
    problems = []
    for raw in paths:
        if raw == "-":
            out.append("-")
            continue
        p = Path(raw)
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.suffix in YAML_SUFFIXES and f.is_file())
            out.extend(found)
        elif p.is_file():
            out.append(p)
        else:
            problems.append(ManifestProblem(raw, 0, 0, "no such file or directory"))
    return out, problems


def _key_pos(node: CommentedMap, key: Any, value: bool) -> tuple[int, int]:
    """0-based position of ``key`` (or its value); a key merged in with ``<<:`` has no position of
    its own in this mapping: the mapping's is used."""
    if node.lc.data is None or key not in node.lc.data:
        return node.lc.line, node.lc.col
    pos: tuple[int, int] = node.lc.value(key) if value else node.lc.key(key)
    return pos


def _position(node: Any, loc: tuple[Any, ...], fallback: tuple[int, int]) -> tuple[int, int]:
    """0-based (line, col) of the deepest element of ``loc`` that exists in the YAML tree."""
    pos = fallback
    for part in loc:
        if isinstance(node, CommentedMap) and part in node:
            pos = _key_pos(node, part, value=False)
            node = node[part]
        elif isinstance(node, CommentedSeq) and isinstance(part, int) and 0 <= part < len(node):
            pos = node.lc.item(part)
            node = node[part]
        else:
            break
    return pos


def _plain(
    node: Any,
    env: Mapping[str, str] | None,
    unset: dict[tuple[Any, ...], tuple[int, int, str]],
    pos: tuple[int, int],
    path: tuple[Any, ...] = (),
) -> Any:
    """A plain dict/list copy of the YAML tree with ``${VAR}`` substituted in strings.

    Unset variables are recorded in ``unset`` (field path -> line, col, message). ``env`` None:
    strings are taken as they are.
    """
    if isinstance(node, CommentedMap):
        return {k: _plain(v, env, unset, _key_pos(node, k, value=True), (*path, k)) for k, v in node.items()}
    if isinstance(node, CommentedSeq):
        return [_plain(v, env, unset, node.lc.item(i), (*path, i)) for i, v in enumerate(node)]
    if isinstance(node, str) and env is not None:
        try:
            return substitute(node, env)
        except UnsetVariable as e:
            unset[path] = (pos[0] + 1, pos[1] + 1, str(e))
            return node
    return node


def _loc_text(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (("." if out else "") + str(part))
    return out


def _validate_document(
    doc: Any,
    file: str,
    base_dir: Path,
    env: Mapping[str, str] | None,
    problems: list[ManifestProblem],
    failed: set[tuple[str, str]],
) -> Loaded | None:
    if doc is None:  # empty document ("---" at the end of a file)
        return None
    start = (doc.lc.line, doc.lc.col) if hasattr(doc, "lc") else (0, 0)
    if not isinstance(doc, CommentedMap):
        problems.append(ManifestProblem(file, start[0] + 1, start[1] + 1, "a manifest must be a mapping"))
        return None
    unset: dict[tuple[Any, ...], tuple[int, int, str]] = {}
    data = _plain(doc, env, unset, start)
    kind = data.get("kind")
    if kind is not None and not isinstance(kind, str):
        kind = repr(kind)  # a list or mapping: reported below as an unknown kind, never hashed
    name = data.get("metadata", {}).get("name") if isinstance(data.get("metadata"), dict) else None
    ref = f"{kind}/{name}" if kind and name else str(kind or "")
    failed.add((str(kind), str(name)))  # removed again on success
    for path, (line, col, msg) in unset.items():
        problems.append(ManifestProblem(file, line, col, msg, ref, _loc_text(path)))
    if kind not in KINDS:
        line, col = _position(doc, ("kind",), start)
        msg = (
            "missing 'kind'"
            if kind is None
            else f"unknown kind {kind!r} (expected one of {', '.join(KINDS)})"
        )
        problems.append(ManifestProblem(file, line + 1, col + 1, msg, ref))
        return None
    model: type[BaseModel] = KINDS[kind]
    try:
        obj = model.model_validate(data)
    except ValidationError as e:
        for err in e.errors(include_url=False):
            loc = tuple(err["loc"])
            if loc in unset:
                continue  # already reported as an unset variable
            line, col = _position(doc, loc, start)
            problems.append(ManifestProblem(file, line + 1, col + 1, err["msg"], ref, _loc_text(loc)))
        return None
    if unset:
        return None
    failed.discard((str(kind), str(name)))
    return Loaded(obj, file, start[0] + 1, start[1] + 1, base_dir, doc)


def _alias_problem(yaml: YAML, text: str) -> tuple[int, int, str] | None:
    """1-based (line, col, message) of the first alias that makes its document too large, if any.

    One pass over the parse events: the expanded size of every anchored node is known when the
    node ends, so each alias adds that size without expanding anything. Syntax errors propagate
    (``MarkedYAMLError``); an undefined alias is left to the loader, which reports it.
    """
    sizes: dict[str, int] = {}  # anchor -> expanded node count of the node it names
    stack: list[list[Any]] = []  # open collections: [anchor, node count so far]
    added = 0
    for ev in yaml.parse(text):
        n = 0
        if isinstance(ev, DocumentStartEvent):
            sizes.clear()
            added = 0
        elif isinstance(ev, CollectionStartEvent):
            stack.append([ev.anchor, 1])
        elif isinstance(ev, CollectionEndEvent):
            anchor, n = stack.pop()
            if anchor:
                sizes[anchor] = n
        elif isinstance(ev, ScalarEvent):
            n = 1
            if ev.anchor:
                sizes[ev.anchor] = 1
        elif isinstance(ev, AliasEvent):
            mark = ev.start_mark
            if any(anchor == ev.anchor for anchor, _ in stack):
                return (
                    mark.line + 1,
                    mark.column + 1,
                    f"recursive alias *{ev.anchor} (refers to a node that contains it)",
                )
            n = sizes.get(ev.anchor, 1)
            added += n
            if added > MAX_ALIAS_NODES:
                return (
                    mark.line + 1,
                    mark.column + 1,
                    f"YAML aliases expand this document by more than {MAX_ALIAS_NODES} nodes "
                    f"(*{ev.anchor} alone adds {n}); refusing to expand it (an alias bomb?)",
                )
        if stack and n:
            stack[-1][1] += n
    return None


def _read_stream(
    text: str,
    file: str,
    base_dir: Path,
    env: Mapping[str, str] | None,
    problems: list[ManifestProblem],
    failed: set[tuple[str, str]],
) -> list[Loaded]:
    out: list[Loaded] = []
    try:
        # libyaml first (no aliases, so no alias bomb); the round-trip parser for whatever it leaves
        docs = yaml_fast.documents(text)
        if docs is None:
            yaml = YAML(typ="rt")
            # an alias is written "*name": a stream without "*" has none, and is parsed once, not twice
            bomb = _alias_problem(yaml, text) if "*" in text else None
            if bomb is not None:
                problems.append(ManifestProblem(file, *bomb))
                return out
            docs = list(yaml.load_all(text))
    except MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        problems.append(ManifestProblem(file, line, col, f"invalid YAML: {e.problem or e.context}"))
        return out
    except Exception as e:  # ruamel raises a few unmarked errors (duplicate keys, ...)
        problems.append(ManifestProblem(file, 0, 0, f"invalid YAML: {e}"))
        return out
    for doc in docs:
        loaded = _validate_document(doc, file, base_dir, env, problems, failed)
        if loaded is not None:
            out.append(loaded)
    return out


def _check_references(loaded: Loaded, problems: list[ManifestProblem]) -> None:
    """Files a model points to must exist (checked now so that nothing half-applies)."""
    obj = loaded.obj
    if not isinstance(obj, Model):
        return
    src = obj.spec.source
    refs = []
    if src.python is not None:
        refs.append(("spec.source.python.function", src.python.function.rsplit(":", 1)[0], True))
    if src.pyspark is not None:
        refs.append(("spec.source.pyspark.function", src.pyspark.function.rsplit(":", 1)[0], True))
        refs.append(("spec.source.pyspark.modelPath", src.pyspark.model_path, False))
    for path_text, target, is_function in refs:
        if is_function and not target.endswith(".py"):
            continue  # an importable module name, resolved at deploy time
        if not (loaded.base_dir / target).exists():
            problems.append(
                ManifestProblem(
                    loaded.file,
                    loaded.line,
                    loaded.column,
                    f"{target} not found (relative to {loaded.base_dir})",
                    loaded.ref,
                    path_text,
                )
            )
        elif is_function:
            _check_compiles(loaded, loaded.base_dir / target, path_text, problems)


def _check_compiles(loaded: Loaded, source: Path, path_text: str, problems: list[ManifestProblem]) -> None:
    """The model file and its local modules must compile (``compile()`` only: nothing runs), so
    that broken code is refused before anything changes instead of failing in every replica."""
    for e in compile_errors(source):
        where = f"{loaded.ref} {path_text} at {loaded.file}:{loaded.line}"
        problems.append(
            ManifestProblem(e.display_file(), e.line, e.column, f"{e.message} (the code of {where})")
        )


def _cross_check(
    items: list[Loaded], problems: list[ManifestProblem], failed: set[tuple[str, str]]
) -> ManifestSet:
    result = ManifestSet()
    seen: dict[tuple[str, str], Loaded] = {}
    for it in items:
        key = (it.obj.kind, it.obj.metadata.name)
        if key in seen:
            first = seen[key]
            problems.append(
                ManifestProblem(
                    it.file,
                    it.line,
                    it.column,
                    f"duplicate {it.ref} (first defined at {first.file}:{first.line})",
                    it.ref,
                )
            )
            continue
        seen[key] = it
        _check_references(it, problems)
        if isinstance(it.obj, Cluster):
            if result.cluster is not None:
                problems.append(
                    ManifestProblem(
                        it.file,
                        it.line,
                        it.column,
                        f"only one Cluster per manifest set ({result.cluster.ref} is at "
                        f"{result.cluster.file}:{result.cluster.line})",
                        it.ref,
                    )
                )
            else:
                result.cluster = it
            for loc, msg in unsupported_fields(it.obj.spec):
                line, col = _position(it.node, ("spec", *loc), (it.line - 1, it.column - 1))
                problems.append(
                    ManifestProblem(it.file, line + 1, col + 1, msg, it.ref, _loc_text(("spec", *loc)))
                )
        elif isinstance(it.obj, Model):
            result.models[it.obj.metadata.name] = it
        elif isinstance(it.obj, Application):
            result.apps[it.obj.metadata.name] = it
    for app in result.apps.values():
        spec = app.obj.spec
        doc = app.node
        refs: list[tuple[tuple[str | int, ...], str]] = []
        if spec.model is not None:
            refs.append((("spec", "model"), spec.model))
        refs += [(("spec", "models", i, "name"), m.name) for i, m in enumerate(spec.models or ())]
        if spec.shadow is not None:
            refs.append((("spec", "shadow", "model"), spec.shadow.model))
        for path, name in refs:
            where = _loc_text(path)
            if name not in result.models:
                if ("Model", name) in failed:
                    continue  # the model itself is invalid and already reported
                line, col = _position(doc, path, (app.line - 1, app.column - 1))
                problems.append(
                    ManifestProblem(
                        app.file,
                        line + 1,
                        col + 1,
                        f"{'linked' if path == ('spec', 'model') else 'referenced'} model {name!r} is not "
                        "defined in the manifests",
                        app.ref,
                        where,
                    )
                )
                continue
            model = result.models[name].obj
            if model.spec.input_type != spec.input_type:
                line, col = _position(doc, ("spec", "inputType"), (app.line - 1, app.column - 1))
                problems.append(
                    ManifestProblem(
                        app.file,
                        line + 1,
                        col + 1,
                        f"input type {spec.input_type!r} does not match Model/{name} ({model.spec.input_type!r})",
                        app.ref,
                        "spec.inputType",
                    )
                )
    return result


def load_manifests(
    paths: Iterable[str], env: Mapping[str, str] | None = None, stdin: TextIO | None = None
) -> ManifestSet:
    """Load and validate every manifest under ``paths``; raise :class:`ManifestErrors` on any problem."""
    env = os.environ if env is None else env
    files, problems = collect_files(paths)
    items: list[Loaded] = []
    failed: set[tuple[str, str]] = set()
    for f in files:
        if f == "-":
            text, name, base = (stdin or sys.stdin).read(), "<stdin>", Path.cwd()
        else:
            assert isinstance(f, Path)
            try:
                text = f.read_text()
            except (OSError, UnicodeDecodeError) as e:
                problems.append(ManifestProblem(str(f), 0, 0, f"cannot read: {e}"))
                continue
            name, base = str(f), f.resolve().parent
        items.extend(_read_stream(text, name, base, env, problems, failed))
    if not files and not problems:
        problems.append(ManifestProblem("-f", 0, 0, "no manifest files found"))
    return _checked(items, problems, failed, [f for f in files if isinstance(f, Path)])


def _checked(
    items: list[Loaded], problems: list[ManifestProblem], failed: set[tuple[str, str]], files: list[Path]
) -> ManifestSet:
    result = _cross_check(items, problems, failed)
    result.files = files
    if problems:
        raise ManifestErrors(problems)
    return result


def load_documents(
    docs: Iterable[tuple[str, str | Mapping[str, Any]]],
    base_dir: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> ManifestSet:
    """Load and validate in-memory documents exactly as :func:`load_manifests` loads files (the same
    validation and cross-checks); raise :class:`ManifestErrors` on any problem.

    Each document is ``(name, YAML text or a mapping)``; the name stands where a file name would in
    :attr:`Loaded.file` and in the problems (the controller uses ``Model/<namespace>/<name>``).
    ``env`` None: no ``${VAR}`` substitution (a custom resource's strings are taken as they are: the
    controller's environment is not its author's). Relative paths resolve against ``base_dir``
    (default: the working directory)."""
    base = base_dir or Path.cwd()
    items: list[Loaded] = []
    problems: list[ManifestProblem] = []
    failed: set[tuple[str, str]] = set()
    for name, doc in docs:
        text = doc if isinstance(doc, str) else json.dumps(doc, indent=1)  # JSON is YAML; one key a line
        items.extend(_read_stream(text, name, base, env, problems, failed))
    return _checked(items, problems, failed, [])
