"""Adaptive loads: an automatic sweep and a capacity search, whose set points are chosen from
the results while the group runs. Pure: the service feeds it counts and times, and sends the
stages it decides to the workers.

- **Stages as orders.** Each stage of an adaptive group is a :class:`StageOrder`: when it starts
  and ends (seconds from the cluster's shared start), closed loop (``set_point`` active
  clients) or open loop (``set_point`` requests per second), and its role. The service sends a
  group's orders so far (:class:`GroupStages`; ``final`` once no more will come) in the
  assignment and in every heartbeat reply. Stage 0 starts at 0 and its time after
  ``warmup_s`` is measured, like a planned stage 0.
- **Deciding.** A stage whose successor depends on it is followed by a pause. Once it has
  ended and its requests in flight have ended too (or ``drain_s`` passed), and
  :data:`SETTLE_S` more for their samples to ship, the service decides (:meth:`AdaptiveGroup.
  decide`) and the next stage starts ``lead_s`` later: a worker hears every heartbeat reply
  within its heartbeat interval, so ``lead_s`` = that interval + 1 s gives every worker at
  least 1 s to prepare the stage.
- **Open-loop stages** are split across workers like any open-loop schedule
  (:func:`stage_schedule`): the arrivals of stage ``k`` come from
  ``np.random.default_rng([seed mod 2**64, group_index, k])``, arrival ``j`` of the stage is
  sent by the group's client ``j % clients``, and each worker keeps its own clients'.
- **Automatic sweep** (``points: N``): stage 0 runs one client alone (closed loop, the
  *synchronous* rate), stage 1 every client of the group (the *throughput* rate), right after
  it; then ``N`` open-loop stages at ``linspace(synchronous, throughput, N + 1)[1:]``, laid
  end to end after one pause. Each rate is measured requests (those still in flight counted
  as sent) per measured second of its stage.
- **Capacity search**: probe 0 runs ``start_rate``. A probe passes when at least
  ``target_goodput`` of its measured requests met the SLO (requests still in flight after
  ``drain_s`` count as misses). While every probe passes the rate grows by ``growth`` (up to
  ``max_rate``); below the lowest failure and above the highest pass it bisects, until the
  bracket is within ``resolution`` of its upper end or ``max_probes`` ran. The verdict's
  confidence is the posterior probability, under a uniform prior, that the server's true
  share is on the verdict's side of the target (:func:`share_confidence`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from clientswarm.config.load import CapacityLoadConfig, SweepLoadConfig
from clientswarm.config.models import ClusterConfig, GroupConfig, SLOConfig
from clientswarm.config.stages import GroupStages, StageOrder
from clientswarm.load.clients import first_client as group_first_client
from clientswarm.load.open_loop import arrival_phase
from clientswarm.load.schedule import ArrivalSchedule
from clientswarm.metrics.summary import (
    CapacityResult,
    ProbeResult,
    StagePlan,
    SweepResult,
)

SETTLE_S = 0.8
"""Seconds between the end of a stage's last request (every worker reporting none in flight)
and the decision: workers ship their samples at least every 0.5 s."""

WAITING_HEARTBEAT_S = 0.25
"""A worker whose adaptive group waits for its next stage heartbeats this often, so that it
learns the decision quickly and the pause stays short."""

MIN_LEAD_S = 1.0
"""Every worker learns a decided stage at least this long before it starts."""


def lead_s(heartbeat_interval_s: float) -> float:
    """How long after a decision its stage starts: every worker hears it within one (waiting)
    heartbeat interval, then has :data:`MIN_LEAD_S` to prepare."""
    return round(min(heartbeat_interval_s, WAITING_HEARTBEAT_S) + MIN_LEAD_S + 0.25, 3)


def is_adaptive(group: GroupConfig) -> bool:
    """Whether ``group``'s set points are chosen while it runs."""
    return isinstance(group.load, SweepLoadConfig | CapacityLoadConfig)


def stage_schedule(config: ClusterConfig, group_index: int, order: StageOrder) -> ArrivalSchedule:
    """The whole group's arrivals of open-loop stage ``order`` (split them with
    :meth:`ArrivalSchedule.for_worker`)."""
    group = config.groups[group_index]
    load = group.load
    if not isinstance(load, SweepLoadConfig | CapacityLoadConfig):
        raise ValueError(f"group {group.name!r} has no adaptive load")
    if order.loop != "open":
        raise ValueError(f"stage {order.stage} is a closed-loop stage")
    start, end, rate = order.start_offset_s, order.end_offset_s, order.set_point
    rng = np.random.default_rng([config.seed % (1 << 64), group_index, order.stage])
    offsets, n_warmup = arrival_phase(
        load.arrival, load.burstiness, (start, end), rate, config.warmup_s, None, rng
    )
    n = len(offsets)
    return ArrivalSchedule(
        offsets,
        np.arange(n, dtype=np.int64),
        np.full(n, order.stage, dtype=np.int32),
        np.arange(n) < n_warmup,
        group_first_client(config, group_index),
        group.clients,
    )


def share_confidence(met: int, requests: int, target: float) -> float:
    """The posterior probability that the true share of requests meeting the SLO is at least
    ``target``, having seen ``met`` of ``requests`` meet it (uniform prior: the share follows
    Beta(met + 1, requests - met + 1), whose CDF at ``target`` is the probability that
    Binomial(requests + 1, target) reaches ``met + 1``)."""
    if not 0 <= met <= requests:
        raise ValueError(f"met must be in 0..{requests}, got {met}")
    if target >= 1.0:
        return 0.0
    n = requests + 1
    log_p, log_q = math.log(target), math.log1p(-target)
    # P(Binomial(n, target) <= met), summed in log space (exact, no overflow).
    terms = [
        math.lgamma(n + 1)
        - math.lgamma(i + 1)
        - math.lgamma(n - i + 1)
        + i * log_p
        + (n - i) * log_q
        for i in range(met + 1)
    ]
    top = max(terms)
    return min(1.0, math.exp(top) * math.fsum(math.exp(t - top) for t in terms))


@dataclass
class StageTally:
    """What the service counted of one stage's measured requests."""

    requests: int = 0
    met_slo: int = 0


@dataclass
class AdaptiveGroup:
    """The set points of one adaptive group: the stages decided so far and what comes next."""

    group: GroupConfig
    warmup_s: float
    lead_s: float
    stages: list[StageOrder] = field(default_factory=list)
    final: bool = False
    quiet_since_s: float | None = None
    """When every worker first reported none of the last stage's requests in flight."""
    sweep: SweepResult | None = None
    probes: list[ProbeResult] = field(default_factory=list)
    reason: str | None = None

    def __post_init__(self) -> None:
        load = self.group.load
        if isinstance(load, SweepLoadConfig):
            first_end = self.warmup_s + load.stage_s
            self.stages = [
                StageOrder(
                    stage=0,
                    start_offset_s=0.0,
                    end_offset_s=first_end,
                    loop="closed",
                    set_point=1,
                    role="synchronous",
                ),
                StageOrder(
                    stage=1,
                    start_offset_s=first_end,
                    end_offset_s=first_end + load.stage_s,
                    loop="closed",
                    set_point=self.group.clients,
                    role="throughput",
                ),
            ]
            self.sweep = SweepResult()
        elif isinstance(load, CapacityLoadConfig):
            self.stages = [
                StageOrder(
                    stage=0,
                    start_offset_s=0.0,
                    end_offset_s=self.warmup_s + load.stage_s,
                    loop="open",
                    set_point=load.start_rate,
                    role="probe",
                )
            ]
        else:
            raise ValueError(f"group {self.group.name!r} has no adaptive load")

    @property
    def load(self) -> SweepLoadConfig | CapacityLoadConfig:
        load = self.group.load
        assert isinstance(load, SweepLoadConfig | CapacityLoadConfig)
        return load

    def orders(self) -> GroupStages:
        """What the workers are sent."""
        return GroupStages(stages=list(self.stages), final=self.final)

    def measured_s(self, order: StageOrder) -> float:
        """The measured seconds of a stage: its time after the warm-ups."""
        start = self.warmup_s if order.stage == 0 else order.start_offset_s
        return max(order.end_offset_s - start - self.load.stage_warmup_s, 0.0)

    def due(self, now_s: float, in_flight: int, reported_s: float) -> bool:
        """Whether the next set point is to be chosen now: the last stage ended, its requests
        ended (every worker reported none in flight after its end, :data:`SETTLE_S` ago) or
        ``drain_s`` passed. ``reported_s``: when the oldest of the workers' last reports
        was made (seconds from the shared start)."""
        if self.final:
            return False
        if isinstance(self.load, SweepLoadConfig) and len(self.stages) < 2:
            return False
        end = self.stages[-1].end_offset_s
        if now_s < end:
            return False
        if in_flight == 0 and reported_s >= end:
            if self.quiet_since_s is None:
                self.quiet_since_s = max(reported_s, end)
        else:
            self.quiet_since_s = None
        if self.quiet_since_s is not None and now_s >= self.quiet_since_s + SETTLE_S:
            return True
        return now_s >= end + self.load.drain_s + SETTLE_S

    def decide(self, now_s: float, tallies: Mapping[int, StageTally], in_flight: int) -> str:
        """Choose what follows the last stage from its counts (``in_flight``: its requests
        still in flight); return a line saying what was decided."""
        self.quiet_since_s = None
        start = round(now_s + self.lead_s, 3)
        if isinstance(self.load, SweepLoadConfig):
            return self._decide_sweep(start, tallies, in_flight)
        return self._decide_probe(start, tallies, in_flight)

    def _decide_sweep(self, start: float, tallies: Mapping[int, StageTally], in_flight: int) -> str:
        load = self.load
        assert isinstance(load, SweepLoadConfig) and self.sweep is not None
        synchronous = tallies.get(0, StageTally()).requests / max(
            self.measured_s(self.stages[0]), 1e-9
        )
        sent = tallies.get(1, StageTally()).requests + in_flight
        throughput = sent / max(self.measured_s(self.stages[1]), 1e-9)
        self.sweep.synchronous_rate, self.sweep.throughput_rate = synchronous, throughput
        self.final = True
        if synchronous <= 0 or throughput <= 0:
            which = "synchronous" if synchronous <= 0 else "throughput"
            self.reason = self.sweep.reason = (
                f"the {which} stage completed no measured request: no rates to sweep"
            )
            return f"{self.group.name}: {self.reason}"
        points = int(load.points or 0)
        rates = [synchronous + (throughput - synchronous) * (i + 1) / points for i in range(points)]
        self.sweep.rates = rates
        for i, rate in enumerate(rates):
            begin = start + i * load.stage_s
            self.stages.append(
                StageOrder(
                    stage=2 + i,
                    start_offset_s=begin,
                    end_offset_s=round(begin + load.stage_s, 6),
                    loop="open",
                    set_point=rate,
                    role="rate",
                )
            )
        return (
            f"{self.group.name}: synchronous {synchronous:.3g} req/s, throughput "
            f"{throughput:.3g} req/s; sweeping {points} rate(s): "
            + ", ".join(f"{r:.3g}" for r in rates)
        )

    def slo(self, cluster_slo: SLOConfig | None) -> SLOConfig:
        """The objectives a capacity search judges its probes by."""
        load = self.load
        slo = (load.slo if isinstance(load, CapacityLoadConfig) else None) or cluster_slo
        return slo or SLOConfig()

    def _decide_probe(self, start: float, tallies: Mapping[int, StageTally], in_flight: int) -> str:
        load = self.load
        assert isinstance(load, CapacityLoadConfig)
        last = self.stages[-1]
        tally = tallies.get(last.stage, StageTally())
        requests = tally.requests + in_flight
        share = tally.met_slo / requests if requests else 0.0
        passed = requests > 0 and share >= load.target_goodput
        above = share_confidence(tally.met_slo, requests, load.target_goodput)
        self.probes.append(
            ProbeResult(
                stage=last.stage,
                rate=last.set_point,
                requests=requests,
                met_slo=tally.met_slo,
                in_flight=in_flight,
                goodput_share=share,
                passed=passed,
                confidence=above if passed else 1.0 - above,
            )
        )
        verdict = (
            f"{self.group.name}: probe {len(self.probes)} at {last.set_point:.4g} req/s "
            f"{'passed' if passed else 'failed'} ({share:.1%} of {requests} met the SLO, "
            f"target {load.target_goodput:.1%}; confidence {self.probes[-1].confidence:.2f})"
        )
        rate = self._next_rate()
        if rate is None:
            self.final = True
            return f"{verdict}; search ended: {self.reason}"
        self.stages.append(
            StageOrder(
                stage=last.stage + 1,
                start_offset_s=start,
                end_offset_s=round(start + load.stage_s, 6),
                loop="open",
                set_point=rate,
                role="probe",
            )
        )
        return f"{verdict}; next probe at {rate:.4g} req/s"

    def bracket(self) -> tuple[float | None, float | None]:
        """The highest rate that passed and the lowest that failed (None: none did)."""
        passed = [p.rate for p in self.probes if p.passed]
        failed = [p.rate for p in self.probes if not p.passed]
        return (max(passed) if passed else None), (min(failed) if failed else None)

    def _next_rate(self) -> float | None:
        load = self.load
        assert isinstance(load, CapacityLoadConfig)
        low, high = self.bracket()
        if low is not None and high is not None and high - low <= load.resolution * high:
            self.reason = (
                f"converged: the capacity lies in [{low:.4g}, {high:.4g}) req/s, within "
                f"{load.resolution:.1%}"
            )
            return None
        if len(self.probes) >= load.max_probes:
            self.reason = f"max_probes ({load.max_probes}) probes ran"
            return None
        if high is None:
            assert low is not None
            if load.max_rate is not None and low >= load.max_rate:
                self.reason = f"every probe passed, up to max_rate ({load.max_rate:g} req/s)"
                return None
            grown = low * load.growth
            return grown if load.max_rate is None else min(grown, load.max_rate)
        if low is None:
            lower = high / load.growth
            if lower < 1e-3:
                self.reason = f"even {high:.4g} req/s fails the SLO"
                return None
            return lower
        return (low + high) / 2

    def plans(self) -> list[StagePlan]:
        """The stages that ran or were decided, as the summary reports them."""
        return [
            StagePlan(
                stage=order.stage,
                set_point=order.set_point,
                start_offset_s=self.warmup_s if order.stage == 0 else order.start_offset_s,
                planned_s=order.end_offset_s
                - (self.warmup_s if order.stage == 0 else order.start_offset_s),
                stage_warmup_s=self.load.stage_warmup_s,
                set_point_unit="req/s" if order.loop == "open" else "clients",
                role=order.role,
            )
            for order in self.stages
        ]

    def capacity(self, cluster_slo: SLOConfig | None) -> CapacityResult | None:
        """A capacity search's result so far (None for a sweep)."""
        load = self.load
        if not isinstance(load, CapacityLoadConfig):
            return None
        low, high = self.bracket()
        converged = low is not None and high is not None and high - low <= load.resolution * high
        return CapacityResult(
            slo=self.slo(cluster_slo).bounds(),
            target_goodput=load.target_goodput,
            capacity_rate=low,
            bracket=(low or 0.0, high),
            converged=converged,
            reason=self.reason or "the search did not end",
            probes=list(self.probes),
        )


__all__ = [
    "MIN_LEAD_S",
    "SETTLE_S",
    "WAITING_HEARTBEAT_S",
    "AdaptiveGroup",
    "GroupStages",
    "StageOrder",
    "StageTally",
    "is_adaptive",
    "lead_s",
    "share_confidence",
    "stage_schedule",
]
