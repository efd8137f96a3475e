"""The seam between a client and what it does once: the ``Interaction`` protocol."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from clientswarm.clock import Clock
from clientswarm.config.models import TargetConfig
from clientswarm.interactions.http1 import Http1Client
from clientswarm.interactions.replicas import REPLICA
from clientswarm.metrics.sample import Sample

if TYPE_CHECKING:
    import aiohttp


@dataclass(slots=True)
class ClientContext:
    """What one client hands its interaction: the HTTP session bound to the target and more.

    ``http1`` carries the built-ins' OpenAI requests (the hot path); ``session`` the rest.
    ``emit`` records a finished (or, on cancellation, partial) sample; the worker fills in
    ``target`` (the name of the group's target), ``stage`` and ``warmup`` and ships it.
    """

    session: aiohttp.ClientSession
    target: TargetConfig
    headers: dict[str, str]
    group: str
    client: int
    worker: int
    rng: random.Random
    clock: Clock
    emit: Callable[[Sample], None]
    http1: Http1Client
    state: dict[str, object] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        """The URL the request being sent goes to: the target's, or the replica chosen for it
        when the target lists several (:mod:`clientswarm.interactions.replicas`)."""
        replica = REPLICA.get()
        return self.target.url if replica is None else replica[1]


class Interaction(Protocol):
    """What a client does once; records one or more samples through ``ctx.emit``.

    ``perform`` never raises for a failure of the target: it emits a failed sample instead.
    On cancellation it emits the partial sample (``error_kind="cancelled"``) and re-raises.
    """

    kind: str

    async def perform(self, ctx: ClientContext, scheduled_ns: int) -> None:
        """Run the interaction once; ``scheduled_ns`` is when the schedule asked for it."""
        ...
