"""The prediction hot path, optionally compiled to C extension modules with mypyc.

The query frontend's per-request work (HTTP, parsing, admission, batching, the RPC encoding and
its socket, completion, metrics) is plain, fully annotated Python.
``CLIPPER_COMPILE=1 pip install --no-build-isolation`` (``setup.py``; needs mypy, clipper's
dependencies, a C compiler and the Python headers) compiles the modules below with mypyc: the same
source, about a quarter more predictions per second from one frontend process, 40 % less CPU per
request in process (``bench/README.md``). ``images/build.sh`` builds the images' wheel so when it
can. Every other install (editable ones included, so that an edit takes effect at once) runs them
interpreted. Compiled code checks the annotations at run time, so they must be true
(``tests/integration/test_compiled_hot_path.py`` runs the serving tests against a compiled build;
``docs/internals.md`` lists the rules).
"""

from __future__ import annotations

import importlib.machinery
import importlib.util

HOT_PATH_MODULES = (
    "clipper.http.server",
    "clipper.metrics.types",
    "clipper.query_frontend.batching",
    "clipper.query_frontend.cache",
    "clipper.query_frontend.processor",
    "clipper.query_frontend.queues",
    "clipper.query_frontend.requests",
    "clipper.query_frontend.responses",
    "clipper.query_frontend.routes",
    "clipper.query_frontend.server",
    "clipper.query_frontend.traffic",
    "clipper.query_frontend.workers",
    "clipper.rpc.protocol",
    "clipper.rpc.server",
    "clipper.rpc.stream",
)


def hot_path() -> str:
    """``compiled``, ``interpreted`` or ``partly compiled (N of M)``: how the hot path's modules
    would be imported here (found, not imported)."""
    compiled = 0
    for name in HOT_PATH_MODULES:
        spec = importlib.util.find_spec(name)
        if spec is not None and isinstance(spec.loader, importlib.machinery.ExtensionFileLoader):
            compiled += 1
    if compiled == len(HOT_PATH_MODULES):
        return "compiled"
    if compiled == 0:
        return "interpreted"
    return f"partly compiled ({compiled} of {len(HOT_PATH_MODULES)})"
