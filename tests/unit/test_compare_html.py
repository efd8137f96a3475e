"""The comparison page (``clientswarm compare --html``), built without a browser from the sweep
fixture's summary and synthetic samples: self-contained, the comparison's numbers and verdicts in
its tables, one CDF chart per latency metric with one small series per run, the sweep's curves,
everything from the runs escaped, and the page small with 100k samples per run."""

from __future__ import annotations

import copy
import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from clientswarm.reports.compare import (
    LATENCIES,
    RunResult,
    SampleValues,
    Settings,
    _diff_text,
    _fmt,
    compare_runs,
    parse_fail_if,
)
from clientswarm.reports.compare_html import (
    CDF_POINTS,
    cdf_points,
    render_comparison_html,
    shared_x,
)
from clientswarm.reports.html import asset_text

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "report-sweep"
HOSTILE = "</script><script>alert(1)</script><b>x</b>&amp;"
STAGES = 5  # the fixture's group "chat" has five stages
SCALE_B = 1.3  # B is 30 % slower than A everywhere


def samples(n: int, seed: int, scale: float) -> SampleValues:
    """``n`` measured chat interactions spread over the stages, latencies log-normal."""
    rng = np.random.default_rng(seed)
    itl_counts = np.full(n, 4, dtype=np.int64)
    return SampleValues(
        group=np.array(["chat"] * n, dtype=object),
        stage=np.arange(n, dtype=np.int64) % STAGES,
        ok=np.ones(n, dtype=np.bool_),
        ttft_s=rng.lognormal(np.log(0.05), 0.4, n) * scale,
        tpot_s=rng.lognormal(np.log(0.01), 0.2, n) * scale,
        e2e_s=rng.lognormal(np.log(0.2), 0.3, n) * scale,
        itl_counts=itl_counts,
        itl_values=rng.lognormal(np.log(0.01), 0.3, int(itl_counts.sum())) * scale,
    )


def scaled(stats: dict[str, Any], scale: float) -> None:
    """The latencies of a group's (or stage's) statistics times ``scale``, in place."""
    for _, key in LATENCIES:
        for name, value in (stats.get(key) or {}).items():
            if name != "count" and isinstance(value, float):
                stats[key][name] = value * scale
    for stage in stats.get("stages") or []:
        scaled(stage, scale)


def make_runs(n: int, *, name_b: str = "sweep-b") -> list[RunResult]:
    summary = json.loads((FIXTURE / "summary.json").read_text())
    other = copy.deepcopy(summary)
    other["cluster"]["name"] = name_b
    scaled(other["groups"]["chat"], SCALE_B)
    return [
        RunResult("A", "runs/a", summary, samples(n, 1, 1.0)),
        RunResult("B", "runs/b", other, samples(n, 2, SCALE_B)),
    ]


def compared(runs: list[RunResult]) -> dict[str, Any]:
    gates = [parse_fail_if("ttft_s.p99 > +10%")]
    return compare_runs(runs, Settings(resamples=100, max_values=2000), gates)


class _Page(HTMLParser):
    """The scripts' sources, the links and the table cells (with their table and row)."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.cells: list[dict[str, Any]] = []
        self.data: dict[str, Any] = {}
        self._table: dict[str, str | None] = {}
        self._row: dict[str, str | None] = {}
        self._cell: dict[str, Any] | None = None
        self._json = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        self.links += [v or "" for k, v in attrs if k in ("src", "href")]
        if tag == "table":
            self._table = found
        elif tag == "tr":
            self._row = found
        elif tag == "td" and "data-key" in found:
            self._cell = {**found, "table": self._table, "row": self._row, "text": ""}
            self.cells.append(self._cell)
        elif tag == "script":
            self._json = found.get("type") == "application/json"

    def handle_endtag(self, tag: str) -> None:
        if tag == "td":
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell["text"] += data
        if self._json:
            self.data = json.loads(data)
            self._json = False


@pytest.fixture(scope="module")
def runs() -> list[RunResult]:
    return make_runs(20_000)


@pytest.fixture(scope="module")
def comparison(runs: list[RunResult]) -> dict[str, Any]:
    return compared(runs)


@pytest.fixture(scope="module")
def page(comparison: dict[str, Any], runs: list[RunResult]) -> _Page:
    parsed = _Page()
    parsed.feed(render_comparison_html(comparison, runs))
    return parsed


def test_the_page_is_self_contained(comparison: dict[str, Any], runs: list[RunResult]) -> None:
    text = render_comparison_html(comparison, runs)
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", text, re.IGNORECASE)
    assert "<link" not in text and "<script src" not in text and "@import" not in text
    assert asset_text("uPlot.iife.min.js") in text and asset_text("uPlot.min.css") in text
    assert text.count("<script>") == 2  # uPlot, then the page's drawing script


def test_the_tables_have_the_comparisons_numbers_and_verdicts(
    comparison: dict[str, Any], page: _Page
) -> None:
    cells = {
        (c["table"]["id"], c["row"]["data-metric"], c["data-run"], c["data-key"]): c
        for c in page.cells
    }
    parts = comparison["parts"]
    assert [p["stage"] for p in parts] == [None, *map(str, range(STAGES))]
    checked = 0
    for index, part in enumerate(parts):
        table = f"part-{index}"
        for kind, ms in (("rates", False), ("latency", True)):
            for row in part[kind]:
                metric = row["metric"]
                a = cells[(table, metric, "A", "value")]
                assert float(a["data-value"]) == row["values"][0]
                assert a["text"] == _fmt(row["values"][0], ms)
                b = cells[(table, metric, "B", "value")]
                assert float(b["data-value"]) == row["values"][1]
                change = row["changes"][0]
                diff = cells[(table, metric, "B", "diff")]
                assert float(diff["data-value"]) == change["diff"]
                assert diff["text"] == _diff_text(change, ms)
                if ms:
                    verdict = cells[(table, metric, "B", "verdict")]
                    assert verdict["text"] == change["verdict"]
                    assert verdict["class"] == change["direction"]
                checked += 1
    assert checked == sum(len(p["rates"]) + len(p["latency"]) for p in parts) >= len(parts) * 17
    p50 = next(r for r in parts[0]["latency"] if r["metric"] == "ttft_s.p50")
    assert p50["changes"][0]["verdict"].startswith("B slower (+")


def test_one_cdf_chart_per_metric_with_one_small_series_per_run(page: _Page) -> None:
    charts = {c["id"]: c for c in page.data["charts"]}
    for _, key in LATENCIES:
        chart = charts[f"cdf-0-{key}"]
        assert chart["xLabel"].endswith("(ms)") and chart["yRange"] == [0, 1]
        assert [s["label"] for s in chart["series"]] == ["A", "B"]
        assert chart["x"] == sorted(set(chart["x"]))
        for series in chart["series"]:
            assert len(series["values"]) == len(chart["x"])
            shares = [v for v in series["values"] if v is not None]
            assert 100 < len(shares) <= CDF_POINTS
            assert shares == sorted(shares) and shares[-1] == 1.0 and shares[0] > 0
    ttft = charts["cdf-0-ttft_s"]
    medians = []
    for series in ttft["series"]:  # the x at which each run's CDF passes one half
        medians.append(
            next(x for x, y in zip(ttft["x"], series["values"], strict=True) if y and y >= 0.5)
        )
    assert medians[1] / medians[0] == pytest.approx(SCALE_B, rel=0.05)


def test_the_sweep_has_ttft_curves_against_the_achieved_rate(
    comparison: dict[str, Any], page: _Page
) -> None:
    chart = next(c for c in page.data["charts"] if c["id"].startswith("sweep-"))
    labels = [s["label"] for s in chart["series"]]
    assert labels == ["A TTFT p50", "A TTFT p99", "B TTFT p50", "B TTFT p99"]
    stages = [p for p in comparison["parts"] if p["stage"] is not None]
    for run in (0, 1):
        rates = [
            next(r for r in p["rates"] if r["metric"] == "request_rate")["values"][run]
            for p in stages
        ]
        p99 = [
            next(r for r in p["latency"] if r["metric"] == "ttft_s.p99")["values"][run]
            for p in stages
        ]
        values = chart["series"][2 * run + 1]["values"]
        drawn = sorted((x, y) for x, y in zip(chart["x"], values, strict=True) if y is not None)
        expected = sorted((x, y * 1e3) for x, y in zip(rates, p99, strict=True))
        assert len(drawn) == STAGES
        for (x, y), (x_want, y_want) in zip(drawn, expected, strict=True):
            assert (x, y) == (pytest.approx(x_want, rel=1e-4), pytest.approx(y_want, rel=1e-4))
    assert chart["series"][1]["dash"] and not chart["series"][0]["dash"]
    # The fixture's last stage is overloaded (it achieved less than the one before): no lines
    assert [s["lines"] for s in chart["series"]] == [False] * 4


def test_the_header_has_the_runs_the_verdict_and_the_gates() -> None:
    runs = make_runs(500)
    text = render_comparison_html(compared(runs), runs)
    assert 'id="verdict"' in text and "FAILED: 1 of 1 --fail-if checks" in text
    assert "B vs A: slower in" in text
    assert '<table id="runs">' in text and "sweep-example" in text and "sweep-b" in text
    assert "thresholds failed" in text  # the fixture's run verdict line
    assert '<table id="gates">' in text and "ttft_s.p99 &gt; +10%" in text


def test_what_comes_from_the_runs_is_escaped() -> None:
    runs = make_runs(300, name_b=HOSTILE)
    runs[1].source = HOSTILE
    text = render_comparison_html(compared(runs), runs)
    assert HOSTILE not in text and "<b>x</b>" not in text
    assert text.count("</script>") == 3  # the data, uPlot and the page's script


def test_a_run_without_samples_has_no_cdf_but_its_tables() -> None:
    runs = make_runs(1000)
    runs[1].samples = None
    page = _Page()
    page.feed(render_comparison_html(compared(runs), runs))
    cdfs = [c for c in page.data["charts"] if c["id"].startswith("cdf-")]
    assert cdfs and all([s["label"] for s in c["series"]] == ["A"] for c in cdfs)
    assert any(c["data-run"] == "B" and c["data-key"] == "value" for c in page.cells)


def test_the_page_stays_small_with_100k_samples_per_run() -> None:
    runs = make_runs(100_000)
    text = render_comparison_html(compared(runs), runs)
    assert len(text.encode()) < 2_000_000


def test_cdf_points_are_the_exact_shares_at_quantiles() -> None:
    values = np.random.default_rng(3).exponential(0.1, 50_000)
    values[:10] = np.nan
    xs, ys = cdf_points(values)
    assert len(xs) <= CDF_POINTS and xs == sorted(set(xs))
    finite = np.sort(values[np.isfinite(values)])
    for x, y in zip(xs[::37], ys[::37], strict=False):
        exact = np.searchsorted(finite, x / 1e3, side="right") / finite.size
        assert y == pytest.approx(exact, abs=2e-4)
    assert ys[-1] == 1.0
    assert cdf_points(np.array([0.002, 0.002, 0.004])) == (
        [2.0, 4.0],
        [pytest.approx(2 / 3, rel=1e-4), 1.0],
    )
    assert cdf_points(np.array([np.nan])) == ([], [])


def test_shared_x_puts_each_curve_on_the_union_with_gaps() -> None:
    x, series = shared_x([("A", [1.0, 3.0], [0.5, 1.0]), ("B", [2.0, 3.0], [0.2, 1.0])])
    assert x == [1.0, 2.0, 3.0]
    assert series == [("A", [0.5, None, 1.0]), ("B", [None, 0.2, 1.0])]
