"""The HTML report of a real run, opened by real headless Chromium (Debian's ``chromium`` and
``chromium-driver``, driven by Selenium) from disk with the network off: no console error,
every chart drawn, the numbers shown equal summary.json's. Also: the committed sweep fixture
(the docs' screenshot) renders fully, the service serves the report, and ``clientswarm report``
rebuilds it from a directory and from a service."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from clientswarm.reports.html import render_report
from clientswarm.reports.table import _ms
from service_process import CLI, ServiceProcess, simulator

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

DOCS = ("summary", "timeseries", "config")
FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "report-sweep"
STOP_1S = "    stop: {duration_s: 1}\n"
CHROMEDRIVER = shutil.which("chromedriver")
CHROMIUM = shutil.which("chromium")

CONFIG = """\
name: report-test
seed: 4
target: {url: "http://127.0.0.1:1", model: mock-model, timeout_s: 30}
spawner: {kind: local, workers: 1}
slo: {ttft_s: 0.5}
thresholds: ["ttft_s.p99 < 5"]
groups:
  - name: sweep
    clients: 4
    interaction: {kind: chat, stream: true, prompts: ["Hi there."], max_tokens: 8}
    load: {kind: open, arrival: constant,
           stages: [{rate: 10, duration_s: 1}, {rate: 20, duration_s: 1}]}
"""


def _need_browser() -> None:
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.skip(
            "needs Debian's chromium and chromium-driver (scripts/ensure-test-deps.sh installs "
            "them as root)"
        )
    pytest.importorskip("selenium", reason="needs selenium (pip install -e '.[dev]')")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One short two-stage run against the simulator (about 3 s), shared by the tests."""
    folder = tmp_path_factory.mktemp("report")
    (folder / "cluster.yaml").write_text(CONFIG)
    out = folder / "out"
    done = subprocess.run(
        [CLI, "run", str(folder / "cluster.yaml"), "--mock", "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert done.returncode == 0, done.stderr
    assert (out / "report.html").is_file()
    return out


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Chromium with the network off and the console captured."""
    _need_browser()
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--proxy-server=127.0.0.1:9",  # a proxy to nowhere: nothing leaves the machine
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",  # only the loopback
        "--window-size=1240,1000",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(
        service=webdriver.ChromeService(executable_path=CHROMEDRIVER), options=options
    )
    yield driver
    driver.quit()


def open_page(driver: Any, path: Path) -> dict[str, Any]:
    """Open ``path`` from disk; what the page drew and what its console said."""
    driver.get(path.resolve().as_uri())
    state: dict[str, Any] = driver.execute_script(
        """
        const charts = Array.from(document.querySelectorAll('div.chart'));
        return {
          declared: Number(document.body.dataset.charts),
          rendered: Number(document.body.dataset.rendered || -1),
          divs: charts.length,
          drawn: charts.filter(d => {
            const c = d.querySelector('canvas');
            return c && c.width > 0 && c.height > 0 && c.getBoundingClientRect().width > 0;
          }).length,
          ids: charts.map(d => d.id),
          verdict: document.getElementById('verdict').textContent,
        };
        """
    )
    state["console"] = driver.get_log("browser")
    return state


def cell(driver: Any, group: str, stage: str, key: str, metric: str | None = None) -> Any:
    """A table cell's (text, data-value) by group, stage, metric and column."""
    from selenium.webdriver.common.by import By

    row = f'tr[data-group="{group}"][data-stage="{stage}"]'
    row += f'[data-metric="{metric}"]' if metric else ":not([data-metric])"
    element = driver.find_element(By.CSS_SELECTOR, f'{row} td[data-key="{key}"]')
    return element.text, element.get_attribute("data-value")


def test_the_report_of_a_run_opens_offline_with_every_chart_and_the_summarys_numbers(
    run_dir: Path, browser: Any
) -> None:
    summary = json.loads((run_dir / "summary.json").read_text())
    state = open_page(browser, run_dir / "report.html")
    assert state["console"] == []
    assert state["declared"] == state["rendered"] == state["divs"] == state["drawn"] > 0
    assert "chart-stage-0-latency" in state["ids"] and "chart-ts-0-rate" in state["ids"]
    assert state["verdict"].startswith("completed")
    group = summary["groups"]["sweep"]
    assert cell(browser, "sweep", "", "requests") == (str(group["requests"]),) * 2
    text, value = cell(browser, "sweep", "", "p99", "ttft_s")
    assert (text, float(value)) == (_ms(group["ttft_s"]["p99"]), group["ttft_s"]["p99"])
    for k, stage in enumerate(group["stages"]):
        assert cell(browser, "sweep", str(k), "requests")[1] == str(stage["requests"])
    assert [st["requests"] for st in group["stages"]] == [10, 20]


def test_the_sweep_fixture_renders_every_stage_and_chart(tmp_path: Path, browser: Any) -> None:
    docs = {n: json.loads((FIXTURE / f"{n}.json").read_text()) for n in DOCS}
    page = tmp_path / "report.html"
    page.write_text(render_report(docs["summary"], docs["timeseries"], docs["config"]))
    state = open_page(browser, page)
    assert state["console"] == []
    assert state["declared"] == state["drawn"] == state["divs"] >= 8
    stages = docs["summary"]["groups"]["chat"]["stages"]
    for k, stage in enumerate(stages):
        assert cell(browser, "chat", str(k), "goodput_rate")[1] == repr(stage["goodput_rate"])
    assert state["verdict"].startswith("thresholds failed")


CAPACITY_FIXTURE = FIXTURE.parent / "report-capacity"
"""A capacity search of 8 probes against the simulator (4 slots, 10-token answers: about 36
req/s), written by ``clientswarm run`` (summary, time series and configuration)."""


def test_the_capacity_fixture_shows_the_search_and_its_chart(tmp_path: Path, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    docs = {n: json.loads((CAPACITY_FIXTURE / f"{n}.json").read_text()) for n in DOCS}
    page = tmp_path / "report.html"
    page.write_text(render_report(docs["summary"], docs["timeseries"], docs["config"]))
    state = open_page(browser, page)
    assert state["console"] == []
    assert state["declared"] == state["drawn"] == state["divs"]
    capacity = docs["summary"]["groups"]["chat"]["capacity"]
    assert browser.find_elements(By.ID, "chart-capacity-0")
    rows = browser.find_elements(By.CSS_SELECTOR, 'table.probes[data-group="chat"] tbody tr')
    if not rows:  # a table without tbody: its rows follow the head
        rows = browser.find_elements(By.CSS_SELECTOR, 'table.probes[data-group="chat"] tr')[1:]
    assert len(rows) == len(capacity["probes"])
    for row, probe in zip(rows, capacity["probes"], strict=True):
        cells = [td.text for td in row.find_elements(By.TAG_NAME, "td")]
        assert cells[3] == str(probe["requests"])
        assert cells[5] == ("pass" if probe["passed"] else "FAIL")
    search = browser.find_element(By.CSS_SELECTOR, "p.search").text
    assert search.startswith("chat: capacity at SLO (ttft_s ≤ 0.1 s; 95% of requests): 36 req/s")


def test_the_service_serves_the_report_and_the_command_rebuilds_it(
    run_dir: Path, tmp_path: Path
) -> None:
    # From a result directory, offline: the same page as the run wrote, and the tables.
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("logs"))
    (copy / "report.html").unlink()
    done = subprocess.run([CLI, "report", str(copy)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "Throughput" in done.stdout and "sweep · stage 1 (20 req/s)" in done.stdout
    assert (copy / "report.html").read_text() == (run_dir / "report.html").read_text()
    missing = subprocess.run(
        [CLI, "report", str(tmp_path / "nope")], capture_output=True, text=True, timeout=60
    )
    assert missing.returncode == 2 and missing.stderr.startswith("error: ")
    assert "Traceback" not in missing.stderr
    # From the service: the route, behind the token, and the command with --service.
    stages = "stages: [{rate: 10, duration_s: 1}, {rate: 20, duration_s: 1}]"
    config = CONFIG.replace(stages, "rate: 10").replace("    load:", STOP_1S + "    load:")
    with simulator() as url, ServiceProcess(tmp_path / "svc", token="rep-token") as service:
        body = config.replace("http://127.0.0.1:1", url)
        status, created = service.api("POST", "/clusters", body, content_type="application/yaml")
        assert status == 201, created
        assert service.wait_status(created["id"])["status"] == "completed"
        status, page, headers = service.request("GET", f"/clusters/{created['id']}/report")
        assert status == 200 and headers["content-type"].startswith("text/html")
        assert b'id="report-data"' in page and b"report-test" in page
        assert service.request("GET", f"/clusters/{created['id']}/report", token="")[0] == 401
        assert service.request("GET", "/clusters/000000000000/report")[0] == 404
        out = tmp_path / "fetched.html"
        fetched = subprocess.run(
            [CLI, "report", created["id"], "--service", service.url, "-o", str(out)],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "CLIENTSWARM_API_TOKEN": "rep-token"},
        )
        assert fetched.returncode == 0, fetched.stderr
        assert out.read_bytes() == page and "Throughput" in fetched.stdout
