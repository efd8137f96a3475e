"""The summary of a cluster: one model for ``summary.json`` and ``GET …/results`` alike.

A :class:`Summary` is built once, when the cluster is finalised (or for a partial answer while
it runs), from the exact statistics (:mod:`clientswarm.metrics.stats`) and the cluster's own
record (status, reason, times, workers). The service stores its JSON; ``GET …/results`` and
``clientswarm run``'s ``summary.json`` are that same document. Fields keep their order and
meaning (DESIGN.md's ``summary.json`` shape); what a later issue adds goes here.
"""

from __future__ import annotations

from typing import Any, Literal, NamedTuple

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
)

from clientswarm.config.stages import StageRole
from clientswarm.metrics.dist import Dist
from clientswarm.timestamps import rfc3339


class Stats(BaseModel):
    """Exact statistics of a set of samples (a group, a step, a target, or all groups)."""

    model_config = ConfigDict(extra="forbid")

    requests: int
    succeeded: int
    failed: int
    errors: dict[str, int]
    duration_s: float
    request_rate: float
    output_token_rate: float
    input_tokens: int
    output_tokens: int
    goodput_rate: float
    ttft_s: Dist
    itl_s: Dist
    tpot_s: Dist
    e2e_s: Dist
    schedule_lag_s: Dist
    e2e_from_schedule_s: Dist
    goodput: int
    succeeded_rate: float
    send_rate: float | None
    send_span_s: float | None = None
    """The span ``send_rate`` is over: last send - first send (None with fewer than 2)."""
    error_rate: float
    token_sources: dict[str, int]
    warmup_excluded: int
    cancelled_excluded: int


def _is_none(value: object) -> bool:
    return value is None


class StagePlan(NamedTuple):
    """One load stage of a group as planned (:mod:`clientswarm.load.stage_plan` makes them
    from the configuration): what :class:`StageStats` reports beside the statistics."""

    stage: int
    set_point: float
    start_offset_s: float
    planned_s: float
    stage_warmup_s: float
    set_point_unit: Literal["req/s", "clients"]
    role: StageRole | None = None
    """What the stage is for in an adaptive load (None in a planned one)."""


class StageStats(Stats):
    """One load stage's statistics: the Stats of the interactions scheduled in it (its
    ``stage_warmup_s`` left out, in ``warmup_excluded``) and what it was planned to be
    (:mod:`clientswarm.load.stage_plan`)."""

    stage: int
    """The stage's index (0, 1, …): its place in the group's ``stages`` and its samples'
    ``stage``."""
    set_point: float
    """The stage's arrival rate (requests per second, open loop) or active clients (closed)."""
    start_offset_s: float
    """When the stage started, in seconds from the group's start (warm-up included)."""
    planned_s: float
    """How long it was planned to last, its warm-up included."""
    set_point_unit: Literal["req/s", "clients"]
    """What ``set_point`` counts: ``req/s`` (open loop) or ``clients`` (closed loop)."""
    stage_warmup_s: float = 0.0
    """Its first seconds whose samples are warm-up (``load.stage_warmup_s``)."""
    role: StageRole | None = Field(default=None, exclude_if=_is_none)
    """Its part in an adaptive load (automatic sweep, capacity search); absent otherwise."""


class SweepResult(BaseModel):
    """What an automatic sweep measured and chose (``load: {kind: sweep, points: N}``)."""

    synchronous_rate: float | None = None
    """Requests per second one client alone completed (stage 0; None: it did not end)."""
    throughput_rate: float | None = None
    """Requests per second every client at once completed (stage 1): the saturated rate."""
    rates: list[float] = []
    """The constant rates of the stages after them (req/s), in order."""
    reason: str | None = None
    """Why it ended early (None: every point ran as planned)."""


class ProbeResult(BaseModel):
    """One probe of a capacity search: a stage at one rate, and its verdict."""

    stage: int
    rate: float
    """The probe's offered arrival rate (req/s)."""
    requests: int
    """Measured requests the verdict counted (those still in flight after ``drain_s``
    included, as misses)."""
    met_slo: int
    """How many of them met every objective of the search's SLO."""
    in_flight: int = 0
    """Requests still in flight when the verdict was taken, counted as missing the SLO."""
    goodput_share: float
    """``met_slo / requests`` (0 when there were none)."""
    passed: bool
    """Whether ``goodput_share >= target_goodput``."""
    confidence: float
    """How sure the verdict is: the probability, given these counts (a uniform prior on the
    share of requests the server meets at this rate), that the true share lies on the side of
    ``target_goodput`` the verdict says."""


class CapacityResult(BaseModel):
    """What a capacity search found (``load: {kind: capacity}``)."""

    slo: dict[str, float]
    """The objectives searched against."""
    target_goodput: float
    capacity_rate: float | None
    """The highest probed rate that passed (req/s); None: none did."""
    bracket: tuple[float, float | None]
    """The capacity lies in ``[low, high)``: ``low`` the highest rate that passed (0 when none
    did), ``high`` the lowest that failed (None when none did: at least ``low``)."""
    converged: bool
    """Whether the bracket narrowed to ``resolution``."""
    reason: str
    """Why the search ended."""
    probes: list[ProbeResult]


class GroupStats(Stats):
    """A group's statistics, with the name of its target, its steps (only a group that has
    some), its load stages (only a group with ``load.stages``: ``[StageStats, …]``, in
    order: the list's index is the stage's) and how exact its prompts' token lengths are
    (only a group with prompts). Its own fields are over the whole run, every stage
    together."""

    # Absent ones are left out of the document (``exclude_if``, not a serializer function, so
    # that the OpenAPI schema of ``GET …/results`` still lists every field).
    target: str | None = Field(default=None, exclude_if=_is_none)
    steps: dict[str, Stats] | None = Field(default=None, exclude_if=_is_none)
    """Journey steps of a user-defined interaction (not load stages)."""
    stages: list[StageStats] | None = Field(default=None, exclude_if=_is_none)
    """Load stages in order (``stages[k]`` is stage ``k``)."""
    input_token_lengths: Literal["exact", "approximate"] | None = Field(
        default=None, exclude_if=_is_none
    )
    sweep: SweepResult | None = Field(default=None, exclude_if=_is_none)
    """An automatic sweep's measured end points and chosen rates."""
    capacity: CapacityResult | None = Field(default=None, exclude_if=_is_none)
    """A capacity search's result."""


class ClusterInfo(BaseModel):
    """Which cluster, how it ended and when (RFC 3339 UTC strings; epoch seconds given are
    converted, see :mod:`clientswarm.timestamps`)."""

    id: str | None = None
    name: str | None = None
    status: str | None = None
    reason: str | None = None
    """Why it failed or was cancelled (None when it completed)."""
    started_at: str | None = None
    """When its clients started (None: they never did)."""
    ended_at: str | None = None
    """When it ended (None: it has not)."""

    @field_validator("started_at", "ended_at", mode="before")
    @classmethod
    def _rfc3339(cls, value: Any) -> Any:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return rfc3339(float(value))
        return value


class TargetInfo(BaseModel):
    """One target as the run's metadata names it: where it was and which model (never its
    headers or keys)."""

    url: str
    model: str | None = None


class RunInfo(BaseModel):
    """What ran, with what and where: enough to tell two runs apart and to repeat one."""

    clientswarm_version: str
    """The version of the service that ran it (and built this summary)."""
    python_version: str
    """That service's Python (e.g. ``3.11.7``)."""
    hosts: list[str]
    """The host names its workers registered from, sorted (empty: none registered)."""
    targets: dict[str, TargetInfo]
    """Each target by name (``default`` for a single ``target:``)."""
    config_sha256: str
    """SHA-256 (hex) of the configuration as validated: its canonical JSON (sorted keys, no
    spaces), the content of config.json."""
    seed: int
    planned_duration_s: float | None
    """Seconds its schedule asked for, warm-up included (None: only request counts bound
    it)."""
    measured_duration_s: float | None
    """Seconds from ``started_at`` to ``ended_at`` (None until both are known)."""


class ThresholdResult(BaseModel):
    """One threshold of the configuration, judged on the final statistics
    (:mod:`clientswarm.thresholds`)."""

    scope: str
    """``total``, or ``groups.<name>`` for a group's own."""
    expr: str
    """The expression as written, e.g. ``ttft_s.p99 < 0.5``."""
    value: int | float | None
    """The statistic's value (None: it has none, e.g. no streamed answer, which fails)."""
    passed: bool


class WorkerRow(BaseModel):
    """One worker, as the summary shows it."""

    index: int
    state: str
    error: str | None = None
    samples: int = 0
    loop_lag_p99_s: float | None = None


class Summary(BaseModel):
    """``summary.json``: see the module docstring and :mod:`clientswarm.metrics.stats`."""

    cluster: ClusterInfo
    total: Stats
    groups: dict[str, GroupStats]
    targets: dict[str, Stats]
    """The Stats of each target's samples (interactions, like ``total``), by target name."""
    replicas: dict[str, dict[str, Stats]] = {}
    """For each target with replicas (``target.urls``), the Stats of each replica's samples,
    by URL, beside the target's whole in ``targets``."""
    thresholds: list[ThresholdResult] = []
    """Every threshold of the configuration, in its order (total's first, then each group's)."""
    warnings: list[str]
    trustworthy: bool
    slo: dict[str, float] | None = None
    """The objectives goodput was measured against (None: none)."""
    lag_bound_s: float
    notes: list[str] = []
    workers: list[WorkerRow] = []
    run: RunInfo | None = None
    """The run's metadata (None in a summary built from samples alone)."""
    server: dict[str, Any] | None = Field(default=None, exclude_if=_is_none)
    """The engines' own metrics during the run, by target name (only when some were
    scraped: :mod:`clientswarm.service.engine_metrics`)."""

    def document(self) -> dict[str, Any]:
        """The JSON document (plain dicts and lists)."""
        return self.model_dump(mode="json")


__all__ = [
    "CapacityResult",
    "ClusterInfo",
    "GroupStats",
    "ProbeResult",
    "RunInfo",
    "StagePlan",
    "StageRole",
    "StageStats",
    "Stats",
    "Summary",
    "SweepResult",
    "TargetInfo",
    "ThresholdResult",
    "WorkerRow",
]
