"""The built-in ``conversation``: multi-turn chats whose history grows turn by turn.

Written with the same API as a user-defined interaction: each turn is ``ctx.chat`` on the
whole history (a step ``turn-<n>``), the assistant's real answer is appended before the next
user message, and the conversation is the journey. The finished history stays in the client's
``ctx.state["history"]``.

With ``shared_prefix`` prompts the first user message is a whole prompt (its group's prefix and
a question) and the later ones are questions only, so turn k of every conversation of a group
starts with the group's prefix and goes on with that conversation's own k - 1 exchanges. The
earlier turns are not shared between clients: they hold the server's real answers, which differ
from one conversation to the next.
"""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import BaseModel

from clientswarm.config.interactions import ConversationInteraction
from clientswarm.config.paths import ANYWHERE, FileScope
from clientswarm.interactions.journeys import UserInteraction
from clientswarm.interactions.prompts import Prompt, PromptSource, build_prompt_source
from clientswarm.interactions.user import Context, Interaction, NoParams


def user_turns(first: Prompt, more: list[Prompt], turns: int) -> list[Prompt]:
    """The user messages of one conversation: a dataset entry's own user turns (if it has
    several: chat ``messages``, or ShareGPT's human turns), else ``first`` and the prompts of
    ``more``, ``turns`` in all."""
    if first.later_turns:
        return [first, *(Prompt(text=text) for text in first.later_turns)][:turns]
    if first.messages is not None:
        own = [m for m in first.messages if m.get("role") == "user"]
        if len(own) > 1:
            return [Prompt(messages=(m,)) for m in own[:turns]]
    return [first, *more][:turns]


class _Turns(Interaction):
    """One client's conversations."""

    def __init__(self, config: ConversationInteraction, prompts: PromptSource) -> None:
        super().__init__(NoParams())
        self.config = config
        self.prompts = prompts

    async def run(self, ctx: Context) -> None:
        """One conversation: every turn on the history so far."""
        config = self.config
        first = self.prompts.pick(ctx.rng)
        # A shared-prefix prompt's prefix opens the conversation; later turns ask questions only.
        more = [self.prompts.pick(ctx.rng).without_prefix() for _ in range(config.turns - 1)]
        history: list[dict[str, Any]] = []
        if config.system_prompt is not None:
            history.append({"role": "system", "content": config.system_prompt})
        ctx.state["history"] = history
        turns = user_turns(first, more, config.turns)
        for number, prompt in enumerate(turns, start=1):
            history.extend(prompt.as_messages())
            reply = await ctx.chat(
                history,
                max_tokens=prompt.output_tokens or config.max_tokens,
                stream=config.stream,
                model=config.model,
                name=f"turn-{number}",
                **config.extra_body,
            )
            history.append({"role": "assistant", "content": reply.text})
            if config.turn_gap_s and number < len(turns):
                await asyncio.sleep(config.turn_gap_s)


class Conversation(UserInteraction):
    """Multi-turn chats: every turn sends the whole history (steps turn-1, turn-2, …)."""

    kind = "conversation"
    config_model: type[BaseModel] = ConversationInteraction

    def __init__(
        self, config: ConversationInteraction, *, seed: int = 0, files: FileScope = ANYWHERE
    ) -> None:
        prompts = build_prompt_source(config, seed=seed, files=files)
        self._setup(lambda: _Turns(config, prompts), "conversation")
