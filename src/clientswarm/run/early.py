"""Early start: the clients of ``clientswarm run`` start before its in-process service is up.

The service's code (FastAPI, SQLAlchemy, the statistics) takes most of a second to load, while
a standby worker (:mod:`clientswarm.spawners.standby`) is ready in about half that. Since a
local run knows everything a worker needs once its configuration is valid, it does not make
the workers wait for the service:

1. it binds the service's socket (connections queue there until the service accepts them)
   and picks the cluster's id and token;
2. it hands each standby its orders with its assignment, all but the start time;
3. once every standby has loaded and answered, it gives them all the same start time,
   :func:`local_start_margin_s` ahead, and their clients start;
4. meanwhile the service loads and, before it accepts its first request, creates the cluster
   with that id, token and start time (:class:`~clientswarm.service.state.ClusterPreset`);
   the workers' registrations, samples and heartbeats were waiting on the socket.

Each worker registers as usual and checks that the service confirms its start time. If a
standby dies or takes too long, every standby is told to wait instead and the run goes on the
ordinary way. Runs of other spawners, ``--mock`` runs (the target's URL is known only once the
simulator is up) and runs with too few standbys do not start early.
"""

from __future__ import annotations

import secrets
import socket
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from clientswarm.config.models import ClusterConfig
from clientswarm.config.paths import FileScope
from clientswarm.errors import ConfigError
from clientswarm.protocol.assignment import Assignment
from clientswarm.protocol.spawning import ClusterLaunch
from clientswarm.service.settings import ServiceSettings
from clientswarm.service.sockets import bind, url_of
from clientswarm.service.usercode import place_user_code
from clientswarm.spawners.local import log_path
from clientswarm.spawners.standby import EarlyStart, StandbyWorkers

if TYPE_CHECKING:
    from clientswarm.service.state import ClusterPreset

LOCAL_MARGIN_S = 0.05
"""The start margin of a cluster whose workers run on this machine, before client set-up."""

LOCAL_MARGIN_PER_CLIENT_S = 20e-6
"""What a worker takes to set up one client, added to the margin for the busiest worker."""


def local_start_margin_s(config: ClusterConfig) -> float:
    """The shared start time's margin when every worker runs here: the workers learn it at
    once over loopback (a held assignment call, or a line on a standby's stdin), so the margin
    only has to cover setting up the clients (0.2 s, the service's default, is for workers on
    other nodes)."""
    workers = config.spawner.workers
    clients = sum(group.clients for group in config.groups)
    return LOCAL_MARGIN_S + LOCAL_MARGIN_PER_CLIENT_S * -(-clients // workers)


@dataclass
class EarlyPlan:
    """An early start under way: what the service must adopt when it comes up."""

    cluster_id: str
    token: str
    sock: socket.socket
    """The service's socket, bound and queueing connections."""
    handshake: EarlyStart

    def preset(self) -> ClusterPreset:
        """The cluster's id, token and start time (``None`` when the standbys were told to
        wait); waits for the handshake if it is still going on."""
        from clientswarm.service.state import ClusterPreset

        return ClusterPreset(self.cluster_id, self.token, self.handshake.start_ns())


def start_early(
    config: ClusterConfig,
    *,
    base_dir: Path,
    output_dir: Path,
    host: str,
    port: int,
    standby: StandbyWorkers | None,
) -> EarlyPlan | None:
    """Hand the standbys their assignments now (see the module docstring); ``None`` when this
    run does not start early (it then binds nothing and hands nothing)."""
    workers = config.spawner.workers
    if standby is None or config.spawner.kind != "local" or len(standby) < workers:
        return None
    settings = ServiceSettings(data_dir=output_dir)  # what run's service has, where it matters
    try:  # what the service will do to the configuration when it creates the cluster
        placed = place_user_code(
            config,
            files=FileScope.anywhere(base_dir),
            allow_inline=settings.policy.allow_inline_code,
        )
    except ConfigError:
        return None  # the service says why
    sock = bind(host, port)
    cluster_id = uuid.uuid4().hex[:12]
    token = secrets.token_urlsafe(32)
    log_dir = settings.log_dir(cluster_id)
    log_dir.mkdir(parents=True, exist_ok=True)
    launch = ClusterLaunch(
        cluster_id=cluster_id,
        workers=workers,
        service_url=url_of(sock),
        token=token,
        log_dir=str(log_dir),
        python=settings.python,
        options=config.spawner.model_dump(),
    )
    assignments = [
        Assignment(
            cluster_id=cluster_id,
            worker=index,
            workers=workers,
            start_ns=0,  # given once all are ready
            config=placed,
            base_dir=str(base_dir),
        ).model_dump(mode="json")
        for index in range(workers)
    ]
    logs = [log_path(log_dir, index) for index in range(workers)]
    handshake = standby.start_early(launch, assignments, logs, local_start_margin_s(config))
    if handshake is None:
        sock.close()
        return None
    return EarlyPlan(cluster_id, token, sock, handshake)


__all__ = [
    "LOCAL_MARGIN_PER_CLIENT_S",
    "LOCAL_MARGIN_S",
    "EarlyPlan",
    "local_start_margin_s",
    "start_early",
]
