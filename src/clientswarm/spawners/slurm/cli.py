"""The Slurm command-line tools as a backend: ``sbatch``, ``squeue``, ``scancel``, ``scontrol``.

Each call is one subprocess with a timeout, run in the service's environment (so ``SLURM_CONF``
and ``PATH`` are the service's). Failures become :class:`SpawnerError` carrying the command
and its stderr.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from clientswarm.errors import SpawnerError
from clientswarm.spawners.slurm.states import (
    TaskStatus,
    in_array,
    parse_jobs_json,
    parse_scontrol,
)

SUBMIT_TIMEOUT_S = 60.0
QUERY_TIMEOUT_S = 30.0

# What the tools print for a job id slurmctld no longer (or never) knew.
_UNKNOWN_JOB = ("invalid job id", "unable to find", "does not exist")
_ALREADY_DONE = ("already completing or completed", "job/step already", *_UNKNOWN_JOB)
_NO_JSON = ("unrecognized option", "invalid option", "not compiled", "no such plugin")


@dataclass(frozen=True)
class Completed:
    """A finished command: its exit status and output."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    def failure(self, what: str) -> SpawnerError:
        """An error saying which command failed and what it printed."""
        said = (self.stderr.strip() or self.stdout.strip() or "no output")[-2000:]
        return SpawnerError(
            f"{what}: `{' '.join(self.argv)}` exited with {self.returncode}: {said}"
        )


async def run_command(
    argv: list[str],
    *,
    env: Mapping[str, str] | None = None,
    timeout_s: float = QUERY_TIMEOUT_S,
) -> Completed:
    """Run ``argv`` to completion; a missing tool or a timeout is a :class:`SpawnerError`."""
    try:
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=dict(env) if env is not None else None,
        )
    except FileNotFoundError as exc:
        raise SpawnerError(
            f"{argv[0]} is not on PATH: install the Slurm client tools on the service's machine, "
            "or use submit_via: rest with slurmrestd"
        ) from exc
    except OSError as exc:
        raise SpawnerError(f"could not run {argv[0]}: {exc}") from exc
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout_s)
    except TimeoutError as exc:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
        raise SpawnerError(
            f"`{' '.join(argv)}` did not answer within {timeout_s:.0f} s: is slurmctld up?"
        ) from exc
    return Completed(
        tuple(argv),
        process.returncode if process.returncode is not None else -1,
        stdout.decode(errors="replace"),
        stderr.decode(errors="replace"),
    )


def parse_parsable(stdout: str) -> str:
    """The job id in ``sbatch --parsable`` output (``123`` or ``123;cluster``)."""
    lines = [line.strip() for line in stdout.splitlines() if line.strip()]
    job_id = lines[-1].split(";", 1)[0] if lines else ""
    if not job_id.isdigit():
        raise SpawnerError(f"sbatch --parsable printed no job id: {stdout.strip()!r}")
    return job_id


class SlurmCli:
    """Submits, follows and cancels job arrays with the Slurm command-line tools."""

    via = "cli"

    def __init__(self, bin_dir: str | None = None, timeout_s: float = QUERY_TIMEOUT_S) -> None:
        self.bin_dir = bin_dir
        self.timeout_s = timeout_s
        self.squeue_filters = True
        """False once ``squeue --json`` was seen to list other jobs than the one asked for."""

    def _tool(self, name: str) -> str:
        return str(Path(self.bin_dir) / name) if self.bin_dir else name

    async def submit(self, script_path: Path, env: Mapping[str, str], export: str) -> str:
        """``sbatch --parsable EXPORT SCRIPT`` run with ``env`` (the workers' environment, the
        token among them) and this service's ``SLURM_*`` settings; the array's job id.
        ``export`` is :func:`~clientswarm.spawners.slurm.render.export_option`."""
        argv = [self._tool("sbatch"), "--parsable", export, str(script_path)]
        slurm = {k: v for k, v in os.environ.items() if k.startswith("SLURM_")}
        done = await run_command(argv, env={**slurm, **env}, timeout_s=SUBMIT_TIMEOUT_S)
        if done.returncode != 0:
            raise done.failure("Slurm refused the job array")
        return parse_parsable(done.stdout)

    async def tasks(self, job_id: str) -> dict[int, TaskStatus]:
        """The tasks of array ``job_id`` by index; empty when Slurm no longer knows the job.

        ``squeue --json -t all --jobs ID`` first. Slurm 22.05 ignores ``--jobs`` (and ``-t``)
        with ``--json`` and lists every job of the cluster; once that is seen, this backend
        asks ``scontrol -o show job ID`` instead, which reads only the one array.
        """
        if not self.squeue_filters:
            return await self.tasks_from_scontrol(job_id)
        argv = [self._tool("squeue"), "--json", "--states=all", f"--jobs={job_id}"]
        done = await run_command(argv, timeout_s=self.timeout_s)
        said = done.stderr.lower()
        if done.returncode != 0 and any(text in said for text in _UNKNOWN_JOB):
            return {}
        if done.returncode != 0 and any(text in said for text in _NO_JSON):
            self.squeue_filters = False
            return await self.tasks_from_scontrol(job_id)
        if done.returncode != 0:
            raise done.failure(f"could not read the state of Slurm job {job_id}")
        try:
            document = json.loads(done.stdout)
            jobs = document.get("jobs") if isinstance(document, dict) else None
            if isinstance(jobs, list) and not all(in_array(j, job_id) for j in jobs):
                self.squeue_filters = False
            return parse_jobs_json(document, job_id)
        except ValueError:  # json.JSONDecodeError is one
            self.squeue_filters = False
            return await self.tasks_from_scontrol(job_id)

    async def tasks_from_scontrol(self, job_id: str) -> dict[int, TaskStatus]:
        """The same from ``scontrol -o show job`` (Slurm without ``squeue --json``)."""
        argv = [self._tool("scontrol"), "-o", "show", "job", job_id]
        done = await run_command(argv, timeout_s=self.timeout_s)
        if done.returncode != 0:
            if any(text in done.stderr.lower() for text in _UNKNOWN_JOB):
                return {}
            raise done.failure(f"could not read the state of Slurm job {job_id}")
        return parse_scontrol(done.stdout, job_id)

    async def cancel(self, job_id: str) -> None:
        """``scancel`` the whole array; a job that has already ended is not an error."""
        done = await run_command([self._tool("scancel"), job_id], timeout_s=self.timeout_s)
        said = done.stderr.lower()
        if done.returncode != 0 and not any(text in said for text in _ALREADY_DONE):
            raise done.failure(f"could not cancel Slurm job {job_id}")
