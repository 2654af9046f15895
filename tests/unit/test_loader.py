"""Loading manifests: several documents, directories, stdin, ${VAR}, and located errors."""

from __future__ import annotations

import io
import textwrap

import pytest

from reconciler import yaml_fast
from reconciler.errors import ManifestErrors
from reconciler.loader import load_manifests

MODEL = """\
apiVersion: clipper.ai/v1
kind: Model
metadata:
  name: sum-model
spec:
  inputType: doubles
  replicas: {replicas}
  source:
    python:
      function: sum_model.py:predict
"""
APP = """\
apiVersion: clipper.ai/v1
kind: Application
metadata:
  name: hello
spec:
  inputType: {input_type}
  model: {model}
"""


@pytest.fixture(autouse=True, params=["libyaml", "round-trip"])
def parser(request, monkeypatch):
    """Every test twice: manifests composed by libyaml (reconciler/yaml_fast.py) and by the
    round-trip parser alone (no ruamel.yaml.clib): the same objects, the same located errors."""
    if request.param == "libyaml":
        assert yaml_fast._YAML is not None, "ruamel.yaml.clib (a dependency) is not installed"
    else:
        monkeypatch.setattr(yaml_fast, "_YAML", None)
    return request.param


@pytest.fixture
def tree(tmp_path):
    (tmp_path / "sum_model.py").write_text("def predict(xs):\n    return [str(sum(x)) for x in xs]\n")
    return tmp_path


def test_directory_recursive_with_several_documents(tree):
    sub = tree / "apps"
    sub.mkdir()
    (tree / "m.yaml").write_text(MODEL.format(replicas=2))
    (sub / "a.yml").write_text(APP.format(input_type="d", model="sum-model") + "---\n")
    s = load_manifests([str(tree)])
    assert list(s.models) == ["sum-model"] and list(s.apps) == ["hello"] and s.cluster is None
    assert s.models["sum-model"].obj.spec.replicas == 2


def test_stdin_and_env_substitution(tree, monkeypatch):
    text = MODEL.format(replicas="${N}").replace("sum_model.py", "${DIR}/sum_model.py")
    s = load_manifests(["-"], env={"N": "3", "DIR": str(tree)}, stdin=io.StringIO(text))
    assert s.models["sum-model"].obj.spec.replicas == 3


def test_default_for_unset_variable(tree):
    (tree / "m.yaml").write_text(MODEL.format(replicas="${N:-4}"))
    assert load_manifests([str(tree / "m.yaml")], env={}).models["sum-model"].obj.spec.replicas == 4


def test_all_errors_with_file_line_column_and_path(tree):
    bad = tree / "bad.yaml"
    bad.write_text(
        MODEL.format(replicas=-1)
        + "---\n"
        + APP.format(input_type="ints", model="sum-model")
        + "---\n"
        + APP.format(input_type="d", model="nope").replace("hello", "other")
        + "---\nkind: Widget\n---\n"
        + MODEL.format(replicas="${UNSET}").replace("sum-model", "m2")
        + "---\n"
        + APP.format(input_type="d", model="sum-model")
    )
    with pytest.raises(ManifestErrors) as info:
        load_manifests([str(bad)], env={})
    lines = str(info.value).splitlines()
    assert lines == [
        f"{bad}:7:3 Model/sum-model spec.replicas: Input should be greater than or equal to 0",
        f"{bad}:26:3 Application/other spec.model: linked model 'nope' is not defined in the manifests",
        f"{bad}:28:1 Widget unknown kind 'Widget' (expected one of Cluster, Model, Application)",
        f"{bad}:36:13 Model/m2 spec.replicas: environment variable UNSET is not set (use ${{UNSET:-default}} for a default)",
        f"{bad}:41:1 Application/hello duplicate Application/hello (first defined at {bad}:12)",
    ]


def test_input_type_mismatch_and_missing_file(tree):
    f = tree / "x.yaml"
    f.write_text(
        MODEL.format(replicas=1).replace("sum_model.py", "gone.py")
        + "---\n"
        + APP.format(input_type="ints", model="sum-model")
    )
    with pytest.raises(ManifestErrors) as info:
        load_manifests([str(f)])
    text = str(info.value)
    assert f"{f}:1:1 Model/sum-model spec.source.python.function: gone.py not found" in text
    assert (
        f"{f}:17:3 Application/hello spec.inputType: input type 'integers' does not match Model/sum-model ('doubles')"
        in text
    )


def test_yaml_syntax_error_is_located(tree):
    f = tree / "broken.yaml"
    f.write_text(textwrap.dedent("kind: Model\nmetadata: [unclosed\n"))
    with pytest.raises(ManifestErrors, match=r"broken.yaml:\d+:\d+ invalid YAML"):
        load_manifests([str(f)])


def test_missing_path(tmp_path):
    with pytest.raises(ManifestErrors, match="no such file or directory"):
        load_manifests([str(tmp_path / "nope.yaml")])


@pytest.mark.parametrize("example", ["quickstart.yaml", "docker", "kubernetes", "multi"])
def test_examples_load(example):
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "examples" / "manifests"
    s = load_manifests([str(root / example)], env={"REGISTRY": "registry.example.com"})
    assert s.cluster is not None and s.models and s.apps


def _laughs(levels: int = 9) -> str:
    """The classic "billion laughs": each level is nine aliases of the previous one (9**9 leaves)."""
    names = "abcdefghi"[:levels]
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, name in zip(names, names[1:], strict=False):
        lines.append(f"{name}: &{name} [{','.join([f'*{prev}'] * 9)}]")
    return "\n".join(lines) + "\n"


def test_alias_bomb_is_refused_fast_at_the_alias(tree):
    import time

    f = tree / "bomb.yaml"
    f.write_text(_laughs())
    assert len(f.read_bytes()) < 600
    started = time.monotonic()
    with pytest.raises(ManifestErrors) as info:
        load_manifests([str(f)])
    assert time.monotonic() - started < 0.5  # generous: the expansion would take minutes and GBs
    (problem,) = info.value.problems
    # the first alias of line 5 (level "e") pushes the expansion past the limit
    assert (problem.file, problem.line, problem.column) == (str(f), 5, 8)
    assert "aliases expand this document by more than 10000 nodes" in problem.message


def test_alias_bomb_on_stdin_through_the_cli(monkeypatch, capsys):
    from reconciler.cli import EXIT_ERROR, main

    monkeypatch.setattr("sys.stdin", io.StringIO(_laughs()))
    assert main(["--no-color", "diff", "-f", "-"]) == EXIT_ERROR
    assert "<stdin>:5:8 YAML aliases expand this document" in capsys.readouterr().err


def test_recursive_alias_is_refused(tree):
    f = tree / "loop.yaml"
    f.write_text("kind: Model\nspec: &s\n  x: [1, *s]\n")
    with pytest.raises(ManifestErrors, match=r"loop.yaml:3:10 recursive alias \*s"):
        load_manifests([str(f)])


def test_modest_anchors_and_merge_keys_still_load(tree):
    f = tree / "anchored.yaml"
    f.write_text(
        "apiVersion: clipper.ai/v1\nkind: Model\nmetadata:\n  name: m1\n"
        "  labels:\n    <<: &base {team: ml, tier: web}\n    owner: &who alice\n    reviewer: *who\n"
        "spec:\n  inputType: doubles\n  replicas: &n 2\n  source:\n    python:\n"
        "      function: sum_model.py:predict\n  batchSize: *n\n"
    )
    m = load_manifests([str(f)]).models["m1"].obj
    assert m.metadata.labels == {"team": "ml", "tier": "web", "owner": "alice", "reviewer": "alice"}
    assert m.spec.replicas == 2


@pytest.mark.parametrize(
    ("broken", "want"),
    [
        ("def predict(xs):\n    return [str(sum(x)) for x in xs\n", ":2:12 SyntaxError: "),
        ("def predict(xs):\nreturn xs\n", ":2:1 IndentationError: expected an indented block"),
        ("return 1\n", ":1:1 SyntaxError: 'return' outside function"),  # found by compile(), not parse
    ],
)
def test_model_code_that_does_not_compile_is_a_located_error(tree, monkeypatch, broken, want):
    """Checked without running anything: a module that would run code on import is never imported."""
    monkeypatch.chdir(tree)
    (tree / "sum_model.py").write_text(broken)
    (tree / "m.yaml").write_text(MODEL.format(replicas=1))
    with pytest.raises(ManifestErrors) as e:
        load_manifests([str(tree / "m.yaml")])
    [problem] = e.value.problems
    text = str(problem)
    assert text.startswith("sum_model.py" + want), text
    assert f"(the code of Model/sum-model spec.source.python.function at {tree / 'm.yaml'}:1)" in text


def test_local_modules_the_model_imports_are_compiled_too(tree, monkeypatch):
    monkeypatch.chdir(tree)
    (tree / "helpers").mkdir()
    (tree / "helpers" / "__init__.py").write_text("")
    (tree / "helpers" / "scale.py").write_text("import os\nraise SystemExit('ran at validation')\nx = (\n")
    (tree / "sum_model.py").write_text("from helpers.scale import x\n\ndef predict(xs):\n    return xs\n")
    (tree / "m.yaml").write_text(MODEL.format(replicas=1))
    with pytest.raises(ManifestErrors) as e:
        load_manifests([str(tree / "m.yaml")])
    assert [str(p).split(" (")[0] for p in e.value.problems] == [
        "helpers/scale.py:3:5 SyntaxError: '(' was never closed"
    ]


def test_a_stream_without_aliases_is_parsed_once(tree, monkeypatch):
    """The alias check's extra pass over the parse events runs only where an alias can be ("*")."""
    import reconciler.loader as loader

    checked: list[str] = []
    real = loader._alias_problem
    monkeypatch.setattr(loader, "_alias_problem", lambda yaml, text: checked.append(text) or real(yaml, text))
    (tree / "m.yaml").write_text(MODEL.format(replicas=2))
    plain = load_manifests([str(tree)])
    assert plain.models and checked == []
    f = tree / "anchored.yaml"
    f.write_text("apiVersion: clipper.ai/v1\nkind: Model\nmetadata: &m {name: m9}\nspec: {x: *m}\n")
    with pytest.raises(ManifestErrors):
        load_manifests([str(f)])
    assert len(checked) == 1 and "*m" in checked[0]


def test_flow_style_with_a_colon_in_a_plain_scalar_loads(tree):
    """libyaml refuses ``{function: sum_model.py:predict}``; the round-trip parser reads it."""
    (tree / "m.yaml").write_text(
        "apiVersion: clipper.ai/v1\nkind: Model\nmetadata: {name: flow}\n"
        "spec: {inputType: doubles, source: {python: {function: sum_model.py:predict}}}\n"
    )
    model = load_manifests([str(tree / "m.yaml")]).models["flow"]
    assert model.obj.spec.source.python.function == "sum_model.py:predict"
    assert (model.line, model.column) == (1, 1)
