"""Medians over repeats, the printed table, ``results.json`` and ``RESULTS.md``."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import shutil
import statistics
import sys
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from cases import BENCHMARKS, Benchmark, Column, Metrics

#: Raw values: benchmark id → case name → metric → one value per repeat.
Raw = dict[str, dict[str, dict[str, list[float | bool | None]]]]


def cpu_model() -> str:
    """The ``model name`` of /proc/cpuinfo (or the platform's processor string)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info() -> dict[str, Any]:
    """Where and how the benchmark ran."""

    def version(name: str) -> str | None:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None

    return {
        "platform": platform.platform(),
        "cpu_model": cpu_model(),
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)),
        "load_average_at_start": [round(v, 2) for v in os.getloadavg()],
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "packages": {p: version(p) for p in ("clientswarm", "aiohttp", "uvloop", "orjson")},
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": shlex.join(getattr(sys, "orig_argv", sys.argv)),
    }


def aggregate(values: list[float | bool | None]) -> dict[str, Any]:
    """Median (numbers) or count of true (flags) over the repeats, with the raw values."""
    present = [v for v in values if v is not None]
    if present and all(isinstance(v, bool) for v in present):
        return {"true": sum(bool(v) for v in present), "of": len(present), "values": values}
    numbers = [float(v) for v in present]
    return {
        "median": statistics.median(numbers) if numbers else None,
        "min": min(numbers) if numbers else None,
        "max": max(numbers) if numbers else None,
        "values": values,
    }


def summarise(raw: Raw) -> dict[str, dict[str, dict[str, dict[str, Any]]]]:
    """Every metric of every case, aggregated over the repeats."""
    return {
        bench: {
            case: {metric: aggregate(vals) for metric, vals in metrics.items()}
            for case, metrics in cases.items()
        }
        for bench, cases in raw.items()
    }


def median(agg: dict[str, dict[str, dict[str, Any]]], case: str, metric: str) -> Any:
    """The median of ``metric`` of ``case`` (None where absent)."""
    entry = agg.get(case, {}).get(metric)
    return None if entry is None else entry.get("median")


def format_cell(entry: dict[str, Any] | None, fmt: str, *, spread: bool) -> str:
    """``median`` (or ``median (min…max)``) of an aggregated metric; flags as yes/no/k of n."""
    if entry is None:
        return "-"
    if "true" in entry:
        true, of = entry["true"], entry["of"]
        return "yes" if true == of else ("no" if true == 0 else f"{true}/{of}")
    if entry["median"] is None:
        return "-"
    text = fmt.format(entry["median"])
    if spread and entry["min"] != entry["max"]:
        text += f" ({fmt.format(entry['min'])}…{fmt.format(entry['max'])})"
    return text


def cell(entry: dict[str, Any] | None, column: Column, *, spread: bool) -> str:
    """The text of one table cell."""
    return format_cell(entry, column.fmt, spread=spread and column.spread)


def table_rows(
    bench: Benchmark, agg: dict[str, dict[str, dict[str, Any]]], *, spread: bool
) -> list[list[str]]:
    """Header row, then one row per case."""
    rows = [["case", *(c.header for c in bench.columns)]]
    for case in bench.cases:
        metrics = agg.get(case.name, {})
        rows.append(
            [case.name, *(cell(metrics.get(c.key), c, spread=spread) for c in bench.columns)]
        )
    return rows


def text_table(rows: list[list[str]]) -> str:
    """Rows as a space-aligned plain-text table."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(
            v.rjust(w) if i else v.ljust(w) for i, (v, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def log(message: str) -> None:
    """A progress line on stderr."""
    print(message, file=sys.stderr, flush=True)


def clientswarm_argv(*args: str) -> list[str]:
    """``clientswarm ARGS`` with the command of this interpreter's environment."""
    exe = Path(sys.executable).parent / "clientswarm"
    return [str(exe if exe.exists() else shutil.which("clientswarm") or exe), *args]


def add_run_options(parser: argparse.ArgumentParser, out: Path) -> None:
    """``--duration-s``, ``--repeats``, ``--quick`` and ``--out`` of a timed benchmark."""
    parser.add_argument("--duration-s", type=float, default=None, help="measured s (default 10)")
    parser.add_argument("--repeats", type=int, default=None, help="repeats (default 3)")
    parser.add_argument("--quick", action="store_true", help="1 repeat of 4 s, *-quick.* files")
    parser.add_argument("--out", type=Path, default=out, help="directory of the result files")


def check_run_options(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Fill in the defaults of :func:`add_run_options` (quick or not) and check them."""
    if args.duration_s is None:
        args.duration_s = 4.0 if args.quick else 10.0
    if args.repeats is None:
        args.repeats = 1 if args.quick else 3
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    if args.duration_s < 1:
        parser.error("--duration-s must be at least 1")


def write_outcome(
    doc: dict[str, Any],
    tables: Sequence[list[list[str]]],
    paths: tuple[Path, Path],
    markdown: Callable[[dict[str, Any]], str],
    wall_s: float,
) -> None:
    """Print ``tables`` and the verdict lines of ``doc``; write its JSON and Markdown files."""
    for rows in tables:
        print()
        print(text_table(rows))
    print()
    for line in doc["verdict"]:
        print(f"- {line.replace('**', '')}")
    json_path, md_path = paths
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(doc, indent=2) + "\n")
    md_path.write_text(markdown(doc))
    log(f"\nwrote {json_path} and {md_path} ({wall_s} s)")


def machine_lines(info: dict[str, Any], extra: str = "") -> list[str]:
    """The "Machine" bullet lines of a results file: command, date, CPU, load, versions."""
    return [
        f"- command: `{info['command']}`",
        f"- date (UTC): {info['date']}",
        f"- platform: {info['platform']}",
        f"- CPU: {info['cpu_model']}, {info['cores']} cores ({info['cores_usable']} usable)",
        f"- load average at start: {', '.join(str(v) for v in info['load_average_at_start'])}",
        f"- Python {info['python']} ({info['implementation']}); "
        + ", ".join(f"{k} {v}" for k, v in info["packages"].items())
        + extra,
    ]


def markdown_table(rows: list[list[str]]) -> str:
    """Rows as a GitHub-flavoured Markdown table (numbers right-aligned)."""
    head, *body = rows
    lines = [
        "| " + " | ".join(head) + " |",
        "|" + "|".join([":---", *["---:"] * (len(head) - 1)]) + "|",
    ]
    lines += ["| " + " | ".join(r) + " |" for r in body]
    return "\n".join(lines)


def _fmt(value: Any, fmt: str, missing: str = "n/a") -> str:
    return missing if value is None else fmt.format(value)


def headlines(agg: dict[str, dict[str, dict[str, dict[str, Any]]]]) -> list[str]:
    """One sentence per finding, from the medians."""
    lines: list[str] = []
    tp = agg.get("throughput", {})
    for case, what in (("hello", "hello"), ("chat-stream", "streamed chat (64 tokens)")):
        if case not in tp:
            continue
        m = {k: median(tp, case, k) for k in tp[case]}
        tokens = (
            f", {_fmt(m['tok_s'], '{:,.0f}')} output tok/s"
            f" ({_fmt(m['worker_us_per_tok'], '{:.1f}')} µs of worker CPU per token)"
            if m.get("tok_s")
            else ""
        )
        lines.append(
            f"One worker, {what}: {_fmt(m['req_s'], '{:,.0f}')} req/s{tokens}; worker CPU "
            f"{_fmt(m['worker_cpu'], '{:.2f}')} core ({_fmt(m['worker_us_per_req'], '{:.0f}')} "
            f"µs/req, i.e. ~{_fmt(m['req_s_per_worker_core'], '{:,.0f}')} req/s per fully busy "
            f"core), simulator {_fmt(m['sim_cpu'], '{:.2f}')}, other processes "
            f"{_fmt(m['others_cpu'], '{:.2f}')} → {bottleneck(m)}."
        )
    tm = agg.get("timing", {})
    for case, metrics in tm.items():
        m = {k: median(tm, case, k) for k in metrics}
        trusted = metrics.get("trustworthy", {})
        ttft = (
            f"TTFT p50 {_fmt(m['ttft_p50_err_ms'], '{:+.1f}')} ms "
            f"({_fmt(m['ttft_p50_err_pct'], '{:+.1f}')} %), "
            f"p99 {_fmt(m['ttft_p99_err_ms'], '{:+.1f}')} ms"
        )
        itl = (
            f"ITL p50 {_fmt(m['itl_p50_err_ms'], '{:+.2f}')} ms "
            f"({_fmt(m['itl_p50_err_pct'], '{:+.1f}')} %), "
            f"p99 {_fmt(m['itl_p99_err_ms'], '{:+.1f}')} ms, "
            f"{_fmt(m['itl_bunched_pct'], '{:.0f}')} % of gaps < 1 ms"
        )
        split = (
            f"mean TTFT late by {_fmt(m['ttft_sim_late_ms'], '{:+.1f}')} ms inside the "
            f"simulator, {_fmt(m['ttft_outside_sim_ms'], '{:+.1f}')} ms added outside it"
        )
        lines.append(
            f"Timing, {case}: {ttft}; {itl}; {split}; worker CPU "
            f"{_fmt(m['worker_cpu'], '{:.2f}')} for {_fmt(m['tok_s'], '{:,.0f}')} tok/s "
            f"({_fmt(m['worker_us_per_tok'], '{:.0f}')} µs/token), loop lag p99 "
            f"{_fmt(m['loop_lag_p99_ms'], '{:.0f}')} ms; trustworthy "
            f"{trusted.get('true', 0)}/{trusted.get('of', 0)} repeats."
        )
    ol = agg.get("open_loop", {})
    for case, metrics in ol.items():
        m = {k: median(ol, case, k) for k in metrics}
        lines.append(
            f"Open loop, {case}: send rate {_fmt(m['send_rate_err_pct'], '{:+.2f}')} % off, "
            f"{_fmt(m['requests'], '{:.0f}')}/{_fmt(m['expected_requests'], '{:.0f}')} requests, "
            f"schedule lag p50 {_fmt(m['sched_lag_p50_ms'], '{:.2f}')} ms, "
            f"p99 {_fmt(m['sched_lag_p99_ms'], '{:.2f}')} ms."
        )
    return lines


def bottleneck(m: dict[str, Any]) -> str:
    """Which side limited a closed-loop throughput case, from its CPU shares."""
    worker, sim, machine = m.get("worker_cpu"), m.get("sim_cpu"), m.get("machine_cpu")
    cores = os.cpu_count() or 1
    if worker is not None and worker >= 0.9:
        return "the worker saturated its core"
    if sim is not None and sim >= 0.9:
        return "the simulator saturated its core"
    if machine is not None and machine >= 0.9 * cores:
        return (
            "every core of the machine was busy (shared with other processes): "
            "the worker and the simulator split what was left"
        )
    return "neither side was CPU-bound (latency-bound)"


def render_markdown(
    info: dict[str, Any], settings: dict[str, Any], repeats: int, agg: dict[str, Any]
) -> str:
    """RESULTS.md: machine, command, headlines, one table per benchmark."""
    out = [
        "# clientswarm benchmark results",
        "",
        "Produced by `bench/run.py` (see `bench/README.md` for what each number means). "
        f"Cells are medians over {repeats} repeat(s); where a range is shown in brackets it is "
        "min…max over the repeats. Raw values per repeat are in `results.json`.",
        "",
        "## Machine",
        "",
        *machine_lines(info),
        f"- settings: {', '.join(f'{k}={v}' for k, v in settings.items())}",
        "",
        "## Headlines",
        "",
        *(f"- {line}" for line in headlines(agg)),
        "",
    ]
    for bench in BENCHMARKS:
        if bench.id not in agg:
            continue
        out += [
            f"## {bench.title}",
            "",
            bench.setup,
            "",
            markdown_table(table_rows(bench, agg[bench.id], spread=True)),
            "",
        ]
    return "\n".join(out)


def print_tables(agg: dict[str, Any]) -> None:
    """Every benchmark's medians as plain-text tables on stdout."""
    for bench in BENCHMARKS:
        if bench.id in agg:
            print(f"\n{bench.title}\n{bench.setup}\n")
            print(text_table(table_rows(bench, agg[bench.id], spread=False)))
    print("\nHeadlines:")
    for line in headlines(agg):
        print(f"- {line}")


__all__ = ["Metrics", "Raw", "machine_info", "print_tables", "render_markdown", "summarise"]
