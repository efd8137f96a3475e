"""The spawner seam: render a submission (pure), submit it (thin), follow what it started.

A spawner starts, watches and stops the workers of one cluster. Every worker it starts knows
only the service URL, the cluster id, its index and the cluster token (handed through the
environment, never on a command line); everything else it pulls from the service.

A spawner gets its options as the validated model of its ``kind`` (:class:`ClusterLaunch`'s
``options``) and answers :meth:`Spawner.submit` with a :class:`SpawnerHandle` of its own: a
small frozen model that only it looks inside. The service keeps the handle's JSON form in the
store and hands the handle back to every later call; after a restart it asks the spawner to
:meth:`~Spawner.restore` it from that JSON.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, Self, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from clientswarm.config.models import SpawnerConfig
from clientswarm.errors import SpawnerError
from clientswarm.protocol.internal import TOKEN_ENV


@dataclass(frozen=True)
class ClusterLaunch:
    """What a spawner needs to start the workers of one cluster."""

    cluster_id: str
    service_url: str
    token: str = field(repr=False)
    log_dir: str
    python: str
    options: SpawnerConfig
    """The spawner's options, validated (a preset merged in); ``options.workers`` workers."""
    env: Mapping[str, str] | None = field(default=None, repr=False)
    """The environment workers start with, besides :meth:`worker_env` (the operator's policy
    decides it: :meth:`OperatorPolicy.worker_environment`); None: this process's own."""
    sample_dir: str | None = None
    """``sample_path: files``: the service's samples directory (absolute), where the workers
    write their samples; a spawner whose workers do not share the service's disk mounts shared
    storage there (Kubernetes: ``samples_claim``). None: the workers post their samples."""

    @property
    def workers(self) -> int:
        """How many workers to start."""
        return self.options.workers

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


def options_of(launch: ClusterLaunch, model: type[Options]) -> Options:
    """The options of ``launch`` as ``model`` (the spawner's own kind); a SpawnerError when
    they are another kind's (the service picked the wrong spawner)."""
    if not isinstance(launch.options, model):
        raise SpawnerError(
            f"cluster {launch.cluster_id} has {launch.options.kind} spawner options, not "
            f"{model.__name__}: it was handed to the wrong spawner"
        )
    return launch.options


class SpawnerHandle(BaseModel):
    """What a spawner's :meth:`~Spawner.submit` returned: all it needs to follow and stop
    those workers again, even from a restarted service. Only that spawner looks inside; the
    service asks it (:attr:`following`) and keeps its JSON form (:meth:`to_json`)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    @property
    def following(self) -> bool:
        """Whether it started anything the service must follow and stop."""
        return True

    def to_json(self) -> dict[str, Any]:
        """The JSON form the store keeps."""
        return self.model_dump(mode="json")

    @classmethod
    def from_json(cls, stored: Mapping[str, Any]) -> Self:
        """The handle again from :meth:`to_json`'s form; a SpawnerError when it is not one."""
        try:
            return cls.model_validate(dict(stored))
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'handle'}: {e['msg']}"
                for e in exc.errors()
            )
            raise SpawnerError(
                f"the stored {cls.__name__} cannot be read back ({problems}): its workers "
                "cannot be followed"
            ) from None


Handle = TypeVar("Handle", bound=SpawnerHandle)


@dataclass(frozen=True)
class WorkerExit:
    """A worker process that has ended, as the spawner saw it."""

    index: int
    exit_code: int | None
    reason: str
    log_tail: str = ""
    cancelled: bool = False
    """True when the scheduler cancelled it (e.g. ``scancel`` outside the service)."""


class Spawner(Protocol[Handle]):
    """Starts, watches and stops the workers of clusters."""

    kind: str

    def render(self, launch: ClusterLaunch) -> str:
        """Exactly what :meth:`submit` would start, for review (secrets redacted). Pure."""
        ...

    async def submit(self, launch: ClusterLaunch) -> Handle:
        """Start every worker; return the handle to follow them by."""
        ...

    def restore(self, stored: Mapping[str, Any]) -> Handle:
        """A handle again from its JSON form (:meth:`SpawnerHandle.to_json`), for a restarted
        service; SpawnerError when it is not one of this spawner's."""
        ...

    async def poll(self, cluster_id: str, handle: Handle) -> list[WorkerExit]:
        """Workers of ``cluster_id`` that have ended since they were started."""
        ...

    async def stop(self, cluster_id: str, handle: Handle, grace_s: float) -> None:
        """Stop every worker still running: politely, then by force after ``grace_s``."""
        ...

    async def release(self, cluster_id: str, handle: Handle) -> None:
        """The cluster is over (not stopped): remove what of it is left, e.g. pods that never
        started. Forget it otherwise."""
        ...


@dataclass(frozen=True)
class Submitted:
    """Workers started for a cluster the service has yet to create (``clientswarm run``
    starts them while its service loads): the launch they were given and the handle of the
    spawner that started them. The service creates the cluster with that id and token."""

    launch: ClusterLaunch
    handle: SpawnerHandle


__all__ = [
    "ClusterLaunch",
    "Spawner",
    "SpawnerHandle",
    "Submitted",
    "WorkerExit",
    "options_of",
]
