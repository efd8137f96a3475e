"""The contract between the service, its workers and its spawners, imported by all three.

Everything they exchange is declared here and nowhere else, and this package imports none of
them (``make test`` checks it with import-linter, ``[tool.importlinter]`` in pyproject.toml):

- :mod:`.internal`: the worker protocol (``/internal/v1``): register, assignment, sample
  batches, heartbeat, finish, and the cluster token's environment variable;
- :mod:`.assignment`: what a worker is told to do, and how it reports back;
- :mod:`.preflight`: what is checked of the targets before the start, and its results;
- :mod:`.spawning`: the spawner seam: what the service hands a spawner to start a cluster's
  workers (:class:`~.spawning.ClusterLaunch`), the :class:`~.spawning.Spawner` protocol, the
  opaque :class:`~.spawning.SpawnerHandle` it answers with, and what it reports of an ended
  worker.

The sample batches themselves travel in the codec of :mod:`clientswarm.metrics.wire`, from the
field table of :class:`clientswarm.metrics.sample.Sample`.
"""
