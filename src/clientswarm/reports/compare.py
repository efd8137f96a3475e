"""``clientswarm compare A B [C …]``: runs side by side, with the differences and a verdict.

A and B are result directories written by ``clientswarm run`` (``summary.json`` and a samples
file: ``samples.parquet``, ``.jsonl`` or ``.csv``) or ids of clusters of a service
(``--service URL``, bearer token from ``CLIENTSWARM_API_TOKEN``; the command and the fetching
from a service are in :mod:`clientswarm.service.compare_cli`). The first run is the
baseline; every later one is compared with it, per group and, for a group with load stages,
per stage:

- rates (requests, output tokens, goodput per second; error rate; failures, by kind): the
  numbers of ``summary.json`` and their difference;
- TTFT, ITL, TPOT and E2E p50/p90/p99: the numbers of ``summary.json``, their difference and a
  verdict from a bootstrap interval of the difference, computed from the raw samples
  (:mod:`clientswarm.metrics.compare`).

``--fail-if 'ttft_s.p99 > +10%'`` makes it a regression gate (exit 3): the grammar of
thresholds (:mod:`clientswarm.thresholds`), with a change as the right-hand side: ``+10%``
relative to the baseline, or a plain number, a difference in the statistic's own unit.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from clientswarm.errors import ConfigError, ThresholdError
from clientswarm.metrics.compare import (
    CONFIDENCE,
    MAX_VALUES,
    RESAMPLES,
    PercentileDiff,
    compare_percentiles,
)
from clientswarm.metrics.repeats import compare_means
from clientswarm.reports.repeats import means_summary, read_repeats
from clientswarm.reports.sample_values import (
    TARGET_GROUP,
    SampleValues,
    read_sample_values,
)
from clientswarm.thresholds import Expression, parse_expression, value_at

SAMPLE_FILES = ("samples.parquet", "samples.jsonl", "samples.csv")
"""The samples files of a result directory, in the order they are looked for."""

RATES: tuple[tuple[str, str], ...] = (
    ("req/s", "request_rate"),
    ("out tok/s", "output_token_rate"),
    ("goodput/s", "goodput_rate"),
    ("error rate", "error_rate"),
    ("failed", "failed"),
)
"""Rate rows of a part: (label, Stats key); compared as numbers."""

LATENCIES: tuple[tuple[str, str], ...] = (
    ("TTFT", "ttft_s"),
    ("ITL", "itl_s"),
    ("TPOT", "tpot_s"),
    ("E2E", "e2e_s"),
)
"""Latency metrics compared percentile by percentile: (label, Stats key)."""

PERCENTILES: tuple[tuple[str, float], ...] = (("p50", 50.0), ("p90", 90.0), ("p99", 99.0))
"""The percentiles compared."""

LABELS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_CHANGE = re.compile(
    r"^(?P<number>[+-]?([0-9]+([.][0-9]*)?|[.][0-9]+)([eE][+-]?[0-9]+)?)(?P<pct>%?)$"
)


# ------------------------------------------------------------------------------ the runs


@dataclass(slots=True)
class RunResult:
    """One compared run: its label (A, B, …), where it came from, its summary and samples."""

    label: str
    source: str
    summary: dict[str, Any]
    samples: SampleValues | None
    repeats: dict[str, Any] | None = None
    """The aggregate of a directory of repeated runs (its ``summary`` then holds the means)."""

    def describe(self) -> str:
        """One line: the source, the cluster's name, id and status."""
        cluster = self.summary.get("cluster") or {}
        started = cluster.get("started_at") or ""
        return (
            f"{self.source}  ({cluster.get('name', '?')} {cluster.get('id', '?')}, "
            f"{cluster.get('status', '?')}{', ' + started if started else ''})"
        )


def _read_summary(path: Path, ref: str) -> dict[str, Any]:
    try:
        summary = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError([f"{ref}: cannot read {path.name}: {exc}"]) from None
    if not isinstance(summary, dict) or not isinstance(summary.get("groups"), dict):
        raise ConfigError([f"{ref}: {path.name} is not a clientswarm summary (no groups)"])
    return summary


def split_target(ref: str) -> tuple[str, str | None]:
    """``DIR@NAME`` → (``DIR``, ``NAME``): one target of a run, compared alone; else
    (``ref``, None). A path that exists as written is never split."""
    head, sep, name = ref.rpartition("@")
    if not sep or not head or not name or Path(ref).exists() or "/" in name:
        return ref, None
    return head, name


def target_view(run: RunResult, name: str) -> RunResult:
    """One target of ``run`` as a run of its own: its Stats as the one group
    :data:`TARGET_GROUP` and the total, its samples only. ConfigError naming the run's
    targets when it has no such one."""
    targets: Mapping[str, Any] = run.summary.get("targets") or {}
    if name not in targets:
        raise ConfigError(
            [f"{run.source}: no target {name!r}; its targets: {', '.join(targets) or 'none'}"]
        )
    cluster = {**(run.summary.get("cluster") or {})}
    cluster["name"] = f"{cluster.get('name', '?')} target {name}"
    summary = {
        **run.summary,
        "cluster": cluster,
        "groups": {TARGET_GROUP: targets[name]},
        "total": targets[name],
    }
    samples = None if run.samples is None else run.samples.of_target(name)
    return RunResult(run.label, f"{run.source}@{name}", summary, samples, None)


def load_directory(label: str, ref: str, directory: Path) -> RunResult:
    """A run from a result directory of ``clientswarm run``."""
    if not directory.is_dir():
        raise ConfigError([f"{ref}: not a directory"])
    summary_path = directory / "summary.json"
    if not summary_path.is_file():
        raise ConfigError(
            [f"{ref}: not a result directory of clientswarm run (it has no summary.json)"]
        )
    repeats = read_repeats(directory)
    if repeats is not None:
        return RunResult(label, ref, means_summary(repeats), None, repeats)
    summary = _read_summary(summary_path, ref)
    samples = next((directory / n for n in SAMPLE_FILES if (directory / n).is_file()), None)
    values = read_sample_values(samples) if samples is not None else None
    return RunResult(label, ref, summary, values)


# ---------------------------------------------------------------------- the comparison


@dataclass(frozen=True, slots=True)
class Settings:
    """How differences are judged."""

    min_effect: float = 0.05
    confidence: float = CONFIDENCE
    resamples: int = RESAMPLES
    max_values: int = MAX_VALUES


def _number(stats: Mapping[str, Any], path: tuple[str, ...]) -> float | None:
    value = value_at(stats, path)
    return None if value is None else float(value)


def _change(a: float | None, b: float | None) -> tuple[float | None, float | None]:
    """``b - a`` and ``b / a - 1`` (None where not defined)."""
    if a is None or b is None:
        return None, None
    diff = b - a
    if a == 0:
        return diff, (0.0 if b == 0 else None)
    return diff, b / a - 1.0


def _pct(value: float | None, digits: int = 1) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{value * 100:+.{digits}f} %"


def _pct_range(low: float, high: float) -> str:
    return f"{low * 100:+.1f}…{high * 100:+.1f} %"


def verdict_text(label: str, d: PercentileDiff | None, min_effect: float) -> str:
    """The verdict of a later run ``label`` on one percentile, e.g. ``B slower (+23.0 %, CI
    +18.1…+29.4 %)``: a latency that is higher is slower."""
    if d is None:
        return "not judged (no samples)"
    if d.rel_low is not None and d.rel_high is not None:
        ci = f"CI {_pct_range(d.rel_low, d.rel_high)}"
    else:
        ci = f"CI {d.low * 1000:+.3g}…{d.high * 1000:+.3g} ms"
    if d.direction == "same":
        if d.below_min_effect and not d.low <= 0.0 <= d.high:
            return f"no significant difference (under the {min_effect * 100:g} % minimum effect)"
        return f"no significant difference ({ci})"
    change = _pct(d.relative) if d.relative is not None else f"{d.diff * 1000:+.3g} ms"
    word = "slower" if d.direction == "higher" else "faster"
    return f"{label} {word} ({change}, {ci})"


def _stages(stats: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """A group's load stages by index (``groups[g].stages`` is a list in stage order)."""
    stages = stats.get("stages")
    if isinstance(stages, list):
        return {str(i): v for i, v in enumerate(stages) if isinstance(v, Mapping)}
    return {}


def _set_point(stats: Mapping[str, Any]) -> Any:
    return stats.get("set_point")


def _part(
    runs: list[RunResult],
    stats: list[Mapping[str, Any]],
    group: str | None,
    stage: str | None,
    settings: Settings,
) -> dict[str, Any]:
    """The comparison of one group (or the total: ``group`` None), or one of its stages."""
    base = runs[0]
    rates = []
    for label, key in RATES:
        values = [_number(s, (key,)) for s in stats]
        rates.append(
            {
                "metric": key,
                "label": label,
                "values": values,
                "changes": [
                    _change_dict(r.label, values[0], v)
                    for r, v in zip(runs[1:], values[1:], strict=True)
                ],
            }
        )
    kinds = sorted({k for s in stats for k in (s.get("errors") or {})})
    for kind in kinds:
        values = [_number(s, ("errors", kind)) for s in stats]
        rates.append(
            {
                "metric": f"errors.{kind}",
                "label": f"  {kind}",
                "values": values,
                "changes": [
                    _change_dict(r.label, values[0], v)
                    for r, v in zip(runs[1:], values[1:], strict=True)
                ],
            }
        )
    stage_index = None if stage is None else int(stage)
    latency = []
    notes: list[str] = []
    percents = [p for _, p in PERCENTILES]
    for label, key in LATENCIES:
        diffs: list[list[PercentileDiff] | None] = []
        for run in runs[1:]:
            if base.repeats is not None and run.repeats is not None and stage is None:
                diffs.append(_repeat_diffs(base.repeats, run.repeats, key, group, settings))
                continue
            if base.samples is None or run.samples is None:
                diffs.append(None)
                continue
            found = compare_percentiles(
                base.samples.values(key, group, stage_index),
                run.samples.values(key, group, stage_index),
                percents,
                resamples=settings.resamples,
                confidence=settings.confidence,
                min_effect=settings.min_effect,
                max_values=settings.max_values,
            )
            diffs.append(found)
            if found and found[0].subsampled:
                first = found[0]
                notes.append(
                    f"{label} of {_scope(group, stage)}: bootstrap on random subsets of at most "
                    f"{settings.max_values} values (A {first.count_a}, {run.label} "
                    f"{first.count_b} "
                    "values): intervals are wider than with every value (--max-samples)"
                )
        for i, (pkey, _) in enumerate(PERCENTILES):
            values = [_number(s, (key, pkey)) for s in stats]
            changes = []
            for run, value, found in zip(runs[1:], values[1:], diffs, strict=True):
                d: PercentileDiff | None = found[i] if found else None
                change = _change_dict(run.label, values[0], value)
                change.update(
                    ci=None if d is None else [d.low, d.high],
                    ci_relative=(
                        None if d is None or d.rel_low is None else [d.rel_low, d.rel_high]
                    ),
                    direction=(
                        None
                        if d is None
                        else {"higher": "slower", "lower": "faster", "same": "same"}[d.direction]
                    ),
                    verdict=verdict_text(run.label, d, settings.min_effect),
                )
                changes.append(change)
            latency.append(
                {
                    "metric": f"{key}.{pkey}",
                    "label": f"{label} {pkey}",
                    "values": values,
                    "changes": changes,
                }
            )
    return {
        "group": group,
        "stage": stage,
        "set_points": None if stage is None else [_set_point(s) for s in stats],
        "rates": rates,
        "latency": latency,
        "notes": notes,
    }


def _repeat_diffs(
    a: Mapping[str, Any], b: Mapping[str, Any], key: str, group: str | None, settings: Settings
) -> list[PercentileDiff] | None:
    """Each percentile's difference between two sets of repeats (None where either lacks it)."""
    scope_a = a["total"] if group is None else (a["groups"].get(group) or {})
    scope_b = b["total"] if group is None else (b["groups"].get(group) or {})
    diffs = []
    for pkey, percent in PERCENTILES:
        values_a = (scope_a.get(f"{key}.{pkey}") or {}).get("values") or []
        values_b = (scope_b.get(f"{key}.{pkey}") or {}).get("values") or []
        found = compare_means(
            values_a,
            values_b,
            percent,
            confidence=settings.confidence,
            min_effect=settings.min_effect,
        )
        if found is None:
            return None
        diffs.append(found)
    return diffs


def _change_dict(label: str, a: float | None, b: float | None) -> dict[str, Any]:
    diff, relative = _change(a, b)
    return {"run": label, "diff": diff, "relative": relative}


def _scope(group: str | None, stage: str | None) -> str:
    name = "total" if group is None else group
    return name if stage is None else f"{name} stage {stage}"


def compare_runs(
    runs: list[RunResult], settings: Settings, fail_if: list[Expression[Change]]
) -> dict[str, Any]:
    """The comparison of ``runs`` (the first the baseline) as a JSON-able document."""
    group_sets = [list(r.summary["groups"]) for r in runs]
    common = [g for g in group_sets[0] if all(g in names for names in group_sets[1:])]
    if not common:
        listed = "; ".join(
            f"{r.label} has {', '.join(n) or 'none'}" for r, n in zip(runs, group_sets, strict=True)
        )
        raise ConfigError([f"the runs have no group in common ({listed})"])
    notes: list[str] = []
    for run, names in zip(runs, group_sets, strict=True):
        others = [g for g in names if g not in common]
        if others:
            notes.append(
                f"{run.label}: group(s) {', '.join(others)} not in every run, not compared"
            )
    for run in runs:
        cluster = run.summary.get("cluster") or {}
        if cluster.get("status") not in (None, "completed"):
            notes.append(f"{run.label}: the run is {cluster.get('status')}, not completed")
        if run.summary.get("trustworthy") is False:
            notes.append(f"{run.label}: the run is NOT trustworthy (see its warnings)")
        if run.repeats is not None:
            notes.append(
                f"{run.label}: {run.repeats['count']} repeated runs: their means are compared, "
                "latency verdicts from Welch's t interval on the runs' values"
            )
        elif run.samples is None:
            notes.append(f"{run.label}: no samples file: latencies are compared without verdicts")
    parts = []
    for group in common:
        stats = [r.summary["groups"][group] for r in runs]
        parts.append(_part(runs, stats, group, None, settings))
        stage_sets = [_stages(s) for s in stats]
        for stage in stage_sets[0]:
            if all(stage in st for st in stage_sets[1:]):
                parts.append(_part(runs, [st[stage] for st in stage_sets], group, stage, settings))
        if any(set(st) != set(stage_sets[0]) for st in stage_sets[1:]):
            notes.append(
                f"{group}: the runs have different stages; only the common ones are compared"
            )
    if len(common) > 1 and all(isinstance(r.summary.get("total"), Mapping) for r in runs):
        parts.append(_part(runs, [r.summary["total"] for r in runs], None, None, settings))
    for part in parts:
        notes.extend(part.pop("notes"))
    gates = judge_gates(runs, common, fail_if)
    return {
        "runs": [
            {
                "label": r.label,
                "source": r.source,
                "cluster": r.summary.get("cluster"),
                "samples": r.samples is not None,
            }
            for r in runs
        ],
        "settings": {
            "min_effect": settings.min_effect,
            "confidence": settings.confidence,
            "resamples": settings.resamples,
            "max_samples": settings.max_values,
        },
        "parts": parts,
        "fail_if": gates,
        "passed": all(not g["failed"] for g in gates),
        "notes": notes,
    }


# --------------------------------------------------------------------------- the gates


@dataclass(frozen=True, slots=True)
class Change:
    """The right-hand side of a ``--fail-if``: a change relative to the baseline (``+10%``
    is 0.10) or an absolute difference in the statistic's unit."""

    value: float
    relative: bool

    def __str__(self) -> str:
        return f"{self.value * 100:+g}%" if self.relative else f"{self.value:+g}"


def change_bound(text: str) -> Change:
    """Read a ``--fail-if`` bound: ``+10%``, ``-5%`` (relative) or ``0.05`` (absolute)."""
    match = _CHANGE.match(text.strip())
    if match is None:
        raise ThresholdError(
            "the right-hand side must be a change from the baseline: a percentage like "
            "+10% or -5%, or a plain number (a difference in the statistic's own unit)"
        )
    value = float(match["number"])
    return Change(value / 100 if match["pct"] else value, bool(match["pct"]))


def parse_fail_if(text: str) -> Expression[Change]:
    """A ``--fail-if`` expression; ConfigError (exit 2) saying what is wrong."""
    try:
        return parse_expression(text, change_bound)
    except ThresholdError as exc:
        raise ConfigError([f"--fail-if {text!r}: {exc}"]) from None


def judge_gates(
    runs: list[RunResult], groups: list[str], fail_if: list[Expression[Change]]
) -> list[dict[str, Any]]:
    """Each ``--fail-if`` judged for each later run, on each common group (and the total when
    there are several): ``failed`` when its condition holds or a value is missing."""
    scopes: list[str | None] = [*groups, *([None] if len(groups) > 1 else [])]
    out = []
    for expression in fail_if:
        for run in runs[1:]:
            for group in scopes:
                a_stats = (
                    runs[0].summary["groups"][group]
                    if group
                    else runs[0].summary.get("total") or {}
                )
                b_stats = run.summary["groups"][group] if group else run.summary.get("total") or {}
                a, b = _number(a_stats, expression.path), _number(b_stats, expression.path)
                diff, relative = _change(a, b)
                if (
                    expression.bound.relative
                    and a is not None
                    and a == 0
                    and b is not None
                    and b != 0
                ):
                    relative = math.copysign(math.inf, b)
                change = relative if expression.bound.relative else diff
                failed = change is None or expression.holds(change, expression.bound.value)
                out.append(
                    {
                        "expr": expression.text,
                        "scope": group or "total",
                        "run": run.label,
                        "baseline": a,
                        "value": b,
                        "change": change if change is None or math.isfinite(change) else None,
                        "relative": expression.bound.relative,
                        "failed": failed,
                    }
                )
    return out


# ------------------------------------------------------------------------------ printing


def _fmt(value: float | None, ms: bool) -> str:
    if value is None:
        return "-"
    if ms:
        return f"{value * 1000:.3g}"
    if float(value).is_integer():
        return f"{value:.0f}"
    return f"{value:.3g}" if abs(value) < 1 else f"{value:.1f}"


def _diff_text(change: Mapping[str, Any], ms: bool) -> str:
    diff = change.get("diff")
    if diff is None:
        return "-"
    shown = (
        f"{diff * 1000:+.3g}"
        if ms
        else (f"{diff:+.0f}" if float(diff).is_integer() else f"{diff:+.3g}")
    )
    relative = change.get("relative")
    return f"{shown} ({_pct(relative)})" if relative is not None else shown


_STYLES = {"slower": "red", "faster": "green", "same": "dim"}


def _title(part: Mapping[str, Any], labels: list[str]) -> str:
    title = _scope(part["group"], part["stage"])
    points = part.get("set_points")
    if points and any(p is not None for p in points):
        shown = [_fmt(p, False) for p in points]
        text = (
            shown[0]
            if len(set(shown)) == 1
            else ", ".join(f"{lb} {p}" for lb, p in zip(labels, shown, strict=True))
        )
        title += f" (set point {text})"
    return title


def part_table(part: Mapping[str, Any], labels: list[str]) -> Table:
    """One part (a group, a stage or the total) side by side: rates, then latencies (ms)."""
    table = Table(title=_title(part, labels), box=box.SIMPLE_HEAD, title_justify="left")
    table.add_column("metric", no_wrap=True)
    table.add_column(labels[0], justify="right", no_wrap=True)
    for label in labels[1:]:
        table.add_column(label, justify="right", no_wrap=True)
        table.add_column(f"{label} - {labels[0]}", justify="right", no_wrap=True)
        table.add_column(f"{label} verdict")
    for row in part["rates"]:
        cells: list[str | Text] = [_fmt(row["values"][0], False)]
        for value, change in zip(row["values"][1:], row["changes"], strict=True):
            cells += [_fmt(value, False), _diff_text(change, False), ""]
        table.add_row(row["label"], *cells)
    table.add_section()
    for row in part["latency"]:
        cells = [_fmt(row["values"][0], True)]
        for value, change in zip(row["values"][1:], row["changes"], strict=True):
            style = _STYLES.get(change.get("direction") or "", "dim")
            cells += [
                _fmt(value, True),
                _diff_text(change, True),
                Text(change["verdict"], style=style),
            ]
        table.add_row(f"{row['label']} ms", *cells)
    return table


def gates_table(gates: list[Mapping[str, Any]]) -> Table:
    """The ``--fail-if`` checks: each expression, scope and run, with the change found."""
    table = Table(title="Regression gates (--fail-if)", box=box.SIMPLE_HEAD, title_justify="left")
    for header in ("expression", "scope", "run", "baseline", "value", "change", "result"):
        table.add_column(header, no_wrap=True)
    for g in gates:
        change = g["change"]
        shown = (
            "no value" if change is None else (_pct(change) if g["relative"] else f"{change:+.4g}")
        )
        result = Text("FAILED", style="bold red") if g["failed"] else Text("ok", style="green")
        table.add_row(
            g["expr"],
            g["scope"],
            g["run"],
            "-" if g["baseline"] is None else f"{g['baseline']:.4g}",
            "-" if g["value"] is None else f"{g['value']:.4g}",
            shown,
            result,
        )
    return table


def render_comparison(comparison: Mapping[str, Any], console: Console) -> None:
    """Print a comparison (:func:`compare_runs`) on ``console``."""
    labels = [r["label"] for r in comparison["runs"]]
    for run in comparison["runs"]:
        cluster = run.get("cluster") or {}
        role = "baseline" if run["label"] == labels[0] else "compared with A"
        console.print(
            Text(
                f"{run['label']} = {run['source']}  ({cluster.get('name', '?')} "
                f"{cluster.get('id', '?')}, {cluster.get('status', '?')}; {role})"
            ),
            soft_wrap=True,
        )
    for part in comparison["parts"]:
        console.print(part_table(part, labels))
    if comparison["fail_if"]:
        console.print(gates_table(comparison["fail_if"]))
    for note in comparison["notes"]:
        console.print(Text(f"note: {note}", style="yellow"), soft_wrap=True)
    s = comparison["settings"]
    console.print(
        Text(
            f"Rates are compared as numbers. Latencies: {s['confidence'] * 100:g} % bootstrap "
            f"interval ({s['resamples']} resamples) of the difference of each percentile from the "
            f"raw samples; 'no significant difference' when it contains 0 or the change is under "
            f"{s['min_effect'] * 100:g} % (--min-effect). Slower = higher latency than A.",
            style="dim",
        )
    )


# ------------------------------------------------------------------------------ options


def parse_min_effect(text: str) -> float:
    """``5%`` or ``0.05``: the smallest relative change called a difference."""
    match = _CHANGE.match(text.strip())
    value = float(match["number"]) if match else math.nan
    if match and match["pct"]:
        value /= 100
    if not match or not 0 <= value < 1 or match["number"].startswith(("+", "-")):
        raise ConfigError(
            [f"--min-effect {text!r}: expected a percentage like 5% (or a fraction like 0.05)"]
        )
    return value


__all__ = [
    "Change",
    "RunResult",
    "SampleValues",
    "Settings",
    "change_bound",
    "compare_runs",
    "judge_gates",
    "load_directory",
    "parse_fail_if",
    "read_sample_values",
    "render_comparison",
]
