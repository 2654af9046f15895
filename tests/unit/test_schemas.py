"""Manifest schemas: validation rules and the committed JSON Schemas."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from schemas import KINDS, Application, Cluster, Model
from schemas.__main__ import DEFAULT_DIR
from schemas.kinds import json_schema_text, schema_filename


def model(**spec):
    base = {"inputType": "doubles", "source": {"python": {"function": "m.py:predict"}}}
    return {
        "apiVersion": "clipper.ai/v1",
        "kind": "Model",
        "metadata": {"name": "m"},
        "spec": {**base, **spec},
    }


@pytest.mark.parametrize("kind", list(KINDS))
def test_committed_json_schemas_are_in_sync(kind):
    assert (DEFAULT_DIR / schema_filename(kind)).read_text() == json_schema_text(kind), (
        "run: python -m schemas"
    )


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
