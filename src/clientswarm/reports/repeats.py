"""Repeated runs in results: reading a directory of repeats, and the aggregate as tables.

A directory written by ``clientswarm run --repeat N`` holds ``run-<i>/`` (each run's results)
and a ``summary.json`` whose :data:`REPEATS_KEY` entry is the aggregate
(:func:`clientswarm.metrics.repeats.aggregate`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

REPEATS_KEY = "repeats"
"""The key of ``DIR/summary.json`` that marks a directory of repeated runs."""


def run_dir(directory: Path, index: int) -> Path:
    """Where run ``index`` of a set of repeats keeps its results."""
    return directory / f"run-{index}"


def _shown(path: str, value: float | None) -> str:
    if value is None:
        return "-"
    if path.endswith(("_rate", "requests")) or "." not in path:
        return f"{value:,.4g}" if path != "requests" else f"{value:,.1f}"
    return f"{value * 1e3:,.4g}"  # seconds, shown in milliseconds


def render_repeats(repeats: Mapping[str, Any], console: Console) -> None:
    """The aggregate as tables: per scope, each statistic's mean, interval and range."""
    from rich import box
    from rich.table import Table

    confidence = repeats["confidence"]
    scopes = [("total", repeats["total"])]
    if len(repeats["groups"]) > 1:
        scopes += [(f"group {g}", stats) for g, stats in repeats["groups"].items()]
    for title, stats in scopes:
        table = Table(
            title=f"{title}: {repeats['count']} runs, mean and {confidence:.0%} interval "
            "(latencies in ms)",
            box=box.SIMPLE,
            title_justify="left",
        )
        for column in ("statistic", "mean", "interval", "std", "min", "max"):
            table.add_column(column, justify="left" if column == "statistic" else "right")
        for path, s in stats.items():
            interval = (
                f"[{_shown(path, s['low'])}, {_shown(path, s['high'])}]"
                if s["low"] is not None
                else "-"
            )
            table.add_row(
                path,
                _shown(path, s["mean"]),
                interval,
                _shown(path, s["std"]),
                _shown(path, s["min"]),
                _shown(path, s["max"]),
            )
        console.print(table)


def read_repeats(directory: Path) -> dict[str, Any] | None:
    """The aggregate of a directory of repeated runs (None: it holds one run)."""
    path = directory / "summary.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    repeats = data.get(REPEATS_KEY) if isinstance(data, dict) else None
    return repeats if isinstance(repeats, dict) else None


def _nested(stats: Mapping[str, Any]) -> dict[str, Any]:
    """``{"ttft_s.p50": {"mean": m, …}}`` as a Stats-shaped ``{"ttft_s": {"p50": m}}``."""
    out: dict[str, Any] = {}
    for path, spread in stats.items():
        *parents, leaf = path.split(".")
        node = out
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = spread["mean"]
    return out


def means_summary(repeats: Mapping[str, Any]) -> dict[str, Any]:
    """A summary-shaped view of repeats: every statistic is its mean across the runs."""
    return {
        "cluster": {"name": f"{repeats['count']} repeats", "id": "-", "status": "completed"},
        "total": _nested(repeats["total"]),
        "groups": {g: _nested(stats) for g, stats in repeats["groups"].items()},
    }
