"""Open-loop arrival processes: when each interaction of a group is sent, whatever answers take.

A group's process is generated once, deterministically from the cluster seed and the group
index, and every worker derives the same one and keeps its own clients' arrivals
(:meth:`ArrivalSchedule.for_worker`), so the fleet's union is exactly the requested process with
no central dispatcher.

- ``constant``: arrival ``i`` of a stage is at ``start + i / rate``, each offset computed from its
  index, so there is no accumulated floating drift; a stage of ``d`` seconds at rate ``r`` has
  exactly ``ceil(r * d)`` arrivals (``r * d`` when that is whole).
- ``poisson``: gaps are exponential with mean ``1 / rate``, drawn from
  ``np.random.default_rng([seed mod 2**64, group_index])``. Each stage restarts the process at its
  start, which memorylessness makes equivalent to one process with a piecewise-constant rate.
- ``gamma``: gaps are gamma with shape ``burstiness`` and mean ``1 / rate`` (vLLM ``bench
  serve``'s convention: 1 is Poisson, below 1 burstier, above 1 more regular; the gaps'
  coefficient of variation is ``1 / sqrt(burstiness)``), from the same generator. Each stage
  restarts the process at its start (a renewal process, not memoryless: a stage's first gap is
  a whole gap).

Stages are laid end to end after warm-up (see :mod:`clientswarm.load.stages`); warm-up is paced
at the first stage's rate (or the plain rate) and runs on into stage 0 as one process. Warm-up
arrivals (before ``warmup_s``) carry ``stage == 0`` and ``warmup == True``. The process stops at
``warmup_s + duration`` and/or after ``requests`` measured arrivals, whichever comes first.
Arrival ``j`` is sent by the group's client ``j % clients`` (local index).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import overload

import numpy as np
import numpy.typing as npt

from clientswarm.config.load import OpenLoadConfig
from clientswarm.config.models import ClusterConfig
from clientswarm.load.clients import first_client as group_first_client
from clientswarm.load.schedule import Arrival, ArrivalSchedule
from clientswarm.load.stages import stage_spans

Offsets = npt.NDArray[np.float64]


def arrival_rng(seed: int, group_index: int) -> np.random.Generator:
    """The generator of a group's Poisson arrivals (negative seeds wrap modulo 2**64)."""
    return np.random.default_rng([seed % (1 << 64), group_index])


def _count_below(x: float) -> int:
    """How many integers ``i >= 0`` satisfy ``i < x``.

    ``x`` within a relative 1e-9 of a whole number counts as that number, so that a stage of
    ``0.1`` s at 30/s has 3 arrivals, not 4 (``0.1 * 30 == 3.0000000000000004``).
    """
    if x <= 0:
        return 0
    return max(0, math.ceil(x - 1e-9 * max(1.0, x)))


def _constant_phase(
    start: float, end: float, rate: float, warmup_s: float, remaining: int | None
) -> tuple[Offsets, int]:
    """Offsets ``start + i / rate`` in ``[start, end)``; also how many are warm-up."""
    n_warmup = _count_below((warmup_s - start) * rate)
    if math.isinf(end):
        assert remaining is not None, "an unbounded phase needs a request count"
        n = n_warmup + remaining
    else:
        n = _count_below((end - start) * rate)
        n_warmup = min(n_warmup, n)
        if remaining is not None:
            n = min(n, n_warmup + remaining)
    return start + np.arange(n, dtype=np.float64) / rate, n_warmup


def _poisson_phase(
    start: float,
    end: float,
    rate: float,
    warmup_s: float,
    remaining: int | None,
    rng: np.random.Generator,
    shape: float | None = None,
) -> tuple[Offsets, int]:
    """Poisson offsets in ``[start, end)``, stopping after ``remaining`` measured ones; with a
    gamma ``shape``, gamma gaps of the same mean (``1 / rate``) and a coefficient of variation
    of ``1 / sqrt(shape)``."""
    if math.isinf(end):
        assert remaining is not None, "an unbounded phase needs a request count"
        expected = remaining + rate * max(0.0, warmup_s - start)
    else:
        expected = rate * (end - start)
    # Draw a few standard deviations more than expected, so one chunk nearly always suffices.
    chunk = int(expected + 6.0 * math.sqrt(expected) + 64)
    pieces: list[Offsets] = []
    t = start
    measured = 0
    while True:
        offsets = t + np.cumsum(_gaps(rng, chunk, shape) / rate)
        done = bool(offsets[-1] >= end)
        if done:
            offsets = offsets[: int(np.searchsorted(offsets, end, side="left"))]
        if remaining is not None:
            first_measured = int(np.searchsorted(offsets, warmup_s, side="left"))
            need = remaining - measured
            if len(offsets) - first_measured >= need:
                offsets = offsets[: first_measured + need]
                done = True
            measured += len(offsets) - first_measured
        pieces.append(offsets)
        if done:
            break
        t = float(offsets[-1])
        chunk = max(1024, chunk // 4)
    result = np.concatenate(pieces) if len(pieces) > 1 else pieces[0]
    return result, int(np.searchsorted(result, warmup_s, side="left"))


def _gaps(rng: np.random.Generator, n: int, shape: float | None) -> Offsets:
    """``n`` gaps of mean 1: exponential (Poisson), or gamma of ``shape`` (scale ``1/shape``)."""
    if shape is None:
        return rng.standard_exponential(n)
    return rng.standard_gamma(shape, n) / shape


def arrival_phase(
    arrival: str,
    burstiness: float | None,
    span: tuple[float, float],
    rate: float,
    warmup_s: float,
    remaining: int | None,
    rng: np.random.Generator,
) -> tuple[Offsets, int]:
    """One stage's offsets in ``span`` = ``[start, end)`` for ``arrival`` (constant, poisson or
    gamma with ``burstiness``, 1 by default), and how many are warm-up."""
    start, end = span
    if arrival == "constant":
        return _constant_phase(start, end, rate, warmup_s, remaining)
    shape = (burstiness or 1.0) if arrival == "gamma" else None
    return _poisson_phase(start, end, rate, warmup_s, remaining, rng, shape)


def _rates(load: OpenLoadConfig) -> tuple[list[float], list[float]]:
    """Stage durations and rates; a plain rate is one stage without a duration of its own."""
    if load.stages:
        return [s.duration_s for s in load.stages], [s.rate for s in load.stages]
    if load.rate is None:
        raise ValueError("an open load needs a rate (requests per second) or stages")
    return [], [load.rate]


def open_schedule(
    load: OpenLoadConfig,
    *,
    seed: int,
    group_index: int,
    first_client: int,
    clients: int,
    warmup_s: float,
    duration_s: float | None,
    requests: int | None,
) -> ArrivalSchedule:
    """The whole group's arrivals, sorted by offset.

    ``duration_s`` is the measured duration (``None``: the sum of the stages, if any) and
    ``requests`` the group's measured-request budget; at least one of them must bound the
    process, else ``ValueError``.
    """
    if clients < 1:
        raise ValueError(f"clients must be >= 1, got {clients}")
    if requests is not None and requests < 1:
        raise ValueError(f"requests must be >= 1, got {requests}")
    durations, rates = _rates(load)
    spans = stage_spans(durations, warmup_s=warmup_s, duration_s=duration_s)
    if math.isinf(spans[-1].end_s) and requests is None:
        raise ValueError("an open-loop group needs stop.duration_s, stop.requests or stages to end")
    rng = arrival_rng(seed, group_index)
    offsets: list[Offsets] = []
    stages: list[npt.NDArray[np.int32]] = []
    warmups: list[npt.NDArray[np.bool_]] = []
    measured = 0
    for span in spans:
        remaining = None if requests is None else requests - measured
        phase, n_warmup = arrival_phase(
            load.arrival,
            load.burstiness,
            (span.start_s, span.end_s),
            rates[span.stage],
            warmup_s,
            remaining,
            rng,
        )
        offsets.append(phase)
        stages.append(np.full(len(phase), span.stage, dtype=np.int32))
        warmups.append(np.arange(len(phase)) < n_warmup)
        measured += len(phase) - n_warmup
        if requests is not None and measured >= requests:
            break
    all_offsets = np.concatenate(offsets)
    return ArrivalSchedule(
        all_offsets,
        np.arange(len(all_offsets), dtype=np.int64),
        np.concatenate(stages),
        np.concatenate(warmups),
        first_client,
        clients,
    )


def open_arrivals(
    load: OpenLoadConfig,
    *,
    seed: int,
    group_index: int,
    first_client: int,
    clients: int,
    warmup_s: float,
    duration_s: float | None,
    requests: int | None,
) -> list[Arrival]:
    """:func:`open_schedule` as a list of :class:`Arrival` (for small schedules and tests)."""
    return open_schedule(
        load,
        seed=seed,
        group_index=group_index,
        first_client=first_client,
        clients=clients,
        warmup_s=warmup_s,
        duration_s=duration_s,
        requests=requests,
    ).to_list()


@overload
def worker_arrivals(arrivals: ArrivalSchedule, worker: int, workers: int) -> ArrivalSchedule: ...
@overload
def worker_arrivals(arrivals: Sequence[Arrival], worker: int, workers: int) -> list[Arrival]: ...
def worker_arrivals(
    arrivals: ArrivalSchedule | Sequence[Arrival], worker: int, workers: int
) -> ArrivalSchedule | list[Arrival]:
    """The arrivals sent by the clients that worker ``worker`` (of ``workers``) hosts."""
    if isinstance(arrivals, ArrivalSchedule):
        return arrivals.for_worker(worker, workers)
    if not 0 <= worker < workers:
        raise ValueError(f"worker index must be in 0..{workers - 1}, got {worker}")
    return [a for a in arrivals if a.client % workers == worker]


def schedule_for_group(config: ClusterConfig, group_index: int) -> ArrivalSchedule:
    """The arrival schedule of open-loop group ``group_index`` of a cluster."""
    group = config.groups[group_index]
    if not isinstance(group.load, OpenLoadConfig):
        raise ValueError(f"group {group.name!r} has a {group.load.kind} load, not an open one")
    return open_schedule(
        group.load,
        seed=config.seed,
        group_index=group_index,
        first_client=group_first_client(config, group_index),
        clients=group.clients,
        warmup_s=config.warmup_s,
        duration_s=group.duration_s,
        requests=group.stop.requests,
    )


def worker_schedule(
    config: ClusterConfig, group_index: int, worker: int, workers: int
) -> ArrivalSchedule:
    """Worker ``worker``'s slice of open-loop group ``group_index``'s arrival schedule."""
    return schedule_for_group(config, group_index).for_worker(worker, workers)
