"""The ``slurm`` spawner: the workers of a cluster are the tasks of one Slurm job array.

``submit`` renders the batch script, writes it to ``<log_dir>/clientswarm.sbatch`` and submits
it through the command-line tools or slurmrestd; the stored state holds the array's job id, so a
restarted service follows and stops the same array. ``poll`` asks Slurm at most every
``query_interval_s`` (the service asks every half second; slurmctld need not answer that
often) and reports each task that has ended with its Slurm state, reason, exit code and the
tail of its output file.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from clientswarm.config.spawners import SlurmRestConfig, SlurmSpawnerConfig
from clientswarm.errors import SpawnerError
from clientswarm.protocol.spawning import ClusterLaunch, WorkerExit
from clientswarm.protocol.spawning import parse_options as spawner_options
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


def parse_options(launch: ClusterLaunch) -> SlurmSpawnerConfig:
    """The Slurm options of ``launch`` (a dump of :class:`SlurmSpawnerConfig`)."""
    return spawner_options(launch, SlurmSpawnerConfig, "slurm", "Slurm")


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
        return render_submission(launch, parse_options(launch))

    async def submit(self, launch: ClusterLaunch) -> dict[str, Any]:
        """Submit the array; the state holds its job id and how to reach Slurm again."""
        config = parse_options(launch)
        log_dir = Path(log_dir_of(launch, config))
        script = render_sbatch(launch, config)
        try:
            await asyncio.to_thread(_write_script, log_dir, script)
        except OSError as exc:
            raise SpawnerError(
                f"could not write the batch script of cluster {launch.cluster_id} to {log_dir}: "
                f"{exc}; log_dir must be a writable folder that the compute nodes share"
            ) from exc
        rest_state: dict[str, Any] | None = None
        if config.submit_via == "rest" and config.rest is not None:
            rest = SlurmRest(config.rest)
            env = job_environment(launch.token, rest_worker_env(launch, os.environ))
            job = rest_job(launch, config, env, config.rest.api_version)
            job_id = await rest.submit(script, job)
            rest_state = config.rest.model_dump()
        else:
            job_id = await self.cli.submit(
                log_dir / SCRIPT_NAME, launch.full_env(), export_option(launch)
            )
        return {
            "job_id": job_id,
            "workers": launch.workers,
            "log_dir": str(log_dir),
            "submit_via": config.submit_via,
            "rest": rest_state,
        }

    def _backend(self, state: dict[str, Any]) -> SlurmBackend:
        if state.get("submit_via") == "rest":
            return SlurmRest(SlurmRestConfig.model_validate(state.get("rest") or {}))
        return self.cli

    async def poll(self, cluster_id: str, state: dict[str, Any]) -> list[WorkerExit]:
        """Workers whose array task has ended: Slurm state, reason, exit code, output tail."""
        job_id = str(state.get("job_id") or "")
        if not job_id:
            return []
        workers = int(state.get("workers", 0))
        view = self._views.setdefault(job_id, _ArrayView())
        now = self._monotonic()
        if len(view.ended) < workers and now - view.queried_at >= self.query_interval_s:
            view.queried_at = now  # a failing query is not retried sooner either
            view.tasks = await self._backend(state).tasks(job_id)
            log_dir = str(state.get("log_dir", "."))
            for end in ended_tasks(view.tasks, job_id, workers):
                if end.index not in view.ended:
                    tail = log_tail(log_path(log_dir, end.index))
                    view.ended[end.index] = WorkerExit(
                        end.index, end.exit_code, end.reason, tail, cancelled=end.cancelled
                    )
        return [view.ended[index] for index in sorted(view.ended)]

    async def stop(self, cluster_id: str, state: dict[str, Any], grace_s: float) -> None:
        """Cancel the array, then wait up to ``grace_s`` for Slurm to show every task ended.

        ``scancel`` (and slurmrestd's DELETE) already escalate: SIGTERM to the worker, SIGKILL
        after the cluster's ``KillWait``.
        """
        job_id = str(state.get("job_id") or "")
        if not job_id:
            return
        backend = self._backend(state)
        await backend.cancel(job_id)
        workers = int(state.get("workers", 0))
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

    async def release(self, cluster_id: str, state: dict[str, Any]) -> None:
        """Forget the array. A task Slurm starts after the cluster ended is refused by the
        service and exits at once."""
        self._views.pop(str(state.get("job_id") or ""), None)
