"""The mock's prefix cache: hash-chained blocks, longest cached prefix, LRU eviction."""

from __future__ import annotations

import pytest

from clientswarm.mock.prefix import PrefixCache


def _words(count: int, tag: str = "w") -> list[str]:
    return [f"{tag}{i}" for i in range(count)]


def test_second_identical_prompt_hits_all_but_the_last_token_block() -> None:
    cache = PrefixCache(block_tokens=4, capacity_blocks=100)
    prompt = _words(16)
    assert cache.lookup(prompt) == 0
    # the last token is always computed, so only (16 - 1) // 4 = 3 blocks can hit
    assert cache.lookup(prompt) == 12
    assert (cache.queries, cache.hits) == (32, 12)


def test_partial_blocks_are_not_cached_and_longer_prompts_share_the_prefix() -> None:
    cache = PrefixCache(block_tokens=4, capacity_blocks=100)
    cache.lookup(_words(10))  # two full blocks cached, two tokens left over
    assert len(cache) == 2
    assert cache.lookup(_words(30)) == 8


def test_a_block_hits_only_after_the_same_preceding_blocks() -> None:
    cache = PrefixCache(block_tokens=4, capacity_blocks=100)
    cache.lookup(_words(12))
    shifted = ["x", "y", "z", "q", *_words(12)[4:]]  # same blocks 2 and 3, other first block
    assert cache.lookup([*shifted, "end"]) == 0
    same_start = [*_words(4), "other", *_words(12)[5:], "end"]
    assert cache.lookup(same_start) == 4  # the first block hits; the lookup stops at the miss


def test_distinct_prompts_never_hit() -> None:
    cache = PrefixCache(block_tokens=4, capacity_blocks=100)
    for tag in "abcd":
        assert cache.lookup(_words(20, tag)) == 0
    assert cache.hits == 0 and cache.queries == 80


def test_least_recently_used_blocks_are_evicted() -> None:
    cache = PrefixCache(block_tokens=2, capacity_blocks=4)
    first, second = _words(5, "a"), _words(5, "b")
    cache.lookup(first)  # 2 blocks
    cache.lookup(second)  # 2 more: full
    assert cache.lookup(first) == 4  # refreshes first's blocks
    cache.lookup(_words(5, "c"))  # evicts second's blocks, the least recently used
    assert len(cache) == 4
    assert cache.lookup(second) == 0
    assert cache.lookup(first) == 0  # evicted in turn, by second's blocks
    assert cache.hits == 4


def test_rejects_empty_sizes() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        PrefixCache(block_tokens=0, capacity_blocks=1)
