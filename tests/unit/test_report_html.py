"""The HTML report page, built without a browser: the vendored chart library is the one recorded
(hashes), the numbers are the summary's, everything from the summary and config is escaped,
header values are redacted, and the page stays small."""

from __future__ import annotations

import hashlib
import json
import re
from html.parser import HTMLParser
from importlib import resources
from pathlib import Path
from typing import Any

from clientswarm.reports.html import ASSETS, render_report
from clientswarm.reports.table import _ms

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "report-sweep"
HOSTILE = "</script><script>alert(1)</script><b>x</b>&amp;"

EXPECTED_SHA256 = {
    "uPlot.iife.min.js": "19c8d4c6ad88929a79f4ae49d6f7161566dfd0ba3d15cc495e974f787eb78f1f",
    "uPlot.min.css": "df630c6a8d6f8eeaff264b50f73ce5b114f646ffd9a0bb74f049b0a00135fa04",
    "uPlot.LICENSE": "8f989229699b4fe2f1a0432d0e9edc338a8a911e250e2d1b01ecd770a5f5b1bd",
}


def load_fixture() -> dict[str, Any]:
    return {
        n: json.loads((FIXTURE / f"{n}.json").read_text())
        for n in ("summary", "timeseries", "config")
    }


class _Page(HTMLParser):
    """The scripts, the text and the table cells (with their data attributes) of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[tuple[dict[str, str | None], str]] = []
        self.cells: list[dict[str, str | None]] = []
        self.rows: list[dict[str, str | None]] = []
        self.tags: list[str] = []
        self._in_script: dict[str, str | None] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag == "script":
            self._in_script = dict(attrs)
        elif tag == "tr":
            self.rows.append(dict(attrs))
        elif tag == "td":
            self.cells.append({**self.rows[-1], **dict(attrs)} if self.rows else dict(attrs))

    def handle_data(self, data: str) -> None:
        if self._in_script is not None:
            self.scripts.append((self._in_script, data))
            self._in_script = None


def test_the_vendored_files_are_the_recorded_ones() -> None:
    folder = resources.files("clientswarm.reports") / "assets"
    recorded = (folder / "VENDORED.md").read_text()
    for name in ASSETS:
        digest = hashlib.sha256((folder / name).read_bytes()).hexdigest()
        assert digest == EXPECTED_SHA256[name], name
        assert re.search(rf"\| {re.escape(name)} \|[^|]*\| {digest} \|", recorded), name
    assert "MIT" in recorded and "1.6.32" in recorded


def test_the_tables_show_the_summarys_numbers() -> None:
    docs = load_fixture()
    summary = docs["summary"]
    page = _Page()
    page.feed(render_report(summary, docs["timeseries"], docs["config"]))
    group = summary["groups"]["chat"]
    cells = {
        (c.get("data-group"), c.get("data-stage"), c.get("data-metric"), c.get("data-key")): c
        for c in page.cells
    }
    assert cells["chat", "", None, "requests"]["data-value"] == repr(group["requests"])
    ttft = cells["chat", "", "ttft_s", "p99"]
    assert float(ttft["data-value"] or "nan") == group["ttft_s"]["p99"]
    for k, stage in enumerate(group["stages"]):
        assert cells["chat", str(k), None, "requests"]["data-value"] == repr(stage["requests"])
        p99 = cells["chat", str(k), "e2e_s", "p99"]["data-value"]
        assert float(p99 or "nan") == stage["e2e_s"]["p99"]
    data = json.loads(
        next(text for attrs, text in page.scripts if attrs.get("id") == "report-data")
    )
    ids = [c["id"] for c in data["charts"]]
    assert {"stage-0-latency", "stage-0-goodput", "dist-ttft_s", "ts-0-rate"} <= set(ids)
    assert _ms(group["ttft_s"]["p99"]) in render_report(summary, None, None)


def test_names_and_config_from_the_user_stay_text() -> None:
    docs = load_fixture()
    summary = json.loads(json.dumps(docs["summary"]))
    summary["groups"] = {HOSTILE: summary["groups"]["chat"]}
    summary["cluster"]["name"] = HOSTILE
    config = {**docs["config"], "name": HOSTILE}
    config["target"] = {**config["target"], "headers": {"Authorization": "Bearer s3cret"}}
    page = render_report(
        summary, {"groups": {HOSTILE: docs["timeseries"]["groups"]["chat"]}}, config
    )
    assert "<script>alert(1)" not in page and "<b>x</b>" not in page
    assert "s3cret" not in page  # header values are redacted
    parsed = _Page()
    parsed.feed(page)
    assert parsed.tags.count("script") == 3  # the data, uPlot and the page's own: no more
    assert "b" not in parsed.tags
    data = json.loads(
        next(text for attrs, text in parsed.scripts if attrs.get("id") == "report-data")
    )
    assert any(HOSTILE in chart["title"] for chart in data["charts"])  # the name, intact


def test_the_page_is_small_and_needs_no_network() -> None:
    docs = load_fixture()
    page = render_report(docs["summary"], docs["timeseries"], docs["config"])
    assert len(page.encode()) < 300_000
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)
    # An hour of 1-second buckets stays far under 2 MB.
    ts = docs["timeseries"]["groups"]["chat"]
    hour = {k: (v * 300)[:3600] if isinstance(v, list) else v for k, v in ts.items()}
    hour["t_s"] = [float(t) for t in range(3600)]
    hour["errors"] = {"http_500": [0] * 3600}
    big = render_report(docs["summary"], {"groups": {"chat": hour}}, docs["config"])
    assert len(big.encode()) < 2_000_000
