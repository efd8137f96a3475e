"""How a group's interactions are paced (load) and when the group stops."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Discriminator, Field, model_validator

from clientswarm.config.base import StrictModel


class ConstantThink(StrictModel):
    """Always wait the same time between two interactions of a client."""

    kind: Literal["constant"] = "constant"
    value_s: float = Field(ge=0)


class UniformThink(StrictModel):
    """Wait a uniform random time in [min_s, max_s]."""

    kind: Literal["uniform"] = "uniform"
    min_s: float = Field(ge=0)
    max_s: float = Field(ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> UniformThink:
        if self.max_s < self.min_s:
            raise ValueError(f"max_s ({self.max_s}) must be >= min_s ({self.min_s})")
        return self


class ExponentialThink(StrictModel):
    """Wait an exponential random time with the given mean."""

    kind: Literal["exponential"] = "exponential"
    mean_s: float = Field(gt=0)


def _coerce_think(value: Any) -> Any:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return {"kind": "constant", "value_s": value}
    return value


_ThinkUnion = Annotated[ConstantThink | UniformThink | ExponentialThink, Discriminator("kind")]

# A bare number stands for a constant think time; json_schema_input_type tells editors so.
ThinkTime = Annotated[
    _ThinkUnion,
    BeforeValidator(
        _coerce_think, json_schema_input_type=Annotated[float, Field(ge=0)] | _ThinkUnion
    ),
]


class ClosedStage(StrictModel):
    """One step of a closed-loop sweep: this many active clients for this long."""

    clients: int = Field(ge=1, le=1_000_000)
    duration_s: float = Field(gt=0)


class OpenStage(StrictModel):
    """One step of an open-loop sweep: this arrival rate for this long."""

    rate: float = Field(gt=0, description="Requests per second over the whole group")
    duration_s: float = Field(gt=0)


class ClosedLoadConfig(StrictModel):
    """Closed loop: each client sends, waits for the answer, thinks, and sends again."""

    kind: Literal["closed"] = "closed"
    think_time_s: ThinkTime = Field(
        default_factory=lambda: ConstantThink(value_s=0.0),
        description="Seconds between the end of one interaction and the next send",
    )
    ramp_up_s: float | None = Field(
        default=None,
        ge=0,
        description=(
            "Clients start evenly over this time. Not given: over min(1 s, 10% of the group's "
            "time), so that clients are not in lockstep; 0 starts them all at once"
        ),
    )
    stages: list[ClosedStage] = Field(default_factory=list)
    stage_warmup_s: float = Field(
        default=0.0,
        ge=0,
        description=(
            "Seconds at the start of each stage whose samples are warm-up: kept, but left out "
            "of that stage's statistics (and the group's), so each stage is measured in "
            "steady state. Needs stages; shorter than every stage"
        ),
    )

    @model_validator(mode="after")
    def _stage_warmup(self) -> ClosedLoadConfig:
        _check_stage_warmup(self.stage_warmup_s, [s.duration_s for s in self.stages])
        return self


class OpenLoadConfig(StrictModel):
    """Open loop: interactions start at scheduled times whatever the answers take."""

    kind: Literal["open"] = "open"
    rate: float | None = Field(default=None, gt=0, description="Requests per second (group)")
    arrival: Literal["poisson", "constant"] = "poisson"
    max_concurrency: int | None = Field(
        default=None,
        ge=1,
        le=1_000_000,
        description="Max requests in flight for the group; late ones wait",
    )
    stages: list[OpenStage] = Field(default_factory=list)
    stage_warmup_s: float = Field(
        default=0.0,
        ge=0,
        description=(
            "Seconds at the start of each stage whose samples are warm-up: kept, but left out "
            "of that stage's statistics (and the group's), so each stage is measured in "
            "steady state. Needs stages; shorter than every stage"
        ),
    )

    @model_validator(mode="after")
    def _rate_or_stages(self) -> OpenLoadConfig:
        if self.rate is None and not self.stages:
            raise ValueError("an open load needs a rate (requests per second) or stages")
        if self.rate is not None and self.stages:
            raise ValueError("give either rate or stages, not both")
        _check_stage_warmup(self.stage_warmup_s, [s.duration_s for s in self.stages])
        return self


def _check_stage_warmup(stage_warmup_s: float, durations: list[float]) -> None:
    """A per-stage warm-up needs stages and must leave each of them a measured part."""
    if not stage_warmup_s:
        return
    if not durations:
        raise ValueError("stage_warmup_s needs stages (use warmup_s for a run without stages)")
    shortest = min(durations)
    if stage_warmup_s >= shortest:
        raise ValueError(
            f"stage_warmup_s ({stage_warmup_s}) must be shorter than every stage "
            f"(the shortest lasts {shortest} s)"
        )


LoadConfig = Annotated[ClosedLoadConfig | OpenLoadConfig, Field(discriminator="kind")]


class StopConfig(StrictModel):
    """When a group stops: after a measured duration and/or a number of measured requests."""

    duration_s: float | None = Field(default=None, gt=0, description="Measured seconds")
    requests: int | None = Field(
        default=None, ge=1, le=10**12, description="Measured requests of the group"
    )
