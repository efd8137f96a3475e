"""``clientswarm compare A B --html`` of two real sweeps against the simulator (B with a slower
first token), the page opened by real headless Chromium from disk with the network off (the
driver of ``test_report_browser``): no console error, every chart drawn, the table's numbers
and verdicts equal the comparison's JSON; ``report: PATH`` keeps stdout pure JSON with
``--json``; an unwritable path is one error line, exit 2."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from test_report_browser import browser, open_page

from clientswarm.reports.compare import _fmt
from service_process import CLI

__all__ = ["browser"]  # the fixture, used by name

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

CONFIG = """\
name: compare-page
seed: 5
target: {url: "http://127.0.0.1:1", model: mock-model, timeout_s: 30}
spawner: {kind: local, workers: 1}
groups:
  - name: sweep
    clients: 4
    interaction: {kind: chat, stream: true, prompts: ["Hi there."], max_tokens: 8}
    load: {kind: open, arrival: constant,
           stages: [{rate: 10, duration_s: 1}, {rate: 20, duration_s: 1}]}
"""
GATE = ("--fail-if", "ttft_s.p99 > +10%")


def clientswarm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=90)


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two short two-stage sweeps (about 4 s each): A, and B with TTFT 80 ms instead of 50."""
    folder = tmp_path_factory.mktemp("compare-page")
    (folder / "cluster.yaml").write_text(CONFIG)
    out = []
    for name, mock_args in (("a", "--ttft-ms 50 --ttft-std-ms 3"), ("b", "--ttft-ms 80")):
        target = folder / name
        done = clientswarm(
            "run", str(folder / "cluster.yaml"), "--mock", "--mock-args", mock_args,
            "-o", str(target),
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        out.append(target)
    return out[0], out[1]


def test_the_comparison_page_opens_offline_with_every_chart_and_the_jsons_numbers(
    sweeps: tuple[Path, Path], tmp_path: Path, browser: Any
) -> None:
    from selenium.webdriver.common.by import By

    a, b = map(str, sweeps)
    page = tmp_path / "out.html"
    done = clientswarm("compare", a, b, *GATE, "--json", "--html", str(page))
    assert done.returncode == 3, done.stderr  # the gate fails, the page is still written
    comparison = json.loads(done.stdout)  # pure JSON: the report line went to stderr
    assert done.stderr.strip() == f"report: {page}"
    assert [(p["group"], p["stage"]) for p in comparison["parts"]] == [
        ("sweep", None),
        ("sweep", "0"),
        ("sweep", "1"),
    ]
    state = open_page(browser, page)
    assert state["console"] == []
    assert state["declared"] == state["rendered"] == state["divs"] == state["drawn"] == 5
    assert "chart-sweep-0" in state["ids"] and "chart-cdf-0-ttft_s" in state["ids"]
    assert state["verdict"].startswith("FAILED: 1 of 1 --fail-if checks")
    spec = browser.execute_script(
        "return JSON.parse(document.getElementById('compare-data').textContent).charts"
        ".find(c => c.id === 'sweep-0')"
    )
    assert [s["label"] for s in spec["series"]] == [
        f"{run} TTFT {p}" for run in "AB" for p in ("p50", "p99")
    ]
    assert all(s["lines"] for s in spec["series"])  # 10 then 20 req/s: achieved rates rise
    for index, part in enumerate(comparison["parts"]):
        row = next(r for r in part["latency"] if r["metric"] == "ttft_s.p50")
        cells = {
            (c.get_attribute("data-run"), c.get_attribute("data-key")): c
            for c in browser.find_elements(
                By.CSS_SELECTOR, f'#part-{index} tr[data-metric="ttft_s.p50"] td[data-key]'
            )
        }
        for run, value in zip("AB", row["values"], strict=True):
            assert float(cells[(run, "value")].get_attribute("data-value")) == value
            assert cells[(run, "value")].text == _fmt(value, True)
        assert cells[("B", "verdict")].text == row["changes"][0]["verdict"]
        assert row["changes"][0]["direction"] == "slower"


def test_the_report_line_follows_the_tables_and_bad_paths_exit_2(
    sweeps: tuple[Path, Path], tmp_path: Path
) -> None:
    a, b = map(str, sweeps)
    page = tmp_path / "tables.html"
    done = clientswarm("compare", a, b, "--html", str(page))
    assert done.returncode == 0, done.stderr
    assert done.stdout.rstrip().splitlines()[-1] == f"report: {page}"
    assert page.read_text().startswith("<!DOCTYPE html>")
    (tmp_path / "file").write_text("")
    for path, message in (
        (tmp_path / "file" / "x.html", "no such directory"),
        (tmp_path, "cannot write there"),
    ):
        bad = clientswarm("compare", a, b, "--html", str(path))
        assert bad.returncode == 2, (path, bad.stdout, bad.stderr)
        lines = bad.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0] and "--html" in lines[0], bad.stderr
        assert bad.stdout == ""
