"""Waiting for a scheduled time on the clock the samples use: never wake up early.

Event-loop timers run on their own clock and round: uvloop's (libuv's) have millisecond
resolution and fire up to a millisecond before the time asked for, on the monotonic clock of the
loop rather than the :class:`~clientswarm.clock.Clock` that stamps ``scheduled_ns`` and
``sent_ns``. A send at the first wake-up would go out early, with a negative schedule lag.
:func:`sleep_until` therefore checks the clock after each wake-up and sleeps again for what is
left (the last fraction of a millisecond costs a few loop turns), so a send made after it is at
or after its scheduled time: schedule lag is never negative, by construction.
"""

from __future__ import annotations

import asyncio

from clientswarm.clock import Clock


async def sleep_until(clock: Clock, at_ns: int) -> None:
    """Return once ``clock.now_ns() >= at_ns`` (at once when it already is)."""
    while (left_ns := at_ns - clock.now_ns()) > 0:  # noqa: ASYNC110 - a time, not an event
        await asyncio.sleep(left_ns / 1e9)


__all__ = ["sleep_until"]
