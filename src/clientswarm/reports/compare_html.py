"""The page of ``clientswarm compare --html``: one self-contained HTML file (inline CSS, JS and
data; uPlot from ``assets/``, as the run's report) that opens from disk with no network.

- The header: the runs (label, source, cluster, the verdict line of each run), the overall
  verdict of the comparison and the ``--fail-if`` gates.
- Per group, and per stage of a staged group: the tables of the terminal (the numbers of the
  comparison of :mod:`clientswarm.reports.compare`, formatted by its formatters; nothing is
  recomputed here), each cell with its raw value in ``data-value``.
- Per group, one chart per latency metric: the CDF of each run, from the runs' raw samples, drawn
  through at most :data:`CDF_POINTS` points per run (the quantiles at evenly spaced
  probabilities, each with the exact share of values at or below it): the page stays small
  whatever the number of samples.
- Per staged group: TTFT p50 and p99 against the achieved request rate of each stage, one curve
  per run and percentile (the comparison's stage numbers); points only for a run whose achieved
  rate falls at a higher set point, where a line would zigzag.

uPlot draws series over one shared x array: each series has values at its own x and ``null``
elsewhere, and is drawn with ``spanGaps``. Text from the runs is escaped with
:func:`html.escape`; the embedded JSON by :func:`~clientswarm.reports.html.embed_json`.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from itertools import pairwise
from typing import Any

import numpy as np

from clientswarm.reports.compare import (
    LATENCIES,
    RunResult,
    _diff_text,
    _fmt,
    _scope,
    _title,
)
from clientswarm.reports.html import REPORT_CSS, asset_text, chart_spec, embed_json
from clientswarm.verdict import verdict

CDF_POINTS = 300
"""The most points of one run's CDF on the page."""

LOG_SPAN = 10.0
"""The CDF's x axis is logarithmic when its latencies span at least this factor."""

SWEEP_PERCENTILES = ("p50", "p99")
"""The TTFT percentiles drawn against the achieved request rate of the stages."""

_DIRECTIONS = ("slower", "faster", "same")


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _round(value: float, digits: int = 5) -> float:
    return float(f"{value:.{digits}g}")


# ---------------------------------------------------------------------- chart data


def cdf_points(values_s: np.ndarray, points: int = CDF_POINTS) -> tuple[list[float], list[float]]:
    """At most ``points`` points (latency in ms, share of values at or below it) of the
    empirical CDF of ``values_s`` (seconds; NaN left out): the sample quantiles at evenly
    spaced probabilities, x ascending and distinct."""
    ordered = np.sort(values_s[np.isfinite(values_s)])
    if not ordered.size:
        return [], []
    probabilities = np.linspace(0.0, 1.0, min(points, ordered.size))
    at = np.unique(np.quantile(ordered, probabilities, method="inverted_cdf"))
    shares = np.searchsorted(ordered, at, side="right") / ordered.size
    xs: list[float] = []
    ys: list[float] = []
    for x_s, share in zip(at.tolist(), shares.tolist(), strict=True):
        x_ms = _round(x_s * 1e3)
        if xs and xs[-1] == x_ms:  # equal once rounded: keep the top of the step
            ys[-1] = _round(share)
            continue
        xs.append(x_ms)
        ys.append(_round(share))
    return xs, ys


def shared_x(
    curves: Sequence[tuple[str, Sequence[float], Sequence[float]]],
) -> tuple[list[float], list[tuple[str, list[float | None]]]]:
    """Curves (label, xs, ys) over the union of their x values, sorted: each curve has its
    values at its own x and None elsewhere (uPlot's one x array per chart)."""
    xs = sorted({x for _, cx, _ in curves for x in cx})
    where = {x: i for i, x in enumerate(xs)}
    out: list[tuple[str, list[float | None]]] = []
    for label, cx, cy in curves:
        column: list[float | None] = [None] * len(xs)
        for x, y in zip(cx, cy, strict=True):
            column[where[x]] = y
        out.append((label, column))
    return xs, out


def log_axis(xs: Sequence[float]) -> bool:
    """A log axis for these ascending values (ms): all positive and spanning at least a decade
    (uPlot's log axis snaps to whole decades and labels few values within one: a narrower
    span reads better on a linear axis)."""
    return bool(xs) and xs[0] > 0 and xs[-1] >= LOG_SPAN * xs[0]


def _styled(
    spec: dict[str, Any], styles: Sequence[Mapping[str, Any]], **extra: Any
) -> dict[str, Any]:
    """``spec`` with each series' style (``color``: its run's index, ``dash``, ``lines``) and
    ``extra`` settings."""
    for series, style in zip(spec["series"], styles, strict=True):
        series.update(style)
    spec.update(extra)
    return spec


def cdf_charts(comparison: Mapping[str, Any], runs: Sequence[RunResult]) -> list[dict[str, Any]]:
    """Per group (and the total, when compared), the CDF of each latency metric of each run
    that has samples: x latency (ms, log axis when :func:`log_axis`), y the cumulative share."""
    charts = []
    for index, part in enumerate(comparison["parts"]):
        if part["stage"] is not None:
            continue
        group: str | None = part["group"]
        for label, key in LATENCIES:
            curves: list[tuple[str, Sequence[float], Sequence[float]]] = []
            styles: list[dict[str, Any]] = []
            for i, run in enumerate(runs):
                if run.samples is None:
                    continue
                xs, ys = cdf_points(run.samples.values(key, group))
                if xs:
                    curves.append((run.label, xs, ys))
                    styles.append({"color": i, "dash": False, "lines": True})
            if not curves:
                continue
            x, series = shared_x(curves)
            spec = chart_spec(
                f"cdf-{index}-{key}",
                f"{_scope(group, None)}: {label} CDF",
                x,
                series,
                x_label=f"{label} (ms)",
                y_label="cumulative share",
            )
            charts.append(_styled(spec, styles, xLog=log_axis(x), yRange=[0, 1], group=group))
    return charts


def _row(part: Mapping[str, Any], metric: str, kind: str) -> Mapping[str, Any] | None:
    return next((r for r in part[kind] if r["metric"] == metric), None)


def sweep_charts(comparison: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Per staged group: TTFT p50 and p99 (ms) against the achieved request rate (req/s) of
    each common stage, one curve per run and percentile; a run whose achieved rate does not
    rise with the set point (an overloaded stage) gets its points without a line."""
    labels = [r["label"] for r in comparison["runs"]]
    charts = []
    for index, whole in enumerate(comparison["parts"]):
        group = whole["group"]
        if whole["stage"] is not None:
            continue
        stages = [p for p in comparison["parts"] if p["group"] == group and p["stage"] is not None]
        if not stages:
            continue
        curves: list[tuple[str, Sequence[float], Sequence[float]]] = []
        styles: list[dict[str, Any]] = []
        for i, label in enumerate(labels):
            for k, percentile in enumerate(SWEEP_PERCENTILES):
                by_load = []  # (set point, achieved req/s, TTFT ms) of each stage
                for n, part in enumerate(stages):
                    rate = _row(part, "request_rate", "rates")
                    ttft = _row(part, f"ttft_s.{percentile}", "latency")
                    x = None if rate is None else rate["values"][i]
                    y = None if ttft is None else ttft["values"][i]
                    point = (part["set_points"] or [None] * len(labels))[i]
                    if x is not None and y is not None:
                        load = float(point) if isinstance(point, int | float) else float(n)
                        by_load.append((load, _round(x), _round(y * 1e3)))
                # An overloaded stage may achieve less than a lighter one: then points, no line
                by_load.sort()
                rising = all(a[1] < b[1] for a, b in pairwise(by_load))
                points = sorted((x, y) for _, x, y in by_load)
                curves.append(
                    (f"{label} TTFT {percentile}", [p[0] for p in points], [p[1] for p in points])
                )
                styles.append({"color": i, "dash": k > 0, "lines": rising})
        x, series = shared_x(curves)
        if not x:
            continue
        present = sorted(v for _, values in series for v in values if v is not None)
        spec = chart_spec(
            f"sweep-{index}",
            f"{group}: TTFT vs achieved throughput, per stage",
            x,
            series,
            x_label="achieved request rate (req/s)",
            y_label="TTFT (ms)",
            y_log=log_axis(present),
            points=True,
        )
        charts.append(_styled(spec, styles, xLog=False, yRange=None, group=group))
    return charts


# ---------------------------------------------------------------------- tables


def _cell(run: str, key: str, text: str, value: Any = None, css: str = "num") -> str:
    data = "" if value is None else f' data-value="{float(value)!r}"'
    return f'<td class="{css}" data-run="{_e(run)}" data-key="{key}"{data}>{_e(text)}</td>'


def part_table(part: Mapping[str, Any], labels: Sequence[str], index: int) -> str:
    """One part (a group, a stage or the total) side by side, as the terminal's table: rates,
    then latencies (ms), with each later run's difference from A and its verdict."""
    head = [f"<th>{_e(labels[0])}</th>"]
    for label in labels[1:]:
        head += [
            f"<th>{_e(label)}</th>",
            f"<th>{_e(label)} - {_e(labels[0])}</th>",
            f"<th>{_e(label)} verdict</th>",
        ]
    rows = []
    for kind, ms in (("rates", False), ("latency", True)):
        for n, row in enumerate(part[kind]):
            cells = [_cell(labels[0], "value", _fmt(row["values"][0], ms), row["values"][0])]
            for value, change in zip(row["values"][1:], row["changes"], strict=True):
                run = change["run"]
                cells += [
                    _cell(run, "value", _fmt(value, ms), value),
                    _cell(run, "diff", _diff_text(change, ms), change.get("diff")),
                ]
                if ms:
                    direction = change.get("direction") or "none"
                    cells.append(_cell(run, "verdict", change["verdict"], css=direction))
                else:
                    cells.append("<td></td>")
            name = f"{row['label'].strip()}{' ms' if ms else ''}"
            block = ' class="block"' if ms and n == 0 else ""
            rows.append(
                f'<tr data-metric="{_e(row["metric"])}"{block}><th>{_e(name)}</th>'
                f"{''.join(cells)}</tr>"
            )
    group = "" if part["group"] is None else part["group"]
    stage = "" if part["stage"] is None else part["stage"]
    return (
        f'<h3>{_e(_title(part, list(labels)))}</h3><table class="part" id="part-{index}" '
        f'data-group="{_e(group)}" data-stage="{_e(stage)}"><thead><tr><th>metric</th>'
        f"{''.join(head)}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def runs_table(comparison: Mapping[str, Any], runs: Sequence[RunResult]) -> str:
    """The compared runs: label, role, source, cluster and the verdict line of each."""
    rows = []
    for i, (info, run) in enumerate(zip(comparison["runs"], runs, strict=True)):
        cluster: Mapping[str, Any] = info.get("cluster") or {}
        role = "baseline" if i == 0 else "compared with A"
        samples = "" if info.get("samples") else " (no samples)"
        rows.append(
            f'<tr data-run="{_e(info["label"])}"><th>{_e(info["label"])}</th><td>{role}</td>'
            f"<td><code>{_e(info['source'])}</code>{samples}</td>"
            f"<td>{_e(cluster.get('name', '?'))} ({_e(cluster.get('id', '?'))})</td>"
            f"<td>{_e(cluster.get('started_at') or '')}</td>"
            f'<td class="run-verdict">{_e(verdict(run.summary))}</td></tr>'
        )
    return (
        '<table id="runs"><thead><tr><th>run</th><th>role</th><th>source</th><th>cluster</th>'
        f"<th>started</th><th>verdict</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def gates_table(gates: Sequence[Mapping[str, Any]]) -> str:
    """The ``--fail-if`` checks: expression, scope, run, baseline, value, change, result."""
    if not gates:
        return '<p class="muted">No --fail-if gates.</p>'
    rows = []
    for g in gates:
        change = g["change"]
        shown = (
            "no value"
            if change is None
            else (f"{change * 100:+.1f} %" if g["relative"] else f"{change:+.4g}")
        )
        failed = bool(g["failed"])
        cells = [
            f"<td><code>{_e(g['expr'])}</code></td>",
            f"<td>{_e(g['scope'])}</td><td>{_e(g['run'])}</td>",
            *(
                f'<td class="num">{"-" if g[k] is None else _e(f"{g[k]:.4g}")}</td>'
                for k in ("baseline", "value")
            ),
            f'<td class="num">{_e(shown)}</td><td>{"FAILED" if failed else "ok"}</td>',
        ]
        rows.append(f'<tr class="{"fail" if failed else "pass"}">{"".join(cells)}</tr>')
    head = "".join(
        f"<th>{h}</th>"
        for h in ("expression", "scope", "run", "baseline", "value", "change", "result")
    )
    return f'<table id="gates"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def overall_verdict(comparison: Mapping[str, Any]) -> tuple[str, str]:
    """(one line, CSS class): the gates' result, then per later run how many latency
    percentiles were judged slower, faster or not significantly different."""
    gates = comparison["fail_if"]
    failed = sum(1 for g in gates if g["failed"])
    if not gates:
        line, css = "no --fail-if gates", "neutral"
    elif failed:
        line, css = f"FAILED: {failed} of {len(gates)} --fail-if checks", "bad"
    else:
        line, css = f"passed: every --fail-if check held ({len(gates)})", "ok"
    for run in comparison["runs"][1:]:
        counts = dict.fromkeys((*_DIRECTIONS, None), 0)
        for part in comparison["parts"]:
            for row in part["latency"]:
                for change in row["changes"]:
                    if change["run"] == run["label"]:
                        counts[change.get("direction")] += 1
        judged = sum(counts[d] for d in _DIRECTIONS)
        text = (
            f"{run['label']} vs A: slower in {counts['slower']}, faster in {counts['faster']}, "
            f"no significant difference in {counts['same']} of {judged} latency percentiles"
        )
        if counts[None]:
            text += f" ({counts[None]} not judged: no samples)"
        line += f" · {text}"
    return line, css


# ---------------------------------------------------------------------- the page


_CSS = """
h3{font-size:1em;margin:1.2em 0 .2em}td.slower{color:#b00}td.faster{color:#070}
td.same,td.none{color:#777}.neutral{background:#eef}table.part td,table.part th{white-space:nowrap}
tr.pass td:last-child{color:#070}
"""

_SCRIPT = r"""
(function(){
const data = JSON.parse(document.getElementById("compare-data").textContent);
const colors = ["#1f77b4","#d62728","#2ca02c","#ff7f0e","#9467bd","#8c564b","#e377c2","#17becf"];
function shown(u, v){ return v == null ? "-" : String(+v.toPrecision(4)); }
for (const spec of data.charts) {
  const el = document.getElementById("chart-" + spec.id);
  const series = [{label: spec.xLabel, value: shown}];
  const cols = [spec.x];
  spec.series.forEach(function(s){
    const one = {label: s.label, stroke: colors[s.color % colors.length], width: 2,
      spanGaps: true, value: shown, points: {show: spec.points, size: 7}};
    if (s.dash) { one.dash = [6, 4]; one.points.fill = one.stroke; }  // p99: dashed, dots filled
    if (!s.lines) one.paths = function(){ return null; };
    series.push(one);
    cols.push(s.values);
  });
  const y = spec.yRange ? {range: spec.yRange} : {distr: spec.yLog ? 3 : 1};
  const x = {time: false, distr: spec.xLog ? 3 : 1};
  new uPlot({title: spec.title, width: 560, height: 320, series: series,
             axes: [{label: spec.xLabel}, {label: spec.yLabel, size: 60}],
             scales: {x: x, y: y},
             legend: {live: true}}, cols, el);
}
document.body.setAttribute("data-rendered", String(data.charts.length));
})();
"""


def _charts_div(charts: Sequence[Mapping[str, Any]]) -> str:
    if not charts:
        return ""
    divs = "".join(f'<div class="chart" id="chart-{_e(c["id"])}"></div>' for c in charts)
    return f'<div class="charts">{divs}</div>'


def _settings_line(comparison: Mapping[str, Any]) -> str:
    s = comparison["settings"]
    return (
        f"Rates are compared as numbers. Latencies: {s['confidence'] * 100:g} % bootstrap "
        f"interval ({s['resamples']} resamples, at most {s['max_samples']} values) of the "
        "difference of each percentile, from the raw samples; 'no significant difference' when "
        f"it contains 0 or the change is under {s['min_effect'] * 100:g} % (--min-effect). "
        "Slower = higher latency than A. CDFs from the raw samples, drawn through at most "
        f"{CDF_POINTS} quantiles per run."
    )


def render_comparison_html(comparison: Mapping[str, Any], runs: Sequence[RunResult]) -> str:
    """The comparison (:func:`~clientswarm.reports.compare.compare_runs` of ``runs``) as one
    self-contained HTML page."""
    labels = [r["label"] for r in comparison["runs"]]
    cdfs = cdf_charts(comparison, runs)
    sweeps = sweep_charts(comparison)
    names = [str((r.get("cluster") or {}).get("name", "?")) for r in comparison["runs"]]
    title = "clientswarm comparison: " + " vs ".join(
        f"{label} {name}" for label, name in zip(labels, names, strict=True)
    )
    line, css = overall_verdict(comparison)
    body: list[str] = []
    parts: Sequence[Mapping[str, Any]] = comparison["parts"]
    for index, whole in enumerate(parts):  # a group: its table, charts, then its stages
        group = whole["group"]
        if whole["stage"] is not None:
            continue
        body += [
            f"<h2>{_e(_scope(group, None))}</h2>",
            part_table(whole, labels, index),
            _charts_div([c for c in cdfs if c["group"] == group]),
            _charts_div([c for c in sweeps if c["group"] == group]),
            *(
                part_table(part, labels, k)
                for k, part in enumerate(parts)
                if part["group"] == group and part["stage"] is not None
            ),
        ]
    notes = "".join(f"<li>{_e(n)}</li>" for n in comparison["notes"])
    charts = [*cdfs, *sweeps]
    page = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{_e(title)}</title>",
        f"<style>{asset_text('uPlot.min.css')}</style><style>{REPORT_CSS}{_CSS}</style>",
        f'</head><body data-charts="{len(charts)}">',
        f"<h1>{_e(title)}</h1>",
        f'<p class="verdict {css}" id="verdict">{_e(line)}</p>',
        "<h2>Runs</h2>",
        runs_table(comparison, runs),
        "<h2>Regression gates (--fail-if)</h2>",
        gates_table(comparison["fail_if"]),
        *body,
        f'<h2>Notes</h2><ul id="notes">{notes}</ul>' if notes else "",
        f'<p class="muted">{_e(_settings_line(comparison))}</p>',
        f'<script type="application/json" id="compare-data">{embed_json({"charts": charts})}'
        "</script>",
        f"<script>{asset_text('uPlot.iife.min.js')}</script>",
        f"<script>{_SCRIPT}</script>",
        '<p class="muted">Charts: uPlot 1.6.32 (MIT licence), embedded.</p>',
        "</body></html>",
    ]
    return "\n".join(page)


__all__ = [
    "CDF_POINTS",
    "cdf_charts",
    "cdf_points",
    "render_comparison_html",
    "shared_x",
    "sweep_charts",
]
