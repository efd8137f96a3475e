"""The spawners by ``kind`` (one explicit dict), and rendering what one would submit."""

from __future__ import annotations

import sys

from clientswarm.config.models import ClusterConfig
from clientswarm.spawners.base import ClusterLaunch, Spawner
from clientswarm.spawners.kubernetes import KubernetesSpawner
from clientswarm.spawners.local import LocalSpawner
from clientswarm.spawners.slurm import SlurmSpawner

SPAWNERS: dict[str, type[Spawner]] = {
    "local": LocalSpawner,
    "slurm": SlurmSpawner,
    "kubernetes": KubernetesSpawner,
}
"""Every spawner class, by the ``spawner.kind`` that selects it."""


def default_spawners() -> dict[str, Spawner]:
    """One instance of every spawner, for a service."""
    return {kind: cls() for kind, cls in SPAWNERS.items()}


def render_submission(
    config: ClusterConfig,
    *,
    service_url: str,
    cluster_id: str = "<cluster-id>",
    log_dir: str = "<data-dir>/logs/<cluster-id>",
    python: str | None = None,
) -> str:
    """Exactly what the spawner of ``config`` would submit, with placeholders and no secrets."""
    launch = ClusterLaunch(
        cluster_id=cluster_id,
        workers=config.spawner.workers,
        service_url=service_url,
        token="<redacted>",
        log_dir=log_dir,
        python=python or sys.executable,
        options=config.spawner.model_dump(),
    )
    return SPAWNERS[config.spawner.kind]().render(launch)
