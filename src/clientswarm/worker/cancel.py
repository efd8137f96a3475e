"""Requests a group cancels on purpose (``cancel: {fraction, after_s}``).

Each client draws, per request, whether to cut it (probability ``fraction``, from its own
generator seeded by the cluster seed and its id, so a run is repeatable). A chosen request runs
under ``asyncio.timeout(after_s)``: when it fires, the interaction is cancelled mid-request and
records its partial sample as it does when a run stops (``error_kind == "cancelled"``, ended at
the cut); :func:`relabel`, seeing that its timeout expired, then gives that sample its own
kind, ``client_cancel``, and says when it was cut. Statistics leave ``cancelled`` out (a
stopped run's requests) but count ``client_cancel`` as a failed request. The timeout travels
in a context variable, set in the task sending the request, so concurrent requests of one
client never mix their cuts.
"""

from __future__ import annotations

import asyncio
import random
from contextvars import ContextVar

from clientswarm.config.load import CancelConfig
from clientswarm.interactions.base import ClientContext, Interaction
from clientswarm.metrics.sample import ERROR_CANCELLED, ERROR_CLIENT_CANCEL, Sample

CUT: ContextVar[asyncio.Timeout | None] = ContextVar("clientswarm_cut", default=None)
"""The timeout that cuts the request being sent in this task (None: it is not to be cut)."""


class Canceller:
    """One client's choice of the requests it cancels, and the cutting of them."""

    __slots__ = ("_after_s", "_fraction", "_rng")

    def __init__(self, config: CancelConfig, seed: int, client_id: int) -> None:
        self._fraction = config.fraction
        self._after_s = config.after_s
        self._rng = random.Random(f"{seed}:{client_id}:cancel")

    def chosen(self) -> bool:
        """Whether the client's next request is to be cut."""
        return self._rng.random() < self._fraction

    async def perform_cut(self, interaction: Interaction, ctx: ClientContext, at_ns: int) -> None:
        """Run ``interaction`` once, cut ``after_s`` after it starts if it has not ended."""
        try:
            async with asyncio.timeout(self._after_s) as cut:
                token = CUT.set(cut)
                try:
                    await interaction.perform(ctx, at_ns)
                finally:
                    CUT.reset(token)
        except TimeoutError:
            pass  # cut: the interaction recorded its partial sample


def relabel(sample: Sample) -> None:
    """Give a sample cut by its group's ``cancel`` the kind ``client_cancel`` (a sample cut by
    a stopping run, its cut not yet due, keeps ``cancelled``)."""
    if sample.error_kind != ERROR_CANCELLED:
        return
    cut = CUT.get()
    if cut is None or not cut.expired():
        return
    after_s = (sample.end_ns - sample.sent_ns) / 1e9
    sample.error_kind = ERROR_CLIENT_CANCEL
    sample.error_message = f"cancelled by the client {after_s:.3f} s after it was sent (cancel)"


class CutOrWhole:
    """An interaction as one request of a client that may cancel it (``cancel``): what a
    prefill gate runs, so a request it lets through can still be cut."""

    def __init__(self, canceller: Canceller | None, interaction: Interaction) -> None:
        self.kind = interaction.kind
        self._canceller = canceller
        self._interaction = interaction

    async def perform(self, ctx: ClientContext, scheduled_ns: int) -> None:
        """Run the interaction once, cut if its client chose to."""
        canceller = self._canceller
        if canceller is not None and canceller.chosen():
            await canceller.perform_cut(self._interaction, ctx, scheduled_ns)
        else:
            await self._interaction.perform(ctx, scheduled_ns)
