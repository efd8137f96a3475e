"""Whether the workers of a ``sample_path: files`` cluster can write where the service reads.

On the high-rate path each worker writes its samples under the service's samples directory
(:attr:`~clientswarm.service.settings.ServiceSettings.samples_dir`) and the service reads them
there at the end, so the workers must see that directory at the same path:

- ``local``: the workers run on the service's machine;
- ``slurm``: the data dir is on the cluster's shared filesystem (the operator's to arrange, as
  for the workers' logs);
- ``kubernetes``: a pod has a filesystem of its own, so the spawner mounts the
  ReadWriteMany PersistentVolumeClaim ``samples_claim`` — the one the service's pod mounts at
  its samples directory — at that path in every worker pod. Without one the samples would stay
  in the pods, so such a cluster is refused before anything starts.

Light (no service code): ``clientswarm run`` checks this before its service has loaded.
"""

from __future__ import annotations

from pathlib import Path

from clientswarm.config.models import ClusterConfig, SpawnerConfig
from clientswarm.config.spawners import KubernetesSpawnerConfig


def samples_storage_problem(
    config: ClusterConfig, spawner: SpawnerConfig, samples_dir: Path | str, *, preset_only: bool
) -> str | None:
    """The problem line when the workers of ``config`` (its spawner's options ``spawner``, a
    preset merged in) cannot reach ``samples_dir``; None when they can or need not.
    ``preset_only``: only the operator's presets may set ``samples_claim`` (a shared service)."""
    if config.sample_path != "files" or not isinstance(spawner, KubernetesSpawnerConfig):
        return None
    if spawner.samples_claim is not None:
        return None
    where = (
        "ask the operator for a spawner preset that sets samples_claim (clientswarm serve "
        "--spawner-preset) and name it with spawner.preset"
        if preset_only
        else "name it with spawner.samples_claim (or in the spawner preset)"
    )
    return (
        "spawner.samples_claim: sample_path: files on kubernetes needs a ReadWriteMany "
        "PersistentVolumeClaim that the service mounts at its samples directory "
        f"({samples_dir}), for the worker pods to write their samples where the service reads "
        f"them; {where}, or use sample_path: service"
    )


__all__ = ["samples_storage_problem"]
