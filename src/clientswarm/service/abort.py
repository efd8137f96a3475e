"""Stopping a run that cannot give a result: the abort rule and thresholds with ``abort``.

**The abort rule** (``abort:`` of the configuration,
:class:`~clientswarm.config.checks.AbortConfig`) judges the last ``window`` requests of the
whole cluster, in the order their batches were committed: once it holds at least
``min_requests`` of them and at least ``failed_fraction`` of them failed with one of ``kinds``
(by default connection failures, 5xx and 429 answers), the run is aborted: it stops like a
stop from the user, and ends ``failed`` with a reason naming the dominant error kind and one
example message. Only interactions count: steps of user-defined interactions and requests cut
off by a stop do not. Warm-up requests do: a target that is down is down during the warm-up
too.

**Stages** are judged each on their own: each stage (the ``stage`` of the samples) has its own
window, so failures of one stage never count against the next. Once any stage has had a
successful request, the target is known to be up: a later stage that fails nearly everything
with 5xx, 429 or timeouts is a saturated point of the sweep, a result, and does not stop it;
only connection failures (the target went away) still abort it then.

**Thresholds with** ``abort: true`` are judged on the live statistics since the start (those
of ``GET /api/v1/monitor/clusters/{id}/stats``, percentiles within 1 %), at most once a
second, once their scope has measured ``min_requests`` requests: the first that fails aborts
the run, the reason naming it.

**On the high-rate path** (``sample_path: files``) the service never sees the samples: it
judges each tick's outcomes per stage, as the worker tallied them (``StageOutcomes`` of
:mod:`clientswarm.metrics.ticks`), the requests of one tick in no particular order.

:class:`RunGuard` holds both for one cluster; the manager feeds it every committed batch (off
the event loop, from several threads) and takes its verdict after each.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from clientswarm.config.checks import AbortConfig, ThresholdCheck
from clientswarm.config.models import ClusterConfig
from clientswarm.metrics.columns import SampleColumns
from clientswarm.metrics.derive import UNKNOWN_ERROR
from clientswarm.metrics.live import LiveStats
from clientswarm.metrics.sample import ERROR_CANCELLED, ERROR_CONNECTION
from clientswarm.metrics.ticks import StageOutcomes
from clientswarm.thresholds import Expression, parse_expression, value_at

EXAMPLE_CHARS = 200
"""How much of the example error message a reason shows."""

LIVE_CHECK_INTERVAL_S = 1.0
"""How often thresholds with ``abort`` are judged on the live statistics, at most."""


@dataclass(slots=True)
class _Window:
    """The last ``size`` judged requests of one stage: which counted failure each was (None:
    it did not count), with the counts by kind and the latest message of each kind."""

    size: int
    kinds: deque[str | None] = field(default_factory=deque)
    failed: Counter[str] = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)

    def add(self, kind: str | None, message: str | None) -> None:
        if len(self.kinds) == self.size:
            gone = self.kinds.popleft()
            if gone is not None:
                self.failed[gone] -= 1
        self.kinds.append(kind)
        if kind is not None:
            self.failed[kind] += 1
            if message:
                self.examples[kind] = message

    @property
    def failures(self) -> int:
        return sum(self.failed.values())


def _evenly(counts: Counter[str | None], at_most: int) -> list[str | None]:
    """The entries of ``counts`` (each key as many times as its count), or, when they are
    more than ``at_most``, ``at_most`` of them in the same proportions (largest remainders),
    in an order that spreads each key evenly over the list (by the midpoints of its share):
    any stretch of the list holds the keys in about their proportions."""
    total = sum(counts.values())
    if total > at_most:
        exact = {k: n * at_most / total for k, n in counts.items()}
        scaled = {k: int(v) for k, v in exact.items()}
        short = at_most - sum(scaled.values())
        by_remainder = sorted(exact, key=lambda k: (exact[k] - scaled[k], str(k)), reverse=True)
        for k in by_remainder[:short]:
            scaled[k] += 1
        counts = Counter(scaled)
    placed = [((j + 0.5) / n, str(k), k) for k, n in counts.items() for j in range(n)]
    placed.sort(key=lambda p: (p[0], p[1]))
    return [k for _, _, k in placed]


class AbortRule:
    """The abort rule of one cluster (see the module docstring); not thread-safe alone."""

    def __init__(self, config: AbortConfig) -> None:
        self.config = config
        self._windows: dict[int, _Window] = {}
        self._answered: int | None = None
        """The lowest stage that had a successful request (None: none yet)."""
        self._min_requests = min(config.min_requests, config.window)

    def observe(self, cols: SampleColumns) -> str | None:
        """Judge a committed batch; the reason to abort the run, or None."""
        if not self.config.enabled or not len(cols):
            return None
        c = cols.columns
        touched: set[int] = set()
        every = ("status", "error_kind", "error_message", "stage", "step")
        for status, kind, message, stage, step in zip(*(c[n] for n in every), strict=True):
            if step or kind == ERROR_CANCELLED:
                continue
            stage = int(stage or 0)
            counted: str | None = None
            if status == "ok":
                if self._answered is None or stage < self._answered:
                    self._answered = stage
            else:
                kind = kind or UNKNOWN_ERROR
                saturated = self._answered is not None and self._answered < stage
                if self.config.counts(kind) and (kind == ERROR_CONNECTION or not saturated):
                    counted = kind
            window = self._windows.get(stage)
            if window is None:
                window = self._windows[stage] = _Window(self.config.window)
            window.add(counted, message)
            touched.add(stage)
        for stage in sorted(touched):
            reason = self._judge(stage, self._windows[stage], staged=len(self._windows) > 1)
            if reason is not None:
                return reason
        return None

    def observe_outcomes(self, outcomes: Mapping[int, StageOutcomes]) -> str | None:
        """Judge a counted tick of the high-rate path (its stages' outcomes, as a worker
        tallied them, or several ticks' merged): as :meth:`observe`, the tick's requests
        taken in no particular order, so they enter the window mixed evenly, in their
        proportions (:func:`_evenly`), never one kind after the other. A tick of more
        requests than the window holds fills it in those proportions: 50,000 successes and
        500 failures are a window of 1 % failures, not one of the last 200 failures."""
        if not self.config.enabled or not outcomes:
            return None
        for stage, o in outcomes.items():
            if o.ok and (self._answered is None or stage < self._answered):
                self._answered = stage
        for stage, o in sorted(outcomes.items()):
            window = self._windows.get(stage)
            if window is None:
                window = self._windows[stage] = _Window(self.config.window)
            saturated = self._answered is not None and self._answered < stage
            counted: Counter[str | None] = Counter({None: o.ok} if o.ok else {})
            for kind, n in o.failed.items():
                counts = self.config.counts(kind) and (kind == ERROR_CONNECTION or not saturated)
                counted[kind if counts else None] += n
            for judged in _evenly(counted, window.size):
                window.add(judged, None if judged is None else o.examples.get(judged))
        for stage in sorted(outcomes):
            reason = self._judge(stage, self._windows[stage], staged=len(self._windows) > 1)
            if reason is not None:
                return reason
        return None

    def _judge(self, stage: int, window: _Window, *, staged: bool) -> str | None:
        n, failures = len(window.kinds), window.failures
        if n < self._min_requests or failures < self.config.failed_fraction * n:
            return None
        dominant, count = max(window.failed.items(), key=lambda kv: (kv[1], kv[0]))
        example = window.examples.get(dominant, "no message")
        if len(example) > EXAMPLE_CHARS:
            example = example[: EXAMPLE_CHARS - 1] + "…"
        where = f" of stage {stage}" if staged or stage else ""
        if dominant == ERROR_CONNECTION:
            meaning = "the target looks down"
        elif dominant.startswith("http_"):
            meaning = "the target refuses nearly every request"
        else:
            meaning = "nearly every request fails"
        return (
            f"aborted: {failures} of the last {n} requests{where} failed, most with "
            f"{dominant} ({count}): {example}; {meaning} (set abort: false to run on regardless)"
        )


@dataclass(frozen=True, slots=True)
class _LiveCheck:
    scope: str
    group: str | None
    check: ThresholdCheck
    parsed: Expression[float]


class LiveThresholds:
    """The thresholds of a cluster that abort it, judged on its live statistics."""

    def __init__(self, config: ClusterConfig) -> None:
        checks: list[tuple[str, str | None, ThresholdCheck]]
        checks = [("total", None, t) for t in config.thresholds]
        for group in config.groups:
            checks.extend((f"groups.{group.name}", group.name, t) for t in group.thresholds)
        self.checks = [
            _LiveCheck(scope, group, t, parse_expression(t.expr))
            for scope, group, t in checks
            if t.abort
        ]
        self._next_s = 0.0

    def due(self, now_mono: float) -> bool:
        """Whether the checks are to be judged now (at most once a
        :data:`LIVE_CHECK_INTERVAL_S`)."""
        if not self.checks or now_mono < self._next_s:
            return False
        self._next_s = now_mono + LIVE_CHECK_INTERVAL_S
        return True

    def judge(self, live: Mapping[str, Any]) -> str | None:
        """The reason to abort the run, from the live statistics since the start
        (``LiveStats.snapshot(...)["since_start"]``), or None."""
        for c in self.checks:
            stats = live.get("total") if c.group is None else live.get("groups", {}).get(c.group)
            if not stats or stats.get("requests", 0) < c.check.min_requests:
                continue
            value = value_at(stats, c.parsed.path)
            if value is None or c.parsed.holds(value, c.parsed.bound):
                continue
            return (
                f"aborted: threshold {c.check.expr!r} ({c.scope}) failed on the live statistics "
                f"after {stats['requests']} requests: {c.parsed.name} is {value:.6g}"
            )
        return None


class RunGuard:
    """The abort rule and the aborting thresholds of one cluster: fed every committed batch,
    it keeps the first reason to abort until the manager takes it (:meth:`take`)."""

    def __init__(self, config: ClusterConfig) -> None:
        self.rule = AbortRule(config.abort)
        self.thresholds = LiveThresholds(config)
        self._lock = threading.Lock()
        self._reason: str | None = None
        self._taken = False

    @property
    def idle(self) -> bool:
        """Whether nothing can abort the cluster (no rule, no aborting threshold)."""
        return not self.rule.config.enabled and not self.thresholds.checks

    def observe(self, cols: SampleColumns, live: LiveStats) -> None:
        """Judge a committed batch (its samples are already in ``live``)."""
        if self.idle:
            return
        with self._lock:
            if self._reason is not None:
                return
            reason = self.rule.observe(cols)
            if reason is None and self.thresholds.due(time.monotonic()):
                reason = self.thresholds.judge(live.snapshot(time.time())["since_start"])
            self._reason = reason

    def observe_tick(self, outcomes: Mapping[int, StageOutcomes], live: LiveStats) -> None:
        """Judge a counted tick of the high-rate path (its tallies are already in ``live``)."""
        if self.idle:
            return
        with self._lock:
            if self._reason is not None:
                return
            reason = self.rule.observe_outcomes(outcomes)
            if reason is None and self.thresholds.due(time.monotonic()):
                reason = self.thresholds.judge(live.snapshot(time.time())["since_start"])
            self._reason = reason

    def take(self) -> str | None:
        """The reason to abort, once (None: none, or already taken)."""
        with self._lock:
            if self._reason is None or self._taken:
                return None
            self._taken = True
            return self._reason


__all__ = ["AbortRule", "LiveThresholds", "RunGuard"]
