"""Helpers of the Docker suite: model directories and bounded waits."""

from __future__ import annotations

import json
import os
import sys
import time

import cloudpickle
import requests


def write_model_dir(path, func) -> str:
    """A model directory as docs/internals.md describes it (func.pkl + clipper_model.json)."""
    os.makedirs(path, exist_ok=True)
    # test modules are not importable in the container: pickle the function by value
    module = sys.modules[func.__module__]
    cloudpickle.register_pickle_by_value(module)
    try:
        with open(os.path.join(path, "func.pkl"), "wb") as f:
            cloudpickle.dump(func, f)
    finally:
        cloudpickle.unregister_pickle_by_value(module)
    with open(os.path.join(path, "clipper_model.json"), "w") as f:
        json.dump({"kind": "python", "python": "3.11", "requirements": []}, f)
    return str(path)


def script_function(source: str, name: str):
    """Function ``name`` of ``source``, defined as a script's ``__main__`` defines it (as the README's
    flow does): dependency capture then ships no test module with its imports (pytest, hypothesis,
    numpy...), which the model never uses and the image build would fetch and pip install."""
    namespace: dict = {"__name__": "__main__"}
    exec(source, namespace)  # noqa: S102 - a constant of the calling test
    return namespace[name]


def wait_for(predicate, timeout: float, what: str, interval: float = 0.25):
    """Poll ``predicate()`` until it returns a truthy value; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
            if last:
                return last
        except requests.RequestException as e:
            last = e
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {last!r})")


def predict(query_addr: str, app: str, payload: dict) -> dict:
    r = requests.post(f"http://{query_addr}/{app}/predict", json=payload, timeout=10)
    r.raise_for_status()
    return r.json()


def wait_for_output(query_addr: str, app: str, payload: dict, expected: str, timeout: float = 90):
    """Wait until the app answers ``expected`` (not its default output)."""

    seen: list = []

    def check():
        out = predict(query_addr, app, payload)
        seen[:] = [out]
        return out if (not out.get("default") and str(out.get("output")) == expected) else None

    try:
        return wait_for(check, timeout, f"{app} to answer {expected}")
    except AssertionError as e:
        raise AssertionError(f"{e}; last answer {seen}") from None


def write_local_wheel(directory, name: str, version: str, module_source: str, data: bytes = b"") -> str:
    """A pure-Python wheel ``<name>-<version>`` holding module ``<name>`` (``module_source``), written
    into ``directory``: a package pip finds with ``--find-links`` and no index (tests stay offline).
    ``data``, when given, is shipped as ``<name>/data.bin`` (a package of a chosen size, for bench/)."""
    import base64
    import hashlib
    import zipfile

    dist = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": module_source.encode(),
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
        f"{dist}/WHEEL": b"Wheel-Version: 1.0\nGenerator: clipper-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    if data:
        files[f"{name}/data.bin"] = data
    record = []
    for path, content in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(content).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(content)}")
    record.append(f"{dist}/RECORD,,")
    files[f"{dist}/RECORD"] = ("\n".join(record) + "\n").encode()
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, f"{name}-{version}-py3-none-any.whl")
    with zipfile.ZipFile(path, "w") as whl:
        for member, content in files.items():
            whl.writestr(member, content)
    return path
