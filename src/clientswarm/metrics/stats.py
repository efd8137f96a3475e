"""Exact statistics of a run, computed from its raw samples: the summary.json shape.

Definitions (also printed under the terminal table):

- Warm-up samples (``sample.warmup``) are left out of everything and only counted
  (``warmup_excluded``), and so are requests cut off because the run was stopped
  (``error_kind == "cancelled"``: the tool's doing, not the target's; ``cancelled_excluded``).
  "Measured" below means neither.
- ``requests``: measured samples, successful or not; ``succeeded``/``failed`` by status;
  ``errors``: failed samples by ``error_kind``.
- ``duration_s``: from the earliest scheduled (or sent, if earlier) time to the latest end time
  of the measured samples. The total spans every group.
- ``request_rate``: completed requests (successful *or not*) per second of ``duration_s``;
  ``succeeded_rate`` counts successful ones only. ``send_rate``: achieved arrival rate,
  (n - 1) / (last send - first send); ``send_span_s`` is that span.
- Every rate is reported with the span it is over (``duration_s``, ``send_span_s``), however
  short: the printed report shows a rate over less than ``MIN_RATE_SPAN_S`` (1 s) as a dash and
  says why (:mod:`clientswarm.reports.table`), the JSON keeps the number beside its span.
- ``output_token_rate``, ``input_tokens``, ``output_tokens``: over successful samples.
- ``ttft_s``, ``tpot_s``, ``e2e_s``, ``e2e_from_schedule_s``: one value per successful sample
  that has it; ``itl_s``: every inter-token gap of every successful sample;
  ``schedule_lag_s``: every measured sample.
- Goodput: successful samples that meet every configured SLO. TTFT is compared with the sample's
  TTFT, TPOT with its TPOT, ITL with the mean of its gaps, E2E with its E2E. A sample without a
  first token cannot meet a TTFT, TPOT or ITL objective, unless its interaction generates no
  tokens at all (hello, http: no first token and no token count), which E2E alone judges;
  a streamed answer with nothing to pace
  (fewer than two tokens, or no gaps) meets the TPOT and ITL ones. Without an SLO, goodput is
  ``succeeded``. ``goodput_rate`` is goodput per second of ``duration_s``.
- Rates are 0.0 when ``duration_s`` is 0 (no measured samples).

Targets: each sample names its group's target (``sample.target``). ``targets`` has the Stats
of each target's samples, over interactions like the total (with one target, the total's
numbers); each group's statistics name the target of its samples (``target``).

Steps: a user-defined interaction records one sample for the whole interaction plus one per
step inside it (``sample.step``, named after the step). Group and total statistics are over
interactions only; each group with steps gets ``"steps": {name: Stats}``, in order of first
appearance, each computed over that step's samples with the definitions above (same
exclusions, same SLO). Steps never make a run untrustworthy on their own: the schedule lag
that matters is the interactions'.

Stages: samples carry the load stage they were scheduled in (``sample.stage``). Given each
staged group's plan (:func:`~clientswarm.load.stage_plan.stage_plans`), each such group gets
``"stages": [StageStats, …]`` (in order, the list's index being the stage's, as DESIGN.md's
summary shape has it; every stage of the plan, with or without samples), each the Stats of that
stage's interactions with the definitions above (so its rates are over its own
``duration_s``) plus its ``stage``, ``set_point`` (and ``set_point_unit``),
``start_offset_s``, ``planned_s`` and ``stage_warmup_s``. Samples inside a stage's
``stage_warmup_s`` are warm-up like those of ``warmup_s``: counted in ``warmup_excluded``.
A stage is one more key the values are kept by, so a group's distributions are the union of
its stages' and nothing is kept twice.

A run whose p99 schedule lag exceeds ``lag_bound_s`` in any group is flagged: a warning that
says what to change, and ``trustworthy: false``.

How: :class:`ClusterStatistics` takes the samples a batch of columns at a time (streamed from
the store, never all held), derives their metrics once, vectorised
(:mod:`clientswarm.metrics.derive`, the definitions the live statistics use too), and keeps
each distribution's values in an :class:`~clientswarm.metrics.exact.ExactValues`: in memory
while they are few, in a temporary file beyond, from which the percentiles are still exact.
Memory stays bounded however long the run.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from clientswarm.config.models import SLOConfig
from clientswarm.metrics.columns import SampleColumns, chunks_of
from clientswarm.metrics.derive import UNKNOWN_ERROR, VALUE_METRICS, Measured, Parts, measured_parts
from clientswarm.metrics.dist import Dist
from clientswarm.metrics.exact import MEMORY_VALUES, ExactValues, exact_distribution
from clientswarm.metrics.sample import Sample
from clientswarm.metrics.summary import (
    ClusterInfo,
    GroupStats,
    StagePlan,
    StageStats,
    Stats,
    Summary,
)

#: Default bound on the p99 schedule lag above which a run is not trustworthy. 10 ms flags
#: healthy runs on busy CI machines; 50 ms is well above noise and well below any real stall.
DEFAULT_LAG_BOUND_S = 0.05

_CHUNK = 10_000  # samples turned into columns at a time when given as Sample objects


class _Accumulated:
    """What the measured samples of one group and target (or one step) added up to. A union
    of them (a group, a target, the total) keeps no values of its own (``values=False``): its
    distributions are those of its parts together."""

    def __init__(self, memory_values: int, spool_dir: str | None, values: bool = True) -> None:
        self.requests = self.succeeded = self.warmup = self.cancelled = self.goodput = 0
        self.input_tokens = self.output_tokens = 0
        self.errors: Counter[str] = Counter()
        self.token_sources: Counter[str] = Counter()
        self.start_ns: int | None = None
        self.end_ns: int | None = None
        self.first_sent_ns: int | None = None
        self.last_sent_ns: int | None = None
        self.values = (
            {m: ExactValues(memory_values, spool_dir) for m in VALUE_METRICS} if values else {}
        )

    def add(self, m: Measured) -> None:
        self.add_counts(m)
        for name, exact in self.values.items():
            exact.add(m.values[name])

    def add_counts(self, m: Measured | _Accumulated) -> None:
        """Add the counts and times of ``m`` (not its values)."""
        self.requests += m.requests
        self.succeeded += m.succeeded
        self.warmup += m.warmup
        self.cancelled += m.cancelled
        self.goodput += m.goodput
        self.input_tokens += m.input_tokens
        self.output_tokens += m.output_tokens
        self.errors.update(m.errors)
        self.token_sources.update(m.token_sources)
        self.start_ns = _min(self.start_ns, m.start_ns)
        self.end_ns = _max(self.end_ns, m.end_ns)
        self.first_sent_ns = _min(self.first_sent_ns, m.first_sent_ns)
        self.last_sent_ns = _max(self.last_sent_ns, m.last_sent_ns)

    def stats(self, dists: dict[str, Dist] | None = None) -> dict[str, Any]:
        """The Stats of these samples (the module docstring's definitions); ``dists``: their
        distributions, when not of their own values."""
        n, succeeded = self.requests, self.succeeded
        duration_s = 0.0
        if self.start_ns is not None and self.end_ns is not None:
            duration_s = (self.end_ns - self.start_ns) / 1e9

        def rate(count: float) -> float:
            return count / duration_s if duration_s > 0 else 0.0

        send_rate: float | None = None
        span_s: float | None = None
        if n >= 2 and self.first_sent_ns is not None and self.last_sent_ns is not None:
            span_s = (self.last_sent_ns - self.first_sent_ns) / 1e9
            send_rate = (n - 1) / span_s if span_s > 0 else None
        if dists is None:
            dists = {name: v.distribution() for name, v in self.values.items()}
        return {
            "requests": n,
            "succeeded": succeeded,
            "failed": n - succeeded,
            "errors": dict(sorted(self.errors.items(), key=lambda kv: (-kv[1], kv[0]))),
            "duration_s": duration_s,
            "request_rate": rate(n),
            "output_token_rate": rate(self.output_tokens),
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "goodput_rate": rate(self.goodput),
            "ttft_s": dists["ttft_s"],
            "itl_s": dists["itl_s"],
            "tpot_s": dists["tpot_s"],
            "e2e_s": dists["e2e_s"],
            "schedule_lag_s": dists["schedule_lag_s"],
            "e2e_from_schedule_s": dists["e2e_from_schedule_s"],
            "goodput": self.goodput,
            "succeeded_rate": rate(succeeded),
            "send_rate": send_rate,
            "send_span_s": span_s,
            "error_rate": (n - succeeded) / n if n else 0.0,
            "token_sources": dict(sorted(self.token_sources.items())),
            "warmup_excluded": self.warmup,
            "cancelled_excluded": self.cancelled,
        }

    def close(self) -> None:
        for values in self.values.values():
            values.close()


def _min(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else min(a, b)


def _max(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else max(a, b)


class ClusterStatistics:
    """The exact statistics of a cluster's samples, fed a batch of columns at a time.

    The service feeds it every batch as it commits it (with what the live statistics take
    too, :func:`~clientswarm.metrics.derive.measured_parts`), so the final summary needs no
    second pass over the samples; it can also be fed from the store. Safe to use from several
    threads. Groups named in ``group_order`` come first, in that order, even without samples;
    others follow in order of first appearance, and steps by name in order of first appearance
    within their group. Goodput is judged against ``slo``. ``memory_values`` and
    ``spool_dir``: see :class:`~clientswarm.metrics.exact.ExactValues`. Use it as a context
    manager (or call :meth:`close`) to free its temporary files.

    The values are kept once, per group, target (the samples' ``target``; a group has one) and
    load stage: a stage's, a group's, a target's and the total's distributions are unions of
    those cells.
    """

    def __init__(
        self,
        *,
        slo: SLOConfig | None = None,
        group_order: Sequence[str] = (),
        memory_values: int = MEMORY_VALUES,
        spool_dir: str | None = None,
    ) -> None:
        self.slo = slo
        self.samples = 0
        """Every sample added, warm-up, cancelled and steps included."""
        self._lock = threading.Lock()
        self._memory_values, self._spool_dir = memory_values, spool_dir
        self._groups: dict[str, None] = dict.fromkeys(group_order)  # ordered, values unused
        self._cells: dict[_Key, _Accumulated] = {}  # (target, group, stage, replica)
        self._steps: dict[str, dict[str, _Accumulated]] = {}

    def _new(self) -> _Accumulated:
        return _Accumulated(self._memory_values, self._spool_dir)

    def __enter__(self) -> ClusterStatistics:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def add(self, cols: SampleColumns) -> None:
        """Take a batch of samples."""
        self.add_parts(measured_parts(cols, slo=self.slo), len(cols))

    def add_parts(self, parts: Parts, count: int) -> None:
        """Take what a batch of ``count`` samples adds, made with this ``slo``."""
        with self._lock:
            self.samples += count
            for (target, group, step, stage, replica), m in parts.items():
                self._groups.setdefault(group, None)
                if step is None:
                    key = (target, group, stage or 0, replica)
                    acc = self._cells.get(key)
                    if acc is None:
                        self._retire_stages(target, group)
                        acc = self._cells[key] = self._new()
                    acc.add(m)
                    continue
                named = self._steps.setdefault(group, {})
                acc = named.get(step)
                if acc is None:
                    acc = named[step] = self._new()
                acc.add(m)

    def _retire_stages(self, target: str, group: str) -> None:
        """A group's next load stage started: its earlier stages' values (which hardly grow
        any more) go to their files, so that a sweep of many stages holds in memory about what
        one stage does. Small ones stay (a file each would cost more than they do)."""
        for (t, g, _, _), acc in self._cells.items():
            if t == target and g == group:
                for values in acc.values.values():
                    if values.in_memory > self._memory_values // 16:
                        values.spill()

    def summary(
        self,
        cluster: ClusterInfo,
        *,
        lag_bound_s: float = DEFAULT_LAG_BOUND_S,
        extra_warnings: Iterable[str] = (),
        target_order: Sequence[str] = (),
        stage_plans: Mapping[str, Sequence[StagePlan]] | None = None,
        replica_urls: Mapping[str, Sequence[str]] | None = None,
    ) -> Summary:
        """The summary of every sample added (the module docstring's definitions).

        ``replica_urls``: the URLs of each target with replicas (``target.urls``); each gets
        the Stats of every replica in ``replicas``, by URL (a target not named there but whose
        samples went to several replicas gets them by index).

        ``extra_warnings`` (e.g. worker event-loop lag) are reported and mark the run as not
        trustworthy, as does a p99 schedule lag above ``lag_bound_s`` in any group. Targets
        named in ``target_order`` come first in ``targets``, in that order, even without
        samples; others follow in order of first appearance. ``stage_plans``: each staged
        group's stages (a group without an entry, or with none, gets no ``stages``).
        """
        with self._lock:
            cells = _Cells(self._cells)
            total = Stats(**cells.stats(list(self._cells)))
            targets = dict.fromkeys([*target_order, *(k[0] for k in self._cells)])
            by_target = {
                t: Stats(**cells.stats([k for k in self._cells if k[0] == t])) for t in targets
            }
            replicas = _replica_stats(cells, list(self._cells), targets, replica_urls or {})
            groups = {}
            for g in self._groups:
                keys = [k for k in self._cells if k[1] == g]
                groups[g] = cells.stats(keys)
                if len({k[0] for k in keys}) == 1:  # a group has one target
                    groups[g]["target"] = keys[0][0]
                plans = (stage_plans or {}).get(g)
                if plans:
                    groups[g]["stages"] = [
                        _stage_stats(cells, [k for k in keys if k[2] == p.stage], p)
                        for p in sorted(plans, key=lambda p: p.stage)
                    ]
            for name, named in self._steps.items():
                groups[name]["steps"] = {step: Stats(**a.stats()) for step, a in named.items()}
        untrusted = [*extra_warnings]
        for name, stats in groups.items():
            lag = _lag_warning(name, stats["schedule_lag_s"]["p99"], lag_bound_s)
            if lag is not None:
                untrusted.append(lag)
        notes = [n for name, st in groups.items() if (n := _group_note(name, st)) is not None]
        return Summary(
            cluster=cluster,
            total=total,
            groups={name: GroupStats(**stats) for name, stats in groups.items()},
            targets=by_target,
            replicas=replicas,
            warnings=untrusted + notes,
            trustworthy=not untrusted,
            slo=None if self.slo is None else self.slo.model_dump(exclude_none=True),
            lag_bound_s=lag_bound_s,
        )

    def close(self) -> None:
        """Free the temporary files of the distributions."""
        with self._lock:
            for acc in self._cells.values():
                acc.close()
            for named in self._steps.values():
                for acc in named.values():
                    acc.close()


_Key = tuple[str, str, int, int]
"""A cell: ``(target, group, stage, replica)``."""


def _replica_stats(
    cells: _Cells,
    keys: Sequence[_Key],
    targets: Iterable[str],
    replica_urls: Mapping[str, Sequence[str]],
) -> dict[str, dict[str, Stats]]:
    """Each replicated target's Stats per replica, by URL (by index where none is known)."""
    out: dict[str, dict[str, Stats]] = {}
    for t in targets:
        urls = list(replica_urls.get(t) or ())
        seen = sorted({k[3] for k in keys if k[0] == t})
        if len(urls) < 2 and len(seen) < 2:
            continue
        indices = range(len(urls)) if urls else seen
        out[t] = {
            (urls[i] if i < len(urls) else str(i)): Stats(
                **cells.stats([k for k in keys if k[0] == t and k[3] == i])
            )
            for i in indices
        }
    return out


def _stage_stats(cells: _Cells, keys: Sequence[_Key], plan: StagePlan) -> StageStats:
    """The Stats of one stage's cells ``keys`` (none: a stage without samples), with its plan."""
    return StageStats(
        **cells.stats(keys),
        stage=plan.stage,
        set_point=plan.set_point,
        start_offset_s=plan.start_offset_s,
        planned_s=plan.planned_s,
        stage_warmup_s=plan.stage_warmup_s,
        set_point_unit=plan.set_point_unit,
        role=plan.role,
    )


class _Cells:
    """The Stats of unions of cells (``(target, group, stage)`` accumulations), each distinct
    union's distributions computed once: with one target, the total's are the target's."""

    def __init__(self, cells: Mapping[_Key, _Accumulated]) -> None:
        self._cells = cells
        self._dists: dict[tuple[_Key, ...], dict[str, Dist]] = {}

    def stats(self, keys: Sequence[_Key]) -> dict[str, Any]:
        """The Stats of the samples of the cells ``keys`` together."""
        parts = [self._cells[k] for k in keys]
        # Only cells with measured samples hold values: the union is theirs.
        measured = tuple(k for k in keys if self._cells[k].requests)
        dists = self._dists.get(measured)
        if dists is None:
            dists = self._dists[measured] = {
                m: exact_distribution([self._cells[k].values[m] for k in measured])
                for m in VALUE_METRICS
            }
        if len(parts) == 1:
            return parts[0].stats(dists)
        merged = _Accumulated(0, None, values=False)
        for acc in parts:
            merged.add_counts(acc)
        return merged.stats(dists)


def summarize(
    samples: Iterable[Sample | SampleColumns],
    *,
    cluster: Mapping[str, Any],
    slo: SLOConfig | None = None,
    group_order: Sequence[str] | None = None,
    target_order: Sequence[str] = (),
    lag_bound_s: float = DEFAULT_LAG_BOUND_S,
    extra_warnings: Iterable[str] = (),
    stage_plans: Mapping[str, Sequence[StagePlan]] | None = None,
) -> dict[str, Any]:
    """The summary.json document of ``samples`` (see the module docstring and
    :meth:`ClusterStatistics.summary`): samples or batches of columns, read once and never
    held. ``cluster`` gives the ``id``, ``name`` and ``status`` (and any other field of
    :class:`~clientswarm.metrics.summary.ClusterInfo`) to report.
    """
    with ClusterStatistics(slo=slo, group_order=group_order or ()) as stats:
        for cols in chunks_of(samples, _CHUNK):
            stats.add(cols)
        summary = stats.summary(
            ClusterInfo(**cluster),
            lag_bound_s=lag_bound_s,
            extra_warnings=extra_warnings,
            target_order=target_order,
            stage_plans=stage_plans,
        )
    return summary.document()


def _lag_warning(group: str, p99_lag_s: float | None, bound_s: float) -> str | None:
    """The not-trustworthy warning of a group whose sends fell behind their schedule."""
    if p99_lag_s is None or p99_lag_s <= bound_s:
        return None
    return (
        f"group {group!r}: the load generator fell behind its schedule "
        f"(p99 schedule lag {p99_lag_s * 1e3:.1f} ms > {bound_s * 1e3:.1f} ms bound), so its "
        "rates and latencies are not trustworthy. Run fewer clients per worker (more workers), "
        "lower the rate, or raise max_concurrency if the open-loop cap was reached."
    )


def _group_note(group: str, stats: Mapping[str, Any]) -> str | None:
    """An informational warning about a group that did not measure anything useful."""
    if stats["requests"] == 0:
        return (
            f"group {group!r}: no measured samples ({stats['warmup_excluded']} warm-up samples "
            "excluded); run longer than warmup_s or check that its clients started."
        )
    if stats["succeeded"] == 0:
        kinds = ", ".join(f"{k} x{v}" for k, v in stats["errors"].items())
        return f"group {group!r}: all {stats['requests']} requests failed ({kinds})."
    return None


__all__ = [
    "DEFAULT_LAG_BOUND_S",
    "UNKNOWN_ERROR",
    "ClusterStatistics",
    "summarize",
]
