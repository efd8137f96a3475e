"""The preflight: what is checked of every target before any client starts, and its results.

A cluster whose configuration asks for it (``preflight: true``, the default) has its targets
checked where its clients will run, before the shared start time is fixed: by the service
itself when the workers run on its machine (the ``local`` spawner, ``clientswarm run``), by
worker 0 when they run elsewhere (Slurm, Kubernetes: the service may not reach a compute
node's network, and only the pods hold a Kubernetes secret). Worker 0 gets the
:class:`PreflightPlan` in its :class:`~clientswarm.protocol.internal.RegisterReply` and posts
its :class:`PreflightReport` to ``POST …/workers/0/preflight`` before it asks for its
assignment; the other workers' ``GET assignment`` answers 202 until it has. The checks
themselves are :func:`clientswarm.preflight.run_preflight`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from clientswarm.config.models import ClusterConfig, TargetConfig

OPENAI_KINDS = frozenset(
    {"completion", "chat", "responses", "messages", "embedding", "conversation", "transcription"}
)
"""The interactions that speak the OpenAI API (or the Messages API, which vLLM serves beside
it): their targets are asked ``GET /v1/models``."""

PreflightLevel = Literal["passed", "warning", "error"]


class PreflightTarget(BaseModel):
    """One target to check, as its clients will reach it."""

    name: str = Field(description="The target's name in the configuration")
    target: TargetConfig
    openai: bool = Field(
        description="Whether OpenAI interactions load it: its /v1/models is asked and its "
        "url must not end in /v1"
    )
    models: list[str] = Field(
        default_factory=list, description="The model names its OpenAI interactions send"
    )


class PreflightPlan(BaseModel):
    """Every target of a cluster to check, and how long to wait for each."""

    targets: list[PreflightTarget]
    timeout_s: float = Field(gt=0)


class PreflightCheck(BaseModel):
    """One result of the preflight."""

    target: str = Field(description="The target's name in the configuration")
    check: str = Field(description="What was checked: url, answers, auth, api_key, model")
    level: PreflightLevel
    message: str = Field(description="One line saying what was found (and the fix)")


class PreflightReport(BaseModel):
    """Every result of one preflight, and where it ran."""

    checks: list[PreflightCheck] = Field(default_factory=list)
    where: str = Field(default="", description="Where it ran: the service, worker 0 on a host")

    @property
    def errors(self) -> list[PreflightCheck]:
        """The checks that failed: any fails the cluster."""
        return [c for c in self.checks if c.level == "error"]

    @property
    def warnings(self) -> list[PreflightCheck]:
        """The checks that warn (the cluster still starts)."""
        return [c for c in self.checks if c.level == "warning"]

    def failure(self) -> str | None:
        """The reason the cluster fails (one line), or ``None`` when no check failed."""
        errors = self.errors
        if not errors:
            return None
        return "preflight failed: " + "; ".join(c.message for c in errors)


def preflight_plan(config: ClusterConfig) -> PreflightPlan | None:
    """What the preflight of ``config`` checks; ``None`` when it asks for none."""
    if not config.preflight:
        return None
    targets: dict[str, PreflightTarget] = {
        name: PreflightTarget(name=name, target=target, openai=False)
        for name, target in config.target_map().items()
    }
    used: set[str] = set()
    for group in config.groups:
        name = config.target_name_of(group)
        used.add(name)
        if group.interaction.kind not in OPENAI_KINDS:
            continue
        entry = targets[name]
        entry.openai = True
        model = getattr(group.interaction, "model", None) or entry.target.model
        if model is not None and model not in entry.models:
            entry.models.append(model)
    return PreflightPlan(
        targets=[t for name, t in targets.items() if name in used],
        timeout_s=config.preflight_timeout_s,
    )


__all__ = [
    "OPENAI_KINDS",
    "PreflightCheck",
    "PreflightLevel",
    "PreflightPlan",
    "PreflightReport",
    "PreflightTarget",
    "preflight_plan",
]
