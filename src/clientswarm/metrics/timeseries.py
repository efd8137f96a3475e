"""Per-group time series of a run: 1-second buckets, computed vectorised from sample columns.

Buckets are aligned to the cluster's shared start time (``start_ns``, the one every worker
got in its assignment): bucket ``k`` is ``[start + k·bucket_s, start + (k+1)·bucket_s)``, and
``t_s`` is its left edge in seconds from the start. Each event lands in the bucket of the
moment it happened:

- a request counts as **completed** (``requests_per_s``, ``errors``), and its output tokens
  (``output_tokens_per_s``, successful requests only, as in the summary) in the bucket of its
  end;
- **TTFT** (successful requests) in the bucket of its first token;
- **ITL**: every inter-token gap in the bucket where it ended, the first gap ending at
  ``first token + gap``, each next one a gap later (the same gaps the summary's ITL uses);
- **schedule lag** in the bucket of the send;
- **in flight** is the mean number of requests in flight over the bucket (the time integral
  of ``[sent, end)`` over the bucket divided by its length: average concurrency, which Little's
  law ties to rate x latency), and **active clients** the distinct clients that had a request
  in flight at some moment of the bucket.

Warm-up samples are included (the chart shows the warm-up; ``warmup_s`` says where it ends);
requests cut off by a stop (``cancelled``) count in flight but not as completed or errors;
steps of user-defined interactions are left out (a group counts interactions). The derived
metrics come from :func:`clientswarm.metrics.derive.derive`, never recomputed here.

**Memory.** Counters cost a few numbers per bucket. Percentiles are exact (numpy's linear
interpolation, as in the summary) while a metric's values of a group fit ``exact_budget``
values (4 Mi by default: 64 MiB with their bucket numbers); beyond that the metric's values are
folded into sparse log-linear histograms per bucket (:mod:`clientswarm.metrics.histogram`:
within 0.8 %), whose size depends on the run's length, not on how many requests or tokens it
had. So a long run at a high rate stays bounded (the ITL gaps of an hour at 1000 requests/s
would be hundreds of millions of values).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from clientswarm.metrics.columns import F64, I64, SampleColumns
from clientswarm.metrics.derive import UNKNOWN_ERROR, derive
from clientswarm.metrics.histogram import _MIDPOINT, N_BUCKETS, bucket_indices
from clientswarm.timestamps import rfc3339

BUCKET_S = 1.0
"""The width of a bucket, in seconds."""

MAX_BUCKETS = 7 * 24 * 3600
"""Buckets after the first week are left out (a timestamp far off, not a run that long)."""

DEFAULT_EXACT_BUDGET = 4 * 1024 * 1024
"""Values a metric of a group keeps exactly before it folds them into histograms."""

_FOLD_CHUNK = 1024 * 1024
"""Values held before they join the histograms, once a metric is folded."""

PERCENTILES: tuple[tuple[str, float], ...] = (("p50", 50.0), ("p99", 99.0))
"""The percentiles each distribution metric has, by the suffix of its series' name."""

VALUE_SERIES: tuple[str, ...] = ("ttft_s", "itl_s", "schedule_lag_s")
"""The metrics with percentile series (``ttft_s_p50``, ``ttft_s_p99``, …)."""

_EMPTY_I = np.empty(0, dtype=np.int64)
_EMPTY_F: F64 = np.empty(0, dtype=np.float64)


class _Values:
    """The values of one metric of one group, by bucket: exact, or folded into sparse
    histograms once they exceed the budget."""

    __slots__ = ("_bins", "_buckets", "_budget", "_counts", "_held", "_values")

    def __init__(self, budget: int) -> None:
        self._budget = budget
        self._buckets: list[I64] = []
        self._values: list[F64] = []
        self._held = 0
        self._bins: I64 | None = None  # sorted keys: bucket * N_BUCKETS + histogram bucket
        self._counts: I64 = _EMPTY_I

    @property
    def folded(self) -> bool:
        """Whether the values went into histograms (percentiles within 0.8 %)."""
        return self._bins is not None

    def add(self, buckets: I64, values: F64) -> None:
        keep = np.isfinite(values) & (buckets >= 0) & (buckets < MAX_BUCKETS)
        buckets, values = buckets[keep], values[keep]
        if not len(values):
            return
        self._buckets.append(buckets)
        self._values.append(values)
        self._held += len(values)
        if self._held > (self._budget if self._bins is None else _FOLD_CHUNK):
            self._fold()

    def _fold(self) -> None:
        if not self._buckets:
            return
        buckets = np.concatenate(self._buckets)
        keys = buckets * N_BUCKETS + bucket_indices(np.concatenate(self._values))
        self._buckets, self._values, self._held = [], [], 0
        low, high = int(keys.min()), int(keys.max())
        if high - low < 4 * len(keys) + (1 << 20):  # a few buckets' worth: count, no sort
            dense = np.bincount(keys - low)
            bins = np.flatnonzero(dense)
            new_bins, new_counts = bins + low, dense[bins].astype(np.int64)
        else:
            new_bins, new_counts = np.unique(keys, return_counts=True)
        if self._bins is None:
            self._bins, self._counts = new_bins, new_counts
            return
        at = np.searchsorted(self._bins, new_bins)
        known = at < len(self._bins)
        known[known] = self._bins[at[known]] == new_bins[known]
        np.add.at(self._counts, at[known], new_counts[known])
        fresh = ~known
        self._bins = np.insert(self._bins, at[fresh], new_bins[fresh])
        self._counts = np.insert(self._counts, at[fresh], new_counts[fresh])

    def percentiles(self, n_buckets: int, qs: list[float]) -> list[F64]:
        """Each percentile (0 to 100) per bucket, NaN where a bucket has no value."""
        out = [np.full(n_buckets, np.nan) for _ in qs]
        if self._bins is not None:
            self._fold()
            assert self._bins is not None
            bucket = self._bins // N_BUCKETS
            per_bucket = np.bincount(bucket, weights=self._counts, minlength=n_buckets)
            cum = np.cumsum(self._counts)
            first = np.flatnonzero(per_bucket[:n_buckets])
            before = np.concatenate([[0], np.cumsum(per_bucket)])[first]
            count = per_bucket[first]
            for row, q in zip(out, qs, strict=True):  # as exact, with bins for values
                pos = q / 100 * (count - 1)
                lo = np.floor(pos)
                hi = np.minimum(lo + 1, count - 1)
                low, high = (
                    _MIDPOINT[
                        self._bins[np.searchsorted(cum, before + r, side="right")] % N_BUCKETS
                    ]
                    for r in (lo, hi)
                )
                row[first] = low + (high - low) * (pos - lo)
            return out
        if not self._values:
            return out
        buckets = np.concatenate(self._buckets)
        values = np.concatenate(self._values)
        order = np.lexsort((values, buckets))
        buckets, values = buckets[order], values[order]
        present, starts, counts = np.unique(buckets, return_index=True, return_counts=True)
        inside = present < n_buckets
        present, starts, counts = present[inside], starts[inside], counts[inside]
        for row, q in zip(out, qs, strict=True):
            pos = starts + q / 100 * (counts - 1)
            lo = np.floor(pos).astype(np.int64)
            hi = np.minimum(lo + 1, starts + counts - 1)
            frac = pos - lo
            row[present] = values[lo] + (values[hi] - values[lo]) * frac
        return out


def _grown(counts: F64, buckets: I64, weights: F64 | None = None) -> F64:
    """``counts`` with ``weights`` (1 each when None) added at ``buckets`` (negative ones left
    out), grown to hold the highest bucket."""
    keep = (buckets >= 0) & (buckets < MAX_BUCKETS)
    buckets = buckets[keep]
    if not len(buckets):
        return counts
    w = None if weights is None else weights[keep]
    added: F64 = np.bincount(buckets, weights=w).astype(np.float64)
    if len(added) > len(counts):
        added[: len(counts)] += counts
        return added
    counts[: len(added)] += added
    return counts


@dataclass(slots=True)
class _Group:
    """The accumulators of one group: counters per bucket, values per metric."""

    budget: int
    completed: F64 = field(default_factory=lambda: _EMPTY_F.copy())
    tokens: F64 = field(default_factory=lambda: _EMPTY_F.copy())
    busy: F64 = field(default_factory=lambda: _EMPTY_F.copy())
    errors: dict[str, F64] = field(default_factory=dict)
    clients: list[I64] = field(default_factory=list)
    held_clients: int = 0
    values: dict[str, _Values] = field(default_factory=dict)

    def of(self, metric: str) -> _Values:
        found = self.values.get(metric)
        if found is None:
            found = self.values[metric] = _Values(self.budget)
        return found


class TimeSeries:
    """Builds a cluster's per-group time series from batches of sample columns (in any
    order): :meth:`add` each batch, then :meth:`document`. See the module docstring."""

    def __init__(
        self,
        start_ns: int,
        *,
        bucket_s: float = BUCKET_S,
        warmup_s: float = 0.0,
        group_order: list[str] | None = None,
        exact_budget: int = DEFAULT_EXACT_BUDGET,
    ) -> None:
        self.start_ns = start_ns
        self.bucket_s = bucket_s
        self.warmup_s = warmup_s
        self._bucket_ns = round(bucket_s * 1e9)
        self._budget = exact_budget
        self._groups: dict[str, _Group] = {name: _Group(exact_budget) for name in group_order or []}
        self._last = -1  # the last bucket anything fell in

    def _bucket(self, times_ns: I64) -> I64:
        return (times_ns - self.start_ns) // self._bucket_ns

    def add(self, cols: SampleColumns) -> None:
        """Take one batch of samples."""
        if not len(cols):
            return
        d = derive(cols)
        groups = np.array(cols.columns["group"], dtype=object)
        interactions = ~cols.bools("step")
        clients, _ = cols.ints("client")
        errors = cols.columns["error_kind"]
        first_ns, has_first = cols.ints("first_token_ns")
        gap_owner = np.repeat(np.arange(len(cols)), d.itl_counts)
        for name in dict.fromkeys(cols.columns["group"]):
            rows = np.flatnonzero((groups == name) & interactions)
            if not len(rows):
                continue
            g = self._groups.setdefault(name, _Group(self._budget))
            end_b = self._bucket(d.end_ns[rows])
            sent_b = self._bucket(d.sent_ns[rows])
            latest = max(int(end_b.max()), int(sent_b.max()))
            self._last = max(self._last, min(latest, MAX_BUCKETS - 1))
            cancelled = d.cancelled[rows]
            ok = d.ok[rows]
            done = ~cancelled
            g.completed = _grown(g.completed, end_b[done])
            tokens = d.output_tokens[rows][ok].astype(np.float64)
            g.tokens = _grown(g.tokens, end_b[ok], tokens)
            failed = done & ~ok
            kinds = np.array(
                [errors[i] or UNKNOWN_ERROR for i in rows[failed].tolist()], dtype=object
            )
            for kind in dict.fromkeys(kinds.tolist()):
                at = end_b[failed][kinds == kind]
                g.errors[kind] = _grown(g.errors.get(kind, _EMPTY_F.copy()), at)
            self._in_flight(g, d.sent_ns[rows], d.end_ns[rows], clients[rows])
            g.of("schedule_lag_s").add(sent_b[done], d.schedule_lag_s[rows][done])
            ok_rows = rows[ok]
            with_first = ok_rows if has_first is None else ok_rows[has_first[ok_rows]]
            g.of("ttft_s").add(self._bucket(first_ns[with_first]), d.ttft_s[with_first])
            self._gaps(g, d.itl_s, d.itl_counts, gap_owner, ok_rows, first_ns, d.end_ns)

    def _gaps(
        self,
        g: _Group,
        itl_s: F64,
        counts: I64,
        owner: I64,
        ok_rows: I64,
        first_ns: I64,
        end_ns: I64,
    ) -> None:
        """Each gap of the successful rows ``ok_rows`` in the bucket where it ended."""
        if not len(itl_s) or not len(ok_rows):
            return
        wanted = np.zeros(len(counts), dtype=np.bool_)
        wanted[ok_rows] = True
        pick = wanted[owner]
        gaps, who = itl_s[pick], owner[pick]
        if not len(gaps):
            return
        # Time of each gap's end: the owner's first token plus its gaps so far.
        total = np.cumsum(gaps)
        starts = np.flatnonzero(np.concatenate([[True], who[1:] != who[:-1]]))
        before = np.repeat(total[starts] - gaps[starts], np.diff(np.append(starts, len(gaps))))
        offset_ns = ((total - before) * 1e9).astype(np.int64)
        base = np.where(first_ns[who] > 0, first_ns[who], end_ns[who])
        g.of("itl_s").add(self._bucket(base + offset_ns), gaps)

    def _in_flight(self, g: _Group, sent_ns: I64, end_ns: I64, clients: I64) -> None:
        """The share of each bucket each request spent in flight, and which clients had one
        in flight in which bucket."""
        width = self._bucket_ns
        limit = MAX_BUCKETS * width
        a = sent_ns - self.start_ns
        b = np.maximum(end_ns, sent_ns) - self.start_ns
        on_timeline = ((b > 0) | (a >= 0)) & (a < limit)  # [a, b) overlaps the timeline
        a, b = np.clip(a[on_timeline], 0, limit), np.clip(b[on_timeline], 0, limit)
        clients = clients[on_timeline]
        first, last = a // width, np.maximum((b - 1) // width, a // width)
        span = last - first + 1
        index = np.repeat(np.arange(len(a)), span)
        bucket = np.repeat(first, span) + (
            np.arange(len(index)) - np.repeat(np.cumsum(span) - span, span)
        )
        lo = np.maximum(a[index], bucket * width)
        hi = np.minimum(b[index], (bucket + 1) * width)
        share = np.maximum(hi - lo, 0) / width
        g.busy = _grown(g.busy, bucket, share)
        keys = np.unique(bucket * (1 << 32) + clients[index])
        g.clients.append(keys)
        g.held_clients += len(keys)
        if g.held_clients > 2 * (len(g.clients[0]) + 1024):  # distinct pairs, compacted
            g.clients = [np.unique(np.concatenate(g.clients))]
            g.held_clients = len(g.clients[0])

    def document(self) -> dict[str, Any]:
        """The time series: ``{"bucket_s", "start", "start_ns", "warmup_s", "groups":
        {g: series}}``,
        every series one list per bucket (None where the bucket has no value)."""
        n = self._last + 1
        groups = {name: self._series(g, max(n, 0)) for name, g in self._groups.items()}
        return {
            "bucket_s": self.bucket_s,
            "start": rfc3339(self.start_ns / 1e9),
            "start_ns": self.start_ns,
            "warmup_s": self.warmup_s,
            "groups": groups,
        }

    def _series(self, g: _Group, n: int) -> dict[str, Any]:
        per_s = 1.0 / self.bucket_s

        def fit(counts: F64) -> F64:
            out = np.zeros(n)
            out[: min(n, len(counts))] = counts[:n]
            return out

        active = np.zeros(n)
        if g.clients:
            keys = np.unique(np.concatenate(g.clients))
            kb = keys >> 32
            active = np.bincount(kb[kb < n], minlength=n).astype(np.float64)
        series: dict[str, Any] = {
            "t_s": [round(k * self.bucket_s, 9) for k in range(n)],
            "requests_per_s": _list(fit(g.completed) * per_s),
            "output_tokens_per_s": _list(fit(g.tokens) * per_s),
        }
        names = [p for p, _ in PERCENTILES]
        qs = [q for _, q in PERCENTILES]
        for metric in VALUE_SERIES:
            values = g.values.get(metric)
            rows = [np.full(n, np.nan)] * len(qs) if values is None else values.percentiles(n, qs)
            for suffix, row in zip(names, rows, strict=True):
                series[f"{metric}_{suffix}"] = _list(row)
        series["in_flight"] = _list(fit(g.busy))
        series["active_clients"] = [int(x) for x in active]
        series["errors"] = {
            kind: [int(x) for x in fit(counts)] for kind, counts in sorted(g.errors.items())
        }
        series["exact"] = not any(v.folded for v in g.values.values())
        return series


class GroupSeries(BaseModel):
    """One group's time series: one entry per bucket in every list (None: no value)."""

    t_s: list[float] = Field(description="Left edge of each bucket, seconds from the start")
    requests_per_s: list[float | None] = Field(
        description="Requests completed (ended, success or error) per second"
    )
    output_tokens_per_s: list[float | None] = Field(
        description="Output tokens of the successful requests that ended in the bucket, per second"
    )
    ttft_s_p50: list[float | None] = Field(description="TTFT p50 of first tokens in the bucket")
    ttft_s_p99: list[float | None] = Field(description="TTFT p99 of first tokens in the bucket")
    itl_s_p50: list[float | None] = Field(description="ITL p50 of the gaps ending in the bucket")
    itl_s_p99: list[float | None] = Field(description="ITL p99 of the gaps ending in the bucket")
    schedule_lag_s_p50: list[float | None] = Field(
        description="Schedule lag p50 of the sends in the bucket"
    )
    schedule_lag_s_p99: list[float | None] = Field(
        description="Schedule lag p99 of the sends in the bucket"
    )
    in_flight: list[float | None] = Field(
        description="Mean number of requests in flight over the bucket"
    )
    active_clients: list[int] = Field(
        description="Distinct clients with a request in flight during the bucket"
    )
    errors: dict[str, list[int]] = Field(
        description="Failed requests that ended in the bucket, by error kind"
    )
    exact: bool = Field(
        description="Whether the percentiles are exact (false: within 0.8 %, a very long run)"
    )


class TimeSeriesDocument(BaseModel):
    """A cluster's time series (``GET /api/v1/clusters/{id}/timeseries``, ``timeseries.json``):
    per group, one value per ``bucket_s`` bucket from the shared start time."""

    bucket_s: float = Field(description="Width of a bucket, seconds")
    start: str | None = Field(description="The shared start time (RFC 3339); bucket 0 begins")
    start_ns: int | None = Field(description="The shared start time, Unix epoch nanoseconds")
    warmup_s: float = Field(description="Seconds of warm-up from the start (included)")
    groups: dict[str, GroupSeries]
    server: dict[str, dict[str, list[float | None]]] | None = Field(
        default=None,
        description="The engines' gauges at each scrape, by target: t_s (seconds from the "
        "start), running, waiting, kv_cache_usage (only when engine metrics were scraped)",
    )


def _list(values: F64) -> list[float | None]:
    """JSON-ready: NaN as None, 9 significant digits (nanoseconds of a second)."""
    return [None if x != x else float(f"{x:.9g}") for x in values.tolist()]


def timeseries_of(
    batches: Any,
    start_ns: int,
    *,
    warmup_s: float = 0.0,
    group_order: list[str] | None = None,
    exact_budget: int = DEFAULT_EXACT_BUDGET,
) -> dict[str, Any]:
    """The time series document of every batch of ``batches`` (an iterable of
    :class:`SampleColumns`, e.g. ``Store.iter_columns``), streamed one batch at a time."""
    series = TimeSeries(
        start_ns, warmup_s=warmup_s, group_order=group_order, exact_budget=exact_budget
    )
    for cols in batches:
        series.add(cols)
    return series.document()


__all__ = [
    "BUCKET_S",
    "DEFAULT_EXACT_BUDGET",
    "PERCENTILES",
    "VALUE_SERIES",
    "GroupSeries",
    "TimeSeries",
    "TimeSeriesDocument",
    "timeseries_of",
]
