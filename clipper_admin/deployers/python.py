"""Deploy a Python closure to Clipper (the original ``clipper_admin.deployers.python``)."""

from __future__ import annotations

import logging
import sys

from ..exceptions import ClipperException
from ..version import __registry__, __version__
from .deployer_utils import deploy_model_dir, save_python_function

logger = logging.getLogger(__name__)


def default_python_base_image() -> str:
    """The closure-container image for the running interpreter, e.g. ``clipper/python311-closure-container:<v>``."""
    major, minor = sys.version_info[:2]
    if major != 3:
        raise ClipperException(f"Python closure deployer only supports Python 3. Detected {major}.{minor}")
    return f"{__registry__}/python3{minor}-closure-container:{__version__}"


def create_endpoint(
    clipper_conn,
    name,
    input_type,
    func,
    default_output="None",
    version=1,
    slo_micros=3000000,
    labels=None,
    registry=None,
    base_image="default",
    num_replicas=1,
    batch_size=-1,
    pkgs_to_install=None,
):
    """Register an application, deploy ``func`` as a model of the same name, and link the two.

    ``func`` takes a batch of inputs and returns one output per input (each converted with ``str``).
    See :func:`deploy_python_closure` for the remaining parameters.
    """
    clipper_conn.register_application(name, input_type, default_output, slo_micros)
    deploy_python_closure(
        clipper_conn,
        name,
        version,
        input_type,
        func,
        base_image,
        labels,
        registry,
        num_replicas,
        batch_size,
        pkgs_to_install,
    )
    clipper_conn.link_model_to_app(name, name)


def deploy_python_closure(
    clipper_conn,
    name,
    version,
    input_type,
    func,
    base_image="default",
    labels=None,
    registry=None,
    num_replicas=1,
    batch_size=-1,
    pkgs_to_install=None,
):
    """Deploy an arbitrary Python function to Clipper.

    The function is serialised with cloudpickle. The pip-installed packages it uses are recorded
    (pinned to the installed versions) and installed when the model is built, together with
    ``pkgs_to_install``; local modules it imports are shipped with it.

    Parameters
    ----------
    clipper_conn : :py:meth:`clipper_admin.ClipperConnection`
    name : str
        The model name (a DNS-1123 label: lower case letters, digits and '-').
    version : str or int
        The model version (same rules as ``name``).
    input_type : str
        One of "integers", "floats", "doubles", "bytes", or "strings".
    func : function
        Takes a batch of inputs, returns a list of outputs of the same length.
    base_image : str, optional
        The image to build on (Docker/Kubernetes); "default" picks the closure container for the
        running Python version. Ignored by the local backend.
    labels : list(str), optional
    registry : str, optional
        A registry to push the model image to (Docker/Kubernetes).
    num_replicas : int, optional
    batch_size : int, optional
        Maximum batch size, or -1 for adaptive batching.
    pkgs_to_install : list(str), optional
        Extra pip requirements installed into the model at build time.
    """
    if not callable(func):
        raise ClipperException(f"func must be callable, got a {type(func).__name__}")
    if base_image == "default":
        base_image = default_python_base_image()
    serialization_dir = save_python_function(name, func)
    deploy_model_dir(clipper_conn, serialization_dir, name, version, input_type, base_image, labels,
                     registry, num_replicas, batch_size, pkgs_to_install)  # fmt: skip
    logger.info(f"Python closure saved and deployed as model {name}:{version}")
