"""The dashboard in a real browser (Debian's headless Chromium through its chromedriver; nothing is
downloaded) against a live local cluster under light load: the login page refuses a wrong token, the
views render, the charts gain points as the frontend's metrics are sampled, a version scaled and a
rollback from the Models view take effect and show in History; during a real canary rollout (clipper
apply, under load) the Rollouts view shows its steps and analysis, and a promotion from the dashboard is
carried out by the apply driving it and shows in History. Each view is saved as a screenshot: in a
temporary directory, or where ``CLIPPER_SCREENSHOTS_DIR`` says (``docs/screenshots`` refreshes the
README's; a test run never rewrites files of the repository unasked)."""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from clipper_admin import ClipperConnection
from clipper_admin.deployers import python as python_deployer
from tests.integration.admin_local_fixtures import clipper_home, predict, start_cluster
from tests.integration.cluster_fixtures import wait_for
from tests.integration.test_reconciler import workspace  # noqa: F401 (a fixture)
from tests.integration.test_reconciler_rollout import (
    GOOD_SRC,
    Hammer,
    background_apply,
    deployed,
    rollout_status,
)

pytestmark = pytest.mark.slow

SCREENSHOTS_ENV = "CLIPPER_SCREENSHOTS_DIR"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


def score(xs):
    return [str(sum(x)) for x in xs]


def score_v2(xs):
    return [str(2 * sum(x)) for x in xs]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClipperConnection]:
    with clipper_home(tmp_path_factory.mktemp("clipper_home")):
        conn = start_cluster("dash", None)
        try:
            conn.register_application("demo", "doubles", "-1.0", 50000)
            python_deployer.deploy_python_closure(
                conn, name="scorer", version=1, input_type="doubles", func=score
            )
            python_deployer.deploy_python_closure(
                conn, name="scorer", version=2, input_type="doubles", func=score_v2
            )
            conn.link_model_to_app("demo", "scorer")
            predict(conn, "demo", {"input": [1.0, 2.0]})
            yield conn
        finally:
            conn.stop_all()


@pytest.fixture(scope="module")
def load(cluster: ClipperConnection) -> Iterator[None]:
    """Light, steady load (about 30 requests a second) for the charts."""
    stop = threading.Event()
    url = f"http://{cluster.get_query_addr()}/demo/predict"

    def run() -> None:
        with requests.Session() as s:
            i = 0
            while not stop.is_set():
                i += 1
                try:
                    s.post(url, json={"input": [float(i % 7), 1.0]}, timeout=5)
                except requests.RequestException:
                    pass
                stop.wait(0.03)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    yield
    stop.set()
    t.join(timeout=10)


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    assert Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists(), (
        "the browser tests need Debian's chromium and chromium-driver: apt-get install -y chromium chromium-driver"
    )
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1440,1100", "--force-device-scale-factor=1"):  # fmt: skip
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def wait(driver: WebDriver, cond, timeout: float = 60.0, what: str = "condition"):  # type: ignore[no-untyped-def]
    return WebDriverWait(driver, timeout, poll_frequency=0.25).until(lambda d: cond(d), message=what)


def text(driver: WebDriver, css: str) -> str:
    """innerText read in one script (the views re-render every poll: no stale element in between)."""
    return str(
        driver.execute_script(f"const e=document.querySelector({css!r}); return e ? e.textContent : ''")
    )


def points(driver: WebDriver, canvas_id: str) -> int:
    v = driver.execute_script(
        f"const c=document.getElementById({canvas_id!r}); return c ? c.dataset.points : null"
    )
    return int(v or 0)


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    wanted = os.environ.get(SCREENSHOTS_ENV)
    path = Path(wanted) if wanted else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


def shoot(driver: WebDriver, name: str, into: Path) -> None:
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1440, max(900, min(int(height) + 40, 2400)))
    time.sleep(0.3)
    assert driver.save_screenshot(str(into / f"dashboard-{name}.png"))
    driver.set_window_size(1440, 1100)


def test_dashboard_in_a_browser(
    cluster: ClipperConnection, load: None, browser: WebDriver, screenshots: Path
) -> None:
    base = f"http://{cluster.cm.get_admin_addr()}/dashboard"
    token = cluster.cm.admin_token
    assert token, "the local cluster has an admin token by default"

    # the login page, and a wrong token refused
    browser.get(base)
    assert browser.find_element(By.ID, "token")
    browser.find_element(By.ID, "token").send_keys("not-the-token")
    browser.find_element(By.ID, "login").click()
    wait(browser, lambda d: "Wrong token" in text(d, ".login"), what="the wrong-token message")
    assert not browser.find_elements(By.ID, "view-cluster")
    shoot(browser, "login", screenshots)
    # the data endpoints are closed to this browser until it logs in
    browser.get(base + "/api/overview")
    assert "log in" in browser.page_source

    browser.get(base)
    browser.find_element(By.ID, "token").send_keys(token)
    browser.find_element(By.ID, "login").click()
    wait(browser, lambda d: d.find_elements(By.ID, "view-cluster"), what="the dashboard")
    cookie = browser.get_cookie("clipper_dashboard")
    assert cookie is not None and cookie["httpOnly"] and cookie.get("sameSite") == "Strict"

    # cluster: frontends up, the throughput chart fills
    wait(browser, lambda d: "1 / 1 up" in text(d, "#view-cluster"), what="the query frontend up")
    assert "Applications" in text(browser, "#view-cluster")
    wait(browser, lambda d: points(d, "chart-cluster-qps") >= 4, what="cluster chart points")
    shoot(browser, "cluster", screenshots)

    # applications: targets, weights, and charts that move
    browser.get(base + "#apps")
    wait(browser, lambda d: "scorer:2" in text(d, "#app-demo"), what="the app's target")
    assert "objective 50.0 ms" in text(browser, "#app-demo")
    first = wait(browser, lambda d: points(d, "q-demo") or None, what="throughput points")
    wait(browser, lambda d: points(d, "q-demo") > first, what="the throughput chart to move")
    wait(browser, lambda d: points(d, "l-demo") >= 20, timeout=90, what="some latency history")
    qps = browser.execute_script("return document.getElementById('q-demo').dataset.points")
    assert int(qps) > first
    shoot(browser, "apps", screenshots)

    # models: versions, replicas, logs; roll back to version 1
    browser.get(base + "#models")
    wait(browser, lambda d: "current 2" in text(d, "#model-scorer"), what="the model view")
    wait(browser, lambda d: "connected" in text(d, "#model-scorer"), what="a connected replica")
    browser.find_element(By.CSS_SELECTOR, "#model-scorer button.logs").click()
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#model-scorer pre.log"), what="the replica log")
    # scale version 2 to two replicas (the local cluster's supervisor starts the second one)
    row2 = "const b=document.querySelector(\"#model-scorer button.scale[data-version='2']\"); "
    wait(browser, lambda d: d.execute_script(row2 + "return b !== null"), what="the scale control")
    browser.execute_script(row2 + "b.previousElementSibling.value = '2'; b.click()")
    wait(browser, lambda d: "#1 connected" in d.execute_script(row2 + "return b ? b.closest('tr').textContent : ''"),
         timeout=120, what="the second replica of version 2 connected")  # fmt: skip
    assert cluster.cm.get_num_replicas("scorer", "2") == 2
    assert "(2 desired)" in browser.execute_script(row2 + "return b.closest('tr').textContent")
    button = browser.find_element(By.CSS_SELECTOR, "#model-scorer button.make-current[data-version='1']")
    assert button.text == "Roll back"
    button.click()
    browser.switch_to.alert.accept()
    wait(browser, lambda d: "current 1" in text(d, "#model-scorer"), what="the rollback in the view")
    assert cluster.get_current_model_version("scorer") == "1"
    deadline = time.monotonic() + 30
    while float(predict(cluster, "demo", {"input": [1.0, 2.0]})["output"]) != 3.0:
        assert time.monotonic() < deadline, "version 1 never served after the rollback"
        time.sleep(0.1)
    browser.find_element(By.CSS_SELECTOR, "#model-scorer button.logs").click()
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#model-scorer pre.log"), what="the replica log")
    shoot(browser, "models", screenshots)

    # history: the action, as done from the dashboard
    browser.get(base + "#history")
    wait(browser, lambda d: "set_model_version" in text(d, "#history"), what="the audit entry")
    row = text(browser, "#history tr.entry")
    assert "dashboard" in row and '"model_version":"1"' in row and "ok" in row
    assert "set_num_replicas" in text(browser, "#history tr.entry:nth-child(3)")
    shoot(browser, "history", screenshots)


# -- the Rollouts view during a real canary rollout (clipper apply on a local cluster, under load) -----


def cell(driver: WebDriver, css: str, row: int, col: int) -> str:
    return text(driver, f"{css} tr:nth-child({row}) td:nth-child({col})")


def click_and_confirm(driver: WebDriver, css: str) -> None:
    """Click a button that asks for confirmation, and confirm (a view re-rendered between finding the
    button and clicking it is tried again)."""
    deadline = time.monotonic() + 60
    while True:
        try:
            driver.find_element(By.CSS_SELECTOR, css).click()
            break
        except StaleElementReferenceException:
            assert time.monotonic() < deadline, f"{css} kept being re-rendered"
    WebDriverWait(driver, 30).until(expected_conditions.alert_is_present()).accept()


def count(value: str) -> int:
    return int(value) if value.isdigit() else 0


def test_rollout_view_during_a_canary_and_promote_from_the_dashboard(
    workspace,  # noqa: F811
    browser: WebDriver,
    screenshots: Path,
) -> None:
    env, ports, f, conn, old = deployed(
        workspace, "[{weight: 30, pause: 600}, {weight: 60, pause: 600}]", GOOD_SRC
    )
    base = f"http://{conn.cm.get_admin_addr()}/dashboard"
    card = "#rollout-sum-model"
    with Hammer(ports[0]) as h:
        wait_for(lambda: h.total > 20, 60, "the first answers")
        proc = background_apply(f, env)  # rolls the new version out: 30 %, then 60 %, 10 min each
        try:
            wait_for(
                lambda: (s := rollout_status(f, env)) and s["phase"] == "Progressing", 180, "the rollout"
            )
            new = (rollout_status(f, env) or {})["to_version"]
            browser.delete_all_cookies()
            browser.get(base)
            browser.find_element(By.ID, "token").send_keys(conn.cm.admin_token)
            browser.find_element(By.ID, "login").click()
            wait(browser, lambda d: d.find_elements(By.ID, "view-cluster"), what="the dashboard")
            browser.get(base + "#rollouts")
            wait(browser, lambda d: "Progressing" in text(d, card), what="the rollout in the view")
            view = text(browser, card)
            assert "canary" in view and old in view and new in view and "hello" in view, view
            # the steps, the current one marked, the split, the analysis numbers as they come in
            assert text(browser, f"{card} .step.current") == "step 130 %pause 600 s"
            assert "60 %" in text(browser, f"{card} .step:not(.current)")
            assert f"{old} 70 % · {new} 30 %" in text(browser, f"{card} .weights")
            wait(browser, lambda d: count(cell(d, f"{card} table.analysis", 2, 2)) >= 15, timeout=120,
                 what="the new version's requests counted by the analysis")  # fmt: skip
            assert "min 15" in cell(browser, f"{card} table.analysis", 2, 3)
            assert cell(browser, f"{card} table.analysis", 3, 2) == "0.0 %"  # error rate
            assert "max 5.0 %" in cell(browser, f"{card} table.analysis", 3, 3)
            assert "p99 latency / objective" in text(browser, f"{card} table.analysis")
            shoot(browser, "rollouts", screenshots)

            # promote from the dashboard: the apply driving the rollout takes the request
            click_and_confirm(browser, f"{card} button.promote")
            wait(
                browser, lambda d: "Succeeded" in text(d, card), timeout=120, what="the promotion in the view"
            )
            out, _ = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    assert "promoted by the dashboard (session" in out, out
    assert conn.get_current_model_version("sum-model") == new
    assert h.failed == 0 and h.defaults == 0, vars(h)
    final = rollout_status(f, env)
    assert final is not None and final["phase"] == "Succeeded" and final["weight"] == 100
    # the rollback offered after the promotion says why it is not a button here (old's replicas stopped)
    wait(browser, lambda d: "no replica running" in text(d, card), what="the rollback hint")
    # the action, in History, as done from the dashboard
    browser.get(base + "#history")
    wait(browser, lambda d: "rollout_promote" in text(d, "#history"), what="the audit entry")
    row = text(browser, "#history tr.entry")
    assert "dashboard" in row and '"model":"sum-model"' in row and "ok" in row and "requested" in row, row
