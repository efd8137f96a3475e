"""The ``slurm`` spawner: one job array per cluster, one array task per worker.

Modules: :mod:`.render` (the batch script and the slurmrestd job, pure), :mod:`.states` (Slurm
states as worker states, parsing squeue/scontrol/slurmrestd output, pure), :mod:`.cli`
(sbatch/squeue/scancel/scontrol), :mod:`.rest` (slurmrestd), :mod:`.spawner` (the spawner).
"""

from clientswarm.spawners.slurm.render import render_sbatch, render_submission
from clientswarm.spawners.slurm.spawner import SlurmSpawner

__all__ = ["SlurmSpawner", "render_sbatch", "render_submission"]
