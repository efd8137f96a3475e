"""The prompt an arrival brings with it (a replayed trace's request), for the task sending it.

An open-loop dispatcher that replays a trace sets :data:`ARRIVAL_PROMPT` inside the task that
sends the arrival (each asyncio task runs in its own copy of the context, so concurrent
arrivals of one client never see each other's); the built-in ``chat`` and ``completion`` send
it instead of picking a prompt of their own.
"""

from __future__ import annotations

from contextvars import ContextVar

from clientswarm.interactions.prompts import Prompt

ARRIVAL_PROMPT: ContextVar[Prompt | None] = ContextVar("clientswarm_arrival_prompt", default=None)
