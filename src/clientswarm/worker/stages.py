"""Which stage a worker's samples belong to: each planned group's stage spans, and the stages
of an adaptive group as the service decides them (:class:`StageFeed`)."""

from __future__ import annotations

import asyncio
import bisect

from clientswarm.config.models import ClusterConfig
from clientswarm.load import StageSpan, stage_spans
from clientswarm.load.adaptive import GroupStages, StageOrder, is_adaptive


def group_spans(config: ClusterConfig) -> dict[str, list[StageSpan]]:
    """Each planned group's stage spans, to tag samples with the stage they were scheduled in
    (adaptive groups learn theirs while they run: :class:`StageFeed`)."""
    spans: dict[str, list[StageSpan]] = {}
    for group in config.groups:
        if is_adaptive(group):
            continue
        durations = [stage.duration_s for stage in group.load.stages]
        spans[group.name] = stage_spans(
            durations, warmup_s=config.warmup_s, duration_s=group.stop.duration_s
        )
    return spans


class StageFeed:
    """The stages of one adaptive group as the service decides them (assignment, then
    heartbeat replies), and the waiting for the next one."""

    def __init__(self, warmup_s: float, stage_warmup_s: float) -> None:
        self.orders: list[StageOrder] = []
        self.final = False
        self.waiting = False
        """True while the group waits for a stage not decided yet."""
        self._warmup_s, self._stage_warmup_s = warmup_s, stage_warmup_s
        self._starts: list[float] = []
        self._changed = asyncio.Event()

    def update(self, stages: GroupStages) -> None:
        """Take what the service sent (a repeat, or an older list, changes nothing)."""
        if len(stages.stages) > len(self.orders):
            self.orders = list(stages.stages)
            self._starts = [order.start_offset_s for order in self.orders]
        if stages.final and len(stages.stages) >= len(self.orders):
            self.final = True
        self._changed.set()

    async def get(self, stage: int) -> StageOrder | None:
        """Stage ``stage`` once decided; None when the group has no more."""
        while stage >= len(self.orders):
            if self.final:
                return None
            self.waiting = True
            self._changed.clear()
            try:
                await self._changed.wait()
            finally:
                self.waiting = False
        return self.orders[stage]

    def stage_at(self, offset_s: float) -> int:
        """The stage a send at ``offset_s`` belongs to (the last one started by then)."""
        return max(bisect.bisect_right(self._starts, offset_s) - 1, 0)

    def in_stage_warmup(self, offset_s: float) -> bool:
        """Whether a send at ``offset_s`` lies in its stage's ``stage_warmup_s``."""
        if not self._stage_warmup_s or not self.orders:
            return False
        order = self.orders[self.stage_at(offset_s)]
        start = self._warmup_s if order.stage == 0 else order.start_offset_s
        return start <= offset_s < start + self._stage_warmup_s
