"""The public surface matches the original: exports, signatures, defaults, lazy backend imports."""

from __future__ import annotations

import inspect
import subprocess
import sys

import clipper_admin
from clipper_admin import ClipperConnection
from clipper_admin.container_manager import ContainerManager
from clipper_admin.deployers import python as python_deployer

SIGNATURES = {
    "start_clipper": "(self, query_frontend_image='clipper/query_frontend:{v}', "
    "mgmt_frontend_image='clipper/management_frontend:{v}', "
    "frontend_exporter_image='clipper/frontend-exporter:{v}', cache_size=33554432, "
    "qf_http_thread_pool_size=1, qf_http_timeout_request=5, qf_http_timeout_content=300, "
    "num_frontend_replicas=1)",
    "connect": "(self)",
    "register_application": "(self, name, input_type, default_output, slo_micros)",
    "delete_application": "(self, name)",
    "unregister_application": "(self, name)",
    "link_model_to_app": "(self, app_name, model_name)",
    "unlink_model_from_app": "(self, app_name, model_name)",
    "build_and_deploy_model": "(self, name, version, input_type, model_data_path, base_image, labels=None, "
    "container_registry=None, num_replicas=1, batch_size=-1, pkgs_to_install=None)",
    "build_model": "(self, name, version, model_data_path, base_image, container_registry=None, "
    "pkgs_to_install=None)",
    "deploy_model": "(self, name, version, input_type, image, labels=None, num_replicas=1, batch_size=-1)",
    "register_model": "(self, name, version, input_type, image=None, labels=None, batch_size=-1)",
    "get_current_model_version": "(self, name)",
    "get_num_replicas": "(self, name, version=None)",
    "set_num_replicas": "(self, name, num_replicas, version=None)",
    "get_all_apps": "(self, verbose=False)",
    "get_app_info": "(self, name)",
    "get_linked_models": "(self, app_name)",
    "get_all_models": "(self, verbose=False)",
    "get_model_info": "(self, name, version)",
    "get_all_model_replicas": "(self, verbose=False)",
    "get_model_replica_info": "(self, name, version, replica_id)",
    "get_clipper_logs": "(self, logging_dir='clipper_logs/')",
    "inspect_instance": "(self)",
    "set_model_version": "(self, name, version, num_replicas=None)",
    "get_query_addr": "(self)",
    "get_metric_addr": "(self)",
    "stop_models": "(self, model_names)",
    "stop_versioned_models": "(self, model_versions_dict)",
    "stop_inactive_model_versions": "(self, model_names)",
    "stop_all_model_containers": "(self)",
    "stop_all": "(self, graceful=True)",
    "test_predict_function": "(self, query, func, input_type)",
}


def test_clipper_connection_signatures():
    v = clipper_admin.__version__
    for name, expected in SIGNATURES.items():
        assert str(inspect.signature(getattr(ClipperConnection, name))) == expected.format(v=v), name


# Added beside the original's (README "Traffic splitting"); the original's signatures above are unchanged.
ADDED_METHODS = {"set_app_traffic", "get_app_traffic", "clear_app_traffic", "update_application"}


def test_no_other_public_methods():
    public = {n for n in vars(ClipperConnection) if not n.startswith("_")}
    assert public == set(SIGNATURES) | ADDED_METHODS


def test_deployer_signatures():
    assert str(inspect.signature(python_deployer.deploy_python_closure)) == (
        "(clipper_conn, name, version, input_type, func, base_image='default', labels=None, "
        "registry=None, num_replicas=1, batch_size=-1, pkgs_to_install=None)"
    )
    assert str(inspect.signature(python_deployer.create_endpoint)) == (
        "(clipper_conn, name, input_type, func, default_output='None', version=1, slo_micros=3000000, "
        "labels=None, registry=None, base_image='default', num_replicas=1, batch_size=-1, "
        "pkgs_to_install=None)"
    )


def test_constants_and_exports():
    assert clipper_admin.DEFAULT_PREDICTION_CACHE_SIZE_BYTES == 33554432
    assert clipper_admin.DEFAULT_LABEL == []
    assert clipper_admin.deploy_regex_str == r"[a-z0-9]([-a-z0-9]*[a-z0-9])?\Z"
    assert clipper_admin.__registry__ == "clipper"
    from clipper_admin import container_manager as cm

    assert (
        cm.CLIPPER_INTERNAL_QUERY_PORT,
        cm.CLIPPER_INTERNAL_MANAGEMENT_PORT,
        cm.CLIPPER_INTERNAL_RPC_PORT,
    ) == (
        1337,
        1338,
        7000,
    )
    assert cm.CONTAINERLESS_MODEL_IMAGE == "NO_CONTAINER"
    assert cm.CLIPPER_DOCKER_PORT_LABELS["query_rest"] == "ai.clipper.query_frontend.query.port"
    for method in ("start_clipper", "connect", "deploy_model", "set_num_replicas", "stop_all", "build_model"):
        assert hasattr(ContainerManager, method)


def test_import_does_not_need_docker_or_kubernetes():
    code = (
        "import sys, clipper_admin\n"
        "from clipper_admin import ClipperConnection, ClipperException, UnconnectedException, LocalContainerManager\n"
        "from clipper_admin.deployers import python\n"
        "import clipper_admin.metrics\n"
        "assert 'docker' not in sys.modules and 'kubernetes' not in sys.modules, sorted(sys.modules)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_unknown_attribute():
    import pytest

    with pytest.raises(AttributeError):
        clipper_admin.NoSuchThing  # noqa: B018


def test_local_manager_has_the_attributes_original_scripts_read(tmp_path):
    """Scripts written for the original's DockerContainerManager read these off ``conn.cm``."""
    import logging

    import pytest

    from clipper_admin import LocalContainerManager

    cm = LocalContainerManager("attrs", clipper_query_port=4321, host="127.0.0.2", state_dir=tmp_path)
    assert cm.cluster_name == cm.cluster_identifier == "attrs"
    assert cm.centralize_log is False and cm.logging_system_instance is None
    assert cm.prom_config_path is None
    assert cm.public_hostname == "127.0.0.2"
    assert cm.get_query_addr() == f"{cm.public_hostname}:{cm.clipper_query_port}" == "127.0.0.2:4321"
    assert isinstance(cm.logger, logging.LoggerAdapter)
    assert cm.logger.process("hi", {}) == ("[attrs] hi", {})
    # no Docker here: a clear AttributeError, and hasattr() stays False
    assert not hasattr(cm, "docker_client")
    with pytest.raises(AttributeError, match="not Docker containers"):
        cm.docker_client  # noqa: B018
