"""The Kubernetes CRDs: generated from the manifest models, committed, structural, and accepting the
same YAML ``clipper apply`` reads (without ``${VAR}`` substitution)."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
from pydantic import BaseModel, Field
from ruamel.yaml import YAML

import clipper
from reconciler.envsubst import substitute
from reconciler.loader import load_manifests
from reconciler.status import Health, Sync
from schemas import crd as crd_mod
from schemas.__main__ import default_crd_dir, main
from schemas.crd import (
    HEALTH_VALUES,
    NOT_DEFAULTED,
    SYNC_VALUES,
    UnsupportedSchema,
    crd,
    crd_filename,
    crd_text,
    openapi_schema,
    structural,
)
from schemas.kinds import KINDS

ROOT = Path(__file__).resolve().parents[2]
CRD_DIR = ROOT / "deploy" / "crds"
KUBERNETES = "1.34"  # the version of tests/kubernetes/cluster


# --- the structural rules an API server applies (apiextensions-apiserver pkg/apiserver/schema) ------

STRUCTURE = {"type", "description", "default", "nullable", "properties", "items", "additionalProperties"}
VALUE_VALIDATION = {
    "enum", "pattern", "format", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
    "minLength", "maxLength", "minItems", "maxItems", "minProperties", "maxProperties", "multipleOf",
    "required", "anyOf", "allOf", "oneOf", "not",
}  # fmt: skip
EXTENSIONS = {
    "x-kubernetes-preserve-unknown-fields", "x-kubernetes-int-or-string", "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys", "x-kubernetes-map-type", "x-kubernetes-embedded-resource",
}  # fmt: skip
JUNCTORS = ("anyOf", "allOf", "oneOf", "not")
# the two spellings of int-or-string a junctor may carry a type in
INT_OR_STRING_ANY_OF = [{"type": "integer"}, {"type": "string"}]
RE2_UNSUPPORTED = re.compile(r"\(\?[=!<]|\\[1-9]")  # lookaround, backreferences
TYPES = {
    "object": dict,
    "array": list,
    "string": str,
    "boolean": bool,
    "integer": int,
    "number": (int, float),
}


def structural_problems(schema: dict[str, Any], path: str = "", level: str = "root") -> list[str]:
    """What an API server would reject in ``schema`` (a CRD version's openAPIV3Schema)."""
    problems: list[str] = []
    where = path or "<root>"
    unknown = set(schema) - STRUCTURE - VALUE_VALIDATION - EXTENSIONS
    if unknown:
        problems.append(f"{where}: keywords a CRD does not allow: {sorted(unknown)}")
    typ = schema.get("type")
    lenient = schema.get("x-kubernetes-int-or-string") or schema.get("x-kubernetes-preserve-unknown-fields")
    if not typ and not lenient:
        problems.append(f"{where}: no type")
    if typ == "array" and "items" not in schema:
        problems.append(f"{where}: an array without items")
    if "properties" in schema and "additionalProperties" in schema:
        problems.append(f"{where}: properties and additionalProperties together")
    if level == "root":
        if typ != "object" or "additionalProperties" in schema or schema.get("nullable"):
            problems.append(f"{where}: the root must be a plain object")
        props = schema.get("properties", {})
        if set(props) - {"apiVersion", "kind", "metadata", "spec", "status"}:
            problems.append(f"{where}: with a status subresource only apiVersion/kind/metadata/spec/status")
        for key in ("apiVersion", "kind"):
            if key in props and props[key].get("type") != "string":
                problems.append(f"{where}.{key}: must be a string")
        if "metadata" in props:
            meta = props["metadata"]
            if set(meta) - {"type", "properties"} or meta.get("type") != "object":
                problems.append(f"{where}.metadata: only type object and name/generateName restrictions")
            if set(meta.get("properties", {})) - {"name", "generateName"}:
                problems.append(f"{where}.metadata: only name and generateName may be restricted")
    for key in ("exclusiveMinimum", "exclusiveMaximum"):
        if key in schema and not isinstance(schema[key], bool):
            problems.append(f"{where}: {key} must be a boolean (OpenAPI v3.0), not {schema[key]!r}")
        if schema.get(key) and key.replace("exclusiveM", "m") not in schema:
            problems.append(f"{where}: {key} without {key.replace('exclusiveM', 'm')}")
    if "pattern" in schema:
        re.compile(schema["pattern"])
        if RE2_UNSUPPORTED.search(schema["pattern"]):
            problems.append(f"{where}: pattern {schema['pattern']!r} is not RE2 (Go regexp)")
    if "enum" in schema and typ in TYPES:
        bad = [v for v in schema["enum"] if not isinstance(v, TYPES[typ])]
        if bad:
            problems.append(f"{where}: enum values {bad} are not {typ}")
    if "default" in schema:
        default = schema["default"]
        if default is None and not schema.get("nullable"):
            problems.append(f"{where}: a null default on a field that is not nullable")
        elif default is not None:
            problems += [f"{where}: default: {e.message}" for e in _validator(schema).iter_errors(default)]
    if schema.get("x-kubernetes-list-type") == "map":
        item = schema.get("items", {})
        for key in schema.get("x-kubernetes-list-map-keys", []):
            prop = item.get("properties", {}).get(key, {})
            if prop.get("type") not in ("string", "integer", "boolean", "number"):
                problems.append(f"{where}: list map key {key} is not a scalar property")
            if key not in item.get("required", []) and "default" not in prop:
                problems.append(f"{where}: list map key {key} is neither required nor defaulted")
    for junctor in JUNCTORS:
        nested = schema.get(junctor)
        if nested is None or (junctor == "anyOf" and nested == INT_OR_STRING_ANY_OF):
            continue
        for i, sub in enumerate(nested if isinstance(nested, list) else [nested]):
            problems += _value_validation_problems(sub, f"{where}.{junctor}[{i}]")
    for name, sub in schema.get("properties", {}).items():
        if level == "root" and name == "metadata":
            continue
        problems += structural_problems(sub, f"{path}.{name}", "field")
    if isinstance(schema.get("items"), dict):
        problems += structural_problems(schema["items"], f"{path}[]", "item")
    if isinstance(schema.get("additionalProperties"), dict):
        problems += structural_problems(schema["additionalProperties"], f"{path}.*", "field")
    return problems


def _value_validation_problems(schema: dict[str, Any], where: str) -> list[str]:
    """Inside anyOf/allOf/oneOf/not only value validation: no types, descriptions, defaults, ..."""
    problems = [
        f"{where}: {key} inside a junctor"
        for key in sorted(set(schema) & (STRUCTURE - {"properties", "items"} | EXTENSIONS | {"title"}))
    ]
    if "metadata" in schema.get("properties", {}):
        problems.append(f"{where}: metadata in a nested context")
    for sub in schema.get("properties", {}).values():
        problems += _value_validation_problems(sub, where)
    if isinstance(schema.get("items"), dict):
        problems += _value_validation_problems(schema["items"], where)
    return problems


def as_json_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """An openAPIV3Schema as the draft 4 JSON Schema a server validates with (``nullable`` -> null
    allowed), strict about unknown fields the way ``kubectl apply`` (``--validate=strict``) is."""
    out = copy.deepcopy(schema)
    if out.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    if "properties" in out and not out.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    for key in ("properties",):
        if key in out:
            out[key] = {k: as_json_schema(v) for k, v in out[key].items()}
    if isinstance(out.get("items"), dict):
        out["items"] = as_json_schema(out["items"])
    if isinstance(out.get("additionalProperties"), dict):
        out["additionalProperties"] = as_json_schema(out["additionalProperties"])
    return out


def _validator(schema: dict[str, Any]) -> jsonschema.Draft4Validator:
    return jsonschema.Draft4Validator(as_json_schema(schema))


def cr_errors(doc: dict[str, Any]) -> list[str]:
    """What the API server (kubectl apply, strict field validation) finds wrong with a custom resource."""
    meta = {"metadata": {"namespace": "ns", **doc.get("metadata", {})}}  # kubectl adds the namespace
    schema = openapi_schema(doc["kind"])
    schema["properties"]["metadata"].pop("properties")  # ObjectMeta: Kubernetes' own fields
    errors = _validator(schema).iter_errors({**doc, **meta})
    name = doc.get("metadata", {}).get("name", "")
    name_errors = _validator(openapi_schema(doc["kind"])["properties"]["metadata"]["properties"]["name"])
    return [f"{list(e.absolute_path)}: {e.message}" for e in errors] + [
        f"metadata.name: {e.message}" for e in name_errors.iter_errors(name)
    ]


# --- the committed files ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(KINDS))
def test_committed_crds_are_current(kind):
    path = CRD_DIR / crd_filename(kind)
    assert path.exists() and path.read_text() == crd_text(kind), (
        f"{path.relative_to(ROOT)} is not what the models generate: run python -m schemas crd deploy/crds"
    )


def test_deploy_crds_holds_exactly_the_generated_files():
    assert sorted(p.name for p in CRD_DIR.iterdir()) == sorted(crd_filename(k) for k in KINDS)
    assert default_crd_dir() == CRD_DIR


def test_python_m_schemas_crd_writes_them(tmp_path, capsys):
    assert main(["crd", str(tmp_path)]) == 0
    for kind in KINDS:
        assert (tmp_path / crd_filename(kind)).read_text() == crd_text(kind)
    assert capsys.readouterr().out.count(str(tmp_path)) == len(KINDS)
    assert main(["crd", "a", "b"]) == 2  # one directory at most
    assert "python -m schemas crd" in capsys.readouterr().err


def test_an_installed_package_needs_a_directory(monkeypatch, capsys):
    import schemas.__main__ as schemas_main

    monkeypatch.setattr(schemas_main, "source_checkout", lambda: None)
    assert main(["crd"]) == 2
    assert "python -m schemas crd DIR" in capsys.readouterr().err


@pytest.mark.parametrize("kind", list(KINDS))
def test_committed_crd_is_the_yaml_of_crd(kind):
    assert YAML(typ="safe").load((CRD_DIR / crd_filename(kind)).read_text()) == crd(kind)


# --- what an API server checks ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(KINDS))
def test_crds_are_structural(kind):
    assert structural_problems(openapi_schema(kind)) == []


@pytest.mark.parametrize("kind", list(KINDS))
def test_crds_validate_against_the_kubernetes_api(kind):
    assert kubernetes_validate.validate(crd(kind), KUBERNETES, strict=True) == KUBERNETES


@pytest.mark.parametrize(
    "schema, problem",
    [
        ({"type": "object", "properties": {"a": {"description": "x"}}}, ".a: no type"),
        ({"type": "object", "properties": {"a": {"type": "array"}}}, "array without items"),
        (
            {
                "type": "object",
                "properties": {
                    "a": {"type": "object", "properties": {}, "additionalProperties": {"type": "string"}}
                },
            },
            "properties and additionalProperties together",
        ),
        ({"type": "object", "properties": {"a": {"$ref": "#/$defs/A"}}}, "keywords a CRD does not allow"),
        (
            {"type": "object", "properties": {"a": {"type": "string", "const": "x"}}},
            "keywords a CRD does not allow",
        ),
        (
            {"type": "object", "properties": {"a": {"type": "number", "exclusiveMinimum": 0}}},
            "must be a boolean",
        ),
        (
            {"type": "object", "properties": {"a": {"anyOf": [{"type": "string"}, {"type": "array"}]}}},
            "type inside a junctor",
        ),
        (
            {"type": "object", "properties": {"a": {"type": "string", "anyOf": [{"description": "d"}]}}},
            "description inside a junctor",
        ),
        (
            {
                "type": "object",
                "properties": {"metadata": {"type": "object", "properties": {"labels": {"type": "object"}}}},
            },
            "only name and generateName",
        ),
        (
            {"type": "object", "properties": {"metadata": {"type": "object", "description": "d"}}},
            "only type object",
        ),
        (
            {"type": "object", "properties": {"extra": {"type": "string"}}},
            "only apiVersion/kind/metadata/spec/status",
        ),
        ({"type": "object", "properties": {"kind": {"type": "integer"}}}, ".kind: must be a string"),
        ({"type": "object", "additionalProperties": {"type": "string"}}, "root must be a plain object"),
        ({"type": "object", "properties": {"a": {"type": "string", "default": None}}}, "null default"),
        (
            {"type": "object", "properties": {"a": {"type": "integer", "minimum": 1, "default": 0}}},
            "default: 0 is less",
        ),
        ({"type": "object", "properties": {"a": {"type": "string", "pattern": "(?!x)"}}}, "not RE2"),
        (
            {
                "type": "object",
                "properties": {
                    "a": {
                        "type": "array",
                        "x-kubernetes-list-type": "map",
                        "x-kubernetes-list-map-keys": ["t"],
                        "items": {"type": "object", "properties": {"t": {"type": "string"}}},
                    }
                },
            },
            "neither required nor defaulted",
        ),
    ],
)
def test_the_structural_checker_finds(schema, problem):
    problems = structural_problems(schema)
    assert any(problem in p for p in problems), problems


def test_int_or_string_is_structural():
    port = {"x-kubernetes-int-or-string": True, "anyOf": INT_OR_STRING_ANY_OF}
    schema = {"type": "object", "properties": {"spec": {"type": "object", "properties": {"port": port}}}}
    assert structural_problems(schema) == []


# --- the conversion ---------------------------------------------------------------------------------


class Inner(BaseModel):
    n: int = Field(default=1, ge=1, description="n")


class Sample(BaseModel):
    port: int | str = Field(description="int or string")
    ratio: int | float = 1
    sample: list[float] | str = Field(description="a list or a string")
    inner: Inner | None = Field(default=None, description="optional")
    name: str | None = Field(default=None, pattern=r"^a")
    fraction: float = Field(gt=0, lt=1)
    tags: dict[str, str] = Field(default_factory=dict)


def test_structural_conversion_of_each_construct():
    js = Sample.model_json_schema()
    out = structural(js, js.get("$defs", {}))
    props = out["properties"]
    assert props["port"] == {"description": "int or string", "x-kubernetes-int-or-string": True}
    assert props["ratio"] == {"type": "number", "default": 1}
    assert props["sample"] == {
        "description": "a list or a string",
        "x-kubernetes-preserve-unknown-fields": True,
    }
    assert props["inner"] == {
        "type": "object",
        "description": "optional",
        "nullable": True,
        "properties": {"n": {"type": "integer", "default": 1, "minimum": 1, "description": "n"}},
    }
    assert props["name"] == {"type": "string", "pattern": "^a", "nullable": True}  # no null default
    assert props["fraction"] == {
        "type": "number", "minimum": 0, "exclusiveMinimum": True, "maximum": 1, "exclusiveMaximum": True,
    }  # fmt: skip
    assert props["tags"] == {"type": "object", "additionalProperties": {"type": "string"}}
    assert "additionalProperties" not in out and "title" not in out
    assert structural_problems({"type": "object", "properties": {"spec": out}}) == []


def test_a_construct_without_structural_form_is_an_error():
    with pytest.raises(UnsupportedSchema, match="prefixItems"):
        structural({"type": "array", "prefixItems": [{"type": "string"}]}, {})
    with pytest.raises(UnsupportedSchema, match="cannot resolve"):
        structural({"$ref": "#/$defs/Nowhere"}, {})


def test_crd_values_are_not_substituted():
    """The editors' schemas accept ``${VAR}`` in typed fields; a custom resource is applied as it is."""
    doc = {"apiVersion": "clipper.ai/v1", "kind": "Cluster", "metadata": {"name": "c"},
           "spec": {"queryPort": "${QUERY_PORT:-1337}"}}  # fmt: skip
    assert any("queryPort" in e and "integer" in e for e in cr_errors(doc))
    assert "anyOf" not in str(openapi_schema("Cluster"))


def test_the_controller_tells_a_given_namespace_from_an_absent_one():
    """The API server fills in defaults; not kubernetes.namespace, which must be the CR's own when given."""
    assert ".spec.kubernetes.namespace" in NOT_DEFAULTED
    k8s = openapi_schema("Cluster")["properties"]["spec"]["properties"]["kubernetes"]
    assert "default" not in k8s["properties"]["namespace"]
    assert k8s["properties"]["createNamespace"]["default"] is False


def _defaulted(obj: Any, schema: dict[str, Any]) -> Any:
    """``obj`` with the schema's defaults filled in where absent, as the API server stores it."""
    if not isinstance(obj, dict):
        return obj
    out = dict(obj)
    for key, sub in schema.get("properties", {}).items():
        if key not in out and "default" in sub:
            out[key] = copy.deepcopy(sub["default"])
        if key in out:
            out[key] = _defaulted(out[key], sub)
    return out


def test_a_kubernetes_cluster_stored_with_the_crds_defaults_is_not_refused():
    """The ports are refused on the kubernetes backend when given: the API server must not give them."""
    from reconciler.backend_options import unsupported_fields
    from schemas.cluster import Cluster

    doc = {"apiVersion": "clipper.ai/v1", "kind": "Cluster", "metadata": {"name": "c"},
           "spec": {"backend": "kubernetes", "kubernetes": {"serviceTypes": {"query": "NodePort"}}}}  # fmt: skip
    stored = _defaulted(doc, openapi_schema("Cluster"))
    assert stored["spec"]["cacheSizeBytes"] == 33554432  # defaults are filled in...
    assert list(unsupported_fields(Cluster.model_validate(stored).spec)) == []  # ...none refused


def test_metadata_name_follows_the_models_naming_rule():
    doc = {"apiVersion": "clipper.ai/v1", "kind": "Application", "metadata": {"name": "a.b"},
           "spec": {"inputType": "doubles"}}  # fmt: skip
    assert any(e.startswith("metadata.name") for e in cr_errors(doc))


def test_defaults_are_the_models():
    spec = openapi_schema("Model")["properties"]["spec"]["properties"]
    assert spec["replicas"]["default"] == 1 and spec["batchSize"]["default"] == -1
    assert spec["rollout"]["properties"]["strategy"]["default"] == "immediate"


# --- status and columns -----------------------------------------------------------------------------


def test_status_values_are_the_reconcilers():
    assert set(SYNC_VALUES) == {s.value for s in Sync}
    assert set(HEALTH_VALUES) == {h.value for h in Health} | {"Unknown"}  # Unknown: not observed yet


@pytest.mark.parametrize("kind", list(KINDS))
def test_printer_columns_name_fields_of_the_schema(kind):
    (version,) = crd(kind)["spec"]["versions"]
    schema = version["schema"]["openAPIV3Schema"]
    names = [c["name"] for c in version["additionalPrinterColumns"]]
    assert names[-3:] == ["Health", "Sync", "Age"]
    for column in version["additionalPrinterColumns"]:
        node = schema
        *parents, leaf = column["jsonPath"].lstrip(".").split(".")
        for part in parents:
            node = node["properties"][part]
        if parents != ["metadata"]:
            assert node["properties"][leaf]["type"] == column["type"], column


def test_model_columns_are_version_ready_desired():
    (version,) = crd("Model")["spec"]["versions"]
    cols = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    assert cols == {
        "Version": ".status.currentVersion", "Ready": ".status.readyReplicas", "Desired": ".spec.replicas",
        "Health": ".status.health", "Sync": ".status.sync", "Age": ".metadata.creationTimestamp",
    }  # fmt: skip


def test_crd_names_and_scope():
    for kind in KINDS:
        spec = crd(kind)["spec"]
        assert spec["scope"] == "Namespaced" and spec["group"] == "clipper.ai"
        assert spec["names"]["plural"] == crd_mod.plural(kind) == kind.lower() + "s"
        assert spec["names"]["categories"] == ["clipper"]
        (version,) = spec["versions"]
        assert (version["name"], version["served"], version["storage"]) == ("v1", True, True)
        assert version["subresources"] == {"status": {}}


# --- the examples: the same YAML is a custom resource -----------------------------------------------

EXAMPLE_FILES = sorted((ROOT / "examples" / "manifests").rglob("*.yaml")) + sorted(
    (ROOT / "examples" / "controller").glob("*.yaml")
)


def _documents(path: Path) -> list[dict[str, Any]]:
    """The documents of ``path`` with its ``${VAR}`` substituted as clipper apply does (the values a user
    writes into a custom resource): defaults of ``${VAR:-default}``, a placeholder for the others."""
    text = path.read_text()
    env = {m.group(1): "example" for m in re.finditer(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", text)}
    return [d for d in YAML(typ="safe").load_all(substitute(text, env)) if d is not None]


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: str(p.relative_to(ROOT / "examples")))
def test_example_manifests_are_valid_custom_resources(path):
    docs = [d for d in _documents(path) if d.get("kind") in KINDS]
    assert docs
    for doc in docs:
        assert cr_errors(doc) == [], (path, doc["metadata"]["name"])


def test_the_controller_examples_are_applied_as_they_are():
    """examples/controller/ has no ${VAR}: kubectl apply -k / Flux apply it unchanged."""
    for path in (ROOT / "examples" / "controller").glob("*.yaml"):
        assert "${" not in path.read_text(), path
    loaded = load_manifests([str(ROOT / "examples" / "controller")])
    assert loaded.cluster is not None and loaded.cluster.obj.spec.backend == "kubernetes"
    assert [m.obj.spec.source.image for m in loaded.models.values()] == [
        f"clipper/noop-container:{clipper.__version__}"
    ]
    assert [a.obj.spec.model for a in loaded.apps.values()] == ["noop"]


def test_an_unknown_field_is_an_error_of_kubectl_apply():
    doc = {"apiVersion": "clipper.ai/v1", "kind": "Model", "metadata": {"name": "m"},
           "spec": {"inputType": "doubles", "source": {"image": "i"}, "replicaz": 2}}  # fmt: skip
    assert any("replicaz" in e for e in cr_errors(doc))
