"""Traffic split, sticky keys, shadow traffic and Exp3/Exp4 selection end to end: management
frontend + query frontend + closure containers over a SQLite store and over a real redis-server, real
HTTP requests."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from .cluster_fixtures import Cluster, make_model_dir, redis_server, wait_for

N_SPLIT = 2000


def make_const_model(value: float):
    def predict(xs):
        return [repr(value) for _ in xs]

    return predict


def failing_model(xs):
    raise ValueError("this version always fails")


def make_echo_model(offset: float):
    def predict(xs):
        return [repr(float(x[0]) + offset) for x in xs]

    return predict


@pytest.fixture(scope="module", params=["sqlite", "redis"])
def cluster(request, tmp_path_factory):
    root: Path = tmp_path_factory.mktemp(f"traffic-{request.param}")
    with contextlib.ExitStack() as stack:
        url = f"sqlite:///{root}/config.db"
        if request.param == "redis":
            url = stack.enter_context(redis_server(root))
        yield from _cluster(root, url)


def _cluster(root: Path, url: str) -> Iterator[Cluster]:
    c = Cluster(root, url)
    try:
        c.start_mgmt()
        # no prediction cache: every request reaches a model (the split is measured on the models);
        # seeded choices: the distribution test cannot fail by the 1 % chance its interval leaves
        c.start_query_frontend("--prediction-cache-size", "0", "--traffic-seed", "17")
        for version, value in (("1", 1.0), ("2", 2.0), ("3", 1.0)):
            c.add_model("k", version, "doubles")
            c.start_container(
                make_model_dir(root, f"k{version}", make_const_model(value)), "k", version, "doubles"
            )
        for version, offset in (("good", 0.0), ("bad", 0.5)):
            c.add_model("e", version, "doubles")
            c.start_container(
                make_model_dir(root, f"e{version}", make_echo_model(offset)), "e", version, "doubles"
            )
        c.add_model("e", "raise", "doubles")
        c.start_container(make_model_dir(root, "eraise", failing_model), "e", "raise", "doubles")
        c.admin_call("set_model_version", {"model_name": "k", "model_version": "1"})
        c.add_app("plain", "doubles", 5_000_000)
        c.link("plain", "k")
        c.add_model("s", "1", "strings")
        wait_for(lambda: len(c.containers()) == 6, 30, "six replicas")
        yield c
    except BaseException:
        print(c.log_tail())
        raise
    finally:
        c.close()


def traffic(c: Cluster, body: dict) -> dict:
    return c.admin_call("set_app_traffic", body).json()


def report(c: Cluster, app: str) -> dict:
    return c.admin_call("get_app_traffic", {"name": app}).json()


def targets(*tv: tuple[str, str, float]) -> list[dict]:
    return [{"model_name": m, "model_version": v, "weight": w} for m, v, w in tv]


def test_plain_app_reports_its_one_implicit_target(cluster):
    r = report(cluster, "plain")
    assert r["configured"] is False
    assert r["targets"] == [{"model_name": "k", "model_version": "1", "weight": 1.0}]
    assert cluster.predict("plain", {"input": [0.0]}).json()["output"] == 1.0


def test_every_apps_configuration_in_one_request_is_each_apps_own(cluster):
    """get_all_app_traffic: what get_app_traffic says of each app's configuration, without stats."""
    cluster.add_app("listed", "doubles", 5_000_000)
    body = {
        "name": "listed",
        "targets": targets(("k", "1", 90), ("k", "2", 10)),
        "sticky_key": "user",
        "shadow": {"model_name": "k", "model_version": "3", "percent": 5.0},
    }
    traffic(cluster, body)
    every = cluster.admin_call("get_all_app_traffic", {}).json()
    assert every["plain"] is None  # a plain app: its linked model's current version
    listed = report(cluster, "listed")
    assert every["listed"] == {
        "targets": [{k: t[k] for k in ("model_name", "model_version", "weight")} for t in listed["targets"]],
        "sticky_key": "user",
        "shadow": {"model_name": "k", "model_version": "3", "percent": 5.0},
        "selection": None,
    }
    assert set(every) == set(cluster.admin_call("get_all_applications", {"verbose": False}).json())


def test_validation_errors_are_400_with_the_reason(cluster):
    cluster.add_app("val", "doubles", 1_000_000)
    cases = [
        ({"name": "nope", "targets": targets(("k", "1", 1))}, "does not exist"),
        ({"name": "val", "targets": targets(("zz", "1", 1))}, "model 'zz' does not exist"),
        ({"name": "val", "targets": targets(("k", "9", 1))}, "has no version '9'"),
        ({"name": "val", "targets": targets(("k", "1", -1))}, "weight must be >= 0"),
        ({"name": "val", "targets": targets(("k", "1", 0), ("k", "2", 0))}, "sum to more than 0"),
        ({"name": "val", "targets": targets(("s", "1", 1))}, "takes strings"),
        ({"name": "val", "targets": []}, "non-empty list"),
        (
            {
                "name": "val",
                "targets": targets(("k", "1", 1)),
                "shadow": {"model_name": "k", "model_version": "2", "percent": 0},
            },
            "percent must be in",
        ),
        (
            {"name": "val", "targets": targets(("k", "1", 1)), "selection": {"policy": "ucb"}},
            "policy must be one of",
        ),
    ]
    for body, text in cases:
        r = cluster.http.post(f"{cluster.admin}/set_app_traffic", json=body, timeout=10)
        assert r.status_code == 400, (body, r.text)
        assert text in r.text, (body, r.text)


def _count(c: Cluster, app: str, n: int, body: dict | None = None) -> dict[float, int]:
    seen: dict[float, int] = {}
    for i in range(n):
        r = c.predict(app, body or {"input": [float(i)]}).json()
        assert not r["default"], r
        seen[r["output"]] = seen.get(r["output"], 0) + 1
    return seen


def test_a_90_10_split_over_2000_requests_is_within_the_binomial_99_interval(cluster):
    cluster.add_app("split", "doubles", 5_000_000)
    traffic(cluster, {"name": "split", "targets": targets(("k", "1", 90), ("k", "2", 10))})
    wait_for(lambda: cluster.predict("split", {"input": [0.5]}).json()["output"] in (1.0, 2.0), 10, "split")
    seen = _count(cluster, "split", N_SPLIT)
    # binomial(2000, 0.1): mean 200, sd 13.4; 99 % two-sided: 200 +- 2.576 * 13.4 = [165, 235]
    assert 165 <= seen.get(2.0, 0) <= 235, seen

    def flushed() -> dict | None:
        """The report once the frontend's statistics row (written about once a second) holds every
        answered request: a row written during the last run of one target already holds the other's
        final count, so both are waited for."""
        r = report(cluster, "split")
        first, second = (t["stats"]["requests"] for t in r["targets"])
        return r if first >= seen.get(1.0, 0) and second >= seen.get(2.0, 0) else None

    stats = wait_for(flushed, 10, "stats flushed")
    assert stats["targets"][0]["stats"]["defaults"] == 0
    prom = cluster.http.get(f"{cluster.url}/metrics?format=prometheus", timeout=5).text
    assert 'clipper_target_requests_total{app="split",model="k",role="target",version="2"}' in prom or (
        'clipper_target_requests{app="split",model="k",role="target",version="2"}' in prom
    ), prom[:2000]


def test_sticky_keys_keep_their_target(cluster):
    cluster.add_app("sticky", "doubles", 5_000_000)
    traffic(
        cluster, {"name": "sticky", "targets": targets(("k", "1", 50), ("k", "2", 50)), "sticky_key": "user"}
    )
    wait_for(lambda: report(cluster, "sticky")["configured"], 5, "configured")
    wait_for(
        lambda: cluster.predict("sticky", {"input": [0.0], "user": "u"}).json()["output"] in (1.0, 2.0),
        10,
        "x",
    )
    answers = set()
    for u in range(20):
        outs = {
            cluster.predict("sticky", {"input": [float(i)], "user": f"user-{u}"}).json()["output"]
            for i in range(8)
        }
        assert len(outs) == 1, (u, outs)  # one key, one target
        answers |= outs
        # the header of that name works as well
        hdr = cluster.http.post(
            f"{cluster.url}/sticky/predict", json={"input": [1.0]}, headers={"user": f"user-{u}"}, timeout=10
        ).json()["output"]
        assert {hdr} == outs
    assert answers == {1.0, 2.0}  # 20 keys over a 50/50 split reach both


def test_shadow_never_changes_answers_and_reports_agreement(cluster):
    cluster.add_app("shadowed", "doubles", 5_000_000)
    traffic(
        cluster,
        {
            "name": "shadowed",
            "targets": targets(("k", "1", 1)),
            "shadow": {"model_name": "k", "model_version": "2", "percent": 100},
        },
    )
    wait_for(lambda: report(cluster, "shadowed")["configured"], 5, "configured")
    wait_for(lambda: cluster.predict("shadowed", {"input": [0.0]}).json()["output"] == 1.0, 10, "routed")
    assert _count(cluster, "shadowed", 50) == {1.0: 50}
    r = wait_for(
        lambda: (x := report(cluster, "shadowed"))["shadow"]["stats"]["compared"] >= 50 and x, 10, "compared"
    )
    assert r["shadow"]["stats"]["agreed"] == 0 and r["shadow"]["stats"]["agreement_rate"] == 0.0
    # k:3 answers what k:1 answers: full agreement (a new configuration counts afresh)
    traffic(
        cluster,
        {
            "name": "shadowed",
            "targets": targets(("k", "1", 1)),
            "shadow": {"model_name": "k", "model_version": "3", "percent": 100},
        },
    )
    # requests until the new configuration has compared 30 (earlier ones count for the old one)
    r = wait_for(
        lambda: (
            _count(cluster, "shadowed", 5) == {1.0: 5}
            and (x := report(cluster, "shadowed"))["shadow"]["stats"]["compared"] >= 30
            and x
        ),
        30,
        "30 comparisons with k:3",
    )
    assert r["shadow"]["stats"]["agreement_rate"] == 1.0


def test_a_failing_shadow_never_changes_answers(cluster):
    cluster.add_app("shadowfail", "doubles", 5_000_000)
    traffic(
        cluster,
        {
            "name": "shadowfail",
            "targets": targets(("e", "good", 1)),
            "shadow": {"model_name": "e", "model_version": "raise", "percent": 100},
        },
    )
    wait_for(lambda: report(cluster, "shadowfail")["configured"], 5, "configured")
    wait_for(lambda: cluster.predict("shadowfail", {"input": [0.5]}).json()["output"] == 0.5, 10, "routed")
    for i in range(40):  # every request is also sent to e:raise, which fails on every input
        r = cluster.predict("shadowfail", {"input": [float(i)]})
        assert r.status_code == 200 and r.json()["default"] is False and r.json()["output"] == float(i), (
            r.text
        )
    batch = cluster.predict("shadowfail", {"input_batch": [[1.0], [2.0]]}).json()
    assert [(o["output"], o["default"]) for o in batch["batch_predictions"]] == [(1.0, False), (2.0, False)]
    r = wait_for(
        lambda: (x := report(cluster, "shadowfail"))["shadow"]["stats"]["errors"] >= 42 and x, 10, "errors"
    )
    shadow, primary = r["shadow"]["stats"], r["targets"][0]["stats"]
    # the shadow's failures are its own: counted on it, never compared, never on the primary
    assert shadow["errors"] == shadow["requests"] and shadow["compared"] == 0 and shadow["agreed"] == 0
    assert primary["requests"] >= 42 and primary["errors"] == 0 and primary["defaults"] == 0


def test_weights_change_under_load_without_a_failed_request(cluster):
    cluster.add_app("live", "doubles", 5_000_000)
    traffic(cluster, {"name": "live", "targets": targets(("k", "1", 1))})
    wait_for(lambda: cluster.predict("live", {"input": [0.0]}).json()["output"] == 1.0, 10, "routed")
    stop = threading.Event()
    failures: list[str] = []
    outputs: list[float] = []

    def client() -> None:
        i = 0
        while not stop.is_set():
            i += 1
            r = cluster.predict("live", {"input": [float(i)]})
            if r.status_code != 200 or r.json()["default"]:
                failures.append(r.text)
            else:
                outputs.append(r.json()["output"])

    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        for w in ((90, 10), (50, 50), (0, 100), (100, 0), (0, 100)):
            traffic(cluster, {"name": "live", "targets": targets(("k", "1", w[0]), ("k", "2", w[1]))})
            wait_for(lambda: len(outputs) > 20, 10, "progress")
            outputs_before = len(outputs)
            wait_for(lambda b=outputs_before: len(outputs) > b + 20, 10, "more progress")
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not failures, failures[:3]
    # the last configuration (all to k:2) holds once it has reached the frontend
    wait_for(lambda: cluster.predict("live", {"input": [0.25]}).json()["output"] == 2.0, 10, "k:2 only")
    assert _count(cluster, "live", 20) == {2.0: 20}


def test_exp3_learns_from_feedback_and_its_state_survives_a_restart(cluster):
    cluster.add_app("bandit", "doubles", 5_000_000)
    traffic(
        cluster,
        {
            "name": "bandit",
            "targets": targets(("e", "bad", 1), ("e", "good", 1)),
            "selection": {"policy": "exp3", "eta": 0.2, "gamma": 0.1},
        },
    )
    wait_for(lambda: cluster.predict("bandit", {"input": [1.0]}).json()["default"] is False, 10, "routed")
    for i in range(300):
        x = float(i % 7)
        r = cluster.http.post(
            f"{cluster.url}/bandit/update", json={"uid": 0, "input": [x], "label": x}, timeout=10
        )
        assert r.status_code == 200, r.text

    def learned() -> dict | None:
        w = report(cluster, "bandit")["selection"]["weights"]
        return w if w["e:good"] > 0.9 else None

    weights = wait_for(learned, 15, "exp3 weights favour e:good")
    # the choice follows: p(good) = 0.9 * w + 0.05 > 0.85
    good = sum(cluster.predict("bandit", {"input": [3.0]}).json()["output"] == 3.0 for _ in range(100))
    assert good >= 70, (good, weights)
    # the weights live in the store: a restarted frontend starts from them
    cluster.stop_query_frontend()
    cluster.start_query_frontend("--prediction-cache-size", "0", "--traffic-seed", "17")
    wait_for(
        lambda: cluster.predict("bandit", {"input": [1.0]}).json()["default"] is False, 30, "replicas back"
    )
    good = sum(cluster.predict("bandit", {"input": [3.0]}).json()["output"] == 3.0 for _ in range(100))
    assert good >= 70, good
    assert report(cluster, "bandit")["selection"]["weights"]["e:good"] > 0.9


def test_exp4_combines_the_versions_by_learned_weights(cluster):
    cluster.add_app("ensemble", "doubles", 5_000_000)
    traffic(
        cluster,
        {
            "name": "ensemble",
            "targets": targets(("e", "bad", 1), ("e", "good", 1)),
            "selection": {"policy": "exp4", "eta": 1.0},
        },
    )
    wait_for(lambda: report(cluster, "ensemble")["configured"], 5, "configured")
    # equal weights: the mean of x and x + 0.5
    r = wait_for(
        lambda: (x := cluster.predict("ensemble", {"input": [2.0]}).json())["output"] == 2.25 and x,
        10,
        "mean",
    )
    assert r["default"] is False
    for i in range(30):
        cluster.http.post(
            f"{cluster.url}/ensemble/update", json={"uid": 0, "input": [float(i)], "label": float(i)}
        )
    wait_for(lambda: report(cluster, "ensemble")["selection"]["weights"]["e:good"] > 0.99, 15, "exp4 weights")
    out = wait_for(
        lambda: (x := cluster.predict("ensemble", {"input": [4.0]}).json()["output"]) < 4.01 and x, 10, "x"
    )
    assert 4.0 <= out < 4.01


def test_per_target_errors_and_defaults(cluster):
    cluster.add_app("errs", "doubles", 5_000_000)
    traffic(cluster, {"name": "errs", "targets": targets(("e", "good", 1), ("e", "raise", 1))})
    wait_for(lambda: cluster.predict("errs", {"input": [0.5]}).json()["output"] == 0.5, 10, "split live")
    answers = [cluster.predict("errs", {"input": [float(i)]}).json() for i in range(60)]
    failed = [a for a in answers if a["default"]]
    assert 0 < len(failed) < 60
    assert all(a["output"] == -1.0 for a in failed)

    def counted() -> dict | None:
        r = report(cluster, "errs")
        good, bad = (t["stats"] for t in r["targets"])
        return r if good["requests"] + bad["requests"] >= 60 and bad["errors"] >= len(failed) else None

    good, bad = (t["stats"] for t in wait_for(counted, 10, "error counts")["targets"])
    assert good["errors"] == 0 and good["defaults"] == 0
    assert bad["errors"] == bad["defaults"] == bad["requests"] and bad["error_rate"] == 1.0
