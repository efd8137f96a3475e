"""What each load stage of a group was planned to be, and which of its samples are warm-up.

A group with ``load.stages`` gets one statistics block per stage (``groups[g].stages`` in the
summary, :mod:`clientswarm.metrics.stats`); this module gives each block its plan:

- ``set_point``: the stage's arrival rate (requests per second, open loop) or active clients
  (closed loop);
- ``start_offset_s``: when the stage starts, in seconds from the group's start (the cluster's
  shared start time, warm-up included): ``warmup_s`` plus the durations of the stages before it.
  Stage 0 is also what paces the warm-up, but its own time starts after it;
- ``planned_s``: how long it was planned to run (its duration, cut by ``stop.duration_s``, or
  stretched to it for the last stage, :func:`~clientswarm.load.stages.stage_spans`);
- ``set_point_unit``: ``req/s`` or ``clients``;
- ``stage_warmup_s``: the first seconds of the stage whose samples are warm-up
  (``load.stage_warmup_s``): tagged ``warmup`` by the worker like those of ``warmup_s``, so
  they are counted as warm-up and left out of that stage's statistics and the group's.
"""

from __future__ import annotations

from collections.abc import Callable

from clientswarm.config.load import OpenLoadConfig, OpenStage
from clientswarm.config.models import ClusterConfig, GroupConfig
from clientswarm.load.stages import stage_spans
from clientswarm.metrics.summary import StagePlan


def stage_plans(group: GroupConfig, warmup_s: float) -> list[StagePlan]:
    """The stages of ``group`` that run, in order (empty for a group without stages)."""
    load = group.load
    if not load.stages:
        return []
    durations = [stage.duration_s for stage in load.stages]
    spans = stage_spans(durations, warmup_s=warmup_s, duration_s=group.stop.duration_s)
    plans = []
    for span in spans:
        stage = load.stages[span.stage]
        set_point = float(stage.rate if isinstance(stage, OpenStage) else stage.clients)
        start_s = warmup_s if span.stage == 0 else span.start_s
        plans.append(
            StagePlan(
                stage=span.stage,
                set_point=set_point,
                start_offset_s=start_s,
                planned_s=max(span.end_s - start_s, 0.0),
                stage_warmup_s=load.stage_warmup_s,
                set_point_unit="req/s" if isinstance(load, OpenLoadConfig) else "clients",
            )
        )
    return plans


def stage_warmup_of(config: ClusterConfig) -> Callable[[str, float], bool] | None:
    """Whether a sample of a group scheduled at an offset (seconds from the shared start) lies
    in the warm-up of its stage; None when no group has a ``stage_warmup_s``."""
    windows: dict[str, list[tuple[float, float]]] = {}
    for group in config.groups:
        if group.load.stage_warmup_s:
            windows[group.name] = [
                (p.start_offset_s, p.start_offset_s + p.stage_warmup_s)
                for p in stage_plans(group, config.warmup_s)
            ]
    if not windows:
        return None

    def in_stage_warmup(group: str, offset_s: float) -> bool:
        return any(start <= offset_s < end for start, end in windows.get(group, ()))

    return in_stage_warmup


__all__ = ["StagePlan", "stage_plans", "stage_warmup_of"]
