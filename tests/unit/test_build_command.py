"""``clipper build``: the ``-o`` rewrite of the manifests, the flow around the builder, the errors.

The images themselves are built by the Docker engine in ``tests/docker/test_build_command.py``; here
the engine, the builder and the push are replaced by recorders.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest

from clipper_admin import image_builder
from clipper_admin.docker.docker_container_manager import DockerContainerManager
from clipper_admin.exceptions import ClipperException
from reconciler import build
from reconciler.build import rewrite_manifests
from reconciler.cli import main
from reconciler.loader import load_manifests

CLUSTER = """\
# the team's cluster
apiVersion: clipper.ai/v1
kind: Cluster
metadata:
  name: team
spec:
  backend: kubernetes
  registry: ${REGISTRY:-}  # set in CI
  kubernetes:
    namespace: ml
"""

MODELS = """\
apiVersion: clipper.ai/v1
kind: Model
metadata:
  name: summer
  labels: {team: search}
spec:
  inputType: doubles   # vectors of doubles
  replicas: 2
  source:
    python:
      function: model.py:predict
  packages:
    - numpy>=1.24
  baseImage: clipper/python311-closure-container:0.1.0
  rollout:
    strategy: canary
    steps: [{weight: 10, pause: 60}]
---
# a prebuilt image: left as it is
apiVersion: clipper.ai/v1
kind: Model
metadata:
  name: prebuilt
spec:
  inputType: doubles
  source:
    image: registry.example.com/prebuilt:1
---
apiVersion: clipper.ai/v1
kind: Application
metadata:
  name: sums
spec:
  inputType: doubles
  defaultOutput: "-1.0"
  latencySloMicros: 100000
  model: summer
"""


@pytest.fixture
def manifests(tmp_path: Path) -> Path:
    d = tmp_path / "manifests"
    d.mkdir()
    (d / "cluster.yaml").write_text(CLUSTER)
    (d / "models.yaml").write_text(MODELS)
    (d / "model.py").write_text("def predict(xs):\n    return [str(sum(x)) for x in xs]\n")
    return d


def test_rewrite_replaces_only_the_built_models_source(manifests: Path, tmp_path: Path) -> None:
    ref = "registry.example.com/ml/team-summer@sha256:" + "a" * 64
    text = rewrite_manifests([str(manifests)], {"summer": ref})
    expected_models = MODELS.replace(
        """\
  source:
    python:
      function: model.py:predict
  packages:
    - numpy>=1.24
  baseImage: clipper/python311-closure-container:0.1.0
""",
        f"""\
  source:
    image: {ref}
""",
    )
    # comments, flow style, quoting, ${VAR} and key order stay as written; files in -f order
    assert text == CLUSTER + "---\n" + expected_models
    out = tmp_path / "out" / "built.yaml"
    out.parent.mkdir()
    out.write_text(text)
    loaded = load_manifests([str(out)], env={})
    assert loaded.models["summer"].obj.spec.source.image == ref
    assert loaded.models["summer"].obj.spec.packages == []
    assert loaded.models["summer"].obj.spec.rollout.strategy == "canary"
    assert loaded.models["prebuilt"].obj.spec.source.image == "registry.example.com/prebuilt:1"


def test_rewrite_reads_stdin_text_for_dash() -> None:
    text = rewrite_manifests(["-"], {"summer": "team-summer:1"}, stdin_text=CLUSTER + "---\n" + MODELS)
    assert "image: team-summer:1" in text and "python:" not in text and text.startswith("# the team's")


class Recorder:
    """Stands in for the Docker engine, the builder and the registry."""

    def __init__(self, existing: set[str] | None = None) -> None:
        self.existing = set(existing or ())
        self.built: list[tuple[str, str, str, list[str] | None]] = []
        self.pushed: list[str] = []

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(build, "_engine", lambda: self)
        monkeypatch.setattr(image_builder, "image_exists", lambda client, tag: tag in self.existing)

        def build_model_image(cm: Any, name: str, version: str, model_dir: str, base: str,
                              registry: str | None = None, pkgs: list[str] | None = None) -> str:  # fmt: skip
            assert (Path(model_dir) / "func.pkl").is_file()
            tag = cm.model_image(name, version, registry)
            self.built.append((tag, base, name, pkgs))
            self.existing.add(tag)
            return tag

        def push_image(client: Any, tag: str) -> str:
            self.pushed.append(tag)
            return f"{tag.rpartition(':')[0]}@sha256:{'b' * 64}"

        monkeypatch.setattr(DockerContainerManager, "build_model_image", build_model_image)
        from clipper_admin.kubernetes.kubernetes_container_manager import KubernetesContainerManager

        monkeypatch.setattr(KubernetesContainerManager, "build_model_image", build_model_image)
        monkeypatch.setattr(image_builder, "push_image", push_image)


def _version(manifests: Path) -> str:
    from reconciler.desired import desired_state

    return desired_state(load_manifests([str(manifests)], env={})).models["summer"].version


def test_build_names_images_as_apply_and_skips_unchanged_models(
    manifests: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    rec = Recorder()
    rec.install(monkeypatch)
    version = _version(manifests)
    tag = f"team-summer:{version}"  # namespace ml: the kubernetes manager's identifier is the name
    assert main(["--no-color", "build", "-f", str(manifests)]) == 0
    out, err = capsys.readouterr()
    assert out == f"Model/summer  {tag}\n"
    assert "Model/prebuilt: its source is already an image" in err
    assert rec.built == [(tag, "clipper/python311-closure-container:0.1.0", "summer", ["numpy>=1.24"])]
    assert rec.pushed == []

    assert main(["--no-color", "build", "-f", str(manifests)]) == 0
    out, err = capsys.readouterr()
    assert out == f"Model/summer  {tag}\n" and "exists (the model is unchanged)" in err
    assert len(rec.built) == 1, "an unchanged model was built again"


def test_push_prints_and_writes_the_image_by_digest(
    manifests: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    rec = Recorder()
    rec.install(monkeypatch)
    out_file = tmp_path / "built.yaml"
    argv = ["--no-color", "build", "-f", str(manifests), "--registry", "reg.example.com/ml", "--push"]
    assert main([*argv, "-o", str(out_file)]) == 0
    digest_ref = f"reg.example.com/ml/team-summer@sha256:{'b' * 64}"
    assert capsys.readouterr().out == f"Model/summer  {digest_ref}\n"
    assert rec.pushed == [f"reg.example.com/ml/team-summer:{_version(manifests)}"]
    assert f"    image: {digest_ref}\n" in out_file.read_text()
    # -o -: the manifests on stdout, the model lines on stderr
    assert main([*argv, "-o", "-"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("# the team's cluster") and f"image: {digest_ref}" in out
    assert f"Model/summer  {digest_ref}" in err


def _fails(argv: list[str], capsys: pytest.CaptureFixture[str], *expected: str) -> None:
    assert main(["--no-color", "build", *argv]) == 2
    captured = capsys.readouterr()
    for text in expected:
        assert text in captured.err
    assert "Traceback" not in captured.err


def test_bad_manifests_exit_2_with_the_loaders_message(
    manifests: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (manifests / "models.yaml").write_text(MODELS.replace("model.py:predict", "missing.py:predict"))
    _fails(["-f", str(manifests)], capsys, "problem(s) in the manifests", "missing.py not found")
    _fails(["-f", str(manifests / "nope.yaml")], capsys, "no such file or directory")


def test_a_cluster_that_builds_no_images_is_refused(
    manifests: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _fails(["-f", str(manifests / "models.yaml")], capsys, "no Cluster in the manifests")
    (manifests / "cluster.yaml").write_text(
        "apiVersion: clipper.ai/v1\nkind: Cluster\nmetadata: {name: here}\nspec: {backend: local}\n"
    )
    _fails(["-f", str(manifests)], capsys, "Cluster/here has backend 'local'")


def test_option_errors(manifests: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _fails(["-f", str(manifests), "--push"], capsys, "--push needs a registry")
    _fails(["-f", str(manifests), "--load", "docker:/run/x.sock"], capsys, "Unknown image loader")


def test_no_docker_engine_is_a_clear_error(
    manifests: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-docker.sock")
    _fails(["-f", str(manifests)], capsys, "Cannot reach the Docker engine", "DOCKER_HOST")


def test_only_image_models_need_no_engine(
    manifests: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-docker.sock")
    (manifests / "models.yaml").write_text(MODELS.split("---\n")[1])
    assert main(["--no-color", "build", "-f", str(manifests)]) == 0
    out, err = capsys.readouterr()
    assert out == "" and "Model/prebuilt: its source is already an image" in err


class FakeImages:
    def __init__(self, chunks: list[dict[str, Any]]) -> None:
        self.chunks = chunks

    def push(self, repo: str, tag: str, stream: bool, decode: bool) -> Any:
        return iter(self.chunks)


def test_push_image_returns_the_pushed_digest() -> None:
    digest = "sha256:" + "c" * 64
    client: Any = type("C", (), {})()
    client.images = FakeImages([{"status": "Pushing"}, {"aux": {"Tag": "1", "Digest": digest, "Size": 5}}])
    assert image_builder.push_image(client, "localhost:5000/ml/m:1") == f"localhost:5000/ml/m@{digest}"
    client.images = FakeImages([{"error": "denied: requested access to the resource is denied"}])
    with pytest.raises(ClipperException, match="denied"):
        image_builder.push_image(client, "localhost:5000/ml/m:1")
    client.images = FakeImages([{"status": "done"}])
    with pytest.raises(ClipperException, match="no digest"):
        image_builder.push_image(client, "localhost:5000/ml/m:1")


def test_stdin_manifests_are_read_once(
    manifests: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    rec = Recorder()
    rec.install(monkeypatch)
    text = CLUSTER + "---\n" + MODELS.replace("model.py", str(manifests / "model.py"))
    monkeypatch.setattr("sys.stdin", io.StringIO(text))
    assert main(["--no-color", "build", "-f", "-", "-o", "-"]) == 0
    out, err = capsys.readouterr()
    assert "image: team-summer:" in out and "Model/summer  team-summer:" in err


class FakeBuilds:
    """``client.api.build`` answering with one scripted stream per call."""

    def __init__(self, streams: list[list[dict[str, Any]]]) -> None:
        self.streams = streams
        self.calls = 0

    def build(self, **kwargs: Any) -> Any:
        self.calls += 1
        return iter(self.streams.pop(0))


def _builder_client(streams: list[list[dict[str, Any]]]) -> Any:
    client: Any = type("C", (), {})()
    client.api = FakeBuilds(streams)
    base = type("I", (), {"attrs": {"Config": {"User": "clipper"}}})()
    client.images = type("Images", (), {"get": staticmethod(lambda tag: base)})()
    return client


VANISHED = {
    "error": "failed to export image: failed to set parent sha256:fc70: unknown parent image ID sha256:fc70"
}
BUILT = [{"stream": "Step 1/2 : FROM base\n"}, {"stream": "Successfully tagged m:1\n"}]


def test_a_build_whose_cached_layer_is_removed_meanwhile_is_built_again(tmp_path: Path) -> None:
    """Another build's image removed with its untagged parents can take a cached step's image away
    between the cache lookup and the next commit (seen in CI with two suites building side by side):
    the build is run again, not failed."""
    (tmp_path / "func.pkl").write_bytes(b"x")
    client = _builder_client([[{"stream": "Step 2/7 : USER root\n"}, VANISHED], BUILT])
    assert image_builder.build_model_image(client, "m:1", str(tmp_path), "base:1") == "m:1"
    assert client.api.calls == 2


def test_a_build_that_keeps_losing_its_cache_or_fails_otherwise_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "func.pkl").write_bytes(b"x")
    client = _builder_client([[VANISHED]] * image_builder.BUILD_ATTEMPTS)
    with pytest.raises(ClipperException, match="failed 3 times: the engine removed a cached layer"):
        image_builder.build_model_image(client, "m:1", str(tmp_path), "base:1")
    assert client.api.calls == image_builder.BUILD_ATTEMPTS
    client = _builder_client([[{"error": "COPY failed: no source files were specified"}]])
    with pytest.raises(ClipperException, match="Building m:1 failed: COPY failed"):
        image_builder.build_model_image(client, "m:1", str(tmp_path), "base:1")
    assert client.api.calls == 1  # a real error is not retried
