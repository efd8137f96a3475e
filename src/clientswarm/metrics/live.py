"""Live statistics of one cluster, updated as sample batches arrive.

The service feeds every committed batch to :meth:`LiveStats.add` with the time it received it
(or what it adds, :meth:`LiveStats.add_parts`; or a worker's tick of tallies instead of its
samples, :meth:`LiveStats.add_tallies` — the same statistics, see :mod:`clientswarm.metrics.ticks`).
Counters and mergeable :class:`~clientswarm.metrics.histogram.Histogram` s are kept per group,
for two windows:

- **since start**: everything received so far;
- **last 10 s** (:data:`WINDOW_S`), by receive time: a ring of 1-s slots (:data:`SLOT_S`), merged
  on read. A slot leaves the window once it is 10 s old, so the window spans the last 9 to 10 s.

Each group has one target (``group_targets``, else the ``target`` of its first sample): the
snapshot names it in each group's entry and merges the groups of each target under ``targets``.

Totals are merges of the groups' histograms, never averages of percentiles. The definitions are
those of the exact final statistics, computed by the same code
(:func:`~clientswarm.metrics.derive.measured`): warm-up samples and requests cut off by a stop
(``error_kind == "cancelled"``) are only counted (``warmup_excluded``, ``cancelled_excluded``);
TTFT, ITL, TPOT, E2E and tokens come from successful samples, schedule lag from every measured
one. Percentiles are within :data:`~clientswarm.metrics.histogram.RELATIVE_ERROR` (0.8 %) of
the exact ones.

Steps of user-defined interactions (``sample.step``) are not requests of their group: they are
tallied apart, per group and step name (:meth:`LiveStats.steps_since_start`,
:meth:`LiveStats.steps_window`), and the snapshot shows them under their group's ``steps``
(only for a group that has some), like the final statistics. Totals count interactions only.

Rates are per second of the window's span: from the earlier of the group's first receive time and
its first sample's scheduled or send time, or the window's start if later, up to ``now_s``. Pass
``now_s`` as Unix epoch seconds (``time.time()``), the clock of the samples' ``*_ns`` times.
"""

from __future__ import annotations

import math
import threading
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from clientswarm.metrics.columns import SampleColumns
from clientswarm.metrics.derive import (
    Measured,
    PartKey,
    Parts,
    derive,
    measured,
    measured_parts,
)
from clientswarm.metrics.dist import PERCENTILES, Dist, empty_distribution
from clientswarm.metrics.histogram import Histogram
from clientswarm.metrics.sample import Sample

#: Length of the recent window, in seconds.
WINDOW_S = 10.0
#: Width of one slot of the recent window's ring, in seconds.
SLOT_S = 1.0
_SLOTS = math.ceil(WINDOW_S / SLOT_S)

#: The histogrammed metrics, in the order the snapshot shows them.
METRICS: tuple[str, ...] = ("ttft_s", "itl_s", "tpot_s", "e2e_s", "schedule_lag_s")


def window_start_s(now_s: float) -> float:
    """Where the recent window ending at ``now_s`` starts: the start of its oldest slot."""
    return (math.floor(now_s / SLOT_S) - _SLOTS + 1) * SLOT_S


@dataclass(slots=True)
class Tally:
    """Counters and histograms of a set of samples (one group, one window)."""

    requests: int = 0
    succeeded: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    input_tokens: int = 0
    output_tokens: int = 0
    warmup: int = 0
    cancelled: int = 0
    #: Earliest scheduled or send time of a measured sample (epoch seconds).
    start_s: float = math.inf
    hist: dict[str, Histogram] = field(default_factory=lambda: {m: Histogram() for m in METRICS})

    @property
    def failed(self) -> int:
        """Measured samples that failed."""
        return self.requests - self.succeeded

    @classmethod
    def from_samples(cls, samples: Sequence[Sample]) -> Tally:
        """Count and histogram ``samples`` (the definitions of the module docstring)."""
        cols = SampleColumns.from_samples(samples)
        return cls.of(measured(cols, derive(cols))) if samples else cls()

    @classmethod
    def of(cls, m: Measured) -> Tally:
        """The tally of what some samples add to statistics."""
        t = cls(
            requests=m.requests,
            succeeded=m.succeeded,
            errors=Counter(m.errors),
            input_tokens=m.input_tokens,
            output_tokens=m.output_tokens,
            warmup=m.warmup,
            cancelled=m.cancelled,
        )
        if m.start_ns is not None:
            t.start_s = m.start_ns / 1e9
        for name in METRICS:
            values = m.values[name]
            if values.size:
                t.hist[name].record_many(values)
        return t

    def merge(self, other: Tally) -> Tally:
        """Add ``other`` to this tally (in place); returns ``self``."""
        self.requests += other.requests
        self.succeeded += other.succeeded
        self.errors.update(other.errors)
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens
        self.warmup += other.warmup
        self.cancelled += other.cancelled
        self.start_s = min(self.start_s, other.start_s)
        for name, h in other.hist.items():
            self.hist[name].merge(h)
        return self

    def copy(self) -> Tally:
        """An independent copy."""
        return Tally().merge(self)

    def clear(self) -> None:
        """Forget everything (keeps the histograms' allocated counts)."""
        self.requests = self.succeeded = self.input_tokens = self.output_tokens = 0
        self.warmup = self.cancelled = 0
        self.errors.clear()
        self.start_s = math.inf
        for h in self.hist.values():
            h.clear()

    def stats(self, duration_s: float) -> dict[str, Any]:
        """The live Stats shape, with rates per second of ``duration_s`` (0.0 when not > 0)."""

        def rate(count: int) -> float:
            return count / duration_s if duration_s > 0 else 0.0

        return {
            "requests": self.requests,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "errors": dict(sorted(self.errors.items(), key=lambda kv: (-kv[1], kv[0]))),
            "duration_s": max(duration_s, 0.0),
            "request_rate": rate(self.requests),
            "succeeded_rate": rate(self.succeeded),
            "output_token_rate": rate(self.output_tokens),
            "error_rate": self.failed / self.requests if self.requests else 0.0,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            **{name: histogram_distribution(self.hist[name]) for name in METRICS},
            "warmup_excluded": self.warmup,
            "cancelled_excluded": self.cancelled,
        }


def histogram_distribution(h: Histogram) -> Dist:
    """The ``Dist`` shape of summary.json, estimated from a histogram (count, mean exact)."""
    if h.count == 0:
        return empty_distribution()
    p50, p90, p95, p99 = h.quantiles([q / 100 for _, q in PERCENTILES])
    return Dist(
        count=h.count, mean=h.mean, min=h.min, p50=p50, p90=p90, p95=p95, p99=p99, max=h.max
    )


@dataclass(frozen=True, slots=True)
class Recent:
    """Every group together over the recent window: what a progress display shows
    (:meth:`LiveStats.recent`)."""

    request_rate: float
    """Requests completed per second, warm-up ones included (cut-off ones are not)."""
    output_token_rate: float
    """Output tokens of measured requests per second."""
    ttft_p50_s: float | None
    """Median TTFT of the measured successful requests (None without any)."""
    warmup: int
    """Warm-up requests completed since the start."""


#: Tallies of steps: group → step name → tally.
StepTallies = dict[str, dict[str, Tally]]


@dataclass(slots=True)
class _Slot:
    """One slot of the recent window: what arrived in ``[index, index + 1) * SLOT_S``."""

    index: int = -1
    groups: dict[str, Tally] = field(default_factory=dict)
    steps: StepTallies = field(default_factory=dict)


class LiveStats:
    """Live counters, histograms and gauges of one cluster; safe to use from several threads."""

    def __init__(
        self,
        cluster_id: str,
        cluster_name: str | None = None,
        *,
        groups: Sequence[str] = (),
        group_targets: Mapping[str, str] | None = None,
        status: str | None = None,
    ) -> None:
        self.cluster_id = cluster_id
        self.cluster_name = cluster_name
        self.status = status
        self._lock = threading.Lock()
        self._since: dict[str, Tally] = {g: Tally() for g in groups}
        self._targets: dict[str, str] = dict(group_targets or {})
        self._steps_since: StepTallies = {}
        self._ring = [_Slot() for _ in range(_SLOTS)]
        self._workers: dict[str, int] = {}
        self._active: dict[str, int] = {}

    def add(self, samples: SampleColumns | Sequence[Sample], now_s: float) -> None:
        """Count a batch of samples received at ``now_s`` (epoch seconds).

        Interactions count towards their group, steps towards their group's step of that name.
        """
        cols = (
            samples if isinstance(samples, SampleColumns) else SampleColumns.from_samples(samples)
        )
        self.add_parts(measured_parts(cols), now_s)

    def add_parts(self, parts: Parts, now_s: float) -> None:
        """Count what a batch received at ``now_s`` adds
        (:func:`~clientswarm.metrics.derive.measured_parts`)."""
        self.add_tallies({key: Tally.of(m) for key, m in parts.items()}, now_s)

    def add_tallies(self, tallies: Mapping[PartKey, Tally], now_s: float) -> None:
        """Count the tallies of the parts of a batch, or of a worker's tick
        (:meth:`~clientswarm.metrics.ticks.TickTallies.live_tallies`), received at ``now_s``.

        The tallies are only read: they may share their histograms with their owner.
        """
        index = math.floor(now_s / SLOT_S)
        with self._lock:
            slot = self._ring[index % _SLOTS]
            if slot.index < index:  # a newer slot replaces an old one; a late one is kept
                for t in slot.groups.values():
                    t.clear()
                for named in slot.steps.values():
                    for t in named.values():
                        t.clear()
                slot.index = index
            for (target, group, step, _stage, _replica), t in tallies.items():
                self._targets.setdefault(group, target)  # a group has one target
                # The group shows, with or without requests of its own (steps only).
                since = self._since.setdefault(group, Tally())
                recent = slot.groups.setdefault(group, Tally())
                if step is not None:
                    since = self._steps_since.setdefault(group, {}).setdefault(step, Tally())
                    recent = slot.steps.setdefault(group, {}).setdefault(step, Tally())
                _merge_into(since, t, now_s)
                recent.merge(t)

    def set_workers(self, states: Mapping[str, int]) -> None:
        """Set how many workers are in each state (e.g. ``{"running": 3, "lost": 1}``)."""
        with self._lock:
            self._workers = dict(states)

    def set_active_clients(self, group: str, n: int) -> None:
        """Set how many clients of ``group`` are running."""
        with self._lock:
            self._active[group] = n

    def set_status(self, status: str) -> None:
        """Set the cluster's status (e.g. ``running``, ``completed``)."""
        self.status = status

    @property
    def workers(self) -> dict[str, int]:
        """Workers by state, as last set."""
        with self._lock:
            return dict(self._workers)

    @property
    def group_targets(self) -> dict[str, str]:
        """Each group's target name: as given, else that of its first sample."""
        with self._lock:
            return dict(self._targets)

    @property
    def active_clients(self) -> dict[str, int]:
        """Running clients by group, as last set."""
        with self._lock:
            return dict(self._active)

    def since_start(self) -> dict[str, Tally]:
        """A copy of every group's since-start tally (what the Prometheus counters show)."""
        with self._lock:
            return {g: t.copy() for g, t in self._since.items()}

    def steps_since_start(self) -> StepTallies:
        """A copy of every step's since-start tally, by group and step name."""
        with self._lock:
            return {
                g: {name: t.copy() for name, t in named.items()}
                for g, named in self._steps_since.items()
            }

    def window(self, now_s: float) -> dict[str, Tally]:
        """Every group's tally over the recent window ending at ``now_s`` (merged slots)."""
        current = math.floor(now_s / SLOT_S)
        with self._lock:
            out = {g: Tally() for g in self._since}
            for slot in self._ring:
                if current - _SLOTS < slot.index <= current:
                    for g, t in slot.groups.items():
                        out[g].merge(t)
        return out

    def recent(self, now_s: float, start_s: float) -> Recent:
        """Every group's recent window added up, with rates per second from ``start_s`` (the
        cluster's start, epoch seconds) or the window's start, if later, to ``now_s``.

        Cheaper than :meth:`snapshot`: it copies no tally and merges only the TTFT histograms,
        for a display that asks a few times a second.
        """
        current = math.floor(now_s / SLOT_S)
        ttft = Histogram()
        completed = output_tokens = 0
        with self._lock:
            warmup = sum(t.warmup for t in self._since.values())
            for slot in self._ring:
                if current - _SLOTS < slot.index <= current:
                    for t in slot.groups.values():
                        completed += t.requests + t.warmup
                        output_tokens += t.output_tokens
                        ttft.merge(t.hist["ttft_s"])
        span_s = now_s - max(start_s, window_start_s(now_s))
        return Recent(
            request_rate=completed / span_s if span_s > 0 else 0.0,
            output_token_rate=output_tokens / span_s if span_s > 0 else 0.0,
            ttft_p50_s=ttft.quantile(0.5),
            warmup=warmup,
        )

    def steps_window(self, now_s: float) -> StepTallies:
        """Every step's tally over the recent window ending at ``now_s``, by group and name."""
        current = math.floor(now_s / SLOT_S)
        with self._lock:
            out = {g: {name: Tally() for name in named} for g, named in self._steps_since.items()}
            for slot in self._ring:
                if current - _SLOTS < slot.index <= current:
                    for g, named in slot.steps.items():
                        for name, t in named.items():
                            out[g][name].merge(t)
        return out

    def snapshot(self, now_s: float) -> dict[str, Any]:
        """The JSON live stats: both windows, per group (and step) and total, plus the gauges."""
        since = self.since_start()
        recent = self.window(now_s)
        steps_since = self.steps_since_start()
        steps_recent = self.steps_window(now_s)
        targets = self.group_targets
        recent_view = _View(recent, steps_recent, since, steps_since, targets)
        since_view = _View(since, steps_since, since, steps_since, targets)
        return {
            "cluster": self.cluster_id,
            "cluster_name": self.cluster_name,
            "status": self.status,
            "now_s": now_s,
            "window_s": WINDOW_S,
            "window_10s": recent_view.stats(now_s, window_start_s(now_s)),
            "since_start": since_view.stats(now_s, -math.inf),
            "workers": self.workers,
            "active_clients": self.active_clients,
        }


def _merge_into(since: Tally, t: Tally, now_s: float) -> None:
    """Add a batch's tally to a since-start one, whose clock starts at its first request."""
    since.merge(t)
    if t.requests:
        since.start_s = min(since.start_s, now_s)


@dataclass(frozen=True, slots=True)
class _View:
    """One window's tallies (by group, and by group and step), with the since-start ones whose
    ``start_s`` start each span, and each group's target."""

    tallies: Mapping[str, Tally]
    steps: Mapping[str, Mapping[str, Tally]]
    since: Mapping[str, Tally]
    steps_since: Mapping[str, Mapping[str, Tally]]
    targets: Mapping[str, str]

    def stats(self, now_s: float, not_before_s: float) -> dict[str, Any]:
        """``{"total": S, "groups": {g: S + {"target"}}, "targets": {t: S}}`` of the window;
        ``S["steps"]`` for groups with steps. Spans start at the since-start tallies'
        ``start_s`` (or the window's start, if later) and end at ``now_s``."""

        def span(start_s: float) -> float:
            return 0.0 if math.isinf(start_s) else now_s - max(start_s, not_before_s)

        def started(groups: Iterable[str]) -> float:
            return min((self.since[g].start_s for g in groups if g in self.since), default=math.inf)

        groups: dict[str, dict[str, Any]] = {}
        by_target: dict[str, list[str]] = {}
        for g, t in self.tallies.items():
            groups[g] = t.stats(span(started([g])))
            target = self.targets.get(g)
            groups[g]["target"] = target
            if target is not None:
                by_target.setdefault(target, []).append(g)
            named = self.steps.get(g)
            if named:
                first = self.steps_since.get(g, {})
                groups[g]["steps"] = {
                    name: st.stats(span(first[name].start_s if name in first else math.inf))
                    for name, st in named.items()
                }
        return {
            "total": _merged(self.tallies.values()).stats(span(started(self.since))),
            "groups": groups,
            "targets": {
                target: _merged(self.tallies[g] for g in names).stats(span(started(names)))
                for target, names in by_target.items()
            },
        }


def _merged(tallies: Iterable[Tally]) -> Tally:
    """One tally of several."""
    out = Tally()
    for t in tallies:
        out.merge(t)
    return out


__all__ = [
    "METRICS",
    "SLOT_S",
    "WINDOW_S",
    "LiveStats",
    "Recent",
    "StepTallies",
    "Tally",
    "histogram_distribution",
    "window_start_s",
]
