"""The ``slurm`` spawner: the workers of a cluster are the tasks of one Slurm job array.

``submit`` renders the batch script, writes it to ``<log_dir>/clientswarm.sbatch`` and submits
it through the command-line tools or slurmrestd; its :class:`SlurmHandle` holds the array's job
id, so a restarted service follows and stops the same array. ``poll`` asks Slurm at most every
``query_interval_s`` (the service asks every half second; slurmctld need not answer that
often) and reports each task that has ended with its Slurm state, reason, exit code and the
tail of its output file.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from clientswarm.config.spawners import SlurmRestConfig, SlurmSpawnerConfig
from clientswarm.errors import SpawnerError
from clientswarm.protocol.spawning import ClusterLaunch, SpawnerHandle, WorkerExit, options_of
from clientswarm.spawners.local import log_path, log_tail
from clientswarm.spawners.slurm.cli import SlurmCli
from clientswarm.spawners.slurm.render import (
    SCRIPT_NAME,
    export_option,
    job_environment,
    log_dir_of,
    render_sbatch,
    render_submission,
    rest_job,
    rest_worker_env,
)
from clientswarm.spawners.slurm.rest import SlurmRest
from clientswarm.spawners.slurm.states import TaskStatus, ended_tasks

STOP_POLL_S = 0.5


class SlurmBackend(Protocol):
    """Reads and cancels job arrays (both backends; they differ in how they submit)."""

    via: str

    async def tasks(self, job_id: str) -> dict[int, TaskStatus]:
        """Tasks by index; empty when Slurm no longer knows the job."""
        ...

    async def cancel(self, job_id: str) -> None:
        """Cancel the whole array."""
        ...


class SlurmHandle(SpawnerHandle):
    """One cluster's job array: its job id and size, where its output goes, and how Slurm was
    reached (the slurmrestd endpoint when through it)."""

    job_id: str
    workers: int
    log_dir: str
    submit_via: Literal["cli", "rest"] = "cli"
    rest: SlurmRestConfig | None = None

    @property
    def following(self) -> bool:
        """Whether Slurm gave the array a job id."""
        return bool(self.job_id)


def _write_script(log_dir: Path, script: str) -> None:
    log_dir.mkdir(parents=True, exist_ok=True)
    (log_dir / SCRIPT_NAME).write_text(script)


@dataclass
class _ArrayView:
    """What this service instance last learnt about one job array."""

    queried_at: float = float("-inf")
    tasks: dict[int, TaskStatus] = field(default_factory=dict)
    ended: dict[int, WorkerExit] = field(default_factory=dict)


class SlurmSpawner:
    """Runs the workers of a cluster as the tasks of one Slurm job array."""

    kind = "slurm"

    def __init__(
        self,
        *,
        cli: SlurmCli | None = None,
        query_interval_s: float = 2.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cli = cli or SlurmCli()
        self.query_interval_s = query_interval_s
        self._monotonic = monotonic
        self._views: dict[str, _ArrayView] = {}

    def render(self, launch: ClusterLaunch) -> str:
        """How the array is submitted (token redacted) and its batch script. Pure."""
        return render_submission(launch, options_of(launch, SlurmSpawnerConfig))

    async def submit(self, launch: ClusterLaunch) -> SlurmHandle:
        """Submit the array; the handle holds its job id and how to reach Slurm again."""
        config = options_of(launch, SlurmSpawnerConfig)
        log_dir = Path(log_dir_of(launch, config))
        script = render_sbatch(launch, config)
        try:
            await asyncio.to_thread(_write_script, log_dir, script)
        except OSError as exc:
            raise SpawnerError(
                f"could not write the batch script of cluster {launch.cluster_id} to {log_dir}: "
                f"{exc}; log_dir must be a writable folder that the compute nodes share"
            ) from exc
        rest = config.rest if config.submit_via == "rest" else None
        if rest is not None:
            env = job_environment(launch.token, rest_worker_env(launch, os.environ))
            job = rest_job(launch, config, env, rest.api_version)
            job_id = await SlurmRest(rest).submit(script, job)
        else:
            job_id = await self.cli.submit(
                log_dir / SCRIPT_NAME, launch.full_env(), export_option(launch)
            )
        return SlurmHandle(
            job_id=job_id,
            workers=launch.workers,
            log_dir=str(log_dir),
            submit_via="rest" if rest is not None else "cli",
            rest=rest,
        )

    def restore(self, stored: Mapping[str, Any]) -> SlurmHandle:
        """The handle of a restarted service, from its JSON form."""
        return SlurmHandle.from_json(stored)

    def _backend(self, handle: SlurmHandle) -> SlurmBackend:
        return self.cli if handle.rest is None else SlurmRest(handle.rest)

    async def poll(self, cluster_id: str, handle: SlurmHandle) -> list[WorkerExit]:
        """Workers whose array task has ended: Slurm state, reason, exit code, output tail."""
        job_id, workers = handle.job_id, handle.workers
        if not job_id:
            return []
        view = self._views.setdefault(job_id, _ArrayView())
        now = self._monotonic()
        if len(view.ended) < workers and now - view.queried_at >= self.query_interval_s:
            view.queried_at = now  # a failing query is not retried sooner either
            view.tasks = await self._backend(handle).tasks(job_id)
            for end in ended_tasks(view.tasks, job_id, workers):
                if end.index not in view.ended:
                    tail = log_tail(log_path(handle.log_dir, end.index))
                    view.ended[end.index] = WorkerExit(
                        end.index, end.exit_code, end.reason, tail, cancelled=end.cancelled
                    )
        return [view.ended[index] for index in sorted(view.ended)]

    async def stop(self, cluster_id: str, handle: SlurmHandle, grace_s: float) -> None:
        """Cancel the array, then wait up to ``grace_s`` for Slurm to show every task ended.

        ``scancel`` (and slurmrestd's DELETE) already escalate: SIGTERM to the worker, SIGKILL
        after the cluster's ``KillWait``.
        """
        job_id, workers = handle.job_id, handle.workers
        if not job_id:
            return
        backend = self._backend(handle)
        await backend.cancel(job_id)
        deadline = self._monotonic() + grace_s
        while True:
            with contextlib.suppress(SpawnerError):
                tasks = await backend.tasks(job_id)
                if len(ended_tasks(tasks, job_id, workers)) >= workers:
                    break
            if self._monotonic() >= deadline:
                break
            await asyncio.sleep(STOP_POLL_S)
        self._views.pop(job_id, None)  # the next poll asks Slurm at once

    async def release(self, cluster_id: str, handle: SlurmHandle) -> None:
        """Forget the array. A task Slurm starts after the cluster ended is refused by the
        service and exits at once."""
        self._views.pop(handle.job_id, None)
