"""Think time: how long a closed-loop client waits between an answer and its next send.

A sampler is a zero-argument function returning seconds, drawn from the client's own
``random.Random`` so that each client's sequence is reproducible from the cluster seed and its
id (:func:`client_rng`) and no two clients share state.

- ``constant``: always ``value_s``.
- ``uniform``: uniform in ``[min_s, max_s]``.
- ``exponential``: exponential with mean ``mean_s``.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from clientswarm.config.load import ConstantThink, ExponentialThink, ThinkTime, UniformThink


def client_rng(seed: int, client_id: int) -> random.Random:
    """A generator for client ``client_id`` of a cluster seeded with ``seed``.

    Seeding from a string is stable across processes and Python runs (it is hashed with
    SHA-512, not ``hash()``), so every worker derives the same sequence for the same client.
    """
    return random.Random(f"clientswarm-think:{seed}:{client_id}")


def think_sampler(think: ThinkTime, rng: random.Random) -> Callable[[], float]:
    """A function that returns the next think time in seconds."""
    if isinstance(think, ConstantThink):
        value = think.value_s
        return lambda: value
    if isinstance(think, UniformThink):
        low, high = think.min_s, think.max_s
        return lambda: rng.uniform(low, high)
    if isinstance(think, ExponentialThink):
        rate = 1.0 / think.mean_s
        return lambda: rng.expovariate(rate)
    raise ValueError(
        f"unknown think time {think!r}; valid kinds are constant, uniform and exponential"
    )


def mean_think_s(think: ThinkTime) -> float:
    """The expected think time in seconds."""
    if isinstance(think, ConstantThink):
        return think.value_s
    if isinstance(think, UniformThink):
        return (think.min_s + think.max_s) / 2
    return think.mean_s
