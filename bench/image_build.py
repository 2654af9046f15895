"""Model image build time on the Docker backend: cold, function changed, no change, requirement added.

Builds Python closure models the way ``deploy_python_closure`` does (``save_python_function``, then
``ClipperConnection.build_model`` on a ``DockerContainerManager``, which calls
``clipper_admin.image_builder.build_model_image``), each version a new tag, as a user's new version
would be. Per repetition and per variant, four builds in a row:

* ``cold`` -- a new model name, a function body and requirements no earlier build has seen: only the
  base image's layers are cached;
* ``function_changed`` -- version 2: only the function body differs (the issue's target: <= 5 s);
* ``no_change`` -- version 3: the same function and requirements again (every step a cache hit);
* ``requirement_added`` -- version 4: the same function plus one more (small) package requirement.

Variants: ``no_requirements`` (the closure uses nothing outside the standard library) and
``requirement`` (``pkgs_to_install`` names one package of ``--wheel-mib`` MiB). Packages come from a
local ``--find-links`` directory with ``PIP_NO_INDEX`` (the builder's ``pip wheel`` runs offline, as
in the Docker tests), written fresh each run with a random token, like the function bodies, so that no
earlier run's layers are in Docker's build cache.

Where the time goes, per build (instrumented, the builder itself unchanged): ``pip wheel`` on the
host, the build context's tar, its upload (until the engine reports the first step), each Dockerfile
step (``COPY wheels``, ``RUN pip install``, ``COPY model``, the image's labels, ``FROM``/``USER``),
and what is left (inspecting the base image, copying the model directory, tagging).

Results: ``bench/results/image-build-<time>.json`` (every build, medians per case) and a PNG next to
it (matplotlib): median build time per case and variant, and the median phases of each.

    python bench/image_build.py                    # 5 repetitions, a 20 MiB package
    python bench/image_build.py --repeat 3 --wheel-mib 100
    python bench/image_build.py --engine-labels    # the labels as before (one build step each)
    python bench/image_build.py --smoke            # 1 repetition, 1 MiB, no PNG unless --plot
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import docker  # noqa: E402
import docker.utils  # noqa: E402
from compare import machine_info  # noqa: E402
from peers.procs import BENCH_DIR, BenchError  # noqa: E402

from clipper_admin import ClipperConnection, DockerContainerManager, image_builder  # noqa: E402
from clipper_admin.deployers.deployer_utils import save_python_function  # noqa: E402
from clipper_admin.deployers.python import default_python_base_image  # noqa: E402
from clipper_admin.exceptions import ClipperException  # noqa: E402
from tests.docker.helpers import write_local_wheel  # noqa: E402

RESULTS = BENCH_DIR / "results"
CASES = ("cold", "function_changed", "no_change", "requirement_added")
VARIANTS = ("no_requirements", "requirement")
PHASES = (
    "pip_wheel",
    "context_tar",
    "upload",
    "copy_wheels",
    "pip_install",
    "copy_model",
    "labels",
    "other_steps",
    "rest",
)
PHASE_LABELS = {
    "pip_wheel": "pip wheel (host)",
    "context_tar": "context tar",
    "upload": "context upload",
    "copy_wheels": "COPY wheels",
    "pip_install": "RUN pip install",
    "copy_model": "COPY model",
    "labels": "LABEL steps",
    "other_steps": "FROM/USER steps",
    "rest": "rest",
}
TARGET_S = 5.0  # issue 18: a changed function rebuilds in <= 5 s
MiB = 1024 * 1024


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# -- instrumentation: where one build spends its time --------------------------------------------------


class Probe:
    """Timestamps of the build in progress, from wrappers around the builder's own calls."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.pip_wheel = self.context_tar = 0.0
        self.context_bytes = 0
        self.tar_done = 0.0  # when the context's tar was ready (perf_counter)
        self.first_step = 0.0  # when the engine reported "Step 1/N"
        self.steps: list[dict[str, Any]] = []  # instruction, seconds, cached
        self.built = 0.0  # "Successfully built"

    def wrap_wheels(self, real: Callable[[list[str], str], None]) -> Callable[[list[str], str], None]:
        def timed(reqs: list[str], dest: str) -> None:
            t0 = time.perf_counter()
            try:
                real(reqs, dest)
            finally:
                self.pip_wheel += time.perf_counter() - t0

        return timed

    def wrap_tar(self, real: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            fileobj = real(*args, **kwargs)
            self.context_bytes = fileobj.seek(0, os.SEEK_END)
            fileobj.seek(0)
            self.tar_done = time.perf_counter()
            self.context_tar = self.tar_done - t0
            return fileobj

        return timed

    def wrap_build(
        self, real: Callable[..., Iterator[dict[str, Any]]]
    ) -> Callable[..., Iterator[dict[str, Any]]]:
        def timed(*args: Any, **kwargs: Any) -> Iterator[dict[str, Any]]:
            for chunk in real(*args, **kwargs):
                now = time.perf_counter()
                text = chunk.get("stream", "")
                if text.startswith("Step "):
                    if not self.steps:
                        self.first_step = now
                    else:
                        self.steps[-1]["s"] = now - self.steps[-1].pop("t0")
                    instruction = text.split(" : ", 1)[-1].strip()
                    self.steps.append({"instruction": instruction, "t0": now, "cached": False})
                elif "Using cache" in text and self.steps:
                    self.steps[-1]["cached"] = True
                elif text.startswith("Successfully built") and self.steps:
                    self.steps[-1]["s"] = now - self.steps[-1].pop("t0")
                    self.built = now
                yield chunk

        return timed

    def phases(self, total: float) -> dict[str, float]:
        out = dict.fromkeys(PHASES, 0.0)
        out["pip_wheel"] = self.pip_wheel
        out["context_tar"] = self.context_tar
        out["upload"] = max(0.0, self.first_step - self.tar_done) if self.first_step else 0.0
        for step in self.steps:
            out[_phase_of(step["instruction"])] += step.get("s", 0.0)
        out["rest"] = max(0.0, total - sum(out.values()))
        return {k: round(v, 3) for k, v in out.items()}


def _phase_of(instruction: str) -> str:
    if instruction.startswith("COPY wheels"):
        return "copy_wheels"
    if instruction.startswith("RUN pip install"):
        return "pip_install"
    if instruction.startswith("COPY model"):
        return "copy_model"
    if instruction.startswith("LABEL"):  # the classic builder: one step (a commit) per build label
        return "labels"
    return "other_steps"  # FROM, USER


# -- the builds -------------------------------------------------------------------------------------------


def _function(body: str) -> Callable[[list[list[float]]], list[str]]:
    """A prediction function from source (a new body is a new function, pickled by value)."""
    namespace: dict[str, Any] = {"__name__": "__main__"}
    exec(f"def predict(xs):\n    {body}\n", namespace)
    func: Callable[[list[list[float]]], list[str]] = namespace["predict"]
    return func


class Builder:
    """Builds versions of closure models through ``ClipperConnection.build_model``, timed."""

    def __init__(self, client: docker.DockerClient, probe: Probe, base_image: str) -> None:
        self.client, self.probe, self.base_image = client, probe, base_image
        self.conn = ClipperConnection(
            DockerContainerManager(cluster_name="bench-build", docker_client=client)
        )
        self.tags: list[str] = []

    def build(self, name: str, version: int, body: str, pkgs: list[str]) -> dict[str, Any]:
        t0 = time.perf_counter()
        model_dir = save_python_function(name, _function(body))
        save_s = time.perf_counter() - t0
        self.probe.reset()
        try:
            t0 = time.perf_counter()
            tag = self.conn.build_model(name, version, model_dir, self.base_image, pkgs_to_install=pkgs)
            build_s = time.perf_counter() - t0
        except ClipperException as e:
            raise BenchError(f"building {name}:{version} failed: {e}") from e
        finally:
            shutil.rmtree(model_dir, ignore_errors=True)
        self.tags.append(tag)
        steps = self.probe.steps
        if not steps or not self.probe.context_bytes:
            raise BenchError(f"{tag}: the instrumentation saw no build (did the builder's path change?)")
        return {
            "tag": tag,
            "build_s": round(build_s, 3),
            "save_function_s": round(save_s, 3),
            "context_mib": round(self.probe.context_bytes / MiB, 2),
            "steps": len(steps),
            "steps_cached": sum(s["cached"] for s in steps),
            "layers": len(self.client.images.get(tag).attrs["RootFS"]["Layers"]),
            "phases": self.probe.phases(build_s),
            "step_detail": [
                {"instruction": s["instruction"][:60], "s": round(s.get("s", 0.0), 3), "cached": s["cached"]}
                for s in steps
            ],
        }

    def remove_all(self) -> None:
        for tag in reversed(self.tags):
            try:
                self.client.images.remove(tag, force=True)
            except docker.errors.DockerException as e:
                say(f"  could not remove {tag}: {e}")


def one_repetition(builder: Builder, index: Path, token: str, rep: int, wheel_bytes: int) -> dict[str, Any]:
    """The four cases, for each variant, on models no earlier build has seen."""
    out: dict[str, Any] = {}
    for variant in VARIANTS:
        tag = f"{token}{rep}{variant[0]}"
        dep, extra = f"benchdep_{tag}", f"benchextra_{tag}"
        base_pkgs = []
        if variant == "requirement":
            write_local_wheel(index, dep, "1.0", f"TOKEN = {tag!r}\n", data=os.urandom(wheel_bytes))
            base_pkgs = [f"{dep}==1.0"]
        write_local_wheel(index, extra, "1.0", f"TOKEN = {tag!r}\n")
        name = f"m-{tag}".replace("_", "-")
        first = f"return [str(sum(x) + {rep}) + {tag!r}[:0] for x in xs]"
        second = f"return [str(max(x) * {rep + 2}) + {tag!r}[:0] for x in xs]"
        plan = [
            ("cold", first, base_pkgs),
            ("function_changed", second, base_pkgs),
            ("no_change", second, base_pkgs),
            ("requirement_added", second, [*base_pkgs, f"{extra}==1.0"]),
        ]
        out[variant] = {}
        for version, (case, body, pkgs) in enumerate(plan, start=1):
            row = builder.build(name, version, body, pkgs)
            row["load_avg"] = round(os.getloadavg()[0], 2)
            out[variant][case] = row
            say(f"  rep {rep} {variant:15} {case:17} {row['build_s']:6.2f} s  "
                f"({row['steps_cached']}/{row['steps']} steps cached, context {row['context_mib']} MiB) "
                f"{row['phases']}")  # fmt: skip
    return out


def summarize(reps: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians (and min/max) per variant and case, build time and each phase."""
    out: dict[str, Any] = {}
    for variant in VARIANTS:
        out[variant] = {}
        for case in CASES:
            rows = [r[variant][case] for r in reps]
            times = [r["build_s"] for r in rows]
            out[variant][case] = {
                "median_s": round(statistics.median(times), 3),
                "min_s": min(times),
                "max_s": max(times),
                "phases_median_s": {
                    p: round(statistics.median(r["phases"][p] for r in rows), 3) for p in PHASES
                },
                "steps_cached": statistics.median(r["steps_cached"] for r in rows),
                "steps": statistics.median(r["steps"] for r in rows),
            }
    return out


def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    try:
        client = image_builder.docker_client()
        client.ping()
        engine = client.version()
        driver = client.info().get("Driver")
    except (ClipperException, docker.errors.DockerException) as e:
        raise BenchError(f"no Docker engine answers: {e}") from e
    base_image = default_python_base_image()
    index = workdir / "index"
    os.environ["PIP_NO_INDEX"] = "1"  # the builder's pip wheel: local packages only
    os.environ["PIP_FIND_LINKS"] = str(index)
    probe = Probe()
    real_wheels, real_tar = image_builder._download_wheels, docker.utils.tar
    real_labels = image_builder.dockerfile_labels
    if args.engine_labels:  # the builder then passes every label to the engine's option
        image_builder.dockerfile_labels = lambda labels: None
    image_builder._download_wheels = probe.wrap_wheels(real_wheels)  # type: ignore[assignment]
    docker.utils.tar = probe.wrap_tar(real_tar)
    # on the class: the builder may use a client of its own (``docker.from_env()``), not ``client``
    real_build = docker.APIClient.build
    docker.APIClient.build = probe.wrap_build(real_build)  # type: ignore[method-assign]
    builder = Builder(client, probe, base_image)
    token = uuid.uuid4().hex[:6]
    reps = []
    try:
        for rep in range(args.repeat):
            reps.append(one_repetition(builder, index, token, rep, int(args.wheel_mib * MiB)))
    finally:
        image_builder._download_wheels = real_wheels  # type: ignore[assignment]
        docker.utils.tar = real_tar
        image_builder.dockerfile_labels = real_labels
        docker.APIClient.build = real_build  # type: ignore[method-assign]
        builder.remove_all()
    return {
        "base_image": base_image,
        "engine": {
            "version": engine.get("Version"),
            "api": engine.get("ApiVersion"),
            "storage_driver": driver,
            "builder": "classic (docker SDK /build)",
        },
        "repeat": args.repeat,
        "wheel_mib": args.wheel_mib,
        "labels": "engine build option" if args.engine_labels else "one Dockerfile LABEL",
        "target_s": TARGET_S,
        "summary": summarize(reps),
        "repetitions": reps,
    }


# -- plot ------------------------------------------------------------------------------------------------


def plot(result: dict[str, Any], stem: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = result["summary"]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(13, 4.4))
    width = 0.38
    xs = range(len(CASES))
    for i, variant in enumerate(VARIANTS):
        label = (
            "no requirements"
            if variant == "no_requirements"
            else f"1 requirement ({result['wheel_mib']:g} MiB)"
        )
        med = [summary[variant][c]["median_s"] for c in CASES]
        lo = [m - summary[variant][c]["min_s"] for m, c in zip(med, CASES, strict=True)]
        hi = [summary[variant][c]["max_s"] - m for m, c in zip(med, CASES, strict=True)]
        a1.bar([x + (i - 0.5) * width for x in xs], med, width, yerr=[lo, hi], capsize=3, label=label)
    a1.axhline(TARGET_S, ls="--", color="grey", label=f"target, function changed: {TARGET_S:g} s")
    a1.set_xticks(list(xs), [c.replace("_", "\n") for c in CASES])
    a1.set(
        ylabel="seconds (median, min-max)",
        title=f"model image build, {result['repeat']} repetitions"
        + (", labels: engine option" if result.get("labels") == "engine build option" else ""),
    )
    a1.legend(fontsize=8)

    bars = [(v, c) for v in VARIANTS for c in CASES]
    bottom = [0.0] * len(bars)
    for phase in PHASES:
        vals = [summary[v][c]["phases_median_s"][phase] for v, c in bars]
        a2.bar(range(len(bars)), vals, 0.7, bottom=bottom, label=PHASE_LABELS[phase])
        bottom = [b + v for b, v in zip(bottom, vals, strict=True)]
    a2.set_xticks(range(len(bars)), [f"{c.replace('_', chr(10))}\n[{'none' if v == VARIANTS[0] else 'req'}]"
                                     for v, c in bars], fontsize=7)  # fmt: skip
    a2.set(ylabel="seconds (median of each phase)", title="where the time goes")
    a2.legend(fontsize=7, ncol=2)
    path = stem.with_suffix(".png")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# -- main ------------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5, help="repetitions of every case (medians are reported)")
    ap.add_argument("--wheel-mib", type=float, default=20.0, help="size of the requirement variant's package")
    ap.add_argument(
        "--smoke", action="store_true", help="1 repetition, a 1 MiB package (a check, not a measurement)"
    )
    ap.add_argument("--out", type=Path, help="the JSON file (default bench/results/image-build-<time>.json)")
    ap.add_argument("--plot", action="store_true", help="a PNG also with --smoke")
    ap.add_argument(
        "--engine-labels",
        action="store_true",
        help="labels through the engine's build option (one step each), as before the one-LABEL builder",
    )
    ap.add_argument("--replot", type=Path, metavar="JSON", help="only draw the PNG of an earlier result")
    args = ap.parse_args(argv)
    if args.repeat < 1 or args.wheel_mib <= 0:
        ap.error("--repeat must be >= 1 and --wheel-mib > 0")
    if args.smoke:
        args.repeat, args.wheel_mib = 1, 1.0
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.replot:
        say(f"plot: {plot(json.loads(args.replot.read_text())['image_build'], args.replot.with_suffix(''))}")
        return 0
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
    result: dict[str, Any] = {"command": " ".join(sys.argv), "started": stamp, "machine": machine_info(),
                              "load_avg_start": os.getloadavg()}  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="clipper-bench-image-build-") as tmp:
        out = args.out or (Path(tmp) if args.smoke else RESULTS) / f"image-build-{stamp}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        try:
            result["image_build"] = run(args, Path(tmp))
        except BenchError as e:
            say(f"FAILED: {e}")
            result["error"] = str(e)[-3000:]
        result["load_avg_end"] = os.getloadavg()
        if "image_build" in result and (not args.smoke or args.plot):
            result["plot"] = str(plot(result["image_build"], out.with_suffix("")))
        out.write_text(json.dumps(result, indent=1))
        say(f"results: {out}")
        if "image_build" in result:
            s = result["image_build"]["summary"]
            say("median build s     " + "  ".join(f"{c:>17}" for c in CASES))
            for v in VARIANTS:
                say(f"{v:18} " + "  ".join(f"{s[v][c]['median_s']:17.2f}" for c in CASES))
    return 0 if "image_build" in result else 1


if __name__ == "__main__":
    sys.exit(main())
