"""The spawners by ``kind`` (one explicit dict), and rendering what one would submit."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Mapping
from typing import Any

from clientswarm.config.models import ClusterConfig
from clientswarm.errors import ConfigError, SpawnerError
from clientswarm.protocol.spawning import ClusterLaunch, Spawner, SpawnerHandle, WorkerExit

SPAWNERS: dict[str, str] = {
    "local": "clientswarm.spawners.local:LocalSpawner",
    "slurm": "clientswarm.spawners.slurm:SlurmSpawner",
    "kubernetes": "clientswarm.spawners.kubernetes:KubernetesSpawner",
}
"""Every spawner class, by the ``spawner.kind`` that selects it (imported when first used:
the Kubernetes client library alone takes a tenth of a second to load)."""

EXTRAS: dict[str, tuple[str, str]] = {"kubernetes": ("lightkube", "kubernetes")}
"""Spawners whose client library is not in the base install: ``kind`` -> (the module they
import, the extra of ``clientswarm`` that installs it)."""


def missing_extra(kind: str) -> str | None:
    """The problem line of a ``spawner.kind`` whose extra is not installed here (None when it
    is, or needs none). Looks the module up without importing it, so validating stays cheap."""
    if kind not in EXTRAS:
        return None
    module, extra = EXTRAS[kind]
    try:
        if importlib.util.find_spec(module) is not None:
            return None
    except (ImportError, ValueError):  # a broken installation: as good as none
        pass
    return (
        f"spawner.kind: {kind!r} needs the {module} package, which is not installed here: "
        f"pip install 'clientswarm[{extra}]'"
    )


def spawner_class(kind: str) -> type[Spawner[Any]]:
    """The spawner class of ``kind`` (a key of :data:`SPAWNERS`); SpawnerError naming the extra
    to install when its library cannot be loaded."""
    module, name = SPAWNERS[kind].split(":")
    try:
        imported = importlib.import_module(module)
    except ImportError as exc:
        if kind not in EXTRAS:
            raise
        package, extra = EXTRAS[kind]
        raise SpawnerError(
            f"the {kind} spawner cannot be loaded ({exc}): it needs the {package} package, "
            f"pip install 'clientswarm[{extra}]'"
        ) from exc
    cls: type[Spawner[Any]] = getattr(imported, name)
    return cls


class LazySpawner:
    """A spawner of ``kind`` that is built, and its module imported, on first use."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._spawner: Spawner[Any] | None = None

    @property
    def spawner(self) -> Spawner[Any]:
        """The real spawner."""
        if self._spawner is None:
            self._spawner = spawner_class(self.kind)()
        return self._spawner

    def render(self, launch: ClusterLaunch) -> str:
        """See :class:`Spawner`."""
        return self.spawner.render(launch)

    async def submit(self, launch: ClusterLaunch) -> SpawnerHandle:
        """See :class:`Spawner`."""
        handle: SpawnerHandle = await self.spawner.submit(launch)
        return handle

    def restore(self, stored: Mapping[str, Any]) -> SpawnerHandle:
        """See :class:`Spawner`."""
        handle: SpawnerHandle = self.spawner.restore(stored)
        return handle

    async def poll(self, cluster_id: str, handle: SpawnerHandle) -> list[WorkerExit]:
        """See :class:`Spawner`."""
        return await self.spawner.poll(cluster_id, handle)

    async def stop(self, cluster_id: str, handle: SpawnerHandle, grace_s: float) -> None:
        """See :class:`Spawner`."""
        await self.spawner.stop(cluster_id, handle, grace_s)

    async def release(self, cluster_id: str, handle: SpawnerHandle) -> None:
        """See :class:`Spawner`."""
        await self.spawner.release(cluster_id, handle)


def default_spawners() -> dict[str, Spawner[Any]]:
    """One spawner of every kind, for a service (each imported when first used)."""
    return {kind: LazySpawner(kind) for kind in SPAWNERS}


def render_submission(
    config: ClusterConfig,
    *,
    service_url: str,
    cluster_id: str = "<cluster-id>",
    log_dir: str = "<data-dir>/logs/<cluster-id>",
    python: str | None = None,
    sample_dir: str = "<data-dir>/samples",
) -> str:
    """Exactly what the spawner of ``config`` would submit, with placeholders and no secrets;
    ConfigError when that spawner needs an extra that is not installed."""
    problem = missing_extra(config.spawner.kind)
    if problem is not None:
        raise ConfigError([problem])
    launch = ClusterLaunch(
        cluster_id=cluster_id,
        service_url=service_url,
        token="<redacted>",
        log_dir=log_dir,
        python=python or sys.executable,
        options=config.spawner,
        sample_dir=sample_dir if config.sample_path == "files" else None,
    )
    return spawner_class(config.spawner.kind)().render(launch)
