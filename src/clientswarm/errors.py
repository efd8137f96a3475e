"""Exceptions raised by clientswarm.

The tree::

    ClientswarmError            root: catch this to handle every clientswarm failure
    ├── ConfigError             a configuration is invalid (carries one line per problem)
    ├── SpawnerError            a spawner could not start, follow or stop its workers
    └── WorkerError             a worker failed to run its assignment

A failed request against the target is never an exception: it is a recorded sample with
``status == "error"`` and an ``error_kind``.
"""

from __future__ import annotations


class ClientswarmError(Exception):
    """Root of every error raised by clientswarm."""


class ConfigError(ClientswarmError):
    """A configuration is invalid; ``problems`` holds one readable line per problem."""

    def __init__(self, problems: list[str], source: str | None = None) -> None:
        self.problems = problems
        self.source = source
        where = f"{source}: " if source else ""
        super().__init__(where + "; ".join(problems))


class SpawnerError(ClientswarmError):
    """A spawner could not start, follow or stop its workers."""


class WorkerError(ClientswarmError):
    """A worker failed to run its assignment."""
