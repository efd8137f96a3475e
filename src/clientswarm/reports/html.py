"""The HTML report: one self-contained file (``report.html``) that opens from disk with no
network. Python formats the tables (the numbers of summary.json, formatted as the terminal
tables format them) and prepares each chart's data, already aggregated (no raw samples); the
page draws the charts with the vendored uPlot library (``assets/``, see ``VENDORED.md``),
inlined together with its CSS. Everything taken from the summary or config is escaped: text
with :func:`html.escape`, the embedded JSON with ``<``, ``>`` and ``&`` as ``\\uXXXX``."""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from clientswarm.config.redact import redact_config
from clientswarm.reports.table import (
    LATENCY_METRICS,
    _ms,
    _number,
    _stage_label,
    search_lines,
    server_lines,
    set_point_text,
)
from clientswarm.verdict import verdict

ASSETS = ("uPlot.iife.min.js", "uPlot.min.css", "uPlot.LICENSE")
"""The vendored files, in ``clientswarm/reports/assets``."""

PERCENTILES = ("p50", "p90", "p95", "p99", "max")
"""The percentile ladder drawn per latency metric (the summary keeps no raw samples)."""

DIST_METRICS = (("TTFT", "ttft_s"), ("ITL", "itl_s"), ("TPOT", "tpot_s"), ("E2E", "e2e_s"))
"""The latency metrics whose distributions are drawn."""

_THROUGHPUT_COLUMNS = (
    ("requests", "requests"),
    ("ok", "succeeded"),
    ("failed", "failed"),
    ("duration s", "duration_s"),
    ("req/s", "request_rate"),
    ("sent/s", "send_rate"),
    ("out tok/s", "output_token_rate"),
    ("goodput/s", "goodput_rate"),
)


def asset_text(name: str) -> str:
    """The text of a vendored asset."""
    return (resources.files("clientswarm.reports") / "assets" / name).read_text("utf-8")


def _e(value: Any) -> str:
    """``value`` as HTML text, escaped (quotes too: safe in attributes)."""
    return html.escape(str(value), quote=True)


def embed_json(data: Any) -> str:
    """JSON safe inside a ``<script>`` element: no ``</script>``, no ``<!--``, no U+2028."""
    text = json.dumps(data, allow_nan=False, separators=(",", ":"), default=str)
    for char, code in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        text = text.replace(char, code)
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if number == number and abs(number) != float("inf") else None


def _ms_value(value: Any) -> float | None:
    number = _finite(value)
    return None if number is None else number * 1e3


# ---------------------------------------------------------------------- tables


def _cell(key: str, text: str, value: Any = None) -> str:
    raw = _finite(value)
    shown = str(value) if isinstance(value, int) and not isinstance(value, bool) else repr(raw)
    data = f' data-value="{shown}"' if raw is not None else ""
    return f'<td class="num" data-key="{_e(key)}"{data}>{_e(text)}</td>'


def _throughput_row(label: str, group: str, stage: str, stats: Mapping[str, Any]) -> str:
    requests = int(stats.get("requests", 0))
    failed = int(stats.get("failed", 0))
    cells = []
    for _, key in _THROUGHPUT_COLUMNS:
        value = stats.get(key)
        if key in ("requests", "succeeded"):
            text = str(int(value or 0))
        elif key == "failed":
            text = f"{failed} ({failed / requests:.1%})" if requests and failed else str(failed)
        else:
            text = _number(_finite(value))
        cells.append(_cell(key, text, value))
    return (
        f'<tr data-group="{_e(group)}" data-stage="{_e(stage)}"><th>{_e(label)}</th>'
        + "".join(cells)
        + "</tr>"
    )


def _blocks(summary: Mapping[str, Any]) -> list[tuple[str, str, str, Mapping[str, Any]]]:
    """(label, group, stage, stats) for each group, each of its stages, the targets side by
    side (when several, or with replicas: each replica after its target), then the total."""
    groups: Mapping[str, Mapping[str, Any]] = summary.get("groups") or {}
    blocks: list[tuple[str, str, str, Mapping[str, Any]]] = []
    for name, stats in groups.items():
        blocks.append((name, name, "", stats))
        for k, stage in enumerate(stats.get("stages") or []):
            blocks.append((_stage_label(name, str(k), stage), name, str(k), stage))
    targets: Mapping[str, Mapping[str, Any]] = summary.get("targets") or {}
    replicas: Mapping[str, Mapping[str, Any]] = summary.get("replicas") or {}
    for name, stats in targets.items():
        if len(targets) > 1 or name in replicas:
            blocks.append((f"target {name}", "", "", stats))
        for url, replica in (replicas.get(name) or {}).items():
            blocks.append((f"· replica {url}", "", "", replica))
    if len(groups) != 1:
        blocks.append(("total", "", "", summary.get("total") or {}))
    return blocks


def throughput_table(summary: Mapping[str, Any]) -> str:
    """The throughput table (as the terminal's): one row per group, stage and the total."""
    head = "".join(f"<th>{_e(h)}</th>" for h, _ in _THROUGHPUT_COLUMNS)
    rows = "".join(_throughput_row(*block) for block in _blocks(summary))
    return f'<table id="throughput"><thead><tr><th>group</th>{head}</tr></thead>{rows}</table>'


def latency_table(summary: Mapping[str, Any]) -> str:
    """Latency percentiles in milliseconds, one block of rows per group, stage and total."""
    keys = ("mean", "p50", "p90", "p99", "max")
    head = "".join(f"<th>{k}</th>" for k in ("count", *keys))
    rows = []
    for label, group, stage, stats in _blocks(summary):
        for i, (metric_label, metric) in enumerate(LATENCY_METRICS):
            dist = stats.get(metric) or {}
            cells = [_cell("count", str(dist.get("count", 0)), dist.get("count", 0))]
            cells += [_cell(k, _ms(_finite(dist.get(k))), dist.get(k)) for k in keys]
            first = f"<th>{_e(label)}</th>" if i == 0 else "<th></th>"
            rows.append(
                f'<tr data-group="{_e(group)}" data-stage="{_e(stage)}" '
                f'data-metric="{_e(metric)}"{" class=block" if i == 0 else ""}>'
                f"{first}<td>{_e(metric_label)}</td>{''.join(cells)}</tr>"
            )
    return (
        f'<table id="latency"><thead><tr><th>group</th><th>metric</th>{head}</tr></thead>'
        f"{''.join(rows)}</table>"
    )


def _errors_table(summary: Mapping[str, Any]) -> str:
    groups: Mapping[str, Mapping[str, Any]] = summary.get("groups") or {}
    rows = [
        f'<tr data-group="{_e(g)}"><th>{_e(g)}</th><td>{_e(kind)}</td>'
        f"{_cell('count', str(count), count)}</tr>"
        for g, stats in groups.items()
        for kind, count in sorted((stats.get("errors") or {}).items())
    ]
    if not rows:
        return '<p class="muted">No errors.</p>'
    return (
        '<table id="errors"><thead><tr><th>group</th><th>kind</th><th>count</th></tr></thead>'
        + "".join(rows)
        + "</table>"
    )


def _thresholds_table(summary: Mapping[str, Any]) -> str:
    results: Sequence[Mapping[str, Any]] = summary.get("thresholds") or []
    if not results:
        return '<p class="muted">No thresholds.</p>'
    rows = []
    for t in results:
        value = t.get("value")
        shown = "no value" if value is None else value
        if isinstance(value, float):
            shown = f"{value:.4g}"
        ok = bool(t.get("passed"))
        rows.append(
            f'<tr class="{"pass" if ok else "fail"}"><td>{_e(t.get("scope"))}</td>'
            f"<td><code>{_e(t.get('expr'))}</code></td><td class=num>{_e(shown)}</td>"
            f"<td>{'pass' if ok else 'FAIL'}</td></tr>"
        )
    return (
        '<table id="thresholds"><thead><tr><th>scope</th><th>threshold</th><th>value</th>'
        f"<th>result</th></tr></thead>{''.join(rows)}</table>"
    )


def _metadata(summary: Mapping[str, Any]) -> str:
    cluster: Mapping[str, Any] = summary.get("cluster") or {}
    run: Mapping[str, Any] = summary.get("run") or {}
    items: list[tuple[str, Any]] = [
        ("cluster", f"{cluster.get('name', '')} ({cluster.get('id', '')})"),
        ("status", cluster.get("status")),
        ("started", cluster.get("started_at")),
        ("ended", cluster.get("ended_at")),
    ]
    for key, value in run.items():
        if key == "targets" and isinstance(value, Mapping):
            value = ", ".join(
                f"{name}: {t.get('url', '')} {t.get('model', '')}"
                for name, t in value.items()
                if isinstance(t, Mapping)
            )
        elif isinstance(value, list):
            value = ", ".join(str(v) for v in value)
        elif isinstance(value, float):
            value = _number(value)
        items.append((key.replace("_", " "), value))
    slo = summary.get("slo")
    if slo:
        items.append(("SLO", ", ".join(f"{k} <= {v}" for k, v in slo.items())))
    items.append(("trustworthy", summary.get("trustworthy")))
    rows = "".join(
        f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in items if v not in (None, "")
    )
    notes = [*(summary.get("warnings") or []), *(summary.get("notes") or [])]
    notes_html = "".join(f"<li>{_e(n)}</li>" for n in notes)
    return f'<table id="metadata">{rows}</table>' + (f"<ul>{notes_html}</ul>" if notes else "")


# ---------------------------------------------------------------------- charts


def _chart(
    chart_id: str,
    title: str,
    x: Sequence[float | None],
    series: Sequence[tuple[str, Sequence[float | None]]],
    *,
    x_label: str,
    y_label: str,
    y_log: bool = False,
    x_labels: Sequence[str] | None = None,
    points: bool = False,
    y2: Sequence[str] = (),
    y2_label: str = "",
    lines: bool = True,
) -> dict[str, Any]:
    """One chart spec that the page's script turns into a uPlot chart."""
    return {
        "id": chart_id,
        "title": title,
        "x": list(x),
        "series": [{"label": label, "values": list(values)} for label, values in series],
        "xLabel": x_label,
        "yLabel": y_label,
        "yLog": y_log,
        "xLabels": list(x_labels) if x_labels is not None else None,
        "points": points,
        "y2": list(y2),
        "y2Label": y2_label,
        "lines": lines,
    }


def _positive(values: Sequence[float | None]) -> bool:
    present = [v for v in values if v is not None]
    return bool(present) and all(v > 0 for v in present)


def distribution_charts(summary: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Per latency metric, the percentile ladder of each group (ms, log axis when positive)."""
    groups: Mapping[str, Mapping[str, Any]] = summary.get("groups") or {}
    charts = []
    for label, key in DIST_METRICS:
        series = [
            (g, [_ms_value((stats.get(key) or {}).get(p)) for p in PERCENTILES])
            for g, stats in groups.items()
            if (stats.get(key) or {}).get("count")
        ]
        if not series:
            continue
        log = all(_positive(values) for _, values in series)
        charts.append(
            _chart(
                f"dist-{key}",
                f"{label} percentiles",
                list(range(len(PERCENTILES))),
                series,
                x_label="percentile",
                y_label=f"{label} (ms)",
                y_log=log,
                x_labels=PERCENTILES,
                points=True,
            )
        )
    return charts


def timeseries_charts(timeseries: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """Per group: throughput, latency, concurrency and errors over time, 1 s buckets."""
    if not timeseries:
        return []
    charts = []
    for index, (group, ts) in enumerate((timeseries.get("groups") or {}).items()):
        t = ts.get("t_s") or []
        if not t:
            continue
        errors: Mapping[str, Sequence[int]] = ts.get("errors") or {}
        error_total = [sum(counts[i] for counts in errors.values()) for i in range(len(t))]
        charts.append(
            _chart(
                f"ts-{index}-rate",
                f"{group}: throughput",
                t,
                [
                    ("completed req/s", ts.get("requests_per_s") or []),
                    ("errors/s", error_total),
                    ("output tok/s", ts.get("output_tokens_per_s") or []),
                ],
                x_label="time since start (s)",
                y_label="req/s",
                y2=("output tok/s",),
                y2_label="tok/s",
            )
        )
        lat = [
            (name, [_ms_value(v) for v in ts.get(key) or []])
            for name, key in (
                ("TTFT p50", "ttft_s_p50"),
                ("TTFT p99", "ttft_s_p99"),
                ("ITL p50", "itl_s_p50"),
                ("ITL p99", "itl_s_p99"),
            )
        ]
        charts.append(
            _chart(
                f"ts-{index}-latency",
                f"{group}: latency",
                t,
                lat,
                x_label="time since start (s)",
                y_label="ms",
                y_log=all(_positive(v) for _, v in lat if any(x is not None for x in v)),
            )
        )
        charts.append(
            _chart(
                f"ts-{index}-load",
                f"{group}: concurrency",
                t,
                [
                    ("in flight", ts.get("in_flight") or []),
                    ("active clients", ts.get("active_clients") or []),
                ],
                x_label="time since start (s)",
                y_label="requests / clients",
            )
        )
        if errors:
            charts.append(
                _chart(
                    f"ts-{index}-errors",
                    f"{group}: errors by kind",
                    t,
                    [(kind, list(counts)) for kind, counts in sorted(errors.items())],
                    x_label="time since start (s)",
                    y_label="errors/s",
                )
            )
    for index, (target, series) in enumerate((timeseries.get("server") or {}).items()):
        t = series.get("t_s") or []
        if not t:
            continue
        usage = [None if v is None else 100.0 * v for v in series.get("kv_cache_usage") or []]
        lines = [
            (name, list(series.get(key) or [None] * len(t)))
            for name, key in (("running", "running"), ("waiting", "waiting"))
        ]
        charts.append(
            _chart(
                f"ts-engine-{index}",
                f"engine of {target}: requests and KV cache",
                t,
                [*lines, *([("KV cache %", usage)] if any(v is not None for v in usage) else [])],
                x_label="time since start (s)",
                y_label="requests",
                y2=["KV cache %"],
                y2_label="KV cache used (%)",
            )
        )
    return charts


def stage_charts(summary: Mapping[str, Any]) -> list[dict[str, Any]]:
    """For each staged group: latency vs achieved throughput, and goodput vs set point."""
    charts = []
    groups: Mapping[str, Mapping[str, Any]] = summary.get("groups") or {}
    for index, (group, stats) in enumerate(groups.items()):
        stages: list[Mapping[str, Any]] = stats.get("stages") or []
        if len(stages) < 2:
            continue
        by_rate = sorted(stages, key=lambda st: _finite(st.get("request_rate")) or 0.0)
        lat = [
            (f"{label} {p}", [_ms_value((st.get(key) or {}).get(p)) for st in by_rate])
            for label, key in (("TTFT", "ttft_s"), ("ITL", "itl_s"), ("E2E", "e2e_s"))
            for p in ("p50", "p99")
        ]
        charts.append(
            _chart(
                f"stage-{index}-latency",
                f"{group}: latency vs throughput",
                [_finite(st.get("request_rate")) or 0.0 for st in by_rate],
                lat,
                x_label="achieved throughput (req/s)",
                y_label="ms",
                y_log=all(_positive(v) for _, v in lat if any(x is not None for x in v)),
                points=True,
                lines=False,  # an overloaded stage may achieve less: no line between stages
            )
        )
        # An automatic sweep's rate stages (req/s) follow closed-loop ones (clients): one axis.
        rated = [st for st in stages if st.get("set_point_unit") == "req/s"]
        by_point = sorted(
            rated if rated and len(rated) < len(stages) else stages,
            key=lambda st: _finite(st.get("set_point")) or 0.0,
        )
        unit = str(by_point[0].get("set_point_unit") or "")
        knee_point = knee(by_point) if unit == "req/s" else None
        charts.append(
            _chart(
                f"stage-{index}-goodput",
                f"{group}: throughput and goodput vs set point",
                [_finite(st.get("set_point")) or 0.0 for st in by_point],
                [
                    ("achieved req/s", [_finite(st.get("request_rate")) for st in by_point]),
                    ("goodput req/s", [_finite(st.get("goodput_rate")) for st in by_point]),
                    *(
                        [("offered (set point)", [_finite(st.get("set_point")) for st in by_point])]
                        if unit == "req/s"
                        else []
                    ),
                    *(
                        [
                            (
                                "knee",
                                [
                                    _finite(st.get("request_rate"))
                                    if st.get("set_point") == knee_point
                                    else None
                                    for st in by_point
                                ],
                            )
                        ]
                        if knee_point is not None
                        else []
                    ),
                ],
                x_label=f"set point ({unit})" if unit else "set point",
                y_label="req/s",
                points=True,
            )
        )
        capacity: Mapping[str, Any] | None = stats.get("capacity")
        if capacity and capacity.get("probes"):
            charts.append(capacity_chart(index, group, capacity))
    return charts


KEEPS_UP = 0.95
"""A rate stage whose achieved rate is at least this share of its offered one kept up."""


def knee(stages: Sequence[Mapping[str, Any]]) -> float | None:
    """The knee of a rate sweep: the highest offered rate (req/s) the target kept up with
    (achieved at least :data:`KEEPS_UP` of it) below the first one it did not; None when it
    kept up with none."""
    found = None
    for st in sorted(stages, key=lambda st: _finite(st.get("set_point")) or 0.0):
        offered, achieved = _finite(st.get("set_point")), _finite(st.get("request_rate"))
        if offered is None or achieved is None:
            continue
        if achieved < KEEPS_UP * offered:
            break
        found = offered
    return found


def capacity_chart(index: int, group: str, capacity: Mapping[str, Any]) -> dict[str, Any]:
    """A capacity search: each probe's share of requests meeting the SLO by offered rate,
    passes and failures apart, the target share as a line, the capacity marked."""
    probes = sorted(capacity.get("probes") or [], key=lambda p: float(p.get("rate", 0.0)))
    rates = [float(p.get("rate", 0.0)) for p in probes]
    share = [float(p.get("goodput_share", 0.0)) for p in probes]
    best = capacity.get("capacity_rate")
    return _chart(
        f"capacity-{index}",
        f"{group}: share meeting the SLO vs offered rate",
        rates,
        [
            (
                "passed",
                [v if p.get("passed") else None for v, p in zip(share, probes, strict=True)],
            ),
            (
                "failed",
                [None if p.get("passed") else v for v, p in zip(share, probes, strict=True)],
            ),
            ("target", [float(capacity.get("target_goodput", 0.0))] * len(probes)),
            ("capacity", [v if r == best else None for v, r in zip(share, rates, strict=True)]),
        ],
        x_label="offered rate (req/s)",
        y_label="share meeting the SLO",
        points=True,
    )


def server_html(summary: Mapping[str, Any]) -> str:
    """The engines' own view of the run, a line per target (the terminal's); empty when no
    engine metrics were scraped."""
    lines = server_lines(summary.get("server") or {})
    if not lines:
        return ""
    return "<h2>Engine (server side)</h2>" + "".join(
        f'<p class="server">{_e(line)}</p>' for line in lines
    )


def search_html(summary: Mapping[str, Any]) -> str:
    """What each adaptive group found (the terminal's lines), and each capacity search's
    probes as a table; empty without adaptive groups."""
    groups: Mapping[str, Mapping[str, Any]] = summary.get("groups") or {}
    lines = search_lines(groups)
    if not lines:
        return ""
    parts = [f'<p class="search">{_e(line)}</p>' for line in lines]
    for name, stats in groups.items():
        capacity: Mapping[str, Any] | None = stats.get("capacity")
        if not capacity:
            continue
        rows = "".join(
            f'<tr class="{"" if p.get("passed") else "fail"}"><td class="num">{i + 1}</td>'
            f'<td class="num">{_e(p.get("stage"))}</td>'
            f'<td class="num">{_e(set_point_text(float(p.get("rate", 0.0))))}</td>'
            f'<td class="num">{_e(p.get("requests"))}</td>'
            f'<td class="num">{float(p.get("goodput_share", 0.0)):.1%}</td>'
            f"<td>{'pass' if p.get('passed') else 'FAIL'}</td>"
            f'<td class="num">{float(p.get("confidence", 0.0)):.2f}</td></tr>'
            for i, p in enumerate(capacity.get("probes") or [])
        )
        head = "".join(
            f"<th>{h}</th>"
            for h in (
                "probe",
                "stage",
                "rate req/s",
                "requests",
                "met SLO",
                "verdict",
                "confidence",
            )
        )
        parts.append(
            f'<table class="probes" data-group="{_e(name)}"><thead><tr>{head}</tr></thead>'
            f"{rows}</table>"
        )
    return "<h2>Search</h2>" + "".join(parts)


# ---------------------------------------------------------------------- the page


def _config_text(config: Mapping[str, Any] | None) -> str:
    """The configuration as indented JSON, header values redacted, escaped for HTML."""
    if not config:
        return ""
    return _e(json.dumps(redact_config(config), indent=2, default=str))


_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em auto;max-width:1200px;color:#222;padding:0 1em}
h1{font-size:1.5em;margin:.2em 0}h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5em 0}td,th{padding:2px 8px;text-align:left}
td.num{text-align:right;font-variant-numeric:tabular-nums}thead th{border-bottom:1px solid #999}
tr.block th,tr.block td{border-top:1px solid #ddd}.muted{color:#777}
.verdict{font-size:1.1em;padding:.5em .8em;border-radius:4px;display:inline-block}
.ok{background:#e3f4e3}.bad{background:#fbe1e1}tr.fail{color:#b00}
.charts{display:flex;flex-wrap:wrap;gap:1em}.chart{width:560px}
pre{background:#f6f6f6;padding:.8em;overflow:auto;max-height:30em}
"""

_SCRIPT = r"""
(function(){
const data = JSON.parse(document.getElementById("report-data").textContent);
const colors = ["#1f77b4","#d62728","#2ca02c","#ff7f0e","#9467bd","#8c564b","#e377c2","#17becf"];
for (const spec of data.charts) {
  const el = document.getElementById("chart-" + spec.id);
  const series = [{label: spec.xLabel}];
  const dataCols = [spec.x];
  spec.series.forEach(function(s, i){
    const y2 = spec.y2.indexOf(s.label) >= 0;
    series.push({label: s.label, stroke: colors[i % colors.length], width: 2,
      scale: y2 ? "y2" : "y", spanGaps: false,
      points: {show: spec.points || spec.x.length < 3 || !spec.lines, size: spec.lines ? 6 : 9}});
    if (!spec.lines) series[series.length - 1].paths = function(){ return null; };
    dataCols.push(s.values);
  });
  const xAxis = {label: spec.xLabel};
  if (spec.xLabels) {
    xAxis.splits = function(){ return spec.xLabels.map(function(_, i){ return i; }); };
    xAxis.values = function(u, splits){
      return splits.map(function(v){ return spec.xLabels[v] || ""; });
    };
  }
  const axes = [xAxis, {label: spec.yLabel, size: 60}];
  const scales = {x: {time: false}, y: {distr: spec.yLog ? 3 : 1}};
  if (spec.y2.length) {
    axes.push({scale: "y2", side: 1, label: spec.y2Label, size: 60, grid: {show: false}});
    scales.y2 = {distr: 1};
  }
  if (spec.xLabels) scales.x.range = [-0.2, spec.xLabels.length - 0.8];
  new uPlot({title: spec.title, width: 560, height: 300, series: series, axes: axes,
             scales: scales, legend: {live: true}}, dataCols, el);
}
document.body.setAttribute("data-rendered", String(data.charts.length));
})();
"""


def render_report(
    summary: Mapping[str, Any],
    timeseries: Mapping[str, Any] | None,
    config: Mapping[str, Any] | None,
) -> str:
    """The report of one run as one self-contained HTML page (inline CSS, JS and data)."""
    charts = [*stage_charts(summary), *distribution_charts(summary), *timeseries_charts(timeseries)]
    cluster: Mapping[str, Any] = summary.get("cluster") or {}
    line = verdict(summary)
    good = line.startswith("completed")
    title = f"clientswarm report: {cluster.get('name', '')}"

    def section(heading: str, ids: Sequence[str]) -> str:
        if not ids:
            return ""
        divs = "".join(f'<div class="chart" id="chart-{_e(i)}"></div>' for i in ids)
        return f'<h2>{_e(heading)}</h2><div class="charts">{divs}</div>'

    ids = [c["id"] for c in charts]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{_e(title)}</title>",
        f"<style>{asset_text('uPlot.min.css')}</style><style>{_CSS}</style>",
        f'</head><body data-charts="{len(charts)}">',
        f"<h1>{_e(title)}</h1>",
        f'<p class="verdict {"ok" if good else "bad"}" id="verdict">{_e(line)}</p>',
        "<h2>Run</h2>",
        _metadata(summary),
        "<h2>Throughput</h2>",
        throughput_table(summary),
        "<h2>Latency (ms)</h2>",
        latency_table(summary),
        search_html(summary),
        server_html(summary),
        section("Stages", [i for i in ids if i.startswith(("stage-", "capacity-"))]),
        section("Latency distributions", [i for i in ids if i.startswith("dist-")]),
        section("Over time (1 s buckets)", [i for i in ids if i.startswith("ts-")]),
        "<h2>Errors by kind</h2>",
        _errors_table(summary),
        "<h2>Thresholds</h2>",
        _thresholds_table(summary),
        "<h2>Configuration</h2>",
        f'<pre id="config">{_config_text(config)}</pre>',
        f'<script type="application/json" id="report-data">{embed_json({"charts": charts})}'
        "</script>",
        f"<script>{asset_text('uPlot.iife.min.js')}</script>",
        f"<script>{_SCRIPT}</script>",
        '<p class="muted">Charts: uPlot 1.6.32 (MIT licence), embedded.</p>',
        "</body></html>",
    ]
    return "\n".join(parts)


def write_report(
    path: Path,
    summary: Mapping[str, Any],
    timeseries: Mapping[str, Any] | None,
    config: Mapping[str, Any] | None,
) -> None:
    """Write the report of :func:`render_report` to ``path`` (UTF-8)."""
    path.write_text(render_report(summary, timeseries, config), encoding="utf-8")


chart_spec = _chart
"""Public name of the chart spec builder, for the other pages (:mod:`.compare_html`)."""

REPORT_CSS = _CSS
"""The pages' shared style sheet (besides uPlot's)."""


__all__ = [
    "ASSETS",
    "REPORT_CSS",
    "asset_text",
    "chart_spec",
    "embed_json",
    "render_report",
    "write_report",
]
