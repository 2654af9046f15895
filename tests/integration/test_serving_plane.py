"""The serving plane end to end with real processes (issue 2): management frontend + query frontend +
closure containers (``python -m clipper.container``) + the independent spec container, once over a
SQLite store and once over a real redis-server."""

from __future__ import annotations

import base64
import signal
import threading
import time
from pathlib import Path

import pytest

from .cluster_fixtures import Cluster, make_model_dir, redis_server, wait_for

SLO_EXPLANATION = "Failed to retrieve a prediction response within the specified latency SLO"
NO_MODEL_EXPLANATION = "No connected models found for query"


def make_sum_model(calls_path: str):
    """Sum of a doubles input. Appends the batch size to ``calls_path`` per call; an input whose first
    element is negative sleeps that many seconds (a slow model); a tiny sleep lets batches form.
    An input starting with -999 hangs for 6 s the one replica that manages to remove the
    ``hang-once`` file next to ``calls_path`` (a hung replica; the retry on the other one answers)."""
    marker = calls_path + ".hang-once"

    def predict(xs):
        import os as _os
        import time as _t

        with open(calls_path, "a") as f:
            f.write(f"{len(xs)}\n")
        out = []
        for x in xs:
            if x[0] == -999:
                try:
                    _os.remove(marker)
                    _t.sleep(6)
                except FileNotFoundError:
                    pass
            elif x[0] < 0:
                _t.sleep(-float(x[0]))
            out.append(repr(float(sum(x))))
        _t.sleep(0.002)
        return out

    return predict


def make_typed_model(kind: str):
    def predict(xs):
        if kind == "strings":
            texts = [x.decode() if isinstance(x, bytes) else x for x in xs]
            return ['{"upper": "' + t.upper() + '"}' for t in texts]
        if kind == "bytes":
            return [str(len(bytes(x))) for x in xs]
        return [repr(sum(x.tolist())) for x in xs]

    return predict


TYPED = {
    # app/model name: (input type, request body, expected output)
    "ints": ("integers", {"input": [1, 2, 3]}, 6),
    "floats": ("floats", {"input": [1.5, 2.25]}, 3.75),
    "strs": ("strings", {"input": "hello"}, {"upper": "HELLO"}),
    "bytes": ("bytes", {"input": base64.b64encode(b"\x00\x01\x02\x03\x04").decode()}, 5),
}


@pytest.fixture(scope="module", params=["sqlite", "redis"])
def cluster(request, tmp_path_factory):
    root: Path = tmp_path_factory.mktemp(f"serving-{request.param}")
    with redis_server(root) if request.param == "redis" else _nullctx(f"sqlite:///{root}/config.db") as url:
        c = Cluster(root, url)
        try:
            c.start_mgmt()
            c.start_query_frontend("--max-body-bytes", "65536")
            calls = root / "calls.txt"
            calls.touch()
            c.calls = calls
            c.add_model("m", "1", "doubles")
            for app, slo in (("a", 5_000_000), ("tight", 100_000)):
                c.add_app(app, "doubles", slo)
                c.link(app, "m")
            c.add_app("orphan", "doubles", 1_000_000)
            c.add_model("nomodel", "1", "doubles")
            c.link("orphan", "nomodel")
            mdir = make_model_dir(root, "m", make_sum_model(str(calls)))
            c.m_replicas = [c.start_container(mdir, "m", "1", "doubles") for _ in range(2)]
            for name, (itype, _, _) in TYPED.items():
                c.add_app(name, itype, 5_000_000, default_output="DEFAULT")
                c.add_model(name, "1", itype)
                c.link(name, name)
                c.start_container(make_model_dir(root, name, make_typed_model(itype)), name, "1", itype)
            c.wait_serving("a", {"input": [1.0]})
            wait_for(
                lambda: len([x for x in c.containers() if x.startswith("m:1:")]) == 2, 30, "two replicas of m"
            )
            yield c
        except BaseException:
            print(c.log_tail())
            raise
        finally:
            c.close()


class _nullctx:
    def __init__(self, v):
        self.v = v

    def __enter__(self):
        return self.v

    def __exit__(self, *a):
        return False


def calls_seen(c: Cluster) -> list[int]:
    return [int(x) for x in c.calls.read_text().split()]


def test_every_input_type(cluster):
    r = cluster.predict("a", {"input": [1.5, 2.0, 0.25]})
    assert r.status_code == 200
    body = r.json()
    assert body["output"] == 3.75 and body["default"] is False and isinstance(body["query_id"], int)
    assert list(body) == ["query_id", "output", "default"]
    for name, (_, request, expected) in TYPED.items():
        got = cluster.wait_serving(name, request)
        assert got["output"] == expected, name


def test_batch_shapes_and_versions(cluster):
    r = cluster.predict("a", {"input_batch": [[1.0], [2.0, 3.0]]}).json()
    assert [p["output"] for p in r["batch_predictions"]] == [1.0, 5.0]
    assert r["batch_predictions"][1]["query_id"] == r["batch_predictions"][0]["query_id"] + 1
    one = cluster.predict("a", {"input_batch": [[4.0]]}).json()
    assert one["output"] == 4.0 and "batch_predictions" not in one
    assert cluster.predict("a", {"input_batch": []}).json() == {"batch_predictions": []}
    assert cluster.predict("a", {"input": [2.0], "version": "1"}).json()["output"] == 2.0
    r = cluster.predict("a", {"input": [2.0], "version": "9"})
    assert r.status_code == 400
    assert r.json() == {
        "error": "Query processing error",
        "cause": "Requested version: 9 does not exist for model: m",
    }


def test_http_errors(cluster):
    r = cluster.predict("a", {"input": [1, 2]})
    assert r.status_code == 400 and r.json()["error"] == "Json error"
    assert "Array input of type Number is not of type double" in r.json()["cause"]
    for bad in (b"{", b'{"input": [NaN]}', b'{"input": []}', b"[1.0]"):
        r = cluster.predict("a", bad)
        assert r.status_code == 400, bad
        assert set(r.json()) == {"error", "cause"}
    r = cluster.predict("nosuchapp", {"input": [1.0]})
    assert r.status_code == 404 and set(r.json()) == {"error", "cause"}
    r = cluster.http.get(f"{cluster.url}/a/predict", timeout=5)
    assert r.status_code == 405
    r = cluster.predict("a", b'{"input": [' + b"1.0," * 20000 + b"1.0]}")
    assert r.status_code == 413
    assert cluster.http.get(f"{cluster.url}/health", timeout=5).status_code == 200
    upd = cluster.http.post(
        f"{cluster.url}/a/update", json={"uid": 0, "input": [1.0], "label": 1.0}, timeout=5
    )
    assert upd.status_code == 200 and upd.text == "Feedback received? 1"


def test_metrics_json_and_prometheus(cluster):
    m = cluster.metrics()
    assert m["app:a:num_predictions"]["count"].isdigit()
    assert "model:m:1:batch_size" in m
    text = cluster.http.get(f"{cluster.url}/prometheus", timeout=5).text
    assert 'clipper_app_num_predictions_total{app="a"}' in text
    scrape = cluster.http.get(
        f"{cluster.url}/metrics", headers={"Accept": "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"}, timeout=5
    )
    assert scrape.headers["content-type"].startswith("text/plain") and "# TYPE" in scrape.text
    assert cluster.http.get(f"{cluster.url}/openapi.json", timeout=5).json()["openapi"].startswith("3.")


def test_batches_form_under_concurrent_load(cluster):
    before = len(calls_seen(cluster))
    errors: list[object] = []

    def client(k: int) -> None:
        for i in range(25):
            r = cluster.predict("a", {"input": [float(k), float(i), 0.5]})
            if r.status_code != 200 or r.json()["default"]:
                errors.append(r.text)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    sizes = calls_seen(cluster)[before:]
    assert sum(sizes) == 16 * 25  # no padding with duplicate inputs, nothing lost
    assert max(sizes) > 1, sizes
    assert float(cluster.metrics()["model:m:1:batch_size"]["max"]) > 1


def test_cache_answers_a_repeated_input_without_the_model(cluster):
    body = {"input": [123.25, 0.5]}
    first = cluster.predict("a", body).json()
    assert first["output"] == 123.75 and not first["default"]
    n = sum(calls_seen(cluster))
    again = cluster.predict("a", body).json()
    assert again["output"] == 123.75 and not again["default"]
    assert again["query_id"] > first["query_id"]
    assert sum(calls_seen(cluster)) == n


def test_default_when_no_replica_is_connected(cluster):
    r = cluster.predict("orphan", {"input": [1.0]}).json()
    assert r == {
        "query_id": r["query_id"],
        "output": -1.0,
        "default": True,
        "default_explanation": NO_MODEL_EXPLANATION,
    }


def test_default_when_the_model_is_slower_than_the_objective(cluster):
    r = cluster.predict("tight", {"input": [-0.5, 1.0]}).json()
    assert r["default"] is True and r["output"] == -1.0
    assert r["default_explanation"] == SLO_EXPLANATION
    cluster.wait_serving("a", {"input": [7.0]})


def test_configuration_changes_reach_the_frontend(cluster):
    cluster.add_app("late", "doubles", 5_000_000)
    cluster.link("late", "m")
    assert cluster.wait_serving("late", {"input": [2.0]}, timeout=10)["output"] == 2.0
    cluster.admin_call("delete_app", {"name": "late"})
    wait_for(lambda: cluster.predict("late", {"input": [2.0]}).status_code == 404, 10, "route removed")
    # A new version without replicas becomes current at once: defaults until switched back.
    cluster.add_model("m", "2", "doubles")
    r = wait_for(
        lambda: (x := cluster.predict("a", {"input": [9.5]}).json())["default"] and x, 10, "version 2"
    )
    assert r["default_explanation"] == NO_MODEL_EXPLANATION
    cluster.admin_call("set_model_version", {"model_name": "m", "model_version": "1"})
    assert cluster.wait_serving("a", {"input": [9.5]}, timeout=10)["output"] == 9.5
    # Deleting version 2 purges it from the store (done by the query frontend).
    cluster.admin_call("delete_versioned_model", {"model_name": "m", "model_version": "2"})
    wait_for(
        lambda: "m:2" not in cluster.admin_call("get_all_models", {"verbose": False}).json(),
        10,
        "purge of m:2",
    )


def test_killing_a_replica_mid_load_loses_no_request(cluster):
    sent = [0]
    answers: list[tuple[int, bool]] = []
    stop = threading.Event()
    lock = threading.Lock()

    def client(k: int) -> None:
        i = 0
        while not stop.is_set():
            i += 1
            with lock:
                sent[0] += 1
            r = cluster.predict("a", {"input": [float(k), float(i), 0.125]}, timeout=30)
            with lock:
                answers.append((r.status_code, r.json().get("default") if r.status_code == 200 else None))

    threads = [threading.Thread(target=client, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    victim = cluster.m_replicas.pop(0)
    victim.send_signal(signal.SIGKILL)
    victim.wait(5)
    # Until the frontend notices (~3 s) the dead replica's batch is retried on the other one.
    wait_for(
        lambda: len([x for x in cluster.containers() if x.startswith("m:1:")]) == 1,
        15,
        "dead replica removed",
    )
    time.sleep(0.5)
    stop.set()
    for t in threads:
        t.join(40)
    assert not any(t.is_alive() for t in threads)
    assert len(answers) == sent[0] > 0
    assert all(code == 200 for code, _ in answers), [a for a in answers if a[0] != 200][:5]
    assert sum(1 for _, d in answers if d) == 0  # the objective (5 s) leaves room for the retry
    # Bring the cluster back to two replicas.
    mdir = make_model_dir(cluster.root, "m", make_sum_model(str(cluster.calls)))
    cluster.m_replicas.append(cluster.start_container(mdir, "m", "1", "doubles"))
    wait_for(
        lambda: len([x for x in cluster.containers() if x.startswith("m:1:")]) == 2, 30, "replacement replica"
    )


def m_replicas(cluster) -> int:
    return len([x for x in cluster.containers() if x.startswith("m:1:")])


def test_hung_replica_is_detected_and_its_batch_retried(cluster):
    marker = Path(str(cluster.calls) + ".hang-once")
    marker.touch()
    failures_before = int(cluster.metrics()["model:m:1:replica_failures"]["count"])
    # The objective is 5 s and a hung batch is detected after 4 s: a model output (not the default)
    # proves the batch was taken from the hung replica and retried on the other one in time.
    r = cluster.predict("a", {"input": [-999.0, 1.0]}, timeout=30).json()
    assert not marker.exists()
    assert r["default"] is False and r["output"] == -998.0
    m = cluster.metrics()
    assert int(m["model:m:1:replica_failures"]["count"]) > failures_before
    assert int(m["model:m:1:retried_tasks"]["count"]) >= 1
    # The suspended replica keeps its session; once it answers (late) it rejoins the rotation.
    wait_for(lambda: m_replicas(cluster) == 2, 40, "the hung replica back in rotation")
    cluster.wait_serving("a", {"input": [5.0]})


def test_two_frontends_share_one_store_without_cross_wiring(cluster):
    from clipper.config_store import open_store

    qf2, http2, rpc2 = cluster.start_another_query_frontend("--frontend-id", "second")
    url2 = f"http://127.0.0.1:{http2}"
    wait_for(lambda: cluster.http.get(f"{url2}/health", timeout=1).ok, 20, "second query frontend")
    # Same configuration, but no replica is connected to the second frontend.
    r = cluster.http.post(f"{url2}/a/predict", json={"input": [1.0]}, timeout=10).json()
    assert r["default"] is True and r["default_explanation"] == NO_MODEL_EXPLANATION
    mdir = make_model_dir(cluster.root, "m", make_sum_model(str(cluster.calls)))
    extra = cluster.start_container(mdir, "m", "1", "doubles", rpc_port=rpc2)

    def served_by_second():
        x = cluster.http.post(f"{url2}/a/predict", json={"input": [6.0]}, timeout=10).json()
        return not x["default"] and x

    assert wait_for(served_by_second, 30, "second frontend serving")["output"] == 6.0
    store = open_store(cluster.store_url)
    try:
        # Replica ids come from the store, so both frontends' rows coexist and never overwrite
        # each other, and stopping one frontend removes only its own rows.
        wait_for(
            lambda: len([c for c in store.list_containers() if c.frontend_id == "second"]) == 1,
            30,
            "the second frontend's container row",
        )

        # A row by identity: its health flag may change meanwhile (a batch that is late on a busy
        # machine suspends the replica until it answers), which is not what this test is about.
        def first_rows_now() -> set[tuple[str, str, int, str, int]]:
            return {
                (c.model_name, c.model_version, c.replica_id, c.frontend_id, c.zmq_connection_id)
                for c in store.list_containers()
                if c.frontend_id != "second"
            }

        first_rows = first_rows_now()
        assert first_rows, "the first frontend's rows must survive the second frontend's registration"
        rows = store.list_containers()
        assert len({(c.model_name, c.model_version, c.replica_id) for c in rows}) == len(rows)
        qf2.send_signal(signal.SIGTERM)
        qf2.wait(10)
        wait_for(
            lambda: not [c for c in store.list_containers() if c.frontend_id == "second"],
            10,
            "rows of qf2 gone",
        )
        assert first_rows_now() == first_rows
    finally:
        store.close()
        extra.kill()
        extra.wait()
    assert cluster.wait_serving("a", {"input": [8.0]})["output"] == 8.0


def test_restarting_the_query_frontend_keeps_the_configuration(cluster):
    cluster.stop_query_frontend()
    cluster.start_query_frontend("--max-body-bytes", "65536")
    # Containers notice the frontend is gone and open a new session; the routes come from the store.
    assert cluster.predict("a", {"input": [1.0]}).status_code == 200
    assert cluster.wait_serving("a", {"input": [3.0, 4.0]}, timeout=30)["output"] == 7.0
    assert cluster.wait_serving("strs", {"input": "x"}, timeout=30)["output"] == {"upper": "X"}
