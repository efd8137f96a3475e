"""Spawner options of the configuration file, discriminated by ``kind``."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from clientswarm.config.base import StrictModel

_TIME_LIMIT = re.compile(r"^(\d+-)?\d+(:\d{1,2}){0,2}$|^UNLIMITED$|^INFINITE$")
_MEMORY = re.compile(r"^\d+[KMGT]?$")


class LocalSpawnerConfig(StrictModel):
    """Workers are processes on the service's machine."""

    kind: Literal["local"] = "local"
    workers: int = Field(default=1, ge=1, le=1024, description="Number of worker processes")


class SlurmRestConfig(StrictModel):
    """How to reach slurmrestd: a URL or a unix socket, and a JWT from an env var if needed."""

    url: str | None = Field(default=None, description="e.g. http://slurm-head:6820")
    socket: str | None = Field(default=None, description="e.g. /run/slurmrestd/slurmrestd.socket")
    api_version: str = Field(default="v0.0.38", pattern=r"^v\d+\.\d+\.\d+$")
    jwt_env: str | None = Field(
        default=None, description="Env var holding the JWT (sent as X-SLURM-USER-TOKEN)"
    )
    user_name: str | None = Field(
        default=None, description="X-SLURM-USER-NAME sent with the JWT; default: this user"
    )

    @model_validator(mode="after")
    def _one_endpoint(self) -> SlurmRestConfig:
        if (self.url is None) == (self.socket is None):
            raise ValueError("give exactly one of rest.url and rest.socket")
        return self


class SlurmSpawnerConfig(StrictModel):
    """Workers are the tasks of one Slurm job array (one task per worker)."""

    kind: Literal["slurm"]
    workers: int = Field(default=1, ge=1, le=10_000, description="Array size: one task per worker")
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    time_limit: str | None = Field(
        default=None, description="sbatch --time, e.g. 30, 1:00:00 or 1-12:00:00"
    )
    cpus_per_worker: int = Field(default=1, ge=1, le=1024, description="sbatch --cpus-per-task")
    mem_per_worker: str | None = Field(default=None, description="sbatch --mem, e.g. 2G")
    nodes: int | None = Field(default=None, ge=1, description="sbatch --nodes per array task")
    ntasks_per_node: int | None = Field(default=None, ge=1)
    extra_sbatch: list[str] = Field(
        default_factory=list, description="Raw '#SBATCH' options, e.g. '--constraint=gpu'"
    )
    setup: list[str] = Field(
        default_factory=list,
        description="Shell lines run before the worker: module load, source venv/bin/activate",
    )
    container: str | None = Field(
        default=None, description="Run the worker with 'apptainer exec IMAGE …'"
    )
    python: str | None = Field(
        default=None,
        description="Python interpreter on the compute nodes, with clientswarm installed "
        "(default: the service's own interpreter, for a shared filesystem)",
    )
    advertise_url: str | None = Field(
        default=None, description="How compute nodes reach the service (default: its own URL)"
    )
    submit_via: Literal["cli", "rest"] = "cli"
    rest: SlurmRestConfig | None = None
    log_dir: str | None = Field(
        default=None, description="Where array tasks write output (must be on a shared filesystem)"
    )

    @field_validator("time_limit")
    @classmethod
    def _time(cls, value: str | None) -> str | None:
        if value is not None and not _TIME_LIMIT.match(value):
            raise ValueError("must be a Slurm time: minutes, MM:SS, HH:MM:SS or D-HH:MM:SS")
        return value

    @field_validator("mem_per_worker")
    @classmethod
    def _memory(cls, value: str | None) -> str | None:
        if value is not None and not _MEMORY.match(value):
            raise ValueError("must be a Slurm memory size such as 512M or 4G")
        return value

    @field_validator("extra_sbatch")
    @classmethod
    def _options(cls, lines: list[str]) -> list[str]:
        for line in lines:
            option = line.removeprefix("#SBATCH").strip()
            if not option.startswith("-") or "\n" in line:
                raise ValueError(f"{line!r} is not an sbatch option such as '--constraint=gpu'")
        return [line.removeprefix("#SBATCH").strip() for line in lines]

    @model_validator(mode="after")
    def _rest_given(self) -> SlurmSpawnerConfig:
        if self.submit_via == "rest" and self.rest is None:
            raise ValueError("submit_via: rest needs rest: {url: …} or rest: {socket: …}")
        return self


SpawnerConfig = Annotated[LocalSpawnerConfig | SlurmSpawnerConfig, Field(discriminator="kind")]
