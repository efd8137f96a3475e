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
  (n - 1) / (last send - first send).
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

Steps: a user-defined interaction records one sample for the whole interaction plus one per
step inside it (``sample.step``, named after the step). Group and total statistics are over
interactions only; each group with steps gets ``"steps": {name: Stats}``, in order of first
appearance, each computed over that step's samples with the definitions above (same
exclusions, same SLO). Steps never make a run untrustworthy on their own: the schedule lag
that matters is the interactions'.

A run whose p99 schedule lag exceeds ``lag_bound_s`` in any group is flagged: a warning that
says what to change, and ``trustworthy: false``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from clientswarm.config.models import SLOConfig
from clientswarm.metrics.dist import distribution
from clientswarm.metrics.sample import ERROR_CANCELLED, Sample

#: Default bound on the p99 schedule lag above which a run is not trustworthy. 10 ms flags
#: healthy runs on busy CI machines; 50 ms is well above noise and well below any real stall.
DEFAULT_LAG_BOUND_S = 0.05

#: Error kind recorded for a failed sample that names none.
UNKNOWN_ERROR = "unknown"

_F64 = npt.NDArray[np.float64]
_I64 = npt.NDArray[np.int64]
_Bool = npt.NDArray[np.bool_]

#: One measured sample as a numpy record; ``first_token_ns`` is NO_FIRST_TOKEN when absent.
_ROW = np.dtype(
    [
        ("scheduled_ns", np.int64),
        ("sent_ns", np.int64),
        ("end_ns", np.int64),
        ("first_token_ns", np.int64),
        ("ok", np.bool_),
        ("input_tokens", np.int64),
        ("output_tokens", np.int64),
        ("itl_count", np.int64),
        ("generates", np.bool_),
    ]
)
_NO_FIRST_TOKEN = int(np.iinfo(np.int64).min)
# Python rows and ITL floats are turned into numpy chunks this often, which bounds the memory
# of a million-sample run to its compact arrays (not one Python object per value).
_CHUNK_ROWS = 1 << 16
_CHUNK_FLOATS = 1 << 20


class _Columns:
    """One group's measured samples, collected in one pass as compact numpy chunks."""

    __slots__ = (
        "cancelled",
        "errors",
        "itl",
        "itl_chunks",
        "row_chunks",
        "rows",
        "token_sources",
        "warmup",
    )

    def __init__(self) -> None:
        self.rows: list[tuple[int, int, int, int, bool, int, int, int, bool]] = []
        self.row_chunks: list[npt.NDArray[np.void]] = []
        self.itl: list[float] = []
        self.itl_chunks: list[_F64] = []
        self.errors: Counter[str] = Counter()
        self.token_sources: Counter[str] = Counter()
        self.warmup = 0
        self.cancelled = 0

    def add(self, s: Sample) -> None:
        """Append one measured sample; only successful samples contribute ITL and tokens."""
        if s.status == "ok":
            first = s.first_token_ns
            itl = s.itl_s
            self.rows.append(
                (
                    s.scheduled_ns,
                    s.sent_ns,
                    s.end_ns,
                    _NO_FIRST_TOKEN if first is None else first,
                    True,
                    s.input_tokens or 0,
                    s.output_tokens or 0,
                    len(itl),
                    first is not None or s.output_tokens is not None,
                )
            )
            if itl:
                self.itl.extend(itl)
                if len(self.itl) >= _CHUNK_FLOATS:
                    self.itl_chunks.append(np.array(self.itl, dtype=np.float64))
                    self.itl.clear()
            if s.token_source is not None:
                self.token_sources[s.token_source] += 1
        else:
            self.rows.append(
                (s.scheduled_ns, s.sent_ns, s.end_ns, _NO_FIRST_TOKEN, False, 0, 0, 0, False)
            )
            self.errors[s.error_kind or UNKNOWN_ERROR] += 1
        if len(self.rows) >= _CHUNK_ROWS:
            self.row_chunks.append(np.array(self.rows, dtype=_ROW))
            self.rows.clear()

    def arrays(self) -> _Arrays:
        """The collected samples as numpy arrays."""
        rows = np.concatenate([*self.row_chunks, np.array(self.rows, dtype=_ROW)])
        itl = np.concatenate([*self.itl_chunks, np.array(self.itl, dtype=np.float64)])
        return _Arrays(rows, itl, self.errors, self.token_sources, self.warmup, self.cancelled)


@dataclass(frozen=True, slots=True)
class _Arrays:
    """Measured samples of one group (or of several, concatenated) as numpy arrays.

    ``itl_s`` holds the gaps of every successful sample, in row order; row ``i`` owns
    ``rows["itl_count"][i]`` of them.
    """

    rows: npt.NDArray[np.void]
    itl_s: _F64
    errors: Counter[str]
    token_sources: Counter[str]
    warmup: int
    cancelled: int

    @classmethod
    def concat(cls, parts: Sequence[_Arrays]) -> _Arrays:
        if not parts:
            return _Columns().arrays()
        return cls(
            rows=np.concatenate([p.rows for p in parts]),
            itl_s=np.concatenate([p.itl_s for p in parts]),
            errors=sum((p.errors for p in parts), Counter()),
            token_sources=sum((p.token_sources for p in parts), Counter()),
            warmup=sum(p.warmup for p in parts),
            cancelled=sum(p.cancelled for p in parts),
        )

    def ttft_s(self) -> _F64:
        """Per-sample TTFT, NaN without a first token (the expression of Sample.ttft_s)."""
        first = self.rows["first_token_ns"]
        has = first != _NO_FIRST_TOKEN
        ttft = np.full(first.size, np.nan)
        ttft[has] = (first[has] - self.rows["sent_ns"][has]) / 1e9
        return ttft

    def mean_itl_s(self) -> _F64:
        """Per-sample mean of its ITL gaps, NaN without gaps."""
        counts = self.rows["itl_count"]
        means = np.full(counts.size, np.nan)
        has = counts > 0
        if has.any():
            starts = np.cumsum(counts) - counts
            means[has] = np.add.reduceat(self.itl_s, starts[has]) / counts[has]
        return means


def summarize(
    samples: Iterable[Sample],
    *,
    cluster: Mapping[str, Any],
    slo: SLOConfig | None = None,
    group_order: Sequence[str] | None = None,
    lag_bound_s: float = DEFAULT_LAG_BOUND_S,
    extra_warnings: Iterable[str] = (),
) -> dict[str, Any]:
    """Exact statistics of ``samples`` in the summary.json shape (see the module docstring).

    ``cluster`` gives the ``id``, ``name`` and ``status`` to report. Groups named in
    ``group_order`` come first, in that order, even without samples; others follow in order of
    first appearance. ``extra_warnings`` (e.g. worker event-loop lag) are reported and mark the
    run as not trustworthy, as does a p99 schedule lag above ``lag_bound_s`` in any group.
    Step samples (``sample.step``) go to their group's ``steps`` entry, by name, never into the
    group's or the total's Stats; a group without steps has no ``steps`` key.
    The samples are read once and never held: pass a generator for large runs. Besides the
    canonical keys, the result records the ``slo`` (objectives set) and ``lag_bound_s`` used.
    """
    columns: dict[str, _Columns] = {name: _Columns() for name in group_order or ()}
    steps: dict[str, dict[str, _Columns]] = {}  # group → step name → its samples
    for s in samples:
        col = columns.get(s.group)
        if col is None:
            col = columns[s.group] = _Columns()
        if s.step:
            by_name = steps.get(s.group)
            if by_name is None:
                by_name = steps[s.group] = {}
            step_col = by_name.get(s.name)
            if step_col is None:
                step_col = by_name[s.name] = _Columns()
            col = step_col
        if s.warmup:
            col.warmup += 1
        elif s.error_kind == ERROR_CANCELLED:
            col.cancelled += 1
        else:
            col.add(s)

    arrays = {name: col.arrays() for name, col in columns.items()}
    groups = {name: _stats(a, slo) for name, a in arrays.items()}
    total = _stats(_Arrays.concat(list(arrays.values())), slo)
    for name, by_name in steps.items():
        groups[name]["steps"] = {step: _stats(c.arrays(), slo) for step, c in by_name.items()}

    untrusted = [*extra_warnings]
    for name, stats in groups.items():
        lag = _lag_warning(name, stats["schedule_lag_s"]["p99"], lag_bound_s)
        if lag is not None:
            untrusted.append(lag)
    notes = [n for name, stats in groups.items() if (n := _group_note(name, stats)) is not None]
    return {
        "cluster": {
            **cluster,
            "id": cluster.get("id"),
            "name": cluster.get("name"),
            "status": cluster.get("status"),
        },
        "total": total,
        "groups": groups,
        "warnings": untrusted + notes,
        "trustworthy": not untrusted,
        "slo": None if slo is None else slo.model_dump(exclude_none=True),
        "lag_bound_s": lag_bound_s,
    }


def _stats(a: _Arrays, slo: SLOConfig | None) -> dict[str, Any]:
    """The Stats of one group's (or all groups') measured samples."""
    rows = a.rows
    sched, sent, end = rows["scheduled_ns"], rows["sent_ns"], rows["end_ns"]
    n = int(sent.size)
    ok = rows["ok"]
    succeeded = int(ok.sum())
    if n:
        start_ns = min(int(sched.min()), int(sent.min()))
        duration_s = (int(end.max()) - start_ns) / 1e9
    else:
        duration_s = 0.0
    e2e = (end - sent) / 1e9
    ttft = a.ttft_s()
    has_ttft = ok & ~np.isnan(ttft)
    out = rows["output_tokens"]
    has_tpot = has_ttft & (out >= 2)
    tpot = np.full(n, np.nan)
    tpot[has_tpot] = (e2e[has_tpot] - ttft[has_tpot]) / (out[has_tpot] - 1)
    good = _meets_slo(ok, rows["generates"], has_ttft, ttft, tpot, a.mean_itl_s(), e2e, slo)
    goodput = int(good.sum())
    output_tokens = int(out[ok].sum())

    def rate(count: float) -> float:
        return count / duration_s if duration_s > 0 else 0.0

    return {
        "requests": n,
        "succeeded": succeeded,
        "failed": n - succeeded,
        "errors": dict(sorted(a.errors.items(), key=lambda kv: (-kv[1], kv[0]))),
        "duration_s": duration_s,
        "request_rate": rate(n),
        "output_token_rate": rate(output_tokens),
        "input_tokens": int(rows["input_tokens"][ok].sum()),
        "output_tokens": output_tokens,
        "goodput_rate": rate(goodput),
        "ttft_s": distribution(ttft[has_ttft]),
        "itl_s": distribution(a.itl_s),
        "tpot_s": distribution(tpot[has_tpot]),
        "e2e_s": distribution(e2e[ok]),
        "schedule_lag_s": distribution((sent - sched) / 1e9),
        "e2e_from_schedule_s": distribution((end[ok] - sched[ok]) / 1e9),
        "goodput": goodput,
        "succeeded_rate": rate(succeeded),
        "send_rate": _send_rate(sent),
        "error_rate": (n - succeeded) / n if n else 0.0,
        "token_sources": dict(sorted(a.token_sources.items())),
        "warmup_excluded": a.warmup,
        "cancelled_excluded": a.cancelled,
    }


def _meets_slo(
    ok: _Bool,
    generates: _Bool,
    has_ttft: _Bool,
    ttft: _F64,
    tpot: _F64,
    mean_itl: _F64,
    e2e: _F64,
    slo: SLOConfig | None,
) -> _Bool:
    """Which samples count towards goodput (NaN compares false: a missing value fails).

    Token objectives (TTFT, TPOT, ITL) bind only samples of interactions that generate tokens;
    a hello or plain HTTP sample is judged by its E2E alone.
    """
    good = ok.copy()
    if slo is None:
        return good
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


def _send_rate(sent_ns: _I64) -> float | None:
    """Achieved arrival rate; None with fewer than two sends or no time between them."""
    if sent_ns.size < 2:
        return None
    span_s = (int(sent_ns.max()) - int(sent_ns.min())) / 1e9
    return (sent_ns.size - 1) / span_s if span_s > 0 else None


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


__all__ = ["DEFAULT_LAG_BOUND_S", "UNKNOWN_ERROR", "summarize"]
