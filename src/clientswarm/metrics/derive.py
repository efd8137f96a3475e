"""The derived metrics of samples, declared once and computed vectorised.

Every number the statistics report about a sample comes from here, for the live statistics
(:mod:`clientswarm.metrics.live`), the exact final ones (:mod:`clientswarm.metrics.stats`), the
exported files (:mod:`clientswarm.reports.export`) and ``Sample``'s own properties alike:

- TTFT = first content token - send; E2E = end - send; schedule lag = send - scheduled;
  E2E from schedule = end - scheduled;
- TPOT = (E2E - TTFT) / (output tokens - 1), for samples with a first token and at least two
  output tokens;
- ITL: every inter-token gap as the worker recorded it; the mean of a sample's gaps is what
  an ITL objective judges.

A value a sample does not have is NaN here (``None`` in a file or a ``Sample`` property).

:func:`measured` then applies the definitions of the statistics to a set of rows: warm-up
samples and requests cut off by a stop (``error_kind == "cancelled"``) are only counted;
TTFT, ITL, TPOT, E2E and tokens come from successful samples, schedule lag from every
measured one; goodput counts the successful ones that meet every objective of the SLO.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from clientswarm.metrics.columns import F64, I64, Bool, SampleColumns
from clientswarm.metrics.sample import ERROR_CANCELLED, Sample

if TYPE_CHECKING:
    from clientswarm.config.models import SLOConfig

UNKNOWN_ERROR = "unknown"
"""Error kind counted for a failed sample that names none."""

VALUE_METRICS: tuple[str, ...] = (
    "ttft_s",
    "itl_s",
    "tpot_s",
    "e2e_s",
    "schedule_lag_s",
    "e2e_from_schedule_s",
)
"""The metrics measured samples give values of (each a distribution in the statistics)."""


@dataclass(frozen=True, slots=True)
class Derived:
    """The per-sample metrics of a batch of columns, one array entry per sample (NaN: none).

    ``itl_s`` holds every gap of the batch in sample order, ``itl_counts[i]`` of sample ``i``.
    """

    ok: Bool
    warmup: Bool
    cancelled: Bool
    generates: Bool
    """A first token or an output-token count: the token objectives of an SLO bind it."""
    scheduled_ns: I64
    sent_ns: I64
    end_ns: I64
    input_tokens: I64
    output_tokens: I64
    itl_counts: I64
    itl_s: F64
    ttft_s: F64
    e2e_s: F64
    tpot_s: F64
    schedule_lag_s: F64
    e2e_from_schedule_s: F64
    mean_itl_s: F64


def derive(cols: SampleColumns) -> Derived:
    """The derived metrics of ``cols`` (see the module docstring)."""
    n = len(cols)
    sched, _ = cols.ints("scheduled_ns")
    sent, _ = cols.ints("sent_ns")
    end, _ = cols.ints("end_ns")
    first, has_first = cols.ints("first_token_ns")
    out, has_out = cols.ints("output_tokens")
    inp, _ = cols.ints("input_tokens")
    has_first = np.ones(n, dtype=np.bool_) if has_first is None else has_first
    has_out = np.ones(n, dtype=np.bool_) if has_out is None else has_out
    ttft = np.full(n, np.nan)
    ttft[has_first] = (first[has_first] - sent[has_first]) / 1e9
    e2e = (end - sent) / 1e9
    has_tpot = has_first & has_out & (out >= 2)
    tpot = np.full(n, np.nan)
    tpot[has_tpot] = (e2e[has_tpot] - ttft[has_tpot]) / (out[has_tpot] - 1)
    counts = cols.itl_counts()
    itl = cols.itl_values()
    means = np.full(n, np.nan)
    with_gaps = counts > 0
    if with_gaps.any():
        starts = np.cumsum(counts) - counts
        means[with_gaps] = np.add.reduceat(itl, starts[with_gaps]) / counts[with_gaps]
    status = cols.columns["status"]
    errors = cols.columns["error_kind"]
    return Derived(
        ok=np.fromiter((s == "ok" for s in status), dtype=np.bool_, count=n),
        warmup=cols.bools("warmup"),
        cancelled=np.fromiter((e == ERROR_CANCELLED for e in errors), dtype=np.bool_, count=n),
        generates=has_first | has_out,
        scheduled_ns=sched,
        sent_ns=sent,
        end_ns=end,
        input_tokens=inp,
        output_tokens=out,
        itl_counts=counts,
        itl_s=itl,
        ttft_s=ttft,
        e2e_s=e2e,
        tpot_s=tpot,
        schedule_lag_s=(sent - sched) / 1e9,
        e2e_from_schedule_s=(end - sched) / 1e9,
        mean_itl_s=means,
    )


def derived_of(sample: Sample, metric: str) -> float | None:
    """One derived ``metric`` of one sample (None where it has none)."""
    value = float(getattr(derive(SampleColumns.from_samples([sample])), metric)[0])
    return None if np.isnan(value) else value


@dataclass(frozen=True, slots=True)
class Measured:
    """What a set of samples adds to statistics, by the definitions of the module docstring.

    ``values`` has, for each of :data:`VALUE_METRICS`, the values of the measured samples that
    have it. Times are epoch ns over measured samples (None without any).
    """

    requests: int
    succeeded: int
    warmup: int
    cancelled: int
    goodput: int
    input_tokens: int
    output_tokens: int
    errors: Counter[str]
    token_sources: Counter[str]
    start_ns: int | None
    """The earliest scheduled or send time."""
    end_ns: int | None
    first_sent_ns: int | None
    last_sent_ns: int | None
    values: dict[str, F64]


def measured(
    cols: SampleColumns,
    d: Derived,
    rows: I64 | None = None,
    slo: SLOConfig | None = None,
) -> Measured:
    """What the samples ``rows`` of ``cols`` (every one when None) add to statistics; ``d``
    is ``derive(cols)``. Goodput is judged against ``slo`` (without one: every success)."""
    pick = _picker(rows)
    warmup = pick(d.warmup)
    cancelled = pick(d.cancelled) & ~warmup
    keep = ~(warmup | cancelled)
    ok = pick(d.ok) & keep
    failed = keep & ~ok
    index = np.arange(len(cols)) if rows is None else rows
    sent, sched, end = pick(d.sent_ns)[keep], pick(d.scheduled_ns)[keep], pick(d.end_ns)[keep]
    ttft, tpot, e2e = pick(d.ttft_s), pick(d.tpot_s), pick(d.e2e_s)
    good = _meets_slo(ok, pick(d.generates), ttft, tpot, pick(d.mean_itl_s), e2e, slo)
    token_source = cols.columns["token_source"]
    errors = cols.columns["error_kind"]
    any_kept = bool(keep.any())
    return Measured(
        requests=int(keep.sum()),
        succeeded=int(ok.sum()),
        warmup=int(warmup.sum()),
        cancelled=int(cancelled.sum()),
        goodput=int(good.sum()),
        input_tokens=int(pick(d.input_tokens)[ok].sum()),
        output_tokens=int(pick(d.output_tokens)[ok].sum()),
        errors=Counter(errors[i] or UNKNOWN_ERROR for i in index[failed].tolist()),
        token_sources=Counter(s for i in index[ok].tolist() if (s := token_source[i]) is not None),
        start_ns=min(int(sched.min()), int(sent.min())) if any_kept else None,
        end_ns=int(end.max()) if any_kept else None,
        first_sent_ns=int(sent.min()) if any_kept else None,
        last_sent_ns=int(sent.max()) if any_kept else None,
        values={
            "ttft_s": ttft[ok & ~np.isnan(ttft)],
            "itl_s": _gaps_of(d, index[ok], rows is None and bool(ok.all())),
            "tpot_s": tpot[ok & ~np.isnan(tpot)],
            "e2e_s": e2e[ok],
            "schedule_lag_s": (sent - sched) / 1e9,
            "e2e_from_schedule_s": pick(d.e2e_from_schedule_s)[ok],
        },
    )


_Pick = Callable[[np.ndarray], np.ndarray]


def _picker(rows: I64 | None) -> _Pick:
    """Selects the entries of ``rows`` from a per-sample array (all of them when None)."""
    if rows is None:
        return lambda a: a
    return lambda a: a[rows]


def _gaps_of(d: Derived, rows: I64, every: bool) -> F64:
    """The gaps of the samples ``rows`` (ascending), in order (``every``: all samples, no
    copy)."""
    if every:
        return d.itl_s
    keep = np.zeros(len(d.itl_counts), dtype=np.bool_)
    keep[rows] = True
    return d.itl_s[np.repeat(keep, d.itl_counts)]


PartKey = tuple[str, str, str | None, int | None, int]
"""``(target, group, None, stage, replica)`` for a group's interactions of one load stage (the
sample's ``stage``) sent to one replica of the target (``replica``, 0 for a target with one
URL), ``(target, group, step name, None, 0)`` for one of its steps (steps are split neither by
stage nor by replica)."""

Parts = dict[PartKey, Measured]
"""What the interactions of each group and stage, and each step of each group, by target,
add to statistics (a group has one target, so a group's samples usually make one part per
stage, or one per step)."""


def split_rows(cols: SampleColumns) -> dict[PartKey, I64 | None]:
    """The rows of each part (:data:`PartKey`), in order of first appearance; None for every
    row when they all are one group's interactions of one stage, to one target."""
    groups, steps, targets = cols.columns["group"], cols.columns["step"], cols.columns["target"]
    stages, replicas = cols.columns["stage"], cols.columns["replica"]
    n = len(groups)
    if (
        not any(steps)
        and groups.count(groups[0]) == n
        and targets.count(targets[0]) == n
        and stages.count(stages[0]) == n
        and replicas.count(replicas[0]) == n
    ):
        return {(targets[0], groups[0], None, int(stages[0] or 0), int(replicas[0] or 0)): None}
    names = cols.columns["name"]
    rows: dict[PartKey, list[int]] = {}
    every = zip(targets, groups, steps, names, stages, replicas, strict=True)
    for i, (target, group, step, name, stage, replica) in enumerate(every):
        key: PartKey = (
            (target, group, name, None, 0)
            if step
            else (target, group, None, int(stage or 0), int(replica or 0))
        )
        rows.setdefault(key, []).append(i)
    return {key: np.array(index, dtype=np.int64) for key, index in rows.items()}


def measured_parts(
    cols: SampleColumns, d: Derived | None = None, slo: SLOConfig | None = None
) -> Parts:
    """What each part of ``cols`` adds to statistics (:func:`split_rows`,
    :func:`measured`): computed once per batch for the live and the exact statistics alike.
    ``d``: ``derive(cols)`` when already made."""
    if not len(cols):
        return {}
    d = derive(cols) if d is None else d
    return {key: measured(cols, d, rows, slo) for key, rows in split_rows(cols).items()}


def _meets_slo(
    ok: Bool,
    generates: Bool,
    ttft: F64,
    tpot: F64,
    mean_itl: F64,
    e2e: F64,
    slo: SLOConfig | None,
) -> Bool:
    """Which samples count towards goodput (NaN compares false: a missing value fails).

    Token objectives (TTFT, TPOT, ITL) bind only samples of interactions that generate tokens;
    a hello or plain HTTP sample is judged by its E2E alone. A streamed answer with nothing to
    pace (fewer than two tokens, or no gaps) meets the TPOT and ITL ones.
    """
    good = ok.copy()
    if slo is None:
        return good
    has_ttft = ~np.isnan(ttft)
    tokenless = ~generates
    nothing_to_pace = has_ttft & np.isnan(tpot)
    no_gaps = has_ttft & np.isnan(mean_itl)
    if slo.ttft_s is not None:
        good &= (ttft <= slo.ttft_s) | tokenless
    if slo.tpot_s is not None:
        good &= (tpot <= slo.tpot_s) | nothing_to_pace | tokenless
    if slo.itl_s is not None:
        good &= (has_ttft & ((mean_itl <= slo.itl_s) | no_gaps)) | tokenless
    if slo.e2e_s is not None:
        good &= e2e <= slo.e2e_s
    return good


__all__ = [
    "UNKNOWN_ERROR",
    "VALUE_METRICS",
    "Derived",
    "Measured",
    "PartKey",
    "Parts",
    "derive",
    "derived_of",
    "measured",
    "measured_parts",
    "split_rows",
]
