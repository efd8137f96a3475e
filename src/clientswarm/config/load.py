"""How a group's interactions are paced (load) and when the group stops."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Discriminator, Field, model_validator

from clientswarm.config.base import StrictModel
from clientswarm.config.paths import ConfigPath
from clientswarm.config.slo import SLOConfig


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


Arrival = Literal["poisson", "constant", "gamma"]
"""An open loop's arrival process: exponential gaps, equal gaps, or gamma gaps (``burstiness``)."""

BURSTINESS_DESCRIPTION = (
    "With arrival: gamma, the gamma shape of the gaps (vLLM bench serve's --burstiness): 1 is "
    "Poisson, below 1 burstier, above 1 more regular; the gaps' coefficient of variation is "
    "1/sqrt(burstiness). Default 1"
)


def _check_burstiness(arrival: str, burstiness: float | None) -> None:
    if burstiness is not None and arrival != "gamma":
        raise ValueError(f"burstiness applies to arrival: gamma (got arrival: {arrival})")


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
    arrival: Arrival = "poisson"
    burstiness: float | None = Field(
        default=None, gt=0, le=1000, description=BURSTINESS_DESCRIPTION
    )
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
        _check_burstiness(self.arrival, self.burstiness)
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


DECISION_GAP_S = 3.0
"""About how long an adaptive load pauses between two stages whose set point is chosen from the
first one's results, on top of waiting for its requests in flight (at most ``drain_s``): the
last samples ship, the service decides, and every worker learns the next set point at least
1 s before its stage starts (:mod:`clientswarm.load.adaptive`)."""


class SweepLoadConfig(StrictModel):
    """A sweep: one stage per set point, each ``stage_s`` long, with its own results.

    Explicit: ``rates`` becomes an open load with one stage per rate (``arrival`` constant by
    default, like GuideLLM's sweep), ``concurrencies`` a closed load with one stage per number
    of active clients (the group's ``clients`` defaults to the largest). It is expanded into
    that ``open`` or ``closed`` load when the configuration is validated (``arrival`` and
    ``max_concurrency`` apply to ``rates``), so everything downstream (schedules, per-stage
    results, the group's duration = the sum of the stages) is the same.

    Automatic: ``points: N`` first runs one client alone (the *synchronous* stage, closed
    loop), then every client of the group at once (the *throughput* stage: the saturated
    rate), then ``N`` constant-rate stages evenly spaced from the synchronous rate (excluded)
    to the saturated one (included). The rates are chosen from the first two stages'
    results while the group runs (:mod:`clientswarm.load.adaptive`).
    """

    kind: Literal["sweep"] = "sweep"
    rates: list[Annotated[float, Field(gt=0)]] | None = Field(
        default=None,
        min_length=1,
        max_length=1000,
        description="Arrival rates (requests per second over the whole group), one stage each",
    )
    concurrencies: list[Annotated[int, Field(ge=1, le=1_000_000)]] | None = Field(
        default=None,
        min_length=1,
        max_length=1000,
        description="Numbers of active clients (closed loop), one stage each",
    )
    points: int | None = Field(
        default=None,
        ge=1,
        le=100,
        description=(
            "Automatic sweep: this many constant rates between the measured synchronous rate "
            "(one client) and the saturated one (all the group's clients at once)"
        ),
    )
    stage_s: float = Field(gt=0, description="Seconds each set point runs")
    stage_warmup_s: float = Field(
        default=0.0,
        ge=0,
        description="Seconds at the start of each stage left out of its statistics",
    )
    arrival: Arrival = Field(default="constant", description="Arrival process of the rate stages")
    burstiness: float | None = Field(
        default=None, gt=0, le=1000, description=BURSTINESS_DESCRIPTION
    )
    max_concurrency: int | None = Field(
        default=None,
        ge=1,
        le=1_000_000,
        description="Max requests in flight for the group in a rate stage; late ones wait",
    )
    drain_s: float = Field(
        default=10.0,
        gt=0,
        le=3600,
        description=(
            "Automatic sweep: how long the throughput stage's requests in flight may take to "
            "end before the rates are chosen without them"
        ),
    )

    @model_validator(mode="after")
    def _one_kind_of_points(self) -> SweepLoadConfig:
        given = [n for n in ("rates", "concurrencies", "points") if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError(
                "a sweep needs exactly one of rates, concurrencies or points"
                + (f" (got {' and '.join(given)})" if given else "")
            )
        _check_burstiness(self.arrival, self.burstiness)
        for name in ("arrival", "burstiness", "max_concurrency"):
            if self.concurrencies is not None and name in self.model_fields_set:
                raise ValueError(f"{name} applies to a rates sweep, not to concurrencies")
        if self.points is None and "drain_s" in self.model_fields_set:
            raise ValueError("drain_s applies to an automatic sweep (points)")
        if self.stage_warmup_s and self.stage_warmup_s >= self.stage_s:
            raise ValueError(
                f"stage_warmup_s ({self.stage_warmup_s}) must be shorter than "
                f"stage_s ({self.stage_s})"
            )
        return self

    @property
    def stages(self) -> tuple[()]:
        """An automatic sweep has no stages planned ahead (they are chosen as it runs)."""
        return ()

    def upper_duration_s(self) -> float:
        """The longest an automatic sweep can take: its stages and its one pause to decide."""
        return (int(self.points or 0) + 2) * self.stage_s + self.drain_s + DECISION_GAP_S

    def expand(self) -> ClosedLoadConfig | OpenLoadConfig | SweepLoadConfig:
        """The ``open`` (rates) or ``closed`` (concurrencies) staged load this sweep stands for;
        an automatic sweep (points) stays itself."""
        if self.points is not None:
            return self
        if self.rates is not None:
            return OpenLoadConfig(
                arrival=self.arrival,
                burstiness=self.burstiness,
                max_concurrency=self.max_concurrency,
                stages=[OpenStage(rate=r, duration_s=self.stage_s) for r in self.rates],
                stage_warmup_s=self.stage_warmup_s,
            )
        return ClosedLoadConfig(
            stages=[
                ClosedStage(clients=c, duration_s=self.stage_s) for c in self.concurrencies or []
            ],
            stage_warmup_s=self.stage_warmup_s,
        )


class CapacityLoadConfig(StrictModel):
    """A capacity search: the highest arrival rate at which at least ``target_goodput`` of the
    requests meet the SLO, found in one run.

    Each probe is a stage of ``stage_s`` at one constant rate. From ``start_rate`` the rate
    grows by ``growth`` while probes pass; once one fails, the rate is bisected between the
    highest that passed and the lowest that failed until they are within ``resolution`` of
    each other (relative) or ``max_probes`` probes ran. The result names the capacity, the
    bracket it lies in and each probe's verdict with its confidence
    (:mod:`clientswarm.load.adaptive`).
    """

    kind: Literal["capacity"] = "capacity"
    slo: SLOConfig | None = Field(
        default=None, description="The objectives a request must meet; default: the cluster's slo"
    )
    target_goodput: float = Field(
        default=0.95,
        gt=0,
        le=1,
        description="Share of a probe's requests that must meet the SLO for it to pass",
    )
    stage_s: float = Field(gt=0, description="Seconds each probe runs")
    stage_warmup_s: float = Field(
        default=0.0,
        ge=0,
        description="Seconds at the start of each probe left out of its statistics and verdict",
    )
    start_rate: float = Field(default=1.0, gt=0, description="Rate of the first probe (req/s)")
    max_rate: float | None = Field(
        default=None, gt=0, description="Never probe above this rate (req/s)"
    )
    growth: float = Field(
        default=2.0, gt=1, le=100, description="Factor the rate grows by while probes pass"
    )
    resolution: float = Field(
        default=0.05,
        ge=0.001,
        lt=1,
        description="Stop when the bracket's width is at most this share of its upper end",
    )
    max_probes: int = Field(default=12, ge=1, le=100, description="Probes run at most")
    arrival: Arrival = Field(default="poisson", description="Arrival process of the probes")
    burstiness: float | None = Field(
        default=None, gt=0, le=1000, description=BURSTINESS_DESCRIPTION
    )
    max_concurrency: int | None = Field(
        default=None,
        ge=1,
        le=1_000_000,
        description="Max requests in flight for the group; late ones wait",
    )
    drain_s: float = Field(
        default=10.0,
        gt=0,
        le=3600,
        description=(
            "How long a probe's requests in flight may take to end after it; those still in "
            "flight then count as missing the SLO"
        ),
    )

    @model_validator(mode="after")
    def _consistent(self) -> CapacityLoadConfig:
        _check_burstiness(self.arrival, self.burstiness)
        if self.stage_warmup_s and self.stage_warmup_s >= self.stage_s:
            raise ValueError(
                f"stage_warmup_s ({self.stage_warmup_s}) must be shorter than "
                f"stage_s ({self.stage_s})"
            )
        if self.max_rate is not None and self.max_rate < self.start_rate:
            raise ValueError(
                f"max_rate ({self.max_rate}) must be at least start_rate ({self.start_rate})"
            )
        return self

    @property
    def stages(self) -> tuple[()]:
        """A capacity search has no stages planned ahead (each probe is chosen as it runs)."""
        return ()

    def peak_rate(self) -> float:
        """The highest rate a probe can have."""
        grown = self.start_rate * self.growth ** (self.max_probes - 1)
        return grown if self.max_rate is None else min(grown, self.max_rate)

    def upper_duration_s(self) -> float:
        """The longest the search can take: every probe and a pause after each but the last."""
        return self.max_probes * self.stage_s + (self.max_probes - 1) * (
            self.drain_s + DECISION_GAP_S
        )


TRACE_FORMATS = ("mooncake", "azure")
"""The trace formats a ``trace`` load reads (:mod:`clientswarm.load.trace`)."""

MAX_TRACE_DATA_CHARS = 256 * 1024 * 1024


class TraceLoadConfig(StrictModel):
    """Trace replay: the requests of a production trace sent open-loop at its timestamps.

    ``mooncake``: JSON lines with ``timestamp`` (milliseconds), ``input_length``,
    ``output_length`` and ``hash_ids`` (one id per ``block_tokens`` block of the prompt;
    requests with equal leading ids share that prefix, byte for byte). ``azure``: the Azure
    LLM inference trace CSV (``TIMESTAMP``, ``ContextTokens``, ``GeneratedTokens``). Each
    request's prompt is synthesised to its input length and ``max_tokens`` is its output
    length; arrival ``i`` is sent by the group's client ``i % clients``, as in an open load
    (:mod:`clientswarm.load.trace`).
    """

    kind: Literal["trace"] = "trace"
    path: ConfigPath | None = Field(
        default=None, description="The trace file (.jsonl: mooncake, .csv: azure)"
    )
    data: str | None = Field(
        default=None,
        max_length=MAX_TRACE_DATA_CHARS,
        description=(
            "The trace's text itself, in place of path (clientswarm submit sends a local "
            "trace this way)"
        ),
    )
    format: Literal["mooncake", "azure"] | None = Field(
        default=None,
        description="The trace's format; default: from path's extension, or data's first line",
    )
    speedup: float = Field(
        default=1.0, gt=0, le=1e6, description="Replay this many times faster than recorded"
    )
    start_s: float = Field(
        default=0.0,
        ge=0,
        description="Start the replay this many trace seconds after the trace's first request",
    )
    window_s: float | None = Field(
        default=None,
        gt=0,
        description="Replay only this many trace seconds from start_s (default: to the end)",
    )
    block_tokens: int = Field(
        default=512,
        ge=1,
        le=1_000_000,
        description="Tokens in one hash_ids block (mooncake traces: 512)",
    )
    max_concurrency: int | None = Field(
        default=None,
        ge=1,
        le=1_000_000,
        description="Max requests in flight for the group; late ones wait",
    )

    @model_validator(mode="after")
    def _one_source(self) -> TraceLoadConfig:
        if (self.path is None) == (self.data is None):
            raise ValueError(
                "a trace load needs exactly one of path (the trace file) or data (its text)"
            )
        return self

    @property
    def stages(self) -> tuple[()]:
        """A trace replay has no stages: the trace is the schedule."""
        return ()

    @property
    def stage_warmup_s(self) -> float:
        """No stages, so no per-stage warm-up."""
        return 0.0

    def replay_s(self) -> float | None:
        """How long the replay of the window takes (None: to the trace's end, unknown here)."""
        return None if self.window_s is None else self.window_s / self.speedup


AdaptiveLoadConfig = SweepLoadConfig | CapacityLoadConfig
"""A load whose set points are chosen from results while it runs (after validation, a
``SweepLoadConfig`` is always an automatic one: explicit sweeps are expanded)."""


def _expand_sweep(value: Any) -> Any:
    return value.expand() if isinstance(value, SweepLoadConfig) else value


def sweep_default_clients(data: Any) -> Any:
    """A group mapping whose load is a ``concurrencies`` sweep and that gives no ``clients``
    gets ``clients`` = the largest concurrency (anything else is returned unchanged)."""
    if not isinstance(data, dict) or "clients" in data:
        return data
    load = data.get("load")
    if not isinstance(load, dict) or load.get("kind") != "sweep":
        return data
    points = load.get("concurrencies")
    if not isinstance(points, list) or not points:
        return data
    if not all(isinstance(p, int) and not isinstance(p, bool) and p >= 1 for p in points):
        return data
    return {**data, "clients": max(points)}


if TYPE_CHECKING:
    LoadConfig = (
        ClosedLoadConfig | OpenLoadConfig | SweepLoadConfig | CapacityLoadConfig | TraceLoadConfig
    )
else:
    # A sweep is validated as its own kind (so that errors and the JSON schema know it), then
    # an explicit one is replaced by the open or closed staged load it stands for.
    LoadConfig = Annotated[
        ClosedLoadConfig | OpenLoadConfig | SweepLoadConfig | CapacityLoadConfig | TraceLoadConfig,
        Field(discriminator="kind"),
        AfterValidator(_expand_sweep),
    ]


class CancelConfig(StrictModel):
    """Cancel a share of a group's requests on purpose, after a delay (what aborts cost the
    server): each request is chosen with probability ``fraction`` (seeded per client) and cut
    ``after_s`` seconds after it starts, unless it ended before."""

    fraction: float = Field(gt=0, le=1, description="Share of requests to cancel")
    after_s: float = Field(gt=0, le=3600, description="Seconds after its start a request is cut")


class StopConfig(StrictModel):
    """When a group stops: after a measured duration and/or a number of measured requests."""

    duration_s: float | None = Field(default=None, gt=0, description="Measured seconds")
    requests: int | None = Field(
        default=None, ge=1, le=10**12, description="Measured requests of the group"
    )
