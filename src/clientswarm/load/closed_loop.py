"""Closed-loop plans: when each client of a group may send, and how many requests it owes.

In a closed loop each client loops: send, wait for the answer, think (see
:mod:`clientswarm.load.think`), repeat. The plan is pure; the worker runs the loop against it.

- **Ramp-up**: local client ``i`` of ``n`` starts at ``ramp_up_s * i / n`` seconds after the
  cluster's start, whatever the warm-up (a ramp-up longer than ``warmup_s`` runs into the
  measured time). Without a ``ramp_up_s`` the clients are spread over
  :func:`default_ramp_up_s` (at most :data:`DEFAULT_RAMP_UP_S`): clients that all start at
  once against a server whose answers take the same time stay in lockstep, every send of a
  round at the same instant, which measures a burst the configuration did not ask for. An
  explicit ``ramp_up_s: 0`` still starts them together.
- **Stages**: stage ``k`` paces the window :func:`~clientswarm.load.stages.stage_spans` gives it
  (shifted by ``warmup_s``; warm-up uses stage 0's client count). In a stage, local clients with
  index ``< stage.clients`` are active. A client never starts an interaction outside its windows:
  when a window closes it finishes the interaction in flight, then waits for its next window (or
  stops when there is none). Without stages every client is active from its ramp-up start to the
  group's end.
- **Requests**: ``stop.requests`` counts the group's measured requests (sent at or after
  ``warmup_s``). They are split exactly over the clients: local client ``i`` owes
  ``requests // n + (1 if i < requests % n else 0)`` and stops once it has sent its quota; a
  client with a quota of 0 only takes part in warm-up. Warm-up requests do not count.
- The group ends at ``warmup_s + duration`` (``None`` when only requests bound it) or when every
  client has met its quota, whichever comes first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

from clientswarm.config.load import ClosedLoadConfig
from clientswarm.config.models import ClusterConfig
from clientswarm.load.stages import StageSpan, stage_at, stage_spans

DEFAULT_RAMP_UP_S = 1.0
"""The longest default spread of a closed-loop group's client starts (``ramp_up_s`` not given):
about one request of a chat model, so that the clients' sends are spread over a round."""

DEFAULT_RAMP_UP_SHARE = 0.1
"""The default spread is at most this share of the group's time (warm-up included)."""


def default_ramp_up_s(end_s: float) -> float:
    """The ramp-up of a closed-loop group without ``ramp_up_s``: :data:`DEFAULT_RAMP_UP_S`,
    or :data:`DEFAULT_RAMP_UP_SHARE` of the group's time ``end_s`` (from the start to its end,
    warm-up included; ``inf`` when only requests bound it) when that is shorter."""
    return min(DEFAULT_RAMP_UP_S, DEFAULT_RAMP_UP_SHARE * end_s)


class ClientWindow(NamedTuple):
    """Time ``[start_s, end_s)`` during which a client may start interactions.

    ``stage`` is the stage in which the window opens (consecutive windows are merged);
    ``end_s`` is ``math.inf`` when only a request count bounds the group.
    """

    start_s: float
    end_s: float
    stage: int


def request_quota(requests: int, clients: int, local_index: int) -> int:
    """Measured requests that local client ``local_index`` of ``clients`` owes."""
    if clients < 1:
        raise ValueError(f"clients must be >= 1, got {clients}")
    if not 0 <= local_index < clients:
        raise ValueError(f"local index must be in 0..{clients - 1}, got {local_index}")
    if requests < 0:
        raise ValueError(f"requests must be >= 0, got {requests}")
    return requests // clients + (1 if local_index < requests % clients else 0)


@dataclass(frozen=True)
class ClosedPlan:
    """The timing of one closed-loop group: ramp-up, stage spans and request quotas."""

    clients: int
    warmup_s: float
    ramp_up_s: float
    spans: tuple[StageSpan, ...]
    stage_clients: tuple[int, ...]
    requests: int | None

    def __post_init__(self) -> None:
        if self.clients < 1:
            raise ValueError(f"clients must be >= 1, got {self.clients}")
        if len(self.stage_clients) < len(self.spans):
            raise ValueError("every stage span needs a client count")
        if math.isinf(self.spans[-1].end_s) and self.requests is None:
            raise ValueError(
                "a closed-loop group needs stop.duration_s, stop.requests or stages to end"
            )

    @property
    def end_s(self) -> float | None:
        """Offset at which the group's time runs out; ``None`` when only requests bound it."""
        end = self.spans[-1].end_s
        return None if math.isinf(end) else end

    @property
    def stages(self) -> int:
        """Number of stages that run."""
        return len(self.spans)

    def _check_client(self, local_index: int) -> None:
        if not 0 <= local_index < self.clients:
            raise ValueError(f"local index must be in 0..{self.clients - 1}, got {local_index}")

    def start_offset_s(self, local_index: int) -> float:
        """When local client ``local_index`` may first send (its ramp-up offset)."""
        self._check_client(local_index)
        return self.ramp_up_s * local_index / self.clients

    def active_clients(self, stage: int) -> int:
        """How many clients are active in ``stage``."""
        return self.stage_clients[stage]

    def is_active(self, local_index: int, stage: int) -> bool:
        """Whether local client ``local_index`` may send during ``stage``."""
        return local_index < self.stage_clients[stage]

    def client_windows(self, local_index: int) -> list[ClientWindow]:
        """The windows in which local client ``local_index`` may start interactions."""
        start = self.start_offset_s(local_index)
        windows: list[ClientWindow] = []
        for span in self.spans:
            if not self.is_active(local_index, span.stage):
                continue
            opens = max(span.start_s, start)
            if opens >= span.end_s:
                continue
            if windows and windows[-1].end_s == opens:
                windows[-1] = windows[-1]._replace(end_s=span.end_s)
            else:
                windows.append(ClientWindow(opens, span.end_s, span.stage))
        return windows

    def stage_at(self, offset_s: float) -> int:
        """The stage that paces the group at ``offset_s``."""
        return stage_at(self.spans, offset_s)

    def is_warmup(self, offset_s: float) -> bool:
        """Whether a send at ``offset_s`` is warm-up (excluded from statistics)."""
        return offset_s < self.warmup_s

    def request_quota(self, local_index: int) -> int | None:
        """Measured requests that local client ``local_index`` owes; ``None`` when unbounded."""
        self._check_client(local_index)
        if self.requests is None:
            return None
        return request_quota(self.requests, self.clients, local_index)


def closed_plan(
    load: ClosedLoadConfig,
    *,
    clients: int,
    warmup_s: float,
    duration_s: float | None,
    requests: int | None,
) -> ClosedPlan:
    """The plan of a closed-loop group of ``clients`` clients.

    ``duration_s`` is the measured duration (``None``: the sum of the stages, if any) and
    ``requests`` the group's measured-request budget; at least one of them must bound the
    group, else ``ValueError``.
    """
    if requests is not None and requests < 1:
        raise ValueError(f"requests must be >= 1, got {requests}")
    for stage in load.stages:
        if stage.clients > clients:
            raise ValueError(
                f"a stage asks for {stage.clients} clients but the group has only {clients}"
            )
    spans = stage_spans(
        [s.duration_s for s in load.stages], warmup_s=warmup_s, duration_s=duration_s
    )
    stage_clients = tuple(s.clients for s in load.stages) if load.stages else (clients,)
    ramp_up_s = load.ramp_up_s
    if ramp_up_s is None:
        ramp_up_s = default_ramp_up_s(spans[-1].end_s)
    return ClosedPlan(
        clients=clients,
        warmup_s=warmup_s,
        ramp_up_s=ramp_up_s,
        spans=tuple(spans),
        stage_clients=stage_clients,
        requests=requests,
    )


def plan_for_group(config: ClusterConfig, group_index: int) -> ClosedPlan:
    """The plan of closed-loop group ``group_index`` of a cluster."""
    group = config.groups[group_index]
    if not isinstance(group.load, ClosedLoadConfig):
        raise ValueError(f"group {group.name!r} has a {group.load.kind} load, not a closed one")
    return closed_plan(
        group.load,
        clients=group.clients,
        warmup_s=config.warmup_s,
        duration_s=group.duration_s,
        requests=group.stop.requests,
    )
