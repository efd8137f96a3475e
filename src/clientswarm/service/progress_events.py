"""What ``submit --wait`` shows of an event of ``GET …/progress`` (the service's progress
stream, :func:`~clientswarm.service.views.progress_view`): the display of ``clientswarm run``
(:mod:`clientswarm.reports.progress`), from the same numbers.

The event carries the live statistics (:meth:`~clientswarm.metrics.live.LiveStats.snapshot`);
the rates are those of :meth:`~clientswarm.metrics.live.LiveStats.recent`, recomputed from the
recent window's totals. What the event does not carry comes from the cluster's configuration
(:func:`plan_of`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from clientswarm.errors import ClientswarmError
from clientswarm.metrics.live import window_start_s
from clientswarm.reports.progress import ProgressLine
from clientswarm.service.lifecycle import WorkerState


@dataclass(frozen=True, slots=True)
class Plan:
    """What a cluster's configuration says of its time."""

    planned_s: float | None = None
    """Seconds it runs by its schedule, warm-up included; None: a request count bounds it."""
    warmup_s: float = 0.0


def plan_of(config: dict[str, Any]) -> Plan:
    """The plan of a configuration as the cluster view shows it (an empty one when it does not
    validate here, e.g. a newer service's)."""
    from clientswarm.config.loader import validate_config_data
    from clientswarm.service.runinfo import planned_duration_s

    try:
        validated = validate_config_data(config)
    except (ClientswarmError, ValueError):
        return Plan()
    return Plan(planned_duration_s(validated), validated.warmup_s)


def progress_of_event(view: dict[str, Any], plan: Plan) -> ProgressLine:
    """The progress line of one ``progress`` (or ``end``) event."""
    elapsed_s = float(view.get("elapsed_s") or 0.0)
    workers: dict[str, int] = view.get("workers") or {}
    states = [(_state(name), n) for name, n in workers.items()]
    live = view.get("live") or {}
    since = (live.get("since_start") or {}).get("total") or {}
    recent = (live.get("window_10s") or {}).get("total")
    warnings = view.get("warnings") or []
    line = ProgressLine(
        status=str(view.get("status")),
        elapsed_s=elapsed_s,
        planned_s=plan.planned_s,
        succeeded=int(since.get("succeeded") or 0),
        failed=int(since.get("failed") or 0),
        in_flight=int(view.get("in_flight") or 0),
        workers_running=sum(n for state, n in states if state is not None and state.alive),
        workers_total=sum(n for _, n in states),
        workers_failed=sum(n for state, n in states if state is not None and state.broken),
        warning=str(warnings[0]) if warnings else None,
        warmup_s=plan.warmup_s,
        warmup_done=int(since.get("warmup_excluded") or 0),
    )
    if recent is None or "now_s" not in live:
        return line
    now_s = float(live["now_s"])
    span_s = now_s - max(now_s - elapsed_s, window_start_s(now_s))
    ended = int(recent.get("requests") or 0) + int(recent.get("warmup_excluded") or 0)
    ttft = recent.get("ttft_s") or {}
    per_s = 1 / span_s if span_s > 0 else 0.0
    return replace(
        line,
        request_rate=ended * per_s,
        output_token_rate=int(recent.get("output_tokens") or 0) * per_s,
        ttft_p50_s=ttft.get("p50"),
    )


def _state(name: str) -> WorkerState | None:
    try:
        return WorkerState(name)
    except ValueError:  # a state of a newer service
        return None


__all__ = ["Plan", "plan_of", "progress_of_event"]
