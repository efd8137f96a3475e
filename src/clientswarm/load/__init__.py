"""Load planning: when each client of a cluster sends. Pure: no I/O, no asyncio.

Semantics shared by every module here:

- **Time** is in seconds relative to the cluster's shared start time. The first ``warmup_s``
  seconds are warm-up: samples scheduled then are flagged warm-up and excluded from statistics.
- **Duration**: a group's ``stop.duration_s`` (or the sum of its stages' durations when it is
  absent) is the *measured* duration, so the group runs from 0 to ``warmup_s + duration``
  (:func:`group_end_s`). ``stop.requests`` counts measured (non-warm-up) requests of the whole
  group. When both are given, whichever comes first stops the group.
- **Stages** are laid end to end after the warm-up, which is paced like stage 0; a
  ``stop.duration_s`` longer than the stages extends the last one, a shorter one cuts them
  (:mod:`clientswarm.load.stages`).
- **Clients** are numbered cluster-wide, group after group; client ``c`` lives on worker
  ``c % workers`` (:mod:`clientswarm.load.clients`).
- **Open loop**: a group's arrival process is generated once from (cluster seed, group index);
  arrival ``j`` is sent by the group's client ``j % clients``, so each worker keeps its clients'
  arrivals and the fleet's union is the whole process (:mod:`clientswarm.load.open_loop`).
  ``max_concurrency`` is split across workers by :func:`worker_concurrency`.
- **Closed loop**: clients ramp up (spread over up to 1 s when ``ramp_up_s`` is not given),
  are active in the stages that include them, and owe an exact share of ``stop.requests``
  (:mod:`clientswarm.load.closed_loop`); they think between interactions
  (:mod:`clientswarm.load.think`).
- **Connection failures**: a client whose request failed to connect waits before its next send
  (50 ms doubling to 5 s, jittered, reset by the first answer); scheduled times never move, so
  the wait shows as schedule lag (:mod:`clientswarm.load.backoff`).
"""

from clientswarm.load.backoff import (
    BACKOFF_INITIAL_S,
    BACKOFF_MAX_S,
    ConnectBackoff,
    backoff_rng,
    failed_to_connect,
)
from clientswarm.load.clients import (
    WorkerClient,
    client_ids,
    clients_of_worker,
    first_client,
    group_of_client,
    hosted_clients,
    worker_concurrency,
    worker_of_client,
)
from clientswarm.load.closed_loop import (
    DEFAULT_RAMP_UP_S,
    ClientWindow,
    ClosedPlan,
    closed_plan,
    default_ramp_up_s,
    plan_for_group,
    request_quota,
)
from clientswarm.load.open_loop import (
    arrival_rng,
    open_arrivals,
    open_schedule,
    schedule_for_group,
    worker_arrivals,
    worker_schedule,
)
from clientswarm.load.schedule import Arrival, ArrivalSchedule
from clientswarm.load.stages import (
    StageSpan,
    group_end_s,
    measured_duration_s,
    stage_at,
    stage_spans,
)
from clientswarm.load.think import client_rng, mean_think_s, think_sampler

__all__ = [
    "BACKOFF_INITIAL_S",
    "BACKOFF_MAX_S",
    "DEFAULT_RAMP_UP_S",
    "Arrival",
    "ArrivalSchedule",
    "ClientWindow",
    "ClosedPlan",
    "ConnectBackoff",
    "StageSpan",
    "WorkerClient",
    "arrival_rng",
    "backoff_rng",
    "client_ids",
    "client_rng",
    "clients_of_worker",
    "closed_plan",
    "default_ramp_up_s",
    "failed_to_connect",
    "first_client",
    "group_end_s",
    "group_of_client",
    "hosted_clients",
    "mean_think_s",
    "measured_duration_s",
    "open_arrivals",
    "open_schedule",
    "plan_for_group",
    "request_quota",
    "schedule_for_group",
    "stage_at",
    "stage_spans",
    "think_sampler",
    "worker_arrivals",
    "worker_concurrency",
    "worker_of_client",
    "worker_schedule",
]
