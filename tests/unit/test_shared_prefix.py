"""Shared-prefix prompts: groups that share a prefix byte for byte, exact lengths, errors.

The tokenizers are trained here on a few sentences; nothing is downloaded.
"""

from __future__ import annotations

import copy
import random
from pathlib import Path
from typing import Any

import pytest

from clientswarm.config import validate_config_data
from clientswarm.config.interactions import ChatInteraction, ConversationInteraction
from clientswarm.config.paths import FileScope
from clientswarm.errors import ConfigError
from clientswarm.interactions.conversation import user_turns
from clientswarm.interactions.prompts import Prompt, PromptSource, build_prompt_source
from clientswarm.interactions.tokenizer import WORDS
from clientswarm.load.vary import client_interaction

SHARED = {"groups": 4, "prompts_per_group": 6, "prefix_tokens": 40, "question_tokens": 9}

SENTENCES = [
    "the quick brown fox jumps over the lazy dog",
    "time year people way day man thing woman life child world school state family",
    "a model of the world is a computer program that answers a question",
] * 3


def train(kind: str) -> Any:
    """A tiny tokenizer: byte-level BPE (GPT-2 style), SentencePiece-style BPE or word level."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    if kind == "wordlevel":
        tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
        tok.pre_tokenizer = pre_tokenizers.Whitespace()
        tok.train_from_iterator(SENTENCES, trainers.WordLevelTrainer(special_tokens=["[UNK]"]))
        return tok
    if kind == "metaspace":
        tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True))
        tok.pre_tokenizer = pre_tokenizers.Metaspace()
        tok.decoder = decoders.Metaspace()
        trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<unk>"])
        tok.train_from_iterator([*SENTENCES, " ".join(WORDS)], trainer)
        return tok
    tok = Tokenizer(models.BPE(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=150,
        special_tokens=["[UNK]"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(SENTENCES, trainer)
    return tok


@pytest.fixture(params=["bpe", "metaspace", "wordlevel"])
def tok_path(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    pytest.importorskip("tokenizers")
    path = tmp_path / f"{request.param}.json"
    train(request.param).save(str(path))
    return path


def source(tmp_path: Path, seed: int = 0, tok: Path | None = None, **shared: Any) -> PromptSource:
    fields: dict[str, Any] = {"shared_prefix": {**SHARED, **shared}}
    if tok is not None:
        fields["tokenizer"] = tok.name
    config = ChatInteraction.model_validate(fields)
    return build_prompt_source(config, seed=seed, files=FileScope.anywhere(tmp_path))


def by_group(prompts: list[Prompt]) -> dict[str, list[Prompt]]:
    groups: dict[str, list[Prompt]] = {}
    for prompt in prompts:
        assert prompt.prefix is not None
        groups.setdefault(prompt.prefix, []).append(prompt)
    return groups


def question(prompt: Prompt) -> str:
    text, prefix = str(prompt.text), str(prompt.prefix)
    assert text.startswith(prefix + " ")
    return text[len(prefix) + 1 :]


# -- the prompts --------------------------------------------------------------------------------


def test_prompts_of_a_group_share_the_prefix_byte_for_byte(tmp_path: Path) -> None:
    prompts = source(tmp_path).prompts
    assert len(prompts) == 4 * 6
    groups = by_group(prompts)
    assert len(groups) == 4 and all(len(g) == 6 for g in groups.values())
    for index, group in enumerate(groups.values()):
        assert group == prompts[index * 6 : (index + 1) * 6]  # group by group
        encoded = {str(p.text).encode()[: len(str(p.prefix).encode())] for p in group}
        assert len(encoded) == 1  # one prefix, the same bytes in every prompt of the group
        assert len({question(p) for p in group}) == 6  # each prompt has its own question
    starts = {tuple(prefix.split()[:3]) for prefix in groups}
    assert len(starts) == 4  # groups differ from their start, not only somewhere inside


def test_word_lengths_without_a_tokenizer(tmp_path: Path) -> None:
    src = source(tmp_path, output_tokens=12)
    assert src.token_lengths == "approximate"
    for prompt in src.prompts:
        assert len(str(prompt.prefix).split()) == 40
        assert len(question(prompt).split()) == 9
        assert len(str(prompt.text).split()) == prompt.input_tokens == 49
        assert prompt.output_tokens == 12


def test_lengths_take_distributions(tmp_path: Path) -> None:
    prompts = source(
        tmp_path,
        groups=20,
        prefix_tokens={"kind": "uniform", "min": 10, "max": 30},
        question_tokens={"kind": "normal", "mean": 8, "std": 3, "min": 1},
        output_tokens={"kind": "uniform", "min": 1, "max": 5},
    ).prompts
    groups = by_group(prompts)
    prefix_lengths = {len(p.split()) for p in groups}
    assert len(prefix_lengths) > 3 and all(10 <= n <= 30 for n in prefix_lengths)
    assert len({len(question(p).split()) for p in prompts}) > 3
    assert {p.output_tokens for p in prompts} <= {1, 2, 3, 4, 5}
    for prompt in prompts:  # one prefix length per group, not per prompt
        assert prompt.input_tokens == len(str(prompt.prefix).split()) + len(
            question(prompt).split()
        )


def test_same_seed_same_prompts_other_seed_others(tmp_path: Path) -> None:
    a = source(tmp_path, seed=3).prompts
    assert a == source(tmp_path, seed=3).prompts
    b = source(tmp_path, seed=4).prompts
    assert {p.prefix for p in a}.isdisjoint({p.prefix for p in b})


def test_clients_spread_over_the_groups(tmp_path: Path) -> None:
    src = source(tmp_path)
    prefixes = list(by_group(src.prompts))
    visits: list[list[int]] = []
    for client in range(8):  # each client picks with its own random stream
        rng = random.Random(f"client-{client}")
        visits.append([prefixes.index(str(src.pick(rng).prefix)) for _ in range(200)])
    for seq in visits:
        assert set(seq) == {0, 1, 2, 3}  # every client visits every group over time
        assert all(30 < seq.count(g) < 70 for g in range(4))
    assert len({tuple(seq[:10]) for seq in visits}) == 8  # in orders of their own


def test_exact_lengths_with_a_tokenizer(tmp_path: Path, tok_path: Path) -> None:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tok_path))

    def count(text: str) -> int:
        return len(tok.encode(text, add_special_tokens=False).ids)

    lengths: dict[str, Any] = {
        "prefix_tokens": {"kind": "uniform", "min": 20, "max": 60},
        "question_tokens": 7,
    }
    src = source(tmp_path, seed=2, tok=tok_path, **lengths)
    assert src.token_lengths == "exact"
    by_words = source(tmp_path, seed=2, **lengths)
    drawn = [p.input_tokens for p in by_words.prompts]
    assert [p.input_tokens for p in src.prompts] == drawn  # the drawn lengths, exactly
    for prompt in src.prompts:
        assert count(str(prompt.text)) == prompt.input_tokens
        assert prompt.input_tokens == count(str(prompt.prefix)) + 7
    groups = by_group(src.prompts)
    assert len(groups) == 4 and all(len(g) == 6 for g in groups.values())
    assert [count(p) for p in groups] == [len(str(p).split()) for p in by_group(by_words.prompts)]


def test_exact_lengths_are_deterministic_per_seed(tmp_path: Path, tok_path: Path) -> None:
    a = source(tmp_path, seed=1, tok=tok_path).prompts
    assert a == source(tmp_path, seed=1, tok=tok_path).prompts
    assert a != source(tmp_path, seed=9, tok=tok_path).prompts


# -- how the interactions send them -------------------------------------------------------------


def test_chat_sends_the_prompt_as_the_user_message(tmp_path: Path) -> None:
    prompt = source(tmp_path).prompts[0]
    assert prompt.as_messages("Be brief.") == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": prompt.text},
    ]
    assert prompt.as_text() == prompt.text  # a completion's prompt starts with the prefix


def test_a_conversation_cuts_the_prefix_off_its_later_turns(tmp_path: Path) -> None:
    first, second, third = source(tmp_path).prompts[:3]
    turns = user_turns(first, [second.without_prefix(), third.without_prefix()], 3)
    assert [t.text for t in turns] == [first.text, question(second), question(third)]
    assert turns[1].output_tokens == second.output_tokens
    assert Prompt(text="plain").without_prefix() == Prompt(text="plain")


# -- configuration ------------------------------------------------------------------------------


def group_config(interaction: dict[str, Any], **group: Any) -> dict[str, Any]:
    return {
        "name": "prefix-cache",
        "target": {"url": "http://127.0.0.1:8000", "model": "m"},
        "groups": [
            {"name": "g", "clients": 2, "interaction": interaction, "stop": {"requests": 10}}
            | group
        ],
    }


def problems(interaction: dict[str, Any], **group: Any) -> list[str]:
    with pytest.raises(ConfigError) as info:
        validate_config_data(group_config(interaction, **group), source="test.yaml")
    return info.value.problems


def test_config_defaults_and_shorthand_lengths() -> None:
    config = validate_config_data(
        group_config(
            {"kind": "completion", "shared_prefix": {"prefix_tokens": 2048, "question_tokens": 128}}
        )
    )
    shared = config.groups[0].interaction.shared_prefix  # type: ignore[union-attr]
    assert shared is not None
    assert (shared.groups, shared.prompts_per_group) == (10, 10)
    assert shared.prefix_tokens.model_dump() == {"kind": "fixed", "value": 2048}
    assert shared.output_tokens is None
    conversation = ConversationInteraction.model_validate({"shared_prefix": SHARED})
    assert conversation.shared_prefix is not None


P = "groups[0].interaction.shared_prefix"


@pytest.mark.parametrize(
    ("shared", "line"),
    [
        ({"groups": 0}, f"{P}.groups: too small; got 0; must be at least 1 and at most 1000000"),
        (
            {"prefix_tokens": "long"},
            f"{P}.prefix_tokens: expected an integer or a mapping with a 'kind'; got \"long\"; "
            "valid kinds: fixed, uniform, normal, lognormal",
        ),
        (
            {"groups": 2000, "prompts_per_group": 1000},
            f"{P}: groups * prompts_per_group = 2,000,000 prompts, more than the 1,000,000 "
            "allowed; use fewer groups or prompts per group",
        ),
        (
            {"question_tokenz": 3},
            f"{P}.question_tokenz: unknown field 'question_tokenz' (did you mean "
            "'question_tokens'?); valid fields: groups, prompts_per_group, prefix_tokens, "
            "question_tokens, output_tokens",
        ),
        (
            {"prefix_tokens": ...},
            f"{P}.prefix_tokens: required field missing (length of a group's shared prefix in "
            "tokens (drawn once per group)); valid kinds: fixed, uniform, normal, lognormal",
        ),
    ],
    ids=["too-few-groups", "not-a-length", "too-many-prompts", "misspelt", "missing"],
)
def test_config_errors_are_one_line_naming_the_field(shared: dict[str, Any], line: str) -> None:
    fields = {k: v for k, v in {**SHARED, **shared}.items() if v is not ...}
    assert problems({"kind": "chat", "shared_prefix": fields}) == [line]


def test_one_prompt_source_and_varied_as_a_whole() -> None:
    found = problems({"kind": "chat", "synthetic": {"input_tokens": 8}, "shared_prefix": SHARED})
    assert found == [
        "groups[0].interaction: give one prompt source, not synthetic and shared_prefix"
    ]
    found = problems({"kind": "chat", "shared_prefix": SHARED}, vary={"shared_prefix.groups": [1]})
    assert found == [
        "groups[0].vary[\"shared_prefix.groups\"]: 'shared_prefix' of interaction kind 'chat' is "
        "not a mapping, so 'shared_prefix.groups' cannot vary inside it; dotted paths go into: "
        "extra_body"
    ]


def test_varying_the_prompt_source_replaces_the_shared_prefix() -> None:
    interaction = {"kind": "chat", "shared_prefix": SHARED}
    vary = {"synthetic": [{"input_tokens": 5}]}
    config = validate_config_data(group_config(interaction, vary=vary))
    group = config.groups[0]
    varied = client_interaction(group, 1, config.seed)
    assert varied.synthetic is not None and varied.shared_prefix is None  # type: ignore[union-attr]
    other = copy.deepcopy(SHARED) | {"groups": 2}
    config = validate_config_data(
        group_config({"kind": "chat", "prompts": ["hi"]}, vary={"shared_prefix": [SHARED, other]})
    )
    varied = client_interaction(config.groups[0], 1, config.seed)
    assert varied.prompts is None and varied.shared_prefix.groups == 2  # type: ignore[union-attr]
