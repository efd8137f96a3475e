"""An open-loop group's arrivals, held as numpy arrays, and their split across workers.

A one-hour run at 1000 requests per second is 3.6 million arrivals; an :class:`ArrivalSchedule`
holds them in four flat arrays (21 bytes an arrival) instead of millions of objects.
Arrival ``j`` of a group (``index``) belongs to the group's client ``j % clients`` (local index),
that is cluster-wide client ``first_client + j % clients``, and client ``c`` lives on worker
``c % workers``. A worker's slice is therefore the arrivals of its own clients, the slices are
disjoint, and their union is exactly the group's schedule.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

#: Rows that :meth:`ArrivalSchedule.rows` converts to Python objects at a time.
ROW_CHUNK = 4096


@dataclass(frozen=True, slots=True)
class Arrival:
    """One scheduled send of an open-loop group.

    ``offset_s`` is seconds after the cluster's start, ``index`` the arrival's position in the
    group's process, ``client`` the cluster-wide id of the client that sends it, ``stage`` the
    stage that paces it (warm-up arrivals belong to stage 0) and ``warmup`` whether its sample
    is excluded from statistics.
    """

    offset_s: float
    index: int
    client: int
    stage: int
    warmup: bool


def _frozen(array: npt.NDArray[np.generic]) -> None:
    array.setflags(write=False)


@dataclass(frozen=True, eq=False)
class ArrivalSchedule:
    """Arrivals of one group (or one worker's slice of it), sorted by ``offset_s``.

    ``index`` holds each arrival's position in the whole group's process, so a slice keeps the
    numbering of the group. The arrays are read-only.
    """

    offsets_s: npt.NDArray[np.float64]
    index: npt.NDArray[np.int64]
    stage: npt.NDArray[np.int32]
    warmup: npt.NDArray[np.bool_]
    first_client: int
    clients: int

    def __post_init__(self) -> None:
        n = len(self.offsets_s)
        if not len(self.index) == len(self.stage) == len(self.warmup) == n:
            raise ValueError("offsets_s, index, stage and warmup must have the same length")
        if self.clients < 1:
            raise ValueError(f"clients must be >= 1, got {self.clients}")
        for array in (self.offsets_s, self.index, self.stage, self.warmup):
            _frozen(array)

    @classmethod
    def empty(cls, first_client: int, clients: int) -> ArrivalSchedule:
        """A schedule with no arrivals."""
        return cls(
            np.empty(0, np.float64),
            np.empty(0, np.int64),
            np.empty(0, np.int32),
            np.empty(0, np.bool_),
            first_client,
            clients,
        )

    def __len__(self) -> int:
        return len(self.offsets_s)

    @property
    def client(self) -> npt.NDArray[np.int64]:
        """Cluster-wide id of the client that sends each arrival."""
        return self.first_client + self.index % self.clients

    @property
    def warmup_count(self) -> int:
        """Number of warm-up arrivals."""
        return int(np.count_nonzero(self.warmup))

    @property
    def measured_count(self) -> int:
        """Number of measured (non-warm-up) arrivals."""
        return len(self) - self.warmup_count

    @property
    def end_s(self) -> float | None:
        """Offset of the last arrival, ``None`` when there is none."""
        return float(self.offsets_s[-1]) if len(self) else None

    def __getitem__(self, position: int) -> Arrival:
        index = int(self.index[position])
        return Arrival(
            offset_s=float(self.offsets_s[position]),
            index=index,
            client=self.first_client + index % self.clients,
            stage=int(self.stage[position]),
            warmup=bool(self.warmup[position]),
        )

    def rows(self, chunk: int = ROW_CHUNK) -> Iterator[tuple[float, int, int, int, bool]]:
        """Yield ``(offset_s, index, client, stage, warmup)`` per arrival, converting a chunk
        at a time."""
        for start in range(0, len(self), chunk):
            part = slice(start, start + chunk)
            indices = self.index[part]
            clients = self.first_client + indices % self.clients
            yield from zip(
                self.offsets_s[part].tolist(),
                indices.tolist(),
                clients.tolist(),
                self.stage[part].tolist(),
                self.warmup[part].tolist(),
                strict=True,
            )

    def __iter__(self) -> Iterator[Arrival]:
        for start in range(0, len(self), ROW_CHUNK):
            part = slice(start, start + ROW_CHUNK)
            indices = self.index[part].tolist()
            for offset_s, index, stage, warmup in zip(
                self.offsets_s[part].tolist(),
                indices,
                self.stage[part].tolist(),
                self.warmup[part].tolist(),
                strict=True,
            ):
                client = self.first_client + index % self.clients
                yield Arrival(offset_s, index, client, stage, warmup)

    def to_list(self) -> list[Arrival]:
        """Every arrival as an :class:`Arrival` (fine for small schedules and tests)."""
        return list(self)

    def take(self, selector: npt.NDArray[np.bool_] | npt.NDArray[np.intp]) -> ArrivalSchedule:
        """The arrivals picked by a boolean mask or sorted positions, in schedule order."""
        return ArrivalSchedule(
            self.offsets_s[selector],
            self.index[selector],
            self.stage[selector],
            self.warmup[selector],
            self.first_client,
            self.clients,
        )

    def workers_of_arrivals(self, workers: int) -> npt.NDArray[np.int64]:
        """Index of the worker that sends each arrival."""
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        return self.client % workers

    def for_worker(self, worker: int, workers: int) -> ArrivalSchedule:
        """The arrivals of the clients that worker ``worker`` (of ``workers``) hosts."""
        if not 0 <= worker < workers:
            raise ValueError(f"worker index must be in 0..{workers - 1}, got {worker}")
        return self.take(self.workers_of_arrivals(workers) == worker)

    def split(self, workers: int) -> list[ArrivalSchedule]:
        """Every worker's slice at once: ``split(w)[i] == for_worker(i, w)``."""
        owner = self.workers_of_arrivals(workers)
        order = np.argsort(owner, kind="stable")  # stable keeps each slice sorted by time
        bounds = np.cumsum(np.bincount(owner, minlength=workers))[:-1]
        return [self.take(part) for part in np.split(order, bounds)]
