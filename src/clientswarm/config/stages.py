"""The stages of an adaptive load as the service decides them: what workers are sent (in the
assignment and every heartbeat reply) and follow. The decisions are in
:mod:`clientswarm.load.adaptive`; this module is only their shape, light enough for every
process to load at start-up (pydantic, nothing numeric)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

StageRole = Literal["synchronous", "throughput", "rate", "probe"]
"""The part a stage plays in an adaptive load: an automatic sweep's ``synchronous`` (one
client), ``throughput`` (every client) and ``rate`` stages, a capacity search's ``probe``s."""


class StageOrder(BaseModel):
    """One stage of an adaptive group as the service decided it."""

    stage: int = Field(ge=0)
    start_offset_s: float = Field(ge=0, description="Start, seconds from the shared start")
    end_offset_s: float = Field(gt=0, description="End, seconds from the shared start")
    loop: Literal["open", "closed"]
    set_point: float = Field(gt=0, description="Requests per second (open) or clients (closed)")
    role: StageRole


class GroupStages(BaseModel):
    """An adaptive group's stages decided so far; ``final``: no more will come."""

    stages: list[StageOrder] = Field(default_factory=list)
    final: bool = False


__all__ = ["GroupStages", "StageOrder", "StageRole"]
