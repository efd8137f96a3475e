"""Clients that differ within a group: each client's values of the group's ``vary`` parameters.

A group's ``vary`` maps an interaction parameter (or a dotted path into a mapping parameter,
such as ``extra_body.temperature``) to the values it takes across the group's clients:

- a list: client ``i`` of the group (its index within the group) gets ``values[i % len(values)]``;
- a range ``{min, max}``: client ``i`` gets a number drawn uniformly in ``[min, max]`` (an
  integer when both bounds are integers, else a float) by a generator seeded by the cluster seed,
  the group name, the client index and the parameter name, so every worker computes the same
  value for the same client, and adding a varied parameter does not change the others' draws.

Everything here is pure: the same group, index and seed always give the same answer.
The configuration checked every varied name and value already (see
:class:`clientswarm.config.models.GroupConfig`), so building a client's interaction only fails
for a user-defined interaction, whose parameters are known only when it is built.
"""

from __future__ import annotations

import copy
import hashlib
import json
import random
from typing import Any

from clientswarm.config.interactions import InteractionConfig
from clientswarm.config.models import GroupConfig, VaryRange, with_varied_values

VariantKey = tuple[tuple[str, str], ...]
"""A hashable key of a client's varied values: ``(name, canonical JSON of the value)`` pairs."""


def _check_index(group: GroupConfig, index_in_group: int) -> None:
    if not 0 <= index_in_group < group.clients:
        raise ValueError(
            f"client index within group {group.name!r} must be in 0..{group.clients - 1}, "
            f"got {index_in_group}"
        )


def _generator(seed: int, group: str, index_in_group: int, name: str) -> random.Random:
    """The generator of one client's draw of one varied parameter (stable across processes)."""
    key = json.dumps([seed, group, index_in_group, name]).encode()
    digest = hashlib.blake2b(key, digest_size=16, person=b"clientswarm-vary").digest()
    return random.Random(int.from_bytes(digest, "big"))


def draw(spec: VaryRange, seed: int, group: str, index_in_group: int, name: str) -> int | float:
    """The value of range ``spec`` for one client: uniform in ``[min, max]``."""
    rng = _generator(seed, group, index_in_group, name)
    if spec.integral:
        return rng.randint(int(spec.min), int(spec.max))
    return rng.uniform(float(spec.min), float(spec.max))


def client_values(group: GroupConfig, index_in_group: int, seed: int) -> dict[str, Any]:
    """The varied values of client ``index_in_group`` of ``group``, by name (config order).

    The values are the configuration's own objects: copy them before changing them.
    """
    _check_index(group, index_in_group)
    values: dict[str, Any] = {}
    for name, spec in group.vary.items():
        if isinstance(spec, VaryRange):
            values[name] = draw(spec, seed, group.name, index_in_group, name)
        else:
            values[name] = spec[index_in_group % len(spec)]
    return values


def client_interaction(group: GroupConfig, index_in_group: int, seed: int) -> InteractionConfig:
    """The interaction configuration of client ``index_in_group`` of ``group``.

    Without ``vary`` this is the group's own ``interaction`` object; otherwise a validated copy
    with the client's values applied. ``seed`` is the cluster seed.
    """
    if not group.vary:
        _check_index(group, index_in_group)
        return group.interaction
    return with_varied_values(group.interaction, client_values(group, index_in_group, seed))


def client_variant_key(group: GroupConfig, index_in_group: int, seed: int) -> VariantKey:
    """A hashable key of the client's varied values; ``()`` for a group without ``vary``.

    Clients with equal keys get equal interaction configurations, so a worker can build one
    interaction per distinct key and share it.
    """
    values = client_values(group, index_in_group, seed)
    return tuple(
        (name, json.dumps(value, sort_keys=True, separators=(",", ":"), default=str))
        for name, value in values.items()
    )


def describe_variant(group: GroupConfig, index_in_group: int, seed: int) -> dict[str, Any]:
    """The varied values of a client, by name (``{}`` without ``vary``), e.g. for listings."""
    return copy.deepcopy(client_values(group, index_in_group, seed))


__all__ = [
    "VariantKey",
    "client_interaction",
    "client_values",
    "client_variant_key",
    "describe_variant",
    "draw",
]
