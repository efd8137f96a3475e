"""The spawner seam: render a submission (pure), submit it (thin), parse what comes back.

A spawner starts, watches and stops the workers of one cluster. Every worker it starts knows
only the service URL, the cluster id, its index and the cluster token (handed through the
environment, never on a command line); everything else it pulls from the service.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel, ValidationError

from clientswarm.errors import SpawnerError
from clientswarm.protocol.internal import TOKEN_ENV


@dataclass(frozen=True)
class ClusterLaunch:
    """What a spawner needs to start the workers of one cluster."""

    cluster_id: str
    workers: int
    service_url: str
    token: str = field(repr=False)
    log_dir: str
    python: str
    options: dict[str, Any] = field(default_factory=dict)
    env: Mapping[str, str] | None = field(default=None, repr=False)
    """The environment workers start with, besides :meth:`worker_env` (the operator's policy
    decides it: :meth:`OperatorPolicy.worker_environment`); None: this process's own."""

    def worker_env(self) -> dict[str, str]:
        """Environment variables every worker gets (the token among them)."""
        return {TOKEN_ENV: self.token}

    def base_env(self) -> dict[str, str]:
        """The environment of the workers without the token: :attr:`env`, else this process's
        own minus the service's API token."""
        if self.env is not None:
            return dict(self.env)
        return {k: v for k, v in os.environ.items() if k != "CLIENTSWARM_API_TOKEN"}

    def full_env(self) -> dict[str, str]:
        """Everything a worker process starts with: :meth:`base_env` and the token."""
        return {**self.base_env(), **self.worker_env()}

    def worker_args(self, index: int | str) -> list[str]:
        """Arguments of ``python -m clientswarm.worker`` for worker ``index``."""
        return [
            "--service",
            self.service_url,
            "--cluster",
            self.cluster_id,
            "--index",
            str(index),
        ]


Options = TypeVar("Options", bound=BaseModel)


def parse_options(launch: ClusterLaunch, model: type[Options], kind: str, what: str) -> Options:
    """The spawner options of ``launch`` (a dump of ``model``); SpawnerError naming each bad one."""
    options = {**launch.options, "kind": kind, "workers": launch.workers}
    try:
        return model.model_validate(options)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'spawner'}: {e['msg']}" for e in exc.errors()
        )
        raise SpawnerError(
            f"invalid {what} options for cluster {launch.cluster_id}: {problems}"
        ) from None


@dataclass(frozen=True)
class WorkerExit:
    """A worker process that has ended, as the spawner saw it."""

    index: int
    exit_code: int | None
    reason: str
    log_tail: str = ""
    cancelled: bool = False
    """True when the scheduler cancelled it (e.g. ``scancel`` outside the service)."""


class Spawner(Protocol):
    """Starts, watches and stops the workers of clusters."""

    kind: str

    def render(self, launch: ClusterLaunch) -> str:
        """Exactly what :meth:`submit` would start, for review (secrets redacted). Pure."""
        ...

    async def submit(self, launch: ClusterLaunch) -> dict[str, Any]:
        """Start every worker; return the state needed to follow them (stored, JSON-ready)."""
        ...

    async def poll(self, cluster_id: str, state: dict[str, Any]) -> list[WorkerExit]:
        """Workers of ``cluster_id`` that have ended since they were started."""
        ...

    async def stop(self, cluster_id: str, state: dict[str, Any], grace_s: float) -> None:
        """Stop every worker still running: politely, then by force after ``grace_s``."""
        ...

    async def release(self, cluster_id: str, state: dict[str, Any]) -> None:
        """The cluster is over (not stopped): remove what of it is left, e.g. pods that never
        started. Forget it otherwise."""
        ...
