"""The simulated prefix cache: hash-chained blocks of prompt tokens in an LRU, as vLLM counts them.

The rules, after vLLM's V1 KV-cache manager (automatic prefix caching):

- A prompt (its tokens as :mod:`clientswarm.mock.wire` counts them: words, or token ids) is cut
  into blocks of ``block_tokens`` tokens; only full blocks are cached.
- A block's key is the hash of its tokens and of the key of the block before it (a hash chain),
  so a block hits only at the same position after the same preceding blocks.
- A lookup walks the blocks from the start and stops at the first miss: only the longest cached
  prefix counts. At most ``(prompt_tokens - 1) // block_tokens`` blocks are looked up, since the
  engine always computes a prompt's last token (a fully cached prompt still misses one block).
- ``queries`` counts every prompt token looked up, ``hits`` the tokens of the leading blocks
  that hit (both in tokens, like ``vllm:prefix_cache_queries`` and ``vllm:prefix_cache_hits``).
- After the lookup every full block of the prompt is cached (as if its prefill were done at
  once); a hit refreshes a block. Past ``capacity_blocks`` the least recently used block goes.
  The cache is independent of the KV capacity of :mod:`clientswarm.mock.scheduler` (vLLM keeps
  freed blocks cached until it needs them; the mock simply keeps ``capacity_blocks`` of them).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence


class PrefixCache:
    """An LRU of prompt-block keys; counts queried and hit tokens."""

    __slots__ = ("_blocks", "block_tokens", "capacity_blocks", "hits", "queries")

    def __init__(self, block_tokens: int, capacity_blocks: int) -> None:
        if block_tokens < 1 or capacity_blocks < 1:
            raise ValueError(
                f"block_tokens ({block_tokens}) and capacity_blocks ({capacity_blocks}) "
                "must be at least 1"
            )
        self.block_tokens = block_tokens
        self.capacity_blocks = capacity_blocks
        self.queries = 0
        """Prompt tokens looked up, in all."""
        self.hits = 0
        """Prompt tokens found cached (leading blocks only), in all."""
        self._blocks: OrderedDict[int, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._blocks)

    def block_keys(self, tokens: Sequence[str]) -> list[int]:
        """The chained keys of the full blocks of ``tokens``."""
        size = self.block_tokens
        keys: list[int] = []
        parent = 0
        for start in range(0, len(tokens) - size + 1, size):
            parent = hash((parent, tuple(tokens[start : start + size])))
            keys.append(parent)
        return keys

    def lookup(self, tokens: Sequence[str]) -> int:
        """Count one prompt's lookup, cache its full blocks; returns its cached tokens."""
        keys = self.block_keys(tokens)
        lookable = max(len(tokens) - 1, 0) // self.block_tokens
        hit_blocks = 0
        for key in keys[:lookable]:
            if key not in self._blocks:
                break
            hit_blocks += 1
        for key in keys:
            self._blocks[key] = None
            self._blocks.move_to_end(key)
        while len(self._blocks) > self.capacity_blocks:
            self._blocks.popitem(last=False)
        hit_tokens = hit_blocks * self.block_tokens
        self.queries += len(tokens)
        self.hits += hit_tokens
        return hit_tokens
