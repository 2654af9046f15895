"""Manifest schemas: validation rules and the committed JSON Schemas."""

from __future__ import annotations

import io
import json
from pathlib import Path

import jsonschema
import pytest
from pydantic import ValidationError
from ruamel.yaml import YAML

from reconciler.loader import load_manifests
from schemas import Application, Cluster, Model
from schemas.__main__ import DEFAULT_DIR
from schemas.kinds import json_schema_text, published, schema_filename


def model(**spec):
    base = {"inputType": "doubles", "source": {"python": {"function": "m.py:predict"}}}
    return {
        "apiVersion": "clipper.ai/v1",
        "kind": "Model",
        "metadata": {"name": "m"},
        "spec": {**base, **spec},
    }


@pytest.mark.parametrize("kind", published())
def test_committed_json_schemas_are_in_sync(kind):
    assert (DEFAULT_DIR / schema_filename(kind)).read_text() == json_schema_text(kind), "run: clipper schema"


EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "manifests"


def _validator():
    schema = json.loads((DEFAULT_DIR / "clipper.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def _raw_documents(path: Path) -> list:
    """The documents as an editor sees them: ``${...}`` not substituted."""
    return [d for d in YAML(typ="safe").load_all(path.read_text()) if d is not None]


EXAMPLE_FILES = sorted(EXAMPLES.rglob("*.yaml"))


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: str(p.relative_to(EXAMPLES)))
def test_examples_validate_against_the_published_schema_and_name_it(path):
    validator = _validator()
    docs = _raw_documents(path)
    assert docs
    for doc in docs:
        errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(doc)]
        assert errors == [], (path, doc.get("kind"), errors)
    first = path.read_text().splitlines()[0]
    target = first.removeprefix("# yaml-language-server: $schema=")
    assert target != first and (path.parent / target).resolve() == DEFAULT_DIR / "clipper.schema.json"


def test_examples_use_substitutions_in_typed_fields():
    """The examples do exercise the case: an integer field given as ``${VAR:-1337}``."""
    cluster = _raw_documents(EXAMPLES / "quickstart.yaml")[0]
    assert cluster["spec"]["queryPort"] == "${QUERY_PORT:-1337}"


def test_the_published_schema_dispatches_on_kind():
    validator = _validator()
    good_model = model(replicas="${REPLICAS:-2}")
    assert list(validator.iter_errors(good_model)) == []
    for bad in (
        model(replicas=-1),
        model(replicas="two"),
        model(replicas="$REPLICAS"),  # only ${...} is substituted
        {**model(), "kind": "Application"},  # a Model's spec under another kind
        {**model(), "kind": "Clutser"},
        {
            "apiVersion": "clipper.ai/v1",
            "kind": "Cluster",
            "metadata": {"name": "c"},
            "spec": {"queryPort": "abc"},
        },  # fmt: skip
    ):
        assert list(validator.iter_errors(bad)), bad
    cluster = {"apiVersion": "clipper.ai/v1", "kind": "Cluster", "metadata": {"name": "${NAME:-c}"},
               "spec": {"queryPort": "${Q:-1337}", "backend": "${BACKEND:-local}"}}  # fmt: skip
    assert list(validator.iter_errors(cluster)) == []
    # and what the editor accepts, the loader accepts once substituted
    text = "\n".join(
        [
            "apiVersion: clipper.ai/v1",
            "kind: Cluster",
            "metadata: {name: '${NAME:-c}'}",
            "spec: {queryPort: '${Q:-1337}', backend: '${BACKEND:-local}'}",
        ]
    )
    loaded = load_manifests(["-"], env={}, stdin=io.StringIO(text))
    assert loaded.cluster.obj.spec.query_port == 1337


@pytest.mark.parametrize(
    "alias,canonical", [("ints", "integers"), ("d", "doubles"), ("str", "strings"), ("byte", "bytes")]
)
def test_input_type_aliases_are_canonicalised(alias, canonical):
    assert Model.model_validate(model(inputType=alias)).spec.input_type == canonical


@pytest.mark.parametrize(
    "spec,fragment",
    [
        ({"replicas": -1}, "greater than or equal to 0"),
        ({"batchSize": 0}, "batchSize must be -1"),
        ({"inputType": "Doubles"}, "Input should be"),
        ({"version": "1.0"}, "String should match pattern"),
        ({"source": {}}, "exactly one of python, pyspark or image"),
        ({"source": {"image": "x", "python": {"function": "a.py:f"}}}, "exactly one"),
        ({"source": {"image": "x"}, "packages": ["numpy"]}, "packages and baseImage"),
        ({"source": {"python": {"function": "no-colon"}}}, "String should match pattern"),
        ({"replica": 1}, "Extra inputs are not permitted"),
    ],
)
def test_model_spec_rejects(spec, fragment):
    with pytest.raises(ValidationError, match=fragment):
        Model.model_validate(model(**spec))


def test_cluster_defaults_and_backend_settings():
    c = Cluster.model_validate({"apiVersion": "clipper.ai/v1", "kind": "Cluster", "metadata": {"name": "c"}})
    assert c.spec.backend == "local" and c.spec.query_port == 1337
    with pytest.raises(ValidationError, match="'docker' settings given but backend is 'local'"):
        Cluster.model_validate(
            {
                "apiVersion": "clipper.ai/v1",
                "kind": "Cluster",
                "metadata": {"name": "c"},
                "spec": {"docker": {}},
            }
        )


def test_application_defaults():
    a = Application.model_validate(
        {
            "apiVersion": "clipper.ai/v1",
            "kind": "Application",
            "metadata": {"name": "a"},
            "spec": {"inputType": "i"},
        }
    )
    assert (a.spec.input_type, a.spec.default_output, a.spec.model) == ("integers", "None", None)


def test_reserved_label_prefix():
    doc = model()
    doc["metadata"]["labels"] = {"clipper.ai/managed-by": "x"}
    with pytest.raises(ValidationError, match="reserved"):
        Model.model_validate(doc)
