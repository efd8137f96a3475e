"""The prompt of each request of a replayed trace (:mod:`clientswarm.load.trace`).

A request of ``input_tokens`` tokens with ``hash_ids`` ``[h0, h1, …]`` is the text of block
``h0``, one space, the text of block ``h1``, … up to its length: every block but the last is
whole (``block_tokens`` tokens) and the last is cut to what is left. A block's text depends
only on the cluster seed and its id, so two requests whose ids start the same way start with
the same bytes, block by block, on every worker: the server's prefix cache sees what it saw
in production. A request without ids (an Azure trace), or whose blocks are fewer than its
length, gets its own words, drawn from the seed and its number in the window, for the rest.

Without a tokenizer a token is one word (the simulator's count), so the lengths are exact by
construction. With one (``tokenizer:`` of the interaction) each block is a text of exactly
``block_tokens`` tokens, a cut block is its first tokens, and the joined prompt is cut or
padded at its end to exactly the request's length (only its unshared tail changes).
``max_tokens`` is the request's output length.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from clientswarm.interactions.prompts import Prompt
from clientswarm.interactions.tokenizer import TokenCounter, WordCounter
from clientswarm.load.trace import Trace

BLOCK_STREAM = 0x626C6F636B
"""Seeds a block's words (with the cluster seed and the block's id)."""
TAIL_STREAM = 0x7461696C
"""Seeds a request's own words (with the cluster seed and its number in the window)."""
CACHED_BLOCKS = 4096


class TracePrompts:
    """Builds the prompt of request ``i`` of a trace window, caching recent blocks."""

    def __init__(
        self,
        window: Trace,
        *,
        seed: int,
        block_tokens: int,
        counter: TokenCounter | None = None,
    ) -> None:
        self._window = window
        self._seed = seed % (1 << 64)
        self._block_tokens = block_tokens
        self._counter = counter or WordCounter()
        self._exact = self._counter.token_lengths == "exact"
        self._blocks: OrderedDict[int, tuple[str, list[str] | None]] = OrderedDict()

    def prompt(self, index: int) -> Prompt:
        """The prompt of the window's request ``index`` (its text, length and max_tokens)."""
        w = self._window
        n = int(w.input_tokens[index])
        ids = w.hash_ids[index] if w.hash_ids is not None else ()
        parts: list[str] = []
        have = 0
        for block in ids:
            if have >= n:
                break
            take = min(self._block_tokens, n - have)
            parts.append(self._block_text(block, take))
            have += take
        if have < n:
            gen = np.random.default_rng([self._seed, TAIL_STREAM, index])
            parts.append(self._counter.text_of_length(n - have, gen))
        text = " ".join(parts)
        if self._exact:
            text = self._counter.fit_text(text, n)
        return Prompt(text=text, input_tokens=n, output_tokens=int(w.output_tokens[index]))

    def _block_text(self, block: int, take: int) -> str:
        """The first ``take`` tokens of block ``block``'s text."""
        cached = self._blocks.get(block)
        if cached is None:
            cached = self._blocks[block] = self._make_block(block)
            if len(self._blocks) > CACHED_BLOCKS:
                self._blocks.popitem(last=False)
        else:
            self._blocks.move_to_end(block)
        text, words = cached
        if take >= self._block_tokens:
            return text
        if words is None:  # a tokenizer's block: cut at its first ``take`` tokens
            return self._counter.fit_text(text, take)
        return " ".join(words[:take])

    def _make_block(self, block: int) -> tuple[str, list[str] | None]:
        """Block ``block``'s text, and its words when a token is a word."""
        gen = np.random.default_rng([self._seed, BLOCK_STREAM, block % (1 << 64)])
        text = self._counter.text_of_length(self._block_tokens, gen)
        return text, (None if self._exact else text.split(" "))
