"""The terminal report of a run: throughput and latency tables, errors, warnings, definitions.

Two narrow tables rather than one wide one, so the report reads at 100-120 columns. The steps of
a user-defined interaction (a group's ``steps``) get rows of their own, indented under their
group (``  ↳ retrieve``); the total counts interactions only, like the group rows. A group with
load stages gets a row per stage under its own whole-run row (``chat · stage 1 (20 req/s)``,
its ``stages``). A run with
several targets gets a row per target (``target a``) between the groups and the total; one
with one target shows none (its row would repeat the total's).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from clientswarm.reports.caveats import SHORT, is_short, short_rates_line, total_mix_line

#: Latency rows of each group: (label, Stats key).
LATENCY_METRICS: tuple[tuple[str, str], ...] = (
    ("TTFT", "ttft_s"),
    ("ITL", "itl_s"),
    ("TPOT", "tpot_s"),
    ("E2E", "e2e_s"),
    ("sched lag", "schedule_lag_s"),
)

DEFINITIONS = (
    "TTFT = send → first token · ITL = gap between tokens · TPOT = (E2E - TTFT) / (tokens - 1) · "
    "E2E = send → end of answer · sched lag = send - scheduled time · req/s counts completed "
    "requests (ok or failed) over the run's duration · warm-up excluded · goodput = ok requests "
    "meeting every SLO"
)

_TOTAL = "total"
_MISSING = "-"


def render_summary(summary: Mapping[str, Any], console: Console) -> None:
    """Print the summary of one cluster (the summary.json shape) on ``console``."""
    groups: Mapping[str, Mapping[str, Any]] = summary.get("groups", {})
    total: Mapping[str, Any] = summary.get("total", {})
    targets = _target_rows(summary.get("targets", {}), summary.get("replicas") or {})
    console.print(_title(summary.get("cluster", {})))
    console.print(throughput_table(groups, total, targets))
    short = short_rates_line(_throughput_rows(groups, total, targets))
    if short is not None:
        console.print(Text(short, style="dim"))
    console.print(latency_table(groups, total, targets))
    for name, stats in groups.items():
        if stats.get("capacity"):
            console.print(probes_table(name, stats["capacity"]))
    for line in search_lines(groups):
        console.print(Text(line, style="bold"))
    for line in server_lines(summary.get("server") or {}):
        console.print(Text(line), soft_wrap=True)
    errors = _errors_line(groups)
    if errors is not None:
        console.print(errors)
    excluded = _excluded_line(total)
    if excluded is not None:
        console.print(excluded)
    checks = thresholds_table(summary.get("thresholds") or [])
    if checks is not None:
        console.print(checks)
    trustworthy = summary.get("trustworthy", True)
    for warning in summary.get("warnings", []):
        style = "yellow" if trustworthy else "bold red"
        console.print(Text(f"warning: {warning}", style=style))
    if not trustworthy:
        console.print(
            Text("This run is NOT trustworthy: see the warnings above.", style="bold red")
        )
    for note in summary.get("notes", []):
        console.print(Text(f"note: {note}", style="dim"))
    console.print(Text(DEFINITIONS + _slo_text(summary.get("slo")), style="dim"))


def throughput_table(
    groups: Mapping[str, Mapping[str, Any]],
    total: Mapping[str, Any],
    targets: Mapping[str, Mapping[str, Any]] | None = None,
) -> Table:
    """One row per group, one per target when there are several, and a total row: counts and
    per-second rates."""
    table = Table(title="Throughput", box=box.SIMPLE_HEAD, title_justify="left")
    table.add_column("group", no_wrap=True)
    for header in (
        "requests",
        "ok",
        "failed",
        "duration s",
        "req/s",
        "send/s",
        "out tok/s",
        "goodput/s",
    ):
        table.add_column(header, justify="right", no_wrap=True)
    for name, stats in groups.items():
        table.add_row(name, *_throughput_cells(stats))
        for key, stage_stats in _stages(stats).items():
            table.add_row(_stage_label(name, key, stage_stats), *_throughput_cells(stage_stats))
        for step, step_stats in _steps(stats).items():
            table.add_row(_step_label(step), *_throughput_cells(step_stats), style="dim")
    table.add_section()
    for name, stats in _shown_targets(targets).items():
        table.add_row(_target_label(name), *_throughput_cells(stats))
    table.add_row(Text(_TOTAL, style="bold"), *_throughput_cells(total), style="bold")
    return table


def latency_table(
    groups: Mapping[str, Mapping[str, Any]],
    total: Mapping[str, Any],
    targets: Mapping[str, Mapping[str, Any]] | None = None,
) -> Table:
    """Latency percentiles in milliseconds: one block of rows per group, one per target when
    there are several, then the total."""
    table = Table(title="Latency (ms)", box=box.SIMPLE_HEAD, title_justify="left")
    table.add_column("group", no_wrap=True)
    table.add_column("metric", no_wrap=True)
    for header in ("count", "mean", "p50", "p90", "p99", "max"):
        table.add_column(header, justify="right", no_wrap=True)
    blocks: list[tuple[str, Mapping[str, Any], str | None]] = []
    for name, stats in groups.items():
        blocks.append((name, stats, None))
        blocks.extend((_stage_label(name, k, st), st, None) for k, st in _stages(stats).items())
        blocks.extend((_step_label(step), st, "dim") for step, st in _steps(stats).items())
    blocks.extend((_target_label(t), st, None) for t, st in _shown_targets(targets).items())
    if len(groups) != 1:
        blocks.append((_TOTAL, total, "bold"))
        table.caption = total_mix_line(groups, LATENCY_METRICS)
        table.caption_justify = "left"
    for name, stats, style in blocks:
        for i, (label, key) in enumerate(LATENCY_METRICS):
            dist = stats.get(key) or {}
            table.add_row(
                name if i == 0 else "",
                label,
                str(dist.get("count", 0)),
                *(_ms(dist.get(k)) for k in ("mean", "p50", "p90", "p99", "max")),
                style=style,
            )
        table.add_section()
    return table


def _steps(stats: Mapping[str, Any]) -> Mapping[str, Mapping[str, Any]]:
    """The Stats of a group's steps by name (none for a group without steps)."""
    steps: Mapping[str, Mapping[str, Any]] = stats.get("steps") or {}
    return steps


def _stages(stats: Mapping[str, Any]) -> Mapping[str, Mapping[str, Any]]:
    """The Stats of a group's load stages by index (none for a group without stages)."""
    stages: list[Mapping[str, Any]] = stats.get("stages") or []
    return {str(k): stage for k, stage in enumerate(stages)}


def _stage_label(group: str, key: str, stats: Mapping[str, Any]) -> str:
    """A stage's row label with its set point, e.g. ``chat · stage 1 (20 req/s)``, and its
    role in an adaptive load (``chat · stage 3 probe (40 req/s)``)."""
    point, unit = stats.get("set_point"), stats.get("set_point_unit")
    role = stats.get("role")
    label = f"{group} · stage {key}" + (f" {role}" if role else "")
    if point is None:
        return label
    return f"{label} ({set_point_text(point)} {unit or ''})".replace(" )", ")")


def set_point_text(value: float) -> str:
    """A set point (rate or clients) to four significant digits, without an exponent."""
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"


def search_lines(groups: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """What each adaptive group found: an automatic sweep's end points and rates, a capacity
    search's capacity and bracket (one line each; empty without adaptive groups)."""
    lines = []
    for name, stats in groups.items():
        sweep: Mapping[str, Any] | None = stats.get("sweep")
        if sweep is not None:
            rates = ", ".join(set_point_text(r) for r in sweep.get("rates") or [])
            synchronous = _rate_text(sweep.get("synchronous_rate"))
            throughput = _rate_text(sweep.get("throughput_rate"))
            line = f"{name}: automatic sweep: synchronous {synchronous}, throughput {throughput}"
            line += f"; rates {rates} req/s" if rates else ""
            lines.append(line + (f"; {sweep['reason']}" if sweep.get("reason") else ""))
        capacity: Mapping[str, Any] | None = stats.get("capacity")
        if capacity is not None:
            lines.append(f"{name}: {capacity_text(capacity)}")
    return lines


def server_lines(server: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The engines' own view of the run (``summary.json``'s ``server``), a line per target."""

    def peak(
        engine: Mapping[str, Any], name: str, scale: float = 1.0, suffix: str = ""
    ) -> str | None:
        found = engine.get(name) or {}
        if found.get("max") is None:
            return None
        p50 = found.get("p50")
        mid = f"p50 {found['p50'] * scale:.3g}{suffix}, " if p50 is not None else ""
        return f"{name.replace('_', ' ')} {mid}max {found['max'] * scale:.3g}{suffix}"

    lines = []
    for target, engine in server.items():
        parts = [
            peak(engine, "running"),
            peak(engine, "waiting"),
            peak(engine, "kv_cache_usage", 100.0, "%"),
            *(
                [f"preemptions {engine['preemptions']:g}"]
                if engine.get("preemptions") is not None
                else []
            ),
            *(
                [f"prefix cache hits {engine['prefix_cache_hit_rate']:.1%}"]
                if engine.get("prefix_cache_hit_rate") is not None
                else []
            ),
        ]
        gap = ((engine.get("vs_client") or {}).get("ttft_s")) or {}
        if gap.get("engine_mean") is not None and gap.get("client_mean") is not None:
            parts.append(
                f"TTFT mean: engine {_ms(gap['engine_mean'])} ms, clients "
                f"{_ms(gap['client_mean'])} ms (+{_ms(gap['gap_mean_s'])} ms outside the engine)"
            )
        name = engine.get("engine") or "unknown engine"
        shown = ", ".join(p for p in parts if p)
        lines.append(f"engine of {target} ({name}, {engine.get('scrapes', 0)} scrapes): {shown}")
    return lines


def capacity_text(capacity: Mapping[str, Any]) -> str:
    """A capacity search's result in one sentence."""
    slo = ", ".join(f"{k} ≤ {v:g} s" for k, v in (capacity.get("slo") or {}).items())
    share = f"{capacity.get('target_goodput', 0):.0%}"
    low, high = capacity.get("bracket") or (0.0, None)
    rate = capacity.get("capacity_rate")
    found = _rate_text(rate) if rate is not None else "none (even the first probe failed)"
    where = (
        f"in [{set_point_text(low)}, {set_point_text(high)}) req/s"
        if high is not None
        else f"at least {set_point_text(low)} req/s (no probe failed)"
    )
    probes = len(capacity.get("probes") or [])
    return (
        f"capacity at SLO ({slo}; {share} of requests): {found}, {where}; "
        f"{probes} probe(s); {capacity.get('reason', '')}"
    )


def _rate_text(value: float | None) -> str:
    return _MISSING if value is None else f"{set_point_text(value)} req/s"


def probes_table(name: str, capacity: Mapping[str, Any]) -> Table:
    """A capacity search's probes: rate, requests, share meeting the SLO, verdict, confidence."""
    table = Table(title=f"Capacity search: {name}", box=box.SIMPLE_HEAD, title_justify="left")
    for column in ("probe", "stage", "rate req/s", "requests", "met SLO", "verdict", "confidence"):
        table.add_column(column, justify="left" if column == "verdict" else "right")
    for i, probe in enumerate(capacity.get("probes") or []):
        passed = bool(probe.get("passed"))
        table.add_row(
            str(i + 1),
            str(probe.get("stage")),
            set_point_text(float(probe.get("rate", 0.0))),
            str(probe.get("requests")),
            f"{probe.get('goodput_share', 0.0):.1%}",
            Text("pass" if passed else "FAIL", style="green" if passed else "red"),
            f"{probe.get('confidence', 0.0):.2f}",
        )
    return table


def _step_label(step: str) -> str:
    """A step's row label, indented under its group."""
    return f"  ↳ {step}"


def _target_rows(
    targets: Mapping[str, Mapping[str, Any]], replicas: Mapping[str, Mapping[str, Any]]
) -> dict[str, Mapping[str, Any]]:
    """The rows of targets and replicas, by label: each target when there are several or it
    has replicas (``target NAME``), then each of its replicas (``· replica URL``)."""
    rows: dict[str, Mapping[str, Any]] = {}
    for name, stats in targets.items():
        if len(targets) > 1 or name in replicas:
            rows[f"target {name}"] = stats
        for url, replica_stats in (replicas.get(name) or {}).items():
            rows[f"  · replica {url}"] = replica_stats
    return rows


def _shown_targets(
    targets: Mapping[str, Mapping[str, Any]] | None,
) -> Mapping[str, Mapping[str, Any]]:
    """The target rows, by label: :func:`_target_rows`' when given those, else the targets
    themselves when there are several."""
    if not targets:
        return {}
    if all(label.startswith(_ROW_PREFIXES) for label in targets):
        return targets
    return {f"target {name}": stats for name, stats in targets.items()} if len(targets) > 1 else {}


_ROW_PREFIXES = ("target ", "  · replica ")


def _target_label(label: str) -> str:
    """A target's (or replica's) row label."""
    return label


def _title(cluster: Mapping[str, Any]) -> Text:
    name = cluster.get("name") or "cluster"
    text = Text(str(name), style="bold")
    if cluster.get("id"):
        text.append(f" ({cluster['id']})", style="dim")
    if cluster.get("status"):
        text.append(f" · {cluster['status']}")
    return text


def _throughput_cells(stats: Mapping[str, Any]) -> list[str]:
    requests = int(stats.get("requests", 0))
    failed = int(stats.get("failed", 0))
    failed_cell = f"{failed} ({failed / requests:.1%})" if requests and failed else str(failed)
    return [
        str(requests),
        str(stats.get("succeeded", 0)),
        failed_cell,
        _number(stats.get("duration_s")),
        *(_rate(stats, key) for key in ("request_rate", "send_rate", "output_token_rate")),
        _rate(stats, "goodput_rate"),
    ]


def _rate(stats: Mapping[str, Any], key: str) -> str:
    """A rate, or an en dash when its span is too short to mean anything (``caveats``)."""
    return SHORT if is_short(stats, key) else _number(stats.get(key))


def _throughput_rows(
    groups: Mapping[str, Mapping[str, Any]],
    total: Mapping[str, Any],
    targets: Mapping[str, Mapping[str, Any]] | None,
) -> list[tuple[str, Mapping[str, Any]]]:
    """The rows of the throughput table with their labels, in its order."""
    rows: list[tuple[str, Mapping[str, Any]]] = []
    for name, stats in groups.items():
        rows.append((name, stats))
        rows.extend((_stage_label(name, k, st), st) for k, st in _stages(stats).items())
        rows.extend((f"{name} step {step}", st) for step, st in _steps(stats).items())
    rows.extend((_target_label(t), st) for t, st in _shown_targets(targets).items())
    rows.append((_TOTAL, total))
    return rows


def _slo_text(slo: Mapping[str, float] | None) -> str:
    """The objectives goodput was measured against, e.g. `` (SLO: TTFT <= 500 ms)``."""
    if not slo:
        return " (no SLO: goodput = ok requests)"
    labels = {"ttft_s": "TTFT", "tpot_s": "TPOT", "itl_s": "mean ITL", "e2e_s": "E2E"}
    parts = [f"{labels.get(k, k)} <= {_ms(v)} ms" for k, v in slo.items() if v is not None]
    return f" (SLO: {', '.join(parts)})"


def _errors_line(groups: Mapping[str, Mapping[str, Any]]) -> Text | None:
    labelled = [
        (label, errors)
        for name, stats in groups.items()
        for label, errors in [
            (name, stats.get("errors")),
            *((_stage_label(name, k, st), st.get("errors")) for k, st in _stages(stats).items()),
            *((f"{name} ↳ {step}", st.get("errors")) for step, st in _steps(stats).items()),
        ]
    ]
    parts = [
        f"{label}: " + ", ".join(f"{kind} x{count}" for kind, count in errors.items())
        for label, errors in labelled
        if errors
    ]
    if not parts:
        return None
    return Text("errors: " + " · ".join(parts), style="red")


def thresholds_table(results: Sequence[Mapping[str, Any]]) -> Table | None:
    """The thresholds judged on the final statistics (summary.json's ``thresholds``), one row
    each with its value and whether it passed; None without thresholds."""
    if not results:
        return None
    failed = sum(not r.get("passed") for r in results)
    verdict = f"{failed} of {len(results)} failed" if failed else "all passed"
    table = Table(title=f"Thresholds: {verdict}", box=box.SIMPLE_HEAD, title_justify="left")
    table.add_column("scope", no_wrap=True)
    table.add_column("threshold", no_wrap=True)
    table.add_column("value", justify="right", no_wrap=True)
    table.add_column("result", no_wrap=True)
    for r in results:
        value = r.get("value")
        shown = "no value" if value is None else f"{value:.4g}"
        result = Text("pass", style="green") if r.get("passed") else Text("FAIL", style="bold red")
        table.add_row(str(r.get("scope")), str(r.get("expr")), shown, result)
    return table


def _excluded_line(total: Mapping[str, Any]) -> Text | None:
    """Samples left out of the statistics: warm-up, and requests cut off by a stop."""
    warmup, cut = total.get("warmup_excluded", 0), total.get("cancelled_excluded", 0)
    parts = [f"{warmup} warm-up"] if warmup else []
    if cut:
        parts.append(f"{cut} cut off by the stop")
    return Text(f"excluded: {', '.join(parts)}", style="dim") if parts else None


def _number(value: float | None) -> str:
    """A rate or duration with as many decimals as its size deserves."""
    if value is None:
        return _MISSING
    size = abs(value)
    if size >= 99.95:
        return f"{value:,.0f}"
    if size >= 9.995:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _ms(seconds: float | None) -> str:
    """Seconds shown as milliseconds, with three significant digits or more."""
    if seconds is None:
        return _MISSING
    ms = seconds * 1e3
    size = abs(ms)
    # Thresholds sit just below each power of ten so that 99.96 prints "100", not "100.0".
    if size >= 99.95:
        return f"{ms:,.0f}"
    if size >= 9.995:
        return f"{ms:.1f}"
    if size >= 0.9995:
        return f"{ms:.2f}"
    return f"{ms:.3f}"


__all__ = [
    "DEFINITIONS",
    "LATENCY_METRICS",
    "capacity_text",
    "latency_table",
    "probes_table",
    "render_summary",
    "search_lines",
    "server_lines",
    "set_point_text",
    "thresholds_table",
    "throughput_table",
]


def report_console() -> Console:
    """A console for the report: the terminal's width, or 120 columns when not a terminal."""
    console = Console()
    if not console.is_terminal:
        console = Console(width=max(console.width, 120))
    return console
