"""Bad input against live frontends (real processes): each case gets the expected 4xx status and a
message naming the problem, never a 5xx, a hang or a dead process. Plus oversized bodies and headers,
slow-loris clients and hundreds of idle connections, which must not block anyone else."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest
import requests

from tests.integration.cluster_fixtures import Cluster, make_model_dir

pytestmark = pytest.mark.slow

BODY_LIMIT = 1_000_000
HEADER_TIMEOUT_S = 2  # --timeout_request: slow-loris clients are cut off after this
BODY_TIMEOUT_S = 3  # --timeout_content


def echo_sum(xs):
    return [repr(float(sum(x))) for x in xs]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    root: Path = tmp_path_factory.mktemp("bad-input")
    c = Cluster(root, f"sqlite:///{root}/config.db")
    try:
        c.start_mgmt()
        c.start_query_frontend(
            "--max-body-bytes", str(BODY_LIMIT),
            "--timeout_request", str(HEADER_TIMEOUT_S),
            "--timeout_content", str(BODY_TIMEOUT_S),
        )  # fmt: skip
        for app, itype in (("a", "doubles"), ("i", "integers"), ("s", "strings"), ("b", "bytes")):
            c.add_app(app, itype, 5_000_000)
            c.add_model(f"m{app}", "1", itype)
            c.link(app, f"m{app}")
        c.start_container(make_model_dir(root, "ma", echo_sum), "ma", "1", "doubles")
        c.wait_serving("a", {"input": [1.0]})
        yield c
    except BaseException:
        print(c.log_tail())
        raise
    finally:
        c.close()


def deep(n: int) -> bytes:
    return b"[" * n + b"]" * n


# (case, app, body, status, text the error's cause must contain)
PREDICT_CASES = [
    ("truncated JSON", "a", b'{"input": [1.0,', 400, "Unexpected end of data"),
    ("empty body", "a", b"", 400, "zero-length, empty document"),
    ("not an object", "a", b"[1.0]", 400, "Can only get key-value pair from an object"),
    ("no input key", "a", b'{"foo": 1}', 400, "does not have required keys input or input_batch"),
    ("string for doubles", "a", b'{"input": "abc"}', 400, "expected type Arraybut found type String"),
    ("integers for doubles", "a", b'{"input": [1, 2]}', 400, "Array input of type Number is not of type double"),
    ("nested array for doubles", "a", b'{"input": [[1.0]]}', 400, "Array input of type Array is not of type double"),
    ("float for integers", "i", b'{"input": [3.0]}', 400, "Array input of type Number is not of type int"),
    ("array for strings", "s", b'{"input": ["a"]}', 400, "expected type Stringbut found type Array"),
    ("version as a number", "a", b'{"input": [1.0], "version": 1}', 400, "JSON key version expected type String"),
    ("batch of non-arrays", "a", b'{"input_batch": [1.0, 2.0]}', 400, "is not of type array"),
    ("NaN", "a", b'{"input": [NaN]}', 400, "JSON parse error"),
    ("Infinity", "a", b'{"input": [Infinity]}', 400, "JSON parse error"),
    ("-Infinity", "a", b'{"input": [-Infinity]}', 400, "JSON parse error"),
    ("double overflowing to infinity", "a", b'{"input": [1e400]}', 400, "Number is infinity"),
    ("integer beyond 32 bits", "i", b'{"input": [3000000000]}', 400, "is not of type int"),
    ("integer beyond 64 bits", "i", b'{"input": [123456789012345678901234567890]}', 400, "is not of type int"),
    ("deeply nested input", "a", b'{"input": ' + deep(100_000) + b"}", 400, "Depth limit exceeded"),
    ("deeply nested batch", "a", b'{"input_batch": ' + deep(5_000) + b"}", 400, "Depth limit exceeded"),
    ("empty input", "a", b'{"input": []}', 400, "Empty input of type doubles is not allowed"),
    ("trailing bytes after a NUL", "a", b'{"input": [1.0]}\x00junk', 400, "Unexpected content after document"),
    ("invalid UTF-8", "s", b'{"input": "\xff\xfe"}', 400, "not valid UTF-8"),
]  # fmt: skip


@pytest.mark.parametrize("case, app, body, status, cause", PREDICT_CASES, ids=[c[0] for c in PREDICT_CASES])
def test_bad_predict_bodies(cluster, case, app, body, status, cause):
    r = cluster.predict(app, body)
    assert r.status_code == status, r.text[:300]
    doc = r.json()
    assert doc["error"] == "Json error"
    assert cause in doc["cause"], doc["cause"][:300]


def test_empty_batch_is_an_empty_answer(cluster):
    r = cluster.predict("a", b'{"input_batch": []}')
    assert r.status_code == 200 and r.json() == {"batch_predictions": []}


MGMT_CASES = [
    ("truncated JSON", b"{", "JSON parse error"),
    ("not an object", b"[]", "Can only get key-value pair from an object"),
    ("wrong type", b'{"name": 1}', "JSON key name expected type Stringbut found type Number"),
    ("NaN", b'{"name":"n","input_type":"doubles","default_output":"0","latency_slo_micros":NaN}', "JSON parse error"),
    ("huge number", b'{"name":"n","input_type":"doubles","default_output":"0","latency_slo_micros":99999999999999999999999}', "is not of type int"),
    ("deeply nested", deep(100_000), "JSON parse error"),
]  # fmt: skip


@pytest.mark.parametrize("case, body, cause", MGMT_CASES, ids=[c[0] for c in MGMT_CASES])
def test_bad_admin_bodies(cluster, case, body, cause):
    r = cluster.http.post(f"{cluster.admin}/add_app", data=body, timeout=30)
    assert r.status_code == 400, r.text[:300]
    assert cause in r.text
    assert "n" not in cluster.admin_call("get_all_applications", {"verbose": False}).json()


def test_ten_megabyte_bodies(cluster):
    ten_mb = b'{"input": [' + b"1.0," * 2_500_000 + b"1.0]}"
    r = cluster.predict("a", ten_mb)
    assert r.status_code == 413
    assert r.json() == {
        "error": "Payload Too Large",
        "cause": f"request body exceeds the limit of {BODY_LIMIT} bytes",
    }
    # The management frontend keeps its default limit (16 MiB): 10 MB is read, then judged as JSON.
    r = cluster.http.post(
        f"{cluster.admin}/add_app", data=b'{"name": ' + b'"x"' * 3_500_000 + b"}", timeout=60
    )
    assert r.status_code == 400 and "JSON parse error" in r.text
    assert cluster.predict("a", {"input": [2.0, 3.0]}).json()["output"] == 5.0


def test_oversized_headers_are_431(cluster):
    r = cluster.http.get(f"{cluster.url}/health", headers={"X-Big": "y" * 100_000}, timeout=10)
    assert r.status_code == 431
    assert r.json()["cause"] == "request headers are too large (limit 65536 bytes)"


def _read_all(sock: socket.socket) -> bytes:
    chunks = []
    while True:
        data = sock.recv(65536)
        if not data:
            return b"".join(chunks)
        chunks.append(data)


def test_slow_loris_clients_are_cut_off_without_blocking_others(cluster):
    slow: list[socket.socket] = []
    try:
        for k in range(40):
            s = socket.create_connection(("127.0.0.1", cluster.http_port), timeout=5 * HEADER_TIMEOUT_S + 10)
            if k % 2:  # headers that never end
                s.sendall(b"POST /a/predict HTTP/1.1\r\nHost: x\r\nContent-Type: app")
            else:  # a body that never arrives
                s.sendall(b'POST /a/predict HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"input"')
            slow.append(s)
        # Everyone else is served meanwhile.
        for i in range(30):
            assert cluster.predict("a", {"input": [float(i), 0.5]}, timeout=10).json()["output"] == i + 0.5
        # Each slow client gets a 408 and is disconnected (no timed assertion: recv waits for EOF).
        for s in slow:
            reply = _read_all(s)
            assert reply.startswith(b"HTTP/1.1 408 Request Timeout"), reply[:100]
            assert b"the request was not received in time" in reply
    finally:
        for s in slow:
            s.close()
    assert cluster.http.get(f"{cluster.url}/health", timeout=5).status_code == 200


def test_five_hundred_idle_connections_do_not_block_anyone(cluster):
    idle: list[socket.socket] = []
    try:
        for port in (cluster.http_port, cluster.mgmt_port):
            for _ in range(250):
                idle.append(socket.create_connection(("127.0.0.1", port), timeout=10))
        errors: list[str] = []

        def client(k: int) -> None:
            for i in range(10):
                r = cluster.predict("a", {"input": [float(k), float(i)]}, timeout=10)
                if r.status_code != 200 or r.json()["output"] != k + i:
                    errors.append(r.text)

        threads = [threading.Thread(target=client, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors
        assert cluster.admin_call("get_all_applications", {"verbose": False}).json()
        assert cluster.http.get(f"{cluster.url}/health", timeout=5).status_code == 200
    finally:
        for s in idle:
            s.close()
    assert cluster.qf is not None and cluster.qf.poll() is None


def _batch(n: int) -> bytes:
    return b'{"input_batch": [' + b",".join(b"[%d.0, 0.5]" % i for i in range(n)) + b"]}"


def test_batch_longer_than_max_batch_inputs_is_413(cluster):
    r = cluster.predict("a", _batch(10_001))
    assert r.status_code == 413, r.text[:300]
    assert r.json() == {
        "error": "Payload Too Large",
        "cause": "input_batch has 10001 inputs, more than the limit of 10000 per request "
        "(query frontend flag --max-batch-inputs): split it into smaller requests",
    }


def test_health_answers_while_a_max_size_batch_is_processed(cluster):
    """A 10,000-input batch is parsed and queued a chunk per event-loop turn: /health stays quick."""
    result: dict = {}

    def big() -> None:
        result["r"] = cluster.predict("a", _batch(10_000), timeout=60)

    t = threading.Thread(target=big)
    health = requests.Session()
    worst = 0.0
    t.start()
    while t.is_alive():
        start = time.monotonic()
        assert health.get(f"{cluster.url}/health", timeout=10).status_code == 200
        worst = max(worst, time.monotonic() - start)
    t.join()
    assert worst < 2.0  # generous: a stall of the loop by the whole batch would show here
    r = result["r"]
    assert r.status_code == 200, r.text[:300]
    predictions = r.json()["batch_predictions"]
    assert len(predictions) == 10_000
    answered = {i: p["output"] for i, p in enumerate(predictions) if not p["default"]}
    assert answered  # the model answered (the rest, if any, got the default at the objective)
    assert all(output == i + 0.5 for i, output in answered.items())


@pytest.mark.parametrize("port_attr", ["http_port", "mgmt_port"])
def test_head_health_has_headers_and_no_body(cluster, port_attr):
    port = getattr(cluster, port_attr)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(
            b"HEAD /health HTTP/1.1\r\nHost: x\r\n\r\nGET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        out = _read_all(s)
    head, _, rest = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK")
    assert b"Content-Length: 15" in head  # len(b'{"status":"ok"}')
    assert rest.startswith(b"HTTP/1.1 200 OK")  # no body between the two responses
    assert rest.endswith(b'\r\n\r\n{"status":"ok"}')


def _rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_huge_url_and_header_are_refused_at_once_in_bounded_memory(cluster):
    """50 MiB of URL, then of one header: 414 / 431 as soon as the limit is passed, the connection
    closed long before the rest is sent, /health answered meanwhile, the frontend's memory flat."""
    assert cluster.qf is not None
    rss_before = _rss_bytes(cluster.qf.pid)
    for head, status in (
        (b"GET /", b"414"),
        (b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ", b"431"),
    ):
        s = socket.create_connection(("127.0.0.1", cluster.http_port), timeout=10)
        sent = [0]

        def stream(s: socket.socket = s, head: bytes = head, sent: list[int] = sent) -> None:
            chunk = b"u" * 65536
            try:
                s.sendall(head)
                for _ in range(800):  # 50 MiB
                    s.sendall(chunk)
                    sent[0] += len(chunk)
            except OSError:  # closed by the server
                pass

        t = threading.Thread(target=stream)
        t.start()
        try:
            reply = s.recv(1000)
            assert reply.startswith(b"HTTP/1.1 " + status), reply[:100]
            assert cluster.http.get(f"{cluster.url}/health", timeout=5).status_code == 200
            t.join(30)
            assert not t.is_alive() and sent[0] < 800 * 65536
        finally:
            s.close()
    assert _rss_bytes(cluster.qf.pid) - rss_before < 32 * 1024 * 1024
