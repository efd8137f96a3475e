"""``prefill_concurrency``: a cap on a group's requests still waiting for their first token.

Long prompts spend most of their time in the engine's prefill; sending them faster than it
prefills only lengthens its queue. A group's cap (fleet-wide, split over its workers like
``max_concurrency``) lets a request be sent only while fewer than the cap of the worker's
requests of that group have no first token yet. Its slot is freed the moment its stream
brings its first content (the reader calls back through
:data:`~clientswarm.interactions.streaming.FIRST_TOKEN`), or when it ends without one (a
failure, an answer that is not streamed). A request that waits for a slot keeps its scheduled
time, so the wait shows as schedule lag.
"""

from __future__ import annotations

import asyncio

from clientswarm.interactions.base import ClientContext, Interaction
from clientswarm.interactions.streaming import FIRST_TOKEN


class PrefillGate:
    """One worker's share of a group's ``prefill_concurrency``."""

    __slots__ = ("slots",)

    def __init__(self, share: int) -> None:
        self.slots = asyncio.Semaphore(share)

    async def perform(self, interaction: Interaction, ctx: ClientContext, at_ns: int) -> None:
        """Run ``interaction`` once it has a slot; free the slot at its first token."""
        await self.slots.acquire()
        freed = False

        def free() -> None:
            nonlocal freed
            if not freed:
                freed = True
                self.slots.release()

        token = FIRST_TOKEN.set(free)
        try:
            await interaction.perform(ctx, at_ns)
        finally:
            FIRST_TOKEN.reset(token)
            free()
