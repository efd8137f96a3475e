"""The ``kubernetes`` spawner: one Indexed Job per cluster, one pod per worker.

Modules: :mod:`.render` (the Secret and the Job, pure).
"""

from clientswarm.spawners.kubernetes.render import render_objects, render_submission, render_yaml

__all__ = ["render_objects", "render_submission", "render_yaml"]
