"""Start-up time of a PySpark model container, SparkSession creation included.

Trains a tiny pyspark.ml LogisticRegression, writes its model directory with the PySpark deployer
(``save_pyspark_function``: closure + ``model.save`` + class), then starts ``python -m
clipper.container`` on it ``--runs`` times per variant and times, from the spawn:

* ``ready``: the container has loaded the model (Python imports, JVM + SparkSession, model load)
  and written its ready file, i.e. it is about to connect to the query frontend;
* the container's own split (its log line): SparkSession creation, model load, warm-up job.

Variants: ``default`` (as deployed: the driver JVM runs with ``-XX:TieredStopAtLevel=1
-XX:+UseSerialGC``), ``full-jit`` (the JVM's defaults, by clearing ``spark.driver.extraJavaOptions``
through ``CLIPPER_SPARK_CONF``), and a plain Python closure container for reference. With ``--deploy`` it also times the user-visible path on a local cluster:
``create_endpoint`` until it returns (replica connected) and then the first prediction over HTTP.

    python bench/pyspark_startup.py                 # 3 runs per variant
    python bench/pyspark_startup.py --runs 5 --deploy
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

FULL_JIT = "spark.driver.extraJavaOptions="
SPLIT = re.compile(r"SparkSession ([\d.]+) s, model load ([\d.]+) s, warm-up ([\d.]+) s")


def _train(spark):
    from pyspark.ml.classification import LogisticRegression
    from pyspark.ml.linalg import Vectors

    rows = [(float(i % 2), Vectors.dense([i % 2 + 0.1 * i, 1.0])) for i in range(12)]
    return LogisticRegression(maxIter=5).fit(spark.createDataFrame(rows, ["label", "features"]))


def _predict(spark, model, inputs):
    from pyspark.ml.linalg import Vectors

    frame = spark.createDataFrame([(Vectors.dense([float(v) for v in x]),) for x in inputs], ["features"])
    return [str(r.prediction) for r in model.transform(frame).select("prediction").collect()]


def local_spark():
    """A quiet one-core SparkSession for training the benchmark's model."""
    from pyspark.sql import SparkSession

    spark = (SparkSession.builder.master("local[1]").appName("bench").config("spark.ui.enabled", "false")
             .config("spark.driver.host", "127.0.0.1").config("spark.ui.showConsoleProgress", "false").getOrCreate())  # fmt: skip
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def _env(model_dir: Path, ready: Path, extra: dict[str, str]) -> dict[str, str]:
    from clipper.net import free_port

    return {
        **os.environ,
        "CLIPPER_MODEL_PATH": str(model_dir),
        "CLIPPER_MODEL_NAME": "bench",
        "CLIPPER_MODEL_VERSION": "1",
        "CLIPPER_IP": "127.0.0.1",
        "CLIPPER_PORT": str(free_port()),  # nobody listens: the container only has to get ready
        "CLIPPER_INPUT_TYPE": "doubles",
        "CLIPPER_READY_FILE": str(ready),
        **extra,
    }


def time_ready(
    model_dir: Path,
    extra: dict[str, str],
    timeout: float = 300.0,
    on_ready: Callable[[int], object] | None = None,
) -> tuple[float, str]:
    """Seconds from spawn to the ready file, and the container's log. ``on_ready(pid)`` runs once the
    container is ready, before it is stopped (e.g. to read its memory)."""
    with tempfile.TemporaryDirectory() as tmp:
        ready = Path(tmp) / "ready"
        log_path = Path(tmp) / "log"
        with log_path.open("wb") as log:
            t0 = time.perf_counter()
            proc = subprocess.Popen([sys.executable, "-m", "clipper.container"],
                                    env=_env(model_dir, ready, extra), stdout=log, stderr=log)  # fmt: skip
            try:
                while not ready.exists():
                    if proc.poll() is not None:
                        raise RuntimeError(
                            f"container exited {proc.returncode}:\n{log_path.read_text()[-2000:]}"
                        )
                    if time.perf_counter() - t0 > timeout:
                        raise RuntimeError(f"not ready after {timeout} s")
                    time.sleep(0.02)
                elapsed = time.perf_counter() - t0
                if on_ready is not None:
                    on_ready(proc.pid)
            finally:
                proc.terminate()
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        return elapsed, log_path.read_text()


def _summary(name: str, values: list[float]) -> str:
    if not values:
        return f"| {name} | - | - | - | - |"
    return (f"| {name} | {len(values)} | {statistics.median(values):.1f} s | {min(values):.1f} s "
            f"| {max(values):.1f} s |")  # fmt: skip


def bench_deploy(spark, model) -> tuple[float, float]:
    """create_endpoint on a fresh local cluster until it returns, then the first prediction."""
    import requests

    from clipper.net import free_port
    from clipper_admin import ClipperConnection, LocalContainerManager
    from clipper_admin.deployers.pyspark import create_endpoint

    home = tempfile.mkdtemp(prefix="clipper-bench-")
    cm = LocalContainerManager("bench-spark", clipper_query_port=free_port(), clipper_management_port=free_port(),
                               clipper_rpc_port=free_port(), state_dir=home)  # fmt: skip
    conn = ClipperConnection(cm)
    conn.start_clipper()
    try:
        t0 = time.perf_counter()
        create_endpoint(
            conn, "spark-app", "doubles", _predict, model, spark.sparkContext, slo_micros=30_000_000
        )
        deployed = time.perf_counter() - t0
        url = f"http://{conn.get_query_addr()}/spark-app/predict"
        t1 = time.perf_counter()
        while True:
            out = requests.post(url, json={"input": [1.0, 1.0]}, timeout=60).json()
            if not out.get("default"):
                break
            if time.perf_counter() - t1 > 120:
                raise RuntimeError(f"no prediction: {out}")
        return deployed, time.perf_counter() - t1
    finally:
        conn.stop_all()
        shutil.rmtree(home, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--deploy", action="store_true", help="also time create_endpoint on a local cluster")
    args = ap.parse_args()

    import cloudpickle

    from clipper_admin.deployers.pyspark import save_pyspark_function

    spark = local_spark()
    model = _train(spark)
    spark_dir = Path(save_pyspark_function("bench", _predict, model, spark.sparkContext))
    py_dir = Path(tempfile.mkdtemp(prefix="clipper-bench-py-"))
    (py_dir / "func.pkl").write_bytes(cloudpickle.dumps(lambda xs: [str(sum(x)) for x in xs]))
    load = os.getloadavg()[0]
    results: dict[str, list[float]] = {"pyspark default": [], "pyspark full-jit": [], "python closure": []}
    splits: dict[str, list[tuple[float, float, float]]] = {"pyspark default": [], "pyspark full-jit": []}
    try:
        for _ in range(args.runs):  # interleaved, so machine-load drift hits every variant alike
            for name, model_dir, extra in (
                ("pyspark default", spark_dir, {}),
                ("pyspark full-jit", spark_dir, {"CLIPPER_SPARK_CONF": FULL_JIT}),
                ("python closure", py_dir, {}),
            ):
                elapsed, log = time_ready(model_dir, extra)
                results[name].append(elapsed)
                if (m := SPLIT.search(log)) is not None:
                    splits[name].append((float(m.group(1)), float(m.group(2)), float(m.group(3))))
                print(f"{name}: ready in {elapsed:.1f} s", file=sys.stderr)
        deploy = bench_deploy(spark, model) if args.deploy else None
    finally:
        shutil.rmtree(spark_dir, ignore_errors=True)
        shutil.rmtree(py_dir, ignore_errors=True)
        spark.stop()

    print(f"\nload average at start {load:.1f}, {os.cpu_count()} CPUs, {args.runs} runs per variant\n")
    print("| container | runs | ready (median) | min | max |\n|---|---|---|---|---|")
    for name, values in results.items():
        print(_summary(name, values))
    for name, pairs in splits.items():
        if pairs:
            print(f"\n{name}: SparkSession {statistics.median(p[0] for p in pairs):.1f} s, "
                  f"model load {statistics.median(p[1] for p in pairs):.1f} s, "
                  f"warm-up {statistics.median(p[2] for p in pairs):.1f} s (medians)")  # fmt: skip
    if deploy is not None:
        print(f"\nlocal cluster: create_endpoint returned after {deploy[0]:.1f} s; "
              f"first prediction {deploy[1]:.1f} s later")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
