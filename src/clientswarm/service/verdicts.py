"""The thresholds of a cluster judged on its final summary (``summary.json``'s
``thresholds``): one :class:`~clientswarm.metrics.summary.ThresholdResult` per threshold of
the configuration, the total's first, then each group's, in the file's order.

A threshold whose statistic has no value (``ttft_s.p99`` of a run without any streamed answer,
a group that measured nothing) fails, its ``value`` ``null``. What turns a failed threshold
into an exit status is the caller's (``clientswarm run`` exits 3).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from clientswarm.config.models import ClusterConfig
from clientswarm.metrics.summary import Summary, ThresholdResult
from clientswarm.thresholds import parse_expression, value_at


def threshold_results(config: ClusterConfig, summary: Summary) -> list[ThresholdResult]:
    """Every threshold of ``config`` judged on ``summary``'s statistics."""
    scoped: list[tuple[str, str, Mapping[str, Any] | None]] = []
    if config.thresholds:
        total = summary.total.model_dump(mode="json")
        scoped.extend(("total", t.expr, total) for t in config.thresholds)
    for group in config.groups:
        if not group.thresholds:
            continue
        of_group = summary.groups.get(group.name)
        doc = None if of_group is None else of_group.model_dump(mode="json")
        scoped.extend((f"groups.{group.name}", t.expr, doc) for t in group.thresholds)
    results = []
    for scope, expr, stats in scoped:
        parsed = parse_expression(expr)
        value = None if stats is None else value_at(stats, parsed.path)
        passed = parsed.holds(value, parsed.bound)
        results.append(ThresholdResult(scope=scope, expr=expr, value=value, passed=passed))
    return results


__all__ = ["threshold_results"]
