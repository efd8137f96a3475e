"""The web UI of a real ``clientswarm serve``, driven in real headless Chromium with every address
but the loopback unreachable, against the simulator: the cluster list without and with a token,
a configuration with an error shown at its line, a valid one run, its live chart updating, one
group stopped, the report and a comparison; zero console errors throughout."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from test_report_browser import browser  # noqa: F401  (the shared offline Chromium fixture)

from service_process import ServiceProcess, simulator

pytestmark = [pytest.mark.slow, pytest.mark.timeout(150)]

TOKEN = "ui-token"


def config(url: str, name: str, duration_s: float) -> str:
    return (
        f"name: {name}\n"
        f"target: {{url: '{url}', model: mock-model}}\n"
        "groups:\n"
        "  - name: chat\n"
        "    clients: 2\n"
        "    interaction: {kind: chat, prompts: ['Hello!'], max_tokens: 8}\n"
        f"    stop: {{duration_s: {duration_s}}}\n"
        "  - name: bulk\n"
        "    clients: 2\n"
        "    interaction: {kind: chat, prompts: ['Hi.'], max_tokens: 8}\n"
        "    load: {kind: open, rate: 20}\n"
        f"    stop: {{duration_s: {duration_s}}}\n"
    )


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServiceProcess, str]]:
    folder = tmp_path_factory.mktemp("ui")
    with simulator() as url, ServiceProcess(folder / "svc", token=TOKEN) as running:
        yield running, url


def wait_for(check: Callable[[], Any], what: str, timeout_s: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            value = check()
        except Exception:  # the element is not there yet, or was redrawn meanwhile
            value = None
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def errors_in(driver: Any) -> list[dict[str, Any]]:
    """The console's errors, but for Chromium's note of the 422 that validating an invalid
    configuration answers (the answer the editor asked for, not a failure)."""
    return [
        e
        for e in driver.get_log("browser")
        if e["level"] == "SEVERE"
        and not (
            e.get("source") == "network"
            and "/api/v1/validate - " in e["message"]
            and "422" in e["message"]
        )
    ]


def sign_in(driver: Any, base: str) -> None:
    """Open the UI with the token entered (this tab may have it already)."""
    from selenium.webdriver.common.by import By

    driver.get(base + "/")
    wait_for(
        lambda: (
            driver.find_elements(By.ID, "need-token")
            or driver.find_elements(By.ID, "cluster-table")
            or driver.find_elements(By.ID, "no-clusters")
        ),
        "the first page",
    )
    if driver.find_elements(By.ID, "need-token"):
        driver.find_element(By.ID, "token").send_keys(TOKEN)
        driver.find_element(By.ID, "token-save").click()


def test_the_ui_asks_for_the_token_then_lists_clusters(
    service: tuple[ServiceProcess, str],
    browser: Any,  # noqa: F811
) -> None:
    from selenium.webdriver.common.by import By

    running, _ = service
    browser.get(running.url + "/")
    prompt = wait_for(lambda: browser.find_element(By.ID, "need-token"), "the token prompt")
    assert "needs an API token" in prompt.text
    assert errors_in(browser) == []  # it asked first, no request failed
    browser.find_element(By.ID, "token").send_keys(TOKEN)
    browser.find_element(By.ID, "token-save").click()
    wait_for(
        lambda: (
            browser.find_elements(By.ID, "cluster-table")
            or browser.find_elements(By.ID, "no-clusters")
        ),
        "the cluster list",
    )
    assert browser.find_element(By.ID, "login-state").text == "token set"
    assert "ui-token" not in browser.current_url
    assert errors_in(browser) == []


def test_submit_shows_problems_at_their_line_then_runs_stops_a_group_and_reports(
    service: tuple[ServiceProcess, str],
    browser: Any,  # noqa: F811
) -> None:
    from selenium.webdriver.common.by import By

    running, url = service
    sign_in(browser, running.url)
    browser.get(running.url + "/#/submit")
    editor = wait_for(lambda: browser.find_element(By.ID, "config"), "the editor")
    bad = config(url, "ui-run", 6).replace("load: {kind: open, rate: 20}", "load: {kind: opne}")
    browser.execute_script(
        "const t = arguments[0]; t.value = arguments[1];"
        "t.dispatchEvent(new Event('input', {bubbles: true}));",
        editor,
        bad,
    )
    problem = wait_for(
        lambda: browser.find_element(By.CSS_SELECTOR, "#problems li"), "the problem list"
    )
    assert problem.get_attribute("data-line") == "11"  # the line of `load: {kind: opne}`
    assert "groups[1].load.kind: unknown kind" in problem.text
    marked = browser.find_element(By.CSS_SELECTOR, "#annotated .problem")
    assert marked.get_attribute("data-line") == "11"
    assert browser.find_element(By.ID, "run").get_attribute("disabled") is not None
    browser.execute_script(
        "const t = arguments[0]; t.value = arguments[1];"
        "t.dispatchEvent(new Event('input', {bubbles: true}));",
        editor,
        config(url, "ui-run", 6),
    )
    wait_for(lambda: browser.find_element(By.ID, "valid"), "the valid verdict")
    wait_for(lambda: browser.find_element(By.ID, "run").is_enabled(), "the Run button")
    browser.find_element(By.ID, "run").click()
    wait_for(lambda: "#/clusters/" in browser.current_url, "the cluster page")
    cluster_id = browser.current_url.rsplit("/", 1)[1]
    # The live chart updates from the progress stream.
    wait_for(
        lambda: (
            int(browser.find_element(By.ID, "live-rate").get_attribute("data-points") or 0) >= 3
        ),
        "three points on the live chart",
    )
    # The simulator's own vLLM metrics, scraped by the service, chart beside them.
    wait_for(
        lambda: (
            int(browser.find_element(By.ID, "live-engine").get_attribute("data-points") or 0) >= 1
        ),
        "the engine's chart",
    )
    stop = wait_for(
        lambda: browser.find_element(By.CSS_SELECTOR, 'tr[data-group="bulk"] button.stop-group'),
        "the stop button of group bulk",
    )
    stop.click()
    wait_for(
        lambda: (
            running.api("GET", f"/clusters/{cluster_id}/clients?group=bulk")[1][0]["state"]
            == "stopped"
        ),
        "group bulk stopped",
    )
    # The run ends; its results and report show in the page.
    verdict = wait_for(lambda: browser.find_element(By.ID, "verdict"), "the verdict", 40)
    assert verdict.text.startswith("completed")
    frame = browser.find_element(By.ID, "report")
    wait_for(lambda: len(frame.get_attribute("srcdoc") or "") > 1000, "the report")
    browser.switch_to.frame(frame)
    try:
        drawn = wait_for(
            lambda: browser.execute_script("return document.body.dataset.rendered"),
            "the report's charts",
        )
        assert int(drawn) > 0
    finally:
        browser.switch_to.default_content()
    events = browser.find_elements(By.CSS_SELECTOR, "#events .event")
    assert events, "the events of the cluster"
    assert errors_in(browser) == []


def test_two_clusters_compare_in_the_ui(
    service: tuple[ServiceProcess, str],
    browser: Any,  # noqa: F811
) -> None:
    from selenium.webdriver.common.by import By

    running, url = service
    ids = []
    for name in ("cmp-a", "cmp-b"):
        status, created = running.api(
            "POST", "/clusters", config(url, name, 1.5), content_type="application/yaml"
        )
        assert status == 201, created
        ids.append(created["id"])
    for cluster_id in ids:
        assert running.wait_status(cluster_id)["status"] == "completed"
    sign_in(browser, running.url)
    for cluster_id in ids:
        box = wait_for(
            lambda cid=cluster_id: browser.find_element(
                By.CSS_SELECTOR, f'tr[data-id="{cid}"] input[type=checkbox]'
            ),
            "the cluster's row",
        )
        box.click()
    browser.find_element(By.ID, "compare").click()
    frame = wait_for(lambda: browser.find_element(By.ID, "comparison"), "the comparison frame")
    wait_for(lambda: len(frame.get_attribute("srcdoc") or "") > 1000, "the comparison page", 60)
    assert "clientswarm comparison" in frame.get_attribute("srcdoc")
    assert errors_in(browser) == []
