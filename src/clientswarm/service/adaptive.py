"""The service's side of adaptive loads (automatic sweeps, capacity searches): it counts each
stage's requests as their batches commit, decides the next set points when a stage has ended
(on a worker's heartbeat or the watchdog's tick), sends them to the workers in every heartbeat
reply, records each decision as an event (``set_point``, with the decided stages as data, so a
restarted service takes up where it was), and gives the summary each stage's plan and the
search's result. The rules are in :mod:`clientswarm.load.adaptive`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from clientswarm.config.load import CapacityLoadConfig
from clientswarm.config.models import ClusterConfig
from clientswarm.load.adaptive import (
    MIN_LEAD_S,
    WAITING_HEARTBEAT_S,
    AdaptiveGroup,
    GroupStages,
    StageOrder,
    StageTally,
    is_adaptive,
)
from clientswarm.metrics.columns import SampleColumns
from clientswarm.metrics.derive import Parts, measured_parts
from clientswarm.metrics.summary import (
    CapacityResult,
    ProbeResult,
    StagePlan,
    SweepResult,
)

LEAD_S = WAITING_HEARTBEAT_S + MIN_LEAD_S + 0.25
"""Seconds from a decision to the start of the stage it decided: a waiting worker heartbeats
every :data:`~clientswarm.load.adaptive.WAITING_HEARTBEAT_S`, then has at least 1 s (and a
margin for the round trip)."""

REPORT_MARGIN_S = 0.05
"""A worker's report counts as made after a stage's end when it arrived this much later."""

EVENT_KIND = "set_point"
"""The kind of the event each decision is recorded as."""


@dataclass
class WorkerBeat:
    """What the service last heard from a running worker, for the decisions."""

    in_flight_groups: dict[str, int]
    heard_ns: int
    """When (epoch ns)."""


class AdaptiveRun:
    """The adaptive groups of one cluster: their decided stages, counts and results."""

    def __init__(self, config: ClusterConfig) -> None:
        self.config = config
        self.groups: dict[str, AdaptiveGroup] = {
            g.name: AdaptiveGroup(g, config.warmup_s, LEAD_S)
            for g in config.groups
            if is_adaptive(g)
        }
        self._own_slo = {
            name: g.load.slo
            for name, g in ((g.name, g) for g in config.groups if g.name in self.groups)
            if isinstance(g.load, CapacityLoadConfig) and g.load.slo is not None
        }
        self._tallies: dict[str, dict[int, StageTally]] = {name: {} for name in self.groups}
        self._lock = threading.Lock()

    @classmethod
    def of(cls, config: ClusterConfig) -> AdaptiveRun | None:
        """The adaptive run of ``config``; None when no group is adaptive."""
        return cls(config) if any(is_adaptive(g) for g in config.groups) else None

    def orders(self) -> dict[str, GroupStages]:
        """Every adaptive group's stages decided so far, for the workers."""
        return {name: group.orders() for name, group in self.groups.items()}

    def observe(self, batch: SampleColumns, parts: Parts) -> None:
        """Count what a committed batch adds to each adaptive group's stages (``parts``: the
        batch measured against the cluster's SLO; a search with an SLO of its own measures
        it again against that one)."""
        own = {
            name: measured_parts(batch, slo=slo)
            for name, slo in self._own_slo.items()
            if _has_group(parts, name)
        }
        with self._lock:
            for name, tallies in self._tallies.items():
                for (_, group, step, stage, _), m in own.get(name, parts).items():
                    if group != name or step is not None:
                        continue
                    tally = tallies.setdefault(stage or 0, StageTally())
                    tally.requests += m.requests
                    tally.met_slo += m.goodput

    def tick(self, start_ns: int, beats: Iterable[WorkerBeat]) -> list[tuple[str, str]]:
        """Decide what is due; return (group, message) of each decision."""
        now_ns = time.time_ns()
        now_s = (now_ns - start_ns) / 1e9
        beats = list(beats)
        decided = []
        for name, group in self.groups.items():
            in_flight = sum(b.in_flight_groups.get(name, 0) for b in beats)
            oldest = min((b.heard_ns for b in beats), default=now_ns)
            reported_s = (oldest - start_ns) / 1e9 - REPORT_MARGIN_S
            if not group.due(now_s, in_flight, reported_s):
                continue
            with self._lock:
                tallies = {
                    k: StageTally(t.requests, t.met_slo) for k, t in self._tallies[name].items()
                }
            decided.append((name, group.decide(now_s, tallies, in_flight)))
        return decided

    def event_data(self, name: str) -> dict[str, Any]:
        """What a decision's event records: enough to take the group up again."""
        group = self.groups[name]
        return {
            "group": name,
            "stages": [order.model_dump() for order in group.stages],
            "final": group.final,
            "sweep": group.sweep.model_dump() if group.sweep is not None else None,
            "probes": [probe.model_dump() for probe in group.probes],
            "reason": group.reason,
        }

    def restore(self, events: Iterable[Mapping[str, Any]]) -> None:
        """Take up the decisions recorded by :meth:`event_data` (after a restart), in order."""
        for data in events:
            group = self.groups.get(str(data.get("group")))
            if group is None:
                continue
            group.stages = [StageOrder.model_validate(o) for o in data.get("stages") or []]
            group.final = bool(data.get("final"))
            sweep = data.get("sweep")
            group.sweep = SweepResult.model_validate(sweep) if sweep is not None else None
            group.probes = [ProbeResult.model_validate(p) for p in data.get("probes") or []]
            group.reason = data.get("reason")

    def plans(self) -> dict[str, list[StagePlan]]:
        """Each adaptive group's stages as the summary reports them."""
        return {name: group.plans() for name, group in self.groups.items()}

    def results(self) -> dict[str, tuple[SweepResult | None, CapacityResult | None]]:
        """Each adaptive group's sweep or capacity result so far."""
        return {
            name: (group.sweep, group.capacity(self.config.slo))
            for name, group in self.groups.items()
        }


def _has_group(parts: Parts, name: str) -> bool:
    return any(key[1] == name for key in parts)


__all__ = ["EVENT_KIND", "LEAD_S", "AdaptiveRun", "WorkerBeat"]
