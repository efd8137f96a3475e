"""When a group runs and which stage paces it at a given time.

Time is in seconds relative to the cluster's shared start time. The first ``warmup_s`` seconds
are warm-up; the group's *measured* duration is ``stop.duration_s``, or the sum of its stages'
durations when ``stop.duration_s`` is absent, so the group runs from 0 to
``warmup_s + duration``. With no duration (only ``stop.requests``) the group has no end time.

Stages are laid end to end after the warm-up: stage ``k`` starts when stage ``k-1`` ends, so
their windows are shifted by ``warmup_s``. Warm-up is paced like stage 0, which is why stage 0's
span starts at 0. When ``stop.duration_s`` is longer than the stages, the last stage goes on until
the end; when it is shorter, the stages are cut at the end and any stage that would start after
it is dropped.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from typing import NamedTuple

from clientswarm.config.models import GroupConfig


class StageSpan(NamedTuple):
    """The time ``[start_s, end_s)`` during which stage ``stage`` paces the group.

    ``end_s`` is ``math.inf`` when only a request count bounds the group.
    """

    start_s: float
    end_s: float
    stage: int


def measured_duration_s(stage_durations: Sequence[float], duration_s: float | None) -> float | None:
    """The measured duration: ``duration_s``, else the sum of the stages, else ``None``."""
    if duration_s is not None:
        if duration_s <= 0:
            raise ValueError(f"duration_s must be > 0, got {duration_s}")
        return duration_s
    return math.fsum(stage_durations) if stage_durations else None


def group_end_s(group: GroupConfig, warmup_s: float) -> float | None:
    """Offset at which the group's time runs out, or ``None`` when only requests bound it."""
    duration = group.duration_s
    return None if duration is None else warmup_s + duration


def stage_spans(
    stage_durations: Sequence[float], *, warmup_s: float, duration_s: float | None
) -> list[StageSpan]:
    """The spans of the stages that run, in order, covering ``[0, end)`` without gaps.

    With no stages the whole run is one span of stage 0. ``duration_s`` is the measured
    duration given by ``stop.duration_s``; ``None`` means the sum of the stages.
    """
    if warmup_s < 0:
        raise ValueError(f"warmup_s must be >= 0, got {warmup_s}")
    if any(d <= 0 for d in stage_durations):
        raise ValueError(f"stage durations must be > 0, got {list(stage_durations)}")
    duration = measured_duration_s(stage_durations, duration_s)
    end = math.inf if duration is None else warmup_s + duration
    if not stage_durations:
        return [StageSpan(0.0, end, 0)]
    spans: list[StageSpan] = []
    start = 0.0
    last = len(stage_durations) - 1
    for k in range(len(stage_durations)):
        if start >= end:
            break
        # fsum of the prefix, not a running sum, so that boundaries carry no accumulated drift.
        boundary = warmup_s + math.fsum(stage_durations[: k + 1])
        stop = end if k == last else min(boundary, end)
        spans.append(StageSpan(start, stop, k))
        start = stop
    return spans


def stage_at(spans: Sequence[StageSpan], offset_s: float) -> int:
    """The stage that paces the group at ``offset_s``.

    Offsets before 0 belong to the first stage and offsets past the end to the last one.
    """
    if not spans:
        raise ValueError("no stage spans")
    starts = [span.start_s for span in spans]
    position = bisect.bisect_right(starts, offset_s) - 1
    return spans[max(position, 0)].stage
