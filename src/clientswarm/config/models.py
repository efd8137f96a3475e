"""The configuration file of a ClientCluster, as pydantic models.

Every model forbids unknown fields so that a typo is an error that names the field, never a
setting that silently does nothing. Discriminators are short lowercase ``kind`` strings.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from clientswarm.config.base import StrictModel
from clientswarm.config.interactions import InteractionConfig
from clientswarm.config.lengths import LengthDist, coerce_length
from clientswarm.config.load import ClosedLoadConfig, LoadConfig, StopConfig
from clientswarm.config.spawners import (
    LocalSpawnerConfig,
    SlurmSpawnerConfig,
    SpawnerConfig,
)

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
ENV_NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class TargetConfig(StrictModel):
    """The Server Microservice under test (vLLM or any OpenAI-compatible server)."""

    url: str = Field(description="Base URL of the target, e.g. http://127.0.0.1:8000")
    model: str | None = Field(
        default=None, description="Model name sent in OpenAI requests; none sends no model field"
    )
    api_key_env: str | None = Field(
        default=None,
        description=(
            "Name of the environment variable that holds the API key (never the key itself)"
        ),
    )
    timeout_s: float = Field(default=60.0, gt=0, description="Total timeout of one request")
    headers: dict[str, str] = Field(default_factory=dict, description="Extra HTTP headers")
    hello_path: str = Field(default="/", description="Path of the target's hello-world route")

    @field_validator("url")
    @classmethod
    def _check_url(cls, url: str) -> str:
        if not re.match(r"^https?://[^/\s]+(/\S*)?$", url):
            raise ValueError(
                "must be an http:// or https:// URL with a host, e.g. http://127.0.0.1:8000"
            )
        return url.rstrip("/")

    @field_validator("api_key_env")
    @classmethod
    def _check_env_name(cls, name: str | None) -> str | None:
        # The value may be the key itself pasted by mistake: never echo it back.
        if name is None or ENV_NAME_PATTERN.match(name):
            return name
        wrapped = re.match(r"^\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?$", name)
        if wrapped:
            raise ValueError(f"write the variable name alone, without '$': {wrapped.group(1)}")
        raise ValueError(
            "must be the name of an environment variable that holds the key "
            "(letters, digits and '_'), e.g. VLLM_API_KEY; never the key itself"
        )

    @field_validator("hello_path")
    @classmethod
    def _check_path(cls, path: str) -> str:
        if not path.startswith("/"):
            raise ValueError("must start with '/'")
        return path


class SLOConfig(StrictModel):
    """Service-level objectives: a request meets them all or it does not count towards goodput."""

    ttft_s: float | None = Field(default=None, gt=0, description="Max time to first token")
    tpot_s: float | None = Field(default=None, gt=0, description="Max time per output token")
    itl_s: float | None = Field(default=None, gt=0, description="Max mean inter-token latency")
    e2e_s: float | None = Field(default=None, gt=0, description="Max end-to-end latency")


class OutputsConfig(StrictModel):
    """Where and how `clientswarm run` writes its results."""

    dir: str | None = Field(default=None, description="Directory for summary.json and samples")
    samples_format: Literal["jsonl", "parquet"] = Field(
        default="jsonl", description="Format of the raw samples file"
    )


class GroupConfig(StrictModel):
    """Clients of one cluster that share one client configuration."""

    name: Annotated[str, Field(pattern=NAME_PATTERN, max_length=64)]
    clients: int = Field(default=1, ge=1, le=1_000_000, description="Number of clients")
    interaction: InteractionConfig
    load: LoadConfig = Field(default_factory=ClosedLoadConfig)
    stop: StopConfig = Field(default_factory=StopConfig)

    @model_validator(mode="after")
    def _check_stop_and_stages(self) -> GroupConfig:
        stages = self.load.stages
        if self.stop.duration_s is None and self.stop.requests is None and not stages:
            raise ValueError(
                "a group needs a stop condition: set stop.duration_s and/or stop.requests, "
                "or give load.stages"
            )
        if self.load.kind == "closed":
            for stage in self.load.stages:
                if stage.clients > self.clients:
                    raise ValueError(
                        f"load.stages: a stage asks for {stage.clients} clients but the group "
                        f"has only clients={self.clients}"
                    )
        return self

    @property
    def duration_s(self) -> float | None:
        """Measured duration of the group: stop.duration_s, else the sum of its stages."""
        if self.stop.duration_s is not None:
            return self.stop.duration_s
        stages = self.load.stages
        return sum(s.duration_s for s in stages) if stages else None


class ClusterConfig(StrictModel):
    """A ClientCluster: the clients spawned from one configuration file."""

    name: Annotated[str, Field(pattern=NAME_PATTERN, max_length=64)]
    seed: int = Field(default=0, description="Seed of every random choice (arrivals, prompts)")
    target: TargetConfig
    spawner: SpawnerConfig = Field(default_factory=LocalSpawnerConfig)
    warmup_s: float = Field(
        default=0.0, ge=0, description="Seconds at the start whose samples are excluded from stats"
    )
    slo: SLOConfig | None = None
    outputs: OutputsConfig = Field(default_factory=OutputsConfig)
    groups: list[GroupConfig] = Field(min_length=1)

    @field_validator("groups")
    @classmethod
    def _unique_group_names(cls, groups: list[GroupConfig]) -> list[GroupConfig]:
        seen: set[str] = set()
        for group in groups:
            if group.name in seen:
                raise ValueError(f"group names must be unique; {group.name!r} appears twice")
            seen.add(group.name)
        return groups

    @property
    def total_clients(self) -> int:
        """Number of clients over all groups."""
        return sum(g.clients for g in self.groups)


__all__ = [
    "ClusterConfig",
    "GroupConfig",
    "LengthDist",
    "LocalSpawnerConfig",
    "OutputsConfig",
    "SLOConfig",
    "SlurmSpawnerConfig",
    "SpawnerConfig",
    "TargetConfig",
    "coerce_length",
]
