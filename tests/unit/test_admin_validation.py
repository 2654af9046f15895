"""Name/version validation, input types and the connection guard of ClipperConnection."""

from __future__ import annotations

import pytest

from clipper_admin import ClipperConnection, ClipperException, UnconnectedException
from clipper_admin.container_manager import create_model_container_label, parse_model_container_label
from clipper_admin.local import LocalContainerManager
from clipper_admin.validation import validate_input_type, validate_versioned_model_name


@pytest.mark.parametrize("name", ["m", "my-model", "a1", "1"])
def test_valid_names(name):
    validate_versioned_model_name(name, "1")


@pytest.mark.parametrize("name", ["My", "a.b", "a_b", "-a", "a-", "", "a b"])
def test_invalid_model_name_message(name):
    with pytest.raises(ClipperException) as e:
        validate_versioned_model_name(name, "1")
    assert str(e.value).startswith(
        f"Invalid value: {name}: a model name must be a valid DNS-1123  subdomain."
    )
    assert r"[a-z0-9]([-a-z0-9]*[a-z0-9])?\Z" in str(e.value)


@pytest.mark.parametrize("version", ["1.0", "v1_2", "V1"])
def test_invalid_version_message(version):
    with pytest.raises(ClipperException, match=f"Invalid value: {version}: a model version must be"):
        validate_versioned_model_name("m", version)


def test_input_types():
    assert validate_input_type("ints") == "integers"
    assert validate_input_type("s") == "strings"
    with pytest.raises(ClipperException, match="^Doubles is not a valid input string$"):
        validate_input_type("Doubles")
    with pytest.raises(ClipperException, match="is not a valid input string"):
        validate_input_type(3)


def test_labels():
    assert create_model_container_label("m", "1") == "m_1"
    assert parse_model_container_label("m_1") == ["m", "1"]
    with pytest.raises(ClipperException, match="^Unable to parse model container label a_b_c$"):
        parse_model_container_label("a_b_c")


GUARDED = {
    "register_application": ("a", "doubles", "x", 100),
    "unregister_application": ("a",),
    "delete_application": ("a",),
    "link_model_to_app": ("a", "m"),
    "unlink_model_from_app": ("a", "m"),
    "build_and_deploy_model": ("m", 1, "doubles", "/nonexistent", "img"),
    "deploy_model": ("m", 1, "doubles", "img"),
    "register_model": ("m", 1, "doubles"),
    "get_current_model_version": ("m",),
    "get_num_replicas": ("m",),
    "set_num_replicas": ("m", 2),
    "get_all_apps": (),
    "get_app_info": ("a",),
    "get_linked_models": ("a",),
    "get_all_models": (),
    "get_model_info": ("m", 1),
    "get_all_model_replicas": (),
    "get_model_replica_info": ("m", 1, 0),
    "get_clipper_logs": (),
    "inspect_instance": (),
    "set_model_version": ("m", 1),
    "get_query_addr": (),
    "get_metric_addr": (),
    "stop_models": (["m"],),
    "stop_versioned_models": ({"m": ["1"]},),
    "stop_inactive_model_versions": (["m"],),
    "stop_all_model_containers": (),
}


@pytest.mark.parametrize("method,args", sorted(GUARDED.items()))
def test_guarded_methods_raise_unconnected(method, args, tmp_path):
    conn = ClipperConnection(LocalContainerManager("guard", state_dir=tmp_path))
    with pytest.raises(UnconnectedException) as e:
        getattr(conn, method)(*args)
    assert str(e.value).startswith("No connection to Clipper cluster. Call ClipperConnection.connect")
    assert e.value.msg == e.value.message
    assert not (tmp_path / "guard").exists()  # nothing happened before the guard


def test_unconnected_methods_that_work(tmp_path):
    conn = ClipperConnection(LocalContainerManager("nothing", state_dir=tmp_path))
    conn.stop_all()  # no cluster: a no-op, no guard
    with pytest.raises(ClipperException, match="Invalid value: Bad"):
        conn.build_model("Bad", 1, str(tmp_path), "default")  # not guarded: validation runs
    with pytest.raises(ClipperException, match="Cluster nothing does not exist"):
        conn.test_predict_function({"input": [1.0]}, lambda x: x, "doubles")  # connects itself
