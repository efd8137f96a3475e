"""Shared-prefix prompts: groups of prompts that start with the same text, for prefix caching.

The shape of inference-perf's ``shared_prefix`` data generator, in clientswarm's names:
``num_groups`` is ``groups``, ``num_prompts_per_group`` is ``prompts_per_group``,
``system_prompt_len`` is ``prefix_tokens``, ``question_len`` is ``question_tokens`` and
``output_len`` is ``output_tokens``; each length also takes a distribution.

How the prompts are made, all from one generator seeded by the cluster seed (so every worker
makes the same ones):

1. One prefix length per group, then one question length and one output length per prompt,
   drawn from the distributions.
2. The prefixes and the questions as random words of exactly those lengths (a tokenizer's
   tokens with ``tokenizer:``, else whitespace-separated words).
3. A prompt is its group's prefix, one space, its question: the prefix is the same string for
   the whole group, so every prompt of a group starts with the same bytes. With a tokenizer, a
   prompt whose whole text does not encode to prefix + question tokens (a tokenizer can split
   the question's first word differently after a space) gets its question redrawn, its length
   corrected by the miss, a few times at most; ``input_tokens`` is always the whole prompt's own
   count.

The prompts are in group order (group 0's first); a client picks one uniformly at random for
each request with its own random stream (see :class:`~.prompts.PromptSource`), so every client
visits every group in an order of its own, and the server sees each prefix again after about
``groups`` requests: the mix of inference-perf's shuffled list.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from clientswarm.config.interactions import SharedPrefixPrompts
from clientswarm.interactions.prompts import Prompt
from clientswarm.interactions.tokenizer import TokenCounter, WordCounter

_FIT_TRIES = 6  # step 3: redraws of a question whose prompt misses its length


def shared_prefix_prompts(
    config: SharedPrefixPrompts, *, seed: int, counter: TokenCounter | None = None
) -> list[Prompt]:
    """``config.groups * config.prompts_per_group`` prompts, group by group.

    Each prompt's ``prefix`` is its group's prefix (one string object per group), and its text
    starts with it; ``input_tokens`` counts the whole text (prefix and question).
    """
    counter = counter or WordCounter()
    gen = np.random.default_rng(seed)
    per_group = config.prompts_per_group
    total = config.groups * per_group
    prefix_lengths = config.prefix_tokens.sample(gen, config.groups)
    question_lengths = config.question_tokens.sample(gen, total)
    outputs: list[int | None] = (
        list(config.output_tokens.sample(gen, total))
        if config.output_tokens is not None
        else [None] * total
    )
    prefixes = counter.texts_of_lengths(prefix_lengths, gen)
    questions = counter.texts_of_lengths(question_lengths, gen)
    prompts: list[Prompt] = []
    for group, (prefix, prefix_length) in enumerate(zip(prefixes, prefix_lengths, strict=True)):
        own = slice(group * per_group, (group + 1) * per_group)
        texts, counts = _joined(
            counter, prefix, prefix_length, questions[own], question_lengths[own], gen
        )
        prompts.extend(
            Prompt(text=text, input_tokens=count, output_tokens=output, prefix=prefix)
            for text, count, output in zip(texts, counts, outputs[own], strict=True)
        )
    return prompts


def _joined(
    counter: TokenCounter,
    prefix: str,
    prefix_length: int,
    questions: Sequence[str],
    lengths: Sequence[int],
    gen: np.random.Generator,
) -> tuple[list[str], list[int]]:
    """The prompts of one group (``prefix``, a space, a question) and their token counts.

    Words join without a seam, so without a tokenizer each count is prefix + question. With one,
    the texts are counted and a miss is redrawn (step 3 of the module's docstring).
    """
    texts = [f"{prefix} {question}" for question in questions]
    wanted = [prefix_length + n for n in lengths]
    if counter.token_lengths == "approximate":
        return texts, wanted
    counts = counter.count_batch(texts)
    for i, want in enumerate(wanted):
        length, got = lengths[i], counts[i]
        for _ in range(_FIT_TRIES):
            if got == want:
                break
            length += want - got  # from the latest try: a steady seam effect cancels out
            if length < 1:
                break
            text = f"{prefix} {counter.text_of_length(length, gen)}"
            got = counter.count(text)
            if abs(got - want) < abs(counts[i] - want):
                texts[i], counts[i] = text, got
    return texts, counts
