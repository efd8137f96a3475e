"""The ``kubernetes`` spawner: one Indexed Job per cluster, one pod per worker.

Modules: :mod:`.render` (the Secret and the Job, pure), :mod:`.states` (pods and Job
conditions as worker ends, pure), :mod:`.spawner` (the spawner, through ``lightkube``).
"""

from clientswarm.spawners.kubernetes.render import render_objects, render_submission, render_yaml
from clientswarm.spawners.kubernetes.spawner import KubernetesSpawner

__all__ = ["KubernetesSpawner", "render_objects", "render_submission", "render_yaml"]
