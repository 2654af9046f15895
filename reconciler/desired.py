"""The desired state: manifests resolved to plain records, with content-addressed model versions.

The version of a model without an explicit ``version`` is a short hash of what determines its
behaviour: the function's source file(s) (not the pickle, which is not stable across runs), the
referenced name, packages, base image, input type and batch size. An unchanged model therefore keeps
its version and is never rebuilt; any change yields a new version that rolls out.
"""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass, field
from pathlib import Path

from reconciler.errors import ReconcilerError
from reconciler.loader import Loaded, ManifestSet
from reconciler.sources import model_source_files
from schemas import Cluster, ClusterSpec
from schemas.application import ApplicationSpec
from schemas.model import HealthCheck, ModelSpec, Rollout

HASH_LENGTH = 10


@dataclass(frozen=True)
class DesiredModel:
    name: str
    version: str
    input_type: str
    replicas: int
    batch_size: int
    content_hash: str
    explicit_version: bool
    labels: tuple[str, ...] = ()  # user labels "key=value"
    source_kind: str = "python"
    # the rollout's smoke prediction (Model.spec.health); None: connected and not hung is enough
    health: HealthCheck | None = field(default=None, compare=False)
    # how a new version takes traffic (Model.spec.rollout): immediate, canary or blueGreen
    rollout: Rollout = field(default_factory=Rollout, compare=False)
    loaded: Loaded | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class DesiredTraffic:
    """How an application routes beyond its one linked model (``Application.spec``: models, stickyKey,
    shadow, selection). Versions are not named: each model's current version is meant."""

    models: tuple[tuple[str, float], ...]  # (model, weight); the first is the linked one
    sticky_key: str | None = None
    shadow: tuple[str, str | None, float] | None = None  # (model, version or None: current, percent)
    selection: tuple[str, float, float] | None = None  # (policy, eta, gamma)

    @property
    def plain(self) -> bool:
        """One model, no shadow, no policy: the original app (no traffic configuration; a sticky key
        only matters while a canary splits it)."""
        return len(self.models) == 1 and self.shadow is None and self.selection is None

    @staticmethod
    def from_spec(spec: ApplicationSpec) -> DesiredTraffic | None:
        models = [(spec.model, 1.0)] if spec.model else [(m.name, m.weight) for m in spec.models or ()]
        if not models:
            return None
        sh = spec.shadow
        sel = spec.selection
        return DesiredTraffic(
            tuple(models),
            spec.sticky_key,
            (sh.model, sh.version, sh.percent) if sh else None,
            (sel.policy, sel.eta, sel.gamma) if sel else None,
        )

    @staticmethod
    def from_dict(d: dict[str, object] | None) -> DesiredTraffic | None:
        """The inverse of ``dataclasses.asdict`` (a stored history entry)."""
        if not d:
            return None
        models = tuple((str(m), float(w)) for m, w in d["models"])  # type: ignore[attr-defined]
        sh = d.get("shadow")
        sel = d.get("selection")
        return DesiredTraffic(
            models,
            d.get("sticky_key"),  # type: ignore[arg-type]
            (str(sh[0]), None if sh[1] is None else str(sh[1]), float(sh[2])) if sh else None,  # type: ignore[index]
            (str(sel[0]), float(sel[1]), float(sel[2])) if sel else None,  # type: ignore[index]
        )


@dataclass(frozen=True)
class DesiredApp:
    name: str
    input_type: str
    default_output: str
    slo_micros: int
    model: str | None  # the linked model (the first of spec.models)
    traffic: DesiredTraffic | None = None


@dataclass(frozen=True)
class DesiredState:
    cluster_name: str
    cluster: ClusterSpec
    models: dict[str, DesiredModel]
    apps: dict[str, DesiredApp]


def _function_files(ref: str, base_dir: Path) -> list[Path]:
    target = ref.rsplit(":", 1)[0]
    if target.endswith(".py"):
        return model_source_files(base_dir / target)
    try:
        spec = importlib.util.find_spec(target)
    except (ImportError, ValueError) as e:
        raise ReconcilerError(f"cannot find module {target!r}: {e}") from None
    if spec is None or not spec.origin or not Path(spec.origin).is_file():
        raise ReconcilerError(f"cannot find module {target!r} on the Python path")
    return [Path(spec.origin)]


def _hash_tree(h: hashlib._Hash, root: Path) -> None:
    for f in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(str(f.relative_to(root)).encode() + b"\0" + f.read_bytes() + b"\0")


def _function_ref(spec: ModelSpec) -> str | None:
    """``file.py:name`` or ``module:name`` of a python/pyspark source, None for an image."""
    src = spec.source
    return src.python.function if src.python else src.pyspark.function if src.pyspark else None


def source_paths(state: DesiredState) -> list[Path]:
    """What the models' versions are hashed from, as it is on disk now: each function's file and the
    local modules it imports, each PySpark model directory. ``clipper watch`` watches these besides
    the manifests, so that a code edit rolls out like a manifest edit."""
    paths: set[Path] = set()
    for m in state.models.values():
        if m.loaded is None:
            continue
        spec, base = m.loaded.obj.spec, m.loaded.base_dir
        fn = _function_ref(spec)
        if fn is not None:
            paths.update(f.resolve() for f in _function_files(fn, base))
        if spec.source.pyspark is not None:
            paths.add((base / spec.source.pyspark.model_path).resolve())
    return sorted(paths)


def content_hash(loaded: Loaded) -> str:
    """Short hash of everything that defines the model's behaviour (see module docstring)."""
    spec = loaded.obj.spec
    h = hashlib.sha256()
    parts = [
        spec.source.kind,
        spec.input_type,
        str(spec.batch_size),
        spec.base_image or "",
        *sorted(spec.packages),
    ]
    if spec.source.image is not None:
        parts.append(spec.source.image)
    fn = _function_ref(spec)
    if fn is not None:
        parts.append(fn.rsplit(":", 1)[1])
        for f in _function_files(fn, loaded.base_dir):
            h.update(f.name.encode() + b"\0" + f.read_bytes() + b"\0")
    if spec.source.pyspark is not None:
        parts.append(spec.source.pyspark.model_class)
        _hash_tree(h, loaded.base_dir / spec.source.pyspark.model_path)
    h.update("\0".join(parts).encode())
    return h.hexdigest()[:HASH_LENGTH]


def desired_state(manifests: ManifestSet, default_cluster: str = "default") -> DesiredState:
    cluster: Cluster | None = manifests.cluster.obj if manifests.cluster else None
    models = {}
    for name, loaded in manifests.models.items():
        spec = loaded.obj.spec
        digest = content_hash(loaded)
        models[name] = DesiredModel(
            name=name,
            version=spec.version or digest,
            input_type=spec.input_type,
            replicas=spec.replicas,
            batch_size=spec.batch_size,
            content_hash=digest,
            explicit_version=spec.version is not None,
            labels=tuple(f"{k}={v}" for k, v in sorted(loaded.obj.metadata.labels.items())),
            source_kind=spec.source.kind,
            health=spec.health,
            rollout=spec.rollout,
            loaded=loaded,
        )
    apps = {
        name: DesiredApp(
            name=name,
            input_type=app.obj.spec.input_type,
            default_output=app.obj.spec.default_output,
            slo_micros=app.obj.spec.latency_slo_micros,
            model=app.obj.spec.model_names()[0] if app.obj.spec.model_names() else None,
            traffic=DesiredTraffic.from_spec(app.obj.spec),
        )
        for name, app in manifests.apps.items()
    }
    return DesiredState(
        cluster_name=cluster.metadata.name if cluster else default_cluster,
        cluster=cluster.spec if cluster else ClusterSpec(),
        models=models,
        apps=apps,
    )
