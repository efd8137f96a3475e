"""What the terminal report says about its own numbers: rates over spans too short to mean
anything, and which groups each row of the total mixes.

- **Short spans.** A rate is a count divided by the span it was counted over: ``duration_s``
  for ``request_rate``, ``output_token_rate`` and ``goodput_rate``, ``send_span_s`` for
  ``send_rate``. Over less than :data:`MIN_RATE_SPAN_S` (a journey step whose samples all fell
  within a few milliseconds, a run stopped with Ctrl-C right after its first sends) the number
  says nothing about a sustained rate: the report shows it as an en dash and one line says why.
  ``summary.json`` keeps every rate as computed, beside the span it is over, so a reader (or a
  threshold) can judge it the same way.
- **What the total mixes.** A distribution of the total pools the values of every group that
  has some: TTFT, ITL and TPOT come only from groups whose answers stream tokens (a ``hello`` has
  no first token), E2E and schedule lag from every group. With several groups the latency table
  names, under the table, which groups each of its total rows mixes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

MIN_RATE_SPAN_S = 1.0
"""Rates over a shorter span are shown as :data:`SHORT` in the printed report."""

SHORT = "\u2013"
"""An en dash: what the report shows instead of a rate over too short a span."""

RATE_SPANS: dict[str, str] = {
    "request_rate": "duration_s",
    "output_token_rate": "duration_s",
    "goodput_rate": "duration_s",
    "succeeded_rate": "duration_s",
    "send_rate": "send_span_s",
}
"""Each rate of a Stats and the key of the span it is counted over."""


def is_short(stats: Mapping[str, Any], rate: str) -> bool:
    """Whether ``rate`` of ``stats`` was counted over less than :data:`MIN_RATE_SPAN_S`.

    A rate without a span to judge (a summary of an older version) is never short.
    """
    value = stats.get(rate)
    span = stats.get(RATE_SPANS[rate])
    if value is None or span is None:
        return False
    return float(span) < MIN_RATE_SPAN_S and int(stats.get("requests", 0)) > 0


def short_rates_line(rows: Iterable[tuple[str, Mapping[str, Any]]]) -> str | None:
    """One line naming the rows whose rates were left out for a short span, with the span;
    None when there are none."""
    parts = []
    for label, stats in rows:
        spans = sorted(
            {
                RATE_SPANS[rate]: float(stats[RATE_SPANS[rate]])
                for rate in RATE_SPANS
                if is_short(stats, rate)
            }.items()
        )
        if spans:
            said = ", ".join(f"{_SPAN_NAMES[key]} {value * 1e3:.1f} ms" for key, value in spans)
            parts.append(f"{label.strip()} ({said})")
    if not parts:
        return None
    return (
        f"{SHORT}: a rate over less than {MIN_RATE_SPAN_S:g} s of samples is not shown, it says "
        "nothing about a sustained rate (summary.json keeps it beside its span): "
        + "; ".join(parts)
    )


_SPAN_NAMES = {"duration_s": "over", "send_span_s": "sends over"}


def total_mix(groups: Mapping[str, Mapping[str, Any]], metric: str) -> list[str]:
    """The groups whose values the total's distribution of ``metric`` pools: those that have
    some (a ``count`` above 0)."""
    return [name for name, stats in groups.items() if (stats.get(metric) or {}).get("count")]


def total_mix_line(
    groups: Mapping[str, Mapping[str, Any]], metrics: Iterable[tuple[str, str]]
) -> str:
    """Which groups each total row of the latency table mixes, metrics with the same groups
    together: ``total rows mix: TTFT, ITL, TPOT: chat · E2E, sched lag: chat, hello``."""
    by_groups: dict[tuple[str, ...], list[str]] = {}
    for label, key in metrics:
        by_groups.setdefault(tuple(total_mix(groups, key)), []).append(label)
    parts = [
        f"{', '.join(labels)}: {', '.join(names) if names else 'no group'}"
        for names, labels in by_groups.items()
    ]
    return "total rows mix: " + " · ".join(parts)


__all__ = [
    "MIN_RATE_SPAN_S",
    "RATE_SPANS",
    "SHORT",
    "is_short",
    "short_rates_line",
    "total_mix",
    "total_mix_line",
]
